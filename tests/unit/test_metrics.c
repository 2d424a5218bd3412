/* Unit tests for util/metrics: counts, histogram buckets, exact totals under threads, and a
 * strict parse of the rendered Prometheus text (0.0.4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/mem.h"
#include "util/metrics.h"

/* ---- a strict exposition-format checker ---- */

#define MAXFAM 64
#define MAXSERIES 128

struct fam {
    char name[128];
    char type[16];
    int help, types, samples;
};

struct series {
    char key[512]; /* family name + labels other than le */
    double last_le;
    double last_cum;
    double inf;
    int has_inf, has_count;
};

struct check {
    struct fam fam[MAXFAM];
    int nfam;
    struct series ser[MAXSERIES];
    int nser;
    char err[512];
};

static int is_name_start(int c)
{
    return c == '_' || c == ':' || ((c | 32) >= 'a' && (c | 32) <= 'z');
}
static int is_name_char(int c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

static struct fam *fam_get(struct check *c, const char *name, size_t n)
{
    for (int i = 0; i < c->nfam; i++)
        if (strlen(c->fam[i].name) == n && memcmp(c->fam[i].name, name, n) == 0)
            return &c->fam[i];
    if (c->nfam == MAXFAM || n >= sizeof(c->fam[0].name))
        return NULL;
    struct fam *f = &c->fam[c->nfam++];
    memset(f, 0, sizeof(*f));
    memcpy(f->name, name, n);
    return f;
}

static struct series *series_get(struct check *c, const char *key)
{
    for (int i = 0; i < c->nser; i++)
        if (strcmp(c->ser[i].key, key) == 0)
            return &c->ser[i];
    if (c->nser == MAXSERIES)
        return NULL;
    struct series *s = &c->ser[c->nser++];
    memset(s, 0, sizeof(*s));
    snprintf(s->key, sizeof(s->key), "%s", key);
    s->last_le = -INFINITY;
    return s;
}

static int bad(struct check *c, const char *line, const char *why)
{
    const char *nl = strchr(line, '\n');
    int n = nl ? (int)(nl - line) : (int)strlen(line);
    snprintf(c->err, sizeof(c->err), "%s: '%.*s'", why, n > 200 ? 200 : n, line);
    return -1;
}

static int parse_value(const char *s, size_t n, double *v)
{
    char tmp[64];
    if (n == 0 || n >= sizeof(tmp) || s[0] == ' ')
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (strcmp(tmp, "+Inf") == 0) {
        *v = INFINITY;
        return 0;
    }
    char *end;
    *v = strtod(tmp, &end);
    return *end == '\0' ? 0 : -1;
}

/* Check one sample line; p points at its start, e at its '\n'. */
static int check_sample(struct check *c, const char *p, const char *e)
{
    const char *line = p;
    const char *name = p;
    if (!is_name_start((unsigned char)*p))
        return bad(c, line, "bad metric name");
    while (p < e && is_name_char((unsigned char)*p))
        p++;
    size_t nlen = (size_t)(p - name);

    char key[512] = "", le[256] = "";
    int has_le = 0;
    if (p < e && *p == '{') {
        p++;
        int first = 1;
        while (p < e && *p != '}') {
            if (!first && *p++ != ',')
                return bad(c, line, "expected ,");
            first = 0;
            const char *ln = p;
            if (!is_name_start((unsigned char)*p) || *p == ':')
                return bad(c, line, "bad label name");
            while (p < e && is_name_char((unsigned char)*p) && *p != ':')
                p++;
            size_t lnlen = (size_t)(p - ln);
            if (p + 1 >= e || p[0] != '=' || p[1] != '"')
                return bad(c, line, "expected =\"");
            p += 2;
            char val[256];
            size_t vn = 0;
            while (p < e && *p != '"') {
                char ch = *p++;
                if (ch == '\\') {
                    if (p >= e)
                        return bad(c, line, "dangling escape");
                    ch = *p++;
                    if (ch == 'n')
                        ch = '\n';
                    else if (ch != '\\' && ch != '"')
                        return bad(c, line, "bad escape");
                }
                if (vn + 1 < sizeof(val))
                    val[vn++] = ch;
            }
            val[vn] = '\0';
            if (p >= e)
                return bad(c, line, "unterminated label value");
            p++; /* closing quote */
            if (lnlen == 2 && memcmp(ln, "le", 2) == 0) {
                has_le = 1;
                snprintf(le, sizeof(le), "%s", val);
            } else {
                size_t k = strlen(key);
                snprintf(key + k, sizeof(key) - k, ",%.*s=%s", (int)lnlen, ln, val);
            }
        }
        if (p >= e)
            return bad(c, line, "unterminated labels");
        p++;
    }
    if (p >= e || *p != ' ')
        return bad(c, line, "expected one space before the value");
    p++;
    double v;
    if (parse_value(p, (size_t)(e - p), &v) != 0)
        return bad(c, line, "bad value (or a timestamp)");

    /* Which family? A histogram's samples carry a suffix. */
    struct fam *f = NULL;
    const char *suffix = "";
    for (int i = 0; i < c->nfam && f == NULL; i++) {
        struct fam *g = &c->fam[i];
        size_t gl = strlen(g->name);
        if (strcmp(g->type, "histogram") == 0) {
            static const char *const sfx[] = {"_bucket", "_sum", "_count"};
            for (int s = 0; s < 3; s++)
                if (nlen == gl + strlen(sfx[s]) && memcmp(name, g->name, gl) == 0 &&
                    memcmp(name + gl, sfx[s], strlen(sfx[s])) == 0) {
                    f = g;
                    suffix = sfx[s];
                }
        } else if (nlen == gl && memcmp(name, g->name, gl) == 0) {
            f = g;
        }
    }
    if (f == NULL || f->types != 1 || f->help != 1)
        return bad(c, line, "sample before its family's HELP and TYPE");
    f->samples++;
    if (strcmp(f->type, "counter") == 0 && !(v >= 0))
        return bad(c, line, "negative counter");
    if (strcmp(suffix, "_bucket") == 0) {
        if (!has_le)
            return bad(c, line, "bucket without le");
        double lev;
        if (parse_value(le, strlen(le), &lev) != 0)
            return bad(c, line, "bad le");
        char sk[640];
        snprintf(sk, sizeof(sk), "%s%s", f->name, key);
        struct series *s = series_get(c, sk);
        if (s == NULL)
            return bad(c, line, "too many series");
        if (!(lev > s->last_le))
            return bad(c, line, "le not increasing");
        if (v < s->last_cum)
            return bad(c, line, "bucket counts not cumulative");
        s->last_le = lev;
        s->last_cum = v;
        if (isinf(lev)) {
            s->inf = v;
            s->has_inf = 1;
        }
    } else if (has_le) {
        return bad(c, line, "le outside a bucket");
    } else if (strcmp(suffix, "_count") == 0) {
        char sk[640];
        snprintf(sk, sizeof(sk), "%s%s", f->name, key);
        struct series *s = series_get(c, sk);
        if (s == NULL || !s->has_inf || s->inf != v)
            return bad(c, line, "_count differs from the +Inf bucket");
        s->has_count = 1;
    }
    return 0;
}

/* Parse text as Prometheus exposition 0.0.4; 0 or -1 with c->err set. */
static int check_exposition(struct check *c, const char *text)
{
    memset(c, 0, sizeof(*c));
    const char *p = text;
    if (*p == '\0')
        return bad(c, p, "empty");
    while (*p != '\0') {
        const char *e = strchr(p, '\n');
        if (e == NULL)
            return bad(c, p, "last line without a newline");
        if (e == p)
            return bad(c, p, "empty line");
        if (strncmp(p, "# HELP ", 7) == 0 || strncmp(p, "# TYPE ", 7) == 0) {
            int is_help = p[2] == 'H';
            const char *n = p + 7, *ne = n;
            while (ne < e && is_name_char((unsigned char)*ne))
                ne++;
            if (ne == n || ne >= e || *ne != ' ')
                return bad(c, p, "bad HELP/TYPE name");
            struct fam *f = fam_get(c, n, (size_t)(ne - n));
            if (f == NULL)
                return bad(c, p, "too many families");
            if (f->samples > 0)
                return bad(c, p, "HELP/TYPE after samples");
            if (is_help) {
                f->help++;
                for (const char *q = ne + 1; q < e; q++)
                    if (*q == '\\' && q + 1 < e && q[1] != '\\' && q[1] != 'n')
                        return bad(c, p, "bad escape in HELP");
            } else {
                size_t tl = (size_t)(e - ne - 1);
                if (f->types > 0 || tl >= sizeof(f->type))
                    return bad(c, p, "second TYPE");
                memcpy(f->type, ne + 1, tl);
                f->type[tl] = '\0';
                f->types++;
                if (strcmp(f->type, "counter") && strcmp(f->type, "gauge") &&
                    strcmp(f->type, "histogram") && strcmp(f->type, "summary") &&
                    strcmp(f->type, "untyped"))
                    return bad(c, p, "unknown TYPE");
            }
            if (f->help > 1)
                return bad(c, p, "second HELP");
        } else if (*p == '#') {
            return bad(c, p, "unexpected comment");
        } else if (check_sample(c, p, e) != 0) {
            return -1;
        }
        p = e + 1;
    }
    for (int i = 0; i < c->nfam; i++) {
        struct fam *f = &c->fam[i];
        if (f->help != 1 || f->types != 1 || f->samples == 0) {
            snprintf(c->err, sizeof(c->err), "family %s: %d HELP, %d TYPE, %d samples", f->name,
                     f->help, f->types, f->samples);
            return -1;
        }
    }
    for (int i = 0; i < c->nser; i++)
        if (!c->ser[i].has_inf || !c->ser[i].has_count) {
            snprintf(c->err, sizeof(c->err), "histogram %s without +Inf or _count",
                     c->ser[i].key);
            return -1;
        }
    return 0;
}

static void assert_valid(const char *text)
{
    struct check *c = malloc(sizeof(*c));
    assert_non_null(c);
    if (check_exposition(c, text) != 0)
        fail_msg("invalid exposition: %s", c->err);
    free(c);
}

static int has_family(const char *text, const char *name)
{
    char want[160];
    snprintf(want, sizeof(want), "# TYPE %s ", name);
    return strstr(text, want) != NULL;
}

/* The value text of the sample line "<series> <value>", or fail. */
static const char *value_text(const char *text, const char *series, char *out, size_t outsz)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)) != NULL; p += n) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') {
            const char *v = p + n + 1;
            size_t vl = strcspn(v, "\n");
            snprintf(out, outsz, "%.*s", (int)vl, v);
            return out;
        }
    }
    fail_msg("no sample line '%s'", series);
    return NULL;
}

