/*
 * core/endpoints — request routing by method and path, authentication, and the small
 * endpoints (health, models). Chat requests go to the pipeline.
 *
 * Invariant: every answer carries X-Request-Id; a caller's well-formed X-Request-Id is kept.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <string.h>
#include <strings.h>

#include "core/admin.h"
#include "admin/admin.h"
#include "llmgw.h"
#include "core/conversations.h"
#include "core/call.h"
#include "core/client.h"
#include "core/gw_int.h"
#include "core/request.h"
#include "core/sessions.h"
#include "core/web.h"
#include "http/reply.h"
#include "policy/keys.h"
#include "store/jobs.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/mem.h"
#include "util/util.h"

int gw_provider_configured(const struct gw *gw, const char *provider)
{
    for (int i = 0; i < GW_NPROVIDERS; i++) {
        const struct gw_provider_conf *p = &gw->cfg.providers[i];
        if (strcmp(p->name, provider) == 0)
            return p->api_key != NULL && p->api_key[0] != '\0';
    }
    return 0;
}

static int configured_cb(void *arg, const char *provider)
{
    return gw_provider_configured(arg, provider);
}

/* The raw key from X-API-Key or Authorization: Bearer; NULL if neither. */
static const char *presented_key(struct gw_client *cl)
{
    const char *k = cl->ops->header(cl, "X-API-Key", NULL);
    if (k != NULL)
        return k;
    const char *auth = cl->ops->header(cl, "Authorization", NULL);
    if (auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0) {
        auth += 7;
        while (*auth == ' ')
            auth++;
        return auth;
    }
    return NULL;
}

int gw_auth_client_begin(struct gw_worker *w, struct gw_client *cl, const char *request_id,
                         unsigned char hash[32])
{
    const char *raw = presented_key(cl);

    if (raw == NULL || raw[0] == '\0') {
        gw_client_reply_error(cl, 401, "authentication_error", "missing_api_key",
                              "an API key is required (X-API-Key or Authorization: Bearer)",
                              request_id, 0);
        return -1;
    }
    if (cl->ops->header(cl, "Origin", NULL) != NULL) { /* a browser showing a raw key */
        if (w->gw->cfg.production) {
            gw_client_reply_error(cl, 403, "permission_error", "browser_key_forbidden",
                                  "browsers must use subject sessions, not raw API keys",
                                  request_id, 0);
            return -1;
        }
        GW_LOG_WARN("auth", "req=%s a raw API key came with an Origin header (from a browser?): "
                    "allowed in development mode, refused in production", request_id);
    }
    size_t len = strlen(raw);
    if (!gw_key_is_wellformed(raw, len)) {
        gw_client_reply_error(cl, 401, "authentication_error", "invalid_api_key",
                              "the API key is not valid", request_id, 0);
        return -1;
    }
    gw_key_hash(raw, len, hash);
    return 0;
}

int gw_auth_begin(struct gw_worker *w, struct evhttp_request *req, const char *request_id,
                  unsigned char hash[32])
{
    struct gw_client cl;
    gw_client_evhttp_init(&cl, req);
    return gw_auth_client_begin(w, &cl, request_id, hash);
}

int gw_auth_check(int rc, const struct gw_key_rec *key)
{
    if (rc != 0)
        return rc;
    /* a rotated key's previous secret works until its grace period ends */
    if (key->revoked || (key->via_prev && gw_now_ms() >= key->prev_expires_ms))
        return GW_ENOTFOUND;
    return 0;
}

int gw_auth_lookup(struct gw_store *s, const unsigned char hash[32], struct gw_key_rec *key)
{
    return gw_auth_check(gw_store_key_by_hash(s, hash, key), key);
}

