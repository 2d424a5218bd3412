/*
 * fuzz_config — the gateway's config file: core/yaml (YAML → JSON tree) and core/config
 * (the tree applied setting by setting), through gw_config_load_file, the function the CLI
 * calls; it takes a path, so each input is written to a memory file first.
 *
 * Oracles: a refused file says why and changes nothing (config.c validates on a scratch copy
 * first); an accepted one leaves a config whose strings are set and whose port is valid (or
 * none: "listen: none", embedded), and loads again, the same, over itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fz.h"
#include "core/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return fz_setup();
}

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Are a and b the same settings? */
static int same(const struct gw_config *a, const struct gw_config *b)
{
    struct gw_config x = *a, y = *b;
    if (!same_str(a->listen_host, b->listen_host) || !same_str(a->db_url, b->db_url) ||
        !same_str(a->catalog_path, b->catalog_path) ||
        !same_str(a->routing_path, b->routing_path))
        return 0;
    x.listen_host = x.db_url = x.catalog_path = x.routing_path = NULL;
    y.listen_host = y.db_url = y.catalog_path = y.routing_path = NULL;
    for (int i = 0; i < GW_NPROVIDERS; i++) {
        const struct gw_provider_conf *p = &a->providers[i], *q = &b->providers[i];
        if (!same_str(p->base_url, q->base_url) || !same_str(p->api_key, q->api_key) ||
            !same_str(p->api_version, q->api_version))
            return 0;
        x.providers[i].base_url = x.providers[i].api_key = x.providers[i].api_version = NULL;
        y.providers[i].base_url = y.providers[i].api_key = y.providers[i].api_version = NULL;
    }
    return memcmp(&x, &y, sizeof(x)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_config c, before;
    struct gw_errbuf eb = {{0}};

    if (gw_config_init(&c) != 0 || gw_config_copy(&before, &c) != 0)
        fz_fail("out of memory");
    const char *path = fz_file(data, size);
    int rc = gw_config_load_file(&c, path, &eb);
    if (getenv("FZ_VERBOSE") != NULL)
        fprintf(stderr, "config: %s %s\n", rc == 0 ? "loaded" : "refused:", eb.msg);
    if (rc != 0) {
        if (eb.msg[0] == '\0')
            fz_fail("a config refused without a reason");
        if (!same(&c, &before))
            fz_fail("a refused config changed the settings (%s)", eb.msg);
    } else {
        /* a port, or none at all ("listen: none", embedded: no socket, no host) */
        int no_socket = c.listen_port == -1 && c.listen_host != NULL && c.listen_host[0] == '\0';
        if (c.listen_host == NULL || c.db_url == NULL || c.catalog_path == NULL ||
            c.routing_path == NULL ||
            (!no_socket && (c.listen_port < 1 || c.listen_port > 65535)) || c.ntiers < 0 ||
            c.ntiers > GW_MAX_TIERS)
            fz_fail("an accepted config is not whole");
        for (int i = 0; i < GW_NPROVIDERS; i++)
            if (c.providers[i].base_url == NULL)
                fz_fail("a provider lost its base URL");
        struct gw_config again;
        if (gw_config_copy(&again, &c) != 0)
            fz_fail("out of memory");
        if (gw_config_load_file(&again, path, &eb) != 0 || !same(&again, &c))
            fz_fail("an accepted config does not load the same over itself (%s)", eb.msg);
        gw_config_cleanup(&again);
    }
    gw_config_cleanup(&before);
    gw_config_cleanup(&c);
    return 0;
}
