/* Unit tests for mb_conf.c: every key, the defaults, and every kind of
 * error with its exact FILE:LINE prefix. Config files are written into a
 * fresh mkdtemp directory per test. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mb_conf.h"

#define URL_LINE "url = https://glance.example.com:9292\n"
#define BASE "[upstream]\n" URL_LINE

static char dir[64];
static char conf_path[128];
static char err[1024];
static mb_conf c;
static int c_live;

static void setup(void)
{
    strcpy(dir, "/tmp/mb_test_conf.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(conf_path, sizeof(conf_path), "%s/t.conf", dir);
    c_live = 0;
}

static void teardown(void)
{
    static const char *const names[] = { "t.conf", "ca.pem", "cert.pem", "key.pem",
                                         "ks-ca.pem", "noread.pem" };
    char p[256];

    if (c_live)
        conf_free(&c);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    snprintf(p, sizeof(p), "%s/adir", dir);
    rmdir(p);
    rmdir(dir);
}

/* Writes dir/name with the given bytes; returns its path (static buffer). */
static const char *write_file(const char *name, const char *text, size_t len)
{
    static char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
    return p;
}

static int load_text(const char *text)
{
    write_file("t.conf", text, strlen(text));
    ck_assert_int_eq(chmod(conf_path, 0600), 0);   /* it may hold a password */
    if (c_live)
        conf_free(&c);
    conf_defaults(&c);
    c_live = 1;
    return conf_load(&c, conf_path, err, sizeof(err));
}

static void load_ok(const char *text)
{
    int rc = load_text(text);
    ck_assert_msg(rc == 0, "conf_load failed: %s", err);
    ck_assert_str_eq(err, "");
}

/* The load fails with exactly "FILE:LINE: " (line > 0) or "FILE: " and a
 * message containing msg. */
static void load_err(const char *text, int line, const char *msg)
{
    char prefix[256];

    ck_assert_int_eq(load_text(text), -1);
    if (line > 0)
        snprintf(prefix, sizeof(prefix), "%s:%d: ", conf_path, line);
    else
        snprintf(prefix, sizeof(prefix), "%s: ", conf_path);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0,
                  "error \"%s\" does not start with \"%s\"", err, prefix);
    /* a line-less error must not look like one with a line */
    if (line == 0)
        ck_assert_msg(err[strlen(prefix)] < '0' || err[strlen(prefix)] > '9', "%s", err);
    ck_assert_msg(strstr(err + strlen(prefix), msg) != NULL,
                  "error \"%s\" lacks \"%s\"", err, msg);
}

START_TEST(defaults_and_free)
{
    mb_conf d;
    conf_defaults(&d);
    ck_assert_str_eq(d.server.listen, "127.0.0.1:9393");
    ck_assert_str_eq(d.server.listen_host, "127.0.0.1");
    ck_assert_int_eq(d.server.listen_port, 9393);
    ck_assert_ptr_null(d.upstream.url);
    conf_free(&d);
    ck_assert_ptr_null(d.server.listen);
    conf_free(&d);  /* twice is safe */
}
END_TEST

