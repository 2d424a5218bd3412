/*
 * http/server — worker threads, each an event loop with its own evhttp and curl multi.
 *
 * Invariants: a worker's objects are touched only by its own thread, except the stop event,
 * which another thread activates (libevent is set up with pthreads locking for that). Sockets
 * are bound in gw_http_server_new, on the caller's thread, so an address error is reported
 * before any thread starts.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/log.h"
#include "util/mem.h"

struct gw_http_worker {
    struct gw_http_server *srv;
    int index;
    evutil_socket_t fd;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct gw_upstream *upstream;
    struct event *stop_ev;
    struct event *grace_ev;
    void *wdata;
    int draining;
    int rc;
    pthread_t thread;
    int started;
};

struct gw_http_server {
    struct gw_http_opts opts;
    struct gw_http_app app;
    int nworkers;
    struct gw_http_worker *workers;
    int port;
};

static int bind_socket(const char *host, int port, evutil_socket_t *out, int *bound_port,
                       struct gw_errbuf *eb)
{
    struct addrinfo hints, *res = NULL;
    char portstr[16];
    int one = 1;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof(portstr), "%d", port);
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0) {
        gw_errbuf_set(eb, "cannot resolve listen address %s: %s", host, gai_strerror(gai));
        return GW_EINVAL;
    }
    evutil_socket_t fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        gw_errbuf_set(eb, "socket: %s", strerror(errno));
        freeaddrinfo(res);
        return GW_EIO;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        gw_errbuf_set(eb, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        freeaddrinfo(res);
        close(fd);
        return GW_EIO;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            *bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            *bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    *out = fd;
    return 0;
}

static void init_threads(void) { evthread_use_pthreads(); }

/* Draining and nothing in flight: leave the loop once the last replies are flushed. libevent
 * writes them from its buffers after the application is done with a request, so give it a
 * short flush window (bounded) instead of closing connections with data still queued. */
static void maybe_exit(struct gw_http_worker *w)
{
    if (w->draining && w->srv->app.inflight(w->wdata) == 0) {
        struct timeval flush = {0, 200 * 1000};
        event_base_loopexit(w->base, &flush);
    }
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    struct gw_http_worker *w = arg;
    (void)fd;
    (void)what;
    GW_LOG_WARN("server", "worker %d: grace period over, ending %d request(s)", w->index,
                w->srv->app.inflight(w->wdata));
    w->srv->app.abort_all(w->wdata);
    event_base_loopexit(w->base, NULL);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct gw_http_worker *w = arg;
    (void)fd;
    (void)what;
    if (w->draining)
        return;
    w->draining = 1;
    if (w->bound != NULL) {
        evhttp_del_accept_socket(w->http, w->bound); /* closes the listening fd */
        w->bound = NULL;
        w->fd = -1;
    }
    int ms = w->srv->opts.shutdown_grace_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(w->grace_ev, &tv);
    maybe_exit(w);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct gw_http_worker *w = arg;
    w->srv->app.handle(w->wdata, req);
}

static void *worker_main(void *arg)
{
    struct gw_http_worker *w = arg;
    struct gw_http_server *s = w->srv;

    w->rc = s->app.worker_init(s->app.arg, w, &w->wdata);
    if (w->rc != 0) {
        GW_LOG_ERROR("server", "worker %d failed to start: %s", w->index, gw_strerror(w->rc));
        return NULL;
    }
    event_base_dispatch(w->base);
    /* Connections still open (idle keep-alive) are closed with the evhttp. */
    evhttp_free(w->http);
    w->http = NULL;
    s->app.worker_cleanup(s->app.arg, w->wdata);
    w->wdata = NULL;
    return NULL;
}

