/* proxy: every request that is not a v1 membership call, streamed to the
 * upstream and back (see proxy.h).
 *
 * Backpressure, upload: the client's body bytes wait in p->in until
 * the upstream call pulls them; above IN_HIGH the client's connection is
 * paused, and resumed when the call has taken what was held. Download:
 * response bytes go straight to the client connection's output buffer;
 * above OUT_HIGH the upstream transfer is paused, and resumed once the
 * buffer has drained below OUT_LOW (an evbuffer callback notices, an event
 * resumes: the resume may hand over data right away, which must not happen
 * inside libevent's buffer callback).
 *
 * The response head is sent only once the request was read whole (libevhtp
 * cannot answer a request it is still parsing); until then its body waits
 * in the upstream call, paused. */
#include "proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <strings.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "fwd_headers.h"
#include "log.h"

#define IN_HIGH  (256 * 1024)    /* request body bytes held before the client is paused */
#define OUT_HIGH (1024 * 1024)   /* response bytes queued before the upstream is paused */
#define OUT_LOW  (256 * 1024)
#define GONE_CHECK_MS 1000       /* how often a paused download looks for its client */

struct mb_proxy {
    evhtp_request_t   *req;
    proxy_env          env;
    mb_call           *call;
    struct evbuffer   *in;             /* request body not yet taken by the upstream call */
    struct event      *kick;           /* runs the deferred work below */
    struct event      *gone_check;     /* while the download waits for the client */
    struct evbuffer   *out_watched;    /* the output buffer watched for draining */
    struct evbuffer_cb_entry *out_cb;
    int                body_done;      /* the client's request was read whole */
    int                client_paused;  /* we paused the client's connection */
    int                head_held;      /* a response head waits for body_done */
    int                head_sent;
    int                no_body;        /* HEAD, 204, 304 */
    int                chunked;        /* the reply to the client is chunked */
    int                want_resume;    /* resume the download (kick) */
    int                status;
    char             **held;           /* the head's kept header lines */
    size_t             nheld;
    int                upstream_done;  /* on_done ran */
    mb_xfer            xfer;
    char               error[256];
    unsigned long long bytes;
};

static void proxy_out_changed(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg);

/* ---- helpers ------------------------------------------------------------- */

static void held_free(mb_proxy *p)
{
    for (size_t i = 0; i < p->nheld; i++)
        free(p->held[i]);
    free(p->held);
    p->held = NULL;
    p->nheld = 0;
}

static void unwatch_output(mb_proxy *p)
{
    if (p->gone_check)
        event_del(p->gone_check);
    if (p->out_cb) {
        evbuffer_remove_cb_entry(p->out_watched, p->out_cb);
        p->out_cb = NULL;
        p->out_watched = NULL;
    }
}

/* A download paused for a client that does not read: libevhtp does not
 * read a paused connection, so it would never learn that the client went
 * away (and the transfer would wait for ever). Look at the socket. */
static void on_gone_check(evutil_socket_t fd, short what, void *arg)
{
    mb_proxy *p = arg;
    struct bufferevent *bev = evhtp_request_get_bev(p->req);
    char c;
    (void)fd;
    (void)what;
    if (bev == NULL || p->out_cb == NULL)
        return;
    ssize_t n = recv(bufferevent_getfd(bev), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        log_info("%s client=%s: the client went away during the response to %s",
                 p->env.request_id, p->env.client, p->env.path);
        event_del(p->gone_check);
        evhtp_request_resume(p->req);   /* libevhtp then sees the close and frees the request */
    }
}

static void kick_soon(mb_proxy *p)
{
    event_active(p->kick, EV_TIMEOUT, 1);
}

static struct evbuffer *client_output(mb_proxy *p)
{
    struct bufferevent *bev = evhtp_request_get_bev(p->req);
    return bev ? bufferevent_get_output(bev) : NULL;
}

static void add_header(evhtp_request_t *req, const char *name, size_t nlen, const char *value)
{
    char *n = strndup(name, nlen);
    if (n == NULL)
        return;
    evhtp_header_t *h = evhtp_header_new(n, value, 1, 1);
    free(n);
    if (h)
        evhtp_headers_add_header(req->headers_out, h);
}

/* ---- the response head ----------------------------------------------------- */

/* Sends the status line and headers: the upstream's Content-Length kept,
 * else chunked (HTTP/1.1) or delimited by the close (HTTP/1.0). */
