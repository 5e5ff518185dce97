/* Fuzz target: the route and id parser (src/route.c).
 *
 * Input: [method byte] [path...]. The method byte picks one of GET, PUT,
 * DELETE, HEAD, POST, PATCH, "" and "get" (low 3 bits); bits 3-7 are the
 * destination capacity (1..32 bytes) of an extra pct_decode of the path.
 * The path is passed NUL-terminated (an embedded NUL ends it, as in C).
 * Invariants:
 *   - a membership route that parses has an Allow header and an op; every
 *     id it took is 1..255 bytes, valid (id_valid), holds no '/', CR, LF,
 *     NUL or other control character; the op is one of Allow's methods, or
 *     405 for a method Allow does not name;
 *   - an id that parsed comes back the same when it is sent again fully
 *     percent-encoded (decoding and encoding agree);
 *   - a refused route names why; any other path is ROUTE_OTHER / OP_NONE;
 *   - pct_decode never writes past its capacity and NUL-terminates.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_split.h"
#include "route.h"

static const char *const methods[8] = { "GET", "PUT", "DELETE", "HEAD", "POST", "PATCH", "", "get" };

static void check_id(const char *id)
{
    size_t len = strlen(id);
    FUZZ_CHECK(len >= 1 && len <= MB_ID_MAX);
    FUZZ_CHECK(id_valid(id, len));
    FUZZ_CHECK(!id_is_dot_segment(id, len));
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        FUZZ_CHECK(c >= 0x20 && c != 0x7f && c != '/');
    }
}

/* 1 when the comma-separated Allow value names method exactly. */
static int allow_names(const char *allow, const char *method)
{
    size_t mlen = strlen(method);
    for (const char *p = allow; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (n == mlen && memcmp(p, method, n) == 0)
            return 1;
        p += n;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return 0;
}

/* "%XX" for every byte of id, between prefix and suffix; parsed again with
 * the same method, it must give back the same id. */
static void check_round_trip(const char *method, const char *prefix, const char *id,
                             const char *suffix, int member)
{
    char path[64 + 3 * MB_ID_MAX];
    size_t o = (size_t)snprintf(path, sizeof(path), "%s", prefix);
    for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++)
        o += (size_t)snprintf(path + o, sizeof(path) - o, "%%%02X", *p);
    snprintf(path + o, sizeof(path) - o, "%s", suffix);

    mb_route again;
    FUZZ_CHECK(route_parse(method, path, &again) == 0);
    FUZZ_CHECK(strcmp(member ? again.member_id : again.image_id, id) == 0);
}

static void check_route(const char *method, const char *path, int rc, const mb_route *r)
{
    if (rc != 0) {
        FUZZ_CHECK(rc == -1);
        FUZZ_CHECK(r->error != NULL && r->kind != ROUTE_OTHER);
        return;
    }
    FUZZ_CHECK(r->error == NULL);
    if (r->kind == ROUTE_OTHER) {
        FUZZ_CHECK(r->op == OP_NONE && r->allow == NULL);
        FUZZ_CHECK(r->image_id[0] == '\0' && r->member_id[0] == '\0');
        return;
    }
    FUZZ_CHECK(r->allow != NULL && r->op != OP_NONE);
    FUZZ_CHECK((r->op == OP_METHOD_NOT_ALLOWED) == !allow_names(r->allow, method));
    FUZZ_CHECK(strncmp(path, "/v1/", 4) == 0 || strcmp(path, "/healthcheck") == 0);

    int has_image = r->kind == ROUTE_IMAGE_MEMBERS || r->kind == ROUTE_IMAGE_MEMBER;
    int has_member = r->kind == ROUTE_IMAGE_MEMBER || r->kind == ROUTE_SHARED_IMAGES;
    if (has_image) {
        check_id(r->image_id);
        check_round_trip(method, "/v1/images/", r->image_id, "/members", 0);
    } else {
        FUZZ_CHECK(r->image_id[0] == '\0');
    }
    if (has_member) {
        check_id(r->member_id);
        check_round_trip(method, "/v1/shared-images/", r->member_id, "", 1);
    } else {
        FUZZ_CHECK(r->member_id[0] == '\0');
    }
}

/* pct_decode into a small buffer with a guard after it. */
static void check_pct_decode(const char *src, size_t len, size_t cap)
{
    char buf[33 + 8];
    memset(buf, 0x5a, sizeof(buf));
    long n = pct_decode(src, len, buf, cap);
    for (size_t i = cap; i < sizeof(buf); i++)
        FUZZ_CHECK(buf[i] == 0x5a);
    if (n >= 0) {
        FUZZ_CHECK((size_t)n < cap && (size_t)n <= len);
        FUZZ_CHECK(buf[n] == '\0');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *method = methods[data[0] & 7];
    size_t cap = (size_t)(data[0] >> 3) + 1;
    char *path = malloc(size);
    FUZZ_CHECK(path != NULL);
    memcpy(path, data + 1, size - 1);
    path[size - 1] = '\0';

    mb_route r;
    int rc = route_parse(method, path, &r);
    check_route(method, path, rc, &r);
    check_pct_decode(path, strlen(path), cap);
    /* id_valid on the raw bytes (NULs included) agrees with its contract */
    if (id_valid((const char *)data + 1, size - 1))
        FUZZ_CHECK(memchr(data + 1, '\0', size - 1) == NULL && size - 1 <= MB_ID_MAX);

    free(path);
    return 0;
}
