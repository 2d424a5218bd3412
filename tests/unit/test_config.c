/* Unit tests for core/yaml and core/config: YAML typing and strictness (duplicates, aliases,
 * tags, documents, depth, line numbers), config defaults, gw_config_set validation, and file
 * loading (unknown keys fail and leave the config untouched). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "util/mem.h"

/* ---- helpers ---- */

static json_t *yaml_ok(const char *s)
{
    struct gw_errbuf eb = {{0}};
    json_t *v = NULL;
    int rc = gw_yaml_load_string(s, strlen(s), &v, &eb);
    if (rc != 0)
        fprintf(stderr, "unexpected YAML error: %s\n", eb.msg);
    assert_int_equal(rc, 0);
    assert_non_null(v);
    return v;
}

/* Expect a YAML error whose message contains each of the given substrings. */
static void yaml_err(const char *s, int want_rc, const char *sub1, const char *sub2)
{
    struct gw_errbuf eb = {{0}};
    json_t *v = (json_t *)0x1;
    int rc = gw_yaml_load_string(s, strlen(s), &v, &eb);
    assert_int_equal(rc, want_rc);
    assert_null(v);
    if (sub1 != NULL && strstr(eb.msg, sub1) == NULL)
        fail_msg("error '%s' lacks '%s'", eb.msg, sub1);
    if (sub2 != NULL && strstr(eb.msg, sub2) == NULL)
        fail_msg("error '%s' lacks '%s'", eb.msg, sub2);
}

