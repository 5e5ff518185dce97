/* mb_conf: the configuration (SPEC section 4), loaded from one INI file by
 * one table of keys: name, type, default, bounds. Errors name FILE:LINE.
 * (Not called config.h: /usr/include/evhtp holds a config.h.) */
#ifndef MB_CONF_H
#define MB_CONF_H

#include <stddef.h>

typedef enum { CAN_SHARE_IGNORE, CAN_SHARE_REJECT } mb_can_share_mode;
typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARNING, LOG_ERROR } mb_log_level;

typedef struct {
    struct {
        char  *listen;            /* as written, "127.0.0.1:9393" or "[::1]:9393" */
        char  *listen_host;       /* "127.0.0.1" / "::1" (no brackets) */
        int    listen_port;
        long   max_body_bytes;    /* default 1048576, 1 .. 1 GiB */
        int    client_timeout;    /* seconds, default 30, 1 .. 3600 */
        char  *tls_cert_file;     /* NULL when unset */
        char  *tls_key_file;
        int    workers;           /* default 0: one per core; 0 .. 256 */
    } server;
    struct {
        char  *url;               /* required, http:// or https://, no trailing '/' kept */
        char  *ca_file;           /* NULL: system store */
        char  *client_cert_file;
        char  *client_key_file;
        int    insecure;          /* default 0 */
        int    connect_timeout;   /* seconds, default 5, 1 .. 300 */
        int    request_timeout;   /* seconds, default 30, 1 .. 3600 */
        int    retries;           /* default 2, 0 .. 10 */
        int    max_connections;   /* default 64, 1 .. 10000 */
    } upstream;
    struct {
        int    concurrency;       /* default 16, 1 .. 1000 */
        long   max_per_request;   /* default 10000, 1 .. 1000000 */
        mb_can_share_mode can_share;  /* default ignore */
        int    accept;            /* default 0 */
        int    share_private_images; /* default 0 */
    } members;
    struct {
        mb_log_level level;       /* default info */
        char  *access_log;        /* "-" (stderr, default), a path, or "off" */
    } log;
    struct {
        char  *listen;            /* NULL: off; else as [server] listen */
        char  *listen_host;
        int    listen_port;
    } admin;
    struct {
        char  *auth_url, *username, *password, *user_domain_name,
              *project_name, *project_domain_name, *ca_file;
    } service_auth;
} mb_conf;

/* Sets every key to its default (strings NULL or their default copies). */
void conf_defaults(mb_conf *c);

/* Loads path over the defaults. Returns 0, or -1 with err holding
 * "FILE:LINE: message" (or "FILE: message" for whole-file problems:
 * unreadable file, missing required key, cross-key checks). Unknown sections
 * and keys, bad values, values of 200 bytes or more (inih cuts those) are
 * errors. */
int  conf_load(mb_conf *c, const char *path, char *err, size_t errlen);
void conf_free(mb_conf *c);

#endif
