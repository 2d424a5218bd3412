/* The in-memory limits: exact admission under concurrency, settlement and refunds, sliding
 * windows at their edges (driven clock), concurrency, per-request cost, org-wide limits, the
 * budget reset, and counters that start from the store's history. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <pthread.h>

#include "policy/limits.h"
#include "store/store.h"

#define T0 1796108372000LL /* 2026-12-01T06:59:32Z */

struct fx {
    char dir[64];
    char url[96];
    struct gw_store *s;
    struct gw_limits *l;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct gw_budget_windows w = {.reset_hour = 0, .reset_day = 1};
    snprintf(f->dir, sizeof(f->dir), "/tmp/llmgw_limits_XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->url, sizeof(f->url), "sqlite:%s/t.db", f->dir);
    if (gw_store_open(f->url, &f->s, NULL) != 0 || gw_store_migrate(f->s, NULL) != 0 ||
        gw_limits_new(&w, &f->l) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[160];
    gw_limits_free(f->l);
    gw_store_free(f->s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static struct gw_limit_req req(struct fx *f, int64_t key, const struct gw_limit_set *kl,
                               int64_t usd, int64_t tokens, int64_t now)
{
    struct gw_limit_req q = {.key_id = key, .key = kl, .usd = usd, .tokens = tokens,
                             .request = 1, .now_ms = now, .store = f->s};
    return q;
}

static void exact_budget_and_refunds(void **state)
{
    struct fx *f = *state;
    struct gw_limit_set kl = {.daily_usd_micros = 1000000}; /* $1.00 */
    static struct gw_hold h[200];
    struct gw_refusal why;
    int admitted = 0;
    for (int i = 0; i < 150; i++) {
        struct gw_limit_req q = req(f, 1, &kl, 10000, 100, T0); /* worst case $0.01 */
        int rc = gw_limits_admit(f->l, &q, &h[admitted], &why);
        if (rc == 0)
            admitted++;
        else {
            assert_int_equal(rc, GW_ELIMIT);
            assert_string_equal(why.code, "daily_budget_exceeded");
            assert_string_equal(why.scope, "key");
            assert_int_equal(why.limit_value, 1000000);
            assert_int_equal(why.retry_after_ms, 1000); /* in-flight worst cases: soon */
        }
    }
    assert_int_equal(admitted, 100);
    /* each really cost $0.004: 60 % refunded */
    for (int i = 0; i < 100; i++)
        gw_limits_settle(f->l, &h[i], 4000, 50);
    assert_false(h[0].active);
    admitted = 0;
    for (int i = 0; i < 100; i++) {
        struct gw_limit_req q = req(f, 1, &kl, 10000, 100, T0 + 1000);
        if (gw_limits_admit(f->l, &q, &h[admitted], &why) == 0)
            admitted++;
    }
    assert_int_equal(admitted, 60);
    for (int i = 0; i < 60; i++)
        gw_limits_settle(f->l, &h[i], 10000, 100); /* these cost their worst case */
    /* spent exactly the budget: nothing more today, the next day starts at zero */
    struct gw_limit_req q = req(f, 1, &kl, 1, 1, T0 + 2000);
    assert_int_equal(gw_limits_admit(f->l, &q, &h[0], &why), GW_ELIMIT);
    assert_int_equal(why.retry_after_ms, 1796169600000LL - (T0 + 2000)); /* next UTC midnight */
    struct gw_budget_view v;
    assert_int_equal(gw_limits_view(f->l, &q, &v), 0);
    assert_true(v.active);
    assert_int_equal(v.spent_micros, 1000000);
    assert_int_equal(v.remaining_micros, 0);
    assert_int_equal(v.percent_spent, 100);
    q.now_ms = 1796169600000LL;
    assert_int_equal(gw_limits_admit(f->l, &q, &h[0], &why), 0);
    gw_limits_settle(f->l, &h[0], 1, 1);
}

struct race {
    struct fx *f;
    const struct gw_limit_set *kl, *ol;
    int64_t key;
    int admitted;
};

static void *racer(void *arg)
{
    struct race *r = arg;
    struct gw_store *s = NULL;
    struct gw_hold h;
    struct gw_refusal why;
    if (gw_store_open(r->f->url, &s, NULL) != 0)
        return NULL;
    for (int i = 0; i < 250; i++) {
        struct gw_limit_req q = {.key_id = r->key, .org_id = 9, .key = r->kl, .org = r->ol,
                                 .usd = 10000, .tokens = 10, .request = 1, .now_ms = T0,
                                 .store = s};
        if (gw_limits_admit(r->f->l, &q, &h, &why) == 0)
            r->admitted++; /* held until the end: all 1000 are "concurrent" */
    }
    gw_store_free(s);
    return NULL;
}

static void exactly_n_under_concurrency(void **state)
{
    struct fx *f = *state;
    struct gw_limit_set none = {0};
    struct gw_limit_set org = {.monthly_usd_micros = 1000000}; /* room for exactly 100 */
    struct race r[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (struct race){f, &none, &org, 100 + i % 2, 0}; /* two keys, one org */
        assert_int_equal(pthread_create(&t[i], NULL, racer, &r[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += r[i].admitted;
    }
    assert_int_equal(total, 100);
}

static void sliding_hour_at_its_edges(void **state)
{
    struct fx *f = *state;
    struct gw_limit_set kl = {.rph = 5};
    struct gw_hold h;
    struct gw_refusal why;
    int64_t t0 = T0 + 37; /* inside a 100 ms slot */
    for (int i = 0; i < 5; i++) {
        struct gw_limit_req q = req(f, 2, &kl, 0, 0, t0 + i * 60000);
        assert_int_equal(gw_limits_admit(f->l, &q, &h, &why), 0);
        gw_limits_settle(f->l, &h, 0, 0);
    }
    struct gw_limit_req q = req(f, 2, &kl, 0, 0, t0 + 300000);
    assert_int_equal(gw_limits_admit(f->l, &q, &h, &why), GW_ELIMIT);
    assert_string_equal(why.code, "requests_per_hour_exceeded");
    /* the first admission counts until 60 minutes after the end of its slot */
    int64_t expiry = (t0 / 100 + 1) * 100 + 3600000;
    assert_int_equal(why.retry_after_ms, expiry - (t0 + 300000));
    q.now_ms = expiry - 1;
    assert_int_equal(gw_limits_admit(f->l, &q, &h, &why), GW_ELIMIT);
    q.now_ms = expiry;
    assert_int_equal(gw_limits_admit(f->l, &q, &h, &why), 0);
    gw_limits_settle(f->l, &h, 0, 0);
    /* and only one: the second admission is still in the window */
    assert_int_equal(gw_limits_admit(f->l, &q, &h, &why), GW_ELIMIT);
    assert_int_equal(why.retry_after_ms, 60000);
}

static void tokens_per_hour_settle_to_actual(void **state)
{
    struct fx *f = *state;
    struct gw_limit_set kl = {.tph = 1000};
    struct gw_hold a, b;
    struct gw_refusal why;
    struct gw_limit_req q = req(f, 3, &kl, 0, 800, T0);
    assert_int_equal(gw_limits_admit(f->l, &q, &a, &why), 0);
    q.tokens = 300;
    assert_int_equal(gw_limits_admit(f->l, &q, &b, &why), GW_ELIMIT);
    assert_string_equal(why.code, "tokens_per_hour_exceeded");
    gw_limits_settle(f->l, &a, 0, 200); /* it used 200 of the 800 held */
    assert_int_equal(gw_limits_admit(f->l, &q, &b, &why), 0);
    gw_limits_settle(f->l, &b, 0, 300);
    q.tokens = 501;
    assert_int_equal(gw_limits_admit(f->l, &q, &b, &why), GW_ELIMIT);
    q.tokens = 2000; /* can never fit */
    assert_int_equal(gw_limits_admit(f->l, &q, &b, &why), GW_ELIMIT);
    assert_int_equal(why.retry_after_ms, -1);
}

static void concurrency_and_request_cost(void **state)
{
    struct fx *f = *state;
    struct gw_limit_set kl = {.max_concurrent = 2, .max_request_usd_micros = 50000};
    struct gw_hold h[3];
    struct gw_refusal why;
    struct gw_limit_req q = req(f, 4, &kl, 10000, 10, T0);
    assert_int_equal(gw_limits_admit(f->l, &q, &h[0], &why), 0);
    assert_int_equal(gw_limits_admit(f->l, &q, &h[1], &why), 0);
    assert_int_equal(gw_limits_admit(f->l, &q, &h[2], &why), GW_ELIMIT);
    assert_string_equal(why.code, "concurrency_limit_exceeded");
    gw_limits_settle(f->l, &h[0], 0, 0);
    assert_int_equal(gw_limits_admit(f->l, &q, &h[2], &why), 0);
    gw_limits_settle(f->l, &h[1], 0, 0);
    gw_limits_settle(f->l, &h[2], 0, 0);
    q.usd = 50001;
    assert_int_equal(gw_limits_admit(f->l, &q, &h[0], &why), GW_ELIMIT);
    assert_string_equal(why.code, "request_cost_limit_exceeded");
    assert_int_equal(why.retry_after_ms, -1);
    /* usage of a request (the router), not a request: no concurrency slot */
    q.usd = 100;
    q.request = 0;
    struct gw_hold x[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_limits_admit(f->l, &q, &x[i], &why), 0);
    for (int i = 0; i < 3; i++)
        gw_limits_settle(f->l, &x[i], 100, 10);
}

static void org_limits_span_keys_and_rehold(void **state)
{
    struct fx *f = *state;
    struct gw_limit_set none = {0}, org = {.rph = 3, .daily_usd_micros = 100000};
    struct gw_hold h[4];
    struct gw_refusal why;
    for (int i = 0; i < 3; i++) {
        struct gw_limit_req q = {.key_id = 10 + i, .org_id = 5, .key = &none, .org = &org,
                                 .usd = 20000, .tokens = 10, .request = 1, .now_ms = T0,
                                 .store = f->s};
        assert_int_equal(gw_limits_admit(f->l, &q, &h[i], &why), 0);
    }
    struct gw_limit_req q = {.key_id = 13, .org_id = 5, .key = &none, .org = &org,
                             .usd = 1, .tokens = 1, .request = 1, .now_ms = T0, .store = f->s};
    assert_int_equal(gw_limits_admit(f->l, &q, &h[3], &why), GW_ELIMIT);
    assert_string_equal(why.scope, "org");
    assert_string_equal(why.code, "requests_per_hour_exceeded");
    /* a fallback raises what a request holds: 60000 held, 40000 left in the org's day */
    q = (struct gw_limit_req){.key_id = 10, .org_id = 5, .key = &none, .org = &org,
                              .usd = 60001, .tokens = 10, .now_ms = T0, .store = f->s};
    assert_int_equal(gw_limits_rehold(f->l, &h[0], &q, &why), GW_ELIMIT);
    assert_string_equal(why.code, "daily_budget_exceeded");
    assert_int_equal(h[0].usd, 20000); /* unchanged */
    q.usd = 60000;
    assert_int_equal(gw_limits_rehold(f->l, &h[0], &q, &why), 0);
    assert_int_equal(h[0].usd, 60000);
    for (int i = 0; i < 3; i++)
        gw_limits_settle(f->l, &h[i], 0, 0);
}

static void counters_start_from_the_store(void **state)
{
    struct fx *f = *state;
    struct gw_usage_row r = {0};
    strcpy(r.provider, "openai");
    strcpy(r.model, "gpt-4o");
    strcpy(r.endpoint, "chat.completions");
    strcpy(r.kind, "chat");
    r.key_row_id = 77;
    r.org_id = 8;
    /* two settled requests today (one 30 minutes ago), one still reserved, one last month */
    const struct {
        const char *id, *state;
        int64_t at, cost, reserved, tin, tout;
    } rows[] = {
        {"h1", "settled", T0 - 1800000, 300000, 900000, 100, 50},
        {"h2", "settled", T0 - 7200000, 200000, 900000, 100, 50},
        {"h3", "uncertain", T0 - 60000, 400000, 400000, 0, 0},
        {"h4", "settled", T0 - 40 * 86400000LL, 999999, 999999, 10, 10},
    };
    for (size_t i = 0; i < 4; i++) {
        strcpy(r.request_id, rows[i].id);
        strcpy(r.state, rows[i].state);
        r.created_ms = rows[i].at;
        r.cost_micros = rows[i].cost;
        r.reserved_micros = rows[i].reserved;
        r.tokens_in = rows[i].tin;
        r.tokens_out = rows[i].tout;
        assert_int_equal(gw_store_usage_reserve(f->s, &r), 0);
    }
    struct gw_limit_set kl = {.daily_usd_micros = 1000000, .rph = 3, .tph = 200};
    struct gw_limit_req q = {.key_id = 77, .key = &kl, .usd = 100000, .tokens = 40,
                             .request = 1, .now_ms = T0, .store = f->s};
    struct gw_budget_view v;
    assert_int_equal(gw_limits_view(f->l, &q, &v), 0);
    assert_int_equal(v.spent_micros, 900000); /* today's rows, whatever their state */
    struct gw_hold h;
    struct gw_refusal why;
    /* the last hour holds 2 rows (h1, h3) and 150 tokens: one request and 50 tokens left */
    assert_int_equal(gw_limits_admit(f->l, &q, &h, &why), 0);
    gw_limits_settle(f->l, &h, 100000, 40);
    q.usd = 1;
    q.tokens = 1;
    assert_int_equal(gw_limits_admit(f->l, &q, &h, &why), GW_ELIMIT);
    assert_string_equal(why.code, "requests_per_hour_exceeded");
    /* an org counts its keys' rows */
    struct gw_limit_set none = {0}, org = {.daily_usd_micros = 1000000};
    struct gw_limit_req o = {.key_id = 78, .org_id = 8, .key = &none, .org = &org,
                             .usd = 100001, .tokens = 1, .request = 1, .now_ms = T0,
                             .store = f->s};
    assert_int_equal(gw_limits_admit(f->l, &o, &h, &why), GW_ELIMIT);
    assert_string_equal(why.scope, "org");
    o.usd = 100000;
    assert_int_equal(gw_limits_admit(f->l, &o, &h, &why), 0);
    gw_limits_settle(f->l, &h, 0, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(exact_budget_and_refunds, setup, teardown),
        cmocka_unit_test_setup_teardown(exactly_n_under_concurrency, setup, teardown),
        cmocka_unit_test_setup_teardown(sliding_hour_at_its_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(tokens_per_hour_settle_to_actual, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrency_and_request_cost, setup, teardown),
        cmocka_unit_test_setup_teardown(org_limits_span_keys_and_rehold, setup, teardown),
        cmocka_unit_test_setup_teardown(counters_start_from_the_store, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
