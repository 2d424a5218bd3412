/*
 * core/admin — the admin plane's routes for browser app clients (INTERFACE.md, "Admin plane"):
 *   GET  /admin/v1/app-clients[?limit=&cursor=&org=]   list (paginated, oldest first)
 *   POST /admin/v1/app-clients                         register {name, origins, allowed_providers?,
 *                                                      allowed_models?, session_ttl_seconds?, org?}
 *   GET  /admin/v1/app-clients/{id}                    one
 *   POST /admin/v1/app-clients/{id}/approve            approve (superadmin only)
 *   DELETE /admin/v1/app-clients/{id}                  revoke
 * An org_admin key works on its own org's clients (another org's answer 404); the superadmin
 * key on every org's (it names the org when it registers one).
 */
#ifndef GW_CORE_ADMIN_H
#define GW_CORE_ADMIN_H

#include <event2/http.h>

struct gw_worker;

/* An origin as registered: scheme "http" or "https", a host of letters, digits, dots and
 * dashes (or a bracketed IPv6 address), an optional port; nothing else (no path, no trailing
 * slash, no user info). */
int gw_origin_ok(const char *o);

/* Answer req if path is one of the routes above (1), else leave it (0). */
int gw_admin_route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                   const char *path);

#endif
