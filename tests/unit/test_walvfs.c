/* The WAL-gathering VFS (store/walvfs): a commit reaches the file in one write, and nothing a
 * reader, a checkpoint or a crash sees differs from SQLite's own writes: every commit is in the
 * file when COMMIT returns (checked by a second connection with SQLite's default VFS, and by a
 * child process killed at random moments), through transactions that spill pages to the WAL
 * before they commit, rewrite frames they wrote, roll back, outgrow the gathered run, and WAL
 * restarts after checkpoints. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/walvfs.h"

extern _Atomic long gw_walvfs_test_writes;

struct fx {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/llmgw-walvfs-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, err ? err : sqlite3_errstr(rc));
}

static int64_t one_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* vfs: NULL for SQLite's default. Small pages and a small cache, so that transactions spill. */
static sqlite3 *open_db(const char *path, const char *vfs, int cache_pages)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                     SQLITE_OK);
    char sql[200];
    snprintf(sql, sizeof(sql),
             "PRAGMA page_size=1024; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
             "PRAGMA cache_size=%d; PRAGMA wal_autocheckpoint=0",
             cache_pages);
    exec_ok(db, sql);
    exec_ok(db, "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL, "
                "n INTEGER NOT NULL); CREATE INDEX IF NOT EXISTS t_v ON t(v)");
    return db;
}

static const char *vfs_name(void)
{
    const char *name = gw_walvfs_name();
    assert_non_null(name);
    assert_string_equal(gw_walvfs_name(), name); /* registered once */
    return name;
}

/* One transaction's writes: rows k in [lo, lo + n), each v a 150-byte text of k; then, when
 * rewrite, every row of it twice more (its pages were written once already when the cache
 * spilled). SQLITE_OK or the first error (the crash test's child cannot use cmocka's asserts). */
static int insert_rows(sqlite3 *db, int64_t lo, int n, int rewrite)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "INSERT INTO t(k, v, n) VALUES (?1, printf('%0150d', ?1), 1)",
                                -1, &st, NULL);
    for (int i = 0; rc == SQLITE_OK && i < n; i++) {
        sqlite3_bind_int64(st, 1, lo + i);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    char sql[160];
    for (int pass = 0; rc == SQLITE_OK && rewrite && pass < 2; pass++) {
        snprintf(sql, sizeof(sql), "UPDATE t SET n = n %s 1 WHERE k >= %lld AND k < %lld",
                 pass == 0 ? "+" : "-", (long long)lo, (long long)(lo + n));
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    return rc;
}

/* A commit of many frames is one write; SQLite's own VFS writes two per frame. */
static void a_commit_is_one_write(void **state)
{
    struct fx *f = *state;
    sqlite3 *db = open_db(f->path, vfs_name(), 2000);
    int log = 0, ckpt = 0;
    assert_int_equal(sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL),
                     SQLITE_OK);
    long before = gw_walvfs_test_writes;
    exec_ok(db, "BEGIN");
    assert_int_equal(insert_rows(db, 1, 60, 0), SQLITE_OK); /* ~10 pages, and of the index */
    exec_ok(db, "COMMIT");
    assert_int_equal(gw_walvfs_test_writes - before, 2); /* the WAL's header, then the frames */

    /* the next commit's frames follow: one write */
    before = gw_walvfs_test_writes;
    exec_ok(db, "BEGIN");
    assert_int_equal(insert_rows(db, 100, 60, 0), SQLITE_OK);
    exec_ok(db, "COMMIT");
    assert_int_equal(gw_walvfs_test_writes - before, 1);

    /* a one-frame commit is written as before: header, then page */
    before = gw_walvfs_test_writes;
    exec_ok(db, "UPDATE t SET n = 2 WHERE k = 1");
    assert_int_equal(gw_walvfs_test_writes - before, 2);
    assert_int_equal(sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &ckpt),
                     SQLITE_OK);
    assert_true(log > 20); /* the two were commits of many frames */
    sqlite3_close(db);

    /* the same commit through SQLite's own VFS: the writes are not counted (not ours) */
    before = gw_walvfs_test_writes;
    db = open_db(f->path, NULL, 2000);
    exec_ok(db, "BEGIN");
    assert_int_equal(insert_rows(db, 1000, 60, 0), SQLITE_OK);
    exec_ok(db, "COMMIT");
    assert_int_equal(gw_walvfs_test_writes - before, 0);
    sqlite3_close(db);
}

