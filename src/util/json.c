/* util/json — strict parsing and typed accessors; see json.h.
 *
 * Parsing builds the jansson tree from yajl's events: yajl lexes and validates an order of
 * magnitude faster than jansson's own reader, which goes byte by byte through a stream (a 4 kB
 * request: 89 µs against 10). The rules are jansson's strict ones: one value of any kind, no
 * duplicate keys, no NUL in strings or keys, integers that fit in 64 bits, finite reals, at
 * most GW_JSON_MAX_DEPTH levels. Where yajl is laxer than that, we check ourselves: it takes
 * \v and \f for whitespace, checks only the shape of UTF-8 sequences, and misses an
 * unterminated string after the value.
 */
#include "util/json.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "util/buf.h"
#include "util/mem.h"
#include "util/splice.h"
#include "util/util.h"

#define GW_JSON_MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

struct builder {
    const char *text; /* the input, and yajl reading it (for a string token's raw bytes) */
    size_t len;
    yajl_handle h;
    int finishing;   /* in yajl_complete_parse: yajl reads a " " of its own, not the input */
    size_t root_end; /* where in the input the root value ended */
    json_t **stack; /* open arrays and objects, innermost last */
    int depth, cap;
    json_t *root;
    struct gw_buf key; /* the key of the value that comes next (yajl reuses its own buffer) */
    char err[160];     /* why a callback stopped the parse */
};

static int fail(struct builder *b, const char *why)
{
    if (b->err[0] == '\0')
        snprintf(b->err, sizeof(b->err), "%s", why);
    return 0;
}

/* The root value is complete: note where, to check that only whitespace follows. yajl misses
 * trailing garbage that is an unterminated string ("{} \"x"): its lexer waits for the rest of
 * the token and reports the end of the input, not an error. */
static void root_done(struct builder *b)
{
    b->root_end = b->finishing ? b->len : yajl_get_bytes_consumed(b->h);
}

/* Attach v (taken) where the parse is: the root, the open array, or the open object's key. */
static int add(struct builder *b, json_t *v)
{
    if (v == NULL)
        return fail(b, "out of memory");
    if (b->depth == 0) {
        b->root = v;
        if (!json_is_object(v) && !json_is_array(v))
            root_done(b);
        return 1;
    }
    json_t *top = b->stack[b->depth - 1];
    if (json_is_array(top)) {
        if (json_array_append_new(top, v) != 0)
            return fail(b, "out of memory");
        return 1;
    }
    const char *k = b->key.data ? b->key.data : "";
    if (json_object_getn(top, k, b->key.len) != NULL) {
        json_decref(v);
        snprintf(b->err, sizeof(b->err), "duplicate object key '%.64s'", k);
        return 0;
    }
    if (json_object_setn_new_nocheck(top, k, b->key.len, v) != 0)
        return fail(b, "out of memory");
    return 1;
}

static int open_container(struct builder *b, json_t *c)
{
    if (c == NULL)
        return fail(b, "out of memory");
    if (b->depth >= GW_JSON_MAX_DEPTH) {
        json_decref(c);
        return fail(b, "maximum parsing depth reached");
    }
    if (b->depth == b->cap) {
        int cap = b->cap ? b->cap * 2 : 16;
        json_t **s = gw_realloc(b->stack, (size_t)cap * sizeof(*s));
        if (s == NULL) {
            json_decref(c);
            return fail(b, "out of memory");
        }
        b->stack = s;
        b->cap = cap;
    }
    if (!add(b, c)) /* takes c: its parent (or the root) holds it from now on */
        return 0;
    b->stack[b->depth++] = c; /* borrowed, alive with the root */
    return 1;
}

static int on_null(void *ctx) { return add(ctx, json_null()); }

static int on_bool(void *ctx, int v) { return add(ctx, json_boolean(v)); }

static int on_number(void *ctx, const char *s, size_t len)
{
    struct builder *b = ctx;
    char tmp[400];
    if (len >= sizeof(tmp))
        return fail(b, "number too long");
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    errno = 0;
    if (memchr(s, '.', len) == NULL && memchr(s, 'e', len) == NULL && memchr(s, 'E', len) == NULL) {
        long long v = strtoll(tmp, NULL, 10);
        if (errno == ERANGE)
            return fail(b, "too big integer");
        return add(b, json_integer((json_int_t)v));
    }
    double d = strtod(tmp, NULL);
    if (errno == ERANGE && !isfinite(d))
        return fail(b, "real number overflow");
    return add(b, json_real(d));
}

