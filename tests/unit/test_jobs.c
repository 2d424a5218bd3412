/* Store work executors (store/jobs.h) on SQLite: reads inline on the worker's connection,
 * writes on the one writer thread, batched in one transaction; a batch whose transaction fails
 * reports it to every job that ran in it, and what they wrote is gone; the jobs not run yet get
 * a new transaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>

#include "store/jobs.h"
#include "store/store.h"

struct fx {
    char dir[64];
    char url[128];
    struct gw_store *s; /* the "worker's" connection */
    struct gw_store_pool *writer;
    struct event_base *base;
    struct gw_store_exec *x;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct gw_errbuf eb = {{0}};
    strcpy(f->dir, "/tmp/llmgw-jobs-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->url, sizeof(f->url), "sqlite:%s/gw.db", f->dir);
    assert_int_equal(gw_store_open(f->url, &f->s, &eb), 0);
    assert_int_equal(gw_store_migrate(f->s, &eb), 0);
    assert_int_equal(gw_store_pool_new(f->url, 1, 1, &f->writer, &eb), 0);
    assert_non_null(f->base = event_base_new());
    assert_int_equal(gw_store_exec_new(f->base, f->s, f->writer, &f->x), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    if (f->x != NULL) {
        gw_store_exec_drain(f->x);
        gw_store_exec_free(f->x);
    }
    gw_store_pool_free(f->writer);
    event_base_free(f->base);
    gw_store_free(f->s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

enum action { CREATE_ORG, ROLL_BACK, WAIT_GATE };

struct tjob {
    struct gw_store_job job;
    enum action act;
    char slug[32];
    pthread_t ran_on;
    int run_rc;
    int done;
    int batch_rc;
};

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open, gate_waiting;

static void t_run(struct gw_store_job *j, struct gw_store *s)
{
    struct tjob *t = (struct tjob *)j;
    t->ran_on = pthread_self();
    if (t->act == CREATE_ORG) {
        t->run_rc = gw_store_org_create(s, t->slug, t->slug, NULL);
    } else if (t->act == ROLL_BACK) { /* as SQLite does itself after some errors */
        gw_store_tx_rollback(s);
    } else {
        pthread_mutex_lock(&gate_mu);
        gate_waiting++;
        pthread_cond_broadcast(&gate_cv);
        while (!gate_open)
            pthread_cond_wait(&gate_cv, &gate_mu);
        pthread_mutex_unlock(&gate_mu);
    }
}

static void t_done(struct gw_store_job *j)
{
    struct tjob *t = (struct tjob *)j;
    t->done++;
    t->batch_rc = j->batch_rc;
}

static void submit(struct fx *f, struct tjob *t, enum action act, const char *slug, int writes)
{
    memset(t, 0, sizeof(*t));
    t->act = act;
    snprintf(t->slug, sizeof(t->slug), "%s", slug);
    t->job.run = t_run;
    t->job.done = t_done;
    t->job.writes = writes;
    gw_store_submit(f->x, &t->job);
}

static int org_exists(struct fx *f, const char *slug)
{
    struct gw_org o;
    return gw_store_org_get(f->s, slug, &o) == 0;
}

static void reads_inline_writes_on_the_writer(void **state)
{
    struct fx *f = *state;
    struct tjob r, w;
    submit(f, &r, CREATE_ORG, "inline", 0);
    assert_true(pthread_equal(r.ran_on, pthread_self()));
    assert_int_equal(r.done, 0); /* done comes from the loop, never from submit */
    submit(f, &w, CREATE_ORG, "written", 1);
    gw_store_exec_drain(f->x);
    assert_int_equal(r.done, 1);
    assert_int_equal(w.done, 1);
    assert_false(pthread_equal(w.ran_on, pthread_self()));
    assert_int_equal(w.run_rc, 0);
    assert_int_equal(w.batch_rc, 0);
    assert_true(org_exists(f, "written"));
}

/* Reads run inline have their done functions called from the worker's loop, in the order they
 * were submitted, a read submitted by a done function's too (later, never from inside it). */
static int chain_order[8], chain_n;
static struct tjob chain[4];
static struct fx *chain_fx;

static void chain_done(struct gw_store_job *j)
{
    struct tjob *t = (struct tjob *)j;
    int i = (int)(t - chain);
    chain_order[chain_n++] = i;
    t->done++;
    if (i == 0) { /* a read of its own, from inside this done */
        memset(&chain[3], 0, sizeof(chain[3]));
        chain[3].act = CREATE_ORG;
        snprintf(chain[3].slug, sizeof(chain[3].slug), "chained");
        chain[3].job.run = t_run;
        chain[3].job.done = chain_done;
        gw_store_submit(chain_fx->x, &chain[3].job);
        assert_int_equal(chain[3].done, 0);
    }
}

static void inline_reads_done_in_order(void **state)
{
    struct fx *f = *state;
    chain_fx = f;
    chain_n = 0;
    for (int i = 0; i < 3; i++) {
        memset(&chain[i], 0, sizeof(chain[i]));
        chain[i].act = CREATE_ORG;
        snprintf(chain[i].slug, sizeof(chain[i].slug), "inline-%d", i);
        chain[i].job.run = t_run;
        chain[i].job.done = chain_done;
        gw_store_submit(f->x, &chain[i].job);
    }
    assert_int_equal(chain_n, 0);
    assert_int_equal(gw_store_exec_pending(f->x), 3);
    gw_store_exec_drain(f->x);
    assert_int_equal(chain_n, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(chain_order[i], i);
    assert_int_equal(gw_store_exec_pending(f->x), 0);
    assert_true(org_exists(f, "chained"));
}

static void open_gate(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

/* Hold the writer in a first batch while more writes queue: they form the next batch. */
static void hold_writer(struct fx *f, struct tjob *gate)
{
    gate_open = gate_waiting = 0;
    submit(f, gate, WAIT_GATE, "", 1);
    pthread_mutex_lock(&gate_mu);
    while (!gate_waiting)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

static void queued_writes_commit_together(void **state)
{
    struct fx *f = *state;
    struct tjob gate, t[20];
    hold_writer(f, &gate);
    for (int i = 0; i < 20; i++) {
        char slug[16];
        snprintf(slug, sizeof(slug), "org-%d", i);
        submit(f, &t[i], CREATE_ORG, slug, 1);
    }
    open_gate();
    gw_store_exec_drain(f->x);
    for (int i = 0; i < 20; i++) {
        char slug[16];
        snprintf(slug, sizeof(slug), "org-%d", i);
        assert_int_equal(t[i].done, 1);
        assert_int_equal(t[i].batch_rc, 0);
        assert_true(org_exists(f, slug));
    }
}

/* Corked writes wait on the worker, then go to the writer at once: one transaction (b's
 * rollback takes a with it); reads still run inline. */
static void corked_writes_go_together(void **state)
{
    struct fx *f = *state;
    struct tjob a, b, r;
    gw_store_cork(f->x);
    submit(f, &a, CREATE_ORG, "corked-a", 1);
    submit(f, &b, ROLL_BACK, "", 1);
    submit(f, &r, CREATE_ORG, "corked-read", 0);
    assert_true(pthread_equal(r.ran_on, pthread_self()));
    usleep(50000);
    assert_int_equal(a.done, 0);
    assert_false(org_exists(f, "corked-a")); /* not run: still on the worker */
    gw_store_uncork(f->x);
    gw_store_exec_drain(f->x);
    assert_int_equal(a.done, 1);
    assert_int_equal(b.done, 1);
    assert_int_equal(a.run_rc, 0);
    assert_int_not_equal(a.batch_rc, 0);
    assert_false(org_exists(f, "corked-a"));
    gw_store_uncork(f->x); /* nothing corked: nothing happens */
}

static void a_failed_batch_fails_every_job_in_it(void **state)
{
    struct fx *f = *state;
    struct tjob gate, a, b, c, later;
    hold_writer(f, &gate);
    submit(f, &a, CREATE_ORG, "lost-a", 1);
    submit(f, &b, ROLL_BACK, "", 1);
    submit(f, &c, CREATE_ORG, "lost-c", 1);
    open_gate();
    gw_store_exec_drain(f->x);
    assert_int_equal(gate.batch_rc, 0);
    assert_int_equal(a.run_rc, 0); /* run said yes ... */
    assert_int_not_equal(a.batch_rc, 0); /* ... and the batch says its write is lost */
    assert_int_not_equal(b.batch_rc, 0);
    assert_false(org_exists(f, "lost-a"));
    /* c had not run yet: it went into a new transaction */
    assert_int_equal(c.batch_rc, 0);
    assert_int_equal(c.run_rc, 0);
    assert_true(org_exists(f, "lost-c"));
    /* the writer goes on with the next batch */
    submit(f, &later, CREATE_ORG, "later", 1);
    gw_store_exec_drain(f->x);
    assert_int_equal(later.batch_rc, 0);
    assert_true(org_exists(f, "later"));
}

struct wjob {
    struct gw_store_job job;
    struct gw_usage_row row;
    struct gw_store_write w;
    int done, rc;
};

static void w_done(struct gw_store_job *j)
{
    struct wjob *t = (struct wjob *)j;
    t->done++;
    t->rc = j->write->rc;
}

static void submit_write(struct gw_store_exec *x, struct wjob *t, const char *id, int settle)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->row.request_id, sizeof(t->row.request_id), "%s", id);
    strcpy(t->row.provider, "openai");
    strcpy(t->row.model, "gpt-4o");
    strcpy(t->row.endpoint, "chat.completions");
    strcpy(t->row.state, settle ? "settled" : "reserved");
    t->row.created_ms = 1764547200000;
    t->w = (struct gw_store_write){.settle = settle, .row = &t->row,
                                   .d = {.key_id = 1, .usd = 5, .second = 1764547200}};
    t->job.done = w_done;
    t->job.writes = 1;
    t->job.write = &t->w;
    gw_store_submit(x, &t->job);
}

/* The writer polls for work before it sleeps: jobs that come while it polls, just as its
 * window ends and once it sleeps, submitted or uncorked, all run; none waits for a wake-up
 * that never comes (the alarm would end the test). */
static void a_polling_writer_loses_no_job(void **state)
{
    struct fx *f = *state;
    static const int pause_us[] = {0, 20, 150, 190, 210, 400, 2000};
    struct tjob t;
    char slug[32];
    gw_store_pool_poll(f->writer, 200);
    alarm(60);
    for (int i = 0; i < 140; i++) {
        snprintf(slug, sizeof(slug), "polled-%d", i);
        if (i % 3 == 2)
            gw_store_cork(f->x);
        submit(f, &t, CREATE_ORG, slug, 1);
        if (i % 3 == 2)
            gw_store_uncork(f->x);
        gw_store_exec_drain(f->x);
        assert_int_equal(t.done, 1);
        assert_int_equal(t.batch_rc, 0);
        assert_true(org_exists(f, slug));
        usleep((useconds_t)pause_us[i % 7]);
    }
    alarm(0);
}

/* A writer in the middle of a long poll stops at once when its pool is freed. */
static void a_polling_writer_stops_at_once(void **state)
{
    struct fx *f = *state;
    struct tjob t;
    gw_store_pool_poll(f->writer, 10 * 1000 * 1000); /* 10 s */
    submit(f, &t, CREATE_ORG, "before-stop", 1);
    gw_store_exec_drain(f->x);
    assert_int_equal(t.done, 1);
    usleep(1000); /* the writer is polling now */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    gw_store_exec_free(f->x);
    gw_store_pool_free(f->writer);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    f->x = NULL;
    f->writer = NULL;
    assert_true(t1.tv_sec - t0.tv_sec < 5);
}

/* A pool of threads (as on PostgreSQL): plain writes among other jobs, each with its own
 * result; the pool stops cleanly after them. */
static void plain_writes_in_a_pool(void **state)
{
    struct fx *f = *state;
    struct gw_errbuf eb = {{0}};
    struct gw_store_pool *pool;
    struct gw_store_exec *x;
    assert_int_equal(gw_store_pool_new(f->url, 3, 0, &pool, &eb), 0);
    assert_int_equal(gw_store_exec_new(f->base, NULL, pool, &x), 0);
    static struct wjob w[40];
    struct tjob t[10];
    for (int i = 0; i < 30; i++) {
        char id[24];
        snprintf(id, sizeof(id), "p%d", i);
        submit_write(x, &w[i], id, 0);
        if (i % 3 == 0) {
            memset(&t[i / 3], 0, sizeof(t[i / 3]));
            snprintf(t[i / 3].slug, sizeof(t[i / 3].slug), "pool-%d", i / 3);
            t[i / 3].job.run = t_run;
            t[i / 3].job.done = t_done;
            t[i / 3].job.writes = 1;
            gw_store_submit(x, &t[i / 3].job);
        }
    }
    submit_write(x, &w[30], "p7", 0); /* taken */
    gw_store_exec_drain(x);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(w[i].done, 1);
        assert_int_equal(w[i].rc, 0);
    }
    assert_int_equal(w[30].rc, GW_EEXIST);
    for (int i = 0; i < 10; i++) {
        char slug[24];
        snprintf(slug, sizeof(slug), "pool-%d", i);
        assert_int_equal(t[i].done, 1);
        assert_true(org_exists(f, slug));
    }
    for (int i = 0; i < 5; i++) {
        char id[24];
        snprintf(id, sizeof(id), "p%d", i);
        submit_write(x, &w[i], id, 1);
    }
    submit_write(x, &w[5], "never", 1);
    gw_store_exec_drain(x);
    for (int i = 0; i < 5; i++)
        assert_int_equal(w[i].rc, 0);
    assert_int_equal(w[5].rc, GW_ENOTFOUND);
    struct gw_usage_row got;
    assert_int_equal(gw_store_usage_get(f->s, "p3", &got), 0);
    assert_string_equal(got.state, "settled");
    gw_store_exec_free(x);
    gw_store_pool_free(pool);
}

static void nop_run(struct gw_store_job *j, struct gw_store *s)
{
    (void)j;
    (void)s;
}

static void nop_done(struct gw_store_job *j) { (void)j; }

struct self_job {
    struct gw_store_job job;
    pthread_t ran_on;
};

static void self_run(struct gw_store_job *j, struct gw_store *s)
{
    (void)s;
    ((struct self_job *)j)->ran_on = pthread_self();
}

/* One job at a time in a pool of four: the thread last to go idle is the first woken, so one
 * thread (and its connection) serves them all while the others sleep; jobs that come together
 * still spread over the threads. */
static void the_last_idle_thread_takes_the_next_job(void **state)
{
    struct fx *f = *state;
    struct gw_errbuf eb = {{0}};
    struct gw_store_pool *pool;
    struct gw_store_exec *x;
    assert_int_equal(gw_store_pool_new(f->url, 4, 0, &pool, &eb), 0);
    assert_int_equal(gw_store_exec_new(f->base, NULL, pool, &x), 0);
    usleep(50000); /* every thread started and idle */
    struct self_job j[40];
    for (int i = 0; i < 40; i++) {
        j[i] = (struct self_job){.job = {.run = self_run, .done = nop_done}};
        gw_store_submit(x, &j[i].job);
        gw_store_exec_drain(x);
        usleep(200); /* the thread is back on the idle stack */
    }
    for (int i = 1; i < 40; i++)
        assert_true(pthread_equal(j[i].ran_on, j[0].ran_on));
    /* a burst wakes several: blocked jobs hold their threads until the gate opens */
    struct tjob gate[3];
    gate_open = 0;
    gate_waiting = 0;
    for (int i = 0; i < 3; i++) {
        memset(&gate[i], 0, sizeof(gate[i]));
        gate[i].act = WAIT_GATE;
        gate[i].job.run = t_run;
        gate[i].job.done = t_done;
        gw_store_submit(x, &gate[i].job);
    }
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&gate_mu);
        int n = gate_waiting;
        pthread_mutex_unlock(&gate_mu);
        if (n == 3)
            break;
        usleep(2000);
    }
    pthread_mutex_lock(&gate_mu);
    assert_int_equal(gate_waiting, 3); /* three threads at once */
    pthread_mutex_unlock(&gate_mu);
    open_gate();
    gw_store_exec_drain(x);
    gw_store_exec_free(x);
    gw_store_pool_free(pool);
}

/* Freed as soon as drained: the pool's threads finish jobs side by side, and the one whose job
 * on_done_event took along with another's must be done with the executor by then (under
 * AddressSanitizer, a use after free otherwise; the embedded gateway's shutdown did this). */
static void an_executor_is_freed_right_after_its_drain(void **state)
{
    struct fx *f = *state;
    struct gw_errbuf eb = {{0}};
    struct gw_store_pool *pool;
    assert_int_equal(gw_store_pool_new(f->url, 4, 0, &pool, &eb), 0);
    for (int round = 0; round < 3000; round++) {
        struct event_base *base = event_base_new();
        struct gw_store_exec *x;
        struct gw_store_job j[4];
        assert_non_null(base);
        assert_int_equal(gw_store_exec_new(base, NULL, pool, &x), 0);
        for (int i = 0; i < 4; i++) {
            j[i] = (struct gw_store_job){.run = nop_run, .done = nop_done};
            gw_store_submit(x, &j[i]);
        }
        gw_store_exec_drain(x);
        assert_int_equal(gw_store_exec_pending(x), 0);
        gw_store_exec_free(x);
        event_base_free(base);
    }
    gw_store_pool_free(pool);
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(reads_inline_writes_on_the_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(inline_reads_done_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(queued_writes_commit_together, setup, teardown),
        cmocka_unit_test_setup_teardown(a_failed_batch_fails_every_job_in_it, setup, teardown),
        cmocka_unit_test_setup_teardown(corked_writes_go_together, setup, teardown),
        cmocka_unit_test_setup_teardown(plain_writes_in_a_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(the_last_idle_thread_takes_the_next_job, setup, teardown),
        cmocka_unit_test_setup_teardown(a_polling_writer_loses_no_job, setup, teardown),
        cmocka_unit_test_setup_teardown(a_polling_writer_stops_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(an_executor_is_freed_right_after_its_drain, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("jobs", tests, NULL, NULL);
}
