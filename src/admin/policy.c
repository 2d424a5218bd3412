/* admin/policy — see policy.h. */
#include "admin/policy.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "admin/admin.h"
#include "util/util.h"

#define USD_MAX 1000000000.0 /* a billion dollars: anything above is a typo */

static json_t *usd(int64_t micros) { return json_real((double)micros / 1e6); }

json_t *gw_admin_limits_json(const struct gw_limit_set *l)
{
    return json_pack("{s:I,s:I,s:I,s:o,s:o,s:o}", "requests_per_hour", (json_int_t)l->rph,
                     "tokens_per_hour", (json_int_t)l->tph, "max_concurrent",
                     (json_int_t)l->max_concurrent, "daily_usd", usd(l->daily_usd_micros),
                     "monthly_usd", usd(l->monthly_usd_micros), "max_request_usd",
                     usd(l->max_request_usd_micros));
}

/* A USD amount: a number or a decimal string, >= 0; null = 0. */
static int parse_usd(const json_t *v, int64_t *micros)
{
    if (json_is_null(v)) {
        *micros = 0;
        return 0;
    }
    if (json_is_string(v))
        return gw_parse_micros(json_string_value(v), micros) == 0 && *micros >= 0 &&
                       *micros <= (int64_t)(USD_MAX * 1e6)
                   ? 0
                   : -1;
    if (!json_is_number(v))
        return -1;
    double d = json_number_value(v);
    if (!isfinite(d) || d < 0 || d > USD_MAX)
        return -1;
    *micros = (int64_t)llround(d * 1e6);
    return 0;
}

int gw_admin_limits_parse(const json_t *v, struct gw_limit_set *l, char *bad, size_t badsz)
{
    static const struct {
        const char *name;
        int is_usd;
        size_t off;
    } f[] = {
        {"requests_per_hour", 0, offsetof(struct gw_limit_set, rph)},
        {"tokens_per_hour", 0, offsetof(struct gw_limit_set, tph)},
        {"max_concurrent", 0, offsetof(struct gw_limit_set, max_concurrent)},
        {"daily_usd", 1, offsetof(struct gw_limit_set, daily_usd_micros)},
        {"monthly_usd", 1, offsetof(struct gw_limit_set, monthly_usd_micros)},
        {"max_request_usd", 1, offsetof(struct gw_limit_set, max_request_usd_micros)},
    };
    const char *k;
    json_t *e;
    if (!json_is_object(v)) {
        snprintf(bad, badsz, "limits must be an object");
        return -1;
    }
    json_object_foreach((json_t *)v, k, e) {
        size_t i = 0;
        while (i < sizeof(f) / sizeof(f[0]) && strcmp(k, f[i].name) != 0)
            i++;
        if (i == sizeof(f) / sizeof(f[0])) {
            snprintf(bad, badsz, "unknown limit '%.64s'", k);
            return -1;
        }
        int64_t *dst = (int64_t *)((char *)l + f[i].off);
        if (f[i].is_usd) {
            if (parse_usd(e, dst) != 0) {
                snprintf(bad, badsz, "limits.%s must be a USD amount from 0 to 1e9", k);
                return -1;
            }
        } else if (json_is_null(e)) {
            *dst = 0;
        } else if (!json_is_integer(e) || json_integer_value(e) < 0 ||
                   json_integer_value(e) > 1000000000000LL) {
            snprintf(bad, badsz, "limits.%s must be a non-negative integer", k);
            return -1;
        } else {
            *dst = json_integer_value(e);
        }
    }
    return 0;
}

int gw_admin_capture_parse(const json_t *v, struct gw_conv_policy *p, char *bad, size_t badsz)
{
    const char *k;
    json_t *e;
    if (!json_is_object(v)) {
        snprintf(bad, badsz, "capture must be an object");
        return -1;
    }
    json_object_foreach((json_t *)v, k, e) {
        if (strcmp(k, "enabled") == 0 && json_is_boolean(e)) {
            p->capture = json_is_true(e);
        } else if (strcmp(k, "export_all") == 0 && json_is_boolean(e)) {
            p->export_all = json_is_true(e);
        } else if (strcmp(k, "retention_days") == 0 && json_is_integer(e) &&
                   json_integer_value(e) >= 0 && json_integer_value(e) <= 36500) {
            p->retention_days = json_integer_value(e);
        } else {
            snprintf(bad, badsz, "capture.%.64s is not valid (enabled, export_all: booleans; "
                     "retention_days: 0 to 36500)", k);
            return -1;
        }
    }
    return 0;
}

static json_t *seconds_or_null(int64_t ms) { return ms > 0 ? json_integer(ms / 1000) : json_null(); }

json_t *gw_admin_org_json(const struct gw_org *o)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:o,s:o,s:o,s:{s:b,s:I,s:b}}", "object", "org", "id",
                     o->slug, "slug", o->slug, "name", o->name, "created_at",
                     (json_int_t)(o->created_ms / 1000), "allowed_providers",
                     gw_admin_csv_array(o->providers), "allowed_models",
                     gw_admin_csv_array(o->models), "limits", gw_admin_limits_json(&o->limits),
                     "capture", "enabled", o->conv.capture, "retention_days",
                     (json_int_t)o->conv.retention_days, "export_all", o->conv.export_all);
}

json_t *gw_admin_key_json(const struct gw_key_rec *k)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:b,s:I,s:o,s:o,s:o}", "object",
                     "api_key", "id", k->key_id, "org", k->org_slug, "name", k->name, "prefix",
                     k->prefix, "role", k->role, "tier", k->tier, "allowed_providers",
                     gw_admin_csv_array(k->providers), "allowed_models",
                     gw_admin_csv_array(k->models), "limits", gw_admin_limits_json(&k->limits),
                     "revoked", k->revoked, "created_at", (json_int_t)(k->created_ms / 1000),
                     "revoked_at", seconds_or_null(k->revoked ? k->revoked_ms : 0),
                     "rotated_at", seconds_or_null(k->rotated_ms),
                     "previous_key_expires_at", seconds_or_null(k->prev_expires_ms));
}
