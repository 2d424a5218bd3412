/*
 * store/store — the public store interface, dispatched to the backend the URL names.
 */
#include <openssl/crypto.h>
#include <stdint.h>
#include <string.h>

#include "util/mem.h"
#include "util/util.h"

#include "store/store_int.h"

int gw_store_open(const char *url, struct gw_store **out, struct gw_errbuf *eb)
{
    *out = NULL;
    if (url == NULL) {
        gw_errbuf_set(eb, "no database URL");
        return GW_EINVAL;
    }
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
        return gw_postgres_open(url, out, eb);
    if (strncmp(url, "sqlite:", 7) == 0)
        return gw_sqlite_open(url, out, eb);
    gw_errbuf_set(eb, "unsupported database URL (expected sqlite:PATH or postgres://...)");
    return GW_EINVAL;
}

const char *gw_store_backend(const struct gw_store *s) { return s->ops->name; }

void gw_store_free(struct gw_store *s)
{
    if (s != NULL)
        s->ops->free(s);
}

int gw_store_migrate(struct gw_store *s, struct gw_errbuf *eb) { return s->ops->migrate(s, eb); }

int gw_store_schema_version(struct gw_store *s, int *out)
{
    return s->ops->schema_version(s, out);
}

int gw_store_org_create(struct gw_store *s, const char *slug, const char *name, int64_t *id_out)
{
    return s->ops->org_create(s, slug, name, id_out);
}

int gw_store_org_get(struct gw_store *s, const char *slug, struct gw_org *out)
{
    return s->ops->org_get(s, slug, out);
}

/* retention_days * 86400000 stays far from int64's end (some 2,700 years at most) */
#define RETENTION_DAYS_MAX 1000000

int gw_store_org_set_policy(struct gw_store *s, const struct gw_org *o)
{
    if (o->conv.retention_days < 0 || o->conv.retention_days > RETENTION_DAYS_MAX)
        return GW_EINVAL;
    return s->ops->org_set_policy(s, o);
}

int gw_store_key_insert(struct gw_store *s, struct gw_key_rec *rec, const unsigned char hash[32])
{
    return s->ops->key_insert(s, rec, hash);
}

int gw_store_key_by_hash(struct gw_store *s, const unsigned char hash[32], struct gw_key_rec *out)
{
    return s->ops->key_by_hash(s, hash, out);
}

int gw_store_key_get(struct gw_store *s, const char *key_id, struct gw_key_rec *out)
{
    return s->ops->key_get(s, key_id, out);
}

int gw_store_key_list(struct gw_store *s, int64_t org_id, gw_store_key_cb cb, void *arg)
{
    return s->ops->key_list(s, org_id, cb, arg);
}

int gw_store_key_set_policy(struct gw_store *s, const struct gw_key_rec *rec)
{
    return s->ops->key_set_policy(s, rec);
}

int gw_store_key_revoke(struct gw_store *s, const char *key_id)
{
    return s->ops->key_revoke(s, key_id);
}

int gw_store_app_client_insert(struct gw_store *s, struct gw_app_client *rec)
{
    return s->ops->app_client_insert(s, rec);
}

int gw_store_app_client_get(struct gw_store *s, const char *client_id, struct gw_app_client *out)
{
    return s->ops->app_client_get(s, client_id, out);
}

int gw_store_app_client_list(struct gw_store *s, int64_t org_id, int64_t after_id, int limit,
                             gw_store_app_client_cb cb, void *arg)
{
    if (limit < 0) /* SQLite would read it as no limit, PostgreSQL refuse it */
        return GW_EINVAL;
    return s->ops->app_client_list(s, org_id, after_id, limit, cb, arg);
}

int gw_store_app_client_approve(struct gw_store *s, const char *client_id, int64_t now_ms)
{
    return s->ops->app_client_approve(s, client_id, now_ms);
}

int gw_store_app_client_revoke(struct gw_store *s, const char *client_id, int64_t now_ms)
{
    return s->ops->app_client_revoke(s, client_id, now_ms);
}

int gw_store_app_client_update(struct gw_store *s, const struct gw_app_client *rec)
{
    return s->ops->app_client_update(s, rec);
}

int gw_store_app_origin_known(struct gw_store *s, const char *origin, int *out)
{
    return s->ops->app_origin_known(s, origin, out);
}

