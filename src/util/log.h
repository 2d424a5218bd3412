/*
 * util/log — levelled logging through a host callback.
 *
 * The library never writes to stderr itself: the embedding program (or the CLI) installs a
 * handler with gw_log_set_handler. Lines must never contain API keys, Authorization headers,
 * provider credentials or prompt text. Untrusted text is escaped with gw_log_escape first.
 */
#ifndef GW_UTIL_LOG_H
#define GW_UTIL_LOG_H

#include <stddef.h>

#include "util/err.h"

enum gw_log_level { GW_LOG_LVL_ERROR = 0, GW_LOG_LVL_WARN, GW_LOG_LVL_INFO, GW_LOG_LVL_DEBUG };

typedef void (*gw_log_cb)(void *arg, int level, const char *line);

/* Install the process-wide handler (NULL drops logs) and the most verbose level passed on. */
void gw_log_set_handler(gw_log_cb cb, void *arg, int max_level);
/* Is a message at level passed on? Cheap; use it before building expensive arguments. */
int gw_log_enabled(int level);
void gw_log(int level, const char *domain, const char *func, const char *fmt, ...)
    GW_PRINTF(4, 5);

/* Pass a whole line on as it is (a JSON object: the access log's one line per request). */
void gw_log_line(int level, const char *line);

#define GW_LOG_ERROR(dom, ...) gw_log(GW_LOG_LVL_ERROR, dom, __func__, __VA_ARGS__)
#define GW_LOG_WARN(dom, ...) gw_log(GW_LOG_LVL_WARN, dom, __func__, __VA_ARGS__)
#define GW_LOG_INFO(dom, ...) gw_log(GW_LOG_LVL_INFO, dom, __func__, __VA_ARGS__)
#define GW_LOG_DEBUG(dom, ...) gw_log(GW_LOG_LVL_DEBUG, dom, __func__, __VA_ARGS__)

/* Copy at most n bytes of untrusted text into out (size outsz), escaping control characters,
 * quotes and backslashes, truncating with "..." when it does not fit. Returns out. */
const char *gw_log_escape(char *out, size_t outsz, const char *s, size_t n);

#endif
