/* v1_body: golden bodies, each fed at every chunk size from 1 byte to the
 * whole length; the outcome (status, error, members, can_share) must not
 * depend on how the bytes were split. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "v1_body.h"

#define ADD V1_BODY_ADD
#define REP V1_BODY_REPLACE

typedef struct {
    const char  *name;
    v1_body_kind kind;
    size_t       max;            /* max_members */
    const char  *path;           /* path member, or NULL */
    const char  *body;
    int          status;         /* expected v1_body_status */
    int          can_share;      /* expected v1_body_can_share_true (status 0) */
    const char  *error_part;     /* expected substring of the error (status != 0) */
    const char  *members[6];     /* expected members when status is 0 */
} golden;

static const golden cases[] = {
    /* ---- ADD: valid ---- */
    { "empty body", ADD, 10, "p", "", 0, 0, NULL, { "p" } },
    { "whitespace body", ADD, 10, "p", " \n\t\r  ", 0, 0, NULL, { "p" } },
    { "empty object", ADD, 10, "p", "{}", 0, 0, NULL, { "p" } },
    { "object with whitespace", ADD, 10, "p", " \r\n{ }\n ", 0, 0, NULL, { "p" } },
    { "member empty (Tempest)", ADD, 10, "p", "{\"member\":{}}", 0, 0, NULL, { "p" } },
    { "member can_share true", ADD, 10, "p", "{\"member\": {\"can_share\": true}}", 0, 1, NULL, { "p" } },
    { "member can_share false (glanceclient)", ADD, 10, "p",
      "{\"member\": {\"can_share\": false}}", 0, 0, NULL, { "p" } },
    { "member with unknown keys", ADD, 10, "p",
      "{\"member\":{\"x\":[{\"can_share\":\"no\"}],\"can_share\":false,\"y\":null}}", 0, 0, NULL, { "p" } },
    { "bulk members", ADD, 10, "p",
      "{\"members\": [{\"member_id\": \"t1\", \"can_share\": false}, {\"member_id\": \"t2\"}]}",
      0, 0, NULL, { "p", "t1", "t2" } },
    { "bulk with can_share true", ADD, 10, "p",
      "{\"members\":[{\"member_id\":\"t1\"},{\"can_share\":true,\"member_id\":\"t2\"}]}",
      0, 1, NULL, { "p", "t1", "t2" } },
    { "duplicates collapse, path member first", ADD, 10, "p",
      "{\"members\":[{\"member_id\":\"t1\"},{\"member_id\":\"p\"},{\"member_id\":\"t1\"},{\"member_id\":\"t2\"}]}",
      0, 0, NULL, { "p", "t1", "t2" } },
    { "no path member", ADD, 10, NULL, "{\"members\":[{\"member_id\":\"a\"},{\"member_id\":\"b\"}]}",
      0, 0, NULL, { "a", "b" } },
    { "no path member, empty body", ADD, 10, NULL, "", 0, 0, NULL, { NULL } },
    { "empty members list", ADD, 10, "p", "{\"members\":[]}", 0, 0, NULL, { "p" } },
    { "member and members together", ADD, 10, "p",
      "{\"member\":{\"can_share\":true},\"members\":[{\"member_id\":\"a\"}]}", 0, 1, NULL, { "p", "a" } },
    { "unknown keys with nested values", ADD, 10, "p",
      "{\"x\":{\"a\":[1,2,{\"b\":null,\"member_id\":\"zz\"}],\"members\":\"no\"},"
      "\"members\":[{\"member_id\":\"t1\",\"extra\":{\"member_id\":5,\"can_share\":\"no\"}}],"
      "\"y\":\"s\",\"z\":true,\"n\":null,\"e\":[]}",
      0, 0, NULL, { "p", "t1" } },
    { "huge numbers in ignored keys", ADD, 10, "p",
      "{\"big\":1e999999,\"neg\":-99999999999999999999999,\"f\":-0.5e-10,"
      "\"members\":[{\"member_id\":\"a\",\"n\":123456789012345678901234567890}]}",
      0, 0, NULL, { "p", "a" } },
    { "unicode escapes in ids", ADD, 10, "p",
      "{\"members\":[{\"member_id\":\"t\\u00e9\\u4e2d\\ud83d\\ude00\"},{\"member_id\":\"\\u0041\\u0062\"}]}",
      0, 0, NULL, { "p", "t\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80", "Ab" } },
    { "raw UTF-8 id", ADD, 10, "p", "{\"members\":[{\"member_id\":\"caf\xc3\xa9\"}]}",
      0, 0, NULL, { "p", "caf\xc3\xa9" } },
    { "member_id repeated in an entry: last wins", ADD, 10, "p",
      "{\"members\":[{\"member_id\":\"a\",\"member_id\":\"b\"}]}", 0, 0, NULL, { "p", "b" } },
    { "members key repeated: last wins", ADD, 10, "p",
      "{\"members\":[{\"member_id\":\"a\"}],\"members\":[{\"member_id\":\"b\"}]}", 0, 0, NULL, { "p", "b" } },
    { "memberships is just an unknown key in ADD", ADD, 10, "p",
      "{\"memberships\":[{\"member_id\":\"a\"}]}", 0, 0, NULL, { "p" } },
    { "duplicates do not count towards max", ADD, 3, "p",
      "{\"members\":[{\"member_id\":\"a\"},{\"member_id\":\"a\"},{\"member_id\":\"p\"},{\"member_id\":\"b\"}]}",
      0, 0, NULL, { "p", "a", "b" } },
    /* ---- ADD: invalid ---- */
    { "not JSON", ADD, 10, "p", "nope", 400, 0, "not valid JSON", { NULL } },
    { "unterminated object", ADD, 10, "p", "{", 400, 0, "not valid JSON", { NULL } },
    { "unterminated string", ADD, 10, "p", "{\"members", 400, 0, "not valid JSON", { NULL } },
    { "comment", ADD, 10, "p", "/* x */ {}", 400, 0, "not valid JSON", { NULL } },
    { "array top-level", ADD, 10, "p", "[]", 400, 0, "body must be a JSON object", { NULL } },
    { "string top-level", ADD, 10, "p", "\"p\"", 400, 0, "body must be a JSON object", { NULL } },
    { "number top-level", ADD, 10, "p", "42", 400, 0, "body must be a JSON object", { NULL } },
    { "null top-level", ADD, 10, "p", "null", 400, 0, "body must be a JSON object", { NULL } },
    { "true top-level", ADD, 10, "p", " true ", 400, 0, "body must be a JSON object", { NULL } },
    { "members not array (object)", ADD, 10, "p", "{\"members\":{}}", 400, 0, "members must be an array", { NULL } },
    { "members not array (string)", ADD, 10, "p", "{\"members\":\"a\"}", 400, 0, "members must be an array", { NULL } },
    { "members null", ADD, 10, "p", "{\"members\":null}", 400, 0, "members must be an array", { NULL } },
    { "entry a number", ADD, 10, "p", "{\"members\":[1]}", 400, 0, "members[0]: entry must be an object", { NULL } },
    { "second entry an array", ADD, 10, "p", "{\"members\":[{\"member_id\":\"a\"},[]]}",
      400, 0, "members[1]: entry must be an object", { NULL } },
    { "entry a string", ADD, 10, "p", "{\"members\":[\"a\"]}", 400, 0, "members[0]: entry must be an object", { NULL } },
    { "entry without member_id", ADD, 10, "p", "{\"members\":[{\"member_id\":\"a\"},{\"can_share\":true}]}",
      400, 0, "members[1]: member_id is required", { NULL } },
    { "member_id number", ADD, 10, "p", "{\"members\":[{\"member_id\":5}]}",
      400, 0, "members[0]: member_id must be a string", { NULL } },
    { "member_id null", ADD, 10, "p", "{\"members\":[{\"member_id\":null}]}",
      400, 0, "members[0]: member_id must be a string", { NULL } },
    { "member_id object", ADD, 10, "p", "{\"members\":[{\"member_id\":{}}]}",
      400, 0, "members[0]: member_id must be a string", { NULL } },
    { "member_id empty", ADD, 10, "p", "{\"members\":[{\"member_id\":\"\"}]}",
      400, 0, "members[0]: member_id is not a valid id", { NULL } },
    { "member_id with slash", ADD, 10, "p", "{\"members\":[{\"member_id\":\"a/b\"}]}",
      400, 0, "members[0]: member_id is not a valid id", { NULL } },
    { "member_id with escaped slash", ADD, 10, "p", "{\"members\":[{\"member_id\":\"a\\/b\"}]}",
      400, 0, "members[0]: member_id is not a valid id", { NULL } },
    { "member_id with newline", ADD, 10, "p", "{\"members\":[{\"member_id\":\"a\\nb\"}]}",
      400, 0, "members[0]: member_id is not a valid id", { NULL } },
    { "member_id with CR", ADD, 10, "p", "{\"members\":[{\"member_id\":\"a\\r\"}]}",
      400, 0, "members[0]: member_id is not a valid id", { NULL } },
    { "member_id with NUL", ADD, 10, "p", "{\"members\":[{\"member_id\":\"a\\u0000b\"}]}",
      400, 0, "members[0]: member_id is not a valid id", { NULL } },
    { "member_id with DEL", ADD, 10, "p", "{\"members\":[{\"member_id\":\"a\\u007f\"}]}",
      400, 0, "members[0]: member_id is not a valid id", { NULL } },
    { "raw tab inside a string", ADD, 10, "p", "{\"members\":[{\"member_id\":\"a\tb\"}]}",
      400, 0, "not valid JSON", { NULL } },
    { "invalid UTF-8", ADD, 10, "p", "{\"members\":[{\"member_id\":\"a\xff\"}]}",
      400, 0, "not valid JSON", { NULL } },
    { "entry can_share string", ADD, 10, "p", "{\"members\":[{\"member_id\":\"a\",\"can_share\":\"true\"}]}",
      400, 0, "members[0]: can_share must be a boolean", { NULL } },
    { "entry can_share null", ADD, 10, "p", "{\"members\":[{\"can_share\":null,\"member_id\":\"a\"}]}",
      400, 0, "members[0]: can_share must be a boolean", { NULL } },
    { "member can_share number", ADD, 10, "p", "{\"member\":{\"can_share\":1}}",
      400, 0, "member.can_share must be a boolean", { NULL } },
    { "member can_share string", ADD, 10, "p", "{\"member\":{\"can_share\":\"yes\"}}",
      400, 0, "member.can_share must be a boolean", { NULL } },
    { "member null", ADD, 10, "p", "{\"member\":null}", 400, 0, "member must be an object", { NULL } },
    { "member array", ADD, 10, "p", "{\"member\":[]}", 400, 0, "member must be an object", { NULL } },
    { "member string", ADD, 10, "p", "{\"member\":\"x\"}", 400, 0, "member must be an object", { NULL } },
    { "trailing garbage", ADD, 10, "p", "{} x", 400, 0, "not valid JSON", { NULL } },
    { "trailing brace", ADD, 10, "p", "{}}", 400, 0, "not valid JSON", { NULL } },
    { "two top-level values", ADD, 10, "p", "{} {}", 400, 0, "not valid JSON", { NULL } },
    { "two top-level values, no space", ADD, 10, "p", "{}{\"members\":[]}", 400, 0, "not valid JSON", { NULL } },
    { "over max_members", ADD, 3, "p",
      "{\"members\":[{\"member_id\":\"a\"},{\"member_id\":\"b\"},{\"member_id\":\"c\"}]}",
      413, 0, "too many members: more than 3", { NULL } },
    { "over max_members beats a later error", ADD, 1, "p",
      "{\"members\":[{\"member_id\":\"a\"},{\"member_id\":5}]}",
      413, 0, "too many members: more than 1", { NULL } },
    { "earlier error beats over max_members", ADD, 2, "p",
      "{\"members\":[{\"member_id\":5},{\"member_id\":\"a\"},{\"member_id\":\"b\"}]}",
      400, 0, "members[0]: member_id must be a string", { NULL } },
    /* ---- REPLACE ---- */
    { "replace with empty list", REP, 10, NULL, "{\"memberships\":[]}", 0, 0, NULL, { NULL } },
    { "replace list", REP, 10, NULL,
      "{\"memberships\":[{\"member_id\":\"a\"},{\"member_id\":\"b\",\"can_share\":true},{\"member_id\":\"a\"}]}",
      0, 1, NULL, { "a", "b" } },
    { "replace ignores a path member", REP, 10, "p",
      "{\"memberships\":[{\"member_id\":\"a\"}]}", 0, 0, NULL, { "a" } },
    { "replace ignores member and members", REP, 10, NULL,
      "{\"member\":5,\"members\":\"x\",\"memberships\":[{\"member_id\":\"a\",\"can_share\":false}]}",
      0, 0, NULL, { "a" } },
    { "replace memberships repeated: last wins", REP, 10, NULL,
      "{\"memberships\":[{\"member_id\":\"a\"}],\"memberships\":[]}", 0, 0, NULL, { NULL } },
    { "replace missing memberships", REP, 10, NULL, "{}", 400, 0, "memberships is required", { NULL } },
    { "replace with only members", REP, 10, NULL, "{\"members\":[{\"member_id\":\"a\"}]}",
      400, 0, "memberships is required", { NULL } },
    { "replace empty body", REP, 10, NULL, "", 400, 0, "memberships", { NULL } },
    { "replace whitespace body", REP, 10, NULL, "  \n", 400, 0, "memberships", { NULL } },
    { "replace memberships null", REP, 10, NULL, "{\"memberships\":null}",
      400, 0, "memberships must be an array", { NULL } },
    { "replace entry without member_id", REP, 10, NULL, "{\"memberships\":[{}]}",
      400, 0, "memberships[0]: member_id is required", { NULL } },
    { "replace member_id not string", REP, 10, NULL, "{\"memberships\":[{\"member_id\":true}]}",
      400, 0, "memberships[0]: member_id must be a string", { NULL } },
    { "replace over max", REP, 2, NULL,
      "{\"memberships\":[{\"member_id\":\"a\"},{\"member_id\":\"b\"},{\"member_id\":\"c\"}]}",
      413, 0, "too many members: more than 2", { NULL } },
    { "replace at max", REP, 2, NULL,
      "{\"memberships\":[{\"member_id\":\"a\"},{\"member_id\":\"b\"},{\"member_id\":\"a\"}]}",
      0, 0, NULL, { "a", "b" } },
    { "replace array top-level", REP, 10, NULL, "[{\"member_id\":\"a\"}]",
      400, 0, "body must be a JSON object", { NULL } },
    /* ---- \u escapes that are not UTF-16 (yajl would make '?' of a lone high one) ---- */
    { "lone high surrogate in an id", ADD, 10, "p", "{\"members\":[{\"member_id\":\"a\\ud800b\"}]}",
      400, 0, "high surrogate without its low one", { NULL } },
    { "lone high surrogate at the end of an id", ADD, 10, "p", "{\"members\":[{\"member_id\":\"a\\uDBFF\"}]}",
      400, 0, "high surrogate without its low one", { NULL } },
    { "high surrogate then another escape", ADD, 10, "p",
      "{\"members\":[{\"member_id\":\"a\\ud800\\u0041\"}]}", 400, 0, "high surrogate", { NULL } },
    { "high surrogate then another escape kind", ADD, 10, "p",
      "{\"members\":[{\"member_id\":\"a\\ud800\\n\"}]}", 400, 0, "high surrogate", { NULL } },
    { "two high surrogates", REP, 10, NULL,
      "{\"memberships\":[{\"member_id\":\"\\ud800\\ud800\"}]}", 400, 0, "high surrogate", { NULL } },
    { "lone low surrogate", REP, 10, NULL, "{\"memberships\":[{\"member_id\":\"x\\udc00\"}]}",
      400, 0, "low surrogate without a high one", { NULL } },
    { "lone surrogate in an ignored key", ADD, 10, "p", "{\"x\\ud800\":1}",
      400, 0, "high surrogate", { NULL } },
    { "escaped backslash then text that looks like an escape", ADD, 10, "p",
      "{\"members\":[{\"member_id\":\"a\\\\ud800\"}]}", 0, 0, NULL, { "p", "a\\ud800" } },
    { "surrogate pair in an ignored value", ADD, 10, "p", "{\"x\":\"\\uD83D\\uDE00\"}",
      0, 0, NULL, { "p" } },
    /* An error before a lone surrogate is the one reported, whether the body
     * comes whole or in pieces (found by tests/fuzz/fuzz_v1_body). */
    { "too many members before a lone surrogate", REP, 1, NULL,
      "{\"memberships\":[{\"member_id\":\"a\"},{\"member_id\":\"b\"},{\"member_id\":\"\\ud800x\"}]}",
      413, 0, "too many members", { NULL } },
    { "bad JSON before a lone surrogate", ADD, 10, "p", "{\"x\":tru,\"y\":\"\\ud800\"}",
      400, 0, "not valid JSON", { NULL } },
    { "malformed escape before a lone low surrogate", ADD, 10, "p",
      "{\"members\":[{\"member_id\":\"_\\ud8\x10" "4d\\ude01\"}]}", 400, 0, "not valid JSON", { NULL } },
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* What one parse ended with. */
typedef struct {
    int    status;
    int    finish_rc;
    int    can_share;
    char  *error;       /* copy, or NULL */
    char **members;     /* copies */
    size_t n;
} outcome;

static void outcome_free(outcome *o)
{
    free(o->error);
    for (size_t i = 0; i < o->n; i++)
        free(o->members[i]);
    free(o->members);
    memset(o, 0, sizeof(*o));
}

/* Parses body[0..len) fed in chunks of `chunk` bytes. */
static void parse_chunked(v1_body_kind kind, size_t max, const char *path,
                          const char *body, size_t len, size_t chunk, outcome *out)
{
    v1_body *b = v1_body_new(kind, max, path);
    ck_assert_ptr_nonnull(b);
    int failed = 0;
    for (size_t off = 0; off < len && !failed; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        int rc = v1_body_feed(b, (const unsigned char *)body + off, n);
        ck_assert(rc == 0 || rc == -1);
        if (rc != 0) {
            failed = 1;
            /* once bad, further feeds are refused */
            ck_assert_int_eq(v1_body_feed(b, (const unsigned char *)"{}", 2), -1);
            ck_assert_int_ne(v1_body_status(b), 0);
        }
    }
    memset(out, 0, sizeof(*out));
    out->finish_rc = v1_body_finish(b);
    out->status = v1_body_status(b);
    out->can_share = v1_body_can_share_true(b);
    const char *err = v1_body_error(b);
    out->error = err != NULL ? strdup(err) : NULL;
    const mb_strset *m = v1_body_members(b);
    out->n = strset_count(m);
    out->members = calloc(out->n + 1, sizeof(char *));
    ck_assert_ptr_nonnull(out->members);
    for (size_t i = 0; i < out->n; i++)
        out->members[i] = strdup(strset_get(m, i));
    v1_body_free(b);
}

static size_t expected_count(const golden *g)
{
    size_t n = 0;
    while (n < sizeof(g->members) / sizeof(g->members[0]) && g->members[n] != NULL)
        n++;
    return n;
}

/* The outcome matches the golden expectation. */
static void check_golden(const golden *g, const outcome *o, size_t chunk)
{
    ck_assert_msg(o->status == g->status, "%s (chunk %zu): status %d, want %d (%s)",
                  g->name, chunk, o->status, g->status, o->error ? o->error : "no error");
    ck_assert_int_eq(o->finish_rc, g->status == 0 ? 0 : -1);
    if (g->status == 0) {
        ck_assert_msg(o->error == NULL, "%s: unexpected error %s", g->name, o->error);
        ck_assert_int_eq(o->can_share, g->can_share);
        size_t want = expected_count(g);
        ck_assert_msg(o->n == want, "%s (chunk %zu): %zu members, want %zu",
                      g->name, chunk, o->n, want);
        for (size_t i = 0; i < want; i++)
            ck_assert_str_eq(o->members[i], g->members[i]);
    } else {
        ck_assert_ptr_nonnull(o->error);
        ck_assert_msg(strstr(o->error, g->error_part) != NULL,
                      "%s (chunk %zu): error \"%s\" lacks \"%s\"",
                      g->name, chunk, o->error, g->error_part);
    }
}

/* Every chunking gives exactly the outcome of the whole-body parse. */
static void check_same(const golden *g, const outcome *whole, const outcome *o, size_t chunk)
{
    ck_assert_msg(o->status == whole->status, "%s: chunk %zu differs", g->name, chunk);
    ck_assert_int_eq(o->finish_rc, whole->finish_rc);
    ck_assert_int_eq(o->can_share, whole->can_share);
    ck_assert_int_eq(o->error != NULL, whole->error != NULL);
    if (o->error != NULL)
        ck_assert_str_eq(o->error, whole->error);
    if (o->status == 0) {
        ck_assert_uint_eq(o->n, whole->n);
        for (size_t i = 0; i < o->n; i++)
            ck_assert_str_eq(o->members[i], whole->members[i]);
    }
}

static void run_all_chunk_sizes(const golden *g, const char *body, size_t len)
{
    outcome whole;
    parse_chunked(g->kind, g->max, g->path, body, len, len ? len : 1, &whole);
    check_golden(g, &whole, len);
    for (size_t chunk = 1; chunk < len; chunk++) {
        outcome o;
        parse_chunked(g->kind, g->max, g->path, body, len, chunk, &o);
        check_golden(g, &o, chunk);
        check_same(g, &whole, &o, chunk);
        outcome_free(&o);
    }
    outcome_free(&whole);
}

START_TEST(test_golden)
{
    const golden *g = &cases[_i];
    run_all_chunk_sizes(g, g->body, strlen(g->body));
}
END_TEST

/* Escapes that decode to several bytes, and an escaped id equal to a plain
 * one (they are the same member). */
START_TEST(test_unicode_escapes_valid)
{
    static const golden g = { "unicode escapes only", ADD, 10, "p",
        NULL, 0, 0, NULL, { "p", "t\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80", "Ab\xc2\xa0" } };
    const char *body =
        "{\"members\":[{\"member_id\":\"t\\u00e9\\u4e2d\\ud83d\\ude00\"},"
        "{\"member_id\":\"\\u0041\\u0062\\u00A0\"},{\"member_id\":\"Ab\xc2\xa0\"},"
        "{\"member_id\":\"\\u0070\"}]}";
    run_all_chunk_sizes(&g, body, strlen(body));
}
END_TEST

/* {"members":[{"member_id":"<id of n 'a's>"}]} */
static char *body_with_id(size_t n)
{
    const char *pre = "{\"members\":[{\"member_id\":\"", *post = "\"}]}";
    size_t len = strlen(pre) + n + strlen(post);
    char *s = malloc(len + 1);
    ck_assert_ptr_nonnull(s);
    strcpy(s, pre);
    memset(s + strlen(pre), 'a', n);
    strcpy(s + strlen(pre) + n, post);
    return s;
}

START_TEST(test_id_255_bytes_valid)
{
    char id[256];
    memset(id, 'a', 255);
    id[255] = '\0';
    golden g = { "id of 255 bytes", ADD, 10, "p", NULL, 0, 0, NULL, { "p", id } };
    char *body = body_with_id(255);
    run_all_chunk_sizes(&g, body, strlen(body));
    free(body);
}
END_TEST

START_TEST(test_id_256_bytes_invalid)
{
    golden g = { "id of 256 bytes", ADD, 10, "p", NULL, 400, 0,
                 "members[0]: member_id is not a valid id", { NULL } };
    char *body = body_with_id(256);
    run_all_chunk_sizes(&g, body, strlen(body));
    free(body);
}
END_TEST

/* {"members":[{"member_id":"a","x":<arrays nested `levels` deep>}]}: the
 * object and the list and the entry are 3 levels already. */
static char *body_nested_in_entry(size_t levels)
{
    const char *pre = "{\"members\":[{\"member_id\":\"a\",\"x\":", *post = "}]}";
    size_t len = strlen(pre) + 2 * levels + strlen(post);
    char *s = malloc(len + 1), *p = s;
    ck_assert_ptr_nonnull(s);
    p = stpcpy(p, pre);
    memset(p, '[', levels);
    p += levels;
    memset(p, ']', levels);
    p += levels;
    strcpy(p, post);
    return s;
}

/* {"x":<arrays nested `levels` deep>}: the object is level 1. */
static char *body_nested_in_ignored(size_t levels)
{
    size_t len = 5 + 2 * levels + 1;
    char *s = malloc(len + 1), *p = s;
    ck_assert_ptr_nonnull(s);
    p = stpcpy(p, "{\"x\":");
    memset(p, '[', levels);
    p += levels;
    memset(p, ']', levels);
    p += levels;
    strcpy(p, "}");
    return s;
}

START_TEST(test_depth_32_accepted)
{
    golden g = { "depth 32 in an ignored key", ADD, 10, "p", NULL, 0, 0, NULL, { "p" } };
    char *body = body_nested_in_ignored(31);
    run_all_chunk_sizes(&g, body, strlen(body));
    free(body);

    golden g2 = { "depth 32 inside an entry", ADD, 10, "p", NULL, 0, 0, NULL, { "p", "a" } };
    body = body_nested_in_entry(29);
    run_all_chunk_sizes(&g2, body, strlen(body));
    free(body);
}
END_TEST

START_TEST(test_depth_33_rejected)
{
    golden g = { "depth 33 in an ignored key", ADD, 10, "p", NULL, 400, 0,
                 "JSON nested deeper than 32 levels", { NULL } };
    char *body = body_nested_in_ignored(32);
    run_all_chunk_sizes(&g, body, strlen(body));
    free(body);

    body = body_nested_in_entry(30);
    run_all_chunk_sizes(&g, body, strlen(body));
    free(body);
}
END_TEST

/* Very deep nesting is refused at level 33, without recursion in yajl or
 * here, and the rest of the bytes are refused cheaply. */
START_TEST(test_depth_huge)
{
    size_t n = 1000000;
    char *s = malloc(n);
    ck_assert_ptr_nonnull(s);
    memset(s, '[', n);
    s[0] = '{';
    v1_body *b = v1_body_new(ADD, 10, "p");
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(v1_body_feed(b, (const unsigned char *)"{\"x\":", 5), 0);
    ck_assert_int_eq(v1_body_feed(b, (const unsigned char *)s + 1, n - 1), -1);
    ck_assert_int_eq(v1_body_status(b), 400);
    ck_assert_str_eq(v1_body_error(b), "JSON nested deeper than 32 levels");
    ck_assert_int_eq(v1_body_finish(b), -1);
    v1_body_free(b);
    free(s);
}
END_TEST

/* 5000 listed members: every one kept, in order, at several chunk sizes. */
START_TEST(test_many_members)
{
    size_t n = 5000, cap = n * 40 + 64, len = 0;
    char *body = malloc(cap);
    ck_assert_ptr_nonnull(body);
    len += (size_t)snprintf(body + len, cap - len, "{\"members\":[");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(body + len, cap - len, "%s{\"member_id\":\"tenant-%zu\"}",
                                i ? "," : "", i);
    len += (size_t)snprintf(body + len, cap - len, "]}");

    static const size_t chunks[] = { 1, 3, 7, 64, 4096, 0 };
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        outcome o;
        parse_chunked(ADD, n + 1, "p", body, len, chunks[c] ? chunks[c] : len, &o);
        ck_assert_int_eq(o.status, 0);
        ck_assert_uint_eq(o.n, n + 1);
        ck_assert_str_eq(o.members[0], "p");
        char want[32];
        for (size_t i = 0; i < n; i++) {
            snprintf(want, sizeof(want), "tenant-%zu", i);
            ck_assert_str_eq(o.members[i + 1], want);
        }
        outcome_free(&o);

        /* one fewer allowed: 413, and nothing beyond the limit is kept */
        parse_chunked(ADD, n, "p", body, len, chunks[c] ? chunks[c] : len, &o);
        ck_assert_int_eq(o.status, 413);
        ck_assert_uint_eq(o.n, n);
        ck_assert_str_eq(o.error, "too many members: more than 5000");
        outcome_free(&o);
    }
    free(body);
}
END_TEST

