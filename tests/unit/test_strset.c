/* strset: ordered set of distinct strings. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "strset.h"

START_TEST(test_empty)
{
    mb_strset *s = strset_new();
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(strset_count(s), 0);
    ck_assert_int_eq(strset_contains(s, "a", 1), 0);
    ck_assert_ptr_null(strset_get(s, 0));
    strset_free(s);
    strset_free(NULL);
}
END_TEST

START_TEST(test_add_dup_contains)
{
    mb_strset *s = strset_new();
    ck_assert_int_eq(strset_add(s, "alpha", 5), 1);
    ck_assert_int_eq(strset_add(s, "beta", 4), 1);
    ck_assert_int_eq(strset_add(s, "alpha", 5), 0);
    ck_assert_uint_eq(strset_count(s), 2);
    ck_assert_int_eq(strset_contains(s, "alpha", 5), 1);
    ck_assert_int_eq(strset_contains(s, "beta", 4), 1);
    ck_assert_int_eq(strset_contains(s, "gamma", 5), 0);
    strset_free(s);
}
END_TEST

/* Only len bytes count: prefixes and extensions are different strings. */
START_TEST(test_lengths)
{
    mb_strset *s = strset_new();
    ck_assert_int_eq(strset_add(s, "abcdef", 3), 1);        /* "abc" */
    ck_assert_str_eq(strset_get(s, 0), "abc");
    ck_assert_int_eq(strset_contains(s, "ab", 2), 0);
    ck_assert_int_eq(strset_contains(s, "abcd", 4), 0);
    ck_assert_int_eq(strset_contains(s, "abc", 3), 1);
    ck_assert_int_eq(strset_add(s, "ab", 2), 1);
    ck_assert_int_eq(strset_add(s, "abcd", 4), 1);
    ck_assert_int_eq(strset_add(s, "abc", 3), 0);
    ck_assert_uint_eq(strset_count(s), 3);
    ck_assert_int_eq(strset_add(s, "", 0), 1);
    ck_assert_int_eq(strset_contains(s, "", 0), 1);
    ck_assert_str_eq(strset_get(s, 3), "");
    strset_free(s);
}
END_TEST

START_TEST(test_order)
{
    static const char *const in[] = { "t3", "t1", "t2", "t1", "t0", "t3", "t9" };
    static const char *const want[] = { "t3", "t1", "t2", "t0", "t9" };
    mb_strset *s = strset_new();
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
        ck_assert_int_ge(strset_add(s, in[i], strlen(in[i])), 0);
    ck_assert_uint_eq(strset_count(s), 5);
    for (size_t i = 0; i < 5; i++)
        ck_assert_str_eq(strset_get(s, i), want[i]);
    ck_assert_ptr_null(strset_get(s, 5));
    strset_free(s);
}
END_TEST

/* Well past 10000 (the default max_per_request): rehashing keeps every
 * string findable and the insertion order intact. */
START_TEST(test_growth)
{
    const size_t n = 25000;
    char buf[32];
    mb_strset *s = strset_new();
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(buf, sizeof(buf), "member-%zu", i);
        ck_assert_int_eq(strset_add(s, buf, (size_t)len), 1);
    }
    ck_assert_uint_eq(strset_count(s), n);
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(buf, sizeof(buf), "member-%zu", i);
        ck_assert_int_eq(strset_contains(s, buf, (size_t)len), 1);
        ck_assert_int_eq(strset_add(s, buf, (size_t)len), 0);
        ck_assert_str_eq(strset_get(s, i), buf);
    }
    ck_assert_int_eq(strset_contains(s, "member-25000", 12), 0);
    ck_assert_uint_eq(strset_count(s), n);
    strset_free(s);
}
END_TEST

/* Strings with bytes >= 0x80 are plain bytes to the set. */
START_TEST(test_binary_bytes)
{
    mb_strset *s = strset_new();
    ck_assert_int_eq(strset_add(s, "caf\xc3\xa9", 5), 1);
    ck_assert_int_eq(strset_add(s, "caf\xc3\xa8", 5), 1);
    ck_assert_int_eq(strset_add(s, "\xff", 1), 1);
    ck_assert_int_eq(strset_contains(s, "caf\xc3\xa9", 5), 1);
    ck_assert_int_eq(strset_contains(s, "cafe", 4), 0);
    ck_assert_uint_eq(strset_count(s), 3);
    strset_free(s);
}
END_TEST

static Suite *strset_suite(void)
{
    Suite *s = suite_create("strset");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_add_dup_contains);
    tcase_add_test(tc, test_lengths);
    tcase_add_test(tc, test_order);
    tcase_add_test(tc, test_growth);
    tcase_add_test(tc, test_binary_bytes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(strset_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
