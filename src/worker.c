/* worker: see worker.h. */
#include "worker.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "linger.h"
#include "log.h"
#include "server.h"
#include "svc_auth.h"
#include "upstream.h"

#define MAX_RESPONSE_BYTES (64u << 20)   /* a 10,000-member list is ~2.5 MB */

struct mb_worker {
    unsigned           index;
    struct event_base *base;
    mb_server         *server;
    struct event      *cmd_ev;           /* the main thread's requests arrive here */
    struct event      *grace_ev;
    long               grace_seconds;
    int                stopping;         /* this thread only */
    int                linger_ticks;
    pthread_t          thread;
    int                started;
    void             (*exited)(void *arg);
    void              *exited_arg;

    pthread_mutex_t    mu;               /* guards the two below */
    mb_settings       *pending;          /* a reload not yet applied */
    int                stop_calls;
};

/* In-flight requests wait at most for their longest chain of upstream
 * calls: one call; with accept also a token request and the PUT; with
 * share_private_images also the look, the change and the add again. */
static long grace_for(const mb_conf *c)
{
    long steps = 1 + (c->members.accept ? 2 : 0) + (c->members.share_private_images ? 3 : 0);
    return steps * ((long)c->upstream.request_timeout + c->upstream.connect_timeout) + 5;
}

/* The upstream clients for set, on this worker's loop. */
static int make_profile(mb_worker *w, mb_settings *set, mb_server_profile *p)
{
    const mb_conf *conf = &set->conf;
    mb_upstream_opts opts = {
        .base_url = conf->upstream.url,
        .ca_file = conf->upstream.ca_file,
        .client_cert_file = conf->upstream.client_cert_file,
        .client_key_file = conf->upstream.client_key_file,
        .insecure = conf->upstream.insecure,
        .connect_timeout_ms = conf->upstream.connect_timeout * 1000L,
        .request_timeout_ms = conf->upstream.request_timeout * 1000L,
        .retries = conf->upstream.retries,
        .max_connections = conf->upstream.max_connections,
        .max_response_bytes = MAX_RESPONSE_BYTES,
    };
    memset(p, 0, sizeof(*p));
    p->conf = conf;
    if ((p->up = upstream_new(w->base, &opts)) == NULL)
        return -1;
    if (conf->members.accept && (p->svc = svc_auth_new(w->base, conf)) == NULL) {
        upstream_free(p->up);
        return -1;
    }
    p->release = settings_release;
    p->release_arg = settings_ref(set);
    return 0;
}

static void drop_profile(mb_server_profile *p)
{
    if (p->svc)
        svc_auth_free(p->svc);
    upstream_free(p->up);
    settings_unref(p->release_arg);
}

/* No request in flight. Replies given while closing a connection (a 503
 * to an upload cut short, a 413, a 408) may still be on their way out:
 * wait for them, at most a second, before the loop ends. */
static void on_linger_check(evutil_socket_t fd, short what, void *arg)
{
    mb_worker *w = arg;
    struct timeval tick = { 0, 50000 };
    (void)fd;
    (void)what;
    if (!linger_pending() || ++w->linger_ticks >= 20)
        event_base_loopbreak(w->base);
    else
        event_base_once(w->base, -1, EV_TIMEOUT, on_linger_check, w, &tick);
}

static void on_drained(void *arg)
{
    on_linger_check(-1, 0, arg);
}

static void on_last_call(evutil_socket_t fd, short what, void *arg)
{
    mb_worker *w = arg;
    (void)fd;
    (void)what;
    event_base_loopbreak(w->base);
}

/* The grace period is over: answer what still waits with 503, give those
 * replies a moment to leave, then end the loop. */
static void on_grace_expired(evutil_socket_t fd, short what, void *arg)
{
    mb_worker *w = arg;
    struct timeval tv = { 1, 0 };
    (void)fd;
    (void)what;
    log_warning("worker %u: shutdown grace period of %ld s over with %zu request(s) in flight; "
                "answering them 503", w->index, w->grace_seconds, server_in_flight(w->server));
    server_abort(w->server);
    event_base_once(w->base, -1, EV_TIMEOUT, on_last_call, w, &tv);
}

static void apply_reload(mb_worker *w, mb_settings *set)
{
    mb_server_profile p;
    if (make_profile(w, set, &p) != 0) {
        log_error("worker %u: reload not applied: cannot set up the upstream client", w->index);
        return;
    }
    if (server_reconfigure(w->server, &p) != 0) {
        log_error("worker %u: reload not applied: out of memory", w->index);
        drop_profile(&p);
        return;
    }
    server_set_tls(w->server, set->tls);
    w->grace_seconds = grace_for(&set->conf);
}

