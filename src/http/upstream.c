/*
 * http/upstream — libcurl's multi-socket API on a libevent base.
 *
 * curl tells us which sockets to watch (socket_cb) and when to wake it (timer_cb); libevent
 * tells curl when a socket is ready (on_socket) or the timer fired (on_timeout). After each
 * action we collect finished transfers and run their callbacks. Per-transfer state lives in a
 * small struct reached through CURLOPT_PRIVATE.
 *
 * A connection's socket keeps its context and its event between transfers. curl opens and
 * closes the sockets of its connections through our callbacks (open_socket, close_socket), so
 * a socket of ours is known from its first byte to its close, found by its descriptor (byfd).
 * When a transfer ends curl stops watching the socket (CURL_POLL_REMOVE) and the connection
 * waits in its cache for the next request; its event stays, reading (parked): the next
 * transfer on it finds it armed already, where deleting and adding it again cost two
 * epoll_ctl calls and an allocation per request. Should a parked socket become readable (the
 * server closed the idle connection, or sent what it should not), its event is deleted: curl
 * finds the connection dead when it next looks, and closes it. Sockets curl makes without our
 * callback (a resolver's) are watched only while curl asks.
 */
#include "http/upstream.h"

#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/log.h"
#include "util/mem.h"

/* Easy handles kept for reuse (curl_easy_reset clears the options and keeps nothing of the
 * last transfer but caches): making one costs more than the request it carries. */
#define GW_EASY_SPARE 64

struct gw_upstream {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    int running;
    CURL *spare[GW_EASY_SPARE];
    int nspare;
    struct sock_ctx *socks; /* every socket context, for those curl forgets without telling */
    struct sock_ctx **byfd; /* the sockets curl opened through open_socket, by descriptor */
    size_t nbyfd;
};

struct xfer {
    gw_upstream_done_cb cb;
    void *arg;
};

struct sock_ctx {
    struct gw_upstream *u;
    curl_socket_t fd;
    struct event *ev;
    int ours;   /* opened through open_socket: in byfd until close_socket */
    int parked; /* curl does not watch it (no transfer on it); ev reads, if pending */
    struct sock_ctx *prev, *next;
};

static void sock_free(struct gw_upstream *u, struct sock_ctx *sc)
{
    if (sc->ours && (size_t)sc->fd < u->nbyfd)
        u->byfd[sc->fd] = NULL;
    if (sc->prev != NULL)
        sc->prev->next = sc->next;
    else
        u->socks = sc->next;
    if (sc->next != NULL)
        sc->next->prev = sc->prev;
    if (sc->ev != NULL)
        event_free(sc->ev);
    gw_free(sc);
}

/* A new context for socket fd, on u's list (not watched yet). NULL: no memory. */
static struct sock_ctx *sock_new(struct gw_upstream *u, curl_socket_t fd)
{
    struct sock_ctx *sc = gw_calloc(1, sizeof(*sc));
    if (sc == NULL)
        return NULL;
    sc->u = u;
    sc->fd = fd;
    if ((sc->next = u->socks) != NULL)
        sc->next->prev = sc;
    u->socks = sc;
    return sc;
}

/* The context of fd if open_socket made it, else NULL. */
static struct sock_ctx *sock_ours(const struct gw_upstream *u, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < u->nbyfd ? u->byfd[fd] : NULL;
}

