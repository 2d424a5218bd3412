/*
 * store/walvfs — see walvfs.h.
 *
 * A WAL file opened through this VFS is a struct wal_file followed by the default VFS's own
 * file object, which does the I/O. The run being gathered is buf[0, len), to be written at
 * file offset off; expect_page says the last thing gathered was a frame header (its page comes
 * next) and commit that this header ends a transaction. Any other file is the default VFS's
 * file object itself (the size SQLite allocates, szOsFile, fits both).
 */
#include "store/walvfs.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/mem.h"

#define FRAME_HDR 24
/* A longer transaction is written in runs of at most this size. Below 128 KiB: the unix VFS
 * writes at most 128 KiB - 1 bytes a call and takes a longer write for a full disk. */
#define RUN_MAX (120 * 1024)

struct wal_file {
    sqlite3_file base;
    unsigned char *buf;
    size_t len, cap;
    sqlite3_int64 off;
    size_t page; /* the size of the run's pages, once it has one */
    int expect_page, commit;
    _Alignas(8) unsigned char real[]; /* the default VFS's file object */
};

#define REAL(f) ((sqlite3_file *)((struct wal_file *)(f))->real)

#ifdef GW_TEST_HOOKS
_Atomic long gw_walvfs_test_writes; /* the writes to WAL files that reached the default VFS */
#define COUNT_WRITE() (void)gw_walvfs_test_writes++
#else
#define COUNT_WRITE() (void)0
#endif
#define ORIG(vfs) ((sqlite3_vfs *)(vfs)->pAppData)

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Write out the run gathered (if any); the run is empty afterwards either way. */
static int run_flush(struct wal_file *w)
{
    if (w->len == 0)
        return SQLITE_OK;
    sqlite3_file *r = REAL(w);
    COUNT_WRITE();
    int rc = r->pMethods->xWrite(r, w->buf, (int)w->len, w->off);
    w->len = 0;
    w->expect_page = w->commit = 0;
    w->page = 0;
    return rc;
}

static int run_add(struct wal_file *w, const void *data, size_t amt)
{
    if (w->len + amt > w->cap) {
        size_t cap = w->cap ? w->cap : 16 * 1024;
        while (cap < w->len + amt)
            cap *= 2;
        unsigned char *nb = gw_realloc(w->buf, cap);
        if (nb == NULL)
            return -1;
        w->buf = nb;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, data, amt);
    w->len += amt;
    return 0;
}

static int is_page_size(int amt) { return amt >= 512 && amt <= 65536 && (amt & (amt - 1)) == 0; }

static int wal_write(sqlite3_file *f, const void *data, int amt, sqlite3_int64 off)
{
    struct wal_file *w = (struct wal_file *)f;
    sqlite3_file *r = REAL(f);
    int rc;

    /* the run goes on with a frame's page, or with the header of a frame whose page fits too */
    if (w->len > 0 && off == w->off + (sqlite3_int64)w->len) {
        if (w->expect_page && is_page_size(amt) && w->len + (size_t)amt <= RUN_MAX) {
            if (run_add(w, data, (size_t)amt) == 0) {
                w->expect_page = 0;
                w->page = (size_t)amt;
                return w->commit ? run_flush(w) : SQLITE_OK;
            }
        } else if (!w->expect_page && amt == FRAME_HDR &&
                   w->len + FRAME_HDR + w->page <= RUN_MAX) {
            if (run_add(w, data, FRAME_HDR) == 0) {
                w->expect_page = 1;
                w->commit = be32((const unsigned char *)data + 4) != 0;
                return SQLITE_OK;
            }
        }
    }
    if ((rc = run_flush(w)) != SQLITE_OK)
        return rc;
    /* a run starts with the header of a frame that does not commit */
    if (amt == FRAME_HDR && be32((const unsigned char *)data + 4) == 0 &&
        run_add(w, data, FRAME_HDR) == 0) {
        w->off = off;
        w->expect_page = 1;
        return SQLITE_OK;
    }
    COUNT_WRITE();
    return r->pMethods->xWrite(r, data, amt, off);
}

static int wal_close(sqlite3_file *f)
{
    struct wal_file *w = (struct wal_file *)f;
    sqlite3_file *r = REAL(f);
    int rc = run_flush(w);
    int rc2 = r->pMethods->xClose(r);
    gw_free(w->buf);
    w->buf = NULL;
    w->cap = 0;
    return rc != SQLITE_OK ? rc : rc2;
}

static int wal_read(sqlite3_file *f, void *data, int amt, sqlite3_int64 off)
{
    int rc = run_flush((struct wal_file *)f);
    return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xRead(REAL(f), data, amt, off);
}

