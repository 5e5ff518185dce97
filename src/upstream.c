/* upstream: the calls of one event loop to the upstream. Buffered calls
 * (everything but the proxy) go over h1_client.c's own keep-alive
 * connections; streaming calls (the proxy) over libcurl's multi-socket
 * interface driven by the loop (the pattern of curl's hiperfifo example).
 * Both share the call lifetime, the FIFO beyond max_connections, the retry
 * rules and the error classification below.
 *
 * For libcurl:
 * - curl tells us which sockets to watch (on_curl_socket) and when to wake
 *   it up (on_curl_timer); we translate that into one persistent struct
 *   event per socket and one evtimer per mb_upstream. Every wake-up calls
 *   curl_multi_socket_action and then reaps finished transfers, one message
 *   at a time, because a completion callback may start or cancel calls.
 * - One mb_call per upstream call owns its easy handle, header list, request
 *   body copy, response buffer and retry timer; call_free() is the only
 *   place that frees them.
 * - Connections live in the multi handle's pool; TLS sessions and DNS
 *   answers in one CURLSH per mb_upstream (one loop, one thread: no locks).
 */
#include "upstream.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <unistd.h>
#include <curl/curl.h>

#include "h1_client.h"
#include "log.h"
#include "metrics.h"

#define RETRY_BACKOFF_MS 50L
/* An idle pooled connection is closed after this (libcurl's default
 * maximum connection age was 118 s). */
#define H1_IDLE_TIMEOUT_MS 60000L

typedef enum {
    CALL_QUEUED,    /* waiting for a free slot (max_connections): no easy handle yet */
    CALL_RUNNING,   /* easy handle is in the multi */
    CALL_BACKOFF,   /* waiting on call->timer before the next attempt */
    CALL_FAILING,   /* could not (re)start: failure delivered from call->timer */
    CALL_DONE       /* completion callback running; freed when it returns */
} call_state;

typedef struct mb_sock mb_sock;

/* Easy handles kept for reuse: curl_easy_init and _cleanup per call cost
 * more than the rest of a short call's setup (allocation of the handle and
 * its buffers). */
#define EASY_POOL 64

struct mb_upstream {
    struct event_base *base;
    CURLM             *multi;
    CURLSH            *share;
    struct event      *timer;        /* curl's single timeout */
    char              *base_url;
    char              *ca_file, *client_cert_file, *client_key_file;
    mb_upstream_opts   opts;         /* strings point at the copies above */
    h1_client         *h1;           /* buffered calls */
    mb_call           *calls;        /* every live call, doubly linked */
    size_t             n_calls;
    mb_sock           *socks;        /* every watched socket, doubly linked */
    CURL              *idle[EASY_POOL]; /* easy handles of finished calls, reset */
    size_t             n_idle;
    /* Calls beyond max_connections wait here, without an easy handle (each
     * holds about 25 KiB of buffers): 1,000 bulk requests of 16 calls each
     * would otherwise hold 16,000 of them while 64 run. */
    size_t             n_slots;      /* calls holding an easy handle */
    mb_call           *queue_head, *queue_tail;
    struct event      *dequeue_ev;   /* starts queued calls, from the loop */
};

/* One socket curl asked us to watch. */
struct mb_sock {
    mb_upstream   *up;
    struct event  *ev;
    curl_socket_t  fd;
    short          what;             /* EV_READ|EV_WRITE currently watched */
    int            idle;             /* curl let go of it (a pooled connection); still watched */
    mb_sock       *prev, *next;
};

struct mb_call {
    mb_upstream        *up;
    mb_call            *prev, *next;
    mb_call            *qprev, *qnext; /* CALL_QUEUED: the upstream's FIFO */
    int                 has_slot;    /* counted in up->n_slots */
    call_state          state;
    h1_exchange        *ex;          /* buffered: the attempt running */
    char               *wire;        /* buffered: the request as sent (holds the token) */
    size_t              wire_len;
    int                 is_head;
    h1_result           h1_failure;  /* buffered: how the last attempt failed */
    CURL               *easy;
    struct curl_slist  *headers;
    struct event       *timer;       /* retry backoff / deferred failure */
    char               *method;
    char               *path;
    char               *body;        /* copy of the request body, may be NULL */
    size_t              body_len;
    int                 secret_body;
    char               *want_header; /* response header to capture, or NULL */
    char               *header_value; /* its value in the latest response */
    char               *buf;         /* response body, NUL-terminated */
    size_t              len, cap;
    int                 too_big;     /* response exceeded max_response_bytes */
    int                 headers_done; /* the last header block ended with its empty line */
    int                 attempts;
    struct timespec     started;
    mb_response         resp;
    char                msg[CURL_ERROR_SIZE + 64]; /* our own error text */
    char                errbuf[CURL_ERROR_SIZE];   /* curl's, per attempt */
    mb_call_cb          cb;
    void               *arg;
    /* streaming calls (upstream_stream) */
    const mb_stream_cbs *stream;     /* NULL: a buffered call */
    void               *stream_arg;
    int                 with_body;
    long long           body_size;   /* -1: unknown (chunked) */
    long long           uploaded;    /* request body bytes taken so far */
    int                 responded;   /* on_response ran */
    int                 aborted;     /* a stream callback said stop */
    int                 up_paused, down_paused;
    char              **lines;       /* the response's header lines */
    size_t              nlines, lines_cap;
};

