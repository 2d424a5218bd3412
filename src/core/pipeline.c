/*
 * core/pipeline — one chat request from parsed body to settled usage row (see call.h).
 *
 *   parse → authenticate → validate → route (explicit, heuristic or the LLM router) →
 *   targets (the choice, then its fallbacks) → for each attempt: health check (circuit
 *   breaker, Retry-After cool-down) → reserve (the usage row) → call upstream (attempt.c) →
 *   answer, or on a retryable failure before any byte reached the client: back off and try the
 *   next target → settle.
 *
 * Every call ends in gw_call_end() exactly once, which settles the usage row and frees it:
 * after the answer, after the last failure, when the client goes away (on_client_close) or
 * when the worker shuts down (gw_pipeline_abort_all).
 *
 * Usage rows: the request's row (id = request id) is reserved before the first upstream byte
 * and always describes the latest attempt; when a fallback follows a failed attempt, that
 * attempt is first archived as its own row ("<id>.<n>", kind "attempt") and the reservation is
 * re-targeted to the new model. An attempt whose outcome is unknown is charged at its
 * reservation (state "uncertain").
 */
#include <curl/curl.h>
#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <stddef.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/call.h"
#include "core/client.h"
#include "core/sessions.h"
#include "http/reply.h"
#include "http/upstream.h"
#include "policy/limits.h"
#include "util/json.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/splice.h"
#include "util/mem.h"
#include "util/util.h"

static void next_attempt(struct gw_call *c);
static void give_back_pass(struct gw_call *c, int verdict, int ok);

/* ---- small helpers ---- */

void gw_call_answer_headers(struct gw_call *c)
{
    struct gw_client *cl = &c->cl;

    if (c->headers_added || cl->ctx == NULL)
        return;
    c->headers_added = 1;
    if (c->route_reason[0] != '\0')
        cl->ops->add_header(cl, "X-LLMGW-Route-Reason", c->route_reason);
    if (c->trail[0] != '\0')
        cl->ops->add_header(cl, "X-LLMGW-Fallback", c->trail);
    if (c->attempts > 1) {
        char n[16];
        snprintf(n, sizeof(n), "%d", c->attempts);
        cl->ops->add_header(cl, "X-LLMGW-Attempts", n);
    }
}

void gw_call_send_text(struct gw_call *c, int status, const char *text, size_t len,
                       int retry_after)
{
    if (c->cl.ctx == NULL)
        return;
    c->cl.ops->watch(&c->cl, 0);
    gw_call_answer_headers(c);
    gw_client_reply_retry_after(&c->cl, retry_after);
    if (c->idem != NULL && text != NULL) { /* kept for a replay of this key */
        gw_idem_capture_head(c, status, "application/json");
        gw_idem_capture_body(c, text, len);
        gw_idem_capture_body(c, "\n", 1);
        gw_idem_capture_done(c);
    }
    gw_client_reply_json_bytes(&c->cl, status, text, len, c->rid);
    c->cl.ctx = NULL;
}

void gw_call_send_json(struct gw_call *c, int status, const json_t *body, int retry_after)
{
    char *s = body != NULL && c->cl.ctx != NULL ? gw_json_dumps(body, GW_JSON_OUT_PRECISION) : NULL;
    gw_call_send_text(c, status, s, s != NULL ? strlen(s) : 0, retry_after);
    gw_free(s);
}

void gw_call_reply_error(struct gw_call *c, int status, const char *type, const char *code,
                         const char *msg, int retry_after)
{
    c->row.status = status;
    gw_strlcpy(c->row.error_code, code, sizeof(c->row.error_code));
    if (c->cl.ctx == NULL)
        return;
    json_t *body = c->dialect == GW_DIALECT_MESSAGES
                       ? gw_error_body_anthropic(status, code, msg, c->rid)
                       : gw_error_body(type, code, msg, c->rid);
    gw_call_send_json(c, status, body, retry_after);
    json_decref(body);
}

const char *gw_dialect_endpoint(enum gw_dialect d)
{
    return d == GW_DIALECT_SIMPLE ? "llm.chat" : d == GW_DIALECT_MESSAGES ? "messages"
                                                                          : "chat.completions";
}

#define reply_error gw_call_reply_error

/* Worst-case-ish prompt size for routing and the reservation: a token per 3 bytes of the body
 * as received (no second serialisation of the parsed tree). */
static int64_t tokens_estimate(size_t body_len) { return (int64_t)(body_len / 3) + 16; }

static int list_allows(const char *csv, const char *item)
{
    size_t n = strlen(item);
    const char *p = csv;

    if (csv[0] == '\0')
        return 1;
    while (*p != '\0') {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, item, n) == 0)
            return 1;
        if (e == NULL)
            break;
        p = e + 1;
    }
    return 0;
}

void gw_call_usage_to_row(struct gw_call *c, const struct gw_usage *u)
{
    c->row.tokens_in = u->input_tokens;
    c->row.tokens_out = u->output_tokens;
    c->row.cached_tokens = u->cached_input_tokens;
    c->row.reasoning_tokens = u->reasoning_tokens;
    c->row.cost_micros = gw_cost_micros(c->model, u);
}

void gw_call_usage_estimate(struct gw_call *c, struct gw_usage *u)
{
    if (u->input_tokens == 0)
        u->input_tokens = c->input_estimate;
    int64_t out_est = (c->emitted_chars + 3) / 4;
    if (u->output_tokens < out_est)
        u->output_tokens = out_est;
}

/* Append "what: why" to the fallback trail (printable, bounded; it goes into a header). */
static void trail_add(struct gw_call *c, const struct gw_model *m, const char *why)
{
    size_t n = strlen(c->trail);
    if (n + 8 >= sizeof(c->trail))
        return;
    snprintf(c->trail + n, sizeof(c->trail) - n, "%s%s: %s", n > 0 ? ", " : "", m->id, why);
}

/* ---- policy and health ---- */

struct gw_breaker *gw_breaker_of(struct gw *gw, const char *provider)
{
    for (int i = 0; i < GW_NPROVIDERS; i++)
        if (strcmp(gw->cfg.providers[i].name, provider) == 0)
            return &gw->breakers[i];
    return NULL;
}

/* The effective policy is the intersection of the org's and the key's allowlists: an org can
 * tighten, a key never widen. */
static int policy_allows(const struct gw_call *c, const struct gw_model *m)
{
    return list_allows(c->key->providers, m->provider) && list_allows(c->key->models, m->id) &&
           list_allows(c->key->org_providers, m->provider) &&
           list_allows(c->key->org_models, m->id);
}

/* May this call's key use model m, is its provider configured, and does it match a pin? */
static int model_allowed(const struct gw_call *c, const struct gw_model *m)
{
    return (c->opts.provider[0] == '\0' || strcmp(c->opts.provider, m->provider) == 0) &&
           gw_provider_configured(c->w->gw, m->provider) && policy_allows(c, m);
}

struct gw_limit_req gw_call_limit_req(struct gw_call *c)
{
    struct gw_limit_req q = {
        .key_id = c->key->id,
        .org_id = c->key->org_id,
        .key = &c->limits,
        .org = c->key->org_id > 0 ? &c->key->org_limits : NULL,
        .now_ms = gw_now_ms(),
        .store = c->w->store,
    };
    return q;
}

/* The key's limits: its own where set, else its tier's defaults. */
static void effective_limits(struct gw_call *c)
{
    const struct gw_limit_set *k = &c->key->limits;
    const struct gw_limit_set *t = c->tier ? &c->tier->limits : NULL;
    struct gw_limit_set *e = &c->limits;
#define PICK(f) e->f = k->f > 0 ? k->f : t ? t->f : 0
    PICK(rph);
    PICK(tph);
    PICK(max_concurrent);
    PICK(daily_usd_micros);
    PICK(monthly_usd_micros);
    PICK(max_request_usd_micros);
#undef PICK
    const struct gw_limit_set *o = &c->key->org_limits;
    c->capped = e->tph > 0 || e->daily_usd_micros > 0 || e->monthly_usd_micros > 0 ||
                e->max_request_usd_micros > 0 || o->tph > 0 || o->daily_usd_micros > 0 ||
                o->monthly_usd_micros > 0 || o->max_request_usd_micros > 0;
}

