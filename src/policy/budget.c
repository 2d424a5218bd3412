/*
 * policy/budget — see budget.h.
 */
#include "policy/budget.h"

#include <string.h>
#include <time.h>

int64_t gw_utc_day_start(int64_t now_ms)
{
    int64_t day = 86400000;
    return now_ms - ((now_ms % day) + day) % day;
}

int64_t gw_utc_month_start(int64_t now_ms)
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        return gw_utc_day_start(now_ms);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    return (int64_t)timegm(&tm) * 1000;
}

static void consider(struct gw_budget_view *out, const char *window, int64_t limit,
                     int64_t spent)
{
    int64_t left = limit > spent ? limit - spent : 0;
    if (out->active && left >= out->remaining_micros)
        return;
    out->active = 1;
    out->window = window;
    out->limit_micros = limit;
    out->spent_micros = spent;
    out->remaining_micros = left;
    int64_t pct = spent / limit * 100 + (spent % limit) * 100 / limit;
    out->percent_spent = (int)(pct > 100000 ? 100000 : pct);
}

int gw_budget_view(struct gw_store *s, const struct gw_key_rec *k, int64_t now_ms,
                   struct gw_budget_view *out)
{
    int64_t spent;
    int rc;

    memset(out, 0, sizeof(*out));
    if (k->daily_usd_micros > 0) {
        if ((rc = gw_store_usage_spent(s, k->id, gw_utc_day_start(now_ms), &spent)) != 0)
            return rc;
        consider(out, "daily", k->daily_usd_micros, spent);
    }
    if (k->monthly_usd_micros > 0) {
        if ((rc = gw_store_usage_spent(s, k->id, gw_utc_month_start(now_ms), &spent)) != 0)
            return rc;
        consider(out, "monthly", k->monthly_usd_micros, spent);
    }
    return 0;
}
