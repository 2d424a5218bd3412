/*
 * route/breaker — see breaker.h. Lock-free: each transition is one compare-and-swap, so two
 * workers reporting at once cannot both open the breaker or both take the probe.
 */
#include "route/breaker.h"

#include <stddef.h>

void gw_breaker_init(struct gw_breaker *b)
{
    atomic_init(&b->state, GW_BREAKER_CLOSED);
    atomic_init(&b->failures, 0);
    atomic_init(&b->open_until, 0);
    atomic_init(&b->opened, 0);
}

int gw_breaker_available(struct gw_breaker *b, int64_t now_ms, int64_t *retry_in_ms)
{
    int st = atomic_load_explicit(&b->state, memory_order_acquire);
    int64_t left = 0;

    if (st == GW_BREAKER_CLOSED)
        return 1;
    if (st == GW_BREAKER_OPEN) {
        left = atomic_load(&b->open_until) - now_ms;
        if (left <= 0)
            return 1;
    } else {
        left = 1000; /* a probe is deciding; ask again soon */
    }
    if (retry_in_ms != NULL)
        *retry_in_ms = left;
    return 0;
}

int gw_breaker_enter(struct gw_breaker *b, int64_t now_ms)
{
    int st = atomic_load_explicit(&b->state, memory_order_acquire);

    if (st == GW_BREAKER_CLOSED)
        return GW_PASS_NORMAL;
    if (st == GW_BREAKER_OPEN && atomic_load(&b->open_until) <= now_ms) {
        int expect = GW_BREAKER_OPEN;
        if (atomic_compare_exchange_strong(&b->state, &expect, GW_BREAKER_HALF_OPEN))
            return GW_PASS_PROBE;
    }
    return GW_PASS_DENIED;
}

static void trip(struct gw_breaker *b, const struct gw_breaker_conf *cf, int from, int64_t now_ms)
{
    int expect = from;
    /* open_until first: a reader that sees OPEN must not see a stale, elapsed deadline */
    atomic_store(&b->open_until, now_ms + cf->cooldown_ms);
    if (atomic_compare_exchange_strong(&b->state, &expect, GW_BREAKER_OPEN))
        atomic_fetch_add(&b->opened, 1);
}

enum gw_breaker_state gw_breaker_report(struct gw_breaker *b, const struct gw_breaker_conf *cf,
                                        int pass, int ok, int64_t now_ms)
{
    if (pass == GW_PASS_PROBE) {
        if (ok) {
            atomic_store(&b->failures, 0);
            atomic_store_explicit(&b->state, GW_BREAKER_CLOSED, memory_order_release);
        } else {
            trip(b, cf, GW_BREAKER_HALF_OPEN, now_ms);
        }
    } else if (pass == GW_PASS_NORMAL) {
        if (ok) {
            if (atomic_load_explicit(&b->failures, memory_order_relaxed) != 0)
                atomic_store(&b->failures, 0);
        } else if (atomic_load(&b->state) == GW_BREAKER_CLOSED) {
            /* a call that entered before the breaker opened changes nothing once it is open */
            int f = atomic_fetch_add(&b->failures, 1) + 1;
            if (cf->threshold > 0 && f >= cf->threshold)
                trip(b, cf, GW_BREAKER_CLOSED, now_ms);
        }
    }
    return (enum gw_breaker_state)atomic_load(&b->state);
}

void gw_breaker_abandon(struct gw_breaker *b, int pass)
{
    if (pass == GW_PASS_PROBE) {
        /* back to open with the elapsed deadline: the next caller probes */
        int expect = GW_BREAKER_HALF_OPEN;
        atomic_compare_exchange_strong(&b->state, &expect, GW_BREAKER_OPEN);
    }
}

void gw_breaker_view(struct gw_breaker *b, int64_t now_ms, struct gw_breaker_view *out)
{
    out->state = (enum gw_breaker_state)atomic_load(&b->state);
    out->failures = atomic_load(&b->failures);
    out->opened = atomic_load(&b->opened);
    out->retry_in_ms = 0;
    if (out->state == GW_BREAKER_OPEN) {
        int64_t left = atomic_load(&b->open_until) - now_ms;
        out->retry_in_ms = left > 0 ? left : 0;
    }
}

const char *gw_breaker_state_name(enum gw_breaker_state s)
{
    switch (s) {
    case GW_BREAKER_CLOSED:
        return "closed";
    case GW_BREAKER_OPEN:
        return "open";
    case GW_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "?";
}

void gw_cooldown_extend(struct gw_cooldown *c, int64_t until_ms)
{
    int64_t cur = atomic_load(&c->until);
    while (cur < until_ms && !atomic_compare_exchange_weak(&c->until, &cur, until_ms))
        ;
}

int64_t gw_cooldown_left(struct gw_cooldown *c, int64_t now_ms)
{
    int64_t left = atomic_load_explicit(&c->until, memory_order_relaxed) - now_ms;
    return left > 0 ? left : 0;
}
