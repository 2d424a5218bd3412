/*
 * core/router_call — the LLM router: a small model is asked, with a bounded prompt and a short
 * timeout, which of the candidate models should serve an auto-routed request. The call itself
 * is a side call (core/side_call.c: its own usage row "<request id>.router", charged to the
 * same key).
 *
 * Invariants:
 * - The router's answer only ever selects one of the candidates it was shown (which are
 *   already limited to what the caller may use); anything else is ignored.
 * - Any failure (no answer in time, an error status, garbage) ends in the heuristic's choice,
 *   never in an error for the client.
 * - gw_call_routed() runs exactly once per started router call, from the event loop, unless
 *   the call is cancelled first.
 */
#include <stdio.h>
#include <string.h>

#include "core/call.h"
#include "util/json.h"
#include "util/mem.h"

#define ROUTER_MAX_OUTPUT 64

struct router_ask {
    const struct gw_model *cands[GW_ROUTE_MAX_TARGETS];
    int n;
    const struct gw_model *pick;
};

static int router_accept(void *arg, const json_t *answer, const char **why)
{
    struct router_ask *ra = arg;
    json_t *msg = json_object_get(json_array_get(json_object_get(answer, "choices"), 0),
                                  "message");
    ra->pick = gw_router_pick(gw_json_str(msg, "content"), ra->cands, ra->n);
    if (ra->pick == NULL)
        *why = "its answer named no allowed candidate";
    return ra->pick != NULL;
}

static void router_done(struct gw_call *c, void *arg, int ok, int sent, const char *why)
{
    struct router_ask *ra = arg;
    char note[160];

    if (ok) {
        gw_call_routed(c, ra->pick, NULL);
        return;
    }
    if (sent)
        snprintf(note, sizeof(note), "%s failed (%s), heuristic used",
                 c->w->gw->router_model->id, why);
    else
        snprintf(note, sizeof(note), "the router %s", why);
    gw_call_routed(c, NULL, note);
}

static const struct gw_side_ops router_ops = {
    .kind = "router",
    .route_method = "auto_router",
    .accept = router_accept,
    .done = router_done,
    .free = gw_free,
};

int gw_router_call_start(struct gw_call *c, const struct gw_model *const *cands, int n)
{
    struct gw *gw = c->w->gw;
    struct router_ask *ra = gw_calloc(1, sizeof(*ra));
    json_t *req = NULL;
    int err = GW_ENOMEM;

    if (ra == NULL)
        return GW_ENOMEM;
    ra->n = n < GW_ROUTE_MAX_TARGETS ? n : GW_ROUTE_MAX_TARGETS;
    memcpy(ra->cands, cands, (size_t)ra->n * sizeof(cands[0]));
    req = gw_router_prompt(gw->router, &c->rq, ra->cands, ra->n, gw->cfg.router.max_prompt_chars);
    if (req != NULL)
        err = gw_side_call_start(c, &router_ops, ra, gw->router_model, req, ROUTER_MAX_OUTPUT,
                                 gw->cfg.router.timeout_ms);
    json_decref(req);
    if (err != 0)
        gw_free(ra);
    return err;
}
