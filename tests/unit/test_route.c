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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shipped_rules_decision_table),
        cmocka_unit_test(bad_rule_files_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
