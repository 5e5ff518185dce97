/* mb_conf: the configuration (SPEC section 4) from one table of keys, in the
 * manner of nginx's command tables: each key has a type (its setter), a
 * default written as it would be in the file, and bounds. inih does the INI
 * syntax; this file feeds it the file one line at a time so that every error
 * names FILE:LINE (Debian's inih is built without INI_HANDLER_LINENO), and
 * refuses what inih would silently cut or reinterpret: lines longer than its
 * buffer, NUL bytes, indented lines (inih's multi-line continuations). */
#include "mb_conf.h"

#include <arpa/inet.h>
#include <event2/http.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONF_FILE_MAX  (1024 * 1024)   /* a config file is small */
#define CONF_VALUE_MAX 199             /* values of this length or more are refused */

typedef enum {
    T_INT,          /* int, all digits, min..max */
    T_LONG,         /* long, all digits, min..max */
    T_BOOL,         /* int 0/1: true/false/yes/no/on/off/1/0 */
    T_STR,          /* char *, empty = NULL */
    T_FILE,         /* char *, empty = NULL, else a readable regular file */
    T_ENUM,         /* an enum, one of names[] (index = value) */
    T_LISTEN,       /* [server] listen: also sets listen_host and listen_port */
    T_ADMIN_LISTEN, /* [admin] listen: the same, or empty (off) */
    T_URL,          /* http(s) URL, no query/fragment/userinfo, trailing '/' cut */
    T_ACCESS_LOG,   /* "-", "off" or a path */
} conf_type;

typedef struct {
    const char *section, *name;
    conf_type   type;
    const char *def;            /* default as written in the file; NULL: unset */
    long        min, max;       /* T_INT, T_LONG bounds */
    size_t      off;            /* the field in mb_conf */
    const char *const *names;   /* T_ENUM: the accepted values, in enum order */
    int         required;
} conf_key;

static const char *const can_share_names[] = { "ignore", "reject", NULL };
static const char *const level_names[] = { "debug", "info", "warning", "error", NULL };

_Static_assert(sizeof(mb_can_share_mode) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(mb_log_level) == sizeof(int), "enum stored as int");

#define F(field) offsetof(mb_conf, field)
#define KEY(sec, key, type, field, def) \
    { sec, key, type, def, 0, 0, F(field), NULL, 0 }
#define NUM(sec, key, type, field, def, lo, hi) \
    { sec, key, type, def, lo, hi, F(field), NULL, 0 }
#define ENUM(sec, key, field, def, names) \
    { sec, key, T_ENUM, def, 0, 0, F(field), names, 0 }

