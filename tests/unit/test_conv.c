/* Unit tests for conv/history: token estimates, the plan and the fit, what is sent (apply), the
 * summarizer's request, the stored turns, titles and texts, and malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_json.h"

#include "conv/history.h"
#include "util/err.h"
#include "util/mem.h"

static int64_t tok(const char *s) { return gw_tokens_text(s, strlen(s)); }

static int64_t msg_tokens(const char *js)
{
    json_t *m = parse(js);
    int64_t t = gw_tokens_message(m);
    json_decref(m);
    return t;
}

/* The content string of messages[i] of a request, or "" when it has none. */
static const char *content_at(const json_t *messages, size_t i)
{
    const char *s = json_string_value(json_object_get(json_array_get(messages, i), "content"));
    return s ? s : "";
}

static const char *role_at(const json_t *messages, size_t i)
{
    const char *s = json_string_value(json_object_get(json_array_get(messages, i), "role"));
    return s ? s : "";
}

/* n turns alternating user/assistant with content "zero", "one", ... (5 tokens each). */
static const char *const words[] = {"zero", "one", "two",   "three", "four",
                                    "five", "six", "seven", "eight", "nine"};
static json_t *make_turns(size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s,s:s}", "role", i % 2 ? "assistant" : "user",
                                           "content", words[i % 10]));
    return a;
}

/* ---- token estimates ---------------------------------------------------------------------- */

static void tokens_of_known_texts(void **state)
{
    assert_int_equal(tok("Hello, world!"), 4);
    assert_int_equal(tok(""), 0);
    assert_int_equal(gw_tokens_text(NULL, 0), 0);
    assert_int_equal(gw_tokens_text(NULL, 10), 0);
    assert_int_equal(tok("   \t\r\n  "), 0);
    assert_int_equal(tok("\x01\x02\x7f"), 0);
    /* letters: one per started 6 */
    assert_int_equal(tok("a"), 1);
    assert_int_equal(tok("abcdef"), 1);
    assert_int_equal(tok("abcdefg"), 2);
    assert_int_equal(tok("internationalization"), 4); /* 20 letters */
    /* digits: one per started 3 */
    assert_int_equal(tok("123"), 1);
    assert_int_equal(tok("1234"), 2);
    assert_int_equal(tok("1234567"), 3);
    assert_int_equal(tok("a1b2"), 4);
    assert_int_equal(tok("x_y"), 3);
    assert_int_equal(tok("3.14159"), 4); /* 3 . 141 59 */
    assert_int_equal(tok("the quick brown fox"), 4);
    /* non-ASCII: one per character (lead byte) */
    assert_int_equal(tok("日本語"), 3);
    assert_int_equal(tok("café"), 2); /* caf + é */
    assert_int_equal(tok("\xf0\x9f\x98\x80"), 1); /* one emoji */
    assert_int_equal(tok("\x80\x80\xbf"), 0);     /* stray continuation bytes */
    /* n, not the NUL, bounds the text */
    assert_int_equal(gw_tokens_text("abc def", 3), 1);
    assert_int_equal(gw_tokens_text("a\0b", 3), 2);
}

/* The estimate's definition, a byte at a time: runs of letters count one per 6 begun, runs of
 * digits one per 3, other printable ASCII and UTF-8 lead bytes one each. */
static int64_t tokens_ref(const unsigned char *s, size_t n)
{
    int64_t tokens = 0;
    size_t letters = 0, digits = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        int letter = (c | 0x20) >= 'a' && (c | 0x20) <= 'z', digit = c >= '0' && c <= '9';
        if (!letter && letters > 0)
            tokens += (int64_t)((letters + 5) / 6), letters = 0;
        if (!digit && digits > 0)
            tokens += (int64_t)((digits + 2) / 3), digits = 0;
        if (letter)
            letters++;
        else if (digit)
            digits++;
        else
            tokens += (c > 0x20 && c < 0x7f) || c >= 0xc0;
    }
    return tokens + (int64_t)((letters + 5) / 6) + (int64_t)((digits + 2) / 3);
}

