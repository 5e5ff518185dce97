/* v1_body: incremental parser of the v1 membership bodies (SPEC section 1).
 *
 * Built on yajl's callback parser: bytes are parsed as they arrive and only
 * the set of distinct member ids is kept. Depth is counted here (yajl itself
 * has no bound), and numbers arrive through the yajl_number callback as text,
 * so yajl never converts them (its integer conversion overflows). */
#include "v1_body.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "json_surrogates.h"
#include "route.h"

/* What an open container is. */
typedef enum {
    FR_ROOT,     /* the top-level object */
    FR_MEMBER,   /* ADD: the "member" object */
    FR_LIST,     /* ADD: "members", REPLACE: "memberships" */
    FR_ENTRY,    /* an object inside the list */
    FR_SKIP      /* a container inside a value that is ignored */
} frame_kind;

/* What the next value means. */
typedef enum {
    SL_TOP,
    SL_SKIP,
    SL_MEMBER,
    SL_LIST,
    SL_ENTRY,
    SL_MEMBER_CAN_SHARE,
    SL_ENTRY_ID,
    SL_ENTRY_CAN_SHARE
} slot_kind;

typedef enum { V_NULL, V_BOOL, V_NUMBER, V_STRING, V_OBJECT, V_ARRAY } value_kind;

struct v1_body {
    v1_body_kind kind;
    size_t       max_members;
    char        *path_member;     /* ADD only, NULL when none */
    yajl_handle  yajl;
    json_surrogates escapes;      /* \u escapes yajl would turn into '?' */
    mb_strset   *members;
    frame_kind   frames[V1_BODY_MAX_DEPTH];   /* frames[0..depth) are open */
    size_t       depth;
    slot_kind    key_slot;        /* meaning of the value after the last key */
    int          seen_text;       /* a byte other than JSON whitespace arrived */
    int          seen_list;       /* the list key was seen (REPLACE needs it) */
    int          can_share_true;
    size_t       entry_index;     /* index of the current entry in its list */
    char        *entry_id;        /* the current entry's member_id until it closes */
    size_t       entry_id_len;
    int          status;          /* 0, or the HTTP status of the error */
    char         error[256];
};

static int fail(v1_body *b, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first error; returns 0 so callbacks can `return fail(...)` to
 * stop yajl. */
static int fail(v1_body *b, int status, const char *fmt, ...)
{
    if (b->status != 0)
        return 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->error, sizeof(b->error), fmt, ap);
    va_end(ap);
    b->status = status;
    return 0;
}

static const char *list_name(const v1_body *b)
{
    return b->kind == V1_BODY_REPLACE ? "memberships" : "members";
}

static int key_is(const unsigned char *key, size_t len, const char *name)
{
    return len == strlen(name) && memcmp(key, name, len) == 0;
}

/* Adds a member id unless it is already there, enforcing max_members. */
static int add_member(v1_body *b, const char *id, size_t len)
{
    if (strset_contains(b->members, id, len))
        return 1;
    if (strset_count(b->members) >= b->max_members)
        return fail(b, 413, "too many members: more than %zu", b->max_members);
    if (strset_add(b->members, id, len) < 0)
        return fail(b, 500, "out of memory");
    return 1;
}

/* A fresh set holding only the path member (ADD) or nothing (REPLACE). */
static int reset_members(v1_body *b)
{
    mb_strset *s = strset_new();
    if (s == NULL)
        return fail(b, 500, "out of memory");
    strset_free(b->members);
    b->members = s;
    if (b->path_member != NULL)
        return add_member(b, b->path_member, strlen(b->path_member));
    return 1;
}

static slot_kind current_slot(const v1_body *b)
{
    if (b->depth == 0)
        return SL_TOP;
    switch (b->frames[b->depth - 1]) {
    case FR_SKIP:
        return SL_SKIP;
    case FR_LIST:
        return SL_ENTRY;
    default:
        return b->key_slot;   /* inside an object: set by the last key */
    }
}

static int push(v1_body *b, frame_kind f)
{
    if (b->depth >= V1_BODY_MAX_DEPTH)
        return fail(b, 400, "JSON nested deeper than %d levels", V1_BODY_MAX_DEPTH);
    b->frames[b->depth++] = f;
    return 1;
}

static void drop_entry_id(v1_body *b)
{
    free(b->entry_id);
    b->entry_id = NULL;
    b->entry_id_len = 0;
}

/* The list key appeared. A repeated key replaces the earlier list (last
 * wins, as a JSON object read into a dictionary would behave). */
