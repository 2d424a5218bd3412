/*
 * route/fallback — what to do after an upstream attempt failed: classify the outcome, decide
 * whether the next target may be tried, and how long to wait first.
 *
 * Pure functions (no I/O, no clock, randomness passed in), so the policy is unit-tested as a
 * table. The pipeline owns the attempts themselves.
 *
 * The rules (issue: routing and resilience):
 * - Nothing is retried once a byte of the answer has reached the client.
 * - Refusals caused by the request itself (4xx other than 408/409/429) are final.
 * - What provably never reached the provider (connect failure, partial send) and what the
 *   provider refused without doing the work (429, 5xx, 529) move to the next target.
 * - What was sent in full and then lost (reset, no answer in time, a cut or unreadable answer)
 *   may have been executed: it moves on only where the policy allows it (by default: when the
 *   request offers no tools, whose calls could have side effects).
 */
#ifndef GW_ROUTE_FALLBACK_H
#define GW_ROUTE_FALLBACK_H

#include <stdint.h>

enum gw_retry_uncertain {
    GW_RETRY_UNCERTAIN_NEVER = 0,
    GW_RETRY_UNCERTAIN_NO_TOOLS = 1, /* the default */
    GW_RETRY_UNCERTAIN_ALWAYS = 2,
};

struct gw_fallback_conf {
    int enabled;            /* try fallback targets at all */
    int max_attempts;       /* upstream calls per request, first included */
    int backoff_ms;         /* base of the exponential backoff between attempts */
    int backoff_max_ms;     /* its ceiling */
    int max_retry_after_ms; /* longest Retry-After worth waiting for; longer skips the target */
    int retry_uncertain;    /* enum gw_retry_uncertain */
};

enum gw_outcome {
    GW_OUT_OK = 0,       /* a 2xx answer, read in full */
    GW_OUT_REJECTED,     /* the provider refused the request itself (its 4xx): final */
    GW_OUT_AUTH,         /* the provider refused the gateway's credential */
    GW_OUT_RATE_LIMITED, /* 429 */
    GW_OUT_UNAVAILABLE,  /* 5xx, 529, 408, 409: refused without doing the work */
    GW_OUT_UNSENT,       /* provably never reached the provider */
    GW_OUT_UNCERTAIN,    /* sent in full, then nothing: it may have been executed */
    GW_OUT_BROKEN,       /* a 2xx whose answer was cut short or unreadable */
};

/* The outcome of an HTTP answer by status (no transport failure). */
enum gw_outcome gw_outcome_of_status(int status, int auth_failed);
/* "ok", "rejected", "auth", "rate_limited", "unavailable", "unsent", "uncertain", "broken" */
const char *gw_outcome_name(enum gw_outcome o);
/* Does this outcome count against the provider's circuit breaker? */
int gw_outcome_is_provider_failure(enum gw_outcome o);
/* May the next target be tried? reply_started: a byte already reached the client. */
int gw_fallback_may_retry(const struct gw_fallback_conf *cf, enum gw_outcome o, int has_tools,
                          int reply_started);
/* Jittered exponential backoff before attempt n+1 after n failed ones (n >= 1): a random point
 * in [d/2, d] with d = min(backoff_max_ms, backoff_ms * 2^(n-1)). rnd: any random number. */
int64_t gw_fallback_backoff_ms(const struct gw_fallback_conf *cf, int n, uint32_t rnd);

#endif
