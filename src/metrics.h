/* metrics: process-wide counters behind GET /metrics, rendered in the
 * Prometheus text exposition format 0.0.4. Recording functions may be called
 * from any thread at once: each is a few relaxed atomic adds on fixed arrays,
 * no locks, no allocation. Rendering reads the atomics and formats text; a
 * render that runs while others record sees each counter at some recent
 * value (families are not a consistent snapshot of one another). */
#ifndef MB_METRICS_H
#define MB_METRICS_H

#include <stddef.h>

/* Worker slots counted per thread; higher indexes count into the last one. */
#define MB_METRICS_MAX_WORKERS 256

/* Content-Type for the rendered text. */
#define MB_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The route label of memberbridge_requests_total. */
typedef enum {
    MR_ADD_MEMBER = 0,   /* "add_member": PUT /v1/images/{id}/members/{member}, also the bulk form */
    MR_REMOVE_MEMBER,    /* "remove_member" */
    MR_REPLACE_MEMBERS,  /* "replace_members" */
    MR_LIST_MEMBERS,     /* "list_members" */
    MR_SHARED_IMAGES,    /* "shared_images" */
    MR_HEALTHCHECK,      /* "healthcheck" */
    MR_VERSIONS,         /* "versions": GET / and /versions */
    MR_PROXY,            /* "proxy": everything passed to the upstream as it is */
    MR_OTHER,            /* "other": refused before routing (bad framing, 405, bad id ...) */
    MR_COUNT
} mb_metric_route;

/* One finished client request with the status sent. A status outside
 * 100..599 is counted as "0"; a route outside the enum as "other". */
void metrics_request(mb_metric_route route, int status);

/* One finished upstream call. method is one of GET HEAD PUT POST PATCH
 * DELETE OPTIONS (case-sensitive), anything else (also NULL) counts as
 * "OTHER". status 0 means no HTTP response (transport failure, timeout);
 * it and any status outside 100..599 show as status="0". seconds goes into
 * the latency histogram (negative or NaN counts as 0). */
void metrics_upstream_call(const char *method, int status, double seconds);

/* The number of member operations one v1 request fanned out to. */
void metrics_fanout(size_t members);

/* Gauge: client requests in flight; +1 when one starts, -1 when it ends. */
void metrics_in_flight(int delta);

/* Gauge: open client connections; +1 on accept, -1 on close. */
void metrics_connections(int delta);

/* One request handled by worker thread `worker` (0-based). */
void metrics_worker_request(unsigned worker);

/* One SIGHUP reload: ok 1 when applied, 0 when refused. */
void metrics_reload(int ok);

/* How many worker threads run (gauge); workers below n are always rendered. */
void metrics_set_workers(unsigned n);

/* The whole exposition, NUL-terminated, malloc'd (the caller frees). Its
 * length without the NUL goes to *len when len is not NULL. NULL when out
 * of memory. */
char *metrics_render(size_t *len);

/* Zeroes every counter and gauge (for tests). */
void metrics_reset(void);

#endif