/* Output tokens for an attempt on m: the request's max_tokens (at most the model's); without
 * one, when a token or USD limit applies, the model's default_max_tokens or the tier's cap if
 * lower -- sent to the provider and reserved, so the worst case holds -- else the model's. */
static int64_t attempt_max_out(const struct gw_call *c, const struct gw_model *m)
{
    int64_t cap = m->max_output_tokens > 0 ? m->max_output_tokens : 4096;
    if (c->opts.max_tokens > 0)
        return c->opts.max_tokens < cap ? c->opts.max_tokens : cap;
    if (!c->capped)
        return cap;
    int64_t d = m->default_max_tokens > 0 ? m->default_max_tokens : cap;
    if (c->tier != NULL && c->tier->max_output_tokens > 0 && c->tier->max_output_tokens < d)
        d = c->tier->max_output_tokens;
    return d;
}

/* 429 for a limit that said no: which one, and when to retry. */
static void reply_limit(struct gw_call *c, const struct gw_refusal *why)
{
    char msg[256];
    int64_t v = why->limit_value;
    int ra = why->retry_after_ms < 0 ? 0 : (int)((why->retry_after_ms + 999) / 1000);
    const char *who = strcmp(why->scope, "org") == 0 ? "the organization's" : "this API key's";

    if (strstr(why->limit, "usd") != NULL)
        snprintf(msg, sizeof(msg), "%s %s limit of $%lld.%06lld %s", who, why->limit,
                 (long long)(v / 1000000), (long long)(v % 1000000),
                 why->retry_after_ms < 0 ? "is smaller than this request's worst-case cost; "
                                           "lower max_tokens"
                                         : "is reached; retry later");
    else
        snprintf(msg, sizeof(msg), "%s %s limit of %lld is reached; retry later", who,
                 why->limit, (long long)v);
    c->row.status = 429;
    gw_strlcpy(c->row.error_code, why->code, sizeof(c->row.error_code));
    GW_LOG_INFO("limits", "req=%s key=%s refused: %s %s (limit %lld, retry in %d s)", c->rid,
                c->key->key_id, why->scope, why->limit, (long long)v, ra);
    if (c->cl.ctx == NULL)
        return;
    json_t *body = gw_error_body("rate_limit_error", why->code, msg, c->rid);
    if (body == NULL) {
        reply_error(c, 429, "rate_limit_error", why->code, msg, ra);
        return;
    }
    json_object_set_new(json_object_get(body, "error"), "limit",
                        json_pack("{s:s,s:s,s:I}", "scope", why->scope, "name", why->limit,
                                  "value", (json_int_t)v));
    gw_call_send_json(c, 429, body, ra);
    json_decref(body);
}

/* Time (ms) until m may be called: its provider's breaker and its own Retry-After. */
static int64_t health_wait(struct gw *gw, const struct gw_model *m, int64_t now)
{
    int64_t wait = 0;
    struct gw_breaker *b = gw_breaker_of(gw, m->provider);
    if (b != NULL && !gw_breaker_available(b, now, &wait))
        return wait > 0 ? wait : 1;
    return gw_cooldown_left(&gw->cooldowns[m->index], now);
}

/* Routing's view: allowed, and healthy now (an open breaker or a cool-down is skipped). */
static int model_usable(void *arg, const struct gw_model *m)
{
    struct gw_call *c = arg;
    return model_allowed(c, m) && health_wait(c->w->gw, m, c->route_now_ms) == 0;
}

static int allowed_cb(void *arg, const struct gw_model *m) { return model_allowed(arg, m); }

int gw_call_model_allowed(const struct gw_call *c, const struct gw_model *m)
{
    return model_allowed(c, m);
}

/* ---- routing ---- */

static void set_targets(struct gw_call *c, const struct gw_model *first,
                        const struct gw_route_result *res)
{
    const struct gw_config *cfg = &c->w->gw->cfg;
    c->targets[0] = first;
    c->ntargets = 1;
    c->next_target = 0;
    if (cfg->fallback.enabled && cfg->fallback.max_attempts > 1)
        c->ntargets += gw_route_fallbacks(c->w->gw->router, &c->rq, first, res, c->targets + 1,
                                          GW_ROUTE_MAX_TARGETS);
    gw_strlcpy(c->opts.model, first->id, sizeof(c->opts.model));
}

/* Nothing the caller may use can serve the request: say whether health or policy is why. */
static void refuse_unroutable(struct gw_call *c)
{
    struct gw_route_result res;
    struct gw_route_req q = c->rq;

    q.allowed = allowed_cb;
    if (gw_route_heuristic(c->w->gw->router, &q, &res) == 0) {
        int64_t wait = health_wait(c->w->gw, res.model, c->route_now_ms);
        reply_error(c, 503, "service_unavailable", "no_provider_available",
                    "every provider that could serve this request is unavailable right now "
                    "(circuit open or rate limited); retry later",
                    (int)((wait + 999) / 1000 > 0 ? (wait + 999) / 1000 : 1));
        return;
    }
    reply_error(c, 503, "service_unavailable", "no_provider_available",
                "no model this API key may use can serve this request", 0);
}

void gw_call_routed(struct gw_call *c, const struct gw_model *pick, const char *note)
{
    const struct gw_route_result *h = &c->heur;

    if (pick != NULL) {
        c->route_method = "auto_router";
        snprintf(c->route_reason, sizeof(c->route_reason), "%s; rule=router; chosen by %s",
                 pick->id, c->w->gw->router_model->id);
        /* fallbacks: the heuristic's choice and list, then the pick's own chain */
        struct gw_route_result alts = *h;
        if (alts.model != pick && alts.nalts < GW_ROUTE_MAX_TARGETS) {
            memmove(alts.alts + 1, alts.alts, (size_t)alts.nalts * sizeof(alts.alts[0]));
            alts.alts[0] = alts.model;
            alts.nalts++;
        }
        set_targets(c, pick, &alts);
    } else {
        c->route_method = "heuristic";
        snprintf(c->route_reason, sizeof(c->route_reason), "%s; rule=%s; %s%s%.120s",
                 h->model->id, h->rule, h->reason, note ? "; router: " : "", note ? note : "");
        set_targets(c, h->model, h);
    }
    GW_LOG_INFO("route", "req=%s %s: %s", c->rid, c->route_method, c->route_reason);
    next_attempt(c);
}

/* Budget-aware routing: when the key's budget window is nearly spent, prefer a cheaper model
 * (route/route.h gw_route_budget). Returns 1 when it changed the heuristic's choice. */
static int budget_aware(struct gw_call *c)
{
    struct gw_budget_view *b = &c->budget;
    return b->active && gw_route_budget(c->w->gw->router, &c->rq, b->percent_spent,
                                        b->remaining_micros, b->window, &c->heur);
}

/* No model named (or auto_route): the heuristic rules pick one, or the router model among
 * the candidates. Returns 0 when decided, 1 when the router's call runs, -1 when refused. */
