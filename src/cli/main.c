/*
 * cli/main — the llmgw command: serve, migrate, admin bootstrap, orgs, keys.
 *
 * The only place that reads the environment, handles signals and writes to the terminal.
 * Settings are layered: defaults < config file < environment < flags. Raw API keys are printed
 * once, as the last line of stdout, and never logged.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/http.h>

#include "core/admin.h"
#include "core/config.h"
#include "core/harden.h"
#include "util/json.h"
#include "llmgw.h"
#include "policy/keys.h"
#include "store/store.h"
#include "util/mem.h"
#include "util/util.h"


static int die(const char *fmt, const char *a)
{
    fprintf(stderr, "llmgw: ");
    fprintf(stderr, fmt, a);
    fputc('\n', stderr);
    return 1;
}

/* ---- logging to stderr ---- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static void log_stderr(void *arg, int level, const char *line)
{
    char ts[32];
    struct timespec now;
    struct tm tm;
    (void)arg;
    (void)level;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    pthread_mutex_lock(&log_mu);
    if (line[0] == '{') /* a JSON line (the access log): it carries its own time */
        fprintf(stderr, "%s\n", line);
    else
        fprintf(stderr, "%s.%03ldZ %s\n", ts, now.tv_nsec / 1000000, line);
    pthread_mutex_unlock(&log_mu);
}

/* The server logs from info up; the one-shot commands only warnings and errors (their answer
 * is their output). LLMGW_LOG_LEVEL overrides both. */
static void setup_logging(int serving_cmd)
{
    const char *lvl = getenv("LLMGW_LOG_LEVEL");
    int max = serving_cmd ? LLMGW_LOG_INFO : LLMGW_LOG_WARN;
    if (lvl != NULL) {
        if (strcmp(lvl, "error") == 0)
            max = LLMGW_LOG_ERROR;
        else if (strcmp(lvl, "warn") == 0)
            max = LLMGW_LOG_WARN;
        else if (strcmp(lvl, "info") == 0)
            max = LLMGW_LOG_INFO;
        else if (strcmp(lvl, "debug") == 0)
            max = LLMGW_LOG_DEBUG;
    }
    llmgw_set_log_handler(log_stderr, NULL, max); /* libevent's warnings come through it too */
}

/* ---- configuration layering ---- */

struct env_map {
    const char *env;
    const char *setting;
};

static const struct env_map env_settings[] = {
    {"LLMGW_LISTEN", "listen"},
    {"LLMGW_DB", "db"},
    {"LLMGW_WORKERS", "workers"},
    {"LLMGW_MODE", "mode"},
    {"LLMGW_HARDENING", "hardening"},
    {"LLMGW_CATALOG", "catalog"},
    {"ANTHROPIC_API_KEY", "providers.anthropic.api_key"},
    {"OPENAI_API_KEY", "providers.openai.api_key"},
    {"GEMINI_API_KEY", "providers.gemini.api_key"},
    {"XAI_API_KEY", "providers.xai.api_key"},
    {"PERPLEXITY_API_KEY", "providers.perplexity.api_key"},
    {"LLMGW_ANTHROPIC_BASE_URL", "providers.anthropic.base_url"},
    {"LLMGW_OPENAI_BASE_URL", "providers.openai.base_url"},
    {"LLMGW_GEMINI_BASE_URL", "providers.gemini.base_url"},
    {"LLMGW_XAI_BASE_URL", "providers.xai.base_url"},
    {"LLMGW_PERPLEXITY_BASE_URL", "providers.perplexity.base_url"},
    {"LLMGW_ANTHROPIC_VERSION", "providers.anthropic.api_version"},
};

/* Build the configuration: defaults, then the file (flag or LLMGW_CONFIG), then the
 * environment, then flags (pairs of setting name and value). */
static int build_config(struct llmgw_config **out, const char *config_path, const char **flags,
                        int nflags)
{
    char err[256];
    struct llmgw_config *cfg = NULL;

    *out = NULL;
    if (llmgw_config_new(&cfg) != 0)
        return die("%s", "out of memory");
    if (config_path == NULL)
        config_path = getenv("LLMGW_CONFIG");
    if (config_path != NULL && config_path[0] != '\0' &&
        llmgw_config_load_file(cfg, config_path, err, sizeof(err)) != 0) {
        llmgw_config_free(cfg);
        fprintf(stderr, "llmgw: config %s: %s\n", config_path, err);
        return 1;
    }
    for (size_t i = 0; i < sizeof(env_settings) / sizeof(env_settings[0]); i++) {
        const char *v = getenv(env_settings[i].env);
        if (v == NULL || v[0] == '\0')
            continue;
        if (llmgw_config_set(cfg, env_settings[i].setting, v, err, sizeof(err)) != 0) {
            llmgw_config_free(cfg);
            fprintf(stderr, "llmgw: %s: %s\n", env_settings[i].env, err);
            return 1;
        }
    }
    for (int i = 0; i + 1 < nflags; i += 2) {
        if (flags[i + 1] == NULL)
            continue;
        if (llmgw_config_set(cfg, flags[i], flags[i + 1], err, sizeof(err)) != 0) {
            llmgw_config_free(cfg);
            fprintf(stderr, "llmgw: --%s: %s\n", flags[i], err);
            return 1;
        }
    }
    *out = cfg;
    return 0;
}

/* The store URL for admin commands: --db, else LLMGW_DB, else the config file's, else default. */
static int open_store(const char *db_flag, const char *config_path, struct gw_store **out)
{
    struct gw_config c;
    struct gw_errbuf eb = {{0}};
    const char *url = db_flag;
    int rc;

    *out = NULL;
    if ((rc = gw_config_init(&c)) != 0)
        return die("%s", "out of memory");
    if (config_path == NULL)
        config_path = getenv("LLMGW_CONFIG");
    if (url == NULL && config_path != NULL && config_path[0] != '\0' &&
        gw_config_load_file(&c, config_path, &eb) != 0) {
        gw_config_cleanup(&c);
        fprintf(stderr, "llmgw: config %s: %s\n", config_path, eb.msg);
        return 1;
    }
    if (url == NULL)
        url = getenv("LLMGW_DB");
    if (url == NULL || url[0] == '\0')
        url = c.db_url;
    rc = gw_store_open(url, out, &eb);
    if (rc == 0)
        rc = gw_store_migrate(*out, &eb);
    gw_config_cleanup(&c);
    if (rc != 0) {
        gw_store_free(*out);
        *out = NULL;
        fprintf(stderr, "llmgw: store: %s\n", eb.msg[0] ? eb.msg : gw_strerror(rc));
        return 1;
    }
    return 0;
}

/* ---- key creation (shared by bootstrap, keys create and serve's first start) ---- */

static int create_key(struct gw_store *st, struct gw_key_rec *rec, char *raw, size_t rawsz)
{
    unsigned char hash[32];
    int rc = gw_key_generate(raw, rawsz, hash);
    if (rc == 0)
        rc = gw_key_new_id(rec->key_id, sizeof(rec->key_id));
    if (rc == 0) {
        memcpy(rec->prefix, raw, GW_KEY_DISPLAY_PREFIX_LEN);
        rec->prefix[GW_KEY_DISPLAY_PREFIX_LEN] = '\0';
        rc = gw_store_key_insert(st, rec, hash);
    }
    OPENSSL_cleanse(hash, sizeof(hash));
    return rc;
}