static unsigned hex4(const char *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v = v << 4 | (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

int gw_json_surrogates_ok(const char *t, size_t end, const unsigned char *s)
{
    /* yajl hands over a token without escapes where it is (with them, or split across two
     * reads, from a buffer of its own) */
    if (end < 2 || ((const char *)s >= t && (const char *)s < t + end))
        return 1;
    /* the string's opening quote is the first one before its closing one that is not escaped
     * (no other can be in it) */
    size_t close = end - 1, open = close;
    while (open > 0) {
        open--;
        if (t[open] != '"')
            continue;
        size_t bs = 0;
        while (open > bs && t[open - 1 - bs] == '\\')
            bs++;
        if (bs % 2 == 0)
            break;
    }
    for (size_t i = open + 1; i + 1 < close; i++) {
        if (t[i] != '\\')
            continue;
        if (t[++i] != 'u') /* \n, \\ and the like: one character */
            continue;
        unsigned u = hex4(t + i + 1); /* yajl checked the four hex digits */
        i += 4;
        if (u >= 0xDC00 && u <= 0xDFFF)
            return 0;
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (i + 6 >= close || t[i + 1] != '\\' || t[i + 2] != 'u')
                return 0;
            unsigned lo = hex4(t + i + 3);
            if (lo < 0xDC00 || lo > 0xDFFF)
                return 0;
            i += 6;
        }
    }
    return 1;
}

int gw_json_utf8_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], lo = 0x80, hi = 0xbf; /* the second byte's range */
        size_t k;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            lo = c == 0xe0 ? 0xa0 : lo; /* overlong */
            hi = c == 0xed ? 0x9f : hi; /* a surrogate */
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            lo = c == 0xf0 ? 0x90 : lo; /* overlong */
            hi = c == 0xf4 ? 0x8f : hi; /* above U+10FFFF */
        } else {
            return 0;
        }
        if (n - i <= k || s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
        i += k + 1;
    }
    return 1;
}

const char *gw_json_bad_space(const char *buf, size_t len)
{
    if (len == 0)
        return NULL;
    const char *v = memchr(buf, '\v', len), *f = memchr(buf, '\f', len);
    return v == NULL || (f != NULL && f < v) ? f : v;
}

/* Whether every byte of s is 0x01..0x7f, eight at a time: most keys and values are. */
static int plain_ascii(const unsigned char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    for (; n >= 8; s += 8, n -= 8) {
        uint64_t v;
        memcpy(&v, s, sizeof(v));
        if ((v | ((v - ones) & ~v)) & highs) /* a byte >= 0x80, or a zero byte */
            return 0;
    }
    for (; n > 0; s++, n--)
        if (*s == 0 || *s >= 0x80)
            return 0;
    return 1;
}

const char *gw_json_text_bad(const char *text, size_t end, const unsigned char *s, size_t len)
{
    if (!plain_ascii(s, len)) {
        if (memchr(s, '\0', len) != NULL)
            return "\\u0000 is not allowed";
        if (!gw_json_utf8_ok(s, len))
            return "invalid UTF-8";
    }
    if (!gw_json_surrogates_ok(text, end, s))
        return "invalid Unicode escape (an unpaired surrogate)";
    return NULL;
}

/* A string or key jansson would take: no NUL, strict UTF-8, no unpaired surrogate escape. */
static int text_ok(struct builder *b, const unsigned char *s, size_t len)
{
    const char *why = gw_json_text_bad(b->text, yajl_get_bytes_consumed(b->h), s, len);
    return why == NULL || fail(b, why);
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    struct builder *b = ctx;
    return text_ok(b, s, len) && add(b, json_stringn_nocheck((const char *)s, len));
}

static int on_key(void *ctx, const unsigned char *s, size_t len)
{
    struct builder *b = ctx;
    if (!text_ok(b, s, len))
        return 0;
    gw_buf_reset(&b->key);
    if (gw_buf_add(&b->key, s, len) != 0)
        return fail(b, "out of memory");
    return 1;
}

static int on_start_map(void *ctx) { return open_container(ctx, json_object()); }

static int on_start_array(void *ctx) { return open_container(ctx, json_array()); }

static int on_end(void *ctx)
{
    struct builder *b = ctx;
    if (--b->depth == 0)
        root_done(b);
    return 1;
}

static const yajl_callbacks build_callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_bool,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_key,
    .yajl_end_map = on_end,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end,
};