START_TEST(defaults_after_load)
{
    load_ok(BASE);
    ck_assert_str_eq(c.server.listen, "127.0.0.1:9393");
    ck_assert_str_eq(c.server.listen_host, "127.0.0.1");
    ck_assert_int_eq(c.server.listen_port, 9393);
    ck_assert_int_eq(c.server.max_body_bytes, 1048576);
    ck_assert_int_eq(c.server.client_timeout, 30);
    ck_assert_ptr_null(c.server.tls_cert_file);
    ck_assert_ptr_null(c.server.tls_key_file);
    ck_assert_int_eq(c.server.workers, 0);
    ck_assert_str_eq(c.upstream.url, "https://glance.example.com:9292");
    ck_assert_ptr_null(c.upstream.ca_file);
    ck_assert_ptr_null(c.upstream.client_cert_file);
    ck_assert_ptr_null(c.upstream.client_key_file);
    ck_assert_int_eq(c.upstream.insecure, 0);
    ck_assert_int_eq(c.upstream.connect_timeout, 5);
    ck_assert_int_eq(c.upstream.request_timeout, 30);
    ck_assert_int_eq(c.upstream.retries, 2);
    ck_assert_int_eq(c.upstream.max_connections, 64);
    ck_assert_int_eq(c.members.concurrency, 16);
    ck_assert_int_eq(c.members.max_per_request, 10000);
    ck_assert_int_eq(c.members.can_share, CAN_SHARE_IGNORE);
    ck_assert_int_eq(c.members.accept, 0);
    ck_assert_int_eq(c.members.share_private_images, 0);
    ck_assert_int_eq(c.log.level, LOG_INFO);
    ck_assert_str_eq(c.log.access_log, "-");
    ck_assert_ptr_null(c.admin.listen);
    ck_assert_ptr_null(c.service_auth.auth_url);
    ck_assert_ptr_null(c.service_auth.username);
    ck_assert_ptr_null(c.service_auth.password);
    ck_assert_str_eq(c.service_auth.user_domain_name, "Default");
    ck_assert_ptr_null(c.service_auth.project_name);
    ck_assert_str_eq(c.service_auth.project_domain_name, "Default");
    ck_assert_ptr_null(c.service_auth.ca_file);
}
END_TEST

START_TEST(every_key_set_and_read_back)
{
    char ca[256], cert[256], key[256], ksca[256], text[4096];
    snprintf(ca, sizeof(ca), "%s", write_file("ca.pem", "ca\n", 3));
    snprintf(cert, sizeof(cert), "%s", write_file("cert.pem", "cert\n", 5));
    snprintf(key, sizeof(key), "%s", write_file("key.pem", "key\n", 4));
    snprintf(ksca, sizeof(ksca), "%s", write_file("ks-ca.pem", "ksca\n", 5));
    snprintf(text, sizeof(text),
             "[server]\n"
             "listen = [::1]:8080\n"
             "max_body_bytes = 2048\n"
             "client_timeout = 7\n"
             "workers = 1\n"
             "tls_cert_file =\n"
             "tls_key_file =\n"
             "[upstream]\n"
             "url = http://10.0.0.5:9292/image/\n"
             "ca_file = %s\n"
             "client_cert_file = %s\n"
             "client_key_file = %s\n"
             "insecure = yes\n"
             "connect_timeout = 9\n"
             "request_timeout = 61\n"
             "retries = 0\n"
             "max_connections = 3\n"
             "[members]\n"
             "concurrency = 4\n"
             "max_per_request = 12\n"
             "can_share = reject\n"
             "accept = false\n"
             "share_private_images = off\n"
             "[log]\n"
             "level = warning\n"
             "access_log = /var/log/memberbridge/access.log\n"
             "[admin]\n"
             "listen =\n"
             "[service_auth]\n"
             "auth_url = https://keystone.example.com:5000/v3\n"
             "username = glance-gw\n"
             "password = s3cr;et\n"
             "user_domain_name = Users\n"
             "project_name = service\n"
             "project_domain_name = Projects\n"
             "ca_file = %s\n",
             ca, cert, key, ksca);
    load_ok(text);
    ck_assert_str_eq(c.server.listen, "[::1]:8080");
    ck_assert_str_eq(c.server.listen_host, "::1");
    ck_assert_int_eq(c.server.listen_port, 8080);
    ck_assert_int_eq(c.server.max_body_bytes, 2048);
    ck_assert_int_eq(c.server.client_timeout, 7);
    ck_assert_int_eq(c.server.workers, 1);
    ck_assert_ptr_null(c.server.tls_cert_file);
    ck_assert_ptr_null(c.server.tls_key_file);
    ck_assert_str_eq(c.upstream.url, "http://10.0.0.5:9292/image");
    ck_assert_str_eq(c.upstream.ca_file, ca);
    ck_assert_str_eq(c.upstream.client_cert_file, cert);
    ck_assert_str_eq(c.upstream.client_key_file, key);
    ck_assert_int_eq(c.upstream.insecure, 1);
    ck_assert_int_eq(c.upstream.connect_timeout, 9);
    ck_assert_int_eq(c.upstream.request_timeout, 61);
    ck_assert_int_eq(c.upstream.retries, 0);
    ck_assert_int_eq(c.upstream.max_connections, 3);
    ck_assert_int_eq(c.members.concurrency, 4);
    ck_assert_int_eq(c.members.max_per_request, 12);
    ck_assert_int_eq(c.members.can_share, CAN_SHARE_REJECT);
    ck_assert_int_eq(c.members.accept, 0);
    ck_assert_int_eq(c.members.share_private_images, 0);
    ck_assert_int_eq(c.log.level, LOG_WARNING);
    ck_assert_str_eq(c.log.access_log, "/var/log/memberbridge/access.log");
    ck_assert_ptr_null(c.admin.listen);
    ck_assert_str_eq(c.service_auth.auth_url, "https://keystone.example.com:5000/v3");
    ck_assert_str_eq(c.service_auth.username, "glance-gw");
    ck_assert_str_eq(c.service_auth.password, "s3cr;et");  /* ';' without a blank is no comment */
    ck_assert_str_eq(c.service_auth.user_domain_name, "Users");
    ck_assert_str_eq(c.service_auth.project_name, "service");
    ck_assert_str_eq(c.service_auth.project_domain_name, "Projects");
    ck_assert_str_eq(c.service_auth.ca_file, ksca);
}
END_TEST

