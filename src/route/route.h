/*
 * route — choosing the model for a request that did not name one.
 *
 * Heuristic routing reads rules from a data file (catalog/routing.yaml): keyword and feature
 * conditions, each with a preference list of catalog models. The loaded router is immutable and
 * shared by every worker. Every decision comes with the rule that made it and a reason a person
 * can read, for the X-LLMGW-Route-Reason header and the request log.
 *
 * Invariants: a model is only ever chosen if the caller may use it (the eligibility callback:
 * key allowlists and configured providers), it takes the request's images and tools, and the
 * prompt fits its context window.
 */
#ifndef GW_ROUTE_ROUTE_H
#define GW_ROUTE_ROUTE_H

#include <jansson.h>
#include <stdint.h>

#include "core/catalog.h"
#include "util/err.h"

struct gw_router;

/* Load and validate rules (every model must exist in cat, borrowed; it must outlive the
 * router). *out is new. Errors name the rule and field. */
GW_NODISCARD int gw_router_load(const char *path, const struct gw_catalog *cat,
                                struct gw_router **out, struct gw_errbuf *eb);
GW_NODISCARD int gw_router_from_json(const json_t *root, const struct gw_catalog *cat,
                                     struct gw_router **out, struct gw_errbuf *eb);
void gw_router_free(struct gw_router *r);

#define GW_ROUTE_MAX_PARTS 16
#define GW_ROUTE_MAX_TARGETS 16

/* What the rules look at, read once from the request (text borrowed from the body). */
struct gw_route_features {
    const char *parts[GW_ROUTE_MAX_PARTS]; /* text of the last user message */
    int nparts;
    int has_images;
    int has_tools;
};

/* What routing looks at. Set the fields, then call gw_route_req_init. */
struct gw_route_req {
    const json_t *body;         /* canonical request (validated), borrowed */
    int64_t input_tokens;       /* estimate of the prompt size */
    int64_t max_output_tokens;  /* requested output (0 = unknown) */
    /* May the caller use this model now (policy, configured provider, provider health)? */
    int (*allowed)(void *arg, const struct gw_model *m);
    void *arg;
    struct gw_route_features f; /* filled by gw_route_req_init */
};

struct gw_route_result {
    const struct gw_model *model;
    /* The rest of the winning list that is eligible too, in order: the route's fallbacks. */
    const struct gw_model *alts[GW_ROUTE_MAX_TARGETS];
    int nalts;
    char rule[48];     /* the rule's name, or "default" */
    char reason[200];  /* human-readable, e.g. "a coding or debugging task (matched 'stack trace')" */
};

/* Read the request's features (q->body must be set). */
void gw_route_req_init(struct gw_route_req *q);
/* Does m take what the request needs (images, tools, prompt + output within its context) and
 * does q->allowed let it through? */
int gw_route_fits(const struct gw_route_req *q, const struct gw_model *m);

/* Pick a model. Returns 0, or GW_ENOTFOUND when no eligible model exists. */
GW_NODISCARD int gw_route_heuristic(const struct gw_router *r, const struct gw_route_req *q,
                                    struct gw_route_result *out);

/* Budget-aware routing. When the caller has spent at least the routing file's
 * budget.prefer_cheaper_above_percent of a budget window (percent_spent), the cheapest eligible
 * model of the route's list (res->model and res->alts) replaces the choice — or, when even
 * that would not fit in remaining_micros, the cheapest eligible candidate of all rules. The
 * cost compared is the worst case of this request on each model. Returns 1 when it changed
 * res (model, alts by cost, reason), 0 when not. */
int gw_route_budget(const struct gw_router *r, const struct gw_route_req *q, int percent_spent,
                    int64_t remaining_micros, const char *window, struct gw_route_result *res);
/* The share of a budget window (percent) from which gw_route_budget acts; 0 = never. */
int gw_router_budget_percent(const struct gw_router *r);

/* The fallback targets after `first`, in order: the rest of the route's list (res; NULL for an
 * explicit model), then first's own chain from the routing file's `fallbacks`. Each model at
 * most once, never `first`, each fitting q (gw_route_fits). Returns the number written to out
 * (at most max). */
int gw_route_fallbacks(const struct gw_router *r, const struct gw_route_req *q,
                       const struct gw_model *first, const struct gw_route_result *res,
                       const struct gw_model **out, int max);
/* The configured chain of m (borrowed, *n entries; *n = 0 when it has none). */
const struct gw_model *const *gw_router_chain(const struct gw_router *r, const struct gw_model *m,
                                              int *n);

/* ---- the LLM router (llm.c): a small model picks among the candidates ---- */

/* The models the router may pick for q: every model named in the rules and the default list
 * that fits q, each once, in the file's order. Returns the number written (at most max). */
int gw_router_candidates(const struct gw_router *r, const struct gw_route_req *q,
                         const struct gw_model **out, int max);
/* What the rules say a model is good for ("" when no rule names it). Borrowed. */
const char *gw_router_model_use(const struct gw_router *r, const struct gw_model *m);
/* Build the router model's request: a new canonical chat body (without "model") that shows the
 * candidates and at most max_chars bytes of the request's last user message (cut on a UTF-8
 * boundary) and asks for {"model": "<id>"}. NULL on OOM. */
json_t *gw_router_prompt(const struct gw_router *r, const struct gw_route_req *q,
                         const struct gw_model *const *cands, int n, int max_chars);
/* Read the router's answer text: the candidate it names, or NULL when the answer is not one of
 * them (garbage, an unknown or a disallowed model). */
const struct gw_model *gw_router_pick(const char *answer, const struct gw_model *const *cands,
                                      int n);

#endif
