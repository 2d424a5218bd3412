/*
 * core/conversations — the conversation store's endpoints (see conversations.h).
 *
 * One store job per request (like core/admin): the caller's lookup (an API key, or a subject
 * session's signed request), the permission check and the store work run together on a store
 * thread; the answer goes out on the worker. The export streams: one job per page, the next one
 * submitted once the page has been written to the client, so that memory holds one page.
 *
 * Privacy: a conversation is its owner's (org and owner: a key, or a session's subject). The
 * owner's routes find it by the owner's own conversation_id, so another owner's or org's can
 * never be named; the org's routes find only conversations shared in the caller's org. What is
 * not visible is answered 404, exactly as what does not exist.
 */
#include "core/conversations.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/answer.h"
#include "core/call.h"
#include "core/export.h"
#include "core/sessions.h"
#include "http/reply.h"
#include "util/json.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/util.h"

#define LIST_DEFAULT 20
#define LIST_MAX 100
#define TURNS_MAX 1000
/* a page is read where the worker's store reads run (SQLite: on the worker itself), so it is
 * small: a few milliseconds of the loop at a time */
#define EXPORT_PAGE 25
#define EXPORT_PAGE_BYTES (256u << 10)

enum op { OP_LIST, OP_GET, OP_DELETE, OP_SHARE, OP_UNSHARE, OP_ORG_LIST, OP_ORG_GET, OP_EXPORT };

struct conv_job {
    struct gw_store_job job;
    struct gw_worker *w;
    struct evhttp_request *req;
    char rid[72];
    enum op op;
    unsigned char hash[32];
    struct gw_session_auth *sess;
    char id[GW_CONV_ID_MAX]; /* a conversation_id, or a ref for the org's routes */
    /* the query, checked on the worker */
    char bad[200];
    int limit;
    int64_t before_ms, before_id; /* list cursor */
    int64_t after;                /* turns' cursor; export: the last row id sent */
    char q[201];
    char org[64];
    int all;                      /* export: private conversations too */
    int64_t from_ms, to_ms;
    /* on the store thread */
    int auth_rc;
    struct gw_key_rec key;
    char owner[GW_CONV_OWNER_MAX];
    struct gw_answer an;
    /* the export's org */
    int64_t org_id;
    char org_slug[64];
    int authed;                   /* a session's delete: its check ran (and burnt the nonce) */
};

/* ---- the query ---- */

static int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    return gw_parse_i64(s, out) == 0 && *out >= min && *out <= max ? 0 : -1;
}

static void parse_query(struct conv_job *j)
{
    struct evkeyvalq q;
    const char *uri = evhttp_request_get_uri(j->req);
    const char *qs = strchr(uri, '?');
    const char *v;
    int64_t n;

    j->limit = j->op == OP_GET || j->op == OP_ORG_GET ? TURNS_MAX : LIST_DEFAULT;
    if (qs == NULL)
        return;
    if (evhttp_parse_query_str(qs + 1, &q) != 0) {
        snprintf(j->bad, sizeof(j->bad), "the query string is not valid");
        return;
    }
    int max = j->op == OP_GET || j->op == OP_ORG_GET ? TURNS_MAX : LIST_MAX;
    if ((v = evhttp_find_header(&q, "limit")) != NULL) {
        if (parse_i64(v, 1, max, &n) != 0)
            snprintf(j->bad, sizeof(j->bad), "limit must be from 1 to %d", max);
        else
            j->limit = (int)n;
    }
    if ((v = evhttp_find_header(&q, "cursor")) != NULL) { /* "<updated_ms>.<row id>" */
        long long a, b;
        char extra;
        if (sscanf(v, "%lld.%lld%c", &a, &b, &extra) != 2 || a <= 0 || b <= 0)
            snprintf(j->bad, sizeof(j->bad), "cursor is not one this gateway gave");
        j->before_ms = a;
        j->before_id = b;
    }
    if ((v = evhttp_find_header(&q, "after")) != NULL &&
        parse_i64(v, 0, INT64_MAX, &j->after) != 0)
        snprintf(j->bad, sizeof(j->bad), "after must be a turn number");
    if ((v = evhttp_find_header(&q, "q")) != NULL) {
        if (strlen(v) >= sizeof(j->q))
            snprintf(j->bad, sizeof(j->bad), "q must be at most %zu bytes", sizeof(j->q) - 1);
        else
            gw_strlcpy(j->q, v, sizeof(j->q));
    }
    if ((v = evhttp_find_header(&q, "org")) != NULL)
        gw_strlcpy(j->org, v, sizeof(j->org));
    if ((v = evhttp_find_header(&q, "format")) != NULL && strcmp(v, "jsonl") != 0)
        snprintf(j->bad, sizeof(j->bad), "format must be jsonl");
    if ((v = evhttp_find_header(&q, "scope")) != NULL) {
        if (strcmp(v, "all") == 0)
            j->all = 1;
        else if (strcmp(v, "shared") != 0)
            snprintf(j->bad, sizeof(j->bad), "scope must be shared or all");
    }
    if ((v = evhttp_find_header(&q, "from")) != NULL && gw_parse_when_ms(v, &j->from_ms) != 0)
        snprintf(j->bad, sizeof(j->bad), "from must be unix seconds or an ISO 8601 UTC time");
    if ((v = evhttp_find_header(&q, "to")) != NULL && gw_parse_when_ms(v, &j->to_ms) != 0)
        snprintf(j->bad, sizeof(j->bad), "to must be unix seconds or an ISO 8601 UTC time");
    evhttp_clear_headers(&q);
}