START_TEST(value_forms)
{
    /* inline comments, indentation, CRLF, '#' comments, ':' separator,
     * upper-case words, a byte order mark */
    load_ok("\xEF\xBB\xBF; memberbridge\r\n"
            "# comment\r\n"
            "[server]   ; the listener\r\n"
            "  listen = 0.0.0.0:80   ; all IPv4\r\n"
            "\tclient_timeout = 3600\t; max\r\n"
            "\r\n"
            "[upstream]\r\n"
            URL_LINE
            "insecure: TRUE\r\n"
            "[log]\r\n"
            "level = DEBUG ;x\r\n"
            "access_log = off\r\n"
            "[members]\r\n"
            "can_share = Ignore\r\n"
            "[service_auth]\r\n"
            "user_domain_name =\r\n");
    ck_assert_str_eq(c.server.listen_host, "0.0.0.0");
    ck_assert_int_eq(c.server.listen_port, 80);
    ck_assert_int_eq(c.server.client_timeout, 3600);
    ck_assert_int_eq(c.upstream.insecure, 1);
    ck_assert_int_eq(c.log.level, LOG_DEBUG);
    ck_assert_str_eq(c.log.access_log, "off");
    ck_assert_int_eq(c.members.can_share, CAN_SHARE_IGNORE);
    ck_assert_ptr_null(c.service_auth.user_domain_name);  /* empty: unset */
}
END_TEST

START_TEST(booleans)
{
    static const struct { const char *v; int want; } cases[] = {
        { "true", 1 }, { "yes", 1 }, { "on", 1 }, { "1", 1 },
        { "false", 0 }, { "no", 0 }, { "off", 0 }, { "0", 0 },
    };
    char text[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), BASE "insecure = %s\n", cases[i].v);
        load_ok(text);
        ck_assert_msg(c.upstream.insecure == cases[i].want, "%s", cases[i].v);
    }
}
END_TEST

START_TEST(urls)
{
    load_ok("[upstream]\nurl = https://glance.example.com:9292/\n");
    ck_assert_str_eq(c.upstream.url, "https://glance.example.com:9292");
    load_ok("[upstream]\nurl = http://[::1]:9292/prefix//\n");
    ck_assert_str_eq(c.upstream.url, "http://[::1]:9292/prefix");
    load_ok("[upstream]\nurl = https://glance\n");
    ck_assert_str_eq(c.upstream.url, "https://glance");
}
END_TEST

