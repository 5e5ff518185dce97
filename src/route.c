/* route: the v1 membership routes and id validation (SPEC section 1). */
#include "route.h"
#include "hex.h"
#include "utf8.h"

#include <string.h>

/* The Allow header of each route: the methods of the table below. */
static const char *const allow_of[] = {
    [ROUTE_OTHER]         = NULL,
    [ROUTE_IMAGE_MEMBERS] = "GET, PUT",
    [ROUTE_IMAGE_MEMBER]  = "PUT, DELETE",
    [ROUTE_SHARED_IMAGES] = "GET",
    [ROUTE_HEALTHCHECK]   = "GET, HEAD",
};

/* Which op a method maps to on each route; any other method is a 405.
 * Paths are matched on the raw (still percent-encoded) path; the literal
 * segments must be spelled exactly. */
typedef struct {
    mb_route_kind kind;
    const char   *method;
    mb_op_kind    op;
} method_desc;

static const method_desc methods[] = {
    { ROUTE_IMAGE_MEMBER,  "PUT",    OP_ADD },
    { ROUTE_IMAGE_MEMBER,  "DELETE", OP_REMOVE },
    { ROUTE_IMAGE_MEMBERS, "GET",    OP_LIST },
    { ROUTE_IMAGE_MEMBERS, "PUT",    OP_REPLACE },
    { ROUTE_SHARED_IMAGES, "GET",    OP_SHARED_IMAGES },
    { ROUTE_HEALTHCHECK,   "GET",    OP_HEALTHCHECK },
    { ROUTE_HEALTHCHECK,   "HEAD",   OP_HEALTHCHECK },
};

enum { ID_IMAGE, ID_MEMBER };
enum { ERR_EMPTY, ERR_LONG, ERR_CTRL, ERR_SLASH, ERR_ESCAPE, ERR_UTF8, ERR_RAW, ERR_DOT, ERR_COUNT };

static const char *const id_errors[2][ERR_COUNT] = {
    [ID_IMAGE] = {
        [ERR_EMPTY]  = "image id is empty",
        [ERR_LONG]   = "image id is longer than 255 bytes",
        [ERR_CTRL]   = "image id holds a control character",
        [ERR_SLASH]  = "image id holds '/'",
        [ERR_ESCAPE] = "image id holds a malformed percent-escape",
        [ERR_UTF8]   = "image id is not valid UTF-8",
        [ERR_RAW]    = "image id holds a raw '#' (a fragment is not part of a request target)",
        [ERR_DOT]    = "image id is '.' or '..'",
    },
    [ID_MEMBER] = {
        [ERR_EMPTY]  = "member id is empty",
        [ERR_LONG]   = "member id is longer than 255 bytes",
        [ERR_CTRL]   = "member id holds a control character",
        [ERR_SLASH]  = "member id holds '/'",
        [ERR_ESCAPE] = "member id holds a malformed percent-escape",
        [ERR_UTF8]   = "member id is not valid UTF-8",
        [ERR_RAW]    = "member id holds a raw '#' (a fragment is not part of a request target)",
        [ERR_DOT]    = "member id is '.' or '..'",
    },
};

/* 1 when every '%' in src[0..len) starts a two-hex-digit escape. */
static int escapes_ok(const char *src, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (src[i] != '%')
            continue;
        if (len - i < 3 || hex_value(src[i + 1]) < 0 || hex_value(src[i + 2]) < 0)
            return 0;
        i += 2;
    }
    return 1;
}

long pct_decode(const char *src, size_t len, char *dst, size_t dstcap)
{
    size_t o = 0;

    if (dstcap == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int ch = (unsigned char)src[i];
        if (ch == '%') {
            int hi, lo;
            if (len - i < 3 || (hi = hex_value(src[i + 1])) < 0 || (lo = hex_value(src[i + 2])) < 0)
                return -1;
            ch = hi << 4 | lo;
            i += 2;
        }
        if (o + 1 >= dstcap)
            return -1;
        dst[o++] = (char)ch;
    }
    dst[o] = '\0';
    return (long)o;
}

/* "." and "..": a dot-segment. Percent-encoding does not protect it: a
 * proxy in front of Glance (nginx "proxy_pass http://glance/;", the devstack
 * layout) removes "/members/.." from the path whether it is sent as ".." or
 * "%2E%2E", and the call lands on /v2/images/{i}/. */
int id_is_dot_segment(const char *id, size_t len)
{
    return (len == 1 && id[0] == '.') || (len == 2 && id[0] == '.' && id[1] == '.');
}

