/* fanout: at most `limit` jobs in flight, all_done exactly once. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "fanout.h"

/* A test harness around one fanout: records what happened. */
typedef struct {
    mb_fanout f;
    size_t    n;
    size_t    in_flight, max_in_flight;
    size_t    started;
    size_t   *start_order;   /* job index of each start */
    size_t   *pending;       /* jobs started and not yet done (async ones) */
    size_t    npending;
    int       all_done_calls;
    size_t    finished_at_all_done;
    int       call_depth, max_call_depth;   /* nesting of start() */
    int       sync_every;    /* 0: all async; k: jobs with index % k == 0 end inside start() */
} harness;

static void job_done(harness *h)
{
    h->in_flight--;
    fanout_job_done(&h->f);
}

static void on_start(size_t job, void *arg)
{
    harness *h = arg;
    h->call_depth++;
    if (h->call_depth > h->max_call_depth)
        h->max_call_depth = h->call_depth;
    ck_assert_uint_lt(job, h->n);
    ck_assert_uint_eq(job, h->started);   /* jobs start in order, once each */
    h->start_order[h->started++] = job;
    h->in_flight++;
    if (h->in_flight > h->max_in_flight)
        h->max_in_flight = h->in_flight;
    ck_assert_int_eq(h->all_done_calls, 0);
    if (h->sync_every != 0 && job % (size_t)h->sync_every == 0)
        job_done(h);                      /* ends before start() returns */
    else
        h->pending[h->npending++] = job;
    h->call_depth--;
}

static void on_all_done(void *arg)
{
    harness *h = arg;
    h->all_done_calls++;
    h->finished_at_all_done = h->f.finished;
    ck_assert_uint_eq(h->in_flight, 0);
}

static harness *harness_new(size_t n, size_t limit, int sync_every)
{
    harness *h = calloc(1, sizeof(*h));
    ck_assert_ptr_nonnull(h);
    h->n = n;
    h->sync_every = sync_every;
    h->start_order = calloc(n + 1, sizeof(size_t));
    h->pending = calloc(n + 1, sizeof(size_t));
    ck_assert_ptr_nonnull(h->start_order);
    ck_assert_ptr_nonnull(h->pending);
    fanout_init(&h->f, n, limit, on_start, on_all_done, h);
    return h;
}

static void harness_free(harness *h)
{
    free(h->start_order);
    free(h->pending);
    free(h);
}

/* Ends pending jobs one at a time, oldest first (fifo) or newest first,
 * until none is left. */
static void drain(harness *h, int fifo)
{
    while (h->npending > 0) {
        ck_assert_int_eq(h->all_done_calls, 0);
        if (fifo) {
            h->npending--;
            memmove(h->pending, h->pending + 1, h->npending * sizeof(size_t));
        } else {
            h->npending--;
        }
        job_done(h);
    }
}

START_TEST(test_zero_jobs)
{
    harness *h = harness_new(0, 4, 0);
    fanout_run(&h->f);
    ck_assert_int_eq(h->all_done_calls, 1);
    ck_assert_uint_eq(h->started, 0);
    harness_free(h);
}
END_TEST

START_TEST(test_limit_respected_fifo)
{
    harness *h = harness_new(50, 4, 0);
    fanout_run(&h->f);
    ck_assert_uint_eq(h->started, 4);       /* only `limit` start at once */
    ck_assert_uint_eq(h->in_flight, 4);
    ck_assert_int_eq(h->all_done_calls, 0);
    drain(h, 1);
    ck_assert_uint_eq(h->started, 50);
    ck_assert_uint_eq(h->max_in_flight, 4);
    ck_assert_int_eq(h->all_done_calls, 1);
    ck_assert_uint_eq(h->finished_at_all_done, 50);
    for (size_t i = 0; i < 50; i++)
        ck_assert_uint_eq(h->start_order[i], i);
    harness_free(h);
}
END_TEST

