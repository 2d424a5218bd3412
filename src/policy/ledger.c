/*
 * policy/ledger — see ledger.h.
 *
 * The store-side limits read counters, not rows: the spend of each budget day and month
 * (usage_totals) and the requests and tokens of each second of the sliding hour (usage_rate),
 * both changed in the same transactions as the rows they summarise; what is in flight is
 * counted from the reserved rows (a partial index keeps that small). The hour has one-second
 * buckets and, like the in-memory one, rounds against the caller: an admission counts until 60
 * minutes after the end of its second.
 */
#include "policy/ledger.h"

#include <string.h>

#define HOUR_S (GW_LIMIT_WINDOW_MS / 1000)

/* ---- in-memory limits (SQLite) ---- */

static void memory_admit(const struct gw_ledger *l, struct gw_store *s, struct gw_admission *a)
{
    a->q.store = s;
    a->rc = a->first ? gw_limits_admit(l->limits, &a->q, a->hold, &a->why)
                     : gw_limits_rehold(l->limits, a->hold, &a->q, &a->why);
    if (a->rc != 0)
        return;
    if (!a->first) { /* held now, even if the write below fails: more, never less */
        a->now_held_usd = a->q.usd;
        a->now_held_tokens = a->q.tokens;
    }
    if (a->first) {
        if ((a->rc = gw_store_usage_reserve(s, a->row)) != 0)
            gw_limits_settle(l->limits, a->hold, 0, 0); /* not written: nothing is held */
        else
            a->now_held_usd = a->q.usd, a->now_held_tokens = a->q.tokens;
        return;
    }
    if ((a->rc = gw_store_usage_reserve(s, a->archive)) == 0)
        a->rc = gw_store_usage_settle(s, a->row);
}

/* ---- store-side limits (a shared store) ---- */

/* The first second still in the sliding hour at now. */
static int64_t hour_second(int64_t now) { return (now - GW_LIMIT_WINDOW_MS) / 1000; }

struct waiter {
    int tokens;
    int64_t counted, add, limit, now;
    int64_t wait;
};

static int walk_bucket(void *arg, int64_t second, int64_t requests, int64_t tokens)
{
    struct waiter *w = arg;
    w->counted -= w->tokens ? tokens : requests;
    if (w->counted + w->add > w->limit)
        return 0;
    w->wait = (second + 1) * 1000 + GW_LIMIT_WINDOW_MS - w->now;
    return 1;
}

struct wait_arg {
    struct gw_store *s;
    enum gw_scope scope;
    int64_t id;
    const struct gw_scope_usage *u;
};

/* When enough of the hour's buckets, oldest first, will have left it for this one to fit. */
static int64_t store_wait(void *arg, int tokens, int64_t add, int64_t limit, int64_t now)
{
    struct wait_arg *a = arg;
    struct waiter w = {tokens, tokens ? a->u->tokens : a->u->requests, add, limit, now, 1000};
    if (gw_store_rate_list(a->s, a->scope, a->id, hour_second(now), walk_bucket, &w) != 0)
        return 1000;
    return w.wait > 0 ? w.wait : 1;
}

/* What a scope's limits need read (GW_SNAP_*): only what is set. */
static int want_of(const struct gw_limit_set *lim)
{
    if (lim == NULL)
        return 0;
    return (lim->rph > 0 || lim->tph > 0 ? GW_SNAP_HOUR : 0) |
           (lim->max_concurrent > 0 ? GW_SNAP_INFLIGHT : 0) |
           (lim->daily_usd_micros > 0 || lim->monthly_usd_micros > 0 ? GW_SNAP_BUDGET : 0);
}

/* Does a limit on the scope read what the store has counted? Such a scope is locked for the
 * check and the change; one without is not, and its counters spread over shards. */
static int counts(const struct gw_limit_set *lim) { return want_of(lim) != 0; }

