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
#include <stdint.h>

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

/* If the header line (as curl hands it over: "Name: value\r\n") is a Retry-After —
 * "retry-after: <seconds>" or "<HTTP-date>", or OpenAI's "retry-after-ms: <ms>" — return the
 * delay it asks for in ms (at most a day; a date in the past gives 0); otherwise -1. */
int64_t gw_upstream_retry_after_ms(const char *line, size_t len, int64_t now_ms);

/* Options of one upstream POST. */
struct gw_easy_opts {
    const char *url;           /* borrowed until the transfer ends */
    const char *const *headers; /* "Name: value" lines, borrowed only during the call */
    int nheaders;
    const char *body;          /* borrowed until the transfer ends */
    size_t body_len;
    int sse;                   /* ask for text/event-stream */
    long connect_ms, total_ms;
    curl_write_callback on_write, on_header; /* on_header NULL: the headers are dropped */
    void *arg;                 /* for both callbacks */
};

/* Make a configured easy handle for o: TLS verification on, redirects off, http(s) only, no
 * "Expect: 100-continue". *easy (one of u's spares when it has one; u may be NULL) and *hdrs
 * are new: give both back with gw_upstream_easy_free. Returns 0 or GW_ENOMEM. */
GW_NODISCARD int gw_upstream_easy_new(struct gw_upstream *u, const struct gw_easy_opts *o,
                                      CURL **easy, struct curl_slist **hdrs);
/* Give back an easy handle made by gw_upstream_easy_new (not running; kept as a spare of u
 * when there is room, reset) and free its header list, wiping the header values (they hold
 * credentials). NULLs are fine. */
void gw_upstream_easy_free(struct gw_upstream *u, CURL *easy, struct curl_slist *hdrs);

#endif
