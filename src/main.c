/* memberbridge: command line, configuration, signals, start and stop. */
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <unistd.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "mb_config.h"
#include "admin.h"
#include "listen_probe.h"
#include "log.h"
#include "metrics.h"
#include "settings.h"
#include "worker.h"

#define DEFAULT_CONFIG        "/etc/memberbridge/memberbridge.conf"
#define MAX_WORKERS           256

/* The main thread: signals, the admin endpoint, and the workers' lives. */
typedef struct {
    struct event_base *base;
    const char        *path;          /* the config file, read again on SIGHUP */
    mb_settings       *set;           /* the settings in force */
    mb_worker         *workers[MAX_WORKERS];
    unsigned           nworkers;
    atomic_uint        exited;        /* workers whose loop has ended */
    struct event      *exit_ev;       /* a worker's loop ended */
    mb_admin          *admin;
    int                stopping;
} app;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: memberbridge [-c FILE] [--check-config]\n"
            "\n"
            "A gateway that serves the OpenStack Image API v1 membership calls\n"
            "by translating them into Image API v2 calls to an upstream Glance.\n"
            "\n"
            "  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
            "      --check-config  validate the configuration (and load the HTTPS\n"
            "                      certificate and key) and exit 0 (valid) or 1\n"
            "  -h, --help          show this help and exit\n"
            "  -V, --version       show the version and exit\n"
            "\n"
            "Signals: SIGTERM, SIGINT stop (finishing requests in flight); SIGHUP\n"
            "reads the configuration file and certificates again.\n");
}

static unsigned worker_count(const mb_conf *c)
{
    long n = c->server.workers;
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    return n > MAX_WORKERS ? MAX_WORKERS : (unsigned)n;
}

/* Runs on a worker's thread. */
static void on_worker_exited(void *arg)
{
    app *a = arg;
    atomic_fetch_add(&a->exited, 1);
    event_active(a->exit_ev, EV_TIMEOUT, 1);
}

static void stop_workers(app *a)
{
    for (unsigned i = 0; i < a->nworkers; i++)
        worker_stop(a->workers[i]);
}

static void on_exit_ev(evutil_socket_t fd, short what, void *arg)
{
    app *a = arg;
    (void)fd;
    (void)what;
    if (atomic_load(&a->exited) == a->nworkers) {
        log_info("all requests finished; exiting");
        event_base_loopbreak(a->base);
    } else if (!a->stopping) {
        log_error("a worker's event loop ended unexpectedly; stopping");
        a->stopping = 1;
        stop_workers(a);
    }
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    app *a = arg;
    (void)what;
    if (a->stopping) {
        log_info("signal %d again: exiting now", (int)sig);
    } else {
        a->stopping = 1;
        log_info("signal %d: no longer accepting, finishing requests in flight", (int)sig);
    }
    stop_workers(a);
}

static int same(const char *x, const char *y)
{
    return (x == NULL && y == NULL) || (x && y && strcmp(x, y) == 0);
}

/* SIGHUP: the configuration file (and the certificate and key it names)
 * again. All or nothing: a file that does not load, or that changes what
 * only a restart can change, leaves the running settings as they are. */
static void on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
    app *a = arg;
    char err[1024];
    mb_settings *n;
    const mb_conf *o = &a->set->conf;
    (void)sig;
    (void)what;

    if (a->stopping)
        return;
    log_info("SIGHUP: reading %s again", a->path);
    if ((n = settings_load(a->path, err, sizeof(err))) == NULL) {
        log_error("SIGHUP: %s; the running configuration stays", err);
        metrics_reload(0);
        return;
    }
    const char *fixed = !same(n->conf.server.listen, o->server.listen) ? "[server] listen"
                        : n->conf.server.workers != o->server.workers ? "[server] workers"
                        : !same(n->conf.admin.listen, o->admin.listen) ? "[admin] listen"
                        : NULL;
    if (fixed) {
        log_error("SIGHUP: %s: %s cannot change without a restart; the running configuration stays",
                  a->path, fixed);
        settings_unref(n);
        metrics_reload(0);
        return;
    }
    if (!same(n->conf.log.access_log, o->log.access_log) || n->conf.log.access_log) {
        /* also when unchanged: a rotated file is opened anew */
        if (log_open_access(n->conf.log.access_log) != 0)
            log_error("SIGHUP: cannot open access_log '%s': %m; access lines go where they went",
                      n->conf.log.access_log);
    }
    log_set_level(n->conf.log.level);
    if (n->conf.upstream.insecure)
        log_warning("[upstream] insecure = true: the upstream's TLS certificate is NOT verified");
    for (unsigned i = 0; i < a->nworkers; i++)
        worker_reload(a->workers[i], n);
    settings_unref(a->set);
    a->set = n;
    metrics_reload(1);
    log_info("SIGHUP: configuration reloaded: upstream %s%s; new requests use it, requests in "
             "flight finish with the old one", n->conf.upstream.url,
             n->tls ? ", HTTPS certificate read again" : "");
}

