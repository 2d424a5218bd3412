/* util/log — levelled logging through a host callback; see log.h. */
#include "util/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "util/err.h"

static gw_log_cb handler;
static void *handler_arg;
static atomic_int max_lvl = GW_LOG_LVL_INFO;

void gw_log_set_handler(gw_log_cb cb, void *arg, int max_level)
{
    handler = cb;
    handler_arg = arg;
    atomic_store(&max_lvl, max_level);
}

int gw_log_enabled(int level) { return handler != NULL && level <= atomic_load(&max_lvl); }

void gw_log(int level, const char *domain, const char *func, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    char line[2048];
    va_list ap;

    if (!gw_log_enabled(level))
        return;
    int n = snprintf(line, sizeof(line), "%s %s %s: ", names[level & 3], domain, func);
    if (n < 0 || (size_t)n >= sizeof(line))
        n = 0;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    handler(handler_arg, level, line);
}

const char *gw_log_escape(char *out, size_t outsz, const char *s, size_t n)
{
    size_t o = 0;

    if (outsz == 0)
        return out;
    for (size_t i = 0; i < n && s != NULL; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];
        size_t k;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            k = 2;
        } else if (c < 0x20 || c == 0x7f) {
            k = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", c);
        } else {
            tmp[0] = (char)c;
            k = 1;
        }
        if (o + k + 4 > outsz) {
            if (outsz >= 4) {
                size_t at = o < outsz - 4 ? o : outsz - 4;
                memcpy(out + at, "...", 3);
                o = at + 3;
            }
            break;
        }
        memcpy(out + o, tmp, k);
        o += k;
    }
    out[o < outsz ? o : outsz - 1] = '\0';
    return out;
}

void gw_log_bug(const char *file, int line, const char *what)
{
    gw_log(GW_LOG_LVL_ERROR, "bug", file, "line %d: %s", line, what);
}

const char *gw_strerror(int err)
{
    switch (err) {
    case GW_OK: return "success";
    case GW_ENOMEM: return "out of memory";
    case GW_EINVAL: return "invalid argument";
    case GW_ETOOBIG: return "size limit exceeded";
    case GW_ENOTFOUND: return "not found";
    case GW_EEXIST: return "already exists";
    case GW_EIO: return "I/O error";
    case GW_ESTORE: return "store unavailable";
    case GW_EPARSE: return "malformed input";
    case GW_EUPSTREAM: return "upstream error";
    case GW_EUNSUPP: return "not supported";
    case GW_EINTERNAL: return "internal error";
    case GW_ELIMIT: return "limit reached";
    case GW_EDENIED: return "refused";
    default: return "unknown error";
    }
}

void gw_errbuf_set(struct gw_errbuf *eb, const char *fmt, ...)
{
    va_list ap;
    if (eb == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(eb->msg, sizeof(eb->msg), fmt, ap);
    va_end(ap);
}

void gw_log_line(int level, const char *line)
{
    if (gw_log_enabled(level))
        handler(handler_arg, level, line);
}
