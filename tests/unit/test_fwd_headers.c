/* Unit tests for fwd_headers.c: request ids and the upstream header list. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "fwd_headers.h"

#define H(n, v) { n, sizeof(n) - 1, v, sizeof(v) - 1 }
#define N(a) (sizeof(a) / sizeof(a[0]))
#define RID "req-0f6ee9c2-3b6e-4a5b-9d59-6d1c2bd6b1f2"

static size_t count(char **lines)
{
    size_t n = 0;
    while (lines[n] != NULL)
        n++;
    return n;
}

static int has_line(char **lines, const char *want)
{
    for (size_t i = 0; lines[i] != NULL; i++)
        if (strcmp(lines[i], want) == 0)
            return 1;
    return 0;
}

START_TEST(reqid_valid_forms)
{
    ck_assert_int_eq(reqid_valid(RID, strlen(RID)), 1);
    ck_assert_int_eq(reqid_valid("req-0F6EE9C2-3B6E-4A5B-9D59-6D1C2BD6B1F2", 40), 1);
    ck_assert_int_eq(reqid_valid(RID, strlen(RID) - 1), 0);
    ck_assert_int_eq(reqid_valid(NULL, 0), 0);
    ck_assert_int_eq(reqid_valid("", 0), 0);
    ck_assert_int_eq(reqid_valid("REQ-0f6ee9c2-3b6e-4a5b-9d59-6d1c2bd6b1f2", 40), 0);
    ck_assert_int_eq(reqid_valid("req_0f6ee9c2-3b6e-4a5b-9d59-6d1c2bd6b1f2", 40), 0);
    ck_assert_int_eq(reqid_valid("req-0f6ee9c2-3b6e-4a5b-9d59-6d1c2bd6b1fg", 40), 0);
    ck_assert_int_eq(reqid_valid("req-0f6ee9c2x3b6e-4a5b-9d59-6d1c2bd6b1f2", 40), 0);
    ck_assert_int_eq(reqid_valid("req-0f6ee9c23b6e-4a5b-9d59-6d1c2bd6b1f2-", 40), 0);
    ck_assert_int_eq(reqid_valid("0f6ee9c2-3b6e-4a5b-9d59-6d1c2bd6b1f2", 36), 0);
    ck_assert_int_eq(reqid_valid("req-0f6ee9c2-3b6e-4a5b-9d59-6d1c2bd6b1f2\r\n", 42), 0);
    /* len rules, not NUL: a NUL inside is not a hex digit */
    ck_assert_int_eq(reqid_valid("req-0f6ee9c2-3b6e-4a5b-9d59-6d1c2bd6b1f\0", 40), 0);
}
END_TEST

