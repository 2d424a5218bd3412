/*
 * llmgw.h — the gateway as a library (embedded mode).
 *
 * A program builds a configuration, creates the gateway, and serves it on its own threads:
 *
 *     struct llmgw_config *cfg;
 *     struct llmgw *gw;
 *     char err[256];
 *     llmgw_config_new(&cfg);
 *     llmgw_config_set(cfg, "listen", "127.0.0.1:8080", err, sizeof(err));
 *     llmgw_config_set(cfg, "providers.openai.api_key", key, err, sizeof(err));
 *     if (llmgw_new(cfg, &gw, err, sizeof(err)) == 0) {   // cfg is copied
 *         llmgw_serve(gw);      // blocks until llmgw_stop(gw) from another thread
 *         llmgw_free(gw);
 *     }
 *     llmgw_config_free(cfg);
 *
 * Or, without a server (listen "none"), it runs chat requests in-process: the same pipeline
 * (authentication, policy, quotas, idempotency, conversation memory, routing, fallback, cost)
 * as POST /v1/chat/completions, on the host's libevent loop (llmgw_attach) or on a thread of
 * its own (llmgw_start):
 *
 *     llmgw_config_set(cfg, "listen", "none", err, sizeof(err));
 *     ... llmgw_new(cfg, &gw, err, sizeof(err)); llmgw_start(gw);
 *     struct llmgw_chat_opts o = { .api_key = "llmgw_..." };
 *     int status; char *body; size_t len;
 *     if (llmgw_chat_sync(gw, json, strlen(json), &o, &status, &body, &len) == 0) {
 *         ... status 200: body is the chat.completion JSON ...
 *         llmgw_buf_free(body);
 *     }
 *
 * Thread rules: llmgw_chat and llmgw_cancel run on the loop's thread (the host's in attach
 * mode; in own-thread mode only from inside the callbacks); llmgw_chat_sync runs on any other
 * thread. Callbacks run on the loop's thread. Two gateways in one process share nothing.
 *
 * The library never reads the environment, never installs signal handlers and never writes
 * to stderr: logs go to the handler installed with llmgw_set_log_handler.
 * Functions return 0 or a negative error code (llmgw_strerror explains it); err buffers, when
 * given, receive a one-line reason.
 */
#ifndef LLMGW_H
#define LLMGW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LLMGW_API __attribute__((visibility("default")))
#define LLMGW_VERSION "0.1.0"
#define LLMGW_NODISCARD __attribute__((warn_unused_result))

struct llmgw_config;
struct llmgw;
struct llmgw_call;
struct event_base;

/* Error codes (negative; 0 is success). */
enum llmgw_err {
    LLMGW_OK = 0,
    LLMGW_ENOMEM = -1,    /* out of memory */
    LLMGW_EINVAL = -2,    /* invalid argument, or a call from the wrong thread or state */
    LLMGW_ETOOBIG = -3,   /* a size limit was hit */
    LLMGW_ENOTFOUND = -4,
    LLMGW_EEXIST = -5,    /* already there (attached, started) */
    LLMGW_EIO = -6,       /* a system call failed */
    LLMGW_ESTORE = -7,    /* the store failed to answer */
    LLMGW_EPARSE = -8,
    LLMGW_EUPSTREAM = -9,
    LLMGW_EUNSUPP = -10,
    LLMGW_EINTERNAL = -11,
    LLMGW_ELIMIT = -12,
    LLMGW_EDENIED = -13,
};

enum llmgw_log_level { LLMGW_LOG_ERROR = 0, LLMGW_LOG_WARN, LLMGW_LOG_INFO, LLMGW_LOG_DEBUG };

/* Create a configuration holding the defaults (see the README's configuration table). */
LLMGW_API LLMGW_NODISCARD int llmgw_config_new(struct llmgw_config **out);
/* Free a configuration (NULL is a no-op); secrets in it are wiped. */
LLMGW_API void llmgw_config_free(struct llmgw_config *cfg);
/* Apply a YAML configuration file over cfg. Unknown keys are errors. */
LLMGW_API LLMGW_NODISCARD int llmgw_config_load_file(struct llmgw_config *cfg, const char *path,
                                                     char *err, size_t errsz);
/* Set one setting by dotted name: listen, db, workers, catalog, mode,
 * limits.max_body_bytes, timeouts.first_byte_ms, providers.<name>.api_key, ... */
LLMGW_API LLMGW_NODISCARD int llmgw_config_set(struct llmgw_config *cfg, const char *name,
                                               const char *value, char *err, size_t errsz);

/* Create a gateway from cfg (copied): loads the catalog, opens and migrates the store, marks
 * reservations left by a dead process as uncertain, binds the listening sockets. */
LLMGW_API LLMGW_NODISCARD int llmgw_new(const struct llmgw_config *cfg, struct llmgw **out,
                                        char *err, size_t errsz);
/* Serve until llmgw_stop; returns 0 after a clean shutdown. Call once, from one thread.
 * EINVAL with listen "none" (no server). */
LLMGW_API LLMGW_NODISCARD int llmgw_serve(struct llmgw *gw);
/* Ask a serving gateway to stop: listeners close at once, requests in flight get the grace
 * period (timeouts.shutdown_grace_ms); the loop of llmgw_start ends (its calls in flight are
 * answered 503). Thread-safe; not async-signal-safe. */
LLMGW_API void llmgw_stop(struct llmgw *gw);
/* Free a gateway that is not serving (NULL is a no-op); stops and joins llmgw_start's thread.
 * An attached gateway must be detached first. */
