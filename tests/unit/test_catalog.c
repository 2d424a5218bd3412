/* Unit tests for core/catalog: the shipped catalog/models.yaml loads and holds every promised
 * model; aliases resolve; invalid catalogs are rejected with useful messages; cost arithmetic is
 * exact on hand-computed cases (cache reads and writes, reasoning tokens, Gemini's long-prompt
 * tier, Perplexity's search fee, rounding half up, saturation); /v1/models JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/catalog.h"
#include "core/config.h"
#include "util/mem.h"

#define REAL_CATALOG "../../catalog/models.yaml"

static struct gw_catalog *load_real(void)
{
    struct gw_errbuf eb = {{0}};
    struct gw_catalog *c = NULL;
    int rc = gw_catalog_load(REAL_CATALOG, &c, &eb);
    if (rc != 0)
        fail_msg("loading %s failed: %s", REAL_CATALOG, eb.msg);
    return c;
}

static const struct gw_model *must_find(const struct gw_catalog *c, const char *name)
{
    const struct gw_model *m = gw_catalog_find(c, name);
    if (m == NULL)
        fail_msg("model '%s' is not in the catalog", name);
    return m;
}

/* Parse YAML text into a catalog; returns the gw_catalog_from_json result. */
static int from_yaml(const char *yaml, struct gw_catalog **out, struct gw_errbuf *eb)
{
    json_t *root = NULL;
    int rc = gw_yaml_load_string(yaml, strlen(yaml), &root, eb);
    if (rc != 0)
        fail_msg("test YAML does not parse: %s", eb->msg);
    rc = gw_catalog_from_json(root, out, eb);
    json_decref(root);
    return rc;
}

/* ---- the shipped catalog ---- */

static void real_catalog_loads(void **state)
{
    struct gw_catalog *c = load_real();
    assert_string_equal(gw_catalog_version(c), "2026-11-24.2");
    assert_true(gw_catalog_count(c) >= 18);
    assert_null(gw_catalog_at(c, -1));
    assert_null(gw_catalog_at(c, gw_catalog_count(c)));
    assert_string_equal(gw_catalog_at(c, 0)->id, "claude-opus-4-6"); /* file order */
    gw_catalog_free(c);
}

static void promised_models_present(void **state)
{
    static const struct {
        const char *id, *provider, *wire;
        int reasoning;
    } want[] = {
        {"claude-opus-4-6", "anthropic", "claude-opus-4-6", 0},
        {"claude-sonnet-4-6", "anthropic", "claude-sonnet-4-6", 0},
        {"claude-haiku-4-5", "anthropic", "claude-haiku-4-5", 0},
        {"gpt-5.4", "openai", "gpt-5.4", 1},
        {"gpt-4o", "openai", "gpt-4o", 0},
        {"o3", "openai", "o3", 1},
        {"o3-mini", "openai", "o3-mini", 1},
        {"gemini-2.5-pro", "gemini", "gemini-2.5-pro", 0},
        {"gemini-2.5-flash", "gemini", "gemini-2.5-flash", 0},
        {"gemini-2.0-flash", "gemini", "gemini-2.0-flash", 0},
        {"grok-4", "xai", "grok-4-0709", 1},
        {"grok-4-1-fast-reasoning", "xai", "grok-4-1-fast-reasoning", 1},
        {"grok-4-1-fast-non-reasoning", "xai", "grok-4-1-fast-non-reasoning", 0},
        {"grok-3", "xai", "grok-3", 0},
        {"sonar-pro", "perplexity", "sonar-pro", 0},
        {"sonar-reasoning-pro", "perplexity", "sonar-reasoning-pro", 1},
    };
    struct gw_catalog *c = load_real();
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct gw_model *m = must_find(c, want[i].id);
        assert_string_equal(m->provider, want[i].provider);
        assert_string_equal(m->wire_id, want[i].wire);
        assert_int_equal(m->reasoning, want[i].reasoning);
    }
    /* every gpt-5* model is a reasoning model */
    for (int i = 0; i < gw_catalog_count(c); i++)
        if (strncmp(gw_catalog_at(c, i)->id, "gpt-5", 5) == 0)
            assert_int_equal(gw_catalog_at(c, i)->reasoning, 1);
    gw_catalog_free(c);
}