START_TEST(reqid_new_is_valid_and_fresh)
{
    char a[MB_REQID_LEN + 1], b[MB_REQID_LEN + 1];
    reqid_new(a);
    reqid_new(b);
    ck_assert_uint_eq(strlen(a), MB_REQID_LEN);
    ck_assert_int_eq(reqid_valid(a, strlen(a)), 1);
    ck_assert_int_eq(reqid_valid(b, strlen(b)), 1);
    ck_assert_str_ne(a, b);
    ck_assert_int_eq(strncmp(a, "req-", 4), 0);
    ck_assert_int_eq(a[4 + 14], '4');  /* UUID version 4 */
    ck_assert_msg(strchr("89ab", a[4 + 19]) != NULL, "variant %c", a[4 + 19]);
    for (size_t i = 4; i < MB_REQID_LEN; i++)
        ck_assert_msg(a[i] == '-' || (a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f'),
                      "not lower-case: %s", a);
}
END_TEST

START_TEST(dropped_names)
{
    static const char *const drop[] = {
        "Connection", "connection", "Keep-Alive", "TE", "te", "Trailer",
        "Transfer-Encoding", "Upgrade", "Proxy-Authorization", "proxy-connection",
        "Proxy-", "Host", "Content-Length", "Content-Type", "Expect",
        "X-Openstack-Request-Id", "x-openstack-request-id", "Accept-Encoding",
    };
    static const char *const keep[] = {
        "X-Auth-Token", "Accept", "User-Agent", "X-Roles", "Proxy", "Trailers",
        "TEx", "Hostname", "Content-Encoding", "X-Identity-Status", "Authorization",
    };
    for (size_t i = 0; i < N(drop); i++)
        ck_assert_msg(fwd_header_is_dropped(drop[i], strlen(drop[i])) == 1, "%s kept", drop[i]);
    for (size_t i = 0; i < N(keep); i++)
        ck_assert_msg(fwd_header_is_dropped(keep[i], strlen(keep[i])) == 0, "%s dropped", keep[i]);
}
END_TEST

START_TEST(build_copies_end_to_end_headers)
{
    mb_header h[] = {
        H("Host", "gw.example.com"), H("X-Auth-Token", "gAAAA-token"),
        H("Connection", "keep-alive, X-Hop"), H("X-Hop", "1"), H("Keep-Alive", "timeout=5"),
        H("Content-Length", "12"), H("Content-Type", "text/plain"), H("Expect", "100-continue"),
        H("User-Agent", "python-glanceclient"), H("Proxy-Authorization", "Basic x"),
        H("X-Openstack-Request-Id", "req-client"), H("Transfer-Encoding", "chunked"),
        H("X-Empty", ""), H("TE", "trailers"), H("Upgrade", "h2c"),
    };
    char **l = fwd_headers_build(h, N(h), RID, "application/json");
    ck_assert_ptr_nonnull(l);
    ck_assert_uint_eq(count(l), 6);
    ck_assert_str_eq(l[0], "X-Auth-Token: gAAAA-token");
    ck_assert_str_eq(l[1], "User-Agent: python-glanceclient");
    ck_assert_str_eq(l[2], "X-Empty:");   /* an empty value */
    ck_assert_str_eq(l[3], "X-Openstack-Request-Id: " RID);
    ck_assert_str_eq(l[4], "Accept: application/json");
    ck_assert_str_eq(l[5], "Content-Type: application/json");
    ck_assert_ptr_null(l[6]);
    free(l);
}
END_TEST

START_TEST(build_keeps_client_accept)
{
    mb_header h[] = { H("accept", "application/json; q=0.9"), H("X-Auth-Token", "t") };
    char **l = fwd_headers_build(h, N(h), RID, NULL);
    ck_assert_ptr_nonnull(l);
    ck_assert_uint_eq(count(l), 3);
    ck_assert_str_eq(l[0], "accept: application/json; q=0.9");
    ck_assert_str_eq(l[1], "X-Auth-Token: t");
    ck_assert_str_eq(l[2], "X-Openstack-Request-Id: " RID);
    ck_assert_int_eq(has_line(l, "Content-Type: application/json"), 0);
    free(l);
}
END_TEST

START_TEST(build_with_no_headers)
{
    char **l = fwd_headers_build(NULL, 0, RID, NULL);
    ck_assert_ptr_nonnull(l);
    ck_assert_uint_eq(count(l), 2);
    ck_assert_str_eq(l[0], "X-Openstack-Request-Id: " RID);
    ck_assert_str_eq(l[1], "Accept: application/json");
    free(l);
}
END_TEST

START_TEST(build_drops_connection_named_and_unsafe)
{
    mb_header h[] = {
        H("Connection", "close"), H("connection", " X-A ,x-b"), H("X-A", "1"), H("x-B", "2"),
        H("X-C", "3"), H("X-Bad", "a\r\nInjected: 1"), H("Bad Name", "v"), H("X:y", "v"),
    };
    char **l = fwd_headers_build(h, N(h), RID, NULL);
    ck_assert_ptr_nonnull(l);
    ck_assert_uint_eq(count(l), 3);
    ck_assert_str_eq(l[0], "X-C: 3");
    ck_assert_int_eq(has_line(l, "X-A: 1"), 0);
    ck_assert_int_eq(has_line(l, "x-B: 2"), 0);
    for (size_t i = 0; l[i] != NULL; i++)
        ck_assert_ptr_null(strpbrk(l[i], "\r\n"));
    free(l);
}
END_TEST

START_TEST(service_headers_carry_only_the_gateway_token)
{
    char **l = fwd_headers_service("gAAAA-service", RID, "application/json");
    ck_assert_ptr_nonnull(l);
    ck_assert_uint_eq(count(l), 4);
    ck_assert_str_eq(l[0], "X-Auth-Token: gAAAA-service");
    ck_assert_str_eq(l[1], "X-Openstack-Request-Id: " RID);
    ck_assert_str_eq(l[2], "Accept: application/json");
    ck_assert_str_eq(l[3], "Content-Type: application/json");
    ck_assert_ptr_null(l[4]);
    free(l);
    l = fwd_headers_service("t", NULL, NULL);
    ck_assert_ptr_nonnull(l);
    ck_assert_uint_eq(count(l), 3);
    ck_assert_str_eq(l[0], "X-Auth-Token: t");
    ck_assert_str_eq(l[1], "X-Openstack-Request-Id:");
    ck_assert_str_eq(l[2], "Accept: application/json");
    free(l);
}
END_TEST

START_TEST(build_with_patch_content_type)
{
    mb_header h[] = { H("X-Auth-Token", "t"), H("Content-Type", "text/plain") };
    char **l = fwd_headers_build(h, N(h), RID, "application/openstack-images-v2.1-json-patch");
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(has_line(l, "Content-Type: application/openstack-images-v2.1-json-patch"), 1);
    ck_assert_int_eq(has_line(l, "Content-Type: text/plain"), 0);
    free(l);
}
END_TEST

START_TEST(proxy_headers)
{
    mb_header h[] = {
        H("Host", "gw"), H("X-Auth-Token", "t"), H("Connection", "keep-alive, X-Hop"),
        H("X-Hop", "1"), H("Content-Length", "5"), H("Content-Type", "application/octet-stream"),
        H("Expect", "100-continue"), H("Transfer-Encoding", "chunked"), H("TE", "trailers"),
        H("Accept-Encoding", "gzip"), H("X-Forwarded-For", "10.0.0.1"),
        H("x-forwarded-for", "10.0.0.2"), H("X-Forwarded-Proto", "https"),
        H("X-Openstack-Request-Id", "req-client"), H("Proxy-Authorization", "x"),
        H("X-Bad", "a\r\nInjected: 1"),
    };
    char **l = fwd_headers_proxy(h, N(h), RID, "127.0.0.1", "http");
    ck_assert_ptr_nonnull(l);
    ck_assert_uint_eq(count(l), 6);
    ck_assert_str_eq(l[0], "X-Auth-Token: t");
    ck_assert_str_eq(l[1], "Content-Type: application/octet-stream");
    ck_assert_str_eq(l[2], "Accept-Encoding: gzip");
    ck_assert_str_eq(l[3], "X-Openstack-Request-Id: " RID);
    ck_assert_str_eq(l[4], "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 127.0.0.1");
    ck_assert_str_eq(l[5], "X-Forwarded-Proto: http");
    free(l);
    l = fwd_headers_proxy(NULL, 0, RID, "::1", "https");
    ck_assert_ptr_nonnull(l);
    ck_assert_uint_eq(count(l), 3);
    ck_assert_str_eq(l[1], "X-Forwarded-For: ::1");
    ck_assert_str_eq(l[2], "X-Forwarded-Proto: https");
    free(l);
}
END_TEST

START_TEST(proxy_response_lines)
{
    const char *lines[] = { "Content-Type: text/plain", "Connection: keep-alive, X-Hop",
                            "X-Hop: 1", "Keep-Alive: timeout=5", "Content-Length: 12",
                            "Transfer-Encoding: chunked", "Proxy-Authenticate: x",
                            "X-Openstack-Request-Id: req-1", "Content-MD5: abc" };
    size_t n = sizeof(lines) / sizeof(lines[0]);
    int want[] = { 1, 0, 0, 0, 0, 0, 0, 1, 1 };
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fwd_response_line_kept(lines[i], lines, n) == want[i], "%s", lines[i]);
    ck_assert_int_eq(fwd_response_line_kept("no colon", lines, n), 0);
    ck_assert_int_eq(fwd_response_line_kept(": empty name", lines, n), 0);
}
END_TEST

static Suite *fwd_suite(void)
{
    Suite *s = suite_create("fwd_headers");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, reqid_valid_forms);
    tcase_add_test(tc, proxy_headers);
    tcase_add_test(tc, proxy_response_lines);
    tcase_add_test(tc, service_headers_carry_only_the_gateway_token);
    tcase_add_test(tc, build_with_patch_content_type);
    tcase_add_test(tc, reqid_new_is_valid_and_fresh);
    tcase_add_test(tc, dropped_names);
    tcase_add_test(tc, build_copies_end_to_end_headers);
    tcase_add_test(tc, build_keeps_client_accept);
    tcase_add_test(tc, build_with_no_headers);
    tcase_add_test(tc, build_drops_connection_named_and_unsafe);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fwd_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
