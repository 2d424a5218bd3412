/*
 * util/metrics — fixed registry of relaxed atomic counters, rendered as Prometheus text 0.0.4.
 * See metrics.h for the contract.
 *
 * Invariants:
 * - Every series is a slot in a fixed array indexed by the (clamped) label enums; an update is
 *   one or two relaxed fetch_adds and nothing else.
 * - A histogram stores non-cumulative bucket counts (one add per observation, plus one for the
 *   sum) and no separate count: the render derives the cumulative buckets and _count from one
 *   snapshot of the buckets, so they always agree.
 * - Families updated by the same call share cache lines; different families start on their own
 *   line, so unrelated updates from different workers do not false-share. The struct is
 *   over-aligned, so gw_metrics_new aligns it by hand inside a gw_calloc block.
 * - Label values in the tables below are plain [a-z0-9_] and are written as they are; only
 *   caller-supplied text (build info) goes through label escaping.
 */
#include "util/metrics.h"

#include <inttypes.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/mem.h"

#define CACHELINE 64
#define NBOUNDS 16
#define NBUCKETS (NBOUNDS + 1) /* the last one holds what is above every bound (+Inf only) */
#define NSTATUS 3
#define NDIR 2

/* Bucket upper bounds (inclusive) in microseconds, and their le label as rendered. */
static const int64_t bound_us[NBOUNDS] = {500,     1000,    2500,    5000,     10000,    25000,
                                          50000,   100000,  250000,  500000,   1000000,  2500000,
                                          5000000, 10000000, 30000000, 60000000};
static const char *const bound_le[NBOUNDS] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                              "0.05",   "0.1",   "0.25",   "0.5",   "1",    "2.5",
                                              "5",      "10",    "30",     "60"};

static const char *const endpoint_names[GW_METRICS_EP_COUNT] = {"chat_completions", "llm_chat",
                                                                "messages", "other"};
static const char *const provider_names[GW_METRICS_PROV_COUNT] = {
    "anthropic", "openai", "gemini", "xai", "perplexity", "none"};
static const char *const status_names[NSTATUS] = {"2xx", "4xx", "5xx"};
static const char *const dir_names[NDIR] = {"input", "output"};
static const char *const uerr_names[GW_METRICS_UERR_COUNT] = {
    "timeout", "connect", "status_4xx", "status_5xx", "rate_limited", "bad_response", "interrupted"};
static const char *const store_names[GW_METRICS_STORE_COUNT] = {"read", "write"};

struct hist {
    alignas(CACHELINE) _Atomic uint64_t bucket[NBUCKETS];
    _Atomic uint64_t sum_us;
};

struct gw_metrics {
    void *base; /* what gw_calloc returned; the struct sits aligned up inside it */
    alignas(CACHELINE) _Atomic uint64_t requests[GW_METRICS_EP_COUNT][GW_METRICS_PROV_COUNT]
                                                [NSTATUS];
    struct hist req_dur[GW_METRICS_EP_COUNT];
    struct hist up_dur[GW_METRICS_PROV_COUNT];
    alignas(CACHELINE) _Atomic uint64_t tokens[GW_METRICS_PROV_COUNT][NDIR];
    _Atomic uint64_t cost_micros[GW_METRICS_PROV_COUNT]; /* added with the tokens */
    alignas(CACHELINE) _Atomic uint64_t uerr[GW_METRICS_PROV_COUNT][GW_METRICS_UERR_COUNT];
    alignas(CACHELINE) _Atomic int64_t inflight;
    alignas(CACHELINE) _Atomic uint64_t uncertain;
    struct hist store_dur[GW_METRICS_STORE_COUNT];
};

struct gw_metrics *gw_metrics_new(void)
{
    /* Zeroed memory is a valid zero for these lock-free integer atomics. */
    char *raw = gw_calloc(1, sizeof(struct gw_metrics) + CACHELINE - 1);
    if (raw == NULL)
        return NULL;
    uintptr_t at = ((uintptr_t)raw + CACHELINE - 1) & ~(uintptr_t)(CACHELINE - 1);
    struct gw_metrics *m = (struct gw_metrics *)(void *)(raw + (at - (uintptr_t)raw));
    m->base = raw;
    return m;
}

void gw_metrics_free(struct gw_metrics *m)
{
    if (m != NULL)
        gw_free(m->base);
}

/* ---- names ---- */

static int lookup(const char *const *names, int n, const char *s, size_t len)
{
    if (s == NULL)
        return -1;
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
            return i;
    return -1;
}

