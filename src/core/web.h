/*
 * core/web — the browser files the gateway serves (web/, embedded at build time by
 * scripts/embed.sh): the subject-session client library at /sdk/llmgw.js and its example page
 * under /example/. Public, read-only, no credentials.
 */
#ifndef GW_CORE_WEB_H
#define GW_CORE_WEB_H

#include <event2/http.h>
#include <stddef.h>

struct gw_web_asset {
    const char *path; /* the URL path */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
};
extern const struct gw_web_asset gw_web_assets[];
extern const int gw_web_nassets;

/* Answer a GET or HEAD of one of them (1: answered, also 405 for another method), else 0.
 * "/example/" is its index.html. */
int gw_web_route(struct evhttp_request *req, const char *rid, const char *path);

#endif
