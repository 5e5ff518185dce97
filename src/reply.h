/* reply: the JSON bodies the gateway writes (yajl_gen, so ids are escaped).
 * Pure: no I/O. Every function returns a malloc'd buffer (NUL-terminated,
 * length in *len) or NULL when out of memory. */
#ifndef MB_REPLY_H
#define MB_REPLY_H

#include <stddef.h>
#include "strset.h"

/* "Bad Request", "Not Found", ... ; "Error" for unknown codes. */
const char *reply_status_title(int code);

/* {"error": {"code": code, "title": ..., "message": message}} */
char *reply_error_json(int code, const char *message, size_t *len);

/* v1 list: {"members": [{"member_id": M, "can_share": false}, ...]} */
char *reply_members_json(const mb_strset *members, size_t *len);

/* v1 shared images: {"shared_images": [{"image_id": I, "can_share": false}, ...]} */
char *reply_shared_images_json(const mb_strset *image_ids, size_t *len);

/* v2 add body: {"member": "<member_id>"} */
char *reply_v2_add_json(const char *member_id, size_t *len);

#endif
