/* versions: the upstream's version document with the v1 entries added. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "versions.h"

#define UP "https://glance.example.com:9292"
#define GW "http://gw.example.com:9393"

START_TEST(adds_v1_and_rewrites_links)
{
    const char *doc =
        "{\"versions\": [{\"id\": \"v2.16\", \"status\": \"CURRENT\", \"links\": "
        "[{\"rel\": \"self\", \"href\": \"" UP "/v2/\"}]}, {\"id\": \"v2.0\", \"status\": "
        "\"SUPPORTED\", \"links\": [{\"rel\": \"self\", \"href\": \"http://other/v2/\"}]}], "
        "\"n\": 1.50e3, \"t\": true, \"z\": null}";
    size_t len = 0;
    char *out = versions_with_v1(doc, strlen(doc), UP, GW, &len);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out,
        "{\"versions\":[{\"id\":\"v2.16\",\"status\":\"CURRENT\",\"links\":"
        "[{\"rel\":\"self\",\"href\":\"" GW "/v2/\"}]},{\"id\":\"v2.0\",\"status\":"
        "\"SUPPORTED\",\"links\":[{\"rel\":\"self\",\"href\":\"http://other/v2/\"}]},"
        "{\"id\":\"v1.1\",\"status\":\"DEPRECATED\",\"links\":[{\"rel\":\"self\",\"href\":\"" GW "/v1/\"}]},"
        "{\"id\":\"v1.0\",\"status\":\"DEPRECATED\",\"links\":[{\"rel\":\"self\",\"href\":\"" GW "/v1/\"}]}],"
        "\"n\":1.50e3,\"t\":true,\"z\":null}");
    ck_assert_uint_eq(len, strlen(out));
    free(out);
}
END_TEST

START_TEST(links_matched_without_scheme)
{
    const char *doc = "{\"versions\": [{\"id\": \"v2.1\", \"links\": ["
                      "{\"href\": \"http://glance.example.com:9292/v2/\"},"
                      "{\"href\": \"http://glance.example.com:92921/v2/\"},"
                      "{\"href\": \"https://glance.example.com:9292\"}]}]}";
    size_t len;
    char *out = versions_with_v1(doc, strlen(doc), UP, GW, &len);
    ck_assert_ptr_nonnull(out);
    ck_assert_ptr_nonnull(strstr(out, "[{\"href\":\"" GW "/v2/\"},"
                                      "{\"href\":\"http://glance.example.com:92921/v2/\"},"
                                      "{\"href\":\"" GW "\"}]"));
    free(out);
}
END_TEST

START_TEST(existing_v1_not_repeated)
{
    const char *doc = "{\"versions\": [{\"id\": \"v1.1\", \"status\": \"DEPRECATED\"},"
                      " {\"id\": \"v2.0\", \"x\": {\"id\": \"v1.0\"}}]}";
    size_t len;
    char *out = versions_with_v1(doc, strlen(doc), UP, GW, &len);
    ck_assert_ptr_nonnull(out);
    ck_assert_ptr_null(strstr(strstr(out, "v2.0"), "\"v1.1\""));
    ck_assert_ptr_nonnull(strstr(out, "{\"id\":\"v1.0\",\"status\":\"DEPRECATED\""));
    free(out);
}
END_TEST

START_TEST(refused_documents)
{
    static const char *const bad[] = {
        "", "[]", "\"x\"", "{}", "{\"versions\": {}}", "{\"versions\": [}", "{\"a\": 1}",
        "{\"x\": {\"versions\": []}}", NULL,
    };
    size_t len;
    for (size_t i = 0; bad[i] != NULL; i++)
        ck_assert_msg(versions_with_v1(bad[i], strlen(bad[i]), UP, GW, &len) == NULL, "%s", bad[i]);
    char deep[300];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof(deep), "{\"versions\": [], \"d\": ");
    for (int i = 0; i < 70; i++)
        deep[n++] = '[';
    for (int i = 0; i < 70; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    ck_assert_ptr_null(versions_with_v1(deep, n, UP, GW, &len));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("versions");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, adds_v1_and_rewrites_links);
    tcase_add_test(tc, existing_v1_not_repeated);
    tcase_add_test(tc, links_matched_without_scheme);
    tcase_add_test(tc, refused_documents);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
