/*
 * core/embed — the in-process front (include/llmgw.h embedded mode): a gw_worker on the host's
 * event_base (llmgw_attach) or on a loop and thread of the gateway's own (llmgw_start), and
 * the in-process client (struct gw_client_ops) that hands the pipeline's answer to the
 * host's callbacks.
 *
 * Invariants:
 * - Everything but llmgw_chat_sync, llmgw_stats and llmgw_stop runs on the loop's thread.
 * - on_done runs exactly once per successful llmgw_chat, from the call's own deferred event
 *   (never from inside llmgw_chat, never from inside a curl callback); the call is freed
 *   right after it, and the pipeline touches it no more once it answered (cl->ctx NULL).
 * - One allocation per call (the call with the copied body and strings), one for a whole
 *   answer's body; none per stream chunk.
 */
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>

#include "core/client.h"
#include "core/gw_int.h"
#include "llmgw.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/util.h"

#define EMBED_HEADERS_MAX 2048

struct llmgw_call {
    struct llmgw *g;
    struct llmgw_call *prev, *next; /* the gateway's calls not delivered yet */
    struct event ev;                /* deferred: a cancel, then on_done */
    struct gw_client *cl;           /* the pipeline's, while it watches the client */
    void (*on_chunk)(void *arg, const char *data, size_t len);
    void (*on_done)(void *arg, const struct llmgw_result *r);
    void *arg;
    int status;
    int answered;                   /* the pipeline answered: on_done is due */
    int cancel;
    char *out;                      /* a whole answer's body (owned) */
    size_t out_len;
    char rid[72];
    char headers[EMBED_HEADERS_MAX];
    size_t hlen;
    const char *api_key;            /* into data (NULL: a subject) */
    const char *idem;               /* into data (NULL: none) */
    const char *client, *subject;   /* into data (NULL: an API key) */
    size_t body_len;
    char data[];                    /* body, NUL, then each string given, NUL-terminated */
};

struct gw_embed {
    struct event_base *base;
    struct gw_upstream *up;
    struct gw_worker *w;
    pthread_t loop_thread;
    int own;                   /* llmgw_start: base and thread are ours */
    pthread_t thread;
    struct event *stop_ev;     /* llmgw_start: activated (any thread) to end the loop; an event
                                * rather than loopbreak, which a loop not yet started forgets */
    struct llmgw_call *calls;
    atomic_ullong calls_n, ok, failed, cancelled, inflight;
};

/* ---- the in-process client ---- */

static struct llmgw_call *call_of(struct gw_client *cl) { return cl->ctx; }

static const char *em_header(struct gw_client *cl, const char *name, int *count)
{
    struct llmgw_call *k = call_of(cl);
    const char *v = NULL;
    if (strcasecmp(name, "X-API-Key") == 0)
        v = k->api_key;
    else if (strcasecmp(name, "Idempotency-Key") == 0)
        v = k->idem;
    if (count != NULL)
        *count = v != NULL;
    return v;
}

static const char *em_body(struct gw_client *cl, size_t *len)
{
    *len = call_of(cl)->body_len;
    return call_of(cl)->data;
}

static void em_add_header(struct gw_client *cl, const char *name, const char *value)
{
    struct llmgw_call *k = call_of(cl);
    size_t n = strlen(name), v = strlen(value);
    if (k->hlen + n + v + 4 > sizeof(k->headers)) { /* informational: the answer goes on */
        GW_LOG_DEBUG("embed", "req=%s header %s dropped: no room", k->rid, name);
        return;
    }
    memcpy(k->headers + k->hlen, name, n);
    memcpy(k->headers + k->hlen + n, ": ", 2);
    memcpy(k->headers + k->hlen + n + 2, value, v);
    k->hlen += n + v + 2;
    k->headers[k->hlen++] = '\n';
    k->headers[k->hlen] = '\0';
}

static void em_remove_header(struct gw_client *cl, const char *name)
{
    struct llmgw_call *k = call_of(cl);
    size_t n = strlen(name), i = 0;
    while (i < k->hlen) {
        char *line = k->headers + i;
        size_t ll = (size_t)(strchr(line, '\n') - line) + 1;
        if (ll > n && line[n] == ':' && strncasecmp(line, name, n) == 0) {
            memmove(line, line + ll, k->hlen - i - ll + 1);
            k->hlen -= ll;
        } else {
            i += ll;
        }
    }
}

