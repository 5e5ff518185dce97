/* upstream: the calls of one event loop to the upstream, over h1_client's
 * keep-alive connections: buffered calls (everything but the proxy) and
 * streaming calls (the proxy).
 *
 * - One mb_call per upstream call owns its request bytes, response buffer
 *   (or header lines), retry timer and the h1 exchange of its current
 *   attempt; call_free() is the only place that frees them.
 * - At most max_connections calls run at once; the others wait in a FIFO
 *   without any connection or buffer (1,000 bulk requests of 16 calls each
 *   would otherwise hold 16,000 requests in flight while 64 run).
 * - A failed attempt is classified here (retryable or not, which mb_xfer)
 *   and retried after a backoff.
 */
#include "upstream.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "h1_client.h"
#include "log.h"
#include "metrics.h"

#define RETRY_BACKOFF_MS 50L
/* An idle pooled connection is closed after this (libcurl, used before,
 * had 118 s as its default maximum connection age). */
#define H1_IDLE_TIMEOUT_MS 60000L

typedef enum {
    CALL_QUEUED,    /* waiting for a free slot (max_connections) */
    CALL_RUNNING,   /* an attempt is on a connection */
    CALL_BACKOFF,   /* waiting on call->timer before the next attempt */
    CALL_FAILING,   /* could not (re)start: failure delivered from call->timer */
    CALL_DONE       /* completion callback running; freed when it returns */
} call_state;

struct mb_upstream {
    struct event_base *base;
    char              *base_url;
    mb_upstream_opts   opts;         /* base_url points at the copy above; the file names are not kept */
    h1_client         *h1;
    mb_call           *calls;        /* every live call, doubly linked */
    size_t             n_calls;
    size_t             n_slots;      /* calls running or between attempts */
    mb_call           *queue_head, *queue_tail;
    struct event      *dequeue_ev;   /* starts queued calls, from the loop */
};

struct mb_call {
    mb_upstream        *up;
    mb_call            *prev, *next;
    mb_call            *qprev, *qnext; /* CALL_QUEUED: the upstream's FIFO */
    int                 has_slot;    /* counted in up->n_slots */
    call_state          state;
    h1_exchange        *ex;          /* the attempt running */
    char               *wire;        /* the request as sent (holds the token): whole, or the head of a stream */
    size_t              wire_len;
    int                 is_head;
    struct event       *timer;       /* retry backoff / deferred failure or end */
    const char         *method;      /* the copy at the end of the struct */
    const char         *path;
    char               *want_header; /* response header to capture, or NULL */
    char               *header_value; /* its value in the latest response */
    char               *buf;         /* response body, NUL-terminated */
    size_t              len, cap;
    int                 too_big;     /* response exceeded max_response_bytes */
    int                 attempts;
    int                 maybe_done;   /* see mb_response.maybe_done */
    struct timespec     started;
    mb_response         resp;
    char                msg[384];    /* the error text of the last attempt */
    mb_call_cb          cb;
    void               *arg;
    /* streaming calls (upstream_stream) */
    const mb_stream_cbs *stream;     /* NULL: a buffered call */
    void               *stream_arg;
    long long           length;      /* H1_NO_BODY, H1_CHUNKED or Content-Length */
    long long           uploaded;    /* request body bytes taken so far */
    int                 responded;   /* on_response ran */
    int                 aborted;     /* a stream callback said stop */
    int                 up_paused, down_paused;
    char               *held;        /* response bytes on_data refused (paused), offered again on resume */
    size_t              held_len, held_cap;
    int                 end_waits;   /* the exchange ended while bytes were held */
    mb_xfer             end_xfer;
    int                 end_status;
    char              **lines;       /* the response's header lines */
    size_t              nlines, lines_cap;
    char                strings[];   /* method and path */
};

/* ---- helpers ------------------------------------------------------------ */

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void lines_clear(mb_call *call)
{
    for (size_t i = 0; i < call->nlines; i++)
        free(call->lines[i]);
    call->nlines = 0;
}