int gw_store_share_code_insert(struct gw_store *s, const struct gw_share_code *c)
{
    return s->ops->share_code_insert(s, c);
}

int gw_store_share_code_consume(struct gw_store *s, const char *code_hash,
                                struct gw_share_code *out)
{
    return s->ops->share_code_consume(s, code_hash, out);
}

int gw_store_session_insert(struct gw_store *s, const struct gw_subject_session *ss)
{
    return s->ops->session_insert(s, ss);
}

int gw_store_session_get(struct gw_store *s, const char *token_hash,
                         struct gw_subject_session *out)
{
    return s->ops->session_get(s, token_hash, out);
}

int gw_store_nonce_burn(struct gw_store *s, const char *token_hash, const char *nonce,
                        int64_t expires_ms)
{
    return s->ops->nonce_burn(s, token_hash, nonce, expires_ms);
}

int gw_store_session_purge(struct gw_store *s, int64_t now_ms, int limit, int64_t *count)
{
    return s->ops->session_purge(s, now_ms, limit, count);
}

int gw_store_superadmin_exists(struct gw_store *s, int *out)
{
    return s->ops->superadmin_exists(s, out);
}

int gw_store_usage_reserve(struct gw_store *s, const struct gw_usage_row *row)
{
    return s->ops->usage_reserve(s, row);
}

int gw_store_usage_settle(struct gw_store *s, const struct gw_usage_row *row)
{
    return s->ops->usage_settle(s, row);
}

int gw_store_usage_get(struct gw_store *s, const char *request_id, struct gw_usage_row *out)
{
    return s->ops->usage_get(s, request_id, out);
}

int gw_store_usage_spent(struct gw_store *s, enum gw_scope scope, int64_t id, int64_t since_ms,
                         int64_t *micros)
{
    return s->ops->usage_spent(s, scope, id, since_ms, micros);
}

int gw_store_usage_recent(struct gw_store *s, enum gw_scope scope, int64_t id, int64_t since_ms,
                          gw_store_recent_cb cb, void *arg)
{
    return s->ops->usage_recent(s, scope, id, since_ms, cb, arg);
}

int gw_store_usage_list(struct gw_store *s, const struct gw_usage_filter *f,
                        gw_store_usage_cb cb, void *arg, struct gw_usage_totals *totals)
{
    return s->ops->usage_list(s, f, cb, arg, totals);
}

int gw_store_usage_recover(struct gw_store *s, const char *node, int64_t *count)
{
    return s->ops->usage_recover(s, node ? node : "", count);
}

/* ---- the admin plane's reads ---- */

/* f (NULL: no filter) as the backends take it: to_ms 0 is INT64_MAX (a bound the index range
 * can use, where "0 or less than" is not) and the strings terminated. */
static void usage_filter_norm(const struct gw_usage_filter *f, struct gw_usage_filter *out)
{
    memset(out, 0, sizeof(*out));
    if (f != NULL)
        *out = *f;
    out->model[sizeof(out->model) - 1] = '\0';
    out->provider[sizeof(out->provider) - 1] = '\0';
    if (out->to_ms <= 0)
        out->to_ms = INT64_MAX;
}

int gw_store_usage_group(struct gw_store *s, const struct gw_usage_filter *f,
                         enum gw_usage_group by, int max_groups, gw_store_group_cb cb, void *arg,
                         struct gw_usage_totals *totals)
{
    struct gw_usage_filter copy;
    if (totals != NULL)
        memset(totals, 0, sizeof(*totals));
    if (max_groups <= 0 || (by != GW_GROUP_DAY && by != GW_GROUP_KEY && by != GW_GROUP_MODEL &&
                            by != GW_GROUP_PROVIDER))
        return GW_EINVAL;
    usage_filter_norm(f, &copy);
    return s->ops->usage_group(s, &copy, by, max_groups, cb, arg, totals);
}

int gw_store_usage_page(struct gw_store *s, const struct gw_usage_filter *f, int64_t after_ms,
                        const char *after_id, int limit, gw_store_usage_page_cb cb, void *arg)
{
    struct gw_usage_filter copy;
    if (limit < 0 || cb == NULL)
        return GW_EINVAL;
    if (limit == 0)
        return 0;
    usage_filter_norm(f, &copy);
    if (copy.from_ms < after_ms) /* rows before the cursor are past already */
        copy.from_ms = after_ms;
    return s->ops->usage_page(s, &copy, after_ms, after_id != NULL ? after_id : "", limit, cb,
                              arg);
}