static int route_auto(struct gw_call *c)
{
    struct gw *gw = c->w->gw;
    const struct gw_model *cands[GW_ROUTE_MAX_TARGETS];

    if (gw_route_heuristic(gw->router, &c->rq, &c->heur) != 0) {
        refuse_unroutable(c);
        return -1;
    }
    if (budget_aware(c)) { /* nearly spent: the cheap choice, without paying for a router */
        gw_call_routed(c, NULL, NULL);
        return 0;
    }
    if (gw->router_model != NULL) {
        const char *skip;
        int rc;
        int n = gw_router_candidates(gw->router, &c->rq, cands, GW_ROUTE_MAX_TARGETS);
        if (n < 2)
            skip = "one candidate, nothing to choose";
        else if (!model_allowed(c, gw->router_model)) /* its prompt would go where it may not */
            skip = "the router model is not allowed for this key";
        else if (health_wait(gw, gw->router_model, c->route_now_ms) > 0)
            skip = "the router model is unavailable";
        else if ((rc = gw_router_call_start(c, cands, n)) == 0)
            return 1;
        else
            skip = rc == GW_ELIMIT ? "the router call does not fit the key's limits"
                                   : "the router call could not start";
        gw_call_routed(c, NULL, skip);
        return 0;
    }
    gw_call_routed(c, NULL, NULL);
    return 0;
}

/* Resolve the model and check it may be used. Replies and returns -1 on refusal; 1 when the
 * decision is pending (LLM router); 0 when the attempts have begun. */
static int route(struct gw_call *c)
{
    struct gw *gw = c->w->gw;
    char msg[256];

    if (c->opts.provider[0] != '\0') {
        if (gw_provider_find(c->opts.provider) == NULL) {
            snprintf(msg, sizeof(msg), "unknown provider '%.16s' (anthropic, openai, gemini, xai, "
                     "perplexity)", c->opts.provider);
            reply_error(c, 400, "invalid_request_error", "unknown_provider", msg, 0);
            return -1;
        }
        if (!gw_provider_configured(gw, c->opts.provider)) {
            snprintf(msg, sizeof(msg), "the provider '%s' is not configured on this gateway",
                     c->opts.provider);
            reply_error(c, 400, "invalid_request_error", "provider_not_configured", msg, 0);
            return -1;
        }
        if (!list_allows(c->key->providers, c->opts.provider) ||
            !list_allows(c->key->org_providers, c->opts.provider)) {
            snprintf(msg, sizeof(msg), "this API key may not use the provider '%s'",
                     c->opts.provider);
            reply_error(c, 403, "permission_error", "provider_not_allowed", msg, 0);
            return -1;
        }
    }
    if (c->opts.auto_route || c->opts.model[0] == '\0')
        return route_auto(c);
    c->route_method = "explicit";
    const struct gw_model *m = gw_catalog_find(gw->catalog, c->opts.model);
    if (m == NULL) {
        snprintf(msg, sizeof(msg), "the model '%.64s' does not exist; GET /v1/models lists them",
                 c->opts.model);
        reply_error(c, 404, "invalid_request_error", "model_not_found", msg, 0);
        return -1;
    }
    if (c->opts.provider[0] != '\0' && strcmp(c->opts.provider, m->provider) != 0) {
        snprintf(msg, sizeof(msg), "the model '%.64s' is served by '%s', not '%.16s'",
                 c->opts.model, m->provider, c->opts.provider);
        reply_error(c, 400, "invalid_request_error", "provider_mismatch", msg, 0);
        return -1;
    }
    if (gw_provider_find(m->provider) == NULL || !gw_provider_configured(gw, m->provider)) {
        snprintf(msg, sizeof(msg), "the provider '%s' is not configured on this gateway",
                 m->provider);
        reply_error(c, 400, "invalid_request_error", "provider_not_configured", msg, 0);
        return -1;
    }
    if (!policy_allows(c, m)) {
        int org = list_allows(c->key->providers, m->provider) && list_allows(c->key->models, m->id);
        snprintf(msg, sizeof(msg), "%s may not use the model '%.64s'",
                 org ? "this API key's organization" : "this API key", c->opts.model);
        reply_error(c, 403, "permission_error", "model_not_allowed", msg, 0);
        return -1;
    }
    char asked[sizeof(c->opts.model)];
    gw_strlcpy(asked, c->opts.model, sizeof(asked));
    set_targets(c, m, NULL);
    gw_strlcpy(c->opts.model, asked, sizeof(c->opts.model)); /* answer with the name asked for */
    next_attempt(c);
    return 0;
}

/* ---- attempts ---- */

/* The request's row as it is reserved for the current target. */
static void fill_row(struct gw_call *c, struct gw_usage_row *r)
{
    struct gw *gw = c->w->gw;

    memset(r, 0, sizeof(*r));
    gw_strlcpy(r->request_id, c->rid, sizeof(r->request_id));
    r->org_id = c->key->org_id;
    r->key_row_id = c->key->id;
    if (strcmp(c->key->role, "subject") == 0) /* a subject session: its app client is the key */
        gw_strlcpy(r->subject, c->key->name, sizeof(r->subject));
    gw_strlcpy(r->provider, c->model->provider, sizeof(r->provider));
    gw_strlcpy(r->model, c->model->id, sizeof(r->model));
    gw_strlcpy(r->endpoint, gw_dialect_endpoint(c->dialect), sizeof(r->endpoint));
    gw_strlcpy(r->kind, "chat", sizeof(r->kind));
    r->stream = c->opts.stream;
    r->attempts = c->attempts;
    gw_strlcpy(r->route_method, c->route_method, sizeof(r->route_method));
    gw_strlcpy(r->state, "reserved", sizeof(r->state));
    int64_t out = gw_call_out_reserved(c); /* every choice may use the whole max_tokens */
    r->reserved_micros = gw_cost_worst_micros(c->model, c->input_estimate, out);
    r->reserved_tokens = c->input_estimate + out;
    gw_strlcpy(r->catalog_version, gw_catalog_version(gw->catalog), sizeof(r->catalog_version));
    gw_strlcpy(r->node, gw->cfg.node_id, sizeof(r->node));
    r->created_ms = c->row.request_id[0] != '\0' ? c->row.created_ms : gw_now_ms();
}

static void admit_run(struct gw_call *c, struct gw_store *s)
{
    gw_ledger_admit(&c->w->gw->ledger, s, &c->adm->a);
}

static void on_admitted(struct gw_call *c);
static void submit(struct gw_call *c, int writes, struct gw_store_write *write,
                   void (*run)(struct gw_call *c, struct gw_store *s), void (*done)(struct gw_call *c));

/* The attempt's reservation cannot be made: refuse the request (its row keeps the last
 * attempt's outcome). */
static void refuse_unrecorded(struct gw_call *c)
{
    give_back_pass(c, 0, 0);
    reply_error(c, 503, "service_unavailable", "store_unavailable",
                "the gateway cannot record usage right now; try again", 1);
    gw_call_end(c);
}

/* Hold the current target's worst case in every limit and make the usage row durable, both
 * before anything goes upstream (store work: on_admitted continues). For a fallback, the failed
 * attempt before keeps its own row and the request's row moves on to the new target. */
static void reserve(struct gw_call *c)
{
    int first = c->row.request_id[0] == '\0';
    struct gw_call_admission *ca = gw_malloc(sizeof(*ca));
    if (ca == NULL) {
        GW_LOG_ERROR("store", "req=%s out of memory reserving; refusing", c->rid);
        refuse_unrecorded(c);
        return;
    }
    c->adm = ca;
    struct gw_admission *a = &ca->a;

    /* what this request may cost in all: earlier attempts, the last one, this one's worst */
    int64_t prev_usd = first ? 0 : c->row.cost_micros;
    int64_t prev_tokens = first ? 0 : c->row.tokens_in + c->row.tokens_out;
    memset(a, 0, sizeof(*a));
    fill_row(c, &ca->row);
    a->q = gw_call_limit_req(c);
    a->q.usd = c->charged_usd + prev_usd + ca->row.reserved_micros;
    a->q.tokens = c->charged_tokens + prev_tokens + ca->row.reserved_tokens;
    a->q.request = 1;
    a->first = first;
    a->hold = &c->hold;
    a->held_usd = c->held_usd;
    a->held_tokens = c->held_tokens;
    a->row = &ca->row;
    if (!first) {
        struct gw_usage_row *ar = &ca->archive;
        *ar = c->row;
        snprintf(ar->request_id, sizeof(ar->request_id), "%.64s.%d", c->rid,
                 (c->attempts - 1) % 100);
        gw_strlcpy(ar->parent_request_id, c->rid, sizeof(ar->parent_request_id));
        gw_strlcpy(ar->kind, "attempt", sizeof(ar->kind));
        ar->attempts = 1;
        ar->latency_ms = (gw_mono_us() - c->t0_us) / 1000;
        ar->settled_ms = gw_now_ms();
        a->archive = ar;
    }
    if (gw_ledger_admit_write(&c->w->gw->ledger, a, &ca->write)) /* with others, maybe */
        submit(c, 1, &ca->write, NULL, on_admitted);
    else
        gw_call_submit(c, 1, admit_run, on_admitted);
}

