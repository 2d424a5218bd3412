/*
 * core/call — one chat request in flight, shared by the pipeline's files (internal).
 *
 *   pipeline.c    entry, routing, the list of targets, attempts and fallback, settlement
 *   attempt.c     one upstream attempt: the transfer, its timers, relaying the answer
 *   side_call.c   an upstream call made on the request's behalf (router, summarizer)
 *   router_call.c the LLM router's question
 *   memory.c      conversation memory: history loaded and sent, turns captured
 *
 * A call lives on one worker thread. It has a list of targets (the first choice, then its
 * fallbacks) and makes at most cfg.fallback.max_attempts upstream attempts, one at a time. An
 * attempt ends in exactly one of: an answer the client gets (success, or a failure after the
 * first byte reached the client), or gw_call_attempt_failed() with a struct gw_failure — which
 * either starts the next attempt or answers the client with that failure.
 */
#ifndef GW_CORE_CALL_H
#define GW_CORE_CALL_H

#include <curl/curl.h>
#include <event2/http.h>

#include "core/client.h"
#include "core/gw_int.h"
#include "core/messages.h"
#include "core/request.h"
#include "policy/ledger.h"
#include "policy/limits.h"
#include "store/jobs.h"
#include "providers/provider.h"
#include "route/fallback.h"
#include "route/route.h"
#include "util/buf.h"
#include "util/sse.h"

#define GW_TRAIL_MAX 320

/* How an attempt failed and what the client is told if it is the last word. The strings are
 * static or point into msgbuf; all of them are safe for the client. */
struct gw_failure {
    enum gw_outcome outcome;
    int status;        /* HTTP status for the client */
    const char *type;  /* error.type */
    const char *code;  /* error.code */
    const char *msg;   /* error.message */
    char msgbuf[160];
    int retry_after_s; /* > 0: Retry-After for the client */
    int64_t cooldown_ms; /* > 0: the provider's own Retry-After: the model rests that long */
    int upstream_status; /* what the provider answered (0: no answer) */
    int skip_provider; /* the provider will refuse every model (credential, quota): skip it */
};

struct gw_side_call;
struct gw_memory;
struct gw_idem;

/* An attempt's admission while the store decides (pipeline.c reserve, on_admitted). */
struct gw_call_admission {
    struct gw_admission a;
    struct gw_store_write write; /* its plain write, when it is one */
    struct gw_usage_row row;     /* the row it writes */
    struct gw_usage_row archive; /* and the failed attempt's row it keeps (fallback) */
};

struct gw_call {
    struct gw_worker *w;
    struct gw_call *prev, *next;
    struct gw_client cl;            /* the client (cl.ctx NULL once answered) */
    char rid[72];
    enum gw_dialect dialect;
    struct gw_chat_opts opts;
    const struct gw_key_rec *key;   /* the caller's key: &gw_no_key until looked up, then the
                                     * worker's shared copy (or key_own when that failed) */
    struct gw_key_rec *key_own;     /* the lookup's result, owned until shared */
    struct gw_session_auth *sess;   /* a subject token's signed request: its check */
    const struct gw_tier *tier;     /* the key's tier (NULL: unknown name, no defaults) */
    struct gw_limit_set limits;     /* the key's effective limits: its own, else the tier's */
    int capped;                     /* a token or USD limit applies: requests without max_tokens
                                     * get the capped default sent and reserved */
    struct gw_hold hold;            /* in-memory limits: what the request holds */
    int64_t held_usd, held_tokens;  /* what the request holds in the limits (either kind) */
    int64_t charged_usd;            /* cost of earlier (archived) attempts, micro-USD */
    int64_t charged_tokens;         /* and their tokens */
    struct gw_budget_view budget;   /* the key's tightest budget window, read with the key */
    struct gw_idem *idem;           /* the request's Idempotency-Key (NULL: none) */