static void check_multi_info(mb_upstream *up);

/* ---- helpers ----------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static int has_header(const char *const *headers, const char *name)
{
    size_t n = strlen(name);
    for (; headers && *headers; headers++)
        if (strncasecmp(*headers, name, n) == 0 && ((*headers)[n] == ':' || (*headers)[n] == ';'))
            return 1;
    return 0;
}

static int append_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *l = curl_slist_append(*list, line);
    if (!l)
        return -1;
    *list = l;
    return 0;
}

/* ---- curl socket and timer callbacks ------------------------------------ */

static void sock_free(mb_sock *s);

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
    mb_upstream *up = ((mb_sock *)arg)->up;   /* arg may be freed below */
    int running = 0;

    if (((mb_sock *)arg)->idle) {
        /* a pooled connection with input: the server closing it. Stop
         * watching; curl finds it dead when it would reuse it. */
        sock_free(arg);
        return;
    }
    int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) |
                ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);

    curl_multi_socket_action(up->multi, fd, flags, &running);
    check_multi_info(up);
}

static void sock_free(mb_sock *s)
{
    mb_upstream *up = s->up;
    if (s->prev)
        s->prev->next = s->next;
    else
        up->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    event_free(s->ev);
    free(s);
}

static mb_sock *sock_of_fd(mb_upstream *up, curl_socket_t fd)
{
    for (mb_sock *s = up->socks; s; s = s->next)
        if (s->fd == fd)
            return s;
    return NULL;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the watch goes before the socket does (its
 * number may come back for another connection). */
static int on_curl_close(void *clientp, curl_socket_t fd)
{
    mb_sock *s = sock_of_fd(clientp, fd);
    if (s)
        sock_free(s);
    return close(fd);
}

/* CURLMOPT_SOCKETFUNCTION: create, update or delete the watch on one socket.
 * A removed socket is usually a connection going back to curl's pool, to be
 * taken for the next call: its watch is kept (as it was: reading), so that
 * a short call on a pooled connection costs no epoll_ctl for it. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    mb_upstream *up = userp;
    mb_sock *s = socketp;
    short ev_what;
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        if (s)
            s->idle = 1;
        curl_multi_assign(up->multi, fd, NULL);
        return 0;
    }

    ev_what = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                      ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    if (!s && (s = sock_of_fd(up, fd)) != NULL) {
        s->idle = 0;
        curl_multi_assign(up->multi, fd, s);
    }

    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        s->up = up;
        s->fd = fd;
        s->ev = event_new(up->base, fd, (short)(ev_what | EV_PERSIST), on_sock_event, s);
        if (!s->ev) {
            free(s);
            return -1;
        }
        s->what = ev_what;
        s->next = up->socks;
        if (up->socks)
            up->socks->prev = s;
        up->socks = s;
        curl_multi_assign(up->multi, fd, s);
        if (event_add(s->ev, NULL) != 0)
            return -1;
        return 0;
    }

    if (s->what != ev_what) {
        event_del(s->ev);
        if (event_assign(s->ev, up->base, fd, (short)(ev_what | EV_PERSIST), on_sock_event, s) != 0)
            return -1;
        s->what = ev_what;
        if (event_add(s->ev, NULL) != 0)
            return -1;
    }
    return 0;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    mb_upstream *up = arg;
    int running = 0;
    (void)fd;
    (void)what;

    curl_multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(up);
}

/* CURLMOPT_TIMERFUNCTION: only (re)arms or disarms our timer; the work is
 * done later from on_timer, never from inside curl. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    mb_upstream *up = userp;
    (void)multi;

    if (timeout_ms < 0) {
        evtimer_del(up->timer);
        return 0;
    }
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
    return evtimer_add(up->timer, &tv) == 0 ? 0 : -1;
}

/* ---- the response body ---------------------------------------------------- */

static void lines_clear(mb_call *call)
{
    for (size_t i = 0; i < call->nlines; i++)
        free(call->lines[i]);
    call->nlines = 0;
}

static int lines_add(mb_call *call, const char *data, size_t n)
{
    while (n > 0 && (data[n - 1] == '\r' || data[n - 1] == '\n'))
        n--;
    if (call->nlines + 1 >= call->lines_cap) {
        size_t cap = call->lines_cap ? call->lines_cap * 2 : 32;
        char **l = realloc(call->lines, cap * sizeof(*l));
        if (l == NULL)
            return -1;
        call->lines = l;
        call->lines_cap = cap;
    }
    if ((call->lines[call->nlines] = strndup(data, n)) == NULL)
        return -1;
    call->nlines++;
    call->lines[call->nlines] = NULL;
    return 0;
}

/* Appends a piece of a buffered call's response body (kept NUL-terminated).
 * Returns 0, or -1 when it would pass max_response_bytes (call->too_big)
 * or memory runs out. */
static int body_append(mb_call *call, const char *data, size_t n)
{
    size_t max = call->up->opts.max_response_bytes;

    if (n > max - call->len) {   /* call->len <= max always holds */
        call->too_big = 1;
        return -1;
    }
    if (call->len + n + 1 > call->cap) {
        size_t cap = call->cap ? call->cap : 1024;
        while (cap < call->len + n + 1)
            cap *= 2;
        char *b = realloc(call->buf, cap);
        if (!b)
            return -1;
        call->buf = b;
        call->cap = cap;
    }
    memcpy(call->buf + call->len, data, n);
    call->len += n;
    call->buf[call->len] = '\0';
    return 0;
}

/* CURLOPT_READFUNCTION of a streaming call with a body. */
static size_t on_upload(char *buf, size_t size, size_t nitems, void *userp)
{
    mb_call *call = userp;
    size_t n = call->stream->on_upload(call->stream_arg, buf, size * nitems);
    if (n == MB_STREAM_PAUSE) {
        call->up_paused = 1;
        return CURL_READFUNC_PAUSE;
    }
    if (n > size * nitems) {
        call->aborted = 1;
        return CURL_READFUNC_ABORT;
    }
    call->uploaded += (long long)n;
    return n;
}

/* CURLOPT_WRITEFUNCTION: libcurl carries streaming calls only. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    mb_call *call = userp;
    size_t n = size * nmemb;
    size_t r = call->stream->on_data(call->stream_arg, data, n);

    if (r == MB_STREAM_PAUSE) {
        call->down_paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (r != n)
        call->aborted = 1;
    return r == n ? n : CURL_WRITEFUNC_ERROR;
}

/* CURLOPT_HEADERFUNCTION: libcurl 7.88 reports CURLE_OK for a response cut
 * inside its header block; remember whether the block was complete. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    mb_call *call = userp;
    size_t n = size * nmemb;

    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        call->headers_done = 0;          /* a new (maybe interim 1xx) response */
        lines_clear(call);
        if (call->header_value)
            explicit_bzero(call->header_value, strlen(call->header_value));
        free(call->header_value);
        call->header_value = NULL;
    } else if ((n == 2 && data[0] == '\r' && data[1] == '\n') || (n == 1 && data[0] == '\n')) {
        call->headers_done = 1;
        if (call->stream && !call->responded) {
            long status = 0;
            curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
            if (status >= 200 && status <= 999) {   /* not an interim 1xx */
                call->responded = 1;
                if (call->stream->on_response(call->stream_arg, (int)status,
                                              (const char *const *)call->lines, call->nlines) != 0) {
                    call->aborted = 1;
                    return 0;
                }
            }
        }
    } else if (call->stream) {
        if (lines_add(call, data, n) != 0)
            return 0;                    /* out of memory: fail the transfer */
    } else if (call->want_header != NULL) {
        size_t wl = strlen(call->want_header);
        if (n > wl && data[wl] == ':' && strncasecmp(data, call->want_header, wl) == 0) {
            const char *v = data + wl + 1, *end = data + n;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
                end--;
            if (call->header_value)
                explicit_bzero(call->header_value, strlen(call->header_value));
            free(call->header_value);
            call->header_value = strndup(v, (size_t)(end - v));
            if (call->header_value == NULL)
                return 0;                /* out of memory: fail the transfer */
        }
    }
    return n;
}

