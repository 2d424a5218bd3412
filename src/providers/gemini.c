/*
 * providers/gemini — the Google Gemini generateContent / streamGenerateContent adapter.
 *
 * Translation: system/developer messages become systemInstruction; assistant → role "model";
 * tool calls become functionCall parts and tool messages functionResponse parts (the function
 * name is found from the earlier assistant tool call with that id); images only as data: URLs;
 * sampling settings go into generationConfig. The model id is put into the URL path, so it must
 * come from the catalog and is checked against a strict alphabet.
 * Usage: promptTokenCount includes cached tokens; thinking tokens (thoughtsTokenCount) are
 * billed as output, so output = candidates + thoughts.
 * Streams (alt=sse): each event is a whole response with new parts; usageMetadata is
 * cumulative; there is no [DONE] — a finishReason marks the end.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "providers/provider.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/util.h"

static int einval(struct gw_errbuf *eb, const char *msg)
{
    gw_errbuf_set(eb, "%s", msg);
    return GW_EINVAL;
}

static int model_id_ok(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > 96)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = m[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static json_t *image_part(const char *url, struct gw_errbuf *eb)
{
    json_t *mime;
    const char *data;

    if (gw_data_url_split(url, &mime, &data) != 0) {
        einval(eb, "gemini models take images as data: URLs (data:<mime>;base64,<data>)");
        return NULL;
    }
    return json_pack("{s:{s:o,s:s}}", "inlineData", "mimeType", mime, "data", data);
}

static int content_parts(const json_t *content, json_t *parts, struct gw_errbuf *eb)
{
    size_t i;
    json_t *part;

    if (json_is_string(content)) {
        if (json_string_length(content) == 0)
            return 0;
        return json_array_append_new(parts, json_pack("{s:O}", "text", content)) ? GW_ENOMEM : 0;
    }
    json_array_foreach(content, i, part) {
        const char *type = gw_json_str(part, "type");
        json_t *p = NULL;
        if (type != NULL && strcmp(type, "text") == 0) {
            p = json_pack("{s:O}", "text", json_object_get(part, "text"));
        } else if (type != NULL && strcmp(type, "image_url") == 0) {
            const char *url = gw_json_str(json_object_get(part, "image_url"), "url");
            if ((p = image_part(url ? url : "", eb)) == NULL)
                return GW_EINVAL;
        } else if (gw_part_is_anthropic_thinking(part)) {
            continue; /* an earlier turn's Anthropic reasoning: only Anthropic takes it back */
        } else {
            return einval(eb, "gemini models accept text and image_url content parts only");
        }
        if (p == NULL || json_array_append_new(parts, p) != 0)
            return GW_ENOMEM;
    }
    return 0;
}

/* The function name of the assistant tool call with this id, searching msgs[0..upto). */
static const char *tool_name_for(const json_t *msgs, size_t upto, const char *id)
{
    for (size_t i = upto; i-- > 0;) {
        size_t k;
        json_t *tc;
        json_array_foreach(json_object_get(json_array_get(msgs, i), "tool_calls"), k, tc) {
            const char *tid = gw_json_str(tc, "id");
            if (tid != NULL && strcmp(tid, id) == 0)
                return gw_json_str(json_object_get(tc, "function"), "name");
        }
    }
    return NULL;
}

static json_t *tool_response_value(const json_t *content)
{
    const char *s = json_is_string(content) ? json_string_value(content) : NULL;
    if (s != NULL) {
        json_t *parsed = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
        if (json_is_object(parsed))
            return parsed;
        json_decref(parsed);
        return json_pack("{s:s}", "content", s);
    }
    return json_pack("{s:O}", "content", content);
}

