/* listen_probe: is the [server] listen address free? Every worker binds it
 * with SO_REUSEPORT, which would also let a second gateway (or any program
 * of the same user that asks for it) share the port without an error; a
 * plain bind first makes "address already in use" stop start-up instead. */
#ifndef MB_LISTEN_PROBE_H
#define MB_LISTEN_PROBE_H

#include "mb_conf.h"

/* Returns 0 when the address can be bound, or -1 after logging why. */
int listen_probe(const mb_conf *c);

#endif
