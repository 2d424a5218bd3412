/* util/json — strict parsing and typed accessors; see json.h. */
#include "util/json.h"

json_t *gw_json_parse(const char *buf, size_t len, struct gw_errbuf *eb)
{
    json_error_t err;
    json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (v == NULL)
        gw_errbuf_set(eb, "%s at line %d column %d", err.text, err.line, err.column);
    return v;
}

const char *gw_json_str(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

json_int_t gw_json_int(const json_t *obj, const char *key, json_int_t fallback)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? json_integer_value(v) : fallback;
}

int gw_json_true(const json_t *obj, const char *key) { return json_is_true(json_object_get(obj, key)); }

char *gw_json_dump(const json_t *v) { return json_dumps(v, JSON_COMPACT); }
