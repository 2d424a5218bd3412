/* Microbenchmark: what the governed write path costs per request — admit (every limit of a key
 * and its org, then the durable usage row) and settle — on SQLite (in-memory limits + the row)
 * and, given a URL, on PostgreSQL (the transaction with advisory locks and the usage reads).
 *   build/bench_reserve [N] [postgres://...]
 * Run from the repo root. Prints microseconds per admission and per settlement. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "policy/ledger.h"
#include "store/store.h"
#include "util/util.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int run(const char *label, const char *url, int n, int in_memory)
{
    struct gw_store *s = NULL;
    struct gw_errbuf eb = {{0}};
    struct gw_budget_windows w = {0, 1};
    struct gw_ledger l = {.windows = w};
    struct gw_key_rec k;
    int64_t org = 0;
    char slug[32];

    if (gw_store_open(url, &s, &eb) != 0 || gw_store_migrate(s, &eb) != 0) {
        fprintf(stderr, "bench_reserve: %s: %s\n", label, eb.msg);
        gw_store_free(s);
        return 1;
    }
    if (in_memory && gw_limits_new(&w, &l.limits) != 0)
        return 1;
    snprintf(slug, sizeof(slug), "bench%d", (int)getpid());
    if (gw_store_org_create(s, slug, slug, &org) != 0)
        return 1;
    memset(&k, 0, sizeof(k));
    snprintf(k.key_id, sizeof(k.key_id), "key_bench%d", (int)getpid());
    gw_strlcpy(k.role, "member", sizeof(k.role));
    gw_strlcpy(k.tier, "free", sizeof(k.tier));
    k.org_id = org;
    unsigned char hash[32];
    gw_sha256(hash, k.key_id, strlen(k.key_id));
    if (gw_store_key_insert(s, &k, hash) != 0)
        return 1;
    /* every window limited, so that every check runs */
    struct gw_limit_set kl = {.rph = 1000000000, .tph = 1000000000000, .max_concurrent = 1000000,
                              .daily_usd_micros = 1000000000000, .monthly_usd_micros = 1000000000000,
                              .max_request_usd_micros = 1000000000};
    double t_admit = 0, t_settle = 0;
    for (int i = 0; i < n; i++) {
        struct gw_usage_row r = {0};
        struct gw_hold h;
        snprintf(r.request_id, sizeof(r.request_id), "bench_%d_%d", (int)getpid(), i);
        gw_strlcpy(r.provider, "openai", sizeof(r.provider));
        gw_strlcpy(r.model, "gpt-4o", sizeof(r.model));
        gw_strlcpy(r.endpoint, "chat.completions", sizeof(r.endpoint));
        gw_strlcpy(r.kind, "chat", sizeof(r.kind));
        gw_strlcpy(r.state, "reserved", sizeof(r.state));
        r.org_id = org;
        r.key_row_id = k.id;
        r.reserved_micros = 640;
        r.reserved_tokens = 90;
        r.created_ms = gw_now_ms();
        struct gw_admission a = {
            .q = {.key_id = k.id, .org_id = org, .key = &kl, .org = &kl, .usd = 640,
                  .tokens = 90, .request = 1, .now_ms = r.created_ms},
            .first = 1,
            .hold = &h,
            .row = &r,
        };
        double t0 = now_us();
        gw_ledger_admit(&l, s, &a);
        double t1 = now_us();
        if (a.rc != 0) {
            fprintf(stderr, "bench_reserve: %s: admission failed (%d)\n", label, a.rc);
            return 1;
        }
        gw_strlcpy(r.state, "settled", sizeof(r.state));
        r.cost_micros = 575;
        r.tokens_in = 120;
        r.tokens_out = 30;
        r.status = 200;
        if (gw_ledger_settle(&l, s, &h, &r, 575, 150, &a.q, 640, 90) != 0)
            return 1;
        t_settle += now_us() - t1;
        t_admit += t1 - t0;
    }
    printf("reserve %-10s admit %7.1f us   settle %7.1f us   per request (%d requests)\n", label,
           t_admit / n, t_settle / n, n);
    gw_limits_free(l.limits);
    gw_store_free(s);
    return 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 2000;
    char dir[] = "/tmp/llmgw-bench-XXXXXX", url[96];
    if (n < 1 || mkdtemp(dir) == NULL)
        return 1;
    snprintf(url, sizeof(url), "sqlite:%s/bench.db", dir);
    int rc = run("sqlite", url, n, 1);
    if (rc == 0 && argc > 2)
        rc = run("postgres", argv[2], n, 0);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
