/*
 * core/catalog — load and validate the model catalog, look models up, and price usage
 * (see catalog.h).
 *
 * Invariants:
 * - Validation is strict: unknown fields, wrong types, unknown providers, duplicate ids or
 *   aliases (an alias may not equal any id or other alias), bad or negative prices are errors
 *   naming the model and the field. A loaded catalog is immutable and safe to share.
 * - Money never touches floating point. Prices are int64 micro-USD per million tokens (search
 *   fees: per 1000 requests), at most GW_PRICE_MAX. Costs sum exact products in __int128 and
 *   divide once by 1e6, rounding half up, saturating at INT64_MAX. With token counts < 2^63 and
 *   prices < 2^40 every term is < 2^113, so the sum cannot overflow.
 * - Error details do not repeat the file path: callers prefix it.
 * - Ids, wire ids and aliases match ^[A-Za-z0-9._:-]+$ (they end up in URLs and logs).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/catalog.h"
#include "core/config.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/util.h"

#define GW_PRICE_MAX 1000000000000LL /* 1,000,000 USD per million tokens, in micro-USD */
#define GW_TOKENS_MAX 100000000000LL /* sanity bound on context/output sizes */
#define CATALOG_MAX_BYTES (4 * 1024 * 1024)
#define MODELS_MAX 4096

struct gw_catalog {
    char version[32];
    int n;
    struct gw_model *models;
};

static const char *const providers[] = {"anthropic", "openai", "gemini", "xai", "perplexity",
                                        NULL};

/* ---- validation helpers ---- */

/* Error context: which model (index and id) the message is about. */
struct vctx {
    struct gw_errbuf *eb;
    int index;
    const char *id;
};

static int verr(const struct vctx *v, const char *field, const char *what)
{
    if (v->id != NULL)
        gw_errbuf_set(v->eb, "models[%d] (%.64s): '%s' %s", v->index, v->id, field, what);
    else
        gw_errbuf_set(v->eb, "models[%d]: '%s' %s", v->index, field, what);
    return GW_EINVAL;
}

static int is_ident(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

static int only_keys(const struct vctx *v, const json_t *obj, const char *where,
                     const char *const *allowed)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val) {
        int ok = 0;
        for (int i = 0; allowed[i] != NULL; i++)
            if (strcmp(key, allowed[i]) == 0)
                ok = 1;
        if (!ok) {
            char field[128];
            snprintf(field, sizeof(field), "%s%.80s", where, key);
            return verr(v, field, "is not a known field");
        }
    }
    return 0;
}

