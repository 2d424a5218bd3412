/*
 * core/idem — Idempotency-Key: a keyed chat request runs upstream at most once (DESIGN.md
 * pipeline step 4 and "Rules that keep the pipeline honest").
 *
 *   begin    the header checked (1-255 visible ASCII characters, no quote or backslash; an
 *            RFC 8941 sf-string's quotes are taken off) and the body's bytes fingerprinted
 *   claim    after authentication and validation, one atomic insert on (caller, endpoint, key)
 *            — the caller is the API key's row — decides: ours, so the call goes on; or the
 *            record that stands answers: a different body 422, still in flight 409, unknown
 *            outcome 502 uncertain_upstream_state, done: the stored answer replayed
 *   capture  what the client gets (status, content type, the X-LLMGW-* headers, the body
 *            bytes, a whole SSE stream for a streamed request), bounded
 *   end      one of three: stored ("done") once execution began and the answer is complete —
 *            success, a deterministic provider error, an answer the provider broke; quarantined
 *            ("uncertain") when the provider may have done the work and the answer is not
 *            known or not complete; given back (deleted) when nothing was executed — refused
 *            by policy or limits, unsent, a provider that refused to work (429, 5xx, its
 *            credentials) — so that a retry runs
 *
 * A claim left in flight by a dead process becomes uncertain at start-up (core/gw.c). Expired
 * records are deleted in the background by worker 0, in bounded batches off its loop's way.
 */
#include <sys/queue.h> /* TAILQ_FOREACH over libevent's header lists */

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/call.h"
#include "http/reply.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/util.h"

#define IDEM_CLAIM_TRIES 3
#define IDEM_PURGE_BATCH 500
#define IDEM_PURGE_AGAIN_MS 10

struct gw_idem {
    struct gw_idem_rec rec;   /* our claim; its headers and body stay NULL until the end */
    struct gw_idem_rec found; /* the record that stands when the claim is not ours */
    void (*cont)(struct gw_call *c);
    int claim_rc;
    int claimed;      /* the claim is ours: it is completed or given back at the end */
    int executed;     /* the provider did the work and answered (the answer is known) */
    int uncertain;    /* the provider may have done the work; the answer is not known */
    int interrupted;  /* the call was cut (client gone, shutdown) before its answer was whole */
    int head_done;    /* status and headers captured */
    int complete;     /* the whole answer is captured */
    int too_large;    /* the answer is over idempotency.max_response_bytes: not kept */
    int status;
    struct gw_buf head; /* "Name: value\n" lines */
    struct gw_buf body;
};

/* Headers of an answer worth replaying (besides Content-Type). */
static const char *const kept_headers[] = {"Cache-Control", "X-LLMGW-Route-Reason",
                                           "X-LLMGW-Fallback", "X-LLMGW-Attempts", NULL};

static int kept_header(const char *name)
{
    for (int i = 0; kept_headers[i] != NULL; i++)
        if (strcasecmp(name, kept_headers[i]) == 0)
            return 1;
    return 0;
}

static void idem_free(struct gw_idem *i)
{
    if (i == NULL)
        return;
    gw_idem_rec_cleanup(&i->rec);
    gw_idem_rec_cleanup(&i->found);
    gw_buf_cleanup(&i->head);
    gw_buf_cleanup(&i->body);
    gw_free(i);
}

/* ---- the header ---- */

/* A key: 1-255 characters 0x21-0x7E except '"' and '\'. Returns its length, or 0. */
static size_t key_parse(const char *v, char out[GW_IDEM_KEY_MAX + 1])
{
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') { /* the draft's sf-string form */
        v++;
        n -= 2;
    }
    if (n == 0 || n > GW_IDEM_KEY_MAX)
        return 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char ch = (unsigned char)v[k];
        if (ch < 0x21 || ch > 0x7e || ch == '"' || ch == '\\')
            return 0;
    }
    memcpy(out, v, n);
    out[n] = '\0';
    return n;
}