static void tokens_agree_with_the_definition(void **state)
{
    (void)state;
    static const char alphabet[] = "aZq09 ,.\t\n_\x01\x7f\x80\xbf\xc3\xe6\xf0\xff@[`{";
    uint64_t x = 0x2545f4914f6cdd1dULL;
    for (int round = 0; round < 5000; round++) {
        unsigned char text[64];
        size_t len = (size_t)round % sizeof(text);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            text[i] = (unsigned char)alphabet[x % (sizeof(alphabet) - 1)];
        }
        assert_int_equal(gw_tokens_text((const char *)text, len), tokens_ref(text, len));
    }
}

static void tokens_of_messages(void **state)
{
    assert_int_equal(msg_tokens("{\"role\":\"user\",\"content\":\"Hello, world!\"}"), 8);
    assert_int_equal(msg_tokens("{\"role\":\"user\",\"content\":\"\"}"), 4);
    assert_int_equal(msg_tokens("{\"role\":\"user\",\"name\":\"bob\",\"content\":\"hi\"}"), 6);
    /* parts: text counts its text, an image 85 */
    assert_int_equal(msg_tokens("{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
                                "\"Hello\"},{\"type\":\"image_url\",\"image_url\":{\"url\":"
                                "\"http://x/y.png\"}},{\"type\":\"text\",\"text\":\"123\"}]}"),
                     4 + 1 + 85 + 1);
    /* tool calls: names and arguments */
    assert_int_equal(msg_tokens("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
                                "\"c1\",\"type\":\"function\",\"function\":{\"name\":"
                                "\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}"
                                "]}"),
                     4 + 4 + 9);
    assert_int_equal(msg_tokens("{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"21\"}"),
                     5);

    json_t *a = parse("[{\"role\":\"user\",\"content\":\"Hello, world!\"},"
                      "{\"role\":\"user\",\"name\":\"bob\",\"content\":\"hi\"}]");
    assert_int_equal(gw_tokens_messages(a), 8 + 6 + 3);
    json_decref(a);
    a = json_array();
    assert_int_equal(gw_tokens_messages(a), 3);
    json_decref(a);
    a = parse("{\"role\":\"user\",\"content\":\"x\"}");
    assert_int_equal(gw_tokens_messages(a), 0);
    assert_int_equal(gw_tokens_messages(NULL), 0);
    json_decref(a);
}

static void tokens_of_malformed_messages(void **state)
{
    static const char *const bad[] = {
        "null",
        "42",
        "\"text\"",
        "[]",
        "{}",
        "{\"role\":7,\"content\":7}",
        "{\"content\":{\"text\":\"x\"}}",
        ("{\"content\":[1,null,\"s\",[],{\"type\":7},{\"type\":\"text\"},{\"type\":\"text\","
         "\"text\":3}]}"),
        "{\"tool_calls\":{\"a\":1}}",
        "{\"tool_calls\":[1,{},{\"function\":3},{\"function\":{\"name\":4,\"arguments\":{}}}]}",
        "{\"name\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *m = parse(bad[i]);
        int64_t t = gw_tokens_message(m);
        assert_true(t >= 1);
        json_decref(m);
    }
    assert_int_equal(gw_tokens_message(NULL), 4);
    /* parts without a type or with an unknown one are not text: 85 */
    assert_int_equal(msg_tokens("{\"content\":[{\"type\":7},{\"image\":1}]}"), 4 + 85 + 85);
}

static void summary_tokens(void **state)
{
    assert_int_equal(gw_history_summary_tokens(NULL), 0);
    assert_int_equal(gw_history_summary_tokens(""), 0);
    /* prefix: Summary of the earlier part of this conversation: = 2+1+1+2+1+1+1+2+1 = 12 */
    assert_int_equal(gw_tokens_text(GW_SUMMARY_PREFIX, strlen(GW_SUMMARY_PREFIX)), 12);
    assert_int_equal(gw_history_summary_tokens("Hello, world!"), 4 + 12 + 4);
}

/* ---- plan and fit ------------------------------------------------------------------------- */

static void plan_everything_fits(void **state)
{
    json_t *t = make_turns(5); /* 25 tokens */
    assert_int_equal(gw_tokens_messages(t), 25 + 3);
    assert_int_equal(gw_history_plan(10, "", t, 100, 2), 0);
    assert_int_equal(gw_history_plan(10, NULL, t, 35, 2), 0); /* exactly the budget */
    assert_int_equal(gw_history_plan(10, "Hello, world!", t, 55, 2), 0);
    json_decref(t);
}

