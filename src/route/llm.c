/*
 * route/llm — the LLM router's prompt and the reading of its answer; see route.h.
 *
 * Invariants: the prompt is bounded (at most GW_ROUTE_MAX_TARGETS candidates with short
 * descriptions, and max_chars bytes of the caller's text, cut on a UTF-8 boundary); the answer
 * is trusted for nothing but naming one of the candidates it was shown.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "route/route.h"
#include "util/buf.h"
#include "util/json.h"

static const char system_prompt[] =
    "You are the model router of an LLM gateway. Pick the one model from the list that will "
    "answer the user's request best; among models that would do equally well, pick the "
    "cheapest. Do not answer the request itself. Reply with only a JSON object of the form "
    "{\"model\": \"<id>\"} where <id> is one of the listed ids.";

/* Length of at most max bytes of s that ends on a UTF-8 character boundary. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

json_t *gw_router_prompt(const struct gw_router *r, const struct gw_route_req *q,
                         const struct gw_model *const *cands, int n, int max_chars)
{
    struct gw_buf b;
    json_t *out = NULL;
    int rc;

    gw_buf_init(&b, 64u << 10);
    rc = gw_buf_adds(&b, "Models:\n");
    for (int i = 0; i < n && rc == 0; i++) {
        const struct gw_model *m = cands[i];
        const char *use = gw_router_model_use(r, m);
        rc = gw_buf_printf(&b,
                           "- %s (%s; context %lld tokens; $%lld.%02lld in / $%lld.%02lld out "
                           "per million tokens%s%s)%s%s\n",
                           m->id, m->provider, (long long)m->context_window,
                           (long long)(m->price.input / 1000000),
                           (long long)(m->price.input % 1000000 / 10000),
                           (long long)(m->price.output / 1000000),
                           (long long)(m->price.output % 1000000 / 10000),
                           m->vision ? "; images" : "", m->reasoning ? "; reasoning" : "",
                           use[0] ? ": " : "", use);
    }
    if (rc == 0)
        rc = gw_buf_printf(&b,
                           "\nThe request: about %lld prompt tokens; images: %s; tools: %s.\n"
                           "Its last user message (possibly cut):\n<<<\n",
                           (long long)q->input_tokens, q->f.has_images ? "yes" : "no",
                           q->f.has_tools ? "yes" : "no");
    size_t budget = max_chars > 0 ? (size_t)max_chars : 0;
    for (int i = 0; i < q->f.nparts && budget > 0 && rc == 0; i++) {
        size_t take = utf8_cut(q->f.parts[i], strlen(q->f.parts[i]), budget);
        if ((rc = gw_buf_add(&b, q->f.parts[i], take)) == 0)
            rc = gw_buf_adds(&b, "\n");
        budget -= take;
    }
    if (rc == 0)
        rc = gw_buf_adds(&b, ">>>\nWhich model? Reply with {\"model\": \"<id>\"} only.");
    if (rc == 0)
        out = json_pack("{s:[{s:s,s:s},{s:s,s:s%}],s:i,s:i}", "messages", "role", "system",
                        "content", system_prompt, "role", "user", "content", b.data, b.len,
                        "max_tokens", 64, "temperature", 0);
    gw_buf_cleanup(&b);
    return out;
}

static const struct gw_model *find_cand(const char *id, size_t len,
                                        const struct gw_model *const *cands, int n)
{
    for (int i = 0; i < n; i++)
        if (strlen(cands[i]->id) == len && memcmp(cands[i]->id, id, len) == 0)
            return cands[i];
    return NULL;
}

const struct gw_model *gw_router_pick(const char *answer, const struct gw_model *const *cands,
                                      int n)
{
    if (answer == NULL)
        return NULL;
    size_t len = strlen(answer);
    if (len == 0 || len > 4096)
        return NULL;
    /* the object it was asked for, possibly wrapped in a code fence or a sentence */
    const char *open = strchr(answer, '{'), *close = strrchr(answer, '}');
    if (open != NULL && close != NULL && close > open) {
        json_t *j = json_loadb(open, (size_t)(close - open + 1), JSON_REJECT_DUPLICATES, NULL);
        const char *id = gw_json_str(j, "model");
        const struct gw_model *m = id ? find_cand(id, strlen(id), cands, n) : NULL;
        json_decref(j);
        return m;
    }
    /* or just the id, maybe quoted */
    const char *s = answer, *e = answer + len;
    while (s < e && (isspace((unsigned char)*s) || *s == '"' || *s == '`' || *s == '\''))
        s++;
    while (e > s && (isspace((unsigned char)e[-1]) || e[-1] == '"' || e[-1] == '`' ||
                     e[-1] == '\'' || e[-1] == '.'))
        e--;
    return find_cand(s, (size_t)(e - s), cands, n);
}