int gw_idem_begin(struct gw_call *c, const char *body, size_t len)
{
    int seen = 0;
    const char *value = c->cl.ops->header(&c->cl, "Idempotency-Key", &seen);
    char key[GW_IDEM_KEY_MAX + 1];

    if (seen == 0)
        return 0;
    if (seen > 1 || key_parse(value, key) == 0) {
        gw_call_reply_error(c, 400, "invalid_request_error", "invalid_idempotency_key",
                            seen > 1 ? "send one Idempotency-Key header, not several"
                                     : "Idempotency-Key must be 1 to 255 visible ASCII "
                                       "characters without quotes or backslashes",
                            0);
        return -1;
    }
    struct gw_idem *i = gw_calloc(1, sizeof(*i));
    if (i == NULL) {
        gw_call_reply_error(c, 503, "service_unavailable", "overloaded", "out of memory", 1);
        return -1;
    }
    gw_strlcpy(i->rec.key, key, sizeof(i->rec.key));
    unsigned char h[32];
    gw_sha256(h, body, len);
    gw_hex(i->rec.fingerprint, h, sizeof(h));
    gw_buf_init(&i->head, 4096);
    gw_buf_init(&i->body, c->w->gw->cfg.idem.max_response_bytes);
    c->idem = i;
    return 1;
}

/* ---- the claim ---- */

static void claim_run(struct gw_call *c, struct gw_store *s)
{
    struct gw_idem *i = c->idem;
    int rc = GW_ENOTFOUND;
    /* a record purged between the insert and the read: the insert wins the next time */
    for (int t = 0; t < IDEM_CLAIM_TRIES && rc == GW_ENOTFOUND; t++)
        rc = gw_store_idem_claim(s, &i->rec, gw_now_ms(), &i->claimed, &i->found);
    i->claim_rc = rc;
}

/* Answer with the stored response: its status, kept headers and body, byte for byte. */
static void replay(struct gw_call *c, const struct gw_idem_rec *f)
{
    struct gw_client *cl = &c->cl;
    const char *p = f->headers ? f->headers : "";
    int typed = 0;

    if (f->status < 200 || f->status > 599 || f->body == NULL) { /* the store is untrusted */
        GW_LOG_ERROR("idem", "req=%s the stored answer of %s is unreadable (status %d)", c->rid,
                     f->request_id, f->status);
        gw_call_reply_error(c, 500, "internal_error", "idempotency_record_unreadable",
                            "the stored answer for this Idempotency-Key cannot be read", 0);
        return;
    }
    while (*p != '\0') {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        const char *colon = memchr(p, ':', n);
        char name[40], value[640];
        if (colon != NULL && (size_t)(colon - p) < sizeof(name) && n - (size_t)(colon - p) <
                                                                       sizeof(value)) {
            size_t nl = (size_t)(colon - p), vl = n - nl - 1;
            const char *v = colon + 1;
            while (vl > 0 && *v == ' ') {
                v++;
                vl--;
            }
            memcpy(name, p, nl);
            name[nl] = '\0';
            memcpy(value, v, vl);
            value[vl] = '\0';
            int printable = 1;
            for (size_t k = 0; k < vl; k++)
                printable &= value[k] >= 0x20 && value[k] < 0x7f;
            if (printable && strcasecmp(name, "Content-Type") == 0 && !typed) {
                cl->ops->add_header(cl, "Content-Type", value);
                typed = 1;
            } else if (printable && kept_header(name)) {
                cl->ops->add_header(cl, name, value);
            }
        }
        p += n + (e != NULL);
    }
    if (!typed)
        cl->ops->add_header(cl, "Content-Type", "application/json");
    cl->ops->add_header(cl, "X-Request-Id", c->rid);
    cl->ops->add_header(cl, "Idempotent-Replayed", "true");
    if (gw_request_id_ok(f->request_id))
        cl->ops->add_header(cl, "X-LLMGW-Original-Request-Id", f->request_id);
    cl->ops->watch(cl, 0);
    cl->ops->reply(cl, f->status, f->body, f->body_len, "");
    cl->ctx = NULL;
    c->row.status = f->status;
    gw_strlcpy(c->row.state, "replayed", sizeof(c->row.state));
}

