/*
 * http/server — worker threads, each an event loop with its own evhttp and curl multi.
 *
 * Invariants: a worker's objects are touched only by its own thread, except the stop event,
 * which another thread activates (libevent is set up with pthreads locking for that). Sockets
 * are bound in gw_http_server_new, on the caller's thread, so an address error is reported
 * before any thread starts.
 *
 * Request deadlines: evhttp's own timeout is an idle one (a client dripping a byte a second
 * would hold a connection forever), so each worker also gives every connection an absolute
 * deadline for receiving a request (opts.read_timeout_ms), armed when the connection opens and
 * when an answer has been sent, disarmed when a whole request has arrived. At the deadline the
 * socket is shut down and evhttp ends the connection as for any lost client. evhttp owns the
 * connection and says nothing when it frees one, so a struct conn never touches the
 * bufferevent after its first turn: it is found by file descriptor and checked against the
 * socket's cookie (SO_COOKIE), which a reused descriptor does not share.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
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
    struct conn **byfd; /* the connections this worker accepted, by descriptor */
    size_t nbyfd;
    struct conn *fresh;  /* accepted this turn, descriptor not known yet */
    struct event *fresh_ev;
    struct event *resume_ev; /* accepting again after a pause (no descriptor free) */
};

#define ACCEPT_PAUSE_MS 100

/* The worker whose loop runs on this thread (the listener's error callback gets evhttp's
 * argument, not ours). */
static _Thread_local struct gw_http_worker *this_worker;

/* One accepted connection's request deadline (see the header comment). */
struct conn {
    struct gw_http_worker *w;
    const struct bufferevent *bev; /* identity only, never dereferenced after the first turn */
    evutil_socket_t fd;
    uint64_t cookie; /* the socket's SO_COOKIE: unique while the system runs */
    struct event *deadline;
    struct conn *next; /* in w->fresh */
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

/* ---- request deadlines ---- */

static void conn_free(struct conn *c)
{
    if (c == NULL)
        return;
    if (c->fd >= 0 && (size_t)c->fd < c->w->nbyfd && c->w->byfd[c->fd] == c)
        c->w->byfd[c->fd] = NULL;
    event_free(c->deadline);
    gw_free(c);
}

static void conn_arm(struct conn *c)
{
    int ms = c->w->srv->opts.read_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->deadline, &tv);
}

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

/* Which socket a descriptor holds now (0: none, or not known). A socket option rather than
 * fstat: the descriptor may since be another worker's, and this touches nothing of it. */
static uint64_t fd_cookie(evutil_socket_t fd)
{
    uint64_t cookie = 0;
    socklen_t len = sizeof(cookie);
    return getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) == 0 ? cookie : 0;
}

/* The deadline passed. If the descriptor still holds the same socket, the request did not
 * arrive in time: shut the socket down (evhttp sees the end and frees the connection). */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    if (c->cookie != 0 && fd_cookie(c->fd) == c->cookie) {
        GW_LOG_INFO("server", "worker %d: no whole request within %d ms, closing the connection",
                    c->w->index, c->w->srv->opts.read_timeout_ms);
        shutdown(c->fd, SHUT_RDWR);
    }
    conn_free(c);
}

/* The connection of a request, if this worker tracks it. */
static struct conn *conn_of(struct gw_http_worker *w, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    struct conn *c = fd >= 0 && (size_t)fd < w->nbyfd ? w->byfd[fd] : NULL;
    return c != NULL && c->bev == bev ? c : NULL;
}

/* After the accept callback: evhttp has given the fresh bufferevents their descriptors. */
static void on_fresh(evutil_socket_t unused, short what, void *arg)
{
    struct gw_http_worker *w = arg;
    (void)unused;
    (void)what;
    while (w->fresh != NULL) {
        struct conn *c = w->fresh;
        struct bufferevent *bev = (struct bufferevent *)c->bev;
        bufferevent_data_cb readcb = NULL;
        w->fresh = c->next;
        c->next = NULL;
        bufferevent_getcb(bev, &readcb, NULL, NULL, NULL);
        evutil_socket_t fd = readcb != NULL ? bufferevent_getfd(bev) : -1; /* NULL: freed */
        bufferevent_decref(bev);
        if (fd < 0 || (c->cookie = fd_cookie(fd)) == 0) {
            conn_free(c);
            continue;
        }
        struct conn **t = gw_grow_zeroed(w->byfd, &w->nbyfd, (size_t)fd, 1024, sizeof(*t));
        if (t == NULL) {
            conn_free(c);
            continue;
        }
        w->byfd = t;
        conn_free(w->byfd[fd]); /* a connection that was on this descriptor before */
        c->fd = fd;
        w->byfd[fd] = c;
        conn_arm(c);
    }
}

