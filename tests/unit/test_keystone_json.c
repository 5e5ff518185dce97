/* keystone_json: the token request body, the token reply, times, the token
 * URL and the X-Subject-Token check. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "keystone_json.h"

/* ---- the request body ------------------------------------------------------ */

static yajl_val parse_tree(const char *json)
{
    char err[256];
    yajl_val v = yajl_tree_parse(json, err, sizeof(err));
    ck_assert_msg(v != NULL, "not JSON: %s: %s", err, json);
    return v;
}

/* The string at the given path ({..., NULL}), which must exist. */
static const char *str_at(yajl_val root, const char *const *path)
{
    yajl_val v = yajl_tree_get(root, (const char **)path, yajl_t_string);
    ck_assert_ptr_nonnull(v);
    return YAJL_GET_STRING(v);
}

static size_t keys_at(yajl_val root, const char *const *path)
{
    yajl_val v = path[0] != NULL ? yajl_tree_get(root, (const char **)path, yajl_t_object) : root;
    ck_assert_ptr_nonnull(v);
    ck_assert(YAJL_IS_OBJECT(v));
    return YAJL_GET_OBJECT(v)->len;
}

static const char *const P_AUTH[] = { "auth", NULL };
static const char *const P_IDENTITY[] = { "auth", "identity", NULL };
static const char *const P_METHODS[] = { "auth", "identity", "methods", NULL };
static const char *const P_PASSWORD_OBJ[] = { "auth", "identity", "password", NULL };
static const char *const P_USER[] = { "auth", "identity", "password", "user", NULL };
static const char *const P_USER_NAME[] = { "auth", "identity", "password", "user", "name", NULL };
static const char *const P_USER_DOMAIN[] = { "auth", "identity", "password", "user", "domain", "name", NULL };
static const char *const P_PASSWORD[] = { "auth", "identity", "password", "user", "password", NULL };
static const char *const P_SCOPE[] = { "auth", "scope", NULL };
static const char *const P_PROJECT[] = { "auth", "scope", "project", NULL };
static const char *const P_PROJECT_NAME[] = { "auth", "scope", "project", "name", NULL };
static const char *const P_PROJECT_DOMAIN[] = { "auth", "scope", "project", "domain", "name", NULL };
static const char *const P_NONE[] = { NULL };

/* Builds the body and checks its whole structure and every value. */
static void check_body(const char *u, const char *ud, const char *pw, const char *pn,
                       const char *pd)
{
    size_t len = 0;
    char *body = keystone_auth_body(u, ud, pw, pn, pd, &len);
    ck_assert_ptr_nonnull(body);
    ck_assert_uint_eq(len, strlen(body));
    for (size_t i = 0; i < len; i++)   /* control characters are escaped */
        ck_assert_msg((unsigned char)body[i] >= 0x20, "raw control byte at %zu", i);

    yajl_val root = parse_tree(body);
    ck_assert_uint_eq(keys_at(root, P_NONE), 1);
    ck_assert_uint_eq(keys_at(root, P_AUTH), 2);
    ck_assert_uint_eq(keys_at(root, P_IDENTITY), 2);
    ck_assert_uint_eq(keys_at(root, P_PASSWORD_OBJ), 1);
    ck_assert_uint_eq(keys_at(root, P_USER), 3);
    ck_assert_uint_eq(keys_at(root, P_SCOPE), 1);
    ck_assert_uint_eq(keys_at(root, P_PROJECT), 2);
    yajl_val methods = yajl_tree_get(root, (const char **)P_METHODS, yajl_t_array);
    ck_assert_ptr_nonnull(methods);
    ck_assert_uint_eq(YAJL_GET_ARRAY(methods)->len, 1);
    ck_assert(YAJL_IS_STRING(YAJL_GET_ARRAY(methods)->values[0]));
    ck_assert_str_eq(YAJL_GET_STRING(YAJL_GET_ARRAY(methods)->values[0]), "password");
    ck_assert_str_eq(str_at(root, P_USER_NAME), u);
    ck_assert_str_eq(str_at(root, P_USER_DOMAIN), ud);
    ck_assert_str_eq(str_at(root, P_PASSWORD), pw);
    ck_assert_str_eq(str_at(root, P_PROJECT_NAME), pn);
    ck_assert_str_eq(str_at(root, P_PROJECT_DOMAIN), pd);
    yajl_tree_free(root);
    free(body);
}

