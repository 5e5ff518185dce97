/* strset: an ordered set of distinct byte strings (insertion order kept).
 * Pure: no I/O. Used for member ids and image ids. */
#ifndef MB_STRSET_H
#define MB_STRSET_H

#include <stddef.h>

typedef struct mb_strset mb_strset;

mb_strset  *strset_new(void);
void        strset_free(mb_strset *s);
/* Adds a copy of s[0..len). Returns 1 when added, 0 when already present,
 * -1 when out of memory. Strings may not contain NUL (callers validate). */
int         strset_add(mb_strset *s, const char *str, size_t len);
int         strset_contains(const mb_strset *s, const char *str, size_t len);
size_t      strset_count(const mb_strset *s);
/* i-th string in insertion order, NUL-terminated, owned by the set. */
const char *strset_get(const mb_strset *s, size_t i);

#endif
