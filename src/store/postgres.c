/*
 * store/postgres — the PostgreSQL backend of store.h (libpq), for several gateway nodes on one
 * database.
 *
 * Invariants:
 * - One struct pg is one connection, used by one thread at a time. Statements are prepared
 *   once per connection (lazily) and every value goes as a parameter; no SQL is built from
 *   input. A broken connection is reset once and the statement retried when it was never
 *   sent.
 * - The schema is schema.c's, with auto-numbered ids as BIGSERIAL. Migrations run in one
 *   transaction under a fixed advisory lock, so concurrent migrators serialise.
 * - Text read back is copied with bounds; numbers are parsed strictly; a NULL reads as "" / 0.
 */
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store_int.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/util.h"

#define MIGRATE_LOCK 7406190 /* pg_advisory_xact_lock key of migrations */
#define MAX_PARAMS 40
#define COUNTER_SHARDS 8 /* a process's connections take them in turn */

enum stmt_id {
    P_ORG_INSERT,
    P_ORG_GET,
    P_ORG_SET,
    P_KEY_INSERT,
    P_KEY_BY_HASH,
    P_KEY_BY_HASH_MANY,
    P_KEY_GET,
    P_KEY_LIST,
    P_KEY_SET,
    P_KEY_REVOKE,
    P_APP_CLIENT_INSERT,
    P_APP_CLIENT_GET,
    P_APP_CLIENT_LIST,
    P_APP_CLIENT_APPROVE,
    P_APP_CLIENT_REVOKE,
    P_APP_CLIENT_UPDATE,
    P_APP_ORIGIN,
    P_SHARE_CODE_INSERT,
    P_SHARE_CODE_CONSUME,
    P_SESSION_INSERT,
    P_SESSION_GET,
    P_NONCE_BURN,
    P_PURGE_CODES,
    P_PURGE_SESSIONS,
    P_PURGE_NONCES,
    P_SUPERADMIN,
    P_USAGE_INSERT,
    P_USAGE_SETTLE,
    P_USAGE_GET,
    P_USAGE_SPENT,
    P_USAGE_SPENT_ORG,
    P_USAGE_RECENT,
    P_USAGE_RECENT_ORG,
    P_USAGE_LIST,
    P_USAGE_RECOVER,
    P_LOCK,
    P_SNAPSHOT,
    P_SNAPSHOT_ORG,
    P_COUNTERS_ADD,
    P_RESERVE_COUNTED,
    P_SETTLE_COUNTED,
    P_BATCH,
    P_RATE_LIST,
    P_IDEM_CLAIM,
    P_IDEM_GET,
    P_IDEM_COMPLETE,
    P_IDEM_RELEASE,
    P_IDEM_RECOVER,
    P_IDEM_PURGE,
    P_CONV_UPSERT,
    P_TURN_INSERT,
    P_CONV_APPEND1, /* ... 4: the upsert and 1 to 4 turns in one statement */
    P_CONV_APPEND2,
    P_CONV_APPEND3,
    P_CONV_APPEND4,
    P_CONV_BATCH,
    P_CONV_GET,
    P_CONV_GET_SHARED,
    P_CONV_TURNS,
    P_CONV_LIST_OWNER,
    P_CONV_LIST_SHARED,
    P_CONV_LIST_ORG,
    P_CONV_SET_SHARED,
    P_CONV_SET_SUMMARY,
    P_CONV_DELETE,
    P_CONV_PURGE_ONE,
    P_CONV_DEL_IDEM,
    P_CONV_DEL_TURNS,
    P_CONV_EXPORT,
    P_AUDIT_INSERT,
    P_AUDIT_LIST,
    P_AUDIT_LIST_ALL,
    P_KEY_ROTATE,
    P_ORG_LIST,
    P_ORG_GET_ID,
    P_HEALTH,
    /* by gw_usage_group, then by the index the filter takes (enum usage_index) */
    P_USAGE_GROUP,
    P_USAGE_GROUP_LAST = P_USAGE_GROUP + 4 * 3 - 1,
    P_USAGE_PAGE,
    P_USAGE_PAGE_LAST = P_USAGE_PAGE + 3 - 1,
    P_COUNT
};

/* The index a usage read's filter goes through: a key's rows (usage_key_time), an org's
 * (usage_org_time), or everyone's time range (usage_time). Each has a statement of its own: in
 * a generic plan (plan_cache_mode) "($1 = 0 OR org_id = $1)" leaves nothing to search the
 * index by. */
enum usage_index { UI_ANY, UI_ORG, UI_KEY };
static enum usage_index usage_index(const struct gw_usage_filter *f)
{
    return f->key_row_id != 0 ? UI_KEY : f->org_id != 0 ? UI_ORG : UI_ANY;
}

/* The admin plane's usage reads: $1 org, $2 key (0: any), $3 model, $4 provider ("": any),
 * created_ms in [$5, $6). Shaped for the generic plans this connection makes (plan_cache_mode):
 * "$2 = 0 OR key_row_id = $2" would be estimated to keep almost no row, and the planner would
 * then take usage_time for an org's range and sort a page's whole range rather than walk an
 * index to the page's end; a CASE is estimated neutrally. An org's and a key's time range are
 * row ranges, which only their own index can search. EXPLAIN EXECUTE (200,000 rows, 50 orgs):
 * a page is Limit, Incremental Sort (Presorted Key: created_ms), Index Scan using
 * usage_org_time (Index Cond: ROW(org_id, created_ms) >= ROW($1, $5) AND ... < ROW($1, $6)
 * AND org_id = $1 AND created_ms >= $7), so it reads about limit rows past the cursor;
 * usage_key_time and usage_time (created_ms >= $5 AND created_ms < $6) likewise, and a group
 * reads its range through the same index (Bitmap Index Scan on usage_org_time). Text is
 * ordered bytewise (COLLATE "C"), as SQLite orders it, whatever the database's locale. */
#define UW_ANY                                                                                     \
    "CASE WHEN $1::bigint = 0 THEN true ELSE org_id = $1 END AND CASE WHEN $2::bigint = 0 THEN "   \
    "true ELSE key_row_id = $2 END AND created_ms >= $5::bigint AND created_ms < $6::bigint"
#define UW_ORG                                                                                     \
    "org_id = $1::bigint AND (org_id, created_ms) >= ($1, $5::bigint) AND (org_id, created_ms) < " \
    "($1, $6::bigint) AND CASE WHEN $2::bigint = 0 THEN true ELSE key_row_id = $2 END"
#define UW_KEY                                                                                     \
    "key_row_id = $2::bigint AND (key_row_id, created_ms) >= ($2, $5::bigint) AND (key_row_id, "  \
    "created_ms) < ($2, $6::bigint) AND CASE WHEN $1::bigint = 0 THEN true ELSE org_id = $1 END"
#define UW_REST                                                                                    \
    " AND CASE WHEN $3::text = '' THEN true ELSE model = $3 END AND CASE WHEN $4::text = '' THEN " \
    "true ELSE provider = $4 END"
/* grouped by a column (or the UTC day), in its order, at most $7 groups */
#define GROUP_SQL(expr, w)                                                                         \
    "SELECT (" expr ") COLLATE \"C\" AS g, " USAGE_SUMS " FROM usage WHERE " w UW_REST " GROUP "   \
    "BY g ORDER BY g LIMIT $7::bigint"
#define GROUP_DAY_SQL(w)                                                                           \
    GROUP_SQL("to_char(to_timestamp(created_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')", w)
#define GROUP_MODEL_SQL(w) GROUP_SQL("model", w)
#define GROUP_PROVIDER_SQL(w) GROUP_SQL("provider", w)
/* by key: summed per key row first, so that the key's name is looked up once per key, not
 * once per row */
#define GROUP_KEY_SQL(w)                                                                           \
    "SELECT (" USAGE_KEY_NAME("x") ") COLLATE \"C\" AS g, SUM(x.n), SUM(x.req), SUM(x.tin), "      \
    "SUM(x.tout), SUM(x.cost) FROM (SELECT key_row_id, " USAGE_SUMS " FROM usage WHERE " w        \
    UW_REST " GROUP BY key_row_id) x " USAGE_KEY_JOINS("x") "GROUP BY g ORDER BY g LIMIT "        \
    "$7::bigint"
#define GROUPS(by, f)                                                                              \
    [P_USAGE_GROUP + 3 * (by) + UI_ANY] = {f(UW_ANY), 7},                                          \
    [P_USAGE_GROUP + 3 * (by) + UI_ORG] = {f(UW_ORG), 7},                                          \
    [P_USAGE_GROUP + 3 * (by) + UI_KEY] = {f(UW_KEY), 7}
/* a page after the cursor ($7, $8), at most $9 rows: the rows are taken from the index first
 * (in created_ms order, ties sorted by request_id), then only they are joined to their key's
 * and org's names */
#define PAGE_SQL(w)                                                                                \
    "SELECT x.*, " USAGE_KEY_NAME("x") ", COALESCE(o.slug, '') FROM (SELECT " USAGE_COLS " FROM "  \
    "usage WHERE " w UW_REST " AND (created_ms, request_id COLLATE \"C\") > ($7::bigint, "         \
    "$8::text) ORDER BY created_ms, request_id COLLATE \"C\" LIMIT $9::bigint) x "                 \
    USAGE_KEY_JOINS("x") "LEFT JOIN orgs o ON o.id = x.org_id ORDER BY x.created_ms, "            \
    "x.request_id COLLATE \"C\""

#define RECENT_SQL                                                                                 \
    "SELECT created_ms, (kind = 'chat')::int, tokens_in + tokens_out FROM usage WHERE "

/* The hour's buckets of a scope, a range the planner takes for a narrow one. These statements
 * run on generic plans, where a bound it cannot see is a third of the rows and one bound alone
 * plans as a scan of the whole table (an hour of buckets per scope and shard, read on every
 * admission); with two bounds it estimates 0.5 % and goes through the index. The far bound,
 * 30 years off, is always true. */
#define HOUR_SINCE(lo) "second >= " lo " AND second < " lo " + 1000000000"
#define HOUR_SINCE_MIN(lo) "minute >= " lo " AND minute < " lo " + 1000000000"
#define HOUR_BEFORE(col, hi) col " < " hi " AND " col " >= " hi " - 1000000000"
#define SNAPSHOT_SQL(col, scope)                                                                   \
    "SELECT h.requests, h.tokens, "                                                                \
    "CASE WHEN $5 & 2 <> 0 THEN (SELECT count(*) FROM usage WHERE " col " = $1 AND "              \
    "state = 'reserved' AND kind = 'chat') ELSE 0 END, "                                           \
    "CASE WHEN $5 & 4 <> 0 THEN (SELECT COALESCE(SUM(reserved_micros), 0) FROM usage WHERE " col  \
    " = $1 AND state = 'reserved') ELSE 0 END, "                                                   \
    "CASE WHEN $5 & 4 <> 0 THEN (SELECT COALESCE(SUM(spent_micros), 0) FROM usage_totals WHERE "  \
    "scope = " scope " AND id = $1 AND period = 'd' AND window_start = $3) ELSE 0 END, "          \
    "CASE WHEN $5 & 4 <> 0 THEN (SELECT COALESCE(SUM(spent_micros), 0) FROM usage_totals WHERE "  \
    "scope = " scope " AND id = $1 AND period = 'm' AND window_start = $4) ELSE 0 END "           \
    "FROM (SELECT COALESCE(SUM(requests), 0) AS requests, COALESCE(SUM(tokens), 0) AS tokens "   \
    "FROM (SELECT requests, tokens FROM usage_rate WHERE $5 & 1 <> 0 AND scope = " scope " AND "   \
    "id = $1 AND second >= $2 AND second < ($2 + 59) / 60 * 60 UNION ALL SELECT requests, tokens " \
    "FROM usage_rate_min WHERE $5 & 1 <> 0 AND scope = " scope " AND id = $1 AND "                 \
    HOUR_SINCE_MIN("($2 + 59) / 60") ") b) h"
/* Every counter of the key and (when $2 > 0) the org: the spend of the day and the month, the
 * hour bucket, and the buckets that left the hour. $1 key, $2 org, $3 day start, $4 month
 * start, $5 usd, $6 second, $7 requests, $8 tokens, $9 prune before, $10 the key's shard, $11
 * the org's; guard is a further condition on every change. Counters are changed in one order
 * everywhere (scope, id, period), so two statements never wait on each other in a circle; the
 * buckets that left the hour are dropped by whoever gets them first (SKIP LOCKED), each
 * scope's looked up in the index through a lateral join (a plain join or an OR of the scopes
 * plans as a scan of the whole table: an hour of buckets, on every write). */
#define COUNTERS_CTE(guard)                                                                        \
    "t AS (INSERT INTO usage_totals(scope, id, period, window_start, shard, spent_micros) "        \
    "SELECT * FROM (VALUES (0, $1::bigint, 'd', $3::bigint, $10::int, $5::bigint), (0, $1, 'm', "  \
    "$4::bigint, $10, $5), (1, $2::bigint, 'd', $3, $11::int, $5), (1, $2, 'm', $4, $11, $5)) v "  \
    "WHERE v.column2 > 0 AND v.column6 <> 0" guard " ON CONFLICT (scope, id, period, "             \
    "window_start, shard) DO UPDATE SET spent_micros = usage_totals.spent_micros + "               \
    "excluded.spent_micros RETURNING 1), "                                                         \
    "r AS (INSERT INTO usage_rate(scope, id, second, shard, requests, tokens) SELECT * FROM "      \
    "(VALUES (0, $1, $6::bigint, $10, $7::bigint, $8::bigint), (1, $2, $6, $11, $7, $8)) v "       \
    "WHERE v.column2 > 0 AND (v.column5 <> 0 OR v.column6 <> 0)" guard " ON CONFLICT (scope, id, " \
    "second, shard) DO UPDATE SET requests = usage_rate.requests + excluded.requests, tokens = "   \
    "usage_rate.tokens + excluded.tokens RETURNING 1), "                                           \
    "m AS (INSERT INTO usage_rate_min(scope, id, minute, shard, requests, tokens) SELECT * FROM "  \
    "(VALUES (0, $1, $6 / 60, $10, $7, $8), (1, $2, $6 / 60, $11, $7, $8)) v WHERE v.column2 > 0 " \
    "AND (v.column5 <> 0 OR v.column6 <> 0)" guard " ON CONFLICT (scope, id, minute, shard) DO "   \
    "UPDATE SET requests = usage_rate_min.requests + excluded.requests, tokens = "                \
    "usage_rate_min.tokens + excluded.tokens RETURNING 1), "                                       \
    PRUNE_CTE("p", "usage_rate", "second", "$9", guard) ", "                                      \
    PRUNE_CTE("q", "usage_rate_min", "minute", "$9 / 60", guard) " "
/* The buckets of key $1 and org $2 before hi in table (col: second or minute) */
#define PRUNE_CTE(name, table, col, hi, guard)                                                     \
    name " AS (DELETE FROM " table " WHERE ctid = ANY (ARRAY(SELECT b.ctid FROM (VALUES (0, "      \
    "$1::bigint), (1, $2::bigint)) x(scope, sid) CROSS JOIN LATERAL (SELECT ctid FROM " table     \
    " b WHERE b.scope = x.scope AND b.id = x.sid AND " HOUR_BEFORE("b." col, hi) " AND "          \
    "$9::bigint > 0" guard " FOR UPDATE SKIP LOCKED) b)) RETURNING 1)"
#define COUNTERS_COUNT                                                                             \
    "(SELECT count(*) FROM t), (SELECT count(*) FROM r), (SELECT count(*) FROM m), (SELECT "       \
    "count(*) FROM p), (SELECT count(*) FROM q)"

/* P_BATCH's buckets of each scope in c before its latest bound, in table (col: second or
 * minute; cur: the column of c's own buckets, which stay) */
