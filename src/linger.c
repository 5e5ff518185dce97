/* linger: reply, half-close, drain, close (see linger.h). */
#include "linger.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

typedef struct lingerer {
    struct bufferevent *bev;
    struct event       *deadline;
    SSL                *ssl;            /* the bufferevent's, or NULL: plain TCP */
    struct event       *notify_retry;   /* TLS: close_notify waiting for room */
    size_t              discarded, max_bytes;
    int                 shut;
    struct lingerer    *prev, *next;
} lingerer;

/* One list per event-loop thread: a lingerer is only ever touched from the
 * thread running its bufferevent's loop. */
static _Thread_local lingerer *all;

static void lingerer_free(lingerer *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else
        all = l->next;
    if (l->next)
        l->next->prev = l->prev;
    if (l->deadline)
        event_free(l->deadline);
    if (l->notify_retry)
        event_free(l->notify_retry);
    bufferevent_free(l->bev);   /* BEV_OPT_CLOSE_ON_FREE closes the socket (and frees the SSL) */
    free(l);
}

/* ---- TLS close_notify -------------------------------------------------------- */

static void send_close_notify(lingerer *l);

static void on_notify_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    send_close_notify(arg);
}

/* SSL_shutdown, called once, sends the close_notify alert and returns
 * without waiting for the client's: reading goes on through the bufferevent,
 * whose input is discarded. Only if the socket was full (WANT_WRITE: OpenSSL
 * keeps the alert pending) is it called again, once the socket is writable,
 * which then only sends that alert. Errors are of no interest: the client
 * may have gone already. */
static void send_close_notify(lingerer *l)
{
    int r;

    if (SSL_in_init(l->ssl))
        return;                 /* no handshake, no reply: nothing to close */
    ERR_clear_error();          /* SSL_get_error reads the queue too */
    r = SSL_shutdown(l->ssl);
    if (r < 0 && SSL_get_error(l->ssl, r) == SSL_ERROR_WANT_WRITE) {
        if (l->notify_retry == NULL)
            l->notify_retry = event_new(bufferevent_get_base(l->bev), bufferevent_getfd(l->bev),
                                        EV_WRITE, on_notify_writable, l);
        if (l->notify_retry)
            event_add(l->notify_retry, NULL);
    }
    ERR_clear_error();          /* leave the thread's queue clean for the next SSL call */
}

/* ---- callbacks --------------------------------------------------------------- */

/* The reply is out: TCP half-close, or a TLS close_notify (shutdown(2) would
 * cut the TLS stream under OpenSSL). */
static void half_close(lingerer *l)
{
    l->shut = 1;
    if (l->ssl)
        send_close_notify(l);
    else
        shutdown(bufferevent_getfd(l->bev), SHUT_WR);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    lingerer *l = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    l->discarded += evbuffer_get_length(in);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (l->discarded > l->max_bytes)
        lingerer_free(l);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    lingerer *l = arg;
    if (!l->shut && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        half_close(l);
}

static void on_event(struct bufferevent *bev, short events, void *arg)
{
    (void)bev;
    /* A timeout here is stale: libevhtp's read timeout (client_timeout) fired
     * in the same loop pass as the server's request deadline that took the
     * connection over, and its deferred event callback arrives now, with
     * ours. The lingerer's own deadline bounds the linger; freeing here
     * would close the socket before the reply (a 408) was written. */
    if (events & BEV_EVENT_TIMEOUT) {
        bufferevent_enable(bev, EV_READ | EV_WRITE);
        return;
    }
    lingerer_free(arg);   /* EOF or error: the client is done */
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lingerer_free(arg);
}

void linger_close(struct bufferevent *bev, const char *reply, size_t len,
                  int seconds, size_t max_bytes)
{
    lingerer *l = calloc(1, sizeof(*l));
    struct timeval tv = { seconds, 0 };

    if (l == NULL) {
        bufferevent_free(bev);
        return;
    }
    l->bev = bev;
    l->ssl = bufferevent_openssl_get_ssl(bev);
    l->max_bytes = max_bytes;
    l->deadline = evtimer_new(bufferevent_get_base(bev), on_deadline, l);
    l->next = all;
    if (all)
        all->prev = l;
    all = l;
    if (l->deadline == NULL) {
        lingerer_free(l);
        return;
    }
    evtimer_add(l->deadline, &tv);
    /* what evhtp already read but did not parse is discarded too */
    evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
    bufferevent_setcb(bev, on_read, on_write, on_event, l);
    bufferevent_set_timeouts(bev, NULL, NULL);   /* l->deadline bounds it all */
    if (len > 0)
        bufferevent_write(bev, reply, len);
    else
        half_close(l);               /* nothing to send: half-close now */
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

int linger_pending(void)
{
    return all != NULL;
}

void linger_close_all(void)
{
    while (all)
        lingerer_free(all);
}
