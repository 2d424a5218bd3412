/*
 * core/attempt — one upstream attempt of a chat call: the transfer, its timers, and relaying
 * the answer (streamed event by event, or translated whole).
 *
 * An attempt ends exactly once: on_done (curl finished), on_timer (no first byte, or silence
 * after it), or gw_attempt_cancel (the pipeline ends it). Before the first byte reaches the
 * client, every failure is classified (route/fallback.h) and handed to gw_call_attempt_failed,
 * which decides whether another target is tried; after it, the stream ends with an SSE error
 * event and nothing is retried.
 *
 * Client-facing errors never carry provider text, upstream URLs or credentials; the server log
 * keeps the provider's own words with the request id.
 */
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/call.h"
#include "http/reply.h"
#include "http/upstream.h"
#include "util/json.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/mem.h"
#include "util/splice.h"
#include "util/util.h"

#define GW_SSE_MAX_EVENT (4u << 20)
/* A client that reads slower than the provider writes: above this much unsent output the
 * upstream transfer is paused, and resumed once the client's buffer has drained. */
#define GW_CLIENT_HIGH_WATER (1u << 20)

static int on_sse_event(void *arg, const char *event, const char *data, size_t len);
static int emit_chunk(void *arg, json_t *chunk);
static int emit_raw_chunk(void *arg, const char *data, const struct gw_scan *scan);
static void on_timer(evutil_socket_t fd, short what, void *arg);

/* The adapter's stream hands its chunks to the call: as trees, or as the provider's bytes where
 * they already are canonical (not for the Messages dialect, which translates every chunk). */
static void stream_callbacks(struct gw_call *c)
{
    c->st.emit = emit_chunk;
    c->st.emit_raw = c->dialect == GW_DIALECT_MESSAGES ? NULL : emit_raw_chunk;
    c->st.arg = c;
}

/* The largest stream event taken: limits.max_upstream_body_bytes bounds one event as it bounds
 * a whole answer (every adapter alike, not only those relayed through c->out). */
static size_t sse_max_event(const struct gw_call *c)
{
    size_t lim = c->w->gw->cfg.max_upstream_body;
    return lim < GW_SSE_MAX_EVENT ? lim : GW_SSE_MAX_EVENT;
}

void gw_attempt_init(struct gw_call *c)
{
    gw_buf_init(&c->body, c->w->gw->cfg.max_upstream_body);
    gw_buf_init(&c->out, c->w->gw->cfg.max_upstream_body + 4096);
    gw_buf_init(&c->relay, c->w->gw->cfg.max_upstream_body);
    gw_buf_init(&c->relay_delta, GW_SSE_MAX_EVENT);
    gw_sse_init(&c->sse, sse_max_event(c), on_sse_event, c);
    stream_callbacks(c);
    c->retry_after_ms = -1;
    c->timer_ev = evtimer_new(c->w->base, on_timer, c);
}

void gw_attempt_reset(struct gw_call *c)
{
    gw_upstream_easy_free(c->w->upstream, c->easy, c->hdrs);
    c->easy = NULL;
    c->hdrs = NULL;
    gw_upstream_req_cleanup(&c->up);
    if (c->ops != NULL && c->ops->stream_cleanup != NULL)
        c->ops->stream_cleanup(&c->st);
    memset(&c->st, 0, sizeof(c->st));
    stream_callbacks(c);
    gw_sse_cleanup(&c->sse);
    gw_sse_init(&c->sse, sse_max_event(c), on_sse_event, c);
    gw_buf_reset(&c->body);
    gw_buf_reset(&c->relay);
    gw_buf_reset(&c->relay_delta);
    memset(&c->usage, 0, sizeof(c->usage));
    c->upstream_status = 0;
    c->retry_after_ms = -1;
    c->got_first_byte = 0;
    c->sse_error = 0;
    c->stream_rc = 0;
    c->paused = 0;
    c->sends = 0;
    c->emitted_chars = 0;
    c->over_reservation = 0;
}

void gw_attempt_cancel(struct gw_call *c)
{
    if (c->running) {
        gw_upstream_cancel(c->w->upstream, c->easy);
        c->running = 0;
    }
    if (c->timer_ev != NULL)
        evtimer_del(c->timer_ev);
}

json_t *gw_call_usage_json(const struct gw_call *c, const struct gw_usage *u)
{
    return json_pack("{s:I,s:I,s:f}", "tokens_in", (json_int_t)u->input_tokens, "tokens_out",
                     (json_int_t)u->output_tokens, "cost_usd", (double)c->row.cost_micros / 1e6);
}

/* ---- failures ---- */

static void fail_set(struct gw_failure *f, enum gw_outcome o, int status, const char *type,
                     const char *code, const char *msg)
{
    memset(f, 0, sizeof(*f));
    f->outcome = o;
    f->status = status;
    f->type = type;
    f->code = code;
    f->msg = msg;
}