START_TEST(sample_config_loads)
{
    const char *srcdir = getenv("srcdir");
    char p[1024];
    snprintf(p, sizeof(p), "%s/conf/memberbridge.conf", srcdir && *srcdir ? srcdir : ".");
    conf_defaults(&c);
    c_live = 1;
    int rc = conf_load(&c, p, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s: %s", p, err);
    ck_assert_str_eq(c.upstream.url, "https://glance.example.com:9292");
    ck_assert_str_eq(c.server.listen, "127.0.0.1:9393");
    ck_assert_int_eq(c.server.max_body_bytes, 1048576);
    ck_assert_int_eq(c.upstream.retries, 2);
    ck_assert_int_eq(c.members.can_share, CAN_SHARE_IGNORE);
    ck_assert_int_eq(c.log.level, LOG_INFO);
    ck_assert_str_eq(c.log.access_log, "-");
    ck_assert_ptr_null(c.upstream.ca_file);
    ck_assert_str_eq(c.service_auth.user_domain_name, "Default");
}
END_TEST

START_TEST(unknown_section)
{
    load_err(BASE "[bogus]\nx = 1\n", 3, "unknown section [bogus]");
    load_err(BASE "\n[Server]\n", 4, "unknown section [Server]");
    load_err(BASE "[server] x\n", 3, "unexpected text after the section header");
}
END_TEST

START_TEST(unknown_key)
{
    load_err(BASE "[server]\n\nlisten_port = 80\n", 5, "unknown key 'listen_port' in [server]");
    load_err(BASE "[upstream]\nURL = http://x\n", 4, "unknown key 'URL' in [upstream]");
    load_err("level = info\n" BASE, 1, "key 'level' is outside any [section]");
}
END_TEST

START_TEST(syntax_errors)
{
    load_err(BASE "[server]\nlisten\n", 4, "syntax error");
    load_err(BASE "[server\n", 3, "syntax error");
    /* the first error wins, whichever kind */
    load_err(BASE "junk\n[server]\nnope = 1\n", 3, "syntax error");
    load_err(BASE "[server]\nnope = 1\njunk\n", 4, "unknown key 'nope'");
}
END_TEST

START_TEST(bad_int)
{
    load_err(BASE "[server]\nmax_body_bytes = 12k\n", 4, "[server] max_body_bytes: '12k' is not a whole number");
    load_err(BASE "[server]\nclient_timeout = -1\n", 4, "'-1' is not a whole number");
    load_err(BASE "[server]\nclient_timeout = +5\n", 4, "'+5' is not a whole number");
    load_err(BASE "[server]\nclient_timeout = 1 0\n", 4, "'1 0' is not a whole number");
    load_err(BASE "[server]\nclient_timeout =\n", 4, "[server] client_timeout: a whole number is required");
    load_err(BASE "[server]\nclient_timeout = 0x10\n", 4, "not a whole number");
}
END_TEST

START_TEST(out_of_range)
{
    load_err(BASE "[server]\nclient_timeout = 0\n", 4, "[server] client_timeout: 0 is out of range (1..3600)");
    load_err(BASE "[server]\nclient_timeout = 3601\n", 4, "3601 is out of range (1..3600)");
    load_err(BASE "[server]\nmax_body_bytes = 1073741825\n", 4, "out of range (1..1073741824)");
    load_err(BASE "[server]\nmax_body_bytes = 99999999999999999999999\n", 4, "out of range");
    load_err(BASE "retries = 11\n", 3, "[upstream] retries: 11 is out of range (0..10)");
    load_err(BASE "connect_timeout = 301\n", 3, "out of range (1..300)");
    load_err(BASE "max_connections = 0\n", 3, "out of range (1..10000)");
    load_err(BASE "[members]\nconcurrency = 1001\n", 4, "out of range (1..1000)");
    load_err(BASE "[members]\nmax_per_request = 1000001\n", 4, "out of range (1..1000000)");
    load_err(BASE "[server]\nworkers = 257\n", 4, "out of range (0..256)");
}
END_TEST

START_TEST(bad_bool)
{
    load_err(BASE "insecure = maybe\n", 3, "[upstream] insecure: 'maybe' is not a boolean");
    load_err(BASE "insecure =\n", 3, "is not a boolean");
    load_err(BASE "insecure = 2\n", 3, "is not a boolean");
}
END_TEST

START_TEST(bad_enum)
{
    load_err(BASE "[members]\ncan_share = allow\n", 4, "[members] can_share: 'allow' is not one of ignore | reject");
    load_err(BASE "[log]\nlevel = verbose\n", 4, "'verbose' is not one of debug | info | warning | error");
    load_err(BASE "[log]\naccess_log =\n", 4, "[log] access_log:");
}
END_TEST

START_TEST(bad_listen)
{
    static const struct { const char *v; const char *msg; } cases[] = {
        { "127.0.0.1", "is not host:port" },
        { "", "is not host:port" },
        { "::1:9393", "an IPv6 address goes in brackets" },
        { "[::1]9393", "is not [IPv6]:port" },
        { "[::1:9393", "is not [IPv6]:port" },
        { "[127.0.0.1]:80", "the host is not an IPv6 address" },
        { "[]:80", "the host is not an IP address" },
        { ":9393", "the host is not an IP address" },
        { "localhost:9393", "the host is not an IPv4 address" },
        { "256.1.1.1:80", "the host is not an IPv4 address" },
        { "127.0.0.1:0", "the port is not a number in 1..65535" },
        { "127.0.0.1:65536", "the port is not a number in 1..65535" },
        { "127.0.0.1:", "the port is not a number in 1..65535" },
        { "127.0.0.1:http", "the port is not a number in 1..65535" },
        { "127.0.0.1:-1", "the port is not a number in 1..65535" },
        { "127.0.0.1:0009393", "the port is not a number in 1..65535" },
    };
    char text[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), BASE "[server]\nlisten = %s\n", cases[i].v);
        load_err(text, 4, cases[i].msg);
        ck_assert_msg(strstr(err, "[server] listen: ") != NULL, "%s", err);
    }
    load_ok(BASE "[server]\nlisten = 127.0.0.1:65535\n");
    ck_assert_int_eq(c.server.listen_port, 65535);
    load_ok(BASE "[server]\nlisten = [fe80::1:2]:1\n");
    ck_assert_str_eq(c.server.listen_host, "fe80::1:2");
    ck_assert_int_eq(c.server.listen_port, 1);
}
END_TEST

