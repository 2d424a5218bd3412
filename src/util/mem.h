/*
 * util/mem — the only place that calls malloc/free. Everything else uses these wrappers, so a
 * test build can fail the Nth allocation (gw_mem_fail_after) and prove OOM paths are handled.
 */
#ifndef GW_UTIL_MEM_H
#define GW_UTIL_MEM_H

#include <stddef.h>

void *gw_malloc(size_t n);
void *gw_calloc(size_t nmemb, size_t size);
void *gw_realloc(void *p, size_t n);
char *gw_strdup(const char *s);
char *gw_strndup(const char *s, size_t n);
void gw_free(void *p);
/* A table p of *n elements of elem bytes, grown (doubling from first) to hold index i, the new
 * elements zeroed: the new table, *n updated; NULL, p and *n unchanged, when it cannot grow. */
void *gw_grow_zeroed(void *p, size_t *n, size_t i, size_t first, size_t elem);

/* Free p and set it to NULL. */
#define GW_FREE(p)                                                                                 \
    do {                                                                                           \
        gw_free(p);                                                                                \
        (p) = NULL;                                                                                \
    } while (0)

/* Wipe a secret's memory (OPENSSL_cleanse) and free it. NULL is a no-op. */
void gw_free_secret(char *s);

/* Test hook: make the Nth allocation from now fail (0 disables). Not thread-safe. */
void gw_mem_fail_after(long n);
/* Allocations left before the failing one (0: it happened, or none is armed). */
long gw_mem_fail_remaining(void);

#endif
