/* Microbenchmark: the cost of one heuristic routing decision (catalog/routing.yaml against the
 * shipped catalog) for a few typical prompts. Run from the repo root: build/bench_route */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/catalog.h"
#include "route/route.h"

static int allow_all(void *arg, const struct gw_model *m)
{
    (void)arg;
    (void)m;
    return 1;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(void)
{
    static const char *const prompts[] = {
        "hi!",
        "Why does my Python code raise a KeyError exception in this loop?",
        "What is the latest news on the EU AI Act?",
        "Tell me a long story about a lighthouse keeper and the sea, with three chapters, "
        "dialogue, and a surprising ending that ties back to the first page.",
    };
    struct gw_catalog *cat = NULL;
    struct gw_router *r = NULL;
    struct gw_errbuf eb = {{0}};
    if (gw_catalog_load("catalog/models.yaml", &cat, &eb) != 0 ||
        gw_router_load("catalog/routing.yaml", cat, &r, &eb) != 0) {
        fprintf(stderr, "bench_route: %s\n", eb.msg);
        return 1;
    }
    const int iters = 200000;
    for (size_t p = 0; p < sizeof(prompts) / sizeof(prompts[0]); p++) {
        json_t *body = json_pack("{s:[{s:s,s:s}]}", "messages", "role", "user", "content",
                                 prompts[p]);
        struct gw_route_req q = {.body = body, .input_tokens = 60, .allowed = allow_all};
        struct gw_route_result res;
        double t0 = now_ns();
        for (int i = 0; i < iters; i++) {
            gw_route_req_init(&q); /* per request, as the pipeline does */
            if (gw_route_heuristic(r, &q, &res) != 0)
                return 1;
        }
        double per = (now_ns() - t0) / iters;
        printf("route %-18s -> %-18s %7.0f ns per decision  (\"%.40s\")\n", res.rule,
               res.model->id, per, prompts[p]);
        json_decref(body);
    }
    gw_router_free(r);
    gw_catalog_free(cat);
    return 0;
}
