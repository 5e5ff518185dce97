/* svc_auth: the gateway's own Keystone v3 token ([service_auth]), one per
 * event loop, shared by every request of that loop. It knows nothing of
 * membership: callers ask for a token and report when the upstream refused
 * one.
 *
 * - The token is fetched with POST {auth_url}/auth/tokens (password method,
 *   project scope; /v3 is put in between when auth_url's path does not end
 *   in /v3: keystone_tokens_url) on its own mb_upstream (base = auth_url,
 *   [service_auth] ca_file, the [upstream] timeouts and retries, at most 4
 *   connections, 4 MiB replies), cached, and refreshed in the background
 *   before it expires (see svc_auth_get).
 * - Single flight: at most one fetch is running at any time; every caller
 *   that needs a token while it runs waits for that one fetch.
 * - A fetch that fails is remembered for SVC_AUTH_FAIL_HOLD_MS: callers
 *   asking in that time fail at once with the same error, so a wrong
 *   password does not turn every request into a Keystone call. Each failed
 *   fetch is logged once (error level), without the password.
 * - Lifetimes come from Keystone's own issued_at/expires_at difference,
 *   measured on this host's monotonic clock from the moment the token
 *   request was sent (Keystone issued the token after that: this errs on
 *   the early side), so clock skew between the hosts does not matter.
 * - A background refresh that fails while the cached token is still usable
 *   is logged at warning level and the cached token stays in use; the
 *   failure hold then also delays the next background refresh.
 * - The password and the token never appear in a log line.
 */
#ifndef MB_SVC_AUTH_H
#define MB_SVC_AUTH_H

#include <event2/event.h>
#include "aggregate.h"   /* mb_xfer */
#include "mb_conf.h"

#define SVC_AUTH_FAIL_HOLD_MS 1000

typedef struct mb_svc_auth mb_svc_auth;
typedef struct mb_svc_wait mb_svc_wait;

/* Why no token could be had. xfer: XFER_HTTP when Keystone answered with a
 * status other than 201 (http_status holds it), or the transport failure
 * (XFER_UNREACHABLE, XFER_TLS, XFER_TIMEOUT, XFER_BAD_RESPONSE: also a 201
 * without X-Subject-Token or with an unreadable body). message: one line for
 * the client and the log, e.g. "Keystone refused the service credentials
 * (401): The request you have made requires authentication." */
typedef struct {
    mb_xfer     xfer;
    int         http_status;
    const char *message;
} mb_svc_error;

/* token is NULL exactly when err is not NULL. Both are valid only during
 * the callback: copy what you need. The callback may call svc_auth_get,
 * svc_auth_rejected and svc_auth_cancel (for other waiters), not
 * svc_auth_free. */
typedef void (*svc_auth_cb)(const char *token, const mb_svc_error *err, void *arg);

typedef enum {
    SVC_TOKEN_READY,    /* *token set (valid until control returns to the loop) */
    SVC_TOKEN_WAIT,     /* *waitp set; cb runs later, exactly once, from the loop */
    SVC_TOKEN_FAILED    /* *err set (valid until control returns to the loop) */
} svc_get_result;

/* conf->service_auth must be complete (auth_url, username, password,
 * project_name; domains default to "Default"). The timeouts, retries and
 * max response size come from conf->upstream. Returns NULL (and logs why)
 * when the client cannot be set up or out of memory. Makes no call yet. */
mb_svc_auth   *svc_auth_new(struct event_base *base, const mb_conf *conf);
/* Cancels the fetch and every waiter (their callbacks never run). Not from
 * inside an svc_auth_cb. a may be NULL. */
void           svc_auth_free(mb_svc_auth *a);

/* A token for one upstream call.
 * - cached and fresh: READY.
 * - cached, past its refresh point but still usable: READY with the cached
 *   token, and a background fetch starts (unless one runs already).
 * - none, or too close to expiry to hand out: WAIT (starting the fetch
 *   unless one runs), or FAILED while a failed fetch is still held.
 * Refresh point: lifetime minus min(120 s, lifetime / 3); usable until:
 * lifetime minus min(10 s, lifetime / 10). */
svc_get_result svc_auth_get(mb_svc_auth *a, const char **token, const mb_svc_error **err,
                            svc_auth_cb cb, void *arg, mb_svc_wait **waitp);
/* Withdraws a waiter: its callback never runs. Allowed from inside another
 * waiter's callback; not for a waiter whose own callback has started (it is
 * freed by then). w may be NULL. */
void           svc_auth_cancel(mb_svc_wait *w);

/* The upstream answered 401 to a call made with token: when it is still the
 * cached one (same string), forget it, so that the next svc_auth_get
 * fetches a new one (callers retry once). A failure hold does not apply to
 * this fetch. A token pointer handed out earlier stays readable until
 * control returns to the loop. */
void           svc_auth_rejected(mb_svc_auth *a, const char *token);

/* Fetches made so far (successful or not), for tests and logs. */
unsigned long  svc_auth_fetches(const mb_svc_auth *a);

#endif
