/* tests/fuzz/common/prov — provider adapters driven as the pipeline does; see prov.h. */
#include "prov.h"

#include <jansson.h>
#include <string.h>

#include "core/catalog.h"
#include "../../common/replaced.h"
#include "fz.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/sse.h"

/* A model priced like the dearest in the catalog, with every optional price set. */
static const struct gw_model priced = {
    .id = "fuzz-model",
    .price = {.input = 15000000, .output = 75000000, .cached_input = 1500000,
              .cache_write = 18750000, .cache_write_1h = 30000000},
    .tier_above = 200000,
    .tier_price = {.input = 30000000, .output = 150000000, .cached_input = -1,
                   .cache_write = -1, .cache_write_1h = -1},
    .search_fee_low = 5000, .search_fee_medium = 8000, .search_fee_high = 12000,
};

static void check_usage(const struct gw_usage *u, const char *where)
{
    if (u->input_tokens < 0 || u->cached_input_tokens < 0 || u->cache_write_tokens < 0 ||
        u->cache_write_1h_tokens < 0 || u->output_tokens < 0 || u->reasoning_tokens < 0 ||
        u->search_requests < 0)
        fz_fail("%s: a negative token count", where);
    if (memchr(u->search_context_size, '\0', sizeof(u->search_context_size)) == NULL)
        fz_fail("%s: search_context_size is not terminated", where);
    if (gw_cost_micros(&priced, u) < 0)
        fz_fail("%s: a negative cost", where);
}

/* The scanned body rebuilt as the pipeline relays it, minus our own members: "{" kept "}".
 * It must be JSON. Duplicates of members the gateway does not read are relayed as they came,
 * and so are numbers jansson cannot hold (the tree path refuses both, so the two paths are
 * compared only when both took the input): such a body gives JSON null here. */
static json_t *spliced_tree(const char *body, const struct gw_splice *sp, const char *who)
{
    struct gw_buf b;
    json_error_t err;
    int n = 0;
    gw_buf_init(&b, 1 << 26);
    if (sp->open > sp->close || gw_buf_add(&b, "{", 1) != 0 ||
        gw_splice_kept(&b, body, sp, &n) != 0 || gw_buf_add(&b, "}", 1) != 0)
        fz_fail("%s: cannot splice the scanned body", who);
    json_t *v = json_loadb(b.data, b.len, 0, &err);
    if (v == NULL && json_error_code(&err) == json_error_numeric_overflow)
        v = json_null();
    if (v == NULL)
        fz_fail("%s: the relayed body is not JSON: %s (byte %d)", who, err.text, err.position);
    gw_buf_cleanup(&b);
    return v;
}

void fz_response(const struct gw_provider_ops *ops, const uint8_t *data, size_t size)
{
    static const int statuses[] = {400, 401, 403, 404, 429, 500, 503, 529};
    const char *body = (const char *)data;
    struct gw_errbuf eb = {{0}};
    struct gw_usage pu, su;
    json_t *tree = NULL;

    memset(&pu, 0, sizeof(pu));
    int prc = ops->parse(body, size, &tree, &pu, &eb);
    if (prc == 0) {
        if (!json_is_object(tree) || !json_is_array(json_object_get(tree, "choices")))
            fz_fail("%s: parse gave no chat.completion", ops->name);
        if (json_object_get(tree, "usage") != NULL)
            fz_fail("%s: parse left usage in the answer", ops->name);
        check_usage(&pu, ops->name);
        char *s = gw_json_dump(tree);
        if (s == NULL)
            fz_fail("%s: the canonical answer does not serialise", ops->name);
        gw_free(s);
    } else if (tree != NULL) {
        fz_fail("%s: parse failed (%d) but gave a tree", ops->name, prc);
    }
    if (ops->scan != NULL) {
        struct gw_scan sc;
        memset(&su, 0, sizeof(su));
        int src = ops->scan(body, size, &su, &sc, NULL);
        if (src == 0) {
            check_usage(&su, ops->name);
            json_decref(spliced_tree(body, &sc.sp, ops->name));
        }
        if (src == 0 && prc == 0) {
            json_t *got = spliced_tree(body, &sc.sp, ops->name);
            drop_replaced(tree, 0);
            if (!json_equal(tree, got))
                fz_fail("%s: the spliced answer differs from the parsed one", ops->name);
            if (sc.has_id != json_is_string(json_object_get(tree, "id")))
                fz_fail("%s: scan and parse disagree on the id", ops->name);
            if (sc.nchoices != json_array_size(json_object_get(tree, "choices")))
                fz_fail("%s: scan and parse disagree on the choices", ops->name);
            if (memcmp(&pu, &su, sizeof(pu)) != 0)
                fz_fail("%s: scan and parse read different usage (input %lld/%lld, output "
                        "%lld/%lld, searches %lld/%lld)", ops->name, (long long)su.input_tokens,
                        (long long)pu.input_tokens, (long long)su.output_tokens,
                        (long long)pu.output_tokens, (long long)su.search_requests,
                        (long long)pu.search_requests);
            json_decref(got);
        }
    }
    json_decref(tree);
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        struct gw_upstream_error e;
        memset(&e, 0x5a, sizeof(e));
        ops->map_error(statuses[i], body, size, &e);
        if (memchr(e.type, '\0', sizeof(e.type)) == NULL ||
            memchr(e.message, '\0', sizeof(e.message)) == NULL)
            fz_fail("%s: a mapped error's text is not terminated", ops->name);
    }
}

