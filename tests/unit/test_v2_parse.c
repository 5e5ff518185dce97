/* v2_parse: Glance v2 member and image lists, and error messages. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "v2_parse.h"

static void assert_set(const mb_strset *s, const char *const *want)
{
    size_t n = 0;
    while (want[n] != NULL)
        n++;
    ck_assert_uint_eq(strset_count(s), n);
    for (size_t i = 0; i < n; i++)
        ck_assert_str_eq(strset_get(s, i), want[i]);
}

static int members_of(const char *body, mb_strset **out)
{
    *out = strset_new();
    ck_assert_ptr_nonnull(*out);
    return v2_parse_member_list(body, strlen(body), *out);
}

START_TEST(test_member_list_glance)
{
    const char *body =
        "{\"members\": [{\"created_at\": \"2024-01-01T00:00:00Z\", \"image_id\": \"i1\", "
        "\"member_id\": \"t1\", \"schema\": \"/v2/schemas/member\", \"status\": \"pending\", "
        "\"updated_at\": \"2024-01-01T00:00:00Z\"}, {\"member_id\": \"t2\", \"status\": \"accepted\", "
        "\"image_id\": \"i1\"}], \"schema\": \"/v2/schemas/members\"}";
    static const char *const want[] = { "t1", "t2", NULL };
    mb_strset *s;
    ck_assert_int_eq(members_of(body, &s), 0);
    assert_set(s, want);
    strset_free(s);
}
END_TEST

START_TEST(test_member_list_accepted)
{
    const char *body =
        "{\"members\": [{\"member_id\": \"t1\", \"status\": \"pending\"},"
        " {\"status\": \"accepted\", \"member_id\": \"t2\", \"x\": {\"status\": \"pending\"}},"
        " {\"member_id\": \"t3\", \"status\": \"rejected\"},"
        " {\"member_id\": \"t4\", \"status\": \"accepted \"},"
        " {\"member_id\": \"t5\", \"meta\": {\"status\": \"accepted\"}},"
        " {\"member_id\": \"t6\", \"status\": \"pending\", \"status\": \"accepted\"},"
        " {\"member_id\": \"t7\", \"status\": [\"accepted\"]}]}";
    static const char *const all[] = { "t1", "t2", "t3", "t4", "t5", "t6", "t7", NULL };
    static const char *const acc[] = { "t2", "t6", NULL };
    mb_strset *ids = strset_new(), *accepted = strset_new();
    ck_assert_int_eq(v2_parse_member_list_status(body, strlen(body), ids, "accepted", accepted), 0);
    assert_set(ids, all);
    assert_set(accepted, acc);
    static const char *const pend[] = { "t1", NULL };
    mb_strset *ids2 = strset_new(), *pending = strset_new();
    ck_assert_int_eq(v2_parse_member_list_status(body, strlen(body), ids2, "pending", pending), 0);
    assert_set(pending, pend);
    strset_free(ids2);
    strset_free(pending);
    strset_free(ids);
    strset_free(accepted);
}
END_TEST

START_TEST(test_image_visibility)
{
    char v[16];
    const char *img = "{\"id\": \"i1\", \"properties\": {\"visibility\": \"public\"},"
                      " \"tags\": [{\"visibility\": \"community\"}], \"visibility\": \"private\","
                      " \"size\": 12, \"checksum\": null}";
    ck_assert_int_eq(v2_parse_top_string(img, strlen(img), "visibility", v, sizeof(v)), 0);
    ck_assert_str_eq(v, "private");
    const char *shared = "{\"visibility\":\"shared\"}";
    ck_assert_int_eq(v2_parse_top_string(shared, strlen(shared), "visibility", v, sizeof(v)), 0);
    ck_assert_str_eq(v, "shared");
    /* refused: no visibility, not a string, nested only, too long, not an object, bad JSON */
    static const char *const bad[] = {
        "{\"id\": \"i1\"}", "{\"visibility\": null}", "{\"visibility\": 3}",
        "{\"visibility\": {\"a\": \"private\"}}", "{\"x\": {\"visibility\": \"private\"}}",
        "{\"visibility\": \"aaaaaaaaaaaaaaaaaaaaaaaaa\"}", "[{\"visibility\": \"private\"}]",
        "\"private\"", "{\"visibility\": \"private\"", "", NULL };
    for (size_t i = 0; bad[i] != NULL; i++) {
        ck_assert_msg(v2_parse_top_string(bad[i], strlen(bad[i]), "visibility", v, sizeof(v)) == -1,
                      "accepted: %s", bad[i]);
        ck_assert_str_eq(v, "");
    }
    /* the last one wins, and a later non-string un-sets it */
    const char *twice = "{\"visibility\": \"private\", \"visibility\": [1]}";
    ck_assert_int_eq(v2_parse_top_string(twice, strlen(twice), "visibility", v, sizeof(v)), -1);
    /* a member's status */
    const char *member = "{\"member_id\": \"t1\", \"image_id\": \"i\", \"status\": \"rejected\","
                         " \"schema\": \"/v2/schemas/member\"}";
    ck_assert_int_eq(v2_parse_top_string(member, strlen(member), "status", v, sizeof(v)), 0);
    ck_assert_str_eq(v, "rejected");
    ck_assert_int_eq(v2_parse_top_string(member, strlen(member), "visibility", v, sizeof(v)), -1);
}
END_TEST

