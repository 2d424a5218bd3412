/*
 * util/sse — incremental parser for text/event-stream (the WHATWG EventSource rules).
 *
 * Bytes arrive in arbitrary pieces (curl write callbacks); the parser buffers at most one
 * incomplete line/event (bounded by max_event bytes) and calls the callback once per dispatched
 * event. Lines end in LF, CRLF or CR. "data:" lines are joined with "\n"; a single space after
 * the colon is dropped; comment lines (":") are ignored; "event:" sets the event name (empty
 * when absent); "id:" and "retry:" are accepted and ignored. An event is dispatched on a blank
 * line when it has data. Result is independent of how the input is split.
 */
#ifndef GW_UTIL_SSE_H
#define GW_UTIL_SSE_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"

/* Called per event. event is "" when unnamed; data is NUL-terminated (len excludes NUL).
 * Both are borrowed for the duration of the call. Return 0 to go on; any non-zero value stops
 * parsing and is returned from gw_sse_feed. */
typedef int (*gw_sse_event_cb)(void *arg, const char *event, const char *data, size_t len);

struct gw_sse {
    struct gw_buf line;  /* the incomplete current line */
    struct gw_buf event; /* current event name */
    struct gw_buf data;  /* accumulated data lines */
    int has_data;
    int last_was_cr; /* previous chunk ended in CR: swallow a leading LF */
    gw_sse_event_cb cb;
    void *arg;
};

/* Prepare a parser; max_event caps the size of one line and of one event's data. */
void gw_sse_init(struct gw_sse *p, size_t max_event, gw_sse_event_cb cb, void *arg);
void gw_sse_cleanup(struct gw_sse *p);
/* Feed n bytes. Returns 0, GW_ETOOBIG (an event over the cap), GW_ENOMEM, or the callback's
 * non-zero value. After an error the parser must not be fed again. */
GW_NODISCARD int gw_sse_feed(struct gw_sse *p, const char *buf, size_t n);
/* End of stream: a final event without its blank line is NOT dispatched (per the spec), but
 * a pending partial line counts as truncation. Returns 1 if unterminated data was pending
 * (the stream was cut mid-event), else 0. */
int gw_sse_finish(struct gw_sse *p);

#endif
