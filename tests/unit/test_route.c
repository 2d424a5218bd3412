/* Heuristic routing: the decision table in fixtures/routing_cases.json against the shipped
 * catalog and rules (catalog/routing.yaml), and validation of rule files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/catalog.h"
#include "core/config.h"
#include "route/route.h"

struct policy {
    const json_t *providers;
    const json_t *models;
};

static int in_list(const json_t *list, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        if (strcmp(json_string_value(v), s) == 0)
            return 1;
    }
    return 0;
}

static int allowed(void *arg, const struct gw_model *m)
{
    const struct policy *p = arg;
    return in_list(p->providers, m->provider) &&
           (json_array_size(p->models) == 0 || in_list(p->models, m->id));
}

static void shipped_rules_decision_table(void **state)
{
    struct gw_catalog *cat = NULL;
    struct gw_router *r = NULL;
    struct gw_errbuf eb = {{0}};
    json_error_t je;

    if (gw_catalog_load("../../catalog/models.yaml", &cat, &eb) != 0)
        fail_msg("catalog: %s", eb.msg);
    if (gw_router_load("../../catalog/routing.yaml", cat, &r, &eb) != 0)
        fail_msg("routing: %s", eb.msg);
    json_t *cases = json_load_file("fixtures/routing_cases.json", 0, &je);
    assert_non_null(cases);
    assert_true(json_array_size(cases) >= 30);
    size_t i;
    json_t *tc;
    json_array_foreach(cases, i, tc) {
        const char *prompt = json_string_value(json_object_get(tc, "prompt"));
        json_t *content = json_is_true(json_object_get(tc, "image"))
                              ? json_pack("[{s:s,s:s},{s:s,s:{s:s}}]", "type", "text", "text",
                                          prompt, "type", "image_url", "image_url", "url",
                                          "data:image/png;base64,AA==")
                              : json_string(prompt);
        json_t *body = json_pack("{s:[{s:s,s:o}]}", "messages", "role", "user", "content",
                                 content);
        if (json_is_true(json_object_get(tc, "tools")))
            json_object_set_new(body, "tools",
                                json_pack("[{s:s,s:{s:s}}]", "type", "function", "function",
                                          "name", "f"));
        struct policy pol = {json_object_get(tc, "providers"), json_object_get(tc, "models")};
        struct gw_route_req q = {
            .body = body,
            .input_tokens = json_integer_value(json_object_get(tc, "input_tokens")),
            .max_output_tokens = json_integer_value(json_object_get(tc, "max_output_tokens")),
            .allowed = allowed,
            .arg = &pol,
        };
        gw_route_req_init(&q);
        struct gw_route_result res;
        int rc = gw_route_heuristic(r, &q, &res);
        const char *want = json_string_value(json_object_get(tc, "expect_model"));
        const char *want_rule = json_string_value(json_object_get(tc, "expect_rule"));
        if (want == NULL) {
            if (rc != GW_ENOTFOUND)
                fail_msg("case %zu '%s': expected no model, got %s (%s)", i, prompt,
                         res.model->id, res.rule);
        } else if (rc != 0 || strcmp(res.model->id, want) != 0 ||
                   strcmp(res.rule, want_rule) != 0) {
            fail_msg("case %zu '%s': expected %s by %s, got %s by %s (%s)", i, prompt, want,
                     want_rule, rc == 0 ? res.model->id : "nothing", rc == 0 ? res.rule : "-",
                     rc == 0 ? res.reason : "");
        } else {
            assert_non_null(strstr(res.reason, ""));
            assert_true(res.reason[0] != '\0');
        }
        json_decref(body);
    }
    json_decref(cases);
    gw_router_free(r);
    gw_catalog_free(cat);
}

static void bad_rule_files_are_refused(void **state)
{
    struct gw_catalog *cat = NULL;
    struct gw_errbuf eb = {{0}};
    assert_int_equal(gw_catalog_load("../../catalog/models.yaml", &cat, &eb), 0);
    static const struct {
        const char *yaml, *needle;
    } bad[] = {
        {"default: [no-such-model]\n", "not a catalog model"},
        {"default: []\n", "prefer"},
        {"rules: {}\n", "expected"},
        {"default: [gpt-4o]\nrules:\n  - {name: a, prefer: [gpt-4o], colour: red}\n", "unknown field"},
        {"default: [gpt-4o]\nrules:\n  - {name: a, when: {weekday: monday}, prefer: [gpt-4o]}\n",
         "unknown condition"},
        {"default: [gpt-4o]\nrules:\n  - {name: a, when: {has_images: yes}, prefer: [gpt-4o]}\n",
         "true or false"},
        {"default: [gpt-4o]\nrules:\n  - {name: a, when: {min_input_tokens: -5}, prefer: [gpt-4o]}\n",
         "non-negative"},
        {"default: [gpt-4o]\nrules:\n  - {name: a, when: {keywords: [1]}, prefer: [gpt-4o]}\n",
         "keywords"},
        {"default: [gpt-4o]\nrules:\n  - {name: a, prefer: [gpt-4o]}\n  - {name: a, prefer: [o3]}\n",
         "twice"},
        {"default: [gpt-4o]\nrules:\n  - {name: a, prefer: [gpt-4o], reason: \"x\\ny\"}\n",
         "printable"},
        {"default: [gpt-4o]\nrules:\n  - {prefer: [gpt-4o]}\n", "name"},
        {"default: [gpt-4o]\ncolour: red\n", "unknown key"},
        {"default: [gpt-4o]\nfallbacks: [gpt-4o]\n", "mapping"},
        {"default: [gpt-4o]\nfallbacks: {no-such: [gpt-4o]}\n", "not a catalog model"},
        {"default: [gpt-4o]\nfallbacks: {gpt-4o: [nope]}\n", "not a catalog model"},
        {"default: [gpt-4o]\nfallbacks: {gpt-4o: [gpt-4o]}\n", "itself"},
        {"default: [gpt-4o]\nfallbacks: {gpt-4o: [o3, o3]}\n", "twice"},
        {"default: [gpt-4o]\nfallbacks: {gpt-4o: o3}\n", "at most"},
        {"default: [gpt-4o]\nbudget: {prefer_cheaper_above_percent: 101}\n", "0..100"},
        {"default: [gpt-4o]\nbudget: {above: 5}\n", "0..100"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *root = NULL;
        struct gw_router *r = NULL;
        if (gw_yaml_load_string(bad[i].yaml, strlen(bad[i].yaml), &root, &eb) != 0)
            fail_msg("case %zu: test YAML does not parse: %s", i, eb.msg);
        eb.msg[0] = '\0';
        int rc = gw_router_from_json(root, cat, &r, &eb);
        json_decref(root);
        if (rc == 0 || strstr(eb.msg, bad[i].needle) == NULL)
            fail_msg("case %zu: rc=%d msg='%s' (wanted '%s')", i, rc, eb.msg, bad[i].needle);
        assert_null(r);
    }
    gw_catalog_free(cat);
}

struct fixture {
    struct gw_catalog *cat;
    struct gw_router *r;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct gw_errbuf eb = {{0}};
    if (f == NULL || gw_catalog_load("../../catalog/models.yaml", &f->cat, &eb) != 0 ||
        gw_router_load("../../catalog/routing.yaml", f->cat, &f->r, &eb) != 0) {
        fprintf(stderr, "setup: %s\n", eb.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    gw_router_free(f->r);
    gw_catalog_free(f->cat);
    free(f);
    return 0;
}

static int allow_all(void *arg, const struct gw_model *m)
{
    (void)arg;
    (void)m;
    return 1;
}

static int not_anthropic(void *arg, const struct gw_model *m)
{
    (void)arg;
    return strcmp(m->provider, "anthropic") != 0;
}

static json_t *user_body(const char *text, int tools, int image)
{
    json_t *content = image ? json_pack("[{s:s,s:s},{s:s,s:{s:s}}]", "type", "text", "text", text,
                                        "type", "image_url", "image_url", "url",
                                        "data:image/png;base64,AA==")
                            : json_string(text);
    json_t *b = json_pack("{s:[{s:s,s:o}]}", "messages", "role", "user", "content", content);
    if (tools)
        json_object_set_new(b, "tools", json_pack("[{s:s,s:{s:s}}]", "type", "function",
                                                  "function", "name", "f"));
    return b;
}

static void every_catalog_model_has_a_fallback_chain(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < gw_catalog_count(f->cat); i++) {
        const struct gw_model *m = gw_catalog_at(f->cat, i);
        int n = 0;
        const struct gw_model *const *chain = gw_router_chain(f->r, m, &n);
        if (n < 2)
            fail_msg("%s has a chain of %d", m->id, n);
        int other = 0;
        for (int k = 0; k < n; k++)
            other += strcmp(chain[k]->provider, m->provider) != 0;
        /* to other providers, except Perplexity (web search has no equivalent elsewhere) */
        if (strcmp(m->provider, "perplexity") != 0 && other < 2)
            fail_msg("%s: only %d targets at other providers", m->id, other);
    }
}