START_TEST(test_member_list_empty)
{
    static const char *const want[] = { NULL };
    mb_strset *s;
    ck_assert_int_eq(members_of("{\"members\":[],\"schema\":\"/v2/schemas/members\"}", &s), 0);
    assert_set(s, want);
    strset_free(s);
}
END_TEST

/* Only the entries' own member_id counts: nested ones, and a member_id
 * outside the list, are skipped; unknown keys of any shape are fine. */
START_TEST(test_member_list_nested_ids)
{
    const char *body =
        "{\"member_id\": \"top\", \"x\": {\"members\": [{\"member_id\": \"fake\"}]},"
        " \"members\": [{\"extra\": {\"member_id\": \"nested\", \"n\": 1e999},"
        " \"member_id\": \"real\", \"list\": [{\"member_id\": \"deep\"}], \"b\": true, \"z\": null}],"
        " \"n\": -99999999999999999999999}";
    static const char *const want[] = { "real", NULL };
    mb_strset *s;
    ck_assert_int_eq(members_of(body, &s), 0);
    assert_set(s, want);
    strset_free(s);
}
END_TEST

/* Glance can store a duplicate member row under concurrency. */
START_TEST(test_member_list_duplicates)
{
    static const char *const want[] = { "a", "b", NULL };
    mb_strset *s;
    ck_assert_int_eq(members_of("{\"members\":[{\"member_id\":\"a\"},{\"member_id\":\"b\"},"
                                "{\"member_id\":\"a\"}]}", &s), 0);
    assert_set(s, want);
    strset_free(s);
}
END_TEST

START_TEST(test_member_list_invalid)
{
    static const char *const bad[] = {
        "", "   ", "nope", "[]", "\"members\"", "{", "{}",
        "{\"members\":{}}", "{\"members\":null}", "{\"members\":[1]}",
        "{\"members\":[{\"status\":\"pending\"}]}",
        "{\"members\":[{\"member_id\":5}]}",
        "{\"members\":[{\"member_id\":\"\"}]}",
        "{\"members\":[{\"member_id\":\"a\\u0000b\"}]}",
        "{\"members\":[]} {}",
        "{\"members\":[]}x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mb_strset *s;
        ck_assert_msg(members_of(bad[i], &s) == -1, "accepted: %s", bad[i]);
        strset_free(s);
    }
}
END_TEST

/* {"members":[{"member_id":"a","x":<levels arrays>}]} has 3 + levels levels. */
static char *nested_member_body(size_t levels)
{
    const char *pre = "{\"members\":[{\"member_id\":\"a\",\"x\":", *post = "}]}";
    char *s = malloc(strlen(pre) + 2 * levels + strlen(post) + 1), *p;
    ck_assert_ptr_nonnull(s);
    p = stpcpy(s, pre);
    memset(p, '[', levels);
    memset(p + levels, ']', levels);
    strcpy(p + 2 * levels, post);
    return s;
}

START_TEST(test_member_list_depth)
{
    mb_strset *s;
    char *body = nested_member_body(61);   /* 64 levels */
    ck_assert_int_eq(members_of(body, &s), 0);
    ck_assert_uint_eq(strset_count(s), 1);
    strset_free(s);
    free(body);

    body = nested_member_body(62);         /* 65 levels */
    ck_assert_int_eq(members_of(body, &s), -1);
    strset_free(s);
    free(body);

    body = nested_member_body(200000);
    ck_assert_int_eq(members_of(body, &s), -1);
    strset_free(s);
    free(body);
}
END_TEST

