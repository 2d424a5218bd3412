/*
 * util/splice — relay a JSON object as the bytes it arrived in, minus some top-level members,
 * plus members of our own: the fast path for answers whose wire format already is the
 * canonical one (no tree, no second serialisation).
 *
 * A validating scan (the adapter's, with yajl) fills struct gw_splice with the offsets of the
 * root object's inside and of every member to cut; the caller writes "{", its own members with
 * gw_splice_member_*, the members kept with gw_splice_kept, and "}".
 *
 * Invariants: offsets come from the scan of exactly these bytes, so every cut is one or more
 * whole members; what lies between kept members is whitespace and commas, which the writer
 * normalises. The output is valid JSON if the input was and the caller's values are.
 */
#ifndef GW_UTIL_SPLICE_H
#define GW_UTIL_SPLICE_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define GW_SPLICE_MAX 8

struct gw_splice {
    size_t open;                   /* offset just after the root's "{" */
    size_t close;                  /* offset of the root's "}" */
    size_t cut[GW_SPLICE_MAX][2];  /* [from, to) of each member to leave out, in order */
    int ncut;
};

/* Record the member [from, to) as cut. Returns 0, or -1 when GW_SPLICE_MAX are cut already. */
int gw_splice_cut(struct gw_splice *sp, size_t from, size_t to);
/* Append the members of body that are not cut. *count says whether a member was written
 * before (0 or 1: enough for the comma rule); it is shared with gw_splice_member_*. */
GW_NODISCARD int gw_splice_kept(struct gw_buf *out, const char *body, const struct gw_splice *sp,
                                int *count);
/* Append the member "name": value, where value is JSON text (raw), a string (escaped), or an
 * integer. name is a plain ASCII key. */
GW_NODISCARD int gw_splice_member_raw(struct gw_buf *out, int *count, const char *name,
                                      const char *value, size_t len);
GW_NODISCARD int gw_splice_member_str(struct gw_buf *out, int *count, const char *name,
                                      const char *value);
GW_NODISCARD int gw_splice_member_int(struct gw_buf *out, int *count, const char *name,
                                      int64_t value);
/* Append s (NUL-terminated; or len bytes) as a JSON string literal (quoted, escaped as jansson
 * does: only the quote, the backslash and control characters). */
GW_NODISCARD int gw_buf_add_json_str(struct gw_buf *out, const char *s);
GW_NODISCARD int gw_buf_add_json_strn(struct gw_buf *out, const char *s, size_t len);
/* Format v as jansson does with JSON_REAL_PRECISION(15) ("%.15g", ".0" added to integers,
 * no "+" or leading zeros in the exponent); textp with another precision. */
void gw_json_real_text(char *dst, size_t n, double v);
void gw_json_real_textp(char *dst, size_t n, double v, int precision);
/* gw_json_real_text(dst, n, micros / 1e6) (dollars from micro-dollars), the same text written
 * without printf; dst of GW_JSON_MICROS_MAX bytes at least */
#define GW_JSON_MICROS_MAX 32
void gw_json_micros_text(char *dst, size_t n, int64_t micros);

#endif