enum gw_metrics_endpoint gw_metrics_endpoint(const char *name)
{
    int i = lookup(endpoint_names, GW_METRICS_EP_COUNT, name, name ? strlen(name) : 0);
    return i < 0 ? GW_METRICS_EP_OTHER : (enum gw_metrics_endpoint)i;
}

enum gw_metrics_provider gw_metrics_provider(const char *name)
{
    int i = lookup(provider_names, GW_METRICS_PROV_COUNT, name, name ? strlen(name) : 0);
    return i < 0 ? GW_METRICS_PROV_NONE : (enum gw_metrics_provider)i;
}

enum gw_metrics_endpoint gw_metrics_endpoint_for_path(const char *path)
{
    static const char *const paths[] = {"/v1/chat/completions", "/api/v1/llm/chat",
                                        "/v1/messages"};
    static const enum gw_metrics_endpoint eps[] = {
        GW_METRICS_EP_CHAT_COMPLETIONS, GW_METRICS_EP_LLM_CHAT, GW_METRICS_EP_MESSAGES};
    int i = lookup(paths, 3, path, path ? strcspn(path, "?") : 0);
    return i < 0 ? GW_METRICS_EP_OTHER : eps[i];
}

const char *gw_metrics_endpoint_name(enum gw_metrics_endpoint ep)
{
    return (unsigned)ep < GW_METRICS_EP_COUNT ? endpoint_names[ep] : "other";
}

const char *gw_metrics_provider_name(enum gw_metrics_provider p)
{
    return (unsigned)p < GW_METRICS_PROV_COUNT ? provider_names[p] : "none";
}

/* ---- updates (hot path) ---- */

static inline void add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t nonneg(int64_t v) { return v > 0 ? (uint64_t)v : 0; }

static inline unsigned clamp_ep(enum gw_metrics_endpoint ep)
{
    return (unsigned)ep < GW_METRICS_EP_COUNT ? (unsigned)ep : GW_METRICS_EP_OTHER;
}

static inline unsigned clamp_prov(enum gw_metrics_provider p)
{
    return (unsigned)p < GW_METRICS_PROV_COUNT ? (unsigned)p : GW_METRICS_PROV_NONE;
}

/* Index into status_names; "no status" (0, garbage) counts as a server-side failure. */
static inline unsigned status_class(int status)
{
    if (status >= 400 && status <= 499)
        return 1;
    if (status >= 100 && status <= 399)
        return 0;
    return 2;
}

static inline void observe(struct hist *h, int64_t us)
{
    uint64_t v = nonneg(us);
    int i = 0;
    while (i < NBOUNDS && v > (uint64_t)bound_us[i])
        i++;
    add(&h->bucket[i], 1);
    add(&h->sum_us, v);
}

void gw_metrics_request(struct gw_metrics *m, enum gw_metrics_endpoint ep,
                        enum gw_metrics_provider p, int status, int64_t duration_us)
{
    if (m == NULL)
        return;
    unsigned e = clamp_ep(ep);
    add(&m->requests[e][clamp_prov(p)][status_class(status)], 1);
    observe(&m->req_dur[e], duration_us);
}

void gw_metrics_upstream(struct gw_metrics *m, enum gw_metrics_provider p, int64_t duration_us)
{
    if (m == NULL)
        return;
    observe(&m->up_dur[clamp_prov(p)], duration_us);
}

void gw_metrics_tokens(struct gw_metrics *m, enum gw_metrics_provider p, int64_t in_tokens,
                       int64_t out_tokens, int64_t cost_micros)
{
    if (m == NULL)
        return;
    unsigned i = clamp_prov(p);
    if (in_tokens > 0)
        add(&m->tokens[i][0], (uint64_t)in_tokens);
    if (out_tokens > 0)
        add(&m->tokens[i][1], (uint64_t)out_tokens);
    if (cost_micros > 0)
        add(&m->cost_micros[i], (uint64_t)cost_micros);
}

void gw_metrics_upstream_error(struct gw_metrics *m, enum gw_metrics_provider p,
                               enum gw_metrics_upstream_err kind)
{
    if (m == NULL || (unsigned)kind >= GW_METRICS_UERR_COUNT)
        return;
    add(&m->uerr[clamp_prov(p)][kind], 1);
}

void gw_metrics_inflight(struct gw_metrics *m, int delta)
{
    if (m == NULL)
        return;
    atomic_fetch_add_explicit(&m->inflight, (int64_t)delta, memory_order_relaxed);
}