int gw_auth_client_end(struct gw_client *cl, const char *request_id, int rc,
                       const struct gw_key_rec *key)
{
    (void)key;
    if (rc == GW_ENOTFOUND) {
        gw_client_reply_error(cl, 401, "authentication_error", "invalid_api_key",
                              "the API key is not valid", request_id, 0);
        return -1;
    }
    if (rc != 0) {
        GW_LOG_ERROR("auth", "req=%s key lookup failed: %s", request_id, gw_strerror(rc));
        gw_client_reply_error(cl, 503, "service_unavailable", "store_unavailable",
                              "the gateway cannot check credentials right now", request_id, 1);
        return -1;
    }
    return 0;
}

int gw_auth_end(struct evhttp_request *req, const char *request_id, int rc,
                const struct gw_key_rec *key)
{
    struct gw_client cl;
    gw_client_evhttp_init(&cl, req);
    return gw_auth_client_end(&cl, request_id, rc, key);
}

static void authed_run(struct gw_store_job *j, struct gw_store *s)
{
    struct gw_authed *a = (struct gw_authed *)j;
    a->rc = gw_auth_lookup(s, a->hash, &a->key);
    if (a->rc == 0 && a->want_health && strcmp(a->key.role, "superadmin") == 0)
        a->health_rc = gw_store_health(s, gw_now_ms(), &a->health);
}

static void authed_done(struct gw_store_job *j)
{
    struct gw_authed *a = (struct gw_authed *)j;
    OPENSSL_cleanse(a->hash, sizeof(a->hash));
    if (gw_auth_end(a->req, a->rid, a->rc, &a->key) == 0)
        a->then(a);
    gw_free(a);
}

void gw_with_key(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                 void (*then)(struct gw_authed *a), int want_health)
{
    struct gw_authed *a = gw_calloc(1, sizeof(*a));
    if (a == NULL) {
        gw_reply_error(req, 503, "service_unavailable", "overloaded", "out of memory", rid, 1);
        return;
    }
    if (gw_auth_begin(w, req, rid, a->hash) != 0) {
        gw_free(a);
        return;
    }
    a->w = w;
    a->req = req;
    a->then = then;
    a->want_health = want_health;
    gw_strlcpy(a->rid, rid, sizeof(a->rid));
    a->job.run = authed_run;
    a->job.done = authed_done;
    gw_store_submit(w->exec, &a->job);
}

static void models_then(struct gw_authed *a)
{
    json_t *list = gw_catalog_to_json(a->w->gw->catalog, configured_cb, a->w->gw);
    if (list == NULL) {
        gw_reply_error(a->req, 500, "internal_error", "internal_error", "internal error", a->rid,
                       0);
        return;
    }
    gw_reply_json(a->req, 200, list, a->rid);
    json_decref(list);
}

/* GET /admin/v1/health (superadmin, through the admin routes): the store and how fast it
 * answers, every provider's breaker, what idempotency holds quarantined and what waits to be
 * purged, the version and the uptime. "degraded" when a configured provider's circuit is not
 * closed or the store has requests in an uncertain state to look at. */
void gw_admin_health(struct gw_admin_ctx *x)
{
    struct gw *gw = x->gw;
    struct gw_store_health h = {0};
    const char *name;
    json_t *p;

    if (gw == NULL) {
        gw_answer_fail(&x->an, 400, "invalid_request_error", "invalid_request",
                       "the health of a running gateway is asked of the gateway");
        return;
    }
    int64_t t0 = gw_mono_us();
    int rc = gw_store_health(x->s, gw_now_ms(), &h);
    int64_t store_us = gw_mono_us() - t0;
    json_t *providers = gw_health_breakers(gw);
    int degraded = rc != 0;
    json_object_foreach(providers, name, p) {
        const char *st = json_string_value(json_object_get(p, "state"));
        degraded |= json_is_true(json_object_get(p, "configured")) && st != NULL &&
                    strcmp(st, "closed") != 0;
    }
    json_t *idem = json_pack("{s:i,s:I,s:I,s:I,s:I,s:I}", "retention_days",
                             gw->cfg.idem.retention_days, "purged",
                             (json_int_t)atomic_load(&gw->idem_purged), "last_purge_ms",
                             (json_int_t)atomic_load(&gw->idem_last_purge_ms),
                             "recovered_at_start", (json_int_t)gw->idem_recovered, "quarantined",
                             (json_int_t)h.idem_uncertain, "purge_backlog",
                             (json_int_t)h.idem_expired);
    x->an.out = json_pack("{s:s,s:s,s:I,s:s,s:s,s:f,s:o,s:o,s:{s:I}}", "status",
                          degraded ? "degraded" : "ok", "version", LLMGW_VERSION,
                          "uptime_seconds", (json_int_t)((gw_now_ms() - gw->started_ms) / 1000),
                          "store", gw_store_backend_name(gw), "store_status",
                          rc == 0 ? "ok" : "unavailable", "store_latency_ms",
                          (double)store_us / 1000.0, "providers", providers, "idempotency", idem,
                          "usage", "uncertain", (json_int_t)h.usage_uncertain);
    x->an.status = 200;
}

