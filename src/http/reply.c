/* http/reply — JSON answers and error bodies; see reply.h. */
#include "http/reply.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/json.h"
#include "util/mem.h"
#include "util/util.h"

const char *gw_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

void gw_reply_headers(struct evhttp_request *req, const char *content_type, const char *request_id)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_remove_header(h, "Content-Type");
    evhttp_add_header(h, "Content-Type", content_type);
    if (request_id != NULL && request_id[0] != '\0')
        evhttp_add_header(h, "X-Request-Id", request_id);
}

void gw_reply_json_text(struct evhttp_request *req, int status, const char *text,
                        const char *request_id)
{
    gw_reply_json_bytes(req, status, text, text != NULL ? strlen(text) : 0, request_id);
}

/* "Thu, 03 Dec 2026 16:50:57 GMT" for now, formatted once a second by each thread. */
static const char *http_date(void)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static _Thread_local time_t at = -1;
    static _Thread_local char text[40];
    time_t now = time(NULL);
    struct tm tm;
    if (now != at && gmtime_r(&now, &tm) != NULL) {
        snprintf(text, sizeof(text), "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
                 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                 tm.tm_sec);
        at = now;
    }
    return text[0] != '\0' ? text : NULL;
}

void gw_reply_add_date(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    const char *date = http_date();
    if (date != NULL && evhttp_find_header(h, "Date") == NULL)
        evhttp_add_header(h, "Date", date);
}

void gw_reply_send(struct evhttp_request *req, int status, const char *body, size_t len,
                   const char *tail)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    size_t tail_len = strlen(tail);

    if (body != NULL &&
        (evbuffer_add(out, body, len) != 0 || evbuffer_add(out, tail, tail_len) != 0))
        evbuffer_drain(out, evbuffer_get_length(out)); /* out of memory: an empty answer */
    /* evhttp adds them itself when they are missing (on HTTP/1.1, for a status with a body,
     * not on HEAD); ours come first, so it finds them */
    if (status >= 200 && status != 204 && status != 304 &&
        evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        char n[GW_INT_TEXT_MAX];
        gw_reply_add_date(req);
        if (evhttp_find_header(h, "Content-Length") == NULL &&
            evhttp_find_header(h, "Transfer-Encoding") == NULL) {
            n[gw_int_text(n, (int64_t)evbuffer_get_length(out))] = '\0';
            evhttp_add_header(h, "Content-Length", n);
        }
    }
    evhttp_send_reply(req, status, gw_http_reason(status), NULL);
}

void gw_reply_json_bytes(struct evhttp_request *req, int status, const char *text, size_t len,
                         const char *request_id)
{
    gw_reply_headers(req, "application/json", request_id);
    gw_reply_send(req, status, text, len, "\n");
}

void gw_reply_json(struct evhttp_request *req, int status, const json_t *body,
                   const char *request_id)
{
    char *s = gw_json_dumps(body, GW_JSON_OUT_PRECISION);
    gw_reply_json_text(req, status, s, request_id);
    gw_free(s);
}

json_t *gw_error_body(const char *type, const char *code, const char *message,
                      const char *request_id)
{
    return json_pack("{s:{s:s,s:s,s:s,s:s}}", "error", "type", type, "code", code, "message",
                     message, "request_id", request_id ? request_id : "");
}

const char *gw_anthropic_error_type(int status)
{
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 402:
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503:
    case 529: return "overloaded_error";
    default: return status >= 400 && status < 500 ? "invalid_request_error" : "api_error";
    }
}

json_t *gw_error_body_anthropic(int status, const char *code, const char *message,
                                const char *request_id)
{
    return json_pack("{s:s,s:{s:s,s:s,s:s},s:s}", "type", "error", "error", "type",
                     gw_anthropic_error_type(status), "message", message ? message : "", "code",
                     code ? code : "", "request_id", request_id ? request_id : "");
}

int gw_reply_anthropic(struct evhttp_request *req)
{
    const char *uri = req != NULL ? evhttp_request_get_uri(req) : NULL;
    return uri != NULL && strncmp(uri, "/v1/messages", 12) == 0 &&
           (uri[12] == '\0' || uri[12] == '/' || uri[12] == '?');
}

void gw_reply_retry_after(struct evhttp_request *req, int seconds)
{
    if (seconds <= 0)
        return;
    char ra[24];
    snprintf(ra, sizeof(ra), "%d", seconds);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
}

void gw_reply_error(struct evhttp_request *req, int status, const char *type, const char *code,
                    const char *message, const char *request_id, int retry_after_s)
{
    json_t *body = gw_reply_anthropic(req)
                       ? gw_error_body_anthropic(status, code, message, request_id)
                       : gw_error_body(type, code, message, request_id);

    gw_reply_retry_after(req, retry_after_s);
    if (body == NULL) {
        gw_reply_headers(req, "application/json", request_id);
        evhttp_send_reply(req, status, gw_http_reason(status), NULL);
        return;
    }
    gw_reply_json(req, status, body, request_id);
    json_decref(body);
}

void gw_reply_method_not_allowed(struct evhttp_request *req, const char *rid, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    gw_reply_error(req, 405, "invalid_request_error", "method_not_allowed",
                   "method not allowed on this endpoint", rid, 0);
}
