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
#include <sqlite3.h>

#include "policy/budget.h"
#include "store/store.h"
#include "store/store_int.h"
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

    /* update: name, origins, allowlists and lifetime change; approval stays; unknown fails */
    struct gw_app_client up = got;
    strcpy(up.name, "renamed");
    strcpy(up.origins, "https://new.example,http://localhost:3000");
    strcpy(up.models, "gpt-4o");
    up.session_ttl_s = 600;
    assert_int_equal(gw_store_app_client_update(f->s, &up), 0);
    assert_int_equal(gw_store_app_client_get(f->s, a.client_id, &got), 0);
    assert_string_equal(got.name, "renamed");
    assert_string_equal(got.origins, "https://new.example,http://localhost:3000");
    assert_string_equal(got.models, "gpt-4o");
    assert_int_equal(got.session_ttl_s, 600);
    assert_true(got.approved);
    strcpy(up.client_id, "ac_000000000000000000000000");
    assert_int_equal(gw_store_app_client_update(f->s, &up), GW_ENOTFOUND);

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

/* A reserved chat row of request id (an openai gpt-4o call), created at created_ms. */
static struct gw_usage_row reserved_row(const char *id, int64_t created_ms)
{
    struct gw_usage_row r = {0};
    gw_strlcpy(r.request_id, id, sizeof(r.request_id));
    strcpy(r.provider, "openai");
    strcpy(r.model, "gpt-4o");
    strcpy(r.endpoint, "chat.completions");
    strcpy(r.state, "reserved");
    r.created_ms = created_ms;
    return r;
}

static void usage_reserve_settle_recover(void **state)
{
    struct fx *f = *state;
    struct gw_usage_row r = reserved_row("req_1", gw_now_ms()), got;
    strcpy(r.catalog_version, "2026-11-24");
    r.reserved_micros = 9000;
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
    if (strstr(line, "together failed") != NULL)
        ++*(int *)arg;
}

/* The key's (7) and the org's (3) counters at now: spent today and this month, requests and
 * tokens in the last hour. */
static void snapshot_is(struct fx *f, int64_t now, int64_t spent, int64_t requests,
                        int64_t tokens)
{
    for (int scope = 0; scope < 2; scope++) {
        struct gw_scope_usage u;
        assert_int_equal(gw_store_usage_snapshot(f->s, scope ? GW_SCOPE_ORG : GW_SCOPE_KEY,
                                                 scope ? 3 : 7, now / 1000 - 3600, now - 1000,
                                                 now - 2000, GW_SNAP_HOUR | GW_SNAP_BUDGET, &u),
                         0);
        assert_int_equal(u.day_spent, spent);
        assert_int_equal(u.month_spent, spent);
        assert_int_equal(u.requests, requests);
        assert_int_equal(u.tokens, tokens);
    }
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
        char id[16];
        snprintf(id, sizeof(id), "w%d", i);
        *r = reserved_row(id, now);
        strcpy(r->error_code, i == 1 ? "a \"quoted\", {braced} \\ text" : "");
        r->org_id = 3;
        r->key_row_id = 7;
        r->reserved_micros = 1000;
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
    snapshot_is(f, now, 7 * 1000 - 3 * 600, 7, 70);
}

static int count_bucket(void *arg, int64_t second, int64_t requests, int64_t tokens)
{
    (void)second, (void)requests, (void)tokens;
    ++*(int *)arg;
    return 0;
}

/* The seconds with a bucket of the scope from since on. */
static int buckets(struct fx *f, enum gw_scope scope, int64_t id, int64_t since)
{
    int n = 0;
    assert_int_equal(gw_store_rate_list(f->s, scope, id, since, count_bucket, &n), 0);
    return n;
}

/* 70 seconds of buckets of key 7 (org 3) and of key 8 (no org) before the hour, and n in it. */
static void buckets_around_the_hour(struct fx *f, int64_t now, int n)
{
    int64_t sec = now / 1000;
    for (int i = 0; i < 70 + n; i++) {
        struct gw_counters_delta d = {.key_id = 7, .org_id = 3, .day_start = now - 1000,
                                      .month_start = now - 2000, .requests = 1, .tokens = 10,
                                      .second = i < 70 ? sec - 3600 - 70 + i : sec - 70 - n + i};
        assert_int_equal(gw_store_counters_add(f->s, &d), 0);
        d.key_id = 8;
        d.org_id = 0;
        assert_int_equal(gw_store_counters_add(f->s, &d), 0);
    }
}

/* An admission's start: the transaction open, and what each scope wanted read as a snapshot
 * reads it (nothing for a scope that wants nothing). */
static void admission_begin_reads_like_snapshots(void **state)
{
    struct fx *f = *state;
    int64_t now = gw_now_ms(), sec = now / 1000;
    buckets_around_the_hour(f, now, 10);
    struct gw_counters_delta d = {.key_id = 7, .org_id = 3, .day_start = now - 1000,
                                  .month_start = now - 2000, .usd = 250, .second = sec,
                                  .requests = 1, .tokens = 5};
    assert_int_equal(gw_store_counters_add(f->s, &d), 0);
    for (int variant = 0; variant < 3; variant++) {
        struct gw_admission_read rd = {
            .lock_org = variant != 1, .lock_key = variant != 2, .org_id = 3, .key_id = 7,
            .key_want = GW_SNAP_HOUR | GW_SNAP_BUDGET | GW_SNAP_INFLIGHT,
            .org_want = variant == 2 ? 0 : GW_SNAP_HOUR | GW_SNAP_BUDGET,
            .hour_start = sec - 3600, .day_start = now - 1000, .month_start = now - 2000};
        struct gw_scope_usage ku, ou, want;
        assert_int_equal(gw_store_admission_begin(f->s, &rd, &ku, &ou), 0);
        assert_true(gw_store_in_tx(f->s));
        assert_int_equal(gw_store_usage_snapshot(f->s, GW_SCOPE_KEY, 7, sec - 3600, now - 1000,
                                                 now - 2000, rd.key_want, &want),
                         0);
        assert_memory_equal(&ku, &want, sizeof(want));
        assert_int_equal(ku.requests, 11);
        assert_int_equal(ku.day_spent, 250);
        if (rd.org_want) {
            assert_int_equal(gw_store_usage_snapshot(f->s, GW_SCOPE_ORG, 3, sec - 3600,
                                                     now - 1000, now - 2000, rd.org_want, &want),
                             0);
            assert_memory_equal(&ou, &want, sizeof(want));
            assert_int_equal(ou.tokens, 10 * 10 + 5);
        } else {
            assert_int_equal(ou.requests, 0);
        }
        if (variant == 0)
            assert_int_equal(gw_store_tx_commit(f->s), 0);
        else
            gw_store_tx_rollback(f->s);
        assert_false(gw_store_in_tx(f->s));
    }
}

/* Writes together drop the buckets that left the hour: of their own scopes only, and those
 * before the latest bound among them. */
static void writes_together_prune_old_buckets(void **state)
{
    struct fx *f = *state;
    int64_t now = gw_now_ms(), sec = now / 1000;
    buckets_around_the_hour(f, now, 10);
    snapshot_is(f, now, 0, 10, 100);
    assert_int_equal(buckets(f, GW_SCOPE_KEY, 7, sec - 7200), 80);
    struct gw_usage_row rows[2];
    struct gw_store_write w[2], *wp[2] = {&w[0], &w[1]};
    for (int i = 0; i < 2; i++) {
        rows[i] = reserved_row(i == 0 ? "p0" : "p1", now);
        rows[i].org_id = 3;
        rows[i].key_row_id = 7;
        rows[i].reserved_micros = 1000;
        w[i] = (struct gw_store_write){
            .row = &rows[i],
            .d = {.key_id = 7, .org_id = 3, .day_start = now - 1000, .month_start = now - 2000,
                  .usd = 1000, .second = sec, .requests = 1, .tokens = 10, .spread_key = i,
                  .prune_before = i == 0 ? sec - 3600 : sec - 3630},
        };
    }
    int failed = 0;
    gw_log_set_handler(count_batch_failures, &failed, GW_LOG_LVL_WARN);
    gw_store_write_many(f->s, wp, 2);
    gw_log_set_handler(NULL, NULL, GW_LOG_LVL_ERROR);
    assert_int_equal(failed, 0);
    assert_int_equal(w[0].rc, 0);
    assert_int_equal(w[1].rc, 0);
    snapshot_is(f, now, 2000, 10 + 2, 100 + 20);
    assert_int_equal(buckets(f, GW_SCOPE_KEY, 7, sec - 7200), 10 + 1); /* the hour's, and now */
    assert_int_equal(buckets(f, GW_SCOPE_ORG, 3, sec - 7200), 10 + 1);
    assert_int_equal(buckets(f, GW_SCOPE_KEY, 8, sec - 7200), 80); /* another key's stay */
}

/* The hour counts every second from its start on, wherever in a minute it starts. */
static void hour_from_any_second(void **state)
{
    struct fx *f = *state;
    int64_t now = gw_now_ms(), base = (now / 1000 - 1800) / 60 * 60; /* a minute's start */
    for (int i = -30; i < 90; i++) { /* a request a second, base - 30 .. base + 89 */
        struct gw_counters_delta d = {.key_id = 7, .org_id = 3, .day_start = now - 1000,
                                      .month_start = now - 2000, .second = base + i,
                                      .requests = 1, .tokens = 10, .spread_key = i % 2};
        assert_int_equal(gw_store_counters_add(f->s, &d), 0);
    }
    const int64_t from[] = {-31, -30, -1, 0, 1, 59, 60, 61, 89, 90};
    for (size_t k = 0; k < sizeof(from) / sizeof(from[0]); k++) {
        int64_t want = from[k] < -30 ? 120 : 90 - from[k];
        for (int scope = 0; scope < 2; scope++) {
            struct gw_scope_usage u;
            assert_int_equal(gw_store_usage_snapshot(f->s, scope ? GW_SCOPE_ORG : GW_SCOPE_KEY,
                                                     scope ? 3 : 7, base + from[k], now - 1000,
                                                     now - 2000, GW_SNAP_HOUR, &u),
                             0);
            assert_int_equal(u.requests, want);
            assert_int_equal(u.tokens, want * 10);
        }
    }
}

/* Counter changes in a transaction: a read inside it sees them, the commit keeps them all
 * (70 distinct second rows among them), a prune removes what left the hour, and a rollback
 * drops them. */
