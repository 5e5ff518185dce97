/* worker: one event-loop thread with its own event_base, its own upstream
 * clients and its own listening socket on the [server] listen address
 * (SO_REUSEPORT: the kernel spreads new connections over the workers). A
 * request lives and dies on the worker that accepted it.
 *
 * The main thread creates workers (worker_new, which binds, so that a bad
 * address stops start-up), starts them, and then talks to them only through
 * worker_reload and worker_stop, which are safe from any thread. */
#ifndef MB_WORKER_H
#define MB_WORKER_H

#include "settings.h"

struct event_base;
typedef struct mb_worker mb_worker;

/* Builds worker `index` with settings `set` (it takes its own reference).
 * Returns NULL after logging why. */
mb_worker *worker_new(unsigned index, mb_settings *set);
/* Runs the worker's loop on a new thread. exited(arg) is called on that
 * thread when the loop has ended and the worker's connections and upstream
 * clients are freed. Returns 0 or -1 (no thread). */
int        worker_start(mb_worker *w, void (*exited)(void *arg), void *arg);
/* New requests use set from now on (the worker takes a reference);
 * requests in flight finish with what they started with. */
void       worker_reload(mb_worker *w, mb_settings *set);
/* The first call: stop accepting, finish what is in flight (at most the
 * grace period, then answer 503), end the loop. A second call: end now. */
void       worker_stop(mb_worker *w);
/* Waits for the thread (if started) and frees the worker. */
void       worker_free(mb_worker *w);

/* Runs the callbacks a loop that has ended still holds (deferred ones of
 * freed bufferevents), so that event_base_free leaks nothing. */
void       run_pending_callbacks(struct event_base *base);

#endif