static const conf_key keys[] = {
    KEY("server", "listen", T_LISTEN, server.listen, "127.0.0.1:9393"),
    NUM("server", "max_body_bytes", T_LONG, server.max_body_bytes, "1048576", 1, 1073741824L),
    NUM("server", "client_timeout", T_INT, server.client_timeout, "30", 1, 3600),
    KEY("server", "tls_cert_file", T_FILE, server.tls_cert_file, NULL),
    KEY("server", "tls_key_file", T_FILE, server.tls_key_file, NULL),
    NUM("server", "workers", T_INT, server.workers, "0", 0, 256),

    { "upstream", "url", T_URL, NULL, 0, 0, F(upstream.url), NULL, 1 },
    KEY("upstream", "ca_file", T_FILE, upstream.ca_file, NULL),
    KEY("upstream", "client_cert_file", T_FILE, upstream.client_cert_file, NULL),
    KEY("upstream", "client_key_file", T_FILE, upstream.client_key_file, NULL),
    KEY("upstream", "insecure", T_BOOL, upstream.insecure, "false"),
    NUM("upstream", "connect_timeout", T_INT, upstream.connect_timeout, "5", 1, 300),
    NUM("upstream", "request_timeout", T_INT, upstream.request_timeout, "30", 1, 3600),
    NUM("upstream", "retries", T_INT, upstream.retries, "2", 0, 10),
    NUM("upstream", "max_connections", T_INT, upstream.max_connections, "64", 1, 10000),

    NUM("members", "concurrency", T_INT, members.concurrency, "16", 1, 1000),
    NUM("members", "max_per_request", T_LONG, members.max_per_request, "10000", 1, 1000000),
    ENUM("members", "can_share", members.can_share, "ignore", can_share_names),
    KEY("members", "accept", T_BOOL, members.accept, "false"),
    KEY("members", "share_private_images", T_BOOL, members.share_private_images, "false"),

    ENUM("log", "level", log.level, "info", level_names),
    KEY("log", "access_log", T_ACCESS_LOG, log.access_log, "-"),

    KEY("admin", "listen", T_ADMIN_LISTEN, admin.listen, NULL),

    KEY("service_auth", "auth_url", T_URL, service_auth.auth_url, NULL),
    KEY("service_auth", "username", T_STR, service_auth.username, NULL),
    KEY("service_auth", "password", T_STR, service_auth.password, NULL),
    KEY("service_auth", "user_domain_name", T_STR, service_auth.user_domain_name, "Default"),
    KEY("service_auth", "project_name", T_STR, service_auth.project_name, NULL),
    KEY("service_auth", "project_domain_name", T_STR, service_auth.project_domain_name, "Default"),
    KEY("service_auth", "ca_file", T_FILE, service_auth.ca_file, NULL),
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* The state of one conf_load. */
typedef struct {
    mb_conf    *c;
    const char *path;
    char       *text;           /* the whole file, NUL-terminated */
    size_t      len, pos;       /* reader position in text */
    int         lineno;         /* the line last handed to inih */
    mode_t      mode;           /* the file's permission bits */
    int         seen[NKEYS];    /* line where each key was set; 0: not set */
    int         err_line;       /* line of the first error; -1: whole file */
    char       *err;
    size_t      errlen;
} conf_ctx;

static int is_string_type(conf_type t)
{
    return t == T_STR || t == T_FILE || t == T_LISTEN || t == T_ADMIN_LISTEN || t == T_URL
           || t == T_ACCESS_LOG;
}

static void *field(mb_conf *c, const conf_key *k)
{
    return (char *)c + k->off;
}

static void replace_str(char **dst, char *s)
{
    free(*dst);
    *dst = s;
}

/* Records the first error as "FILE:LINE: message" (line > 0) or
 * "FILE: message". */
__attribute__((format(printf, 3, 4)))
static void fail(conf_ctx *x, int line, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (x->err_line != 0)
        return;
    x->err_line = line > 0 ? line : -1;
    if (x->errlen == 0)
        return;
    n = line > 0 ? snprintf(x->err, x->errlen, "%s:%d: ", x->path, line)
                 : snprintf(x->err, x->errlen, "%s: ", x->path);
    if (n < 0 || (size_t)n >= x->errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(x->err + n, x->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/* ---- value parsers: 0, or -1 with msg filled ---- */

static int parse_number(const char *v, long lo, long hi, long *out, char *msg, size_t mlen)
{
    long n = 0;

    if (*v == '\0') {
        snprintf(msg, mlen, "a whole number is required");
        return -1;
    }
    for (const char *p = v; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            snprintf(msg, mlen, "'%s' is not a whole number", v);
            return -1;
        }
        if (n > (LONG_MAX - (*p - '0')) / 10) {
            n = LONG_MAX;
            break;
        }
        n = n * 10 + (*p - '0');
    }
    if (n < lo || n > hi) {
        snprintf(msg, mlen, "%s is out of range (%ld..%ld)", v, lo, hi);
        return -1;
    }
    *out = n;
    return 0;
}

static int parse_bool(const char *v, int *out, char *msg, size_t mlen)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    snprintf(msg, mlen, "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)", v);
    return -1;
}

static int parse_enum(const char *v, const char *const *names, int *out, char *msg, size_t mlen)
{
    size_t n = 0;

    for (int i = 0; names[i] != NULL; i++) {
        if (strcasecmp(v, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    n += (size_t)snprintf(msg, mlen, "'%s' is not one of", v);
    for (int i = 0; names[i] != NULL && n < mlen; i++)
        n += (size_t)snprintf(msg + n, mlen - n, "%s %s", i ? " |" : "", names[i]);
    return -1;
}

static int port_number(const char *p, int *port)
{
    long n = 0;

    if (*p == '\0' || strlen(p) > 5)
        return -1;
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (*p - '0');
    }
    if (n < 1 || n > 65535)
        return -1;
    *port = (int)n;
    return 0;
}

/* "host:port": an IPv4 address, or an IPv6 address in brackets. The host is
 * returned malloc'd, without brackets. */
static int parse_listen(const char *v, char **host, int *port, char *msg, size_t mlen)
{
    const char *h = v, *hend, *ps;
    unsigned char addr[sizeof(struct in6_addr)];
    int family = AF_INET;
    char buf[INET6_ADDRSTRLEN + 1];

    if (*v == '[') {
        h = v + 1;
        hend = strchr(h, ']');
        if (hend == NULL || hend[1] != ':') {
            snprintf(msg, mlen, "'%s' is not [IPv6]:port", v);
            return -1;
        }
        ps = hend + 2;
        family = AF_INET6;
    } else {
        hend = strrchr(v, ':');
        if (hend == NULL) {
            snprintf(msg, mlen, "'%s' is not host:port", v);
            return -1;
        }
        if (memchr(v, ':', (size_t)(hend - v)) != NULL) {
            snprintf(msg, mlen, "'%s': an IPv6 address goes in brackets, as [::1]:9393", v);
            return -1;
        }
        ps = hend + 1;
    }
    if ((size_t)(hend - h) >= sizeof(buf) || hend == h) {
        snprintf(msg, mlen, "'%s': the host is not an IP address", v);
        return -1;
    }
    memcpy(buf, h, (size_t)(hend - h));
    buf[hend - h] = '\0';
    if (inet_pton(family, buf, addr) != 1) {
        snprintf(msg, mlen, "'%s': the host is not an %s address", v,
                 family == AF_INET6 ? "IPv6" : "IPv4");
        return -1;
    }
    if (port_number(ps, port) != 0) {
        snprintf(msg, mlen, "'%s': the port is not a number in 1..65535", v);
        return -1;
    }
    if ((*host = strdup(buf)) == NULL) {
        snprintf(msg, mlen, "out of memory");
        return -1;
    }
    return 0;
}

/* URL messages never echo the value: it could hold a password. */

/* The URL is parsed by libevent's strict RFC 3986 parser. */
static int check_url(const char *v, char *msg, size_t mlen)
{
    if (strncasecmp(v, "http://", 7) != 0 && strncasecmp(v, "https://", 8) != 0) {
        snprintf(msg, mlen, "the URL does not start with http:// or https://");
        return -1;
    }
    /* look at the text first: an empty query, fragment or user name is one
     * all the same ("https://g?" would send every call to "/?/v2/...") */
    const char *auth = strstr(v, "://") + 3;
    size_t auth_len = strcspn(auth, "/?#");
    if (memchr(auth, '@', auth_len) != NULL) {
        snprintf(msg, mlen, "the URL must not hold a user name or password");
        return -1;
    }
    if (strchr(v, '?') != NULL) {
        snprintf(msg, mlen, "the URL must not have a query (?...)");
        return -1;
    }
    if (strchr(v, '#') != NULL) {
        snprintf(msg, mlen, "the URL must not have a fragment (#...)");
        return -1;
    }
    struct evhttp_uri *u = evhttp_uri_parse_with_flags(v, 0);
    const char *host = u ? evhttp_uri_get_host(u) : NULL;
    int ret = -1;
    if (u == NULL)
        snprintf(msg, mlen, "not a valid URL (malformed)");
    else if (host == NULL || *host == '\0' || strcmp(host, "[]") == 0)
        snprintf(msg, mlen, "not a valid URL (no host)");
    else
        ret = 0;
    if (u)
        evhttp_uri_free(u);
    return ret;
}

static int check_file(const char *v, char *msg, size_t mlen)
{
    struct stat st;

    if (access(v, R_OK) != 0 || stat(v, &st) != 0) {
        snprintf(msg, mlen, "cannot read %s: %s", v, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(msg, mlen, "%s is not a regular file", v);
        return -1;
    }
    return 0;
}

/* ---- setters: one per type; 0, or -1 with msg ---- */

static int set_string(char **dst, const char *v, char *msg, size_t mlen)
{
    char *s = NULL;

    if (*v != '\0' && (s = strdup(v)) == NULL) {
        snprintf(msg, mlen, "out of memory");
        return -1;
    }
    replace_str(dst, s);
    return 0;
}

static int set_value(mb_conf *c, const conf_key *k, const char *v, char *msg, size_t mlen)
{
    void *f = field(c, k);
    long n;
    int i;

    switch (k->type) {
    case T_INT:
        if (parse_number(v, k->min, k->max, &n, msg, mlen) != 0)
            return -1;
        *(int *)f = (int)n;
        return 0;
    case T_LONG:
        if (parse_number(v, k->min, k->max, &n, msg, mlen) != 0)
            return -1;
        *(long *)f = n;
        return 0;
    case T_BOOL:
        return parse_bool(v, (int *)f, msg, mlen);
    case T_ENUM:
        if (parse_enum(v, k->names, &i, msg, mlen) != 0)
            return -1;
        memcpy(f, &i, sizeof(i));
        return 0;
    case T_STR:
        return set_string(f, v, msg, mlen);
    case T_FILE:
        if (*v != '\0' && check_file(v, msg, mlen) != 0)
            return -1;
        return set_string(f, v, msg, mlen);
    case T_ACCESS_LOG:
        if (*v == '\0') {
            snprintf(msg, mlen, "- (stderr), off, or a file path is required");
            return -1;
        }
        return set_string(f, v, msg, mlen);
    case T_URL: {
        if (*v == '\0' && !k->required)
            return set_string(f, v, msg, mlen);   /* unset */
        if (check_url(v, msg, mlen) != 0 || set_string(f, v, msg, mlen) != 0)
            return -1;
        char *s = *(char **)f;
        size_t len = strlen(s);
        while (len > 0 && s[len - 1] == '/')
            s[--len] = '\0';
        return 0;
    }
    case T_LISTEN:
    case T_ADMIN_LISTEN: {
        char *host = NULL;
        int port;
        int admin = k->type == T_ADMIN_LISTEN;
        if (admin && *v == '\0') {               /* off */
            replace_str(&c->admin.listen_host, NULL);
            return set_string(f, v, msg, mlen);
        }
        if (parse_listen(v, &host, &port, msg, mlen) != 0)
            return -1;
        if (set_string(f, v, msg, mlen) != 0) {
            free(host);
            return -1;
        }
        replace_str(admin ? &c->admin.listen_host : &c->server.listen_host, host);
        *(admin ? &c->admin.listen_port : &c->server.listen_port) = port;
        return 0;
    }
    }
    snprintf(msg, mlen, "unknown key type");
    return -1;
}

void conf_defaults(mb_conf *c)
{
    char msg[256];

    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].def != NULL)
            (void)set_value(c, &keys[i], keys[i].def, msg, sizeof(msg));
}

void conf_free(mb_conf *c)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (is_string_type(keys[i].type)) {
            char **s = field(c, &keys[i]);
            if (*s != NULL && s == &c->service_auth.password)
                explicit_bzero(*s, strlen(*s));
            free(*s);
            *s = NULL;
        }
    }
    free(c->server.listen_host);
    c->server.listen_host = NULL;
    free(c->admin.listen_host);
    c->admin.listen_host = NULL;
}

/* ---- the INI file, line by line ---- */

static const conf_key *find_key(const char *section, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

static int section_known(const char *s, size_t len)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strlen(keys[i].section) == len && strncmp(keys[i].section, s, len) == 0)
            return 1;
    return 0;
}