static void start_attempt(struct gw_call *c);

/* The store has decided on ca (no longer c->adm: a fallback may begin another). */
static void admitted(struct gw_call *c, struct gw_call_admission *ca)
{
    struct gw_admission *a = &ca->a;

    if (c->job.write != NULL)
        gw_ledger_admit_written(a, c->job.write);
    if (c->job.batch_rc != 0) /* the row's write was lost */
        gw_ledger_abandon(&c->w->gw->ledger, a, GW_ESTORE);
    c->held_usd = a->now_held_usd;
    c->held_tokens = a->now_held_tokens;
    if (c->cl.ctx == NULL) { /* the client left (or shutdown) while the store decided */
        if (a->rc == 0) {
            if (!a->first) {
                c->charged_usd += c->row.cost_micros;
                c->charged_tokens += c->row.tokens_in + c->row.tokens_out;
            }
            c->row = ca->row;
            gw_strlcpy(c->row.state, "cancelled", sizeof(c->row.state));
        }
        give_back_pass(c, 0, 0);
        gw_call_end(c);
        return;
    }
    if (a->rc == GW_ELIMIT) {
        give_back_pass(c, 0, 0);
        if (!a->first) { /* this fallback does not fit: the next target */
            c->attempts--;
            trail_add(c, c->model, "skipped (over a limit)");
            next_attempt(c);
            return;
        }
        reply_limit(c, &a->why);
        gw_call_end(c);
        return;
    }
    if (a->rc != 0) {
        GW_LOG_ERROR("store", "req=%s could not reserve (%s); refusing", c->rid,
                     gw_strerror(a->rc));
        refuse_unrecorded(c);
        return;
    }
    if (!a->first) {
        c->charged_usd += c->row.cost_micros;
        c->charged_tokens += c->row.tokens_in + c->row.tokens_out;
    }
    c->row = ca->row;
    if (!c->reserved) {
        c->reserved = 1;
        gw_metrics_inflight(c->w->gw->metrics, 1);
    }
    start_attempt(c);
}

static void on_admitted(struct gw_call *c)
{
    struct gw_call_admission *ca = c->adm;
    c->adm = NULL;
    admitted(c, ca);
    gw_free(ca);
}

/* Build the upstream request for c->model. 0, or GW_EINVAL (eb says why) when this provider
 * cannot take the request, or another error. */
static int build(struct gw_call *c, struct gw_errbuf *eb)
{
    struct gw *gw = c->w->gw;
    struct gw_provider_conf *pc = gw_config_provider(&gw->cfg, c->model->provider);
    struct gw_provider_cfg pcfg = {
        .base_url = pc->base_url,
        .api_key = pc->api_key,
        .api_version = pc->api_version,
        .default_max_tokens = c->model->default_max_tokens,
        .reasoning = c->model->reasoning,
    };
    c->to = gw_config_timeouts(&gw->cfg, pc);
    c->max_out = attempt_max_out(c, c->model);
    json_object_set_new(c->canon, "model", json_string(c->model->wire_id));
    if (c->opts.max_tokens == 0 && c->capped) /* what is reserved is what may be generated */
        json_object_set_new(c->canon, "max_tokens", json_integer(c->max_out));
    /* a Messages request to an Anthropic model goes as the client sent it, unless memory added
     * turns to it; what only Anthropic takes goes nowhere else */
    int native = c->native != NULL && strcmp(c->model->provider, "anthropic") == 0 &&
                 c->opts.conversation_id[0] == '\0';
    if (c->native_only.msg[0] != '\0' && !native) {
        gw_errbuf_set(eb, "%s can go to an Anthropic model only, without conversation_id",
                      c->native_only.msg);
        return GW_EINVAL;
    }
    pcfg.native = native ? c->native : NULL;
    return c->ops->build(&pcfg, c->canon, c->model->wire_id, c->opts.stream, &c->up, eb);
}

static void give_back_pass(struct gw_call *c, int verdict, int ok)
{
    struct gw_breaker *b;
    if (c->pass == GW_PASS_DENIED || c->model == NULL ||
        (b = gw_breaker_of(c->w->gw, c->model->provider)) == NULL)
        return;
    if (verdict) {
        enum gw_breaker_state before = (enum gw_breaker_state)atomic_load(&b->state);
        enum gw_breaker_state after =
            gw_breaker_report(b, &c->w->gw->cfg.breaker, c->pass, ok, gw_now_ms());
        if (after != before)
            GW_LOG_WARN("breaker", "req=%s provider=%s circuit %s -> %s", c->rid,
                        c->model->provider, gw_breaker_state_name(before),
                        gw_breaker_state_name(after));
    } else {
        gw_breaker_abandon(b, c->pass);
    }
    c->pass = GW_PASS_DENIED;
}

/* The attempt cannot even be made (out of memory, our bug): 500, and the call ends. */
static void fail_internal(struct gw_call *c, const char *what, int rc)
{
    GW_LOG_ERROR("pipeline", "req=%s cannot %s the upstream call: %s", c->rid, what,
                 gw_strerror(rc));
    give_back_pass(c, 0, 0);
    reply_error(c, 500, "internal_error", "internal_error", "internal error", 0);
    gw_call_end(c);
}

/* Begin the attempt on c->model now (the breaker pass is held): build, then reserve. */
static void begin_attempt(struct gw_call *c)
{
    struct gw_errbuf eb = {{0}};

    int rc = build(c, &eb);
    if (rc == GW_EINVAL) {
        give_back_pass(c, 0, 0);
        if (c->next_target == 1) { /* the first choice: the request itself is at fault */
            reply_error(c, 400, "invalid_request_error", "invalid_request",
                        eb.msg[0] ? eb.msg : "the request cannot be sent to this provider", 0);
            gw_call_end(c);
            return;
        }
        trail_add(c, c->model, "cannot take this request");
        next_attempt(c);
        return;
    }
    if (rc != 0) {
        fail_internal(c, "build", rc);
        return;
    }
    c->attempts++;
    if (c->next_target > 1) { /* not the first choice: say so, and name what serves it */
        c->route_method = "fallback";
        gw_strlcpy(c->opts.model, c->model->id, sizeof(c->opts.model));
    }
    reserve(c);
}

/* Reserved: send it. */
static void start_attempt(struct gw_call *c)
{
    int rc = gw_attempt_start(c);
    if (rc != 0)
        fail_internal(c, "start", rc);
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    begin_attempt(arg);
}

/* Pick the next target that may be called and begin it (after the backoff), or end the call
 * with the last failure when nothing is left. */
