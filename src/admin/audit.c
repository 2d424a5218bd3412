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

struct audit_lister {
    json_t *data;
    int n, limit;
    int64_t last;
};

static int audit_cb(void *arg, const struct gw_audit *a)
{
    struct audit_lister *l = arg;
    if (l->n == l->limit) {
        l->n++;
        return 1;
    }
    json_t *detail = gw_json_parse(a->detail ? a->detail : "{}", a->detail ? strlen(a->detail) : 2,
                                   NULL);
    json_t *e = json_pack("{s:I,s:s,s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:o}", "id", (json_int_t)a->id,
                          "object", "audit_entry", "created_at",
                          (json_int_t)(a->created_ms / 1000), "org_id", (json_int_t)a->org_id,
                          "actor", a->actor, "actor_role", a->actor_role, "action", a->action,
                          "target", a->target, "request_id", a->request_id, "detail",
                          detail != NULL ? detail : json_object());
    l->n++;
    l->last = a->id;
    return json_array_append_new(l->data, e) != 0;
}

void gw_admin_audit_list(struct gw_admin_ctx *x)
{
    int limit;
    int64_t cursor;
    struct gw_org o;
    if (gw_admin_page(x, AUDIT_DEFAULT, AUDIT_MAX, &limit, &cursor) != 0 ||
        gw_admin_target_org(x, NULL, 0, &o) != 0)
        return;
    struct audit_lister l = {json_array(), 0, limit, 0};
    int rc = l.data != NULL ? gw_store_audit_list(x->s, o.id, cursor, limit + 1, audit_cb, &l)
                            : GW_ENOMEM;
    if (rc != 0) {
        json_decref(l.data);
        gw_answer_store_failed(&x->an, "admin", x->rid, rc);
        return;
    }
    char next[24];
    snprintf(next, sizeof(next), "%lld", (long long)l.last);
    x->an.out = json_pack("{s:s,s:o,s:o}", "object", "list", "data", l.data, "next_cursor",
                          l.n > l.limit ? json_string(next) : json_null());
    x->an.status = 200;
}
