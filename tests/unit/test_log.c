/* log: levelled log lines and the access log (log.h).
 *
 * stderr is captured by pointing fd 2 at a temporary file with dup2() for
 * the duration of a check; log.c writes with write(2) on the descriptor, so
 * whatever it writes lands in that file. Every test sets the level and the
 * access log target itself: the module's state is process-wide. */
#include <check.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* ---- capturing fd 2 ------------------------------------------------------ */

static int saved_stderr = -1;
static int capture_fd = -1;

static void capture_begin(void)
{
    char tmpl[] = "/tmp/mb_test_log_stderr_XXXXXX";
    fflush(stderr);
    capture_fd = mkstemp(tmpl);
    ck_assert_int_ge(capture_fd, 0);
    unlink(tmpl);
    saved_stderr = dup(STDERR_FILENO);
    ck_assert_int_ge(saved_stderr, 0);
    ck_assert_int_eq(dup2(capture_fd, STDERR_FILENO), STDERR_FILENO);
}

/* Reads a whole file descriptor from offset 0 (malloc'd, NUL-terminated). */
static char *slurp_fd(int fd, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq((int)lseek(fd, 0, SEEK_SET), 0);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            ck_assert_ptr_nonnull(buf);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        ck_assert_int_ge((int)r, 0);
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Restores fd 2 and returns what was written to it meanwhile. */
static char *capture_end(size_t *len)
{
    ck_assert_int_eq(dup2(saved_stderr, STDERR_FILENO), STDERR_FILENO);
    close(saved_stderr);
    saved_stderr = -1;
    char *out = slurp_fd(capture_fd, len);
    close(capture_fd);
    capture_fd = -1;
    return out;
}

static size_t count_char(const char *s, size_t len, char c)
{
    size_t k = 0;
    for (size_t i = 0; i < len; i++)
        k += s[i] == c;
    return k;
}

static void assert_matches(const char *text, const char *pattern)
{
    regex_t re;
    ck_assert_int_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    ck_assert_msg(rc == 0, "'%s' does not match /%s/", text, pattern);
}

#define TS_RE "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"

/* The part of an access line after "<timestamp> " (the line must have one). */
static const char *after_timestamp(const char *line)
{
    const char *sp = strchr(line, ' ');
    ck_assert_ptr_nonnull(sp);
    ck_assert_int_eq((int)(sp - line), 24);   /* 2026-11-22T06:40:01.123Z */
    return sp + 1;
}

/* ---- access log ------------------------------------------------------------ */

START_TEST(test_access_format)
{
    size_t len = 0;
    ck_assert_int_eq(log_open_access("-"), 0);
    capture_begin();
    log_access("req-7c3f1d2e-5b8a-4c61-9e0f-0123456789ab", "127.0.0.1:40000", "PUT",
               "/v1/images/img1/members/tenant1", 204, 12.34, 3, 1);
    char *out = capture_end(&len);

    assert_matches(out, "^" TS_RE " access req=");
    ck_assert_str_eq(after_timestamp(out),
                     "access req=req-7c3f1d2e-5b8a-4c61-9e0f-0123456789ab client=127.0.0.1:40000"
                     " method=PUT path=/v1/images/img1/members/tenant1 status=204"
                     " duration_ms=12.3 upstream_calls=3 upstream_failed=1\n");
    ck_assert_uint_eq(count_char(out, len, '\n'), 1);
    ck_assert_int_eq(out[len - 1], '\n');
    free(out);
}
END_TEST

START_TEST(test_access_numbers)
{
    ck_assert_int_eq(log_open_access("-"), 0);
    capture_begin();
    log_access("r", "c", "GET", "/healthcheck", 200, 0.0, 0, 0);
    log_access("r", "c", "GET", "/x", 502, 30000.06, 4294967295u, 7);
    char *out = capture_end(NULL);
    char *second = strchr(out, '\n');
    ck_assert_ptr_nonnull(second);
    *second++ = '\0';
    ck_assert_str_eq(after_timestamp(out),
                     "access req=r client=c method=GET path=/healthcheck status=200"
                     " duration_ms=0.0 upstream_calls=0 upstream_failed=0");
    ck_assert_str_eq(after_timestamp(second),
                     "access req=r client=c method=GET path=/x status=502"
                     " duration_ms=30000.1 upstream_calls=4294967295 upstream_failed=7\n");
    free(out);
}
END_TEST

/* Control characters, space, '%', DEL and every byte >= 0x80 become %XX
 * (upper-case hex), so the path can neither split the line nor fake fields. */
START_TEST(test_access_path_escaping)
{
    size_t len = 0;
    ck_assert_int_eq(log_open_access("-"), 0);
    capture_begin();
    log_access("r", "c", "GET",
               "/v1/images/a b%2F\t\x01\x1f\x7f/caf\xc3\xa9\xff\r\nstatus=200 x", 400, 1.0, 0, 0);
    char *out = capture_end(&len);
    ck_assert_str_eq(after_timestamp(out),
                     "access req=r client=c method=GET"
                     " path=/v1/images/a%20b%252F%09%01%1F%7F/caf%C3%A9%FF%0D%0Astatus=200%20x"
                     " status=400 duration_ms=1.0 upstream_calls=0 upstream_failed=0\n");
    ck_assert_uint_eq(count_char(out, len, '\n'), 1);
    ck_assert_uint_eq(count_char(out, len, '\r'), 0);
    free(out);
}
END_TEST

/* The other text fields are escaped the same way; absent or empty ones are "-". */
START_TEST(test_access_other_fields)
{
    ck_assert_int_eq(log_open_access("-"), 0);
    capture_begin();
    log_access("id with space\n", "10.0.0.1:1 x=%", "GE\x01T", "/p", 200, 0.5, 1, 0);
    log_access(NULL, "", NULL, "", 400, 0.0, 0, 0);
    char *out = capture_end(NULL);
    char *second = strchr(out, '\n');
    ck_assert_ptr_nonnull(second);
    *second++ = '\0';
    ck_assert_str_eq(after_timestamp(out),
                     "access req=id%20with%20space%0A client=10.0.0.1:1%20x=%25"
                     " method=GE%01T path=/p status=200 duration_ms=0.5"
                     " upstream_calls=1 upstream_failed=0");
    ck_assert_str_eq(after_timestamp(second),
                     "access req=- client=- method=- path=- status=400 duration_ms=0.0"
                     " upstream_calls=0 upstream_failed=0\n");
    free(out);
}
END_TEST

/* A path far longer than a field may be is cut with "...", still one line
 * with every field after it intact. */
START_TEST(test_access_long_path_cut)
{
    size_t len = 0;
    char path[6001];
    memset(path, ' ', sizeof(path) - 1);   /* each byte escapes to 3 */
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    ck_assert_int_eq(log_open_access("-"), 0);
    capture_begin();
    log_access("r", "c", "GET", path, 414, 2.0, 0, 0);
    char *out = capture_end(&len);

    ck_assert_uint_eq(count_char(out, len, '\n'), 1);
    ck_assert_int_eq(out[len - 1], '\n');
    ck_assert_uint_le(len, 4096);
    const char *p = strstr(out, " path=/");
    ck_assert_ptr_nonnull(p);
    const char *cut = strstr(p, "... status=414 duration_ms=2.0 upstream_calls=0 upstream_failed=0\n");
    ck_assert_ptr_nonnull(cut);
    /* the escaped path is whole "%20" triples, at most 2048 bytes */
    size_t field = (size_t)(cut - (p + 7));
    ck_assert_uint_le(field, 2048);
    ck_assert_uint_gt(field, 2000);
    ck_assert_uint_eq(field % 3, 0);
    for (size_t i = 0; i < field; i += 3)
        ck_assert_int_eq(strncmp(p + 7 + i, "%20", 3), 0);
    free(out);
}
END_TEST

START_TEST(test_access_off)
{
    size_t len = 1;
    ck_assert_int_eq(log_open_access("off"), 0);
    log_set_level(LOG_INFO);
    capture_begin();
    log_access("r", "c", "GET", "/healthcheck", 200, 0.1, 0, 0);
    char *out = capture_end(&len);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(out, "");
    free(out);

    /* the levelled log still goes to stderr */
    capture_begin();
    log_info("still here");
    log_access("r", "c", "GET", "/healthcheck", 200, 0.1, 0, 0);
    out = capture_end(&len);
    assert_matches(out, "^" TS_RE " memberbridge\\[[0-9]+\\] info: still here\n$");
    free(out);

    /* "-" brings the access log back to stderr */
    ck_assert_int_eq(log_open_access("-"), 0);
    capture_begin();
    log_access("r", "c", "GET", "/back", 200, 0.1, 0, 0);
    out = capture_end(NULL);
    ck_assert_ptr_nonnull(strstr(out, " access req=r client=c method=GET path=/back status=200"));
    free(out);
}
END_TEST

START_TEST(test_access_file_appends)
{
    char path[] = "/tmp/mb_test_log_access_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq((int)write(fd, "existing line\n", 14), 14);
    close(fd);

    ck_assert_int_eq(log_open_access(path), 0);
    capture_begin();
    log_access("r1", "c", "GET", "/one", 200, 1.0, 0, 0);
    log_access("r2", "c", "PUT", "/two", 204, 2.0, 1, 0);
    char *err = capture_end(NULL);
    ck_assert_str_eq(err, "");            /* nothing on stderr */
    free(err);

    /* reopening appends too, and closes the previous file */
    ck_assert_int_eq(log_open_access(path), 0);
    log_access("r3", "c", "DELETE", "/three", 404, 3.0, 1, 1);
    log_close_access();
    log_access("r4", "c", "GET", "/after-close", 200, 0.0, 0, 0);   /* dropped */

    fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    size_t len = 0;
    char *out = slurp_fd(fd, &len);
    close(fd);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);   /* mkstemp's mode is kept */
    unlink(path);

    ck_assert_uint_eq(count_char(out, len, '\n'), 4);
    ck_assert_int_eq(strncmp(out, "existing line\n", 14), 0);
    char *l1 = out + 14;
    char *l2 = strchr(l1, '\n') + 1;
    char *l3 = strchr(l2, '\n') + 1;
    l1[l2 - l1 - 1] = '\0';
    l2[l3 - l2 - 1] = '\0';
    ck_assert_str_eq(after_timestamp(l1),
                     "access req=r1 client=c method=GET path=/one status=200 duration_ms=1.0"
                     " upstream_calls=0 upstream_failed=0");
    ck_assert_str_eq(after_timestamp(l2),
                     "access req=r2 client=c method=PUT path=/two status=204 duration_ms=2.0"
                     " upstream_calls=1 upstream_failed=0");
    ck_assert_str_eq(after_timestamp(l3),
                     "access req=r3 client=c method=DELETE path=/three status=404 duration_ms=3.0"
                     " upstream_calls=1 upstream_failed=1\n");
    ck_assert_ptr_null(strstr(out, "after-close"));
    free(out);
}
END_TEST