/* A non-2xx answer: the one place where provider errors are mapped for the client. */
static void fail_from_status(struct gw_call *c, struct gw_failure *f)
{
    struct gw_upstream_error e;
    char msg[300];

    c->ops->map_error((int)c->upstream_status, c->body.data ? c->body.data : "", c->body.len,
                      &e);
    gw_log_escape(msg, sizeof(msg), e.message, strlen(e.message));
    GW_LOG_WARN("upstream", "req=%s provider=%s model=%s status=%d type=%s retryable=%d "
                "message=\"%s\"", c->rid, c->ops->name, c->model->id, e.status, e.type,
                e.retryable, msg);
    enum gw_outcome o = gw_outcome_of_status(e.status, e.auth_failed);
    /* the provider's Retry-After: its header, else where its body says it */
    int64_t ra_ms = c->retry_after_ms >= 0 ? c->retry_after_ms : e.retry_after_s * 1000LL;
    int ra = (int)((ra_ms + 999) / 1000);
    if (o == GW_OUT_AUTH) {
        fail_set(f, o, 502, "upstream_error", "upstream_auth_failed",
                 "the provider rejected the gateway's credentials");
        f->skip_provider = 1;
    } else if (o == GW_OUT_RATE_LIMITED) {
        fail_set(f, o, 429, "rate_limit_error", "upstream_rate_limited",
                 "the provider is rate limiting requests; retry later");
        f->retry_after_s = ra > 0 ? ra : 1;
        f->skip_provider = !e.retryable; /* e.g. OpenAI insufficient_quota */
    } else if (o == GW_OUT_REJECTED) {
        fail_set(f, o, 400, "invalid_request_error", "upstream_rejected_request", NULL);
        snprintf(f->msgbuf, sizeof(f->msgbuf), "the provider rejected the request (%s %d)",
                 c->ops->name, e.status);
        f->msg = f->msgbuf;
    } else {
        fail_set(f, o, 502, "upstream_error", "upstream_error",
                 "the provider failed to answer; try again");
        f->retry_after_s = ra;
    }
    f->cooldown_ms = ra_ms;
    f->upstream_status = e.status;
}

/* Was the request's body handed over in full (it may then have been executed)? */
static int request_sent(struct gw_call *c)
{
    curl_off_t up = 0;
    if (c->sends > 1)
        return 1; /* curl found the connection dead after sending: see on_prereq */
    curl_easy_getinfo(c->easy, CURLINFO_SIZE_UPLOAD_T, &up);
    return up >= (curl_off_t)c->up.body_len;
}

/* A transfer failure before any answer byte: was the request provably never executed? */
static void fail_from_transport(struct gw_call *c, CURLcode result, struct gw_failure *f)
{
    int ok_status = c->upstream_status >= 200 && c->upstream_status < 300;
    const char *why = curl_easy_strerror(result);
    char eb[CURL_ERROR_SIZE + 1];

    gw_log_escape(eb, sizeof(eb), why, strlen(why));
    GW_LOG_WARN("upstream", "req=%s provider=%s model=%s transfer failed: curl=%d %s (sent=%d)",
                c->rid, c->ops->name, c->model->id, (int)result, eb, c->sends);
    switch (result) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
        fail_set(f, GW_OUT_UNSENT, 502, "upstream_error", "upstream_error",
                 "the provider could not be reached");
        return;
    default:
        break;
    }
    if (c->got_first_byte && ok_status) {
        if (result == CURLE_OPERATION_TIMEDOUT)
            fail_set(f, GW_OUT_BROKEN, 504, "upstream_error", "upstream_timeout",
                     "the provider did not finish its answer in time");
        else if (c->sse_error)
            fail_set(f, GW_OUT_BROKEN, 502, "upstream_error", "upstream_bad_response",
                     "the provider's answer was too large");
        else
            fail_set(f, GW_OUT_BROKEN, 502, "upstream_error", "upstream_bad_response",
                     "the provider's answer was cut short");
        return;
    }
    if (c->got_first_byte) { /* an error status whose body was lost: it did not do the work */
        fail_set(f, GW_OUT_UNAVAILABLE, 502, "upstream_error", "upstream_error",
                 "the provider failed to answer; try again");
        f->upstream_status = (int)c->upstream_status;
        return;
    }
    curl_off_t connect_us = 0;
    curl_easy_getinfo(c->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
    /* no connect time: never connected, unless curl sent it on a pooled connection (which has
     * none) and wanted to send it again (see on_prereq): then it is not known */
    if ((connect_us == 0 && c->sends <= 1) || !request_sent(c)) {
        fail_set(f, GW_OUT_UNSENT, result == CURLE_OPERATION_TIMEDOUT ? 504 : 502,
                 "upstream_error", result == CURLE_OPERATION_TIMEDOUT ? "upstream_timeout"
                                                                      : "upstream_error",
                 "the provider could not be reached");
        return;
    }
    if (result == CURLE_OPERATION_TIMEDOUT)
        fail_set(f, GW_OUT_UNCERTAIN, 504, "upstream_error", "upstream_timeout",
                 "the provider did not answer in time");
    else
        fail_set(f, GW_OUT_UNCERTAIN, 502, "upstream_error", "uncertain_upstream_state",
                 "the connection to the provider was lost after the request was sent; it may "
                 "or may not have been processed");
}

