/* v2_parse: the upstream's JSON replies, read with yajl's callback parser.
 *
 * Only the direct fields of the list entries are taken: an "id" or
 * "member_id" inside a nested object (image properties, locations metadata)
 * is skipped. Depth is bounded and numbers are never converted. */
#include "v2_parse.h"

#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "reply.h"

#define V2_MAX_DEPTH 64

static int key_is(const unsigned char *key, size_t len, const char *name)
{
    return len == strlen(name) && memcmp(key, name, len) == 0;
}

static char *dup_bytes(const unsigned char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d != NULL) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

/* Parses buf[0..len) as one complete JSON document with the given
 * callbacks. Returns 0 when yajl accepted it and no callback refused. */
static int run_yajl(const yajl_callbacks *cbs, void *ctx, const char *buf, size_t len)
{
    yajl_handle h = yajl_alloc(cbs, NULL, ctx);
    if (h == NULL)
        return -1;
    int rc = -1;
    if (yajl_parse(h, (const unsigned char *)buf, len) == yajl_status_ok &&
        yajl_complete_parse(h) == yajl_status_ok)
        rc = 0;
    yajl_free(h);
    return rc;
}

/* ---- lists: {"<list>": [{"<id>": "...", ...}, ...], "next": "...", ...} ---- */

typedef enum { LF_ROOT, LF_LIST, LF_ENTRY, LF_SKIP } list_frame;
typedef enum { LS_SKIP, LS_LIST, LS_ID, LS_NEXT, LS_STATUS } list_slot;
typedef enum { LV_SCALAR, LV_STRING, LV_NULL, LV_OBJECT, LV_ARRAY } list_value;

typedef struct {
    const char *list_key;     /* "members" or "images" */
    const char *id_key;       /* "member_id" or "id" */
    int         want_next;
    mb_strset  *out;
    const char *status;       /* with `with_status`: the status wanted */
    mb_strset  *with_status;  /* NULL, or: entries whose "status" is `status` */
    char       *next;
    list_frame  frames[V2_MAX_DEPTH];
    size_t      depth;
    list_slot   key_slot;
    int         seen_list;
    char       *entry_id;     /* the current entry's id until it closes */
    size_t      entry_id_len;
    int         entry_match;
} list_parser;

static int lp_push(list_parser *p, list_frame f)
{
    if (p->depth >= V2_MAX_DEPTH)
        return 0;
    p->frames[p->depth++] = f;
    return 1;
}

/* An id goes into a strset and an upstream path: it must be non-empty and
 * hold no NUL. */
static int usable_string(const unsigned char *s, size_t len)
{
    return len > 0 && memchr(s, '\0', len) == NULL;
}

static int lp_value(list_parser *p, list_value k, const unsigned char *s, size_t len)
{
    int container = k == LV_OBJECT || k == LV_ARRAY;
    if (p->depth == 0)   /* the document itself must be an object */
        return k == LV_OBJECT && lp_push(p, LF_ROOT);
    switch (p->frames[p->depth - 1]) {
    case LF_SKIP:
        return container ? lp_push(p, LF_SKIP) : 1;
    case LF_LIST:        /* every list element must be an object */
        if (k != LV_OBJECT)
            return 0;
        free(p->entry_id);
        p->entry_id = NULL;
        p->entry_match = 0;
        return lp_push(p, LF_ENTRY);
    default:
        break;
    }
    switch (p->key_slot) {
    case LS_LIST:
        if (k != LV_ARRAY)
            return 0;
        p->seen_list = 1;
        return lp_push(p, LF_LIST);
    case LS_ID:
        if (k != LV_STRING || !usable_string(s, len))
            return 0;
        free(p->entry_id);          /* a repeated key: last wins */
        p->entry_id = dup_bytes(s, len);
        p->entry_id_len = len;
        return p->entry_id != NULL;
    case LS_NEXT:
        free(p->next);
        p->next = NULL;
        if (k == LV_STRING) {
            if (memchr(s, '\0', len) != NULL)
                return 0;
            p->next = dup_bytes(s, len);
            return p->next != NULL;
        }
        return container ? lp_push(p, LF_SKIP) : 1;   /* not a link: none */
    case LS_STATUS:       /* a repeated key: last wins */
        p->entry_match = k == LV_STRING && len == strlen(p->status) && memcmp(s, p->status, len) == 0;
        return container ? lp_push(p, LF_SKIP) : 1;
    case LS_SKIP:
        break;
    }
    return container ? lp_push(p, LF_SKIP) : 1;
}

