/*
 * conv/history — token estimates, the history plan, the summarizer's prompt and the turns a
 * request stores; see history.h for the contract.
 *
 * Invariants:
 * - Every input may be malformed (not an object, a content of the wrong type, no role): it is
 *   read as empty, never trusted for a type, never a crash.
 * - Estimates are one pass over the text with no allocation.
 * - Stored turns are never modified: what is sent (gw_history_apply) and what is stored
 *   (gw_history_new_turns) are deep copies, so a later in-place edit of the request (a provider
 *   translator, a policy) cannot reach the caller's turns, and vice versa.
 * - Sizes are bytes: max_chars bounds the transcript in bytes, which also bounds it in
 *   characters; every cut lands on a UTF-8 boundary.
 */
#include "conv/history.h"

#include <stdint.h>
#include <string.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/util.h"

/* Estimate of a part that is not text (an image, an audio clip, a file). */
#define PART_TOKENS 85
/* Framing of one message and the priming of the reply. */
#define MESSAGE_TOKENS 4
#define REPLY_TOKENS 3
/* Put in front of a transcript whose oldest part was cut off. */
#define OMITTED_MARK "[earlier part omitted]\n"

static const char summary_instructions[] =
    "You keep the memory of a conversation between a user and an AI assistant. Summarize the "
    "conversation below so that the assistant can continue it from your summary alone. If an "
    "earlier summary is given, merge it and the conversation into one updated summary. Keep "
    "every fact, name, number, date, code identifier and decision, the questions still open, "
    "and the user's stated preferences and constraints. Write in the third person (\"The user "
    "asked...\", \"The assistant suggested...\"), briefly, and leave out greetings and small "
    "talk. Reply with the summary only: no preamble, no title, no closing remark.";

/* ---- token estimates ---------------------------------------------------------------------- */

static int is_letter(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

int64_t gw_tokens_text(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    int64_t tokens = 0;

    if (s == NULL)
        return 0;
    while (p < end) {
        const unsigned char *run = p;
        if (is_letter(*p)) { /* a word: a token for each 6 letters begun */
            while (++p < end && is_letter(*p))
                ;
            tokens += (int64_t)((size_t)(p - run) + 5) / 6;
        } else if (is_digit(*p)) { /* a number: one for each 3 digits begun */
            while (++p < end && is_digit(*p))
                ;
            tokens += (int64_t)((size_t)(p - run) + 2) / 3;
        } else {
            /* punctuation and symbols count one, and so does a UTF-8 lead byte (a character);
             * whitespace, control characters and continuation bytes count nothing */
            tokens += (*p > 0x20 && *p < 0x7f) || *p >= 0xc0;
            p++;
        }
    }
    return tokens;
}

static int64_t tokens_str(const json_t *v)
{
    return json_is_string(v) ? gw_tokens_text(json_string_value(v), json_string_length(v)) : 0;
}

static int64_t tokens_content(const json_t *content)
{
    int64_t tokens = 0;
    size_t i;
    const json_t *part;

    if (json_is_string(content))
        return tokens_str(content);
    if (!json_is_array(content))
        return 0;
    json_array_foreach (content, i, part) {
        if (!json_is_object(part))
            continue; /* not a part at all: nothing is sent for it */
        const char *type = gw_json_str(part, "type");
        if (type != NULL && strcmp(type, "text") == 0)
            tokens += tokens_str(json_object_get(part, "text"));
        else
            tokens += PART_TOKENS;
    }
    return tokens;
}

int64_t gw_tokens_message(const json_t *msg)
{
    int64_t tokens = MESSAGE_TOKENS;
    const json_t *calls, *call;
    size_t i;

    if (!json_is_object(msg))
        return tokens;
    tokens += tokens_content(json_object_get(msg, "content"));
    calls = json_object_get(msg, "tool_calls");
    if (json_is_array(calls)) {
        json_array_foreach (calls, i, call) {
            const json_t *fn = json_object_get(call, "function");
            tokens += tokens_str(json_object_get(fn, "name"));
            tokens += tokens_str(json_object_get(fn, "arguments"));
        }
    }
    tokens += tokens_str(json_object_get(msg, "name"));
    return tokens;
}

int64_t gw_tokens_text_message(const char *s, size_t n)
{
    return MESSAGE_TOKENS + gw_tokens_text(s, n);
}

int64_t gw_tokens_messages(const json_t *messages)
{
    int64_t tokens = REPLY_TOKENS;
    const json_t *msg;
    size_t i;

    if (!json_is_array(messages))
        return 0;
    json_array_foreach (messages, i, msg)
        tokens += gw_tokens_message(msg);
    return tokens;
}

/* ---- the plan ----------------------------------------------------------------------------- */

int64_t gw_history_summary_tokens(const char *summary)
{
    if (summary == NULL || summary[0] == '\0')
        return 0;
    /* The prefix ends in whitespace, so no run crosses into the summary: the sum of the two
     * estimates is the estimate of the concatenated content. */
    return MESSAGE_TOKENS + gw_tokens_text(GW_SUMMARY_PREFIX, strlen(GW_SUMMARY_PREFIX)) +
           gw_tokens_text(summary, strlen(summary));
}

/* Tokens of turns[from..] (0 when turns is not an array). */
static int64_t tokens_turns(const json_t *turns, size_t from)
{
    int64_t tokens = 0;
    size_t len = json_array_size(turns);

    for (size_t i = from; i < len; i++)
        tokens += gw_tokens_message(json_array_get(turns, i));
    return tokens;
}

size_t gw_history_plan(int64_t req_tokens, const char *summary, const json_t *turns,
                       int64_t budget, size_t keep_recent)
{
    size_t len = json_array_size(turns);

    if (req_tokens + gw_history_summary_tokens(summary) + tokens_turns(turns, 0) <= budget)
        return 0;
    /* Summarize everything but the newest keep_recent: summarizing is a model call, so it is
     * done in as few and as large steps as the contract allows. */
    return len > keep_recent ? len - keep_recent : 0;
}

size_t gw_history_fit(int64_t req_tokens, const char *summary, const json_t *turns, size_t start,
                      int64_t budget)
{
    size_t len = json_array_size(turns);
    int64_t total;

    if (start >= len)
        return len;
    total = req_tokens + gw_history_summary_tokens(summary) + tokens_turns(turns, start);
    for (size_t from = start; from < len; from++) {
        if (total <= budget)
            return from;
        total -= gw_tokens_message(json_array_get(turns, from));
    }
    return len;
}

/* The length of the well-formed UTF-8 sequence at p[0..n) (n > 0), or 0 when it is not one
 * (overlong, surrogate, past U+10FFFF, truncated): the rule jansson applies to its strings. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    size_t k;
    uint32_t cp;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        k = 1;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        k = 2;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        k = 3;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (n - 1 < k)
        return 0;
    for (size_t j = 1; j <= k; j++) {
        if ((p[j] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[j] & 0x3f);
    }
    if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return k + 1;
}

/* Replace each byte of s[0..n) that is not part of well-formed UTF-8 with '?', so the text can
 * become a JSON string (a corrupt stored summary, a turn built without jansson's check). */
static void utf8_scrub(char *s, size_t n)
{
    unsigned char *p = (unsigned char *)s;

    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0) {
            p[i++] = '?';
            continue;
        }
        i += k;
    }
}