/* ---- call lifetime ----------------------------------------------------------- */

/* The only place a call's resources are freed. */
static void queue_unlink(mb_call *call)
{
    mb_upstream *up = call->up;
    if (call->qprev)
        call->qprev->qnext = call->qnext;
    else
        up->queue_head = call->qnext;
    if (call->qnext)
        call->qnext->qprev = call->qprev;
    else
        up->queue_tail = call->qprev;
    call->qprev = call->qnext = NULL;
}

static void call_free(mb_call *call)
{
    mb_upstream *up = call->up;

    if (call->state == CALL_QUEUED)
        queue_unlink(call);
    if (call->has_slot) {
        up->n_slots--;
        if (up->queue_head)
            event_active(up->dequeue_ev, EV_TIMEOUT, 1);   /* the next one, from the loop */
    }
    if (call->ex)
        h1_cancel(call->ex);
    if (call->wire) {
        explicit_bzero(call->wire, call->wire_len);   /* X-Auth-Token, maybe a secret body */
        free(call->wire);
    }
    if (call->easy) {
        if (call->state == CALL_RUNNING)
            curl_multi_remove_handle(up->multi, call->easy);
        if (up->n_idle < EASY_POOL) {
            curl_easy_reset(call->easy);    /* every option back to its default */
            up->idle[up->n_idle++] = call->easy;
        } else {
            curl_easy_cleanup(call->easy);
        }
    }
    if (call->timer)
        event_free(call->timer);
    for (struct curl_slist *h = call->headers; h != NULL; h = h->next)
        explicit_bzero(h->data, strlen(h->data));   /* X-Auth-Token lines */
    curl_slist_free_all(call->headers);

    if (call->prev)
        call->prev->next = call->next;
    else
        up->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    if (call->state != CALL_DONE)
        up->n_calls--;

    free(call->method);
    free(call->path);
    if (call->body && call->secret_body)
        explicit_bzero(call->body, call->body_len);
    free(call->body);
    lines_clear(call);
    free(call->lines);
    free(call->want_header);
    if (call->header_value)      /* it may be a token (X-Subject-Token) */
        explicit_bzero(call->header_value, strlen(call->header_value));
    free(call->header_value);
    free(call->buf);
    free(call);
}

