/*
 * store/schema — the versioned schema, one list for every backend; append only.
 *
 * Written in the SQL both SQLite and PostgreSQL take. The one difference, the type of an
 * auto-numbered id ("INTEGER PRIMARY KEY" here), a backend rewrites (postgres.c: BIGSERIAL).
 * A migration that starts with GW_SCHEMA_SQLITE_ONLY changes only SQLite databases
 * (PostgreSQL records its version and runs nothing); GW_SCHEMA_POSTGRES_ONLY the other way.
 */
#include "store/store_int.h"

const char *const gw_schema_migrations[] = {
    /* 1: orgs, API keys (hashes only), usage rows */
    "CREATE TABLE orgs ("
    "  id INTEGER PRIMARY KEY,"
    "  slug TEXT NOT NULL UNIQUE,"
    "  name TEXT NOT NULL,"
    "  created_ms BIGINT NOT NULL);"
    "CREATE TABLE api_keys ("
    "  id INTEGER PRIMARY KEY,"
    "  key_id TEXT NOT NULL UNIQUE,"
    "  key_hash TEXT NOT NULL UNIQUE,"
    "  prefix TEXT NOT NULL,"
    "  org_id BIGINT REFERENCES orgs(id),"
    "  name TEXT NOT NULL DEFAULT '',"
    "  role TEXT NOT NULL,"
    "  tier TEXT NOT NULL,"
    "  providers TEXT NOT NULL DEFAULT '',"
    "  models TEXT NOT NULL DEFAULT '',"
    "  rph BIGINT NOT NULL DEFAULT 0,"
    "  daily_usd_micros BIGINT NOT NULL DEFAULT 0,"
    "  monthly_usd_micros BIGINT NOT NULL DEFAULT 0,"
    "  revoked INTEGER NOT NULL DEFAULT 0,"
    "  created_ms BIGINT NOT NULL,"
    "  revoked_ms BIGINT NOT NULL DEFAULT 0);"
    "CREATE INDEX api_keys_org ON api_keys(org_id, created_ms);"
    "CREATE TABLE usage ("
    "  request_id TEXT PRIMARY KEY,"
    "  org_id BIGINT NOT NULL DEFAULT 0,"
    "  key_row_id BIGINT NOT NULL DEFAULT 0,"
    "  provider TEXT NOT NULL,"
    "  model TEXT NOT NULL,"
    "  endpoint TEXT NOT NULL,"
    "  stream INTEGER NOT NULL DEFAULT 0,"
    "  state TEXT NOT NULL,"
    "  reserved_micros BIGINT NOT NULL DEFAULT 0,"
    "  tokens_in BIGINT NOT NULL DEFAULT 0,"
    "  tokens_out BIGINT NOT NULL DEFAULT 0,"
    "  cached_tokens BIGINT NOT NULL DEFAULT 0,"
    "  reasoning_tokens BIGINT NOT NULL DEFAULT 0,"
    "  cost_micros BIGINT NOT NULL DEFAULT 0,"
    "  latency_ms BIGINT NOT NULL DEFAULT 0,"
    "  status INTEGER NOT NULL DEFAULT 0,"
    "  error_code TEXT NOT NULL DEFAULT '',"
    "  catalog_version TEXT NOT NULL DEFAULT '',"
    "  created_ms BIGINT NOT NULL,"
    "  settled_ms BIGINT NOT NULL DEFAULT 0);"
    "CREATE INDEX usage_key_time ON usage(key_row_id, created_ms);"
    "CREATE INDEX usage_org_time ON usage(org_id, created_ms);"
    "CREATE INDEX usage_state ON usage(state);",
    /* 2: fallback attempts and router calls get their own rows, linked to the request */
    "ALTER TABLE usage ADD COLUMN parent_request_id TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE usage ADD COLUMN kind TEXT NOT NULL DEFAULT 'chat';"
    "ALTER TABLE usage ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE usage ADD COLUMN route_method TEXT NOT NULL DEFAULT '';"
    "CREATE INDEX usage_parent ON usage(parent_request_id) WHERE parent_request_id <> '';",
    /* 3: governance — org policy (allowlists, org-wide limits) and the rest of the key limits */
    "ALTER TABLE orgs ADD COLUMN providers TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE orgs ADD COLUMN models TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE orgs ADD COLUMN rph BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE orgs ADD COLUMN tph BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE orgs ADD COLUMN max_concurrent BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE orgs ADD COLUMN daily_usd_micros BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE orgs ADD COLUMN monthly_usd_micros BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE orgs ADD COLUMN max_request_usd_micros BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE api_keys ADD COLUMN tph BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE api_keys ADD COLUMN max_concurrent BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE api_keys ADD COLUMN max_request_usd_micros BIGINT NOT NULL DEFAULT 0;"
    "CREATE INDEX usage_model_time ON usage(model, created_ms);"
    "CREATE INDEX usage_time ON usage(created_ms);",
    /* 4: several gateway nodes on one database: which node holds a reservation, and fast
     * counts of what is in flight */
    "ALTER TABLE usage ADD COLUMN node TEXT NOT NULL DEFAULT '';"
    "CREATE INDEX usage_inflight_key ON usage(key_row_id) WHERE state = 'reserved';"
    "CREATE INDEX usage_inflight_org ON usage(org_id) WHERE state = 'reserved';",
    /* 5: the tokens a reservation holds (the store-side limits count them while in flight) */
    "ALTER TABLE usage ADD COLUMN reserved_tokens BIGINT NOT NULL DEFAULT 0;",
    /* 6: counters kept with the rows by the store-side limits, so that a check reads a few
     * rows instead of summing many: what each key and org has spent per budget day ('d') and
     * month ('m') */
    "CREATE TABLE usage_totals ("
    "  scope INTEGER NOT NULL,"
    "  id BIGINT NOT NULL,"
    "  period TEXT NOT NULL,"
    "  window_start BIGINT NOT NULL,"
    "  spent_micros BIGINT NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (scope, id, period, window_start));"
    /* and the requests and tokens admitted in each second, for the sliding hour */
    "CREATE TABLE usage_rate ("
    "  scope INTEGER NOT NULL,"
    "  id BIGINT NOT NULL,"
    "  second BIGINT NOT NULL,"
    "  requests BIGINT NOT NULL DEFAULT 0,"
    "  tokens BIGINT NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (scope, id, second));",
    /* 7: idempotency keys — one claim per caller, endpoint and key; the stored answer */
    "CREATE TABLE idempotency ("
    "  caller TEXT NOT NULL,"
    "  endpoint TEXT NOT NULL,"
    "  idem_key TEXT NOT NULL,"
    "  fingerprint TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  request_id TEXT NOT NULL,"
    "  node TEXT NOT NULL DEFAULT '',"
    "  status INTEGER NOT NULL DEFAULT 0,"
    "  headers TEXT NOT NULL DEFAULT '',"
    "  body TEXT NOT NULL DEFAULT '',"
    "  created_ms BIGINT NOT NULL,"
    "  completed_ms BIGINT NOT NULL DEFAULT 0,"
    "  expires_ms BIGINT NOT NULL,"
    "  PRIMARY KEY (caller, endpoint, idem_key));"
    "CREATE INDEX idempotency_expires ON idempotency(expires_ms);"
    "CREATE INDEX idempotency_in_flight ON idempotency(node) WHERE state = 'in_flight';",
    /* 8: fewer index writes per usage row: reservations left behind are found through a small
     * partial index; listing by model filters the time range instead */
    "DROP INDEX usage_state;"
    "DROP INDEX usage_model_time;"
    "CREATE INDEX usage_reserved ON usage(node) WHERE state = 'reserved';",
    /* 9: on SQLite the limits are counted in memory, so nothing reads what is in flight per key
     * or org from the rows: two index writes less for every reservation and settlement */
    GW_SCHEMA_SQLITE_ONLY
    "DROP INDEX usage_inflight_key;"
    "DROP INDEX usage_inflight_org;",
    /* 10: each counter in shards, summed when read: writers that no limit serialises add to
     * their connection's own shard instead of queueing on one row until each commit is
     * durable (shard 0 is for writers that hold the scope's lock) */
    "CREATE TABLE usage_totals_v10 ("
    "  scope INTEGER NOT NULL,"
    "  id BIGINT NOT NULL,"
    "  period TEXT NOT NULL,"
    "  window_start BIGINT NOT NULL,"
    "  shard INTEGER NOT NULL DEFAULT 0,"
    "  spent_micros BIGINT NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (scope, id, period, window_start, shard));"
    "INSERT INTO usage_totals_v10(scope, id, period, window_start, spent_micros) "
    "  SELECT scope, id, period, window_start, spent_micros FROM usage_totals;"
    "DROP TABLE usage_totals;"
    "ALTER TABLE usage_totals_v10 RENAME TO usage_totals;"
    "CREATE TABLE usage_rate_v10 ("
    "  scope INTEGER NOT NULL,"
    "  id BIGINT NOT NULL,"
    "  second BIGINT NOT NULL,"
    "  shard INTEGER NOT NULL DEFAULT 0,"
    "  requests BIGINT NOT NULL DEFAULT 0,"
    "  tokens BIGINT NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (scope, id, second, shard));"
    "INSERT INTO usage_rate_v10(scope, id, second, requests, tokens) "
    "  SELECT scope, id, second, requests, tokens FROM usage_rate;"
    "DROP TABLE usage_rate;"
    "ALTER TABLE usage_rate_v10 RENAME TO usage_rate;",
    /* 11: browser app clients — registered by an org admin, usable once the superadmin has
     * approved them, until revoked; listed per org in row id order */
    "CREATE TABLE app_clients ("
    "  id INTEGER PRIMARY KEY,"
    "  client_id TEXT NOT NULL UNIQUE,"
    "  org_id BIGINT NOT NULL REFERENCES orgs(id),"
    "  name TEXT NOT NULL,"
    "  origins TEXT NOT NULL DEFAULT '',"
    "  providers TEXT NOT NULL DEFAULT '',"
    "  models TEXT NOT NULL DEFAULT '',"
    "  session_ttl_s BIGINT NOT NULL,"
    "  approved INTEGER NOT NULL DEFAULT 0,"
    "  approved_ms BIGINT NOT NULL DEFAULT 0,"
    "  revoked INTEGER NOT NULL DEFAULT 0,"
    "  revoked_ms BIGINT NOT NULL DEFAULT 0,"
    "  created_ms BIGINT NOT NULL);"
    "CREATE INDEX app_clients_org ON app_clients(org_id, id);",
    /* 12: subject sessions — share codes (by their SHA-256, used once: used flips 0 -> 1 in
     * one statement) and the sessions they are exchanged for (by the token's SHA-256); both
     * indexed by expiry for the purge */
    "CREATE TABLE share_codes ("
    "  code_hash TEXT PRIMARY KEY,"
    "  client_id TEXT NOT NULL,"
    "  org_id BIGINT NOT NULL,"
    "  subject TEXT NOT NULL,"
    "  challenge TEXT NOT NULL,"
    "  created_ms BIGINT NOT NULL,"
    "  expires_ms BIGINT NOT NULL,"
    "  used INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX share_codes_expires ON share_codes(expires_ms);"
    "CREATE TABLE subject_sessions ("
    "  token_hash TEXT PRIMARY KEY,"
    "  client_id TEXT NOT NULL,"
    "  org_id BIGINT NOT NULL,"
    "  subject TEXT NOT NULL,"
    "  origin TEXT NOT NULL,"
    "  hmac_key TEXT NOT NULL,"
    "  created_ms BIGINT NOT NULL,"
    "  expires_ms BIGINT NOT NULL);"
    "CREATE INDEX subject_sessions_expires ON subject_sessions(expires_ms);",
    /* 13: the nonces of subject sessions' signed requests: one row each, so that a replay
     * finds its nonce taken; kept until its timestamp could no longer be accepted */
    "CREATE TABLE session_nonces ("
    "  token_hash TEXT NOT NULL,"
    "  nonce TEXT NOT NULL,"
    "  expires_ms BIGINT NOT NULL,"
    "  PRIMARY KEY (token_hash, nonce));"
    "CREATE INDEX session_nonces_expires ON session_nonces(expires_ms);",
    /* 14: a subject session's request records its subject (its app client is the row's key) */
    "ALTER TABLE usage ADD COLUMN subject TEXT NOT NULL DEFAULT '';",
    /* 15: conversations — what an org keeps of them (capture, retention, exports), each owner's
     * conversations and their turns (numbered from 1, seq); indexed for the owner's list and the
     * org's shared list (newest first; only shared rows are in its index, so capturing writes
     * nothing there), exports (row id order) and the retention purge. The
     * idempotency records of a deleted conversation's requests go with it: found by request */
    "ALTER TABLE orgs ADD COLUMN capture INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE orgs ADD COLUMN retention_days BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE orgs ADD COLUMN export_all INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE conversations ("
    "  id INTEGER PRIMARY KEY,"
    "  ref TEXT NOT NULL UNIQUE,"
    "  org_id BIGINT NOT NULL,"
    "  owner TEXT NOT NULL,"
    "  conv_id TEXT NOT NULL,"
    "  title TEXT NOT NULL DEFAULT '',"
    "  shared INTEGER NOT NULL DEFAULT 0,"
    "  turns BIGINT NOT NULL DEFAULT 0,"
    "  summary TEXT NOT NULL DEFAULT '',"
    "  summary_upto BIGINT NOT NULL DEFAULT 0,"
    "  created_ms BIGINT NOT NULL,"
    "  updated_ms BIGINT NOT NULL,"
    "  UNIQUE (org_id, owner, conv_id));"
    "CREATE INDEX conversations_owner ON conversations(org_id, owner, updated_ms, id);"
    "CREATE INDEX conversations_shared ON conversations(org_id, updated_ms, id) WHERE shared = 1;"
    "CREATE INDEX conversations_updated ON conversations(org_id, updated_ms, id);"
    "CREATE INDEX conversations_export ON conversations(org_id, id);"
    "CREATE TABLE conversation_turns ("
    "  conv BIGINT NOT NULL,"
    "  seq BIGINT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  message TEXT NOT NULL,"
    "  request_id TEXT NOT NULL DEFAULT '',"
    "  model TEXT NOT NULL DEFAULT '',"
    "  tokens BIGINT NOT NULL DEFAULT 0,"
    "  created_ms BIGINT NOT NULL,"
    "  PRIMARY KEY (conv, seq));"
    "CREATE INDEX idempotency_request ON idempotency(request_id);",
    /* 16: the audit trail, append only: listed per org (or all of it) in id order */
    "CREATE TABLE audit_log ("
    "  id INTEGER PRIMARY KEY,"
    "  created_ms BIGINT NOT NULL,"
    "  org_id BIGINT NOT NULL DEFAULT 0,"
    "  actor TEXT NOT NULL DEFAULT '',"
    "  actor_role TEXT NOT NULL DEFAULT '',"
    "  action TEXT NOT NULL,"
    "  target TEXT NOT NULL DEFAULT '',"
    "  request_id TEXT NOT NULL DEFAULT '',"
    "  detail TEXT NOT NULL DEFAULT '{}');"
    "CREATE INDEX audit_log_org ON audit_log(org_id, id);",
    /* 17: on SQLite a turn is one b-tree entry, not a row plus its key's index entry (every
     * request's capture writes two) */
    GW_SCHEMA_SQLITE_ONLY
    "CREATE TABLE conversation_turns_v17 ("
    "  conv BIGINT NOT NULL,"
    "  seq BIGINT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  message TEXT NOT NULL,"
    "  request_id TEXT NOT NULL DEFAULT '',"
    "  model TEXT NOT NULL DEFAULT '',"
    "  tokens BIGINT NOT NULL DEFAULT 0,"
    "  created_ms BIGINT NOT NULL,"
    "  PRIMARY KEY (conv, seq)) WITHOUT ROWID;"
    "INSERT INTO conversation_turns_v17 SELECT conv, seq, role, message, request_id, model, "
    "  tokens, created_ms FROM conversation_turns;"
    "DROP TABLE conversation_turns;"
    "ALTER TABLE conversation_turns_v17 RENAME TO conversation_turns;",
    /* 18: key rotation — the previous secret's hash, valid until prev_expires_ms (found through
     * a partial index: only rotated keys are in it). The health counts of what is "uncertain"
     * read partial indexes too, so that they never scan the usage or idempotency rows: only
     * uncertain rows enter them (an upstream that broke off midway, a dead process's leftovers:
     * the exception), so the writes of every other request cost nothing more (an UPDATE of the
     * state already changes the partial indexes on reserved / in-flight rows, so PostgreSQL
     * loses no HOT update by it either). The admin plane's usage reads need no new
     * index: their time range is always bounded, through usage_org_time, usage_key_time or
     * usage_time, and every request writes a usage row, so each index there is paid for on
     * every request */
    "ALTER TABLE api_keys ADD COLUMN prev_key_hash TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE api_keys ADD COLUMN prev_expires_ms BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE api_keys ADD COLUMN rotated_ms BIGINT NOT NULL DEFAULT 0;"
    "CREATE INDEX api_keys_prev_hash ON api_keys(prev_key_hash) WHERE prev_key_hash <> '';"
    /* (state): a count reads the index alone (SQLite: COVERING INDEX) */
    "CREATE INDEX usage_uncertain ON usage(state) WHERE state = 'uncertain';"
    "CREATE INDEX idempotency_uncertain ON idempotency(state) WHERE state = 'uncertain';",
    /* 19: PostgreSQL checks a scope's hour in the store, under its lock: the hour's requests
     * and tokens by the minute beside the seconds, so that a check reads the seconds of the
     * minute the hour starts in and the whole minutes after it (at most 60 + 61 rows, not
     * 3,600). Written in the same statements as the seconds; filled from them here. SQLite
     * checks in memory. */
    GW_SCHEMA_POSTGRES_ONLY
    "CREATE TABLE usage_rate_min ("
    "  scope INTEGER NOT NULL,"
    "  id BIGINT NOT NULL,"
    "  minute BIGINT NOT NULL,"
    "  shard INTEGER NOT NULL DEFAULT 0,"
    "  requests BIGINT NOT NULL DEFAULT 0,"
    "  tokens BIGINT NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (scope, id, minute, shard));"
    "INSERT INTO usage_rate_min(scope, id, minute, shard, requests, tokens) "
    "  SELECT scope, id, second / 60, shard, SUM(requests), SUM(tokens) FROM usage_rate "
    "  GROUP BY scope, id, second / 60, shard;",
};
const int gw_schema_count = (int)(sizeof(gw_schema_migrations) / sizeof(gw_schema_migrations[0]));