#define BATCH_PRUNE_CTE(name, table, col, hi, cur)                                                 \
    name " AS (DELETE FROM " table " WHERE ctid = ANY (ARRAY(SELECT u.ctid FROM (SELECT scope, "   \
    "sid, MAX(prune) AS prune FROM c WHERE prune > 0 GROUP BY scope, sid) x CROSS JOIN LATERAL "   \
    "(SELECT b.ctid FROM " table " b WHERE b.scope = x.scope AND b.id = x.sid AND "               \
    HOUR_BEFORE("b." col, hi) " AND NOT EXISTS (SELECT 1 FROM c WHERE c.scope = b.scope AND "     \
    "c.sid = b.id AND " cur " = b." col ") FOR UPDATE OF b SKIP LOCKED) u)) RETURNING 1)"

static const struct {
    const char *sql;
    int nparams;
} stmts[P_COUNT] = {
    [P_LOCK] = {"SELECT pg_advisory_xact_lock($1), set_config('synchronous_commit', 'off', true)",
                1},
    [P_SNAPSHOT] = {SNAPSHOT_SQL("key_row_id", "0"), 5},
    [P_SNAPSHOT_ORG] = {SNAPSHOT_SQL("org_id", "1"), 5},
    [P_COUNTERS_ADD] = {"WITH " COUNTERS_CTE("") "SELECT " COUNTERS_COUNT, 11},
    /* a reservation's row and its counters, one statement: its own transaction when no
     * BEGIN is open; $1..$11 as above, the row from $12 */
    [P_RESERVE_COUNTED] = {"WITH u AS (INSERT INTO usage(" USAGE_COLS ") VALUES ($12, $13, $14, "
                           "$15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, "
                           "$28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38) RETURNING 1), "
                           COUNTERS_CTE("") "SELECT (SELECT count(*) FROM u), " COUNTERS_COUNT,
                           38},
    /* a settlement and its counters, one statement, changing a row still reserved only: a
     * statement retried after its answer was lost finds nothing to count twice */
    [P_SETTLE_COUNTED] = {"WITH u AS (UPDATE usage SET state = $13, tokens_in = $14, tokens_out = "
                          "$15, cached_tokens = $16, reasoning_tokens = $17, cost_micros = $18, "
                          "latency_ms = $19, status = $20, error_code = $21, settled_ms = $22, "
                          "provider = $23, model = $24, reserved_micros = $25, attempts = $26, "
                          "route_method = $27, reserved_tokens = $28 WHERE request_id = $12 AND "
                          "state = 'reserved' RETURNING 1), "
                          COUNTERS_CTE(" AND EXISTS (SELECT 1 FROM u)")
                          "SELECT (SELECT count(*) FROM u), " COUNTERS_COUNT,
                          28},
    /* many reservations and settlements with their counters, one statement: each column an
     * array. Reservations $1..$27 (USAGE_COLS), settlements $28..$44 (as P_USAGE_SETTLE),
     * every counters' change $45..$56 (its request id, then as COUNTERS_CTE), counted only
     * where its row was written. Answers the settled request ids. */
    [P_BATCH] = {"WITH ins AS (INSERT INTO usage(" USAGE_COLS ") SELECT * FROM unnest($1::text[], "
                 "$2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[], "
                 "$8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], "
                 "$13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::text[], "
                 "$18::text[], $19::bigint[], $20::bigint[], $21::text[], $22::text[], "
                 "$23::bigint[], $24::text[], $25::text[], $26::bigint[], $27::text[]) RETURNING "
                 "request_id), "
                 "upd AS (UPDATE usage SET state = v.state, tokens_in = v.tin, tokens_out = "
                 "v.tout, cached_tokens = v.cached, reasoning_tokens = v.reasoning, cost_micros = "
                 "v.cost, latency_ms = v.latency, status = v.status, error_code = v.ecode, "
                 "settled_ms = v.settled, provider = v.provider, model = v.model, "
                 "reserved_micros = v.rmicros, attempts = v.attempts, route_method = v.route, "
                 "reserved_tokens = v.rtokens FROM unnest($28::text[], $29::text[], "
                 "$30::bigint[], $31::bigint[], $32::bigint[], $33::bigint[], $34::bigint[], "
                 "$35::bigint[], $36::bigint[], $37::text[], $38::bigint[], $39::text[], "
                 "$40::text[], $41::bigint[], $42::bigint[], $43::text[], $44::bigint[]) AS "
                 "v(id, state, tin, tout, cached, reasoning, cost, latency, status, ecode, "
                 "settled, provider, model, rmicros, attempts, route, rtokens) WHERE "
                 "usage.request_id = v.id AND usage.state = 'reserved' RETURNING v.id), "
                 "d AS (SELECT * FROM unnest($45::text[], $46::bigint[], $47::bigint[], "
                 "$48::bigint[], $49::bigint[], $50::bigint[], $51::bigint[], $52::bigint[], "
                 "$53::bigint[], $54::bigint[], $55::bigint[], $56::bigint[]) AS d(id, key_id, "
                 "org_id, day_start, month_start, usd, second, requests, tokens, prune, "
                 "key_shard, org_shard) WHERE d.id IN (SELECT request_id FROM ins UNION ALL "
                 "SELECT id FROM upd)), "
                 "c AS (SELECT 0 AS scope, key_id AS sid, day_start, month_start, key_shard AS "
                 "shard, usd, second, requests, tokens, prune FROM d UNION ALL SELECT 1, org_id, "
                 "day_start, month_start, org_shard, usd, second, requests, tokens, prune FROM d "
                 "WHERE org_id > 0), "
                 "t AS (INSERT INTO usage_totals(scope, id, period, window_start, shard, "
                 "spent_micros) SELECT scope, sid, period, ws, shard, SUM(usd) FROM (SELECT "
                 "scope, sid, 'd' AS period, day_start AS ws, shard, usd FROM c UNION ALL SELECT "
                 "scope, sid, 'm', month_start, shard, usd FROM c) x GROUP BY scope, sid, period, "
                 "ws, shard HAVING SUM(usd) <> 0 ORDER BY scope, sid, period, ws, shard ON "
                 "CONFLICT (scope, id, period, window_start, shard) DO UPDATE SET spent_micros = "
                 "usage_totals.spent_micros + excluded.spent_micros RETURNING 1), "
                 "r AS (INSERT INTO usage_rate(scope, id, second, shard, requests, tokens) SELECT "
                 "scope, sid, second, shard, SUM(requests), SUM(tokens) FROM c GROUP BY scope, "
                 "sid, second, shard HAVING SUM(requests) <> 0 OR SUM(tokens) <> 0 ORDER BY "
                 "scope, sid, second, shard ON CONFLICT (scope, id, second, shard) DO UPDATE SET "
                 "requests = usage_rate.requests + excluded.requests, tokens = "
                 "usage_rate.tokens + excluded.tokens RETURNING 1), "
                 "m AS (INSERT INTO usage_rate_min(scope, id, minute, shard, requests, tokens) "
                 "SELECT scope, sid, second / 60, shard, SUM(requests), SUM(tokens) FROM c GROUP "
                 "BY scope, sid, second / 60, shard HAVING SUM(requests) <> 0 OR SUM(tokens) <> 0 "
                 "ORDER BY scope, sid, second / 60, shard ON CONFLICT (scope, id, minute, shard) "
                 "DO UPDATE SET requests = usage_rate_min.requests + excluded.requests, tokens = "
                 "usage_rate_min.tokens + excluded.tokens RETURNING 1), "
                 BATCH_PRUNE_CTE("p", "usage_rate", "second", "x.prune", "c.second") ", "
                 BATCH_PRUNE_CTE("q", "usage_rate_min", "minute", "x.prune / 60", "c.second / 60")
                 " SELECT id FROM upd WHERE (SELECT count(*) FROM t) >= 0 AND (SELECT count(*) "
                 "FROM r) >= 0 AND (SELECT count(*) FROM m) >= 0 AND (SELECT count(*) FROM p) >= "
                 "0 AND (SELECT count(*) FROM q) >= 0",
                 56},
    [P_IDEM_CLAIM] = {"INSERT INTO idempotency(caller, endpoint, idem_key, fingerprint, state, "
                      "request_id, node, created_ms, expires_ms) VALUES ($1, $2, $3, $4, "
                      "'in_flight', $5, $6, $7, $8) ON CONFLICT (caller, endpoint, idem_key) DO "
                      "UPDATE SET fingerprint = excluded.fingerprint, state = 'in_flight', "
                      "request_id = excluded.request_id, node = excluded.node, status = 0, "
                      "headers = '', body = '', created_ms = excluded.created_ms, "
                      "completed_ms = 0, expires_ms = excluded.expires_ms "
                      "WHERE idempotency.expires_ms < $9 RETURNING request_id",
                      9},
    [P_IDEM_GET] = {"SELECT fingerprint, state, request_id, node, status, headers, body, "
                    "created_ms, completed_ms, expires_ms FROM idempotency WHERE caller = $1 AND "
                    "endpoint = $2 AND idem_key = $3",
                    3},
    [P_IDEM_COMPLETE] = {"UPDATE idempotency SET state = $5, status = $6, headers = $7, body = $8, "
                         "completed_ms = $9 WHERE caller = $1 AND endpoint = $2 AND "
                         "idem_key = $3 AND request_id = $4",
                         9},
    [P_IDEM_RELEASE] = {"DELETE FROM idempotency WHERE caller = $1 AND endpoint = $2 AND "
                        "idem_key = $3 AND request_id = $4",
                        4},
    [P_IDEM_RECOVER] = {"UPDATE idempotency SET state = 'uncertain', completed_ms = $1 WHERE "
                        "state = 'in_flight' AND ($2 = '' OR node = $2)",
                        2},
    [P_IDEM_PURGE] = {"DELETE FROM idempotency WHERE ctid IN (SELECT ctid FROM idempotency WHERE "
                      "expires_ms < $1 LIMIT $2)",
                      2},
    [P_RATE_LIST] = {"SELECT second, SUM(requests), SUM(tokens) FROM usage_rate WHERE "
                     "scope = $1 AND id = $2 AND " HOUR_SINCE("$3") " GROUP BY second ORDER BY "
                     "second",
                     3},
    [P_ORG_INSERT] = {"INSERT INTO orgs(slug, name, created_ms) VALUES ($1, $2, $3) RETURNING id",
                      3},
    [P_ORG_GET] = {"SELECT " ORG_COLS " FROM orgs WHERE slug = $1", 1},
    [P_ORG_SET] = {"UPDATE orgs SET providers = $2, models = $3, rph = $4, tph = $5, "
                   "max_concurrent = $6, daily_usd_micros = $7, monthly_usd_micros = $8, "
                   "max_request_usd_micros = $9, capture = $10, retention_days = $11, "
                   "export_all = $12 WHERE slug = $1",
                   12},
    [P_KEY_INSERT] = {"INSERT INTO api_keys(key_id, key_hash, prefix, org_id, name, role, tier, "
                      "providers, models, rph, daily_usd_micros, monthly_usd_micros, created_ms, "
                      "tph, max_concurrent, max_request_usd_micros) VALUES ($1, $2, $3, "
                      "NULLIF($4::bigint, 0), $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, "
                      "$16) RETURNING id",
                      16},
    [P_KEY_BY_HASH] = {KEY_BY_HASH_SQL("$1", "$2::bigint"), 2},
    /* the same for each hash of the array $1, each row followed by the hash's place in it */
    [P_KEY_BY_HASH_MANY] = {"SELECT x.*, h.i FROM unnest($1::text[]) WITH ORDINALITY AS h(hash, i) "
                            "CROSS JOIN LATERAL (" KEY_BY_HASH_SQL("h.hash", "$2::bigint") ") x",
                            2},
    [P_KEY_GET] = {"SELECT " KEY_COLS "WHERE k.key_id = $1", 1},
    [P_KEY_LIST] = {"SELECT " KEY_COLS "WHERE k.org_id = $1 ORDER BY k.created_ms DESC, k.id DESC",
                    1},
    [P_KEY_SET] = {"UPDATE api_keys SET tier = $2, providers = $3, models = $4, rph = $5, "
                   "tph = $6, max_concurrent = $7, daily_usd_micros = $8, "
                   "monthly_usd_micros = $9, max_request_usd_micros = $10 WHERE key_id = $1",
                   10},
    [P_KEY_REVOKE] = {"UPDATE api_keys SET revoked_ms = CASE WHEN revoked = 1 THEN revoked_ms "
                      "ELSE $2 END, revoked = 1 WHERE key_id = $1",
                      2},
    [P_APP_CLIENT_INSERT] = {"INSERT INTO app_clients(client_id, org_id, name, origins, providers, "
                             "models, session_ttl_s, created_ms) VALUES ($1, $2, $3, $4, $5, $6, "
                             "$7, $8) RETURNING id",
                             8},
    [P_APP_CLIENT_GET] = {"SELECT " APP_CLIENT_COLS "WHERE a.client_id = $1", 1},
    [P_APP_CLIENT_LIST] = {"SELECT " APP_CLIENT_COLS "WHERE ($1::bigint = 0 OR a.org_id = $1) AND "
                           "a.id > $2 ORDER BY a.id LIMIT $3",
                           3},
    /* a revoked client stays revoked: it changes no row (told apart from an unknown one) */
    [P_APP_CLIENT_APPROVE] = {"UPDATE app_clients SET approved = 1, approved_ms = CASE WHEN "
                              "approved = 1 THEN approved_ms ELSE $2 END WHERE client_id = $1 "
                              "AND revoked = 0",
                              2},
    [P_APP_CLIENT_REVOKE] = {"UPDATE app_clients SET revoked = 1, revoked_ms = CASE WHEN "
                             "revoked = 1 THEN revoked_ms ELSE $2 END WHERE client_id = $1",
                             2},
    [P_APP_CLIENT_UPDATE] = {"UPDATE app_clients SET name = $2, origins = $3, providers = $4, "
                             "models = $5, session_ttl_s = $6 WHERE client_id = $1",
                             6},
    [P_SHARE_CODE_INSERT] = {"INSERT INTO share_codes(code_hash, " SHARE_CODE_COLS ") VALUES ($1, "
                             "$2, $3, $4, $5, $6, $7)",
                             7},
    /* one statement: a concurrent consumer waits for the row's lock, then finds used = 1 (READ
     * COMMITTED re-checks the WHERE on the row's new version) and gets no row */
    [P_SHARE_CODE_CONSUME] = {"UPDATE share_codes SET used = 1 WHERE code_hash = $1 AND used = 0 "
                              "RETURNING " SHARE_CODE_COLS,
                              1},
    [P_SESSION_INSERT] = {"INSERT INTO subject_sessions(" SESSION_COLS ") VALUES ($1, $2, $3, $4, "
                          "$5, $6, $7, $8)",
                          8},
#define PURGE_SQL(t)                                                                               \
    {"DELETE FROM " t " WHERE ctid IN (SELECT ctid FROM " t " WHERE expires_ms < $1 LIMIT $2)", 2}
    [P_PURGE_CODES] = PURGE_SQL("share_codes"),
    [P_PURGE_SESSIONS] = PURGE_SQL("subject_sessions"),
    [P_PURGE_NONCES] = PURGE_SQL("session_nonces"),
    [P_NONCE_BURN] = {"INSERT INTO session_nonces(token_hash, nonce, expires_ms) VALUES ($1, $2, "
                      "$3)",
                      3},
    [P_SESSION_GET] = {"SELECT " SESSION_COLS " FROM subject_sessions WHERE token_hash = $1", 1},
    /* exact: position, not LIKE, whose _ and % would match other origins */
    [P_APP_ORIGIN] = {"SELECT 1 FROM app_clients WHERE approved = 1 AND revoked = 0 AND "
                      "position(',' || $1 || ',' in ',' || origins || ',') > 0 LIMIT 1",
                      1},
    [P_SUPERADMIN] = {"SELECT 1 FROM api_keys WHERE role = 'superadmin' AND revoked = 0 LIMIT 1",
                      0},
    [P_USAGE_INSERT] = {"INSERT INTO usage(" USAGE_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
                        "$9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, "
                        "$23, $24, $25, $26, $27)",
                        27},
    [P_USAGE_SETTLE] = {"UPDATE usage SET state = $2, tokens_in = $3, tokens_out = $4, "
                        "cached_tokens = $5, reasoning_tokens = $6, cost_micros = $7, "
                        "latency_ms = $8, status = $9, error_code = $10, settled_ms = $11, "
                        "provider = $12, model = $13, reserved_micros = $14, attempts = $15, "
                        "route_method = $16, reserved_tokens = $17 WHERE request_id = $1",
                        17},
    [P_USAGE_GET] = {"SELECT " USAGE_COLS " FROM usage WHERE request_id = $1", 1},
    [P_USAGE_SPENT] = {SPENT_SQL "key_row_id = $1 AND created_ms >= $2", 2},
    [P_USAGE_SPENT_ORG] = {SPENT_SQL "org_id = $1 AND created_ms >= $2", 2},
    [P_USAGE_RECENT] = {RECENT_SQL "key_row_id = $1 AND created_ms >= $2 ORDER BY created_ms", 2},
    [P_USAGE_RECENT_ORG] = {RECENT_SQL "org_id = $1 AND created_ms >= $2 ORDER BY created_ms", 2},
    [P_USAGE_LIST] = {"SELECT " USAGE_COLS " FROM usage WHERE ($1::bigint = 0 OR org_id = $1) "
                      "AND ($2::bigint = 0 OR key_row_id = $2) AND ($3 = '' OR model = $3) AND "
                      "created_ms >= $4 AND ($5::bigint = 0 OR created_ms < $5) AND "
                      "($6::text = '' OR provider = $6) ORDER BY created_ms, request_id",
                      6},
    [P_USAGE_RECOVER] = {"UPDATE usage SET state = 'uncertain', cost_micros = reserved_micros, "
                         "settled_ms = $1 WHERE state = 'reserved' AND ($2 = '' OR node = $2)",
                         2},
    /* creates or extends the conversation and answers its row; the row stays locked to the
     * end of the transaction, so a concurrent append (another connection, another node) waits
     * and then counts on from this one's turns: the seqs never collide */
#define CONV_UPSERT_SQL                                                                            \
    "INSERT INTO conversations(ref, org_id, owner, conv_id, title, turns, created_ms, "            \
    "updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (org_id, owner, conv_id) DO " \
    "UPDATE SET turns = conversations.turns + EXCLUDED.turns, updated_ms = "                      \
    "GREATEST(conversations.updated_ms, EXCLUDED.updated_ms) RETURNING " CONV_COLS
    [P_CONV_UPSERT] = {CONV_UPSERT_SQL, 7},
    [P_TURN_INSERT] = {"INSERT INTO conversation_turns(conv, " TURN_COLS ") VALUES ($1, $2, $3, "
                       "$4, $5, $6, $7, $8)",
                       8},
/* The upsert and the turns after it as one statement (its own transaction when no other is
 * open: no BEGIN and COMMIT round trips; the row is locked from the upsert to the end as
 * above). Turn i's role, message, request id, model, tokens and time are $(8 + 6i) on. */
#define CONV_APPEND_SQL(rows)                                                                      \
    "WITH c AS (" CONV_UPSERT_SQL "), t AS (INSERT INTO conversation_turns(conv, " TURN_COLS      \
    ") SELECT c.id, c.turns - $6 + v.i, v.role, v.message, v.request_id, v.model, v.tokens, "     \
    "v.created_ms FROM c, (VALUES " rows ") AS v(i, role, message, request_id, model, tokens, "    \
    "created_ms)) SELECT " CONV_COLS " FROM c"
#define TURN_ROW(i, a, b, c, d, e, f)                                                              \
    "(" #i ", $" #a "::text, $" #b "::text, $" #c "::text, $" #d "::text, $" #e "::bigint, $" #f    \
    "::bigint)"
#define TURN_ROWS1 TURN_ROW(1, 8, 9, 10, 11, 12, 13)
#define TURN_ROWS2 TURN_ROWS1 ", " TURN_ROW(2, 14, 15, 16, 17, 18, 19)
#define TURN_ROWS3 TURN_ROWS2 ", " TURN_ROW(3, 20, 21, 22, 23, 24, 25)
#define TURN_ROWS4 TURN_ROWS3 ", " TURN_ROW(4, 26, 27, 28, 29, 30, 31)
    [P_CONV_APPEND1] = {CONV_APPEND_SQL(TURN_ROWS1), 13},
    [P_CONV_APPEND2] = {CONV_APPEND_SQL(TURN_ROWS2), 19},
    [P_CONV_APPEND3] = {CONV_APPEND_SQL(TURN_ROWS3), 25},
    [P_CONV_APPEND4] = {CONV_APPEND_SQL(TURN_ROWS4), 31},
    /* many appends, one statement: each column an array. The conversations' upserts $1..$7 (as
     * P_CONV_UPSERT, in row order by (org, owner, conv_id), as a single append locks one),
     * every turn's $8 conversation (its 1-based place in $1), $9 place among its
     * conversation's, then role, message, request id, model, tokens, time. Answers how many
     * conversations and turns it wrote. */
    [P_CONV_BATCH] = {"WITH v AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], "
                      "$4::text[], $5::text[], $6::bigint[], $7::bigint[]) WITH ORDINALITY AS "
                      "v(ref, org_id, owner, conv_id, title, n, now_ms, k)), "
                      "c AS (INSERT INTO conversations(ref, org_id, owner, conv_id, title, turns, "
                      "created_ms, updated_ms) SELECT ref, org_id, owner, conv_id, title, n, now_ms, "
                      "now_ms FROM v ORDER BY org_id, owner, conv_id ON CONFLICT (org_id, owner, "
                      "conv_id) DO UPDATE SET turns = conversations.turns + EXCLUDED.turns, "
                      "updated_ms = GREATEST(conversations.updated_ms, EXCLUDED.updated_ms) "
                      "RETURNING id, org_id, owner, conv_id, turns), "
                      "t AS (INSERT INTO conversation_turns(conv, " TURN_COLS ") SELECT c.id, "
                      "c.turns - v.n + x.i, x.role, x.message, x.request_id, x.model, x.tokens, "
                      "x.created_ms FROM unnest($8::bigint[], $9::bigint[], $10::text[], "
                      "$11::text[], $12::text[], $13::text[], $14::bigint[], $15::bigint[]) AS "
                      "x(k, i, role, message, request_id, model, tokens, created_ms) JOIN v ON "
                      "v.k = x.k JOIN c ON c.org_id = v.org_id AND c.owner = v.owner AND "
                      "c.conv_id = v.conv_id RETURNING 1) "
                      "SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM t)",
                      15},
    [P_CONV_GET] = {"SELECT " CONV_COLS " FROM conversations WHERE org_id = $1 AND owner = $2 "
                    "AND conv_id = $3",
                    3},
    [P_CONV_GET_SHARED] = {"SELECT " CONV_COLS " FROM conversations WHERE ref = $2 AND "
                           "org_id = $1 AND shared = 1",
                           2},
    /* LIMIT NULL: no limit */
    [P_CONV_TURNS] = {"SELECT " TURN_COLS " FROM conversation_turns WHERE conv = $1 AND seq > $2 "
                      "ORDER BY seq LIMIT NULLIF($3::bigint, 0)",
                      3},
/* newest first from the cursor (b: its two parameters); q: an ILIKE pattern ("" none) */
#define CONV_LIST_SQL(where, b, q, lim)                                                            \
    "SELECT " CONV_LIST_COLS " FROM conversations WHERE org_id = $1 " where " AND (updated_ms, "  \
    "id) < (" b ") AND (" q " = '' OR title ILIKE " q " ESCAPE '\\' OR EXISTS (SELECT 1 FROM "    \
    "conversation_turns t WHERE t.conv = conversations.id AND t.message ILIKE " q " ESCAPE "       \
    "'\\')) ORDER BY updated_ms DESC, id DESC LIMIT " lim
    [P_CONV_LIST_OWNER] = {CONV_LIST_SQL("AND owner = $2 AND ($3::int = 0 OR shared = 1)",
                                         "$4::bigint, $5::bigint", "$6::text", "$7"),
                           7},
    [P_CONV_LIST_SHARED] = {CONV_LIST_SQL("AND shared = 1", "$2::bigint, $3::bigint", "$4::text",
                                          "$5"),
                            5},
    [P_CONV_LIST_ORG] = {CONV_LIST_SQL("", "$2::bigint, $3::bigint", "$4::text", "$5"), 5},
    [P_CONV_SET_SHARED] = {"UPDATE conversations SET shared = $4 WHERE org_id = $1 AND "
                           "owner = $2 AND conv_id = $3",
                           4},
    [P_CONV_SET_SUMMARY] = {"UPDATE conversations SET summary = $2, summary_upto = $3 WHERE "
                            "id = $1 AND summary_upto < $3",
                            3},
    /* a deletion takes the row first (an append waits for it, then makes a new one), then
     * what hangs on its id */
    [P_CONV_DELETE] = {"DELETE FROM conversations WHERE org_id = $1 AND owner = $2 AND "
                       "conv_id = $3 RETURNING id",
                       3},
    /* one conversation untouched past its org's retention: the orgs with one first, then each
     * one's range of old conversations (LATERAL: never a scan of every conversation, even when
     * none is due); concurrent purgers (nodes) take different ones */
    [P_CONV_PURGE_ONE] = {"DELETE FROM conversations WHERE id = (SELECT x.id FROM orgs o CROSS "
                          "JOIN LATERAL (SELECT c.id FROM conversations c WHERE c.org_id = o.id "
                          "AND c.updated_ms < $1::bigint - o.retention_days * 86400000 LIMIT 1 "
                          "FOR UPDATE SKIP LOCKED) x WHERE o.retention_days > 0 LIMIT 1) "
                          "RETURNING id",
                          1},
    [P_CONV_DEL_IDEM] = {"DELETE FROM idempotency WHERE request_id IN (SELECT request_id FROM "
                         "conversation_turns WHERE conv = $1 AND request_id <> '')",
                         1},
    [P_CONV_DEL_TURNS] = {"DELETE FROM conversation_turns WHERE conv = $1", 1},
    [P_CONV_EXPORT] = {"SELECT " CONV_COLS " FROM conversations WHERE org_id = $1 AND "
                       "($2::int = 0 OR shared = 1) AND updated_ms >= $3 AND updated_ms < $4 AND "
                       "id > $5 ORDER BY id LIMIT $6",
                       6},
    [P_AUDIT_INSERT] = {"INSERT INTO audit_log(created_ms, org_id, actor, actor_role, action, "
                        "target, request_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                        "RETURNING id",
                        8},
    [P_AUDIT_LIST] = {"SELECT " AUDIT_COLS " FROM audit_log WHERE org_id = $1 AND id > $2 ORDER "
                      "BY id LIMIT $3",
                      3},
    [P_AUDIT_LIST_ALL] = {"SELECT " AUDIT_COLS " FROM audit_log WHERE id > $1 ORDER BY id LIMIT "
                          "$2",
                          2},
    /* the old secret's hash is kept only while it is to work ($3 > 0); key_hash on the right
     * is the row's value before the update */
    [P_KEY_ROTATE] = {"UPDATE api_keys SET prev_key_hash = CASE WHEN $3::bigint > 0 THEN key_hash "
                      "ELSE '' END, prev_expires_ms = $3, key_hash = $2, prefix = $4, "
                      "rotated_ms = $5 WHERE key_id = $1 AND revoked = 0",
                      5},
    /* LIMIT NULL: no limit */
    [P_ORG_LIST] = {"SELECT " ORG_COLS " FROM orgs WHERE id > $1 ORDER BY id LIMIT "
                    "NULLIF($2::bigint, 0)",
                    2},
    [P_ORG_GET_ID] = {"SELECT " ORG_COLS " FROM orgs WHERE id = $1", 1},
    /* each count through a partial index (uncertain rows) or a range of idempotency_expires */
    [P_HEALTH] = {"SELECT (SELECT count(*) FROM idempotency WHERE state = 'uncertain'), "
                  "(SELECT count(*) FROM usage WHERE state = 'uncertain'), "
                  "(SELECT count(*) FROM idempotency WHERE expires_ms < $1)",
                  1},
    GROUPS(GW_GROUP_DAY, GROUP_DAY_SQL),
    GROUPS(GW_GROUP_KEY, GROUP_KEY_SQL),
    GROUPS(GW_GROUP_MODEL, GROUP_MODEL_SQL),
    GROUPS(GW_GROUP_PROVIDER, GROUP_PROVIDER_SQL),
    [P_USAGE_PAGE + UI_ANY] = {PAGE_SQL(UW_ANY), 9},
    [P_USAGE_PAGE + UI_ORG] = {PAGE_SQL(UW_ORG), 9},
    [P_USAGE_PAGE + UI_KEY] = {PAGE_SQL(UW_KEY), 9},
};