static int lp_null(void *ctx)
{
    return lp_value(ctx, LV_NULL, NULL, 0);
}

static int lp_boolean(void *ctx, int v)
{
    (void)v;
    return lp_value(ctx, LV_SCALAR, NULL, 0);
}

static int lp_number(void *ctx, const char *s, size_t len)
{
    (void)s;
    (void)len;
    return lp_value(ctx, LV_SCALAR, NULL, 0);
}

static int lp_string(void *ctx, const unsigned char *s, size_t len)
{
    return lp_value(ctx, LV_STRING, s, len);
}

static int lp_start_map(void *ctx)
{
    return lp_value(ctx, LV_OBJECT, NULL, 0);
}

static int lp_start_array(void *ctx)
{
    return lp_value(ctx, LV_ARRAY, NULL, 0);
}

static int lp_map_key(void *ctx, const unsigned char *key, size_t len)
{
    list_parser *p = ctx;
    p->key_slot = LS_SKIP;
    switch (p->frames[p->depth - 1]) {
    case LF_ROOT:
        if (key_is(key, len, p->list_key))
            p->key_slot = LS_LIST;
        else if (p->want_next && key_is(key, len, "next"))
            p->key_slot = LS_NEXT;
        break;
    case LF_ENTRY:
        if (key_is(key, len, p->id_key))
            p->key_slot = LS_ID;
        else if (p->with_status != NULL && key_is(key, len, "status"))
            p->key_slot = LS_STATUS;
        break;
    default:
        break;
    }
    return 1;
}

static int lp_end_map(void *ctx)
{
    list_parser *p = ctx;
    if (p->frames[--p->depth] != LF_ENTRY)
        return 1;
    /* An entry without its id would be a member or image we cannot act on:
     * the whole reply is unusable rather than silently incomplete. */
    if (p->entry_id == NULL)
        return 0;
    int rc = strset_add(p->out, p->entry_id, p->entry_id_len) >= 0;
    if (rc && p->with_status != NULL && p->entry_match)
        rc = strset_add(p->with_status, p->entry_id, p->entry_id_len) >= 0;
    free(p->entry_id);
    p->entry_id = NULL;
    return rc;
}

static int lp_end_array(void *ctx)
{
    list_parser *p = ctx;
    p->depth--;
    return 1;
}

static const yajl_callbacks list_callbacks = {
    .yajl_null = lp_null,
    .yajl_boolean = lp_boolean,
    .yajl_number = lp_number,
    .yajl_string = lp_string,
    .yajl_start_map = lp_start_map,
    .yajl_map_key = lp_map_key,
    .yajl_end_map = lp_end_map,
    .yajl_start_array = lp_start_array,
    .yajl_end_array = lp_end_array,
};

static int parse_list(list_parser *p, const char *buf, size_t len)
{
    int rc = run_yajl(&list_callbacks, p, buf, len);
    free(p->entry_id);
    if (rc == 0 && !p->seen_list)
        rc = -1;
    return rc;
}

int v2_parse_member_list(const char *buf, size_t len, mb_strset *out)
{
    return v2_parse_member_list_status(buf, len, out, NULL, NULL);
}

int v2_parse_member_list_status(const char *buf, size_t len, mb_strset *out,
                                const char *status, mb_strset *with_status)
{
    list_parser p = { .list_key = "members", .id_key = "member_id", .out = out,
                      .status = status, .with_status = status ? with_status : NULL };
    return parse_list(&p, buf, len);
}

int v2_parse_image_list(const char *buf, size_t len, mb_strset *ids, char **next)
{
    list_parser p = { .list_key = "images", .id_key = "id", .want_next = 1, .out = ids };
    int rc = parse_list(&p, buf, len);
    if (rc != 0) {
        free(p.next);
        p.next = NULL;
    }
    *next = p.next;
    return rc;
}

/* ---- one object's top-level string: an image's "visibility", a member's "status" ---- */

typedef struct {
    size_t depth;
    const char *key;
    int    slot;          /* the next value is the top-level key's */
    int    seen;
    char  *out;
    size_t outlen;
} top_parser;

