/*
 * policy/limits — in-memory admission against every window of a key and its org; see
 * limits.h.
 *
 * Scopes live in 64 lock stripes per kind (keys, orgs), each an open-addressing table of
 * scope pointers; a scope is never freed while the gateway lives, so a hold may point at it.
 * A scope's sliding hour is a ring of 100 ms slots (requests and tokens admitted in each),
 * pruned as time passes, with running sums; at most 36,001 slots, allocated as traffic needs.
 */
#include "policy/limits.h"

#include <pthread.h>
#include <string.h>

#include "util/mem.h"

#define NSTRIPES 64
#define MAX_SLOTS (GW_LIMIT_WINDOW_MS / GW_LIMIT_SLOT_MS + 1)

struct slot {
    int64_t slot;
    int64_t requests;
    int64_t tokens;
};

struct gw_limit_scope {
    int64_t id;
    int loaded;
    struct slot *ring;
    int cap, head, n; /* ring[head] is the oldest of n slots */
    int64_t requests, tokens; /* sums over the ring */
    int64_t inflight;
    int64_t held_usd;         /* of the spend below: worst cases still in flight */
    int64_t day, day_spent;
    int64_t month, month_spent;
};

struct stripe {
    pthread_mutex_t mu;
    struct gw_limit_scope **tab;
    int cap, n;
};

struct gw_limits {
    struct gw_budget_windows w;
    struct stripe keys[NSTRIPES], orgs[NSTRIPES];
};

int gw_limits_new(const struct gw_budget_windows *w, struct gw_limits **out)
{
    struct gw_limits *l = gw_calloc(1, sizeof(*l));
    *out = NULL;
    if (l == NULL)
        return GW_ENOMEM;
    l->w = *w;
    for (int i = 0; i < NSTRIPES; i++) {
        pthread_mutex_init(&l->keys[i].mu, NULL);
        pthread_mutex_init(&l->orgs[i].mu, NULL);
    }
    *out = l;
    return 0;
}

static void stripe_free(struct stripe *s)
{
    for (int i = 0; i < s->cap; i++)
        if (s->tab[i] != NULL) {
            gw_free(s->tab[i]->ring);
            gw_free(s->tab[i]);
        }
    gw_free(s->tab);
    pthread_mutex_destroy(&s->mu);
}

void gw_limits_free(struct gw_limits *l)
{
    if (l == NULL)
        return;
    for (int i = 0; i < NSTRIPES; i++) {
        stripe_free(&l->keys[i]);
        stripe_free(&l->orgs[i]);
    }
    gw_free(l);
}

static uint64_t mix(int64_t id)
{
    uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return x ^ (x >> 29);
}

static struct stripe *stripe_of(struct gw_limits *l, enum gw_scope kind, int64_t id)
{
    struct stripe *s = kind == GW_SCOPE_ORG ? l->orgs : l->keys;
    return &s[mix(id) % NSTRIPES];
}

/* Find or create the scope (stripe locked). NULL on OOM. */
static struct gw_limit_scope *scope_get(struct stripe *s, int64_t id)
{
    if (s->cap > 0) {
        for (uint64_t i = mix(id) >> 6, k = 0; k < (uint64_t)s->cap; k++) {
            struct gw_limit_scope *sc = s->tab[(i + k) % (uint64_t)s->cap];
            if (sc == NULL)
                break;
            if (sc->id == id)
                return sc;
        }
    }
    if ((s->n + 1) * 2 > s->cap) { /* grow: keep the table at most half full */
        int ncap = s->cap ? s->cap * 2 : 16;
        struct gw_limit_scope **nt = gw_calloc((size_t)ncap, sizeof(*nt));
        if (nt == NULL)
            return NULL;
        for (int j = 0; j < s->cap; j++) {
            struct gw_limit_scope *sc = s->tab[j];
            if (sc == NULL)
                continue;
            uint64_t i = mix(sc->id) >> 6;
            while (nt[i % (uint64_t)ncap] != NULL)
                i++;
            nt[i % (uint64_t)ncap] = sc;
        }
        gw_free(s->tab);
        s->tab = nt;
        s->cap = ncap;
    }
    struct gw_limit_scope *sc = gw_calloc(1, sizeof(*sc));
    if (sc == NULL)
        return NULL;
    sc->id = id;
    uint64_t i = mix(id) >> 6;
    while (s->tab[i % (uint64_t)s->cap] != NULL)
        i++;
    s->tab[i % (uint64_t)s->cap] = sc;
    s->n++;
    return sc;
}

