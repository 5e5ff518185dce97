/* Fuzz target: the incremental v1 membership body parser (src/v1_body.c).
 *
 * Input: [plan byte (fuzz_split.h)] [mode byte] [body...]. The mode byte:
 *   bit 0: 0 = ADD (PUT .../members/{m}), 1 = REPLACE (PUT .../members);
 *   bit 1: a path member ("pm"; REPLACE must ignore it);
 *   bits 2-7: max_members (0..63).
 * The body is parsed whole and again in the pieces the plan gives.
 * Invariants: both runs agree (result, status, message, members, can_share);
 * the member count never exceeds max_members; every member is a valid id
 * (1..255 bytes, no '/', control character, CR, LF or NUL, valid UTF-8)
 * and the path member, when given, comes first;
 * an error has a status and a message, success has neither. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_split.h"
#include "route.h"
#include "strset.h"
#include "v1_body.h"

/* One parse: v1_body_new, the feeds, v1_body_finish. Returns the body
 * (the caller frees it) with *rc the result of the last call made. */
static v1_body *parse(v1_body_kind kind, size_t max, const char *pm,
                      const uint8_t *d, size_t len, fuzz_split *split, int *rc)
{
    v1_body *b = v1_body_new(kind, max, pm);
    FUZZ_CHECK(b != NULL);
    *rc = 0;
    size_t pos = 0;
    while (pos < len && *rc == 0) {
        size_t n = split != NULL ? fuzz_split_next(split, len - pos) : len - pos;
        *rc = v1_body_feed(b, d + pos, n);
        pos += n;
    }
    if (*rc == 0)
        *rc = v1_body_finish(b);
    return b;
}

/* A member id as route_parse would have let it through. */
static void check_id(const char *id)
{
    size_t len = strlen(id);
    FUZZ_CHECK(len >= 1 && len <= MB_ID_MAX);
    FUZZ_CHECK(id_valid(id, len));
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        FUZZ_CHECK(c >= 0x20 && c != 0x7f && c != '/');
    }
}

static void check_one(const v1_body *b, int rc, size_t max, const char *pm)
{
    int status = v1_body_status(b);
    const char *err = v1_body_error(b);
    if (rc == 0) {
        FUZZ_CHECK(status == 0 && err == NULL);
    } else {
        FUZZ_CHECK(status == 400 || status == 413 || status == 500);
        FUZZ_CHECK(err != NULL && err[0] != '\0');
    }
    const mb_strset *m = v1_body_members(b);
    FUZZ_CHECK(strset_count(m) <= max);
    if (pm != NULL && strset_count(m) > 0)
        FUZZ_CHECK(strcmp(strset_get(m, 0), pm) == 0);   /* the path member comes first */
    for (size_t i = 0; i < strset_count(m); i++)
        check_id(strset_get(m, i));
}

static void check_same(const v1_body *a, int rc_a, const v1_body *b, int rc_b)
{
    FUZZ_CHECK(rc_a == rc_b);
    FUZZ_CHECK(v1_body_status(a) == v1_body_status(b));
    const char *ea = v1_body_error(a), *eb = v1_body_error(b);
    FUZZ_CHECK((ea == NULL) == (eb == NULL));
    FUZZ_CHECK(ea == NULL || strcmp(ea, eb) == 0);
    FUZZ_CHECK(v1_body_can_share_true(a) == v1_body_can_share_true(b));
    const mb_strset *ma = v1_body_members(a), *mb = v1_body_members(b);
    FUZZ_CHECK(strset_count(ma) == strset_count(mb));
    for (size_t i = 0; i < strset_count(ma); i++)
        FUZZ_CHECK(strcmp(strset_get(ma, i), strset_get(mb, i)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    fuzz_split split;
    fuzz_split_init(&split, data[0]);
    uint8_t mode = data[1];
    v1_body_kind kind = (mode & 1) ? V1_BODY_REPLACE : V1_BODY_ADD;
    const char *pm = (mode & 2) ? "pm" : NULL;
    size_t max = mode >> 2;
    const uint8_t *body = data + 2;
    size_t len = size - 2;

    int rc_whole, rc_split;
    v1_body *whole = parse(kind, max, pm, body, len, NULL, &rc_whole);
    v1_body *pieces = parse(kind, max, pm, body, len, &split, &rc_split);
    /* REPLACE ignores a path member: none comes first there */
    const char *first = kind == V1_BODY_ADD ? pm : NULL;
    check_one(whole, rc_whole, max, first);
    check_one(pieces, rc_split, max, first);
    check_same(whole, rc_whole, pieces, rc_split);
    v1_body_free(whole);
    v1_body_free(pieces);
    return 0;
}
