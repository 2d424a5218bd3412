/*
 * store — the only way to persistence. One interface, backends behind it (sqlite.c now;
 * postgres.c with the governance work). The schema lives in versioned migrations applied in
 * order inside a transaction; schema_version records what ran.
 *
 * Invariants:
 * - A struct gw_store is one connection, used by one thread at a time (each worker owns one).
 * - API keys are stored only as SHA-256 hashes; a raw key never reaches this layer.
 * - Money is integer micro-dollars. Times are unix milliseconds.
 * - Every query is a prepared statement with bound parameters; no SQL is built from input.
 * - Strings read back from the database are length-checked into the fixed fields below.
 */
#ifndef GW_STORE_STORE_H
#define GW_STORE_STORE_H

#include <stdint.h>

#include "util/err.h"

struct gw_store;

/* Limits of one scope (a key or an org). 0 = none; on a key, 0 = its tier's default. */
struct gw_limit_set {
    int64_t rph;                    /* requests per hour (sliding window) */
    int64_t tph;                    /* tokens per hour (sliding window), prompt + output */
    int64_t max_concurrent;         /* requests in flight at once */
    int64_t daily_usd_micros;       /* USD budget per day (UTC calendar day, see budgets.*) */
    int64_t monthly_usd_micros;     /* USD budget per month */
    int64_t max_request_usd_micros; /* the worst case of one request */
};

/* What an org keeps of its conversations (capture settings). */
struct gw_conv_policy {
    int capture;            /* 1 (the default): every prompt/answer pair is stored */
    int64_t retention_days; /* conversations untouched this many days are deleted; 0 = kept */
    int export_all;         /* 1: an admin's export may include private conversations (0) */
};

/* An org and its policy: allowlists (comma-separated; "" = all) and org-wide limits, counted
 * over all of its keys together. */
struct gw_org {
    int64_t id;
    char slug[64];
    char name[128];
    int64_t created_ms;
    char providers[256];
    char models[1024];
    struct gw_limit_set limits;
    struct gw_conv_policy conv;
};

/* Roles: "superadmin" (bootstrap key, no org), "org_admin", "member". */
struct gw_key_rec {
    int64_t id;              /* internal row id */
    char key_id[40];         /* public id, e.g. "key_9f2c..." */
    int64_t org_id;          /* 0 for the superadmin */
    char org_slug[64];       /* filled on reads */
    char name[128];
    char prefix[16];         /* first characters of the raw key, for recognising it in lists */
    char role[16];
    char tier[16];           /* "free" | "pro" | "enterprise" */
    char providers[256];     /* comma-separated allowlist; "" = all */
    char models[1024];       /* comma-separated allowlist; "" = all */
    struct gw_limit_set limits; /* overrides of the tier's defaults (0 = the tier's) */
    int revoked;
    int64_t created_ms;
    int64_t revoked_ms;
    int64_t rotated_ms;      /* when its secret last changed (0: never) */
    int64_t prev_expires_ms; /* the previous secret works until then (0: it does not) */
    int via_prev;            /* by_hash: found by the previous secret (valid until the above) */
    /* filled on reads: the key's org's policy (empty for the superadmin) */
    char org_providers[256];
    char org_models[1024];
    struct gw_limit_set org_limits;
    struct gw_conv_policy org_conv; /* the superadmin's (no org): capture on, nothing else */
};

/* A usage row; created at reservation (state "reserved") and settled after the call.
 * kind "chat": the request itself (request_id = the X-Request-Id); it describes the attempt
 * that served it (or the last one tried). kind "attempt": an earlier upstream attempt that
 * failed and was followed by a fallback; kind "router": the LLM router's own call. Both carry
 * the request's id in parent_request_id and ids of the form "<request id>.<suffix>". */
