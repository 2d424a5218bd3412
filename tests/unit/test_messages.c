/* Unit tests for core/messages: Anthropic Messages requests into the canonical body (and what
 * is refused), canonical answers into Anthropic messages, errors, and the stream's event
 * sequence for text, tool calls, usage and errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_json.h"

#include "core/messages.h"
#include "core/request.h"
#include "http/reply.h"
#include "util/err.h"
#include "util/buf.h"
#include "util/mem.h"

/* Convert js; on success the canonical body also passes gw_chat_validate. */
static json_t *convert(const char *js, int count_only, struct gw_errbuf *eb)
{
    json_t *in = parse(js), *out = NULL;
    int rc = gw_messages_to_chat(in, count_only, &out, eb, NULL);
    json_decref(in);
    if (rc != 0) {
        assert_null(out);
        return NULL;
    }
    struct gw_chat_opts o;
    json_t *copy = json_deep_copy(out);
    struct gw_errbuf veb = {{0}};
    if (gw_chat_validate(copy, &o, &veb) != 0)
        fail_msg("canonical body does not validate: %s", veb.msg);
    json_decref(copy);
    return out;
}

static char *dump(const json_t *v) { return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY); }

static void assert_json(const json_t *v, const char *want)
{
    json_t *w = parse(want);
    char *a = dump(v), *b = dump(w);
    if (strcmp(a, b) != 0)
        fail_msg("got  %s\nwant %s", a, b);
    free(a);
    free(b);
    json_decref(w);
}

static void request_plain(void **state)
{
    (void)state;
    struct gw_errbuf eb = {{0}};
    json_t *c = convert("{\"model\":\"claude-sonnet-4-6\",\"max_tokens\":100,\"system\":\"Be brief.\","
                        "\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"temperature\":0.5,"
                        "\"stop_sequences\":[\"END\"],\"metadata\":{\"user_id\":\"u-1\"},\"top_k\":5,"
                        "\"stream\":true}", 0, &eb);
    assert_non_null(c);
    assert_json(c, "{\"model\":\"claude-sonnet-4-6\",\"max_tokens\":100,\"temperature\":0.5,"
                   "\"stream\":true,\"top_k\":5,\"stop\":[\"END\"],\"user\":\"u-1\",\"messages\":["
                   "{\"role\":\"system\",\"content\":\"Be brief.\"},"
                   "{\"role\":\"user\",\"content\":\"Hello\"}]}");
    json_decref(c);
}

static void request_blocks_tools_images(void **state)
{
    (void)state;
    struct gw_errbuf eb = {{0}};
    json_t *c = convert(
        "{\"model\":\"gpt-4o\",\"max_tokens\":50,"
        "\"system\":[{\"type\":\"text\",\"text\":\"A\",\"cache_control\":{\"type\":\"ephemeral\"}},"
        "{\"type\":\"text\",\"text\":\"B\"}],"
        "\"tools\":[{\"name\":\"get_weather\",\"description\":\"w\",\"input_schema\":{\"type\":\"object\"}}],"
        "\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true},"
        "\"messages\":["
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Weather?\"},"
        "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"AAAA\"}}]},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"hm\",\"signature\":\"s\"},"
        "{\"type\":\"text\",\"text\":\"Let me look.\"},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\"}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\","
        "\"content\":[{\"type\":\"text\",\"text\":\"sunny\"}]},{\"type\":\"text\",\"text\":\"Thanks\"}]}]}",
        0, &eb);
    if (c == NULL)
        fail_msg("refused: %s", eb.msg);
    assert_json(c,
                "{\"model\":\"gpt-4o\",\"max_tokens\":50,"
                "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"w\","
                "\"parameters\":{\"type\":\"object\"}}}],\"tool_choice\":\"required\",\"parallel_tool_calls\":false,"
                "\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"A\","
                "\"cache_control\":{\"type\":\"ephemeral\"}},{\"type\":\"text\",\"text\":\"B\"}]},"
                "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Weather?\"},"
                "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}}]},"
                "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"hm\",\"signature\":\"s\"},"
                "{\"type\":\"text\",\"text\":\"Let me look.\"}],"
                "\"tool_calls\":[{\"id\":\"toolu_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
                "{\"role\":\"tool\",\"tool_call_id\":\"toolu_1\",\"content\":\"sunny\"},"
                "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Thanks\"}]}]}");
    json_decref(c);
}

