/* Fuzz target: the request-framing checks (src/framing.c).
 *
 * Input: [plan byte (fuzz_split.h)] [mode byte] [header block...].
 * Mode byte bit 0: HTTP/1.1 (else 1.0); bit 1: the last header's value
 * pointer is NULL (a caller's bug framing_check must refuse, not follow).
 *   - framing_scan_headers runs on the raw block whole and again in the
 *     pieces the plan gives: both find the same end (or the same refusal);
 *     an end found is just after a LF.
 *   - framing_check runs on the block split into lines at LF (a CR before
 *     the LF dropped, up to the first empty line) and each line at its
 *     first ':' (as a header parser would hand them over; a line without
 *     ':' is a name with an empty value). When it accepts: no value
 *     holds CR, LF or NUL, every name is a non-empty token, HTTP/1.1 has
 *     exactly one Host; chunked goes with no Content-Length, and a
 *     Content-Length is >= 0 only when a Content-Length header was given.
 *   - framing_scan_chunked runs on the bytes after the header block's end
 *     (all of them when there is none), whole and in pieces: both refuse
 *     with the same message, or accept and end in the same state.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_split.h"
#include "framing.h"

#define MAX_HEADERS 128

/* Scans d[0..len) in the given pieces; returns the end offset in d (0: none)
 * and sets *bad. */
static size_t scan(const char *d, size_t len, fuzz_split *split, const char **bad)
{
    mb_header_scan s = { 0 };
    size_t pos = 0;
    *bad = NULL;
    while (pos < len) {
        size_t n = split != NULL ? fuzz_split_next(split, len - pos) : len - pos;
        size_t end = framing_scan_headers(&s, d + pos, n, bad);
        FUZZ_CHECK(end <= n);
        if (*bad != NULL) {
            FUZZ_CHECK(end == 0);
            return 0;
        }
        if (end > 0)
            return pos + end;
        pos += n;
    }
    return 0;
}

/* Returns where the header block ends (0: it does not). */
static size_t fuzz_scan(const char *d, size_t len, fuzz_split *split)
{
    const char *bad_whole, *bad_pieces;
    size_t whole = scan(d, len, NULL, &bad_whole);
    size_t pieces = scan(d, len, split, &bad_pieces);
    FUZZ_CHECK(whole == pieces);
    FUZZ_CHECK(bad_whole == bad_pieces);   /* static messages: the same pointer */
    if (whole > 0)
        FUZZ_CHECK(d[whole - 1] == '\n');
    if (bad_whole == NULL && whole > 0)
        FUZZ_CHECK(memchr(d, '\0', whole) == NULL);
    return whole;
}

static const char *chunk_scan(const char *d, size_t len, fuzz_split *split, mb_chunk_scan *s)
{
    size_t pos = 0;
    while (pos < len) {
        size_t n = split != NULL ? fuzz_split_next(split, len - pos) : len - pos;
        const char *why = framing_scan_chunked(s, d + pos, n);
        if (why != NULL)
            return why;
        pos += n;
    }
    return NULL;
}

static void fuzz_chunked(const char *d, size_t len, fuzz_split *split)
{
    mb_chunk_scan whole = { 0 }, pieces = { 0 };
    const char *why_whole = chunk_scan(d, len, NULL, &whole);
    const char *why_pieces = chunk_scan(d, len, split, &pieces);
    FUZZ_CHECK(why_whole == why_pieces);   /* static messages: the same pointer */
    if (why_whole == NULL)
        FUZZ_CHECK(whole.state == pieces.state && whole.left == pieces.left);
    else
        FUZZ_CHECK(why_whole[0] != '\0');
}

static int name_is(const mb_header *h, const char *lit)
{
    return h->nlen == strlen(lit) && strncasecmp(h->name, lit, h->nlen) == 0;
}

static void fuzz_check(const char *d, size_t len, int minor, int null_value)
{
    mb_header h[MAX_HEADERS];
    size_t n = 0, pos = 0;
    while (pos < len && n < MAX_HEADERS) {
        const char *line = d + pos;
        const char *lf = memchr(line, '\n', len - pos);
        size_t llen = lf != NULL ? (size_t)(lf - line) : len - pos;
        pos += llen + 1;
        if (llen > 0 && line[llen - 1] == '\r')
            llen--;               /* the CR of CRLF; any other CR stays */
        if (llen == 0)
            break;                /* the empty line ends the block */
        const char *colon = memchr(line, ':', llen);
        size_t nlen = colon != NULL ? (size_t)(colon - line) : llen;
        h[n].name = line;
        h[n].nlen = nlen;
        h[n].value = colon != NULL ? colon + 1 : line + llen;
        h[n].vlen = colon != NULL ? llen - nlen - 1 : 0;
        n++;
    }
    if (null_value && n > 0)
        h[n - 1].value = NULL;

    mb_framing out = { .chunked = 7, .content_length = -7 };
    const char *err = framing_check(h, n, minor, &out);
    if (err != NULL) {
        FUZZ_CHECK(err[0] != '\0');
        return;
    }
    size_t hosts = 0, cls = 0;
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(h[i].nlen > 0);
        FUZZ_CHECK(h[i].vlen == 0 || h[i].value != NULL);
        for (size_t j = 0; j < h[i].nlen; j++)
            FUZZ_CHECK((unsigned char)h[i].name[j] > ' ' && h[i].name[j] != ':'
                       && (unsigned char)h[i].name[j] < 0x7f);
        for (size_t j = 0; j < h[i].vlen; j++)
            FUZZ_CHECK(h[i].value[j] != '\r' && h[i].value[j] != '\n' && h[i].value[j] != '\0');
        hosts += name_is(&h[i], "Host");
        cls += name_is(&h[i], "Content-Length");
    }
    FUZZ_CHECK(hosts <= 1);
    if (minor >= 1)
        FUZZ_CHECK(hosts == 1);
    FUZZ_CHECK(out.chunked == 0 || out.chunked == 1);
    FUZZ_CHECK(out.content_length >= -1);
    if (out.chunked)
        FUZZ_CHECK(out.content_length == -1 && cls == 0 && minor >= 1);
    FUZZ_CHECK((out.content_length >= 0) == (cls > 0 && !out.chunked));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    fuzz_split split;
    fuzz_split_init(&split, data[0]);
    uint8_t mode = data[1];
    size_t len = size - 2;
    char *buf = malloc(len ? len : 1);   /* exactly the block: ASan sees overreads */
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, data + 2, len);

    size_t body = fuzz_scan(buf, len, &split);
    fuzz_check(buf, len, mode & 1, (mode & 2) != 0);
    fuzz_split_init(&split, data[0]);
    fuzz_chunked(buf + body, len - body, &split);
    free(buf);
    return 0;
}