#define GW_USAGE_ID_MAX 80
struct gw_usage_row {
    char request_id[GW_USAGE_ID_MAX];
    char parent_request_id[GW_USAGE_ID_MAX]; /* "" for kind "chat" */
    char kind[12];           /* "chat" | "attempt" | "router" */
    int attempts;            /* upstream attempts made for the request (chat rows) */
    char route_method[16];   /* "explicit" | "heuristic" | "auto_router" | "fallback" */
    char node[64];           /* the gateway node that made the reservation */
    int64_t org_id;          /* 0 for the superadmin */
    int64_t key_row_id;      /* gw_key_rec.id */
    char provider[16];
    char model[64];          /* catalog id */
    char endpoint[32];       /* "chat.completions", "llm.chat", ... */
    int stream;
    char state[16];          /* "reserved" | "settled" | "failed" | "uncertain" */
    int64_t reserved_micros; /* worst-case cost reserved */
    int64_t reserved_tokens; /* worst-case tokens (prompt estimate + output cap) reserved */
    char subject[129];       /* a subject session's request: its subject ("" otherwise) */
    int64_t tokens_in, tokens_out, cached_tokens, reasoning_tokens;
    int64_t cost_micros;     /* actual cost once settled */
    int64_t latency_ms;
    int status;              /* HTTP status returned to the client */
    char error_code[48];     /* our error code, "" on success */
    char catalog_version[32];
    int64_t created_ms;
    int64_t settled_ms;
};

/* Open a store from a URL: "sqlite:PATH" (the directory is created if missing; WAL mode,
 * busy timeout) — "postgres://..." returns GW_EUNSUPP until that backend exists.
 * *out is new. Detail in eb. */
GW_NODISCARD int gw_store_open(const char *url, struct gw_store **out, struct gw_errbuf *eb);
void gw_store_free(struct gw_store *s);
/* "sqlite" or "postgres". */
const char *gw_store_backend(const struct gw_store *s);
/* Apply pending migrations. Safe to run concurrently from several processes. */
GW_NODISCARD int gw_store_migrate(struct gw_store *s, struct gw_errbuf *eb);
/* Current schema version (0 when empty). */
GW_NODISCARD int gw_store_schema_version(struct gw_store *s, int *out);

/* Orgs. create: GW_EEXIST when the slug is taken; *id_out may be NULL. */
GW_NODISCARD int gw_store_org_create(struct gw_store *s, const char *slug, const char *name,
                                     int64_t *id_out);
GW_NODISCARD int gw_store_org_get(struct gw_store *s, const char *slug, struct gw_org *out);
/* Replace the org's policy (providers, models, limits, conv) by slug. GW_ENOTFOUND if unknown. */
GW_NODISCARD int gw_store_org_set_policy(struct gw_store *s, const struct gw_org *o);

/* Keys. insert: fills rec->id and rec->created_ms; key_id must be unique (GW_EEXIST). */
GW_NODISCARD int gw_store_key_insert(struct gw_store *s, struct gw_key_rec *rec,
                                     const unsigned char hash[32]);
/* Find a key by the SHA-256 of the raw key, revoked or not (the caller checks), or by its
 * previous secret's (via_prev = 1; valid while now < prev_expires_ms, the caller checks; once
 * past, the store may answer GW_ENOTFOUND for it). GW_ENOTFOUND. */
GW_NODISCARD int gw_store_key_by_hash(struct gw_store *s, const unsigned char hash[32],
                                      struct gw_key_rec *out);
GW_NODISCARD int gw_store_key_get(struct gw_store *s, const char *key_id, struct gw_key_rec *out);
/* Call cb for each key of the org (newest first). cb returns non-zero to stop. */
typedef int (*gw_store_key_cb)(void *arg, const struct gw_key_rec *rec);
GW_NODISCARD int gw_store_key_list(struct gw_store *s, int64_t org_id, gw_store_key_cb cb,
                                   void *arg);
/* Replace a key's tier, allowlists and limits (by rec->key_id). GW_ENOTFOUND if unknown. */
GW_NODISCARD int gw_store_key_set_policy(struct gw_store *s, const struct gw_key_rec *rec);
/* Browser app clients (subject sessions): registered by an org admin, approved by the
 * superadmin, revocable. origins: the exact origins ("https://app.example.com[:port]")
 * allowed to exchange share codes, comma-separated. providers/models: allowlists narrowing
 * the org's ("" = the org's). */
struct gw_app_client {
    int64_t id;               /* internal row id: the list's order and cursor */
    char client_id[40];       /* public id, "ac_" + 24 hex digits */
    int64_t org_id;
    char org_slug[64];        /* filled on reads */
    char name[128];
    char origins[1024];
    char providers[256];
    char models[1024];
    int64_t session_ttl_s;    /* a session's lifetime */
    int approved;
    int64_t approved_ms;
    int revoked;
    int64_t revoked_ms;
    int64_t created_ms;
};
/* insert: fills rec->id and rec->created_ms; client_id must be unique (GW_EEXIST). */
GW_NODISCARD int gw_store_app_client_insert(struct gw_store *s, struct gw_app_client *rec);
/* By public id. GW_ENOTFOUND if unknown. */
GW_NODISCARD int gw_store_app_client_get(struct gw_store *s, const char *client_id,
                                         struct gw_app_client *out);
