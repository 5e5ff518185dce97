/* h1_client: HTTP/1.1 exchanges over a pool of keep-alive TCP or TLS
 * connections to one origin, on a libevent loop. See h1_client.h.
 *
 * - One h1_conn per connection: its socket, its SSL (https), one persistent
 *   struct event (always reading, writing only while a write is blocked)
 *   and one timer (connect deadline, exchange deadline or idle deadline,
 *   by state). Idle connections stay watched for reading: input on one is
 *   the server closing it, and it is closed at once.
 * - One h1_exchange per request, attached to one connection at a time. A
 *   request goes out with one write (SSL_write or send) straight from
 *   h1_send when a pooled connection is free: no event round trip.
 * - The response is parsed by h1_response.c from a per-client read buffer;
 *   with TLS read-ahead a small response costs one recv(2).
 */
#include "h1_client.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/http.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "h1_response.h"
#include "log.h"

#define READ_BUF 16384
/* Bytes one connection may read in one pass of the loop before the others
 * get their turn: a large answer must not hold up the worker's other calls
 * and timers. */
#define READ_BUDGET (16 * READ_BUF)

typedef enum {
    C_RESOLVING,    /* waiting for evdns */
    C_CONNECTING,   /* TCP connect in progress */
    C_HANDSHAKE,    /* TLS handshake in progress */
    C_BUSY,         /* an exchange: sending the request and reading the response */
    C_IDLE          /* in the pool */
} conn_state;

typedef struct h1_conn h1_conn;

struct h1_conn {
    h1_client          *c;
    h1_conn            *prev, *next;     /* every connection */
    h1_conn            *iprev, *inext;   /* the idle ones, most recently used first */
    conn_state          state;
    int                 fd;
    SSL                *ssl;
    struct event       *ev;
    short               watching;        /* EV_READ|EV_WRITE now registered */
    struct event       *timer;
    h1_exchange        *ex;
    int                 reused;          /* carried a whole exchange before */
    struct evutil_addrinfo *ai_owned;    /* evdns answer */
    struct evutil_addrinfo *ai_next;     /* next address to try */
    struct evdns_getaddrinfo_request *dns;
    int                 last_errno;      /* of the last failed connect */
    struct timespec     opened;
    long long           connect_deadline; /* ms, monotonic */
};

struct h1_exchange {
    h1_client              *c;
    h1_conn                *conn;
    const char             *req;
    size_t                  len, sent;
    int                     head;
    int                     resent;      /* sent again after a reused connection died */
    int                     delivered;   /* written whole on a connection that then failed */
    long long               deadline;    /* ms, monotonic */
    long                    timeout_ms;
    size_t                  received;    /* response bytes */
    h1_resp                 resp;
    const h1_exchange_cbs  *cbs;
    void                   *arg;
    /* streaming (h1_stream) */
    int                     stream;
    long long               length;      /* H1_NO_BODY, H1_CHUNKED or Content-Length */
    long long               taken;       /* request body bytes taken from on_upload */
    int                     upload_done; /* the body (and a chunked end) is queued in ubuf */
    int                     up_paused, down_paused;
    long                    idle_ms;
    char                   *ubuf;        /* body bytes framed, being written */
    size_t                  ubuf_off, ubuf_len;
    /* a result to deliver from the loop (it happened inside h1_send) */
    h1_exchange            *dnext;
    h1_result               result;
    int                     status;
    char                    err[320];
};

struct h1_client {
    struct event_base  *base;
    h1_client_opts      opts;
    int                 tls;
    char               *host;            /* as for the socket, SNI, verification (no []) */
    char               *host_header;     /* "Host: h[:p]\r\n" */
    size_t              host_header_len;
    char               *prefix;          /* path prefix, "" or "/x" */
    size_t              prefix_len;
    int                 port;
    int                 host_is_ip;
    struct evutil_addrinfo *numeric;     /* the address when the host is a literal */
    struct evdns_base  *dns;             /* made on first use */
    SSL_CTX            *ctx;
    char               *tls_config_error; /* CA file or client certificate did not load */
    SSL_SESSION        *session;          /* the latest, for resumption */
    h1_conn            *conns, *idle_head, *idle_tail;
    size_t              n_conns;
    int                 in_send;
    h1_exchange        *deferred;
    struct event       *defer_ev;
    char               *rbuf;
};

static int ex_data_index = -1;
static pthread_once_t ex_data_once = PTHREAD_ONCE_INIT;

static void make_ex_data_index(void)
{
    ex_data_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* ---- helpers ------------------------------------------------------------ */

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static long ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)((t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000);
}

/* OpenSSL's first queued error, as text ("" when none); clears the queue. */
static const char *ssl_err_text(char *buf, size_t n)
{
    unsigned long e = ERR_get_error();
    if (e == 0) {
        buf[0] = '\0';
    } else {
        ERR_error_string_n(e, buf, n);
    }
    ERR_clear_error();
    return buf;
}

static void idle_unlink(h1_conn *k)
{
    h1_client *c = k->c;
    if (k->iprev)
        k->iprev->inext = k->inext;
    else if (c->idle_head == k)
        c->idle_head = k->inext;
    if (k->inext)
        k->inext->iprev = k->iprev;
    else if (c->idle_tail == k)
        c->idle_tail = k->iprev;
    k->iprev = k->inext = NULL;
}

static void idle_push(h1_conn *k)
{
    h1_client *c = k->c;
    k->iprev = NULL;
    k->inext = c->idle_head;
    if (c->idle_head)
        c->idle_head->iprev = k;
    else
        c->idle_tail = k;
    c->idle_head = k;
}

static void arm_timer(h1_conn *k, long long deadline)
{
    long long left = deadline - now_ms();
    if (left < 0)
        left = 0;
    struct timeval tv = { .tv_sec = (time_t)(left / 1000), .tv_usec = (suseconds_t)((left % 1000) * 1000) };
    evtimer_add(k->timer, &tv);
}

