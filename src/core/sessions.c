/*
 * core/sessions — browser-safe subject sessions, their first two steps (see sessions.h).
 *
 * Share code: the app's backend, with an API key of the app client's org, asks for a code for
 * one subject and a PKCE S256 challenge; the code (random, 24 bytes) is returned once and only
 * its SHA-256 is stored, with a 60-second life.
 *
 * Exchange: the browser presents the code and the PKCE verifier, from its Origin. The code is
 * used up first, in its own atomic step (one caller in any number wins it), and only then
 * checked: its expiry, the verifier (constant-time), the app client (approved, not revoked),
 * the Origin (one of the client's). Any failure after that leaves the code burned. A good
 * exchange creates the session: a random token (only its SHA-256 stored) and a random HMAC key,
 * bound to the Origin, living the client's session lifetime.
 *
 * As in core/admin, each request is one store job; the answer is built on the store thread.
 */
#include "core/sessions.h"


#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/admin.h"
#include "core/answer.h"
#include "core/gw_int.h"
#include "http/reply.h"
#include "store/jobs.h"
#include "util/json.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/util.h"

#define SHARE_CODE_TTL_MS 60000
#define TOKEN_PREFIX "llmst_"

enum op { OP_SHARE, OP_EXCHANGE, OP_PREFLIGHT };

struct session_job {
    struct gw_store_job job;
    struct gw_worker *w;
    struct evhttp_request *req;
    char rid[72];
    enum op op;
    unsigned char hash[32]; /* the API key's (share codes) */
    char bad[200];          /* non-empty: 400 with this (after the key, for share codes) */
    /* the request */
    char client_id[40];
    char subject[129];
    char challenge[64];
    char code[80];
    char verifier[129];
    char origin[201];
    /* on the store thread */
    int cors; /* the Origin is an approved app client's: the browser may read the answer */
    int signed_path; /* a preflight for a signed request (else for the exchange) */
    int conv_path;   /* a preflight for a conversation route (GET, POST, DELETE) */
    int auth_rc;
    struct gw_key_rec key;
    struct gw_answer an;
};

static void fail(struct session_job *a, int status, const char *type, const char *code,
                 const char *msg)
{
    gw_answer_fail(&a->an, status, type, code, msg);
}

static void store_failed(struct session_job *a, int rc)
{
    gw_answer_store_failed(&a->an, "sessions", a->rid, rc);
}

/* ---- the request ---- */

/* A member that must be a string of 1..max-1 bytes made of the characters in set (NULL: any
 * printable ASCII), copied into dst. */
static int take_str(struct session_job *a, const json_t *b, const char *name, const char *set,
                    size_t minlen, char *dst, size_t max)
{
    const char *s = json_string_value(json_object_get(b, name));
    size_t n = s != NULL ? strlen(s) : 0;
    int ok = s != NULL && n >= minlen && n < max;
    for (size_t i = 0; ok && set == NULL && i < n; i++)
        ok = s[i] >= 0x20 && s[i] < 0x7f;
    if (ok && set != NULL)
        ok = strspn(s, set) == n;
    if (!ok) {
        if (a->bad[0] == '\0')
            snprintf(a->bad, sizeof(a->bad), "%s must be a string of %zu to %zu %s characters",
                     name, minlen, max - 1, set != NULL ? "allowed" : "printable");
        return -1;
    }
    memcpy(dst, s, n + 1);
    return 0;
}

#define B64URL "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#define PKCE_VERIFIER B64URL ".~" /* RFC 7636: unreserved characters */