/* ---- the answer ---- */

static json_t *conv_json(const struct gw_conv *c, int with_owner)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:b,s:I,s:I,s:I}", "object", "conversation", "id",
                          c->conv_id, "ref", c->ref, "title", c->title, "shared", c->shared,
                          "turns", (json_int_t)c->turns, "created_at",
                          (json_int_t)(c->created_ms / 1000), "updated_at",
                          (json_int_t)(c->updated_ms / 1000));
    if (o != NULL && with_owner)
        json_object_set_new(o, "owner", json_string(c->owner));
    return o;
}

static json_t *turn_json(const struct gw_conv_turn *t)
{
    json_t *msg = gw_json_parse(t->message, t->message_len, NULL);
    return json_pack("{s:I,s:o,s:s,s:s,s:I}", "seq", (json_int_t)t->seq, "message",
                     msg != NULL ? msg : json_null(), "request_id", t->request_id, "model",
                     t->model, "created_at", (json_int_t)(t->created_ms / 1000));
}

struct lister {
    json_t *data;
    int n, limit;
    int with_owner;
    int64_t last_ms, last_id;
};

static int list_cb(void *arg, const struct gw_conv *c)
{
    struct lister *l = arg;
    if (l->n == l->limit) { /* one more than the page: there is a next one */
        l->n++;
        return 1;
    }
    if (json_array_append_new(l->data, conv_json(c, l->with_owner)) != 0)
        return 1;
    l->n++;
    l->last_ms = c->updated_ms;
    l->last_id = c->id;
    return 0;
}

static void do_list(struct conv_job *j, struct gw_store *s, int org)
{
    struct lister l = {json_array(), 0, j->limit, org, 0, 0};
    struct gw_conv_filter f = {
        .org_id = j->key.org_id,
        .owner = org ? NULL : j->owner,
        .shared_only = org,
        .q = j->q,
        .before_ms = j->before_ms,
        .before_id = j->before_id,
        .limit = j->limit + 1,
    };
    int rc = l.data != NULL ? gw_store_conv_list(s, &f, list_cb, &l) : GW_ENOMEM;
    if (rc != 0) {
        json_decref(l.data);
        gw_answer_store_failed(&j->an, "conv", j->rid, rc);
        return;
    }
    char cursor[48];
    snprintf(cursor, sizeof(cursor), "%lld.%lld", (long long)l.last_ms, (long long)l.last_id);
    j->an.out = json_pack("{s:s,s:o,s:o}", "object", "list", "data", l.data, "next_cursor",
                          l.n > l.limit ? json_string(cursor) : json_null());
    j->an.status = 200;
}

struct turner {
    json_t *turns;
    int n, limit;
    int64_t last;
};

