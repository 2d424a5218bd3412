/* The store-side ledger (what PostgreSQL deployments use; it runs on SQLite too): exact
 * admission from several connections at once, refunds through the counters, the sliding hour
 * at its edges with a driven clock, fallback re-admission, and counters that equal the rows.
 * Run against SQLite, and against PostgreSQL when LLMGW_TEST_PG_URL is set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <pthread.h>

#include "policy/budget.h"
#include "policy/ledger.h"
#include "store/store.h"
#include "util/util.h"

#define T0 1796108372250LL /* 2026-12-01T06:59:32.250Z */

struct fx {
    char url[512];
    char dir[64];
    char schema[40];
    struct gw_store *s;
    struct gw_ledger l;
    int64_t org, key;
};

static int pg_exec(const char *sql)
{
    PGconn *c = PQconnectdb(getenv("LLMGW_TEST_PG_URL"));
    int ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    PQfinish(c);
    return ok ? 0 : -1;
}

static int common(struct fx *f)
{
    struct gw_key_rec k;
    unsigned char hash[32] = {1};
    f->l.windows = (struct gw_budget_windows){0, 1};
    if (gw_store_open(f->url, &f->s, NULL) != 0 || gw_store_migrate(f->s, NULL) != 0 ||
        gw_store_org_create(f->s, "acme", "Acme", &f->org) != 0)
        return -1;
    memset(&k, 0, sizeof(k));
    gw_strlcpy(k.key_id, "key_ledger", sizeof(k.key_id));
    gw_strlcpy(k.role, "member", sizeof(k.role));
    gw_strlcpy(k.tier, "free", sizeof(k.tier));
    k.org_id = f->org;
    if (gw_store_key_insert(f->s, &k, hash) != 0)
        return -1;
    f->key = k.id;
    return 0;
}

static int setup_sqlite(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/llmgw_ledger_XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->url, sizeof(f->url), "sqlite:%s/l.db", f->dir);
    *state = f;
    return common(f);
}

static int setup_pg(void **state)
{
    static int n;
    struct fx *f = calloc(1, sizeof(*f));
    const char *base = getenv("LLMGW_TEST_PG_URL");
    char sql[96];
    snprintf(f->schema, sizeof(f->schema), "l%d_%d", (int)getpid(), ++n);
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", f->schema);
    if (pg_exec(sql) != 0)
        return -1;
    snprintf(f->url, sizeof(f->url), "%s%soptions=-csearch_path%%3D%s", base,
             strchr(base, '?') ? "&" : "?", f->schema);
    *state = f;
    return common(f);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    gw_store_free(f->s);
    if (f->schema[0]) {
        snprintf(cmd, sizeof(cmd), "DROP SCHEMA %s CASCADE", f->schema);
        (void)pg_exec(cmd);
    } else {
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
        if (system(cmd) != 0)
            return -1;
    }
    free(f);
    return 0;
}

struct req {
    struct gw_usage_row row;
    struct gw_admission a;
    struct gw_hold hold;
};

/* Prepare an admission of usd / tokens for the fixture's key at now. */
static void prep(struct fx *f, struct req *r, const struct gw_limit_set *kl,
                 const struct gw_limit_set *ol, int64_t usd, int64_t tokens, int64_t now,
                 const char *id)
{
    memset(r, 0, sizeof(*r));
    gw_strlcpy(r->row.request_id, id, sizeof(r->row.request_id));
    gw_strlcpy(r->row.provider, "openai", sizeof(r->row.provider));
    gw_strlcpy(r->row.model, "gpt-4o", sizeof(r->row.model));
    gw_strlcpy(r->row.endpoint, "chat.completions", sizeof(r->row.endpoint));
    gw_strlcpy(r->row.kind, "chat", sizeof(r->row.kind));
    gw_strlcpy(r->row.state, "reserved", sizeof(r->row.state));
    r->row.org_id = f->org;
    r->row.key_row_id = f->key;
    r->row.reserved_micros = usd;
    r->row.reserved_tokens = tokens;
    r->row.created_ms = now;
    r->a.q = (struct gw_limit_req){.key_id = f->key, .org_id = f->org, .key = kl, .org = ol,
                                   .usd = usd, .tokens = tokens, .request = 1, .now_ms = now};
    r->a.first = 1;
    r->a.hold = &r->hold;
    r->a.row = &r->row;
}

static int settle(struct fx *f, struct gw_store *s, struct req *r, int64_t cost, int64_t tokens)
{
    gw_strlcpy(r->row.state, "settled", sizeof(r->row.state));
    r->row.cost_micros = cost;
    r->row.tokens_in = tokens;
    return gw_ledger_settle(&f->l, s, &r->hold, &r->row, cost, tokens, &r->a.q, r->a.q.usd,
                            r->a.q.tokens);
}

