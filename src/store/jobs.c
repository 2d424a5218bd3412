/*
 * store/jobs — see jobs.h.
 *
 * The pool: a FIFO of jobs (linked through the jobs themselves, so submitting allocates
 * nothing) under one mutex, served by N threads with a connection each. A batch pool's thread
 * takes the whole queue at once and runs it inside BEGIN ... COMMIT; a failed BEGIN or COMMIT
 * is every job's batch_rc. In the other pools plain writes go together: one thread at a time
 * per lane (usage rows; conversations' turns; key lookups) takes every plain write of its lane
 * queued and runs them at once (gw_store_write_many), while the others serve the rest; what
 * queues meanwhile goes with the next, so the busier the store, the more share one commit (or
 * one lookup). A batch pool's thread out of work polls a while before it sleeps (await_jobs) on
 * the pool's condition variable, and is signalled only when it sleeps; the other pools' idle
 * threads wait on a stack, each on a condition variable of its own, the last to go idle woken
 * first. A job a pool finished goes onto its executor's done list (the executor's own mutex),
 * and the thread that finds the list empty writes the executor's eventfd, which a persistent
 * event on the worker's loop reads; its callback runs the done function of every finished job.
 * A job run inline goes onto a list of the worker's own, and an event without a descriptor is
 * made active: its done runs later in the same turn of the loop, in submission order, with no
 * system call and no wait for the next poll.
 */
#include "store/jobs.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/mem.h"
#include "util/util.h"

/* A thread of a pool that is not a batch pool, out of work: on the pool's stack of idle
 * threads, waiting on its own condition variable until a waker takes it off (woken). */
struct idler {
    pthread_cond_t cv;
    struct idler *next;
    int woken;
};

struct gw_store_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* batch pool: its thread waits here */
    struct idler *idle; /* the other pools: their idle threads, the last to go idle on top */
    struct gw_store_job *head, *tail; /* queued */
    int stopping;
    int batch;
    int writing; /* the lanes (bits) whose plain writes a thread runs */
    int sleeping;            /* batch pool: threads waiting on cv (the others run or poll) */
    _Atomic unsigned queued; /* jobs ever queued: what a polling thread watches */
    _Atomic int poll_us;     /* batch pool: the longest poll before sleeping (0: none) */
    int nthreads, nconns;
    pthread_t *threads;
    struct gw_store **conns;
};

struct gw_store_exec {
    struct event_base *base;
    struct gw_store *store;     /* reads, inline */
    struct gw_store_pool *pool; /* writes (and reads without store) */
    struct gw_store_pool *readers; /* heavy reads (may be NULL) */
    struct event *ev; /* reads wake, persistent */
    int wake;         /* eventfd: written by the thread that finds the done list empty */
    pthread_mutex_t mu;
    struct gw_store_job *done_head; /* run, done not yet called */
    _Atomic int pending;
    _Atomic int finishing;          /* pool threads inside finish(): they still use x */
    int corked;                     /* jobs for the pool wait in cork_head (worker's own) */
    struct gw_store_job *cork_head, *cork_tail;
    struct event *local_ev;         /* activated for the jobs run inline (no fd, no thread) */
    struct gw_store_job *local_head, *local_tail; /* run inline, done not yet called */
};

/* Append j to the list from *head to *tail; 1 when the list was empty. */
static int append(struct gw_store_job **head, struct gw_store_job **tail, struct gw_store_job *j)
{
    int first = *tail == NULL;
    if (first)
        *head = j;
    else
        (*tail)->next = j;
    *tail = j;
    return first;
}

/* Call the done function of each job of the list from j on (on the worker's loop). */
static void run_dones(struct gw_store_exec *x, struct gw_store_job *j)
{
    while (j != NULL) {
        struct gw_store_job *next = j->next;
        atomic_fetch_sub(&x->pending, 1);
        j->done(j); /* may free j, or submit more (onto a new list) */
        j = next;
    }
}

/* j done: onto the executor's list, and the worker woken through the executor's eventfd by the
 * job that finds the list empty (outside the mutex: the worker's loop takes it meanwhile). The
 * eventfd is the executor's own: libevent's event_active holds the worker's base lock while it
 * notifies, and the worker, woken at once, then waited for this thread to let go of it. Once
 * on_done_event has taken j (the last pending job, say), the executor may be drained and freed
 * while this thread has yet to write: finishing counts the threads still here, and
 * gw_store_exec_drain waits for them too. */
