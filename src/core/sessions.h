/*
 * core/sessions — browser-safe subject sessions (INTERFACE.md), the first two steps:
 *   POST /v1/sessions/share-codes  (an API key of the app client's org)
 *        {app_client_id, subject, code_challenge, code_challenge_method: "S256"}
 *        → {share_code, expires_in}: single use, 60 s
 *   POST /v1/sessions/exchange     (no key; the browser's Origin)
 *        {share_code, code_verifier} → {subject_token, hmac_key, token_type, expires_at}
 *   OPTIONS /v1/sessions/exchange  the browser's CORS preflight: 204 for an origin of an
 *        approved, unrevoked app client (whose answers then carry Access-Control-Allow-Origin),
 *        else 403 origin_not_allowed
 * Refusals: 400 invalid_request (a bad body; plain PKCE), 401 invalid_share_code (unknown or
 * used), share_code_expired, invalid_code_verifier, 403 origin_required, origin_not_allowed,
 * app_client_not_approved, app_client_revoked, 404 app_client_not_found (or of another org).
 */
#ifndef GW_CORE_SESSIONS_H
#define GW_CORE_SESSIONS_H

#include <event2/http.h>

struct gw_worker;

/* Signed requests with a subject token (Authorization: Bearer llmst_…, X-LLMGW-Timestamp,
 * X-LLMGW-Nonce, X-LLMGW-Signature = base64url(HMAC-SHA256(key, METHOD "\n" PATH_WITH_QUERY
 * "\n" TIMESTAMP "\n" NONCE "\n" hex(SHA-256(BODY))))), in three steps like gw_auth_*:
 * begin (worker) returns 0 when the credential is not a subject token (use gw_auth_begin), 1
 * with *out the check to run, -1 when it answered a refusal (missing_signature,
 * invalid_subject_token, invalid_signature, stale_timestamp: ±300 s, origin_required);
 * lookup (store work, a write) finds the session, checks its expiry, the signature
 * (constant-time) and the Origin (origin_mismatch), burns the nonce in the same commit as
 * nothing else (nonce_reused), and fills key with the record the request runs as: its app
 * client (row id negated), the client's allowlists within the org's policy, the subject as
 * its name; end answers a refusal (-1) or adds the CORS header for the session's origin (0). */
struct gw_session_auth;
struct gw_store;
struct gw_key_rec;
int gw_session_begin(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                     struct gw_session_auth **out);
int gw_session_lookup(struct gw_store *s, struct gw_session_auth *sa, struct gw_key_rec *key);
int gw_session_end(struct evhttp_request *req, const char *rid, int rc,
                   const struct gw_session_auth *sa);
void gw_session_auth_free(struct gw_session_auth *sa);
/* The key record a subject of app client client_id runs as (its allowlists, its org's
 * policy): 0, GW_EDENIED (no such client, revoked or not approved) or the store's error.
 * Subject sessions use it, and the in-process API for a subject the host vouches for. */
int gw_subject_key(struct gw_store *s, const char *client_id, const char *subject,
                   int64_t created_ms, struct gw_key_rec *key);

/* Answer req if path is one of the routes above (1), else leave it (0). */
int gw_sessions_route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                      const char *path);

#endif
