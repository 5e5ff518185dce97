/* framing: the request-framing checks of SPEC section 3, run on the parsed
 * header list before anything else. Pure: no I/O. */
#ifndef MB_FRAMING_H
#define MB_FRAMING_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;  size_t nlen;
    const char *value; size_t vlen;
} mb_header;

typedef struct {
    int      chunked;          /* Transfer-Encoding: chunked */
    int64_t  content_length;   /* -1 when absent */
} mb_framing;

/* Checks headers h[0..n) of an HTTP/1.<minor> request. Returns NULL when the
 * framing is unambiguous, else a static message for a 400 (the connection is
 * then closed). Refused: Content-Length together with Transfer-Encoding;
 * several Content-Length values that differ (identical repeats are accepted);
 * a Content-Length that is not all digits or overflows; any Transfer-Encoding
 * other than a lone "chunked" spelt as libevhtp's parser reads it ("chunked"
 * or "Chunked", nothing around it); a header name that is
 * empty or holds a byte that is not an RFC 7230 tchar (catches folded
 * lines and whitespace before the colon); CR, LF or NUL in a value;
 * HTTP/1.1 without Host, or several Host headers; Transfer-Encoding in an
 * HTTP/1.0 request (RFC 9112 6.1: its framing is faulty). Values are taken
 * without surrounding SP/HTAB. out is filled on success (and reset first). */
const char *framing_check(const mb_header *h, size_t n, int http_minor, mb_framing *out);

/* A scanner of the raw bytes of a header block (after the request line, up
 * to and including the empty line), for what a header parser loses: a NUL
 * (libevhtp cuts the value there), a line that starts with SP or HTAB
 * (obs-fold, which libevhtp joins to the line before), a CR not followed by
 * LF. It keeps its state between chunks. */
typedef struct {
    int state;   /* internal; zero-initialise = at the start of a line */
} mb_header_scan;

/* Scans d[0..len). Returns the number of bytes up to and including the end
 * of the header block (the empty line) when it is in d, else 0. Returns 0
 * and sets *bad to a static message on the first refused byte. */
size_t framing_scan_headers(mb_header_scan *s, const char *d, size_t len, const char **bad);

/* A scanner of the raw bytes of a chunked request body (RFC 9112 7.1), in
 * step with libevhtp's parser, for what that parser gets wrong: it adds up
 * a chunk size in 64 bits without an overflow check, so "1" followed by
 * sixteen hex digits reads as a small chunk and the bytes after it as the
 * next request (request smuggling). Refused: a chunk size over INT64_MAX,
 * and anything libevhtp would refuse anyway (a chunk-size line that is not
 * hex digits then CR LF: no chunk extensions; chunk data not followed by
 * CR LF), so that the two never disagree about where a chunk ends. Stops
 * at the last chunk (size 0): the trailer section is the parser's. It
 * keeps its state between chunks. */
typedef struct {
    int      state;   /* internal; zero-initialise = before the first chunk size */
    uint64_t left;    /* the chunk size being read, then its data bytes still to come */
} mb_chunk_scan;

/* Scans d[0..len). Returns NULL, or a static message on the first refused
 * byte (the state is then undefined). */
const char *framing_scan_chunked(mb_chunk_scan *s, const char *d, size_t len);

#endif
