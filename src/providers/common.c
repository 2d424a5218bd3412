/* providers/common — request-building helpers shared by every adapter; see provider.h. */
#include <string.h>

#include "providers/provider.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/mem.h"

int gw_upstream_req_header(struct gw_upstream_req *r, const char *name, const char *value)
{
    struct gw_buf b;

    if (r->nheaders >= GW_UPSTREAM_MAX_HEADERS)
        return GW_ETOOBIG;
    gw_buf_init(&b, 16384);
    int rc;
    if ((rc = gw_buf_adds(&b, name)) || (rc = gw_buf_add(&b, ": ", 2)) ||
        (rc = gw_buf_adds(&b, value))) {
        gw_buf_cleanup(&b);
        return rc;
    }
    r->headers[r->nheaders++] = gw_buf_take(&b);
    return 0;
}

int gw_upstream_req_url(struct gw_upstream_req *r, const char *base, const char *path)
{
    struct gw_buf b;
    size_t blen = strlen(base);

    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    gw_buf_init(&b, 8192);
    int rc = gw_buf_add(&b, base, blen);
    if (rc == 0)
        rc = gw_buf_adds(&b, path);
    if (rc != 0) {
        gw_buf_cleanup(&b);
        return rc;
    }
    GW_FREE(r->url);
    r->url = gw_buf_take(&b);
    return 0;
}

int gw_upstream_req_body(struct gw_upstream_req *r, const json_t *body)
{
    return gw_upstream_req_body_with(r, body, "");
}

int gw_upstream_req_body_with(struct gw_upstream_req *r, const json_t *body, const char *members)
{
    char *s = gw_json_dump(body);
    size_t len = s != NULL ? strlen(s) : 0, add = strlen(members);
    if (s == NULL || len < 2 || s[0] != '{') {
        gw_free(s);
        return s == NULL ? GW_ENOMEM : GW_EINVAL;
    }
    if (add > 0) { /* "{" members "," the rest (no comma before an empty object's "}") */
        char *t = gw_malloc(len + add + 2);
        if (t == NULL) {
            gw_free(s);
            return GW_ENOMEM;
        }
        int empty = len == 2;
        t[0] = '{';
        memcpy(t + 1, members, add);
        if (!empty)
            t[1 + add] = ',';
        memcpy(t + 1 + add + !empty, s + 1, len); /* with the NUL */
        gw_free(s);
        s = t;
        len += add + !empty;
    }
    GW_FREE(r->body);
    r->body = s;
    r->body_len = len;
    return 0;
}

void gw_upstream_req_cleanup(struct gw_upstream_req *r)
{
    for (int i = 0; i < r->nheaders; i++)
        gw_free_secret(r->headers[i]);
    GW_FREE(r->url);
    GW_FREE(r->body);
    memset(r, 0, sizeof(*r));
}

void gw_upstream_error_default(int status, struct gw_upstream_error *out)
{
    memset(out, 0, sizeof(*out));
    out->status = status;
    out->retryable = status == 408 || status == 409 || status == 429 || status >= 500;

}

int gw_turn_append(json_t *turns, const char *role, const char *key, json_t *items)
{
    json_t *last = json_array_get(turns, json_array_size(turns) - 1);
    const char *last_role = gw_json_str(last, "role");

    if (json_array_size(items) == 0) {
        json_decref(items);
        return 0;
    }
    if (last_role != NULL && strcmp(last_role, role) == 0) {
        int rc = json_array_extend(json_object_get(last, key), items);
        json_decref(items);
        return rc ? GW_ENOMEM : 0;
    }
    return json_array_append_new(turns, json_pack("{s:s,s:o}", "role", role, key, items))
               ? GW_ENOMEM
               : 0;
}

int gw_data_url_split(const char *url, json_t **mime, const char **data)
{
    const char *semi = strncmp(url, "data:", 5) == 0 ? strchr(url, ';') : NULL;

    *mime = NULL;
    if (semi == NULL || semi == url + 5 || strncmp(semi, ";base64,", 8) != 0)
        return GW_EINVAL;
    *mime = json_stringn(url + 5, (size_t)(semi - url - 5));
    *data = semi + 8;
    return *mime != NULL ? 0 : GW_ENOMEM;
}

