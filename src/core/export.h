/*
 * core/export — a streamed export (conversations, usage rows): a 200 with chunked pages, each
 * page read by store work and sent, the next read only once the last one has been written to
 * the client, so that memory holds one page whatever the export's size. A client that leaves
 * stops it; a page that fails cuts the stream (its last line is then not a whole line).
 */
#ifndef GW_CORE_EXPORT_H
#define GW_CORE_EXPORT_H

#include <event2/buffer.h>
#include <event2/http.h>

struct gw_worker;
struct gw_store;

struct gw_export_ops {
    const char *what;          /* for the log: "conversations", "usage" */
    const char *content_type;  /* "application/x-ndjson", "text/csv" */
    /* On a store thread (SQLite: the worker's own, so keep a page to a few milliseconds):
     * append the next page to out; set *done when nothing follows; *items += what it added.
     * 0, or an error (the export ends there). */
    int (*page)(void *arg, struct gw_store *s, struct evbuffer *out, int *done, int64_t *items);
    void (*free)(void *arg);   /* arg's end (always called once) */
};

/* Answer req with 200 and stream the pages (arg is the export's from here on). */
void gw_export_start(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                     const struct gw_export_ops *ops, void *arg);

#endif
