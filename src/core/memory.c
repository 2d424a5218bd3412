/*
 * core/memory — conversation memory in the pipeline (DESIGN.md step 5) and the capture of
 * every prompt/answer pair (step 10).
 *
 * A request with conversation_id "remembers": the stored conversation of the caller (its org
 * and owner: "key:<key_id>", or "subject:<app client>:<subject>") is loaded, what of it fits
 * the budget (conversations.history_percent of the model's context window) is put before the
 * request's own messages, and once the answer is complete the request's messages and the
 * answer are appended. A request without one is still captured (when its org captures) as a
 * conversation of its own, named by its request id.
 *
 * Invariants:
 * - Stored turns are never dropped to make room: when the history is too long, the oldest
 *   turns are summarized (a side call to conversations.summary_model, charged to the same key,
 *   its own usage row "<request id>.summary"); when that cannot be done or fails, only what is
 *   sent is cut, oldest first.
 * - Nothing is stored for a request that did not complete with 200 (an error, an interrupted
 *   stream, a client gone): the conversation stays as it was.
 * - An org that does not capture stores nothing; a conversation_id there is refused (400), so
 *   that nobody believes a conversation is remembered when it is not.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "conv/history.h"
#include "core/call.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/splice.h"
#include "util/util.h"

#define ANSWER_MAX (1u << 20) /* of streamed text kept for the conversation */

struct gw_memory {
    int remember;                   /* conversation_id given: load and append */
    char owner[GW_CONV_OWNER_MAX];
    char conv_id[GW_CONV_ID_MAX];
    json_t *asked;                  /* the request's own messages, as the caller sent them */
    void (*cont)(struct gw_call *c);
    /* loaded (store work) */
    int load_rc;
    struct gw_conv conv;            /* found: conv.id > 0 */
    json_t *turns;                  /* the unsummarized turns read, oldest first */
    int64_t first_seq;              /* seq of turns[0] */
    int64_t turns_bytes;            /* their JSON text */
    int64_t req_tokens, budget;
    /* the answer */
    json_t *answer;                 /* a whole answer's message */
    struct gw_buf text;             /* a stream's content, or a plain answer's text */
    int as_text;                    /* the answer is text (role assistant), not answer */
    int text_cut;
};

/* The summarizer's answer, kept until its side call is done. */
struct summary_ask {
    size_t n;      /* turns summarized */
    char *text;    /* the new summary */
};

void gw_memory_free(struct gw_memory *m)
{
    if (m == NULL)
        return;
    json_decref(m->asked);
    json_decref(m->turns);
    json_decref(m->answer);
    gw_conv_cleanup(&m->conv);
    gw_buf_cleanup(&m->text);
    gw_free(m);
}

static int conv_id_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < GW_CONV_ID_MAX &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") == n;
}

int gw_memory_owner(const struct gw_key_rec *k, int subject, char *out, size_t outsz)
{
    const char *part[] = {subject ? "subject:" : "key:", k->key_id, ":", k->name};
    size_t len = 0, n = subject ? 4 : 2;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(part[i]);
        if (l >= outsz - len)
            return GW_ETOOBIG;
        memcpy(out + len, part[i], l + 1);
        len += l;
    }
    return 0;
}

int gw_memory_begin(struct gw_call *c)
{
    const char *id = c->opts.conversation_id;
    int remember = id[0] != '\0';

    if (remember && !conv_id_ok(id)) {
        gw_call_reply_error(c, 400, "invalid_request_error", "invalid_conversation_id",
                            "conversation_id must be 1 to 127 of A-Z, a-z, 0-9, '.', '_', ':', "
                            "'-'", 0);
        return -1;
    }
    if (!c->key->org_conv.capture) {
        if (!remember)
            return 0;
        gw_call_reply_error(c, 400, "invalid_request_error", "conversation_capture_off",
                            "this organization does not keep conversations, so conversation_id "
                            "cannot be remembered", 0);
        return -1;
    }
    struct gw_memory *m = gw_calloc(1, sizeof(*m));
    json_t *msgs = json_object_get(c->canon, "messages");
    if (m == NULL || gw_memory_owner(c->key, c->sess != NULL, m->owner, sizeof(m->owner)) != 0) {
        gw_free(m);
        gw_call_reply_error(c, 503, "service_unavailable", "overloaded", "out of memory", 1);
        return -1;
    }
    m->remember = remember;
    gw_strlcpy(m->conv_id, remember ? id : c->rid, sizeof(m->conv_id));
    m->asked = json_incref(msgs);
    gw_buf_init(&m->text, ANSWER_MAX);
    c->mem = m;
    return 0;
}