static void on_conn_event(evutil_socket_t fd, short what, void *arg);

static int watch(h1_conn *k, short what)
{
    if (k->watching == what)
        return 0;
    if (k->watching)
        event_del(k->ev);
    k->watching = 0;
    if (what == 0)
        return 0;
    if (event_assign(k->ev, k->c->base, k->fd, (short)(what | EV_PERSIST), on_conn_event, k) != 0 ||
        event_add(k->ev, NULL) != 0)
        return -1;
    k->watching = what;
    return 0;
}

/* Whether the exchange has bytes to write, or could pull some. */
static int wants_write(const h1_exchange *ex)
{
    return ex->sent < ex->len || ex->ubuf_off < ex->ubuf_len ||
           (ex->length != H1_NO_BODY && !ex->upload_done && !ex->up_paused);
}

/* The events a busy connection waits for. */
static short busy_events(const h1_exchange *ex)
{
    return (short)((ex->down_paused ? 0 : EV_READ) | (wants_write(ex) ? EV_WRITE : 0));
}

/* A streaming exchange's inactivity deadline starts again (bytes moved, or
 * a pause ended); while either side is paused, none runs. */
static void stream_progress(h1_conn *k)
{
    h1_exchange *ex = k->ex;
    if (ex->up_paused || ex->down_paused)
        evtimer_del(k->timer);
    else
        arm_timer(k, now_ms() + ex->idle_ms);
}

/* ---- connections ----------------------------------------------------------- */

/* How a connection ends, for its TLS session: after a failure (OpenSSL
 * then drops the session from resumption), cleanly (the session stays
 * resumable), or cleanly with a close_notify sent (a pooled connection we
 * close ourselves). */
enum { CLOSE_FAILED, CLOSE_CLEAN, CLOSE_GOODBYE };

/* Closes and frees a connection (its exchange, if any, is the caller's). */
static void conn_close(h1_conn *k, int how)
{
    h1_client *c = k->c;

    if (k->state == C_IDLE)
        idle_unlink(k);
    if (k->dns) {
        struct evdns_getaddrinfo_request *r = k->dns;
        k->dns = NULL;
        evdns_getaddrinfo_cancel(r);     /* its callback sees EVUTIL_EAI_CANCEL */
    }
    if (k->ev) {
        event_del(k->ev);
        event_free(k->ev);
    }
    if (k->timer)
        event_free(k->timer);
    if (k->ssl) {
        if (how == CLOSE_GOODBYE)
            SSL_shutdown(k->ssl);        /* one non-blocking write at most */
        else if (how == CLOSE_CLEAN)
            SSL_set_shutdown(k->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(k->ssl);
        ERR_clear_error();
    }
    if (k->fd >= 0)
        close(k->fd);
    if (k->ai_owned)
        evutil_freeaddrinfo(k->ai_owned);
    if (k->prev)
        k->prev->next = k->next;
    else
        c->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    c->n_conns--;
    free(k);
}

static void on_defer(evutil_socket_t fd, short what, void *arg);

/* The exchange ends: its callback now, or from the loop when inside h1_send. */
static void ex_finish(h1_exchange *ex, h1_result r, int status)
{
    h1_client *c = ex->c;
    ex->conn = NULL;
    if (r == H1_OK)
        ex->err[0] = '\0';
    h1_resp_free(&ex->resp);
    free(ex->ubuf);
    ex->ubuf = NULL;
    if (c->in_send) {
        ex->result = r;
        ex->status = status;
        ex->dnext = c->deferred;
        c->deferred = ex;
        event_active(c->defer_ev, EV_TIMEOUT, 1);
        return;
    }
    ex->cbs->on_done(ex->arg, r, status, ex->err);
    free(ex);
}

static void conn_attach(h1_conn *k, h1_exchange *ex);
static int  conn_open(h1_client *c, h1_exchange *ex);

/* The connection failed while carrying ex (or while idle). A reused
 * connection found closed before any response byte gets the request once
 * more on a new connection: the server closed it as we sent. */
static void conn_fail(h1_conn *k, h1_result r, const char *fmt, ...)
{
    h1_exchange *ex = k->ex;
    int reused = k->reused;

    k->ex = NULL;
    conn_close(k, CLOSE_FAILED);
    if (!ex)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ex->err, sizeof(ex->err), fmt, ap);
    va_end(ap);
    if (ex->len > 0 && ex->sent >= ex->len)
        ex->delivered = 1;
    if (r == H1_CLOSED && reused && !ex->resent && ex->received == 0 && ex->taken == 0) {
        ex->resent = 1;
        log_debug("upstream: a pooled connection was closed by the server (%s); sending again", ex->err);
        if (conn_open(ex->c, ex) == 0)
            return;
    }
    ex_finish(ex, r, 0);
}

int h1_exchange_delivered(const h1_exchange *ex)
{
    return ex->delivered;
}

/* ---- the response ------------------------------------------------------------ */

static int p_header(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
    h1_exchange *ex = arg;
    return ex->cbs->on_header ? ex->cbs->on_header(ex->arg, name, nlen, value, vlen) : 0;
}

static int p_body(void *arg, const char *data, size_t len)
{
    h1_exchange *ex = arg;
    return ex->cbs->on_body(ex->arg, data, len);
}

static int p_head(void *arg, int status)
{
    h1_exchange *ex = arg;
    return ex->cbs->on_head ? ex->cbs->on_head(ex->arg, status) : 0;
}

static const h1_resp_cbs parser_cbs = { p_header, p_head, p_body };

/* The whole response arrived on k: the connection goes back to the pool
 * (or is closed), then the exchange's callback runs. */
