/* Fuzz target: the Keystone token JSON code (src/keystone_json.c).
 *
 * Input: any bytes. The same bytes go to:
 *   - keystone_parse_token (the reply to POST /v3/auth/tokens): on success
 *     the lifetime is finite and positive;
 *   - keystone_parse_time: on success the time lies in 1970..9999;
 *   - keystone_tokens_url (as a string, up to the first NUL): the base is a
 *     prefix of auth_url and the path one of the two documented ones;
 *   - keystone_token_usable: agrees with its contract (1..8192 visible
 *     ASCII bytes);
 *   - keystone_auth_body, with the input cut at NULs into the five values:
 *     when all are valid UTF-8 the body is JSON that yajl reads back to
 *     exactly those five values, in order (escaping loses nothing);
 *     otherwise it is refused.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "fuzz_split.h"
#include "keystone_json.h"
#include "utf8.h"

static void fuzz_token(const char *buf, size_t len)
{
    double lifetime = -1;
    int rc = keystone_parse_token(buf, len, &lifetime);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc == 0)
        FUZZ_CHECK(isfinite(lifetime) && lifetime > 0);
}

static void fuzz_time(const char *buf, size_t len)
{
    double t = -1;
    if (keystone_parse_time(buf, len, &t) == 0)
        FUZZ_CHECK(t >= 0 && t < 253402300800.0);   /* 10000-01-01T00:00:00Z */
}

static void fuzz_url(const char *s)
{
    const char *path = NULL;
    char *base = keystone_tokens_url(s, &path);
    if (base == NULL) {
        FUZZ_CHECK(strstr(s, "://") == NULL || strncmp(s, "://", 3) == 0);
        return;
    }
    FUZZ_CHECK(strncmp(s, base, strlen(base)) == 0);
    FUZZ_CHECK(strstr(base, "://") != NULL);
    FUZZ_CHECK(path != NULL && (strcmp(path, "/auth/tokens") == 0
                                || strcmp(path, "/v3/auth/tokens") == 0));
    free(base);
}

static void fuzz_token_usable(const char *s)
{
    size_t n = strlen(s);
    int want = n >= 1 && n <= 8192;
    for (size_t i = 0; i < n && want; i++)
        want = (unsigned char)s[i] >= 0x21 && (unsigned char)s[i] <= 0x7e;
    FUZZ_CHECK(keystone_token_usable(s) == want);
}

/* The string values of a JSON document, in order (keys not included). */
typedef struct {
    const char *want[5];
    size_t      n;        /* values seen */
    int         ok;       /* so far they match `want`, after "password" */
} values_seen;

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    values_seen *v = ctx;
    /* the first string value is the method name, "password" */
    const char *want = v->n == 0 ? "password" : v->n <= 5 ? v->want[v->n - 1] : NULL;
    if (want == NULL || strlen(want) != len || memcmp(want, s, len) != 0)
        v->ok = 0;
    v->n++;
    return 1;
}

static const yajl_callbacks value_callbacks = { .yajl_string = on_string };

static void fuzz_auth_body(const uint8_t *data, size_t size)
{
    /* the five values, cut at NULs (missing ones are "") */
    char *copy = malloc(size + 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, size);
    copy[size] = '\0';
    values_seen v = { .ok = 1 };
    const char *p = copy, *end = copy + size;
    int all_utf8 = 1;
    for (size_t i = 0; i < 5; i++) {
        v.want[i] = p;
        all_utf8 &= utf8_valid((const unsigned char *)p, strlen(p));
        p += strlen(p);
        if (p < end)
            p++;                  /* past the NUL that ended this value */
    }

    size_t len = 0;
    char *body = keystone_auth_body(v.want[0], v.want[1], v.want[2], v.want[3], v.want[4], &len);
    FUZZ_CHECK((body != NULL) == all_utf8);
    if (body != NULL) {
        FUZZ_CHECK(strlen(body) == len);
        yajl_handle h = yajl_alloc(&value_callbacks, NULL, &v);
        FUZZ_CHECK(h != NULL);
        FUZZ_CHECK(yajl_parse(h, (const unsigned char *)body, len) == yajl_status_ok);
        FUZZ_CHECK(yajl_complete_parse(h) == yajl_status_ok);
        yajl_free(h);
        FUZZ_CHECK(v.ok && v.n == 6);
        free(body);
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exact-size copies: ASan sees any read past the end */
    char *buf = malloc(size ? size : 1);
    char *str = malloc(size + 1);
    FUZZ_CHECK(buf != NULL && str != NULL);
    memcpy(buf, data, size);
    memcpy(str, data, size);
    str[size] = '\0';

    fuzz_token(buf, size);
    fuzz_time(buf, size);
    fuzz_url(str);
    fuzz_token_usable(str);
    fuzz_auth_body(data, size);
    free(buf);
    free(str);
    return 0;
}