static void em_each_header(struct gw_client *cl, gw_client_header_fn fn, void *arg)
{
    struct llmgw_call *k = call_of(cl);
    const char *p = k->headers;
    while (*p != '\0') {
        const char *colon = strchr(p, ':'), *e = strchr(p, '\n');
        char name[64], value[EMBED_HEADERS_MAX];
        size_t nl = (size_t)(colon - p), vl = (size_t)(e - colon - 2);
        if (nl < sizeof(name)) {
            memcpy(name, p, nl);
            name[nl] = '\0';
            memcpy(value, colon + 2, vl);
            value[vl] = '\0';
            fn(arg, name, value);
        }
        p = e + 1;
    }
}

static void due(struct llmgw_call *k)
{
    k->answered = 1;
    event_active(&k->ev, EV_TIMEOUT, 1);
}

static void em_reply(struct gw_client *cl, int status, const char *body, size_t len,
                     const char *tail)
{
    struct llmgw_call *k = call_of(cl);
    k->status = status;
    if (body != NULL) {
        size_t tl = strlen(tail);
        if ((k->out = gw_malloc(len + tl + 1)) != NULL) {
            memcpy(k->out, body, len);
            memcpy(k->out + len, tail, tl);
            k->out_len = len + tl;
            k->out[k->out_len] = '\0';
        } else {
            k->status = 503; /* the answer is lost: say so rather than hand back nothing */
        }
    }
    due(k);
}

static void em_stream_start(struct gw_client *cl, int status) { call_of(cl)->status = status; }

static void em_stream_data(struct gw_client *cl, const char *event, const char *data, size_t len)
{
    struct llmgw_call *k = call_of(cl);
    (void)event; /* the in-process API takes the chat dialect only: data events */
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return; /* on_done says it */
    if (k->on_chunk != NULL)
        k->on_chunk(k->arg, data, len);
}

static size_t em_backlog(struct gw_client *cl)
{
    (void)cl;
    return 0; /* on_chunk takes each chunk before it returns */
}

static void em_stream_end(struct gw_client *cl) { due(call_of(cl)); }

static void em_watch(struct gw_client *cl, int on)
{
    if (cl->ctx != NULL)
        call_of(cl)->cl = on ? cl : NULL;
}

static void em_abandon(struct gw_client *cl, int started)
{
    struct llmgw_call *k = call_of(cl);
    if (k == NULL)
        return;
    k->cl = NULL;
    if (!started)
        k->status = 499;
    due(k);
    cl->ctx = NULL;
}

static struct evhttp_request *em_http(struct gw_client *cl)
{
    (void)cl;
    return NULL;
}

static const struct gw_client_ops embed_ops = {
    .header = em_header,
    .body = em_body,
    .add_header = em_add_header,
    .remove_header = em_remove_header,
    .each_header = em_each_header,
    .reply = em_reply,
    .stream_start = em_stream_start,
    .stream_data = em_stream_data,
    .backlog = em_backlog,
    .stream_end = em_stream_end,
    .watch = em_watch,
    .abandon = em_abandon,
    .http = em_http,
};

/* ---- calls ---- */

static void deliver(struct llmgw_call *k)
{
    struct gw_embed *e = k->g->gw.embed;
    struct llmgw_result r = {
        .status = k->status,
        .body = k->out,
        .body_len = k->out_len,
        .headers = k->headers,
        .request_id = k->rid,
    };
    event_del(&k->ev);
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        e->calls = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    atomic_fetch_add(k->status == 200 ? &e->ok : &e->failed, 1);
    if (k->status == 499)
        atomic_fetch_add(&e->cancelled, 1);
    atomic_fetch_sub(&e->inflight, 1);
    k->on_done(k->arg, &r);
    gw_free(k->out);
    gw_free(k);
}

static void on_call_event(evutil_socket_t fd, short what, void *arg)
{
    struct llmgw_call *k = arg;
    (void)fd;
    (void)what;
    if (!k->answered && k->cancel && k->cl != NULL) {
        struct gw_client *cl = k->cl;
        k->cl = NULL;
        cl->gone(cl->arg); /* as if the HTTP client left: abandon answers 499 */
    }
    if (k->answered)
        deliver(k);
}

int llmgw_chat(struct llmgw *g, const char *json, size_t len, const struct llmgw_chat_opts *o,
               struct llmgw_call **out)
{
    struct gw_embed *e = g->gw.embed;
    struct llmgw_call *k;

