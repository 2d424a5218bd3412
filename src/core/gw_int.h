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
#include <stdatomic.h>

#include "core/catalog.h"
#include "core/config.h"
#include "http/server.h"
#include "policy/ledger.h"
#include "store/jobs.h"
#include "route/route.h"
#include "store/store.h"

struct gw_call;
struct gw_idem_purger;
struct gw_metrics;

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
    const struct gw_model *summary_model; /* cfg.conv.summary_model; NULL: truncation only */
    struct gw_ledger ledger;             /* admission against every key's and org's limits */
    struct gw_store_pool *pool;          /* store threads: PostgreSQL's, or SQLite's writer */
    struct gw_store_pool *readers;       /* SQLite: the admin plane's long reads (else NULL) */
    /* idempotency records: deleted as expired, and found in flight at start-up */
    atomic_llong idem_purged;
    atomic_llong idem_last_purge_ms;
    int64_t idem_recovered;
    int64_t started_ms; /* for the uptime */
    struct gw_metrics *metrics; /* GET /admin/v1/metrics */
    struct gw_embed *embed;     /* the in-process front (embed.c; NULL until used) */
};

/* The public handle (include/llmgw.h). */
struct llmgw {
    struct gw gw;
    struct gw_http_app app;
};

struct gw_worker {
    struct gw *gw;
    struct gw_http_worker *hw;       /* NULL: an in-process worker (embed.c) */
    struct event_base *base;         /* the loop the worker runs on */
    void (*idle)(void *arg);         /* in-process: the last call in flight ended */
    void *idle_arg;
    struct gw_upstream *upstream;
    struct gw_store *store;          /* SQLite: the worker's own connection (inline reads) */
    struct gw_store_exec *exec;      /* where the worker's store work runs */
    struct gw_call *calls; /* in flight, doubly linked */
    struct gw_key_share **keys;      /* key records shared by the calls (pipeline.c) */
    struct gw_idem_purger *purger;   /* worker 0: expired idempotency records */
    int inflight;
};

/* Entry points from endpoints.c into the pipeline. dialect: what the client speaks —
 * OpenAI Chat Completions, the simple form, or Anthropic Messages (core/messages). */
enum gw_dialect { GW_DIALECT_OPENAI = 0, GW_DIALECT_SIMPLE = 1, GW_DIALECT_MESSAGES = 2 };
/* The endpoint's name in usage rows, idempotency records and the access log. */
const char *gw_dialect_endpoint(enum gw_dialect d);

/* The key records of a worker's calls, one counted copy per key and version: share returns
 * the copy equal to fresh (made if need be; NULL when out of memory). keys_free at the end. */
struct gw_key_rec;
extern const struct gw_key_rec gw_no_key; /* a call's key before it is known: all empty */
const struct gw_key_rec *gw_worker_key_share(struct gw_worker *w, const struct gw_key_rec *fresh);
void gw_worker_keys_free(struct gw_worker *w);

/* A small authenticated endpoint (models, health, count_tokens): gw_with_key checks the key
 * (the lookup runs as store work), answers 401/503 itself, or calls then with the key; then
 * answers a->req, and a is freed after it returns. If the client left meanwhile, libevent has
 * detached the request and the answer only frees it. */
struct gw_authed {
    struct gw_store_job job;
    struct gw_worker *w;
    struct evhttp_request *req;
    char rid[72];
    unsigned char hash[32];
    int rc;
    struct gw_key_rec key;
    void (*then)(struct gw_authed *a);
    int want_health;             /* the superadmin's: the store's health counts too */
    int health_rc;
    struct gw_store_health health;
};
void gw_with_key(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                 void (*then)(struct gw_authed *a), int want_health);
/* POST /v1/messages/count_tokens (core/count_tokens.c). */
void gw_messages_count(struct gw_worker *w, struct evhttp_request *req, const char *rid);

/* Run a chat request from client (copied: the pipeline answers through it; its gone, drained
 * and arg are the pipeline's). */
struct gw_client;
void gw_pipeline_chat(struct gw_worker *w, const struct gw_client *client,
                      const char *request_id, enum gw_dialect dialect);
/* End every call in flight now (shutdown grace period over). */
void gw_pipeline_abort_all(struct gw_worker *w);

/* Authentication, in three steps around the store lookup (which runs as store work):
 * begin checks the presented key (X-API-Key / Authorization: Bearer) without the store and
 * hashes it — on failure it replies and returns non-zero; lookup finds the key (any thread);
 * end replies 401/503 and returns non-zero unless lookup found a live key. */
int gw_auth_begin(struct gw_worker *w, struct evhttp_request *req, const char *request_id,
                  unsigned char hash[32]);
int gw_auth_lookup(struct gw_store *s, const unsigned char hash[32], struct gw_key_rec *key);
/* What lookup makes of the store's answer rc and the key found: GW_ENOTFOUND for a revoked key
 * or a previous secret past its grace period (a lookup run as a plain read checks this way). */
int gw_auth_check(int rc, const struct gw_key_rec *key);
int gw_auth_end(struct evhttp_request *req, const char *request_id, int rc,
                const struct gw_key_rec *key);
/* The same for any client (core/client.h): the pipeline's. */
struct gw_client;
int gw_auth_client_begin(struct gw_worker *w, struct gw_client *cl, const char *request_id,
                         unsigned char hash[32]);
int gw_auth_client_end(struct gw_client *cl, const char *request_id, int rc,
                       const struct gw_key_rec *key);
/* Create a worker on base (borrowed) with its upstream (borrowed), store connection and store
 * executor; hw NULL for an in-process worker; purge: run the idempotency purger. */
GW_NODISCARD int gw_worker_new(struct gw *gw, struct gw_http_worker *hw, struct event_base *base,
                               struct gw_upstream *up, int purge, struct gw_worker **out);
/* End what is in flight, wait for the store work, free (NULL is a no-op). */
void gw_worker_free(struct gw_worker *w);
/* A new request id ("req_" and random hex) into out. */
void gw_request_id_new(char *out, size_t n);
/* Is the provider configured (has a credential)? */
int gw_provider_configured(const struct gw *gw, const char *provider);
/* "sqlite" or "postgres": the store behind the gateway. */
const char *gw_store_backend_name(const struct gw *gw);
/* The breaker of a provider (NULL for an unknown name). */
struct gw_breaker *gw_breaker_of(struct gw *gw, const char *provider);
/* The state of every provider's breaker as a new JSON object {provider: {state,
 * consecutive_failures, retry_in_ms, opened, configured}} (GET /admin/v1/health). */
json_t *gw_health_breakers(struct gw *gw);

/* embed.c: end llmgw_start's loop (any thread); free the in-process front (joins its thread). */
void gw_embed_stop(struct gw *gw);
void gw_embed_free(struct gw *gw);

/* The HTTP application callbacks (endpoints.c). */
extern const struct gw_http_app gw_app;

#endif
