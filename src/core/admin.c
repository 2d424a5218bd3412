/*
 * core/admin — the admin plane's HTTP side: one route table for every /admin/v1/ route (see
 * admin.h), the role check, one store job per request (the key's lookup, the operation and its
 * audit entry together on a store thread), the answer on the worker.
 *
 * The body is read and checked on the worker; a bad body is answered 400 only once the key is
 * known to be good, so that an unauthenticated caller learns nothing but 401.
 */
#include "core/admin.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "core/answer.h"
#include "core/conversations.h"
#include "core/gw_int.h"
#include "http/reply.h"
#include "store/jobs.h"
#include "util/json.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/util.h"

#define PARAM_MAX 64

/* Who may use a route: an org_admin (on its own org's objects) and the superadmin, or the
 * superadmin only. A member key is refused every admin route (403). */
enum who { ADMINS, SUPER, SUPER_ON_VISIBLE /* the superadmin's action on an object an org_admin
                                                * may see: another org's answers 404 first */ };

struct route {
    enum evhttp_cmd_type method;
    const char *path;  /* "{}" stands for the one parameter: an id or a slug */
    enum who who;
    const char *audit; /* a change: the action its audit entry records */
    gw_admin_fn fn;    /* on a store thread */
    /* or a route that answers by itself (its own auth, a streamed body) */
    int (*http)(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                const char *path);
};

static const struct route routes[] = {
    {EVHTTP_REQ_GET, "/admin/v1/orgs", ADMINS, NULL, gw_admin_orgs_list, NULL},
    {EVHTTP_REQ_POST, "/admin/v1/orgs", SUPER, "org.create", gw_admin_orgs_create, NULL},
    {EVHTTP_REQ_GET, "/admin/v1/orgs/{}", ADMINS, NULL, gw_admin_orgs_get, NULL},
    {EVHTTP_REQ_PATCH, "/admin/v1/orgs/{}", ADMINS, "org.update", gw_admin_orgs_patch, NULL},
    {EVHTTP_REQ_GET, "/admin/v1/keys", ADMINS, NULL, gw_admin_keys_list, NULL},
    {EVHTTP_REQ_POST, "/admin/v1/keys", ADMINS, "key.create", gw_admin_keys_create, NULL},
    {EVHTTP_REQ_GET, "/admin/v1/keys/{}", ADMINS, NULL, gw_admin_keys_get, NULL},
    {EVHTTP_REQ_PATCH, "/admin/v1/keys/{}", ADMINS, "key.update", gw_admin_keys_patch, NULL},
    {EVHTTP_REQ_DELETE, "/admin/v1/keys/{}", ADMINS, "key.revoke", gw_admin_keys_revoke, NULL},
    {EVHTTP_REQ_POST, "/admin/v1/keys/{}/rotate", ADMINS, "key.rotate", gw_admin_keys_rotate,
     NULL},
    {EVHTTP_REQ_GET, "/admin/v1/app-clients", ADMINS, NULL, gw_admin_app_clients_list, NULL},
    {EVHTTP_REQ_POST, "/admin/v1/app-clients", ADMINS, "app_client.create",
     gw_admin_app_clients_create, NULL},
    {EVHTTP_REQ_GET, "/admin/v1/app-clients/{}", ADMINS, NULL, gw_admin_app_clients_get, NULL},
    {EVHTTP_REQ_PATCH, "/admin/v1/app-clients/{}", ADMINS, "app_client.update",
     gw_admin_app_clients_patch, NULL},
    {EVHTTP_REQ_DELETE, "/admin/v1/app-clients/{}", ADMINS, "app_client.revoke",
     gw_admin_app_clients_revoke, NULL},
    {EVHTTP_REQ_POST, "/admin/v1/app-clients/{}/approve", SUPER_ON_VISIBLE, "app_client.approve",
     gw_admin_app_clients_approve, NULL},
    {EVHTTP_REQ_GET, "/admin/v1/usage", ADMINS, NULL, gw_admin_usage_query, NULL},
    {EVHTTP_REQ_GET, "/admin/v1/usage/export", ADMINS, NULL, NULL, gw_usage_export_route},
    {EVHTTP_REQ_GET, "/admin/v1/audit", ADMINS, NULL, gw_admin_audit_list, NULL},
    {EVHTTP_REQ_GET, "/admin/v1/providers", SUPER, NULL, gw_admin_providers_list, NULL},
    {EVHTTP_REQ_GET, "/admin/v1/conversations/export", ADMINS, NULL, NULL,
     gw_conversations_route},
    {EVHTTP_REQ_GET, "/admin/v1/health", SUPER, NULL, gw_admin_health, NULL},
    {EVHTTP_REQ_GET, "/admin/v1/metrics", SUPER, NULL, NULL, gw_metrics_route},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_PUT: return "PUT";
    default: return "OTHER";
    }
}

/* Does path match the template t? The parameter (1 to PARAM_MAX-1 characters of ids and
 * slugs) goes to param. */