static void finish(struct gw_store_job *j)
{
    struct gw_store_exec *x = j->x;
    atomic_fetch_add(&x->finishing, 1);
    pthread_mutex_lock(&x->mu);
    j->next = x->done_head;
    x->done_head = j;
    int first = j->next == NULL;
    pthread_mutex_unlock(&x->mu);
    if (first) {
        uint64_t one = 1;
        while (write(x->wake, &one, sizeof(one)) < 0 && errno == EINTR)
            ; /* EAGAIN: the counter is already far from 0, the worker is woken anyway */
    }
    atomic_fetch_sub(&x->finishing, 1); /* x is not touched after this */
}

/* ---- the pool ---- */

#define WRITES_MAX 256 /* plain writes run together */

/* A job's lane of plain writes (a bit): 0 none (a job of its own), 1 usage rows, 2
 * conversations' turns, 4 key lookups. Each lane has one thread at a time: its writes go
 * together, and in their order; the lanes run side by side, so a reservation does not wait for
 * the turns written before it, nor a request's key for either. */
static int lane(const struct gw_store_job *j)
{
    return j->write == NULL             ? 0
           : j->write->key_hash != NULL ? 4
           : j->write->conv != NULL     ? 2
                                        : 1;
}

static void run_job(struct gw_store_job *j, struct gw_store *conn)
{
    if (j->write != NULL)
        gw_store_write_many(conn, &j->write, 1);
    else
        j->run(j, conn);
}

/* j (a plain write, just taken) and the plain writes of its lane still queued, up to
 * WRITES_MAX, off the queue (under the pool's mutex) and into jobs; returns how many. */
static int take_writes(struct gw_store_pool *p, struct gw_store_job *j, struct gw_store_job **jobs)
{
    int n = 0;
    jobs[n++] = j;
    struct gw_store_job **pp = &p->head;
    while (*pp != NULL && n < WRITES_MAX) {
        struct gw_store_job *k = *pp;
        if (lane(k) != lane(j)) {
            pp = &k->next;
            continue;
        }
        *pp = k->next;
        jobs[n++] = k;
    }
    p->tail = NULL; /* the last job left, if any */
    for (struct gw_store_job *k = p->head; k != NULL; k = k->next)
        p->tail = k;
    return n;
}

static void run_writes(struct gw_store_job **jobs, int n, struct gw_store *conn)
{
    struct gw_store_write *w[WRITES_MAX];
    for (int i = 0; i < n; i++)
        w[i] = jobs[i]->write;
    gw_store_write_many(conn, w, n);
    for (int i = 0; i < n; i++)
        finish(jobs[i]);
}

struct thread_arg {
    struct gw_store_pool *p;
    struct gw_store *conn;
};

/* Run the jobs from j on in transactions: as many as one transaction holds. When SQLite ends
 * the transaction by itself while a job runs (disk full, I/O error), that job and those before
 * it in the batch fail with it, and the rest, not run yet, start a new one. Returns how many
 * jobs there were. */
static int run_batch(struct gw_store_job *j, struct gw_store *conn)
{
    int n = 0;
    while (j != NULL) {
        struct gw_store_job *k = j, *rest = NULL;
        int rc = gw_store_tx_begin(conn);
        for (; rc == 0 && k != NULL; k = k->next) {
            run_job(k, conn);
            if (!gw_store_in_tx(conn)) {
                rc = GW_ESTORE;
                rest = k->next;
                break;
            }
        }
        if (rc == 0 && (rc = gw_store_tx_commit(conn)) != 0)
            gw_store_tx_rollback(conn);
        while (j != rest) {
            struct gw_store_job *next = j->next;
            j->batch_rc = rc;
            finish(j);
            j = next;
            n++;
        }
    }
    return n;
}

/* The next job for a thread (under the pool's mutex), off the queue: the first, unless it is a
 * plain write while another thread runs its lane's writes (one at a time: those that queue
 * meanwhile go together next), then the first that is not. NULL: none for now. */
static struct gw_store_job *next_job(struct gw_store_pool *p)
{
    struct gw_store_job **pp = &p->head, *prev = NULL;
    while (*pp != NULL && (p->writing & lane(*pp)) != 0) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    struct gw_store_job *j = *pp;
    if (j == NULL)
        return NULL;
    *pp = j->next;
    if (p->tail == j)
        p->tail = prev;
    return j;
}