static void plan_over_budget_summarizes_all_but_recent(void **state)
{
    json_t *t = make_turns(5);
    assert_int_equal(gw_history_plan(10, "", t, 34, 2), 3);
    assert_int_equal(gw_history_plan(10, "", t, 30, 0), 5);
    assert_int_equal(gw_history_plan(10, "", t, 30, 4), 1);
    /* the summary counts: fits without it, not with it */
    assert_int_equal(gw_history_plan(10, "", t, 40, 2), 0);
    assert_int_equal(gw_history_plan(10, "Hello, world!", t, 40, 2), 3);
    /* no more turns than kept word for word: nothing to summarize */
    assert_int_equal(gw_history_plan(10, "", t, 5, 5), 0);
    assert_int_equal(gw_history_plan(10, "", t, 5, 7), 0);
    json_decref(t);
    /* no turns / not an array */
    t = json_array();
    assert_int_equal(gw_history_plan(100, "", t, 5, 2), 0);
    json_decref(t);
    assert_int_equal(gw_history_plan(100, "x", NULL, 5, 0), 0);
    t = json_string("turns");
    assert_int_equal(gw_history_plan(100, "x", t, 5, 0), 0);
    json_decref(t);
}

static void fit_drops_oldest(void **state)
{
    json_t *t = make_turns(5); /* 5 tokens each */
    assert_int_equal(gw_history_fit(10, "", t, 0, 100), 0);
    assert_int_equal(gw_history_fit(10, "", t, 0, 35), 0);
    assert_int_equal(gw_history_fit(10, "", t, 0, 34), 1);
    assert_int_equal(gw_history_fit(10, "", t, 0, 30), 1);
    assert_int_equal(gw_history_fit(10, "", t, 0, 20), 3);
    assert_int_equal(gw_history_fit(10, NULL, t, 0, 15), 4);
    /* with a summary (20 tokens) */
    assert_int_equal(gw_history_fit(10, "Hello, world!", t, 0, 40), 3);
    /* from >= start */
    assert_int_equal(gw_history_fit(10, "", t, 2, 100), 2);
    assert_int_equal(gw_history_fit(10, "", t, 4, 100), 4);
    assert_int_equal(gw_history_fit(10, "", t, 5, 100), 5);
    assert_int_equal(gw_history_fit(10, "", t, 9, 100), 5);
    json_decref(t);
}

static void fit_none_fits(void **state)
{
    json_t *t = make_turns(5);
    assert_int_equal(gw_history_fit(10, "", t, 0, 14), 5); /* the request fits, no turn does */
    assert_int_equal(gw_history_fit(10, "", t, 0, 9), 5);  /* not even the request */
    assert_int_equal(gw_history_fit(10, "Hello, world!", t, 0, 29), 5);
    assert_int_equal(gw_history_fit(10, "", t, 0, -1), 5);
    json_decref(t);
    assert_int_equal(gw_history_fit(10, "", NULL, 0, 100), 0);
}

/* ---- apply -------------------------------------------------------------------------------- */

static const char canon_json[] =
    "{\"model\":\"m\",\"messages\":["
    "{\"role\":\"system\",\"content\":\"S1\"},"
    "{\"role\":\"developer\",\"content\":\"D\"},"
    "{\"role\":\"user\",\"content\":\"Q\"},"
    "{\"role\":\"system\",\"content\":\"late\"}]}";

static void apply_orders_messages(void **state)
{
    json_t *canon = parse(canon_json);
    json_t *turns = make_turns(3);
    json_t *before = json_deep_copy(turns);

    assert_int_equal(gw_history_apply(canon, "sum", turns, 1), 0);
    json_t *m = json_object_get(canon, "messages");
    assert_int_equal(json_array_size(m), 7);
    assert_string_equal(role_at(m, 0), "system");
    assert_string_equal(content_at(m, 0), "S1");
    assert_string_equal(role_at(m, 1), "developer");
    assert_string_equal(content_at(m, 1), "D");
    assert_string_equal(role_at(m, 2), "system");
    assert_string_equal(content_at(m, 2), GW_SUMMARY_PREFIX "sum");
    assert_int_equal(gw_tokens_message(json_array_get(m, 2)), gw_history_summary_tokens("sum"));
    assert_string_equal(role_at(m, 3), "assistant");
    assert_string_equal(content_at(m, 3), "one");
    assert_string_equal(role_at(m, 4), "user");
    assert_string_equal(content_at(m, 4), "two");
    assert_string_equal(role_at(m, 5), "user");
    assert_string_equal(content_at(m, 5), "Q");
    assert_string_equal(role_at(m, 6), "system");
    assert_string_equal(content_at(m, 6), "late");
    assert_string_equal(json_string_value(json_object_get(canon, "model")), "m");
    /* what is sent is a copy: editing it leaves the stored turns alone */
    assert_ptr_not_equal(json_array_get(m, 3), json_array_get(turns, 1));
    json_object_set_new(json_array_get(m, 3), "content", json_string("changed"));
    assert_true(json_equal(turns, before));
    json_decref(before);
    json_decref(turns);
    json_decref(canon);
}

