/* server: libevhtp listener, per-request state, framing, body streaming,
 * dispatch and the reply. See server.h.
 *
 * Guards for libevhtp 1.2.18 (each has an end-to-end test):
 * - bodies are fed to yajl in on_read and the evbuffer is drained, so the
 *   body never accumulates in req->buffer_in;
 * - framing is checked in on_headers (its parser accepts CL+TE, duplicate
 *   CL, "gzip, chunked", HTTP/1.1 without Host);
 * - a reply before the body was read (413, framing 400, 501 with a body)
 *   takes the connection over and closes it with a lingering close, so the
 *   rest of the body is never parsed as a new request and the client gets
 *   the reply;
 * - every reply is sent while the request is paused, then resumed, so
 *   pipelined requests are answered in order;
 * - its max-body-size is not used (it drops the connection without a 413);
 * - its parser adds up chunk sizes without an overflow check: the guard
 *   checks each chunk-size line before the parser sees it (run_chunked);
 * - libevent retries a failing accept() (EMFILE) in a busy loop: the
 *   listener pauses instead (on_accept_error).
 */
#include "server.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <event2/listener.h>
#include <evhtp/evhtp.h>
#include <openssl/ssl.h>

#include "framing.h"
#include "fwd_headers.h"
#include "linger.h"
#include "log.h"
#include "members.h"
#include "metrics.h"
#include "proxy.h"
#include "versions.h"
#include "reply.h"
#include "route.h"
#include "v1_body.h"

#define MAX_HEADERS        100
#define MAX_REQUEST_LINE   8192
#define MB_STR_(x)         #x
#define MB_STR(x)          MB_STR_(x)
#define LINGER_SECONDS     5
#define LINGER_MAX_BYTES   (64u << 20)
#define BACKLOG            1024
#define ACCEPT_PAUSE_MS    250
#define HELD_SLACK         1      /* a byte after held request bytes (htparser_run reads it) */    /* accept() out of descriptors: try again after */
#define CAN_SHARE_WARNING  "299 memberbridge \"can_share is not supported by Image API v2 and was ignored\""

/* One per open connection: for closing them all at shutdown, and for the
 * client_timeout deadline on receiving a request (headers and body). */
typedef struct conn_node {
    evhtp_connection_t *conn;
    struct conn_node   *prev, *next;
    struct mb_server   *srv;
    struct event       *deadline;
    int                 closing;     /* a reply said Connection: close */
    /* parser guard (see htparser_run below) */
    int                 in_request_line;
    int                 in_headers;
    mb_header_scan      scan;
    int                 refuse_status; /* 400/414 found by the guard, answered from the loop */
    const char         *refuse_why;
    char               *held;        /* a partial request line, not yet parsed */
    size_t              held_len;
    int                 in_chunked;  /* a chunked body is being read ... */
    mb_chunk_scan       chunk;       /* ... and where it stands */
} conn_node;

/* The settings a request runs with, and the upstream clients made for them.
 * A reload (server_reconfigure) makes a new one current; a request keeps the
 * one it started with, which is freed once no request uses it. */
typedef struct mb_profile {
    const mb_conf     *conf;
    mb_upstream       *up;
    mb_svc_auth       *svc;        /* NULL unless [members] accept */
    void             (*release)(void *arg);
    void              *release_arg;
    size_t             refs;       /* requests using it */
    int                retired;    /* no longer the current one */
    struct event      *free_ev;    /* frees it from the loop, not from a callback of its upstream */
    struct mb_profile *next;       /* all of the server's profiles */
    struct mb_server  *srv;
} mb_profile;

struct mb_server {
    struct event_base *base;
    unsigned           worker;     /* index of the worker thread (metrics) */
    mb_profile        *cur;        /* what new requests use */
    mb_profile        *profiles;
    evhtp_t           *htp;
    conn_node         *conns;
    size_t             in_flight;
    int                shutting_down;
    void             (*drained)(void *arg);
    void              *drained_arg;
    struct event      *drain_ev;
    struct event      *accept_resume;  /* re-enables the listener after an accept error */
    int                accept_failing; /* logged once until a connection is accepted again */
};

typedef struct mb_req {
    mb_server       *srv;
    mb_profile      *prof;            /* the settings it runs with */
    conn_node       *node;
    evhtp_request_t *req;
    mb_route         route;
    int              bad_route;       /* 400: route_parse refused an id */
    v1_body         *body;
    uint64_t         body_bytes;
    char             request_id[MB_REQID_LEN + 1];
    char             client[INET6_ADDRSTRLEN + 8];
    const char      *method;
    char            *path;            /* for the access log */
    char           **hdrs, **hdrs_json, **hdrs_patch;
    struct timespec  start;
    mb_exchange     *exchange;
    mb_proxy        *proxy;           /* not a membership call: streamed upstream */
    int              versions;        /* GET / or /versions: the v1 entries are added */
    int              proxied;         /* passed to the upstream as it is */
    mb_call         *vcall;           /* its upstream call */
    struct event    *defer;           /* immediate replies are sent from here */
    mb_reply         pending;         /* the reply the defer event sends */
    int              complete;        /* on_request ran: the parser is paused on it */
    int              replied;
    int              released;        /* no longer counted in in_flight */
} mb_req;

/* ---- helpers ----------------------------------------------------------- */

static double ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static void format_client(const struct sockaddr *sa, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    /* "host:port" without printf (this runs for every request) */
    size_t hl = strlen(host);
    char digits[6];
    size_t d = sizeof(digits);
    do {
        digits[--d] = (char)('0' + port % 10);
        port /= 10;
    } while (port > 0 && d > 0);
    if (hl + 1 + (sizeof(digits) - d) + 1 > outlen) {
        snprintf(out, outlen, "%s", host);
        return;
    }
    memcpy(out, host, hl);
    out[hl] = ':';
    memcpy(out + hl + 1, digits + d, sizeof(digits) - d);
    out[hl + 1 + (sizeof(digits) - d)] = '\0';
}

static const char *conn_scheme(const evhtp_connection_t *conn)
{
    return conn && conn->ssl ? "https" : "http";
}

/* ---- profiles ---------------------------------------------------------- */