/* Copy a required (or optional, when dflt != NULL) identifier/text field into dst. */
static int get_text(const struct vctx *v, const json_t *obj, const char *key, char *dst,
                    size_t dstsz, int ident, const char *dflt)
{
    const json_t *j = json_object_get(obj, key);
    const char *s;
    if (j == NULL && dflt != NULL)
        s = dflt;
    else if (!json_is_string(j))
        return verr(v, key, j == NULL ? "is missing" : "must be a string");
    else
        s = json_string_value(j);
    if (*s == '\0')
        return verr(v, key, "must not be empty");
    if (strlen(s) >= dstsz)
        return verr(v, key, "is too long");
    if (ident && !is_ident(s))
        return verr(v, key, "may only contain A-Z a-z 0-9 . _ : -");
    for (const char *p = s; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return verr(v, key, "contains control characters");
    (void)gw_strlcpy(dst, s, dstsz);
    return 0;
}

static int get_count(const struct vctx *v, const json_t *obj, const char *key, int64_t *out,
                     int required)
{
    const json_t *j = json_object_get(obj, key);
    if (j == NULL) {
        if (required)
            return verr(v, key, "is missing");
        return 0;
    }
    if (!json_is_integer(j))
        return verr(v, key, "must be an integer");
    if (json_integer_value(j) <= 0 || json_integer_value(j) > GW_TOKENS_MAX)
        return verr(v, key, "must be a positive token count");
    *out = (int64_t)json_integer_value(j);
    return 0;
}

static int get_bool(const struct vctx *v, const json_t *obj, const char *key, int *out)
{
    const json_t *j = json_object_get(obj, key);
    if (j == NULL) {
        *out = 0;
        return 0;
    }
    if (!json_is_boolean(j))
        return verr(v, key, "must be true or false");
    *out = json_is_true(j);
    return 0;
}

/* A money amount: a decimal string ("2.50") or a whole integer (3), never a JSON real. */
static int get_money(const struct vctx *v, const json_t *obj, const char *where, const char *key,
                     int64_t *out, int required)
{
    const json_t *j = json_object_get(obj, key);
    char field[64];
    int64_t m;

    snprintf(field, sizeof(field), "%s%s", where, key);
    if (j == NULL) {
        if (required)
            return verr(v, field, "is missing");
        return 0;
    }
    if (json_is_string(j)) {
        if (gw_parse_micros(json_string_value(j), &m) != 0)
            return verr(v, field, "must be a non-negative decimal like \"2.50\"");
    } else if (json_is_integer(j)) {
        json_int_t i = json_integer_value(j);
        if (i < 0)
            return verr(v, field, "must not be negative");
        if (i > GW_PRICE_MAX / 1000000)
            return verr(v, field, "is too large");
        m = (int64_t)i * 1000000;
    } else {
        return verr(v, field, "must be a quoted decimal string or an integer");
    }
    if (m > GW_PRICE_MAX)
        return verr(v, field, "is too large");
    *out = m;
    return 0;
}

static int get_price(const struct vctx *v, const json_t *obj, const char *where,
                     struct gw_price *p)
{
    static const char *const keys[] = {"input",       "output",         "cached_input",
                                       "cache_write", "cache_write_1h", "above_input_tokens",
                                       NULL};
    static const char *const keys_base[] = {"input", "output", "cached_input", "cache_write",
                                            "cache_write_1h", NULL};
    int rc;
    int is_tier = strcmp(where, "price.") != 0;

    if (!json_is_object(obj)) {
        char field[32];
        snprintf(field, sizeof(field), "%.*s", (int)strlen(where) - 1, where);
        return verr(v, field, "must be a mapping");
    }
    if ((rc = only_keys(v, obj, where, is_tier ? keys : keys_base)) != 0)
        return rc;
    p->cached_input = -1;
    p->cache_write = -1;
    p->cache_write_1h = -1;
    if ((rc = get_money(v, obj, where, "input", &p->input, 1)) != 0 ||
        (rc = get_money(v, obj, where, "output", &p->output, 1)) != 0 ||
        (rc = get_money(v, obj, where, "cached_input", &p->cached_input, 0)) != 0 ||
        (rc = get_money(v, obj, where, "cache_write", &p->cache_write, 0)) != 0 ||
        (rc = get_money(v, obj, where, "cache_write_1h", &p->cache_write_1h, 0)) != 0)
        return rc;
    return 0;
}

static int load_model(const json_t *j, int index, struct gw_model *m, struct gw_errbuf *eb)
{
    static const char *const keys[] = {"id",
                                       "provider",
                                       "wire_id",
                                       "name",
                                       "aliases",
                                       "context_window",
                                       "max_output_tokens",
                                       "default_max_tokens",
                                       "reasoning",
                                       "vision",
                                       "tools",
                                       "price",
                                       "tiers",
                                       "search_fee_per_1k",
                                       NULL};
    struct vctx v = {.eb = eb, .index = index};
    const json_t *a;
    int rc, known = 0;

    memset(m, 0, sizeof(*m));
    m->index = index;
    if (!json_is_object(j)) {
        gw_errbuf_set(eb, "models[%d] must be a mapping", index);
        return GW_EINVAL;
    }
    if ((rc = get_text(&v, j, "id", m->id, sizeof(m->id), 1, NULL)) != 0)
        return rc;
    v.id = m->id;
    if ((rc = only_keys(&v, j, "", keys)) != 0 ||
        (rc = get_text(&v, j, "provider", m->provider, sizeof(m->provider), 1, NULL)) != 0 ||
        (rc = get_text(&v, j, "wire_id", m->wire_id, sizeof(m->wire_id), 1, m->id)) != 0 ||
        (rc = get_text(&v, j, "name", m->name, sizeof(m->name), 0, m->id)) != 0)
        return rc;
    for (int i = 0; providers[i] != NULL; i++)
        if (strcmp(m->provider, providers[i]) == 0)
            known = 1;
    if (!known)
        return verr(&v, "provider", "must be anthropic, openai, gemini, xai or perplexity");

    if ((a = json_object_get(j, "aliases")) != NULL) {
        size_t i;
        const json_t *s;
        if (!json_is_array(a))
            return verr(&v, "aliases", "must be a list");
        if (json_array_size(a) > GW_MODEL_MAX_ALIASES)
            return verr(&v, "aliases", "has more than 8 entries");
        json_array_foreach(a, i, s) {
            const char *t = json_string_value(s);
            if (t == NULL || !is_ident(t))
                return verr(&v, "aliases", "entries must be strings of A-Z a-z 0-9 . _ : -");
            if (strlen(t) >= sizeof(m->aliases[0]))
                return verr(&v, "aliases", "entry is too long");
            (void)gw_strlcpy(m->aliases[m->naliases++], t, sizeof(m->aliases[0]));
        }
    }

    if ((rc = get_count(&v, j, "context_window", &m->context_window, 1)) != 0 ||
        (rc = get_count(&v, j, "max_output_tokens", &m->max_output_tokens, 1)) != 0)
        return rc;
    if (m->max_output_tokens > m->context_window)
        return verr(&v, "max_output_tokens", "exceeds context_window");
    m->default_max_tokens = m->max_output_tokens < 4096 ? m->max_output_tokens : 4096;
    if ((rc = get_count(&v, j, "default_max_tokens", &m->default_max_tokens, 0)) != 0)
        return rc;
    if (m->default_max_tokens > m->max_output_tokens)
        return verr(&v, "default_max_tokens", "exceeds max_output_tokens");
    if ((rc = get_bool(&v, j, "reasoning", &m->reasoning)) != 0 ||
        (rc = get_bool(&v, j, "vision", &m->vision)) != 0 ||
        (rc = get_bool(&v, j, "tools", &m->tools)) != 0)
        return rc;
    if (json_object_get(j, "tools") == NULL)
        m->tools = 1;

    if (json_object_get(j, "price") == NULL)
        return verr(&v, "price", "is missing");
    if ((rc = get_price(&v, json_object_get(j, "price"), "price.", &m->price)) != 0)
        return rc;

    if ((a = json_object_get(j, "tiers")) != NULL) {
        const json_t *t;
        json_int_t above;
        if (!json_is_array(a))
            return verr(&v, "tiers", "must be a list");
        if (json_array_size(a) > 1)
            return verr(&v, "tiers", "may hold one tier only");
        if (json_array_size(a) == 1) {
            t = json_array_get(a, 0);
            if ((rc = get_price(&v, t, "tiers[0].", &m->tier_price)) != 0)
                return rc;
            if (!json_is_integer(json_object_get(t, "above_input_tokens")))
                return verr(&v, "tiers[0].above_input_tokens", "must be an integer");
            above = json_integer_value(json_object_get(t, "above_input_tokens"));
            if (above <= 0 || above > GW_TOKENS_MAX)
                return verr(&v, "tiers[0].above_input_tokens", "must be a positive token count");
            m->tier_above = (int64_t)above;
        }
    }

    if ((a = json_object_get(j, "search_fee_per_1k")) != NULL) {
        static const char *const sizes[] = {"low", "medium", "high", NULL};
        if (!json_is_object(a))
            return verr(&v, "search_fee_per_1k", "must be a mapping");
        if ((rc = only_keys(&v, a, "search_fee_per_1k.", sizes)) != 0 ||
            (rc = get_money(&v, a, "search_fee_per_1k.", "low", &m->search_fee_low, 1)) != 0 ||
            (rc = get_money(&v, a, "search_fee_per_1k.", "medium", &m->search_fee_medium, 1)) !=
                0 ||
            (rc = get_money(&v, a, "search_fee_per_1k.", "high", &m->search_fee_high, 1)) != 0)
            return rc;
    }
    return 0;
}

static const char *model_name(const struct gw_model *m, int k)
{
    return k < 0 ? m->id : m->aliases[k];
}

/* Every id and alias names exactly one model: compare each name with every name before it. */
static int check_unique(const struct gw_catalog *c, struct gw_errbuf *eb)
{
    for (int i = 0; i < c->n; i++) {
        const struct gw_model *m = &c->models[i];
        for (int k = -1; k < m->naliases; k++) {
            const char *name = model_name(m, k);
            for (int j = 0; j <= i; j++) {
                const struct gw_model *o = &c->models[j];
                int end = j == i ? k : o->naliases;
                for (int l = -1; l < end; l++) {
                    if (strcmp(model_name(o, l), name) != 0)
                        continue;
                    gw_errbuf_set(eb, "models[%d] (%.64s): '%.64s' is already used by "
                                      "models[%d] (%.64s)",
                                  i, m->id, name, j, o->id);
                    return GW_EINVAL;
                }
            }
        }
    }
    return 0;
}

int gw_catalog_from_json(const json_t *root, struct gw_catalog **out, struct gw_errbuf *eb)
{
    struct gw_catalog *c = NULL;
    const json_t *models, *ver;
    const char *key;
    json_t *val;
    size_t n;
    int rc = GW_EINVAL;

    *out = NULL;
    if (!json_is_object(root)) {
        gw_errbuf_set(eb, "the catalog must be a mapping with 'version' and 'models'");
        return GW_EINVAL;
    }
    json_object_foreach((json_t *)root, key, val) {
        if (strcmp(key, "version") != 0 && strcmp(key, "models") != 0) {
            gw_errbuf_set(eb, "unknown top-level key '%.64s'", key);
            return GW_EINVAL;
        }
    }
    ver = json_object_get(root, "version");
    if (!json_is_string(ver) || json_string_length(ver) == 0 ||
        json_string_length(ver) >= sizeof(c->version) || !is_ident(json_string_value(ver))) {
        gw_errbuf_set(eb, "'version' must be a short string like \"2026-11-24\"");
        return GW_EINVAL;
    }
    models = json_object_get(root, "models");
    if (!json_is_array(models) || (n = json_array_size(models)) == 0) {
        gw_errbuf_set(eb, "'models' must be a non-empty list");
        return GW_EINVAL;
    }
    if (n > MODELS_MAX) {
        gw_errbuf_set(eb, "'models' holds more than %d entries", MODELS_MAX);
        return GW_ETOOBIG;
    }
    if ((c = gw_calloc(1, sizeof(*c))) == NULL ||
        (c->models = gw_calloc(n, sizeof(*c->models))) == NULL) {
        rc = GW_ENOMEM;
        goto out;
    }
    (void)gw_strlcpy(c->version, json_string_value(ver), sizeof(c->version));
    for (size_t i = 0; i < n; i++) {
        if ((rc = load_model(json_array_get(models, i), (int)i, &c->models[i], eb)) != 0)
            goto out;
        c->n++;
    }
    if ((rc = check_unique(c, eb)) != 0)
        goto out;
    *out = c;
    c = NULL; /* transferred */
    rc = 0;
out:
    gw_catalog_free(c);
    return rc;
}

static int load_json_file(const char *path, json_t **out, struct gw_errbuf *eb)
{
    char *buf = NULL;
    size_t n = 0;
    int rc = gw_read_file(path, CATALOG_MAX_BYTES, &buf, &n, eb);

    *out = NULL;
    if (rc != 0)
        return rc;
    if ((*out = gw_json_parse(buf, n, eb)) == NULL)
        rc = GW_EPARSE;
    gw_free(buf);
    return rc;
}

int gw_catalog_load(const char *path, struct gw_catalog **out, struct gw_errbuf *eb)
{
    json_t *root = NULL;
    size_t len;
    int rc;

    *out = NULL;
    if (path == NULL)
        return GW_EINVAL;
    len = strlen(path);
    if (len > 5 && strcmp(path + len - 5, ".json") == 0)
        rc = load_json_file(path, &root, eb);
    else
        rc = gw_yaml_load_file(path, &root, eb);
    if (rc != 0)
        return rc;
    rc = gw_catalog_from_json(root, out, eb);
    json_decref(root);
    return rc;
}

void gw_catalog_free(struct gw_catalog *c)
{
    if (c == NULL)
        return;
    gw_free(c->models);
    gw_free(c);
}

const char *gw_catalog_version(const struct gw_catalog *c) { return c ? c->version : ""; }

const struct gw_model *gw_catalog_find(const struct gw_catalog *c, const char *id_or_alias)
{
    if (c == NULL || id_or_alias == NULL)
        return NULL;
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->models[i].id, id_or_alias) == 0)
            return &c->models[i];
    for (int i = 0; i < c->n; i++)
        for (int k = 0; k < c->models[i].naliases; k++)
            if (strcmp(c->models[i].aliases[k], id_or_alias) == 0)
                return &c->models[i];
    return NULL;
}

