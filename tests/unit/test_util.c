/* Unit tests for util: capped buffers, strict decimal parsing, encodings, escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/json.h"

#include "util/buf.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/util.h"

static void buf_respects_cap(void **state)
{
    struct gw_buf b;
    gw_buf_init(&b, 8);
    assert_int_equal(gw_buf_adds(&b, "12345"), 0);
    assert_int_equal(gw_buf_adds(&b, "6789"), GW_ETOOBIG);
    assert_string_equal(b.data, "12345");
    assert_int_equal(gw_buf_adds(&b, "678"), 0);
    assert_int_equal(b.len, 8);
    gw_buf_consume(&b, 3);
    assert_string_equal(b.data, "45678");
    assert_int_equal(gw_buf_printf(&b, "%d", 12345), GW_ETOOBIG);
    gw_buf_cleanup(&b);
}

static void buf_printf_long(void **state)
{
    struct gw_buf b;
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    gw_buf_init(&b, 4096);
    assert_int_equal(gw_buf_printf(&b, "<%s>", big), 0);
    assert_int_equal(b.len, 1001);
    assert_int_equal(b.data[0], '<');
    assert_int_equal(b.data[1000], '>');
    gw_buf_cleanup(&b);
}

static void buf_oom_leaves_buffer_intact(void **state)
{
    struct gw_buf b;
    gw_buf_init(&b, 1 << 20);
    assert_int_equal(gw_buf_adds(&b, "abc"), 0);
    char big[600];
    memset(big, 'y', sizeof(big));
    gw_mem_fail_after(1);
    assert_int_equal(gw_buf_add(&b, big, sizeof(big)), GW_ENOMEM);
    gw_mem_fail_after(0);
    assert_string_equal(b.data, "abc");
    gw_buf_cleanup(&b);
}

static void grow_zeroed_table(void **state)
{
    size_t n = 0;
    int **t = gw_grow_zeroed(NULL, &n, 5, 4, sizeof(*t)); /* 4 -> 8 holds index 5 */
    assert_non_null(t);
    assert_int_equal(n, 8);
    for (size_t i = 0; i < n; i++)
        assert_null(t[i]);
    int x = 1;
    t[7] = &x;
    assert_ptr_equal(gw_grow_zeroed(t, &n, 7, 4, sizeof(*t)), t); /* fits: as it is */
    assert_int_equal(n, 8);
    int **u = gw_grow_zeroed(t, &n, 40, 4, sizeof(*t)); /* 8 -> 64 */
    assert_non_null(u);
    assert_int_equal(n, 64);
    assert_ptr_equal(u[7], &x);
    for (size_t i = 8; i < n; i++)
        assert_null(u[i]);
    gw_mem_fail_after(1); /* no memory: the table and its size stay */
    assert_null(gw_grow_zeroed(u, &n, 64, 4, sizeof(*u)));
    gw_mem_fail_after(0);
    assert_int_equal(n, 64);
    assert_ptr_equal(u[7], &x);
    gw_free(u);
}