json_t *gw_tool_call_args(const json_t *tool_call)
{
    const char *args = gw_json_str(json_object_get(tool_call, "function"), "arguments");
    json_t *v = args && args[0] ? json_loads(args, JSON_REJECT_DUPLICATES, NULL) : json_object();
    if (!json_is_object(v)) {
        json_decref(v);
        return NULL;
    }
    return v;
}

int gw_refuse_fields(const json_t *req, const char *const *fields, const char *what,
                     struct gw_errbuf *eb)
{
    for (; *fields != NULL; fields++) {
        json_t *v = json_object_get(req, *fields);
        if (v != NULL && !json_is_null(v) && !json_is_false(v)) {
            gw_errbuf_set(eb, "'%s' is not supported by %s", *fields, what);
            return GW_EINVAL;
        }
    }
    return 0;
}

static const char *const anthropic_members[] = {"thinking", "top_k"};

/* Calls f(part) for each content part object of each message; stops at the first non-zero. */
static int each_part(const json_t *req, int (*f)(json_t *part))
{
    size_t i, k;
    json_t *m, *part;
    json_array_foreach(json_object_get(req, "messages"), i, m) {
        json_t *content = json_object_get(m, "content");
        if (!json_is_array(content))
            continue;
        json_array_foreach(content, k, part) {
            int r = json_is_object(part) ? f(part) : 0;
            if (r != 0)
                return r;
        }
    }
    return 0;
}

int gw_part_is_anthropic_thinking(const json_t *part)
{
    const char *type = gw_json_str(part, "type");
    return type != NULL &&
           (strcmp(type, "thinking") == 0 || strcmp(type, "redacted_thinking") == 0);
}

static int part_is_anthropic_only(json_t *part)
{
    return json_object_get(part, "cache_control") != NULL || gw_part_is_anthropic_thinking(part);
}

static int part_drop_cache_control(json_t *part)
{
    json_object_del(part, "cache_control");
    return 0;
}

/* Remove the thinking parts of each message's content (a content left empty becomes null, as
 * an assistant turn of tool calls only has it, or "" otherwise). */
static void drop_thinking_parts(json_t *body)
{
    size_t i, k;
    json_t *m;
    json_array_foreach(json_object_get(body, "messages"), i, m) {
        json_t *content = json_object_get(m, "content");
        if (!json_is_array(content))
            continue;
        for (k = json_array_size(content); k-- > 0;)
            if (gw_part_is_anthropic_thinking(json_array_get(content, k)))
                json_array_remove(content, k);
        if (json_array_size(content) == 0)
            json_object_set_new(m, "content", json_object_get(m, "tool_calls") != NULL
                                                  ? json_null()
                                                  : json_string(""));
    }
}

int gw_has_anthropic_only(const json_t *req)
{
    for (size_t i = 0; i < sizeof(anthropic_members) / sizeof(*anthropic_members); i++)
        if (json_object_get(req, anthropic_members[i]) != NULL)
            return 1;
    return each_part(req, part_is_anthropic_only);
}

void gw_drop_anthropic_only(json_t *body)
{
    for (size_t i = 0; i < sizeof(anthropic_members) / sizeof(*anthropic_members); i++)
        json_object_del(body, anthropic_members[i]);
    (void)each_part(body, part_drop_cache_control);
    drop_thinking_parts(body);
}

int64_t gw_chunk_text_chars(const json_t *chunk)
{
    size_t i;
    json_t *ch;
    int64_t n = 0;
    json_array_foreach(json_object_get(chunk, "choices"), i, ch) {
        json_t *d = json_object_get(ch, "delta");
        const char *s = gw_json_str(d, "content");
        n += s != NULL ? (int64_t)strlen(s) : 0;
        s = gw_json_str(d, "reasoning_content");
        n += s != NULL ? (int64_t)strlen(s) : 0;
    }
    return n;
}