static void profile_free(mb_profile *p)
{
    mb_server *s = p->srv;
    for (mb_profile **pp = &s->profiles; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    if (p->free_ev)
        event_free(p->free_ev);
    if (p->svc)
        svc_auth_free(p->svc);
    upstream_free(p->up);
    if (p->release)
        p->release(p->release_arg);
    free(p);
}

static void on_profile_unused(evutil_socket_t fd, short what, void *arg)
{
    mb_profile *p = arg;
    (void)fd;
    (void)what;
    if (p->retired && p->refs == 0)
        profile_free(p);
}

/* A request lets go of its profile. An old profile is freed from the loop:
 * this may run inside a callback of its own upstream client. */
static void profile_unref(mb_profile *p)
{
    if (p != NULL && --p->refs == 0 && p->retired)
        event_active(p->free_ev, EV_TIMEOUT, 1);
}

static mb_profile *profile_new(mb_server *s, const mb_server_profile *init)
{
    mb_profile *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->conf = init->conf;
    p->up = init->up;
    p->svc = init->svc;
    p->release = init->release;
    p->release_arg = init->release_arg;
    p->srv = s;
    p->free_ev = event_new(s->base, -1, 0, on_profile_unused, p);
    if (p->free_ev == NULL) {
        free(p);
        return NULL;
    }
    p->next = s->profiles;
    s->profiles = p;
    return p;
}

/* ---- requests ---------------------------------------------------------- */

static mb_metric_route metric_route(const mb_req *r)
{
    if (r->proxied)
        return MR_PROXY;
    if (r->versions)
        return MR_VERSIONS;
    if (r->bad_route)
        return MR_OTHER;
    switch (r->route.op) {
    case OP_ADD:           return MR_ADD_MEMBER;
    case OP_REMOVE:        return MR_REMOVE_MEMBER;
    case OP_REPLACE:       return MR_REPLACE_MEMBERS;
    case OP_LIST:          return MR_LIST_MEMBERS;
    case OP_SHARED_IMAGES: return MR_SHARED_IMAGES;
    case OP_HEALTHCHECK:   return MR_HEALTHCHECK;
    default:               return MR_OTHER;
    }
}

/* The request is answered (or given up): the access log line, the metrics. */
static void req_log(const mb_req *r, int status, unsigned calls, unsigned failed)
{
    log_access(r->request_id, r->client, r->method, r->path, status, ms_since(&r->start),
               calls, failed);
    metrics_request(metric_route(r), status);
    metrics_worker_request(r->srv->worker);
}

/* r no longer holds up shutdown (its reply is out of our buffers, or it is
 * being freed). Idempotent. */
static void req_release(mb_req *r)
{
    if (r->released)
        return;
    r->released = 1;
    r->srv->in_flight--;
    metrics_in_flight(-1);
    if (r->srv->shutting_down && r->srv->in_flight == 0 && r->srv->drain_ev)
        event_active(r->srv->drain_ev, EV_TIMEOUT, 1);
}

static void req_free(mb_req *r)
{
    if (r == NULL)
        return;
    if (r->exchange)
        members_cancel(r->exchange);
    proxy_free(r->proxy);
    if (r->vcall)
        upstream_cancel(r->vcall);
    if (r->defer)
        event_free(r->defer);
    v1_body_free(r->body);
    free(r->pending.body);
    free(r->path);
    free(r->hdrs);
    free(r->hdrs_json);
    free(r->hdrs_patch);
    req_release(r);
    profile_unref(r->prof);
    free(r);
}

/* Takes the socket over from libevhtp (which then parses nothing more of
 * it: its hooks are unset) and answers with a JSON error that says
 * Connection: close, closing lingering (linger.c). The caller has untracked
 * the connection and freed its mb_req: the hooks that would are gone. */
static void take_over_and_close(evhtp_connection_t *conn, const char *request_id, int status,
                                const char *message)
{
    size_t blen = 0;
    char *body = reply_error_json(status, message, &blen);
    char *raw = NULL;
    int n = asprintf(&raw,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\n"
                     "X-Openstack-Request-Id: %s\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, reply_status_title(status), body ? blen : 0,
                     request_id, body ? body : "");
    struct bufferevent *bev = evhtp_connection_take_ownership(conn);

    free(body);
    if (n >= 0 && bev)
        linger_close(bev, raw, (size_t)n, LINGER_SECONDS, LINGER_MAX_BYTES);
    else if (bev)
        bufferevent_free(bev);
    if (n >= 0)
        free(raw);
}

static void untrack_conn(mb_server *s, evhtp_connection_t *conn);

/* Answers before the request was read whole and closes the connection:
 * the connection is taken over from libevhtp (which then stops parsing it)
 * and r is freed here, since the hooks that would free it are gone.
 * The caller returns EVHTP_RES_ERROR from its hook. */
static evhtp_res reply_and_close(mb_req *r, int status, const char *message)
{
    evhtp_request_t *req = r->req;
    evhtp_connection_t *conn = evhtp_request_get_connection(req);
    char rid[MB_REQID_LEN + 1];

    snprintf(rid, sizeof(rid), "%s", r->request_id);
    req_log(r, status, 0, 0);
    log_info("%s client=%s: %d %s, closing the connection", r->request_id, r->client, status, message);
    untrack_conn(r->srv, conn);
    req->cbarg = NULL;                 /* the request callback must not find r */
    req_free(r);
    take_over_and_close(conn, rid, status, message);
    return EVHTP_RES_ERROR;
}

static void add_header(evhtp_request_t *req, const char *k, const char *v)
{
    evhtp_headers_add_header(req->headers_out, evhtp_header_new(k, v, 1, 1));
}

/* Sends r->pending (status, body) and resumes the paused connection. */
static void send_pending(mb_req *r)
{
    evhtp_request_t *req = r->req;
    mb_reply *p = &r->pending;

    add_header(req, "X-Openstack-Request-Id", r->request_id);
    if (p->can_share_warning)
        add_header(req, "Warning", CAN_SHARE_WARNING);
    if (p->status == 405 && r->route.allow)
        add_header(req, "Allow", r->route.allow);
    if (p->body) {
        if (p->status != 200 || r->route.op != OP_HEALTHCHECK)
            add_header(req, "Content-Type", "application/json");
        else
            add_header(req, "Content-Type", "text/plain");
        if (req->method != htp_method_HEAD) {
            evbuffer_add(req->buffer_out, p->body, p->body_len);
        } else {
            char cl[24];                 /* what a GET would have carried */
            snprintf(cl, sizeof(cl), "%zu", p->body_len);
            add_header(req, "Content-Length", cl);
        }
    } else if (p->status == 204) {
        /* libevhtp adds Content-Length: 0 to every bodiless reply unless
         * the request is flagged chunked; a 204 must not carry it. */
        req->flags |= EVHTP_REQ_FLAG_CHUNKED;
    }
    if (r->srv->shutting_down)
        req->flags &= (uint16_t)~EVHTP_REQ_FLAG_KEEPALIVE;
    if (!(req->flags & EVHTP_REQ_FLAG_KEEPALIVE))
        r->node->closing = 1;   /* parse nothing after this reply */
    req_log(r, p->status, p->calls, p->failed);
    r->replied = 1;
    evhtp_send_reply(req, (evhtp_res)p->status);
    evhtp_request_resume(req);
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    send_pending(arg);
}

/* Replies from the loop, not from inside the parser's callback. */
static void reply_soon(mb_req *r, int status, char *body, size_t len)
{
    static const struct timeval zero = { 0, 0 };
    r->pending.status = status;
    r->pending.body = body;
    r->pending.body_len = len;
    if (r->defer == NULL)
        r->defer = evtimer_new(r->srv->base, on_defer, r);
    if (r->defer == NULL) {
        send_pending(r);
        return;
    }
    evtimer_add(r->defer, &zero);
}

static void reply_error_soon(mb_req *r, int status, const char *message)
{
    size_t len = 0;
    char *body = reply_error_json(status, message, &len);
    reply_soon(r, status, body, len);
}

/* ---- membership operations ---------------------------------------------- */

static void on_members_done(mb_reply *reply, void *arg)
{
    mb_req *r = arg;
    r->exchange = NULL;
    r->pending = *reply;
    send_pending(r);
}

static void start_members(mb_req *r)
{
    mb_members_env env = {
        .up = r->prof->up, .conf = r->prof->conf,
        .request_id = r->request_id, .client = r->client,
        .headers = r->hdrs, .headers_json = r->hdrs_json, .headers_patch = r->hdrs_patch,
        .svc = r->prof->svc,
    };
    if (r->hdrs == NULL || r->hdrs_json == NULL
        || (r->prof->conf->members.share_private_images && r->hdrs_patch == NULL
            && (r->route.op == OP_ADD || r->route.op == OP_REPLACE))
        || members_start(&env, &r->route, r->body, on_members_done, r, &r->exchange) != 0)
        reply_error_soon(r, 500, "out of memory");
}

/* ---- everything else: the proxy ------------------------------------------ */

/* The client's address without the port, for X-Forwarded-For. */
static void client_ip(const struct sockaddr *sa, char *out, size_t outlen)
{
    snprintf(out, outlen, "unknown");
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)outlen);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)outlen);
}

