/*
 * core/config — defaults, validated setters and the YAML config file loader (see config.h).
 *
 * Invariants:
 * - All validation lives in gw_config_set(): the file loader flattens the YAML tree into dotted
 *   names ("limits.max_body_bytes") and text values and calls it, so the environment, flags and
 *   file accept exactly the same values.
 * - gw_config_set() changes nothing when it fails; gw_config_load_file() first applies the whole
 *   file to a scratch config, so a bad file leaves c untouched too (OOM aside).
 * - Error details name the setting or key, not the file: callers prefix the path.
 * - API keys are secrets: freed with gw_free_secret(), never copied into error messages.
 * - Every owned string is either NULL or gw_malloc'd; base_url is never NULL after init.
 */
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "util/mem.h"
#include "util/util.h"

#define HOST_MAX 253
#define URL_MAX 2048
#define PATH_MAX_LEN 4096
#define VERSION_MAX 64
#define KEY_MAX 4096

static const struct {
    const char *name;
    const char *base_url;
    const char *api_version;
} provider_defaults[GW_NPROVIDERS] = {
    {"anthropic", "https://api.anthropic.com", "2023-06-01"},
    {"openai", "https://api.openai.com", NULL},
    {"gemini", "https://generativelanguage.googleapis.com", NULL},
    {"xai", "https://api.x.ai", NULL},
    {"perplexity", "https://api.perplexity.ai", NULL},
};

/* Integer settings: name, bounds, and where the value goes. */
enum int_kind { K_INT, K_SIZE, K_BOOL };
static const struct int_setting {
    const char *name;
    int64_t min, max;
    enum int_kind kind;
    size_t off;
} int_settings[] = {
    {"workers", 0, 256, K_INT, offsetof(struct gw_config, workers)},
    {"limits.max_body_bytes", 1024, 1LL << 30, K_SIZE, offsetof(struct gw_config, max_body)},
    {"limits.max_upstream_body_bytes", 1024, 1LL << 30, K_SIZE,
     offsetof(struct gw_config, max_upstream_body)},
    {"limits.max_connections_per_worker", 1, 1000000, K_INT,
     offsetof(struct gw_config, max_conns_per_worker)},
    {"timeouts.request_read_ms", 1, 86400000, K_INT,
     offsetof(struct gw_config, header_timeout_ms)},
    {"timeouts.connect_ms", 1, 86400000, K_INT, offsetof(struct gw_config, timeouts.connect_ms)},
    {"timeouts.first_byte_ms", 1, 86400000, K_INT,
     offsetof(struct gw_config, timeouts.first_byte_ms)},
    {"timeouts.idle_ms", 1, 86400000, K_INT, offsetof(struct gw_config, timeouts.idle_ms)},
    {"timeouts.total_ms", 1, 86400000, K_INT, offsetof(struct gw_config, timeouts.total_ms)},
    {"timeouts.shutdown_grace_ms", 0, 86400000, K_INT,
     offsetof(struct gw_config, shutdown_grace_ms)},
    {"fallback.enabled", 0, 1, K_BOOL, offsetof(struct gw_config, fallback.enabled)},
    {"fallback.max_attempts", 1, 10, K_INT, offsetof(struct gw_config, fallback.max_attempts)},
    {"fallback.backoff_ms", 0, 60000, K_INT, offsetof(struct gw_config, fallback.backoff_ms)},
    {"fallback.backoff_max_ms", 0, 600000, K_INT,
     offsetof(struct gw_config, fallback.backoff_max_ms)},
    {"fallback.max_retry_after_ms", 0, 600000, K_INT,
     offsetof(struct gw_config, fallback.max_retry_after_ms)},
    {"breaker.failure_threshold", 0, 1000, K_INT, offsetof(struct gw_config, breaker.threshold)},
    {"breaker.cooldown_ms", 1, 3600000, K_INT, offsetof(struct gw_config, breaker.cooldown_ms)},
    {"router.enabled", 0, 1, K_BOOL, offsetof(struct gw_config, router.enabled)},
    {"router.timeout_ms", 1, 60000, K_INT, offsetof(struct gw_config, router.timeout_ms)},
    {"router.max_prompt_chars", 100, 100000, K_INT,
     offsetof(struct gw_config, router.max_prompt_chars)},
    {"budgets.daily_reset_hour_utc", 0, 23, K_INT, offsetof(struct gw_config, budgets.reset_hour)},
    {"budgets.monthly_reset_day", 1, 28, K_INT, offsetof(struct gw_config, budgets.reset_day)},
    {"db_pool", 1, 256, K_INT, offsetof(struct gw_config, db_pool)},
    {"db_poll_us", 0, 100000, K_INT, offsetof(struct gw_config, db_poll_us)},
    {"idempotency.retention_days", 1, 3650, K_INT, offsetof(struct gw_config, idem.retention_days)},
    {"idempotency.max_response_bytes", 1024, 1LL << 30, K_SIZE,
     offsetof(struct gw_config, idem.max_response_bytes)},
    {"idempotency.purge_interval_ms", 10, 86400000, K_INT,
     offsetof(struct gw_config, idem.purge_interval_ms)},
    {"conversations.history_percent", 1, 100, K_INT,
     offsetof(struct gw_config, conv.history_percent)},
    {"conversations.keep_recent_turns", 0, 1000, K_INT,
     offsetof(struct gw_config, conv.keep_recent_turns)},
    {"conversations.summary_max_tokens", 16, 8192, K_INT,
     offsetof(struct gw_config, conv.summary_max_tokens)},
    {"conversations.summary_timeout_ms", 1, 600000, K_INT,
     offsetof(struct gw_config, conv.summary_timeout_ms)},
    {"conversations.summary_max_chars", 1000, 1000000, K_INT,
     offsetof(struct gw_config, conv.summary_max_chars)},
    {"conversations.default_context_tokens", 1000, 100000000, K_INT,
     offsetof(struct gw_config, conv.default_context_tokens)},
    {"conversations.max_turns_loaded", 1, 10000, K_INT,
     offsetof(struct gw_config, conv.max_turns_loaded)},
};

