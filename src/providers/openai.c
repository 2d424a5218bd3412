/*
 * providers/openai — the OpenAI Chat Completions adapter, shared by xAI and Perplexity, whose
 * APIs speak the same format with small differences:
 * - xAI: reasoning models reject stop, presence/frequency penalties and reasoning_effort.
 * - Perplexity: no /v1 in the path, no tools, search fields and citations/search_results pass
 *   through, a per-request search fee (usage.num_search_queries, search_context_size), and a
 *   stream that may end after the finish chunk without [DONE].
 *
 * Invariants: the canonical request already is this format, so build() copies it and adjusts;
 * parse() validates every field it reads and keeps pass-through fields; stream usage is always
 * requested (stream_options.include_usage) so streamed calls are never billed at zero.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "providers/provider.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/util.h"

enum flavor { OPENAI, XAI, PERPLEXITY };

static int flavor_of(const struct gw_stream *s);

static int build_common(enum flavor fl, const struct gw_provider_cfg *cfg, const json_t *req,
                        const char *wire_model, int stream, struct gw_upstream_req *out,
                        struct gw_errbuf *eb)
{
    json_t *body = json_deep_copy(req);
    char auth[600];
    int rc = GW_ENOMEM;

    if (body == NULL)
        return GW_ENOMEM;
    json_object_set_new(body, "model", json_string(wire_model));
    if (stream) {
        json_object_set_new(body, "stream", json_true());
        json_object_set_new(body, "stream_options", json_pack("{s:b}", "include_usage", 1));
    }
    if (fl == OPENAI && cfg->reasoning) {
        json_t *mt = json_object_get(body, "max_tokens");
        if (mt != NULL) {
            if (json_object_get(body, "max_completion_tokens") == NULL)
                json_object_set(body, "max_completion_tokens", mt);
            json_object_del(body, "max_tokens");
        }
        static const char *sampling[] = {"temperature", "top_p"};
        for (size_t i = 0; i < 2; i++) {
            json_t *v = json_object_get(body, sampling[i]);
            if (v == NULL || json_is_null(v))
                continue;
            if (json_number_value(v) != 1.0) {
                gw_errbuf_set(eb, "'%s' is not supported by this reasoning model", sampling[i]);
                rc = GW_EINVAL;
                goto out;
            }
            json_object_del(body, sampling[i]);
        }
    }
    if (fl == XAI && cfg->reasoning) {
        static const char *rejected[] = {"presence_penalty", "frequency_penalty", "stop",
                                         "reasoning_effort"};
        for (size_t i = 0; i < 4; i++)
            json_object_del(body, rejected[i]);
    }
    if (fl == PERPLEXITY) {
        json_t *tools = json_object_get(body, "tools");
        if (tools != NULL && !json_is_null(tools)) {
            gw_errbuf_set(eb, "perplexity models do not support tools");
            rc = GW_EINVAL;
            goto out;
        }
    }
    snprintf(auth, sizeof(auth), "Bearer %s", cfg->api_key ? cfg->api_key : "");
    if ((rc = gw_upstream_req_url(out, cfg->base_url, fl == PERPLEXITY ? "/chat/completions"
                                                                       : "/v1/chat/completions")) ||
        (rc = gw_upstream_req_header(out, "Authorization", auth)) ||
        (rc = gw_upstream_req_header(out, "Content-Type", "application/json")) ||
        (rc = gw_upstream_req_body(out, body)))
        goto out;
    rc = 0;
out:
    memset(auth, 0, sizeof(auth));
    json_decref(body);
    return rc;
}

static int build_openai(const struct gw_provider_cfg *cfg, const json_t *req, const char *m, int s,
                        struct gw_upstream_req *out, struct gw_errbuf *eb)
{
    return build_common(OPENAI, cfg, req, m, s, out, eb);
}

static int build_xai(const struct gw_provider_cfg *cfg, const json_t *req, const char *m, int s,
                     struct gw_upstream_req *out, struct gw_errbuf *eb)
{
    return build_common(XAI, cfg, req, m, s, out, eb);
}

static int build_perplexity(const struct gw_provider_cfg *cfg, const json_t *req, const char *m,
                            int s, struct gw_upstream_req *out, struct gw_errbuf *eb)
{
    return build_common(PERPLEXITY, cfg, req, m, s, out, eb);
}

static int64_t nonneg(json_int_t v) { return v < 0 ? 0 : (int64_t)v; }

/* Read an OpenAI-shaped usage object into u. */
static void read_usage(enum flavor fl, const json_t *usage, struct gw_usage *u)
{
    if (!json_is_object(usage))
        return;
    memset(u, 0, sizeof(*u));
    u->seen = 1;
    u->input_tokens = nonneg(gw_json_int(usage, "prompt_tokens", 0));
    u->output_tokens = nonneg(gw_json_int(usage, "completion_tokens", 0));
    u->cached_input_tokens =
        nonneg(gw_json_int(json_object_get(usage, "prompt_tokens_details"), "cached_tokens", 0));
    u->reasoning_tokens = nonneg(
        gw_json_int(json_object_get(usage, "completion_tokens_details"), "reasoning_tokens", 0));
    if (u->cached_input_tokens > u->input_tokens)
        u->cached_input_tokens = u->input_tokens;
    if (u->reasoning_tokens > u->output_tokens)
        u->reasoning_tokens = u->output_tokens;
    if (fl == PERPLEXITY) {
        json_t *n = json_object_get(usage, "num_search_queries");
        u->search_requests = json_is_integer(n) ? nonneg(json_integer_value(n)) : 1;
        const char *size = gw_json_str(usage, "search_context_size");
        if (size != NULL)
            gw_strlcpy(u->search_context_size, size, sizeof(u->search_context_size));
    }
}