static uint64_t value_u64(const char *text, const char *series)
{
    char v[64];
    value_text(text, series, v, sizeof(v));
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end != '\0')
        fail_msg("'%s' has a non-integer value '%s'", series, v);
    return x;
}

static void assert_value(const char *text, const char *series, const char *want)
{
    char v[64];
    value_text(text, series, v, sizeof(v));
    if (strcmp(v, want) != 0)
        fail_msg("'%s' is '%s', want '%s'", series, v, want);
}

static char *render(const struct gw_metrics *m, const struct gw_metrics_extra *x,
                    struct gw_buf *b)
{
    gw_buf_init(b, GW_METRICS_TEXT_MAX);
    assert_int_equal(gw_metrics_render(m, x, b), 0);
    assert_non_null(b->data);
    return b->data;
}

/* ---- tests ---- */

static void names_map_both_ways(void **state)
{
    assert_int_equal(gw_metrics_provider("openai"), GW_METRICS_PROV_OPENAI);
    assert_int_equal(gw_metrics_provider("anthropic"), GW_METRICS_PROV_ANTHROPIC);
    assert_int_equal(gw_metrics_provider("gemini"), GW_METRICS_PROV_GEMINI);
    assert_int_equal(gw_metrics_provider("xai"), GW_METRICS_PROV_XAI);
    assert_int_equal(gw_metrics_provider("perplexity"), GW_METRICS_PROV_PERPLEXITY);
    assert_int_equal(gw_metrics_provider("OpenAI"), GW_METRICS_PROV_NONE);
    assert_int_equal(gw_metrics_provider("openai2"), GW_METRICS_PROV_NONE);
    assert_int_equal(gw_metrics_provider(""), GW_METRICS_PROV_NONE);
    assert_int_equal(gw_metrics_provider(NULL), GW_METRICS_PROV_NONE);
    assert_int_equal(gw_metrics_endpoint("messages"), GW_METRICS_EP_MESSAGES);
    assert_int_equal(gw_metrics_endpoint("llm_chat"), GW_METRICS_EP_LLM_CHAT);
    assert_int_equal(gw_metrics_endpoint("bogus"), GW_METRICS_EP_OTHER);
    assert_int_equal(gw_metrics_endpoint(NULL), GW_METRICS_EP_OTHER);
    assert_int_equal(gw_metrics_endpoint_for_path("/v1/chat/completions"),
                     GW_METRICS_EP_CHAT_COMPLETIONS);
    assert_int_equal(gw_metrics_endpoint_for_path("/v1/chat/completions?x=1"),
                     GW_METRICS_EP_CHAT_COMPLETIONS);
    assert_int_equal(gw_metrics_endpoint_for_path("/api/v1/llm/chat"), GW_METRICS_EP_LLM_CHAT);
    assert_int_equal(gw_metrics_endpoint_for_path("/v1/messages"), GW_METRICS_EP_MESSAGES);
    assert_int_equal(gw_metrics_endpoint_for_path("/v1/messages/"), GW_METRICS_EP_OTHER);
    assert_int_equal(gw_metrics_endpoint_for_path("/v1/models"), GW_METRICS_EP_OTHER);
    assert_int_equal(gw_metrics_endpoint_for_path(NULL), GW_METRICS_EP_OTHER);
    for (int p = 0; p < GW_METRICS_PROV_COUNT; p++)
        assert_int_equal(gw_metrics_provider(gw_metrics_provider_name(p)), p);
    for (int e = 0; e < GW_METRICS_EP_COUNT; e++)
        assert_int_equal(gw_metrics_endpoint(gw_metrics_endpoint_name(e)), e);
    assert_string_equal(gw_metrics_provider_name((enum gw_metrics_provider)99), "none");
    assert_string_equal(gw_metrics_endpoint_name((enum gw_metrics_endpoint)-1), "other");
}