/* Tier fields: tiers.<name>.<field>. USD amounts are decimal strings. */
enum tier_kind { T_COUNT, T_USD };
static const struct {
    const char *name;
    enum tier_kind kind;
    size_t off;
} tier_fields[] = {
    {"requests_per_hour", T_COUNT, offsetof(struct gw_tier, limits.rph)},
    {"tokens_per_hour", T_COUNT, offsetof(struct gw_tier, limits.tph)},
    {"max_concurrent", T_COUNT, offsetof(struct gw_tier, limits.max_concurrent)},
    {"daily_usd", T_USD, offsetof(struct gw_tier, limits.daily_usd_micros)},
    {"monthly_usd", T_USD, offsetof(struct gw_tier, limits.monthly_usd_micros)},
    {"max_request_usd", T_USD, offsetof(struct gw_tier, limits.max_request_usd_micros)},
    {"max_output_tokens", T_COUNT, offsetof(struct gw_tier, max_output_tokens)},
};
#define N_INT_SETTINGS (sizeof(int_settings) / sizeof(int_settings[0]))

static const char *const string_settings[] = {"listen",  "db",
                                              "catalog", "routing",
                                              "mode",    "fallback.retry_uncertain", "hardening",
                                              "router.model", "node_id",
                                              "conversations.summary_model", NULL};

/* Per-provider timeouts: providers.<name>.timeouts.<field>. */
static const struct {
    const char *name;
    size_t off;
} provider_timeouts[] = {
    {"connect_ms", offsetof(struct gw_timeouts, connect_ms)},
    {"first_byte_ms", offsetof(struct gw_timeouts, first_byte_ms)},
    {"idle_ms", offsetof(struct gw_timeouts, idle_ms)},
    {"total_ms", offsetof(struct gw_timeouts, total_ms)},
};