/* cb for each app client of the org (org_id 0: of every org) with a row id above after_id,
 * in row id order, at most limit of them. cb returns non-zero to stop. */
typedef int (*gw_store_app_client_cb)(void *arg, const struct gw_app_client *rec);
GW_NODISCARD int gw_store_app_client_list(struct gw_store *s, int64_t org_id, int64_t after_id,
                                          int limit, gw_store_app_client_cb cb, void *arg);
/* Approve / revoke by public id at now_ms. GW_ENOTFOUND if unknown. Approving twice keeps the
 * first time; revoking twice too. A revoked client cannot be approved (GW_EINVAL). */
GW_NODISCARD int gw_store_app_client_approve(struct gw_store *s, const char *client_id,
                                             int64_t now_ms);
GW_NODISCARD int gw_store_app_client_revoke(struct gw_store *s, const char *client_id,
                                            int64_t now_ms);
/* Replace a client's name, origins, allowlists and session lifetime (by rec->client_id).
 * GW_ENOTFOUND if unknown. */
GW_NODISCARD int gw_store_app_client_update(struct gw_store *s, const struct gw_app_client *rec);
/* Is origin one of an approved, unrevoked app client's? *out = 0/1 (CORS for the exchange). */
GW_NODISCARD int gw_store_app_origin_known(struct gw_store *s, const char *origin, int *out);
/* Subject sessions' share codes: minted by an app's backend for one subject, exchanged once by
 * the browser. Only the code's SHA-256 (hex) is stored. */
struct gw_share_code {
    char code_hash[65];
    char client_id[40]; /* the app client's public id */
    int64_t org_id;
    char subject[129];
    char challenge[64]; /* PKCE S256: base64url(SHA-256(verifier)), 43 characters */
    int64_t created_ms, expires_ms;
};
/* insert: GW_EEXIST when the hash is taken (as for the session's insert below). */
GW_NODISCARD int gw_store_share_code_insert(struct gw_store *s, const struct gw_share_code *c);
/* Use the code up, whatever happens next: the one caller that finds it unused gets its record
 * (0) and marks it used; every other, and an unknown code, GW_ENOTFOUND. Atomic under
 * concurrency (of connections and of nodes). Expiry is the caller's to check. */
GW_NODISCARD int gw_store_share_code_consume(struct gw_store *s, const char *code_hash,
                                             struct gw_share_code *out);
/* A subject session: the token's SHA-256 (hex) and the HMAC key its requests are signed with
 * (base64url; needed to check them, never logged), bound to one origin. */
struct gw_subject_session {
    char token_hash[65];
    char client_id[40];
    int64_t org_id;
    char subject[129];
    char origin[201];
    char hmac_key[48];
    int64_t created_ms, expires_ms;
};
GW_NODISCARD int gw_store_session_insert(struct gw_store *s, const struct gw_subject_session *ss);
/* By the token's hash. GW_ENOTFOUND if unknown (expiry is the caller's to check). */
GW_NODISCARD int gw_store_session_get(struct gw_store *s, const char *token_hash,
                                      struct gw_subject_session *out);
/* Delete what of subject sessions expired before now_ms (share codes, sessions, nonces), up to
 * limit of each; *count: how many in all. */
GW_NODISCARD int gw_store_session_purge(struct gw_store *s, int64_t now_ms, int limit,
                                        int64_t *count);
/* Burn a signed request's nonce for the session: 0 the first time, GW_EEXIST for a replay. */
GW_NODISCARD int gw_store_nonce_burn(struct gw_store *s, const char *token_hash,
                                     const char *nonce, int64_t expires_ms);

/* Revoke by public id. GW_ENOTFOUND if unknown; revoking twice is not an error. */
GW_NODISCARD int gw_store_key_revoke(struct gw_store *s, const char *key_id);
/* Does an unrevoked superadmin key exist? *out = 0/1. */
GW_NODISCARD int gw_store_superadmin_exists(struct gw_store *s, int *out);