static void micros_parse_exact(void **state)
{
    int64_t v;
    assert_int_equal(gw_parse_micros("2.50", &v), 0);
    assert_int_equal(v, 2500000);
    assert_int_equal(gw_parse_micros("0.075", &v), 0);
    assert_int_equal(v, 75000);
    assert_int_equal(gw_parse_micros("15", &v), 0);
    assert_int_equal(v, 15000000);
    assert_int_equal(gw_parse_micros("0.000001", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(gw_parse_micros("1.0000001", &v), GW_EINVAL);
    assert_int_equal(gw_parse_micros("-1", &v), GW_EINVAL);
    assert_int_equal(gw_parse_micros("1.", &v), GW_EINVAL);
    assert_int_equal(gw_parse_micros(".5", &v), GW_EINVAL);
    assert_int_equal(gw_parse_micros("1e3", &v), GW_EINVAL);
    assert_int_equal(gw_parse_micros("", &v), GW_EINVAL);
    assert_int_equal(gw_parse_micros("99999999999999999999", &v), GW_EINVAL);
}

static void i64_parse_strict(void **state)
{
    int64_t v;
    assert_int_equal(gw_parse_i64("42", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(gw_parse_i64("42x", &v), GW_EINVAL);
    assert_int_equal(gw_parse_i64(" 42", &v), GW_EINVAL);
    assert_int_equal(gw_parse_i64("", &v), GW_EINVAL);
    assert_int_equal(gw_parse_i64("99999999999999999999", &v), GW_EINVAL);
}

static void b64url_and_hex(void **state)
{
    char out[64];
    assert_int_equal(gw_b64url(out, (const unsigned char *)"\xfb\xff", 2), 3);
    assert_string_equal(out, "-_8");
    assert_int_equal(gw_b64url(out, (const unsigned char *)"abc", 3), 4);
    assert_string_equal(out, "YWJj");
    gw_hex(out, (const unsigned char *)"\x00\xab", 2);
    assert_string_equal(out, "00ab");
    unsigned char h[32];
    gw_sha256(h, "abc", 3);
    gw_hex(out, h, 4);
    assert_string_equal(out, "ba7816bf");
}

/* gw_int_text against printf's %lld, the ends of int64 included; gw_time_id's shape: prefix, the
 * time's 12 hex digits (as %012llx of its low 48 bits), 12 random ones, and a too small buffer */
static void int_text_and_time_id(void **state)
{
    (void)state;
    const int64_t v[] = {0, 7, -7, 10, 99, -100, 1234567890123LL, INT64_MAX, INT64_MIN};
    char got[GW_INT_TEXT_MAX], want[32];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        snprintf(want, sizeof(want), "%lld", (long long)v[i]);
        assert_int_equal(gw_int_text(got, v[i]), strlen(want));
        assert_string_equal(got, want);
    }
    char id[40], t[16];
    int64_t ms = 0x1234567890abcdLL;
    assert_int_equal(gw_time_id(id, sizeof(id), "req_", ms), 0);
    snprintf(t, sizeof(t), "%012llx", (unsigned long long)ms & 0xffffffffffffULL);
    assert_int_equal(strlen(id), 28);
    assert_memory_equal(id, "req_", 4);
    assert_memory_equal(id + 4, t, 12);
    assert_int_equal(strspn(id + 16, "0123456789abcdef"), 12);
    assert_int_equal(gw_time_id(id, 28, "req_", ms), GW_EINVAL);
    assert_int_equal(gw_time_id(id, 29, "req_", ms), 0);
}

static void log_escape_bounds(void **state)
{
    char out[16];
    gw_log_escape(out, sizeof(out), "a\"b\nc", 5);
    assert_string_equal(out, "a\\\"b\\x0ac");
    gw_log_escape(out, sizeof(out), "0123456789abcdefghij", 20);
    assert_int_equal(strlen(out), 15);
    assert_memory_equal(out + 12, "...", 3);
}

/* The parser takes and refuses what jansson's strict reader does, and builds the same tree. */
static void json_parse_agrees_with_jansson(void **state)
{
    static const char *const cases[] = {
        "{}", "[]", "1", "-0", "\"x\"", "null", "true", "false", " {\"a\" : [1, 2.5, -3e2, {}]} ",
        "{\"a\":1,\"a\":2}", "{\"o\":{\"k\":1,\"k\":1}}", "{\"a\":{\"b\":1},\"b\":{\"b\":2}}",
        "\"\\u0000\"", "{\"a\\u0000b\":1}", "99999999999999999999", "-9223372036854775808",
        "9223372036854775807", "1e400", "1e-400", "123.456e-7", "\"\\n\\t\\\"\\\\/\\u00e9\"",
        "\"\\ud83d\\ude00\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800x\"",
        "\"\\ud800\\u0041\"", "\"a\\\\ud800\"", "{\"\\udfff\":1}", "\"\\\"\\ud83d\\ude00\\\"\"",
        "\"caf\xc3\xa9\"", "\"\xff\"", "\"\xc3\"", "[1,]", "{\"a\":1,}",
        "[1 2]", "{} {}", "{}x", "", "   ", "/* c */ {}", "{'a':1}", "[01]", "[.5]", "[1.]",
        "[-]", "[tru]", "{\"a\"}", "{\"a\":}", "{1:2}", "[\"\t\"]", "\"abc", "[[[[[]]]]]",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}",
        /* found by fuzz_json: what yajl lets through and jansson does not */
        "\"\" \"", "{} \"x", "[1] \"\\u00", "\v{}", "[1,\f2]", "{\"a\":\v1}", "\"\xc1\xa3\"",
        "\"\xe0\x80\xaf\"", "{\"\xc0\x80\":1}", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
        "\"\xf5\x80\x80\x80\"", "\"\xf0\x9f\x98\x80\"", "\"\xef\xbf\xbf\"", "\"\xf4\x8f\xbf\xbf\"",
        "\"\xed\x9f\xbf\"", " 1 ", "[1]\t\r\n"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_errbuf eb = {{0}};
        json_t *want = json_loadb(cases[i], strlen(cases[i]),
                                  JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
        json_t *got = gw_json_parse(cases[i], strlen(cases[i]), &eb);
        if ((want == NULL) != (got == NULL))
            fail_msg("case %zu '%s': jansson %s, gw_json_parse %s (%s)", i, cases[i],
                     want ? "accepts" : "refuses", got ? "accepts" : "refuses", eb.msg);
        if (got == NULL)
            assert_true(strstr(eb.msg, "near byte") != NULL);
        else if (!json_equal(want, got))
            fail_msg("case %zu '%s': different trees", i, cases[i]);
        json_decref(want);
        json_decref(got);
    }
    /* nesting: 2048 levels are fine, 2049 are not */
    for (int depth = 2048; depth <= 2049; depth++) {
        char *deep = malloc((size_t)depth * 2 + 1);
        memset(deep, '[', (size_t)depth);
        memset(deep + depth, ']', (size_t)depth);
        deep[depth * 2] = '\0';
        json_t *v = gw_json_parse(deep, (size_t)depth * 2, NULL);
        assert_true((v != NULL) == (depth == 2048));
        json_decref(v);
        free(deep);
    }
    /* exactly len bytes: what follows is not read */
    json_t *v = gw_json_parse("{\"a\":1}garbage", 7, NULL);
    assert_non_null(v);
    json_decref(v);
    /* a duplicate is named */
    struct gw_errbuf eb = {{0}};
    assert_null(gw_json_parse("{\"dup\":1,\"dup\":2}", 17, &eb));
    assert_non_null(strstr(eb.msg, "duplicate object key 'dup'"));
}

/* gw_json_dumps writes what json_dumps writes (compact, at either precision), built trees too. */
static void json_dumps_agrees_with_jansson(void **state)
{
    static const char *const cases[] = {
        "{}", "[]", "[[],{}]", "{\"a\":{\"b\":[1,-2,0]}}", "[0.1,0.7,1e300,-1e-300,2.5,100.0,-0.0]",
        "[1e21,123456789012345678901234567890.0,3.3e-7,1.0e-5,5e-324,1.7976931348623157e308]",
        "[9223372036854775807,-9223372036854775808]", "[true,false,null]",
        "[\"\",\"\\n\\t\\r\\b\\f\\\"\\\\/\\u0001\\u001f\\u007f\"]",
        "{\"\\u00e9\\ud83d\\ude00\\u2028\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}",
        "{\"z\":1,\"a\":2,\"m\":[{\"k\":\"v\"}]}",
        ("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}],"
         "\"temperature\":0.7,\"max_tokens\":100}")};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *v = gw_json_parse(cases[i], strlen(cases[i]), NULL);
        if (v == NULL)
            fail_msg("case %zu '%s' does not parse", i, cases[i]);
        for (int p = 0; p <= 17; p += p == 0 ? 15 : 2) {
            char *want = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(p));
            char *got = gw_json_dumps(v, p);
            if (want == NULL || got == NULL || strcmp(want, got) != 0)
                fail_msg("case %zu, precision %d: json_dumps %s, gw_json_dumps %s", i, p,
                         want ? want : "(null)", got ? got : "(null)");
            free(want);
            gw_free(got);
        }
        json_decref(v);
    }
    /* built, not parsed: keys in insertion order, a string with a NUL, reals of json_real */
    json_t *o = json_pack("{s:s#,s:f,s:[i,f]}", "k", "a\0b", (int)3, "x", 1.0 / 3, "y", 7, 2.0);
    char *want = json_dumps(o, JSON_COMPACT), *got = gw_json_dump(o);
    assert_string_equal(got, want);
    free(want);
    gw_free(got);
    json_decref(o);
    /* like json_dumps, only an object or an array; any value through gw_json_write */
    json_t *s = json_string("x");
    assert_null(gw_json_dump(s));
    struct gw_buf b;
    gw_buf_init(&b, 64);
    assert_int_equal(gw_json_write(&b, s, 0), 0);
    assert_string_equal(b.data, "\"x\"");
    gw_buf_cleanup(&b);
    json_decref(s);
    /* deeper than a parse may build: refused, not a stack overflow */
    json_t *deep = json_array(), *at = deep;
    for (int d = 1; d < 2100; d++) {
        json_t *inner = json_array();
        json_array_append_new(at, inner);
        at = inner;
    }
    assert_null(gw_json_dump(deep));
    json_decref(deep);
}

/* The word-at-a-time paths (string escaping, the ASCII check) agree with jansson and with a
 * byte-at-a-time reading for every kind of byte at every offset of every length. */
static void strings_word_paths_agree(void **state)
{
    (void)state;
    static const unsigned char kinds[] = {'a', ' ', '~', 0x7f, 0x1f, 0x00, 0x01, '\n', '"', '\\',
                                          '/', 0x80, 0xc3, 0xa9, 0xff};
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int round = 0; round < 4000; round++) {
        unsigned char text[40];
        size_t len = (size_t)round % 33;
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* mostly plain letters, one odd byte here and there */
            text[i] = x % 5 == 0 ? kinds[(x >> 8) % sizeof(kinds)] : (unsigned char)('a' + x % 26);
        }
        /* escaping, as json_dumps escapes (only valid UTF-8 goes to jansson) */
        int ascii = 1, valid = gw_json_utf8_ok(text, len);
        for (size_t i = 0; i < len; i++)
            ascii &= text[i] != 0 && text[i] < 0x80;
        if (valid) {
            json_t *a = json_pack("[s#]", (const char *)text, (int)len);
            assert_non_null(a);
            char *want = json_dumps(a, JSON_COMPACT), *got = gw_json_dump(a);
            if (want == NULL || got == NULL || strcmp(want, got) != 0)
                fail_msg("round %d: json_dumps %s, gw_json_dump %s", round, want, got);
            free(want);
            gw_free(got);
            json_decref(a);
        }
        /* the check of a token yajl hands over in place (no escapes in the text) */
        const char *why = gw_json_text_bad((const char *)text, len, text, len);
        if (ascii)
            assert_null(why);
        else if (memchr(text, 0, len) != NULL)
            assert_string_equal(why, "\\u0000 is not allowed");
        else if (!valid)
            assert_string_equal(why, "invalid UTF-8");
        else
            assert_null(why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_respects_cap),      cmocka_unit_test(buf_printf_long),
        cmocka_unit_test(buf_oom_leaves_buffer_intact), cmocka_unit_test(grow_zeroed_table),
        cmocka_unit_test(micros_parse_exact),
        cmocka_unit_test(i64_parse_strict),      cmocka_unit_test(b64url_and_hex),
        cmocka_unit_test(log_escape_bounds),       cmocka_unit_test(json_parse_agrees_with_jansson),
        cmocka_unit_test(json_dumps_agrees_with_jansson), cmocka_unit_test(strings_word_paths_agree), cmocka_unit_test(int_text_and_time_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