/* The text of msg's content into *out (new memory, NULL when there is none). Returns 0 or
 * GW_ENOMEM: unlike gw_history_text, "no text" and "out of memory" differ. */
static int content_text(const json_t *msg, char **out)
{
    const json_t *content = json_object_get(msg, "content"), *part;
    size_t i, total = 0, count = 0;
    char *p;

    *out = NULL;
    if (json_is_string(content))
        return (*out = gw_strdup(json_string_value(content))) != NULL ? 0 : GW_ENOMEM;
    if (!json_is_array(content))
        return 0;
    json_array_foreach (content, i, part) {
        const char *type = gw_json_str(part, "type");
        const char *text = gw_json_str(part, "text");
        if (type == NULL || strcmp(type, "text") != 0 || text == NULL)
            continue;
        total += strlen(text) + (count > 0);
        count++;
    }
    if (count == 0)
        return 0;
    if ((*out = gw_malloc(total + 1)) == NULL)
        return GW_ENOMEM;
    p = *out;
    count = 0;
    json_array_foreach (content, i, part) {
        const char *type = gw_json_str(part, "type");
        const char *text = gw_json_str(part, "text");
        if (type == NULL || strcmp(type, "text") != 0 || text == NULL)
            continue;
        if (count++ > 0)
            *p++ = '\n';
        size_t l = strlen(text);
        memcpy(p, text, l);
        p += l;
    }
    *p = '\0';
    return 0;
}

/* ---- what is sent ------------------------------------------------------------------------- */

static int is_system(const json_t *msg)
{
    const char *role = gw_json_str(msg, "role");
    return role != NULL && (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0);
}

/* Append v to arr, taking the reference (also on failure). */
static int append_new(json_t *arr, json_t *v)
{
    if (v == NULL)
        return GW_ENOMEM;
    return json_array_append_new(arr, v) == 0 ? 0 : GW_ENOMEM;
}

