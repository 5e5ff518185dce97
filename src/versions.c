/* versions: the upstream's version document passed through yajl's callback
 * parser into a generator, event by event (numbers as their text), with the
 * v1 entries added at the end of the top-level "versions" array and the
 * upstream's base URL in "href" values replaced by the gateway's. */
#include "versions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "reply.h"

#define VERSIONS_MAX_DEPTH 64

typedef struct {
    yajl_gen    g;
    const char *upstream_base, *gateway_base;
    size_t      depth;
    int         in_versions;      /* depth 2 is the top-level "versions" array */
    int         versions_done;    /* it was seen (and closed) */
    int         key_versions;     /* the next value belongs to the top-level "versions" */
    int         key_href;         /* the next value belongs to an "href" key */
    int         key_id;           /* ... to an "id" key (inside "versions") */
    int         has_v10, has_v11;
} vp;

#define OK(call) ((call) == yajl_gen_status_ok)

static void value_seen(vp *p)
{
    p->key_versions = p->key_href = p->key_id = 0;
}

static int v_null(void *ctx)
{
    vp *p = ctx;
    value_seen(p);
    return p->depth > 0 && OK(yajl_gen_null(p->g));
}

static int v_bool(void *ctx, int b)
{
    vp *p = ctx;
    value_seen(p);
    return p->depth > 0 && OK(yajl_gen_bool(p->g, b));
}

static int v_number(void *ctx, const char *s, size_t len)
{
    vp *p = ctx;
    value_seen(p);
    return p->depth > 0 && OK(yajl_gen_number(p->g, s, len));
}

/* Length of the prefix of s that is the upstream's base URL, compared
 * without the scheme (behind a TLS terminator the upstream may write
 * http:// links for an https:// URL), or 0. */
static size_t upstream_prefix(const vp *p, const unsigned char *s, size_t len)
{
    const char *base = strstr(p->upstream_base, "://");
    const unsigned char *rest = len > 3 ? memmem(s, len < 9 ? len : 9, "://", 3) : NULL;
    if (base == NULL || rest == NULL)
        return 0;
    base += 3;
    rest += 3;
    size_t bl = strlen(base), left = len - (size_t)(rest - s);
    if (bl == 0 || left < bl || memcmp(rest, base, bl) != 0)
        return 0;
    if (left > bl && rest[bl] != '/' && rest[bl] != '?')
        return 0;                         /* host:9292 is not host:92921 */
    return (size_t)(rest - s) + bl;
}

static int v_string(void *ctx, const unsigned char *s, size_t len)
{
    vp *p = ctx;
    size_t ub = p->key_href ? upstream_prefix(p, s, len) : 0;
    int rc;

    if (p->depth == 0)
        return 0;
    if (p->key_id && p->in_versions) {
        if (len == 4 && memcmp(s, "v1.0", 4) == 0)
            p->has_v10 = 1;
        if (len == 4 && memcmp(s, "v1.1", 4) == 0)
            p->has_v11 = 1;
    }
    if (ub > 0) {
        size_t gb = strlen(p->gateway_base);
        char *h = malloc(gb + len - ub + 1);
        if (h == NULL)
            return 0;
        memcpy(h, p->gateway_base, gb);
        memcpy(h + gb, s + ub, len - ub);
        rc = reply_gen_text(p->g, h, gb + len - ub) == 0;
        free(h);
    } else {
        rc = reply_gen_text(p->g, (const char *)s, len) == 0;
    }
    value_seen(p);
    return rc;
}

static int v_start_map(void *ctx)
{
    vp *p = ctx;
    value_seen(p);
    return ++p->depth <= VERSIONS_MAX_DEPTH && OK(yajl_gen_map_open(p->g));
}

static int v_map_key(void *ctx, const unsigned char *k, size_t len)
{
    vp *p = ctx;
    p->key_versions = p->depth == 1 && len == 8 && memcmp(k, "versions", 8) == 0;
    p->key_href = len == 4 && memcmp(k, "href", 4) == 0;
    p->key_id = p->in_versions && p->depth == 3 && len == 2 && memcmp(k, "id", 2) == 0;
    return OK(yajl_gen_string(p->g, k, len));
}

static int v_end_map(void *ctx)
{
    vp *p = ctx;
    p->depth--;
    return OK(yajl_gen_map_close(p->g));
}

static int v_start_array(void *ctx)
{
    vp *p = ctx;
    if (p->depth == 0)
        return 0;                         /* the document must be an object */
    if (p->key_versions)
        p->in_versions = 1;
    value_seen(p);
    return ++p->depth <= VERSIONS_MAX_DEPTH && OK(yajl_gen_array_open(p->g));
}

/* {"id": id, "status": "DEPRECATED", "links": [{"rel": "self", "href": gateway/v1/}]} */
static int gen_v1(vp *p, const char *id)
{
    yajl_gen g = p->g;
    char href[1024];
    snprintf(href, sizeof(href), "%s/v1/", p->gateway_base);
    return OK(yajl_gen_map_open(g))
        && OK(reply_gen_key(g, "id")) && OK(reply_gen_key(g, id))
        && OK(reply_gen_key(g, "status")) && OK(reply_gen_key(g, "DEPRECATED"))
        && OK(reply_gen_key(g, "links")) && OK(yajl_gen_array_open(g))
        && OK(yajl_gen_map_open(g))
        && OK(reply_gen_key(g, "rel")) && OK(reply_gen_key(g, "self"))
        && OK(reply_gen_key(g, "href")) && reply_gen_text(g, href, strlen(href)) == 0
        && OK(yajl_gen_map_close(g))
        && OK(yajl_gen_array_close(g))
        && OK(yajl_gen_map_close(g));
}

static int v_end_array(void *ctx)
{
    vp *p = ctx;
    if (p->in_versions && p->depth == 2) {
        p->in_versions = 0;
        p->versions_done = 1;
        if (!p->has_v11 && !gen_v1(p, "v1.1"))
            return 0;
        if (!p->has_v10 && !gen_v1(p, "v1.0"))
            return 0;
    }
    p->depth--;
    return OK(yajl_gen_array_close(p->g));
}

static const yajl_callbacks callbacks = {
    .yajl_null = v_null,
    .yajl_boolean = v_bool,
    .yajl_number = v_number,
    .yajl_string = v_string,
    .yajl_start_map = v_start_map,
    .yajl_map_key = v_map_key,
    .yajl_end_map = v_end_map,
    .yajl_start_array = v_start_array,
    .yajl_end_array = v_end_array,
};

char *versions_with_v1(const char *body, size_t len, const char *upstream_base,
                       const char *gateway_base, size_t *out_len)
{
    vp p = { .upstream_base = upstream_base, .gateway_base = gateway_base };
    char *out = NULL;
    yajl_handle h = NULL;

    if ((p.g = reply_gen_new()) == NULL || (h = yajl_alloc(&callbacks, NULL, &p)) == NULL)
        goto done;
    if (yajl_parse(h, (const unsigned char *)body, len) != yajl_status_ok
        || yajl_complete_parse(h) != yajl_status_ok || !p.versions_done)
        goto done;
    out = reply_gen_take(p.g, out_len);
done:
    if (h)
        yajl_free(h);
    if (p.g)
        yajl_gen_free(p.g);
    return out;
}
