/* plan: replace = add the missing, delete the unlisted. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "plan.h"

static mb_strset *set_of(const char *const *items)
{
    mb_strset *s = strset_new();
    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; items[i] != NULL; i++)
        ck_assert_int_ge(strset_add(s, items[i], strlen(items[i])), 0);
    return s;
}

static void assert_set(const mb_strset *s, const char *const *want)
{
    size_t n = 0;
    while (want[n] != NULL)
        n++;
    ck_assert_uint_eq(strset_count(s), n);
    for (size_t i = 0; i < n; i++)
        ck_assert_str_eq(strset_get(s, i), want[i]);
}

typedef struct {
    const char *name;
    const char *desired[6], *current[6], *add[6], *del[6];
} plan_case;

static const plan_case cases[] = {
    { "both empty", { NULL }, { NULL }, { NULL }, { NULL } },
    { "replace with nothing removes all", { NULL }, { "a", "b", NULL }, { NULL }, { "a", "b", NULL } },
    { "from nothing adds all", { "b", "a", NULL }, { NULL }, { "b", "a", NULL }, { NULL } },
    { "already converged", { "a", "b", NULL }, { "b", "a", NULL }, { NULL }, { NULL } },
    { "mixed, orders kept", { "d", "a", "e", NULL }, { "c", "a", "b", NULL },
      { "d", "e", NULL }, { "c", "b", NULL } },
    { "disjoint", { "x", "y", NULL }, { "a", NULL }, { "x", "y", NULL }, { "a", NULL } },
    { "prefixes are different ids", { "ab", NULL }, { "abc", "a", NULL },
      { "ab", NULL }, { "abc", "a", NULL } },
};

START_TEST(test_plan_cases)
{
    const plan_case *c = &cases[_i];
    mb_strset *desired = set_of(c->desired), *current = set_of(c->current);
    mb_strset *add = strset_new(), *del = strset_new();
    ck_assert_int_eq(plan_replace(desired, current, add, del), 0);
    assert_set(add, c->add);
    assert_set(del, c->del);
    /* the inputs are untouched */
    assert_set(desired, c->desired);
    assert_set(current, c->current);
    strset_free(desired);
    strset_free(current);
    strset_free(add);
    strset_free(del);
}
END_TEST

START_TEST(test_plan_large)
{
    mb_strset *desired = strset_new(), *current = strset_new();
    mb_strset *add = strset_new(), *del = strset_new();
    char buf[32];
    for (int i = 0; i < 3000; i++) {      /* desired: 0..2999, current: 1000..3999 */
        int n = snprintf(buf, sizeof(buf), "m%d", i);
        strset_add(desired, buf, (size_t)n);
        n = snprintf(buf, sizeof(buf), "m%d", i + 1000);
        strset_add(current, buf, (size_t)n);
    }
    ck_assert_int_eq(plan_replace(desired, current, add, del), 0);
    ck_assert_uint_eq(strset_count(add), 1000);
    ck_assert_uint_eq(strset_count(del), 1000);
    ck_assert_str_eq(strset_get(add, 0), "m0");
    ck_assert_str_eq(strset_get(add, 999), "m999");
    ck_assert_str_eq(strset_get(del, 0), "m3000");
    ck_assert_str_eq(strset_get(del, 999), "m3999");
    strset_free(desired);
    strset_free(current);
    strset_free(add);
    strset_free(del);
}
END_TEST

static Suite *plan_suite(void)
{
    Suite *s = suite_create("plan");
    TCase *tc = tcase_create("replace");
    tcase_add_loop_test(tc, test_plan_cases, 0, (int)(sizeof(cases) / sizeof(cases[0])));
    tcase_add_test(tc, test_plan_large);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(plan_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
