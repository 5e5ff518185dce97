/* fwd_headers: the client's end-to-end headers for an upstream call, and
 * the X-Openstack-Request-Id (SPEC section 3). */
#include "fwd_headers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdint.h>
#include <sys/random.h>
#include <sys/types.h>
#include <uuid/uuid.h>

/* Never copied: hop-by-hop (RFC 9110 7.6.1) or set by the gateway.
 * Accept-Encoding too: the gateway itself reads these replies (member and
 * image lists), so it must get them uncompressed. */
#define LIT(s) { s, sizeof(s) - 1 }
static const struct { const char *s; size_t n; } dropped[] = {
    LIT("Connection"), LIT("Keep-Alive"), LIT("TE"), LIT("Trailer"), LIT("Transfer-Encoding"),
    LIT("Upgrade"), LIT("Host"), LIT("Content-Length"), LIT("Content-Type"), LIT("Expect"),
    LIT("X-Openstack-Request-Id"), LIT("Accept-Encoding"),
};

static int ishex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

int reqid_valid(const char *s, size_t len)
{
    static const char shape[] = "req-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

    if (s == NULL || len != MB_REQID_LEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (shape[i] == 'x' ? !ishex(s[i]) : s[i] != shape[i])
            return 0;
    }
    return 1;
}

/* Request ids need to be unique, not secret: a per-thread xoshiro256**
 * generator seeded once from the kernel (libuuid's uuid_generate_random
 * opens and seeds its own generator on every call, with three system calls). */
static _Thread_local uint64_t rng[4];   /* all zero: not seeded yet */

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void)
{
    uint64_t r = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return r;
}

static void rng_seed(void)
{
    uuid_t u[2];
    if (getrandom(rng, sizeof(rng), 0) != (ssize_t)sizeof(rng)) {
        uuid_generate(u[0]);            /* libuuid's own sources */
        uuid_generate(u[1]);
        memcpy(rng, u, sizeof(rng));
    }
    rng[0] |= 1;                        /* never all zero, once seeded */
}

void reqid_new(char out[MB_REQID_LEN + 1])
{
    uuid_t u;
    uint64_t a, b;

    if (rng[0] == 0)
        rng_seed();
    a = rng_next();
    b = rng_next();
    memcpy(u, &a, 8);
    memcpy(u + 8, &b, 8);
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);   /* version 4 (random) */
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
    memcpy(out, "req-", 4);
    uuid_unparse_lower(u, out + 4);  /* 36 chars and the NUL */
}

static int name_eq(const char *a, size_t alen, const char *lit)
{
    return alen == strlen(lit) && strncasecmp(a, lit, alen) == 0;
}

int fwd_header_is_dropped(const char *name, size_t nlen)
{
    if (nlen >= 6 && strncasecmp(name, "Proxy-", 6) == 0)
        return 1;
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
        if (nlen == dropped[i].n && strncasecmp(name, dropped[i].s, nlen) == 0)
            return 1;
    return 0;
}

/* 1 when the name is listed in a Connection header of the client
 * ("Connection: close, X-Foo" makes X-Foo hop-by-hop). */
static int named_by_connection(const mb_header *h, size_t n, const char *name, size_t nlen)
{
    for (size_t i = 0; i < n; i++) {
        if (!name_eq(h[i].name, h[i].nlen, "Connection"))
            continue;
        const char *p = h[i].value, *end = h[i].value + h[i].vlen;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *tok = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            if (p > tok && (size_t)(p - tok) == nlen && strncasecmp(tok, name, nlen) == 0)
                return 1;
        }
    }
    return 0;
}

/* A header that can be put on a request line as it is. */
static int header_sendable(const mb_header *h)
{
    if (h->name == NULL || h->nlen == 0 || (h->vlen > 0 && h->value == NULL))
        return 0;
    for (size_t i = 0; i < h->nlen; i++) {
        unsigned char ch = (unsigned char)h->name[i];
        if (ch <= ' ' || ch >= 0x7f || ch == ':' || ch == ';')
            return 0;
    }
    /* memchr is vectorised: a Keystone token is a few hundred bytes */
    return h->vlen == 0 || (memchr(h->value, '\r', h->vlen) == NULL &&
                            memchr(h->value, '\n', h->vlen) == NULL &&
                            memchr(h->value, '\0', h->vlen) == NULL);
}

/* Whether the client sent a Connection header at all (most send none, or
 * only "keep-alive"): then no header needs looking up in it. */
