/* The store's test suite, run against both backends: SQLite, and PostgreSQL when
 * LLMGW_TEST_PG_URL names a server (make test starts one; each test gets its own schema).
 * Migrations, orgs and policy, keys (hash-only), app clients, share codes and subject sessions,
 * usage rows, attempts, spend, recovery. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <pthread.h>

#include "policy/budget.h"
#include "store/store.h"
#include "util/log.h"
#include "util/util.h"

struct fx {
    char dir[64];
    char url[512];
    char schema[40]; /* PostgreSQL: this test's schema */
    struct gw_store *s;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/llmgw-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->url, sizeof(f->url), "sqlite:%s/a/b/gw.db", f->dir);
    struct gw_errbuf eb = {{0}};
    assert_int_equal(gw_store_open(f->url, &f->s, &eb), 0);
    assert_int_equal(gw_store_migrate(f->s, &eb), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    gw_store_free(f->s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Run one SQL command on the PostgreSQL server of the tests. */
static int pg_admin(const char *sql)
{
    PGconn *c = PQconnectdb(getenv("LLMGW_TEST_PG_URL"));
    int ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            fprintf(stderr, "pg_admin: %s", PQerrorMessage(c));
        PQclear(r);
    }
    PQfinish(c);
    return ok ? 0 : -1;
}

static int setup_pg(void **state)
{
    static int n;
    struct fx *f = calloc(1, sizeof(*f));
    const char *base = getenv("LLMGW_TEST_PG_URL");
    char sql[96];
    snprintf(f->schema, sizeof(f->schema), "t%d_%d", (int)getpid(), ++n);
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", f->schema);
    if (pg_admin(sql) != 0)
        return -1;
    snprintf(f->url, sizeof(f->url), "%s%soptions=-csearch_path%%3D%s", base,
             strchr(base, '?') ? "&" : "?", f->schema);
    struct gw_errbuf eb = {{0}};
    if (gw_store_open(f->url, &f->s, &eb) != 0 || gw_store_migrate(f->s, &eb) != 0) {
        fprintf(stderr, "setup_pg: %s\n", eb.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown_pg(void **state)
{
    struct fx *f = *state;
    char sql[96];
    gw_store_free(f->s);
    snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", f->schema);
    int rc = pg_admin(sql);
    free(f);
    return rc;
}

static void migrate_is_idempotent(void **state)
{
    struct fx *f = *state;
    int v = 0, v2 = 0;
    assert_int_equal(gw_store_schema_version(f->s, &v), 0);
    assert_true(v >= 4);
    assert_int_equal(gw_store_migrate(f->s, NULL), 0);
    assert_int_equal(gw_store_schema_version(f->s, &v2), 0);
    assert_int_equal(v, v2);
}

static void open_creates_directories_and_migrate_is_idempotent(void **state)
{
    struct fx *f = *state;
    char path[128];
    struct stat st;
    int v = 0;
    snprintf(path, sizeof(path), "%s/a/b/gw.db", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(gw_store_schema_version(f->s, &v), 0);
    assert_true(v >= 1);
    assert_int_equal(gw_store_migrate(f->s, NULL), 0);
    int v2 = 0;
    assert_int_equal(gw_store_schema_version(f->s, &v2), 0);
    assert_int_equal(v, v2);
}

static void urls_are_checked(void **state)
{
    struct gw_store *s = NULL;
    struct gw_errbuf eb = {{0}};
    assert_int_equal(gw_store_open("postgres://u@127.0.0.1:1/x?connect_timeout=2", &s, &eb),
                     GW_ESTORE);
    assert_non_null(strstr(eb.msg, "cannot connect to PostgreSQL"));
    assert_int_equal(gw_store_open("mysql://x", &s, &eb), GW_EINVAL);
    assert_int_equal(gw_store_open("sqlite:", &s, &eb), GW_EINVAL);
    assert_null(s);
}

static void orgs(void **state)
{
    struct fx *f = *state;
    int64_t id = 0;
    struct gw_org o;
    assert_int_equal(gw_store_org_create(f->s, "acme", "Acme Inc", &id), 0);
    assert_true(id > 0);
    assert_int_equal(gw_store_org_create(f->s, "acme", "again", NULL), GW_EEXIST);
    assert_int_equal(gw_store_org_get(f->s, "acme", &o), 0);
    assert_int_equal(o.id, id);
    assert_string_equal(o.name, "Acme Inc");
    assert_int_equal(gw_store_org_get(f->s, "nope", &o), GW_ENOTFOUND);
}

static int count_keys(void *arg, const struct gw_key_rec *k)
{
    char *order = arg;
    strcat(order, k->name);
    return 0;
}

static void keys_by_hash_list_revoke(void **state)
{
    struct fx *f = *state;
    int64_t org = 0;
    unsigned char h1[32], h2[32];
    struct gw_key_rec a = {0}, b = {0}, got;
    assert_int_equal(gw_store_org_create(f->s, "acme", "Acme", &org), 0);
    gw_sha256(h1, "key-one", 7);
    gw_sha256(h2, "key-two", 7);
    strcpy(a.key_id, "key_aaaa");
    strcpy(a.name, "A");
    strcpy(a.role, "member");
    strcpy(a.tier, "pro");
    strcpy(a.models, "gpt-4o,claude-sonnet-4-6");
    a.org_id = org;
    a.limits.daily_usd_micros = 2500000;
    b = a;
    strcpy(b.key_id, "key_bbbb");
    strcpy(b.name, "B");
    assert_int_equal(gw_store_key_insert(f->s, &a, h1), 0);
    assert_int_equal(gw_store_key_insert(f->s, &b, h2), 0);
    assert_int_equal(gw_store_key_insert(f->s, &b, h1), GW_EEXIST); /* same id and hash */
    assert_int_equal(gw_store_key_by_hash(f->s, h2, &got), 0);
    assert_string_equal(got.key_id, "key_bbbb");
    assert_string_equal(got.org_slug, "acme");
    assert_string_equal(got.models, "gpt-4o,claude-sonnet-4-6");
    assert_int_equal(got.limits.daily_usd_micros, 2500000);
    assert_false(got.revoked);
    unsigned char h3[32];
    gw_sha256(h3, "key-three", 9);
    assert_int_equal(gw_store_key_by_hash(f->s, h3, &got), GW_ENOTFOUND);
    char order[16] = "";
    assert_int_equal(gw_store_key_list(f->s, org, count_keys, order), 0);
    assert_string_equal(order, "BA"); /* newest first */
    assert_int_equal(gw_store_key_revoke(f->s, "key_aaaa"), 0);
    assert_int_equal(gw_store_key_revoke(f->s, "key_aaaa"), 0); /* twice is fine */
    assert_int_equal(gw_store_key_revoke(f->s, "key_zzzz"), GW_ENOTFOUND);
    assert_int_equal(gw_store_key_get(f->s, "key_aaaa", &got), 0);
    assert_true(got.revoked);
    assert_true(got.revoked_ms > 0);
}

/* Collects the client ids and row ids an app client listing hands over. */
struct app_seen {
    char ids[128];
    int64_t last_id;
    int n;
};

static int collect_app_clients(void *arg, const struct gw_app_client *a)
{
    struct app_seen *seen = arg;
    if (seen->n > 0)
        strcat(seen->ids, ",");
    strcat(seen->ids, a->client_id);
    assert_true(a->id > seen->last_id); /* row id order */
    seen->last_id = a->id;
    seen->n++;
    return 0;
}

/* One listing page: org (0 = all), after_id, limit. */
static struct app_seen app_page(struct gw_store *s, int64_t org, int64_t after, int limit)
{
    struct app_seen seen = {.last_id = after};
    assert_int_equal(gw_store_app_client_list(s, org, after, limit, collect_app_clients, &seen), 0);
    return seen;
}

static void app_clients(void **state)
{
    struct fx *f = *state;
    int64_t acme = 0, beta = 0;
    struct gw_app_client a = {0}, b, c, got;
    assert_int_equal(gw_store_org_create(f->s, "acme", "Acme", &acme), 0);
    assert_int_equal(gw_store_org_create(f->s, "beta", "Beta", &beta), 0);
    strcpy(a.client_id, "ac_000000000000000000000001");
    a.org_id = acme;
    strcpy(a.name, "Acme web");
    strcpy(a.origins, "https://app.acme.test,http://localhost:5173");
    strcpy(a.providers, "openai");
    strcpy(a.models, "gpt-4o,gpt-4o-mini");
    a.session_ttl_s = 3600;
    b = a;
    strcpy(b.client_id, "ac_000000000000000000000002");
    strcpy(b.name, "Acme admin");
    b.providers[0] = b.models[0] = '\0';
    b.session_ttl_s = 600;
    c = b;
    strcpy(c.client_id, "ac_000000000000000000000003");
    strcpy(c.name, "Beta web");
    c.org_id = beta;
    int64_t before = gw_now_ms();
    assert_int_equal(gw_store_app_client_insert(f->s, &a), 0);
    assert_int_equal(gw_store_app_client_insert(f->s, &c), 0); /* the other org's between */
    assert_int_equal(gw_store_app_client_insert(f->s, &b), 0);
    assert_true(a.id > 0);
    assert_true(c.id > a.id);
    assert_true(b.id > c.id);
    assert_true(a.created_ms >= before);
    struct gw_app_client dup = a;
    strcpy(dup.name, "again");
    assert_int_equal(gw_store_app_client_insert(f->s, &dup), GW_EEXIST);

    assert_int_equal(gw_store_app_client_get(f->s, "ac_000000000000000000000001", &got), 0);
    assert_int_equal(got.id, a.id);
    assert_string_equal(got.client_id, "ac_000000000000000000000001");
    assert_int_equal(got.org_id, acme);
    assert_string_equal(got.org_slug, "acme");
    assert_string_equal(got.name, "Acme web");
    assert_string_equal(got.origins, "https://app.acme.test,http://localhost:5173");
    assert_string_equal(got.providers, "openai");
    assert_string_equal(got.models, "gpt-4o,gpt-4o-mini");
    assert_int_equal(got.session_ttl_s, 3600);
    assert_false(got.approved);
    assert_int_equal(got.approved_ms, 0);
    assert_false(got.revoked);
    assert_int_equal(got.revoked_ms, 0);
    assert_int_equal(got.created_ms, a.created_ms);
    assert_int_equal(gw_store_app_client_get(f->s, "ac_000000000000000000000003", &got), 0);
    assert_string_equal(got.org_slug, "beta");
    assert_string_equal(got.providers, "");
    assert_int_equal(got.session_ttl_s, 600);
    assert_int_equal(gw_store_app_client_get(f->s, "ac_nope", &got), GW_ENOTFOUND);

    /* by org, and of every org; paged by row id */
    struct app_seen seen = app_page(f->s, acme, 0, 10);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.ids, "ac_000000000000000000000001,ac_000000000000000000000002");
    seen = app_page(f->s, beta, 0, 10);
    assert_string_equal(seen.ids, "ac_000000000000000000000003");
    seen = app_page(f->s, 0, 0, 10);
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.ids, "ac_000000000000000000000001,ac_000000000000000000000003,"
                                  "ac_000000000000000000000002");
    seen = app_page(f->s, acme, 0, 1);
    assert_string_equal(seen.ids, "ac_000000000000000000000001");
    seen = app_page(f->s, acme, seen.last_id, 1);
    assert_string_equal(seen.ids, "ac_000000000000000000000002");
    seen = app_page(f->s, acme, seen.last_id, 1);
    assert_int_equal(seen.n, 0);
    seen = app_page(f->s, 0, a.id, 1);
    assert_string_equal(seen.ids, "ac_000000000000000000000003");
    seen = app_page(f->s, 0, seen.last_id, 5);
    assert_string_equal(seen.ids, "ac_000000000000000000000002");
    assert_int_equal(app_page(f->s, 0, 0, 0).n, 0);
    assert_int_equal(gw_store_app_client_list(f->s, 0, 0, -1, collect_app_clients, &seen),
                     GW_EINVAL);

    /* approve: the first time is kept */
    assert_int_equal(gw_store_app_client_approve(f->s, a.client_id, 1000), 0);
    assert_int_equal(gw_store_app_client_get(f->s, a.client_id, &got), 0);
    assert_true(got.approved);
    assert_int_equal(got.approved_ms, 1000);
    assert_int_equal(gw_store_app_client_approve(f->s, a.client_id, 2000), 0);
    assert_int_equal(gw_store_app_client_get(f->s, a.client_id, &got), 0);
    assert_true(got.approved);
    assert_int_equal(got.approved_ms, 1000);
    assert_false(got.revoked);

    /* revoke: twice is fine and keeps the first time; a revoked client cannot be approved */
    assert_int_equal(gw_store_app_client_revoke(f->s, a.client_id, 3000), 0);
    assert_int_equal(gw_store_app_client_revoke(f->s, a.client_id, 4000), 0);
    assert_int_equal(gw_store_app_client_get(f->s, a.client_id, &got), 0);
    assert_true(got.revoked);
    assert_int_equal(got.revoked_ms, 3000);
    assert_true(got.approved); /* the record of the approval stays */
    assert_int_equal(got.approved_ms, 1000);
    assert_int_equal(gw_store_app_client_approve(f->s, a.client_id, 5000), GW_EINVAL);
    assert_int_equal(gw_store_app_client_revoke(f->s, b.client_id, 3500), 0); /* never approved */
    assert_int_equal(gw_store_app_client_approve(f->s, b.client_id, 5000), GW_EINVAL);
    assert_int_equal(gw_store_app_client_get(f->s, b.client_id, &got), 0);
    assert_false(got.approved);
    assert_int_equal(got.approved_ms, 0);
    assert_int_equal(got.revoked_ms, 3500);
    assert_int_equal(gw_store_app_client_get(f->s, c.client_id, &got), 0);
    assert_false(got.approved); /* the others are untouched */
    assert_false(got.revoked);

    /* unknown ids */
    assert_int_equal(gw_store_app_client_approve(f->s, "ac_nope", 1000), GW_ENOTFOUND);
    assert_int_equal(gw_store_app_client_revoke(f->s, "ac_nope", 1000), GW_ENOTFOUND);
}

#define RACERS 8

/* Consumers of one share code, each on its own connection, released together. */
struct consumer {
    const char *url;
    const char *code_hash;
    pthread_barrier_t *start;
    int rc;
    struct gw_share_code got;
};

static void *consume_main(void *arg)
{
    struct consumer *c = arg;
    struct gw_store *s = NULL;
    c->rc = gw_store_open(c->url, &s, NULL);
    pthread_barrier_wait(c->start); /* every thread, opened or not: none waits forever */
    if (c->rc == 0)
        c->rc = gw_store_share_code_consume(s, c->code_hash, &c->got);
    gw_store_free(s);
    return NULL;
}

/* What expired of subject sessions goes, what has not stays; a nonce is taken once. */
static void session_nonces_and_purge(void **state)
{
    struct fx *f = *state;
    const int64_t t = 1764547200000;
    struct gw_share_code c = {.org_id = 1, .created_ms = t, .expires_ms = t + 60000};
    struct gw_subject_session ss = {.org_id = 1, .created_ms = t, .expires_ms = t + 300000};
    strcpy(c.code_hash, "c1");
    strcpy(c.client_id, "ac_1");
    strcpy(c.subject, "s");
    strcpy(c.challenge, "x");
    strcpy(ss.token_hash, "t1");
    strcpy(ss.client_id, "ac_1");
    strcpy(ss.subject, "s");
    strcpy(ss.origin, "https://a.test");
    strcpy(ss.hmac_key, "k");
    assert_int_equal(gw_store_share_code_insert(f->s, &c), 0);
    assert_int_equal(gw_store_session_insert(f->s, &ss), 0);
    assert_int_equal(gw_store_nonce_burn(f->s, "t1", "n1", t + 360000), 0);
    assert_int_equal(gw_store_nonce_burn(f->s, "t1", "n1", t + 360000), GW_EEXIST);
    assert_int_equal(gw_store_nonce_burn(f->s, "t2", "n1", t + 360000), 0); /* another session's */
    int64_t n = -1;
    assert_int_equal(gw_store_session_purge(f->s, t + 1000, 100, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(gw_store_session_purge(f->s, t + 61000, 100, &n), 0);
    assert_int_equal(n, 1); /* the code */
    struct gw_share_code got;
    assert_int_equal(gw_store_share_code_consume(f->s, "c1", &got), GW_ENOTFOUND);
    assert_int_equal(gw_store_session_purge(f->s, t + 400000, 1, &n), 0);
    assert_int_equal(n, 2); /* the session, one nonce (a limit of one per kind) */
    assert_int_equal(gw_store_session_purge(f->s, t + 400000, 100, &n), 0);
    assert_int_equal(n, 1);
    struct gw_subject_session gs;
    assert_int_equal(gw_store_session_get(f->s, "t1", &gs), GW_ENOTFOUND);
    assert_int_equal(gw_store_nonce_burn(f->s, "t1", "n1", t + 999999), 0); /* gone with it */
}

static void share_codes_and_sessions(void **state)
{
    struct fx *f = *state;
    struct gw_share_code c = {0}, got;
    memset(c.code_hash, 'a', 64);
    strcpy(c.client_id, "ac_000000000000000000000001");
    c.org_id = 7;
    strcpy(c.subject, "user-42@example.test");
    strcpy(c.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"); /* RFC 7636's */
    c.created_ms = 1000;
    c.expires_ms = 61000;
    assert_int_equal(gw_store_share_code_insert(f->s, &c), 0);
    struct gw_share_code dup = c;
    strcpy(dup.subject, "someone else");
    assert_int_equal(gw_store_share_code_insert(f->s, &dup), GW_EEXIST);

    memset(&got, 0x5a, sizeof(got)); /* every field is written */
    assert_int_equal(gw_store_share_code_consume(f->s, c.code_hash, &got), 0);
    assert_string_equal(got.code_hash, c.code_hash);
    assert_string_equal(got.client_id, "ac_000000000000000000000001");
    assert_int_equal(got.org_id, 7);
    assert_string_equal(got.subject, "user-42@example.test"); /* the first insert's */
    assert_string_equal(got.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    assert_int_equal(got.created_ms, 1000);
    assert_int_equal(got.expires_ms, 61000);
    /* used up: gone for everyone, even though it has not expired */
    assert_int_equal(gw_store_share_code_consume(f->s, c.code_hash, &got), GW_ENOTFOUND);
    assert_int_equal(gw_store_share_code_consume(f->s, "ffff", &got), GW_ENOTFOUND);
    assert_int_equal(gw_store_share_code_insert(f->s, &c), GW_EEXIST); /* nor minted again */

    /* racing consumers on connections of their own: exactly one wins */
    struct gw_share_code fresh = c;
    memset(fresh.code_hash, 'b', 64);
    assert_int_equal(gw_store_share_code_insert(f->s, &fresh), 0);
    pthread_barrier_t start;
    pthread_t t[RACERS];
    struct consumer r[RACERS];
    assert_int_equal(pthread_barrier_init(&start, NULL, RACERS), 0);
    for (int i = 0; i < RACERS; i++) {
        r[i] = (struct consumer){.url = f->url, .code_hash = fresh.code_hash, .start = &start};
        assert_int_equal(pthread_create(&t[i], NULL, consume_main, &r[i]), 0);
    }
    int won = 0, lost = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(t[i], NULL);
        if (r[i].rc == 0) {
            won++;
            assert_string_equal(r[i].got.code_hash, fresh.code_hash);
            assert_string_equal(r[i].got.subject, "user-42@example.test");
        } else {
            assert_int_equal(r[i].rc, GW_ENOTFOUND);
            lost++;
        }
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(won, 1);
    assert_int_equal(lost, RACERS - 1);
    assert_int_equal(gw_store_share_code_consume(f->s, fresh.code_hash, &got), GW_ENOTFOUND);

    /* sessions */
    struct gw_subject_session ss = {0}, sg;
    memset(ss.token_hash, 'c', 64);
    strcpy(ss.client_id, "ac_000000000000000000000001");
    ss.org_id = 7;
    strcpy(ss.subject, "user-42@example.test");
    strcpy(ss.origin, "https://app.acme.test:8443");
    strcpy(ss.hmac_key, "dGVzdC1obWFjLWtleS0zMi1ieXRlcy1sb25nLi4uLi4");
    ss.created_ms = 2000;
    ss.expires_ms = 3602000;
    assert_int_equal(gw_store_session_insert(f->s, &ss), 0);
    memset(&sg, 0x5a, sizeof(sg));
    assert_int_equal(gw_store_session_get(f->s, ss.token_hash, &sg), 0);
    assert_string_equal(sg.token_hash, ss.token_hash);
    assert_string_equal(sg.client_id, "ac_000000000000000000000001");
    assert_int_equal(sg.org_id, 7);
    assert_string_equal(sg.subject, "user-42@example.test");
    assert_string_equal(sg.origin, "https://app.acme.test:8443");
    assert_string_equal(sg.hmac_key, "dGVzdC1obWFjLWtleS0zMi1ieXRlcy1sb25nLi4uLi4");
    assert_int_equal(sg.created_ms, 2000);
    assert_int_equal(sg.expires_ms, 3602000);
    assert_int_equal(gw_store_session_get(f->s, "dddd", &sg), GW_ENOTFOUND);
    struct gw_subject_session sdup = ss;
    strcpy(sdup.origin, "https://evil.test");
    assert_int_equal(gw_store_session_insert(f->s, &sdup), GW_EEXIST);
    assert_int_equal(gw_store_session_get(f->s, ss.token_hash, &sg), 0);
    assert_string_equal(sg.origin, "https://app.acme.test:8443"); /* unchanged */
}

static void superadmin_exists(void **state)
{
    struct fx *f = *state;
    int yes = -1;
    unsigned char h[32];
    struct gw_key_rec k = {0};
    assert_int_equal(gw_store_superadmin_exists(f->s, &yes), 0);
    assert_int_equal(yes, 0);
    gw_sha256(h, "root", 4);
    strcpy(k.key_id, "key_root");
    strcpy(k.role, "superadmin");
    strcpy(k.tier, "enterprise");
    assert_int_equal(gw_store_key_insert(f->s, &k, h), 0);
    assert_int_equal(gw_store_superadmin_exists(f->s, &yes), 0);
    assert_int_equal(yes, 1);
    assert_int_equal(gw_store_key_revoke(f->s, "key_root"), 0);
    assert_int_equal(gw_store_superadmin_exists(f->s, &yes), 0);
    assert_int_equal(yes, 0);
}

static void usage_reserve_settle_recover(void **state)
{
    struct fx *f = *state;
    struct gw_usage_row r = {0}, got;
    strcpy(r.request_id, "req_1");
    strcpy(r.provider, "openai");
    strcpy(r.model, "gpt-4o");
    strcpy(r.endpoint, "chat.completions");
    strcpy(r.state, "reserved");
    strcpy(r.catalog_version, "2026-11-24");
    r.reserved_micros = 9000;
    r.created_ms = gw_now_ms();
    assert_int_equal(gw_store_usage_reserve(f->s, &r), 0);
    assert_int_equal(gw_store_usage_reserve(f->s, &r), GW_EEXIST);
    struct gw_usage_row r2 = r;
    strcpy(r2.request_id, "req_2");
    assert_int_equal(gw_store_usage_reserve(f->s, &r2), 0);
    r.tokens_in = 120;
    r.tokens_out = 30;
    r.cached_tokens = 20;
    r.cost_micros = 575;
    r.status = 200;
    strcpy(r.state, "settled");
    assert_int_equal(gw_store_usage_settle(f->s, &r), 0);
    assert_int_equal(gw_store_usage_get(f->s, "req_1", &got), 0);
    assert_string_equal(got.state, "settled");
    assert_int_equal(got.cost_micros, 575);
    assert_int_equal(got.tokens_in, 120);
    assert_string_equal(got.catalog_version, "2026-11-24");
    /* a process died with req_2 reserved: recovery charges the worst case */
    int64_t n = 0;
    assert_int_equal(gw_store_usage_recover(f->s, "", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(gw_store_usage_get(f->s, "req_2", &got), 0);
    assert_string_equal(got.state, "uncertain");
    assert_int_equal(got.cost_micros, 9000);
    assert_int_equal(gw_store_usage_get(f->s, "req_1", &got), 0);
    assert_string_equal(got.state, "settled");
    assert_int_equal(gw_store_usage_get(f->s, "req_9", &got), GW_ENOTFOUND);
    struct gw_usage_row missing = r;
    strcpy(missing.request_id, "req_9");
    assert_int_equal(gw_store_usage_settle(f->s, &missing), GW_ENOTFOUND);
}

static void count_batch_failures(void *arg, int level, const char *line)
{
    (void)level;
    if (strstr(line, "writes together failed") != NULL)
        ++*(int *)arg;
}

/* Plain writes run together: each its own result; the counters of those written only; a
 * write that fails (a request id taken) fails alone. Text that needs quoting in an array. */
static void plain_writes_together(void **state)
{
    struct fx *f = *state;
    enum { N = 6 };
    struct gw_usage_row rows[N + 2];
    struct gw_store_write w[N + 2];
    struct gw_store_write *wp[N + 2];
    int64_t now = gw_now_ms();
    for (int i = 0; i < N + 2; i++) {
        struct gw_usage_row *r = &rows[i];
        memset(r, 0, sizeof(*r));
        snprintf(r->request_id, sizeof(r->request_id), "w%d", i);
        strcpy(r->provider, "openai");
        strcpy(r->model, "gpt-4o");
        strcpy(r->endpoint, "chat.completions");
        strcpy(r->state, "reserved");
        strcpy(r->error_code, i == 1 ? "a \"quoted\", {braced} \\ text" : "");
        r->org_id = 3;
        r->key_row_id = 7;
        r->reserved_micros = 1000;
        r->created_ms = now;
        w[i] = (struct gw_store_write){
            .row = r,
            .d = {.key_id = 7, .org_id = 3, .day_start = now - 1000, .month_start = now - 2000,
                  .usd = 1000, .second = now / 1000, .requests = 1, .tokens = 10,
                  .spread_key = 1, .spread_org = i % 2},
        };
        wp[i] = &w[i];
    }
    int failed = 0; /* batches that fell back to one by one */
    gw_log_set_handler(count_batch_failures, &failed, GW_LOG_LVL_WARN);
    gw_store_write_many(f->s, wp, N); /* N reservations */
    assert_int_equal(failed, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(w[i].rc, 0);
    struct gw_usage_row got;
    assert_int_equal(gw_store_usage_get(f->s, "w1", &got), 0);
    assert_string_equal(got.error_code, "a \"quoted\", {braced} \\ text");
    /* settle the first half, w6 (never reserved) with them, and reserve w7 and w0 again */
    struct gw_store_write *mix[N];
    int n = 0;
    for (int i = 0; i < N / 2; i++) {
        strcpy(rows[i].state, "settled");
        rows[i].cost_micros = 400;
        w[i].settle = 1;
        w[i].d.usd = 400 - 1000;
        w[i].d.requests = 0;
        w[i].d.tokens = 0;
        mix[n++] = &w[i];
    }
    w[N].settle = 1;
    mix[n++] = &w[N];
    mix[n++] = &w[N + 1];
    struct gw_store_write again = w[0];
    again.settle = 0;
    mix[n++] = &again; /* w0 is taken: this write fails, the others stand */
    gw_store_write_many(f->s, mix, n);
    gw_log_set_handler(NULL, NULL, GW_LOG_LVL_ERROR);
    assert_int_equal(failed, f->schema[0] ? 1 : 0); /* PostgreSQL tried them together first */
    for (int i = 0; i < N / 2; i++)
        assert_int_equal(w[i].rc, 0);
    assert_int_equal(w[N].rc, GW_ENOTFOUND);
    assert_int_equal(w[N + 1].rc, 0);
    assert_int_equal(again.rc, GW_EEXIST);
    assert_int_equal(gw_store_usage_get(f->s, "w2", &got), 0);
    assert_string_equal(got.state, "settled");
    assert_int_equal(got.cost_micros, 400);
    assert_int_equal(gw_store_usage_get(f->s, "w6", &got), GW_ENOTFOUND);
    /* counted: 7 reservations of 1000, 3 of them settled at 400 */
    int64_t want = 7 * 1000 - 3 * 600;
    for (int scope = 0; scope < 2; scope++) {
        struct gw_scope_usage u;
        assert_int_equal(gw_store_usage_snapshot(f->s, scope ? GW_SCOPE_ORG : GW_SCOPE_KEY,
                                                 scope ? 3 : 7, now / 1000 - 10, now - 1000,
                                                 now - 2000, GW_SNAP_HOUR | GW_SNAP_BUDGET, &u),
                         0);
        assert_int_equal(u.day_spent, want);
        assert_int_equal(u.month_spent, want);
        assert_int_equal(u.requests, 7);
        assert_int_equal(u.tokens, 70);
    }
}

static void usage_attempt_rows_retarget_and_spent(void **state)
{
    struct fx *f = *state;
    struct gw_usage_row r = {0}, a, got;
    int64_t now = 1796000000000, spent = -1;
    strcpy(r.request_id, "req_f");
    strcpy(r.provider, "openai");
    strcpy(r.model, "gpt-4o");
    strcpy(r.endpoint, "chat.completions");
    strcpy(r.state, "reserved");
    strcpy(r.route_method, "explicit");
    r.key_row_id = 7;
    r.reserved_micros = 5000;
    r.created_ms = now;
    assert_int_equal(gw_store_usage_reserve(f->s, &r), 0);
    /* the first attempt failed: archived as its own row, linked to the request */
    a = r;
    strcpy(a.request_id, "req_f.1");
    strcpy(a.parent_request_id, "req_f");
    strcpy(a.kind, "attempt");
    strcpy(a.state, "uncertain");
    a.cost_micros = 5000;
    assert_int_equal(gw_store_usage_reserve(f->s, &a), 0);
    /* the reservation moves to the fallback target */
    strcpy(r.provider, "anthropic");
    strcpy(r.model, "claude-sonnet-4-6");
    strcpy(r.route_method, "fallback");
    r.reserved_micros = 7000;
    r.attempts = 2;
    assert_int_equal(gw_store_usage_settle(f->s, &r), 0);
    assert_int_equal(gw_store_usage_get(f->s, "req_f", &got), 0);
    assert_string_equal(got.provider, "anthropic");
    assert_string_equal(got.model, "claude-sonnet-4-6");
    assert_string_equal(got.route_method, "fallback");
    assert_string_equal(got.kind, "chat");
    assert_int_equal(got.attempts, 2);
    assert_int_equal(got.reserved_micros, 7000);
    assert_int_equal(gw_store_usage_get(f->s, "req_f.1", &got), 0);
    assert_string_equal(got.parent_request_id, "req_f");
    assert_string_equal(got.kind, "attempt");
    /* spent: the uncertain attempt's charge + the reservation still in flight */
    assert_int_equal(gw_store_usage_spent(f->s, GW_SCOPE_KEY, 7, now - 1000, &spent), 0);
    assert_int_equal(spent, 12000);
    strcpy(r.state, "settled");
    r.cost_micros = 918;
    assert_int_equal(gw_store_usage_settle(f->s, &r), 0);
    assert_int_equal(gw_store_usage_spent(f->s, GW_SCOPE_KEY, 7, now - 1000, &spent), 0);
    assert_int_equal(spent, 5918);
    assert_int_equal(gw_store_usage_spent(f->s, GW_SCOPE_KEY, 7, now + 1, &spent), 0);
    assert_int_equal(spent, 0);
    assert_int_equal(gw_store_usage_spent(f->s, GW_SCOPE_KEY, 8, 0, &spent), 0);
    assert_int_equal(spent, 0);
}

static void budget_windows(void **state)
{
    /* 2026-12-01T06:59:32Z */
    int64_t now = 1796108372000;
    struct gw_budget_windows utc = {.reset_hour = 0, .reset_day = 1};
    assert_int_equal(gw_budget_day_start(&utc, now), 1796083200000);   /* 2026-12-01T00:00Z */
    assert_int_equal(gw_budget_next_day(&utc, now), 1796169600000);
    assert_int_equal(gw_budget_month_start(&utc, now), 1796083200000); /* the 1st */
    assert_int_equal(gw_budget_month_start(&utc, now + 15 * 86400000LL), 1796083200000);
    assert_int_equal(gw_budget_month_start(&utc, now - 86400000LL), 1793491200000); /* Nov 1 */
    assert_int_equal(gw_budget_next_month(&utc, now), 1798761600000);  /* 2027-01-01 */
    /* resets at 08:00 UTC on the 15th */
    struct gw_budget_windows w = {.reset_hour = 8, .reset_day = 15};
    assert_int_equal(gw_budget_day_start(&w, now), 1796083200000 - 16 * 3600000LL);
    assert_int_equal(gw_budget_next_day(&w, now), 1796083200000 + 8 * 3600000LL);
    /* before Dec 15 08:00 the month began on Nov 15 08:00 */
    assert_int_equal(gw_budget_month_start(&w, now), 1794729600000);
    assert_int_equal(gw_budget_next_month(&w, now), 1797321600000);
    (void)state;
}

static void idempotency_records(void **state)
{
    struct fx *f = *state;
    struct gw_idem_rec r = {0}, e;
    int claimed = -1;
    gw_strlcpy(r.caller, "key:7", sizeof(r.caller));
    gw_strlcpy(r.endpoint, "chat.completions", sizeof(r.endpoint));
    gw_strlcpy(r.key, "k-1", sizeof(r.key));
    gw_strlcpy(r.fingerprint, "aa", sizeof(r.fingerprint));
    gw_strlcpy(r.request_id, "req_a", sizeof(r.request_id));
    gw_strlcpy(r.node, "n1", sizeof(r.node));
    r.created_ms = 1000;
    r.expires_ms = 100000;
    assert_int_equal(gw_store_idem_claim(f->s, &r, 1000, &claimed, &e), 0);
    assert_int_equal(claimed, 1);
    /* a second claim sees the first, in flight */
    struct gw_idem_rec r2 = r;
    gw_strlcpy(r2.request_id, "req_b", sizeof(r2.request_id));
    gw_strlcpy(r2.fingerprint, "bb", sizeof(r2.fingerprint));
    assert_int_equal(gw_store_idem_claim(f->s, &r2, 2000, &claimed, &e), 0);
    assert_int_equal(claimed, 0);
    assert_string_equal(e.state, "in_flight");
    assert_string_equal(e.request_id, "req_a");
    assert_string_equal(e.fingerprint, "aa");
    gw_idem_rec_cleanup(&e);
    /* only the claimant completes it */
    struct gw_idem_rec done = r;
    gw_strlcpy(done.state, "done", sizeof(done.state));
    done.status = 200;
    done.headers = "Content-Type: application/json\n";
    done.body = "{\"x\":1}\n";
    done.body_len = strlen(done.body);
    done.completed_ms = 3000;
    assert_int_equal(gw_store_idem_complete(f->s, &r2), GW_ENOTFOUND);
    assert_int_equal(gw_store_idem_complete(f->s, &done), 0);
    assert_int_equal(gw_store_idem_claim(f->s, &r2, 4000, &claimed, &e), 0);
    assert_int_equal(claimed, 0);
    assert_string_equal(e.state, "done");
    assert_int_equal(e.status, 200);
    assert_string_equal(e.headers, "Content-Type: application/json\n");
    assert_int_equal(e.body_len, strlen("{\"x\":1}\n"));
    assert_memory_equal(e.body, "{\"x\":1}\n", e.body_len);
    gw_idem_rec_cleanup(&e);
    /* another caller, same key: its own */
    struct gw_idem_rec other = r2;
    gw_strlcpy(other.caller, "key:8", sizeof(other.caller));
    assert_int_equal(gw_store_idem_claim(f->s, &other, 4000, &claimed, &e), 0);
    assert_int_equal(claimed, 1);
    /* released: a retry claims it again */
    assert_int_equal(gw_store_idem_release(f->s, &other), 0);
    assert_int_equal(gw_store_idem_claim(f->s, &other, 4100, &claimed, &e), 0);
    assert_int_equal(claimed, 1);
    /* a dead node's claims become uncertain; another node's stay */
    struct gw_idem_rec n2 = other;
    gw_strlcpy(n2.key, "k-2", sizeof(n2.key));
    gw_strlcpy(n2.node, "n2", sizeof(n2.node));
    assert_int_equal(gw_store_idem_claim(f->s, &n2, 4200, &claimed, &e), 0);
    int64_t count = 0;
    assert_int_equal(gw_store_idem_recover(f->s, "n1", &count), 0);
    assert_int_equal(count, 1);
    assert_int_equal(gw_store_idem_claim(f->s, &other, 4300, &claimed, &e), 0);
    assert_int_equal(claimed, 0);
    assert_string_equal(e.state, "uncertain");
    gw_idem_rec_cleanup(&e);
    /* expired: purged, or replaced by a new claim */
    struct gw_idem_rec late = r2;
    late.created_ms = 200000;
    late.expires_ms = 300000;
    assert_int_equal(gw_store_idem_claim(f->s, &late, 200000, &claimed, &e), 0);
    assert_int_equal(claimed, 1);
    assert_int_equal(gw_store_idem_purge(f->s, 250000, 100, &count), 0);
    assert_int_equal(count, 2); /* key:8 k-1 and k-2 expired at 100000 */
    assert_int_equal(gw_store_idem_purge(f->s, 250000, 100, &count), 0);
    assert_int_equal(count, 0);
}

static void two_connections_share_the_file(void **state)
{
    struct fx *f = *state;
    struct gw_store *other = NULL;
    struct gw_org o;
    assert_int_equal(gw_store_open(f->url, &other, NULL), 0);
    assert_int_equal(gw_store_migrate(other, NULL), 0);
    assert_int_equal(gw_store_org_create(other, "beta", "Beta", NULL), 0);
    assert_int_equal(gw_store_org_get(f->s, "beta", &o), 0);
    gw_store_free(other);
}

/* Keys read by one connection are cached; a change made through another connection (the CLI
 * in another process) is seen by the next lookup, and only once it is committed. */
static void key_cache_sees_changes_from_elsewhere(void **state)
{
    struct fx *f = *state;
    struct gw_store *cli = NULL;
    struct gw_key_rec k = {0}, got;
    struct gw_org o;
    unsigned char h[32];
    int64_t org = 0;
    assert_int_equal(gw_store_org_create(f->s, "acme", "Acme", &org), 0);
    gw_sha256(h, "key-one", 7);
    strcpy(k.key_id, "key_aaaa");
    strcpy(k.role, "member");
    strcpy(k.tier, "pro");
    k.org_id = org;
    assert_int_equal(gw_store_key_insert(f->s, &k, h), 0);
    assert_int_equal(gw_store_open(f->url, &cli, NULL), 0);
    for (int round = 0; round < 2; round++) { /* the second round reads from the cache */
        assert_int_equal(gw_store_key_by_hash(f->s, h, &got), 0);
        assert_string_equal(got.tier, "pro");
        assert_false(got.revoked);
    }
    /* a policy change inside a transaction: seen after COMMIT, not before */
    assert_int_equal(gw_store_tx_begin(cli), 0);
    strcpy(k.tier, "enterprise");
    assert_int_equal(gw_store_key_set_policy(cli, &k), 0);
    assert_int_equal(gw_store_key_by_hash(f->s, h, &got), 0);
    assert_string_equal(got.tier, "pro");
    assert_int_equal(gw_store_tx_commit(cli), 0);
    assert_int_equal(gw_store_key_by_hash(f->s, h, &got), 0);
    assert_string_equal(got.tier, "enterprise");
    /* the org's policy travels with the key */
    assert_int_equal(gw_store_org_get(cli, "acme", &o), 0);
    strcpy(o.models, "gpt-4o");
    assert_int_equal(gw_store_org_set_policy(cli, &o), 0);
    assert_int_equal(gw_store_key_by_hash(f->s, h, &got), 0);
    assert_string_equal(got.org_models, "gpt-4o");
    /* revoked elsewhere: refused at once */
    assert_int_equal(gw_store_key_revoke(cli, "key_aaaa"), 0);
    assert_int_equal(gw_store_key_by_hash(f->s, h, &got), 0);
    assert_true(got.revoked);
    gw_store_free(cli);
}

/* The writer's commits leave checkpoints to a thread of their own, and the WAL still starts
 * over instead of growing (a passive checkpoint alone never finishes under steady writes). */
static void writer_mode_keeps_the_wal_short(void **state)
{
    struct fx *f = *state;
    char path[600], slug[32];
    struct stat st;
    assert_int_equal(gw_store_writer_mode(f->s), 0);
    assert_int_equal(gw_store_writer_mode(f->s), 0); /* once is enough */
    for (int i = 0; i < 5000; i++) {
        snprintf(slug, sizeof(slug), "org-%d", i);
        assert_int_equal(gw_store_org_create(f->s, slug, slug, NULL), 0);
    }
    snprintf(path, sizeof(path), "%s-wal", f->url + 7);
    assert_int_equal(stat(path, &st), 0);
    /* some 15,000 pages were committed: without checkpoints the WAL would be ~60 MB */
    assert_true(st.st_size < 16 * 1024 * 1024);
    struct gw_org o;
    assert_int_equal(gw_store_org_get(f->s, "org-4999", &o), 0);
}

int main(void)
{
    const struct CMUnitTest sqlite_tests[] = {
        cmocka_unit_test_setup_teardown(open_creates_directories_and_migrate_is_idempotent, setup,
                                        teardown),
        cmocka_unit_test(urls_are_checked),
        cmocka_unit_test_setup_teardown(orgs, setup, teardown),
        cmocka_unit_test_setup_teardown(keys_by_hash_list_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(app_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(share_codes_and_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(session_nonces_and_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(superadmin_exists, setup, teardown),
        cmocka_unit_test_setup_teardown(usage_reserve_settle_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(plain_writes_together, setup, teardown),
        cmocka_unit_test_setup_teardown(usage_attempt_rows_retarget_and_spent, setup, teardown),
        cmocka_unit_test_setup_teardown(budget_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(idempotency_records, setup, teardown),
        cmocka_unit_test_setup_teardown(two_connections_share_the_file, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_mode_keeps_the_wal_short, setup, teardown),
        cmocka_unit_test_setup_teardown(key_cache_sees_changes_from_elsewhere, setup, teardown),
    };
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test_setup_teardown(migrate_is_idempotent, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(orgs, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(keys_by_hash_list_revoke, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(app_clients, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(share_codes_and_sessions, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(session_nonces_and_purge, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(superadmin_exists, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(usage_reserve_settle_recover, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(plain_writes_together, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(usage_attempt_rows_retarget_and_spent, setup_pg,
                                        teardown_pg),
        cmocka_unit_test_setup_teardown(idempotency_records, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(two_connections_share_the_file, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(key_cache_sees_changes_from_elsewhere, setup_pg,
                                        teardown_pg),
    };
    int failed = cmocka_run_group_tests_name("sqlite", sqlite_tests, NULL, NULL);
    if (getenv("LLMGW_TEST_PG_URL") == NULL || getenv("LLMGW_TEST_PG_URL")[0] == '\0') {
        printf("[ SKIPPED  ] postgres: LLMGW_TEST_PG_URL is not set\n");
        return failed;
    }
    return failed + cmocka_run_group_tests_name("postgres", pg_tests, NULL, NULL);
}
