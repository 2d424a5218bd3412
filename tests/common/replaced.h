/* tests/common/replaced.h — for the unit tests and the fuzz harnesses that compare an adapter's
 * scanned (relayed) answer or chunk with its parsed tree: the members the pipeline writes
 * itself, taken out of a tree from parse() (chunk 0) or of a chunk (chunk 1). */
#ifndef GW_TEST_REPLACED_H
#define GW_TEST_REPLACED_H

#include <jansson.h>

static inline void drop_replaced(json_t *t, int chunk)
{
    static const char *const cut[] = {"object", "created", "model", "provider", "route_method"};
    for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++)
        if (!chunk || i < 3)
            json_object_del(t, cut[i]);
    if (chunk || !json_is_string(json_object_get(t, "id")))
        json_object_del(t, "id");
    json_object_del(t, "usage");
}

#endif
