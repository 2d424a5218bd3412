/* util/splice — relaying a JSON object with members cut and added; see splice.h. */
#include "util/splice.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/util.h"

int gw_splice_cut(struct gw_splice *sp, size_t from, size_t to)
{
    if (sp->ncut >= GW_SPLICE_MAX)
        return -1;
    sp->cut[sp->ncut][0] = from;
    sp->cut[sp->ncut][1] = to;
    sp->ncut++;
    return 0;
}

static int is_sep(char ch)
{
    return ch == ',' || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Append body[from, to): whole members, with the separators around them normalised. */
static int add_region(struct gw_buf *out, const char *body, size_t from, size_t to, int *count)
{
    while (from < to && is_sep(body[from]))
        from++;
    while (to > from && is_sep(body[to - 1]))
        to--;
    if (from == to)
        return 0;
    if (*count > 0 && gw_buf_add(out, ",", 1) != 0)
        return GW_ENOMEM;
    *count = 1;
    return gw_buf_add(out, body + from, to - from);
}

int gw_splice_kept(struct gw_buf *out, const char *body, const struct gw_splice *sp, int *count)
{
    size_t at = sp->open;
    int rc;

    for (int i = 0; i < sp->ncut; i++) {
        if ((rc = add_region(out, body, at, sp->cut[i][0], count)) != 0)
            return rc;
        at = sp->cut[i][1];
    }
    return add_region(out, body, at, sp->close, count);
}

static int member_name(struct gw_buf *out, int *count, const char *name)
{
    int rc = 0;
    if (*count > 0)
        rc = gw_buf_add(out, ",", 1);
    *count = 1;
    if (rc == 0)
        rc = gw_buf_add(out, "\"", 1);
    if (rc == 0)
        rc = gw_buf_adds(out, name);
    if (rc == 0)
        rc = gw_buf_add(out, "\":", 2);
    return rc;
}

int gw_splice_member_raw(struct gw_buf *out, int *count, const char *name, const char *value,
                         size_t len)
{
    int rc = member_name(out, count, name);
    return rc != 0 ? rc : gw_buf_add(out, value, len);
}

int gw_splice_member_str(struct gw_buf *out, int *count, const char *name, const char *value)
{
    int rc = member_name(out, count, name);
    return rc != 0 ? rc : gw_buf_add_json_str(out, value);
}

int gw_splice_member_int(struct gw_buf *out, int *count, const char *name, int64_t value)
{
    char n[GW_INT_TEXT_MAX];
    size_t len = gw_int_text(n, value);
    return gw_splice_member_raw(out, count, name, n, len);
}

int gw_buf_add_json_str(struct gw_buf *out, const char *s)
{
    return gw_buf_add_json_strn(out, s, strlen(s));
}

/* Whether any of the 8 bytes at s is below 0x20, '"' or '\\' (sometimes also when one follows
 * such a byte: the caller then looks at each). */
static int needs_escape8(const char *s)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t v, q, b;
    memcpy(&v, s, sizeof(v));
    q = v ^ (ones * '"');
    b = v ^ (ones * '\\');
    return (((v - ones * 0x20) | (q - ones) | (b - ones)) & ~v & highs) != 0;
}

int gw_buf_add_json_strn(struct gw_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF"; /* as jansson writes them */
    const char *run = s, *end = s + len;
    int rc = gw_buf_add(out, "\"", 1);

    for (; rc == 0 && s < end; s++) {
        while (end - s >= 8 && !needs_escape8(s)) /* the common case: nothing to escape */
            s += 8;
        if (s == end)
            break;
        unsigned char ch = (unsigned char)*s;
        char esc[6];
        size_t n = 2;
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        esc[0] = '\\';
        switch (ch) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            n = 6;
        }
        rc = gw_buf_add(out, run, (size_t)(s - run));
        if (rc == 0)
            rc = gw_buf_add(out, esc, n);
        run = s + 1;
    }
    if (rc == 0)
        rc = gw_buf_add(out, run, (size_t)(s - run));
    return rc != 0 ? rc : gw_buf_add(out, "\"", 1);
}

void gw_json_real_text(char *dst, size_t n, double v) { gw_json_real_textp(dst, n, v, 15); }

void gw_json_real_textp(char *dst, size_t n, double v, int precision)
{
    int len = snprintf(dst, n, "%.*g", precision, v);
    if (len <= 0 || (size_t)len >= n)
        return;
    char *e = strchr(dst, 'e');
    if (e != NULL) { /* "1e+20" -> "1e20", "3.3e-07" -> "3.3e-7" */
        char *from = e + 1, *to = e + 1;
        if (*from == '-')
            *to++ = *from++;
        else if (*from == '+')
            from++;
        while (*from == '0' && from[1] != '\0')
            from++;
        memmove(to, from, strlen(from) + 1);
    } else if ((size_t)len + 2 < n && strpbrk(dst, ".n") == NULL) { /* n: inf, nan */
        memcpy(dst + len, ".0", 3);
    }
}

/* Below 10^15 micro-dollars the quotient's 15 significant digits are the exact decimal
 * micros * 10^-6 (a double carries more than 15), so "%.15g" prints that decimal: under 100
 * (below 10^-4) as d[.d]e-N, from 100 on as the integer part and up to six decimals without
 * trailing zeros; the normalisation then drops the exponent's zero and adds ".0" to an integer. */
void gw_json_micros_text(char *dst, size_t n, int64_t micros)
{
    if (micros < 0 || micros >= 1000000000000000 || n < GW_JSON_MICROS_MAX) {
        gw_json_real_text(dst, n, (double)micros / 1e6);
        return;
    }
    char *p = dst;
    if (micros == 0) {
        memcpy(p, "0.0", 4);
        return;
    }
    if (micros < 100) {
        *p++ = (char)('0' + (micros >= 10 ? micros / 10 : micros));
        if (micros >= 10 && micros % 10 != 0) {
            *p++ = '.';
            *p++ = (char)('0' + micros % 10);
        }
        memcpy(p, micros >= 10 ? "e-5" : "e-6", 4);
        return;
    }
    p += gw_int_text(p, micros / 1000000);
    int frac = (int)(micros % 1000000);
    if (frac == 0) {
        memcpy(p, ".0", 3);
        return;
    }
    *p++ = '.';
    for (int div = 100000; frac != 0; div /= 10) {
        *p++ = (char)('0' + frac / div);
        frac %= div;
    }
    *p = '\0';
}
