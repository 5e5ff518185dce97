/* h1_response: incremental parser of one HTTP/1.x response (RFC 9112) for
 * the upstream client. Pure code: bytes in, callbacks out.
 *
 * Hot-path rules: a line that lies wholly within one feed is parsed in
 * place (only a line split across feeds is gathered in p->line, bounded by
 * H1_MAX_HEADER_BYTES); body bytes go to on_body straight from the input;
 * memchr finds line ends, there is no per-byte callback.
 *
 * While the final response's header block is read, two result fields hold
 * what the headers said so far (they get their documented meaning when the
 * block ends, before on_headers_done):
 *   chunked    - TE_NONE, TE_CHUNKED (the last transfer coding so far is
 *                chunked) or TE_OTHER;
 *   keep_alive - CONN_CLOSE | CONN_KEEP_ALIVE, the Connection tokens seen.
 * In the trailer section `remaining` is the trailer budget left in bytes.
 * header_bytes counts the status line, the header lines and the empty line,
 * line ends included, of the response being read (interim ones start anew).
 */
#include "h1_response.h"
#include "hex.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* p->state */
enum {
    ST_STATUS,      /* the status line of a (possibly interim) response */
    ST_HEADER,      /* header lines up to the empty line */
    ST_BODY_LENGTH, /* a Content-Length body: `remaining` bytes left */
    ST_BODY_CLOSE,  /* a body that runs to the close of the connection */
    ST_CHUNK_SIZE,  /* a chunk-size line */
    ST_CHUNK_DATA,  /* chunk data: `remaining` bytes left */
    ST_CHUNK_CR,    /* the CRLF (or bare LF) after chunk data */
    ST_CHUNK_LF,    /* ... its CR came, the LF must follow */
    ST_TRAILER,     /* trailer lines up to the empty line (skipped) */
    ST_DONE,
    ST_ERROR
};

/* p->chunked while the final header block is read */
enum { TE_NONE, TE_CHUNKED, TE_OTHER };
/* p->keep_alive while the final header block is read */
enum { CONN_CLOSE = 1, CONN_KEEP_ALIVE = 2 };

/* Errors (they reach users: say what the upstream did). */
static const char E_STATUS[]      = "upstream sent an invalid status line";
static const char E_SWITCH[]      = "upstream sent 101 Switching Protocols, but no upgrade was asked for";
static const char E_FOLD[]        = "upstream sent a folded header line (obs-fold)";
static const char E_COLON[]       = "upstream sent a header line without a colon";
static const char E_NAME[]        = "upstream sent an invalid header name";
static const char E_HEAD_NUL[]    = "upstream sent a NUL byte in the response headers";
static const char E_HEAD_CR[]     = "upstream sent a bare CR in the response headers";
static const char E_CHUNK_NUL[]   = "upstream sent a NUL byte in the chunked body framing";
static const char E_CHUNK_CR[]    = "upstream sent a bare CR in the chunked body framing";
static const char E_CL[]          = "upstream sent an invalid Content-Length";
static const char E_CL_BIG[]      = "upstream sent a Content-Length that is too large";
static const char E_CL_DIFF[]     = "upstream sent several Content-Length values that differ";
static const char E_CHUNK[]       = "upstream sent an invalid chunk size";
static const char E_CHUNK_BIG[]   = "upstream sent a chunk size that is too large";
static const char E_CHUNK_END[]   = "upstream sent chunk data not followed by CRLF";
static const char E_STOPPED[]     = "stopped";
static const char E_NOMEM[]       = "out of memory";
static const char E_EOF_NOTHING[] = "upstream closed the connection before responding";
static const char E_EOF_HEADERS[] = "upstream closed the connection inside the response headers";
static const char E_EOF_BODY[]    = "upstream response body cut short";

/* What a line belongs to (the limit it is held to, the errors it gets). */
enum { LINE_HEADERS, LINE_CHUNK_SIZE, LINE_TRAILER, LINE_KINDS };

/* The "over the limit" messages, which name H1_MAX_HEADER_BYTES: formatted
 * once, on the first error, into static storage. */
static char too_long_msgs[LINE_KINDS][80];
static pthread_once_t too_long_once = PTHREAD_ONCE_INIT;

