/*
 * store/sqlite — the SQLite backend of store.h (WAL mode, one connection per thread).
 *
 * Invariants: every statement is prepared once per connection and bound per use; no SQL is
 * built from input. Migrations run under BEGIN IMMEDIATE, so concurrent migrators serialise and
 * each version is applied once. Key hashes are stored as 64 lower-case hex characters. Text read
 * back is copied with bounds; a NULL column reads as "" or 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store/store_int.h"
#include "store/walvfs.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/util.h"



enum stmt_id {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_ORG_INSERT,
    S_ORG_GET,
    S_KEY_INSERT,
    S_KEY_BY_HASH,
    S_KEY_GET,
    S_KEY_LIST,
    S_KEY_REVOKE,
    S_APP_CLIENT_INSERT,
    S_APP_CLIENT_GET,
    S_APP_CLIENT_LIST,
    S_APP_CLIENT_APPROVE,
    S_APP_CLIENT_REVOKE,
    S_APP_CLIENT_UPDATE,
    S_APP_ORIGIN,
    S_SHARE_CODE_INSERT,
    S_SHARE_CODE_CONSUME,
    S_SESSION_INSERT,
    S_SESSION_GET,
    S_NONCE_BURN,
    S_PURGE_CODES,
    S_PURGE_SESSIONS,
    S_PURGE_NONCES,
    S_SUPERADMIN,
    S_USAGE_INSERT,
    S_USAGE_SETTLE,
    S_USAGE_GET,
    S_USAGE_RECOVER,
    S_USAGE_SPENT,
    S_USAGE_SPENT_ORG,
    S_USAGE_RECENT,
    S_USAGE_RECENT_ORG,
    S_USAGE_LIST,
    S_ORG_SET,
    S_KEY_SET,
    S_SNAPSHOT,
    S_SNAPSHOT_ORG,
    S_TOTALS_ADD,
    S_RATE_ADD,
    S_RATE_PRUNE,
    S_RATE_LIST,
    S_IDEM_CLAIM,
    S_IDEM_GET,
    S_IDEM_COMPLETE,
    S_IDEM_RELEASE,
    S_IDEM_RECOVER,
    S_IDEM_PURGE,
    S_CONV_UPSERT,
    S_TURN_INSERT,
    S_CONV_GET,
    S_CONV_GET_SHARED,
    S_CONV_TURNS,
    S_CONV_LIST_OWNER,
    S_CONV_LIST_SHARED,
    S_CONV_LIST_ORG,
    S_CONV_SET_SHARED,
    S_CONV_SET_SUMMARY,
    S_CONV_DELETE,
    S_CONV_PURGE_ONE,
    S_CONV_DEL_IDEM,
    S_CONV_DEL_TURNS,
    S_CONV_EXPORT,
    S_AUDIT_INSERT,
    S_AUDIT_LIST,
    S_AUDIT_LIST_ALL,
    S_KEY_ROTATE,
    S_ORG_LIST,
    S_ORG_GET_ID,
    S_HEALTH,
    /* by gw_usage_group, then by the index the filter takes (enum usage_index) */
    S_USAGE_GROUP,
    S_USAGE_GROUP_LAST = S_USAGE_GROUP + 4 * 3 - 1,
    S_USAGE_PAGE,
    S_USAGE_PAGE_LAST = S_USAGE_PAGE + 3 - 1,
    S_COUNT
};

/* The index a usage read's filter goes through: a key's rows (usage_key_time), an org's
 * (usage_org_time), or everyone's time range (usage_time). Each has a statement of its own:
 * "(?1 = 0 OR org_id = ?1)" would leave the planner nothing to search the index by. */
enum usage_index { UI_ANY, UI_ORG, UI_KEY };
static enum usage_index usage_index(const struct gw_usage_filter *f)
{
    return f->key_row_id != 0 ? UI_KEY : f->org_id != 0 ? UI_ORG : UI_ANY;
}

static const char *const stmt_sql[S_COUNT] = {
    /* IMMEDIATE: the one writer lock is taken at BEGIN, so the transaction serialises */
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_ORG_INSERT] = "INSERT INTO orgs(slug, name, created_ms) VALUES (?1, ?2, ?3)",
    [S_ORG_GET] = "SELECT " ORG_COLS " FROM orgs WHERE slug = ?1",
    [S_ORG_SET] = "UPDATE orgs SET providers = ?2, models = ?3, rph = ?4, tph = ?5, "
                  "max_concurrent = ?6, daily_usd_micros = ?7, monthly_usd_micros = ?8, "
                  "max_request_usd_micros = ?9, capture = ?10, retention_days = ?11, "
                  "export_all = ?12 WHERE slug = ?1",
    [S_KEY_INSERT] = "INSERT INTO api_keys(key_id, key_hash, prefix, org_id, name, role, tier, "
                     "providers, models, rph, daily_usd_micros, monthly_usd_micros, created_ms, "
                     "tph, max_concurrent, max_request_usd_micros) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                     "?16)",
    [S_KEY_SET] = "UPDATE api_keys SET tier = ?2, providers = ?3, models = ?4, rph = ?5, "
                  "tph = ?6, max_concurrent = ?7, daily_usd_micros = ?8, "
                  "monthly_usd_micros = ?9, max_request_usd_micros = ?10 WHERE key_id = ?1",
    [S_KEY_BY_HASH] = KEY_BY_HASH_SQL("?1", "?2"),
    [S_KEY_GET] = "SELECT " KEY_COLS "WHERE k.key_id = ?1",
    [S_KEY_LIST] = "SELECT " KEY_COLS "WHERE k.org_id = ?1 ORDER BY k.created_ms DESC, k.id DESC",
    [S_KEY_REVOKE] = "UPDATE api_keys SET revoked = 1, revoked_ms = CASE WHEN revoked = 1 THEN "
                     "revoked_ms ELSE ?2 END WHERE key_id = ?1",
    [S_APP_CLIENT_INSERT] = "INSERT INTO app_clients(client_id, org_id, name, origins, providers, "
                            "models, session_ttl_s, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
                            "?7, ?8)",
    [S_APP_CLIENT_GET] = "SELECT " APP_CLIENT_COLS "WHERE a.client_id = ?1",
    [S_APP_CLIENT_LIST] = "SELECT " APP_CLIENT_COLS "WHERE (?1 = 0 OR a.org_id = ?1) AND a.id > ?2 "
                          "ORDER BY a.id LIMIT ?3",
    /* a revoked client stays revoked: it changes no row (told apart from an unknown one) */
    [S_APP_CLIENT_APPROVE] = "UPDATE app_clients SET approved = 1, approved_ms = CASE WHEN "
                             "approved = 1 THEN approved_ms ELSE ?2 END WHERE client_id = ?1 AND "
                             "revoked = 0",
    [S_APP_CLIENT_REVOKE] = "UPDATE app_clients SET revoked = 1, revoked_ms = CASE WHEN "
                            "revoked = 1 THEN revoked_ms ELSE ?2 END WHERE client_id = ?1",
    [S_APP_CLIENT_UPDATE] = "UPDATE app_clients SET name = ?2, origins = ?3, providers = ?4, "
                            "models = ?5, session_ttl_s = ?6 WHERE client_id = ?1",
    [S_SHARE_CODE_INSERT] = "INSERT INTO share_codes(code_hash, " SHARE_CODE_COLS ") VALUES (?1, "
                            "?2, ?3, ?4, ?5, ?6, ?7)",
    /* one statement: of concurrent consumers, only the one whose UPDATE flips used gets a row */
    [S_SHARE_CODE_CONSUME] = "UPDATE share_codes SET used = 1 WHERE code_hash = ?1 AND used = 0 "
                             "RETURNING " SHARE_CODE_COLS,
    [S_SESSION_INSERT] = "INSERT INTO subject_sessions(" SESSION_COLS ") VALUES (?1, ?2, ?3, ?4, "
                         "?5, ?6, ?7, ?8)",
#define PURGE_SQL(t) "DELETE FROM " t " WHERE rowid IN (SELECT rowid FROM " t " WHERE expires_ms < ?1 LIMIT ?2)"
    [S_PURGE_CODES] = PURGE_SQL("share_codes"),
    [S_PURGE_SESSIONS] = PURGE_SQL("subject_sessions"),
    [S_PURGE_NONCES] = PURGE_SQL("session_nonces"),
    [S_NONCE_BURN] = "INSERT INTO session_nonces(token_hash, nonce, expires_ms) VALUES (?1, ?2, "
                     "?3)",
    [S_SESSION_GET] = "SELECT " SESSION_COLS " FROM subject_sessions WHERE token_hash = ?1",
    /* exact: instr, not LIKE, whose _ and % would match other origins */
    [S_APP_ORIGIN] = "SELECT 1 FROM app_clients WHERE approved = 1 AND revoked = 0 AND "
                     "instr(',' || origins || ',', ',' || ?1 || ',') > 0 LIMIT 1",
    [S_SUPERADMIN] = "SELECT 1 FROM api_keys WHERE role = 'superadmin' AND revoked = 0 LIMIT 1",
    [S_USAGE_INSERT] = "INSERT INTO usage(" USAGE_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                       "?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, "
                       "?23, ?24, ?25, ?26, ?27)",
    [S_USAGE_SETTLE] = "UPDATE usage SET state = ?2, tokens_in = ?3, tokens_out = ?4, "
                       "cached_tokens = ?5, reasoning_tokens = ?6, cost_micros = ?7, "
                       "latency_ms = ?8, status = ?9, error_code = ?10, settled_ms = ?11, "
                       "provider = ?12, model = ?13, reserved_micros = ?14, attempts = ?15, "
                       "route_method = ?16, reserved_tokens = ?17 WHERE request_id = ?1",
    [S_USAGE_GET] = "SELECT " USAGE_COLS " FROM usage WHERE request_id = ?1",
    [S_USAGE_SPENT] = SPENT_SQL "key_row_id = ?1 AND created_ms >= ?2",
    [S_USAGE_SPENT_ORG] = SPENT_SQL "org_id = ?1 AND created_ms >= ?2",
#define RECENT_SQL "SELECT created_ms, kind = 'chat', tokens_in + tokens_out FROM usage WHERE "
    [S_USAGE_RECENT] = RECENT_SQL "key_row_id = ?1 AND created_ms >= ?2 ORDER BY created_ms",
    [S_USAGE_RECENT_ORG] = RECENT_SQL "org_id = ?1 AND created_ms >= ?2 ORDER BY created_ms",
    [S_USAGE_LIST] = "SELECT " USAGE_COLS " FROM usage WHERE (?1 = 0 OR org_id = ?1) AND "
                     "(?2 = 0 OR key_row_id = ?2) AND (?3 = '' OR model = ?3) AND "
                     "created_ms >= ?4 AND (?5 = 0 OR created_ms < ?5) AND "
                     "(?6 = '' OR provider = ?6) ORDER BY created_ms, request_id",
