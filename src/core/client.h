/*
 * core/client — the chat pipeline's only contact with its client: what it reads of the request
 * (the body, a few input headers) and how it answers (headers, a whole reply, or an SSE
 * stream with backpressure), and the client leaving. Two implementations: HTTP (an evhttp
 * request, client.c) and the in-process API (embed.c). Neither allocates on the way through
 * except where the HTTP one always did (an evbuffer per reply or chunk).
 *
 * Invariants:
 * - struct gw_client lives inside its call (no allocation); ctx is NULL once answered, and no
 *   op but abandon runs after that.
 * - Exactly one of reply, stream_end or abandon ends an exchange.
 * - gone and drained run from the event loop, never from inside an op.
 */
#ifndef GW_CORE_CLIENT_H
#define GW_CORE_CLIENT_H

#include <stddef.h>

struct evhttp_request;
struct gw_client;

typedef void (*gw_client_cb)(void *arg);
typedef void (*gw_client_header_fn)(void *arg, const char *name, const char *value);

struct gw_client_ops {
    /* The input header name (case-insensitive): a value (borrowed until the answer) or NULL;
     * *count (may be NULL) gets how many times it came. */
    const char *(*header)(struct gw_client *cl, const char *name, int *count);
    /* The request body, contiguous (borrowed until the answer; NULL with *len 0: none). */
    const char *(*body)(struct gw_client *cl, size_t *len);
    /* Output headers: add one (both copied), remove every one named, visit them in order. */
    void (*add_header)(struct gw_client *cl, const char *name, const char *value);
    void (*remove_header)(struct gw_client *cl, const char *name);
    void (*each_header)(struct gw_client *cl, gw_client_header_fn fn, void *arg);
    /* The whole answer: status, len bytes of body (NULL: no body) then tail (NUL-terminated). */
    void (*reply)(struct gw_client *cl, int status, const char *body, size_t len,
                  const char *tail);
    /* A stream: its head, one event (its name, NULL for a plain data event, and its data; the
     * implementation frames it; drained runs when the client took what was queued), the bytes
     * queued and not taken yet, its end. */
    void (*stream_start)(struct gw_client *cl, int status);
    void (*stream_data)(struct gw_client *cl, const char *event, const char *data, size_t len);
    size_t (*backlog)(struct gw_client *cl);
    void (*stream_end)(struct gw_client *cl);
    /* Report the client leaving through cl->gone (on) or stop reporting it (!on). */
    void (*watch)(struct gw_client *cl, int on);
    /* After gone: release what is left (started: a stream had begun). Called whether or not
     * the exchange was answered (ctx NULL); sets ctx NULL. */
    void (*abandon)(struct gw_client *cl, int started);
    /* The HTTP request behind cl, or NULL (subject sessions sign HTTP requests: HTTP only). */
    struct evhttp_request *(*http)(struct gw_client *cl);
};

struct gw_client {
    const struct gw_client_ops *ops;
    void *ctx;            /* the implementation's request; NULL once answered */
    void *conn;           /* the implementation's (HTTP: the connection, NULL once it closed) */
    gw_client_cb gone;    /* the client left (while watched) */
    gw_client_cb drained; /* the client took what was queued */
    void *arg;            /* for gone and drained */
    /* In-process only: a subject the host has authenticated, run as app client
     * subject_client's (instead of an API key); NULL for HTTP. Borrowed until the answer. */
    const char *subject_client, *subject;
};

/* The HTTP client: cl answers req (borrowed; evhttp frees it after the answer). */
extern const struct gw_client_ops gw_client_evhttp_ops;
void gw_client_evhttp_init(struct gw_client *cl, struct evhttp_request *req);

/* Answers built on the ops, byte for byte what http/reply.h sends. */
void gw_client_reply_headers(struct gw_client *cl, const char *content_type, const char *rid);
void gw_client_reply_retry_after(struct gw_client *cl, int seconds);
/* JSON text (NULL: an empty body) and a newline. */
void gw_client_reply_json_bytes(struct gw_client *cl, int status, const char *text, size_t len,
                                const char *rid);
void gw_client_reply_error(struct gw_client *cl, int status, const char *type, const char *code,
                           const char *message, const char *rid, int retry_after_s);

#endif
