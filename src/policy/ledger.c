/*
 * policy/ledger — see ledger.h.
 */
#include "policy/ledger.h"

#include <string.h>

/* ---- in-memory limits (SQLite) ---- */

static void memory_admit(const struct gw_ledger *l, struct gw_store *s, struct gw_admission *a)
{
    a->q.store = s;
    a->rc = a->first ? gw_limits_admit(l->limits, &a->q, a->hold, &a->why)
                     : gw_limits_rehold(l->limits, a->hold, &a->q, &a->why);
    if (a->rc != 0)
        return;
    if (a->first) {
        if ((a->rc = gw_store_usage_reserve(s, a->row)) != 0)
            gw_limits_settle(l->limits, a->hold, 0, 0); /* not written: nothing is held */
        return;
    }
    if ((a->rc = gw_store_usage_reserve(s, a->archive)) == 0)
        a->rc = gw_store_usage_settle(s, a->row);
    /* on a failed write the hold stays at the new total: more, never less, than it may cost */
}

/* ---- store-side limits (a shared store) ---- */

struct nth {
    struct gw_store *s;
    enum gw_scope scope;
    int64_t id, hour_start;
    const struct gw_scope_usage *u;
};

/* When the oldest requests that must leave the hour for this one to fit will have left it. */
static int64_t store_wait(void *arg, int tokens, int64_t add, int64_t limit, int64_t now)
{
    struct nth *n = arg;
    int64_t skip = tokens ? 0 : n->u->requests + add - limit - 1, at = 0;
    if (skip < 0)
        skip = 0;
    if (gw_store_usage_nth_request(n->s, n->scope, n->id, n->hour_start, skip, &at) != 0)
        return 1000;
    int64_t w = at + GW_LIMIT_WINDOW_MS - now + 1;
    return w > 0 ? w : 1;
}

static int scope_check(const struct gw_ledger *l, struct gw_store *s, enum gw_scope scope,
                       int64_t id, const struct gw_limit_set *lim, int64_t requests,
                       int64_t tokens, int64_t usd, int64_t now, struct gw_refusal *why)
{
    struct gw_scope_usage u;
    int64_t hour = now - GW_LIMIT_WINDOW_MS;
    int rc = gw_store_usage_snapshot(s, scope, id, hour, gw_budget_day_start(&l->windows, now),
                                     gw_budget_month_start(&l->windows, now), &u);
    if (rc != 0)
        return rc;
    struct nth n = {s, scope, id, hour, &u};
    return gw_limits_check(&l->windows, &u, lim, scope == GW_SCOPE_ORG ? "org" : "key",
                           requests, tokens, usd, now, store_wait, &n, why);
}

/* The per-request maximum applies to the whole request, fallbacks included. */
static int max_request(const struct gw_limit_set *lim, const char *scope, int64_t usd,
                       struct gw_refusal *why)
{
    if (lim == NULL || lim->max_request_usd_micros <= 0 || usd <= lim->max_request_usd_micros)
        return 0;
    why->scope = scope;
    why->limit = "max_request_usd";
    why->code = "request_cost_limit_exceeded";
    why->limit_value = lim->max_request_usd_micros;
    why->retry_after_ms = -1;
    return GW_ELIMIT;
}

static void store_admit(const struct gw_ledger *l, struct gw_store *s, struct gw_admission *a)
{
    const struct gw_limit_req *q = &a->q;
    int64_t requests = a->first && q->request ? 1 : 0;
    int64_t tokens = a->first ? q->tokens : q->tokens - a->held_tokens;
    int64_t usd = a->first ? q->usd : q->usd - a->held_usd;
    int rc;

    if (tokens < 0)
        tokens = 0;
    if (usd < 0)
        usd = 0;
    if ((rc = gw_store_tx_begin(s)) != 0) {
        a->rc = rc;
        return;
    }
    if ((q->org_id > 0 && (rc = gw_store_lock_scope(s, GW_SCOPE_ORG, q->org_id)) != 0) ||
        (rc = gw_store_lock_scope(s, GW_SCOPE_KEY, q->key_id)) != 0 ||
        (rc = max_request(q->key, "key", q->usd, &a->why)) != 0 ||
        (q->org_id > 0 && (rc = max_request(q->org, "org", q->usd, &a->why)) != 0) ||
        (rc = scope_check(l, s, GW_SCOPE_KEY, q->key_id, q->key, requests, tokens, usd,
                          q->now_ms, &a->why)) != 0 ||
        (q->org_id > 0 && (rc = scope_check(l, s, GW_SCOPE_ORG, q->org_id, q->org, requests,
                                            tokens, usd, q->now_ms, &a->why)) != 0))
        goto fail;
    if (a->first)
        rc = gw_store_usage_reserve(s, a->row);
    else if ((rc = gw_store_usage_reserve(s, a->archive)) == 0)
        rc = gw_store_usage_settle(s, a->row);
    if (rc != 0 || (rc = gw_store_tx_commit(s)) != 0)
        goto fail;
    a->rc = 0;
    return;
fail:
    gw_store_tx_rollback(s);
    a->rc = rc;
}

/* ---- the interface ---- */

void gw_ledger_admit(const struct gw_ledger *l, struct gw_store *s, struct gw_admission *a)
{
    memset(&a->why, 0, sizeof(a->why));
    if (l->limits != NULL)
        memory_admit(l, s, a);
    else
        store_admit(l, s, a);
}

int gw_ledger_settle(const struct gw_ledger *l, struct gw_store *s, struct gw_hold *hold,
                     const struct gw_usage_row *row, int64_t usd, int64_t tokens)
{
    int rc = row->request_id[0] != '\0' ? gw_store_usage_settle(s, row) : 0;
    if (l->limits != NULL)
        gw_limits_settle(l->limits, hold, usd, tokens);
    return rc;
}

int gw_ledger_view(const struct gw_ledger *l, struct gw_store *s, const struct gw_limit_req *q,
                   struct gw_budget_view *out)
{
    struct gw_limit_req r = *q;
    r.store = s;
    if (l->limits != NULL)
        return gw_limits_view(l->limits, &r, out);
    memset(out, 0, sizeof(*out));
    if (q->key->daily_usd_micros <= 0 && q->key->monthly_usd_micros <= 0)
        return 0;
    struct gw_scope_usage u;
    int64_t now = q->now_ms;
    int rc = gw_store_usage_snapshot(s, GW_SCOPE_KEY, q->key_id, now - GW_LIMIT_WINDOW_MS,
                                     gw_budget_day_start(&l->windows, now),
                                     gw_budget_month_start(&l->windows, now), &u);
    if (rc != 0)
        return rc;
    gw_budget_view_of(q->key, u.day_spent, u.month_spent, out);
    return 0;
}
