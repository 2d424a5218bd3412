/*
 * core/pipeline — one chat request from parsed body to settled usage row.
 *
 * The call is a small state machine driven by the worker's event loop:
 *   parse → authenticate → validate → route (catalog) → reserve (usage row) → call upstream →
 *   relay (stream) or translate (whole answer) → settle.
 * Exactly one of these ends a call, each exactly once: the upstream transfer finishes
 * (on_done), the first-byte timer fires (on_upstream_timeout), the client goes away
 * (on_client_close) or the worker shuts down (gw_pipeline_abort_all). All of them end in
 * call_end(), which settles the usage row and frees the call.
 *
 * Client-facing errors never carry provider text, upstream URLs or credentials; the server log
 * keeps the provider's own words with the request id.
 */
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/gw_int.h"
#include "core/request.h"
#include "http/reply.h"
#include "providers/provider.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/sse.h"
#include "util/util.h"

#define GW_SSE_MAX_EVENT (4u << 20)
/* A client that reads slower than the provider writes: above this much unsent output the
 * upstream transfer is paused, and resumed once the client's buffer has drained. */
#define GW_CLIENT_HIGH_WATER (1u << 20)

struct gw_call {
    struct gw_worker *w;
    struct gw_call *prev, *next;
    struct evhttp_request *req;     /* NULL once answered */
    struct evhttp_connection *evcon;
    char rid[72];
    enum gw_dialect dialect;
    struct gw_chat_opts opts;
    const struct gw_model *model;
    const struct gw_provider_ops *ops;
    struct gw_key_rec key;
    json_t *canon;
    struct gw_upstream_req up;
    CURL *easy;
    struct curl_slist *hdrs;
    struct gw_buf body;             /* whole upstream answer (non-stream, or an error body) */
    struct gw_sse sse;
    struct gw_stream st;
    struct gw_usage usage;          /* non-stream usage */
    struct event *timer_ev;       /* first byte, then silence between bytes */
    long upstream_status;
    int retry_after_s;
    int got_first_byte;
    int reply_started;              /* stream: client has the 200 and some events */
    int sse_error;                  /* our SSE handling aborted the transfer */
    int stream_rc;                  /* what the adapter or the SSE parser reported */
    int paused;                     /* upstream paused until the client catches up */
    int64_t emitted_chars;          /* stream text relayed, for estimates when usage is lost */
    int64_t input_estimate;
    int64_t t0_us;
    char stream_id[96];
    const char *route_method;       /* "explicit" | "heuristic" */
    int64_t created;
    struct gw_usage_row row;
};

static void call_end(struct gw_call *c);

/* ---- small helpers ---- */

static void reply_error(struct gw_call *c, int status, const char *type, const char *code,
                        const char *msg, int retry_after)
{
    c->row.status = status;
    gw_strlcpy(c->row.error_code, code, sizeof(c->row.error_code));
    if (c->req == NULL)
        return;
    if (c->evcon != NULL)
        evhttp_connection_set_closecb(c->evcon, NULL, NULL);
    gw_reply_error(c->req, status, type, code, msg, c->rid, retry_after);
    c->req = NULL;
}

/* Worst-case-ish prompt size for routing and the reservation: a token per 3 bytes of the body
 * as received (no second serialisation of the parsed tree). */
static int64_t tokens_estimate(size_t body_len) { return (int64_t)(body_len / 3) + 16; }

static int list_allows(const char *csv, const char *item)
{
    size_t n = strlen(item);
    const char *p = csv;

    if (csv[0] == '\0')
        return 1;
    while (*p != '\0') {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, item, n) == 0)
            return 1;
        if (e == NULL)
            break;
        p = e + 1;
    }
    return 0;
}

static void usage_to_row(struct gw_call *c, const struct gw_usage *u)
{
    c->row.tokens_in = u->input_tokens;
    c->row.tokens_out = u->output_tokens;
    c->row.cached_tokens = u->cached_input_tokens;
    c->row.reasoning_tokens = u->reasoning_tokens;
    c->row.cost_micros = gw_cost_micros(c->model, u);
}

/* The provider did not (fully) report usage: never record zero for work that was done. */
static void usage_fill_estimate(struct gw_call *c, struct gw_usage *u)
{
    if (u->input_tokens == 0)
        u->input_tokens = c->input_estimate;
    int64_t out_est = (c->emitted_chars + 3) / 4;
    if (u->output_tokens < out_est)
        u->output_tokens = out_est;
}