/* ---- the sliding hour ---- */

static struct slot *ring_at(struct gw_limit_scope *sc, int i)
{
    return &sc->ring[(sc->head + i) % sc->cap];
}

/* The time a slot stops counting. */
static int64_t slot_expiry(int64_t slot) { return (slot + 1) * GW_LIMIT_SLOT_MS + GW_LIMIT_WINDOW_MS; }

static void prune(struct gw_limit_scope *sc, int64_t now)
{
    while (sc->n > 0 && slot_expiry(ring_at(sc, 0)->slot) <= now) {
        struct slot *s = ring_at(sc, 0);
        sc->requests -= s->requests;
        sc->tokens -= s->tokens;
        sc->head = (sc->head + 1) % sc->cap;
        sc->n--;
    }
}

/* Make sure a slot can be appended (grow the ring now, so that applying cannot fail). */
static int ring_room(struct gw_limit_scope *sc)
{
    if (sc->n < sc->cap)
        return 0;
    int ncap = sc->cap ? sc->cap * 2 : 8;
    if (ncap > MAX_SLOTS)
        ncap = MAX_SLOTS;
    if (ncap <= sc->n)
        return GW_BUG(1); /* a pruned ring holds at most MAX_SLOTS */
    struct slot *nr = gw_malloc((size_t)ncap * sizeof(*nr));
    if (nr == NULL)
        return GW_ENOMEM;
    for (int i = 0; i < sc->n; i++)
        nr[i] = *ring_at(sc, i);
    gw_free(sc->ring);
    sc->ring = nr;
    sc->cap = ncap;
    sc->head = 0;
    return 0;
}

/* Add to the newest slot, or append one (after ring_room). Slots only grow: the clock does
 * not go back within a process, and rows load oldest first. */
static void ring_put(struct gw_limit_scope *sc, int64_t slot, int64_t requests, int64_t tokens)
{
    if (sc->n > 0 && ring_at(sc, sc->n - 1)->slot >= slot) {
        struct slot *last = ring_at(sc, sc->n - 1);
        last->requests += requests;
        last->tokens += tokens;
    } else {
        *ring_at(sc, sc->n) = (struct slot){slot, requests, tokens};
        sc->n++;
    }
    sc->requests += requests;
    sc->tokens += tokens;
}

/* Change the tokens counted in a slot that may still be in the window. */
static void ring_adjust(struct gw_limit_scope *sc, int64_t slot, int64_t dtokens)
{
    int lo = 0, hi = sc->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        struct slot *s = ring_at(sc, mid);
        if (s->slot == slot) {
            s->tokens += dtokens;
            sc->tokens += dtokens;
            return;
        }
        if (s->slot < slot)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
}

/* When enough will have left the window that `counted(ring) - freed + add <= limit`. */
static int64_t wait_until_fits(struct gw_limit_scope *sc, int tokens, int64_t add, int64_t limit,
                               int64_t now)
{
    int64_t total = tokens ? sc->tokens : sc->requests;
    for (int i = 0; i < sc->n; i++) {
        struct slot *s = ring_at(sc, i);
        total -= tokens ? s->tokens : s->requests;
        if (total + add <= limit)
            return slot_expiry(s->slot) - now;
    }
    return GW_LIMIT_SLOT_MS;
}

/* ---- loading and windows ---- */

struct load_ctx {
    struct gw_limit_scope *sc;
    int rc;
};

static int load_row(void *arg, int64_t created_ms, int is_request, int64_t tokens)
{
    struct load_ctx *x = arg;
    if ((x->rc = ring_room(x->sc)) == 0)
        ring_put(x->sc, created_ms / GW_LIMIT_SLOT_MS, is_request ? 1 : 0, tokens);
    return x->rc;
}

/* Roll the budget windows forward to now (a new day or month starts at zero). */
static void roll(struct gw_limits *l, struct gw_limit_scope *sc, int64_t now)
{
    int64_t day = gw_budget_day_start(&l->w, now), month = gw_budget_month_start(&l->w, now);
    if (sc->day != day) {
        sc->day = day;
        sc->day_spent = 0;
    }
    if (sc->month != month) {
        sc->month = month;
        sc->month_spent = 0;
    }
    prune(sc, now);
}

