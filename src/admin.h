/* admin: the [admin] listen endpoint on the main thread's loop: GET /metrics
 * (the Prometheus text format, from metrics.c) and GET /healthcheck. Kept
 * off the main listener so that it can be bound where only monitoring
 * reaches. Any other path is 404, any other method 405. */
#ifndef MB_ADMIN_H
#define MB_ADMIN_H

#include <event2/event.h>

typedef struct mb_admin mb_admin;

/* Binds host:port (host as in the config: "127.0.0.1", "::1"). Returns
 * NULL after logging why. */
mb_admin *admin_new(struct event_base *base, const char *host, int port, const char *listen);
void      admin_free(mb_admin *a);

#endif