START_TEST(bad_url)
{
    static const struct { const char *v; const char *msg; } cases[] = {
        { "ftp://glance.example.com", "does not start with http:// or https://" },
        { "glance.example.com:9292", "does not start with http:// or https://" },
        { "//glance.example.com", "does not start with http:// or https://" },
        { "", "does not start with http:// or https://" },
        { "https://", "not a valid URL" },
        { "https://user:pw@glance.example.com", "must not hold a user name or password" },
        { "https://user@glance.example.com", "must not hold a user name or password" },
        { "https://glance.example.com/?a=1", "must not have a query" },
        { "https://glance.example.com/#frag", "must not have a fragment" },
        { "https://glance.example.com:99999", "not a valid URL" },
        { "https://glance example.com", "not a valid URL" },
    };
    char text[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "[upstream]\nurl = %s\n", cases[i].v);
        load_err(text, 2, cases[i].msg);
        ck_assert_msg(strstr(err, "[upstream] url: ") != NULL, "%s", err);
    }
    /* the password is not echoed */
    load_err("[upstream]\nurl = https://u:hunter2@h\n", 2, "user name or password");
    ck_assert_ptr_null(strstr(err, "hunter2"));
}
END_TEST

START_TEST(duplicate_key)
{
    load_err("[upstream]\n" URL_LINE "retries = 1\n\n; again\nretries = 1\n", 6,
             "duplicate key [upstream] retries (first set at line 3)");
    /* also across two headers of one section */
    load_err(BASE "[log]\nlevel = info\n[upstream]\nurl = http://other\n", 6,
             "duplicate key [upstream] url (first set at line 2)");
}
END_TEST

