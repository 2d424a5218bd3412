/*
 * util/err — error codes and the optional error-detail buffer.
 *
 * Every fallible function returns 0 or a negative enum gw_err. Human detail (a jansson message,
 * SQL text, which field was wrong) goes into an optional struct gw_errbuf supplied by the caller;
 * passing NULL is always allowed. Detail text may be shown to the client only when the function's
 * contract says it describes the client's own input.
 */
#ifndef GW_UTIL_ERR_H
#define GW_UTIL_ERR_H

#include <stddef.h>

#define GW_NODISCARD __attribute__((warn_unused_result))
#define GW_PRINTF(a, b) __attribute__((format(printf, a, b)))

enum gw_err {
    GW_OK = 0,
    GW_ENOMEM = -1,     /* allocation failed */
    GW_EINVAL = -2,     /* invalid argument or input */
    GW_ETOOBIG = -3,    /* a size limit was hit */
    GW_ENOTFOUND = -4,  /* no such object */
    GW_EEXIST = -5,     /* object already exists */
    GW_EIO = -6,        /* I/O or system call failed */
    GW_ESTORE = -7,     /* the store failed to answer */
    GW_EPARSE = -8,     /* malformed input (JSON, YAML, SSE, ...) */
    GW_EUPSTREAM = -9,  /* the provider answered with an error */
    GW_EUNSUPP = -10,   /* feature not supported by this provider/backend */
    GW_EINTERNAL = -11, /* our bug */
    GW_ELIMIT = -12,    /* a limit or budget refused it */
    GW_EDENIED = -13,   /* the credential or its request was refused */
};

/* Return a static description of a gw_err code. */
const char *gw_strerror(int err);

struct gw_errbuf {
    char msg[256];
};

/* Format a detail message into eb (no-op when eb is NULL). Returns nothing. */
void gw_errbuf_set(struct gw_errbuf *eb, const char *fmt, ...) GW_PRINTF(2, 3);

/* Log and return GW_EINTERNAL when cond holds: catches our own bugs, never input errors. */
#define GW_BUG(cond)                                                                               \
    ((cond) ? (gw_log_bug(__FILE__, __LINE__, #cond), GW_EINTERNAL) : 0)
void gw_log_bug(const char *file, int line, const char *what);

#endif