static void real_catalog_prices(void **state)
{
    struct gw_catalog *c = load_real();
    const struct gw_model *m;

    m = must_find(c, "claude-sonnet-4-6");
    assert_int_equal(m->price.input, 3000000);
    assert_int_equal(m->price.output, 15000000);
    assert_int_equal(m->price.cached_input, 300000);
    assert_int_equal(m->price.cache_write, 3750000);
    m = must_find(c, "claude-opus-4-6");
    assert_int_equal(m->price.input, 5000000);
    assert_int_equal(m->price.cached_input, 500000);
    m = must_find(c, "gpt-5.4");
    assert_int_equal(m->price.input, 2500000);
    assert_int_equal(m->price.cached_input, 250000);
    m = must_find(c, "o3-mini");
    assert_int_equal(m->price.input, 1100000);
    assert_int_equal(m->price.output, 4400000);
    assert_int_equal(m->price.cached_input, 550000);
    m = must_find(c, "gemini-2.5-pro");
    assert_int_equal(m->price.input, 1250000);
    assert_int_equal(m->tier_above, 200000);
    assert_int_equal(m->tier_price.input, 2500000);
    assert_int_equal(m->tier_price.output, 15000000);
    m = must_find(c, "grok-4-1-fast-non-reasoning");
    assert_int_equal(m->price.input, 200000);
    assert_int_equal(m->price.output, 500000);
    assert_int_equal(m->context_window, 2000000);
    m = must_find(c, "sonar-pro");
    assert_int_equal(m->search_fee_low, 6000000);
    assert_int_equal(m->search_fee_medium, 10000000);
    assert_int_equal(m->search_fee_high, 14000000);

    for (int i = 0; i < gw_catalog_count(c); i++) {
        m = gw_catalog_at(c, i);
        assert_true(m->wire_id[0] != '\0');
        assert_true(m->name[0] != '\0');
        assert_true(m->default_max_tokens >= 1);
        assert_true(m->default_max_tokens <= m->max_output_tokens);
        assert_true(m->max_output_tokens <= m->context_window);
        assert_true(m->price.input > 0 && m->price.output > 0);
        if (strcmp(m->provider, "anthropic") == 0) {
            /* cache write = 1.25 x input, cache read = 0.1 x input, exactly */
            assert_int_equal(m->price.cache_write * 4, m->price.input * 5);
            assert_int_equal(m->price.cached_input * 10, m->price.input);
        }
        if (strcmp(m->provider, "perplexity") == 0)
            assert_true(m->search_fee_medium > 0);
        else
            assert_int_equal(m->search_fee_medium, 0);
    }
    gw_catalog_free(c);
}

static void aliases_resolve(void **state)
{
    struct gw_catalog *c = load_real();
    assert_string_equal(must_find(c, "sonnet")->id, "claude-sonnet-4-6");
    assert_string_equal(must_find(c, "claude-sonnet")->id, "claude-sonnet-4-6");
    assert_string_equal(must_find(c, "opus")->id, "claude-opus-4-6");
    assert_string_equal(must_find(c, "haiku")->id, "claude-haiku-4-5");
    assert_string_equal(must_find(c, "grok-4")->wire_id, "grok-4-0709");
    assert_string_equal(must_find(c, "grok-4-0709")->id, "grok-4-0709");
    assert_string_equal(must_find(c, "grok-4-1-fast")->id, "grok-4-1-fast-reasoning");
    assert_string_equal(must_find(c, "gemini-pro")->id, "gemini-2.5-pro");
    assert_null(gw_catalog_find(c, "Sonnet")); /* case-sensitive */
    assert_null(gw_catalog_find(c, "gpt-9"));
    assert_null(gw_catalog_find(c, ""));
    assert_null(gw_catalog_find(c, NULL));
    assert_null(gw_catalog_find(NULL, "sonnet"));

    /* no alias equals an id or another alias anywhere in the file */
    for (int i = 0; i < gw_catalog_count(c); i++) {
        const struct gw_model *m = gw_catalog_at(c, i);
        assert_ptr_equal(gw_catalog_find(c, m->id), m);
        for (int k = 0; k < m->naliases; k++)
            assert_ptr_equal(gw_catalog_find(c, m->aliases[k]), m);
    }
    gw_catalog_free(c);
}

/* ---- rejection of bad catalogs ---- */

#define MODEL_A                                                                                    \
    "  - id: model-a\n"                                                                            \
    "    provider: openai\n"                                                                       \
    "    aliases: [a1]\n"                                                                          \
    "    context_window: 1000\n"                                                                   \
    "    max_output_tokens: 100\n"                                                                 \
    "    price: {input: \"1\", output: \"2\"}\n"

static void reject(const char *models_yaml, const char *needle)
{
    char doc[2048];
    struct gw_errbuf eb = {{0}};
    struct gw_catalog *c = (struct gw_catalog *)0x1;
    snprintf(doc, sizeof(doc), "version: \"t1\"\nmodels:\n" MODEL_A "%s", models_yaml);
    int rc = from_yaml(doc, &c, &eb);
    if (rc == 0)
        fail_msg("catalog accepted:\n%s", doc);
    assert_int_equal(rc, GW_EINVAL);
    assert_null(c);
    if (strstr(eb.msg, needle) == NULL)
        fail_msg("error '%s' lacks '%s'", eb.msg, needle);
}

static void model_b(char *buf, size_t n, const char *override_line)
{
    /* a valid model-b with one line replaced/added */
    snprintf(buf, n,
             "  - id: model-b\n"
             "    provider: anthropic\n"
             "    context_window: 1000\n"
             "    max_output_tokens: 100\n"
             "%s",
             override_line);
}