START_TEST(test_body_exact)
{
    size_t len;
    char *body = keystone_auth_body("glance", "Default", "s3cret", "service", "Default", &len);
    ck_assert_ptr_nonnull(body);
    ck_assert_str_eq(body,
        "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":"
        "{\"name\":\"glance\",\"domain\":{\"name\":\"Default\"},\"password\":\"s3cret\"}}},"
        "\"scope\":{\"project\":{\"name\":\"service\",\"domain\":{\"name\":\"Default\"}}}}}");
    ck_assert_uint_eq(len, strlen(body));
    free(body);
    check_body("glance", "Default", "s3cret", "service", "Default");
}
END_TEST

START_TEST(test_body_escaping)
{
    check_body("a\"b\\c", "dom\"ain", "p\"w\\d\x01\x1f\n\r\t\b\f/}{,:", "pro\\ject\"", "D\\");
    check_body("jürgen", "домен", "pässwörd€😀\x7f", "プロジェクト", "Défaut");
    check_body("", "", "", "", "");   /* Keystone refuses these, but they are valid JSON */
    /* a long password with many escapes makes yajl grow its buffer */
    char pw[5001];
    for (size_t i = 0; i < sizeof(pw) - 1; i++)
        pw[i] = "\"\\\x01x"[i % 4];
    pw[sizeof(pw) - 1] = '\0';
    check_body("u", "Default", pw, "p", "Default");
}
END_TEST

START_TEST(test_body_escapes_are_json_escapes)
{
    size_t len;
    char *body = keystone_auth_body("q\"", "Default", "b\\\n", "p", "Default", &len);
    ck_assert_ptr_nonnull(body);
    ck_assert_ptr_nonnull(strstr(body, "\"name\":\"q\\\"\""));
    ck_assert_ptr_nonnull(strstr(body, "\"password\":\"b\\\\\\n\""));
    free(body);
}
END_TEST

START_TEST(test_body_invalid_utf8)
{
    size_t len;
    ck_assert_ptr_null(keystone_auth_body("u", "Default", "bad\xff", "p", "Default", &len));
    ck_assert_ptr_null(keystone_auth_body("\xc3", "Default", "pw", "p", "Default", &len));
    ck_assert_ptr_null(keystone_auth_body("u", "Default", "pw", "p", "\xed\xa0\x80", &len));
}
END_TEST

/* ---- times ----------------------------------------------------------------- */

static int parse_t(const char *s, double *out)
{
    return keystone_parse_time(s, strlen(s), out);
}

static void time_ok(const char *s, double want)
{
    double t = -12345;
    ck_assert_msg(parse_t(s, &t) == 0, "refused %s", s);
    double d = t > want ? t - want : want - t;
    /* a double holds about 16 digits: microseconds of a year-9999 time do not fit */
    ck_assert_msg(d <= 1e-6 + want * 1e-15, "%s: %f != %f", s, t, want);
}

static void time_bad(const char *s)
{
    double t = -12345;
    ck_assert_msg(parse_t(s, &t) == -1, "accepted %s", s);
    ck_assert(t == -12345);
}

START_TEST(test_time_valid)
{
    time_ok("2026-11-22T09:00:00.000000Z", 1795338000);
    time_ok("2026-11-22T09:00:00Z", 1795338000);
    time_ok("2026-11-22T09:00:00", 1795338000);
    time_ok("2026-11-22T09:00:00+00:00", 1795338000);
    time_ok("2026-11-22T09:00:00.000000+00:00", 1795338000);
    time_ok("2026-11-22T09:00:00.5Z", 1795338000.5);
    time_ok("2026-11-22T09:00:00.123456Z", 1795338000.123456);
    time_ok("2026-11-22T09:00:00.999999999", 1795338000.999999999);
    time_ok("1970-01-01T00:00:00Z", 0);
    time_ok("2000-02-29T00:00:00Z", 951782400);
    time_ok("9999-12-31T23:59:59Z", 253402300799.0);
}
END_TEST