/* Fills call->resp, runs the callback (exactly once), frees the call. */
static void call_complete(mb_call *call, mb_xfer xfer, int status, const char *error)
{
    if (call->state == CALL_RUNNING && call->easy)
        curl_multi_remove_handle(call->up->multi, call->easy);
    if (call->ex) {
        h1_cancel(call->ex);
        call->ex = NULL;
    }
    call->state = CALL_DONE;   /* upstream_cancel(call) from the callback is a no-op */
    call->up->n_calls--;

    call->resp.xfer = xfer;
    call->resp.status = xfer == XFER_HTTP ? status : 0;
    call->resp.body = call->buf ? call->buf : "";
    call->resp.body_len = call->len;
    call->resp.error = xfer == XFER_HTTP ? "" : (error && *error ? error : "upstream call failed");
    call->resp.header = xfer == XFER_HTTP ? call->header_value : NULL;
    call->resp.attempts = call->attempts;
    call->resp.seconds = seconds_since(&call->started);
    metrics_upstream_call(call->method, call->resp.status, call->resp.seconds);

    if (xfer == XFER_HTTP)
        log_debug("upstream: %s %s -> %d (%zu bytes, %d attempt%s, %.3f s)",
                  call->method, call->path, status, call->len, call->attempts,
                  call->attempts == 1 ? "" : "s", call->resp.seconds);
    else
        log_debug("upstream: %s %s failed after %d attempt%s: %s",
                  call->method, call->path, call->attempts,
                  call->attempts == 1 ? "" : "s", call->resp.error);

    if (call->stream)
        call->stream->on_done(call->stream_arg, &call->resp);
    else
        call->cb(&call->resp, call->arg);
    call_free(call);
}

static int h1_attempt(mb_call *call);

/* Puts the easy handle into the multi (or the request on an h1
 * connection) for one more attempt. */
static int call_start_attempt(mb_call *call)
{
    CURLMcode mc;

    call->attempts++;
    call->len = 0;
    if (call->buf)
        call->buf[0] = '\0';
    call->too_big = 0;
    call->headers_done = 0;
    call->responded = 0;
    lines_clear(call);
    call->errbuf[0] = '\0';

    log_debug("upstream: %s %s attempt %d", call->method, call->path, call->attempts);
    if (!call->stream)
        return h1_attempt(call);
    mc = curl_multi_add_handle(call->up->multi, call->easy);
    if (mc != CURLM_OK) {
        snprintf(call->msg, sizeof(call->msg), "cannot start upstream call: %s",
                 curl_multi_strerror(mc));
        return -1;
    }
    call->state = CALL_RUNNING;
    return 0;
}

/* call->timer: the retry backoff has elapsed, or a failure is to be
 * delivered from the loop rather than from inside upstream_call. */
static void on_call_timer(evutil_socket_t fd, short what, void *arg)
{
    mb_call *call = arg;
    (void)fd;
    (void)what;

    if (call->state == CALL_FAILING) {
        call_complete(call, XFER_UNREACHABLE, 0, call->msg);
        return;
    }
    if (call_start_attempt(call) != 0)
        call_complete(call, XFER_UNREACHABLE, 0, call->msg);
}

/* Arms call->timer to deliver the failure in call->msg from the loop. */
static void call_fail_later(mb_call *call)
{
    static const struct timeval zero = { 0, 0 };
    call->state = CALL_FAILING;
    evtimer_add(call->timer, &zero);
}


/* ---- buffered calls over h1_client ---------------------------------------------- */

static int h1_on_header(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
    mb_call *call = arg;
    if (call->want_header == NULL || strlen(call->want_header) != nlen ||
        strncasecmp(name, call->want_header, nlen) != 0)
        return 0;
    if (call->header_value)
        explicit_bzero(call->header_value, strlen(call->header_value));
    free(call->header_value);
    call->header_value = strndup(value, vlen);
    return call->header_value ? 0 : -1;      /* out of memory: stop */
}

static int h1_on_body(void *arg, const char *data, size_t n)
{
    return body_append(arg, data, n);
}

static void call_retry_or_complete(mb_call *call, int retryable, mb_xfer xfer);

/* The end of one attempt of a buffered call. */
static void h1_on_done(void *arg, h1_result r, int status, const char *error)
{
    mb_call *call = arg;
    mb_xfer xfer;
    int retryable = 0;

    call->ex = NULL;
    if (r == H1_OK) {
        call_complete(call, XFER_HTTP, status, NULL);
        return;
    }
    snprintf(call->msg, sizeof(call->msg), "%s", error && *error ? error : "upstream call failed");
    switch (r) {
    case H1_STOPPED:
        if (call->too_big)
            snprintf(call->msg, sizeof(call->msg), "upstream response larger than %zu bytes",
                     call->up->opts.max_response_bytes);
        else
            snprintf(call->msg, sizeof(call->msg), "out of memory reading the upstream response");
        xfer = XFER_BAD_RESPONSE;
        break;
    case H1_CONNECT_FAILED:
    case H1_CONNECT_TIMEOUT:
    case H1_CLOSED:
        xfer = XFER_UNREACHABLE;
        retryable = 1;
        break;
    case H1_TLS_FAILED:
        xfer = XFER_TLS;
        break;
    case H1_TIMEOUT:
        xfer = XFER_TIMEOUT;
        break;
    default:
        xfer = XFER_BAD_RESPONSE;
        break;
    }
    call_retry_or_complete(call, retryable, xfer);
}

static const h1_exchange_cbs h1_cbs = { h1_on_header, h1_on_body, h1_on_done };