int gw_config_init(struct gw_config *c)
{
    memset(c, 0, sizeof(*c));
    c->listen_port = 8080;
    c->workers = 0;
    c->production = 0;
    c->hardening = -1;
    c->max_body = 1u << 20;
    c->max_upstream_body = 16u << 20;
    c->header_timeout_ms = 10000;
    /* LLM answers take minutes; a stalled stream must not */
    c->timeouts.connect_ms = 5000;
    c->timeouts.first_byte_ms = 120000;
    c->timeouts.idle_ms = 120000;
    c->timeouts.total_ms = 600000;
    c->fallback.enabled = 1;
    c->fallback.max_attempts = 3;
    c->fallback.backoff_ms = 100;
    c->fallback.backoff_max_ms = 2000;
    c->fallback.max_retry_after_ms = 5000;
    c->fallback.retry_uncertain = GW_RETRY_UNCERTAIN_NO_TOOLS;
    c->breaker.threshold = 5;
    c->breaker.cooldown_ms = 30000;
    c->router.enabled = 0;
    (void)gw_strlcpy(c->router.model, "claude-haiku-4-5", sizeof(c->router.model));
    c->router.timeout_ms = 2000;
    c->router.max_prompt_chars = 2000;
    /* Tiers: no limits unless configured (limits are the operator's policy); the output cap
     * keeps the worst case of a request without max_tokens from refusing it needlessly. */
    static const struct {
        const char *name;
        int64_t cap;
    } tiers[] = {{"free", 4096}, {"pro", 16384}, {"enterprise", 0}};
    for (size_t i = 0; i < sizeof(tiers) / sizeof(tiers[0]); i++) {
        (void)gw_strlcpy(c->tiers[i].name, tiers[i].name, sizeof(c->tiers[i].name));
        c->tiers[i].max_output_tokens = tiers[i].cap;
    }
    c->ntiers = 3;
    c->budgets.reset_hour = 0;
    c->budgets.reset_day = 1;
    c->db_pool = 8;
    c->db_poll_us = 500;
    c->idem.retention_days = 30;
    c->idem.max_response_bytes = 4u << 20;
    c->idem.purge_interval_ms = 60000;
    (void)gw_strlcpy(c->conv.summary_model, "gpt-4o-mini", sizeof(c->conv.summary_model));
    c->conv.history_percent = 50;
    c->conv.keep_recent_turns = 6;
    c->conv.summary_max_tokens = 512;
    c->conv.summary_timeout_ms = 30000;
    c->conv.summary_max_chars = 60000;
    c->conv.default_context_tokens = 128000;
    c->conv.max_turns_loaded = 200;
    c->shutdown_grace_ms = 10000;
    c->max_conns_per_worker = 4096;
    if ((c->listen_host = gw_strdup("127.0.0.1")) == NULL ||
        (c->db_url = gw_strdup("sqlite:./data/llmgw.db")) == NULL ||
        (c->catalog_path = gw_strdup("catalog/models.yaml")) == NULL ||
        (c->routing_path = gw_strdup("catalog/routing.yaml")) == NULL)
        goto oom;
    for (int i = 0; i < GW_NPROVIDERS; i++) {
        struct gw_provider_conf *p = &c->providers[i];
        (void)gw_strlcpy(p->name, provider_defaults[i].name, sizeof(p->name));
        if ((p->base_url = gw_strdup(provider_defaults[i].base_url)) == NULL)
            goto oom;
        if (provider_defaults[i].api_version != NULL &&
            (p->api_version = gw_strdup(provider_defaults[i].api_version)) == NULL)
            goto oom;
    }
    return 0;
oom:
    gw_config_cleanup(c);
    return GW_ENOMEM;
}

void gw_config_cleanup(struct gw_config *c)
{
    if (c == NULL)
        return;
    gw_free(c->listen_host);
    gw_free(c->db_url);
    gw_free(c->catalog_path);
    gw_free(c->routing_path);
    for (int i = 0; i < GW_NPROVIDERS; i++) {
        gw_free(c->providers[i].base_url);
        gw_free_secret(c->providers[i].api_key);
        gw_free(c->providers[i].api_version);
    }
    memset(c, 0, sizeof(*c));
}

struct gw_provider_conf *gw_config_provider(struct gw_config *c, const char *name)
{
    if (c == NULL || name == NULL)
        return NULL;
    for (int i = 0; i < GW_NPROVIDERS; i++)
        if (strcmp(c->providers[i].name, name) == 0)
            return &c->providers[i];
    return NULL;
}

const struct gw_tier *gw_config_tier(const struct gw_config *c, const char *name)
{
    for (int i = 0; name != NULL && i < c->ntiers; i++)
        if (strcmp(c->tiers[i].name, name) == 0)
            return &c->tiers[i];
    return NULL;
}