static void spend_and_refunds(void **state)
{
    struct fx *f = *state;
    struct gw_limit_set kl = {.daily_usd_micros = 100000}, none = {0};
    static struct req r[15];
    int admitted = 0;
    for (int i = 0; i < 15; i++) {
        char id[32];
        snprintf(id, sizeof(id), "a%d", i);
        prep(f, &r[i], &kl, &none, 10000, 10, T0, id);
        gw_ledger_admit(&f->l, f->s, &r[i].a);
        if (r[i].a.rc == 0)
            admitted++;
        else {
            assert_int_equal(r[i].a.rc, GW_ELIMIT);
            assert_string_equal(r[i].a.why.code, "daily_budget_exceeded");
            assert_int_equal(r[i].a.why.retry_after_ms, 1000); /* worst cases in flight */
        }
    }
    assert_int_equal(admitted, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(settle(f, f->s, &r[i], 4000, 5), 0); /* 60 % refunded */
    admitted = 0;
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof(id), "b%d", i);
        prep(f, &r[i], &kl, &none, 10000, 10, T0 + 1000, id);
        gw_ledger_admit(&f->l, f->s, &r[i].a);
        admitted += r[i].a.rc == 0;
    }
    assert_int_equal(admitted, 6);
    /* the counters equal the rows */
    struct gw_usage_filter filt = {.key_row_id = f->key};
    struct gw_usage_totals t;
    assert_int_equal(gw_store_usage_list(f->s, &filt, NULL, NULL, &t), 0);
    struct gw_limit_req q = {.key_id = f->key, .key = &kl, .now_ms = T0 + 2000};
    struct gw_budget_view v;
    assert_int_equal(gw_ledger_view(&f->l, f->s, &q, &v), 0);
    assert_int_equal(v.spent_micros, t.cost_micros);
    assert_int_equal(v.spent_micros, 10 * 4000 + 6 * 10000);
}

struct race {
    struct fx *f;
    int admitted;
    int base;
};

static void *racer(void *arg)
{
    struct race *r = arg;
    struct gw_store *s = NULL;
    struct gw_limit_set none = {0}, org = {.monthly_usd_micros = 50000, .max_concurrent = 1000};
    if (gw_store_open(r->f->url, &s, NULL) != 0)
        return NULL;
    for (int i = 0; i < 40; i++) {
        struct req q;
        char id[32];
        snprintf(id, sizeof(id), "r%d_%d", r->base, i);
        prep(r->f, &q, &none, &org, 1000, 1, T0, id);
        gw_ledger_admit(&r->f->l, s, &q.a);
        if (q.a.rc == 0)
            r->admitted++;
        else if (q.a.rc != GW_ELIMIT)
            fprintf(stderr, "racer: rc %d\n", q.a.rc);
    }
    gw_store_free(s);
    return NULL;
}