static void fallbacks_follow_route_then_chain_and_fit_the_request(void **state)
{
    struct fixture *f = *state;
    const struct gw_model *out[GW_ROUTE_MAX_TARGETS];
    json_t *body = user_body("Why does this stack trace show a null pointer?", 0, 0);
    struct gw_route_req q = {.body = body, .input_tokens = 40, .allowed = allow_all};
    struct gw_route_result res;
    gw_route_req_init(&q);
    assert_int_equal(gw_route_heuristic(f->r, &q, &res), 0);
    assert_string_equal(res.model->id, "claude-sonnet-4-6");
    int n = gw_route_fallbacks(f->r, &q, res.model, &res, out, GW_ROUTE_MAX_TARGETS);
    /* the code rule's list after the choice, then sonnet's chain, no repeats */
    static const char *const want[] = {"gpt-5.4", "gpt-4.1", "gemini-2.5-pro", "grok-4-0709"};
    assert_int_equal(n, 4);
    for (int i = 0; i < n; i++)
        assert_string_equal(out[i]->id, want[i]);
    /* explicit model: only its chain; the policy filters it */
    q.allowed = not_anthropic;
    const struct gw_model *gpt4o = gw_catalog_find(f->cat, "gpt-4o");
    n = gw_route_fallbacks(f->r, &q, gpt4o, NULL, out, GW_ROUTE_MAX_TARGETS);
    assert_int_equal(n, 2);
    assert_string_equal(out[0]->id, "gemini-2.5-pro");
    assert_string_equal(out[1]->id, "grok-3");
    json_decref(body);
    /* images: grok-3 takes none */
    body = user_body("what is in this picture?", 0, 1);
    q.body = body;
    q.allowed = allow_all;
    gw_route_req_init(&q);
    n = gw_route_fallbacks(f->r, &q, gpt4o, NULL, out, GW_ROUTE_MAX_TARGETS);
    assert_int_equal(n, 2);
    assert_string_equal(out[1]->id, "gemini-2.5-pro");
    json_decref(body);
    /* tools: the Sonar models take none */
    body = user_body("latest news", 1, 0);
    q.body = body;
    gw_route_req_init(&q);
    n = gw_route_fallbacks(f->r, &q, gw_catalog_find(f->cat, "sonar-pro"), NULL, out, 4);
    assert_int_equal(n, 0);
    json_decref(body);
}