/* GET /admin/v1/metrics (superadmin): Prometheus text, version 0.0.4. */
static void metrics_then(struct gw_authed *a)
{
    struct gw *gw = a->w->gw;
    struct gw_metrics_extra x;
    struct gw_buf out;
    if (strcmp(a->key.role, "superadmin") != 0) {
        gw_reply_error(a->req, 403, "permission_error",
                       strcmp(a->key.role, "org_admin") == 0 ? "superadmin_only" : "admin_only",
                       "only the superadmin key may read the gateway's metrics", a->rid, 0);
        return;
    }
    gw_metrics_extra_init(&x);
    int64_t now = gw_now_ms();
    for (int i = 0; i < GW_NPROVIDERS; i++) {
        struct gw_breaker_view v;
        enum gw_metrics_provider p = gw_metrics_provider(gw->cfg.providers[i].name);
        if (p == GW_METRICS_PROV_NONE)
            continue;
        gw_breaker_view(&gw->breakers[i], now, &v);
        x.breaker[p] = v.state == GW_BREAKER_OPEN        ? GW_METRICS_BREAKER_OPEN
                       : v.state == GW_BREAKER_HALF_OPEN ? GW_METRICS_BREAKER_HALF_OPEN
                                                         : GW_METRICS_BREAKER_CLOSED;
    }
    if (a->health_rc == 0) {
        x.idem_quarantined = a->health.idem_uncertain;
        x.purge_backlog = a->health.idem_expired;
    }
    x.uptime_seconds = (now - gw->started_ms) / 1000;
    x.version = LLMGW_VERSION;
    x.commit = "";
    gw_buf_init(&out, GW_METRICS_TEXT_MAX);
    if (gw_metrics_render(gw->metrics, &x, &out) != 0) {
        gw_buf_cleanup(&out);
        gw_reply_error(a->req, 500, "internal_error", "internal_error", "internal error", a->rid,
                       0);
        return;
    }
    struct evbuffer *body = evbuffer_new();
    gw_reply_headers(a->req, "text/plain; version=0.0.4; charset=utf-8", a->rid);
    if (body != NULL)
        evbuffer_add(body, out.data, out.len);
    evhttp_send_reply(a->req, 200, "OK", body);
    if (body != NULL)
        evbuffer_free(body);
    gw_buf_cleanup(&out);
}

int gw_metrics_route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                     const char *path)
{
    (void)path;
    gw_with_key(w, req, rid, metrics_then, 1);
    return 1;
}

#ifdef GW_TEST_HOOKS
/* POST /__test/clock {"advance_ms": N} — test builds only: move the gateway's wall clock. */
static void handle_test_clock(struct evhttp_request *req, const char *rid)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *data = (const char *)evbuffer_pullup(in, -1);
    json_t *b = data ? json_loadb(data, len, 0, NULL) : NULL;
    json_t *ms = json_object_get(b, "advance_ms");
    if (!json_is_integer(ms) || json_integer_value(ms) < 0) {
        json_decref(b);
        gw_reply_error(req, 400, "invalid_request_error", "invalid_request",
                       "want {\"advance_ms\": N >= 0}", rid, 0);
        return;
    }
    int64_t total = gw_test_clock_advance(json_integer_value(ms));
    json_decref(b);
    json_t *out = json_pack("{s:I}", "offset_ms", (json_int_t)total);
    gw_reply_json(req, 200, out, rid);
    json_decref(out);
}
#endif