/* Create the superadmin key if there is none. *created = 1 and raw filled when created. */
static int bootstrap_superadmin(struct gw_store *st, char *raw, size_t rawsz, int *created)
{
    int exists = 0;
    struct gw_key_rec rec;

    *created = 0;
    int rc = gw_store_superadmin_exists(st, &exists);
    if (rc != 0 || exists)
        return rc;
    memset(&rec, 0, sizeof(rec));
    gw_strlcpy(rec.name, "superadmin", sizeof(rec.name));
    gw_strlcpy(rec.role, "superadmin", sizeof(rec.role));
    gw_strlcpy(rec.tier, "enterprise", sizeof(rec.tier));
    rc = create_key(st, &rec, raw, rawsz);
    if (rc == 0)
        *created = 1;
    return rc;
}

/* ---- commands ---- */

static const char *usage_main =
    "usage: llmgw <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve              run the gateway\n"
    "  migrate            create or upgrade the database schema\n"
    "  admin bootstrap    create the superadmin key if none exists\n"
    "  admin routes|api   the admin API's routes; run one of its operations\n"
    "  orgs create|update|show SLUG   organizations and their policy\n"
    "  keys create|update|list|revoke|rotate   manage API keys\n"
    "  app-clients list|create|approve|revoke   browser app clients\n"
    "  usage              list usage rows and their totals\n"
    "  usage export       usage rows as CSV or JSONL (audited)\n"
    "  healthcheck        GET /healthz, exit 0 on 200 (container health checks)\n"
    "  version            print the version\n"
    "\n"
    "Run 'llmgw <command> --help' for a command's options.\n"
    "Environment: LLMGW_CONFIG, LLMGW_LISTEN, LLMGW_DB, LLMGW_WORKERS, LLMGW_MODE,\n"
    "LLMGW_LOG_LEVEL, <PROVIDER>_API_KEY and LLMGW_<PROVIDER>_BASE_URL for anthropic, openai,\n"
    "gemini, xai and perplexity. Flags win over the environment, which wins over the file.\n";

enum { OPT_HELP = 'h', OPT_CONFIG = 1000, OPT_LISTEN, OPT_DB, OPT_WORKERS, OPT_ORG, OPT_NAME,
       OPT_ROLE, OPT_TIER, OPT_PROVIDERS, OPT_MODELS, OPT_RPH, OPT_DAILY, OPT_MONTHLY, OPT_TPH,
       OPT_CONC, OPT_MAXREQ, OPT_KEY, OPT_MODEL, OPT_FROM, OPT_TO, OPT_FORMAT, OPT_CAPTURE,
       OPT_RETENTION, OPT_EXPORT_ALL, OPT_BODY, OPT_GRACE, OPT_ORIGINS };

static const struct option long_opts[] = {
    {"help", no_argument, NULL, OPT_HELP},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"db", required_argument, NULL, OPT_DB},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"org", required_argument, NULL, OPT_ORG},
    {"name", required_argument, NULL, OPT_NAME},
    {"role", required_argument, NULL, OPT_ROLE},
    {"tier", required_argument, NULL, OPT_TIER},
    {"providers", required_argument, NULL, OPT_PROVIDERS},
    {"models", required_argument, NULL, OPT_MODELS},
    {"rph", required_argument, NULL, OPT_RPH},
    {"daily-usd", required_argument, NULL, OPT_DAILY},
    {"monthly-usd", required_argument, NULL, OPT_MONTHLY},
    {"tph", required_argument, NULL, OPT_TPH},
    {"max-concurrent", required_argument, NULL, OPT_CONC},
    {"max-request-usd", required_argument, NULL, OPT_MAXREQ},
    {"key", required_argument, NULL, OPT_KEY},
    {"model", required_argument, NULL, OPT_MODEL},
    {"from", required_argument, NULL, OPT_FROM},
    {"to", required_argument, NULL, OPT_TO},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"capture", required_argument, NULL, OPT_CAPTURE},
    {"retention-days", required_argument, NULL, OPT_RETENTION},
    {"export-all", required_argument, NULL, OPT_EXPORT_ALL},
    {"body", required_argument, NULL, OPT_BODY},
    {"grace-seconds", required_argument, NULL, OPT_GRACE},
    {"origins", required_argument, NULL, OPT_ORIGINS},
    {NULL, 0, NULL, 0},
};

struct opts {
    const char *config, *listen, *db, *workers, *org, *name, *role, *tier, *providers, *models,
        *rph, *daily, *monthly, *tph, *conc, *maxreq, *key, *model, *from, *to, *format,
        *capture, *retention, *export_all, *body, *grace, *origins;
    int help;
    int nargs;
    char **args;
};

/* Parse options; only those listed in allowed (a string of OPT_ codes) are accepted. */
static int parse_opts(int argc, char **argv, const int *allowed, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        int ok = ch == OPT_HELP;
        for (const int *a = allowed; *a != 0; a++)
            ok |= *a == ch;
        if (ch == '?' || !ok) {
            const char *bad = argv[optind - 1];
            return die("unknown or incomplete option '%s' (try --help)", bad);
        }
        switch (ch) {
        case OPT_HELP: o->help = 1; break;
        case OPT_CONFIG: o->config = optarg; break;
        case OPT_LISTEN: o->listen = optarg; break;
        case OPT_DB: o->db = optarg; break;
        case OPT_WORKERS: o->workers = optarg; break;
        case OPT_ORG: o->org = optarg; break;
        case OPT_NAME: o->name = optarg; break;
        case OPT_ROLE: o->role = optarg; break;
        case OPT_TIER: o->tier = optarg; break;
        case OPT_PROVIDERS: o->providers = optarg; break;
        case OPT_MODELS: o->models = optarg; break;
        case OPT_RPH: o->rph = optarg; break;
        case OPT_DAILY: o->daily = optarg; break;
        case OPT_MONTHLY: o->monthly = optarg; break;
        case OPT_TPH: o->tph = optarg; break;
        case OPT_CONC: o->conc = optarg; break;
        case OPT_MAXREQ: o->maxreq = optarg; break;
        case OPT_KEY: o->key = optarg; break;
        case OPT_MODEL: o->model = optarg; break;
        case OPT_FROM: o->from = optarg; break;
        case OPT_TO: o->to = optarg; break;
        case OPT_FORMAT: o->format = optarg; break;
        case OPT_CAPTURE: o->capture = optarg; break;
        case OPT_RETENTION: o->retention = optarg; break;
        case OPT_EXPORT_ALL: o->export_all = optarg; break;
        case OPT_BODY: o->body = optarg; break;
        case OPT_GRACE: o->grace = optarg; break;
        case OPT_ORIGINS: o->origins = optarg; break;
        default: break;
        }
    }
    o->nargs = argc - optind;
    o->args = argv + optind;
    return 0;
}

/* The settings the admin operations read (tiers): the file's over the defaults. */
static int load_config(const char *path, struct gw_config *c)
{
    struct gw_errbuf eb = {{0}};
    if (gw_config_init(c) != 0)
        return die("%s", "out of memory");
    if (path == NULL)
        path = getenv("LLMGW_CONFIG");
    if (path != NULL && path[0] != '\0' && gw_config_load_file(c, path, &eb) != 0) {
        gw_config_cleanup(c);
        fprintf(stderr, "llmgw: config %s: %s\n", path, eb.msg);
        return 1;
    }
    return 0;
}

/* Run an admin operation as the command line's operator: the same code (checks, store work,
 * audit entry) as the HTTP API's. 0 with *out (new) on success; 1 otherwise, with why in err
 * (*status: the HTTP status the API would answer, 0 when it never ran). */
