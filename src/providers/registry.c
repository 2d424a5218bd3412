/* providers/registry — the table of adapters. Adding a provider: one file, one line here. */
#include <string.h>

#include "providers/provider.h"

extern const struct gw_provider_ops gw_provider_anthropic;
extern const struct gw_provider_ops gw_provider_openai;
extern const struct gw_provider_ops gw_provider_gemini;
extern const struct gw_provider_ops gw_provider_xai;
extern const struct gw_provider_ops gw_provider_perplexity;

static const struct gw_provider_ops *const all[] = {
    &gw_provider_anthropic, &gw_provider_openai,     &gw_provider_gemini,
    &gw_provider_xai,       &gw_provider_perplexity, NULL,
};

const struct gw_provider_ops *const *gw_provider_all(void) { return all; }

const struct gw_provider_ops *gw_provider_find(const char *name)
{
    for (int i = 0; all[i] != NULL; i++)
        if (strcmp(all[i]->name, name) == 0)
            return all[i];
    return NULL;
}