static void format_too_long(void)
{
    snprintf(too_long_msgs[LINE_HEADERS], sizeof(too_long_msgs[0]),
             "upstream response headers larger than %d bytes", H1_MAX_HEADER_BYTES);
    snprintf(too_long_msgs[LINE_CHUNK_SIZE], sizeof(too_long_msgs[0]),
             "upstream sent a chunk-size line longer than %d bytes", H1_MAX_HEADER_BYTES);
    snprintf(too_long_msgs[LINE_TRAILER], sizeof(too_long_msgs[0]),
             "upstream response trailers larger than %d bytes", H1_MAX_HEADER_BYTES);
}

/* The error for a line of this kind over its limit. */
static const char *line_too_long(int kind)
{
    pthread_once(&too_long_once, format_too_long);
    return too_long_msgs[kind];
}

/* Records the error and poisons the parser; returns -1 for `return fail()`. */
static int fail(h1_resp *p, const char *error)
{
    p->error = error;
    p->state = ST_ERROR;
    return -1;
}

/* An ASCII digit (no locale, no sign extension trouble). */
static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* RFC 9110 5.6.2 tchar. */
static int is_tchar(unsigned char c)
{
    if (((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9'))
        return 1;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return 1;
    default:
        return 0;
    }
}

/* The string without optional whitespace (SP, HTAB) at either end. */
static void trim_ows(const char **s, size_t *len)
{
    while (*len > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

/* s[0..len) is lit, ignoring ASCII case. */
static int equals_nocase(const char *s, size_t len, const char *lit)
{
    return len == strlen(lit) && strncasecmp(s, lit, len) == 0;
}

/* A cursor over a comma-separated list (RFC 9110 5.6.1). */
typedef struct {
    const char *at, *end;
    int         over;
} list_iter;

/* The next element, trimmed of OWS (possibly empty). Returns 0 when the
 * list is used up; an empty value is one empty element. */
static int list_next(list_iter *it, const char **el, size_t *elen)
{
    if (it->over)
        return 0;
    const char *comma = memchr(it->at, ',', (size_t)(it->end - it->at));
    const char *stop = comma != NULL ? comma : it->end;
    *el = it->at;
    *elen = (size_t)(stop - it->at);
    trim_ows(el, elen);
    if (comma != NULL)
        it->at = comma + 1;
    else
        it->over = 1;
    return 1;
}

/* A parser at the start of a response; head_request: the answer has no body. */
void h1_resp_init(h1_resp *p, int head_request)
{
    /* p->line is not freed here: call h1_resp_free before re-initing. */
    memset(p, 0, sizeof(*p));
    p->state = ST_STATUS;
    p->head = head_request != 0;
    p->content_length = -1;
}

/* Frees the split-line buffer (twice is harmless). */
void h1_resp_free(h1_resp *p)
{
    free(p->line);
    p->line = NULL;
    p->line_len = p->line_cap = 0;
}

/* Appends to the split-line buffer. No line is longer than
 * H1_MAX_HEADER_BYTES, and neither is the buffer. */
static int line_append(h1_resp *p, const char *d, size_t n)
{
    if (p->line_len + n > p->line_cap) {
        size_t cap = p->line_cap < 256 ? 256 : p->line_cap * 2;
        if (cap > H1_MAX_HEADER_BYTES)
            cap = H1_MAX_HEADER_BYTES;
        if (cap < p->line_len + n)
            cap = p->line_len + n;
        char *grown = realloc(p->line, cap);
        if (grown == NULL)
            return fail(p, E_NOMEM);
        p->line = grown;
        p->line_cap = cap;
    }
    memcpy(p->line + p->line_len, d, n);
    p->line_len += n;
    return 0;
}

/* Takes the line that starts at d (n > 0 bytes at hand; p->line may hold
 * its start from earlier feeds). The line may be budget bytes long in all,
 * its LF included. Returns 1 with the line without its LF or CRLF in
 * *line, *llen (in place, or in p->line when it was split), its full size in
 * *size and the bytes of d used in *used; 0 when d ran out first (d was
 * kept, *used = n); -1 on error: too long, or a NUL or a CR other than the
 * one before the LF. */
static int take_line(h1_resp *p, const char *d, size_t n, size_t budget, int kind,
                     const char **line, size_t *llen, size_t *size, size_t *used)
{
    size_t avail = budget - p->line_len;     /* p->line_len < budget holds */
    const char *lf = memchr(d, '\n', n < avail ? n : avail);

    if (lf == NULL) {
        if (n >= avail)
            return fail(p, line_too_long(kind));
        if (line_append(p, d, n) < 0)
            return -1;
        *used = n;
        return 0;
    }
    *used = (size_t)(lf - d) + 1;
    *size = p->line_len + *used;
    if (p->line_len == 0) {
        *line = d;
        *llen = *used - 1;
    } else {
        if (line_append(p, d, *used - 1) < 0)
            return -1;
        *line = p->line;
        *llen = p->line_len;
        p->line_len = 0;     /* the bytes stay valid until the next append */
    }
    if (*llen > 0 && (*line)[*llen - 1] == '\r')
        (*llen)--;
    if (memchr(*line, '\0', *llen) != NULL)
        return fail(p, kind == LINE_HEADERS ? E_HEAD_NUL : E_CHUNK_NUL);
    if (memchr(*line, '\r', *llen) != NULL)
        return fail(p, kind == LINE_HEADERS ? E_HEAD_CR : E_CHUNK_CR);
    return 1;
}

/* While a status line is gathered: 0 once its known bytes cannot start
 * "HTTP/1.", so that a peer speaking something else fails at once. */
static int status_prefix_ok(const h1_resp *p, const char *d, size_t n)
{
    static const char want[] = "HTTP/1.";
    size_t i = p->line_len;        /* earlier bytes were checked already */
    for (size_t j = 0; i < sizeof(want) - 1 && j < n; i++, j++)
        if (d[j] != want[i])
            return 0;
    return 1;
}

/* HTTP/1.<digit> SP <3 digits> [SP reason]: sets status and minor. */
static int parse_status(h1_resp *p, const char *s, size_t len)
{
    if (len < 12 || memcmp(s, "HTTP/1.", 7) != 0 || !is_digit(s[7]) || s[8] != ' '
        || !is_digit(s[9]) || !is_digit(s[10]) || !is_digit(s[11])
        || (len > 12 && s[12] != ' '))
        return fail(p, E_STATUS);
    int status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (status < 100)
        return fail(p, E_STATUS);
    if (status == 101)
        return fail(p, E_SWITCH);
    p->status = status;
    p->minor = s[7] - '0';
    return 0;
}

/* Content-Length: 1*DIGIT, or a list of them that must all agree, also
 * with earlier Content-Length headers. */
static int note_content_length(h1_resp *p, const char *v, size_t vlen)
{
    list_iter it = { v, v + vlen, 0 };
    const char *el;
    size_t elen;

    while (list_next(&it, &el, &elen)) {
        long long n = 0;
        if (elen == 0)
            return fail(p, E_CL);
        for (size_t i = 0; i < elen; i++) {
            if (!is_digit(el[i]))
                return fail(p, E_CL);
            if (n > (LLONG_MAX - (el[i] - '0')) / 10)
                return fail(p, E_CL_BIG);
            n = n * 10 + (el[i] - '0');
        }
        if (p->content_length >= 0 && n != p->content_length)
            return fail(p, E_CL_DIFF);
        p->content_length = n;
    }
    return 0;
}

/* Transfer-Encoding: only the last coding of all such headers matters. */
static void note_transfer_encoding(h1_resp *p, const char *v, size_t vlen)
{
    list_iter it = { v, v + vlen, 0 };
    const char *el;
    size_t elen;

    if (p->chunked == TE_NONE)
        p->chunked = TE_OTHER;
    while (list_next(&it, &el, &elen))
        if (elen > 0)
            p->chunked = equals_nocase(el, elen, "chunked") ? TE_CHUNKED : TE_OTHER;
}

/* Connection: notes the close and keep-alive tokens. */
static void note_connection(h1_resp *p, const char *v, size_t vlen)
{
    list_iter it = { v, v + vlen, 0 };
    const char *el;
    size_t elen;

    while (list_next(&it, &el, &elen)) {
        if (equals_nocase(el, elen, "close"))
            p->keep_alive |= CONN_CLOSE;
        else if (equals_nocase(el, elen, "keep-alive"))
            p->keep_alive |= CONN_KEEP_ALIVE;
    }
}

/* One non-empty header line: checked for every response, interpreted and
 * passed on only for the final one. */
static int header_line(h1_resp *p, const char *s, size_t len,
                       const h1_resp_cbs *cbs, void *arg)
{
    if (s[0] == ' ' || s[0] == '\t')
        return fail(p, E_FOLD);
    const char *colon = memchr(s, ':', len);
    if (colon == NULL)
        return fail(p, E_COLON);
    size_t nlen = (size_t)(colon - s);
    if (nlen == 0)
        return fail(p, E_NAME);
    for (size_t i = 0; i < nlen; i++)
        if (!is_tchar((unsigned char)s[i]))
            return fail(p, E_NAME);
    const char *v = colon + 1;
    size_t vlen = len - nlen - 1;
    trim_ows(&v, &vlen);

    if (p->status < 200)      /* interim: skipped */
        return 0;
    if (equals_nocase(s, nlen, "Content-Length")) {
        if (note_content_length(p, v, vlen) < 0)
            return -1;
    } else if (equals_nocase(s, nlen, "Transfer-Encoding")) {
        note_transfer_encoding(p, v, vlen);
    } else if (equals_nocase(s, nlen, "Connection")) {
        note_connection(p, v, vlen);
    }
    if (cbs->on_header != NULL && cbs->on_header(arg, s, nlen, v, vlen) != 0)
        return fail(p, E_STOPPED);
    return 0;
}

/* The empty line: an interim response is over (the next one starts), or the
 * final one's framing and keep_alive are settled (RFC 9112 6.3, 9.3). */
static int end_of_headers(h1_resp *p, const h1_resp_cbs *cbs, void *arg)
{
    if (p->status < 200) {
        p->state = ST_STATUS;
        p->header_bytes = 0;
        return 0;
    }

    int te = p->chunked, conn = p->keep_alive;
    int keep = !(conn & CONN_CLOSE) && (p->minor >= 1 || (conn & CONN_KEEP_ALIVE));
    /* TE with CL smells of smuggling; TE in HTTP/1.0 is faulty framing
     * (RFC 9112 6.1): either way the connection is not reused. */
    if (te != TE_NONE && (p->content_length >= 0 || p->minor == 0))
        keep = 0;

    int next;
    p->chunked = 0;
    p->close_delimited = 0;
    p->remaining = 0;
    if (p->head || p->status == 204 || p->status == 304) {
        next = ST_DONE;
    } else if (te == TE_CHUNKED) {
        p->chunked = 1;
        next = ST_CHUNK_SIZE;
    } else if (te == TE_NONE && p->content_length >= 0) {
        p->remaining = (unsigned long long)p->content_length;
        next = p->remaining > 0 ? ST_BODY_LENGTH : ST_DONE;
    } else {
        p->close_delimited = 1;
        keep = 0;
        next = ST_BODY_CLOSE;
    }
    p->keep_alive = keep;
    p->state = next;

    if (cbs->on_headers_done != NULL && cbs->on_headers_done(arg, p->status) != 0)
        return fail(p, E_STOPPED);
    if (next == ST_DONE)
        p->done = 1;
    return 0;
}

/* A status or header line. Returns the bytes used, or -1. */
static ssize_t step_head(h1_resp *p, const char *d, size_t n,
                         const h1_resp_cbs *cbs, void *arg)
{
    const char *line;
    size_t llen, size, used;

    if (p->state == ST_STATUS && !status_prefix_ok(p, d, n))
        return fail(p, E_STATUS);
    int r = take_line(p, d, n, (size_t)H1_MAX_HEADER_BYTES - p->header_bytes,
                      LINE_HEADERS, &line, &llen, &size, &used);
    if (r <= 0)
        return r < 0 ? -1 : (ssize_t)used;
    p->header_bytes += size;

    if (p->state == ST_STATUS) {
        r = parse_status(p, line, llen);
        if (r == 0)
            p->state = ST_HEADER;
    } else if (llen == 0) {
        r = end_of_headers(p, cbs, arg);
    } else {
        r = header_line(p, line, llen, cbs, arg);
    }
    return r < 0 ? -1 : (ssize_t)used;
}

/* chunk-size [ BWS ";" extensions ] (extensions ignored). */
static ssize_t step_chunk_size(h1_resp *p, const char *d, size_t n)
{
    const char *line;
    size_t llen, size, used, i = 0;
    unsigned long long chunk = 0;
    int v;

    int r = take_line(p, d, n, H1_MAX_HEADER_BYTES, LINE_CHUNK_SIZE, &line, &llen, &size, &used);
    if (r <= 0)
        return r < 0 ? -1 : (ssize_t)used;
    for (; i < llen && (v = hex_value(line[i])) >= 0; i++) {
        if (chunk > (ULLONG_MAX >> 4))
            return fail(p, E_CHUNK_BIG);
        chunk = (chunk << 4) | (unsigned)v;
    }
    if (i == 0)
        return fail(p, E_CHUNK);
    while (i < llen && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i < llen && line[i] != ';')
        return fail(p, E_CHUNK);

    if (chunk > 0) {
        p->remaining = chunk;
        p->state = ST_CHUNK_DATA;
    } else {
        p->remaining = H1_MAX_HEADER_BYTES;   /* the trailer budget */
        p->state = ST_TRAILER;
    }
    return (ssize_t)used;
}

/* A trailer line (skipped), or the empty line that ends the response. */
static ssize_t step_trailer(h1_resp *p, const char *d, size_t n)
{
    const char *line;
    size_t llen, size, used;

    int r = take_line(p, d, n, (size_t)p->remaining, LINE_TRAILER, &line, &llen, &size, &used);
    if (r <= 0)
        return r < 0 ? -1 : (ssize_t)used;
    p->remaining -= size;
    if (llen == 0) {
        p->state = ST_DONE;
        p->done = 1;
    }
    return (ssize_t)used;
}

/* Body bytes (Content-Length, chunk data or close-delimited), handed on in
 * place. Returns the bytes used, or -1. */
static ssize_t step_body(h1_resp *p, const char *d, size_t n,
                         const h1_resp_cbs *cbs, void *arg)
{
    size_t take = n;

    if (p->state != ST_BODY_CLOSE && p->remaining < take)
        take = (size_t)p->remaining;
    if (cbs->on_body != NULL && cbs->on_body(arg, d, take) != 0)
        return fail(p, E_STOPPED);
    if (p->state != ST_BODY_CLOSE) {
        p->remaining -= take;
        if (p->remaining == 0 && p->state == ST_CHUNK_DATA) {
            p->state = ST_CHUNK_CR;
        } else if (p->remaining == 0) {
            p->state = ST_DONE;
            p->done = 1;
        }
    }
    return (ssize_t)take;
}

/* The CRLF (or LF) that must follow chunk data. Uses one byte, or -1. */
static ssize_t step_chunk_end(h1_resp *p, char c)
{
    if (p->state == ST_CHUNK_CR && c == '\r')
        p->state = ST_CHUNK_LF;
    else if (c == '\n')
        p->state = ST_CHUNK_SIZE;
    else
        return fail(p, E_CHUNK_END);
    return 1;
}

/* Runs the state machine over the bytes until they or the response end. */
ssize_t h1_resp_feed(h1_resp *p, const char *data, size_t len, const h1_resp_cbs *cbs, void *arg)
{
    static const h1_resp_cbs no_cbs;
    size_t pos = 0;

    if (p->state == ST_ERROR)
        return -1;
    if (p->state == ST_DONE)
        return 0;
    if (cbs == NULL)
        cbs = &no_cbs;
    if (len > 0)
        p->got_any = 1;

    while (pos < len && p->state != ST_DONE) {
        const char *d = data + pos;
        size_t n = len - pos;
        ssize_t used;

        switch (p->state) {
        case ST_STATUS:
        case ST_HEADER:
            used = step_head(p, d, n, cbs, arg);
            break;
        case ST_BODY_LENGTH:
        case ST_BODY_CLOSE:
        case ST_CHUNK_DATA:
            used = step_body(p, d, n, cbs, arg);
            break;
        case ST_CHUNK_SIZE:
            used = step_chunk_size(p, d, n);
            break;
        case ST_CHUNK_CR:
        case ST_CHUNK_LF:
            used = step_chunk_end(p, *d);
            break;
        case ST_TRAILER:
            used = step_trailer(p, d, n);
            break;
        default:                /* not reached: ST_DONE ends the loop */
            used = -1;
            break;
        }
        if (used < 0)
            return -1;
        pos += (size_t)used;
    }
    return (ssize_t)pos;
}

/* The connection closed: that ends only a close-delimited body. */
int h1_resp_eof(h1_resp *p)
{
    switch (p->state) {
    case ST_DONE:
        return 0;
    case ST_ERROR:
        return -1;
    case ST_BODY_CLOSE:
        p->state = ST_DONE;
        p->done = 1;
        return 0;
    case ST_STATUS:
    case ST_HEADER:
        return fail(p, p->got_any ? E_EOF_HEADERS : E_EOF_NOTHING);
    default:
        return fail(p, E_EOF_BODY);
    }
}