static int load(struct gw_limits *l, struct gw_limit_scope *sc, enum gw_scope kind,
                const struct gw_limit_req *q)
{
    struct load_ctx x = {sc, 0};
    int64_t now = q->now_ms;
    int64_t day = gw_budget_day_start(&l->w, now), month = gw_budget_month_start(&l->w, now);
    int rc;

    if (sc->loaded)
        return 0;
    if (q->store == NULL)
        return GW_ESTORE;
    if ((rc = gw_store_usage_spent(q->store, kind, sc->id, day, &sc->day_spent)) != 0 ||
        (rc = gw_store_usage_spent(q->store, kind, sc->id, month, &sc->month_spent)) != 0 ||
        (rc = gw_store_usage_recent(q->store, kind, sc->id,
                                    now - GW_LIMIT_WINDOW_MS - GW_LIMIT_SLOT_MS, load_row, &x)) !=
            0 ||
        (rc = x.rc) != 0) {
        sc->day_spent = sc->month_spent = sc->requests = sc->tokens = 0;
        sc->n = sc->head = 0;
        return rc == GW_ENOMEM ? rc : GW_ESTORE;
    }
    sc->day = day;
    sc->month = month;
    sc->loaded = 1;
    return 0;
}

/* ---- checks ---- */

static int refuse(struct gw_refusal *why, const char *scope, const char *limit, const char *code,
                  int64_t value, int64_t retry_after_ms)
{
    why->scope = scope;
    why->limit = limit;
    why->code = code;
    why->limit_value = value;
    why->retry_after_ms = retry_after_ms;
    return GW_ELIMIT;
}

int gw_limits_check(const struct gw_budget_windows *w, const struct gw_scope_usage *u,
                    const struct gw_limit_set *lim, const char *scope, int64_t requests,
                    int64_t tokens, int64_t usd, int64_t now, gw_limits_wait_fn wait,
                    void *warg, struct gw_refusal *why)
{
    if (lim == NULL)
        return 0;
    if (lim->max_request_usd_micros > 0 && requests > 0 && usd > lim->max_request_usd_micros)
        return refuse(why, scope, "max_request_usd", "request_cost_limit_exceeded",
                      lim->max_request_usd_micros, -1);
    if (lim->max_concurrent > 0 && requests > 0 && u->inflight + 1 > lim->max_concurrent)
        return refuse(why, scope, "max_concurrent", "concurrency_limit_exceeded",
                      lim->max_concurrent, 1000);
    if (lim->rph > 0 && requests > 0 && u->requests + 1 > lim->rph)
        return refuse(why, scope, "requests_per_hour", "requests_per_hour_exceeded", lim->rph,
                      wait(warg, 0, 1, lim->rph, now));
    if (lim->tph > 0 && tokens > 0 && u->tokens + tokens > lim->tph)
        return refuse(why, scope, "tokens_per_hour", "tokens_per_hour_exceeded", lim->tph,
                      tokens > lim->tph ? -1 : wait(warg, 1, tokens, lim->tph, now));
    /* a budget blocked only by worst cases still in flight frees up soon; else at the reset */
    if (lim->daily_usd_micros > 0 && usd > 0 && u->day_spent + usd > lim->daily_usd_micros)
        return refuse(why, scope, "daily_usd", "daily_budget_exceeded", lim->daily_usd_micros,
                      usd > lim->daily_usd_micros ? -1
                      : u->day_spent - u->held_usd + usd <= lim->daily_usd_micros
                          ? 1000
                          : gw_budget_next_day(w, now) - now);
    if (lim->monthly_usd_micros > 0 && usd > 0 &&
        u->month_spent + usd > lim->monthly_usd_micros)
        return refuse(why, scope, "monthly_usd", "monthly_budget_exceeded",
                      lim->monthly_usd_micros,
                      usd > lim->monthly_usd_micros ? -1
                      : u->month_spent - u->held_usd + usd <= lim->monthly_usd_micros
                          ? 1000
                          : gw_budget_next_month(w, now) - now);
    return 0;
}

