/* core/answer — see answer.h. */
#include "core/answer.h"

#include <event2/buffer.h>
#include <stdio.h>

#include "http/reply.h"
#include "util/json.h"
#include "util/log.h"
#include "util/util.h"

void gw_answer_fail(struct gw_answer *an, int status, const char *type, const char *code,
                    const char *msg)
{
    json_decref(an->out);
    an->out = NULL;
    an->status = status;
    an->type = type;
    an->code = code;
    gw_strlcpy(an->msg, msg, sizeof(an->msg));
}

void gw_answer_store_failed(struct gw_answer *an, const char *domain, const char *rid, int rc)
{
    GW_LOG_ERROR(domain, "req=%s store work failed: %s", rid, gw_strerror(rc));
    gw_answer_fail(an, 503, "service_unavailable", "store_unavailable",
                   "the store cannot answer right now");
}

void gw_answer_check(struct gw_answer *an)
{
    if (an->status < 400 && an->out == NULL)
        gw_answer_fail(an, 500, "internal_error", "internal_error", "internal error");
}

void gw_answer_send(struct gw_answer *an, struct evhttp_request *req, const char *rid,
                    int batch_rc)
{
    if (batch_rc != 0 && an->status < 400) /* its writes were lost */
        gw_answer_store_failed(an, "store", rid, batch_rc);
    if (an->status >= 400)
        gw_reply_error(req, an->status, an->type, an->code, an->msg, rid, an->status == 503);
    else
        gw_reply_json(req, an->status, an->out, rid);
    json_decref(an->out);
    an->out = NULL;
}

json_t *gw_answer_body(struct evhttp_request *req, char *bad, size_t badsz)
{
    struct evbuffer *buf = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(buf);
    const char *data = len > 0 ? (const char *)evbuffer_pullup(buf, -1) : "";
    struct gw_errbuf eb = {{0}};
    json_t *b = data != NULL ? gw_json_parse(data, len, &eb) : NULL;
    if (!json_is_object(b)) {
        snprintf(bad, badsz, "the body must be a JSON object%s%.120s", eb.msg[0] ? ": " : "",
                 eb.msg);
        json_decref(b);
        return NULL;
    }
    return b;
}
