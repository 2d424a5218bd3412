/*
 * store/jobs — store work a worker hands off, so that no worker waits on a database round trip.
 *
 * A job has a run function (does the store work, given a connection) and a done function (runs
 * afterwards on the submitting worker's event loop). Each worker has an executor:
 * - SQLite: reads run inline at once on the worker's thread with the worker's own connection
 *   (calls take microseconds; WAL readers never wait for the writer); writes go to one writer
 *   thread (a pool of one in batch mode), which runs every write queued, from all workers, in
 *   one transaction (group commit: each page is written once per batch, not once per row);
 * - PostgreSQL: every job runs on one of a few pool threads, each with its own connection.
 * done is handed back to the worker's loop in every case.
 *
 * Invariants:
 * - done runs exactly once per submitted job, on the worker's thread, never from inside
 *   gw_store_submit; jobs of one worker finish in no particular order.
 * - A job's memory belongs to the submitter until its done has started.
 * - A batched write's batch_rc is the result of its transaction: non-zero means what the job
 *   wrote is lost (or, if BEGIN failed, that run never ran), and done must treat the job as
 *   failed whatever run reported.
 * - Before a worker frees its executor it drains it: every submitted job has run and its done
 *   has been called.
 */
#ifndef GW_STORE_JOBS_H
#define GW_STORE_JOBS_H

#include <event2/event.h>

#include "store/store.h"
#include "util/err.h"

struct gw_store_job;
struct gw_store_pool;
struct gw_store_exec;

typedef void (*gw_store_job_run)(struct gw_store_job *j, struct gw_store *s);
typedef void (*gw_store_job_done)(struct gw_store_job *j);

struct gw_store_job {
    gw_store_job_run run;
    gw_store_job_done done;
    int writes;                /* set by the submitter: the job changes the store */
    int heavy;                 /* set by the submitter: a read that may take long (an admin
                                * query, an export's page): it runs on the executor's readers'
                                * pool when there is one, never inline on the worker's loop */
    struct gw_store_write *write; /* set by the submitter: a plain write instead of run; a
                                   * pool thread runs those queued together (one statement on
                                   * PostgreSQL), and each finds its result in write->rc */
    int batch_rc;              /* set by the executor: 0, or its batch's transaction failed */
    struct gw_store_job *next; /* private: queue and done-list link */
    struct gw_store_exec *x;   /* private: the executor it was submitted to */
};

/* n threads, each with its own connection to url (opened now: errors show at start-up).
 * batch: each thread runs all the jobs queued when it wakes in one transaction (SQLite's
 * writer: n = 1). */
GW_NODISCARD int gw_store_pool_new(const char *url, int n, int batch, struct gw_store_pool **out,
                                   struct gw_errbuf *eb);
/* A batch pool's thread, out of work, polls for the next job up to us microseconds (adapting
 * the window to how often jobs come) before it sleeps; 0 (the default): it sleeps at once. */
void gw_store_pool_poll(struct gw_store_pool *p, int us);
/* Stop the threads after the queue has emptied. Executors using it must be drained first. */
void gw_store_pool_free(struct gw_store_pool *p);

/* An executor for the worker whose loop is base. store (borrowed, the worker's connection, may
 * be NULL): reads run inline on it; pool (may be NULL): writes run there, and reads too when
 * store is NULL. At least one is given. */
GW_NODISCARD int gw_store_exec_new(struct event_base *base, struct gw_store *store,
                                   struct gw_store_pool *pool, struct gw_store_exec **out);
/* A pool for heavy reads (SQLite: a reader thread or two with their own connections, so that
 * admin queries and exports neither stall a worker's loop nor queue before the writer's
 * reservations). NULL: heavy reads run like any other read. */
void gw_store_exec_readers(struct gw_store_exec *x, struct gw_store_pool *readers);
/* Run the worker's loop until every submitted job is done (for shutdown). */
void gw_store_exec_drain(struct gw_store_exec *x);
/* Jobs submitted and not yet done. */
int gw_store_exec_pending(const struct gw_store_exec *x);
void gw_store_exec_free(struct gw_store_exec *x);

/* Submit j (run and done set). Never fails and allocates nothing: a pooled job waits in the
 * queue for a thread. */
void gw_store_submit(struct gw_store_exec *x, struct gw_store_job *j);
/* Between cork and uncork, jobs submitted for the pool are held on the worker and handed over
 * together at uncork, with one wake-up: the writer then commits them in one transaction
 * instead of waking for the first and committing the others after it. */
void gw_store_cork(struct gw_store_exec *x);
void gw_store_uncork(struct gw_store_exec *x);

#endif
