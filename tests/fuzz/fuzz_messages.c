/*
 * fuzz_messages — the body of POST /v1/messages (the Anthropic Messages dialect): parsed
 * (util/json), converted into the canonical request (core/messages gw_messages_to_chat, in its
 * messages and count_tokens forms) and validated (gw_chat_validate), as the pipeline does; a
 * body that passes then goes through memory, routing and every provider's build
 * (common/canon). The input's string values also drive the stream translator: each is taken as
 * a canonical chunk's JSON, and the events written must each be one JSON object.
 *
 * Oracles: refusals say why and give nothing; the conversion leaves its input as it was; every
 * event the translator emits is valid JSON whose "type" names the event.
 */
#include <string.h>

#include "common/canon.h"
#include "common/fz.h"
#include "core/messages.h"
#include "util/json.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_canon_setup();
    return fz_setup();
}

static int check_event(void *arg, const char *event, const char *data, size_t len)
{
    struct gw_errbuf eb = {{0}};
    json_t *v = gw_json_parse(data, len, &eb);
    (void)arg;
    if (!json_is_object(v))
        fz_fail("the translator wrote an event whose data is not a JSON object");
    const char *type = json_string_value(json_object_get(v, "type"));
    if (type == NULL || strcmp(type, event) != 0)
        fz_fail("an event's data does not name the event");
    json_decref(v);
    return 0;
}

/* Every string value of v (to a small depth) as a chunk for the translator. */
static void feed_strings(struct gw_messages_stream *s, const json_t *v, int depth)
{
    struct gw_errbuf eb = {{0}};
    size_t i;
    const char *k;
    json_t *x;
    if (depth > 4)
        return;
    if (json_is_string(v)) {
        json_t *chunk = gw_json_parse(json_string_value(v), json_string_length(v), &eb);
        if (chunk != NULL)
            (void)gw_messages_stream_chunk(s, chunk);
        json_decref(chunk);
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x) feed_strings(s, x, depth + 1);
    } else if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, x) feed_strings(s, x, depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_errbuf eb = {{0}};
    struct gw_chat_opts o;
    json_t *body = gw_json_parse((const char *)data, size, &eb);
    if (body == NULL)
        return 0;
    json_t *before = json_deep_copy(body);
    for (int count_only = 0; count_only <= 1; count_only++) {
        json_t *canon = NULL;
        memset(&eb, 0, sizeof(eb));
        struct gw_errbuf native = {{0}};
        int rc = gw_messages_to_chat(body, count_only, &canon, &eb, count_only ? &native : NULL);
        if (!json_equal(before, body))
            fz_fail("gw_messages_to_chat changed the body it was given");
        if (rc != 0) {
            if ((rc == GW_EINVAL && eb.msg[0] == '\0') || canon != NULL)
                fz_fail("a conversion refused without a reason, or with a result");
        } else if (!count_only) {
            if (gw_chat_validate(canon, &o, &eb) == 0)
                fz_canon_run(canon, &o);
            else if (eb.msg[0] == '\0')
                fz_fail("a request refused without a reason");
        }
        json_decref(canon);
    }
    struct gw_messages_stream s;
    struct gw_usage u = {.input_tokens = (int64_t)size, .output_tokens = 3};
    gw_messages_stream_init(&s, "msg_fuzz", json_string_value(json_object_get(body, "model")),
                            check_event, NULL);
    feed_strings(&s, body, 0);
    gw_messages_stream_usage(&s, &u, 0.5);
    (void)(size % 2 ? gw_messages_stream_end(&s)
                    : gw_messages_stream_error(&s, 502, "upstream_error", "cut"));
    json_decref(before);
    json_decref(body);
    return 0;
}
