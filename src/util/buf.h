/*
 * util/buf — a growable byte buffer with a hard size cap (after curl's dynbuf).
 *
 * Invariants: data is always NUL-terminated when non-NULL (len excludes the NUL); len <= max.
 * An append that would pass max fails with GW_ETOOBIG and leaves the buffer unchanged.
 */
#ifndef GW_UTIL_BUF_H
#define GW_UTIL_BUF_H

#include <stddef.h>
#include <string.h>

#include "util/err.h"

struct gw_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
};

/* Initialise an empty buffer that may hold at most max bytes. Allocates nothing. */
void gw_buf_init(struct gw_buf *b, size_t max);
/* Free the storage; the buffer is empty (same max) afterwards and may be reused. */
void gw_buf_cleanup(struct gw_buf *b);
/* Forget the content, keep the storage. */
void gw_buf_reset(struct gw_buf *b);
/* Append n bytes. Returns 0, GW_ETOOBIG or GW_ENOMEM. */
GW_NODISCARD int gw_buf_add_grow(struct gw_buf *b, const void *p, size_t n);
/* The same, inline where the bytes fit in what is allocated (most appends). */
GW_NODISCARD static inline int gw_buf_add(struct gw_buf *b, const void *p, size_t n)
{
    if (n == 0 || n >= b->cap - b->len || n > b->max - b->len)
        return gw_buf_add_grow(b, p, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}
/* Append a NUL-terminated string. */
GW_NODISCARD int gw_buf_adds(struct gw_buf *b, const char *s);
/* Append formatted text. */
GW_NODISCARD int gw_buf_printf(struct gw_buf *b, const char *fmt, ...) GW_PRINTF(2, 3);
/* Drop the first n bytes (n <= len). */
void gw_buf_consume(struct gw_buf *b, size_t n);
/* Take the storage (caller frees with gw_free); the buffer becomes empty. NULL if empty. */
char *gw_buf_take(struct gw_buf *b);

#endif