#ifdef GW_TEST_HOOKS
/* POST /__test/alloc {"fail_after": N} — test builds only: the Nth allocation from now (any
 * thread's) fails (0: none); answers {"remaining": allocations before it, 0 once it failed}. An
 * absent fail_after only reads. */
static void handle_test_alloc(struct evhttp_request *req, const char *rid)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *data = (const char *)evbuffer_pullup(in, -1);
    json_t *b = data ? json_loadb(data, len, 0, NULL) : NULL;
    json_t *n = json_object_get(b, "fail_after");
    /* the answer is written before the hook is armed: its own allocations are not counted */
    char out[48];
    snprintf(out, sizeof(out), "{\"remaining\":%ld}", gw_mem_fail_remaining());
    if (json_is_integer(n) && json_integer_value(n) >= 0)
        gw_mem_fail_after((long)json_integer_value(n));
    json_decref(b);
    gw_reply_json_text(req, 200, out, rid);
}
#endif

/* "req_" + the time in ms (12 hex digits) + 12 random hex digits: unique, and in time order,
 * so the usage rows' key grows at its end instead of touching a random page per row. */
void gw_request_id_new(char *out, size_t n)
{
    if (gw_time_id(out, n, "req_", gw_now_ms()) != 0)
        gw_strlcpy(out, "req_unavailable", n);
}

static void handle(void *wdata, struct evhttp_request *req)
{
    struct gw_worker *w = wdata;
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *given = evhttp_find_header(h, "X-Request-Id");
    char rid[72];
    char path[256];

    if (given != NULL && gw_request_id_ok(given)) {
        gw_strlcpy(rid, given, sizeof(rid));
    } else {
        gw_request_id_new(rid, sizeof(rid));
    }
    const char *uri = evhttp_request_get_uri(req);
    size_t plen = strcspn(uri, "?#");
    if (plen >= sizeof(path)) {
        gw_reply_error(req, 404, "invalid_request_error", "not_found", "no such endpoint", rid, 0);
        return;
    }
    memcpy(path, uri, plen);
    path[plen] = '\0';
    enum evhttp_cmd_type m = evhttp_request_get_command(req);

    if (gw_http_worker_is_draining(w->hw)) {
        gw_reply_error(req, 503, "service_unavailable", "shutting_down",
                       "the gateway is shutting down", rid, 1);
        return;
    }
    if (m == EVHTTP_REQ_OPTIONS && gw_sessions_route(w, req, rid, path)) /* CORS preflights */
        return;
    struct route {
        const char *path;
        enum evhttp_cmd_type method;
        int id;
    } routes[] = {
        {"/healthz", EVHTTP_REQ_GET, 0},
        {"/v1/models", EVHTTP_REQ_GET, 1},
        {"/v1/chat/completions", EVHTTP_REQ_POST, 2},
        {"/api/v1/llm/chat", EVHTTP_REQ_POST, 3},
        {"/v1/messages", EVHTTP_REQ_POST, 4},
        {"/v1/messages/count_tokens", EVHTTP_REQ_POST, 7},
#ifdef GW_TEST_HOOKS
        {"/__test/clock", EVHTTP_REQ_POST, 5},
        {"/__test/alloc", EVHTTP_REQ_POST, 6},
#endif
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(path, routes[i].path) != 0)
            continue;
        if (m != routes[i].method) {
            gw_reply_method_not_allowed(req, rid,
                                        routes[i].method == EVHTTP_REQ_GET ? "GET" : "POST");
            return;
        }
        switch (routes[i].id) {
        case 0: {
            json_t *ok = json_pack("{s:s}", "status", "ok");
            gw_reply_json(req, 200, ok, rid);
            json_decref(ok);
            return;
        }
        case 1:
            gw_with_key(w, req, rid, models_then, 0);
            return;
        case 2:
        case 3:
        case 4: {
            static const enum gw_dialect dialects[] = {GW_DIALECT_OPENAI, GW_DIALECT_SIMPLE,
                                                       GW_DIALECT_MESSAGES};
            struct gw_client cl;
            gw_client_evhttp_init(&cl, req);
            gw_pipeline_chat(w, &cl, rid, dialects[routes[i].id - 2]);
            return;
        }
        case 7:
            gw_messages_count(w, req, rid);
            return;
#ifdef GW_TEST_HOOKS
        case 5:
            handle_test_clock(req, rid);
            return;
        case 6:
            handle_test_alloc(req, rid);
            return;
#endif
        default:
            return;
        }
    }
    if (gw_admin_route(w, req, rid, path) || gw_sessions_route(w, req, rid, path) ||
        gw_conversations_route(w, req, rid, path) ||
        gw_web_route(req, rid, path))
        return;
    gw_reply_error(req, 404, "invalid_request_error", "not_found", "no such endpoint", rid, 0);
}

