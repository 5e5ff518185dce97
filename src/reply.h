/* reply: the JSON bodies the gateway writes (yajl_gen, so ids are escaped).
 * Pure: no I/O. Every function returns a malloc'd buffer (NUL-terminated,
 * length in *len) or NULL when out of memory. */
#ifndef MB_REPLY_H
#define MB_REPLY_H

#include <stddef.h>
#include <yajl/yajl_gen.h>
#include "strset.h"

/* "Bad Request", "Not Found", ... ; "Error" for unknown codes. */
const char *reply_status_title(int code);

/* {"error": {"code": code, "title": ..., "message": message}} */
char *reply_error_json(int code, const char *message, size_t *len);

/* v1 list: {"members": [{"member_id": M, "can_share": false}, ...]} */
char *reply_members_json(const mb_strset *members, size_t *len);

/* v1 shared images: {"shared_images": [{"image_id": I, "can_share": false}, ...]} */
char *reply_shared_images_json(const mb_strset *image_ids, size_t *len);

/* v2 add body: {"member": "<member_id>"}. The id's bytes are written as
 * they are (never substituted: that would name another member). */
char *reply_v2_add_json(const char *member_id, size_t *len);

/* Length of the well-formed UTF-8 sequence that starts s[0..len): 1 to 4,
 * or 0 when none does (stray continuation byte, overlong form, surrogate,
 * beyond U+10FFFF, cut short). */
size_t reply_utf8_len(const unsigned char *s, size_t len);

/* yajl_gen_string of s[0..len), with each byte that is not part of
 * well-formed UTF-8 written as U+FFFD, so the JSON written stays valid
 * whatever the text holds (an id from a percent-decoded path may hold any
 * byte). Returns 0, or -1 on error (out of memory). */
int reply_gen_text(yajl_gen g, const char *s, size_t len);

/* Helpers for the other JSON writers: a generator without pretty-printing,
 * a key (an ASCII literal), and a malloc'd NUL-terminated copy of the
 * output (*len set when len is not NULL); NULL when out of memory. */
yajl_gen        reply_gen_new(void);
yajl_gen_status reply_gen_key(yajl_gen g, const char *key);
char           *reply_gen_take(yajl_gen g, size_t *len);
/* Writes the key "error" and {"code", "title", "message"} into the open map
 * of g (message NULL: the title). Returns 0, or -1 when yajl fails. */
int             reply_gen_error(yajl_gen g, int code, const char *message);

#endif