/* evhttp's bufferevent factory, called for each accepted connection before it sets the
 * descriptor. The reference held until on_fresh keeps the bufferevent readable even if evhttp
 * frees it first. Without memory the connection simply has no deadline of its own. */
static struct bufferevent *conn_new(struct event_base *base, void *arg)
{
    struct gw_http_worker *w = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    struct conn *c = bev ? gw_calloc(1, sizeof(*c)) : NULL;
    if (c == NULL || (c->deadline = evtimer_new(base, on_deadline, c)) == NULL) {
        gw_free(c);
        return bev;
    }
    c->w = w;
    c->bev = bev;
    c->fd = -1;
    bufferevent_incref(bev);
    c->next = w->fresh;
    w->fresh = c;
    event_active(w->fresh_ev, EV_READ, 0);
    return bev;
}

/* The answer is sent: the next request on the connection has a deadline of its own. */
static void on_request_sent(struct evhttp_request *req, void *arg)
{
    struct conn *c = conn_of(arg, req);
    if (c != NULL)
        conn_arm(c);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct gw_http_worker *w = arg;
    struct conn *c = conn_of(w, req);
    if (c != NULL) {
        evtimer_del(c->deadline);
        evhttp_request_set_on_complete_cb(req, on_request_sent, w);
    }
    w->srv->app.handle(w->wdata, req);
}

static void conns_free(struct gw_http_worker *w)
{
    on_fresh(-1, 0, w); /* drops the references */
    for (size_t i = 0; i < w->nbyfd; i++)
        conn_free(w->byfd[i]);
    gw_free(w->byfd);
    w->byfd = NULL;
    w->nbyfd = 0;
}

/* accept() failed for want of a descriptor (or memory): libevent would retry at once, forever,
 * the socket still readable. Pause accepting instead; the backlog waits in the kernel. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    struct gw_http_worker *w = this_worker;
    int err = EVUTIL_SOCKET_ERROR();
    (void)arg;
    if (w == NULL || w->bound == NULL || evhttp_bound_socket_get_listener(w->bound) != lev)
        return;
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    GW_LOG_WARN("server", "worker %d: cannot accept a connection (%s): pausing %d ms", w->index,
                strerror(err), ACCEPT_PAUSE_MS);
    evconnlistener_disable(lev);
    evtimer_add(w->resume_ev, &tv);
}

static void on_resume_accept(evutil_socket_t fd, short what, void *arg)
{
    struct gw_http_worker *w = arg;
    (void)fd;
    (void)what;
    if (w->bound != NULL)
        evconnlistener_enable(evhttp_bound_socket_get_listener(w->bound));
}

static void *worker_main(void *arg)
{
    struct gw_http_worker *w = arg;
    struct gw_http_server *s = w->srv;

    char name[16];
    snprintf(name, sizeof(name), "gw-http-%d", w->index);
    pthread_setname_np(pthread_self(), name); /* for top -H, perf and gdb */
    this_worker = w;
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
    w->fresh_ev = event_new(w->base, -1, 0, on_fresh, w);
    w->resume_ev = evtimer_new(w->base, on_resume_accept, w);
    if (w->http == NULL || w->stop_ev == NULL || w->grace_ev == NULL || w->fresh_ev == NULL ||
        w->resume_ev == NULL)
        return GW_ENOMEM;
    evhttp_set_bevcb(w->http, conn_new, w);
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
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(w->bound), on_accept_error);
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
        conns_free(w);
        if (w->fresh_ev != NULL)
            event_free(w->fresh_ev);
        if (w->resume_ev != NULL)
            event_free(w->resume_ev);
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