int gw_history_apply(json_t *canon, const char *summary, const json_t *turns, size_t from)
{
    int rc = GW_ENOMEM;
    json_t *req = json_object_get(canon, "messages");
    json_t *out = NULL, *msg;
    size_t nreq, lead = 0, nturns = json_array_size(turns);
    char *content = NULL;

    if (!json_is_array(req))
        return GW_EINVAL;
    if ((out = json_array()) == NULL)
        goto out;
    nreq = json_array_size(req);
    /* The request's leading system messages: borrowed from the array being replaced. */
    for (; lead < nreq && is_system(msg = json_array_get(req, lead)); lead++)
        if (json_array_append(out, msg) != 0)
            goto out;
    if (summary != NULL && summary[0] != '\0') {
        size_t plen = strlen(GW_SUMMARY_PREFIX), slen = strlen(summary);
        if ((content = gw_malloc(plen + slen + 1)) == NULL)
            goto out;
        memcpy(content, GW_SUMMARY_PREFIX, plen);
        memcpy(content + plen, summary, slen + 1);
        utf8_scrub(content + plen, slen);
        if ((rc = append_new(out, json_pack("{s:s,s:s}", "role", "system", "content", content))) !=
            0)
            goto out;
    }
    /* Deep copies: what is sent may be edited in place later, the stored turns must not be. */
    for (size_t i = from; i < nturns; i++) {
        const json_t *t = json_array_get(turns, i);
        if (!json_is_object(t))
            continue; /* malformed turn: not sent */
        if ((rc = append_new(out, json_deep_copy(t))) != 0)
            goto out;
    }
    rc = GW_ENOMEM;
    for (size_t i = lead; i < nreq; i++)
        if (json_array_append(out, json_array_get(req, i)) != 0)
            goto out;
    if (json_object_set_new(canon, "messages", out) != 0) {
        out = NULL; /* json_object_set_new releases it on failure */
        goto out;
    }
    out = NULL; /* transferred */
    rc = 0;
out:
    gw_free(content);
    json_decref(out);
    return rc;
}

/* ---- the summarizer's request ------------------------------------------------------------- */