struct gw_timeouts gw_config_timeouts(const struct gw_config *c, const struct gw_provider_conf *p)
{
    struct gw_timeouts t = c->timeouts;
    if (p != NULL) {
        if (p->timeouts.connect_ms > 0)
            t.connect_ms = p->timeouts.connect_ms;
        if (p->timeouts.first_byte_ms > 0)
            t.first_byte_ms = p->timeouts.first_byte_ms;
        if (p->timeouts.idle_ms > 0)
            t.idle_ms = p->timeouts.idle_ms;
        if (p->timeouts.total_ms > 0)
            t.total_ms = p->timeouts.total_ms;
    }
    return t;
}

/* Printable ASCII without spaces: what may go into a header or URL verbatim. */
static int is_token_text(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

/* Replace *slot with a copy of the first n bytes of v. */
static int set_str(char **slot, const char *v, size_t n, int secret)
{
    char *d = gw_strndup(v, n);
    if (d == NULL)
        return GW_ENOMEM;
    if (secret)
        gw_free_secret(*slot);
    else
        gw_free(*slot);
    *slot = d;
    return 0;
}

static int parse_port(const char *s, int *port)
{
    int64_t v;
    for (const char *p = s; *p != '\0'; p++)
        if (*p < '0' || *p > '9')
            return GW_EINVAL;
    if (gw_parse_i64(s, &v) != 0 || v < 1 || v > 65535)
        return GW_EINVAL;
    *port = (int)v;
    return 0;
}

static int host_chars_ok(const char *h, size_t n, int v6)
{
    if (n == 0 || n > HOST_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = h[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '-' || (v6 && (ch == ':' || ch == '%' || ch == '_'));
        if (!ok)
            return 0;
    }
    return 1;
}

static int set_listen(struct gw_config *c, const char *v, struct gw_errbuf *eb)
{
    const char *host, *colon;
    size_t hlen;
    int port, v6 = 0;

    if (strcmp(v, "none") == 0) { /* embedded only: no socket is bound */
        c->listen_port = -1;
        return set_str(&c->listen_host, "", 0, 0);
    }
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (close == NULL || close[1] != ':')
            goto bad;
        host = v + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
        v6 = 1;
        if (memchr(host, ':', hlen) == NULL)
            goto bad;
    } else {
        colon = strchr(v, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL)
            goto bad;
        host = v;
        hlen = (size_t)(colon - v);
    }
    if (!host_chars_ok(host, hlen, v6) || parse_port(colon + 1, &port) != 0)
        goto bad;
    if (set_str(&c->listen_host, host, hlen, 0) != 0)
        return GW_ENOMEM;
    c->listen_port = port;
    return 0;
bad:
    gw_errbuf_set(eb, "invalid value for 'listen': want HOST:PORT or [IPV6]:PORT, port 1-65535");
    return GW_EINVAL;
}

static int set_db(struct gw_config *c, const char *v, struct gw_errbuf *eb)
{
    size_t n = strlen(v);
    int ok = (strncmp(v, "sqlite:", 7) == 0 && n > 7) ||
             (strncmp(v, "postgres://", 11) == 0 && n > 11) ||
             (strncmp(v, "postgresql://", 13) == 0 && n > 13);
    if (!ok || n > PATH_MAX_LEN) {
        gw_errbuf_set(eb, "invalid value for 'db': want sqlite:PATH or postgres://...");
        return GW_EINVAL;
    }
    for (const char *p = v; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            gw_errbuf_set(eb, "invalid value for 'db': control characters");
            return GW_EINVAL;
        }
    return set_str(&c->db_url, v, n, 0);
}

static int set_path(char **field, const char *name, const char *v, struct gw_errbuf *eb)
{
    size_t n = strlen(v);
    if (n == 0 || n > PATH_MAX_LEN) {
        gw_errbuf_set(eb, "invalid value for '%s': want a file path", name);
        return GW_EINVAL;
    }
    return set_str(field, v, n, 0);
}

static int set_mode(struct gw_config *c, const char *v, struct gw_errbuf *eb)
{
    if (strcmp(v, "development") == 0)
        c->production = 0;
    else if (strcmp(v, "production") == 0)
        c->production = 1;
    else {
        gw_errbuf_set(eb, "invalid value for 'mode': want development or production");
        return GW_EINVAL;
    }
    return 0;
}

/* Plain decimal digits (no sign, no spaces) within [min, max]. */
static int parse_bounded(const char *v, int64_t min, int64_t max, int64_t *out)
{
    if (v[0] == '\0')
        return GW_EINVAL;
    for (const char *p = v; *p != '\0'; p++)
        if (*p < '0' || *p > '9')
            return GW_EINVAL;
    if (gw_parse_i64(v, out) != 0 || *out < min || *out > max)
        return GW_EINVAL;
    return 0;
}

static int set_retry_uncertain(struct gw_config *c, const char *v, struct gw_errbuf *eb)
{
    static const char *const names[] = {"never", "without_tools", "always"};
    for (int i = 0; i < 3; i++)
        if (strcmp(v, names[i]) == 0) {
            c->fallback.retry_uncertain = i;
            return 0;
        }
    gw_errbuf_set(eb, "invalid value for 'fallback.retry_uncertain': want never, without_tools "
                      "or always");
    return GW_EINVAL;
}

static int set_int(struct gw_config *c, const struct int_setting *s, const char *v,
                   struct gw_errbuf *eb)
{
    int64_t n;

    if (s->kind == K_BOOL) {
        if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
            gw_errbuf_set(eb, "invalid value for '%s': want true or false", s->name);
            return GW_EINVAL;
        }
        *(int *)(void *)((char *)c + s->off) = strcmp(v, "true") == 0;
        return 0;
    }
    if (parse_bounded(v, s->min, s->max, &n) != 0) {
        gw_errbuf_set(eb, "invalid value for '%s': want an integer from %lld to %lld", s->name,
                      (long long)s->min, (long long)s->max);
        return GW_EINVAL;
    }
    if (s->kind == K_INT)
        *(int *)(void *)((char *)c + s->off) = (int)n;
    else
        *(size_t *)(void *)((char *)c + s->off) = (size_t)n;
    return 0;
}

