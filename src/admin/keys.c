/*
 * admin/keys — API keys:
 *   GET    /admin/v1/keys              the org's keys, newest first (?limit=&cursor=; the
 *                                      superadmin names the org: ?org=slug)
 *   POST   /admin/v1/keys              {name?, role?: member|org_admin, tier?, allowed_providers?,
 *                                      allowed_models?, limits?, org? (the superadmin)} → 201
 *                                      the key with "key": the raw key, shown this once
 *   GET    /admin/v1/keys/{id}         one key (another org's: 404)
 *   PATCH  /admin/v1/keys/{id}         {tier?, allowed_providers?, allowed_models?, limits?}
 *   DELETE /admin/v1/keys/{id}         revoke it (at once, everywhere)
 *   POST   /admin/v1/keys/{id}/rotate  {grace_seconds?} → 201 the key with its new raw "key";
 *                                      the old secret keeps working for grace_seconds (default
 *                                      3600, at most 30 days, 0: not at all). The key keeps its
 *                                      id, policy, usage and budgets.
 * The superadmin's own key is not managed here (it is not in any org).
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "admin/admin.h"
#include "admin/policy.h"
#include "policy/keys.h"
#include "util/json.h"
#include "util/util.h"

#define KEYS_DEFAULT 50
#define KEYS_MAX 200
#define GRACE_DEFAULT_S 3600
#define GRACE_MAX_S (30 * 86400)

static void bad(struct gw_admin_ctx *x, const char *msg)
{
    gw_answer_fail(&x->an, 400, "invalid_request_error", "invalid_request", msg);
}

static void not_found(struct gw_admin_ctx *x)
{
    gw_answer_fail(&x->an, 404, "invalid_request_error", "not_found", "no such key");
}

int gw_admin_key_insert(struct gw_store *s, struct gw_key_rec *rec, char *raw, size_t rawsz)
{
    unsigned char hash[32];
    int rc = gw_key_generate(raw, rawsz, hash);
    if (rc == 0)
        rc = gw_key_new_id(rec->key_id, sizeof(rec->key_id));
    if (rc == 0) {
        memcpy(rec->prefix, raw, GW_KEY_DISPLAY_PREFIX_LEN);
        rec->prefix[GW_KEY_DISPLAY_PREFIX_LEN] = '\0';
        rc = gw_store_key_insert(s, rec, hash);
    }
    OPENSSL_cleanse(hash, sizeof(hash));
    return rc;
}

/* The key {id} as the caller may see it: 0, or -1 having answered (404 for another org's, and
 * for the superadmin's own, which no org manages). */
static int visible_key(struct gw_admin_ctx *x, struct gw_key_rec *k)
{
    int rc = gw_store_key_get(x->s, x->id, k);
    if (rc == GW_ENOTFOUND || (rc == 0 && (k->org_id == 0 || (!x->super &&
                                                               k->org_id != x->who->org_id)))) {
        not_found(x);
        return -1;
    }
    if (rc != 0) {
        gw_answer_store_failed(&x->an, "admin", x->rid, rc);
        return -1;
    }
    return 0;
}

struct key_lister {
    struct gw_admin_list page;
    int64_t cursor;
};

static int key_cb(void *arg, const struct gw_key_rec *k)
{
    struct key_lister *l = arg;
    if (l->cursor > 0 && k->id >= l->cursor) /* newest first: the page starts below the cursor */
        return 0;
    return gw_admin_list_full(&l->page) ? 1
                                        : gw_admin_list_add(&l->page, k->id, gw_admin_key_json(k));
}

void gw_admin_keys_list(struct gw_admin_ctx *x)
{
    int limit;
    int64_t cursor;
    struct gw_org o;
    if (gw_admin_page(x, KEYS_DEFAULT, KEYS_MAX, &limit, &cursor) != 0 ||
        gw_admin_target_org(x, NULL, 1, &o) != 0)
        return;
    struct key_lister l = {.cursor = cursor};
    gw_admin_list_init(&l.page, limit);
    int rc = l.page.data != NULL ? gw_store_key_list(x->s, o.id, key_cb, &l) : GW_ENOMEM;
    gw_admin_list_answer(x, &l.page, rc);
}

