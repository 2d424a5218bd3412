/*
 * store/store_int — what a store backend implements (internal to src/store/).
 *
 * A backend's connection struct begins with struct gw_store, whose ops table the public
 * functions of store.h dispatch through (store.c). Every op has the contract of the public
 * function of the same name.
 */
#ifndef GW_STORE_STORE_INT_H
#define GW_STORE_STORE_INT_H

#include "store/store.h"

/* SQL both backends build their statements from (only placeholders differ: ?N and $N). */
#define LIMIT_COLS(t)                                                                              \
    t ".rph, " t ".tph, " t ".max_concurrent, " t ".daily_usd_micros, " t ".monthly_usd_micros, "  \
    t ".max_request_usd_micros"
/* A key's row with its org's policy (read_key's columns): KEY_SELECT's columns FROM KEY_FROM. */
#define KEY_SELECT                                                                                 \
    "k.id, k.key_id, COALESCE(k.org_id, 0), COALESCE(o.slug, ''), k.name, k.prefix, k.role, "      \
    "k.tier, k.providers, k.models, k.revoked, k.created_ms, k.revoked_ms, " LIMIT_COLS("k") ", "  \
    "COALESCE(o.providers, ''), COALESCE(o.models, ''), "                                          \
    "COALESCE(o.rph, 0), COALESCE(o.tph, 0), COALESCE(o.max_concurrent, 0), "                      \
    "COALESCE(o.daily_usd_micros, 0), COALESCE(o.monthly_usd_micros, 0), "                         \
    "COALESCE(o.max_request_usd_micros, 0), "                                                      \
    "COALESCE(o.capture, 1), COALESCE(o.retention_days, 0), COALESCE(o.export_all, 0), "           \
    "k.rotated_ms, k.prev_expires_ms"
#define KEY_FROM "FROM api_keys k LEFT JOIN orgs o ON o.id = k.org_id "
#define KEY_COLS KEY_SELECT " " KEY_FROM
#define KEY_COL_ORG_CONV 27 /* the first of KEY_COLS' org conv policy (capture, retention, all) */
#define KEY_COL_ROTATED 30  /* rotated_ms, then prev_expires_ms */
#define KEY_COL_VIA 32      /* by_hash only: 1 when found by the previous secret's hash */
/* By the hash of the key's secret ($1) or, while it is valid (after $2, now), of its previous
 * one: two lookups, each through its own index (the UNIQUE key_hash and the partial
 * api_keys_prev_hash, which the literal prev_key_hash <> '' lets the planner use); the current
 * secret wins should both match. p1, p2: the placeholders. */
#define KEY_BY_HASH_SQL(p1, p2)                                                                    \
    "SELECT " KEY_SELECT ", 0 AS via " KEY_FROM "WHERE k.key_hash = " p1 " UNION ALL SELECT "      \
    KEY_SELECT ", 1 " KEY_FROM "WHERE k.prev_key_hash = " p1 " AND k.prev_key_hash <> '' AND "    \
    "k.prev_expires_ms > " p2 " ORDER BY via LIMIT 1"
#define ORG_COLS                                                                                   \
    "id, slug, name, created_ms, providers, models, " LIMIT_COLS("orgs") ", capture, "             \
    "retention_days, export_all"
#define ORG_COL_CONV 12 /* the first of ORG_COLS' conv policy */
/* A conversation's row (read_conv's columns); the list's leaves the summary out. */
#define CONV_COLS                                                                                  \
    "id, ref, org_id, owner, conv_id, title, shared, turns, summary, summary_upto, created_ms, "   \
    "updated_ms"
#define CONV_LIST_COLS                                                                             \
    "id, ref, org_id, owner, conv_id, title, shared, turns, '', summary_upto, created_ms, "        \
    "updated_ms"
