/* tests/fuzz/common/canon — the validated request through the pipeline's pure parts. */
#include "canon.h"

#include <string.h>

#include "conv/history.h"
#include "core/catalog.h"
#include "fz.h"
#include "providers/provider.h"
#include "route/route.h"
#include "util/mem.h"

static struct gw_catalog *catalog;
static struct gw_router *router;

void fz_canon_setup(void)
{
    struct gw_errbuf eb = {{0}};
    char path[4096];
    if (catalog != NULL)
        return;
    catalog = fz_catalog();
    fz_repo_path("catalog/routing.yaml", path, sizeof(path));
    if (gw_router_load(path, catalog, &router, &eb) != 0)
        fz_fail("cannot load %s: %s", path, eb.msg);
}

static void memory(const json_t *canon)
{
    const json_t *msgs = json_object_get(canon, "messages");
    char title[128];

    if (gw_tokens_messages(msgs) < 1)
        fz_fail("a request of no tokens");
    gw_history_title(msgs, title, sizeof(title));
    if (strlen(title) >= sizeof(title))
        fz_fail("the title overflows");
    json_t *answer = json_pack("{s:s,s:s}", "role", "assistant", "content", "Noted.");
    json_t *turns = gw_history_new_turns(msgs, answer);
    if (turns == NULL)
        fz_fail("no turns to store");
    /* the turns as a stored conversation under a later request */
    size_t n = json_array_size(turns);
    (void)gw_history_plan(gw_tokens_messages(msgs), "", turns, 2000, 2);
    size_t from = gw_history_fit(gw_tokens_messages(msgs), "an old summary", turns, 0, 4000);
    json_t *later = json_deep_copy(canon);
    if (gw_history_apply(later, "an old summary", turns, from > n ? n : from) != 0)
        fz_fail("history not applied");
    json_decref(later);
    json_t *sum = gw_history_summary_request("an old summary", turns, n, 256, 300);
    if (sum == NULL)
        fz_fail("no summarizer request");
    json_decref(sum);
    json_decref(turns);
    json_decref(answer);
}

static int allow_all(void *arg, const struct gw_model *m)
{
    (void)arg;
    (void)m;
    return 1;
}

static void route(const json_t *canon, const struct gw_chat_opts *o)
{
    struct gw_route_req q = {.body = canon,
                             .input_tokens = gw_tokens_messages(json_object_get(canon, "messages")),
                             .max_output_tokens = o->max_tokens,
                             .allowed = allow_all};
    struct gw_route_result res;
    const struct gw_model *alts[GW_ROUTE_MAX_TARGETS], *cands[32];

    gw_route_req_init(&q);
    if (gw_route_heuristic(router, &q, &res) == 0) {
        (void)gw_route_fallbacks(router, &q, res.model, &res, alts, GW_ROUTE_MAX_TARGETS);
        (void)gw_route_budget(router, &q, 90, 1000, "daily", &res);
    }
    int n = gw_router_candidates(router, &q, cands, 32);
    if (n > 0) {
        json_t *prompt = gw_router_prompt(router, &q, cands, n, 500);
        if (prompt == NULL)
            fz_fail("no router prompt");
        json_decref(prompt);
    }
}

static void build(const json_t *canon)
{
    static const char *const models[] = {"gpt-4o-mini", "o3",           "claude-sonnet-4-6",
                                         "gemini-2.5-flash", "grok-3-mini", "sonar-pro"};
    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
        const struct gw_model *m = gw_catalog_find(catalog, models[i]);
        if (m == NULL)
            continue;
        const struct gw_provider_ops *ops = gw_provider_find(m->provider);
        struct gw_provider_cfg cfg = {.base_url = "https://upstream.example",
                                      .api_key = "sk-fuzz",
                                      .default_max_tokens = m->default_max_tokens,
                                      .reasoning = m->reasoning};
        json_t *req = json_deep_copy(canon);
        json_object_set_new(req, "model", json_string(m->wire_id));
        for (int stream = 0; stream < 2; stream++) {
            struct gw_upstream_req up;
            struct gw_errbuf eb = {{0}};
            memset(&up, 0, sizeof(up));
            int rc = ops->build(&cfg, req, m->wire_id, stream, &up, &eb);
            if (rc == 0 && (up.url == NULL || up.body == NULL || up.body_len == 0))
                fz_fail("%s: built a request without a URL or body", ops->name);
            json_t *sent = rc == 0 ? json_loadb(up.body, up.body_len, 0, NULL) : NULL;
            if (rc == 0 && !json_is_object(sent))
                fz_fail("%s: built a body that is not a JSON object", ops->name);
            json_decref(sent);
            if (rc == GW_EINVAL && eb.msg[0] == '\0')
                fz_fail("%s: refused the request without a reason", ops->name);
            if (rc != 0 && rc != GW_EINVAL)
                fz_fail("%s: build failed: %s", ops->name, gw_strerror(rc));
            gw_upstream_req_cleanup(&up);
        }
        json_decref(req);
    }
}

void fz_canon_run(const json_t *canon, const struct gw_chat_opts *o)
{
    memory(canon);
    route(canon, o);
    build(canon);
}