static void apply_without_summary(void **state)
{
    json_t *canon = parse(canon_json);
    json_t *turns = make_turns(2);
    assert_int_equal(gw_history_apply(canon, NULL, turns, 0), 0);
    json_t *m = json_object_get(canon, "messages");
    assert_int_equal(json_array_size(m), 6);
    assert_string_equal(content_at(m, 1), "D");
    assert_string_equal(content_at(m, 2), "zero");
    assert_string_equal(content_at(m, 3), "one");
    assert_string_equal(content_at(m, 4), "Q");
    json_decref(canon);

    /* "" is no summary; from == len sends no turns */
    canon = parse(canon_json);
    assert_int_equal(gw_history_apply(canon, "", turns, 2), 0);
    m = json_object_get(canon, "messages");
    assert_int_equal(json_array_size(m), 4);
    assert_string_equal(content_at(m, 2), "Q");
    json_decref(canon);

    /* from past the end, turns not an array */
    canon = parse(canon_json);
    assert_int_equal(gw_history_apply(canon, "s", turns, 99), 0);
    assert_int_equal(json_array_size(json_object_get(canon, "messages")), 5);
    json_decref(canon);
    canon = parse(canon_json);
    assert_int_equal(gw_history_apply(canon, NULL, NULL, 0), 0);
    assert_int_equal(json_array_size(json_object_get(canon, "messages")), 4);
    json_decref(canon);
    json_decref(turns);
}

static void apply_no_system_messages(void **state)
{
    json_t *canon = parse("{\"messages\":[{\"role\":\"user\",\"content\":\"Q\"}]}");
    json_t *turns = make_turns(1);
    assert_int_equal(gw_history_apply(canon, "sum", turns, 0), 0);
    json_t *m = json_object_get(canon, "messages");
    assert_int_equal(json_array_size(m), 3);
    assert_string_equal(role_at(m, 0), "system");
    assert_string_equal(content_at(m, 0), GW_SUMMARY_PREFIX "sum");
    assert_string_equal(content_at(m, 1), "zero");
    assert_string_equal(content_at(m, 2), "Q");
    json_decref(canon);
    json_decref(turns);
}

static void apply_refuses_canon_without_messages(void **state)
{
    json_t *turns = make_turns(2);
    json_t *canon = parse("{\"model\":\"m\"}");
    assert_int_equal(gw_history_apply(canon, "s", turns, 0), GW_EINVAL);
    assert_null(json_object_get(canon, "messages"));
    json_decref(canon);
    canon = parse("{\"messages\":\"hi\"}");
    assert_int_equal(gw_history_apply(canon, "s", turns, 0), GW_EINVAL);
    json_decref(canon);
    canon = parse("[1,2]");
    assert_int_equal(gw_history_apply(canon, "s", turns, 0), GW_EINVAL);
    json_decref(canon);
    assert_int_equal(gw_history_apply(NULL, "s", turns, 0), GW_EINVAL);
    json_decref(turns);
}

static void apply_malformed_turns_and_summary(void **state)
{
    json_t *canon = parse(canon_json);
    json_t *turns = parse("[1,{\"role\":\"user\",\"content\":\"ok\"},null,\"x\"]");
    /* a summary that is not UTF-8 is scrubbed, not refused */
    assert_int_equal(gw_history_apply(canon, "ab\xff", turns, 0), 0);
    json_t *m = json_object_get(canon, "messages");
    assert_int_equal(json_array_size(m), 6);
    assert_string_equal(content_at(m, 2), GW_SUMMARY_PREFIX "ab?");
    assert_string_equal(content_at(m, 3), "ok");
    assert_string_equal(content_at(m, 4), "Q");
    json_decref(canon);
    json_decref(turns);
}

