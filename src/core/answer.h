/*
 * core/answer — an answer decided on a store thread and sent from the worker, for the small
 * JSON endpoints whose store work is one job (core/admin, core/sessions).
 */
#ifndef GW_CORE_ANSWER_H
#define GW_CORE_ANSWER_H

#include <event2/http.h>
#include <jansson.h>
#include <stddef.h>

struct gw_answer {
    int status;               /* 0 until decided */
    const char *type, *code;  /* a refusal's */
    char msg[200];
    json_t *out;              /* a success's body (owned) */
};

void gw_answer_fail(struct gw_answer *an, int status, const char *type, const char *code,
                    const char *msg);
/* 503 store_unavailable; the cause goes to the log under the request id. */
void gw_answer_store_failed(struct gw_answer *an, const char *domain, const char *rid, int rc);
/* A success without a body is our bug: 500. */
void gw_answer_check(struct gw_answer *an);
/* Send it (a refusal, or out with status), after the job: batch_rc non-zero (the job's writes
 * were lost with their batch) turns a success into 503. out is freed. */
void gw_answer_send(struct gw_answer *an, struct evhttp_request *req, const char *rid,
                    int batch_rc);
/* The request's body as a JSON object (strictly parsed), or NULL with why in bad. */
json_t *gw_answer_body(struct evhttp_request *req, char *bad, size_t badsz);

#endif