struct pg {
    struct gw_store base; /* first: a struct gw_store * is a struct pg * */
    PGconn *conn;
    unsigned char prepared[P_COUNT];
    int in_tx; /* inside BEGIN..COMMIT: a lost connection fails, never reconnects */
    int flush_due; /* this transaction locked a scope: it commits unflushed, then flushes */
    int shard; /* of the counters, 1..COUNTER_SHARDS: what this connection adds unlocked */
};

/* Parameters as text (libpq's text format). */
struct params {
    const char *v[MAX_PARAMS];
    char num[MAX_PARAMS][24];
    int n;
};

static void p_text(struct params *p, const char *s) { p->v[p->n++] = s; }

static void p_i64(struct params *p, int64_t x)
{
    snprintf(p->num[p->n], sizeof(p->num[0]), "%lld", (long long)x);
    p->v[p->n] = p->num[p->n];
    p->n++;
}

static int is_unique_violation(const PGresult *r)
{
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return st != NULL && strcmp(st, "23505") == 0;
}

/* A deadlock or serialization failure: the server rolled the statement back whole, and a
 * statement of its own (no transaction open) may run again (a one-statement capture waits on
 * rows and index entries that concurrent appends hold). */
static int is_transient(const PGresult *r)
{
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return st != NULL && (strcmp(st, "40P01") == 0 || strcmp(st, "40001") == 0);
}

/* Run prepared statement id with n parameters (text); *res (may be NULL) gets the result to
 * PQclear. Returns 0, GW_EEXIST (unique violation) or GW_ESTORE. */
static void stmt_name(enum stmt_id id, char name[16]) { snprintf(name, 16, "s%d", (int)id); }

/* Statement id prepared on this connection (once): 0, else an error. */
static int prepare(struct pg *s, enum stmt_id id)
{
    char name[16];
    if (s->prepared[id])
        return 0;
    stmt_name(id, name);
    PGresult *r = PQprepare(s->conn, name, stmts[id].sql, stmts[id].nparams, NULL);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok)
        return GW_ESTORE;
    s->prepared[id] = 1;
    return 0;
}

static int run_values(struct pg *s, enum stmt_id id, int n, const char *const *values,
                      PGresult **res)
{
    char name[16];
    PGresult *r = NULL;

    if (res != NULL)
        *res = NULL;
    stmt_name(id, name);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (PQstatus(s->conn) != CONNECTION_OK && s->in_tx)
            return GW_ESTORE; /* the transaction is gone with the connection */
        if (PQstatus(s->conn) != CONNECTION_OK) {
            PQreset(s->conn); /* the server restarted or the network broke: reconnect once */
            memset(s->prepared, 0, sizeof(s->prepared));
            if (PQstatus(s->conn) != CONNECTION_OK)
                return GW_ESTORE;
        }
        if (prepare(s, id) != 0) {
            if (PQstatus(s->conn) != CONNECTION_OK)
                continue;
            return GW_ESTORE;
        }
        r = PQexecPrepared(s->conn, name, n, values, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            if (res != NULL)
                *res = r;
            else
                PQclear(r);
            return 0;
        }
        int rc = is_unique_violation(r) ? GW_EEXIST : GW_ESTORE;
        int again = attempt == 0 && !s->in_tx &&
                    (PQstatus(s->conn) != CONNECTION_OK || is_transient(r));
        PQclear(r);
        if (rc == GW_ESTORE && again)
            continue; /* lost on the way, or rolled back whole: the statement did not run */
        return rc;
    }
    return GW_ESTORE;
}

