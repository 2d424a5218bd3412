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
#include <stdio.h>
#include <string.h>

#include "core/admin.h"
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
    int auth_rc;
    struct gw_key_rec key;
    int status;
    const char *type, *code_name;
    char msg[160];
    json_t *out;
};

static void fail(struct session_job *a, int status, const char *type, const char *code,
                 const char *msg)
{
    a->status = status;
    a->type = type;
    a->code_name = code;
    gw_strlcpy(a->msg, msg, sizeof(a->msg));
}

static void store_failed(struct session_job *a, int rc)
{
    GW_LOG_ERROR("sessions", "req=%s store work failed: %s", a->rid, gw_strerror(rc));
    fail(a, 503, "service_unavailable", "store_unavailable", "the store cannot answer right now");
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

static json_t *parse_body(struct session_job *a)
{
    struct evbuffer *buf = evhttp_request_get_input_buffer(a->req);
    size_t len = evbuffer_get_length(buf);
    const char *data = len > 0 ? (const char *)evbuffer_pullup(buf, -1) : "";
    struct gw_errbuf eb = {{0}};
    json_t *b = data != NULL ? gw_json_parse(data, len, &eb) : NULL;
    if (!json_is_object(b)) {
        snprintf(a->bad, sizeof(a->bad), "the body must be a JSON object%s%.120s",
                 eb.msg[0] ? ": " : "", eb.msg);
        json_decref(b);
        return NULL;
    }
    return b;
}

static void parse_share(struct session_job *a)
{
    json_t *b = parse_body(a);
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
    json_t *b = parse_body(a);
    if (b == NULL)
        return;
    /* a code given with a bad verifier is still used up (below) */
    if (take_str(a, b, "share_code", B64URL, 1, a->code, sizeof(a->code)) == 0 &&
        take_str(a, b, "code_verifier", PKCE_VERIFIER, 43, a->verifier, sizeof(a->verifier)) != 0)
        a->verifier[0] = '\0';
    json_decref(b);
}

/* ---- share codes ---- */

/* The stored form of a secret: hex(SHA-256); the secret is wiped. */
static void hash_secret(char *secret, size_t size, char hex[65])
{
    unsigned char digest[32];
    gw_sha256(digest, secret, strlen(secret));
    gw_hex(hex, digest, sizeof(digest));
    OPENSSL_cleanse(secret, size);
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
    char kept[40];
    memcpy(kept, code, sizeof(code));
    hash_secret(kept, sizeof(kept), sc.code_hash);
    gw_strlcpy(sc.client_id, c.client_id, sizeof(sc.client_id));
    sc.org_id = c.org_id;
    gw_strlcpy(sc.subject, a->subject, sizeof(sc.subject));
    gw_strlcpy(sc.challenge, a->challenge, sizeof(sc.challenge));
    sc.created_ms = gw_now_ms();
    sc.expires_ms = sc.created_ms + SHARE_CODE_TTL_MS;
    if ((rc = gw_store_share_code_insert(s, &sc)) != 0) {
        OPENSSL_cleanse(code, sizeof(code));
        store_failed(a, rc);
        return;
    }
    a->out = json_pack("{s:s,s:i}", "share_code", code, "expires_in", SHARE_CODE_TTL_MS / 1000);
    OPENSSL_cleanse(code, sizeof(code));
    a->status = 200;
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
        hash_secret(a->code, sizeof(a->code), hex);
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
    OPENSSL_cleanse(raw, sizeof(raw));
    char kept[64];
    memcpy(kept, token, sizeof(token));
    hash_secret(kept, sizeof(kept), ss.token_hash);
    gw_strlcpy(ss.client_id, c.client_id, sizeof(ss.client_id));
    ss.org_id = c.org_id;
    gw_strlcpy(ss.subject, sc.subject, sizeof(ss.subject));
    gw_strlcpy(ss.origin, a->origin, sizeof(ss.origin));
    gw_strlcpy(ss.hmac_key, key, sizeof(ss.hmac_key));
    ss.created_ms = gw_now_ms();
    ss.expires_ms = ss.created_ms + c.session_ttl_s * 1000;
    rc = gw_store_session_insert(s, &ss);
    OPENSSL_cleanse(ss.hmac_key, sizeof(ss.hmac_key));
    if (rc == 0)
        a->out = json_pack("{s:s,s:s,s:s,s:I}", "subject_token", token, "hmac_key", key,
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
    a->status = 200;
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
            a->status = 204;
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
    if (a->status < 400 && a->out == NULL)
        fail(a, 500, "internal_error", "internal_error", "internal error");
}

static void session_done(struct gw_store_job *j)
{
    struct session_job *a = (struct session_job *)j;
    OPENSSL_cleanse(a->hash, sizeof(a->hash));
    if (j->batch_rc != 0 && a->auth_rc == 0 && a->status < 400) { /* its writes were lost */
        json_decref(a->out);
        a->out = NULL;
        store_failed(a, j->batch_rc);
    }
    struct evkeyvalq *out = evhttp_request_get_output_headers(a->req);
    if (a->op != OP_SHARE)
        evhttp_add_header(out, "Vary", "Origin");
    if (a->cors && a->op != OP_SHARE)
        evhttp_add_header(out, "Access-Control-Allow-Origin", a->origin);
    if (a->op == OP_PREFLIGHT && a->status == 204) {
        evhttp_add_header(out, "Access-Control-Allow-Methods", "POST");
        evhttp_add_header(out, "Access-Control-Allow-Headers", "Content-Type");
        evhttp_add_header(out, "Access-Control-Max-Age", "600");
        evhttp_add_header(out, "X-Request-Id", a->rid);
        evhttp_send_reply(a->req, 204, "No Content", NULL);
    } else if (a->op != OP_SHARE || gw_auth_end(a->req, a->rid, a->auth_rc, &a->key) == 0) {
        if (a->status >= 400)
            gw_reply_error(a->req, a->status, a->type, a->code_name, a->msg, a->rid,
                           a->status == 503);
        else
            gw_reply_json(a->req, a->status, a->out, a->rid);
    }
    json_decref(a->out); /* held the token and the key: gone with it */
    OPENSSL_cleanse(a, sizeof(*a));
    gw_free(a);
}

int gw_sessions_route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                      const char *path)
{
    enum op op;
    if (strcmp(path, "/v1/sessions/share-codes") == 0)
        op = OP_SHARE;
    else if (strcmp(path, "/v1/sessions/exchange") == 0)
        op = OP_EXCHANGE;
    else
        return 0;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (op == OP_EXCHANGE && m == EVHTTP_REQ_OPTIONS) {
        op = OP_PREFLIGHT; /* a browser asks before its POST */
    } else if (m != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
        gw_reply_error(req, 405, "invalid_request_error", "method_not_allowed",
                       "method not allowed on this endpoint", rid, 0);
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
