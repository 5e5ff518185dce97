/* listen_probe: see listen_probe.h. */
#include "listen_probe.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

int listen_probe(const mb_conf *c)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_PASSIVE };
    struct addrinfo *ai = NULL;
    char port[16];
    int fd, one = 1, rc = -1, gai;

    snprintf(port, sizeof(port), "%d", c->server.listen_port);
    if ((gai = getaddrinfo(c->server.listen_host, port, &hints, &ai)) != 0) {
        log_error("cannot listen on %s: %s", c->server.listen, gai_strerror(gai));
        return -1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("cannot listen on %s: %s", c->server.listen, strerror(errno));
    } else {
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
            log_error("cannot listen on %s: %s", c->server.listen, strerror(errno));
        else
            rc = 0;
        close(fd);
    }
    freeaddrinfo(ai);
    return rc;
}
