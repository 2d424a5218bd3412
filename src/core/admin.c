/*
 * core/admin — the admin plane's browser app clients (see admin.h).
 *
 * One store job per request: the key's lookup, the permission check and the store work run
 * together on a store thread, and the answer (built there) goes out on the worker. The body is
 * read and checked on the worker first; a bad body is answered 400 only once the key is known
 * to be good, so that an unauthenticated caller learns nothing but 401.
 *
 * Permissions: an org_admin sees and changes its own org's clients only (another org's are
 * answered 404, as if absent); the superadmin sees every org's and alone approves; a member key
 * is refused (403).
 */
#include "core/admin.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/answer.h"
#include "core/gw_int.h"
#include "http/reply.h"
#include "store/jobs.h"
#include "util/json.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/util.h"

#define PREFIX "/admin/v1/app-clients"
#define MAX_ORIGINS 16
#define TTL_DEFAULT_S 900
#define TTL_MIN_S 60
#define TTL_MAX_S 86400
#define LIST_DEFAULT 50
#define LIST_MAX 200

enum op { OP_LIST, OP_CREATE, OP_GET, OP_REVOKE, OP_APPROVE };

struct admin_job {
    struct gw_store_job job;
    struct gw_worker *w;
    struct evhttp_request *req;
    char rid[72];
    unsigned char hash[32];
    enum op op;
    char client_id[40];
    /* what the request asked, checked on the worker */
    char bad[200]; /* non-empty: answer 400 with this, once the key is good */
    struct gw_app_client in;
    char org[64]; /* create by the superadmin, or a list's filter */
    int64_t after;
    int limit;
    /* on the store thread */
    int auth_rc;
    struct gw_key_rec key;
    struct gw_answer an;
};

/* ---- the request ---- */

static const char *const provider_names[] = {"anthropic", "openai", "gemini", "xai",
                                             "perplexity"};