    if (out != NULL)
        *out = NULL;
    /* the caller: an API key, or a subject of an app client the host vouches for */
    int by_key = o != NULL && o->api_key != NULL;
    if (e == NULL || e->w == NULL || json == NULL || o == NULL || o->on_done == NULL ||
        by_key == (o->app_client_id != NULL || o->subject != NULL) ||
        (!by_key && (o->app_client_id == NULL || o->subject == NULL || o->subject[0] == '\0')))
        return GW_EINVAL;
    const char *strs[] = {o->api_key, o->idempotency_key, o->app_client_id, o->subject};
    size_t sl[4], total = 0;
    for (int i = 0; i < 4; i++) {
        sl[i] = strs[i] != NULL ? strlen(strs[i]) : 0;
        if (sl[i] > 4096)
            return GW_ETOOBIG;
        total += sl[i] + 1;
    }
    if (len > g->gw.cfg.max_body)
        return GW_ETOOBIG;
    if ((k = gw_calloc(1, sizeof(*k) + len + 1 + total)) == NULL)
        return GW_ENOMEM;
    k->g = g;
    k->on_chunk = o->on_chunk;
    k->on_done = o->on_done;
    k->arg = o->arg;
    memcpy(k->data, json, len);
    k->body_len = len;
    const char **dst[] = {&k->api_key, &k->idem, &k->client, &k->subject};
    char *p = k->data + len + 1;
    for (int i = 0; i < 4; i++) {
        if (strs[i] == NULL)
            continue;
        *dst[i] = memcpy(p, strs[i], sl[i] + 1);
        p += sl[i] + 1;
    }
    event_assign(&k->ev, e->base, -1, 0, on_call_event, k);
    gw_request_id_new(k->rid, sizeof(k->rid));
    k->next = e->calls;
    if (e->calls != NULL)
        e->calls->prev = k;
    e->calls = k;
    atomic_fetch_add(&e->calls_n, 1);
    atomic_fetch_add(&e->inflight, 1);
    if (out != NULL)
        *out = k;
    struct gw_client cl = {.ops = &embed_ops, .ctx = k, .subject_client = k->client,
                           .subject = k->subject};
    gw_pipeline_chat(e->w, &cl, k->rid, GW_DIALECT_OPENAI); /* answers later, through k->ev */
    return 0;
}

void llmgw_cancel(struct llmgw_call *k)
{
    if (k == NULL || k->answered || k->cancel)
        return;
    k->cancel = 1;
    event_active(&k->ev, EV_TIMEOUT, 1); /* not here: this may be inside curl's callback */
}

/* ---- loops ---- */

static void threads_init(void) { evthread_use_pthreads(); }

static int embed_of(struct llmgw *g, struct gw_embed **out)
{
    if (g->gw.embed == NULL && (g->gw.embed = gw_calloc(1, sizeof(*g->gw.embed))) == NULL)
        return GW_ENOMEM;
    *out = g->gw.embed;
    return 0;
}

int llmgw_attach(struct llmgw *g, struct event_base *base)
{
    struct gw_embed *e;
    int rc;

    if (base == NULL)
        return GW_EINVAL;
    if ((rc = embed_of(g, &e)) != 0)
        return rc;
    if (e->w != NULL)
        return GW_EEXIST;
    e->base = base;
    e->loop_thread = pthread_self();
    if ((rc = gw_upstream_new(base, &e->up)) != 0)
        return rc;
    /* without a server, this worker deletes the expired idempotency records */
    if ((rc = gw_worker_new(&g->gw, NULL, base, e->up, g->gw.server == NULL, &e->w)) != 0) {
        gw_upstream_free(e->up);
        e->up = NULL;
        return rc;
    }
    return 0;
}

void llmgw_detach(struct llmgw *g)
{
    struct gw_embed *e = g->gw.embed;
    if (e == NULL || e->w == NULL)
        return;
    gw_worker_free(e->w); /* answers what is in flight, waits for the store work */
    e->w = NULL;
    while (e->calls != NULL) { /* their on_done, now */
        struct llmgw_call *k = e->calls;
        if (!k->answered) { /* cannot happen: every call was answered above */
            k->status = 503;
            k->answered = 1;
        }
        deliver(k);
    }
    gw_upstream_free(e->up);
    e->up = NULL;
}