static void conn_done(h1_conn *k, int reusable)
{
    h1_exchange *ex = k->ex;
    h1_client *c = k->c;
    int status = ex->resp.status;

    k->ex = NULL;
    if (wants_write(ex) || ex->up_paused)
        reusable = 0;                    /* answered before the request went out whole */
    if (reusable && ex->resp.keep_alive && !(k->ssl && SSL_has_pending(k->ssl))) {
        k->state = C_IDLE;
        k->reused = 1;
        idle_push(k);
        if (watch(k, EV_READ) != 0)
            conn_close(k, CLOSE_CLEAN);
        else if (c->opts.idle_timeout_ms > 0)
            arm_timer(k, now_ms() + c->opts.idle_timeout_ms);
        else
            evtimer_del(k->timer);
    } else {
        conn_close(k, CLOSE_CLEAN);
    }
    ex_finish(ex, H1_OK, status);
}

/* Feeds n bytes of response; returns 1 when the exchange has ended (k may
 * be gone), 0 to read on. */
static int conn_feed(h1_conn *k, const char *data, size_t n)
{
    h1_exchange *ex = k->ex;
    ssize_t used;

    ex->received += n;
    if (ex->stream)
        stream_progress(k);
    used = h1_resp_feed(&ex->resp, data, n, &parser_cbs, ex);
    if (used < 0) {
        if (ex->resp.error && strcmp(ex->resp.error, "stopped") == 0)
            conn_fail(k, H1_STOPPED, "stopped");
        else
            conn_fail(k, H1_BAD_RESPONSE, "%s", ex->resp.error ? ex->resp.error : "invalid response");
        return 1;
    }
    if (ex->resp.done) {
        conn_done(k, (size_t)used == n);   /* bytes beyond the response: not reusable */
        return 1;
    }
    return 0;
}

/* The peer closed the connection (clean EOF) during an exchange. */
static void conn_eof(h1_conn *k)
{
    h1_exchange *ex = k->ex;
    h1_client *c = k->c;

    if (ex->received == 0) {
        conn_fail(k, H1_CLOSED, "the upstream %s port %d closed the connection before responding",
                  c->host, c->port);
        return;
    }
    if (h1_resp_eof(&ex->resp) == 0) {
        conn_done(k, 0);
        return;
    }
    conn_fail(k, H1_BAD_RESPONSE, "%s", ex->resp.error);
}

/* Reads what there is. */
static void conn_read(h1_conn *k)
{
    h1_client *c = k->c;
    char ebuf[256];

    if (k->ex && k->ex->down_paused)
        return;
    for (size_t total = 0;; ) {
        ssize_t n;
        if (k->ssl) {
            ERR_clear_error();
            int r = SSL_read(k->ssl, c->rbuf, READ_BUF);
            if (r > 0) {
                n = r;
            } else {
                int e = SSL_get_error(k->ssl, r);
                if (e == SSL_ERROR_WANT_READ) {
                    watch(k, k->ex ? busy_events(k->ex) : EV_READ);
                    return;
                }
                if (e == SSL_ERROR_WANT_WRITE) {
                    watch(k, EV_READ | EV_WRITE);
                    return;
                }
                if (e == SSL_ERROR_ZERO_RETURN) {
                    if (k->state == C_IDLE)
                        conn_close(k, CLOSE_CLEAN);
                    else
                        conn_eof(k);
                    return;
                }
                int sys = errno;
                const char *t = ssl_err_text(ebuf, sizeof(ebuf));
                if (k->state == C_IDLE) {
                    conn_close(k, CLOSE_FAILED);
                } else if (e == SSL_ERROR_SSL && k->ex->received == 0) {
                    /* an alert, e.g. "tlsv13 alert certificate required" */
                    conn_fail(k, H1_TLS_FAILED, "TLS error from %s port %d: %s", c->host, c->port, t);
                } else if (k->ex->received == 0) {
                    conn_fail(k, H1_CLOSED, "connection to %s port %d lost before a response: %s",
                              c->host, c->port, *t ? t : strerror(sys ? sys : ECONNRESET));
                } else {
                    conn_fail(k, H1_BAD_RESPONSE, "connection to %s port %d lost during the response: %s",
                              c->host, c->port, *t ? t : strerror(sys ? sys : ECONNRESET));
                }
                return;
            }
        } else {
            n = recv(k->fd, c->rbuf, READ_BUF, 0);
            if (n == 0) {
                if (k->state == C_IDLE)
                    conn_close(k, CLOSE_CLEAN);
                else
                    conn_eof(k);
                return;
            }
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    return;
                if (k->state == C_IDLE)
                    conn_close(k, CLOSE_FAILED);
                else if (k->ex->received == 0)
                    conn_fail(k, H1_CLOSED, "connection to %s port %d lost before a response: %s",
                              c->host, c->port, strerror(errno));
                else
                    conn_fail(k, H1_BAD_RESPONSE, "connection to %s port %d lost during the response: %s",
                              c->host, c->port, strerror(errno));
                return;
            }
        }
        if (k->state == C_IDLE) {
            /* bytes nobody asked for */
            conn_close(k, CLOSE_FAILED);
            return;
        }
        if (conn_feed(k, c->rbuf, (size_t)n))
            return;
        if (k->ex->down_paused)
            return;          /* h1_pause_download took EV_READ away */
        if (!k->ssl && (size_t)n < READ_BUF)
            return;          /* the socket is drained; epoll says when there is more */
        total += (size_t)n;
        if (total >= READ_BUDGET) {
            event_active(k->ev, EV_READ, 1);   /* the rest in the next pass (TLS may hold it) */
            return;
        }
    }
}

/* ---- the request --------------------------------------------------------------- */

/* The first write on a new TLS 1.3 connection failed: the server may have
 * refused the handshake after ours was done (a client certificate it
 * requires or does not accept), and its alert then waits unread while the
 * write meets its close. 1 (and the alert's text in buf) when a read finds
 * one, so that the failure is reported as TLS, not retried as a lost
 * connection. */
