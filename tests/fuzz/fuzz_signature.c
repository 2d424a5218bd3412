/*
 * fuzz_signature — signed subject requests (core/sessions gw_session_begin and
 * gw_session_lookup): the headers Authorization: Bearer llmst_…, X-LLMGW-Timestamp,
 * X-LLMGW-Nonce, X-LLMGW-Signature and Origin, read on the routes that take them without an
 * upstream call, the conversations (core/conversations: its paths and query too). A signature
 * header of "@sign" is replaced by the right signature under the fixture's session key, so that
 * inputs get past the HMAC to the nonce, the origin and the conversation operations.
 *
 * Input: a request as text (see fz.h), e.g.
 *   GET /v1/conversations/conv-fuzz-1?limit=5
 *   Authorization: Bearer <FZ_TOKEN>
 *   X-LLMGW-Timestamp: 1796108372
 *   X-LLMGW-Nonce: n0nce-0001
 *   X-LLMGW-Signature: @sign
 *   Origin: https://app.example.com
 * Oracle: answered exactly once. The export streams and is left out.
 */
#include "common/fz.h"
#include "core/conversations.h"
#include "core/sessions.h"

static struct fz_gw g;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_setup();
    fz_gw_open(&g);
    return 0;
}

/* The two in the order the server tries them (preflights first). */
static int route(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                 const char *path)
{
    if (evhttp_request_get_command(req) == EVHTTP_REQ_OPTIONS &&
        gw_sessions_route(w, req, rid, path))
        return 1;
    return gw_conversations_route(w, req, rid, path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const skip[] = {"/admin/v1/conversations/export", NULL};
    fz_gw_request(&g, data, size, route, skip);
    return 0;
}
