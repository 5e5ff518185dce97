/* metrics: process-wide counters for GET /metrics. Every counter is a C11
 * atomic in a fixed array, added to with memory_order_relaxed: the numbers
 * need no ordering with other memory, only no lost updates. Histograms keep
 * one (non-cumulative) count per bucket; the renderer adds them up, so the
 * rendered buckets are monotonic and +Inf equals _count even while others
 * record. */
#include "mb_config.h"
#include "metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_SLOTS   600           /* index = status; 0 = none/out of range */
#define MAX_SECONDS    1e9           /* latencies above are summed as this */

typedef atomic_uint_least64_t counter;

/* ---- label values */

static const char *const route_names[MR_COUNT] = {
    [MR_ADD_MEMBER] = "add_member",       [MR_REMOVE_MEMBER] = "remove_member",
    [MR_REPLACE_MEMBERS] = "replace_members", [MR_LIST_MEMBERS] = "list_members",
    [MR_SHARED_IMAGES] = "shared_images", [MR_HEALTHCHECK] = "healthcheck",
    [MR_VERSIONS] = "versions",           [MR_PROXY] = "proxy",
    [MR_OTHER] = "other",
};

static const char *const method_names[] = {
    "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "OTHER",
};
#define METHOD_COUNT  (sizeof(method_names) / sizeof(method_names[0]))
#define METHOD_OTHER  (METHOD_COUNT - 1)

/* Bucket upper bounds, as compared and as printed; the +Inf bucket is
 * the extra last slot of each count array. */
static const double latency_le[] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
};
static const char *const latency_le_text[] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10", "30",
};
#define LATENCY_BUCKETS  (sizeof(latency_le) / sizeof(latency_le[0]))

static const size_t fanout_le[] = {
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000,
};
#define FANOUT_BUCKETS  (sizeof(fanout_le) / sizeof(fanout_le[0]))

/* ---- the counters */

static counter requests[MR_COUNT][STATUS_SLOTS];
static counter upstream[METHOD_COUNT][STATUS_SLOTS];
static counter latency_count[LATENCY_BUCKETS + 1];
static counter latency_sum_us;
static counter fanout_count[FANOUT_BUCKETS + 1];
static counter fanout_sum;
static atomic_llong in_flight;
static atomic_llong connections;
static counter worker_requests[MB_METRICS_MAX_WORKERS];
static atomic_uint workers;
static counter reloads_ok;
static counter reloads_failed;