static void check_done(struct gw_upstream *u)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(u->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        struct xfer *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(u->multi, easy);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        if (x != NULL) {
            gw_upstream_done_cb cb = x->cb;
            void *arg = x->arg;
            gw_free(x);
            cb(arg, easy, result);
        }
    }
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    struct sock_ctx *sc = arg;
    struct gw_upstream *u = sc->u;
    if (sc->parked) { /* an idle connection: closed by the server, most likely */
        event_del(sc->ev);
        return;
    }
    int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) |
                ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);

    curl_multi_socket_action(u->multi, fd, flags, &u->running);
    /* No "nothing running: drop the timer" shortcut here: a done callback may start a new
     * transfer (the LLM router's answer starts the real call), and curl has just armed the
     * timer for it. curl clears the timer itself (timer_cb with -1) when it needs none. */
    check_done(u);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct gw_upstream *u = arg;
    (void)fd;
    (void)what;
    curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &u->running);
    check_done(u);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *arg)
{
    struct gw_upstream *u = arg;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(u->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(u->timer, &tv);
    return 0;
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *uarg, void *sockp)
{
    struct gw_upstream *u = uarg;
    struct sock_ctx *sc = sockp;
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        if (sc != NULL && sc->ours) { /* parked, still reading (see the top) */
            sc->parked = 1;
            if ((event_get_events(sc->ev) & EV_WRITE) != 0)
                event_del(sc->ev);
        } else if (sc != NULL) {
            sock_free(u, sc);
            curl_multi_assign(u->multi, fd, NULL);
        }
        return 0;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                         ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    if (sc == NULL) { /* a connection of ours back in use, or a socket new to us */
        if ((sc = sock_ours(u, fd)) == NULL && (sc = sock_new(u, fd)) == NULL)
            return -1;
        curl_multi_assign(u->multi, fd, sc);
    }
    sc->parked = 0;
    if (sc->ev == NULL) {
        sc->ev = event_new(u->base, fd, kind, on_socket, sc);
    } else if (event_get_events(sc->ev) != kind) { /* the same event, watching for more or less */
        event_del(sc->ev);
        event_assign(sc->ev, u->base, fd, kind, on_socket, sc);
    } else if (event_pending(sc->ev, EV_READ | EV_WRITE, NULL)) {
        return 0; /* armed already (a parked socket) */
    }
    if (sc->ev == NULL || event_add(sc->ev, NULL) != 0) {
        /* curl gives the transfer up and forgets the socket without a CURL_POLL_REMOVE: its
         * context goes now, or it would leak */
        GW_LOG_ERROR("upstream", "cannot watch socket %d", (int)fd);
        sock_free(u, sc);
        curl_multi_assign(u->multi, fd, NULL);
        return -1;
    }
    return 0;
}

/* curl's socket for a connection (CURLOPT_OPENSOCKETFUNCTION): made here, and known to u from
 * now until close_socket. */
static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct gw_upstream *u = arg;
    (void)purpose;
    int fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    struct sock_ctx **b = gw_grow_zeroed(u->byfd, &u->nbyfd, (size_t)fd, 64, sizeof(*b));
    if (b != NULL)
        u->byfd = b;
    struct sock_ctx *sc = b != NULL ? sock_new(u, fd) : NULL;
    if (sc == NULL) {
        close(fd);
        return CURL_SOCKET_BAD;
    }
    sc->ours = 1;
    sc->parked = 1; /* no transfer watches it yet */
    u->byfd[fd] = sc;
    return fd;
}

/* curl closes a socket open_socket made (CURLOPT_CLOSESOCKETFUNCTION): its event goes first,
 * so that nothing watches the descriptor's next owner. */
static int close_socket(void *arg, curl_socket_t fd)
{
    struct gw_upstream *u = arg;
    struct sock_ctx *sc = sock_ours(u, fd);
    if (sc != NULL)
        sock_free(u, sc);
    return close(fd);
}

int gw_upstream_new(struct event_base *base, struct gw_upstream **out)
{
    struct gw_upstream *u = gw_calloc(1, sizeof(*u));

    *out = NULL;
    if (u == NULL)
        return GW_ENOMEM;
    u->base = base;
    u->multi = curl_multi_init();
    u->timer = evtimer_new(base, on_timeout, u);
    if (u->multi == NULL || u->timer == NULL) {
        gw_upstream_free(u);
        return GW_ENOMEM;
    }
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, 256L);
    *out = u;
    return 0;
}

void gw_upstream_free(struct gw_upstream *u)
{
    if (u == NULL)
        return;
    if (u->multi != NULL)
        curl_multi_cleanup(u->multi);
    /* curl's cleanup forgets the sockets of transfers still in the multi without a
     * CURL_POLL_REMOVE, as does a multi a callback has failed (aborted) */
    while (u->socks != NULL)
        sock_free(u, u->socks);
    while (u->nspare > 0) /* (close_socket may still look in byfd meanwhile) */
        curl_easy_cleanup(u->spare[--u->nspare]);
    gw_free(u->byfd);
    if (u->timer != NULL)
        event_free(u->timer);
    gw_free(u);
}

int gw_upstream_start(struct gw_upstream *u, CURL *easy, gw_upstream_done_cb cb, void *arg)
{
    struct xfer *x = gw_malloc(sizeof(*x));

    if (x == NULL)
        return GW_ENOMEM;
    x->cb = cb;
    x->arg = arg;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
    if (curl_multi_add_handle(u->multi, easy) != CURLM_OK) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        gw_free(x);
        return GW_EIO;
    }
    return 0;
}

void gw_upstream_cancel(struct gw_upstream *u, CURL *easy)
{
    struct xfer *x = NULL;

    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    curl_multi_remove_handle(u->multi, easy);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    gw_free(x);
}

int gw_upstream_running(const struct gw_upstream *u) { return u->running; }

