/*
 * route/heuristic — keyword and feature rules from catalog/routing.yaml; see route.h.
 *
 * Invariants: the rules are validated at load (known condition names, known models, sane
 * numbers) so that routing itself cannot fail on bad data; matching reads only the validated
 * canonical request, in place (no copies), and looks at the last user message only.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "route/route.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/util.h"

#define MAX_RULES 64
#define MAX_PREFER GW_ROUTE_MAX_TARGETS
#define MAX_KEYWORDS 128
#define USE_MAX 256

enum tri { ANY = -1, NO = 0, YES = 1 };

struct rule {
    char name[48];
    char reason[128];
    char *keywords[MAX_KEYWORDS]; /* lower-case, owned */
    int nkeywords;
    enum tri has_images, has_tools;
    int64_t min_input, max_input; /* -1 = no bound */
    const struct gw_model *prefer[MAX_PREFER];
    int nprefer;
};

/* Per catalog model (by gw_model.index): its fallback chain and what the rules use it for. */
struct model_info {
    const struct gw_model *chain[MAX_PREFER];
    int nchain;
    char use[USE_MAX];
};

struct gw_router {
    struct rule rules[MAX_RULES];
    int nrules;
    struct rule dflt; /* the default list, as a rule with no conditions */
    int nmodels;
    struct model_info *info; /* nmodels entries */
    int budget_percent;      /* budget-aware routing from this share of a window; 0 = off */
};

void gw_router_free(struct gw_router *r)
{
    if (r == NULL)
        return;
    for (int i = 0; i < r->nrules; i++)
        for (int k = 0; k < r->rules[i].nkeywords; k++)
            gw_free(r->rules[i].keywords[k]);
    gw_free(r->info);
    gw_free(r);
}

/* Rule text ends up in a response header: printable ASCII only. */
static int printable(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

static int rerr(struct gw_errbuf *eb, const char *rule, const char *msg)
{
    gw_errbuf_set(eb, "routing rule '%s': %s", rule, msg);
    return GW_EINVAL;
}

static int load_prefer(const json_t *list, const struct gw_catalog *cat, struct rule *r,
                       struct gw_errbuf *eb)
{
    size_t i;
    json_t *v;

    if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > MAX_PREFER)
        return rerr(eb, r->name, "'prefer' must be a list of 1 to 16 catalog models");
    json_array_foreach(list, i, v) {
        const struct gw_model *m = json_is_string(v) ? gw_catalog_find(cat, json_string_value(v))
                                                     : NULL;
        if (m == NULL) {
            char msg[160];
            snprintf(msg, sizeof(msg), "'%.64s' is not a catalog model",
                     json_is_string(v) ? json_string_value(v) : "?");
            return rerr(eb, r->name, msg);
        }
        r->prefer[r->nprefer++] = m;
    }
    return 0;
}

static int load_count(const json_t *when, const char *key, int64_t *out, const char *rule,
                      struct gw_errbuf *eb)
{
    json_t *v = json_object_get(when, key);
    *out = -1;
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return rerr(eb, rule, "token bounds must be non-negative integers");
    *out = json_integer_value(v);
    return 0;
}

static int load_tri(const json_t *when, const char *key, enum tri *out, const char *rule,
                    struct gw_errbuf *eb)
{
    json_t *v = json_object_get(when, key);
    *out = ANY;
    if (v == NULL)
        return 0;
    if (!json_is_boolean(v))
        return rerr(eb, rule, "has_images/has_tools must be true or false");
    *out = json_is_true(v) ? YES : NO;
    return 0;
}

static int load_rule(const json_t *j, const struct gw_catalog *cat, struct rule *r,
                     struct gw_errbuf *eb)
{
    static const char *const rule_keys[] = {"name", "when", "prefer", "reason"};
    static const char *const when_keys[] = {"keywords", "has_images", "has_tools",
                                            "min_input_tokens", "max_input_tokens"};
    const char *key;
    json_t *v;
    int rc;