int gw_store_org_list(struct gw_store *s, int64_t after_id, int limit, gw_store_org_cb cb,
                      void *arg)
{
    if (limit < 0 || cb == NULL)
        return GW_EINVAL;
    return s->ops->org_list(s, after_id, limit, cb, arg);
}

int gw_store_org_get_id(struct gw_store *s, int64_t id, struct gw_org *out)
{
    return s->ops->org_get_id(s, id, out);
}

int gw_store_key_rotate(struct gw_store *s, const char *key_id, const unsigned char new_hash[32],
                        const char *new_prefix, int64_t prev_expires_ms)
{
    if (key_id == NULL || new_hash == NULL || new_prefix == NULL ||
        strlen(new_prefix) >= sizeof(((struct gw_key_rec *)0)->prefix) || prev_expires_ms < 0)
        return GW_EINVAL;
    return s->ops->key_rotate(s, key_id, new_hash, new_prefix, prev_expires_ms);
}

int gw_store_health(struct gw_store *s, int64_t now_ms, struct gw_store_health *out)
{
    memset(out, 0, sizeof(*out));
    return s->ops->health(s, now_ms, out);
}

int gw_store_tx_begin(struct gw_store *s) { return s->ops->tx(s, "BEGIN"); }
int gw_store_tx_commit(struct gw_store *s) { return s->ops->tx(s, "COMMIT"); }
void gw_store_tx_rollback(struct gw_store *s) { (void)s->ops->tx(s, "ROLLBACK"); }
int gw_store_in_tx(struct gw_store *s) { return s->ops->in_tx(s); }

int gw_store_admission_begin(struct gw_store *s, const struct gw_admission_read *r,
                             struct gw_scope_usage *key, struct gw_scope_usage *org)
{
    memset(key, 0, sizeof(*key));
    memset(org, 0, sizeof(*org));
    if (s->ops->admission_begin != NULL)
        return s->ops->admission_begin(s, r, key, org);
    int rc = gw_store_tx_begin(s);
    if (rc != 0)
        return rc;
    if ((r->lock_org && (rc = gw_store_lock_scope(s, GW_SCOPE_ORG, r->org_id)) != 0) ||
        (r->lock_key && (rc = gw_store_lock_scope(s, GW_SCOPE_KEY, r->key_id)) != 0) ||
        (r->key_want && (rc = gw_store_usage_snapshot(s, GW_SCOPE_KEY, r->key_id, r->hour_start,
                                                      r->day_start, r->month_start,
                                                      r->key_want, key)) != 0) ||
        (r->org_want && (rc = gw_store_usage_snapshot(s, GW_SCOPE_ORG, r->org_id, r->hour_start,
                                                      r->day_start, r->month_start,
                                                      r->org_want, org)) != 0))
        gw_store_tx_rollback(s);
    return rc;
}

int gw_store_writer_mode(struct gw_store *s)
{
    return s->ops->writer_mode != NULL ? s->ops->writer_mode(s) : 0;
}

int gw_store_lock_scope(struct gw_store *s, enum gw_scope scope, int64_t id)
{
    return s->ops->lock_scope(s, scope, id);
}

int gw_store_usage_snapshot(struct gw_store *s, enum gw_scope scope, int64_t id,
                            int64_t hour_start, int64_t day_start, int64_t month_start, int want,
                            struct gw_scope_usage *out)
{
    return s->ops->usage_snapshot(s, scope, id, hour_start, day_start, month_start, want, out);
}

int gw_store_counters_add(struct gw_store *s, const struct gw_counters_delta *d)
{
    return s->ops->counters_add(s, d);
}

/* write(row) and the counters' change, atomic: in the caller's transaction or one of its own */
static int counted(struct gw_store *s, int (*write)(struct gw_store *, const struct gw_usage_row *),
                   const struct gw_usage_row *row, const struct gw_counters_delta *d)
{
    int own = !gw_store_in_tx(s), rc;
    if (own && (rc = gw_store_tx_begin(s)) != 0)
        return rc;
    if ((rc = write(s, row)) != 0 || (rc = gw_store_counters_add(s, d)) != 0 ||
        (own && (rc = gw_store_tx_commit(s)) != 0)) {
        if (own)
            gw_store_tx_rollback(s);
        return rc;
    }
    return 0;
}

