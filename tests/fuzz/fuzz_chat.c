/*
 * fuzz_chat — the body of POST /v1/chat/completions (the OpenAI dialect): parsed as the
 * pipeline parses it (util/json, strict) and validated into the canonical request
 * (core/request gw_chat_validate); a body that passes then goes through what reads the client's
 * messages next: conversation memory, routing and every provider's build (common/canon).
 *
 * Oracles: a refusal always says why; validation removes the gateway's own members; the
 * request-id check of X-Request-Id agrees with its documented alphabet.
 */
#include <string.h>

#include "common/canon.h"
#include "common/fz.h"
#include "util/json.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_canon_setup();
    return fz_setup();
}

static void request_id(const uint8_t *data, size_t size)
{
    char id[80];
    size_t n = size < sizeof(id) - 1 ? size : sizeof(id) - 1;
    memcpy(id, data, n);
    id[n] = '\0';
    size_t len = strlen(id);
    int want = len >= 1 && len <= 64 &&
               strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") ==
                   len;
    if (gw_request_id_ok(id) != want)
        fz_fail("gw_request_id_ok('%s') is %d", id, !want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const ours[] = {"provider", "auto_route", "route_method",
                                       "conversation_id", "stream", "stream_options"};
    struct gw_errbuf eb = {{0}};
    struct gw_chat_opts o;

    request_id(data, size);
    json_t *body = gw_json_parse((const char *)data, size, &eb);
    if (body == NULL) {
        if (eb.msg[0] == '\0')
            fz_fail("invalid JSON refused without a reason");
        return 0;
    }
    if (gw_chat_validate(body, &o, &eb) != 0) {
        if (eb.msg[0] == '\0')
            fz_fail("a request refused without a reason");
        json_decref(body);
        return 0;
    }
    for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
        if (json_object_get(body, ours[i]) != NULL)
            fz_fail("'%s' was left in the canonical request", ours[i]);
    fz_canon_run(body, &o);
    json_decref(body);
    return 0;
}
