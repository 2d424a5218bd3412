/*
 * util/json — typed accessors over jansson trees for untrusted input, and bounded parsing.
 * Accessors return NULL / the fallback when the key is absent OR has the wrong type; use
 * gw_json_check_* where the difference matters for the error message.
 */
#ifndef GW_UTIL_JSON_H
#define GW_UTIL_JSON_H

#include <jansson.h>
#include <stdint.h>

#include "util/err.h"

struct gw_buf;

/* Parse exactly len bytes strictly (duplicate keys rejected, one value, no trailing data, no
 * NUL in strings, well-formed UTF-8, 64-bit integers, finite reals, at most 2048 levels). On
 * error returns NULL and writes "message near byte N" into eb. */
json_t *gw_json_parse(const char *buf, size_t len, struct gw_errbuf *eb);
/* For scanners built on yajl (the OpenAI fast path), the places where yajl is laxer than
 * jansson: is s (n bytes) well-formed UTF-8, without overlong forms, surrogates or code points
 * above U+10FFFF (yajl checks only each sequence's shape)? The first \v or \f in buf (yajl
 * skips them as whitespace; no JSON text holds one), or NULL. And, text[0, end) ending with a
 * string token (its closing quote at end - 1: where yajl is in a string or key callback), does
 * every \u escape of a UTF-16 surrogate in it come in a high-low pair (yajl turns an unpaired
 * one into '?' or into invalid UTF-8)? s: the string yajl gave for that token; when it lies
 * inside text, yajl took it straight from there, so it has no escape at all. */
int gw_json_utf8_ok(const unsigned char *s, size_t n);
const char *gw_json_bad_space(const char *buf, size_t len);
int gw_json_surrogates_ok(const char *text, size_t end, const unsigned char *s);
/* All three for the string or key s (len bytes) that yajl gave for the token ending text[0,
 * end), and no NUL in it (jansson refuses \u0000): NULL when jansson would take it, else why
 * not. */
const char *gw_json_text_bad(const char *text, size_t end, const unsigned char *s, size_t len);
/* String member or NULL (also NULL when obj is not an object). */
const char *gw_json_str(const json_t *obj, const char *key);
/* Integer member or fallback. */
json_int_t gw_json_int(const json_t *obj, const char *key, json_int_t fallback);
/* Boolean member (true only if JSON true). */
int gw_json_true(const json_t *obj, const char *key);
/* Serialize compactly into a new string, byte for byte as json_dumps(v, JSON_COMPACT |
 * JSON_REAL_PRECISION(precision)) does (precision 0: jansson's 17), without its cost: jansson
 * hashes every container's address into a set to detect cycles (our trees have none; depth is
 * bounded instead) and writes through a callback per piece. The caller frees the string with
 * gw_free. NULL when out of memory, or when v is not an object or an array (as jansson). */
char *gw_json_dumps(const json_t *v, int precision);
/* The same with precision 0. */
char *gw_json_dump(const json_t *v);
/* Append v (any kind) so. 0, GW_ENOMEM, GW_ETOOBIG, or GW_EINVAL past GW_JSON_MAX_DEPTH levels. */
GW_NODISCARD int gw_json_write(struct gw_buf *out, const json_t *v, int precision);

#endif
