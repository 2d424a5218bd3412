/*
 * fuzz_openai_stream — providers/openai.c: a streamed answer as the provider sends it (an SSE
 * stream), through util/sse into stream_event, on the tree path and on the fast path (both
 * succeeding must relay the same chunks); xAI and Perplexity, which share the code, too.
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
        fz_stream(gw_provider_find(names[i]), data, size);
    return 0;
}
