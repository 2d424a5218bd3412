/*
 * core/client — the HTTP implementation of the pipeline's client (an evhttp request), and the
 * answers built on any client's ops. See client.h.
 *
 * Invariant: what an HTTP client receives is what http/reply.c and the pipeline sent before
 * this interface existed, byte for byte (same headers in the same order, same reason phrases),
 * but that a stream's Date now comes before evhttp's Transfer-Encoding.
 */
#include "core/client.h"

#include <sys/queue.h> /* TAILQ_FOREACH over libevent's header lists */

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/reply.h"
#include "util/json.h"
#include "util/mem.h"

static struct evhttp_request *req_of(struct gw_client *cl) { return cl->ctx; }

static const char *ev_header(struct gw_client *cl, const char *name, int *count)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req_of(cl));
    struct evkeyval *kv;
    const char *value = NULL;
    int seen = 0;

    TAILQ_FOREACH(kv, in, next)
        if (strcasecmp(kv->key, name) == 0) {
            if (value == NULL || count != NULL)
                value = kv->value; /* counting: the last one (as before); else the first */
            seen++;
            if (count == NULL)
                break;
        }
    if (count != NULL)
        *count = seen;
    return value;
}

static const char *ev_body(struct gw_client *cl, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req_of(cl));
    *len = evbuffer_get_length(in);
    const char *p = (const char *)evbuffer_pullup(in, -1);
    if (p == NULL)
        *len = 0;
    return p;
}

static void ev_add_header(struct gw_client *cl, const char *name, const char *value)
{
    evhttp_add_header(evhttp_request_get_output_headers(req_of(cl)), name, value);
}

static void ev_remove_header(struct gw_client *cl, const char *name)
{
    evhttp_remove_header(evhttp_request_get_output_headers(req_of(cl)), name);
}

static void ev_each_header(struct gw_client *cl, gw_client_header_fn fn, void *arg)
{
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, evhttp_request_get_output_headers(req_of(cl)), next)
        fn(arg, kv->key, kv->value);
}

static void ev_reply(struct gw_client *cl, int status, const char *body, size_t len,
                     const char *tail)
{
    gw_reply_send(req_of(cl), status, body, len, tail);
}

static void ev_stream_start(struct gw_client *cl, int status)
{
    gw_reply_add_date(req_of(cl)); /* as evhttp would, without its gmtime and snprintf */
    evhttp_send_reply_start(req_of(cl), status, gw_http_reason(status));
}

static void on_drained(struct evhttp_connection *evcon, void *arg)
{
    struct gw_client *cl = arg;
    (void)evcon;
    if (cl->drained != NULL)
        cl->drained(cl->arg);
}

static void ev_stream_data(struct gw_client *cl, const char *event, const char *data, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return;
    if (event != NULL) {
        evbuffer_add(b, "event: ", 7);
        evbuffer_add(b, event, strlen(event));
        evbuffer_add(b, "\n", 1);
    }
    evbuffer_add(b, "data: ", 6);
    evbuffer_add(b, data, len);
    evbuffer_add(b, "\n\n", 2);
    evhttp_send_reply_chunk_with_cb(req_of(cl), b, on_drained, cl);
    evbuffer_free(b);
}

static size_t ev_backlog(struct gw_client *cl)
{
    struct bufferevent *bev = cl->conn ? evhttp_connection_get_bufferevent(cl->conn) : NULL;
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void ev_stream_end(struct gw_client *cl) { evhttp_send_reply_end(req_of(cl)); }

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    struct gw_client *cl = arg;
    (void)evcon;
    cl->gone(cl->arg);
}

static void ev_watch(struct gw_client *cl, int on)
{
    if (cl->conn != NULL)
        evhttp_connection_set_closecb(cl->conn, on ? on_close : NULL, on ? cl : NULL);
}

/* libevent detached the request from the dying connection; finishing it frees it. */
static void ev_abandon(struct gw_client *cl, int started)
{
    cl->conn = NULL;
    if (cl->ctx == NULL)
        return;
    if (started)
        evhttp_send_reply_end(req_of(cl));
    else
        evhttp_send_reply(req_of(cl), 499, "Client Closed", NULL);
    cl->ctx = NULL;
}

static struct evhttp_request *ev_http(struct gw_client *cl) { return req_of(cl); }

const struct gw_client_ops gw_client_evhttp_ops = {
    .header = ev_header,
    .body = ev_body,
    .add_header = ev_add_header,
    .remove_header = ev_remove_header,
    .each_header = ev_each_header,
    .reply = ev_reply,
    .stream_start = ev_stream_start,
    .stream_data = ev_stream_data,
    .backlog = ev_backlog,
    .stream_end = ev_stream_end,
    .watch = ev_watch,
    .abandon = ev_abandon,
    .http = ev_http,
};

void gw_client_evhttp_init(struct gw_client *cl, struct evhttp_request *req)
{
    memset(cl, 0, sizeof(*cl));
    cl->ops = &gw_client_evhttp_ops;
    cl->ctx = req;
    cl->conn = evhttp_request_get_connection(req);
}

/* ---- answers on any client ---- */

void gw_client_reply_headers(struct gw_client *cl, const char *content_type, const char *rid)
{
    cl->ops->remove_header(cl, "Content-Type");
    cl->ops->add_header(cl, "Content-Type", content_type);
    if (rid != NULL && rid[0] != '\0')
        cl->ops->add_header(cl, "X-Request-Id", rid);
}

void gw_client_reply_retry_after(struct gw_client *cl, int seconds)
{
    if (seconds <= 0)
        return;
    char ra[24];
    snprintf(ra, sizeof(ra), "%d", seconds);
    cl->ops->add_header(cl, "Retry-After", ra);
}

void gw_client_reply_json_bytes(struct gw_client *cl, int status, const char *text, size_t len,
                                const char *rid)
{
    gw_client_reply_headers(cl, "application/json", rid);
    cl->ops->reply(cl, status, text, text != NULL ? len : 0, "\n");
}

void gw_client_reply_error(struct gw_client *cl, int status, const char *type, const char *code,
                           const char *message, const char *rid, int retry_after_s)
{
    json_t *body = gw_reply_anthropic(cl->ops->http(cl))
                       ? gw_error_body_anthropic(status, code, message, rid)
                       : gw_error_body(type, code, message, rid);
    char *s = body != NULL ? gw_json_dumps(body, GW_JSON_OUT_PRECISION) : NULL;

    gw_client_reply_retry_after(cl, retry_after_s);
    if (body == NULL) {
        gw_client_reply_headers(cl, "application/json", rid);
        cl->ops->reply(cl, status, NULL, 0, "");
    } else {
        gw_client_reply_json_bytes(cl, status, s, s != NULL ? strlen(s) : 0, rid);
    }
    gw_free(s);
    json_decref(body);
}
