/* Unit tests for route.c: routes x methods, percent-decoding, id checks. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

static mb_route r;

static void parse_ok(const char *method, const char *path)
{
    int rc = route_parse(method, path, &r);
    ck_assert_msg(rc == 0, "%s %s: rc %d (%s)", method, path, rc, r.error ? r.error : "");
}

static void parse_bad(const char *path, const char *error)
{
    int rc = route_parse("PUT", path, &r);
    ck_assert_msg(rc == -1, "%s: rc %d", path, rc);
    ck_assert_ptr_nonnull(r.error);
    ck_assert_str_eq(r.error, error);
}

START_TEST(image_member_methods)
{
    static const struct { const char *m; mb_op_kind op; } cases[] = {
        { "PUT", OP_ADD }, { "DELETE", OP_REMOVE }, { "GET", OP_METHOD_NOT_ALLOWED },
        { "HEAD", OP_METHOD_NOT_ALLOWED }, { "POST", OP_METHOD_NOT_ALLOWED },
        { "PATCH", OP_METHOD_NOT_ALLOWED }, { "put", OP_METHOD_NOT_ALLOWED },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parse_ok(cases[i].m, "/v1/images/img-1/members/tenant1");
        ck_assert_int_eq(r.kind, ROUTE_IMAGE_MEMBER);
        ck_assert_int_eq(r.op, cases[i].op);
        ck_assert_str_eq(r.image_id, "img-1");
        ck_assert_str_eq(r.member_id, "tenant1");
        ck_assert_str_eq(r.allow, "PUT, DELETE");
        ck_assert_ptr_null(r.error);
    }
}
END_TEST

START_TEST(image_members_methods)
{
    static const struct { const char *m; mb_op_kind op; } cases[] = {
        { "GET", OP_LIST }, { "PUT", OP_REPLACE }, { "DELETE", OP_METHOD_NOT_ALLOWED },
        { "POST", OP_METHOD_NOT_ALLOWED }, { "HEAD", OP_METHOD_NOT_ALLOWED },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parse_ok(cases[i].m, "/v1/images/0f6ee9c2-3b6e-4a5b-9d59-6d1c2bd6b1f2/members");
        ck_assert_int_eq(r.kind, ROUTE_IMAGE_MEMBERS);
        ck_assert_int_eq(r.op, cases[i].op);
        ck_assert_str_eq(r.image_id, "0f6ee9c2-3b6e-4a5b-9d59-6d1c2bd6b1f2");
        ck_assert_str_eq(r.member_id, "");
        ck_assert_str_eq(r.allow, "GET, PUT");
    }
}
END_TEST

START_TEST(shared_images_methods)
{
    static const struct { const char *m; mb_op_kind op; } cases[] = {
        { "GET", OP_SHARED_IMAGES }, { "PUT", OP_METHOD_NOT_ALLOWED },
        { "DELETE", OP_METHOD_NOT_ALLOWED }, { "HEAD", OP_METHOD_NOT_ALLOWED },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parse_ok(cases[i].m, "/v1/shared-images/tenant2");
        ck_assert_int_eq(r.kind, ROUTE_SHARED_IMAGES);
        ck_assert_int_eq(r.op, cases[i].op);
        ck_assert_str_eq(r.member_id, "tenant2");
        ck_assert_str_eq(r.image_id, "");
        ck_assert_str_eq(r.allow, "GET");
    }
}
END_TEST

START_TEST(healthcheck_methods)
{
    static const struct { const char *m; mb_op_kind op; } cases[] = {
        { "GET", OP_HEALTHCHECK }, { "HEAD", OP_HEALTHCHECK },
        { "POST", OP_METHOD_NOT_ALLOWED }, { "PUT", OP_METHOD_NOT_ALLOWED },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parse_ok(cases[i].m, "/healthcheck");
        ck_assert_int_eq(r.kind, ROUTE_HEALTHCHECK);
        ck_assert_int_eq(r.op, cases[i].op);
        ck_assert_str_eq(r.allow, "GET, HEAD");
    }
}
END_TEST

START_TEST(other_paths)
{
    static const char *const paths[] = {
        "/", "", "/v1", "/v1/images", "/v1/images/", "/v1/images/x", "/v1/images/x/",
        "/v1/images/x/members/", "/v1/images/x/members/y/", "/v1/images/x/members/y/z",
        "/v1/images/x/members//", "/v1/images/x/member", "/v1/images/x/Members",
        "/v1/images/x/%6Dembers", "/v1/shared-images", "/v1/shared-images/",
        "/v1/shared-images/m/", "/v1/shared-images/m/x", "/healthcheck/",
        "/healthcheckx", "/v2/images/x/members", "/v1/images/detail",
        "//v1/images/x/members", "/V1/images/x/members",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        int rc = route_parse("PUT", paths[i], &r);
        ck_assert_msg(rc == 0, "%s: rc %d", paths[i], rc);
        ck_assert_msg(r.kind == ROUTE_OTHER, "%s: kind %d", paths[i], r.kind);
        ck_assert_int_eq(r.op, OP_NONE);
        ck_assert_ptr_null(r.allow);
        ck_assert_ptr_null(r.error);
    }
}
END_TEST

START_TEST(percent_decoding_in_ids)
{
    parse_ok("PUT", "/v1/images/a%20b/members/t%41%6a%7E");
    ck_assert_int_eq(r.kind, ROUTE_IMAGE_MEMBER);
    ck_assert_str_eq(r.image_id, "a b");
    ck_assert_str_eq(r.member_id, "tAj~");

    parse_ok("GET", "/v1/shared-images/%C3%A9t%C3%A9");
    ck_assert_str_eq(r.member_id, "\xC3\xA9t\xC3\xA9");

    parse_ok("GET", "/v1/images/a+b%25/members");
    ck_assert_str_eq(r.image_id, "a+b%");  /* '+' is not a space in a path */

    /* "." and ".." are refused: percent-encoding does not keep a proxy in
     * front of the upstream from resolving them as dot-segments */
    ck_assert_int_eq(route_parse("DELETE", "/v1/images/../members/t1", &r), -1);
    ck_assert_int_eq(route_parse("DELETE", "/v1/images/img/members/.", &r), -1);
    ck_assert_int_eq(route_parse("DELETE", "/v1/images/img/members/%2E%2E", &r), -1);
    parse_ok("DELETE", "/v1/images/img/members/...");
    ck_assert_str_eq(r.member_id, "...");
    parse_ok("DELETE", "/v1/images/img/members/.a");
    ck_assert_str_eq(r.member_id, ".a");
}
END_TEST