static int pending_alert(h1_conn *k, char *buf, size_t len)
{
    char scratch[256];
    ERR_clear_error();
    int r = SSL_read(k->ssl, scratch, sizeof(scratch));
    if (r > 0 || SSL_get_error(k->ssl, r) != SSL_ERROR_SSL) {
        ERR_clear_error();
        return 0;
    }
    ssl_err_text(buf, len);
    return buf[0] != '\0';
}

#define UBUF_SIZE  16384
#define CHUNK_ROOM 16            /* "%zx\r\n" before a chunk's data */

/* Pulls the next piece of a streamed request body into ex->ubuf, framed.
 * Returns 1 when there is something to write (or the body is complete),
 * 0 when the body source paused, -1 (ex->err set) when it failed. */
static int fill_upload(h1_exchange *ex)
{
    int chunked = ex->length == H1_CHUNKED;
    size_t room = UBUF_SIZE - CHUNK_ROOM - 7;   /* "\r\n" after, "0\r\n\r\n" */

    if (!ex->ubuf && !(ex->ubuf = malloc(UBUF_SIZE))) {
        snprintf(ex->err, sizeof(ex->err), "out of memory sending the request body");
        return -1;
    }
    if (!chunked && (unsigned long long)(ex->length - ex->taken) < room)
        room = (size_t)(ex->length - ex->taken);
    if (!chunked && room == 0) {
        ex->upload_done = 1;
        return 1;
    }
    size_t n = ex->cbs->on_upload(ex->arg, ex->ubuf + CHUNK_ROOM, room);
    if (n == H1_PAUSE) {
        ex->up_paused = 1;
        return 0;
    }
    if (n == H1_ABORT || (n > room && n != H1_PAUSE)) {
        snprintf(ex->err, sizeof(ex->err), "the request body could not be read");
        return -1;
    }
    if (n == 0) {
        if (!chunked) {
            snprintf(ex->err, sizeof(ex->err), "the request body ended after %lld of %lld bytes",
                     ex->taken, ex->length);
            return -1;
        }
        memcpy(ex->ubuf, "0\r\n\r\n", 5);
        ex->ubuf_off = 0;
        ex->ubuf_len = 5;
        ex->upload_done = 1;
        return 1;
    }
    ex->taken += (long long)n;
    if (chunked) {
        char h[CHUNK_ROOM];
        int hl = snprintf(h, sizeof(h), "%zx\r\n", n);
        ex->ubuf_off = CHUNK_ROOM - (size_t)hl;
        memcpy(ex->ubuf + ex->ubuf_off, h, (size_t)hl);
        memcpy(ex->ubuf + CHUNK_ROOM + n, "\r\n", 2);
        ex->ubuf_len = CHUNK_ROOM + n + 2;
    } else {
        ex->ubuf_off = CHUNK_ROOM;
        ex->ubuf_len = CHUNK_ROOM + n;
        if (ex->taken == ex->length)
            ex->upload_done = 1;
    }
    return 1;
}

/* Writes what there is to write: the rest of the request head, then the
 * body pulled piece by piece. Returns -1 when the connection failed (k is
 * gone), 0 otherwise. */
static int conn_write(h1_conn *k)
{
    h1_exchange *ex = k->ex;
    h1_client *c = k->c;
    char ebuf[256];

    for (;;) {
        const char *p;
        size_t left;
        if (ex->sent < ex->len) {
            p = ex->req + ex->sent;
            left = ex->len - ex->sent;
        } else if (ex->ubuf_off < ex->ubuf_len) {
            p = ex->ubuf + ex->ubuf_off;
            left = ex->ubuf_len - ex->ubuf_off;
        } else if (wants_write(ex)) {
            int r = fill_upload(ex);
            if (r < 0) {
                char why[sizeof(ex->err)];
                memcpy(why, ex->err, sizeof(why));   /* conn_fail writes ex->err */
                conn_fail(k, H1_STOPPED, "%s", why);
                return -1;
            }
            if (r == 0) {
                stream_progress(k);            /* paused: no deadline */
                break;
            }
            continue;
        } else {
            break;
        }

        ssize_t n;
        if (k->ssl) {
            ERR_clear_error();
            int r = SSL_write(k->ssl, p, (int)(left > 1 << 30 ? 1 << 30 : left));
            if (r > 0) {
                n = r;
            } else {
                int e = SSL_get_error(k->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    watch(k, (short)(busy_events(ex) | EV_WRITE));
                    return 0;
                }
                int sys = errno;
                const char *t = ssl_err_text(ebuf, sizeof(ebuf));
                if (e != SSL_ERROR_SSL && !k->reused && pending_alert(k, ebuf, sizeof(ebuf))) {
                    conn_fail(k, H1_TLS_FAILED, "TLS error from %s port %d: %s", c->host, c->port, ebuf);
                    return -1;
                }
                conn_fail(k, e == SSL_ERROR_SSL ? H1_TLS_FAILED : H1_CLOSED,
                          "sending to %s port %d failed: %s", c->host, c->port,
                          *t ? t : strerror(sys ? sys : EPIPE));
                return -1;
            }
        } else {
            n = send(k->fd, p, left, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    watch(k, (short)(busy_events(ex) | EV_WRITE));
                    return 0;
                }
                conn_fail(k, H1_CLOSED, "sending to %s port %d failed: %s", c->host, c->port, strerror(errno));
                return -1;
            }
        }
        if (ex->sent < ex->len)
            ex->sent += (size_t)n;
        else
            ex->ubuf_off += (size_t)n;
        if (ex->stream)
            stream_progress(k);
    }
    watch(k, busy_events(ex));
    return 0;
}