/* Usage. reserve inserts the row (any state: a finished attempt row is inserted settled);
 * settle updates it by request_id with provider, model, reserved cost, the final tokens, cost,
 * latency, status, error code, attempts, route method and state (a fallback re-targets the
 * reservation this way, keeping state "reserved"). */
GW_NODISCARD int gw_store_usage_reserve(struct gw_store *s, const struct gw_usage_row *row);
GW_NODISCARD int gw_store_usage_settle(struct gw_store *s, const struct gw_usage_row *row);
GW_NODISCARD int gw_store_usage_get(struct gw_store *s, const char *request_id,
                                    struct gw_usage_row *out);
/* Scopes usage is counted in. */
enum gw_scope { GW_SCOPE_KEY = 0, GW_SCOPE_ORG = 1 };
/* What a key (by row id) or an org has spent since since_ms (rows created from then on, every
 * kind): settled costs, plus reservations still in flight at their reserved worst case. */
GW_NODISCARD int gw_store_usage_spent(struct gw_store *s, enum gw_scope scope, int64_t id,
                                      int64_t since_ms, int64_t *micros);
/* Call cb for each usage row of the scope created since since_ms, oldest first: its time,
 * whether it is a request (kind "chat") and its tokens (in + out). cb returns non-zero to
 * stop. */
typedef int (*gw_store_recent_cb)(void *arg, int64_t created_ms, int is_request, int64_t tokens);
GW_NODISCARD int gw_store_usage_recent(struct gw_store *s, enum gw_scope scope, int64_t id,
                                       int64_t since_ms, gw_store_recent_cb cb, void *arg);

/* A scope's usage as limits see it, read inside a transaction (the store-side limits of a
 * shared store; the SQLite deployment keeps these in memory instead). */
struct gw_scope_usage {
    int64_t requests;    /* requests admitted in the hour buckets from hour_start on */
    int64_t tokens;      /* and the tokens they hold or used */
    int64_t inflight;    /* kind "chat" rows still reserved */
    int64_t held_usd;    /* reserved rows' worst cases */
    int64_t day_spent;   /* cost of rows since the budget day began (reserved at worst case) */
    int64_t month_spent; /* and since the budget month began */
};
/* Transactions (READ COMMITTED) and per-scope advisory locks held to their end; used by the
 * store-side admission. lock_scope: take org before key. */
GW_NODISCARD int gw_store_tx_begin(struct gw_store *s);
GW_NODISCARD int gw_store_tx_commit(struct gw_store *s);
void gw_store_tx_rollback(struct gw_store *s);
/* Is a transaction open? (SQLite ends one by itself after some errors: disk full, I/O.) */
int gw_store_in_tx(struct gw_store *s);
/* This connection is the process's busy writer: on SQLite its commits no longer checkpoint the
 * WAL themselves (a checkpoint syncs the disk, which would stall every queued write); a thread
 * of its own does, once the WAL passes 1000 pages. A no-op where it does not apply. */
GW_NODISCARD int gw_store_writer_mode(struct gw_store *s);
GW_NODISCARD int gw_store_lock_scope(struct gw_store *s, enum gw_scope scope, int64_t id);
/* What the snapshot must read (the rest reads as 0): the sliding hour (usage_rate buckets from
 * the second hour_start on), what is in flight, the budget windows (usage_totals). */
enum { GW_SNAP_HOUR = 1, GW_SNAP_INFLIGHT = 2, GW_SNAP_BUDGET = 4 };
GW_NODISCARD int gw_store_usage_snapshot(struct gw_store *s, enum gw_scope scope, int64_t id,
                                         int64_t hour_start, int64_t day_start,
                                         int64_t month_start, int want,
                                         struct gw_scope_usage *out);
/* The start of an admission that checks its limits in the store: a transaction, the scopes'
 * locks asked for (org before key), then what each scope's want (GW_SNAP_*; 0: nothing)
 * reads, into key and org (zeroed first). On success the transaction stays open, the locks
 * held; on failure none is. (PostgreSQL sends it all at once: one round trip.) */
struct gw_admission_read {
    int lock_org, lock_key;
    int64_t org_id, key_id;
    int org_want, key_want;
    int64_t hour_start, day_start, month_start;
};
GW_NODISCARD int gw_store_admission_begin(struct gw_store *s, const struct gw_admission_read *r,
                                          struct gw_scope_usage *key,
                                          struct gw_scope_usage *org);