static int start_list(v1_body *b)
{
    if (b->seen_list && !reset_members(b))
        return 0;
    b->seen_list = 1;
    b->entry_index = 0;
    return push(b, FR_LIST);
}

static int set_entry_id(v1_body *b, const unsigned char *str, size_t len)
{
    if (!id_valid((const char *)str, len))
        return fail(b, 400, "%s[%zu]: member_id is not a valid id "
                    "(1 to %d bytes, no control characters, no '/', not '.' or '..')",
                    list_name(b), b->entry_index, MB_ID_MAX);
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return fail(b, 500, "out of memory");
    memcpy(copy, str, len);
    copy[len] = '\0';
    drop_entry_id(b);    /* a repeated "member_id" key: last wins */
    b->entry_id = copy;
    b->entry_id_len = len;
    return 1;
}

/* An entry object closed: only now is its member id committed. */
static int end_entry(v1_body *b)
{
    if (b->entry_id == NULL)
        return fail(b, 400, "%s[%zu]: member_id is required",
                    list_name(b), b->entry_index);
    int ok = add_member(b, b->entry_id, b->entry_id_len);
    drop_entry_id(b);
    b->entry_index++;
    return ok;
}

static int is_container(value_kind k)
{
    return k == V_OBJECT || k == V_ARRAY;
}

/* Every value (scalar or the start of a container) goes through here: the
 * slot says what is expected, the kind says what came. */
static int on_value(v1_body *b, value_kind k, int bval,
                    const unsigned char *str, size_t len)
{
    const char *ln = list_name(b);
    switch (current_slot(b)) {
    case SL_TOP:
        if (k != V_OBJECT)
            return fail(b, 400, "body must be a JSON object");
        return push(b, FR_ROOT);
    case SL_SKIP:
        return is_container(k) ? push(b, FR_SKIP) : 1;
    case SL_MEMBER:
        if (k != V_OBJECT)
            return fail(b, 400, "member must be an object");
        return push(b, FR_MEMBER);
    case SL_LIST:
        if (k != V_ARRAY)
            return fail(b, 400, "%s must be an array", ln);
        return start_list(b);
    case SL_ENTRY:
        if (k != V_OBJECT)
            return fail(b, 400, "%s[%zu]: entry must be an object", ln, b->entry_index);
        drop_entry_id(b);
        return push(b, FR_ENTRY);
    case SL_MEMBER_CAN_SHARE:
        if (k != V_BOOL)
            return fail(b, 400, "member.can_share must be a boolean");
        b->can_share_true |= bval;
        return 1;
    case SL_ENTRY_ID:
        if (k != V_STRING)
            return fail(b, 400, "%s[%zu]: member_id must be a string", ln, b->entry_index);
        return set_entry_id(b, str, len);
    case SL_ENTRY_CAN_SHARE:
        if (k != V_BOOL)
            return fail(b, 400, "%s[%zu]: can_share must be a boolean", ln, b->entry_index);
        b->can_share_true |= bval;
        return 1;
    }
    return fail(b, 500, "internal error: unknown parser state");
}

static int cb_null(void *ctx)
{
    return on_value(ctx, V_NULL, 0, NULL, 0);
}

static int cb_boolean(void *ctx, int val)
{
    return on_value(ctx, V_BOOL, val != 0, NULL, 0);
}

static int cb_number(void *ctx, const char *num, size_t len)
{
    (void)num;
    (void)len;
    return on_value(ctx, V_NUMBER, 0, NULL, 0);
}

static int cb_string(void *ctx, const unsigned char *str, size_t len)
{
    return on_value(ctx, V_STRING, 0, str, len);
}

static int cb_start_map(void *ctx)
{
    return on_value(ctx, V_OBJECT, 0, NULL, 0);
}

static int cb_start_array(void *ctx)
{
    return on_value(ctx, V_ARRAY, 0, NULL, 0);
}

static int cb_map_key(void *ctx, const unsigned char *key, size_t len)
{
    v1_body *b = ctx;
    switch (b->frames[b->depth - 1]) {
    case FR_ROOT:
        if (b->kind == V1_BODY_ADD && key_is(key, len, "member"))
            b->key_slot = SL_MEMBER;
        else if (key_is(key, len, list_name(b)))
            b->key_slot = SL_LIST;
        else
            b->key_slot = SL_SKIP;
        break;
    case FR_MEMBER:
        b->key_slot = key_is(key, len, "can_share") ? SL_MEMBER_CAN_SHARE : SL_SKIP;
        break;
    case FR_ENTRY:
        if (key_is(key, len, "member_id"))
            b->key_slot = SL_ENTRY_ID;
        else if (key_is(key, len, "can_share"))
            b->key_slot = SL_ENTRY_CAN_SHARE;
        else
            b->key_slot = SL_SKIP;
        break;
    default:
        b->key_slot = SL_SKIP;
        break;
    }
    return 1;
}