/* tier, allowlists and limits of body onto k (create: name, role, org too). */
static int apply(struct gw_admin_ctx *x, struct gw_key_rec *k, int creating)
{
    const char *name;
    json_t *v;
    char why[200] = "";
    if (!json_is_object(x->body)) {
        bad(x, "the body must be a JSON object");
        return -1;
    }
    json_object_foreach(x->body, name, v) {
        int rc = 0;
        const char *str = json_string_value(v);
        if (strcmp(name, "allowed_providers") == 0) {
            rc = gw_admin_join_list(v, gw_admin_is_provider, 5, k->providers,
                                    sizeof(k->providers), name, why, sizeof(why));
        } else if (strcmp(name, "allowed_models") == 0) {
            rc = gw_admin_join_list(v, gw_admin_model_id_ok, 64, k->models, sizeof(k->models),
                                    name, why, sizeof(why));
        } else if (strcmp(name, "limits") == 0) {
            rc = gw_admin_limits_parse(v, &k->limits, why, sizeof(why));
        } else if (strcmp(name, "tier") == 0) {
            if (str == NULL || strlen(str) >= sizeof(k->tier) || gw_config_tier(x->cfg, str) == NULL)
                snprintf(why, sizeof(why), "tier must be one of the configured tiers"), rc = -1;
            else
                gw_strlcpy(k->tier, str, sizeof(k->tier));
        } else if (creating && strcmp(name, "name") == 0) {
            if (str == NULL || strlen(str) >= sizeof(k->name))
                snprintf(why, sizeof(why), "name must be a string of at most 127 bytes"), rc = -1;
            else
                gw_strlcpy(k->name, str, sizeof(k->name));
        } else if (creating && strcmp(name, "role") == 0) {
            if (str == NULL || (strcmp(str, "member") != 0 && strcmp(str, "org_admin") != 0))
                snprintf(why, sizeof(why), "role must be member or org_admin"), rc = -1;
            else
                gw_strlcpy(k->role, str, sizeof(k->role));
        } else if (!(creating && strcmp(name, "org") == 0)) {
            snprintf(why, sizeof(why), "unknown member '%.64s'", name);
            rc = -1;
        }
        if (rc != 0) {
            bad(x, why);
            return -1;
        }
    }
    return 0;
}

static void audit_key(struct gw_admin_ctx *x, const struct gw_key_rec *k, json_t *before)
{
    gw_admin_audited(x, k->org_id, "key", k->key_id, before,
                     gw_admin_key_json(k)); /* without the raw key */
}

void gw_admin_keys_create(struct gw_admin_ctx *x)
{
    struct gw_key_rec k;
    struct gw_org o;
    memset(&k, 0, sizeof(k));
    gw_strlcpy(k.role, "member", sizeof(k.role));
    gw_strlcpy(k.tier, "free", sizeof(k.tier));
    if (apply(x, &k, 1) != 0)
        return;
    const json_t *org = json_object_get(x->body, "org");
    if (org != NULL && !json_is_string(org)) {
        bad(x, "org must be an org's slug");
        return;
    }
    if (gw_admin_target_org(x, json_string_value(org), 1, &o) != 0)
        return;
    k.org_id = o.id;
    char raw[GW_KEY_RAW_LEN + 1];
    int rc = gw_admin_key_insert(x->s, &k, raw, sizeof(raw));
    if (rc == 0)
        rc = gw_store_key_get(x->s, k.key_id, &k);
    if (rc != 0) {
        OPENSSL_cleanse(raw, sizeof(raw));
        gw_answer_store_failed(&x->an, "admin", x->rid, rc);
        return;
    }
    x->an.out = gw_admin_key_json(&k);
    if (x->an.out != NULL)
        json_object_set_new(x->an.out, "key", json_string(raw));
    OPENSSL_cleanse(raw, sizeof(raw));
    x->an.status = 201;
    audit_key(x, &k, NULL);
}

