/* svc_auth: the gateway's own Keystone v3 token (see svc_auth.h).
 *
 * State: at most one cached token with its refresh point and usable-until
 * time (monotonic clock), at most one fetch (mb_call) in flight, the list of
 * waiters for that fetch, and the last failure with its hold time.
 *
 * Pointer lifetimes: a token handed out READY, or to waiters, must stay
 * readable until control returns to the loop, even when svc_auth_rejected or
 * an expiry drops it in the meantime. A dropped token is therefore moved to
 * `retired`, not freed; the retired token is wiped and freed when the next
 * fetch completes (a fresh pass of the loop, where no caller can still hold
 * it) or in svc_auth_free. A token can only be dropped while one is cached,
 * and a new one is only cached by a completing fetch, so the slot is always
 * empty when a token is retired. The failure message lives in a fixed
 * buffer that only a completing fetch rewrites, for the same reason. */
#include "svc_auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mb_config.h"
#include "keystone_json.h"
#include "log.h"
#include "reply.h"
#include "upstream.h"
#include "utf8.h"
#include "v2_parse.h"

#define SVC_MAX_CONNECTIONS   4
#define SVC_MAX_RESPONSE      (4u << 20)   /* the token body carries the catalog */
#define SVC_MAX_KS_MESSAGE    300          /* Keystone's own message, in ours */

typedef struct {
    mb_svc_wait *first, *last;
} wait_list;

struct mb_svc_wait {
    wait_list   *list;       /* the list it is on: the auth's, or the one being called */
    mb_svc_wait *prev, *next;
    svc_auth_cb  cb;
    void        *arg;
};

struct mb_svc_auth {
    mb_upstream  *up;
    const char   *path;          /* "/auth/tokens" or "/v3/auth/tokens" (static) */
    char         *auth_url, *username, *user_domain, *password, *project, *project_domain;

    mb_call      *fetch;         /* the one fetch in flight, or NULL */
    double        fetch_started; /* monotonic seconds */
    wait_list     waiters;
    unsigned long fetches;

    char         *token;         /* cached, or NULL */
    char         *retired;       /* dropped but maybe still held (see the top) */
    double        refresh_at, usable_until;

    int           held;          /* the last fetch failed ... */
    double        hold_until;    /* ... and that counts until then */
    mb_svc_error  err;
    char          err_msg[512];
};

static const mb_svc_error oom_error = { XFER_BAD_RESPONSE, 0, "out of memory" };