/* Append "role: text" lines for one turn: its text, then one line per tool call. */
static int add_turn(struct gw_buf *b, const json_t *turn)
{
    int rc = 0;
    const char *role = gw_json_str(turn, "role");
    const json_t *calls = json_object_get(turn, "tool_calls"), *call;
    char *text;
    size_t i;

    if ((rc = content_text(turn, &text)) != 0)
        return rc;
    if (role == NULL || role[0] == '\0')
        role = "unknown";
    if (text != NULL && text[0] != '\0')
        rc = gw_buf_printf(b, "%s: %s\n", role, text);
    gw_free(text);
    if (rc != 0 || !json_is_array(calls))
        return rc;
    json_array_foreach (calls, i, call) {
        const json_t *fn = json_object_get(call, "function");
        const char *name = gw_json_str(fn, "name");
        const char *args = gw_json_str(fn, "arguments");
        rc = gw_buf_printf(b, "%s: [tool call %s %s]\n", role, name ? name : "?",
                           args ? args : "{}");
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* How many bytes of the end of s[0..n) fit in max, starting on a UTF-8 boundary. */
static size_t utf8_tail(const char *s, size_t n, size_t max)
{
    size_t start;

    if (n <= max)
        return n;
    start = n - max;
    while (start < n && ((unsigned char)s[start] & 0xc0) == 0x80)
        start++;
    return n - start;
}

json_t *gw_history_summary_request(const char *old_summary, const json_t *turns, size_t n,
                                   int64_t max_tokens, size_t max_chars)
{
    struct gw_buf lines, user;
    json_t *req = NULL, *messages;
    size_t len = json_array_size(turns);
    int rc = 0;

    if (n > len)
        n = len;
    gw_buf_init(&lines, SIZE_MAX / 4);
    gw_buf_init(&user, SIZE_MAX / 4);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = add_turn(&lines, json_array_get(turns, i));
    if (rc != 0)
        goto out;
    /* The old summary compresses everything before turns[0], so it is kept whole (it is
     * bounded by the max_tokens of the call that wrote it); max_chars bounds the transcript
     * of the new turns, whose oldest part is dropped first. */
    if (old_summary != NULL && old_summary[0] != '\0')
        rc = gw_buf_printf(&user, "Earlier summary:\n%s\n\n", old_summary);
    if (rc == 0)
        rc = gw_buf_adds(&user, "Conversation:\n");
    if (rc == 0 && lines.len > max_chars) {
        size_t mark = strlen(OMITTED_MARK);
        if (max_chars > mark) {
            rc = gw_buf_adds(&user, OMITTED_MARK);
            mark = max_chars - mark;
        } else {
            mark = max_chars; /* no room to say so */
        }
        size_t keep = utf8_tail(lines.data, lines.len, mark);
        if (rc == 0)
            rc = gw_buf_add(&user, lines.data + lines.len - keep, keep);
    } else if (rc == 0) {
        rc = gw_buf_add(&user, lines.data ? lines.data : "", lines.len);
    }
    if (rc != 0)
        goto out;
    /* The pieces are jansson strings and the cut lands on a boundary, but the old summary is
     * the store's text: scrubbed, a failure from here on can only be out of memory. */
    utf8_scrub(user.data, user.len);
    if ((req = json_object()) == NULL || (messages = json_array()) == NULL ||
        json_object_set_new(req, "messages", messages) != 0 ||
        append_new(messages, json_pack("{s:s,s:s}", "role", "system", "content",
                                       summary_instructions)) != 0 ||
        append_new(messages, json_pack("{s:s,s:s%}", "role", "user", "content", user.data,
                                       user.len)) != 0 ||
        (max_tokens > 0 && json_object_set_new(req, "max_tokens", json_integer(max_tokens)) != 0) ||
        json_object_set_new(req, "temperature", json_integer(0)) != 0) {
        json_decref(req);
        req = NULL;
    }
out:
    gw_buf_cleanup(&lines);
    gw_buf_cleanup(&user);
    return req;
}

/* ---- what is stored ----------------------------------------------------------------------- */

int gw_history_is_turn(const json_t *msg) { return json_is_object(msg) && !is_system(msg); }

json_t *gw_history_new_turns(const json_t *request_messages, const json_t *answer)
{
    json_t *out = json_array();
    const json_t *msg;
    size_t i;

    if (out == NULL)
        return NULL;
    json_array_foreach (request_messages, i, msg) {
        if (!gw_history_is_turn(msg))
            continue;
        if (append_new(out, json_deep_copy(msg)) != 0)
            goto fail;
    }
    if (json_is_object(answer) && append_new(out, json_deep_copy(answer)) != 0)
        goto fail;
    return out;
fail:
    json_decref(out);
    return NULL;
}

/* ---- text and title ----------------------------------------------------------------------- */

char *gw_history_text(const json_t *msg)
{
    char *text;

    return content_text(msg, &text) == 0 ? text : NULL;
}

/* A title being written: whitespace runs folded to one space, none leading or trailing. */
struct fold {
    char *out;
    size_t cap; /* bytes available, without the NUL */
    size_t len;
    int space; /* a space is due before the next character */
    int full;
};

static void fold_add(struct fold *f, const char *s)
{
    for (; *s != '\0' && !f->full; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            f->space = f->len > 0;
            continue;
        }
        if (f->len + (size_t)f->space + 1 > f->cap) {
            f->full = 1;
            if ((c & 0xc0) == 0x80 && !f->space) {
                /* The character being written does not fit: drop its first bytes. */
                while (f->len > 0 && ((unsigned char)f->out[f->len - 1] & 0xc0) == 0x80)
                    f->len--;
                if (f->len > 0 && (unsigned char)f->out[f->len - 1] >= 0xc0)
                    f->len--;
            }
            while (f->len > 0 && f->out[f->len - 1] == ' ')
                f->len--;
            return;
        }
        if (f->space)
            f->out[f->len++] = ' ';
        f->space = 0;
        f->out[f->len++] = (char)c;
    }
}

void gw_history_title(const json_t *messages, char *out, size_t outsz)
{
    struct fold f = {out, outsz > 0 ? outsz - 1 : 0, 0, 0, 0};
    const json_t *msg, *content, *part;
    size_t i;

    if (out == NULL || outsz == 0)
        return;
    out[0] = '\0';
    for (i = 0; (msg = json_array_get(messages, i)) != NULL; i++) {
        const char *role = gw_json_str(msg, "role");
        if (role != NULL && strcmp(role, "user") == 0)
            break;
    }
    if (msg == NULL)
        return;
    /* Folded straight from the content (no copy), so a title never fails. Parts are joined
     * by whitespace, which folds into the one space between them. */
    content = json_object_get(msg, "content");
    if (json_is_string(content)) {
        fold_add(&f, json_string_value(content));
    } else {
        json_array_foreach (content, i, part) {
            const char *type = gw_json_str(part, "type");
            const char *text = gw_json_str(part, "text");
            if (type == NULL || strcmp(type, "text") != 0 || text == NULL)
                continue;
            f.space = f.len > 0;
            fold_add(&f, text);
        }
    }
    out[f.len] = '\0';
}
