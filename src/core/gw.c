/*
 * core/gw — the gateway object and the public embedded API (include/llmgw.h).
 *
 * llmgw_new does everything that can fail before serving: load the catalog, open and migrate
 * the store, recover reservations left by a dead process, bind the sockets.
 */
#include <curl/curl.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/gw_int.h"
#include "core/harden.h"
#include "llmgw.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/metrics.h"
#include "util/util.h"

struct llmgw_config {
    struct gw_config c;
};

static void copy_err(char *err, size_t errsz, const char *msg)
{
    if (err != NULL && errsz > 0)
        gw_strlcpy(err, msg, errsz);
}

int llmgw_config_new(struct llmgw_config **out)
{
    struct llmgw_config *c = gw_calloc(1, sizeof(*c));
    *out = NULL;
    if (c == NULL)
        return GW_ENOMEM;
    int rc = gw_config_init(&c->c);
    if (rc != 0) {
        gw_config_cleanup(&c->c);
        gw_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void llmgw_config_free(struct llmgw_config *cfg)
{
    if (cfg == NULL)
        return;
    gw_config_cleanup(&cfg->c);
    gw_free(cfg);
}

int llmgw_config_load_file(struct llmgw_config *cfg, const char *path, char *err, size_t errsz)
{
    struct gw_errbuf eb = {{0}};
    int rc = gw_config_load_file(&cfg->c, path, &eb);
    if (rc != 0)
        copy_err(err, errsz, eb.msg[0] ? eb.msg : gw_strerror(rc));
    return rc;
}

int llmgw_config_set(struct llmgw_config *cfg, const char *name, const char *value, char *err,
                     size_t errsz)
{
    struct gw_errbuf eb = {{0}};
    int rc = gw_config_set(&cfg->c, name, value, &eb);
    if (rc != 0)
        copy_err(err, errsz, eb.msg[0] ? eb.msg : gw_strerror(rc));
    return rc;
}

static void libevent_log_init(void);

static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

int llmgw_new(const struct llmgw_config *cfg, struct llmgw **out, char *err, size_t errsz)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct llmgw *g = NULL;
    struct gw_store *st = NULL;
    struct gw_errbuf eb = {{0}};
    int rc = GW_ENOMEM;

    *out = NULL;
    pthread_once(&once, curl_init_once);
    libevent_log_init();
    g = gw_calloc(1, sizeof(*g));
    if (g == NULL)
        goto out;
    if ((rc = gw_config_copy(&g->gw.cfg, &cfg->c)) != 0) {
        memset(&g->gw.cfg, 0, sizeof(g->gw.cfg));
        goto out;
    }
    struct gw *gw = &g->gw;
    gw->started_ms = gw_now_ms();
    if ((gw->metrics = gw_metrics_new()) == NULL) {
        rc = GW_ENOMEM;
        goto out;
    }
    gw->workers = gw->cfg.workers > 0 ? gw->cfg.workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (gw->workers < 1)
        gw->workers = 1;
    if ((rc = gw_catalog_load(gw->cfg.catalog_path, &gw->catalog, &eb)) != 0) {
        char m[300];
        snprintf(m, sizeof(m), "catalog %s: %s", gw->cfg.catalog_path, eb.msg);
        gw_strlcpy(eb.msg, m, sizeof(eb.msg));
        goto out;
    }
    if ((rc = gw_router_load(gw->cfg.routing_path, gw->catalog, &gw->router, &eb)) != 0) {
        char m[300];
        snprintf(m, sizeof(m), "routing rules %s: %s", gw->cfg.routing_path, eb.msg);
        gw_strlcpy(eb.msg, m, sizeof(eb.msg));
        goto out;
    }
    for (int i = 0; i < GW_NPROVIDERS; i++)
        gw_breaker_init(&gw->breakers[i]);
    gw->cooldowns = gw_calloc((size_t)gw_catalog_count(gw->catalog) + 1, sizeof(*gw->cooldowns));
    if (gw->cooldowns == NULL) {
        rc = GW_ENOMEM;
        goto out;
    }
    if (gw->cfg.router.enabled) {
        gw->router_model = gw_catalog_find(gw->catalog, gw->cfg.router.model);
        if (gw->router_model == NULL) {
            rc = GW_EINVAL;
            gw_errbuf_set(&eb, "router.model '%s' is not a catalog model", gw->cfg.router.model);
            goto out;
        }
    }
    if (gw->cfg.conv.summary_model[0] != '\0') {
        gw->summary_model = gw_catalog_find(gw->catalog, gw->cfg.conv.summary_model);
        if (gw->summary_model == NULL) {
            rc = GW_EINVAL;
            gw_errbuf_set(&eb, "conversations.summary_model '%s' is not a catalog model",
                          gw->cfg.conv.summary_model);
            goto out;
        }
    }
    if ((rc = gw_store_open(gw->cfg.db_url, &st, &eb)) != 0 ||
        (rc = gw_store_migrate(st, &eb)) != 0)
        goto out;
    if (gw->cfg.node_id[0] == '\0') { /* default node name: host:port */
        char host[48] = "localhost";
        (void)gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        snprintf(gw->cfg.node_id, sizeof(gw->cfg.node_id), "%.40s:%d", host,
                 gw->cfg.listen_port);
    }
    /* SQLite: this process is the only writer, so every reservation left is a dead one's; a
     * shared store: only this node's own */
    int shared = strcmp(gw_store_backend(st), "sqlite") != 0;
    int64_t recovered = 0;
    if ((rc = gw_store_usage_recover(st, shared ? gw->cfg.node_id : "", &recovered)) != 0) {
        gw_errbuf_set(&eb, "cannot recover reservations left by an earlier process");
        goto out;
    }
    if (recovered > 0)
        GW_LOG_WARN("store", "%lld reservation(s) left by an earlier process marked uncertain "
                    "and charged at their reserved cost", (long long)recovered);
    /* and its idempotency claims: a retry gets 502 uncertain_upstream_state, not 409 forever */
    if ((rc = gw_store_idem_recover(st, shared ? gw->cfg.node_id : "", &gw->idem_recovered)) !=
        0) {
        gw_errbuf_set(&eb, "cannot recover idempotency keys left by an earlier process");
        goto out;
    }
    if (gw->idem_recovered > 0)
        GW_LOG_WARN("store", "%lld idempotency key(s) left in flight by an earlier process "
                    "marked uncertain", (long long)gw->idem_recovered);
    /* SQLite: the limits are counted in memory, the workers use their own connections inline;
     * a shared store decides the limits itself, reached through a pool of store threads */
    gw->ledger.windows = gw->cfg.budgets;
    if (!shared && (rc = gw_limits_new(&gw->cfg.budgets, &gw->ledger.limits)) != 0)
        goto out;
    /* SQLite: one writer thread commits every worker's writes in batches; a shared store:
     * db_pool threads, each with its own connection, run all store work */
    rc = shared ? gw_store_pool_new(gw->cfg.db_url, gw->cfg.db_pool, 0, &gw->pool, &eb)
                : gw_store_pool_new(gw->cfg.db_url, 1, 1, &gw->pool, &eb);
    if (rc == 0 && !shared) /* the writer polls a while for work before it sleeps */
        gw_store_pool_poll(gw->pool, gw->cfg.db_poll_us);
    /* SQLite: the admin plane's long reads (usage queries, exports) get a reader thread of
     * their own, off the workers' loops and out of the writer's way */
    if (rc == 0 && !shared)
        rc = gw_store_pool_new(gw->cfg.db_url, 1, 0, &gw->readers, &eb);
    if (rc != 0)
        goto out;
    g->app = gw_app;
    g->app.arg = gw;
    struct gw_http_opts o = {
        .host = gw->cfg.listen_host,
        .port = gw->cfg.listen_port,
        .workers = gw->workers,
        .max_body = gw->cfg.max_body,
        .max_headers = 65536,
        .read_timeout_ms = gw->cfg.header_timeout_ms,
        .shutdown_grace_ms = gw->cfg.shutdown_grace_ms,
    };
    if (gw->cfg.listen_port >= 0 && (rc = gw_http_server_new(&o, &g->app, &gw->server, &eb)) != 0)
        goto out;
    *out = g;
    g = NULL;
    rc = 0;
out:
    if (rc != 0)
        copy_err(err, errsz, eb.msg[0] ? eb.msg : gw_strerror(rc));
    gw_store_free(st);
    llmgw_free(g);
    return rc;
}

int llmgw_serve(struct llmgw *g)
{
    if (g->gw.server == NULL)
        return GW_EINVAL;
    GW_LOG_INFO("server", "listening on %s:%d with %d worker(s)", g->gw.cfg.listen_host,
                gw_http_server_port(g->gw.server), g->gw.workers);
    return gw_http_server_run(g->gw.server);
}

void llmgw_stop(struct llmgw *g)
{
    if (g->gw.server != NULL)
        gw_http_server_stop(g->gw.server);
    gw_embed_stop(&g->gw);
}

int llmgw_port(const struct llmgw *g)
{
    return g->gw.server != NULL ? gw_http_server_port(g->gw.server) : -1;
}

void llmgw_free(struct llmgw *g)
{
    if (g == NULL)
        return;
    gw_embed_free(&g->gw);
    gw_http_server_free(g->gw.server);
    gw_router_free(g->gw.router);
    gw_free(g->gw.cooldowns);
    gw_store_pool_free(g->gw.pool);
    gw_store_pool_free(g->gw.readers);
    gw_limits_free(g->gw.ledger.limits);
    gw_catalog_free(g->gw.catalog);
    gw_metrics_free(g->gw.metrics);
    gw_config_cleanup(&g->gw.cfg);
    gw_free(g);
}

/* libevent writes its warnings to stderr unless given a callback: pass them to the host's
 * handler too. Installed once per process (libevent's callback is process-wide), so a host that
 * wants libevent's lines itself can set its own callback afterwards. */
static void libevent_log(int severity, const char *msg)
{
    char line[1024];
    int level = severity >= EVENT_LOG_ERR    ? GW_LOG_LVL_ERROR
                : severity == EVENT_LOG_WARN ? GW_LOG_LVL_WARN
                : severity == EVENT_LOG_MSG  ? GW_LOG_LVL_INFO
                                             : GW_LOG_LVL_DEBUG;
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (!gw_log_enabled(level))
        return;
    snprintf(line, sizeof(line), "%s libevent: %s", names[level], msg ? msg : "");
    gw_log_line(level, line);
}

static void libevent_log_once(void) { event_set_log_callback(libevent_log); }

static void libevent_log_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, libevent_log_once);
}

