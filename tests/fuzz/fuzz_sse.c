/*
 * fuzz_sse — util/sse, the event-stream parser every streamed provider answer goes through.
 *
 * Oracle: sse.h promises that the result does not depend on how the input is split. Each
 * input is parsed whole, a byte at a time, and in pieces whose sizes come from the input's
 * own bytes (empty pieces included); the three must dispatch the same events, return the same
 * result and agree on gw_sse_finish. The event cap is small (4 KiB) so that it is reached.
 */
#include <string.h>

#include "common/fz.h"
#include "util/buf.h"
#include "util/sse.h"

#define MAX_EVENT 4096

struct rec {
    struct gw_buf out; /* "name|len|data\n" per event */
    int n;
};

static int on_event(void *arg, const char *event, const char *data, size_t len)
{
    struct rec *r = arg;
    if (data[len] != '\0')
        fz_fail("the event's data is not NUL-terminated at its length");
    r->n++;
    if (gw_buf_printf(&r->out, "%s|%zu|", event, len) != 0 || gw_buf_add(&r->out, data, len) != 0 ||
        gw_buf_add(&r->out, "\n", 1) != 0)
        return -100;
    /* a callback may stop the parse: the 50th event does */
    return r->n == 50 ? 7 : 0;
}

struct run {
    struct rec r;
    int rc, finish;
};

/* Parse data in pieces: step 0 = whole, else pieces of sizes taken from sizes[] cyclically. */
static void parse(const uint8_t *data, size_t size, const uint8_t *sizes, size_t nsizes,
                  struct run *out)
{
    struct gw_sse p;
    memset(out, 0, sizeof(*out));
    gw_buf_init(&out->r.out, 1 << 24);
    gw_sse_init(&p, MAX_EVENT, on_event, &out->r);
    size_t i = 0, k = 0;
    while (out->rc == 0 && i < size) {
        size_t n = nsizes == 0 ? size : sizes[k++ % nsizes] % 17;
        if (n > size - i)
            n = size - i;
        out->rc = gw_sse_feed(&p, (const char *)data + i, n);
        i += n;
        if (k > 4 * size + 64) /* only empty pieces: give up splitting */
            nsizes = 0;
    }
    out->finish = gw_sse_finish(&p);
    gw_sse_cleanup(&p);
}

static void same(const struct run *a, const struct run *b, const char *how)
{
    if (a->rc != b->rc)
        fz_fail("fed %s: result %d, whole: %d", how, b->rc, a->rc);
    if (a->r.out.len != b->r.out.len ||
        (a->r.out.len > 0 && memcmp(a->r.out.data, b->r.out.data, a->r.out.len) != 0))
        fz_fail("fed %s: other events than whole", how);
    if (a->rc == 0 && a->finish != b->finish)
        fz_fail("fed %s: finish %d, whole: %d", how, b->finish, a->finish);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return fz_setup();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t one[] = {1};
    struct run whole, bytes, pieces;

    parse(data, size, NULL, 0, &whole);
    parse(data, size, one, 1, &bytes);
    same(&whole, &bytes, "a byte at a time");
    /* piece sizes from the input itself, reversed, so they differ from its start */
    uint8_t sizes[64];
    size_t ns = size < sizeof(sizes) ? size : sizeof(sizes);
    for (size_t i = 0; i < ns; i++)
        sizes[i] = data[size - 1 - i];
    if (ns > 0) {
        parse(data, size, sizes, ns, &pieces);
        same(&whole, &pieces, "in pieces");
        gw_buf_cleanup(&pieces.r.out);
    }
    gw_buf_cleanup(&whole.r.out);
    gw_buf_cleanup(&bytes.r.out);
    return 0;
}
