/*
 * Golden tests for the provider adapters, both ways, from recorded-shape fixtures:
 *   fixtures/<p>/request_in.json   canonical request   → request_out.json / request_stream_out.json
 *   fixtures/<p>/response.json     provider answer     → response_out.json (canonical + usage)
 *   fixtures/<p>/stream.sse        provider stream     → stream_out.json (chunks + usage + end)
 *   fixtures/errors.json           error bodies        → mapped type / retryable / auth_failed
 * Any change in translation shows as a diff against the committed goldens. To regenerate after
 * an intended change: GW_FIXTURES_WRITE=1 build/san/test_providers, then review the diff.
 * Also: every adapter survives truncated and mutated answers and stream events.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../common/replaced.h"

#include "providers/provider.h"
#include "util/buf.h"
#include "util/splice.h"
#include "util/sse.h"

static const char *const providers[] = {"openai", "anthropic", "gemini", "xai", "perplexity"};
#define NPROV 5

static int writing(void) { return getenv("GW_FIXTURES_WRITE") != NULL; }

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    struct gw_buf b;
    gw_buf_init(&b, 1 << 24);
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        assert_int_equal(gw_buf_add(&b, tmp, n), 0);
    fclose(f);
    *len = b.len;
    char *s = gw_buf_take(&b);
    return s ? s : strdup("");
}

static json_t *load_json(const char *path)
{
    json_error_t err;
    json_t *v = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (v == NULL)
        fail_msg("%s: %s (line %d)", path, err.text, err.line);
    return v;
}

/* Compare got with the golden file (or write it in write mode). Takes got. */
static void golden(const char *path, json_t *got)
{
    if (writing()) {
        assert_int_equal(json_dump_file(got, path, JSON_INDENT(1) | JSON_SORT_KEYS), 0);
    } else {
        json_t *want = load_json(path);
        if (!json_equal(want, got)) {
            char *g = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);
            char *w = json_dumps(want, JSON_SORT_KEYS | JSON_COMPACT);
            print_error("golden mismatch %s\n got: %s\nwant: %s\n", path, g, w);
            free(g);
            free(w);
            json_decref(want);
            json_decref(got);
            fail();
        }
        json_decref(want);
    }
    json_decref(got);
}

static json_t *usage_json(const struct gw_usage *u)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:b}", "input",
                     (json_int_t)u->input_tokens, "cached_input",
                     (json_int_t)u->cached_input_tokens, "cache_write",
                     (json_int_t)u->cache_write_tokens, "cache_write_1h",
                     (json_int_t)u->cache_write_1h_tokens, "output", (json_int_t)u->output_tokens,
                     "reasoning", (json_int_t)u->reasoning_tokens, "search_requests",
                     (json_int_t)u->search_requests, "search_context_size",
                     u->search_context_size, "seen", u->seen);
}

static const struct gw_provider_cfg *cfg_for(const char *p)
{
    static struct gw_provider_cfg c;
    static char key[64];
    snprintf(key, sizeof(key), "test-key-%s", p);
    c = (struct gw_provider_cfg){.base_url = "https://api.example.test",
                                 .api_key = key,
                                 .default_max_tokens = 4096};
    return &c;
}

static json_t *request_json(const struct gw_upstream_req *r)
{
    json_t *headers = json_array();
    for (int i = 0; i < r->nheaders; i++)
        json_array_append_new(headers, json_string(r->headers[i]));
    json_t *body = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(body);
    return json_pack("{s:s,s:o,s:o}", "url", r->url, "headers", headers, "body", body);
}

static void build_golden(void **state)
{
    char path[256];
    for (int i = 0; i < NPROV; i++) {
        const char *p = providers[i];
        const struct gw_provider_ops *ops = gw_provider_find(p);
        assert_non_null(ops);
        snprintf(path, sizeof(path), "fixtures/%s/request_in.json", p);
        json_t *req = load_json(path);
        for (int stream = 0; stream <= 1; stream++) {
            struct gw_upstream_req up = {0};
            struct gw_errbuf eb = {{0}};
            const char *wire = strcmp(p, "gemini") == 0 ? "gemini-2.5-flash" : "wire-model-1";
            int rc = ops->build(cfg_for(p), req, wire, stream, &up, &eb);
            if (rc != 0)
                fail_msg("%s build: %d %s", p, rc, eb.msg);
            snprintf(path, sizeof(path), "fixtures/%s/request%s_out.json", p,
                     stream ? "_stream" : "");
            golden(path, request_json(&up));
            gw_upstream_req_cleanup(&up);
        }
        json_decref(req);
    }
}

static void parse_golden(void **state)
{
    char path[256];
    for (int i = 0; i < NPROV; i++) {
        const char *p = providers[i];
        const struct gw_provider_ops *ops = gw_provider_find(p);
        size_t len;
        snprintf(path, sizeof(path), "fixtures/%s/response.json", p);
        char *body = slurp(path, &len);
        json_t *out = NULL;
        struct gw_usage u;
        struct gw_errbuf eb = {{0}};
        int rc = ops->parse(body, len, &out, &u, &eb);
        if (rc != 0)
            fail_msg("%s parse: %d %s", p, rc, eb.msg);
        json_object_del(out, "created"); /* the adapter's clock */
        assert_null(json_object_get(out, "usage")); /* the pipeline adds its own */
        snprintf(path, sizeof(path), "fixtures/%s/response_out.json", p);
        golden(path, json_pack("{s:o,s:o}", "canonical", out, "usage", usage_json(&u)));
        free(body);
    }
}

/* One stream run: the adapter's state, the adapter, and the chunks it emitted. */
struct runner {
    struct gw_stream st;
    const struct gw_provider_ops *ops;
    json_t *chunks;
};