#define SNAPSHOT_SQL(col, scope)                                                                   \
    "SELECT CASE WHEN ?5 & 1 THEN (SELECT COALESCE(SUM(requests), 0) FROM usage_rate WHERE "      \
    "scope = " scope " AND id = ?1 AND second >= ?2) ELSE 0 END, "                                 \
    "CASE WHEN ?5 & 1 THEN (SELECT COALESCE(SUM(tokens), 0) FROM usage_rate WHERE "               \
    "scope = " scope " AND id = ?1 AND second >= ?2) ELSE 0 END, "                                 \
    "CASE WHEN ?5 & 2 THEN (SELECT count(*) FROM usage WHERE " col " = ?1 AND "                   \
    "state = 'reserved' AND kind = 'chat') ELSE 0 END, "                                           \
    "CASE WHEN ?5 & 4 THEN (SELECT COALESCE(SUM(reserved_micros), 0) FROM usage WHERE " col       \
    " = ?1 AND state = 'reserved') ELSE 0 END, "                                                   \
    "CASE WHEN ?5 & 4 THEN (SELECT COALESCE(SUM(spent_micros), 0) FROM usage_totals WHERE "       \
    "scope = " scope " AND id = ?1 AND period = 'd' AND window_start = ?3) ELSE 0 END, "          \
    "CASE WHEN ?5 & 4 THEN (SELECT COALESCE(SUM(spent_micros), 0) FROM usage_totals WHERE "       \
    "scope = " scope " AND id = ?1 AND period = 'm' AND window_start = ?4) ELSE 0 END"
    [S_SNAPSHOT] = SNAPSHOT_SQL("key_row_id", "0"),
    [S_SNAPSHOT_ORG] = SNAPSHOT_SQL("org_id", "1"),
    [S_TOTALS_ADD] = "INSERT INTO usage_totals(scope, id, period, window_start, spent_micros) "
                     "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (scope, id, period, window_start, "
                     "shard) DO UPDATE SET spent_micros = spent_micros + excluded.spent_micros",
    [S_RATE_ADD] = "INSERT INTO usage_rate(scope, id, second, requests, tokens) VALUES (?1, ?2, "
                   "?3, ?4, ?5) ON CONFLICT (scope, id, second, shard) DO UPDATE SET requests = "
                   "requests + excluded.requests, tokens = tokens + excluded.tokens",
    [S_RATE_PRUNE] = "DELETE FROM usage_rate WHERE scope = ?1 AND id = ?2 AND second < ?3",
    [S_IDEM_CLAIM] = "INSERT INTO idempotency(caller, endpoint, idem_key, fingerprint, state, "
                     "request_id, node, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, "
                     "'in_flight', ?5, ?6, ?7, ?8) ON CONFLICT (caller, endpoint, idem_key) DO "
                     "UPDATE SET fingerprint = excluded.fingerprint, state = 'in_flight', "
                     "request_id = excluded.request_id, node = excluded.node, status = 0, "
                     "headers = '', body = '', created_ms = excluded.created_ms, "
                     "completed_ms = 0, expires_ms = excluded.expires_ms "
                     "WHERE idempotency.expires_ms < ?9 RETURNING request_id",
    [S_IDEM_GET] = "SELECT fingerprint, state, request_id, node, status, headers, body, "
                   "created_ms, completed_ms, expires_ms FROM idempotency WHERE caller = ?1 AND "
                   "endpoint = ?2 AND idem_key = ?3",
    [S_IDEM_COMPLETE] = "UPDATE idempotency SET state = ?5, status = ?6, headers = ?7, body = ?8, "
                        "completed_ms = ?9 WHERE caller = ?1 AND endpoint = ?2 AND idem_key = ?3 "
                        "AND request_id = ?4",
    [S_IDEM_RELEASE] = "DELETE FROM idempotency WHERE caller = ?1 AND endpoint = ?2 AND "
                       "idem_key = ?3 AND request_id = ?4",
    [S_IDEM_RECOVER] = "UPDATE idempotency SET state = 'uncertain', completed_ms = ?1 WHERE "
                       "state = 'in_flight' AND (?2 = '' OR node = ?2)",
    [S_IDEM_PURGE] = "DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency WHERE "
                     "expires_ms < ?1 LIMIT ?2)",
    [S_RATE_LIST] = "SELECT second, SUM(requests), SUM(tokens) FROM usage_rate WHERE "
                    "scope = ?1 AND id = ?2 AND second >= ?3 GROUP BY second ORDER BY second",
    [S_USAGE_RECOVER] = "UPDATE usage SET state = 'uncertain', cost_micros = reserved_micros, "
                        "settled_ms = ?1 WHERE state = 'reserved' AND (?2 = '' OR node = ?2)",
    /* one statement creates or extends the conversation and answers its row: the turns it
     * counts are the seqs the caller's turns take (the write lock is held from BEGIN IMMEDIATE
     * to COMMIT, so appends never interleave) */
    [S_CONV_UPSERT] = "INSERT INTO conversations(ref, org_id, owner, conv_id, title, turns, "
                      "created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) "
                      "ON CONFLICT (org_id, owner, conv_id) DO UPDATE SET turns = turns + "
                      "excluded.turns, updated_ms = max(updated_ms, excluded.updated_ms)",
    /* (then S_CONV_GET reads the row: RETURNING would gather it in an ephemeral table, whose
     * page cache and b-tree cost more than the lookup, on every captured request) */
    [S_TURN_INSERT] = "INSERT INTO conversation_turns(conv, " TURN_COLS ") VALUES (?1, ?2, ?3, ?4, "
                      "?5, ?6, ?7, ?8)",
    [S_CONV_GET] = "SELECT " CONV_COLS " FROM conversations WHERE org_id = ?1 AND owner = ?2 AND "
                   "conv_id = ?3",
    [S_CONV_GET_SHARED] = "SELECT " CONV_COLS " FROM conversations WHERE ref = ?2 AND org_id = ?1 "
                          "AND shared = 1",
    [S_CONV_TURNS] = "SELECT " TURN_COLS " FROM conversation_turns WHERE conv = ?1 AND seq > ?2 "
                     "ORDER BY seq LIMIT ?3",
/* newest first from the cursor (b: its two parameters); q: a LIKE pattern ("" none) */
#define CONV_LIST_SQL(from, where, b, q, lim)                                                      \
    "SELECT " CONV_LIST_COLS " FROM " from " WHERE org_id = ?1 " where " AND (updated_ms, "       \
    "id) < (" b ") AND (" q " = '' OR title LIKE " q " ESCAPE '\\' OR EXISTS (SELECT 1 FROM "     \
    "conversation_turns t WHERE t.conv = conversations.id AND t.message LIKE " q " ESCAPE "        \
    "'\\')) ORDER BY updated_ms DESC, id DESC LIMIT " lim
    [S_CONV_LIST_OWNER] = CONV_LIST_SQL("conversations",
                                        "AND owner = ?2 AND (?3 = 0 OR shared = 1)", "?4, ?5",
                                        "?6", "?7"),
    /* without statistics the planner would take the full conversations_updated instead */
    [S_CONV_LIST_SHARED] = CONV_LIST_SQL("conversations INDEXED BY conversations_shared",
                                         "AND shared = 1", "?2, ?3", "?4", "?5"),
    [S_CONV_LIST_ORG] = CONV_LIST_SQL("conversations", "", "?2, ?3", "?4", "?5"),
    [S_CONV_SET_SHARED] = "UPDATE conversations SET shared = ?4 WHERE org_id = ?1 AND owner = ?2 "
                          "AND conv_id = ?3",
    [S_CONV_SET_SUMMARY] = "UPDATE conversations SET summary = ?2, summary_upto = ?3 WHERE id = ?1 "
                           "AND summary_upto < ?3",
    /* a deletion takes the row first, then what hangs on its id */
    [S_CONV_DELETE] = "DELETE FROM conversations WHERE org_id = ?1 AND owner = ?2 AND conv_id = ?3 "
                      "RETURNING id",
    /* one conversation untouched past its org's retention; CROSS JOIN: SQLite takes the orgs
     * first, then each one's range of old conversations (conversations_updated) */
    [S_CONV_PURGE_ONE] = "DELETE FROM conversations WHERE id = (SELECT c.id FROM orgs o CROSS "
                         "JOIN conversations c WHERE o.retention_days > 0 AND c.org_id = o.id AND "
                         "c.updated_ms < ?1 - o.retention_days * 86400000 LIMIT 1) RETURNING id",
    [S_CONV_DEL_IDEM] = "DELETE FROM idempotency WHERE request_id IN (SELECT request_id FROM "
                        "conversation_turns WHERE conv = ?1 AND request_id <> '')",
    [S_CONV_DEL_TURNS] = "DELETE FROM conversation_turns WHERE conv = ?1",
    [S_CONV_EXPORT] = "SELECT " CONV_COLS " FROM conversations WHERE org_id = ?1 AND (?2 = 0 OR "
                      "shared = 1) AND updated_ms >= ?3 AND updated_ms < ?4 AND id > ?5 ORDER BY "
                      "id LIMIT ?6",
    [S_AUDIT_INSERT] = "INSERT INTO audit_log(created_ms, org_id, actor, actor_role, action, "
                       "target, request_id, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [S_AUDIT_LIST] = "SELECT " AUDIT_COLS " FROM audit_log WHERE org_id = ?1 AND id > ?2 ORDER BY "
                     "id LIMIT ?3",
    [S_AUDIT_LIST_ALL] = "SELECT " AUDIT_COLS " FROM audit_log WHERE id > ?1 ORDER BY id LIMIT ?2",
    /* the old secret's hash is kept only while it is to work (?3 > 0); key_hash on the right is
     * the row's value before the update */
    [S_KEY_ROTATE] = "UPDATE api_keys SET prev_key_hash = CASE WHEN ?3 > 0 THEN key_hash ELSE '' "
                     "END, prev_expires_ms = ?3, key_hash = ?2, prefix = ?4, rotated_ms = ?5 "
                     "WHERE key_id = ?1 AND revoked = 0",
    [S_ORG_LIST] = "SELECT " ORG_COLS " FROM orgs WHERE id > ?1 ORDER BY id LIMIT ?2",
    [S_ORG_GET_ID] = "SELECT " ORG_COLS " FROM orgs WHERE id = ?1",
    /* each count through a partial index (uncertain rows) or a range of idempotency_expires */
    [S_HEALTH] = "SELECT (SELECT count(*) FROM idempotency WHERE state = 'uncertain'), "
                 "(SELECT count(*) FROM usage WHERE state = 'uncertain'), "
                 "(SELECT count(*) FROM idempotency WHERE expires_ms < ?1)",
/* The admin plane's usage reads: ?1 org, ?2 key (0: any), ?3 model, ?4 provider ("": any),
 * created_ms in [?5, ?6); the first term is the one the index is searched by (EXPLAIN QUERY
 * PLAN: SEARCH usage USING INDEX usage_org_time (org_id=? AND created_ms>? AND created_ms<?),
 * usage_key_time likewise, usage_time (created_ms>? AND created_ms<?)). */
#define UW_ANY "(?1 = 0 OR org_id = ?1) AND (?2 = 0 OR key_row_id = ?2)"
#define UW_ORG "org_id = ?1 AND (?2 = 0 OR key_row_id = ?2)"
#define UW_KEY "key_row_id = ?2 AND (?1 = 0 OR org_id = ?1)"
#define UW_REST                                                                                    \
    " AND (?3 = '' OR model = ?3) AND (?4 = '' OR provider = ?4) AND created_ms >= ?5 AND "        \
    "created_ms < ?6"
/* grouped by a column (or the UTC day), in its order, at most ?7 groups */
#define GROUP_SQL(expr, w)                                                                         \
    "SELECT " expr " AS g, " USAGE_SUMS " FROM usage WHERE " w UW_REST " GROUP BY g ORDER BY g "   \
    "LIMIT ?7"
#define GROUP_DAY_SQL(w) GROUP_SQL("strftime('%Y-%m-%d', created_ms / 1000, 'unixepoch')", w)
/* by key: summed per key row first, so that the key's name is looked up once per key, not
 * once per row */
#define GROUP_KEY_SQL(w)                                                                           \
    "SELECT " USAGE_KEY_NAME("x") " AS g, SUM(x.n), SUM(x.req), SUM(x.tin), SUM(x.tout), "         \
    "SUM(x.cost) FROM (SELECT key_row_id, " USAGE_SUMS " FROM usage WHERE " w UW_REST " GROUP "    \
    "BY key_row_id) x " USAGE_KEY_JOINS("x") "GROUP BY g ORDER BY g LIMIT ?7"
#define GROUPS(by, f)                                                                              \
    [S_USAGE_GROUP + 3 * (by) + UI_ANY] = f(UW_ANY),                                               \
    [S_USAGE_GROUP + 3 * (by) + UI_ORG] = f(UW_ORG),                                               \
    [S_USAGE_GROUP + 3 * (by) + UI_KEY] = f(UW_KEY)
#define GROUP_MODEL_SQL(w) GROUP_SQL("model", w)
#define GROUP_PROVIDER_SQL(w) GROUP_SQL("provider", w)
    GROUPS(GW_GROUP_DAY, GROUP_DAY_SQL),
    GROUPS(GW_GROUP_KEY, GROUP_KEY_SQL),
    GROUPS(GW_GROUP_MODEL, GROUP_MODEL_SQL),
    GROUPS(GW_GROUP_PROVIDER, GROUP_PROVIDER_SQL),
/* a page after the cursor (?7, ?8), at most ?9 rows: the rows are taken from the index first,
 * then only they are joined to their key's and org's names. Through usage_org_time the rows
 * come in created_ms order; only ties are sorted by request_id (USE TEMP B-TREE FOR RIGHT PART
 * OF ORDER BY), so a page reads about limit index entries past the cursor. */
#define PAGE_SQL(w)                                                                                \
    "SELECT x.*, " USAGE_KEY_NAME("x") ", COALESCE(o.slug, '') FROM (SELECT " USAGE_COLS " FROM "  \
    "usage WHERE " w UW_REST " AND (created_ms, request_id) > (?7, ?8) ORDER BY created_ms, "      \
    "request_id LIMIT ?9) x " USAGE_KEY_JOINS("x") "LEFT JOIN orgs o ON o.id = x.org_id ORDER BY " \
    "x.created_ms, x.request_id"
    [S_USAGE_PAGE + UI_ANY] = PAGE_SQL(UW_ANY),
    [S_USAGE_PAGE + UI_ORG] = PAGE_SQL(UW_ORG),
    [S_USAGE_PAGE + UI_KEY] = PAGE_SQL(UW_KEY),
};

struct sq_ckpt;
struct sq_key_slot;

struct sq {
    struct gw_store base; /* first: a struct gw_store * is a struct sq * */
    sqlite3 *db;
    sqlite3_stmt *stmts[S_COUNT];
    int64_t busy_since_us;
    int64_t busy_cap_us; /* how long on_busy waits (0: 5 s) */
    struct sq_ckpt *ckpt; /* writer mode: the thread that checkpoints the WAL */
    /* the key cache: valid while the database's key epoch is unchanged (see "the key cache") */
    _Atomic uint64_t *epoch;     /* mapped from "<db>-epoch"; NULL: no cache */
    struct sq_key_slot *keys;    /* SQ_KEY_SLOTS, allocated on the first lookup */
    int epoch_pending;           /* a key or org changed in the open transaction */
};

