/*
 * route/fallback — the retry policy; see fallback.h.
 */
#include "route/fallback.h"

enum gw_outcome gw_outcome_of_status(int status, int auth_failed)
{
    if (status >= 200 && status < 300)
        return GW_OUT_OK;
    if (auth_failed)
        return GW_OUT_AUTH;
    if (status == 429)
        return GW_OUT_RATE_LIMITED;
    if (status == 408 || status == 409 || status >= 500)
        return GW_OUT_UNAVAILABLE;
    return GW_OUT_REJECTED;
}

const char *gw_outcome_name(enum gw_outcome o)
{
    static const char *const names[] = {"ok",          "rejected", "auth",      "rate_limited",
                                        "unavailable", "unsent",   "uncertain", "broken"};
    return (unsigned)o < sizeof(names) / sizeof(names[0]) ? names[o] : "?";
}

int gw_outcome_is_provider_failure(enum gw_outcome o)
{
    return o == GW_OUT_AUTH || o == GW_OUT_UNAVAILABLE || o == GW_OUT_UNSENT ||
           o == GW_OUT_UNCERTAIN || o == GW_OUT_BROKEN;
}

int gw_fallback_may_retry(const struct gw_fallback_conf *cf, enum gw_outcome o, int has_tools,
                          int reply_started)
{
    if (reply_started || !cf->enabled)
        return 0;
    switch (o) {
    case GW_OUT_AUTH:
    case GW_OUT_RATE_LIMITED:
    case GW_OUT_UNAVAILABLE:
    case GW_OUT_UNSENT:
        return 1;
    case GW_OUT_UNCERTAIN:
    case GW_OUT_BROKEN:
        return cf->retry_uncertain == GW_RETRY_UNCERTAIN_ALWAYS ||
               (cf->retry_uncertain == GW_RETRY_UNCERTAIN_NO_TOOLS && !has_tools);
    case GW_OUT_OK:
    case GW_OUT_REJECTED:
        break;
    }
    return 0;
}

int64_t gw_fallback_backoff_ms(const struct gw_fallback_conf *cf, int n, uint32_t rnd)
{
    int64_t d = cf->backoff_ms;
    for (int i = 1; i < n && d < cf->backoff_max_ms; i++)
        d *= 2;
    if (d > cf->backoff_max_ms)
        d = cf->backoff_max_ms;
    if (d <= 0)
        return 0;
    int64_t half = d / 2;
    return half + (int64_t)(rnd % (uint64_t)(d - half + 1));
}