/* ---- loading ---- */

static int turn_cb(void *arg, const struct gw_conv_turn *t)
{
    struct gw_memory *m = arg;
    json_t *msg = gw_json_parse(t->message, t->message_len, NULL);
    if (!json_is_object(msg)) { /* not ours to fix: skip what cannot be read, say so */
        GW_LOG_WARN("conv", "conversation %lld turn %lld is not a message; not sent",
                    (long long)m->conv.id, (long long)t->seq);
        json_decref(msg);
        return 0;
    }
    if (json_array_size(m->turns) == 0)
        m->first_seq = t->seq;
    m->turns_bytes += (int64_t)t->message_len;
    return json_array_append_new(m->turns, msg) != 0;
}

static void load_run(struct gw_call *c, struct gw_store *s)
{
    struct gw_memory *m = c->mem;
    int max = c->w->gw->cfg.conv.max_turns_loaded;

    m->load_rc = gw_store_conv_get(s, c->key->org_id, m->owner, m->conv_id, &m->conv);
    if (m->load_rc == GW_ENOTFOUND) {
        m->load_rc = 0; /* a new conversation */
        return;
    }
    if (m->load_rc != 0)
        return;
    int64_t after = m->conv.summary_upto;
    if (m->conv.turns - after > max)
        after = m->conv.turns - max;
    if ((m->turns = json_array()) == NULL) {
        m->load_rc = GW_ENOMEM;
        return;
    }
    m->load_rc = gw_store_conv_turns(s, m->conv.id, after, max, turn_cb, m);
}

/* What is sent: the summary (if any) and turns[from..] before the request's own messages.
 * It begins with a caller's turn: an answer without its question would open the conversation
 * (and Anthropic refuses an assistant turn first). */
static void send_history(struct gw_call *c, const char *summary, size_t from)
{
    struct gw_memory *m = c->mem;
    size_t n = json_array_size(m->turns);
    while (from < n) {
        const char *role = gw_json_str(json_array_get(m->turns, from), "role");
        if (role != NULL && strcmp(role, "user") == 0)
            break;
        from++;
    }
    if (from < n || (summary != NULL && summary[0] != '\0')) {
        if (gw_history_apply(c->canon, summary, m->turns, from) != 0) {
            gw_call_reply_error(c, 503, "service_unavailable", "overloaded", "out of memory", 1);
            gw_call_end(c);
            return;
        }
        /* the reservation's estimate grows with what was added (a token per 3 bytes, as for
         * the request itself) */
        c->input_estimate += (m->turns_bytes + (int64_t)(summary ? strlen(summary) : 0)) / 3;
    }
    GW_LOG_DEBUG("conv", "req=%s conversation %s: %zu of %zu turns sent%s", c->rid, m->conv_id,
                 n - (from < n ? from : n), n, summary && summary[0] ? " after a summary" : "");
    m->cont(c);
}

/* The summary of turns 1..upto, kept for the next requests (its own write, off the path). */
struct summary_job {
    struct gw_store_job job;
    int64_t conv, upto;
    char rid[72];
    char text[];
};

