/*
 * core/router_call — the LLM router: a small model is asked, with a bounded prompt and a short
 * timeout, which of the candidate models should serve an auto-routed request.
 *
 * Invariants:
 * - The router's answer only ever selects one of the candidates it was shown (which are
 *   already limited to what the caller may use); anything else is ignored.
 * - Any failure (no answer in time, an error status, garbage) ends in the heuristic's choice,
 *   never in an error for the client.
 * - The router's call has its own usage row ("<request id>.router", kind "router", linked by
 *   parent_request_id), reserved before it is sent and settled after, charged to the same key.
 * - gw_call_routed() runs exactly once per started router call, from the event loop, unless
 *   the call is cancelled first.
 */
#include <stdio.h>
#include <string.h>

#include "core/call.h"
#include "http/upstream.h"
#include "util/json.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/util.h"

#define ROUTER_MAX_OUTPUT 64
#define ROUTER_MAX_ANSWER (64u << 10)

struct gw_router_call {
    struct gw_call *c;
    const struct gw_model *cands[GW_ROUTE_MAX_TARGETS];
    int n;
    const struct gw_model *model;
    const struct gw_provider_ops *ops;
    int pass;
    int running;
    struct gw_upstream_req up;
    CURL *easy;
    struct curl_slist *hdrs;
    struct gw_buf body;
    int64_t t0_us;
    struct gw_usage_row row;
    struct gw_hold hold; /* the router call's own usage in the key's and org's limits */
    int admitting;       /* its admission is store work in flight (the call's job) */
};

static size_t on_write(char *p, size_t sz, size_t n, void *arg)
{
    struct gw_router_call *rc = arg;
    size_t len = sz * n;
    return gw_buf_add(&rc->body, p, len) == 0 ? len : 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return sz * n;
}

static void router_free(struct gw_router_call *rc)
{
    gw_upstream_easy_free(rc->c->w->upstream, rc->easy, rc->hdrs);
    gw_upstream_req_cleanup(&rc->up);
    gw_buf_cleanup(&rc->body);
    gw_free(rc);
}

static void settle(struct gw_router_call *rc, const char *state, int status, const char *code)
{
    gw_strlcpy(rc->row.state, state, sizeof(rc->row.state));
    rc->row.status = status;
    gw_strlcpy(rc->row.error_code, code, sizeof(rc->row.error_code));
    rc->row.latency_ms = (gw_mono_us() - rc->t0_us) / 1000;
    rc->row.settled_ms = gw_now_ms();
    gw_call_settle_row(rc->c, &rc->hold, &rc->row, rc->row.cost_micros,
                       rc->row.tokens_in + rc->row.tokens_out, rc->row.reserved_micros,
                       rc->row.reserved_tokens);
}

static void verdict(struct gw_router_call *rc, int ok)
{
    struct gw *gw = rc->c->w->gw;
    struct gw_breaker *b = gw_breaker_of(gw, rc->model->provider);
    if (b != NULL && rc->pass != GW_PASS_DENIED)
        (void)gw_breaker_report(b, &gw->cfg.breaker, rc->pass, ok, gw_now_ms());
    rc->pass = GW_PASS_DENIED;
}

/* Read the router's answer: the pick, or NULL with *why set. Usage goes into the row. */
static const struct gw_model *read_answer(struct gw_router_call *rc, long status,
                                          CURLcode result, const char **why)
{
    struct gw_errbuf eb = {{0}};
    struct gw_usage u = {0};
    json_t *out = NULL;

    if (result == CURLE_OPERATION_TIMEDOUT) {
        *why = "no answer in time";
        return NULL;
    }
    if (result != CURLE_OK) {
        *why = "the call failed";
        return NULL;
    }
    if (status < 200 || status >= 300) {
        *why = "the router model answered with an error";
        return NULL;
    }
    if (rc->ops->parse(rc->body.data ? rc->body.data : "", rc->body.len, &out, &u, &eb) != 0) {
        *why = "an unreadable answer";
        return NULL;
    }
    if (!u.seen)
        u.input_tokens = (int64_t)rc->up.body_len / 3 + 16;
    rc->row.tokens_in = u.input_tokens;
    rc->row.tokens_out = u.output_tokens;
    rc->row.cached_tokens = u.cached_input_tokens;
    rc->row.reasoning_tokens = u.reasoning_tokens;
    rc->row.cost_micros = gw_cost_micros(rc->model, &u);
    json_t *msg = json_object_get(json_array_get(json_object_get(out, "choices"), 0), "message");
    const struct gw_model *pick = gw_router_pick(gw_json_str(msg, "content"), rc->cands, rc->n);
    json_decref(out);
    if (pick == NULL)
        *why = "its answer named no allowed candidate";
    return pick;
}

