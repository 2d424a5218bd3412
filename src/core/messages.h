/*
 * core/messages — the Anthropic Messages dialect (POST /v1/messages) in both directions.
 *
 * Inbound, a Messages request becomes a canonical (OpenAI chat) body: the pipeline routes,
 * admits, reserves and calls any provider with it. Outbound, the gateway's canonical answer
 * (a chat.completion, or a stream of chat.completion.chunk objects) becomes an Anthropic
 * message, or the event sequence the Anthropic SDKs expect: message_start, ping, per block
 * content_block_start / content_block_delta (text_delta, input_json_delta) / content_block_stop,
 * message_delta (stop_reason, usage), message_stop; errors as {type:"error", error:{…}}.
 *
 * Pure functions: no I/O, no logging. Messages written into eb describe the client's own input.
 */
#ifndef GW_CORE_MESSAGES_H
#define GW_CORE_MESSAGES_H

#include <jansson.h>
#include <stdint.h>

#include "providers/provider.h"
#include "util/err.h"

/* Convert an Anthropic Messages request into a new canonical body (*out). What only Anthropic
 * takes (top-level thinking and top_k, cache_control on text blocks and system blocks, earlier
 * turns' thinking blocks as content parts) stays in it for the Anthropic adapter (the others
 * leave it out); service_tier and a tool result's is_error are dropped. count_only: the
 * count_tokens form (max_tokens not required, stream refused). What the canonical form cannot
 * carry at all (other content blocks such as documents, server tools, other members) is refused
 * — or, when native is given, left out and named in native (the request can then go to an
 * Anthropic model only, as the client sent it). Returns 0 or GW_EINVAL (message in eb). */
GW_NODISCARD int gw_messages_to_chat(const json_t *in, int count_only, json_t **out,
                                     struct gw_errbuf *eb, struct gw_errbuf *native);

/* The Anthropic message for a canonical chat.completion (first choice), or NULL (OOM).
 * model: the model id to report; u: the call's counts (input_tokens in Anthropic's sense is
 * what was neither read from nor written to the cache), reported with the gateway's cost. */
json_t *gw_messages_answer(const json_t *completion, const char *model, const struct gw_usage *u,
                           double cost_usd);

/* Stream translation: canonical chunks in, Anthropic SSE events out through emit (event name,
 * its JSON data), which returns 0 or an error that ends the translation. */
typedef int (*gw_messages_emit_fn)(void *arg, const char *event, const char *data, size_t len);

struct gw_messages_stream {
    gw_messages_emit_fn emit;
    void *arg;
    char id[80];
    char model[96];
    int started;       /* message_start sent */
    int block;         /* index of the open block, -1 when none */
    int nblocks;
    int block_is_tool; /* the open block is a tool_use block */
    int tool_index;    /* the canonical tool call index of the open tool_use block */
    char stop_reason[24];
    struct gw_usage usage;
    double cost_usd;
};

void gw_messages_stream_init(struct gw_messages_stream *s, const char *id, const char *model,
                             gw_messages_emit_fn emit, void *arg);
/* Translate one canonical chunk. 0, GW_ENOMEM or emit's. */
GW_NODISCARD int gw_messages_stream_chunk(struct gw_messages_stream *s, const json_t *chunk);
/* The call's final counts and cost, for message_delta. */
void gw_messages_stream_usage(struct gw_messages_stream *s, const struct gw_usage *u,
                              double cost_usd);
/* The stream ended well: close the open block, message_delta, message_stop. */
GW_NODISCARD int gw_messages_stream_end(struct gw_messages_stream *s);
/* The stream ends with an error event. */
GW_NODISCARD int gw_messages_stream_error(struct gw_messages_stream *s, int status,
                                          const char *code, const char *message);

#endif