static void summary_run(struct gw_store_job *j, struct gw_store *s)
{
    struct summary_job *sj = (struct summary_job *)j;
    int rc = gw_store_conv_set_summary(s, sj->conv, sj->text, sj->upto);
    if (rc != 0)
        GW_LOG_ERROR("conv", "req=%s could not keep the summary of conversation %lld: %s",
                     sj->rid, (long long)sj->conv, gw_strerror(rc));
}

static void summary_done(struct gw_store_job *j) { gw_free(j); }

static void keep_summary(struct gw_call *c, const char *text, int64_t upto)
{
    size_t n = strlen(text);
    struct summary_job *sj = gw_calloc(1, sizeof(*sj) + n + 1);
    if (sj == NULL)
        return; /* used for this request; the next one summarizes again */
    sj->conv = c->mem->conv.id;
    sj->upto = upto;
    gw_strlcpy(sj->rid, c->rid, sizeof(sj->rid));
    memcpy(sj->text, text, n + 1);
    sj->job.run = summary_run;
    sj->job.done = summary_done;
    sj->job.writes = 1;
    gw_store_submit(c->w->exec, &sj->job);
}

static int summary_accept(void *arg, const json_t *answer, const char **why)
{
    struct summary_ask *sa = arg;
    json_t *msg = json_object_get(json_array_get(json_object_get(answer, "choices"), 0),
                                  "message");
    char *text = gw_history_text(msg);
    if (text == NULL || text[0] == '\0' || strlen(text) > (60u << 10)) {
        gw_free(text);
        *why = "the summary was empty or too long";
        return 0;
    }
    sa->text = text;
    return 1;
}

static void summary_free(void *arg)
{
    struct summary_ask *sa = arg;
    gw_free(sa->text);
    gw_free(sa);
}

static void summary_done_cb(struct gw_call *c, void *arg, int ok, int sent, const char *why)
{
    struct gw_memory *m = c->mem;
    struct summary_ask *sa = arg;
    (void)sent;
    if (!ok) {
        GW_LOG_WARN("conv", "req=%s conversation %s: the summary failed (%s); the oldest turns "
                    "are left out of what is sent instead", c->rid, m->conv_id, why);
        send_history(c, m->conv.summary,
                     gw_history_fit(m->req_tokens, m->conv.summary, m->turns, 0, m->budget));
        return;
    }
    keep_summary(c, sa->text, m->first_seq + (int64_t)sa->n - 1);
    send_history(c, sa->text,
                 gw_history_fit(m->req_tokens, sa->text, m->turns, sa->n, m->budget));
}

static const struct gw_side_ops summary_ops = {
    .kind = "summary",
    .route_method = "explicit",
    .accept = summary_accept,
    .done = summary_done_cb,
    .free = summary_free,
};

/* Ask the summarizer for turns[0..n) (with the old summary). 0 when its call started. */
static int summarize(struct gw_call *c, size_t n)
{
    struct gw *gw = c->w->gw;
    struct gw_memory *m = c->mem;
    const struct gw_model *sm = gw->summary_model;

    if (sm == NULL || !gw_call_model_allowed(c, sm))
        return GW_EUNSUPP;
    struct summary_ask *sa = gw_calloc(1, sizeof(*sa));
    json_t *req = gw_history_summary_request(m->conv.summary, m->turns, n,
                                             gw->cfg.conv.summary_max_tokens,
                                             (size_t)gw->cfg.conv.summary_max_chars);
    int rc = sa != NULL && req != NULL ? 0 : GW_ENOMEM;
    if (rc == 0) {
        sa->n = n;
        rc = gw_side_call_start(c, &summary_ops, sa, sm, req, gw->cfg.conv.summary_max_tokens,
                                gw->cfg.conv.summary_timeout_ms);
    }
    json_decref(req);
    if (rc != 0)
        gw_free(sa);
    return rc;
}