static void parse_share(struct session_job *a)
{
    json_t *b = gw_answer_body(a->req, a->bad, sizeof(a->bad));
    if (b == NULL)
        return;
    const char *method = json_string_value(json_object_get(b, "code_challenge_method"));
    if (take_str(a, b, "app_client_id", "ac_0123456789abcdef", 1, a->client_id,
                 sizeof(a->client_id)) == 0 &&
        take_str(a, b, "subject", NULL, 1, a->subject, sizeof(a->subject)) == 0 &&
        take_str(a, b, "code_challenge", B64URL, 43, a->challenge, 44) == 0 &&
        (method == NULL || strcmp(method, "S256") != 0))
        snprintf(a->bad, sizeof(a->bad), "code_challenge_method must be \"S256\"%s",
                 method != NULL && strcmp(method, "plain") == 0 ? " (plain is refused)" : "");
    json_decref(b);
}

static void parse_exchange(struct session_job *a)
{
    json_t *b = gw_answer_body(a->req, a->bad, sizeof(a->bad));
    if (b == NULL)
        return;
    /* a code given with a bad verifier is still used up (below) */
    if (take_str(a, b, "share_code", B64URL, 1, a->code, sizeof(a->code)) == 0 &&
        take_str(a, b, "code_verifier", PKCE_VERIFIER, 43, a->verifier, sizeof(a->verifier)) != 0)
        a->verifier[0] = '\0';
    json_decref(b);
}

/* ---- share codes ---- */

/* The stored form of a secret (a code, a token): hex(SHA-256). */
static void secret_hash(const char *secret, char hex[65])
{
    unsigned char digest[32];
    gw_sha256(digest, secret, strlen(secret));
    gw_hex(hex, digest, sizeof(digest));
}

/* At rest a session's HMAC key is wrapped with its token: stored as "w1." + base64url(key XOR
 * HMAC-SHA256(token, WRAP_LABEL)). The token is stored only hashed, so the store alone gives
 * neither; a request bearing the token unwraps the key. (A row written before: the bare key.) */
#define WRAP_PREFIX "w1."
#define WRAP_LABEL "llmgw subject session hmac key v1"

static int key_wrap_mask(const char *token, unsigned char mask[32])
{
    unsigned int n = 0;
    return HMAC(EVP_sha256(), token, (int)strlen(token), (const unsigned char *)WRAP_LABEL,
                strlen(WRAP_LABEL), mask, &n) != NULL && n == 32
               ? 0
               : GW_ENOMEM;
}

/* The audit entry of a session's step (minting its share code, starting it): 0 or the store's
 * error (then the step is answered 503, not reported done). Never a code, token or key. */
static int audit_session(struct gw_store *s, const char *action, const char *actor,
                         const char *role, int64_t org_id, const char *client_id,
                         const char *subject, const char *origin, const char *rid)
{
    struct gw_audit au = {.org_id = org_id};
    json_t *d = json_pack("{s:s,s:s}", "subject", subject, "origin", origin);
    char *detail = d != NULL ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    if (detail == NULL)
        return GW_ENOMEM;
    gw_strlcpy(au.actor, actor, sizeof(au.actor));
    gw_strlcpy(au.actor_role, role, sizeof(au.actor_role));
    gw_strlcpy(au.action, action, sizeof(au.action));
    snprintf(au.target, sizeof(au.target), "app_client:%s", client_id);
    gw_strlcpy(au.request_id, rid, sizeof(au.request_id));
    au.detail = detail;
    int rc = gw_store_audit_append(s, &au);
    gw_free(detail);
    return rc;
}

