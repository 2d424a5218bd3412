/*
 * providers/anthropic — the Anthropic Messages API adapter.
 *
 * Translation: system/developer messages become the top-level "system" (blocks keep their
 * cache_control so prompt caching keeps working); tool calls become tool_use blocks and tool
 * messages tool_result blocks in a user turn; consecutive turns of one role are merged because
 * the API wants alternation; max_tokens is required, so a default is supplied.
 * Usage: Anthropic's input_tokens excludes cache reads and writes; the normalised input count
 * adds them back (struct gw_usage counts every prompt token).
 * Streams: message_start / content_block_* / message_delta / message_stop become OpenAI chunks;
 * message_stop is the end marker; an "error" event fails the stream.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "providers/provider.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/util.h"

#define DEFAULT_VERSION "2023-06-01"

static int einval(struct gw_errbuf *eb, const char *msg)
{
    gw_errbuf_set(eb, "%s", msg);
    return GW_EINVAL;
}

/* "data:<mime>;base64,<data>" → an image block; http(s) URLs → a url source. */
static json_t *image_block(const char *url, struct gw_errbuf *eb)
{
    json_t *mime;
    const char *data;

    if (strncmp(url, "data:", 5) == 0) {
        if (gw_data_url_split(url, &mime, &data) != 0) {
            einval(eb, "image data URLs must look like data:<mime>;base64,<data>");
            return NULL;
        }
        return json_pack("{s:s,s:{s:s,s:o,s:s}}", "type", "image", "source", "type", "base64",
                         "media_type", mime, "data", data);
    }
    if (strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0)
        return json_pack("{s:s,s:{s:s,s:s}}", "type", "image", "source", "type", "url", "url",
                         url);
    einval(eb, "image_url must be a data: URL or an http(s) URL");
    return NULL;
}

/* Canonical content (string or parts) → an array of Anthropic blocks appended to out. */
static int content_blocks(const json_t *content, json_t *out, struct gw_errbuf *eb)
{
    size_t i;
    json_t *part;

    if (json_is_string(content)) {
        if (json_string_length(content) == 0)
            return 0;
        return json_array_append_new(out, json_pack("{s:s,s:O}", "type", "text", "text",
                                                     content)) ? GW_ENOMEM : 0;
    }
    if (content == NULL || json_is_null(content))
        return 0;
    json_array_foreach(content, i, part) {
        const char *type = gw_json_str(part, "type");
        json_t *blk = NULL;
        if (type != NULL && strcmp(type, "text") == 0) {
            blk = json_pack("{s:s,s:O}", "type", "text", "text", json_object_get(part, "text"));
            json_t *cc = json_object_get(part, "cache_control");
            if (blk != NULL && cc != NULL)
                json_object_set(blk, "cache_control", cc);
        } else if (type != NULL && strcmp(type, "image_url") == 0) {
            const char *url = gw_json_str(json_object_get(part, "image_url"), "url");
            blk = image_block(url ? url : "", eb);
            if (blk == NULL)
                return GW_EINVAL;
        } else if (gw_part_is_anthropic_thinking(part)) {
            blk = json_deep_copy(part); /* handed back as it came (its signature checks it) */
        } else {
            return einval(eb, "anthropic models accept text and image_url content parts only");
        }
        if (blk == NULL || json_array_append_new(out, blk) != 0)
            return GW_ENOMEM;
    }
    return 0;
}

/* Plain text of a tool message's content (string or text parts). */
static json_t *tool_result_content(const json_t *content)
{
    if (json_is_string(content))
        return json_incref((json_t *)content);
    json_t *blocks = json_array();
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        const char *text = gw_json_str(part, "text");
        if (text != NULL)
            json_array_append_new(blocks, json_pack("{s:s,s:s}", "type", "text", "text", text));
    }
    return blocks;
}

static int add_system(json_t *system_blocks, const json_t *content, struct gw_errbuf *eb)
{
    return content_blocks(content, system_blocks, eb);
}