/* Answers and closes a request whose body is still arriving, from the loop
 * (not from a libevhtp hook): as on_deadline does. */
static void abort_request(mb_req *r, int status, const char *message)
{
    evhtp_connection_t *conn = evhtp_request_get_connection(r->req);
    char rid[MB_REQID_LEN + 1];

    snprintf(rid, sizeof(rid), "%s", r->request_id);
    req_log(r, status, 1, 1);
    log_info("%s client=%s: %d %s, closing the connection", r->request_id, r->client, status, message);
    conn->request->cbarg = NULL;
    untrack_conn(r->srv, conn);
    req_free(r);
    take_over_and_close(conn, rid, status, message);
    evhtp_connection_free(conn);               /* no hooks left; the socket is ours */
}

static void on_proxy_fail(void *arg, int status, const char *message, int body_done)
{
    mb_req *r = arg;
    if (!body_done) {
        abort_request(r, status, message);
        return;
    }
    proxy_free(r->proxy);
    r->proxy = NULL;
    r->pending.calls = 1;
    r->pending.failed = 1;
    reply_error_soon(r, status, message);
}

static void on_proxy_done(void *arg, int status, unsigned long long bytes, int cut)
{
    mb_req *r = arg;
    (void)bytes;
    if (cut || !(r->req->flags & EVHTP_REQ_FLAG_KEEPALIVE) || r->srv->shutting_down)
        r->node->closing = 1;   /* parse nothing after this reply */
    req_log(r, status, 1, cut ? 1 : 0);
    r->replied = 1;
}

static const proxy_hooks proxy_server_hooks = { on_proxy_fail, on_proxy_done };

/* ---- version discovery: the upstream's document, and v1 ----------------- */

static void on_versions(const mb_response *resp, void *arg)
{
    mb_req *r = arg;
    const char *host = evhtp_header_find(r->req->headers_in, "Host");
    char base[600];
    size_t len = 0;
    char *body = NULL;

    r->vcall = NULL;
    r->pending.calls = 1;
    if (resp->xfer != XFER_HTTP) {
        r->pending.failed = 1;
        reply_error_soon(r, resp->xfer == XFER_TIMEOUT ? 504 : 502, resp->error);
        return;
    }
    snprintf(base, sizeof(base), "%s://%s", conn_scheme(evhtp_request_get_connection(r->req)),
             host && *host && !strpbrk(host, "\"\\ /") ? host : r->prof->conf->server.listen);
    if (resp->status == 200 || resp->status == 300)
        body = versions_with_v1(resp->body, resp->body_len, r->prof->conf->upstream.url, base, &len);
    if (body == NULL) {                 /* not a version document: as it came */
        len = resp->body_len;
        if ((body = malloc(len + 1)) != NULL)
            memcpy(body, resp->body, len + 1);
    }
    r->pending.status = resp->status;
    r->pending.body = body;
    r->pending.body_len = body ? len : 0;
    send_pending(r);
}

static void start_versions(mb_req *r)
{
    mb_request call = {
        .method = "GET", .path = r->path, .headers = (const char *const *)r->hdrs,
    };
    if (r->hdrs == NULL || (r->vcall = upstream_call(r->prof->up, &call, on_versions, r)) == NULL)
        reply_error_soon(r, 500, "out of memory");
}

static evhtp_res start_proxy(mb_req *r, const mb_header *h, size_t n, const mb_framing *fr)
{
    char ip[INET6_ADDRSTRLEN];
    client_ip(evhtp_request_get_connection(r->req)->saddr, ip, sizeof(ip));
    char **hdrs = fwd_headers_proxy(h, n, r->request_id, ip,
                                    conn_scheme(evhtp_request_get_connection(r->req)));
    const char *uri = r->req->uri && r->req->uri->path && r->req->uri->path->full
                      ? r->req->uri->path->full : "/";
    char *target = NULL;
    /* the path as the client sent it, and its query */
    if (r->req->uri && r->req->uri->query_raw && *r->req->uri->query_raw) {
        if (asprintf(&target, "%s?%s", uri, (const char *)r->req->uri->query_raw) < 0)
            target = NULL;
    } else {
        target = strdup(uri);
    }
    if (hdrs == NULL || target == NULL) {
        free(hdrs);
        free(target);
        return reply_and_close(r, 500, "out of memory");
    }
    free(r->path);
    r->path = target;                 /* for the access log too */
    r->proxied = 1;
    proxy_env env = {
        .up = r->prof->up, .path = r->path, .headers = hdrs,
        .with_body = fr->chunked || fr->content_length > 0,
        .body_size = fr->chunked ? -1 : (long long)fr->content_length,
        .request_id = r->request_id, .client = r->client,
        .hooks = &proxy_server_hooks, .arg = r,
    };
    if ((r->proxy = proxy_start(r->req, &env)) == NULL)
        return reply_and_close(r, 500, "out of memory");
    return EVHTP_RES_OK;
}