static int has_connection(const mb_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (h[i].nlen == 10 && strncasecmp(h[i].name, "Connection", 10) == 0)
            return 1;
    return 0;
}

static int header_copied(const mb_header *h, size_t n, size_t i, int conn)
{
    return header_sendable(&h[i]) && !fwd_header_is_dropped(h[i].name, h[i].nlen)
        && !(conn && named_by_connection(h, n, h[i].name, h[i].nlen));
}

/* Appends one line to the block: lines[k] points at text written at *pos. */
static void put_line(char **lines, size_t *k, char **pos, const char *name, size_t nlen,
                     const char *value, size_t vlen)
{
    char *p = *pos;

    lines[(*k)++] = p;
    memcpy(p, name, nlen);
    p += nlen;
    *p++ = ':';
    if (vlen > 0) {
        *p++ = ' ';
        memcpy(p, value, vlen);
        p += vlen;
    }
    *p++ = '\0';
    *pos = p;
}

/* The lines every block ends with: Content-Type (unless NULL), the NULL.
 * Room for them is counted by END_BYTES. */
#define END_BYTES(content_type) \
    (sizeof("Content-Type") + 2 + ((content_type) ? strlen(content_type) : 0) + 1)

static char **end_block(char **lines, size_t k, char *pos, const char *content_type)
{
    static const char ctype[] = "Content-Type";
    if (content_type != NULL)
        put_line(lines, &k, &pos, ctype, sizeof(ctype) - 1, content_type, strlen(content_type));
    lines[k] = NULL;
    return lines;
}

char **fwd_headers_build(const mb_header *h, size_t n, const char *request_id,
                         const char *content_type)
{
    static const char accept[] = "Accept", accept_v[] = "application/json";
    static const char reqid[] = "X-Openstack-Request-Id";
    size_t nlines = 0, bytes = 0, k = 0;
    int have_accept = 0, conn = has_connection(h, n);
    unsigned char keep[128];   /* the decision per header, when there are few */

    if (request_id == NULL)
        request_id = "";
    for (size_t i = 0; i < n; i++) {
        int copied = header_copied(h, n, i, conn);
        if (i < sizeof(keep))
            keep[i] = (unsigned char)copied;
        if (!copied)
            continue;
        nlines++;
        bytes += h[i].nlen + 2 + h[i].vlen + 1;
        if (name_eq(h[i].name, h[i].nlen, accept))
            have_accept = 1;
    }
    nlines += 3;  /* request id, Accept, Content-Type */
    bytes += sizeof(reqid) + 2 + strlen(request_id) + 1
           + sizeof(accept) + 2 + sizeof(accept_v) + 1
           + END_BYTES(content_type);

    char **lines = malloc((nlines + 1) * sizeof(char *) + bytes);
    if (lines == NULL)
        return NULL;
    char *pos = (char *)(lines + nlines + 1);

    for (size_t i = 0; i < n; i++)
        if (i < sizeof(keep) ? keep[i] : header_copied(h, n, i, conn))
            put_line(lines, &k, &pos, h[i].name, h[i].nlen, h[i].value, h[i].vlen);
    put_line(lines, &k, &pos, reqid, sizeof(reqid) - 1, request_id, strlen(request_id));
    if (!have_accept)
        put_line(lines, &k, &pos, accept, sizeof(accept) - 1, accept_v, sizeof(accept_v) - 1);
    return end_block(lines, k, pos, content_type);
}

char **fwd_headers_service(const char *token, const char *request_id, const char *content_type)
{
    static const char tok[] = "X-Auth-Token", reqid[] = "X-Openstack-Request-Id";
    static const char accept[] = "Accept", accept_v[] = "application/json";
    size_t k = 0;

    if (request_id == NULL)
        request_id = "";
    size_t bytes = sizeof(tok) + 2 + strlen(token) + 1
                 + sizeof(reqid) + 2 + strlen(request_id) + 1
                 + sizeof(accept) + 2 + sizeof(accept_v) + 1
                 + END_BYTES(content_type);
    char **lines = malloc(5 * sizeof(char *) + bytes);
    if (lines == NULL)
        return NULL;
    char *pos = (char *)(lines + 5);
    put_line(lines, &k, &pos, tok, sizeof(tok) - 1, token, strlen(token));
    put_line(lines, &k, &pos, reqid, sizeof(reqid) - 1, request_id, strlen(request_id));
    put_line(lines, &k, &pos, accept, sizeof(accept) - 1, accept_v, sizeof(accept_v) - 1);
    return end_block(lines, k, pos, content_type);
}

