/*
 * core/usage_export — GET /admin/v1/usage/export?format=csv|jsonl[&from=&to=&org=&key=&model=
 * &provider=]: the usage rows of the filter (the same as /admin/v1/usage's, so that the rows sum
 * to its totals exactly), oldest first, streamed a page at a time (core/export.c), after an
 * audit entry ("usage.export"). An org_admin exports its own org's; the superadmin any org's or
 * all of them.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "admin/admin.h"
#include "core/admin.h"
#include "core/export.h"
#include "core/gw_int.h"
#include "http/reply.h"
#include "store/jobs.h"
#include "util/json.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/util.h"

#define PAGE_ROWS 500
#define RANGE_MAX_MS (366 * 86400000LL)

static const char CSV_HEAD[] =
    "request_id,created_at,org,key_id,subject,kind,parent_request_id,endpoint,provider,model,"
    "route_method,stream,state,status,error_code,tokens_in,tokens_out,cached_tokens,"
    "reasoning_tokens,cost_micros,cost_usd,latency_ms\n";

struct usage_export {
    struct gw_usage_filter f;
    int csv;
    int head_sent;
    int64_t after_ms;
    char after_id[GW_USAGE_ID_MAX];
    struct evbuffer *out; /* the page being written (valid during a page) */
    int page_rows;        /* rows in it */
    int rc;
};

/* A CSV field: quoted when it holds a comma, a quote or a line break. */
static void csv_field(struct evbuffer *out, const char *s)
{
    if (strcspn(s, ",\"\r\n") == strlen(s)) {
        evbuffer_add(out, s, strlen(s));
        return;
    }
    evbuffer_add(out, "\"", 1);
    for (; *s != '\0'; s++) {
        if (*s == '"')
            evbuffer_add(out, "\"", 1);
        evbuffer_add(out, s, 1);
    }
    evbuffer_add(out, "\"", 1);
}

static int row_cb(void *arg, const struct gw_usage_row *r, const char *key_id,
                  const char *org_slug)
{
    struct usage_export *ue = arg;
    struct evbuffer *out = ue->out;
    char created[GW_ISO_TIME_MAX];
    gw_iso_time_ms(r->created_ms, created, sizeof(created));
    if (ue->csv) {
        const char *text[] = {r->request_id, created,   org_slug,  key_id,
                              r->subject,    r->kind,   r->parent_request_id,
                              r->endpoint,   r->provider, r->model, r->route_method};
        for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++) {
            csv_field(out, text[i]);
            evbuffer_add(out, ",", 1);
        }
        evbuffer_add_printf(out, "%d,", r->stream);
        csv_field(out, r->state);
        evbuffer_add_printf(out, ",%d,", r->status);
        csv_field(out, r->error_code);
        evbuffer_add_printf(out, ",%lld,%lld,%lld,%lld,%lld,%lld.%06lld,%lld\n",
                            (long long)r->tokens_in, (long long)r->tokens_out,
                            (long long)r->cached_tokens, (long long)r->reasoning_tokens,
                            (long long)r->cost_micros, (long long)(r->cost_micros / 1000000),
                            (long long)(r->cost_micros % 1000000), (long long)r->latency_ms);
    } else {
        json_t *o = json_pack(
            "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:i,s:s,s:I,s:I,s:I,s:I,s:I,"
            "s:f,s:I}",
            "request_id", r->request_id, "created_at", created, "org", org_slug, "key_id", key_id,
            "subject", r->subject, "kind", r->kind, "parent_request_id", r->parent_request_id,
            "endpoint", r->endpoint, "provider", r->provider, "model", r->model, "route_method",
            r->route_method, "stream", r->stream, "state", r->state, "status", r->status,
            "error_code", r->error_code, "tokens_in", (json_int_t)r->tokens_in, "tokens_out",
            (json_int_t)r->tokens_out, "cached_tokens", (json_int_t)r->cached_tokens,
            "reasoning_tokens", (json_int_t)r->reasoning_tokens, "cost_micros",
            (json_int_t)r->cost_micros, "cost_usd", (double)r->cost_micros / 1e6, "latency_ms",
            (json_int_t)r->latency_ms);
        char *line = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
        json_decref(o);
        if (line == NULL) {
            ue->rc = GW_ENOMEM;
            return 1;
        }
        evbuffer_add(out, line, strlen(line));
        evbuffer_add(out, "\n", 1);
        gw_free(line);
    }
    ue->after_ms = r->created_ms;
    gw_strlcpy(ue->after_id, r->request_id, sizeof(ue->after_id));
    ue->page_rows++;
    return 0;
}

