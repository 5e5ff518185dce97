/* fanout: at most `limit` jobs in flight; the next starts when one ends. */
#include "fanout.h"

void fanout_init(mb_fanout *f, size_t n, size_t limit,
                 fanout_start_fn start, fanout_done_fn all_done, void *arg)
{
    f->n = n;
    f->limit = limit ? limit : 1;
    f->next = f->running = f->finished = 0;
    f->starting = f->completed = 0;
    f->start = start;
    f->all_done = all_done;
    f->arg = arg;
}

/* Starts jobs while there is room. A job that ends inside start() only
 * updates the counters; this loop then starts the next one, so the stack
 * does not grow with n. */
static void pump(mb_fanout *f)
{
    if (f->starting)
        return;
    f->starting = 1;
    while (f->next < f->n && f->running < f->limit) {
        size_t job = f->next++;
        f->running++;
        f->start(job, f->arg);
    }
    f->starting = 0;
    if (f->finished == f->n && !f->completed) {
        f->completed = 1;
        f->all_done(f->arg);   /* may free f: nothing touches f after this */
    }
}

void fanout_run(mb_fanout *f)
{
    pump(f);
}

void fanout_job_done(mb_fanout *f)
{
    f->running--;
    f->finished++;
    pump(f);
}