static void counters_count(void **state)
{
    struct gw_metrics *m = gw_metrics_new();
    assert_non_null(m);
    gw_metrics_request(m, GW_METRICS_EP_CHAT_COMPLETIONS, GW_METRICS_PROV_OPENAI, 200, 1000);
    gw_metrics_request(m, GW_METRICS_EP_CHAT_COMPLETIONS, GW_METRICS_PROV_OPENAI, 201, 1000);
    gw_metrics_request(m, GW_METRICS_EP_CHAT_COMPLETIONS, GW_METRICS_PROV_OPENAI, 304, 1000);
    gw_metrics_request(m, GW_METRICS_EP_CHAT_COMPLETIONS, GW_METRICS_PROV_OPENAI, 429, 1000);
    gw_metrics_request(m, GW_METRICS_EP_MESSAGES, GW_METRICS_PROV_ANTHROPIC, 502, 1000);
    gw_metrics_request(m, GW_METRICS_EP_MESSAGES, GW_METRICS_PROV_ANTHROPIC, 0, 1000);
    gw_metrics_request(m, GW_METRICS_EP_MESSAGES, GW_METRICS_PROV_ANTHROPIC, 700, 1000);
    /* out-of-range enums are clamped, not used as indexes */
    gw_metrics_request(m, (enum gw_metrics_endpoint)42, (enum gw_metrics_provider)-3, 200, 5);
    gw_metrics_tokens(m, GW_METRICS_PROV_GEMINI, 100, 20, 1234567);
    gw_metrics_tokens(m, GW_METRICS_PROV_GEMINI, 1, 2, 3);
    gw_metrics_tokens(m, GW_METRICS_PROV_GEMINI, -5, -5, -5); /* counters never go down */
    gw_metrics_tokens(m, GW_METRICS_PROV_XAI, 0, 0, 250);
    gw_metrics_upstream_error(m, GW_METRICS_PROV_XAI, GW_METRICS_UERR_RATE_LIMITED);
    gw_metrics_upstream_error(m, GW_METRICS_PROV_XAI, GW_METRICS_UERR_RATE_LIMITED);
    gw_metrics_upstream_error(m, GW_METRICS_PROV_PERPLEXITY, GW_METRICS_UERR_INTERRUPTED);
    gw_metrics_upstream_error(m, GW_METRICS_PROV_XAI, (enum gw_metrics_upstream_err)99);
    gw_metrics_inflight(m, 1);
    gw_metrics_inflight(m, 1);
    gw_metrics_inflight(m, 1);
    gw_metrics_inflight(m, -1);
    gw_metrics_uncertain(m);
    gw_metrics_store(m, (enum gw_metrics_store_op)7, 10); /* dropped */

    /* NULL registry: every update is a no-op */
    gw_metrics_request(NULL, GW_METRICS_EP_OTHER, GW_METRICS_PROV_NONE, 200, 1);
    gw_metrics_upstream(NULL, GW_METRICS_PROV_NONE, 1);
    gw_metrics_tokens(NULL, GW_METRICS_PROV_NONE, 1, 1, 1);
    gw_metrics_upstream_error(NULL, GW_METRICS_PROV_NONE, GW_METRICS_UERR_TIMEOUT);
    gw_metrics_inflight(NULL, 1);
    gw_metrics_uncertain(NULL);
    gw_metrics_store(NULL, GW_METRICS_STORE_READ, 1);

    struct gw_buf b;
    const char *t = render(m, NULL, &b);
    assert_valid(t);
#define REQ(ep, pr, sc)                                                                            \
    "llmgw_requests_total{endpoint=\"" ep "\",provider=\"" pr "\",status_class=\"" sc "\"}"
    assert_int_equal(value_u64(t, REQ("chat_completions", "openai", "2xx")), 3);
    assert_int_equal(value_u64(t, REQ("chat_completions", "openai", "4xx")), 1);
    assert_int_equal(value_u64(t, REQ("chat_completions", "openai", "5xx")), 0);
    assert_int_equal(value_u64(t, REQ("messages", "anthropic", "5xx")), 3);
    assert_int_equal(value_u64(t, REQ("other", "none", "2xx")), 1);
    assert_int_equal(value_u64(t, REQ("llm_chat", "perplexity", "2xx")), 0);
    assert_int_equal(value_u64(t, "llmgw_request_duration_seconds_count{endpoint=\"other\"}"), 1);
    assert_int_equal(
        value_u64(t, "llmgw_tokens_total{provider=\"gemini\",direction=\"input\"}"), 101);
    assert_int_equal(
        value_u64(t, "llmgw_tokens_total{provider=\"gemini\",direction=\"output\"}"), 22);
    assert_int_equal(value_u64(t, "llmgw_tokens_total{provider=\"xai\",direction=\"input\"}"), 0);
    assert_int_equal(value_u64(t, "llmgw_cost_usd_micros_total{provider=\"gemini\"}"), 1234570);
    assert_value(t, "llmgw_cost_usd_total{provider=\"gemini\"}", "1.234570");
    assert_value(t, "llmgw_cost_usd_total{provider=\"xai\"}", "0.000250");
    assert_value(t, "llmgw_cost_usd_total{provider=\"openai\"}", "0.000000");
    assert_int_equal(
        value_u64(t, "llmgw_upstream_errors_total{provider=\"xai\",kind=\"rate_limited\"}"), 2);
    assert_int_equal(
        value_u64(t, "llmgw_upstream_errors_total{provider=\"perplexity\",kind=\"interrupted\"}"),
        1);
    assert_int_equal(
        value_u64(t, "llmgw_upstream_errors_total{provider=\"xai\",kind=\"timeout\"}"), 0);
    assert_int_equal(value_u64(t, "llmgw_reservations_in_flight"), 2);
    assert_int_equal(value_u64(t, "llmgw_uncertain_total"), 1);
    assert_int_equal(value_u64(t, "llmgw_store_duration_seconds_count{op=\"read\"}"), 0);
    assert_int_equal(value_u64(t, "llmgw_store_duration_seconds_count{op=\"write\"}"), 0);
    /* a gauge may go below zero (a bug elsewhere shows, rather than wrapping) */
    gw_metrics_inflight(m, -5);
    gw_buf_cleanup(&b);
    t = render(m, NULL, &b);
    assert_value(t, "llmgw_reservations_in_flight", "-3");
    gw_buf_cleanup(&b);
    gw_metrics_free(m);
    gw_metrics_free(NULL);
}

