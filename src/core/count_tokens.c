/*
 * core/count_tokens — POST /v1/messages/count_tokens, the Anthropic Messages dialect's token
 * count: {"input_tokens": N}. For an Anthropic model (its provider configured) Anthropic's own
 * count_tokens endpoint answers (the client's body, with the model's wire id and without what
 * that endpoint does not take); for any other model the gateway's estimate does (conv/history's
 * BPE-like count of the messages, plus the tools' schemas). X-LLMGW-Token-Count says which.
 *
 * Invariants: the count spends nothing (no reservation, no usage row); the upstream call is
 * bounded by the provider's connect and first-byte timeouts; the provider's error text is
 * logged, never returned.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "conv/history.h"
#include "core/gw_int.h"
#include "core/answer.h"
#include "core/messages.h"
#include "http/reply.h"
#include "providers/provider.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/util.h"

#define COUNT_ANSWER_MAX (64 * 1024)

struct count_call {
    struct gw_worker *w;
    struct evhttp_request *req;
    char rid[72];
    CURL *easy;
    struct curl_slist *hdrs;
    struct gw_upstream_req up;
    struct gw_buf answer;
};

static void answer_count(struct evhttp_request *req, const char *rid, json_int_t n,
                         const char *how)
{
    json_t *r = json_pack("{s:I}", "input_tokens", n);
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-LLMGW-Token-Count", how);
    gw_reply_json(req, 200, r, rid);
    json_decref(r);
}

static void refuse(struct evhttp_request *req, const char *rid, int status, const char *code,
                   const char *msg)
{
    /* http/reply answers the /v1/messages routes in Anthropic's error shape */
    gw_reply_error(req, status, gw_anthropic_error_type(status), code, msg, rid, 0);
}

/* The gateway's estimate: the messages as the canonical body has them, and the tools. */
static int64_t estimate(const json_t *canon)
{
    int64_t n = gw_tokens_messages(json_object_get(canon, "messages"));
    char *tools = json_object_get(canon, "tools") ? gw_json_dump(json_object_get(canon, "tools"))
                                                  : NULL;
    if (tools != NULL)
        n += gw_tokens_text(tools, strlen(tools));
    gw_free(tools);
    return n;
}

static void count_free(struct count_call *k)
{
    gw_upstream_easy_free(k->w->upstream, k->easy, k->hdrs);
    gw_upstream_req_cleanup(&k->up);
    gw_buf_cleanup(&k->answer);
    struct gw_worker *w = k->w;
    gw_free(k);
    w->inflight--;
    if (w->hw != NULL)
        gw_http_worker_request_done(w->hw);
}

static size_t on_write(char *p, size_t sz, size_t n, void *arg)
{
    struct count_call *k = arg;
    return gw_buf_add(&k->answer, p, sz * n) == 0 ? sz * n : 0;
}

static void on_done(void *arg, CURL *easy, CURLcode result)
{
    struct count_call *k = arg;
    long status = 0;
    struct gw_errbuf eb = {{0}};
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    json_t *a = result == CURLE_OK && status == 200
                    ? gw_json_parse(k->answer.data ? k->answer.data : "", k->answer.len, &eb)
                    : NULL;
    json_t *n = json_object_get(a, "input_tokens");
    if (json_is_integer(n) && json_integer_value(n) >= 0) {
        answer_count(k->req, k->rid, json_integer_value(n), "anthropic");
    } else {
        char msg[200];
        gw_log_escape(msg, sizeof(msg), k->answer.data ? k->answer.data : "",
                      k->answer.len < 180 ? k->answer.len : 180);
        GW_LOG_WARN("count", "req=%s anthropic count_tokens failed: curl=%d status=%ld body=\"%s\"",
                    k->rid, (int)result, status, msg);
        if (status >= 400 && status < 500 && status != 401 && status != 403 && status != 429)
            refuse(k->req, k->rid, 400, "upstream_rejected_request",
                   "the provider rejected the request");
        else
            refuse(k->req, k->rid, 502, "upstream_error",
                   "the provider could not count the tokens");
    }
    json_decref(a);
    count_free(k);
}

