/* h1_client: HTTP/1.1 exchanges with one origin (http:// or https://) on a
 * libevent loop, over a pool of keep-alive connections, one exchange at a
 * time on each. It knows nothing of calls, retries or membership: upstream.c
 * builds its calls on it, buffered (h1_send) and streaming (h1_stream).
 *
 * Why not libcurl (used before): a short call through libcurl cost about
 * 100,000 instructions of libcurl's own code (half of a single add) plus a
 * poll(2) and a MSG_PEEK recv(2) per call (docs/PERFORMANCE.md, figure 5).
 * What libcurl did for us is done here: TCP_NODELAY, a bounded pool with
 * idle connections watched for the server's close, TLS peer and host name
 * verification (OpenSSL's own X509 checks), session resumption, SNI, client
 * certificates, non-blocking name resolution (evdns), connect and total
 * timeouts, precise error texts, and one transparent resend when a reused
 * connection turns out to have been closed by the server.
 *
 * Rules:
 * - on_done runs exactly once per exchange that was not cancelled, from the
 *   loop, never from inside h1_send. The connection has already gone back to
 *   the pool (or been closed) then, so on_done may start new exchanges.
 * - After h1_cancel the exchange's callbacks never run.
 * - The request bytes passed to h1_send are not copied: they must stay
 *   valid until on_done or h1_cancel.
 */
#ifndef MB_H1_CLIENT_H
#define MB_H1_CLIENT_H

#include <stddef.h>
#include <event2/event.h>

typedef struct h1_client   h1_client;
typedef struct h1_exchange h1_exchange;

typedef struct {
    const char *base_url;         /* "http[s]://host[:port][/prefix]" */
    const char *ca_file;          /* NULL: the system store */
    const char *client_cert_file; /* NULL: none */
    const char *client_key_file;
    int         insecure;         /* 1: no peer or host name verification */
    long        connect_timeout_ms; /* TCP connect and TLS handshake */
    long        max_connections;  /* open connections, busy and idle */
    long        idle_timeout_ms;  /* an idle pooled connection is closed after this */
} h1_client_opts;

typedef enum {
    H1_OK,              /* a whole response arrived */
    H1_CONNECT_FAILED,  /* no connection: name not resolved, refused, unreachable */
    H1_CONNECT_TIMEOUT, /* connect or TLS handshake not done within connect_timeout */
    H1_TLS_FAILED,      /* certificate not accepted, or the peer's TLS alert */
    H1_CLOSED,          /* closed or reset before any byte of response */
    H1_TIMEOUT,         /* connected, but the response did not end within the timeout */
    H1_BAD_RESPONSE,    /* not HTTP, or cut short after some of it */
    H1_STOPPED          /* a callback returned nonzero */
} h1_result;

typedef struct {
    /* A header field of the final response (not NUL-terminated). Return
     * nonzero to stop the exchange (H1_STOPPED). May be NULL. */
    int  (*on_header)(void *arg, const char *name, size_t nlen, const char *value, size_t vlen);
    /* A piece of the body. Return nonzero to stop (H1_STOPPED). */
    int  (*on_body)(void *arg, const char *data, size_t len);
    /* The end. status: the final response's status when r == H1_OK, else 0.
     * error: "" for H1_OK, otherwise what went wrong, in words. */
    void (*on_done)(void *arg, h1_result r, int status, const char *error);
    /* Streaming exchanges only (NULL otherwise): */
    /* The final response's header block ended (after its on_header calls).
     * Return nonzero to stop. */
    int  (*on_head)(void *arg, int status);
    /* The request body: copy at most max bytes to buf and return how many;
     * 0: the body has ended; H1_PAUSE: none ready yet (call
     * h1_resume_upload when there is); H1_ABORT: stop the exchange. */
    size_t (*on_upload)(void *arg, char *buf, size_t max);
} h1_exchange_cbs;

#define H1_PAUSE ((size_t)-1)
#define H1_ABORT ((size_t)-2)

/* The framing of a streamed request body, for h1_format_head. */
#define H1_NO_BODY  (-2LL)
#define H1_CHUNKED  (-1LL)

/* NULL (and a log line saying why) when the URL cannot be used or the TLS
 * context cannot be made. A CA file or client certificate that does not
 * load does not fail here: every exchange then fails with H1_TLS_FAILED
 * naming the file, as it would have with libcurl. */
h1_client   *h1_client_new(struct event_base *base, const h1_client_opts *opts);
/* Closes every connection; exchanges still running end without callbacks. */
void         h1_client_free(h1_client *c);

/* Formats a request for this client's origin into *out (malloc'd, *out_len
 * bytes): "METHOD <prefix><path> HTTP/1.1", Host, the given header lines
 * ("Name: value", NULL-terminated array, may be NULL), Content-Length when
 * there is a body or the method is POST, PUT or PATCH, and the body.
 * Returns 0, or -1 when out of memory. */
int          h1_format_request(const h1_client *c, const char *method, const char *path,
                               const char *const *headers, const char *body, size_t body_len,
                               char **out, size_t *out_len);

/* Sends a formatted request on a pooled or new connection. head_request:
 * the method was HEAD (no body comes back). timeout_ms bounds the whole
 * exchange, connecting included. Returns NULL when out of memory (no
 * callback runs then). */
h1_exchange *h1_send(h1_client *c, const char *request, size_t len, int head_request,
                     long timeout_ms, const h1_exchange_cbs *cbs, void *arg);

/* The request head alone: length is H1_NO_BODY, H1_CHUNKED (Transfer-
 * Encoding: chunked) or the body's Content-Length. */
int          h1_format_head(const h1_client *c, const char *method, const char *path,
                            const char *const *headers, long long length,
                            char **out, size_t *out_len);

/* A streaming exchange: head (from h1_format_head) goes out, then the body
 * pulled through on_upload (when length is not H1_NO_BODY: chunked when
 * H1_CHUNKED), while the response is handed over as it arrives. There is
 * no total timeout: it fails (H1_TIMEOUT) when no byte moves either way
 * for idle_ms; paused time does not count. Not sent again on a new
 * connection once a body byte was taken. */
h1_exchange *h1_stream(h1_client *c, const char *head, size_t len, int head_request,
                       long long length, long idle_ms, const h1_exchange_cbs *cbs, void *arg);
/* Flow control of a streaming exchange. The resumes take effect from the
 * loop, never inside the call. */
void         h1_resume_upload(h1_exchange *ex);
void         h1_pause_download(h1_exchange *ex);   /* may be called from on_body */
void         h1_resume_download(h1_exchange *ex);
void         h1_cancel(h1_exchange *ex);
/* 1 when the whole request went out on a connection that then failed
 * before its response (the exchange was sent again, or ends with that
 * failure): the server may have acted on it. Valid inside on_done. */
int          h1_exchange_delivered(const h1_exchange *ex);

/* Connections open now, busy and idle (for tests). */
size_t       h1_client_open_connections(const h1_client *c);

#endif