void gw_admin_keys_get(struct gw_admin_ctx *x)
{
    struct gw_key_rec k;
    if (visible_key(x, &k) != 0)
        return;
    x->an.out = gw_admin_key_json(&k);
    x->an.status = 200;
}

void gw_admin_keys_patch(struct gw_admin_ctx *x)
{
    struct gw_key_rec k;
    if (visible_key(x, &k) != 0)
        return;
    json_t *before = gw_admin_key_json(&k);
    int rc = apply(x, &k, 0) != 0 ? -1 : gw_store_key_set_policy(x->s, &k);
    if (rc == 0)
        rc = gw_store_key_get(x->s, k.key_id, &k);
    if (rc != 0) {
        json_decref(before);
        if (rc != -1)
            gw_answer_store_failed(&x->an, "admin", x->rid, rc);
        return;
    }
    x->an.out = gw_admin_key_json(&k);
    x->an.status = 200;
    audit_key(x, &k, before);
}

void gw_admin_keys_revoke(struct gw_admin_ctx *x)
{
    struct gw_key_rec k;
    if (visible_key(x, &k) != 0)
        return;
    json_t *before = gw_admin_key_json(&k);
    int rc = gw_store_key_revoke(x->s, k.key_id);
    if (rc == 0)
        rc = gw_store_key_get(x->s, k.key_id, &k);
    if (rc != 0) {
        json_decref(before);
        gw_answer_store_failed(&x->an, "admin", x->rid, rc);
        return;
    }
    x->an.out = gw_admin_key_json(&k);
    x->an.status = 200;
    audit_key(x, &k, before);
}

void gw_admin_keys_rotate(struct gw_admin_ctx *x)
{
    struct gw_key_rec k;
    int64_t grace = GRACE_DEFAULT_S;
    if (visible_key(x, &k) != 0)
        return;
    if (x->body != NULL) {
        const char *name;
        json_t *v;
        json_object_foreach(x->body, name, v) {
            if (strcmp(name, "grace_seconds") != 0 || !json_is_integer(v) ||
                json_integer_value(v) < 0 || json_integer_value(v) > GRACE_MAX_S) {
                bad(x, "the body takes grace_seconds: 0 to 2592000");
                return;
            }
            grace = json_integer_value(v);
        }
    }
    if (k.revoked) {
        gw_answer_fail(&x->an, 409, "invalid_request_error", "key_revoked",
                       "a revoked key cannot be rotated");
        return;
    }
    json_t *before = gw_admin_key_json(&k);
    char raw[GW_KEY_RAW_LEN + 1], prefix[GW_KEY_DISPLAY_PREFIX_LEN + 1];
    unsigned char hash[32];
    int rc = gw_key_generate(raw, sizeof(raw), hash);
    if (rc == 0) {
        memcpy(prefix, raw, GW_KEY_DISPLAY_PREFIX_LEN);
        prefix[GW_KEY_DISPLAY_PREFIX_LEN] = '\0';
        rc = gw_store_key_rotate(x->s, k.key_id, hash, prefix,
                                 grace > 0 ? gw_now_ms() + grace * 1000 : 0);
    }
    OPENSSL_cleanse(hash, sizeof(hash));
    if (rc == 0)
        rc = gw_store_key_get(x->s, k.key_id, &k);
    if (rc != 0) {
        OPENSSL_cleanse(raw, sizeof(raw));
        json_decref(before);
        gw_answer_store_failed(&x->an, "admin", x->rid, rc);
        return;
    }
    x->an.out = gw_admin_key_json(&k);
    if (x->an.out != NULL)
        json_object_set_new(x->an.out, "key", json_string(raw));
    OPENSSL_cleanse(raw, sizeof(raw));
    x->an.status = 201;
    audit_key(x, &k, before);
}
