/* metrics: counters, histograms and gauges for GET /metrics, rendered in
 * the Prometheus text format 0.0.4. Counts are read back by parsing the
 * rendered text. */
#include <check.h>
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_config.h"
#include "metrics.h"

#define LATENCY "memberbridge_upstream_request_duration_seconds"
#define FANOUT  "memberbridge_fanout_members"

static const char *const latency_le[] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10", "30", "+Inf",
};
#define NLAT (sizeof(latency_le) / sizeof(latency_le[0]))

static const char *const fanout_le[] = {
    "1", "2", "5", "10", "20", "50", "100", "200", "500", "1000", "2000",
    "5000", "10000", "+Inf",
};
#define NFAN (sizeof(fanout_le) / sizeof(fanout_le[0]))

static void setup(void)
{
    metrics_reset();
}

static char *render(void)
{
    size_t len = 0;
    char *text = metrics_render(&len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(strlen(text), len);
    return text;
}

/* The value of the sample line that starts with exactly `series` (name and
 * labels) then a space. Returns 1 and sets *out, or 0 when absent. */
static int find_value(const char *text, const char *series, double *out)
{
    size_t n = strlen(series);
    const char *line = text;

    while (*line != '\0') {
        const char *eol = strchr(line, '\n');
        if (eol == NULL)
            eol = line + strlen(line);
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            char *end;
            *out = strtod(line + n + 1, &end);
            ck_assert_msg(end == eol, "bad value on %s", series);
            return 1;
        }
        line = *eol ? eol + 1 : eol;
    }
    return 0;
}

static double value(const char *text, const char *series)
{
    double v = 0;
    ck_assert_msg(find_value(text, series, &v), "missing %s", series);
    return v;
}

static int has(const char *text, const char *series)
{
    double v;
    return find_value(text, series, &v);
}

static double bucket(const char *text, const char *name, const char *le)
{
    char series[160];
    snprintf(series, sizeof(series), "%s_bucket{le=\"%s\"}", name, le);
    return value(text, series);
}

/* ---- a small checker of the exposition format */

#define MAX_FAMILIES 32

typedef struct {
    char name[96];
    int  help, type, histogram;
} fam;

static fam *fam_find(fam *f, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(f[i].name) == len && strncmp(f[i].name, name, len) == 0)
            return &f[i];
    return NULL;
}

static size_t name_len(const char *s)
{
    size_t i = 0;
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return 0;
    while (isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':')
        i++;
    return i;
}

/* {name="value",...}: returns the length, 0 when malformed. */
static size_t labels_len(const char *s)
{
    size_t i = 1;
    if (s[0] != '{')
        return 0;
    for (;;) {
        size_t n = name_len(s + i);
        if (n == 0 || s[i + n] != '=' || s[i + n + 1] != '"')
            return 0;
        i += n + 2;
        while (s[i] != '"') {
            if (s[i] == '\0' || s[i] == '\n')
                return 0;
            i += s[i] == '\\' ? 2 : 1;
        }
        i++;
        if (s[i] == '}')
            return i + 1;
        if (s[i] != ',')
            return 0;
        i++;
    }
}

static void check_comment(fam *f, size_t *nf, const char *line, const char *eol)
{
    int help = strncmp(line, "# HELP ", 7) == 0;
    int type = strncmp(line, "# TYPE ", 7) == 0;
    const char *name = line + 7;
    size_t n;
    fam *it;

    ck_assert_msg(help || type, "unknown comment: %.*s", (int)(eol - line), line);
    n = name_len(name);
    ck_assert_msg(n > 0 && name[n] == ' ', "bad comment: %.*s", (int)(eol - line), line);
    it = fam_find(f, *nf, name, n);
    if (it == NULL) {
        ck_assert_uint_lt(*nf, MAX_FAMILIES);
        ck_assert_uint_lt(n, sizeof(it->name));
        it = &f[(*nf)++];
        memcpy(it->name, name, n);
        it->name[n] = '\0';
    }
    if (help) {
        ck_assert_msg(!it->help && !it->type, "HELP not first for %s", it->name);
        ck_assert_msg(eol - (name + n) > 1, "empty HELP for %s", it->name);
        it->help = 1;
    } else {
        const char *t = name + n + 1;
        size_t tl = (size_t)(eol - t);
        ck_assert_msg(!it->type, "second TYPE for %s", it->name);
        ck_assert_msg((tl == 7 && strncmp(t, "counter", 7) == 0) ||
                      (tl == 5 && strncmp(t, "gauge", 5) == 0) ||
                      (tl == 9 && strncmp(t, "histogram", 9) == 0),
                      "bad TYPE for %s", it->name);
        it->type = 1;
        it->histogram = tl == 9;
    }
}