static void next_attempt(struct gw_call *c)
{
    struct gw *gw = c->w->gw;
    const struct gw_fallback_conf *fc = &gw->cfg.fallback;
    int64_t now = gw_now_ms();
    int64_t soonest = 0;
    int cooling = 0; /* a target was skipped for its Retry-After */
    char why[96];

    while (c->next_target < c->ntargets && c->attempts < fc->max_attempts) {
        const struct gw_model *m = c->targets[c->next_target++];
        int64_t cool = gw_cooldown_left(&gw->cooldowns[m->index], now);
        if (cool > fc->max_retry_after_ms || (cool > 0 && c->attempts == 0)) {
            snprintf(why, sizeof(why), "skipped (rate limited for %lld s)",
                     (long long)((cool + 999) / 1000));
            trail_add(c, m, why);
            soonest = soonest == 0 || cool < soonest ? cool : soonest;
            cooling = 1;
            continue;
        }
        struct gw_breaker *b = gw_breaker_of(gw, m->provider);
        int pass = b ? gw_breaker_enter(b, now) : GW_PASS_NORMAL;
        if (pass == GW_PASS_DENIED) {
            int64_t wait = 0;
            (void)gw_breaker_available(b, now, &wait);
            snprintf(why, sizeof(why), "skipped (%s circuit open)", m->provider);
            trail_add(c, m, why);
            soonest = soonest == 0 || wait < soonest ? wait : soonest;
            continue;
        }
        c->model = m;
        c->ops = gw_provider_find(m->provider);
        c->pass = pass;
        int64_t delay = 0;
        if (c->attempts > 0) {
            uint32_t rnd = 0;
            if (gw_random(&rnd, sizeof(rnd)) != 0)
                rnd = (uint32_t)gw_mono_us();
            delay = gw_fallback_backoff_ms(fc, c->attempts, rnd);
            if (cool > delay) /* honour the provider's Retry-After for this model */
                delay = cool;
        }
        if (delay <= 0) {
            begin_attempt(c);
            return;
        }
        if (c->retry_ev == NULL &&
            (c->retry_ev = evtimer_new(c->w->base, on_retry_timer, c)) ==
                NULL) {
            begin_attempt(c);
            return;
        }
        struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
        GW_LOG_INFO("route", "req=%s next target %s in %lld ms", c->rid, m->id,
                    (long long)delay);
        evtimer_add(c->retry_ev, &tv);
        return;
    }
    if (c->attempts == 0) {
        int ra = (int)((soonest + 999) / 1000);
        if (cooling)
            reply_error(c, 429, "rate_limit_error", "upstream_rate_limited",
                        "the provider is rate limiting requests; retry later", ra > 0 ? ra : 1);
        else
            reply_error(c, 503, "service_unavailable", "no_provider_available",
                        "the providers that could serve this request are unavailable right "
                        "now (circuit open); retry later", ra > 0 ? ra : 1);
    } else {
        const struct gw_failure *f = &c->last;
        reply_error(c, f->status, f->type, f->code, f->msg, f->retry_after_s);
    }
    gw_call_end(c);
}

/* An attempt's failure in the metrics, by what went wrong upstream. */
static void count_upstream_error(const struct gw_call *c, const struct gw_failure *f)
{
    enum gw_metrics_upstream_err k;
    const char *code = f->code != NULL ? f->code : "";
    if (f->upstream_status == 429)
        k = GW_METRICS_UERR_RATE_LIMITED;
    else if (f->upstream_status >= 500)
        k = GW_METRICS_UERR_STATUS_5XX;
    else if (f->upstream_status >= 400)
        k = GW_METRICS_UERR_STATUS_4XX;
    else if (strcmp(code, "upstream_timeout") == 0)
        k = GW_METRICS_UERR_TIMEOUT;
    else if (strcmp(code, "upstream_bad_response") == 0)
        k = GW_METRICS_UERR_BAD_RESPONSE;
    else if (strcmp(code, "upstream_stream_interrupted") == 0)
        k = GW_METRICS_UERR_INTERRUPTED;
    else
        k = GW_METRICS_UERR_CONNECT;
    gw_metrics_upstream_error(c->w->gw->metrics, gw_metrics_provider(c->ops ? c->ops->name : NULL),
                              k);
}

void gw_call_attempt_failed(struct gw_call *c, const struct gw_failure *f)
{
    struct gw *gw = c->w->gw;
    int64_t now = gw_now_ms();
    char why[96];

    c->running = 0;
    give_back_pass(c, 1, !gw_outcome_is_provider_failure(f->outcome));
    gw_idem_attempt_outcome(c, f->outcome);
    count_upstream_error(c, f);
    if (f->cooldown_ms > 0) /* honour the provider's Retry-After for this model */
        gw_cooldown_extend(&gw->cooldowns[c->model->index], now + f->cooldown_ms);
    /* what this attempt costs */
    if (f->outcome == GW_OUT_UNCERTAIN) {
        gw_strlcpy(c->row.state, "uncertain", sizeof(c->row.state));
        c->row.cost_micros = c->row.reserved_micros;
    } else if (f->outcome == GW_OUT_BROKEN) {
        struct gw_usage u = c->opts.stream ? c->st.usage : c->usage;
        gw_call_usage_estimate(c, &u);
        gw_call_usage_to_row(c, &u);
        gw_strlcpy(c->row.state, "failed", sizeof(c->row.state));
    } else {
        gw_strlcpy(c->row.state, "failed", sizeof(c->row.state));
    }
    c->row.status = f->upstream_status;
    gw_strlcpy(c->row.error_code, f->code, sizeof(c->row.error_code));
    c->last = *f;
    if (f->msg == f->msgbuf)
        c->last.msg = c->last.msgbuf;
    if (f->upstream_status > 0)
        snprintf(why, sizeof(why), "%s %s (HTTP %d)", c->model->provider,
                 gw_outcome_name(f->outcome), f->upstream_status);
    else
        snprintf(why, sizeof(why), "%s %s", c->model->provider, gw_outcome_name(f->outcome));
    int retry = gw_fallback_may_retry(&gw->cfg.fallback, f->outcome, c->rq.f.has_tools,
                                      c->reply_started);
    GW_LOG_INFO("route", "req=%s attempt %d on %s failed: %s; %s", c->rid, c->attempts,
                c->model->id, why, retry ? "trying the next target" : "no retry");
    if (retry && f->skip_provider) { /* its other models would be refused the same way */
        int k = c->next_target;
        for (int i = c->next_target; i < c->ntargets; i++)
            if (strcmp(c->targets[i]->provider, c->model->provider) != 0)
                c->targets[k++] = c->targets[i];
        c->ntargets = k;
    }
    if (retry && c->next_target < c->ntargets && c->attempts < gw->cfg.fallback.max_attempts) {
        trail_add(c, c->model, why);
        gw_attempt_reset(c);
        next_attempt(c);
        return;
    }
    if (!retry && f->outcome == GW_OUT_UNCERTAIN && c->rq.f.has_tools)
        GW_LOG_WARN("route", "req=%s not retried: the request offers tools and its outcome on "
                    "%s is unknown", c->rid, c->model->provider);
    if (c->attempts > 1)
        trail_add(c, c->model, why);
    reply_error(c, f->status, f->type, f->code, c->last.msg, f->retry_after_s);
    gw_call_end(c);
}

void gw_call_attempt_done(struct gw_call *c, int provider_ok)
{
    c->running = 0;
    give_back_pass(c, 1, provider_ok);
    gw_call_end(c);
}

/* ---- call lifecycle ---- */

/* ---- keys shared by a worker's calls ----
 * A key's record is 3 kB; thousands of open streams of one key hold one copy, counted. */

const struct gw_key_rec gw_no_key;

struct gw_key_share {
    struct gw_key_share *next;
    int refs;
    struct gw_key_rec rec;
};

#define KEY_SHARE_BUCKETS 64

static struct gw_key_share **share_bucket(struct gw_worker *w, int64_t id)
{
    if (w->keys == NULL && (w->keys = gw_calloc(KEY_SHARE_BUCKETS, sizeof(*w->keys))) == NULL)
        return NULL;
    return &w->keys[(uint64_t)id % KEY_SHARE_BUCKETS];
}

const struct gw_key_rec *gw_worker_key_share(struct gw_worker *w, const struct gw_key_rec *fresh)
{
    struct gw_key_share **b = share_bucket(w, fresh->id), *e;
    if (b == NULL)
        return NULL;
    for (e = *b; e != NULL; e = e->next)
        if (e->rec.id == fresh->id && memcmp(&e->rec, fresh, sizeof(*fresh)) == 0) {
            e->refs++;
            return &e->rec;
        }
    if ((e = gw_malloc(sizeof(*e))) == NULL)
        return NULL;
    e->rec = *fresh; /* a changed record gets a copy of its own; calls holding the old keep it */
    e->refs = 1;
    e->next = *b;
    *b = e;
    return &e->rec;
}

