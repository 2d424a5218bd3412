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
 *
 * The fast path (scan, and stream events when the pipeline takes raw chunks) checks the same
 * things in one validating pass of yajl over the provider's bytes and relays them with only the
 * gateway's members replaced: no tree is built for the answers of these three providers.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "providers/provider.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/util.h"

enum flavor { OPENAI, XAI, PERPLEXITY };

static int flavor_of(const struct gw_stream *s);

#define STREAM_MEMBERS "\"stream\":true,\"stream_options\":{\"include_usage\":true}"

static int build_common(enum flavor fl, const struct gw_provider_cfg *cfg, const json_t *req,
                        const char *wire_model, int stream, struct gw_upstream_req *out,
                        struct gw_errbuf *eb)
{
    /* most requests go out as the canonical request itself (its model already is the wire
     * id, and stream and stream_options are not in it): serialised as it is, no copy; the
     * ones an API wants changed (reasoning models) are changed on a copy */
    static const char *const no_logprobs[] = {"logprobs", "top_logprobs", NULL};
    static const char *const no_effort[] = {"reasoning_effort", NULL};
    const char *model = json_string_value(json_object_get(req, "model"));
    int anthropic_only = gw_has_anthropic_only(req);
    int as_is = !cfg->reasoning && !anthropic_only && model != NULL &&
                strcmp(model, wire_model) == 0;
    const char *rft = gw_json_str(json_object_get(req, "response_format"), "type");
    json_t *n = json_object_get(req, "n");
    char auth[600];
    int rc;