/* ---- streaming to the client ---- */

/* Bytes queued for the client that the socket has not taken yet. */
static size_t client_backlog(struct gw_call *c) { return c->cl.ops->backlog(&c->cl); }

/* Close the object being written in out with its last member, the OpenAI-shaped usage (token
 * counts, details and cost_usd); *count as for gw_splice_member_*. */
static int close_with_usage(const struct gw_call *c, const struct gw_usage *u, struct gw_buf *out,
                            int *count)
{
    static const char *const text[] = {
        "\"usage\":{\"prompt_tokens\":", ",\"completion_tokens\":", ",\"total_tokens\":",
        ",\"prompt_tokens_details\":{\"cached_tokens\":",
        "},\"completion_tokens_details\":{\"reasoning_tokens\":", "},\"cost_usd\":"};
    const int64_t n[] = {u->input_tokens, u->output_tokens, u->input_tokens + u->output_tokens,
                         u->cached_input_tokens, u->reasoning_tokens};
    char num[GW_JSON_MICROS_MAX];
    int rc = *count > 0 ? gw_buf_add(out, ",", 1) : 0;
    for (size_t i = 0; rc == 0 && i < sizeof(n) / sizeof(n[0]); i++) {
        size_t len = gw_int_text(num, n[i]);
        if ((rc = gw_buf_adds(out, text[i])) == 0)
            rc = gw_buf_add(out, num, len);
    }
    gw_json_micros_text(num, sizeof(num), c->row.cost_micros);
    if (rc == 0 && (rc = gw_buf_adds(out, text[5])) == 0 && (rc = gw_buf_adds(out, num)) == 0)
        rc = gw_buf_add(out, "}}", 2);
    return rc;
}

/* The client's output buffer drained: let a paused upstream go on. */
void gw_attempt_client_drained(void *arg)
{
    struct gw_call *c = arg;
    if (c->paused && c->easy != NULL) {
        c->paused = 0;
        GW_LOG_DEBUG("http", "req=%s client caught up: resuming the upstream transfer", c->rid);
        curl_easy_pause(c->easy, CURLPAUSE_CONT);
    }
}

/* One SSE event to the client (event: the name, NULL for a plain data event). */
static int send_sse_event(struct gw_call *c, const char *event, const char *data, size_t len)
{
    if (c->idem != NULL) { /* kept for a replay of this key */
        if (event != NULL) {
            gw_idem_capture_body(c, "event: ", 7);
            gw_idem_capture_body(c, event, strlen(event));
            gw_idem_capture_body(c, "\n", 1);
        }
        gw_idem_capture_body(c, "data: ", 6);
        gw_idem_capture_body(c, data, len);
        gw_idem_capture_body(c, "\n\n", 2);
    }
    c->cl.ops->stream_data(&c->cl, event, data, len);
    return 0;
}

static int send_sse_data(struct gw_call *c, const char *data, size_t len)
{
    return send_sse_event(c, NULL, data, len);
}

/* The Messages dialect's translator hands its events here. */
static int send_messages_event(void *arg, const char *event, const char *data, size_t len)
{
    return send_sse_event(arg, event, data, len);
}

/* ---- the Messages dialect answered by Anthropic: its own answer, relayed ---- */

/* A Messages request on an Anthropic model gets Anthropic's answer as it is (thinking blocks,
 * signatures, stop sequences, cache counts), with the gateway's id, model and cost. */
static int relays(const struct gw_call *c)
{
    return c->dialect == GW_DIALECT_MESSAGES && c->ops != NULL &&
           strcmp(c->ops->name, "anthropic") == 0;
}

/* The relayed event's data with the gateway's id and model (message_start) or cost
 * (message_delta); a new string, or NULL. */
static char *relay_rewrite(struct gw_call *c, const char *data, size_t len, int is_start)
{
    struct gw_errbuf eb = {{0}};
    json_t *ev = gw_json_parse(data, len, &eb);
    json_t *msg = json_object_get(ev, "message");
    char *s = NULL;
    if (is_start && json_is_object(msg)) {
        json_object_set_new(msg, "id", json_string(c->stream_id));
        json_object_set_new(msg, "model", json_string(c->opts.model));
    } else if (!is_start && json_is_object(ev)) {
        json_t *u = json_object_get(ev, "usage");
        if (!json_is_object(u))
            json_object_set_new(ev, "usage", u = json_object());
        json_object_set_new(u, "cost_usd", json_real((double)c->row.cost_micros / 1e6));
    }
    if (json_is_object(ev))
        s = gw_json_dump(ev);
    json_decref(ev);
    return s;
}

/* One event of Anthropic's stream, already read by the adapter: to the client (held until
 * the reply starts; message_delta and message_stop wait for the end; error events are the
 * gateway's own). */