/* tiers.<name>.<field>: a new name adds a tier. */
static int set_tier(struct gw_config *c, const char *name, const char *rest, const char *v,
                    struct gw_errbuf *eb)
{
    const char *dot = strchr(rest, '.');
    char tname[16];
    size_t n = dot ? (size_t)(dot - rest) : 0;

    if (dot == NULL || n == 0 || n >= sizeof(tname)) {
        gw_errbuf_set(eb, "unknown setting '%s' (tiers.<name>.<field>)", name);
        return GW_EINVAL;
    }
    memcpy(tname, rest, n);
    tname[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (!((tname[i] >= 'a' && tname[i] <= 'z') || (tname[i] >= '0' && tname[i] <= '9') ||
              tname[i] == '_' || tname[i] == '-')) {
            gw_errbuf_set(eb, "invalid tier name '%s': a-z, 0-9, '_', '-'", tname);
            return GW_EINVAL;
        }
    for (size_t f = 0; f < sizeof(tier_fields) / sizeof(tier_fields[0]); f++) {
        if (strcmp(dot + 1, tier_fields[f].name) != 0)
            continue;
        int64_t val;
        int bad = tier_fields[f].kind == T_USD ? gw_parse_micros(v, &val) != 0
                                               : parse_bounded(v, 0, INT64_MAX / 4, &val) != 0;
        if (bad) {
            gw_errbuf_set(eb, "invalid value for '%s': want %s", name,
                          tier_fields[f].kind == T_USD ? "a USD amount like 25 or 2.50"
                                                       : "a non-negative integer");
            return GW_EINVAL;
        }
        struct gw_tier *t = (struct gw_tier *)gw_config_tier(c, tname);
        if (t == NULL) {
            if (c->ntiers == GW_MAX_TIERS) {
                gw_errbuf_set(eb, "at most %d tiers", GW_MAX_TIERS);
                return GW_EINVAL;
            }
            t = &c->tiers[c->ntiers++];
            memset(t, 0, sizeof(*t));
            (void)gw_strlcpy(t->name, tname, sizeof(t->name));
        }
        *(int64_t *)(void *)((char *)t + tier_fields[f].off) = val;
        return 0;
    }
    gw_errbuf_set(eb, "unknown setting '%s' (requests_per_hour, tokens_per_hour, "
                      "max_concurrent, daily_usd, monthly_usd, max_request_usd, "
                      "max_output_tokens)", name);
    return GW_EINVAL;
}

static int set_provider(struct gw_config *c, const char *name, const char *rest, const char *v,
                        struct gw_errbuf *eb)
{
    const char *dot = strchr(rest, '.');
    char pname[sizeof(c->providers[0].name)];
    struct gw_provider_conf *p;
    size_t n;