/* The connection is ready for ex: arm its deadline and send. */
static void conn_attach(h1_conn *k, h1_exchange *ex)
{
    k->ex = ex;
    ex->conn = k;
    ex->sent = 0;
    ex->received = 0;
    h1_resp_free(&ex->resp);
    h1_resp_init(&ex->resp, ex->head);
    k->state = C_BUSY;
    if (ex->stream)
        stream_progress(k);
    else
        arm_timer(k, ex->deadline);
    (void)conn_write(k);
}

/* ---- TLS ------------------------------------------------------------------------- */

static void tls_handshake(h1_conn *k)
{
    h1_client *c = k->c;
    char ebuf[256];

    ERR_clear_error();
    int r = SSL_connect(k->ssl);
    if (r == 1) {
        ERR_clear_error();
        k->state = C_BUSY;
        if (k->ex)
            conn_attach(k, k->ex);
        return;
    }
    int e = SSL_get_error(k->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        watch(k, EV_READ);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        watch(k, EV_READ | EV_WRITE);
        return;
    }
    int sys = errno;
    long v = SSL_get_verify_result(k->ssl);
    unsigned long top = ERR_peek_error();
    const char *t = ssl_err_text(ebuf, sizeof(ebuf));
    if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        conn_fail(k, H1_TLS_FAILED, "SSL: certificate subject name does not match target host name '%s'",
                  c->host);
    } else if (v != X509_V_OK) {
        conn_fail(k, H1_TLS_FAILED, "SSL certificate problem: %s", X509_verify_cert_error_string(v));
    } else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN ||
               ERR_GET_REASON(top) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        conn_fail(k, H1_CLOSED, "the upstream %s port %d closed the connection during the TLS handshake%s%s",
                  c->host, c->port, sys ? ": " : "", sys ? strerror(sys) : "");
    } else {
        conn_fail(k, H1_TLS_FAILED, "TLS handshake with %s port %d failed: %s", c->host, c->port,
                  *t ? t : "unknown error");
    }
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    h1_client *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_data_index);
    if (!c)
        return 0;
    if (c->session)
        SSL_SESSION_free(c->session);
    c->session = sess;       /* the reference is ours */

    return 1;
}

