/*
 * tests/fuzz/common/prov — driving a provider adapter the way the pipeline does, for the
 * fuzz_<provider>_response and fuzz_<provider>_stream harnesses.
 */
#ifndef GW_TESTS_FUZZ_PROV_H
#define GW_TESTS_FUZZ_PROV_H

#include <stddef.h>
#include <stdint.h>

#include "providers/provider.h"

/* A provider's answer body: parse it (the tree path), scan it where the adapter has the fast
 * path (both accepting must mean the same members and the same usage), map it as an error body
 * under a few statuses, and price the usage. */
void fz_response(const struct gw_provider_ops *ops, const uint8_t *data, size_t size);

/* A provider's event stream: through the SSE parser into stream_event, the tree path; where the
 * adapter has a fast path, once more with emit_raw set (both succeeding must mean the same
 * chunks, usage, finish reason and end). */
void fz_stream(const struct gw_provider_ops *ops, const uint8_t *data, size_t size);

#endif
