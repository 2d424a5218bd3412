/*
 * util/metrics — the gateway's Prometheus metrics: a fixed registry of lock-free counters and
 * histograms, rendered as text exposition format 0.0.4 for GET /admin/v1/metrics.
 *
 * Contract:
 * - The set of families and the label values are fixed at compile time (the enums below), so
 *   every series is one array slot. Updates are relaxed C11 atomic fetch_adds: no lock, no
 *   allocation, no failure. Any thread may update at any time, concurrently with rendering.
 * - Out-of-range enum values are clamped (endpoint → OTHER, provider → NONE, anything else is
 *   dropped), so a bad caller cannot index out of bounds. Negative amounts and durations count
 *   as 0: counters never go down.
 * - Every update function accepts m == NULL as a no-op, so a gateway may run without metrics.
 * - A render is a snapshot of relaxed loads, not a consistent cut: one request's updates may be
 *   half visible. Within one histogram the buckets, +Inf and _count come from the same loads,
 *   so they are always cumulative and +Inf == _count; _sum may run slightly ahead or behind.
 * - Durations are integer microseconds internally; _sum is rendered in seconds, exactly (as
 *   decimal digits, not through a double). The same goes for the cost in USD.
 * - No global state: each gateway owns one struct gw_metrics (gw_metrics_new/gw_metrics_free).
 *   Values that live elsewhere in the gateway (breaker states, queue sizes, uptime, build info)
 *   are handed to gw_metrics_render in a struct gw_metrics_extra, so this module depends on
 *   nothing above util.
 */
#ifndef GW_UTIL_METRICS_H
#define GW_UTIL_METRICS_H

#include <stdint.h>

#include "util/buf.h"
#include "util/err.h"

struct gw_metrics;

/* The endpoint label of llmgw_requests_total and llmgw_request_duration_seconds. */
enum gw_metrics_endpoint {
    GW_METRICS_EP_CHAT_COMPLETIONS = 0, /* POST /v1/chat/completions: "chat_completions" */
    GW_METRICS_EP_LLM_CHAT,             /* POST /api/v1/llm/chat: "llm_chat" */
    GW_METRICS_EP_MESSAGES,             /* POST /v1/messages: "messages" */
    GW_METRICS_EP_OTHER,                /* everything else: "other" */
    GW_METRICS_EP_COUNT
};

/* The provider label. NONE: no provider was chosen (refused before routing, unknown name). */
enum gw_metrics_provider {
    GW_METRICS_PROV_ANTHROPIC = 0,
    GW_METRICS_PROV_OPENAI,
    GW_METRICS_PROV_GEMINI,
    GW_METRICS_PROV_XAI,
    GW_METRICS_PROV_PERPLEXITY,
    GW_METRICS_PROV_NONE,
    GW_METRICS_PROV_COUNT
};

/* The kind label of llmgw_upstream_errors_total. */
enum gw_metrics_upstream_err {
    GW_METRICS_UERR_TIMEOUT = 0,   /* "timeout": a deadline passed */
    GW_METRICS_UERR_CONNECT,       /* "connect": DNS, TCP or TLS failed */
    GW_METRICS_UERR_STATUS_4XX,    /* "status_4xx": an HTTP 4xx other than 429 */
    GW_METRICS_UERR_STATUS_5XX,    /* "status_5xx": an HTTP 5xx (or 529) */
    GW_METRICS_UERR_RATE_LIMITED,  /* "rate_limited": HTTP 429 */
    GW_METRICS_UERR_BAD_RESPONSE,  /* "bad_response": unparseable or truncated answer */
    GW_METRICS_UERR_INTERRUPTED,   /* "interrupted": the connection broke mid-answer */
    GW_METRICS_UERR_COUNT
};

/* The op label of llmgw_store_duration_seconds. */
enum gw_metrics_store_op { GW_METRICS_STORE_READ = 0, GW_METRICS_STORE_WRITE, GW_METRICS_STORE_COUNT };

/* Values of llmgw_breaker_state. Note: NOT the numbering of enum gw_breaker_state (route/breaker.h,
 * where OPEN is 1); the caller maps explicitly. */
enum gw_metrics_breaker {
    GW_METRICS_BREAKER_ABSENT = -1, /* not rendered (provider not configured) */
    GW_METRICS_BREAKER_CLOSED = 0,
    GW_METRICS_BREAKER_HALF_OPEN = 1,
    GW_METRICS_BREAKER_OPEN = 2,
};