static int collect_chunk(void *arg, json_t *chunk)
{
    struct runner *r = arg;
    return json_array_append(r->chunks, chunk);
}

static json_t *spliced_tree(const char *body, const struct gw_splice *sp);

/* The fast path's chunks, rebuilt as trees; what the pipeline sets is marked as cut. */
static int collect_raw(void *arg, const char *data, const struct gw_scan *scan)
{
    struct runner *r = arg;
    json_t *t = spliced_tree(data, &scan->sp);
    if (t == NULL)
        return GW_EPARSE;
    json_object_set_new(t, "text_chars", json_integer(scan->text_chars));
    if (scan->text_close != 0) /* the first choice's content, as the scan found it */
        json_object_set_new(t, "text0", json_loadb(data + scan->text_open,
                                                   scan->text_close - scan->text_open,
                                                   JSON_DECODE_ANY, NULL));
    return json_array_append_new(r->chunks, t);
}

static int feed_event(void *arg, const char *event, const char *data, size_t len)
{
    struct runner *r = arg;
    return r->ops->stream_event(&r->st, event, data, len);
}

/* Run a stream fixture through the SSE parser and the adapter, fed in pieces of `step`. */
static json_t *run_stream_as(const struct gw_provider_ops *ops, const char *path, size_t step,
                             int *rc_out, int raw)
{
    struct runner r;
    struct gw_sse sse;
    size_t len;
    char *data = slurp(path, &len);
    int rc = 0;

    memset(&r, 0, sizeof(r));
    r.ops = ops;
    r.chunks = json_array();
    r.st.emit = collect_chunk;
    if (raw)
        r.st.emit_raw = collect_raw;
    r.st.arg = &r;
    if (ops->stream_init != NULL)
        assert_int_equal(ops->stream_init(&r.st), 0);
    gw_sse_init(&sse, 1 << 20, feed_event, &r);
    for (size_t i = 0; i < len && rc == 0; i += step)
        rc = gw_sse_feed(&sse, data + i, len - i < step ? len - i : step);
    *rc_out = rc;
    json_t *out = json_pack("{s:o,s:o,s:b,s:b,s:s,s:s}", "chunks", r.chunks, "usage",
                            usage_json(&r.st.usage), "complete", r.st.complete, "failed",
                            r.st.failed, "finish_reason", r.st.finish_reason, "error_type",
                            r.st.err.type);
    gw_sse_cleanup(&sse);
    if (ops->stream_cleanup != NULL)
        ops->stream_cleanup(&r.st);
    free(data);
    return out;
}

static json_t *run_stream(const struct gw_provider_ops *ops, const char *path, size_t step,
                          int *rc_out)
{
    return run_stream_as(ops, path, step, rc_out, 0);
}

/* The content string of a chunk's first choice with index 0 (absent: 0) that has one. */
static json_t *first_text(const json_t *chunk)
{
    size_t i;
    json_t *ch;
    json_array_foreach(json_object_get(chunk, "choices"), i, ch) {
        json_t *ix = json_object_get(ch, "index");
        json_t *s = json_object_get(json_object_get(ch, "delta"), "content");
        if ((ix == NULL || (json_is_integer(ix) && json_integer_value(ix) == 0)) &&
            json_is_string(s))
            return s;
    }
    return NULL;
}

/* The fast path relays the same chunks, usage and end as the tree path. */
static void stream_raw_matches_tree(void **state)
{
    char path[256];
    for (int i = 0; i < NPROV; i++) {
        const struct gw_provider_ops *ops = gw_provider_find(providers[i]);
        if (ops->scan == NULL)
            continue;
        int rc;
        snprintf(path, sizeof(path), "fixtures/%s/stream.sse", providers[i]);
        json_t *tree = run_stream(ops, path, 1 << 20, &rc);
        assert_int_equal(rc, 0);
        for (size_t step = 3; step <= 1 << 20; step = step * 16) {
            json_t *raw = run_stream_as(ops, path, step, &rc, 1);
            assert_int_equal(rc, 0);
            size_t k;
            json_t *ch;
            json_array_foreach(json_object_get(tree, "chunks"), k, ch) {
                json_t *want = json_deep_copy(ch);
                drop_replaced(want, 1);
                json_object_set_new(want, "text_chars", json_integer(gw_chunk_text_chars(ch)));
                if (first_text(ch) != NULL)
                    json_object_set(want, "text0", first_text(ch));
                json_t *got = json_array_get(json_object_get(raw, "chunks"), k);
                if (!json_equal(want, got))
                    fail_msg("%s: raw chunk %zu differs", providers[i], k);
                json_decref(want);
            }
            assert_int_equal(json_array_size(json_object_get(raw, "chunks")),
                             json_array_size(json_object_get(tree, "chunks")));
            json_object_del(raw, "chunks");
            json_t *rest = json_deep_copy(tree);
            json_object_del(rest, "chunks");
            assert_true(json_equal(rest, raw));
            json_decref(rest);
            json_decref(raw);
        }
        json_decref(tree);
    }
}

static void stream_golden_any_split(void **state)
{
    char path[256], out_path[256];
    for (int i = 0; i < NPROV; i++) {
        const char *p = providers[i];
        const struct gw_provider_ops *ops = gw_provider_find(p);
        int rc;
        snprintf(path, sizeof(path), "fixtures/%s/stream.sse", p);
        json_t *whole = run_stream(ops, path, 1 << 20, &rc);
        assert_int_equal(rc, 0);
        assert_true(json_is_true(json_object_get(whole, "complete")));
        /* the same chunks and usage whatever the split */
        for (size_t step = 1; step <= 64; step = step * 2 + 1) {
            json_t *split = run_stream(ops, path, step, &rc);
            assert_int_equal(rc, 0);
            if (!json_equal(whole, split))
                fail_msg("%s: stream fed %zu bytes at a time differs", p, step);
            json_decref(split);
        }
        snprintf(out_path, sizeof(out_path), "fixtures/%s/stream_out.json", p);
        golden(out_path, whole);
    }
}