/* ---- libevhtp hooks ------------------------------------------------------ */

/* The request is complete (body read): decide the reply. */
static void on_request(evhtp_request_t *req, void *arg)
{
    mb_req *r = arg;
    const mb_conf *conf;

    if (r == NULL || r->req != req)
        return;        /* taken over by reply_and_close */
    conf = r->prof->conf;
    r->complete = 1;
    r->node->in_request_line = 1;     /* what follows is the next request */
    r->node->in_headers = 0;
    r->node->in_chunked = 0;
    evtimer_del(r->node->deadline);   /* the request has arrived in time */
    evhtp_request_pause(req);

    if (r->proxy) {
        proxy_body_end(r->proxy);
        return;
    }
    if (r->versions) {
        start_versions(r);
        return;
    }
    if (r->bad_route) {
        reply_error_soon(r, 400, r->route.error);
        return;
    }
    switch (r->route.op) {
    case OP_METHOD_NOT_ALLOWED:
        reply_error_soon(r, 405, "method not allowed on this resource");
        return;
    case OP_HEALTHCHECK:
        reply_soon(r, 200, strdup("OK"), 2);
        return;
    case OP_NONE:
        reply_error_soon(r, 501, "only the Image API v1 membership calls are served by this gateway version");
        return;
    case OP_ADD:
    case OP_REPLACE:
        if (v1_body_finish(r->body) != 0) {
            reply_error_soon(r, v1_body_status(r->body), v1_body_error(r->body));
            return;
        }
        if (v1_body_can_share_true(r->body)) {
            if (conf->members.can_share == CAN_SHARE_REJECT) {
                reply_error_soon(r, 400, "can_share is not supported by Image API v2");
                return;
            }
            log_warning("%s client=%s: can_share true ignored (Image API v2 has no can_share)",
                        r->request_id, r->client);
        }
        start_members(r);
        return;
    default:
        start_members(r);
        return;
    }
}

static evhtp_res on_read(evhtp_request_t *req, struct evbuffer *buf, void *arg)
{
    mb_req *r = arg;
    size_t n = evbuffer_get_length(buf);

    r->body_bytes += n;
    if (r->proxy) {
        /* client_timeout is the longest pause between two reads of a
         * proxied body; none while the proxy holds the client back */
        struct timeval tv = { r->prof->conf->server.client_timeout, 0 };
        proxy_body(r->proxy, buf);
        if (evhtp_request_get_connection(req)->flags & EVHTP_CONN_FLAG_PAUSED)
            evtimer_del(r->node->deadline);
        else
            evtimer_add(r->node->deadline, &tv);
        return EVHTP_RES_OK;
    }
    if (r->body_bytes > (uint64_t)r->prof->conf->server.max_body_bytes) {
        evbuffer_drain(buf, n);
        return reply_and_close(r, 413, "request body larger than max_body_bytes");
    }
    if (r->body) {
        struct evbuffer_iovec vec[16];
        struct evbuffer_ptr pos;
        size_t left = n;
        evbuffer_ptr_set(buf, &pos, 0, EVBUFFER_PTR_SET);
        while (left > 0 && v1_body_status(r->body) == 0) {
            int k = evbuffer_peek(buf, (ev_ssize_t)left, &pos, vec, 16);
            if (k <= 0)
                break;
            for (int i = 0; i < k && i < 16 && left > 0; i++) {
                size_t len = vec[i].iov_len < left ? vec[i].iov_len : left;
                v1_body_feed(r->body, vec[i].iov_base, len);
                left -= len;
            }
            evbuffer_ptr_set(buf, &pos, n - left, EVBUFFER_PTR_SET);
        }
    }
    evbuffer_drain(buf, n);   /* never let the body pile up in buffer_in */
    return EVHTP_RES_OK;
}

static evhtp_res on_request_fini(evhtp_request_t *req, void *arg)
{
    mb_req *r = arg;
    (void)req;
    if (r && !r->replied)
        log_info("%s client=%s: connection closed before the reply", r->request_id, r->client);
    req_free(r);
    return EVHTP_RES_OK;
}

static int collect_header(evhtp_kv_t *kv, void *arg)
{
    struct { mb_header h[MAX_HEADERS]; size_t n; int overflow; } *c = arg;
    if (c->n == MAX_HEADERS) {
        c->overflow = 1;
        return 1;
    }
    c->h[c->n].name = kv->key;
    c->h[c->n].nlen = kv->klen;
    c->h[c->n].value = kv->val ? kv->val : "";
    c->h[c->n].vlen = kv->val ? kv->vlen : 0;
    c->n++;
    return 0;
}

static const char *find_header(const mb_header *h, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++) {
        if (h[i].nlen == len && strncasecmp(h[i].name, name, len) == 0)
            return h[i].value;
    }
    return NULL;
}