START_TEST(test_time_ranges)
{
    time_bad("2026-13-01T00:00:00Z");
    time_bad("2026-00-01T00:00:00Z");
    time_bad("2026-01-00T00:00:00Z");
    time_bad("2026-01-32T00:00:00Z");
    time_bad("2026-04-31T00:00:00Z");
    time_bad("2026-02-29T00:00:00Z");   /* not a leap year */
    time_bad("2100-02-29T00:00:00Z");   /* nor is 2100 */
    time_bad("2026-11-22T24:00:00Z");
    time_bad("2026-11-22T23:60:00Z");
    time_bad("2026-11-22T23:59:60Z");
    time_bad("1969-12-31T23:59:59Z");
}
END_TEST

START_TEST(test_time_garbage)
{
    time_bad("");
    time_bad("garbage");
    time_bad("2026-11-22");
    time_bad("2026-11-22 09:00:00Z");
    time_bad("2026-11-22t09:00:00Z");
    time_bad("2026-11-22T9:00:00Z");
    time_bad("2026-1-22T09:00:00Z");
    time_bad("+026-11-22T09:00:00Z");
    time_bad("2026-11-22T09:00:0xZ");
    time_bad("2026/11/22T09:00:00Z");
    time_bad("2026-11-22T09-00-00Z");
    time_bad("2026-11-22T09:00:00.Z");
    time_bad("2026-11-22T09:00:00.");
    time_bad("2026-11-22T09:00:00.1234567890Z");   /* 10 fraction digits */
    time_bad("2026-11-22T09:00:00.-5Z");
    time_bad("2026-11-22T09:00:00z");
    time_bad("2026-11-22T09:00:00+01:00");
    time_bad("2026-11-22T09:00:00-00:00");
    time_bad("2026-11-22T09:00:00+00");
    time_bad("2026-11-22T09:00:00Z ");
    time_bad(" 2026-11-22T09:00:00Z");
    time_bad("2026-11-22T09:00:00ZZ");
    time_bad("2026-11-22T09:00:00Zjunk");
    time_bad("2026-11-22T09:00:00.000000Zjunk");
    time_bad("2026-11-22T09:00:00+00:00Z");
    /* an embedded NUL is a character like any other */
    double t;
    ck_assert_int_eq(keystone_parse_time("2026-11-22T09:00:00Z\0", 21, &t), -1);
    ck_assert_int_eq(keystone_parse_time("2026-11-22T09:00\0:00Z", 21, &t), -1);
    ck_assert_int_eq(keystone_parse_time(NULL, 0, &t), -1);
}
END_TEST

START_TEST(test_time_length_bound)
{
    /* only len bytes are read: what follows is not part of the time */
    double t = 0;
    const char *s = "2026-11-22T09:00:00Zjunk";
    ck_assert_int_eq(keystone_parse_time(s, 20, &t), 0);
    ck_assert(t == 1795338000.0);
    ck_assert_int_eq(keystone_parse_time(s, 19, &t), 0);
    ck_assert_int_eq(keystone_parse_time(s, 18, &t), -1);
}
END_TEST

/* ---- the token reply --------------------------------------------------------- */

/* What Keystone (Fernet, project scope) sends, shortened. */
static const char REAL_BODY[] =
    "{\"token\": {\"methods\": [\"password\"], \"user\": {\"domain\": {\"id\": \"default\", "
    "\"name\": \"Default\"}, \"id\": \"3ec3164f750146be97f21559ee4d9c51\", \"name\": \"glance\", "
    "\"password_expires_at\": null}, \"audit_ids\": [\"Xy2lZJqNQSu3nM3U5K8iWg\"], "
    "\"expires_at\": \"2026-11-22T09:00:00.000000Z\", \"issued_at\": \"2026-11-22T08:00:00.000000Z\", "
    "\"project\": {\"domain\": {\"id\": \"default\", \"name\": \"Default\"}, "
    "\"id\": \"8538a3f13f9541b28c2620eb19065e45\", \"name\": \"service\"}, \"is_domain\": false, "
    "\"roles\": [{\"id\": \"r1\", \"name\": \"admin\"}, {\"id\": \"r2\", \"name\": \"reader\"}], "
    "\"catalog\": [{\"endpoints\": [{\"id\": \"e1\", \"interface\": \"public\", \"region_id\": "
    "\"RegionOne\", \"url\": \"https://glance.example:9292\", \"region\": \"RegionOne\"}, "
    "{\"id\": \"e2\", \"interface\": \"internal\", \"region_id\": \"RegionOne\", "
    "\"url\": \"http://10.0.0.5:9292\", \"region\": \"RegionOne\", \"expires_at\": 7}], "
    "\"id\": \"s1\", \"type\": \"image\", \"name\": \"glance\"}, {\"endpoints\": [{\"id\": \"e3\", "
    "\"interface\": \"public\", \"url\": \"https://ks.example:5000/v3\", \"extra\": "
    "{\"issued_at\": \"garbage\", \"deep\": [[[{\"a\": [1, 2.5e3, true, null]}]]]}}], "
    "\"id\": \"s2\", \"type\": \"identity\", \"name\": \"keystone\"}]}}";

