/*
 * tests/fuzz/common/canon — what the gateway does with a validated canonical request, for the
 * inbound-body harnesses (fuzz_chat, fuzz_simple): the parts of the pipeline that read the
 * client's messages without a server.
 */
#ifndef GW_TESTS_FUZZ_CANON_H
#define GW_TESTS_FUZZ_CANON_H

#include <jansson.h>

#include "core/request.h"

/* Load the catalog and the routing rules of the repository (once; aborts on failure). */
void fz_canon_setup(void);

/* Run canon (validated by gw_chat_validate into o; borrowed, not changed) through: token
 * estimates, conversation memory (title, turns to store, history applied, the summarizer's
 * request), routing (features, heuristic, fallbacks, the LLM router's prompt) and every
 * provider's build, streamed and not. Every one must succeed or refuse with a reason. */
void fz_canon_run(const json_t *canon, const struct gw_chat_opts *o);

#endif
