/*
 * fuzz_catalog — the model catalog (catalog/models.yaml): core/yaml and core/catalog, through
 * gw_catalog_load from a file (YAML), and gw_catalog_from_json on the input parsed as JSON
 * (a catalog may be a .json file).
 *
 * Oracles: a refusal says why; in an accepted catalog every model is found by its id and its
 * aliases, costs are never negative and never above the worst case of the same tokens, and
 * the GET /v1/models list is built.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fz.h"
#include "core/catalog.h"
#include "util/json.h"
#include "util/mem.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return fz_setup();
}

static int configured(void *arg, const char *provider)
{
    (void)arg;
    return strcmp(provider, "openai") == 0;
}

static void check(const struct gw_catalog *c)
{
    static const struct gw_usage uses[] = {
        {.input_tokens = 1000, .output_tokens = 500, .seen = 1},
        {.input_tokens = 300000, .cached_input_tokens = 100000, .cache_write_tokens = 50000,
         .cache_write_1h_tokens = 20000, .output_tokens = 4000, .reasoning_tokens = 1000,
         .search_requests = 2, .search_context_size = "high", .seen = 1},
        {.input_tokens = GW_USAGE_MAX, .cached_input_tokens = GW_USAGE_MAX,
         .cache_write_tokens = GW_USAGE_MAX, .cache_write_1h_tokens = GW_USAGE_MAX,
         .output_tokens = GW_USAGE_MAX, .reasoning_tokens = GW_USAGE_MAX,
         .search_requests = GW_USAGE_MAX, .search_context_size = "low", .seen = 1},
    };
    int n = gw_catalog_count(c);
    for (int i = 0; i < n; i++) {
        const struct gw_model *m = gw_catalog_at(c, i);
        if (m == NULL || gw_catalog_find(c, m->id) != m)
            fz_fail("model %d is not found by its id", i);
        for (int k = 0; k < m->naliases; k++)
            if (gw_catalog_find(c, m->aliases[k]) != m)
                fz_fail("model %s is not found by its alias %s", m->id, m->aliases[k]);
        for (size_t u = 0; u < sizeof(uses) / sizeof(uses[0]); u++) {
            int64_t cost = gw_cost_micros(m, &uses[u]);
            int64_t worst = gw_cost_worst_micros(m, uses[u].input_tokens, uses[u].output_tokens);
            if (cost < 0 || worst < 0)
                fz_fail("model %s: a negative cost", m->id);
            if (uses[u].cache_write_tokens == 0 && uses[u].search_requests == 0 && cost > worst)
                fz_fail("model %s: a cost above its worst case", m->id);
        }
    }
    json_t *list = gw_catalog_to_json(c, configured, NULL);
    if (list == NULL)
        fz_fail("no model list");
    char *s = gw_json_dump(list);
    if (s == NULL)
        fz_fail("the model list does not serialise");
    gw_free(s);
    json_decref(list);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_errbuf eb = {{0}};
    struct gw_catalog *c = NULL;

    int rc = gw_catalog_load(fz_file(data, size), &c, &eb);
    if (getenv("FZ_VERBOSE") != NULL)
        fprintf(stderr, "catalog: %s %s\n", rc == 0 ? "loaded" : "refused:", eb.msg);
    if (rc == 0)
        check(c);
    else if (eb.msg[0] == '\0' || c != NULL)
        fz_fail("a catalog refused without a reason, or with a result");
    gw_catalog_free(c);
    c = NULL;
    json_t *root = gw_json_parse((const char *)data, size, NULL);
    if (root != NULL && gw_catalog_from_json(root, &c, &eb) == 0)
        check(c);
    gw_catalog_free(c);
    json_decref(root);
    return 0;
}