    if (fl == OPENAI && !cfg->reasoning &&
        (rc = gw_refuse_fields(req, no_effort, "this model (not a reasoning model)", eb)) != 0)
        return rc;
    if (fl == PERPLEXITY) {
        if ((rc = gw_refuse_fields(req, no_logprobs, "perplexity models", eb)) != 0)
            return rc;
        const char *why = json_is_integer(n) && json_integer_value(n) != 1
                              ? "perplexity models return one choice (n must be 1)"
                          : rft != NULL && strcmp(rft, "json_object") == 0
                              ? "perplexity models take response_format json_schema, not "
                                "json_object"
                              : NULL;
        if (why != NULL) {
            gw_errbuf_set(eb, "%s", why);
            return GW_EINVAL;
        }
    }
    json_t *body = as_is ? (json_t *)req : json_deep_copy(req);
    rc = GW_ENOMEM;
    if (body == NULL)
        return GW_ENOMEM;
    if (!as_is)
        json_object_set_new(body, "model", json_string(wire_model));
    if (anthropic_only)
        gw_drop_anthropic_only(body);
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
    size_t kl = cfg->api_key ? strnlen(cfg->api_key, sizeof(auth) - 8) : 0;
    memcpy(auth, "Bearer ", 7);
    memcpy(auth + 7, cfg->api_key ? cfg->api_key : "", kl);
    auth[7 + kl] = '\0';
    if ((rc = gw_upstream_req_url(out, cfg->base_url, fl == PERPLEXITY ? "/chat/completions"
                                                                       : "/v1/chat/completions")) ||
        (rc = gw_upstream_req_header(out, "Authorization", auth)) ||
        (rc = gw_upstream_req_header(out, "Content-Type", "application/json")) ||
        (rc = gw_upstream_req_body_with(out, body, stream ? STREAM_MEMBERS : "")))
        goto out;
    rc = 0;
out:
    memset(auth, 0, sizeof(auth));
    if (!as_is)
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

static void usage_clamp(struct gw_usage *u)
{
    if (u->cached_input_tokens > u->input_tokens)
        u->cached_input_tokens = u->input_tokens;
    if (u->reasoning_tokens > u->output_tokens)
        u->reasoning_tokens = u->output_tokens;
}

/* A count the provider reports, into [0, GW_USAGE_MAX]. */
static int64_t nonneg(json_int_t v) { return v < 0 ? 0 : v > GW_USAGE_MAX ? GW_USAGE_MAX : v; }

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
    usage_clamp(u);
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

/* ---- the fast path: one validating pass over the provider's bytes, no tree ---- */

/* The root members the scan tracks; each may appear once. */
enum top { T_OTHER, T_ID, T_OBJECT, T_CREATED, T_MODEL, T_USAGE, T_CHOICES, T_ERROR, T_PROVIDER,
           T_ROUTE };
static const char *const top_names[] = {"", "id", "object", "created", "model", "usage",
                                        "choices", "error", "provider", "route_method"};
/* Keys inside usage (depth 2) and its details objects (depth 3). */
enum ukey { U_OTHER, U_PROMPT, U_COMPLETION, U_PROMPT_DETAILS, U_COMPLETION_DETAILS, U_SEARCHES,
            U_CONTEXT, U_CACHED, U_REASONING };
enum kind { K_NULL, K_BOOL, K_NUM, K_STR, K_MAP, K_ARRAY };

#define SCAN_MAX_DEPTH 256

struct scan {
    yajl_handle h;
    const char *body;    /* what yajl reads */
    enum flavor fl;
    int chunk;           /* a stream chunk (choices[].delta), else an answer (choices[].message) */
    int depth;           /* 0 outside the root, 1 inside it, 2 inside a root member, ... */
    enum top top;        /* the root member being read */
    unsigned seen;       /* tracked root members met, a bit each */
    size_t prev_end;     /* offset where the previous root member (or the "{") ended */
    size_t member_start;
    enum ukey ukey, dkey; /* usage: key at depth 2, key at depth 3 */
    int in_body;         /* choices: the key at depth 3 is message / delta */
    int text_key;        /* choices: the key at depth 4 is content (1) / reasoning_content (2)
                          * / role (4) / another a conversation drops (5) */
    int plain;           /* answers: the message so far is a plain assistant text (gw_scan) */
    int roles, contents; /* answers: role and content members of the message met */
    int body_seen;       /* the current choice has its message / delta object */
    int index_key;       /* choices: the key at depth 3 is index */
    int not_first;       /* the current choice's index is not 0 */
    size_t key_end;      /* offset just past the last key */
    size_t body_open;    /* the current choice's message object starts here */
    size_t text_open, text_close; /* the current choice's delta content string */
    int id_string;
    int has_error;
    struct gw_usage *usage;
    struct gw_scan *out;
    char finish[24];
};

static size_t scan_at(const struct scan *sc) { return yajl_get_bytes_consumed(sc->h); }

static int usage_int(const char *num, size_t len, int64_t *dst)
{
    char tmp[32];
    if (memchr(num, '.', len) || memchr(num, 'e', len) || memchr(num, 'E', len))
        return 1; /* not an integer: left at 0, as parse() does */
    if (len >= sizeof(tmp))
        return 0; /* an integer past 64 bits: refused, as parse() does */
    memcpy(tmp, num, len);
    tmp[len] = '\0';
    errno = 0;
    long long v = strtoll(tmp, NULL, 10);
    if (errno == ERANGE)
        return 0;
    *dst = nonneg(v);
    return 1;
}

/* A value begins at the current depth: check its type where the format fixes one. */
static int value_begin(struct scan *sc, enum kind k, const char *s, size_t len)
{
    switch (sc->depth) {
    case 0:
        if (k != K_MAP)
            return 0;
        sc->out->sp.open = sc->prev_end = scan_at(sc);
        return 1;
    case 1:
        if (sc->top == T_CHOICES && k != K_ARRAY)
            return 0;
        if (sc->top == T_ID)
            sc->id_string = k == K_STR;
        if (sc->top == T_USAGE && k == K_MAP) {
            memset(sc->usage, 0, sizeof(*sc->usage));
            sc->usage->seen = 1;
            if (sc->fl == PERPLEXITY)
                sc->usage->search_requests = 1; /* unless it says how many */
        }
        return 1;
    case 2:
        if (sc->top == T_CHOICES) {
            if (k != K_MAP)
                return 0;
            sc->out->nchoices++;
            sc->body_seen = sc->in_body = sc->not_first = 0;
            sc->text_open = sc->text_close = 0;
        } else if (sc->top == T_USAGE) {
            struct gw_usage *u = sc->usage;
            if (k == K_NUM && sc->ukey == U_PROMPT)
                return usage_int(s, len, &u->input_tokens);
            if (k == K_NUM && sc->ukey == U_COMPLETION)
                return usage_int(s, len, &u->output_tokens);
            if (k == K_NUM && sc->ukey == U_SEARCHES && sc->fl == PERPLEXITY) {
                int64_t n = 1; /* a count that is not an integer: one search, as parse() has it */
                int ok = usage_int(s, len, &n);
                u->search_requests = n;
                return ok;
            }
            if (k == K_STR && sc->ukey == U_CONTEXT && sc->fl == PERPLEXITY) {
                size_t n = strnlen(s, len < sizeof(u->search_context_size)
                                          ? len : sizeof(u->search_context_size) - 1);
                memcpy(u->search_context_size, s, n); /* cut short as parse() does */
                u->search_context_size[n] = '\0';
            }
        }
        return 1;
    case 3:
        if (sc->top == T_CHOICES && sc->in_body) {
            if (k != K_MAP)
                return 0;
            sc->body_seen = 1;
            sc->body_open = scan_at(sc) - 1; /* just past the "{" */
            sc->plain = 1;
            sc->roles = sc->contents = 0;
        } else if (sc->top == T_CHOICES && sc->index_key) {
            sc->not_first = k != K_NUM || len != 1 || s[0] != '0';
        } else if (sc->top == T_CHOICES && sc->text_key == 3 && k == K_STR) {
            size_t n = len < sizeof(sc->finish) ? len : sizeof(sc->finish) - 1;
            memcpy(sc->finish, s, n);
            sc->finish[n] = '\0';
        } else if (sc->top == T_USAGE && k == K_NUM) {
            if (sc->ukey == U_PROMPT_DETAILS && sc->dkey == U_CACHED)
                return usage_int(s, len, &sc->usage->cached_input_tokens);
            if (sc->ukey == U_COMPLETION_DETAILS && sc->dkey == U_REASONING)
                return usage_int(s, len, &sc->usage->reasoning_tokens);
        }
        return 1;
    case 4:
        if (sc->top == T_CHOICES && sc->in_body && !sc->chunk) {
            if (sc->text_key == 1 && k != K_STR && k != K_NULL)
                return 0; /* message.content: a string or null */
            if (sc->text_key == 4)
                sc->plain &= k == K_STR && len == 9 && memcmp(s, "assistant", 9) == 0;
            else if (sc->text_key == 1)
                sc->plain &= k == K_STR;
            else if (sc->text_key != 5)
                sc->plain = 0;
        }
        if (sc->top == T_CHOICES && sc->in_body && sc->text_key != 0 && sc->text_key < 4) {
            if (sc->chunk && k == K_STR)
                sc->out->text_chars += (int64_t)len;
            if (k == K_STR && sc->text_key == 1) { /* the string after the key */
                const char *q = memchr(sc->body + sc->key_end, '"', scan_at(sc) - sc->key_end);
                sc->text_open = q != NULL ? (size_t)(q - sc->body) : 0;
                sc->text_close = q != NULL ? scan_at(sc) : 0;
            }
        }
        return 1;
    default:
        return 1;
    }
}

/* The value that began at the current depth is complete. */
static int value_end(struct scan *sc)
{
    if (sc->depth != 1)
        return 1;
    size_t end = scan_at(sc);
    enum top t = sc->top;
    int cut = t == T_OBJECT || t == T_CREATED || t == T_MODEL || t == T_USAGE;
    if (sc->chunk)
        cut = cut || t == T_ID;
    else
        cut = cut || t == T_PROVIDER || t == T_ROUTE || (t == T_ID && !sc->id_string);
    if (cut && gw_splice_cut(&sc->out->sp, sc->member_start, end) != 0)
        return 0;
    if (t == T_ID && !sc->chunk)
        sc->out->has_id = sc->id_string;
    sc->prev_end = end;
    return 1;
}

static int scalar(struct scan *sc, enum kind k, const char *s, size_t len)
{
    return value_begin(sc, k, s, len) && value_end(sc);
}

static int on_null(void *ctx) { return scalar(ctx, K_NULL, NULL, 0); }
static int on_bool(void *ctx, int v)
{
    (void)v;
    return scalar(ctx, K_BOOL, NULL, 0);
}
static int on_number(void *ctx, const char *s, size_t len) { return scalar(ctx, K_NUM, s, len); }
/* A string or key jansson takes (and parse() with it): no NUL, strict UTF-8, surrogates
 * paired. */
static int text_ok(const struct scan *sc, const unsigned char *s, size_t len)
{
    return gw_json_text_bad(sc->body, scan_at(sc), s, len) == NULL;
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    return text_ok(ctx, s, len) && scalar(ctx, K_STR, (const char *)s, len);
}

static int open_container(void *ctx, enum kind k)
{
    struct scan *sc = ctx;
    if (!value_begin(sc, k, NULL, 0) || sc->depth >= SCAN_MAX_DEPTH)
        return 0;
    sc->depth++;
    return 1;
}

static int on_start_map(void *ctx) { return open_container(ctx, K_MAP); }
static int on_start_array(void *ctx) { return open_container(ctx, K_ARRAY); }

static int close_container(void *ctx)
{
    struct scan *sc = ctx;
    sc->depth--;
    if (sc->depth == 0) {
        sc->out->sp.close = scan_at(sc) - 1;
        return 1;
    }
    if (sc->depth == 2 && sc->top == T_CHOICES) {
        if (!sc->body_seen)
            return 0; /* a choice without its message / delta */
        if (sc->chunk && !sc->not_first && sc->out->text_close == 0) {
            sc->out->text_open = sc->text_open;
            sc->out->text_close = sc->text_close;
        }
    }
    if (sc->depth == 3 && sc->top == T_CHOICES && sc->in_body && !sc->chunk &&
        sc->out->nchoices == 1) {
        sc->out->msg_open = sc->body_open;
        sc->out->msg_close = scan_at(sc);
        if (sc->plain && sc->roles == 1 && sc->contents == 1) {
            sc->out->text_open = sc->text_open;
            sc->out->text_close = sc->text_close;
        }
    }
    if (sc->depth == 3)
        sc->in_body = 0;
    return value_end(sc);
}

static int key_is(const unsigned char *k, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(k, name, len) == 0;
}

static int on_key(void *ctx, const unsigned char *k, size_t len)
{
    struct scan *sc = ctx;
    if (!text_ok(sc, k, len))
        return 0;
    sc->key_end = scan_at(sc);
    switch (sc->depth) {
    case 1:
        sc->top = T_OTHER;
        for (int i = 1; i < (int)(sizeof(top_names) / sizeof(top_names[0])); i++)
            if (key_is(k, len, top_names[i])) {
                if (sc->seen & (1u << i))
                    return 0; /* a duplicate of a member the gateway reads or replaces */
                sc->seen |= 1u << i;
                sc->top = (enum top)i;
                break;
            }
        if (sc->top == T_ERROR && sc->chunk) {
            sc->has_error = 1;
            return 0; /* error events take the tree path */
        }
        sc->member_start = sc->prev_end;
        return 1;
    case 2:
        if (sc->top == T_USAGE) {
            static const char *const names[] = {"", "prompt_tokens", "completion_tokens",
                                                "prompt_tokens_details",
                                                "completion_tokens_details",
                                                "num_search_queries", "search_context_size"};
            sc->ukey = U_OTHER;
            for (int i = 1; i < (int)(sizeof(names) / sizeof(names[0])); i++)
                if (key_is(k, len, names[i]))
                    sc->ukey = (enum ukey)i;
        }
        return 1;
    case 3:
        if (sc->top == T_USAGE)
            sc->dkey = key_is(k, len, "cached_tokens")      ? U_CACHED
                       : key_is(k, len, "reasoning_tokens") ? U_REASONING
                                                            : U_OTHER;
        if (sc->top == T_CHOICES) {
            sc->in_body = key_is(k, len, sc->chunk ? "delta" : "message");
            sc->text_key = key_is(k, len, "finish_reason") ? 3 : 0;
            sc->index_key = key_is(k, len, "index");
        }
        return 1;
    case 4:
        if (sc->top == T_CHOICES && sc->in_body) {
            sc->text_key = key_is(k, len, "content")             ? 1
                           : key_is(k, len, "reasoning_content") ? 2
                           : key_is(k, len, "role")              ? 4
                           : key_is(k, len, "refusal") || key_is(k, len, "annotations") ||
                                   key_is(k, len, "audio")
                               ? 5
                               : 0;
            sc->roles += sc->text_key == 4;
            sc->contents += sc->text_key == 1;
        }
        return 1;
    default:
        return 1;
    }
}

static const yajl_callbacks scan_callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_bool,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_key,
    .yajl_end_map = close_container,
    .yajl_start_array = on_start_array,
    .yajl_end_array = close_container,
};

