/* tests/unit/test_json.h — a test's own JSON text as a tree; a typo in it fails the test (with
 * jansson's reason and the text) instead of passing NULL on. Include after <cmocka.h>. */
#ifndef GW_TEST_JSON_H
#define GW_TEST_JSON_H

#include <jansson.h>

static inline json_t *parse(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &e);
    if (v == NULL)
        fail_msg("bad test JSON: %s (%s)", e.text, s);
    return v;
}

#endif
