/*
 * http/reply — the one place that writes JSON answers and errors to a client. Every answer
 * carries X-Request-Id; error bodies are {"error": {type, code, message, request_id}}.
 * Messages passed here must be safe for the client: never provider text, URLs or secrets.
 */
#ifndef GW_HTTP_REPLY_H
#define GW_HTTP_REPLY_H

#include <event2/http.h>
#include <jansson.h>

/* The precision of reals in everything we send (gw_json_dumps): money without float noise. */
#define GW_JSON_OUT_PRECISION 15

/* Send body (borrowed) with status. */
void gw_reply_json(struct evhttp_request *req, int status, const json_t *body,
                   const char *request_id);
/* Send JSON text (a json_dumps result, NULL: an empty body) and a newline with status. */
void gw_reply_json_text(struct evhttp_request *req, int status, const char *text,
                        const char *request_id);
/* The same with len bytes of text. */
void gw_reply_json_bytes(struct evhttp_request *req, int status, const char *text, size_t len,
                         const char *request_id);
/* Add Retry-After: seconds (nothing when seconds <= 0). */
void gw_reply_retry_after(struct evhttp_request *req, int seconds);
/* Send an error. retry_after_s > 0 adds a Retry-After header. */
void gw_reply_error(struct evhttp_request *req, int status, const char *type, const char *code,
                    const char *message, const char *request_id, int retry_after_s);
/* 405 method_not_allowed with the Allow header ("GET, POST"). */
void gw_reply_method_not_allowed(struct evhttp_request *req, const char *rid, const char *allow);
/* Build the error object {"error":{...}} (new reference). */
json_t *gw_error_body(const char *type, const char *code, const char *message,
                      const char *request_id);
/* The same in Anthropic's shape, for the Messages dialect: {"type":"error","error":{type (by
 * status: invalid_request_error, authentication_error, ...), message, code}, request_id}. */
json_t *gw_error_body_anthropic(int status, const char *code, const char *message,
                                const char *request_id);
const char *gw_anthropic_error_type(int status);
/* Is req on one of the Messages dialect's routes (/v1/messages, /v1/messages/...)? Their
 * errors take Anthropic's shape. */
int gw_reply_anthropic(struct evhttp_request *req);
/* Reason phrase for a status. */
const char *gw_http_reason(int status);
/* Add the common headers (X-Request-Id, content type). */
void gw_reply_headers(struct evhttp_request *req, const char *content_type,
                      const char *request_id);
/* Send status with body (len bytes, NULL: none) and then tail ("" none), adding Date and
 * Content-Length as evhttp would, from a per-thread clock string instead of a gmtime and two
 * snprintf calls an answer. */
void gw_reply_send(struct evhttp_request *req, int status, const char *body, size_t len,
                   const char *tail);
/* Add Date (unless there is one) from that per-thread clock string, before a reply starts. */
void gw_reply_add_date(struct evhttp_request *req);

#endif
