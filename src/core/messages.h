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

#include "util/buf.h"
#include "util/err.h"

/* Convert an Anthropic Messages request into a new canonical body (*out). What only Anthropic
 * takes (top-level thinking and top_k, cache_control on text blocks and system blocks) stays in
 * it for the Anthropic adapter (the others leave it out); service_tier, a tool result's
 * is_error and earlier turns' thinking blocks are dropped. count_only: the count_tokens form
 * (max_tokens not required, stream refused). Returns 0 or GW_EINVAL (message in eb). */
GW_NODISCARD int gw_messages_to_chat(const json_t *in, int count_only, json_t **out,
                                     struct gw_errbuf *eb);

/* The Anthropic message for a canonical chat.completion (first choice), or NULL (OOM).
 * model: the model id to report. The usage carries the gateway's cost_usd when given. */
json_t *gw_messages_answer(const json_t *completion, const char *model);

/* The Anthropic error type for a gateway error answered with HTTP status. */
const char *gw_messages_error_type(int status);

/* The Anthropic error body {type:"error", error:{type, message, code}, request_id} (code: the
 * gateway's own error code), or NULL. */
json_t *gw_messages_error(int status, const char *code, const char *message,
                          const char *request_id);

/* Stream translation: canonical chunks in, Anthropic SSE events out. */
struct gw_messages_stream {
    char id[80];
    char model[96];
    int started;       /* message_start sent */
    int block;         /* index of the open block, -1 when none */
    int nblocks;
    int block_is_tool; /* the open block is a tool_use block */
    int tool_index;    /* the canonical tool call index of the open tool_use block */
    char stop_reason[24];
    int64_t input_tokens, output_tokens, cached_tokens;
    double cost_usd;
    int have_usage;
};

void gw_messages_stream_init(struct gw_messages_stream *s, const char *id, const char *model);
/* Translate one canonical chunk, appending events to out. 0, GW_ENOMEM or GW_ETOOBIG. */
GW_NODISCARD int gw_messages_stream_chunk(struct gw_messages_stream *s, const json_t *chunk,
                                          struct gw_buf *out);
/* The stream ended well: close the open block, message_delta, message_stop. */
GW_NODISCARD int gw_messages_stream_end(struct gw_messages_stream *s, struct gw_buf *out);
/* The stream ends with an error event (after message_start when one was sent). */
GW_NODISCARD int gw_messages_stream_error(struct gw_messages_stream *s, int status,
                                          const char *code, const char *message,
                                          struct gw_buf *out);

#endif