static int relay_event(struct gw_call *c, const char *event, const char *data, size_t len)
{
    if (event == NULL || strcmp(event, "message_stop") == 0 || strcmp(event, "error") == 0)
        return 0;
    if (strcmp(event, "message_delta") == 0) {
        gw_buf_reset(&c->relay_delta);
        return gw_buf_add(&c->relay_delta, data, len);
    }
    char *start = strcmp(event, "message_start") == 0 ? relay_rewrite(c, data, len, 1) : NULL;
    const char *d = start != NULL ? start : data;
    size_t n = start != NULL ? strlen(start) : len;
    int rc = 0;
    if (c->reply_started)
        rc = send_sse_event(c, event, d, n);
    else if ((rc = gw_buf_add(&c->relay, event, strlen(event) + 1)) == 0 &&
             (rc = gw_buf_add(&c->relay, d, n)) == 0)
        rc = gw_buf_add(&c->relay, "", 1); /* name NUL data NUL */
    gw_free(start);
    return rc;
}

/* The reply started: the events held until now (name NUL data NUL ...). */
static void relay_flush(struct gw_call *c)
{
    const char *p = c->relay.data, *end = p + c->relay.len;
    while (p != NULL && p < end) {
        const char *data = p + strlen(p) + 1;
        size_t n = strlen(data);
        send_sse_event(c, p, data, n);
        p = data + n + 1;
    }
    gw_buf_reset(&c->relay);
}

/* The stream's end as Anthropic sent it (its message_delta with the cost, message_stop). */
static void relay_end(struct gw_call *c)
{
    char *d = c->relay_delta.len > 0 ? relay_rewrite(c, c->relay_delta.data, c->relay_delta.len, 0)
                                     : NULL;
    if (d != NULL)
        send_sse_event(c, "message_delta", d, strlen(d));
    gw_free(d);
    static const char stop[] = "{\"type\":\"message_stop\"}";
    send_sse_event(c, "message_stop", stop, sizeof(stop) - 1);
}

static void start_stream_reply(struct gw_call *c)
{
    struct gw_client *cl = &c->cl;
    gw_call_answer_headers(c);
    gw_client_reply_headers(cl, "text/event-stream", c->rid);
    cl->ops->add_header(cl, "Cache-Control", "no-cache");
    cl->ops->add_header(cl, "X-Accel-Buffering", "no");
    gw_idem_capture_head(c, 200, "text/event-stream");
    cl->ops->stream_start(cl, 200);
    c->reply_started = 1;
    if (relays(c))
        relay_flush(c);
    else if (c->dialect == GW_DIALECT_MESSAGES)
        gw_messages_stream_init(&c->ms, c->stream_id, c->opts.model, send_messages_event, c);
    /* no other attempt can follow now: the request itself is not needed any more (a long
     * stream should not hold it) */
    json_decref(c->canon);
    c->canon = NULL;
    json_decref(c->native);
    c->native = NULL;
    c->rq.body = NULL;
}

/* The provider went past the output it was asked for and we reserved: stop there (counting at
 * least a token per 8 characters relayed). */
static int over_reservation(struct gw_call *c)
{
    if (!c->capped || c->max_out <= 0)
        return 0;
    int64_t out = c->st.usage.output_tokens, est = (c->emitted_chars + 7) / 8;
    if ((est > out ? est : out) <= gw_call_out_reserved(c))
        return 0;
    c->over_reservation = 1;
    return GW_ETOOBIG;
}

static int emit_chunk(void *arg, json_t *chunk)
{
    struct gw_call *c = arg;

    if (c->cl.ctx == NULL)
        return GW_EIO;
    c->emitted_chars += gw_chunk_text_chars(chunk);
    gw_memory_chunk(c, chunk);
    if (over_reservation(c))
        return GW_ETOOBIG;
    if (!c->reply_started)
        start_stream_reply(c);
    if (relays(c)) /* on_sse_event relays the provider's event itself */
        return 0;
    if (c->dialect == GW_DIALECT_MESSAGES)
        return gw_messages_stream_chunk(&c->ms, chunk);
    json_object_set_new(chunk, "id", json_string(c->stream_id));
    json_object_set_new(chunk, "object", json_string("chat.completion.chunk"));
    json_object_set_new(chunk, "created", json_integer(c->created));
    json_object_set_new(chunk, "model", json_string(c->opts.model));
    json_object_del(chunk, "usage");
    char *s = gw_json_dumps(chunk, GW_JSON_OUT_PRECISION);
    if (s == NULL)
        return GW_ENOMEM;
    int rc = send_sse_data(c, s, strlen(s));
    gw_free(s);
    return rc;
}

/* Start c->out with "{" and a chunk's id, object, created and model. */
static int chunk_head(struct gw_call *c)
{
    struct gw_buf *o = &c->out;
    int n = 0, rc;

    gw_buf_reset(o);
    if ((rc = gw_buf_add(o, "{", 1)) || (rc = gw_splice_member_str(o, &n, "id", c->stream_id)) ||
        (rc = gw_splice_member_raw(o, &n, "object", "\"chat.completion.chunk\"", 23)) ||
        (rc = gw_splice_member_int(o, &n, "created", c->created)))
        return rc;
    return gw_splice_member_str(o, &n, "model", c->opts.model);
}