static void write_tmp(char *path, size_t n, const char *content)
{
    snprintf(path, n, "/tmp/llmgw_test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(content);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
}

/* ---- YAML ---- */

static void yaml_scalar_typing(void **state)
{
    json_t *v = yaml_ok("t: true\n"
                        "T: True\n"
                        "f: false\n"
                        "yes_is_string: yes\n"
                        "n1: null\n"
                        "n2: ~\n"
                        "n3:\n"
                        "i: 42\n"
                        "neg: -7\n"
                        "pos: +3\n"
                        "lead: 007\n"
                        "dec: 2.50\n"
                        "exp: 1e3\n"
                        "hex: 0x10\n"
                        "q1: \"42\"\n"
                        "q2: 'true'\n"
                        "q3: \"\"\n"
                        "tagged: !!str 5\n"
                        "block: |\n"
                        "  line1\n"
                        "  line2\n"
                        "text: hello world\n");
    assert_true(json_is_true(json_object_get(v, "t")));
    assert_true(json_is_true(json_object_get(v, "T")));
    assert_true(json_is_false(json_object_get(v, "f")));
    assert_string_equal(json_string_value(json_object_get(v, "yes_is_string")), "yes");
    assert_true(json_is_null(json_object_get(v, "n1")));
    assert_true(json_is_null(json_object_get(v, "n2")));
    assert_true(json_is_null(json_object_get(v, "n3")));
    assert_true(json_is_integer(json_object_get(v, "i")));
    assert_int_equal(json_integer_value(json_object_get(v, "i")), 42);
    assert_int_equal(json_integer_value(json_object_get(v, "neg")), -7);
    assert_int_equal(json_integer_value(json_object_get(v, "pos")), 3);
    assert_int_equal(json_integer_value(json_object_get(v, "lead")), 7);
    /* no floats: decimals and exponents stay exact strings */
    assert_string_equal(json_string_value(json_object_get(v, "dec")), "2.50");
    assert_string_equal(json_string_value(json_object_get(v, "exp")), "1e3");
    assert_string_equal(json_string_value(json_object_get(v, "hex")), "0x10");
    assert_string_equal(json_string_value(json_object_get(v, "q1")), "42");
    assert_string_equal(json_string_value(json_object_get(v, "q2")), "true");
    assert_string_equal(json_string_value(json_object_get(v, "q3")), "");
    assert_string_equal(json_string_value(json_object_get(v, "tagged")), "5");
    assert_string_equal(json_string_value(json_object_get(v, "block")), "line1\nline2\n");
    assert_string_equal(json_string_value(json_object_get(v, "text")), "hello world");
    json_decref(v);
}

static void yaml_nesting(void **state)
{
    json_t *v = yaml_ok("a:\n"
                        "  b:\n"
                        "    - {x: 1, y: [true, \"s\"]}\n"
                        "    - plain\n"
                        "  c: []\n"
                        "d: {}\n");
    json_t *b = json_object_get(json_object_get(v, "a"), "b");
    assert_true(json_is_array(b));
    assert_int_equal(json_array_size(b), 2);
    json_t *first = json_array_get(b, 0);
    assert_int_equal(json_integer_value(json_object_get(first, "x")), 1);
    assert_true(json_is_true(json_array_get(json_object_get(first, "y"), 0)));
    assert_string_equal(json_string_value(json_array_get(json_object_get(first, "y"), 1)), "s");
    assert_string_equal(json_string_value(json_array_get(b, 1)), "plain");
    assert_int_equal(json_array_size(json_object_get(json_object_get(v, "a"), "c")), 0);
    assert_int_equal(json_object_size(json_object_get(v, "d")), 0);
    json_decref(v);

    /* a top-level list and a top-level scalar are fine too */
    v = yaml_ok("- 1\n- 2\n");
    assert_int_equal(json_array_size(v), 2);
    json_decref(v);
    v = yaml_ok("just text\n");
    assert_string_equal(json_string_value(v), "just text");
    json_decref(v);
}

static void yaml_depth_limit(void **state)
{
    char buf[256];
    json_t *v;
    /* 64 nested lists are fine, 65 are not */
    memset(buf, '[', 64);
    memset(buf + 64, ']', 64);
    buf[128] = '\0';
    v = yaml_ok(buf);
    json_decref(v);
    memset(buf, '[', 65);
    memset(buf + 65, ']', 65);
    buf[130] = '\0';
    yaml_err(buf, GW_EPARSE, "too deep", "line 1");
}

static void yaml_duplicate_keys(void **state)
{
    yaml_err("a: 1\nb: 2\na: 3\n", GW_EPARSE, "duplicate key 'a'", "line 3 column 1");
    yaml_err("outer:\n  k: 1\n  k: 2\n", GW_EPARSE, "duplicate key 'k'", "line 3 column 3");
    /* the same key in different mappings is fine */
    json_t *v = yaml_ok("a: {k: 1}\nb: {k: 2}\n");
    json_decref(v);
}

static void yaml_aliases_refused(void **state)
{
    yaml_err("a: &x 1\nb: *x\n", GW_EPARSE, "aliases are not supported", "line 1");
    yaml_err("a: [1]\nb: *x\n", GW_EPARSE, NULL, NULL); /* undefined alias: libyaml or ours */
    yaml_err("base: &b {k: 1}\n", GW_EPARSE, "aliases are not supported", NULL);
}

static void yaml_documents_and_tags(void **state)
{
    yaml_err("a: 1\n---\nb: 2\n", GW_EPARSE, "more than one", "line 2");
    yaml_err("a: !!int 5\n", GW_EPARSE, "tags are not supported", "line 1");
    yaml_err("a: !custom x\n", GW_EPARSE, "tags are not supported", NULL);
    yaml_err("? [a, b]\n: 1\n", GW_EPARSE, "keys must be scalars", "line 1");
    yaml_err("big: 99999999999999999999\n", GW_EPARSE, "out of range", "line 1 column 6");
    yaml_err("key: \"sk-abc\\0evil\"\n", GW_EPARSE, "NUL", "line 1");
    yaml_err("\"k\\0\": 1\n", GW_EPARSE, "NUL", "line 1");
    /* an explicit single document with markers is fine */
    json_t *v = yaml_ok("---\na: 1\n...\n");
    assert_int_equal(json_integer_value(json_object_get(v, "a")), 1);
    json_decref(v);
}

static void yaml_syntax_errors_have_lines(void **state)
{
    yaml_err("a: 1\nb: [1, 2\nc: 3\n", GW_EPARSE, "line", NULL);
    yaml_err("a: 1\n  b: 2\n", GW_EPARSE, "line 2", NULL);
    yaml_err("a: \"unterminated\n", GW_EPARSE, "line", "column");
}

static void yaml_empty_and_limits(void **state)
{
    struct gw_errbuf eb = {{0}};
    json_t *v = NULL;
    assert_int_equal(gw_yaml_load_string("", 0, &v, &eb), 0);
    assert_true(json_is_null(v));
    json_decref(v);
    v = yaml_ok("# only a comment\n");
    assert_true(json_is_null(v));
    json_decref(v);
    /* more than 4 MiB is refused before parsing */
    assert_int_equal(gw_yaml_load_string("a", (size_t)5 << 20, &v, &eb), GW_ETOOBIG);
    assert_null(v);
    assert_int_equal(gw_yaml_load_file("/nonexistent/llmgw.yaml", &v, &eb), GW_EIO);
    assert_non_null(strstr(eb.msg, "No such file"));
    assert_int_equal(gw_yaml_load_file("/tmp", &v, &eb), GW_EIO);
}

static void yaml_file_error_has_line(void **state)
{
    char path[64];
    struct gw_errbuf eb = {{0}};
    json_t *v = NULL;
    write_tmp(path, sizeof(path), "a: 1\na: 2\n");
    assert_int_equal(gw_yaml_load_file(path, &v, &eb), GW_EPARSE);
    assert_non_null(strstr(eb.msg, "line 2"));
    assert_null(v);
    unlink(path);
}

/* ---- config ---- */

static void config_defaults(void **state)
{
    struct gw_config c;
    assert_int_equal(gw_config_init(&c), 0);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 8080);
    assert_string_equal(c.db_url, "sqlite:./data/llmgw.db");
    assert_int_equal(c.workers, 0);
    assert_string_equal(c.catalog_path, "catalog/models.yaml");
    assert_int_equal(c.production, 0);
    assert_int_equal(c.max_body, 1 << 20);
    assert_int_equal(c.max_upstream_body, 16 << 20);
    assert_int_equal(c.header_timeout_ms, 10000);
    assert_int_equal(c.timeouts.connect_ms, 5000);
    assert_int_equal(c.timeouts.first_byte_ms, 120000);
    assert_int_equal(c.timeouts.total_ms, 600000);
    assert_int_equal(c.shutdown_grace_ms, 10000);
    assert_int_equal(c.max_conns_per_worker, 4096);
    assert_int_equal(c.db_poll_us, 500);

    static const char *const names[] = {"anthropic", "openai", "gemini", "xai", "perplexity"};
    static const char *const urls[] = {"https://api.anthropic.com", "https://api.openai.com",
                                       "https://generativelanguage.googleapis.com",
                                       "https://api.x.ai", "https://api.perplexity.ai"};
    for (int i = 0; i < GW_NPROVIDERS; i++) {
        assert_string_equal(c.providers[i].name, names[i]);
        assert_string_equal(c.providers[i].base_url, urls[i]);
        assert_null(c.providers[i].api_key);
        assert_ptr_equal(gw_config_provider(&c, names[i]), &c.providers[i]);
    }
    assert_string_equal(c.providers[0].api_version, "2023-06-01");
    assert_null(c.providers[1].api_version);
    assert_null(gw_config_provider(&c, "mistral"));
    assert_null(gw_config_provider(&c, NULL));
    gw_config_cleanup(&c);
    gw_config_cleanup(&c); /* idempotent */
}

