/* aggregate: outcomes -> v1 status and results body (SPEC section 2). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "aggregate.h"

START_TEST(test_http_done)
{
    static const struct { mb_action a; int status, done; } t[] = {
        { ACT_ADD, 200, 1 }, { ACT_ADD, 201, 1 }, { ACT_ADD, 409, 1 },
        { ACT_ADD, 204, 0 }, { ACT_ADD, 404, 0 }, { ACT_ADD, 413, 0 },
        { ACT_ADD, 403, 0 }, { ACT_ADD, 500, 0 }, { ACT_ADD, 0, 0 },
        { ACT_DELETE, 204, 1 }, { ACT_DELETE, 404, 1 }, { ACT_DELETE, 200, 1 }, { ACT_DELETE, 202, 0 },
        { ACT_DELETE, 409, 0 }, { ACT_DELETE, 403, 0 }, { ACT_DELETE, 503, 0 },
        { ACT_ACCEPT, 200, 1 }, { ACT_ACCEPT, 204, 1 }, { ACT_ACCEPT, 401, 0 },
        { ACT_ACCEPT, 403, 0 }, { ACT_ACCEPT, 404, 0 }, { ACT_ACCEPT, 409, 0 },
        { ACT_ACCEPT, 500, 0 }, { ACT_ACCEPT, 302, 0 },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        ck_assert_msg(aggregate_http_done(t[i].a, t[i].status) == t[i].done,
                      "action %d status %d", (int)t[i].a, t[i].status);
}
END_TEST

START_TEST(test_failure_status)
{
    static const struct { mb_xfer x; int http, want; } t[] = {
        { XFER_HTTP, 400, 400 }, { XFER_HTTP, 401, 401 }, { XFER_HTTP, 403, 403 },
        { XFER_HTTP, 404, 404 }, { XFER_HTTP, 413, 413 }, { XFER_HTTP, 499, 499 },
        { XFER_HTTP, 500, 502 }, { XFER_HTTP, 503, 502 }, { XFER_HTTP, 504, 502 },
        { XFER_HTTP, 302, 502 }, { XFER_HTTP, 200, 502 },
        { XFER_UNREACHABLE, 0, 502 }, { XFER_TLS, 0, 502 },
        { XFER_BAD_RESPONSE, 0, 502 }, { XFER_TIMEOUT, 0, 504 }, { XFER_NONE, 0, 502 },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        mb_outcome o = { .member_id = "m", .xfer = t[i].x, .http_status = t[i].http };
        ck_assert_msg(aggregate_failure_status(&o) == t[i].want,
                      "xfer %d status %d -> %d, want %d", (int)t[i].x, t[i].http,
                      aggregate_failure_status(&o), t[i].want);
    }
}
END_TEST

START_TEST(test_status_order)
{
    mb_outcome o[4] = {
        { .member_id = "a", .xfer = XFER_HTTP, .http_status = 200, .done = 1 },
        { .member_id = "b", .xfer = XFER_TIMEOUT, .done = 0 },
        { .member_id = "c", .xfer = XFER_HTTP, .http_status = 403, .done = 0 },
        { .member_id = "d", .xfer = XFER_HTTP, .http_status = 409, .done = 1 },
    };
    ck_assert_int_eq(aggregate_status(o, 0), 204);
    ck_assert_int_eq(aggregate_status(o, 1), 204);
    ck_assert_int_eq(aggregate_status(o, 4), 504);   /* the first failure, in order */
    ck_assert_int_eq(aggregate_status(o + 2, 2), 403);
    ck_assert_int_eq(aggregate_status(o + 3, 1), 204);
}
END_TEST

