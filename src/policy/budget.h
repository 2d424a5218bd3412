/*
 * policy/budget — the calendar windows USD budgets are counted in.
 *
 * Budgets are per UTC calendar day and month, with a configurable reset: the day starts at
 * reset_hour:00 UTC, the month on reset_day at reset_hour:00 UTC. Usage counts in the window
 * its row was created in.
 */
#ifndef GW_POLICY_BUDGET_H
#define GW_POLICY_BUDGET_H

#include <stdint.h>

struct gw_budget_windows {
    int reset_hour; /* 0..23 */
    int reset_day;  /* 1..28 */
};

/* Start of the budget day / month that holds now_ms, in unix ms. */
int64_t gw_budget_day_start(const struct gw_budget_windows *w, int64_t now_ms);
int64_t gw_budget_month_start(const struct gw_budget_windows *w, int64_t now_ms);
/* Start of the next budget day / month after the one that holds now_ms. */
int64_t gw_budget_next_day(const struct gw_budget_windows *w, int64_t now_ms);
int64_t gw_budget_next_month(const struct gw_budget_windows *w, int64_t now_ms);

#endif