int gw_catalog_count(const struct gw_catalog *c) { return c ? c->n : 0; }

const struct gw_model *gw_catalog_at(const struct gw_catalog *c, int i)
{
    if (c == NULL || i < 0 || i >= c->n)
        return NULL;
    return &c->models[i];
}

/* ---- cost arithmetic (integers only) ---- */

static int64_t clamp_tokens(int64_t t) { return t < 0 ? 0 : t; }

/* A price as used in arithmetic: -1 means "fallback", anything else is clamped into range so
 * a hand-built model can never overflow the sums. */
static int64_t eff_price(int64_t p, int64_t fallback)
{
    if (p < 0)
        p = fallback;
    if (p < 0)
        return 0;
    return p > GW_PRICE_MAX ? GW_PRICE_MAX : p;
}

static int64_t round_micros(__int128 num)
{
    __int128 r;
    if (num <= 0)
        return 0;
    r = (num + 500000) / 1000000;
    return r > (__int128)INT64_MAX ? INT64_MAX : (int64_t)r;
}

static int64_t search_fee(const struct gw_model *m, const char size[8])
{
    char s[8];
    size_t n = 0;
    while (n < sizeof(s) - 1 && n < 8 && size[n] != '\0') {
        s[n] = size[n];
        n++;
    }
    s[n] = '\0';
    if (gw_strcaseeq(s, "low"))
        return eff_price(m->search_fee_low, 0);
    if (gw_strcaseeq(s, "high"))
        return eff_price(m->search_fee_high, 0);
    return eff_price(m->search_fee_medium, 0);
}