/* The same for a chunk relayed as the provider's bytes, its id, object, created, model and
 * usage cut by the adapter's scan. */
static int emit_raw_chunk(void *arg, const char *data, const struct gw_scan *scan)
{
    struct gw_call *c = arg;
    struct gw_buf *o = &c->out;
    int n = 1, rc;

    if (c->cl.ctx == NULL)
        return GW_EIO;
    c->emitted_chars += scan->text_chars;
    gw_memory_chunk_raw(c, data, scan);
    if (over_reservation(c))
        return GW_ETOOBIG;
    if (!c->reply_started)
        start_stream_reply(c);
    if ((rc = chunk_head(c)) || (rc = gw_splice_kept(o, data, &scan->sp, &n)) ||
        (rc = gw_buf_add(o, "}", 1)))
        return rc;
    return send_sse_data(c, o->data, o->len);
}

static int on_sse_event(void *arg, const char *event, const char *data, size_t len)
{
    struct gw_call *c = arg;
    int rc = c->ops->stream_event(&c->st, event, data, len);
    if (rc == 0 && relays(c))
        rc = relay_event(c, event, data, len);
    if (rc != 0 && c->stream_rc == 0)
        c->stream_rc = rc;
    return rc;
}

void gw_attempt_finish_stream(struct gw_call *c, const char *err_code, const char *err_msg)
{
    if (c->cl.ctx == NULL)
        return;
    if (relays(c) && err_code == NULL) {
        relay_end(c);
    } else if (c->dialect == GW_DIALECT_MESSAGES) {
        gw_messages_stream_usage(&c->ms, &c->st.usage, (double)c->row.cost_micros / 1e6);
        (void)(err_code != NULL ? gw_messages_stream_error(&c->ms, 502, err_code, err_msg)
                                : gw_messages_stream_end(&c->ms));
    }
    if (err_code != NULL) {
        if (c->dialect != GW_DIALECT_MESSAGES) {
            json_t *e = gw_error_body("upstream_error", err_code, err_msg, c->rid);
            char *s = e ? gw_json_dumps(e, GW_JSON_OUT_PRECISION) : NULL;
            if (s != NULL)
                send_sse_data(c, s, strlen(s));
            gw_free(s);
            json_decref(e);
        }
        c->row.status = 502;
        gw_strlcpy(c->row.error_code, err_code, sizeof(c->row.error_code));
    } else if (c->dialect == GW_DIALECT_MESSAGES) {
        c->row.status = 200;
    } else {
        if (c->opts.include_usage) {
            struct gw_buf *o = &c->out;
            int n = 1;
            if (chunk_head(c) == 0 && gw_splice_member_raw(o, &n, "choices", "[]", 2) == 0 &&
                close_with_usage(c, &c->st.usage, o, &n) == 0)
                send_sse_data(c, o->data, o->len);
        }
        send_sse_data(c, "[DONE]", 6);
        c->row.status = 200;
    }
    gw_idem_capture_done(c);
    c->cl.ops->watch(&c->cl, 0);
    c->cl.ops->stream_end(&c->cl);
    c->cl.ctx = NULL;
}

/* ---- curl callbacks ---- */

static void arm_timer_us(struct gw_call *c, int64_t us)
{
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    evtimer_add(c->timer_ev, &tv);
}

/* Upstream bytes arrived: from the first one on, the timer measures silence. Every header line
 * and every chunk of the answer comes here: the time is noted, and the timer, set once for the
 * whole silence allowed, looks at that time when it fires (re-arming a timer costs more). */
static void upstream_alive(struct gw_call *c)
{
    c->alive_us = gw_mono_us();
    if (!c->got_first_byte) {
        c->got_first_byte = 1;
        arm_timer_us(c, (int64_t)c->to.idle_ms * 1000);
    }
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    struct gw_call *c = arg;
    size_t len = sz * n;

    upstream_alive(c);
    if (len == 0 || (p[0] | 0x20) != 'r') /* not Retry-After(-Ms): no clock, no parse */
        return len;
    int64_t ra = gw_upstream_retry_after_ms(p, len, gw_now_ms());
    if (ra >= 0 && (c->retry_after_ms < 0 || strncasecmp(p, "retry-after-ms", 14) == 0))
        c->retry_after_ms = ra; /* the finer retry-after-ms wins */
    return len;
}

/* Is the answer's Content-Type an event stream (or absent: then it is read as one)? */
static int answer_is_sse(struct gw_call *c)
{
    static const char sse[] = "text/event-stream";
    const char *ct = NULL;

    curl_easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &ct);
    if (ct == NULL)
        return 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return strncasecmp(ct, sse, sizeof(sse) - 1) == 0 &&
           (ct[sizeof(sse) - 1] == '\0' || ct[sizeof(sse) - 1] == ';' ||
            ct[sizeof(sse) - 1] == ' ');
}