START_TEST(test_path_member_over_zero_max)
{
    v1_body *b = v1_body_new(ADD, 0, "p");
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(v1_body_status(b), 413);
    ck_assert_str_eq(v1_body_error(b), "too many members: more than 0");
    ck_assert_int_eq(v1_body_feed(b, (const unsigned char *)"{}", 2), -1);
    ck_assert_int_eq(v1_body_finish(b), -1);
    v1_body_free(b);
}
END_TEST

START_TEST(test_specific_messages)
{
    outcome o;
    const char *body = "not json";
    parse_chunked(ADD, 10, "p", body, strlen(body), strlen(body), &o);
    ck_assert_int_eq(o.status, 400);
    ck_assert_str_eq(o.error, "body is not valid JSON: invalid string in json text.");
    outcome_free(&o);

    body = "{} {}";
    parse_chunked(ADD, 10, "p", body, strlen(body), strlen(body), &o);
    ck_assert_str_eq(o.error, "body is not valid JSON: trailing garbage");
    outcome_free(&o);

    body = "{\"memberships\":[{\"member_id\":\"a\"},{\"member_id\":\"\"}]}";
    parse_chunked(REP, 10, NULL, body, strlen(body), 5, &o);
    ck_assert_str_eq(o.error, "memberships[1]: member_id is not a valid id "
                              "(1 to 255 bytes, no control characters, no '/', not '.' or '..')");
    outcome_free(&o);

    body = "{\"members\":[{\"member_id\":\"..\"}]}";
    parse_chunked(ADD, 10, "t1", body, strlen(body), 3, &o);
    ck_assert_int_eq(o.status, 400);
    outcome_free(&o);
}
END_TEST