/* Scan body; 0, GW_EPARSE, GW_ENOMEM, or GW_EUPSTREAM for a chunk with an "error" member
 * (which takes the tree path). */
static int scan_body(enum flavor fl, int chunk, const char *body, size_t len,
                     struct gw_usage *usage, struct gw_scan *out, char *finish, size_t finish_n)
{
    struct scan sc;
    memset(&sc, 0, sizeof(sc));
    memset(out, 0, sizeof(*out));
    sc.fl = fl;
    sc.chunk = chunk;
    sc.usage = usage;
    sc.out = out;
    sc.body = body;
    /* what yajl lets through and jansson does not (as util/json): \v and \f taken for
     * whitespace, UTF-8 of the right shape only and unpaired surrogate escapes (checked per
     * string), and an unterminated string after the root */
    if (gw_json_bad_space(body, len) != NULL)
        return GW_EPARSE;
    sc.h = yajl_alloc(&scan_callbacks, NULL, &sc);
    if (sc.h == NULL)
        return GW_ENOMEM;
    int ok = yajl_parse(sc.h, (const unsigned char *)body, len) == yajl_status_ok &&
             yajl_complete_parse(sc.h) == yajl_status_ok;
    yajl_free(sc.h);
    if (sc.has_error)
        return GW_EUPSTREAM;
    for (size_t i = out->sp.close + 1; ok && i < len; i++)
        ok = body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r';
    if (!ok || !(sc.seen & (1u << T_CHOICES)))
        return GW_EPARSE;
    if (finish != NULL && sc.finish[0] != '\0')
        gw_strlcpy(finish, sc.finish, finish_n);
    return 0;
}