/* A change to the counters of a key and (org_id > 0) its org: usd to the spend of the budget
 * day and month starting at day_start and month_start (usage_totals); requests and tokens to
 * the sliding hour's bucket of `second` (usage_rate). prune_before > 0 also drops hour buckets
 * older than that second. */
struct gw_counters_delta {
    int64_t key_id, org_id;
    int64_t day_start, month_start;
    int64_t usd;
    int64_t second;
    int64_t requests, tokens;
    int64_t prune_before;
    /* nothing holds the key's (org's) lock for this change: it may go to a shard of the
     * counter that this connection alone writes, rather than the one the lock holders share */
    int spread_key, spread_org;
};
GW_NODISCARD int gw_store_counters_add(struct gw_store *s, const struct gw_counters_delta *d);
/* gw_store_usage_reserve (settle) and gw_store_counters_add in one atomic step: inside the
 * caller's transaction when one is open, else on their own. A counted settlement changes only
 * a row still reserved (GW_ENOTFOUND otherwise). */
GW_NODISCARD int gw_store_usage_reserve_counted(struct gw_store *s,
                                                const struct gw_usage_row *row,
                                                const struct gw_counters_delta *d);
GW_NODISCARD int gw_store_usage_settle_counted(struct gw_store *s,
                                               const struct gw_usage_row *row,
                                               const struct gw_counters_delta *d);
/* One of those two, or a conversation's turns, as data, so that many can run together: a
 * plain write. A key's lookup by hash goes the same way, though it writes nothing (a plain
 * read: PostgreSQL looks up the keys of many requests in one statement). */
struct gw_conv_append;
struct gw_store_write {
    int settle; /* 0: gw_store_usage_reserve_counted, 1: gw_store_usage_settle_counted */
    const struct gw_usage_row *row;
    struct gw_counters_delta d;
    const struct gw_conv_append *conv; /* set: gw_store_conv_append(conv) instead (no result) */
    const unsigned char *key_hash;     /* set: gw_store_key_by_hash(key_hash, key) instead */
    struct gw_key_rec *key;
    int rc; /* its result, set by gw_store_write_many */
};
/* Run n plain writes outside any transaction, each atomic on its own and with its own result
 * (PostgreSQL runs many as one statement: one commit for all; many lookups: one statement). */
void gw_store_write_many(struct gw_store *s, struct gw_store_write *const *w, int n);
/* The scope's hour buckets from since_second on, oldest first: cb(arg, second, requests,
 * tokens); cb returns non-zero to stop. */
typedef int (*gw_store_rate_cb)(void *arg, int64_t second, int64_t requests, int64_t tokens);
GW_NODISCARD int gw_store_rate_list(struct gw_store *s, enum gw_scope scope, int64_t id,
                                    int64_t since_second, gw_store_rate_cb cb, void *arg);

/* An idempotency record: the claim of (caller, endpoint, key) and, once done, the answer. */
#define GW_IDEM_KEY_MAX 255
struct gw_idem_rec {
    char caller[48];          /* "key:<row id>" (or a session subject later) */
    char endpoint[32];
    char key[GW_IDEM_KEY_MAX + 1];
    char fingerprint[65];     /* hex SHA-256 of the request body's bytes */
    char state[16];           /* "in_flight" | "done" | "uncertain" | "too_large" */
    char request_id[80];      /* the request that executes it */
    char node[64];
    int status;               /* done: the HTTP status answered */
    char *headers;            /* done: "Name: value\n" lines worth replaying; owned */
    char *body;               /* done: the bytes answered (a whole SSE stream for streams); owned */
    size_t body_len;
    int64_t created_ms, completed_ms, expires_ms;
};
/* Free the owned strings of r (NULL-safe) and zero them. */
void gw_idem_rec_cleanup(struct gw_idem_rec *r);
/* Claim rec's (caller, endpoint, key) for rec->request_id, atomically: a new claim, or one
 * replacing an expired record (expires_ms < now). *claimed = 1 then; else *claimed = 0 and
 * *existing holds the record that stands (owned strings: gw_idem_rec_cleanup). */