/* One attempt of a buffered call: the request goes out on a pooled or new
 * connection. The time spent queued for a free slot and in earlier
 * attempts' backoff does not extend request_timeout per attempt; the time
 * queued does count (as with libcurl's CURLOPT_TIMEOUT_MS before). */
static int h1_attempt(mb_call *call)
{
    const mb_upstream_opts *o = &call->up->opts;
    long left = o->request_timeout_ms;
    if (call->attempts == 1) {
        long waited = (long)(seconds_since(&call->started) * 1000.0);
        left -= waited;
    }
    if (left < 1)
        left = 1;
    if (call->header_value)
        explicit_bzero(call->header_value, strlen(call->header_value));
    free(call->header_value);
    call->header_value = NULL;
    call->ex = h1_send(call->up->h1, call->wire, call->wire_len, call->is_head, left, &h1_cbs, call);
    if (!call->ex) {
        snprintf(call->msg, sizeof(call->msg), "cannot start upstream call: out of memory");
        return -1;
    }
    call->state = CALL_RUNNING;
    return 0;
}

/* ---- classification --------------------------------------------------------- */

static int is_tls_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
        return 1;
    default:
        return 0;
    }
}

/* Whether any byte of a response arrived during this attempt. */
static int got_response_bytes(mb_call *call)
{
    long header_size = 0;
    curl_easy_getinfo(call->easy, CURLINFO_HEADER_SIZE, &header_size);
    return header_size > 0 || call->len > 0;
}

/* Whether this attempt got past connecting (TCP and TLS) to sending the
 * request. A timeout before that point is a connect timeout: libcurl 7.88
 * reports both as CURLE_OPERATION_TIMEDOUT. */
static int request_was_sent(mb_call *call)
{
    curl_off_t pretransfer = 0;
    long request_size = 0;
    curl_easy_getinfo(call->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
    curl_easy_getinfo(call->easy, CURLINFO_REQUEST_SIZE, &request_size);
    return pretransfer > 0 || request_size > 0;
}

/* The peer closed or reset the connection during the TLS handshake (no
 * alert, no certificate problem): for the retry rules, a connection closed
 * before any response byte. libcurl 7.88 + OpenSSL 3 reports it as
 * CURLE_SSL_CONNECT_ERROR "OpenSSL SSL_connect: SSL_ERROR_SYSCALL in
 * connection to ..." (EOF) or with the socket's error text. */
static int tls_handshake_cut(const mb_call *call)
{
    return strstr(call->errbuf, "SSL_ERROR_SYSCALL") != NULL ||
           strstr(call->errbuf, "Connection reset by peer") != NULL ||
           strstr(call->errbuf, "Broken pipe") != NULL;
}

/* A receive or send error raised by the TLS layer rather than the socket:
 * the peer sent an alert (e.g. "tlsv13 alert certificate required" when
 * it refuses our client certificate after a TLS 1.3 handshake). libcurl
 * puts OpenSSL's error string, "...:SSL routines::...", in its text. A
 * close without close_notify ("unexpected eof") is a closed connection. */
static int tls_layer_error(const mb_call *call)
{
    return strstr(call->errbuf, "SSL routines") != NULL &&
           strstr(call->errbuf, "unexpected eof") == NULL;
}

/* How a failed attempt counts: sets *xfer, returns 1 when it may be retried
 * (connection refused, connect timeout, connection closed or reset before
 * any response byte). */
static int classify_failure(mb_call *call, CURLcode rc, mb_xfer *xfer)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
        *xfer = XFER_UNREACHABLE;
        return 1;
    case CURLE_OPERATION_TIMEDOUT:
        if (request_was_sent(call)) {
            *xfer = XFER_TIMEOUT;
            return 0;
        }
        *xfer = XFER_UNREACHABLE;
        return 1;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        if (got_response_bytes(call)) {
            *xfer = XFER_BAD_RESPONSE;
            return 0;
        }
        if (tls_layer_error(call)) {
            *xfer = XFER_TLS;
            return 0;
        }
        *xfer = XFER_UNREACHABLE;
        return 1;
    case CURLE_SSL_CONNECT_ERROR:
        if (tls_handshake_cut(call)) {
            *xfer = XFER_UNREACHABLE;
            return 1;
        }
        *xfer = XFER_TLS;
        return 0;
    default:
        *xfer = is_tls_error(rc) ? XFER_TLS : XFER_BAD_RESPONSE;
        return 0;
    }
}

/* call->msg = curl's error text for this attempt. For a refused connection
 * libcurl 7.88 says only "Couldn't connect to server": the system's reason
 * is added. */
static void call_error_text(mb_call *call, CURLcode rc)
{
    size_t n;

    snprintf(call->msg, sizeof(call->msg), "%s",
             call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc));
    /* curl's error buffer often ends with a space or newline */
    for (n = strlen(call->msg); n > 0 && (call->msg[n - 1] == ' ' || call->msg[n - 1] == '\n'); n--)
        call->msg[n - 1] = '\0';
    if (rc == CURLE_COULDNT_CONNECT) {
        long oserr = 0;
        char sys[128];
        curl_easy_getinfo(call->easy, CURLINFO_OS_ERRNO, &oserr);
        if (oserr > 0 && oserr < INT_MAX) {
            const char *why = strerror_r((int)oserr, sys, sizeof(sys));   /* GNU: returns the text */
            if (why && !strstr(call->msg, why))
                snprintf(call->msg + n, sizeof(call->msg) - n, " (%s)", why);
        }
    }
}

