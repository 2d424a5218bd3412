/* Unit tests for util/sse: event-stream parsing that does not depend on how bytes arrive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/buf.h"
#include "util/sse.h"

/* Events are recorded as "name|data\n" lines in one buffer, so two parses compare as strings. */
struct rec {
    struct gw_buf out;
    int n;
    int stop_after; /* return non-zero from the n-th event (0 = never) */
};

static int on_event(void *arg, const char *event, const char *data, size_t len)
{
    struct rec *r = arg;
    assert_int_equal(strlen(data), len);
    r->n++;
    if (gw_buf_printf(&r->out, "%s|%s\n", event, data) != 0)
        return -100;
    return r->stop_after && r->n == r->stop_after ? 42 : 0;
}

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof(*r));
    gw_buf_init(&r->out, 1 << 20);
}

/* Parse s in pieces of `step` bytes (0 = whole); returns the recording (caller frees). */
static char *parse_split(const char *s, size_t len, size_t step, size_t max_event, int *rc_out,
                         int *finish_out)
{
    struct gw_sse p;
    struct rec r;
    int rc = 0;

    rec_init(&r);
    gw_sse_init(&p, max_event, on_event, &r);
    if (step == 0)
        step = len ? len : 1;
    for (size_t i = 0; i < len && rc == 0; i += step)
        rc = gw_sse_feed(&p, s + i, len - i < step ? len - i : step);
    if (rc_out)
        *rc_out = rc;
    if (finish_out)
        *finish_out = gw_sse_finish(&p);
    gw_sse_cleanup(&p);
    char *out = gw_buf_take(&r.out);
    return out ? out : strdup("");
}

/* Parse s split into two pieces at every offset, and byte by byte: all equal the whole parse. */
static void check_all_splits(const char *s, const char *expected)
{
    size_t len = strlen(s);
    char *whole = parse_split(s, len, 0, 1 << 16, NULL, NULL);
    assert_string_equal(whole, expected);
    for (size_t cut = 0; cut <= len; cut++) {
        struct gw_sse p;
        struct rec r;
        rec_init(&r);
        gw_sse_init(&p, 1 << 16, on_event, &r);
        assert_int_equal(gw_sse_feed(&p, s, cut), 0);
        assert_int_equal(gw_sse_feed(&p, s + cut, len - cut), 0);
        gw_sse_cleanup(&p);
        if (strcmp(r.out.data ? r.out.data : "", whole) != 0)
            fail_msg("split at %zu: got [%s] want [%s]", cut, r.out.data ? r.out.data : "", whole);
        gw_buf_cleanup(&r.out);
    }
    char *bytes = parse_split(s, len, 1, 1 << 16, NULL, NULL);
    assert_string_equal(bytes, whole);
    free(bytes);
    free(whole);
}

static void openai_stream_any_split(void **state)
{
    const char *s = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"
                    "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"
                    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n"
                    "data: [DONE]\n\n";
    check_all_splits(s, "|{\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n"
                        "|{\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n"
                        "|{\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n"
                        "|[DONE]\n");
}

static void anthropic_named_events_any_split(void **state)
{
    const char *s = "event: message_start\ndata: {\"type\":\"message_start\"}\n\n"
                    "event: ping\ndata: {\"type\": \"ping\"}\n\n"
                    "event: content_block_delta\ndata: {\"delta\":{\"text\":\"a:b\"}}\n\n"
                    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    check_all_splits(s, "message_start|{\"type\":\"message_start\"}\n"
                        "ping|{\"type\": \"ping\"}\n"
                        "content_block_delta|{\"delta\":{\"text\":\"a:b\"}}\n"
                        "message_stop|{\"type\":\"message_stop\"}\n");
}

static void crlf_and_cr_line_ends_any_split(void **state)
{
    check_all_splits("data: one\r\n\r\ndata: two\r\rdata: three\n\n",
                     "|one\n|two\n|three\n");
}