/* Keeps "Name: value" for the streaming call's on_response. */
static int lines_add(mb_call *call, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (call->nlines + 1 >= call->lines_cap) {
        size_t cap = call->lines_cap ? call->lines_cap * 2 : 32;
        char **l = realloc(call->lines, cap * sizeof(*l));
        if (l == NULL)
            return -1;
        call->lines = l;
        call->lines_cap = cap;
    }
    char *line = malloc(nlen + 2 + vlen + 1);
    if (line == NULL)
        return -1;
    memcpy(line, name, nlen);
    memcpy(line + nlen, ": ", 2);
    memcpy(line + nlen + 2, value, vlen);
    line[nlen + 2 + vlen] = '\0';
    call->lines[call->nlines++] = line;
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
        /* from 512: a member object fits, and the block stays in malloc's
         * per-thread cache (1 KiB and up would make glibc consolidate its
         * fast bins on every call) */
        size_t cap = call->cap ? call->cap : 512;
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

/* ---- call lifetime ----------------------------------------------------------- */

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

/* The only place a call's resources are freed. */
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
    if (call->timer)
        event_free(call->timer);
    if (call->wire) {
        explicit_bzero(call->wire, call->wire_len);   /* X-Auth-Token, maybe a secret body */
        free(call->wire);
    }

    if (call->prev)
        call->prev->next = call->next;
    else
        up->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    if (call->state != CALL_DONE)
        up->n_calls--;

    lines_clear(call);
    free(call->lines);
    free(call->want_header);
    wipe_free(call->header_value);   /* it may be a token (X-Subject-Token) */
    free(call->buf);
    free(call->held);
    free(call);
}