static int run(struct pg *s, enum stmt_id id, const struct params *p, PGresult **res)
{
    return run_values(s, id, p != NULL ? p->n : 0, p != NULL ? p->v : NULL, res);
}


static int64_t col_i64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* An INSERT … RETURNING id: *id (may be NULL) gets the new row's id. */
static int run_insert(struct pg *s, enum stmt_id id, const struct params *p, int64_t *row_id)
{
    PGresult *r;
    int rc = run(s, id, p, &r);
    if (rc == 0 && row_id != NULL)
        *row_id = col_i64(r, 0, 0);
    PQclear(r);
    return rc;
}

static void col_text(const PGresult *r, int row, int col, char *dst, size_t dstsz)
{
    gw_strlcpy(dst, PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col), dstsz);
}

static void read_limits(const PGresult *r, int row, int first, struct gw_limit_set *l)
{
    l->rph = col_i64(r, row, first);
    l->tph = col_i64(r, row, first + 1);
    l->max_concurrent = col_i64(r, row, first + 2);
    l->daily_usd_micros = col_i64(r, row, first + 3);
    l->monthly_usd_micros = col_i64(r, row, first + 4);
    l->max_request_usd_micros = col_i64(r, row, first + 5);
}

static void p_limits(struct params *p, const struct gw_limit_set *l)
{
    p_i64(p, l->rph);
    p_i64(p, l->tph);
    p_i64(p, l->max_concurrent);
    p_i64(p, l->daily_usd_micros);
    p_i64(p, l->monthly_usd_micros);
    p_i64(p, l->max_request_usd_micros);
}

/* ---- connection and schema ---- */

static const struct gw_store_ops postgres_ops;

static void pg_free(struct gw_store *base)
{
    struct pg *s = (struct pg *)base;
    if (s == NULL)
        return;
    PQfinish(s->conn);
    gw_free(s);
}

int gw_postgres_open(const char *url, struct gw_store **out, struct gw_errbuf *eb)
{
    struct pg *s = gw_calloc(1, sizeof(*s));
    *out = NULL;
    if (s == NULL)
        return GW_ENOMEM;
    s->base.ops = &postgres_ops;
    static _Atomic unsigned next_shard;
    static _Atomic int shards_seeded;
    if (atomic_exchange(&shards_seeded, 1) == 0) { /* processes start at different shards */
        unsigned r;
        if (gw_random(&r, sizeof(r)) != 0)
            r = (unsigned)getpid();
        atomic_fetch_add(&next_shard, r);
    }
    s->shard = 1 + (int)(atomic_fetch_add(&next_shard, 1) % COUNTER_SHARDS);
    s->conn = PQconnectdb(url);
    if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK) {
        char msg[200];
        /* libpq's message never holds the password */
        gw_log_escape(msg, sizeof(msg), s->conn ? PQerrorMessage(s->conn) : "out of memory",
                      strlen(s->conn ? PQerrorMessage(s->conn) : "out of memory"));
        gw_errbuf_set(eb, "cannot connect to PostgreSQL: %s", msg);
        pg_free(&s->base);
        return GW_ESTORE;
    }
    PGresult *r = PQexec(s->conn, "SET client_min_messages = warning; SET plan_cache_mode = force_generic_plan");
    PQclear(r);
    *out = &s->base;
    return 0;
}

static int exec_simple(struct pg *s, const char *sql)
{
    PGresult *r = PQexec(s->conn, sql);
    ExecStatusType st = PQresultStatus(r);
    PQclear(r);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : GW_ESTORE;
}

/* The connection's last error, escaped for a log line (never sent to a client). */
static const char *conn_error(const struct pg *s, char *msg, size_t size)
{
    const char *m = PQerrorMessage(s->conn);
    gw_log_escape(msg, size, m, strlen(m));
    return msg;
}

static int read_version(struct pg *s, int *out)
{
    PGresult *r = PQexec(s->conn, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    *out = ok ? (int)col_i64(r, 0, 0) : 0;
    PQclear(r);
    return ok ? 0 : GW_ESTORE;
}

/* schema.c's SQL with PostgreSQL's auto-numbered ids. */
static char *pg_dialect(const char *sql)
{
    static const char from[] = "INTEGER PRIMARY KEY", to[] = "BIGSERIAL PRIMARY KEY";
    size_t n = strlen(sql), count = 0;
    for (const char *p = strstr(sql, from); p != NULL; p = strstr(p + 1, from))
        count++;
    char *out = gw_malloc(n + count * (sizeof(to) - sizeof(from)) + 1);
    if (out == NULL)
        return NULL;
    char *w = out;
    for (const char *p = sql; *p != '\0';) {
        if (strncmp(p, from, sizeof(from) - 1) == 0) {
            memcpy(w, to, sizeof(to) - 1);
            w += sizeof(to) - 1;
            p += sizeof(from) - 1;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
    return out;
}

static int pg_migrate(struct gw_store *base, struct gw_errbuf *eb)
{
    struct pg *s = (struct pg *)base;
    char sql[160];
    int version = 0;

    snprintf(sql, sizeof(sql), "BEGIN; SELECT pg_advisory_xact_lock(%d)", MIGRATE_LOCK);
    if (exec_simple(s, sql) != 0 ||
        exec_simple(s, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                       "applied_ms BIGINT NOT NULL)") != 0 ||
        read_version(s, &version) != 0)
        goto fail;
    if (version > gw_schema_count) {
        gw_errbuf_set(eb, "the database schema (version %d) is newer than this gateway (%d)",
                      version, gw_schema_count);
        (void)exec_simple(s, "ROLLBACK");
        return GW_ESTORE;
    }
    for (int v = version + 1; v <= gw_schema_count; v++) {
        const char *src = gw_schema_migrations[v - 1];
        if (strncmp(src, GW_SCHEMA_SQLITE_ONLY, strlen(GW_SCHEMA_SQLITE_ONLY)) == 0)
            src = ""; /* not for this backend: only its number */
        char *m = pg_dialect(src);
        int rc = m == NULL ? GW_ENOMEM : m[0] != '\0' ? exec_simple(s, m) : 0;
        gw_free(m);
        snprintf(sql, sizeof(sql), "INSERT INTO schema_version VALUES (%d, %lld)", v,
                 (long long)gw_now_ms());
        if (rc != 0 || exec_simple(s, sql) != 0)
            goto fail;
    }
    if (exec_simple(s, "COMMIT") != 0)
        goto fail;
    return 0;
fail:;
    char msg[200];
    conn_error(s, msg, sizeof(msg));
    gw_errbuf_set(eb, "migration failed: %s", msg);
    (void)exec_simple(s, "ROLLBACK");
    return GW_ESTORE;
}

static int pg_schema_version(struct gw_store *base, int *out)
{
    return read_version((struct pg *)base, out);
}

/* ---- orgs and keys ---- */

static int pg_org_create(struct gw_store *base, const char *slug, const char *name,
                         int64_t *id_out)
{
    struct params p = {0};
    p_text(&p, slug);
    p_text(&p, name);
    p_i64(&p, gw_now_ms());
    return run_insert((struct pg *)base, P_ORG_INSERT, &p, id_out);
}

/* Row i of an org statement (ORG_COLS). */
static void read_org(const PGresult *r, int i, struct gw_org *out)
{
    memset(out, 0, sizeof(*out));
    out->id = col_i64(r, i, 0);
    col_text(r, i, 1, out->slug, sizeof(out->slug));
    col_text(r, i, 2, out->name, sizeof(out->name));
    out->created_ms = col_i64(r, i, 3);
    col_text(r, i, 4, out->providers, sizeof(out->providers));
    col_text(r, i, 5, out->models, sizeof(out->models));
    read_limits(r, i, 6, &out->limits);
    out->conv.capture = col_i64(r, i, ORG_COL_CONV) != 0;
    out->conv.retention_days = col_i64(r, i, ORG_COL_CONV + 1);
    out->conv.export_all = col_i64(r, i, ORG_COL_CONV + 2) != 0;
}

/* The one org statement id gives with p. */
static int org_one(struct pg *s, enum stmt_id id, const struct params *p, struct gw_org *out)
{
    PGresult *r;
    int rc = run(s, id, p, &r);
    if (rc == 0 && PQntuples(r) == 0)
        rc = GW_ENOTFOUND;
    if (rc == 0)
        read_org(r, 0, out);
    PQclear(r);
    return rc;
}

static int pg_org_get(struct gw_store *base, const char *slug, struct gw_org *out)
{
    struct params p = {0};
    p_text(&p, slug);
    return org_one((struct pg *)base, P_ORG_GET, &p, out);
}

static int pg_org_get_id(struct gw_store *base, int64_t id, struct gw_org *out)
{
    struct params p = {0};
    p_i64(&p, id);
    return org_one((struct pg *)base, P_ORG_GET_ID, &p, out);
}

static int pg_org_list(struct gw_store *base, int64_t after_id, int limit, gw_store_org_cb cb,
                       void *arg)
{
    struct params p = {0};
    struct gw_org o;
    PGresult *r;
    p_i64(&p, after_id);
    p_i64(&p, limit);
    int rc = run((struct pg *)base, P_ORG_LIST, &p, &r);
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        read_org(r, i, &o);
        if (cb(arg, &o) != 0)
            break;
    }
    PQclear(r);
    return rc;
}

/* An UPDATE that must have changed one row. */
static int run_update(struct pg *s, enum stmt_id id, const struct params *p)
{
    PGresult *r;
    int rc = run(s, id, p, &r);
    if (rc == 0 && strcmp(PQcmdTuples(r), "0") == 0)
        rc = GW_ENOTFOUND;
    PQclear(r);
    return rc;
}

static int pg_org_set_policy(struct gw_store *base, const struct gw_org *o)
{
    struct params p = {0};
    p_text(&p, o->slug);
    p_text(&p, o->providers);
    p_text(&p, o->models);
    p_limits(&p, &o->limits);
    p_i64(&p, o->conv.capture != 0);
    p_i64(&p, o->conv.retention_days);
    p_i64(&p, o->conv.export_all != 0);
    return run_update((struct pg *)base, P_ORG_SET, &p);
}

static int pg_key_insert(struct gw_store *base, struct gw_key_rec *rec,
                         const unsigned char hash[32])
{
    struct params p = {0};
    char hex[65];
    gw_hex(hex, hash, 32);
    rec->created_ms = gw_now_ms();
    p_text(&p, rec->key_id);
    p_text(&p, hex);
    p_text(&p, rec->prefix);
    p_i64(&p, rec->org_id);
    p_text(&p, rec->name);
    p_text(&p, rec->role);
    p_text(&p, rec->tier);
    p_text(&p, rec->providers);
    p_text(&p, rec->models);
    p_i64(&p, rec->limits.rph);
    p_i64(&p, rec->limits.daily_usd_micros);
    p_i64(&p, rec->limits.monthly_usd_micros);
    p_i64(&p, rec->created_ms);
    p_i64(&p, rec->limits.tph);
    p_i64(&p, rec->limits.max_concurrent);
    p_i64(&p, rec->limits.max_request_usd_micros);
    return run_insert((struct pg *)base, P_KEY_INSERT, &p, &rec->id);
}

static void read_key(const PGresult *r, int row, struct gw_key_rec *k)
{
    memset(k, 0, sizeof(*k));
    k->id = col_i64(r, row, 0);
    col_text(r, row, 1, k->key_id, sizeof(k->key_id));
    k->org_id = col_i64(r, row, 2);
    col_text(r, row, 3, k->org_slug, sizeof(k->org_slug));
    col_text(r, row, 4, k->name, sizeof(k->name));
    col_text(r, row, 5, k->prefix, sizeof(k->prefix));
    col_text(r, row, 6, k->role, sizeof(k->role));
    col_text(r, row, 7, k->tier, sizeof(k->tier));
    col_text(r, row, 8, k->providers, sizeof(k->providers));
    col_text(r, row, 9, k->models, sizeof(k->models));
    k->revoked = col_i64(r, row, 10) != 0;
    k->created_ms = col_i64(r, row, 11);
    k->revoked_ms = col_i64(r, row, 12);
    read_limits(r, row, 13, &k->limits);
    col_text(r, row, 19, k->org_providers, sizeof(k->org_providers));
    col_text(r, row, 20, k->org_models, sizeof(k->org_models));
    read_limits(r, row, 21, &k->org_limits);
    k->org_conv.capture = col_i64(r, row, KEY_COL_ORG_CONV) != 0;
    k->org_conv.retention_days = col_i64(r, row, KEY_COL_ORG_CONV + 1);
    k->org_conv.export_all = col_i64(r, row, KEY_COL_ORG_CONV + 2) != 0;
    k->rotated_ms = col_i64(r, row, KEY_COL_ROTATED);
    k->prev_expires_ms = col_i64(r, row, KEY_COL_ROTATED + 1);
    if (PQnfields(r) > KEY_COL_VIA)
        k->via_prev = col_i64(r, row, KEY_COL_VIA) != 0;
}

/* The key statement id gives for arg (and, when now_ms > 0, the time $2). */
static int key_one(struct pg *s, enum stmt_id id, const char *arg, int64_t now_ms,
                   struct gw_key_rec *out)
{
    struct params p = {0};
    PGresult *r;
    p_text(&p, arg);
    if (now_ms > 0)
        p_i64(&p, now_ms);
    int rc = run(s, id, &p, &r);
    if (rc == 0 && PQntuples(r) == 0)
        rc = GW_ENOTFOUND;
    if (rc == 0)
        read_key(r, 0, out);
    PQclear(r);
    return rc;
}

static int pg_key_by_hash(struct gw_store *base, const unsigned char hash[32],
                          struct gw_key_rec *out)
{
    char hex[65];
    gw_hex(hex, hash, 32);
    /* a previous secret past its time is not found (the caller checks it all the same) */
    return key_one((struct pg *)base, P_KEY_BY_HASH, hex, gw_now_ms(), out);
}

static int pg_key_get(struct gw_store *base, const char *key_id, struct gw_key_rec *out)
{
    return key_one((struct pg *)base, P_KEY_GET, key_id, 0, out);
}

static int pg_key_list(struct gw_store *base, int64_t org_id, gw_store_key_cb cb, void *arg)
{
    struct params p = {0};
    struct gw_key_rec k;
    PGresult *r;
    p_i64(&p, org_id);
    int rc = run((struct pg *)base, P_KEY_LIST, &p, &r);
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        read_key(r, i, &k);
        if (cb(arg, &k) != 0)
            break;
    }
    PQclear(r);
    return rc;
}

static int pg_key_set_policy(struct gw_store *base, const struct gw_key_rec *rec)
{
    struct params p = {0};
    p_text(&p, rec->key_id);
    p_text(&p, rec->tier);
    p_text(&p, rec->providers);
    p_text(&p, rec->models);
    p_limits(&p, &rec->limits);
    return run_update((struct pg *)base, P_KEY_SET, &p);
}

/* The new hash replaces the key's; the old one becomes the previous secret (only one is kept).
 * Nothing caches keys here: the next lookup on any node reads the new row. */
static int pg_key_rotate(struct gw_store *base, const char *key_id,
                         const unsigned char new_hash[32], const char *new_prefix,
                         int64_t prev_expires_ms)
{
    struct params p = {0};
    char hex[65];
    gw_hex(hex, new_hash, 32);
    p_text(&p, key_id);
    p_text(&p, hex);
    p_i64(&p, prev_expires_ms);
    p_text(&p, new_prefix);
    p_i64(&p, gw_now_ms());
    return run_update((struct pg *)base, P_KEY_ROTATE, &p);
}

static int pg_key_revoke(struct gw_store *base, const char *key_id)
{
    struct params p = {0};
    p_text(&p, key_id);
    p_i64(&p, gw_now_ms());
    return run_update((struct pg *)base, P_KEY_REVOKE, &p);
}

static int pg_app_client_insert(struct gw_store *base, struct gw_app_client *rec)
{
    struct params p = {0};
    rec->created_ms = gw_now_ms();
    p_text(&p, rec->client_id);
    p_i64(&p, rec->org_id);
    p_text(&p, rec->name);
    p_text(&p, rec->origins);
    p_text(&p, rec->providers);
    p_text(&p, rec->models);
    p_i64(&p, rec->session_ttl_s);
    p_i64(&p, rec->created_ms);
    return run_insert((struct pg *)base, P_APP_CLIENT_INSERT, &p, &rec->id);
}

static void read_app_client(const PGresult *r, int row, struct gw_app_client *a)
{
    memset(a, 0, sizeof(*a));
    a->id = col_i64(r, row, 0);
    col_text(r, row, 1, a->client_id, sizeof(a->client_id));
    a->org_id = col_i64(r, row, 2);
    col_text(r, row, 3, a->org_slug, sizeof(a->org_slug));
    col_text(r, row, 4, a->name, sizeof(a->name));
    col_text(r, row, 5, a->origins, sizeof(a->origins));
    col_text(r, row, 6, a->providers, sizeof(a->providers));
    col_text(r, row, 7, a->models, sizeof(a->models));
    a->session_ttl_s = col_i64(r, row, 8);
    a->approved = col_i64(r, row, 9) != 0;
    a->approved_ms = col_i64(r, row, 10);
    a->revoked = col_i64(r, row, 11) != 0;
    a->revoked_ms = col_i64(r, row, 12);
    a->created_ms = col_i64(r, row, 13);
}

static int pg_app_client_get(struct gw_store *base, const char *client_id,
                             struct gw_app_client *out)
{
    struct params p = {0};
    PGresult *r;
    p_text(&p, client_id);
    int rc = run((struct pg *)base, P_APP_CLIENT_GET, &p, &r);
    if (rc == 0 && PQntuples(r) == 0)
        rc = GW_ENOTFOUND;
    if (rc == 0)
        read_app_client(r, 0, out);
    PQclear(r);
    return rc;
}

static int pg_app_client_list(struct gw_store *base, int64_t org_id, int64_t after_id, int limit,
                              gw_store_app_client_cb cb, void *arg)
{
    struct params p = {0};
    struct gw_app_client a;
    PGresult *r;
    p_i64(&p, org_id);
    p_i64(&p, after_id);
    p_i64(&p, limit);
    int rc = run((struct pg *)base, P_APP_CLIENT_LIST, &p, &r);
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        read_app_client(r, i, &a);
        if (cb(arg, &a) != 0)
            break;
    }
    PQclear(r);
    return rc;
}