static void invalid_catalogs_rejected(void **state)
{
    char b[512];
    model_b(b, sizeof(b), "    price: {input: \"1\", output: \"2\"}\n");
    {
        /* sanity: A + B is valid */
        char doc[2048];
        struct gw_errbuf eb = {{0}};
        struct gw_catalog *c = NULL;
        snprintf(doc, sizeof(doc), "version: \"t1\"\nmodels:\n" MODEL_A "%s", b);
        assert_int_equal(from_yaml(doc, &c, &eb), 0);
        assert_int_equal(gw_catalog_count(c), 2);
        assert_string_equal(gw_catalog_find(c, "model-b")->wire_id, "model-b");
        assert_string_equal(gw_catalog_find(c, "model-b")->name, "model-b");
        assert_int_equal(gw_catalog_find(c, "model-b")->default_max_tokens, 100);
        assert_int_equal(gw_catalog_find(c, "model-b")->price.cached_input, -1);
        assert_int_equal(gw_catalog_find(c, "model-b")->price.cache_write, -1);
        gw_catalog_free(c);
    }
    reject(MODEL_A, "'model-a' is already used");
    reject("  - id: model-b\n    provider: openai\n    aliases: [model-a]\n"
           "    context_window: 10\n    max_output_tokens: 1\n"
           "    price: {input: \"1\", output: \"2\"}\n",
           "'model-a' is already used");
    reject("  - id: a1\n    provider: openai\n    context_window: 10\n    max_output_tokens: 1\n"
           "    price: {input: \"1\", output: \"2\"}\n",
           "'a1' is already used");
    reject("  - id: model-b\n    provider: openai\n    aliases: [a1]\n    context_window: 10\n"
           "    max_output_tokens: 1\n    price: {input: \"1\", output: \"2\"}\n",
           "'a1' is already used");
    reject("  - id: model-b\n    provider: openai\n    aliases: [x, x]\n    context_window: 10\n"
           "    max_output_tokens: 1\n    price: {input: \"1\", output: \"2\"}\n",
           "'x' is already used");
    reject("  - id: model-b\n    provider: openai\n    aliases: [model-b]\n    context_window: 10\n"
           "    max_output_tokens: 1\n    price: {input: \"1\", output: \"2\"}\n",
           "'model-b' is already used");

    model_b(b, sizeof(b), "    price: {input: \"1.2.3\", output: \"2\"}\n");
    reject(b, "price.input");
    model_b(b, sizeof(b), "    price: {input: -1, output: \"2\"}\n");
    reject(b, "must not be negative");
    model_b(b, sizeof(b), "    price: {input: \"-1\", output: \"2\"}\n");
    reject(b, "price.input");
    model_b(b, sizeof(b), "    price: {input: \"1.1234567\", output: \"2\"}\n");
    reject(b, "price.input");
    model_b(b, sizeof(b), "    price: {input: \"1\"}\n");
    reject(b, "price.output");
    model_b(b, sizeof(b), "    price: {input: \"1\", output: \"2\", cached: \"1\"}\n");
    reject(b, "price.cached");
    model_b(b, sizeof(b), "    price: {input: \"1\", output: true}\n");
    reject(b, "price.output");
    model_b(b, sizeof(b), "");
    reject(b, "'price' is missing");
    model_b(b, sizeof(b),
            "    price: {input: \"1\", output: \"2\"}\n"
            "    tiers: [{above_input_tokens: 10, input: \"2\", output: \"3\"},\n"
            "            {above_input_tokens: 20, input: \"2\", output: \"3\"}]\n");
    reject(b, "one tier");
    model_b(b, sizeof(b),
            "    price: {input: \"1\", output: \"2\"}\n"
            "    tiers: [{input: \"2\", output: \"3\"}]\n");
    reject(b, "above_input_tokens");
    model_b(b, sizeof(b),
            "    price: {input: \"1\", output: \"2\"}\n"
            "    search_fee_per_1k: {low: \"1\", medium: \"2\"}\n");
    reject(b, "search_fee_per_1k.high");
    model_b(b, sizeof(b), "    price: {input: \"1\", output: \"2\"}\n    colour: blue\n");
    reject(b, "'colour' is not a known field");
    model_b(b, sizeof(b),
            "    price: {input: \"1\", output: \"2\"}\n    default_max_tokens: 500\n");
    reject(b, "default_max_tokens");
    model_b(b, sizeof(b), "    price: {input: \"1\", output: \"2\"}\n    vision: yes\n");
    reject(b, "vision");
    model_b(b, sizeof(b), "    price: {input: \"1\", output: \"2\"}\n    wire_id: \"a b\"\n");
    reject(b, "wire_id");

    reject("  - id: model-b\n    provider: mistral\n    context_window: 10\n"
           "    max_output_tokens: 1\n    price: {input: \"1\", output: \"2\"}\n",
           "provider");
    reject("  - id: \"gpt 4\"\n    provider: openai\n    context_window: 10\n"
           "    max_output_tokens: 1\n    price: {input: \"1\", output: \"2\"}\n",
           "'id'");
    reject("  - id: model-b\n    provider: openai\n    context_window: \"10\"\n"
           "    max_output_tokens: 1\n    price: {input: \"1\", output: \"2\"}\n",
           "context_window");
    reject("  - id: model-b\n    provider: openai\n    context_window: 10\n"
           "    max_output_tokens: 0\n    price: {input: \"1\", output: \"2\"}\n",
           "max_output_tokens");
    reject("  - id: model-b\n    provider: openai\n    context_window: 10\n"
           "    max_output_tokens: 11\n    price: {input: \"1\", output: \"2\"}\n",
           "exceeds context_window");
    reject("  - id: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
           "    provider: openai\n    context_window: 10\n"
           "    max_output_tokens: 1\n    price: {input: \"1\", output: \"2\"}\n",
           "too long");
    reject("  - id: model-b\n    provider: openai\n    aliases: [a, b, c, d, e, f, g, h, i]\n"
           "    context_window: 10\n    max_output_tokens: 1\n"
           "    price: {input: \"1\", output: \"2\"}\n",
           "more than 8");
    reject("  - just a string\n", "models[1] must be a mapping");
}