/* How long a RESTART checkpoint waits for readers on an old snapshot. While it waits it holds
 * writers back, so it gives up soon: a long read (an admin query, an export's page) must not
 * stall every reservation behind it; the WAL is restarted by a later checkpoint instead. */
#define SQ_RESTART_WAIT_US 10000

static int ckpt_wait_done(struct sq_ckpt *k, long wait_us);

/* Another worker holds the write lock for a few microseconds: retry after a short back-off
 * (SQLite's own handler sleeps 1 ms and more, which shows as tail latency), give up after 5 s.
 * The writer held back by its checkpointer's last step waits for that step to end instead: it
 * is woken the moment the lock is free, not up to a back-off later. */
static int on_busy(void *arg, int count)
{
    struct sq *s = arg;
    int64_t now = gw_mono_us();
    if (count == 0)
        s->busy_since_us = now;
    if (now - s->busy_since_us > (s->busy_cap_us > 0 ? s->busy_cap_us : 5000000))
        return 0;
    if (s->ckpt != NULL && ckpt_wait_done(s->ckpt, SQ_RESTART_WAIT_US))
        return 1; /* as long as the checkpoint's last step may hold writers back */
    struct timespec ts = {0, count < 10 ? 20000L : count < 100 ? 200000L : 2000000L};
    nanosleep(&ts, NULL);
    return 1;
}

static int err_from(struct sq *s, int rc, struct gw_errbuf *eb)
{
    if (rc == SQLITE_CONSTRAINT)
        return GW_EEXIST;
    gw_errbuf_set(eb, "sqlite: %s", sqlite3_errmsg(s->db));
    return GW_ESTORE;
}

static sqlite3_stmt *stmt(struct sq *s, enum stmt_id id)
{
    if (s->stmts[id] == NULL &&
        sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s->stmts[id],
                           NULL) != SQLITE_OK)
        return NULL;
    sqlite3_reset(s->stmts[id]);
    sqlite3_clear_bindings(s->stmts[id]);
    return s->stmts[id];
}

static void col_text(sqlite3_stmt *st, int col, char *dst, size_t dstsz)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    gw_strlcpy(dst, t ? (const char *)t : "", dstsz);
}

static void bind_text(sqlite3_stmt *st, int idx, const char *v)
{
    sqlite3_bind_text(st, idx, v, -1, SQLITE_TRANSIENT);
}

/* The same without SQLite's copy (a malloc and a memcpy each), for the statements of every
 * request (a usage row's reservation and settlement, a capture): each of their uses binds every
 * parameter before it steps, and the values outlive the step, the only time SQLite reads them. */
static void bind_text_ref(sqlite3_stmt *st, int idx, const char *v, int len)
{
    sqlite3_bind_text(st, idx, v, len, SQLITE_STATIC);
}

/* Read six limit columns from index first on. */
static void read_limits(sqlite3_stmt *st, int first, struct gw_limit_set *l)
{
    l->rph = sqlite3_column_int64(st, first);
    l->tph = sqlite3_column_int64(st, first + 1);
    l->max_concurrent = sqlite3_column_int64(st, first + 2);
    l->daily_usd_micros = sqlite3_column_int64(st, first + 3);
    l->monthly_usd_micros = sqlite3_column_int64(st, first + 4);
    l->max_request_usd_micros = sqlite3_column_int64(st, first + 5);
}

/* mkdir -p of the directory part of path */
static int make_parent_dirs(const char *path, struct gw_errbuf *eb)
{
    char dir[1024];
    if (gw_strlcpy(dir, path, sizeof(dir)) != 0) {
        gw_errbuf_set(eb, "database path too long");
        return GW_EINVAL;
    }
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            goto fail;
        *p = '/';
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        goto fail;
    return 0;
fail:
    gw_errbuf_set(eb, "cannot create directory %s: %s", dir, strerror(errno));
    return GW_EIO;
}

static const struct gw_store_ops sqlite_ops;
static void sq_free(struct gw_store *base);
static void epoch_open(struct sq *s, const char *path);

/* SQLite's memory statistics take one process-wide mutex on every allocation of every
 * connection: a global lock on the request path. Off, before SQLite initialises (a host program
 * that has initialised it already keeps its own setting). */
static void sq_configure(void) { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }

int gw_sqlite_open(const char *url, struct gw_store **out, struct gw_errbuf *eb)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sq_configure);
    struct sq *s = NULL;

    *out = NULL;
    if (strncmp(url, "sqlite:", 7) != 0 || url[7] == '\0') {
        gw_errbuf_set(eb, "unsupported database URL (expected sqlite:PATH)");
        return GW_EINVAL;
    }
    const char *path = url + 7;
    int rc = make_parent_dirs(path, eb);
    if (rc != 0)
        return rc;
    s = gw_calloc(1, sizeof(*s));
    if (s == NULL)
        return GW_ENOMEM;
    s->base.ops = &sqlite_ops;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                          SQLITE_OPEN_NOMUTEX,
                        gw_walvfs_name()) != SQLITE_OK) {
        gw_errbuf_set(eb, "cannot open %s: %s", path,
                      s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sq_free(&s->base);
        return GW_ESTORE;
    }
    sqlite3_busy_handler(s->db, on_busy, s);
    sqlite3_extended_result_codes(s->db, 0);
    if (sqlite3_exec(s->db,
                     /* page_size (a new database only): a request changes a row or two in
                      * each of a dozen b-trees, and each page changed is written whole to the
                      * WAL and again by the checkpoint: 1 KiB pages write about half the
                      * bytes of 4 KiB ones per request (large rows take overflow pages).
                      * secure_delete: a deleted conversation's bytes are overwritten, not
                      * left in free space */
                     "PRAGMA page_size=1024; "
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; "
                     "PRAGMA secure_delete=ON;",
                     NULL, NULL, NULL) != SQLITE_OK) {
        gw_errbuf_set(eb, "cannot set up %s: %s", path, sqlite3_errmsg(s->db));
        sq_free(&s->base);
        return GW_ESTORE;
    }
    if (path[0] != ':') /* not ":memory:" */
        epoch_open(s, path);
    *out = &s->base;
    return 0;
}

/* ---- the key cache ----
 * Every request authenticates, and a key's row rarely changes: each connection keeps the keys
 * it has read, tagged with the database's key epoch, a counter in a small file beside the
 * database ("<db>-epoch", shared by every process on it through mmap) that each change of a key
 * or an org's policy increments once its transaction has committed. A lookup reads the counter
 * (a memory load, no system call) and trusts its copy only while the counter is unchanged; the
 * CLI revoking a key in another process is seen by the next request. Unknown keys are not
 * cached. Without the file (a read-only directory) every lookup reads the row. */

#define SQ_KEY_SLOTS 64

struct sq_key_slot {
    uint64_t epoch; /* 0: empty (the counter starts at 1) */
    unsigned char hash[32];
    struct gw_key_rec rec;
};

static void epoch_open(struct sq *s, const char *path)
{
    char file[4096];
    if (snprintf(file, sizeof(file), "%s-epoch", path) >= (int)sizeof(file))
        return;
    int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_size >= 4096 || ftruncate(fd, 4096) == 0)) {
        void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) {
            s->epoch = m;
            uint64_t zero = 0; /* a new file: start at 1, so that 0 marks an empty slot */
            atomic_compare_exchange_strong(s->epoch, &zero, 1);
        }
    }
    close(fd);
}

/* A key or org row changed: invalidate every process's cached keys once it is committed. */
static void epoch_bump(struct sq *s)
{
    if (s->epoch == NULL)
        return;
    if (sqlite3_get_autocommit(s->db))
        atomic_fetch_add(s->epoch, 1);
    else
        s->epoch_pending = 1; /* at COMMIT (or ROLLBACK: an extra bump is harmless) */
}

static struct sq_key_slot *key_slot(struct sq *s, const unsigned char hash[32])
{
    if (s->epoch == NULL)
        return NULL;
    if (s->keys == NULL && (s->keys = gw_calloc(SQ_KEY_SLOTS, sizeof(*s->keys))) == NULL)
        return NULL;
    return &s->keys[hash[0] % SQ_KEY_SLOTS]; /* hash: SHA-256, evenly spread */
}

/* ---- writer mode: WAL checkpoints off the writer's thread ---- */

/* A passive checkpoint each time the WAL has grown by SQ_CKPT_PAGES frames (SQLite's own
 * autocheckpoint threshold); it blocks nobody. Only a checkpoint that holds writers back lets
 * the WAL start over (a busy writer never lets a passive one catch up): its copy of the last
 * frames and its two syncs stall the writer for about a millisecond here, so it runs once the
 * WAL holds ckpt_restart_bytes, not every cycle (at one connection this machine ran ~100
 * cycles a second, and with a restart in each the writer stood still a tenth of the time).
 * Each restart still holds the writer ~3 ms (and the next commit syncs the new WAL's header):
 * at one connection, a restart every 128 MiB instead of every 32 gives a p99 of ~0.53 ms
 * instead of ~0.8, for a WAL file of up to 128 MiB on disk (3 times that at the very most). */
#define SQ_CKPT_PAGES 1000
#define SQ_CKPT_RESTART_BYTES (128L << 20)
static long ckpt_restart_bytes = SQ_CKPT_RESTART_BYTES;

#ifdef GW_TEST_HOOKS
void gw_sqlite_test_ckpt_restart_bytes(long bytes)
{
    ckpt_restart_bytes = bytes > 0 ? bytes : SQ_CKPT_RESTART_BYTES; /* 0: the default */
}
#endif

struct sq_ckpt {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending, stop;
    int running;     /* a checkpoint is under way (cv is signalled when it ends) */
    _Atomic int next_at; /* WAL frames at which the writer asks for the next cycle */
    int restart_at;      /* WAL frames past which a cycle ends with a restart */
    int hard_at;         /* past this the writer checkpoints itself: the WAL stays bounded */
    struct sq *conn; /* a connection of its own (a PASSIVE checkpoint never blocks writers) */
    struct sq *writer;
};

#define SQ_CKPT_WAIT_MS 2000 /* the most the writer waits for a checkpoint under way */

/* If a checkpoint is under way, wait for its end, at most wait_us, and return 1; 0 when none
 * is. */
static int ckpt_wait_done(struct sq_ckpt *k, long wait_us)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_us / 1000000;
    until.tv_nsec += (wait_us % 1000000) * 1000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&k->mu);
    int was = k->running;
    while (k->running && pthread_cond_timedwait(&k->cv, &k->mu, &until) == 0)
        ;
    pthread_mutex_unlock(&k->mu);
    return was;
}

/* After each commit on the writer (its write lock released): wake the checkpointer once the WAL
 * is long. Should it fall far behind (its thread starved, its syncs slow on a loaded machine),
 * the writer waits for the checkpoint under way, if any (a second one cannot run beside it),
 * and catches up itself rather than let the WAL grow without bound. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct sq_ckpt *k = arg;
    (void)name;
    if (pages >= k->hard_at) {
        (void)ckpt_wait_done(k, SQ_CKPT_WAIT_MS * 1000L);
        if (sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) ==
            SQLITE_OK) {
            k->writer->busy_cap_us = SQ_RESTART_WAIT_US;
            if (sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL) ==
                SQLITE_OK)
                atomic_store_explicit(&k->next_at, SQ_CKPT_PAGES, memory_order_relaxed);
            k->writer->busy_cap_us = 0;
        }
    }
    if (pages >= atomic_load_explicit(&k->next_at, memory_order_relaxed)) {
        pthread_mutex_lock(&k->mu);
        k->pending = 1;
        pthread_cond_broadcast(&k->cv);
        pthread_mutex_unlock(&k->mu);
    }
    return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
    struct sq_ckpt *k = arg;
    pthread_setname_np(pthread_self(), "gw-checkpoint");
    pthread_mutex_lock(&k->mu);
    for (;;) {
        while (!k->pending && !k->stop)
            pthread_cond_wait(&k->cv, &k->mu);
        if (k->stop)
            break;
        k->running = 1;
        pthread_mutex_unlock(&k->mu);
        /* the bulk without blocking anyone; once the WAL is long, the few pages written
         * meanwhile with writers held back, and the WAL starts over */
        int nlog = 0;
        int rc = sqlite3_wal_checkpoint_v2(k->conn->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &nlog,
                                           NULL);
        int next = nlog + SQ_CKPT_PAGES;
        if (rc == SQLITE_OK && nlog >= k->restart_at) {
            rc = sqlite3_wal_checkpoint_v2(k->conn->db, NULL, SQLITE_CHECKPOINT_RESTART, NULL,
                                           NULL);
            if (rc == SQLITE_OK)
                next = SQ_CKPT_PAGES;
        }
        atomic_store_explicit(&k->next_at, next, memory_order_relaxed);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            GW_LOG_WARN("store", "WAL checkpoint failed: %s", sqlite3_errmsg(k->conn->db));
        pthread_mutex_lock(&k->mu);
        k->running = 0;
        /* the commits during this cycle asked for the next one with the WAL still long; once
         * it has been restarted they would run a second cycle at once for nothing, holding
         * writers back again. A WAL still long asks again at the next commit. */
        k->pending = 0;
        pthread_cond_broadcast(&k->cv); /* a writer waiting for it */
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