START_TEST(bad_ids)
{
    parse_bad("/v1/images//members", "image id is empty");
    parse_bad("/v1/images//members/m", "image id is empty");
    parse_bad("/v1/images/x/members/a%2Fb", "member id holds '/'");
    parse_bad("/v1/images/x%2f/members", "image id holds '/'");
    parse_bad("/v1/images/x/members/a%00b", "member id holds a control character");
    parse_bad("/v1/images/x/members/a%0D%0Ab", "member id holds a control character");
    parse_bad("/v1/images/x/members/a%09", "member id holds a control character");
    parse_bad("/v1/images/x/members/a%7F", "member id holds a control character");
    parse_bad("/v1/shared-images/a%0a", "member id holds a control character");
    parse_bad("/v1/images/x/members/a%", "member id holds a malformed percent-escape");
    parse_bad("/v1/images/x/members/a%4", "member id holds a malformed percent-escape");
    parse_bad("/v1/images/x/members/a%zz", "member id holds a malformed percent-escape");
    parse_bad("/v1/images/%g0/members", "image id holds a malformed percent-escape");
    /* the image id is checked first */
    parse_bad("/v1/images/%2F/members/%00", "image id holds '/'");
    /* raw control characters in the path, not only decoded ones */
    parse_bad("/v1/images/a\tb/members", "image id holds a control character");
}
END_TEST

/* path with an id of n bytes, written raw or as %XX escapes */
static char *path_with_id(const char *prefix, size_t n, int escaped)
{
    size_t plen = strlen(prefix);
    char *p = malloc(plen + 3 * n + 1);
    ck_assert_ptr_nonnull(p);
    memcpy(p, prefix, plen);
    char *o = p + plen;
    for (size_t i = 0; i < n; i++) {
        if (escaped) {
            memcpy(o, "%61", 3);
            o += 3;
        } else {
            *o++ = 'a';
        }
    }
    *o = '\0';
    return p;
}

START_TEST(id_length_limits)
{
    for (int escaped = 0; escaped <= 1; escaped++) {
        char *p = path_with_id("/v1/images/x/members/", 255, escaped);
        parse_ok("PUT", p);
        ck_assert_uint_eq(strlen(r.member_id), 255);
        ck_assert_int_eq(r.member_id[254], 'a');
        free(p);

        p = path_with_id("/v1/images/x/members/", 256, escaped);
        parse_bad(p, "member id is longer than 255 bytes");
        free(p);

        p = path_with_id("/v1/shared-images/", 256, escaped);
        parse_bad(p, "member id is longer than 255 bytes");
        free(p);
    }
    char *p = path_with_id("/v1/images/", 4000, 0);
    size_t len = strlen(p);
    p = realloc(p, len + sizeof("/members"));
    ck_assert_ptr_nonnull(p);
    memcpy(p + len, "/members", sizeof("/members"));
    parse_bad(p, "image id is longer than 255 bytes");
    free(p);
}
END_TEST

