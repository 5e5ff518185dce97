/* Fuzz target: the parsers of the upstream's (Glance v2) replies
 * (src/v2_parse.c): member lists, image lists with "next", a top-level
 * string, and the error-message reader (JSON or HTML/text).
 *
 * Input: [size byte] [body...]. The size byte gives the top-string buffer
 * (1 + low 5 bits: 1..32 bytes) and the error-message limit
 * (1 + the byte: 1..256 bytes). Every parser runs on the same body.
 * Invariants:
 *   - list ids are non-empty and hold no NUL; the members whose status
 *     matched are a subset of all members; a failed parse leaves no "next";
 *   - v2_parse_member_list and ..._status(NULL) give the same ids;
 *   - the top string fits its buffer (out[] is "" on failure);
 *   - an error message is at most `max` bytes of valid UTF-8, with no
 *     control character, no leading, trailing or doubled space.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_split.h"
#include "strset.h"
#include "utf8.h"
#include "v2_parse.h"

static void check_ids(const mb_strset *s)
{
    for (size_t i = 0; i < strset_count(s); i++)
        FUZZ_CHECK(strset_get(s, i)[0] != '\0');
}

static void check_subset(const mb_strset *sub, const mb_strset *all)
{
    for (size_t i = 0; i < strset_count(sub); i++) {
        const char *id = strset_get(sub, i);
        FUZZ_CHECK(strset_contains(all, id, strlen(id)));
    }
}

static void check_same(const mb_strset *a, const mb_strset *b)
{
    FUZZ_CHECK(strset_count(a) == strset_count(b));
    for (size_t i = 0; i < strset_count(a); i++)
        FUZZ_CHECK(strcmp(strset_get(a, i), strset_get(b, i)) == 0);
}

static void fuzz_member_lists(const char *buf, size_t len)
{
    mb_strset *plain = strset_new(), *all = strset_new(), *accepted = strset_new();
    FUZZ_CHECK(plain != NULL && all != NULL && accepted != NULL);
    int rc_plain = v2_parse_member_list(buf, len, plain);
    int rc = v2_parse_member_list_status(buf, len, all, "accepted", accepted);
    FUZZ_CHECK(rc_plain == 0 || rc_plain == -1);
    FUZZ_CHECK(rc == rc_plain);
    check_ids(all);
    check_subset(accepted, all);
    check_same(plain, all);
    strset_free(plain);
    strset_free(all);
    strset_free(accepted);
}

static void fuzz_image_list(const char *buf, size_t len)
{
    mb_strset *ids = strset_new();
    FUZZ_CHECK(ids != NULL);
    char *next = (char *)"unset";
    int rc = v2_parse_image_list(buf, len, ids, &next);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0)
        FUZZ_CHECK(next == NULL);
    check_ids(ids);
    free(next);
    strset_free(ids);
}

static void fuzz_top_string(const char *buf, size_t len, size_t outlen)
{
    char out[32 + 8];
    memset(out, 0x5a, sizeof(out));
    int rc = v2_parse_top_string(buf, len, "status", out, outlen);
    for (size_t i = outlen; i < sizeof(out); i++)
        FUZZ_CHECK(out[i] == 0x5a);
    if (rc == 0)
        FUZZ_CHECK(memchr(out, '\0', outlen) != NULL);
    else
        FUZZ_CHECK(rc == -1 && out[0] == '\0');
}

static void fuzz_error_message(const char *buf, size_t len, size_t max)
{
    char *m = v2_error_message(buf, len, max);
    if (m == NULL)
        return;
    size_t n = strlen(m);
    FUZZ_CHECK(n > 0 && n <= max);
    FUZZ_CHECK(utf8_valid((const unsigned char *)m, n));
    FUZZ_CHECK(m[0] != ' ' && m[n - 1] != ' ');
    FUZZ_CHECK(strstr(m, "  ") == NULL);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)m[i] >= 0x20 && m[i] != 0x7f);
    free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t outlen = (size_t)(data[0] & 31) + 1;
    size_t max = (size_t)data[0] + 1;
    /* a copy of exactly the body: ASan sees any read past its end */
    size_t len = size - 1;
    char *buf = malloc(len ? len : 1);
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, data + 1, len);

    fuzz_member_lists(buf, len);
    fuzz_image_list(buf, len);
    fuzz_top_string(buf, len, outlen);
    fuzz_error_message(buf, len, max);
    free(buf);
    return 0;
}