/* One attempt ended with rc: completes the call, or schedules a retry. */
static void call_attempt_failed(mb_call *call, CURLcode rc)
{
    mb_upstream *up = call->up;
    mb_xfer xfer;

    if (call->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(call->msg, sizeof(call->msg), "upstream response larger than %zu bytes",
                 up->opts.max_response_bytes);
        call_complete(call, XFER_BAD_RESPONSE, 0, call->msg);
        return;
    }

    int retryable = classify_failure(call, rc, &xfer);
    call_error_text(call, rc);
    if (call->stream && (call->uploaded > 0 || call->responded || call->aborted))
        retryable = 0;            /* the body cannot be sent twice */
    if (call->aborted && xfer != XFER_TIMEOUT)
        xfer = XFER_BAD_RESPONSE;
    curl_multi_remove_handle(up->multi, call->easy);
    call->state = CALL_BACKOFF;       /* out of the multi either way */
    call_retry_or_complete(call, retryable, xfer);
}

/* After a failed attempt (its error text in call->msg): the next attempt
 * after the backoff, or the end. */
static void call_retry_or_complete(mb_call *call, int retryable, mb_xfer xfer)
{
    mb_upstream *up = call->up;
    if (!retryable || call->attempts > up->opts.retries) {
        call_complete(call, xfer, 0, call->msg);
        return;
    }

    long delay = RETRY_BACKOFF_MS << (call->attempts - 1 < 10 ? call->attempts - 1 : 10);
    log_warning("upstream: %s %s attempt %d failed (%s), retrying in %ld ms",
                call->method, call->path, call->attempts, call->msg, delay);
    call->state = CALL_BACKOFF;
    struct timeval tv = { .tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000 };
    if (evtimer_add(call->timer, &tv) != 0)
        call_fail_later(call);   /* msg already holds the last error */
}

static void call_finished(mb_call *call, CURLcode rc)
{
    if (rc == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
        if (!call->headers_done) {
            snprintf(call->msg, sizeof(call->msg), "upstream response ended inside its headers");
            call_complete(call, XFER_BAD_RESPONSE, 0, call->msg);
        } else if (status < 100 || status > 999) {
            snprintf(call->msg, sizeof(call->msg), "upstream sent an invalid status (%ld)", status);
            call_complete(call, XFER_BAD_RESPONSE, 0, call->msg);
        } else {
            call_complete(call, XFER_HTTP, (int)status, NULL);
        }
        return;
    }
    call_attempt_failed(call, rc);
}

/* Reaps finished transfers one at a time: each completion callback may
 * cancel other calls (whose messages curl then drops) or start new ones. */
static void check_multi_info(mb_upstream *up)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(up->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        CURLcode rc = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        mb_call *call = (mb_call *)(void *)priv;
        if (call && call->state == CALL_RUNNING)
            call_finished(call, rc);
    }
}

/* ---- public ---------------------------------------------------------------- */

static void on_dequeue(evutil_socket_t fd, short what, void *arg);

mb_upstream *upstream_new(struct event_base *base, const mb_upstream_opts *opts)
{
    mb_upstream *up = calloc(1, sizeof(*up));
    if (!up) {
        log_error("upstream: out of memory");
        return NULL;
    }
    up->base = base;
    up->opts = *opts;
    up->base_url = dup_or_null(opts->base_url ? opts->base_url : "");
    up->ca_file = dup_or_null(opts->ca_file);
    up->client_cert_file = dup_or_null(opts->client_cert_file);
    up->client_key_file = dup_or_null(opts->client_key_file);
    if (!up->base_url || (opts->ca_file && !up->ca_file) ||
        (opts->client_cert_file && !up->client_cert_file) ||
        (opts->client_key_file && !up->client_key_file)) {
        log_error("upstream: out of memory");
        goto fail;
    }
    up->opts.base_url = up->base_url;
    up->opts.ca_file = up->ca_file;
    up->opts.client_cert_file = up->client_cert_file;
    up->opts.client_key_file = up->client_key_file;
    if (up->opts.max_connections < 1)
        up->opts.max_connections = 1;
    if (up->opts.retries < 0)
        up->opts.retries = 0;

    h1_client_opts ho = {
        .base_url = up->base_url, .ca_file = up->ca_file,
        .client_cert_file = up->client_cert_file, .client_key_file = up->client_key_file,
        .insecure = up->opts.insecure, .connect_timeout_ms = up->opts.connect_timeout_ms,
        .max_connections = up->opts.max_connections, .idle_timeout_ms = H1_IDLE_TIMEOUT_MS,
    };
    up->h1 = h1_client_new(base, &ho);
    if (!up->h1) {
        log_error("upstream: cannot set up the client for %s", up->base_url);
        goto fail;
    }

    up->timer = evtimer_new(base, on_timer, up);
    up->dequeue_ev = event_new(base, -1, 0, on_dequeue, up);
    if (!up->timer || !up->dequeue_ev) {
        log_error("upstream: cannot create the timer event");
        goto fail;
    }

    up->share = curl_share_init();
    if (!up->share ||
        curl_share_setopt(up->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
        curl_share_setopt(up->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK) {
        log_error("upstream: cannot set up the libcurl share handle");
        goto fail;
    }

    up->multi = curl_multi_init();
    if (!up->multi ||
        curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
        curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up) != CURLM_OK ||
        curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
        curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up) != CURLM_OK ||
        curl_multi_setopt(up->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, up->opts.max_connections) != CURLM_OK ||
        curl_multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS, up->opts.max_connections) != CURLM_OK ||
        curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, up->opts.max_connections) != CURLM_OK) {
        log_error("upstream: cannot set up the libcurl multi handle");
        goto fail;
    }
    return up;

