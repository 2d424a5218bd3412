/*
 * providers — one adapter per upstream API, all filling struct gw_provider_ops.
 *
 * The canonical request is an OpenAI Chat Completions request body (a jansson object) that the
 * pipeline has already validated: "messages" is a non-empty array of objects with a valid
 * "role"; "model" has been replaced by the provider's wire id; "stream", "stream_options",
 * and gateway extensions ("provider", "auto_route", "route_method", "conversation_id") have been
 * removed. Adapters translate it to their wire format, and translate answers back to the
 * canonical OpenAI chat.completion / chat.completion.chunk shapes.
 *
 * Invariants:
 * - Adapters are pure: no I/O, no globals, no logging of prompt text or credentials. They only
 *   build and parse bytes; the pipeline does the transport.
 * - Every field read from a provider response is type-checked; a malformed body is GW_EPARSE,
 *   never a crash.
 * - Usage is normalised (struct gw_usage) so cost can be computed the same way everywhere.
 * - Provider error text never leaves the gateway: map_error keeps it in a log-only field.
 */
#ifndef GW_PROVIDERS_PROVIDER_H
#define GW_PROVIDERS_PROVIDER_H

#include <jansson.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/splice.h"

/* Normalised token counts. All fields are in [0, GW_USAGE_MAX]: a provider's larger number is
 * its error, clamped on reading, so that the pipeline's sums of counts (and of their costs)
 * never overflow. */
#define GW_USAGE_MAX 1000000000000LL /* 10^12 */
struct gw_usage {
    int64_t input_tokens;        /* every prompt token, including cached and cache-written */
    int64_t cached_input_tokens; /* of input_tokens: read from the provider's prompt cache */
    int64_t cache_write_tokens;  /* of input_tokens: written to the cache (Anthropic) */
    int64_t cache_write_1h_tokens; /* of cache_write_tokens: with the 1-hour TTL (dearer) */
    int64_t output_tokens;       /* every generated token, including reasoning/thinking */
    int64_t reasoning_tokens;    /* of output_tokens: reasoning/thinking */
    int64_t search_requests;     /* Perplexity: billed web searches (per-request fee) */
    char search_context_size[8]; /* Perplexity: "low" | "medium" | "high" | "" */
    int seen;                    /* the provider reported usage at all */
};

#define GW_UPSTREAM_MAX_HEADERS 8

/* What the transport sends. All strings are owned (gw_malloc) and freed by
 * gw_upstream_req_cleanup; header values holding credentials are wiped on cleanup. */
struct gw_upstream_req {
    char *url;                                 /* full URL: base + path (+ query) */
    char *headers[GW_UPSTREAM_MAX_HEADERS];    /* "Name: value" lines */
    int nheaders;
    char *body;                                /* request body (JSON) */
    size_t body_len;
};

/* Per-call settings handed to build(). All borrowed. */
struct gw_provider_cfg {
    const char *base_url;    /* no trailing slash, e.g. "https://api.anthropic.com" */
    const char *api_key;     /* secret: goes only into a header */
    const char *api_version; /* Anthropic "anthropic-version"; NULL for the default */
    int64_t default_max_tokens; /* used when the request has none and the API requires it */
    int reasoning;           /* target model is a reasoning model (catalog flag): OpenAI wants
                              * max_completion_tokens and rejects temperature; xAI rejects
                              * stop/penalties/reasoning_effort */
    const json_t *native;    /* the client's own body in this provider's dialect (Anthropic
                              * Messages), sent as it is but for the model, max_tokens and the
                              * gateway's members; NULL: build from the canonical request */
};

/* A mapped upstream failure. message is the provider's own text, for the server log only. */
struct gw_upstream_error {
    int status;          /* the provider's HTTP status (or 0 for a mid-stream error event) */
    int retryable;       /* 429 (not insufficient_quota), 529, 5xx, overloaded */
    int retry_after_s;   /* from the body where the API puts it there; 0 if unknown */
    int auth_failed;     /* the provider rejected our credential (401/403, Gemini API_KEY_INVALID) */
    char type[48];       /* the provider's error type/status/code, e.g. "rate_limit_error" */
    char message[256];   /* provider text: LOG ONLY, never sent to a client */
};

