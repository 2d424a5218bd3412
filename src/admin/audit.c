/*
 * admin/audit — GET /admin/v1/audit: the audit trail, oldest first (?limit=&cursor=, and
 * ?org=slug for the superadmin, who otherwise sees every org's and the gateway's own); an
 * org_admin sees its org's. Entries: {id, created_at, org, actor, actor_role, action, target,
 * request_id, detail}.
 */
#include <stdio.h>
#include <string.h>

#include "admin/admin.h"
#include "util/json.h"
#include "util/util.h"

#define AUDIT_DEFAULT 100
#define AUDIT_MAX 1000

static int audit_cb(void *arg, const struct gw_audit *a)
{
    struct gw_admin_list *l = arg;
    if (gw_admin_list_full(l))
        return 1;
    json_t *detail = gw_json_parse(a->detail ? a->detail : "{}", a->detail ? strlen(a->detail) : 2,
                                   NULL);
    json_t *e = json_pack("{s:I,s:s,s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:o}", "id", (json_int_t)a->id,
                          "object", "audit_entry", "created_at",
                          (json_int_t)(a->created_ms / 1000), "org_id", (json_int_t)a->org_id,
                          "actor", a->actor, "actor_role", a->actor_role, "action", a->action,
                          "target", a->target, "request_id", a->request_id, "detail",
                          detail != NULL ? detail : json_object());
    return gw_admin_list_add(l, a->id, e);
}

void gw_admin_audit_list(struct gw_admin_ctx *x)
{
    int limit;
    int64_t cursor;
    struct gw_org o;
    if (gw_admin_page(x, AUDIT_DEFAULT, AUDIT_MAX, &limit, &cursor) != 0 ||
        gw_admin_target_org(x, NULL, 0, &o) != 0)
        return;
    struct gw_admin_list l;
    gw_admin_list_init(&l, limit);
    int rc = l.data != NULL ? gw_store_audit_list(x->s, o.id, cursor, limit + 1, audit_cb, &l)
                            : GW_ENOMEM;
    gw_admin_list_answer(x, &l, rc);
}