static int path_match(const char *t, const char *path, char *param)
{
    const char *brace = strstr(t, "{}");
    if (brace == NULL)
        return strcmp(t, path) == 0;
    size_t pre = (size_t)(brace - t);
    if (strncmp(t, path, pre) != 0)
        return 0;
    const char *p = path + pre;
    size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.");
    if (n == 0 || n >= PARAM_MAX || strcmp(p + n, brace + 2) != 0)
        return 0;
    memcpy(param, p, n);
    param[n] = '\0';
    return 1;
}

json_t *gw_admin_routes_json(void)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < NROUTES; i++)
        json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:b,s:o}", "method",
                                           method_name(routes[i].method), "path", routes[i].path,
                                           "who", routes[i].who == ADMINS ? "org_admin"
                                                                          : "superadmin",
                                           "object", strstr(routes[i].path, "{}") != NULL,
                                           "audit", routes[i].audit ? json_string(routes[i].audit)
                                                                    : json_null()));
    return a;
}

int gw_origin_ok(const char *o)
{
    const char *h = strncmp(o, "https://", 8) == 0 ? o + 8 : strncmp(o, "http://", 7) == 0 ? o + 7
                                                                                         : NULL;
    if (h == NULL || strlen(o) > 200)
        return 0;
    size_t n;
    if (*h == '[') {
        n = strspn(h + 1, "0123456789abcdefABCDEF:.");
        if (n == 0 || h[1 + n] != ']')
            return 0;
        n += 2;
    } else {
        n = strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");
        if (n == 0 || h[0] == '.' || h[0] == '-')
            return 0;
    }
    const char *p = h + n;
    if (*p == ':') {
        size_t d = strspn(p + 1, "0123456789");
        if (d == 0 || d > 5 || atoi(p + 1) == 0 || atoi(p + 1) > 65535)
            return 0;
        p += 1 + d;
    }
    return *p == '\0';
}

/* The role check, the operation and its audit entry: the same for the API and the CLI. */
static void run_route(const struct route *r, struct gw_admin_ctx *x, const char *bad)
{
    if (r->who == SUPER && !x->super) {
        gw_answer_fail(&x->an, 403, "permission_error", "superadmin_only",
                       "only the superadmin key may do this");
        return;
    }
    if (!x->super && strcmp(x->who->role, "org_admin") != 0) {
        gw_answer_fail(&x->an, 403, "permission_error", "admin_only",
                       "the admin plane takes an org_admin or the superadmin key");
        return;
    }
    if (bad != NULL && bad[0] != '\0') {
        gw_answer_fail(&x->an, 400, "invalid_request_error", "invalid_request", bad);
        return;
    }
    r->fn(x);
    if (x->an.status > 0 && x->an.status < 400 && x->au.set && r->audit != NULL) {
        int rc = gw_admin_audit_write(x, r->audit);
        if (rc != 0) /* a change without its audit entry is not reported done */
            gw_answer_store_failed(&x->an, "admin", x->rid, rc);
    }
    gw_answer_check(&x->an);
}

static const struct route *find_route(enum evhttp_cmd_type m, const char *path, char *param,
                                      char *allow, size_t allowsz)
{
    allow[0] = '\0';
    for (size_t i = 0; i < NROUTES; i++) {
        if (!path_match(routes[i].path, path, param))
            continue;
        if (routes[i].method == m)
            return &routes[i];
        if (strlen(allow) + 10 < allowsz) {
            if (allow[0] != '\0')
                strcat(allow, ", ");
            strcat(allow, method_name(routes[i].method));
        }
    }
    return NULL;
}

int gw_admin_cli(struct gw_store *s, const struct gw_config *cfg, const char *method,
                 const char *path, const char *query, json_t *body, int *status, json_t **out,
                 char *err, size_t errsz)
{
    static const struct {
        const char *name;
        enum evhttp_cmd_type m;
    } methods[] = {{"GET", EVHTTP_REQ_GET}, {"POST", EVHTTP_REQ_POST},
                   {"PATCH", EVHTTP_REQ_PATCH}, {"DELETE", EVHTTP_REQ_DELETE}};
    enum evhttp_cmd_type m = EVHTTP_REQ_GET;
    char param[PARAM_MAX] = "", allow[64];
    struct gw_key_rec cli;
    struct evkeyvalq q;
    int have_q = 0;

    *out = NULL;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(method, methods[i].name) == 0)
            m = methods[i].m;
    const struct route *r = find_route(m, path, param, allow, sizeof(allow));
    if (r == NULL || r->fn == NULL) {
        snprintf(err, errsz, "no admin operation %s %s", method, path);
        return GW_ENOTFOUND;
    }
    if (query != NULL && query[0] != '\0') {
        if (evhttp_parse_query_str(query, &q) != 0) {
            snprintf(err, errsz, "invalid query '%s'", query);
            return GW_EINVAL;
        }
        have_q = 1;
    }
    /* the command line is the operator of the machine: it acts as the superadmin, and its
     * audit entries say "cli" */
    memset(&cli, 0, sizeof(cli));
    gw_strlcpy(cli.key_id, "cli", sizeof(cli.key_id));
    gw_strlcpy(cli.role, "superadmin", sizeof(cli.role));
    struct gw_admin_ctx x = {.s = s, .cfg = cfg, .who = &cli, .super = 1, .rid = "cli",
                             .id = param, .q = have_q ? &q : NULL, .body = body};
    run_route(r, &x, NULL);
    *status = x.an.status;
    if (x.an.status >= 400)
        snprintf(err, errsz, "%s", x.an.msg);
    *out = x.an.out;
    x.an.out = NULL;
    gw_admin_ctx_cleanup(&x);
    if (have_q)
        evhttp_clear_headers(&q);
    return 0;
}

