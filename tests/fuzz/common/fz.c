/* tests/fuzz/common — the harnesses' helpers and the mini gateway; see fz.h. */
#include "fz.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/catalog.h"
#include "http/reply.h"
#include "store/jobs.h"
#include "util/log.h"
#include "util/util.h"

_Static_assert(sizeof(FZ_SUPER_KEY) - 1 == GW_KEY_RAW_LEN, "a raw key's length");
_Static_assert(sizeof(FZ_ADMIN_KEY) - 1 == GW_KEY_RAW_LEN, "a raw key's length");
_Static_assert(sizeof(FZ_MEMBER_KEY) - 1 == GW_KEY_RAW_LEN, "a raw key's length");
_Static_assert(sizeof(FZ_OTHER_KEY) - 1 == GW_KEY_RAW_LEN, "a raw key's length");
_Static_assert(sizeof(FZ_TOKEN) - 1 == 6 + 43, "a subject token's length");

#define FZ_RESET_EVERY 4096 /* requests before the fixture's store is made anew */

static void log_sink(void *arg, int level, const char *line)
{
    (void)arg;
    (void)level;
    (void)line;
}

void fz_pin_clock(void) { gw_test_clock_advance(FZ_NOW_MS - gw_now_ms()); }

int fz_setup(void)
{
    gw_log_set_handler(log_sink, NULL, GW_LOG_LVL_DEBUG);
    fz_pin_clock();
    return 0;
}

void fz_fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fuzz oracle failed: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    abort();
}

char *fz_strndup(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        fz_fail("out of memory");
    if (n > 0)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

void fz_repo_path(const char *rel, char *out, size_t outsz)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *cut = strstr(exe, "/build/fuzz/");
        if (cut != NULL) {
            *cut = '\0';
            snprintf(out, outsz, "%s/%s", exe, rel);
            if (access(out, R_OK) == 0)
                return;
        }
    }
    snprintf(out, outsz, "%s", rel);
}

struct gw_catalog *fz_catalog(void)
{
    static struct gw_catalog *catalog;
    struct gw_errbuf eb = {{0}};
    char path[4096];
    if (catalog != NULL)
        return catalog;
    fz_repo_path("catalog/models.yaml", path, sizeof(path));
    if (gw_catalog_load(path, &catalog, &eb) != 0)
        fz_fail("cannot load %s: %s", path, eb.msg);
    return catalog;
}

const char *fz_file(const void *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        if ((fd = memfd_create("fz", 0)) < 0)
            fz_fail("memfd_create failed");
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size))
        fz_fail("cannot write the input's file");
    return path;
}

/* ---- the mini gateway's store ---- */

static void check(int rc, const char *what)
{
    if (rc != 0)
        fz_fail("fixture: %s: %s", what, gw_strerror(rc));
}

static void add_key(struct gw_store *s, const char *raw, const char *key_id, const char *role,
                    const char *tier, int64_t org_id)
{
    struct gw_key_rec rec;
    unsigned char hash[32];
    memset(&rec, 0, sizeof(rec));
    gw_strlcpy(rec.key_id, key_id, sizeof(rec.key_id));
    gw_strlcpy(rec.name, key_id, sizeof(rec.name));
    memcpy(rec.prefix, raw, GW_KEY_DISPLAY_PREFIX_LEN);
    gw_strlcpy(rec.role, role, sizeof(rec.role));
    gw_strlcpy(rec.tier, tier, sizeof(rec.tier));
    rec.org_id = org_id;
    gw_key_hash(raw, strlen(raw), hash);
    check(gw_store_key_insert(s, &rec, hash), "key");
}