static void counters_in_a_transaction(void **state)
{
    struct fx *f = *state;
    int64_t now = gw_now_ms(), sec = now / 1000;
    struct gw_counters_delta d = {.key_id = 7, .org_id = 3, .day_start = now - 1000,
                                  .month_start = now - 2000, .usd = 100, .second = sec,
                                  .requests = 1, .tokens = 10, .spread_key = 1};
    assert_int_equal(gw_store_tx_begin(f->s), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(gw_store_counters_add(f->s, &d), 0);
    snapshot_is(f, now, 500, 5, 50); /* read inside the transaction */
    for (int i = 0; i < 70; i++) { /* 70 seconds of the last hour, each a row of its own */
        d.second = sec - 69 + i;
        assert_int_equal(gw_store_counters_add(f->s, &d), 0);
    }
    assert_int_equal(gw_store_tx_commit(f->s), 0);
    snapshot_is(f, now, 7500, 75, 750);
    buckets_around_the_hour(f, now, 0); /* and 70 seconds before the hour */
    snapshot_is(f, now, 7500, 75, 750);
    assert_int_equal(buckets(f, GW_SCOPE_KEY, 7, sec - 7200), 140);
    /* a prune (with a change of its own) drops the buckets that left the hour */
    assert_int_equal(gw_store_tx_begin(f->s), 0);
    d = (struct gw_counters_delta){.key_id = 7, .org_id = 3, .day_start = now - 1000,
                                   .month_start = now - 2000, .second = sec, .requests = 1,
                                   .prune_before = sec - 3600};
    assert_int_equal(gw_store_counters_add(f->s, &d), 0);
    assert_int_equal(gw_store_tx_commit(f->s), 0);
    snapshot_is(f, now, 7500, 76, 750);
    assert_int_equal(buckets(f, GW_SCOPE_KEY, 7, sec - 7200), 70);
    assert_int_equal(buckets(f, GW_SCOPE_ORG, 3, sec - 7200), 70);
    /* a rollback leaves nothing of its changes */
    assert_int_equal(gw_store_tx_begin(f->s), 0);
    d.usd = 999;
    d.prune_before = 0;
    assert_int_equal(gw_store_counters_add(f->s, &d), 0);
    gw_store_tx_rollback(f->s);
    snapshot_is(f, now, 7500, 76, 750);
    /* and outside a transaction each change is written at once */
    d.usd = 1;
    assert_int_equal(gw_store_counters_add(f->s, &d), 0);
    snapshot_is(f, now, 7501, 77, 750);
}

static void usage_attempt_rows_retarget_and_spent(void **state)
{
    struct fx *f = *state;
    int64_t now = 1796000000000, spent = -1;
    struct gw_usage_row r = reserved_row("req_f", now), a, got;
    strcpy(r.route_method, "explicit");
    r.key_row_id = 7;
    r.reserved_micros = 5000;
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
#ifdef GW_TEST_HOOKS
    gw_sqlite_test_ckpt_restart_bytes(1L << 20);
#endif
    assert_int_equal(gw_store_writer_mode(f->s), 0);
    assert_int_equal(gw_store_writer_mode(f->s), 0); /* once is enough */
#ifdef GW_TEST_HOOKS
    gw_sqlite_test_ckpt_restart_bytes(0); /* the default again */
#endif
    for (int i = 0; i < 5000; i++) {
        snprintf(slug, sizeof(slug), "org-%d", i);
        assert_int_equal(gw_store_org_create(f->s, slug, slug, NULL), 0);
    }
    snprintf(path, sizeof(path), "%s-wal", f->url + 7);
    assert_int_equal(stat(path, &st), 0);
    /* some 15,000 pages of 1 KiB were committed: without restarts the WAL would be ~15 MB;
     * restarted past 1 MiB, and by the writer itself past three times that at the latest */
    assert_true(st.st_size < 6 * 1024 * 1024);
    struct gw_org o;
    assert_int_equal(gw_store_org_get(f->s, "org-4999", &o), 0);
}

static int page_size_of(const char *file)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n = -1;
    assert_int_equal(sqlite3_open_v2(file, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static int turn_len(void *arg, const struct gw_conv_turn *t)
{
    *(size_t *)arg = t->message_len;
    return 0;
}

/* A new database gets 1 KiB pages (fewer bytes written per request); one made before, with
 * SQLite's 4 KiB, keeps them and works as it did, its rows and large values included. */
static void sqlite_page_size_new_and_old(void **state)
{
    struct fx *f = *state;
    assert_int_equal(page_size_of(f->url + 7), 1024);

    char file[600], url[620];
    snprintf(file, sizeof(file), "%s/old.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(file, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; "
                                      "CREATE TABLE t(x);", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    snprintf(url, sizeof(url), "sqlite:%s", file);
    struct gw_store *s = NULL;
    struct gw_errbuf eb = {{0}};
    assert_int_equal(gw_store_open(url, &s, &eb), 0);
    assert_int_equal(gw_store_migrate(s, &eb), 0);
    assert_int_equal(gw_store_writer_mode(s), 0);
    /* a value of many pages: a conversation turn of 300 KiB */
    size_t big = 300u << 10;
    char *msg = malloc(big + 64);
    assert_non_null(msg);
    int off = snprintf(msg, 64, "{\"role\":\"user\",\"content\":\"");
    memset(msg + off, 'q', big);
    strcpy(msg + off + big, "\"}");
    struct gw_conv_turn t;
    memset(&t, 0, sizeof(t));
    gw_strlcpy(t.role, "user", sizeof(t.role));
    t.message = msg;
    struct gw_conv c;
    memset(&c, 0, sizeof(c));
    struct gw_conv_append a = {.org_id = 1, .owner = "key:k", .conv_id = "big", .ref = "cv_big",
                               .title = "big", .turns = &t, .n = 1, .now_ms = gw_now_ms()};
    assert_int_equal(gw_store_conv_append(s, &a, &c), 0);
    size_t got = 0;
    assert_int_equal(gw_store_conv_turns(s, c.id, 0, 0, turn_len, &got), 0);
    assert_int_equal(got, strlen(msg));
    gw_conv_cleanup(&c);
    gw_store_free(s);
    assert_int_equal(page_size_of(file), 4096);
    free(msg);
}

/* ---- conversations and the audit trail ---- */

/* Append to (org, owner, conv_id) turns of role/message pairs (NULL-ended), at now. */
static int conv_add(struct gw_store *s, int64_t org, const char *owner, const char *conv_id,
                    const char *ref, const char *title, int64_t now, const char *request_id,
                    struct gw_conv *out, ...)
{
    struct gw_conv_turn t[8];
    va_list ap;
    int n = 0;
    memset(t, 0, sizeof(t));
    va_start(ap, out);
    for (const char *role; n < 8 && (role = va_arg(ap, const char *)) != NULL; n++) {
        gw_strlcpy(t[n].role, role, sizeof(t[n].role));
        t[n].message = va_arg(ap, char *);
        t[n].message_len = strlen(t[n].message);
        gw_strlcpy(t[n].request_id, request_id ? request_id : "", sizeof(t[n].request_id));
        if (strcmp(role, "assistant") == 0)
            gw_strlcpy(t[n].model, "gpt-4o", sizeof(t[n].model));
        t[n].tokens = 10 + n;
    }
    va_end(ap);
    struct gw_conv_append a = {.org_id = org, .owner = owner, .conv_id = conv_id, .ref = ref,
                               .title = title, .turns = t, .n = n, .now_ms = now};
    return gw_store_conv_append(s, &a, out);
}

/* The turns of a conversation as "seq:role:message;" (after after_seq, at most limit). */
struct turns_seen {
    char text[1024];
    int64_t seqs[256];
    int n;
};

static int see_turn(void *arg, const struct gw_conv_turn *t)
{
    struct turns_seen *ts = arg;
    char one[256];
    snprintf(one, sizeof(one), "%lld:%s:%.*s;", (long long)t->seq, t->role, (int)t->message_len,
             t->message);
    strncat(ts->text, one, sizeof(ts->text) - strlen(ts->text) - 1);
    if (ts->n < 256)
        ts->seqs[ts->n] = t->seq;
    ts->n++;
    return 0;
}

static int turn_len_of(void *arg, const struct gw_conv_turn *t)
{
    *(size_t *)arg = t->message_len;
    return 0;
}

static void conv_policy_of_orgs_and_keys(void **state)
{
    struct fx *f = *state;
    struct gw_org o;
    struct gw_key_rec k = {0}, root = {0}, got;
    unsigned char h1[32], h2[32];
    int64_t org = 0;
    assert_int_equal(gw_store_org_create(f->s, "acme", "Acme", &org), 0);
    assert_int_equal(gw_store_org_get(f->s, "acme", &o), 0);
    assert_int_equal(o.conv.capture, 1); /* the defaults */
    assert_int_equal(o.conv.retention_days, 0);
    assert_int_equal(o.conv.export_all, 0);
    gw_sha256(h1, "key-one", 7);
    strcpy(k.key_id, "key_aaaa");
    strcpy(k.role, "member");
    strcpy(k.tier, "pro");
    k.org_id = org;
    assert_int_equal(gw_store_key_insert(f->s, &k, h1), 0);
    assert_int_equal(gw_store_key_get(f->s, "key_aaaa", &got), 0);
    assert_int_equal(got.org_conv.capture, 1);
    assert_int_equal(got.org_conv.retention_days, 0);
    assert_int_equal(got.org_conv.export_all, 0);

    o.conv.capture = 0;
    o.conv.retention_days = 30;
    o.conv.export_all = 1;
    assert_int_equal(gw_store_org_set_policy(f->s, &o), 0);
    memset(&o, 0, sizeof(o));
    assert_int_equal(gw_store_org_get(f->s, "acme", &o), 0);
    assert_int_equal(o.conv.capture, 0);
    assert_int_equal(o.conv.retention_days, 30);
    assert_int_equal(o.conv.export_all, 1);
    assert_int_equal(gw_store_key_by_hash(f->s, h1, &got), 0); /* by hash (cached) too */
    assert_int_equal(got.org_conv.capture, 0);
    assert_int_equal(got.org_conv.retention_days, 30);
    assert_int_equal(got.org_conv.export_all, 1);
    o.conv.retention_days = -1;
    assert_int_equal(gw_store_org_set_policy(f->s, &o), GW_EINVAL);

    /* the superadmin has no org: capture on, nothing else */
    gw_sha256(h2, "root", 4);
    strcpy(root.key_id, "key_root");
    strcpy(root.role, "superadmin");
    strcpy(root.tier, "enterprise");
    assert_int_equal(gw_store_key_insert(f->s, &root, h2), 0);
    assert_int_equal(gw_store_key_by_hash(f->s, h2, &got), 0);
    assert_int_equal(got.org_conv.capture, 1);
    assert_int_equal(got.org_conv.retention_days, 0);
    assert_int_equal(got.org_conv.export_all, 0);
}

/* Appends of 4 turns (PostgreSQL: the most one statement takes) and of 5 (the statement per
 * turn): numbered on from each other. */
static void conv_append_many_turns(void **state)
{
    struct fx *f = *state;
    struct gw_conv c;
    struct turns_seen ts = {.n = 0};
    const char *A = "key:key_aaaa";
    assert_int_equal(conv_add(f->s, 1, A, "many", "cv_000000000000000000000009", "Many", 1000, "",
                              &c, "user", "{\"n\":1}", "assistant", "{\"n\":2}", "user",
                              "{\"n\":3}", "assistant", "{\"n\":4}", NULL),
                     0);
    assert_int_equal(c.turns, 4);
    int64_t id = c.id;
    gw_conv_cleanup(&c);
    assert_int_equal(conv_add(f->s, 1, A, "many", "cv_000000000000000000000010", "", 2000, "",
                              &c, "user", "{\"n\":5}", "assistant", "{\"n\":6}", "user",
                              "{\"n\":7}", "assistant", "{\"n\":8}", "user", "{\"n\":9}", NULL),
                     0);
    assert_int_equal(c.id, id);
    assert_int_equal(c.turns, 9);
    gw_conv_cleanup(&c);
    assert_int_equal(gw_store_conv_turns(f->s, id, 0, 0, see_turn, &ts), 0);
    assert_string_equal(ts.text, "1:user:{\"n\":1};2:assistant:{\"n\":2};3:user:{\"n\":3};"
                                 "4:assistant:{\"n\":4};5:user:{\"n\":5};6:assistant:{\"n\":6};"
                                 "7:user:{\"n\":7};8:assistant:{\"n\":8};9:user:{\"n\":9};");
}

/* Appends as plain writes, together: each conversation gets its turns in the order they came
 * (a second append to one in the same batch, and ones the batch cannot take as they are: no
 * title, a length left to the store, after the first), text that needs quoting in an array comes back as it went, and the usage writes
 * among them are written too. */
static void conv_appends_together(void **state)
{
    struct fx *f = *state;
    struct gw_conv c;
    const char *A = "key:key_aaaa";
    assert_int_equal(conv_add(f->s, 1, A, "old", "cv_000000000000000000000100", "Old", 1000, "",
                              &c, "user", "{\"o\":1}", "assistant", "{\"o\":2}", NULL),
                     0);
    int64_t old_id = c.id;
    gw_conv_cleanup(&c);
    enum { N = 5 };
    struct gw_conv_turn t[N][6];
    struct gw_conv_append a[N];
    struct gw_store_write w[N + 1], *wp[N + 1];
    static const char *const conv_ids[N] = {"n1", "old", "n2", "n1", "n3"};
    static const int turns[N] = {2, 1, 6, 1, 1};
    static const char *const msg[N] = {"{\"t\":\"a \\\"q\\\" \\\\ \\u00e9 {x,y}\"}", "{\"o\":3}",
                                       "{\"m\":%d}", "{\"n1\":3}", "{\"n3\":%d}"};
    char text[N][6][64], refs[N][40];
    memset(t, 0, sizeof(t));
    for (int k = 0; k < N; k++) {
        for (int i = 0; i < turns[k]; i++) {
            snprintf(text[k][i], sizeof(text[k][i]), msg[k], i + 1);
            gw_strlcpy(t[k][i].role, i % 2 ? "assistant" : "user", sizeof(t[k][i].role));
            t[k][i].message = text[k][i];
            /* the last one leaves its length to the store: not for a batch as it is */
            t[k][i].message_len = k == N - 1 ? 0 : strlen(text[k][i]);
            snprintf(t[k][i].request_id, sizeof(t[k][i].request_id), "req_%d", k);
            t[k][i].tokens = 7;
        }
        char *ref = refs[k];
        snprintf(ref, sizeof(refs[k]), "cv_0000000000000000000002%02d", k);
        a[k] = (struct gw_conv_append){.org_id = 1, .owner = A, .conv_id = conv_ids[k],
                                       .ref = ref, .title = k == 2 ? NULL : "T", .turns = t[k],
                                       .n = turns[k], .now_ms = 2000 + k};
        w[k] = (struct gw_store_write){.conv = &a[k]};
        wp[k] = &w[k];
    }
    struct gw_usage_row row = reserved_row("with_appends", 2000);
    row.key_row_id = 7;
    w[N] = (struct gw_store_write){.row = &row, .d = {.key_id = 7, .second = 2, .requests = 1}};
    wp[N] = &w[N];
    int failed = 0;
    gw_log_set_handler(count_batch_failures, &failed, GW_LOG_LVL_WARN);
    gw_store_write_many(f->s, wp, N + 1);
    gw_log_set_handler(NULL, NULL, GW_LOG_LVL_ERROR);
    assert_int_equal(failed, 0);
    for (int k = 0; k <= N; k++)
        assert_int_equal(w[k].rc, 0);
    struct gw_usage_row got;
    assert_int_equal(gw_store_usage_get(f->s, "with_appends", &got), 0);
    static const char *const want[] = {
        "1:user:{\"t\":\"a \\\"q\\\" \\\\ \\u00e9 {x,y}\"};2:assistant:{\"t\":\"a \\\"q\\\" \\\\ "
        "\\u00e9 {x,y}\"};3:user:{\"n1\":3};",
        "1:user:{\"o\":1};2:assistant:{\"o\":2};3:user:{\"o\":3};",
        "1:user:{\"m\":1};2:assistant:{\"m\":2};3:user:{\"m\":3};4:assistant:{\"m\":4};"
        "5:user:{\"m\":5};6:assistant:{\"m\":6};",
        "1:user:{\"n3\":1};",
    };
    static const char *const ids[] = {"n1", "old", "n2", "n3"};
    for (int k = 0; k < 4; k++) {
        struct turns_seen ts = {.n = 0};
        assert_int_equal(gw_store_conv_get(f->s, 1, A, ids[k], &c), 0);
        if (k == 1)
            assert_int_equal(c.id, old_id);
        assert_string_equal(c.title, k == 1 ? "Old" : k == 2 ? "" : "T");
        assert_int_equal(gw_store_conv_turns(f->s, c.id, 0, 0, see_turn, &ts), 0);
        assert_int_equal(c.turns, ts.n);
        gw_conv_cleanup(&c);
        assert_string_equal(ts.text, want[k]);
    }
}

static void conv_append_creates_then_extends(void **state)
{
    struct fx *f = *state;
    struct gw_conv c, g;
    struct turns_seen ts = {.n = 0};
    const char *A = "key:key_aaaa", *B = "key:key_bbbb";

    assert_int_equal(gw_store_conv_get(f->s, 1, A, "c1", &g), GW_ENOTFOUND);
    assert_int_equal(conv_add(f->s, 1, A, "c1", "cv_000000000000000000000001", "Hello there", 1000,
                              "req_1", &c, "user", "{\"role\":\"user\",\"content\":\"hi\"}",
                              "assistant", "{\"role\":\"assistant\",\"content\":\"hello\"}", NULL),
                     0);
    assert_true(c.id > 0);
    assert_int_equal(c.turns, 2);
    assert_string_equal(c.ref, "cv_000000000000000000000001");
    assert_string_equal(c.title, "Hello there");
    assert_string_equal(c.owner, A);
    assert_string_equal(c.conv_id, "c1");
    assert_int_equal(c.org_id, 1);
    assert_int_equal(c.shared, 0);
    assert_string_equal(c.summary, "");
    assert_int_equal(c.created_ms, 1000);
    assert_int_equal(c.updated_ms, 1000);
    int64_t id = c.id;
    gw_conv_cleanup(&c);
    assert_null(c.summary);

    /* extended: numbered on; the first append's ref and title stay */
    assert_int_equal(conv_add(f->s, 1, A, "c1", "cv_000000000000000000000002", "Other", 2000,
                              "req_2", &c, "user", "{\"u\":2}", "assistant", "{\"a\":2}", "user",
                              "{\"u\":3}", NULL),
                     0);
    assert_int_equal(c.id, id);
    assert_int_equal(c.turns, 5);
    assert_string_equal(c.ref, "cv_000000000000000000000001");
    assert_string_equal(c.title, "Hello there");
    assert_int_equal(c.created_ms, 1000);
    assert_int_equal(c.updated_ms, 2000);
    gw_conv_cleanup(&c);
    assert_int_equal(gw_store_conv_get(f->s, 1, A, "c1", &g), 0);
    assert_int_equal(g.id, id);
    assert_int_equal(g.turns, 5);
    gw_conv_cleanup(&g);
    assert_int_equal(gw_store_conv_turns(f->s, id, 0, 0, see_turn, &ts), 0);
    assert_string_equal(ts.text, "1:user:{\"role\":\"user\",\"content\":\"hi\"};"
                                 "2:assistant:{\"role\":\"assistant\",\"content\":\"hello\"};"
                                 "3:user:{\"u\":2};4:assistant:{\"a\":2};5:user:{\"u\":3};");
    memset(&ts, 0, sizeof(ts));
    assert_int_equal(gw_store_conv_turns(f->s, id, 2, 2, see_turn, &ts), 0);
    assert_string_equal(ts.text, "3:user:{\"u\":2};4:assistant:{\"a\":2};");

    /* the same conv_id of another owner, and of another org: conversations of their own */
    assert_int_equal(conv_add(f->s, 1, B, "c1", "cv_000000000000000000000003", "B's", 3000, "",
                              &c, "user", "{\"b\":1}", NULL),
                     0);
    assert_true(c.id != id);
    assert_int_equal(c.turns, 1);
    int64_t bid = c.id;
    gw_conv_cleanup(&c);
    assert_int_equal(conv_add(f->s, 2, A, "c1", "cv_000000000000000000000004", "org 2", 3000, "",
                              NULL, "user", "{\"o\":2}", NULL),
                     0);
    assert_int_equal(gw_store_conv_get(f->s, 2, A, "c1", &g), 0);
    assert_true(g.id != id && g.id != bid);
    assert_int_equal(g.turns, 1);
    gw_conv_cleanup(&g);
    assert_int_equal(gw_store_conv_get(f->s, 1, A, "c1", &g), 0);
    assert_int_equal(g.turns, 5);
    gw_conv_cleanup(&g);
    memset(&ts, 0, sizeof(ts));
    assert_int_equal(gw_store_conv_turns(f->s, bid, 0, 0, see_turn, &ts), 0);
    assert_string_equal(ts.text, "1:user:{\"b\":1};");

    /* a ref taken by another conversation */
    assert_int_equal(conv_add(f->s, 1, A, "c2", "cv_000000000000000000000001", "dup", 3000, "",
                              NULL, "user", "{}", NULL),
                     GW_EEXIST);
    /* inside the caller's transaction: undone with it */
    assert_int_equal(gw_store_tx_begin(f->s), 0);
    assert_int_equal(conv_add(f->s, 1, A, "c3", "cv_000000000000000000000005", "tx", 3000, "",
                              NULL, "user", "{}", NULL),
                     0);
    assert_true(gw_store_in_tx(f->s));
    gw_store_tx_rollback(f->s);
    assert_int_equal(gw_store_conv_get(f->s, 1, A, "c3", &g), GW_ENOTFOUND);

    /* bounds: a message over 1 MiB, a missing role, an owner too long */
    char *big = malloc((1u << 20) + 2);
    memset(big, 'x', (1u << 20) + 1);
    big[(1u << 20) + 1] = '\0';
    assert_int_equal(conv_add(f->s, 1, A, "c4", "cv_000000000000000000000006", "big", 3000, "",
                              NULL, "user", big, NULL),
                     GW_ETOOBIG);
    big[1u << 20] = '\0'; /* exactly 1 MiB: fine */
    assert_int_equal(conv_add(f->s, 1, A, "c4", "cv_000000000000000000000006", "big", 3000, "",
                              NULL, "user", big, NULL),
                     0);
    assert_int_equal(gw_store_conv_get(f->s, 1, A, "c4", &g), 0);
    size_t big_len = 0;
    assert_int_equal(gw_store_conv_turns(f->s, g.id, 0, 0, turn_len_of, &big_len), 0);
    assert_int_equal(big_len, 1u << 20);
    gw_conv_cleanup(&g);
    free(big);
    assert_int_equal(conv_add(f->s, 1, A, "c5", "cv_000000000000000000000007", "t", 3000, "",
                              NULL, "", "{}", NULL),
                     GW_EINVAL);
    char owner[GW_CONV_OWNER_MAX + 1];
    memset(owner, 'o', GW_CONV_OWNER_MAX);
    owner[GW_CONV_OWNER_MAX] = '\0';
    assert_int_equal(conv_add(f->s, 1, owner, "c5", "cv_000000000000000000000007", "t", 3000, "",
                              NULL, "user", "{}", NULL),
                     GW_EINVAL);
    /* a title too long is cut, at a character's boundary */
    char title[400] = "";
    for (int i = 0; i < 150; i++)
        strcat(title, "\xc3\xa9"); /* é */
    assert_int_equal(conv_add(f->s, 1, A, "c6", "cv_000000000000000000000008", title, 3000, "",
                              &c, "user", "{}", NULL),
                     0);
    assert_int_equal(strlen(c.title), 126);
    assert_memory_equal(c.title, title, 126);
    gw_conv_cleanup(&c);
}

/* Conversations a list hands over, as "conv_id," */
struct convs_seen {
    char ids[512];
    int n;
    int64_t last_ms, last_id;
    char summaries[256];
};

static int see_conv(void *arg, const struct gw_conv *c)
{
    struct convs_seen *cs = arg;
    strncat(cs->ids, c->conv_id, sizeof(cs->ids) - strlen(cs->ids) - 2);
    strcat(cs->ids, ",");
    if (c->summary != NULL && c->summary[0] != '\0') {
        strncat(cs->summaries, c->summary, sizeof(cs->summaries) - strlen(cs->summaries) - 2);
        strcat(cs->summaries, ",");
    }
    cs->n++;
    cs->last_ms = c->updated_ms;
    cs->last_id = c->id;
    return 0;
}

static void conv_shared_only_in_its_org(void **state)
{
    struct fx *f = *state;
    struct gw_conv c, g;
    const char *ref = "cv_00000000000000000000000a";
    assert_int_equal(conv_add(f->s, 1, "key:key_a", "c1", ref, "t", 1000, "", &c, "user", "{}",
                              NULL),
                     0);
    gw_conv_cleanup(&c);
    assert_int_equal(gw_store_conv_get_shared(f->s, 1, ref, &g), GW_ENOTFOUND); /* private */
    assert_int_equal(gw_store_conv_set_shared(f->s, 1, "key:key_a", "c1", 1), 0);
    assert_int_equal(gw_store_conv_get_shared(f->s, 1, ref, &g), 0);
    assert_string_equal(g.conv_id, "c1");
    assert_int_equal(g.shared, 1);
    gw_conv_cleanup(&g);
    assert_int_equal(gw_store_conv_get_shared(f->s, 2, ref, &g), GW_ENOTFOUND); /* other org */
    assert_int_equal(gw_store_conv_set_shared(f->s, 1, "key:key_a", "c1", 1), 0); /* again */
    assert_int_equal(gw_store_conv_set_shared(f->s, 1, "key:key_b", "c1", 1), GW_ENOTFOUND);
    assert_int_equal(gw_store_conv_set_shared(f->s, 2, "key:key_a", "c1", 1), GW_ENOTFOUND);
    assert_int_equal(gw_store_conv_set_shared(f->s, 1, "key:key_a", "c1", 0), 0);
    assert_int_equal(gw_store_conv_get_shared(f->s, 1, ref, &g), GW_ENOTFOUND);
}

static void conv_list_newest_first_with_filters(void **state)
{
    struct fx *f = *state;
    const char *A = "key:key_a", *B = "subject:ac_1:user-1";
    struct {
        const char *owner, *id, *title, *msg;
        int64_t t;
    } rows[] = {
        {A, "a1", "first", "{\"content\":\"plain\"}", 1000},
        {A, "a2", "50% off", "{\"content\":\"plain\"}", 2000},
        {A, "a3", "500 off", "{\"content\":\"A Zebra crossing\"}", 3000},
        {A, "a4", "a_c", "{\"content\":\"plain\"}", 3000}, /* same time: the row id orders */
        {A, "a5", "abc", "{\"content\":\"back\\\\slash\"}", 4000},
        {B, "b1", "bee", "{\"content\":\"zebra\"}", 2500},
        {B, "b2", "bee 2", "{\"content\":\"plain\"}", 5000},
    };
    char ref[40];
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        snprintf(ref, sizeof(ref), "cv_%024zu", i + 1);
        assert_int_equal(conv_add(f->s, 1, rows[i].owner, rows[i].id, ref, rows[i].title,
                                  rows[i].t, "", NULL, "user", rows[i].msg, NULL),
                         0);
    }
    assert_int_equal(conv_add(f->s, 2, A, "x1", "cv_x1", "other org", 9000, "", NULL, "user",
                              "{\"content\":\"zebra\"}", NULL),
                     0);

    /* the owner's, newest first, two at a time */
    struct gw_conv_filter fl = {.org_id = 1, .owner = A, .limit = 2};
    struct convs_seen cs = {.n = 0};
    const char *pages[] = {"a5,a4,", "a3,a2,", "a1,", ""};
    for (int p = 0; p < 4; p++) {
        memset(&cs, 0, sizeof(cs));
        assert_int_equal(gw_store_conv_list(f->s, &fl, see_conv, &cs), 0);
        assert_string_equal(cs.ids, pages[p]);
        fl.before_ms = cs.last_ms;
        fl.before_id = cs.last_id;
    }
    /* the org's, every owner */
    struct gw_conv_filter all = {.org_id = 1, .limit = 100};
    memset(&cs, 0, sizeof(cs));
    assert_int_equal(gw_store_conv_list(f->s, &all, see_conv, &cs), 0);
    assert_string_equal(cs.ids, "b2,a5,a4,a3,b1,a2,a1,");
    all.limit = 3;
    memset(&cs, 0, sizeof(cs));
    assert_int_equal(gw_store_conv_list(f->s, &all, see_conv, &cs), 0);
    assert_string_equal(cs.ids, "b2,a5,a4,");
    all.before_ms = cs.last_ms;
    all.before_id = cs.last_id;
    memset(&cs, 0, sizeof(cs));
    assert_int_equal(gw_store_conv_list(f->s, &all, see_conv, &cs), 0);
    assert_string_equal(cs.ids, "a3,b1,a2,");

    /* shared ones */
    assert_int_equal(gw_store_conv_set_shared(f->s, 1, A, "a2", 1), 0);
    assert_int_equal(gw_store_conv_set_shared(f->s, 1, B, "b1", 1), 0);
    struct gw_conv_filter sh = {.org_id = 1, .shared_only = 1, .limit = 100};
    memset(&cs, 0, sizeof(cs));
    assert_int_equal(gw_store_conv_list(f->s, &sh, see_conv, &cs), 0);
    assert_string_equal(cs.ids, "b1,a2,");
    sh.owner = A;
    memset(&cs, 0, sizeof(cs));
    assert_int_equal(gw_store_conv_list(f->s, &sh, see_conv, &cs), 0);
    assert_string_equal(cs.ids, "a2,");
    sh.org_id = 2;
    memset(&cs, 0, sizeof(cs));
    assert_int_equal(gw_store_conv_list(f->s, &sh, see_conv, &cs), 0);
    assert_string_equal(cs.ids, "");

    /* q: in a turn's text or the title, ASCII case aside; %, _ and \ are themselves */
    struct {
        const char *owner, *q, *want;
    } qs[] = {
        {NULL, "ZEBRA", "a3,b1,"}, {A, "zebra", "a3,"},  {NULL, "50%", "a2,"},
        {NULL, "a_c", "a4,"},      {NULL, "bee", "b2,b1,"}, {NULL, "\\", "a5,"},
        {NULL, "%", "a2,"},        {NULL, "nothing", ""}, {NULL, "", "b2,a5,a4,a3,b1,a2,a1,"},
    };
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        struct gw_conv_filter fq = {.org_id = 1, .owner = qs[i].owner, .q = qs[i].q, .limit = 100};
        memset(&cs, 0, sizeof(cs));
        assert_int_equal(gw_store_conv_list(f->s, &fq, see_conv, &cs), 0);
        if (strcmp(cs.ids, qs[i].want) != 0)
            fail_msg("q \"%s\": got \"%s\", want \"%s\"", qs[i].q, cs.ids, qs[i].want);
    }
    struct gw_conv_filter bad = {.org_id = 1, .limit = -1};
    assert_int_equal(gw_store_conv_list(f->s, &bad, see_conv, &cs), GW_EINVAL);
}

static void conv_summary_only_moves_forward(void **state)
{
    struct fx *f = *state;
    struct gw_conv c, g;
    assert_int_equal(conv_add(f->s, 1, "key:key_a", "c1", "cv_s1", "t", 1000, "", &c, "user",
                              "{}", "assistant", "{}", "user", "{}", "assistant", "{}", NULL),
                     0);
    assert_int_equal(gw_store_conv_set_summary(f->s, c.id, "upto two", 2), 0);
    assert_int_equal(gw_store_conv_get(f->s, 1, "key:key_a", "c1", &g), 0);
    assert_string_equal(g.summary, "upto two");
    assert_int_equal(g.summary_upto, 2);
    gw_conv_cleanup(&g);
    assert_int_equal(gw_store_conv_set_summary(f->s, c.id, "upto one", 1), 0); /* older: kept */
    assert_int_equal(gw_store_conv_set_summary(f->s, c.id, "two again", 2), 0);
    assert_int_equal(gw_store_conv_get(f->s, 1, "key:key_a", "c1", &g), 0);
    assert_string_equal(g.summary, "upto two");
    gw_conv_cleanup(&g);
    assert_int_equal(gw_store_conv_set_summary(f->s, c.id, "upto four", 4), 0);
    assert_int_equal(gw_store_conv_get(f->s, 1, "key:key_a", "c1", &g), 0);
    assert_string_equal(g.summary, "upto four");
    assert_int_equal(g.summary_upto, 4);
    assert_int_equal(g.updated_ms, 1000); /* a summary is not a change of the conversation */
    gw_conv_cleanup(&g);
    char *big = malloc((64u << 10) + 2);
    memset(big, 's', (64u << 10) + 1);
    big[(64u << 10) + 1] = '\0';
    assert_int_equal(gw_store_conv_set_summary(f->s, c.id, big, 5), GW_ETOOBIG);
    free(big);
    gw_conv_cleanup(&c);
}

/* Does the file hold the bytes? (a missing file holds nothing) */
static int file_has(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return 0;
    size_t cap = 1 << 20, n = 0, got;
    char *buf = malloc(cap);
    while ((got = fread(buf + n, 1, cap - n, fp)) > 0) {
        n += got;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(fp);
    int found = memmem(buf, n, needle, strlen(needle)) != NULL;
    free(buf);
    return found;
}

static int sqlite_files_have(const struct fx *f, const char *needle)
{
    char path[600];
    snprintf(path, sizeof(path), "%s", f->url + 7);
    if (file_has(path, needle))
        return 1;
    snprintf(path, sizeof(path), "%s-wal", f->url + 7);
    return file_has(path, needle);
}

static void conv_delete_leaves_nothing(void **state)
{
    struct fx *f = *state;
    const char *marker = "MARKER-7f3a9c-secret-words";
    char msg[256], answer[256];
    struct gw_conv c, g;
    snprintf(msg, sizeof(msg), "{\"role\":\"user\",\"content\":\"%s\"}", marker);
    snprintf(answer, sizeof(answer), "{\"role\":\"assistant\",\"content\":\"re %s\"}", marker);
    int64_t t0 = 1764547200000;
    /* a conversation whose turns two requests added; another that stays */
    assert_int_equal(conv_add(f->s, 1, "key:key_a", "doomed", "cv_d1", marker, t0, "req_del_1",
                              &c, "user", msg, "assistant", answer, NULL),
                     0);
    int64_t id = c.id;
    gw_conv_cleanup(&c);
    assert_int_equal(conv_add(f->s, 1, "key:key_a", "doomed", "cv_d1", "", t0 + 1, "req_del_2",
                              NULL, "user", msg, NULL),
                     0);
    assert_int_equal(gw_store_conv_set_summary(f->s, id, marker, 2), 0);
    assert_int_equal(conv_add(f->s, 1, "key:key_a", "kept", "cv_k1", "kept", t0, "req_keep",
                              NULL, "user", "{\"content\":\"kept\"}", NULL),
                     0);
    /* the requests' idempotency records (their answers) and usage rows */
    const char *reqs[] = {"req_del_1", "req_keep"};
    for (int i = 0; i < 2; i++) {
        struct gw_idem_rec r = {0}, e;
        int claimed = -1;
        gw_strlcpy(r.caller, "key:7", sizeof(r.caller));
        gw_strlcpy(r.endpoint, "chat.completions", sizeof(r.endpoint));
        snprintf(r.key, sizeof(r.key), "k-%d", i);
        gw_strlcpy(r.fingerprint, "aa", sizeof(r.fingerprint));
        gw_strlcpy(r.request_id, reqs[i], sizeof(r.request_id));
        r.created_ms = t0;
        r.expires_ms = t0 + 86400000;
        assert_int_equal(gw_store_idem_claim(f->s, &r, t0, &claimed, &e), 0);
        assert_int_equal(claimed, 1);
        gw_strlcpy(r.state, "done", sizeof(r.state));
        r.status = 200;
        r.body = i == 0 ? answer : "{\"kept\":1}"; /* the kept one holds no marker */
        r.body_len = strlen(r.body);
        r.completed_ms = t0;
        assert_int_equal(gw_store_idem_complete(f->s, &r), 0);
        struct gw_usage_row u = reserved_row(reqs[i], t0);
        strcpy(u.state, "settled");
        assert_int_equal(gw_store_usage_reserve(f->s, &u), 0);
    }
    int is_sqlite = strcmp(gw_store_backend(f->s), "sqlite") == 0;
    if (is_sqlite)
        assert_true(sqlite_files_have(f, marker)); /* the check below can see it */

    assert_int_equal(gw_store_conv_delete(f->s, 1, "key:key_b", "doomed"), GW_ENOTFOUND);
    assert_int_equal(gw_store_conv_delete(f->s, 2, "key:key_a", "doomed"), GW_ENOTFOUND);
    assert_int_equal(gw_store_conv_delete(f->s, 1, "key:key_a", "doomed"), 0);
    assert_int_equal(gw_store_conv_get(f->s, 1, "key:key_a", "doomed", &g), GW_ENOTFOUND);
    assert_int_equal(gw_store_conv_delete(f->s, 1, "key:key_a", "doomed"), GW_ENOTFOUND);
    struct turns_seen ts = {.n = 0};
    assert_int_equal(gw_store_conv_turns(f->s, id, 0, 0, see_turn, &ts), 0);
    assert_int_equal(ts.n, 0);
    /* the deleted one's idempotency record is gone (a new claim succeeds), the other stays */
    for (int i = 0; i < 2; i++) {
        struct gw_idem_rec r = {0}, e;
        int claimed = -1;
        gw_strlcpy(r.caller, "key:7", sizeof(r.caller));
        gw_strlcpy(r.endpoint, "chat.completions", sizeof(r.endpoint));
        snprintf(r.key, sizeof(r.key), "k-%d", i);
        gw_strlcpy(r.request_id, "req_new", sizeof(r.request_id));
        r.created_ms = t0 + 10;
        r.expires_ms = t0 + 86400000;
        assert_int_equal(gw_store_idem_claim(f->s, &r, t0 + 10, &claimed, &e), 0);
        assert_int_equal(claimed, i == 0);
        if (!claimed) {
            assert_string_equal(e.request_id, "req_keep");
            gw_idem_rec_cleanup(&e);
        }
    }
    /* usage rows stay; so does the other conversation */
    struct gw_usage_row u;
    assert_int_equal(gw_store_usage_get(f->s, "req_del_1", &u), 0);
    assert_int_equal(gw_store_conv_get(f->s, 1, "key:key_a", "kept", &g), 0);
    gw_conv_cleanup(&g);
    /* nothing of it is left in the files: not in the database, not in the WAL */
    if (is_sqlite)
        assert_false(sqlite_files_have(f, marker));
}

/* A reader on another connection holds the WAL: the deletion still succeeds (the WAL is
 * emptied by a later checkpoint). */
struct delete_in_cb {
    struct gw_store *s;
    int rc, calls;
};

static int delete_while_listing(void *arg, const struct gw_conv *c)
{
    struct delete_in_cb *d = arg;
    (void)c;
    if (d->calls++ == 0)
        d->rc = gw_store_conv_delete(d->s, 1, "key:key_a", "gone");
    return 0;
}

static void conv_delete_while_another_reads(void **state)
{
    struct fx *f = *state;
    struct gw_store *reader = NULL;
    struct gw_conv g;
    assert_int_equal(conv_add(f->s, 1, "key:key_a", "gone", "cv_g1", "t", 1000, "", NULL, "user",
                              "{}", NULL),
                     0);
    assert_int_equal(conv_add(f->s, 1, "key:key_a", "stays", "cv_g2", "t", 2000, "", NULL,
                              "user", "{}", NULL),
                     0);
    assert_int_equal(gw_store_open(f->url, &reader, NULL), 0);
    struct delete_in_cb d = {.s = f->s, .rc = -1};
    struct gw_conv_filter fl = {.org_id = 1, .limit = 10};
    assert_int_equal(gw_store_conv_list(reader, &fl, delete_while_listing, &d), 0);
    assert_int_equal(d.rc, 0);
    assert_int_equal(d.calls, 2); /* the reader's snapshot still had it */
    gw_store_free(reader);
    assert_int_equal(gw_store_conv_get(f->s, 1, "key:key_a", "gone", &g), GW_ENOTFOUND);
    assert_int_equal(gw_store_conv_get(f->s, 1, "key:key_a", "stays", &g), 0);
    gw_conv_cleanup(&g);
}

static void conv_export_by_time_and_sharing(void **state)
{
    struct fx *f = *state;
    struct gw_conv c;
    const char *ids[] = {"e1", "e2", "e3", "e4"};
    const int64_t ts[] = {1000, 2000, 3000, 4000};
    char ref[40];
    for (int i = 0; i < 4; i++) {
        snprintf(ref, sizeof(ref), "cv_e%d", i);
        assert_int_equal(conv_add(f->s, 1, "key:key_a", ids[i], ref, "t", ts[i], "", &c, "user",
                                  "{}", NULL),
                         0);
        char sum[16];
        snprintf(sum, sizeof(sum), "s%d", i + 1);
        assert_int_equal(gw_store_conv_set_summary(f->s, c.id, sum, 1), 0);
        gw_conv_cleanup(&c);
    }
    assert_int_equal(conv_add(f->s, 2, "key:key_a", "other", "cv_eo", "t", 2500, "", NULL,
                              "user", "{}", NULL),
                     0);
    assert_int_equal(gw_store_conv_set_shared(f->s, 1, "key:key_a", "e3", 1), 0);
    struct convs_seen cs = {.n = 0};
    assert_int_equal(gw_store_conv_export(f->s, 1, 0, 1500, 4000, 0, 100, see_conv, &cs), 0);
    assert_string_equal(cs.ids, "e2,e3,"); /* [from, to), row id order */
    assert_string_equal(cs.summaries, "s2,s3,");
    memset(&cs, 0, sizeof(cs));
    assert_int_equal(gw_store_conv_export(f->s, 1, 0, 0, 0, 0, 100, see_conv, &cs), 0);
    assert_string_equal(cs.ids, "e1,e2,e3,e4,"); /* to 0: no end */
    memset(&cs, 0, sizeof(cs));
    assert_int_equal(gw_store_conv_export(f->s, 1, 1, 0, 0, 0, 100, see_conv, &cs), 0);
    assert_string_equal(cs.ids, "e3,");
    /* paged by row id */
    memset(&cs, 0, sizeof(cs));
    assert_int_equal(gw_store_conv_export(f->s, 1, 0, 0, 0, 0, 2, see_conv, &cs), 0);
    assert_string_equal(cs.ids, "e1,e2,");
    int64_t after = cs.last_id;
    memset(&cs, 0, sizeof(cs));
    assert_int_equal(gw_store_conv_export(f->s, 1, 0, 0, 0, after, 2, see_conv, &cs), 0);
    assert_string_equal(cs.ids, "e3,e4,");
}

static void conv_purge_by_retention(void **state)
{
    struct fx *f = *state;
    struct gw_org o;
    int64_t keep_org = 0, short_org = 0, n = -1;
    const int64_t day = 86400000, now = 1764547200000;
    assert_int_equal(gw_store_org_create(f->s, "short", "Short", &short_org), 0);
    assert_int_equal(gw_store_org_create(f->s, "keep", "Keep", &keep_org), 0);
    assert_int_equal(gw_store_org_get(f->s, "short", &o), 0);
    o.conv.retention_days = 1;
    assert_int_equal(gw_store_org_set_policy(f->s, &o), 0);
    assert_int_equal(conv_add(f->s, short_org, "key:a", "old1", "cv_p1", "t", now - 3 * day,
                              "req_p1", NULL, "user", "{}", NULL),
                     0);
    assert_int_equal(conv_add(f->s, short_org, "key:a", "old2", "cv_p2", "t", now - 2 * day, "",
                              NULL, "user", "{}", NULL),
                     0);
    assert_int_equal(conv_add(f->s, short_org, "key:a", "fresh", "cv_p3", "t", now - day / 2, "",
                              NULL, "user", "{}", NULL),
                     0);
    assert_int_equal(conv_add(f->s, keep_org, "key:b", "ancient", "cv_p4", "t", now - 400 * day,
                              "", NULL, "user", "{}", NULL),
                     0);
    /* touched again: kept */
    assert_int_equal(conv_add(f->s, short_org, "key:a", "revived", "cv_p5", "t", now - 5 * day,
                              "", NULL, "user", "{}", NULL),
                     0);
    assert_int_equal(conv_add(f->s, short_org, "key:a", "revived", "cv_p5", "t", now - 1000, "",
                              NULL, "user", "{}", NULL),
                     0);
    assert_int_equal(gw_store_conv_purge(f->s, now, 1, &n), 0);
    assert_int_equal(n, 1); /* the limit */
    assert_int_equal(gw_store_conv_purge(f->s, now, 100, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(gw_store_conv_purge(f->s, now, 100, &n), 0);
    assert_int_equal(n, 0);
    struct gw_conv g;
    assert_int_equal(gw_store_conv_get(f->s, short_org, "key:a", "old1", &g), GW_ENOTFOUND);
    assert_int_equal(gw_store_conv_get(f->s, short_org, "key:a", "old2", &g), GW_ENOTFOUND);
    assert_int_equal(gw_store_conv_get(f->s, short_org, "key:a", "fresh", &g), 0);
    gw_conv_cleanup(&g);
    assert_int_equal(gw_store_conv_get(f->s, short_org, "key:a", "revived", &g), 0);
    assert_int_equal(g.turns, 2);
    gw_conv_cleanup(&g);
    assert_int_equal(gw_store_conv_get(f->s, keep_org, "key:b", "ancient", &g), 0);
    gw_conv_cleanup(&g);
}

struct audit_seen {
    char text[1024];
    int64_t last_id;
};

static int see_audit(void *arg, const struct gw_audit *a)
{
    struct audit_seen *as = arg;
    char one[1200];
    snprintf(one, sizeof(one), "%lld|%s|%s|%s|%s|%s|%s;", (long long)a->org_id, a->actor,
             a->actor_role, a->action, a->target, a->request_id, a->detail);
    strncat(as->text, one, sizeof(as->text) - strlen(as->text) - 1);
    assert_true(a->id > as->last_id);
    assert_true(a->created_ms > 0);
    as->last_id = a->id;
    return 0;
}

static void audit_append_and_list(void **state)
{
    struct fx *f = *state;
    struct gw_audit a = {.org_id = 1, .created_ms = 5000, .detail = "{\"n\":1}"};
    strcpy(a.actor, "key_admin");
    strcpy(a.actor_role, "org_admin");
    strcpy(a.action, "conversations.export");
    strcpy(a.target, "org:acme");
    strcpy(a.request_id, "req_a1");
    assert_int_equal(gw_store_audit_append(f->s, &a), 0);
    int64_t first = a.id;
    assert_true(first > 0);
    assert_int_equal(a.created_ms, 5000);
    struct gw_audit b = a;
    b.id = 0;
    b.org_id = 2;
    b.created_ms = 0;
    b.detail = NULL;
    strcpy(b.action, "conversations.delete");
    assert_int_equal(gw_store_audit_append(f->s, &b), 0);
    assert_true(b.id > first);
    assert_true(b.created_ms > 0); /* filled */
    struct gw_audit c = a;
    c.detail = "";
    strcpy(c.action, "orgs.update");
    assert_int_equal(gw_store_audit_append(f->s, &c), 0);
    struct gw_audit bad = a;
    bad.action[0] = '\0';
    assert_int_equal(gw_store_audit_append(f->s, &bad), GW_EINVAL);

    struct audit_seen as = {.last_id = 0};
    assert_int_equal(gw_store_audit_list(f->s, 1, 0, 100, see_audit, &as), 0);
    assert_string_equal(as.text, "1|key_admin|org_admin|conversations.export|org:acme|req_a1|"
                                 "{\"n\":1};1|key_admin|org_admin|orgs.update|org:acme|req_a1|{};");
    memset(&as, 0, sizeof(as));
    assert_int_equal(gw_store_audit_list(f->s, 0, 0, 100, see_audit, &as), 0);
    assert_string_equal(as.text,
                        "1|key_admin|org_admin|conversations.export|org:acme|req_a1|{\"n\":1};"
                        "2|key_admin|org_admin|conversations.delete|org:acme|req_a1|{};"
                        "1|key_admin|org_admin|orgs.update|org:acme|req_a1|{};");
    memset(&as, 0, sizeof(as));
    assert_int_equal(gw_store_audit_list(f->s, 0, first, 1, see_audit, &as), 0);
    assert_string_equal(as.text, "2|key_admin|org_admin|conversations.delete|org:acme|req_a1|{};");
}

#define APPENDERS 4
#define APPENDS 25

struct appender {
    const char *url;
    pthread_barrier_t *start;
    int id;
    int rc;
};

static void *append_main(void *arg)
{
    struct appender *ap = arg;
    struct gw_store *s = NULL;
    char msg[64];
    ap->rc = gw_store_open(ap->url, &s, NULL);
    pthread_barrier_wait(ap->start);
    for (int i = 0; ap->rc == 0 && i < APPENDS; i++) {
        struct gw_conv_turn t[2] = {{0}};
        snprintf(msg, sizeof(msg), "{\"w\":%d,\"i\":%d}", ap->id, i);
        for (int k = 0; k < 2; k++) {
            strcpy(t[k].role, k == 0 ? "user" : "assistant");
            t[k].message = msg;
            t[k].message_len = strlen(msg);
        }
        struct gw_conv_append a = {.org_id = 1, .owner = "key:key_a", .conv_id = "busy",
                                   .ref = "cv_busy", .title = "busy", .turns = t, .n = 2,
                                   .now_ms = 1000 + i};
        ap->rc = gw_store_conv_append(s, &a, NULL);
    }
    gw_store_free(s);
    return NULL;
}

/* Appenders on connections of their own, at once: every turn gets its own seq, 1..N. */
static void conv_concurrent_appends_get_distinct_seqs(void **state)
{
    struct fx *f = *state;
    pthread_barrier_t start;
    pthread_t t[APPENDERS];
    struct appender ap[APPENDERS];
    assert_int_equal(pthread_barrier_init(&start, NULL, APPENDERS), 0);
    for (int i = 0; i < APPENDERS; i++) {
        ap[i] = (struct appender){.url = f->url, .start = &start, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, append_main, &ap[i]), 0);
    }
    for (int i = 0; i < APPENDERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(ap[i].rc, 0);
    }
    pthread_barrier_destroy(&start);
    struct gw_conv g;
    const int total = APPENDERS * APPENDS * 2;
    assert_int_equal(gw_store_conv_get(f->s, 1, "key:key_a", "busy", &g), 0);
    assert_int_equal(g.turns, total);
    struct turns_seen *ts = calloc(1, sizeof(*ts));
    assert_int_equal(gw_store_conv_turns(f->s, g.id, 0, 0, see_turn, ts), 0);
    assert_int_equal(ts->n, total);
    for (int i = 0; i < total; i++)
        assert_int_equal(ts->seqs[i], i + 1);
    free(ts);
    gw_conv_cleanup(&g);
}

/* ---- the admin plane's reads ---- */

/* A key with a policy, for rotation. */
static void rotation_key(struct gw_store *s, int64_t org, const unsigned char hash[32],
                         struct gw_key_rec *k)
{
    memset(k, 0, sizeof(*k));
    strcpy(k->key_id, "key_rot");
    strcpy(k->name, "R");
    strcpy(k->prefix, "sk-old");
    strcpy(k->role, "member");
    strcpy(k->tier, "pro");
    strcpy(k->models, "gpt-4o");
    k->org_id = org;
    k->limits.daily_usd_micros = 2500000;
    assert_int_equal(gw_store_key_insert(s, k, hash), 0);
}

/* The key found by hash, with its id and policy unchanged. */
static struct gw_key_rec found_key(struct gw_store *s, const unsigned char hash[32],
                                   const struct gw_key_rec *k)
{
    struct gw_key_rec got;
    assert_int_equal(gw_store_key_by_hash(s, hash, &got), 0);
    assert_int_equal(got.id, k->id);
    assert_string_equal(got.key_id, "key_rot");
    assert_string_equal(got.org_slug, "acme");
    assert_string_equal(got.tier, "pro");
    assert_string_equal(got.models, "gpt-4o");
    assert_int_equal(got.limits.daily_usd_micros, 2500000);
    return got;
}

/* Key lookups as plain reads, many at once (PostgreSQL: one statement): each gets its own
 * answer, in any order, the same hash twice, a missing one, a rotated key by either secret, a
 * revoked key (found: the caller refuses it). */
static void keys_looked_up_together(void **state)
{
    struct fx *f = *state;
    struct gw_key_rec k, other = {0}, got[6];
    unsigned char h[4][32];
    int64_t org = 0;
    for (int i = 0; i < 4; i++) {
        char raw[24];
        snprintf(raw, sizeof(raw), "together-%d", i);
        gw_sha256(h[i], raw, strlen(raw));
    }
    assert_int_equal(gw_store_org_create(f->s, "acme", "Acme", &org), 0);
    rotation_key(f->s, org, h[0], &k);
    strcpy(other.key_id, "key_other");
    strcpy(other.role, "member");
    strcpy(other.tier, "free");
    other.org_id = org;
    other.limits.rph = 77;
    assert_int_equal(gw_store_key_insert(f->s, &other, h[1]), 0);
    assert_int_equal(gw_store_key_rotate(f->s, "key_rot", h[2], "sk-new", gw_now_ms() + 60000),
                     0);
    /* h[0]: the rotated key's previous secret; h[3]: nobody's */
    const unsigned char *ask[6] = {h[1], h[3], h[2], h[0], h[1], h[3]};
    const int want[6] = {0, GW_ENOTFOUND, 0, 0, 0, GW_ENOTFOUND};
    for (int round = 0; round < 2; round++) {
        struct gw_store_write w[6], *wp[6];
        for (int i = 0; i < 6; i++) {
            w[i] = (struct gw_store_write){.key_hash = ask[i], .key = &got[i], .rc = -1};
            wp[i] = &w[i];
        }
        gw_store_write_many(f->s, wp, 6);
        for (int i = 0; i < 6; i++)
            assert_int_equal(w[i].rc, want[i]);
        for (int i = 0; i < 5; i += 4) {
            assert_string_equal(got[i].key_id, "key_other");
            assert_string_equal(got[i].org_slug, "acme");
            assert_int_equal(got[i].limits.rph, 77);
            assert_int_equal(got[i].revoked, round);
        }
        assert_string_equal(got[2].key_id, "key_rot");
        assert_false(got[2].via_prev);
        assert_string_equal(got[3].key_id, "key_rot");
        assert_true(got[3].via_prev);
        assert_int_equal(got[3].limits.daily_usd_micros, 2500000);
        assert_int_equal(gw_store_key_revoke(f->s, "key_other"), 0); /* for the second round */
    }
}

/* A rotated key is found by its new secret, and by the previous one (via_prev) until that one's
 * time; one previous secret at a time. The rotation is made through another connection: on
 * SQLite the first connection's cached copies (by either hash) are read again. */
static void keys_rotate(void **state)
{
    struct fx *f = *state;
    struct gw_store *cli = NULL;
    struct gw_key_rec k, got;
    unsigned char h[6][32];
    int64_t org = 0, now = gw_now_ms();
    for (int i = 0; i < 6; i++) {
        char raw[24];
        snprintf(raw, sizeof(raw), "secret-%d", i);
        gw_sha256(h[i], raw, strlen(raw));
    }
    assert_int_equal(gw_store_org_create(f->s, "acme", "Acme", &org), 0);
    rotation_key(f->s, org, h[0], &k);
    assert_int_equal(gw_store_open(f->url, &cli, NULL), 0);
    for (int round = 0; round < 2; round++) { /* the second from SQLite's cache */
        got = found_key(f->s, h[0], &k);
        assert_false(got.via_prev);
        assert_int_equal(got.rotated_ms, 0);
        assert_int_equal(got.prev_expires_ms, 0);
        assert_string_equal(got.prefix, "sk-old");
    }
    /* rotated elsewhere, the old secret good for an hour */
    int64_t until = now + 3600000;
    assert_int_equal(gw_store_key_rotate(cli, "key_rot", h[1], "sk-new", until), 0);
    for (int round = 0; round < 2; round++) {
        got = found_key(f->s, h[1], &k);
        assert_false(got.via_prev);
        assert_string_equal(got.prefix, "sk-new");
        assert_true(got.rotated_ms >= now);
        assert_int_equal(got.prev_expires_ms, until);
        got = found_key(f->s, h[0], &k);
        assert_true(got.via_prev);
        assert_int_equal(got.prev_expires_ms, until);
        assert_false(got.revoked);
    }
    assert_int_equal(gw_store_key_get(f->s, "key_rot", &got), 0);
    assert_false(got.via_prev);
    assert_int_equal(got.prev_expires_ms, until);
    assert_true(got.rotated_ms >= now);
    /* again: the first secret is gone, the second is the previous one now */
    int64_t until2 = now + 7200000;
    assert_int_equal(gw_store_key_rotate(f->s, "key_rot", h[2], "sk-3", until2), 0);
    assert_int_equal(gw_store_key_by_hash(f->s, h[0], &got), GW_ENOTFOUND);
    assert_int_equal(gw_store_key_by_hash(cli, h[0], &got), GW_ENOTFOUND);
    got = found_key(cli, h[1], &k);
    assert_true(got.via_prev);
    assert_int_equal(got.prev_expires_ms, until2);
    got = found_key(cli, h[2], &k);
    assert_false(got.via_prev);
    /* without a grace period the old secret stops at once */
    assert_int_equal(gw_store_key_rotate(cli, "key_rot", h[3], "sk-4", 0), 0);
    assert_int_equal(gw_store_key_by_hash(f->s, h[2], &got), GW_ENOTFOUND);
    assert_int_equal(gw_store_key_by_hash(f->s, h[1], &got), GW_ENOTFOUND);
    got = found_key(f->s, h[3], &k);
    assert_int_equal(got.prev_expires_ms, 0);
    /* a previous secret past its time is not found, from the cache neither */
    assert_int_equal(gw_store_key_rotate(cli, "key_rot", h[4], "sk-5", now + 60000), 0);
    got = found_key(f->s, h[3], &k); /* cached with via_prev */
    assert_true(got.via_prev);
#ifdef GW_TEST_HOOKS
    gw_test_clock_advance(120000);
    int rc = gw_store_key_by_hash(f->s, h[3], &got);
    int rc_cli = gw_store_key_by_hash(cli, h[3], &got);
    got = found_key(f->s, h[4], &k);
    gw_test_clock_advance(-120000);
    assert_int_equal(rc, GW_ENOTFOUND);
    assert_int_equal(rc_cli, GW_ENOTFOUND);
#endif
    assert_int_equal(gw_store_key_rotate(cli, "key_rot", h[3], "sk-4", now - 1), 0); /* past */
    assert_int_equal(gw_store_key_by_hash(f->s, h[4], &got), GW_ENOTFOUND);
    assert_int_equal(gw_store_key_rotate(cli, "key_rot", h[4], "sk-5", now + 60000), 0);
    /* the new hash must be no other key's */
    struct gw_key_rec other = {0};
    strcpy(other.key_id, "key_other");
    strcpy(other.role, "member");
    strcpy(other.tier, "free");
    other.org_id = org;
    assert_int_equal(gw_store_key_insert(f->s, &other, h[5]), 0);
    assert_int_equal(gw_store_key_rotate(f->s, "key_rot", h[5], "sk-x", 0), GW_EEXIST);
    got = found_key(f->s, h[4], &k); /* unchanged */
    /* unknown, revoked, bad arguments */
    assert_int_equal(gw_store_key_rotate(f->s, "key_nope", h[1], "sk", 0), GW_ENOTFOUND);
    assert_int_equal(gw_store_key_rotate(f->s, "key_rot", h[1], "sk-much-too-long-prefix", 0),
                     GW_EINVAL);
    assert_int_equal(gw_store_key_rotate(f->s, "key_rot", h[1], "sk", -1), GW_EINVAL);
    assert_int_equal(gw_store_key_revoke(cli, "key_rot"), 0);
    assert_int_equal(gw_store_key_rotate(f->s, "key_rot", h[1], "sk", 0), GW_ENOTFOUND);
    got = found_key(f->s, h[4], &k);
    assert_true(got.revoked);
    assert_int_equal(gw_store_key_by_hash(f->s, h[1], &got), GW_ENOTFOUND);
    gw_store_free(cli);
}

#define DAY2 1796083200000LL /* 2026-12-01T00:00Z */
#define APP_CLIENT "ac_000000000000000000000001"

struct usage_fx {
    int64_t acme, beta;
    int64_t ka, kb, kc, app; /* key row ids; app: the app client's (rows carry -app) */
};

static void usage_row_add(struct gw_store *s, const char *id, int64_t org, int64_t key,
                          const char *provider, const char *model, const char *kind,
                          const char *state, int64_t created, int64_t tin, int64_t tout,
                          int64_t cost, int64_t reserved)
{
    struct gw_usage_row r = {0};
    strcpy(r.request_id, id);
    r.org_id = org;
    r.key_row_id = key;
    strcpy(r.provider, provider);
    strcpy(r.model, model);
    strcpy(r.endpoint, "chat.completions");
    strcpy(r.kind, kind);
    strcpy(r.state, state);
    r.created_ms = created;
    r.tokens_in = tin;
    r.tokens_out = tout;
    r.cost_micros = cost;
    r.reserved_micros = reserved;
    if (key < 0)
        strcpy(r.subject, "user-1");
    assert_int_equal(gw_store_usage_reserve(s, &r), 0);
}

static int64_t usage_key(struct gw_store *s, int64_t org, const char *key_id, int n)
{
    struct gw_key_rec k = {0};
    unsigned char h[32];
    gw_sha256(h, key_id, strlen(key_id));
    strcpy(k.key_id, key_id);
    snprintf(k.name, sizeof(k.name), "K%d", n);
    strcpy(k.role, "member");
    strcpy(k.tier, "pro");
    k.org_id = org;
    assert_int_equal(gw_store_key_insert(s, &k, h), 0);
    return k.id;
}

/* Two orgs, three keys, an app client's subject session; rows over two UTC days. */
static struct usage_fx usage_fixture(struct gw_store *s)
{
    struct usage_fx u = {0};
    struct gw_app_client a = {0};
    assert_int_equal(gw_store_org_create(s, "acme", "Acme", &u.acme), 0);
    assert_int_equal(gw_store_org_create(s, "beta", "Beta", &u.beta), 0);
    u.ka = usage_key(s, u.acme, "key_a1", 1);
    u.kb = usage_key(s, u.acme, "key_b1", 2);
    u.kc = usage_key(s, u.beta, "key_c1", 3);
    strcpy(a.client_id, APP_CLIENT);
    strcpy(a.name, "Acme web");
    a.org_id = u.acme;
    a.session_ttl_s = 3600;
    assert_int_equal(gw_store_app_client_insert(s, &a), 0);
    u.app = a.id;
    int64_t d1 = DAY2 - 3600000, d2 = DAY2 + 3600000;
    usage_row_add(s, "r1", u.acme, u.ka, "openai", "gpt-4o", "chat", "settled", d1, 10, 5, 100,
                  500);
    usage_row_add(s, "r1.1", u.acme, u.ka, "openai", "gpt-4o", "attempt", "failed", d1 + 1, 1, 0,
                  7, 50);
    /* in flight: counted at its reservation */
    usage_row_add(s, "r3", u.acme, u.kb, "anthropic", "claude-sonnet-4-6", "chat", "reserved", d2,
                  20, 0, 0, 900);
    usage_row_add(s, "r4", u.acme, -u.app, "openai", "gpt-4o-mini", "chat", "settled", d2 + 1, 3,
                  4, 30, 60);
    usage_row_add(s, "r5", u.beta, u.kc, "anthropic", "claude-sonnet-4-6", "chat", "settled",
                  d2 + 2, 100, 50, 1000, 1000);
    usage_row_add(s, "r6", u.acme, u.ka, "openai", "gpt-4o", "chat", "uncertain", d2 + 3, 0, 0,
                  200, 200);
    return u;
}

struct groups_seen {
    char text[512];
    int n;
};

static int collect_groups(void *arg, const struct gw_usage_sum *g)
{
    struct groups_seen *seen = arg;
    size_t len = strlen(seen->text);
    snprintf(seen->text + len, sizeof(seen->text) - len, "%s:%lld/%lld/%lld/%lld/%lld;", g->group,
             (long long)g->rows, (long long)g->requests, (long long)g->tokens_in,
             (long long)g->tokens_out, (long long)g->cost_micros);
    seen->n++;
    return 0;
}

/* The groups of f by `by` as "key:rows/requests/in/out/cost;..."; the totals must be the
 * groups' sums. */
static struct groups_seen groups_of(struct gw_store *s, const struct gw_usage_filter *f,
                                    enum gw_usage_group by)
{
    struct groups_seen seen = {.n = 0};
    struct gw_usage_totals t;
    assert_int_equal(gw_store_usage_group(s, f, by, 100, collect_groups, &seen, &t), 0);
    /* the totals, as one more group */
    struct gw_usage_totals sum = {0};
    const char *p = seen.text;
    for (int i = 0; i < seen.n; i++) {
        long long r, q, in, out, c;
        p = strchr(p, ':');
        if (strncmp(p - 3, "app", 3) == 0) /* "app:<client>:": the group's own colon */
            p = strchr(p + 1, ':');
        assert_int_equal(sscanf(p + 1, "%lld/%lld/%lld/%lld/%lld", &r, &q, &in, &out, &c), 5);
        sum.rows += r, sum.requests += q, sum.tokens_in += in, sum.tokens_out += out;
        sum.cost_micros += c;
        p = strchr(p, ';');
    }
    assert_int_equal(t.rows, sum.rows);
    assert_int_equal(t.requests, sum.requests);
    assert_int_equal(t.tokens_in, sum.tokens_in);
    assert_int_equal(t.tokens_out, sum.tokens_out);
    assert_int_equal(t.cost_micros, sum.cost_micros);
    return seen;
}

static void usage_grouped(void **state)
{
    struct fx *f = *state;
    struct usage_fx u = usage_fixture(f->s);
    struct gw_usage_filter flt = {0};
    struct gw_usage_totals t;
    struct groups_seen g;

    /* by UTC day: 23:00 on the 30th and 01:00 on the 1st */
    flt.org_id = u.acme;
    g = groups_of(f->s, &flt, GW_GROUP_DAY);
    assert_string_equal(g.text, "2026-11-30:2/1/11/5/107;2026-12-01:3/3/23/4/1130;");
    assert_int_equal(gw_store_usage_group(f->s, &flt, GW_GROUP_DAY, 10, NULL, NULL, &t), 0);
    assert_int_equal(t.rows, 5);
    assert_int_equal(t.requests, 4);
    assert_int_equal(t.cost_micros, 1237);
    /* by key: the subject session's rows under its app client */
    flt.org_id = 0;
    g = groups_of(f->s, &flt, GW_GROUP_KEY);
    assert_string_equal(g.text, "app:" APP_CLIENT ":1/1/3/4/30;key_a1:3/2/11/5/307;"
                                "key_b1:1/1/20/0/900;key_c1:1/1/100/50/1000;");
    g = groups_of(f->s, &flt, GW_GROUP_MODEL);
    assert_string_equal(g.text, "claude-sonnet-4-6:2/2/120/50/1900;gpt-4o:3/2/11/5/307;"
                                "gpt-4o-mini:1/1/3/4/30;");
    g = groups_of(f->s, &flt, GW_GROUP_PROVIDER);
    assert_string_equal(g.text, "anthropic:2/2/120/50/1900;openai:4/3/14/9/337;");

    /* filters: org, key (an API key's, an app client's), model, provider, time */
    flt.org_id = u.beta;
    g = groups_of(f->s, &flt, GW_GROUP_PROVIDER);
    assert_string_equal(g.text, "anthropic:1/1/100/50/1000;");
    flt.org_id = 0;
    flt.key_row_id = u.ka;
    g = groups_of(f->s, &flt, GW_GROUP_MODEL);
    assert_string_equal(g.text, "gpt-4o:3/2/11/5/307;");
    flt.key_row_id = -u.app;
    g = groups_of(f->s, &flt, GW_GROUP_KEY);
    assert_string_equal(g.text, "app:" APP_CLIENT ":1/1/3/4/30;");
    flt.org_id = u.beta; /* and the key of another org: nothing */
    flt.key_row_id = u.ka;
    g = groups_of(f->s, &flt, GW_GROUP_KEY);
    assert_string_equal(g.text, "");
    flt.org_id = u.acme;
    g = groups_of(f->s, &flt, GW_GROUP_DAY);
    assert_string_equal(g.text, "2026-11-30:2/1/11/5/107;2026-12-01:1/1/0/0/200;");
    memset(&flt, 0, sizeof(flt));
    strcpy(flt.model, "gpt-4o"); /* exactly: not gpt-4o-mini */
    g = groups_of(f->s, &flt, GW_GROUP_PROVIDER);
    assert_string_equal(g.text, "openai:3/2/11/5/307;");
    memset(&flt, 0, sizeof(flt));
    strcpy(flt.provider, "anthropic");
    g = groups_of(f->s, &flt, GW_GROUP_DAY);
    assert_string_equal(g.text, "2026-12-01:2/2/120/50/1900;");
    flt.org_id = u.acme;
    g = groups_of(f->s, &flt, GW_GROUP_KEY);
    assert_string_equal(g.text, "key_b1:1/1/20/0/900;");
    memset(&flt, 0, sizeof(flt));
    flt.from_ms = DAY2 + 3600000; /* [r3, r5): r3 and r4 */
    flt.to_ms = DAY2 + 3600000 + 2;
    g = groups_of(f->s, &flt, GW_GROUP_KEY);
    assert_string_equal(g.text, "app:" APP_CLIENT ":1/1/3/4/30;key_b1:1/1/20/0/900;");
    flt.to_ms = 0; /* no end */
    g = groups_of(f->s, &flt, GW_GROUP_DAY);
    assert_string_equal(g.text, "2026-12-01:4/4/123/54/2130;");
    flt.from_ms = DAY2 + 86400000; /* nothing */
    g = groups_of(f->s, &flt, GW_GROUP_MODEL);
    assert_string_equal(g.text, "");

    /* the usage list takes the provider too */
    memset(&flt, 0, sizeof(flt));
    strcpy(flt.provider, "anthropic");
    assert_int_equal(gw_store_usage_list(f->s, &flt, NULL, NULL, &t), 0);
    assert_int_equal(t.rows, 2);
    assert_int_equal(t.cost_micros, 1900);

    /* too many groups: an error, and nothing handed over */
    memset(&flt, 0, sizeof(flt));
    struct groups_seen none = {.n = 0};
    t.rows = -1;
    assert_int_equal(gw_store_usage_group(f->s, &flt, GW_GROUP_KEY, 3, collect_groups, &none, &t),
                     GW_ETOOBIG);
    assert_int_equal(none.n, 0);
    assert_int_equal(gw_store_usage_group(f->s, &flt, GW_GROUP_KEY, 4, collect_groups, &none, &t),
                     0);
    assert_int_equal(none.n, 4);
    assert_int_equal(t.rows, 6);
    assert_int_equal(gw_store_usage_group(f->s, &flt, GW_GROUP_KEY, 0, NULL, NULL, &t), GW_EINVAL);
    assert_int_equal(gw_store_usage_group(f->s, NULL, GW_GROUP_MODEL, 3, NULL, NULL, &t), 0);
    assert_int_equal(t.rows, 6);
}

#define PAGE_ROWS_MAX 64

struct page_seen {
    int n;
    char ids[PAGE_ROWS_MAX][GW_USAGE_ID_MAX];
    int64_t created[PAGE_ROWS_MAX], cost[PAGE_ROWS_MAX];
    char key_id[PAGE_ROWS_MAX][48], slug[PAGE_ROWS_MAX][64];
    int in_page;
};

static int collect_page(void *arg, const struct gw_usage_row *r, const char *key_id,
                        const char *org_slug)
{
    struct page_seen *seen = arg;
    assert_true(seen->n < PAGE_ROWS_MAX);
    strcpy(seen->ids[seen->n], r->request_id);
    seen->created[seen->n] = r->created_ms;
    seen->cost[seen->n] = r->cost_micros;
    strcpy(seen->key_id[seen->n], key_id);
    strcpy(seen->slug[seen->n], org_slug);
    seen->n++;
    seen->in_page++;
    return 0;
}

/* Every row of f, page by page (limit rows each): returns the number of pages. */
static int all_pages(struct gw_store *s, const struct gw_usage_filter *f, int limit,
                     struct page_seen *seen)
{
    int64_t after_ms = 0;
    char after_id[GW_USAGE_ID_MAX] = "";
    int pages = 0;
    memset(seen, 0, sizeof(*seen));
    for (;;) {
        seen->in_page = 0;
        assert_int_equal(gw_store_usage_page(s, f, after_ms, after_id, limit, collect_page, seen),
                         0);
        assert_true(seen->in_page <= limit);
        if (seen->in_page == 0)
            break;
        pages++;
        after_ms = seen->created[seen->n - 1];
        strcpy(after_id, seen->ids[seen->n - 1]);
        assert_true(pages < 100);
    }
    /* in (created_ms, request_id) order, each once */
    for (int i = 1; i < seen->n; i++)
        assert_true(seen->created[i - 1] < seen->created[i] ||
                    (seen->created[i - 1] == seen->created[i] &&
                     strcmp(seen->ids[i - 1], seen->ids[i]) < 0));
    return pages;
}

static int page_index(const struct page_seen *seen, const char *id)
{
    for (int i = 0; i < seen->n; i++)
        if (strcmp(seen->ids[i], id) == 0)
            return i;
    return -1;
}

static void usage_pages(void **state)
{
    struct fx *f = *state;
    struct usage_fx u = usage_fixture(f->s);
    struct gw_usage_filter flt = {0};
    struct page_seen *seen = calloc(1, sizeof(*seen));
    /* 24 more of acme's, three at each time (their ids out of insertion order), and two of
     * no org and no key */
    for (int i = 0; i < 24; i++) {
        char id[16];
        snprintf(id, sizeof(id), "p%02d", (i * 7) % 24);
        usage_row_add(f->s, id, u.acme, i % 2 ? u.kb : -u.app, "openai", "gpt-4o", "chat",
                      i % 5 == 0 ? "reserved" : "settled", DAY2 + 10000 + i / 3, 1, 1, 10, 40);
    }
    usage_row_add(f->s, "z1", 0, 0, "openai", "gpt-4o", "chat", "settled", DAY2 + 20000, 1, 1, 1,
                  1);
    usage_row_add(f->s, "z0", 0, 0, "openai", "gpt-4o", "router", "settled", DAY2 + 20000, 1, 1,
                  1, 1);

    /* acme's rows: the fixture's 5 and the 24, in pages of 4 */
    flt.org_id = u.acme;
    assert_int_equal(all_pages(f->s, &flt, 4, seen), 8);
    assert_int_equal(seen->n, 29);
    for (int i = 0; i < seen->n; i++)
        assert_string_equal(seen->slug[i], "acme");
    int r3 = page_index(seen, "r3"), r4 = page_index(seen, "r4"), r1 = page_index(seen, "r1");
    assert_true(r1 == 0 && r3 > r1 && r4 > r3);
    assert_string_equal(seen->key_id[r1], "key_a1");
    assert_string_equal(seen->key_id[r3], "key_b1");
    assert_int_equal(seen->cost[r3], 900); /* reserved: at its reservation */
    assert_string_equal(seen->key_id[r4], "app:" APP_CLIENT);
    assert_int_equal(seen->cost[r4], 30);
    int p00 = page_index(seen, "p00"), p07 = page_index(seen, "p07");
    assert_string_equal(seen->key_id[p00], "app:" APP_CLIENT); /* i = 0 */
    assert_int_equal(seen->cost[p00], 40);                     /* reserved */
    assert_string_equal(seen->key_id[p07], "key_b1");          /* i = 1 */
    assert_int_equal(seen->cost[p07], 10);
    /* a tie at one time is ordered by request id: p00 (i 0), p07 (i 1), p14 (i 2) */
    assert_int_equal(p07, p00 + 1);
    assert_int_equal(page_index(seen, "p14"), p00 + 2);

    /* everyone's, in pages of 3 and of 1 */
    memset(&flt, 0, sizeof(flt));
    assert_int_equal(all_pages(f->s, &flt, 3, seen), 11);
    assert_int_equal(seen->n, 32);
    int z0 = page_index(seen, "z0"); /* after the 24 of 00:00:10, before r3 at 01:00 */
    assert_int_equal(z0, 26);
    assert_int_equal(page_index(seen, "z1"), 27);
    assert_int_equal(page_index(seen, "r3"), 28);
    assert_string_equal(seen->slug[z0], "");
    assert_string_equal(seen->key_id[z0], "");
    assert_string_equal(seen->slug[page_index(seen, "r5")], "beta");
    assert_string_equal(seen->key_id[page_index(seen, "r5")], "key_c1");
    assert_int_equal(all_pages(f->s, &flt, 1, seen), 32);
    /* a key's, an app client's, a model's, a provider's, a time range's */
    flt.key_row_id = u.kb;
    assert_int_equal(all_pages(f->s, &flt, 5, seen), 3);
    assert_int_equal(seen->n, 13); /* r3 and 12 */
    flt.key_row_id = -u.app;
    flt.org_id = u.acme;
    assert_int_equal(all_pages(f->s, &flt, 5, seen), 3);
    assert_int_equal(seen->n, 13); /* r4 and 12 */
    memset(&flt, 0, sizeof(flt));
    strcpy(flt.model, "claude-sonnet-4-6");
    assert_int_equal(all_pages(f->s, &flt, 5, seen), 1);
    assert_int_equal(seen->n, 2);
    memset(&flt, 0, sizeof(flt));
    strcpy(flt.provider, "anthropic");
    flt.org_id = u.beta;
    assert_int_equal(all_pages(f->s, &flt, 5, seen), 1);
    assert_int_equal(seen->n, 1);
    memset(&flt, 0, sizeof(flt));
    flt.from_ms = DAY2 + 10001; /* times 10001..10007 of acme's, 3 each: 21 rows */
    flt.to_ms = DAY2 + 20000;
    assert_int_equal(all_pages(f->s, &flt, 4, seen), 6);
    assert_int_equal(seen->n, 21);
    /* a cursor inside the range; bad arguments */
    struct page_seen one = {0};
    assert_int_equal(gw_store_usage_page(f->s, &flt, DAY2 + 10007, "p13", 10, collect_page, &one),
                     0);
    assert_int_equal(one.n, 1); /* at 10007: p03, p10, p17; after p13, p17 only */
    assert_string_equal(one.ids[0], "p17");
    assert_int_equal(gw_store_usage_page(f->s, &flt, 0, NULL, -1, collect_page, &one), GW_EINVAL);
    assert_int_equal(gw_store_usage_page(f->s, &flt, 0, NULL, 0, collect_page, &one), 0);
    assert_int_equal(one.n, 1);
    free(seen);
}

struct orgs_seen {
    char slugs[256];
    int64_t last_id;
    int n, capture_off;
};

static int collect_orgs(void *arg, const struct gw_org *o)
{
    struct orgs_seen *seen = arg;
    strcat(seen->slugs, o->slug);
    strcat(seen->slugs, ",");
    assert_true(o->id > seen->last_id);
    seen->last_id = o->id;
    seen->n++;
    if (strcmp(o->slug, "org3") == 0) {
        assert_string_equal(o->models, "gpt-4o");
        assert_int_equal(o->limits.rph, 60);
        assert_int_equal(o->conv.retention_days, 30);
        seen->capture_off = !o->conv.capture;
    }
    return 0;
}

static void orgs_listed_and_by_id(void **state)
{
    struct fx *f = *state;
    int64_t ids[5];
    struct gw_org o;
    for (int i = 0; i < 5; i++) {
        char slug[16];
        snprintf(slug, sizeof(slug), "org%d", i);
        assert_int_equal(gw_store_org_create(f->s, slug, "Org", &ids[i]), 0);
    }
    assert_int_equal(gw_store_org_get(f->s, "org3", &o), 0);
    strcpy(o.models, "gpt-4o");
    o.limits.rph = 60;
    o.conv.capture = 0;
    o.conv.retention_days = 30;
    assert_int_equal(gw_store_org_set_policy(f->s, &o), 0);
    /* pages of two */
    struct orgs_seen seen = {.n = 0};
    assert_int_equal(gw_store_org_list(f->s, 0, 2, collect_orgs, &seen), 0);
    assert_string_equal(seen.slugs, "org0,org1,");
    assert_int_equal(gw_store_org_list(f->s, seen.last_id, 2, collect_orgs, &seen), 0);
    assert_int_equal(gw_store_org_list(f->s, seen.last_id, 2, collect_orgs, &seen), 0);
    assert_int_equal(gw_store_org_list(f->s, seen.last_id, 2, collect_orgs, &seen), 0);
    assert_string_equal(seen.slugs, "org0,org1,org2,org3,org4,");
    assert_int_equal(seen.capture_off, 1);
    /* all at once */
    struct orgs_seen all = {.n = 0};
    assert_int_equal(gw_store_org_list(f->s, 0, 0, collect_orgs, &all), 0);
    assert_int_equal(all.n, 5);
    struct orgs_seen after = {.last_id = ids[2]};
    assert_int_equal(gw_store_org_list(f->s, ids[2], 0, collect_orgs, &after), 0);
    assert_string_equal(after.slugs, "org3,org4,");
    assert_int_equal(gw_store_org_list(f->s, 0, -1, collect_orgs, &all), GW_EINVAL);
    /* by id */
    assert_int_equal(gw_store_org_get_id(f->s, ids[3], &o), 0);
    assert_string_equal(o.slug, "org3");
    assert_int_equal(o.id, ids[3]);
    assert_int_equal(o.conv.capture, 0);
    assert_int_equal(o.conv.retention_days, 30);
    assert_string_equal(o.models, "gpt-4o");
    assert_int_equal(gw_store_org_get_id(f->s, ids[4] + 100, &o), GW_ENOTFOUND);
    assert_int_equal(gw_store_org_get_id(f->s, 0, &o), GW_ENOTFOUND);
}

static void health_counts(void **state)
{
    struct fx *f = *state;
    struct gw_store_health h;
    struct gw_idem_rec r = {0}, e;
    int claimed = 0;
    int64_t n = 0;
    assert_int_equal(gw_store_health(f->s, 1000, &h), 0);
    assert_int_equal(h.idem_uncertain + h.usage_uncertain + h.idem_expired, 0);
    /* idempotency: k-1 of node n1 (its process died: uncertain), k-2 of n2 in flight, k-3 done;
     * k-1 and k-2 expire at 100000 */
    gw_strlcpy(r.caller, "key:7", sizeof(r.caller));
    gw_strlcpy(r.endpoint, "chat.completions", sizeof(r.endpoint));
    gw_strlcpy(r.fingerprint, "aa", sizeof(r.fingerprint));
    r.created_ms = 1000;
    r.expires_ms = 100000;
    for (int i = 1; i <= 3; i++) {
        snprintf(r.key, sizeof(r.key), "k-%d", i);
        snprintf(r.request_id, sizeof(r.request_id), "req_%d", i);
        snprintf(r.node, sizeof(r.node), "n%d", i);
        if (i == 3)
            r.expires_ms = 500000;
        assert_int_equal(gw_store_idem_claim(f->s, &r, 1000, &claimed, &e), 0);
        assert_int_equal(claimed, 1);
    }
    gw_strlcpy(r.state, "done", sizeof(r.state));
    r.status = 200;
    assert_int_equal(gw_store_idem_complete(f->s, &r), 0);
    assert_int_equal(gw_store_idem_recover(f->s, "n1", &n), 0);
    assert_int_equal(n, 1);
    /* usage: one settled uncertain (an upstream broke off), one left reserved by a dead node */
    usage_row_add(f->s, "u1", 0, 1, "openai", "gpt-4o", "chat", "uncertain", 1000, 0, 0, 5, 5);
    usage_row_add(f->s, "u2", 0, 1, "openai", "gpt-4o", "chat", "reserved", 1000, 0, 0, 0, 5);
    usage_row_add(f->s, "u3", 0, 1, "openai", "gpt-4o", "chat", "settled", 1000, 0, 0, 5, 5);
    assert_int_equal(gw_store_health(f->s, 2000, &h), 0);
    assert_int_equal(h.idem_uncertain, 1);
    assert_int_equal(h.usage_uncertain, 1);
    assert_int_equal(h.idem_expired, 0);
    assert_int_equal(gw_store_usage_recover(f->s, "", &n), 0);
    assert_int_equal(gw_store_health(f->s, 200000, &h), 0);
    assert_int_equal(h.idem_uncertain, 1);
    assert_int_equal(h.usage_uncertain, 2);
    assert_int_equal(h.idem_expired, 2); /* k-1 and k-2 */
    assert_int_equal(gw_store_health(f->s, 600000, &h), 0);
    assert_int_equal(h.idem_expired, 3);
    assert_int_equal(gw_store_idem_purge(f->s, 600000, 100, &n), 0);
    assert_int_equal(gw_store_health(f->s, 600000, &h), 0);
    assert_int_equal(h.idem_uncertain + h.idem_expired, 0);
    assert_int_equal(h.usage_uncertain, 2);
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
        cmocka_unit_test_setup_teardown(counters_in_a_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(writes_together_prune_old_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(admission_begin_reads_like_snapshots, setup, teardown),
        cmocka_unit_test_setup_teardown(hour_from_any_second, setup, teardown),
        cmocka_unit_test_setup_teardown(usage_attempt_rows_retarget_and_spent, setup, teardown),
        cmocka_unit_test_setup_teardown(budget_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(idempotency_records, setup, teardown),
        cmocka_unit_test_setup_teardown(two_connections_share_the_file, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_mode_keeps_the_wal_short, setup, teardown),
        cmocka_unit_test_setup_teardown(sqlite_page_size_new_and_old, setup, teardown),
        cmocka_unit_test_setup_teardown(key_cache_sees_changes_from_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(conv_policy_of_orgs_and_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(conv_appends_together, setup, teardown),
        cmocka_unit_test_setup_teardown(conv_append_creates_then_extends, setup, teardown),
        cmocka_unit_test_setup_teardown(conv_append_many_turns, setup, teardown),
        cmocka_unit_test_setup_teardown(conv_shared_only_in_its_org, setup, teardown),
        cmocka_unit_test_setup_teardown(conv_list_newest_first_with_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(conv_summary_only_moves_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(conv_delete_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(conv_delete_while_another_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(conv_export_by_time_and_sharing, setup, teardown),
        cmocka_unit_test_setup_teardown(conv_purge_by_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(audit_append_and_list, setup, teardown),
        cmocka_unit_test_setup_teardown(conv_concurrent_appends_get_distinct_seqs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(keys_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(keys_looked_up_together, setup, teardown),
        cmocka_unit_test_setup_teardown(usage_grouped, setup, teardown),
        cmocka_unit_test_setup_teardown(usage_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(orgs_listed_and_by_id, setup, teardown),
        cmocka_unit_test_setup_teardown(health_counts, setup, teardown),
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
        cmocka_unit_test_setup_teardown(counters_in_a_transaction, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(writes_together_prune_old_buckets, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(admission_begin_reads_like_snapshots, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(hour_from_any_second, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(usage_attempt_rows_retarget_and_spent, setup_pg,
                                        teardown_pg),
        cmocka_unit_test_setup_teardown(idempotency_records, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(two_connections_share_the_file, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(key_cache_sees_changes_from_elsewhere, setup_pg,
                                        teardown_pg),
        cmocka_unit_test_setup_teardown(conv_policy_of_orgs_and_keys, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(conv_appends_together, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(conv_append_creates_then_extends, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(conv_append_many_turns, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(conv_shared_only_in_its_org, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(conv_list_newest_first_with_filters, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(conv_summary_only_moves_forward, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(conv_delete_leaves_nothing, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(conv_delete_while_another_reads, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(conv_export_by_time_and_sharing, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(conv_purge_by_retention, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(audit_append_and_list, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(conv_concurrent_appends_get_distinct_seqs, setup_pg,
                                        teardown_pg),
        cmocka_unit_test_setup_teardown(keys_rotate, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(keys_looked_up_together, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(usage_grouped, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(usage_pages, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(orgs_listed_and_by_id, setup_pg, teardown_pg),
        cmocka_unit_test_setup_teardown(health_counts, setup_pg, teardown_pg),
    };
    int failed = cmocka_run_group_tests_name("sqlite", sqlite_tests, NULL, NULL);
    if (getenv("LLMGW_TEST_PG_URL") == NULL || getenv("LLMGW_TEST_PG_URL")[0] == '\0') {
        printf("[ SKIPPED  ] postgres: LLMGW_TEST_PG_URL is not set\n");
        return failed;
    }
    return failed + cmocka_run_group_tests_name("postgres", pg_tests, NULL, NULL);
}