#define TURN_COLS "seq, role, message, request_id, model, tokens, created_ms"
#define AUDIT_COLS "id, created_ms, org_id, actor, actor_role, action, target, request_id, detail"
/* Bounds of stored text (GW_ETOOBIG beyond them). */
#define GW_CONV_MESSAGE_MAX (1u << 20)
#define GW_CONV_SUMMARY_MAX (64u << 10)
#define GW_AUDIT_DETAIL_MAX (64u << 10)
#define APP_CLIENT_COLS                                                                            \
    "a.id, a.client_id, a.org_id, o.slug, a.name, a.origins, a.providers, a.models, "              \
    "a.session_ttl_s, a.approved, a.approved_ms, a.revoked, a.revoked_ms, a.created_ms "           \
    "FROM app_clients a JOIN orgs o ON o.id = a.org_id "
#define SHARE_CODE_COLS "client_id, org_id, subject, challenge, created_ms, expires_ms"
#define SESSION_COLS                                                                               \
    "token_hash, client_id, org_id, subject, origin, hmac_key, created_ms, expires_ms"
#define USAGE_COLS                                                                                 \
    "request_id, org_id, key_row_id, provider, model, endpoint, stream, state, reserved_micros, "  \
    "tokens_in, tokens_out, cached_tokens, reasoning_tokens, cost_micros, latency_ms, status, "    \
    "error_code, catalog_version, created_ms, settled_ms, parent_request_id, kind, attempts, "    \
    "route_method, node, reserved_tokens, subject"
/* A usage row's cost as spend counts it: a reservation at its worst case. */
#define USAGE_COST "CASE WHEN state = 'reserved' THEN reserved_micros ELSE cost_micros END"
/* The sums of usage_group (over usage rows): rows, requests, tokens in and out, cost. */
#define USAGE_SUMS                                                                                 \
    "count(*) AS n, SUM(CASE WHEN kind = 'chat' THEN 1 ELSE 0 END) AS req, "                       \
    "SUM(tokens_in) AS tin, SUM(tokens_out) AS tout, SUM(" USAGE_COST ") AS cost"
/* A usage row's key as the admin plane names it (u: the row's alias; k: api_keys, a:
 * app_clients joined on it): the key's key_id, or "app:<client_id>" for a subject session's
 * (key_row_id = -app_clients.id). */
#define USAGE_KEY_NAME(u)                                                                          \
    "CASE WHEN " u ".key_row_id < 0 THEN 'app:' || COALESCE(a.client_id, '') ELSE "               \
    "COALESCE(k.key_id, '') END"
#define USAGE_KEY_JOINS(u)                                                                         \
    "LEFT JOIN api_keys k ON k.id = " u ".key_row_id LEFT JOIN app_clients a ON " u               \
    ".key_row_id < 0 AND a.id = -" u ".key_row_id "
#define SPENT_SQL                                                                                  \
    "SELECT COALESCE(SUM(CASE WHEN state = 'reserved' THEN reserved_micros ELSE cost_micros "      \
    "END), 0) FROM usage WHERE "