static int parse_common(enum flavor fl, const char *body, size_t len, json_t **out,
                        struct gw_usage *usage, struct gw_errbuf *eb)
{
    json_t *root = gw_json_parse(body, len, eb);
    size_t i;
    json_t *ch;

    *out = NULL;
    if (root == NULL)
        return GW_EPARSE;
    json_t *choices = json_object_get(root, "choices");
    if (!json_is_object(root) || !json_is_array(choices))
        goto bad;
    json_array_foreach(choices, i, ch) {
        json_t *msg = json_object_get(ch, "message");
        json_t *content = json_object_get(msg, "content");
        if (!json_is_object(ch) || !json_is_object(msg) ||
            (content != NULL && !json_is_string(content) && !json_is_null(content)))
            goto bad;
    }
    memset(usage, 0, sizeof(*usage));
    read_usage(fl, json_object_get(root, "usage"), usage);
    json_object_del(root, "usage");
    *out = root;
    return 0;
bad:
    gw_errbuf_set(eb, "not a chat.completion object");
    json_decref(root);
    return GW_EPARSE;
}

static int parse_openai(const char *b, size_t n, json_t **o, struct gw_usage *u,
                        struct gw_errbuf *eb)
{
    return parse_common(OPENAI, b, n, o, u, eb);
}

static int parse_xai(const char *b, size_t n, json_t **o, struct gw_usage *u, struct gw_errbuf *eb)
{
    return parse_common(XAI, b, n, o, u, eb);
}

static int parse_perplexity(const char *b, size_t n, json_t **o, struct gw_usage *u,
                            struct gw_errbuf *eb)
{
    return parse_common(PERPLEXITY, b, n, o, u, eb);
}

static void fill_error(const json_t *root, int status, struct gw_upstream_error *out)
{
    gw_upstream_error_default(status, out);
    json_t *err = json_object_get(root, "error");
    const char *msg = NULL, *type = NULL;
    if (json_is_object(err)) {
        msg = gw_json_str(err, "message");
        type = gw_json_str(err, "code");
        if (type == NULL)
            type = gw_json_str(err, "type");
    } else if (json_is_string(err)) {
        msg = json_string_value(err);
    }
    if (type != NULL)
        gw_strlcpy(out->type, type, sizeof(out->type));
    if (msg != NULL)
        gw_strlcpy(out->message, msg, sizeof(out->message));
    if (status == 429 && type != NULL && strcmp(type, "insufficient_quota") == 0)
        out->retryable = 0;
    out->auth_failed = status == 401 || status == 403;
}

static void map_error(int status, const char *body, size_t len, struct gw_upstream_error *out)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    fill_error(root, status, out);
    json_decref(root);
}

/* Streams: the chunks are already canonical; record usage, pass the rest on. */
static int stream_event(struct gw_stream *s, const char *event, const char *data, size_t len)
{
    enum flavor fl = (enum flavor)flavor_of(s);
    (void)event;

    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        s->complete = 1;
        return 0;
    }
    json_t *chunk = gw_json_parse(data, len, NULL);
    if (!json_is_object(chunk)) {
        json_decref(chunk);
        return GW_EPARSE;
    }
    if (json_object_get(chunk, "error") != NULL) {
        fill_error(chunk, 0, &s->err);
        s->failed = 1;
        json_decref(chunk);
        return GW_EUPSTREAM;
    }
    json_t *usage = json_object_get(chunk, "usage");
    if (json_is_object(usage))
        read_usage(fl, usage, &s->usage);
    json_object_del(chunk, "usage");
    json_t *choices = json_object_get(chunk, "choices");
    int rc = 0;
    if (json_is_array(choices) && json_array_size(choices) > 0) {
        size_t i;
        json_t *ch;
        json_array_foreach(choices, i, ch) {
            const char *fr = gw_json_str(ch, "finish_reason");
            if (!json_is_object(ch) || !json_is_object(json_object_get(ch, "delta"))) {
                json_decref(chunk);
                return GW_EPARSE;
            }
            if (fr != NULL)
                gw_strlcpy(s->finish_reason, fr, sizeof(s->finish_reason));
        }
        rc = s->emit(s->arg, chunk);
    } else if (!json_is_array(choices)) {
        rc = GW_EPARSE;
    }
    if (fl == PERPLEXITY && s->finish_reason[0] != '\0' && s->usage.seen)
        s->complete = 1;
    json_decref(chunk);
    return rc;
}

/* The stream's flavor is kept in priv as a tagged pointer-free integer. */
static int flavor_of(const struct gw_stream *s) { return (int)(intptr_t)s->priv; }

static int init_openai(struct gw_stream *s)
{
    s->priv = (void *)(intptr_t)OPENAI;
    return 0;
}

static int init_xai(struct gw_stream *s)
{
    s->priv = (void *)(intptr_t)XAI;
    return 0;
}

static int init_perplexity(struct gw_stream *s)
{
    s->priv = (void *)(intptr_t)PERPLEXITY;
    return 0;
}

const struct gw_provider_ops gw_provider_openai = {
    .name = "openai",
    .build = build_openai,
    .parse = parse_openai,
    .stream_init = init_openai,
    .stream_event = stream_event,
    .map_error = map_error,
};

const struct gw_provider_ops gw_provider_xai = {
    .name = "xai",
    .build = build_xai,
    .parse = parse_xai,
    .stream_init = init_xai,
    .stream_event = stream_event,
    .map_error = map_error,
};

const struct gw_provider_ops gw_provider_perplexity = {
    .name = "perplexity",
    .build = build_perplexity,
    .parse = parse_perplexity,
    .stream_init = init_perplexity,
    .stream_event = stream_event,
    .map_error = map_error,
};
