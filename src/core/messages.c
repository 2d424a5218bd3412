/*
 * core/messages — the Anthropic Messages dialect; see messages.h.
 *
 * Invariants:
 * - Every member read from the client's body is type-checked here, before gw_chat_validate
 *   checks the canonical body again: a wrong type is a 400 with the member named, never a
 *   crash or a silently dropped turn.
 * - Content the canonical form cannot carry is refused (400) rather than lost, except a tool
 *   result's is_error. What only Anthropic's API takes rides along in the canonical body
 *   (top-level thinking and top_k, cache_control on text parts, earlier turns' thinking blocks
 *   as parts) for the Anthropic adapter; the other adapters leave it out.
 */
#include "core/messages.h"

#include <stdio.h>
#include <string.h>

#include "http/reply.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/util.h"

#define TEXT_MAX ((size_t)1 << 30) /* joined text, data: URLs (the body limit bounds them first) */

static int fail(struct gw_errbuf *eb, const char *fmt, const char *arg)
{
    gw_errbuf_set(eb, fmt, arg);
    return GW_EINVAL;
}

/* ---- request: Messages → canonical ---- */

/* The text of a system prompt or a tool result: a string, or text blocks joined by newlines.
 * NULL (eb set) for anything else. */
static json_t *joined_text(const json_t *v, const char *what, struct gw_errbuf *eb)
{
    if (json_is_string(v))
        return json_incref((json_t *)v);
    if (!json_is_array(v)) {
        fail(eb, "'%s' must be a string or an array of text blocks", what);
        return NULL;
    }
    struct gw_buf b;
    size_t i;
    json_t *blk;
    gw_buf_init(&b, TEXT_MAX);
    json_array_foreach(v, i, blk) {
        const char *type = gw_json_str(blk, "type");
        const char *text = gw_json_str(blk, "text");
        if (type == NULL || strcmp(type, "text") != 0 || text == NULL) {
            gw_buf_cleanup(&b);
            fail(eb, "'%s' blocks must be {\"type\":\"text\",\"text\":...}", what);
            return NULL;
        }
        if ((i > 0 && gw_buf_add(&b, "\n", 1) != 0) || gw_buf_adds(&b, text) != 0) {
            gw_buf_cleanup(&b);
            return NULL;
        }
    }
    json_t *s = json_stringn(b.data ? b.data : "", b.len);
    gw_buf_cleanup(&b);
    return s;
}

/* An image block → an image_url part (a data: URL for base64 sources). */
static json_t *image_part(const json_t *blk, struct gw_errbuf *eb)
{
    const json_t *src = json_object_get(blk, "source");
    const char *type = gw_json_str(src, "type");
    if (type != NULL && strcmp(type, "url") == 0 && gw_json_str(src, "url") != NULL)
        return json_pack("{s:s,s:{s:s}}", "type", "image_url", "image_url", "url",
                         gw_json_str(src, "url"));
    const char *mt = gw_json_str(src, "media_type");
    const char *data = gw_json_str(src, "data");
    if (type == NULL || strcmp(type, "base64") != 0 || mt == NULL || data == NULL ||
        strlen(mt) > 64) {
        fail(eb, "%s", "an image block needs a source {type:\"base64\", media_type, data} or "
                       "{type:\"url\", url}");
        return NULL;
    }
    struct gw_buf b;
    gw_buf_init(&b, TEXT_MAX);
    json_t *part = NULL;
    if (gw_buf_printf(&b, "data:%s;base64,%s", mt, data) == 0)
        part = json_pack("{s:s,s:{s:s%}}", "type", "image_url", "image_url", "url", b.data,
                         b.len);
    gw_buf_cleanup(&b);
    return part;
}

static int append(json_t *arr, json_t *v)
{
    return v == NULL || json_array_append_new(arr, v) != 0 ? GW_ENOMEM : 0;
}

/* A text block → a text part appended to parts (its cache_control kept for Anthropic). */
static int text_part(const json_t *blk, json_t *parts, const char *what, struct gw_errbuf *eb)
{
    const char *text = gw_json_str(blk, "text");
    json_t *cc = json_object_get(blk, "cache_control");
    if (text == NULL)
        return fail(eb, "%s: a text block needs a string 'text'", what);
    if (cc != NULL && !json_is_object(cc))
        return fail(eb, "%s: 'cache_control' must be an object", what);
    json_t *p = json_pack("{s:s,s:s}", "type", "text", "text", text);
    if (p != NULL && cc != NULL)
        json_object_set(p, "cache_control", cc);
    return append(parts, p);
}