static void request_tool_choice_forms(void **state)
{
    (void)state;
    struct gw_errbuf eb = {{0}};
    json_t *c = convert("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                        "\"tools\":[{\"name\":\"t\"}],\"tool_choice\":{\"type\":\"tool\",\"name\":\"t\"}}", 0, &eb);
    assert_non_null(c);
    assert_json(json_object_get(c, "tool_choice"), "{\"type\":\"function\",\"function\":{\"name\":\"t\"}}");
    assert_json(json_object_get(c, "tools"),
                "[{\"type\":\"function\",\"function\":{\"name\":\"t\",\"parameters\":{\"type\":\"object\"}}}]");
    json_decref(c);
    c = convert("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                "\"tool_choice\":{\"type\":\"none\"}}", 0, &eb);
    assert_json(json_object_get(c, "tool_choice"), "\"none\"");
    json_decref(c);
}

static void request_count_only(void **state)
{
    (void)state;
    struct gw_errbuf eb = {{0}};
    json_t *c = convert("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 1, &eb);
    assert_non_null(c);
    json_decref(c);
    assert_null(convert("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 0, &eb));
    assert_string_equal(eb.msg, "'max_tokens' is required");
}

static void expect_refused(const char *js, const char *msg_part)
{
    struct gw_errbuf eb = {{0}};
    json_t *c = convert(js, 0, &eb);
    if (c != NULL)
        fail_msg("accepted: %s", js);
    if (strstr(eb.msg, msg_part) == NULL)
        fail_msg("message '%s' lacks '%s'", eb.msg, msg_part);
}

static void request_refusals(void **state)
{
    (void)state;
#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"
    expect_refused("[]", "JSON object");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1}", "'messages'");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[]}", "'messages'");
    expect_refused("{\"model\":\"m\",\"max_tokens\":0," MSGS "}", "max_tokens");
    expect_refused("{\"model\":\"m\",\"max_tokens\":\"5\"," MSGS "}", "max_tokens");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1," MSGS ",\"bogus\":1}", "unknown field 'bogus'");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}",
                   "role must be user or assistant");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":5}]}",
                   "content must be");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\"}]}]}",
                   "'document' are not supported");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
                   "string 'text'");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"file\"}}]}]}",
                   "image block");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a\",\"name\":\"b\",\"input\":[]}]}]}",
                   "tool_use block");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\"}]}]}",
                   "tool_use_id");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a\",\"name\":\"b\",\"input\":{}}]}]}",
                   "'tool_use' are not supported");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1," MSGS ",\"system\":[{\"type\":\"image\"}]}", "'system' blocks");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1," MSGS ",\"system\":7}", "'system' must be");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1," MSGS ",\"tools\":{}}", "'tools' must be an array");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1," MSGS ",\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"w\"}]}",
                   "not supported");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1," MSGS ",\"tools\":[{\"name\":\"t\",\"input_schema\":3}]}", "input_schema");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1," MSGS ",\"tool_choice\":\"auto\"}", "tool_choice");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1," MSGS ",\"tool_choice\":{\"type\":\"tool\"}}", "tool_choice");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1," MSGS ",\"stop_sequences\":\"x\"}", "stop_sequences");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1," MSGS ",\"metadata\":{\"user_id\":3}}", "metadata");
    expect_refused("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[7]}", "must be an object");
#undef MSGS
}

/* With native given, what only Anthropic takes is left out and named, not refused. */
static void request_native_only(void **state)
{
    (void)state;
    struct gw_errbuf eb = {{0}}, native = {{0}};
    json_t *in = parse("{\"model\":\"m\",\"max_tokens\":1,\"context_management\":{},"
                       "\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"w\"},{\"name\":\"t\"}],"
                       "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\",\"source\":{}},"
                       "{\"type\":\"text\",\"text\":\"sum it up\"}]}]}");
    json_t *out = NULL;
    assert_int_equal(gw_messages_to_chat(in, 0, &out, &eb, &native), 0);
    assert_string_equal(native.msg, "the member 'context_management'");
    assert_json(json_object_get(out, "messages"),
                "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"sum it up\"}]}]");
    assert_int_equal(json_array_size(json_object_get(out, "tools")), 1);
    json_decref(out);
    json_object_del(in, "context_management");
    memset(&native, 0, sizeof(native));
    assert_int_equal(gw_messages_to_chat(in, 0, &out, &eb, &native), 0);
    assert_string_equal(native.msg, "messages[0]: content blocks of type 'document'");
    json_decref(out);
    json_decref(in);
}

