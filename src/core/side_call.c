/*
 * core/side_call — a call the gateway makes upstream on a request's behalf: the LLM router's
 * question, the summarizer's summary of a long conversation. One at a time per request.
 *
 * Invariants:
 * - A side call has its own usage row ("<request id>.<kind>", kind and endpoint <kind>, linked
 *   by parent_request_id), admitted against the key's and org's limits and durable before
 *   anything is sent, settled after, charged to the same key.
 * - Its provider's circuit breaker is asked first and told the outcome (a garbage answer is the
 *   model's fault, not its provider's).
 * - ops->done runs exactly once per started side call, from the event loop, unless the call is
 *   cancelled first or the client leaves while it is being admitted (then the request ends).
 */
#include <stdio.h>
#include <string.h>

#include "core/call.h"
#include "http/upstream.h"
#include "util/json.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/util.h"

#define SIDE_MAX_ANSWER (256u << 10)

struct gw_side_call {
    struct gw_call *c;
    const struct gw_side_ops *ops;
    void *arg;
    const struct gw_model *model;
    const struct gw_provider_ops *adapter;
    int timeout_ms;
    int pass;
    int running;
    struct gw_upstream_req up;
    CURL *easy;
    struct curl_slist *hdrs;
    struct gw_buf body;
    int64_t t0_us;
    struct gw_usage_row row;
    struct gw_hold hold; /* the side call's own usage in the key's and org's limits */
    struct gw_admission adm;
    int admitting;       /* its admission is store work in flight (the call's job) */
};

static size_t on_write(char *p, size_t sz, size_t n, void *arg)
{
    struct gw_side_call *sc = arg;
    size_t len = sz * n;
    return gw_buf_add(&sc->body, p, len) == 0 ? len : 0;
}

static void side_free(struct gw_side_call *sc)
{
    if (sc->ops->free != NULL && sc->arg != NULL)
        sc->ops->free(sc->arg);
    gw_upstream_easy_free(sc->c->w->upstream, sc->easy, sc->hdrs);
    gw_upstream_req_cleanup(&sc->up);
    gw_buf_cleanup(&sc->body);
    gw_free(sc);
}

static void settle(struct gw_side_call *sc, const char *state, int status, const char *code)
{
    gw_strlcpy(sc->row.state, state, sizeof(sc->row.state));
    sc->row.status = status;
    gw_strlcpy(sc->row.error_code, code, sizeof(sc->row.error_code));
    sc->row.latency_ms = (gw_mono_us() - sc->t0_us) / 1000;
    sc->row.settled_ms = gw_now_ms();
    gw_call_settle_row(sc->c, &sc->hold, &sc->row, sc->row.cost_micros,
                       sc->row.tokens_in + sc->row.tokens_out, sc->row.reserved_micros,
                       sc->row.reserved_tokens);
}

static void verdict(struct gw_side_call *sc, int ok)
{
    struct gw *gw = sc->c->w->gw;
    struct gw_breaker *b = gw_breaker_of(gw, sc->model->provider);
    if (b != NULL && sc->pass != GW_PASS_DENIED)
        (void)gw_breaker_report(b, &gw->cfg.breaker, sc->pass, ok, gw_now_ms());
    sc->pass = GW_PASS_DENIED;
}

/* The side call is over: free it, then tell its owner (who may end the request). */
static void finish(struct gw_side_call *sc, int ok, int sent, const char *why)
{
    struct gw_call *c = sc->c;
    const struct gw_side_ops *ops = sc->ops;
    void *arg = sc->arg;

    sc->arg = NULL; /* the owner's until done returns */
    c->side = NULL;
    side_free(sc);
    ops->done(c, arg, ok, sent, why);
    if (ops->free != NULL && arg != NULL)
        ops->free(arg);
}

/* Read the answer: usable (1) or not (0, *why set). Usage goes into the row. */
static int read_answer(struct gw_side_call *sc, long status, CURLcode result, const char **why)
{
    struct gw_errbuf eb = {{0}};
    struct gw_usage u = {0};
    json_t *out = NULL;

    if (result == CURLE_OPERATION_TIMEDOUT) {
        *why = "no answer in time";
        return 0;
    }
    if (result != CURLE_OK) {
        *why = "the call failed";
        return 0;
    }
    if (status < 200 || status >= 300) {
        *why = "the model answered with an error";
        return 0;
    }
    if (sc->adapter->parse(sc->body.data ? sc->body.data : "", sc->body.len, &out, &u, &eb) !=
        0) {
        *why = "an unreadable answer";
        return 0;
    }
    if (!u.seen)
        u.input_tokens = (int64_t)sc->up.body_len / 3 + 16;
    sc->row.tokens_in = u.input_tokens;
    sc->row.tokens_out = u.output_tokens;
    sc->row.cached_tokens = u.cached_input_tokens;
    sc->row.reasoning_tokens = u.reasoning_tokens;
    sc->row.cost_micros = gw_cost_micros(sc->model, &u);
    int ok = sc->ops->accept(sc->arg, out, why);
    json_decref(out);
    return ok;
}