static void anthropic_stream_error_event_fails(void **state)
{
    int rc;
    json_t *out = run_stream(gw_provider_find("anthropic"), "fixtures/anthropic/stream_error.sse",
                             1 << 20, &rc);
    assert_int_equal(rc, GW_EUPSTREAM);
    assert_true(json_is_true(json_object_get(out, "failed")));
    assert_false(json_is_true(json_object_get(out, "complete")));
    assert_string_equal(json_string_value(json_object_get(out, "error_type")), "overloaded_error");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(out, "usage"), "input")),
                     12);
    json_decref(out);
}

static void errors_map(void **state)
{
    json_t *cases = load_json("fixtures/errors.json");
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *p = json_string_value(json_object_get(c, "provider"));
        const char *body = json_string_value(json_object_get(c, "body"));
        int status = (int)json_integer_value(json_object_get(c, "status"));
        struct gw_upstream_error e;
        gw_provider_find(p)->map_error(status, body, strlen(body), &e);
        const char *want_type = json_string_value(json_object_get(c, "type"));
        if (e.status != status || strcmp(e.type, want_type) != 0 ||
            e.retryable != json_integer_value(json_object_get(c, "retryable")) ||
            e.auth_failed != json_integer_value(json_object_get(c, "auth_failed")))
            fail_msg("case %zu (%s %d): got status=%d type=%s retryable=%d auth=%d", i, p, status,
                     e.status, e.type, e.retryable, e.auth_failed);
    }
    json_decref(cases);
}

static void reasoning_models(void **state)
{
    json_t *req = json_pack("{s:s,s:[{s:s,s:s}],s:i,s:f,s:[s],s:f}", "model", "o3", "messages",
                            "role", "user", "content", "hi", "max_tokens", 100, "temperature",
                            1.0, "stop", "X", "presence_penalty", 0.5);
    struct gw_provider_cfg cfg = *cfg_for("openai");
    struct gw_upstream_req up = {0};
    struct gw_errbuf eb = {{0}};
    cfg.reasoning = 1;
    assert_int_equal(gw_provider_find("openai")->build(&cfg, req, "o3", 0, &up, &eb), 0);
    json_t *body = json_loadb(up.body, up.body_len, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(body, "max_completion_tokens")), 100);
    assert_null(json_object_get(body, "max_tokens"));
    assert_null(json_object_get(body, "temperature")); /* the default 1 is dropped */
    json_decref(body);
    gw_upstream_req_cleanup(&up);
    json_object_set_new(req, "temperature", json_real(0.2));
    assert_int_equal(gw_provider_find("openai")->build(&cfg, req, "o3", 0, &up, &eb), GW_EINVAL);
    assert_non_null(strstr(eb.msg, "temperature"));
    gw_upstream_req_cleanup(&up);
    /* xAI reasoning models: stop and penalties removed */
    assert_int_equal(gw_provider_find("xai")->build(&cfg, req, "grok-4-0709", 1, &up, &eb), 0);
    body = json_loadb(up.body, up.body_len, 0, NULL);
    assert_null(json_object_get(body, "stop"));
    assert_null(json_object_get(body, "presence_penalty"));
    assert_true(json_is_true(json_object_get(json_object_get(body, "stream_options"),
                                             "include_usage")));
    json_decref(body);
    gw_upstream_req_cleanup(&up);
    json_decref(req);
}

static void refusals_are_client_errors(void **state)
{
    struct gw_upstream_req up = {0};
    struct gw_errbuf eb = {{0}};
    json_t *req = load_json("fixtures/openai/request_in.json");
    /* Perplexity takes no tools */
    assert_int_equal(gw_provider_find("perplexity")->build(cfg_for("perplexity"), req, "sonar-pro",
                                                           0, &up, &eb),
                     GW_EINVAL);
    gw_upstream_req_cleanup(&up);
    /* Anthropic: temperature above 1 */
    json_object_set_new(req, "temperature", json_real(1.5));
    assert_int_equal(gw_provider_find("anthropic")->build(cfg_for("anthropic"), req, "claude", 0,
                                                          &up, &eb),
                     GW_EINVAL);
    gw_upstream_req_cleanup(&up);
    /* Gemini: remote image URLs and model ids outside the alphabet */
    json_object_set_new(req, "temperature", json_real(0.5));
    assert_int_equal(gw_provider_find("gemini")->build(cfg_for("gemini"), req, "../../x", 0, &up,
                                                       &eb),
                     GW_EINVAL);
    gw_upstream_req_cleanup(&up);
    json_t *img = json_object_get(json_array_get(json_object_get(json_array_get(
                                                     json_object_get(req, "messages"), 1),
                                                                 "content"),
                                                 1),
                                  "image_url");
    json_object_set_new(img, "url", json_string("https://example.test/cat.png"));
    assert_int_equal(gw_provider_find("gemini")->build(cfg_for("gemini"), req, "gemini-2.5-flash",
                                                       0, &up, &eb),
                     GW_EINVAL);
    gw_upstream_req_cleanup(&up);
    /* Tool arguments that are not a JSON object */
    json_t *tc = json_array_get(json_object_get(json_array_get(json_object_get(req, "messages"), 2),
                                                "tool_calls"),
                                0);
    json_object_set_new(json_object_get(tc, "function"), "arguments", json_string("[1,2"));
    assert_int_equal(gw_provider_find("anthropic")->build(cfg_for("anthropic"), req, "claude", 0,
                                                          &up, &eb),
                     GW_EINVAL);
    gw_upstream_req_cleanup(&up);
    json_decref(req);
}