static void on_done(void *arg, CURL *easy, CURLcode result)
{
    struct gw_router_call *rc = arg;
    struct gw_call *c = rc->c;
    long status = 0;
    const char *why = NULL;
    char note[128];

    rc->running = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    const struct gw_model *pick = read_answer(rc, status, result, &why);
    /* a garbage answer is the router's fault, not its provider's */
    verdict(rc, result == CURLE_OK && (status < 500 && status != 429));
    if (result == CURLE_OK && status >= 200 && status < 300) {
        settle(rc, "settled", 200, pick ? "" : "router_bad_answer");
    } else {
        /* sent and then lost: charge what was reserved */
        if (result != CURLE_OK)
            rc->row.cost_micros = rc->row.reserved_micros;
        settle(rc, result != CURLE_OK ? "uncertain" : "failed", (int)status,
               result == CURLE_OPERATION_TIMEDOUT ? "router_timeout" : "router_error");
    }
    if (pick == NULL) {
        GW_LOG_WARN("route", "req=%s router %s: %s (curl=%d status=%ld); the heuristic decides",
                    c->rid, rc->model->id, why, (int)result, status);
        snprintf(note, sizeof(note), "%s failed (%s), heuristic used", rc->model->id, why);
    }
    c->router = NULL;
    router_free(rc);
    gw_call_routed(c, pick, pick ? NULL : note);
}

static void router_admit_run(struct gw_call *c, struct gw_store *s)
{
    gw_ledger_admit(&c->w->gw->ledger, s, &c->adm);
}

/* Admitted (or not): send the question, or let the heuristic decide. */
static void router_admitted(struct gw_call *c)
{
    struct gw *gw = c->w->gw;
    struct gw_router_call *rc = c->router;
    if (c->job.batch_rc != 0) /* the row's write was lost */
        gw_ledger_abandon(&gw->ledger, &c->adm, GW_ESTORE);
    int err = c->adm.rc;

    rc->admitting = 0;
    if (c->req == NULL) { /* the client left meanwhile: nothing was sent */
        if (err == 0)
            settle(rc, "cancelled", 499, "client_closed");
        c->router = NULL;
        router_free(rc);
        gw_call_end(c);
        return;
    }
    if (err != 0) {
        c->router = NULL;
        router_free(rc);
        gw_call_routed(c, NULL, err == GW_ELIMIT ? "the router call does not fit the key's limits"
                                                 : "the router call could not be recorded");
        return;
    }
    struct gw_breaker *b = gw_breaker_of(gw, rc->model->provider);
    struct gw_provider_conf *pc = gw_config_provider(&gw->cfg, rc->model->provider);
    rc->pass = b ? gw_breaker_enter(b, gw_now_ms()) : GW_PASS_NORMAL;
    if (rc->pass == GW_PASS_DENIED) {
        settle(rc, "refused", 0, "router_unavailable");
        c->router = NULL;
        router_free(rc);
        gw_call_routed(c, NULL, "the router model is unavailable");
        return;
    }
    struct gw_timeouts to = gw_config_timeouts(&gw->cfg, pc);
    int total = gw->cfg.router.timeout_ms;
    struct gw_easy_opts o = {
        .url = rc->up.url,
        .headers = (const char *const *)rc->up.headers,
        .nheaders = rc->up.nheaders,
        .body = rc->up.body,
        .body_len = rc->up.body_len,
        .connect_ms = to.connect_ms < total ? to.connect_ms : total,
        .total_ms = total,
        .on_write = on_write,
        .on_header = on_header,
        .arg = rc,
    };
    if (gw_upstream_easy_new(c->w->upstream, &o, &rc->easy, &rc->hdrs) != 0 ||
        gw_upstream_start(c->w->upstream, rc->easy, on_done, rc) != 0) {
        gw_breaker_abandon(b, rc->pass); /* nothing was sent: no verdict on the provider */
        rc->pass = GW_PASS_DENIED;
        settle(rc, "refused", 0, "internal_error");
        c->router = NULL;
        router_free(rc);
        gw_call_routed(c, NULL, "the router call could not start");
        return;
    }
    rc->running = 1;
    GW_LOG_DEBUG("route", "req=%s asking %s to choose among %d models", c->rid, rc->model->id,
                 rc->n);
}

