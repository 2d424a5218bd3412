/*
 * core/yaml — a small, strict YAML → jansson converter for the config file and the model catalog
 * (both written by operators, so errors must point at a line and column).
 *
 * Built on libyaml's event API with one recursive descent over the events.
 * Invariants:
 * - Exactly one document (an empty stream gives JSON null); a second document is an error.
 * - Typing is deliberately small (YAML 1.2 core schema minus floats): plain true/True/TRUE and
 *   false/False/FALSE → bool; plain null/Null/NULL/~ and empty plain scalars → null; plain
 *   [-+]?[0-9]+ → integer (out of int64 range is an error); every other plain scalar and every
 *   quoted or block scalar → string. No floats ever, so "2.50" stays an exact decimal string.
 *   Scalars containing NUL are refused.
 * - Mappings → objects (keys are scalars, never duplicated); sequences → arrays.
 * - Anchors, aliases and tags other than !!str / ! / !!map / !!seq are refused.
 * - Nesting is bounded (GW_YAML_MAX_DEPTH) and so is the input size (GW_YAML_MAX_BYTES).
 * - On failure *out stays NULL, nothing leaks, and eb says what and where ("line L column C").
 *   File errors do not repeat the path: callers prefix it ("catalog PATH: ...").
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "core/config.h"
#include "util/mem.h"
#include "util/util.h"

#define GW_YAML_MAX_DEPTH 64
#define GW_YAML_MAX_BYTES (4u * 1024 * 1024)

#define TAG_STR "tag:yaml.org,2002:str"
#define TAG_MAP "tag:yaml.org,2002:map"
#define TAG_SEQ "tag:yaml.org,2002:seq"

struct yp {
    yaml_parser_t parser;
    struct gw_errbuf *eb;
};

static int fail_at(struct yp *y, const yaml_mark_t *m, const char *what)
{
    gw_errbuf_set(y->eb, "%s at line %zu column %zu", what, m->line + 1, m->column + 1);
    return GW_EPARSE;
}

/* Fetch the next event; on a libyaml error describe it (it owns no event then). */
static int next_event(struct yp *y, yaml_event_t *ev)
{
    if (yaml_parser_parse(&y->parser, ev))
        return 0;
    if (y->parser.error == YAML_MEMORY_ERROR) {
        gw_errbuf_set(y->eb, "out of memory while parsing YAML");
        return GW_ENOMEM;
    }
    const char *problem = y->parser.problem ? y->parser.problem : "invalid YAML";
    if (y->parser.context != NULL)
        gw_errbuf_set(y->eb, "%s %s at line %zu column %zu", y->parser.context, problem,
                      y->parser.problem_mark.line + 1, y->parser.problem_mark.column + 1);
    else
        gw_errbuf_set(y->eb, "%s at line %zu column %zu", problem,
                      y->parser.problem_mark.line + 1, y->parser.problem_mark.column + 1);
    return GW_EPARSE;
}

static int is_one_of(const char *s, size_t n, const char *const *words)
{
    for (; *words != NULL; words++)
        if (strlen(*words) == n && memcmp(s, *words, n) == 0)
            return 1;
    return 0;
}