/* Build req (a JSON text) for provider p; the error code, and the message in eb. */
static int build_text(const char *p, const char *wire, int reasoning, const char *js,
                      struct gw_errbuf *eb, char **body)
{
    struct gw_upstream_req up = {0};
    struct gw_provider_cfg cfg = *cfg_for(p);
    json_error_t je;
    json_t *req = json_loads(js, 0, &je);
    assert_non_null(req);
    cfg.reasoning = reasoning;
    memset(eb, 0, sizeof(*eb));
    int rc = gw_provider_find(p)->build(&cfg, req, wire, 0, &up, eb);
    if (body != NULL)
        *body = rc == 0 && up.body ? strdup(up.body) : NULL;
    gw_upstream_req_cleanup(&up);
    json_decref(req);
    return rc;
}

/* What a provider lacks is refused by name; what only Anthropic takes stays out of the others. */
static void unsupported_fields_refused_or_dropped(void **state)
{
    (void)state;
    struct gw_errbuf eb;
    char *body = NULL;
#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
    static const struct {
        const char *provider, *wire;
        int reasoning;
        const char *req, *msg;
    } refused[] = {
        {"anthropic", "claude-sonnet-4-6", 0, "{\"model\":\"claude-sonnet-4-6\"," MSG ",\"response_format\":{\"type\":\"json_object\"}}",
         "'response_format' is not supported by anthropic models"},
        {"anthropic", "claude-sonnet-4-6", 0, "{\"model\":\"claude-sonnet-4-6\"," MSG ",\"logprobs\":true}",
         "'logprobs' is not supported by anthropic models"},
        {"gemini", "gemini-2.5-flash", 0, "{\"model\":\"gemini-2.5-flash\"," MSG ",\"top_logprobs\":2}",
         "'top_logprobs' is not supported by gemini models"},
        {"openai", "gpt-4o", 0, "{\"model\":\"gpt-4o\"," MSG ",\"reasoning_effort\":\"low\"}",
         "'reasoning_effort' is not supported by this model (not a reasoning model)"},
        {"perplexity", "sonar", 0, "{\"model\":\"sonar\"," MSG ",\"logprobs\":true}",
         "'logprobs' is not supported by perplexity models"},
        {"perplexity", "sonar", 0, "{\"model\":\"sonar\"," MSG ",\"n\":2}", "n must be 1"},
        {"perplexity", "sonar", 0, "{\"model\":\"sonar\"," MSG ",\"response_format\":{\"type\":\"json_object\"}}",
         "json_schema, not json_object"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++) {
        assert_int_equal(build_text(refused[i].provider, refused[i].wire, refused[i].reasoning,
                                    refused[i].req, &eb, NULL),
                         GW_EINVAL);
        if (strstr(eb.msg, refused[i].msg) == NULL)
            fail_msg("%s: '%s' lacks '%s'", refused[i].provider, eb.msg, refused[i].msg);
    }
    /* accepted where the provider has it */
    assert_int_equal(build_text("openai", "o3", 1, "{\"model\":\"o3\"," MSG ",\"reasoning_effort\":\"low\",\"logprobs\":false}", &eb, NULL), 0);
    assert_int_equal(build_text("openai", "gpt-4o", 0, "{\"model\":\"gpt-4o\"," MSG ",\"logprobs\":true,\"n\":2,\"response_format\":{\"type\":\"json_object\"}}", &eb, NULL), 0);
    assert_int_equal(build_text("perplexity", "sonar", 0, "{\"model\":\"sonar\"," MSG ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{}}}}", &eb, NULL), 0);
    /* thinking, top_k and cache_control reach Anthropic and no one else */
    const char *anth = "{\"model\":\"m\",\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1024},\"top_k\":3,"
                       "\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"S\",\"cache_control\":{\"type\":\"ephemeral\"}}]},"
                       "{\"role\":\"user\",\"content\":\"hi\"},"
                       "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"T\",\"signature\":\"sig\"},"
                       "{\"type\":\"text\",\"text\":\"A\"}]},"
                       "{\"role\":\"assistant\",\"content\":[{\"type\":\"redacted_thinking\",\"data\":\"x\"}],"
                       "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
                       "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"ok\"}]}";
    assert_int_equal(build_text("openai", "gpt-4o", 0, anth, &eb, &body), 0);
    assert_null(strstr(body, "thinking"));
    assert_non_null(strstr(body, "{\"role\":\"assistant\",\"content\":null,\"tool_calls\""));
    assert_null(strstr(body, "top_k"));
    assert_null(strstr(body, "cache_control"));
    assert_non_null(strstr(body, "\"text\":\"S\""));
    free(body);
    assert_int_equal(build_text("anthropic", "claude-sonnet-4-6", 0, anth, &eb, &body), 0);
    assert_non_null(strstr(body, "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1024}"));
    assert_non_null(strstr(body, "\"top_k\":3"));
    assert_non_null(strstr(body, "\"cache_control\":{\"type\":\"ephemeral\"}"));
    assert_non_null(strstr(body, "{\"type\":\"thinking\",\"thinking\":\"T\",\"signature\":\"sig\"}"));
    assert_non_null(strstr(body, "{\"type\":\"redacted_thinking\",\"data\":\"x\"}"));
    free(body);
    assert_int_equal(build_text("gemini", "gemini-2.5-flash", 0, anth, &eb, &body), 0);
    assert_null(strstr(body, "thinking"));
    assert_null(strstr(body, "sig"));
    free(body);
#undef MSG
}

