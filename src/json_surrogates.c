/* json_surrogates: lone UTF-16 surrogates in \u escapes (see the header). */
#include "json_surrogates.h"
#include "hex.h"

enum {
    S_OUT,        /* between strings */
    S_IN,         /* inside a string */
    S_ESC,        /* after a backslash */
    S_HEX,        /* the digits of a \u escape */
    S_WANT_BS,    /* after a high surrogate: a backslash must follow ... */
    S_WANT_U,     /* ... then 'u' ... */
    S_LOW,        /* ... then the digits of a low surrogate */
    S_BAD         /* refused */
};

static const char LONE_HIGH[] = "a \\u escape holds a high surrogate without its low one";
static const char LONE_LOW[] = "a \\u escape holds a low surrogate without a high one before it";

static int is_high(unsigned v) { return v >= 0xD800 && v <= 0xDBFF; }
static int is_low(unsigned v) { return v >= 0xDC00 && v <= 0xDFFF; }

/* One hex digit of an escape; returns the state to go on in. */
static int hex_digit(json_surrogates *s, unsigned char ch)
{
    int v = hex_value((char)ch);
    if (v < 0)
        return S_IN;                 /* not an escape yajl accepts: its error */
    s->value = (s->value << 4) | (unsigned)v;
    if (++s->digits < 4)
        return s->state;
    if (s->state == S_LOW) {
        if (is_low(s->value))
            return S_IN;
        s->why = LONE_HIGH;
        return S_BAD;
    }
    if (is_high(s->value))
        return S_WANT_BS;
    if (is_low(s->value)) {
        s->why = LONE_LOW;
        return S_BAD;
    }
    return S_IN;
}

const char *json_surrogates_scan(json_surrogates *s, const unsigned char *buf, size_t len,
                                 size_t *before)
{
    if (s->state == S_BAD) {         /* refused on an earlier call */
        *before = 0;
        return s->why;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = buf[i];
        switch (s->state) {
        case S_OUT:
            if (ch == '"')
                s->state = S_IN;
            break;
        case S_IN:
            if (ch == '\\')
                s->state = S_ESC;
            else if (ch == '"')
                s->state = S_OUT;
            break;
        case S_ESC:
            s->state = ch == 'u' ? S_HEX : S_IN;
            s->digits = 0;
            s->value = 0;
            break;
        case S_HEX:
        case S_LOW:
            s->state = hex_digit(s, ch);
            break;
        case S_WANT_BS:
        case S_WANT_U:
            if (ch != (s->state == S_WANT_BS ? '\\' : 'u')) {
                s->why = LONE_HIGH;
                s->state = S_BAD;
                break;
            }
            s->state = s->state == S_WANT_BS ? S_WANT_U : S_LOW;
            s->digits = 0;
            s->value = 0;
            break;
        }
        if (s->state == S_BAD) {     /* buf[i] is the refused byte */
            *before = i;
            return s->why;
        }
    }
    *before = len;
    return NULL;
}