static void on_done(void *arg, CURL *easy, CURLcode result)
{
    struct gw_side_call *sc = arg;
    long status = 0;
    const char *why = NULL;
    char code[48];

    sc->running = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    int ok = read_answer(sc, status, result, &why);
    verdict(sc, result == CURLE_OK && (status < 500 && status != 429));
    if (result == CURLE_OK && status >= 200 && status < 300) {
        snprintf(code, sizeof(code), "%s_bad_answer", sc->ops->kind);
        settle(sc, "settled", 200, ok ? "" : code);
    } else {
        /* sent and then lost: charge what was reserved */
        if (result != CURLE_OK)
            sc->row.cost_micros = sc->row.reserved_micros;
        snprintf(code, sizeof(code), "%s_%s", sc->ops->kind,
                 result == CURLE_OPERATION_TIMEDOUT ? "timeout" : "error");
        settle(sc, result != CURLE_OK ? "uncertain" : "failed", (int)status, code);
    }
    if (!ok)
        GW_LOG_WARN("route", "req=%s %s call to %s: %s (curl=%d status=%ld)", sc->c->rid,
                    sc->ops->kind, sc->model->id, why, (int)result, status);
    finish(sc, ok, 1, ok ? NULL : why);
}

static void side_admit_run(struct gw_call *c, struct gw_store *s)
{
    gw_ledger_admit(&c->w->gw->ledger, s, &c->side->adm);
}

/* Refused before anything was sent: the row says why, the owner hears it. */
static void refuse(struct gw_side_call *sc, const char *code, const char *why)
{
    char full[48];
    snprintf(full, sizeof(full), "%s_%s", sc->ops->kind, code);
    settle(sc, "refused", 0, full);
    finish(sc, 0, 0, why);
}

/* Admitted (or not): send the question, or tell the owner it cannot be asked. */
static void side_admitted(struct gw_call *c)
{
    struct gw *gw = c->w->gw;
    struct gw_side_call *sc = c->side;
    if (c->job.batch_rc != 0) /* the row's write was lost */
        gw_ledger_abandon(&gw->ledger, &sc->adm, GW_ESTORE);
    int err = sc->adm.rc;

    sc->admitting = 0;
    if (c->cl.ctx == NULL) { /* the client left meanwhile: nothing was sent */
        if (err == 0)
            settle(sc, "cancelled", 499, "client_closed");
        c->side = NULL;
        side_free(sc);
        gw_call_end(c);
        return;
    }
    if (err != 0) {
        finish(sc, 0, 0, err == GW_ELIMIT ? "call does not fit the key's limits"
                                          : "call could not be recorded");
        return;
    }
    struct gw_breaker *b = gw_breaker_of(gw, sc->model->provider);
    struct gw_provider_conf *pc = gw_config_provider(&gw->cfg, sc->model->provider);
    sc->pass = b ? gw_breaker_enter(b, gw_now_ms()) : GW_PASS_NORMAL;
    if (sc->pass == GW_PASS_DENIED) {
        refuse(sc, "unavailable", "model is unavailable");
        return;
    }
    struct gw_timeouts to = gw_config_timeouts(&gw->cfg, pc);
    int total = sc->timeout_ms;
    struct gw_easy_opts o = {
        .url = sc->up.url,
        .headers = (const char *const *)sc->up.headers,
        .nheaders = sc->up.nheaders,
        .body = sc->up.body,
        .body_len = sc->up.body_len,
        .connect_ms = to.connect_ms < total ? to.connect_ms : total,
        .total_ms = total,
        .on_write = on_write,
        .arg = sc,
    };
    if (gw_upstream_easy_new(c->w->upstream, &o, &sc->easy, &sc->hdrs) != 0 ||
        gw_upstream_start(c->w->upstream, sc->easy, on_done, sc) != 0) {
        gw_breaker_abandon(b, sc->pass); /* nothing was sent: no verdict on the provider */
        sc->pass = GW_PASS_DENIED;
        refuse(sc, "internal_error", "call could not start");
        return;
    }
    sc->running = 1;
    GW_LOG_DEBUG("route", "req=%s %s call to %s sent", c->rid, sc->ops->kind, sc->model->id);
}