/* The system prompt: a string, or text blocks — joined into one string, or kept as text parts
 * when one of them carries cache_control. */
static json_t *system_content(const json_t *sys, struct gw_errbuf *eb)
{
    size_t i;
    json_t *blk;
    int cached = 0;
    json_array_foreach(sys, i, blk) cached |= json_object_get(blk, "cache_control") != NULL;
    if (!cached)
        return joined_text(sys, "system", eb);
    json_t *parts = json_array();
    json_array_foreach(sys, i, blk) {
        const char *type = gw_json_str(blk, "type");
        int rc = type == NULL || strcmp(type, "text") != 0
                     ? fail(eb, "%s", "'system' blocks must be {\"type\":\"text\",\"text\":...}")
                     : text_part(blk, parts, "system", eb);
        if (rc != 0) {
            json_decref(parts);
            return NULL;
        }
    }
    return parts;
}

/* One Messages turn → canonical messages appended to out (tool results first, as tool
 * messages, then the rest of the user's content; an assistant's text and tool calls). */
/* Something the canonical form cannot carry: refused (GW_EINVAL, eb says what), or — when only
 * an Anthropic model can take it (native given) — left out, the first such thing said in native
 * (0). */
static int untranslatable(struct gw_errbuf *eb, struct gw_errbuf *native, const char *what,
                          const char *name)
{
    if (native == NULL && strcmp(what, "the member") == 0)
        gw_errbuf_set(eb, "unknown field '%.64s'", name);
    else if (native == NULL)
        gw_errbuf_set(eb, "%s '%.40s' are not supported here", what, name);
    else if (native->msg[0] == '\0')
        gw_errbuf_set(native, "%s '%.40s'", what, name);
    return native != NULL ? 0 : GW_EINVAL;
}

static int convert_turn(const json_t *m, size_t idx, json_t *out, struct gw_errbuf *eb,
                        struct gw_errbuf *native)
{
    char what[48];
    snprintf(what, sizeof(what), "messages[%zu]", idx);
    const char *role = gw_json_str(m, "role");
    if (role == NULL || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0))
        return fail(eb, "%s.role must be user or assistant", what);
    int assistant = role[0] == 'a';
    json_t *content = json_object_get(m, "content");
    if (json_is_string(content))
        return append(out, json_pack("{s:s,s:O}", "role", role, "content", content));
    if (!json_is_array(content))
        return fail(eb, "%s.content must be a string or an array of blocks", what);

    json_t *parts = json_array(), *calls = json_array();
    int rc = parts && calls ? 0 : GW_ENOMEM;
    size_t i;
    json_t *blk;
    json_array_foreach(content, i, blk) {
        if (rc != 0)
            break;
        const char *type = gw_json_str(blk, "type");
        if (type == NULL) {
            rc = fail(eb, "%s.content blocks need a string 'type'", what);
        } else if (strcmp(type, "text") == 0) {
            rc = text_part(blk, parts, what, eb);
        } else if (strcmp(type, "image") == 0 && !assistant) {
            json_t *p = image_part(blk, eb);
            rc = p == NULL && eb->msg[0] ? GW_EINVAL : append(parts, p);
        } else if (strcmp(type, "tool_use") == 0 && assistant) {
            const char *id = gw_json_str(blk, "id"), *name = gw_json_str(blk, "name");
            json_t *input = json_object_get(blk, "input");
            if (id == NULL || name == NULL || !json_is_object(input)) {
                rc = fail(eb, "%s: a tool_use block needs string 'id' and 'name' and an object "
                              "'input'", what);
                continue;
            }
            char *args = gw_json_dump(input);
            rc = args == NULL ? GW_ENOMEM
                              : append(calls, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type",
                                                        "function", "function", "name", name,
                                                        "arguments", args));
            gw_free(args);
        } else if (strcmp(type, "tool_result") == 0 && !assistant) {
            const char *id = gw_json_str(blk, "tool_use_id");
            json_t *rc_content = json_object_get(blk, "content");
            json_t *text = rc_content == NULL ? json_string("")
                                              : joined_text(rc_content, "tool_result.content", eb);
            if (id == NULL) {
                json_decref(text);
                rc = fail(eb, "%s: a tool_result block needs a string 'tool_use_id'", what);
            } else if (text == NULL) {
                rc = eb->msg[0] ? GW_EINVAL : GW_ENOMEM;
            } else {
                /* tool messages go first: they answer the previous assistant turn */
                rc = append(out, json_pack("{s:s,s:s,s:o}", "role", "tool", "tool_call_id", id,
                                           "content", text));
            }
        } else if ((strcmp(type, "thinking") == 0 || strcmp(type, "redacted_thinking") == 0) &&
                   assistant) {
            /* an earlier turn's reasoning: kept for Anthropic (which checks its signature);
             * the other adapters leave it out */
            rc = append(parts, json_deep_copy(blk));
        } else {
            char kind[96];
            snprintf(kind, sizeof(kind), "%s: content blocks of type", what);
            rc = untranslatable(eb, native, kind, type);
        }
    }
    if (rc == 0 && (json_array_size(parts) > 0 || json_array_size(calls) > 0)) {
        json_t *msg = json_pack("{s:s}", "role", role);
        if (msg == NULL)
            rc = GW_ENOMEM;
        else if (json_array_size(parts) > 0)
            json_object_set(msg, "content", parts);
        else
            json_object_set_new(msg, "content", json_null());
        if (msg != NULL && json_array_size(calls) > 0)
            json_object_set(msg, "tool_calls", calls);
        if (rc == 0)
            rc = append(out, msg);
    }
    json_decref(parts);
    json_decref(calls);
    return rc;
}