fail:
    upstream_free(up);
    return NULL;
}

void upstream_free(mb_upstream *up)
{
    if (!up)
        return;
    /* Not from inside a completion callback: that call is still in use. */
    for (mb_call *c = up->calls, *next; c; c = next) {
        next = c->next;
        upstream_cancel(c);
    }
    h1_client_free(up->h1);
    while (up->n_idle > 0)
        curl_easy_cleanup(up->idle[--up->n_idle]);
    if (up->multi)
        curl_multi_cleanup(up->multi);   /* closes pooled connections */
    while (up->socks)
        sock_free(up->socks);
    if (up->share)
        curl_share_cleanup(up->share);
    if (up->timer)
        event_free(up->timer);
    if (up->dequeue_ev)
        event_free(up->dequeue_ev);
    free(up->base_url);
    free(up->ca_file);
    free(up->client_cert_file);
    free(up->client_key_file);
    free(up);
}

/* The header lines of the call, as given; curl's own Expect: 100-continue
 * and form Content-Type are suppressed unless the caller set them. */
static int call_headers(mb_call *call, const mb_request *req)
{
    for (const char *const *h = req->headers; h && *h; h++)
        if (append_header(&call->headers, *h) != 0)
            return -1;
    if (!has_header(req->headers, "Expect") && append_header(&call->headers, "Expect:") != 0)
        return -1;
    if (!has_header(req->headers, "Content-Type") && append_header(&call->headers, "Content-Type:") != 0)
        return -1;
    if (call->stream && !has_header(req->headers, "Accept")
        && append_header(&call->headers, "Accept:") != 0)   /* no curl default */
        return -1;
    return 0;
}

/* Sets every option of the easy handle for this call. Returns the first
 * failing CURLcode. */
static CURLcode call_setup(mb_call *call)
{
    mb_upstream *up = call->up;
    const mb_upstream_opts *o = &up->opts;
    CURL *e = call->easy;
    CURLcode rc = CURLE_OK;
    const char *method = call->method;
    size_t ulen = strlen(o->base_url) + strlen(call->path) + 1;
    char *url = malloc(ulen);

    if (!url)
        return CURLE_OUT_OF_MEMORY;
    snprintf(url, ulen, "%s%s", o->base_url, call->path);

#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
    SET(CURLOPT_URL, url);                  /* curl copies strings */
    SET(CURLOPT_PRIVATE, (void *)call);
    SET(CURLOPT_SHARE, up->share);
    SET(CURLOPT_CLOSESOCKETFUNCTION, on_curl_close);
    SET(CURLOPT_CLOSESOCKETDATA, (void *)up);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_PATH_AS_IS, 1L);            /* the path goes out as given: no "/../" squashing */
    SET(CURLOPT_PROXY, "");                 /* never an environment proxy */
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    /* many GiB may pass: no total limit, but no byte for request_timeout fails */
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, (o->request_timeout_ms + 999) / 1000);
    SET(CURLOPT_ERRORBUFFER, call->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)call);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)call);
    if (o->insecure) {
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    } else {
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
    }
    if (o->ca_file)
        SET(CURLOPT_CAINFO, o->ca_file);
    if (o->client_cert_file)
        SET(CURLOPT_SSLCERT, o->client_cert_file);
    if (o->client_key_file)
        SET(CURLOPT_SSLKEY, o->client_key_file);

    if (call->stream && call->with_body) {
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_READFUNCTION, on_upload);
        SET(CURLOPT_READDATA, (void *)call);
        if (call->body_size >= 0)
            SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)call->body_size);
        SET(CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else {
        /* POST, PUT and PATCH always send a body (maybe empty, so that
         * Content-Length: 0 goes out); other methods only when given one. */
        int with_body = call->body || strcmp(method, "POST") == 0 ||
                        strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
        if (with_body) {
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
            SET(CURLOPT_POSTFIELDS, call->body ? call->body : "");
        }
        SET(CURLOPT_CUSTOMREQUEST, method);
    }
#undef SET
    free(url);
    if (rc != CURLE_OK)
        return rc;

    return curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
}

static mb_call *call_start(mb_upstream *up, const mb_request *req, mb_call *call);

mb_call *upstream_call(mb_upstream *up, const mb_request *req, mb_call_cb cb, void *arg)
{
    mb_call *call = calloc(1, sizeof(*call));
    if (!call) {
        log_error("upstream: out of memory starting %s %s", req->method, req->path);
        return NULL;
    }
    call->cb = cb;
    call->arg = arg;
    return call_start(up, req, call);
}

mb_call *upstream_stream(mb_upstream *up, const mb_request *req, int with_body,
                         long long body_size, const mb_stream_cbs *cbs, void *arg)
{
    mb_call *call = calloc(1, sizeof(*call));
    if (!call) {
        log_error("upstream: out of memory starting %s %s", req->method, req->path);
        return NULL;
    }
    call->stream = cbs;
    call->stream_arg = arg;
    call->with_body = with_body;
    call->body_size = with_body ? body_size : 0;
    return call_start(up, req, call);
}