static void answer_text_and_tools(void **state)
{
    (void)state;
    json_t *c = parse("{\"id\":\"req_1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
                      "\"message\":{\"role\":\"assistant\",\"content\":\"Hi\",\"tool_calls\":[{\"id\":\"call_1\","
                      "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
                      "\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":30,"
                      "\"prompt_tokens_details\":{\"cached_tokens\":20},\"cost_usd\":0.0005}}");
    struct gw_usage u = {.input_tokens = 200, .cached_input_tokens = 60, .cache_write_tokens = 40,
                         .output_tokens = 30};
    json_t *a = gw_messages_answer(c, "claude-sonnet-4-6", &u, 0.0005);
    assert_json(a, "{\"id\":\"req_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-6\","
                   "\"content\":[{\"type\":\"text\",\"text\":\"Hi\"},{\"type\":\"tool_use\",\"id\":\"call_1\","
                   "\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\"}}],\"stop_reason\":\"tool_use\","
                   "\"stop_sequence\":null,\"usage\":{\"input_tokens\":100,\"output_tokens\":30,"
                   "\"cache_read_input_tokens\":60,\"cache_creation_input_tokens\":40,\"cost_usd\":0.0005}}");
    json_decref(a);
    json_decref(c);
    /* malformed: still a message, never a crash */
    c = parse("{\"choices\":[{\"message\":{\"content\":5,\"tool_calls\":[{\"function\":{\"arguments\":\"[\"}}]},"
              "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":-4,\"completion_tokens\":\"x\"}}");
    struct gw_usage bad = {.input_tokens = 5, .cached_input_tokens = 9};
    a = gw_messages_answer(c, NULL, &bad, 0);
    assert_non_null(a);
    assert_string_equal(json_string_value(json_object_get(a, "stop_reason")), "max_tokens");
    assert_json(json_object_get(json_array_get(json_object_get(a, "content"), 0), "input"), "{}");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a, "usage"), "input_tokens")), 0);
    json_decref(a);
    json_decref(c);
    a = gw_messages_answer(NULL, NULL, &u, 0);
    assert_non_null(a);
    json_decref(a);
}

static void errors(void **state)
{
    (void)state;
    assert_string_equal(gw_anthropic_error_type(400), "invalid_request_error");
    assert_string_equal(gw_anthropic_error_type(401), "authentication_error");
    assert_string_equal(gw_anthropic_error_type(403), "permission_error");
    assert_string_equal(gw_anthropic_error_type(404), "not_found_error");
    assert_string_equal(gw_anthropic_error_type(413), "request_too_large");
    assert_string_equal(gw_anthropic_error_type(429), "rate_limit_error");
    assert_string_equal(gw_anthropic_error_type(503), "overloaded_error");
    assert_string_equal(gw_anthropic_error_type(502), "api_error");
    assert_string_equal(gw_anthropic_error_type(409), "invalid_request_error");
    json_t *e = gw_error_body_anthropic(429, "budget_exceeded", "over budget", "req_9");
    assert_json(e, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"over budget\","
                   "\"code\":\"budget_exceeded\"},\"request_id\":\"req_9\"}");
    json_decref(e);
}

static int frame(void *arg, const char *event, const char *data, size_t len)
{
    struct gw_buf *out = arg;
    int rc = gw_buf_printf(out, "event: %s\ndata: ", event);
    if (rc == 0)
        rc = gw_buf_add(out, data, len);
    return rc != 0 ? rc : gw_buf_adds(out, "\n\n");
}