static json_t *usage_json(const struct gw_call *c, const struct gw_usage *u, int simple)
{
    double usd = (double)c->row.cost_micros / 1e6;
    if (simple)
        return json_pack("{s:I,s:I,s:f}", "tokens_in", (json_int_t)u->input_tokens, "tokens_out",
                         (json_int_t)u->output_tokens, "cost_usd", usd);
    return json_pack("{s:I,s:I,s:I,s:{s:I},s:{s:I},s:f}", "prompt_tokens",
                     (json_int_t)u->input_tokens, "completion_tokens",
                     (json_int_t)u->output_tokens, "total_tokens",
                     (json_int_t)(u->input_tokens + u->output_tokens), "prompt_tokens_details",
                     "cached_tokens", (json_int_t)u->cached_input_tokens,
                     "completion_tokens_details", "reasoning_tokens",
                     (json_int_t)u->reasoning_tokens, "cost_usd", usd);
}

/* ---- upstream error mapping (the one place) ---- */

static void reply_upstream_failure(struct gw_call *c, const struct gw_upstream_error *e)
{
    char msg[300];
    gw_log_escape(msg, sizeof(msg), e->message, strlen(e->message));
    GW_LOG_WARN("upstream", "req=%s provider=%s status=%d type=%s retryable=%d message=\"%s\"",
                c->rid, c->ops->name, e->status, e->type, e->retryable, msg);
    if (e->auth_failed) {
        reply_error(c, 502, "upstream_error", "upstream_auth_failed",
                    "the provider rejected the gateway's credentials", 0);
    } else if (e->status == 429) {
        reply_error(c, 429, "rate_limit_error", "upstream_rate_limited",
                    "the provider is rate limiting requests; retry later",
                    e->retry_after_s > 0 ? e->retry_after_s : (c->retry_after_s > 0 ? c->retry_after_s : 1));
    } else if (e->status >= 400 && e->status < 500 && e->status != 408) {
        char m[200];
        snprintf(m, sizeof(m), "the provider rejected the request (%s %d)", c->ops->name,
                 e->status);
        reply_error(c, 400, "invalid_request_error", "upstream_rejected_request", m, 0);
    } else {
        reply_error(c, 502, "upstream_error", "upstream_error",
                    "the provider failed to answer; try again", 0);
    }
}

/* ---- streaming to the client ---- */

/* Bytes queued for the client that the socket has not taken yet. */
static size_t client_backlog(const struct gw_call *c)
{
    struct bufferevent *bev = c->evcon ? evhttp_connection_get_bufferevent(c->evcon) : NULL;
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

/* The client's output buffer drained: let a paused upstream go on. */
static void on_client_drained(struct evhttp_connection *evcon, void *arg)
{
    struct gw_call *c = arg;
    (void)evcon;
    if (c->paused && c->easy != NULL) {
        c->paused = 0;
        GW_LOG_DEBUG("http", "req=%s client caught up: resuming the upstream transfer", c->rid);
        curl_easy_pause(c->easy, CURLPAUSE_CONT);
    }
}

static int send_sse_data(struct gw_call *c, const char *data, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return GW_ENOMEM;
    evbuffer_add(b, "data: ", 6);
    evbuffer_add(b, data, len);
    evbuffer_add(b, "\n\n", 2);
    evhttp_send_reply_chunk_with_cb(c->req, b, on_client_drained, c);
    evbuffer_free(b);
    return 0;
}

static void start_stream_reply(struct gw_call *c)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
    gw_reply_headers(c->req, "text/event-stream", c->rid);
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    evhttp_send_reply_start(c->req, 200, "OK");
    c->reply_started = 1;
}

static void count_emitted(struct gw_call *c, json_t *chunk)
{
    size_t i;
    json_t *ch;
    json_array_foreach(json_object_get(chunk, "choices"), i, ch) {
        json_t *d = json_object_get(ch, "delta");
        const char *s = gw_json_str(d, "content");
        if (s != NULL)
            c->emitted_chars += (int64_t)strlen(s);
        s = gw_json_str(d, "reasoning_content");
        if (s != NULL)
            c->emitted_chars += (int64_t)strlen(s);
    }
}

static int emit_chunk(void *arg, json_t *chunk)
{
    struct gw_call *c = arg;

    if (c->req == NULL)
        return GW_EIO;
    if (!c->reply_started)
        start_stream_reply(c);
    count_emitted(c, chunk);
    json_object_set_new(chunk, "id", json_string(c->stream_id));
    json_object_set_new(chunk, "object", json_string("chat.completion.chunk"));
    json_object_set_new(chunk, "created", json_integer(c->created));
    json_object_set_new(chunk, "model", json_string(c->opts.model));
    json_object_del(chunk, "usage");
    char *s = json_dumps(chunk, GW_JSON_OUT);
    if (s == NULL)
        return GW_ENOMEM;
    int rc = send_sse_data(c, s, strlen(s));
    gw_free(s);
    return rc;
}