static void router_candidates_prompt_and_pick(void **state)
{
    struct fixture *f = *state;
    const struct gw_model *cands[GW_ROUTE_MAX_TARGETS];
    char text[3000];
    /* a long message ending in a multi-byte character across the cut */
    memset(text, 'a', sizeof(text));
    memcpy(text + 1998, "\xc3\xa9", 2); /* é at bytes 1998-1999: kept whole */
    memcpy(text + 2199, "\xc3\xa9", 2); /* é at 2199-2200: cut before it */
    text[sizeof(text) - 1] = '\0';
    json_t *body = user_body(text, 1, 0);
    struct gw_route_req q = {.body = body, .input_tokens = 1000, .allowed = not_anthropic};
    gw_route_req_init(&q);
    int n = gw_router_candidates(f->r, &q, cands, GW_ROUTE_MAX_TARGETS);
    assert_true(n >= 5);
    for (int i = 0; i < n; i++) {
        assert_string_not_equal(cands[i]->provider, "anthropic");
        assert_true(cands[i]->tools); /* a tool request: no Sonar */
        for (int k = 0; k < i; k++)
            assert_ptr_not_equal(cands[i], cands[k]);
    }
    json_t *p = gw_router_prompt(f->r, &q, cands, n, 2200);
    assert_non_null(p);
    const char *user = json_string_value(
        json_object_get(json_array_get(json_object_get(p, "messages"), 1), "content"));
    assert_non_null(user);
    assert_non_null(strstr(user, cands[0]->id));
    assert_non_null(strstr(user, "tools: yes"));
    assert_non_null(strstr(user, "\xc3\xa9"));
    const char *open = strstr(user, "<<<\n"), *close = strstr(user, "\n>>>");
    assert_non_null(open);
    assert_non_null(close);
    assert_int_equal(close - (open + 4), 2199); /* 2200 bytes would split the second é */
    assert_true(json_is_integer(json_object_get(p, "max_tokens")));
    assert_true(strlen(user) < 8000);
    json_decref(p);

    /* the answer may only name a candidate */
    assert_ptr_equal(gw_router_pick("{\"model\": \"gpt-4o\"}", cands, n),
                     gw_catalog_find(f->cat, "gpt-4o"));
    assert_ptr_equal(gw_router_pick("```json\n{\"model\":\"gpt-4o-mini\"}\n```", cands, n),
                     gw_catalog_find(f->cat, "gpt-4o-mini"));
    assert_ptr_equal(gw_router_pick("  \"gemini-2.5-pro\".\n", cands, n),
                     gw_catalog_find(f->cat, "gemini-2.5-pro"));
    assert_null(gw_router_pick("{\"model\": \"claude-sonnet-4-6\"}", cands, n)); /* disallowed */
    assert_null(gw_router_pick("{\"model\": \"gpt-9\"}", cands, n));
    assert_null(gw_router_pick("I would pick gpt-4o because it is good", cands, n));
    assert_null(gw_router_pick("{\"model\": 42}", cands, n));
    assert_null(gw_router_pick("{\"model\": \"gpt-4o\", \"model\": \"o3\"}", cands, n));
    assert_null(gw_router_pick("", cands, n));
    assert_null(gw_router_pick(NULL, cands, n));
    json_decref(body);
}