static int usage_page(void *arg, struct gw_store *s, struct evbuffer *out, int *done,
                      int64_t *items)
{
    struct usage_export *ue = arg;
    if (ue->csv && !ue->head_sent) {
        evbuffer_add(out, CSV_HEAD, sizeof(CSV_HEAD) - 1);
        ue->head_sent = 1;
    }
    int64_t at_ms = ue->after_ms;
    char at_id[GW_USAGE_ID_MAX];
    gw_strlcpy(at_id, ue->after_id, sizeof(at_id));
    ue->out = out;
    ue->rc = 0;
    ue->page_rows = 0;
    int rc = gw_store_usage_page(s, &ue->f, at_ms, at_id, PAGE_ROWS, row_cb, ue);
    if (rc == 0)
        rc = ue->rc;
    *items += ue->page_rows;
    *done = rc == 0 && ue->page_rows < PAGE_ROWS; /* a short page is the last */
    return rc;
}

static void usage_export_free(void *arg) { gw_free(arg); }

static const struct gw_export_ops csv_ops = {
    .what = "usage",
    .content_type = "text/csv; charset=utf-8",
    .page = usage_page,
    .free = usage_export_free,
};
static const struct gw_export_ops jsonl_ops = {
    .what = "usage",
    .content_type = "application/x-ndjson",
    .page = usage_page,
    .free = usage_export_free,
};

/* ---- the first job: who, what, the audit entry ---- */

struct begin_job {
    struct gw_store_job job;
    struct gw_worker *w;
    struct evhttp_request *req;
    char rid[72];
    unsigned char hash[32];
    struct evkeyvalq q;
    int have_q;
    int csv;
    char bad[120];
    int auth_rc;
    struct gw_key_rec key;
    struct gw_admin_ctx x;
    struct gw_usage_filter f;
};

static void begin_run(struct gw_store_job *j, struct gw_store *s)
{
    struct begin_job *b = (struct begin_job *)j;
    struct gw_admin_ctx *x = &b->x;
    if ((b->auth_rc = gw_auth_lookup(s, b->hash, &b->key)) != 0)
        return;
    x->s = s;
    x->cfg = &b->w->gw->cfg;
    x->gw = b->w->gw;
    x->who = &b->key;
    x->super = strcmp(b->key.role, "superadmin") == 0;
    x->rid = b->rid;
    x->id = "";
    x->q = b->have_q ? &b->q : NULL;
    if (!x->super && strcmp(b->key.role, "org_admin") != 0) {
        gw_answer_fail(&x->an, 403, "permission_error", "admin_only",
                       "exports take an org_admin or the superadmin key");
        return;
    }
    if (b->bad[0] != '\0') {
        gw_answer_fail(&x->an, 400, "invalid_request_error", "invalid_request", b->bad);
        return;
    }
    if (gw_admin_usage_filter(x, &b->f, RANGE_MAX_MS) != 0)
        return;
    x->au.set = 1;
    x->au.org_id = b->f.org_id;
    snprintf(x->au.target, sizeof(x->au.target), "usage");
    x->au.after = json_pack("{s:s,s:I,s:I,s:I,s:s,s:s}", "format", b->csv ? "csv" : "jsonl",
                            "from", (json_int_t)(b->f.from_ms / 1000), "to",
                            (json_int_t)(b->f.to_ms / 1000), "org_id", (json_int_t)b->f.org_id,
                            "model", b->f.model, "provider", b->f.provider);
    int rc = gw_admin_audit_write(x, "usage.export");
    if (rc != 0) { /* no export without its audit entry */
        gw_answer_store_failed(&x->an, "admin", b->rid, rc);
        return;
    }
    x->an.status = 200;
}

static void begin_done(struct gw_store_job *j)
{
    struct begin_job *b = (struct begin_job *)j;
    OPENSSL_cleanse(b->hash, sizeof(b->hash));
    if (gw_auth_end(b->req, b->rid, b->auth_rc, &b->key) != 0) {
        /* answered */
    } else if (b->x.an.status != 200 || j->batch_rc != 0) {
        if (b->x.an.status == 200) /* its audit entry was lost */
            gw_answer_store_failed(&b->x.an, "admin", b->rid, j->batch_rc);
        gw_answer_send(&b->x.an, b->req, b->rid, j->batch_rc);
    } else {
        struct usage_export *ue = gw_calloc(1, sizeof(*ue));
        if (ue == NULL) {
            gw_reply_error(b->req, 503, "service_unavailable", "overloaded", "out of memory",
                           b->rid, 1);
        } else {
            ue->f = b->f;
            ue->csv = b->csv;
            gw_export_start(b->w, b->req, b->rid, b->csv ? &csv_ops : &jsonl_ops, ue);
        }
    }
    gw_admin_ctx_cleanup(&b->x);
    if (b->have_q)
        evhttp_clear_headers(&b->q);
    gw_free(b);
}