static int on_sse_event(void *arg, const char *event, const char *data, size_t len)
{
    struct gw_call *c = arg;
    int rc = c->ops->stream_event(&c->st, event, data, len);
    if (rc != 0 && c->stream_rc == 0)
        c->stream_rc = rc;
    return rc;
}

/* End a stream the client already receives: an error event (never a clean finish) or the
 * usage chunk and [DONE]. */
static void finish_stream(struct gw_call *c, const char *err_code, const char *err_msg)
{
    if (c->req == NULL)
        return;
    if (err_code != NULL) {
        json_t *e = gw_error_body("upstream_error", err_code, err_msg, c->rid);
        char *s = e ? json_dumps(e, GW_JSON_OUT) : NULL;
        if (s != NULL)
            send_sse_data(c, s, strlen(s));
        gw_free(s);
        json_decref(e);
        c->row.status = 502;
        gw_strlcpy(c->row.error_code, err_code, sizeof(c->row.error_code));
    } else {
        if (c->opts.include_usage) {
            json_t *u = json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", c->stream_id, "object",
                                  "chat.completion.chunk", "created", (json_int_t)c->created,
                                  "model", c->opts.model, "choices", "usage",
                                  usage_json(c, &c->st.usage, 0));
            char *s = u ? json_dumps(u, GW_JSON_OUT) : NULL;
            if (s != NULL)
                send_sse_data(c, s, strlen(s));
            gw_free(s);
            json_decref(u);
        }
        send_sse_data(c, "[DONE]", 6);
        c->row.status = 200;
    }
    if (c->evcon != NULL)
        evhttp_connection_set_closecb(c->evcon, NULL, NULL);
    evhttp_send_reply_end(c->req);
    c->req = NULL;
}

/* ---- curl callbacks ---- */

/* Upstream bytes arrived: from the first one on, the timer measures silence. */
static void upstream_alive(struct gw_call *c)
{
    int ms = c->w->gw->cfg.idle_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    c->got_first_byte = 1;
    evtimer_add(c->timer_ev, &tv);
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    struct gw_call *c = arg;
    size_t len = sz * n;
    static const char ra[] = "retry-after:";

    upstream_alive(c);
    if (len > sizeof(ra) && strncasecmp(p, ra, sizeof(ra) - 1) == 0) {
        char tmp[16];
        size_t k = len - (sizeof(ra) - 1);
        if (k >= sizeof(tmp))
            k = sizeof(tmp) - 1;
        memcpy(tmp, p + sizeof(ra) - 1, k);
        tmp[k] = '\0';
        long v = strtol(tmp, NULL, 10);
        if (v > 0 && v < 86400)
            c->retry_after_s = (int)v;
    }
    return len;
}

static size_t on_write(char *p, size_t sz, size_t n, void *arg)
{
    struct gw_call *c = arg;
    size_t len = sz * n;

    upstream_alive(c);
    if (c->upstream_status == 0)
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->upstream_status);
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

static void finish_whole(struct gw_call *c)
{
    struct gw_errbuf eb = {{0}};
    json_t *out = NULL;

    int rc = c->ops->parse(c->body.data ? c->body.data : "", c->body.len, &out, &c->usage, &eb);
    if (rc != 0) {
        GW_LOG_WARN("upstream", "req=%s provider=%s unparseable answer: %s", c->rid, c->ops->name,
                    eb.msg);
        reply_error(c, 502, "upstream_error", "upstream_bad_response",
                    "the provider sent an answer the gateway could not read", 0);
        return;
    }
    if (!c->usage.seen)
        usage_fill_estimate(c, &c->usage);
    usage_to_row(c, &c->usage);
    c->row.status = 200;
    if (c->dialect == GW_DIALECT_SIMPLE) {
        json_t *msg = json_object_get(json_array_get(json_object_get(out, "choices"), 0),
                                      "message");
        const char *content = gw_json_str(msg, "content");
        json_t *r = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o}", "content", content ? content : "",
                              "model", c->opts.model, "provider", c->ops->name, "route_method",
                              c->route_method, "request_id", c->rid, "usage",
                              usage_json(c, &c->usage, 1));
        if (r != NULL && c->req != NULL) {
            evhttp_connection_set_closecb(c->evcon, NULL, NULL);
            gw_reply_json(c->req, 200, r, c->rid);
            c->req = NULL;
        }
        json_decref(r);
    } else {
        json_object_set_new(out, "object", json_string("chat.completion"));
        json_object_set_new(out, "created", json_integer(c->created));
        json_object_set_new(out, "model", json_string(c->opts.model));
        json_object_set_new(out, "provider", json_string(c->ops->name));
        json_object_set_new(out, "route_method", json_string(c->route_method));
        json_object_set_new(out, "usage", usage_json(c, &c->usage, 0));
        if (!json_is_string(json_object_get(out, "id")))
            json_object_set_new(out, "id", json_string(c->stream_id));
        if (c->req != NULL) {
            evhttp_connection_set_closecb(c->evcon, NULL, NULL);
            gw_reply_json(c->req, 200, out, c->rid);
            c->req = NULL;
        }
    }
    json_decref(out);
}

