/* fwd_headers: which of the client's headers go upstream (SPEC section 3),
 * and the X-Openstack-Request-Id. Pure: no I/O. */
#ifndef MB_FWD_HEADERS_H
#define MB_FWD_HEADERS_H

#include <stddef.h>
#include "framing.h"   /* mb_header */

#define MB_REQID_LEN 40  /* "req-" + 36-char UUID */

/* 1 when s is "req-" followed by a UUID in its 8-4-4-4-12 lower- or
 * upper-case hex form. */
int  reqid_valid(const char *s, size_t len);
/* Writes a new "req-<uuid4>" (NUL-terminated) into out. */
void reqid_new(char out[MB_REQID_LEN + 1]);

/* 1 when the header name is hop-by-hop or set by the gateway itself for the
 * upstream call, so it must not be copied: Connection, Keep-Alive, TE,
 * Trailer, Transfer-Encoding, Upgrade, Proxy-*, Host, Content-Length,
 * Content-Type, Expect, X-Openstack-Request-Id, Accept-Encoding (the
 * gateway parses the replies itself); also any header named in
 * the client's Connection header is dropped by fwd_headers_build. */
int  fwd_header_is_dropped(const char *name, size_t nlen);

/* The header lines for one upstream call: the client's end-to-end headers
 * h[0..n) as "Name: value", then "X-Openstack-Request-Id: <request_id>",
 * "Accept: application/json" when the client sent no Accept,
 * and "Content-Type: <content_type>" unless it is NULL. An empty value
 * gives "Name:". NULL-terminated, one malloc'd block; free with free().
 * NULL when out of memory. */
char **fwd_headers_build(const mb_header *h, size_t n, const char *request_id,
                         const char *content_type);

/* The header lines for a call made with the gateway's own token (SPEC
 * section 3): only "X-Auth-Token: <token>", the request id, "Accept:
 * application/json" and "Content-Type: <content_type>" unless NULL;
 * never the client's token or identity headers. token must hold
 * no CR, LF or NUL. Same block form as fwd_headers_build. The block holds
 * the token: wipe it (explicit_bzero) before free when that matters. */
char **fwd_headers_service(const char *token, const char *request_id, const char *content_type);

/* ---- the proxy (requests that are not v1 membership calls) ---- */

/* 1 for a hop-by-hop header: Connection, Keep-Alive, TE, Trailer,
 * Transfer-Encoding, Upgrade, Proxy-*. */
int    fwd_is_hop_by_hop(const char *name, size_t nlen);

/* The header lines of a proxied request: the client's headers except the
 * hop-by-hop ones (and those its Connection header names), Host,
 * Content-Length and Expect; then X-Openstack-Request-Id, X-Forwarded-For
 * (the client's own X-Forwarded-For values, then client_ip),
 * X-Forwarded-Proto (proto). Same block form as
 * fwd_headers_build. */
char **fwd_headers_proxy(const mb_header *h, size_t n, const char *request_id,
                         const char *client_ip, const char *proto);

/* Whether a response header line "Name: value" of the upstream goes back to
 * the client: not hop-by-hop, not named by the response's Connection
 * header (lines[0..n)), not Content-Length (the proxy sets the framing). */
int    fwd_response_line_kept(const char *line, const char *const *lines, size_t n);

#endif
