/* linger: reply, half-close, drain, close (see linger.h). */
#include "linger.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/event.h>

typedef struct lingerer {
    struct bufferevent *bev;
    struct event       *deadline;
    size_t              discarded, max_bytes;
    int                 shut;
    struct lingerer    *prev, *next;
} lingerer;

/* Single event loop per process for now: a plain list is enough. */
static lingerer *all;

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
    bufferevent_free(l->bev);   /* BEV_OPT_CLOSE_ON_FREE closes the socket */
    free(l);
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
    if (!l->shut && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        l->shut = 1;
        shutdown(bufferevent_getfd(bev), SHUT_WR);
    }
}

static void on_event(struct bufferevent *bev, short events, void *arg)
{
    (void)bev;
    (void)events;   /* EOF, error or timeout: the client is done */
    lingerer_free(arg);
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
    bufferevent_set_timeouts(bev, &tv, &tv);
    if (len > 0) {
        bufferevent_write(bev, reply, len);
    } else {
        l->shut = 1;                 /* nothing to send: half-close now */
        shutdown(bufferevent_getfd(bev), SHUT_WR);
    }
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

void linger_close_all(void)
{
    while (all)
        lingerer_free(all);
}