static int convert_tools(const json_t *in, json_t *out, struct gw_errbuf *eb,
                         struct gw_errbuf *native)
{
    json_t *tools = json_object_get(in, "tools");
    if (tools != NULL) {
        if (!json_is_array(tools))
            return fail(eb, "%s", "'tools' must be an array");
        json_t *ct = json_array();
        size_t i;
        json_t *t;
        if (ct == NULL)
            return GW_ENOMEM;
        json_object_set_new(out, "tools", ct);
        json_array_foreach(tools, i, t) {
            const char *name = gw_json_str(t, "name"), *type = gw_json_str(t, "type");
            json_t *schema = json_object_get(t, "input_schema");
            json_t *desc = json_object_get(t, "description");
            if (type != NULL && strcmp(type, "custom") != 0) { /* a server tool */
                if (untranslatable(eb, native, "tools of type", type) != 0)
                    return GW_EINVAL;
                continue;
            }
            if (name == NULL || (schema != NULL && !json_is_object(schema)) ||
                (desc != NULL && !json_is_string(desc)))
                return fail(eb, "%s", "each tool needs a string 'name', an object 'input_schema' "
                                      "and a string 'description' if any");
            json_t *fn = json_pack("{s:s,s:o}", "name", name, "parameters",
                                   schema ? json_incref(schema)
                                          : json_pack("{s:s}", "type", "object"));
            if (fn == NULL)
                return GW_ENOMEM;
            if (desc != NULL)
                json_object_set(fn, "description", desc);
            if (append(ct, json_pack("{s:s,s:o}", "type", "function", "function", fn)) != 0)
                return GW_ENOMEM;
        }
    }
    json_t *tc = json_object_get(in, "tool_choice");
    if (tc == NULL)
        return 0;
    const char *type = gw_json_str(tc, "type");
    json_t *choice = NULL;
    if (type == NULL)
        return fail(eb, "%s", "'tool_choice' must be an object with a string 'type'");
    if (strcmp(type, "auto") == 0 || strcmp(type, "none") == 0)
        choice = json_string(type);
    else if (strcmp(type, "any") == 0)
        choice = json_string("required");
    else if (strcmp(type, "tool") == 0 && gw_json_str(tc, "name") != NULL)
        choice = json_pack("{s:s,s:{s:s}}", "type", "function", "function", "name",
                           gw_json_str(tc, "name"));
    else
        return fail(eb, "%s", "'tool_choice' type must be auto, any, tool (with a name) or none");
    if (choice == NULL)
        return GW_ENOMEM;
    json_object_set_new(out, "tool_choice", choice);
    if (gw_json_true(tc, "disable_parallel_tool_use"))
        json_object_set_new(out, "parallel_tool_calls", json_false());
    return 0;
}