static size_t on_write(char *p, size_t sz, size_t n, void *arg)
{
    struct gw_call *c = arg;
    size_t len = sz * n;

    upstream_alive(c);
    if (c->upstream_status == 0) { /* the answer's first body bytes */
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->upstream_status);
        if (c->opts.stream && c->upstream_status >= 200 && c->upstream_status < 300 &&
            !answer_is_sse(c)) {
            /* a whole answer, an HTML page: not the stream asked for, however it ends */
            GW_LOG_WARN("upstream", "req=%s provider=%s answered a stream request with "
                        "another content type", c->rid, c->ops->name);
            c->stream_rc = GW_EPARSE;
            c->sse_error = 1;
            return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
        }
    }
    if (c->opts.stream && c->upstream_status >= 200 && c->upstream_status < 300) {
        if (c->reply_started && client_backlog(c) > GW_CLIENT_HIGH_WATER) {
            /* curl keeps these bytes and hands them over again after the resume */
            c->paused = 1;
            GW_LOG_DEBUG("http", "req=%s client is slow: pausing the upstream transfer", c->rid);
            return CURL_WRITEFUNC_PAUSE;
        }
        int rc = gw_sse_feed(&c->sse, p, len);
        if (rc != 0) {
            if (c->stream_rc == 0)
                c->stream_rc = rc;
            c->sse_error = 1;
            return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
        }
        return len;
    }
    if (gw_buf_add(&c->body, p, len) != 0) {
        c->sse_error = 1;
        return 0;
    }
    return len;
}

/* curl is about to send the request on a connection. A second time means it found a reused
 * connection dead after sending and wants to send it again by itself: the first copy may have
 * been executed, so the pipeline decides instead (the attempt ends as uncertain). */
static int on_prereq(void *arg, char *remote_ip, char *local_ip, int remote_port, int local_port)
{
    struct gw_call *c = arg;
    (void)remote_ip;
    (void)local_ip;
    (void)remote_port;
    (void)local_port;
    return ++c->sends > 1 ? CURL_PREREQFUNC_ABORT : CURL_PREREQFUNC_OK;
}

/* An answer the adapter scanned: relayed as the provider's bytes with the gateway's members. */
static int send_scanned(struct gw_call *c, const struct gw_scan *scan)
{
    struct gw_buf *o = &c->out;
    int n = 0, rc;

    gw_buf_reset(o);
    if ((rc = gw_buf_add(o, "{", 1)) ||
        (!scan->has_id && (rc = gw_splice_member_str(o, &n, "id", c->stream_id))) ||
        (rc = gw_splice_member_raw(o, &n, "object", "\"chat.completion\"", 17)) ||
        (rc = gw_splice_member_int(o, &n, "created", c->created)) ||
        (rc = gw_splice_member_str(o, &n, "model", c->opts.model)) ||
        (rc = gw_splice_kept(o, c->body.data, &scan->sp, &n)) ||
        (rc = gw_splice_member_str(o, &n, "provider", c->ops->name)) ||
        (rc = gw_splice_member_str(o, &n, "route_method", c->route_method)) ||
        (rc = close_with_usage(c, &c->usage, o, &n)))
        return rc;
    gw_call_send_text(c, 200, o->data, o->len, 0);
    return 0;
}

/* A translated answer (a tree without usage): serialised, with the usage members appended. */
static int send_with_usage(struct gw_call *c, const json_t *answer)
{
    struct gw_buf *o = &c->out;
    char *s = gw_json_dumps(answer, GW_JSON_OUT_PRECISION);
    size_t len = s != NULL ? strlen(s) : 0;
    int n = 1, rc = len > 2 ? 0 : GW_ENOMEM; /* at least {"choices":[]} */

    gw_buf_reset(o);
    if (rc == 0 && (rc = gw_buf_add(o, s, len - 1)) == 0 &&
        (rc = close_with_usage(c, &c->usage, o, &n)) == 0)
        gw_call_send_text(c, 200, o->data, o->len, 0);
    gw_free(s);
    return rc;
}

/* Anthropic's whole answer with the gateway's id, model and cost. */
static json_t *relay_answer(struct gw_call *c)
{
    struct gw_errbuf eb = {{0}};
    json_t *a = gw_json_parse(c->body.data ? c->body.data : "", c->body.len, &eb);
    json_t *u = json_object_get(a, "usage");
    if (!json_is_object(a) || !json_is_object(u)) {
        json_decref(a);
        return NULL;
    }
    json_object_set_new(a, "id", json_string(c->stream_id));
    json_object_set_new(a, "model", json_string(c->opts.model));
    json_object_set_new(u, "cost_usd", json_real((double)c->row.cost_micros / 1e6));
    return a;
}