static void ckpt_stop(struct sq_ckpt *k)
{
    pthread_mutex_lock(&k->mu);
    k->stop = 1;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->thread, NULL);
    sq_free(&k->conn->base);
    pthread_cond_destroy(&k->cv);
    pthread_mutex_destroy(&k->mu);
    gw_free(k);
}

static int sq_writer_mode(struct gw_store *base)
{
    struct sq *s = (struct sq *)base;
    struct gw_store *other = NULL;
    const char *path = sqlite3_db_filename(s->db, "main");
    char url[4096];

    if (s->ckpt != NULL)
        return 0;
    if (path == NULL || path[0] == '\0') /* in memory: no WAL */
        return 0;
    if (snprintf(url, sizeof(url), "sqlite:%s", path) >= (int)sizeof(url))
        return GW_ETOOBIG;
    struct sq_ckpt *k = gw_calloc(1, sizeof(*k));
    if (k == NULL)
        return GW_ENOMEM;
    int rc = gw_sqlite_open(url, &other, NULL);
    if (rc != 0) {
        gw_free(k);
        return rc;
    }
    k->conn = (struct sq *)other;
    k->conn->busy_cap_us = SQ_RESTART_WAIT_US; /* it only checkpoints */
    k->writer = s;
    atomic_init(&k->next_at, SQ_CKPT_PAGES);
    int page = 4096;
    sqlite3_stmt *ps = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA page_size", -1, &ps, NULL) == SQLITE_OK &&
        sqlite3_step(ps) == SQLITE_ROW && sqlite3_column_int(ps, 0) > 0)
        page = sqlite3_column_int(ps, 0);
    sqlite3_finalize(ps);
    long frames = ckpt_restart_bytes / (page + 24); /* a frame: its header and the page */
    k->restart_at = frames < 1 ? 1 : frames > INT_MAX / 3 ? INT_MAX / 3 : (int)frames;
    k->hard_at = 3 * (k->restart_at > SQ_CKPT_PAGES ? k->restart_at : SQ_CKPT_PAGES);
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    if (pthread_create(&k->thread, NULL, ckpt_main, k) != 0) {
        sq_free(other);
        pthread_cond_destroy(&k->cv);
        pthread_mutex_destroy(&k->mu);
        gw_free(k);
        return GW_EIO;
    }
    s->ckpt = k;
    sqlite3_wal_hook(s->db, on_wal_commit, k); /* replaces the automatic checkpoint */
    return 0;
}

static void sq_free(struct gw_store *base)
{
    struct sq *s = (struct sq *)base;
    if (s == NULL)
        return;
    if (s->ckpt != NULL) {
        sqlite3_wal_hook(s->db, NULL, NULL);
        ckpt_stop(s->ckpt);
    }
    if (s->epoch != NULL)
        munmap((void *)s->epoch, 4096);
    gw_free(s->keys);
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(s->stmts[i]);
    sqlite3_close_v2(s->db);
    gw_free(s);
}

static int read_version(struct sq *s, int *out)
{
    sqlite3_stmt *st = NULL;
    *out = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT COALESCE(MAX(version), 0) FROM schema_version", -1, &st,
                           NULL) != SQLITE_OK)
        return GW_ESTORE;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : GW_ESTORE;
}

static int sq_migrate(struct gw_store *base, struct gw_errbuf *eb)
{
    struct sq *s = (struct sq *)base;
    int version = 0;

    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return err_from(s, SQLITE_ERROR, eb);
    if (sqlite3_exec(s->db,
                     "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                     "applied_ms BIGINT NOT NULL)",
                     NULL, NULL, NULL) != SQLITE_OK ||
        read_version(s, &version) != 0)
        goto fail;
    if (version > gw_schema_count) {
        gw_errbuf_set(eb, "the database schema (version %d) is newer than this gateway (%d)",
                      version, gw_schema_count);
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return GW_ESTORE;
    }
    for (int v = version + 1; v <= gw_schema_count; v++) {
        char rec[128];
        snprintf(rec, sizeof(rec), "INSERT INTO schema_version VALUES (%d, %lld)", v,
                 (long long)gw_now_ms());
        const char *src = gw_schema_migrations[v - 1];
        if (strncmp(src, GW_SCHEMA_POSTGRES_ONLY, strlen(GW_SCHEMA_POSTGRES_ONLY)) == 0)
            src = ""; /* not for this backend: only its number */
        if (sqlite3_exec(s->db, src, NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(s->db, rec, NULL, NULL, NULL) != SQLITE_OK)
            goto fail;
    }
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    return 0;
fail:
    gw_errbuf_set(eb, "migration failed: %s", sqlite3_errmsg(s->db));
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return GW_ESTORE;
}

static int sq_schema_version(struct gw_store *base, int *out)
{
    return read_version((struct sq *)base, out);
}

/* Run a statement that returns no rows. */
static int exec_done(struct sq *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return 0;
    return err_from(s, rc, NULL);
}

static int sq_org_create(struct gw_store *base, const char *slug, const char *name, int64_t *id_out)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_ORG_INSERT);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, slug);
    bind_text(st, 2, name);
    sqlite3_bind_int64(st, 3, gw_now_ms());
    int rc = exec_done(s, st);
    if (rc == 0 && id_out != NULL)
        *id_out = sqlite3_last_insert_rowid(s->db);
    return rc;
}

/* An org's row (ORG_COLS). */
static void read_org(sqlite3_stmt *st, struct gw_org *out)
{
    memset(out, 0, sizeof(*out));
    out->id = sqlite3_column_int64(st, 0);
    col_text(st, 1, out->slug, sizeof(out->slug));
    col_text(st, 2, out->name, sizeof(out->name));
    out->created_ms = sqlite3_column_int64(st, 3);
    col_text(st, 4, out->providers, sizeof(out->providers));
    col_text(st, 5, out->models, sizeof(out->models));
    read_limits(st, 6, &out->limits);
    out->conv.capture = sqlite3_column_int(st, ORG_COL_CONV) != 0;
    out->conv.retention_days = sqlite3_column_int64(st, ORG_COL_CONV + 1);
    out->conv.export_all = sqlite3_column_int(st, ORG_COL_CONV + 2) != 0;
}

/* The one org the bound st gives. */
static int org_one(sqlite3_stmt *st, struct gw_org *out)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_org(st, out);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? GW_ENOTFOUND : GW_ESTORE;
}

static int sq_org_get(struct gw_store *base, const char *slug, struct gw_org *out)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_ORG_GET);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, slug);
    return org_one(st, out);
}

static int sq_org_get_id(struct gw_store *base, int64_t id, struct gw_org *out)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_ORG_GET_ID);
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, id);
    return org_one(st, out);
}

static int sq_org_list(struct gw_store *base, int64_t after_id, int limit, gw_store_org_cb cb,
                       void *arg)
{
    struct sq *s = (struct sq *)base;
    struct gw_org o;
    sqlite3_stmt *st = stmt(s, S_ORG_LIST);
    int rc;
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, after_id);
    sqlite3_bind_int(st, 2, limit > 0 ? limit : -1); /* negative: no limit */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_org(st, &o);
        if (cb(arg, &o) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : GW_ESTORE;
}

/* Bind the six limits from column index first on. */
static void bind_limits(sqlite3_stmt *st, int first, const struct gw_limit_set *l)
{
    sqlite3_bind_int64(st, first, l->rph);
    sqlite3_bind_int64(st, first + 1, l->tph);
    sqlite3_bind_int64(st, first + 2, l->max_concurrent);
    sqlite3_bind_int64(st, first + 3, l->daily_usd_micros);
    sqlite3_bind_int64(st, first + 4, l->monthly_usd_micros);
    sqlite3_bind_int64(st, first + 5, l->max_request_usd_micros);
}

/* After a statement that changes a key or an org's policy: not found when it changed no row;
 * else the key epoch moves (every process's cached keys are stale). */
static int key_changed(struct sq *s, int rc)
{
    if (rc != 0)
        return rc;
    if (sqlite3_changes(s->db) == 0)
        return GW_ENOTFOUND;
    epoch_bump(s);
    return 0;
}

static int sq_org_set_policy(struct gw_store *base, const struct gw_org *o)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_ORG_SET);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, o->slug);
    bind_text(st, 2, o->providers);
    bind_text(st, 3, o->models);
    bind_limits(st, 4, &o->limits);
    sqlite3_bind_int(st, 10, o->conv.capture != 0);
    sqlite3_bind_int64(st, 11, o->conv.retention_days);
    sqlite3_bind_int(st, 12, o->conv.export_all != 0);
    return key_changed(s, exec_done(s, st));
}

static int sq_key_set_policy(struct gw_store *base, const struct gw_key_rec *rec)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_KEY_SET);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, rec->key_id);
    bind_text(st, 2, rec->tier);
    bind_text(st, 3, rec->providers);
    bind_text(st, 4, rec->models);
    sqlite3_bind_int64(st, 5, rec->limits.rph);
    sqlite3_bind_int64(st, 6, rec->limits.tph);
    sqlite3_bind_int64(st, 7, rec->limits.max_concurrent);
    sqlite3_bind_int64(st, 8, rec->limits.daily_usd_micros);
    sqlite3_bind_int64(st, 9, rec->limits.monthly_usd_micros);
    sqlite3_bind_int64(st, 10, rec->limits.max_request_usd_micros);
    return key_changed(s, exec_done(s, st));
}

static int sq_key_insert(struct gw_store *base, struct gw_key_rec *rec, const unsigned char hash[32])
{
    struct sq *s = (struct sq *)base;
    char hex[65];
    sqlite3_stmt *st = stmt(s, S_KEY_INSERT);
    if (st == NULL)
        return GW_ESTORE;
    gw_hex(hex, hash, 32);
    rec->created_ms = gw_now_ms();
    bind_text(st, 1, rec->key_id);
    bind_text(st, 2, hex);
    bind_text(st, 3, rec->prefix);
    if (rec->org_id > 0)
        sqlite3_bind_int64(st, 4, rec->org_id);
    else
        sqlite3_bind_null(st, 4);
    bind_text(st, 5, rec->name);
    bind_text(st, 6, rec->role);
    bind_text(st, 7, rec->tier);
    bind_text(st, 8, rec->providers);
    bind_text(st, 9, rec->models);
    sqlite3_bind_int64(st, 10, rec->limits.rph);
    sqlite3_bind_int64(st, 11, rec->limits.daily_usd_micros);
    sqlite3_bind_int64(st, 12, rec->limits.monthly_usd_micros);
    sqlite3_bind_int64(st, 13, rec->created_ms);
    sqlite3_bind_int64(st, 14, rec->limits.tph);
    sqlite3_bind_int64(st, 15, rec->limits.max_concurrent);
    sqlite3_bind_int64(st, 16, rec->limits.max_request_usd_micros);
    int rc = exec_done(s, st);
    if (rc == 0)
        rec->id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

static void read_key(sqlite3_stmt *st, struct gw_key_rec *k)
{
    memset(k, 0, sizeof(*k));
    k->id = sqlite3_column_int64(st, 0);
    col_text(st, 1, k->key_id, sizeof(k->key_id));
    k->org_id = sqlite3_column_int64(st, 2);
    col_text(st, 3, k->org_slug, sizeof(k->org_slug));
    col_text(st, 4, k->name, sizeof(k->name));
    col_text(st, 5, k->prefix, sizeof(k->prefix));
    col_text(st, 6, k->role, sizeof(k->role));
    col_text(st, 7, k->tier, sizeof(k->tier));
    col_text(st, 8, k->providers, sizeof(k->providers));
    col_text(st, 9, k->models, sizeof(k->models));
    k->revoked = sqlite3_column_int(st, 10) != 0;
    k->created_ms = sqlite3_column_int64(st, 11);
    k->revoked_ms = sqlite3_column_int64(st, 12);
    read_limits(st, 13, &k->limits);
    col_text(st, 19, k->org_providers, sizeof(k->org_providers));
    col_text(st, 20, k->org_models, sizeof(k->org_models));
    read_limits(st, 21, &k->org_limits);
    k->org_conv.capture = sqlite3_column_int(st, KEY_COL_ORG_CONV) != 0;
    k->org_conv.retention_days = sqlite3_column_int64(st, KEY_COL_ORG_CONV + 1);
    k->org_conv.export_all = sqlite3_column_int(st, KEY_COL_ORG_CONV + 2) != 0;
    k->rotated_ms = sqlite3_column_int64(st, KEY_COL_ROTATED);
    k->prev_expires_ms = sqlite3_column_int64(st, KEY_COL_ROTATED + 1);
    if (sqlite3_column_count(st) > KEY_COL_VIA)
        k->via_prev = sqlite3_column_int(st, KEY_COL_VIA) != 0;
}

/* The key statement id gives for arg (and, when now_ms > 0, the time ?2). */
static int key_one(struct sq *s, enum stmt_id id, const char *arg, int64_t now_ms,
                   struct gw_key_rec *out)
{
    sqlite3_stmt *st = stmt(s, id);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, arg);
    if (now_ms > 0)
        sqlite3_bind_int64(st, 2, now_ms);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_key(st, out);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? GW_ENOTFOUND : GW_ESTORE;
}