static evhtp_res on_headers(evhtp_request_t *req, evhtp_headers_t *headers, void *arg)
{
    conn_node *node = arg;
    mb_server *s = node->srv;
    const mb_conf *conf = s->cur->conf;
    struct { mb_header h[MAX_HEADERS]; size_t n; int overflow; } hs = { .n = 0 };
    mb_framing fr;
    const char *err, *rid;
    mb_req *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return EVHTP_RES_ERROR;
    r->srv = s;
    r->prof = s->cur;
    r->prof->refs++;
    r->node = node;
    r->req = req;
    s->in_flight++;
    metrics_in_flight(1);
    clock_gettime(CLOCK_MONOTONIC, &r->start);
    format_client(evhtp_request_get_connection(req)->saddr, r->client, sizeof(r->client));
    r->method = htparser_get_methodstr_m(req->method);
    if (r->method == NULL)
        r->method = "?";
    r->path = strdup(req->uri && req->uri->path && req->uri->path->full ? req->uri->path->full : "");
    evhtp_request_set_hook(req, evhtp_hook_on_read, (evhtp_hook)on_read, r);
    evhtp_request_set_hook(req, evhtp_hook_on_request_fini, (evhtp_hook)on_request_fini, r);
    req->cbarg = r;

    evhtp_headers_for_each(headers, collect_header, &hs);
    rid = find_header(hs.h, hs.n, "X-Openstack-Request-Id");
    if (rid && reqid_valid(rid, strlen(rid)))
        snprintf(r->request_id, sizeof(r->request_id), "%s", rid);
    else
        reqid_new(r->request_id);

    if (r->path == NULL)
        return reply_and_close(r, 500, "out of memory");
    if (hs.overflow)
        return reply_and_close(r, 431, "too many header fields");
    err = framing_check(hs.h, hs.n, req->proto == EVHTP_PROTO_11 ? 1 : 0, &fr);
    if (err)
        return reply_and_close(r, 400, err);
    node->in_chunked = fr.chunked;    /* its chunk sizes are checked by the guard */
    memset(&node->chunk, 0, sizeof(node->chunk));
    int routed = route_parse(r->method, r->path, &r->route);
    if (routed == 0 && r->route.kind == ROUTE_OTHER && r->route.op == OP_NONE) {
        if (req->method == htp_method_GET && !fr.chunked && fr.content_length <= 0
            && (strcmp(r->path, "/") == 0 || strcmp(r->path, "/versions") == 0)) {
            char ip[INET6_ADDRSTRLEN];
            client_ip(evhtp_request_get_connection(req)->saddr, ip, sizeof(ip));
            r->versions = 1;
            r->hdrs = fwd_headers_proxy(hs.h, hs.n, r->request_id, ip,
                                        conn_scheme(evhtp_request_get_connection(req)));
            return EVHTP_RES_OK;
        }
        return start_proxy(r, hs.h, hs.n, &fr);   /* max_body_bytes is for membership bodies */
    }
    if (fr.content_length > conf->server.max_body_bytes)
        return reply_and_close(r, 413, "request body larger than max_body_bytes");

    if (routed != 0) {
        r->bad_route = 1;   /* answered 400 once the body is read */
        return EVHTP_RES_OK;
    }

    if (r->route.op == OP_ADD || r->route.op == OP_REPLACE) {
        r->body = v1_body_new(r->route.op == OP_ADD ? V1_BODY_ADD : V1_BODY_REPLACE,
                              (size_t)conf->members.max_per_request,
                              r->route.op == OP_ADD ? r->route.member_id : NULL);
        if (r->body == NULL)
            return reply_and_close(r, 500, "out of memory");
    }
    if (r->route.op == OP_ADD || r->route.op == OP_REPLACE || r->route.op == OP_LIST
        || r->route.op == OP_REMOVE || r->route.op == OP_SHARED_IMAGES) {
        r->hdrs = fwd_headers_build(hs.h, hs.n, r->request_id, NULL);
        r->hdrs_json = fwd_headers_build(hs.h, hs.n, r->request_id, "application/json");
        if (conf->members.share_private_images
            && (r->route.op == OP_ADD || r->route.op == OP_REPLACE))
            r->hdrs_patch = fwd_headers_build(hs.h, hs.n, r->request_id,
                                              "application/openstack-images-v2.1-json-patch");
    }
    return EVHTP_RES_OK;
}

/* ---- connections ------------------------------------------------------- */

static void untrack_conn(mb_server *s, evhtp_connection_t *conn)
{
    for (conn_node *n = s->conns; n; n = n->next) {
        if (n->conn != conn)
            continue;
        if (n->prev)
            n->prev->next = n->next;
        else
            s->conns = n->next;
        if (n->next)
            n->next->prev = n->prev;
        if (n->deadline)
            event_free(n->deadline);
        free(n->held);
        free(n);
        metrics_connections(-1);
        return;
    }
}

/* libevhtp frees a connection whose request it could not parse (a folded
 * header line, a bad request line, a bad chunk size) without a word.
 * Answer 400 instead: take the socket over and close it lingering. */
static void answer_parse_error(evhtp_connection_t *conn)
{
    mb_req *r = conn->request ? conn->request->cbarg : NULL;
    char rid[MB_REQID_LEN + 1], client[INET6_ADDRSTRLEN + 8];
    const char *msg = "malformed HTTP request";

    if (r) {
        snprintf(rid, sizeof(rid), "%s", r->request_id);
        conn->request->cbarg = NULL;
        req_free(r);                 /* its fini hook is about to be unset */
    } else {
        reqid_new(rid);
    }
    format_client(conn->saddr, client, sizeof(client));
    log_info("%s client=%s: 400 %s (%s), closing the connection", rid, client, msg,
             htparser_get_strerror(conn->parser));
    log_access(rid, client, "?", "", 400, 0.0, 0, 0);
    metrics_request(MR_OTHER, 400);
    take_over_and_close(conn, rid, 400, msg);
}

static evhtp_res on_conn_fini(evhtp_connection_t *conn, void *arg)
{
    conn_node *n = arg;
    mb_server *s = n->srv;
    htpparse_error err = conn->parser ? htparser_get_error(conn->parser) : htparse_error_none;

    mb_req *r = conn->request ? conn->request->cbarg : NULL;

    /* on_request pauses the connection, which makes the parser report
     * htparse_error_user: that is not a malformed request. Nor is anything
     * the client sent after a reply that said Connection: close. */
    if ((err == htparse_error_user && r && r->complete) || n->closing)
        err = htparse_error_none;
    untrack_conn(s, conn);
    if (err != htparse_error_none && conn->bev)
        answer_parse_error(conn);
    return EVHTP_RES_OK;
}

/* client_timeout passed between the first byte of a request and its last:
 * a client sending headers or a membership body too slowly (libevent's read
 * timeout only bounds the gap between two reads). Answer 408 and close. */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    conn_node *n = arg;
    evhtp_connection_t *conn = n->conn;
    mb_server *s = n->srv;
    mb_req *r = conn->request ? conn->request->cbarg : NULL;
    char rid[MB_REQID_LEN + 1], client[INET6_ADDRSTRLEN + 8];

    int status = n->refuse_status ? n->refuse_status : 408;
    const char *why = n->refuse_status ? n->refuse_why : "request not received within client_timeout";

    (void)fd;
    (void)what;
    if ((conn->request == NULL || (r && r->replied)) && n->held_len == 0 && !n->refuse_status) {
        /* idle after a reply, no byte of a new request: just close */
        evhtp_connection_free(conn);   /* on_conn_fini untracks it */
        return;
    }
    if (r) {
        snprintf(rid, sizeof(rid), "%s", r->request_id);
        req_log(r, status, 0, 0);
        conn->request->cbarg = NULL;
        req_free(r);
    } else {
        reqid_new(rid);
    }
    format_client(conn->saddr, client, sizeof(client));
    if (r == NULL) {
        log_access(rid, client, "?", "", status, 0.0, 0, 0);
        metrics_request(MR_OTHER, status);
    }
    log_info("%s client=%s: %d %s, closing the connection", rid, client, status, why);
    untrack_conn(s, conn);                      /* frees n and this timer */
    take_over_and_close(conn, rid, status, why);
    evhtp_connection_free(conn);                /* no hooks left; the socket is ours */
}

