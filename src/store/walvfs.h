/*
 * store/walvfs — a SQLite VFS that writes each commit to the WAL in one system call.
 *
 * SQLite writes a WAL frame as two writes, its 24-byte header and then its page, so a commit of
 * n pages is 2n pwrite calls (at one connection a request's two commits write ~15 frames; each
 * call costs the writer a system call and the file system's per-write work). This VFS wraps
 * the default one and, for WAL files only, gathers the contiguous frames of a transaction in
 * memory and writes them at once, inside the write of the commit frame's page: when SQLite's
 * write of the commit returns, its frames are in the file, exactly as without the buffer, before
 * SQLite publishes them in the WAL index for readers. Every other operation on the file (read,
 * sync, truncate, size, close, file control) and every write that does not continue the run of
 * frames writes out what is gathered first, so nothing else ever sees the file differ.
 *
 * Recognised from the WAL file format (sqlite.org/fileformat2.html#walformat): a frame header is
 * a 24-byte write whose bytes 4..7 (big-endian) are the database size after a commit, nonzero
 * only in a commit's last frame; its page follows at once, contiguous. A run starts only with
 * the header of a frame that does not commit (a one-frame commit is written as before).
 */
#ifndef GW_STORE_WALVFS_H
#define GW_STORE_WALVFS_H

/* Register the VFS (once per process; not as the default, so that a host program's own SQLite
 * databases keep theirs). Returns its name for sqlite3_open_v2, or NULL when it could not be
 * registered (then open with SQLite's default VFS). */
const char *gw_walvfs_name(void);

#endif