static int pg_app_client_approve(struct gw_store *base, const char *client_id, int64_t now_ms)
{
    struct params p = {0};
    struct gw_app_client a;
    p_text(&p, client_id);
    p_i64(&p, now_ms);
    int rc = run_update((struct pg *)base, P_APP_CLIENT_APPROVE, &p);
    if (rc != GW_ENOTFOUND)
        return rc;
    /* no row changed: unknown, or revoked */
    rc = pg_app_client_get(base, client_id, &a);
    return rc == 0 ? GW_EINVAL : rc;
}

static int pg_app_client_revoke(struct gw_store *base, const char *client_id, int64_t now_ms)
{
    struct params p = {0};
    p_text(&p, client_id);
    p_i64(&p, now_ms);
    return run_update((struct pg *)base, P_APP_CLIENT_REVOKE, &p);
}

static int pg_app_client_update(struct gw_store *base, const struct gw_app_client *rec)
{
    struct params p = {0};
    p_text(&p, rec->client_id);
    p_text(&p, rec->name);
    p_text(&p, rec->origins);
    p_text(&p, rec->providers);
    p_text(&p, rec->models);
    p_i64(&p, rec->session_ttl_s);
    return run_update((struct pg *)base, P_APP_CLIENT_UPDATE, &p);
}

static int pg_share_code_insert(struct gw_store *base, const struct gw_share_code *c)
{
    struct params p = {0};
    p_text(&p, c->code_hash);
    p_text(&p, c->client_id);
    p_i64(&p, c->org_id);
    p_text(&p, c->subject);
    p_text(&p, c->challenge);
    p_i64(&p, c->created_ms);
    p_i64(&p, c->expires_ms);
    return run((struct pg *)base, P_SHARE_CODE_INSERT, &p, NULL);
}

static int pg_share_code_consume(struct gw_store *base, const char *code_hash,
                                 struct gw_share_code *out)
{
    struct params p = {0};
    PGresult *r;
    p_text(&p, code_hash);
    int rc = run((struct pg *)base, P_SHARE_CODE_CONSUME, &p, &r);
    if (rc == 0 && PQntuples(r) == 0)
        rc = GW_ENOTFOUND;
    if (rc == 0) {
        memset(out, 0, sizeof(*out));
        gw_strlcpy(out->code_hash, code_hash, sizeof(out->code_hash));
        col_text(r, 0, 0, out->client_id, sizeof(out->client_id));
        out->org_id = col_i64(r, 0, 1);
        col_text(r, 0, 2, out->subject, sizeof(out->subject));
        col_text(r, 0, 3, out->challenge, sizeof(out->challenge));
        out->created_ms = col_i64(r, 0, 4);
        out->expires_ms = col_i64(r, 0, 5);
    }
    PQclear(r);
    return rc;
}

static int pg_session_insert(struct gw_store *base, const struct gw_subject_session *ss)
{
    struct params p = {0};
    p_text(&p, ss->token_hash);
    p_text(&p, ss->client_id);
    p_i64(&p, ss->org_id);
    p_text(&p, ss->subject);
    p_text(&p, ss->origin);
    p_text(&p, ss->hmac_key);
    p_i64(&p, ss->created_ms);
    p_i64(&p, ss->expires_ms);
    return run((struct pg *)base, P_SESSION_INSERT, &p, NULL);
}

static int pg_nonce_burn(struct gw_store *base, const char *token_hash, const char *nonce,
                         int64_t expires_ms)
{
    struct params p = {0};
    p_text(&p, token_hash);
    p_text(&p, nonce);
    p_i64(&p, expires_ms);
    return run((struct pg *)base, P_NONCE_BURN, &p, NULL);
}

static int pg_session_get(struct gw_store *base, const char *token_hash,
                          struct gw_subject_session *out)
{
    struct params p = {0};
    PGresult *r;
    p_text(&p, token_hash);
    int rc = run((struct pg *)base, P_SESSION_GET, &p, &r);
    if (rc == 0 && PQntuples(r) == 0)
        rc = GW_ENOTFOUND;
    if (rc == 0) {
        memset(out, 0, sizeof(*out));
        col_text(r, 0, 0, out->token_hash, sizeof(out->token_hash));
        col_text(r, 0, 1, out->client_id, sizeof(out->client_id));
        out->org_id = col_i64(r, 0, 2);
        col_text(r, 0, 3, out->subject, sizeof(out->subject));
        col_text(r, 0, 4, out->origin, sizeof(out->origin));
        col_text(r, 0, 5, out->hmac_key, sizeof(out->hmac_key));
        out->created_ms = col_i64(r, 0, 6);
        out->expires_ms = col_i64(r, 0, 7);
    }
    PQclear(r);
    return rc;
}

/* Does the statement id (with p, may be NULL) give a row? */
static int pg_exists(struct pg *s, enum stmt_id id, const struct params *p, int *out)
{
    PGresult *r;
    int rc = run(s, id, p, &r);
    *out = rc == 0 && PQntuples(r) > 0;
    PQclear(r);
    return rc;
}

static int pg_superadmin_exists(struct gw_store *base, int *out)
{
    return pg_exists((struct pg *)base, P_SUPERADMIN, NULL, out);
}

static int pg_app_origin_known(struct gw_store *base, const char *origin, int *out)
{
    struct params p = {0};
    p_text(&p, origin);
    return pg_exists((struct pg *)base, P_APP_ORIGIN, &p, out);
}

/* ---- usage ---- */

static void p_row(struct params *p, const struct gw_usage_row *r)
{
    p_text(p, r->request_id);
    p_i64(p, r->org_id);
    p_i64(p, r->key_row_id);
    p_text(p, r->provider);
    p_text(p, r->model);
    p_text(p, r->endpoint);
    p_i64(p, r->stream);
    p_text(p, r->state);
    p_i64(p, r->reserved_micros);
    p_i64(p, r->tokens_in);
    p_i64(p, r->tokens_out);
    p_i64(p, r->cached_tokens);
    p_i64(p, r->reasoning_tokens);
    p_i64(p, r->cost_micros);
    p_i64(p, r->latency_ms);
    p_i64(p, r->status);
    p_text(p, r->error_code);
    p_text(p, r->catalog_version);
    p_i64(p, r->created_ms);
    p_i64(p, r->settled_ms);
    p_text(p, r->parent_request_id);
    p_text(p, r->kind[0] ? r->kind : "chat");
    p_i64(p, r->attempts > 0 ? r->attempts : 1);
    p_text(p, r->route_method);
    p_text(p, r->node);
    p_i64(p, r->reserved_tokens);
    p_text(p, r->subject);
}

static int pg_usage_reserve(struct gw_store *base, const struct gw_usage_row *row)
{
    struct params p = {0};
    p_row(&p, row);
    return run((struct pg *)base, P_USAGE_INSERT, &p, NULL);
}

static void p_settle(struct params *p, const struct gw_usage_row *r)
{
    p_text(p, r->request_id);
    p_text(p, r->state);
    p_i64(p, r->tokens_in);
    p_i64(p, r->tokens_out);
    p_i64(p, r->cached_tokens);
    p_i64(p, r->reasoning_tokens);
    p_i64(p, r->cost_micros);
    p_i64(p, r->latency_ms);
    p_i64(p, r->status);
    p_text(p, r->error_code);
    p_i64(p, r->settled_ms);
    p_text(p, r->provider);
    p_text(p, r->model);
    p_i64(p, r->reserved_micros);
    p_i64(p, r->attempts > 0 ? r->attempts : 1);
    p_text(p, r->route_method);
    p_i64(p, r->reserved_tokens);
}

static int pg_usage_settle(struct gw_store *base, const struct gw_usage_row *r)
{
    struct params p = {0};
    p_settle(&p, r);
    return run_update((struct pg *)base, P_USAGE_SETTLE, &p);
}

static void read_usage(const PGresult *r, int i, struct gw_usage_row *out)
{
    memset(out, 0, sizeof(*out));
    col_text(r, i, 0, out->request_id, sizeof(out->request_id));
    out->org_id = col_i64(r, i, 1);
    out->key_row_id = col_i64(r, i, 2);
    col_text(r, i, 3, out->provider, sizeof(out->provider));
    col_text(r, i, 4, out->model, sizeof(out->model));
    col_text(r, i, 5, out->endpoint, sizeof(out->endpoint));
    out->stream = (int)col_i64(r, i, 6);
    col_text(r, i, 7, out->state, sizeof(out->state));
    out->reserved_micros = col_i64(r, i, 8);
    out->tokens_in = col_i64(r, i, 9);
    out->tokens_out = col_i64(r, i, 10);
    out->cached_tokens = col_i64(r, i, 11);
    out->reasoning_tokens = col_i64(r, i, 12);
    out->cost_micros = col_i64(r, i, 13);
    out->latency_ms = col_i64(r, i, 14);
    out->status = (int)col_i64(r, i, 15);
    col_text(r, i, 16, out->error_code, sizeof(out->error_code));
    col_text(r, i, 17, out->catalog_version, sizeof(out->catalog_version));
    out->created_ms = col_i64(r, i, 18);
    out->settled_ms = col_i64(r, i, 19);
    col_text(r, i, 20, out->parent_request_id, sizeof(out->parent_request_id));
    col_text(r, i, 21, out->kind, sizeof(out->kind));
    out->attempts = (int)col_i64(r, i, 22);
    col_text(r, i, 23, out->route_method, sizeof(out->route_method));
    col_text(r, i, 24, out->node, sizeof(out->node));
    out->reserved_tokens = col_i64(r, i, 25);
    col_text(r, i, 26, out->subject, sizeof(out->subject));
}

static int pg_usage_get(struct gw_store *base, const char *request_id, struct gw_usage_row *out)
{
    struct params p = {0};
    PGresult *r;
    p_text(&p, request_id);
    int rc = run((struct pg *)base, P_USAGE_GET, &p, &r);
    if (rc == 0 && PQntuples(r) == 0)
        rc = GW_ENOTFOUND;
    if (rc == 0)
        read_usage(r, 0, out);
    PQclear(r);
    return rc;
}

static int pg_usage_spent(struct gw_store *base, enum gw_scope scope, int64_t id,
                          int64_t since_ms, int64_t *micros)
{
    struct params p = {0};
    PGresult *r;
    *micros = 0;
    p_i64(&p, id);
    p_i64(&p, since_ms);
    int rc = run((struct pg *)base, scope == GW_SCOPE_ORG ? P_USAGE_SPENT_ORG : P_USAGE_SPENT, &p,
                 &r);
    if (rc == 0 && PQntuples(r) == 1)
        *micros = col_i64(r, 0, 0);
    PQclear(r);
    return rc;
}

static int pg_usage_recent(struct gw_store *base, enum gw_scope scope, int64_t id,
                           int64_t since_ms, gw_store_recent_cb cb, void *arg)
{
    struct params p = {0};
    PGresult *r;
    p_i64(&p, id);
    p_i64(&p, since_ms);
    int rc = run((struct pg *)base, scope == GW_SCOPE_ORG ? P_USAGE_RECENT_ORG : P_USAGE_RECENT,
                 &p, &r);
    for (int i = 0; rc == 0 && i < PQntuples(r); i++)
        if (cb(arg, col_i64(r, i, 0), (int)col_i64(r, i, 1), col_i64(r, i, 2)) != 0)
            break;
    PQclear(r);
    return rc;
}

static int pg_usage_list(struct gw_store *base, const struct gw_usage_filter *f,
                         gw_store_usage_cb cb, void *arg, struct gw_usage_totals *totals)
{
    struct params p = {0};
    struct gw_usage_totals t = {0};
    struct gw_usage_row row;
    PGresult *r;
    p_i64(&p, f->org_id);
    p_i64(&p, f->key_row_id);
    p_text(&p, f->model);
    p_i64(&p, f->from_ms);
    p_i64(&p, f->to_ms);
    p_text(&p, f->provider);
    int rc = run((struct pg *)base, P_USAGE_LIST, &p, &r);
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        read_usage(r, i, &row);
        t.rows++;
        t.requests += strcmp(row.kind, "chat") == 0;
        t.tokens_in += row.tokens_in;
        t.tokens_out += row.tokens_out;
        t.cost_micros += strcmp(row.state, "reserved") == 0 ? row.reserved_micros
                                                            : row.cost_micros;
        if (cb != NULL && cb(arg, &row) != 0)
            break;
    }
    PQclear(r);
    if (totals != NULL)
        *totals = t;
    return rc;
}

/* $1..$6 of the admin plane's usage reads (UW_*) */
static void p_usage_filter(struct params *p, const struct gw_usage_filter *f)
{
    p_i64(p, f->org_id);
    p_i64(p, f->key_row_id);
    p_text(p, f->model);
    p_text(p, f->provider);
    p_i64(p, f->from_ms);
    p_i64(p, f->to_ms);
}

static int pg_usage_group(struct gw_store *base, const struct gw_usage_filter *f,
                          enum gw_usage_group by, int max_groups, gw_store_group_cb cb, void *arg,
                          struct gw_usage_totals *totals)
{
    struct params p = {0};
    struct gw_usage_totals t = {0};
    struct gw_usage_sum g;
    PGresult *r;
    p_usage_filter(&p, f);
    p_i64(&p, (int64_t)max_groups + 1); /* one more: too many shows */
    int rc = run((struct pg *)base, P_USAGE_GROUP + 3 * (int)by + (int)usage_index(f), &p, &r);
    if (rc == 0 && PQntuples(r) > max_groups)
        rc = GW_ETOOBIG; /* and nothing handed over */
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        t.rows += col_i64(r, i, 1);
        t.requests += col_i64(r, i, 2);
        t.tokens_in += col_i64(r, i, 3);
        t.tokens_out += col_i64(r, i, 4);
        t.cost_micros += col_i64(r, i, 5);
    }
    for (int i = 0; rc == 0 && cb != NULL && i < PQntuples(r); i++) {
        memset(&g, 0, sizeof(g));
        col_text(r, i, 0, g.group, sizeof(g.group));
        g.rows = col_i64(r, i, 1);
        g.requests = col_i64(r, i, 2);
        g.tokens_in = col_i64(r, i, 3);
        g.tokens_out = col_i64(r, i, 4);
        g.cost_micros = col_i64(r, i, 5);
        if (cb(arg, &g) != 0)
            break;
    }
    PQclear(r);
    if (rc == 0 && totals != NULL)
        *totals = t;
    return rc;
}