/* Truncations and byte mutations of every answer: an error or a result, never a crash or leak. */
static void malformed_answers_never_crash(void **state)
{
    char path[256];
    for (int i = 0; i < NPROV; i++) {
        const struct gw_provider_ops *ops = gw_provider_find(providers[i]);
        size_t len;
        snprintf(path, sizeof(path), "fixtures/%s/response.json", providers[i]);
        char *body = slurp(path, &len);
        for (size_t cut = 0; cut < len; cut += 7) {
            json_t *out = NULL;
            struct gw_usage u;
            if (ops->parse(body, cut, &out, &u, NULL) == 0)
                json_decref(out);
        }
        static const char subst[] = "\"{}[]:,0 x-1e99";
        for (size_t pos = 0; pos < len; pos += 3) {
            char saved = body[pos];
            body[pos] = subst[pos % (sizeof(subst) - 1)];
            json_t *out = NULL;
            struct gw_usage u;
            if (ops->parse(body, len, &out, &u, NULL) == 0)
                json_decref(out);
            body[pos] = saved;
        }
        /* wrong types in the places adapters read */
        static const char *const odd[] = {
            "[]", "null", "{\"choices\":{}}", "{\"choices\":[1]}", "{\"choices\":[{\"message\":[]}]}",
            "{\"content\":\"x\"}", "{\"content\":[{\"type\":\"tool_use\",\"input\":[]}]}",
            "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"args\":1}}]}}]}",
            "{\"candidates\":{}}", "{\"usage\":{\"prompt_tokens\":-5},\"choices\":[]}",
            "{\"usageMetadata\":{\"promptTokenCount\":\"9\"},\"candidates\":[]}"};
        for (size_t k = 0; k < sizeof(odd) / sizeof(odd[0]); k++) {
            json_t *out = NULL;
            struct gw_usage u;
            if (ops->parse(odd[k], strlen(odd[k]), &out, &u, NULL) == 0) {
                assert_true(u.input_tokens >= 0 && u.output_tokens >= 0);
                json_decref(out);
            }
        }
        free(body);
    }
}

static int drop_chunk(void *arg, json_t *chunk)
{
    (void)arg;
    (void)chunk;
    return 0;
}

static void malformed_stream_events_never_crash(void **state)
{
    static const char *const events[] = {
        "", "[", "{}", "[]", "null", "{\"choices\":7}", "{\"choices\":[{\"delta\":5}]}",
        "{\"type\":\"content_block_start\",\"index\":-1}",
        "{\"type\":\"content_block_start\",\"index\":99999,\"content_block\":{}}",
        "{\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\"}}",
        "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":\"x\"}}",
        "{\"candidates\":[{\"content\":{\"parts\":\"x\"}}]}", "{\"error\":{}}", "{\"error\":\"x\"}"};
    for (int i = 0; i < NPROV; i++) {
        const struct gw_provider_ops *ops = gw_provider_find(providers[i]);
        for (size_t k = 0; k < sizeof(events) / sizeof(events[0]); k++) {
            struct gw_stream st;
            memset(&st, 0, sizeof(st));
            st.emit = drop_chunk;
            if (ops->stream_init != NULL)
                assert_int_equal(ops->stream_init(&st), 0);
            ops->stream_event(&st, "", events[k], strlen(events[k]));
            ops->stream_event(&st, "content_block_delta", events[k], strlen(events[k]));
            if (ops->stream_cleanup != NULL)
                ops->stream_cleanup(&st);
        }
    }
}

/* Token counts past any real answer are clamped to GW_USAGE_MAX, so that sums of them (the
 * adapters' own, the pipeline's) never overflow (found by fuzz_gemini_response and
 * fuzz_anthropic_stream: signed overflow adding two of them). */
static void usage_counts_are_bounded(void **state)
{
    static const struct {
        const char *provider, *body;
    } answers[] = {
        {"openai", "{\"choices\":[],\"usage\":{\"prompt_tokens\":9223372036854775807,"
                   "\"completion_tokens\":9223372036854775807}}"},
        {"anthropic", "{\"content\":[],\"usage\":{\"input_tokens\":9223372036854775807,"
                      "\"cache_read_input_tokens\":9223372036854775807,"
                      "\"cache_creation_input_tokens\":9223372036854775807}}"},
        {"gemini", "{\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":1,"
                   "\"candidatesTokenCount\":9223372036854775807,\"thoughtsTokenCount\":2}}"},
    };
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        const struct gw_provider_ops *ops = gw_provider_find(answers[i].provider);
        json_t *out = NULL;
        struct gw_usage u;
        assert_int_equal(ops->parse(answers[i].body, strlen(answers[i].body), &out, &u, NULL), 0);
        assert_true(u.input_tokens <= 3 * GW_USAGE_MAX && u.output_tokens <= 2 * GW_USAGE_MAX);
        assert_true(u.input_tokens > 0);
        json_decref(out);
    }
    /* a stream's usage, merged event by event */
    static const char start[] = "{\"type\":\"message_start\",\"message\":{\"usage\":{"
                                "\"input_tokens\":9223372036854775807,"
                                "\"cache_read_input_tokens\":9223372036854775807}}}";
    static const char delta[] = "{\"type\":\"message_delta\",\"usage\":{"
                                "\"cache_creation_input_tokens\":9223372036854775807}}";
    const struct gw_provider_ops *ops = gw_provider_find("anthropic");
    struct gw_stream st;
    memset(&st, 0, sizeof(st));
    st.emit = drop_chunk;
    assert_int_equal(ops->stream_init(&st), 0);
    assert_int_equal(ops->stream_event(&st, "", start, strlen(start)), 0);
    assert_int_equal(ops->stream_event(&st, "", delta, strlen(delta)), 0);
    assert_true(st.usage.input_tokens <= 3 * GW_USAGE_MAX && st.usage.input_tokens > 0);
    ops->stream_cleanup(&st);
}

