/*
 * policy/ledger — the governed write path: admit a request against every limit of its key and
 * org and make its usage row durable, in one step; settle it; read a key's budget.
 *
 * Two implementations behind one interface, chosen by the store:
 * - SQLite (one gateway process): the in-memory limits (policy/limits.h) decide, then the row
 *   is written; a failed write gives the hold back.
 * - PostgreSQL (several nodes): the database decides. One READ COMMITTED transaction takes the
 *   advisory locks of the org and the key (in that order) that have limits reading the store,
 *   reads their counters, checks them with the same gw_limits_check, writes the row(s) and the
 *   counters and commits; the locks end with it and are never held across a provider call. A
 *   scope without such limits is not locked, and its counters go to the writing connection's
 *   shard; an admission with nothing to lock is one plain write. Settling needs no lock: a
 *   row's cost only goes down from its reservation.
 *
 * Every function here does store I/O and runs where store work runs (store/jobs.h: inline for
 * SQLite, a pool thread for PostgreSQL).
 */
#ifndef GW_POLICY_LEDGER_H
#define GW_POLICY_LEDGER_H

#include "policy/limits.h"
#include "store/store.h"

struct gw_ledger {
    struct gw_limits *limits; /* in-memory limits; NULL: the store decides (shared store) */
    struct gw_budget_windows windows;
};

/* One admission: the first attempt's (archive NULL, first 1) or a fallback's (first 0). */
struct gw_admission {
    struct gw_limit_req q;           /* scopes, limits, q.usd / q.tokens: the request's new
                                      * total to hold; q.store is set by the ledger */
    int first;
    struct gw_hold *hold;            /* in-memory limits: the request's hold */
    int64_t held_usd, held_tokens;   /* fallback: what the request holds until now */
    const struct gw_usage_row *row;  /* the request's row: inserted (first) or re-targeted */
    const struct gw_usage_row *archive; /* fallback: the failed attempt's own row, inserted */
    /* out */
    int rc;                          /* 0, GW_ELIMIT (why), GW_ESTORE, GW_ENOMEM */
    struct gw_refusal why;
    int64_t now_held_usd, now_held_tokens; /* what the request holds afterwards, whatever rc */
};

/* Admit and write (see above). Sets a->rc. */
void gw_ledger_admit(const struct gw_ledger *l, struct gw_store *s, struct gw_admission *a);
/* The admission's writes were lost after it ran (its batch's transaction failed; store/jobs.h):
 * give back what a first admission holds in memory, and fail it with rc. Runs on the worker. */
void gw_ledger_abandon(const struct gw_ledger *l, struct gw_admission *a, int rc);
/* The request is over: write its row (final state and cost) and settle what it holds to what
 * it cost in all (usd, tokens: every attempt). In memory that is hold; in the store the
 * counters of the key and org of q move from held_usd / held_tokens to usd / tokens. Returns
 * the store's result. */
GW_NODISCARD int gw_ledger_settle(const struct gw_ledger *l, struct gw_store *s,
                                  struct gw_hold *hold, const struct gw_usage_row *row,
                                  int64_t usd, int64_t tokens, const struct gw_limit_req *q,
                                  int64_t held_usd, int64_t held_tokens);
/* The same as plain writes (store/store.h), where that is all they are, so that the store can
 * run many together. gw_ledger_admit_write: a first admission on the store-side limits whose
 * key and org have no limit that reads the store (nothing to lock or check) and that is within
 * the per-request maxima: fills w and returns 1; run w, then gw_ledger_admit_written sets
 * a->rc. Otherwise 0: use gw_ledger_admit. gw_ledger_settle_write: a settlement on the
 * store-side limits of a written row whose key and org have no limit that reads the store:
 * fills w (as gw_ledger_settle would write) and returns 1; otherwise 0 (a limited scope's
 * settlement runs at once, through gw_ledger_settle). Neither does store I/O. */
int gw_ledger_admit_write(const struct gw_ledger *l, struct gw_admission *a,
                          struct gw_store_write *w);
void gw_ledger_admit_written(struct gw_admission *a, const struct gw_store_write *w);
int gw_ledger_settle_write(const struct gw_ledger *l, const struct gw_usage_row *row,
                           int64_t usd, int64_t tokens, const struct gw_limit_req *q,
                           int64_t held_usd, int64_t held_tokens, struct gw_store_write *w);
/* The key's tightest USD budget window now (out->active = 0 when it has none). */
GW_NODISCARD int gw_ledger_view(const struct gw_ledger *l, struct gw_store *s,
                                const struct gw_limit_req *q, struct gw_budget_view *out);

#endif