    if (dot == NULL || (size_t)(dot - rest) >= sizeof(pname))
        goto unknown;
    memcpy(pname, rest, (size_t)(dot - rest));
    pname[dot - rest] = '\0';
    if ((p = gw_config_provider(c, pname)) == NULL)
        goto unknown;
    n = strlen(v);
    if (strcmp(dot + 1, "base_url") == 0) {
        size_t scheme = strncmp(v, "https://", 8) == 0 ? 8 : strncmp(v, "http://", 7) == 0 ? 7 : 0;
        /* trailing slashes go: the adapters append "/v1/..." */
        while (n > scheme && v[n - 1] == '/')
            n--;
        if (scheme == 0 || n <= scheme || n > URL_MAX || !is_token_text(v) || v[scheme] == '/') {
            gw_errbuf_set(eb, "invalid value for '%s': want an http:// or https:// URL", name);
            return GW_EINVAL;
        }
        return set_str(&p->base_url, v, n, 0);
    }
    if (strcmp(dot + 1, "api_key") == 0) {
        if (n == 0) { /* an empty key means "not configured" */
            gw_free_secret(p->api_key);
            p->api_key = NULL;
            return 0;
        }
        if (n > KEY_MAX || !is_token_text(v)) {
            gw_errbuf_set(eb, "invalid value for '%s': spaces or control characters", name);
            return GW_EINVAL;
        }
        return set_str(&p->api_key, v, n, 1);
    }
    if (strncmp(dot + 1, "timeouts.", 9) == 0) {
        for (size_t i = 0; i < sizeof(provider_timeouts) / sizeof(provider_timeouts[0]); i++) {
            if (strcmp(dot + 10, provider_timeouts[i].name) != 0)
                continue;
            int64_t val;
            if (parse_bounded(v, 1, 86400000, &val) != 0) {
                gw_errbuf_set(eb, "invalid value for '%s': want an integer from 1 to 86400000",
                              name);
                return GW_EINVAL;
            }
            *(int *)(void *)((char *)&p->timeouts + provider_timeouts[i].off) = (int)val;
            return 0;
        }
        goto unknown;
    }
    if (strcmp(dot + 1, "api_version") == 0) {
        if (n == 0 || n > VERSION_MAX || !is_token_text(v)) {
            gw_errbuf_set(eb, "invalid value for '%s': want a short version string", name);
            return GW_EINVAL;
        }
        return set_str(&p->api_version, v, n, 0);
    }
unknown:
    gw_errbuf_set(eb, "unknown setting '%s'", name);
    return GW_EINVAL;
}

int gw_config_set(struct gw_config *c, const char *name, const char *value, struct gw_errbuf *eb)
{
    if (c == NULL || name == NULL || value == NULL) {
        gw_errbuf_set(eb, "missing setting name or value");
        return GW_EINVAL;
    }
    if (strcmp(name, "listen") == 0)
        return set_listen(c, value, eb);
    if (strcmp(name, "db") == 0)
        return set_db(c, value, eb);
    if (strcmp(name, "catalog") == 0)
        return set_path(&c->catalog_path, name, value, eb);
    if (strcmp(name, "routing") == 0)
        return set_path(&c->routing_path, name, value, eb);
    if (strcmp(name, "mode") == 0)
        return set_mode(c, value, eb);
    if (strcmp(name, "hardening") == 0) {
        if (strcmp(value, "auto") == 0)
            c->hardening = -1;
        else if (strcmp(value, "on") == 0 || strcmp(value, "true") == 0)
            c->hardening = 1;
        else if (strcmp(value, "off") == 0 || strcmp(value, "false") == 0)
            c->hardening = 0;
        else {
            gw_errbuf_set(eb, "invalid value for 'hardening': want auto, on or off");
            return GW_EINVAL;
        }
        return 0;
    }
    if (strcmp(name, "fallback.retry_uncertain") == 0)
        return set_retry_uncertain(c, value, eb);
    if (strcmp(name, "node_id") == 0) {
        if (value[0] == '\0' || !is_token_text(value) || strlen(value) >= sizeof(c->node_id)) {
            gw_errbuf_set(eb, "invalid value for 'node_id': a name of 1 to 63 printable "
                              "characters without spaces");
            return GW_EINVAL;
        }
        (void)gw_strlcpy(c->node_id, value, sizeof(c->node_id));
        return 0;
    }
    if (strcmp(name, "conversations.summary_model") == 0) {
        if ((value[0] != '\0' && !is_token_text(value)) ||
            strlen(value) >= sizeof(c->conv.summary_model)) {
            gw_errbuf_set(eb, "invalid value for 'conversations.summary_model': want a catalog "
                              "model id, or \"\" to truncate long histories instead");
            return GW_EINVAL;
        }
        (void)gw_strlcpy(c->conv.summary_model, value, sizeof(c->conv.summary_model));
        return 0;
    }
    if (strcmp(name, "router.model") == 0) {
        if (value[0] == '\0' || !is_token_text(value) ||
            strlen(value) >= sizeof(c->router.model)) {
            gw_errbuf_set(eb, "invalid value for 'router.model': want a catalog model id");
            return GW_EINVAL;
        }
        (void)gw_strlcpy(c->router.model, value, sizeof(c->router.model));
        return 0;
    }
    for (size_t i = 0; i < N_INT_SETTINGS; i++)
        if (strcmp(name, int_settings[i].name) == 0)
            return set_int(c, &int_settings[i], value, eb);
    if (strncmp(name, "providers.", 10) == 0)
        return set_provider(c, name, name + 10, value, eb);
    if (strncmp(name, "tiers.", 6) == 0)
        return set_tier(c, name, name + 6, value, eb);
    gw_errbuf_set(eb, "unknown setting '%s'", name);
    return GW_EINVAL;
}

/* ---- file loading ---- */

static int is_scalar_setting(const char *name)
{
    for (int i = 0; string_settings[i] != NULL; i++)
        if (strcmp(name, string_settings[i]) == 0)
            return 1;
    for (size_t i = 0; i < N_INT_SETTINGS; i++)
        if (strcmp(name, int_settings[i].name) == 0)
            return 1;
    return 0;
}

/* Sections are mappings: limits, timeouts, providers, providers.<known provider>. */
static int is_section(struct gw_config *c, const char *name)
{
    static const char *const sections[] = {"limits", "timeouts", "providers", "fallback",
                                           "breaker", "router", "tiers", "budgets",
                                           "idempotency", "conversations", NULL};
    for (int i = 0; sections[i] != NULL; i++)
        if (strcmp(name, sections[i]) == 0)
            return 1;
    if (strncmp(name, "tiers.", 6) == 0 && strchr(name + 6, '.') == NULL && name[6] != '\0')
        return 1; /* tiers.<name> */
    if (strncmp(name, "providers.", 10) != 0)
        return 0;
    const char *p = name + 10, *dot = strchr(p, '.');
    char pname[16];
    if (dot == NULL)
        return gw_config_provider(c, p) != NULL;
    /* providers.<name>.timeouts */
    if ((size_t)(dot - p) >= sizeof(pname) || strcmp(dot + 1, "timeouts") != 0)
        return 0;
    memcpy(pname, p, (size_t)(dot - p));
    pname[dot - p] = '\0';
    return gw_config_provider(c, pname) != NULL;
}

static int apply_tree(struct gw_config *c, const char *prefix, json_t *obj, struct gw_errbuf *eb)
{
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v) {
        char name[160];
        char num[32];
        const char *text = NULL;
        int rc;

        if (key[0] == '\0' || strchr(key, '.') != NULL ||
            (size_t)snprintf(name, sizeof(name), "%s%s%s", prefix, prefix[0] ? "." : "", key) >=
                sizeof(name)) {
            gw_errbuf_set(eb, "unknown key '%.100s%s%.100s'", prefix, prefix[0] ? "." : "", key);
            return GW_EINVAL;
        }
        if (is_section(c, name)) {
            if (!json_is_object(v)) {
                gw_errbuf_set(eb, "'%s' must be a mapping", name);
                return GW_EINVAL;
            }
            if ((rc = apply_tree(c, name, v, eb)) != 0)
                return rc;
            continue;
        }
        if (json_is_object(v) || json_is_array(v)) {
            if (is_scalar_setting(name))
                gw_errbuf_set(eb, "'%s' must be a single value", name);
            else
                gw_errbuf_set(eb, "unknown key '%s'", name);
            return GW_EINVAL;
        }
        if (json_is_string(v))
            text = json_string_value(v);
        else if (json_is_integer(v)) {
            snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            text = num;
        } else if (json_is_boolean(v))
            text = json_is_true(v) ? "true" : "false";
        else {
            /* null: only meaningful for api_key ("not configured"); elsewhere a mistake */
            size_t n = strlen(name);
            if (n > 8 && strcmp(name + n - 8, ".api_key") == 0)
                text = "";
            else if (is_scalar_setting(name) || strncmp(name, "providers.", 10) == 0) {
                gw_errbuf_set(eb, "'%s' has no value", name);
                return GW_EINVAL;
            } else {
                gw_errbuf_set(eb, "unknown key '%s'", name);
                return GW_EINVAL;
            }
        }
        if ((rc = gw_config_set(c, name, text, eb)) != 0)
            return rc;
    }
    return 0;
}