GW_NODISCARD int gw_store_idem_claim(struct gw_store *s, const struct gw_idem_rec *rec,
                                     int64_t now_ms, int *claimed, struct gw_idem_rec *existing);
/* Store the outcome of our claim (state, status, headers, body, completed_ms), matched by
 * request_id. GW_ENOTFOUND if the claim is not ours (any more). */
GW_NODISCARD int gw_store_idem_complete(struct gw_store *s, const struct gw_idem_rec *rec);
/* Give our claim up (the request was refused before anything was sent): a retry runs. */
GW_NODISCARD int gw_store_idem_release(struct gw_store *s, const struct gw_idem_rec *rec);
/* Claims still in flight for node (left by its dead process; "" = any node's) become
 * "uncertain": a retry gets 502 uncertain_upstream_state, never a second execution. */
GW_NODISCARD int gw_store_idem_recover(struct gw_store *s, const char *node, int64_t *count);
/* Delete up to limit records that expired before now. *count = how many. */
GW_NODISCARD int gw_store_idem_purge(struct gw_store *s, int64_t now_ms, int limit,
                                     int64_t *count);

/* Usage history. Every field of the filter is optional (0 / ""). */
struct gw_usage_filter {
    int64_t org_id;
    int64_t key_row_id;
    char model[64];
    int64_t from_ms, to_ms; /* created_ms in [from, to); to 0: no end */
    char provider[16];
};
struct gw_usage_totals {
    int64_t rows, requests;  /* every row / kind "chat" rows */
    int64_t tokens_in, tokens_out, cost_micros;
};
/* Call cb for each matching row, oldest first; then fill *totals (may be NULL) — the totals
 * are the sums over exactly the rows handed to cb. */
typedef int (*gw_store_usage_cb)(void *arg, const struct gw_usage_row *row);
GW_NODISCARD int gw_store_usage_list(struct gw_store *s, const struct gw_usage_filter *f,
                                     gw_store_usage_cb cb, void *arg,
                                     struct gw_usage_totals *totals);
/* Mark rows still "reserved" by node (left by its dead process; "" = by any node) as
 * "uncertain" charged at their reserved cost. Returns the number of rows changed in *count. */
GW_NODISCARD int gw_store_usage_recover(struct gw_store *s, const char *node, int64_t *count);

/* ---- the admin plane's reads (core/admin, src/admin) ---- */
/* Usage grouped: for the rows matching f (provider too, when f->provider is not ""), one group
 * per day (UTC, its start in unix ms as the key "YYYY-MM-DD"), key (the key's public key_id;
 * a subject session's rows: "app:<client_id>"), model or provider, in key order; cb gets the
 * group's key and its sums (rows, requests = kind "chat" rows, tokens, cost) — a reserved
 * row counts its reserved cost, as spend does. Then *totals (may be NULL): the sums over
 * every row of every group. At most max_groups groups (GW_ETOOBIG past it). Indexed: the time
 * range is always bounded by the caller. */
enum gw_usage_group { GW_GROUP_DAY, GW_GROUP_KEY, GW_GROUP_MODEL, GW_GROUP_PROVIDER };
struct gw_usage_sum {
    char group[80];
    int64_t rows, requests;
    int64_t tokens_in, tokens_out, cost_micros;
};
typedef int (*gw_store_group_cb)(void *arg, const struct gw_usage_sum *g);
GW_NODISCARD int gw_store_usage_group(struct gw_store *s, const struct gw_usage_filter *f,
                                      enum gw_usage_group by, int max_groups,
                                      gw_store_group_cb cb, void *arg,
                                      struct gw_usage_totals *totals);
/* One page of usage rows for an export: rows matching f, in (created_ms, request_id) order,
 * strictly after (after_ms, after_id) (0, "": from the first), at most limit; cb gets each row
 * with its key's public key_id (a subject session's: "app:<client_id>") and its org's slug
 * ("" for none). Reserved rows count their reserved cost in cost_micros, as above. */
typedef int (*gw_store_usage_page_cb)(void *arg, const struct gw_usage_row *row,
                                      const char *key_id, const char *org_slug);
GW_NODISCARD int gw_store_usage_page(struct gw_store *s, const struct gw_usage_filter *f,
                                     int64_t after_ms, const char *after_id, int limit,
                                     gw_store_usage_page_cb cb, void *arg);
