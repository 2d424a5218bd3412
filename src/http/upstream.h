/*
 * http/upstream — libcurl multi driven by a worker's libevent loop (after curl's
 * docs/examples/multi-event.c). One struct gw_upstream per worker thread: one CURLM, so one
 * connection pool per worker, and no locks.
 *
 * Invariants:
 * - Everything runs on the owning worker's thread.
 * - A started transfer's done callback runs exactly once, from the event loop (never from
 *   inside gw_upstream_start), unless the transfer is cancelled first with gw_upstream_cancel,
 *   in which case it never runs.
 */
#ifndef GW_HTTP_UPSTREAM_H
#define GW_HTTP_UPSTREAM_H

#include <curl/curl.h>
#include <event2/event.h>

#include "util/err.h"

struct gw_upstream;

/* Called when a transfer ends; result is curl's code for it. The easy handle is already
 * removed from the multi handle; the callee owns it again. */
typedef void (*gw_upstream_done_cb)(void *arg, CURL *easy, CURLcode result);

/* Create the per-worker multi handle driven by base (borrowed; must outlive it). */
GW_NODISCARD int gw_upstream_new(struct event_base *base, struct gw_upstream **out);
/* Cancel nothing: the caller must have cancelled its transfers. Frees the multi handle. */
void gw_upstream_free(struct gw_upstream *u);
/* Start a configured easy handle (borrowed until done or cancel). */
GW_NODISCARD int gw_upstream_start(struct gw_upstream *u, CURL *easy, gw_upstream_done_cb cb,
                                   void *arg);
/* Stop a running transfer without calling its callback. Safe to call from inside curl's
 * write callback of that same handle? No: defer it (see the pipeline's use). */
void gw_upstream_cancel(struct gw_upstream *u, CURL *easy);
/* Number of running transfers. */
int gw_upstream_running(const struct gw_upstream *u);

#endif