/* Members copied as they are (the canonical form has them under the same name), and the ones
 * only Anthropic calls use (kept out of the canonical body). */
static const char *const same_members[] = {"model", "temperature", "top_p", "stream",
                                           "provider", "auto_route", "route_method",
                                           "conversation_id", "top_k", "thinking"};
static const char *const anthropic_only[] = {"service_tier"};

int gw_messages_to_chat(const json_t *in, int count_only, json_t **out, struct gw_errbuf *eb,
                        struct gw_errbuf *native)
{
    *out = NULL;
    if (!json_is_object(in))
        return fail(eb, "%s", "the request body must be a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)in, key, v) {
        int known = strcmp(key, "messages") == 0 || strcmp(key, "system") == 0 ||
                    strcmp(key, "max_tokens") == 0 || strcmp(key, "stop_sequences") == 0 ||
                    strcmp(key, "tools") == 0 || strcmp(key, "tool_choice") == 0 ||
                    strcmp(key, "metadata") == 0;
        for (size_t i = 0; !known && i < sizeof(same_members) / sizeof(*same_members); i++)
            known = strcmp(key, same_members[i]) == 0;
        for (size_t i = 0; !known && i < sizeof(anthropic_only) / sizeof(*anthropic_only); i++)
            known = strcmp(key, anthropic_only[i]) == 0;
        if (!known && untranslatable(eb, native, "the member", key) != 0)
            return GW_EINVAL;
    }
    json_t *msgs = json_object_get(in, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return fail(eb, "%s", "'messages' must be a non-empty array");
    json_t *mt = json_object_get(in, "max_tokens");
    if (mt != NULL && (!json_is_integer(mt) || json_integer_value(mt) < 1))
        return fail(eb, "%s", "'max_tokens' must be a positive integer");
    if (mt == NULL && !count_only)
        return fail(eb, "%s", "'max_tokens' is required");
    if (count_only && json_is_true(json_object_get(in, "stream")))
        return fail(eb, "%s", "count_tokens does not stream");

    json_t *body = json_object(), *cm = json_array();
    int rc = body && cm ? 0 : GW_ENOMEM;
    if (rc == 0)
        json_object_set(body, "messages", cm);
    for (size_t i = 0; rc == 0 && i < sizeof(same_members) / sizeof(*same_members); i++)
        if ((v = json_object_get(in, same_members[i])) != NULL)
            json_object_set(body, same_members[i], v);
    if (rc == 0 && mt != NULL && !count_only)
        json_object_set(body, "max_tokens", mt);
    json_t *sys = json_object_get(in, "system");
    if (rc == 0 && sys != NULL) {
        json_t *text = system_content(sys, eb);
        rc = text == NULL ? (eb->msg[0] ? GW_EINVAL : GW_ENOMEM)
                          : append(cm, json_pack("{s:s,s:o}", "role", "system", "content", text));
    }
    size_t i;
    json_array_foreach(msgs, i, v) {
        if (rc != 0)
            break;
        if (!json_is_object(v))
            rc = fail(eb, "%s", "each message must be an object");
        else
            rc = convert_turn(v, i, cm, eb, native);
    }
    json_t *stop = json_object_get(in, "stop_sequences");
    if (rc == 0 && stop != NULL) {
        if (!json_is_array(stop))
            rc = fail(eb, "%s", "'stop_sequences' must be an array of strings");
        else
            json_object_set(body, "stop", stop);
    }
    if (rc == 0)
        rc = convert_tools(in, body, eb, native);
    json_t *meta = json_object_get(in, "metadata");
    if (rc == 0 && meta != NULL) {
        json_t *uid = json_object_get(meta, "user_id");
        if (!json_is_object(meta) || (uid != NULL && !json_is_string(uid) && !json_is_null(uid)))
            rc = fail(eb, "%s", "'metadata' must be an object with a string 'user_id'");
        else if (json_is_string(uid))
            json_object_set(body, "user", uid);
    }
    json_decref(cm);
    if (rc != 0) {
        json_decref(body);
        return rc;
    }
    *out = body;
    return 0;
}

/* ---- answers: canonical → Messages ---- */

static const char *stop_reason_of(const char *finish)
{
    if (finish == NULL || strcmp(finish, "stop") == 0)
        return "end_turn";
    if (strcmp(finish, "length") == 0)
        return "max_tokens";
    if (strcmp(finish, "tool_calls") == 0)
        return "tool_use";
    if (strcmp(finish, "content_filter") == 0)
        return "refusal";
    return "end_turn";
}

/* Anthropic's usage: input_tokens counts what was neither read from nor written to the cache. */
static json_t *usage_json(const struct gw_usage *u, double cost_usd)
{
    int64_t cached = u->cached_input_tokens, written = u->cache_write_tokens;
    int64_t in = u->input_tokens - cached - written;
    return json_pack("{s:I,s:I,s:I,s:I,s:f}", "input_tokens", (json_int_t)(in > 0 ? in : 0),
                     "output_tokens", (json_int_t)u->output_tokens, "cache_read_input_tokens",
                     (json_int_t)cached, "cache_creation_input_tokens", (json_int_t)written,
                     "cost_usd", cost_usd);
}

/* A tool call's arguments as the object Anthropic's input is ({} when they are not one). */
static json_t *tool_input(const char *args)
{
    struct gw_errbuf eb = {{0}};
    json_t *v = args != NULL ? gw_json_parse(args, strlen(args), &eb) : NULL;
    if (json_is_object(v))
        return v;
    json_decref(v);
    return json_object();
}

json_t *gw_messages_answer(const json_t *completion, const char *model, const struct gw_usage *u,
                           double cost_usd)
{
    const json_t *choice = json_array_get(json_object_get(completion, "choices"), 0);
    const json_t *msg = json_object_get(choice, "message");
    const char *id = gw_json_str(completion, "id");
    json_t *content = json_array();
    json_t *text = json_object_get(msg, "content");
    size_t i;
    json_t *tc;

    if (content == NULL)
        return NULL;
    if (json_is_string(text) && json_string_length(text) > 0)
        json_array_append_new(content, json_pack("{s:s,s:O}", "type", "text", "text", text));
    json_array_foreach(json_object_get(msg, "tool_calls"), i, tc) {
        const json_t *fn = json_object_get(tc, "function");
        const char *tid = gw_json_str(tc, "id"), *name = gw_json_str(fn, "name");
        json_array_append_new(content,
                              json_pack("{s:s,s:s,s:s,s:o}", "type", "tool_use", "id",
                                        tid ? tid : "", "name", name ? name : "", "input",
                                        tool_input(gw_json_str(fn, "arguments"))));
    }
    return json_pack("{s:s,s:s,s:s,s:s,s:o,s:s,s:n,s:o}", "id", id ? id : "", "type", "message",
                     "role", "assistant", "model", model ? model : "", "content", content,
                     "stop_reason", stop_reason_of(gw_json_str(choice, "finish_reason")),
                     "stop_sequence", "usage", usage_json(u, cost_usd));
}

/* ---- streams: canonical chunks → Messages events ---- */

static int event(struct gw_messages_stream *s, const char *name, json_t *data)
{
    char *text = data != NULL ? gw_json_dump(data) : NULL;
    json_decref(data);
    if (text == NULL)
        return GW_ENOMEM;
    int rc = s->emit(s->arg, name, text, strlen(text));
    gw_free(text);
    return rc;
}

void gw_messages_stream_init(struct gw_messages_stream *s, const char *id, const char *model,
                             gw_messages_emit_fn emit, void *arg)
{
    memset(s, 0, sizeof(*s));
    s->emit = emit;
    s->arg = arg;
    gw_strlcpy(s->id, id ? id : "", sizeof(s->id));
    gw_strlcpy(s->model, model ? model : "", sizeof(s->model));
    s->block = -1;
}

static int stream_start(struct gw_messages_stream *s)
{
    if (s->started)
        return 0;
    s->started = 1;
    int rc = event(s, "message_start",
                   json_pack("{s:s,s:{s:s,s:s,s:s,s:s,s:[],s:n,s:n,s:{s:i,s:i}}}", "type",
                             "message_start", "message", "id", s->id, "type", "message", "role",
                             "assistant", "model", s->model, "content", "stop_reason",
                             "stop_sequence", "usage", "input_tokens", 0, "output_tokens", 0));
    return rc != 0 ? rc : event(s, "ping", json_pack("{s:s}", "type", "ping"));
}

static int block_close(struct gw_messages_stream *s)
{
    if (s->block < 0)
        return 0;
    int rc = event(s, "content_block_stop",
                   json_pack("{s:s,s:i}", "type", "content_block_stop", "index", s->block));
    s->block = -1;
    return rc;
}

/* Open a new block (closing the open one); cb is stolen. */
static int block_open(struct gw_messages_stream *s, json_t *cb, int is_tool, int tool_index)
{
    int rc = block_close(s);
    if (rc != 0) {
        json_decref(cb);
        return rc;
    }
    s->block = s->nblocks++;
    s->block_is_tool = is_tool;
    s->tool_index = tool_index;
    return event(s, "content_block_start",
                 json_pack("{s:s,s:i,s:o}", "type", "content_block_start", "index", s->block,
                           "content_block", cb));
}

static int stream_text(struct gw_messages_stream *s, const char *text)
{
    int rc = 0;
    if (s->block < 0 || s->block_is_tool)
        rc = block_open(s, json_pack("{s:s,s:s}", "type", "text", "text", ""), 0, 0);
    return rc != 0 ? rc
                   : event(s, "content_block_delta",
                           json_pack("{s:s,s:i,s:{s:s,s:s}}", "type", "content_block_delta",
                                     "index", s->block, "delta", "type", "text_delta", "text",
                                     text));
}

static int stream_tool_call(struct gw_messages_stream *s, const json_t *tc)
{
    int idx = (int)gw_json_int(tc, "index", 0);
    const json_t *fn = json_object_get(tc, "function");
    const char *args = gw_json_str(fn, "arguments");
    int rc = 0;
    if (s->block < 0 || !s->block_is_tool || s->tool_index != idx) {
        const char *id = gw_json_str(tc, "id"), *name = gw_json_str(fn, "name");
        rc = block_open(s, json_pack("{s:s,s:s,s:s,s:{}}", "type", "tool_use", "id", id ? id : "",
                                     "name", name ? name : "", "input"),
                        1, idx);
    }
    if (rc == 0 && args != NULL && args[0] != '\0')
        rc = event(s, "content_block_delta",
                   json_pack("{s:s,s:i,s:{s:s,s:s}}", "type", "content_block_delta", "index",
                             s->block, "delta", "type", "input_json_delta", "partial_json",
                             args));
    return rc;
}

int gw_messages_stream_chunk(struct gw_messages_stream *s, const json_t *chunk)
{
    int rc = stream_start(s);
    const json_t *choice = json_array_get(json_object_get(chunk, "choices"), 0);
    const json_t *delta = json_object_get(choice, "delta");
    const char *text = gw_json_str(delta, "content");
    size_t i;
    json_t *tc;

    if (rc == 0 && text != NULL && text[0] != '\0')
        rc = stream_text(s, text);
    json_array_foreach(json_object_get(delta, "tool_calls"), i, tc) {
        if (rc == 0)
            rc = stream_tool_call(s, tc);
    }
    const char *finish = gw_json_str(choice, "finish_reason");
    if (finish != NULL)
        gw_strlcpy(s->stop_reason, stop_reason_of(finish), sizeof(s->stop_reason));
    return rc;
}

void gw_messages_stream_usage(struct gw_messages_stream *s, const struct gw_usage *u,
                              double cost_usd)
{
    s->usage = *u;
    s->cost_usd = cost_usd;
}

int gw_messages_stream_end(struct gw_messages_stream *s)
{
    int rc = stream_start(s);
    if (rc == 0)
        rc = block_close(s);
    if (rc == 0)
        rc = event(s, "message_delta",
                   json_pack("{s:s,s:{s:s,s:n},s:o}", "type", "message_delta", "delta",
                             "stop_reason", s->stop_reason[0] ? s->stop_reason : "end_turn",
                             "stop_sequence", "usage", usage_json(&s->usage, s->cost_usd)));
    return rc != 0 ? rc : event(s, "message_stop", json_pack("{s:s}", "type", "message_stop"));
}

int gw_messages_stream_error(struct gw_messages_stream *s, int status, const char *code,
                             const char *message)
{
    json_t *e = gw_error_body_anthropic(status, code, message, NULL);
    if (e != NULL)
        json_object_del(e, "request_id");
    return event(s, "error", e);
}
