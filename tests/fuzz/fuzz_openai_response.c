/*
 * fuzz_openai_response — providers/openai.c: a non-streamed answer body as the provider sends
 * it, through parse (the tree path) and scan (the fast path: both accepting must mean the same
 * answer and usage), and as an error body through map_error; for xAI and Perplexity too, which
 * share the code.
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
    static const char *const names[] = {"openai", "xai", "perplexity"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        fz_response(gw_provider_find(names[i]), data, size);
    return 0;
}