static int scope_check(const struct gw_ledger *l, struct gw_store *s, enum gw_scope scope,
                       int64_t id, const struct gw_limit_set *lim,
                       const struct gw_scope_usage *u, int64_t requests, int64_t tokens,
                       int64_t usd, int64_t now, struct gw_refusal *why)
{
    if (!counts(lim))
        return 0;
    struct wait_arg w = {s, scope, id, u};
    return gw_limits_check(&l->windows, u, lim, scope == GW_SCOPE_ORG ? "org" : "key",
                           requests, tokens, usd, now, store_wait, &w, why);
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

static int max_requests(const struct gw_limit_req *q, struct gw_refusal *why)
{
    int rc = max_request(q->key, "key", q->usd, why);
    return rc != 0 || q->org_id <= 0 ? rc : max_request(q->org, "org", q->usd, why);
}

/* A first reservation needs no lock when neither scope has a limit that reads the store. */
static int lockless(const struct gw_admission *a)
{
    return a->first && !counts(a->q.key) && !(a->q.org_id > 0 && counts(a->q.org));
}

/* The counters' change for a request created at created_ms. */
static struct gw_counters_delta delta(const struct gw_ledger *l, const struct gw_limit_req *q,
                                      int64_t created_ms, int64_t usd, int64_t requests,
                                      int64_t tokens, int64_t prune_before)
{
    struct gw_counters_delta d = {
        .key_id = q->key_id,
        .org_id = q->org_id,
        .day_start = gw_budget_day_start(&l->windows, created_ms),
        .month_start = gw_budget_month_start(&l->windows, created_ms),
        .usd = usd,
        .second = created_ms / 1000,
        .requests = requests,
        .tokens = tokens,
        .prune_before = prune_before,
        .spread_key = !counts(q->key),
        .spread_org = !counts(q->org),
    };
    return d;
}

static void store_admit(const struct gw_ledger *l, struct gw_store *s, struct gw_admission *a)
{
    const struct gw_limit_req *q = &a->q;
    int64_t requests = a->first && q->request ? 1 : 0;
    int64_t tokens = a->first ? q->tokens : q->tokens - a->held_tokens;
    int64_t usd = a->first ? q->usd : q->usd - a->held_usd;
    struct gw_counters_delta d = delta(l, q, a->row->created_ms, usd, requests, tokens,
                                       hour_second(q->now_ms) - 1);
    int lock_org = q->org_id > 0 && !d.spread_org, lock_key = !d.spread_key;
    int rc;

    if ((rc = max_requests(q, &a->why)) != 0) {
        a->rc = rc;
        return;
    }
    if (lockless(a)) { /* nothing to check: one atomic write */
        rc = gw_store_usage_reserve_counted(s, a->row, &d);
        goto out;
    }
    /* the transaction, the locks and what the limits read, at once */
    struct gw_admission_read rd = {
        .lock_org = lock_org,
        .lock_key = lock_key,
        .org_id = q->org_id,
        .key_id = q->key_id,
        .org_want = q->org_id > 0 ? want_of(q->org) : 0,
        .key_want = want_of(q->key),
        .hour_start = hour_second(q->now_ms),
        .day_start = gw_budget_day_start(&l->windows, q->now_ms),
        .month_start = gw_budget_month_start(&l->windows, q->now_ms),
    };
    struct gw_scope_usage ku, ou;
    if ((rc = gw_store_admission_begin(s, &rd, &ku, &ou)) != 0) {
        a->rc = rc;
        return;
    }
    /* the limits check only what grows */
    int64_t ctok = tokens > 0 ? tokens : 0, cusd = usd > 0 ? usd : 0;
    if ((rc = scope_check(l, s, GW_SCOPE_KEY, q->key_id, q->key, &ku, requests, ctok, cusd,
                          q->now_ms, &a->why)) != 0 ||
        (q->org_id > 0 && (rc = scope_check(l, s, GW_SCOPE_ORG, q->org_id, q->org, &ou,
                                            requests, ctok, cusd, q->now_ms, &a->why)) != 0))
        goto fail;
    if (a->first)
        rc = gw_store_usage_reserve_counted(s, a->row, &d);
    else if ((rc = gw_store_usage_reserve(s, a->archive)) == 0 &&
             (rc = gw_store_usage_settle(s, a->row)) == 0)
        rc = gw_store_counters_add(s, &d);
    if (rc != 0 || (rc = gw_store_tx_commit(s)) != 0)
        goto fail;
out:
    a->rc = rc;
    if (rc == 0) {
        a->now_held_usd = q->usd;
        a->now_held_tokens = q->tokens;
    }
    return;
fail:
    gw_store_tx_rollback(s);
    a->rc = rc;
}

/* ---- the interface ---- */

void gw_ledger_admit(const struct gw_ledger *l, struct gw_store *s, struct gw_admission *a)
{
    memset(&a->why, 0, sizeof(a->why));
    a->now_held_usd = a->first ? 0 : a->held_usd;
    a->now_held_tokens = a->first ? 0 : a->held_tokens;
    if (l->limits != NULL)
        memory_admit(l, s, a);
    else
        store_admit(l, s, a);
}

int gw_ledger_admit_write(const struct gw_ledger *l, struct gw_admission *a,
                          struct gw_store_write *w)
{
    struct gw_refusal why;
    if (l->limits != NULL || !lockless(a) || max_requests(&a->q, &why) != 0)
        return 0;
    memset(&a->why, 0, sizeof(a->why));
    a->now_held_usd = a->now_held_tokens = 0;
    *w = (struct gw_store_write){
        .row = a->row,
        .d = delta(l, &a->q, a->row->created_ms, a->q.usd, a->q.request ? 1 : 0, a->q.tokens,
                   hour_second(a->q.now_ms) - 1),
    };
    return 1;
}

void gw_ledger_admit_written(struct gw_admission *a, const struct gw_store_write *w)
{
    a->rc = w->rc;
    if (w->rc == 0) {
        a->now_held_usd = a->q.usd;
        a->now_held_tokens = a->q.tokens;
    }
}

void gw_ledger_abandon(const struct gw_ledger *l, struct gw_admission *a, int rc)
{
    if (a->rc == GW_ELIMIT) /* refused: it wrote nothing */
        return;
    if (a->first && l->limits != NULL) {
        gw_limits_settle(l->limits, a->hold, 0, 0);
        a->now_held_usd = a->now_held_tokens = 0;
    } /* a fallback's hold stays as it was raised: more, never less */
    a->rc = rc;
}

int gw_ledger_settle(const struct gw_ledger *l, struct gw_store *s, struct gw_hold *hold,
                     const struct gw_usage_row *row, int64_t usd, int64_t tokens,
                     const struct gw_limit_req *q, int64_t held_usd, int64_t held_tokens)
{
    if (l->limits != NULL) { /* the counters are in memory: the row is only the record */
        int rc = row->request_id[0] != '\0' ? gw_store_usage_settle(s, row) : 0;
        gw_limits_settle(l->limits, hold, usd, tokens);
        return rc;
    }
    if (row->request_id[0] == '\0')
        return 0; /* no row was written */
    /* the counters move from what was held to what it cost, with the row; into the writing
     * connection's shards, not the locked writers' (shard 0): a settlement takes no lock, and
     * on shard 0 it would hold the rows the scope's next admission changes until its commit
     * is durable (a read sums every shard) */
    struct gw_counters_delta d =
        delta(l, q, row->created_ms, usd - held_usd, 0, tokens - held_tokens, 0);
    d.spread_key = d.spread_org = 1;
    return gw_store_usage_settle_counted(s, row, &d);
}

int gw_ledger_settle_write(const struct gw_ledger *l, const struct gw_usage_row *row,
                           int64_t usd, int64_t tokens, const struct gw_limit_req *q,
                           int64_t held_usd, int64_t held_tokens, struct gw_store_write *w)
{
    /* a scope whose limits read the store settles at once, not with the next batch: what it
     * frees (a concurrency slot, a held budget) is there for its next request */
    if (l->limits != NULL || row->request_id[0] == '\0' || counts(q->key) ||
        (q->org_id > 0 && counts(q->org)))
        return 0;
    *w = (struct gw_store_write){
        .settle = 1,
        .row = row,
        .d = delta(l, q, row->created_ms, usd - held_usd, 0, tokens - held_tokens, 0),
    };
    return 1;
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
    int rc = gw_store_usage_snapshot(s, GW_SCOPE_KEY, q->key_id, hour_second(now),
                                     gw_budget_day_start(&l->windows, now),
                                     gw_budget_month_start(&l->windows, now), GW_SNAP_BUDGET, &u);
    if (rc != 0)
        return rc;
    gw_budget_view_of(q->key, u.day_spent, u.month_spent, out);
    return 0;
}
