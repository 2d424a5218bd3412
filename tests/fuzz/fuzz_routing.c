/*
 * fuzz_routing — the heuristic routing rules (catalog/routing.yaml): core/yaml and
 * route/heuristic gw_router_from_json against the real catalog; accepted rules then route a
 * few requests (a coding question, an image, tools, a long prompt) with fallbacks, the budget
 * rule and the LLM router's candidates and prompt.
 *
 * Oracles: a refusal says why; a choice, its fallbacks and the candidates are catalog models
 * the request fits, never the same model twice in one fallback list.
 */
#include <string.h>

#include "common/fz.h"
#include "core/config.h"
#include "route/route.h"

static struct gw_catalog *catalog;
static json_t *requests;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    catalog = fz_catalog();
    requests = json_loads(
        "[{\"messages\":[{\"role\":\"user\",\"content\":\"Fix this stack trace in my Python "
        "code: TypeError\"}]},"
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is "
        "in this picture?\"},{\"type\":\"image_url\",\"image_url\":{\"url\":"
        "\"https://example.com/a.png\"}}]}]},"
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"}],\"tools\":[{"
        "\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}]},"
        "{\"messages\":[{\"role\":\"system\",\"content\":\"Summarize.\"},{\"role\":\"user\","
        "\"content\":\"Translate this legal contract into French, section by section.\"}]}]",
        0, NULL);
    if (requests == NULL)
        fz_fail("the requests do not parse");
    return fz_setup();
}

static int allow_all(void *arg, const struct gw_model *m)
{
    (void)arg;
    return strcmp(m->provider, "xai") != 0; /* one provider not configured */
}

static void check_model(const struct gw_route_req *q, const struct gw_model *m, const char *what)
{
    if (m == NULL || gw_catalog_find(catalog, m->id) != m || !gw_route_fits(q, m))
        fz_fail("%s: not a catalog model that fits", what);
}

static void route(const struct gw_router *r, const json_t *body, int64_t input_tokens)
{
    struct gw_route_req q = {.body = body, .input_tokens = input_tokens,
                             .max_output_tokens = 1000, .allowed = allow_all};
    struct gw_route_result res;
    const struct gw_model *fb[GW_ROUTE_MAX_TARGETS], *cands[64];

    gw_route_req_init(&q);
    if (gw_route_heuristic(r, &q, &res) == 0) {
        check_model(&q, res.model, "the choice");
        if (strlen(res.rule) >= sizeof(res.rule) || strlen(res.reason) >= sizeof(res.reason))
            fz_fail("the rule or reason overflows");
        int n = gw_route_fallbacks(r, &q, res.model, &res, fb, GW_ROUTE_MAX_TARGETS);
        for (int i = 0; i < n; i++) {
            check_model(&q, fb[i], "a fallback");
            if (fb[i] == res.model)
                fz_fail("the choice is its own fallback");
            for (int k = 0; k < i; k++)
                if (fb[k] == fb[i])
                    fz_fail("a fallback twice");
        }
        if (gw_route_budget(r, &q, 95, 10000, "daily", &res) == 1)
            check_model(&q, res.model, "the cheaper choice");
        int nchain;
        (void)gw_router_chain(r, res.model, &nchain);
        (void)gw_router_model_use(r, res.model);
    }
    int n = gw_router_candidates(r, &q, cands, 64);
    for (int i = 0; i < n; i++)
        check_model(&q, cands[i], "a candidate");
    if (n > 0) {
        json_t *p = gw_router_prompt(r, &q, cands, n, 100);
        if (p == NULL)
            fz_fail("no router prompt");
        json_decref(p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_errbuf eb = {{0}};
    struct gw_router *r = NULL;
    json_t *root = NULL;

    if (gw_yaml_load_string((const char *)data, size, &root, &eb) != 0)
        return 0;
    if (gw_router_from_json(root, catalog, &r, &eb) != 0) {
        if (eb.msg[0] == '\0' || r != NULL)
            fz_fail("rules refused without a reason, or with a result");
        json_decref(root);
        return 0;
    }
    size_t i;
    json_t *body;
    json_array_foreach(requests, i, body) {
        route(r, body, 50);
        route(r, body, 150000);
    }
    (void)gw_router_budget_percent(r);
    gw_router_free(r);
    json_decref(root);
    return 0;
}