static void key_release(struct gw_worker *w, const struct gw_key_rec *k)
{
    struct gw_key_share **p = w->keys != NULL ? share_bucket(w, k->id) : NULL;
    for (; p != NULL && *p != NULL; p = &(*p)->next)
        if (&(*p)->rec == k) {
            struct gw_key_share *e = *p;
            if (--e->refs == 0) {
                *p = e->next;
                gw_free(e);
            }
            return;
        }
}

void gw_worker_keys_free(struct gw_worker *w)
{
    for (int i = 0; w->keys != NULL && i < KEY_SHARE_BUCKETS; i++)
        while (w->keys[i] != NULL) {
            struct gw_key_share *e = w->keys[i];
            w->keys[i] = e->next;
            gw_free(e);
        }
    gw_free(w->keys);
    w->keys = NULL;
}

static void call_free(struct gw_call *c)
{
    gw_session_auth_free(c->sess);
    c->sess = NULL;
    if (c->key_own != NULL)
        gw_free(c->key_own);
    else if (c->key != &gw_no_key)
        key_release(c->w, c->key);
    json_decref(c->parsed);
    gw_attempt_reset(c);
    gw_sse_cleanup(&c->sse);
    gw_buf_cleanup(&c->body);
    gw_buf_cleanup(&c->out);
    gw_buf_cleanup(&c->relay);
    gw_buf_cleanup(&c->relay_delta);
    json_decref(c->native);
    json_decref(c->canon);
    gw_memory_free(c->mem);
    if (c->timer_ev != NULL)
        event_free(c->timer_ev);
    if (c->retry_ev != NULL)
        event_free(c->retry_ev);
    gw_free(c->adm); /* NULL: a call ends after its admission's done */
    gw_free(c);
}

/* ---- store work ---- */

static void job_run(struct gw_store_job *j, struct gw_store *s)
{
    struct gw_call *c = (struct gw_call *)((char *)j - offsetof(struct gw_call, job));
    c->job_run(c, s);
}

static void job_done(struct gw_store_job *j)
{
    struct gw_call *c = (struct gw_call *)((char *)j - offsetof(struct gw_call, job));
    c->job_pending = 0;
    gw_metrics_store(c->w->gw->metrics, j->writes ? GW_METRICS_STORE_WRITE : GW_METRICS_STORE_READ,
                     gw_mono_us() - c->job_t0_us);
    c->job_done(c);
}

static void submit(struct gw_call *c, int writes, struct gw_store_write *write,
                   void (*run)(struct gw_call *c, struct gw_store *s), void (*done)(struct gw_call *c))
{
    c->job.writes = writes;
    c->job.write = write;
    c->job_run = run;
    c->job_done = done;
    c->job.run = job_run;
    c->job.done = job_done;
    c->job_pending = 1;
    c->job_t0_us = gw_mono_us();
    gw_store_submit(c->w->exec, &c->job);
}

void gw_call_submit(struct gw_call *c, int writes,
                    void (*run)(struct gw_call *c, struct gw_store *s), void (*done)(struct gw_call *c))
{
    submit(c, writes, NULL, run, done);
}

/* A finished row on its way to the store; it owns copies of all it needs. */
struct settle_job {
    struct gw_store_job job;
    const struct gw_ledger *ledger;
    struct gw_hold hold;
    struct gw_usage_row row;
    int64_t usd, tokens, held_usd, held_tokens;
    struct gw_limit_req q; /* scopes, and their limits (below) */
    struct gw_limit_set key_limits, org_limits;
    struct gw_store_write write; /* when the settlement is a plain write */
    int rc;
};

static void settle_run(struct gw_store_job *j, struct gw_store *s)
{
    struct settle_job *sj = (struct settle_job *)j;
    sj->rc = gw_ledger_settle(sj->ledger, s, &sj->hold, &sj->row, sj->usd, sj->tokens, &sj->q,
                              sj->held_usd, sj->held_tokens);
}

static void settle_done(struct gw_store_job *j)
{
    struct settle_job *sj = (struct settle_job *)j;
    if (j->write != NULL)
        sj->rc = j->write->rc;
    if (j->batch_rc != 0)
        sj->rc = j->batch_rc;
    if (sj->rc != 0)
        GW_LOG_ERROR("store", "req=%s could not settle the usage row: %s", sj->row.request_id,
                     gw_strerror(sj->rc));
    gw_free(sj);
}

void gw_call_settle_row(struct gw_call *c, struct gw_hold *hold, const struct gw_usage_row *row,
                        int64_t usd, int64_t tokens, int64_t held_usd, int64_t held_tokens)
{
    struct settle_job *sj = gw_calloc(1, sizeof(*sj));
    if (sj == NULL) { /* out of memory: write it here rather than lose it */
        GW_LOG_ERROR("store", "req=%s out of memory settling; the row stays as reserved",
                     row->request_id);
        return;
    }
    sj->ledger = &c->w->gw->ledger;
    if (hold != NULL) {
        sj->hold = *hold;
        memset(hold, 0, sizeof(*hold)); /* transferred */
    }
    sj->row = *row;
    sj->usd = usd;
    sj->tokens = tokens;
    sj->held_usd = held_usd;
    sj->held_tokens = held_tokens;
    sj->q.key_id = c->key->id;
    sj->q.org_id = c->key->org_id;
    sj->key_limits = c->limits;
    sj->q.key = &sj->key_limits;
    if (c->key->org_id > 0) {
        sj->org_limits = c->key->org_limits;
        sj->q.org = &sj->org_limits;
    }
    sj->job.run = settle_run;
    sj->job.done = settle_done;
    sj->job.writes = 1;
    if (gw_ledger_settle_write(sj->ledger, &sj->row, sj->usd, sj->tokens, &sj->q, sj->held_usd,
                               sj->held_tokens, &sj->write))
        sj->job.write = &sj->write; /* with others, maybe */
    gw_store_submit(c->w->exec, &sj->job);
}

/* ---- call lifecycle ---- */

/* One JSON line per request: who, what, how it went, what it cost (never content or keys). */
static void access_log(const struct gw_call *c)
{
    struct gw_buf b;
    char ts[64], cost[48];
    int n = 0, rc;
    if (!gw_log_enabled(GW_LOG_LVL_INFO))
        return;
    gw_iso_time_ms(gw_now_ms(), ts, sizeof(ts));
    snprintf(cost, sizeof(cost), "%lld.%06lld", (long long)(c->row.cost_micros / 1000000),
             (long long)(c->row.cost_micros % 1000000));
    gw_buf_init(&b, 8192);
    if ((rc = gw_buf_add(&b, "{", 1)) || (rc = gw_splice_member_str(&b, &n, "ts", ts)) ||
        (rc = gw_splice_member_str(&b, &n, "level", "info")) ||
        (rc = gw_splice_member_str(&b, &n, "event", "request")) ||
        (rc = gw_splice_member_str(&b, &n, "request_id", c->rid)) ||
        (rc = gw_splice_member_int(&b, &n, "org_id", c->key->org_id)) ||
        (rc = gw_splice_member_str(&b, &n, "key_id", c->key->key_id)) ||
        (rc = gw_splice_member_str(&b, &n, "endpoint", gw_dialect_endpoint(c->dialect))) ||
        (rc = gw_splice_member_str(&b, &n, "provider", c->ops ? c->ops->name : "")) ||
        (rc = gw_splice_member_str(&b, &n, "model", c->model ? c->model->id : c->opts.model)) ||
        (rc = gw_splice_member_str(&b, &n, "route_method",
                                   c->route_method ? c->route_method : "")) ||
        (rc = gw_splice_member_int(&b, &n, "stream", c->opts.stream)) ||
        (rc = gw_splice_member_int(&b, &n, "status", c->row.status)) ||
        (rc = gw_splice_member_str(&b, &n, "state", c->row.state)) ||
        (rc = gw_splice_member_str(&b, &n, "error_code", c->row.error_code)) ||
        (rc = gw_splice_member_int(&b, &n, "latency_ms", c->row.latency_ms)) ||
        (rc = gw_splice_member_int(&b, &n, "tokens_in", c->row.tokens_in)) ||
        (rc = gw_splice_member_int(&b, &n, "tokens_out", c->row.tokens_out)) ||
        (rc = gw_splice_member_raw(&b, &n, "cost_usd", cost, strlen(cost))) ||
        (rc = gw_splice_member_int(&b, &n, "attempts", c->attempts)) ||
        (c->trail[0] && (rc = gw_splice_member_str(&b, &n, "fallback", c->trail))) ||
        (rc = gw_buf_add(&b, "}", 2))) /* with its NUL */
        GW_LOG_WARN("access", "req=%s the access line could not be written: %s", c->rid,
                    gw_strerror(rc));
    else
        gw_log_line(GW_LOG_LVL_INFO, b.data);
    gw_buf_cleanup(&b);
}