START_TEST(test_image_list)
{
    const char *body =
        "{\"images\": [{\"id\": \"img-1\", \"name\": \"a\", \"tags\": [], \"locations\": "
        "[{\"url\": \"file:///x\", \"metadata\": {\"id\": \"store\"}}], \"properties\": {\"id\": 5}},"
        " {\"owner\": \"p\", \"id\": \"img-2\"}],"
        " \"first\": \"/v2/images?visibility=shared\", \"schema\": \"/v2/schemas/images\","
        " \"next\": \"/v2/images?marker=img-2&visibility=shared\", \"id\": \"top\"}";
    static const char *const want[] = { "img-1", "img-2", NULL };
    mb_strset *s = strset_new();
    char *next = (char *)"garbage";
    ck_assert_int_eq(v2_parse_image_list(body, strlen(body), s, &next), 0);
    assert_set(s, want);
    ck_assert_ptr_nonnull(next);
    ck_assert_str_eq(next, "/v2/images?marker=img-2&visibility=shared");
    free(next);
    strset_free(s);
}
END_TEST

START_TEST(test_image_list_no_next)
{
    static const char *const bodies[] = {
        "{\"images\":[],\"first\":\"/v2/images\"}",
        "{\"images\":[],\"next\":null}",
        "{\"images\":[],\"next\":5}",
        "{\"images\":[],\"next\":{\"href\":\"/v2/x\"}}",
        "{\"next\":\"/v2/a\",\"images\":[],\"next\":null}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        mb_strset *s = strset_new();
        char *next = (char *)"garbage";
        ck_assert_int_eq(v2_parse_image_list(bodies[i], strlen(bodies[i]), s, &next), 0);
        ck_assert_ptr_null(next);
        ck_assert_uint_eq(strset_count(s), 0);
        strset_free(s);
    }
}
END_TEST

START_TEST(test_image_list_invalid)
{
    static const char *const bad[] = {
        "", "{}", "[]", "{\"images\":{}}", "{\"images\":[{\"name\":\"x\"}]}",
        "{\"images\":[{\"id\":1}]}", "{\"images\":[\"id\"]}",
        "{\"images\":[],\"next\":\"/v2/images?m=a\"", /* truncated */
        "{\"images\":[],\"next\":\"/v2/\\u0000\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mb_strset *s = strset_new();
        char *next = (char *)"garbage";
        ck_assert_msg(v2_parse_image_list(bad[i], strlen(bad[i]), s, &next) == -1,
                      "accepted: %s", bad[i]);
        ck_assert_ptr_null(next);
        strset_free(s);
    }
}
END_TEST

static void assert_message(const char *body, size_t max, const char *want)
{
    char *m = v2_error_message(body, strlen(body), max);
    if (want == NULL) {
        ck_assert_msg(m == NULL, "got \"%s\" from %s", m, body);
        return;
    }
    ck_assert_msg(m != NULL, "nothing from %s", body);
    ck_assert_str_eq(m, want);
    free(m);
}

START_TEST(test_error_json)
{
    assert_message("{\"message\": \"Not allowed\", \"code\": 403, \"title\": \"Forbidden\"}",
                   200, "Not allowed");
    /* webob puts the explanation and detail with <br /> into "message" */
    assert_message("{\"message\": \"The request returned a 413 Request Entity Too Large. "
                   "<br /><br />\\nThe limit has been exceeded on the number of allowed image "
                   "members for this image.\\n\\n   \", \"code\": \"413 Request Entity Too Large\", "
                   "\"title\": \"Request Entity Too Large\"}", 500,
                   "The request returned a 413 Request Entity Too Large. The limit has been "
                   "exceeded on the number of allowed image members for this image.");
    assert_message("{\"error\": {\"message\": \"The request you have made requires "
                   "authentication.\", \"code\": 401, \"title\": \"Unauthorized\"}}", 200,
                   "The request you have made requires authentication.");
    assert_message("{\"title\": \"Conflict\", \"code\": 409}", 200, "Conflict");
    assert_message("{\"code\": 500, \"x\": {\"message\": \"nested, not ours\"}}", 200, NULL);
    assert_message("{\"message\": 5}", 200, NULL);
}
END_TEST