static int admin_op(const struct opts *o, const char *method, const char *path, const char *query,
                    json_t *body, json_t **out, int *status, char *err, size_t errsz)
{
    struct gw_config c;
    struct gw_store *st = NULL;
    *out = NULL;
    *status = 0;
    err[0] = '\0';
    if (load_config(o->config, &c) != 0)
        return 1;
    if (open_store(o->db, o->config, &st) != 0) {
        gw_config_cleanup(&c);
        return 1;
    }
    int rc = gw_admin_cli(st, &c, method, path, query, body, status, out, err, errsz);
    gw_store_free(st);
    gw_config_cleanup(&c);
    if (rc != 0 || *status >= 400) {
        json_decref(*out);
        *out = NULL;
        if (err[0] == '\0')
            snprintf(err, errsz, "%s", gw_strerror(rc));
        return 1;
    }
    return 0;
}

static void print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
    if (s != NULL)
        printf("%s\n", s);
    gw_free(s);
}

/* A comma-separated flag as a JSON array of strings. */
static json_t *csv_json(const char *csv)
{
    json_t *a = json_array();
    while (a != NULL && *csv != '\0') {
        size_t n = strcspn(csv, ",");
        if (n > 0)
            json_array_append_new(a, json_stringn(csv, n));
        csv += n + (csv[n] == ',');
    }
    return a;
}

static struct llmgw *serving;

static void *signal_thread(void *arg)
{
    sigset_t *set = arg;
    int sig = 0;
    pthread_setname_np(pthread_self(), "gw-signals");
    while (sigwait(set, &sig) == 0) {
        if (sig == SIGINT || sig == SIGTERM) {
            fprintf(stderr, "llmgw: %s received, finishing requests in flight\n",
                    sig == SIGINT ? "SIGINT" : "SIGTERM");
            llmgw_stop(serving);
            return NULL;
        }
    }
    return NULL;
}

static void print_first_start(const char *raw, const char *host, int port)
{
    printf("\nFirst start: created the superadmin API key. It is shown only this once:\n\n");
    printf("  %s\n\n", raw);
    printf("Try it (the model's provider needs its API key in the environment, e.g. "
           "OPENAI_API_KEY):\n\n");
    printf("  curl -s http://%s:%d/v1/models -H 'Authorization: Bearer %s'\n\n", host, port, raw);
    printf("  curl -s http://%s:%d/v1/chat/completions -H 'Authorization: Bearer %s' \\\n"
           "    -H 'Content-Type: application/json' \\\n"
           "    -d '{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'\n\n",
           host, port, raw);
    fflush(stdout);
}

static int cmd_serve(int argc, char **argv)
{
    static const int allowed[] = {OPT_CONFIG, OPT_LISTEN, OPT_DB, OPT_WORKERS, 0};
    struct opts o;
    struct llmgw_config *cfg = NULL;
    struct llmgw *gw = NULL;
    char err[256];

    if (parse_opts(argc, argv, allowed, &o) != 0)
        return 2;
    if (o.help) {
        printf("usage: llmgw serve [--config FILE] [--listen HOST:PORT] [--db URL] [--workers N]\n"
               "\n"
               "Run the gateway. Migrates the database at start. On the first start (no\n"
               "superadmin key yet) it creates one and prints it once, with a curl line.\n"
               "SIGINT/SIGTERM stop it: listeners close, requests in flight get the grace\n"
               "period (timeouts.shutdown_grace_ms).\n"
               "  --config FILE       YAML configuration (also LLMGW_CONFIG)\n"
               "  --listen HOST:PORT  default 127.0.0.1:8080 (also LLMGW_LISTEN)\n"
               "  --db URL            sqlite:PATH (default sqlite:./data/llmgw.db) (also LLMGW_DB)\n"
               "  --workers N         worker threads, default one per core (also LLMGW_WORKERS)\n");
        return 0;
    }
    if (o.nargs > 0)
        return die("serve takes no arguments ('%s')", o.args[0]);
    const char *flags[] = {"listen", o.listen, "db", o.db, "workers", o.workers};
    if (build_config(&cfg, o.config, flags, 6) != 0)
        return 1;

    /* Every connection is a descriptor: use all the process may have. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &nofile);
    }
    /* The allocator keeps what it has instead of handing the top of each thread's heap back
     * after every request and faulting it in again on the next: glibc trims an arena whose
     * free top passes 128 kB, and each trim is an madvise that interrupts every core running
     * a thread of ours to flush its TLB (SQLite takes 85 kB for a transaction's page cache).
     * Fixed thresholds also stop glibc raising them on its own. The embedding host's allocator
     * is the host's business, so this is the server's alone. (The Makefile's server links
     * mimalloc, which takes malloc over and ignores these: they hold for a build without it.) */
    (void)mallopt(M_TRIM_THRESHOLD, 64 << 20);
    (void)mallopt(M_MMAP_THRESHOLD, 4 << 20);
    /* Least privilege before any thread exists (each thread inherits it): no new privileges,
     * no capabilities, no core dumps; the seccomp allowlist follows once the gateway has
     * opened what it needs. */
    int keep_bind = 0;
    long need_files = 0;
    int harden = gw_harden_plan(cfg, &keep_bind, &need_files);
    if (harden && gw_harden_early(keep_bind, need_files, err, sizeof(err)) != 0) {
        llmgw_config_free(cfg);
        fprintf(stderr, "llmgw: cannot drop privileges: %s\n", err);
        return 1;
    }
    /* Block the stop signals in every thread; one thread waits for them. */
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = llmgw_new(cfg, &gw, err, sizeof(err));
    if (rc != 0) {
        llmgw_config_free(cfg);
        fprintf(stderr, "llmgw: cannot start: %s\n", err);
        return 1;
    }
    /* First start: a superadmin key, printed once. */
    const char *db = o.db ? o.db : getenv("LLMGW_DB");
    struct gw_store *st = NULL;
    if (open_store(db, o.config, &st) == 0) {
        char raw[GW_KEY_RAW_LEN + 1];
        int created = 0;
        if (bootstrap_superadmin(st, raw, sizeof(raw), &created) == 0 && created) {
            char host[128];
            gw_strlcpy(host, "127.0.0.1", sizeof(host));
            const char *l = o.listen ? o.listen : getenv("LLMGW_LISTEN");
            if (l != NULL) {
                const char *colon = strrchr(l, ':');
                if (colon != NULL && (size_t)(colon - l) < sizeof(host) && colon != l) {
                    memcpy(host, l, (size_t)(colon - l));
                    host[colon - l] = '\0';
                }
            }
            print_first_start(raw, host, llmgw_port(gw));
        }
        OPENSSL_cleanse(raw, sizeof(raw));
        gw_store_free(st);
    }
    llmgw_config_free(cfg);
    if (harden && gw_harden_late(err, sizeof(err)) != 0) {
        llmgw_free(gw);
        fprintf(stderr, "llmgw: cannot install the system call filter: %s\n", err);
        return 1;
    }
    if (harden)
        fprintf(stderr, "llmgw: hardened: no new privileges, no capabilities%s, no core dumps, "
                        "system calls filtered\n", keep_bind ? " but binding low ports" : "");
    serving = gw;
    pthread_t sig_thread;
    pthread_create(&sig_thread, NULL, signal_thread, &set);
    rc = llmgw_serve(gw);
    /* If serve ended on its own (error), release the signal thread. */
    pthread_cancel(sig_thread);
    pthread_join(sig_thread, NULL);
    llmgw_free(gw);
    if (rc != 0) {
        fprintf(stderr, "llmgw: serve failed: %s\n", llmgw_strerror(rc));
        return 1;
    }
    return 0;
}