/* Wait (under p->mu) until a waker takes t off the idle stack (idle_wake). The thread last to
 * go idle is the first woken: under a light load the same one or two threads, with their
 * connections (a PostgreSQL backend each, its caches warm), serve every job, and the others
 * stay asleep, where a condition variable's own order would pass the work round all of them in
 * turn. */
static void idle_wait(struct gw_store_pool *p, struct idler *t)
{
    t->woken = 0;
    t->next = p->idle;
    p->idle = t;
    while (!t->woken)
        pthread_cond_wait(&t->cv, &p->mu);
}

/* Wake up to n idle threads, the last to go idle first (under p->mu, and signalled under it
 * too: a thread woken cannot go idle again, nor leave and destroy its cv, before the mutex is
 * free). */
static void idle_wake(struct gw_store_pool *p, int n)
{
    for (struct idler *t; n > 0 && (t = p->idle) != NULL; n--) {
        p->idle = t->next;
        t->woken = 1;
        pthread_cond_signal(&t->cv);
    }
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Watch *queued move from seen for at most us; 1 if it did. Each turn yields the CPU to any
 * other thread ready to run on it, so the poll only uses time nobody else wants. */
static int poll_queue(_Atomic unsigned *queued, unsigned seen, int us)
{
    int64_t until = gw_mono_us() + us;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (atomic_load_explicit(queued, memory_order_relaxed) != seen)
                return 1;
            cpu_relax();
        }
        sched_yield();
        if (gw_mono_us() >= until)
            return 0;
    }
}

#define POLL_MIN_US 16  /* a shorter window is not worth a poll: sleep */
#define POLL_BATCH_MAX 2 /* after a larger batch jobs queue while one runs: no poll (it would
                          * only make the next batches smaller) */

/* The batch pool's thread, out of work, under p->mu: poll for the next job (the mutex
 * released meanwhile), then sleep on cv until one comes. A job that comes while the thread
 * polls is taken at once, without the wake-up of a sleeping thread (tens of microseconds on a
 * virtual machine whose idle CPU has halted): at one connection, the settlement after the
 * upstream's answer and the next reservation after it. The window adapts as a hypervisor's
 * halt polling does: a wait that a window of poll_us would have covered doubles it, a longer
 * one halves it; so the thread of a gateway receiving a job every few milliseconds soon sleeps
 * at once, and one receiving them every few hundred microseconds takes each without a wake-up.
 * may_poll: the last batch was small (a busy store's jobs wait for the batch under way). */
static void await_jobs(struct gw_store_pool *p, int *window, int may_poll)
{
    int max = atomic_load_explicit(&p->poll_us, memory_order_relaxed);
    if (p->head != NULL || p->stopping)
        return;
    int64_t t0 = gw_mono_us();
    if (*window > max)
        *window = max;
    if (may_poll && *window >= POLL_MIN_US) {
        unsigned seen = atomic_load_explicit(&p->queued, memory_order_relaxed);
        pthread_mutex_unlock(&p->mu);
        int got = poll_queue(&p->queued, seen, *window);
        pthread_mutex_lock(&p->mu);
        if (got && (p->head != NULL || p->stopping))
            return;
    }
    while (p->head == NULL && !p->stopping) {
        p->sleeping++;
        pthread_cond_wait(&p->cv, &p->mu);
        p->sleeping--;
    }
    if (max < POLL_MIN_US)
        *window = 0;
    else if (gw_mono_us() - t0 < max)
        *window = *window < POLL_MIN_US ? POLL_MIN_US : *window * 2;
    else
        *window /= 2;
}