static void apply_out_of_memory(void **state)
{
    json_t *canon = parse(canon_json);
    json_t *before = json_deep_copy(canon);
    json_t *turns = make_turns(2);
    gw_mem_fail_after(1);
    assert_int_equal(gw_history_apply(canon, "sum", turns, 0), GW_ENOMEM);
    gw_mem_fail_after(0);
    assert_true(json_equal(canon, before)); /* unchanged */
    json_decref(before);
    json_decref(turns);
    json_decref(canon);
}

/* ---- the summarizer's request ------------------------------------------------------------- */

static const char *user_content(const json_t *req)
{
    return content_at(json_object_get(req, "messages"), 1);
}

static void summary_request_shape(void **state)
{
    json_t *turns = parse(
        "[{\"role\":\"user\",\"content\":\"Hi there\"},"
        "{\"role\":\"assistant\",\"content\":\"Hello!\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":"
        "\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":"
        "\\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"21 C\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"line one\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"u\"}},{\"type\":\"text\",\"text\":"
        "\"line two\"}]}]");
    json_t *req = gw_history_summary_request("Old facts.", turns, 5, 300, 10000);
    assert_non_null(req);
    assert_null(json_object_get(req, "model"));
    assert_int_equal(json_integer_value(json_object_get(req, "max_tokens")), 300);
    json_t *temp = json_object_get(req, "temperature");
    assert_true(json_is_number(temp));
    assert_true(json_number_value(temp) == 0.0);
    json_t *m = json_object_get(req, "messages");
    assert_int_equal(json_array_size(m), 2);
    assert_string_equal(role_at(m, 0), "system");
    assert_true(strlen(content_at(m, 0)) > 50);
    assert_non_null(strstr(content_at(m, 0), "third person"));
    assert_string_equal(role_at(m, 1), "user");
    assert_string_equal(user_content(req),
                        "Earlier summary:\nOld facts.\n\n"
                        "Conversation:\n"
                        "user: Hi there\n"
                        "assistant: Hello!\n"
                        "assistant: [tool call get_weather {\"city\":\"Paris\"}]\n"
                        "tool: 21 C\n"
                        "user: line one\nline two\n");
    json_decref(req);

    /* no old summary; only the first n turns */
    req = gw_history_summary_request(NULL, turns, 2, 100, 10000);
    assert_non_null(req);
    assert_string_equal(user_content(req), "Conversation:\nuser: Hi there\nassistant: Hello!\n");
    json_decref(req);
    req = gw_history_summary_request("", turns, 99, 100, 10000);
    assert_non_null(req);
    assert_memory_equal(user_content(req), "Conversation:\nuser: Hi there\n", 29);
    json_decref(req);
    /* max_tokens <= 0: left to the provider */
    req = gw_history_summary_request("", turns, 1, 0, 10000);
    assert_non_null(req);
    assert_null(json_object_get(req, "max_tokens"));
    json_decref(req);
    json_decref(turns);
}

static int is_cont(unsigned char c) { return (c & 0xc0) == 0x80; }