static int is_provider(const char *s)
{
    for (size_t i = 0; i < sizeof(provider_names) / sizeof(provider_names[0]); i++)
        if (strcmp(s, provider_names[i]) == 0)
            return 1;
    return 0;
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

static int model_id_ok(const char *m)
{
    size_t n = strlen(m);
    return n > 0 && n <= 128 &&
           strspn(m, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/-@") == n;
}

/* A JSON array of strings, each accepted by ok, joined with commas into dst (dstsz). */
static int join_list(const json_t *arr, int (*ok)(const char *), size_t max_items, char *dst,
                     size_t dstsz, const char *what, char *bad, size_t badsz)
{
    size_t i, len = 0;
    json_t *v;
    dst[0] = '\0';
    if (!json_is_array(arr) || json_array_size(arr) > max_items) {
        snprintf(bad, badsz, "%s must be an array of at most %zu strings", what, max_items);
        return -1;
    }
    json_array_foreach(arr, i, v) {
        const char *s = json_string_value(v);
        if (s == NULL || !ok(s)) {
            snprintf(bad, badsz, "%s[%zu] is not valid", what, i);
            return -1;
        }
        size_t n = strlen(s);
        if (len + n + 2 > dstsz) {
            snprintf(bad, badsz, "%s is too long", what);
            return -1;
        }
        if (len > 0)
            dst[len++] = ',';
        memcpy(dst + len, s, n + 1);
        len += n;
    }
    return 0;
}

/* POST's body: {name, origins, allowed_providers?, allowed_models?, session_ttl_seconds?,
 * org?}; anything else is refused, so that a misspelt member is not silently ignored. */
static void parse_create(struct admin_job *a)
{
    json_t *b = gw_answer_body(a->req, a->bad, sizeof(a->bad));
    const char *k;
    json_t *v;

    if (b == NULL)
        return;
    a->in.session_ttl_s = TTL_DEFAULT_S;
    json_object_foreach(b, k, v) {
        if (strcmp(k, "name") == 0) {
            const char *s = json_string_value(v);
            if (s == NULL || s[0] == '\0' || strlen(s) >= sizeof(a->in.name)) {
                snprintf(a->bad, sizeof(a->bad), "name must be a string of 1 to %zu characters",
                         sizeof(a->in.name) - 1);
                break;
            }
            gw_strlcpy(a->in.name, s, sizeof(a->in.name));
        } else if (strcmp(k, "origins") == 0) {
            if (join_list(v, gw_origin_ok, MAX_ORIGINS, a->in.origins, sizeof(a->in.origins),
                          "origins (each scheme://host[:port])", a->bad, sizeof(a->bad)) != 0)
                break;
        } else if (strcmp(k, "allowed_providers") == 0) {
            if (join_list(v, is_provider, 5, a->in.providers, sizeof(a->in.providers),
                          "allowed_providers", a->bad, sizeof(a->bad)) != 0)
                break;
        } else if (strcmp(k, "allowed_models") == 0) {
            if (join_list(v, model_id_ok, 64, a->in.models, sizeof(a->in.models),
                          "allowed_models", a->bad, sizeof(a->bad)) != 0)
                break;
        } else if (strcmp(k, "session_ttl_seconds") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < TTL_MIN_S ||
                json_integer_value(v) > TTL_MAX_S) {
                snprintf(a->bad, sizeof(a->bad), "session_ttl_seconds must be an integer from "
                         "%d to %d", TTL_MIN_S, TTL_MAX_S);
                break;
            }
            a->in.session_ttl_s = json_integer_value(v);
        } else if (strcmp(k, "org") == 0) {
            const char *s = json_string_value(v);
            if (s == NULL || s[0] == '\0' || strlen(s) >= sizeof(a->org)) {
                snprintf(a->bad, sizeof(a->bad), "org must be an org's slug");
                break;
            }
            gw_strlcpy(a->org, s, sizeof(a->org));
        } else {
            snprintf(a->bad, sizeof(a->bad), "unknown member '%.64s'", k);
            break;
        }
    }
    if (a->bad[0] == '\0' && a->in.name[0] == '\0')
        snprintf(a->bad, sizeof(a->bad), "name is required");
    else if (a->bad[0] == '\0' && a->in.origins[0] == '\0')
        snprintf(a->bad, sizeof(a->bad), "origins must list at least one origin");
    json_decref(b);
}

/* GET's query: limit, cursor (an opaque position from next_cursor), org (superadmin). */
static void parse_list(struct admin_job *a)
{
    struct evkeyvalq q;
    const char *uri = evhttp_request_get_uri(a->req);
    const char *qs = strchr(uri, '?');
    a->limit = LIST_DEFAULT;
    if (qs == NULL)
        return;
    if (evhttp_parse_query_str(qs + 1, &q) != 0) {
        snprintf(a->bad, sizeof(a->bad), "the query string is not valid");
        return;
    }
    const char *limit = evhttp_find_header(&q, "limit");
    const char *cursor = evhttp_find_header(&q, "cursor");
    const char *org = evhttp_find_header(&q, "org");
    char *end;
    if (limit != NULL) {
        long n = strtol(limit, &end, 10);
        if (*limit == '\0' || *end != '\0' || n < 1 || n > LIST_MAX)
            snprintf(a->bad, sizeof(a->bad), "limit must be from 1 to %d", LIST_MAX);
        else
            a->limit = (int)n;
    }
    if (cursor != NULL) {
        long long n = strtoll(cursor, &end, 10);
        if (*cursor == '\0' || *end != '\0' || n < 0)
            snprintf(a->bad, sizeof(a->bad), "cursor is not one this gateway gave");
        else
            a->after = n;
    }
    if (org != NULL)
        gw_strlcpy(a->org, org, sizeof(a->org));
    evhttp_clear_headers(&q);
}

/* ---- the answer ---- */

static json_t *csv_array(const char *csv)
{
    json_t *arr = json_array();
    while (arr != NULL && csv[0] != '\0') {
        size_t n = strcspn(csv, ",");
        if (json_array_append_new(arr, json_stringn(csv, n)) != 0) {
            json_decref(arr);
            return NULL;
        }
        csv += n + (csv[n] == ',');
    }
    return arr;
}

static json_t *seconds_or_null(int on, int64_t ms) { return on ? json_integer(ms / 1000) : json_null(); }

static json_t *client_json(const struct gw_app_client *c)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:I,s:b,s:o,s:b,s:o,s:I}", "id", c->client_id,
                     "object", "app_client", "org", c->org_slug, "name", c->name, "origins",
                     csv_array(c->origins), "allowed_providers", csv_array(c->providers),
                     "allowed_models", csv_array(c->models), "session_ttl_seconds",
                     (json_int_t)c->session_ttl_s, "approved", c->approved, "approved_at",
                     seconds_or_null(c->approved, c->approved_ms), "revoked", c->revoked,
                     "revoked_at", seconds_or_null(c->revoked, c->revoked_ms), "created_at",
                     (json_int_t)(c->created_ms / 1000));
}