START_TEST(test_limit_respected_lifo)
{
    harness *h = harness_new(37, 5, 0);
    fanout_run(&h->f);
    ck_assert_uint_eq(h->started, 5);
    drain(h, 0);
    ck_assert_uint_eq(h->started, 37);
    ck_assert_uint_eq(h->max_in_flight, 5);
    ck_assert_int_eq(h->all_done_calls, 1);
    harness_free(h);
}
END_TEST

START_TEST(test_limit_larger_than_n)
{
    harness *h = harness_new(3, 100, 0);
    fanout_run(&h->f);
    ck_assert_uint_eq(h->started, 3);
    ck_assert_uint_eq(h->max_in_flight, 3);
    drain(h, 1);
    ck_assert_int_eq(h->all_done_calls, 1);
    harness_free(h);
}
END_TEST

START_TEST(test_limit_zero_means_one)
{
    harness *h = harness_new(6, 0, 0);
    fanout_run(&h->f);
    ck_assert_uint_eq(h->started, 1);
    drain(h, 1);
    ck_assert_uint_eq(h->max_in_flight, 1);
    ck_assert_int_eq(h->all_done_calls, 1);
    harness_free(h);
}
END_TEST

/* Every job ends inside start(): no recursion (start() never nests), every
 * job runs, all_done once. 100000 nested calls would blow the stack. */
START_TEST(test_synchronous_100000)
{
    static const size_t limits[] = { 1, 16, 1000 };
    for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
        harness *h = harness_new(100000, limits[l], 1);
        fanout_run(&h->f);
        ck_assert_uint_eq(h->started, 100000);
        ck_assert_int_eq(h->max_call_depth, 1);
        ck_assert_uint_eq(h->max_in_flight, 1);
        ck_assert_int_eq(h->all_done_calls, 1);
        ck_assert_uint_eq(h->finished_at_all_done, 100000);
        harness_free(h);
    }
}
END_TEST

/* Some jobs end inside start(), the others later. */
START_TEST(test_mixed)
{
    harness *h = harness_new(1000, 8, 3);
    fanout_run(&h->f);
    ck_assert_uint_le(h->in_flight, 8);
    ck_assert_int_eq(h->all_done_calls, 0);
    drain(h, 1);
    ck_assert_uint_eq(h->started, 1000);
    ck_assert_uint_le(h->max_in_flight, 8);
    ck_assert_int_eq(h->max_call_depth, 1);
    ck_assert_int_eq(h->all_done_calls, 1);
    harness_free(h);
}
END_TEST

/* The last job ending inside start() still gets all_done exactly once. */
START_TEST(test_last_job_synchronous)
{
    harness *h = harness_new(1, 4, 1);
    fanout_run(&h->f);
    ck_assert_uint_eq(h->started, 1);
    ck_assert_int_eq(h->all_done_calls, 1);
    harness_free(h);
}
END_TEST

/* all_done may free the fanout (it lives in the request's state). */
typedef struct {
    mb_fanout f;
    int      *flag;
} owned;

static void owned_start(size_t job, void *arg)
{
    (void)job;
    owned *o = arg;
    fanout_job_done(&o->f);
}

static void owned_done(void *arg)
{
    owned *o = arg;
    (*o->flag)++;
    free(o);
}

START_TEST(test_all_done_frees)
{
    int flag = 0;
    owned *o = malloc(sizeof(*o));
    ck_assert_ptr_nonnull(o);
    o->flag = &flag;
    fanout_init(&o->f, 10, 3, owned_start, owned_done, o);
    fanout_run(&o->f);   /* ASan reports a use after free if pump touches f */
    ck_assert_int_eq(flag, 1);
}
END_TEST

static Suite *fanout_suite(void)
{
    Suite *s = suite_create("fanout");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_zero_jobs);
    tcase_add_test(tc, test_limit_respected_fifo);
    tcase_add_test(tc, test_limit_respected_lifo);
    tcase_add_test(tc, test_limit_larger_than_n);
    tcase_add_test(tc, test_limit_zero_means_one);
    tcase_add_test(tc, test_synchronous_100000);
    tcase_add_test(tc, test_mixed);
    tcase_add_test(tc, test_last_job_synchronous);
    tcase_add_test(tc, test_all_done_frees);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fanout_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