static int sq_key_by_hash(struct gw_store *base, const unsigned char hash[32], struct gw_key_rec *out)
{
    struct sq *s = (struct sq *)base;
    struct sq_key_slot *slot = key_slot(s, hash);
    /* the epoch is read before the row: a change committed after this read bumps it again */
    uint64_t epoch = slot != NULL ? atomic_load(s->epoch) : 0;
    int64_t now = gw_now_ms();
    char hex[65];

    /* a previous secret's entry (via_prev, as read) lasts only while that secret is valid:
     * its end is a time, which moves no epoch */
    if (slot != NULL && slot->epoch == epoch && memcmp(slot->hash, hash, 32) == 0) {
        if (!slot->rec.via_prev || now < slot->rec.prev_expires_ms) {
            *out = slot->rec;
            return 0;
        }
        slot->epoch = 0;
    }
    gw_hex(hex, hash, 32);
    int rc = key_one(s, S_KEY_BY_HASH, hex, now, out);
    if (rc == 0 && slot != NULL) {
        slot->epoch = epoch;
        memcpy(slot->hash, hash, 32);
        slot->rec = *out;
    }
    return rc;
}

static int sq_key_get(struct gw_store *base, const char *key_id, struct gw_key_rec *out)
{
    struct sq *s = (struct sq *)base;
    return key_one(s, S_KEY_GET, key_id, 0, out);
}

static int sq_key_list(struct gw_store *base, int64_t org_id, gw_store_key_cb cb, void *arg)
{
    struct sq *s = (struct sq *)base;
    struct gw_key_rec k;
    sqlite3_stmt *st = stmt(s, S_KEY_LIST);
    int rc;

    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, org_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_key(st, &k);
        if (cb(arg, &k) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : GW_ESTORE;
}

/* The new hash replaces the key's; the old one becomes the previous secret (only one is kept). A
 * change of a key like any other: the epoch moves, so every connection's cached copy, under
 * the old hash as under the new, is read again. */
static int sq_key_rotate(struct gw_store *base, const char *key_id,
                         const unsigned char new_hash[32], const char *new_prefix,
                         int64_t prev_expires_ms)
{
    struct sq *s = (struct sq *)base;
    char hex[65];
    sqlite3_stmt *st = stmt(s, S_KEY_ROTATE);
    if (st == NULL)
        return GW_ESTORE;
    gw_hex(hex, new_hash, 32);
    bind_text(st, 1, key_id);
    bind_text(st, 2, hex);
    sqlite3_bind_int64(st, 3, prev_expires_ms);
    bind_text(st, 4, new_prefix);
    sqlite3_bind_int64(st, 5, gw_now_ms());
    return key_changed(s, exec_done(s, st));
}

static int sq_key_revoke(struct gw_store *base, const char *key_id)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_KEY_REVOKE);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, key_id);
    sqlite3_bind_int64(st, 2, gw_now_ms());
    return key_changed(s, exec_done(s, st));
}

static int sq_app_client_insert(struct gw_store *base, struct gw_app_client *rec)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_APP_CLIENT_INSERT);
    if (st == NULL)
        return GW_ESTORE;
    rec->created_ms = gw_now_ms();
    bind_text(st, 1, rec->client_id);
    sqlite3_bind_int64(st, 2, rec->org_id);
    bind_text(st, 3, rec->name);
    bind_text(st, 4, rec->origins);
    bind_text(st, 5, rec->providers);
    bind_text(st, 6, rec->models);
    sqlite3_bind_int64(st, 7, rec->session_ttl_s);
    sqlite3_bind_int64(st, 8, rec->created_ms);
    int rc = exec_done(s, st);
    if (rc == 0)
        rec->id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

static void read_app_client(sqlite3_stmt *st, struct gw_app_client *a)
{
    memset(a, 0, sizeof(*a));
    a->id = sqlite3_column_int64(st, 0);
    col_text(st, 1, a->client_id, sizeof(a->client_id));
    a->org_id = sqlite3_column_int64(st, 2);
    col_text(st, 3, a->org_slug, sizeof(a->org_slug));
    col_text(st, 4, a->name, sizeof(a->name));
    col_text(st, 5, a->origins, sizeof(a->origins));
    col_text(st, 6, a->providers, sizeof(a->providers));
    col_text(st, 7, a->models, sizeof(a->models));
    a->session_ttl_s = sqlite3_column_int64(st, 8);
    a->approved = sqlite3_column_int(st, 9) != 0;
    a->approved_ms = sqlite3_column_int64(st, 10);
    a->revoked = sqlite3_column_int(st, 11) != 0;
    a->revoked_ms = sqlite3_column_int64(st, 12);
    a->created_ms = sqlite3_column_int64(st, 13);
}

static int sq_app_client_get(struct gw_store *base, const char *client_id,
                             struct gw_app_client *out)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_APP_CLIENT_GET);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, client_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_app_client(st, out);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? GW_ENOTFOUND : GW_ESTORE;
}

static int sq_app_client_list(struct gw_store *base, int64_t org_id, int64_t after_id, int limit,
                              gw_store_app_client_cb cb, void *arg)
{
    struct sq *s = (struct sq *)base;
    struct gw_app_client a;
    sqlite3_stmt *st = stmt(s, S_APP_CLIENT_LIST);
    int rc;

    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, org_id);
    sqlite3_bind_int64(st, 2, after_id);
    sqlite3_bind_int(st, 3, limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_app_client(st, &a);
        if (cb(arg, &a) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : GW_ESTORE;
}

static int sq_app_client_approve(struct gw_store *base, const char *client_id, int64_t now_ms)
{
    struct sq *s = (struct sq *)base;
    struct gw_app_client a;
    sqlite3_stmt *st = stmt(s, S_APP_CLIENT_APPROVE);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, client_id);
    sqlite3_bind_int64(st, 2, now_ms);
    int rc = exec_done(s, st);
    if (rc != 0 || sqlite3_changes(s->db) > 0)
        return rc;
    /* no row changed: unknown, or revoked */
    rc = sq_app_client_get(base, client_id, &a);
    return rc == 0 ? GW_EINVAL : rc;
}

static int sq_app_client_revoke(struct gw_store *base, const char *client_id, int64_t now_ms)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_APP_CLIENT_REVOKE);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, client_id);
    sqlite3_bind_int64(st, 2, now_ms);
    int rc = exec_done(s, st);
    if (rc == 0 && sqlite3_changes(s->db) == 0)
        return GW_ENOTFOUND;
    return rc;
}

static int sq_app_client_update(struct gw_store *base, const struct gw_app_client *rec)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_APP_CLIENT_UPDATE);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, rec->client_id);
    bind_text(st, 2, rec->name);
    bind_text(st, 3, rec->origins);
    bind_text(st, 4, rec->providers);
    bind_text(st, 5, rec->models);
    sqlite3_bind_int64(st, 6, rec->session_ttl_s);
    int rc = exec_done(s, st);
    if (rc == 0 && sqlite3_changes(s->db) == 0)
        return GW_ENOTFOUND;
    return rc;
}

static int sq_share_code_insert(struct gw_store *base, const struct gw_share_code *c)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_SHARE_CODE_INSERT);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, c->code_hash);
    bind_text(st, 2, c->client_id);
    sqlite3_bind_int64(st, 3, c->org_id);
    bind_text(st, 4, c->subject);
    bind_text(st, 5, c->challenge);
    sqlite3_bind_int64(st, 6, c->created_ms);
    sqlite3_bind_int64(st, 7, c->expires_ms);
    return exec_done(s, st);
}

static int sq_share_code_consume(struct gw_store *base, const char *code_hash,
                                 struct gw_share_code *out)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_SHARE_CODE_CONSUME);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, code_hash);
    int rc = sqlite3_step(st); /* the change is made here, at the first step */
    int found = rc == SQLITE_ROW;
    if (found) {
        memset(out, 0, sizeof(*out));
        gw_strlcpy(out->code_hash, code_hash, sizeof(out->code_hash));
        col_text(st, 0, out->client_id, sizeof(out->client_id));
        out->org_id = sqlite3_column_int64(st, 1);
        col_text(st, 2, out->subject, sizeof(out->subject));
        col_text(st, 3, out->challenge, sizeof(out->challenge));
        out->created_ms = sqlite3_column_int64(st, 4);
        out->expires_ms = sqlite3_column_int64(st, 5);
    }
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return err_from(s, rc, NULL);
    return found ? 0 : GW_ENOTFOUND;
}

static int sq_session_insert(struct gw_store *base, const struct gw_subject_session *ss)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_SESSION_INSERT);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, ss->token_hash);
    bind_text(st, 2, ss->client_id);
    sqlite3_bind_int64(st, 3, ss->org_id);
    bind_text(st, 4, ss->subject);
    bind_text(st, 5, ss->origin);
    bind_text(st, 6, ss->hmac_key);
    sqlite3_bind_int64(st, 7, ss->created_ms);
    sqlite3_bind_int64(st, 8, ss->expires_ms);
    return exec_done(s, st);
}

static int sq_nonce_burn(struct gw_store *base, const char *token_hash, const char *nonce,
                         int64_t expires_ms)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_NONCE_BURN);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, token_hash);
    bind_text(st, 2, nonce);
    sqlite3_bind_int64(st, 3, expires_ms);
    return exec_done(s, st);
}

static int sq_session_get(struct gw_store *base, const char *token_hash,
                          struct gw_subject_session *out)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_SESSION_GET);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, token_hash);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        col_text(st, 0, out->token_hash, sizeof(out->token_hash));
        col_text(st, 1, out->client_id, sizeof(out->client_id));
        out->org_id = sqlite3_column_int64(st, 2);
        col_text(st, 3, out->subject, sizeof(out->subject));
        col_text(st, 4, out->origin, sizeof(out->origin));
        col_text(st, 5, out->hmac_key, sizeof(out->hmac_key));
        out->created_ms = sqlite3_column_int64(st, 6);
        out->expires_ms = sqlite3_column_int64(st, 7);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? GW_ENOTFOUND : GW_ESTORE;
}

/* Does the statement id (bound to arg, or nothing) give a row? */
static int sq_exists(struct sq *s, enum stmt_id id, const char *arg, int *out)
{
    sqlite3_stmt *st = stmt(s, id);
    if (st == NULL)
        return GW_ESTORE;
    if (arg != NULL)
        bind_text(st, 1, arg);
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW;
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : GW_ESTORE;
}

static int sq_superadmin_exists(struct gw_store *base, int *out)
{
    return sq_exists((struct sq *)base, S_SUPERADMIN, NULL, out);
}

static int sq_app_origin_known(struct gw_store *base, const char *origin, int *out)
{
    return sq_exists((struct sq *)base, S_APP_ORIGIN, origin, out);
}

static int sq_usage_reserve(struct gw_store *base, const struct gw_usage_row *r)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_USAGE_INSERT);
    if (st == NULL)
        return GW_ESTORE;
    bind_text_ref(st, 1, r->request_id, -1);
    sqlite3_bind_int64(st, 2, r->org_id);
    sqlite3_bind_int64(st, 3, r->key_row_id);
    bind_text_ref(st, 4, r->provider, -1);
    bind_text_ref(st, 5, r->model, -1);
    bind_text_ref(st, 6, r->endpoint, -1);
    sqlite3_bind_int(st, 7, r->stream);
    bind_text_ref(st, 8, r->state, -1);
    sqlite3_bind_int64(st, 9, r->reserved_micros);
    sqlite3_bind_int64(st, 10, r->tokens_in);
    sqlite3_bind_int64(st, 11, r->tokens_out);
    sqlite3_bind_int64(st, 12, r->cached_tokens);
    sqlite3_bind_int64(st, 13, r->reasoning_tokens);
    sqlite3_bind_int64(st, 14, r->cost_micros);
    sqlite3_bind_int64(st, 15, r->latency_ms);
    sqlite3_bind_int(st, 16, r->status);
    bind_text_ref(st, 17, r->error_code, -1);
    bind_text_ref(st, 18, r->catalog_version, -1);
    sqlite3_bind_int64(st, 19, r->created_ms);
    sqlite3_bind_int64(st, 20, r->settled_ms);
    bind_text_ref(st, 21, r->parent_request_id, -1);
    bind_text_ref(st, 22, r->kind[0] ? r->kind : "chat", -1);
    sqlite3_bind_int(st, 23, r->attempts > 0 ? r->attempts : 1);
    bind_text_ref(st, 24, r->route_method, -1);
    bind_text_ref(st, 25, r->node, -1);
    sqlite3_bind_int64(st, 26, r->reserved_tokens);
    bind_text_ref(st, 27, r->subject, -1);
    return exec_done(s, st);
}