static int cmd_migrate(int argc, char **argv)
{
    static const int allowed[] = {OPT_DB, OPT_CONFIG, 0};
    struct opts o;
    struct gw_store *st = NULL;
    int version = 0;

    if (parse_opts(argc, argv, allowed, &o) != 0)
        return 2;
    if (o.help) {
        printf("usage: llmgw migrate [--db URL] [--config FILE]\n\n"
               "Create or upgrade the database schema (serve does this at start too).\n");
        return 0;
    }
    if (open_store(o.db, o.config, &st) != 0)
        return 1;
    if (gw_store_schema_version(st, &version) != 0) {
        gw_store_free(st);
        return die("%s", "cannot read the schema version");
    }
    printf("schema version %d\n", version);
    gw_store_free(st);
    return 0;
}

static int admin_api(int argc, char **argv)
{
    static const int allowed[] = {OPT_DB, OPT_CONFIG, OPT_BODY, 0};
    struct opts o;
    char path[512];
    if (parse_opts(argc, argv, allowed, &o) != 0)
        return 2;
    if (o.help || o.nargs != 2) {
        printf("usage: llmgw admin api METHOD PATH[?QUERY] [--body JSON] [--db URL]\n");
        return o.help ? 0 : 2;
    }
    const char *q = strchr(o.args[1], '?');
    size_t n = q != NULL ? (size_t)(q - o.args[1]) : strlen(o.args[1]);
    if (n >= sizeof(path))
        return die("%s", "the path is too long");
    memcpy(path, o.args[1], n);
    path[n] = '\0';
    json_t *body = NULL;
    if (o.body != NULL && (body = gw_json_parse(o.body, strlen(o.body), NULL)) == NULL)
        return die("%s", "--body is not valid JSON");
    json_t *out = NULL;
    int status = 0;
    char err[256];
    int rc = admin_op(&o, o.args[0], path, q != NULL ? q + 1 : NULL, body, &out, &status, err,
                      sizeof(err));
    json_decref(body);
    if (rc == 0)
        print_json(out);
    else if (err[0] != '\0')
        fprintf(stderr, "llmgw: %s\n", err);
    json_decref(out);
    return rc;
}

static int cmd_admin(int argc, char **argv)
{
    static const int allowed[] = {OPT_DB, OPT_CONFIG, 0};
    struct opts o;
    struct gw_store *st = NULL;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage: llmgw admin bootstrap [--db URL]\n"
               "       llmgw admin routes\n"
               "       llmgw admin api METHOD PATH[?QUERY] [--body JSON] [--db URL]\n\n"
               "bootstrap: create the superadmin key if none exists and print it once, as the\n"
               "last line. routes: the admin API's routes (JSON). api: run one admin API\n"
               "operation (e.g. GET /admin/v1/keys?org=acme) on the store as the superadmin,\n"
               "through the same code and audit trail as the HTTP API; prints its JSON answer.\n");
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "routes") == 0) { /* the admin API's route table, as JSON */
        json_t *r = gw_admin_routes_json();
        print_json(r);
        json_decref(r);
        return r != NULL ? 0 : 1;
    }
    if (strcmp(argv[1], "api") == 0)
        return admin_api(argc - 1, argv + 1);
    if (strcmp(argv[1], "bootstrap") != 0)
        return die("unknown admin command '%s' (try llmgw admin --help)", argv[1]);
    if (parse_opts(argc - 1, argv + 1, allowed, &o) != 0)
        return 2;
    if (o.help) {
        printf("usage: llmgw admin bootstrap [--db URL] [--config FILE]\n\n"
               "Create the superadmin key if none exists; print it once, as the last line.\n");
        return 0;
    }
    if (open_store(o.db, o.config, &st) != 0)
        return 1;
    char raw[GW_KEY_RAW_LEN + 1];
    int created = 0;
    int rc = bootstrap_superadmin(st, raw, sizeof(raw), &created);
    gw_store_free(st);
    if (rc != 0)
        return die("cannot create the superadmin key: %s", gw_strerror(rc));
    if (!created) {
        fprintf(stderr, "llmgw: a superadmin key already exists; nothing created\n");
        return 1;
    }
    printf("superadmin key created; store it now, it is not shown again:\n%s\n", raw);
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

static int valid_slug(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

static int check_csv(const char *csv, const char *const *allowed_items, char *out, size_t outsz)
{
    char tmp[1024];
    if (gw_strlcpy(tmp, csv, sizeof(tmp)) != 0 || gw_strlcpy(out, csv, outsz) != 0)
        return -1;
    char *save = NULL;
    for (char *t = strtok_r(tmp, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        if (t[0] == '\0' || strlen(t) > 63)
            return -1;
        if (allowed_items != NULL) {
            int ok = 0;
            for (const char *const *a = allowed_items; *a != NULL; a++)
                ok |= strcmp(*a, t) == 0;
            if (!ok)
                return -1;
        }
        for (const char *c = t; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_' || *c == ':'))
                return -1;
    }
    return 0;
}

static const char *const provider_names[] = {"anthropic", "openai", "gemini", "xai",
                                              "perplexity", NULL};

/* Apply the policy flags given (allowlists and limits) onto providers/models/limits; flags not
 * given leave the value as it is. "" clears an allowlist (all allowed); 0 clears a limit. */
static int policy_flags(const struct opts *o, char *providers, size_t psz, char *models,
                        size_t msz, struct gw_limit_set *l)
{
    if (o->providers && check_csv(o->providers, provider_names, providers, psz))
        return die("invalid --providers '%s' (anthropic,openai,gemini,xai,perplexity)",
                   o->providers);
    if (o->models && check_csv(o->models, NULL, models, msz))
        return die("invalid --models '%s'", o->models);
    const struct {
        const char *v, *flag;
        int usd;
        int64_t *dst;
    } f[] = {
        {o->rph, "--rph", 0, &l->rph},
        {o->tph, "--tph", 0, &l->tph},
        {o->conc, "--max-concurrent", 0, &l->max_concurrent},
        {o->daily, "--daily-usd", 1, &l->daily_usd_micros},
        {o->monthly, "--monthly-usd", 1, &l->monthly_usd_micros},
        {o->maxreq, "--max-request-usd", 1, &l->max_request_usd_micros},
    };
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (f[i].v == NULL)
            continue;
        int64_t v = -1;
        int bad = f[i].usd ? gw_parse_micros(f[i].v, &v) != 0
                           : gw_parse_i64(f[i].v, &v) != 0 || v < 0;
        if (bad) {
            fprintf(stderr, "llmgw: invalid %s '%s': %s\n", f[i].flag, f[i].v,
                    f[i].usd ? "a USD amount like 25 or 2.50" : "a non-negative integer");
            return 1;
        }
        *f[i].dst = v;
    }
    return 0;
}

static const char *policy_usage =
    "  --providers p1,p2     allowlist of providers (\"\" = all)\n"
    "  --models m1,m2        allowlist of catalog model ids (\"\" = all)\n"
    "  --rph N               requests per hour (sliding window)\n"
    "  --tph N               tokens per hour, prompt + output (sliding window)\n"
    "  --max-concurrent N    requests in flight at once\n"
    "  --daily-usd X         USD budget per day (budgets.daily_reset_hour_utc)\n"
    "  --monthly-usd X       USD budget per month (budgets.monthly_reset_day)\n"
    "  --max-request-usd X   the most one request may cost in the worst case\n"
    "  0 removes a limit (on a key: back to its tier's default).\n";

static const char *conv_usage =
    "  --capture on|off      keep every prompt and answer as conversations (default on;\n"
    "                        off also refuses conversation_id)\n"
    "  --retention-days N    delete conversations untouched for N days (0 = keep)\n"
    "  --export-all on|off   admins' exports may include private conversations (default off)\n";

static int on_off(const char *v, const char *flag, int *out)
{
    if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0)
        *out = 1;
    else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0)
        *out = 0;
    else
        return fprintf(stderr, "llmgw: invalid %s '%s': on or off\n", flag, v), 1;
    return 0;
}