void llmgw_set_log_handler(void (*cb)(void *arg, int level, const char *line), void *arg,
                           int max_level)
{
    libevent_log_init();
    gw_log_set_handler(cb, arg, max_level);
}

const char *llmgw_strerror(int err) { return gw_strerror(err); }

json_t *gw_health_breakers(struct gw *gw)
{
    json_t *out = json_object();
    int64_t now = gw_now_ms();

    for (int i = 0; out != NULL && i < GW_NPROVIDERS; i++) {
        struct gw_breaker_view v;
        gw_breaker_view(&gw->breakers[i], now, &v);
        json_object_set_new(out, gw->cfg.providers[i].name,
                            json_pack("{s:s,s:i,s:I,s:I,s:b}", "state",
                                      gw_breaker_state_name(v.state), "consecutive_failures",
                                      v.failures, "retry_in_ms", (json_int_t)v.retry_in_ms,
                                      "opened", (json_int_t)v.opened, "configured",
                                      gw_provider_configured(gw, gw->cfg.providers[i].name)));
    }
    return out;
}

const char *gw_store_backend_name(const struct gw *gw)
{
    return gw->ledger.limits != NULL ? "sqlite" : "postgres";
}

int gw_harden_plan(const struct llmgw_config *cfg, int *keep_bind, long *nofile)
{
    const struct gw_config *c = &cfg->c;
    long workers = c->workers > 0 ? c->workers : sysconf(_SC_NPROCESSORS_ONLN);
    *keep_bind = c->listen_port > 0 && c->listen_port < 1024;
    /* a client's connection and its upstream's for every connection allowed, and some spare */
    *nofile = (workers > 0 ? workers : 1) * (long)c->max_conns_per_worker * 2 + 256;
    return c->hardening == 1 || (c->hardening == -1 && c->production);
}
