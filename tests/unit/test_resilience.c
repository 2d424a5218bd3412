/* Resilience policy: the circuit breaker's states (with a driven clock), Retry-After
 * cool-downs, the retry decision table and the jittered backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "http/upstream.h"
#include "route/breaker.h"
#include "route/fallback.h"

static const struct gw_breaker_conf CONF = {.threshold = 3, .cooldown_ms = 1000};

static void breaker_opens_after_consecutive_failures(void **state)
{
    struct gw_breaker b;
    int64_t now = 1000000;
    gw_breaker_init(&b);
    for (int i = 0; i < 2; i++) {
        int p = gw_breaker_enter(&b, now);
        assert_int_equal(p, GW_PASS_NORMAL);
        assert_int_equal(gw_breaker_report(&b, &CONF, p, 0, now), GW_BREAKER_CLOSED);
    }
    /* a success in between resets the count */
    assert_int_equal(gw_breaker_report(&b, &CONF, GW_PASS_NORMAL, 1, now), GW_BREAKER_CLOSED);
    for (int i = 0; i < 2; i++)
        assert_int_equal(gw_breaker_report(&b, &CONF, GW_PASS_NORMAL, 0, now), GW_BREAKER_CLOSED);
    assert_int_equal(gw_breaker_report(&b, &CONF, GW_PASS_NORMAL, 0, now), GW_BREAKER_OPEN);
    int64_t wait = 0;
    assert_false(gw_breaker_available(&b, now + 10, &wait));
    assert_int_equal(wait, 990);
    assert_int_equal(gw_breaker_enter(&b, now + 999), GW_PASS_DENIED);
    struct gw_breaker_view v;
    gw_breaker_view(&b, now, &v);
    assert_int_equal(v.state, GW_BREAKER_OPEN);
    assert_int_equal(v.opened, 1);
    assert_string_equal(gw_breaker_state_name(v.state), "open");
}

static void breaker_half_open_single_probe(void **state)
{
    struct gw_breaker b;
    int64_t now = 5000;
    gw_breaker_init(&b);
    for (int i = 0; i < 3; i++)
        (void)gw_breaker_report(&b, &CONF, GW_PASS_NORMAL, 0, now);
    now += 1000; /* cool-down over: exactly one probe */
    assert_true(gw_breaker_available(&b, now, NULL));
    assert_int_equal(gw_breaker_enter(&b, now), GW_PASS_PROBE);
    assert_int_equal(gw_breaker_enter(&b, now), GW_PASS_DENIED);
    assert_false(gw_breaker_available(&b, now, NULL));
    /* the probe fails: open again for a new cool-down */
    assert_int_equal(gw_breaker_report(&b, &CONF, GW_PASS_PROBE, 0, now), GW_BREAKER_OPEN);
    assert_int_equal(gw_breaker_enter(&b, now + 999), GW_PASS_DENIED);
    /* next probe succeeds: closed, and everyone passes */
    assert_int_equal(gw_breaker_enter(&b, now + 1000), GW_PASS_PROBE);
    assert_int_equal(gw_breaker_report(&b, &CONF, GW_PASS_PROBE, 1, now + 1000),
                     GW_BREAKER_CLOSED);
    assert_int_equal(gw_breaker_enter(&b, now + 1000), GW_PASS_NORMAL);
    struct gw_breaker_view v;
    gw_breaker_view(&b, now, &v);
    assert_int_equal(v.failures, 0);
    assert_int_equal(v.opened, 2);
}

static void breaker_abandoned_probe_frees_the_slot(void **state)
{
    struct gw_breaker b;
    gw_breaker_init(&b);
    for (int i = 0; i < 3; i++)
        (void)gw_breaker_report(&b, &CONF, GW_PASS_NORMAL, 0, 0);
    int p = gw_breaker_enter(&b, 2000);
    assert_int_equal(p, GW_PASS_PROBE);
    gw_breaker_abandon(&b, p); /* client went away before the provider answered */
    assert_int_equal(gw_breaker_enter(&b, 2000), GW_PASS_PROBE);
}

