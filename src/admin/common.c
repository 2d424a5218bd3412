/* admin/common — what the admin operations share (see admin.h). */
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "admin/policy.h"
#include "util/json.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/util.h"

static const char *const provider_names[] = {"anthropic", "openai", "gemini", "xai",
                                             "perplexity"};

int gw_admin_is_provider(const char *s)
{
    for (size_t i = 0; i < sizeof(provider_names) / sizeof(provider_names[0]); i++)
        if (strcmp(s, provider_names[i]) == 0)
            return 1;
    return 0;
}

int gw_admin_model_id_ok(const char *m)
{
    size_t n = strlen(m);
    return n > 0 && n <= 128 &&
           strspn(m, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/-@") == n;
}

int gw_admin_join_list(const json_t *arr, int (*ok)(const char *), size_t max_items, char *dst,
                       size_t dstsz, const char *what, char *bad, size_t badsz)
{
    size_t i, len = 0;
    json_t *v;
    dst[0] = '\0';
    if (!json_is_array(arr) || json_array_size(arr) > max_items) {
        snprintf(bad, badsz, "%s must be an array of at most %zu strings", what, max_items);
        return -1;
    }
    json_array_foreach(arr, i, v) {
        const char *s = json_string_value(v);
        if (s == NULL || !ok(s)) {
            snprintf(bad, badsz, "%s[%zu] is not valid", what, i);
            return -1;
        }
        size_t n = strlen(s);
        if (len + n + 2 > dstsz) {
            snprintf(bad, badsz, "%s is too long", what);
            return -1;
        }
        if (len > 0)
            dst[len++] = ',';
        memcpy(dst + len, s, n + 1);
        len += n;
    }
    return 0;
}

json_t *gw_admin_csv_array(const char *csv)
{
    json_t *arr = json_array();
    while (arr != NULL && csv[0] != '\0') {
        size_t n = strcspn(csv, ",");
        if (json_array_append_new(arr, json_stringn(csv, n)) != 0) {
            json_decref(arr);
            return NULL;
        }
        csv += n + (csv[n] == ',');
    }
    return arr;
}

const char *gw_admin_param(const struct gw_admin_ctx *x, const char *name)
{
    return x->q != NULL ? evhttp_find_header(x->q, name) : NULL;
}

static void bad(struct gw_admin_ctx *x, const char *msg)
{
    gw_answer_fail(&x->an, 400, "invalid_request_error", "invalid_request", msg);
}

int gw_admin_page(struct gw_admin_ctx *x, int def, int max, int *limit, int64_t *cursor)
{
    const char *l = gw_admin_param(x, "limit"), *c = gw_admin_param(x, "cursor");
    char msg[80];
    *limit = def;
    *cursor = 0;
    if (l != NULL) {
        int64_t n;
        if (gw_parse_i64(l, &n) != 0 || n < 1 || n > max) {
            snprintf(msg, sizeof(msg), "limit must be from 1 to %d", max);
            bad(x, msg);
            return -1;
        }
        *limit = (int)n;
    }
    if (c != NULL && (gw_parse_i64(c, cursor) != 0 || *cursor < 0)) {
        bad(x, "cursor is not one this gateway gave");
        return -1;
    }
    return 0;
}

void gw_admin_list_init(struct gw_admin_list *l, int limit)
{
    l->data = json_array();
    l->n = 0;
    l->limit = limit;
    l->last = 0;
}

int gw_admin_list_full(struct gw_admin_list *l)
{
    if (l->n < l->limit)
        return 0;
    l->n++; /* one more than the page: there is a next one */
    return 1;
}

int gw_admin_list_add(struct gw_admin_list *l, int64_t id, json_t *item)
{
    l->n++;
    l->last = id;
    return json_array_append_new(l->data, item) != 0;
}

void gw_admin_list_answer(struct gw_admin_ctx *x, struct gw_admin_list *l, int rc)
{
    if (rc == 0 && l->data == NULL)
        rc = GW_ENOMEM;
    if (rc != 0) {
        json_decref(l->data);
        gw_answer_store_failed(&x->an, "admin", x->rid, rc);
        return;
    }
    char next[24];
    snprintf(next, sizeof(next), "%lld", (long long)l->last);
    x->an.out = json_pack("{s:s,s:o,s:o}", "object", "list", "data", l->data, "next_cursor",
                          l->n > l->limit ? json_string(next) : json_null());
    x->an.status = 200;
}

int gw_admin_target_org(struct gw_admin_ctx *x, const char *slug, int need, struct gw_org *org)
{
    memset(org, 0, sizeof(*org));
    if (slug == NULL)
        slug = gw_admin_param(x, "org");
    if (!x->super) { /* an org_admin: its own org, named or not */
        if (slug != NULL && strcmp(slug, x->who->org_slug) != 0) {
            gw_answer_fail(&x->an, 404, "invalid_request_error", "not_found", "no such org");
            return -1;
        }
        slug = x->who->org_slug;
    } else if (slug == NULL || slug[0] == '\0') {
        if (!need)
            return 0; /* every org */
        bad(x, "the superadmin names the org (\"org\": slug)");
        return -1;
    }
    int rc = gw_store_org_get(x->s, slug, org);
    if (rc == GW_ENOTFOUND) {
        gw_answer_fail(&x->an, 404, "invalid_request_error", "not_found", "no such org");
        return -1;
    }
    if (rc != 0) {
        gw_answer_store_failed(&x->an, "admin", x->rid, rc);
        return -1;
    }
    return 0;
}

void gw_admin_audited(struct gw_admin_ctx *x, int64_t org_id, const char *kind, const char *id,
                      json_t *before, json_t *after)
{
    x->au.set = 1;
    x->au.org_id = org_id;
    snprintf(x->au.target, sizeof(x->au.target), "%s:%s", kind, id);
    x->au.before = before;
    x->au.after = after != NULL ? after : json_incref(x->an.out);
}

int gw_admin_audit_write(struct gw_admin_ctx *x, const char *action)
{
    struct gw_audit a = {.org_id = x->au.org_id};
    json_t *d = json_object();
    if (d == NULL)
        return GW_ENOMEM;
    if (x->au.before != NULL)
        json_object_set(d, "before", x->au.before);
    if (x->au.after != NULL)
        json_object_set(d, "after", x->au.after);
    char *detail = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(d);
    if (detail == NULL)
        return GW_ENOMEM;
    gw_strlcpy(a.actor, x->who->key_id, sizeof(a.actor));
    gw_strlcpy(a.actor_role, x->who->role, sizeof(a.actor_role));
    gw_strlcpy(a.action, action, sizeof(a.action));
    gw_strlcpy(a.target, x->au.target, sizeof(a.target));
    gw_strlcpy(a.request_id, x->rid, sizeof(a.request_id));
    a.detail = detail;
    int rc = gw_store_audit_append(x->s, &a);
    gw_free(detail);
    if (rc == 0)
        GW_LOG_INFO("audit", "req=%s %s %s by %s (%s)", x->rid, action, x->au.target,
                    x->who->key_id, x->who->role);
    return rc;
}

void gw_admin_ctx_cleanup(struct gw_admin_ctx *x)
{
    json_decref(x->au.before);
    json_decref(x->au.after);
    x->au.before = x->au.after = NULL;
    json_decref(x->an.out);
    x->an.out = NULL;
}