void gw_metrics_uncertain(struct gw_metrics *m)
{
    if (m == NULL)
        return;
    add(&m->uncertain, 1);
}

void gw_metrics_store(struct gw_metrics *m, enum gw_metrics_store_op op, int64_t duration_us)
{
    if (m == NULL || (unsigned)op >= GW_METRICS_STORE_COUNT)
        return;
    observe(&m->store_dur[op], duration_us);
}

/* ---- rendering ---- */

/* Output with a sticky first error, so the render reads as a plain sequence of writes. */
struct out {
    struct gw_buf *b;
    int rc;
};

static void put(struct out *o, const char *fmt, ...) GW_PRINTF(2, 3);
static void put(struct out *o, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (o->rc != 0)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* Every format here is short: names and labels come from the tables above. */
    if (n < 0 || (size_t)n >= sizeof(line)) {
        o->rc = GW_EINTERNAL;
        return;
    }
    o->rc = gw_buf_add(o->b, line, (size_t)n);
}

/* Append s as a label value: backslash, double quote and line feed are escaped (0.0.4). */
static void put_escaped(struct out *o, const char *s)
{
    if (s == NULL)
        s = "";
    while (o->rc == 0 && *s != '\0') {
        size_t run = strcspn(s, "\\\"\n");
        if (run > 0)
            o->rc = gw_buf_add(o->b, s, run);
        s += run;
        if (o->rc != 0 || *s == '\0')
            break;
        o->rc = gw_buf_adds(o->b, *s == '\n' ? "\\n" : *s == '"' ? "\\\"" : "\\\\");
        s++;
    }
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t load(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Microseconds as exact decimal seconds. */
static void put_micros(struct out *o, uint64_t us)
{
    put(o, "%" PRIu64 ".%06" PRIu64 "\n", us / 1000000, us % 1000000);
}

static void hist_series(struct out *o, const char *name, const char *label, const char *value,
                        const struct hist *h)
{
    uint64_t cum = 0;
    for (int i = 0; i < NBUCKETS; i++) {
        cum += load(&h->bucket[i]);
        put(o, "%s_bucket{%s=\"%s\",le=\"%s\"} %" PRIu64 "\n", name, label, value,
            i < NBOUNDS ? bound_le[i] : "+Inf", cum);
    }
    put(o, "%s_sum{%s=\"%s\"} ", name, label, value);
    put_micros(o, load(&h->sum_us));
    put(o, "%s_count{%s=\"%s\"} %" PRIu64 "\n", name, label, value, cum);
}

static void render_counters(struct out *o, const struct gw_metrics *m)
{
    family(o, "llmgw_requests_total", "counter", "Client requests finished, by endpoint, "
                                                 "provider and HTTP status class.");
    for (int e = 0; e < GW_METRICS_EP_COUNT; e++)
        for (int p = 0; p < GW_METRICS_PROV_COUNT; p++)
            for (int s = 0; s < NSTATUS; s++)
                put(o,
                    "llmgw_requests_total{endpoint=\"%s\",provider=\"%s\",status_class=\"%s\"} "
                    "%" PRIu64 "\n",
                    endpoint_names[e], provider_names[p], status_names[s],
                    load(&m->requests[e][p][s]));

    const char *rd = "llmgw_request_duration_seconds";
    family(o, rd, "histogram", "Client request duration in seconds, by endpoint.");
    for (int e = 0; e < GW_METRICS_EP_COUNT; e++)
        hist_series(o, rd, "endpoint", endpoint_names[e], &m->req_dur[e]);

    const char *ud = "llmgw_upstream_duration_seconds";
    family(o, ud, "histogram", "Time to the provider's answer in seconds, by provider.");
    for (int p = 0; p < GW_METRICS_PROV_COUNT; p++)
        hist_series(o, ud, "provider", provider_names[p], &m->up_dur[p]);

    family(o, "llmgw_tokens_total", "counter", "Tokens used, by provider and direction.");
    for (int p = 0; p < GW_METRICS_PROV_COUNT; p++)
        for (int d = 0; d < NDIR; d++)
            put(o, "llmgw_tokens_total{provider=\"%s\",direction=\"%s\"} %" PRIu64 "\n",
                provider_names[p], dir_names[d], load(&m->tokens[p][d]));

    family(o, "llmgw_cost_usd_micros_total", "counter", "Cost in micro-USD, by provider.");
    for (int p = 0; p < GW_METRICS_PROV_COUNT; p++)
        put(o, "llmgw_cost_usd_micros_total{provider=\"%s\"} %" PRIu64 "\n", provider_names[p],
            load(&m->cost_micros[p]));
    family(o, "llmgw_cost_usd_total", "counter", "Cost in USD, by provider.");
    for (int p = 0; p < GW_METRICS_PROV_COUNT; p++) {
        put(o, "llmgw_cost_usd_total{provider=\"%s\"} ", provider_names[p]);
        put_micros(o, load(&m->cost_micros[p]));
    }

    family(o, "llmgw_upstream_errors_total", "counter",
           "Failed upstream calls, by provider and kind.");
    for (int p = 0; p < GW_METRICS_PROV_COUNT; p++)
        for (int k = 0; k < GW_METRICS_UERR_COUNT; k++)
            put(o, "llmgw_upstream_errors_total{provider=\"%s\",kind=\"%s\"} %" PRIu64 "\n",
                provider_names[p], uerr_names[k], load(&m->uerr[p][k]));

    family(o, "llmgw_reservations_in_flight", "gauge", "Budget reservations not yet settled.");
    put(o, "llmgw_reservations_in_flight %" PRId64 "\n",
        atomic_load_explicit(&m->inflight, memory_order_relaxed));
    family(o, "llmgw_uncertain_total", "counter",
           "Requests that ended with the upstream state unknown.");
    put(o, "llmgw_uncertain_total %" PRIu64 "\n", load(&m->uncertain));

    const char *sd = "llmgw_store_duration_seconds";
    family(o, sd, "histogram", "Store call latency in seconds, by operation.");
    for (int s = 0; s < GW_METRICS_STORE_COUNT; s++)
        hist_series(o, sd, "op", store_names[s], &m->store_dur[s]);
}

static void render_extra(struct out *o, const struct gw_metrics_extra *x)
{
    int any = 0;
    for (int p = 0; p < GW_METRICS_PROV_NONE; p++)
        any |= x->breaker[p] >= 0;
    if (any) {
        family(o, "llmgw_breaker_state", "gauge",
               "Provider circuit breaker: 0 closed, 1 half-open, 2 open.");
        for (int p = 0; p < GW_METRICS_PROV_NONE; p++)
            if (x->breaker[p] >= 0)
                put(o, "llmgw_breaker_state{provider=\"%s\"} %d\n", provider_names[p],
                    x->breaker[p]);
    }
    if (x->idem_quarantined >= 0) {
        family(o, "llmgw_idempotency_quarantined", "gauge", "Idempotency records quarantined.");
        put(o, "llmgw_idempotency_quarantined %" PRId64 "\n", x->idem_quarantined);
    }
    if (x->purge_backlog >= 0) {
        family(o, "llmgw_purge_backlog", "gauge", "Records waiting to be purged.");
        put(o, "llmgw_purge_backlog %" PRId64 "\n", x->purge_backlog);
    }
    if (x->uptime_seconds >= 0) {
        family(o, "llmgw_uptime_seconds", "gauge", "Seconds since the gateway started.");
        put(o, "llmgw_uptime_seconds %" PRId64 "\n", x->uptime_seconds);
    }
    if (x->version != NULL || x->commit != NULL) {
        family(o, "llmgw_build_info", "gauge", "Build information; the value is always 1.");
        put(o, "llmgw_build_info{version=\"");
        put_escaped(o, x->version);
        put(o, "\",commit=\"");
        put_escaped(o, x->commit);
        put(o, "\"} 1\n");
    }
}

int gw_metrics_render(const struct gw_metrics *m, const struct gw_metrics_extra *x,
                      struct gw_buf *out)
{
    if (GW_BUG(m == NULL || out == NULL))
        return GW_EINTERNAL;
    size_t start = out->len;
    struct out o = {out, 0};
    render_counters(&o, m);
    if (x != NULL)
        render_extra(&o, x);
    if (o.rc != 0 && out->data != NULL) {
        out->len = start;
        out->data[start] = '\0';
    }
    return o.rc;
}

void gw_metrics_extra_init(struct gw_metrics_extra *x)
{
    memset(x, 0, sizeof(*x));
    for (int p = 0; p < GW_METRICS_PROV_COUNT; p++)
        x->breaker[p] = GW_METRICS_BREAKER_ABSENT;
    x->idem_quarantined = -1;
    x->purge_backlog = -1;
    x->uptime_seconds = -1;
    x->version = NULL;
    x->commit = NULL;
}
