/*
 * util/sse — incremental text/event-stream parser (WHATWG rules); see sse.h.
 *
 * Invariant: the result does not depend on how the input is split. A CR at the end of one
 * chunk followed by LF at the start of the next is one line end (last_was_cr).
 */
#include "util/sse.h"

#include <string.h>

void gw_sse_init(struct gw_sse *p, size_t max_event, gw_sse_event_cb cb, void *arg)
{
    memset(p, 0, sizeof(*p));
    gw_buf_init(&p->line, max_event);
    gw_buf_init(&p->event, 256);
    gw_buf_init(&p->data, max_event);
    p->cb = cb;
    p->arg = arg;
}

void gw_sse_cleanup(struct gw_sse *p)
{
    gw_buf_cleanup(&p->line);
    gw_buf_cleanup(&p->event);
    gw_buf_cleanup(&p->data);
}

static int dispatch(struct gw_sse *p)
{
    int rc = 0;
    if (p->has_data)
        rc = p->cb(p->arg, p->event.data ? p->event.data : "", p->data.data ? p->data.data : "",
                   p->data.len);
    gw_buf_reset(&p->data);
    gw_buf_reset(&p->event);
    p->has_data = 0;
    return rc;
}

static int field(struct gw_sse *p, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    size_t nlen = colon ? (size_t)(colon - line) : len;
    const char *val = colon ? colon + 1 : line + len;
    size_t vlen = colon ? len - nlen - 1 : 0;

    if (nlen == 0)
        return 0; /* comment */
    if (vlen > 0 && val[0] == ' ') {
        val++;
        vlen--;
    }
    if (nlen == 4 && memcmp(line, "data", 4) == 0) {
        int rc = 0;
        if (p->has_data)
            rc = gw_buf_add(&p->data, "\n", 1);
        if (rc == 0)
            rc = gw_buf_add(&p->data, val, vlen);
        p->has_data = 1;
        return rc;
    }
    if (nlen == 5 && memcmp(line, "event", 5) == 0) {
        gw_buf_reset(&p->event);
        return gw_buf_add(&p->event, val, vlen);
    }
    return 0; /* id, retry and unknown fields are ignored */
}

static int line_done(struct gw_sse *p, const char *line, size_t len)
{
    return len == 0 ? dispatch(p) : field(p, line, len);
}

int gw_sse_feed(struct gw_sse *p, const char *buf, size_t n)
{
    size_t i = 0;

    if (n == 0) /* nothing: a CR that ended the last piece still waits for its LF */
        return 0;
    if (p->last_was_cr && buf[0] == '\n')
        i = 1;
    p->last_was_cr = 0;
    while (i < n) {
        const char *start = buf + i;
        size_t rest = n - i, k = 0;
        while (k < rest && start[k] != '\n' && start[k] != '\r')
            k++;
        if (k == rest) { /* incomplete line: keep it */
            return gw_buf_add(&p->line, start, k);
        }
        int rc;
        if (p->line.len > 0) {
            if ((rc = gw_buf_add(&p->line, start, k)) != 0)
                return rc;
            rc = line_done(p, p->line.data, p->line.len);
            gw_buf_reset(&p->line);
        } else {
            /* the cap holds for a line met whole too, not only for one kept across pieces */
            rc = k > p->line.max ? GW_ETOOBIG : line_done(p, start, k);
        }
        if (rc != 0)
            return rc;
        i += k + 1;
        if (start[k] == '\r') {
            if (i < n && buf[i] == '\n')
                i++;
            else if (i == n)
                p->last_was_cr = 1;
        }
    }
    return 0;
}

int gw_sse_finish(struct gw_sse *p) { return p->line.len > 0 || p->has_data; }