static int turn_cb(void *arg, const struct gw_conv_turn *t)
{
    struct turner *tr = arg;
    if (tr->n == tr->limit) {
        tr->n++;
        return 1;
    }
    if (json_array_append_new(tr->turns, turn_json(t)) != 0)
        return 1;
    tr->n++;
    tr->last = t->seq;
    return 0;
}

static void not_found(struct conv_job *j)
{
    gw_answer_fail(&j->an, 404, "invalid_request_error", "not_found", "no such conversation");
}

static void do_get(struct conv_job *j, struct gw_store *s, int org)
{
    struct gw_conv c = {0};
    int rc = org ? gw_store_conv_get_shared(s, j->key.org_id, j->id, &c)
                 : gw_store_conv_get(s, j->key.org_id, j->owner, j->id, &c);
    if (rc == GW_ENOTFOUND) {
        not_found(j);
        return;
    }
    struct turner tr = {json_array(), 0, j->limit, 0};
    if (rc == 0)
        rc = tr.turns != NULL ? gw_store_conv_turns(s, c.id, j->after, j->limit + 1, turn_cb, &tr)
                              : GW_ENOMEM;
    if (rc != 0) {
        json_decref(tr.turns);
        gw_conv_cleanup(&c);
        gw_answer_store_failed(&j->an, "conv", j->rid, rc);
        return;
    }
    json_t *o = conv_json(&c, org);
    if (o != NULL) {
        json_object_set_new(o, "summary", c.summary && c.summary[0] ? json_string(c.summary)
                                                                    : json_null());
        json_object_set_new(o, "summarized_turns", json_integer(c.summary_upto));
        json_object_set_new(o, "messages", tr.turns);
        json_object_set_new(o, "next_after", tr.n > tr.limit ? json_integer(tr.last)
                                                             : json_null());
    } else {
        json_decref(tr.turns);
    }
    gw_conv_cleanup(&c);
    j->an.out = o;
    j->an.status = 200;
}

static void do_change(struct conv_job *j, struct gw_store *s)
{
    int rc = j->op == OP_DELETE
                 ? gw_store_conv_delete(s, j->key.org_id, j->owner, j->id)
                 : gw_store_conv_set_shared(s, j->key.org_id, j->owner, j->id, j->op == OP_SHARE);
    if (rc == GW_ENOTFOUND) {
        not_found(j);
        return;
    }
    if (rc != 0) {
        gw_answer_store_failed(&j->an, "conv", j->rid, rc);
        return;
    }
    GW_LOG_INFO("conv", "req=%s conversation %s of %s %s", j->rid, j->id, j->owner,
                j->op == OP_DELETE ? "deleted" : j->op == OP_SHARE ? "shared" : "unshared");
    if (j->op == OP_DELETE) {
        j->an.out = json_pack("{s:s,s:s,s:b}", "id", j->id, "object", "conversation.deleted",
                              "deleted", 1);
        j->an.status = 200;
        return;
    }
    struct gw_conv c = {0};
    if ((rc = gw_store_conv_get(s, j->key.org_id, j->owner, j->id, &c)) != 0) {
        gw_answer_store_failed(&j->an, "conv", j->rid, rc);
        return;
    }
    j->an.out = conv_json(&c, 0);
    gw_conv_cleanup(&c);
    j->an.status = 200;
}

