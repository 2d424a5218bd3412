/*
 * util/util — small helpers shared by every area: clocks, random ids, hex, SHA-256, strict
 * integer parsing, safe string copy.
 */
#ifndef GW_UTIL_UTIL_H
#define GW_UTIL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* Wall clock in milliseconds / seconds since the epoch. */
int64_t gw_now_ms(void);
int64_t gw_now_s(void);
#ifdef GW_TEST_HOOKS
/* Test builds only: move the wall clock forward by ms (for sliding windows, budget resets).
 * Returns the total offset. */
int64_t gw_test_clock_advance(int64_t ms);
#endif
/* Monotonic clock in microseconds. */
int64_t gw_mono_us(void);

/* Fill buf with n cryptographically random bytes. Returns 0 or GW_EIO. */
GW_NODISCARD int gw_random(void *buf, size_t n);
/* Write "prefix" + 2*nbytes random hex chars into out (size outsz). Returns 0 or an error. */
GW_NODISCARD int gw_random_id(char *out, size_t outsz, const char *prefix, size_t nbytes);

/* prefix, then the low 48 bits of unix ms now_ms as 12 hex digits, then 12 random ones: an id
 * that sorts by time (request ids "req_...", conversation refs "cv_..."). 0, GW_EIO (no
 * randomness) or GW_EINVAL (outsz too small). */
GW_NODISCARD int gw_time_id(char *out, size_t outsz, const char *prefix, int64_t now_ms);
/* v in decimal into out (GW_INT_TEXT_MAX bytes at least), NUL-terminated; returns the length. */
#define GW_INT_TEXT_MAX 21
size_t gw_int_text(char *out, int64_t v);

/* Lower-case hex of n bytes into out (needs 2n+1). */
void gw_hex(char *out, const unsigned char *in, size_t n);
/* base64url without padding of n bytes into out (needs 4*ceil(n/3)+1). Returns length. */
size_t gw_b64url(char *out, const unsigned char *in, size_t n);
/* SHA-256 of n bytes. */
void gw_sha256(unsigned char out[32], const void *in, size_t n);
/* Constant-time equality of n bytes. */
int gw_ct_equal(const void *a, const void *b, size_t n);

/* Parse a base-10 int64 occupying the whole string. Returns 0 or GW_EINVAL. */
GW_NODISCARD int gw_parse_i64(const char *s, int64_t *out);
/* Parse a non-negative decimal amount ("2.50", "0.075", "3") into integer millionths
 * (2.50 → 2500000) without floating point. At most 6 fraction digits. Returns 0 or GW_EINVAL. */
GW_NODISCARD int gw_parse_micros(const char *s, int64_t *out);
/* A UTC time YYYY-MM-DD[THH:MM[:SS]][Z] as unix milliseconds. 0 or GW_EINVAL. */
GW_NODISCARD int gw_parse_utc_ms(const char *s, int64_t *out);
/* unix ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" (out: at least GW_ISO_TIME_MAX bytes). */
#define GW_ISO_TIME_MAX 64
void gw_iso_time_ms(int64_t ms, char *out, size_t outsz);
/* A time a query gives: unix seconds, or a UTC time as above; as unix milliseconds. */
GW_NODISCARD int gw_parse_when_ms(const char *s, int64_t *out);

/* Read a whole regular file of at most max bytes into a new NUL-terminated buffer (*out, freed
 * with gw_free; *len excludes the NUL). A file that grows while being read is an error.
 * Returns 0, GW_EIO, GW_ETOOBIG or GW_ENOMEM, with the reason in eb. */
GW_NODISCARD int gw_read_file(const char *path, size_t max, char **out, size_t *len,
                              struct gw_errbuf *eb);

/* Copy src into dst (size n), always NUL-terminated. Returns 0, or GW_ETOOBIG if truncated. */
int gw_strlcpy(char *dst, const char *src, size_t n);
/* Case-insensitive ASCII equality. */
int gw_strcaseeq(const char *a, const char *b);

#endif