json_t *gw_json_parse(const char *buf, size_t len, struct gw_errbuf *eb)
{
    struct builder b;
    const char *bad = gw_json_bad_space(buf, len);
    if (bad != NULL) {
        gw_errbuf_set(eb, "invalid whitespace near byte %zu", (size_t)(bad - buf));
        return NULL;
    }
    memset(&b, 0, sizeof(b));
    gw_buf_init(&b.key, len + 1);
    b.text = buf;
    b.len = len;
    yajl_handle h = b.h = yajl_alloc(&build_callbacks, NULL, &b);
    if (h == NULL) {
        gw_errbuf_set(eb, "out of memory");
        gw_buf_cleanup(&b.key);
        return NULL;
    }
    yajl_status st = yajl_parse(h, (const unsigned char *)buf, len);
    if (st == yajl_status_ok) {
        b.finishing = 1;
        st = yajl_complete_parse(h);
    }
    size_t end = b.root_end;
    while (st == yajl_status_ok && end < len && memchr(" \t\n\r", buf[end], 4) != NULL)
        end++;
    if (st == yajl_status_ok && end < len) {
        gw_errbuf_set(eb, "trailing garbage near byte %zu", end);
        json_decref(b.root);
        b.root = NULL;
    } else if (st != yajl_status_ok) {
        size_t at = yajl_get_bytes_consumed(h);
        if (b.err[0] != '\0') {
            gw_errbuf_set(eb, "%s near byte %zu", b.err, at);
        } else {
            unsigned char *msg = yajl_get_error(h, 0, NULL, 0);
            /* "parse error: <what>\n" */
            const char *m = msg ? (const char *)msg : "invalid JSON";
            if (strncmp(m, "parse error: ", 13) == 0)
                m += 13;
            gw_errbuf_set(eb, "%.*s near byte %zu", (int)strcspn(m, "\n"), m, at);
            if (msg != NULL)
                yajl_free_error(h, msg);
        }
        json_decref(b.root);
        b.root = NULL;
    }
    yajl_free(h);
    gw_free(b.stack);
    gw_buf_cleanup(&b.key);
    return b.root;
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

/* ---- writing ---- */

static int write_value(struct gw_buf *out, const json_t *v, int precision, int depth)
{
    char num[40];
    int rc = 0;

    if ((json_is_object(v) || json_is_array(v)) && depth > GW_JSON_MAX_DEPTH)
        return GW_EINVAL;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *sep = "{";
        for (void *it = json_object_iter((json_t *)v); it != NULL && rc == 0;
             it = json_object_iter_next((json_t *)v, it)) {
            const char *key = json_object_iter_key(it);
            if ((rc = gw_buf_add(out, sep, 1)) == 0 &&
                (rc = gw_buf_add_json_strn(out, key, json_object_iter_key_len(it))) == 0 &&
                (rc = gw_buf_add(out, ":", 1)) == 0)
                rc = write_value(out, json_object_iter_value(it), precision, depth + 1);
            sep = ",";
        }
        return rc != 0 ? rc : gw_buf_add(out, *sep == '{' ? "{}" : "}", *sep == '{' ? 2 : 1);
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        rc = gw_buf_add(out, "[", 1);
        for (size_t i = 0; i < n && rc == 0; i++)
            if (i == 0 || (rc = gw_buf_add(out, ",", 1)) == 0)
                rc = write_value(out, json_array_get(v, i), precision, depth + 1);
        return rc != 0 ? rc : gw_buf_add(out, "]", 1);
    }
    case JSON_STRING:
        return gw_buf_add_json_strn(out, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return gw_buf_add(out, num, gw_int_text(num, json_integer_value(v)));
    case JSON_REAL:
        gw_json_real_textp(num, sizeof(num), json_real_value(v), precision > 0 ? precision : 17);
        return gw_buf_adds(out, num);
    case JSON_TRUE:
        return gw_buf_add(out, "true", 4);
    case JSON_FALSE:
        return gw_buf_add(out, "false", 5);
    default:
        return gw_buf_add(out, "null", 4);
    }
}

int gw_json_write(struct gw_buf *out, const json_t *v, int precision)
{
    return v != NULL ? write_value(out, v, precision, 1) : GW_EINVAL;
}

char *gw_json_dumps(const json_t *v, int precision)
{
    struct gw_buf b;
    if (!json_is_object(v) && !json_is_array(v))
        return NULL;
    gw_buf_init(&b, SIZE_MAX - 1);
    if (gw_json_write(&b, v, precision) != 0) {
        gw_buf_cleanup(&b);
        return NULL;
    }
    return gw_buf_take(&b);
}

char *gw_json_dump(const json_t *v) { return gw_json_dumps(v, 0); }