/* The export's first step: who may export what, and the audit entry. */
static void do_export_begin(struct conv_job *j, struct gw_store *s)
{
    int super = strcmp(j->key.role, "superadmin") == 0;
    struct gw_org o;
    int rc;

    if (!super && strcmp(j->key.role, "org_admin") != 0) {
        gw_answer_fail(&j->an, 403, "permission_error", "admin_only",
                       "exports take an org_admin or the superadmin key");
        return;
    }
    if (super && j->org[0] == '\0') {
        gw_answer_fail(&j->an, 400, "invalid_request_error", "invalid_request",
                       "the superadmin names the org to export (?org=slug)");
        return;
    }
    rc = gw_store_org_get(s, j->org[0] ? j->org : j->key.org_slug, &o);
    if (rc == GW_ENOTFOUND || (rc == 0 && !super && o.id != j->key.org_id)) {
        gw_answer_fail(&j->an, 404, "invalid_request_error", "not_found", "no such org");
        return;
    }
    if (rc != 0) {
        gw_answer_store_failed(&j->an, "conv", j->rid, rc);
        return;
    }
    if (j->all && !o.conv.export_all) {
        gw_answer_fail(&j->an, 403, "permission_error", "export_all_not_allowed",
                       "the org's policy exports shared conversations only (export_all is off)");
        return;
    }
    j->org_id = o.id;
    gw_strlcpy(j->org_slug, o.slug, sizeof(j->org_slug));
    char detail[200];
    snprintf(detail, sizeof(detail), "{\"scope\":\"%s\",\"from\":%lld,\"to\":%lld,\"format\":"
             "\"jsonl\"}", j->all ? "all" : "shared", (long long)(j->from_ms / 1000),
             (long long)(j->to_ms / 1000));
    struct gw_audit a = {.org_id = o.id, .detail = detail};
    gw_strlcpy(a.actor, j->key.key_id, sizeof(a.actor));
    gw_strlcpy(a.actor_role, j->key.role, sizeof(a.actor_role));
    gw_strlcpy(a.action, "conversations.export", sizeof(a.action));
    gw_strlcpy(a.target, o.slug, sizeof(a.target));
    gw_strlcpy(a.request_id, j->rid, sizeof(a.request_id));
    if ((rc = gw_store_audit_append(s, &a)) != 0) { /* no export without its audit entry */
        gw_answer_store_failed(&j->an, "conv", j->rid, rc);
        return;
    }
    GW_LOG_INFO("conv", "req=%s conversations of org %s exported (%s) by key %s", j->rid,
                o.slug, j->all ? "all" : "shared", j->key.key_id);
    j->an.status = 200;
}

static void job_run(struct gw_store_job *jb, struct gw_store *s)
{
    struct conv_job *j = (struct conv_job *)jb;
    if (!j->authed) {
        j->auth_rc = j->sess != NULL ? gw_session_lookup(s, j->sess, &j->key)
                                     : gw_auth_lookup(s, j->hash, &j->key);
        if (j->auth_rc != 0)
            return;
        if (j->op == OP_DELETE && j->sess != NULL) { /* the delete runs as a job of its own */
            j->authed = 1;
            return;
        }
    }
    if (j->bad[0] != '\0') {
        gw_answer_fail(&j->an, 400, "invalid_request_error", "invalid_request", j->bad);
        return;
    }
    if (gw_memory_owner(&j->key, j->sess != NULL, j->owner, sizeof(j->owner)) != 0) {
        gw_answer_fail(&j->an, 500, "internal_error", "internal_error", "internal error");
        return;
    }
    switch (j->op) {
    case OP_LIST:
    case OP_ORG_LIST:
        do_list(j, s, j->op == OP_ORG_LIST);
        break;
    case OP_GET:
    case OP_ORG_GET:
        do_get(j, s, j->op == OP_ORG_GET);
        break;
    case OP_EXPORT:
        do_export_begin(j, s);
        return; /* its body streams */
    default:
        do_change(j, s);
        break;
    }
    gw_answer_check(&j->an);
}

static void job_free(struct conv_job *j)
{
    gw_session_auth_free(j->sess);
    json_decref(j->an.out);
    OPENSSL_cleanse(j->hash, sizeof(j->hash));
    gw_free(j);
}

/* ---- the export's pages ---- */

struct conv_export {
    int64_t org_id;
    char org_slug[64];
    int all;
    int64_t from_ms, to_ms;
    int64_t after; /* the last row id sent */
};

struct pager {
    struct gw_conv rows[EXPORT_PAGE];
    int n;
};

static int export_cb(void *arg, const struct gw_conv *c)
{
    struct pager *p = arg;
    p->rows[p->n] = *c;
    p->rows[p->n].summary = gw_strdup(c->summary ? c->summary : "");
    if (p->rows[p->n].summary == NULL)
        return 1;
    p->n++;
    return p->n == EXPORT_PAGE;
}

static int export_turn_cb(void *arg, const struct gw_conv_turn *t)
{
    return json_array_append_new(arg, turn_json(t)) != 0;
}

