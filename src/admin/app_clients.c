/*
 * admin/app_clients — browser app clients (for subject sessions):
 *   GET    /admin/v1/app-clients              the org's (?limit=&cursor=; the superadmin:
 *                                             ?org=slug, or every org's)
 *   POST   /admin/v1/app-clients              {name, origins, allowed_providers?,
 *                                             allowed_models?, session_ttl_seconds?, org? (the
 *                                             superadmin)} → 201
 *   GET    /admin/v1/app-clients/{id}         one (another org's: 404)
 *   PATCH  /admin/v1/app-clients/{id}         change {name?, origins?, allowed_providers?,
 *                                             allowed_models?, session_ttl_seconds?}
 *   DELETE /admin/v1/app-clients/{id}         revoke it
 *   POST   /admin/v1/app-clients/{id}/approve the superadmin only
 */
#include <stdio.h>
#include <string.h>

#include "admin/admin.h"
#include "core/admin.h"
#include "util/json.h"
#include "util/util.h"

#define MAX_ORIGINS 16
#define TTL_DEFAULT_S 900
#define TTL_MIN_S 60
#define TTL_MAX_S 86400
#define LIST_DEFAULT 50
#define LIST_MAX 200

static json_t *seconds_or_null(int on, int64_t ms) { return on ? json_integer(ms / 1000) : json_null(); }

static json_t *client_json(const struct gw_app_client *c)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:I,s:b,s:o,s:b,s:o,s:I}", "id", c->client_id,
                     "object", "app_client", "org", c->org_slug, "name", c->name, "origins",
                     gw_admin_csv_array(c->origins), "allowed_providers",
                     gw_admin_csv_array(c->providers), "allowed_models",
                     gw_admin_csv_array(c->models), "session_ttl_seconds",
                     (json_int_t)c->session_ttl_s, "approved", c->approved, "approved_at",
                     seconds_or_null(c->approved, c->approved_ms), "revoked", c->revoked,
                     "revoked_at", seconds_or_null(c->revoked, c->revoked_ms), "created_at",
                     (json_int_t)(c->created_ms / 1000));
}

static void bad(struct gw_admin_ctx *x, const char *msg)
{
    gw_answer_fail(&x->an, 400, "invalid_request_error", "invalid_request", msg);
}

/* The body: {name, origins, allowed_providers?, allowed_models?, session_ttl_seconds?, org?}
 * (creating; a change takes any of them but org, onto c as it is); anything else is refused,
 * so that a misspelt member is not silently ignored. */
static int parse_members(struct gw_admin_ctx *x, struct gw_app_client *c, int creating)
{
    const char *k;
    json_t *v;
    char why[200] = "";
    if (!json_is_object(x->body)) {
        bad(x, "the body must be a JSON object");
        return -1;
    }
    if (creating)
        c->session_ttl_s = TTL_DEFAULT_S;
    json_object_foreach(x->body, k, v) {
        const char *s = json_string_value(v);
        int rc = 0;
        if (strcmp(k, "name") == 0) {
            if (s == NULL || s[0] == '\0' || strlen(s) >= sizeof(c->name))
                rc = -1, snprintf(why, sizeof(why), "name must be a string of 1 to %zu characters",
                                  sizeof(c->name) - 1);
            else
                gw_strlcpy(c->name, s, sizeof(c->name));
        } else if (strcmp(k, "origins") == 0) {
            rc = gw_admin_join_list(v, gw_origin_ok, MAX_ORIGINS, c->origins, sizeof(c->origins),
                                    "origins (each scheme://host[:port])", why, sizeof(why));
        } else if (strcmp(k, "allowed_providers") == 0) {
            rc = gw_admin_join_list(v, gw_admin_is_provider, 5, c->providers,
                                    sizeof(c->providers), "allowed_providers", why, sizeof(why));
        } else if (strcmp(k, "allowed_models") == 0) {
            rc = gw_admin_join_list(v, gw_admin_model_id_ok, 64, c->models, sizeof(c->models),
                                    "allowed_models", why, sizeof(why));
        } else if (strcmp(k, "session_ttl_seconds") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < TTL_MIN_S ||
                json_integer_value(v) > TTL_MAX_S)
                rc = -1, snprintf(why, sizeof(why), "session_ttl_seconds must be an integer from "
                                  "%d to %d", TTL_MIN_S, TTL_MAX_S);
            else
                c->session_ttl_s = json_integer_value(v);
        } else if (creating && strcmp(k, "org") == 0) {
            if (s == NULL || s[0] == '\0')
                rc = -1, snprintf(why, sizeof(why), "org must be an org's slug");
        } else {
            rc = -1, snprintf(why, sizeof(why), "unknown member '%.64s'", k);
        }
        if (rc != 0) {
            bad(x, why);
            return -1;
        }
    }
    if (c->name[0] == '\0') {
        bad(x, "name is required");
        return -1;
    }
    if (c->origins[0] == '\0') {
        bad(x, "origins must list at least one origin");
        return -1;
    }
    return 0;
}

