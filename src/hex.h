/* hex: the value of one hexadecimal digit, shared by the parsers (route
 * escapes, chunk sizes in requests and in upstream responses). */
#ifndef MB_HEX_H
#define MB_HEX_H

/* 0..15, or -1 when ch is not a hex digit. */
static inline int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

#endif