static int lifetime_of(const char *body, double *l)
{
    return keystone_parse_token(body, strlen(body), l);
}

static void token_ok(const char *body, double want)
{
    double l = -1;
    ck_assert_msg(lifetime_of(body, &l) == 0, "refused %s", body);
    ck_assert_msg(l > want - 1e-6 && l < want + 1e-6, "%f != %f", l, want);
}

static void token_bad(const char *body)
{
    double l = -12345;
    ck_assert_msg(lifetime_of(body, &l) == -1, "accepted %s", body);
    ck_assert(l == -12345);
}

START_TEST(test_token_real)
{
    token_ok(REAL_BODY, 3600);
}
END_TEST

START_TEST(test_token_order_and_fraction)
{
    token_ok("{\"other\": {\"token\": 1}, \"token\": {\"catalog\": [], "
             "\"issued_at\": \"2026-11-22T08:00:00.250000Z\", \"user\": {}, "
             "\"expires_at\": \"2026-11-22T09:00:00.750000Z\"}}", 3600.5);
    token_ok("{\"token\": {\"expires_at\": \"2026-11-22T09:00:00Z\", "
             "\"issued_at\": \"2026-11-22T08:59:59Z\"}, \"extra\": [1, {\"token\": []}]}", 1);
    /* a repeated key: the last one counts */
    token_ok("{\"token\": {\"expires_at\": \"bad\", \"issued_at\": \"2026-11-22T08:00:00Z\", "
             "\"expires_at\": \"2026-11-22T10:00:00Z\"}}", 7200);
    token_bad("{\"token\": {\"expires_at\": \"2026-11-22T10:00:00Z\", "
              "\"issued_at\": \"2026-11-22T08:00:00Z\", \"expires_at\": 5}}");
}
END_TEST

START_TEST(test_token_missing)
{
    token_bad("{\"token\": {\"issued_at\": \"2026-11-22T08:00:00Z\"}}");
    token_bad("{\"token\": {\"expires_at\": \"2026-11-22T09:00:00Z\"}}");
    token_bad("{\"token\": {}}");
    token_bad("{}");
    /* at the wrong level: they do not count */
    token_bad("{\"expires_at\": \"2026-11-22T09:00:00Z\", \"issued_at\": \"2026-11-22T08:00:00Z\"}");
    token_bad("{\"token\": {\"issued_at\": \"2026-11-22T08:00:00Z\", "
              "\"user\": {\"expires_at\": \"2026-11-22T09:00:00Z\"}}}");
    token_bad("{\"token\": {\"issued_at\": \"2026-11-22T08:00:00Z\"}, "
              "\"expires_at\": \"2026-11-22T09:00:00Z\"}");
    token_bad("{\"x\": {\"token\": {\"expires_at\": \"2026-11-22T09:00:00Z\", "
              "\"issued_at\": \"2026-11-22T08:00:00Z\"}}}");
}
END_TEST

START_TEST(test_token_wrong_types)
{
    token_bad("{\"token\": {\"expires_at\": 1795338000, \"issued_at\": \"2026-11-22T08:00:00Z\"}}");
    token_bad("{\"token\": {\"expires_at\": \"2026-11-22T09:00:00Z\", \"issued_at\": null}}");
    token_bad("{\"token\": {\"expires_at\": [\"2026-11-22T09:00:00Z\"], "
              "\"issued_at\": \"2026-11-22T08:00:00Z\"}}");
    token_bad("{\"token\": {\"expires_at\": {}, \"issued_at\": \"2026-11-22T08:00:00Z\"}}");
    token_bad("{\"token\": {\"expires_at\": \"tomorrow\", \"issued_at\": \"2026-11-22T08:00:00Z\"}}");
    token_bad("{\"token\": {\"expires_at\": \"2026-11-22T09:00:00Z\", "
              "\"issued_at\": \"2026-11-22T08:00:00+02:00\"}}");
    token_bad("{\"token\": [{\"expires_at\": \"2026-11-22T09:00:00Z\", "
              "\"issued_at\": \"2026-11-22T08:00:00Z\"}]}");
    token_bad("{\"token\": \"gAAAA\"}");
    token_bad("{\"token\": null}");
}
END_TEST

