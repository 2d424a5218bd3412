/*
 * core/catalog — the model catalog (data, loaded from catalog/models.yaml) and cost arithmetic.
 *
 * Prices are integers: micro-dollars (1e-6 USD) per million tokens, parsed from the decimal
 * strings in the data file without floating point. Costs are integer micro-dollars, computed
 * with one rounding (half up) per request, so the same usage and catalog version always give
 * the same cost. A loaded catalog is immutable and may be shared by every worker thread.
 */
#ifndef GW_CORE_CATALOG_H
#define GW_CORE_CATALOG_H

#include <jansson.h>
#include <stdint.h>

#include "providers/provider.h"
#include "util/err.h"

#define GW_MODEL_MAX_ALIASES 8

struct gw_price {
    int64_t input;       /* per million input tokens, micro-USD */
    int64_t output;      /* per million output tokens (reasoning included) */
    int64_t cached_input; /* per million cache-read tokens; -1 = same as input */
    int64_t cache_write; /* per million cache-write tokens (5-minute TTL); -1 = same as input */
    int64_t cache_write_1h; /* per million 1-hour cache-write tokens; -1 = 2 x input */
};

struct gw_model {
    int index;            /* position in the catalog (0..count-1), for per-model tables */
    char id[64];          /* catalog id clients use, e.g. "claude-sonnet-4-6" */
    char provider[16];    /* "anthropic", "openai", "gemini", "xai", "perplexity" */
    char wire_id[96];     /* what the provider's API takes */
    char name[96];        /* display name */
    char aliases[GW_MODEL_MAX_ALIASES][64];
    int naliases;
    int64_t context_window;    /* tokens */
    int64_t max_output_tokens; /* the model's output ceiling */
    int64_t default_max_tokens; /* used when the request gives none (Anthropic requires one) */
    int reasoning;             /* o-series/GPT-5 style: max_completion_tokens, no temperature */
    int vision;                /* accepts images */
    int tools;                 /* accepts tools / function calling (default true) */
    struct gw_price price;
    /* Tiered by prompt length (Gemini 2.5 Pro): when input_tokens > tier_above, tier_price. */
    int64_t tier_above;        /* 0 = no tier */
    struct gw_price tier_price;
    /* Perplexity per-request search fee, micro-USD per 1000 requests, by context size. */
    int64_t search_fee_low, search_fee_medium, search_fee_high;
};

struct gw_catalog;

/* Load and validate a catalog from a YAML or JSON file. Unknown providers, duplicate ids or
 * aliases, missing/negative prices are errors (detail in eb). *out is new. */
GW_NODISCARD int gw_catalog_load(const char *path, struct gw_catalog **out, struct gw_errbuf *eb);
/* Same from an already-parsed tree (borrowed). */
GW_NODISCARD int gw_catalog_from_json(const json_t *root, struct gw_catalog **out,
                                      struct gw_errbuf *eb);
void gw_catalog_free(struct gw_catalog *c);
/* The catalog's version string (from the file), e.g. "2026-11-24". */
const char *gw_catalog_version(const struct gw_catalog *c);
/* Find a model by id or alias (exact, case-sensitive). Borrowed; NULL if unknown. */
const struct gw_model *gw_catalog_find(const struct gw_catalog *c, const char *id_or_alias);
/* Number of models and indexed access (stable order of the file). */
int gw_catalog_count(const struct gw_catalog *c);
const struct gw_model *gw_catalog_at(const struct gw_catalog *c, int i);

/* Cost of usage on model m in micro-USD (rounded half up once). Uses the tier price when
 * the prompt is above the tier threshold; adds the Perplexity search fee per search request
 * by context size (medium when unknown). */
int64_t gw_cost_micros(const struct gw_model *m, const struct gw_usage *u);
/* Worst-case cost for input_tokens in and max_output out (no cache discount). */
int64_t gw_cost_worst_micros(const struct gw_model *m, int64_t input_tokens, int64_t max_output);

/* Build the OpenAI-style list object for GET /v1/models (new reference; only models whose
 * provider is_configured(provider) returns true are marked "available": true). */
json_t *gw_catalog_to_json(const struct gw_catalog *c, int (*is_configured)(void *, const char *),
                           void *arg);

#endif