static void config_init_oom(void **state)
{
    /* every allocation failure point yields GW_ENOMEM and no leak */
    for (long n = 1; n < 20; n++) {
        struct gw_config c;
        gw_mem_fail_after(n);
        int rc = gw_config_init(&c);
        gw_mem_fail_after(0);
        if (rc == 0) {
            gw_config_cleanup(&c);
            return;
        }
        assert_int_equal(rc, GW_ENOMEM);
    }
    fail_msg("gw_config_init never succeeded");
}

static void set_ok(struct gw_config *c, const char *name, const char *value)
{
    struct gw_errbuf eb = {{0}};
    int rc = gw_config_set(c, name, value, &eb);
    if (rc != 0)
        fail_msg("set %s=%s failed: %s", name, value, eb.msg);
}

static void set_bad(struct gw_config *c, const char *name, const char *value)
{
    struct gw_errbuf eb = {{0}};
    int rc = gw_config_set(c, name, value, &eb);
    if (rc != GW_EINVAL)
        fail_msg("set %s=%s gave %d, want GW_EINVAL", name, value, rc);
    if (strstr(eb.msg, name) == NULL)
        fail_msg("error '%s' does not name '%s'", eb.msg, name);
}

static void config_set_listen(void **state)
{
    struct gw_config c;
    assert_int_equal(gw_config_init(&c), 0);
    set_ok(&c, "listen", "0.0.0.0:9000");
    assert_string_equal(c.listen_host, "0.0.0.0");
    assert_int_equal(c.listen_port, 9000);
    set_ok(&c, "listen", "[::1]:8081");
    assert_string_equal(c.listen_host, "::1");
    assert_int_equal(c.listen_port, 8081);
    set_ok(&c, "listen", "localhost:1");
    set_ok(&c, "listen", "gw.example.com:65535");
    assert_string_equal(c.listen_host, "gw.example.com");
    assert_int_equal(c.listen_port, 65535);

    static const char *const bad[] = {
        "",         ":80",         "host",     "host:",    "host:0",   "host:65536", "host:80x",
        "a b:80",   "::1:80",      "[::1]8080", "[::1]:",  "[]:80",    "host:-1",    "host: 80",
        "host:+80", "[::1:80",     "h/x:80",   "host:080000", "[a.b]:80",
        "host:99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set_bad(&c, "listen", bad[i]);
        /* a failed set changes nothing */
        assert_string_equal(c.listen_host, "gw.example.com");
        assert_int_equal(c.listen_port, 65535);
    }
    gw_config_cleanup(&c);
}