/* A body that stops inside an entry frees the pending id (checked by ASan's
 * leak detector in the sanitizer build). */
START_TEST(test_abandoned_mid_entry)
{
    v1_body *b = v1_body_new(ADD, 10, "p");
    ck_assert_ptr_nonnull(b);
    const char *part = "{\"members\":[{\"member_id\":\"a\",\"member_id\":\"b\"";
    ck_assert_int_eq(v1_body_feed(b, (const unsigned char *)part, strlen(part)), 0);
    ck_assert_int_eq(v1_body_status(b), 0);
    ck_assert_ptr_null(v1_body_error(b));
    /* not committed before the entry closes */
    ck_assert_uint_eq(strset_count(v1_body_members(b)), 1);
    v1_body_free(b);

    b = v1_body_new(ADD, 10, "p");
    ck_assert_int_eq(v1_body_feed(b, (const unsigned char *)part, strlen(part)), 0);
    ck_assert_int_eq(v1_body_finish(b), -1);
    ck_assert_int_eq(v1_body_status(b), 400);
    ck_assert_uint_eq(strset_count(v1_body_members(b)), 1);
    v1_body_free(b);
}
END_TEST

START_TEST(test_empty_feeds)
{
    v1_body *b = v1_body_new(ADD, 10, "p");
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(v1_body_feed(b, (const unsigned char *)"", 0), 0);
    ck_assert_int_eq(v1_body_feed(b, (const unsigned char *)"{\"member\":", 10), 0);
    ck_assert_int_eq(v1_body_feed(b, (const unsigned char *)"", 0), 0);
    ck_assert_int_eq(v1_body_feed(b, (const unsigned char *)"{\"can_share\":true}}", 19), 0);
    ck_assert_int_eq(v1_body_finish(b), 0);
    ck_assert_int_eq(v1_body_can_share_true(b), 1);
    ck_assert_uint_eq(strset_count(v1_body_members(b)), 1);
    ck_assert_str_eq(strset_get(v1_body_members(b), 0), "p");
    v1_body_free(b);
    v1_body_free(NULL);
}
END_TEST

static Suite *v1_body_suite(void)
{
    Suite *s = suite_create("v1_body");
    TCase *tc = tcase_create("golden");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_golden, 0, (int)NCASES);
    tcase_add_test(tc, test_unicode_escapes_valid);
    tcase_add_test(tc, test_id_255_bytes_valid);
    tcase_add_test(tc, test_id_256_bytes_invalid);
    tcase_add_test(tc, test_depth_32_accepted);
    tcase_add_test(tc, test_depth_33_rejected);
    suite_add_tcase(s, tc);

    tc = tcase_create("other");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_depth_huge);
    tcase_add_test(tc, test_many_members);
    tcase_add_test(tc, test_path_member_over_zero_max);
    tcase_add_test(tc, test_specific_messages);
    tcase_add_test(tc, test_abandoned_mid_entry);
    tcase_add_test(tc, test_empty_feeds);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(v1_body_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