    /* store work in flight: at most one at a time (store/jobs.h) */
    struct gw_store_job job;
    void (*job_run)(struct gw_call *c, struct gw_store *s); /* on a store thread */
    void (*job_done)(struct gw_call *c);                    /* then on the worker */
    int job_pending;
    int job_rc;
    int64_t job_t0_us;              /* when it was submitted (the store's latency, metrics) */
    unsigned char key_hash[32];     /* the presented key, hashed, until it is looked up */
    struct gw_store_write key_read; /* its lookup, a plain read (with others on PostgreSQL) */
    json_t *parsed;                 /* the parsed body, until the key is known */
    struct gw_call_admission *adm;  /* an admission in flight (NULL: none; held only while the
                                     * store decides, so that a long stream does not carry it) */
    json_t *canon;
    struct gw_route_req rq;         /* the routing view of canon */
    int64_t input_estimate;
    int64_t t0_us;
    int64_t created;
    char stream_id[96];
    const char *route_method;       /* "explicit" | "heuristic" | "auto_router" | "fallback" */
    int headers_added;              /* the X-LLMGW-* answer headers are set */
    int64_t route_now_ms;           /* the clock routing decides by (read once) */

    /* routing and fallback */
    char route_reason[512];         /* X-LLMGW-Route-Reason ("" for explicit requests) */
    struct gw_route_result heur;    /* the heuristic's decision (auto-routed requests) */
    struct gw_side_call *side;      /* the router's or summarizer's call, while it runs */
    struct gw_memory *mem;          /* conversation memory and capture (NULL: none) */
    const struct gw_model *targets[GW_ROUTE_MAX_TARGETS + 1];
    int ntargets;
    int next_target;                /* index of the next target to try */
    int attempts;                   /* attempts begun */
    char trail[GW_TRAIL_MAX];       /* what failed or was skipped, for X-LLMGW-Fallback */
    struct gw_failure last;         /* the last attempt's failure */
    struct event *retry_ev;         /* backoff between attempts */

    /* the current attempt */
    const struct gw_model *model;
    const struct gw_provider_ops *ops;
    struct gw_timeouts to;          /* this provider's timeouts */
    int pass;                       /* circuit breaker pass (enum gw_breaker_pass) */
    int running;                    /* the transfer is in the worker's curl multi */
    struct gw_upstream_req up;
    CURL *easy;
    struct curl_slist *hdrs;
    struct gw_buf body;             /* whole upstream answer (non-stream, or an error body) */
    struct gw_buf out;              /* what is written to the client from it (answer, chunk) */
    /* The Messages dialect answered by Anthropic: its own events are relayed (relay: those
     * before the reply starts, framed; relay_delta: its message_delta, sent last with the cost) */
    struct gw_buf relay, relay_delta;
    struct gw_sse sse;
    struct gw_stream st;
    struct gw_messages_stream ms; /* the Messages dialect's stream translation */
    /* The Messages dialect: the client's own body (sent as it is to an Anthropic model unless
     * conversation memory changed the messages), and what in it only Anthropic can take */
    json_t *native;
    struct gw_errbuf native_only;
    struct gw_usage usage;          /* non-stream usage */
    struct event *timer_ev;         /* first byte, then silence between bytes */
    long upstream_status;
    int64_t retry_after_ms;         /* the provider's Retry-After header (-1: none) */
    int got_first_byte;
    int64_t alive_us;               /* when upstream bytes last came (from the first on) */
    int reply_started;              /* stream: client has the 200 and some events */
    int sse_error;                  /* our SSE handling aborted the transfer */
    int stream_rc;                  /* what the adapter or the SSE parser reported */
    int paused;                     /* upstream paused until the client catches up */
    int sends;                      /* times curl was about to send this attempt's request */
    int64_t attempt_t0_us;          /* when this attempt's transfer started */
    int reserved;                   /* counted in the reservations in flight (metrics) */
    int64_t emitted_chars;          /* stream text relayed, for estimates when usage is lost */
    int64_t max_out;                /* output tokens sent as the cap and reserved */
    int over_reservation;           /* the stream was cut: it reached its reserved output */
    struct gw_usage_row row;        /* the request's usage row, describing this attempt */
};

/* ---- pipeline.c ---- */
/* Answer the client with JSON (once): the X-LLMGW-* headers, Retry-After when > 0; the bytes
 * are kept for a replay when the request has an Idempotency-Key. */
void gw_call_send_json(struct gw_call *c, int status, const json_t *body, int retry_after);
/* The same with JSON text (len bytes; NULL: an empty body). */
void gw_call_send_text(struct gw_call *c, int status, const char *text, size_t len,
                       int retry_after);