static void do_share(struct session_job *a, struct gw_store *s)
{
    struct gw_app_client c;
    int rc = gw_store_app_client_get(s, a->client_id, &c);
    if (rc == GW_ENOTFOUND || (rc == 0 && c.org_id != a->key.org_id)) {
        fail(a, 404, "invalid_request_error", "app_client_not_found",
             "no such app client in the key's org");
        return;
    }
    if (rc != 0) {
        store_failed(a, rc);
        return;
    }
    if (c.revoked || !c.approved) {
        fail(a, 403, "permission_error", c.revoked ? "app_client_revoked" : "app_client_not_approved",
             c.revoked ? "the app client is revoked" : "the app client is not approved yet");
        return;
    }
    unsigned char raw[24];
    char code[40];
    struct gw_share_code sc = {0};
    if ((rc = gw_random(raw, sizeof(raw))) != 0) {
        store_failed(a, rc);
        return;
    }
    gw_b64url(code, raw, sizeof(raw));
    OPENSSL_cleanse(raw, sizeof(raw));
    secret_hash(code, sc.code_hash);
    gw_strlcpy(sc.client_id, c.client_id, sizeof(sc.client_id));
    sc.org_id = c.org_id;
    gw_strlcpy(sc.subject, a->subject, sizeof(sc.subject));
    gw_strlcpy(sc.challenge, a->challenge, sizeof(sc.challenge));
    sc.created_ms = gw_now_ms();
    sc.expires_ms = sc.created_ms + SHARE_CODE_TTL_MS;
    if ((rc = gw_store_share_code_insert(s, &sc)) != 0 ||
        (rc = audit_session(s, "session.share_code", a->key.key_id, a->key.role, c.org_id,
                            c.client_id, sc.subject, "", a->rid)) != 0) {
        OPENSSL_cleanse(code, sizeof(code));
        store_failed(a, rc);
        return;
    }
    a->an.out = json_pack("{s:s,s:i}", "share_code", code, "expires_in", SHARE_CODE_TTL_MS / 1000);
    OPENSSL_cleanse(code, sizeof(code));
    a->an.status = 200;
}

/* ---- exchange ---- */

static int origin_listed(const char *origins, const char *origin)
{
    size_t n = strlen(origin);
    for (const char *p = origins; *p != '\0';) {
        size_t m = strcspn(p, ",");
        if (m == n && memcmp(p, origin, n) == 0)
            return 1;
        p += m + (p[m] == ',');
    }
    return 0;
}

