/* Unit tests for core/request (validation of chat bodies, the simple form, request ids) and
 * policy/keys (key material). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_json.h"

#include "core/request.h"
#include "policy/keys.h"
#include "util/util.h"

static int validate(const char *s, struct gw_chat_opts *o, struct gw_errbuf *eb)
{
    json_t *b = parse(s);
    int rc = gw_chat_validate(b, o, eb);
    json_decref(b);
    return rc;
}

static void valid_bodies(void **state)
{
    static const char *const ok[] = {
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
        "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":[{"
        "\"type\":\"text\",\"text\":\"t\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:"
        "image/png;base64,AA==\"}}]}]}",
        "{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\","
        "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},{\"role\":"
        "\"tool\",\"tool_call_id\":\"c1\",\"content\":\"r\"}],\"tools\":[{\"type\":\"function\","
        "\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}],\"tool_choice\":{"
        "\"type\":\"function\",\"function\":{\"name\":\"f\"}}}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",\"b\"],"
        "\"temperature\":0,\"top_p\":1,\"n\":1,\"user\":\"u\",\"response_format\":{\"type\":"
        "\"json_object\"}}",
    };
    struct gw_chat_opts o;
    struct gw_errbuf eb = {{0}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (validate(ok[i], &o, &eb) != 0)
            fail_msg("body %zu refused: %s", i, eb.msg);
}

static void gateway_fields_are_extracted_and_removed(void **state)
{
    json_t *b = parse("{\"model\":\"m\",\"provider\":\"openai\",\"conversation_id\":\"c-1\","
                      "\"auto_route\":true,\"route_method\":\"x\",\"stream\":true,"
                      "\"stream_options\":{\"include_usage\":true},\"max_tokens\":10,"
                      "\"max_completion_tokens\":20,\"thinking\":{\"type\":\"enabled\"},"
                      "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    struct gw_chat_opts o;
    assert_int_equal(gw_chat_validate(b, &o, NULL), 0);
    assert_string_equal(o.model, "m");
    assert_string_equal(o.provider, "openai");
    assert_string_equal(o.conversation_id, "c-1");
    assert_true(o.auto_route && o.stream && o.include_usage);
    assert_int_equal(o.max_tokens, 20); /* max_completion_tokens wins */
    static const char *const gone[] = {"provider", "conversation_id", "auto_route",
                                       "route_method", "stream", "stream_options"};
    for (size_t i = 0; i < 6; i++)
        assert_null(json_object_get(b, gone[i]));
    assert_non_null(json_object_get(b, "thinking")); /* pass-through kept */
    assert_non_null(json_object_get(b, "model"));
    json_decref(b);
}

static void invalid_bodies_say_why(void **state)
{
    static const struct {
        const char *body, *needle;
    } bad[] = {
        {"[]", "JSON object"},
        {"{}", "messages"},
        {"{\"messages\":[]}", "messages"},
        {"{\"messages\":{}}", "messages"},
        {"{\"messages\":[1]}", "messages[0]"},
        {"{\"messages\":[{\"role\":\"boss\",\"content\":\"x\"}]}", "role"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "content"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[]}]}", "empty"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}", "type"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "image_url"},
        {"{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "tool_call_id"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]}", "tool_calls"},
        {"{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":1}]}]}", "tool call"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}", "temperature"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":3}", "temperature"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":2}", "top_p"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", "max_tokens"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":-1}", "max_tokens"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":\"10\"}", "max_tokens"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1.5}", "max_tokens"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":9}", "'n'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":0}", "'n'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":\"2\"}", "'n'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":\"yes\"}", "stream"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":1}", "stream_options"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[1]}", "stop"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"x\"}]}", "tool"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"sometimes\"}", "tool_choice"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"model\":\"\"}", "model"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"user\":7}", "user"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct gw_chat_opts o;
        struct gw_errbuf eb = {{0}};
        int rc = validate(bad[i].body, &o, &eb);
        if (rc != GW_EINVAL || strstr(eb.msg, bad[i].needle) == NULL)
            fail_msg("case %zu: rc=%d msg='%s' (wanted it to mention %s)", i, rc, eb.msg,
                     bad[i].needle);
    }
}

static void long_model_name_refused(void **state)
{
    char body[512];
    char model[201];
    memset(model, 'm', 200);
    model[200] = '\0';
    snprintf(body, sizeof(body),
             "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", model);
    struct gw_chat_opts o;
    assert_int_equal(validate(body, &o, NULL), GW_EINVAL);
}

