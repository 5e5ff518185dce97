/* v1_body: incremental (yajl callback) parser of the v1 membership bodies
 * (SPEC section 1, "Bodies the v1 member calls accept"). Bytes are fed as they
 * arrive; only the set of distinct member ids is kept. Pure: no I/O. */
#ifndef MB_V1_BODY_H
#define MB_V1_BODY_H

#include <stddef.h>
#include "strset.h"

#define V1_BODY_MAX_DEPTH 32

typedef enum {
    V1_BODY_ADD,      /* PUT /v1/images/{i}/members/{m}: empty, {"member":{...}}, {"members":[...]}, other objects */
    V1_BODY_REPLACE   /* PUT /v1/images/{i}/members: {"memberships":[...]} required */
} v1_body_kind;

typedef struct v1_body v1_body;

/* path_member (ADD only, may be NULL) is put first in the member set and
 * counts towards max_members (with max_members 0 the body is a 413 at once).
 * Returns NULL when out of memory. */
v1_body *v1_body_new(v1_body_kind kind, size_t max_members, const char *path_member);
void     v1_body_free(v1_body *b);

/* Feed the next chunk. Returns 0 to go on, -1 once the body is known bad
 * (then v1_body_status/v1_body_error say why; further feeds are ignored and
 * return -1). */
int      v1_body_feed(v1_body *b, const unsigned char *buf, size_t len);
/* End of body. Returns 0 when the body is valid, -1 otherwise. An ADD body
 * that is empty or only whitespace is valid. A REPLACE body must hold
 * "memberships". */
int      v1_body_finish(v1_body *b);

int         v1_body_status(const v1_body *b);  /* 0 while fine, else 400 or 413 (500: out of memory) */
const char *v1_body_error(const v1_body *b);   /* message for the error reply, or NULL */
/* The distinct member ids: for ADD the path member first, then the listed
 * ones; for REPLACE the memberships, in order. Owned by b. */
const mb_strset *v1_body_members(const v1_body *b);
/* 1 if any "can_share": true was seen (in "member" or any list entry). */
int      v1_body_can_share_true(const v1_body *b);

#endif