static void summary_request_cut_keeps_newest(void **state)
{
    json_t *turns = json_array();
    for (int i = 0; i < 40; i++) {
        char text[64];
        snprintf(text, sizeof(text), "message %02d 日本語é", i);
        json_array_append_new(turns, json_pack("{s:s,s:s}", "role", "user", "content", text));
    }
    json_t *full = gw_history_summary_request("old", turns, 40, 100, 1 << 20);
    assert_non_null(full);
    const char *whole = strstr(user_content(full), "Conversation:\n");
    assert_non_null(whole);
    whole += strlen("Conversation:\n");
    size_t wlen = strlen(whole);
    assert_true(wlen > 400);
    assert_non_null(strstr(whole, "user: message 00 日本語é\n"));

    const char *mark = "[earlier part omitted]\n";
    for (size_t max = 100; max < 130; max++) {
        json_t *req = gw_history_summary_request("old", turns, 40, 100, max);
        assert_non_null(req);
        const char *u = user_content(req);
        const char *prefix = "Earlier summary:\nold\n\nConversation:\n";
        assert_memory_equal(u, prefix, strlen(prefix));
        const char *t = u + strlen(prefix);
        size_t tlen = strlen(t);
        assert_true(tlen <= max);
        assert_true(tlen + 3 >= max); /* at most a partial character is lost */
        assert_memory_equal(t, mark, strlen(mark));
        const char *kept = t + strlen(mark);
        size_t klen = strlen(kept);
        assert_false(is_cont((unsigned char)kept[0]));
        /* the newest part, byte for byte */
        assert_memory_equal(kept, whole + wlen - klen, klen);
        assert_non_null(strstr(kept, "user: message 39 日本語é\n"));
        assert_null(strstr(kept, "message 00"));
        json_decref(req);
    }
    /* no room even for the mark */
    json_t *req = gw_history_summary_request(NULL, turns, 40, 100, 5);
    assert_non_null(req);
    const char *t = user_content(req) + strlen("Conversation:\n");
    assert_true(strlen(t) <= 5);
    assert_true(strlen(t) == 0 || !is_cont((unsigned char)t[0]));
    json_decref(req);
    req = gw_history_summary_request(NULL, turns, 40, 100, 0);
    assert_non_null(req);
    assert_string_equal(user_content(req), "Conversation:\n");
    json_decref(req);
    /* a transcript that fits is not marked */
    req = gw_history_summary_request(NULL, turns, 40, 100, wlen);
    assert_non_null(req);
    assert_null(strstr(user_content(req), mark));
    json_decref(req);
    json_decref(full);
    json_decref(turns);
}

static void summary_request_malformed(void **state)
{
    json_t *req = gw_history_summary_request(NULL, NULL, 5, 100, 1000);
    assert_non_null(req);
    assert_string_equal(user_content(req), "Conversation:\n");
    json_decref(req);

    json_t *turns = parse("[1,null,{},{\"content\":\"no role\"},{\"role\":3,\"content\":[1]},"
                          "{\"role\":\"assistant\",\"tool_calls\":[1,{\"function\":{}}]},"
                          "{\"role\":\"user\",\"content\":{\"a\":1}}]");
    req = gw_history_summary_request("bad \xc3(", turns, 7, 100, 1000);
    assert_non_null(req);
    assert_string_equal(user_content(req), "Earlier summary:\nbad ?(\n\n"
                                           "Conversation:\n"
                                           "unknown: no role\n"
                                           "assistant: [tool call ? {}]\n"
                                           "assistant: [tool call ? {}]\n");
    json_decref(req);
    json_decref(turns);
}

static void summary_request_out_of_memory(void **state)
{
    json_t *turns = make_turns(6);
    for (long n = 1; n < 40; n++) {
        gw_mem_fail_after(n);
        json_t *req = gw_history_summary_request("old", turns, 6, 100, 1000);
        gw_mem_fail_after(0);
        if (req != NULL) {
            assert_non_null(strstr(user_content(req), "assistant: five\n"));
            json_decref(req);
        }
    }
    json_decref(turns);
}

/* ---- new turns ---------------------------------------------------------------------------- */

static void new_turns_copies_request_and_answer(void **state)
{
    json_t *req = parse("[{\"role\":\"system\",\"content\":\"S\"},"
                        "{\"role\":\"user\",\"content\":\"Q1\"},"
                        "{\"role\":\"developer\",\"content\":\"D\"},"
                        "7,"
                        "{\"role\":\"assistant\",\"content\":\"A1\"},"
                        "{\"role\":\"user\",\"content\":\"Q2\"}]");
    json_t *answer = parse("{\"role\":\"assistant\",\"content\":\"A2\"}");
    json_t *t = gw_history_new_turns(req, answer);
    assert_non_null(t);
    assert_int_equal(json_array_size(t), 4);
    assert_string_equal(content_at(t, 0), "Q1");
    assert_string_equal(content_at(t, 1), "A1");
    assert_string_equal(content_at(t, 2), "Q2");
    assert_string_equal(content_at(t, 3), "A2");
    assert_ptr_not_equal(json_array_get(t, 3), answer);
    assert_ptr_not_equal(json_array_get(t, 0), json_array_get(req, 1));
    assert_true(json_equal(json_array_get(t, 0), json_array_get(req, 1)));
    json_decref(t);

    t = gw_history_new_turns(req, NULL);
    assert_non_null(t);
    assert_int_equal(json_array_size(t), 3);
    json_decref(t);

    t = gw_history_new_turns(NULL, answer);
    assert_non_null(t);
    assert_int_equal(json_array_size(t), 1);
    json_decref(t);

    json_t *junk = json_string("answer");
    t = gw_history_new_turns(junk, junk);
    assert_non_null(t);
    assert_int_equal(json_array_size(t), 0);
    json_decref(t);
    json_decref(junk);
    json_decref(answer);
    json_decref(req);
}

