/* reply: the JSON bodies the gateway writes, generated with yajl_gen so that
 * ids and messages are always escaped (never pasted into JSON text). */
#include "reply.h"
#include "utf8.h"

#include <stdlib.h>
#include <string.h>

/* Any yajl_gen call that fails sends the function to its one cleanup path. */
#define GEN(call) do { if ((call) != yajl_gen_status_ok) goto out; } while (0)
#define GEN_TEXT(g, s) do { if (reply_gen_text((g), (s), strlen(s)) != 0) goto out; } while (0)

static const struct { int code; const char *title; } titles[] = {
    { 200, "OK" },
    { 201, "Created" },
    { 202, "Accepted" },
    { 204, "No Content" },
    { 301, "Moved Permanently" },
    { 302, "Found" },
    { 304, "Not Modified" },
    { 400, "Bad Request" },
    { 401, "Unauthorized" },
    { 403, "Forbidden" },
    { 404, "Not Found" },
    { 405, "Method Not Allowed" },
    { 406, "Not Acceptable" },
    { 408, "Request Timeout" },
    { 409, "Conflict" },
    { 410, "Gone" },
    { 411, "Length Required" },
    { 412, "Precondition Failed" },
    { 413, "Request Entity Too Large" },   /* the title Glance (webob) uses */
    { 414, "Request-URI Too Long" },
    { 415, "Unsupported Media Type" },
    { 416, "Requested Range Not Satisfiable" },
    { 417, "Expectation Failed" },
    { 422, "Unprocessable Entity" },
    { 428, "Precondition Required" },
    { 429, "Too Many Requests" },
    { 431, "Request Header Fields Too Large" },
    { 500, "Internal Server Error" },
    { 501, "Not Implemented" },
    { 502, "Bad Gateway" },
    { 503, "Service Unavailable" },
    { 504, "Gateway Timeout" },
};

const char *reply_status_title(int code)
{
    for (size_t i = 0; i < sizeof(titles) / sizeof(titles[0]); i++)
        if (titles[i].code == code)
            return titles[i].title;
    return "Error";
}

size_t reply_utf8_len(const unsigned char *s, size_t len)
{
    return utf8_char_len(s, len);
}


int reply_gen_text(yajl_gen g, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    if (utf8_valid(u, len))
        return yajl_gen_string(g, u, len) == yajl_gen_status_ok ? 0 : -1;

    /* Each bad byte becomes the 3-byte U+FFFD. */
    if (len > ((size_t)-1) / 3)
        return -1;
    unsigned char *clean = malloc(len * 3 + 1);
    if (clean == NULL)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; ) {
        size_t n = reply_utf8_len(u + i, len - i);
        if (n == 0) {
            memcpy(clean + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(clean + o, u + i, n);
            o += n;
            i += n;
        }
    }
    int rc = yajl_gen_string(g, clean, o) == yajl_gen_status_ok ? 0 : -1;
    free(clean);
    return rc;
}

yajl_gen reply_gen_new(void)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g != NULL)
        yajl_gen_config(g, yajl_gen_beautify, 0);
    return g;
}

char *reply_gen_take(yajl_gen g, size_t *len)
{
    const unsigned char *buf;
    size_t n;
    if (yajl_gen_get_buf(g, &buf, &n) != yajl_gen_status_ok)
        return NULL;
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, buf, n);
    out[n] = '\0';
    if (len != NULL)
        *len = n;
    return out;
}

yajl_gen_status reply_gen_key(yajl_gen g, const char *key)
{
    return yajl_gen_string(g, (const unsigned char *)key, strlen(key));
}

int reply_gen_error(yajl_gen g, int code, const char *message)
{
    if (message == NULL)
        message = reply_status_title(code);
    GEN(reply_gen_key(g, "error"));
    GEN(yajl_gen_map_open(g));
    GEN(reply_gen_key(g, "code"));
    GEN(yajl_gen_integer(g, code));
    GEN(reply_gen_key(g, "title"));
    GEN(reply_gen_key(g, reply_status_title(code)));
    GEN(reply_gen_key(g, "message"));
    GEN_TEXT(g, message);
    GEN(yajl_gen_map_close(g));
    return 0;
out:
    return -1;
}

char *reply_error_json(int code, const char *message, size_t *len)
{
    char *res = NULL;
    yajl_gen g = reply_gen_new();
    if (g == NULL)
        return NULL;
    GEN(yajl_gen_map_open(g));
    if (reply_gen_error(g, code, message) != 0)
        goto out;
    GEN(yajl_gen_map_close(g));
    res = reply_gen_take(g, len);
out:
    yajl_gen_free(g);
    return res;
}

/* {"<list_key>": [{"<id_key>": ID, "can_share": false}, ...]} */
static char *id_list_json(const char *list_key, const char *id_key,
                          const mb_strset *ids, size_t *len)
{
    char *res = NULL;
    yajl_gen g = reply_gen_new();
    if (g == NULL)
        return NULL;
    GEN(yajl_gen_map_open(g));
    GEN(reply_gen_key(g, list_key));
    GEN(yajl_gen_array_open(g));
    size_t n = ids != NULL ? strset_count(ids) : 0;
    for (size_t i = 0; i < n; i++) {
        GEN(yajl_gen_map_open(g));
        GEN(reply_gen_key(g, id_key));
        GEN_TEXT(g, strset_get(ids, i));
        GEN(reply_gen_key(g, "can_share"));
        GEN(yajl_gen_bool(g, 0));
        GEN(yajl_gen_map_close(g));
    }
    GEN(yajl_gen_array_close(g));
    GEN(yajl_gen_map_close(g));
    res = reply_gen_take(g, len);
out:
    yajl_gen_free(g);
    return res;
}

char *reply_members_json(const mb_strset *members, size_t *len)
{
    return id_list_json("members", "member_id", members, len);
}

char *reply_shared_images_json(const mb_strset *image_ids, size_t *len)
{
    return id_list_json("shared_images", "image_id", image_ids, len);
}

char *reply_v2_add_json(const char *member_id, size_t *len)
{
    char *res = NULL;
    yajl_gen g = reply_gen_new();
    if (g == NULL)
        return NULL;
    GEN(yajl_gen_map_open(g));
    GEN(reply_gen_key(g, "member"));
    GEN(yajl_gen_string(g, (const unsigned char *)member_id, strlen(member_id)));
    GEN(yajl_gen_map_close(g));
    res = reply_gen_take(g, len);
out:
    yajl_gen_free(g);
    return res;
}