START_TEST(test_body_spec_example)
{
    mb_outcome o[3] = {
        { .member_id = "t1", .action = ACT_ADD, .xfer = XFER_HTTP, .http_status = 200, .done = 1 },
        { .member_id = "t2", .action = ACT_ADD, .xfer = XFER_HTTP, .http_status = 409, .done = 1 },
        { .member_id = "t3", .action = ACT_ADD, .xfer = XFER_HTTP, .http_status = 413, .done = 0,
          .message = "The limit has been exceeded" },
    };
    size_t len = 0;
    char *body = aggregate_body(o, 3, &len);
    ck_assert_ptr_nonnull(body);
    ck_assert_str_eq(body,
        "{\"error\":{\"code\":413,\"title\":\"Request Entity Too Large\","
        "\"message\":\"1 of 3 member operations failed\"},"
        "\"results\":["
        "{\"member_id\":\"t1\",\"action\":\"add\",\"status\":200,\"done\":true},"
        "{\"member_id\":\"t2\",\"action\":\"add\",\"status\":409,\"done\":true},"
        "{\"member_id\":\"t3\",\"action\":\"add\",\"status\":413,\"done\":false,"
        "\"message\":\"The limit has been exceeded\"}]}");
    ck_assert_uint_eq(len, strlen(body));
    free(body);
}
END_TEST

START_TEST(test_body_transport_failures)
{
    mb_outcome o[6] = {
        { .member_id = "a", .action = ACT_DELETE, .xfer = XFER_HTTP, .http_status = 404, .done = 1,
          .message = "ignored: done entries carry no message" },
        { .member_id = "b", .action = ACT_ADD, .xfer = XFER_UNREACHABLE },
        { .member_id = "c", .action = ACT_ADD, .xfer = XFER_TLS },
        { .member_id = "d", .action = ACT_DELETE, .xfer = XFER_BAD_RESPONSE },
        { .member_id = "e", .action = ACT_ADD, .xfer = XFER_TIMEOUT,
          .message = "upstream timed out after 30 s" },
        { .member_id = "f", .action = ACT_ADD, .xfer = XFER_HTTP, .http_status = 500 },
    };
    size_t len;
    char *body = aggregate_body(o, 6, &len);
    ck_assert_ptr_nonnull(body);
    ck_assert_str_eq(body,
        "{\"error\":{\"code\":502,\"title\":\"Bad Gateway\","
        "\"message\":\"5 of 6 member operations failed\"},"
        "\"results\":["
        "{\"member_id\":\"a\",\"action\":\"delete\",\"status\":404,\"done\":true},"
        "{\"member_id\":\"b\",\"action\":\"add\",\"status\":502,\"done\":false,"
        "\"message\":\"upstream unreachable\"},"
        "{\"member_id\":\"c\",\"action\":\"add\",\"status\":502,\"done\":false,"
        "\"message\":\"upstream TLS certificate did not verify\"},"
        "{\"member_id\":\"d\",\"action\":\"delete\",\"status\":502,\"done\":false,"
        "\"message\":\"upstream response invalid\"},"
        "{\"member_id\":\"e\",\"action\":\"add\",\"status\":504,\"done\":false,"
        "\"message\":\"upstream timed out after 30 s\"},"
        "{\"member_id\":\"f\",\"action\":\"add\",\"status\":500,\"done\":false}]}");
    free(body);

    /* a timeout first: the reply is 504 */
    body = aggregate_body(o + 4, 2, &len);
    ck_assert_ptr_nonnull(body);
    ck_assert_ptr_nonnull(strstr(body, "{\"error\":{\"code\":504,\"title\":\"Gateway Timeout\","
                                       "\"message\":\"2 of 2 member operations failed\"}"));
    free(body);
}
END_TEST

/* Ids and messages are escaped by yajl_gen, and bytes that are not UTF-8
 * cannot break the JSON. */