static int is_plain_int(const char *s, size_t n)
{
    size_t i = 0;
    if (n > 0 && (s[0] == '-' || s[0] == '+'))
        i = 1;
    if (i == n)
        return 0;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* Convert one scalar event into a new JSON value. */
static int scalar_value(struct yp *y, yaml_event_t *ev, json_t **out)
{
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    static const char *const nulls[] = {"null", "Null", "NULL", "~", "", NULL};
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;

    *out = NULL;
    if (tag != NULL) {
        /* "!" (non-specific) and !!str both mean "this is a string" */
        if (strcmp(tag, TAG_STR) != 0 && strcmp(tag, "!") != 0)
            return fail_at(y, &ev->start_mark, "tags are not supported");
        plain = 0;
    }
    if (plain && is_one_of(s, n, trues))
        *out = json_true();
    else if (plain && is_one_of(s, n, falses))
        *out = json_false();
    else if (plain && is_one_of(s, n, nulls))
        *out = json_null();
    else if (plain && is_plain_int(s, n)) {
        char tmp[32];
        int64_t v;
        if (n >= sizeof(tmp))
            return fail_at(y, &ev->start_mark, "integer out of range");
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        if (gw_parse_i64(tmp, &v) != 0)
            return fail_at(y, &ev->start_mark, "integer out of range");
        *out = json_integer((json_int_t)v);
    } else {
        /* a NUL ("\0" in a double-quoted scalar) would silently truncate C strings later */
        if (memchr(s, '\0', n) != NULL)
            return fail_at(y, &ev->start_mark, "NUL characters are not supported");
        *out = json_stringn(s, n); /* libyaml hands us UTF-8: NULL here means OOM */
    }
    if (*out == NULL) {
        gw_errbuf_set(y->eb, "out of memory while parsing YAML");
        return GW_ENOMEM;
    }
    return 0;
}

static int check_node_start(struct yp *y, yaml_event_t *ev)
{
    const yaml_char_t *anchor = NULL, *tag = NULL;
    const char *want = NULL;

    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        return fail_at(y, &ev->start_mark, "anchors and aliases are not supported");
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor;
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
        want = TAG_SEQ;
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
        want = TAG_MAP;
        break;
    default:
        return fail_at(y, &ev->start_mark, "unexpected YAML event");
    }
    if (anchor != NULL)
        return fail_at(y, &ev->start_mark, "anchors and aliases are not supported");
    if (tag != NULL && strcmp((const char *)tag, want) != 0 && strcmp((const char *)tag, "!") != 0)
        return fail_at(y, &ev->start_mark, "tags are not supported");
    return 0;
}

static int parse_node(struct yp *y, yaml_event_t *ev, int depth, json_t **out);

static int parse_sequence(struct yp *y, int depth, json_t *arr)
{
    for (;;) {
        yaml_event_t ev;
        json_t *item = NULL;
        int rc = next_event(y, &ev);
        if (rc != 0)
            return rc;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if ((rc = parse_node(y, &ev, depth, &item)) != 0)
            return rc;
        if (json_array_append_new(arr, item) != 0) {
            gw_errbuf_set(y->eb, "out of memory while parsing YAML");
            return GW_ENOMEM;
        }
    }
}

static int parse_mapping(struct yp *y, int depth, json_t *obj)
{
    for (;;) {
        yaml_event_t ev;
        yaml_mark_t mark;
        json_t *val = NULL;
        char *key = NULL;
        int rc = next_event(y, &ev);
        if (rc != 0)
            return rc;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        mark = ev.start_mark;
        if ((rc = check_node_start(y, &ev)) == 0 && ev.type != YAML_SCALAR_EVENT)
            rc = fail_at(y, &mark, "mapping keys must be scalars");
        if (rc != 0) {
            yaml_event_delete(&ev);
            return rc;
        }
        if (ev.data.scalar.tag != NULL && strcmp((const char *)ev.data.scalar.tag, TAG_STR) != 0 &&
            strcmp((const char *)ev.data.scalar.tag, "!") != 0) {
            yaml_event_delete(&ev);
            return fail_at(y, &mark, "tags are not supported");
        }
        if (memchr(ev.data.scalar.value, '\0', ev.data.scalar.length) != NULL) {
            yaml_event_delete(&ev);
            return fail_at(y, &mark, "NUL characters are not supported");
        }
        key = gw_strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
        yaml_event_delete(&ev);
        if (key == NULL) {
            gw_errbuf_set(y->eb, "out of memory while parsing YAML");
            return GW_ENOMEM;
        }
        if (json_object_get(obj, key) != NULL) {
            char what[160];
            snprintf(what, sizeof(what), "duplicate key '%.100s'", key);
            gw_free(key);
            return fail_at(y, &mark, what);
        }
        if ((rc = next_event(y, &ev)) != 0 || (rc = parse_node(y, &ev, depth, &val)) != 0) {
            gw_free(key);
            return rc;
        }
        rc = json_object_set_new(obj, key, val);
        gw_free(key);
        if (rc != 0) {
            gw_errbuf_set(y->eb, "out of memory while parsing YAML");
            return GW_ENOMEM;
        }
    }
}

