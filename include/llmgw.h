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
 * The library never reads the environment, never installs signal handlers and never writes
 * to stderr: logs go to the handler installed with llmgw_set_log_handler.
 * Functions return 0 or a negative error code (llmgw_strerror explains it); err buffers, when
 * given, receive a one-line reason.
 */
#ifndef LLMGW_H
#define LLMGW_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LLMGW_API __attribute__((visibility("default")))
#define LLMGW_VERSION "0.1.0"
#define LLMGW_NODISCARD __attribute__((warn_unused_result))

struct llmgw_config;
struct llmgw;

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
/* Serve until llmgw_stop; returns 0 after a clean shutdown. Call once, from one thread. */
LLMGW_API LLMGW_NODISCARD int llmgw_serve(struct llmgw *gw);
/* Ask a serving gateway to stop: listeners close at once, requests in flight get the grace
 * period (timeouts.shutdown_grace_ms). Thread-safe; not async-signal-safe. */
LLMGW_API void llmgw_stop(struct llmgw *gw);
/* Free a gateway that is not serving (NULL is a no-op). */
LLMGW_API void llmgw_free(struct llmgw *gw);
/* The TCP port the gateway listens on (useful after "listen" with port 0). */
LLMGW_API int llmgw_port(const struct llmgw *gw);

/* Route the library's log lines to cb (process-wide; NULL drops them). */
LLMGW_API void llmgw_set_log_handler(void (*cb)(void *arg, int level, const char *line),
                                     void *arg, int max_level);
/* Describe an error code. */
LLMGW_API const char *llmgw_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