static evhtp_res on_headers_start(evhtp_request_t *req, void *arg)
{
    conn_node *n = arg;
    struct timeval tv = { n->srv->cur->conf->server.client_timeout, 0 };
    if (n->closing) {
        /* libevhtp goes on parsing what was pipelined after a reply that
         * said Connection: close: stop here, close without a reset */
        evhtp_connection_t *conn = evhtp_request_get_connection(req);
        untrack_conn(n->srv, conn);
        linger_close(evhtp_connection_take_ownership(conn), "", 0, LINGER_SECONDS, LINGER_MAX_BYTES);
        return EVHTP_RES_ERROR;
    }
    evtimer_add(n->deadline, &tv);
    return EVHTP_RES_OK;
}

/* libevhtp's write callback: the output buffer has been flushed. After a
 * reply, the request no longer holds up shutdown (libevhtp may keep it
 * until the next request begins), and client_timeout bounds the wait for
 * the next request line (on_headers_start restarts it for the headers). */
static evhtp_res on_conn_write(evhtp_connection_t *conn, void *arg)
{
    conn_node *n = arg;
    mb_req *r = conn->request ? conn->request->cbarg : NULL;
    struct timeval tv = { n->srv->cur->conf->server.client_timeout, 0 };
    if (r && r->replied) {
        req_release(r);
        evtimer_add(n->deadline, &tv);
    }
    return EVHTP_RES_OK;
}

/* The client's connection failed (reset, closed). libevhtp frees a paused
 * connection only when it is resumed; a proxied request stays paused until
 * its response is out, which a gone client never lets happen (the download
 * waits for the client to drain): resume it, so that it is freed now and
 * the upstream transfer cancelled. */
static evhtp_res on_conn_error(evhtp_connection_t *conn, evhtp_error_flags errtype, void *arg)
{
    mb_req *r = conn->request ? conn->request->cbarg : NULL;
    (void)errtype;
    (void)arg;
    if (r && r->proxy && (conn->flags & EVHTP_CONN_FLAG_PAUSED))
        evhtp_request_resume(conn->request);   /* its resume event frees the connection */
    return EVHTP_RES_OK;
}

static evhtp_res on_accept(evhtp_connection_t *conn, void *arg)
{
    mb_server *s = arg;
    conn_node *n;
    if (s->accept_failing) {
        s->accept_failing = 0;
        log_info("accepting connections again");
    }
    if (s->shutting_down || (n = calloc(1, sizeof(*n))) == NULL)
        return EVHTP_RES_ERROR;
    if ((n->deadline = evtimer_new(s->base, on_deadline, n)) == NULL) {
        free(n);
        return EVHTP_RES_ERROR;
    }
    n->conn = conn;
    n->srv = s;
    n->in_request_line = 1;
    metrics_connections(1);
    n->next = s->conns;
    if (s->conns)
        s->conns->prev = n;
    s->conns = n;
    struct timeval tv = { s->cur->conf->server.client_timeout, 0 };
    evtimer_add(n->deadline, &tv);            /* bounds the first request line */
    evhtp_connection_set_hook(conn, evhtp_hook_on_write, (evhtp_hook)on_conn_write, n);
    evhtp_connection_set_hook(conn, evhtp_hook_on_headers_start, (evhtp_hook)on_headers_start, n);
    evhtp_connection_set_hook(conn, evhtp_hook_on_headers, (evhtp_hook)on_headers, n);
    evhtp_connection_set_hook(conn, evhtp_hook_on_connection_fini, (evhtp_hook)on_conn_fini, n);
    evhtp_connection_set_hook(conn, evhtp_hook_on_conn_error, (evhtp_hook)on_conn_error, n);
    return EVHTP_RES_OK;
}

/* ---- libevhtp parser guard ---------------------------------------------- */

/* libevhtp 1.2.18's parser reads one byte past the data it is given when a
 * chunk ends inside the request target (parser.c, states s_check_uri and
 * s_uri: `ch = data[++i]` is read before `i < len` is tested), and takes
 * that stray byte into the path: "PUT .../members/ten" followed by a second
 * read "ant1 HTTP/1.1" became member "tensant1" upstream. Debian's package
 * has the bug, so the gateway makes sure the parser never sees a request
 * line in pieces: this definition of htparser_run comes before libevhtp's
 * in symbol lookup, holds back a request line until its LF has arrived, and
 * then calls libevhtp's own htparser_run. Whatever is held is counted as
 * consumed, so libevhtp drains it; it is parsed with the next bytes.
 * (Within a request line, a chunk that ends with a complete line cannot end
 * inside the target.) A request line over MAX_REQUEST_LINE bytes is 414.
 *
 * The same place scans the raw header block for what libevhtp's parser
 * loses before any hook sees it (framing_scan_headers): a NUL (it cuts the
 * value there), an obs-fold line starting with HTAB (it joins it to the
 * line before), a bare CR. Those are answered 400 and the connection
 * closed (SPEC section 3). */

typedef size_t (*htparser_run_fn)(htparser *, htparse_hooks *, const char *, size_t);

static conn_node *node_of_parser(htparser *p)
{
    evhtp_connection_t *c = htparser_get_userdata(p);
    if (c == NULL || c->type != evhtp_type_server || c->hooks == NULL
        || c->hooks->on_headers != (evhtp_hook_headers_cb)on_headers)
        return NULL;
    return c->hooks->on_headers_arg;
}

/* Offset just past the LF ending the request line, or 0 when it has not
 * all arrived. (Leading empty lines were dropped before.) */
static size_t request_line_end(const char *d, size_t len)
{
    const char *lf = memchr(d, '\n', len);
    return lf ? (size_t)(lf - d) + 1 : 0;
}

/* Why a request line d[0..len) (without its LF) is refused, or NULL. */
static const char *request_line_refusal(const char *d, size_t len, int complete, int *status)
{
    size_t bytes = len;
    if (bytes > 0 && d[bytes - 1] == '\r')
        bytes--;                      /* the CR of CR LF (or, not yet complete, maybe) */
    if (bytes > MAX_REQUEST_LINE) {
        *status = 414;
        return "request line longer than " MB_STR(MAX_REQUEST_LINE) " bytes";
    }
    if (complete && memchr(d, '\0', len)) {
        *status = 400;
        return "NUL in the request line";
    }
    return NULL;
}