/* ---- the fast path: scan + splice must say what parse says ---- */

static int has_scan(const struct gw_provider_ops *ops) { return ops->scan != NULL; }

/* The scanned body rebuilt as a tree: "{" + the members kept + "}". NULL if not JSON. */
static json_t *spliced_tree(const char *body, const struct gw_splice *sp)
{
    struct gw_buf b;
    int n = 0;
    gw_buf_init(&b, 1 << 24);
    assert_int_equal(gw_buf_add(&b, "{", 1), 0);
    assert_int_equal(gw_splice_kept(&b, body, sp, &n), 0);
    assert_int_equal(gw_buf_add(&b, "}", 1), 0);
    json_t *v = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
    gw_buf_cleanup(&b);
    return v;
}

/* Scan and parse one body: both accept or both refuse; when accepted, the same members and
 * the same usage. */
static void check_scan(const struct gw_provider_ops *ops, const char *body, size_t len)
{
    json_t *tree = NULL;
    struct gw_usage pu, su;
    struct gw_scan sc;
    memset(&pu, 0, sizeof(pu));
    int prc = ops->parse(body, len, &tree, &pu, NULL);
    int src = ops->scan(body, len, &su, &sc, NULL);
    if ((prc == 0) != (src == 0))
        fail_msg("%s: parse %d, scan %d on %.*s", ops->name, prc, src, (int)len, body);
    if (prc != 0)
        return;
    json_t *got = spliced_tree(body, &sc.sp);
    assert_non_null(got);
    drop_replaced(tree, 0);
    if (!json_equal(tree, got))
        fail_msg("%s: the spliced answer differs from the parsed one", ops->name);
    assert_int_equal(sc.has_id, json_is_string(json_object_get(tree, "id")));
    /* the first choice's message, for the conversation, is where the scan says */
    json_t *msg = json_object_get(json_array_get(json_object_get(tree, "choices"), 0), "message");
    if (sc.msg_close == 0) {
        assert_null(msg);
    } else {
        json_t *slice = json_loadb(body + sc.msg_open, sc.msg_close - sc.msg_open, 0, NULL);
        if (!json_equal(slice, msg))
            fail_msg("%s: the message slice [%zu, %zu) is not choices[0].message", ops->name,
                     sc.msg_open, sc.msg_close);
        json_decref(slice);
    }
    /* and, when it is plain assistant text, its content string too */
    int plain = json_is_object(msg) && json_is_string(json_object_get(msg, "content")) &&
                json_is_string(json_object_get(msg, "role")) &&
                strcmp(json_string_value(json_object_get(msg, "role")), "assistant") == 0;
    const char *k;
    json_t *v;
    json_object_foreach(plain ? msg : NULL, k, v)
        plain &= strcmp(k, "role") == 0 || strcmp(k, "content") == 0 ||
                 strcmp(k, "refusal") == 0 || strcmp(k, "annotations") == 0 ||
                 strcmp(k, "audio") == 0;
    if (!plain) {
        assert_int_equal(sc.text_close, 0);
    } else {
        json_t *text = json_loadb(body + sc.text_open, sc.text_close - sc.text_open,
                                  JSON_DECODE_ANY, NULL);
        if (sc.text_close == 0 || !json_equal(text, json_object_get(msg, "content")))
            fail_msg("%s: the content slice [%zu, %zu) is not the plain message's content",
                     ops->name, sc.text_open, sc.text_close);
        json_decref(text);
    }
    assert_memory_equal(&pu, &su, sizeof(pu));
    json_decref(got);
    json_decref(tree);
}

static void scan_agrees_with_parse(void **state)
{
    char path[256];
    static const char *const odd[] = {
        "[]", "null", "{}", "{\"choices\":{}}", "{\"choices\":[1]}", "{\"choices\":[{}]}",
        "{\"choices\":[{\"message\":[]}]}", "{\"choices\":[{\"message\":{\"content\":5}}]}",
        "{\"choices\":[{\"message\":{\"content\":null}}]}", "{\"choices\":[]}",
        "{\"choices\":[],\"id\":7,\"model\":\"x\",\"provider\":1,\"route_method\":[]}",
        "{\"usage\":{\"prompt_tokens\":-5},\"choices\":[]}",
        "{\"usage\":[],\"choices\":[]}",
        "{\"usage\":{\"prompt_tokens\":3.5,\"completion_tokens\":\"2\"},\"choices\":[]}",
        ("{\"usage\":{\"prompt_tokens\":10,\"prompt_tokens_details\":{\"cached_tokens\":99}},"
         "\"choices\":[]}"),
        "{\"usage\":{\"num_search_queries\":3,\"search_context_size\":\"high\"},\"choices\":[]}",
        /* found by fuzz_openai_response: not an integer, so one search (scan billed none) */
        "{\"usage\":{\"num_search_queries\":2.0},\"choices\":[]}",
        "{\"usage\":{\"num_search_queries\":-1e3},\"choices\":[]}",
        "{\"usage\":{\"search_context_size\":\"much-too-long\"},\"choices\":[]}",
        " { \"choices\" : [ { \"message\" : { \"content\" : \"a\\\"b\" } } ] , \"x\" : 1 } ",
        "{\"choices\":[]} x", "{\"choices\":[],}", "{\"choices\":[]}{}", "{\"choices\":[\"\\u00e9\"]}",
        "{\"a\":{\"b\":[[[{\"c\":null}]]]},\"choices\":[{\"message\":{}}],\"z\":true}",
        /* plain assistant text, or not quite */
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"hi \\u00e9\",\"refusal\":null}}]}",
        "{\"choices\":[{\"message\":{\"content\":\"\",\"annotations\":[1],\"role\":\"assistant\"}}]}",
        "{\"choices\":[{\"message\":{\"role\":\"user\",\"content\":\"hi\"}}]}",
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":null}}]}",
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"a\",\"tool_calls\":[]}}]}",
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"a\",\"reasoning_content\":\"b\"}}]}",
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"a\",\"name\":\"b\"}}]}",
        "{\"choices\":[{\"message\":{\"content\":\"a\"}}]}",
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"a\"}},{\"message\":{\"role\":\"assistant\",\"content\":\"b\"}}]}",
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"audio\":{\"content\":1},\"content\":\"a\"}}]}"};
    for (int i = 0; i < NPROV; i++) {
        const struct gw_provider_ops *ops = gw_provider_find(providers[i]);
        if (!has_scan(ops))
            continue;
        size_t len;
        snprintf(path, sizeof(path), "fixtures/%s/response.json", providers[i]);
        char *body = slurp(path, &len);
        check_scan(ops, body, len);
        for (size_t cut = 0; cut < len; cut += 5)
            check_scan(ops, body, cut);
        static const char subst[] = "\"{}[]:,0 x-1e9";
        for (size_t pos = 0; pos < len; pos++) {
            char saved = body[pos];
            body[pos] = subst[pos % (sizeof(subst) - 1)];
            check_scan(ops, body, len);
            body[pos] = saved;
        }
        for (size_t k = 0; k < sizeof(odd) / sizeof(odd[0]); k++)
            check_scan(ops, odd[k], strlen(odd[k]));
        free(body);
    }
}