static void fail(struct admin_job *a, int status, const char *type, const char *code,
                 const char *msg)
{
    gw_answer_fail(&a->an, status, type, code, msg);
}

static void store_failed(struct admin_job *a, int rc)
{
    gw_answer_store_failed(&a->an, "admin", a->rid, rc);
}

static void not_found(struct admin_job *a)
{
    fail(a, 404, "invalid_request_error", "not_found", "no such app client");
}

struct lister {
    json_t *data;
    int n, limit;
    int64_t last;
};

static int list_cb(void *arg, const struct gw_app_client *c)
{
    struct lister *l = arg;
    if (l->n == l->limit) { /* one more than the page: there is a next one */
        l->n++;
        return 1;
    }
    json_array_append_new(l->data, client_json(c));
    l->n++;
    l->last = c->id;
    return 0;
}

static void do_list(struct admin_job *a, struct gw_store *s, int super)
{
    int64_t org_id = a->key.org_id;
    if (super && a->org[0] != '\0') {
        struct gw_org o;
        int rc = gw_store_org_get(s, a->org, &o);
        if (rc != 0) {
            if (rc == GW_ENOTFOUND)
                fail(a, 404, "invalid_request_error", "not_found", "no such org");
            else
                store_failed(a, rc);
            return;
        }
        org_id = o.id;
    } else if (super) {
        org_id = 0; /* every org */
    }
    struct lister l = {json_array(), 0, a->limit, 0};
    int rc = l.data != NULL ? gw_store_app_client_list(s, org_id, a->after, a->limit + 1,
                                                       list_cb, &l)
                            : GW_ENOMEM;
    if (rc != 0) {
        json_decref(l.data);
        store_failed(a, rc);
        return;
    }
    char cursor[24];
    snprintf(cursor, sizeof(cursor), "%lld", (long long)l.last);
    a->an.out = json_pack("{s:s,s:o,s:o}", "object", "list", "data", l.data, "next_cursor",
                       l.n > l.limit ? json_string(cursor) : json_null());
    a->an.status = 200;
}

static void do_create(struct admin_job *a, struct gw_store *s, int super)
{
    struct gw_app_client *c = &a->in;
    if (super && a->org[0] == '\0') {
        fail(a, 400, "invalid_request_error", "invalid_request",
             "the superadmin names the app client's org (\"org\": slug)");
        return;
    }
    if (super || a->org[0] != '\0') {
        struct gw_org o;
        int rc = gw_store_org_get(s, a->org, &o);
        if (rc == GW_ENOTFOUND || (rc == 0 && !super && o.id != a->key.org_id)) {
            fail(a, 404, "invalid_request_error", "not_found", "no such org");
            return;
        }
        if (rc != 0) {
            store_failed(a, rc);
            return;
        }
        c->org_id = o.id;
    } else {
        c->org_id = a->key.org_id;
    }
    int rc = gw_random_id(c->client_id, sizeof(c->client_id), "ac_", 12);
    if (rc == 0)
        rc = gw_store_app_client_insert(s, c);
    if (rc == 0)
        rc = gw_store_app_client_get(s, c->client_id, c);
    if (rc != 0) {
        store_failed(a, rc);
        return;
    }
    GW_LOG_INFO("admin", "req=%s app client %s created for org %s by key %s", a->rid,
                c->client_id, c->org_slug, a->key.key_id);
    a->an.out = client_json(c);
    a->an.status = 201;
}

/* get, revoke, approve: one client, visible to its org's admins and the superadmin */
static void do_one(struct admin_job *a, struct gw_store *s, int super)
{
    struct gw_app_client c;
    int rc = gw_store_app_client_get(s, a->client_id, &c);
    if (rc == GW_ENOTFOUND || (rc == 0 && !super && c.org_id != a->key.org_id)) {
        not_found(a);
        return;
    }
    if (rc != 0) {
        store_failed(a, rc);
        return;
    }
    if (a->op == OP_APPROVE && !super) {
        fail(a, 403, "permission_error", "superadmin_only",
             "only the superadmin key may approve an app client");
        return;
    }
    if (a->op != OP_GET) {
        int64_t now = gw_now_ms();
        rc = a->op == OP_APPROVE ? gw_store_app_client_approve(s, a->client_id, now)
                                 : gw_store_app_client_revoke(s, a->client_id, now);
        if (rc == GW_EINVAL) {
            fail(a, 409, "invalid_request_error", "app_client_revoked",
                 "a revoked app client cannot be approved");
            return;
        }
        if (rc == 0)
            rc = gw_store_app_client_get(s, a->client_id, &c);
        if (rc != 0) {
            store_failed(a, rc);
            return;
        }
        GW_LOG_INFO("admin", "req=%s app client %s %s by key %s", a->rid, c.client_id,
                    a->op == OP_APPROVE ? "approved" : "revoked", a->key.key_id);
    }
    a->an.out = client_json(&c);
    a->an.status = 200;
}