static void load_done(struct gw_call *c)
{
    struct gw *gw = c->w->gw;
    struct gw_memory *m = c->mem;

    if (c->cl.ctx == NULL) { /* the client left meanwhile */
        gw_call_end(c);
        return;
    }
    if (m->load_rc != 0) {
        GW_LOG_ERROR("conv", "req=%s cannot read conversation %s: %s", c->rid, m->conv_id,
                     gw_strerror(m->load_rc));
        gw_call_reply_error(c, 503, "service_unavailable", "store_unavailable",
                            "the conversation could not be read; try again", 1);
        gw_call_end(c);
        return;
    }
    if (json_array_size(m->turns) == 0 && (m->conv.summary == NULL || !m->conv.summary[0])) {
        m->cont(c); /* nothing to send before the request */
        return;
    }
    const struct gw_model *named = gw_catalog_find(gw->catalog, c->opts.model);
    int64_t window = named != NULL && named->context_window > 0 ? named->context_window
                                                                : gw->cfg.conv.default_context_tokens;
    m->budget = window * gw->cfg.conv.history_percent / 100;
    m->req_tokens = gw_tokens_messages(m->asked);
    size_t n = gw_history_plan(m->req_tokens, m->conv.summary, m->turns, m->budget,
                               (size_t)gw->cfg.conv.keep_recent_turns);
    if (n == 0) {
        send_history(c, m->conv.summary,
                     gw_history_fit(m->req_tokens, m->conv.summary, m->turns, 0, m->budget));
        return;
    }
    GW_LOG_INFO("conv", "req=%s conversation %s: %zu turns over the budget of %lld tokens; "
                "summarizing %zu", c->rid, m->conv_id, json_array_size(m->turns),
                (long long)m->budget, n);
    if (summarize(c, n) != 0) /* no summarizer for this key: cut what is sent */
        send_history(c, m->conv.summary,
                     gw_history_fit(m->req_tokens, m->conv.summary, m->turns, 0, m->budget));
}

void gw_memory_load(struct gw_call *c, void (*cont)(struct gw_call *c))
{
    struct gw_memory *m = c->mem;
    if (m == NULL || !m->remember) {
        cont(c);
        return;
    }
    m->cont = cont;
    gw_call_submit(c, 0, load_run, load_done);
}

/* ---- the answer ---- */

/* Keep msg (owned: a message object, or NULL) as the answer's turn. */
static void keep_answer(struct gw_memory *m, json_t *msg)
{
    if (!json_is_object(msg)) {
        json_decref(msg);
        return;
    }
    json_decref(m->answer);
    m->answer = msg;
    /* what the provider adds beyond a message is not the turn's */
    json_object_del(msg, "refusal");
    json_object_del(msg, "annotations");
    json_object_del(msg, "audio");
}

void gw_memory_answer(struct gw_call *c, const json_t *completion)
{
    if (c->mem == NULL)
        return;
    json_t *msg = json_object_get(json_array_get(json_object_get(completion, "choices"), 0),
                                  "message");
    if (json_is_object(msg))
        keep_answer(c->mem, json_deep_copy(msg));
}

static void add_text(struct gw_memory *m, const char *s, size_t len)
{
    if (s != NULL && !m->text_cut && gw_buf_add(&m->text, s, len) != 0)
        m->text_cut = 1;
}

/* Add the JSON string [open, close) of data (quotes included) as text when it has no escape:
 * then its bytes are the text, and nothing need decode them. */
static int add_plain_string(struct gw_memory *m, const char *data, size_t open, size_t close)
{
    if (close < open + 2 || memchr(data + open, '\\', close - open) != NULL)
        return 0;
    add_text(m, data + open + 1, close - open - 2);
    return 1;
}

