/*
 * http/server — the worker threads. Each worker owns an event_base, an evhttp accepting on its
 * own SO_REUSEPORT socket bound to the shared address (the kernel spreads connections), and a
 * gw_upstream (curl multi) on the same base. Requests are handed to the application through
 * struct gw_http_app; nothing here knows about LLMs.
 *
 * Shutdown: gw_http_server_stop (any thread) makes every worker close its listener, wait until
 * the application reports no request in flight (or the grace period ends, then abort_all), and
 * leave its loop. gw_http_server_run returns when every worker has left.
 */
#ifndef GW_HTTP_SERVER_H
#define GW_HTTP_SERVER_H

#include <event2/event.h>
#include <event2/http.h>
#include <stddef.h>

#include "http/upstream.h"
#include "util/err.h"

struct gw_http_worker;

struct gw_http_app {
    /* On the worker thread before it serves: create per-worker state (*wdata). Non-zero fails
     * the start-up. */
    int (*worker_init)(void *arg, struct gw_http_worker *w, void **wdata);
    /* On the worker thread after its loop ended. */
    void (*worker_cleanup)(void *arg, void *wdata);
    /* Handle one request (the application replies now or later on this thread). */
    void (*handle)(void *wdata, struct evhttp_request *req);
    /* Requests still in flight (drain waits for 0). */
    int (*inflight)(void *wdata);
    /* Grace period over: end every in-flight request now. */
    void (*abort_all)(void *wdata);
    void *arg;
};

struct gw_http_opts {
    const char *host;
    int port;
    int workers;           /* >= 1 */
    size_t max_body;       /* application limit; evhttp gets a hard cap above it */
    size_t max_headers;
    int read_timeout_ms;   /* idle timeout, and a request must arrive whole within it */
    int shutdown_grace_ms;
};

struct gw_http_server;

/* Bind every worker's socket (so a bad address fails here) and prepare the workers. */
GW_NODISCARD int gw_http_server_new(const struct gw_http_opts *o, const struct gw_http_app *app,
                                    struct gw_http_server **out, struct gw_errbuf *eb);
/* Run the workers; blocks until they all stopped. Returns 0 or the first worker error. */
GW_NODISCARD int gw_http_server_run(struct gw_http_server *s);
/* Ask the server to stop (thread-safe, not async-signal-safe). */
void gw_http_server_stop(struct gw_http_server *s);
void gw_http_server_free(struct gw_http_server *s);
/* The port actually bound (useful with port 0 and one worker). */
int gw_http_server_port(const struct gw_http_server *s);

struct event_base *gw_http_worker_base(struct gw_http_worker *w);
struct gw_upstream *gw_http_worker_upstream(struct gw_http_worker *w);
int gw_http_worker_index(const struct gw_http_worker *w);
/* The application finished a request: lets a draining worker check whether it may exit. */
void gw_http_worker_request_done(struct gw_http_worker *w);
/* Is this worker draining (shutting down)? */
int gw_http_worker_is_draining(const struct gw_http_worker *w);

#endif