static void admin_run(struct gw_store_job *j, struct gw_store *s)
{
    struct admin_job *a = (struct admin_job *)j;
    if ((a->auth_rc = gw_auth_lookup(s, a->hash, &a->key)) != 0)
        return;
    int super = strcmp(a->key.role, "superadmin") == 0;
    if (!super && strcmp(a->key.role, "org_admin") != 0) {
        fail(a, 403, "permission_error", "admin_only",
             "the admin plane takes an org_admin or the superadmin key");
        return;
    }
    if (a->bad[0] != '\0') {
        fail(a, 400, "invalid_request_error", "invalid_request", a->bad);
        return;
    }
    switch (a->op) {
    case OP_LIST:
        do_list(a, s, super);
        break;
    case OP_CREATE:
        do_create(a, s, super);
        break;
    default:
        do_one(a, s, super);
        break;
    }
    gw_answer_check(&a->an);
}

static void admin_done(struct gw_store_job *j)
{
    struct admin_job *a = (struct admin_job *)j;
    OPENSSL_cleanse(a->hash, sizeof(a->hash));
    if (gw_auth_end(a->req, a->rid, a->auth_rc, &a->key) == 0)
        gw_answer_send(&a->an, a->req, a->rid, j->batch_rc);
    json_decref(a->an.out);
    gw_free(a);
}

/* ---- routing ---- */

static int client_id_ok(const char *s, size_t n)
{
    return n == 27 && strncmp(s, "ac_", 3) == 0 && strspn(s + 3, "0123456789abcdef") == 24;
}

static void method_not_allowed(struct evhttp_request *req, const char *rid, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    gw_reply_error(req, 405, "invalid_request_error", "method_not_allowed",
                   "method not allowed on this endpoint", rid, 0);
}

int gw_admin_route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                   const char *path)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    size_t plen = strlen(PREFIX);
    enum op op;
    char id[40] = "";

    if (strncmp(path, PREFIX, plen) != 0 || (path[plen] != '\0' && path[plen] != '/'))
        return 0;
    const char *rest = path + plen;
    if (*rest == '\0') {
        if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_POST) {
            method_not_allowed(req, rid, "GET, POST");
            return 1;
        }
        op = m == EVHTTP_REQ_GET ? OP_LIST : OP_CREATE;
    } else {
        rest++;
        size_t n = strcspn(rest, "/");
        const char *tail = rest + n;
        if (!client_id_ok(rest, n) || (*tail != '\0' && strcmp(tail, "/approve") != 0)) {
            gw_reply_error(req, 404, "invalid_request_error", "not_found", "no such endpoint",
                           rid, 0);
            return 1;
        }
        memcpy(id, rest, n);
        id[n] = '\0';
        if (*tail != '\0') {
            if (m != EVHTTP_REQ_POST) {
                method_not_allowed(req, rid, "POST");
                return 1;
            }
            op = OP_APPROVE;
        } else if (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_DELETE) {
            op = m == EVHTTP_REQ_GET ? OP_GET : OP_REVOKE;
        } else {
            method_not_allowed(req, rid, "GET, DELETE");
            return 1;
        }
    }
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
    a->op = op;
    gw_strlcpy(a->rid, rid, sizeof(a->rid));
    gw_strlcpy(a->client_id, id, sizeof(a->client_id));
    if (op == OP_CREATE)
        parse_create(a);
    else if (op == OP_LIST)
        parse_list(a);
    a->job.run = admin_run;
    a->job.done = admin_done;
    a->job.writes = op != OP_LIST && op != OP_GET;
    gw_store_submit(w->exec, &a->job);
    return 1;
}