/* What a retry is told while the record stands in a state other than done. */
static const struct held_answer {
    const char *state;
    int status;
    const char *type, *code, *msg;
    int retry_after;
} held_answers[] = {
    {"in_flight", 409, "invalid_request_error", "idempotency_key_in_flight",
     "a request with this Idempotency-Key is still being processed; retry later to get its "
     "answer", 1},
    {"uncertain", 502, "upstream_error", "uncertain_upstream_state",
     "the request with this Idempotency-Key may or may not have been processed by the provider "
     "(the outcome was lost); it is not run again", 0},
    {"too_large", 409, "invalid_request_error", "idempotency_response_not_kept",
     "the request with this Idempotency-Key was processed, but its answer was too large to keep "
     "for replay; it is not run again", 0},
};

/* The key is someone else's claim, or done: answer from the record. */
static void answer_from_record(struct gw_call *c, const struct gw_idem_rec *f)
{
    if (strcmp(f->fingerprint, c->idem->rec.fingerprint) != 0) {
        gw_call_reply_error(c, 422, "invalid_request_error", "idempotency_key_reused",
                            "this Idempotency-Key was used with a different request body; use a "
                            "new key for a new request", 0);
        return;
    }
    if (strcmp(f->state, "done") == 0) {
        replay(c, f);
        return;
    }
    for (size_t k = 0; k < sizeof(held_answers) / sizeof(held_answers[0]); k++) {
        const struct held_answer *h = &held_answers[k];
        if (strcmp(f->state, h->state) == 0) {
            gw_call_reply_error(c, h->status, h->type, h->code, h->msg, h->retry_after);
            return;
        }
    }
    GW_LOG_ERROR("idem", "req=%s unknown idempotency state '%.15s'", c->rid, f->state);
    gw_call_reply_error(c, 500, "internal_error", "idempotency_record_unreadable",
                        "the stored answer for this Idempotency-Key cannot be read", 0);
}

static void claim_done(struct gw_call *c)
{
    struct gw_idem *i = c->idem;

    if (c->job.batch_rc != 0) { /* the claim's write was lost: it is not ours */
        i->claim_rc = c->job.batch_rc;
        i->claimed = 0;
        gw_idem_rec_cleanup(&i->found);
    }
    if (i->claim_rc != 0) {
        GW_LOG_ERROR("store", "req=%s cannot claim the idempotency key: %s", c->rid,
                     gw_strerror(i->claim_rc));
        gw_call_reply_error(c, 503, "service_unavailable", "store_unavailable",
                            "the gateway cannot check the Idempotency-Key right now; try again",
                            1);
        gw_call_end(c);
        return;
    }
    if (!i->claimed) {
        if (c->cl.ctx != NULL) /* else the client left meanwhile */
            answer_from_record(c, &i->found);
        GW_LOG_INFO("idem", "req=%s key held by %s (%s)", c->rid, i->found.request_id,
                    i->found.state);
        gw_idem_rec_cleanup(&i->found);
        gw_call_end(c);
        return;
    }
    if (c->cl.ctx == NULL) { /* gone before anything ran: the claim is given back at the end */
        gw_call_end(c);
        return;
    }
    i->cont(c);
}

void gw_idem_claim(struct gw_call *c, void (*cont)(struct gw_call *c))
{
    struct gw_idem *i = c->idem;
    struct gw *gw = c->w->gw;
    struct gw_idem_rec *r = &i->rec;

    snprintf(r->caller, sizeof(r->caller), "key:%lld", (long long)c->key->id);
    gw_strlcpy(r->endpoint, gw_dialect_endpoint(c->dialect), sizeof(r->endpoint));
    gw_strlcpy(r->request_id, c->rid, sizeof(r->request_id));
    gw_strlcpy(r->node, gw->cfg.node_id, sizeof(r->node));
    r->created_ms = gw_now_ms();
    r->expires_ms = r->created_ms + (int64_t)gw->cfg.idem.retention_days * 86400000;
    i->cont = cont;
    gw_call_submit(c, 1, claim_run, claim_done);
}

/* ---- what the client gets ---- */

static int capturing(const struct gw_call *c)
{
    return c->idem != NULL && c->idem->claimed && !c->idem->complete;
}

static void capture_header(void *arg, const char *name, const char *value)
{
    struct gw_idem *i = arg;
    if (!i->too_large && kept_header(name) &&
        gw_buf_printf(&i->head, "%s: %s\n", name, value) != 0)
        i->too_large = 1;
}