int id_valid(const char *id, size_t len)
{
    if (len == 0 || len > MB_ID_MAX || id_is_dot_segment(id, len))
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)id[i];
        if (ch < 0x20 || ch == 0x7f || ch == '/')
            return 0;
    }
    return utf8_valid((const unsigned char *)id, len);
}

/* Decodes one id segment into dst (MB_ID_MAX + 1 bytes) and validates it.
 * Returns NULL, or the static reason it is invalid. */
static const char *take_id(const char *seg, size_t len, int which, char *dst)
{
    const char *const *err = id_errors[which];

    if (len == 0)
        return err[ERR_EMPTY];
    if (memchr(seg, '#', len))
        return err[ERR_RAW];      /* RFC 9112 3.2: no fragment in a request; %23 is fine */
    if (!escapes_ok(seg, len))
        return err[ERR_ESCAPE];
    long n = pct_decode(seg, len, dst, MB_ID_MAX + 1);
    if (n < 0)
        return err[ERR_LONG];  /* escapes are fine, so it overflowed */
    if (n == 0)
        return err[ERR_EMPTY];
    for (long i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)dst[i];
        if (ch < 0x20 || ch == 0x7f)
            return err[ERR_CTRL];
        if (ch == '/')
            return err[ERR_SLASH];
    }
    if (!utf8_valid((const unsigned char *)dst, (size_t)n))
        return err[ERR_UTF8];
    if (id_is_dot_segment(dst, (size_t)n))
        return err[ERR_DOT];
    return NULL;
}

/* Splits the path after prefix into at most max segments at '/'.
 * Returns the segment count, or -1 when there are more than max. */
static int split(const char *p, const char **seg, size_t *seglen, int max)
{
    int n = 0;

    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (n == max)
            return -1;
        seg[n] = p;
        seglen[n] = len;
        n++;
        if (slash == NULL)
            return n;
        p = slash + 1;
    }
}

static int seg_is(const char *seg, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(seg, lit, len) == 0;
}

/* Finds the route kind and the raw id segments. */
static mb_route_kind match(const char *path, const char **img, size_t *imglen,
                           const char **mem, size_t *memlen)
{
    static const char images[] = "/v1/images/";
    static const char shared[] = "/v1/shared-images/";
    const char *seg[4];
    size_t len[4];
    int n;

    if (strcmp(path, "/healthcheck") == 0)
        return ROUTE_HEALTHCHECK;

    if (strncmp(path, shared, sizeof(shared) - 1) == 0) {
        n = split(path + sizeof(shared) - 1, seg, len, 1);
        if (n != 1 || len[0] == 0)  /* "/v1/shared-images/" is a trailing slash */
            return ROUTE_OTHER;
        *mem = seg[0];
        *memlen = len[0];
        return ROUTE_SHARED_IMAGES;
    }

    if (strncmp(path, images, sizeof(images) - 1) != 0)
        return ROUTE_OTHER;
    n = split(path + sizeof(images) - 1, seg, len, 3);
    if (n < 2 || !seg_is(seg[1], len[1], "members"))
        return ROUTE_OTHER;
    *img = seg[0];
    *imglen = len[0];
    if (n == 2)
        return ROUTE_IMAGE_MEMBERS;
    if (len[2] == 0)  /* ".../members/" is a trailing slash, not an empty id */
        return ROUTE_OTHER;
    *mem = seg[2];
    *memlen = len[2];
    return ROUTE_IMAGE_MEMBER;
}

static mb_op_kind op_for(mb_route_kind kind, const char *method)
{
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (methods[i].kind == kind && strcmp(methods[i].method, method) == 0)
            return methods[i].op;
    return OP_METHOD_NOT_ALLOWED;
}

int route_parse(const char *method, const char *path, mb_route *out)
{
    const char *img = NULL, *mem = NULL;
    size_t imglen = 0, memlen = 0;

    memset(out, 0, sizeof(*out));
    out->kind = match(path, &img, &imglen, &mem, &memlen);
    if (out->kind == ROUTE_OTHER) {
        out->op = OP_NONE;
        return 0;
    }
    out->allow = allow_of[out->kind];

    if (img != NULL && (out->error = take_id(img, imglen, ID_IMAGE, out->image_id)) != NULL)
        return -1;
    if (mem != NULL && (out->error = take_id(mem, memlen, ID_MEMBER, out->member_id)) != NULL)
        return -1;

    out->op = op_for(out->kind, method);
    return 0;
}
