/* fanout: run n jobs with at most `limit` in flight. It knows nothing of what
 * a job is: start(i) begins job i; the job reports its end with
 * fanout_job_done(). When every job is done, all_done runs (once).
 * Pure bookkeeping: no I/O. */
#ifndef MB_FANOUT_H
#define MB_FANOUT_H

#include <stddef.h>

typedef struct mb_fanout mb_fanout;
typedef void (*fanout_start_fn)(size_t job, void *arg);
typedef void (*fanout_done_fn)(void *arg);

struct mb_fanout {
    size_t          n, limit;
    size_t          next;        /* next job to start */
    size_t          running;
    size_t          finished;
    int             starting;    /* guards against recursion from start() */
    int             completed;
    fanout_start_fn start;
    fanout_done_fn  all_done;
    void           *arg;
};

void fanout_init(mb_fanout *f, size_t n, size_t limit,
                 fanout_start_fn start, fanout_done_fn all_done, void *arg);
/* Starts the first jobs (up to limit). With n == 0, all_done runs at once. */
void fanout_run(mb_fanout *f);
/* A job ended: starts the next one, or runs all_done after the last.
 * Safe to call from inside start(). */
void fanout_job_done(mb_fanout *f);

#endif
