/*
 * fuzz_simple — the body of POST /api/v1/llm/chat (the simple form {messages, system?, model?,
 * auto_route?, conversation_id?, max_tokens?, temperature?, provider?}): parsed (util/json),
 * converted into the canonical request (core/request gw_simple_to_chat) and validated
 * (gw_chat_validate), as the pipeline does; a body that passes then goes through memory,
 * routing and every provider's build (common/canon).
 *
 * Oracles: refusals say why; the conversion leaves the body it was given as it was, and a
 * "system" string becomes the first message.
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_errbuf eb = {{0}};
    struct gw_chat_opts o;
    json_t *canon = NULL;

    json_t *body = gw_json_parse((const char *)data, size, &eb);
    if (body == NULL)
        return 0;
    json_t *before = json_deep_copy(body);
    int rc = gw_simple_to_chat(body, &canon, &eb);
    if (!json_equal(before, body))
        fz_fail("gw_simple_to_chat changed the body it was given");
    if (rc != 0) {
        if (eb.msg[0] == '\0' || canon != NULL)
            fz_fail("a conversion refused without a reason, or with a result");
    } else {
        const char *sys = json_string_value(json_object_get(body, "system"));
        json_t *first = json_array_get(json_object_get(canon, "messages"), 0);
        if (sys != NULL &&
            !json_equal(json_object_get(first, "content"), json_object_get(body, "system")))
            fz_fail("the system text is not the first message");
        if (json_object_get(canon, "system") != NULL)
            fz_fail("'system' was left in the canonical request");
        if (gw_chat_validate(canon, &o, &eb) == 0)
            fz_canon_run(canon, &o);
        else if (eb.msg[0] == '\0')
            fz_fail("a request refused without a reason");
    }
    json_decref(canon);
    json_decref(before);
    json_decref(body);
    return 0;
}
