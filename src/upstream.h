/* upstream: an HTTP(S) client on the libevent loop, over h1_client's pooled
 * keep-alive connections (one mb_upstream per event loop). It knows nothing
 * of membership: a call is a method, a URL path, headers and an optional
 * small body; the whole response body is collected (bounded) and handed to
 * the completion callback.
 *
 * Rules:
 * - The completion callback runs exactly once per call that was not
 *   cancelled, always from the event loop, never from inside upstream_call.
 * - After upstream_cancel(call) the callback never runs and the call is freed.
 * - The call (and the response it points to) is freed right after the
 *   callback returns; copy what you need.
 * - Starting new calls, or cancelling other calls, from inside a completion
 *   callback is allowed; upstream_free is not.
 * - Transport failures before any response byte (connection refused, connect
 *   timeout, connection closed or reset before a byte of response) are
 *   retried up to opts.retries times with a short backoff (50 ms, then
 *   doubled); a TLS verification failure, a timeout after the request was
 *   sent, and every HTTP status are never retried.
 */
#ifndef MB_UPSTREAM_H
#define MB_UPSTREAM_H

#include <stddef.h>
#include <event2/event.h>
#include "aggregate.h"   /* mb_xfer */

typedef struct mb_upstream mb_upstream;
typedef struct mb_call     mb_call;

typedef struct {
    const char *base_url;         /* "https://host:port[/prefix]" without trailing '/' */
    const char *ca_file;          /* NULL: system store */
    const char *client_cert_file; /* NULL: none */
    const char *client_key_file;
    int         insecure;         /* 1: no peer/host verification */
    long        connect_timeout_ms;
    long        request_timeout_ms; /* per attempt, whole transfer */
    int         retries;
    long        max_connections;  /* calls running at once = busy connections; idle ones count too */
    size_t      max_response_bytes; /* bigger body -> XFER_BAD_RESPONSE */
} mb_upstream_opts;

typedef struct {
    mb_xfer      xfer;        /* XFER_HTTP when a status line was received */
    int          status;      /* HTTP status when xfer == XFER_HTTP */
    const char  *body;        /* response body (NUL-terminated), never NULL */
    size_t       body_len;
    const char  *error;       /* "" when xfer == XFER_HTTP; otherwise what went wrong, e.g.
                                 "SSL certificate problem: unable to get local issuer certificate" */
    const char  *header;      /* the value of mb_request.want_header in the final
                                 response (trimmed), or NULL when absent */
    int          attempts;    /* 1 + retries made */
    int          maybe_done;  /* the whole request reached the upstream on a connection
                                 that failed before its answer (then retried, or this is
                                 the failure): it may have acted on it, whatever the
                                 status says (a retried DELETE answered 404) */
    double       seconds;     /* total time including retries */
} mb_response;

typedef void (*mb_call_cb)(const mb_response *resp, void *arg);

typedef struct {
    const char  *method;          /* "GET", "POST", "PUT", "DELETE", "PATCH" */
    const char  *path;            /* appended to base_url, starts with '/', already percent-encoded; may hold a query */
    const char *const *headers;   /* NULL-terminated array of "Name: value" lines, or NULL */
    const char  *body;            /* may be NULL; copied by upstream_call */
    size_t       body_len;
    int          secret_body;     /* 1: the body holds a secret; its copy is wiped when freed */
    const char  *want_header;     /* NULL, or a response header name to hand back in
                                     mb_response.header (case-insensitive) */
} mb_request;

/* Returns NULL (and logs why) if the URL cannot be used or the TLS context
 * cannot be made. */
mb_upstream *upstream_new(struct event_base *base, const mb_upstream_opts *opts);
/* Cancels every call still running (no callbacks) and frees. */
void         upstream_free(mb_upstream *up);

/* Starts a call. Returns the call, or NULL when out of memory (no callback
 * will run then). */
mb_call     *upstream_call(mb_upstream *up, const mb_request *req, mb_call_cb cb, void *arg);
void         upstream_cancel(mb_call *call);

/* ---- streaming calls (the proxy) --------------------------------------
 * A streaming call sends a request body pulled piece by piece and hands the
 * response over as it arrives, with backpressure both ways; nothing is
 * collected. No total timeout: the transfer fails when no byte moves for
 * request_timeout (paused time does not count). Retried like any call only
 * while no request body byte was taken. */

#define MB_STREAM_PAUSE ((size_t)-1)

typedef struct {
    /* The final response's status and header lines ("Name: value", without
     * CRLF; n of them). Runs once, before any on_data. Return 0 to go on,
     * -1 to abort the call (on_done then reports XFER_BAD_RESPONSE). */
    int    (*on_response)(void *arg, int status, const char *const *lines, size_t n);
    /* A piece of the response body: return len when taken, or
     * MB_STREAM_PAUSE to have the same bytes offered again after
     * upstream_stream_resume_download(). */
    size_t (*on_data)(void *arg, const char *data, size_t len);
    /* The request body: copy at most max bytes to buf and return how many
     * (0: the body has ended), or MB_STREAM_PAUSE when none is ready yet
     * (then call upstream_stream_resume_upload() when some is). */
    size_t (*on_upload)(void *arg, char *buf, size_t max);
    /* The end, exactly once unless cancelled (resp->body is empty). */
    void   (*on_done)(void *arg, const mb_response *resp);
} mb_stream_cbs;

/* req->body must be NULL; with_body: a request body is pulled through
 * on_upload, of body_size bytes (-1: unknown, sent chunked). HEAD expects
 * no response body. Returns NULL when out of memory (no callback runs). */
mb_call     *upstream_stream(mb_upstream *up, const mb_request *req, int with_body,
                             long long body_size, const mb_stream_cbs *cbs, void *arg);
void         upstream_stream_resume_upload(mb_call *call);
void         upstream_stream_resume_download(mb_call *call);

/* Number of calls not yet completed (for shutdown). */
size_t       upstream_in_flight(const mb_upstream *up);

#endif
