/*
 * admin/orgs — organizations and their policy:
 *   GET   /admin/v1/orgs          the superadmin: every org (paged by ?limit=&cursor=); an
 *                                 org_admin: its own
 *   POST  /admin/v1/orgs          the superadmin: {slug, name?, allowed_providers?,
 *                                 allowed_models?, limits?, capture?} → 201 the org
 *   GET   /admin/v1/orgs/{slug}   the org (another org's: 404)
 *   PATCH /admin/v1/orgs/{slug}   {allowed_providers?, allowed_models?, limits?, capture?}
 */
#include <stdio.h>
#include <string.h>

#include "admin/admin.h"
#include "admin/policy.h"
#include "util/json.h"
#include "util/util.h"

#define ORGS_DEFAULT 50
#define ORGS_MAX 200

static void bad(struct gw_admin_ctx *x, const char *msg)
{
    gw_answer_fail(&x->an, 400, "invalid_request_error", "invalid_request", msg);
}

static int org_cb(void *arg, const struct gw_org *o)
{
    struct gw_admin_list *l = arg;
    return gw_admin_list_full(l) ? 1 : gw_admin_list_add(l, o->id, gw_admin_org_json(o));
}

void gw_admin_orgs_list(struct gw_admin_ctx *x)
{
    int limit;
    int64_t cursor;
    if (gw_admin_page(x, ORGS_DEFAULT, ORGS_MAX, &limit, &cursor) != 0)
        return;
    struct gw_admin_list l;
    gw_admin_list_init(&l, limit);
    int rc = l.data != NULL ? 0 : GW_ENOMEM;
    if (rc == 0 && x->super) {
        rc = gw_store_org_list(x->s, cursor, limit + 1, org_cb, &l);
    } else if (rc == 0 && cursor == 0) { /* an org_admin sees one org: its own */
        struct gw_org o;
        if ((rc = gw_store_org_get(x->s, x->who->org_slug, &o)) == 0)
            org_cb(&l, &o);
    }
    gw_admin_list_answer(x, &l, rc);
}

/* The policy members of body onto o: 0, or -1 having answered 400. allow: the other members
 * the operation takes (slug, name) */
static int apply_policy(struct gw_admin_ctx *x, struct gw_org *o, int creating)
{
    const char *k;
    json_t *v;
    char why[200] = "";
    if (!json_is_object(x->body)) {
        bad(x, "the body must be a JSON object");
        return -1;
    }
    json_object_foreach(x->body, k, v) {
        int rc = 0;
        if (strcmp(k, "allowed_providers") == 0)
            rc = gw_admin_join_list(v, gw_admin_is_provider, 5, o->providers,
                                    sizeof(o->providers), k, why, sizeof(why));
        else if (strcmp(k, "allowed_models") == 0)
            rc = gw_admin_join_list(v, gw_admin_model_id_ok, 64, o->models, sizeof(o->models), k,
                                    why, sizeof(why));
        else if (strcmp(k, "limits") == 0)
            rc = gw_admin_limits_parse(v, &o->limits, why, sizeof(why));
        else if (strcmp(k, "capture") == 0)
            rc = gw_admin_capture_parse(v, &o->conv, why, sizeof(why));
        else if (creating && (strcmp(k, "slug") == 0 || strcmp(k, "name") == 0))
            continue;
        else
            snprintf(why, sizeof(why), "unknown member '%.64s'", k), rc = -1;
        if (rc != 0) {
            bad(x, why);
            return -1;
        }
    }
    return 0;
}

static int slug_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 64 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

void gw_admin_orgs_create(struct gw_admin_ctx *x)
{
    struct gw_org o;
    memset(&o, 0, sizeof(o));
    o.conv.capture = 1;
    const char *slug = gw_json_str(x->body, "slug");
    const char *name = gw_json_str(x->body, "name");
    if (apply_policy(x, &o, 1) != 0)
        return;
    if (slug == NULL || !slug_ok(slug)) {
        bad(x, "slug must be 1 to 63 of a-z, 0-9, '-', '_'");
        return;
    }
    if (name != NULL && (name[0] == '\0' || strlen(name) >= sizeof(o.name))) {
        bad(x, "name must be a string of 1 to 127 bytes");
        return;
    }
    int rc = gw_store_org_create(x->s, slug, name != NULL ? name : slug, &o.id);
    gw_strlcpy(o.slug, slug, sizeof(o.slug));
    if (rc == 0)
        rc = gw_store_org_set_policy(x->s, &o);
    if (rc == 0)
        rc = gw_store_org_get(x->s, slug, &o);
    if (rc == GW_EEXIST) {
        gw_answer_fail(&x->an, 409, "invalid_request_error", "org_exists",
                       "an organization with this slug exists");
        return;
    }
    if (rc != 0) {
        gw_answer_store_failed(&x->an, "admin", x->rid, rc);
        return;
    }
    x->an.out = gw_admin_org_json(&o);
    x->an.status = 201;
    gw_admin_audited(x, o.id, "org", o.slug, NULL, NULL);
}

void gw_admin_orgs_get(struct gw_admin_ctx *x)
{
    struct gw_org o;
    if (gw_admin_target_org(x, x->id, 1, &o) != 0)
        return;
    x->an.out = gw_admin_org_json(&o);
    x->an.status = 200;
}

void gw_admin_orgs_patch(struct gw_admin_ctx *x)
{
    struct gw_org o;
    if (gw_admin_target_org(x, x->id, 1, &o) != 0)
        return;
    json_t *before = gw_admin_org_json(&o);
    if (apply_policy(x, &o, 0) != 0) {
        json_decref(before);
        return;
    }
    int rc = gw_store_org_set_policy(x->s, &o);
    if (rc == 0)
        rc = gw_store_org_get(x->s, o.slug, &o);
    if (rc != 0) {
        json_decref(before);
        gw_answer_store_failed(&x->an, "admin", x->rid, rc);
        return;
    }
    x->an.out = gw_admin_org_json(&o);
    x->an.status = 200;
    gw_admin_audited(x, o.id, "org", o.slug, before, NULL);
}