static int translate_messages(const json_t *msgs, json_t *body, struct gw_errbuf *eb)
{
    json_t *contents = json_array();
    json_t *sys = json_array();
    size_t i;
    json_t *m;
    int rc = GW_ENOMEM;

    if (contents == NULL || sys == NULL)
        goto out;
    json_array_foreach(msgs, i, m) {
        const char *role = gw_json_str(m, "role");
        json_t *content = json_object_get(m, "content");
        json_t *parts = json_array();
        if (parts == NULL)
            goto out;
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            rc = content_parts(content, sys, eb);
            json_decref(parts);
            if (rc != 0)
                goto out;
            continue;
        }
        if (strcmp(role, "tool") == 0) {
            const char *id = gw_json_str(m, "tool_call_id");
            const char *name = tool_name_for(msgs, i, id);
            if (name == NULL) {
                json_decref(parts);
                rc = einval(eb, "a tool message refers to a tool_call_id that no earlier "
                                "assistant message made");
                goto out;
            }
            json_array_append_new(parts, json_pack("{s:{s:s,s:o}}", "functionResponse", "name",
                                                   name, "response",
                                                   tool_response_value(content)));
            role = "user";
        } else {
            if (content != NULL && !json_is_null(content) &&
                (rc = content_parts(content, parts, eb)) != 0) {
                json_decref(parts);
                goto out;
            }
            size_t k;
            json_t *tc;
            json_array_foreach(json_object_get(m, "tool_calls"), k, tc) {
                json_t *fn = json_object_get(tc, "function");
                json_t *a = gw_tool_call_args(tc);
                if (a == NULL) {
                    json_decref(parts);
                    rc = einval(eb, "tool call arguments must be a JSON object");
                    goto out;
                }
                json_array_append_new(parts, json_pack("{s:{s:O,s:o}}", "functionCall", "name",
                                                       json_object_get(fn, "name"), "args", a));
            }
            if (strcmp(role, "assistant") == 0)
                role = "model";
        }
        if ((rc = gw_turn_append(contents, role, "parts", parts)) != 0)
            goto out;
    }
    if (json_array_size(contents) == 0) {
        rc = einval(eb, "gemini models need at least one user or assistant message");
        goto out;
    }
    json_object_set(body, "contents", contents);
    if (json_array_size(sys) > 0)
        json_object_set_new(body, "systemInstruction", json_pack("{s:O}", "parts", sys));
    rc = 0;
out:
    json_decref(contents);
    json_decref(sys);
    return rc;
}

static int generation_config(const json_t *req, json_t *body, struct gw_errbuf *eb)
{
    json_t *gc = json_object();
    json_t *v;

    if (gc == NULL)
        return GW_ENOMEM;
    if (json_is_number(v = json_object_get(req, "temperature")))
        json_object_set(gc, "temperature", v);
    if (json_is_number(v = json_object_get(req, "top_p")))
        json_object_set(gc, "topP", v);
    json_int_t max = gw_json_int(req, "max_completion_tokens", 0);
    if (max <= 0)
        max = gw_json_int(req, "max_tokens", 0);
    if (max > 0)
        json_object_set_new(gc, "maxOutputTokens", json_integer(max));
    v = json_object_get(req, "stop");
    if (json_is_string(v))
        json_object_set_new(gc, "stopSequences", json_pack("[O]", v));
    else if (json_is_array(v))
        json_object_set(gc, "stopSequences", v);
    if (json_is_integer(v = json_object_get(req, "seed")))
        json_object_set(gc, "seed", v);
    json_t *rf = json_object_get(req, "response_format");
    const char *rft = gw_json_str(rf, "type");
    if (rft != NULL && strcmp(rft, "json_object") == 0) {
        json_object_set_new(gc, "responseMimeType", json_string("application/json"));
    } else if (rft != NULL && strcmp(rft, "json_schema") == 0) {
        json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
        if (!json_is_object(schema)) {
            json_decref(gc);
            return einval(eb, "response_format json_schema needs a 'schema' object");
        }
        json_object_set_new(gc, "responseMimeType", json_string("application/json"));
        json_object_set(gc, "responseJsonSchema", schema);
    }
    if (json_object_size(gc) > 0)
        json_object_set(body, "generationConfig", gc);
    json_decref(gc);
    return 0;
}

