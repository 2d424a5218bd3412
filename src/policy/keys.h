/*
 * policy/keys — API key material: generation, hashing, format checks.
 *
 * A raw key is "llmgw_" followed by 43 base64url characters (32 random bytes). Only its SHA-256
 * is stored; the raw key exists in memory just long enough to hash it or print it once.
 */
#ifndef GW_POLICY_KEYS_H
#define GW_POLICY_KEYS_H

#include <stddef.h>

#include "util/err.h"

#define GW_KEY_PREFIX "llmgw_"
#define GW_KEY_RAW_LEN 49 /* 6 + 43 */
#define GW_KEY_DISPLAY_PREFIX_LEN 10

/* Generate a new raw key into raw (size >= GW_KEY_RAW_LEN + 1) and its hash. 0 or GW_EIO. */
GW_NODISCARD int gw_key_generate(char *raw, size_t rawsz, unsigned char hash[32]);
/* Hash len bytes of a presented key. */
void gw_key_hash(const char *raw, size_t len, unsigned char hash[32]);
/* Plausibility check before any lookup: prefix, length, alphabet. 1 if well-formed. */
int gw_key_is_wellformed(const char *raw, size_t len);
/* Public key id "key_" + 16 hex chars into out (size >= 21). */
GW_NODISCARD int gw_key_new_id(char *out, size_t outsz);

#endif