LLMGW_API void llmgw_free(struct llmgw *gw);
/* The TCP port the gateway listens on (useful after "listen" with port 0); -1 with "none". */
LLMGW_API int llmgw_port(const struct llmgw *gw);

/* ---- in-process chat (embedded mode) ---- */

/* Run the in-process pipeline on base (borrowed; must outlive the attachment), from base's
 * thread: chat calls then run on that loop. For llmgw_chat_sync from other threads, base
 * must have been created after evthread_use_pthreads(). EEXIST when already attached. */
LLMGW_API LLMGW_NODISCARD int llmgw_attach(struct llmgw *gw, struct event_base *base);
/* End the attachment, from the loop's thread: calls in flight are answered 503
 * shutting_down, and every on_done still due runs before this returns. */
LLMGW_API void llmgw_detach(struct llmgw *gw);
/* Run the in-process pipeline on a thread and loop of the gateway's own, until llmgw_stop or
 * llmgw_free. EEXIST when already attached or started. */
LLMGW_API LLMGW_NODISCARD int llmgw_start(struct llmgw *gw);

/* The end of a call, for on_done (borrowed: valid during the callback only). */
struct llmgw_result {
    int status;             /* what the HTTP endpoint would answer: 200, 400, 401, 429, 502,
                             * ... 499 when cancelled; a stream that began is 200 (an error
                             * after that came as its last chunk) */
    const char *body;       /* not a stream: the answer's bytes, NUL-terminated (the JSON
                             * chat.completion or {"error":{...}} and a newline); a stream: NULL */
    size_t body_len;
    const char *headers;    /* the answer's headers, "Name: value\n" each, NUL-terminated
                             * (Content-Type, X-Request-Id, X-LLMGW-Route-Reason, Retry-After,
                             * ...) */
    const char *request_id;
};

struct llmgw_chat_opts {
    /* The caller, one of: a gateway API key (copied), or a subject the host has authenticated
     * itself — subject (e.g. its user id) of app client app_client_id (both copied), run with
     * that client's allowlists and its org's policy and limits, as a subject session's request
     * is. A revoked or unapproved app client is refused (403 app_client_revoked). */
    const char *api_key;
    const char *app_client_id;
    const char *subject;
    const char *idempotency_key; /* as the Idempotency-Key header (copied; NULL: none) */
    /* A streamed request ("stream": true): each event's data, a chat.completion.chunk (or an
     * error object) as JSON text, len bytes, not NUL-terminated; the final [DONE] is not
     * passed. Runs synchronously: the pipeline waits while it runs (that is the
     * backpressure). May call llmgw_cancel, not llmgw_free/detach. NULL: chunks dropped. */
    void (*on_chunk)(void *arg, const char *data, size_t len);
    /* The end, exactly once per successful llmgw_chat, never from inside it (required for
     * llmgw_chat; ignored by llmgw_chat_sync). The call handle is freed after it returns. */
    void (*on_done)(void *arg, const struct llmgw_result *r);
    void *arg;                   /* for both callbacks */
};

/* Start a chat request: json (len bytes, copied) is the OpenAI chat-completions body, with
 * the gateway's fields (auto_route, conversation_id, ...) as the HTTP endpoint takes them.
 * From the loop's thread. 0: on_done will run, *out (may be NULL) is the call's handle until
 * on_done starts; otherwise no callback runs (EINVAL: not attached or started, a required
 * option missing; ETOOBIG: the body is over limits.max_body_bytes; ENOMEM). Refusals
 * (401, 429, a bad body) come through on_done, as HTTP answers would. */
LLMGW_API LLMGW_NODISCARD int llmgw_chat(struct llmgw *gw, const char *json, size_t len,
                                         const struct llmgw_chat_opts *o,
                                         struct llmgw_call **out);
/* Cancel a call (from the loop's thread, also from its on_chunk): the upstream transfer stops
 * and on_done runs soon with status 499, unless the call already ended. */
LLMGW_API void llmgw_cancel(struct llmgw_call *call);
/* Run a chat request and wait for its end, from any thread but the loop's (the gateway must be
 * started or attached). *status gets the status, *body a new buffer (free with llmgw_buf_free;
 * NULL for a stream, whose chunks go to o->on_chunk on the loop's thread) of *body_len bytes.
 * 0, or an error with nothing returned. */
LLMGW_API LLMGW_NODISCARD int llmgw_chat_sync(struct llmgw *gw, const char *json, size_t len,
                                              const struct llmgw_chat_opts *o, int *status,
                                              char **body, size_t *body_len);
/* Free a buffer the library returned (NULL is a no-op). */
LLMGW_API void llmgw_buf_free(char *p);

struct llmgw_stats {
    uint64_t calls;     /* in-process calls started */
    uint64_t ok;        /* ended with status 200 */
    uint64_t failed;    /* ended with another status (cancelled ones included) */
    uint64_t cancelled; /* ended with status 499 */
    uint64_t inflight;  /* started, on_done not run yet */
};
/* The in-process calls' counters (any thread). */
LLMGW_API void llmgw_stats(const struct llmgw *gw, struct llmgw_stats *out);

/* Route the library's log lines to cb (process-wide; NULL drops them). libevent's own lines
 * (which it would write to stderr) come here too: the first llmgw_set_log_handler or llmgw_new
 * installs a process-wide event_set_log_callback once; a host that wants libevent's lines
 * itself sets its own callback after that. */
LLMGW_API void llmgw_set_log_handler(void (*cb)(void *arg, int level, const char *line),
                                     void *arg, int max_level);
/* Describe an error code. */
LLMGW_API const char *llmgw_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
