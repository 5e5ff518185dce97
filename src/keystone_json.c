/* keystone_json: the Keystone v3 token request body (yajl_gen) and its
 * reply (yajl callback parser, depth bounded). Pure: no I/O. */
#include "keystone_json.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "reply.h"
#include "utf8.h"

#define KS_MAX_DEPTH   64
#define KS_MAX_TOKEN   8192

/* ---- the request body ----------------------------------------------------- */

/* yajl_gen grows its buffer with realloc, which may leave copies of the
 * password in freed memory, and clearing the final buffer would not reach
 * those. These allocation functions wipe every block yajl gives back, so
 * nothing it held survives: realloc is malloc + copy + wipe + free. */
static void *wipe_malloc(void *ctx, size_t sz)
{
    (void)ctx;
    return malloc(sz);
}

static void wipe_free(void *ctx, void *p)
{
    (void)ctx;
    if (p != NULL) {
        explicit_bzero(p, malloc_usable_size(p));
        free(p);
    }
}

static void *wipe_realloc(void *ctx, void *p, size_t sz)
{
    if (p == NULL)
        return wipe_malloc(ctx, sz);
    void *n = malloc(sz);
    if (n == NULL)
        return NULL;          /* like realloc: p is left as it was */
    size_t old = malloc_usable_size(p);
    memcpy(n, p, old < sz ? old : sz);
    wipe_free(ctx, p);
    return n;
}

static yajl_alloc_funcs wipe_funcs = { wipe_malloc, wipe_realloc, wipe_free, NULL };

#define GEN(call) do { if ((call) != yajl_gen_status_ok) goto out; } while (0)