START_TEST(long_lines)
{
    char text[1024], line[300];

    memset(line, 'x', 250);
    line[0] = ';';
    line[250] = '\0';
    snprintf(text, sizeof(text), BASE "[server]\n%s\nlisten = 1.2.3.4:5\n", line);
    load_err(text, 4, "line is longer than 197 characters");

    /* a long value, where inih would cut the line and parse the rest */
    memset(line, '9', 250);
    line[250] = '\0';
    snprintf(text, sizeof(text), BASE "[service_auth]\nusername = %s\n", line);
    load_err(text, 4, "line is longer than 197 characters");

    /* the limit: 197 characters pass, 198 do not; CRLF does not count */
    memset(line, 'x', 197);
    line[0] = ';';
    line[197] = '\0';
    snprintf(text, sizeof(text), BASE "%s\r\n", line);
    load_ok(text);
    snprintf(text, sizeof(text), BASE "%sx\n", line);
    load_err(text, 3, "line is longer than 197 characters");
    /* the last line, without a newline */
    snprintf(text, sizeof(text), BASE "%sx", line);
    load_err(text, 3, "line is longer than 197 characters");

    /* "username = " and 186 bytes: a 197-character line fits */
    memset(line, 'u', 186);
    line[186] = '\0';
    snprintf(text, sizeof(text), BASE "[service_auth]\nusername = %s\n", line);
    load_ok(text);
    ck_assert_uint_eq(strlen(c.service_auth.username), 186);
}
END_TEST

START_TEST(nul_byte)
{
    static const char text[] = BASE "[log]\nlevel = info\0debug\n";
    write_file("t.conf", text, sizeof(text) - 1);
    conf_defaults(&c);
    c_live = 1;
    ck_assert_int_eq(conf_load(&c, conf_path, err, sizeof(err)), -1);
    char prefix[256];
    snprintf(prefix, sizeof(prefix), "%s:4: NUL byte in the line", conf_path);
    ck_assert_str_eq(err, prefix);
}
END_TEST

START_TEST(missing_url)
{
    load_err("[server]\nlisten = 127.0.0.1:9393\n", 0, "[upstream] url is required");
    load_err("", 0, "[upstream] url is required");
}
END_TEST