static void histogram_buckets_inclusive(void **state)
{
    struct gw_metrics *m = gw_metrics_new();
    assert_non_null(m);
    const enum gw_metrics_provider p = GW_METRICS_PROV_ANTHROPIC;
    /* on a bound: that bucket (le is inclusive); one past: the next one */
    const int64_t obs[] = {-7, 0, 500, 501, 1000, 999999, 1000000, 1000001, 60000000, 60000001,
                           3600000000LL};
    int64_t sum = 0;
    for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++) {
        gw_metrics_upstream(m, p, obs[i]);
        sum += obs[i] > 0 ? obs[i] : 0;
    }
    gw_metrics_store(m, GW_METRICS_STORE_WRITE, 2500);
    gw_metrics_store(m, GW_METRICS_STORE_WRITE, 2501);

    struct gw_buf b;
    const char *t = render(m, NULL, &b);
    assert_valid(t);
#define UB(le) "llmgw_upstream_duration_seconds_bucket{provider=\"anthropic\",le=\"" le "\"}"
    assert_int_equal(value_u64(t, UB("0.0005")), 3);  /* -7 (as 0), 0, 500 */
    assert_int_equal(value_u64(t, UB("0.001")), 5);   /* + 501, 1000 */
    assert_int_equal(value_u64(t, UB("0.0025")), 5);
    assert_int_equal(value_u64(t, UB("0.5")), 5);
    assert_int_equal(value_u64(t, UB("1")), 7);       /* + 999999, 1000000 */
    assert_int_equal(value_u64(t, UB("2.5")), 8);     /* + 1000001 */
    assert_int_equal(value_u64(t, UB("30")), 8);
    assert_int_equal(value_u64(t, UB("60")), 9);      /* + 60000000 */
    assert_int_equal(value_u64(t, UB("+Inf")), 11);   /* + 60000001, an hour */
    assert_int_equal(value_u64(t, "llmgw_upstream_duration_seconds_count{provider=\"anthropic\"}"),
                     11);
    char want[64];
    snprintf(want, sizeof(want), "%lld.%06lld", (long long)(sum / 1000000),
             (long long)(sum % 1000000));
    assert_string_equal(want, "3723.002002");
    assert_value(t, "llmgw_upstream_duration_seconds_sum{provider=\"anthropic\"}", want);
    assert_value(t, "llmgw_upstream_duration_seconds_sum{provider=\"openai\"}", "0.000000");
    assert_int_equal(value_u64(t, "llmgw_upstream_duration_seconds_count{provider=\"openai\"}"),
                     0);
    assert_int_equal(
        value_u64(t, "llmgw_store_duration_seconds_bucket{op=\"write\",le=\"0.0025\"}"), 1);
    assert_int_equal(
        value_u64(t, "llmgw_store_duration_seconds_bucket{op=\"write\",le=\"0.005\"}"), 2);
    assert_value(t, "llmgw_store_duration_seconds_sum{op=\"write\"}", "0.005001");
    /* the request histogram has all 17 le values, in order */
    static const char *const les[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                      "0.05",   "0.1",   "0.25",   "0.5",   "1",    "2.5",
                                      "5",      "10",    "30",     "60",    "+Inf"};
    const char *at = t;
    for (size_t i = 0; i < sizeof(les) / sizeof(les[0]); i++) {
        char line[160];
        snprintf(line, sizeof(line),
                 "\nllmgw_request_duration_seconds_bucket{endpoint=\"messages\",le=\"%s\"} 0\n",
                 les[i]);
        const char *hit = strstr(at, line);
        if (hit == NULL)
            fail_msg("missing or out of order: %s", line + 1);
        at = hit + 1;
    }
    gw_buf_cleanup(&b);
    gw_metrics_free(m);
}