static void *pool_main(void *arg)
{
    struct thread_arg ta = *(struct thread_arg *)arg;
    struct gw_store_pool *p = ta.p;
    gw_free(arg);
    pthread_setname_np(pthread_self(), p->batch ? "gw-writer" : "gw-store");
    int window = INT_MAX, last = 0; /* the batch pool's poll and its last batch's jobs */
    struct idler me = {.woken = 0};
    pthread_cond_init(&me.cv, NULL);
    for (;;) {
        pthread_mutex_lock(&p->mu);
        if (p->batch) { /* the whole queue, in one transaction */
            await_jobs(p, &window, last <= POLL_BATCH_MAX);
            struct gw_store_job *j = p->head;
            p->head = p->tail = NULL;
            pthread_mutex_unlock(&p->mu);
            if (j == NULL) { /* stopping, and nothing left */
                pthread_cond_destroy(&me.cv);
                return NULL;
            }
            last = run_batch(j, ta.conn);
            continue;
        }
        struct gw_store_job *j;
        while ((j = next_job(p)) == NULL && !(p->stopping && p->head == NULL))
            idle_wait(p, &me);
        if (j == NULL) { /* stopping, and nothing left */
            pthread_mutex_unlock(&p->mu);
            pthread_cond_destroy(&me.cv);
            return NULL;
        }
        if (j->write != NULL) {
            struct gw_store_job *jobs[WRITES_MAX];
            int n = take_writes(p, j, jobs), mine = lane(j);
            p->writing |= mine;
            pthread_mutex_unlock(&p->mu);
            run_writes(jobs, n, ta.conn);
            pthread_mutex_lock(&p->mu);
            p->writing &= ~mine;
            /* stopping: those waiting for the writes to end may leave; else writes queued
             * meanwhile want a thread (this one takes the first itself) */
            idle_wake(p, p->stopping ? INT_MAX : p->head != NULL && p->head->next != NULL);
            pthread_mutex_unlock(&p->mu);
            continue;
        }
        pthread_mutex_unlock(&p->mu);
        j->run(j, ta.conn);
        finish(j);
    }
}

int gw_store_pool_new(const char *url, int n, int batch, struct gw_store_pool **out,
                      struct gw_errbuf *eb)
{
    struct gw_store_pool *p = gw_calloc(1, sizeof(*p));
    int rc = GW_ENOMEM;

    *out = NULL;
    if (p == NULL)
        return GW_ENOMEM;
    p->batch = batch;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = gw_calloc((size_t)n, sizeof(*p->threads));
    p->conns = gw_calloc((size_t)n, sizeof(*p->conns));
    if (p->threads == NULL || p->conns == NULL)
        goto fail;
    for (; p->nconns < n; p->nconns++)
        if ((rc = gw_store_open(url, &p->conns[p->nconns], eb)) != 0 ||
            (batch && (rc = gw_store_writer_mode(p->conns[p->nconns])) != 0))
            goto fail;
    for (int i = 0; i < n; i++) {
        struct thread_arg *ta = gw_malloc(sizeof(*ta));
        if (ta == NULL) {
            rc = GW_ENOMEM;
            goto fail;
        }
        *ta = (struct thread_arg){p, p->conns[i]};
        if (pthread_create(&p->threads[i], NULL, pool_main, ta) != 0) {
            gw_free(ta);
            rc = GW_EIO;
            goto fail;
        }
        p->nthreads++;
    }
    *out = p;
    return 0;
fail:
    gw_store_pool_free(p);
    return rc;
}

void gw_store_pool_poll(struct gw_store_pool *p, int us)
{
    atomic_store_explicit(&p->poll_us, us > 0 ? us : 0, memory_order_relaxed);
}

void gw_store_pool_free(struct gw_store_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    atomic_fetch_add_explicit(&p->queued, 1, memory_order_relaxed); /* ends a poll too */
    pthread_cond_broadcast(&p->cv);
    idle_wake(p, INT_MAX);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    for (int i = 0; i < p->nconns; i++)
        gw_store_free(p->conns[i]);
    gw_free(p->threads);
    gw_free(p->conns);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    gw_free(p);
}

/* ---- executors ---- */

static void on_done_event(evutil_socket_t fd, short what, void *arg)
{
    struct gw_store_exec *x = arg;
    uint64_t n;
    (void)what;
    /* drained before the list is taken: a job finished after the take writes again */
    while (read(fd, &n, sizeof(n)) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&x->mu);
    struct gw_store_job *j = x->done_head;
    x->done_head = NULL;
    pthread_mutex_unlock(&x->mu);
    run_dones(x, j);
}

/* The jobs run inline: their done functions, in their order. Activated from the worker's own
 * loop, this runs in the same turn of it, without a system call. */
static void on_local_event(evutil_socket_t fd, short what, void *arg)
{
    struct gw_store_exec *x = arg;
    (void)fd;
    (void)what;
    struct gw_store_job *j = x->local_head;
    x->local_head = x->local_tail = NULL;
    run_dones(x, j);
}