int gw_side_call_start(struct gw_call *c, const struct gw_side_ops *ops, void *arg,
                       const struct gw_model *m, json_t *req, int max_output, int timeout_ms)
{
    struct gw *gw = c->w->gw;
    struct gw_provider_conf *pc = gw_config_provider(&gw->cfg, m->provider);
    struct gw_errbuf eb = {{0}};
    struct gw_side_call *sc = gw_calloc(1, sizeof(*sc));
    int err;

    if (sc == NULL)
        return GW_ENOMEM;
    sc->c = c;
    sc->ops = ops;
    sc->model = m;
    sc->adapter = gw_provider_find(m->provider);
    sc->timeout_ms = timeout_ms;
    sc->t0_us = gw_mono_us();
    gw_buf_init(&sc->body, SIDE_MAX_ANSWER);
    if (sc->adapter == NULL || pc == NULL) {
        side_free(sc);
        return GW_EINTERNAL;
    }
    json_object_set_new(req, "model", json_string(m->wire_id));
    struct gw_provider_cfg pcfg = {
        .base_url = pc->base_url,
        .api_key = pc->api_key,
        .api_version = pc->api_version,
        .default_max_tokens = max_output,
        .reasoning = m->reasoning,
    };
    if ((err = sc->adapter->build(&pcfg, req, m->wire_id, 0, &sc->up, &eb)) != 0) {
        GW_LOG_WARN("route", "req=%s %s call to %s cannot be built: %s", c->rid, ops->kind,
                    m->id, eb.msg);
        side_free(sc);
        return err;
    }
    sc->arg = arg; /* ours from here on */

    /* its own usage row and its share of the limits, durable before anything goes upstream */
    struct gw_usage_row *r = &sc->row;
    int64_t in = (int64_t)sc->up.body_len / 3 + 16;
    snprintf(r->request_id, sizeof(r->request_id), "%s.%s", c->rid, ops->kind);
    gw_strlcpy(r->parent_request_id, c->rid, sizeof(r->parent_request_id));
    gw_strlcpy(r->kind, ops->kind, sizeof(r->kind));
    r->attempts = 1;
    gw_strlcpy(r->route_method, ops->route_method, sizeof(r->route_method));
    r->org_id = c->key->org_id;
    r->key_row_id = c->key->id;
    gw_strlcpy(r->subject, c->sess != NULL ? c->key->name : "", sizeof(r->subject));
    gw_strlcpy(r->provider, m->provider, sizeof(r->provider));
    gw_strlcpy(r->model, m->id, sizeof(r->model));
    gw_strlcpy(r->endpoint, ops->kind, sizeof(r->endpoint));
    gw_strlcpy(r->state, "reserved", sizeof(r->state));
    r->reserved_tokens = in + max_output;
    r->reserved_micros = gw_cost_worst_micros(m, in, max_output);
    gw_strlcpy(r->catalog_version, gw_catalog_version(gw->catalog), sizeof(r->catalog_version));
    gw_strlcpy(r->node, gw->cfg.node_id, sizeof(r->node));
    struct gw_admission *a = &sc->adm;
    memset(a, 0, sizeof(*a));
    a->q = gw_call_limit_req(c);
    a->q.usd = r->reserved_micros;
    a->q.tokens = r->reserved_tokens;
    a->q.request = 0; /* part of the request, not one more */
    a->first = 1;
    a->hold = &sc->hold;
    a->row = r;
    r->created_ms = a->q.now_ms;
    c->side = sc;
    sc->admitting = 1;
    gw_call_submit(c, 1, side_admit_run, side_admitted);
    return 0;
}

void gw_side_call_cancel(struct gw_call *c)
{
    struct gw_side_call *sc = c->side;
    if (sc == NULL || sc->admitting) /* its admission's done cleans up */
        return;
    if (sc->running)
        gw_upstream_cancel(c->w->upstream, sc->easy);
    if (sc->pass != GW_PASS_DENIED) {
        struct gw_breaker *b = gw_breaker_of(c->w->gw, sc->model->provider);
        if (b != NULL)
            gw_breaker_abandon(b, sc->pass);
    }
    sc->row.cost_micros = sc->row.reserved_micros; /* it was sent: never undercount */
    settle(sc, "cancelled", 499, "client_closed");
    c->side = NULL;
    side_free(sc);
}
