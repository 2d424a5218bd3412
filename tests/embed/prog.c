/*
 * tests/embed/prog — drives two gateways in one process through the in-process API, for
 * tests/e2e/embed.test.js. Usage: prog FAKE_URL DB1 KEY1 DB2 KEY2
 *   gw1: its own thread (llmgw_start), a plain request with llmgw_chat_sync;
 *   gw2: attached to this program's event_base, a streamed request with llmgw_chat, a
 *        cancelled one, and KEY1 (gw1's store only) refused;
 * prints one JSON object per line for the test to check.
 */
#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmgw.h"

static int make(const char *fake, const char *db, struct llmgw **out)
{
    struct llmgw_config *cfg;
    char err[256], url[512];
    int rc = llmgw_config_new(&cfg);
    snprintf(url, sizeof(url), "%s/openai", fake);
    if (rc == 0)
        rc = llmgw_config_set(cfg, "listen", "none", err, sizeof(err));
    if (rc == 0)
        rc = llmgw_config_set(cfg, "db", db, err, sizeof(err));
    if (rc == 0)
        rc = llmgw_config_set(cfg, "providers.openai.base_url", url, err, sizeof(err));
    if (rc == 0)
        rc = llmgw_config_set(cfg, "providers.openai.api_key", "fake-openai-key", err, sizeof(err));
    if (rc == 0)
        rc = llmgw_new(cfg, out, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "gateway: %s\n", err);
    llmgw_config_free(cfg);
    return rc;
}