static void do_exchange(struct session_job *a, struct gw_store *s)
{
    unsigned char digest[32];
    char hex[65];
    struct gw_share_code sc;

    int rc = GW_ENOTFOUND;
    if (a->code[0] != '\0') { /* used up first: from here on, any failure leaves it burned */
        secret_hash(a->code, hex);
        OPENSSL_cleanse(a->code, sizeof(a->code));
        rc = gw_store_share_code_consume(s, hex, &sc);
        if (rc != 0 && rc != GW_ENOTFOUND) {
            store_failed(a, rc);
            return;
        }
    }
    if (a->bad[0] != '\0') {
        fail(a, 400, "invalid_request_error", "invalid_request", a->bad);
        return;
    }
    if (a->origin[0] == '\0') {
        fail(a, 403, "permission_error", "origin_required",
             "the exchange is made from a browser page: its Origin is required");
        return;
    }
    if (rc == GW_ENOTFOUND) {
        fail(a, 401, "authentication_error", "invalid_share_code",
             "the share code is unknown or already used");
        return;
    }
    if (gw_now_ms() >= sc.expires_ms) {
        fail(a, 401, "authentication_error", "share_code_expired", "the share code has expired");
        return;
    }
    char want[64];
    gw_sha256(digest, a->verifier, strlen(a->verifier));
    OPENSSL_cleanse(a->verifier, sizeof(a->verifier));
    size_t n = gw_b64url(want, digest, sizeof(digest));
    if (n != strlen(sc.challenge) || CRYPTO_memcmp(want, sc.challenge, n) != 0) {
        fail(a, 401, "authentication_error", "invalid_code_verifier",
             "the code verifier does not match the share code's challenge");
        return;
    }
    struct gw_app_client c;
    if ((rc = gw_store_app_client_get(s, sc.client_id, &c)) != 0 && rc != GW_ENOTFOUND) {
        store_failed(a, rc);
        return;
    }
    if (rc == GW_ENOTFOUND || c.revoked || !c.approved) {
        fail(a, 403, "permission_error", rc == 0 && !c.revoked ? "app_client_not_approved" : "app_client_revoked",
             "the app client cannot start sessions");
        return;
    }
    if (!origin_listed(c.origins, a->origin)) {
        fail(a, 403, "permission_error", "origin_not_allowed",
             "the Origin is not one of the app client's");
        return;
    }
    unsigned char raw[64];
    char token[64], key[48];
    struct gw_subject_session ss = {0};
    if ((rc = gw_random(raw, sizeof(raw))) != 0) {
        store_failed(a, rc);
        return;
    }
    memcpy(token, TOKEN_PREFIX, strlen(TOKEN_PREFIX));
    gw_b64url(token + strlen(TOKEN_PREFIX), raw, 32);
    gw_b64url(key, raw + 32, 32);
    unsigned char mask[32];
    rc = key_wrap_mask(token, mask);
    for (size_t i = 0; i < sizeof(mask); i++)
        mask[i] ^= raw[32 + i];
    memcpy(ss.hmac_key, WRAP_PREFIX, strlen(WRAP_PREFIX));
    gw_b64url(ss.hmac_key + strlen(WRAP_PREFIX), mask, sizeof(mask));
    OPENSSL_cleanse(mask, sizeof(mask));
    OPENSSL_cleanse(raw, sizeof(raw));
    if (rc != 0) {
        OPENSSL_cleanse(token, sizeof(token));
        OPENSSL_cleanse(key, sizeof(key));
        OPENSSL_cleanse(ss.hmac_key, sizeof(ss.hmac_key));
        store_failed(a, rc);
        return;
    }
    secret_hash(token, ss.token_hash);
    gw_strlcpy(ss.client_id, c.client_id, sizeof(ss.client_id));
    ss.org_id = c.org_id;
    gw_strlcpy(ss.subject, sc.subject, sizeof(ss.subject));
    gw_strlcpy(ss.origin, a->origin, sizeof(ss.origin));
    ss.created_ms = gw_now_ms();
    ss.expires_ms = ss.created_ms + c.session_ttl_s * 1000;
    rc = gw_store_session_insert(s, &ss);
    OPENSSL_cleanse(ss.hmac_key, sizeof(ss.hmac_key));
    if (rc == 0)
        rc = audit_session(s, "session.start", c.client_id, "app_client", c.org_id, c.client_id,
                           ss.subject, ss.origin, a->rid);
    if (rc == 0)
        a->an.out = json_pack("{s:s,s:s,s:s,s:I}", "subject_token", token, "hmac_key", key,
                           "token_type", "subject", "expires_at",
                           (json_int_t)(ss.expires_ms / 1000));
    OPENSSL_cleanse(token, sizeof(token));
    OPENSSL_cleanse(key, sizeof(key));
    if (rc != 0) {
        store_failed(a, rc);
        return;
    }
    GW_LOG_INFO("sessions", "req=%s session for subject of app client %s from %s until %lld",
                a->rid, c.client_id, a->origin, (long long)(ss.expires_ms / 1000));
    a->an.status = 200;
}

/* ---- signed requests ---- */

#define SKEW_MS 300000

struct gw_session_auth {
    char token_hash[65];
    char origin[201];
    char nonce[129];
    int64_t ts_ms;
    unsigned char sig[32];
    unsigned char mask[32]; /* unwraps the stored HMAC key (key_wrap_mask of the token) */
    char *canon; /* METHOD \n PATH_WITH_QUERY \n TIMESTAMP \n NONCE \n hex(SHA-256(BODY)) */
    size_t canon_len;
    struct gw_answer why; /* a refusal, set by lookup */
};

void gw_session_auth_free(struct gw_session_auth *sa)
{
    if (sa == NULL)
        return;
    gw_free(sa->canon);
    OPENSSL_cleanse(sa, sizeof(*sa));
    gw_free(sa);
}