/* Runs on the worker's thread: what the main thread asked for. */
static void on_command(evutil_socket_t fd, short what, void *arg)
{
    mb_worker *w = arg;
    mb_settings *set;
    int stops;
    (void)fd;
    (void)what;

    pthread_mutex_lock(&w->mu);
    set = w->pending;
    w->pending = NULL;
    stops = w->stop_calls;
    pthread_mutex_unlock(&w->mu);

    if (set) {
        if (!w->stopping)
            apply_reload(w, set);
        settings_unref(set);
    }
    if (stops >= 2) {
        event_base_loopbreak(w->base);
    } else if (stops == 1 && !w->stopping) {
        struct timeval tv = { w->grace_seconds, 0 };
        w->stopping = 1;
        evtimer_add(w->grace_ev, &tv);
        server_shutdown(w->server, on_drained, w);
    }
}

/* epoll's changelist: the interest changes made while handling events
 * (h1_client's connections, libevhtp enabling and disabling writes) go to
 * the kernel once per loop iteration, and a change undone in the same
 * iteration costs no system call. Without it a short upstream call cost
 * about six epoll_ctl calls. */
static struct event_base *new_base(void)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base;
    if (cfg == NULL)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

/* libevhtp's bufferevents defer their callbacks, and one freed while such
 * a callback is pending (a client's bytes or EOF arrived in the loop pass
 * that ended the loop) is released only when that callback has run:
 * event_base_free would cancel it and the bufferevent would leak. */
void run_pending_callbacks(struct event_base *base)
{
    for (int i = 0; i < 16 && event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE) > 0; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
}

mb_worker *worker_new(unsigned index, mb_settings *set)
{
    mb_worker *w = calloc(1, sizeof(*w));
    mb_server_profile p;

    if (w == NULL) {
        log_error("worker %u: out of memory", index);
        return NULL;
    }
    w->index = index;
    pthread_mutex_init(&w->mu, NULL);
    w->grace_seconds = grace_for(&set->conf);
    if ((w->base = new_base()) == NULL
        || (w->cmd_ev = event_new(w->base, -1, 0, on_command, w)) == NULL
        || (w->grace_ev = evtimer_new(w->base, on_grace_expired, w)) == NULL) {
        log_error("worker %u: cannot create its event loop", index);
        worker_free(w);
        return NULL;
    }
    if (make_profile(w, set, &p) != 0) {
        worker_free(w);
        return NULL;
    }
    if ((w->server = server_new(w->base, index, &p)) == NULL) {
        log_error("worker %u: cannot create the HTTP server", index);
        drop_profile(&p);
        worker_free(w);
        return NULL;
    }
    server_set_tls(w->server, set->tls);
    if (server_listen(w->server) != 0) {
        worker_free(w);
        return NULL;
    }
    return w;
}

static void *worker_main(void *arg)
{
    mb_worker *w = arg;
    event_base_dispatch(w->base);
    server_free(w->server);              /* closes connections, cancels their calls */
    w->server = NULL;
    w->stopping = 1;                     /* on_command: no reload, no shutdown */
    event_del(w->grace_ev);
    run_pending_callbacks(w->base);
    w->exited(w->exited_arg);
    return NULL;
}

int worker_start(mb_worker *w, void (*exited)(void *arg), void *arg)
{
    sigset_t all, old;
    int rc;

    w->exited = exited;
    w->exited_arg = arg;
    /* signals are the main thread's */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = pthread_create(&w->thread, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        log_error("worker %u: cannot start its thread: %s", w->index, strerror(rc));
        return -1;
    }
    w->started = 1;
    return 0;
}

void worker_reload(mb_worker *w, mb_settings *set)
{
    mb_settings *old;
    pthread_mutex_lock(&w->mu);
    old = w->pending;
    w->pending = settings_ref(set);
    pthread_mutex_unlock(&w->mu);
    settings_unref(old);
    event_active(w->cmd_ev, EV_TIMEOUT, 1);
}

void worker_stop(mb_worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->stop_calls++;
    pthread_mutex_unlock(&w->mu);
    event_active(w->cmd_ev, EV_TIMEOUT, 1);
}

void worker_free(mb_worker *w)
{
    if (w == NULL)
        return;
    if (w->started)
        pthread_join(w->thread, NULL);
    server_free(w->server);              /* a worker that never ran */
    settings_unref(w->pending);
    if (w->cmd_ev)
        event_free(w->cmd_ev);
    if (w->grace_ev)
        event_free(w->grace_ev);
    if (w->base)
        event_base_free(w->base);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
