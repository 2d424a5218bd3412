/* core/harden — see harden.h. */
#include "core/harden.h"

#include <errno.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/err.h"

#ifndef CAP_LAST_CAP
#define CAP_LAST_CAP 40
#endif

static int fail(char *err, size_t errsz, const char *what)
{
    snprintf(err, errsz, "%s: %s", what, strerror(errno));
    return GW_EIO;
}

int gw_harden_early(int keep_bind, long nofile, char *err, size_t errsz)
{
    struct rlimit rl = {0, 0};
    if (setrlimit(RLIMIT_CORE, &rl) != 0) /* a core dump would hold keys */
        return fail(err, errsz, "RLIMIT_CORE");
#ifndef GW_TEST_HOOKS /* the sanitizers' leak check at exit attaches to the process's threads */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return fail(err, errsz, "PR_SET_DUMPABLE");
#endif
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && nofile > 0 && (rlim_t)nofile > rl.rlim_cur) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || (rlim_t)nofile < rl.rlim_max
                          ? (rlim_t)nofile
                          : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            return fail(err, errsz, "RLIMIT_NOFILE");
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return fail(err, errsz, "PR_SET_NO_NEW_PRIVS");
    /* the bounding set first (dropping needs CAP_SETPCAP, which goes last), then ambient */
    for (int cap = 0; cap <= CAP_LAST_CAP; cap++) {
        if (keep_bind && cap == CAP_NET_BIND_SERVICE)
            continue;
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1 &&
            prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EPERM)
            return fail(err, errsz, "PR_CAPBSET_DROP");
    }
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (keep_bind) {
        data[0].effective = data[0].permitted = 1u << CAP_NET_BIND_SERVICE;
    }
    if (syscall(SYS_capset, &hdr, data) != 0)
        return fail(err, errsz, "capset");
    return 0;
}

/* What the gateway calls: libevent (epoll, eventfd), curl (sockets, poll, its resolver's
 * threads), SQLite (files, locks, mmap of its shared memory), libpq (sockets), OpenSSL
 * (getrandom), glibc's threads and allocator, and the sanitizers of the test builds. */
static const int allowed[] = {
    SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(pread64),
    SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev), SCMP_SYS(open), SCMP_SYS(openat),
    SCMP_SYS(close), SCMP_SYS(close_range), SCMP_SYS(stat), SCMP_SYS(fstat), SCMP_SYS(lstat),
    SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(statfs), SCMP_SYS(fstatfs),
    SCMP_SYS(lseek), SCMP_SYS(access), SCMP_SYS(faccessat), SCMP_SYS(faccessat2),
    SCMP_SYS(readlink), SCMP_SYS(readlinkat), SCMP_SYS(getcwd), SCMP_SYS(getdents64),
    SCMP_SYS(mkdir), SCMP_SYS(mkdirat), SCMP_SYS(unlink), SCMP_SYS(unlinkat), SCMP_SYS(rename),
    SCMP_SYS(renameat), SCMP_SYS(ftruncate), SCMP_SYS(fsync), SCMP_SYS(fdatasync),
    SCMP_SYS(fchown), SCMP_SYS(fchmod), SCMP_SYS(fcntl), SCMP_SYS(flock), SCMP_SYS(ioctl),
    SCMP_SYS(dup), SCMP_SYS(dup2), SCMP_SYS(dup3), SCMP_SYS(pipe), SCMP_SYS(pipe2),
    SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mprotect), SCMP_SYS(mremap), SCMP_SYS(madvise),
    SCMP_SYS(brk), SCMP_SYS(mincore), SCMP_SYS(msync),
    SCMP_SYS(socket), SCMP_SYS(socketpair), SCMP_SYS(connect), SCMP_SYS(accept),
    SCMP_SYS(accept4), SCMP_SYS(bind), SCMP_SYS(listen), SCMP_SYS(shutdown),
    SCMP_SYS(getsockname), SCMP_SYS(getpeername), SCMP_SYS(getsockopt), SCMP_SYS(setsockopt),
    SCMP_SYS(sendto), SCMP_SYS(recvfrom), SCMP_SYS(sendmsg), SCMP_SYS(recvmsg),
    SCMP_SYS(sendmmsg), SCMP_SYS(recvmmsg),
    SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(select), SCMP_SYS(pselect6),
    SCMP_SYS(epoll_create), SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait),
    SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_pwait2), SCMP_SYS(eventfd), SCMP_SYS(eventfd2),
    SCMP_SYS(timerfd_create), SCMP_SYS(timerfd_settime), SCMP_SYS(timerfd_gettime),
    SCMP_SYS(futex), SCMP_SYS(futex_waitv), SCMP_SYS(set_robust_list),
    SCMP_SYS(get_robust_list), SCMP_SYS(clone), SCMP_SYS(clone3), SCMP_SYS(set_tid_address),
    SCMP_SYS(rseq), SCMP_SYS(sched_yield), SCMP_SYS(sched_getaffinity),
    SCMP_SYS(sched_setaffinity), SCMP_SYS(gettid), SCMP_SYS(getpid), SCMP_SYS(getppid),
    SCMP_SYS(tgkill), SCMP_SYS(kill), SCMP_SYS(exit), SCMP_SYS(exit_group),
    SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
    SCMP_SYS(rt_sigtimedwait), SCMP_SYS(rt_sigqueueinfo), SCMP_SYS(sigaltstack),
    SCMP_SYS(restart_syscall), SCMP_SYS(nanosleep), SCMP_SYS(clock_nanosleep),
    SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres), SCMP_SYS(gettimeofday), SCMP_SYS(time),
    SCMP_SYS(getrandom), SCMP_SYS(uname), SCMP_SYS(sysinfo), SCMP_SYS(getrusage),
    SCMP_SYS(getrlimit), SCMP_SYS(prlimit64), SCMP_SYS(getuid), SCMP_SYS(geteuid),
    SCMP_SYS(getgid), SCMP_SYS(getegid), SCMP_SYS(getresuid), SCMP_SYS(getresgid),
    SCMP_SYS(getgroups), SCMP_SYS(arch_prctl), SCMP_SYS(prctl), SCMP_SYS(membarrier),
    SCMP_SYS(sched_getparam), SCMP_SYS(sched_getscheduler), SCMP_SYS(getpriority),
#ifdef GW_TEST_HOOKS /* test builds: LeakSanitizer stops the threads with ptrace at exit */
    SCMP_SYS(ptrace), SCMP_SYS(wait4), SCMP_SYS(waitid), SCMP_SYS(getdents),
#endif
};

int gw_harden_late(char *err, size_t errsz)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    int rc = ctx != NULL ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (allowed[i] >= 0) /* a call this architecture lacks is negative: nothing to allow */
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
    if (rc == 0) /* every thread, not only this one */
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    if (rc == 0)
        rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc != 0) {
        snprintf(err, errsz, "seccomp: %s", strerror(-rc));
        return GW_EIO;
    }
    return 0;
}