/* The family of a sample: its name, or for a histogram the name without
 * _bucket, _sum or _count. */
static fam *sample_family(fam *f, size_t nf, const char *name, size_t n)
{
    static const char *const suffix[] = { "_bucket", "_sum", "_count" };
    fam *it = fam_find(f, nf, name, n);

    if (it != NULL && !it->histogram)
        return it;
    for (size_t i = 0; i < 3; i++) {
        size_t sl = strlen(suffix[i]);
        if (n > sl && strncmp(name + n - sl, suffix[i], sl) == 0) {
            it = fam_find(f, nf, name, n - sl);
            if (it != NULL && it->histogram)
                return it;
        }
    }
    return NULL;
}

static void check_sample(fam *f, size_t nf, const char *line, const char *eol)
{
    size_t n = name_len(line);
    const char *p = line + n;
    fam *it;
    char *end;

    ck_assert_msg(n > 0, "bad sample: %.*s", (int)(eol - line), line);
    it = sample_family(f, nf, line, n);
    ck_assert_msg(it != NULL && it->help && it->type,
                  "sample before HELP/TYPE: %.*s", (int)(eol - line), line);
    if (*p == '{') {
        size_t l = labels_len(p);
        ck_assert_msg(l > 0, "bad labels: %.*s", (int)(eol - line), line);
        p += l;
    }
    ck_assert_msg(*p == ' ' && p[1] != ' ', "bad separator: %.*s", (int)(eol - line), line);
    strtod(p + 1, &end);
    ck_assert_msg(end == eol && end > p + 1, "bad value: %.*s", (int)(eol - line), line);
}

static void check_format(const char *text)
{
    fam f[MAX_FAMILIES];
    size_t nf = 0;
    const char *line = text;

    memset(f, 0, sizeof(f));
    ck_assert(text[0] != '\0' && text[strlen(text) - 1] == '\n');
    while (*line != '\0') {
        const char *eol = strchr(line, '\n');
        ck_assert_ptr_nonnull(eol);
        ck_assert_msg(eol > line, "empty line");
        if (line[0] == '#')
            check_comment(f, &nf, line, eol);
        else
            check_sample(f, nf, line, eol);
        line = eol + 1;
    }
    for (size_t i = 0; i < nf; i++)
        ck_assert_msg(f[i].help && f[i].type, "%s lacks HELP or TYPE", f[i].name);
}

/* Buckets are cumulative (non-decreasing), +Inf equals _count. */
static void check_histogram(const char *text, const char *name,
                            const char *const *le, size_t n)
{
    char series[160];
    double prev = 0, b = 0;

    for (size_t i = 0; i < n; i++) {
        b = bucket(text, name, le[i]);
        ck_assert_msg(b >= prev, "%s le=%s decreases", name, le[i]);
        prev = b;
    }
    snprintf(series, sizeof(series), "%s_count", name);
    ck_assert(b == value(text, series));
    snprintf(series, sizeof(series), "%s_sum", name);
    ck_assert(value(text, series) >= 0);
}

/* ---- tests */

