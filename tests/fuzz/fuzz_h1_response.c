/* Fuzz target: the incremental HTTP/1.x response parser (src/h1_response.c).
 *
 * Input: [plan byte (fuzz_split.h)] [mode byte] [bytes from the upstream...].
 * Mode byte bit 0: the request was HEAD; bits 1-2: 1 = on_header refuses
 * once it has been called (bits 3-5: 0..7) times, 3 = on_body refuses at
 * once (the pieces it would get depend on the cut, so no later one is
 * compared); bits 6-7: 1, 2, 3 lengthen the line that the first, second or
 * last LF of the payload ends by H1_MAX_HEADER_BYTES - 256 bytes of 'a', so
 * that the 64 KiB limits (header block, chunk-size line, trailers) are
 * reached with inputs of a few hundred bytes.
 * The bytes are read as a keep-alive connection would be: up to 4 responses
 * in a row, each after h1_resp_free + h1_resp_init on the bytes left over,
 * then the close (h1_resp_eof). This is done on the whole input and again
 * fed in the pieces the plan gives.
 * Invariants:
 *   - both runs see the same events (headers, body bytes, statuses, errors,
 *     bytes consumed, keep-alive) in the same order;
 *   - a feed consumes at most what it was given; -1 comes with an error;
 *   - body data is handed on in place (it points into the fed bytes);
 *   - a Content-Length body delivers exactly that many bytes; a header
 *     block stays within H1_MAX_HEADER_BYTES, and so does the line buffer;
 *   - a status is 100..999 and never 101; header names are non-empty.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_split.h"
#include "h1_response.h"

#define MAX_RESPONSES 4

/* What one run saw, as a running hash plus a few counters. */
typedef struct {
    uint64_t    hash;
    const char *feed_lo, *feed_hi;   /* the bytes of the current feed */
    int         stop_header, stop_body, stop_after;
    int         n_header;
    unsigned long long body_bytes;   /* of the current response */
    uint64_t    body_hash;           /* of its bytes, however they were cut */
    h1_resp    *p;
} run;

static void note(run *r, const char *tag, const void *d, size_t n)
{
    r->hash = fuzz_hash(r->hash, tag, strlen(tag) + 1);
    r->hash = fuzz_hash(r->hash, &n, sizeof(n));
    r->hash = fuzz_hash(r->hash, d, n);
}

static int on_header(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
    run *r = arg;
    FUZZ_CHECK(nlen > 0);
    note(r, "name", name, nlen);
    note(r, "value", value, vlen);
    return r->stop_header && ++r->n_header > r->stop_after ? -1 : 0;
}

static int on_headers_done(void *arg, int status)
{
    run *r = arg;
    FUZZ_CHECK(status >= 200 && status <= 999);
    FUZZ_CHECK(status == r->p->status);
    FUZZ_CHECK(r->p->header_bytes <= H1_MAX_HEADER_BYTES);
    note(r, "done", &status, sizeof(status));
    note(r, "keep", &r->p->keep_alive, sizeof(r->p->keep_alive));
    return 0;
}

/* The final response's body is framed by its Content-Length. */
static int length_framed(const h1_resp *p)
{
    return p->status >= 200 && p->content_length >= 0 && !p->chunked && !p->close_delimited
           && !p->head && p->status != 204 && p->status != 304;
}

static int on_body(void *arg, const char *data, size_t len)
{
    run *r = arg;
    FUZZ_CHECK(len > 0);
    FUZZ_CHECK(data >= r->feed_lo && data + len <= r->feed_hi);   /* in place */
    if (r->stop_body)
        return -1;
    r->body_bytes += len;
    if (length_framed(r->p))
        FUZZ_CHECK(r->body_bytes <= (unsigned long long)r->p->content_length);
    r->body_hash = fuzz_hash(r->body_hash, data, len);
    return 0;
}

static const h1_resp_cbs cbs = { on_header, on_headers_done, on_body };

/* A response ended (done, error or eof): into the hash with the results. */
static void note_end(run *r, const char *how)
{
    h1_resp *p = r->p;
    note(r, how, NULL, 0);
    note(r, "body", &r->body_hash, sizeof(r->body_hash));
    note(r, "body bytes", &r->body_bytes, sizeof(r->body_bytes));
    if (p->error != NULL)
        note(r, "error", p->error, strlen(p->error));
    note(r, "status", &p->status, sizeof(p->status));
    note(r, "minor", &p->minor, sizeof(p->minor));
    if (p->done && p->status >= 200) {
        note(r, "ka", &p->keep_alive, sizeof(p->keep_alive));
        if (length_framed(p))
            FUZZ_CHECK(r->body_bytes == (unsigned long long)p->content_length);
    }
}