/* Refuses the request: the reply goes out from the loop (on_deadline), and
 * the parser is given nothing more of this connection. */
static size_t guard_refuse(conn_node *n, int status, const char *why, htparser_run_fn real_run,
                           htparser *p, htparse_hooks *hooks, const char *data, size_t len)
{
    n->refuse_status = status;
    n->refuse_why = why;
    event_active(n->deadline, EV_TIMEOUT, 1);
    /* An empty run still clears the error the last pause left in the
     * parser, as a real run would; else libevhtp drops the connection. */
    real_run(p, hooks, data, 0);
    return len;
}

/* Scans header-block bytes; -1 when refused (why set). *head_end is the
 * offset just past the header block when it ends in d, else 0. */
static int guard_scan(conn_node *n, const char *d, size_t len, const char **why,
                      size_t *head_end)
{
    *head_end = framing_scan_headers(&n->scan, d, len, why);
    if (*head_end > 0)
        n->in_headers = 0;
    return *why ? -1 : 0;
}

static htparser_run_fn real_run;
static pthread_once_t real_run_once = PTHREAD_ONCE_INIT;

/* Bytes of a chunked body: its chunk-size lines are checked before the
 * parser sees them (framing_scan_chunked: libevhtp would wrap an oversized
 * chunk size and read the rest as the next request). The scan state moves
 * on by what the parser consumed, which is less than len when it paused. */
static size_t run_chunked(conn_node *n, htparser *p, htparse_hooks *hooks,
                          const char *data, size_t len)
{
    mb_chunk_scan before = n->chunk, ahead = n->chunk;
    const char *why = framing_scan_chunked(&ahead, data, len);
    if (why)
        return guard_refuse(n, 400, why, real_run, p, hooks, data, len);
    size_t done = real_run(p, hooks, data, len);
    if (node_of_parser(p) != n)
        return done;                    /* taken over by a hook: n is gone */
    if (done == len) {
        n->chunk = ahead;
    } else {
        n->chunk = before;
        (void)framing_scan_chunked(&n->chunk, data, done);
    }
    return done;
}

/* Runs the parser on buf[0..total) whose header block ends at head_end (0:
 * not in buf). A chunked body that follows in the same buffer goes through
 * run_chunked: on_headers, run first, says whether the body is chunked. */
static size_t run_headers(conn_node *n, htparser *p, htparse_hooks *hooks,
                          const char *buf, size_t total, size_t head_end)
{
    if (head_end == 0 || head_end >= total)
        return real_run(p, hooks, buf, total);
    size_t done = real_run(p, hooks, buf, head_end);
    if (done < head_end || htparser_get_error(p) != htparse_error_none
        || node_of_parser(p) != n)
        return done;                    /* paused, refused or taken over */
    if (n->in_chunked)
        return done + run_chunked(n, p, hooks, buf + done, total - done);
    return done + real_run(p, hooks, buf + done, total - done);
}

static void find_real_run(void)
{
    real_run = (htparser_run_fn)dlsym(RTLD_NEXT, "htparser_run");
}

size_t htparser_run(htparser *p, htparse_hooks *hooks, const char *data, size_t len)
{
    conn_node *n;
    const char *buf, *why = NULL;
    size_t held, total, done, line_end;

    pthread_once(&real_run_once, find_real_run);
    if (real_run == NULL)
        abort();   /* libevhtp is linked: cannot happen */
    n = node_of_parser(p);
    if (n && n->refuse_status) {
        real_run(p, hooks, data, 0);
        return len;                                   /* discarded: the refusal is on its way */
    }
    if (n && n->in_chunked && !n->in_request_line && !n->in_headers)
        return run_chunked(n, p, hooks, data, len);
    if (n == NULL || (!n->in_request_line && !n->in_headers))
        return real_run(p, hooks, data, len);
    if (n->in_headers) {
        size_t head_end;
        if (guard_scan(n, data, len, &why, &head_end) != 0)
            return guard_refuse(n, 400, why, real_run, p, hooks, data, len);
        return run_headers(n, p, hooks, data, len, head_end);
    }

    /* Empty lines before a request line are ignored (RFC 9112 2.2); libevhtp
     * would not answer the request behind them, so they are consumed here. */
    size_t skip = 0;
    if (n->held_len == 0) {
        while (skip < len && (data[skip] == '\r' || data[skip] == '\n'))
            skip++;
        if (skip == len) {
            real_run(p, hooks, data, 0);              /* clears the pause's error */
            return len;
        }
    }
    data += skip;
    len -= skip;

    held = n->held_len;
    total = held + len;
    /* HELD_SLACK: libevhtp's header-value loop reads the byte after the
     * data it is given (unused, but outside a block of our own; valgrind) */
    if (held > 0) {
        char *grown = realloc(n->held, total + HELD_SLACK);
        if (grown == NULL)
            return guard_refuse(n, 500, "out of memory", real_run, p, hooks, data, len) + skip;
        memcpy(grown + held, data, len);
        grown[total] = '\0';
        n->held = grown;
        n->held_len = total;
        buf = grown;
    } else {
        buf = data;
    }
    line_end = request_line_end(buf, total);
    int status = 0;
    why = request_line_refusal(buf, line_end ? line_end - 1 : total, line_end != 0, &status);
    if (why)
        return guard_refuse(n, status, why, real_run, p, hooks, data, len) + skip;
    if (line_end == 0) {
        if (held == 0) {
            char *copy = malloc(len + HELD_SLACK);
            if (copy == NULL)
                return guard_refuse(n, 500, "out of memory", real_run, p, hooks, data, len) + skip;
            memcpy(copy, data, len);
            copy[len] = '\0';
            n->held = copy;
            n->held_len = len;
        }
        real_run(p, hooks, data, 0);                  /* clears the pause's error, parses nothing */
        return len + skip;                            /* all "consumed": held */
    }
    n->in_request_line = 0;
    n->in_headers = 1;
    memset(&n->scan, 0, sizeof(n->scan));
    /* A new request starts with a fresh parser. libevhtp re-initialises it
     * only between keep-alive requests it reads one at a time, not for a
     * pipelined one, which then inherits the last message's flags: after a
     * chunked body with a trailer section the next request was misparsed. */
    void *conn = htparser_get_userdata(p);
    htparser_init(p, htp_type_request);
    htparser_set_userdata(p, conn);
    size_t head_end;
    if (guard_scan(n, buf + line_end, total - line_end, &why, &head_end) != 0)
        return guard_refuse(n, 400, why, real_run, p, hooks, data, len) + skip;
    /* The hooks may free n (a reply that closes the connection): take the
     * held bytes off it first, and touch n no more. */
    char *own = held > 0 ? n->held : NULL;
    n->held = NULL;
    n->held_len = 0;
    done = run_headers(n, p, hooks, buf, total, head_end ? line_end + head_end : 0);
    free(own);
    return (done >= held ? done - held : 0) + skip;
}