/* Feed chunks (a JSON array of them), end, and compare the event names in order. */
static char *run_stream(const char *chunks, int end)
{
    struct gw_messages_stream s;
    struct gw_buf out;
    json_t *arr = parse(chunks);
    size_t i;
    json_t *c;
    gw_buf_init(&out, 1 << 20);
    gw_messages_stream_init(&s, "msg_1", "gpt-4o", frame, &out);
    struct gw_usage u = {.input_tokens = 10, .output_tokens = 2};
    json_array_foreach(arr, i, c) assert_int_equal(gw_messages_stream_chunk(&s, c), 0);
    gw_messages_stream_usage(&s, &u, 0.01);
    if (end)
        assert_int_equal(gw_messages_stream_end(&s), 0);
    else
        assert_int_equal(gw_messages_stream_error(&s, 502, "upstream_error", "lost"), 0);
    json_decref(arr);
    assert_int_equal(gw_buf_add(&out, "", 1), 0);
    return gw_buf_take(&out);
}

static void expect_events(const char *sse, const char *names)
{
    char got[1024] = "";
    for (const char *p = sse; (p = strstr(p, "event: ")) != NULL; p += 7) {
        size_t n = strcspn(p + 7, "\n");
        if (got[0])
            strcat(got, ",");
        strncat(got, p + 7, n);
    }
    assert_string_equal(got, names);
}

static void stream_text(void **state)
{
    (void)state;
    char *sse = run_stream("[{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]},"
                           "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]},"
                           "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]},"
                           "{\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2,\"cost_usd\":0.01}}]", 1);
    expect_events(sse, "message_start,ping,content_block_start,content_block_delta,content_block_delta,"
                       "content_block_stop,message_delta,message_stop");
    assert_non_null(strstr(sse, "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}"));
    assert_non_null(strstr(sse, "\"stop_reason\":\"end_turn\""));
    assert_non_null(strstr(sse, "\"output_tokens\":2"));
    assert_non_null(strstr(sse, "\"input_tokens\":10"));
    assert_non_null(strstr(sse, "\"id\":\"msg_1\""));
    gw_free(sse);
}

static void stream_tools(void **state)
{
    (void)state;
    char *sse = run_stream(
        "[{\"choices\":[{\"delta\":{\"content\":\"Checking\"}}]},"
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\","
        "\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]},"
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]},"
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]}}]},"
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"function\":{\"name\":\"t2\",\"arguments\":\"{}\"}}]},"
        "\"finish_reason\":\"tool_calls\"}]}]", 1);
    expect_events(sse, "message_start,ping,content_block_start,content_block_delta,content_block_stop,"
                       "content_block_start,content_block_delta,content_block_delta,content_block_stop,"
                       "content_block_start,content_block_delta,content_block_stop,message_delta,message_stop");
    assert_non_null(strstr(sse, "\"content_block\":{\"type\":\"tool_use\",\"id\":\"call_a\",\"name\":\"get_weather\",\"input\":{}}"));
    assert_non_null(strstr(sse, "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}"));
    assert_non_null(strstr(sse, "\"index\":2"));
    assert_non_null(strstr(sse, "\"stop_reason\":\"tool_use\""));
    gw_free(sse);
}

static void stream_error_and_empty(void **state)
{
    (void)state;
    char *sse = run_stream("[{\"choices\":[{\"delta\":{\"content\":\"partial\"}}]}]", 0);
    expect_events(sse, "message_start,ping,content_block_start,content_block_delta,error");
    assert_non_null(strstr(sse, "\"type\":\"api_error\""));
    gw_free(sse);
    sse = run_stream("[]", 1);
    expect_events(sse, "message_start,ping,message_delta,message_stop");
    gw_free(sse);
    /* malformed chunks are skipped, not fatal */
    sse = run_stream("[5,{\"choices\":7},{\"choices\":[{\"delta\":{\"content\":3,\"tool_calls\":{}}}]}]", 1);
    expect_events(sse, "message_start,ping,message_delta,message_stop");
    gw_free(sse);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_plain),
        cmocka_unit_test(request_blocks_tools_images),
        cmocka_unit_test(request_tool_choice_forms),
        cmocka_unit_test(request_count_only),
        cmocka_unit_test(request_refusals),
        cmocka_unit_test(request_native_only),
        cmocka_unit_test(answer_text_and_tools),
        cmocka_unit_test(errors),
        cmocka_unit_test(stream_text),
        cmocka_unit_test(stream_tools),
        cmocka_unit_test(stream_error_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
