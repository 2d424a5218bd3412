/*
 * core/request — the inbound dialects and the canonical request.
 *
 * The canonical request is an OpenAI Chat Completions body. gw_chat_validate checks every field
 * the gateway or an adapter reads (types, ranges, sizes) so adapters can trust the shape, pulls
 * out the gateway's own fields, and leaves unknown top-level fields for pass-through. Messages
 * it writes into eb describe the client's own input and are safe to return to the client.
 */
#ifndef GW_CORE_REQUEST_H
#define GW_CORE_REQUEST_H

#include <jansson.h>
#include <stdint.h>

#include "util/err.h"

#define GW_MAX_MESSAGES 4096
#define GW_MAX_CHOICES 8

struct gw_chat_opts {
    char model[96];           /* "" when absent */
    char provider[16];        /* pinned provider, "" when absent */
    char conversation_id[128];
    int stream;
    int include_usage;
    int auto_route;
    int64_t max_tokens;       /* max_completion_tokens or max_tokens; 0 when absent */
    int n;                    /* choices asked for: 1 to GW_MAX_CHOICES (each up to max_tokens) */
};

/* Validate body (an OpenAI chat request) and fill o. On success the gateway's own fields
 * (provider, auto_route, route_method, conversation_id, stream, stream_options) are removed
 * from body. Returns 0 or GW_EINVAL with a client-safe message in eb. */
GW_NODISCARD int gw_chat_validate(json_t *body, struct gw_chat_opts *o, struct gw_errbuf *eb);

/* Convert the simple form {messages, system?, model?, auto_route?, conversation_id?,
 * max_tokens?, temperature?} into a new canonical body (*out). Unknown fields are refused.
 * Returns 0 or GW_EINVAL (message in eb). */
GW_NODISCARD int gw_simple_to_chat(const json_t *simple, json_t **out, struct gw_errbuf *eb);

/* Is s a well-formed request id ([A-Za-z0-9._-]{1,64})? */
int gw_request_id_ok(const char *s);

#endif
