/* memberbridge: command line, configuration, signals, start and stop. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <event2/event.h>

#include "mb_config.h"
#include "log.h"
#include "mb_conf.h"
#include "server.h"
#include "svc_auth.h"
#include "upstream.h"

#define DEFAULT_CONFIG        "/etc/memberbridge/memberbridge.conf"
#define MAX_RESPONSE_BYTES    (64u << 20)   /* a 10,000-member list is ~2.5 MB */

typedef struct {
    struct event_base *base;
    mb_server         *server;
    struct event      *grace;
    int                stopping;
    long               grace_seconds;
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
            "      --check-config  validate the configuration and exit 0 (valid) or 1\n"
            "  -h, --help          show this help and exit\n"
            "  -V, --version       show the version and exit\n");
}

static void on_drained(void *arg)
{
    app *a = arg;
    log_info("all requests finished; exiting");
    event_base_loopbreak(a->base);
}

static void on_last_call(evutil_socket_t fd, short what, void *arg)
{
    app *a = arg;
    (void)fd;
    (void)what;
    event_base_loopbreak(a->base);
}

/* The grace period is over: answer what still waits with 503, give those
 * replies a moment to leave, then exit. */
static void on_grace_expired(evutil_socket_t fd, short what, void *arg)
{
    app *a = arg;
    struct timeval tv = { 1, 0 };
    (void)fd;
    (void)what;
    log_warning("shutdown grace period of %ld s over with %zu request(s) in flight; answering them 503",
                a->grace_seconds, server_in_flight(a->server));
    server_abort(a->server);
    event_base_once(a->base, -1, EV_TIMEOUT, on_last_call, a, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    app *a = arg;
    struct timeval tv = { a->grace_seconds, 0 };
    (void)what;
    if (a->stopping) {
        log_info("signal %d again: exiting now", (int)sig);
        event_base_loopbreak(a->base);
        return;
    }
    a->stopping = 1;
    log_info("signal %d: no longer accepting, finishing requests in flight (at most %ld s)",
             (int)sig, a->grace_seconds);
    evtimer_add(a->grace, &tv);
    server_shutdown(a->server, on_drained, a);
}

static int run(const mb_conf *conf)
{
    app a = { .grace_seconds = 0 };
    mb_upstream *up = NULL;
    mb_svc_auth *svc = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    int rc = 1;
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

    /* In-flight requests wait at most for their longest chain of upstream
     * calls: one call; with accept also a token request and the PUT; with
     * share_private_images also the look, the change and the add again. */
    long steps = 1 + (conf->members.accept ? 2 : 0) + (conf->members.share_private_images ? 3 : 0);
    a.grace_seconds = steps * ((long)conf->upstream.request_timeout + conf->upstream.connect_timeout) + 5;
    if ((a.base = event_base_new()) == NULL) {
        log_error("cannot create the event loop");
        return 1;
    }
    if (conf->upstream.insecure)
        log_warning("[upstream] insecure = true: the upstream's TLS certificate is NOT verified");
    if ((up = upstream_new(a.base, &opts)) == NULL)
        goto out;
    if (conf->members.accept) {
        if ((svc = svc_auth_new(a.base, conf)) == NULL)
            goto out;
        log_info("[members] accept = true: added members are accepted as Keystone user %s "
                 "(project %s) at %s", conf->service_auth.username,
                 conf->service_auth.project_name, conf->service_auth.auth_url);
    }
    if (conf->members.share_private_images)
        log_info("[members] share_private_images = true: private images are made shared "
                 "when members are added");
    if ((a.server = server_new(a.base, conf, up, svc)) == NULL) {
        log_error("cannot create the HTTP server");
        goto out;
    }
    if (server_listen(a.server) != 0)
        goto out;
    a.grace = evtimer_new(a.base, on_grace_expired, &a);
    sigterm = evsignal_new(a.base, SIGTERM, on_signal, &a);
    sigint = evsignal_new(a.base, SIGINT, on_signal, &a);
    if (a.grace == NULL || sigterm == NULL || sigint == NULL
        || evsignal_add(sigterm, NULL) != 0 || evsignal_add(sigint, NULL) != 0) {
        log_error("cannot set up signal handling");
        goto out;
    }
    log_info("memberbridge %s ready", PACKAGE_VERSION);
    event_base_dispatch(a.base);
    rc = 0;

out:
    server_free(a.server);      /* closes connections, cancels their calls */
    if (svc)
        svc_auth_free(svc);
    upstream_free(up);
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    if (a.grace)
        event_free(a.grace);
    event_base_free(a.base);
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
    mb_conf conf;

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

    conf_defaults(&conf);
    if (conf_load(&conf, path, err, sizeof(err)) != 0) {
        fprintf(stderr, "memberbridge: %s\n", err);
        conf_free(&conf);
        return 1;
    }
    if (check_only) {
        printf("%s: configuration is valid\n", path);
        conf_free(&conf);
        return 0;
    }

    log_set_level(conf.log.level);
    if (log_open_access(conf.log.access_log) != 0) {
        fprintf(stderr, "memberbridge: %s: cannot open access_log '%s'\n", path, conf.log.access_log);
        conf_free(&conf);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "memberbridge: cannot initialise libcurl\n");
        conf_free(&conf);
        return 1;
    }
    rc = run(&conf);
    curl_global_cleanup();
    log_close_access();
    conf_free(&conf);
    return rc;
}
