/* util/mem — allocation wrappers with a fault-injection hook for OOM tests. */
#include "util/mem.h"

#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Atomic: a running gateway's threads all allocate (the test builds' /__test/alloc). */
static _Atomic long fail_countdown;

static int should_fail(void)
{
    if (atomic_load_explicit(&fail_countdown, memory_order_relaxed) <= 0)
        return 0;
    return atomic_fetch_sub(&fail_countdown, 1) == 1;
}

void gw_mem_fail_after(long n) { atomic_store(&fail_countdown, n); }

long gw_mem_fail_remaining(void)
{
    long n = atomic_load(&fail_countdown);
    return n > 0 ? n : 0;
}

void *gw_malloc(size_t n) { return should_fail() ? NULL : malloc(n ? n : 1); }

void *gw_calloc(size_t nmemb, size_t size)
{
    return should_fail() ? NULL : calloc(nmemb ? nmemb : 1, size ? size : 1);
}

void *gw_realloc(void *p, size_t n) { return should_fail() ? NULL : realloc(p, n ? n : 1); }

void gw_free(void *p) { free(p); }

void *gw_grow_zeroed(void *p, size_t *n, size_t i, size_t first, size_t elem)
{
    if (i < *n)
        return p;
    size_t m = *n ? *n : first;
    while (m <= i)
        m *= 2;
    unsigned char *t = gw_realloc(p, m * elem);
    if (t == NULL)
        return NULL;
    memset(t + *n * elem, 0, (m - *n) * elem);
    *n = m;
    return t;
}

char *gw_strndup(const char *s, size_t n)
{
    char *d = gw_malloc(n + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *gw_strdup(const char *s) { return gw_strndup(s, strlen(s)); }

void gw_free_secret(char *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}