int gw_router_call_start(struct gw_call *c, const struct gw_model *const *cands, int n)
{
    struct gw *gw = c->w->gw;
    const struct gw_model *m = gw->router_model;
    struct gw_provider_conf *pc = gw_config_provider(&gw->cfg, m->provider);
    struct gw_errbuf eb = {{0}};
    struct gw_router_call *rc = gw_calloc(1, sizeof(*rc));
    json_t *req = NULL;
    int err = GW_ENOMEM;

    if (rc == NULL)
        return GW_ENOMEM;
    rc->c = c;
    rc->model = m;
    rc->ops = gw_provider_find(m->provider);
    rc->n = n < GW_ROUTE_MAX_TARGETS ? n : GW_ROUTE_MAX_TARGETS;
    memcpy(rc->cands, cands, (size_t)rc->n * sizeof(cands[0]));
    rc->t0_us = gw_mono_us();
    gw_buf_init(&rc->body, ROUTER_MAX_ANSWER);
    if (rc->ops == NULL || pc == NULL)
        goto fail;
    if ((req = gw_router_prompt(gw->router, &c->rq, rc->cands, rc->n,
                                gw->cfg.router.max_prompt_chars)) == NULL)
        goto fail;
    json_object_set_new(req, "model", json_string(m->wire_id));
    struct gw_provider_cfg pcfg = {
        .base_url = pc->base_url,
        .api_key = pc->api_key,
        .api_version = pc->api_version,
        .default_max_tokens = ROUTER_MAX_OUTPUT,
        .reasoning = m->reasoning,
    };
    if ((err = rc->ops->build(&pcfg, req, m->wire_id, 0, &rc->up, &eb)) != 0)
        goto fail;
    json_decref(req);

    /* its own usage row and its share of the limits, durable before anything goes upstream */
    struct gw_usage_row *r = &rc->row;
    snprintf(r->request_id, sizeof(r->request_id), "%s.router", c->rid);
    gw_strlcpy(r->parent_request_id, c->rid, sizeof(r->parent_request_id));
    gw_strlcpy(r->kind, "router", sizeof(r->kind));
    r->attempts = 1;
    gw_strlcpy(r->route_method, "auto_router", sizeof(r->route_method));
    r->org_id = c->key->org_id;
    r->key_row_id = c->key->id;
    gw_strlcpy(r->provider, m->provider, sizeof(r->provider));
    gw_strlcpy(r->model, m->id, sizeof(r->model));
    gw_strlcpy(r->endpoint, "router", sizeof(r->endpoint));
    gw_strlcpy(r->state, "reserved", sizeof(r->state));
    r->reserved_tokens = (int64_t)rc->up.body_len / 3 + 16 + ROUTER_MAX_OUTPUT;
    r->reserved_micros =
        gw_cost_worst_micros(m, (int64_t)rc->up.body_len / 3 + 16, ROUTER_MAX_OUTPUT);
    gw_strlcpy(r->catalog_version, gw_catalog_version(gw->catalog), sizeof(r->catalog_version));
    gw_strlcpy(r->node, gw->cfg.node_id, sizeof(r->node));
    struct gw_admission *a = &c->adm;
    memset(a, 0, sizeof(*a));
    a->q = gw_call_limit_req(c);
    a->q.usd = r->reserved_micros;
    a->q.tokens = r->reserved_tokens;
    a->q.request = 0; /* part of the request, not one more */
    a->first = 1;
    a->hold = &rc->hold;
    a->row = r;
    r->created_ms = a->q.now_ms;
    c->router = rc;
    rc->admitting = 1;
    gw_call_submit(c, 1, router_admit_run, router_admitted);
    return 0;
fail:
    json_decref(req);
    router_free(rc);
    return err != 0 ? err : GW_EINTERNAL;
}

void gw_router_call_cancel(struct gw_call *c)
{
    struct gw_router_call *rc = c->router;
    if (rc == NULL || rc->admitting) /* its admission's done cleans up */
        return;
    if (rc->running)
        gw_upstream_cancel(c->w->upstream, rc->easy);
    if (rc->pass != GW_PASS_DENIED) {
        struct gw_breaker *b = gw_breaker_of(c->w->gw, rc->model->provider);
        if (b != NULL)
            gw_breaker_abandon(b, rc->pass);
    }
    rc->row.cost_micros = rc->row.reserved_micros; /* it was sent: never undercount */
    settle(rc, "cancelled", 499, "client_closed");
    c->router = NULL;
    router_free(rc);
}
