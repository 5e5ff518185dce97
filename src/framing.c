/* framing: the request-framing checks of SPEC section 3 (RFC 9112 6.3):
 * a request whose body length could be read two ways is refused. */
#include "framing.h"
#include "hex.h"

#include <string.h>
#include <strings.h>

/* What the header list says about framing, gathered in one pass. */
typedef struct {
    size_t   n_cl, n_te, n_host;
    int64_t  cl;
    int      cl_differs;
    const char *te; size_t te_len;
} framing_seen;

/* RFC 9110 5.6.2 tchar. */
static int is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return 1;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int name_is(const mb_header *h, const char *lit)
{
    return h->nlen == strlen(lit) && strncasecmp(h->name, lit, h->nlen) == 0;
}

static int name_valid(const mb_header *h)
{
    if (h->name == NULL || h->nlen == 0)
        return 0;
    for (size_t i = 0; i < h->nlen; i++)
        if (!is_tchar((unsigned char)h->name[i]))
            return 0;
    return 1;
}

static int value_valid(const mb_header *h)
{
    for (size_t i = 0; i < h->vlen; i++) {
        char ch = h->value[i];
        if (ch == '\r' || ch == '\n' || ch == '\0')
            return 0;
    }
    return 1;
}

/* The value without optional whitespace (SP, HTAB) at either end. */
static void trim_ows(const char **v, size_t *len)
{
    while (*len > 0 && (**v == ' ' || **v == '\t')) {
        (*v)++;
        (*len)--;
    }
    while (*len > 0 && ((*v)[*len - 1] == ' ' || (*v)[*len - 1] == '\t'))
        (*len)--;
}

/* Content-Length = 1*DIGIT, in int64_t. Returns -1 when it is not. */
static int64_t parse_length(const char *v, size_t len)
{
    int64_t n = 0;

    trim_ows(&v, &len);
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        if (n > (INT64_MAX - (v[i] - '0')) / 10)
            return -1;
        n = n * 10 + (v[i] - '0');
    }
    return n;
}

/* "chunked" as libevhtp's parser recognises it: exactly "chunked" or
 * "Chunked" (it skips the spaces before a value and keeps anything after).
 * Any other spelling ("CHUNKED", "chunked " with a trailing space, a tab
 * before it) it reads as a request without a body, and the body as the
 * next request: accepting those here would let the two disagree. */
static int te_is_chunked(const char *v, size_t len)
{
    return len == 7 && (v[0] == 'c' || v[0] == 'C') && memcmp(v + 1, "hunked", 6) == 0;
}

/* Collects one header. Returns NULL or the refusal message. */
static const char *note_header(const mb_header *h, framing_seen *s)
{
    if (!name_valid(h))
        return "invalid header name (folded or malformed header line)";
    if (h->vlen > 0 && h->value == NULL)
        return "invalid header value";
    if (!value_valid(h))
        return "CR, LF or NUL in a header value";

    if (name_is(h, "Content-Length")) {
        int64_t n = parse_length(h->value, h->vlen);
        if (n < 0)
            return "invalid Content-Length";
        if (s->n_cl > 0 && n != s->cl)
            s->cl_differs = 1;
        s->cl = n;
        s->n_cl++;
    } else if (name_is(h, "Transfer-Encoding")) {
        s->te = h->value;
        s->te_len = h->vlen;
        s->n_te++;
    } else if (name_is(h, "Host")) {
        s->n_host++;
    }
    return NULL;
}