struct gw_store_ops {
    const char *name; /* "sqlite" | "postgres" */
    void (*free)(struct gw_store *s);
    int (*migrate)(struct gw_store *s, struct gw_errbuf *eb);
    int (*schema_version)(struct gw_store *s, int *out);
    int (*org_create)(struct gw_store *s, const char *slug, const char *name, int64_t *id_out);
    int (*org_get)(struct gw_store *s, const char *slug, struct gw_org *out);
    int (*org_set_policy)(struct gw_store *s, const struct gw_org *o);
    int (*key_insert)(struct gw_store *s, struct gw_key_rec *rec, const unsigned char hash[32]);
    int (*key_by_hash)(struct gw_store *s, const unsigned char hash[32], struct gw_key_rec *out);
    int (*key_get)(struct gw_store *s, const char *key_id, struct gw_key_rec *out);
    int (*key_list)(struct gw_store *s, int64_t org_id, gw_store_key_cb cb, void *arg);
    int (*key_set_policy)(struct gw_store *s, const struct gw_key_rec *rec);
    int (*key_revoke)(struct gw_store *s, const char *key_id);
    int (*app_client_insert)(struct gw_store *s, struct gw_app_client *rec);
    int (*app_client_get)(struct gw_store *s, const char *client_id, struct gw_app_client *out);
    int (*app_client_list)(struct gw_store *s, int64_t org_id, int64_t after_id, int limit,
                           gw_store_app_client_cb cb, void *arg);
    int (*app_client_approve)(struct gw_store *s, const char *client_id, int64_t now_ms);
    int (*app_client_revoke)(struct gw_store *s, const char *client_id, int64_t now_ms);
    int (*app_client_update)(struct gw_store *s, const struct gw_app_client *rec);
    int (*app_origin_known)(struct gw_store *s, const char *origin, int *out);
    int (*share_code_insert)(struct gw_store *s, const struct gw_share_code *c);
    int (*share_code_consume)(struct gw_store *s, const char *code_hash,
                              struct gw_share_code *out);
    int (*session_insert)(struct gw_store *s, const struct gw_subject_session *ss);
    int (*session_get)(struct gw_store *s, const char *token_hash, struct gw_subject_session *out);
    int (*nonce_burn)(struct gw_store *s, const char *token_hash, const char *nonce,
                      int64_t expires_ms);
    int (*session_purge)(struct gw_store *s, int64_t now_ms, int limit, int64_t *count);
    int (*superadmin_exists)(struct gw_store *s, int *out);
    int (*usage_reserve)(struct gw_store *s, const struct gw_usage_row *row);
    int (*usage_settle)(struct gw_store *s, const struct gw_usage_row *row);
    int (*usage_get)(struct gw_store *s, const char *request_id, struct gw_usage_row *out);
    int (*usage_spent)(struct gw_store *s, enum gw_scope scope, int64_t id, int64_t since_ms,
                       int64_t *micros);
    int (*usage_recent)(struct gw_store *s, enum gw_scope scope, int64_t id, int64_t since_ms,
                        gw_store_recent_cb cb, void *arg);
    int (*usage_list)(struct gw_store *s, const struct gw_usage_filter *f, gw_store_usage_cb cb,
                      void *arg, struct gw_usage_totals *totals);
    int (*usage_recover)(struct gw_store *s, const char *node, int64_t *count);
    /* the admin plane's reads. store.c has checked the arguments and normalised f: to_ms > 0
     * (INT64_MAX: no end); for a page, from_ms >= after_ms (so the index range starts at the
     * cursor) and after_id not NULL; max_groups > 0 */
    int (*usage_group)(struct gw_store *s, const struct gw_usage_filter *f,
                       enum gw_usage_group by, int max_groups, gw_store_group_cb cb, void *arg,
                       struct gw_usage_totals *totals);
    int (*usage_page)(struct gw_store *s, const struct gw_usage_filter *f, int64_t after_ms,
                      const char *after_id, int limit, gw_store_usage_page_cb cb, void *arg);
    int (*org_list)(struct gw_store *s, int64_t after_id, int limit, gw_store_org_cb cb,
                    void *arg);
    int (*org_get_id)(struct gw_store *s, int64_t id, struct gw_org *out);
    int (*key_rotate)(struct gw_store *s, const char *key_id, const unsigned char new_hash[32],
                      const char *new_prefix, int64_t prev_expires_ms);
    int (*health)(struct gw_store *s, int64_t now_ms, struct gw_store_health *out);
    int (*tx)(struct gw_store *s, const char *what); /* "BEGIN", "COMMIT", "ROLLBACK" */
    int (*in_tx)(struct gw_store *s);                /* a transaction is open */
    int (*writer_mode)(struct gw_store *s);          /* optional: see gw_store_writer_mode */
    int (*lock_scope)(struct gw_store *s, enum gw_scope scope, int64_t id);
    /* NULL: gw_store_admission_begin runs tx, lock_scope and usage_snapshot in turn */
    int (*admission_begin)(struct gw_store *s, const struct gw_admission_read *r,
                           struct gw_scope_usage *key, struct gw_scope_usage *org);
    int (*usage_snapshot)(struct gw_store *s, enum gw_scope scope, int64_t id, int64_t hour_start,
                          int64_t day_start, int64_t month_start, int want,
                          struct gw_scope_usage *out);
    int (*counters_add)(struct gw_store *s, const struct gw_counters_delta *d);
    /* optional: a row's write and the counters' change in one statement (else a transaction
     * around usage_reserve or usage_settle and counters_add) */
    int (*usage_reserve_counted)(struct gw_store *s, const struct gw_usage_row *row,
                                 const struct gw_counters_delta *d);
    int (*usage_settle_counted)(struct gw_store *s, const struct gw_usage_row *row,
                                const struct gw_counters_delta *d);
    /* optional: many plain writes together (else one by one) */
    void (*write_many)(struct gw_store *s, struct gw_store_write *const *w, int n);
    int (*rate_list)(struct gw_store *s, enum gw_scope scope, int64_t id, int64_t since_second,
                     gw_store_rate_cb cb, void *arg);
    int (*idem_claim)(struct gw_store *s, const struct gw_idem_rec *rec, int64_t now_ms,
                      int *claimed, struct gw_idem_rec *existing);
    int (*idem_complete)(struct gw_store *s, const struct gw_idem_rec *rec);
    int (*idem_release)(struct gw_store *s, const struct gw_idem_rec *rec);
    int (*idem_recover)(struct gw_store *s, const char *node, int64_t *count);
    int (*idem_purge)(struct gw_store *s, int64_t now_ms, int limit, int64_t *count);
    /* conversations: store.c has checked the arguments (lengths, bounds, limit >= 0) */
    int (*conv_append)(struct gw_store *s, const struct gw_conv_append *a, struct gw_conv *conv);
    int (*conv_get)(struct gw_store *s, int64_t org_id, const char *owner, const char *conv_id,
                    struct gw_conv *out);
    int (*conv_get_shared)(struct gw_store *s, int64_t org_id, const char *ref,
                           struct gw_conv *out);
    int (*conv_turns)(struct gw_store *s, int64_t conv, int64_t after_seq, int limit,
                      gw_store_turn_cb cb, void *arg);
    /* f->q is the LIKE pattern already ("" none: see store.c), the cursor never 0 */
    int (*conv_list)(struct gw_store *s, const struct gw_conv_filter *f, gw_store_conv_cb cb,
                     void *arg);
    int (*conv_set_shared)(struct gw_store *s, int64_t org_id, const char *owner,
                           const char *conv_id, int shared);
    int (*conv_set_summary)(struct gw_store *s, int64_t conv, const char *summary, int64_t upto);
    int (*conv_delete)(struct gw_store *s, int64_t org_id, const char *owner, const char *conv_id);
    int (*conv_export)(struct gw_store *s, int64_t org_id, int shared_only, int64_t from_ms,
                       int64_t to_ms, int64_t after_id, int limit, gw_store_conv_cb cb,
                       void *arg);
    int (*conv_purge)(struct gw_store *s, int64_t now_ms, int limit, int64_t *count);
    int (*audit_append)(struct gw_store *s, struct gw_audit *a); /* created_ms and detail set */
    int (*audit_list)(struct gw_store *s, int64_t org_id, int64_t after_id, int limit,
                      gw_store_audit_cb cb, void *arg);
};