static int apply_file(struct gw_config *c, json_t *root, struct gw_errbuf *eb)
{
    if (json_is_null(root)) /* empty file: nothing to change */
        return 0;
    if (!json_is_object(root)) {
        gw_errbuf_set(eb, "the top level must be a mapping");
        return GW_EINVAL;
    }
    return apply_tree(c, "", root, eb);
}

/* Deep-copy the owned strings of src into a zeroed dst. */
int gw_config_copy(struct gw_config *dst, const struct gw_config *src)
{
    *dst = *src;
    dst->listen_host = dst->db_url = dst->catalog_path = dst->routing_path = NULL;
    for (int i = 0; i < GW_NPROVIDERS; i++)
        dst->providers[i].base_url = dst->providers[i].api_key = dst->providers[i].api_version =
            NULL;
    if ((dst->listen_host = gw_strdup(src->listen_host)) == NULL ||
        (dst->db_url = gw_strdup(src->db_url)) == NULL ||
        (dst->catalog_path = gw_strdup(src->catalog_path)) == NULL ||
        (dst->routing_path = gw_strdup(src->routing_path)) == NULL)
        goto oom;
    for (int i = 0; i < GW_NPROVIDERS; i++) {
        const struct gw_provider_conf *s = &src->providers[i];
        struct gw_provider_conf *d = &dst->providers[i];
        if ((d->base_url = gw_strdup(s->base_url)) == NULL ||
            (s->api_key && (d->api_key = gw_strdup(s->api_key)) == NULL) ||
            (s->api_version && (d->api_version = gw_strdup(s->api_version)) == NULL))
            goto oom;
    }
    return 0;
oom:
    gw_config_cleanup(dst);
    return GW_ENOMEM;
}

int gw_config_load_file(struct gw_config *c, const char *path, struct gw_errbuf *eb)
{
    struct gw_errbuf tmp = {{0}};
    struct gw_config scratch;
    json_t *root = NULL;
    int rc;

    if (c == NULL || path == NULL)
        return GW_EINVAL;
    if ((rc = gw_yaml_load_file(path, &root, eb)) != 0)
        return rc;
    /* validate everything on a scratch copy first, so a bad file changes nothing */
    if ((rc = gw_config_copy(&scratch, c)) != 0)
        goto out;
    rc = apply_file(&scratch, root, &tmp);
    gw_config_cleanup(&scratch);
    if (rc == 0)
        rc = apply_file(c, root, &tmp);
    if (rc != 0)
        gw_errbuf_set(eb, "%s", tmp.msg);
out:
    json_decref(root);
    return rc;
}