START_TEST(test_access_file_new_and_unwritable)
{
    char dir[] = "/tmp/mb_test_log_dir_XXXXXX";
    char path[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/access.log", dir);

    mode_t old_mask = umask(022);
    ck_assert_int_eq(log_open_access(path), 0);          /* created */
    umask(old_mask);
    log_access("r", "c", "GET", "/new", 200, 0.0, 0, 0);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0640);           /* not world-readable */

    /* a path that cannot be opened fails and keeps the current target */
    char bad[300];
    snprintf(bad, sizeof(bad), "%s/no/such/dir/access.log", dir);
    ck_assert_int_eq(log_open_access(bad), -1);
    log_access("r", "c", "GET", "/still-file", 200, 0.0, 0, 0);
    log_close_access();

    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    size_t len = 0;
    char *out = slurp_fd(fd, &len);
    close(fd);
    unlink(path);
    rmdir(dir);
    ck_assert_uint_eq(count_char(out, len, '\n'), 2);
    ck_assert_ptr_nonnull(strstr(out, " path=/new status=200"));
    ck_assert_ptr_nonnull(strstr(out, " path=/still-file status=200"));
    free(out);
}
END_TEST

/* ---- levelled log ---------------------------------------------------------- */

START_TEST(test_level_line_format)
{
    log_set_level(LOG_DEBUG);
    capture_begin();
    log_warning("upstream answered %d to %s", 413, "POST member t3");
    char *out = capture_end(NULL);
    char want[128];
    snprintf(want, sizeof(want), " memberbridge[%ld] warning: upstream answered 413 to POST member t3\n",
             (long)getpid());
    assert_matches(out, "^" TS_RE " memberbridge");
    ck_assert_str_eq(out + 24, want);
    free(out);
}
END_TEST

