/*
 * fuzz_sessions — the subject-session endpoints (core/sessions gw_sessions_route): the JSON
 * bodies of POST /v1/sessions/share-codes {app_client_id, subject, code_challenge,
 * code_challenge_method} (with an API key) and POST /v1/sessions/exchange {share_code,
 * code_verifier} (from an Origin), and the CORS preflights, against the fixture's store (an
 * approved app client FZ_CLIENT_ID with origin FZ_ORIGIN).
 *
 * Input: a request as text (see fz.h). Oracle: answered exactly once.
 */
#include "common/fz.h"
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_gw_request(&g, data, size, gw_sessions_route, NULL);
    return 0;
}