static int64_t ring_wait(void *arg, int tokens, int64_t add, int64_t limit, int64_t now)
{
    return wait_until_fits(arg, tokens, add, limit, now);
}

/* Would adding (requests, tokens, usd) to sc break one of its limits? */
static int check(struct gw_limits *l, struct gw_limit_scope *sc, const struct gw_limit_set *lim,
                 const char *scope, int64_t requests, int64_t tokens, int64_t usd, int64_t now,
                 struct gw_refusal *why)
{
    struct gw_scope_usage u = {sc->requests, sc->tokens, sc->inflight, sc->held_usd,
                               sc->day_spent, sc->month_spent};
    return gw_limits_check(&l->w, &u, lim, scope, requests, tokens, usd, now, ring_wait, sc, why);
}

static void lock2(struct stripe *a, struct stripe *b)
{
    if (a != NULL)
        pthread_mutex_lock(&a->mu);
    pthread_mutex_lock(&b->mu);
}

static void unlock2(struct stripe *a, struct stripe *b)
{
    pthread_mutex_unlock(&b->mu);
    if (a != NULL)
        pthread_mutex_unlock(&a->mu);
}

/* Apply (requests, tokens, usd) to sc in the current windows (after ring_room). */
static void apply(struct gw_limit_scope *sc, int64_t slot, int64_t requests, int64_t tokens,
                  int64_t usd)
{
    ring_put(sc, slot, requests, tokens);
    sc->inflight += requests;
    sc->held_usd += usd;
    sc->day_spent += usd;
    sc->month_spent += usd;
}

int gw_limits_admit(struct gw_limits *l, const struct gw_limit_req *q, struct gw_hold *h,
                    struct gw_refusal *why)
{
    struct stripe *so = q->org_id > 0 ? stripe_of(l, GW_SCOPE_ORG, q->org_id) : NULL;
    struct stripe *sk = stripe_of(l, GW_SCOPE_KEY, q->key_id);
    struct gw_limit_scope *org = NULL, *key;
    int64_t now = q->now_ms, slot = now / GW_LIMIT_SLOT_MS;
    int rc;

    memset(h, 0, sizeof(*h));
    lock2(so, sk);
    if ((so != NULL && (org = scope_get(so, q->org_id)) == NULL) ||
        (key = scope_get(sk, q->key_id)) == NULL) {
        rc = GW_ENOMEM;
        goto out;
    }
    if ((org != NULL && (rc = load(l, org, GW_SCOPE_ORG, q)) != 0) ||
        (rc = load(l, key, GW_SCOPE_KEY, q)) != 0)
        goto out;
    if (org != NULL)
        roll(l, org, now);
    roll(l, key, now);
    if ((rc = check(l, key, q->key, "key", q->request, q->tokens, q->usd, now, why)) != 0 ||
        (org != NULL &&
         (rc = check(l, org, q->org, "org", q->request, q->tokens, q->usd, now, why)) != 0) ||
        (rc = ring_room(key)) != 0 || (org != NULL && (rc = ring_room(org)) != 0))
        goto out;
    apply(key, slot, q->request, q->tokens, q->usd);
    if (org != NULL)
        apply(org, slot, q->request, q->tokens, q->usd);
    *h = (struct gw_hold){key, org, slot, q->tokens, q->usd, key->day, key->month, q->request, 1};
out:
    unlock2(so, sk);
    return rc;
}

/* Move what sc counts for h by (dtokens, dusd). */
static void shift(struct gw_limit_scope *sc, const struct gw_hold *h, int64_t dtokens,
                  int64_t dusd)
{
    ring_adjust(sc, h->slot, dtokens);
    sc->held_usd += dusd;
    if (sc->day == h->day)
        sc->day_spent += dusd;
    if (sc->month == h->month)
        sc->month_spent += dusd;
}

static struct stripe *hold_stripe(struct gw_limits *l, struct gw_limit_scope *sc,
                                  enum gw_scope kind)
{
    return sc != NULL ? stripe_of(l, kind, sc->id) : NULL;
}

int gw_limits_rehold(struct gw_limits *l, struct gw_hold *h, const struct gw_limit_req *q,
                     struct gw_refusal *why)
{
    if (!h->active)
        return GW_BUG(1);
    struct stripe *so = hold_stripe(l, h->org, GW_SCOPE_ORG);
    struct stripe *sk = hold_stripe(l, h->key, GW_SCOPE_KEY);
    int64_t dt = q->tokens - h->tokens, du = q->usd - h->usd;
    int rc = 0;