/* The content a conversation keeps from a streamed chunk: index 0's, wherever its members are,
 * escapes and all. */
static void scan_finds_the_first_choice_text(void **state)
{
    static const char *const chunks[][2] = {
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}", "\"hi\""},
        {"{\"choices\":[{\"delta\":{\"content\" : \"a\\\"b\\u00e9\"},\"index\":0}]}",
         "\"a\\\"b\u00e9\""},
        {"{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"x\"}},"
         "{\"index\":0,\"delta\":{\"content\":\"y\"}}]}", "\"y\""},
        {"{\"choices\":[{\"delta\":{\"content\":\"z\"},\"index\":2}]}", NULL},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"r\"}}]}", NULL},
        {"{\"choices\":[{\"delta\":{\"content\":\"\"}}]}", "\"\""},
    };
    const struct gw_provider_ops *ops = gw_provider_find("openai");
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        struct runner r;
        memset(&r, 0, sizeof(r));
        r.ops = ops;
        r.chunks = json_array();
        r.st.emit = collect_chunk;
        r.st.emit_raw = collect_raw;
        r.st.arg = &r;
        if (ops->stream_init != NULL)
            assert_int_equal(ops->stream_init(&r.st), 0);
        assert_int_equal(ops->stream_event(&r.st, NULL, chunks[i][0], strlen(chunks[i][0])), 0);
        json_t *got = json_object_get(json_array_get(r.chunks, 0), "text0");
        json_t *want = chunks[i][1] ? json_loads(chunks[i][1], JSON_DECODE_ANY, NULL) : NULL;
        if (!(want == NULL ? got == NULL : json_equal(got, want)))
            fail_msg("chunk %zu: the scan's text is %s", i, got ? json_string_value(got) : "none");
        json_decref(want);
        json_decref(r.chunks);
        if (ops->stream_cleanup != NULL)
            ops->stream_cleanup(&r.st);
    }
}

static void scan_refuses_what_it_cannot_relay(void **state)
{
    const struct gw_provider_ops *ops = gw_provider_find("openai");
    struct gw_usage u;
    struct gw_scan sc;
    /* a second member the gateway reads or replaces */
    static const char dup[] = "{\"choices\":[],\"usage\":{},\"usage\":{\"prompt_tokens\":1}}";
    assert_int_equal(ops->scan(dup, strlen(dup), &u, &sc, NULL), GW_EPARSE);
    /* token counts past 64 bits */
    static const char big[] = "{\"choices\":[],\"usage\":{\"prompt_tokens\":99999999999999999999}}";
    assert_int_equal(ops->scan(big, strlen(big), &u, &sc, NULL), GW_EPARSE);
    static const char longer[] = "{\"choices\":[],\"usage\":{\"prompt_tokens\":"
                                 "1000000000000000000000000000000000000000}}";
    assert_int_equal(ops->scan(longer, strlen(longer), &u, &sc, NULL), GW_EPARSE);
    /* what yajl lets through and JSON does not (found by fuzz_openai_stream): \v and \f for
     * whitespace, malformed UTF-8 of the right shape, an unterminated string after the root */
    static const char *const lax[] = {"{\"choices\":[]\v}", "\f{\"choices\":[]}",
                                      "{\"choices\":[],\"x\":\"\xc1\xa3\"}",
                                      "{\"choices\":[],\"\xed\xa0\x80\":1}",
                                      "{\"choices\":[],\"x\":\"\\ud800\"}",
                                      "{\"choices\":[],\"\\udc00\":1}",
                                      "{\"choices\":[]} \"x"};
    for (size_t i = 0; i < sizeof(lax) / sizeof(lax[0]); i++)
        if (ops->scan(lax[i], strlen(lax[i]), &u, &sc, NULL) != GW_EPARSE)
            fail_msg("scan took '%s'", lax[i]);
    /* nesting is bounded */
    struct gw_buf b;
    gw_buf_init(&b, 1 << 20);
    assert_int_equal(gw_buf_adds(&b, "{\"choices\":[],\"x\":"), 0);
    for (int i = 0; i < 300; i++)
        assert_int_equal(gw_buf_add(&b, "[", 1), 0);
    for (int i = 0; i < 300; i++)
        assert_int_equal(gw_buf_add(&b, "]", 1), 0);
    assert_int_equal(gw_buf_add(&b, "}", 1), 0);
    assert_int_equal(ops->scan(b.data, b.len, &u, &sc, NULL), GW_EPARSE);
    gw_buf_cleanup(&b);
}

