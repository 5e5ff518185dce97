/* server: the inbound HTTP listener (libevhtp on the libevent loop), the
 * per-request state, the framing checks and body streaming, and dispatch to
 * the membership operations. One mb_req per request owns everything the
 * request uses; it is freed only in the request-fini hook (or, when the
 * gateway takes the connection over to answer and close, right there). */
#ifndef MB_SERVER_H
#define MB_SERVER_H

#include <stddef.h>
#include <event2/event.h>
#include "mb_conf.h"
#include "upstream.h"
#include "svc_auth.h"

typedef struct mb_server mb_server;
typedef struct ssl_ctx_st SSL_CTX;

/* What requests run with: the settings and the upstream clients made for
 * them on this server's loop. The server owns up and svc (svc: the
 * gateway's own Keystone token source, NULL unless [members] accept) and
 * frees them once no request uses them; then release(release_arg) is
 * called, after which conf is no longer read. */
typedef struct {
    const mb_conf *conf;
    mb_upstream   *up;
    mb_svc_auth   *svc;
    void         (*release)(void *arg);
    void          *release_arg;
} mb_server_profile;

/* One server per worker thread, on that thread's loop; worker is its index
 * (for the metrics). */
mb_server *server_new(struct event_base *base, unsigned worker, const mb_server_profile *p);
/* New requests use p from now on; requests in flight finish with what they
 * started with. Returns 0, or -1 (out of memory: p is not taken). */
int        server_reconfigure(mb_server *s, const mb_server_profile *p);
/* Serves HTTPS with ctx on connections accepted from now on (NULL: plain
 * HTTP). The server takes its own reference. */
void       server_set_tls(mb_server *s, SSL_CTX *ctx);
/* Binds the listener (SO_REUSEPORT: every worker binds the same address).
 * Returns 0, or -1 after logging why. */
int        server_listen(mb_server *s);
/* Stops accepting; `drained` runs (from the loop) once no request is in
 * flight. Idle keep-alive connections are closed by server_free. */
void       server_shutdown(mb_server *s, void (*drained)(void *arg), void *arg);
size_t     server_in_flight(const mb_server *s);
/* After the shutdown grace period: cancels the upstream calls still running
 * and answers their requests 503 (Connection: close). The replies go out
 * while the loop runs on. */
void       server_abort(mb_server *s);
/* Closes every connection (freeing requests still in flight) and frees. */
void       server_free(mb_server *s);

#endif
