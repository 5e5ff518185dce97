/* v2_parse: parsers for the upstream's (Glance Image API v2) JSON replies,
 * built on the yajl callback parser with a depth bound. Pure: no I/O. */
#ifndef MB_V2_PARSE_H
#define MB_V2_PARSE_H

#include <stddef.h>
#include "strset.h"

/* {"members": [{"member_id": "...", ...}, ...], ...} -> member ids added to
 * out, in order. Returns 0, or -1 when the body is not such a document. */
int v2_parse_member_list(const char *buf, size_t len, mb_strset *out);
/* The same, and the members whose "status" is `status` ("pending",
 * "accepted"...) also added to with_status (when both are not NULL). */
int v2_parse_member_list_status(const char *buf, size_t len, mb_strset *out,
                                const char *status, mb_strset *with_status);

/* The top-level string `key` of a JSON object, copied into out
 * (NUL-terminated): an image's "visibility" (GET /v2/images/{id}), a
 * member's "status" (GET .../members/{m}). Nested keys of the same name do
 * not count; a repeated key: the last wins. Returns 0, or -1 when the body is
 * not an object whose `key` is a string shorter than outlen. */
int v2_parse_top_string(const char *buf, size_t len, const char *key, char *out, size_t outlen);

/* {"images": [{"id": "...", ...}, ...], "next": "/v2/images?..."} -> image
 * ids added to ids; *next set to a malloc'd copy of "next" when present and
 * a string, else NULL. Returns 0, or -1 when the body is not such a
 * document. */
int v2_parse_image_list(const char *buf, size_t len, mb_strset *ids, char **next);

/* A short human message from an upstream error body: Glance's JSON
 * {"message": ...} (also nested as {"error": {"message": ...}}), or the text
 * of an HTML/plain body with tags removed and whitespace collapsed. At most
 * max bytes (cut at a UTF-8 boundary). malloc'd; NULL if nothing usable. */
char *v2_error_message(const char *buf, size_t len, size_t max);

#endif