START_TEST(test_token_not_an_object)
{
    token_bad("[]");
    token_bad("[{\"token\": {\"expires_at\": \"2026-11-22T09:00:00Z\", "
              "\"issued_at\": \"2026-11-22T08:00:00Z\"}}]");
    token_bad("\"token\"");
    token_bad("42");
    token_bad("null");
    token_bad("");
    token_bad("   ");
    token_bad("<html><body>Created</body></html>");
    double l;
    ck_assert_int_eq(keystone_parse_token(NULL, 0, &l), -1);
}
END_TEST

START_TEST(test_token_lifetime_not_positive)
{
    token_bad("{\"token\": {\"expires_at\": \"2026-11-22T08:00:00Z\", "
              "\"issued_at\": \"2026-11-22T08:00:00Z\"}}");
    token_bad("{\"token\": {\"expires_at\": \"2026-11-22T07:00:00Z\", "
              "\"issued_at\": \"2026-11-22T08:00:00Z\"}}");
    token_bad("{\"token\": {\"expires_at\": \"2026-11-22T08:00:00.100000Z\", "
              "\"issued_at\": \"2026-11-22T08:00:00.200000Z\"}}");
    token_ok("{\"token\": {\"expires_at\": \"2026-11-22T08:00:00.200000Z\", "
             "\"issued_at\": \"2026-11-22T08:00:00.100000Z\"}}", 0.1);
}
END_TEST

/* {"token": {"issued_at": ..., "expires_at": ..., "x": [[[...]]]}}: the
 * document nests `depth` containers in all. */
static char *nested_body(size_t depth)
{
    const char *head = "{\"token\": {\"issued_at\": \"2026-11-22T08:00:00Z\", "
                       "\"expires_at\": \"2026-11-22T09:00:00Z\", \"x\": ";
    size_t n = depth - 2, hl = strlen(head);
    char *b = malloc(hl + 2 * n + 3);
    ck_assert_ptr_nonnull(b);
    memcpy(b, head, hl);
    memset(b + hl, '[', n);
    memset(b + hl + n, ']', n);
    memcpy(b + hl + 2 * n, "}}", 3);
    return b;
}

START_TEST(test_token_depth)
{
    char *b = nested_body(64);
    token_ok(b, 3600);
    free(b);
    b = nested_body(65);
    token_bad(b);
    free(b);
    b = nested_body(100000);
    token_bad(b);
    free(b);
}
END_TEST

START_TEST(test_token_truncated)
{
    double l;
    size_t n = strlen(REAL_BODY);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(keystone_parse_token(REAL_BODY, i, &l) == -1, "prefix %zu accepted", i);
    ck_assert_int_eq(keystone_parse_token(REAL_BODY, n, &l), 0);
}
END_TEST

START_TEST(test_token_trailing)
{
    char b[sizeof(REAL_BODY) + 8];
    snprintf(b, sizeof(b), "%s {}", REAL_BODY);
    token_bad(b);
    snprintf(b, sizeof(b), "%sx", REAL_BODY);
    token_bad(b);
    snprintf(b, sizeof(b), "%s\n", REAL_BODY);   /* whitespace is fine */
    token_ok(b, 3600);
    token_bad("{\"token\": {\"expires_at\": \"2026-11-22T09:00:00Z\", "
              "\"issued_at\": \"2026-11-22T08:00:00Z\"},}");
    token_bad("{\"token\": {\"expires_at\": \"2026-11-22T09:00:00Z\" "
              "\"issued_at\": \"2026-11-22T08:00:00Z\"}}");
}
END_TEST

/* ---- the token URL ------------------------------------------------------------ */

static void url_is(const char *auth_url, const char *want_base, const char *want_path)
{
    const char *path = NULL;
    char *base = keystone_tokens_url(auth_url, &path);
    ck_assert_ptr_nonnull(base);
    ck_assert_str_eq(base, want_base);
    ck_assert_str_eq(path, want_path);
    free(base);
}

