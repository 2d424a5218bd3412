/*
 * conv/history — conversation memory's pure parts: token estimates, what of a stored
 * conversation is sent with a request (within a budget), the summarizer's prompt, and what of a
 * request and its answer is stored as turns. No I/O, no store: the pipeline (core) drives it.
 *
 * Messages are canonical chat messages (OpenAI chat format, jansson objects): {"role",
 * "content"} where content is a string, an array of parts ({"type":"text","text":..} and
 * others), or null (an assistant message with tool_calls).
 *
 * Invariants:
 * - Estimates never return less than 1 for a message; they are deterministic and cheap (one pass
 *   over the text, no allocation).
 * - Nothing here changes a stored turn: planning and truncation only choose what is sent.
 */
#ifndef GW_CONV_HISTORY_H
#define GW_CONV_HISTORY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Tokens of a text, estimated the way BPE tokenizers of the cl100k/o200k kind split English
 * and code: a run of letters is one token per started 6 letters (a common word is one token),
 * a run of digits one per started 3, every other printable ASCII character (punctuation,
 * symbols) one, whitespace nothing of its own (it joins the next token), and each non-ASCII
 * character (a UTF-8 lead byte) one. */
int64_t gw_tokens_text(const char *s, size_t n);
/* Tokens of one message: 4 for its framing, plus the text of its content (a string, or the
 * "text" of each part; another part such as an image counts 85), plus the text of its
 * tool_calls' names and arguments, plus its name if any. */
int64_t gw_tokens_message(const json_t *msg);
/* The same for a message whose content is the string s (n bytes) alone. */
int64_t gw_tokens_text_message(const char *s, size_t n);
/* The sum over an array of messages (0 for anything else), plus 3 for the reply's priming. */
int64_t gw_tokens_messages(const json_t *messages);

/* What is sent for a request with memory: the request's leading system messages, then (when
 * there is one) a system message holding the summary of the older turns, then the stored turns
 * turns[from..] (oldest first), then the request's other messages. */
#define GW_SUMMARY_PREFIX "Summary of the earlier part of this conversation:\n"

/* Tokens of that summary message (0 when summary is NULL or ""). */
int64_t gw_history_summary_tokens(const char *summary);

/* The plan for a request: req_tokens (gw_tokens_messages of the request's own messages),
 * the stored summary ("" none), the stored turns loaded (array, oldest first), the budget in
 * tokens and how many of the newest turns are kept word for word.
 * Returns the number of the oldest loaded turns that should be summarized now (with the old
 * summary) so that the rest fits: 0 when everything fits as it is; never more than
 * len - keep_recent (0 when there are no more than keep_recent turns). */
size_t gw_history_plan(int64_t req_tokens, const char *summary, const json_t *turns,
                       int64_t budget, size_t keep_recent);

/* The first turn to send so that summary + turns[from..] + the request fit within budget,
 * dropping the oldest turns first (from >= start). When even the request alone does not fit,
 * returns len (no turns sent). */
size_t gw_history_fit(int64_t req_tokens, const char *summary, const json_t *turns, size_t start,
                      int64_t budget);

/* Rewrite canon's "messages" (the request, in place) into what is sent: see above. summary may
 * be NULL or "". Returns 0, GW_EINVAL when canon has no messages array, GW_ENOMEM. */
int gw_history_apply(json_t *canon, const char *summary, const json_t *turns, size_t from);

/* The summarizer's request: a new canonical chat request (no "model": the caller sets it)
 * {"messages": [{system: the instructions}, {user: the old summary, if any, then turns[0..n)
 * as "role: text" lines}], "max_tokens": max_tokens, "temperature": 0}. The transcript is cut
 * to at most max_chars characters (its newest part is kept, on a UTF-8 boundary). NULL when
 * out of memory. */
json_t *gw_history_summary_request(const char *old_summary, const json_t *turns, size_t n,
                                   int64_t max_tokens, size_t max_chars);

/* The turns a finished request adds, as a new array of messages: the request's own non-system
 * messages (as sent by the caller, before any history was applied), then the answer (an
 * assistant message; NULL: none). NULL when out of memory. */
json_t *gw_history_new_turns(const json_t *request_messages, const json_t *answer);
/* Whether a request's message is one of those turns (an object, not a system message). */
int gw_history_is_turn(const json_t *msg);

/* A conversation's title from its first user message: its text, whitespace runs folded to one
 * space, cut on a UTF-8 boundary to fit out (outsz bytes with the NUL); "" when there is no
 * text. */
void gw_history_title(const json_t *messages, char *out, size_t outsz);

/* The plain text of a message's content (a string, or its text parts joined by "\n"), as new
 * memory (gw_free), or NULL when there is none or out of memory. */
char *gw_history_text(const json_t *msg);

#endif
