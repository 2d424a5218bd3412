/*
 * admin — the admin plane's operations: orgs and their policy, API keys (create, list, read,
 * change, revoke, rotate), the audit trail, providers. One implementation for the HTTP API
 * (core/admin.c routes to these, on a store thread) and the CLI (src/cli calls them directly).
 *
 * A handler gets the acting key (its role and org), the request (the path's {id}, the query,
 * the JSON body) and a store connection; it checks permission on the object itself, does the
 * work and leaves the answer in ctx->an (a JSON body and status, or a refusal).
 *
 * Invariants:
 * - Roles: the superadmin acts on every org; an org_admin on its own org only; a member on none
 *   (the router refuses it before a handler runs). An object of another org is answered 404,
 *   exactly as one that does not exist: no handler says whether it exists.
 * - A successful change fills ctx->au (what, on what, before/after) and the caller appends it
 *   to the audit trail in the same store job; nothing secret is ever put there (a raw key never
 *   leaves the answer of the request that created it).
 */
#ifndef GW_ADMIN_ADMIN_H
#define GW_ADMIN_ADMIN_H

#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "core/answer.h"
#include "core/config.h"
#include "store/store.h"

/* What a change leaves for the audit trail (owned JSON is freed by gw_admin_ctx_cleanup). */
struct gw_admin_audit {
    int set;             /* a change was made */
    int64_t org_id;      /* the org acted on */
    char target[200];    /* the object: "org:<slug>", "key:<key_id>", ... */
    json_t *before;      /* the object before (NULL: created) */
    json_t *after;       /* and after (NULL: deleted) */
};

struct gw;

struct gw_admin_ctx {
    struct gw_store *s;
    const struct gw_config *cfg;
    struct gw *gw;                /* the running gateway (NULL from the CLI) */
    const struct gw_key_rec *who; /* the acting key */
    int super;                    /* who is the superadmin */
    const char *rid;              /* the request id ("cli" from the command line) */
    const char *id;               /* the path's {id} or {slug} ("" none) */
    const struct evkeyvalq *q;    /* the query (NULL: none) */
    json_t *body;                 /* the JSON body (NULL: none) */
    struct gw_answer an;
    struct gw_admin_audit au;
};

typedef void (*gw_admin_fn)(struct gw_admin_ctx *x);

/* The operations. */
void gw_admin_orgs_list(struct gw_admin_ctx *x);
void gw_admin_orgs_create(struct gw_admin_ctx *x);
void gw_admin_orgs_get(struct gw_admin_ctx *x);
void gw_admin_orgs_patch(struct gw_admin_ctx *x);
void gw_admin_keys_list(struct gw_admin_ctx *x);
void gw_admin_keys_create(struct gw_admin_ctx *x);
void gw_admin_keys_get(struct gw_admin_ctx *x);
void gw_admin_keys_patch(struct gw_admin_ctx *x);
void gw_admin_keys_revoke(struct gw_admin_ctx *x);
void gw_admin_keys_rotate(struct gw_admin_ctx *x);
void gw_admin_app_clients_list(struct gw_admin_ctx *x);
void gw_admin_app_clients_create(struct gw_admin_ctx *x);
void gw_admin_app_clients_get(struct gw_admin_ctx *x);
void gw_admin_app_clients_patch(struct gw_admin_ctx *x);
void gw_admin_app_clients_revoke(struct gw_admin_ctx *x);
void gw_admin_app_clients_approve(struct gw_admin_ctx *x);
void gw_admin_audit_list(struct gw_admin_ctx *x);
void gw_admin_providers_list(struct gw_admin_ctx *x);
void gw_admin_usage_query(struct gw_admin_ctx *x);

/* The usage filter of the query (from, to, org, key, model, provider), the range at most
 * max_range_ms (0: any): 0, or -1 having answered. */
int gw_admin_usage_filter(struct gw_admin_ctx *x, struct gw_usage_filter *f, int64_t max_range_ms);

/* A list answer's page, filled from a store callback asked for limit + 1 rows: the extra row
 * only says that a next page exists. In the callback: `if (gw_admin_list_full(l)) return 1;`
 * then `return gw_admin_list_add(l, row_id, item);` (item: a new reference; NULL fails). */
struct gw_admin_list {
    json_t *data;
    int n, limit;
    int64_t last; /* the row id of the page's last item: the next cursor */
};
void gw_admin_list_init(struct gw_admin_list *l, int limit);
int gw_admin_list_full(struct gw_admin_list *l);
int gw_admin_list_add(struct gw_admin_list *l, int64_t id, json_t *item);
/* Answer {object: "list", data, next_cursor} — or, rc being the store's failure, 503. */
void gw_admin_list_answer(struct gw_admin_ctx *x, struct gw_admin_list *l, int rc);

/* A change was made to object "kind:id" of org_id: fill ctx->au for its audit entry. before
 * and after are taken (new references; NULL: none); after NULL means the answer itself. */
void gw_admin_audited(struct gw_admin_ctx *x, int64_t org_id, const char *kind, const char *id,
                      json_t *before, json_t *after);

/* Append ctx->au to the audit trail as action (after a handler succeeded); 0 or the store's
 * error (the caller then answers 503: a change without its audit entry is not reported done). */
int gw_admin_audit_write(struct gw_admin_ctx *x, const char *action);
void gw_admin_ctx_cleanup(struct gw_admin_ctx *x);

/* Insert rec (org, name, role, tier, policy set) as a new key with a fresh secret: its raw
 * form goes to raw (rawsz >= GW_KEY_RAW_LEN + 1), shown once; rec gets key_id and prefix. */
int gw_admin_key_insert(struct gw_store *s, struct gw_key_rec *rec, char *raw, size_t rawsz);

/* Shared by the handlers and the app clients' (core/admin.c). */
int gw_admin_is_provider(const char *s);
int gw_admin_model_id_ok(const char *m);
/* A JSON array of strings, each accepted by ok, at most max_items, joined with commas into
 * dst. -1 with why in bad. */
int gw_admin_join_list(const json_t *arr, int (*ok)(const char *), size_t max_items, char *dst,
                       size_t dstsz, const char *what, char *bad, size_t badsz);
json_t *gw_admin_csv_array(const char *csv);
/* A query parameter (NULL: absent). */
const char *gw_admin_param(const struct gw_admin_ctx *x, const char *name);
/* limit (1..max, default def) and cursor (an integer >= 0) from the query: 0, or -1 having
 * answered 400. */
int gw_admin_page(struct gw_admin_ctx *x, int def, int max, int *limit, int64_t *cursor);
/* The org an admin request acts on: "org" in the query or body for the superadmin (required
 * when need is set), else the acting key's own. 0 with *org filled (id 0: every org, for the
 * superadmin without one), or -1 having answered (404 for an unknown or another org). */
int gw_admin_target_org(struct gw_admin_ctx *x, const char *slug, int need, struct gw_org *org);

#endif