static void send_head(mb_proxy *p)
{
    evhtp_request_t *req = p->req;
    const char *cl = NULL;
    int have_reqid = 0;

    for (size_t i = 0; i < p->nheld; i++) {
        const char *line = p->held[i], *colon = strchr(line, ':');
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if ((size_t)(colon - line) == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
            cl = v;
            continue;
        }
        if ((size_t)(colon - line) == 22 && strncasecmp(line, "X-Openstack-Request-Id", 22) == 0)
            have_reqid = 1;
        add_header(req, line, (size_t)(colon - line), v);
    }
    if (!have_reqid)
        add_header(req, "X-Openstack-Request-Id", 22, p->env.request_id);
    if (p->no_body) {
        if (cl && req->method == htp_method_HEAD)
            add_header(req, "Content-Length", 14, cl);   /* what a GET would carry */
        else
            req->flags |= EVHTP_REQ_FLAG_CHUNKED;       /* stops libevhtp's "Content-Length: 0" */
        evhtp_send_reply_start(req, (evhtp_res)p->status);
    } else if (cl) {
        add_header(req, "Content-Length", 14, cl);
        evhtp_send_reply_start(req, (evhtp_res)p->status);
    } else if (req->proto == EVHTP_PROTO_11) {
        p->chunked = 1;
        evhtp_send_reply_chunk_start(req, (evhtp_res)p->status);
    } else {
        /* HTTP/1.0: the body ends with the connection */
        evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
        req->flags |= EVHTP_REQ_FLAG_CHUNKED;
        evhtp_send_reply_start(req, (evhtp_res)p->status);
    }
    p->head_sent = 1;
    p->head_held = 0;
    held_free(p);
}

/* ---- the upstream call's side (these run inside its callbacks) ----------- */

static int on_response(void *arg, int status, const char *const *lines, size_t n)
{
    mb_proxy *p = arg;
    p->status = status;
    p->no_body = p->req->method == htp_method_HEAD || status == 204 || status == 304;
    p->held = calloc(n + 1, sizeof(char *));
    if (p->held == NULL && n > 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (strchr(lines[i], ':') == NULL || !fwd_response_line_kept(lines[i], lines, n))
            continue;
        if ((p->held[p->nheld] = strdup(lines[i])) == NULL)
            return -1;
        p->nheld++;
    }
    /* the content length goes back as it was: the framing is the proxy's */
    for (size_t i = 0; i < n; i++) {
        if (strncasecmp(lines[i], "Content-Length:", 15) == 0) {
            if ((p->held[p->nheld] = strdup(lines[i])) == NULL)
                return -1;
            p->nheld++;
            break;
        }
    }
    p->head_held = 1;
    if (p->body_done)
        send_head(p);
    return 0;
}

static size_t on_data(void *arg, const char *data, size_t len)
{
    mb_proxy *p = arg;
    struct evbuffer *out;

    if (!p->head_sent)
        return MB_STREAM_PAUSE;         /* the request is still being read */
    if (p->no_body)
        return len;
    if ((out = client_output(p)) == NULL)
        return 0;                       /* the client is gone: abort */
    if (evbuffer_get_length(out) >= OUT_HIGH) {
        if (p->out_cb == NULL) {
            static const struct timeval every = { GONE_CHECK_MS / 1000, (GONE_CHECK_MS % 1000) * 1000 };
            p->out_cb = evbuffer_add_cb(out, proxy_out_changed, p);
            p->out_watched = out;
            event_add(p->gone_check, &every);
        }
        return MB_STREAM_PAUSE;
    }
    if (p->chunked)
        evbuffer_add_printf(out, "%zx\r\n", len);
    evbuffer_add(out, data, len);
    if (p->chunked)
        evbuffer_add(out, "\r\n", 2);
    p->bytes += len;
    return len;
}

static size_t on_upload(void *arg, char *buf, size_t max)
{
    mb_proxy *p = arg;
    size_t have = evbuffer_get_length(p->in);

    if (have == 0)
        return p->body_done ? 0 : MB_STREAM_PAUSE;
    int n = evbuffer_remove(p->in, buf, have < max ? have : max);
    if (n < 0)
        return 0;
    if (p->client_paused && evbuffer_get_length(p->in) < IN_HIGH / 2)
        kick_soon(p);                   /* resume the client from the loop */
    return (size_t)n;
}

static void on_done(void *arg, const mb_response *resp)
{
    mb_proxy *p = arg;
    p->call = NULL;
    p->upstream_done = 1;
    p->xfer = resp->xfer;
    snprintf(p->error, sizeof(p->error), "%s", resp->error ? resp->error : "");
    kick_soon(p);
}

static const mb_stream_cbs stream_cbs = { on_response, on_data, on_upload, on_done };

/* ---- the loop's side ------------------------------------------------------------ */

/* libevent: the client's output buffer changed. Only note it here. */
static void proxy_out_changed(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    mb_proxy *p = arg;
    (void)info;
    if (evbuffer_get_length(buf) <= OUT_LOW && !p->want_resume) {
        p->want_resume = 1;
        kick_soon(p);
    }
}

/* libevhtp finishes a reply (keep-alive or close) in its write callback,
 * which runs when the output drains: if it has drained already, make it
 * run once more (after the resume that evhtp_request_resume queued). */