int64_t gw_cost_micros(const struct gw_model *m, const struct gw_usage *u)
{
    const struct gw_price *p;
    int64_t in, cached, write, write_1h, out, uncached, reqs;
    int64_t pin, pcached, pwrite, pwrite_1h, pout;
    __int128 num;

    if (m == NULL || u == NULL)
        return 0;
    in = clamp_tokens(u->input_tokens);
    cached = clamp_tokens(u->cached_input_tokens);
    write = clamp_tokens(u->cache_write_tokens);
    write_1h = clamp_tokens(u->cache_write_1h_tokens);
    if (write_1h > write)
        write_1h = write;
    out = clamp_tokens(u->output_tokens);
    reqs = clamp_tokens(u->search_requests);
    p = (m->tier_above > 0 && in > m->tier_above) ? &m->tier_price : &m->price;
    pin = eff_price(p->input, 0);
    pcached = eff_price(p->cached_input, pin);
    pwrite = eff_price(p->cache_write, pin);
    pwrite_1h = eff_price(p->cache_write_1h, pin * 2);
    pout = eff_price(p->output, 0);

    /* cached and written tokens are part of input_tokens; bill the rest at the input price */
    uncached = in - cached;
    uncached = uncached < 0 ? 0 : uncached - write;
    uncached = uncached < 0 ? 0 : uncached;

    num = (__int128)uncached * pin + (__int128)cached * pcached +
          (__int128)(write - write_1h) * pwrite + (__int128)write_1h * pwrite_1h +
          (__int128)out * pout;
    /* fee per 1000 requests: reqs*fee/1000 micro-USD = reqs*fee*1000 / 1e6, one rounding */
    if (reqs > 0)
        num += (__int128)reqs * search_fee(m, u->search_context_size) * 1000;
    return round_micros(num);
}

