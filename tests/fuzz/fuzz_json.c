/*
 * fuzz_json — util/json's gw_json_parse, the one strict parser every inbound body (chat,
 * simple, admin, sessions) and every provider answer goes through.
 *
 * Oracles: gw_json_parse follows jansson's strict rules (json.c says so), so on every input it
 * agrees with json_loadb(JSON_DECODE_ANY | JSON_REJECT_DUPLICATES): both refuse, or both give
 * equal trees; the only refusals of ours jansson does not share are the documented bound (a
 * number token of 400 bytes or more) and NUL bytes between tokens, which jansson skips. What
 * it accepts serialises, and parses back equal; and gw_json_dumps writes it byte for byte as
 * json_dumps does (compact; the default precision and 15).
 */
#include <jansson.h>
#include <string.h>

#include "common/fz.h"
#include "util/json.h"
#include "util/mem.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return fz_setup();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_errbuf eb = {{0}};
    json_error_t jerr;
    const char *text = (const char *)data;

    json_t *ours = gw_json_parse(text, size, &eb);
    json_t *theirs = json_loadb(text, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (ours != NULL && theirs == NULL)
        fz_fail("gw_json_parse accepted what jansson refuses: %s (byte %d)", jerr.text,
                jerr.position);
    /* jansson's reader skips NUL bytes between tokens ("0\0" is 0 to it): ours refuses them */
    if (ours == NULL && theirs != NULL && strstr(eb.msg, "number too long") == NULL &&
        memchr(data, '\0', size) == NULL)
        fz_fail("gw_json_parse refused what jansson accepts: %s", eb.msg);
    if (ours == NULL && eb.msg[0] == '\0')
        fz_fail("a refusal without a reason");
    if (ours != NULL && !json_equal(ours, theirs))
        fz_fail("gw_json_parse and jansson disagree on the tree");
    if (ours != NULL) {
        char *s = json_dumps(ours, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s == NULL)
            fz_fail("an accepted tree does not serialise");
        json_t *back = gw_json_parse(s, strlen(s), NULL);
        if (!json_equal(back, ours))
            fz_fail("a serialised tree does not parse back equal");
        json_decref(back);
        gw_free(s);
        for (int p = 0; p <= 15; p += 15) {
            char *want = json_dumps(ours, JSON_COMPACT | JSON_REAL_PRECISION(p));
            char *got = gw_json_dumps(ours, p);
            if ((want == NULL) != (got == NULL) || (want != NULL && strcmp(want, got) != 0))
                fz_fail("gw_json_dumps (precision %d) writes %s where json_dumps writes %s", p,
                        got ? got : "(null)", want ? want : "(null)");
            gw_free(want);
            gw_free(got);
        }
    }
    json_decref(ours);
    json_decref(theirs);
    return 0;
}