#define NTHREADS 4
#define NUPDATES 100000

struct worker {
    struct gw_metrics *m;
    atomic_int *running;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < NUPDATES; i++) {
        gw_metrics_inflight(w->m, 1);
        gw_metrics_request(w->m, GW_METRICS_EP_CHAT_COMPLETIONS, GW_METRICS_PROV_OPENAI, 200,
                           i % 1000);
        gw_metrics_upstream(w->m, GW_METRICS_PROV_OPENAI, 1500);
        gw_metrics_tokens(w->m, GW_METRICS_PROV_ANTHROPIC, 1, 2, 3);
        gw_metrics_upstream_error(w->m, GW_METRICS_PROV_GEMINI, GW_METRICS_UERR_TIMEOUT);
        gw_metrics_store(w->m, GW_METRICS_STORE_READ, 7);
        gw_metrics_uncertain(w->m);
        gw_metrics_inflight(w->m, -1);
    }
    atomic_fetch_sub(w->running, 1);
    return NULL;
}

static void threads_give_exact_totals(void **state)
{
    struct gw_metrics *m = gw_metrics_new();
    assert_non_null(m);
    atomic_int running = NTHREADS;
    struct worker w = {m, &running};
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, work, &w), 0);
    /* render while they run: every snapshot must still be valid exposition */
    int renders = 0;
    struct gw_buf b;
    do {
        const char *t = render(m, NULL, &b);
        assert_valid(t);
        gw_buf_cleanup(&b);
        renders++;
    } while (atomic_load(&running) > 0);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    print_message("%d renders during the run\n", renders);

    const uint64_t n = (uint64_t)NTHREADS * NUPDATES;
    const char *t = render(m, NULL, &b);
    assert_valid(t);
    assert_int_equal(value_u64(t, REQ("chat_completions", "openai", "2xx")), n);
    assert_int_equal(
        value_u64(t, "llmgw_request_duration_seconds_count{endpoint=\"chat_completions\"}"), n);
    /* each thread: 100 rounds of 0..999 us = 100 * 499500 us */
    assert_value(t, "llmgw_request_duration_seconds_sum{endpoint=\"chat_completions\"}",
                 "199.800000");
    assert_int_equal(
        value_u64(t,
                  "llmgw_request_duration_seconds_bucket{endpoint=\"chat_completions\",le=\"0.0005\"}"),
        (uint64_t)NTHREADS * 100 * 501);
    assert_int_equal(
        value_u64(t, "llmgw_upstream_duration_seconds_bucket{provider=\"openai\",le=\"0.001\"}"),
        0);
    assert_int_equal(
        value_u64(t, "llmgw_upstream_duration_seconds_bucket{provider=\"openai\",le=\"0.0025\"}"),
        n);
    assert_value(t, "llmgw_upstream_duration_seconds_sum{provider=\"openai\"}", "600.000000");
    assert_int_equal(
        value_u64(t, "llmgw_tokens_total{provider=\"anthropic\",direction=\"input\"}"), n);
    assert_int_equal(
        value_u64(t, "llmgw_tokens_total{provider=\"anthropic\",direction=\"output\"}"), 2 * n);
    assert_int_equal(value_u64(t, "llmgw_cost_usd_micros_total{provider=\"anthropic\"}"), 3 * n);
    assert_value(t, "llmgw_cost_usd_total{provider=\"anthropic\"}", "1.200000");
    assert_int_equal(
        value_u64(t, "llmgw_upstream_errors_total{provider=\"gemini\",kind=\"timeout\"}"), n);
    assert_int_equal(value_u64(t, "llmgw_store_duration_seconds_count{op=\"read\"}"), n);
    assert_value(t, "llmgw_store_duration_seconds_sum{op=\"read\"}", "2.800000");
    assert_int_equal(value_u64(t, "llmgw_uncertain_total"), n);
    assert_value(t, "llmgw_reservations_in_flight", "0");
    gw_buf_cleanup(&b);
    gw_metrics_free(m);
}