START_TEST(test_error_html)
{
    const char *html =
        "<html>\n <head>\n  <title>403 Forbidden</title>\n </head>\n <body>\n"
        "  <h1>403 Forbidden</h1>\n  Not allowed to create members for image X.<br /><br />\n\n\n\n"
        " </body>\n</html>";
    assert_message(html, 500, "403 Forbidden Not allowed to create members for image X.");
    assert_message("<html><head><title>403 Forbidden</title></head><body><h1>403 Forbidden</h1>"
                   "Not allowed to create members for image X.<br /><br /></body></html>", 500,
                   "403 Forbidden Not allowed to create members for image X.");
    /* a page that is only a title keeps the title */
    assert_message("<html><head><title>502 Bad Gateway</title></head></html>", 100, "502 Bad Gateway");
    assert_message("<p>a &lt; b &amp;&amp; c&#39;s &quot;x&quot; &#x41;&nbsp;&bogus; &</p>", 100,
                   "a < b && c's \"x\" A &bogus; &");
    assert_message("<!-- <b>hidden</b> -->shown<script>var x = 1;</script> text", 100, "shown text");
    assert_message("a < b and c>d", 100, "a < b and c>d");
}
END_TEST

START_TEST(test_error_text)
{
    assert_message("403 Forbidden\n\nAccess was denied to this resource.\n\n   ", 100,
                   "403 Forbidden Access was denied to this resource.");
    assert_message("  \t\r\n ", 100, NULL);
    assert_message("<html></html>", 100, NULL);
    assert_message("ctl\x01\x02x\x7fy", 100, "ctl x y");
    assert_message("bad \xff\xfe utf8 \xc3\xa9", 100, "bad \xef\xbf\xbd\xef\xbf\xbd utf8 \xc3\xa9");
    ck_assert_ptr_null(v2_error_message("", 0, 100));
    ck_assert_ptr_null(v2_error_message(NULL, 0, 100));
    ck_assert_ptr_null(v2_error_message("text", 4, 0));
}
END_TEST

/* At most max bytes, never half a UTF-8 character. */
START_TEST(test_error_cut)
{
    assert_message("abcdef", 3, "abc");
    assert_message("ab\xc3\xa9z", 3, "ab");
    assert_message("ab\xc3\xa9z", 4, "ab\xc3\xa9");
    assert_message("\xf0\x9f\x98\x80\xf0\x9f\x98\x80", 7, "\xf0\x9f\x98\x80");
    assert_message("\xf0\x9f\x98\x80", 3, NULL);
    assert_message("a\xff", 3, "a");          /* U+FFFD needs 3 bytes */
    assert_message("one two", 4, "one");      /* no trailing space */

    /* a big body: bounded, and valid UTF-8 all the way */
    size_t n = 300000;
    char *big = malloc(n + 1);
    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i + 2 <= n; i += 2)
        memcpy(big + i, "\xc3\xa9", 2);
    big[n] = '\0';
    for (size_t max = 1; max < 40; max++) {
        char *m = v2_error_message(big, n, max);
        if (max < 2) {
            ck_assert_ptr_null(m);
            continue;
        }
        ck_assert_ptr_nonnull(m);
        ck_assert_uint_eq(strlen(m), max - max % 2);
        free(m);
    }
    free(big);
}
END_TEST

/* Truncated markup never reads past the end. */
START_TEST(test_error_truncated_markup)
{
    static const char *const bodies[] = {
        "<", "<h", "<!--", "<!-- x", "<title>x", "&", "&#", "&#x", "&#12", "&am", "text <b",
        "<head><title>x</title>",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char *copy = malloc(strlen(bodies[i]));   /* no NUL after: ASan sees overreads */
        ck_assert_ptr_nonnull(copy);
        memcpy(copy, bodies[i], strlen(bodies[i]));
        char *m = v2_error_message(copy, strlen(bodies[i]), 50);
        free(m);
        free(copy);
    }
    assert_message("text <b", 50, "text");
    assert_message("&am", 50, "&am");
    assert_message("<title>x", 50, "x");
}
END_TEST

static Suite *v2_parse_suite(void)
{
    Suite *s = suite_create("v2_parse");
    TCase *tc = tcase_create("lists");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_member_list_glance);
    tcase_add_test(tc, test_member_list_accepted);
    tcase_add_test(tc, test_image_visibility);
    tcase_add_test(tc, test_member_list_empty);
    tcase_add_test(tc, test_member_list_nested_ids);
    tcase_add_test(tc, test_member_list_duplicates);
    tcase_add_test(tc, test_member_list_invalid);
    tcase_add_test(tc, test_member_list_depth);
    tcase_add_test(tc, test_image_list);
    tcase_add_test(tc, test_image_list_no_next);
    tcase_add_test(tc, test_image_list_invalid);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_error_json);
    tcase_add_test(tc, test_error_html);
    tcase_add_test(tc, test_error_text);
    tcase_add_test(tc, test_error_cut);
    tcase_add_test(tc, test_error_truncated_markup);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(v2_parse_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