const char *framing_check(const mb_header *h, size_t n, int http_minor, mb_framing *out)
{
    framing_seen s = { 0 };
    const char *err;

    out->chunked = 0;
    out->content_length = -1;

    for (size_t i = 0; i < n; i++)
        if ((err = note_header(&h[i], &s)) != NULL)
            return err;

    if (s.cl_differs)
        return "several Content-Length headers that differ";
    if (s.n_host > 1)
        return "several Host headers";
    if (http_minor >= 1 && s.n_host == 0)
        return "HTTP/1.1 request without Host";
    if (s.n_te > 0) {
        const char *te = s.te;
        size_t te_len = s.te_len;
        if (s.n_cl > 0)
            return "Content-Length together with Transfer-Encoding";
        /* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing. */
        if (http_minor < 1)
            return "Transfer-Encoding in an HTTP/1.0 request";
        if (s.n_te > 1 || !te_is_chunked(te, te_len))
            return "Transfer-Encoding other than a lone chunked";
        out->chunked = 1;
        return NULL;
    }
    if (s.n_cl > 0)
        out->content_length = s.cl;
    return NULL;
}

enum { SCAN_LINE_START = 0, SCAN_LINE_START_CR, SCAN_IN_LINE, SCAN_IN_LINE_CR };

size_t framing_scan_headers(mb_header_scan *s, const char *d, size_t len, const char **bad)
{
    *bad = NULL;
    for (size_t i = 0; i < len; i++) {
        char ch = d[i];
        if (ch == '\0') {
            *bad = "NUL in a header line";
            return 0;
        }
        switch (s->state) {
        case SCAN_LINE_START:
            if (ch == '\n')
                return i + 1;                      /* the empty line: done */
            if (ch == '\r') {
                s->state = SCAN_LINE_START_CR;
            } else if (ch == ' ' || ch == '\t') {
                *bad = "folded header line (obs-fold)";
                return 0;
            } else {
                s->state = SCAN_IN_LINE;
            }
            break;
        case SCAN_LINE_START_CR:
            if (ch != '\n') {
                *bad = "CR not followed by LF in the header block";
                return 0;
            }
            return i + 1;
        case SCAN_IN_LINE:
            if (ch == '\n')
                s->state = SCAN_LINE_START;
            else if (ch == '\r')
                s->state = SCAN_IN_LINE_CR;
            break;
        default: /* SCAN_IN_LINE_CR */
            if (ch != '\n') {
                *bad = "CR not followed by LF in a header line";
                return 0;
            }
            s->state = SCAN_LINE_START;
            break;
        }
    }
    return 0;
}

enum { CH_SIZE_START = 0, CH_SIZE, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_LAST };

/* One byte of a chunk-size line. Returns NULL or why it is refused. */
static const char *chunk_size_byte(mb_chunk_scan *s, char ch)
{
    int v = hex_value(ch);
    if (s->state == CH_SIZE && ch == '\r') {
        s->state = CH_SIZE_LF;
        return NULL;
    }
    if (v < 0)
        return "malformed chunk size line (hex digits then CRLF; no chunk extensions)";
    if (s->left > (uint64_t)(INT64_MAX - v) / 16)
        return "chunk size too large";
    s->left = s->left * 16 + (uint64_t)v;
    s->state = CH_SIZE;
    return NULL;
}

const char *framing_scan_chunked(mb_chunk_scan *s, const char *d, size_t len)
{
    size_t i = 0;
    while (i < len && s->state != CH_LAST) {
        char ch = d[i];
        switch (s->state) {
        case CH_SIZE_START:
        case CH_SIZE: {
            const char *why = chunk_size_byte(s, ch);
            if (why)
                return why;
            i++;
            break;
        }
        case CH_SIZE_LF:
            if (ch != '\n')
                return "malformed chunk size line (CR not followed by LF)";
            s->state = s->left == 0 ? CH_LAST : CH_DATA;
            i++;
            break;
        case CH_DATA: {
            size_t n = len - i < s->left ? len - i : (size_t)s->left;
            s->left -= n;
            i += n;
            if (s->left == 0)
                s->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (ch != '\r')
                return "chunk data not followed by CRLF";
            s->state = CH_DATA_LF;
            i++;
            break;
        default: /* CH_DATA_LF */
            if (ch != '\n')
                return "chunk data not followed by CRLF";
            s->state = CH_SIZE_START;
            i++;
            break;
        }
    }
    return NULL;
}