START_TEST(test_level_filter_info)
{
    size_t len = 0;
    log_set_level(LOG_INFO);
    capture_begin();
    log_debug("hidden %d", 1);
    log_info("shown %d", 2);
    log_warning("shown %d", 3);
    log_error("shown %d", 4);
    mb_log((mb_log_level)(LOG_ERROR + 1), "out of range");
    char *out = capture_end(&len);
    ck_assert_uint_eq(count_char(out, len, '\n'), 3);
    ck_assert_ptr_null(strstr(out, "hidden"));
    ck_assert_ptr_null(strstr(out, "debug:"));
    ck_assert_ptr_null(strstr(out, "out of range"));
    assert_matches(out, "^" TS_RE " memberbridge\\[[0-9]+\\] info: shown 2\n"
                        TS_RE " memberbridge\\[[0-9]+\\] warning: shown 3\n"
                        TS_RE " memberbridge\\[[0-9]+\\] error: shown 4\n$");
    free(out);
}
END_TEST

START_TEST(test_level_filter_other_levels)
{
    size_t len = 0;
    log_set_level(LOG_ERROR);
    capture_begin();
    log_info("no");
    log_warning("no");
    log_error("yes");
    char *out = capture_end(&len);
    ck_assert_uint_eq(count_char(out, len, '\n'), 1);
    assert_matches(out, "^" TS_RE " memberbridge\\[[0-9]+\\] error: yes\n$");
    free(out);

    log_set_level(LOG_DEBUG);
    capture_begin();
    log_debug("dbg %s", "on");
    out = capture_end(&len);
    assert_matches(out, "^" TS_RE " memberbridge\\[[0-9]+\\] debug: dbg on\n$");
    free(out);

    log_set_level(LOG_WARNING);
    capture_begin();
    log_info("no");
    log_debug("no");
    out = capture_end(&len);
    ck_assert_uint_eq(len, 0);
    free(out);
}
END_TEST