/* The org's conversation settings given as flags onto p. */
static int conv_flags(const struct opts *o, struct gw_conv_policy *p)
{
    if (o->capture && on_off(o->capture, "--capture", &p->capture) != 0)
        return 1;
    if (o->export_all && on_off(o->export_all, "--export-all", &p->export_all) != 0)
        return 1;
    if (o->retention) {
        int64_t v;
        if (gw_parse_i64(o->retention, &v) != 0 || v < 0 || v > 36500)
            return die("invalid --retention-days '%s': 0 to 36500", o->retention);
        p->retention_days = v;
    }
    return 0;
}

/* The policy flags given, as the admin API's JSON (allowed_providers, allowed_models and the
 * limits given), validated first. 0 with *body (new), or 1 having said why. */
static int policy_body(const struct opts *o, json_t **body)
{
    char providers[256] = "", models[1024] = "";
    struct gw_limit_set l;
    memset(&l, 0, sizeof(l));
    *body = json_object();
    if (*body == NULL)
        return die("%s", "out of memory");
    if (policy_flags(o, providers, sizeof(providers), models, sizeof(models), &l) != 0) {
        json_decref(*body);
        return 1;
    }
    if (o->providers)
        json_object_set_new(*body, "allowed_providers", csv_json(providers));
    if (o->models)
        json_object_set_new(*body, "allowed_models", csv_json(models));
    json_t *lim = json_object();
    const struct {
        const char *v, *name;
        int usd;
        int64_t val;
    } f[] = {
        {o->rph, "requests_per_hour", 0, l.rph},
        {o->tph, "tokens_per_hour", 0, l.tph},
        {o->conc, "max_concurrent", 0, l.max_concurrent},
        {o->daily, "daily_usd", 1, l.daily_usd_micros},
        {o->monthly, "monthly_usd", 1, l.monthly_usd_micros},
        {o->maxreq, "max_request_usd", 1, l.max_request_usd_micros},
    };
    for (size_t i = 0; lim != NULL && i < sizeof(f) / sizeof(f[0]); i++) {
        char usd[40];
        if (f[i].v == NULL)
            continue;
        snprintf(usd, sizeof(usd), "%lld.%06lld", (long long)(f[i].val / 1000000),
                 (long long)(f[i].val % 1000000));
        json_object_set_new(lim, f[i].name,
                            f[i].usd ? json_string(usd) : json_integer(f[i].val));
    }
    if (json_object_size(lim) > 0)
        json_object_set_new(*body, "limits", lim);
    else
        json_decref(lim);
    return 0;
}

/* The allowlists and limits of a key or org as the admin API answers them. */
static void print_policy(const json_t *k)
{
    json_t *l = json_object_get(k, "limits");
    char prov[256] = "", mod[1024] = "";
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(k, "allowed_providers"), i, v)
        snprintf(prov + strlen(prov), sizeof(prov) - strlen(prov), "%s%s", i ? "," : "",
                 json_string_value(v));
    json_array_foreach(json_object_get(k, "allowed_models"), i, v)
        snprintf(mod + strlen(mod), sizeof(mod) - strlen(mod), "%s%s", i ? "," : "",
                 json_string_value(v));
    printf("providers=%s\nmodels=%s\n", prov[0] ? prov : "(all)", mod[0] ? mod : "(all)");
    printf("limits requests_per_hour=%lld tokens_per_hour=%lld max_concurrent=%lld "
           "daily_usd=%.6f monthly_usd=%.6f max_request_usd=%.6f\n",
           (long long)json_integer_value(json_object_get(l, "requests_per_hour")),
           (long long)json_integer_value(json_object_get(l, "tokens_per_hour")),
           (long long)json_integer_value(json_object_get(l, "max_concurrent")),
           json_number_value(json_object_get(l, "daily_usd")),
           json_number_value(json_object_get(l, "monthly_usd")),
           json_number_value(json_object_get(l, "max_request_usd")));
}

static int key_path(char *out, size_t n, const char *id, const char *tail)
{
    if (strlen(id) > 60 || strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(id))
        return die("invalid key id '%s'", id);
    snprintf(out, n, "/admin/v1/keys/%s%s", id, tail);
    return 0;
}

static int cmd_orgs(int argc, char **argv)
{
    static const int allowed[] = {OPT_DB,  OPT_CONFIG, OPT_NAME,  OPT_PROVIDERS, OPT_MODELS,
                                  OPT_RPH, OPT_TPH,    OPT_CONC,  OPT_DAILY,     OPT_MONTHLY,
                                  OPT_MAXREQ, OPT_CAPTURE, OPT_RETENTION, OPT_EXPORT_ALL, 0};
    struct opts o;
    const char *sub = argc >= 2 ? argv[1] : "";

    if (argc < 2 || strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        printf("usage: llmgw orgs create SLUG [--name NAME] [policy options] [--db URL]\n"
               "       llmgw orgs update SLUG [policy options] [--db URL]\n"
               "       llmgw orgs show SLUG [--db URL]\n\n"
               "Organizations and their policy. SLUG: lower-case letters, digits, '-', '_'.\n"
               "The effective policy of a key is its org's allowlists intersected with its own;\n"
               "org limits count all of the org's keys together.\n%s%s", policy_usage,
               conv_usage);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(sub, "create") != 0 && strcmp(sub, "update") != 0 && strcmp(sub, "show") != 0)
        return die("unknown orgs command '%s' (try llmgw orgs --help)", sub);
    if (parse_opts(argc - 1, argv + 1, allowed, &o) != 0)
        return 2;
    if (o.help) {
        printf("usage: llmgw orgs %s SLUG [options] [--db URL]\n%s%s", sub, policy_usage,
               conv_usage);
        return 0;
    }
    if (o.nargs != 1)
        return die("orgs %s takes exactly one SLUG", sub);
    if (!valid_slug(o.args[0]))
        return die("invalid slug '%s': use 1-63 of a-z, 0-9, '-', '_'", o.args[0]);
    /* through the admin API's code: the same checks, and its audit trail */
    char path[128], err[256];
    json_t *body = NULL, *out = NULL;
    int status, rc;
    snprintf(path, sizeof(path), "/admin/v1/orgs/%s", o.args[0]);
    if (strcmp(sub, "show") == 0) {
        rc = admin_op(&o, "GET", path, NULL, NULL, &out, &status, err, sizeof(err));
    } else {
        struct gw_conv_policy cp = {.capture = 1};
        if (policy_body(&o, &body) != 0)
            return 1;
        if (conv_flags(&o, &cp) != 0) {
            json_decref(body);
            return 1;
        }
        json_t *capture = json_object();
        if (o.capture)
            json_object_set_new(capture, "enabled", json_boolean(cp.capture));
        if (o.retention)
            json_object_set_new(capture, "retention_days", json_integer(cp.retention_days));
        if (o.export_all)
            json_object_set_new(capture, "export_all", json_boolean(cp.export_all));
        json_object_set_new(body, "capture", capture);
        if (strcmp(sub, "create") == 0) {
            json_object_set_new(body, "slug", json_string(o.args[0]));
            json_object_set_new(body, "name", json_string(o.name ? o.name : o.args[0]));
            rc = admin_op(&o, "POST", "/admin/v1/orgs", NULL, body, &out, &status, err,
                          sizeof(err));
        } else {
            rc = admin_op(&o, "PATCH", path, NULL, body, &out, &status, err, sizeof(err));
        }
        json_decref(body);
    }
    if (rc != 0) {
        if (status == 409)
            return die("an organization '%s' already exists", o.args[0]);
        if (status == 404)
            return die("no organization '%s'", o.args[0]);
        return die(strcmp(sub, "create") == 0 ? "cannot create the organization: %s"
                                              : "cannot read or change the organization: %s",
                   err);
    }
    if (strcmp(sub, "create") == 0) {
        printf("created organization %s\n", o.args[0]);
        json_decref(out);
        return 0;
    }
    json_t *cap = json_object_get(out, "capture");
    printf("organization %s (%s)\n", gw_json_str(out, "slug"), gw_json_str(out, "name"));
    print_policy(out);
    printf("conversations capture=%s retention_days=%lld export_all=%s\n",
           json_is_true(json_object_get(cap, "enabled")) ? "on" : "off",
           (long long)json_integer_value(json_object_get(cap, "retention_days")),
           json_is_true(json_object_get(cap, "export_all")) ? "on" : "off");
    json_decref(out);
    return 0;
}