void gw_memory_answer_raw(struct gw_call *c, const char *body, const struct gw_scan *scan)
{
    struct gw_errbuf eb = {{0}};
    struct gw_memory *m = c->mem;
    if (m == NULL || scan->msg_close == 0)
        return;
    json_decref(m->answer); /* a new answer replaces what an earlier one left */
    m->answer = NULL;
    gw_buf_reset(&m->text);
    m->as_text = m->text_cut = 0;
    /* a plain assistant text (the scan says): what the turn keeps is that text alone */
    if (scan->text_close != 0 && scan->text_close - scan->text_open < ANSWER_MAX &&
        add_plain_string(m, body, scan->text_open, scan->text_close)) {
        m->as_text = 1;
        return;
    }
    /* relayed as the provider's bytes, already checked: only the message is read */
    json_t *msg = gw_json_parse(body + scan->msg_open, scan->msg_close - scan->msg_open, &eb);
    if (msg != NULL)
        keep_answer(c->mem, msg);
    else
        GW_LOG_WARN("conv", "req=%s the answer could not be read for its conversation: %s",
                    c->rid, eb.msg);
}

void gw_memory_chunk(struct gw_call *c, const json_t *chunk)
{
    struct gw_memory *m = c->mem;
    size_t i;
    json_t *ch;
    if (m == NULL)
        return;
    m->as_text = 1;
    json_array_foreach(json_object_get(chunk, "choices"), i, ch) {
        if (gw_json_int(ch, "index", 0) != 0)
            continue; /* with n > 1 choices, the conversation goes on with the first */
        json_t *s = json_object_get(json_object_get(ch, "delta"), "content");
        add_text(m, json_string_value(s), json_string_length(s));
    }
}

void gw_memory_chunk_raw(struct gw_call *c, const char *data, const struct gw_scan *scan)
{
    struct gw_memory *m = c->mem;
    if (m == NULL || scan->text_chars == 0) /* a chunk without text adds nothing */
        return;
    m->as_text = 1;
    if (scan->text_close == 0) /* text for another choice, or reasoning only */
        return;
    /* only the content string is read: the scan has checked the rest */
    if (add_plain_string(m, data, scan->text_open, scan->text_close))
        return;
    json_t *s = gw_json_parse(data + scan->text_open, scan->text_close - scan->text_open, NULL);
    add_text(m, json_string_value(s), json_string_length(s));
    json_decref(s);
}

/* ---- capture ---- */

struct capture_job {
    struct gw_store_job job;
    struct gw_store_write write; /* the append, a plain write: it may go with others */
    struct gw_conv_append a;
    char owner[GW_CONV_OWNER_MAX];
    char conv_id[GW_CONV_ID_MAX];
    char ref[32];
    char title[128];
    char rid[72];
    int n;
    struct gw_conv_turn turns[];
};

static void capture_done(struct gw_store_job *j)
{
    struct capture_job *cj = (struct capture_job *)j;
    if (j->write != NULL && j->write->rc != 0)
        GW_LOG_ERROR("conv", "req=%s could not store the turns of conversation %s: %s", cj->rid,
                     cj->conv_id, gw_strerror(j->write->rc));
    else if (j->batch_rc != 0)
        GW_LOG_ERROR("conv", "req=%s the turns of conversation %s were lost with their batch: %s",
                     cj->rid, cj->conv_id, gw_strerror(j->batch_rc));
    for (int i = 0; i < cj->n; i++)
        gw_free(cj->turns[i].message);
    gw_free(cj);
}

/* Fill the job's next slot with message (owned, JSON text), of role and tokens; model: the
 * answer's ("" none), else NULL. */
static void add_turn_text(struct capture_job *cj, char *message, size_t len, const char *role,
                          int64_t tokens, const char *rid, const char *model, int64_t now)
{
    struct gw_conv_turn *ct = &cj->turns[cj->n];
    ct->message = message;
    ct->message_len = len;
    gw_strlcpy(ct->role, role, sizeof(ct->role));
    gw_strlcpy(ct->request_id, rid, sizeof(ct->request_id));
    if (model != NULL)
        gw_strlcpy(ct->model, model, sizeof(ct->model));
    ct->tokens = tokens;
    ct->created_ms = now;
    cj->n++;
}

/* Write turn t (borrowed) into the job's next slot, as add_turn_text. */
static void add_turn(struct capture_job *cj, const json_t *t, const char *rid, const char *model,
                     int64_t now)
{
    char *message = gw_json_dump(t);
    if (message != NULL)
        add_turn_text(cj, message, strlen(message),
                      gw_json_str(t, "role") ? gw_json_str(t, "role") : "user",
                      gw_tokens_message(t), rid, model, now);
}

