/*
 * core — the gateway object and the request pipeline (DESIGN.md "The request pipeline").
 *
 * Invariants:
 * - struct gw is immutable while serving (config, catalog); workers only read it.
 * - Each struct gw_worker belongs to one worker thread: its store connection, its curl multi,
 *   its list of calls in flight. No locks on the request path.
 * - Every request that reaches the provider has a durable usage row first (state "reserved"),
 *   settled after; a call's usage row is settled exactly once.
 */
#ifndef GW_CORE_GW_INT_H
#define GW_CORE_GW_INT_H

#include <event2/http.h>

#include "core/catalog.h"
#include "core/config.h"
#include "http/server.h"
#include "policy/limits.h"
#include "route/route.h"
#include "store/store.h"

struct gw_call;

struct gw {
    struct gw_config cfg;
    struct gw_catalog *catalog;
    struct gw_router *router;
    struct gw_http_server *server;
    int workers;
    /* Provider health, shared by every worker (atomics, no lock): a circuit breaker per
     * provider (same order as cfg.providers) and a Retry-After cool-down per catalog model. */
    struct gw_breaker breakers[GW_NPROVIDERS];
    struct gw_cooldown *cooldowns; /* gw_catalog_count entries */
    const struct gw_model *router_model; /* cfg.router.model in the catalog; NULL when off */
    struct gw_limits *limits;            /* admission against every key's and org's limits */
};

struct gw_worker {
    struct gw *gw;
    struct gw_http_worker *hw;
    struct gw_upstream *upstream;
    struct gw_store *store;
    struct gw_call *calls; /* in flight, doubly linked */
    int inflight;
};

/* Entry points from endpoints.c into the pipeline. dialect: */
enum gw_dialect { GW_DIALECT_OPENAI = 0, GW_DIALECT_SIMPLE = 1 };

/* Run a chat request (takes over req: the pipeline replies). */
void gw_pipeline_chat(struct gw_worker *w, struct evhttp_request *req, const char *request_id,
                      enum gw_dialect dialect);
/* End every call in flight now (shutdown grace period over). */
void gw_pipeline_abort_all(struct gw_worker *w);

/* Authenticate req from X-API-Key / Authorization: Bearer. On failure replies itself and
 * returns non-zero. */
int gw_authenticate(struct gw_worker *w, struct evhttp_request *req, const char *request_id,
                    struct gw_key_rec *key);
/* Is the provider configured (has a credential)? */
int gw_provider_configured(const struct gw *gw, const char *provider);
/* The breaker of a provider (NULL for an unknown name). */
struct gw_breaker *gw_breaker_of(struct gw *gw, const char *provider);
/* The state of every provider's breaker as a new JSON object {provider: {state,
 * consecutive_failures, retry_in_ms, opened, configured}} (GET /admin/v1/health). */
json_t *gw_health_breakers(struct gw *gw);

/* The HTTP application callbacks (endpoints.c). */
extern const struct gw_http_app gw_app;

#endif