static void budget_prefers_cheaper_models(void **state)
{
    struct fixture *f = *state;
    json_t *body = user_body("Fix this Rust compile error", 0, 0);
    struct gw_route_req q = {.body = body, .input_tokens = 45, .allowed = allow_all};
    struct gw_route_result res;
    gw_route_req_init(&q);
    assert_int_equal(gw_router_budget_percent(f->r), 80);
    assert_int_equal(gw_route_heuristic(f->r, &q, &res), 0);
    assert_string_equal(res.model->id, "claude-sonnet-4-6");
    /* below the threshold: unchanged */
    assert_int_equal(gw_route_budget(f->r, &q, 79, 1000000, "daily", &res), 0);
    assert_string_equal(res.model->id, "claude-sonnet-4-6");
    /* above, with room: the cheapest of the rule's list for this request, alts by cost */
    assert_int_equal(gw_route_budget(f->r, &q, 85, 1000000, "daily", &res), 1);
    assert_string_equal(res.model->id, "gpt-4.1");
    assert_string_equal(res.alts[0]->id, "gemini-2.5-pro");
    assert_non_null(strstr(res.reason, "85% of the daily budget spent"));
    assert_non_null(strstr(res.reason, "instead of claude-sonnet-4-6"));
    /* nothing of the rule fits: the cheapest allowed model of all */
    assert_int_equal(gw_route_heuristic(f->r, &q, &res), 0);
    assert_int_equal(gw_route_budget(f->r, &q, 99, 100, "monthly", &res), 1);
    assert_string_equal(res.model->id, "gemini-2.0-flash");
    assert_non_null(strstr(res.reason, "the cheapest allowed model"));
    /* already the cheapest: unchanged */
    json_decref(body);
    body = user_body("hi", 0, 0);
    q.body = body;
    gw_route_req_init(&q);
    assert_int_equal(gw_route_heuristic(f->r, &q, &res), 0);
    assert_string_equal(res.model->id, "gpt-4o-mini");
    assert_int_equal(gw_route_budget(f->r, &q, 90, 1000000, "daily", &res), 1);
    assert_string_equal(res.model->id, "gemini-2.0-flash"); /* the short_chat list's cheapest */
    assert_int_equal(gw_route_budget(f->r, &q, 90, 1000000, "daily", &res), 0);
    json_decref(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shipped_rules_decision_table),
        cmocka_unit_test(bad_rule_files_are_refused),
        cmocka_unit_test_setup_teardown(every_catalog_model_has_a_fallback_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(fallbacks_follow_route_then_chain_and_fit_the_request,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(router_candidates_prompt_and_pick, setup, teardown),
        cmocka_unit_test_setup_teardown(budget_prefers_cheaper_models, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