static int list_cb(void *arg, const struct gw_app_client *c)
{
    struct gw_admin_list *l = arg;
    return gw_admin_list_full(l) ? 1 : gw_admin_list_add(l, c->id, client_json(c));
}

void gw_admin_app_clients_list(struct gw_admin_ctx *x)
{
    int limit;
    int64_t cursor;
    struct gw_org o;
    if (gw_admin_page(x, LIST_DEFAULT, LIST_MAX, &limit, &cursor) != 0 ||
        gw_admin_target_org(x, NULL, 0, &o) != 0)
        return;
    struct gw_admin_list l;
    gw_admin_list_init(&l, limit);
    int rc = l.data != NULL
                 ? gw_store_app_client_list(x->s, o.id, cursor, limit + 1, list_cb, &l)
                 : GW_ENOMEM;
    gw_admin_list_answer(x, &l, rc);
}

static void audit_client(struct gw_admin_ctx *x, const struct gw_app_client *c, json_t *before)
{
    gw_admin_audited(x, c->org_id, "app_client", c->client_id, before, NULL);
}

void gw_admin_app_clients_create(struct gw_admin_ctx *x)
{
    struct gw_app_client c;
    struct gw_org o;
    memset(&c, 0, sizeof(c));
    if (parse_members(x, &c, 1) != 0 ||
        gw_admin_target_org(x, gw_json_str(x->body, "org"), 1, &o) != 0)
        return;
    c.org_id = o.id;
    int rc = gw_random_id(c.client_id, sizeof(c.client_id), "ac_", 12);
    if (rc == 0)
        rc = gw_store_app_client_insert(x->s, &c);
    if (rc == 0)
        rc = gw_store_app_client_get(x->s, c.client_id, &c);
    if (rc != 0) {
        gw_answer_store_failed(&x->an, "admin", x->rid, rc);
        return;
    }
    x->an.out = client_json(&c);
    x->an.status = 201;
    audit_client(x, &c, NULL);
}

/* get, revoke, approve: one client, visible to its org's admins and the superadmin */
static int visible_client(struct gw_admin_ctx *x, struct gw_app_client *c)
{
    int rc = gw_store_app_client_get(x->s, x->id, c);
    if (rc == GW_ENOTFOUND || (rc == 0 && !x->super && c->org_id != x->who->org_id)) {
        gw_answer_fail(&x->an, 404, "invalid_request_error", "not_found", "no such app client");
        return -1;
    }
    if (rc != 0) {
        gw_answer_store_failed(&x->an, "admin", x->rid, rc);
        return -1;
    }
    return 0;
}

void gw_admin_app_clients_get(struct gw_admin_ctx *x)
{
    struct gw_app_client c;
    if (visible_client(x, &c) != 0)
        return;
    x->an.out = client_json(&c);
    x->an.status = 200;
}

static void change(struct gw_admin_ctx *x, int approve)
{
    struct gw_app_client c;
    if (visible_client(x, &c) != 0)
        return;
    if (approve && !x->super) {
        gw_answer_fail(&x->an, 403, "permission_error", "superadmin_only",
                       "only the superadmin key may approve an app client");
        return;
    }
    json_t *before = client_json(&c);
    int64_t now = gw_now_ms();
    int rc = approve ? gw_store_app_client_approve(x->s, c.client_id, now)
                     : gw_store_app_client_revoke(x->s, c.client_id, now);
    if (rc == GW_EINVAL) {
        json_decref(before);
        gw_answer_fail(&x->an, 409, "invalid_request_error", "app_client_revoked",
                       "a revoked app client cannot be approved");
        return;
    }
    if (rc == 0)
        rc = gw_store_app_client_get(x->s, c.client_id, &c);
    if (rc != 0) {
        json_decref(before);
        gw_answer_store_failed(&x->an, "admin", x->rid, rc);
        return;
    }
    x->an.out = client_json(&c);
    x->an.status = 200;
    audit_client(x, &c, before);
}

void gw_admin_app_clients_revoke(struct gw_admin_ctx *x) { change(x, 0); }

void gw_admin_app_clients_approve(struct gw_admin_ctx *x) { change(x, 1); }

void gw_admin_app_clients_patch(struct gw_admin_ctx *x)
{
    struct gw_app_client c;
    if (visible_client(x, &c) != 0)
        return;
    json_t *before = client_json(&c);
    if (parse_members(x, &c, 0) != 0) {
        json_decref(before);
        return;
    }
    int rc = gw_store_app_client_update(x->s, &c);
    if (rc == 0)
        rc = gw_store_app_client_get(x->s, c.client_id, &c);
    if (rc != 0) {
        json_decref(before);
        gw_answer_store_failed(&x->an, "admin", x->rid, rc);
        return;
    }
    x->an.out = client_json(&c);
    x->an.status = 200;
    audit_client(x, &c, before);
}