/* ---- lifecycle ----------------------------------------------------------- */

/* accept() failed with an error that is not transient (EMFILE, ENFILE,
 * ENOBUFS...): the connection stays in the backlog and the listening socket
 * stays readable, so libevent would call accept() again at once, in a busy
 * loop that logs a warning each time. Stop listening for a moment instead;
 * the connections already open go on being served and, as they close,
 * free descriptors for the waiting ones. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    evhtp_t *htp = arg;
    mb_server *s = htp->arg;
    static const struct timeval pause = { 0, ACCEPT_PAUSE_MS * 1000 };
    int err = EVUTIL_SOCKET_ERROR();

    evconnlistener_disable(lev);
    evtimer_add(s->accept_resume, &pause);
    if (!s->accept_failing) {
        s->accept_failing = 1;
        log_warning("cannot accept connections: %s; trying again every %d ms",
                    evutil_socket_error_to_string(err), ACCEPT_PAUSE_MS);
    }
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    mb_server *s = arg;
    (void)fd;
    (void)what;
    if (!s->shutting_down && s->htp->server)
        evconnlistener_enable(s->htp->server);
}

static void on_drained(evutil_socket_t fd, short what, void *arg)
{
    mb_server *s = arg;
    (void)fd;
    (void)what;
    if (s->in_flight == 0 && s->drained)
        s->drained(s->drained_arg);
}

mb_server *server_new(struct event_base *base, unsigned worker, const mb_server_profile *p)
{
    mb_server *s = calloc(1, sizeof(*s));
    struct timeval tv = { p->conf->server.client_timeout, 0 };
    if (s == NULL)
        return NULL;
    s->base = base;
    s->worker = worker;
    s->htp = evhtp_new(base, s);        /* htp->arg: for on_accept_error */
    s->drain_ev = event_new(base, -1, 0, on_drained, s);
    s->accept_resume = evtimer_new(base, on_accept_resume, s);
    if (s->htp == NULL || s->drain_ev == NULL || s->accept_resume == NULL
        || (s->cur = profile_new(s, p)) == NULL) {
        server_free(s);
        return NULL;
    }
    evhtp_set_gencb(s->htp, on_request, NULL);
    evhtp_set_post_accept_cb(s->htp, on_accept, s);
    evhtp_set_timeouts(s->htp, &tv, &tv);
    return s;
}

int server_reconfigure(mb_server *s, const mb_server_profile *p)
{
    mb_profile *old = s->cur, *now = profile_new(s, p);
    struct timeval tv = { p->conf->server.client_timeout, 0 };
    if (now == NULL)
        return -1;
    s->cur = now;
    evhtp_set_timeouts(s->htp, &tv, &tv);       /* connections accepted from now on */
    old->retired = 1;
    if (old->refs == 0)
        event_active(old->free_ev, EV_TIMEOUT, 1);
    return 0;
}

void server_set_tls(mb_server *s, SSL_CTX *ctx)
{
    /* libevhtp makes each accepted connection's SSL from htp->ssl_ctx (and
     * frees it in evhtp_free); connections made before keep theirs. */
    if (ctx)
        SSL_CTX_up_ref(ctx);
    if (s->htp->ssl_ctx)
        SSL_CTX_free(s->htp->ssl_ctx);
    s->htp->ssl_ctx = ctx;
}

int server_listen(mb_server *s)
{
    char addr[300];
    const mb_conf *c = s->cur->conf;
    const char *host = c->server.listen_host;
    snprintf(addr, sizeof(addr), "%s%s", strchr(host, ':') ? "ipv6:" : "", host);
    /* every worker binds its own socket to the address; the kernel spreads
     * the connections over them */
    evhtp_enable_flag(s->htp, EVHTP_FLAG_ENABLE_REUSEPORT);
    if (evhtp_bind_socket(s->htp, addr, (uint16_t)c->server.listen_port, BACKLOG) != 0) {
        log_error("cannot listen on %s: %m", c->server.listen);
        return -1;
    }
    evconnlistener_set_error_cb(s->htp->server, on_accept_error);
    return 0;
}

void server_shutdown(mb_server *s, void (*drained)(void *arg), void *arg)
{
    s->shutting_down = 1;
    s->drained = drained;
    s->drained_arg = arg;
    evhtp_unbind_socket(s->htp);
    event_del(s->accept_resume);
    log_info("shutting down: %zu request%s in flight", s->in_flight, s->in_flight == 1 ? "" : "s");
    event_active(s->drain_ev, EV_TIMEOUT, 1);
}

void server_abort(mb_server *s)
{
    for (conn_node *n = s->conns, *next; n; n = next) {
        evhtp_request_t *req = n->conn->request;
        mb_req *r = req ? req->cbarg : NULL;
        next = n->next;
        if (r && r->proxy && !r->replied && !proxy_responding(r->proxy)) {
            static const char msg[] = "the gateway is shutting down: send the request again";
            log_warning("%s client=%s: shutting down before the upstream answered; answering 503",
                        r->request_id, r->client);
            proxy_free(r->proxy);
            r->proxy = NULL;
            if (r->complete)
                reply_error_soon(r, 503, msg);
            else
                abort_request(r, 503, msg);      /* frees r and n */
            continue;
        }
        if (r == NULL || r->exchange == NULL || r->replied)
            continue;
        members_cancel(r->exchange);
        r->exchange = NULL;
        log_warning("%s client=%s: shutting down before the upstream calls finished; answering 503",
                    r->request_id, r->client);
        r->pending.status = 503;
        r->pending.body = reply_error_json(503, "the gateway is shutting down; "
                                           "some member operations may have been done: send the request again",
                                           &r->pending.body_len);
        send_pending(r);
    }
}

size_t server_in_flight(const mb_server *s)
{
    return s->in_flight;
}

void server_free(mb_server *s)
{
    if (s == NULL)
        return;
    while (s->conns)
        evhtp_connection_free(s->conns->conn);   /* its fini hook untracks it */
    linger_close_all();
    if (s->htp) {
        if (!s->shutting_down)
            evhtp_unbind_socket(s->htp);
        evhtp_free(s->htp);
    }
    if (s->drain_ev)
        event_free(s->drain_ev);
    if (s->accept_resume)
        event_free(s->accept_resume);
    while (s->profiles)
        profile_free(s->profiles);
    free(s);
}