static int pg_usage_page(struct gw_store *base, const struct gw_usage_filter *f, int64_t after_ms,
                         const char *after_id, int limit, gw_store_usage_page_cb cb, void *arg)
{
    struct params p = {0};
    struct gw_usage_row row;
    char key_id[sizeof(((struct gw_key_rec *)0)->key_id) + 4]; /* "app:" + a client id */
    char slug[sizeof(((struct gw_org *)0)->slug)];
    PGresult *r;
    p_usage_filter(&p, f);
    p_i64(&p, after_ms);
    p_text(&p, after_id);
    p_i64(&p, limit);
    int rc = run((struct pg *)base, P_USAGE_PAGE + (int)usage_index(f), &p, &r);
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        read_usage(r, i, &row);
        if (strcmp(row.state, "reserved") == 0) /* as spend counts it */
            row.cost_micros = row.reserved_micros;
        col_text(r, i, 27, key_id, sizeof(key_id));
        col_text(r, i, 28, slug, sizeof(slug));
        if (cb(arg, &row, key_id, slug) != 0)
            break;
    }
    PQclear(r);
    return rc;
}

static int pg_health(struct gw_store *base, int64_t now_ms, struct gw_store_health *out)
{
    struct params p = {0};
    PGresult *r;
    p_i64(&p, now_ms);
    int rc = run((struct pg *)base, P_HEALTH, &p, &r);
    if (rc == 0 && PQntuples(r) == 1) {
        out->idem_uncertain = col_i64(r, 0, 0);
        out->usage_uncertain = col_i64(r, 0, 1);
        out->idem_expired = col_i64(r, 0, 2);
    } else if (rc == 0) {
        rc = GW_ESTORE;
    }
    PQclear(r);
    return rc;
}

static int run_count(struct pg *s, enum stmt_id id, const struct params *p, int64_t *count);

/* What a dead process of node ("" = any node) left in flight becomes uncertain: the
 * reservations (P_USAGE_RECOVER) or the idempotency claims (P_IDEM_RECOVER). */
static int recover(struct gw_store *base, enum stmt_id id, const char *node, int64_t *count)
{
    struct params p = {0};
    p_i64(&p, gw_now_ms());
    p_text(&p, node);
    return run_count((struct pg *)base, id, &p, count);
}

static int pg_usage_recover(struct gw_store *base, const char *node, int64_t *count)
{
    return recover(base, P_USAGE_RECOVER, node, count);
}

static int pg_in_tx(struct gw_store *base)
{
    return PQtransactionStatus(((struct pg *)base)->conn) != PQTRANS_IDLE;
}

static int pg_tx(struct gw_store *base, const char *what)
{
    struct pg *s = (struct pg *)base;
    int begin = strcmp(what, "BEGIN") == 0;
    if (begin && PQstatus(s->conn) != CONNECTION_OK) {
        PQreset(s->conn); /* a transaction may start on a fresh connection */
        memset(s->prepared, 0, sizeof(s->prepared));
    }
    int rc = exec_simple(s, what);
    s->in_tx = begin && rc == 0;
    /* The commit of a transaction that locked a scope does not wait for its WAL to reach the
     * disk (set with the lock): it releases the lock (and the counters' rows) at once, so the
     * scope's next admission does not queue behind this one's flush. The caller still gets
     * the answer only once it is durable: a transaction that assigns an id commits
     * synchronously, and its flush covers all the WAL before it, this commit and every one
     * this transaction read. */
    if (s->flush_due && rc == 0 && strcmp(what, "COMMIT") == 0)
        rc = exec_simple(s, "SELECT txid_current()");
    if (!s->in_tx)
        s->flush_due = 0;
    return rc;
}

/* One advisory lock per scope, held to the end of the transaction: keys and orgs in their own
 * halves of the lock space. The transaction then commits without waiting for the disk (pg_tx
 * waits after). */
static int pg_lock_scope(struct gw_store *base, enum gw_scope scope, int64_t id)
{
    struct params p = {0};
    p_i64(&p, id * 2 + (scope == GW_SCOPE_ORG ? 1 : 0));
    int rc = run((struct pg *)base, P_LOCK, &p, NULL);
    if (rc == 0)
        ((struct pg *)base)->flush_due = 1;
    return rc;
}

static int read_snapshot(const PGresult *r, struct gw_scope_usage *out)
{
    if (PQntuples(r) != 1 || PQnfields(r) < 6)
        return GW_ESTORE;
    out->requests = col_i64(r, 0, 0);
    out->tokens = col_i64(r, 0, 1);
    out->inflight = col_i64(r, 0, 2);
    out->held_usd = col_i64(r, 0, 3);
    out->day_spent = col_i64(r, 0, 4);
    out->month_spent = col_i64(r, 0, 5);
    return 0;
}

static int pg_usage_snapshot(struct gw_store *base, enum gw_scope scope, int64_t id,
                             int64_t hour_start, int64_t day_start, int64_t month_start, int want,
                             struct gw_scope_usage *out)
{
    struct params p = {0};
    PGresult *r;
    memset(out, 0, sizeof(*out));
    p_i64(&p, id);
    p_i64(&p, hour_start);
    p_i64(&p, day_start);
    p_i64(&p, month_start);
    p_i64(&p, want);
    int rc = run((struct pg *)base, scope == GW_SCOPE_ORG ? P_SNAPSHOT_ORG : P_SNAPSHOT, &p, &r);
    if (rc == 0)
        rc = read_snapshot(r, out);
    PQclear(r);
    return rc;
}

/* An admission's start as one pipeline: BEGIN, the locks, the snapshots, then one sync; the
 * server runs them in turn, each statement with a snapshot of its own taken after the one
 * before it ended, so the reads see every commit made before the locks were granted. */
static int pg_admission_begin(struct gw_store *base, const struct gw_admission_read *rd,
                              struct gw_scope_usage *key, struct gw_scope_usage *org)
{
    struct pg *s = (struct pg *)base;
    enum { Q_BEGIN, Q_LOCK, Q_KEY, Q_ORG };
    struct params p[4];
    int kind[5], n = 0, rc = 0, begun = 0;
    char name[16];

    memset(p, 0, sizeof(p));
    if (s->in_tx)
        return GW_EINVAL;
    if (PQstatus(s->conn) != CONNECTION_OK) { /* no transaction yet: reconnect once */
        PQreset(s->conn);
        memset(s->prepared, 0, sizeof(s->prepared));
    }
    if (PQstatus(s->conn) != CONNECTION_OK || prepare(s, P_LOCK) != 0 ||
        (rd->key_want && prepare(s, P_SNAPSHOT) != 0) ||
        (rd->org_want && prepare(s, P_SNAPSHOT_ORG) != 0))
        return GW_ESTORE;
    if (PQenterPipelineMode(s->conn) != 1)
        return GW_ESTORE;
    int ok = PQsendQueryParams(s->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
    kind[n++] = Q_BEGIN;
    for (int org_first = 1; org_first >= 0; org_first--) {
        if (!(org_first ? rd->lock_org : rd->lock_key))
            continue;
        struct params *lp = &p[org_first];
        p_i64(lp, org_first ? rd->org_id * 2 + 1 : rd->key_id * 2);
        stmt_name(P_LOCK, name);
        ok = ok && PQsendQueryPrepared(s->conn, name, 1, lp->v, NULL, NULL, 0);
        kind[n++] = Q_LOCK;
    }
    for (int is_org = 0; is_org < 2; is_org++) {
        int want = is_org ? rd->org_want : rd->key_want;
        if (want == 0)
            continue;
        struct params *sp = &p[2 + is_org];
        p_i64(sp, is_org ? rd->org_id : rd->key_id);
        p_i64(sp, rd->hour_start);
        p_i64(sp, rd->day_start);
        p_i64(sp, rd->month_start);
        p_i64(sp, want);
        stmt_name(is_org ? P_SNAPSHOT_ORG : P_SNAPSHOT, name);
        ok = ok && PQsendQueryPrepared(s->conn, name, 5, sp->v, NULL, NULL, 0);
        kind[n++] = is_org ? Q_ORG : Q_KEY;
    }
    ok = ok && PQpipelineSync(s->conn);
    for (int i = 0; ok && i < n; i++) { /* each statement's result, then a NULL */
        PGresult *r = PQgetResult(s->conn);
        if (r == NULL) {
            ok = 0;
            break;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            rc = GW_ESTORE;
        } else if (kind[i] == Q_BEGIN) {
            begun = 1;
        } else if (kind[i] == Q_KEY || kind[i] == Q_ORG) {
            int rr = read_snapshot(r, kind[i] == Q_KEY ? key : org);
            if (rc == 0)
                rc = rr;
        }
        PQclear(r);
        while ((r = PQgetResult(s->conn)) != NULL) /* the NULL that ends this statement's */
            PQclear(r);
    }
    if (ok) { /* the sync's own result */
        PGresult *r = PQgetResult(s->conn);
        ok = r != NULL && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
    }
    char msg[300] = "";
    if (!ok || rc != 0)
        conn_error(s, msg, sizeof(msg)); /* before a reset below forgets it */
    if (PQexitPipelineMode(s->conn) != 1) { /* results left unread: start over clean (the
                                                * server ends the transaction with the session) */
        ok = 0;
        begun = 0;
        PQreset(s->conn);
        memset(s->prepared, 0, sizeof(s->prepared));
    }
    if (!ok && rc == 0)
        rc = GW_ESTORE;
    if (rc == 0) {
        s->in_tx = 1;
        s->flush_due = rd->lock_org || rd->lock_key; /* P_LOCK: commits unflushed */
        return 0;
    }
    GW_LOG_WARN("store", "an admission's locks and reads failed: %s",
                msg[0] ? msg : conn_error(s, msg, sizeof(msg)));
    if (begun && PQstatus(s->conn) == CONNECTION_OK && !PQisBusy(s->conn))
        (void)exec_simple(s, "ROLLBACK");
    s->in_tx = 0;
    s->flush_due = 0;
    return rc;
}

/* $1..$11 of the counters' statements */
static void p_counters(struct params *p, const struct pg *s, const struct gw_counters_delta *d)
{
    p_i64(p, d->key_id);
    p_i64(p, d->org_id);
    p_i64(p, d->day_start);
    p_i64(p, d->month_start);
    p_i64(p, d->usd);
    p_i64(p, d->second);
    p_i64(p, d->requests);
    p_i64(p, d->tokens);
    p_i64(p, d->prune_before);
    p_i64(p, d->spread_key ? s->shard : 0);
    p_i64(p, d->spread_org ? s->shard : 0);
}

static int pg_counters_add(struct gw_store *base, const struct gw_counters_delta *d)
{
    struct params p = {0};
    p_counters(&p, (struct pg *)base, d);
    return run((struct pg *)base, P_COUNTERS_ADD, &p, NULL);
}

static int reserve_one(struct pg *s, const struct gw_usage_row *row,
                       const struct gw_counters_delta *d)
{
    struct params p = {0};
    p_counters(&p, s, d);
    p_row(&p, row);
    return run(s, P_RESERVE_COUNTED, &p, NULL);
}

static int settle_one(struct pg *s, const struct gw_usage_row *row,
                      const struct gw_counters_delta *d)
{
    struct params p = {0};
    PGresult *r;
    p_counters(&p, s, d);
    p_settle(&p, row);
    int rc = run(s, P_SETTLE_COUNTED, &p, &r);
    if (rc == 0 && (PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 0), "0") == 0))
        rc = GW_ENOTFOUND;
    PQclear(r);
    return rc;
}

/* ---- many writes, one statement ----
 *
 * The pool hands plain writes that queued together to write_many: they run as one statement
 * (P_BATCH), so one plan start, one commit and one WAL flush serve them all. When that
 * statement fails, they run one by one, so that one bad write fails alone. */
#define BATCH_COLS 56 /* P_BATCH's parameters */

/* Append one array element of len bytes (no NUL among them), quoted (the text form of a
 * PostgreSQL array). */
static int array_add_n(struct gw_buf *b, const char *v, size_t len)
{
    int rc = gw_buf_add(b, b->len > 1 ? ",\"" : "\"", b->len > 1 ? 2 : 1);
    const char *q = v, *end = v + len;
    while (rc == 0 && q < end) {
        const char *e = q;
        while (e < end && *e != '"' && *e != '\\')
            e++;
        if ((rc = gw_buf_add(b, q, (size_t)(e - q))) != 0 || e == end)
            break;
        char esc[2] = {'\\', *e};
        rc = gw_buf_add(b, esc, 2);
        q = e + 1;
    }
    return rc != 0 ? rc : gw_buf_add(b, "\"", 1);
}

static int array_add(struct gw_buf *b, const char *v) { return array_add_n(b, v, strlen(v)); }

static void add_params(struct gw_buf *cols, const struct params *p, int *rc)
{
    for (int i = 0; i < p->n && *rc == 0; i++)
        *rc = array_add(&cols[i], p->v[i]);
}

/* n array parameters built in cols: each opened ("{"), then closed ("}") into v once its
 * elements are in (rc: what building them gave), then freed. */
static int arrays_open(struct gw_buf *cols, int n)
{
    int rc = 0;
    for (int i = 0; i < n; i++) {
        gw_buf_init(&cols[i], 64u << 20);
        if (rc == 0)
            rc = gw_buf_add(&cols[i], "{", 1);
    }
    return rc;
}

static int arrays_close(struct gw_buf *cols, int n, const char **v, int rc)
{
    for (int i = 0; i < n && rc == 0; i++)
        if ((rc = gw_buf_add(&cols[i], "}", 1)) == 0)
            v[i] = cols[i].data;
    return rc;
}

static void arrays_free(struct gw_buf *cols, int n)
{
    for (int i = 0; i < n; i++)
        gw_buf_cleanup(&cols[i]);
}

/* The writes as one statement: 0 with every result set, else an error and none set. */
static int batch_statement(struct pg *s, struct gw_store_write *const *w, int n)
{
    struct gw_buf cols[BATCH_COLS];
    const char *v[BATCH_COLS];
    int rc = arrays_open(cols, BATCH_COLS);
    for (int k = 0; k < n && rc == 0; k++) {
        struct params p = {0}, q = {0};
        if (w[k]->settle)
            p_settle(&p, w[k]->row);
        else
            p_row(&p, w[k]->row);
        add_params(cols + (w[k]->settle ? 27 : 0), &p, &rc);
        p_text(&q, w[k]->row->request_id);
        p_counters(&q, s, &w[k]->d);
        add_params(cols + 44, &q, &rc);
    }
    rc = arrays_close(cols, BATCH_COLS, v, rc);
    PGresult *r = NULL;
    if (rc == 0)
        rc = run_values(s, P_BATCH, BATCH_COLS, v, &r);
    for (int k = 0; k < n && rc == 0; k++) {
        w[k]->rc = 0;
        if (!w[k]->settle)
            continue;
        w[k]->rc = GW_ENOTFOUND; /* unless the statement settled it */
        for (int i = 0; i < PQntuples(r); i++)
            if (strcmp(PQgetvalue(r, i, 0), w[k]->row->request_id) == 0)
                w[k]->rc = 0;
    }
    PQclear(r);
    arrays_free(cols, BATCH_COLS);
    return rc;
}

/* Plain writes (or lookups) of one kind as one statement, or one by one when it fails, so that
 * a bad one fails alone; what they are ("writes") and what is done with them ("writing them")
 * go into the log. */
