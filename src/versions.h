/* versions: the Image API version document (GET / and GET /versions) of
 * the upstream, with the v1 entries this gateway serves added, so that v1
 * clients that discover versions find v1. Pure: no I/O. */
#ifndef MB_VERSIONS_H
#define MB_VERSIONS_H

#include <stddef.h>

/* body: the upstream's document {"versions": [{"id", "status", "links":
 * [{"rel", "href"}]}, ...], ...}. Returns it re-generated with two entries
 * appended to "versions" — {"id": "v1.1", ...} and {"id": "v1.0", ...},
 * status "DEPRECATED", links self -> gateway_base + "/v1/" — unless the
 * upstream lists them already; every "href" that starts with upstream_base
 * (compared without the scheme) is made to start with gateway_base
 * instead. malloc'd, *out_len set; NULL
 * when the body is not such a document (or out of memory). JSON nested
 * deeper than 64 levels is refused. */
char *versions_with_v1(const char *body, size_t len, const char *upstream_base,
                       const char *gateway_base, size_t *out_len);

#endif