static void finish_stream_outcome(struct gw_call *c, CURLcode result)
{
    int truncated = gw_sse_finish(&c->sse);
    struct gw_usage *u = &c->st.usage;

    if (c->st.failed) {
        char msg[300];
        gw_log_escape(msg, sizeof(msg), c->st.err.message, strlen(c->st.err.message));
        GW_LOG_WARN("upstream", "req=%s provider=%s stream error type=%s message=\"%s\"", c->rid,
                    c->ops->name, c->st.err.type, msg);
    }
    const char *code = NULL, *msg = NULL;
    if (c->st.failed) {
        code = "upstream_error";
        msg = "the provider reported an error during the stream";
    } else if (c->stream_rc == GW_EPARSE || c->stream_rc == GW_ETOOBIG) {
        code = "upstream_bad_response";
        msg = "the provider sent a stream event the gateway could not read";
    } else if (result == CURLE_OPERATION_TIMEDOUT) {
        code = "upstream_timeout";
        msg = "the provider took too long to finish the stream";
    } else if (result != CURLE_OK || !c->st.complete || truncated || c->sse_error) {
        code = "upstream_stream_interrupted";
        msg = "the provider's stream ended before it was complete";
    }
    if (code != NULL)
        GW_LOG_WARN("upstream", "req=%s provider=%s stream ended early (%s, curl=%d)", c->rid,
                    c->ops->name, code, (int)result);
    if (!u->seen || code != NULL)
        usage_fill_estimate(c, u);
    usage_to_row(c, u);
    if (!c->reply_started) {
        /* nothing reached the client yet: answer with a plain error */
        if (code == NULL) {
            start_stream_reply(c);
            finish_stream(c, NULL, NULL);
        } else if (strcmp(code, "upstream_timeout") == 0) {
            reply_error(c, 504, "upstream_error", code, msg, 0);
        } else {
            reply_error(c, 502, "upstream_error", code, msg, 0);
        }
        return;
    }
    finish_stream(c, code, msg);
}

static void on_done(void *arg, CURL *easy, CURLcode result)
{
    struct gw_call *c = arg;
    (void)easy;

    evtimer_del(c->timer_ev);
    if (c->upstream_status == 0)
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->upstream_status);
    int ok_status = c->upstream_status >= 200 && c->upstream_status < 300;

    if (ok_status && c->opts.stream) {
        finish_stream_outcome(c, result);
    } else if (result != CURLE_OK) {
        char eb[CURL_ERROR_SIZE + 1];
        gw_log_escape(eb, sizeof(eb), curl_easy_strerror(result), strlen(curl_easy_strerror(result)));
        GW_LOG_WARN("upstream", "req=%s provider=%s transfer failed: curl=%d %s", c->rid,
                    c->ops->name, (int)result, eb);
        if (result == CURLE_OPERATION_TIMEDOUT)
            reply_error(c, 504, "upstream_error", "upstream_timeout",
                        "the provider did not answer in time", 0);
        else if (c->sse_error && ok_status)
            reply_error(c, 502, "upstream_error", "upstream_bad_response",
                        "the provider's answer was too large", 0);
        else
            reply_error(c, 502, "upstream_error", "upstream_error",
                        "the provider could not be reached", 0);
        /* The request may have been processed: charge the worst case we reserved unless the
         * connection provably never carried it (connect/resolve failures). */
        if (result == CURLE_COULDNT_CONNECT || result == CURLE_COULDNT_RESOLVE_HOST) {
            gw_strlcpy(c->row.state, "failed", sizeof(c->row.state));
        } else {
            gw_strlcpy(c->row.state, "uncertain", sizeof(c->row.state));
            c->row.cost_micros = c->row.reserved_micros;
        }
    } else if (ok_status) {
        finish_whole(c);
    } else {
        struct gw_upstream_error e;
        c->ops->map_error((int)c->upstream_status, c->body.data ? c->body.data : "", c->body.len,
                          &e);
        reply_upstream_failure(c, &e);
    }
    call_end(c);
}