static int sq_usage_settle(struct gw_store *base, const struct gw_usage_row *r)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_USAGE_SETTLE);
    if (st == NULL)
        return GW_ESTORE;
    bind_text_ref(st, 1, r->request_id, -1);
    bind_text_ref(st, 2, r->state, -1);
    sqlite3_bind_int64(st, 3, r->tokens_in);
    sqlite3_bind_int64(st, 4, r->tokens_out);
    sqlite3_bind_int64(st, 5, r->cached_tokens);
    sqlite3_bind_int64(st, 6, r->reasoning_tokens);
    sqlite3_bind_int64(st, 7, r->cost_micros);
    sqlite3_bind_int64(st, 8, r->latency_ms);
    sqlite3_bind_int(st, 9, r->status);
    bind_text_ref(st, 10, r->error_code, -1);
    sqlite3_bind_int64(st, 11, r->settled_ms);
    bind_text_ref(st, 12, r->provider, -1);
    bind_text_ref(st, 13, r->model, -1);
    sqlite3_bind_int64(st, 14, r->reserved_micros);
    sqlite3_bind_int(st, 15, r->attempts > 0 ? r->attempts : 1);
    bind_text_ref(st, 16, r->route_method, -1);
    sqlite3_bind_int64(st, 17, r->reserved_tokens);
    int rc = exec_done(s, st);
    if (rc == 0 && sqlite3_changes(s->db) == 0)
        return GW_ENOTFOUND;
    return rc;
}

static void read_usage(sqlite3_stmt *st, struct gw_usage_row *out)
{
    memset(out, 0, sizeof(*out));
    col_text(st, 0, out->request_id, sizeof(out->request_id));
    out->org_id = sqlite3_column_int64(st, 1);
    out->key_row_id = sqlite3_column_int64(st, 2);
    col_text(st, 3, out->provider, sizeof(out->provider));
    col_text(st, 4, out->model, sizeof(out->model));
    col_text(st, 5, out->endpoint, sizeof(out->endpoint));
    out->stream = sqlite3_column_int(st, 6);
    col_text(st, 7, out->state, sizeof(out->state));
    out->reserved_micros = sqlite3_column_int64(st, 8);
    out->tokens_in = sqlite3_column_int64(st, 9);
    out->tokens_out = sqlite3_column_int64(st, 10);
    out->cached_tokens = sqlite3_column_int64(st, 11);
    out->reasoning_tokens = sqlite3_column_int64(st, 12);
    out->cost_micros = sqlite3_column_int64(st, 13);
    out->latency_ms = sqlite3_column_int64(st, 14);
    out->status = sqlite3_column_int(st, 15);
    col_text(st, 16, out->error_code, sizeof(out->error_code));
    col_text(st, 17, out->catalog_version, sizeof(out->catalog_version));
    out->created_ms = sqlite3_column_int64(st, 18);
    out->settled_ms = sqlite3_column_int64(st, 19);
    col_text(st, 20, out->parent_request_id, sizeof(out->parent_request_id));
    col_text(st, 21, out->kind, sizeof(out->kind));
    out->attempts = sqlite3_column_int(st, 22);
    col_text(st, 23, out->route_method, sizeof(out->route_method));
    col_text(st, 24, out->node, sizeof(out->node));
    out->reserved_tokens = sqlite3_column_int64(st, 25);
    col_text(st, 26, out->subject, sizeof(out->subject));
}

static int sq_usage_get(struct gw_store *base, const char *request_id, struct gw_usage_row *out)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_USAGE_GET);
    if (st == NULL)
        return GW_ESTORE;
    bind_text(st, 1, request_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_usage(st, out);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? GW_ENOTFOUND : GW_ESTORE;
}

static int sq_usage_list(struct gw_store *base, const struct gw_usage_filter *f,
                        gw_store_usage_cb cb, void *arg, struct gw_usage_totals *totals)
{
    struct sq *s = (struct sq *)base;
    struct gw_usage_totals t = {0};
    struct gw_usage_row row;
    sqlite3_stmt *st = stmt(s, S_USAGE_LIST);
    int rc;

    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, f->org_id);
    sqlite3_bind_int64(st, 2, f->key_row_id);
    bind_text(st, 3, f->model);
    sqlite3_bind_int64(st, 4, f->from_ms);
    sqlite3_bind_int64(st, 5, f->to_ms);
    bind_text(st, 6, f->provider);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_usage(st, &row);
        t.rows++;
        t.requests += strcmp(row.kind, "chat") == 0;
        t.tokens_in += row.tokens_in;
        t.tokens_out += row.tokens_out;
        t.cost_micros += strcmp(row.state, "reserved") == 0 ? row.reserved_micros
                                                            : row.cost_micros;
        if (cb != NULL && cb(arg, &row) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(st);
    if (totals != NULL)
        *totals = t;
    return rc == SQLITE_DONE ? 0 : GW_ESTORE;
}

static int sq_usage_spent(struct gw_store *base, enum gw_scope scope, int64_t id, int64_t since_ms,
                         int64_t *micros)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, scope == GW_SCOPE_ORG ? S_USAGE_SPENT_ORG : S_USAGE_SPENT);
    *micros = 0;
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, since_ms);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *micros = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : GW_ESTORE;
}

static int sq_usage_recent(struct gw_store *base, enum gw_scope scope, int64_t id, int64_t since_ms,
                          gw_store_recent_cb cb, void *arg)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, scope == GW_SCOPE_ORG ? S_USAGE_RECENT_ORG : S_USAGE_RECENT);
    int rc;
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, since_ms);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (cb(arg, sqlite3_column_int64(st, 0), sqlite3_column_int(st, 1),
               sqlite3_column_int64(st, 2)) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : GW_ESTORE;
}

/* ?1..?6 of the admin plane's usage reads (UW_*) */
static void bind_usage_filter(sqlite3_stmt *st, const struct gw_usage_filter *f)
{
    sqlite3_bind_int64(st, 1, f->org_id);
    sqlite3_bind_int64(st, 2, f->key_row_id);
    bind_text(st, 3, f->model);
    bind_text(st, 4, f->provider);
    sqlite3_bind_int64(st, 5, f->from_ms);
    sqlite3_bind_int64(st, 6, f->to_ms);
}

static int sq_usage_group(struct gw_store *base, const struct gw_usage_filter *f,
                          enum gw_usage_group by, int max_groups, gw_store_group_cb cb, void *arg,
                          struct gw_usage_totals *totals)
{
    struct sq *s = (struct sq *)base;
    struct gw_usage_sum *g = NULL;
    struct gw_usage_totals t = {0};
    int n = 0, cap = 0, rc;
    sqlite3_stmt *st = stmt(s, S_USAGE_GROUP + 3 * (int)by + (int)usage_index(f));

    if (st == NULL)
        return GW_ESTORE;
    bind_usage_filter(st, f);
    sqlite3_bind_int64(st, 7, (int64_t)max_groups + 1); /* one more: too many shows */
    /* every group is read before the first goes to cb, so that too many groups hand over
     * nothing (and cb may call the store: the statement is done by then) */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == max_groups) {
            rc = GW_ETOOBIG;
            break;
        }
        if (n == cap) {
            int ncap = cap > 0 ? (cap < max_groups / 2 ? cap * 2 : max_groups) : 16;
            struct gw_usage_sum *ng = gw_realloc(g, (size_t)ncap * sizeof(*g));
            if (ng == NULL) {
                rc = GW_ENOMEM;
                break;
            }
            g = ng;
            cap = ncap;
        }
        struct gw_usage_sum *x = &g[n++];
        memset(x, 0, sizeof(*x));
        col_text(st, 0, x->group, sizeof(x->group));
        x->rows = sqlite3_column_int64(st, 1);
        x->requests = sqlite3_column_int64(st, 2);
        x->tokens_in = sqlite3_column_int64(st, 3);
        x->tokens_out = sqlite3_column_int64(st, 4);
        x->cost_micros = sqlite3_column_int64(st, 5);
    }
    sqlite3_reset(st);
    rc = rc == SQLITE_DONE ? 0 : rc == GW_ETOOBIG || rc == GW_ENOMEM ? rc : GW_ESTORE;
    for (int i = 0; rc == 0 && i < n; i++) {
        t.rows += g[i].rows;
        t.requests += g[i].requests;
        t.tokens_in += g[i].tokens_in;
        t.tokens_out += g[i].tokens_out;
        t.cost_micros += g[i].cost_micros;
    }
    for (int i = 0; rc == 0 && cb != NULL && i < n; i++)
        if (cb(arg, &g[i]) != 0)
            break;
    gw_free(g);
    if (rc == 0 && totals != NULL)
        *totals = t;
    return rc;
}

static int sq_usage_page(struct gw_store *base, const struct gw_usage_filter *f, int64_t after_ms,
                         const char *after_id, int limit, gw_store_usage_page_cb cb, void *arg)
{
    struct sq *s = (struct sq *)base;
    struct gw_usage_row row;
    char key_id[sizeof(((struct gw_key_rec *)0)->key_id) + 4]; /* "app:" + a client id */
    char slug[sizeof(((struct gw_org *)0)->slug)];
    sqlite3_stmt *st = stmt(s, S_USAGE_PAGE + (int)usage_index(f));
    int rc;

    if (st == NULL)
        return GW_ESTORE;
    bind_usage_filter(st, f);
    sqlite3_bind_int64(st, 7, after_ms);
    bind_text(st, 8, after_id);
    sqlite3_bind_int(st, 9, limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_usage(st, &row);
        if (strcmp(row.state, "reserved") == 0) /* as spend counts it */
            row.cost_micros = row.reserved_micros;
        col_text(st, 27, key_id, sizeof(key_id));
        col_text(st, 28, slug, sizeof(slug));
        if (cb(arg, &row, key_id, slug) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : GW_ESTORE;
}

static int sq_health(struct gw_store *base, int64_t now_ms, struct gw_store_health *out)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_HEALTH);
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, now_ms);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->idem_uncertain = sqlite3_column_int64(st, 0);
        out->usage_uncertain = sqlite3_column_int64(st, 1);
        out->idem_expired = sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : GW_ESTORE;
}

/* Run the bound st to its end; *count = the rows it changed. */
static int exec_counted(struct sq *s, sqlite3_stmt *st, int64_t *count)
{
    int rc = exec_done(s, st);
    *count = rc == 0 ? sqlite3_changes(s->db) : 0;
    return rc;
}

/* What a dead process of node ("" = any node) left in flight becomes uncertain: the
 * reservations (S_USAGE_RECOVER) or the idempotency claims (S_IDEM_RECOVER). */
static int recover(struct sq *s, enum stmt_id id, const char *node, int64_t *count)
{
    sqlite3_stmt *st = stmt(s, id);
    *count = 0;
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, gw_now_ms());
    bind_text(st, 2, node);
    return exec_counted(s, st, count);
}

static int sq_usage_recover(struct gw_store *base, const char *node, int64_t *count)
{
    return recover((struct sq *)base, S_USAGE_RECOVER, node, count);
}

static int sq_tx(struct gw_store *base, const char *what)
{
    struct sq *s = (struct sq *)base;
    enum stmt_id id = strcmp(what, "BEGIN") == 0    ? S_BEGIN
                      : strcmp(what, "COMMIT") == 0 ? S_COMMIT
                                                    : S_ROLLBACK;
    sqlite3_stmt *st = stmt(s, id);
    int rc = GW_ESTORE;
    if (st != NULL) {
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : GW_ESTORE;
        sqlite3_reset(st);
    }
    if (s->epoch_pending && sqlite3_get_autocommit(s->db)) {
        s->epoch_pending = 0;
        epoch_bump(s);
    }
    return rc;
}

static int sq_in_tx(struct gw_store *base)
{
    return !sqlite3_get_autocommit(((struct sq *)base)->db);
}

static int sq_lock_scope(struct gw_store *base, enum gw_scope scope, int64_t id)
{
    (void)base; /* BEGIN IMMEDIATE already serialises every writer */
    (void)scope;
    (void)id;
    return 0;
}

static int sq_usage_snapshot(struct gw_store *base, enum gw_scope scope, int64_t id,
                             int64_t hour_start, int64_t day_start, int64_t month_start, int want,
                             struct gw_scope_usage *out)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, scope == GW_SCOPE_ORG ? S_SNAPSHOT_ORG : S_SNAPSHOT);
    memset(out, 0, sizeof(*out));
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, hour_start);
    sqlite3_bind_int64(st, 3, day_start);
    sqlite3_bind_int64(st, 4, month_start);
    sqlite3_bind_int(st, 5, want);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->requests = sqlite3_column_int64(st, 0);
        out->tokens = sqlite3_column_int64(st, 1);
        out->inflight = sqlite3_column_int64(st, 2);
        out->held_usd = sqlite3_column_int64(st, 3);
        out->day_spent = sqlite3_column_int64(st, 4);
        out->month_spent = sqlite3_column_int64(st, 5);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : GW_ESTORE;
}