static int translate_messages(const json_t *msgs, json_t *body, struct gw_errbuf *eb)
{
    json_t *messages = json_array();
    json_t *system = json_array();
    size_t i;
    json_t *m;
    int rc = GW_ENOMEM;

    if (messages == NULL || system == NULL)
        goto out;
    json_array_foreach(msgs, i, m) {
        const char *role = gw_json_str(m, "role");
        json_t *content = json_object_get(m, "content");
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            if ((rc = add_system(system, content, eb)) != 0)
                goto out;
            continue;
        }
        json_t *blocks = json_array();
        if (blocks == NULL) {
            rc = GW_ENOMEM;
            goto out;
        }
        if (strcmp(role, "tool") == 0) {
            json_t *tr = json_pack("{s:s,s:s,s:o}", "type", "tool_result", "tool_use_id",
                                   gw_json_str(m, "tool_call_id"), "content",
                                   tool_result_content(content));
            if (tr == NULL || json_array_append_new(blocks, tr) != 0) {
                json_decref(blocks);
                rc = GW_ENOMEM;
                goto out;
            }
            role = "user";
        } else {
            if ((rc = content_blocks(content, blocks, eb)) != 0) {
                json_decref(blocks);
                goto out;
            }
            size_t k;
            json_t *tc;
            json_array_foreach(json_object_get(m, "tool_calls"), k, tc) {
                json_t *fn = json_object_get(tc, "function");
                json_t *input = gw_tool_call_args(tc);
                if (input == NULL) {
                    json_decref(blocks);
                    rc = einval(eb, "tool call arguments must be a JSON object");
                    goto out;
                }
                json_array_append_new(blocks, json_pack("{s:s,s:O,s:O,s:o}", "type", "tool_use",
                                                        "id", json_object_get(tc, "id"), "name",
                                                        json_object_get(fn, "name"), "input",
                                                        input));
            }
        }
        if ((rc = gw_turn_append(messages, role, "content", blocks)) != 0)
            goto out;
    }
    if (json_array_size(messages) == 0) {
        rc = einval(eb, "anthropic models need at least one user or assistant message");
        goto out;
    }
    json_object_set(body, "messages", messages);
    if (json_array_size(system) > 0) {
        /* Plain string when no block carries cache_control, else the blocks as they are. */
        int plain = 1;
        size_t k;
        json_t *b;
        json_array_foreach(system, k, b) {
            if (json_object_get(b, "cache_control") != NULL || strcmp(gw_json_str(b, "type"), "text"))
                plain = 0;
        }
        if (plain && json_array_size(system) == 1)
            json_object_set(body, "system", json_object_get(json_array_get(system, 0), "text"));
        else
            json_object_set(body, "system", system);
    }
    rc = 0;
out:
    json_decref(messages);
    json_decref(system);
    return rc;
}

static int translate_tools(const json_t *req, json_t *body, struct gw_errbuf *eb)
{
    json_t *tools = json_object_get(req, "tools");
    size_t i;
    json_t *t;

    if (json_is_array(tools) && json_array_size(tools) > 0) {
        json_t *out = json_array();
        json_array_foreach(tools, i, t) {
            json_t *fn = json_object_get(t, "function");
            json_t *params = json_object_get(fn, "parameters");
            json_t *schema = params ? json_incref(params) : json_pack("{s:s}", "type", "object");
            json_t *tool = json_pack("{s:O,s:o}", "name", json_object_get(fn, "name"),
                                     "input_schema", schema);
            json_t *desc = json_object_get(fn, "description");
            if (tool != NULL && desc != NULL)
                json_object_set(tool, "description", desc);
            json_array_append_new(out, tool);
        }
        json_object_set_new(body, "tools", out);
    }
    json_t *tc = json_object_get(req, "tool_choice");
    json_t *choice = NULL;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        const char *type = strcmp(s, "required") == 0 ? "any" : s; /* auto, none */
        choice = json_pack("{s:s}", "type", type);
    } else if (json_is_object(tc)) {
        choice = json_pack("{s:s,s:O}", "type", "tool", "name",
                           json_object_get(json_object_get(tc, "function"), "name"));
    }
    if (json_is_false(json_object_get(req, "parallel_tool_calls"))) {
        if (choice == NULL)
            choice = json_pack("{s:s}", "type", "auto");
        json_object_set_new(choice, "disable_parallel_tool_use", json_true());
    }
    if (choice != NULL)
        json_object_set_new(body, "tool_choice", choice);
    (void)eb;
    return 0;
}

