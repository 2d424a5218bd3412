/*
 * tests/fuzz/common — what the libFuzzer harnesses share (docs/fuzzing.md).
 *
 * Each harness is tests/fuzz/fuzz_<name>.c: LLVMFuzzerTestOneInput feeds one input to one
 * parser of outside input, frees everything it made (a leak is a failure under ASan), and
 * aborts through fz_fail when an oracle of its own (two parses that must agree, an answer that
 * must be sent once) does not hold.
 *
 * Invariants of the helpers:
 * - The wall clock is pinned (FZ_NOW_MS) for every input, so that timestamps in seeds and
 *   expiries in the fixture's store never go stale.
 * - Logging goes to a sink at debug level: every log line is formatted (and its escaping run)
 *   and nothing is printed.
 * - The mini gateway (struct fz_gw) answers requests without a socket: requests are built by
 *   hand (event2/http_struct.h), the store is an in-memory SQLite database with fixed keys, and
 *   every store job runs inline on the harness's event loop.
 */
#ifndef GW_TESTS_FUZZ_FZ_H
#define GW_TESTS_FUZZ_FZ_H

#include <event2/http.h>
#include <stddef.h>
#include <stdint.h>

#include "core/gw_int.h"
#include "policy/keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The harnesses' wall clock: 2026-12-01T06:59:32.250Z (unix seconds 1796108372). */
#define FZ_NOW_MS 1796108372250LL

/* Once per process: the log sink, the clock. Returns 0 (the LLVMFuzzerInitialize value). */
int fz_setup(void);
/* Set the wall clock back to FZ_NOW_MS (each input may have moved it). */
void fz_pin_clock(void);
/* A NUL-terminated copy of n bytes (free with free()); aborts when out of memory. */
char *fz_strndup(const void *p, size_t n);
/* An oracle failed: print why and abort (libFuzzer saves the input as a crash). */
void fz_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* The path of a file of the repository (rel: "catalog/models.yaml"), found from the harness
 * binary's place (build/fuzz/fuzz_<name>) or else the working directory. */
void fz_repo_path(const char *rel, char *out, size_t outsz);
/* The repository's catalog (catalog/models.yaml), loaded on the first call; aborts when it does
 * not load. Kept for the process. */
struct gw_catalog *fz_catalog(void);
/* A file holding data, for loaders that only take a path: a memfd, rewritten per input. */
const char *fz_file(const void *data, size_t size);

/* ---- the mini gateway ---- */

/* Fixed credentials of the fixture's store. Keys: GW_KEY_PREFIX + 43 base64url characters. */
#define FZ_SUPER_KEY "llmgw_FuzzSuperadminAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define FZ_ADMIN_KEY "llmgw_FuzzAcmeOrgAdminAAAAAAAAAAAAAAAAAAAAAAAAAAA" /* org acme */
#define FZ_MEMBER_KEY "llmgw_FuzzAcmeMemberAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" /* org acme */
#define FZ_OTHER_KEY "llmgw_FuzzGlobexOrgAdminAAAAAAAAAAAAAAAAAAAAAAAAA" /* org globex */
#define FZ_CLIENT_ID "ac_0000000000000000000000a1" /* acme's app client, approved */
#define FZ_ORIGIN "https://app.example.com"       /* its origin */
#define FZ_TOKEN "llmst_FuzzSubjectTokenAAAAAAAAAAAAAAAAAAAAAAAAAAA" /* its session */
#define FZ_CONV_ID "conv-fuzz-1" /* a conversation of the session's subject, and of acme's admin */

struct fz_gw {
    struct event_base *base;
    struct gw gw;
    struct gw_worker w;
    struct gw_store *store;
    unsigned char hmac_key[32]; /* the session's */
    long requests;              /* since the store was (re)made */
};

/* The routes a harness dispatches to (core's: admin, sessions, conversations). Returns 1 when
 * it took the request (and answers it), 0 when not. */
typedef int (*fz_route_fn)(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                           const char *path);

/* Open the fixture: store, seed rows, worker, loop. Aborts on failure. */
void fz_gw_open(struct fz_gw *g);
void fz_gw_close(struct fz_gw *g);

/* Run one request given as text:
 *   METHOD SP URI LF
 *   *(NAME ":" [SP] VALUE LF)
 *   LF
 *   BODY
 * (CR before LF is dropped). A header value "@sign" is replaced by the request's correct
 * X-LLMGW-Signature under the fixture's session key. route is tried first, and refused requests
 * (route returns 0) are answered 404 by the harness. Store work runs to its end; the request
 * must have been answered exactly once (else fz_fail). Inputs that are not of this shape, and
 * paths in skip (a NULL-terminated list of prefixes: routes that stream), are ignored. The store
 * is remade every few thousand requests so that it stays small. With FZ_VERBOSE set in the
 * environment, each request's status is printed (for writing seeds). */
void fz_gw_request(struct fz_gw *g, const uint8_t *data, size_t size, fz_route_fn route,
                   const char *const *skip);

#endif