static void tls_start(h1_conn *k)
{
    h1_client *c = k->c;
    char ebuf[256];

    k->ssl = SSL_new(c->ctx);
    if (!k->ssl || SSL_set_fd(k->ssl, k->fd) != 1) {
        conn_fail(k, H1_TLS_FAILED, "cannot start TLS: %s", ssl_err_text(ebuf, sizeof(ebuf)));
        return;
    }
    if (!c->host_is_ip)
        SSL_set_tlsext_host_name(k->ssl, c->host);
    if (!c->opts.insecure) {
        int ok = c->host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(k->ssl), c->host)
                               : SSL_set1_host(k->ssl, c->host);
        if (ok != 1) {
            conn_fail(k, H1_TLS_FAILED, "cannot set the name to verify: %s", ssl_err_text(ebuf, sizeof(ebuf)));
            return;
        }
        SSL_set_hostflags(k->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    if (c->session)
        SSL_set_session(k->ssl, c->session);

    SSL_set_connect_state(k->ssl);
    k->state = C_HANDSHAKE;
    tls_handshake(k);
}

/* ---- connecting ------------------------------------------------------------------ */

static void connect_next(h1_conn *k);

/* TCP is up: TLS, or straight to the request. */
static void tcp_connected(h1_conn *k)
{
    if (k->c->tls) {
        tls_start(k);
        return;
    }
    k->state = C_BUSY;
    conn_attach(k, k->ex);
}

static void connect_failed_all(h1_conn *k)
{
    h1_client *c = k->c;
    conn_fail(k, H1_CONNECT_FAILED, "Failed to connect to %s port %d after %ld ms: %s",
              c->host, c->port, ms_since(&k->opened), strerror(k->last_errno ? k->last_errno : ECONNREFUSED));
}

/* Tries the next address. */
static void connect_next(h1_conn *k)
{
    while (k->ai_next) {
        struct evutil_addrinfo *a = k->ai_next;
        k->ai_next = a->ai_next;
        if (k->fd >= 0) {
            if (k->watching)
                event_del(k->ev);
            k->watching = 0;
            close(k->fd);
        }
        k->fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (k->fd < 0) {
            k->last_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(k->fd, a->ai_addr, (socklen_t)a->ai_addrlen) == 0) {
            tcp_connected(k);
            return;
        }
        if (errno == EINPROGRESS) {
            k->state = C_CONNECTING;
            if (watch(k, EV_WRITE) != 0) {
                conn_fail(k, H1_CONNECT_FAILED, "cannot watch a socket");
                return;
            }
            return;
        }
        k->last_errno = errno;
    }
    connect_failed_all(k);
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    h1_conn *k = arg;
    if (result == EVUTIL_EAI_CANCEL)
        return;                         /* k is being closed */
    k->dns = NULL;
    if (result != 0 || !res) {
        if (res)
            evutil_freeaddrinfo(res);
        conn_fail(k, H1_CONNECT_FAILED, "Could not resolve host: %s (%s)", k->c->host,
                  evutil_gai_strerror(result));
        return;
    }
    k->ai_owned = res;
    k->ai_next = res;
    connect_next(k);
}

/* A new connection for ex. Returns 0, or -1 (nothing done) when out of
 * memory. Failures later on end ex through conn_fail. */
static int conn_open(h1_client *c, h1_exchange *ex)
{
    if (c->tls_config_error) {
        snprintf(ex->err, sizeof(ex->err), "%s", c->tls_config_error);
        ex_finish(ex, H1_TLS_FAILED, 0);
        return 0;
    }
    /* at the limit, the least recently used idle connection makes room */
    if (c->n_conns >= (size_t)c->opts.max_connections && c->idle_tail)
        conn_close(c->idle_tail, CLOSE_GOODBYE);

    h1_conn *k = calloc(1, sizeof(*k));
    if (!k)
        return -1;
    k->c = c;
    k->fd = -1;
    k->ev = event_new(c->base, -1, 0, on_conn_event, k);
    k->timer = evtimer_new(c->base, on_conn_event, k);
    if (!k->ev || !k->timer) {
        if (k->ev)
            event_free(k->ev);
        if (k->timer)
            event_free(k->timer);
        free(k);
        return -1;
    }
    k->next = c->conns;
    if (c->conns)
        c->conns->prev = k;
    c->conns = k;
    c->n_conns++;
    k->ex = ex;
    ex->conn = k;
    clock_gettime(CLOCK_MONOTONIC, &k->opened);
    k->connect_deadline = now_ms() + c->opts.connect_timeout_ms;
    arm_timer(k, k->connect_deadline < ex->deadline ? k->connect_deadline : ex->deadline);

    if (c->numeric) {
        k->ai_next = c->numeric;
        connect_next(k);
        return 0;
    }
    if (!c->dns) {
        c->dns = evdns_base_new(c->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                         EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (!c->dns) {
            conn_fail(k, H1_CONNECT_FAILED, "Could not resolve host: %s (no resolver)", c->host);
            return 0;
        }
    }
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    char port[16];
    snprintf(port, sizeof(port), "%d", c->port);
    k->state = C_RESOLVING;
    k->dns = (struct evdns_getaddrinfo_request *)1;   /* on_resolved may run right now */
    struct evdns_getaddrinfo_request *r =
        evdns_getaddrinfo(c->dns, c->host, port, &hints, on_resolved, k);
    /* r is NULL when on_resolved already ran (k may be gone then) */
    if (r)
        k->dns = r;
    return 0;
}

/* ---- events ----------------------------------------------------------------------- */

static void on_timeout(h1_conn *k)
{
    h1_client *c = k->c;
    switch (k->state) {
    case C_IDLE:
        conn_close(k, CLOSE_GOODBYE);
        return;
    case C_RESOLVING:
    case C_CONNECTING:
        conn_fail(k, H1_CONNECT_TIMEOUT, "Connection timed out after %ld ms (connecting to %s port %d)",
                  ms_since(&k->opened), c->host, c->port);
        return;
    case C_HANDSHAKE:
        conn_fail(k, H1_CONNECT_TIMEOUT, "SSL connection timeout after %ld ms (%s port %d)",
                  ms_since(&k->opened), c->host, c->port);
        return;
    case C_BUSY:
        if (k->ex->stream)
            conn_fail(k, H1_TIMEOUT, "no data moved to or from %s port %d for %ld ms",
                      c->host, c->port, k->ex->idle_ms);
        else
            conn_fail(k, H1_TIMEOUT, "Operation timed out after %ld ms with %zu bytes received",
                      k->ex->timeout_ms, k->ex->received);
        return;
    }
}

static void on_conn_event(evutil_socket_t fd, short what, void *arg)
{
    h1_conn *k = arg;
    (void)fd;

    if (what & EV_TIMEOUT) {
        on_timeout(k);
        return;
    }
    switch (k->state) {
    case C_RESOLVING:
        return;
    case C_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err == 0) {
            tcp_connected(k);
        } else {
            k->last_errno = err;
            connect_next(k);
        }
        return;
    }
    case C_HANDSHAKE:
        tls_handshake(k);
        return;
    case C_IDLE:
        if (k->ssl)
            conn_read(k);          /* maybe a late session ticket; else closes */
        else
            conn_close(k, CLOSE_CLEAN);      /* the server's close, or bytes nobody asked for */
        return;
    case C_BUSY:
        if ((what & EV_WRITE) && wants_write(k->ex)) {
            h1_exchange *ex = k->ex;
            if (conn_write(k) != 0 || !(what & EV_READ) || k->ex != ex)
                return;
        }
        conn_read(k);    /* also on a write event nobody wanted: TLS may have asked for it */
        return;
    }
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    h1_client *c = arg;
    (void)fd;
    (void)what;
    /* oldest first */
    h1_exchange *list = NULL;
    while (c->deferred) {
        h1_exchange *ex = c->deferred;
        c->deferred = ex->dnext;
        ex->dnext = list;
        list = ex;
    }
    while (list) {
        h1_exchange *ex = list;
        list = ex->dnext;
        ex->cbs->on_done(ex->arg, ex->result, ex->status, ex->err);
        free(ex);
    }
}

/* ---- public ------------------------------------------------------------------------ */

/* The URL's parts, by libevent's URL parser (mb_conf.c checked it). */
static int parse_base_url(h1_client *c, const char *url)
{
    struct evhttp_uri *u = evhttp_uri_parse_with_flags(url, 0);
    const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
    const char *host = u ? evhttp_uri_get_host(u) : NULL;
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    int rc = -1;

    if (!u || !scheme || !host || !*host) {
        log_error("upstream: cannot parse the URL %s", url);
        goto out;
    }
    if (strcasecmp(scheme, "https") == 0) {
        c->tls = 1;
    } else if (strcasecmp(scheme, "http") != 0) {
        log_error("upstream: %s: only http:// and https:// are supported", url);
        goto out;
    }
    c->port = evhttp_uri_get_port(u);
    int default_port = c->port < 0 || c->port == (c->tls ? 443 : 80);
    if (c->port < 0)
        c->port = c->tls ? 443 : 80;
    size_t hl = strlen(host);
    int bracketed = hl >= 2 && host[0] == '[' && host[hl - 1] == ']';
    c->host = bracketed ? strndup(host + 1, hl - 2) : strdup(host);
    size_t need = hl + 40;
    c->host_header = malloc(need);
    if (!c->host || !c->host_header)
        goto out;
    /* an IPv6 literal goes in brackets (libevent may keep them or not) */
    int v6 = !bracketed && strchr(host, ':') != NULL;
    c->host_header_len = (size_t)snprintf(c->host_header, need, "Host: %s%s%s",
                                          v6 ? "[" : "", host, v6 ? "]" : "");
    if (!default_port)
        c->host_header_len += (size_t)snprintf(c->host_header + c->host_header_len,
                                               need - c->host_header_len, ":%d", c->port);
    c->host_header_len += (size_t)snprintf(c->host_header + c->host_header_len,
                                           need - c->host_header_len, "\r\n");
    size_t pl = path ? strlen(path) : 0;
    while (pl > 0 && path[pl - 1] == '/')
        pl--;
    c->prefix = strndup(path ? path : "", pl);
    if (!c->prefix)
        goto out;
    c->prefix_len = pl;

    char port[16];
    snprintf(port, sizeof(port), "%d", c->port);
    struct evutil_addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
    if (evutil_getaddrinfo(c->host, port, &hints, &res) == 0 && res) {
        c->numeric = res;
        c->host_is_ip = 1;
    }
    rc = 0;
out:
    if (u)
        evhttp_uri_free(u);
    return rc;
}

