/* admin: see admin.h. */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <evhtp/evhtp.h>

#include "log.h"
#include "metrics.h"

#define ADMIN_BACKLOG 64

/* Open admin connections, so that admin_free can close them (a scraper's
 * keep-alive connection, a request half sent). */
typedef struct admin_conn {
    evhtp_connection_t *conn;
    struct admin_conn  *prev, *next;
    struct mb_admin    *admin;
} admin_conn;

struct mb_admin {
    evhtp_t    *htp;
    admin_conn *conns;
};

static evhtp_res on_admin_conn_fini(evhtp_connection_t *conn, void *arg)
{
    admin_conn *c = arg;
    (void)conn;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->admin->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
    return EVHTP_RES_OK;
}

static evhtp_res on_admin_accept(evhtp_connection_t *conn, void *arg)
{
    mb_admin *a = arg;
    admin_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return EVHTP_RES_ERROR;
    c->conn = conn;
    c->admin = a;
    c->next = a->conns;
    if (a->conns)
        a->conns->prev = c;
    a->conns = c;
    evhtp_connection_set_hook(conn, evhtp_hook_on_connection_fini, (evhtp_hook)on_admin_conn_fini, c);
    return EVHTP_RES_OK;
}

static void reply_text(evhtp_request_t *req, int status, const char *type, const char *body,
                       size_t len)
{
    evhtp_headers_add_header(req->headers_out, evhtp_header_new("Content-Type", type, 0, 0));
    if (req->method == htp_method_HEAD) {
        char cl[24];
        snprintf(cl, sizeof(cl), "%zu", len);
        evhtp_headers_add_header(req->headers_out, evhtp_header_new("Content-Length", cl, 0, 1));
    } else {
        evbuffer_add(req->buffer_out, body, len);
    }
    evhtp_send_reply(req, (evhtp_res)status);
}

static void on_admin_request(evhtp_request_t *req, void *arg)
{
    const char *path = req->uri && req->uri->path && req->uri->path->full
                       ? req->uri->path->full : "";
    int metrics = strcmp(path, "/metrics") == 0;
    (void)arg;

    if (!metrics && strcmp(path, "/healthcheck") != 0) {
        reply_text(req, 404, "text/plain", "not found\n", 10);
        return;
    }
    if (req->method != htp_method_GET && req->method != htp_method_HEAD) {
        evhtp_headers_add_header(req->headers_out, evhtp_header_new("Allow", "GET, HEAD", 0, 0));
        reply_text(req, 405, "text/plain", "method not allowed\n", 19);
        return;
    }
    if (!metrics) {
        reply_text(req, 200, "text/plain", "OK", 2);
        return;
    }
    size_t len = 0;
    char *text = metrics_render(&len);
    if (text == NULL) {
        reply_text(req, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

mb_admin *admin_new(struct event_base *base, const char *host, int port, const char *listen)
{
    mb_admin *a = calloc(1, sizeof(*a));
    char addr[300];
    struct timeval tv = { 10, 0 };

    if (a == NULL || (a->htp = evhtp_new(base, NULL)) == NULL) {
        log_error("[admin] listen: out of memory");
        free(a);
        return NULL;
    }
    evhtp_set_gencb(a->htp, on_admin_request, NULL);
    evhtp_set_post_accept_cb(a->htp, on_admin_accept, a);
    evhtp_set_timeouts(a->htp, &tv, &tv);
    snprintf(addr, sizeof(addr), "%s%s", strchr(host, ':') ? "ipv6:" : "", host);
    if (evhtp_bind_socket(a->htp, addr, (uint16_t)port, ADMIN_BACKLOG) != 0) {
        log_error("cannot listen on [admin] listen %s: %m", listen);
        admin_free(a);
        return NULL;
    }
    log_info("admin endpoint (/metrics, /healthcheck) on %s", listen);
    return a;
}

void admin_free(mb_admin *a)
{
    if (a == NULL)
        return;
    while (a->conns)
        evhtp_connection_free(a->conns->conn);   /* its fini hook unlinks it */
    if (a->htp) {
        evhtp_unbind_socket(a->htp);
        evhtp_free(a->htp);
    }
    free(a);
}