static void simple_form(void **state)
{
    json_t *in = parse("{\"system\":\"be brief\",\"model\":\"m\",\"max_tokens\":5,"
                       "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    json_t *out = NULL;
    struct gw_chat_opts o;
    assert_int_equal(gw_simple_to_chat(in, &out, NULL), 0);
    json_t *msgs = json_object_get(out, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "role")),
                        "system");
    assert_null(json_object_get(out, "system"));
    assert_int_equal(gw_chat_validate(out, &o, NULL), 0);
    assert_int_equal(o.max_tokens, 5);
    json_decref(out);
    json_decref(in);
    static const char *const bad[] = {
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true}",
        "{\"model\":\"m\"}", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"system\":1}",
        "[]"};
    for (size_t i = 0; i < 4; i++) {
        in = parse(bad[i]);
        struct gw_errbuf eb = {{0}};
        assert_int_equal(gw_simple_to_chat(in, &out, &eb), GW_EINVAL);
        assert_true(eb.msg[0] != '\0');
        json_decref(in);
    }
}

static void request_ids(void **state)
{
    char s65[66];
    memset(s65, 'a', 65);
    s65[65] = '\0';
    assert_true(gw_request_id_ok("req_abc-1.2"));
    assert_true(gw_request_id_ok(s65 + 1)); /* 64 */
    assert_false(gw_request_id_ok(s65));
    assert_false(gw_request_id_ok(""));
    assert_false(gw_request_id_ok("a b"));
    assert_false(gw_request_id_ok("a/b"));
    assert_false(gw_request_id_ok("caf\xc3\xa9"));
}

/* Cut and mutate a valid body; whatever parses must validate or be refused, never crash. */
static void mutations_never_crash(void **state)
{
    const char *base = "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":null,"
                       "\"tool_calls\":[{\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":"
                       "\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":[{"
                       "\"type\":\"text\",\"text\":\"r\"}]}],\"tools\":[{\"type\":\"function\","
                       "\"function\":{\"name\":\"f\"}}],\"stop\":[\"x\"],\"temperature\":1}";
    size_t len = strlen(base);
    char *buf = strdup(base);
    static const char subst[] = "{}[]\":,0nt1-";
    for (size_t pos = 0; pos < len; pos++) {
        for (size_t k = 0; k < sizeof(subst) - 1; k += 3) {
            char saved = buf[pos];
            buf[pos] = subst[k];
            json_t *v = json_loadb(buf, len, 0, NULL);
            struct gw_chat_opts o;
            if (v != NULL) {
                int rc = gw_chat_validate(v, &o, NULL);
                assert_true(rc == 0 || rc == GW_EINVAL);
            }
            json_decref(v);
            buf[pos] = saved;
        }
    }
    free(buf);
}

static void keys_material(void **state)
{
    char a[GW_KEY_RAW_LEN + 1], b[GW_KEY_RAW_LEN + 1], id[32];
    unsigned char ha[32], hb[32], check[32];
    assert_int_equal(gw_key_generate(a, sizeof(a), ha), 0);
    assert_int_equal(gw_key_generate(b, sizeof(b), hb), 0);
    assert_int_equal(strlen(a), GW_KEY_RAW_LEN);
    assert_memory_equal(a, "llmgw_", 6);
    assert_string_not_equal(a, b);
    assert_true(gw_key_is_wellformed(a, strlen(a)));
    gw_sha256(check, a, strlen(a));
    assert_memory_equal(ha, check, 32);
    gw_key_hash(a, strlen(a), check);
    assert_memory_equal(ha, check, 32);
    char bad[GW_KEY_RAW_LEN + 1];
    memcpy(bad, a, sizeof(bad));
    bad[10] = '!';
    assert_false(gw_key_is_wellformed(bad, strlen(bad)));
    assert_false(gw_key_is_wellformed(a, strlen(a) - 1));
    assert_false(gw_key_is_wellformed("sk-abc", 6));
    assert_int_equal(gw_key_generate(a, 10, ha), GW_EINVAL);
    assert_int_equal(gw_key_new_id(id, sizeof(id)), 0);
    assert_int_equal(strlen(id), 20);
    assert_memory_equal(id, "key_", 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_bodies),
        cmocka_unit_test(gateway_fields_are_extracted_and_removed),
        cmocka_unit_test(invalid_bodies_say_why),
        cmocka_unit_test(long_model_name_refused),
        cmocka_unit_test(simple_form),
        cmocka_unit_test(request_ids),
        cmocka_unit_test(mutations_never_crash),
        cmocka_unit_test(keys_material),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
