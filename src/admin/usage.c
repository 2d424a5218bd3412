/*
 * admin/usage — what was spent, and the providers as configured:
 *   GET /admin/v1/usage?from=&to=&group_by=day|key|model|provider[&org=&key=&model=&provider=]
 *       sums per group and in all, over a bounded time range (default: the last 30 days; at
 *       most 366 days), read through the usage indexes (org and time, key and time, time)
 *   GET /admin/v1/providers   the superadmin: each provider's settings, without secrets
 */
#include <stdio.h>
#include <string.h>

#include "admin/admin.h"
#include "util/json.h"
#include "util/util.h"

#define DAY_MS 86400000LL
#define RANGE_DEFAULT_MS (30 * DAY_MS)
#define RANGE_MAX_MS (366 * DAY_MS)
#define GROUPS_MAX 10000

static void bad(struct gw_admin_ctx *x, const char *msg)
{
    gw_answer_fail(&x->an, 400, "invalid_request_error", "invalid_request", msg);
}

static json_t *sum_json(const char *group, int64_t rows, int64_t requests, int64_t in,
                        int64_t out, int64_t micros)
{
    json_t *o = json_pack("{s:I,s:I,s:I,s:I,s:I,s:f}", "rows", (json_int_t)rows, "requests",
                          (json_int_t)requests, "tokens_in", (json_int_t)in, "tokens_out",
                          (json_int_t)out, "cost_micros", (json_int_t)micros, "cost_usd",
                          (double)micros / 1e6);
    if (o != NULL && group != NULL)
        json_object_set_new(o, "group", json_string(group));
    return o;
}

static int group_cb(void *arg, const struct gw_usage_sum *g)
{
    return json_array_append_new(arg, sum_json(g->group, g->rows, g->requests, g->tokens_in,
                                               g->tokens_out, g->cost_micros)) != 0;
}

int gw_admin_usage_filter(struct gw_admin_ctx *x, struct gw_usage_filter *f, int64_t max_range_ms)
{
    const char *v;
    struct gw_org o;
    int64_t now = gw_now_ms();

    memset(f, 0, sizeof(*f));
    f->to_ms = now + 1;
    if ((v = gw_admin_param(x, "to")) != NULL && gw_parse_when_ms(v, &f->to_ms) != 0) {
        bad(x, "to must be unix seconds or YYYY-MM-DD[THH:MM[:SS]]");
        return -1;
    }
    f->from_ms = f->to_ms - RANGE_DEFAULT_MS;
    if ((v = gw_admin_param(x, "from")) != NULL && gw_parse_when_ms(v, &f->from_ms) != 0) {
        bad(x, "from must be unix seconds or YYYY-MM-DD[THH:MM[:SS]]");
        return -1;
    }
    if (f->from_ms >= f->to_ms || (max_range_ms > 0 && f->to_ms - f->from_ms > max_range_ms)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "from must be before to, at most %lld days apart",
                 (long long)(max_range_ms / DAY_MS));
        bad(x, msg);
        return -1;
    }
    if (gw_admin_target_org(x, NULL, 0, &o) != 0)
        return -1;
    f->org_id = o.id;
    if ((v = gw_admin_param(x, "key")) != NULL) {
        struct gw_key_rec k;
        int rc = gw_store_key_get(x->s, v, &k);
        if (rc == GW_ENOTFOUND || (rc == 0 && !x->super && k.org_id != x->who->org_id)) {
            gw_answer_fail(&x->an, 404, "invalid_request_error", "not_found", "no such key");
            return -1;
        }
        if (rc != 0) {
            gw_answer_store_failed(&x->an, "admin", x->rid, rc);
            return -1;
        }
        f->key_row_id = k.id;
    }
    if ((v = gw_admin_param(x, "model")) != NULL) {
        if (!gw_admin_model_id_ok(v) || strlen(v) >= sizeof(f->model)) {
            bad(x, "model is not a model id");
            return -1;
        }
        gw_strlcpy(f->model, v, sizeof(f->model));
    }
    if ((v = gw_admin_param(x, "provider")) != NULL) {
        if (!gw_admin_is_provider(v)) {
            bad(x, "provider is not a provider's name");
            return -1;
        }
        gw_strlcpy(f->provider, v, sizeof(f->provider));
    }
    return 0;
}

void gw_admin_usage_query(struct gw_admin_ctx *x)
{
    static const char *const names[] = {"day", "key", "model", "provider"};
    struct gw_usage_filter f;
    struct gw_usage_totals t = {0};
    const char *by = gw_admin_param(x, "group_by");
    int g = 0;

    if (by != NULL) {
        while (g < 4 && strcmp(by, names[g]) != 0)
            g++;
        if (g == 4) {
            bad(x, "group_by must be day, key, model or provider");
            return;
        }
    }
    if (gw_admin_usage_filter(x, &f, RANGE_MAX_MS) != 0)
        return;
    json_t *data = json_array();
    int rc = data != NULL ? gw_store_usage_group(x->s, &f, (enum gw_usage_group)g, GROUPS_MAX,
                                                 group_cb, data, &t)
                          : GW_ENOMEM;
    if (rc == GW_ETOOBIG) {
        json_decref(data);
        bad(x, "more than 10000 groups: narrow the range or the filters");
        return;
    }
    if (rc != 0) {
        json_decref(data);
        gw_answer_store_failed(&x->an, "admin", x->rid, rc);
        return;
    }
    x->an.out = json_pack("{s:s,s:I,s:I,s:s,s:o,s:o}", "object", "usage", "from",
                          (json_int_t)(f.from_ms / 1000), "to", (json_int_t)(f.to_ms / 1000),
                          "group_by", names[g], "data", data, "totals",
                          sum_json(NULL, t.rows, t.requests, t.tokens_in, t.tokens_out,
                                   t.cost_micros));
    x->an.status = 200;
}

/* scheme://host[:port][/path] of a URL: no credentials, no query. */
static void url_without_secrets(const char *url, char *out, size_t outsz)
{
    const char *p = strstr(url, "://");
    const char *host = p != NULL ? p + 3 : url;
    const char *end = host + strcspn(host, "/?#");
    const char *at = memchr(host, '@', (size_t)(end - host));
    size_t scheme = p != NULL ? (size_t)(host - url) : 0;
    const char *h = at != NULL ? at + 1 : host;
    size_t path = strcspn(end, "?#");
    snprintf(out, outsz, "%.*s%.*s%.*s", (int)scheme, url, (int)(end - h), h, (int)path, end);
}

void gw_admin_providers_list(struct gw_admin_ctx *x)
{
    json_t *data = json_array();
    for (int i = 0; data != NULL && i < GW_NPROVIDERS; i++) {
        const struct gw_provider_conf *p = &x->cfg->providers[i];
        char url[256];
        url_without_secrets(p->base_url ? p->base_url : "", url, sizeof(url));
        struct gw_timeouts t = gw_config_timeouts(x->cfg, p);
        json_array_append_new(
            data, json_pack("{s:s,s:s,s:b,s:s,s:s?,s:{s:i,s:i,s:i,s:i}}", "object", "provider",
                            "name", p->name, "configured", p->api_key != NULL && p->api_key[0],
                            "base_url", url, "api_version", p->api_version, "timeouts",
                            "connect_ms", t.connect_ms, "first_byte_ms", t.first_byte_ms,
                            "idle_ms", t.idle_ms, "total_ms", t.total_ms));
    }
    x->an.out = json_pack("{s:s,s:o}", "object", "list", "data", data ? data : json_array());
    x->an.status = 200;
}
