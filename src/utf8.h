/* utf8: UTF-8 validation. Pure: no I/O. */
#ifndef MB_UTF8_H
#define MB_UTF8_H

#include <stddef.h>

/* Length (1..4) of the valid UTF-8 character at s[0..len), or 0 when the
 * bytes there are not one (overlong forms, surrogates and code points
 * above U+10FFFF are not). */
size_t utf8_char_len(const unsigned char *s, size_t len);

/* 1 when s[0..len) is valid UTF-8 throughout. */
int    utf8_valid(const unsigned char *s, size_t len);

#endif