/* Is tier one of the configured tiers (free, pro, enterprise by default)? */
static int tier_known(const char *tier, const char *config_path)
{
    struct gw_config c;
    struct gw_errbuf eb = {{0}};
    if (gw_config_init(&c) != 0)
        return 0;
    if (config_path == NULL)
        config_path = getenv("LLMGW_CONFIG");
    if (config_path != NULL && config_path[0] != '\0' &&
        gw_config_load_file(&c, config_path, &eb) != 0) {
        fprintf(stderr, "llmgw: config %s: %s\n", config_path, eb.msg);
        gw_config_cleanup(&c);
        return 0;
    }
    int ok = gw_config_tier(&c, tier) != NULL;
    gw_config_cleanup(&c);
    return ok;
}

static int keys_create(int argc, char **argv)
{
    static const int allowed[] = {OPT_DB,     OPT_CONFIG,  OPT_ORG, OPT_NAME,  OPT_ROLE,
                                  OPT_TIER,   OPT_PROVIDERS, OPT_MODELS, OPT_RPH, OPT_DAILY,
                                  OPT_MONTHLY, OPT_TPH,    OPT_CONC, OPT_MAXREQ, 0};
    struct opts o;
    json_t *body = NULL, *out = NULL;
    char err[256];
    int status;

    if (parse_opts(argc, argv, allowed, &o) != 0)
        return 2;
    if (o.help) {
        printf("usage: llmgw keys create --org SLUG [--name N] [--role member|org_admin]\n"
               "       [--tier free|pro|enterprise] [policy options] [--db URL]\n\n"
               "Create an API key. The raw key is printed once, as the last line of stdout.\n"
               "Its limits default to its tier's (tiers.* in the config); options override them.\n"
               "%s", policy_usage);
        return 0;
    }
    if (o.org == NULL)
        return die("%s", "--org SLUG is required");
    const char *role = o.role ? o.role : "member";
    if (strcmp(role, "member") != 0 && strcmp(role, "org_admin") != 0)
        return die("invalid --role '%s': member or org_admin", role);
    const char *tier = o.tier ? o.tier : "free";
    if (strlen(tier) >= 16 || !tier_known(tier, o.config))
        return die("unknown --tier '%s' (free, pro, enterprise, or one of the config's tiers)",
                   tier);
    if (policy_body(&o, &body) != 0)
        return 1;
    json_object_set_new(body, "org", json_string(o.org));
    json_object_set_new(body, "name", json_string(o.name ? o.name : ""));
    json_object_set_new(body, "role", json_string(role));
    json_object_set_new(body, "tier", json_string(tier));
    int rc = admin_op(&o, "POST", "/admin/v1/keys", NULL, body, &out, &status, err, sizeof(err));
    json_decref(body);
    if (rc != 0)
        return status == 404 ? die("no organization '%s'", o.org)
                             : die("cannot create the key: %s", err);
    const char *raw = gw_json_str(out, "key");
    printf("created key %s (org %s, role %s, tier %s); the raw key is shown only once:\n%s\n",
           gw_json_str(out, "id"), o.org, role, tier, raw ? raw : "");
    json_decref(out); /* the raw key's only copy goes with it */
    return 0;
}

static int print_key(void *arg, const struct gw_key_rec *k)
{
    char when[32];
    time_t t = (time_t)(k->created_ms / 1000);
    struct tm tm;
    (void)arg;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%-22s %-12s %-10s %-10s %-20s %-8s %s\n", k->key_id, k->prefix, k->role, k->tier,
           when, k->revoked ? "revoked" : "active", k->name);
    return 0;
}

static int keys_list(int argc, char **argv)
{
    static const int allowed[] = {OPT_DB, OPT_CONFIG, OPT_ORG, 0};
    struct opts o;
    struct gw_store *st = NULL;
    struct gw_org org;

    if (parse_opts(argc, argv, allowed, &o) != 0)
        return 2;
    if (o.help) {
        printf("usage: llmgw keys list --org SLUG [--db URL]\n\n"
               "List an organization's keys (never the raw keys).\n");
        return 0;
    }
    if (o.org == NULL)
        return die("%s", "--org SLUG is required");
    if (open_store(o.db, o.config, &st) != 0)
        return 1;
    int rc = gw_store_org_get(st, o.org, &org);
    if (rc == 0) {
        printf("%-22s %-12s %-10s %-10s %-20s %-8s %s\n", "ID", "PREFIX", "ROLE", "TIER",
               "CREATED", "STATUS", "NAME");
        rc = gw_store_key_list(st, org.id, print_key, NULL);
    }
    gw_store_free(st);
    if (rc == GW_ENOTFOUND)
        return die("no organization '%s'", o.org);
    if (rc != 0)
        return die("cannot list keys: %s", gw_strerror(rc));
    return 0;
}

static int keys_revoke(int argc, char **argv)
{
    static const int allowed[] = {OPT_DB, OPT_CONFIG, 0};
    struct opts o;
    char path[128], err[256];
    json_t *out = NULL;
    int status;

    if (parse_opts(argc, argv, allowed, &o) != 0)
        return 2;
    if (o.help) {
        printf("usage: llmgw keys revoke KEY_ID [--db URL]\n\n"
               "Revoke a key by its id (see keys list). Takes effect on the next request.\n");
        return 0;
    }
    if (o.nargs != 1)
        return die("%s", "keys revoke takes exactly one KEY_ID");
    if (key_path(path, sizeof(path), o.args[0], "") != 0)
        return 1;
    int rc = admin_op(&o, "DELETE", path, NULL, NULL, &out, &status, err, sizeof(err));
    json_decref(out);
    if (rc != 0)
        return status == 404 ? die("no key '%s'", o.args[0]) : die("cannot revoke: %s", err);
    printf("revoked %s\n", o.args[0]);
    return 0;
}

static int keys_rotate(int argc, char **argv)
{
    static const int allowed[] = {OPT_DB, OPT_CONFIG, OPT_GRACE, 0};
    struct opts o;
    char path[128], err[256];
    json_t *out = NULL;
    int status;

    if (parse_opts(argc, argv, allowed, &o) != 0)
        return 2;
    if (o.help) {
        printf("usage: llmgw keys rotate KEY_ID [--grace-seconds N] [--db URL]\n\n"
               "Give a key a new secret, printed once as the last line. The old secret keeps\n"
               "working for N seconds (default 3600, at most 2592000; 0: not at all) so that\n"
               "callers can move over. The key keeps its id, policy, usage and budgets.\n");
        return 0;
    }
    if (o.nargs != 1)
        return die("%s", "keys rotate takes exactly one KEY_ID");
    if (key_path(path, sizeof(path), o.args[0], "/rotate") != 0)
        return 1;
    json_t *body = json_object();
    if (o.grace != NULL) {
        int64_t g;
        if (gw_parse_i64(o.grace, &g) != 0 || g < 0 || g > 2592000) {
            json_decref(body);
            return die("invalid --grace-seconds '%s': 0 to 2592000", o.grace);
        }
        json_object_set_new(body, "grace_seconds", json_integer(g));
    }
    int rc = admin_op(&o, "POST", path, NULL, body, &out, &status, err, sizeof(err));
    json_decref(body);
    if (rc != 0)
        return status == 404 ? die("no key '%s'", o.args[0]) : die("cannot rotate: %s", err);
    json_t *exp = json_object_get(out, "previous_key_expires_at");
    printf("rotated key %s; the old secret %s; the new one is shown only once:\n%s\n",
           o.args[0], json_is_integer(exp) ? "works until the grace period ends" : "no longer works",
           gw_json_str(out, "key") ? gw_json_str(out, "key") : "");
    json_decref(out);
    return 0;
}