static void on_upstream_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct gw_call *c = arg;
    const struct gw_config *cfg = &c->w->gw->cfg;
    (void)fd;
    (void)what;
    if (c->paused) { /* silence because the client is slow, not the provider */
        upstream_alive(c);
        return;
    }
    GW_LOG_WARN("upstream", "req=%s provider=%s %s for %d ms", c->rid, c->ops->name,
                c->got_first_byte ? "silent" : "no answer",
                c->got_first_byte ? cfg->idle_timeout_ms : cfg->first_byte_timeout_ms);
    gw_upstream_cancel(c->w->upstream, c->easy);
    if (c->reply_started) {
        /* mid-stream: charge what was seen (estimated where not reported) */
        usage_fill_estimate(c, &c->st.usage);
        usage_to_row(c, &c->st.usage);
        finish_stream(c, "upstream_timeout", "the provider stopped sending");
    } else {
        /* The request was sent: the provider may be working on it. Charge the reservation. */
        gw_strlcpy(c->row.state, "uncertain", sizeof(c->row.state));
        c->row.cost_micros = c->row.reserved_micros;
        reply_error(c, 504, "upstream_error", "upstream_timeout",
                    "the provider did not answer in time", 0);
    }
    call_end(c);
}

static void on_client_close(struct evhttp_connection *evcon, void *arg)
{
    struct gw_call *c = arg;
    (void)evcon;
    GW_LOG_INFO("http", "req=%s client closed the connection; cancelling the upstream call",
                c->rid);
    gw_upstream_cancel(c->w->upstream, c->easy);
    evtimer_del(c->timer_ev);
    struct gw_usage u = c->opts.stream ? c->st.usage : c->usage;
    usage_fill_estimate(c, &u);
    usage_to_row(c, &u);
    gw_strlcpy(c->row.state, "cancelled", sizeof(c->row.state));
    c->row.status = 499;
    gw_strlcpy(c->row.error_code, "client_closed", sizeof(c->row.error_code));
    /* libevent detached the request from the dying connection; finishing it frees it. */
    c->evcon = NULL;
    if (c->req != NULL) {
        if (c->reply_started)
            evhttp_send_reply_end(c->req);
        else
            evhttp_send_reply(c->req, 499, "Client Closed", NULL);
        c->req = NULL;
    }
    call_end(c);
}

/* ---- call lifecycle ---- */

static void call_free(struct gw_call *c)
{
    if (c->easy != NULL)
        curl_easy_cleanup(c->easy);
    for (struct curl_slist *l = c->hdrs; l != NULL; l = l->next)
        OPENSSL_cleanse(l->data, strlen(l->data));
    curl_slist_free_all(c->hdrs);
    gw_upstream_req_cleanup(&c->up);
    if (c->ops != NULL && c->ops->stream_cleanup != NULL)
        c->ops->stream_cleanup(&c->st);
    gw_sse_cleanup(&c->sse);
    gw_buf_cleanup(&c->body);
    json_decref(c->canon);
    if (c->timer_ev != NULL)
        event_free(c->timer_ev);
    gw_free(c);
}

static void call_end(struct gw_call *c)
{
    struct gw_worker *w = c->w;

    if (c->req != NULL) /* a path forgot to answer: our bug, still answer */
        reply_error(c, 500, "internal_error", "internal_error", "internal error", 0);
    c->row.latency_ms = (gw_mono_us() - c->t0_us) / 1000;
    c->row.settled_ms = gw_now_ms();
    if (c->row.state[0] == '\0')
        gw_strlcpy(c->row.state, "refused", sizeof(c->row.state)); /* never reached a provider */
    else if (strcmp(c->row.state, "reserved") == 0)
        gw_strlcpy(c->row.state, c->row.status == 200 ? "settled" : "failed",
                   sizeof(c->row.state));
    if (c->row.request_id[0] != '\0' && gw_store_usage_settle(w->store, &c->row) != 0)
        GW_LOG_ERROR("store", "req=%s could not settle the usage row", c->rid);
    GW_LOG_INFO("access", "req=%s key=%s route=%s provider=%s model=%s stream=%d status=%d "
                "in=%lld out=%lld cost_micros=%lld ms=%lld state=%s",
                c->rid, c->key.key_id, c->route_method ? c->route_method : "-",
                c->ops ? c->ops->name : "-", c->opts.model, c->opts.stream,
                c->row.status, (long long)c->row.tokens_in, (long long)c->row.tokens_out,
                (long long)c->row.cost_micros, (long long)c->row.latency_ms, c->row.state);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else if (w->calls == c)
        w->calls = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    w->inflight--;
    call_free(c);
    gw_http_worker_request_done(w->hw);
}

