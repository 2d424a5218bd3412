/*
 * core/harden — the server process's least privilege (issue 10, in-process hardening), in two
 * steps around the gateway's start:
 *   early (before the gateway exists, so before any thread): no_new_privs, every capability
 *   dropped from the bounding, ambient, inheritable, permitted and effective sets (all but
 *   CAP_NET_BIND_SERVICE when the listening port needs it), no core dumps (they would hold
 *   keys), open files raised to the connection limit;
 *   late (the store open, the sockets bound, the threads started): a seccomp allowlist of the
 *   system calls the gateway makes, on every thread at once (TSYNC); anything else fails with
 *   EPERM instead of running.
 * Linux only; the server (llmgw serve) uses it, the embedded library never does by itself.
 */
#ifndef GW_CORE_HARDEN_H
#define GW_CORE_HARDEN_H

#include <stddef.h>

/* 0, or an error with why in err. keep_bind: keep CAP_NET_BIND_SERVICE (a port below 1024).
 * nofile: the open files the connection limit needs (the soft limit is raised to it, or to the
 * hard limit when that is lower). */
int gw_harden_early(int keep_bind, long nofile, char *err, size_t errsz);
/* What cfg asks for: 1 when the server hardens itself (hardening on, or auto in production),
 * with what gw_harden_early needs; 0 when it does not. */
struct llmgw_config;
int gw_harden_plan(const struct llmgw_config *cfg, int *keep_bind, long *nofile);
int gw_harden_late(char *err, size_t errsz);

#endif