static void *loop_main(void *arg)
{
    struct llmgw *g = arg;
    struct gw_embed *e = g->gw.embed;
    pthread_setname_np(pthread_self(), "llmgw-loop");
    event_base_loop(e->base, EVLOOP_NO_EXIT_ON_EMPTY);
    llmgw_detach(g);
    return NULL;
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

int llmgw_start(struct llmgw *g)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct gw_embed *e;
    struct event_base *base;
    int rc;

    pthread_once(&once, threads_init);
    if ((rc = embed_of(g, &e)) != 0)
        return rc;
    if (e->w != NULL || e->own)
        return GW_EEXIST;
    if ((base = event_base_new()) == NULL)
        return GW_ENOMEM;
    if ((e->stop_ev = event_new(base, -1, 0, on_stop, base)) == NULL) {
        event_base_free(base);
        return GW_ENOMEM;
    }
    if ((rc = llmgw_attach(g, base)) != 0) {
        event_free(e->stop_ev);
        e->stop_ev = NULL;
        event_base_free(base);
        return rc;
    }
    e->own = 1;
    if (pthread_create(&e->thread, NULL, loop_main, g) != 0) {
        llmgw_detach(g);
        e->own = 0;
        e->base = NULL;
        event_free(e->stop_ev);
        e->stop_ev = NULL;
        event_base_free(base);
        return GW_EIO;
    }
    e->loop_thread = e->thread;
    return 0;
}

void gw_embed_stop(struct gw *gw)
{
    if (gw->embed != NULL && gw->embed->own)
        event_active(gw->embed->stop_ev, EV_TIMEOUT, 1);
}

void gw_embed_free(struct gw *gw)
{
    struct gw_embed *e = gw->embed;
    if (e == NULL)
        return;
    if (e->own) {
        event_active(e->stop_ev, EV_TIMEOUT, 1);
        pthread_join(e->thread, NULL);
        event_free(e->stop_ev);
        event_base_free(e->base);
    }
    gw_free(e);
    gw->embed = NULL;
}

/* ---- the blocking form ---- */

struct sync_job {
    struct llmgw *g;
    const char *json;
    size_t len;
    struct llmgw_chat_opts o;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, rc, status;
    char *body;
    size_t body_len;
};

static void sync_done(void *arg, const struct llmgw_result *r)
{
    struct sync_job *j = arg;
    pthread_mutex_lock(&j->mu);
    j->status = r->status;
    if (r->body != NULL && (j->body = gw_malloc(r->body_len + 1)) != NULL) {
        memcpy(j->body, r->body, r->body_len + 1);
        j->body_len = r->body_len;
    } else if (r->body != NULL) {
        j->rc = GW_ENOMEM;
    }
    j->done = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void sync_chunk(void *arg, const char *data, size_t len)
{
    struct sync_job *j = arg;
    if (j->o.on_chunk != NULL)
        j->o.on_chunk(j->o.arg, data, len);
}

static void sync_start(evutil_socket_t fd, short what, void *arg)
{
    struct sync_job *j = arg;
    struct llmgw_chat_opts o = j->o;
    (void)fd;
    (void)what;
    o.on_chunk = sync_chunk;
    o.on_done = sync_done;
    o.arg = j;
    int rc = llmgw_chat(j->g, j->json, j->len, &o, NULL);
    if (rc != 0) {
        pthread_mutex_lock(&j->mu);
        j->rc = rc;
        j->done = 1;
        pthread_cond_signal(&j->cv);
        pthread_mutex_unlock(&j->mu);
    }
}

int llmgw_chat_sync(struct llmgw *g, const char *json, size_t len,
                    const struct llmgw_chat_opts *o, int *status, char **body, size_t *body_len)
{
    struct gw_embed *e = g->gw.embed;
    struct sync_job j = {.g = g, .json = json, .len = len};

    *status = 0;
    *body = NULL;
    *body_len = 0;
    if (e == NULL || e->w == NULL || o == NULL || pthread_equal(pthread_self(), e->loop_thread))
        return GW_EINVAL;
    j.o = *o;
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv, NULL);
    if (event_base_once(e->base, -1, EV_TIMEOUT, sync_start, &j, NULL) != 0) {
        j.rc = GW_ENOMEM;
    } else {
        pthread_mutex_lock(&j.mu);
        while (!j.done)
            pthread_cond_wait(&j.cv, &j.mu);
        pthread_mutex_unlock(&j.mu);
    }
    pthread_cond_destroy(&j.cv);
    pthread_mutex_destroy(&j.mu);
    if (j.rc != 0) {
        gw_free(j.body);
        return j.rc;
    }
    *status = j.status;
    *body = j.body;
    *body_len = j.body_len;
    return 0;
}

void llmgw_buf_free(char *p) { gw_free(p); }

void llmgw_stats(const struct llmgw *g, struct llmgw_stats *out)
{
    struct gw_embed *e = g->gw.embed;
    memset(out, 0, sizeof(*out));
    if (e == NULL)
        return;
    out->calls = atomic_load(&e->calls_n);
    out->ok = atomic_load(&e->ok);
    out->failed = atomic_load(&e->failed);
    out->cancelled = atomic_load(&e->cancelled);
    out->inflight = atomic_load(&e->inflight);
}