/* ---- title and text ----------------------------------------------------------------------- */

static void title_folds_whitespace(void **state)
{
    char out[64];
    json_t *m = parse("[{\"role\":\"system\",\"content\":\"sys\"},"
                      "{\"role\":\"assistant\",\"content\":\"not me\"},"
                      "{\"role\":\"user\",\"content\":\"  Hello \\t\\n  world  \\r\\n \"},"
                      "{\"role\":\"user\",\"content\":\"second\"}]");
    gw_history_title(m, out, sizeof(out));
    assert_string_equal(out, "Hello world");
    json_decref(m);

    m = parse("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Part one\"},"
              "{\"type\":\"image_url\",\"image_url\":{\"url\":\"u\"}},"
              "{\"type\":\"text\",\"text\":\" part\\ntwo \"}]}]");
    gw_history_title(m, out, sizeof(out));
    assert_string_equal(out, "Part one part two");
    json_decref(m);

    m = parse("[{\"role\":\"user\",\"content\":\"abc def\"}]");
    gw_history_title(m, out, 5); /* "abc " → no trailing space */
    assert_string_equal(out, "abc");
    gw_history_title(m, out, 8);
    assert_string_equal(out, "abc def");
    gw_history_title(m, out, 1);
    assert_string_equal(out, "");
    json_decref(m);
}

static void title_cuts_on_utf8_boundary(void **state)
{
    char out[64];
    json_t *m = parse("[{\"role\":\"user\",\"content\":\"日本語テキスト\"}]");
    gw_history_title(m, out, sizeof(out));
    assert_string_equal(out, "日本語テキスト");
    gw_history_title(m, out, 8); /* 7 bytes: two characters */
    assert_string_equal(out, "日本");
    gw_history_title(m, out, 7);
    assert_string_equal(out, "日本");
    gw_history_title(m, out, 6);
    assert_string_equal(out, "日");
    gw_history_title(m, out, 3);
    assert_string_equal(out, "");
    json_decref(m);

    m = parse("[{\"role\":\"user\",\"content\":\"ab日\"}]");
    gw_history_title(m, out, 4);
    assert_string_equal(out, "ab");
    gw_history_title(m, out, 6);
    assert_string_equal(out, "ab日");
    json_decref(m);
    m = parse("[{\"role\":\"user\",\"content\":\"a 日\"}]");
    gw_history_title(m, out, 4);
    assert_string_equal(out, "a");
    json_decref(m);
}

static void title_without_text(void **state)
{
    char out[16];
    static const char *const cases[] = {
        "[]",
        "[{\"role\":\"assistant\",\"content\":\"x\"}]",
        "[{\"role\":\"user\",\"content\":null}]",
        "[{\"role\":\"user\",\"content\":\"   \\n\"}]",
        "[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]",
        "[{\"role\":\"user\",\"content\":[1,{\"type\":\"text\",\"text\":2}]}]",
        "[{\"role\":\"user\",\"content\":{\"text\":\"x\"}}]",
        "[1,\"user\",null]",
        "{\"role\":\"user\",\"content\":\"x\"}",
        "\"user\"",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *m = parse(cases[i]);
        memcpy(out, "garbage", 8);
        gw_history_title(m, out, sizeof(out));
        assert_string_equal(out, "");
        json_decref(m);
    }
    memcpy(out, "garbage", 8);
    gw_history_title(NULL, out, sizeof(out));
    assert_string_equal(out, "");
    memcpy(out, "keep", 5);
    gw_history_title(NULL, out, 0); /* no room at all: out untouched */
    assert_string_equal(out, "keep");
    gw_history_title(NULL, NULL, 0);
}