/* gw_json_micros_text(m) is the text of gw_json_real_text(m / 1e6) */
static void micros_as_division(int64_t m)
{
    char got[GW_JSON_MICROS_MAX], want[GW_JSON_MICROS_MAX];
    gw_json_micros_text(got, sizeof(got), m);
    gw_json_real_text(want, sizeof(want), (double)m / 1e6);
    if (strcmp(got, want) != 0)
        fail_msg("%lld micro-dollars: \"%s\", the division gives \"%s\"", (long long)m, got,
                 want);
}

static void splice_writes_what_jansson_writes(void **state)
{
    static const char *const strs[] = {"", "plain", "q\"b\\s/", "\n\r\t\b\f", "\x01\x1f\x7f",
                                       "caf\xc3\xa9 \xe2\x82\xac"};
    static const double reals[] = {0, 1, 0.000225, 12.5, 1e20, 1234567.891, 3.3e-7};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        struct gw_buf b;
        gw_buf_init(&b, 1024);
        assert_int_equal(gw_buf_add_json_str(&b, strs[i]), 0);
        json_t *s = json_string(strs[i]);
        char *want = json_dumps(s, JSON_ENCODE_ANY);
        assert_string_equal(b.data, want);
        free(want);
        json_decref(s);
        gw_buf_cleanup(&b);
    }
    for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
        char got[32];
        gw_json_real_text(got, sizeof(got), reals[i]);
        json_t *r = json_real(reals[i]);
        char *want = json_dumps(r, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
        assert_string_equal(got, want);
        free(want);
        json_decref(r);
    }
    /* micro-dollars as dollars: the text of the division, for every small amount, around each
     * power of ten, at random magnitudes, and (by the division itself) beyond 10^15 and below 0 */
    for (int64_t p = 1;; p *= 10) { /* 10^0 .. 10^18 and their neighbours */
        for (int64_t d = -1; d <= 1; d++)
            micros_as_division(p + d);
        if (p > INT64_MAX / 10)
            break;
    }
    for (int64_t m = -3; m < 200000; m++)
        micros_as_division(m);
    uint64_t x = 88172645463325252u;
    for (int i = 0; i < 2800000; i++) { /* log-uniform up to 10^18 */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        micros_as_division((int64_t)(x % 1000000000000000000u) >> (x % 60));
    }
    /* members cut at the start, the middle and the end; separators normalised */
    static const char body[] = "{ \"a\":1 ,\"b\":[2], \"c\":{\"d\":3},\"e\":\"f\" }";
    struct gw_splice sp = {.open = 1, .close = sizeof(body) - 2};
    const char *c = strstr(body, ", \"c\""), *e = strstr(body, ",\"e\"");
    assert_int_equal(gw_splice_cut(&sp, 1, (size_t)(strstr(body, " ,") - body)), 0);
    assert_int_equal(gw_splice_cut(&sp, (size_t)(c - body), (size_t)(e - body)), 0);
    struct gw_buf out;
    int n = 1;
    gw_buf_init(&out, 1024);
    assert_int_equal(gw_buf_adds(&out, "{\"x\":0"), 0);
    assert_int_equal(gw_splice_kept(&out, body, &sp, &n), 0);
    assert_int_equal(gw_splice_member_int(&out, &n, "y", -7), 0);
    assert_int_equal(gw_buf_add(&out, "}", 1), 0);
    assert_string_equal(out.data, "{\"x\":0,\"b\":[2],\"e\":\"f\",\"y\":-7}");
    gw_buf_cleanup(&out);
}

/* Members written ahead of a serialised body: a comma only where one is needed. */
static void body_with_members(void **state)
{
    struct gw_upstream_req up = {0};
    json_t *empty = json_object(), *one = json_pack("{s:i}", "a", 1);
    assert_int_equal(gw_upstream_req_body_with(&up, empty, "\"s\":true"), 0);
    assert_string_equal(up.body, "{\"s\":true}");
    assert_int_equal(up.body_len, strlen(up.body));
    assert_int_equal(gw_upstream_req_body_with(&up, one, "\"s\":true"), 0);
    assert_string_equal(up.body, "{\"s\":true,\"a\":1}");
    assert_int_equal(gw_upstream_req_body_with(&up, one, ""), 0);
    assert_string_equal(up.body, "{\"a\":1}");
    json_t *arr = json_array();
    assert_int_equal(gw_upstream_req_body_with(&up, arr, "\"s\":1"), GW_EINVAL);
    gw_upstream_req_cleanup(&up);
    json_decref(arr);
    json_decref(empty);
    json_decref(one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(build_golden),
        cmocka_unit_test(parse_golden),
        cmocka_unit_test(stream_golden_any_split),
        cmocka_unit_test(stream_raw_matches_tree),
        cmocka_unit_test(scan_agrees_with_parse),
        cmocka_unit_test(scan_refuses_what_it_cannot_relay),
        cmocka_unit_test(scan_finds_the_first_choice_text),
        cmocka_unit_test(splice_writes_what_jansson_writes),
        cmocka_unit_test(body_with_members),
        cmocka_unit_test(anthropic_stream_error_event_fails),
        cmocka_unit_test(errors_map),
        cmocka_unit_test(reasoning_models),
        cmocka_unit_test(refusals_are_client_errors),
        cmocka_unit_test(unsupported_fields_refused_or_dropped),
        cmocka_unit_test(malformed_answers_never_crash),
        cmocka_unit_test(malformed_stream_events_never_crash),
        cmocka_unit_test(usage_counts_are_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