struct gw_store {
    const struct gw_store_ops *ops;
};

/* The versioned schema (schema.c): migration v is gw_schema_migrations[v - 1]. */
/* A plain write on its own, as gw_store_write_many runs it without a backend's batch. */
void gw_store_write_one(struct gw_store *s, struct gw_store_write *w);
/* 1 when a backend may store the append as it is: valid, with each message_len set and a
 * title that fits (what gw_store_conv_append checks and fixes first); 0: through it. */
int gw_store_conv_append_ready(const struct gw_conv_append *a);

#define GW_SCHEMA_SQLITE_ONLY "-- sqlite only\n"
#define GW_SCHEMA_POSTGRES_ONLY "-- postgres only\n"
extern const char *const gw_schema_migrations[];
extern const int gw_schema_count;

/* Backends. */
GW_NODISCARD int gw_sqlite_open(const char *url, struct gw_store **out, struct gw_errbuf *eb);
GW_NODISCARD int gw_postgres_open(const char *url, struct gw_store **out, struct gw_errbuf *eb);
#ifdef GW_TEST_HOOKS
/* Test builds only: the WAL size (bytes) past which the SQLite writer's checkpoints restart
 * it, for stores put in writer mode from then on (0: the default, 128 MiB). */
void gw_sqlite_test_ckpt_restart_bytes(long bytes);
#endif

#endif