void gw_idem_capture_head(struct gw_call *c, int status, const char *content_type)
{
    struct gw_idem *i = c->idem;

    if (!capturing(c) || i->head_done || c->cl.ctx == NULL)
        return;
    i->head_done = 1;
    i->status = status;
    if (status >= 200 && status < 300)
        i->executed = 1;
    int rc = gw_buf_printf(&i->head, "Content-Type: %s\n", content_type);
    if (rc != 0)
        i->too_large = 1;
    else
        c->cl.ops->each_header(&c->cl, capture_header, i);
}

void gw_idem_capture_body(struct gw_call *c, const void *p, size_t n)
{
    struct gw_idem *i = c->idem;

    if (!capturing(c) || i->too_large)
        return;
    if (gw_buf_add(&i->body, p, n) != 0) {
        i->too_large = 1;
        gw_buf_cleanup(&i->body);
    }
}

void gw_idem_capture_done(struct gw_call *c)
{
    if (capturing(c) && c->idem->head_done)
        c->idem->complete = 1;
}

void gw_idem_attempt_outcome(struct gw_call *c, enum gw_outcome o)
{
    struct gw_idem *i = c->idem;
    if (i == NULL)
        return;
    if (o == GW_OUT_UNCERTAIN)
        i->uncertain = 1;
    else if (o == GW_OUT_REJECTED || o == GW_OUT_BROKEN)
        i->executed = 1; /* the provider answered: deterministic, or did work it charged */
}

void gw_idem_interrupted(struct gw_call *c)
{
    struct gw_idem *i = c->idem;
    if (i == NULL || i->complete)
        return;
    i->interrupted = 1;
    /* a request curl began to send, or a stream half relayed: the provider may be working */
    if ((c->running && c->sends > 0) || c->reply_started)
        i->uncertain = 1;
}

/* ---- the end ---- */

struct idem_end_job {
    struct gw_store_job job;
    struct gw_idem_rec rec;
    int release;
    int rc;
};

static void end_run(struct gw_store_job *j, struct gw_store *s)
{
    struct idem_end_job *e = (struct idem_end_job *)j;
    e->rc = e->release ? gw_store_idem_release(s, &e->rec) : gw_store_idem_complete(s, &e->rec);
}

static void end_done(struct gw_store_job *j)
{
    struct idem_end_job *e = (struct idem_end_job *)j;
    if (j->batch_rc != 0)
        e->rc = j->batch_rc;
    if (e->rc != 0)
        GW_LOG_ERROR("store", "req=%s cannot %s the idempotency record: %s (it stays in flight "
                     "until this node restarts)", e->rec.request_id,
                     e->release ? "release" : "complete", gw_strerror(e->rc));
    gw_idem_rec_cleanup(&e->rec);
    gw_free(e);
}

void gw_idem_end(struct gw_call *c)
{
    struct gw_idem *i = c->idem;
    const char *state;

    if (i == NULL)
        return;
    c->idem = NULL;
    if (!i->claimed) {
        idem_free(i);
        return;
    }
    if (i->complete && !i->interrupted && i->executed)
        state = i->too_large ? "too_large" : "done"; /* the answer the provider's work gave */
    else if (i->uncertain || i->executed)
        state = "uncertain"; /* work may have been done, and its answer is not whole */
    else
        state = NULL; /* nothing ran upstream: a retry may */
    struct idem_end_job *e = gw_calloc(1, sizeof(*e));
    if (e == NULL) {
        GW_LOG_ERROR("idem", "req=%s out of memory: the idempotency record stays in flight",
                     c->rid);
        idem_free(i);
        return;
    }
    e->rec = i->rec;
    i->rec.headers = i->rec.body = NULL;
    e->release = state == NULL;
    if (state != NULL) {
        gw_strlcpy(e->rec.state, state, sizeof(e->rec.state));
        e->rec.completed_ms = gw_now_ms();
        if (strcmp(state, "done") == 0) {
            e->rec.status = i->status;
            e->rec.body_len = i->body.len;
            e->rec.headers = gw_buf_take(&i->head);
            e->rec.body = gw_buf_take(&i->body);
            if (e->rec.body == NULL) /* an empty body */
                e->rec.body = gw_strdup("");
            if (e->rec.headers == NULL)
                e->rec.headers = gw_strdup("");
            if (e->rec.headers == NULL || e->rec.body == NULL) {
                gw_idem_rec_cleanup(&e->rec);
                gw_strlcpy(e->rec.state, "too_large", sizeof(e->rec.state));
            }
        }
    }
    GW_LOG_INFO("idem", "req=%s key %s: %s", c->rid, e->release ? "given back" : "kept",
                e->release ? "nothing was executed" : e->rec.state);
    e->job.run = end_run;
    e->job.done = end_done;
    e->job.writes = 1;
    gw_store_submit(c->w->exec, &e->job);
    idem_free(i);
}