static void render_is_valid_exposition(void **state)
{
    struct gw_metrics *m = gw_metrics_new();
    assert_non_null(m);
    gw_metrics_request(m, GW_METRICS_EP_LLM_CHAT, GW_METRICS_PROV_XAI, 200, 12345);
    struct gw_buf b;
    const char *t = render(m, NULL, &b);
    struct check *c = malloc(sizeof(*c));
    assert_non_null(c);
    if (check_exposition(c, t) != 0)
        fail_msg("invalid exposition: %s", c->err);
    static const char *const fams[][2] = {
        {"llmgw_requests_total", "counter"},
        {"llmgw_request_duration_seconds", "histogram"},
        {"llmgw_upstream_duration_seconds", "histogram"},
        {"llmgw_tokens_total", "counter"},
        {"llmgw_cost_usd_micros_total", "counter"},
        {"llmgw_cost_usd_total", "counter"},
        {"llmgw_upstream_errors_total", "counter"},
        {"llmgw_reservations_in_flight", "gauge"},
        {"llmgw_uncertain_total", "counter"},
        {"llmgw_store_duration_seconds", "histogram"},
    };
    const int nf = (int)(sizeof(fams) / sizeof(fams[0]));
    assert_int_equal(c->nfam, nf);
    for (int i = 0; i < nf; i++) {
        assert_string_equal(c->fam[i].name, fams[i][0]);
        assert_string_equal(c->fam[i].type, fams[i][1]);
    }
    /* every series of the fixed label sets is present, zeros included */
    assert_int_equal(c->fam[0].samples, GW_METRICS_EP_COUNT * GW_METRICS_PROV_COUNT * 3);
    assert_int_equal(c->fam[1].samples, GW_METRICS_EP_COUNT * (17 + 2));
    assert_int_equal(c->fam[2].samples, GW_METRICS_PROV_COUNT * (17 + 2));
    assert_int_equal(c->fam[6].samples, GW_METRICS_PROV_COUNT * GW_METRICS_UERR_COUNT);
    assert_int_equal(c->nser, GW_METRICS_EP_COUNT + GW_METRICS_PROV_COUNT + 2);
    assert_false(has_family(t, "llmgw_breaker_state"));
    assert_false(has_family(t, "llmgw_build_info"));
    print_message("render: %zu bytes\n", b.len);
    assert_true(b.len < GW_METRICS_TEXT_MAX / 4);
    /* the checker itself refuses broken text */
    static const char *const broken[] = {
        "# HELP a x\n# TYPE a counter\na 1\n# HELP a y\n",                 /* two HELP */
        "# HELP a x\n# TYPE a counter\n# TYPE a gauge\na 1\n",             /* two TYPE */
        "a 1\n",                                                           /* no family */
        "# HELP a x\n# TYPE a counter\na{b=\"c} 1\n",                      /* open label */
        "# HELP a x\n# TYPE a counter\na{b=\"\\t\"} 1\n",                  /* bad escape */
        "# HELP a x\n# TYPE a counter\na  1\n",                            /* two spaces */
        "# HELP a x\n# TYPE a counter\na 1",                               /* no final LF */
        ("# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
         "h_sum 0\nh_count 1\n"),                                         /* not cumulative */
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 2\n",
    };
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++)
        if (check_exposition(c, broken[i]) == 0)
            fail_msg("checker accepted broken case %zu", i);
    free(c);
    gw_buf_cleanup(&b);
    gw_metrics_free(m);
}