static void translate_tools(const json_t *req, json_t *body)
{
    json_t *tools = json_object_get(req, "tools");
    size_t i;
    json_t *t;

    if (json_is_array(tools) && json_array_size(tools) > 0) {
        json_t *decls = json_array();
        json_array_foreach(tools, i, t) {
            json_t *fn = json_object_get(t, "function");
            json_t *d = json_pack("{s:O}", "name", json_object_get(fn, "name"));
            json_t *desc = json_object_get(fn, "description");
            json_t *params = json_object_get(fn, "parameters");
            if (d != NULL && desc != NULL)
                json_object_set(d, "description", desc);
            if (d != NULL && params != NULL)
                json_object_set(d, "parameters", params);
            json_array_append_new(decls, d);
        }
        json_object_set_new(body, "tools", json_pack("[{s:o}]", "functionDeclarations", decls));
    }
    json_t *tc = json_object_get(req, "tool_choice");
    json_t *fcc = NULL;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        fcc = json_pack("{s:s}", "mode", strcmp(s, "none") == 0       ? "NONE"
                                         : strcmp(s, "required") == 0 ? "ANY"
                                                                      : "AUTO");
    } else if (json_is_object(tc)) {
        fcc = json_pack("{s:s,s:[O]}", "mode", "ANY", "allowedFunctionNames",
                        json_object_get(json_object_get(tc, "function"), "name"));
    }
    if (fcc != NULL)
        json_object_set_new(body, "toolConfig", json_pack("{s:o}", "functionCallingConfig", fcc));
}

static int build(const struct gw_provider_cfg *cfg, const json_t *req, const char *wire_model,
                 int stream, struct gw_upstream_req *out, struct gw_errbuf *eb)
{
    json_t *body = json_object();
    char path[160];
    int rc;

    if (body == NULL)
        return GW_ENOMEM;
    if (!model_id_ok(wire_model)) {
        rc = einval(eb, "invalid gemini model id");
        goto out;
    }
    static const char *const unsupported[] = {"logprobs", "top_logprobs", "reasoning_effort",
                                              NULL};
    json_t *n = json_object_get(req, "n");
    if (json_is_integer(n) && json_integer_value(n) != 1) {
        rc = einval(eb, "this gateway returns one choice (n must be 1)");
        goto out;
    }
    if ((rc = gw_refuse_fields(req, unsupported, "gemini models", eb)) != 0)
        goto out;
    if ((rc = translate_messages(json_object_get(req, "messages"), body, eb)) != 0 ||
        (rc = generation_config(req, body, eb)) != 0)
        goto out;
    translate_tools(req, body);
    static const char *passthrough[] = {"safetySettings", "cachedContent"};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(req, passthrough[i]);
        if (v != NULL)
            json_object_set(body, passthrough[i], v);
    }
    snprintf(path, sizeof(path), "/v1beta/models/%s:%s", wire_model,
             stream ? "streamGenerateContent?alt=sse" : "generateContent");
    if ((rc = gw_upstream_req_url(out, cfg->base_url, path)) ||
        (rc = gw_upstream_req_header(out, "x-goog-api-key", cfg->api_key ? cfg->api_key : "")) ||
        (rc = gw_upstream_req_header(out, "Content-Type", "application/json")) ||
        (rc = gw_upstream_req_body(out, body)))
        goto out;
    rc = 0;
out:
    json_decref(body);
    return rc;
}

static const char *finish_reason(const char *r)
{
    static const char *filtered[] = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT",
                                     "SPII", "IMAGE_SAFETY"};
    if (r == NULL)
        return NULL;
    if (strcmp(r, "MAX_TOKENS") == 0)
        return "length";
    for (size_t i = 0; i < sizeof(filtered) / sizeof(filtered[0]); i++)
        if (strcmp(r, filtered[i]) == 0)
            return "content_filter";
    return "stop";
}

/* A count the provider reports, into [0, GW_USAGE_MAX]. */
static int64_t nonneg(json_int_t v) { return v < 0 ? 0 : v > GW_USAGE_MAX ? GW_USAGE_MAX : v; }

static void read_usage(const json_t *um, struct gw_usage *u)
{
    if (!json_is_object(um))
        return;
    memset(u, 0, sizeof(*u));
    u->seen = 1;
    u->input_tokens = nonneg(gw_json_int(um, "promptTokenCount", 0));
    u->cached_input_tokens = nonneg(gw_json_int(um, "cachedContentTokenCount", 0));
    u->reasoning_tokens = nonneg(gw_json_int(um, "thoughtsTokenCount", 0));
    u->output_tokens = nonneg(gw_json_int(um, "candidatesTokenCount", 0)) + u->reasoning_tokens;
    if (u->cached_input_tokens > u->input_tokens)
        u->cached_input_tokens = u->input_tokens;
}

/* Collect one candidate's parts: text, thought text and function calls (ids call_<n> counted
 * from *ncalls). Returns 0 or GW_EPARSE/GW_ENOMEM. */