/* Gauges owned by the rest of the gateway, sampled by the caller just before a render.
 * Fill it with gw_metrics_extra_init first: every field starts "absent" and an absent field is
 * not rendered at all (rather than rendered as a misleading 0). */
struct gw_metrics_extra {
    int breaker[GW_METRICS_PROV_COUNT]; /* enum gw_metrics_breaker per provider (NONE ignored) */
    int64_t idem_quarantined;           /* idempotency records quarantined; < 0: absent */
    int64_t purge_backlog;              /* rows waiting for the purger; < 0: absent */
    int64_t uptime_seconds;             /* since the gateway started; < 0: absent */
    const char *version;                /* build info labels (borrowed, any bytes but NUL, */
    const char *commit;                 /* escaped on output); both NULL: no llmgw_build_info */
};

/* A render of every family is a few tens of KiB; this cap leaves ample room. */
#define GW_METRICS_TEXT_MAX (256 * 1024)

/* Allocate a zeroed registry (gw_calloc). Returns NULL on OOM. */
struct gw_metrics *gw_metrics_new(void);
/* Free the registry. NULL is a no-op. No thread may update it any more. */
void gw_metrics_free(struct gw_metrics *m);

/* Map a label name to its enum; NULL or unknown names map to OTHER / NONE. */
enum gw_metrics_endpoint gw_metrics_endpoint(const char *name);
enum gw_metrics_provider gw_metrics_provider(const char *name);
/* Map a request path ("/v1/chat/completions", ...; a "?query" is ignored) to its endpoint. */
enum gw_metrics_endpoint gw_metrics_endpoint_for_path(const char *path);
/* The label value of an enum (a static string); out of range gives "other" / "none". */
const char *gw_metrics_endpoint_name(enum gw_metrics_endpoint ep);
const char *gw_metrics_provider_name(enum gw_metrics_provider p);

/* Count one finished client request: llmgw_requests_total{endpoint,provider,status_class} and
 * llmgw_request_duration_seconds{endpoint}. status is the HTTP status sent: 100-399 → "2xx",
 * 400-499 → "4xx", anything else (5xx; 0 when no answer was sent) → "5xx". */
void gw_metrics_request(struct gw_metrics *m, enum gw_metrics_endpoint ep,
                        enum gw_metrics_provider p, int status, int64_t duration_us);
/* Observe one upstream call's time to the provider's answer (headers, or the first byte of a
 * stream): llmgw_upstream_duration_seconds{provider}. */
void gw_metrics_upstream(struct gw_metrics *m, enum gw_metrics_provider p, int64_t duration_us);
/* Add usage and its cost: llmgw_tokens_total{provider,direction} and
 * llmgw_cost_usd_micros_total{provider} (also rendered as llmgw_cost_usd_total). */
void gw_metrics_tokens(struct gw_metrics *m, enum gw_metrics_provider p, int64_t in_tokens,
                       int64_t out_tokens, int64_t cost_micros);
/* Count one failed upstream call: llmgw_upstream_errors_total{provider,kind}. */
void gw_metrics_upstream_error(struct gw_metrics *m, enum gw_metrics_provider p,
                               enum gw_metrics_upstream_err kind);
/* Move llmgw_reservations_in_flight by delta (+1 on reserve, -1 on settle or release). */
void gw_metrics_inflight(struct gw_metrics *m, int delta);
/* Count one request that ended with the upstream state unknown: llmgw_uncertain_total. */
void gw_metrics_uncertain(struct gw_metrics *m);
/* Observe one store call's latency: llmgw_store_duration_seconds{op}. */
void gw_metrics_store(struct gw_metrics *m, enum gw_metrics_store_op op, int64_t duration_us);

/* Append the whole exposition text (every family, with # HELP and # TYPE, zero series
 * included) to out, then the gauges in x (borrowed; NULL: none). Safe while other threads
 * update m. Returns 0, or GW_ETOOBIG / GW_ENOMEM with out left as it was. Serve it as
 * "text/plain; version=0.0.4; charset=utf-8". */
GW_NODISCARD int gw_metrics_render(const struct gw_metrics *m, const struct gw_metrics_extra *x,
                                   struct gw_buf *out);
/* Set every field of x to "absent". */
void gw_metrics_extra_init(struct gw_metrics_extra *x);

#endif