int gw_anthropic_request(const struct gw_provider_cfg *cfg, const char *path, const json_t *body,
                         struct gw_upstream_req *out)
{
    int rc;
    if ((rc = gw_upstream_req_url(out, cfg->base_url, path)) ||
        (rc = gw_upstream_req_header(out, "x-api-key", cfg->api_key ? cfg->api_key : "")) ||
        (rc = gw_upstream_req_header(out, "anthropic-version",
                                     cfg->api_version ? cfg->api_version : DEFAULT_VERSION)) ||
        (rc = gw_upstream_req_header(out, "content-type", "application/json")))
        return rc;
    return gw_upstream_req_body(out, body);
}

/* The client's own Messages body with the wire model, the gateway's max_tokens and stream, and
 * none of the gateway's members (cfg->native). */
static json_t *native_body(const struct gw_provider_cfg *cfg, const json_t *req,
                           const char *wire_model, int stream)
{
    static const char *const gateway[] = {"provider", "auto_route", "route_method",
                                          "conversation_id", "stream"};
    json_t *body = json_deep_copy(cfg->native);
    if (body == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(gateway) / sizeof(*gateway); i++)
        json_object_del(body, gateway[i]);
    json_object_set_new(body, "model", json_string(wire_model));
    json_t *max = json_object_get(req, "max_tokens");
    if (json_is_integer(max))
        json_object_set(body, "max_tokens", max);
    if (stream)
        json_object_set_new(body, "stream", json_true());
    return body;
}

static int build(const struct gw_provider_cfg *cfg, const json_t *req, const char *wire_model,
                 int stream, struct gw_upstream_req *out, struct gw_errbuf *eb)
{
    json_t *body = cfg->native != NULL ? native_body(cfg, req, wire_model, stream) : json_object();
    int rc;

    if (body == NULL)
        return GW_ENOMEM;
    if (cfg->native != NULL)
        goto send;
    static const char *const unsupported[] = {"response_format", "logprobs", "top_logprobs",
                                              "reasoning_effort", NULL};
    json_t *n = json_object_get(req, "n");
    if (json_is_integer(n) && json_integer_value(n) != 1) {
        rc = einval(eb, "anthropic models return one choice (n must be 1)");
        goto out;
    }
    if ((rc = gw_refuse_fields(req, unsupported, "anthropic models", eb)) != 0)
        goto out;
    json_object_set_new(body, "model", json_string(wire_model));
    if ((rc = translate_messages(json_object_get(req, "messages"), body, eb)) != 0)
        goto out;
    json_int_t max = gw_json_int(req, "max_completion_tokens", 0);
    if (max <= 0)
        max = gw_json_int(req, "max_tokens", 0);
    if (max <= 0)
        max = cfg->default_max_tokens > 0 ? cfg->default_max_tokens : 4096;
    json_object_set_new(body, "max_tokens", json_integer(max));
    json_t *temp = json_object_get(req, "temperature");
    if (json_is_number(temp)) {
        if (json_number_value(temp) > 1.0) {
            rc = einval(eb, "temperature must be between 0 and 1 for anthropic models");
            goto out;
        }
        json_object_set(body, "temperature", temp);
    }
    json_t *top_p = json_object_get(req, "top_p");
    if (json_is_number(top_p))
        json_object_set(body, "top_p", top_p);
    json_t *stop = json_object_get(req, "stop");
    if (json_is_string(stop))
        json_object_set_new(body, "stop_sequences", json_pack("[O]", stop));
    else if (json_is_array(stop))
        json_object_set(body, "stop_sequences", stop);
    if ((rc = translate_tools(req, body, eb)) != 0)
        goto out;
    static const char *passthrough[] = {"thinking", "top_k", "metadata"};
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_object_get(req, passthrough[i]);
        if (v != NULL)
            json_object_set(body, passthrough[i], v);
    }
    const char *user = gw_json_str(req, "user");
    if (user != NULL && json_object_get(body, "metadata") == NULL)
        json_object_set_new(body, "metadata", json_pack("{s:s}", "user_id", user));
    if (stream)
        json_object_set_new(body, "stream", json_true());