static int read_parts(const json_t *cand, struct gw_buf *text, struct gw_buf *thought,
                      json_t *calls, int *ncalls)
{
    json_t *parts = json_object_get(json_object_get(cand, "content"), "parts");
    size_t i;
    json_t *p;

    if (parts != NULL && !json_is_array(parts))
        return GW_EPARSE;
    json_array_foreach(parts, i, p) {
        const char *t = gw_json_str(p, "text");
        json_t *fc = json_object_get(p, "functionCall");
        if (!json_is_object(p))
            return GW_EPARSE;
        if (t != NULL) {
            if (gw_buf_adds(json_is_true(json_object_get(p, "thought")) ? thought : text, t) != 0)
                return GW_ENOMEM;
        } else if (json_is_object(fc)) {
            const char *name = gw_json_str(fc, "name");
            json_t *args = json_object_get(fc, "args");
            if (name == NULL || (args != NULL && !json_is_object(args)))
                return GW_EPARSE;
            char *a = args ? gw_json_dump(args) : NULL;
            char id[32];
            snprintf(id, sizeof(id), "call_%d", (*ncalls)++);
            json_array_append_new(calls, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type",
                                                   "function", "function", "name", name,
                                                   "arguments", a ? a : "{}"));
            gw_free(a);
        }
    }
    return 0;
}

static int parse(const char *body, size_t len, json_t **out, struct gw_usage *usage,
                 struct gw_errbuf *eb)
{
    json_t *root = gw_json_parse(body, len, eb);
    json_t *calls = json_array();
    struct gw_buf text, thought;
    int ncalls = 0, rc = GW_EPARSE;

    *out = NULL;
    memset(usage, 0, sizeof(*usage));
    gw_buf_init(&text, SIZE_MAX / 2);
    gw_buf_init(&thought, SIZE_MAX / 2);
    json_t *cands = json_object_get(root, "candidates");
    if (!json_is_object(root) || (cands != NULL && !json_is_array(cands)) || calls == NULL) {
        gw_errbuf_set(eb, "not a GenerateContentResponse");
        goto out;
    }
    json_t *cand = json_array_get(cands, 0);
    const char *fr = "content_filter"; /* no candidate: the prompt was blocked */
    if (cand != NULL) {
        if (!json_is_object(cand) || (rc = read_parts(cand, &text, &thought, calls, &ncalls)) != 0) {
            rc = rc == GW_ENOMEM ? rc : GW_EPARSE;
            gw_errbuf_set(eb, "malformed candidate");
            goto out;
        }
        fr = finish_reason(gw_json_str(cand, "finishReason"));
        if (fr == NULL)
            fr = "stop";
        if (ncalls > 0)
            fr = "tool_calls";
    }
    json_t *content = text.len > 0 || (ncalls == 0 && cand != NULL)
                          ? json_stringn(text.data ? text.data : "", text.len)
                          : json_null();
    json_t *msg = json_pack("{s:s,s:o}", "role", "assistant", "content", content);
    if (msg != NULL && ncalls > 0)
        json_object_set(msg, "tool_calls", calls);
    if (msg != NULL && thought.len > 0)
        json_object_set_new(msg, "reasoning_content", json_stringn(thought.data, thought.len));
    const char *id = gw_json_str(root, "responseId");
    const char *model = gw_json_str(root, "modelVersion");
    *out = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:s}]}", "id", id ? id : "gemini", "object",
                     "chat.completion", "created", (json_int_t)gw_now_s(), "model",
                     model ? model : "", "choices", "index", 0, "message", msg, "finish_reason",
                     fr);
    read_usage(json_object_get(root, "usageMetadata"), usage);
    rc = *out != NULL ? 0 : GW_ENOMEM;
out:
    gw_buf_cleanup(&text);
    gw_buf_cleanup(&thought);
    json_decref(calls);
    json_decref(root);
    return rc;
}