void gw_pipeline_abort_all(struct gw_worker *w)
{
    while (w->calls != NULL) {
        struct gw_call *c = w->calls;
        gw_upstream_cancel(w->upstream, c->easy);
        evtimer_del(c->timer_ev);
        gw_strlcpy(c->row.state, "uncertain", sizeof(c->row.state));
        c->row.cost_micros = c->row.reserved_micros;
        if (c->reply_started)
            finish_stream(c, "shutting_down", "the gateway is shutting down");
        else
            reply_error(c, 503, "service_unavailable", "shutting_down",
                        "the gateway is shutting down", 1);
        call_end(c);
    }
}

static int setup_curl(struct gw_call *c)
{
    const struct gw_config *cfg = &c->w->gw->cfg;

    c->easy = curl_easy_init();
    if (c->easy == NULL)
        return GW_ENOMEM;
    for (int i = 0; i < c->up.nheaders; i++) {
        struct curl_slist *l = curl_slist_append(c->hdrs, c->up.headers[i]);
        if (l == NULL)
            return GW_ENOMEM;
        c->hdrs = l;
    }
    struct curl_slist *l = curl_slist_append(c->hdrs, "Expect:");
    if (l == NULL)
        return GW_ENOMEM;
    c->hdrs = l;
    if (c->opts.stream && (l = curl_slist_append(c->hdrs, "Accept: text/event-stream")) != NULL)
        c->hdrs = l;
    CURL *e = c->easy;
    curl_easy_setopt(e, CURLOPT_URL, c->up.url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdrs);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->up.body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->up.body_len);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)cfg->total_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    return 0;
}

/* May this call's key use model m, is its provider configured, and does it match a pin? */
static int model_allowed(void *arg, const struct gw_model *m)
{
    struct gw_call *c = arg;
    return (c->opts.provider[0] == '\0' || strcmp(c->opts.provider, m->provider) == 0) &&
           gw_provider_configured(c->w->gw, m->provider) &&
           list_allows(c->key.providers, m->provider) && list_allows(c->key.models, m->id);
}

/* No model named (or auto_route): the heuristic rules pick one. */
static int route_auto(struct gw_call *c)
{
    struct gw_route_result res;
    struct gw_route_req q = {
        .body = c->canon,
        .input_tokens = c->input_estimate,
        .max_output_tokens = c->opts.max_tokens,
        .allowed = model_allowed,
        .arg = c,
    };
    char hdr[320];

    if (gw_route_heuristic(c->w->gw->router, &q, &res) != 0) {
        reply_error(c, 503, "service_unavailable", "no_provider_available",
                    "no model this API key may use can serve this request", 0);
        return -1;
    }
    c->model = res.model;
    c->ops = gw_provider_find(res.model->provider);
    c->route_method = "heuristic";
    gw_strlcpy(c->opts.model, res.model->id, sizeof(c->opts.model));
    snprintf(hdr, sizeof(hdr), "%s; rule=%s; %s", res.model->id, res.rule, res.reason);
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "X-LLMGW-Route-Reason", hdr);
    GW_LOG_INFO("route", "req=%s heuristic: %s", c->rid, hdr);
    return c->ops != NULL ? 0 : GW_BUG(1);
}