static yajl_gen_status gen_str(yajl_gen g, const char *s)
{
    return yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

/* {"name": NAME, "domain": {"name": DOMAIN}} without its braces. */
static int gen_named_in_domain(yajl_gen g, const char *name, const char *domain)
{
    GEN(gen_str(g, "name"));
    GEN(gen_str(g, name));
    GEN(gen_str(g, "domain"));
    GEN(yajl_gen_map_open(g));
    GEN(gen_str(g, "name"));
    GEN(gen_str(g, domain));
    GEN(yajl_gen_map_close(g));
    return 0;
out:
    return -1;
}

static int gen_identity(yajl_gen g, const char *username, const char *user_domain_name,
                        const char *password)
{
    GEN(gen_str(g, "identity"));
    GEN(yajl_gen_map_open(g));
    GEN(gen_str(g, "methods"));
    GEN(yajl_gen_array_open(g));
    GEN(gen_str(g, "password"));
    GEN(yajl_gen_array_close(g));
    GEN(gen_str(g, "password"));
    GEN(yajl_gen_map_open(g));
    GEN(gen_str(g, "user"));
    GEN(yajl_gen_map_open(g));
    if (gen_named_in_domain(g, username, user_domain_name) != 0)
        goto out;
    GEN(gen_str(g, "password"));
    GEN(gen_str(g, password));
    GEN(yajl_gen_map_close(g));
    GEN(yajl_gen_map_close(g));
    GEN(yajl_gen_map_close(g));
    return 0;
out:
    return -1;
}

static int gen_scope(yajl_gen g, const char *project_name, const char *project_domain_name)
{
    GEN(gen_str(g, "scope"));
    GEN(yajl_gen_map_open(g));
    GEN(gen_str(g, "project"));
    GEN(yajl_gen_map_open(g));
    if (gen_named_in_domain(g, project_name, project_domain_name) != 0)
        goto out;
    GEN(yajl_gen_map_close(g));
    GEN(yajl_gen_map_close(g));
    return 0;
out:
    return -1;
}

char *keystone_auth_body(const char *username, const char *user_domain_name,
                         const char *password, const char *project_name,
                         const char *project_domain_name, size_t *len)
{
    /* invalid UTF-8 fails the call rather than producing JSON that
     * Keystone cannot read (and a password must not be altered); yajl's
     * own check lets encoded surrogates through */
    const char *values[] = { username, user_domain_name, password, project_name,
                             project_domain_name };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        if (!utf8_valid((const unsigned char *)values[i], strlen(values[i])))
            return NULL;
    char *res = NULL;
    yajl_gen g = yajl_gen_alloc(&wipe_funcs);
    if (g == NULL)
        return NULL;
    GEN(yajl_gen_map_open(g));
    GEN(gen_str(g, "auth"));
    GEN(yajl_gen_map_open(g));
    if (gen_identity(g, username, user_domain_name, password) != 0 ||
        gen_scope(g, project_name, project_domain_name) != 0)
        goto out;
    GEN(yajl_gen_map_close(g));
    GEN(yajl_gen_map_close(g));
    res = reply_gen_take(g, len);
out:
    yajl_gen_free(g);    /* wipes its buffer (wipe_free) */
    return res;
}

/* ---- times ---------------------------------------------------------------- */

/* The n decimal digits at s, or -1 when any is not a digit. */
static long digits(const char *s, size_t n)
{
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int days_in_month(long year, long month)
{
    static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return days[month - 1] + (month == 2 && leap);
}

/* "YYYY-MM-DDTHH:MM:SS" (19 bytes) -> *tm, fields range checked. */
static int parse_date_time(const char *s, struct tm *tm)
{
    if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
        return -1;
    long y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
    long h = digits(s + 11, 2), mi = digits(s + 14, 2), sec = digits(s + 17, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) ||
        h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59)
        return -1;
    *tm = (struct tm){ .tm_year = (int)(y - 1900), .tm_mon = (int)(mo - 1), .tm_mday = (int)d,
                       .tm_hour = (int)h, .tm_min = (int)mi, .tm_sec = (int)sec };
    return 0;
}

int keystone_parse_time(const char *s, size_t len, double *out)
{
    struct tm tm;
    if (s == NULL || len < 19 || parse_date_time(s, &tm) != 0)
        return -1;
    size_t i = 19;
    double frac = 0, scale = 1;
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9' && i - start < 9) {
            frac = frac * 10 + (s[i] - '0');
            scale *= 10;
            i++;
        }
        if (i == start || (i < len && s[i] >= '0' && s[i] <= '9'))
            return -1;   /* no digit, or more than 9 */
    }
    const char *rest = s + i;
    size_t rlen = len - i;
    if (!(rlen == 0 || (rlen == 1 && rest[0] == 'Z') ||
          (rlen == 6 && memcmp(rest, "+00:00", 6) == 0)))
        return -1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *out = (double)t + frac / scale;
    return 0;
}

/* ---- the token reply ------------------------------------------------------ */

typedef enum { TS_SKIP, TS_TOKEN, TS_EXPIRES, TS_ISSUED } tok_slot;

typedef struct {
    size_t   depth;       /* open containers */
    int      in_token;    /* the container at depth 2 is the "token" object */
    tok_slot slot;        /* what the next value is */
    int      have_expires, have_issued;
    double   expires, issued;
} tok_parser;

static int key_is(const unsigned char *key, size_t len, const char *name)
{
    return len == strlen(name) && memcmp(key, name, len) == 0;
}

/* A value (scalar or container opening) arrives. s is set for strings. */
static int tp_value(tok_parser *p, int is_map, int is_container, const unsigned char *s,
                    size_t len)
{
    tok_slot slot = p->slot;
    p->slot = TS_SKIP;
    if (p->depth == 0 && !is_map)
        return 0;                       /* the document must be an object */
    if (slot == TS_TOKEN && !is_map)
        return 0;                       /* "token" must be an object */
    if (slot == TS_EXPIRES)
        p->have_expires = s != NULL && keystone_parse_time((const char *)s, len, &p->expires) == 0;
    else if (slot == TS_ISSUED)
        p->have_issued = s != NULL && keystone_parse_time((const char *)s, len, &p->issued) == 0;
    if (!is_container)
        return 1;
    if (p->depth >= KS_MAX_DEPTH)
        return 0;
    if (slot == TS_TOKEN)
        p->in_token = 1;
    p->depth++;
    return 1;
}