static void fill_error(const json_t *root, int status, struct gw_upstream_error *out)
{
    json_t *err = json_object_get(root, "error");
    if (status == 0 && json_is_integer(json_object_get(err, "code")))
        status = (int)json_integer_value(json_object_get(err, "code"));
    gw_upstream_error_default(status, out);
    const char *st = gw_json_str(err, "status");
    const char *msg = gw_json_str(err, "message");
    if (st != NULL)
        gw_strlcpy(out->type, st, sizeof(out->type));
    if (msg != NULL)
        gw_strlcpy(out->message, msg, sizeof(out->message));
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(err, "details"), i, d) {
        const char *reason = gw_json_str(d, "reason");
        if (reason != NULL && strcmp(reason, "API_KEY_INVALID") == 0) {
            gw_strlcpy(out->type, reason, sizeof(out->type));
            out->auth_failed = 1;
        }
    }
    out->retryable = status == 429 || status == 500 || status == 503 || status == 504;
    if (status == 401 || status == 403)
        out->auth_failed = 1;
}

static void map_error(int status, const char *body, size_t len, struct gw_upstream_error *out)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    fill_error(root, status, out);
    json_decref(root);
}

struct gstate {
    int started;
    int ncalls;
};

static int stream_init(struct gw_stream *s)
{
    s->priv = gw_calloc(1, sizeof(struct gstate));
    return s->priv ? 0 : GW_ENOMEM;
}

static void stream_cleanup(struct gw_stream *s) { GW_FREE(s->priv); }

static int emit(struct gw_stream *s, json_t *delta, const char *finish)
{
    json_t *chunk = json_pack("{s:[{s:i,s:o,s:s?}]}", "choices", "index", 0, "delta", delta,
                              "finish_reason", finish);
    if (chunk == NULL)
        return GW_ENOMEM;
    int rc = s->emit(s->arg, chunk);
    json_decref(chunk);
    return rc;
}

static int stream_event(struct gw_stream *s, const char *event, const char *data, size_t len)
{
    struct gstate *g = s->priv;
    json_t *ev = gw_json_parse(data, len, NULL);
    json_t *calls = json_array();
    struct gw_buf text, thought;
    int rc = 0;
    (void)event;

    gw_buf_init(&text, SIZE_MAX / 2);
    gw_buf_init(&thought, SIZE_MAX / 2);
    if (!json_is_object(ev) || calls == NULL) {
        rc = GW_EPARSE;
        goto out;
    }
    if (json_object_get(ev, "error") != NULL) {
        fill_error(ev, 0, &s->err);
        s->failed = 1;
        rc = GW_EUPSTREAM;
        goto out;
    }
    const char *id = gw_json_str(ev, "responseId");
    if (id != NULL && s->id[0] == '\0')
        gw_strlcpy(s->id, id, sizeof(s->id));
    read_usage(json_object_get(ev, "usageMetadata"), &s->usage);
    if (!g->started) {
        g->started = 1;
        if ((rc = emit(s, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL)) != 0)
            goto out;
    }
    json_t *cands = json_object_get(ev, "candidates");
    json_t *cand = json_array_get(cands, 0);
    if (cands != NULL && !json_is_array(cands)) {
        rc = GW_EPARSE;
        goto out;
    }
    if (cand == NULL)
        goto out;
    int first_call = g->ncalls;
    if ((rc = read_parts(cand, &text, &thought, calls, &g->ncalls)) != 0)
        goto out;
    if (thought.len > 0 &&
        (rc = emit(s, json_pack("{s:s%}", "reasoning_content", thought.data, thought.len), NULL)))
        goto out;
    if (text.len > 0 && (rc = emit(s, json_pack("{s:s%}", "content", text.data, text.len), NULL)))
        goto out;
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c) {
        json_object_set_new(c, "index", json_integer(first_call + (int)i));
        if ((rc = emit(s, json_pack("{s:[O]}", "tool_calls", c), NULL)) != 0)
            goto out;
    }
    const char *fr = finish_reason(gw_json_str(cand, "finishReason"));
    if (fr != NULL) {
        if (g->ncalls > 0)
            fr = "tool_calls";
        gw_strlcpy(s->finish_reason, fr, sizeof(s->finish_reason));
        rc = emit(s, json_object(), fr);
        s->complete = 1;
    }
out:
    gw_buf_cleanup(&text);
    gw_buf_cleanup(&thought);
    json_decref(calls);
    json_decref(ev);
    return rc;
}

const struct gw_provider_ops gw_provider_gemini = {
    .name = "gemini",
    .build = build,
    .parse = parse,
    .stream_init = stream_init,
    .stream_event = stream_event,
    .stream_cleanup = stream_cleanup,
    .map_error = map_error,
};