static const char *const request_headers[] = {
    "Content-Type: application/json",
    "Accept: application/json",
    "User-Agent: memberbridge/" PACKAGE_VERSION,
    NULL
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static double min_d(double a, double b)
{
    return a < b ? a : b;
}

/* ---- waiters --------------------------------------------------------------- */

static void wait_unlink(mb_svc_wait *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        w->list->first = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        w->list->last = w->prev;
    w->prev = w->next = NULL;
}

static void wait_append(wait_list *l, mb_svc_wait *w)
{
    w->list = l;
    w->prev = l->last;
    w->next = NULL;
    if (l->last)
        l->last->next = w;
    else
        l->first = w;
    l->last = w;
}

/* Calls every waiter once. The list is taken over first, so a callback may
 * call svc_auth_get (a new waiter goes on the auth's list, not this one),
 * cancel waiters still on this list, or report a rejected token. Each
 * waiter is freed before its callback runs. */
static void call_waiters(mb_svc_auth *a, const char *token, const mb_svc_error *err)
{
    wait_list calling = a->waiters;
    a->waiters = (wait_list){ NULL, NULL };
    for (mb_svc_wait *w = calling.first; w != NULL; w = w->next)
        w->list = &calling;
    mb_svc_wait *w;
    while ((w = calling.first) != NULL) {
        svc_auth_cb cb = w->cb;
        void *arg = w->arg;
        wait_unlink(w);
        free(w);
        cb(token, err, arg);
    }
}

/* ---- the cached token ----------------------------------------------------- */

static void retire_token(mb_svc_auth *a)
{
    wipe_free(a->retired);   /* never set here (see the top); just in case */
    a->retired = a->token;
    a->token = NULL;
}

static int held(const mb_svc_auth *a, double now)
{
    return a->held && now < a->hold_until;
}

/* ---- the fetch ------------------------------------------------------------- */

static void on_fetch_done(const mb_response *r, void *arg);

/* Starts the fetch. Returns 0, or -1 when out of memory (logged). */
static int fetch_start(mb_svc_auth *a)
{
    size_t len;
    char *body = keystone_auth_body(a->username, a->user_domain, a->password,
                                    a->project, a->project_domain, &len);
    if (body != NULL) {
        mb_request req = {
            .method = "POST", .path = a->path, .headers = request_headers,
            .body = body, .body_len = len, .secret_body = 1,
            .want_header = "X-Subject-Token",
        };
        a->fetch_started = now_s();
        a->fetch = upstream_call(a->up, &req, on_fetch_done, a);
        explicit_bzero(body, len);   /* upstream_call made its own copy */
        free(body);
    }
    if (a->fetch == NULL) {
        log_error("service_auth: out of memory starting a token request");
        return -1;
    }
    a->fetches++;
    return 0;
}

static const char *transport_what(mb_xfer x)
{
    switch (x) {
    case XFER_TLS:          return "TLS with Keystone failed";
    case XFER_TIMEOUT:      return "Keystone did not answer in time";
    case XFER_BAD_RESPONSE: return "Keystone's response was unusable";
    default:                return "Keystone could not be reached";
    }
}

/* a->err = why r is not a token; its message goes in a->err_msg. */
static void set_error(mb_svc_auth *a, const mb_response *r, const char *why_201)
{
    a->err.xfer = r->xfer;
    a->err.http_status = 0;
    a->err.message = a->err_msg;
    if (r->xfer != XFER_HTTP) {
        snprintf(a->err_msg, sizeof(a->err_msg), "%s: %s", transport_what(r->xfer), r->error);
    } else if (r->status == 201) {
        a->err.xfer = XFER_BAD_RESPONSE;
        snprintf(a->err_msg, sizeof(a->err_msg), "Keystone answered 201 %s", why_201);
    } else {
        a->err.http_status = r->status;
        char *ks = v2_error_message(r->body, r->body_len, SVC_MAX_KS_MESSAGE);
        const char *msg = ks != NULL ? ks : reply_status_title(r->status);
        if (r->status == 401)
            snprintf(a->err_msg, sizeof(a->err_msg),
                     "Keystone refused the service credentials (401): %s", msg);
        else
            snprintf(a->err_msg, sizeof(a->err_msg),
                     "Keystone answered %d to the service token request: %s", r->status, msg);
        free(ks);
    }
}

/* The token and its lifetime from a 201, or NULL with a->err set. */
static char *take_token(mb_svc_auth *a, const mb_response *r, double *lifetime)
{
    if (r->xfer != XFER_HTTP || r->status != 201) {
        set_error(a, r, NULL);
        return NULL;
    }
    if (r->header == NULL || r->header[0] == '\0') {
        set_error(a, r, "without an X-Subject-Token header");
        return NULL;
    }
    if (!keystone_token_usable(r->header)) {
        set_error(a, r, "with an X-Subject-Token that cannot be sent in a header "
                        "(over 8 KiB, or a space or control character)");
        return NULL;
    }
    if (keystone_parse_token(r->body, r->body_len, lifetime) != 0) {
        set_error(a, r, "with a token body without a valid issued_at and expires_at");
        return NULL;
    }
    char *t = strdup(r->header);
    if (t == NULL) {
        a->err = oom_error;
        return NULL;
    }
    return t;
}

static void fetch_succeeded(mb_svc_auth *a, char *token, double lifetime)
{
    wipe_free(a->token);
    a->token = token;
    /* From when the request left: Keystone issued the token after that,
     * so this errs on the early side. */
    a->refresh_at = a->fetch_started + lifetime - min_d(120, lifetime / 3);
    a->usable_until = a->fetch_started + lifetime - min_d(10, lifetime / 10);
    a->held = 0;
    log_info("service_auth: obtained a token for user %s (project %s), valid %.0f s",
             a->username, a->project, lifetime);
    call_waiters(a, a->token, NULL);
}

static void fetch_failed(mb_svc_auth *a, double now)
{
    a->held = 1;
    a->hold_until = now + SVC_AUTH_FAIL_HOLD_MS / 1000.0;
    if (a->token != NULL && now < a->usable_until) {
        /* a background refresh: the current token still serves */
        log_warning("service_auth: %s (user %s at %s); keeping the current token for %.0f s more",
                    a->err.message, a->username, a->auth_url, a->usable_until - now);
        call_waiters(a, a->token, NULL);
        return;
    }
    wipe_free(a->token);
    a->token = NULL;
    log_error("service_auth: %s (user %s at %s)", a->err.message, a->username, a->auth_url);
    call_waiters(a, NULL, &a->err);
}

static void on_fetch_done(const mb_response *r, void *arg)
{
    mb_svc_auth *a = arg;
    double lifetime = 0;

    a->fetch = NULL;
    /* a fresh pass of the loop: nobody holds a retired token any more */
    wipe_free(a->retired);
    a->retired = NULL;
    char *token = take_token(a, r, &lifetime);
    if (token != NULL)
        fetch_succeeded(a, token, lifetime);
    else
        fetch_failed(a, now_s());
}

/* ---- the interface ---------------------------------------------------------- */

static int copy_setting(char **dst, const char *value, const char *name, int check_utf8)
{
    if (value == NULL) {
        log_error("service_auth: [service_auth] %s is not set", name);
        return -1;
    }
    if (check_utf8 && !utf8_valid((const unsigned char *)value, strlen(value))) {
        log_error("service_auth: [service_auth] %s is not valid UTF-8", name);
        return -1;
    }
    if ((*dst = strdup(value)) == NULL) {
        log_error("service_auth: out of memory");
        return -1;
    }
    return 0;
}

static int copy_settings(mb_svc_auth *a, const mb_conf *conf)
{
    const char *ud = conf->service_auth.user_domain_name;
    const char *pd = conf->service_auth.project_domain_name;
    return copy_setting(&a->auth_url, conf->service_auth.auth_url, "auth_url", 0) ||
           copy_setting(&a->username, conf->service_auth.username, "username", 1) ||
           copy_setting(&a->password, conf->service_auth.password, "password", 1) ||
           copy_setting(&a->user_domain, ud ? ud : "Default", "user_domain_name", 1) ||
           copy_setting(&a->project, conf->service_auth.project_name, "project_name", 1) ||
           copy_setting(&a->project_domain, pd ? pd : "Default", "project_domain_name", 1)
           ? -1 : 0;
}

mb_svc_auth *svc_auth_new(struct event_base *base, const mb_conf *conf)
{
    char *base_url = NULL;
    mb_svc_auth *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        log_error("service_auth: out of memory");
        return NULL;
    }
    if (copy_settings(a, conf) != 0)
        goto fail;
    if ((base_url = keystone_tokens_url(a->auth_url, &a->path)) == NULL) {
        log_error("service_auth: cannot use [service_auth] auth_url %s", a->auth_url);
        goto fail;
    }
    mb_upstream_opts opts = {
        .base_url = base_url,
        .ca_file = conf->service_auth.ca_file,
        .insecure = 0,
        .connect_timeout_ms = conf->upstream.connect_timeout * 1000L,
        .request_timeout_ms = conf->upstream.request_timeout * 1000L,
        .retries = conf->upstream.retries,
        .max_connections = SVC_MAX_CONNECTIONS,
        .max_response_bytes = SVC_MAX_RESPONSE,
    };
    a->up = upstream_new(base, &opts);   /* copies the strings */
    if (a->up == NULL)
        goto fail;
    free(base_url);
    return a;
fail:
    free(base_url);
    svc_auth_free(a);
    return NULL;
}