/* The body for Anthropic's count_tokens: the client's, without what it does not take. */
static json_t *upstream_body(const json_t *in, const char *wire_id)
{
    static const char *const dropped[] = {"max_tokens", "stream", "stop_sequences", "temperature",
                                          "top_p", "top_k", "metadata", "service_tier",
                                          "provider", "auto_route", "route_method",
                                          "conversation_id"};
    json_t *b = json_deep_copy(in);
    if (b == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(dropped) / sizeof(*dropped); i++)
        json_object_del(b, dropped[i]);
    json_object_set_new(b, "model", json_string(wire_id));
    return b;
}

static void count_upstream(struct gw_authed *a, const json_t *in, const struct gw_model *m)
{
    struct gw *gw = a->w->gw;
    struct gw_provider_conf *pc = gw_config_provider(&gw->cfg, "anthropic");
    struct gw_timeouts to = gw_config_timeouts(&gw->cfg, pc);
    struct count_call *k = gw_calloc(1, sizeof(*k));
    json_t *body = upstream_body(in, m->wire_id);
    int rc = k != NULL && body != NULL ? 0 : GW_ENOMEM;

    if (k != NULL) {
        k->w = a->w;
        k->req = a->req;
        gw_strlcpy(k->rid, a->rid, sizeof(k->rid));
        gw_buf_init(&k->answer, COUNT_ANSWER_MAX);
        a->w->inflight++;
    }
    struct gw_provider_cfg pcfg = {
        .base_url = pc->base_url, .api_key = pc->api_key, .api_version = pc->api_version};
    if (rc == 0 &&
        (rc = gw_anthropic_request(&pcfg, "/v1/messages/count_tokens", body, &k->up)) == 0) {
        struct gw_easy_opts o = {
            .url = k->up.url,
            .headers = (const char *const *)k->up.headers,
            .nheaders = k->up.nheaders,
            .body = k->up.body,
            .body_len = k->up.body_len,
            .connect_ms = to.connect_ms,
            .total_ms = to.connect_ms + to.first_byte_ms,
            .on_write = on_write,
            .arg = k,
        };
        rc = gw_upstream_easy_new(a->w->upstream, &o, &k->easy, &k->hdrs);
        if (rc == 0)
            rc = gw_upstream_start(a->w->upstream, k->easy, on_done, k);
    }
    json_decref(body);
    if (rc != 0) {
        GW_LOG_ERROR("count", "req=%s cannot call anthropic count_tokens: %s", a->rid,
                     gw_strerror(rc));
        refuse(a->req, a->rid, 503, "overloaded", "the gateway cannot count the tokens now");
        if (k != NULL)
            count_free(k);
    }
}

static void count_then(struct gw_authed *a)
{
    char bad[200];
    struct gw_errbuf eb = {{0}};
    json_t *canon = NULL;
    json_t *in = gw_answer_body(a->req, bad, sizeof(bad));
    if (in == NULL) {
        refuse(a->req, a->rid, 400, "invalid_json", bad);
        return;
    }
    const char *model = gw_json_str(in, "model");
    const struct gw_model *m = model ? gw_catalog_find(a->w->gw->catalog, model) : NULL;
    struct gw_errbuf native = {{0}}; /* Anthropic counts it all; the estimate what it can */
    if (gw_messages_to_chat(in, 1, &canon, &eb, &native) != 0) {
        refuse(a->req, a->rid, 400, "invalid_request", eb.msg[0] ? eb.msg : "out of memory");
    } else if (model == NULL) {
        refuse(a->req, a->rid, 400, "invalid_request", "'model' is required");
    } else if (m == NULL) {
        refuse(a->req, a->rid, 404, "model_not_found", "no such model");
    } else if (strcmp(m->provider, "anthropic") == 0 &&
               gw_provider_configured(a->w->gw, "anthropic")) {
        count_upstream(a, in, m);
    } else {
        answer_count(a->req, a->rid, estimate(canon), "estimate");
    }
    json_decref(canon);
    json_decref(in);
}

void gw_messages_count(struct gw_worker *w, struct evhttp_request *req, const char *rid)
{
    gw_with_key(w, req, rid, count_then, 0);
}