/* a settlement that counts changes a reserved row only */
static int settle_reserved(struct gw_store *s, const struct gw_usage_row *row)
{
    struct gw_usage_row cur;
    int rc = s->ops->usage_get(s, row->request_id, &cur);
    if (rc == 0 && strcmp(cur.state, "reserved") != 0)
        rc = GW_ENOTFOUND;
    return rc != 0 ? rc : s->ops->usage_settle(s, row);
}

int gw_store_usage_reserve_counted(struct gw_store *s, const struct gw_usage_row *row,
                                   const struct gw_counters_delta *d)
{
    if (s->ops->usage_reserve_counted != NULL)
        return s->ops->usage_reserve_counted(s, row, d);
    return counted(s, s->ops->usage_reserve, row, d);
}

int gw_store_usage_settle_counted(struct gw_store *s, const struct gw_usage_row *row,
                                  const struct gw_counters_delta *d)
{
    if (s->ops->usage_settle_counted != NULL)
        return s->ops->usage_settle_counted(s, row, d);
    return counted(s, settle_reserved, row, d);
}

void gw_store_write_many(struct gw_store *s, struct gw_store_write *const *w, int n)
{
    if (n > 1 && s->ops->write_many != NULL) {
        s->ops->write_many(s, w, n);
        return;
    }
    for (int i = 0; i < n; i++)
        gw_store_write_one(s, w[i]);
}

void gw_store_write_one(struct gw_store *s, struct gw_store_write *w)
{
    w->rc = w->key_hash != NULL ? gw_store_key_by_hash(s, w->key_hash, w->key)
            : w->conv != NULL   ? gw_store_conv_append(s, w->conv, NULL)
            : w->settle         ? gw_store_usage_settle_counted(s, w->row, &w->d)
                                : gw_store_usage_reserve_counted(s, w->row, &w->d);
}

int gw_store_rate_list(struct gw_store *s, enum gw_scope scope, int64_t id, int64_t since_second,
                       gw_store_rate_cb cb, void *arg)
{
    return s->ops->rate_list(s, scope, id, since_second, cb, arg);
}

void gw_idem_rec_cleanup(struct gw_idem_rec *r)
{
    if (r == NULL)
        return;
    gw_free(r->headers);
    if (r->body != NULL) /* answers can hold prompts' echoes: wipe before freeing */
        OPENSSL_cleanse(r->body, r->body_len);
    gw_free(r->body);
    r->headers = r->body = NULL;
    r->body_len = 0;
}

int gw_store_idem_claim(struct gw_store *s, const struct gw_idem_rec *rec, int64_t now_ms,
                        int *claimed, struct gw_idem_rec *existing)
{
    *claimed = 0;
    memset(existing, 0, sizeof(*existing));
    return s->ops->idem_claim(s, rec, now_ms, claimed, existing);
}

int gw_store_idem_complete(struct gw_store *s, const struct gw_idem_rec *rec)
{
    return s->ops->idem_complete(s, rec);
}

int gw_store_idem_release(struct gw_store *s, const struct gw_idem_rec *rec)
{
    return s->ops->idem_release(s, rec);
}

int gw_store_idem_recover(struct gw_store *s, const char *node, int64_t *count)
{
    return s->ops->idem_recover(s, node ? node : "", count);
}

int gw_store_idem_purge(struct gw_store *s, int64_t now_ms, int limit, int64_t *count)
{
    return s->ops->idem_purge(s, now_ms, limit, count);
}

/* ---- conversations ----
 * The arguments are checked here, once for both backends: the strings that are read back into
 * fixed fields must fit them (a longer one is refused, but a title is cut at a UTF-8 character
 * boundary), and the stored text is bounded. */

/* Is s a string of 1..max-1 bytes? */
static int fits(const char *s, size_t max)
{
    return s != NULL && s[0] != '\0' && strlen(s) < max;
}

static size_t turn_len(const struct gw_conv_turn *t)
{
    return t->message_len != 0 ? t->message_len : strlen(t->message);
}

