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

/* What routing looks at. */
struct gw_route_req {
    const json_t *body;         /* canonical request (validated), borrowed */
    int64_t input_tokens;       /* estimate of the prompt size */
    int64_t max_output_tokens;  /* requested output (0 = unknown) */
    /* May the caller use this model (policy, configured provider)? */
    int (*allowed)(void *arg, const struct gw_model *m);
    void *arg;
};

struct gw_route_result {
    const struct gw_model *model;
    char rule[48];     /* the rule's name, or "default" */
    char reason[200];  /* human-readable, e.g. "a coding or debugging task (matched 'stack trace')" */
};

/* Pick a model. Returns 0, or GW_ENOTFOUND when no eligible model exists. */
GW_NODISCARD int gw_route_heuristic(const struct gw_router *r, const struct gw_route_req *q,
                                    struct gw_route_result *out);

#endif