static int wal_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    int rc = run_flush((struct wal_file *)f);
    return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int wal_sync(sqlite3_file *f, int flags)
{
    int rc = run_flush((struct wal_file *)f);
    return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int wal_size(sqlite3_file *f, sqlite3_int64 *size)
{
    int rc = run_flush((struct wal_file *)f);
    return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int wal_control(sqlite3_file *f, int op, void *arg)
{
    int rc = run_flush((struct wal_file *)f);
    return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int wal_lock(sqlite3_file *f, int level) { return REAL(f)->pMethods->xLock(REAL(f), level); }

static int wal_unlock(sqlite3_file *f, int level)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), level);
}

static int wal_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int wal_sector(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }

static int wal_device(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

/* version 1: the WAL file is never memory-mapped and has no shared memory of its own (both
 * belong to the database file) */
static const sqlite3_io_methods wal_methods = {
    .iVersion = 1,
    .xClose = wal_close,
    .xRead = wal_read,
    .xWrite = wal_write,
    .xTruncate = wal_truncate,
    .xSync = wal_sync,
    .xFileSize = wal_size,
    .xLock = wal_lock,
    .xUnlock = wal_unlock,
    .xCheckReservedLock = wal_reserved,
    .xFileControl = wal_control,
    .xSectorSize = wal_sector,
    .xDeviceCharacteristics = wal_device,
};

static int vfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
                    int *out_flags)
{
    sqlite3_vfs *orig = ORIG(vfs);
    if ((flags & SQLITE_OPEN_WAL) == 0)
        return orig->xOpen(orig, name, f, flags, out_flags);
    struct wal_file *w = (struct wal_file *)f;
    sqlite3_file *r = REAL(f);
    memset(w, 0, offsetof(struct wal_file, real));
    int rc = orig->xOpen(orig, name, r, flags, out_flags);
    if (rc != SQLITE_OK) {
        if (r->pMethods != NULL)
            r->pMethods->xClose(r);
        f->pMethods = NULL;
        return rc;
    }
    f->pMethods = &wal_methods;
    return SQLITE_OK;
}

/* The rest is the default VFS's, called with its own object. */
static int vfs_delete(sqlite3_vfs *v, const char *name, int sync)
{
    return ORIG(v)->xDelete(ORIG(v), name, sync);
}

static int vfs_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    return ORIG(v)->xAccess(ORIG(v), name, flags, out);
}

static int vfs_full(sqlite3_vfs *v, const char *name, int n, char *out)
{
    return ORIG(v)->xFullPathname(ORIG(v), name, n, out);
}

static void *vfs_dlopen(sqlite3_vfs *v, const char *name)
{
    return ORIG(v)->xDlOpen(ORIG(v), name);
}

static void vfs_dlerror(sqlite3_vfs *v, int n, char *msg) { ORIG(v)->xDlError(ORIG(v), n, msg); }

static void (*vfs_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    return ORIG(v)->xDlSym(ORIG(v), h, sym);
}

static void vfs_dlclose(sqlite3_vfs *v, void *h) { ORIG(v)->xDlClose(ORIG(v), h); }

static int vfs_random(sqlite3_vfs *v, int n, char *out)
{
    return ORIG(v)->xRandomness(ORIG(v), n, out);
}

static int vfs_sleep(sqlite3_vfs *v, int us) { return ORIG(v)->xSleep(ORIG(v), us); }

static int vfs_time(sqlite3_vfs *v, double *out) { return ORIG(v)->xCurrentTime(ORIG(v), out); }

static int vfs_lasterr(sqlite3_vfs *v, int n, char *out)
{
    return ORIG(v)->xGetLastError(ORIG(v), n, out);
}

static int vfs_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    return ORIG(v)->xCurrentTimeInt64(ORIG(v), out);
}

static sqlite3_vfs wal_vfs;
static const char *registered;

static void vfs_register(void)
{
    sqlite3_vfs *orig = sqlite3_vfs_find(NULL);
    /* the default VFS of every SQLite build on Linux is version 3 (unix); one older than 2
     * is left alone (this VFS is version 2 and forwards those methods) */
    if (orig == NULL || orig->iVersion < 2)
        return;
    wal_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)(offsetof(struct wal_file, real) + (size_t)orig->szOsFile),
        .mxPathname = orig->mxPathname,
        .zName = "llmgw-wal",
        .pAppData = orig,
        .xOpen = vfs_open,
        .xDelete = vfs_delete,
        .xAccess = vfs_access,
        .xFullPathname = vfs_full,
        .xDlOpen = vfs_dlopen,
        .xDlError = vfs_dlerror,
        .xDlSym = vfs_dlsym,
        .xDlClose = vfs_dlclose,
        .xRandomness = vfs_random,
        .xSleep = vfs_sleep,
        .xCurrentTime = vfs_time,
        .xGetLastError = vfs_lasterr,
        .xCurrentTimeInt64 = vfs_time64,
    };
    if (sqlite3_vfs_register(&wal_vfs, 0) == SQLITE_OK)
        registered = wal_vfs.zName;
}

const char *gw_walvfs_name(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, vfs_register);
    return registered;
}
