/*
 * core/request — validation of OpenAI chat bodies and conversion of the simple form.
 *
 * Invariant: after gw_chat_validate succeeds, every field an adapter reads has the type the
 * adapters assume (see providers/provider.h), so adapters never meet a wrong type from a client.
 */
#include "core/request.h"

#include <string.h>

#include "util/json.h"
#include "util/util.h"
#include <stdio.h>
#include <stdint.h>

static int fail(struct gw_errbuf *eb, const char *msg)
{
    gw_errbuf_set(eb, "%s", msg);
    return GW_EINVAL;
}

int gw_request_id_ok(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
        if (n >= 64)
            return 0;
    }
    return n > 0;
}

static int check_number(const json_t *body, const char *key, double lo, double hi,
                        struct gw_errbuf *eb)
{
    json_t *v = json_object_get(body, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_number(v)) {
        gw_errbuf_set(eb, "'%s' must be a number", key);
        return GW_EINVAL;
    }
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        gw_errbuf_set(eb, "'%s' must be between %g and %g", key, lo, hi);
        return GW_EINVAL;
    }
    return 0;
}

static int check_string_field(const json_t *obj, const char *key, int required, size_t max,
                              const char *what, struct gw_errbuf *eb)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (!required)
            return 0;
        gw_errbuf_set(eb, "%s: '%s' is required", what, key);
        return GW_EINVAL;
    }
    if (!json_is_string(v) || json_string_length(v) > max) {
        gw_errbuf_set(eb, "%s: '%s' must be a string of at most %zu bytes", what, key, max);
        return GW_EINVAL;
    }
    return 0;
}

/* "messages[i]" and then suffix into what (at least 40 bytes and suffix's length): the name of
 * what is checked, for its error messages; built for every message, so without printf. */
static void message_label(char *what, size_t i, const char *suffix)
{
    memcpy(what, "messages[", 9);
    size_t n = 9 + gw_int_text(what + 9, (int64_t)i);
    what[n++] = ']';
    strcpy(what + n, suffix);
}

static int check_content_part(const json_t *part, size_t mi, struct gw_errbuf *eb)
{
    char what[64];
    message_label(what, mi, ".content part");
    if (!json_is_object(part))
        return fail(eb, "message content parts must be objects");
    const char *type = gw_json_str(part, "type");
    if (type == NULL)
        return fail(eb, "message content parts need a string 'type'");
    if (strcmp(type, "text") == 0)
        return check_string_field(part, "text", 1, SIZE_MAX, what, eb);
    if (strcmp(type, "image_url") == 0) {
        json_t *iu = json_object_get(part, "image_url");
        if (!json_is_object(iu))
            return fail(eb, "an image_url part needs an 'image_url' object");
        return check_string_field(iu, "url", 1, SIZE_MAX, what, eb);
    }
    /* other part types (input_audio, file, ...) are left to the adapters, which refuse what
     * their provider cannot take */
    return 0;
}

static int check_tool_calls(const json_t *tcs, struct gw_errbuf *eb)
{
    size_t i;
    json_t *tc;
    if (!json_is_array(tcs))
        return fail(eb, "'tool_calls' must be an array");
    json_array_foreach(tcs, i, tc) {
        json_t *fn = json_object_get(tc, "function");
        if (!json_is_object(tc) || !json_is_string(json_object_get(tc, "id")) ||
            !json_is_object(fn) || !json_is_string(json_object_get(fn, "name")) ||
            !json_is_string(json_object_get(fn, "arguments")))
            return fail(eb, "each tool call needs a string 'id' and a 'function' with string "
                            "'name' and 'arguments'");
    }
    return 0;
}

static int check_message(const json_t *m, size_t i, struct gw_errbuf *eb)
{
    static const char *roles[] = {"system", "developer", "user", "assistant", "tool"};
    char what[48];

    message_label(what, i, "");
    if (!json_is_object(m)) {
        gw_errbuf_set(eb, "%s must be an object", what);
        return GW_EINVAL;
    }
    const char *role = gw_json_str(m, "role");
    int known = 0;
    for (size_t r = 0; role != NULL && r < sizeof(roles) / sizeof(roles[0]); r++)
        known |= strcmp(role, roles[r]) == 0;
    if (!known) {
        gw_errbuf_set(eb, "%s.role must be one of system, developer, user, assistant, tool", what);
        return GW_EINVAL;
    }
    json_t *content = json_object_get(m, "content");
    json_t *tcs = json_object_get(m, "tool_calls");
    int is_assistant = strcmp(role, "assistant") == 0;
    if (tcs != NULL && !json_is_null(tcs)) {
        if (!is_assistant) {
            gw_errbuf_set(eb, "%s: only assistant messages carry tool_calls", what);
            return GW_EINVAL;
        }
        int rc = check_tool_calls(tcs, eb);
        if (rc != 0)
            return rc;
    }
    if (content == NULL || json_is_null(content)) {
        if (!(is_assistant && json_is_array(tcs))) {
            gw_errbuf_set(eb, "%s.content is required", what);
            return GW_EINVAL;
        }
    } else if (json_is_array(content)) {
        size_t k;
        json_t *part;
        if (json_array_size(content) == 0) {
            gw_errbuf_set(eb, "%s.content must not be an empty array", what);
            return GW_EINVAL;
        }
        json_array_foreach(content, k, part) {
            int rc = check_content_part(part, i, eb);
            if (rc != 0)
                return rc;
        }
    } else if (!json_is_string(content)) {
        gw_errbuf_set(eb, "%s.content must be a string or an array of parts", what);
        return GW_EINVAL;
    }
    if (strcmp(role, "tool") == 0)
        return check_string_field(m, "tool_call_id", 1, 256, what, eb);
    return check_string_field(m, "name", 0, 256, what, eb);
}