/* The answer's text (m->text) as the assistant's turn, written out without a tree. */
static void add_text_turn(struct capture_job *cj, const struct gw_memory *m, const char *rid,
                          const char *model, int64_t now)
{
    static const char head[] = "{\"role\":\"assistant\",\"content\":";
    const char *text = m->text.data ? m->text.data : "";
    struct gw_buf b;
    gw_buf_init(&b, SIZE_MAX - 1);
    if (gw_buf_add(&b, head, sizeof(head) - 1) != 0 ||
        gw_buf_add_json_strn(&b, text, m->text.len) != 0 || gw_buf_add(&b, "}", 1) != 0) {
        gw_buf_cleanup(&b);
        return;
    }
    size_t len = b.len;
    add_turn_text(cj, gw_buf_take(&b), len, "assistant", gw_tokens_text_message(text, m->text.len),
                  rid, model, now);
}

void gw_memory_end(struct gw_call *c)
{
    struct gw_memory *m = c->mem;
    const json_t *msg;
    size_t i, n = 0;

    if (m == NULL)
        return;
    c->mem = NULL;
    if (c->row.status != 200 || (m->answer == NULL && !m->as_text))
        goto out; /* nothing complete to keep */
    if (m->as_text && m->text_cut)
        GW_LOG_WARN("conv", "req=%s the streamed answer is longer than %u bytes; its "
                    "conversation keeps the first %u", c->rid, ANSWER_MAX, ANSWER_MAX);
    /* the turns are the request's own messages and the answer (gw_history_new_turns), written
     * out here without a copy: nothing changes them any more */
    json_array_foreach(m->asked, i, msg)
        n += gw_history_is_turn(msg) ? 1 : 0;
    n += m->answer != NULL || m->as_text;
    struct capture_job *cj = n > 0 ? gw_calloc(1, sizeof(*cj) + n * sizeof(cj->turns[0])) : NULL;
    if (cj == NULL) {
        if (n > 0)
            GW_LOG_ERROR("conv", "req=%s out of memory: the turns of conversation %s are not "
                         "kept", c->rid, m->conv_id);
        goto out;
    }
    int64_t now = gw_now_ms();
    json_array_foreach(m->asked, i, msg)
        if (gw_history_is_turn(msg))
            add_turn(cj, msg, c->rid, NULL, now);
    if (m->as_text)
        add_text_turn(cj, m, c->rid, c->model ? c->model->id : "", now);
    else if (m->answer != NULL)
        add_turn(cj, m->answer, c->rid, c->model ? c->model->id : "", now);
    gw_strlcpy(cj->owner, m->owner, sizeof(cj->owner));
    gw_strlcpy(cj->conv_id, m->conv_id, sizeof(cj->conv_id));
    gw_strlcpy(cj->rid, c->rid, sizeof(cj->rid));
    gw_history_title(m->asked, cj->title, sizeof(cj->title));
    /* a new conversation's ref, in time order: the index on refs grows at its end instead of
     * dirtying a random page with every captured request */
    if (gw_time_id(cj->ref, sizeof(cj->ref), "cv_", now) != 0 || cj->n == 0) {
        capture_done(&cj->job);
        goto out;
    }
    cj->a = (struct gw_conv_append){
        .org_id = c->key->org_id,
        .owner = cj->owner,
        .conv_id = cj->conv_id,
        .ref = cj->ref,
        .title = cj->title,
        .turns = cj->turns,
        .n = cj->n,
        .now_ms = now,
    };
    cj->write = (struct gw_store_write){.conv = &cj->a};
    cj->job.write = &cj->write;
    cj->job.done = capture_done;
    cj->job.writes = 1;
    gw_store_submit(c->w->exec, &cj->job);
out:
    gw_memory_free(m);
}