send:
    rc = gw_anthropic_request(cfg, "/v1/messages", body, out);
out:
    json_decref(body);
    return rc;
}

static const char *finish_reason(const char *stop_reason)
{
    if (stop_reason == NULL)
        return "stop";
    if (strcmp(stop_reason, "max_tokens") == 0)
        return "length";
    if (strcmp(stop_reason, "tool_use") == 0)
        return "tool_calls";
    if (strcmp(stop_reason, "refusal") == 0)
        return "content_filter";
    return "stop"; /* end_turn, stop_sequence, pause_turn */
}

/* A count the provider reports, into [0, GW_USAGE_MAX]. */
static int64_t nonneg(json_int_t v) { return v < 0 ? 0 : v > GW_USAGE_MAX ? GW_USAGE_MAX : v; }

/* Merge Anthropic usage fields present in u_json into u (fields absent are kept). */
static void read_usage(const json_t *uj, struct gw_usage *u)
{
    if (!json_is_object(uj))
        return;
    u->seen = 1;
    json_t *in = json_object_get(uj, "input_tokens");
    json_t *cr = json_object_get(uj, "cache_read_input_tokens");
    json_t *cw = json_object_get(uj, "cache_creation_input_tokens");
    json_t *out = json_object_get(uj, "output_tokens");
    if (json_is_integer(cr))
        u->cached_input_tokens = nonneg(json_integer_value(cr));
    if (json_is_integer(cw))
        u->cache_write_tokens = nonneg(json_integer_value(cw));
    if (json_is_integer(in) || json_is_integer(cr) || json_is_integer(cw)) {
        int64_t base = json_is_integer(in) ? nonneg(json_integer_value(in))
                                           : u->input_tokens - u->cached_input_tokens -
                                                 u->cache_write_tokens;
        if (base < 0)
            base = 0;
        u->input_tokens = base + u->cached_input_tokens + u->cache_write_tokens;
    }
    if (json_is_integer(out))
        u->output_tokens = nonneg(json_integer_value(out));
    json_t *w1h = json_object_get(json_object_get(uj, "cache_creation"), "ephemeral_1h_input_tokens");
    if (json_is_integer(w1h))
        u->cache_write_1h_tokens = nonneg(json_integer_value(w1h));
    if (u->cache_write_1h_tokens > u->cache_write_tokens)
        u->cache_write_1h_tokens = u->cache_write_tokens;
}

static int parse(const char *body, size_t len, json_t **out, struct gw_usage *usage,
                 struct gw_errbuf *eb)
{
    json_t *root = gw_json_parse(body, len, eb);
    json_t *text = NULL, *thinking = NULL, *tool_calls = NULL;
    size_t i;
    json_t *blk;
    int rc = GW_EPARSE;