static int check_tools(const json_t *body, struct gw_errbuf *eb)
{
    json_t *tools = json_object_get(body, "tools");
    size_t i;
    json_t *t;

    if (tools != NULL && !json_is_null(tools) && (!json_is_array(tools) ||
                                                   json_array_size(tools) > 512))
        return fail(eb, "'tools' must be an array of at most 512 tools");
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        const char *type = gw_json_str(t, "type");
        if (!json_is_object(t) || type == NULL || strcmp(type, "function") != 0 ||
            !json_is_object(fn) || !json_is_string(json_object_get(fn, "name")))
            return fail(eb, "each tool must be {\"type\":\"function\",\"function\":{\"name\":...}}");
        json_t *params = json_object_get(fn, "parameters");
        if (params != NULL && !json_is_object(params))
            return fail(eb, "a tool's 'parameters' must be a JSON Schema object");
        json_t *desc = json_object_get(fn, "description");
        if (desc != NULL && !json_is_string(desc))
            return fail(eb, "a tool's 'description' must be a string");
    }
    json_t *tc = json_object_get(body, "tool_choice");
    if (tc == NULL || json_is_null(tc))
        return 0;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (strcmp(s, "auto") != 0 && strcmp(s, "none") != 0 && strcmp(s, "required") != 0)
            return fail(eb, "'tool_choice' must be auto, none, required or a function object");
        return 0;
    }
    json_t *fn = json_object_get(tc, "function");
    if (!json_is_object(tc) || !json_is_object(fn) || !json_is_string(json_object_get(fn, "name")))
        return fail(eb, "'tool_choice' must be auto, none, required or a function object");
    return 0;
}

static int check_stop(const json_t *body, struct gw_errbuf *eb)
{
    json_t *stop = json_object_get(body, "stop");
    size_t i;
    json_t *s;

    if (stop == NULL || json_is_null(stop) || json_is_string(stop))
        return 0;
    if (!json_is_array(stop) || json_array_size(stop) > 16)
        return fail(eb, "'stop' must be a string or an array of at most 16 strings");
    json_array_foreach(stop, i, s) {
        if (!json_is_string(s))
            return fail(eb, "'stop' must be a string or an array of at most 16 strings");
    }
    return 0;
}

static int take_string(json_t *body, const char *key, char *dst, size_t dstsz,
                       struct gw_errbuf *eb)
{
    json_t *v = json_object_get(body, key);
    dst[0] = '\0';
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= dstsz) {
        gw_errbuf_set(eb, "'%s' must be a non-empty string of at most %zu bytes", key, dstsz - 1);
        return GW_EINVAL;
    }
    gw_strlcpy(dst, json_string_value(v), dstsz);
    return 0;
}

static int take_max_tokens(const json_t *body, int64_t *out, struct gw_errbuf *eb)
{
    static const char *keys[] = {"max_completion_tokens", "max_tokens"};
    *out = 0;
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(body, keys[i]);
        if (v == NULL || json_is_null(v))
            continue;
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > 100000000) {
            gw_errbuf_set(eb, "'%s' must be a positive integer", keys[i]);
            return GW_EINVAL;
        }
        if (*out == 0)
            *out = json_integer_value(v);
    }
    return 0;
}