START_TEST(missing_file)
{
    snprintf(conf_path, sizeof(conf_path), "%s/none.conf", dir);
    conf_defaults(&c);
    c_live = 1;
    ck_assert_int_eq(conf_load(&c, conf_path, err, sizeof(err)), -1);
    char want[256];
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", conf_path);
    ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(unreadable_ca_file)
{
    char text[512], want[256];

    snprintf(text, sizeof(text), BASE "ca_file = %s/missing.pem\n", dir);
    load_err(text, 3, "[upstream] ca_file: cannot read ");
    snprintf(want, sizeof(want), "%s/missing.pem: No such file or directory", dir);
    ck_assert_ptr_nonnull(strstr(err, want));

    snprintf(want, sizeof(want), "%s/adir", dir);
    ck_assert_int_eq(mkdir(want, 0700), 0);
    snprintf(text, sizeof(text), BASE "ca_file = %s\n", want);
    load_err(text, 3, "[upstream] ca_file: ");
    ck_assert_ptr_nonnull(strstr(err, "is not a regular file"));

    snprintf(text, sizeof(text), "[service_auth]\nca_file = %s/missing.pem\n" BASE, dir);
    load_err(text, 2, "[service_auth] ca_file: cannot read ");
    snprintf(text, sizeof(text), BASE "client_cert_file = %s/missing.pem\n", dir);
    load_err(text, 3, "[upstream] client_cert_file: cannot read ");

    if (geteuid() != 0) {  /* root reads any file */
        const char *p = write_file("noread.pem", "x\n", 2);
        ck_assert_int_eq(chmod(p, 0), 0);
        snprintf(text, sizeof(text), BASE "ca_file = %s\n", p);
        load_err(text, 3, "Permission denied");
    }
}
END_TEST

START_TEST(cert_and_key_together)
{
    char text[512];
    const char *cert = write_file("cert.pem", "c\n", 2);
    snprintf(text, sizeof(text), BASE "client_cert_file = %s\n", cert);
    load_err(text, 0, "client_cert_file and client_key_file must be set together");
    const char *key = write_file("key.pem", "k\n", 2);
    snprintf(text, sizeof(text), BASE "client_key_file = %s\n", key);
    load_err(text, 0, "client_cert_file and client_key_file must be set together");
}
END_TEST

#define SERVICE_AUTH "[service_auth]\nauth_url = https://ks.example.com:5000/v3\n" \
    "username = gw\npassword = pw\nproject_name = service\n"

START_TEST(accept_needs_service_auth)
{
    load_err(BASE "[members]\naccept = true\n", 0,
             "[members] accept = true needs the gateway's own Keystone credentials: "
             "set [service_auth] auth_url, username, password, project_name");
    load_err(BASE "[members]\naccept = true\n[service_auth]\nauth_url = https://ks:5000/v3\n"
                  "username = gw\nuser_domain_name =\n", 0,
             "set [service_auth] password, project_name, user_domain_name");
    load_ok(BASE "[members]\naccept = true\n" SERVICE_AUTH);
    ck_assert_int_eq(c.members.accept, 1);
    ck_assert_str_eq(c.service_auth.user_domain_name, "Default");
    ck_assert_str_eq(c.service_auth.project_domain_name, "Default");
    /* share_private_images needs no service credentials */
    load_ok(BASE "[members]\nshare_private_images = yes\n");
    ck_assert_int_eq(c.members.share_private_images, 1);
    ck_assert_int_eq(c.members.accept, 0);
    /* auth_url is checked like [upstream] url, and never echoed */
    load_err(BASE "[service_auth]\nauth_url = ftp://ks/v3\n", 4,
             "[service_auth] auth_url: the URL does not start with http:// or https://");
    load_err(BASE "[service_auth]\nauth_url = https://u:pw@ks/v3\n", 4,
             "must not hold a user name or password");
    load_ok(BASE "[service_auth]\nauth_url = https://ks:5000/v3/\n");
    ck_assert_str_eq(c.service_auth.auth_url, "https://ks:5000/v3");
}
END_TEST

START_TEST(world_readable_password_refused)
{
    const char *text = BASE "[members]\naccept = true\n" SERVICE_AUTH;
    write_file("t.conf", text, strlen(text));
    conf_defaults(&c);
    c_live = 1;
    ck_assert_int_eq(chmod(conf_path, 0644), 0);
    ck_assert_int_eq(conf_load(&c, conf_path, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "holds [service_auth] password but every user may read it (mode 0644)"),
                  "got: %s", err);
    ck_assert_ptr_null(strstr(err, "pw\n"));
    /* group-readable is the usual root:memberbridge 0640 */
    conf_free(&c);
    conf_defaults(&c);
    ck_assert_int_eq(chmod(conf_path, 0640), 0);
    ck_assert_int_eq(conf_load(&c, conf_path, err, sizeof(err)), 0);
    /* no password, no objection */
    const char *nopw = BASE "[members]\nshare_private_images = true\n";
    write_file("t.conf", nopw, strlen(nopw));
    conf_free(&c);
    conf_defaults(&c);
    ck_assert_int_eq(chmod(conf_path, 0644), 0);
    ck_assert_int_eq(conf_load(&c, conf_path, err, sizeof(err)), 0);
}
END_TEST

START_TEST(workers_tls_admin_keys)
{
    load_ok(BASE "[server]\nworkers = 2\n");
    ck_assert_int_eq(c.server.workers, 2);
    load_err(BASE "[server]\nworkers = 257\n", 4, "[server] workers");
    load_err(BASE "[server]\nworkers = -1\n", 4, "[server] workers");
    char cert[300], key[300], text[800];
    snprintf(cert, sizeof(cert), "%s", write_file("gw.pem", "c\n", 2));
    snprintf(key, sizeof(key), "%s", write_file("gw.key", "k\n", 2));
    snprintf(text, sizeof(text), BASE "[server]\ntls_cert_file = %s\ntls_key_file = %s\n", cert, key);
    load_ok(text);   /* (whether they hold a certificate and key: settings_load, tls_server.c) */
    ck_assert_str_eq(c.server.tls_cert_file, cert);
    ck_assert_str_eq(c.server.tls_key_file, key);
    snprintf(text, sizeof(text), BASE "[server]\ntls_cert_file = %s\n", cert);
    load_err(text, 0, "[server] tls_cert_file and tls_key_file must be set together");
    snprintf(text, sizeof(text), BASE "[server]\ntls_key_file = %s\n", key);
    load_err(text, 0, "[server] tls_cert_file and tls_key_file must be set together");
    load_err(BASE "[server]\ntls_cert_file = /nonexistent/gw.pem\n", 4, "No such file");
    load_ok(BASE "[admin]\nlisten = 127.0.0.1:9494\n");
    ck_assert_str_eq(c.admin.listen, "127.0.0.1:9494");
    ck_assert_str_eq(c.admin.listen_host, "127.0.0.1");
    ck_assert_int_eq(c.admin.listen_port, 9494);
    load_ok(BASE "[admin]\nlisten = [::1]:9495\n");
    ck_assert_str_eq(c.admin.listen_host, "::1");
    ck_assert_int_eq(c.admin.listen_port, 9495);
    load_err(BASE "[admin]\nlisten = 127.0.0.1\n", 4, "[admin] listen");
    load_err(BASE "[admin]\nlisten = 127.0.0.1:99999\n", 4, "[admin] listen");
    load_err(BASE "[server]\nlisten = 127.0.0.1:9393\n[admin]\nlisten = 127.0.0.1:9393\n", 0,
             "[admin] listen must differ from [server] listen");
    /* the defaults: one worker per core, plain HTTP, no admin listener */
    load_ok(BASE "[server]\nworkers = 0\ntls_cert_file =\ntls_key_file =\n[admin]\nlisten =\n");
    ck_assert_int_eq(c.server.workers, 0);
    ck_assert_ptr_null(c.server.tls_cert_file);
    ck_assert_ptr_null(c.admin.listen);
    ck_assert_ptr_null(c.admin.listen_host);
}
END_TEST

static Suite *conf_suite(void)
{
    Suite *s = suite_create("conf");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, defaults_and_free);
    tcase_add_test(tc, defaults_after_load);
    tcase_add_test(tc, every_key_set_and_read_back);
    tcase_add_test(tc, value_forms);
    tcase_add_test(tc, booleans);
    tcase_add_test(tc, urls);
    tcase_add_test(tc, sample_config_loads);
    tcase_add_test(tc, unknown_section);
    tcase_add_test(tc, unknown_key);
    tcase_add_test(tc, syntax_errors);
    tcase_add_test(tc, bad_int);
    tcase_add_test(tc, out_of_range);
    tcase_add_test(tc, bad_bool);
    tcase_add_test(tc, bad_enum);
    tcase_add_test(tc, bad_listen);
    tcase_add_test(tc, bad_url);
    tcase_add_test(tc, duplicate_key);
    tcase_add_test(tc, long_lines);
    tcase_add_test(tc, nul_byte);
    tcase_add_test(tc, missing_url);
    tcase_add_test(tc, missing_file);
    tcase_add_test(tc, unreadable_ca_file);
    tcase_add_test(tc, cert_and_key_together);
    tcase_add_test(tc, workers_tls_admin_keys);
    tcase_add_test(tc, accept_needs_service_auth);
    tcase_add_test(tc, world_readable_password_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(conf_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
