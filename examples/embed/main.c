/*
 * examples/embed — the gateway inside a program: no server, one streamed chat request through
 * the same pipeline as POST /v1/chat/completions (the caller's API key, its org's policy and
 * limits, routing, cost, the usage row in the store), printed as it arrives, then its usage
 * and cost.
 *
 *   usage: embed DB GATEWAY_KEY [PROMPT]
 *     DB            the gateway's store, e.g. sqlite:./data/llmgw.db (made with `llmgw migrate`;
 *                   GATEWAY_KEY from `llmgw keys create --org ...`)
 *   environment (read here, by the program: the library never reads it):
 *     OPENAI_API_KEY   the provider's key (required)
 *     OPENAI_BASE_URL  the provider's base URL (default: OpenAI's)
 *     LLMGW_CATALOG_DIR  the folder with models.yaml and routing.yaml
 *                      (`pkg-config --variable=catalogdir llmgw`; default ./catalog)
 *     MODEL            default gpt-4o
 *
 * The gateway runs on a thread of its own (llmgw_start); this thread waits in
 * llmgw_chat_sync while on_chunk runs on the gateway's thread for each streamed chunk.
 */
#include <jansson.h>
#include <llmgw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What on_chunk saw; read by main after llmgw_chat_sync returned (which orders the accesses). */
struct answer {
    long long prompt_tokens, completion_tokens;
    double cost_usd;
    int have_usage;
    char error[256];
};

/* One chunk of the stream: a chat.completion.chunk, or an error object. */
static void on_chunk(void *arg, const char *data, size_t len)
{
    struct answer *a = arg;
    json_t *chunk = json_loadb(data, len, 0, NULL);
    json_t *choices = json_object_get(chunk, "choices");
    json_t *usage = json_object_get(chunk, "usage");
    json_t *error = json_object_get(chunk, "error");

    const char *text =
        json_string_value(json_object_get(json_object_get(json_array_get(choices, 0), "delta"),
                                          "content"));
    if (text != NULL) {
        fputs(text, stdout);
        fflush(stdout);
    }
    if (json_is_object(usage)) { /* the last chunk (stream_options.include_usage) */
        a->prompt_tokens = json_integer_value(json_object_get(usage, "prompt_tokens"));
        a->completion_tokens = json_integer_value(json_object_get(usage, "completion_tokens"));
        a->cost_usd = json_number_value(json_object_get(usage, "cost_usd"));
        a->have_usage = 1;
    }
    if (json_is_object(error)) { /* a failure after the stream began */
        const char *msg = json_string_value(json_object_get(error, "message"));
        snprintf(a->error, sizeof(a->error), "%s", msg ? msg : "error");
    }
    json_decref(chunk);
}

/* The library's log lines: it never writes to stderr itself, the program decides. */
static void on_log(void *arg, int level, const char *line)
{
    (void)arg;
    (void)level;
    fprintf(stderr, "llmgw: %s\n", line);
}

static int set(struct llmgw_config *cfg, const char *name, const char *value)
{
    char err[256];
    if (llmgw_config_set(cfg, name, value, err, sizeof(err)) != 0) {
        fprintf(stderr, "config %s: %s\n", name, err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *provider_key = getenv("OPENAI_API_KEY");
    const char *base_url = getenv("OPENAI_BASE_URL");
    const char *catalog_dir = getenv("LLMGW_CATALOG_DIR");
    const char *model = getenv("MODEL") ? getenv("MODEL") : "gpt-4o";
    if (argc < 3 || argc > 4 || provider_key == NULL) {
        fprintf(stderr, "usage: OPENAI_API_KEY=... embed DB GATEWAY_KEY [PROMPT]\n");
        return 2;
    }
    const char *prompt = argc == 4 ? argv[3] : "Say hello.";

    llmgw_set_log_handler(on_log, NULL, LLMGW_LOG_WARN);

    /* The configuration: no listener, this store, one provider. */
    struct llmgw_config *cfg = NULL;
    struct llmgw *gw = NULL;
    char err[256], path[4096];
    int ok = llmgw_config_new(&cfg) == 0 && set(cfg, "listen", "none") == 0 &&
             set(cfg, "db", argv[1]) == 0 &&
             set(cfg, "providers.openai.api_key", provider_key) == 0 &&
             (base_url == NULL || set(cfg, "providers.openai.base_url", base_url) == 0);
    if (ok && catalog_dir != NULL) {
        snprintf(path, sizeof(path), "%s/models.yaml", catalog_dir);
        ok = set(cfg, "catalog", path) == 0;
        snprintf(path, sizeof(path), "%s/routing.yaml", catalog_dir);
        ok = ok && set(cfg, "routing", path) == 0;
    }
    if (ok && llmgw_new(cfg, &gw, err, sizeof(err)) != 0) {
        fprintf(stderr, "llmgw_new: %s\n", err);
        ok = 0;
    }
    llmgw_config_free(cfg); /* llmgw_new copied it */
    if (ok && llmgw_start(gw) != 0) /* the gateway's own thread and loop */
        ok = 0;

    /* The request: the OpenAI chat-completions body, streamed, with the usage chunk last. */
    int status = 0;
    struct answer a = {0};
    if (ok) {
        json_t *req = json_pack("{s:s, s:b, s:{s:b}, s:[{s:s, s:s}]}", "model", model, "stream",
                                1, "stream_options", "include_usage", 1, "messages", "role",
                                "user", "content", prompt);
        char *json = json_dumps(req, JSON_COMPACT);
        struct llmgw_chat_opts o = {.api_key = argv[2], .on_chunk = on_chunk, .arg = &a};
        char *body = NULL; /* stays NULL for a stream */
        size_t len = 0;
        int rc = llmgw_chat_sync(gw, json, strlen(json), &o, &status, &body, &len);
        if (rc != 0) {
            fprintf(stderr, "llmgw_chat_sync: %s\n", llmgw_strerror(rc));
            ok = 0;
        } else if (status != 200) { /* refused before the stream began: an error body */
            fprintf(stderr, "status %d: %.*s", status, (int)len, body ? body : "");
            ok = 0;
        }
        llmgw_buf_free(body);
        free(json);
        json_decref(req);
    }
    if (ok) {
        printf("\n");
        if (a.error[0] != '\0')
            fprintf(stderr, "stream failed: %s\n", a.error);
        if (a.have_usage)
            printf("usage: prompt_tokens=%lld completion_tokens=%lld cost_usd=%.6f\n",
                   a.prompt_tokens, a.completion_tokens, a.cost_usd);
        ok = a.error[0] == '\0' && a.have_usage;
    }

    llmgw_free(gw); /* stops and joins its thread */
    return ok ? 0 : 1;
}
