/*
 * policy/budget — see budget.h.
 */
#include "policy/budget.h"

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

/* Days since 1970-01-01 of the proleptic Gregorian date (y, m 1..12, d), and back: plain
 * arithmetic (H. Hinnant's days_from_civil), since timegm() and gmtime_r() cost thousands of
 * instructions and every admission asks for the month twice. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* The reset instant of month m (0-based, may be -1 or 12) of year y, as unix ms. */
static int64_t month_reset(const struct gw_budget_windows *w, int64_t y, int m)
{
    int64_t years = floor_div(m, 12);
    y += years;
    m -= (int)years * 12;
    return days_from_civil(y, m + 1, w->reset_day) * DAY_MS + w->reset_hour * HOUR_MS;
}

int64_t gw_budget_month_start(const struct gw_budget_windows *w, int64_t now_ms)
{
    int64_t y;
    int m;
    civil_from_days(floor_div(now_ms, DAY_MS), &y, &m);
    int64_t start = month_reset(w, y, m - 1);
    if (start > now_ms) /* before this month's reset: the window began last month */
        start = month_reset(w, y, m - 2);
    return start;
}

int64_t gw_budget_next_month(const struct gw_budget_windows *w, int64_t now_ms)
{
    int64_t start = gw_budget_month_start(w, now_ms), y;
    int m;
    civil_from_days(floor_div(start, DAY_MS), &y, &m);
    return month_reset(w, y, m); /* the month after the one the window began in */
}
