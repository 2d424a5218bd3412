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

/* Answer req if path is one of the routes above (1), else leave it (0). */
int gw_sessions_route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                      const char *path);

#endif