static void add_conv(struct gw_store *s, int64_t org_id, const char *owner, const char *ref,
                     int shared)
{
    struct gw_conv_turn turns[2];
    memset(turns, 0, sizeof(turns));
    gw_strlcpy(turns[0].role, "user", sizeof(turns[0].role));
    turns[0].message = "{\"role\":\"user\",\"content\":\"What is the capital of France?\"}";
    turns[0].tokens = 9;
    gw_strlcpy(turns[1].role, "assistant", sizeof(turns[1].role));
    turns[1].message = "{\"role\":\"assistant\",\"content\":\"Paris.\"}";
    gw_strlcpy(turns[1].model, "gpt-4o-mini", sizeof(turns[1].model));
    turns[1].tokens = 2;
    struct gw_conv_append a = {.org_id = org_id, .owner = owner, .conv_id = FZ_CONV_ID,
                               .ref = ref, .title = "What is the capital of France?",
                               .turns = turns, .n = 2, .now_ms = FZ_NOW_MS - 60000};
    check(gw_store_conv_append(s, &a, NULL), "conversation");
    if (shared)
        check(gw_store_conv_set_shared(s, org_id, owner, FZ_CONV_ID, 1), "share");
}

static void seed(struct fz_gw *g)
{
    struct gw_store *s = g->store;
    int64_t acme, globex;
    check(gw_store_migrate(s, NULL), "migrate");
    check(gw_store_org_create(s, "acme", "Acme", &acme), "org");
    check(gw_store_org_create(s, "globex", "Globex", &globex), "org");
    add_key(s, FZ_SUPER_KEY, "key_00000000000000f0", "superadmin", "enterprise", 0);
    add_key(s, FZ_ADMIN_KEY, "key_00000000000000a1", "org_admin", "pro", acme);
    add_key(s, FZ_MEMBER_KEY, "key_00000000000000a2", "member", "free", acme);
    add_key(s, FZ_OTHER_KEY, "key_00000000000000b1", "org_admin", "pro", globex);

    struct gw_app_client c;
    memset(&c, 0, sizeof(c));
    gw_strlcpy(c.client_id, FZ_CLIENT_ID, sizeof(c.client_id));
    c.org_id = acme;
    gw_strlcpy(c.name, "Acme web", sizeof(c.name));
    gw_strlcpy(c.origins, FZ_ORIGIN ",http://localhost:5173", sizeof(c.origins));
    c.session_ttl_s = 3600;
    check(gw_store_app_client_insert(s, &c), "app client");
    check(gw_store_app_client_approve(s, FZ_CLIENT_ID, FZ_NOW_MS), "approve");

    struct gw_subject_session ss;
    unsigned char digest[32];
    memset(&ss, 0, sizeof(ss));
    gw_sha256(digest, FZ_TOKEN, strlen(FZ_TOKEN));
    gw_hex(ss.token_hash, digest, sizeof(digest));
    gw_strlcpy(ss.client_id, FZ_CLIENT_ID, sizeof(ss.client_id));
    ss.org_id = acme;
    gw_strlcpy(ss.subject, "user-1", sizeof(ss.subject));
    gw_strlcpy(ss.origin, FZ_ORIGIN, sizeof(ss.origin));
    for (size_t i = 0; i < sizeof(g->hmac_key); i++)
        g->hmac_key[i] = (unsigned char)(0xa0 + i);
    gw_b64url(ss.hmac_key, g->hmac_key, sizeof(g->hmac_key));
    ss.created_ms = FZ_NOW_MS - 60000;
    ss.expires_ms = FZ_NOW_MS + 86400000;
    check(gw_store_session_insert(s, &ss), "session");

    add_conv(s, acme, "subject:" FZ_CLIENT_ID ":user-1", "cv_0000000000000000000000c1", 1);
    add_conv(s, acme, "key:key_00000000000000a1", "cv_0000000000000000000000c2", 0);
}

static void store_open(struct fz_gw *g)
{
    struct gw_errbuf eb = {{0}};
    if (gw_store_open("sqlite::memory:", &g->store, &eb) != 0)
        fz_fail("fixture: cannot open the store: %s", eb.msg);
    seed(g);
    g->w.store = g->store;
    check(gw_store_exec_new(g->base, g->store, NULL, &g->w.exec), "executor");
    g->requests = 0;
}

static void store_close(struct fz_gw *g)
{
    gw_store_exec_drain(g->w.exec);
    gw_store_exec_free(g->w.exec);
    g->w.exec = NULL;
    gw_store_free(g->store);
    g->store = g->w.store = NULL;
}