    *out = NULL;
    memset(usage, 0, sizeof(*usage));
    json_t *content = json_object_get(root, "content");
    if (!json_is_object(root) || !json_is_array(content)) {
        gw_errbuf_set(eb, "not a message object");
        goto out;
    }
    struct gw_buf tb, hb;
    gw_buf_init(&tb, SIZE_MAX / 2);
    gw_buf_init(&hb, SIZE_MAX / 2);
    tool_calls = json_array();
    json_array_foreach(content, i, blk) {
        const char *type = gw_json_str(blk, "type");
        if (type == NULL)
            continue;
        if (strcmp(type, "text") == 0 && gw_json_str(blk, "text") != NULL) {
            if (gw_buf_adds(&tb, gw_json_str(blk, "text")) != 0)
                goto oom;
        } else if (strcmp(type, "thinking") == 0 && gw_json_str(blk, "thinking") != NULL) {
            if (gw_buf_adds(&hb, gw_json_str(blk, "thinking")) != 0)
                goto oom;
        } else if (strcmp(type, "tool_use") == 0) {
            const char *id = gw_json_str(blk, "id"), *name = gw_json_str(blk, "name");
            json_t *input = json_object_get(blk, "input");
            if (id == NULL || name == NULL || !json_is_object(input)) {
                gw_buf_cleanup(&tb);
                gw_buf_cleanup(&hb);
                gw_errbuf_set(eb, "malformed tool_use block");
                goto out;
            }
            char *args = gw_json_dump(input);
            json_array_append_new(tool_calls,
                                  json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type", "function",
                                            "function", "name", name, "arguments",
                                            args ? args : "{}"));
            gw_free(args);
        }
    }
    text = tb.len > 0 || json_array_size(tool_calls) == 0 ? json_stringn(tb.data ? tb.data : "", tb.len)
                                                          : json_null();
    if (hb.len > 0)
        thinking = json_stringn(hb.data, hb.len);
    gw_buf_cleanup(&tb);
    gw_buf_cleanup(&hb);
    json_t *msg = json_pack("{s:s,s:o}", "role", "assistant", "content", text);
    text = NULL;
    if (json_array_size(tool_calls) > 0)
        json_object_set(msg, "tool_calls", tool_calls);
    if (thinking != NULL)
        json_object_set(msg, "reasoning_content", thinking);
    const char *id = gw_json_str(root, "id");
    const char *model = gw_json_str(root, "model");
    *out = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:s}]}", "id", id ? id : "", "object",
                     "chat.completion", "created", (json_int_t)gw_now_s(), "model",
                     model ? model : "", "choices", "index", 0, "message", msg, "finish_reason",
                     finish_reason(gw_json_str(root, "stop_reason")));
    read_usage(json_object_get(root, "usage"), usage);
    rc = *out ? 0 : GW_ENOMEM;
    goto out;
oom:
    gw_buf_cleanup(&tb);
    gw_buf_cleanup(&hb);
    rc = GW_ENOMEM;
out:
    json_decref(text);
    json_decref(thinking);
    json_decref(tool_calls);
    json_decref(root);
    return rc;
}

static void fill_error(const json_t *root, int status, struct gw_upstream_error *out)
{
    gw_upstream_error_default(status, out);
    json_t *err = json_object_get(root, "error");
    const char *type = gw_json_str(err, "type");
    const char *msg = gw_json_str(err, "message");
    if (type != NULL)
        gw_strlcpy(out->type, type, sizeof(out->type));
    if (msg != NULL)
        gw_strlcpy(out->message, msg, sizeof(out->message));
    if (type != NULL && (strcmp(type, "overloaded_error") == 0 || strcmp(type, "api_error") == 0 ||
                         strcmp(type, "rate_limit_error") == 0))
        out->retryable = 1;
    if (type != NULL && strcmp(type, "overloaded_error") == 0 && status == 0)
        out->status = 529;
    out->auth_failed = status == 401 || status == 403 ||
                       (type != NULL && (strcmp(type, "authentication_error") == 0 ||
                                         strcmp(type, "permission_error") == 0));
}

static void map_error(int status, const char *body, size_t len, struct gw_upstream_error *out)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    fill_error(root, status, out);
    json_decref(root);
}

/* Stream state: the OpenAI tool-call index of each Anthropic content block. */
#define MAX_BLOCKS 256
struct astate {
    int tool_index[MAX_BLOCKS]; /* -1: not a tool block */
    int ntools;
};

static int stream_init(struct gw_stream *s)
{
    struct astate *a = gw_calloc(1, sizeof(*a));
    if (a == NULL)
        return GW_ENOMEM;
    for (int i = 0; i < MAX_BLOCKS; i++)
        a->tool_index[i] = -1;
    s->priv = a;
    return 0;
}

static void stream_cleanup(struct gw_stream *s) { GW_FREE(s->priv); }

static int emit_delta(struct gw_stream *s, json_t *delta, const char *finish)
{
    json_t *chunk = json_pack("{s:[{s:i,s:o,s:s?}]}", "choices", "index", 0, "delta", delta,
                              "finish_reason", finish);
    if (chunk == NULL)
        return GW_ENOMEM;
    int rc = s->emit(s->arg, chunk);
    json_decref(chunk);
    return rc;
}