static void extra_gauges_rendered(void **state)
{
    struct gw_metrics *m = gw_metrics_new();
    assert_non_null(m);
    struct gw_metrics_extra x;
    gw_metrics_extra_init(&x);
    x.breaker[GW_METRICS_PROV_OPENAI] = GW_METRICS_BREAKER_OPEN;
    x.breaker[GW_METRICS_PROV_ANTHROPIC] = GW_METRICS_BREAKER_CLOSED;
    x.breaker[GW_METRICS_PROV_GEMINI] = GW_METRICS_BREAKER_HALF_OPEN;
    x.breaker[GW_METRICS_PROV_NONE] = GW_METRICS_BREAKER_OPEN; /* ignored: not a provider */
    x.idem_quarantined = 3;
    x.purge_backlog = 0;
    x.uptime_seconds = 86400;
    x.version = "1.2.3";
    x.commit = "abc123";
    struct gw_buf b;
    const char *t = render(m, &x, &b);
    assert_valid(t);
    assert_value(t, "llmgw_breaker_state{provider=\"openai\"}", "2");
    assert_value(t, "llmgw_breaker_state{provider=\"anthropic\"}", "0");
    assert_value(t, "llmgw_breaker_state{provider=\"gemini\"}", "1");
    assert_null(strstr(t, "llmgw_breaker_state{provider=\"xai\"}"));
    assert_null(strstr(t, "llmgw_breaker_state{provider=\"none\"}"));
    assert_value(t, "llmgw_idempotency_quarantined", "3");
    assert_value(t, "llmgw_purge_backlog", "0");
    assert_value(t, "llmgw_uptime_seconds", "86400");
    assert_value(t, "llmgw_build_info{version=\"1.2.3\",commit=\"abc123\"}", "1");
    assert_true(has_family(t, "llmgw_breaker_state"));
    gw_buf_cleanup(&b);

    /* absent fields are not rendered */
    gw_metrics_extra_init(&x);
    x.uptime_seconds = 5;
    t = render(m, &x, &b);
    assert_valid(t);
    assert_false(has_family(t, "llmgw_breaker_state"));
    assert_false(has_family(t, "llmgw_idempotency_quarantined"));
    assert_false(has_family(t, "llmgw_purge_backlog"));
    assert_false(has_family(t, "llmgw_build_info"));
    assert_value(t, "llmgw_uptime_seconds", "5");
    gw_buf_cleanup(&b);
    gw_metrics_free(m);
}

