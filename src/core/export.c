/* core/export — see export.h. */
#include "core/export.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <string.h>

#include "core/gw_int.h"
#include "http/reply.h"
#include "store/jobs.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/util.h"

struct gw_export {
    struct gw_store_job job;
    struct gw_worker *w;
    struct evhttp_request *req;   /* NULL once the client left */
    struct evhttp_connection *evcon;
    char rid[72];
    const struct gw_export_ops *ops;
    void *arg;
    struct evbuffer *page;
    int rc, done, gone, inflight;
    int64_t items;
};

static void export_free(struct gw_export *e)
{
    if (e->evcon != NULL && !e->gone)
        evhttp_connection_set_closecb(e->evcon, NULL, NULL);
    e->ops->free(e->arg);
    if (e->page != NULL)
        evbuffer_free(e->page);
    gw_free(e);
}

static void page_run(struct gw_store_job *j, struct gw_store *s)
{
    struct gw_export *e = (struct gw_export *)j;
    e->rc = e->ops->page(e->arg, s, e->page, &e->done, &e->items);
}

static void page_done(struct gw_store_job *j);

static void next_page(struct gw_export *e)
{
    e->inflight = 1;
    e->job.run = page_run;
    e->job.done = page_done;
    e->job.writes = 0;
    e->job.heavy = 1;
    gw_store_submit(e->w->exec, &e->job);
}

static void page_written(struct evhttp_connection *evcon, void *arg)
{
    struct gw_export *e = arg;
    (void)evcon;
    if (!e->gone)
        next_page(e);
}

static void finish(struct gw_export *e, int ok)
{
    if (!e->gone && e->req != NULL) {
        if (evbuffer_get_length(e->page) > 0)
            evhttp_send_reply_chunk(e->req, e->page);
        evhttp_send_reply_end(e->req);
    }
    if (ok)
        GW_LOG_INFO("export", "req=%s %s export done: %lld", e->rid, e->ops->what,
                    (long long)e->items);
    else
        GW_LOG_ERROR("export", "req=%s %s export failed after %lld: %s", e->rid, e->ops->what,
                     (long long)e->items, gw_strerror(e->rc));
    export_free(e);
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    struct gw_export *e = arg;
    (void)evcon;
    e->gone = 1;
    /* libevent detached the unfinished request from the dying connection; ending it frees it */
    if (e->req != NULL)
        evhttp_send_reply_end(e->req);
    e->req = NULL;
    if (e->inflight) { /* a page is being read (items with it): its done frees the export */
        GW_LOG_INFO("export", "req=%s the client left the %s export", e->rid, e->ops->what);
        return;
    }
    GW_LOG_INFO("export", "req=%s the client left the %s export after %lld", e->rid,
                e->ops->what, (long long)e->items);
    export_free(e);
}

static void page_done(struct gw_store_job *j)
{
    struct gw_export *e = (struct gw_export *)j;
    e->inflight = 0;
    if (e->gone) {
        export_free(e);
        return;
    }
    if (e->rc != 0 || e->done) {
        finish(e, e->rc == 0);
        return;
    }
    /* the next page once this one is out (a slow reader holds one page, not the export) */
    evhttp_send_reply_chunk_with_cb(e->req, e->page, page_written, e);
}

void gw_export_start(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                     const struct gw_export_ops *ops, void *arg)
{
    struct gw_export *e = gw_calloc(1, sizeof(*e));
    if (e == NULL || (e->page = evbuffer_new()) == NULL) {
        gw_free(e);
        ops->free(arg);
        gw_reply_error(req, 503, "service_unavailable", "overloaded", "out of memory", rid, 1);
        return;
    }
    e->w = w;
    e->req = req;
    e->ops = ops;
    e->arg = arg;
    gw_strlcpy(e->rid, rid, sizeof(e->rid));
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ops->content_type);
    evhttp_add_header(h, "X-Request-Id", rid);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply_start(req, 200, "OK");
    e->evcon = evhttp_request_get_connection(req);
    evhttp_connection_set_closecb(e->evcon, on_close, e);
    next_page(e);
}