/* Answer the client with an error (once; later calls only record status and code). */
void gw_call_reply_error(struct gw_call *c, int status, const char *type, const char *code,
                         const char *msg, int retry_after);
/* Set the X-LLMGW-* headers of the answer (once, before the first byte of any answer). */
void gw_call_answer_headers(struct gw_call *c);
/* The current attempt failed before any byte reached the client: try the next target or
 * answer with f. Ends the call when nothing is left. */
void gw_call_attempt_failed(struct gw_call *c, const struct gw_failure *f);
/* The current attempt ended with the client answered (ok: the provider behaved). */
void gw_call_attempt_done(struct gw_call *c, int provider_ok);
/* The routing decision is made (after the LLM router, or at once): start the attempts. */
void gw_call_routed(struct gw_call *c, const struct gw_model *router_pick, const char *note);
/* Settle the usage row, log, free the call. */
void gw_call_end(struct gw_call *c);
/* Usage → row tokens and cost for the current model. */
void gw_call_usage_to_row(struct gw_call *c, const struct gw_usage *u);
/* The provider did not (fully) report usage: never record zero for work that was done. */
void gw_call_usage_estimate(struct gw_call *c, struct gw_usage *u);
/* May c's caller use m (allowlists, a configured provider, the pin)? */
int gw_call_model_allowed(const struct gw_call *c, const struct gw_model *m);
/* The limits request for c (key and org scopes, effective limits, now), amounts left 0. */
struct gw_limit_req gw_call_limit_req(struct gw_call *c);
/* Hand store work to the worker's executor: run(c, s) with a store connection, then done(c) on
 * the worker. The call stays alive meanwhile: the client leaving or shutdown answer it (c->req
 * becomes NULL) and done sees that. One job at a time per call. writes: run changes the store
 * (SQLite batches it; done must then check c->job.batch_rc, store/jobs.h). */
void gw_call_submit(struct gw_call *c, int writes,
                    void (*run)(struct gw_call *c, struct gw_store *s), void (*done)(struct gw_call *c));
/* Write a finished usage row and settle what it holds (hold in memory; held_usd in the
 * store) to what it cost, off the request path (copies are taken; nothing of c is kept). */
void gw_call_settle_row(struct gw_call *c, struct gw_hold *hold, const struct gw_usage_row *row,
                        int64_t usd, int64_t tokens, int64_t held_usd, int64_t held_tokens);

/* ---- attempt.c ---- */
/* Start the current attempt's transfer (c->model, c->ops, c->up built). 0 or an error. */
GW_NODISCARD int gw_attempt_start(struct gw_call *c);
/* The client took what was queued (struct gw_client's drained): resume a paused upstream. */
void gw_attempt_client_drained(void *arg);
/* Stop the transfer and its timer without any callback (client gone, shutdown). */
void gw_attempt_cancel(struct gw_call *c);
/* Free the attempt's transfer state and make it ready for the next attempt. */
void gw_attempt_reset(struct gw_call *c);
/* Initialise the per-attempt parts of a new call. */
void gw_attempt_init(struct gw_call *c);
/* Relay-side: end a stream the client already receives (error event, or usage + [DONE]). */
void gw_attempt_finish_stream(struct gw_call *c, const char *err_code, const char *err_msg);
/* The simple endpoint's usage object. New reference. */
json_t *gw_call_usage_json(const struct gw_call *c, const struct gw_usage *u);

/* ---- idem.c ---- */
/* The request's Idempotency-Key header: none (0), taken with a fingerprint of the body's bytes
 * (1: c->idem is set), or malformed (-1: answered 400). */
int gw_idem_begin(struct gw_call *c, const char *body, size_t len);
/* Claim the key (store work); when the claim is ours cont(c) goes on, else the record that
 * stands answers (replay, 409, 422, 502) and the call ends. */
void gw_idem_claim(struct gw_call *c, void (*cont)(struct gw_call *c));
/* What the client gets, kept for replay: the head (status, content type, the kept headers
 * already set on c->req), body bytes, and that the answer is whole. No-ops without a claim. */