static int tp_open_map(void *ctx)
{
    top_parser *p = ctx;
    if (p->slot == 1)
        p->seen = 0;                    /* "<key>": {...}: unknown */
    p->slot = 0;
    return ++p->depth <= V2_MAX_DEPTH;
}

static int tp_open_array(void *ctx)
{
    top_parser *p = ctx;
    if (p->depth == 0)
        return 0;                       /* the document must be an object */
    return tp_open_map(ctx);
}

static int tp_close(void *ctx)
{
    top_parser *p = ctx;
    p->depth--;
    return 1;
}

static int tp_key(void *ctx, const unsigned char *key, size_t len)
{
    top_parser *p = ctx;
    p->slot = p->depth == 1 && key_is(key, len, p->key);
    return 1;
}

static int tp_scalar(void *ctx)
{
    top_parser *p = ctx;
    if (p->depth == 0)
        return 0;
    if (p->slot == 1)
        p->seen = 0;                    /* "<key>": null or a number: unknown */
    p->slot = 0;
    return 1;
}

static int tp_bool(void *ctx, int v)
{
    (void)v;
    return tp_scalar(ctx);
}

static int tp_number(void *ctx, const char *s, size_t len)
{
    (void)s;
    (void)len;
    return tp_scalar(ctx);
}

static int tp_string(void *ctx, const unsigned char *s, size_t len)
{
    top_parser *p = ctx;
    if (p->depth == 0)
        return 0;
    if (p->slot == 1) {
        p->seen = len < p->outlen && memchr(s, '\0', len) == NULL;
        if (p->seen) {
            memcpy(p->out, s, len);
            p->out[len] = '\0';
        }
    }
    p->slot = 0;
    return 1;
}

static const yajl_callbacks top_callbacks = {
    .yajl_null = tp_scalar,
    .yajl_boolean = tp_bool,
    .yajl_number = tp_number,
    .yajl_string = tp_string,
    .yajl_start_map = tp_open_map,
    .yajl_map_key = tp_key,
    .yajl_end_map = tp_close,
    .yajl_start_array = tp_open_array,
    .yajl_end_array = tp_close,
};

