/*
 * fuzz_anthropic_response — providers/anthropic.c: a non-streamed answer body as the provider
 * sends it, through parse into the canonical chat.completion, and as an error body through
 * map_error.
 */
#include "common/fz.h"
#include "common/prov.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return fz_setup();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"anthropic"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        fz_response(gw_provider_find(names[i]), data, size);
    return 0;
}