static int sq_counters_add(struct gw_store *base, const struct gw_counters_delta *d)
{
    struct sq *s = (struct sq *)base;
    const struct {
        int scope;
        int64_t id;
        const char *period;
        int64_t start;
    } rows[4] = {{0, d->key_id, "d", d->day_start}, {0, d->key_id, "m", d->month_start},
                 {1, d->org_id, "d", d->day_start}, {1, d->org_id, "m", d->month_start}};
    int n = d->org_id > 0 ? 4 : 2, rc;
    for (int i = 0; i < n && d->usd != 0; i++) {
        sqlite3_stmt *st = stmt(s, S_TOTALS_ADD);
        if (st == NULL)
            return GW_ESTORE;
        sqlite3_bind_int(st, 1, rows[i].scope);
        sqlite3_bind_int64(st, 2, rows[i].id);
        bind_text(st, 3, rows[i].period);
        sqlite3_bind_int64(st, 4, rows[i].start);
        sqlite3_bind_int64(st, 5, d->usd);
        if ((rc = exec_done(s, st)) != 0)
            return rc;
    }
    for (int i = 0; i < n; i += 2) {
        sqlite3_stmt *st;
        if ((d->requests != 0 || d->tokens != 0) && (st = stmt(s, S_RATE_ADD)) != NULL) {
            sqlite3_bind_int(st, 1, rows[i].scope);
            sqlite3_bind_int64(st, 2, rows[i].id);
            sqlite3_bind_int64(st, 3, d->second);
            sqlite3_bind_int64(st, 4, d->requests);
            sqlite3_bind_int64(st, 5, d->tokens);
            if ((rc = exec_done(s, st)) != 0)
                return rc;
        }
        if (d->prune_before > 0 && (st = stmt(s, S_RATE_PRUNE)) != NULL) {
            sqlite3_bind_int(st, 1, rows[i].scope);
            sqlite3_bind_int64(st, 2, rows[i].id);
            sqlite3_bind_int64(st, 3, d->prune_before);
            if ((rc = exec_done(s, st)) != 0)
                return rc;
        }
    }
    return 0;
}

static int sq_rate_list(struct gw_store *base, enum gw_scope scope, int64_t id,
                        int64_t since_second, gw_store_rate_cb cb, void *arg)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_RATE_LIST);
    int rc;
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int(st, 1, scope == GW_SCOPE_ORG ? 1 : 0);
    sqlite3_bind_int64(st, 2, id);
    sqlite3_bind_int64(st, 3, since_second);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (cb(arg, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
               sqlite3_column_int64(st, 2)) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : GW_ESTORE;
}

static void bind_idem_pk(sqlite3_stmt *st, const struct gw_idem_rec *r)
{
    bind_text(st, 1, r->caller);
    bind_text(st, 2, r->endpoint);
    bind_text(st, 3, r->key);
}

/* A copy of column col as a new NUL-terminated string (and its length). */
static char *col_dup(sqlite3_stmt *st, int col, size_t *len)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    char *d = gw_malloc(n + 1);
    if (d != NULL) {
        if (n > 0)
            memcpy(d, t, n);
        d[n] = '\0';
    }
    if (len != NULL)
        *len = d ? n : 0;
    return d;
}

static int sq_idem_claim(struct gw_store *base, const struct gw_idem_rec *rec, int64_t now_ms,
                         int *claimed, struct gw_idem_rec *existing)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_IDEM_CLAIM);
    if (st == NULL)
        return GW_ESTORE;
    bind_idem_pk(st, rec);
    bind_text(st, 4, rec->fingerprint);
    bind_text(st, 5, rec->request_id);
    bind_text(st, 6, rec->node);
    sqlite3_bind_int64(st, 7, rec->created_ms);
    sqlite3_bind_int64(st, 8, rec->expires_ms);
    sqlite3_bind_int64(st, 9, now_ms);
    int rc = sqlite3_step(st);
    *claimed = rc == SQLITE_ROW;
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return err_from(s, rc, NULL);
    if (*claimed)
        return 0;
    /* the record that stands: read it (same connection, so the claim above could not race) */
    if ((st = stmt(s, S_IDEM_GET)) == NULL)
        return GW_ESTORE;
    bind_idem_pk(st, rec);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        struct gw_idem_rec *e = existing;
        *e = (struct gw_idem_rec){0};
        gw_strlcpy(e->caller, rec->caller, sizeof(e->caller));
        gw_strlcpy(e->endpoint, rec->endpoint, sizeof(e->endpoint));
        gw_strlcpy(e->key, rec->key, sizeof(e->key));
        col_text(st, 0, e->fingerprint, sizeof(e->fingerprint));
        col_text(st, 1, e->state, sizeof(e->state));
        col_text(st, 2, e->request_id, sizeof(e->request_id));
        col_text(st, 3, e->node, sizeof(e->node));
        e->status = sqlite3_column_int(st, 4);
        e->headers = col_dup(st, 5, NULL);
        e->body = col_dup(st, 6, &e->body_len);
        e->created_ms = sqlite3_column_int64(st, 7);
        e->completed_ms = sqlite3_column_int64(st, 8);
        e->expires_ms = sqlite3_column_int64(st, 9);
        if (e->headers == NULL || e->body == NULL)
            rc = SQLITE_NOMEM;
    }
    sqlite3_reset(st);
    if (rc == SQLITE_NOMEM) {
        gw_idem_rec_cleanup(existing);
        return GW_ENOMEM;
    }
    /* SQLITE_DONE: purged between the two statements; the caller may simply try again */
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? GW_ENOTFOUND : GW_ESTORE;
}

static int idem_change(struct sq *s, enum stmt_id id, const struct gw_idem_rec *r)
{
    sqlite3_stmt *st = stmt(s, id);
    if (st == NULL)
        return GW_ESTORE;
    bind_idem_pk(st, r);
    bind_text(st, 4, r->request_id);
    if (id == S_IDEM_COMPLETE) {
        bind_text(st, 5, r->state);
        sqlite3_bind_int(st, 6, r->status);
        bind_text(st, 7, r->headers ? r->headers : "");
        sqlite3_bind_text(st, 8, r->body ? r->body : "", (int)r->body_len, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 9, r->completed_ms);
    }
    int rc = exec_done(s, st);
    if (rc == 0 && sqlite3_changes(s->db) == 0)
        return GW_ENOTFOUND;
    return rc;
}

static int sq_idem_complete(struct gw_store *base, const struct gw_idem_rec *rec)
{
    return idem_change((struct sq *)base, S_IDEM_COMPLETE, rec);
}

static int sq_idem_release(struct gw_store *base, const struct gw_idem_rec *rec)
{
    return idem_change((struct sq *)base, S_IDEM_RELEASE, rec);
}

static int sq_idem_recover(struct gw_store *base, const char *node, int64_t *count)
{
    return recover((struct sq *)base, S_IDEM_RECOVER, node, count);
}

static int sq_idem_purge(struct gw_store *base, int64_t now_ms, int limit, int64_t *count)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_IDEM_PURGE);
    *count = 0;
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int(st, 2, limit);
    return exec_counted(s, st, count);
}

static int sq_session_purge(struct gw_store *base, int64_t now_ms, int limit, int64_t *count)
{
    struct sq *s = (struct sq *)base;
    *count = 0;
    for (enum stmt_id id = S_PURGE_CODES; id <= S_PURGE_NONCES; id++) {
        sqlite3_stmt *st = stmt(s, id);
        int64_t n = 0;
        if (st == NULL)
            return GW_ESTORE;
        sqlite3_bind_int64(st, 1, now_ms);
        sqlite3_bind_int(st, 2, limit);
        int rc = exec_counted(s, st, &n);
        if (rc != 0)
            return rc;
        *count += n;
    }
    return 0;
}

/* ---- conversations ----
 * An operation that changes several rows runs in a transaction of its own, or joins the
 * caller's when one is open (its COMMIT is then the caller's). Rows handed to callbacks point
 * into SQLite's own column buffers: valid until the next step, that is during the callback. */

/* Begin a transaction unless the caller has one open: *own = 1 when this one is ours. */
static int own_begin(struct sq *s, int *own)
{
    *own = sqlite3_get_autocommit(s->db);
    return *own ? sq_tx(&s->base, "BEGIN") : 0;
}

/* End what own_begin began: COMMIT after success (rc 0), else ROLLBACK. Returns the result. */
static int own_end(struct sq *s, int own, int rc)
{
    if (!own)
        return rc;
    if (rc == 0)
        rc = sq_tx(&s->base, "COMMIT");
    if (rc != 0 && !sqlite3_get_autocommit(s->db)) /* SQLite may have ended it already */
        (void)sq_tx(&s->base, "ROLLBACK");
    return rc;
}

/* Read a conversation's row (CONV_COLS). dup: the summary as a new string (GW_ENOMEM), else
 * SQLite's own buffer. */
static int read_conv(sqlite3_stmt *st, struct gw_conv *c, int dup)
{
    memset(c, 0, sizeof(*c));
    c->id = sqlite3_column_int64(st, 0);
    col_text(st, 1, c->ref, sizeof(c->ref));
    c->org_id = sqlite3_column_int64(st, 2);
    col_text(st, 3, c->owner, sizeof(c->owner));
    col_text(st, 4, c->conv_id, sizeof(c->conv_id));
    col_text(st, 5, c->title, sizeof(c->title));
    c->shared = sqlite3_column_int(st, 6) != 0;
    c->turns = sqlite3_column_int64(st, 7);
    c->summary_upto = sqlite3_column_int64(st, 9);
    c->created_ms = sqlite3_column_int64(st, 10);
    c->updated_ms = sqlite3_column_int64(st, 11);
    if (dup)
        return (c->summary = col_dup(st, 8, NULL)) != NULL ? 0 : GW_ENOMEM;
    const unsigned char *t = sqlite3_column_text(st, 8);
    c->summary = t != NULL ? (char *)t : (char *)"";
    return 0;
}

static int sq_conv_append(struct gw_store *base, const struct gw_conv_append *a,
                          struct gw_conv *conv)
{
    struct sq *s = (struct sq *)base;
    struct gw_conv row = {0};
    int own, rc, found = 0;

    if ((rc = own_begin(s, &own)) != 0)
        return rc;
    sqlite3_stmt *st = stmt(s, S_CONV_UPSERT);
    if (st == NULL) {
        rc = GW_ESTORE;
        goto out;
    }
    bind_text_ref(st, 1, a->ref, -1);
    sqlite3_bind_int64(st, 2, a->org_id);
    bind_text_ref(st, 3, a->owner, -1);
    bind_text_ref(st, 4, a->conv_id, -1);
    bind_text_ref(st, 5, a->title, -1);
    sqlite3_bind_int64(st, 6, a->n);
    sqlite3_bind_int64(st, 7, a->now_ms);
    sqlite3_set_last_insert_rowid(s->db, 0); /* the upsert's update leaves it so */
    if ((rc = exec_done(s, st)) != 0)
        goto out;
    /* a new conversation (a request's own, most often): its id is the new rowid and its turns
     * are these, without reading the row back */
    if (conv == NULL && sqlite3_last_insert_rowid(s->db) > 0) {
        row.id = sqlite3_last_insert_rowid(s->db);
        row.turns = a->n;
        goto turns;
    }
    if ((st = stmt(s, S_CONV_GET)) == NULL) {
        rc = GW_ESTORE;
        goto out;
    }
    sqlite3_bind_int64(st, 1, a->org_id);
    bind_text_ref(st, 2, a->owner, -1);
    bind_text_ref(st, 3, a->conv_id, -1);
    int step = sqlite3_step(st);
    rc = step == SQLITE_ROW ? read_conv(st, &row, conv != NULL) : 0;
    found = step == SQLITE_ROW;
    while (step == SQLITE_ROW)
        step = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == 0 && step != SQLITE_DONE)
        rc = err_from(s, step, NULL);
    else if (rc == 0 && !found)
        rc = GW_ESTORE;
turns:
    for (int i = 0; rc == 0 && i < a->n; i++) {
        const struct gw_conv_turn *t = &a->turns[i];
        if ((st = stmt(s, S_TURN_INSERT)) == NULL) {
            rc = GW_ESTORE;
            break;
        }
        sqlite3_bind_int64(st, 1, row.id);
        sqlite3_bind_int64(st, 2, row.turns - a->n + 1 + i);
        bind_text_ref(st, 3, t->role, -1);
        bind_text_ref(st, 4, t->message, (int)t->message_len);
        bind_text_ref(st, 5, t->request_id, -1);
        bind_text_ref(st, 6, t->model, -1);
        sqlite3_bind_int64(st, 7, t->tokens);
        sqlite3_bind_int64(st, 8, t->created_ms != 0 ? t->created_ms : a->now_ms);
        rc = exec_done(s, st);
    }
out:
    rc = own_end(s, own, rc);
    if (found && conv != NULL) {
        if (rc == 0)
            *conv = row; /* transferred */
        else
            gw_conv_cleanup(&row);
    }
    return rc;
}