static void config_set_numbers(void **state)
{
    struct gw_config c;
    assert_int_equal(gw_config_init(&c), 0);
    set_ok(&c, "workers", "0");
    set_ok(&c, "workers", "256");
    assert_int_equal(c.workers, 256);
    set_bad(&c, "workers", "257");
    set_bad(&c, "workers", "-1");
    set_bad(&c, "workers", "abc");
    set_bad(&c, "workers", "1.5");
    set_bad(&c, "workers", " 4");
    set_bad(&c, "workers", "");
    assert_int_equal(c.workers, 256);

    set_ok(&c, "limits.max_body_bytes", "2097152");
    assert_int_equal(c.max_body, 2097152);
    set_bad(&c, "limits.max_body_bytes", "0");
    set_ok(&c, "limits.max_upstream_body_bytes", "33554432");
    assert_int_equal(c.max_upstream_body, 33554432);
    set_ok(&c, "limits.max_connections_per_worker", "100");
    assert_int_equal(c.max_conns_per_worker, 100);
    set_bad(&c, "limits.max_connections_per_worker", "0");
    set_ok(&c, "timeouts.request_read_ms", "1000");
    set_ok(&c, "timeouts.connect_ms", "2000");
    set_ok(&c, "timeouts.first_byte_ms", "3000");
    set_ok(&c, "timeouts.total_ms", "4000");
    set_ok(&c, "timeouts.shutdown_grace_ms", "0");
    assert_int_equal(c.header_timeout_ms, 1000);
    assert_int_equal(c.timeouts.connect_ms, 2000);
    assert_int_equal(c.timeouts.first_byte_ms, 3000);
    assert_int_equal(c.timeouts.total_ms, 4000);
    assert_int_equal(c.shutdown_grace_ms, 0);
    set_bad(&c, "timeouts.connect_ms", "0");
    set_bad(&c, "timeouts.total_ms", "99999999999");
    set_ok(&c, "db_poll_us", "0");
    assert_int_equal(c.db_poll_us, 0);
    set_ok(&c, "db_poll_us", "100000");
    assert_int_equal(c.db_poll_us, 100000);
    set_bad(&c, "db_poll_us", "100001");
    set_bad(&c, "db_poll_us", "-1");
    gw_config_cleanup(&c);
}

static void config_set_strings(void **state)
{
    struct gw_config c;
    assert_int_equal(gw_config_init(&c), 0);
    set_ok(&c, "mode", "production");
    assert_int_equal(c.production, 1);
    set_ok(&c, "mode", "development");
    assert_int_equal(c.production, 0);
    set_bad(&c, "mode", "Production");
    set_bad(&c, "mode", "");
    set_ok(&c, "db", "postgres://user@db/llmgw");
    assert_string_equal(c.db_url, "postgres://user@db/llmgw");
    set_ok(&c, "db", "sqlite:/var/lib/llmgw.db");
    set_bad(&c, "db", "mysql://x");
    set_bad(&c, "db", "sqlite:");
    assert_string_equal(c.db_url, "sqlite:/var/lib/llmgw.db");
    set_ok(&c, "catalog", "/etc/llmgw/models.yaml");
    assert_string_equal(c.catalog_path, "/etc/llmgw/models.yaml");
    set_bad(&c, "catalog", "");
    gw_config_cleanup(&c);
}