static int scan_common(enum flavor fl, const char *body, size_t len, struct gw_usage *usage,
                       struct gw_scan *out, struct gw_errbuf *eb)
{
    memset(usage, 0, sizeof(*usage));
    int rc = scan_body(fl, 0, body, len, usage, out, NULL, 0);
    if (rc != 0) {
        gw_errbuf_set(eb, "not a chat.completion object");
        return rc == GW_ENOMEM ? rc : GW_EPARSE;
    }
    usage_clamp(usage);
    return 0;
}

static int scan_openai(const char *b, size_t n, struct gw_usage *u, struct gw_scan *o,
                       struct gw_errbuf *eb)
{
    return scan_common(OPENAI, b, n, u, o, eb);
}

static int scan_xai(const char *b, size_t n, struct gw_usage *u, struct gw_scan *o,
                    struct gw_errbuf *eb)
{
    return scan_common(XAI, b, n, u, o, eb);
}

static int scan_perplexity(const char *b, size_t n, struct gw_usage *u, struct gw_scan *o,
                           struct gw_errbuf *eb)
{
    return scan_common(PERPLEXITY, b, n, u, o, eb);
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
    if (s->emit_raw != NULL) {
        struct gw_scan sc;
        int rc = scan_body(fl, 1, data, len, &s->usage, &sc, s->finish_reason,
                           sizeof(s->finish_reason));
        if (rc == 0) {
            usage_clamp(&s->usage);
            if (sc.nchoices > 0)
                rc = s->emit_raw(s->arg, data, &sc);
            if (fl == PERPLEXITY && s->finish_reason[0] != '\0' && s->usage.seen)
                s->complete = 1;
            return rc;
        }
        if (rc != GW_EUPSTREAM)
            return rc;
        /* an error event: mapped below */
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
    .scan = scan_openai,
    .stream_init = init_openai,
    .stream_event = stream_event,
    .map_error = map_error,
};

const struct gw_provider_ops gw_provider_xai = {
    .name = "xai",
    .build = build_xai,
    .parse = parse_xai,
    .scan = scan_xai,
    .stream_init = init_xai,
    .stream_event = stream_event,
    .map_error = map_error,
};

const struct gw_provider_ops gw_provider_perplexity = {
    .name = "perplexity",
    .build = build_perplexity,
    .parse = parse_perplexity,
    .scan = scan_perplexity,
    .stream_init = init_perplexity,
    .stream_event = stream_event,
    .map_error = map_error,
};
