/* Unit tests for the library's log routing: nothing reaches stderr, libevent's own warnings
 * included (libevent writes them to stderr unless given a callback). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>
#include <fcntl.h>
#include <unistd.h>

#include "llmgw.h"

struct capture {
    int lines;
    char last[512];
};

static void capture_line(void *arg, int level, const char *line)
{
    struct capture *c = arg;
    c->lines++;
    snprintf(c->last, sizeof(c->last), "%s", line);
}

static void noop(evutil_socket_t fd, short what, void *arg) {}

/* epoll refuses /dev/null: libevent warns "Epoll ADD(...) on fd ... failed". */
static void libevent_warning_goes_to_the_handler(void **state)
{
    struct capture cap = {0};
    char err_path[] = "/tmp/llmgw-test-log-XXXXXX";
    int err_fd = mkstemp(err_path);
    assert_true(err_fd >= 0);
    unlink(err_path);
    fflush(stderr);
    int saved = dup(2);
    assert_int_equal(dup2(err_fd, 2), 2);

    llmgw_set_log_handler(capture_line, &cap, LLMGW_LOG_WARN);
    struct event_config *ec = event_config_new();
    assert_int_equal(event_config_avoid_method(ec, "poll"), 0);
    assert_int_equal(event_config_avoid_method(ec, "select"), 0);
    struct event_base *base = event_base_new_with_config(ec);
    assert_non_null(base);
    assert_string_equal(event_base_get_method(base), "epoll");
    int fd = open("/dev/null", O_RDONLY);
    struct event *ev = event_new(base, fd, EV_READ, noop, NULL);
    int rc = event_add(ev, NULL);
    event_free(ev);
    close(fd);
    event_base_free(base);
    event_config_free(ec);
    llmgw_set_log_handler(NULL, NULL, LLMGW_LOG_WARN);

    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    off_t written = lseek(err_fd, 0, SEEK_END);
    close(err_fd);
    assert_int_equal(rc, -1);
    assert_int_equal(written, 0); /* nothing on stderr */
    assert_int_equal(cap.lines, 1);
    assert_non_null(strstr(cap.last, "libevent: Epoll ADD"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(libevent_warning_goes_to_the_handler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