static void config_set_providers(void **state)
{
    struct gw_config c;
    struct gw_errbuf eb = {{0}};
    assert_int_equal(gw_config_init(&c), 0);
    set_ok(&c, "providers.openai.base_url", "http://127.0.0.1:9999/");
    assert_string_equal(gw_config_provider(&c, "openai")->base_url, "http://127.0.0.1:9999");
    set_ok(&c, "providers.gemini.base_url", "https://eu.example.com/proxy");
    assert_string_equal(c.providers[2].base_url, "https://eu.example.com/proxy");
    set_bad(&c, "providers.openai.base_url", "ftp://x");
    set_bad(&c, "providers.openai.base_url", "https://");
    set_bad(&c, "providers.openai.base_url", "https:///path");
    set_bad(&c, "providers.openai.base_url", "api.openai.com");
    set_bad(&c, "providers.openai.base_url", "https://a b");
    assert_string_equal(c.providers[1].base_url, "http://127.0.0.1:9999");

    set_ok(&c, "providers.xai.api_key", "xai-secret-123");
    assert_string_equal(c.providers[3].api_key, "xai-secret-123");
    /* a key with a newline could inject headers: refused, and never echoed */
    assert_int_equal(gw_config_set(&c, "providers.xai.api_key", "abc\r\nX-Evil: 1", &eb),
                     GW_EINVAL);
    assert_null(strstr(eb.msg, "abc"));
    assert_non_null(strstr(eb.msg, "providers.xai.api_key"));
    assert_string_equal(c.providers[3].api_key, "xai-secret-123");
    set_ok(&c, "providers.xai.api_key", "");
    assert_null(c.providers[3].api_key);
    set_ok(&c, "providers.anthropic.api_key", "sk-ant-1");

    set_ok(&c, "providers.anthropic.api_version", "2026-10-21");
    assert_string_equal(c.providers[0].api_version, "2026-10-21");
    set_bad(&c, "providers.anthropic.api_version", "");
    set_bad(&c, "providers.mistral.base_url", "https://api.mistral.ai");
    set_bad(&c, "providers.openai.bogus", "x");
    set_bad(&c, "providers.openai", "x");
    set_bad(&c, "providers.", "x");
    gw_config_cleanup(&c);
}

static void config_unknown_setting(void **state)
{
    struct gw_config c;
    struct gw_errbuf eb = {{0}};
    assert_int_equal(gw_config_init(&c), 0);
    assert_int_equal(gw_config_set(&c, "listne", "1.2.3.4:80", &eb), GW_EINVAL);
    assert_non_null(strstr(eb.msg, "listne"));
    set_bad(&c, "limits", "5");
    set_bad(&c, "routing.rules", "x");
    assert_int_equal(gw_config_set(&c, "listen", NULL, &eb), GW_EINVAL);
    gw_config_cleanup(&c);
}

