/* policy/keys — API key generation and hashing; see keys.h. */
#include "policy/keys.h"

#include <openssl/crypto.h>
#include <string.h>

#include "util/util.h"

int gw_key_generate(char *raw, size_t rawsz, unsigned char hash[32])
{
    unsigned char rnd[32];

    if (rawsz < GW_KEY_RAW_LEN + 1)
        return GW_EINVAL;
    int rc = gw_random(rnd, sizeof(rnd));
    if (rc != 0)
        return rc;
    memcpy(raw, GW_KEY_PREFIX, strlen(GW_KEY_PREFIX));
    gw_b64url(raw + strlen(GW_KEY_PREFIX), rnd, sizeof(rnd));
    OPENSSL_cleanse(rnd, sizeof(rnd));
    gw_key_hash(raw, strlen(raw), hash);
    return 0;
}

void gw_key_hash(const char *raw, size_t len, unsigned char hash[32]) { gw_sha256(hash, raw, len); }

int gw_key_is_wellformed(const char *raw, size_t len)
{
    size_t plen = strlen(GW_KEY_PREFIX);

    if (len != GW_KEY_RAW_LEN || strncmp(raw, GW_KEY_PREFIX, plen) != 0)
        return 0;
    for (size_t i = plen; i < len; i++) {
        char c = raw[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

int gw_key_new_id(char *out, size_t outsz) { return gw_random_id(out, outsz, "key_", 8); }
