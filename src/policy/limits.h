/*
 * policy/limits — the limits every request is admitted against, kept in memory (the SQLite
 * deployment: one gateway process owns the store, so its counters are the truth).
 *
 * Per scope (each key, each org): requests and tokens in a sliding hour, requests in flight,
 * USD spent in the budget day and month. A request holds its worst case in all of them at
 * once — admitted only if every window of its key and of its org has room, refused (with the
 * limit that said no and when to retry) otherwise — and settles to what it really cost.
 *
 * Invariants:
 * - Admission is atomic over all windows of both scopes: the two scope locks are taken in a
 *   fixed order (org, then key), checked, applied, released. No lock is held anywhere else.
 * - What is held is never less than what a request may still cost: its worst case until it
 *   settles, then the actual cost. Spend therefore never passes a budget, under any
 *   concurrency.
 * - A scope's counters start from the store's history the first time the process sees it
 *   (settled costs and in-flight reservations of the day and month, requests and tokens of the
 *   last hour), so a restart forgets nothing.
 * - The sliding hour has 100 ms resolution, and rounds against the caller: an admission counts
 *   until 60 minutes after the end of its 100 ms slot.
 * - Time is passed in, so tests drive the clock.
 */
#ifndef GW_POLICY_LIMITS_H
#define GW_POLICY_LIMITS_H

#include <stdint.h>

#include "policy/budget.h"
#include "store/store.h"
#include "util/err.h"

#define GW_LIMIT_WINDOW_MS 3600000LL
#define GW_LIMIT_SLOT_MS 100LL

struct gw_limits;
struct gw_limit_scope;

/* Why a request was refused. */
struct gw_refusal {
    const char *scope;      /* "key" | "org" */
    const char *limit;      /* "requests_per_hour" | "tokens_per_hour" | "max_concurrent" |
                             * "daily_usd" | "monthly_usd" | "max_request_usd" */
    const char *code;       /* error.code, e.g. "daily_budget_exceeded" */
    int64_t limit_value;    /* the limit (a count, tokens, or micro-USD) */
    int64_t retry_after_ms; /* when it may fit; -1: it never will (the request itself is too big) */
};

/* What one request holds. Zero-initialise; admit fills it, settle empties it. */
struct gw_hold {
    struct gw_limit_scope *key, *org;
    int64_t slot;     /* the admission's 100 ms slot in the sliding windows */
    int64_t tokens;   /* counted in tokens_per_hour */
    int64_t usd;      /* micro-USD counted in the budgets */
    int64_t day, month; /* the budget windows usd counts in */
    int request;      /* counted as a request (and as in flight) */
    int active;
};

struct gw_limit_req {
    int64_t key_id;                  /* the key's row id */
    int64_t org_id;                  /* 0: no org (the superadmin) */
    const struct gw_limit_set *key;  /* the key's effective limits (tier defaults applied) */
    const struct gw_limit_set *org;  /* the org's limits; NULL with org_id 0 */
    int64_t usd;                     /* worst case to hold, micro-USD */
    int64_t tokens;                  /* worst case to hold, tokens */
    int request;                     /* 1: a request; 0: more usage of one (the LLM router) */
    int64_t now_ms;
    struct gw_store *store;          /* the caller's connection, to load a scope's history */
};

/* The budget window of a key with the least left (budget-aware routing). */
struct gw_budget_view {
    int active;               /* the key has a daily or monthly budget */
    const char *window;       /* "daily" | "monthly" */
    int64_t limit_micros, spent_micros, remaining_micros;
    int percent_spent;
};

/* How long until enough of a sliding window has left it that counted - freed + add <= limit
 * (tokens: the token window, else the request window); ms. */
typedef int64_t (*gw_limits_wait_fn)(void *arg, int tokens, int64_t add, int64_t limit,
                                     int64_t now);
/* The checks themselves, over a scope's usage u: would adding (requests, tokens, usd) break one
 * of lim's limits? 0, or GW_ELIMIT with why filled. Shared by the in-memory limits and the
 * store-side ones of a shared store. */
GW_NODISCARD int gw_limits_check(const struct gw_budget_windows *w,
                                 const struct gw_scope_usage *u, const struct gw_limit_set *lim,
                                 const char *scope, int64_t requests, int64_t tokens,
                                 int64_t usd, int64_t now, gw_limits_wait_fn wait, void *warg,
                                 struct gw_refusal *why);

GW_NODISCARD int gw_limits_new(const struct gw_budget_windows *w, struct gw_limits **out);
void gw_limits_free(struct gw_limits *l);

/* Admit a request: hold q->usd and q->tokens (and, for a request, one request and one slot in
 * flight) in every window of the key and the org. Returns 0 (h filled), GW_ELIMIT (why filled,
 * nothing held) or GW_ESTORE (a scope's history could not be read: refuse, fail closed). */
GW_NODISCARD int gw_limits_admit(struct gw_limits *l, const struct gw_limit_req *q,
                                 struct gw_hold *h, struct gw_refusal *why);
/* Change what an admitted request holds to q->usd / q->tokens (a fallback's new worst case
 * plus what earlier attempts cost). Only an increase is checked; GW_ELIMIT leaves h as it was. */
GW_NODISCARD int gw_limits_rehold(struct gw_limits *l, struct gw_hold *h,
                                  const struct gw_limit_req *q, struct gw_refusal *why);
/* The request is over: its windows keep what it really cost (usd, tokens), the rest is
 * refunded, and it leaves the in-flight count. A no-op on an inactive hold. */
void gw_limits_settle(struct gw_limits *l, struct gw_hold *h, int64_t usd, int64_t tokens);
/* The tightest of a key's daily and monthly windows given what it spent in each. */
void gw_budget_view_of(const struct gw_limit_set *key, int64_t day_spent, int64_t month_spent,
                       struct gw_budget_view *out);
/* The key's tightest USD window now (out->active = 0 when it has no budget). */
GW_NODISCARD int gw_limits_view(struct gw_limits *l, const struct gw_limit_req *q,
                                struct gw_budget_view *out);

#endif