static void finish_whole(struct gw_call *c)
{
    struct gw_errbuf eb = {{0}};
    json_t *out = NULL;
    struct gw_scan scan;
    const char *body = c->body.data ? c->body.data : "";
    /* adapters whose answers already are canonical relay them without a tree */
    int fast = c->dialect == GW_DIALECT_OPENAI && c->ops->scan != NULL;

    int rc = fast ? c->ops->scan(body, c->body.len, &c->usage, &scan, &eb)
                  : c->ops->parse(body, c->body.len, &out, &c->usage, &eb);
    if (rc != 0) {

        struct gw_failure f;
        GW_LOG_WARN("upstream", "req=%s provider=%s unparseable answer: %s", c->rid, c->ops->name,
                    eb.msg);
        fail_set(&f, GW_OUT_BROKEN, 502, "upstream_error", "upstream_bad_response",
                 "the provider sent an answer the gateway could not read");
        f.upstream_status = (int)c->upstream_status;
        gw_call_attempt_failed(c, &f);
        return;
    }
    if (!c->usage.seen)
        gw_call_usage_estimate(c, &c->usage);
    gw_call_usage_to_row(c, &c->usage);
    c->row.status = 200;
    if (out != NULL)
        gw_memory_answer(c, out);
    else /* fast: the provider's bytes are canonical */
        gw_memory_answer_raw(c, body, &scan);
    if (fast) {
        rc = send_scanned(c, &scan);
    } else if (c->dialect == GW_DIALECT_MESSAGES) {
        json_object_set_new(out, "id", json_string(c->stream_id));
        json_t *m = relays(c) ? relay_answer(c)
                              : gw_messages_answer(out, c->opts.model, &c->usage,
                                                   (double)c->row.cost_micros / 1e6);
        rc = m != NULL ? 0 : GW_ENOMEM;
        if (m != NULL)
            gw_call_send_json(c, 200, m, 0);
        json_decref(m);
    } else if (c->dialect == GW_DIALECT_SIMPLE) {
        json_t *msg = json_object_get(json_array_get(json_object_get(out, "choices"), 0),
                                      "message");
        const char *content = gw_json_str(msg, "content");
        json_t *r = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o}", "content", content ? content : "",
                              "model", c->opts.model, "provider", c->ops->name, "route_method",
                              c->route_method, "request_id", c->rid, "usage",
                              gw_call_usage_json(c, &c->usage));
        if (r != NULL && c->opts.conversation_id[0] != '\0')
            json_object_set_new(r, "conversation_id", json_string(c->opts.conversation_id));
        rc = r != NULL ? 0 : GW_ENOMEM;
        if (r != NULL)
            gw_call_send_json(c, 200, r, 0);
        json_decref(r);
    } else {
        json_object_set_new(out, "object", json_string("chat.completion"));
        json_object_set_new(out, "created", json_integer(c->created));
        json_object_set_new(out, "model", json_string(c->opts.model));
        json_object_set_new(out, "provider", json_string(c->ops->name));
        json_object_set_new(out, "route_method", json_string(c->route_method));
        json_object_del(out, "usage");
        if (!json_is_string(json_object_get(out, "id")))
            json_object_set_new(out, "id", json_string(c->stream_id));
        rc = send_with_usage(c, out);
    }
    if (rc != 0)
        gw_call_reply_error(c, 500, "server_error", "internal_error",
                            "the gateway could not write the answer", 0);
    json_decref(out);
    gw_call_attempt_done(c, 1);
}

static void finish_stream_outcome(struct gw_call *c, CURLcode result)
{
    int truncated = gw_sse_finish(&c->sse);
    struct gw_usage *u = &c->st.usage;
    struct gw_failure f;

    if (c->st.failed) {
        char msg[300];
        gw_log_escape(msg, sizeof(msg), c->st.err.message, strlen(c->st.err.message));
        GW_LOG_WARN("upstream", "req=%s provider=%s stream error type=%s message=\"%s\"", c->rid,
                    c->ops->name, c->st.err.type, msg);
    }
    memset(&f, 0, sizeof(f));
    if (c->over_reservation) {
        GW_LOG_WARN("upstream", "req=%s provider=%s model=%s sent more than the %lld output "
                    "tokens asked for and reserved; cut off", c->rid, c->ops->name,
                    c->model->id, (long long)c->max_out);
        /* what was relayed is what the reservation covers: charge that */
        if (u->input_tokens == 0)
            u->input_tokens = c->input_estimate;
        if (u->output_tokens < gw_call_out_reserved(c))
            u->output_tokens = gw_call_out_reserved(c);
        gw_call_usage_to_row(c, u);
        if (!c->reply_started)
            start_stream_reply(c);
        gw_attempt_finish_stream(c, "reservation_exceeded",
                                 "the answer reached the output reserved for it and was cut off");
        gw_call_attempt_done(c, 1);
        return;
    }
    if (c->st.failed)
        fail_set(&f, c->st.err.retryable ? GW_OUT_UNAVAILABLE : GW_OUT_BROKEN, 502,
                 "upstream_error", "upstream_error",
                 "the provider reported an error during the stream");
    else if (c->stream_rc == GW_EPARSE || c->stream_rc == GW_ETOOBIG)
        fail_set(&f, GW_OUT_BROKEN, 502, "upstream_error", "upstream_bad_response",
                 "the provider sent a stream event the gateway could not read");
    else if (result == CURLE_OPERATION_TIMEDOUT)
        fail_set(&f, GW_OUT_BROKEN, 504, "upstream_error", "upstream_timeout",
                 "the provider took too long to finish the stream");
    else if (result != CURLE_OK || !c->st.complete || truncated || c->sse_error)
        fail_set(&f, GW_OUT_BROKEN, 502, "upstream_error", "upstream_stream_interrupted",
                 "the provider's stream ended before it was complete");
    if (f.code != NULL)
        GW_LOG_WARN("upstream", "req=%s provider=%s stream ended early (%s, curl=%d)", c->rid,
                    c->ops->name, f.code, (int)result);
    if (!u->seen || f.code != NULL)
        gw_call_usage_estimate(c, u);
    gw_call_usage_to_row(c, u);
    if (!c->reply_started) {
        if (f.code != NULL) { /* nothing reached the client yet: another target may serve */
            f.upstream_status = (int)c->upstream_status;
            gw_call_attempt_failed(c, &f);
            return;
        }
        start_stream_reply(c);
    }
    gw_attempt_finish_stream(c, f.code, f.msg);
    gw_call_attempt_done(c, f.code == NULL);
}