static void flush_reply(mb_proxy *p)
{
    struct bufferevent *bev = evhtp_request_get_bev(p->req);
    if (bev && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_trigger(bev, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/* The end: the upstream is done and (for a response) the head went out. */
static void finish(mb_proxy *p)
{
    evhtp_request_t *req = p->req;
    const proxy_hooks *hooks = p->env.hooks;
    void *arg = p->env.arg;

    unwatch_output(p);
    if (p->xfer == XFER_HTTP) {
        if (p->chunked)
            evhtp_send_reply_chunk_end(req);
        else
            evhtp_send_reply_end(req);
        evhtp_request_resume(req);
        flush_reply(p);
        hooks->done(arg, p->status, p->bytes, 0);
        return;
    }
    /* failed after the head: cut the body short and close */
    log_error("%s client=%s: upstream failed during the response to %s (%llu bytes sent): %s",
              p->env.request_id, p->env.client, p->env.path, p->bytes, p->error);
    evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
    evhtp_send_reply_end(req);
    evhtp_request_resume(req);
    flush_reply(p);
    hooks->done(arg, p->status, p->bytes, 1);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    mb_proxy *p = arg;
    (void)fd;
    (void)what;

    if (p->client_paused && !p->body_done && evbuffer_get_length(p->in) < IN_HIGH / 2) {
        p->client_paused = 0;
        evhtp_request_resume(p->req);
    }
    if (p->want_resume) {
        p->want_resume = 0;
        unwatch_output(p);
        if (p->call)
            upstream_stream_resume_download(p->call);
    }
    if (!p->upstream_done)
        return;
    if (p->xfer != XFER_HTTP && !p->head_sent) {
        /* no response: 502, or 504 for a timeout; the hook may free p */
        char msg[400];
        int status = p->xfer == XFER_TIMEOUT ? 504 : 502;
        snprintf(msg, sizeof(msg), "the upstream %s: %s",
                 p->xfer == XFER_TIMEOUT ? "did not answer in time" : "could not be reached or answered badly",
                 p->error);
        log_error("%s client=%s: %s %s -> %d: %s", p->env.request_id, p->env.client,
                  htparser_get_methodstr_m(p->req->method), p->env.path, status, p->error);
        p->env.hooks->fail(p->env.arg, status, msg, p->body_done);
        return;
    }
    if (p->head_sent || (p->body_done && p->head_held)) {
        if (!p->head_sent)
            send_head(p);
        finish(p);
    }
}

/* ---- the server's side ------------------------------------------------------------- */

mb_proxy *proxy_start(evhtp_request_t *req, const proxy_env *env)
{
    mb_proxy *p = calloc(1, sizeof(*p));
    struct event_base *base = evhtp_request_get_connection(req)->evbase;

    if (p == NULL) {
        free(env->headers);
        return NULL;
    }
    p->req = req;
    p->env = *env;
    p->in = evbuffer_new();
    p->kick = event_new(base, -1, 0, on_kick, p);
    p->gone_check = event_new(base, -1, EV_PERSIST, on_gone_check, p);
    if (p->in == NULL || p->kick == NULL || p->gone_check == NULL)
        goto fail;
    mb_request r = {
        .method = htparser_get_methodstr_m(req->method),
        .path = env->path,
        .headers = (const char *const *)env->headers,
    };
    if (r.method == NULL)
        goto fail;
    p->call = upstream_stream(env->up, &r, env->with_body, env->body_size, &stream_cbs, p);
    if (p->call == NULL)
        goto fail;
    return p;
fail:
    proxy_free(p);
    return NULL;
}

void proxy_body(mb_proxy *p, struct evbuffer *buf)
{
    if (p->upstream_done || p->call == NULL) {
        evbuffer_drain(buf, evbuffer_get_length(buf));   /* nobody takes it any more */
        return;
    }
    evbuffer_add_buffer(p->in, buf);
    upstream_stream_resume_upload(p->call);
    if (evbuffer_get_length(p->in) >= IN_HIGH && !p->client_paused) {
        p->client_paused = 1;
        evhtp_request_pause(p->req);
    }
}

void proxy_body_end(mb_proxy *p)
{
    p->body_done = 1;
    p->client_paused = 0;          /* the server keeps it paused until the reply */
    if (p->call)
        upstream_stream_resume_upload(p->call);   /* on_upload now says: the end */
    if (p->head_held) {
        send_head(p);
        if (p->call)
            upstream_stream_resume_download(p->call);
    }
    if (p->upstream_done)
        kick_soon(p);
}

int proxy_responding(const mb_proxy *p)
{
    return p->head_sent;
}

void proxy_free(mb_proxy *p)
{
    if (p == NULL)
        return;
    unwatch_output(p);
    if (p->call)
        upstream_cancel(p->call);
    if (p->kick)
        event_free(p->kick);
    if (p->gone_check)
        event_free(p->gone_check);
    if (p->in)
        evbuffer_free(p->in);
    held_free(p);
    free(p->env.headers);
    free(p);
}