static void config_resilience_settings(void **state)
{
    struct gw_config c;
    struct gw_errbuf eb = {{0}};
    char path[64];
    assert_int_equal(gw_config_init(&c), 0);
    /* defaults */
    assert_int_equal(c.fallback.enabled, 1);
    assert_int_equal(c.fallback.max_attempts, 3);
    assert_int_equal(c.fallback.retry_uncertain, GW_RETRY_UNCERTAIN_NO_TOOLS);
    assert_int_equal(c.breaker.threshold, 5);
    assert_int_equal(c.breaker.cooldown_ms, 30000);
    assert_int_equal(c.router.enabled, 0);
    assert_string_equal(c.router.model, "claude-haiku-4-5");
    assert_int_equal(c.timeouts.idle_ms, 120000);
    struct gw_timeouts t = gw_config_timeouts(&c, gw_config_provider(&c, "openai"));
    assert_int_equal(t.first_byte_ms, 120000);
    set_bad(&c, "fallback.enabled", "yes");
    set_bad(&c, "fallback.max_attempts", "0");
    set_bad(&c, "fallback.max_attempts", "11");
    set_bad(&c, "fallback.retry_uncertain", "sometimes");
    set_bad(&c, "router.model", "has space");
    set_bad(&c, "router.timeout_ms", "0");
    set_bad(&c, "providers.openai.timeouts.first_byte_ms", "-1");
    set_bad(&c, "providers.openai.timeouts.lunch_ms", "5");
    set_bad(&c, "providers.acme.timeouts.idle_ms", "5");
    set_ok(&c, "fallback.retry_uncertain", "never");
    assert_int_equal(c.fallback.retry_uncertain, GW_RETRY_UNCERTAIN_NEVER);
    write_tmp(path, sizeof(path),
              "fallback: {enabled: false, max_attempts: 5, backoff_ms: 50, backoff_max_ms: 800,\n"
              "           max_retry_after_ms: 3000, retry_uncertain: always}\n"
              "breaker: {failure_threshold: 2, cooldown_ms: 1500}\n"
              "router: {enabled: true, model: gemini-2.0-flash, timeout_ms: 900,\n"
              "         max_prompt_chars: 500}\n"
              "timeouts: {idle_ms: 7000}\n"
              "providers:\n"
              "  gemini:\n"
              "    timeouts: {first_byte_ms: 30000, total_ms: 90000}\n");
    int rc = gw_config_load_file(&c, path, &eb);
    unlink(path);
    if (rc != 0)
        fail_msg("load failed: %s", eb.msg);
    assert_int_equal(c.fallback.enabled, 0);
    assert_int_equal(c.fallback.max_attempts, 5);
    assert_int_equal(c.fallback.backoff_ms, 50);
    assert_int_equal(c.fallback.backoff_max_ms, 800);
    assert_int_equal(c.fallback.max_retry_after_ms, 3000);
    assert_int_equal(c.fallback.retry_uncertain, GW_RETRY_UNCERTAIN_ALWAYS);
    assert_int_equal(c.breaker.threshold, 2);
    assert_int_equal(c.breaker.cooldown_ms, 1500);
    assert_int_equal(c.router.enabled, 1);
    assert_string_equal(c.router.model, "gemini-2.0-flash");
    assert_int_equal(c.router.timeout_ms, 900);
    assert_int_equal(c.router.max_prompt_chars, 500);
    t = gw_config_timeouts(&c, gw_config_provider(&c, "gemini"));
    assert_int_equal(t.first_byte_ms, 30000);
    assert_int_equal(t.total_ms, 90000);
    assert_int_equal(t.idle_ms, 7000);   /* the global value */
    assert_int_equal(t.connect_ms, 5000);
    t = gw_config_timeouts(&c, gw_config_provider(&c, "openai"));
    assert_int_equal(t.first_byte_ms, 120000);
    gw_config_cleanup(&c);
}

static void config_load_full_file(void **state)
{
    char path[64];
    struct gw_config c;
    struct gw_errbuf eb = {{0}};
    write_tmp(path, sizeof(path),
              "# llmgw config\n"
              "listen: \"0.0.0.0:9090\"\n"
              "db: \"sqlite:/tmp/x.db\"\n"
              "workers: 2\n"
              "mode: production\n"
              "catalog: catalog/models.yaml\n"
              "limits: {max_body_bytes: 2097152, max_upstream_body_bytes: 16777216,\n"
              "         max_connections_per_worker: 512}\n"
              "timeouts:\n"
              "  request_read_ms: 5000\n"
              "  connect_ms: 1000\n"
              "  first_byte_ms: 60000\n"
              "  total_ms: 300000\n"
              "  shutdown_grace_ms: 2000\n"
              "providers:\n"
              "  openai: {base_url: \"http://127.0.0.1:8999\", api_key: sk-test}\n"
              "  anthropic:\n"
              "    api_version: \"2026-10-21\"\n"
              "    api_key: ~\n");
    assert_int_equal(gw_config_init(&c), 0);
    int rc = gw_config_load_file(&c, path, &eb);
    if (rc != 0)
        fail_msg("load failed: %s", eb.msg);
    assert_string_equal(c.listen_host, "0.0.0.0");
    assert_int_equal(c.listen_port, 9090);
    assert_string_equal(c.db_url, "sqlite:/tmp/x.db");
    assert_int_equal(c.workers, 2);
    assert_int_equal(c.production, 1);
    assert_int_equal(c.max_body, 2097152);
    assert_int_equal(c.max_conns_per_worker, 512);
    assert_int_equal(c.header_timeout_ms, 5000);
    assert_int_equal(c.timeouts.connect_ms, 1000);
    assert_int_equal(c.timeouts.first_byte_ms, 60000);
    assert_int_equal(c.timeouts.total_ms, 300000);
    assert_int_equal(c.shutdown_grace_ms, 2000);
    assert_string_equal(c.providers[1].base_url, "http://127.0.0.1:8999");
    assert_string_equal(c.providers[1].api_key, "sk-test");
    assert_string_equal(c.providers[0].api_version, "2026-10-21");
    assert_null(c.providers[0].api_key);
    /* untouched settings keep their defaults */
    assert_string_equal(c.providers[4].base_url, "https://api.perplexity.ai");
    gw_config_cleanup(&c);
    unlink(path);
}