static void breaker_late_reports_do_not_reopen(void **state)
{
    struct gw_breaker b;
    gw_breaker_init(&b);
    for (int i = 0; i < 3; i++)
        (void)gw_breaker_report(&b, &CONF, GW_PASS_NORMAL, 0, 0);
    /* calls that entered before it opened and fail later change nothing */
    (void)gw_breaker_report(&b, &CONF, GW_PASS_NORMAL, 0, 500);
    struct gw_breaker_view v;
    gw_breaker_view(&b, 600, &v);
    assert_int_equal(v.opened, 1);
    assert_int_equal(v.retry_in_ms, 400);
    /* threshold 0: never opens */
    struct gw_breaker_conf off = {.threshold = 0, .cooldown_ms = 1000};
    gw_breaker_init(&b);
    for (int i = 0; i < 100; i++)
        (void)gw_breaker_report(&b, &off, GW_PASS_NORMAL, 0, 0);
    assert_int_equal(gw_breaker_enter(&b, 0), GW_PASS_NORMAL);
}

struct race {
    struct gw_breaker *b;
    int probes;
};

static void *grab(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < 1000; i++)
        if (gw_breaker_enter(r->b, 10000) == GW_PASS_PROBE)
            r->probes++;
    return NULL;
}

static void breaker_one_probe_under_concurrency(void **state)
{
    struct gw_breaker b;
    struct race r[4];
    pthread_t t[4];
    gw_breaker_init(&b);
    for (int i = 0; i < 3; i++)
        (void)gw_breaker_report(&b, &CONF, GW_PASS_NORMAL, 0, 0);
    for (int i = 0; i < 4; i++) {
        r[i] = (struct race){&b, 0};
        assert_int_equal(pthread_create(&t[i], NULL, grab, &r[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += r[i].probes;
    }
    assert_int_equal(total, 1);
}

static void cooldown_extends_never_shortens(void **state)
{
    struct gw_cooldown c = {0};
    assert_int_equal(gw_cooldown_left(&c, 100), 0);
    gw_cooldown_extend(&c, 2000);
    gw_cooldown_extend(&c, 1500);
    assert_int_equal(gw_cooldown_left(&c, 1000), 1000);
    assert_int_equal(gw_cooldown_left(&c, 2500), 0);
}

static void retry_decision_table(void **state)
{
    struct gw_fallback_conf cf = {.enabled = 1, .max_attempts = 3, .backoff_ms = 100,
                                  .backoff_max_ms = 2000, .max_retry_after_ms = 5000,
                                  .retry_uncertain = GW_RETRY_UNCERTAIN_NO_TOOLS};
    static const struct {
        enum gw_outcome o;
        int tools, started, want;
    } rows[] = {
        {GW_OUT_UNAVAILABLE, 0, 0, 1}, {GW_OUT_UNAVAILABLE, 1, 0, 1},
        {GW_OUT_RATE_LIMITED, 1, 0, 1}, {GW_OUT_UNSENT, 1, 0, 1},
        {GW_OUT_AUTH, 0, 0, 1},        {GW_OUT_REJECTED, 0, 0, 0},
        {GW_OUT_OK, 0, 0, 0},          {GW_OUT_UNCERTAIN, 0, 0, 1},
        {GW_OUT_UNCERTAIN, 1, 0, 0},   {GW_OUT_BROKEN, 0, 0, 1},
        {GW_OUT_BROKEN, 1, 0, 0},      {GW_OUT_UNAVAILABLE, 0, 1, 0},
        {GW_OUT_UNSENT, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (gw_fallback_may_retry(&cf, rows[i].o, rows[i].tools, rows[i].started) !=
            rows[i].want)
            fail_msg("row %zu: %s tools=%d started=%d: want %d", i, gw_outcome_name(rows[i].o),
                     rows[i].tools, rows[i].started, rows[i].want);
    cf.retry_uncertain = GW_RETRY_UNCERTAIN_NEVER;
    assert_false(gw_fallback_may_retry(&cf, GW_OUT_UNCERTAIN, 0, 0));
    cf.retry_uncertain = GW_RETRY_UNCERTAIN_ALWAYS;
    assert_true(gw_fallback_may_retry(&cf, GW_OUT_UNCERTAIN, 1, 0));
    cf.enabled = 0;
    assert_false(gw_fallback_may_retry(&cf, GW_OUT_UNAVAILABLE, 0, 0));
}

static void outcomes_by_status(void **state)
{
    assert_int_equal(gw_outcome_of_status(200, 0), GW_OUT_OK);
    assert_int_equal(gw_outcome_of_status(400, 0), GW_OUT_REJECTED);
    assert_int_equal(gw_outcome_of_status(404, 0), GW_OUT_REJECTED);
    assert_int_equal(gw_outcome_of_status(401, 1), GW_OUT_AUTH);
    assert_int_equal(gw_outcome_of_status(400, 1), GW_OUT_AUTH); /* Gemini's API_KEY_INVALID */
    assert_int_equal(gw_outcome_of_status(408, 0), GW_OUT_UNAVAILABLE);
    assert_int_equal(gw_outcome_of_status(429, 0), GW_OUT_RATE_LIMITED);
    assert_int_equal(gw_outcome_of_status(500, 0), GW_OUT_UNAVAILABLE);
    assert_int_equal(gw_outcome_of_status(529, 0), GW_OUT_UNAVAILABLE);
    /* what counts against the breaker: not the caller's mistakes, not rate limits */
    assert_false(gw_outcome_is_provider_failure(GW_OUT_REJECTED));
    assert_false(gw_outcome_is_provider_failure(GW_OUT_RATE_LIMITED));
    assert_true(gw_outcome_is_provider_failure(GW_OUT_UNAVAILABLE));
    assert_true(gw_outcome_is_provider_failure(GW_OUT_UNCERTAIN));
    assert_true(gw_outcome_is_provider_failure(GW_OUT_UNSENT));
}

static void backoff_is_jittered_and_capped(void **state)
{
    struct gw_fallback_conf cf = {.enabled = 1, .backoff_ms = 100, .backoff_max_ms = 1000};
    assert_int_equal(gw_fallback_backoff_ms(&cf, 1, 0), 50);
    assert_int_equal(gw_fallback_backoff_ms(&cf, 1, 50), 100);
    assert_int_equal(gw_fallback_backoff_ms(&cf, 2, 0), 100);
    assert_int_equal(gw_fallback_backoff_ms(&cf, 3, 0), 200);
    for (uint32_t r = 0; r < 5000; r += 7) {
        int64_t d = gw_fallback_backoff_ms(&cf, 9, r);
        assert_in_range(d, 500, 1000);
    }
    int64_t lo = 1000, hi = 0;
    for (uint32_t r = 0; r < 1000; r++) {
        int64_t d = gw_fallback_backoff_ms(&cf, 2, r * 2654435761u);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo < 110 && hi > 190); /* spread over [100, 200] */
    cf.backoff_ms = 0;
    assert_int_equal(gw_fallback_backoff_ms(&cf, 3, 12345), 0);
}

static void retry_after_headers(void **state)
{
    int64_t now = 1445412480000; /* Wed, 21 Oct 2015 07:28:00 GMT */
    assert_int_equal(gw_upstream_retry_after_ms("Retry-After: 2\r\n", 16, now), 2000);
    assert_int_equal(gw_upstream_retry_after_ms("retry-after:0\r\n", 15, now), 0);
    assert_int_equal(gw_upstream_retry_after_ms("retry-after-ms: 250\r\n", 21, now), 250);
    assert_int_equal(gw_upstream_retry_after_ms("Retry-After: Wed, 21 Oct 2015 07:28:30 GMT\r\n",
                                                44, now), 30000);
    assert_int_equal(gw_upstream_retry_after_ms("Retry-After: Tue, 20 Oct 2015 07:28:00 GMT\r\n",
                                                44, now), 0); /* in the past */
    assert_int_equal(gw_upstream_retry_after_ms("Retry-After: 99999999999999\r\n", 29, now),
                     86400000); /* capped at a day */
    assert_int_equal(gw_upstream_retry_after_ms("Retry-After: soon\r\n", 19, now), -1);
    assert_int_equal(gw_upstream_retry_after_ms("Retry-After: -5\r\n", 17, now), -1);
    assert_int_equal(gw_upstream_retry_after_ms("retry-after-ms: 1.5\r\n", 21, now), -1);
    assert_int_equal(gw_upstream_retry_after_ms("Content-Type: text/plain\r\n", 26, now), -1);
    assert_int_equal(gw_upstream_retry_after_ms("Retry-After:\r\n", 14, now), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(breaker_opens_after_consecutive_failures),
        cmocka_unit_test(breaker_half_open_single_probe),
        cmocka_unit_test(breaker_abandoned_probe_frees_the_slot),
        cmocka_unit_test(breaker_late_reports_do_not_reopen),
        cmocka_unit_test(breaker_one_probe_under_concurrency),
        cmocka_unit_test(cooldown_extends_never_shortens),
        cmocka_unit_test(retry_decision_table),
        cmocka_unit_test(outcomes_by_status),
        cmocka_unit_test(backoff_is_jittered_and_capped),
        cmocka_unit_test(retry_after_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