START_TEST(id_valid_rules)
{
    char big[257];
    memset(big, 'x', sizeof(big));
    ck_assert_int_eq(id_valid("abc", 3), 1);
    ck_assert_int_eq(id_valid("", 0), 0);
    ck_assert_int_eq(id_valid(big, 255), 1);
    ck_assert_int_eq(id_valid(big, 256), 0);
    ck_assert_int_eq(id_valid("a/b", 3), 0);
    ck_assert_int_eq(id_valid("a\0b", 3), 0);
    ck_assert_int_eq(id_valid("a\rb", 3), 0);
    ck_assert_int_eq(id_valid("a\nb", 3), 0);
    ck_assert_int_eq(id_valid("a\x7f", 2), 0);
    ck_assert_int_eq(id_valid("a\x1f", 2), 0);
    ck_assert_int_eq(id_valid("\xC3\xA9", 2), 1);
    ck_assert_int_eq(id_valid("..", 2), 0);
    ck_assert_int_eq(id_valid(".", 1), 0);
    ck_assert_int_eq(id_valid("...", 3), 1);
    ck_assert_int_eq(id_valid("a b", 3), 1);
}
END_TEST

START_TEST(ids_must_be_utf8)
{
    /* a lone continuation byte, a truncated sequence, an overlong '/', a surrogate */
    static const char *const bad[] = {
        "/v1/images/%FF/members/t1", "/v1/images/img/members/%C3",
        "/v1/images/img/members/%C0%AF", "/v1/images/img/members/%ED%A0%80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(route_parse("PUT", bad[i], &r) == -1, "%s accepted", bad[i]);
        ck_assert_ptr_nonnull(strstr(r.error, "not valid UTF-8"));
    }
    ck_assert_int_eq(route_parse("PUT", "/v1/images/%C3%A9t%C3%A9/members/%E2%82%AC", &r), 0);
    ck_assert_str_eq(r.image_id, "\xc3\xa9t\xc3\xa9");
    ck_assert_str_eq(r.member_id, "\xe2\x82\xac");
    ck_assert_int_eq(id_valid("\xff", 1), 0);
    /* a raw '#' would be a fragment; "%23" is an id holding '#' */
    ck_assert_int_eq(route_parse("PUT", "/v1/images/img/members/t5#frag", &r), -1);
    ck_assert_ptr_nonnull(strstr(r.error, "raw '#'"));
    ck_assert_int_eq(route_parse("PUT", "/v1/images/img/members/t5%23frag", &r), 0);
    ck_assert_str_eq(r.member_id, "t5#frag");
    ck_assert_int_eq(id_valid("\xc3\xa9", 2), 1);
}
END_TEST

START_TEST(pct_decode_rules)
{
    char out[8];
    ck_assert_int_eq(pct_decode("a%41b", 5, out, sizeof(out)), 3);
    ck_assert_str_eq(out, "aAb");
    ck_assert_int_eq(pct_decode("%2f%2F", 6, out, sizeof(out)), 2);
    ck_assert_str_eq(out, "//");
    ck_assert_int_eq(pct_decode("", 0, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(pct_decode("%00x", 4, out, sizeof(out)), 2);
    ck_assert_int_eq(out[0], '\0');
    ck_assert_int_eq(out[1], 'x');
    ck_assert_int_eq(pct_decode("%", 1, out, sizeof(out)), -1);
    ck_assert_int_eq(pct_decode("%4", 2, out, sizeof(out)), -1);
    ck_assert_int_eq(pct_decode("%4g", 3, out, sizeof(out)), -1);
    ck_assert_int_eq(pct_decode("%%41", 4, out, sizeof(out)), -1);
    /* len bounds the input: the escape is cut short */
    ck_assert_int_eq(pct_decode("%41", 2, out, sizeof(out)), -1);
    /* capacity counts the NUL */
    ck_assert_int_eq(pct_decode("1234567", 7, out, sizeof(out)), 7);
    ck_assert_str_eq(out, "1234567");
    ck_assert_int_eq(pct_decode("12345678", 8, out, sizeof(out)), -1);
    ck_assert_int_eq(pct_decode("a", 1, out, 0), -1);
}
END_TEST

static Suite *route_suite(void)
{
    Suite *s = suite_create("route");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, image_member_methods);
    tcase_add_test(tc, image_members_methods);
    tcase_add_test(tc, shared_images_methods);
    tcase_add_test(tc, healthcheck_methods);
    tcase_add_test(tc, other_paths);
    tcase_add_test(tc, percent_decoding_in_ids);
    tcase_add_test(tc, bad_ids);
    tcase_add_test(tc, id_length_limits);
    tcase_add_test(tc, id_valid_rules);
    tcase_add_test(tc, pct_decode_rules);
    tcase_add_test(tc, ids_must_be_utf8);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(route_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