int gw_store_exec_new(struct event_base *base, struct gw_store *store,
                      struct gw_store_pool *pool, struct gw_store_exec **out)
{
    *out = NULL;
    if (store == NULL && pool == NULL)
        return GW_EINVAL;
    struct gw_store_exec *x = gw_calloc(1, sizeof(*x));
    if (x == NULL)
        return GW_ENOMEM;
    x->base = base;
    x->store = store;
    x->pool = pool;
    pthread_mutex_init(&x->mu, NULL);
    x->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (x->wake < 0) {
        gw_store_exec_free(x);
        return GW_EIO;
    }
    if ((x->ev = event_new(base, x->wake, EV_READ | EV_PERSIST, on_done_event, x)) == NULL ||
        event_add(x->ev, NULL) != 0 ||
        (x->local_ev = event_new(base, -1, 0, on_local_event, x)) == NULL) {
        gw_store_exec_free(x);
        return GW_ENOMEM;
    }
    *out = x;
    return 0;
}

int gw_store_exec_pending(const struct gw_store_exec *x) { return atomic_load(&x->pending); }

void gw_store_exec_drain(struct gw_store_exec *x)
{
    while (atomic_load(&x->pending) > 0)
        event_base_loop(x->base, EVLOOP_ONCE);
    while (atomic_load(&x->finishing) > 0) /* a pool thread between its unlock and return */
        sched_yield();
}

void gw_store_exec_free(struct gw_store_exec *x)
{
    if (x == NULL)
        return;
    if (x->ev != NULL)
        event_free(x->ev);
    if (x->local_ev != NULL)
        event_free(x->local_ev);
    if (x->wake >= 0)
        close(x->wake);
    pthread_mutex_destroy(&x->mu);
    gw_free(x);
}

void gw_store_exec_readers(struct gw_store_exec *x, struct gw_store_pool *readers)
{
    x->readers = readers;
}

void gw_store_submit(struct gw_store_exec *x, struct gw_store_job *j)
{
    j->x = x;
    j->next = NULL;
    j->batch_rc = 0;
    atomic_fetch_add(&x->pending, 1);
    struct gw_store_pool *p = x->pool;
    if (j->heavy && !j->writes && x->readers != NULL) {
        p = x->readers; /* never on the worker's loop, never in the writer's way */
    } else if (x->pool == NULL || (x->store != NULL && !j->writes)) {
        run_job(j, x->store);
        if (append(&x->local_head, &x->local_tail, j))
            event_active(x->local_ev, 0, 0);
        return;
    }
    if (x->corked && p == x->pool) {
        append(&x->cork_head, &x->cork_tail, j);
        return;
    }
    pthread_mutex_lock(&p->mu);
    append(&p->head, &p->tail, j);
    atomic_fetch_add_explicit(&p->queued, 1, memory_order_relaxed);
    int wake = (p->writing & lane(j)) == 0 /* else it goes with its lane's next writes */
               && (!p->batch || p->sleeping > 0);
    if (wake && !p->batch)
        idle_wake(p, 1);
    pthread_mutex_unlock(&p->mu);
    if (wake && p->batch) /* after the unlock: the writer woken does not wait for the mutex */
        pthread_cond_signal(&p->cv);
}

void gw_store_cork(struct gw_store_exec *x) { x->corked = 1; }

void gw_store_uncork(struct gw_store_exec *x)
{
    struct gw_store_pool *p = x->pool;
    x->corked = 0;
    if (x->cork_head == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    if (p->tail != NULL)
        p->tail->next = x->cork_head;
    else
        p->head = x->cork_head;
    p->tail = x->cork_tail;
    atomic_fetch_add_explicit(&p->queued, 1, memory_order_relaxed);
    /* a batch takes all; the others: a thread for each job, and one for each lane's writes */
    int wake = p->batch && p->sleeping > 0, n = 0, lanes = p->writing;
    for (struct gw_store_job *k = x->cork_head; !p->batch && k != NULL; k = k->next) {
        n += (lanes & lane(k)) == 0;
        lanes |= lane(k);
    }
    idle_wake(p, n);
    pthread_mutex_unlock(&p->mu);
    if (wake)
        pthread_cond_signal(&p->cv);
    x->cork_head = x->cork_tail = NULL;
}