void fz_gw_open(struct fz_gw *g)
{
    memset(g, 0, sizeof(*g));
    fz_pin_clock();
    if ((g->base = event_base_new()) == NULL)
        fz_fail("fixture: no event base");
    check(gw_config_init(&g->gw.cfg), "config");
    g->gw.started_ms = FZ_NOW_MS;
    g->w.gw = &g->gw;
    store_open(g);
}

void fz_gw_close(struct fz_gw *g)
{
    store_close(g);
    gw_config_cleanup(&g->gw.cfg);
    event_base_free(g->base);
    memset(g, 0, sizeof(*g));
}

/* ---- one request ---- */

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_PUT: return "PUT";
    default: return "OTHER";
    }
}

static int parse_method(const char *s, size_t n, enum evhttp_cmd_type *m)
{
    static const struct {
        const char *name;
        enum evhttp_cmd_type m;
    } ms[] = {{"GET", EVHTTP_REQ_GET},       {"POST", EVHTTP_REQ_POST},
              {"PATCH", EVHTTP_REQ_PATCH},   {"DELETE", EVHTTP_REQ_DELETE},
              {"PUT", EVHTTP_REQ_PUT},       {"OPTIONS", EVHTTP_REQ_OPTIONS},
              {"HEAD", EVHTTP_REQ_HEAD}};
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
        if (strlen(ms[i].name) == n && memcmp(ms[i].name, s, n) == 0) {
            *m = ms[i].m;
            return 0;
        }
    return -1;
}

/* The next line of [*p, end) without its LF (and CR): NULL at the end of the input. */
static const char *next_line(const char **p, const char *end, size_t *len)
{
    const char *s = *p;
    if (s >= end)
        return NULL;
    const char *lf = memchr(s, '\n', (size_t)(end - s));
    const char *e = lf != NULL ? lf : end;
    *p = lf != NULL ? lf + 1 : end;
    *len = (size_t)(e - s);
    if (*len > 0 && s[*len - 1] == '\r')
        (*len)--;
    return s;
}

/* X-LLMGW-Signature of the request as core/sessions.c checks it, under the fixture's key. */
static void sign(const struct fz_gw *g, enum evhttp_cmd_type m, const char *uri, const char *ts,
                 const char *nonce, const char *body, size_t blen, char out[64])
{
    unsigned char digest[32], mac[32];
    unsigned int maclen = 0;
    char hex[65];
    gw_sha256(digest, body, blen);
    gw_hex(hex, digest, sizeof(digest));
    size_t cap = strlen(uri) + strlen(ts) + strlen(nonce) + 96;
    char *canon = malloc(cap);
    if (canon == NULL)
        fz_fail("out of memory");
    int n = snprintf(canon, cap, "%s\n%s\n%s\n%s\n%s", method_name(m), uri, ts, nonce, hex);
    HMAC(EVP_sha256(), g->hmac_key, sizeof(g->hmac_key), (unsigned char *)canon, (size_t)n, mac,
         &maclen);
    free(canon);
    gw_b64url(out, mac, sizeof(mac));
}

static int header_count(struct evkeyvalq *h, const char *name)
{
    int n = 0;
    struct evkeyval *kv;
    for (kv = h->tqh_first; kv != NULL; kv = kv->next.tqe_next)
        n += strcasecmp(kv->key, name) == 0;
    return n;
}

static int skipped(const char *path, const char *const *skip)
{
    for (; skip != NULL && *skip != NULL; skip++)
        if (strncmp(path, *skip, strlen(*skip)) == 0)
            return 1;
    return 0;
}

#define FZ_MAX_HEADERS 16