static void print_json_str(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

struct stream_state {
    struct event_base *base;
    int chunks;
    int pending;
    char *all;
    size_t all_len;
    struct llmgw_call *to_cancel;
};

static void on_chunk(void *arg, const char *data, size_t len)
{
    struct stream_state *s = arg;
    s->chunks++;
    s->all = realloc(s->all, s->all_len + len + 1);
    memcpy(s->all + s->all_len, data, len);
    s->all_len += len;
    s->all[s->all_len++] = '\n';
}

static void on_done(void *arg, const struct llmgw_result *r, const char *what)
{
    struct stream_state *s = arg;
    printf("{\"what\":\"%s\",\"status\":%d,\"request_id\":\"%s\",\"chunks\":%d,\"body\":", what,
           r->status, r->request_id, s->chunks);
    if (r->body != NULL)
        print_json_str(r->body, r->body_len);
    else
        print_json_str(s->all ? s->all : "", s->all ? s->all_len : 0);
    printf(",\"headers\":");
    print_json_str(r->headers, strlen(r->headers));
    printf("}\n");
    fflush(stdout);
    free(s->all);
    s->all = NULL;
    s->all_len = 0;
    s->chunks = 0;
    if (--s->pending == 0)
        event_base_loopbreak(s->base);
}

static void done_stream(void *arg, const struct llmgw_result *r) { on_done(arg, r, "stream"); }
static void done_cross(void *arg, const struct llmgw_result *r) { on_done(arg, r, "cross"); }
static void done_cancel(void *arg, const struct llmgw_result *r) { on_done(arg, r, "cancel"); }

static void cancel_now(evutil_socket_t fd, short what, void *arg)
{
    struct stream_state *s = arg;
    (void)fd;
    (void)what;
    llmgw_cancel(s->to_cancel);
}

int main(int argc, char **argv)
{
    struct llmgw *g1 = NULL, *g2 = NULL;
    if (argc != 8) /* fake URL, db1, key1, db2, key2, an approved and an unapproved app client */
        return 2;
    evthread_use_pthreads();
    if (make(argv[1], argv[2], &g1) != 0 || make(argv[1], argv[4], &g2) != 0)
        return 1;

    /* gw1: own thread, blocking form */
    if (llmgw_start(g1) != 0)
        return 1;
    const char *plain = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":"
                        "\"hello embedded\"}]}";
    struct llmgw_chat_opts o1 = {.api_key = argv[3]};
    int status;
    char *body;
    size_t blen;
    int rc = llmgw_chat_sync(g1, plain, strlen(plain), &o1, &status, &body, &blen);
    if (rc != 0) {
        fprintf(stderr, "chat_sync: %s\n", llmgw_strerror(rc));
        return 1;
    }
    printf("{\"what\":\"plain\",\"status\":%d,\"body\":", status);
    print_json_str(body, blen);
    printf("}\n");
    llmgw_buf_free(body);

    /* a subject the host vouches for, of an approved app client, then of an unapproved one */
    const char *what[] = {"subject", "subject_refused"};
    for (int i = 0; i < 2; i++) {
        struct llmgw_chat_opts os = {.app_client_id = argv[6 + i], .subject = "user-42"};
        if ((rc = llmgw_chat_sync(g1, plain, strlen(plain), &os, &status, &body, &blen)) != 0) {
            fprintf(stderr, "chat_sync (subject): %s\n", llmgw_strerror(rc));
            return 1;
        }
        printf("{\"what\":\"%s\",\"status\":%d,\"body\":", what[i], status);
        print_json_str(body, blen);
        printf("}\n");
        llmgw_buf_free(body);
    }
    struct llmgw_chat_opts both = {.api_key = argv[3], .app_client_id = argv[6], .subject = "x"};
    printf("{\"what\":\"both\",\"rc\":%d}\n",
           llmgw_chat_sync(g1, plain, strlen(plain), &both, &status, &body, &blen));

    /* gw2: on this program's loop, async and streamed */
    struct event_base *base = event_base_new();
    struct stream_state s = {.base = base, .pending = 2};
    if (llmgw_attach(g2, base) != 0)
        return 1;
    const char *streamed = "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":"
                           "{\"include_usage\":true},\"messages\":[{\"role\":\"user\","
                           "\"content\":\"stream embedded\"}]}";
    struct llmgw_chat_opts o2 = {.api_key = argv[5], .on_chunk = on_chunk, .on_done = done_stream,
                                 .arg = &s};
    if (llmgw_chat(g2, streamed, strlen(streamed), &o2, NULL) != 0)
        return 1;
    struct llmgw_chat_opts o3 = {.api_key = argv[3], .on_done = done_cross, .arg = &s};
    if (llmgw_chat(g2, plain, strlen(plain), &o3, NULL) != 0)
        return 1;
    event_base_dispatch(base);
    /* then a call cancelled while it waits on the provider (the fake is told to hang) */
    const char *slow = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"cancel me\"}]}";
    s.pending = 1;
    struct llmgw_chat_opts o4 = {.api_key = argv[5], .on_done = done_cancel, .arg = &s};
    if (llmgw_chat(g2, slow, strlen(slow), &o4, &s.to_cancel) != 0)
        return 1;
    struct timeval tv = {0, 300 * 1000};
    event_base_once(base, -1, EV_TIMEOUT, cancel_now, &s, &tv);
    event_base_dispatch(base);
    struct llmgw_stats st1, st2;
    llmgw_stats(g1, &st1);
    llmgw_stats(g2, &st2);
    printf("{\"what\":\"stats\",\"g1\":{\"calls\":%llu,\"ok\":%llu,\"inflight\":%llu},"
           "\"g2\":{\"calls\":%llu,\"ok\":%llu,\"failed\":%llu,\"cancelled\":%llu,"
           "\"inflight\":%llu}}\n",
           (unsigned long long)st1.calls, (unsigned long long)st1.ok,
           (unsigned long long)st1.inflight, (unsigned long long)st2.calls,
           (unsigned long long)st2.ok, (unsigned long long)st2.failed,
           (unsigned long long)st2.cancelled, (unsigned long long)st2.inflight);
    llmgw_detach(g2);
    llmgw_free(g2);
    event_base_free(base);
    llmgw_free(g1);
    return 0;
}