void gw_idem_capture_head(struct gw_call *c, int status, const char *content_type);
void gw_idem_capture_body(struct gw_call *c, const void *p, size_t n);
void gw_idem_capture_done(struct gw_call *c);
/* An attempt ended in outcome o (before any byte reached the client). */
void gw_idem_attempt_outcome(struct gw_call *c, enum gw_outcome o);
/* The call is cut short (client gone, shutdown): call before the transfer is stopped. */
void gw_idem_interrupted(struct gw_call *c);
/* The call ends: keep the answer, quarantine the key, or give it back; frees c->idem. */
void gw_idem_end(struct gw_call *c);
/* Worker 0 deletes expired records in the background. */
GW_NODISCARD int gw_idem_purger_start(struct gw_worker *w);
void gw_idem_purger_stop(struct gw_worker *w);

/* ---- side_call.c ---- */
struct gw_side_ops {
    const char *kind;         /* "router" | "summary": the row's kind and endpoint, id suffix */
    const char *route_method; /* recorded on its row */
    /* The answer (canonical chat.completion, borrowed): usable? Else *why (log-safe). It may
     * keep what it needs in arg. */
    int (*accept)(void *arg, const json_t *answer, const char **why);
    /* The end, from the event loop: ok = an accepted answer; sent = the request went out;
     * why = what failed otherwise ("no answer in time", "call does not fit the key's limits").
     * It may go on with the request or end it. arg is freed after it returns. */
    void (*done)(struct gw_call *c, void *arg, int ok, int sent, const char *why);
    void (*free)(void *arg); /* frees arg (NULL: arg is not owned) */
};
/* Send req (a canonical chat request, borrowed; its "model" is set here) to m with at most
 * max_output tokens of answer and timeout_ms for the whole call, after its own admission and
 * usage row. 0: started, arg is the side call's (ops->done comes, or the call is cancelled);
 * otherwise nothing started and arg is still the caller's. */
GW_NODISCARD int gw_side_call_start(struct gw_call *c, const struct gw_side_ops *ops, void *arg,
                                    const struct gw_model *m, json_t *req, int max_output,
                                    int timeout_ms);
/* Stop the side call without a callback; its usage row is settled as cancelled. */
void gw_side_call_cancel(struct gw_call *c);

/* ---- memory.c ---- */
/* After validation (c->canon, c->opts and the key known): set up memory and capture for the
 * request (c->mem; NULL when its org does not capture). -1: refused (answered). */
int gw_memory_begin(struct gw_call *c);
/* Load the conversation (when conversation_id was given), summarize or cut it to the budget,
 * put it before the request's messages, then cont(c); or answer an error and end the call. */
void gw_memory_load(struct gw_call *c, void (*cont)(struct gw_call *c));
/* The answer, for the conversation: a whole canonical chat.completion; the bytes of one (an
 * answer relayed as the provider's bytes) with what the adapter's scan found in them; a
 * canonical stream chunk; a chunk's JSON text with its scan. */
void gw_memory_answer(struct gw_call *c, const json_t *completion);
void gw_memory_answer_raw(struct gw_call *c, const char *body, const struct gw_scan *scan);
void gw_memory_chunk(struct gw_call *c, const json_t *chunk);
void gw_memory_chunk_raw(struct gw_call *c, const char *data, const struct gw_scan *scan);
/* The call ends: a complete answer (status 200) and the request's messages are appended to the
 * conversation (off the request path); c->mem is freed either way. */
void gw_memory_end(struct gw_call *c);
void gw_memory_free(struct gw_memory *m);
/* A conversation owner's name for a key record (subject: a subject session's). 0 or
 * GW_ETOOBIG. */
int gw_memory_owner(const struct gw_key_rec *k, int subject, char *out, size_t outsz);

/* ---- router_call.c ---- */
/* Ask the router model (gw->router_model) to choose among cands; when it has answered, failed
 * or timed out, gw_call_routed() runs from the event loop. Returns 0 when the call started. */
GW_NODISCARD int gw_router_call_start(struct gw_call *c, const struct gw_model *const *cands,
                                      int n);

/* The output reserved for the call: max_out for each choice asked for. */
static inline int64_t gw_call_out_reserved(const struct gw_call *c)
{
    return c->max_out * (c->opts.n > 1 ? c->opts.n : 1);
}

#endif
