/*
 * core/conversations — the conversation store's endpoints (INTERFACE.md), for API keys and
 * subject sessions' signed requests:
 *   GET    /v1/conversations[?limit=&cursor=&q=]   the caller's own, newest first
 *   GET    /v1/conversations/{id}[?after=&limit=]  one of them with its turns ({id}: the
 *                                                  conversation_id the caller used)
 *   DELETE /v1/conversations/{id}                  gone: turns, row, the replays of its answers
 *   POST   /v1/conversations/{id}/share            shared with the org; DELETE …/share withdraws
 *   GET    /v1/org/conversations[?limit=&cursor=&q=]  what is shared in the caller's org
 *   GET    /v1/org/conversations/{ref}             one of those, by its ref
 *   GET    /admin/v1/conversations/export?format=jsonl[&from=&to=&scope=shared|all&org=]
 *          an org admin's (or the superadmin's, naming the org) JSONL export, streamed, one
 *          conversation per line; scope=all only when the org's policy has export_all; every
 *          export is written to the audit trail first.
 * Lists: {object: "list", data, next_cursor}; q: a text the title or a message contains.
 */
#ifndef GW_CORE_CONVERSATIONS_H
#define GW_CORE_CONVERSATIONS_H

#include <event2/http.h>

struct gw_worker;

/* Answer req if path is one of the routes above (1), else leave it (0). */
int gw_conversations_route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                           const char *path);

#endif