/* Stream translation state; one per upstream call. The pipeline zeroes it, sets emit/arg and
 * calls stream_init if the adapter has one; the adapter keeps private state in priv. */
struct gw_stream;
/* Receive one canonical chunk: a chat.completion.chunk-shaped object with at least "choices"
 * (the adapter may omit id/object/created/model: the pipeline sets them) and, where the provider
 * sends them, pass-through fields such as "citations" or "search_results". The chunk is
 * borrowed. Return 0 to continue, non-zero to abort the stream (returned from stream_event). */
typedef int (*gw_chunk_cb)(void *arg, json_t *chunk);

/* What the fast path's scan of a canonical answer or chunk found (see ops.scan). */
struct gw_scan {
    struct gw_splice sp; /* the members the pipeline replaces, cut */
    int has_id;          /* answers: a string "id" is kept */
    size_t nchoices;     /* entries of "choices" */
    int64_t text_chars;  /* chunks: bytes of delta content and reasoning_content */
    /* Where the part a conversation keeps is, so that it is read without the rest: answers:
     * the first choice's message object is [msg_open, msg_close); chunks: the delta content
     * string (JSON, quotes included) of the choice with index 0 is [text_open, text_close).
     * Answers have the message's content string there too when the message is plain text:
     * role "assistant", a string content, and else only what a conversation drops (refusal,
     * annotations, audio), each member once. Both 0: none. */
    size_t msg_open, msg_close, text_open, text_close;
};
/* Receive one canonical chunk as the provider's bytes (data, len) with what the scan found:
 * id, object, created, model and usage are cut for the pipeline to set. Same contract as
 * gw_chunk_cb otherwise. */
typedef int (*gw_raw_chunk_cb)(void *arg, const char *data, const struct gw_scan *scan);

struct gw_stream {
    gw_chunk_cb emit;
    gw_raw_chunk_cb emit_raw;  /* optional: adapters whose chunks are canonical use it */
    void *arg;
    struct gw_usage usage;     /* cumulative; updated as usage arrives */
    char id[96];               /* upstream response id, if seen */
    char finish_reason[24];    /* canonical finish reason once seen */
    int complete;              /* the provider's end-of-stream marker was seen */
    int failed;                /* an error event arrived; err holds it */
    struct gw_upstream_error err;
    void *priv;                /* adapter state, freed by stream_cleanup */
};

struct gw_provider_ops {
    const char *name; /* "openai", "anthropic", "gemini", "xai", "perplexity" */

    /* Build the upstream request for the canonical request req (borrowed). wire_model is the
     * provider's model id. stream asks for a streamed answer (the adapter must also ask for
     * usage in the stream where the API needs asking). On invalid input for this provider
     * returns GW_EINVAL with a client-safe explanation in eb. */
    int (*build)(const struct gw_provider_cfg *cfg, const json_t *req, const char *wire_model,
                 int stream, struct gw_upstream_req *out, struct gw_errbuf *eb);

    /* Parse a complete 2xx non-streamed body into a new canonical chat.completion object
     * (*out, new reference: id, object, created, model, choices[{index, message{role, content,
     * tool_calls?}, finish_reason}], plus pass-through fields like citations) and usage.
     * The pipeline overwrites "model" and adds "usage" itself from *usage. */
    int (*parse)(const char *body, size_t len, json_t **out, struct gw_usage *usage,
                 struct gw_errbuf *eb);

    /* Optional fast path of adapters whose answers already are canonical: validate body as
     * parse() does and read usage, without a tree; cut id (when not a string), object,
     * created, model, provider, route_method and usage, which the pipeline writes itself. */
    int (*scan)(const char *body, size_t len, struct gw_usage *usage, struct gw_scan *out,
                struct gw_errbuf *eb);

    /* Optional: allocate s->priv. Return 0 or GW_ENOMEM. */
    int (*stream_init)(struct gw_stream *s);
    /* Handle one SSE event (event name may be ""; data NUL-terminated). Emit zero or more
     * chunks through s->emit, update s->usage, set s->complete at the provider's end marker,
     * set s->failed + s->err for an error event. Returns 0, GW_EPARSE for malformed data,
     * GW_EUPSTREAM for an error event, or the emit callback's non-zero value. */
    int (*stream_event)(struct gw_stream *s, const char *event, const char *data, size_t len);
    /* Optional: free s->priv. */
    void (*stream_cleanup)(struct gw_stream *s);