/* Convert the node that starts with *ev (taken: always deleted here) into *out (new). */
static int parse_node(struct yp *y, yaml_event_t *ev, int depth, json_t **out)
{
    json_t *v = NULL;
    int rc;

    *out = NULL;
    if ((rc = check_node_start(y, ev)) != 0)
        goto out;
    if (ev->type == YAML_SCALAR_EVENT) {
        rc = scalar_value(y, ev, &v);
        goto out;
    }
    if (depth >= GW_YAML_MAX_DEPTH) {
        rc = fail_at(y, &ev->start_mark, "nesting is too deep (limit 64)");
        goto out;
    }
    v = ev->type == YAML_MAPPING_START_EVENT ? json_object() : json_array();
    if (v == NULL) {
        gw_errbuf_set(y->eb, "out of memory while parsing YAML");
        rc = GW_ENOMEM;
        goto out;
    }
    if (ev->type == YAML_MAPPING_START_EVENT)
        rc = parse_mapping(y, depth + 1, v);
    else
        rc = parse_sequence(y, depth + 1, v);
out:
    yaml_event_delete(ev);
    if (rc != 0) {
        json_decref(v);
        return rc;
    }
    *out = v;
    return 0;
}

int gw_yaml_load_string(const char *s, size_t len, json_t **out, struct gw_errbuf *eb)
{
    struct yp y = {.eb = eb};
    yaml_event_t ev;
    json_t *root = NULL;
    int rc, have_ev = 0;

    *out = NULL;
    if (s == NULL)
        return GW_EINVAL;
    if (len > GW_YAML_MAX_BYTES) {
        gw_errbuf_set(eb, "YAML input larger than %u bytes", GW_YAML_MAX_BYTES);
        return GW_ETOOBIG;
    }
    if (!yaml_parser_initialize(&y.parser)) {
        gw_errbuf_set(eb, "out of memory while parsing YAML");
        return GW_ENOMEM;
    }
    yaml_parser_set_input_string(&y.parser, (const unsigned char *)s, len);

    if ((rc = next_event(&y, &ev)) != 0) /* STREAM-START */
        goto out;
    yaml_event_delete(&ev);
    if ((rc = next_event(&y, &ev)) != 0)
        goto out;
    have_ev = 1;
    if (ev.type == YAML_STREAM_END_EVENT) { /* empty stream */
        root = json_null();
        rc = 0;
        goto out;
    }
    /* DOCUMENT-START, then the root node */
    yaml_event_delete(&ev);
    have_ev = 0;
    if ((rc = next_event(&y, &ev)) != 0 || (rc = parse_node(&y, &ev, 0, &root)) != 0)
        goto out;
    if ((rc = next_event(&y, &ev)) != 0) /* DOCUMENT-END */
        goto out;
    yaml_event_delete(&ev);
    if ((rc = next_event(&y, &ev)) != 0)
        goto out;
    have_ev = 1;
    if (ev.type != YAML_STREAM_END_EVENT) {
        rc = fail_at(&y, &ev.start_mark, "more than one YAML document");
        goto out;
    }
    rc = 0;
out:
    if (have_ev)
        yaml_event_delete(&ev);
    yaml_parser_delete(&y.parser);
    if (rc != 0) {
        json_decref(root);
        return rc;
    }
    *out = root;
    return 0;
}

int gw_yaml_load_file(const char *path, json_t **out, struct gw_errbuf *eb)
{
    char *buf = NULL;
    size_t n = 0;
    int rc = gw_read_file(path, GW_YAML_MAX_BYTES, &buf, &n, eb);

    *out = NULL;
    if (rc != 0)
        return rc;
    rc = gw_yaml_load_string(buf, n, out, eb);
    gw_free(buf);
    return rc;
}