int gw_worker_new(struct gw *gw, struct gw_http_worker *hw, struct event_base *base,
                  struct gw_upstream *up, int purge, struct gw_worker **out)
{
    struct gw_worker *w = gw_calloc(1, sizeof(*w));
    struct gw_errbuf eb = {{0}};
    int rc = 0;

    *out = NULL;
    if (w == NULL)
        return GW_ENOMEM;
    w->gw = gw;
    w->hw = hw;
    w->base = base;
    w->upstream = up;
    /* SQLite: the worker's own connection, used inline; a shared store: the pool's threads */
    if (gw->ledger.limits != NULL && (rc = gw_store_open(gw->cfg.db_url, &w->store, &eb)) != 0) {
        GW_LOG_ERROR("server", "worker %d cannot open the store: %s",
                     hw != NULL ? gw_http_worker_index(hw) : -1, eb.msg);
        gw_free(w);
        return rc;
    }
    if ((rc = gw_store_exec_new(base, w->store, gw->pool, &w->exec)) == 0)
        gw_store_exec_readers(w->exec, gw->readers);
    if (rc != 0) {
        gw_store_free(w->store);
        gw_free(w);
        return rc;
    }
    if (purge && (rc = gw_idem_purger_start(w)) != 0) {
        gw_store_exec_free(w->exec);
        gw_store_free(w->store);
        gw_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void gw_worker_free(struct gw_worker *w)
{
    if (w == NULL)
        return;
    gw_idem_purger_stop(w);
    gw_pipeline_abort_all(w);
    /* store work still running finishes; its calls end, and their rows are written */
    gw_store_exec_drain(w->exec);
    gw_store_exec_free(w->exec);
    gw_worker_keys_free(w);
    gw_store_free(w->store);
    gw_free(w);
}

static int worker_init(void *arg, struct gw_http_worker *hw, void **wdata)
{
    struct gw_worker *w = NULL;
    int rc = gw_worker_new(arg, hw, gw_http_worker_base(hw), gw_http_worker_upstream(hw),
                           gw_http_worker_index(hw) == 0, &w);
    *wdata = w;
    return rc;
}

static void worker_cleanup(void *arg, void *wdata)
{
    (void)arg;
    gw_worker_free(wdata);
}

static int inflight(void *wdata) { return ((struct gw_worker *)wdata)->inflight; }

static void abort_all(void *wdata) { gw_pipeline_abort_all(wdata); }

const struct gw_http_app gw_app = {
    .worker_init = worker_init,
    .worker_cleanup = worker_cleanup,
    .handle = handle,
    .inflight = inflight,
    .abort_all = abort_all,
};