static void bump(counter *c, uint_least64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint_least64_t get(counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void zero(counter *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        atomic_store_explicit(&c[i], 0, memory_order_relaxed);
}

/* ---- recording */

static size_t status_slot(int status)
{
    return status >= 100 && status < STATUS_SLOTS ? (size_t)status : 0;
}

static size_t method_slot(const char *method)
{
    if (method == NULL)
        return METHOD_OTHER;
    for (size_t i = 0; i < METHOD_OTHER; i++)
        if (strcmp(method, method_names[i]) == 0)
            return i;
    return METHOD_OTHER;
}

void metrics_request(mb_metric_route route, int status)
{
    size_t r = (unsigned)route < MR_COUNT ? (size_t)route : (size_t)MR_OTHER;
    bump(&requests[r][status_slot(status)], 1);
}

void metrics_upstream_call(const char *method, int status, double seconds)
{
    size_t b = 0;

    bump(&upstream[method_slot(method)][status_slot(status)], 1);
    if (!(seconds > 0))                      /* negative, zero, NaN */
        seconds = 0;
    while (b < LATENCY_BUCKETS && seconds > latency_le[b])
        b++;
    bump(&latency_count[b], 1);
    if (seconds > MAX_SECONDS)
        seconds = MAX_SECONDS;
    bump(&latency_sum_us, (uint_least64_t)(seconds * 1e6 + 0.5));
}

void metrics_fanout(size_t members)
{
    size_t b = 0;

    while (b < FANOUT_BUCKETS && members > fanout_le[b])
        b++;
    bump(&fanout_count[b], 1);
    bump(&fanout_sum, members);
}

void metrics_in_flight(int delta)
{
    atomic_fetch_add_explicit(&in_flight, delta, memory_order_relaxed);
}

void metrics_connections(int delta)
{
    atomic_fetch_add_explicit(&connections, delta, memory_order_relaxed);
}

void metrics_worker_request(unsigned worker)
{
    if (worker >= MB_METRICS_MAX_WORKERS)
        worker = MB_METRICS_MAX_WORKERS - 1;
    bump(&worker_requests[worker], 1);
}

void metrics_reload(int ok)
{
    bump(ok ? &reloads_ok : &reloads_failed, 1);
}

void metrics_set_workers(unsigned n)
{
    atomic_store_explicit(&workers, n, memory_order_relaxed);
}

void metrics_reset(void)
{
    zero(&requests[0][0], sizeof(requests) / sizeof(counter));
    zero(&upstream[0][0], sizeof(upstream) / sizeof(counter));
    zero(latency_count, LATENCY_BUCKETS + 1);
    zero(&latency_sum_us, 1);
    zero(fanout_count, FANOUT_BUCKETS + 1);
    zero(&fanout_sum, 1);
    atomic_store_explicit(&in_flight, 0, memory_order_relaxed);
    atomic_store_explicit(&connections, 0, memory_order_relaxed);
    zero(worker_requests, MB_METRICS_MAX_WORKERS);
    atomic_store_explicit(&workers, 0, memory_order_relaxed);
    zero(&reloads_ok, 1);
    zero(&reloads_failed, 1);
}

/* ---- rendering */

typedef struct {
    char  *p;
    size_t len, cap;
    int    oom;
} textbuf;

static int reserve(textbuf *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 4096;
    char *p;

    while (cap - b->len <= more)
        cap *= 2;
    if (cap == b->cap)
        return 0;
    p = realloc(b->p, cap);
    if (p == NULL)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

__attribute__((format(printf, 2, 3)))
static void put(textbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->oom)
        return;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(b, (size_t)n) != 0) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void family(textbuf *b, const char *name, const char *type, const char *help)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A counter family labelled by a name (label=names[row]) and a status;
 * only the nonzero ones. */
static void render_by_status(textbuf *b, const char *name, const char *help, const char *label,
                             const char *const *names, size_t rows,
                             counter (*table)[STATUS_SLOTS])
{
    family(b, name, "counter", help);
    for (size_t r = 0; r < rows; r++)
        for (size_t s = 0; s < STATUS_SLOTS; s++) {
            uint_least64_t n = get(&table[r][s]);
            if (n == 0)
                continue;
            put(b, "%s{%s=\"%s\",status=\"%zu\"} %llu\n", name, label, names[r], s,
                (unsigned long long)n);
        }
}

static void render_requests(textbuf *b)
{
    render_by_status(b, "memberbridge_requests_total",
                     "Finished client requests by route and response status.",
                     "route", route_names, MR_COUNT, requests);
}

static void render_upstream(textbuf *b)
{
    render_by_status(b, "memberbridge_upstream_requests_total",
                     "Finished upstream calls by method and status (0: no HTTP response).",
                     "method", method_names, METHOD_COUNT, upstream);
}

static void render_latency(textbuf *b)
{
    const char *name = "memberbridge_upstream_request_duration_seconds";
    unsigned long long total = 0, us = get(&latency_sum_us);

    family(b, name, "histogram", "Upstream call latency in seconds.");
    for (size_t i = 0; i <= LATENCY_BUCKETS; i++) {
        total += get(&latency_count[i]);
        put(b, "%s_bucket{le=\"%s\"} %llu\n", name,
            i < LATENCY_BUCKETS ? latency_le_text[i] : "+Inf", total);
    }
    put(b, "%s_sum %llu.%06llu\n", name, us / 1000000, us % 1000000);
    put(b, "%s_count %llu\n", name, total);
}

static void render_fanout(textbuf *b)
{
    const char *name = "memberbridge_fanout_members";
    unsigned long long total = 0;

    family(b, name, "histogram",
           "Member operations one v1 request fanned out to.");
    for (size_t i = 0; i <= FANOUT_BUCKETS; i++) {
        total += get(&fanout_count[i]);
        if (i < FANOUT_BUCKETS)
            put(b, "%s_bucket{le=\"%zu\"} %llu\n", name, fanout_le[i], total);
        else
            put(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, total);
    }
    put(b, "%s_sum %llu\n", name, (unsigned long long)get(&fanout_sum));
    put(b, "%s_count %llu\n", name, total);
}

static void render_gauges(textbuf *b)
{
    family(b, "memberbridge_requests_in_flight", "gauge",
           "Client requests being handled.");
    put(b, "memberbridge_requests_in_flight %lld\n",
        atomic_load_explicit(&in_flight, memory_order_relaxed));
    family(b, "memberbridge_open_connections", "gauge",
           "Open client connections.");
    put(b, "memberbridge_open_connections %lld\n",
        atomic_load_explicit(&connections, memory_order_relaxed));
}

static void render_workers(textbuf *b)
{
    unsigned n = atomic_load_explicit(&workers, memory_order_relaxed);

    family(b, "memberbridge_worker_requests_total", "counter",
           "Client requests handled per worker thread.");
    for (unsigned w = 0; w < MB_METRICS_MAX_WORKERS; w++) {
        uint_least64_t c = get(&worker_requests[w]);
        if (w < n || c != 0)
            put(b, "memberbridge_worker_requests_total{worker=\"%u\"} %llu\n",
                w, (unsigned long long)c);
    }
    family(b, "memberbridge_workers", "gauge", "Worker threads running.");
    put(b, "memberbridge_workers %u\n", n);
}

static void render_reloads(textbuf *b)
{
    family(b, "memberbridge_config_reloads_total", "counter",
           "Configuration reloads (SIGHUP) by result.");
    put(b, "memberbridge_config_reloads_total{result=\"ok\"} %llu\n",
        (unsigned long long)get(&reloads_ok));
    put(b, "memberbridge_config_reloads_total{result=\"failed\"} %llu\n",
        (unsigned long long)get(&reloads_failed));
}

static void render_build_info(textbuf *b)
{
    family(b, "memberbridge_build_info", "gauge",
           "Always 1; the version label is the running build.");
    put(b, "memberbridge_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
}

char *metrics_render(size_t *len)
{
    textbuf b = { NULL, 0, 0, 0 };

    render_requests(&b);
    render_upstream(&b);
    render_latency(&b);
    render_fanout(&b);
    render_gauges(&b);
    render_workers(&b);
    render_reloads(&b);
    render_build_info(&b);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (len != NULL)
        *len = b.len;
    return b.p;
}