/* One line of JSONL for c, with its turns. */
static int export_line(const struct conv_export *ce, struct gw_store *s, const struct gw_conv *c,
                       struct evbuffer *out)
{
    json_t *turns = json_array();
    int rc = turns != NULL ? gw_store_conv_turns(s, c->id, 0, 0, export_turn_cb, turns)
                           : GW_ENOMEM;
    json_t *o = rc == 0 ? json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:I,s:I,s:s,s:I,s:o}", "ref",
                                    c->ref, "org", ce->org_slug, "owner", c->owner,
                                    "conversation_id", c->conv_id, "title", c->title, "shared",
                                    c->shared, "created_at", (json_int_t)(c->created_ms / 1000),
                                    "updated_at", (json_int_t)(c->updated_ms / 1000), "summary",
                                    c->summary, "summarized_turns", (json_int_t)c->summary_upto,
                                    "messages", turns)
                        : NULL;
    if (o == NULL) {
        json_decref(turns);
        return rc != 0 ? rc : GW_ENOMEM;
    }
    char *line = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    rc = line != NULL && evbuffer_add(out, line, strlen(line)) == 0 &&
                 evbuffer_add(out, "\n", 1) == 0
             ? 0
             : GW_ENOMEM;
    gw_free(line);
    return rc;
}

/* A page: conversations after ce->after, until EXPORT_PAGE of them or EXPORT_PAGE_BYTES. */
static int conv_page(void *arg, struct gw_store *s, struct evbuffer *out, int *done,
                     int64_t *items)
{
    struct conv_export *ce = arg;
    struct pager *p = gw_calloc(1, sizeof(*p));
    int rc = p != NULL ? gw_store_conv_export(s, ce->org_id, !ce->all, ce->from_ms, ce->to_ms,
                                              ce->after, EXPORT_PAGE, export_cb, p)
                       : GW_ENOMEM;
    int i = 0;
    while (rc == 0 && i < p->n) {
        rc = export_line(ce, s, &p->rows[i], out);
        ce->after = p->rows[i++].id;
        (*items)++;
        if (evbuffer_get_length(out) >= EXPORT_PAGE_BYTES)
            break;
    }
    if (p != NULL) {
        *done = rc == 0 && i == p->n && p->n < EXPORT_PAGE;
        for (int k = 0; k < p->n; k++)
            gw_conv_cleanup(&p->rows[k]);
    }
    gw_free(p);
    return rc;
}

static const struct gw_export_ops conv_export_ops = {
    .what = "conversations",
    .content_type = "application/x-ndjson",
    .page = conv_page,
    .free = gw_free,
};

/* ---- the first job's end ---- */

static void job_done(struct gw_store_job *jb)
{
    struct conv_job *j = (struct conv_job *)jb;
    int ok = j->sess != NULL ? gw_session_end(j->req, j->rid, j->auth_rc, j->sess) == 0
                             : gw_auth_end(j->req, j->rid, j->auth_rc, &j->key) == 0;
    if (!ok) {
        job_free(j);
        return;
    }
    if (j->authed && j->an.status == 0) { /* a session's delete, its nonce burnt: now delete */
        if (jb->batch_rc != 0) {
            gw_answer_send(&j->an, j->req, j->rid, jb->batch_rc);
            job_free(j);
            return;
        }
        jb->writes = 0;
        gw_store_submit(j->w->exec, jb);
        return;
    }
    if (j->op != OP_EXPORT || j->an.status != 200 || jb->batch_rc != 0) {
        if (j->op == OP_EXPORT && j->an.status == 200) /* its audit entry was lost */
            gw_answer_store_failed(&j->an, "conv", j->rid, jb->batch_rc);
        gw_answer_send(&j->an, j->req, j->rid, jb->batch_rc);
        job_free(j);
        return;
    }
    struct conv_export *ce = gw_calloc(1, sizeof(*ce));
    if (ce == NULL) {
        gw_reply_error(j->req, 503, "service_unavailable", "overloaded", "out of memory", j->rid,
                       1);
        job_free(j);
        return;
    }
    ce->org_id = j->org_id;
    gw_strlcpy(ce->org_slug, j->org_slug, sizeof(ce->org_slug));
    ce->all = j->all;
    ce->from_ms = j->from_ms;
    ce->to_ms = j->to_ms;
    gw_export_start(j->w, j->req, j->rid, &conv_export_ops, ce);
    job_free(j);
}