int gw_chat_validate(json_t *body, struct gw_chat_opts *o, struct gw_errbuf *eb)
{
    int rc;

    memset(o, 0, sizeof(*o));
    if (!json_is_object(body))
        return fail(eb, "the request body must be a JSON object");
    json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return fail(eb, "'messages' must be a non-empty array");
    if (json_array_size(msgs) > GW_MAX_MESSAGES)
        return fail(eb, "too many messages");
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        if ((rc = check_message(m, i, eb)) != 0)
            return rc;
    }
    if ((rc = take_string(body, "model", o->model, sizeof(o->model), eb)) != 0 ||
        (rc = take_string(body, "provider", o->provider, sizeof(o->provider), eb)) != 0 ||
        (rc = take_string(body, "conversation_id", o->conversation_id,
                          sizeof(o->conversation_id), eb)) != 0 ||
        (rc = take_max_tokens(body, &o->max_tokens, eb)) != 0 ||
        (rc = check_number(body, "temperature", 0, 2, eb)) != 0 ||
        (rc = check_number(body, "top_p", 0, 1, eb)) != 0 ||
        (rc = check_number(body, "presence_penalty", -2, 2, eb)) != 0 ||
        (rc = check_number(body, "frequency_penalty", -2, 2, eb)) != 0 ||
        (rc = check_stop(body, eb)) != 0 || (rc = check_tools(body, eb)) != 0)
        return rc;
    json_t *n = json_object_get(body, "n");
    o->n = 1;
    if (n != NULL && !json_is_null(n)) {
        if (!json_is_integer(n) || json_integer_value(n) < 1 ||
            json_integer_value(n) > GW_MAX_CHOICES) {
            gw_errbuf_set(eb, "'n' must be an integer from 1 to %d", GW_MAX_CHOICES);
            return GW_EINVAL;
        }
        o->n = (int)json_integer_value(n);
    }
    static const char *bools[] = {"stream", "auto_route", "parallel_tool_calls"};
    for (size_t b = 0; b < 3; b++) {
        json_t *v = json_object_get(body, bools[b]);
        if (v != NULL && !json_is_null(v) && !json_is_boolean(v)) {
            gw_errbuf_set(eb, "'%s' must be a boolean", bools[b]);
            return GW_EINVAL;
        }
    }
    json_t *so = json_object_get(body, "stream_options");
    if (so != NULL && !json_is_null(so)) {
        json_t *iu = json_object_get(so, "include_usage");
        if (!json_is_object(so) || (iu != NULL && !json_is_boolean(iu)))
            return fail(eb, "'stream_options' must be an object with a boolean include_usage");
        o->include_usage = json_is_true(iu);
    }
    json_t *rf = json_object_get(body, "response_format");
    if (rf != NULL && !json_is_null(rf) && !json_is_string(json_object_get(rf, "type")))
        return fail(eb, "'response_format' must be an object with a string 'type'");
    json_t *user = json_object_get(body, "user");
    if (user != NULL && !json_is_string(user))
        return fail(eb, "'user' must be a string");
    o->stream = gw_json_true(body, "stream");
    o->auto_route = gw_json_true(body, "auto_route");
    static const char *ours[] = {"provider", "auto_route", "route_method", "conversation_id",
                                 "stream", "stream_options"};
    for (size_t k = 0; k < sizeof(ours) / sizeof(ours[0]); k++)
        json_object_del(body, ours[k]);
    return 0;
}

int gw_simple_to_chat(const json_t *simple, json_t **out, struct gw_errbuf *eb)
{
    static const char *allowed[] = {"messages", "system", "model", "auto_route", "conversation_id",
                                    "max_tokens", "temperature", "provider"};
    const char *key;
    json_t *v;

    *out = NULL;
    if (!json_is_object(simple))
        return fail(eb, "the request body must be a JSON object");
    json_object_foreach((json_t *)simple, key, v) {
        int ok = 0;
        for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
            ok |= strcmp(key, allowed[i]) == 0;
        if (!ok) {
            gw_errbuf_set(eb, "unknown field '%.64s'", key);
            return GW_EINVAL;
        }
    }
    json_t *msgs = json_object_get(simple, "messages");
    json_t *sys = json_object_get(simple, "system");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return fail(eb, "'messages' must be a non-empty array");
    if (sys != NULL && !json_is_null(sys) && !json_is_string(sys))
        return fail(eb, "'system' must be a string");
    json_t *body = json_deep_copy(simple);
    json_t *canon_msgs = json_array();
    if (body == NULL || canon_msgs == NULL)
        goto oom;
    if (json_is_string(sys) &&
        json_array_append_new(canon_msgs, json_pack("{s:s,s:O}", "role", "system", "content",
                                                     sys)) != 0)
        goto oom;
    if (json_array_extend(canon_msgs, json_object_get(body, "messages")) != 0 ||
        json_object_set_new(body, "messages", canon_msgs) != 0) {
        canon_msgs = NULL;
        goto oom;
    }
    json_object_del(body, "system");
    *out = body;
    return 0;
oom:
    json_decref(canon_msgs);
    json_decref(body);
    return GW_ENOMEM;
}