static void together(struct pg *s, struct gw_store_write *const *w, int n,
                     int (*statement)(struct pg *s, struct gw_store_write *const *w, int n),
                     const char *what, const char *doing)
{
    if (n > 1) {
        if (statement(s, w, n) == 0)
            return;
        char msg[300];
        conn_error(s, msg, sizeof(msg));
        GW_LOG_WARN("store", "%d %s together failed, %s one by one: %s", n, what, doing,
                    msg);
    }
    for (int k = 0; k < n; k++)
        gw_store_write_one(&s->base, w[k]);
}

static int pg_usage_reserve_counted(struct gw_store *base, const struct gw_usage_row *row,
                                    const struct gw_counters_delta *d)
{
    return reserve_one((struct pg *)base, row, d);
}

static int pg_usage_settle_counted(struct gw_store *base, const struct gw_usage_row *row,
                                   const struct gw_counters_delta *d)
{
    return settle_one((struct pg *)base, row, d);
}

static int pg_rate_list(struct gw_store *base, enum gw_scope scope, int64_t id,
                        int64_t since_second, gw_store_rate_cb cb, void *arg)
{
    struct params p = {0};
    PGresult *r;
    p_i64(&p, scope == GW_SCOPE_ORG ? 1 : 0);
    p_i64(&p, id);
    p_i64(&p, since_second);
    int rc = run((struct pg *)base, P_RATE_LIST, &p, &r);
    for (int i = 0; rc == 0 && i < PQntuples(r); i++)
        if (cb(arg, col_i64(r, i, 0), col_i64(r, i, 1), col_i64(r, i, 2)) != 0)
            break;
    PQclear(r);
    return rc;
}

static char *col_dup(const PGresult *r, int row, int col, size_t *len)
{
    size_t n = PQgetisnull(r, row, col) ? 0 : (size_t)PQgetlength(r, row, col);
    char *d = gw_malloc(n + 1);
    if (d != NULL) {
        if (n > 0)
            memcpy(d, PQgetvalue(r, row, col), n);
        d[n] = '\0';
    }
    if (len != NULL)
        *len = d ? n : 0;
    return d;
}

static void p_idem_pk(struct params *p, const struct gw_idem_rec *r)
{
    p_text(p, r->caller);
    p_text(p, r->endpoint);
    p_text(p, r->key);
}

static int pg_idem_claim(struct gw_store *base, const struct gw_idem_rec *rec, int64_t now_ms,
                         int *claimed, struct gw_idem_rec *existing)
{
    struct params p = {0};
    PGresult *r;
    p_idem_pk(&p, rec);
    p_text(&p, rec->fingerprint);
    p_text(&p, rec->request_id);
    p_text(&p, rec->node);
    p_i64(&p, rec->created_ms);
    p_i64(&p, rec->expires_ms);
    p_i64(&p, now_ms);
    int rc = run((struct pg *)base, P_IDEM_CLAIM, &p, &r);
    if (rc == 0)
        *claimed = PQntuples(r) > 0;
    PQclear(r);
    if (rc != 0 || *claimed)
        return rc;
    struct params g = {0};
    p_idem_pk(&g, rec);
    if ((rc = run((struct pg *)base, P_IDEM_GET, &g, &r)) != 0)
        return rc;
    if (PQntuples(r) == 0) { /* purged in between: the caller may simply try again */
        PQclear(r);
        return GW_ENOTFOUND;
    }
    struct gw_idem_rec *e = existing;
    *e = (struct gw_idem_rec){0};
    gw_strlcpy(e->caller, rec->caller, sizeof(e->caller));
    gw_strlcpy(e->endpoint, rec->endpoint, sizeof(e->endpoint));
    gw_strlcpy(e->key, rec->key, sizeof(e->key));
    col_text(r, 0, 0, e->fingerprint, sizeof(e->fingerprint));
    col_text(r, 0, 1, e->state, sizeof(e->state));
    col_text(r, 0, 2, e->request_id, sizeof(e->request_id));
    col_text(r, 0, 3, e->node, sizeof(e->node));
    e->status = (int)col_i64(r, 0, 4);
    e->headers = col_dup(r, 0, 5, NULL);
    e->body = col_dup(r, 0, 6, &e->body_len);
    e->created_ms = col_i64(r, 0, 7);
    e->completed_ms = col_i64(r, 0, 8);
    e->expires_ms = col_i64(r, 0, 9);
    PQclear(r);
    if (e->headers == NULL || e->body == NULL) {
        gw_idem_rec_cleanup(e);
        return GW_ENOMEM;
    }
    return 0;
}

static int pg_idem_complete(struct gw_store *base, const struct gw_idem_rec *rec)
{
    struct params p = {0};
    p_idem_pk(&p, rec);
    p_text(&p, rec->request_id);
    p_text(&p, rec->state);
    p_i64(&p, rec->status);
    p_text(&p, rec->headers ? rec->headers : "");
    p_text(&p, rec->body ? rec->body : "");
    p_i64(&p, rec->completed_ms);
    return run_update((struct pg *)base, P_IDEM_COMPLETE, &p);
}

static int pg_idem_release(struct gw_store *base, const struct gw_idem_rec *rec)
{
    struct params p = {0};
    p_idem_pk(&p, rec);
    p_text(&p, rec->request_id);
    return run_update((struct pg *)base, P_IDEM_RELEASE, &p);
}

/* An UPDATE/DELETE and how many rows it changed. */
static int run_count(struct pg *s, enum stmt_id id, const struct params *p, int64_t *count)
{
    PGresult *r;
    *count = 0;
    int rc = run(s, id, p, &r);
    if (rc == 0)
        *count = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return rc;
}

static int pg_idem_recover(struct gw_store *base, const char *node, int64_t *count)
{
    return recover(base, P_IDEM_RECOVER, node, count);
}

static int pg_idem_purge(struct gw_store *base, int64_t now_ms, int limit, int64_t *count)
{
    struct params p = {0};
    p_i64(&p, now_ms);
    p_i64(&p, limit);
    return run_count((struct pg *)base, P_IDEM_PURGE, &p, count);
}

static int pg_session_purge(struct gw_store *base, int64_t now_ms, int limit, int64_t *count)
{
    struct params p = {0};
    p_i64(&p, now_ms);
    p_i64(&p, limit);
    *count = 0;
    for (enum stmt_id id = P_PURGE_CODES; id <= P_PURGE_NONCES; id++) {
        int64_t n = 0;
        int rc = run_count((struct pg *)base, id, &p, &n);
        if (rc != 0)
            return rc;
        *count += n;
    }
    return 0;
}

/* ---- conversations ----
 * An operation that changes several rows runs in a transaction of its own, or joins the
 * caller's when one is open (its COMMIT is then the caller's). Rows handed to callbacks point
 * into the query's result: valid until it is cleared, after the callbacks. */

/* Begin a transaction unless the caller has one open: *own = 1 when this one is ours. */
static int own_begin(struct pg *s, int *own)
{
    *own = !s->in_tx;
    return *own ? pg_tx(&s->base, "BEGIN") : 0;
}

/* End what own_begin began: COMMIT after success (rc 0), else ROLLBACK. Returns the result. */
static int own_end(struct pg *s, int own, int rc)
{
    if (!own)
        return rc;
    if (rc == 0)
        rc = pg_tx(&s->base, "COMMIT");
    if (rc != 0)
        (void)pg_tx(&s->base, "ROLLBACK");
    return rc;
}

/* Read a conversation's row (CONV_COLS). dup: the summary as a new string (GW_ENOMEM), else
 * the result's own. */
static int read_conv(const PGresult *r, int row, struct gw_conv *c, int dup)
{
    memset(c, 0, sizeof(*c));
    c->id = col_i64(r, row, 0);
    col_text(r, row, 1, c->ref, sizeof(c->ref));
    c->org_id = col_i64(r, row, 2);
    col_text(r, row, 3, c->owner, sizeof(c->owner));
    col_text(r, row, 4, c->conv_id, sizeof(c->conv_id));
    col_text(r, row, 5, c->title, sizeof(c->title));
    c->shared = col_i64(r, row, 6) != 0;
    c->turns = col_i64(r, row, 7);
    c->summary_upto = col_i64(r, row, 9);
    c->created_ms = col_i64(r, row, 10);
    c->updated_ms = col_i64(r, row, 11);
    if (dup)
        return (c->summary = col_dup(r, row, 8, NULL)) != NULL ? 0 : GW_ENOMEM;
    c->summary = PQgetvalue(r, row, 8); /* "" for a NULL */
    return 0;
}

/* Turn t's parameters: role, message, request id, model, tokens, time. A text parameter goes
 * up to its NUL, so the message (maybe a slice of a longer text) is copied into *copy, which
 * drop_copy wipes and frees. GW_ENOMEM. */
static int turn_params(struct params *p, const struct gw_conv_turn *t, int64_t now_ms,
                       char **copy)
{
    if ((*copy = gw_strndup(t->message, t->message_len)) == NULL)
        return GW_ENOMEM;
    p_text(p, t->role);
    p_text(p, *copy);
    p_text(p, t->request_id);
    p_text(p, t->model);
    p_i64(p, t->tokens);
    p_i64(p, t->created_ms != 0 ? t->created_ms : now_ms);
    return 0;
}

static void drop_copy(char *copy, size_t len)
{
    if (copy == NULL)
        return;
    OPENSSL_cleanse(copy, len);
    gw_free(copy);
}

static int add_turn(struct pg *s, int64_t conv, int64_t seq, const struct gw_conv_turn *t,
                    int64_t now_ms)
{
    struct params p = {0};
    char *m = NULL;
    p_i64(&p, conv);
    p_i64(&p, seq);
    int rc = turn_params(&p, t, now_ms, &m);
    if (rc == 0)
        rc = run(s, P_TURN_INSERT, &p, NULL);
    drop_copy(m, t->message_len);
    return rc;
}

#define APPEND_ONE_MAX 4 /* turns that go with the upsert in one statement */

/* The upsert's parameters, $1 to $7. */
static void conv_params(struct params *p, const struct gw_conv_append *a)
{
    p_text(p, a->ref);
    p_i64(p, a->org_id);
    p_text(p, a->owner);
    p_text(p, a->conv_id);
    p_text(p, a->title);
    p_i64(p, a->n);
    p_i64(p, a->now_ms);
}

/* conv_append_once for 1 to APPEND_ONE_MAX turns: one statement, one round trip. */
static int conv_append_one(struct pg *s, const struct gw_conv_append *a, struct gw_conv *conv,
                           int *own_out)
{
    struct params p = {0};
    char *msg[APPEND_ONE_MAX] = {0};
    PGresult *r = NULL;
    int rc = 0;

    *own_out = !s->in_tx; /* a failed statement of its own may be run again */
    conv_params(&p, a);
    for (int i = 0; i < a->n && rc == 0; i++)
        rc = turn_params(&p, &a->turns[i], a->now_ms, &msg[i]);
    if (rc == 0)
        rc = run(s, (enum stmt_id)(P_CONV_APPEND1 + a->n - 1), &p, &r);
    if (rc == 0 && PQntuples(r) != 1)
        rc = GW_ESTORE;
    if (rc == 0 && conv != NULL)
        rc = read_conv(r, 0, conv, 1);
    PQclear(r);
    for (int i = 0; i < a->n; i++)
        drop_copy(msg[i], a->turns[i].message_len);
    return rc;
}

static int conv_append_once(struct pg *s, const struct gw_conv_append *a, struct gw_conv *conv,
                            int *own_out)
{
    if (a->n >= 1 && a->n <= APPEND_ONE_MAX)
        return conv_append_one(s, a, conv, own_out);
    struct params p = {0};
    struct gw_conv row = {0};
    PGresult *r = NULL;
    int own, rc, found = 0;

    if ((rc = own_begin(s, &own)) != 0)
        return rc;
    *own_out = own;
    conv_params(&p, a);
    rc = run(s, P_CONV_UPSERT, &p, &r);
    if (rc == 0 && PQntuples(r) != 1)
        rc = GW_ESTORE;
    if (rc == 0) {
        found = 1;
        rc = read_conv(r, 0, &row, conv != NULL);
    }
    PQclear(r);
    for (int i = 0; rc == 0 && i < a->n; i++)
        rc = add_turn(s, row.id, row.turns - a->n + 1 + i, &a->turns[i], a->now_ms);
    rc = own_end(s, own, rc);
    if (found && conv != NULL) {
        if (rc == 0)
            *conv = row; /* transferred */
        else
            gw_conv_cleanup(&row);
    }
    return rc;
}

static int pg_conv_append(struct gw_store *base, const struct gw_conv_append *a,
                          struct gw_conv *conv)
{
    struct pg *s = (struct pg *)base;
    int own = 0;
    int rc = conv_append_once(s, a, conv, &own);
    /* first appends at once, with one ref: ON CONFLICT settles only the (org, owner, conv_id)
     * race, and a loser may meet a winner's ref first; by now the conversation is there, and
     * once more extends it. With several at once a loser's second try may meet another still
     * in progress, hence a third (a ref that another conversation holds fails every time). */
    for (int again = 0; rc == GW_EEXIST && own && again < 2; again++)
        rc = conv_append_once(s, a, conv, &own);
    return rc;
}

/* The one conversation statement id gives, with its summary (new). */
/* ---- many writes at once ----
 *
 * The pool hands plain writes that queued together to write_many. The usage writes go as one
 * statement (P_BATCH) and the conversations' appends as another (P_CONV_BATCH), each with one
 * commit; an append that a batch cannot take as it is (gw_store_conv_append_ready), or a
 * second one to the same conversation, or one past CONV_BATCH_BYTES, runs on its own after. */
#define CONV_BATCH_COLS 15
#define CONV_BATCH_BYTES (4u << 20) /* the messages of one statement */

/* The appends as one statement: 0 with every one written, else an error (none written). */
static int conv_batch_statement(struct pg *s, struct gw_store_write *const *w, int n)
{
    struct gw_buf cols[CONV_BATCH_COLS];
    const char *v[CONV_BATCH_COLS];
    long turns = 0;
    int rc = arrays_open(cols, CONV_BATCH_COLS);
    for (int k = 0; k < n && rc == 0; k++) {
        const struct gw_conv_append *a = w[k]->conv;
        struct params p = {0};
        conv_params(&p, a);
        add_params(cols, &p, &rc);
        for (int i = 0; i < a->n && rc == 0; i++, turns++) {
            const struct gw_conv_turn *t = &a->turns[i];
            struct params q = {0}, r = {0};
            p_i64(&q, k + 1);
            p_i64(&q, i + 1);
            p_text(&q, t->role);
            add_params(cols + 7, &q, &rc);
            if (rc == 0)
                rc = array_add_n(&cols[10], t->message, t->message_len);
            p_text(&r, t->request_id);
            p_text(&r, t->model);
            p_i64(&r, t->tokens);
            p_i64(&r, t->created_ms != 0 ? t->created_ms : a->now_ms);
            add_params(cols + 11, &r, &rc);
        }
    }
    rc = arrays_close(cols, CONV_BATCH_COLS, v, rc);
    PGresult *r = NULL;
    if (rc == 0 && (rc = run_values(s, P_CONV_BATCH, CONV_BATCH_COLS, v, &r)) == 0 &&
        (PQntuples(r) != 1 || col_i64(r, 0, 0) != n || col_i64(r, 0, 1) != turns)) {
        GW_LOG_ERROR("store", "%d appends together wrote %s conversations and %s turns of %ld", n,
                     PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "?",
                     PQntuples(r) == 1 ? PQgetvalue(r, 0, 1) : "?", turns);
        rc = GW_ESTORE; /* committed: not to be written again */
        for (int k = 0; k < n; k++)
            w[k]->rc = rc;
        rc = 0;
    } else if (rc == 0) {
        for (int k = 0; k < n; k++)
            w[k]->rc = 0;
    }
    PQclear(r);
    OPENSSL_cleanse(cols[10].data, cols[10].len); /* the messages */
    arrays_free(cols, CONV_BATCH_COLS);
    return rc;
}