static void multiline_data_comments_and_fields(void **state)
{
    check_all_splits(": keep-alive comment\n"
                     "id: 7\nretry: 1000\n"
                     "data:first\ndata: second\ndata\n\n"
                     "event: x\n\n"  /* no data: not dispatched, name dropped */
                     "data: after\n\n",
                     "|first\nsecond\n\n|after\n");
}

static void event_name_resets_between_events(void **state)
{
    check_all_splits("event: a\ndata: 1\n\ndata: 2\n\n", "a|1\n|2\n");
}

static void over_cap_is_refused(void **state)
{
    char big[300];
    memset(big, 'x', sizeof(big));
    memcpy(big, "data: ", 6);
    big[sizeof(big) - 2] = '\n';
    big[sizeof(big) - 1] = '\n';
    int rc = 0;
    char *out = parse_split(big, sizeof(big), 7, 100, &rc, NULL);
    assert_int_equal(rc, GW_ETOOBIG);
    free(out);
    /* many small data lines adding up past the cap */
    char lines[600];
    size_t o = 0;
    for (int i = 0; i < 60; i++)
        o += (size_t)snprintf(lines + o, sizeof(lines) - o, "data: 123\n");
    out = parse_split(lines, o, 0, 100, &rc, NULL);
    assert_int_equal(rc, GW_ETOOBIG);
    free(out);
}

/* Found by fuzz_sse: an empty piece between a CR and its LF made the LF a second line end (a
 * blank line, dispatching early); a line over the cap was refused only when it came split. */
static void empty_pieces_and_long_lines_do_not_depend_on_splits(void **state)
{
    static const char *const pieces[] = {"data: a\r", "", "\ndata: b\n\n"};
    struct gw_sse p;
    struct rec r;
    rec_init(&r);
    gw_sse_init(&p, 1024, on_event, &r);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(gw_sse_feed(&p, pieces[i], strlen(pieces[i])), 0);
    gw_sse_cleanup(&p);
    assert_string_equal(r.out.data, "|a\nb\n");
    gw_buf_cleanup(&r.out);

    char line[300];
    size_t n = (size_t)snprintf(line, sizeof(line), ": "); /* a comment, but over the cap */
    memset(line + n, 'x', 200);
    n += 200;
    n += (size_t)snprintf(line + n, sizeof(line) - n, "\ndata: 1\n\n");
    for (size_t step = 0; step <= 1; step++) {
        int rc = 0;
        char *out = parse_split(line, n, step, 100, &rc, NULL);
        assert_int_equal(rc, GW_ETOOBIG);
        free(out);
    }
}

static void callback_stop_is_returned(void **state)
{
    struct gw_sse p;
    struct rec r;
    const char *s = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    rec_init(&r);
    r.stop_after = 2;
    gw_sse_init(&p, 1024, on_event, &r);
    assert_int_equal(gw_sse_feed(&p, s, strlen(s)), 42);
    assert_int_equal(r.n, 2);
    gw_sse_cleanup(&p);
    gw_buf_cleanup(&r.out);
}

static void finish_reports_truncation(void **state)
{
    int fin = -1;
    char *out = parse_split("data: complete\n\n", 16, 0, 1024, NULL, &fin);
    assert_int_equal(fin, 0);
    free(out);
    out = parse_split("data: complete\n\ndata: cut", 25, 3, 1024, NULL, &fin);
    assert_int_equal(fin, 1);
    assert_string_equal(out, "|complete\n");
    free(out);
    out = parse_split("data: no blank line\n", 20, 0, 1024, NULL, &fin);
    assert_int_equal(fin, 1);
    assert_string_equal(out, "");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(openai_stream_any_split),
        cmocka_unit_test(anthropic_named_events_any_split),
        cmocka_unit_test(crlf_and_cr_line_ends_any_split),
        cmocka_unit_test(multiline_data_comments_and_fields),
        cmocka_unit_test(event_name_resets_between_events),
        cmocka_unit_test(over_cap_is_refused),
        cmocka_unit_test(empty_pieces_and_long_lines_do_not_depend_on_splits),
        cmocka_unit_test(callback_stop_is_returned),
        cmocka_unit_test(finish_reports_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