static void invalid_top_level_rejected(void **state)
{
    struct gw_errbuf eb = {{0}};
    struct gw_catalog *c = NULL;
    assert_int_equal(from_yaml("models: []\nversion: \"1\"\n", &c, &eb), GW_EINVAL);
    assert_non_null(strstr(eb.msg, "models"));
    assert_int_equal(from_yaml("version: \"1\"\n", &c, &eb), GW_EINVAL);
    assert_int_equal(from_yaml("version: 5\nmodels: []\n", &c, &eb), GW_EINVAL);
    assert_non_null(strstr(eb.msg, "version"));
    assert_int_equal(from_yaml("version: \"1\"\nmodels:\n" MODEL_A "extra: 1\n", &c, &eb),
                     GW_EINVAL);
    assert_non_null(strstr(eb.msg, "extra"));
    assert_int_equal(from_yaml("- a\n", &c, &eb), GW_EINVAL);
    assert_null(c);
}

static void json_catalog_and_floats(void **state)
{
    char path[64] = "/tmp/llmgw_test_catalog_XXXXXX.json";
    struct gw_errbuf eb = {{0}};
    struct gw_catalog *c = NULL;
    int fd = mkstemps(path, 5);
    assert_true(fd >= 0);
    const char *ok = "{\"version\":\"j1\",\"models\":[{\"id\":\"m\",\"provider\":\"xai\","
                     "\"context_window\":10,\"max_output_tokens\":5,"
                     "\"price\":{\"input\":\"0.20\",\"output\":3}}]}";
    assert_int_equal(write(fd, ok, strlen(ok)), (ssize_t)strlen(ok));
    close(fd);
    assert_int_equal(gw_catalog_load(path, &c, &eb), 0);
    assert_string_equal(gw_catalog_version(c), "j1");
    assert_int_equal(gw_catalog_find(c, "m")->price.input, 200000);
    assert_int_equal(gw_catalog_find(c, "m")->price.output, 3000000);
    gw_catalog_free(c);
    unlink(path);

    /* a JSON float price is refused: money must be an exact decimal string */
    json_t *root = json_loads("{\"version\":\"j1\",\"models\":[{\"id\":\"m\",\"provider\":\"xai\","
                              "\"context_window\":10,\"max_output_tokens\":5,"
                              "\"price\":{\"input\":0.2,\"output\":3}}]}",
                              0, NULL);
    assert_non_null(root);
    assert_int_equal(gw_catalog_from_json(root, &c, &eb), GW_EINVAL);
    assert_non_null(strstr(eb.msg, "price.input"));
    json_decref(root);

    assert_int_equal(gw_catalog_load("/nonexistent/models.yaml", &c, &eb), GW_EIO);
    assert_int_equal(gw_catalog_load("/nonexistent/models.json", &c, &eb), GW_EIO);
}

static void catalog_oom(void **state)
{
    struct gw_errbuf eb = {{0}};
    json_t *root = NULL;
    const char *doc = "version: \"t\"\nmodels:\n" MODEL_A;
    assert_int_equal(gw_yaml_load_string(doc, strlen(doc), &root, &eb), 0);
    for (long n = 1; n < 10; n++) {
        struct gw_catalog *c = NULL;
        gw_mem_fail_after(n);
        int rc = gw_catalog_from_json(root, &c, &eb);
        gw_mem_fail_after(0);
        if (rc == 0) {
            gw_catalog_free(c);
            json_decref(root);
            return;
        }
        assert_int_equal(rc, GW_ENOMEM);
        assert_null(c);
    }
    fail_msg("never succeeded");
}

/* ---- cost arithmetic ---- */

static struct gw_model mk_model(int64_t in, int64_t out, int64_t cached, int64_t write)
{
    struct gw_model m;
    memset(&m, 0, sizeof(m));
    m.price.input = in;
    m.price.output = out;
    m.price.cached_input = cached;
    m.price.cache_write = write;
    m.price.cache_write_1h = -1;
    return m;
}

static struct gw_usage mk_usage(int64_t in, int64_t cached, int64_t write, int64_t out)
{
    struct gw_usage u;
    memset(&u, 0, sizeof(u));
    u.input_tokens = in;
    u.cached_input_tokens = cached;
    u.cache_write_tokens = write;
    u.output_tokens = out;
    u.seen = 1;
    return u;
}