static int worker_prepare(struct gw_http_server *s, struct gw_http_worker *w, struct gw_errbuf *eb)
{
    const struct gw_http_opts *o = &s->opts;

    /* no EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST: a deferred epoll_ctl for a socket closed in this
     * loop turn would act on whatever another worker has since opened under the same number */
    w->base = event_base_new();
    if (w->base == NULL)
        return GW_ENOMEM;
    w->http = evhttp_new(w->base);
    w->stop_ev = event_new(w->base, -1, 0, on_stop, w);
    w->grace_ev = evtimer_new(w->base, on_grace, w);
    if (w->http == NULL || w->stop_ev == NULL || w->grace_ev == NULL)
        return GW_ENOMEM;
    int rc = gw_upstream_new(w->base, &w->upstream);
    if (rc != 0)
        return rc;
    /* evhttp's own limit answers with its own 413 page; keep it well above ours so that the
     * application can answer oversize bodies with a proper JSON error. */
    size_t hard = o->max_body * 2 + 65536;
    evhttp_set_max_body_size(w->http, (ev_ssize_t)hard);
    evhttp_set_max_headers_size(w->http, (ev_ssize_t)o->max_headers);
    evhttp_set_timeout(w->http, (o->read_timeout_ms + 999) / 1000);
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS |
                                            EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT);
    evhttp_set_default_content_type(w->http, "application/json");
    evhttp_set_gencb(w->http, on_request, w);
    int port = 0;
    rc = bind_socket(o->host, o->port == 0 && s->port != 0 ? s->port : o->port, &w->fd, &port, eb);
    if (rc != 0)
        return rc;
    if (s->port == 0)
        s->port = port;
    w->bound = evhttp_accept_socket_with_handle(w->http, w->fd);
    if (w->bound == NULL)
        return GW_EIO;
    return 0;
}

int gw_http_server_new(const struct gw_http_opts *o, const struct gw_http_app *app,
                       struct gw_http_server **out, struct gw_errbuf *eb)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct gw_http_server *s = NULL;
    int rc = GW_ENOMEM;

    *out = NULL;
    pthread_once(&once, init_threads);
    if (o->workers < 1 || o->workers > 1024)
        return GW_EINVAL;
    s = gw_calloc(1, sizeof(*s));
    if (s == NULL)
        goto out;
    s->opts = *o;
    s->app = *app;
    s->workers = gw_calloc((size_t)o->workers, sizeof(*s->workers));
    if (s->workers == NULL)
        goto out;
    s->nworkers = o->workers;
    for (int i = 0; i < s->nworkers; i++) {
        s->workers[i].srv = s;
        s->workers[i].index = i;
        s->workers[i].fd = -1;
    }
    for (int i = 0; i < s->nworkers; i++) {
        if ((rc = worker_prepare(s, &s->workers[i], eb)) != 0)
            goto out;
    }
    *out = s;
    s = NULL;
    rc = 0;
out:
    gw_http_server_free(s);
    return rc;
}

int gw_http_server_run(struct gw_http_server *s)
{
    int rc = 0;

    for (int i = 0; i < s->nworkers; i++) {
        struct gw_http_worker *w = &s->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            rc = GW_EIO;
            gw_http_server_stop(s);
            break;
        }
        w->started = 1;
    }
    for (int i = 0; i < s->nworkers; i++) {
        struct gw_http_worker *w = &s->workers[i];
        if (!w->started)
            continue;
        pthread_join(w->thread, NULL);
        w->started = 0;
        if (rc == 0 && w->rc != 0)
            rc = w->rc;
    }
    return rc;
}

void gw_http_server_stop(struct gw_http_server *s)
{
    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i].stop_ev != NULL)
            event_active(s->workers[i].stop_ev, EV_READ, 0);
}

void gw_http_server_free(struct gw_http_server *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->nworkers; i++) {
        struct gw_http_worker *w = &s->workers[i];
        if (w->http != NULL)
            evhttp_free(w->http); /* also closes a bound listener */
        else if (w->fd >= 0 && w->bound == NULL)
            close(w->fd);
        gw_upstream_free(w->upstream);
        if (w->stop_ev != NULL)
            event_free(w->stop_ev);
        if (w->grace_ev != NULL)
            event_free(w->grace_ev);
        if (w->base != NULL)
            event_base_free(w->base);
    }
    gw_free(s->workers);
    gw_free(s);
}

int gw_http_server_port(const struct gw_http_server *s) { return s->port; }
struct event_base *gw_http_worker_base(struct gw_http_worker *w) { return w->base; }
struct gw_upstream *gw_http_worker_upstream(struct gw_http_worker *w) { return w->upstream; }
int gw_http_worker_index(const struct gw_http_worker *w) { return w->index; }
int gw_http_worker_is_draining(const struct gw_http_worker *w) { return w->draining; }
void gw_http_worker_request_done(struct gw_http_worker *w) { maybe_exit(w); }