static void build_info_escaped(void **state)
{
    struct gw_metrics *m = gw_metrics_new();
    assert_non_null(m);
    struct gw_metrics_extra x;
    gw_metrics_extra_init(&x);
    x.version = "1.0 \"beta\" C:\\dir\nnext";
    x.commit = NULL;
    struct gw_buf b;
    const char *t = render(m, &x, &b);
    assert_valid(t);
    assert_value(t, "llmgw_build_info{version=\"1.0 \\\"beta\\\" C:\\\\dir\\nnext\",commit=\"\"}",
                 "1");
    /* the checker's unescape gives the original back */
    struct check *c = malloc(sizeof(*c));
    assert_non_null(c);
    assert_int_equal(check_exposition(c, t), 0);
    free(c);
    gw_buf_cleanup(&b);

    x.version = "\\\\\"\"\n\n";
    x.commit = "\"";
    t = render(m, &x, &b);
    assert_valid(t);
    assert_value(t, "llmgw_build_info{version=\"\\\\\\\\\\\"\\\"\\n\\n\",commit=\"\\\"\"}", "1");
    gw_buf_cleanup(&b);
    gw_metrics_free(m);
}

static void render_failure_leaves_buffer(void **state)
{
    struct gw_metrics *m = gw_metrics_new();
    assert_non_null(m);
    struct gw_buf b;
    gw_buf_init(&b, 4096);
    assert_int_equal(gw_buf_adds(&b, "prefix"), 0);
    assert_int_equal(gw_metrics_render(m, NULL, &b), GW_ETOOBIG);
    assert_string_equal(b.data, "prefix");
    assert_int_equal(b.len, 6);
    gw_buf_cleanup(&b);

    /* appends after what is already there */
    gw_buf_init(&b, GW_METRICS_TEXT_MAX);
    assert_int_equal(gw_buf_adds(&b, "# HELP x y\n# TYPE x gauge\nx 1\n"), 0);
    assert_int_equal(gw_metrics_render(m, NULL, &b), 0);
    assert_valid(b.data);
    gw_buf_cleanup(&b);

    /* OOM while growing */
    gw_buf_init(&b, GW_METRICS_TEXT_MAX);
    assert_int_equal(gw_buf_adds(&b, "prefix"), 0);
    gw_mem_fail_after(1);
    assert_int_equal(gw_metrics_render(m, NULL, &b), GW_ENOMEM);
    gw_mem_fail_after(0);
    assert_string_equal(b.data, "prefix");
    gw_buf_cleanup(&b);
    gw_metrics_free(m);

    gw_mem_fail_after(1);
    assert_null(gw_metrics_new());
    gw_mem_fail_after(0);
}

static void registries_are_independent(void **state)
{
    struct gw_metrics *a = gw_metrics_new(), *b2 = gw_metrics_new();
    assert_non_null(a);
    assert_non_null(b2);
    assert_true(((uintptr_t)a & 63) == 0);
    gw_metrics_uncertain(a);
    gw_metrics_uncertain(a);
    gw_metrics_uncertain(b2);
    struct gw_buf b;
    const char *t = render(a, NULL, &b);
    assert_int_equal(value_u64(t, "llmgw_uncertain_total"), 2);
    gw_buf_cleanup(&b);
    t = render(b2, NULL, &b);
    assert_int_equal(value_u64(t, "llmgw_uncertain_total"), 1);
    gw_buf_cleanup(&b);
    gw_metrics_free(a);
    gw_metrics_free(b2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_map_both_ways),
        cmocka_unit_test(counters_count),
        cmocka_unit_test(histogram_buckets_inclusive),
        cmocka_unit_test(threads_give_exact_totals),
        cmocka_unit_test(render_is_valid_exposition),
        cmocka_unit_test(extra_gauges_rendered),
        cmocka_unit_test(build_info_escaped),
        cmocka_unit_test(render_failure_leaves_buffer),
        cmocka_unit_test(registries_are_independent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
