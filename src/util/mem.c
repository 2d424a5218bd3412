/* util/mem — allocation wrappers with a fault-injection hook for OOM tests. */
#include "util/mem.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

static long fail_countdown;

static int should_fail(void)
{
    if (fail_countdown <= 0)
        return 0;
    return --fail_countdown == 0;
}

void gw_mem_fail_after(long n) { fail_countdown = n; }

void *gw_malloc(size_t n) { return should_fail() ? NULL : malloc(n ? n : 1); }

void *gw_calloc(size_t nmemb, size_t size)
{
    return should_fail() ? NULL : calloc(nmemb ? nmemb : 1, size ? size : 1);
}

void *gw_realloc(void *p, size_t n) { return should_fail() ? NULL : realloc(p, n ? n : 1); }

void gw_free(void *p) { free(p); }

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