/* Loading content must fail with an error naming `needle`, and leave c unchanged. */
static void load_fails(const char *content, const char *needle)
{
    char path[64];
    struct gw_config c;
    struct gw_errbuf eb = {{0}};
    write_tmp(path, sizeof(path), content);
    assert_int_equal(gw_config_init(&c), 0);
    int rc = gw_config_load_file(&c, path, &eb);
    unlink(path);
    if (rc == 0)
        fail_msg("loading '%s' succeeded", content);
    if (strstr(eb.msg, needle) == NULL)
        fail_msg("error '%s' lacks '%s'", eb.msg, needle);
    assert_int_equal(c.workers, 0);
    assert_int_equal(c.listen_port, 8080);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_null(c.providers[1].api_key);
    gw_config_cleanup(&c);
}

static void config_load_rejects(void **state)
{
    load_fails("workers: 2\nroutign: {}\n", "routign");
    load_fails("workers: 2\nrouting:\n  rules: []\n", "routing");
    load_fails("tiers: [a]\n", "tiers");
    load_fails("fallbacks: {}\n", "fallbacks");
    load_fails("limits: {max_body: 5}\n", "limits.max_body");
    load_fails("workers: 3\nlisten: \"1.2.3.4:0\"\n", "listen");
    load_fails("workers: 1000\n", "workers");
    load_fails("workers: \"many\"\n", "workers");
    load_fails("workers: true\n", "workers");
    load_fails("workers: ~\n", "workers");
    load_fails("listen: [a]\n", "listen");
    load_fails("limits: 5\n", "limits");
    load_fails("providers: {mistral: {api_key: x}}\n", "providers.mistral");
    load_fails("providers: {openai: {api_key: sk-1, model: x}}\n", "providers.openai.model");
    load_fails("providers: {openai: {base_url: ftp://x}}\n", "providers.openai.base_url");
    load_fails("limits.max_body_bytes: 5000\n", "limits.max_body_bytes");
    load_fails("- a\n- b\n", "mapping");
    load_fails("workers: 1\nworkers: 2\n", "duplicate key 'workers'");
}

static void config_load_empty_and_missing(void **state)
{
    char path[64];
    struct gw_config c;
    struct gw_errbuf eb = {{0}};
    assert_int_equal(gw_config_init(&c), 0);
    write_tmp(path, sizeof(path), "# nothing set\n");
    assert_int_equal(gw_config_load_file(&c, path, &eb), 0);
    assert_int_equal(c.listen_port, 8080);
    unlink(path);
    assert_int_equal(gw_config_load_file(&c, "/nonexistent/llmgw.yaml", &eb), GW_EIO);
    gw_config_cleanup(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(yaml_scalar_typing),
        cmocka_unit_test(yaml_nesting),
        cmocka_unit_test(yaml_depth_limit),
        cmocka_unit_test(yaml_duplicate_keys),
        cmocka_unit_test(yaml_aliases_refused),
        cmocka_unit_test(yaml_documents_and_tags),
        cmocka_unit_test(yaml_syntax_errors_have_lines),
        cmocka_unit_test(yaml_empty_and_limits),
        cmocka_unit_test(yaml_file_error_has_line),
        cmocka_unit_test(config_defaults),
        cmocka_unit_test(config_init_oom),
        cmocka_unit_test(config_set_listen),
        cmocka_unit_test(config_set_numbers),
        cmocka_unit_test(config_set_strings),
        cmocka_unit_test(config_set_providers),
        cmocka_unit_test(config_unknown_setting),
        cmocka_unit_test(config_resilience_settings),
        cmocka_unit_test(config_load_full_file),
        cmocka_unit_test(config_load_rejects),
        cmocka_unit_test(config_load_empty_and_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