    const char *name = gw_json_str(j, "name");
    if (!json_is_object(j) || name == NULL || name[0] == '\0' || !printable(name) ||
        gw_strlcpy(r->name, name, sizeof(r->name)) != 0)
        return rerr(eb, "?", "needs a short printable 'name'");
    json_object_foreach((json_t *)j, key, v) {
        int ok = 0;
        for (size_t i = 0; i < 4; i++)
            ok |= strcmp(key, rule_keys[i]) == 0;
        if (!ok)
            return rerr(eb, r->name, "unknown field (name, when, prefer, reason)");
    }
    json_t *rs = json_object_get(j, "reason");
    const char *reason = json_is_string(rs) ? json_string_value(rs) : NULL;
    if ((rs != NULL && reason == NULL) || (reason != NULL && !printable(reason)) ||
        gw_strlcpy(r->reason, reason ? reason : r->name, sizeof(r->reason)) != 0)
        return rerr(eb, r->name, "'reason' must be printable text of at most 127 characters");
    json_t *when = json_object_get(j, "when");
    if (when != NULL && !json_is_object(when))
        return rerr(eb, r->name, "'when' must be a mapping");
    json_object_foreach(when, key, v) {
        int ok = 0;
        for (size_t i = 0; i < 5; i++)
            ok |= strcmp(key, when_keys[i]) == 0;
        if (!ok)
            return rerr(eb, r->name, "unknown condition (keywords, has_images, has_tools, "
                                     "min_input_tokens, max_input_tokens)");
    }
    if ((rc = load_tri(when, "has_images", &r->has_images, r->name, eb)) != 0 ||
        (rc = load_tri(when, "has_tools", &r->has_tools, r->name, eb)) != 0 ||
        (rc = load_count(when, "min_input_tokens", &r->min_input, r->name, eb)) != 0 ||
        (rc = load_count(when, "max_input_tokens", &r->max_input, r->name, eb)) != 0)
        return rc;
    json_t *kw = json_object_get(when, "keywords");
    size_t i;
    if (kw != NULL && (!json_is_array(kw) || json_array_size(kw) > MAX_KEYWORDS))
        return rerr(eb, r->name, "'keywords' must be a list of at most 128 words");
    json_array_foreach(kw, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 64 ||
            !printable(json_string_value(v)))
            return rerr(eb, r->name, "keywords must be printable strings of 1 to 64 characters");
        char *k = gw_strdup(json_string_value(v));
        if (k == NULL)
            return GW_ENOMEM;
        for (char *p = k; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        r->keywords[r->nkeywords++] = k;
    }
    return load_prefer(json_object_get(j, "prefer"), cat, r, eb);
}

/* fallbacks: {model: [model, ...]} — each chain of catalog models, without itself or repeats. */
static int load_fallbacks(const json_t *fb, const struct gw_catalog *cat, struct gw_router *r,
                          struct gw_errbuf *eb)
{
    const char *key;
    json_t *list;

    if (fb == NULL)
        return 0;
    if (!json_is_object(fb)) {
        gw_errbuf_set(eb, "fallbacks: expected a mapping of model: [models]");
        return GW_EINVAL;
    }
    json_object_foreach((json_t *)fb, key, list) {
        const struct gw_model *m = gw_catalog_find(cat, key);
        size_t i;
        json_t *v;
        if (m == NULL) {
            gw_errbuf_set(eb, "fallbacks: '%.64s' is not a catalog model", key);
            return GW_EINVAL;
        }
        struct model_info *mi = &r->info[m->index];
        if (mi->nchain > 0) {
            gw_errbuf_set(eb, "fallbacks: '%.64s' has two chains (an id and an alias?)", key);
            return GW_EINVAL;
        }
        if (!json_is_array(list) || json_array_size(list) > MAX_PREFER) {
            gw_errbuf_set(eb, "fallbacks: '%.64s' must list at most %d models", key, MAX_PREFER);
            return GW_EINVAL;
        }
        json_array_foreach(list, i, v) {
            const struct gw_model *t =
                json_is_string(v) ? gw_catalog_find(cat, json_string_value(v)) : NULL;
            if (t == NULL) {
                gw_errbuf_set(eb, "fallbacks: '%.64s': '%.64s' is not a catalog model", key,
                              json_is_string(v) ? json_string_value(v) : "?");
                return GW_EINVAL;
            }
            int dup = t == m;
            for (int k = 0; k < mi->nchain; k++)
                dup |= mi->chain[k] == t;
            if (dup) {
                gw_errbuf_set(eb, "fallbacks: '%.64s' lists '%.64s' twice or itself", key,
                              t->id);
                return GW_EINVAL;
            }
            mi->chain[mi->nchain++] = t;
        }
    }
    return 0;
}