/* ---- streams ---- */

struct runner {
    struct gw_stream st;
    const struct gw_provider_ops *ops;
    json_t *chunks;
    int events;
};

static int collect_chunk(void *arg, json_t *chunk)
{
    struct runner *r = arg;
    if (!json_is_array(json_object_get(chunk, "choices")))
        fz_fail("%s: a chunk without choices", r->ops->name);
    json_t *c = json_deep_copy(chunk);
    drop_replaced(c, 1);
    json_object_set_new(c, "text_chars", json_integer(gw_chunk_text_chars(chunk)));
    return json_array_append_new(r->chunks, c) != 0 ? GW_ENOMEM : 0;
}

static int collect_raw(void *arg, const char *data, const struct gw_scan *scan)
{
    struct runner *r = arg;
    json_t *t = spliced_tree(data, &scan->sp, r->ops->name);
    json_object_set_new(t, "text_chars", json_integer(scan->text_chars));
    return json_array_append_new(r->chunks, t) != 0 ? GW_ENOMEM : 0;
}

static int feed_event(void *arg, const char *event, const char *data, size_t len)
{
    struct runner *r = arg;
    r->events++;
    return r->ops->stream_event(&r->st, event, data, len);
}

/* One run of the stream; the outcome in r (chunks: new). Returns the first error. */
static int run(const struct gw_provider_ops *ops, const uint8_t *data, size_t size, int raw,
               struct runner *r)
{
    struct gw_sse sse;
    int rc = 0;

    memset(r, 0, sizeof(*r));
    r->ops = ops;
    r->chunks = json_array();
    r->st.emit = collect_chunk;
    r->st.emit_raw = raw ? collect_raw : NULL;
    r->st.arg = r;
    if (ops->stream_init != NULL && ops->stream_init(&r->st) != 0)
        fz_fail("%s: stream_init failed", ops->name);
    gw_sse_init(&sse, 1 << 20, feed_event, r);
    rc = gw_sse_feed(&sse, (const char *)data, size);
    gw_sse_cleanup(&sse);
    if (ops->stream_cleanup != NULL)
        ops->stream_cleanup(&r->st);
    if (memchr(r->st.id, '\0', sizeof(r->st.id)) == NULL ||
        memchr(r->st.finish_reason, '\0', sizeof(r->st.finish_reason)) == NULL ||
        memchr(r->st.err.type, '\0', sizeof(r->st.err.type)) == NULL ||
        memchr(r->st.err.message, '\0', sizeof(r->st.err.message)) == NULL)
        fz_fail("%s: the stream's text fields are not terminated", ops->name);
    check_usage(&r->st.usage, ops->name);
    if (r->st.failed != (rc == GW_EUPSTREAM))
        fz_fail("%s: failed=%d but the stream ended with %d", ops->name, r->st.failed, rc);
    return rc;
}

void fz_stream(const struct gw_provider_ops *ops, const uint8_t *data, size_t size)
{
    struct runner tree, raw;
    int trc = run(ops, data, size, 0, &tree);
    if (ops->scan != NULL) {
        int rrc = run(ops, data, size, 1, &raw);
        if (trc == 0 && rrc == 0) {
            if (!json_equal(tree.chunks, raw.chunks))
                fz_fail("%s: the relayed chunks differ from the parsed ones", ops->name);
            if (memcmp(&tree.st.usage, &raw.st.usage, sizeof(tree.st.usage)) != 0)
                fz_fail("%s: the fast path read other usage", ops->name);
            if (strcmp(tree.st.finish_reason, raw.st.finish_reason) != 0 ||
                tree.st.complete != raw.st.complete)
                fz_fail("%s: the fast path saw another end", ops->name);
        }
        json_decref(raw.chunks);
    }
    json_decref(tree.chunks);
}