/* Reads d[0..len) cut by split (NULL: whole) into up to MAX_RESPONSES
 * responses. Returns the hash of everything seen. */
static uint64_t read_connection(const uint8_t *d, size_t len, fuzz_split *split, uint8_t mode)
{
    h1_resp p;
    run r = { .hash = FUZZ_HASH_INIT, .body_hash = FUZZ_HASH_INIT, .stop_header = (mode & 6) == 2,
              .stop_body = (mode & 6) == 6, .stop_after = (mode >> 3) & 7, .p = &p };
    int responses = 0, failed = 0;
    size_t pos = 0, piece_end = 0;

    h1_resp_init(&p, mode & 1);
    while (pos < len && !failed) {
        if (pos == piece_end)
            piece_end = pos + (split != NULL ? fuzz_split_next(split, len - pos) : len - pos);
        size_t n = piece_end - pos;
        r.feed_lo = (const char *)d + pos;
        r.feed_hi = r.feed_lo + n;
        ssize_t used = h1_resp_feed(&p, (const char *)d + pos, n, &cbs, &r);
        FUZZ_CHECK(used >= -1 && used <= (ssize_t)n);
        FUZZ_CHECK(p.line_cap <= H1_MAX_HEADER_BYTES);
        if (used < 0) {
            FUZZ_CHECK(p.error != NULL);
            note_end(&r, "failed");
            failed = 1;
            break;
        }
        pos += (size_t)used;
        if (p.done) {
            FUZZ_CHECK(p.status >= 200 && p.status <= 999 && p.status != 101);
            note_end(&r, "response");
            note(&r, "at", &pos, sizeof(pos));   /* where it ended: the same however cut */
            if (++responses == MAX_RESPONSES)
                break;
            h1_resp_free(&p);
            h1_resp_init(&p, mode & 1);
            r.body_bytes = 0;
            r.body_hash = FUZZ_HASH_INIT;
        } else {
            FUZZ_CHECK((size_t)used == n);   /* not done: all bytes taken */
        }
    }
    if (!failed && responses < MAX_RESPONSES) {
        int rc = h1_resp_eof(&p);
        FUZZ_CHECK(rc == 0 || (rc == -1 && p.error != NULL));
        note_end(&r, rc == 0 ? "eof" : "eof-error");
    }
    h1_resp_free(&p);
    return r.hash;
}

#define FILL_BYTES (H1_MAX_HEADER_BYTES - 256)

/* Where the filler goes (bits 6-7 of the mode byte): at the end of the
 * line that the first, second or last LF ends (before its CR, if any).
 * Returns SIZE_MAX when there is no such LF (then none is added). */
static size_t fill_at(const uint8_t *d, size_t len, int which)
{
    size_t at = SIZE_MAX, seen = 0;
    for (size_t i = 0; i < len; i++) {
        if (d[i] != '\n')
            continue;
        seen++;
        at = i > 0 && d[i - 1] == '\r' ? i - 1 : i;
        if ((which == 1 && seen == 1) || (which == 2 && seen == 2))
            return at;
    }
    return which == 3 ? at : SIZE_MAX;
}

/* The payload, with the filler put in when the mode asks: FILL_BYTES of
 * 'a', which lengthen a reason phrase, a header value, a chunk extension
 * or a trailer alike. malloc'd, exactly *out_len bytes (ASan sees any read
 * past its end). */
static uint8_t *make_payload(const uint8_t *d, size_t len, uint8_t mode, size_t *out_len)
{
    int which = mode >> 6;
    size_t at = which != 0 ? fill_at(d, len, which) : SIZE_MAX;
    size_t fill = at != SIZE_MAX ? FILL_BYTES : 0;
    if (at == SIZE_MAX)
        at = len;
    uint8_t *buf = malloc(len + fill > 0 ? len + fill : 1);
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, d, at);
    memset(buf + at, 'a', fill);
    memcpy(buf + at + fill, d + at, len - at);
    *out_len = len + fill;
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    fuzz_split split;
    fuzz_split_init(&split, data[0]);
    uint8_t mode = data[1];
    size_t len;
    uint8_t *buf = make_payload(data + 2, size - 2, mode, &len);

    uint64_t whole = read_connection(buf, len, NULL, mode);
    uint64_t pieces = read_connection(buf, len, &split, mode);
    FUZZ_CHECK(whole == pieces);
    free(buf);
    return 0;
}