/* The TLS context: TLS 1.2 at least, peer and name verification unless
 * insecure, the CA file or the system store, the client certificate,
 * session resumption through on_new_session. */
static int make_tls_ctx(h1_client *c)
{
    const h1_client_opts *o = &c->opts;
    char ebuf[256], msg[640];

    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx) {
        log_error("upstream: cannot create a TLS context: %s", ssl_err_text(ebuf, sizeof(ebuf)));
        return -1;
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION |
                                SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(c->ctx, 1);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(c->ctx, alpn, sizeof(alpn) - 1);
    SSL_CTX_set_ex_data(c->ctx, ex_data_index, c);
    SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c->ctx, on_new_session);
    SSL_CTX_set_verify(c->ctx, o->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);

    msg[0] = '\0';
    if (o->ca_file) {
        if (SSL_CTX_load_verify_locations(c->ctx, o->ca_file, NULL) != 1)
            snprintf(msg, sizeof(msg), "error setting certificate verify locations: CAfile: %s (%s)",
                     o->ca_file, ssl_err_text(ebuf, sizeof(ebuf)));
    } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
        snprintf(msg, sizeof(msg), "cannot load the system's CA certificates: %s",
                 ssl_err_text(ebuf, sizeof(ebuf)));
    }
    if (!msg[0] && o->client_cert_file) {
        const char *key = o->client_key_file ? o->client_key_file : o->client_cert_file;
        if (SSL_CTX_use_certificate_chain_file(c->ctx, o->client_cert_file) != 1)
            snprintf(msg, sizeof(msg), "could not load the client certificate %s: %s",
                     o->client_cert_file, ssl_err_text(ebuf, sizeof(ebuf)));
        else if (SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1)
            snprintf(msg, sizeof(msg), "could not load the client key %s: %s",
                     key, ssl_err_text(ebuf, sizeof(ebuf)));
        else if (SSL_CTX_check_private_key(c->ctx) != 1)
            snprintf(msg, sizeof(msg), "the client key %s does not match the certificate %s",
                     key, o->client_cert_file);
    }
    if (msg[0]) {
        log_error("upstream: %s", msg);
        c->tls_config_error = strdup(msg);
        if (!c->tls_config_error)
            return -1;
    }
    ERR_clear_error();
    return 0;
}

h1_client *h1_client_new(struct event_base *base, const h1_client_opts *opts)
{
    pthread_once(&ex_data_once, make_ex_data_index);   /* workers start clients in parallel */
    h1_client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->base = base;
    c->opts = *opts;
    c->opts.base_url = c->opts.ca_file = c->opts.client_cert_file = c->opts.client_key_file = NULL;
    if (c->opts.max_connections < 1)
        c->opts.max_connections = 1;
    c->rbuf = malloc(READ_BUF);
    c->defer_ev = event_new(base, -1, 0, on_defer, c);
    if (!c->rbuf || !c->defer_ev || parse_base_url(c, opts->base_url ? opts->base_url : "") != 0)
        goto fail;
    c->opts.ca_file = opts->ca_file;            /* for make_tls_ctx only */
    c->opts.client_cert_file = opts->client_cert_file;
    c->opts.client_key_file = opts->client_key_file;
    if (c->tls && make_tls_ctx(c) != 0)
        goto fail;
    c->opts.ca_file = c->opts.client_cert_file = c->opts.client_key_file = NULL;
    return c;
fail:
    c->opts.ca_file = c->opts.client_cert_file = c->opts.client_key_file = NULL;
    h1_client_free(c);
    return NULL;
}

void h1_client_free(h1_client *c)
{
    if (!c)
        return;
    while (c->conns) {
        h1_conn *k = c->conns;
        h1_exchange *ex = k->ex;
        k->ex = NULL;
        conn_close(k, k->state == C_IDLE ? CLOSE_GOODBYE : CLOSE_FAILED);
        if (ex) {
            h1_resp_free(&ex->resp);
            free(ex->ubuf);
            free(ex);
        }
    }
    while (c->deferred) {
        h1_exchange *ex = c->deferred;
        c->deferred = ex->dnext;
        free(ex);
    }
    if (c->defer_ev)
        event_free(c->defer_ev);
    if (c->dns)
        evdns_base_free(c->dns, 0);
    if (c->session)
        SSL_SESSION_free(c->session);
    if (c->ctx)
        SSL_CTX_free(c->ctx);
    if (c->numeric)
        evutil_freeaddrinfo(c->numeric);
    free(c->tls_config_error);
    free(c->host);
    free(c->host_header);
    free(c->prefix);
    free(c->rbuf);
    free(c);
}

/* The request line, Host, the caller's header lines, the framing line
 * (length: H1_NO_BODY, H1_CHUNKED or a Content-Length), the empty line and
 * body_len bytes of body. */