/* An append's names and counts within their bounds (its turns are check_turn's). */
static int append_fits(const struct gw_conv_append *a)
{
    return a != NULL && fits(a->owner, GW_CONV_OWNER_MAX) && fits(a->conv_id, GW_CONV_ID_MAX) &&
           fits(a->ref, sizeof(((struct gw_conv *)0)->ref)) && a->n >= 0 &&
           (a->n == 0 || a->turns != NULL);
}

static int check_turn(const struct gw_conv_turn *t)
{
    if (t->message == NULL || !fits(t->role, sizeof(t->role)) ||
        strnlen(t->request_id, sizeof(t->request_id)) >= sizeof(t->request_id) ||
        strnlen(t->model, sizeof(t->model)) >= sizeof(t->model))
        return GW_EINVAL;
    size_t n = turn_len(t);
    if (n > GW_CONV_MESSAGE_MAX)
        return GW_ETOOBIG;
    /* text: PostgreSQL's cannot hold a NUL, so neither backend stores one */
    return memchr(t->message, '\0', n) != NULL ? GW_EINVAL : 0;
}

int gw_store_conv_append_ready(const struct gw_conv_append *a)
{
    if (!append_fits(a) || a->n < 1 || a->title == NULL ||
        strlen(a->title) >= sizeof(((struct gw_conv *)0)->title))
        return 0;
    for (int i = 0; i < a->n; i++)
        if (a->turns[i].message_len == 0 || check_turn(&a->turns[i]) != 0)
            return 0;
    return 1;
}

void gw_conv_cleanup(struct gw_conv *c)
{
    if (c == NULL)
        return;
    if (c->summary != NULL) /* what a conversation said: wiped before it is freed */
        OPENSSL_cleanse(c->summary, strlen(c->summary));
    gw_free(c->summary);
    c->summary = NULL;
}

int gw_store_conv_append(struct gw_store *s, const struct gw_conv_append *a, struct gw_conv *conv)
{
    struct gw_conv_append copy;
    struct gw_conv_turn *turns = NULL;
    char title[sizeof(((struct gw_conv *)0)->title)];
    int rc;

    if (conv != NULL)
        memset(conv, 0, sizeof(*conv));
    if (!append_fits(a))
        return GW_EINVAL;
    for (int i = 0; i < a->n; i++)
        if ((rc = check_turn(&a->turns[i])) != 0)
            return rc;
    /* the title is the start of a message: cut to fit, never inside a UTF-8 character */
    size_t tn = a->title != NULL ? strlen(a->title) : 0;
    if (tn >= sizeof(title)) {
        tn = sizeof(title) - 1;
        while (tn > 0 && ((unsigned char)a->title[tn] & 0xC0) == 0x80)
            tn--;
    }
    if (tn > 0)
        memcpy(title, a->title, tn);
    title[tn] = '\0';
    copy = *a;
    copy.title = title;
    if (a->n > 0) { /* each message_len set (0 meant: up to the NUL) */
        if ((turns = gw_calloc((size_t)a->n, sizeof(*turns))) == NULL)
            return GW_ENOMEM;
        for (int i = 0; i < a->n; i++) {
            turns[i] = a->turns[i];
            turns[i].message_len = turn_len(&a->turns[i]);
        }
        copy.turns = turns;
    }
    rc = s->ops->conv_append(s, &copy, conv);
    gw_free(turns);
    return rc;
}

int gw_store_conv_get(struct gw_store *s, int64_t org_id, const char *owner, const char *conv_id,
                      struct gw_conv *out)
{
    memset(out, 0, sizeof(*out));
    if (owner == NULL || conv_id == NULL)
        return GW_EINVAL;
    return s->ops->conv_get(s, org_id, owner, conv_id, out);
}

int gw_store_conv_get_shared(struct gw_store *s, int64_t org_id, const char *ref,
                             struct gw_conv *out)
{
    memset(out, 0, sizeof(*out));
    if (ref == NULL)
        return GW_EINVAL;
    return s->ops->conv_get_shared(s, org_id, ref, out);
}

int gw_store_conv_turns(struct gw_store *s, int64_t conv, int64_t after_seq, int limit,
                        gw_store_turn_cb cb, void *arg)
{
    if (limit < 0 || cb == NULL)
        return GW_EINVAL;
    return s->ops->conv_turns(s, conv, after_seq, limit, cb, arg);
}

#define CONV_Q_MAX 512 /* a search text's bytes */

