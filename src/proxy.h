/* proxy: a request that is not a v1 membership call goes to the upstream as
 * it is, its body and the response streamed with backpressure both ways
 * (an image upload or download of many GiB never sits in memory). One
 * mb_proxy per request, owned by the server's mb_req.
 *
 * The server calls proxy_start from its on_headers hook, feeds the body
 * through proxy_body, says when the request is whole with proxy_body_end
 * (its connection is paused then, and stays paused until the response is
 * out), and frees with proxy_free. The proxy reports through the hooks,
 * always from the event loop, never from inside an upstream callback. */
#ifndef MB_PROXY_H
#define MB_PROXY_H

#include <evhtp/evhtp.h>
#include "upstream.h"

typedef struct mb_proxy mb_proxy;

typedef struct {
    /* Nothing of a response was sent: answer `status` with a JSON error.
     * body_done: the request was read whole (else the server answers and
     * closes the connection). Runs at most once; the proxy does not touch
     * anything after it, so the server may free it right there. */
    void (*fail)(void *arg, int status, const char *message, int body_done);
    /* The response has been handed to the connection (its reply is
     * finished, the connection resumed). cut: the upstream failed part-way,
     * the client gets a short body and the connection is closed. */
    void (*done)(void *arg, int status, unsigned long long bytes, int cut);
} proxy_hooks;

typedef struct {
    mb_upstream       *up;
    const char        *path;        /* path and query as the client sent them */
    char             **headers;     /* fwd_headers_proxy block: the proxy takes it */
    int                with_body;   /* a request body follows */
    long long          body_size;   /* its Content-Length, or -1 (chunked) */
    const char        *request_id;  /* for log lines; must outlive the proxy */
    const char        *client;
    const proxy_hooks *hooks;
    void              *arg;
} proxy_env;

/* NULL when out of memory (env->headers is freed then too). */
mb_proxy *proxy_start(evhtp_request_t *req, const proxy_env *env);
/* Body bytes from the on_read hook: all of buf is taken. */
void      proxy_body(mb_proxy *p, struct evbuffer *buf);
/* The request was read whole (on_request; the connection is paused). */
void      proxy_body_end(mb_proxy *p);
/* 1 once the response head went to the client. */
int       proxy_responding(const mb_proxy *p);
/* Cancels whatever runs; no hook runs afterwards. NULL is fine. */
void      proxy_free(mb_proxy *p);

#endif