static int format(const h1_client *c, const char *method, const char *path,
                  const char *const *headers, long long length, const char *body, size_t body_len,
                  char **out, size_t *out_len)
{
    size_t ml = strlen(method), pl = strlen(path);
    size_t n = ml + 1 + c->prefix_len + pl + 11 + c->host_header_len + 2 + body_len + 48;
    for (const char *const *h = headers; h && *h; h++)
        n += strlen(*h) + 2;

    char *b = malloc(n), *p = b;
    if (!b)
        return -1;
    memcpy(p, method, ml);
    p += ml;
    *p++ = ' ';
    memcpy(p, c->prefix, c->prefix_len);
    p += c->prefix_len;
    memcpy(p, path, pl);
    p += pl;
    memcpy(p, " HTTP/1.1\r\n", 11);
    p += 11;
    memcpy(p, c->host_header, c->host_header_len);
    p += c->host_header_len;
    for (const char *const *h = headers; h && *h; h++) {
        size_t hl = strlen(*h);
        memcpy(p, *h, hl);
        p += hl;
        *p++ = '\r';
        *p++ = '\n';
    }
    if (length == H1_CHUNKED)
        p += snprintf(p, 48, "Transfer-Encoding: chunked\r\n");
    else if (length >= 0)
        p += snprintf(p, 48, "Content-Length: %lld\r\n", length);
    *p++ = '\r';
    *p++ = '\n';
    if (body_len) {
        memcpy(p, body, body_len);
        p += body_len;
    }
    *out = b;
    *out_len = (size_t)(p - b);
    return 0;
}

int h1_format_request(const h1_client *c, const char *method, const char *path,
                      const char *const *headers, const char *body, size_t body_len,
                      char **out, size_t *out_len)
{
    int with_length = body != NULL || body_len > 0 || strcmp(method, "POST") == 0 ||
                      strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
    return format(c, method, path, headers, with_length ? (long long)body_len : H1_NO_BODY,
                  body, body_len, out, out_len);
}

int h1_format_head(const h1_client *c, const char *method, const char *path,
                   const char *const *headers, long long length, char **out, size_t *out_len)
{
    return format(c, method, path, headers, length, NULL, 0, out, out_len);
}

/* Starts an exchange on an idle connection, or a new one. */
static h1_exchange *start(h1_client *c, h1_exchange *ex)
{
    c->in_send = 1;
    h1_conn *k = c->idle_head;
    if (k) {
        idle_unlink(k);
        conn_attach(k, ex);
    } else if (conn_open(c, ex) != 0) {
        c->in_send = 0;
        free(ex);
        return NULL;
    }
    c->in_send = 0;
    return ex;
}

static h1_exchange *ex_new(h1_client *c, const char *request, size_t len, int head_request,
                           const h1_exchange_cbs *cbs, void *arg)
{
    h1_exchange *ex = calloc(1, sizeof(*ex));
    if (!ex)
        return NULL;
    ex->c = c;
    ex->req = request;
    ex->len = len;
    ex->head = head_request;
    ex->cbs = cbs;
    ex->arg = arg;
    ex->length = H1_NO_BODY;
    return ex;
}

h1_exchange *h1_send(h1_client *c, const char *request, size_t len, int head_request,
                     long timeout_ms, const h1_exchange_cbs *cbs, void *arg)
{
    h1_exchange *ex = ex_new(c, request, len, head_request, cbs, arg);
    if (!ex)
        return NULL;
    ex->timeout_ms = timeout_ms;
    ex->deadline = now_ms() + timeout_ms;
    return start(c, ex);
}

h1_exchange *h1_stream(h1_client *c, const char *head, size_t len, int head_request,
                       long long length, long idle_ms, const h1_exchange_cbs *cbs, void *arg)
{
    h1_exchange *ex = ex_new(c, head, len, head_request, cbs, arg);
    if (!ex)
        return NULL;
    ex->stream = 1;
    ex->length = length;
    ex->idle_ms = idle_ms;
    ex->timeout_ms = idle_ms;
    ex->deadline = now_ms() + idle_ms;     /* bounds connecting */
    return start(c, ex);
}

void h1_resume_upload(h1_exchange *ex)
{
    if (!ex || !ex->up_paused)
        return;
    ex->up_paused = 0;
    if (ex->conn && ex->conn->state == C_BUSY) {
        stream_progress(ex->conn);
        event_active(ex->conn->ev, EV_WRITE, 1);
    }
}

void h1_pause_download(h1_exchange *ex)
{
    if (!ex || ex->down_paused)
        return;
    ex->down_paused = 1;
    if (ex->conn && ex->conn->state == C_BUSY) {
        stream_progress(ex->conn);
        watch(ex->conn, busy_events(ex));
    }
}

void h1_resume_download(h1_exchange *ex)
{
    if (!ex || !ex->down_paused)
        return;
    ex->down_paused = 0;
    if (ex->conn && ex->conn->state == C_BUSY) {
        stream_progress(ex->conn);
        watch(ex->conn, busy_events(ex));
        event_active(ex->conn->ev, EV_READ, 1);   /* TLS may hold bytes already read */
    }
}

void h1_cancel(h1_exchange *ex)
{
    if (!ex)
        return;
    h1_client *c = ex->c;
    if (ex->conn) {
        ex->conn->ex = NULL;
        conn_close(ex->conn, CLOSE_FAILED);
    } else {
        /* a result waiting to be delivered */
        for (h1_exchange **pp = &c->deferred; *pp; pp = &(*pp)->dnext)
            if (*pp == ex) {
                *pp = ex->dnext;
                break;
            }
    }
    h1_resp_free(&ex->resp);
    free(ex->ubuf);
    free(ex);
}

size_t h1_client_open_connections(const h1_client *c)
{
    return c->n_conns;
}