int gw_store_conv_list(struct gw_store *s, const struct gw_conv_filter *f, gw_store_conv_cb cb,
                       void *arg)
{
    struct gw_conv_filter copy;
    char pattern[2 * CONV_Q_MAX + 3];
    size_t n = 0;

    if (f == NULL || cb == NULL || f->limit < 0)
        return GW_EINVAL;
    copy = *f;
    /* q as a LIKE pattern: its own %, _ and \ taken literally (ESCAPE '\') */
    if (f->q != NULL && f->q[0] != '\0') {
        if (strlen(f->q) > CONV_Q_MAX)
            return GW_ETOOBIG;
        pattern[n++] = '%';
        for (const char *q = f->q; *q != '\0'; q++) {
            if (*q == '%' || *q == '_' || *q == '\\')
                pattern[n++] = '\\';
            pattern[n++] = *q;
        }
        pattern[n++] = '%';
    }
    pattern[n] = '\0';
    copy.q = pattern;
    if (copy.before_ms <= 0) { /* from the newest: a cursor past every row */
        copy.before_ms = INT64_MAX;
        copy.before_id = INT64_MAX;
    }
    return s->ops->conv_list(s, &copy, cb, arg);
}

int gw_store_conv_set_shared(struct gw_store *s, int64_t org_id, const char *owner,
                             const char *conv_id, int shared)
{
    if (owner == NULL || conv_id == NULL)
        return GW_EINVAL;
    return s->ops->conv_set_shared(s, org_id, owner, conv_id, shared != 0);
}

int gw_store_conv_set_summary(struct gw_store *s, int64_t conv, const char *summary, int64_t upto)
{
    if (summary == NULL)
        summary = "";
    if (upto < 0)
        return GW_EINVAL;
    if (strlen(summary) > GW_CONV_SUMMARY_MAX)
        return GW_ETOOBIG;
    return s->ops->conv_set_summary(s, conv, summary, upto);
}

int gw_store_conv_delete(struct gw_store *s, int64_t org_id, const char *owner,
                         const char *conv_id)
{
    if (owner == NULL || conv_id == NULL)
        return GW_EINVAL;
    return s->ops->conv_delete(s, org_id, owner, conv_id);
}

int gw_store_conv_export(struct gw_store *s, int64_t org_id, int shared_only, int64_t from_ms,
                         int64_t to_ms, int64_t after_id, int limit, gw_store_conv_cb cb,
                         void *arg)
{
    if (limit < 0 || cb == NULL)
        return GW_EINVAL;
    return s->ops->conv_export(s, org_id, shared_only != 0, from_ms,
                               to_ms > 0 ? to_ms : INT64_MAX, after_id, limit, cb, arg);
}

int gw_store_conv_purge(struct gw_store *s, int64_t now_ms, int limit, int64_t *count)
{
    *count = 0;
    if (limit < 0)
        return GW_EINVAL;
    return s->ops->conv_purge(s, now_ms, limit, count);
}

/* ---- audit trail ---- */

int gw_store_audit_append(struct gw_store *s, struct gw_audit *a)
{
    struct gw_audit copy;
    if (a == NULL || !fits(a->action, sizeof(a->action)) ||
        strnlen(a->actor, sizeof(a->actor)) >= sizeof(a->actor) ||
        strnlen(a->actor_role, sizeof(a->actor_role)) >= sizeof(a->actor_role) ||
        strnlen(a->target, sizeof(a->target)) >= sizeof(a->target) ||
        strnlen(a->request_id, sizeof(a->request_id)) >= sizeof(a->request_id))
        return GW_EINVAL;
    if (a->detail != NULL && strlen(a->detail) > GW_AUDIT_DETAIL_MAX)
        return GW_ETOOBIG;
    if (a->created_ms == 0)
        a->created_ms = gw_now_ms();
    copy = *a;
    copy.detail = a->detail != NULL && a->detail[0] != '\0' ? a->detail : "{}";
    int rc = s->ops->audit_append(s, &copy);
    if (rc == 0)
        a->id = copy.id;
    return rc;
}

int gw_store_audit_list(struct gw_store *s, int64_t org_id, int64_t after_id, int limit,
                        gw_store_audit_cb cb, void *arg)
{
    if (limit < 0 || cb == NULL)
        return GW_EINVAL;
    return s->ops->audit_list(s, org_id, after_id, limit, cb, arg);
}