static void text_of_messages(void **state)
{
    json_t *m = parse("{\"role\":\"user\",\"content\":\"plain text\"}");
    char *t = gw_history_text(m);
    assert_string_equal(t, "plain text");
    gw_free(t);
    json_decref(m);

    m = parse("{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"one\"},{\"type\":"
              "\"image_url\",\"image_url\":{\"url\":\"u\"}},{\"type\":\"text\",\"text\":\"two\"},"
              "{\"type\":\"text\",\"text\":\"\"},{\"type\":\"text\",\"text\":\"three\"}]}");
    t = gw_history_text(m);
    assert_string_equal(t, "one\ntwo\n\nthree");
    gw_free(t);
    json_decref(m);

    m = parse("{\"role\":\"user\",\"content\":\"\"}");
    t = gw_history_text(m);
    assert_string_equal(t, "");
    gw_free(t);
    json_decref(m);

    static const char *const none[] = {
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]}",
        "{\"role\":\"user\"}",
        "{\"role\":\"user\",\"content\":[]}",
        "{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"},3,{\"text\":\"no type\"}]}",
        "{\"role\":\"user\",\"content\":42}",
        "[\"content\"]",
        "null",
    };
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        m = parse(none[i]);
        assert_null(gw_history_text(m));
        json_decref(m);
    }
    assert_null(gw_history_text(NULL));

    m = parse("{\"content\":\"x\"}");
    gw_mem_fail_after(1);
    assert_null(gw_history_text(m));
    gw_mem_fail_after(0);
    json_decref(m);
}

/* Every function over junk: no crash, no leak, sane answers. */
static void malformed_inputs_never_crash(void **state)
{
    static const char *const junk[] = {
        "null",
        "0",
        "\"s\"",
        "{}",
        "[]",
        "[null,1,\"x\",[],{}]",
        "[{\"role\":null,\"content\":[null,{\"type\":[]}],\"tool_calls\":\"x\",\"name\":{}}]",
        ("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":null}],\"tool_calls\":[{"
         "\"function\":[]}]}]"),
        "{\"messages\":[null,{\"role\":\"system\"},7]}",
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        json_t *v = parse(junk[i]);
        char title[8];
        assert_true(gw_tokens_message(v) >= 1);
        assert_true(gw_tokens_messages(v) >= 0);
        assert_true(gw_history_plan(1, "s", v, 10, 1) <= json_array_size(v));
        assert_true(gw_history_fit(1, "s", v, 0, 10) <= json_array_size(v));
        json_t *r = gw_history_summary_request("s", v, 10, 10, 10);
        assert_non_null(r);
        json_decref(r);
        r = gw_history_new_turns(v, v);
        assert_non_null(r);
        json_decref(r);
        gw_history_title(v, title, sizeof(title));
        gw_free(gw_history_text(v));
        json_t *canon = parse("{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}");
        assert_int_equal(gw_history_apply(canon, "s", v, 0), 0);
        json_decref(canon);
        json_t *copy = json_deep_copy(v);
        int rc = gw_history_apply(copy, "s", v, 1);
        assert_true(rc == 0 || rc == GW_EINVAL);
        json_decref(copy);
        json_decref(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tokens_of_known_texts),
        cmocka_unit_test(tokens_agree_with_the_definition),
        cmocka_unit_test(tokens_of_messages),
        cmocka_unit_test(tokens_of_malformed_messages),
        cmocka_unit_test(summary_tokens),
        cmocka_unit_test(plan_everything_fits),
        cmocka_unit_test(plan_over_budget_summarizes_all_but_recent),
        cmocka_unit_test(fit_drops_oldest),
        cmocka_unit_test(fit_none_fits),
        cmocka_unit_test(apply_orders_messages),
        cmocka_unit_test(apply_without_summary),
        cmocka_unit_test(apply_no_system_messages),
        cmocka_unit_test(apply_refuses_canon_without_messages),
        cmocka_unit_test(apply_malformed_turns_and_summary),
        cmocka_unit_test(apply_out_of_memory),
        cmocka_unit_test(summary_request_shape),
        cmocka_unit_test(summary_request_cut_keeps_newest),
        cmocka_unit_test(summary_request_malformed),
        cmocka_unit_test(summary_request_out_of_memory),
        cmocka_unit_test(new_turns_copies_request_and_answer),
        cmocka_unit_test(title_folds_whitespace),
        cmocka_unit_test(title_cuts_on_utf8_boundary),
        cmocka_unit_test(title_without_text),
        cmocka_unit_test(text_of_messages),
        cmocka_unit_test(malformed_inputs_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