static int keys_update(int argc, char **argv)
{
    static const int allowed[] = {OPT_DB,  OPT_CONFIG, OPT_TIER, OPT_PROVIDERS, OPT_MODELS,
                                  OPT_RPH, OPT_TPH,    OPT_CONC, OPT_DAILY,     OPT_MONTHLY,
                                  OPT_MAXREQ, 0};
    struct opts o;
    char path[128], err[256];
    json_t *body = NULL, *out = NULL;
    int status;

    if (parse_opts(argc, argv, allowed, &o) != 0)
        return 2;
    if (o.help) {
        printf("usage: llmgw keys update KEY_ID [--tier T] [policy options] [--db URL]\n\n"
               "Change a key's tier, allowlists or limits; options not given stay as they are.\n"
               "Takes effect on the key's next request, on every worker.\n%s", policy_usage);
        return 0;
    }
    if (o.nargs != 1)
        return die("%s", "keys update takes exactly one KEY_ID");
    if (o.tier && (strlen(o.tier) >= 16 || !tier_known(o.tier, o.config)))
        return die("unknown --tier '%s'", o.tier);
    if (key_path(path, sizeof(path), o.args[0], "") != 0 || policy_body(&o, &body) != 0)
        return 1;
    if (o.tier)
        json_object_set_new(body, "tier", json_string(o.tier));
    int rc = admin_op(&o, "PATCH", path, NULL, body, &out, &status, err, sizeof(err));
    json_decref(body);
    if (rc != 0)
        return status == 404 ? die("no key '%s'", o.args[0])
                             : die("cannot update the key: %s", err);
    printf("key %s (tier %s)\n", gw_json_str(out, "id"), gw_json_str(out, "tier"));
    print_policy(out);
    json_decref(out);
    return 0;
}

/* A time for --from/--to: unix milliseconds, or YYYY-MM-DD[THH:MM[:SS]][Z] (UTC). */
static int parse_when(const char *s, int64_t *out)
{
    if (gw_parse_i64(s, out) == 0 && *out >= 0)
        return 0;
    return gw_parse_utc_ms(s, out) == 0 ? 0 : -1;
}

static int print_row(void *arg, const struct gw_usage_row *r)
{
    const char *format = arg;
    if (strcmp(format, "jsonl") == 0) {
        printf("{\"request_id\":\"%s\",\"parent_request_id\":\"%s\",\"kind\":\"%s\","
               "\"org_id\":%lld,\"key_row_id\":%lld,\"provider\":\"%s\",\"model\":\"%s\","
               "\"state\":\"%s\",\"status\":%d,\"tokens_in\":%lld,\"tokens_out\":%lld,"
               "\"reserved_micros\":%lld,\"cost_micros\":%lld,\"created_ms\":%lld}\n",
               r->request_id, r->parent_request_id, r->kind, (long long)r->org_id,
               (long long)r->key_row_id, r->provider, r->model, r->state, r->status,
               (long long)r->tokens_in, (long long)r->tokens_out, (long long)r->reserved_micros,
               (long long)r->cost_micros, (long long)r->created_ms);
    } else {
        printf("%-40s %-8s %-10s %-24s %-9s %4d %8lld %8lld %12lld\n", r->request_id, r->kind,
               r->provider, r->model, r->state, r->status, (long long)r->tokens_in,
               (long long)r->tokens_out, (long long)r->cost_micros);
    }
    return 0;
}

/* llmgw app-clients ...: the admin API's app client operations from the command line. */
static int cmd_app_clients(int argc, char **argv)
{
    static const int allowed[] = {OPT_DB, OPT_CONFIG, OPT_ORG, OPT_NAME, OPT_ORIGINS,
                                  OPT_PROVIDERS, OPT_MODELS, 0};
    struct opts o;
    const char *sub = argc >= 2 ? argv[1] : "";
    char path[128], query[96] = "", err[256];
    json_t *body = NULL, *out = NULL;
    const char *method = "GET";
    int status;

    if (argc < 2 || strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        printf("usage: llmgw app-clients list [--org SLUG]\n"
               "       llmgw app-clients create --org SLUG --name NAME --origins O1,O2\n"
               "                                [--providers p1,p2] [--models m1,m2]\n"
               "       llmgw app-clients approve CLIENT_ID\n"
               "       llmgw app-clients revoke CLIENT_ID\n\n"
               "Browser app clients (subject sessions), through the admin API's code and audit\n"
               "trail; answers are printed as JSON. Origins: scheme://host[:port].\n");
        return argc < 2 ? 2 : 0;
    }
    if (parse_opts(argc - 1, argv + 1, allowed, &o) != 0)
        return 2;
    if (strcmp(sub, "list") == 0 && o.nargs == 0) {
        snprintf(path, sizeof(path), "/admin/v1/app-clients");
        if (o.org != NULL && valid_slug(o.org))
            snprintf(query, sizeof(query), "org=%s&limit=200", o.org);
    } else if (strcmp(sub, "create") == 0 && o.nargs == 0) {
        if (o.org == NULL || o.name == NULL || o.origins == NULL)
            return die("%s", "app-clients create takes --org, --name and --origins");
        method = "POST";
        snprintf(path, sizeof(path), "/admin/v1/app-clients");
        body = json_pack("{s:s,s:s,s:o}", "org", o.org, "name", o.name, "origins",
                         csv_json(o.origins));
        if (body != NULL && o.providers)
            json_object_set_new(body, "allowed_providers", csv_json(o.providers));
        if (body != NULL && o.models)
            json_object_set_new(body, "allowed_models", csv_json(o.models));
    } else if ((strcmp(sub, "approve") == 0 || strcmp(sub, "revoke") == 0) && o.nargs == 1) {
        const char *id = o.args[0];
        if (strlen(id) != 27 || strncmp(id, "ac_", 3) != 0)
            return die("invalid app client id '%s'", id);
        method = strcmp(sub, "approve") == 0 ? "POST" : "DELETE";
        snprintf(path, sizeof(path), "/admin/v1/app-clients/%s%s", id,
                 strcmp(sub, "approve") == 0 ? "/approve" : "");
    } else {
        return die("unknown or incomplete app-clients command '%s' (try llmgw app-clients "
                   "--help)", sub);
    }
    int rc = admin_op(&o, method, path, query, body, &out, &status, err, sizeof(err));
    json_decref(body);
    if (rc != 0)
        return die("%s", err[0] ? err : "the operation failed");
    print_json(out);
    json_decref(out);
    return 0;
}