/* Orgs, in row id order after after_id, at most limit (0: all). */
typedef int (*gw_store_org_cb)(void *arg, const struct gw_org *o);
GW_NODISCARD int gw_store_org_list(struct gw_store *s, int64_t after_id, int limit,
                                   gw_store_org_cb cb, void *arg);
/* An org by row id. GW_ENOTFOUND. */
GW_NODISCARD int gw_store_org_get_id(struct gw_store *s, int64_t id, struct gw_org *out);
/* Rotate a key's secret: new_hash becomes the key's; the old hash stays valid until
 * prev_expires_ms (0: not at all), so that callers can move over. The key keeps its id, its
 * policy and its usage (its budgets go on). GW_ENOTFOUND if unknown or revoked. */
GW_NODISCARD int gw_store_key_rotate(struct gw_store *s, const char *key_id,
                                     const unsigned char new_hash[32], const char *new_prefix,
                                     int64_t prev_expires_ms);
/* Counts for the health surface: idempotency records quarantined ("uncertain"), usage rows
 * "uncertain", expired idempotency records not yet purged (at now_ms). */
struct gw_store_health {
    int64_t idem_uncertain, usage_uncertain, idem_expired;
};
GW_NODISCARD int gw_store_health(struct gw_store *s, int64_t now_ms, struct gw_store_health *out);

/* ---- conversations (src/conv) ----
 * A conversation belongs to one owner in one org: owner is "key:<key_id>" for an API key's,
 * "subject:<app client id>:<subject>" for a subject session's. conv_id is the caller's own
 * conversation_id (unique per org and owner); ref is its public id ("cv_" + 24 hex digits),
 * by which the org sees it once shared and exports name it. Turns are numbered from 1 (seq);
 * message is the JSON text of one chat message ({"role", "content", ...}). */
#define GW_CONV_ID_MAX 128
#define GW_CONV_OWNER_MAX 200
struct gw_conv {
    int64_t id;                   /* row id */
    char ref[32];
    int64_t org_id;
    char owner[GW_CONV_OWNER_MAX];
    char conv_id[GW_CONV_ID_MAX];
    char title[128];              /* the start of its first user message */
    int shared;
    int64_t turns;                /* turns stored: the seq of the last one */
    char *summary;                /* owned: what turns 1..summary_upto said ("" none) */
    int64_t summary_upto;
    int64_t created_ms, updated_ms;
};
/* Free conv's owned strings (NULL-safe) and zero them. */
void gw_conv_cleanup(struct gw_conv *c);
struct gw_conv_turn {
    int64_t seq;                  /* set by the store */
    char role[16];                /* "user" | "assistant" | "tool" | ... */
    char *message;                /* JSON text; owned by whoever filled it */
    size_t message_len;           /* (to append: 0 means up to the NUL) */
    char request_id[80];          /* the request that added it */
    char model[64];               /* an answer's model ("" for the caller's turns) */
    int64_t tokens;               /* its token estimate */
    int64_t created_ms;
};
/* Append n turns to the owner's conversation conv_id, creating it (with ref and title) when
 * new, atomically (concurrent appends get consecutive seqs, never the same); inside the
 * caller's transaction when one is open. *conv gets the conversation's row as it is after the
 * append (owned summary: gw_conv_cleanup); may be NULL. A message over 1 MiB is GW_ETOOBIG; a
 * title longer than the field is cut (at a UTF-8 character's boundary); GW_EEXIST when a new
 * conversation's ref is taken. */
struct gw_conv_append {
    int64_t org_id;
    const char *owner;
    const char *conv_id;
    const char *ref;              /* for a new conversation */
    const char *title;            /* for a new conversation */
    const struct gw_conv_turn *turns;
    int n;
    int64_t now_ms;
};
GW_NODISCARD int gw_store_conv_append(struct gw_store *s, const struct gw_conv_append *a,
                                      struct gw_conv *conv);
/* The owner's conversation conv_id. GW_ENOTFOUND if there is none (in that org, of that
 * owner). */
GW_NODISCARD int gw_store_conv_get(struct gw_store *s, int64_t org_id, const char *owner,
                                   const char *conv_id, struct gw_conv *out);
/* A conversation of the org by ref, only when it is shared (GW_ENOTFOUND otherwise). */
GW_NODISCARD int gw_store_conv_get_shared(struct gw_store *s, int64_t org_id, const char *ref,
                                          struct gw_conv *out);