static void exact_across_connections(void **state)
{
    struct fx *f = *state;
    struct race r[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (struct race){f, 0, i};
        assert_int_equal(pthread_create(&t[i], NULL, racer, &r[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += r[i].admitted;
    }
    assert_int_equal(total, 50); /* 160 tried, room for exactly 50 */
}

static void sliding_hour_edges_and_fallback(void **state)
{
    struct fx *f = *state;
    struct gw_limit_set kl = {.rph = 2, .tph = 1000}, none = {0};
    struct req a, b, c;
    prep(f, &a, &kl, &none, 10, 100, T0, "h1");
    gw_ledger_admit(&f->l, f->s, &a.a);
    assert_int_equal(a.a.rc, 0);
    prep(f, &b, &kl, &none, 10, 100, T0 + 600000, "h2");
    gw_ledger_admit(&f->l, f->s, &b.a);
    assert_int_equal(b.a.rc, 0);
    prep(f, &c, &kl, &none, 10, 100, T0 + 900000, "h3");
    gw_ledger_admit(&f->l, f->s, &c.a);
    assert_int_equal(c.a.rc, GW_ELIMIT);
    assert_string_equal(c.a.why.code, "requests_per_hour_exceeded");
    /* the first counts until an hour after the end of its second */
    int64_t expiry = (T0 / 1000 + 1) * 1000 + 3600000;
    assert_int_equal(c.a.why.retry_after_ms, expiry - (T0 + 900000));
    prep(f, &c, &kl, &none, 10, 100, expiry - 1, "h4");
    gw_ledger_admit(&f->l, f->s, &c.a);
    assert_int_equal(c.a.rc, GW_ELIMIT);
    prep(f, &c, &kl, &none, 10, 100, expiry, "h5");
    gw_ledger_admit(&f->l, f->s, &c.a);
    assert_int_equal(c.a.rc, 0);
    /* a fallback: the archived attempt keeps its row, the request re-holds a bigger worst case;
     * tokens: 200 in the hour now (h2, h5), 1000 allowed */
    struct gw_usage_row archive = c.row, moved = c.row;
    gw_strlcpy(archive.request_id, "h5.1", sizeof(archive.request_id));
    gw_strlcpy(archive.kind, "attempt", sizeof(archive.kind));
    gw_strlcpy(archive.state, "uncertain", sizeof(archive.state));
    archive.cost_micros = 10;
    moved.reserved_micros = 30;
    moved.reserved_tokens = 900;
    struct gw_admission fb = c.a;
    fb.first = 0;
    fb.held_usd = 10;
    fb.held_tokens = 100;
    fb.q.usd = 10 + 30;
    fb.q.tokens = 100 + 900; /* 200 + 900 > 1000 */
    fb.archive = &archive;
    fb.row = &moved;
    fb.q.now_ms = expiry + 10;
    gw_ledger_admit(&f->l, f->s, &fb);
    assert_int_equal(fb.rc, GW_ELIMIT);
    assert_string_equal(fb.why.code, "tokens_per_hour_exceeded");
    assert_int_equal(fb.now_held_tokens, 100); /* unchanged */
    fb.q.tokens = 100 + 800;
    moved.reserved_tokens = 800;
    gw_ledger_admit(&f->l, f->s, &fb);
    assert_int_equal(fb.rc, 0);
    assert_int_equal(fb.now_held_usd, 40);
    struct gw_usage_row got;
    assert_int_equal(gw_store_usage_get(f->s, "h5.1", &got), 0);
    assert_string_equal(got.state, "uncertain");
    assert_int_equal(gw_store_usage_get(f->s, "h5", &got), 0);
    assert_int_equal(got.reserved_tokens, 800);
}

struct spreader {
    struct fx *f;
    int base, ok;
};

/* admit and settle 25 requests of a key and org that no limit locks */
static void *spreader(void *arg)
{
    struct spreader *sp = arg;
    struct gw_store *s = NULL;
    struct gw_limit_set none = {0};
    if (gw_store_open(sp->f->url, &s, NULL) != 0)
        return NULL;
    for (int i = 0; i < 25; i++) {
        struct req q;
        char id[32];
        snprintf(id, sizeof(id), "s%d_%d", sp->base, i);
        prep(sp->f, &q, &none, &none, 1000, 50, T0, id);
        gw_ledger_admit(&sp->f->l, s, &q.a);
        if (q.a.rc == 0 && settle(sp->f, s, &q, 300, 20) == 0)
            sp->ok++;
    }
    gw_store_free(s);
    return NULL;
}

static int add_requests(void *arg, int64_t second, int64_t requests, int64_t tokens)
{
    (void)second;
    (void)tokens;
    *(int64_t *)arg += requests;
    return 0;
}

/* Writers that no limit serialises count on their own shards; every read sums them, and a
 * settlement counted once cannot be counted again. */
static void unlocked_counters_sum_across_connections(void **state)
{
    struct fx *f = *state;
    struct spreader sp[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        sp[i] = (struct spreader){f, i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, spreader, &sp[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(sp[i].ok, 25);
    }
    struct gw_scope_usage u;
    int64_t day = gw_budget_day_start(&f->l.windows, T0);
    int64_t month = gw_budget_month_start(&f->l.windows, T0);
    int64_t hour = (T0 - GW_LIMIT_WINDOW_MS) / 1000;
    for (int scope = 0; scope < 2; scope++) {
        enum gw_scope sc = scope ? GW_SCOPE_ORG : GW_SCOPE_KEY;
        int64_t id = scope ? f->org : f->key, requests = 0;
        assert_int_equal(gw_store_usage_snapshot(f->s, sc, id, hour, day, month,
                                                 GW_SNAP_HOUR | GW_SNAP_BUDGET, &u), 0);
        assert_int_equal(u.day_spent, 100 * 300);
        assert_int_equal(u.month_spent, 100 * 300);
        assert_int_equal(u.requests, 100);
        assert_int_equal(u.tokens, 100 * 20);
        assert_int_equal(gw_store_rate_list(f->s, sc, id, hour, add_requests, &requests), 0);
        assert_int_equal(requests, 100);
    }
    /* the same settlement again: the row is no longer reserved, nothing is counted twice */
    struct req q;
    struct gw_limit_set none = {0};
    prep(f, &q, &none, &none, 1000, 50, T0, "s0_0");
    assert_int_equal(settle(f, f->s, &q, 300, 20), GW_ENOTFOUND);
    assert_int_equal(gw_store_usage_snapshot(f->s, GW_SCOPE_KEY, f->key, hour, day, month,
                                             GW_SNAP_BUDGET, &u), 0);
    assert_int_equal(u.day_spent, 100 * 300);
    /* a limit set now sees what was spent without it */
    struct gw_limit_set kl = {.daily_usd_micros = 100 * 300 + 500};
    prep(f, &q, &kl, &none, 1000, 50, T0 + 10, "late");
    gw_ledger_admit(&f->l, f->s, &q.a);
    assert_int_equal(q.a.rc, GW_ELIMIT);
    assert_string_equal(q.a.why.code, "daily_budget_exceeded");
}

/* The reference the windows are held to: libc's calendar (timegm, gmtime_r). */
static int64_t ref_reset(const struct gw_budget_windows *w, int year, int mon)
{
    struct tm tm = {.tm_year = year, .tm_mon = mon, .tm_mday = w->reset_day,
                    .tm_hour = w->reset_hour};
    return (int64_t)timegm(&tm) * 1000; /* timegm normalizes mon -1 and 12 */
}

static int64_t ref_month_start(const struct gw_budget_windows *w, int64_t now_ms)
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    assert_non_null(gmtime_r(&t, &tm));
    int64_t start = ref_reset(w, tm.tm_year, tm.tm_mon);
    return start > now_ms ? ref_reset(w, tm.tm_year, tm.tm_mon - 1) : start;
}

static void month_windows_match_the_calendar(void **state)
{
    (void)state;
    static const struct gw_budget_windows ws[] = {{0, 1}, {23, 1}, {5, 28}, {0, 28}, {12, 15}};
    uint64_t x = 88172645463325252ULL; /* xorshift: instants from 1970 to ~2100 */
    for (size_t k = 0; k < sizeof(ws) / sizeof(ws[0]); k++) {
        const struct gw_budget_windows *w = &ws[k];
        for (int i = 0; i < 20000; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int64_t now = (int64_t)(x % 4102444800000ULL);
            if (i % 4 == 0) /* on and around a reset instant, leap days included */
                now = ref_month_start(w, now) + (int64_t)(x % 3) - 1;
            int64_t start = gw_budget_month_start(w, now);
            assert_int_equal(start, ref_month_start(w, now));
            assert_true(start <= now);
            int64_t next = gw_budget_next_month(w, now);
            assert_true(next > now);
            assert_int_equal(next, ref_month_start(w, next));
            assert_int_equal(gw_budget_month_start(w, next - 1), start);
        }
    }
    /* a leap year's February and the turn of a year */
    struct gw_budget_windows first = {0, 1};
    /* 2000-02-29 is in February's window */
    assert_int_equal(gw_budget_month_start(&first, 951782400000LL), 949363200000LL);
    assert_int_equal(gw_budget_next_month(&first, 951782400000LL), 951868800000LL);  /* 03-01 */
    /* 2023-12-31: the next window is 2024's */
    assert_int_equal(gw_budget_next_month(&first, 1703980800000LL), 1704067200000LL);
}

int main(void)
{
    const struct CMUnitTest calendar_tests[] = {
        cmocka_unit_test(month_windows_match_the_calendar),
    };
    const struct CMUnitTest sqlite_tests[] = {
        cmocka_unit_test_setup_teardown(spend_and_refunds, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(exact_across_connections, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(sliding_hour_edges_and_fallback, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(unlocked_counters_sum_across_connections, setup_sqlite,
                                        teardown),
    };
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test_setup_teardown(spend_and_refunds, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(exact_across_connections, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(sliding_hour_edges_and_fallback, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(unlocked_counters_sum_across_connections, setup_pg,
                                        teardown),
    };
    int failed = cmocka_run_group_tests_name("budget windows", calendar_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("ledger on sqlite", sqlite_tests, NULL, NULL);
    const char *pg = getenv("LLMGW_TEST_PG_URL");
    if (pg == NULL || pg[0] == '\0') {
        printf("[ SKIPPED  ] ledger on postgres: LLMGW_TEST_PG_URL is not set\n");
        return failed;
    }
    return failed + cmocka_run_group_tests_name("ledger on postgres", pg_tests, NULL, NULL);
}