int64_t gw_upstream_retry_after_ms(const char *line, size_t len, int64_t now_ms)
{
    static const char ra[] = "retry-after:", ra_ms[] = "retry-after-ms:";
    const int64_t day_ms = 86400000;
    char v[64];
    size_t skip;
    int ms;

    if (len > sizeof(ra_ms) - 1 && strncasecmp(line, ra_ms, sizeof(ra_ms) - 1) == 0) {
        skip = sizeof(ra_ms) - 1;
        ms = 1;
    } else if (len > sizeof(ra) - 1 && strncasecmp(line, ra, sizeof(ra) - 1) == 0) {
        skip = sizeof(ra) - 1;
        ms = 0;
    } else {
        return -1;
    }
    line += skip;
    len -= skip;
    while (len > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        len--;
    }
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n' || line[len - 1] == ' '))
        len--;
    if (len == 0 || len >= sizeof(v))
        return -1;
    memcpy(v, line, len);
    v[len] = '\0';
    int digits = 1;
    for (size_t i = 0; i < len; i++)
        digits &= v[i] >= '0' && v[i] <= '9';
    if (digits) {
        int64_t n = len > 12 ? day_ms : strtoll(v, NULL, 10);
        n = ms ? n : n * 1000;
        return n < day_ms ? n : day_ms;
    }
    if (ms)
        return -1;
    time_t when = curl_getdate(v, NULL);
    if (when < 0)
        return -1;
    int64_t d = (int64_t)when * 1000 - now_ms;
    return d < 0 ? 0 : d < day_ms ? d : day_ms;
}

/* May the CA directory be left out? curl caches the certificate store it builds from the CA
 * file (for a day, per multi handle) only when no CA directory is set, and Debian's libcurl
 * sets both by default: each new TLS connection then parsed the whole bundle again (~50 ms of
 * CPU on the worker's loop). With a readable default CA file (on Debian the same certificates
 * as the directory) the directory goes and the cache works. Decided once per process. */
static int ca_file_only(CURL *e)
{
    static atomic_int state; /* 0: not decided yet, 1: yes, 2: no */
    int st = atomic_load(&state);
    if (st == 0) {
        char *file = NULL;
        st = curl_easy_getinfo(e, CURLINFO_CAINFO, &file) == CURLE_OK && file != NULL &&
                     access(file, R_OK) == 0
                 ? 1
                 : 2;
        atomic_store(&state, st);
    }
    return st == 1;
}

int gw_upstream_easy_new(struct gw_upstream *u, const struct gw_easy_opts *o, CURL **easy,
                         struct curl_slist **hdrs)
{
    struct curl_slist *h = NULL, *l;
    CURL *e = u != NULL && u->nspare > 0 ? u->spare[--u->nspare] : curl_easy_init();

    *easy = NULL;
    *hdrs = NULL;
    if (e == NULL)
        return GW_ENOMEM;
    for (int i = 0; i < o->nheaders; i++) {
        if ((l = curl_slist_append(h, o->headers[i])) == NULL)
            goto oom;
        h = l;
    }
    if ((l = curl_slist_append(h, "Expect:")) == NULL)
        goto oom;
    h = l;
    if (o->sse) {
        if ((l = curl_slist_append(h, "Accept: text/event-stream")) == NULL)
            goto oom;
        h = l;
        /* events are small, and a stream holds its receive buffer for as long as it lasts:
         * 2 kB instead of curl's 16 (thousands of open streams; a burst takes more reads) */
        curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 2048L);
    }
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, o->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->total_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, o->on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, o->arg);
    if (o->on_header != NULL) { /* (header data without a function would be taken as a FILE *) */
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, o->on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, o->arg);
    }
    if (ca_file_only(e))
        curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    if (u != NULL) { /* its connections' sockets are known to u (see the top) */
        curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
        curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, u);
        curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
        curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, u);
    }
    *easy = e;
    *hdrs = h;
    return 0;
oom:
    gw_upstream_easy_free(u, e, h);
    return GW_ENOMEM;
}

void gw_upstream_easy_free(struct gw_upstream *u, CURL *easy, struct curl_slist *hdrs)
{
    if (easy != NULL && u != NULL && u->nspare < GW_EASY_SPARE) {
        curl_easy_reset(easy); /* drops every option: callbacks, the header list, the body */
        u->spare[u->nspare++] = easy;
    } else if (easy != NULL) {
        curl_easy_cleanup(easy);
    }
    for (struct curl_slist *l = hdrs; l != NULL; l = l->next)
        OPENSSL_cleanse(l->data, strlen(l->data));
    curl_slist_free_all(hdrs);
}