int gw_usage_export_route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                          const char *path)
{
    (void)path;
    struct begin_job *b = gw_calloc(1, sizeof(*b));
    if (b == NULL) {
        gw_reply_error(req, 503, "service_unavailable", "overloaded", "out of memory", rid, 1);
        return 1;
    }
    if (gw_auth_begin(w, req, rid, b->hash) != 0) {
        gw_free(b);
        return 1;
    }
    b->w = w;
    b->req = req;
    gw_strlcpy(b->rid, rid, sizeof(b->rid));
    const char *qs = strchr(evhttp_request_get_uri(req), '?');
    if (qs != NULL && evhttp_parse_query_str(qs + 1, &b->q) == 0)
        b->have_q = 1;
    else if (qs != NULL)
        snprintf(b->bad, sizeof(b->bad), "the query string is not valid");
    const char *format = b->have_q ? evhttp_find_header(&b->q, "format") : NULL;
    if (format == NULL || strcmp(format, "csv") == 0)
        b->csv = 1;
    else if (strcmp(format, "jsonl") != 0)
        snprintf(b->bad, sizeof(b->bad), "format must be csv or jsonl");
    b->job.run = begin_run;
    b->job.done = begin_done;
    b->job.writes = 1; /* its audit entry */
    gw_store_submit(w->exec, &b->job);
    return 1;
}

int gw_usage_export_cli(struct gw_store *s, const struct gw_config *cfg, const char *query,
                        FILE *out, char *err, size_t errsz)
{
    struct gw_key_rec cli;
    struct evkeyvalq q;
    struct usage_export ue;
    int have_q = 0, rc = 0;

    memset(&ue, 0, sizeof(ue));
    if (query != NULL && query[0] != '\0') {
        if (evhttp_parse_query_str(query, &q) != 0) {
            snprintf(err, errsz, "invalid query '%s'", query);
            return GW_EINVAL;
        }
        have_q = 1;
    }
    const char *format = have_q ? evhttp_find_header(&q, "format") : NULL;
    ue.csv = format == NULL || strcmp(format, "csv") == 0;
    if (!ue.csv && strcmp(format, "jsonl") != 0) {
        snprintf(err, errsz, "format must be csv or jsonl");
        rc = GW_EINVAL;
        goto out;
    }
    memset(&cli, 0, sizeof(cli));
    gw_strlcpy(cli.key_id, "cli", sizeof(cli.key_id));
    gw_strlcpy(cli.role, "superadmin", sizeof(cli.role));
    struct gw_admin_ctx x = {.s = s, .cfg = cfg, .who = &cli, .super = 1, .rid = "cli", .id = "",
                             .q = have_q ? &q : NULL};
    if (gw_admin_usage_filter(&x, &ue.f, RANGE_MAX_MS) != 0) {
        snprintf(err, errsz, "%s", x.an.msg);
        gw_admin_ctx_cleanup(&x);
        rc = GW_EINVAL;
        goto out;
    }
    /* the same audit entry as the API's */
    x.au.org_id = ue.f.org_id;
    snprintf(x.au.target, sizeof(x.au.target), "usage");
    x.au.after = json_pack("{s:s,s:I,s:I,s:I}", "format", ue.csv ? "csv" : "jsonl", "from",
                           (json_int_t)(ue.f.from_ms / 1000), "to", (json_int_t)(ue.f.to_ms / 1000),
                           "org_id", (json_int_t)ue.f.org_id);
    rc = gw_admin_audit_write(&x, "usage.export");
    gw_admin_ctx_cleanup(&x);
    if (rc != 0) {
        snprintf(err, errsz, "cannot write the audit entry: %s", gw_strerror(rc));
        goto out;
    }
    struct evbuffer *page = evbuffer_new();
    int done = 0;
    int64_t n = 0;
    while (rc == 0 && page != NULL && !done) {
        rc = usage_page(&ue, s, page, &done, &n);
        size_t len = evbuffer_get_length(page);
        const unsigned char *p = len > 0 ? evbuffer_pullup(page, -1) : NULL;
        if (p != NULL && fwrite(p, 1, len, out) != len)
            rc = GW_EIO;
        evbuffer_drain(page, len);
    }
    if (page == NULL)
        rc = GW_ENOMEM;
    else
        evbuffer_free(page);
    if (rc != 0 && err[0] == '\0')
        snprintf(err, errsz, "the export failed: %s", gw_strerror(rc));
out:
    if (have_q)
        evhttp_clear_headers(&q);
    return rc;
}