/* budget: {prefer_cheaper_above_percent: N} (default 80; 0 turns it off) */
static int load_budget(const json_t *b, struct gw_router *r, struct gw_errbuf *eb)
{
    const char *key;
    json_t *v;

    r->budget_percent = 80;
    if (b == NULL)
        return 0;
    if (!json_is_object(b))
        goto bad;
    json_object_foreach((json_t *)b, key, v) {
        if (strcmp(key, "prefer_cheaper_above_percent") != 0 || !json_is_integer(v) ||
            json_integer_value(v) < 0 || json_integer_value(v) > 100)
            goto bad;
        r->budget_percent = (int)json_integer_value(v);
    }
    return 0;
bad:
    gw_errbuf_set(eb, "budget: expected {prefer_cheaper_above_percent: 0..100}");
    return GW_EINVAL;
}

/* What each model is used for, from the reasons of the rules that list it (for the router). */
static void describe_models(struct gw_router *r)
{
    for (int i = 0; i <= r->nrules; i++) {
        const struct rule *ru = i < r->nrules ? &r->rules[i] : &r->dflt;
        const char *what = i < r->nrules ? ru->reason : "general requests";
        for (int k = 0; k < ru->nprefer; k++) {
            char *use = r->info[ru->prefer[k]->index].use;
            size_t n = strlen(use);
            if (strstr(use, what) != NULL)
                continue;
            snprintf(use + n, USE_MAX - n, "%s%s", n > 0 ? "; " : "", what);
        }
    }
}

int gw_router_from_json(const json_t *root, const struct gw_catalog *cat, struct gw_router **out,
                        struct gw_errbuf *eb)
{
    static const char *const top_keys[] = {"version", "default", "rules", "fallbacks", "budget"};
    struct gw_router *r = gw_calloc(1, sizeof(*r));
    const char *key;
    json_t *val;
    int rc;

    *out = NULL;
    if (r == NULL)
        return GW_ENOMEM;
    json_t *rules = json_object_get(root, "rules");
    if (!json_is_object(root) || (rules != NULL && !json_is_array(rules))) {
        gw_router_free(r);
        gw_errbuf_set(eb, "routing rules: expected {version, default: [...], rules: [...]}");
        return GW_EINVAL;
    }
    json_object_foreach((json_t *)root, key, val) {
        int ok = 0;
        for (size_t i = 0; i < sizeof(top_keys) / sizeof(top_keys[0]); i++)
            ok |= strcmp(key, top_keys[i]) == 0;
        if (!ok) {
            gw_errbuf_set(eb, "routing rules: unknown key '%.64s' (version, default, rules, "
                              "fallbacks, budget)", key);
            gw_router_free(r);
            return GW_EINVAL;
        }
    }
    r->nmodels = gw_catalog_count(cat);
    r->info = gw_calloc((size_t)(r->nmodels > 0 ? r->nmodels : 1), sizeof(*r->info));
    if (r->info == NULL) {
        gw_router_free(r);
        return GW_ENOMEM;
    }
    if (json_array_size(rules) > MAX_RULES) {
        gw_router_free(r);
        gw_errbuf_set(eb, "routing rules: at most %d rules", MAX_RULES);
        return GW_EINVAL;
    }
    size_t i;
    json_t *j;
    json_array_foreach(rules, i, j) {
        struct rule *ru = &r->rules[r->nrules++];
        if ((rc = load_rule(j, cat, ru, eb)) != 0) {
            gw_router_free(r);
            return rc;
        }
        for (int k = 0; k < r->nrules - 1; k++)
            if (strcmp(r->rules[k].name, ru->name) == 0) {
                rc = rerr(eb, ru->name, "the name is used twice");
                gw_router_free(r);
                return rc;
            }
    }
    gw_strlcpy(r->dflt.name, "default", sizeof(r->dflt.name));
    gw_strlcpy(r->dflt.reason, "no rule matched; the default choice", sizeof(r->dflt.reason));
    r->dflt.has_images = r->dflt.has_tools = ANY;
    r->dflt.min_input = r->dflt.max_input = -1;
    if ((rc = load_prefer(json_object_get(root, "default"), cat, &r->dflt, eb)) != 0 ||
        (rc = load_fallbacks(json_object_get(root, "fallbacks"), cat, r, eb)) != 0 ||
        (rc = load_budget(json_object_get(root, "budget"), r, eb)) != 0) {
        gw_router_free(r);
        return rc;
    }
    describe_models(r);
    *out = r;
    return 0;
}

int gw_router_load(const char *path, const struct gw_catalog *cat, struct gw_router **out,
                   struct gw_errbuf *eb)
{
    json_t *root = NULL;
    int rc = gw_yaml_load_file(path, &root, eb);
    if (rc != 0)
        return rc;
    rc = gw_router_from_json(root, cat, out, eb);
    json_decref(root);
    return rc;
}

/* ---- matching ---- */