/* ---- expired records ---- */

struct gw_idem_purger {
    struct gw_store_job job; /* first: the job is the purger */
    struct gw_worker *w;
    struct event *ev;
    int pending;
    int stopping;
    int rc;
    int64_t count;
    int64_t convs; /* conversations deleted for retention */
};

static void purge_schedule(struct gw_idem_purger *p, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(p->ev, &tv);
}

static void purge_run(struct gw_store_job *j, struct gw_store *s)
{
    struct gw_idem_purger *p = (struct gw_idem_purger *)j;
    int64_t now = gw_now_ms(), sessions = 0;
    p->rc = gw_store_idem_purge(s, now, IDEM_PURGE_BATCH, &p->count);
    /* and what expired of subject sessions: codes, sessions, nonces */
    if (p->rc == 0)
        p->rc = gw_store_session_purge(s, now, IDEM_PURGE_BATCH, &sessions);
    /* and conversations past their org's retention */
    p->convs = 0;
    if (p->rc == 0)
        p->rc = gw_store_conv_purge(s, now, IDEM_PURGE_BATCH, &p->convs);
}

static void purge_done(struct gw_store_job *j)
{
    struct gw_idem_purger *p = (struct gw_idem_purger *)j;
    struct gw *gw = p->w->gw;

    p->pending = 0;
    if (j->batch_rc != 0)
        p->rc = j->batch_rc;
    if (p->stopping) {
        gw_free(p);
        return;
    }
    if (p->rc != 0) {
        GW_LOG_WARN("idem", "purging expired idempotency records failed: %s; retrying later",
                    gw_strerror(p->rc));
        purge_schedule(p, gw->cfg.idem.purge_interval_ms);
        return;
    }
    atomic_fetch_add(&gw->idem_purged, p->count);
    atomic_store(&gw->idem_last_purge_ms, gw_now_ms());
    if (p->count > 0)
        GW_LOG_INFO("idem", "purged %lld expired idempotency record(s)", (long long)p->count);
    if (p->convs > 0)
        GW_LOG_INFO("conv", "deleted %lld conversation(s) past their org's retention",
                    (long long)p->convs);
    /* a full batch: more are due; the loop serves requests in between */
    int more = p->count >= IDEM_PURGE_BATCH || p->convs >= IDEM_PURGE_BATCH;
    purge_schedule(p, more ? IDEM_PURGE_AGAIN_MS : gw->cfg.idem.purge_interval_ms);
}

static void on_purge_timer(evutil_socket_t fd, short what, void *arg)
{
    struct gw_idem_purger *p = arg;
    (void)fd;
    (void)what;
    p->pending = 1;
    p->job.run = purge_run;
    p->job.done = purge_done;
    p->job.writes = 1;
    gw_store_submit(p->w->exec, &p->job);
}

int gw_idem_purger_start(struct gw_worker *w)
{
    struct gw_idem_purger *p = gw_calloc(1, sizeof(*p));
    if (p == NULL)
        return GW_ENOMEM;
    p->w = w;
    p->ev = evtimer_new(w->base, on_purge_timer, p);
    if (p->ev == NULL) {
        gw_free(p);
        return GW_ENOMEM;
    }
    w->purger = p;
    purge_schedule(p, w->gw->cfg.idem.purge_interval_ms);
    return 0;
}

void gw_idem_purger_stop(struct gw_worker *w)
{
    struct gw_idem_purger *p = w->purger;
    if (p == NULL)
        return;
    w->purger = NULL;
    event_free(p->ev);
    p->ev = NULL;
    if (p->pending)
        p->stopping = 1; /* its done frees it, when the executor drains */
    else
        gw_free(p);
}