/* Resolve the model and check it may be used. Replies and returns non-zero on refusal. */
static int route(struct gw_call *c)
{
    struct gw *gw = c->w->gw;
    char msg[256];

    if (c->opts.provider[0] != '\0') {
        if (gw_provider_find(c->opts.provider) == NULL) {
            snprintf(msg, sizeof(msg), "unknown provider '%.16s' (anthropic, openai, gemini, xai, "
                     "perplexity)", c->opts.provider);
            reply_error(c, 400, "invalid_request_error", "unknown_provider", msg, 0);
            return -1;
        }
        if (!gw_provider_configured(gw, c->opts.provider)) {
            snprintf(msg, sizeof(msg), "the provider '%s' is not configured on this gateway",
                     c->opts.provider);
            reply_error(c, 400, "invalid_request_error", "provider_not_configured", msg, 0);
            return -1;
        }
    }
    if (c->opts.auto_route || c->opts.model[0] == '\0')
        return route_auto(c);
    c->route_method = "explicit";
    c->model = gw_catalog_find(gw->catalog, c->opts.model);
    if (c->model == NULL) {
        snprintf(msg, sizeof(msg), "the model '%.64s' does not exist; GET /v1/models lists them",
                 c->opts.model);
        reply_error(c, 404, "invalid_request_error", "model_not_found", msg, 0);
        return -1;
    }
    if (c->opts.provider[0] != '\0' && strcmp(c->opts.provider, c->model->provider) != 0) {
        snprintf(msg, sizeof(msg), "the model '%.64s' is served by '%s', not '%.16s'",
                 c->opts.model, c->model->provider, c->opts.provider);
        reply_error(c, 400, "invalid_request_error", "provider_mismatch", msg, 0);
        return -1;
    }
    c->ops = gw_provider_find(c->model->provider);
    if (c->ops == NULL || !gw_provider_configured(gw, c->model->provider)) {
        snprintf(msg, sizeof(msg), "the provider '%s' is not configured on this gateway",
                 c->model->provider);
        reply_error(c, 400, "invalid_request_error", "provider_not_configured", msg, 0);
        return -1;
    }
    if (!list_allows(c->key.providers, c->model->provider) ||
        !list_allows(c->key.models, c->model->id)) {
        snprintf(msg, sizeof(msg), "this API key may not use the model '%.64s'", c->opts.model);
        reply_error(c, 403, "permission_error", "model_not_allowed", msg, 0);
        return -1;
    }
    return 0;
}

static int reserve(struct gw_call *c)
{
    struct gw *gw = c->w->gw;
    struct gw_usage_row *r = &c->row;

    gw_strlcpy(r->request_id, c->rid, sizeof(r->request_id));
    r->org_id = c->key.org_id;
    r->key_row_id = c->key.id;
    gw_strlcpy(r->provider, c->model->provider, sizeof(r->provider));
    gw_strlcpy(r->model, c->model->id, sizeof(r->model));
    gw_strlcpy(r->endpoint, c->dialect == GW_DIALECT_SIMPLE ? "llm.chat" : "chat.completions",
               sizeof(r->endpoint));
    r->stream = c->opts.stream;
    gw_strlcpy(r->state, "reserved", sizeof(r->state));
    int64_t max_out = c->opts.max_tokens > 0 ? c->opts.max_tokens : c->model->max_output_tokens;
    r->reserved_micros = gw_cost_worst_micros(c->model, c->input_estimate, max_out);
    gw_strlcpy(r->catalog_version, gw_catalog_version(gw->catalog), sizeof(r->catalog_version));
    r->created_ms = gw_now_ms();
    if (gw_store_usage_reserve(c->w->store, r) != 0) {
        GW_LOG_ERROR("store", "req=%s could not reserve the usage row; refusing", c->rid);
        r->request_id[0] = '\0'; /* nothing to settle */
        reply_error(c, 503, "service_unavailable", "store_unavailable",
                    "the gateway cannot record usage right now; try again", 1);
        return -1;
    }
    return 0;
}

static int start_upstream(struct gw_call *c)
{
    struct gw *gw = c->w->gw;
    struct gw_provider_conf *pc = gw_config_provider(&gw->cfg, c->model->provider);
    struct gw_provider_cfg pcfg = {
        .base_url = pc->base_url,
        .api_key = pc->api_key,
        .api_version = pc->api_version,
        .default_max_tokens = c->model->default_max_tokens,
        .reasoning = c->model->reasoning,
    };
    struct gw_errbuf eb = {{0}};

    json_object_set_new(c->canon, "model", json_string(c->model->wire_id));
    int rc = c->ops->build(&pcfg, c->canon, c->model->wire_id, c->opts.stream, &c->up, &eb);
    if (rc == GW_EINVAL) {
        reply_error(c, 400, "invalid_request_error", "invalid_request",
                    eb.msg[0] ? eb.msg : "the request cannot be sent to this provider", 0);
        return -1;
    }
    if (rc == 0)
        rc = setup_curl(c);
    if (rc == 0 && c->opts.stream && c->ops->stream_init != NULL)
        rc = c->ops->stream_init(&c->st);
    if (rc == 0)
        rc = gw_upstream_start(c->w->upstream, c->easy, on_done, c);
    if (rc != 0) {
        GW_LOG_ERROR("pipeline", "req=%s cannot start the upstream call: %s", c->rid,
                     gw_strerror(rc));
        reply_error(c, 500, "internal_error", "internal_error", "internal error", 0);
        return -1;
    }
    struct timeval tv = {gw->cfg.first_byte_timeout_ms / 1000,
                         (gw->cfg.first_byte_timeout_ms % 1000) * 1000};
    evtimer_add(c->timer_ev, &tv);
    return 0;
}