/* ---- one request ---- */

struct admin_job {
    struct gw_store_job job;
    struct gw_worker *w;
    struct evhttp_request *req;
    char rid[72];
    unsigned char hash[32];
    const struct route *r;
    char param[PARAM_MAX];
    struct evkeyvalq q;
    int have_q;
    char bad[200]; /* non-empty: answer 400 with this, once the key is good */
    json_t *body;
    /* on the store thread */
    int auth_rc;
    struct gw_key_rec key;
    struct gw_admin_ctx x;
};

static void admin_run(struct gw_store_job *j, struct gw_store *s)
{
    struct admin_job *a = (struct admin_job *)j;
    struct gw_admin_ctx *x = &a->x;
    if ((a->auth_rc = gw_auth_lookup(s, a->hash, &a->key)) != 0)
        return;
    x->s = s;
    x->cfg = &a->w->gw->cfg;
    x->gw = a->w->gw;
    x->who = &a->key;
    x->super = strcmp(a->key.role, "superadmin") == 0;
    x->rid = a->rid;
    x->id = a->param;
    x->q = a->have_q ? &a->q : NULL;
    x->body = a->body;
    run_route(a->r, x, a->bad);
}

static void admin_free(struct admin_job *a)
{
    OPENSSL_cleanse(a->hash, sizeof(a->hash));
    gw_admin_ctx_cleanup(&a->x);
    json_decref(a->body);
    if (a->have_q)
        evhttp_clear_headers(&a->q);
    OPENSSL_cleanse(&a->key, sizeof(a->key));
    gw_free(a);
}

static void admin_done(struct gw_store_job *j)
{
    struct admin_job *a = (struct admin_job *)j;
    if (gw_auth_end(a->req, a->rid, a->auth_rc, &a->key) == 0)
        gw_answer_send(&a->x.an, a->req, a->rid, j->batch_rc);
    admin_free(a);
}

int gw_admin_route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                   const char *path)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    char param[PARAM_MAX] = "", allow[64];

    if (strncmp(path, "/admin/v1/", 10) != 0)
        return 0;
    const struct route *r = find_route(m, path, param, allow, sizeof(allow));
    if (r == NULL) {
        if (allow[0] != '\0')
            gw_reply_method_not_allowed(req, rid, allow);
        else
            gw_reply_error(req, 404, "invalid_request_error", "not_found", "no such endpoint",
                           rid, 0);
        return 1;
    }
    if (r->http != NULL)
        return r->http(w, req, rid, path);
    struct admin_job *a = gw_calloc(1, sizeof(*a));
    if (a == NULL) {
        gw_reply_error(req, 503, "service_unavailable", "overloaded", "out of memory", rid, 1);
        return 1;
    }
    if (gw_auth_begin(w, req, rid, a->hash) != 0) {
        gw_free(a);
        return 1;
    }
    a->w = w;
    a->req = req;
    a->r = r;
    gw_strlcpy(a->rid, rid, sizeof(a->rid));
    gw_strlcpy(a->param, param, sizeof(a->param));
    const char *uri = evhttp_request_get_uri(req);
    const char *qs = strchr(uri, '?');
    if (qs != NULL) {
        if (evhttp_parse_query_str(qs + 1, &a->q) != 0)
            snprintf(a->bad, sizeof(a->bad), "the query string is not valid");
        else
            a->have_q = 1;
    }
    if (m == EVHTTP_REQ_POST || m == EVHTTP_REQ_PATCH) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        /* a POST without a body is an empty object (rotate, approve) */
        if (evbuffer_get_length(in) == 0)
            a->body = json_object();
        else if ((a->body = gw_answer_body(req, a->bad, sizeof(a->bad))) == NULL &&
                 a->bad[0] == '\0')
            snprintf(a->bad, sizeof(a->bad), "the body must be a JSON object");
    }
    a->job.run = admin_run;
    a->job.done = admin_done;
    a->job.writes = r->audit != NULL;
    a->job.heavy = 1; /* reads: off the worker's loop */
    gw_store_submit(w->exec, &a->job);
    return 1;
}