static size_t append_bytes(const struct gw_conv_append *a)
{
    size_t n = 0;
    for (int i = 0; i < a->n; i++)
        n += a->turns[i].message_len;
    return n;
}

static int same_conv(const struct gw_conv_append *a, const struct gw_conv_append *b)
{
    return a != NULL && b != NULL && a->owner != NULL && b->owner != NULL &&
           a->conv_id != NULL && b->conv_id != NULL && a->org_id == b->org_id &&
           strcmp(a->owner, b->owner) == 0 && strcmp(a->conv_id, b->conv_id) == 0;
}

static int conv_among(const struct gw_conv_append *a, struct gw_store_write *const *w, int n)
{
    for (int k = 0; k < n; k++)
        if (same_conv(a, w[k]->conv))
            return 1;
    return 0;
}

static void conv_many(struct pg *s, struct gw_store_write *const *w, int n)
{
    if (n > 1) {
        if (conv_batch_statement(s, w, n) == 0)
            return;
        char msg[300];
        conn_error(s, msg, sizeof(msg));
        if (PQstatus(s->conn) != CONNECTION_OK) { /* it may have run: never twice */
            GW_LOG_ERROR("store", "%d appends together were lost with the connection: %s", n,
                         msg);
            for (int k = 0; k < n; k++)
                w[k]->rc = GW_ESTORE;
            return;
        }
        GW_LOG_WARN("store", "%d appends together failed, writing them one by one: %s", n, msg);
    }
    for (int k = 0; k < n; k++)
        gw_store_write_one(&s->base, w[k]);
}

/* The lookups as one statement: 0 with every result set (GW_ENOTFOUND for a hash no key
 * has), else an error and none set. */
static int keys_statement(struct pg *s, struct gw_store_write *const *w, int n)
{
    struct gw_buf hashes;
    char hex[65], now[24];
    int rc = arrays_open(&hashes, 1);
    for (int k = 0; k < n && rc == 0; k++) {
        gw_hex(hex, w[k]->key_hash, 32);
        rc = array_add(&hashes, hex);
    }
    const char *v[2] = {NULL, now};
    snprintf(now, sizeof(now), "%lld", (long long)gw_now_ms());
    rc = arrays_close(&hashes, 1, v, rc);
    PGresult *r = NULL;
    if (rc == 0)
        rc = run_values(s, P_KEY_BY_HASH_MANY, 2, v, &r);
    OPENSSL_cleanse(hashes.data, hashes.len);
    arrays_free(&hashes, 1);
    if (rc != 0)
        return rc;
    for (int k = 0; k < n; k++)
        w[k]->rc = GW_ENOTFOUND;
    int place = PQnfields(r) - 1; /* after the key's columns */
    for (int i = 0; i < PQntuples(r); i++) {
        int64_t k = col_i64(r, i, place) - 1;
        if (k >= 0 && k < n && w[k]->rc == GW_ENOTFOUND) {
            read_key(r, i, w[k]->key);
            w[k]->rc = 0;
        }
    }
    PQclear(r);
    return 0;
}

/* The appends a batch leaves (rest) run after it, in their order: a conversation's turns keep
 * the order they came in. */
static void pg_write_many(struct gw_store *base, struct gw_store_write *const *w, int n)
{
    struct pg *s = (struct pg *)base;
    struct gw_store_write **part = NULL;
    if (n < 2 || s->in_tx || (part = gw_malloc(4 * (size_t)n * sizeof(*part))) == NULL) {
        for (int k = 0; k < n; k++)
            gw_store_write_one(base, w[k]);
        return;
    }
    struct gw_store_write **usage = part, **conv = part + n, **rest = part + 2 * n;
    struct gw_store_write **keys = part + 3 * n;
    int nu = 0, nc = 0, nr = 0, nk = 0;
    size_t bytes = 0;
    for (int k = 0; k < n; k++) {
        const struct gw_conv_append *a = w[k]->conv;
        if (w[k]->key_hash != NULL) {
            keys[nk++] = w[k];
        } else if (a == NULL) {
            usage[nu++] = w[k];
        } else if (gw_store_conv_append_ready(a) && bytes + append_bytes(a) <= CONV_BATCH_BYTES &&
                   !conv_among(a, conv, nc) && !conv_among(a, rest, nr)) {
            bytes += append_bytes(a);
            conv[nc++] = w[k];
        } else {
            rest[nr++] = w[k];
        }
    }
    together(s, keys, nk, keys_statement, "key lookups", "looking them up");
    together(s, usage, nu, batch_statement, "writes", "writing them");
    conv_many(s, conv, nc);
    for (int k = 0; k < nr; k++)
        gw_store_write_one(base, rest[k]);
    gw_free(part);
}

static int conv_one(struct pg *s, enum stmt_id id, const struct params *p, struct gw_conv *out)
{
    PGresult *r;
    int rc = run(s, id, p, &r);
    if (rc == 0 && PQntuples(r) == 0)
        rc = GW_ENOTFOUND;
    if (rc == 0)
        rc = read_conv(r, 0, out, 1);
    PQclear(r);
    return rc;
}

static int pg_conv_get(struct gw_store *base, int64_t org_id, const char *owner,
                       const char *conv_id, struct gw_conv *out)
{
    struct params p = {0};
    p_i64(&p, org_id);
    p_text(&p, owner);
    p_text(&p, conv_id);
    return conv_one((struct pg *)base, P_CONV_GET, &p, out);
}

static int pg_conv_get_shared(struct gw_store *base, int64_t org_id, const char *ref,
                              struct gw_conv *out)
{
    struct params p = {0};
    p_i64(&p, org_id);
    p_text(&p, ref);
    return conv_one((struct pg *)base, P_CONV_GET_SHARED, &p, out);
}

static int pg_conv_turns(struct gw_store *base, int64_t conv, int64_t after_seq, int limit,
                         gw_store_turn_cb cb, void *arg)
{
    struct params p = {0};
    PGresult *r;
    p_i64(&p, conv);
    p_i64(&p, after_seq);
    p_i64(&p, limit);
    int rc = run((struct pg *)base, P_CONV_TURNS, &p, &r);
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        struct gw_conv_turn t = {0};
        t.seq = col_i64(r, i, 0);
        col_text(r, i, 1, t.role, sizeof(t.role));
        t.message = PQgetvalue(r, i, 2);
        t.message_len = (size_t)PQgetlength(r, i, 2);
        col_text(r, i, 3, t.request_id, sizeof(t.request_id));
        col_text(r, i, 4, t.model, sizeof(t.model));
        t.tokens = col_i64(r, i, 5);
        t.created_ms = col_i64(r, i, 6);
        if (cb(arg, &t) != 0)
            break;
    }
    PQclear(r);
    return rc;
}

/* cb for each conversation statement id gives (summary: the result's). */
static int conv_each(struct pg *s, enum stmt_id id, const struct params *p, gw_store_conv_cb cb,
                     void *arg)
{
    struct gw_conv c;
    PGresult *r;
    int rc = run(s, id, p, &r);
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        (void)read_conv(r, i, &c, 0);
        if (cb(arg, &c) != 0)
            break;
    }
    PQclear(r);
    return rc;
}

static int pg_conv_list(struct gw_store *base, const struct gw_conv_filter *f,
                        gw_store_conv_cb cb, void *arg)
{
    struct params p = {0};
    /* one statement per index: the owner's, the org's shared ones, all of the org's */
    enum stmt_id id = f->owner != NULL ? P_CONV_LIST_OWNER
                      : f->shared_only ? P_CONV_LIST_SHARED
                                       : P_CONV_LIST_ORG;
    p_i64(&p, f->org_id);
    if (id == P_CONV_LIST_OWNER) {
        p_text(&p, f->owner);
        p_i64(&p, f->shared_only != 0);
    }
    p_i64(&p, f->before_ms);
    p_i64(&p, f->before_id);
    p_text(&p, f->q);
    p_i64(&p, f->limit);
    return conv_each((struct pg *)base, id, &p, cb, arg);
}

static int pg_conv_set_shared(struct gw_store *base, int64_t org_id, const char *owner,
                              const char *conv_id, int shared)
{
    struct params p = {0};
    p_i64(&p, org_id);
    p_text(&p, owner);
    p_text(&p, conv_id);
    p_i64(&p, shared);
    return run_update((struct pg *)base, P_CONV_SET_SHARED, &p);
}

static int pg_conv_set_summary(struct gw_store *base, int64_t conv, const char *summary,
                               int64_t upto)
{
    struct params p = {0};
    p_i64(&p, conv);
    p_text(&p, summary);
    p_i64(&p, upto);
    /* no row changed: a summary as long is there already */
    return run((struct pg *)base, P_CONV_SET_SUMMARY, &p, NULL);
}

/* A DELETE … RETURNING id: *id, 0 when it deleted nothing. */
static int delete_returning(struct pg *s, enum stmt_id id, const struct params *p, int64_t *row)
{
    PGresult *r;
    int rc = run(s, id, p, &r);
    *row = rc == 0 && PQntuples(r) > 0 ? col_i64(r, 0, 0) : 0;
    PQclear(r);
    return rc;
}

/* What hangs on a deleted conversation's row id: the idempotency records of the requests that
 * added its turns (they hold the answers), then the turns. */
static int delete_content(struct pg *s, int64_t id)
{
    struct params p = {0};
    p_i64(&p, id);
    int rc = run(s, P_CONV_DEL_IDEM, &p, NULL);
    return rc != 0 ? rc : run(s, P_CONV_DEL_TURNS, &p, NULL);
}

static int pg_conv_delete(struct gw_store *base, int64_t org_id, const char *owner,
                          const char *conv_id)
{
    struct pg *s = (struct pg *)base;
    struct params p = {0};
    int64_t id = 0;
    int own, rc;
    if ((rc = own_begin(s, &own)) != 0)
        return rc;
    p_i64(&p, org_id);
    p_text(&p, owner);
    p_text(&p, conv_id);
    rc = delete_returning(s, P_CONV_DELETE, &p, &id);
    if (rc == 0)
        rc = id > 0 ? delete_content(s, id) : GW_ENOTFOUND;
    return own_end(s, own, rc);
}

static int pg_conv_purge(struct gw_store *base, int64_t now_ms, int limit, int64_t *count)
{
    struct pg *s = (struct pg *)base;
    struct params p = {0};
    int rc = 0;
    p_i64(&p, now_ms);
    /* one conversation per transaction: no lock is held for long */
    for (int i = 0; i < limit && rc == 0; i++) {
        int64_t id = 0;
        int own;
        if ((rc = own_begin(s, &own)) != 0)
            break;
        rc = delete_returning(s, P_CONV_PURGE_ONE, &p, &id);
        if (rc == 0 && id > 0)
            rc = delete_content(s, id);
        if ((rc = own_end(s, own, rc)) != 0 || id == 0)
            break;
        (*count)++;
    }
    return rc;
}

static int pg_conv_export(struct gw_store *base, int64_t org_id, int shared_only,
                          int64_t from_ms, int64_t to_ms, int64_t after_id, int limit,
                          gw_store_conv_cb cb, void *arg)
{
    struct params p = {0};
    p_i64(&p, org_id);
    p_i64(&p, shared_only);
    p_i64(&p, from_ms);
    p_i64(&p, to_ms);
    p_i64(&p, after_id);
    p_i64(&p, limit);
    return conv_each((struct pg *)base, P_CONV_EXPORT, &p, cb, arg);
}

/* ---- audit trail ---- */

static int pg_audit_append(struct gw_store *base, struct gw_audit *a)
{
    struct params p = {0};
    p_i64(&p, a->created_ms);
    p_i64(&p, a->org_id);
    p_text(&p, a->actor);
    p_text(&p, a->actor_role);
    p_text(&p, a->action);
    p_text(&p, a->target);
    p_text(&p, a->request_id);
    p_text(&p, a->detail);
    return run_insert((struct pg *)base, P_AUDIT_INSERT, &p, &a->id);
}

static int pg_audit_list(struct gw_store *base, int64_t org_id, int64_t after_id, int limit,
                         gw_store_audit_cb cb, void *arg)
{
    struct params p = {0};
    PGresult *r;
    if (org_id != 0)
        p_i64(&p, org_id);
    p_i64(&p, after_id);
    p_i64(&p, limit);
    int rc = run((struct pg *)base, org_id != 0 ? P_AUDIT_LIST : P_AUDIT_LIST_ALL, &p, &r);
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        struct gw_audit a = {0};
        a.id = col_i64(r, i, 0);
        a.created_ms = col_i64(r, i, 1);
        a.org_id = col_i64(r, i, 2);
        col_text(r, i, 3, a.actor, sizeof(a.actor));
        col_text(r, i, 4, a.actor_role, sizeof(a.actor_role));
        col_text(r, i, 5, a.action, sizeof(a.action));
        col_text(r, i, 6, a.target, sizeof(a.target));
        col_text(r, i, 7, a.request_id, sizeof(a.request_id));
        a.detail = PQgetisnull(r, i, 8) ? "{}" : PQgetvalue(r, i, 8);
        if (cb(arg, &a) != 0)
            break;
    }
    PQclear(r);
    return rc;
}

static const struct gw_store_ops postgres_ops = {
    .name = "postgres",
    .free = pg_free,
    .migrate = pg_migrate,
    .schema_version = pg_schema_version,
    .org_create = pg_org_create,
    .org_get = pg_org_get,
    .org_set_policy = pg_org_set_policy,
    .key_insert = pg_key_insert,
    .key_by_hash = pg_key_by_hash,
    .key_get = pg_key_get,
    .key_list = pg_key_list,
    .key_set_policy = pg_key_set_policy,
    .key_revoke = pg_key_revoke,
    .app_client_insert = pg_app_client_insert,
    .app_client_get = pg_app_client_get,
    .app_client_list = pg_app_client_list,
    .app_client_approve = pg_app_client_approve,
    .app_client_revoke = pg_app_client_revoke,
    .app_client_update = pg_app_client_update,
    .app_origin_known = pg_app_origin_known,
    .share_code_insert = pg_share_code_insert,
    .share_code_consume = pg_share_code_consume,
    .session_insert = pg_session_insert,
    .session_get = pg_session_get,
    .nonce_burn = pg_nonce_burn,
    .session_purge = pg_session_purge,
    .superadmin_exists = pg_superadmin_exists,
    .usage_reserve = pg_usage_reserve,
    .usage_settle = pg_usage_settle,
    .usage_get = pg_usage_get,
    .usage_spent = pg_usage_spent,
    .usage_recent = pg_usage_recent,
    .usage_list = pg_usage_list,
    .usage_recover = pg_usage_recover,
    .usage_group = pg_usage_group,
    .usage_page = pg_usage_page,
    .org_list = pg_org_list,
    .org_get_id = pg_org_get_id,
    .key_rotate = pg_key_rotate,
    .health = pg_health,
    .tx = pg_tx,
    .in_tx = pg_in_tx,
    .lock_scope = pg_lock_scope,
    .admission_begin = pg_admission_begin,
    .usage_snapshot = pg_usage_snapshot,
    .counters_add = pg_counters_add,
    .usage_reserve_counted = pg_usage_reserve_counted,
    .usage_settle_counted = pg_usage_settle_counted,
    .write_many = pg_write_many,
    .rate_list = pg_rate_list,
    .idem_claim = pg_idem_claim,
    .idem_complete = pg_idem_complete,
    .idem_release = pg_idem_release,
    .idem_recover = pg_idem_recover,
    .idem_purge = pg_idem_purge,
    .conv_append = pg_conv_append,
    .conv_get = pg_conv_get,
    .conv_get_shared = pg_conv_get_shared,
    .conv_turns = pg_conv_turns,
    .conv_list = pg_conv_list,
    .conv_set_shared = pg_conv_set_shared,
    .conv_set_summary = pg_conv_set_summary,
    .conv_delete = pg_conv_delete,
    .conv_export = pg_conv_export,
    .conv_purge = pg_conv_purge,
    .audit_append = pg_audit_append,
    .audit_list = pg_audit_list,
};
