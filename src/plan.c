/* plan: the v2 calls a v1 replace needs (SPEC section 1, replace row). */
#include "plan.h"

#include <string.h>

/* Adds to out every string of from that is not in other, in from's order. */
static int difference(const mb_strset *from, const mb_strset *other, mb_strset *out)
{
    size_t n = strset_count(from);
    for (size_t i = 0; i < n; i++) {
        const char *s = strset_get(from, i);
        size_t len = strlen(s);
        if (!strset_contains(other, s, len) && strset_add(out, s, len) < 0)
            return -1;
    }
    return 0;
}

int plan_replace(const mb_strset *desired, const mb_strset *current,
                 mb_strset *to_add, mb_strset *to_delete)
{
    if (difference(desired, current, to_add) != 0)
        return -1;
    return difference(current, desired, to_delete);
}