START_TEST(test_empty)
{
    char *text = render();
    check_format(text);
    ck_assert_ptr_nonnull(strstr(text, "# TYPE memberbridge_requests_total counter\n"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE memberbridge_upstream_requests_total counter\n"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE " LATENCY " histogram\n"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE " FANOUT " histogram\n"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE memberbridge_requests_in_flight gauge\n"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE memberbridge_open_connections gauge\n"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE memberbridge_worker_requests_total counter\n"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE memberbridge_workers gauge\n"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE memberbridge_config_reloads_total counter\n"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE memberbridge_build_info gauge\n"));
    ck_assert_ptr_null(strstr(text, "\nmemberbridge_requests_total{"));
    ck_assert_ptr_null(strstr(text, "\nmemberbridge_upstream_requests_total{"));
    ck_assert_ptr_null(strstr(text, "\nmemberbridge_worker_requests_total{"));
    for (size_t i = 0; i < NLAT; i++)
        ck_assert(bucket(text, LATENCY, latency_le[i]) == 0);
    for (size_t i = 0; i < NFAN; i++)
        ck_assert(bucket(text, FANOUT, fanout_le[i]) == 0);
    ck_assert_ptr_nonnull(strstr(text, "\n" LATENCY "_sum 0.000000\n"));
    ck_assert_ptr_nonnull(strstr(text, "\n" LATENCY "_count 0\n"));
    ck_assert_ptr_nonnull(strstr(text, "\n" FANOUT "_sum 0\n"));
    ck_assert_ptr_nonnull(strstr(text, "\n" FANOUT "_count 0\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nmemberbridge_requests_in_flight 0\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nmemberbridge_open_connections 0\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nmemberbridge_workers 0\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nmemberbridge_config_reloads_total{result=\"ok\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nmemberbridge_config_reloads_total{result=\"failed\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nmemberbridge_build_info{version=\"" PACKAGE_VERSION "\"} 1\n"));
    free(text);
}
END_TEST

START_TEST(test_requests)
{
    char *text;

    for (int i = 0; i < 3; i++)
        metrics_request(MR_ADD_MEMBER, 204);
    metrics_request(MR_ADD_MEMBER, 409);
    metrics_request(MR_REMOVE_MEMBER, 204);
    metrics_request(MR_REPLACE_MEMBERS, 200);
    metrics_request(MR_LIST_MEMBERS, 200);
    metrics_request(MR_SHARED_IMAGES, 200);
    metrics_request(MR_HEALTHCHECK, 200);
    metrics_request(MR_VERSIONS, 300);
    metrics_request(MR_PROXY, 502);
    metrics_request(MR_OTHER, 405);
    metrics_request(MR_OTHER, 100);
    metrics_request(MR_OTHER, 599);
    /* out of range: status "0" */
    metrics_request(MR_PROXY, 0);
    metrics_request(MR_PROXY, 99);
    metrics_request(MR_PROXY, 600);
    metrics_request(MR_PROXY, -1);
    metrics_request(MR_PROXY, 100000);
    text = render();
    check_format(text);
#define REQ(r, s) "memberbridge_requests_total{route=\"" r "\",status=\"" s "\"}"
    ck_assert(value(text, REQ("add_member", "204")) == 3);
    ck_assert(value(text, REQ("add_member", "409")) == 1);
    ck_assert(value(text, REQ("remove_member", "204")) == 1);
    ck_assert(value(text, REQ("replace_members", "200")) == 1);
    ck_assert(value(text, REQ("list_members", "200")) == 1);
    ck_assert(value(text, REQ("shared_images", "200")) == 1);
    ck_assert(value(text, REQ("healthcheck", "200")) == 1);
    ck_assert(value(text, REQ("versions", "300")) == 1);
    ck_assert(value(text, REQ("proxy", "502")) == 1);
    ck_assert(value(text, REQ("other", "405")) == 1);
    ck_assert(value(text, REQ("other", "100")) == 1);
    ck_assert(value(text, REQ("other", "599")) == 1);
    ck_assert(value(text, REQ("proxy", "0")) == 5);
    ck_assert(!has(text, REQ("proxy", "99")));
    ck_assert(!has(text, REQ("proxy", "600")));
    ck_assert(!has(text, REQ("add_member", "200")));   /* zero: left out */
    ck_assert(!has(text, REQ("remove_member", "0")));
    ck_assert_ptr_nonnull(strstr(text, "\n" REQ("add_member", "204") " 3\n"));
#undef REQ
    free(text);
}
END_TEST

START_TEST(test_upstream_methods)
{
    static const char *const known[] = {
        "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS",
    };
    char series[128];
    char *text;

    for (size_t i = 0; i < 7; i++)
        for (size_t k = 0; k <= i; k++)
            metrics_upstream_call(known[i], 200, 0.001);
    metrics_upstream_call("get", 200, 0.001);       /* case-sensitive */
    metrics_upstream_call("FOO", 200, 0.001);
    metrics_upstream_call("", 200, 0.001);
    metrics_upstream_call("GETX", 200, 0.001);
    metrics_upstream_call(NULL, 200, 0.001);
    metrics_upstream_call("POST", 0, 30.5);         /* no response */
    metrics_upstream_call("POST", 0, 1);
    metrics_upstream_call("POST", 700, 1);           /* out of range */
    metrics_upstream_call("POST", 201, 0.02);
    text = render();
    check_format(text);
    for (size_t i = 0; i < 7; i++) {
        snprintf(series, sizeof(series),
                 "memberbridge_upstream_requests_total{method=\"%s\",status=\"200\"}", known[i]);
        ck_assert(value(text, series) == (double)(i + 1));
    }
#define UP(m, s) "memberbridge_upstream_requests_total{method=\"" m "\",status=\"" s "\"}"
    ck_assert(value(text, UP("OTHER", "200")) == 5);
    ck_assert(!has(text, UP("get", "200")));
    ck_assert(!has(text, UP("FOO", "200")));
    ck_assert(value(text, UP("POST", "0")) == 3);
    ck_assert(value(text, UP("POST", "201")) == 1);
    ck_assert(!has(text, UP("POST", "700")));
    ck_assert(!has(text, UP("GET", "0")));
#undef UP
    ck_assert(value(text, LATENCY "_count") == 28 + 5 + 4);
    free(text);
}
END_TEST

/* A value exactly on a boundary counts in that bucket. */
START_TEST(test_latency_edges)
{
    static const double le[] = {
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
    };
    char *text;

    for (size_t i = 0; i < 12; i++)
        metrics_upstream_call("GET", 200, le[i]);
    text = render();
    check_histogram(text, LATENCY, latency_le, NLAT);
    for (size_t i = 0; i < 12; i++)
        ck_assert_msg(bucket(text, LATENCY, latency_le[i]) == (double)(i + 1),
                      "le=%s", latency_le[i]);
    ck_assert(bucket(text, LATENCY, "+Inf") == 12);
    /* 0.005+0.01+0.025+0.05+0.1+0.25+0.5+1+2.5+5+10+30 */
    ck_assert_ptr_nonnull(strstr(text, "\n" LATENCY "_sum 49.440000\n"));
    free(text);

    metrics_reset();
    metrics_upstream_call("GET", 200, 0);            /* first bucket */
    metrics_upstream_call("GET", 200, -3);           /* as 0 */
    metrics_upstream_call("GET", 200, NAN);          /* as 0 */
    metrics_upstream_call("GET", 200, 0.0050001);    /* just above: 0.01 */
    metrics_upstream_call("GET", 200, 30.000001);    /* +Inf only */
    metrics_upstream_call("GET", 200, 1e12);         /* huge: +Inf */
    metrics_upstream_call("GET", 200, INFINITY);
    text = render();
    check_format(text);
    check_histogram(text, LATENCY, latency_le, NLAT);
    ck_assert(bucket(text, LATENCY, "0.005") == 3);
    ck_assert(bucket(text, LATENCY, "0.01") == 4);
    ck_assert(bucket(text, LATENCY, "30") == 4);
    ck_assert(bucket(text, LATENCY, "+Inf") == 7);
    ck_assert(value(text, LATENCY "_count") == 7);
    free(text);

    /* _sum is kept in whole microseconds */
    metrics_reset();
    metrics_upstream_call("PUT", 204, 0.25);
    metrics_upstream_call("PUT", 204, 1.5);
    metrics_upstream_call("PUT", 204, 0.0000004);    /* rounds to 0 us */
    metrics_upstream_call("PUT", 204, 0.0000006);    /* rounds to 1 us */
    text = render();
    ck_assert_ptr_nonnull(strstr(text, "\n" LATENCY "_sum 1.750001\n"));
    ck_assert(value(text, LATENCY "_count") == 4);
    free(text);
}
END_TEST

START_TEST(test_fanout_edges)
{
    static const size_t le[] = {
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000,
    };
    unsigned long long sum = 0;
    char line[96];
    char *text;

    for (size_t i = 0; i < 13; i++) {
        metrics_fanout(le[i]);
        sum += le[i];
    }
    text = render();
    check_format(text);
    check_histogram(text, FANOUT, fanout_le, NFAN);
    for (size_t i = 0; i < 13; i++)
        ck_assert_msg(bucket(text, FANOUT, fanout_le[i]) == (double)(i + 1),
                      "le=%s", fanout_le[i]);
    ck_assert(bucket(text, FANOUT, "+Inf") == 13);
    snprintf(line, sizeof(line), "\n" FANOUT "_sum %llu\n", sum);
    ck_assert_ptr_nonnull(strstr(text, line));
    free(text);

    metrics_reset();
    metrics_fanout(0);
    metrics_fanout(3);          /* le=5 */
    metrics_fanout(10001);      /* +Inf */
    metrics_fanout(1000000);    /* huge */
    text = render();
    check_histogram(text, FANOUT, fanout_le, NFAN);
    ck_assert(bucket(text, FANOUT, "1") == 1);
    ck_assert(bucket(text, FANOUT, "2") == 1);
    ck_assert(bucket(text, FANOUT, "5") == 2);
    ck_assert(bucket(text, FANOUT, "10000") == 2);
    ck_assert(bucket(text, FANOUT, "+Inf") == 4);
    ck_assert(value(text, FANOUT "_count") == 4);
    ck_assert(value(text, FANOUT "_sum") == 1010004);
    free(text);
}
END_TEST

START_TEST(test_histograms_monotonic)
{
    char *text;
    unsigned x = 12345;

    for (int i = 0; i < 5000; i++) {
        x = x * 1103515245u + 12345u;
        metrics_upstream_call("GET", 200, (double)(x % 40000000) / 1e6);
        metrics_fanout(x % 20000);
    }
    text = render();
    check_format(text);
    check_histogram(text, LATENCY, latency_le, NLAT);
    check_histogram(text, FANOUT, fanout_le, NFAN);
    ck_assert(value(text, LATENCY "_count") == 5000);
    ck_assert(value(text, FANOUT "_count") == 5000);
    free(text);
}
END_TEST

START_TEST(test_gauges)
{
    char *text;

    metrics_in_flight(1);
    metrics_in_flight(1);
    metrics_in_flight(1);
    metrics_in_flight(-1);
    metrics_connections(5);
    metrics_connections(-7);
    text = render();
    check_format(text);
    ck_assert(value(text, "memberbridge_requests_in_flight") == 2);
    ck_assert(value(text, "memberbridge_open_connections") == -2);
    free(text);
}
END_TEST

START_TEST(test_workers)
{
    char *text;

    metrics_set_workers(3);
    metrics_worker_request(1);
    metrics_worker_request(1);
    metrics_worker_request(7);                       /* beyond n: shown */
    metrics_worker_request(MB_METRICS_MAX_WORKERS);  /* into the last slot */
    metrics_worker_request(100000);
    text = render();
    check_format(text);
#define W(n) "memberbridge_worker_requests_total{worker=\"" n "\"}"
    ck_assert(value(text, W("0")) == 0);
    ck_assert(value(text, W("1")) == 2);
    ck_assert(value(text, W("2")) == 0);
    ck_assert(!has(text, W("3")));
    ck_assert(value(text, W("7")) == 1);
    ck_assert(value(text, W("255")) == 2);
    ck_assert(!has(text, W("256")));
#undef W
    ck_assert(value(text, "memberbridge_workers") == 3);
    free(text);
}
END_TEST

START_TEST(test_reloads)
{
    char *text;

    metrics_reload(1);
    metrics_reload(1);
    metrics_reload(0);
    text = render();
    check_format(text);
    ck_assert(value(text, "memberbridge_config_reloads_total{result=\"ok\"}") == 2);
    ck_assert(value(text, "memberbridge_config_reloads_total{result=\"failed\"}") == 1);
    free(text);
}
END_TEST

START_TEST(test_render_len_optional)
{
    char *text = metrics_render(NULL);
    ck_assert_ptr_nonnull(text);
    check_format(text);
    free(text);
}
END_TEST

START_TEST(test_reset)
{
    char *fresh = render(), *text;

    metrics_request(MR_PROXY, 200);
    metrics_upstream_call("GET", 200, 0.3);
    metrics_fanout(12);
    metrics_in_flight(4);
    metrics_connections(2);
    metrics_set_workers(2);
    metrics_worker_request(9);
    metrics_reload(1);
    metrics_reload(0);
    text = render();
    ck_assert_str_ne(text, fresh);
    free(text);
    metrics_reset();
    text = render();
    ck_assert_str_eq(text, fresh);
    free(text);
    free(fresh);
}
END_TEST

/* ---- thread safety: no update is lost */

#define THREADS      4
#define PER_THREAD   200000

static void *hammer(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;

    for (int i = 0; i < PER_THREAD; i++) {
        metrics_in_flight(1);
        metrics_request(MR_PROXY, 200);
        metrics_upstream_call("PUT", 204, 0.001);
        metrics_worker_request(id);
        metrics_in_flight(-1);
    }
    return NULL;
}

START_TEST(test_threads)
{
    pthread_t t[THREADS];
    char *text;

    for (unsigned i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, (void *)(uintptr_t)i), 0);
    for (int i = 0; i < 5; i++) {       /* rendering while others record */
        text = render();
        check_format(text);
        check_histogram(text, LATENCY, latency_le, NLAT);
        free(text);
    }
    for (unsigned i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
    text = render();
    check_format(text);
    ck_assert(value(text, "memberbridge_requests_total{route=\"proxy\",status=\"200\"}")
              == THREADS * PER_THREAD);
    ck_assert(value(text, "memberbridge_upstream_requests_total{method=\"PUT\",status=\"204\"}")
              == THREADS * PER_THREAD);
    ck_assert(value(text, LATENCY "_count") == THREADS * PER_THREAD);
    ck_assert(bucket(text, LATENCY, "0.005") == THREADS * PER_THREAD);
    ck_assert_ptr_nonnull(strstr(text, "\n" LATENCY "_sum 800.000000\n"));
    ck_assert(value(text, "memberbridge_worker_requests_total{worker=\"0\"}") == PER_THREAD);
    ck_assert(value(text, "memberbridge_worker_requests_total{worker=\"3\"}") == PER_THREAD);
    ck_assert(value(text, "memberbridge_requests_in_flight") == 0);
    free(text);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_requests);
    tcase_add_test(tc, test_upstream_methods);
    tcase_add_test(tc, test_latency_edges);
    tcase_add_test(tc, test_fanout_edges);
    tcase_add_test(tc, test_histograms_monotonic);
    tcase_add_test(tc, test_gauges);
    tcase_add_test(tc, test_workers);
    tcase_add_test(tc, test_reloads);
    tcase_add_test(tc, test_render_len_optional);
    tcase_add_test(tc, test_reset);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