static int parse_body(struct gw_call *c, json_t **out)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t len = evbuffer_get_length(in);
    struct gw_errbuf eb = {{0}};
    char msg[320];

    if (len > c->w->gw->cfg.max_body) {
        snprintf(msg, sizeof(msg), "the request body is larger than %zu bytes",
                 c->w->gw->cfg.max_body);
        reply_error(c, 413, "invalid_request_error", "request_too_large", msg, 0);
        return -1;
    }
    c->input_estimate = tokens_estimate(len);
    const char *data = (const char *)evbuffer_pullup(in, -1);
    *out = gw_json_parse(data ? data : "", len, &eb);
    if (*out == NULL) {
        snprintf(msg, sizeof(msg), "the body is not valid JSON: %s", eb.msg);
        reply_error(c, 400, "invalid_request_error", "invalid_json", msg, 0);
        return -1;
    }
    return 0;
}

void gw_pipeline_chat(struct gw_worker *w, struct evhttp_request *req, const char *request_id,
                      enum gw_dialect dialect)
{
    struct gw_call *c = gw_calloc(1, sizeof(*c));
    json_t *body = NULL;
    struct gw_errbuf eb = {{0}};

    if (c == NULL) {
        gw_reply_error(req, 503, "service_unavailable", "overloaded", "out of memory", request_id,
                       1);
        return;
    }
    c->w = w;
    c->req = req;
    c->evcon = evhttp_request_get_connection(req);
    c->dialect = dialect;
    c->t0_us = gw_mono_us();
    c->created = gw_now_s();
    gw_strlcpy(c->rid, request_id, sizeof(c->rid));
    snprintf(c->stream_id, sizeof(c->stream_id), "chatcmpl-%s", request_id);
    gw_buf_init(&c->body, w->gw->cfg.max_upstream_body);
    gw_sse_init(&c->sse, GW_SSE_MAX_EVENT, on_sse_event, c);
    c->st.emit = emit_chunk;
    c->st.arg = c;
    c->next = w->calls;
    if (w->calls != NULL)
        w->calls->prev = c;
    w->calls = c;
    w->inflight++;
    c->timer_ev = evtimer_new(gw_http_worker_base(w->hw), on_upstream_timeout, c);
    if (c->timer_ev == NULL) {
        reply_error(c, 503, "service_unavailable", "overloaded", "out of memory", 1);
        goto done;
    }

    if (parse_body(c, &body) != 0)
        goto done;
    if (evhttp_find_header(evhttp_request_get_input_headers(req), "Idempotency-Key") != NULL) {
        /* Refuse rather than ignore: a client relying on the key would risk double execution. */
        reply_error(c, 400, "invalid_request_error", "idempotency_not_supported",
                    "Idempotency-Key is not supported by this version of the gateway", 0);
        goto done;
    }
    if (gw_authenticate(w, c->req, c->rid, &c->key) != 0) {
        c->req = NULL; /* answered */
        goto done;
    }
    if (dialect == GW_DIALECT_SIMPLE) {
        if (gw_simple_to_chat(body, &c->canon, &eb) != 0) {
            reply_error(c, 400, "invalid_request_error", "invalid_request", eb.msg, 0);
            goto done;
        }
    } else {
        c->canon = json_incref(body);
    }
    if (gw_chat_validate(c->canon, &c->opts, &eb) != 0) {
        reply_error(c, 400, "invalid_request_error", "invalid_request", eb.msg, 0);
        goto done;
    }
    if (dialect == GW_DIALECT_SIMPLE)
        c->opts.stream = 0;
    if (c->opts.conversation_id[0] != '\0') {
        reply_error(c, 400, "invalid_request_error", "unsupported_parameter",
                    "conversation_id is not available in this version", 0);
        goto done;
    }
    if (route(c) != 0)
        goto done;
    if (reserve(c) != 0)
        goto done;
    if (start_upstream(c) != 0)
        goto done;
    evhttp_connection_set_closecb(c->evcon, on_client_close, c);
    json_decref(body);
    return;
done:
    json_decref(body);
    call_end(c);
}
