/*
 * admin/policy — policy as JSON, both ways: allowlists, limits and capture settings of orgs and
 * keys, and the org and key objects the admin API answers (never with a secret).
 *
 *   limits: {requests_per_hour, tokens_per_hour, max_concurrent (integers >= 0),
 *            daily_usd, monthly_usd, max_request_usd (USD: a number or a decimal string)}
 *   a member given as 0 or null removes that limit (on a key: back to its tier's default);
 *   members not given are left as they are.
 */
#ifndef GW_ADMIN_POLICY_H
#define GW_ADMIN_POLICY_H

#include <jansson.h>
#include <stddef.h>

#include "store/store.h"

json_t *gw_admin_limits_json(const struct gw_limit_set *l);
/* Apply a limits object onto l. 0, or -1 with why in bad. */
int gw_admin_limits_parse(const json_t *v, struct gw_limit_set *l, char *bad, size_t badsz);
/* Apply {enabled, retention_days, export_all} (any of them) onto p. */
int gw_admin_capture_parse(const json_t *v, struct gw_conv_policy *p, char *bad, size_t badsz);
json_t *gw_admin_org_json(const struct gw_org *o);
json_t *gw_admin_key_json(const struct gw_key_rec *k);

#endif