    lock2(so, sk);
    if (h->org != NULL)
        roll(l, h->org, q->now_ms);
    roll(l, h->key, q->now_ms);
    /* check the increase only (requests 0: the request is counted already) */
    if ((rc = check(l, h->key, q->key, "key", 0, dt > 0 ? dt : 0, du > 0 ? du : 0, q->now_ms,
                    why)) != 0 ||
        (h->org != NULL && (rc = check(l, h->org, q->org, "org", 0, dt > 0 ? dt : 0,
                                       du > 0 ? du : 0, q->now_ms, why)) != 0))
        goto out;
    if (q->key->max_request_usd_micros > 0 && q->usd > q->key->max_request_usd_micros) {
        rc = refuse(why, "key", "max_request_usd", "request_cost_limit_exceeded",
                    q->key->max_request_usd_micros, -1);
        goto out;
    }
    if (h->org != NULL && q->org != NULL && q->org->max_request_usd_micros > 0 &&
        q->usd > q->org->max_request_usd_micros) {
        rc = refuse(why, "org", "max_request_usd", "request_cost_limit_exceeded",
                    q->org->max_request_usd_micros, -1);
        goto out;
    }
    shift(h->key, h, dt, du);
    if (h->org != NULL)
        shift(h->org, h, dt, du);
    h->tokens = q->tokens;
    h->usd = q->usd;
out:
    unlock2(so, sk);
    return rc;
}

void gw_limits_settle(struct gw_limits *l, struct gw_hold *h, int64_t usd, int64_t tokens)
{
    if (h == NULL || !h->active)
        return;
    struct stripe *so = hold_stripe(l, h->org, GW_SCOPE_ORG);
    struct stripe *sk = hold_stripe(l, h->key, GW_SCOPE_KEY);
    lock2(so, sk);
    struct gw_limit_scope *scopes[2] = {h->key, h->org};
    for (int i = 0; i < 2; i++) {
        struct gw_limit_scope *sc = scopes[i];
        if (sc == NULL)
            continue;
        shift(sc, h, tokens - h->tokens, usd - h->usd);
        sc->held_usd -= usd; /* what stays is spent, no longer held */
        sc->inflight -= h->request;
    }
    unlock2(so, sk);
    memset(h, 0, sizeof(*h));
}

int gw_limits_view(struct gw_limits *l, const struct gw_limit_req *q, struct gw_budget_view *out)
{
    struct stripe *sk = stripe_of(l, GW_SCOPE_KEY, q->key_id);
    struct gw_limit_scope *key;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (q->key->daily_usd_micros <= 0 && q->key->monthly_usd_micros <= 0)
        return 0;
    pthread_mutex_lock(&sk->mu);
    if ((key = scope_get(sk, q->key_id)) == NULL) {
        rc = GW_ENOMEM;
        goto out;
    }
    if ((rc = load(l, key, GW_SCOPE_KEY, q)) != 0)
        goto out;
    roll(l, key, q->now_ms);
    gw_budget_view_of(q->key, key->day_spent, key->month_spent, out);
out:
    pthread_mutex_unlock(&sk->mu);
    return rc;
}

void gw_budget_view_of(const struct gw_limit_set *key, int64_t day_spent, int64_t month_spent,
                       struct gw_budget_view *out)
{
    const struct {
        const char *name;
        int64_t limit, spent;
    } w[2] = {{"daily", key->daily_usd_micros, day_spent},
              {"monthly", key->monthly_usd_micros, month_spent}};
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < 2; i++) {
        if (w[i].limit <= 0)
            continue;
        int64_t left = w[i].limit > w[i].spent ? w[i].limit - w[i].spent : 0;
        if (out->active && left >= out->remaining_micros)
            continue;
        int64_t pct = w[i].spent / w[i].limit * 100 + (w[i].spent % w[i].limit) * 100 / w[i].limit;
        *out = (struct gw_budget_view){1, w[i].name, w[i].limit, w[i].spent, left,
                                       (int)(pct > 100000 ? 100000 : pct)};
    }
}
