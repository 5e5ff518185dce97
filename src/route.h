/* route: the v1 membership routes and id validation (SPEC section 1).
 * Pure: no I/O. */
#ifndef MB_ROUTE_H
#define MB_ROUTE_H

#include <stddef.h>

#define MB_ID_MAX 255

typedef enum {
    ROUTE_OTHER = 0,        /* not a v1 membership call: proxied (501 for now) */
    ROUTE_IMAGE_MEMBERS,    /* /v1/images/{image_id}/members */
    ROUTE_IMAGE_MEMBER,     /* /v1/images/{image_id}/members/{member_id} */
    ROUTE_SHARED_IMAGES,    /* /v1/shared-images/{member_id} */
    ROUTE_HEALTHCHECK       /* /healthcheck */
} mb_route_kind;

typedef enum {
    OP_NONE = 0,
    OP_ADD,                 /* PUT  ROUTE_IMAGE_MEMBER */
    OP_REMOVE,              /* DELETE ROUTE_IMAGE_MEMBER */
    OP_REPLACE,             /* PUT  ROUTE_IMAGE_MEMBERS */
    OP_LIST,                /* GET  ROUTE_IMAGE_MEMBERS */
    OP_SHARED_IMAGES,       /* GET  ROUTE_SHARED_IMAGES */
    OP_HEALTHCHECK,         /* GET/HEAD ROUTE_HEALTHCHECK */
    OP_METHOD_NOT_ALLOWED   /* a membership path with a method it lacks: 405 */
} mb_op_kind;

typedef struct {
    mb_route_kind kind;
    mb_op_kind    op;
    char          image_id[MB_ID_MAX + 1];   /* percent-decoded, NUL-terminated */
    char          member_id[MB_ID_MAX + 1];
    const char   *allow;                     /* Allow header value for this route, or NULL */
    const char   *error;                     /* when route_parse returns -1: why (static string) */
} mb_route;

/* Parses the request path (without the query string) and method
 * ("GET", "PUT", ...). Returns 0 with *out filled (op = OP_NONE for
 * ROUTE_OTHER), or -1 when the path is a membership route with an invalid id
 * (out->error says why; the request is answered 400). A trailing slash is not
 * a membership route. Percent-decoding happens per segment: "%2F" inside an id
 * decodes to '/' and is then invalid. */
int route_parse(const char *method, const char *path, mb_route *out);

/* 1 when id[0..len) is a valid v1 id: 1..255 bytes, no byte < 0x20 or
 * 0x7f, no '/', valid UTF-8, not "." or "..". (CR, LF, NUL are control
 * characters.) */
int id_valid(const char *id, size_t len);
/* 1 when id[0..len) is "." or "..", which no upstream path can carry. */
int id_is_dot_segment(const char *id, size_t len);

/* Percent-decodes src[0..len) into dst (capacity dstcap, NUL-terminated).
 * Returns the decoded length, or -1 on a malformed escape or overflow. */
long pct_decode(const char *src, size_t len, char *dst, size_t dstcap);

#endif