static void cost_zero_and_simple(void **state)
{
    struct gw_catalog *c = load_real();
    const struct gw_model *sonnet = must_find(c, "claude-sonnet-4-6");
    struct gw_usage u = mk_usage(0, 0, 0, 0);
    for (int i = 0; i < gw_catalog_count(c); i++)
        assert_int_equal(gw_cost_micros(gw_catalog_at(c, i), &u), 0);
    /* 1000 in x $3 + 500 out x $15 = $0.003 + $0.0075 = 10500 micro-USD */
    u = mk_usage(1000, 0, 0, 500);
    assert_int_equal(gw_cost_micros(sonnet, &u), 10500);
    /* 1M in + 1M out = $18 exactly */
    u = mk_usage(1000000, 0, 0, 1000000);
    assert_int_equal(gw_cost_micros(sonnet, &u), 18000000);
    assert_int_equal(gw_cost_micros(NULL, &u), 0);
    assert_int_equal(gw_cost_micros(sonnet, NULL), 0);
    gw_catalog_free(c);
}

static void cost_cached_and_reasoning(void **state)
{
    struct gw_catalog *c = load_real();
    /* gpt-4o: $2.50 in, $1.25 cached, $10 out. 10000 in (4000 cached), 2000 out of which 1500
     * reasoning: 6000*2.5 + 4000*1.25 + 2000*10 = 15000 + 5000 + 20000 = 40000 micro-USD;
     * reasoning tokens are part of output and are not billed twice */
    struct gw_usage u = mk_usage(10000, 4000, 0, 2000);
    u.reasoning_tokens = 1500;
    assert_int_equal(gw_cost_micros(must_find(c, "gpt-4o"), &u), 40000);
    /* o3: $2 in, $0.50 cached, $8 out: 3000*2 + 7000*0.5 + 5000*8 = 6000+3500+40000 */
    u = mk_usage(10000, 7000, 0, 5000);
    u.reasoning_tokens = 4000;
    assert_int_equal(gw_cost_micros(must_find(c, "o3"), &u), 49500);
    /* cached > input (inconsistent report): the uncached part clamps to 0 */
    struct gw_model m = mk_model(2000000, 8000000, 500000, -1);
    u = mk_usage(100, 200, 0, 0);
    assert_int_equal(gw_cost_micros(&m, &u), 100); /* 200 * 0.5 */
    /* cached_input -1 = same as input */
    m = mk_model(2000000, 8000000, -1, -1);
    u = mk_usage(1000, 400, 0, 0);
    assert_int_equal(gw_cost_micros(&m, &u), 2000);
    gw_catalog_free(c);
}

static void cost_anthropic_cache_write(void **state)
{
    struct gw_catalog *c = load_real();
    const struct gw_model *sonnet = must_find(c, "claude-sonnet-4-6");
    /* 10000 in = 5000 plain + 2000 read + 3000 written; 100 out:
     * 5000*3 + 2000*0.30 + 3000*3.75 + 100*15 = 15000 + 600 + 11250 + 1500 = 28350 */
    struct gw_usage u = mk_usage(10000, 2000, 3000, 100);
    assert_int_equal(gw_cost_micros(sonnet, &u), 28350);
    /* haiku: 1 write token = $1.25/M = 1.25 micro → 1; 3 write tokens = 3.75 → 4 */
    const struct gw_model *haiku = must_find(c, "claude-haiku-4-5");
    u = mk_usage(1, 0, 1, 0);
    assert_int_equal(gw_cost_micros(haiku, &u), 1);
    u = mk_usage(3, 0, 3, 0);
    assert_int_equal(gw_cost_micros(haiku, &u), 4);
    /* 1-hour writes cost 2 x input: of the 3000 written, 1000 with the 1-hour TTL:
     * 5000*3 + 2000*0.30 + 2000*3.75 + 1000*6 + 100*15 = 15000+600+7500+6000+1500 = 30600 */
    u = mk_usage(10000, 2000, 3000, 100);
    u.cache_write_1h_tokens = 1000;
    assert_int_equal(gw_cost_micros(sonnet, &u), 30600);
    /* more 1-hour writes than writes (bad provider data) is clamped, never negative */
    u.cache_write_1h_tokens = 999999;
    assert_int_equal(gw_cost_micros(sonnet, &u), 15000 + 600 + 3000 * 6 + 1500);
    gw_catalog_free(c);
}

static void cost_gemini_tier(void **state)
{
    struct gw_catalog *c = load_real();
    const struct gw_model *pro = must_find(c, "gemini-2.5-pro");
    /* exactly 200K is still the base tier: 200000*1.25 + 1000*10 = 250000 + 10000 */
    struct gw_usage u = mk_usage(200000, 0, 0, 1000);
    assert_int_equal(gw_cost_micros(pro, &u), 260000);
    /* one token more switches the whole request: 200001*2.5 + 1000*15 = 500002.5 + 15000
     * = 515002.5 → rounds half up to 515003 */
    u = mk_usage(200001, 0, 0, 1000);
    assert_int_equal(gw_cost_micros(pro, &u), 515003);
    /* tier cached price: 300000 in with 100000 cached: 200000*2.5 + 100000*0.25 = 525000 */
    u = mk_usage(300000, 100000, 0, 0);
    assert_int_equal(gw_cost_micros(pro, &u), 525000);
    /* worst case above the tier uses the tier prices */
    assert_int_equal(gw_cost_worst_micros(pro, 300000, 1000), 765000);
    assert_int_equal(gw_cost_worst_micros(pro, 1000, 1000), 11250);
    gw_catalog_free(c);
}