static int block_index(const json_t *ev)
{
    json_t *idx = json_object_get(ev, "index");
    if (!json_is_integer(idx) || json_integer_value(idx) < 0 ||
        json_integer_value(idx) >= MAX_BLOCKS)
        return -1;
    return (int)json_integer_value(idx);
}

static int stream_event(struct gw_stream *s, const char *event, const char *data, size_t len)
{
    struct astate *a = s->priv;
    json_t *ev = gw_json_parse(data, len, NULL);
    int rc = 0;

    if (!json_is_object(ev)) {
        json_decref(ev);
        return GW_EPARSE;
    }
    const char *type = gw_json_str(ev, "type");
    if (type == NULL)
        type = event;
    if (strcmp(type, "message_start") == 0) {
        json_t *msg = json_object_get(ev, "message");
        const char *id = gw_json_str(msg, "id");
        if (id != NULL)
            gw_strlcpy(s->id, id, sizeof(s->id));
        read_usage(json_object_get(msg, "usage"), &s->usage);
        rc = emit_delta(s, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL);
    } else if (strcmp(type, "content_block_start") == 0) {
        json_t *blk = json_object_get(ev, "content_block");
        int bi = block_index(ev);
        if (bi < 0 || !json_is_object(blk)) {
            rc = GW_EPARSE;
        } else if (strcmp(gw_json_str(blk, "type") ? gw_json_str(blk, "type") : "", "tool_use") ==
                   0) {
            const char *id = gw_json_str(blk, "id"), *name = gw_json_str(blk, "name");
            if (id == NULL || name == NULL) {
                rc = GW_EPARSE;
            } else {
                a->tool_index[bi] = a->ntools++;
                rc = emit_delta(s,
                                json_pack("{s:[{s:i,s:s,s:s,s:{s:s,s:s}}]}", "tool_calls",
                                          "index", a->tool_index[bi], "id", id, "type",
                                          "function", "function", "name", name, "arguments", ""),
                                NULL);
            }
        }
    } else if (strcmp(type, "content_block_delta") == 0) {
        json_t *d = json_object_get(ev, "delta");
        const char *dt = gw_json_str(d, "type");
        int bi = block_index(ev);
        if (dt == NULL || bi < 0) {
            rc = GW_EPARSE;
        } else if (strcmp(dt, "text_delta") == 0 && gw_json_str(d, "text") != NULL) {
            rc = emit_delta(s, json_pack("{s:s}", "content", gw_json_str(d, "text")), NULL);
        } else if (strcmp(dt, "input_json_delta") == 0 && a->tool_index[bi] >= 0 &&
                   gw_json_str(d, "partial_json") != NULL) {
            rc = emit_delta(s,
                            json_pack("{s:[{s:i,s:{s:s}}]}", "tool_calls", "index",
                                      a->tool_index[bi], "function", "arguments",
                                      gw_json_str(d, "partial_json")),
                            NULL);
        } else if (strcmp(dt, "thinking_delta") == 0 && gw_json_str(d, "thinking") != NULL) {
            rc = emit_delta(s, json_pack("{s:s}", "reasoning_content", gw_json_str(d, "thinking")),
                            NULL);
        }
    } else if (strcmp(type, "message_delta") == 0) {
        read_usage(json_object_get(ev, "usage"), &s->usage);
        const char *sr = gw_json_str(json_object_get(ev, "delta"), "stop_reason");
        if (sr != NULL) {
            gw_strlcpy(s->finish_reason, finish_reason(sr), sizeof(s->finish_reason));
            rc = emit_delta(s, json_object(), s->finish_reason);
        }
    } else if (strcmp(type, "message_stop") == 0) {
        s->complete = 1;
    } else if (strcmp(type, "error") == 0) {
        fill_error(ev, 0, &s->err);
        s->failed = 1;
        rc = GW_EUPSTREAM;
    }
    json_decref(ev);
    return rc;
}

const struct gw_provider_ops gw_provider_anthropic = {
    .name = "anthropic",
    .build = build,
    .parse = parse,
    .stream_init = stream_init,
    .stream_event = stream_event,
    .stream_cleanup = stream_cleanup,
    .map_error = map_error,
};
