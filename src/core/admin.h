/*
 * core/admin — the admin plane's routes (INTERFACE.md, "Admin plane"), one table for all of
 * /admin/v1/: orgs, keys, app clients, usage (query and export), the audit trail, providers,
 * conversations' export, health and metrics. The operations themselves are in src/admin; this
 * is their HTTP side, and their command-line side (gw_admin_cli) goes through the same checks.
 * An org_admin key acts on its own org's objects (another org's answer 404, as if absent); the
 * superadmin key on every org's; a member key is refused (403 admin_only), and superadmin-only
 * routes refuse an org_admin (403 superadmin_only).
 */
#ifndef GW_CORE_ADMIN_H
#define GW_CORE_ADMIN_H

#include <event2/http.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

struct gw_worker;
struct gw_store;
struct gw_config;
struct gw_admin_ctx;

/* An origin as registered: scheme "http" or "https", a host of letters, digits, dots and
 * dashes (or a bracketed IPv6 address), an optional port; nothing else (no path, no trailing
 * slash, no user info). */
int gw_origin_ok(const char *o);

/* Answer req if path is under /admin/v1/ (1), else leave it (0). */
int gw_admin_route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                   const char *path);

/* The route table as JSON: [{method, path ("{}": the parameter), who: "org_admin" |
 * "superadmin", audit: the action recorded or null}] (llmgw admin routes; the tests sweep it). */
json_t *gw_admin_routes_json(void);

/* Run the admin operation METHOD path?query with body (borrowed; NULL: none) as the command
 * line's operator (the superadmin, audited as "cli"): *status and *out (new; NULL on refusal,
 * with why in err). GW_ENOTFOUND when no operation has that route (err says so). */
int gw_admin_cli(struct gw_store *s, const struct gw_config *cfg, const char *method,
                 const char *path, const char *query, json_t *body, int *status, json_t **out,
                 char *err, size_t errsz);

/* The usage export of query ("format=csv|jsonl&from=&to=&org=&key=&model=&provider=") to out,
 * as the command line's operator: the same filter, audit entry and pages as the API's. 0, or
 * an error with why in err. */
int gw_usage_export_cli(struct gw_store *s, const struct gw_config *cfg, const char *query,
                        FILE *out, char *err, size_t errsz);

/* Routes answered by their own modules: the usage export (core/usage_export.c), metrics and
 * health (core/endpoints.c). */
int gw_usage_export_route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                          const char *path);
int gw_metrics_route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                     const char *path);
void gw_admin_health(struct gw_admin_ctx *x);

#endif