static void cost_perplexity_search_fee(void **state)
{
    struct gw_catalog *c = load_real();
    const struct gw_model *sp = must_find(c, "sonar-pro");
    /* tokens: 1000*3 + 500*15 = 10500; one search at high: $14/1000 = 14000 micro-USD */
    struct gw_usage u = mk_usage(1000, 0, 0, 500);
    u.search_requests = 1;
    memcpy(u.search_context_size, "high", 5);
    assert_int_equal(gw_cost_micros(sp, &u), 24500);
    memcpy(u.search_context_size, "low", 4);
    assert_int_equal(gw_cost_micros(sp, &u), 16500);
    memcpy(u.search_context_size, "medium", 7);
    assert_int_equal(gw_cost_micros(sp, &u), 20500);
    memset(u.search_context_size, 0, sizeof(u.search_context_size)); /* unknown → medium */
    assert_int_equal(gw_cost_micros(sp, &u), 20500);
    memcpy(u.search_context_size, "huge", 5);
    assert_int_equal(gw_cost_micros(sp, &u), 20500);
    memcpy(u.search_context_size, "abcdefgh", 8); /* not NUL-terminated: still safe */
    assert_int_equal(gw_cost_micros(sp, &u), 20500);
    /* sonar: 1 token in ($1/M = 1 micro) + 3 searches at low, $5/1000 each = 15000 micro */
    const struct gw_model *sonar = must_find(c, "sonar");
    u = mk_usage(1, 0, 0, 0);
    u.search_requests = 3;
    memcpy(u.search_context_size, "low", 4);
    assert_int_equal(gw_cost_micros(sonar, &u), 15001);
    /* a fee of 1 micro-USD per 1000 requests is 0.001 micro for one request: alone it rounds
     * to 0, and so do 0.4995 micro of tokens, but the two together round to 1 */
    struct gw_model m = mk_model(1, 0, -1, -1);
    m.search_fee_medium = 1;
    u = mk_usage(0, 0, 0, 0);
    u.search_requests = 1;
    assert_int_equal(gw_cost_micros(&m, &u), 0);
    u = mk_usage(499500, 0, 0, 0);
    assert_int_equal(gw_cost_micros(&m, &u), 0);
    u.search_requests = 1;
    assert_int_equal(gw_cost_micros(&m, &u), 1); /* 0.4995 + 0.001 = 0.5005 → 1 */
    u = mk_usage(498999, 0, 0, 0);
    u.search_requests = 1;
    assert_int_equal(gw_cost_micros(&m, &u), 0); /* 0.498999 + 0.001 = 0.499999 → 0 */
    /* no search requests: no fee whatever the size */
    u = mk_usage(1000, 0, 0, 500);
    memcpy(u.search_context_size, "high", 5);
    assert_int_equal(gw_cost_micros(sp, &u), 10500);
    /* worst case adds one search at the high fee */
    assert_int_equal(gw_cost_worst_micros(sp, 1000, 500), 24500);
    gw_catalog_free(c);
}

static void cost_rounding_half_up(void **state)
{
    /* price 1 micro-USD per million tokens: cost = tokens / 1e6 micro, rounded half up */
    struct gw_model m = mk_model(1, 3, -1, -1);
    struct gw_usage u = mk_usage(499999, 0, 0, 0);
    assert_int_equal(gw_cost_micros(&m, &u), 0);
    u = mk_usage(500000, 0, 0, 0);
    assert_int_equal(gw_cost_micros(&m, &u), 1);
    u = mk_usage(1500000, 0, 0, 0);
    assert_int_equal(gw_cost_micros(&m, &u), 2);
    u = mk_usage(2499999, 0, 0, 0);
    assert_int_equal(gw_cost_micros(&m, &u), 2);
    /* one rounding for the sum, not per part: 0.4 + 0.3 (=100000 out * 3) → 0.7 → 1 */
    u = mk_usage(400000, 0, 0, 100000);
    assert_int_equal(gw_cost_micros(&m, &u), 1);
    /* an exact decimal that floats get wrong: 0.1 * 3 tokens-millions = 0.3 exactly */
    struct gw_model f = mk_model(100000, 0, -1, -1); /* $0.10 per M */
    u = mk_usage(3000000, 0, 0, 0);
    assert_int_equal(gw_cost_micros(&f, &u), 300000);
    /* 0.07 * 5 tokens = 0.35 micro → 0; 0.07 * 50 = 3.5 → 4 */
    struct gw_model g = mk_model(70000, 0, -1, -1);
    u = mk_usage(50, 0, 0, 0);
    assert_int_equal(gw_cost_micros(&g, &u), 4);
    u = mk_usage(5, 0, 0, 0);
    assert_int_equal(gw_cost_micros(&g, &u), 0);
}

