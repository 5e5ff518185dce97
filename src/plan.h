/* plan: v1 operation (+ the current v2 member list) -> the v2 calls to make.
 * Pure: no I/O. */
#ifndef MB_PLAN_H
#define MB_PLAN_H

#include "strset.h"

/* Replace: every desired member missing from current is added (in desired
 * order), every current member not desired is deleted (in current order).
 * to_add and to_delete are empty sets supplied by the caller.
 * Returns 0, or -1 when out of memory. */
int plan_replace(const mb_strset *desired, const mb_strset *current,
                 mb_strset *to_add, mb_strset *to_delete);

#endif