/* The request in the metrics: count, latency, tokens and cost by provider, uncertain ends. */
static void count_request(const struct gw_call *c)
{
    struct gw_metrics *m = c->w->gw->metrics;
    enum gw_metrics_provider p = gw_metrics_provider(c->ops ? c->ops->name : NULL);
    gw_metrics_request(m, c->dialect == GW_DIALECT_SIMPLE     ? GW_METRICS_EP_LLM_CHAT
                          : c->dialect == GW_DIALECT_MESSAGES ? GW_METRICS_EP_MESSAGES
                                                              : GW_METRICS_EP_CHAT_COMPLETIONS,
                       p, c->row.status, gw_mono_us() - c->t0_us);
    if (c->row.tokens_in > 0 || c->row.tokens_out > 0 || c->row.cost_micros > 0)
        gw_metrics_tokens(m, p, c->row.tokens_in, c->row.tokens_out, c->row.cost_micros);
    if (strcmp(c->row.state, "uncertain") == 0)
        gw_metrics_uncertain(m);
}

void gw_call_end(struct gw_call *c)
{
    struct gw_worker *w = c->w;

    if (c->cl.ctx != NULL) /* a path forgot to answer: our bug, still answer */
        reply_error(c, 500, "internal_error", "internal_error", "internal error", 0);
    if (c->side != NULL)
        gw_side_call_cancel(c);
    gw_store_cork(w->exec); /* what the end writes goes to the store together */
    gw_idem_end(c); /* the answer kept, the key quarantined, or given back */
    gw_memory_end(c); /* a complete answer's turns appended to its conversation */
    c->row.latency_ms = (gw_mono_us() - c->t0_us) / 1000;
    c->row.settled_ms = gw_now_ms();
    c->row.attempts = c->attempts;
    if (c->route_method != NULL)
        gw_strlcpy(c->row.route_method, c->route_method, sizeof(c->row.route_method));
    if (c->row.state[0] == '\0')
        gw_strlcpy(c->row.state, "refused", sizeof(c->row.state)); /* never reached a provider */
    else if (strcmp(c->row.state, "reserved") == 0)
        gw_strlcpy(c->row.state, c->row.status == 200 ? "settled" : "failed",
                   sizeof(c->row.state));
    /* the row gets its final state; the limits keep what it really cost, the rest of the worst
     * case is refunded */
    if (c->row.request_id[0] != '\0' || c->hold.active)
        gw_call_settle_row(c, &c->hold, &c->row, c->charged_usd + c->row.cost_micros,
                           c->charged_tokens + c->row.tokens_in + c->row.tokens_out,
                           c->held_usd, c->held_tokens);
    gw_store_uncork(w->exec);
    access_log(c);
    count_request(c);
    if (c->reserved)
        gw_metrics_inflight(w->gw->metrics, -1);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else if (w->calls == c)
        w->calls = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    w->inflight--;
    call_free(c);
    if (w->hw != NULL)
        gw_http_worker_request_done(w->hw);
    else if (w->idle != NULL && w->inflight == 0)
        w->idle(w->idle_arg);
}

/* Stop whatever runs for c (router call, transfer, backoff) without callbacks. */
static void stop_everything(struct gw_call *c)
{
    if (c->side != NULL)
        gw_side_call_cancel(c);
    gw_attempt_cancel(c);
    if (c->retry_ev != NULL)
        evtimer_del(c->retry_ev);
}

static void on_client_close(void *arg)
{
    struct gw_call *c = arg;
    GW_LOG_INFO("http", "req=%s client closed the connection; cancelling the upstream call",
                c->rid);
    int was_running = c->running;
    gw_idem_interrupted(c);
    stop_everything(c);
    /* the provider was answering: it is healthy; otherwise no verdict */
    if (!c->job_pending)
        give_back_pass(c, c->got_first_byte, 1);
    if (was_running) {
        struct gw_usage u = c->opts.stream ? c->st.usage : c->usage;
        gw_call_usage_estimate(c, &u);
        gw_call_usage_to_row(c, &u);
        gw_strlcpy(c->row.state, "cancelled", sizeof(c->row.state));
    } /* else: between attempts the row keeps the last attempt's outcome */
    c->row.status = 499;
    gw_strlcpy(c->row.error_code, "client_closed", sizeof(c->row.error_code));
    c->cl.ops->abandon(&c->cl, c->reply_started);
    if (c->job_pending)
        return; /* the store work's done sees the call answered and ends it */
    gw_call_end(c);
}

void gw_pipeline_abort_all(struct gw_worker *w)
{
    struct gw_call *next;
    for (struct gw_call *c = w->calls; c != NULL; c = next) {
        next = c->next;
        int was_running = c->running;
        gw_idem_interrupted(c);
        stop_everything(c);
        if (was_running) {
            gw_strlcpy(c->row.state, "uncertain", sizeof(c->row.state));
            c->row.cost_micros = c->row.reserved_micros;
        }
        if (c->reply_started)
            gw_attempt_finish_stream(c, "shutting_down", "the gateway is shutting down");
        else
            reply_error(c, 503, "service_unavailable", "shutting_down",
                        "the gateway is shutting down", 1);
        if (c->job_pending)
            continue; /* ends when its store work is done */
        give_back_pass(c, 0, 0);
        gw_call_end(c);
    }
}

static int parse_body(struct gw_call *c, json_t **out)
{
    size_t len = 0;
    const char *data = c->cl.ops->body(&c->cl, &len);
    struct gw_errbuf eb = {{0}};
    char msg[320];

    if (len > c->w->gw->cfg.max_body) {
        snprintf(msg, sizeof(msg), "the request body is larger than %zu bytes",
                 c->w->gw->cfg.max_body);
        reply_error(c, 413, "invalid_request_error", "request_too_large", msg, 0);
        return -1;
    }
    c->input_estimate = tokens_estimate(len);
    *out = gw_json_parse(data ? data : "", len, &eb);
    if (*out == NULL) {
        snprintf(msg, sizeof(msg), "the body is not valid JSON: %s", eb.msg);
        reply_error(c, 400, "invalid_request_error", "invalid_json", msg, 0);
        return -1;
    }
    return 0;
}

/* The key is known (c->job_rc 0): its tier and limits; 1 when routing wants to know how much
 * of its budget is spent (store work: budget_run). */
static int key_known(struct gw_call *c)
{
    c->tier = gw_config_tier(&c->w->gw->cfg, c->key->tier);
    effective_limits(c);
    return (c->limits.daily_usd_micros > 0 || c->limits.monthly_usd_micros > 0) &&
           gw_router_budget_percent(c->w->gw->router) > 0;
}