/* ---- the proxy: every other request, verbatim ---------------------------- */

static const char *const hop_by_hop[] = {
    "Connection", "Keep-Alive", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
};

int fwd_is_hop_by_hop(const char *name, size_t nlen)
{
    if (nlen >= 6 && strncasecmp(name, "Proxy-", 6) == 0)
        return 1;
    for (size_t i = 0; i < sizeof(hop_by_hop) / sizeof(hop_by_hop[0]); i++)
        if (name_eq(name, nlen, hop_by_hop[i]))
            return 1;
    return 0;
}

/* Not passed by the proxy: hop-by-hop, the framing (h1_client sets it), Host
 * (the upstream's), Expect (answered here), and what the proxy sets. */
static int proxy_drops(const mb_header *h, size_t n, size_t i)
{
    static const char *const set_here[] = {
        "Host", "Content-Length", "Expect", "X-Openstack-Request-Id",
        "X-Forwarded-For", "X-Forwarded-Proto",
    };
    if (!header_sendable(&h[i]) || fwd_is_hop_by_hop(h[i].name, h[i].nlen)
        || named_by_connection(h, n, h[i].name, h[i].nlen))
        return 1;
    for (size_t k = 0; k < sizeof(set_here) / sizeof(set_here[0]); k++)
        if (name_eq(h[i].name, h[i].nlen, set_here[k]))
            return 1;
    return 0;
}

char **fwd_headers_proxy(const mb_header *h, size_t n, const char *request_id,
                         const char *client_ip, const char *proto)
{
    static const char reqid[] = "X-Openstack-Request-Id", xff[] = "X-Forwarded-For";
    static const char xfp[] = "X-Forwarded-Proto";
    size_t nlines = 3, bytes = 0, k = 0, xff_len = 0;

    for (size_t i = 0; i < n; i++) {
        if (name_eq(h[i].name, h[i].nlen, xff) && header_sendable(&h[i]))
            xff_len += h[i].vlen + 2;
        if (proxy_drops(h, n, i))
            continue;
        nlines++;
        bytes += h[i].nlen + 2 + h[i].vlen + 1;
    }
    bytes += sizeof(reqid) + 2 + strlen(request_id) + 1
           + sizeof(xff) + 2 + xff_len + strlen(client_ip) + 1
           + sizeof(xfp) + 2 + strlen(proto) + 1;
    char **lines = malloc((nlines + 1) * sizeof(char *) + bytes);
    if (lines == NULL)
        return NULL;
    char *pos = (char *)(lines + nlines + 1);
    for (size_t i = 0; i < n; i++)
        if (!proxy_drops(h, n, i))
            put_line(lines, &k, &pos, h[i].name, h[i].nlen, h[i].value, h[i].vlen);
    put_line(lines, &k, &pos, reqid, sizeof(reqid) - 1, request_id, strlen(request_id));
    /* X-Forwarded-For: what the client sent (other proxies), then the client */
    lines[k++] = pos;
    pos += sprintf(pos, "%s: ", xff);
    for (size_t i = 0; i < n; i++) {
        if (name_eq(h[i].name, h[i].nlen, xff) && header_sendable(&h[i]) && h[i].vlen > 0) {
            memcpy(pos, h[i].value, h[i].vlen);
            pos += h[i].vlen;
            memcpy(pos, ", ", 2);
            pos += 2;
        }
    }
    pos += sprintf(pos, "%s", client_ip) + 1;
    put_line(lines, &k, &pos, xfp, sizeof(xfp) - 1, proto, strlen(proto));
    lines[k] = NULL;
    return lines;
}

int fwd_response_line_kept(const char *line, const char *const *lines, size_t n)
{
    const char *colon = strchr(line, ':');
    if (colon == NULL || colon == line)
        return 0;
    size_t nlen = (size_t)(colon - line);
    if (fwd_is_hop_by_hop(line, nlen) || name_eq(line, nlen, "Content-Length"))
        return 0;
    /* named by the response's own Connection header */
    for (size_t i = 0; i < n; i++) {
        if (strncasecmp(lines[i], "Connection:", 11) != 0)
            continue;
        mb_header c = { .name = "Connection", .nlen = 10, .value = lines[i] + 11,
                        .vlen = strlen(lines[i] + 11) };
        if (named_by_connection(&c, 1, line, nlen))
            return 0;
    }
    return 1;
}