/* One call is one line: newlines and other control characters in the
 * message (an id from a request, an upstream error text) become '?'. */
START_TEST(test_one_line_per_call)
{
    size_t len = 0;
    log_set_level(LOG_INFO);
    capture_begin();
    log_info("first\nsecond\r\nthird\tfourth\x1b[31m\x7f end");
    log_error("%s", "a\n\n\nb");
    char *out = capture_end(&len);
    ck_assert_uint_eq(count_char(out, len, '\n'), 2);
    ck_assert_uint_eq(count_char(out, len, '\r'), 0);
    ck_assert_uint_eq(count_char(out, len, '\x1b'), 0);
    char *second = strchr(out, '\n') + 1;
    assert_matches(out, "^" TS_RE " memberbridge\\[[0-9]+\\] info: first\\?second\\?\\?third\\?fourth\\?\\[31m\\? end\n");
    assert_matches(second, "^" TS_RE " memberbridge\\[[0-9]+\\] error: a\\?\\?\\?b\n$");
    free(out);
}
END_TEST

/* A message longer than a line may be is cut, still one line ending in '\n'. */
START_TEST(test_long_message_cut)
{
    size_t len = 0;
    char *msg = malloc(10001);
    ck_assert_ptr_nonnull(msg);
    memset(msg, 'm', 10000);
    msg[10000] = '\0';
    msg[5000] = '\n';
    log_set_level(LOG_INFO);
    capture_begin();
    log_info("%s", msg);
    log_info("next");
    char *out = capture_end(&len);
    free(msg);
    ck_assert_uint_eq(count_char(out, len, '\n'), 2);
    char *second = strchr(out, '\n') + 1;
    size_t first_len = (size_t)(second - out);
    ck_assert_uint_eq(first_len, 4095);         /* LOG_LINE_MAX - 1, incl. '\n' */
    ck_assert_uint_eq(count_char(out, first_len, '?'), 0);   /* cut before byte 5000 */
    assert_matches(second, "^" TS_RE " memberbridge\\[[0-9]+\\] info: next\n$");
    free(out);
}
END_TEST

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("access");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_access_format);
    tcase_add_test(tc, test_access_numbers);
    tcase_add_test(tc, test_access_path_escaping);
    tcase_add_test(tc, test_access_other_fields);
    tcase_add_test(tc, test_access_long_path_cut);
    tcase_add_test(tc, test_access_off);
    tcase_add_test(tc, test_access_file_appends);
    tcase_add_test(tc, test_access_file_new_and_unwritable);
    suite_add_tcase(s, tc);

    tc = tcase_create("levels");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_level_line_format);
    tcase_add_test(tc, test_level_filter_info);
    tcase_add_test(tc, test_level_filter_other_levels);
    tcase_add_test(tc, test_one_line_per_call);
    tcase_add_test(tc, test_long_message_cut);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(log_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
