/*
 * fuzz_anthropic_stream — providers/anthropic.c: a streamed answer as the provider sends it (an
 * SSE stream), through util/sse into stream_event, which emits canonical chunks.
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
        fz_stream(gw_provider_find(names[i]), data, size);
    return 0;
}