/* The one conversation statement id (bound) gives, with its summary (new). */
static int conv_one(struct sq *s, sqlite3_stmt *st, struct gw_conv *out)
{
    int rc = sqlite3_step(st);
    int err = rc == SQLITE_ROW ? read_conv(st, out, 1) : 0;
    sqlite3_reset(st);
    if (err != 0)
        return err;
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? GW_ENOTFOUND : err_from(s, rc, NULL);
}

static int sq_conv_get(struct gw_store *base, int64_t org_id, const char *owner,
                       const char *conv_id, struct gw_conv *out)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_CONV_GET);
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, org_id);
    bind_text(st, 2, owner);
    bind_text(st, 3, conv_id);
    return conv_one(s, st, out);
}

static int sq_conv_get_shared(struct gw_store *base, int64_t org_id, const char *ref,
                              struct gw_conv *out)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_CONV_GET_SHARED);
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, org_id);
    bind_text(st, 2, ref);
    return conv_one(s, st, out);
}

static int sq_conv_turns(struct gw_store *base, int64_t conv, int64_t after_seq, int limit,
                         gw_store_turn_cb cb, void *arg)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_CONV_TURNS);
    int rc;
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, conv);
    sqlite3_bind_int64(st, 2, after_seq);
    sqlite3_bind_int(st, 3, limit > 0 ? limit : -1); /* negative: no limit */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct gw_conv_turn t = {0};
        const unsigned char *m = sqlite3_column_text(st, 2);
        t.seq = sqlite3_column_int64(st, 0);
        col_text(st, 1, t.role, sizeof(t.role));
        t.message = m != NULL ? (char *)m : (char *)"";
        t.message_len = m != NULL ? (size_t)sqlite3_column_bytes(st, 2) : 0;
        col_text(st, 3, t.request_id, sizeof(t.request_id));
        col_text(st, 4, t.model, sizeof(t.model));
        t.tokens = sqlite3_column_int64(st, 5);
        t.created_ms = sqlite3_column_int64(st, 6);
        if (cb(arg, &t) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : GW_ESTORE;
}

/* cb for each conversation the bound st gives (summary: SQLite's buffer). */
static int conv_each(sqlite3_stmt *st, gw_store_conv_cb cb, void *arg)
{
    struct gw_conv c;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        (void)read_conv(st, &c, 0);
        if (cb(arg, &c) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : GW_ESTORE;
}

static int sq_conv_list(struct gw_store *base, const struct gw_conv_filter *f,
                        gw_store_conv_cb cb, void *arg)
{
    struct sq *s = (struct sq *)base;
    /* one statement per index: the owner's, the org's shared ones, all of the org's */
    enum stmt_id id = f->owner != NULL ? S_CONV_LIST_OWNER
                      : f->shared_only ? S_CONV_LIST_SHARED
                                       : S_CONV_LIST_ORG;
    sqlite3_stmt *st = stmt(s, id);
    int i = 1;
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, i++, f->org_id);
    if (id == S_CONV_LIST_OWNER) {
        bind_text(st, i++, f->owner);
        sqlite3_bind_int(st, i++, f->shared_only != 0);
    }
    sqlite3_bind_int64(st, i++, f->before_ms);
    sqlite3_bind_int64(st, i++, f->before_id);
    bind_text(st, i++, f->q);
    sqlite3_bind_int(st, i, f->limit);
    return conv_each(st, cb, arg);
}

static int sq_conv_set_shared(struct gw_store *base, int64_t org_id, const char *owner,
                              const char *conv_id, int shared)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_CONV_SET_SHARED);
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, org_id);
    bind_text(st, 2, owner);
    bind_text(st, 3, conv_id);
    sqlite3_bind_int(st, 4, shared);
    int rc = exec_done(s, st);
    if (rc == 0 && sqlite3_changes(s->db) == 0)
        return GW_ENOTFOUND;
    return rc;
}

static int sq_conv_set_summary(struct gw_store *base, int64_t conv, const char *summary,
                               int64_t upto)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_CONV_SET_SUMMARY);
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, conv);
    bind_text(st, 2, summary);
    sqlite3_bind_int64(st, 3, upto);
    return exec_done(s, st); /* no row changed: a summary as long is there already */
}

/* Run the bound DELETE … RETURNING id st: *id, 0 when it deleted nothing. */
static int delete_returning(struct sq *s, sqlite3_stmt *st, int64_t *id)
{
    int rc = sqlite3_step(st);
    *id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : err_from(s, rc, NULL);
}

/* What hangs on a deleted conversation's row id: the idempotency records of the requests that
 * added its turns (they hold the answers), then the turns. */
static int delete_content(struct sq *s, int64_t id)
{
    static const enum stmt_id steps[] = {S_CONV_DEL_IDEM, S_CONV_DEL_TURNS};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        sqlite3_stmt *st = stmt(s, steps[i]);
        if (st == NULL)
            return GW_ESTORE;
        sqlite3_bind_int64(st, 1, id);
        int rc = exec_done(s, st);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* After deletions have committed: copy the WAL into the database and empty it, so that the
 * deleted rows' old frames are gone too (secure_delete has zeroed them in the new ones). A
 * passive checkpoint first copies the bulk without blocking anyone; the truncating one holds
 * new writers back while it waits for readers, so it waits briefly. Best effort: a reader
 * still on an old snapshot keeps the WAL busy, and the next checkpoint that completes does it
 * (the rows are deleted either way). */
static void wipe_wal(struct sq *s)
{
    (void)sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    s->busy_cap_us = 250000;
    int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    s->busy_cap_us = 0;
    if (rc == SQLITE_BUSY)
        GW_LOG_DEBUG("store", "WAL checkpoint after a deletion: busy, left to the next one");
    else if (rc != SQLITE_OK)
        GW_LOG_WARN("store", "WAL checkpoint after a deletion failed: %s", sqlite3_errmsg(s->db));
}

static int sq_conv_delete(struct gw_store *base, int64_t org_id, const char *owner,
                          const char *conv_id)
{
    struct sq *s = (struct sq *)base;
    int64_t id = 0;
    int own, rc;
    if ((rc = own_begin(s, &own)) != 0)
        return rc;
    sqlite3_stmt *st = stmt(s, S_CONV_DELETE);
    if (st == NULL) {
        rc = GW_ESTORE;
    } else {
        sqlite3_bind_int64(st, 1, org_id);
        bind_text(st, 2, owner);
        bind_text(st, 3, conv_id);
        rc = delete_returning(s, st, &id);
    }
    if (rc == 0)
        rc = id > 0 ? delete_content(s, id) : GW_ENOTFOUND;
    rc = own_end(s, own, rc);
    if (rc == 0 && own) /* in the caller's transaction nothing is committed yet */
        wipe_wal(s);
    return rc;
}

static int sq_conv_purge(struct gw_store *base, int64_t now_ms, int limit, int64_t *count)
{
    struct sq *s = (struct sq *)base;
    int rc = 0, joined = !sqlite3_get_autocommit(s->db);
    /* one conversation per transaction: the write lock is never held for long */
    for (int i = 0; i < limit && rc == 0; i++) {
        int64_t id = 0;
        int own;
        if ((rc = own_begin(s, &own)) != 0)
            break;
        sqlite3_stmt *st = stmt(s, S_CONV_PURGE_ONE);
        if (st == NULL) {
            rc = GW_ESTORE;
        } else {
            sqlite3_bind_int64(st, 1, now_ms);
            rc = delete_returning(s, st, &id);
        }
        if (rc == 0 && id > 0)
            rc = delete_content(s, id);
        if ((rc = own_end(s, own, rc)) != 0 || id == 0)
            break;
        (*count)++;
    }
    if (*count > 0 && !joined)
        wipe_wal(s);
    return rc;
}

static int sq_conv_export(struct gw_store *base, int64_t org_id, int shared_only,
                          int64_t from_ms, int64_t to_ms, int64_t after_id, int limit,
                          gw_store_conv_cb cb, void *arg)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_CONV_EXPORT);
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, org_id);
    sqlite3_bind_int(st, 2, shared_only);
    sqlite3_bind_int64(st, 3, from_ms);
    sqlite3_bind_int64(st, 4, to_ms);
    sqlite3_bind_int64(st, 5, after_id);
    sqlite3_bind_int(st, 6, limit);
    return conv_each(st, cb, arg);
}

/* ---- audit trail ---- */

static int sq_audit_append(struct gw_store *base, struct gw_audit *a)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, S_AUDIT_INSERT);
    if (st == NULL)
        return GW_ESTORE;
    sqlite3_bind_int64(st, 1, a->created_ms);
    sqlite3_bind_int64(st, 2, a->org_id);
    bind_text(st, 3, a->actor);
    bind_text(st, 4, a->actor_role);
    bind_text(st, 5, a->action);
    bind_text(st, 6, a->target);
    bind_text(st, 7, a->request_id);
    bind_text(st, 8, a->detail);
    int rc = exec_done(s, st);
    if (rc == 0)
        a->id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

static int sq_audit_list(struct gw_store *base, int64_t org_id, int64_t after_id, int limit,
                         gw_store_audit_cb cb, void *arg)
{
    struct sq *s = (struct sq *)base;
    sqlite3_stmt *st = stmt(s, org_id != 0 ? S_AUDIT_LIST : S_AUDIT_LIST_ALL);
    int i = 1, rc;
    if (st == NULL)
        return GW_ESTORE;
    if (org_id != 0)
        sqlite3_bind_int64(st, i++, org_id);
    sqlite3_bind_int64(st, i++, after_id);
    sqlite3_bind_int(st, i, limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct gw_audit a = {0};
        const unsigned char *d = sqlite3_column_text(st, 8);
        a.id = sqlite3_column_int64(st, 0);
        a.created_ms = sqlite3_column_int64(st, 1);
        a.org_id = sqlite3_column_int64(st, 2);
        col_text(st, 3, a.actor, sizeof(a.actor));
        col_text(st, 4, a.actor_role, sizeof(a.actor_role));
        col_text(st, 5, a.action, sizeof(a.action));
        col_text(st, 6, a.target, sizeof(a.target));
        col_text(st, 7, a.request_id, sizeof(a.request_id));
        a.detail = d != NULL ? (const char *)d : "{}";
        if (cb(arg, &a) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : GW_ESTORE;
}

static const struct gw_store_ops sqlite_ops = {
    .name = "sqlite",
    .writer_mode = sq_writer_mode,
    .free = sq_free,
    .migrate = sq_migrate,
    .schema_version = sq_schema_version,
    .org_create = sq_org_create,
    .org_get = sq_org_get,
    .org_set_policy = sq_org_set_policy,
    .key_insert = sq_key_insert,
    .key_by_hash = sq_key_by_hash,
    .key_get = sq_key_get,
    .key_list = sq_key_list,
    .key_set_policy = sq_key_set_policy,
    .key_revoke = sq_key_revoke,
    .app_client_insert = sq_app_client_insert,
    .app_client_get = sq_app_client_get,
    .app_client_list = sq_app_client_list,
    .app_client_approve = sq_app_client_approve,
    .app_client_revoke = sq_app_client_revoke,
    .app_client_update = sq_app_client_update,
    .app_origin_known = sq_app_origin_known,
    .share_code_insert = sq_share_code_insert,
    .share_code_consume = sq_share_code_consume,
    .session_insert = sq_session_insert,
    .session_get = sq_session_get,
    .nonce_burn = sq_nonce_burn,
    .session_purge = sq_session_purge,
    .superadmin_exists = sq_superadmin_exists,
    .usage_reserve = sq_usage_reserve,
    .usage_settle = sq_usage_settle,
    .usage_get = sq_usage_get,
    .usage_spent = sq_usage_spent,
    .usage_recent = sq_usage_recent,
    .usage_list = sq_usage_list,
    .usage_recover = sq_usage_recover,
    .usage_group = sq_usage_group,
    .usage_page = sq_usage_page,
    .org_list = sq_org_list,
    .org_get_id = sq_org_get_id,
    .key_rotate = sq_key_rotate,
    .health = sq_health,
    .tx = sq_tx,
    .in_tx = sq_in_tx,
    .lock_scope = sq_lock_scope,
    .usage_snapshot = sq_usage_snapshot,
    .counters_add = sq_counters_add,
    .rate_list = sq_rate_list,
    .idem_claim = sq_idem_claim,
    .idem_complete = sq_idem_complete,
    .idem_release = sq_idem_release,
    .idem_recover = sq_idem_recover,
    .idem_purge = sq_idem_purge,
    .conv_append = sq_conv_append,
    .conv_get = sq_conv_get,
    .conv_get_shared = sq_conv_get_shared,
    .conv_turns = sq_conv_turns,
    .conv_list = sq_conv_list,
    .conv_set_shared = sq_conv_set_shared,
    .conv_set_summary = sq_conv_set_summary,
    .conv_delete = sq_conv_delete,
    .conv_export = sq_conv_export,
    .conv_purge = sq_conv_purge,
    .audit_append = sq_audit_append,
    .audit_list = sq_audit_list,
};