/* ---- routing ---- */

static int id_ok(const char *s, size_t n)
{
    return n > 0 && n < GW_CONV_ID_MAX &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") >= n;
}

/* Which route: the op, and the id in the path (copied into id). -1: not ours; -2: answered. */
static int match(struct evhttp_request *req, const char *rid, const char *path, char *id,
                 enum op *op)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const char *rest;
    int org;

    if (strcmp(path, "/admin/v1/conversations/export") == 0) {
        if (m != EVHTTP_REQ_GET) {
            gw_reply_method_not_allowed(req, rid, "GET");
            return -2;
        }
        *op = OP_EXPORT;
        return 0;
    }
    if (strncmp(path, "/v1/conversations", 17) == 0 && (path[17] == '\0' || path[17] == '/')) {
        rest = path + 17;
        org = 0;
    } else if (strncmp(path, "/v1/org/conversations", 21) == 0 &&
               (path[21] == '\0' || path[21] == '/')) {
        rest = path + 21;
        org = 1;
    } else {
        return -1;
    }
    if (*rest == '\0') {
        if (m != EVHTTP_REQ_GET) {
            gw_reply_method_not_allowed(req, rid, "GET");
            return -2;
        }
        *op = org ? OP_ORG_LIST : OP_LIST;
        return 0;
    }
    rest++;
    size_t n = strcspn(rest, "/");
    const char *tail = rest + n;
    if (!id_ok(rest, n) || (*tail != '\0' && (org || strcmp(tail, "/share") != 0))) {
        gw_reply_error(req, 404, "invalid_request_error", "not_found", "no such endpoint", rid, 0);
        return -2;
    }
    memcpy(id, rest, n);
    id[n] = '\0';
    if (*tail != '\0') {
        if (m != EVHTTP_REQ_POST && m != EVHTTP_REQ_DELETE) {
            gw_reply_method_not_allowed(req, rid, "POST, DELETE");
            return -2;
        }
        *op = m == EVHTTP_REQ_POST ? OP_SHARE : OP_UNSHARE;
    } else if (org) {
        if (m != EVHTTP_REQ_GET) {
            gw_reply_method_not_allowed(req, rid, "GET");
            return -2;
        }
        *op = OP_ORG_GET;
    } else if (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_DELETE) {
        *op = m == EVHTTP_REQ_GET ? OP_GET : OP_DELETE;
    } else {
        gw_reply_method_not_allowed(req, rid, "GET, DELETE");
        return -2;
    }
    return 0;
}

int gw_conversations_route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                           const char *path)
{
    char id[GW_CONV_ID_MAX] = "";
    enum op op;
    int r = match(req, rid, path, id, &op);
    if (r != 0)
        return r == -2;
    struct conv_job *j = gw_calloc(1, sizeof(*j));
    if (j == NULL) {
        gw_reply_error(req, 503, "service_unavailable", "overloaded", "out of memory", rid, 1);
        return 1;
    }
    int session = op == OP_EXPORT ? 0 : gw_session_begin(w, req, rid, &j->sess);
    if (session < 0 || (session == 0 && gw_auth_begin(w, req, rid, j->hash) != 0)) {
        gw_free(j);
        return 1;
    }
    j->w = w;
    j->req = req;
    j->op = op;
    gw_strlcpy(j->rid, rid, sizeof(j->rid));
    gw_strlcpy(j->id, id, sizeof(j->id));
    parse_query(j);
    j->job.run = job_run;
    j->job.done = job_done;
    /* a session's check burns its nonce; an export writes its audit entry; a delete runs its
     * own transaction (and on SQLite its checkpoint) outside the writer's batches, so it does
     * not count as one of their writes */
    j->job.writes = session || op == OP_EXPORT || op == OP_SHARE || op == OP_UNSHARE;
    j->job.heavy = op == OP_LIST || op == OP_ORG_LIST || op == OP_GET || op == OP_ORG_GET;
    gw_store_submit(w->exec, &j->job);
    return 1;
}