/* Repauses what is still paused after a resume of the other direction. */
static void call_unpause(mb_call *call)
{
    int mask = (call->up_paused ? CURLPAUSE_SEND : 0) | (call->down_paused ? CURLPAUSE_RECV : 0);
    curl_easy_pause(call->easy, mask == 0 ? CURLPAUSE_CONT : mask);
}

void upstream_stream_resume_upload(mb_call *call)
{
    if (call && call->state == CALL_RUNNING && call->up_paused) {
        call->up_paused = 0;
        call_unpause(call);
    }
}

void upstream_stream_resume_download(mb_call *call)
{
    if (call && call->state == CALL_RUNNING && call->down_paused) {
        call->down_paused = 0;
        call_unpause(call);   /* may hand data to on_data right here */
    }
}

/* Gives the call a slot and an easy handle and starts its first attempt
 * (a failure to is delivered from the loop). */
static void call_run(mb_call *call)
{
    mb_upstream *up = call->up;
    CURLcode rc;

    call->has_slot = 1;
    up->n_slots++;
    call->state = CALL_FAILING;   /* not in the multi yet */
    if (!call->stream) {
        if (call_start_attempt(call) != 0) {
            call->attempts = 1;
            call_fail_later(call);
        }
        return;
    }
    call->easy = up->n_idle > 0 ? up->idle[--up->n_idle] : curl_easy_init();
    rc = call->easy ? call_setup(call) : CURLE_OUT_OF_MEMORY;
    if (rc != CURLE_OK) {
        snprintf(call->msg, sizeof(call->msg), "cannot set up upstream call: %s",
                 curl_easy_strerror(rc));
        log_error("upstream: %s %s: %s", call->method, call->path, call->msg);
        call->attempts = 1;
        call_fail_later(call);
    } else if (call_start_attempt(call) != 0) {
        call_fail_later(call);
    }
}

/* upstream->dequeue_ev: slots came free; start what waits for them. A
 * buffered call that waited its whole request_timeout fails as a timeout. */
static void on_dequeue(evutil_socket_t fd, short what, void *arg)
{
    mb_upstream *up = arg;
    (void)fd;
    (void)what;
    while (up->queue_head && up->n_slots < (size_t)up->opts.max_connections) {
        mb_call *call = up->queue_head;
        queue_unlink(call);
        call->state = CALL_FAILING;
        if (!call->stream && seconds_since(&call->started) * 1000.0 >= (double)up->opts.request_timeout_ms) {
            snprintf(call->msg, sizeof(call->msg),
                     "no free upstream connection within request_timeout (%ld in use)",
                     up->opts.max_connections);
            call->attempts = 0;
            call_complete(call, XFER_TIMEOUT, 0, call->msg);
            continue;
        }
        call_run(call);
    }
}

/* Sets up and starts a call allocated by upstream_call/upstream_stream. */
static mb_call *call_start(mb_upstream *up, const mb_request *req, mb_call *call)
{

    call->up = up;
    call->state = CALL_FAILING;   /* not in the multi yet */
    clock_gettime(CLOCK_MONOTONIC, &call->started);
    call->next = up->calls;
    if (up->calls)
        up->calls->prev = call;
    up->calls = call;
    up->n_calls++;

    call->method = strdup(req->method);
    call->path = strdup(req->path);
    call->timer = evtimer_new(up->base, on_call_timer, call);
    call->secret_body = req->secret_body;
    call->want_header = req->want_header ? strdup(req->want_header) : NULL;
    if (!call->stream) {
        call->is_head = strcmp(req->method, "HEAD") == 0;
        if (!call->method || !call->path || !call->timer || (req->want_header && !call->want_header) ||
            h1_format_request(up->h1, req->method, req->path, req->headers, req->body, req->body_len,
                              &call->wire, &call->wire_len) != 0) {
            call_free(call);
            goto oom;
        }
    } else if (req->body || req->body_len) {
        call->body_len = req->body_len;
        call->body = malloc(req->body_len ? req->body_len : 1);
        if (call->body && req->body_len)
            memcpy(call->body, req->body, req->body_len);
    }
    if (call->stream && (!call->method || !call->path || !call->timer ||
        ((req->body || req->body_len) && !call->body) ||
        (req->want_header && !call->want_header) || call_headers(call, req) != 0)) {
        call_free(call);
        goto oom;
    }
    if (up->n_slots < (size_t)up->opts.max_connections && up->queue_head == NULL) {
        call_run(call);
    } else {
        call->state = CALL_QUEUED;
        call->qprev = up->queue_tail;
        if (up->queue_tail)
            up->queue_tail->qnext = call;
        else
            up->queue_head = call;
        up->queue_tail = call;
    }
    return call;

oom:
    log_error("upstream: out of memory starting %s %s", req->method, req->path);
    return NULL;
}

void upstream_cancel(mb_call *call)
{
    if (!call || call->state == CALL_DONE)
        return;   /* its callback is running; it is freed when that returns */
    log_debug("upstream: %s %s cancelled", call->method, call->path);
    call_free(call);
}

size_t upstream_in_flight(const mb_upstream *up)
{
    return up->n_calls;
}