int v2_parse_top_string(const char *buf, size_t len, const char *key, char *out, size_t outlen)
{
    top_parser p = { .key = key, .out = out, .outlen = outlen };
    if (outlen == 0)
        return -1;
    out[0] = '\0';
    if (run_yajl(&top_callbacks, &p, buf, len) != 0 || !p.seen) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

/* ---- error messages ---- */

/* Finds {"message": S} or {"error": {"message": S}} (and "title" the same
 * way, as a fallback). */
typedef struct {
    size_t depth;
    int    in_error;          /* depth 2 is the "error" object */
    int    slot;              /* 0 skip, 1 message, 2 title, 3 error object */
    int    top_is_object;
    char  *message, *title;
    size_t message_len, title_len;
} msg_parser;

static int mp_keep(char **dst, size_t *dst_len, const unsigned char *s, size_t len)
{
    free(*dst);
    *dst = dup_bytes(s, len);
    *dst_len = len;
    return *dst != NULL;
}

static int mp_scalar(msg_parser *p, const unsigned char *s, size_t len)
{
    if (p->depth == 0)
        return 0;   /* not an object: read the body as text instead */
    if (s == NULL || (p->depth == 2 && !p->in_error) || p->depth > 2)
        return 1;
    if (p->slot == 1)
        return mp_keep(&p->message, &p->message_len, s, len);
    if (p->slot == 2)
        return mp_keep(&p->title, &p->title_len, s, len);
    return 1;
}

static int mp_null(void *ctx)
{
    return mp_scalar(ctx, NULL, 0);
}

static int mp_boolean(void *ctx, int v)
{
    (void)v;
    return mp_scalar(ctx, NULL, 0);
}

static int mp_number(void *ctx, const char *s, size_t len)
{
    (void)s;
    (void)len;
    return mp_scalar(ctx, NULL, 0);
}

static int mp_string(void *ctx, const unsigned char *s, size_t len)
{
    return mp_scalar(ctx, s, len);
}

static int mp_open(msg_parser *p, int is_map)
{
    if (p->depth == 0) {
        if (!is_map)
            return 0;
        p->top_is_object = 1;
    } else if (p->depth == 1 && is_map && p->slot == 3) {
        p->in_error = 1;
    }
    if (p->depth >= V2_MAX_DEPTH)
        return 0;
    p->depth++;
    return 1;
}

static int mp_start_map(void *ctx)
{
    return mp_open(ctx, 1);
}

static int mp_start_array(void *ctx)
{
    return mp_open(ctx, 0);
}

static int mp_close(void *ctx)
{
    msg_parser *p = ctx;
    p->depth--;
    if (p->depth == 1)
        p->in_error = 0;
    return 1;
}

static int mp_map_key(void *ctx, const unsigned char *key, size_t len)
{
    msg_parser *p = ctx;
    p->slot = 0;
    if (p->depth == 1 || (p->depth == 2 && p->in_error)) {
        if (key_is(key, len, "message"))
            p->slot = 1;
        else if (key_is(key, len, "title"))
            p->slot = 2;
        else if (p->depth == 1 && key_is(key, len, "error"))
            p->slot = 3;
    }
    return 1;
}

static const yajl_callbacks msg_callbacks = {
    .yajl_null = mp_null,
    .yajl_boolean = mp_boolean,
    .yajl_number = mp_number,
    .yajl_string = mp_string,
    .yajl_start_map = mp_start_map,
    .yajl_map_key = mp_map_key,
    .yajl_end_map = mp_close,
    .yajl_start_array = mp_start_array,
    .yajl_end_array = mp_close,
};

/* Output of the text cleaner: whole UTF-8 sequences only, runs of
 * whitespace collapsed to one space, none leading or trailing. */
typedef struct {
    char  *buf;
    size_t len, cap;
    int    space;    /* a space is owed before the next character */
    int    full;
} text_out;

static void out_space(text_out *o)
{
    if (o->len > 0)
        o->space = 1;
}

static void out_bytes(text_out *o, const char *s, size_t n)
{
    size_t need = n + (o->space ? 1 : 0);
    if (o->full || need > o->cap - o->len) {
        o->full = 1;   /* cut here: never half a character */
        return;
    }
    if (o->space)
        o->buf[o->len++] = ' ';
    o->space = 0;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static int ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int is_alpha(int c)
{
    c = ascii_lower(c);
    return c >= 'a' && c <= 'z';
}

/* Does s[0..len) start with the tag name `name` (case-insensitive) followed
 * by the end of the name? */
static int tag_name_is(const char *s, size_t len, const char *name)
{
    size_t n = strlen(name);
    if (len < n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (ascii_lower((unsigned char)s[i]) != name[i])
            return 0;
    return len == n || !is_alpha((unsigned char)s[n]);
}

/* Elements whose text is not the message: the <head> (its <title> repeats
 * the <h1>), scripts and styles. */
static const char *const skipped_elements[] = { "head", "title", "script", "style" };

static const char *skipped_element(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(skipped_elements) / sizeof(skipped_elements[0]); i++)
        if (tag_name_is(name, len, skipped_elements[i]))
            return skipped_elements[i];
    return NULL;
}

/* Decodes the entity at s[0..len) (s[0] == '&') into *c, returning its
 * length, or 0 when it is not one we know (then '&' is plain text). Only
 * printable ASCII results: anything else stays as written. */
static size_t decode_entity(const char *s, size_t len, char *c)
{
    static const struct { const char *name; char c; } named[] = {
        { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' }, { "&quot;", '"' },
        { "&apos;", '\'' }, { "&nbsp;", ' ' },
    };
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        size_t n = strlen(named[i].name);
        if (len >= n && memcmp(s, named[i].name, n) == 0) {
            *c = named[i].c;
            return n;
        }
    }
    if (len < 4 || s[1] != '#')
        return 0;
    size_t i = 2;
    int hex = s[i] == 'x' || s[i] == 'X';
    unsigned long v = 0;
    size_t digits = 0;
    for (i += hex; i < len && digits < 6; i++, digits++) {
        int d = (unsigned char)s[i];
        if (d >= '0' && d <= '9')
            d -= '0';
        else if (hex && ascii_lower(d) >= 'a' && ascii_lower(d) <= 'f')
            d = ascii_lower(d) - 'a' + 10;
        else
            break;
        v = v * (hex ? 16 : 10) + (unsigned long)d;
    }
    if (digits == 0 || i >= len || s[i] != ';' || v < 0x20 || v > 0x7e)
        return 0;
    *c = (char)v;
    return i + 1;
}

static int starts_tag(const char *s, size_t i, size_t len)
{
    if (s[i] != '<' || i + 1 >= len)
        return 0;
    unsigned char next = (unsigned char)s[i + 1];
    return is_alpha(next) || next == '/' || next == '!';
}

/* Skips the tag or comment at s[i] (a '<' for which starts_tag holds) and
 * returns the index after it. When skip_head, opening and closing the
 * elements in skipped_elements updates *skipping. */
static size_t skip_markup(const char *s, size_t i, size_t len, int skip_head,
                          const char **skipping)
{
    size_t rest = len - i;
    const char *end;
    if (rest >= 4 && memcmp(s + i, "<!--", 4) == 0) {
        end = rest >= 7 ? memmem(s + i + 4, rest - 4, "-->", 3) : NULL;
        return end != NULL ? (size_t)(end - s) + 3 : len;
    }
    int closing = s[i + 1] == '/';
    size_t name_at = i + 1 + (size_t)closing;
    const char *el = skipped_element(s + name_at, len - name_at);
    if (skip_head && el != NULL) {
        if (!closing && *skipping == NULL)
            *skipping = el;
        else if (closing && *skipping == el)
            *skipping = NULL;
    }
    end = memchr(s + i, '>', rest);
    return end != NULL ? (size_t)(end - s) + 1 : len;
}

/* Writes the text at s[i] (one character or entity) and returns the index
 * after it. */
static size_t copy_char(const char *s, size_t i, size_t len, text_out *o)
{
    unsigned char c = (unsigned char)s[i];
    if (c == '&') {
        char ch;
        size_t n = decode_entity(s + i, len - i, &ch);
        if (n > 0) {
            if (ch == ' ')
                out_space(o);
            else
                out_bytes(o, &ch, 1);
            return i + n;
        }
    }
    if (c <= 0x20 || c == 0x7f) {
        out_space(o);
        return i + 1;
    }
    size_t n = reply_utf8_len((const unsigned char *)s + i, len - i);
    if (n == 0) {
        out_bytes(o, "\xef\xbf\xbd", 3);
        return i + 1;
    }
    out_bytes(o, s + i, n);
    return i + n;
}

/* Strips tags (and, when skip_head, the text of <head>, <title>, <script>,
 * <style>), decodes common entities, turns control characters into spaces,
 * replaces bytes that are not UTF-8 with U+FFFD and collapses whitespace,
 * writing at most o->cap bytes. */
static void clean_text(const char *s, size_t len, int skip_head, text_out *o)
{
    const char *skipping = NULL;   /* inside this element: no text */
    size_t i = 0;
    while (i < len && !o->full) {
        if (starts_tag(s, i, len)) {
            i = skip_markup(s, i, len, skip_head, &skipping);
            out_space(o);   /* a tag separates words: "</h1>Not" */
        } else if (skipping != NULL) {
            i++;
        } else {
            i = copy_char(s, i, len, o);
        }
    }
}

/* The cleaned text, trying once more with the <head> kept when the body has
 * nothing else (a page that is only a title). NULL when nothing is left. */
static char *clean_message(const char *s, size_t len, size_t max)
{
    /* A byte never grows to more than 3 (U+FFFD); don't allocate for more. */
    size_t cap = max;
    if (len < ((size_t)-1) / 3 && len * 3 < cap)
        cap = len * 3;
    text_out o = { .buf = malloc(cap + 1), .cap = cap };
    if (o.buf == NULL)
        return NULL;
    clean_text(s, len, 1, &o);
    if (o.len == 0) {
        o.space = o.full = 0;
        clean_text(s, len, 0, &o);
    }
    if (o.len == 0) {
        free(o.buf);
        return NULL;
    }
    o.buf[o.len] = '\0';
    return o.buf;
}

char *v2_error_message(const char *buf, size_t len, size_t max)
{
    if (buf == NULL || len == 0 || max == 0)
        return NULL;
    msg_parser p = { 0 };
    int json = run_yajl(&msg_callbacks, &p, buf, len) == 0 && p.top_is_object;
    char *res;
    if (json && p.message != NULL)
        res = clean_message(p.message, p.message_len, max);   /* webob puts <br /> in it */
    else if (json && p.title != NULL)
        res = clean_message(p.title, p.title_len, max);
    else if (json)
        res = NULL;
    else
        res = clean_message(buf, len, max);
    free(p.message);
    free(p.title);
    return res;
}