/* llmgw usage export: the admin API's export from the command line (same filter, audit). */
static int usage_export(int argc, char **argv)
{
    static const int allowed[] = {OPT_DB, OPT_CONFIG, OPT_ORG, OPT_KEY, OPT_MODEL, OPT_FROM,
                                  OPT_TO, OPT_FORMAT, 0};
    struct opts o;
    char query[512], err[256] = "";
    struct gw_config c;
    struct gw_store *st = NULL;

    if (parse_opts(argc, argv, allowed, &o) != 0)
        return 2;
    if (o.help) {
        printf("usage: llmgw usage export [--format csv|jsonl] [--org SLUG] [--key KEY_ID]\n"
               "       [--model ID] [--from T] [--to T] [--db URL]\n\n"
               "Write usage rows (oldest first) to stdout as CSV (with a header) or JSONL,\n"
               "exactly as GET /admin/v1/usage/export answers them; T: unix seconds or\n"
               "YYYY-MM-DD[THH:MM[:SS]] (UTC), --to exclusive; by default the last 30 days.\n"
               "The export is written to the audit trail.\n");
        return 0;
    }
    const char *vals[] = {o.format ? o.format : "csv", o.org, o.key, o.model, o.from, o.to};
    const char *names[] = {"format", "org", "key", "model", "from", "to"};
    size_t len = 0;
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        if (vals[i] == NULL)
            continue;
        char *enc = evhttp_encode_uri(vals[i]);
        int n = enc != NULL ? snprintf(query + len, sizeof(query) - len, "%s%s=%s",
                                       len ? "&" : "", names[i], enc)
                            : -1;
        free(enc);
        if (n < 0 || (size_t)n >= sizeof(query) - len)
            return die("%s", "the options are too long");
        len += (size_t)n;
    }
    if (load_config(o.config, &c) != 0)
        return 1;
    if (open_store(o.db, o.config, &st) != 0) {
        gw_config_cleanup(&c);
        return 1;
    }
    int rc = gw_usage_export_cli(st, &c, query, stdout, err, sizeof(err));
    gw_store_free(st);
    gw_config_cleanup(&c);
    if (fflush(stdout) != 0 && rc == 0)
        rc = GW_EIO;
    return rc != 0 ? die("%s", err[0] ? err : gw_strerror(rc)) : 0;
}

static int cmd_usage(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "export") == 0)
        return usage_export(argc - 1, argv + 1);
    static const int allowed[] = {OPT_DB,   OPT_CONFIG, OPT_ORG, OPT_KEY,    OPT_MODEL,
                                  OPT_FROM, OPT_TO,     OPT_FORMAT, 0};
    struct opts o;
    struct gw_store *st = NULL;
    struct gw_usage_filter f;
    struct gw_usage_totals t;

    if (parse_opts(argc, argv, allowed, &o) != 0)
        return 2;
    if (o.help) {
        printf("usage: llmgw usage [--org SLUG] [--key KEY_ID] [--model ID] [--from T] [--to T]\n"
               "       [--format table|jsonl|totals] [--db URL]\n\n"
               "List usage rows (oldest first) and, last, their totals. T: unix ms or\n"
               "YYYY-MM-DD[THH:MM[:SS]] (UTC); --to is exclusive. The totals line is\n"
               "'totals rows=N requests=N tokens_in=N tokens_out=N cost_micros=N'; in-flight\n"
               "rows count at their reservation.\n");
        return 0;
    }
    const char *format = o.format ? o.format : "table";
    if (strcmp(format, "table") != 0 && strcmp(format, "jsonl") != 0 &&
        strcmp(format, "totals") != 0)
        return die("invalid --format '%s': table, jsonl or totals", format);
    memset(&f, 0, sizeof(f));
    if (o.from && parse_when(o.from, &f.from_ms) != 0)
        return die("invalid --from '%s'", o.from);
    if (o.to && parse_when(o.to, &f.to_ms) != 0)
        return die("invalid --to '%s'", o.to);
    if (o.model && gw_strlcpy(f.model, o.model, sizeof(f.model)) != 0)
        return die("invalid --model '%s'", o.model);
    if (open_store(o.db, o.config, &st) != 0)
        return 1;
    int rc = 0;
    if (o.org) {
        struct gw_org org;
        if ((rc = gw_store_org_get(st, o.org, &org)) == 0)
            f.org_id = org.id;
        else if (rc == GW_ENOTFOUND) {
            gw_store_free(st);
            return die("no organization '%s'", o.org);
        }
    }
    if (rc == 0 && o.key) {
        struct gw_key_rec k;
        if ((rc = gw_store_key_get(st, o.key, &k)) == 0)
            f.key_row_id = k.id;
        else if (rc == GW_ENOTFOUND) {
            gw_store_free(st);
            return die("no key '%s'", o.key);
        }
    }
    if (rc == 0 && strcmp(format, "table") == 0)
        printf("%-40s %-8s %-10s %-24s %-9s %4s %8s %8s %12s\n", "REQUEST", "KIND", "PROVIDER",
               "MODEL", "STATE", "HTTP", "IN", "OUT", "COST_MICROS");
    if (rc == 0)
        rc = gw_store_usage_list(st, &f, strcmp(format, "totals") == 0 ? NULL : print_row,
                                 (void *)format, &t);
    gw_store_free(st);
    if (rc != 0)
        return die("cannot read usage: %s", gw_strerror(rc));
    printf("totals rows=%lld requests=%lld tokens_in=%lld tokens_out=%lld cost_micros=%lld\n",
           (long long)t.rows, (long long)t.requests, (long long)t.tokens_in,
           (long long)t.tokens_out, (long long)t.cost_micros);
    return 0;
}

static int cmd_keys(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage: llmgw keys create --org SLUG [options]   (llmgw keys create --help)\n"
               "       llmgw keys update KEY_ID [options]       (llmgw keys update --help)\n"
               "       llmgw keys list --org SLUG\n"
               "       llmgw keys revoke KEY_ID\n"
               "       llmgw keys rotate KEY_ID [--grace-seconds N]\n"
               "Changes go through the admin API's code and are written to its audit trail.\n");
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "create") == 0)
        return keys_create(argc - 1, argv + 1);
    if (strcmp(argv[1], "list") == 0)
        return keys_list(argc - 1, argv + 1);
    if (strcmp(argv[1], "update") == 0)
        return keys_update(argc - 1, argv + 1);
    if (strcmp(argv[1], "revoke") == 0)
        return keys_revoke(argc - 1, argv + 1);
    if (strcmp(argv[1], "rotate") == 0)
        return keys_rotate(argc - 1, argv + 1);
    return die("unknown keys command '%s' (try llmgw keys --help)", argv[1]);
}

/* llmgw healthcheck: for container health checks without a shell — GET the URL, exit 0 on 200. */
static size_t discard(char *p, size_t sz, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return sz * n;
}

static int cmd_healthcheck(int argc, char **argv)
{
    const char *url = "http://127.0.0.1:8080/healthz";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: llmgw healthcheck [--url URL]\n\n"
                   "GET URL (default %s); exit 0 when it answers 200 within 3 s.\n", url);
            return 0;
        }
        if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            url = argv[++i];
        else
            return die("unknown option '%s' (try llmgw healthcheck --help)", argv[i]);
    }
    CURL *c = curl_easy_init();
    long status = 0;
    if (c == NULL)
        return die("%s", "out of memory");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 3000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK)
        return die("health check failed: %s", curl_easy_strerror(rc));
    if (status != 200) {
        fprintf(stderr, "llmgw: health check answered %ld\n", status);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    setup_logging(argc >= 2 && strcmp(argv[1], "serve") == 0);
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("llmgw %s\n", LLMGW_VERSION);
        return 0;
    }
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } commands[] = {
        {"serve", cmd_serve}, {"migrate", cmd_migrate}, {"admin", cmd_admin},
        {"orgs", cmd_orgs},   {"keys", cmd_keys},       {"usage", cmd_usage},
        {"app-clients", cmd_app_clients}, {"healthcheck", cmd_healthcheck},
    };
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "llmgw: unknown command '%s'\n\n%s", cmd, usage_main);
    return 2;
}