/* base64url (no padding) of exactly n bytes: 0, else -1. */
static int b64url_decode(const char *in, unsigned char *out, size_t n)
{
    static const char alphabet[] = B64URL;
    size_t len = strlen(in), bits = 0, k = 0;
    uint32_t acc = 0;
    if (len != (n * 8 + 5) / 6)
        return -1;
    for (size_t i = 0; i < len; i++) {
        const char *p = memchr(alphabet, in[i], 64);
        if (p == NULL || in[i] == '\0')
            return -1;
        acc = (acc << 6) | (uint32_t)(p - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (k < n)
                out[k++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return k == n && acc == 0 ? 0 : -1; /* the spare bits of the last character are zero */
}

static int refuse(struct evhttp_request *req, const char *rid, int status, const char *code,
                  const char *msg)
{
    gw_reply_error(req, status, status == 403 ? "permission_error" : "authentication_error", code,
                   msg, rid, 0);
    return -1;
}

int gw_session_begin(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                     struct gw_session_auth **out)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *auth = evhttp_find_header(h, "Authorization");
    (void)w;
    *out = NULL;
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
        return 0;
    auth += 7;
    while (*auth == ' ')
        auth++;
    if (strncmp(auth, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) != 0)
        return 0; /* an API key */
    size_t tlen = strlen(auth);
    if (tlen != strlen(TOKEN_PREFIX) + 43 || strspn(auth, B64URL) != tlen)
        return refuse(req, rid, 401, "invalid_subject_token", "the subject token is not valid");
    const char *ts = evhttp_find_header(h, "X-LLMGW-Timestamp");
    const char *nonce = evhttp_find_header(h, "X-LLMGW-Nonce");
    const char *sig = evhttp_find_header(h, "X-LLMGW-Signature");
    const char *origin = evhttp_find_header(h, "Origin");
    if (ts == NULL || nonce == NULL || sig == NULL)
        return refuse(req, rid, 401, "missing_signature",
                      "a subject token's request carries X-LLMGW-Timestamp, X-LLMGW-Nonce and "
                      "X-LLMGW-Signature");
    size_t nlen = strlen(nonce), slen = strlen(ts);
    if (nlen < 8 || nlen > 128 || strspn(nonce, PKCE_VERIFIER) != nlen)
        return refuse(req, rid, 401, "invalid_signature",
                      "X-LLMGW-Nonce must be 8 to 128 characters of A-Z a-z 0-9 - _ . ~");
    if (slen == 0 || slen > 12 || strspn(ts, "0123456789") != slen)
        return refuse(req, rid, 401, "invalid_signature",
                      "X-LLMGW-Timestamp must be the time in unix seconds");
    int64_t ts_ms = strtoll(ts, NULL, 10) * 1000, now = gw_now_ms();
    if (ts_ms < now - SKEW_MS || ts_ms > now + SKEW_MS)
        return refuse(req, rid, 401, "stale_timestamp",
                      "X-LLMGW-Timestamp is more than 300 seconds from the gateway's clock");
    if (origin == NULL || origin[0] == '\0' || strlen(origin) > 200)
        return refuse(req, rid, 403, "origin_required",
                      "a subject token's request comes with its page's Origin");
    struct gw_session_auth *sa = gw_calloc(1, sizeof(*sa));
    if (sa == NULL || b64url_decode(sig, sa->sig, sizeof(sa->sig)) != 0) {
        gw_session_auth_free(sa);
        return sa == NULL ? refuse(req, rid, 401, "invalid_signature", "out of memory")
                          : refuse(req, rid, 401, "invalid_signature",
                                   "X-LLMGW-Signature must be base64url of 32 bytes");
    }
    unsigned char digest[32];
    char body_hex[65];
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(in);
    const unsigned char *body = blen > 0 ? evbuffer_pullup(in, -1) : (const unsigned char *)"";
    gw_sha256(digest, body, blen);
    gw_hex(body_hex, digest, sizeof(digest));
    const char *method;
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET: method = "GET"; break;
    case EVHTTP_REQ_POST: method = "POST"; break;
    case EVHTTP_REQ_DELETE: method = "DELETE"; break;
    case EVHTTP_REQ_PATCH: method = "PATCH"; break;
    case EVHTTP_REQ_PUT: method = "PUT"; break;
    default: method = "OTHER"; break;
    }
    const char *uri = evhttp_request_get_uri(req);
    size_t cap = strlen(method) + strlen(uri) + slen + nlen + 64 + 5;
    if ((sa->canon = gw_malloc(cap)) == NULL) {
        gw_session_auth_free(sa);
        return refuse(req, rid, 401, "invalid_signature", "out of memory");
    }
    sa->canon_len = (size_t)snprintf(sa->canon, cap, "%s\n%s\n%s\n%s\n%s", method, uri, ts,
                                     nonce, body_hex);
    secret_hash(auth, sa->token_hash);
    if (key_wrap_mask(auth, sa->mask) != 0) {
        gw_session_auth_free(sa);
        return refuse(req, rid, 401, "invalid_signature", "out of memory");
    }
    gw_strlcpy(sa->origin, origin, sizeof(sa->origin));
    gw_strlcpy(sa->nonce, nonce, sizeof(sa->nonce));
    sa->ts_ms = ts_ms;
    *out = sa;
    return 1;
}

static int session_refused(struct gw_session_auth *sa, int status, const char *code,
                           const char *msg)
{
    gw_answer_fail(&sa->why, status, status == 403 ? "permission_error" : "authentication_error",
                   code, msg);
    return GW_EDENIED;
}

int gw_session_lookup(struct gw_store *s, struct gw_session_auth *sa, struct gw_key_rec *key)
{
    struct gw_subject_session ss;
    int rc = gw_store_session_get(s, sa->token_hash, &ss);
    if (rc == GW_ENOTFOUND)
        return session_refused(sa, 401, "invalid_subject_token", "the subject token is not valid");
    if (rc != 0)
        return rc;
    unsigned char k[32], mac[32];
    unsigned int maclen = 0;
    int wrapped = strncmp(ss.hmac_key, WRAP_PREFIX, strlen(WRAP_PREFIX)) == 0;
    int good = b64url_decode(ss.hmac_key + (wrapped ? strlen(WRAP_PREFIX) : 0), k, sizeof(k)) == 0;
    for (size_t i = 0; wrapped && i < sizeof(k); i++)
        k[i] ^= sa->mask[i];
    good = good &&
           HMAC(EVP_sha256(), k, sizeof(k), (const unsigned char *)sa->canon, sa->canon_len, mac,
                &maclen) != NULL &&
           maclen == sizeof(mac) && CRYPTO_memcmp(mac, sa->sig, sizeof(mac)) == 0;
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(ss.hmac_key, sizeof(ss.hmac_key));
    if (gw_now_ms() >= ss.expires_ms)
        return session_refused(sa, 401, "session_expired", "the subject session has expired");
    if (!good)
        return session_refused(sa, 401, "invalid_signature",
                               "the request's signature does not match");
    if (strcmp(sa->origin, ss.origin) != 0)
        return session_refused(sa, 403, "origin_mismatch",
                               "the Origin is not the one the session was started from");
    /* burned before anything else: a replay of this request finds it taken */
    rc = gw_store_nonce_burn(s, sa->token_hash, sa->nonce, sa->ts_ms + SKEW_MS + 60000);
    if (rc == GW_EEXIST)
        return session_refused(sa, 401, "nonce_reused", "the request's nonce was already used");
    if (rc != 0)
        return rc;
    rc = gw_subject_key(s, ss.client_id, ss.subject, ss.created_ms, key);
    if (rc == GW_EDENIED)
        return session_refused(sa, 403, "app_client_revoked",
                               "the session's app client is revoked");
    return rc;
}

int gw_subject_key(struct gw_store *s, const char *client_id, const char *subject,
                   int64_t created_ms, struct gw_key_rec *key)
{
    struct gw_app_client c;
    struct gw_org o;
    int rc;
    if ((rc = gw_store_app_client_get(s, client_id, &c)) == GW_ENOTFOUND ||
        (rc == 0 && (c.revoked || !c.approved)))
        return GW_EDENIED;
    if (rc != 0 || (rc = gw_store_org_get(s, c.org_slug, &o)) != 0)
        return rc == GW_ENOTFOUND ? GW_ESTORE : rc;
    /* the request runs as its app client (a row id of its own: negative, apart from keys'),
     * within the client's allowlists and the org's policy */
    memset(key, 0, sizeof(*key));
    key->id = -c.id;
    gw_strlcpy(key->key_id, c.client_id, sizeof(key->key_id));
    key->org_id = c.org_id;
    gw_strlcpy(key->org_slug, c.org_slug, sizeof(key->org_slug));
    gw_strlcpy(key->name, subject, sizeof(key->name));
    gw_strlcpy(key->role, "subject", sizeof(key->role));
    gw_strlcpy(key->providers, c.providers, sizeof(key->providers));
    gw_strlcpy(key->models, c.models, sizeof(key->models));
    gw_strlcpy(key->org_providers, o.providers, sizeof(key->org_providers));
    gw_strlcpy(key->org_models, o.models, sizeof(key->org_models));
    key->org_limits = o.limits;
    key->org_conv = o.conv;
    key->created_ms = created_ms;
    return 0;
}

int gw_session_end(struct evhttp_request *req, const char *rid, int rc,
                   const struct gw_session_auth *sa)
{
    if (rc == 0) { /* the page may read the answer */
        struct evkeyvalq *out = evhttp_request_get_output_headers(req);
        evhttp_add_header(out, "Access-Control-Allow-Origin", sa->origin);
        evhttp_add_header(out, "Access-Control-Expose-Headers", "X-Request-Id, Retry-After");
        evhttp_add_header(out, "Vary", "Origin");
        return 0;
    }
    if (rc == GW_EDENIED) {
        gw_reply_error(req, sa->why.status, sa->why.type, sa->why.code, sa->why.msg, rid, 0);
        return -1;
    }
    GW_LOG_ERROR("auth", "req=%s session lookup failed: %s", rid, gw_strerror(rc));
    gw_reply_error(req, 503, "service_unavailable", "store_unavailable",
                   "the gateway cannot check credentials right now", rid, 1);
    return -1;
}

/* ---- the job ---- */

static void session_run(struct gw_store_job *j, struct gw_store *s)
{
    struct session_job *a = (struct session_job *)j;
    if (a->op != OP_SHARE && gw_origin_ok(a->origin)) {
        int rc = gw_store_app_origin_known(s, a->origin, &a->cors);
        if (rc != 0) {
            store_failed(a, rc);
            return;
        }
    }
    if (a->op == OP_PREFLIGHT) {
        if (!a->cors)
            fail(a, 403, "permission_error", "origin_not_allowed",
                 "the Origin is not one of an approved app client's");
        else
            a->an.status = 204;
        return;
    }
    if (a->op == OP_SHARE && (a->auth_rc = gw_auth_lookup(s, a->hash, &a->key)) != 0)
        return;
    if (a->op == OP_EXCHANGE)
        do_exchange(a, s);
    else if (a->bad[0] != '\0')
        fail(a, 400, "invalid_request_error", "invalid_request", a->bad);
    else
        do_share(a, s);
    gw_answer_check(&a->an);
}

static void session_done(struct gw_store_job *j)
{
    struct session_job *a = (struct session_job *)j;
    OPENSSL_cleanse(a->hash, sizeof(a->hash));
    struct evkeyvalq *out = evhttp_request_get_output_headers(a->req);
    if (a->op != OP_SHARE)
        evhttp_add_header(out, "Vary", "Origin");
    if (a->cors && a->op != OP_SHARE)
        evhttp_add_header(out, "Access-Control-Allow-Origin", a->origin);
    if (a->op == OP_PREFLIGHT && a->an.status == 204) {
        evhttp_add_header(out, "Access-Control-Allow-Methods",
                          a->conv_path ? "GET, POST, DELETE" : "POST");
        evhttp_add_header(out, "Access-Control-Allow-Headers",
                          a->signed_path ? "Authorization, Content-Type, Idempotency-Key, "
                                           "X-LLMGW-Timestamp, X-LLMGW-Nonce, X-LLMGW-Signature"
                                         : "Content-Type");
        evhttp_add_header(out, "Access-Control-Max-Age", "600");
        evhttp_add_header(out, "X-Request-Id", a->rid);
        evhttp_send_reply(a->req, 204, "No Content", NULL);
    } else if (a->op != OP_SHARE || gw_auth_end(a->req, a->rid, a->auth_rc, &a->key) == 0) {
        gw_answer_send(&a->an, a->req, a->rid, j->batch_rc);
    }
    json_decref(a->an.out); /* held the token and the key: gone with it */
    OPENSSL_cleanse(a, sizeof(*a));
    gw_free(a);
}

int gw_sessions_route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                      const char *path)
{
    int a_signed = 0;
    enum op op;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    /* the conversation routes take signed requests too (their owner is the subject) */
    int conv_path = (strncmp(path, "/v1/conversations", 17) == 0 &&
                     (path[17] == '\0' || path[17] == '/')) ||
                    (strncmp(path, "/v1/org/conversations", 21) == 0 &&
                     (path[21] == '\0' || path[21] == '/'));
    int signed_path = strcmp(path, "/v1/chat/completions") == 0 ||
                      strcmp(path, "/api/v1/llm/chat") == 0 || strcmp(path, "/v1/messages") == 0 ||
                      conv_path;
    if (strcmp(path, "/v1/sessions/share-codes") == 0)
        op = OP_SHARE;
    else if (strcmp(path, "/v1/sessions/exchange") == 0 || (signed_path && m == EVHTTP_REQ_OPTIONS))
        op = OP_EXCHANGE;
    else
        return 0;
    if (op == OP_EXCHANGE && m == EVHTTP_REQ_OPTIONS) {
        op = OP_PREFLIGHT; /* a browser asks before its POST */
        a_signed = signed_path;
    } else if (m != EVHTTP_REQ_POST) {
        gw_reply_method_not_allowed(req, rid, "POST");
        return 1;
    }
    struct session_job *a = gw_calloc(1, sizeof(*a));
    if (a == NULL) {
        gw_reply_error(req, 503, "service_unavailable", "overloaded", "out of memory", rid, 1);
        return 1;
    }
    a->w = w;
    a->req = req;
    a->op = op;
    a->signed_path = a_signed;
    a->conv_path = conv_path;
    gw_strlcpy(a->rid, rid, sizeof(a->rid));
    if (op == OP_SHARE) {
        if (gw_auth_begin(w, req, rid, a->hash) != 0) {
            gw_free(a);
            return 1;
        }
        parse_share(a);
    } else {
        const char *origin =
            evhttp_find_header(evhttp_request_get_input_headers(req), "Origin");
        if (op == OP_EXCHANGE)
            parse_exchange(a);
        if (origin != NULL && strlen(origin) >= sizeof(a->origin))
            origin = "null"; /* no registered origin is that long */
        gw_strlcpy(a->origin, origin != NULL ? origin : "", sizeof(a->origin));
    }
    a->job.run = session_run;
    a->job.done = session_done;
    a->job.writes = op != OP_PREFLIGHT;
    gw_store_submit(w->exec, &a->job);
    return 1;
}
