/*
 * policy/budget — see budget.h.
 */
#include "policy/budget.h"

#include <time.h>

#define DAY_MS 86400000LL
#define HOUR_MS 3600000LL

int64_t gw_budget_day_start(const struct gw_budget_windows *w, int64_t now_ms)
{
    int64_t shifted = now_ms - w->reset_hour * HOUR_MS;
    int64_t day = shifted - ((shifted % DAY_MS) + DAY_MS) % DAY_MS;
    return day + w->reset_hour * HOUR_MS;
}

int64_t gw_budget_next_day(const struct gw_budget_windows *w, int64_t now_ms)
{
    return gw_budget_day_start(w, now_ms) + DAY_MS;
}

/* The reset instant of the month (year, mon) as unix ms. */
static int64_t month_reset(const struct gw_budget_windows *w, int year, int mon)
{
    struct tm tm = {0};
    tm.tm_year = year + mon / 12;
    tm.tm_mon = mon % 12;
    tm.tm_mday = w->reset_day;
    tm.tm_hour = w->reset_hour;
    return (int64_t)timegm(&tm) * 1000;
}

int64_t gw_budget_month_start(const struct gw_budget_windows *w, int64_t now_ms)
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        return gw_budget_day_start(w, now_ms);
    int64_t start = month_reset(w, tm.tm_year, tm.tm_mon);
    if (start > now_ms) /* before this month's reset: the window began last month */
        start = tm.tm_mon == 0 ? month_reset(w, tm.tm_year - 1, 11)
                               : month_reset(w, tm.tm_year, tm.tm_mon - 1);
    return start;
}

int64_t gw_budget_next_month(const struct gw_budget_windows *w, int64_t now_ms)
{
    int64_t start = gw_budget_month_start(w, now_ms);
    time_t t = (time_t)(start / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        return start + 31 * DAY_MS;
    return month_reset(w, tm.tm_year, tm.tm_mon + 1);
}