/* cb for each turn of conversation (row id) conv with seq > after_seq, in seq order, at most
 * limit (0: all). The turn (and its message) is the store's, valid during cb only. cb returns
 * non-zero to stop. */
typedef int (*gw_store_turn_cb)(void *arg, const struct gw_conv_turn *t);
GW_NODISCARD int gw_store_conv_turns(struct gw_store *s, int64_t conv, int64_t after_seq,
                                     int limit, gw_store_turn_cb cb, void *arg);
/* Conversations, newest first (updated_ms, then row id, descending), strictly after the cursor
 * (before_ms, before_id; 0, 0: from the newest), at most limit. Filters: org_id (always);
 * owner (NULL: any); shared_only; q (NULL or "": none) — a text that the title or one of the
 * turns' messages contains (case-insensitive for ASCII). cb gets the store's row (summary not
 * filled: ""), valid during cb only; it returns non-zero to stop. */
struct gw_conv_filter {
    int64_t org_id;
    const char *owner;
    int shared_only;
    const char *q;
    int64_t before_ms, before_id;
    int limit;
};
typedef int (*gw_store_conv_cb)(void *arg, const struct gw_conv *c);
GW_NODISCARD int gw_store_conv_list(struct gw_store *s, const struct gw_conv_filter *f,
                                    gw_store_conv_cb cb, void *arg);
/* Share (1) or withdraw (0) the owner's conversation. GW_ENOTFOUND if none. */
GW_NODISCARD int gw_store_conv_set_shared(struct gw_store *s, int64_t org_id, const char *owner,
                                          const char *conv_id, int shared);
/* Record a summary of turns 1..upto, unless one of as many turns or more is there already (that,
 * and an unknown conv, are no error). A summary over 64 KiB is GW_ETOOBIG. */
GW_NODISCARD int gw_store_conv_set_summary(struct gw_store *s, int64_t conv, const char *summary,
                                           int64_t upto);
/* Delete the owner's conversation: its turns, its row, and the idempotency records of the
 * requests that added turns (they hold the answers' bytes), so that nothing of it is left to
 * read. SQLite overwrites the freed bytes (secure_delete) and checkpoints the WAL so that its
 * old frames go too. Usage rows stay (they hold no content). GW_ENOTFOUND if none. */
GW_NODISCARD int gw_store_conv_delete(struct gw_store *s, int64_t org_id, const char *owner,
                                      const char *conv_id);
/* Exports: the org's conversations (shared_only: shared ones) with updated_ms in
 * [from_ms, to_ms) (to_ms 0: no end), in row id order after after_id, at most limit; cb as
 * for gw_store_conv_list but with summary filled (valid during cb only). */
GW_NODISCARD int gw_store_conv_export(struct gw_store *s, int64_t org_id, int shared_only,
                                      int64_t from_ms, int64_t to_ms, int64_t after_id, int limit,
                                      gw_store_conv_cb cb, void *arg);
/* Delete (as gw_store_conv_delete) up to limit conversations untouched longer than their org's
 * retention_days (orgs with retention_days > 0). *count: how many. */
GW_NODISCARD int gw_store_conv_purge(struct gw_store *s, int64_t now_ms, int limit,
                                     int64_t *count);

/* ---- audit trail: append only ----
 * Who (the acting key's public id and role), what (action, e.g. "conversations.export"), on
 * what (target), in which org, under which request; detail is JSON text (no secret ever). */
struct gw_audit {
    int64_t id;               /* set by the store */
    int64_t created_ms;
    int64_t org_id;           /* the org acted on (0: none / the gateway) */
    char actor[40];           /* key_id */
    char actor_role[16];
    char action[64];
    char target[200];
    char request_id[80];
    const char *detail;       /* JSON text ("" or NULL: {}) */
};
GW_NODISCARD int gw_store_audit_append(struct gw_store *s, struct gw_audit *a);
/* cb for each entry of the org (0: every org) with id > after_id, in id order, at most limit;
 * the entry (detail too) is the store's, valid during cb only. */
typedef int (*gw_store_audit_cb)(void *arg, const struct gw_audit *a);
GW_NODISCARD int gw_store_audit_list(struct gw_store *s, int64_t org_id, int64_t after_id,
                                     int limit, gw_store_audit_cb cb, void *arg);

#endif
