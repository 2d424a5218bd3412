/*
 * core/config — the gateway's settings. The CLI fills struct gw_config from the YAML file, then
 * environment, then flags (flags win); the core never reads the environment itself.
 */
#ifndef GW_CORE_CONFIG_H
#define GW_CORE_CONFIG_H

#include <jansson.h>
#include <stdint.h>

#include "policy/budget.h"
#include "route/breaker.h"
#include "route/fallback.h"
#include "store/store.h"
#include "util/err.h"

#define GW_NPROVIDERS 5

/* Upstream timeouts in ms. In a provider's settings 0 means "the global value". */
struct gw_timeouts {
    int connect_ms;    /* TCP + TLS connect */
    int first_byte_ms; /* from the start of the call to the first byte of the answer */
    int idle_ms;       /* silence allowed between bytes once the answer started */
    int total_ms;      /* the whole call, streams included */
};

struct gw_provider_conf {
    char name[16];       /* "anthropic", ... */
    char *base_url;      /* owned; never NULL after gw_config_init */
    char *api_key;       /* owned secret; NULL = not configured */
    char *api_version;   /* owned; Anthropic version header; may be NULL */
    struct gw_timeouts timeouts; /* per-provider overrides (0 = global) */
};

#define GW_MAX_TIERS 8

/* A tier: the default limits of the keys on it (a key's own limits override them) and the
 * output cap used for the worst case of requests that give no max_tokens. */
struct gw_tier {
    char name[16];
    struct gw_limit_set limits; /* 0 = no limit */
    int64_t max_output_tokens;  /* 0 = the model's own maximum */
};

/* The LLM router: a small model asked to pick the model for an auto-routed request. */
struct gw_router_conf {
    int enabled;
    char model[64];       /* catalog id; checked against the catalog at start */
    int timeout_ms;       /* the whole router call; on expiry the heuristic decides */
    int max_prompt_chars; /* of the request's last user message shown to the router */
};

/* Conversation memory (core/memory.c): what of a stored conversation goes with a request. */
struct gw_conv_conf {
    char summary_model[64];     /* catalog id of the summarizer; "" = truncate instead */
    int history_percent;        /* history + request may fill this much of the context window */
    int keep_recent_turns;      /* the newest turns are sent word for word, never summarized */
    int summary_max_tokens;     /* the summary's length */
    int summary_timeout_ms;     /* the summarizer's whole call */
    int summary_max_chars;      /* of transcript shown to the summarizer (its newest part) */
    int default_context_tokens; /* the budget's base when the model is not named */
    int max_turns_loaded;       /* at most this many of the newest unsummarized turns are read */
};

/* Idempotency-Key records (core/idem.c). */
struct gw_idem_conf {
    int retention_days;        /* a completed answer is replayable this long */
    size_t max_response_bytes; /* a larger answer is not kept (the key still cannot re-run) */
    int purge_interval_ms;     /* how often expired records are deleted */
};

struct gw_config {
    char *listen_host;   /* owned */
    int listen_port;
    char *db_url;        /* owned, "sqlite:PATH" or "postgres://..." */
    int workers;         /* 0 = number of cores */
    char *catalog_path;  /* owned */
    char *routing_path;  /* owned: heuristic routing rules (catalog/routing.yaml) */
    int production;      /* LLMGW_MODE=production */
    int hardening;       /* llmgw serve's least privilege: -1 auto (on in production), 0, 1 */
    size_t max_body;     /* inbound body limit, bytes */
    size_t max_upstream_body; /* upstream answer limit (non-stream), and of one stream event */
    int header_timeout_ms;    /* absolute deadline to receive request headers+body */
    struct gw_timeouts timeouts; /* upstream defaults (every field > 0) */
    int shutdown_grace_ms;    /* in-flight requests get this long on SIGTERM */
    int max_conns_per_worker;
    struct gw_provider_conf providers[GW_NPROVIDERS];
    struct gw_fallback_conf fallback;
    struct gw_breaker_conf breaker;
    struct gw_router_conf router;
    struct gw_tier tiers[GW_MAX_TIERS];
    int ntiers;
    struct gw_budget_windows budgets; /* when budget days and months start */
    char node_id[64];    /* this gateway node's name in the shared store; "" = host:port */
    int db_pool;         /* PostgreSQL connections per gateway (their own threads) */
    int db_poll_us;      /* SQLite: how long the writer polls for work before it sleeps */
    struct gw_idem_conf idem;
    struct gw_conv_conf conv;
};

/* Fill defaults (127.0.0.1:8080, sqlite:./data/llmgw.db, catalog/models.yaml, providers' public
 * base URLs, 1 MiB body limit, ...). Returns 0 or GW_ENOMEM. */
GW_NODISCARD int gw_config_init(struct gw_config *c);
/* Free owned strings (wiping secrets). */
void gw_config_cleanup(struct gw_config *c);
/* Deep-copy src into dst (dst is overwritten, not cleaned up first). 0 or GW_ENOMEM. */
GW_NODISCARD int gw_config_copy(struct gw_config *dst, const struct gw_config *src);
/* Apply a YAML file over c. Unknown keys are errors (typos must not pass silently). */
GW_NODISCARD int gw_config_load_file(struct gw_config *c, const char *path, struct gw_errbuf *eb);
/* Set one setting by its dotted name (e.g. "listen", "db", "workers",
 * "providers.openai.base_url", "providers.openai.api_key"); used for env and flags. */
GW_NODISCARD int gw_config_set(struct gw_config *c, const char *name, const char *value,
                               struct gw_errbuf *eb);
/* Provider settings by name, or NULL. */
struct gw_provider_conf *gw_config_provider(struct gw_config *c, const char *name);
/* A tier by name, or NULL. */
const struct gw_tier *gw_config_tier(const struct gw_config *c, const char *name);
/* The timeouts that apply to provider p: its own where set, else the global ones. */
struct gw_timeouts gw_config_timeouts(const struct gw_config *c, const struct gw_provider_conf *p);

/* Parse a YAML document (file) into a new jansson tree. Scalars: plain unquoted true/false →
 * bool, integers → integer, other plain scalars and every quoted scalar → string (so prices like
 * 2.50 stay exact decimal strings). Duplicate mapping keys are errors. */
GW_NODISCARD int gw_yaml_load_file(const char *path, json_t **out, struct gw_errbuf *eb);
GW_NODISCARD int gw_yaml_load_string(const char *s, size_t len, json_t **out,
                                     struct gw_errbuf *eb);

#endif
