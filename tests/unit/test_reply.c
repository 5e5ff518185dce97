/* reply: JSON bodies written with yajl_gen. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"

START_TEST(test_titles)
{
    static const struct { int code; const char *title; } t[] = {
        { 200, "OK" }, { 204, "No Content" }, { 400, "Bad Request" },
        { 401, "Unauthorized" }, { 403, "Forbidden" }, { 404, "Not Found" },
        { 405, "Method Not Allowed" }, { 409, "Conflict" }, { 411, "Length Required" },
        { 413, "Request Entity Too Large" }, { 415, "Unsupported Media Type" },
        { 431, "Request Header Fields Too Large" }, { 500, "Internal Server Error" },
        { 501, "Not Implemented" }, { 502, "Bad Gateway" }, { 503, "Service Unavailable" },
        { 504, "Gateway Timeout" }, { 299, "Error" }, { 0, "Error" }, { -1, "Error" },
        { 999, "Error" },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        ck_assert_str_eq(reply_status_title(t[i].code), t[i].title);
}
END_TEST

START_TEST(test_error_json)
{
    size_t len = 0;
    char *s = reply_error_json(400, "members[0]: member_id must be a string", &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "{\"error\":{\"code\":400,\"title\":\"Bad Request\","
                        "\"message\":\"members[0]: member_id must be a string\"}}");
    ck_assert_uint_eq(len, strlen(s));
    free(s);

    s = reply_error_json(405, NULL, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "{\"error\":{\"code\":405,\"title\":\"Method Not Allowed\","
                        "\"message\":\"Method Not Allowed\"}}");
    free(s);
}
END_TEST

START_TEST(test_error_json_escaping)
{
    size_t len;
    char *s = reply_error_json(502, "say \"hi\"\\ \x01\t</script>\xc3\x28", &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "{\"error\":{\"code\":502,\"title\":\"Bad Gateway\","
                        "\"message\":\"say \\\"hi\\\"\\\\ \\u0001\\t</script>\xef\xbf\xbd(\"}}");
    free(s);
}
END_TEST

static mb_strset *set_of(const char *const *items)
{
    mb_strset *s = strset_new();
    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; items[i] != NULL; i++)
        ck_assert_int_ge(strset_add(s, items[i], strlen(items[i])), 0);
    return s;
}

START_TEST(test_members_json)
{
    static const char *const ids[] = { "t1", "t\"2", "caf\xc3\xa9", NULL };
    mb_strset *set = set_of(ids);
    size_t len;
    char *s = reply_members_json(set, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "{\"members\":["
                        "{\"member_id\":\"t1\",\"can_share\":false},"
                        "{\"member_id\":\"t\\\"2\",\"can_share\":false},"
                        "{\"member_id\":\"caf\xc3\xa9\",\"can_share\":false}]}");
    ck_assert_uint_eq(len, strlen(s));
    free(s);
    strset_free(set);
}
END_TEST

START_TEST(test_members_json_empty)
{
    mb_strset *set = strset_new();
    size_t len;
    char *s = reply_members_json(set, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "{\"members\":[]}");
    free(s);
    s = reply_members_json(NULL, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "{\"members\":[]}");
    free(s);
    strset_free(set);
}
END_TEST

START_TEST(test_shared_images_json)
{
    static const char *const ids[] = { "8a1c3e2f-0000-4000-8000-000000000001", "img/2", NULL };
    mb_strset *set = set_of(ids);
    size_t len;
    char *s = reply_shared_images_json(set, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "{\"shared_images\":["
                        "{\"image_id\":\"8a1c3e2f-0000-4000-8000-000000000001\",\"can_share\":false},"
                        "{\"image_id\":\"img/2\",\"can_share\":false}]}");
    free(s);
    strset_free(set);

    set = strset_new();
    s = reply_shared_images_json(set, &len);
    ck_assert_str_eq(s, "{\"shared_images\":[]}");
    free(s);
    strset_free(set);
}
END_TEST

START_TEST(test_v2_add_json)
{
    size_t len;
    char *s = reply_v2_add_json("tenant1", &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "{\"member\":\"tenant1\"}");
    ck_assert_uint_eq(len, 20);
    free(s);

    /* an id that would inject JSON stays one string */
    s = reply_v2_add_json("a\",\"status\":\"accepted", &len);
    ck_assert_str_eq(s, "{\"member\":\"a\\\",\\\"status\\\":\\\"accepted\"}");
    free(s);
}
END_TEST

START_TEST(test_utf8_len)
{
    static const struct { const char *s; size_t len, want; } t[] = {
        { "a", 1, 1 }, { "\x7f", 1, 1 },
        { "\xc3\xa9", 2, 2 }, { "\xc3", 1, 0 }, { "\xc3\x28", 2, 0 },
        { "\xc0\xaf", 2, 0 },                     /* overlong '/' */
        { "\xc1\xbf", 2, 0 },
        { "\xe4\xb8\xad", 3, 3 }, { "\xe4\xb8", 2, 0 },
        { "\xe0\x80\xaf", 3, 0 },                 /* overlong */
        { "\xed\xa0\x80", 3, 0 },                 /* surrogate */
        { "\xef\xbf\xbd", 3, 3 },
        { "\xf0\x9f\x98\x80", 4, 4 }, { "\xf0\x9f\x98", 3, 0 },
        { "\xf0\x80\x80\xaf", 4, 0 },             /* overlong */
        { "\xf4\x8f\xbf\xbf", 4, 4 },             /* U+10FFFF */
        { "\xf4\x90\x80\x80", 4, 0 },             /* beyond U+10FFFF */
        { "\xf5\x80\x80\x80", 4, 0 }, { "\xff", 1, 0 }, { "\x80", 1, 0 },
        { "", 0, 0 },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        ck_assert_msg(reply_utf8_len((const unsigned char *)t[i].s, t[i].len) == t[i].want,
                      "case %zu", i);
}
END_TEST

START_TEST(test_gen_text)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(reply_gen_text(g, "ok\xe4\xb8\xad\xff\xc3", 7), 0);
    const unsigned char *buf;
    size_t len;
    ck_assert_int_eq(yajl_gen_get_buf(g, &buf, &len), yajl_gen_status_ok);
    ck_assert_uint_eq(len, 13);
    ck_assert_mem_eq(buf, "\"ok\xe4\xb8\xad\xef\xbf\xbd\xef\xbf\xbd\"", 13);
    yajl_gen_free(g);
}
END_TEST

static Suite *reply_suite(void)
{
    Suite *s = suite_create("reply");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_titles);
    tcase_add_test(tc, test_error_json);
    tcase_add_test(tc, test_error_json_escaping);
    tcase_add_test(tc, test_members_json);
    tcase_add_test(tc, test_members_json_empty);
    tcase_add_test(tc, test_shared_images_json);
    tcase_add_test(tc, test_v2_add_json);
    tcase_add_test(tc, test_utf8_len);
    tcase_add_test(tc, test_gen_text);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(reply_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