static void cost_huge_and_negative(void **state)
{
    struct gw_catalog *c = load_real();
    const struct gw_model *opus = must_find(c, "claude-opus-4-6");
    struct gw_usage u = mk_usage(INT64_MAX, 0, 0, INT64_MAX);
    assert_int_equal(gw_cost_micros(opus, &u), INT64_MAX);
    u = mk_usage(INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX);
    u.search_requests = INT64_MAX;
    assert_int_equal(gw_cost_micros(must_find(c, "sonar-pro"), &u), INT64_MAX);
    /* largest value that does not saturate: 2^63-1 tokens at $0.000001/M ≈ 9.2e12 micro */
    struct gw_model m = mk_model(1, 0, -1, -1);
    u = mk_usage(INT64_MAX, 0, 0, 0);
    assert_int_equal(gw_cost_micros(&m, &u), 9223372036855LL); /* 9223372036854.775807 */
    /* absurd prices on a hand-built model are clamped, never overflow */
    m = mk_model(INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX);
    m.search_fee_medium = INT64_MAX;
    u = mk_usage(INT64_MAX, 1, 1, INT64_MAX);
    u.search_requests = INT64_MAX;
    assert_int_equal(gw_cost_micros(&m, &u), INT64_MAX);
    /* negative counts are treated as 0 */
    u = mk_usage(-5, -1, -1, -100);
    u.search_requests = -3;
    assert_int_equal(gw_cost_micros(opus, &u), 0);
    assert_int_equal(gw_cost_worst_micros(opus, -1, -1), 0);
    assert_int_equal(gw_cost_worst_micros(opus, INT64_MAX, INT64_MAX), INT64_MAX);
    assert_int_equal(gw_cost_worst_micros(NULL, 1, 1), 0);
    gw_catalog_free(c);
}

static void cost_worst_case(void **state)
{
    struct gw_catalog *c = load_real();
    /* sonnet: 1000*3 + 4096*15 = 3000 + 61440; no cache discount */
    assert_int_equal(gw_cost_worst_micros(must_find(c, "claude-sonnet-4-6"), 1000, 4096), 64440);
    /* gpt-5.4 above its 272K tier: 300000*5 + 1000*22.5 = 1500000 + 22500 */
    assert_int_equal(gw_cost_worst_micros(must_find(c, "gpt-5.4"), 300000, 1000), 1522500);
    /* rounding half up once: o3-mini 1 token in ($1.10/M) + 0 out = 1.1 → 1; 5 → 5.5 → 6 */
    assert_int_equal(gw_cost_worst_micros(must_find(c, "o3-mini"), 1, 0), 1);
    assert_int_equal(gw_cost_worst_micros(must_find(c, "o3-mini"), 5, 0), 6);
    gw_catalog_free(c);
}

/* ---- /v1/models ---- */

static int only_anthropic(void *arg, const char *provider)
{
    (*(int *)arg)++;
    return strcmp(provider, "anthropic") == 0;
}

static json_t *find_entry(json_t *data, const char *id)
{
    size_t i;
    json_t *e;
    json_array_foreach(data, i, e) {
        if (strcmp(json_string_value(json_object_get(e, "id")), id) == 0)
            return e;
    }
    fail_msg("no entry for %s", id);
    return NULL;
}

static void to_json_lists_models(void **state)
{
    struct gw_catalog *c = load_real();
    int calls = 0;
    json_t *list = gw_catalog_to_json(c, only_anthropic, &calls);
    assert_non_null(list);
    assert_string_equal(json_string_value(json_object_get(list, "object")), "list");
    json_t *data = json_object_get(list, "data");
    assert_int_equal(json_array_size(data), gw_catalog_count(c));
    assert_int_equal(calls, gw_catalog_count(c));

    json_t *e = find_entry(data, "claude-sonnet-4-6");
    assert_string_equal(json_string_value(json_object_get(e, "object")), "model");
    assert_int_equal(json_integer_value(json_object_get(e, "created")), 0);
    assert_string_equal(json_string_value(json_object_get(e, "owned_by")), "anthropic");
    assert_string_equal(json_string_value(json_object_get(e, "provider")), "anthropic");
    assert_string_equal(json_string_value(json_object_get(e, "name")), "Claude Sonnet 4.6");
    assert_string_equal(json_string_value(json_array_get(json_object_get(e, "aliases"), 1)),
                        "sonnet");
    assert_int_equal(json_integer_value(json_object_get(e, "context_window")), 1000000);
    assert_int_equal(json_integer_value(json_object_get(e, "max_output_tokens")), 64000);
    assert_true(json_is_true(json_object_get(e, "available")));
    json_t *p = json_object_get(e, "pricing");
    assert_string_equal(json_string_value(json_object_get(p, "input_per_million")), "3.00");
    assert_string_equal(json_string_value(json_object_get(p, "cached_input_per_million")),
                        "0.30");
    assert_string_equal(json_string_value(json_object_get(p, "output_per_million")), "15.00");
    assert_string_equal(json_string_value(json_object_get(p, "cache_write_per_million")),
                        "3.75");

    e = find_entry(data, "gpt-4o-mini");
    assert_true(json_is_false(json_object_get(e, "available")));
    p = json_object_get(e, "pricing");
    assert_string_equal(json_string_value(json_object_get(p, "input_per_million")), "0.15");
    assert_string_equal(json_string_value(json_object_get(p, "cached_input_per_million")),
                        "0.075");
    assert_string_equal(json_string_value(json_object_get(p, "output_per_million")), "0.60");
    assert_null(json_object_get(p, "cache_write_per_million"));
    assert_int_equal(json_array_size(json_object_get(e, "aliases")), 0);

    e = find_entry(data, "gemini-2.5-pro");
    json_t *tier = json_object_get(json_object_get(e, "pricing"), "tier");
    assert_int_equal(json_integer_value(json_object_get(tier, "above_input_tokens")), 200000);
    assert_string_equal(json_string_value(json_object_get(tier, "input_per_million")), "2.50");

    e = find_entry(data, "sonar");
    p = json_object_get(e, "pricing");
    /* no cached price → same as input */
    assert_string_equal(json_string_value(json_object_get(p, "cached_input_per_million")),
                        "1.00");
    json_t *fee = json_object_get(p, "search_fee_per_thousand_requests");
    assert_string_equal(json_string_value(json_object_get(fee, "high")), "12.00");
    json_decref(list);

    /* no callback: nothing is available */
    list = gw_catalog_to_json(c, NULL, NULL);
    e = find_entry(json_object_get(list, "data"), "claude-opus-4-6");
    assert_true(json_is_false(json_object_get(e, "available")));
    json_decref(list);
    gw_catalog_free(c);
}

