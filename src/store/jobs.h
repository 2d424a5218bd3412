/*
 * store/jobs — store work a worker hands off, so that no worker waits on a database round trip.
 *
 * A job has a run function (does the store work, given a connection) and a done function (runs
 * afterwards on the submitting worker's event loop). Each worker has an executor:
 * - inline (SQLite: calls take microseconds): run happens at once on the worker's thread with
 *   the worker's own connection; done follows from the event loop;
 * - pooled (PostgreSQL): run happens on one of a few pool threads, each with its own
 *   connection; done is handed back to the worker's loop.
 *
 * Invariants:
 * - done runs exactly once per submitted job, on the worker's thread, never from inside
 *   gw_store_submit; jobs of one worker finish in no particular order.
 * - A job's memory belongs to the submitter until its done has started.
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
    struct gw_store_job *next; /* private: queue and done-list link */
    struct gw_store_exec *x;   /* private: the executor it was submitted to */
};

/* n threads, each with its own connection to url (opened now: errors show at start-up). */
GW_NODISCARD int gw_store_pool_new(const char *url, int n, struct gw_store_pool **out,
                                   struct gw_errbuf *eb);
/* Stop the threads after the queue has emptied. Executors using it must be drained first. */
void gw_store_pool_free(struct gw_store_pool *p);

/* An executor for the worker whose loop is base: pooled when pool is not NULL, else inline on
 * store (borrowed, the worker's connection). */
GW_NODISCARD int gw_store_exec_new(struct event_base *base, struct gw_store *store,
                                   struct gw_store_pool *pool, struct gw_store_exec **out);
/* Run the worker's loop until every submitted job is done (for shutdown). */
void gw_store_exec_drain(struct gw_store_exec *x);
/* Jobs submitted and not yet done. */
int gw_store_exec_pending(const struct gw_store_exec *x);
void gw_store_exec_free(struct gw_store_exec *x);

/* Submit j (run and done set). Never fails and allocates nothing: a pooled job waits in the
 * queue for a thread. */
void gw_store_submit(struct gw_store_exec *x, struct gw_store_job *j);

#endif