/* A commit larger than a run (a 1.5 MiB value, in one transaction that does not spill) is
 * written in several runs, each a single write the unix VFS takes whole; a reader with
 * SQLite's own VFS reads the value back byte for byte. */
static void a_large_commit_in_runs(void **state)
{
    struct fx *f = *state;
    sqlite3 *db = open_db(f->path, vfs_name(), 4000);
    exec_ok(db, "CREATE TABLE big (b BLOB NOT NULL)");
    size_t len = 1536u << 10;
    unsigned char *val = malloc(len);
    assert_non_null(val);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < len; i++) { /* xorshift: incompressible, no run of equal pages */
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        val[i] = (unsigned char)x;
    }
    long before = gw_walvfs_test_writes;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO big (b) VALUES (?1)", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_bind_blob(st, 1, val, (int)len, SQLITE_STATIC), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    long writes = gw_walvfs_test_writes - before;
    /* 1 KiB pages: ~1,570 frames of 1,048 bytes, 117 to a 120 KiB run (SQLite's VFS: 3,140) */
    assert_in_range(writes, 13, 16);
    sqlite3_close(db);

    sqlite3 *r = open_db(f->path, NULL, 100);
    assert_int_equal(sqlite3_prepare_v2(r, "SELECT b FROM big", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_bytes(st, 0), (int)len);
    assert_memory_equal(sqlite3_column_blob(st, 0), val, len);
    sqlite3_finalize(st);
    sqlite3_close(r);
    free(val);
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[65536];
    size_t n;
    assert_non_null(out);
    while (in != NULL && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    if (in != NULL)
        fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* What a process that opened the database now would find: a copy of the database and its WAL
 * without the WAL index, which SQLite then rebuilds from the WAL, checking every frame's
 * checksum (readers of a live WAL index never look at them). The rows and their sum of k. */
static void recovered(const struct fx *f, int64_t *rows, int64_t *sum)
{
    char db[100], from[160], to[160];
    snprintf(db, sizeof(db), "%s/copy.db", f->dir);
    snprintf(to, sizeof(to), "%s-shm", db);
    unlink(to);
    copy_file(f->path, db);
    snprintf(from, sizeof(from), "%s-wal", f->path);
    snprintf(to, sizeof(to), "%s-wal", db);
    copy_file(from, to);
    sqlite3 *c = NULL;
    assert_int_equal(sqlite3_open_v2(db, &c, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    *rows = one_int(c, "SELECT count(*) FROM t");
    *sum = one_int(c, "SELECT coalesce(sum(k), 0) FROM t");
    sqlite3_close(c);
}

/* Random transactions through the VFS; after each, a connection with the default VFS (its own
 * file descriptor) reads exactly what was committed, and so does a recovery of the files. */
static void readers_see_every_commit(void **state)
{
    struct fx *f = *state;
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    sqlite3 *w = open_db(f->path, vfs_name(), 8); /* 8 pages: most transactions spill */
    sqlite3 *r = open_db(f->path, NULL, 100);
    int64_t next = 1, rows = 0;
    int rollbacks = 0, spilled = 0;

    for (int i = 0; i < 400; i++) {
        int n = rand() % 8 == 0 ? 200 + rand() % 2500 : 1 + rand() % 20;
        int rewrite = rand() % 3 == 0, undo = rand() % 10 == 0;
        exec_ok(w, "BEGIN");
        assert_int_equal(insert_rows(w, next, n, rewrite), SQLITE_OK);
        spilled += n > 100;
        if (undo) {
            exec_ok(w, "ROLLBACK");
            rollbacks++;
        } else {
            exec_ok(w, "COMMIT");
            next += n;
            rows += n;
        }
        if (one_int(r, "SELECT count(*) FROM t") != rows ||
            one_int(r, "SELECT coalesce(sum(k), 0) FROM t") != (next - 1) * next / 2 ||
            one_int(r, "SELECT count(*) FROM t WHERE n <> 1 OR v <> printf('%0150d', k)") != 0)
            fail_msg("transaction %d (seed %u): the reader sees something else", i, seed);
        int64_t rrows, rsum;
        recovered(f, &rrows, &rsum);
        if (rrows != rows || rsum != (next - 1) * next / 2)
            fail_msg("transaction %d (seed %u): a recovery finds %lld rows, not %lld", i, seed,
                     (long long)rrows, (long long)rows);
        switch (rand() % 20) { /* checkpoints, which let the next commit restart the WAL */
        case 0:
            assert_int_equal(sqlite3_wal_checkpoint_v2(r, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL,
                                                       NULL),
                             SQLITE_OK);
            break;
        case 1:
            sqlite3_wal_checkpoint_v2(r, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
            break;
        case 2:
            sqlite3_wal_checkpoint_v2(r, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
            break;
        default:
            break;
        }
    }
    assert_true(rollbacks > 0 && spilled > 0);
    assert_int_equal(one_int(w, "SELECT count(*) FROM t"), rows);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(r, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(r);
    sqlite3_close(w);
}

/* A child commits transactions through the VFS and reports each on a pipe once COMMIT has
 * returned; it is killed (SIGKILL: no close, nothing written afterwards) at a random moment in
 * even rounds, and in odd ones as soon as the parent has read its k-th report, while it pauses
 * after a commit (the moment a commit still held in memory would be lost). Every reported
 * commit is in the database, and what is there is whole transactions. */
static void a_crash_loses_no_commit(void **state)
{
    struct fx *f = *state;
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    sqlite3_close(open_db(f->path, NULL, 100)); /* the schema */
    for (int round = 0; round < 12; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        unsigned child_seed = (unsigned)rand();
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            srand(child_seed);
            sqlite3 *db = NULL;
            if (sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, gw_walvfs_name()) !=
                    SQLITE_OK ||
                sqlite3_exec(db, "PRAGMA synchronous=NORMAL; PRAGMA cache_size=8; "
                             "PRAGMA wal_autocheckpoint=0", NULL,
                             NULL, NULL) != SQLITE_OK)
                _exit(2);
            sqlite3_stmt *st = NULL;
            if (sqlite3_prepare_v2(db, "SELECT coalesce(max(k), 0) + 1 FROM t", -1, &st, NULL) !=
                    SQLITE_OK ||
                sqlite3_step(st) != SQLITE_ROW)
                _exit(2);
            int64_t next = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
            for (int i = 1;; i++) {
                /* odd rounds commit a few rows: no page spills, so SQLite does not read the
                 * WAL back after the commit (to rewrite checksums) and nothing else would
                 * write out a commit that stayed in memory */
                int n = round % 2   ? 1 + rand() % 4
                        : rand() % 6 == 0 ? 100 + rand() % 600
                                          : 1 + rand() % 30;
                if (i % 25 == 0) /* (a checkpoint reads the WAL, and SQLite's reads flush) */
                    sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
                if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
                    insert_rows(db, next, n, rand() % 3 == 0) != SQLITE_OK ||
                    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
                    _exit(3);
                next += n;
                if (write(fds[1], &next, sizeof(next)) != (ssize_t)sizeof(next))
                    _exit(1);
                usleep(500 + (useconds_t)(rand() % 1000)); /* odd rounds kill it here */
            }
        }
        close(fds[1]);
        int64_t reported = 0, v;
        if (round % 2 == 0) {
            usleep(20000 + (useconds_t)(rand() % 150000));
        } else {
            for (int k = 1 + rand() % 30; k > 0; k--) {
                if (read(fds[0], &v, sizeof(v)) != (ssize_t)sizeof(v))
                    fail_msg("round %d: the child stopped before its commits", round);
                reported = v;
            }
        }
        kill(pid, SIGKILL);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status))
            fail_msg("round %d: the child stopped by itself (status %d)", round, status);
        while (read(fds[0], &v, sizeof(v)) == (ssize_t)sizeof(v))
            reported = v;
        close(fds[0]);
        sqlite3 *db = open_db(f->path, NULL, 100);
        int64_t max = one_int(db, "SELECT coalesce(max(k), 0) FROM t");
        if (max + 1 < reported)
            fail_msg("round %d (seed %u): %lld committed, %lld found", round, seed,
                     (long long)reported - 1, (long long)max);
        assert_int_equal(one_int(db, "SELECT count(*) FROM t"), max);
        assert_int_equal(one_int(db, "SELECT count(*) FROM t WHERE n <> 1"), 0);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_commit_is_one_write, setup, teardown),
        cmocka_unit_test_setup_teardown(a_large_commit_in_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(readers_see_every_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(a_crash_loses_no_commit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
