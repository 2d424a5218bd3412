/* Unit tests for util: capped buffers, strict decimal parsing, encodings, escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

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

static void log_escape_bounds(void **state)
{
    char out[16];
    gw_log_escape(out, sizeof(out), "a\"b\nc", 5);
    assert_string_equal(out, "a\\\"b\\x0ac");
    gw_log_escape(out, sizeof(out), "0123456789abcdefghij", 20);
    assert_int_equal(strlen(out), 15);
    assert_memory_equal(out + 12, "...", 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_respects_cap),      cmocka_unit_test(buf_printf_long),
        cmocka_unit_test(buf_oom_leaves_buffer_intact), cmocka_unit_test(micros_parse_exact),
        cmocka_unit_test(i64_parse_strict),      cmocka_unit_test(b64url_and_hex),
        cmocka_unit_test(log_escape_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