    /* Map a non-2xx response (status, body possibly empty or not JSON) to *out. Never fails. */
    void (*map_error)(int status, const char *body, size_t len, struct gw_upstream_error *out);
};

/* Registry: look an adapter up by name ("openai", ...). NULL when unknown. */
const struct gw_provider_ops *gw_provider_find(const char *name);
/* All adapters, NULL-terminated, in a stable order. */
const struct gw_provider_ops *const *gw_provider_all(void);

/* Helpers shared by adapters (providers/common.c). */
/* Add one "Name: value" header line (copied). Returns 0, GW_ETOOBIG or GW_ENOMEM. */
GW_NODISCARD int gw_upstream_req_header(struct gw_upstream_req *r, const char *name,
                                        const char *value);
/* Set url to base + path (copied). */
GW_NODISCARD int gw_upstream_req_url(struct gw_upstream_req *r, const char *base,
                                     const char *path);
/* Set the body by serialising body (borrowed, an object) compactly. */
GW_NODISCARD int gw_upstream_req_body(struct gw_upstream_req *r, const json_t *body);
/* The same with members (JSON text "name":value,... without a trailing comma, not in body)
 * written first: body goes out as it is, without a copy to add them to. */
GW_NODISCARD int gw_upstream_req_body_with(struct gw_upstream_req *r, const json_t *body,
                                           const char *members);
/* Free everything in r (wiping header values) and zero it. */
void gw_upstream_req_cleanup(struct gw_upstream_req *r);
/* Append items (taken) to the last turn of turns when it has the same role, else append a new
 * turn {"role": role, key: items}. Empty items are dropped. The APIs that want strictly
 * alternating roles (Anthropic, Gemini) get consecutive same-role messages merged this way. */
GW_NODISCARD int gw_turn_append(json_t *turns, const char *role, const char *key, json_t *items);
/* Split an image "data:<mime>;base64,<data>" URL: *mime is a new JSON string, *data borrowed
 * from url. GW_EINVAL when url is not of that form. */
GW_NODISCARD int gw_data_url_split(const char *url, json_t **mime, const char **data);
/* The arguments of an OpenAI tool call (its function.arguments JSON string; "" means {}) as a
 * new JSON object, or NULL when they are not a JSON object. */
json_t *gw_tool_call_args(const json_t *tool_call);
/* GW_EINVAL naming the first of fields (a NULL-terminated list) req carries (not null):
 * "'F' is not supported by WHAT"; 0 when it carries none. */
GW_NODISCARD int gw_refuse_fields(const json_t *req, const char *const *fields, const char *what,
                                  struct gw_errbuf *eb);
/* Characters of text a canonical chunk carries (every choice's delta content and
 * reasoning_content): what the pipeline counts as relayed, and what a scan's text_chars is. */
int64_t gw_chunk_text_chars(const json_t *chunk);
/* Is part an Anthropic thinking or redacted_thinking block (an earlier assistant turn's)? */
int gw_part_is_anthropic_thinking(const json_t *part);
/* Does req carry what only Anthropic's API takes (top-level thinking or top_k, cache_control on
 * a content part, thinking parts)? Other adapters leave it out. */
int gw_has_anthropic_only(const json_t *req);
/* Remove those members from body (a copy of such a req). */
void gw_drop_anthropic_only(json_t *body);

/* An Anthropic API request: base URL + path, its credential and version headers, body (borrowed,
 * serialised). The Messages adapter's, and the count_tokens endpoint's (core/count_tokens). */
GW_NODISCARD int gw_anthropic_request(const struct gw_provider_cfg *cfg, const char *path,
                                      const json_t *body, struct gw_upstream_req *out);

/* Generic error mapping by status alone (used when the body says nothing useful):
 * retryable for 408, 409, 429, 5xx and 529. */
void gw_upstream_error_default(int status, struct gw_upstream_error *out);

#endif