int64_t gw_cost_worst_micros(const struct gw_model *m, int64_t input_tokens, int64_t max_output)
{
    int64_t in, out, pin, pout;
    __int128 num;

    if (m == NULL)
        return 0;
    in = clamp_tokens(input_tokens);
    out = clamp_tokens(max_output);
    pin = eff_price(m->price.input, 0);
    pout = eff_price(m->price.output, 0);
    if (m->tier_above > 0 && in > m->tier_above) {
        int64_t tin = eff_price(m->tier_price.input, 0), tout = eff_price(m->tier_price.output, 0);
        pin = tin > pin ? tin : pin;
        pout = tout > pout ? tout : pout;
    }
    num = (__int128)in * pin + (__int128)out * pout;
    /* a search-priced model may run one search at the highest context size */
    num += (__int128)eff_price(m->search_fee_high, 0) * 1000;
    return round_micros(num);
}

/* ---- GET /v1/models ---- */

/* Render micro-USD as a decimal string without floats: at least two fraction digits,
 * more only when needed (3000000 → "3.00", 75000 → "0.075", 1250000 → "1.25"). */
static void render_micros(char *dst, size_t n, int64_t micros)
{
    char frac[8];
    int digits = 6;
    if (micros < 0)
        micros = 0;
    snprintf(frac, sizeof(frac), "%06lld", (long long)(micros % 1000000));
    while (digits > 2 && frac[digits - 1] == '0')
        digits--;
    frac[digits] = '\0';
    snprintf(dst, n, "%lld.%s", (long long)(micros / 1000000), frac);
}