static int blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* A "[section]" line: refuses unknown sections and text after the ']'
 * (inih would ignore it). A header without ']' is left to inih, which
 * reports it as a syntax error. */
static void check_section(conf_ctx *x, const char *s, size_t len)
{
    const char *close = memchr(s, ']', len);

    if (close == NULL)
        return;
    for (const char *p = close + 1; p < s + len; p++) {
        if (!blank(*p)) {
            fail(x, x->lineno, "unexpected text after the section header");
            return;
        }
    }
    if (!section_known(s + 1, (size_t)(close - s - 1)))
        fail(x, x->lineno, "unknown section [%.*s]", (int)(close - s - 1), s + 1);
}

/* inih's ini_reader: hands inih the next line, without leading blanks (so
 * inih never takes it as a continuation line) and without an inline
 * "  ; comment", so that both never depend on how inih was built. Stops
 * (NULL) at the end and at the first error. */
static char *next_line(char *str, int num, void *stream)
{
    conf_ctx *x = stream;
    const char *s, *nl;
    size_t len, raw;

    if (x->err_line != 0 || x->pos >= x->len)
        return NULL;
    s = x->text + x->pos;
    nl = memchr(s, '\n', x->len - x->pos);
    raw = nl ? (size_t)(nl - s) : x->len - x->pos;
    x->pos += raw + (nl ? 1 : 0);
    x->lineno++;

    len = raw;
    if (len > 0 && s[len - 1] == '\r')
        len--;
    if (memchr(s, '\0', raw) != NULL) {
        fail(x, x->lineno, "NUL byte in the line");
        return NULL;
    }
    if ((long)len > (long)num - 3) {
        fail(x, x->lineno, "line is longer than %d characters", num - 3);
        return NULL;
    }
    if (x->lineno == 1 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3;  /* UTF-8 byte order mark */
        len -= 3;
    }
    while (len > 0 && blank(*s)) {
        s++;
        len--;
    }
    if (*s != ';' && *s != '#') {
        for (size_t i = 1; i < len; i++) {
            if (s[i] == ';' && blank(s[i - 1])) {
                len = i;
                break;
            }
        }
    }
    while (len > 0 && blank(s[len - 1]))
        len--;
    if (len > 0 && *s == '[')
        check_section(x, s, len);
    if (x->err_line != 0)
        return NULL;
    memcpy(str, s, len);
    str[len] = '\n';
    str[len + 1] = '\0';
    return str;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    conf_ctx *x = user;
    const conf_key *k;
    char msg[512];
    int line = x->lineno;

    if (x->err_line != 0)
        return 1;
    if (*section == '\0') {
        fail(x, line, "key '%s' is outside any [section]", name);
        return 1;
    }
    if ((k = find_key(section, name)) == NULL) {
        fail(x, line, "unknown key '%s' in [%s]", name, section);
        return 1;
    }
    size_t idx = (size_t)(k - keys);
    if (x->seen[idx] != 0) {
        fail(x, line, "duplicate key [%s] %s (first set at line %d)",
             section, name, x->seen[idx]);
        return 1;
    }
    x->seen[idx] = line;
    if (strlen(value) >= CONF_VALUE_MAX) {
        fail(x, line, "[%s] %s: the value is %d bytes or longer",
             section, name, CONF_VALUE_MAX);
        return 1;
    }
    if (set_value(x->c, k, value, msg, sizeof(msg)) != 0) {
        fail(x, line, "[%s] %s: %s", section, name, msg);
        return 1;
    }
    return 1;
}