void svc_auth_free(mb_svc_auth *a)
{
    if (a == NULL)
        return;
    if (a->fetch)
        upstream_cancel(a->fetch);
    mb_svc_wait *w;
    while ((w = a->waiters.first) != NULL) {
        wait_unlink(w);
        free(w);
    }
    upstream_free(a->up);
    wipe_free(a->token);
    wipe_free(a->retired);
    wipe_free(a->password);
    free(a->auth_url);
    free(a->username);
    free(a->user_domain);
    free(a->project);
    free(a->project_domain);
    free(a);
}

svc_get_result svc_auth_get(mb_svc_auth *a, const char **token, const mb_svc_error **err,
                            svc_auth_cb cb, void *arg, mb_svc_wait **waitp)
{
    double now = now_s();

    if (a->token != NULL && now >= a->usable_until)
        retire_token(a);
    if (a->token != NULL) {
        if (now >= a->refresh_at && a->fetch == NULL && !held(a, now))
            (void)fetch_start(a);   /* in the background; logged if it cannot start */
        *token = a->token;
        return SVC_TOKEN_READY;
    }
    if (held(a, now)) {
        *err = &a->err;
        return SVC_TOKEN_FAILED;
    }
    mb_svc_wait *w = calloc(1, sizeof(*w));
    if (w == NULL || (a->fetch == NULL && fetch_start(a) != 0)) {
        free(w);
        *err = &oom_error;
        return SVC_TOKEN_FAILED;
    }
    w->cb = cb;
    w->arg = arg;
    wait_append(&a->waiters, w);
    *waitp = w;
    return SVC_TOKEN_WAIT;
}

void svc_auth_cancel(mb_svc_wait *w)
{
    if (w == NULL)
        return;
    wait_unlink(w);
    free(w);
}

void svc_auth_rejected(mb_svc_auth *a, const char *token)
{
    if (a->token == NULL || token == NULL || strcmp(a->token, token) != 0)
        return;   /* already replaced or dropped */
    retire_token(a);
    a->held = 0;  /* the next get fetches at once, even after a failed refresh */
}

unsigned long svc_auth_fetches(const mb_svc_auth *a)
{
    return a->fetches;
}
