/* core/web — see web.h. */
#include "core/web.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <string.h>

#include "http/reply.h"

int gw_web_route(struct evhttp_request *req, const char *rid, const char *path)
{
    const struct gw_web_asset *a = NULL;
    char index[64];
    if (strcmp(path, "/example/") == 0 || strcmp(path, "/example") == 0)
        path = strcpy(index, "/example/index.html");
    else if (strcmp(path, "/dashboard/") == 0 || strcmp(path, "/dashboard") == 0)
        path = strcpy(index, "/dashboard/index.html");
    for (int i = 0; i < gw_web_nassets && a == NULL; i++)
        if (strcmp(gw_web_assets[i].path, path) == 0)
            a = &gw_web_assets[i];
    if (a == NULL)
        return 0;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
        gw_reply_method_not_allowed(req, rid, "GET, HEAD");
        return 1;
    }
    evhttp_add_header(out, "Content-Type", a->type);
    evhttp_add_header(out, "Cache-Control", "no-cache");
    evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(out, "X-Request-Id", rid);
    if (strstr(a->type, "text/html") != NULL) /* the pages run their own scripts only */
        evhttp_add_header(out, "Content-Security-Policy",
                          "default-src 'self'; script-src 'self'; object-src 'none'; "
                          "base-uri 'none'; frame-ancestors 'none'");
    struct evbuffer *body = evbuffer_new();
    if (body == NULL || evbuffer_add_reference(body, a->data, a->len, NULL, NULL) != 0) {
        if (body != NULL)
            evbuffer_free(body);
        gw_reply_error(req, 503, "service_unavailable", "overloaded", "out of memory", rid, 1);
        return 1;
    }
    evhttp_send_reply(req, 200, "OK", body);
    evbuffer_free(body);
    return 1;
}