START_TEST(test_tokens_url)
{
    url_is("https://ks:5000/v3", "https://ks:5000/v3", "/auth/tokens");
    url_is("https://ks:5000/v3/", "https://ks:5000/v3", "/auth/tokens");
    url_is("https://ks:5000", "https://ks:5000", "/v3/auth/tokens");
    url_is("https://ks:5000/", "https://ks:5000", "/v3/auth/tokens");
    url_is("https://ks/identity/v3/", "https://ks/identity/v3", "/auth/tokens");
    url_is("https://ks/identity/v3", "https://ks/identity/v3", "/auth/tokens");
    url_is("https://ks/identity", "https://ks/identity", "/v3/auth/tokens");
    url_is("https://ks/identity//", "https://ks/identity", "/v3/auth/tokens");
    url_is("http://127.0.0.1:35357/v3//", "http://127.0.0.1:35357/v3", "/auth/tokens");
    url_is("https://[::1]:5000/v3", "https://[::1]:5000/v3", "/auth/tokens");
    /* only the path counts: a host called v3 is not the v3 API */
    url_is("https://v3", "https://v3", "/v3/auth/tokens");
    url_is("https://ks.example/v3x", "https://ks.example/v3x", "/v3/auth/tokens");
    url_is("https://ks.example/xv3", "https://ks.example/xv3", "/v3/auth/tokens");
    url_is("https://ks.example/v3/x", "https://ks.example/v3/x", "/v3/auth/tokens");
}
END_TEST

START_TEST(test_tokens_url_invalid)
{
    const char *path = NULL;
    ck_assert_ptr_null(keystone_tokens_url("ks:5000/v3", &path));
    ck_assert_ptr_null(keystone_tokens_url("://ks", &path));
    ck_assert_ptr_null(keystone_tokens_url("", &path));
    ck_assert_ptr_null(keystone_tokens_url(NULL, &path));
    ck_assert_ptr_null(path);
}
END_TEST

/* ---- X-Subject-Token ------------------------------------------------------------ */

START_TEST(test_token_usable)
{
    ck_assert(keystone_token_usable("gAAAAABpQ3J2_ak-7xY5Zq0yKc3h1nLwQ=="));
    ck_assert(keystone_token_usable("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
    ck_assert(keystone_token_usable("x"));
    ck_assert(!keystone_token_usable(""));
    ck_assert(!keystone_token_usable(NULL));
    ck_assert(!keystone_token_usable("ab cd"));
    ck_assert(!keystone_token_usable("ab\r\nX-Evil: 1"));
    ck_assert(!keystone_token_usable("ab\n"));
    ck_assert(!keystone_token_usable("ab\tcd"));
    ck_assert(!keystone_token_usable("ab\x7f"));
    ck_assert(!keystone_token_usable("t\xc3\xa9"));

    char big[8194];
    memset(big, 'a', sizeof(big) - 1);
    big[8193] = '\0';
    ck_assert(!keystone_token_usable(big));   /* 8193 bytes */
    big[8192] = '\0';
    ck_assert(keystone_token_usable(big));    /* 8192 */
}
END_TEST

static Suite *keystone_json_suite(void)
{
    Suite *s = suite_create("keystone_json");
    TCase *tc = tcase_create("body");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_body_exact);
    tcase_add_test(tc, test_body_escaping);
    tcase_add_test(tc, test_body_escapes_are_json_escapes);
    tcase_add_test(tc, test_body_invalid_utf8);
    suite_add_tcase(s, tc);

    tc = tcase_create("time");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_time_valid);
    tcase_add_test(tc, test_time_ranges);
    tcase_add_test(tc, test_time_garbage);
    tcase_add_test(tc, test_time_length_bound);
    suite_add_tcase(s, tc);

    tc = tcase_create("token");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_token_real);
    tcase_add_test(tc, test_token_order_and_fraction);
    tcase_add_test(tc, test_token_missing);
    tcase_add_test(tc, test_token_wrong_types);
    tcase_add_test(tc, test_token_not_an_object);
    tcase_add_test(tc, test_token_lifetime_not_positive);
    tcase_add_test(tc, test_token_depth);
    tcase_add_test(tc, test_token_truncated);
    tcase_add_test(tc, test_token_trailing);
    suite_add_tcase(s, tc);

    tc = tcase_create("url");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_tokens_url);
    tcase_add_test(tc, test_tokens_url_invalid);
    tcase_add_test(tc, test_token_usable);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(keystone_json_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