void fz_gw_request(struct fz_gw *g, const uint8_t *data, size_t size, fz_route_fn route,
                   const char *const *skip)
{
    const char *p = (const char *)data, *end = p + size;
    const char *line;
    size_t len;
    enum evhttp_cmd_type m;
    struct {
        char *name, *value;
    } hs[FZ_MAX_HEADERS];
    int nh = 0, sign_at = -1;

    fz_pin_clock();
    if ((line = next_line(&p, end, &len)) == NULL || memchr(line, '\0', len) != NULL)
        return;
    const char *sp = memchr(line, ' ', len);
    if (sp == NULL || sp + 1 == line + len || sp[1] != '/' ||
        parse_method(line, (size_t)(sp - line), &m) != 0)
        return;
    char *uri = fz_strndup(sp + 1, len - (size_t)(sp + 1 - line));
    char path[256];
    size_t plen = strcspn(uri, "?#");
    if (plen >= sizeof(path) || strchr(uri, ' ') != NULL) {
        free(uri);
        return;
    }
    memcpy(path, uri, plen);
    path[plen] = '\0';
    if (skipped(path, skip)) {
        free(uri);
        return;
    }
    while ((line = next_line(&p, end, &len)) != NULL && len > 0) {
        const char *colon = memchr(line, ':', len);
        if (colon == NULL || colon == line || nh == FZ_MAX_HEADERS ||
            memchr(line, '\0', len) != NULL)
            goto out;
        const char *v = colon + 1, *vend = line + len;
        while (v < vend && *v == ' ')
            v++;
        hs[nh].name = fz_strndup(line, (size_t)(colon - line));
        hs[nh].value = fz_strndup(v, (size_t)(vend - v));
        if (strcmp(hs[nh].value, "@sign") == 0)
            sign_at = nh;
        nh++;
    }
    const char *body = p;
    size_t blen = (size_t)(end - p);
    if (sign_at >= 0) {
        const char *ts = "", *nonce = "";
        char sig[64];
        for (int i = 0; i < nh; i++) {
            if (strcasecmp(hs[i].name, "X-LLMGW-Timestamp") == 0)
                ts = hs[i].value;
            if (strcasecmp(hs[i].name, "X-LLMGW-Nonce") == 0)
                nonce = hs[i].value;
        }
        sign(g, m, uri, ts, nonce, body, blen, sig);
        free(hs[sign_at].value);
        hs[sign_at].value = fz_strndup(sig, strlen(sig));
    }

    struct evhttp_request *req = evhttp_request_new(NULL, NULL);
    if (req == NULL)
        fz_fail("out of memory");
    req->flags |= EVHTTP_REQ_DEFER_FREE; /* a reply (no connection) frees it: not yet */
    req->type = m;
    req->kind = EVHTTP_REQUEST;
    req->uri = uri;
    uri = NULL; /* transferred: freed with req */
    for (int i = 0; i < nh; i++)
        if (evhttp_add_header(req->input_headers, hs[i].name, hs[i].value) != 0)
            goto drop; /* libevent refuses it: no such request reaches us */
    if (blen > 0 && evbuffer_add(req->input_buffer, body, blen) != 0)
        fz_fail("out of memory");
    if (!route(&g->w, req, "req_fuzz", path))
        gw_reply_error(req, 404, "invalid_request_error", "not_found", "no such endpoint",
                       "req_fuzz", 0);
    gw_store_exec_drain(g->w.exec);
    if (!(req->flags & EVHTTP_REQ_NEEDS_FREE))
        fz_fail("%s %s was never answered", method_name(m), path);
    if (getenv("FZ_VERBOSE") != NULL) /* writing seeds: what each one got */
        fprintf(stderr, "%s %s -> %d\n", method_name(m), path, req->response_code);
    if (header_count(req->output_headers, "X-Request-Id") != 1)
        fz_fail("%s %s was answered %d times", method_name(m), path,
                header_count(req->output_headers, "X-Request-Id"));
drop:
    req->flags &= ~(EVHTTP_REQ_DEFER_FREE | EVHTTP_REQ_NEEDS_FREE);
    evhttp_request_free(req);
    if (++g->requests >= FZ_RESET_EVERY) {
        store_close(g);
        store_open(g);
    }
out:
    free(uri);
    for (int i = 0; i < nh; i++) {
        free(hs[i].name);
        free(hs[i].value);
    }
}