static int run(app *a)
{
    const mb_conf *conf = &a->set->conf;
    struct event *sig[3] = { NULL, NULL, NULL };
    unsigned want = worker_count(conf);
    int rc = 1;

    if ((a->base = event_base_new()) == NULL
        || (a->exit_ev = event_new(a->base, -1, 0, on_exit_ev, a)) == NULL) {
        log_error("cannot create the event loop");
        goto out;
    }
    if (conf->upstream.insecure)
        log_warning("[upstream] insecure = true: the upstream's TLS certificate is NOT verified");
    if (conf->members.accept)
        log_info("[members] accept = true: added members are accepted as Keystone user %s "
                 "(project %s) at %s", conf->service_auth.username,
                 conf->service_auth.project_name, conf->service_auth.auth_url);
    if (conf->members.share_private_images)
        log_info("[members] share_private_images = true: private images are made shared "
                 "when members are added");
    if (listen_probe(conf) != 0)
        goto out;
    for (a->nworkers = 0; a->nworkers < want; a->nworkers++) {
        if ((a->workers[a->nworkers] = worker_new(a->nworkers, a->set)) == NULL)
            goto out;
    }
    if (conf->admin.listen
        && (a->admin = admin_new(a->base, conf->admin.listen_host, conf->admin.listen_port,
                                 conf->admin.listen)) == NULL)
        goto out;
    sig[0] = evsignal_new(a->base, SIGTERM, on_stop_signal, a);
    sig[1] = evsignal_new(a->base, SIGINT, on_stop_signal, a);
    sig[2] = evsignal_new(a->base, SIGHUP, on_reload_signal, a);
    for (int i = 0; i < 3; i++) {
        if (sig[i] == NULL || evsignal_add(sig[i], NULL) != 0) {
            log_error("cannot set up signal handling");
            goto out;
        }
    }
    metrics_set_workers(a->nworkers);
    for (unsigned i = 0; i < a->nworkers; i++) {
        if (worker_start(a->workers[i], on_worker_exited, a) != 0) {
            a->stopping = 1;
            stop_workers(a);
            goto out;
        }
    }
    log_info("listening on %s%s, upstream %s, %u worker thread%s", conf->server.listen,
             a->set->tls ? " (HTTPS)" : "", conf->upstream.url, a->nworkers,
             a->nworkers == 1 ? "" : "s");
    log_info("memberbridge %s ready", PACKAGE_VERSION);
    event_base_dispatch(a->base);
    rc = 0;

out:
    /* From here on a late SIGTERM (a supervisor's second one) must not kill
     * the process with the default action while it frees and exits 0:
     * freeing the signal events restores that action. */
    sigset_t stop_sigs;
    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGTERM);
    sigaddset(&stop_sigs, SIGINT);
    sigaddset(&stop_sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL);
    if (rc != 0)
        stop_workers(a);                 /* started ones end now or after their grace */
    for (unsigned i = 0; i < a->nworkers; i++)
        worker_free(a->workers[i]);      /* joins */
    admin_free(a->admin);
    for (int i = 0; i < 3; i++)
        if (sig[i])
            event_free(sig[i]);
    if (a->exit_ev)
        event_free(a->exit_ev);
    if (a->base) {
        run_pending_callbacks(a->base);  /* the admin connections' bufferevents */
        event_base_free(a->base);
    }
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "config",       required_argument, NULL, 'c' },
        { "check-config", no_argument,       NULL, 'C' },
        { "help",         no_argument,       NULL, 'h' },
        { "version",      no_argument,       NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const char *path = DEFAULT_CONFIG;
    int check_only = 0, opt, rc;
    char err[1024];
    app a = { .path = NULL };

    while ((opt = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 'C': check_only = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("memberbridge %s\n", PACKAGE_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "memberbridge: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    a.path = path;
    /* A reload asked for while still starting (systemctl reload right
     * after start) must not end the process: SIGHUP's default action
     * would. The loop's handler takes over once it runs. */
    signal(SIGHUP, SIG_IGN);
    if ((a.set = settings_load(path, err, sizeof(err))) == NULL) {
        fprintf(stderr, "memberbridge: %s\n", err);
        return 1;
    }
    if (check_only) {
        printf("%s: configuration is valid\n", path);
        settings_unref(a.set);
        return 0;
    }

    log_set_level(a.set->conf.log.level);
    if (log_open_access(a.set->conf.log.access_log) != 0) {
        fprintf(stderr, "memberbridge: %s: cannot open access_log '%s'\n", path,
                a.set->conf.log.access_log);
        settings_unref(a.set);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Each worker thread allocates from its own malloc arena, which glibc
     * shrinks (madvise) whenever 128 KiB at its top are free: with a
     * request's buffers coming and going that was a system call every few
     * requests. Keep up to 4 MiB; larger blocks are still given back. */
    mallopt(M_TRIM_THRESHOLD, 4 << 20);
    if (evthread_use_pthreads() != 0) {
        fprintf(stderr, "memberbridge: cannot initialise libevent threads\n");
        settings_unref(a.set);
        return 1;
    }
    rc = run(&a);
    log_close_access();
    settings_unref(a.set);
    return rc;
}