void gw_route_req_init(struct gw_route_req *q)
{
    struct gw_route_features *f = &q->f;
    json_t *msgs = json_object_get(q->body, "messages");
    size_t i, k;
    json_t *m, *part;

    memset(f, 0, sizeof(*f));
    f->has_tools = json_array_size(json_object_get(q->body, "tools")) > 0;
    json_array_foreach(msgs, i, m) {
        json_array_foreach(json_object_get(m, "content"), k, part) {
            const char *type = gw_json_str(part, "type");
            if (type != NULL && strcmp(type, "image_url") == 0)
                f->has_images = 1;
        }
    }
    for (i = json_array_size(msgs); i-- > 0;) {
        m = json_array_get(msgs, i);
        const char *role = gw_json_str(m, "role");
        if (role == NULL || strcmp(role, "user") != 0)
            continue;
        json_t *content = json_object_get(m, "content");
        if (json_is_string(content))
            f->parts[f->nparts++] = json_string_value(content);
        json_array_foreach(content, k, part) {
            const char *t = gw_json_str(part, "text");
            if (t != NULL && f->nparts < GW_ROUTE_MAX_PARTS)
                f->parts[f->nparts++] = t;
        }
        break;
    }
}

static int is_word(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* The first keyword found as a whole word or phrase (case-insensitive), or NULL. */
static const char *find_keyword(const struct rule *r, const struct gw_route_features *f)
{
    for (int i = 0; i < r->nkeywords; i++) {
        const char *kw = r->keywords[i];
        size_t n = strlen(kw);
        for (int t = 0; t < f->nparts; t++) {
            const char *text = f->parts[t];
            for (const char *p = strcasestr(text, kw); p != NULL; p = strcasestr(p + 1, kw)) {
                int left_ok = p == text || !is_word(p[-1]) || !is_word(kw[0]);
                int right_ok = !is_word(p[n]) || !is_word(kw[n - 1]);
                if (left_ok && right_ok)
                    return kw;
            }
        }
    }
    return NULL;
}

int gw_route_fits(const struct gw_route_req *q, const struct gw_model *m)
{
    int64_t out = q->max_output_tokens > 0 ? q->max_output_tokens : 1024;
    if (q->f.has_images && !m->vision)
        return 0;
    if (q->f.has_tools && !m->tools)
        return 0;
    if (q->input_tokens + out > m->context_window)
        return 0;
    return q->allowed == NULL || q->allowed(q->arg, m);
}

/* The index in r's list of the first eligible model, or -1. */
static int first_eligible(const struct rule *r, const struct gw_route_req *q)
{
    for (int i = 0; i < r->nprefer; i++)
        if (gw_route_fits(q, r->prefer[i]))
            return i;
    return -1;
}

static int conditions_hold(const struct rule *r, const struct gw_route_req *q,
                           const struct gw_route_features *f, const char **matched)
{
    *matched = NULL;
    if (r->has_images != ANY && (int)r->has_images != f->has_images)
        return 0;
    if (r->has_tools != ANY && (int)r->has_tools != f->has_tools)
        return 0;
    if (r->min_input >= 0 && q->input_tokens < r->min_input)
        return 0;
    if (r->max_input >= 0 && q->input_tokens > r->max_input)
        return 0;
    if (r->nkeywords > 0 && (*matched = find_keyword(r, f)) == NULL)
        return 0;
    return 1;
}

int gw_route_heuristic(const struct gw_router *r, const struct gw_route_req *q,
                       struct gw_route_result *out)
{
    const struct rule *won = NULL;
    const char *kw = NULL;
    int at = -1;

    memset(out, 0, sizeof(*out));
    for (int i = 0; i < r->nrules && at < 0; i++) {
        if (!conditions_hold(&r->rules[i], q, &q->f, &kw))
            continue;
        if ((at = first_eligible(&r->rules[i], q)) >= 0)
            won = &r->rules[i];
    }
    if (at < 0 && (at = first_eligible(&r->dflt, q)) >= 0) {
        won = &r->dflt;
        kw = NULL;
    }
    if (at < 0)
        return GW_ENOTFOUND;
    out->model = won->prefer[at];
    for (int i = at + 1; i < won->nprefer; i++)
        if (gw_route_fits(q, won->prefer[i]))
            out->alts[out->nalts++] = won->prefer[i];
    gw_strlcpy(out->rule, won->name, sizeof(out->rule));
    if (kw != NULL)
        snprintf(out->reason, sizeof(out->reason), "%s (matched '%s')", won->reason, kw);
    else
        gw_strlcpy(out->reason, won->reason, sizeof(out->reason));
    return 0;
}

const struct gw_model *const *gw_router_chain(const struct gw_router *r, const struct gw_model *m,
                                              int *n)
{
    if (m->index < 0 || m->index >= r->nmodels) {
        *n = 0;
        return NULL;
    }
    *n = r->info[m->index].nchain;
    return r->info[m->index].chain;
}

static int add_target(const struct gw_route_req *q, const struct gw_model *first,
                      const struct gw_model *m, const struct gw_model **out, int n, int max)
{
    if (n >= max || m == first || !gw_route_fits(q, m))
        return n;
    for (int i = 0; i < n; i++)
        if (out[i] == m)
            return n;
    out[n] = m;
    return n + 1;
}

int gw_route_fallbacks(const struct gw_router *r, const struct gw_route_req *q,
                       const struct gw_model *first, const struct gw_route_result *res,
                       const struct gw_model **out, int max)
{
    int n = 0, nchain = 0;

    for (int i = 0; res != NULL && i < res->nalts; i++)
        n = add_target(q, first, res->alts[i], out, n, max);
    const struct gw_model *const *chain = gw_router_chain(r, first, &nchain);
    for (int i = 0; i < nchain; i++)
        n = add_target(q, first, chain[i], out, n, max);
    return n;
}

int gw_router_candidates(const struct gw_router *r, const struct gw_route_req *q,
                         const struct gw_model **out, int max)
{
    int n = 0;
    for (int i = 0; i <= r->nrules; i++) {
        const struct rule *ru = i < r->nrules ? &r->rules[i] : &r->dflt;
        for (int k = 0; k < ru->nprefer; k++)
            n = add_target(q, NULL, ru->prefer[k], out, n, max);
    }
    return n;
}

const char *gw_router_model_use(const struct gw_router *r, const struct gw_model *m)
{
    return m->index >= 0 && m->index < r->nmodels ? r->info[m->index].use : "";
}

int gw_router_budget_percent(const struct gw_router *r) { return r->budget_percent; }

/* This request's worst case on m: the prompt estimate in, the asked output (or 1024) out. */
static int64_t request_cost(const struct gw_route_req *q, const struct gw_model *m)
{
    int64_t out = q->max_output_tokens > 0 ? q->max_output_tokens : 1024;
    if (out > m->max_output_tokens && m->max_output_tokens > 0)
        out = m->max_output_tokens;
    return gw_cost_worst_micros(m, q->input_tokens, out);
}

/* Sort models by this request's cost, cheapest first (insertion sort: a handful of models). */
static void sort_by_cost(const struct gw_route_req *q, const struct gw_model **m, int n)
{
    for (int i = 1; i < n; i++) {
        const struct gw_model *x = m[i];
        int64_t cx = request_cost(q, x);
        int k = i;
        for (; k > 0 && request_cost(q, m[k - 1]) > cx; k--)
            m[k] = m[k - 1];
        m[k] = x;
    }
}

int gw_route_budget(const struct gw_router *r, const struct gw_route_req *q, int percent_spent,
                    int64_t remaining_micros, const char *window, struct gw_route_result *res)
{
    const struct gw_model *list[GW_ROUTE_MAX_TARGETS + 1];
    const struct gw_model *was = res->model;
    const char *which = "the cheapest of the rule's models";
    int n = 0;

    if (r->budget_percent == 0 || percent_spent < r->budget_percent || was == NULL)
        return 0;
    list[n++] = was;
    for (int i = 0; i < res->nalts && n < GW_ROUTE_MAX_TARGETS; i++)
        list[n++] = res->alts[i];
    sort_by_cost(q, list, n);
    if (request_cost(q, list[0]) > remaining_micros) {
        /* not even that fits in what is left: the cheapest of everything the caller may use */
        n = gw_router_candidates(r, q, list, GW_ROUTE_MAX_TARGETS);
        if (n == 0)
            return 0;
        sort_by_cost(q, list, n);
        which = "the cheapest allowed model";
    }
    if (list[0] == was) /* already the cheapest: nothing changes */
        return 0;
    res->model = list[0];
    res->nalts = 0;
    for (int i = 1; i < n && res->nalts < GW_ROUTE_MAX_TARGETS; i++)
        res->alts[res->nalts++] = list[i];
    char reason[sizeof(res->reason)];
    snprintf(reason, sizeof(reason), "%d%% of the %s budget spent: %s instead of %s",
             percent_spent, window, which, was->id);
    gw_strlcpy(res->reason, reason, sizeof(res->reason));
    return 1;
}
