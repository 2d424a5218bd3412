/*
 * fuzz_admin — the admin API's requests (core/admin gw_admin_route and the operations in
 * src/admin): the path and its {id}, the query (paging, usage filters) and the JSON bodies of
 * POST and PATCH (orgs and their policy: allowlists, limits, capture; keys; app clients and
 * their origins; a rotation's grace), run against the fixture's store with the fixture's keys.
 *
 * Input: a request as text (see fz.h), e.g.
 *   PATCH /admin/v1/orgs/acme
 *   X-API-Key: <FZ_SUPER_KEY>
 *
 *   {"limits":{"daily_usd":"5.00"}}
 * Oracle: every request is answered exactly once, whatever it holds. The routes that stream
 * (usage and conversation exports) and the metrics are left out: they need a connection.
 */
#include "common/fz.h"
#include "core/admin.h"

static struct fz_gw g;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_setup();
    fz_gw_open(&g);
    return 0;
}

static int route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                 const char *path)
{
    return gw_admin_route(w, req, rid, path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const skip[] = {"/admin/v1/usage/export", "/admin/v1/conversations/export",
                                       "/admin/v1/metrics", NULL};
    fz_gw_request(&g, data, size, route, skip);
    return 0;
}