static void budget_run(struct gw_call *c, struct gw_store *s)
{
    struct gw_limit_req q = gw_call_limit_req(c);
    if (gw_ledger_view(&c->w->gw->ledger, s, &q, &c->budget) != 0)
        memset(&c->budget, 0, sizeof(c->budget)); /* routed without it */
}

/* Store work: find the session's or the host's subject's key, and (with a budget) how much of
 * it is spent. */
static void auth_run(struct gw_call *c, struct gw_store *s)
{
    if (c->sess != NULL)
        c->job_rc = gw_session_lookup(s, c->sess, c->key_own);
    else /* a subject the in-process host vouches for */
        c->job_rc = gw_subject_key(s, c->cl.subject_client, c->cl.subject, gw_now_ms(),
                                   c->key_own);
    if (c->job_rc == 0 && key_known(c))
        budget_run(c, s);
}

static void on_authed(struct gw_call *c);

/* A presented key's lookup is done (a plain read): check it, then its budget if routing wants
 * it (a second store job), then on. */
static void on_key_read(struct gw_call *c)
{
    c->job_rc = gw_auth_check(c->key_read.rc, c->key_own);
    if (c->job_rc == 0 && c->cl.ctx != NULL && key_known(c)) {
        gw_call_submit(c, 0, budget_run, on_authed);
        return;
    }
    on_authed(c);
}

/* Validated (and the Idempotency-Key claimed): route, and go. */
static void go_route(struct gw_call *c)
{
    effective_limits(c); /* again: capping depends on the request's max_tokens too */
    c->rq.body = c->canon;
    c->rq.input_tokens = c->input_estimate;
    c->rq.max_output_tokens = c->opts.max_tokens;
    c->rq.allowed = model_usable;
    c->rq.arg = c;
    c->route_now_ms = gw_now_ms();
    gw_route_req_init(&c->rq);
    if (route(c) < 0)
        gw_call_end(c);
}

/* The Idempotency-Key claimed (or none): the conversation's history, then routing. */
static void go_memory(struct gw_call *c) { gw_memory_load(c, go_route); }

/* The key is known: validate, then claim the Idempotency-Key or route at once. */
static void on_authed(struct gw_call *c)
{
    struct gw_errbuf eb = {{0}};
    json_t *body = c->parsed;

    c->parsed = NULL;
    OPENSSL_cleanse(c->key_hash, sizeof(c->key_hash));
    if (c->cl.ctx == NULL) /* the client left meanwhile */
        goto done;
    if (c->job_rc == 0) { /* the worker's calls of one key share one copy of its record */
        const struct gw_key_rec *shared = gw_worker_key_share(c->w, c->key_own);
        if (shared != NULL) {
            gw_free(c->key_own);
            c->key_own = NULL;
            c->key = shared;
        }
    }
    if (c->sess != NULL && c->job.batch_rc != 0) /* the nonce's burn was lost */
        c->job_rc = GW_ESTORE;
    if (c->cl.subject_client != NULL && c->job_rc != 0) { /* the host's subject */
        if (c->job_rc == GW_EDENIED)
            reply_error(c, 403, "permission_error", "app_client_revoked",
                        "the app client is unknown, revoked or not approved", 0);
        else
            reply_error(c, 503, "service_unavailable", "store_unavailable",
                        "the gateway cannot check the caller right now", 1);
        goto done;
    }
    if (c->sess != NULL ? gw_session_end(c->cl.ops->http(&c->cl), c->rid, c->job_rc, c->sess) != 0
                        : gw_auth_client_end(&c->cl, c->rid, c->job_rc, c->key) != 0) {
        c->cl.ops->watch(&c->cl, 0);
        c->cl.ctx = NULL; /* answered */
        goto done;
    }
    if (c->dialect == GW_DIALECT_SIMPLE || c->dialect == GW_DIALECT_MESSAGES) {
        if ((c->dialect == GW_DIALECT_SIMPLE ? gw_simple_to_chat(body, &c->canon, &eb)
                                             : gw_messages_to_chat(body, 0, &c->canon, &eb,
                                                                   &c->native_only)) != 0) {
            reply_error(c, 400, "invalid_request_error", "invalid_request",
                        eb.msg[0] ? eb.msg : "out of memory", 0);
            goto done;
        }
    } else {
        c->canon = json_incref(body);
    }
    if (c->dialect == GW_DIALECT_MESSAGES)
        c->native = json_incref(body);
    if (gw_chat_validate(c->canon, &c->opts, &eb) != 0) {
        reply_error(c, 400, "invalid_request_error", "invalid_request", eb.msg, 0);
        goto done;
    }
    if (c->dialect == GW_DIALECT_SIMPLE)
        c->opts.stream = 0;
    if (gw_memory_begin(c) != 0)
        goto done;
    json_decref(body);
    if (c->idem != NULL)
        gw_idem_claim(c, go_memory);
    else
        go_memory(c);
    return;
done:
    json_decref(body);
    gw_call_end(c);
}

void gw_pipeline_chat(struct gw_worker *w, const struct gw_client *client,
                      const char *request_id, enum gw_dialect dialect)
{
    struct gw_call *c = gw_calloc(1, sizeof(*c));
    json_t *body = NULL;

    if (c == NULL) {
        struct gw_client cl = *client;
        gw_client_reply_error(&cl, 503, "service_unavailable", "overloaded", "out of memory",
                              request_id, 1);
        return;
    }
    c->w = w;
    c->key = &gw_no_key;
    c->cl = *client;
    c->cl.gone = on_client_close;
    c->cl.drained = gw_attempt_client_drained;
    c->cl.arg = c;
    c->dialect = dialect;
    c->t0_us = gw_mono_us();
    c->created = gw_now_s();
    gw_strlcpy(c->rid, request_id, sizeof(c->rid));
    const char *sp = dialect == GW_DIALECT_MESSAGES ? "msg_" : "chatcmpl-";
    size_t spl = strlen(sp);
    memcpy(c->stream_id, sp, spl);
    gw_strlcpy(c->stream_id + spl, request_id, sizeof(c->stream_id) - spl);
    gw_attempt_init(c);
    c->next = w->calls;
    if (w->calls != NULL)
        w->calls->prev = c;
    w->calls = c;
    w->inflight++;
    if (c->timer_ev == NULL) {
        reply_error(c, 503, "service_unavailable", "overloaded", "out of memory", 1);
        goto done;
    }

    if (parse_body(c, &body) != 0)
        goto done;
    size_t len = 0;
    const char *data = c->cl.ops->body(&c->cl, &len); /* the bytes just parsed */
    if (gw_idem_begin(c, data ? data : "", len) < 0)
        goto done;
    /* subject sessions sign HTTP requests: an in-process caller has none */
    struct evhttp_request *http = c->cl.ops->http(&c->cl);
    int session = http != NULL ? gw_session_begin(w, http, c->rid, &c->sess) : 0;
    if (session < 0 || (session == 0 && c->cl.subject_client == NULL &&
                        gw_auth_client_begin(w, &c->cl, c->rid, c->key_hash) != 0)) {
        c->cl.ctx = NULL; /* answered */
        goto done;
    }
    if ((c->key_own = gw_calloc(1, sizeof(*c->key_own))) == NULL) {
        reply_error(c, 503, "service_unavailable", "overloaded", "out of memory", 1);
        goto done;
    }
    c->key = c->key_own;
    c->parsed = body;
    /* from here on the call waits (store, router, backoff, upstream): watch the client */
    c->cl.ops->watch(&c->cl, 1);
    if (session || c->cl.subject_client != NULL) {
        gw_call_submit(c, session, auth_run, on_authed); /* a session's check burns its nonce */
        return;
    }
    c->key_read = (struct gw_store_write){.key_hash = c->key_hash, .key = c->key_own};
    submit(c, 0, &c->key_read, NULL, on_key_read);
    return;
done:
    json_decref(body);
    gw_call_end(c);
}
