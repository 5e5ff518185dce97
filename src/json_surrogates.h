/* json_surrogates: finds \u escapes that are not valid UTF-16 in a JSON
 * text fed in pieces: a high surrogate (\uD800-\uDBFF) not followed by a
 * low one (\uDC00-\uDFFF), or a low one on its own. yajl turns a lone high
 * surrogate into '?' without an error, so a member id "a\ud800b" would be
 * added as "a?b": the body is refused instead. Pure: no I/O, no allocation. */
#ifndef MB_JSON_SURROGATES_H
#define MB_JSON_SURROGATES_H

#include <stddef.h>

typedef struct {
    int      state;     /* where the scan stands (json_surrogates.c) */
    int      digits;    /* hex digits of the current \u escape read so far */
    unsigned value;     /* their value */
    const char *why;    /* once refused: why */
} json_surrogates;

/* Zeroed: at the start of a text. */
#define JSON_SURROGATES_INIT { 0, 0, 0, NULL }

/* Scans the next piece. Returns NULL, or why the text is refused (also on
 * every later call); *before is then the number of bytes of buf before the
 * refused one (0 when it was refused earlier), else len. Not a JSON
 * validator: other errors are yajl's. */
const char *json_surrogates_scan(json_surrogates *s, const unsigned char *buf, size_t len,
                                 size_t *before);

#endif
