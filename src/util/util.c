/* util/util — clocks, randomness, encodings and strict parsing. */
#include "util/util.h"

#include "util/mem.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#ifdef GW_TEST_HOOKS
/* Test builds only: the wall clock can be moved forward (POST /__test/clock). */
static _Atomic int64_t clock_offset_ms;

int64_t gw_test_clock_advance(int64_t ms)
{
    return atomic_fetch_add(&clock_offset_ms, ms) + ms;
}
#define CLOCK_OFFSET_MS atomic_load_explicit(&clock_offset_ms, memory_order_relaxed)
#else
#define CLOCK_OFFSET_MS 0
#endif

int64_t gw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + CLOCK_OFFSET_MS;
}

int64_t gw_now_s(void) { return gw_now_ms() / 1000; }

int64_t gw_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The kernel's CSPRNG, read 256 bytes at a time per thread (one getrandom call instead of a
 * locked DRBG per request id); bytes handed out are wiped from the pool. */
#define GW_RANDOM_POOL 256

int gw_random(void *buf, size_t n)
{
    static _Thread_local unsigned char pool[GW_RANDOM_POOL];
    static _Thread_local size_t pos, end; /* pool[pos, end) is unused */
    unsigned char *out = buf;

    while (n > 0) {
        if (pos == end) {
            ssize_t got = getrandom(pool, sizeof(pool), 0);
            if (got < 0 && errno != EINTR)
                return GW_EIO;
            pos = 0;
            end = got > 0 ? (size_t)got : 0;
            continue;
        }
        size_t take = n < end - pos ? n : end - pos;
        memcpy(out, pool + pos, take);
        OPENSSL_cleanse(pool + pos, take);
        out += take;
        n -= take;
        pos += take;
    }
    return 0;
}

int gw_random_id(char *out, size_t outsz, const char *prefix, size_t nbytes)
{
    unsigned char raw[32];
    size_t plen = strlen(prefix);

    if (nbytes > sizeof(raw) || plen + 2 * nbytes + 1 > outsz)
        return GW_EINVAL;
    int rc = gw_random(raw, nbytes);
    if (rc != 0)
        return rc;
    memcpy(out, prefix, plen);
    gw_hex(out + plen, raw, nbytes);
    return 0;
}

int gw_time_id(char *out, size_t outsz, const char *prefix, int64_t now_ms)
{
    unsigned char t[6];
    size_t plen = strlen(prefix);
    if (plen + 25 > outsz)
        return GW_EINVAL;
    for (int i = 0; i < 6; i++)
        t[i] = (unsigned char)((uint64_t)now_ms >> (40 - 8 * i));
    memcpy(out, prefix, plen);
    gw_hex(out + plen, t, sizeof(t));
    return gw_random_id(out + plen + 12, outsz - plen - 12, "", 6);
}

size_t gw_int_text(char *out, int64_t v)
{
    char tmp[GW_INT_TEXT_MAX];
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    size_t n = 0, len = 0;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        out[len++] = '-';
    while (n > 0)
        out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

void gw_hex(char *out, const unsigned char *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

size_t gw_b64url(char *out, const unsigned char *in, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

/* SHA-256 fetched from OpenSSL's provider once: SHA256() looks the algorithm up on every call,
 * three quarters of its cost for a key's few bytes (each request hashes its key) */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static void sha256_fetch(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

void gw_sha256(unsigned char out[32], const void *in, size_t n)
{
    pthread_once(&sha256_once, sha256_fetch);
    if (sha256_md == NULL || EVP_Digest(in, n, out, NULL, sha256_md, NULL) != 1)
        SHA256(in, n, out);
}

int gw_ct_equal(const void *a, const void *b, size_t n) { return CRYPTO_memcmp(a, b, n) == 0; }

int gw_parse_i64(const char *s, int64_t *out)
{
    char *end = NULL;
    if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
        return GW_EINVAL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return GW_EINVAL;
    *out = (int64_t)v;
    return 0;
}

int gw_parse_micros(const char *s, int64_t *out)
{
    int64_t whole = 0, frac = 0;
    int fdigits = 0, digits = 0;
    const char *p = s;

    if (s == NULL || *s == '\0')
        return GW_EINVAL;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (whole > (INT64_MAX / 1000000 - 9) / 10)
            return GW_EINVAL;
        whole = whole * 10 + (*p - '0');
    }
    if (*p == '.') {
        p++;
        for (; *p >= '0' && *p <= '9'; p++, fdigits++) {
            if (fdigits >= 6)
                return GW_EINVAL;
            frac = frac * 10 + (*p - '0');
        }
        if (fdigits == 0)
            return GW_EINVAL;
    }
    if (*p != '\0' || digits == 0)
        return GW_EINVAL;
    for (int i = fdigits; i < 6; i++)
        frac *= 10;
    *out = whole * 1000000 + frac;
    return 0;
}

int gw_strlcpy(char *dst, const char *src, size_t n)
{
    size_t len = strlen(src);
    if (n == 0)
        return GW_ETOOBIG;
    if (len >= n) {
        memcpy(dst, src, n - 1);
        dst[n - 1] = '\0';
        return GW_ETOOBIG;
    }
    memcpy(dst, src, len + 1);
    return 0;
}

int gw_strcaseeq(const char *a, const char *b) { return strcasecmp(a, b) == 0; }

int gw_read_file(const char *path, size_t max, char **out, size_t *len, struct gw_errbuf *eb)
{
    FILE *f;
    struct stat st;
    char *buf = NULL;
    size_t n;
    int rc = GW_EIO;

    *out = NULL;
    *len = 0;
    if (path == NULL)
        return GW_EINVAL;
    if ((f = fopen(path, "rb")) == NULL) {
        gw_errbuf_set(eb, "cannot open: %s", strerror(errno));
        return GW_EIO;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        gw_errbuf_set(eb, "not a regular file");
        goto out;
    }
    if ((uint64_t)st.st_size > (uint64_t)max) {
        gw_errbuf_set(eb, "larger than %zu bytes", max);
        rc = GW_ETOOBIG;
        goto out;
    }
    /* read one byte more than fstat promised, so a file that grew meanwhile is caught */
    if ((buf = gw_malloc((size_t)st.st_size + 1)) == NULL) {
        rc = GW_ENOMEM;
        goto out;
    }
    n = fread(buf, 1, (size_t)st.st_size + 1, f);
    if (ferror(f) || n > (size_t)st.st_size) {
        gw_errbuf_set(eb, "read error or file changed while reading");
        goto out;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
    rc = 0;
out:
    gw_free(buf);
    fclose(f);
    return rc;
}

int gw_parse_utc_ms(const char *s, int64_t *out)
{
    struct tm tm;
    const char *end;
    memset(&tm, 0, sizeof(tm));
    if ((end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL &&
        (end = strptime(s, "%Y-%m-%dT%H:%M", &tm)) == NULL &&
        (end = strptime(s, "%Y-%m-%d", &tm)) == NULL)
        return GW_EINVAL;
    if (*end == 'Z')
        end++;
    if (*end != '\0')
        return GW_EINVAL;
    *out = (int64_t)timegm(&tm) * 1000;
    return 0;
}

int gw_parse_when_ms(const char *s, int64_t *out)
{
    int64_t secs;
    if (gw_parse_i64(s, &secs) == 0) {
        if (secs < 0 || secs > 253402300799LL) /* up to the year 9999 */
            return GW_EINVAL;
        *out = secs * 1000;
        return 0;
    }
    return gw_parse_utc_ms(s, out);
}

void gw_iso_time_ms(int64_t ms, char *out, size_t outsz)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}