static int set_money(json_t *obj, const char *key, int64_t micros)
{
    char buf[40];
    render_micros(buf, sizeof(buf), micros);
    return json_object_set_new(obj, key, json_string(buf));
}

static json_t *price_json(const struct gw_price *p)
{
    json_t *o = json_object();
    int64_t cached = p->cached_input >= 0 ? p->cached_input : p->input;
    if (o == NULL)
        return NULL;
    if (set_money(o, "input_per_million", p->input) != 0 ||
        set_money(o, "cached_input_per_million", cached) != 0 ||
        set_money(o, "output_per_million", p->output) != 0 ||
        (p->cache_write >= 0 && set_money(o, "cache_write_per_million", p->cache_write) != 0) ||
        (p->cache_write_1h >= 0 &&
         set_money(o, "cache_write_1h_per_million", p->cache_write_1h) != 0)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *model_json(const struct gw_model *m, int available)
{
    json_t *o = json_object(), *aliases = json_array(), *pricing = price_json(&m->price);
    json_t *tier = NULL, *fee = NULL;
    int bad = o == NULL || aliases == NULL || pricing == NULL;

    for (int k = 0; !bad && k < m->naliases; k++)
        bad = json_array_append_new(aliases, json_string(m->aliases[k])) != 0;
    if (!bad && m->tier_above > 0) {
        tier = price_json(&m->tier_price);
        bad = tier == NULL ||
              json_object_set_new(tier, "above_input_tokens", json_integer(m->tier_above)) != 0 ||
              json_object_set(pricing, "tier", tier) != 0;
    }
    if (!bad && (m->search_fee_low > 0 || m->search_fee_medium > 0 || m->search_fee_high > 0)) {
        fee = json_object();
        bad = fee == NULL || set_money(fee, "low", m->search_fee_low) != 0 ||
              set_money(fee, "medium", m->search_fee_medium) != 0 ||
              set_money(fee, "high", m->search_fee_high) != 0 ||
              json_object_set(pricing, "search_fee_per_thousand_requests", fee) != 0;
    }
    /* set_new steals its (freshly made) value even on failure; the containers built above are
     * attached with json_object_set and released below either way */
    bad = bad || json_object_set_new(o, "id", json_string(m->id)) != 0 ||
          json_object_set_new(o, "object", json_string("model")) != 0 ||
          json_object_set_new(o, "created", json_integer(0)) != 0 ||
          json_object_set_new(o, "owned_by", json_string(m->provider)) != 0 ||
          json_object_set_new(o, "provider", json_string(m->provider)) != 0 ||
          json_object_set_new(o, "name", json_string(m->name)) != 0 ||
          json_object_set(o, "aliases", aliases) != 0 ||
          json_object_set_new(o, "context_window", json_integer(m->context_window)) != 0 ||
          json_object_set_new(o, "max_output_tokens", json_integer(m->max_output_tokens)) != 0 ||
          json_object_set_new(o, "available", json_boolean(available)) != 0 ||
          json_object_set(o, "pricing", pricing) != 0;
    json_decref(aliases);
    json_decref(pricing);
    json_decref(tier);
    json_decref(fee);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *gw_catalog_to_json(const struct gw_catalog *c, int (*is_configured)(void *, const char *),
                           void *arg)
{
    json_t *list = json_object(), *data = json_array();

    if (list == NULL || data == NULL || c == NULL) {
        json_decref(list);
        json_decref(data);
        return NULL;
    }
    for (int i = 0; i < c->n; i++) {
        const struct gw_model *m = &c->models[i];
        int avail = is_configured != NULL && is_configured(arg, m->provider) != 0;
        if (json_array_append_new(data, model_json(m, avail)) != 0) {
            json_decref(data);
            json_decref(list);
            return NULL;
        }
    }
    if (json_object_set_new(list, "object", json_string("list")) != 0 ||
        json_object_set_new(list, "data", data) != 0) {
        json_decref(list);
        return NULL;
    }
    return list;
}