static int tp_null(void *ctx)
{
    return tp_value(ctx, 0, 0, NULL, 0);
}

static int tp_boolean(void *ctx, int v)
{
    (void)v;
    return tp_value(ctx, 0, 0, NULL, 0);
}

static int tp_number(void *ctx, const char *s, size_t len)
{
    (void)s;
    (void)len;
    return tp_value(ctx, 0, 0, NULL, 0);
}

static int tp_string(void *ctx, const unsigned char *s, size_t len)
{
    return tp_value(ctx, 0, 0, s, len);
}

static int tp_start_map(void *ctx)
{
    return tp_value(ctx, 1, 1, NULL, 0);
}

static int tp_start_array(void *ctx)
{
    return tp_value(ctx, 0, 1, NULL, 0);
}

static int tp_map_key(void *ctx, const unsigned char *key, size_t len)
{
    tok_parser *p = ctx;
    p->slot = TS_SKIP;
    if (p->depth == 1 && key_is(key, len, "token"))
        p->slot = TS_TOKEN;
    else if (p->depth == 2 && p->in_token && key_is(key, len, "expires_at"))
        p->slot = TS_EXPIRES;
    else if (p->depth == 2 && p->in_token && key_is(key, len, "issued_at"))
        p->slot = TS_ISSUED;
    return 1;
}

static int tp_close(void *ctx)
{
    tok_parser *p = ctx;
    if (--p->depth == 1)
        p->in_token = 0;
    return 1;
}

static const yajl_callbacks tok_callbacks = {
    .yajl_null = tp_null,
    .yajl_boolean = tp_boolean,
    .yajl_number = tp_number,
    .yajl_string = tp_string,
    .yajl_start_map = tp_start_map,
    .yajl_map_key = tp_map_key,
    .yajl_end_map = tp_close,
    .yajl_start_array = tp_start_array,
    .yajl_end_array = tp_close,
};

int keystone_parse_token(const char *buf, size_t len, double *lifetime_s)
{
    tok_parser p = { .depth = 0 };
    if (buf == NULL)
        return -1;
    yajl_handle h = yajl_alloc(&tok_callbacks, NULL, &p);
    if (h == NULL)
        return -1;
    int ok = yajl_parse(h, (const unsigned char *)buf, len) == yajl_status_ok &&
             yajl_complete_parse(h) == yajl_status_ok;
    yajl_free(h);
    if (!ok || !p.have_expires || !p.have_issued || !(p.expires - p.issued > 0))
        return -1;
    *lifetime_s = p.expires - p.issued;
    return 0;
}

/* ---- where to send it ------------------------------------------------------ */

char *keystone_tokens_url(const char *auth_url, const char **path)
{
    const char *sep = auth_url != NULL ? strstr(auth_url, "://") : NULL;
    if (sep == NULL || sep == auth_url)
        return NULL;
    const char *authority = sep + 3;
    size_t len = strlen(auth_url);
    /* cut trailing '/'s, but only those of the path */
    const char *path_start = strchr(authority, '/');
    while (path_start != NULL && len > (size_t)(path_start - auth_url) && auth_url[len - 1] == '/')
        len--;
    char *base = strndup(auth_url, len);
    if (base == NULL)
        return NULL;
    size_t plen = path_start != NULL ? len - (size_t)(path_start - auth_url) : 0;
    int ends_v3 = plen >= 3 && memcmp(base + len - 3, "/v3", 3) == 0;
    *path = ends_v3 ? "/auth/tokens" : "/v3/auth/tokens";
    return base;
}

int keystone_token_usable(const char *s)
{
    size_t n = 0;
    if (s == NULL)
        return 0;
    for (; s[n] != '\0'; n++)
        if ((unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e || n >= KS_MAX_TOKEN)
            return 0;
    return n > 0;
}
