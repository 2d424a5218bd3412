/*
 * policy/budget — how much of its USD budgets a key has spent, for budget-aware routing.
 *
 * Windows are calendar windows in UTC: the day and the month. What counts is what the store
 * holds for the key since the window began: settled costs, and the worst case of calls still in
 * flight. (Enforcing the budgets — refusing with 429 — is the reservation's job.)
 */
#ifndef GW_POLICY_BUDGET_H
#define GW_POLICY_BUDGET_H

#include <stdint.h>

#include "store/store.h"
#include "util/err.h"

struct gw_budget_view {
    int active;                /* the key has a daily or monthly USD budget */
    const char *window;        /* "daily" | "monthly": the window with the least left */
    int64_t limit_micros;
    int64_t spent_micros;
    int64_t remaining_micros;  /* never negative */
    int percent_spent;         /* of that window (may pass 100) */
};

/* Start of the UTC day / month that holds now_ms, in unix ms. */
int64_t gw_utc_day_start(int64_t now_ms);
int64_t gw_utc_month_start(int64_t now_ms);
/* Fill *out for key k (out->active = 0 when it has no budget: nothing is read). */
GW_NODISCARD int gw_budget_view(struct gw_store *s, const struct gw_key_rec *k, int64_t now_ms,
                                struct gw_budget_view *out);

#endif