static int cb_end_map(void *ctx)
{
    v1_body *b = ctx;
    frame_kind f = b->frames[--b->depth];
    return f == FR_ENTRY ? end_entry(b) : 1;
}

static int cb_end_array(void *ctx)
{
    v1_body *b = ctx;
    b->depth--;
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_boolean,
    .yajl_integer = NULL,    /* with yajl_number set, yajl never converts */
    .yajl_double = NULL,
    .yajl_number = cb_number,
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = cb_end_map,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = cb_end_array,
};

v1_body *v1_body_new(v1_body_kind kind, size_t max_members, const char *path_member)
{
    v1_body *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->kind = kind;
    b->max_members = max_members;
    if (kind == V1_BODY_ADD && path_member != NULL) {
        b->path_member = strdup(path_member);
        if (b->path_member == NULL)
            goto fail;
    }
    b->yajl = yajl_alloc(&callbacks, NULL, b);
    if (b->yajl == NULL)
        goto fail;
    /* reset_members only fails on OOM or a path member beyond max_members
     * (max 0): the latter is a 413 the caller reads from v1_body_status. */
    if (!reset_members(b) && b->members == NULL)
        goto fail;
    return b;
fail:
    v1_body_free(b);
    return NULL;
}

void v1_body_free(v1_body *b)
{
    if (b == NULL)
        return;
    if (b->yajl != NULL)
        yajl_free(b->yajl);
    strset_free(b->members);
    free(b->entry_id);
    free(b->path_member);
    free(b);
}

static int json_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Turns a yajl result into ours. yajl_status_client_canceled means one of
 * our callbacks already recorded why. */
static int check_yajl(v1_body *b, yajl_status st)
{
    if (st == yajl_status_ok)
        return 0;
    if (st == yajl_status_error) {
        /* verbose 0: the message names the problem, never quotes the body */
        unsigned char *msg = yajl_get_error(b->yajl, 0, NULL, 0);
        const char *text = msg != NULL ? (const char *)msg : "parse error";
        const char *colon = strstr(text, "error: ");
        if (colon != NULL)
            text = colon + strlen("error: ");
        size_t n = strcspn(text, "\n");
        fail(b, 400, "body is not valid JSON: %.*s", (int)n, text);
        if (msg != NULL)
            yajl_free_error(b->yajl, msg);
    } else if (b->status == 0) {
        fail(b, 500, "internal error: JSON parse cancelled");
    }
    return -1;
}

int v1_body_feed(v1_body *b, const unsigned char *buf, size_t len)
{
    if (b->status != 0)
        return -1;
    if (len == 0)
        return 0;
    for (size_t i = 0; !b->seen_text && i < len; i++)
        b->seen_text = !json_ws(buf[i]);
    size_t at;
    const char *why = json_surrogates_scan(&b->escapes, buf, len, &at);
    if (why) {
        /* yajl reads the bytes before the refused escape first: an error it
         * finds there (bad JSON, too many members) comes first in the body,
         * and the reply must not depend on how the body was cut into
         * pieces (whole, the scan would see the escape before yajl saw the
         * earlier error; cut, yajl would see the error first). */
        if (at > 0 && check_yajl(b, yajl_parse(b->yajl, buf, at)) != 0)
            return -1;
        fail(b, 400, "%s", why);
        return -1;
    }
    return check_yajl(b, yajl_parse(b->yajl, buf, len));
}

int v1_body_finish(v1_body *b)
{
    if (b->status != 0)
        return -1;
    if (!b->seen_text) {
        /* no body: yajl would call it a premature EOF */
        if (b->kind == V1_BODY_ADD)
            return 0;
        fail(b, 400, "body must be a JSON object with \"memberships\"");
        return -1;
    }
    if (check_yajl(b, yajl_complete_parse(b->yajl)) != 0)
        return -1;
    if (b->kind == V1_BODY_REPLACE && !b->seen_list) {
        fail(b, 400, "memberships is required");
        return -1;
    }
    return 0;
}

int v1_body_status(const v1_body *b)
{
    return b->status;
}

const char *v1_body_error(const v1_body *b)
{
    return b->status != 0 ? b->error : NULL;
}

const mb_strset *v1_body_members(const v1_body *b)
{
    return b->members;
}

int v1_body_can_share_true(const v1_body *b)
{
    return b->can_share_true;
}