static int read_file(conf_ctx *x)
{
    FILE *f = fopen(x->path, "rb");
    size_t cap = 4096, n;

    if (f == NULL) {
        fail(x, 0, "cannot open: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0)
        x->mode = st.st_mode;
    x->text = malloc(cap + 1);
    while (x->text != NULL) {
        n = fread(x->text + x->len, 1, cap - x->len, f);
        x->len += n;
        if (x->len < cap)
            break;
        if (cap > CONF_FILE_MAX)
            break;
        char *t = malloc(cap * 2 + 1);   /* not realloc: the old block is wiped */
        if (t != NULL)
            memcpy(t, x->text, x->len);
        explicit_bzero(x->text, x->len);
        free(x->text);
        if (t == NULL) {
            x->text = NULL;
            break;
        }
        x->text = t;
        cap *= 2;
    }
    if (x->text == NULL)
        fail(x, 0, "out of memory");
    else if (ferror(f))
        fail(x, 0, "cannot read: %s", strerror(errno));
    else if (x->len > CONF_FILE_MAX)
        fail(x, 0, "larger than %d bytes", CONF_FILE_MAX);
    else
        x->text[x->len] = '\0';
    fclose(f);
    return x->err_line != 0 ? -1 : 0;
}

/* [service_auth]: complete when [members] accept needs it; a file holding
 * its password must not be readable by every user. */
static void check_service_auth(conf_ctx *x)
{
    const mb_conf *c = x->c;
    const char *missing[6];
    size_t n = 0;
    char list[128] = "";

    if (c->service_auth.password != NULL && (x->mode & S_IROTH)) {
        fail(x, 0, "holds [service_auth] password but every user may read it (mode %04o): "
             "chmod o-r the file", (unsigned)(x->mode & 07777));
        return;
    }
    if (!c->members.accept)
        return;
    if (c->service_auth.auth_url == NULL)
        missing[n++] = "auth_url";
    if (c->service_auth.username == NULL)
        missing[n++] = "username";
    if (c->service_auth.password == NULL)
        missing[n++] = "password";
    if (c->service_auth.project_name == NULL)
        missing[n++] = "project_name";
    if (c->service_auth.user_domain_name == NULL)
        missing[n++] = "user_domain_name";
    if (c->service_auth.project_domain_name == NULL)
        missing[n++] = "project_domain_name";
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
        strncat(list, missing[i], sizeof(list) - strlen(list) - 1);
    }
    fail(x, 0, "[members] accept = true needs the gateway's own Keystone credentials: "
         "set [service_auth] %s", list);
}

/* Whole-file checks after the last line. */
static void check_whole(conf_ctx *x)
{
    mb_conf *c = x->c;

    for (size_t i = 0; i < NKEYS; i++) {
        const conf_key *k = &keys[i];
        if (k->required && x->seen[i] == 0) {
            fail(x, 0, "[%s] %s is required", k->section, k->name);
            return;
        }
        /* a default string that is NULL here failed to allocate */
        if (k->def != NULL && x->seen[i] == 0 && is_string_type(k->type)
            && *(char **)field(c, k) == NULL) {
            fail(x, 0, "out of memory");
            return;
        }
    }
    if ((c->server.listen != NULL && c->server.listen_host == NULL)
        || (c->admin.listen != NULL && c->admin.listen_host == NULL))
        fail(x, 0, "out of memory");
    else if (c->admin.listen != NULL && c->admin.listen_port == c->server.listen_port
             && strcmp(c->admin.listen_host, c->server.listen_host) == 0)
        fail(x, 0, "[admin] listen must differ from [server] listen");
    else if ((c->upstream.client_cert_file == NULL) != (c->upstream.client_key_file == NULL))
        fail(x, 0, "[upstream] client_cert_file and client_key_file must be set together");
    else if ((c->server.tls_cert_file == NULL) != (c->server.tls_key_file == NULL))
        fail(x, 0, "[server] tls_cert_file and tls_key_file must be set together");
    else
        check_service_auth(x);
}

int conf_load(mb_conf *c, const char *path, char *err, size_t errlen)
{
    conf_ctx x = { .c = c, .path = path, .err = err, .errlen = errlen };
    int rc;

    if (errlen > 0)
        err[0] = '\0';
    if (read_file(&x) != 0)
        goto out;
    rc = ini_parse_stream(next_line, &x, on_key, &x);
    /* inih's own syntax errors (no '=', no ']') come back as a line number;
     * inih counts the lines it is handed, as x.lineno does. */
    if (rc > 0 && (x.err_line == 0 || rc < x.err_line)) {
        x.err_line = 0;
        fail(&x, rc, "syntax error: expected [section] or key = value");
    } else if (rc < 0 && x.err_line == 0) {
        fail(&x, 0, "cannot parse (inih error %d)", rc);
    }
    if (x.err_line == 0)
        check_whole(&x);
out:
    if (x.text)
        explicit_bzero(x.text, x.len);   /* it may hold the service password */
    free(x.text);
    return x.err_line != 0 ? -1 : 0;
}