static void on_done(void *arg, CURL *easy, CURLcode result)
{
    struct gw_call *c = arg;
    struct gw_failure f;
    (void)easy;

    c->running = 0;
    evtimer_del(c->timer_ev);
    if (c->upstream_status == 0)
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->upstream_status);
    gw_metrics_upstream(c->w->gw->metrics, gw_metrics_provider(c->ops->name),
                        gw_mono_us() - c->attempt_t0_us);
    int ok_status = c->upstream_status >= 200 && c->upstream_status < 300;

    if (ok_status && c->opts.stream) {
        finish_stream_outcome(c, result);
    } else if (result != CURLE_OK) {
        fail_from_transport(c, result, &f);
        gw_call_attempt_failed(c, &f);
    } else if (ok_status) {
        finish_whole(c);
    } else {
        fail_from_status(c, &f);
        gw_call_attempt_failed(c, &f);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct gw_call *c = arg;
    struct gw_failure f;
    (void)fd;
    (void)what;
    if (c->paused) { /* silence because the client is slow, not the provider */
        c->alive_us = gw_mono_us();
        arm_timer_us(c, (int64_t)c->to.idle_ms * 1000);
        return;
    }
    if (c->got_first_byte) { /* bytes came since the timer was set: the rest of the silence */
        int64_t left = (int64_t)c->to.idle_ms * 1000 - (gw_mono_us() - c->alive_us);
        if (left > 0) {
            arm_timer_us(c, left);
            return;
        }
    }
    GW_LOG_WARN("upstream", "req=%s provider=%s model=%s %s for %d ms", c->rid, c->ops->name,
                c->model->id, c->got_first_byte ? "silent" : "no answer",
                c->got_first_byte ? c->to.idle_ms : c->to.first_byte_ms);
    gw_attempt_cancel(c);
    if (c->reply_started) {
        /* mid-stream: charge what was seen (estimated where not reported) */
        gw_call_usage_estimate(c, &c->st.usage);
        gw_call_usage_to_row(c, &c->st.usage);
        gw_attempt_finish_stream(c, "upstream_timeout", "the provider stopped sending");
        gw_call_attempt_done(c, 0);
        return;
    }
    if (c->got_first_byte)
        fail_set(&f, GW_OUT_BROKEN, 504, "upstream_error", "upstream_timeout",
                 "the provider stopped sending");
    else if (!request_sent(c))
        fail_set(&f, GW_OUT_UNSENT, 504, "upstream_error", "upstream_timeout",
                 "the provider did not answer in time");
    else /* the request was sent: the provider may be working on it */
        fail_set(&f, GW_OUT_UNCERTAIN, 504, "upstream_error", "upstream_timeout",
                 "the provider did not answer in time");
    f.upstream_status = (int)c->upstream_status;
    gw_call_attempt_failed(c, &f);
}

int gw_attempt_start(struct gw_call *c)
{
    c->attempt_t0_us = gw_mono_us();
    struct gw_easy_opts o = {
        .url = c->up.url,
        .headers = (const char *const *)c->up.headers,
        .nheaders = c->up.nheaders,
        .body = c->up.body,
        .body_len = c->up.body_len,
        .sse = c->opts.stream,
        .connect_ms = c->to.connect_ms,
        .total_ms = c->to.total_ms,
        .on_write = on_write,
        .on_header = on_header,
        .arg = c,
    };
    int rc = gw_upstream_easy_new(c->w->upstream, &o, &c->easy, &c->hdrs);
    if (rc != 0)
        return rc;
    curl_easy_setopt(c->easy, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(c->easy, CURLOPT_PREREQDATA, c);
    if (c->opts.stream && c->ops->stream_init != NULL &&
        (rc = c->ops->stream_init(&c->st)) != 0)
        return rc;
    if ((rc = gw_upstream_start(c->w->upstream, c->easy, on_done, c)) != 0)
        return rc;
    c->running = 1;
    arm_timer_us(c, (int64_t)c->to.first_byte_ms * 1000);
    return 0;
}