START_TEST(test_body_escaping)
{
    mb_outcome o[2] = {
        { .member_id = "x\",\"done\":true,\"y\":\"", .action = ACT_ADD, .xfer = XFER_HTTP,
          .http_status = 403, .message = "line1\nline2 \"q\"" },
        { .member_id = "bad\xff", .action = ACT_ADD, .xfer = XFER_HTTP, .http_status = 200, .done = 1 },
    };
    size_t len;
    char *body = aggregate_body(o, 2, &len);
    ck_assert_ptr_nonnull(body);
    ck_assert_str_eq(body,
        "{\"error\":{\"code\":403,\"title\":\"Forbidden\","
        "\"message\":\"1 of 2 member operations failed\"},"
        "\"results\":["
        "{\"member_id\":\"x\\\",\\\"done\\\":true,\\\"y\\\":\\\"\",\"action\":\"add\","
        "\"status\":403,\"done\":false,\"message\":\"line1\\nline2 \\\"q\\\"\"},"
        "{\"member_id\":\"bad\xef\xbf\xbd\",\"action\":\"add\",\"status\":200,\"done\":true}]}");
    free(body);
}
END_TEST

/* An add with its accept step: a failed accept is a failure of its own; an
 * accept skipped after a failed add is neither listed nor counted. */
START_TEST(test_body_accept)
{
    mb_outcome o[6] = {
        { .member_id = "t1", .action = ACT_ADD, .xfer = XFER_HTTP, .http_status = 200, .done = 1 },
        { .member_id = "t1", .action = ACT_ACCEPT, .xfer = XFER_HTTP, .http_status = 200, .done = 1 },
        { .member_id = "t2", .action = ACT_ADD, .xfer = XFER_HTTP, .http_status = 409, .done = 1 },
        { .member_id = "t2", .action = ACT_ACCEPT, .xfer = XFER_BAD_RESPONSE,
          .message = "no service token: Keystone refused the service credentials (401)" },
        { .member_id = "t3", .action = ACT_ADD, .xfer = XFER_HTTP, .http_status = 403 },
        { .member_id = "t3", .action = ACT_ACCEPT, .skipped = 1 },
    };
    ck_assert_int_eq(aggregate_status(o, 6), 502);
    ck_assert_int_eq(aggregate_status(o, 2), 204);
    ck_assert_int_eq(aggregate_status(o + 4, 2), 403);
    o[3].done = 1;
    ck_assert_int_eq(aggregate_status(o, 6), 403);
    o[3].done = 0;
    size_t len;
    char *body = aggregate_body(o, 6, &len);
    ck_assert_ptr_nonnull(body);
    ck_assert_str_eq(body,
        "{\"error\":{\"code\":502,\"title\":\"Bad Gateway\","
        "\"message\":\"2 of 5 member operations failed\"},"
        "\"results\":["
        "{\"member_id\":\"t1\",\"action\":\"add\",\"status\":200,\"done\":true},"
        "{\"member_id\":\"t1\",\"action\":\"accept\",\"status\":200,\"done\":true},"
        "{\"member_id\":\"t2\",\"action\":\"add\",\"status\":409,\"done\":true},"
        "{\"member_id\":\"t2\",\"action\":\"accept\",\"status\":502,\"done\":false,"
        "\"message\":\"no service token: Keystone refused the service credentials (401)\"},"
        "{\"member_id\":\"t3\",\"action\":\"add\",\"status\":403,\"done\":false}]}");
    free(body);
}
END_TEST

START_TEST(test_body_empty)
{
    size_t len = 99;
    char *body = aggregate_body(NULL, 0, &len);
    ck_assert_ptr_nonnull(body);
    ck_assert_str_eq(body, "{\"error\":{\"code\":204,\"title\":\"No Content\","
                           "\"message\":\"0 of 0 member operations failed\"},\"results\":[]}");
    ck_assert_uint_eq(len, strlen(body));
    free(body);
}
END_TEST

static Suite *aggregate_suite(void)
{
    Suite *s = suite_create("aggregate");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_http_done);
    tcase_add_test(tc, test_failure_status);
    tcase_add_test(tc, test_status_order);
    tcase_add_test(tc, test_body_spec_example);
    tcase_add_test(tc, test_body_transport_failures);
    tcase_add_test(tc, test_body_escaping);
    tcase_add_test(tc, test_body_empty);
    tcase_add_test(tc, test_body_accept);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(aggregate_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