/* Fills call->resp, runs the callback (exactly once), frees the call. */
static void call_complete(mb_call *call, mb_xfer xfer, int status, const char *error)
{
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
    call->resp.maybe_done = call->maybe_done;
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

static int call_start_attempt(mb_call *call);

/* call->timer: the retry backoff has elapsed, or a failure (or the end of
 * a stream whose last bytes were held) is to be delivered from the loop. */
static void on_call_timer(evutil_socket_t fd, short what, void *arg)
{
    mb_call *call = arg;
    (void)fd;
    (void)what;

    if (call->state == CALL_FAILING) {
        call_complete(call, call->end_waits ? call->end_xfer : XFER_UNREACHABLE,
                      call->end_status, call->msg);
        return;
    }
    if (call_start_attempt(call) != 0)
        call_complete(call, XFER_UNREACHABLE, 0, call->msg);
}

/* Arms call->timer to deliver the end (the failure in call->msg, or
 * end_xfer when end_waits) from the loop. */
static void call_fail_later(mb_call *call)
{
    static const struct timeval zero = { 0, 0 };
    call->state = CALL_FAILING;
    evtimer_add(call->timer, &zero);
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

/* ---- the exchange's callbacks ---------------------------------------------- */

static int on_h1_header(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
    mb_call *call = arg;
    if (call->stream)
        return lines_add(call, name, nlen, value, vlen);
    if (call->want_header == NULL || strlen(call->want_header) != nlen ||
        strncasecmp(name, call->want_header, nlen) != 0)
        return 0;
    wipe_free(call->header_value);
    call->header_value = strndup(value, vlen);
    return call->header_value ? 0 : -1;      /* out of memory: stop */
}

static int on_h1_head(void *arg, int status)
{
    mb_call *call = arg;
    call->responded = 1;
    if (call->stream->on_response(call->stream_arg, status, (const char *const *)call->lines,
                                  call->nlines) != 0) {
        call->aborted = 1;
        return -1;
    }
    return 0;
}

static int hold(mb_call *call, const char *data, size_t n)
{
    if (call->held_len + n > call->held_cap) {
        size_t cap = call->held_cap ? call->held_cap : 16384;
        while (cap < call->held_len + n)
            cap *= 2;
        char *b = realloc(call->held, cap);
        if (!b)
            return -1;
        call->held = b;
        call->held_cap = cap;
    }
    memcpy(call->held + call->held_len, data, n);
    call->held_len += n;
    return 0;
}

static int on_h1_body(void *arg, const char *data, size_t n)
{
    mb_call *call = arg;
    if (!call->stream)
        return body_append(call, data, n);

    /* a stream: bytes the proxy cannot take yet are held here, and the
     * connection stops being read until it resumes */
    if (call->down_paused || call->held_len > 0)
        return hold(call, data, n);
    size_t r = call->stream->on_data(call->stream_arg, data, n);
    if (r == n)
        return 0;
    if (r == MB_STREAM_PAUSE) {
        call->down_paused = 1;
        h1_pause_download(call->ex);
        return hold(call, data, n);
    }
    call->aborted = 1;
    return -1;
}

static size_t on_h1_upload(void *arg, char *buf, size_t max)
{
    mb_call *call = arg;
    size_t n = call->stream->on_upload(call->stream_arg, buf, max);
    if (n == MB_STREAM_PAUSE) {
        call->up_paused = 1;
        return H1_PAUSE;
    }
    if (n > max) {
        call->aborted = 1;
        return H1_ABORT;
    }
    call->uploaded += (long long)n;
    return n;
}

/* How a failed attempt counts: sets *xfer, returns 1 when it may be
 * retried (no connection, connect timeout, closed or reset before any
 * response byte); a TLS failure, a timeout after the request went out and
 * a bad response never are. */
static int classify(h1_result r, mb_xfer *xfer)
{
    switch (r) {
    case H1_CONNECT_FAILED:
    case H1_CONNECT_TIMEOUT:
    case H1_CLOSED:
        *xfer = XFER_UNREACHABLE;
        return 1;
    case H1_TLS_FAILED:
        *xfer = XFER_TLS;
        return 0;
    case H1_TIMEOUT:
        *xfer = XFER_TIMEOUT;
        return 0;
    default:
        *xfer = XFER_BAD_RESPONSE;
        return 0;
    }
}

/* The end of one attempt. */
static void on_h1_done(void *arg, h1_result r, int status, const char *error)
{
    mb_call *call = arg;
    mb_xfer xfer;

    if (call->ex && h1_exchange_delivered(call->ex))
        call->maybe_done = 1;
    call->ex = NULL;
    if (r == H1_OK) {
        if (call->held_len > 0) {
            /* the last bytes wait for the client: the end comes after them */
            call->end_waits = 1;
            call->end_xfer = XFER_HTTP;
            call->end_status = status;
            call->state = CALL_FAILING;
            return;
        }
        call_complete(call, XFER_HTTP, status, NULL);
        return;
    }
    snprintf(call->msg, sizeof(call->msg), "%s", error && *error ? error : "upstream call failed");
    int retryable = classify(r, &xfer);
    if (r == H1_STOPPED) {
        if (call->too_big)
            snprintf(call->msg, sizeof(call->msg), "upstream response larger than %zu bytes",
                     call->up->opts.max_response_bytes);
        else if (!call->aborted && !call->stream)
            snprintf(call->msg, sizeof(call->msg), "out of memory reading the upstream response");
    }
    if (call->stream && (call->uploaded > 0 || call->responded || call->aborted))
        retryable = 0;            /* the body cannot be sent twice; the response has begun */
    if (call->aborted && xfer != XFER_TIMEOUT)
        xfer = XFER_BAD_RESPONSE;
    call_retry_or_complete(call, retryable, xfer);
}

static const h1_exchange_cbs buffered_cbs = { on_h1_header, on_h1_body, on_h1_done, NULL, NULL };
static const h1_exchange_cbs stream_cbs = { on_h1_header, on_h1_body, on_h1_done, on_h1_head, on_h1_upload };

/* One attempt: the request goes out on a pooled or new connection. The
 * first attempt's request_timeout counts the time it waited in the queue. */
static int call_start_attempt(mb_call *call)
{
    const mb_upstream_opts *o = &call->up->opts;

    call->attempts++;
    call->len = 0;
    if (call->buf)
        call->buf[0] = '\0';
    call->too_big = 0;
    call->responded = 0;
    lines_clear(call);
    wipe_free(call->header_value);
    call->header_value = NULL;
    log_debug("upstream: %s %s attempt %d", call->method, call->path, call->attempts);

    if (call->stream) {
        call->ex = h1_stream(call->up->h1, call->wire, call->wire_len, call->is_head, call->length,
                             o->request_timeout_ms, &stream_cbs, call);
    } else {
        long left = o->request_timeout_ms;
        if (call->attempts == 1)
            left -= (long)(seconds_since(&call->started) * 1000.0);
        call->ex = h1_send(call->up->h1, call->wire, call->wire_len, call->is_head,
                           left > 1 ? left : 1, &buffered_cbs, call);
    }
    if (!call->ex) {
        snprintf(call->msg, sizeof(call->msg), "cannot start upstream call: out of memory");
        return -1;
    }
    call->state = CALL_RUNNING;
    return 0;
}

/* Gives the call a slot and starts its first attempt (a failure to is
 * delivered from the loop). */
static void call_run(mb_call *call)
{
    mb_upstream *up = call->up;

    call->has_slot = 1;
    up->n_slots++;
    call->state = CALL_FAILING;
    if (call_start_attempt(call) != 0)
        call_fail_later(call);
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

/* ---- public ---------------------------------------------------------------- */

mb_upstream *upstream_new(struct event_base *base, const mb_upstream_opts *opts)
{
    mb_upstream *up = calloc(1, sizeof(*up));
    if (!up) {
        log_error("upstream: out of memory");
        return NULL;
    }
    up->base = base;
    up->opts = *opts;
    up->base_url = strdup(opts->base_url ? opts->base_url : "");
    if (!up->base_url) {
        log_error("upstream: out of memory");
        goto fail;
    }
    up->opts.base_url = up->base_url;
    up->opts.ca_file = up->opts.client_cert_file = up->opts.client_key_file = NULL;
    if (up->opts.max_connections < 1)
        up->opts.max_connections = 1;
    if (up->opts.retries < 0)
        up->opts.retries = 0;

    h1_client_opts ho = {
        .base_url = up->base_url, .ca_file = opts->ca_file,
        .client_cert_file = opts->client_cert_file, .client_key_file = opts->client_key_file,
        .insecure = opts->insecure, .connect_timeout_ms = opts->connect_timeout_ms,
        .max_connections = up->opts.max_connections, .idle_timeout_ms = H1_IDLE_TIMEOUT_MS,
    };
    up->h1 = h1_client_new(base, &ho);
    up->dequeue_ev = event_new(base, -1, 0, on_dequeue, up);
    if (!up->h1 || !up->dequeue_ev) {
        log_error("upstream: cannot set up the client for %s", up->base_url);
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
    h1_client_free(up->h1);          /* closes pooled connections */
    if (up->dequeue_ev)
        event_free(up->dequeue_ev);
    free(up->base_url);
    free(up);
}

/* Sets up a call allocated with its strings and starts or queues it. */
static mb_call *call_new(mb_upstream *up, const mb_request *req)
{
    size_t ml = strlen(req->method) + 1, pl = strlen(req->path) + 1;
    mb_call *call = calloc(1, sizeof(*call) + ml + pl);
    if (!call) {
        log_error("upstream: out of memory starting %s %s", req->method, req->path);
        return NULL;
    }
    memcpy(call->strings, req->method, ml);
    memcpy(call->strings + ml, req->path, pl);
    call->method = call->strings;
    call->path = call->strings + ml;
    call->up = up;
    call->state = CALL_FAILING;   /* not started yet */
    call->is_head = strcmp(req->method, "HEAD") == 0;
    clock_gettime(CLOCK_MONOTONIC, &call->started);
    call->next = up->calls;
    if (up->calls)
        up->calls->prev = call;
    up->calls = call;
    up->n_calls++;
    call->timer = evtimer_new(up->base, on_call_timer, call);
    call->want_header = req->want_header ? strdup(req->want_header) : NULL;
    if (!call->timer || (req->want_header && !call->want_header)) {
        call_free(call);
        log_error("upstream: out of memory starting %s %s", req->method, req->path);
        return NULL;
    }
    return call;
}

static mb_call *call_go(mb_upstream *up, mb_call *call)
{
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
}

mb_call *upstream_call(mb_upstream *up, const mb_request *req, mb_call_cb cb, void *arg)
{
    mb_call *call = call_new(up, req);
    if (!call)
        return NULL;
    call->cb = cb;
    call->arg = arg;
    if (h1_format_request(up->h1, req->method, req->path, req->headers, req->body, req->body_len,
                          &call->wire, &call->wire_len) != 0) {
        log_error("upstream: out of memory starting %s %s", req->method, req->path);
        call_free(call);
        return NULL;
    }
    return call_go(up, call);
}

mb_call *upstream_stream(mb_upstream *up, const mb_request *req, int with_body,
                         long long body_size, const mb_stream_cbs *cbs, void *arg)
{
    mb_call *call = call_new(up, req);
    if (!call)
        return NULL;
    call->stream = cbs;
    call->stream_arg = arg;
    call->length = !with_body ? H1_NO_BODY : body_size < 0 ? H1_CHUNKED : body_size;
    if (h1_format_head(up->h1, req->method, req->path, req->headers, call->length,
                       &call->wire, &call->wire_len) != 0) {
        log_error("upstream: out of memory starting %s %s", req->method, req->path);
        call_free(call);
        return NULL;
    }
    return call_go(up, call);
}

void upstream_stream_resume_upload(mb_call *call)
{
    if (call && call->state == CALL_RUNNING && call->up_paused) {
        call->up_paused = 0;
        h1_resume_upload(call->ex);
    }
}

/* Offers the held bytes again; when they are all taken, the connection is
 * read again (or the call ends, if the response had ended meanwhile). */
void upstream_stream_resume_download(mb_call *call)
{
    if (!call || !call->down_paused || (call->state != CALL_RUNNING && !call->end_waits))
        return;
    call->down_paused = 0;
    if (call->held_len > 0) {
        size_t r = call->stream->on_data(call->stream_arg, call->held, call->held_len);
        if (r == MB_STREAM_PAUSE) {
            call->down_paused = 1;
            return;
        }
        if (r != call->held_len) {
            call->aborted = 1;
            call->held_len = 0;
            snprintf(call->msg, sizeof(call->msg), "the response could not be passed on");
            call->end_waits = 1;
            call->end_xfer = XFER_BAD_RESPONSE;
            call->end_status = 0;
            if (call->ex) {
                h1_cancel(call->ex);
                call->ex = NULL;
            }
            call_fail_later(call);
            return;
        }
        call->held_len = 0;
    }
    if (call->end_waits)
        call_fail_later(call);          /* the end, from the loop */
    else
        h1_resume_download(call->ex);
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