static void to_json_renders_small_prices(void **state)
{
    struct gw_errbuf eb = {{0}};
    struct gw_catalog *c = NULL;
    const char *doc = "version: \"t\"\nmodels:\n"
                      "  - id: tiny\n    provider: gemini\n    context_window: 10\n"
                      "    max_output_tokens: 5\n"
                      "    price: {input: \"0.000001\", output: \"1234.5\", cached_input: 0}\n";
    assert_int_equal(from_yaml(doc, &c, &eb), 0);
    json_t *list = gw_catalog_to_json(c, NULL, NULL);
    json_t *p = json_object_get(json_array_get(json_object_get(list, "data"), 0), "pricing");
    assert_string_equal(json_string_value(json_object_get(p, "input_per_million")), "0.000001");
    assert_string_equal(json_string_value(json_object_get(p, "output_per_million")), "1234.50");
    assert_string_equal(json_string_value(json_object_get(p, "cached_input_per_million")),
                        "0.00");
    json_decref(list);
    gw_catalog_free(c);
}

/* "No float anywhere in the money path": the catalog source must not mention float types. */
static int has_word(const char *text, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = strstr(text, word); p != NULL; p = strstr(p + 1, word)) {
        char before = p == text ? ' ' : p[-1], after = p[n];
        int id_before = before == '_' || (before >= 'a' && before <= 'z') ||
                        (before >= 'A' && before <= 'Z') || (before >= '0' && before <= '9');
        int id_after = after == '_' || (after >= 'a' && after <= 'z') ||
                       (after >= 'A' && after <= 'Z') || (after >= '0' && after <= '9');
        if (!id_before && !id_after)
            return 1;
    }
    return 0;
}

static void no_floats_in_money_path(void **state)
{
    static const char *const files[] = {"../../src/core/catalog.c", "../../src/util/util.c"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        FILE *f = fopen(files[i], "rb");
        assert_non_null(f);
        char *buf = gw_calloc(1, 1 << 20);
        assert_non_null(buf);
        size_t n = fread(buf, 1, (1 << 20) - 1, f);
        fclose(f);
        assert_true(n > 0);
        if (i == 0) {
            assert_false(has_word(buf, "float"));
            assert_false(has_word(buf, "double"));
            assert_false(has_word(buf, "strtod"));
            assert_false(has_word(buf, "json_real_value"));
            assert_false(has_word(buf, "json_number_value"));
        } else {
            /* gw_parse_micros lives in util.c; it must not use strtod either */
            assert_false(has_word(buf, "strtod"));
            assert_false(has_word(buf, "atof"));
        }
        gw_free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(real_catalog_loads),
        cmocka_unit_test(promised_models_present),
        cmocka_unit_test(real_catalog_prices),
        cmocka_unit_test(aliases_resolve),
        cmocka_unit_test(invalid_catalogs_rejected),
        cmocka_unit_test(invalid_top_level_rejected),
        cmocka_unit_test(json_catalog_and_floats),
        cmocka_unit_test(catalog_oom),
        cmocka_unit_test(cost_zero_and_simple),
        cmocka_unit_test(cost_cached_and_reasoning),
        cmocka_unit_test(cost_anthropic_cache_write),
        cmocka_unit_test(cost_gemini_tier),
        cmocka_unit_test(cost_perplexity_search_fee),
        cmocka_unit_test(cost_rounding_half_up),
        cmocka_unit_test(cost_huge_and_negative),
        cmocka_unit_test(cost_worst_case),
        cmocka_unit_test(to_json_lists_models),
        cmocka_unit_test(to_json_renders_small_prices),
        cmocka_unit_test(no_floats_in_money_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
