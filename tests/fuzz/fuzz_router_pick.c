/*
 * fuzz_router_pick — route/llm gw_router_pick: the LLM router's answer text (what a provider's
 * model wrote back when asked which model should serve a request), read for the model it names.
 *
 * Oracle: the pick is one of the candidates offered, or none.
 */
#include <stdlib.h>

#include "common/fz.h"
#include "route/route.h"

static struct gw_catalog *catalog;
static const struct gw_model *cands[64];
static int ncands;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    catalog = fz_catalog();
    for (int i = 0; i < gw_catalog_count(catalog) && ncands < 64; i += 2) /* every other one */
        cands[ncands++] = gw_catalog_at(catalog, i);
    return fz_setup();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *answer = fz_strndup(data, size);
    const struct gw_model *m = gw_router_pick(answer, cands, ncands);
    int ok = m == NULL;
    for (int i = 0; i < ncands && !ok; i++)
        ok = cands[i] == m;
    if (!ok)
        fz_fail("the pick is not a candidate");
    free(answer);
    return 0;
}
