/* h1_response: an incremental parser of one HTTP/1.x response (status line,
 * header block, body framed by Content-Length, chunked coding or the close
 * of the connection), as pure code: bytes in, callbacks out. No I/O, no
 * allocation except for a header line split across two feeds.
 *
 * Interim 1xx responses (100 Continue, 103 Early Hints) are parsed and
 * skipped: the callbacks see only the final response.
 */
#ifndef MB_H1_RESPONSE_H
#define MB_H1_RESPONSE_H

#include <stddef.h>
#include <sys/types.h>

#define H1_MAX_HEADER_BYTES (64 * 1024)   /* the whole header block of one response */

typedef struct {
    /* One header field of the final response (name and value without the
     * surrounding whitespace; neither NUL-terminated; like on_body's data,
     * valid only during the call). Return 0 to go on,
     * -1 to stop (h1_resp_feed then returns -1 with error "stopped"). */
    int (*on_header)(void *arg, const char *name, size_t nlen, const char *value, size_t vlen);
    /* The final response's header block ended. */
    int (*on_headers_done)(void *arg, int status);
    /* A piece of the body (after de-chunking). */
    int (*on_body)(void *arg, const char *data, size_t len);
} h1_resp_cbs;

typedef struct {
    /* results, valid after on_headers_done */
    int         status;         /* 100..999 */
    int         minor;          /* HTTP/1.<minor> */
    int         keep_alive;     /* the connection may carry another request after this response */
    int         done;           /* the whole response has been parsed */
    const char *error;          /* set when h1_resp_feed/h1_resp_eof returned -1 */
    size_t      header_bytes;   /* of the current header block */
    /* internal */
    int         state;
    int         head;           /* the request was HEAD: no body */
    int         chunked;
    int         close_delimited;
    int         got_any;        /* a byte of response arrived */
    long long   content_length; /* -1: none given */
    unsigned long long remaining; /* body or chunk bytes left */
    char       *line;           /* a line split across feeds */
    size_t      line_len, line_cap;
} h1_resp;

/* Does not free: call h1_resp_free before re-initing a used p. */
void    h1_resp_init(h1_resp *p, int head_request);
void    h1_resp_free(h1_resp *p);   /* frees the split-line buffer; p may be re-inited */
/* Feeds bytes. Returns how many were consumed (all of them unless the
 * response ended: bytes after its end are left, and p->done is set), or -1
 * with p->error naming what is wrong. */
ssize_t h1_resp_feed(h1_resp *p, const char *data, size_t len, const h1_resp_cbs *cbs, void *arg);
/* The peer closed the connection: returns 0 when that ends the response (a
 * close-delimited body, or p->done already), -1 (p->error) when the
 * response is cut short. */
int     h1_resp_eof(h1_resp *p);

#endif
