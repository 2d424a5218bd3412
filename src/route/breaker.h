/*
 * route/breaker — circuit breakers per provider and Retry-After cool-downs per model.
 *
 * A breaker is shared by every worker thread and lives for the gateway's lifetime. It is a few
 * atomics, no lock: the request path reads one word when the provider is healthy.
 *
 *   closed ──(threshold consecutive failures)──▶ open ──(cooldown elapsed, one caller)──▶
 *   half-open (a single probe in flight) ──probe succeeds──▶ closed
 *                                        ──probe fails────▶ open (a new cool-down)
 *
 * Invariants:
 * - While open, nobody is let through until the cool-down has elapsed; then exactly one caller
 *   gets the probe pass until that probe reports (or is abandoned).
 * - Every pass handed out by gw_breaker_enter is given back exactly once, with
 *   gw_breaker_report (a verdict) or gw_breaker_abandon (no verdict: cancelled).
 * - Time is passed in (unix ms), so tests drive the clock.
 */
#ifndef GW_ROUTE_BREAKER_H
#define GW_ROUTE_BREAKER_H

#include <stdatomic.h>
#include <stdint.h>

enum gw_breaker_state { GW_BREAKER_CLOSED = 0, GW_BREAKER_OPEN = 1, GW_BREAKER_HALF_OPEN = 2 };

/* Passes handed out by gw_breaker_enter. */
enum gw_breaker_pass { GW_PASS_DENIED = 0, GW_PASS_NORMAL = 1, GW_PASS_PROBE = 2 };

struct gw_breaker_conf {
    int threshold;   /* consecutive failures that open the breaker; 0 = never opens */
    int cooldown_ms; /* how long it stays open before a probe may go */
};

struct gw_breaker {
    _Atomic int state;          /* enum gw_breaker_state */
    _Atomic int failures;       /* consecutive failures while closed */
    _Atomic int64_t open_until; /* unix ms: no probe before this */
    _Atomic int64_t opened;     /* times it opened (for metrics) */
};

/* A breaker as a reader sees it (for the health surface and logs). */
struct gw_breaker_view {
    enum gw_breaker_state state;
    int failures;
    int64_t retry_in_ms; /* open: time left in the cool-down (0 = a probe may go now) */
    int64_t opened;
};

/* Zero = closed, no failures. */
void gw_breaker_init(struct gw_breaker *b);
/* Would gw_breaker_enter let a call through now? No side effects. When not, *retry_in_ms (may
 * be NULL) is how long until it might. */
int gw_breaker_available(struct gw_breaker *b, int64_t now_ms, int64_t *retry_in_ms);
/* Claim a pass for one upstream call: GW_PASS_NORMAL when closed, GW_PASS_PROBE for the one
 * caller that may test an open breaker whose cool-down is over, GW_PASS_DENIED otherwise. */
int gw_breaker_enter(struct gw_breaker *b, int64_t now_ms);
/* Give the pass back with the call's verdict on the provider (ok: it answered as a working
 * provider does; !ok: connect error, 5xx/529, timeout, broken answer). Returns the state after
 * the report, so callers can log transitions. */
enum gw_breaker_state gw_breaker_report(struct gw_breaker *b, const struct gw_breaker_conf *cf,
                                        int pass, int ok, int64_t now_ms);
/* Give the pass back without a verdict (the call was cancelled before the provider answered). */
void gw_breaker_abandon(struct gw_breaker *b, int pass);
void gw_breaker_view(struct gw_breaker *b, int64_t now_ms, struct gw_breaker_view *out);
/* "closed" | "open" | "half_open" */
const char *gw_breaker_state_name(enum gw_breaker_state s);

/* A Retry-After cool-down (one per catalog model): nobody is sent before `until`. */
struct gw_cooldown {
    _Atomic int64_t until; /* unix ms */
};
/* Extend the cool-down to at least until_ms (never shortens it). */
void gw_cooldown_extend(struct gw_cooldown *c, int64_t until_ms);
/* Time left (ms), 0 when none. */
int64_t gw_cooldown_left(struct gw_cooldown *c, int64_t now_ms);

#endif
