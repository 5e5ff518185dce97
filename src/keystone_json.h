/* keystone_json: the Keystone v3 password authentication request and the
 * parts of its reply that svc_auth needs. Pure: no I/O. Keystone's error
 * bodies ({"error": {"message": ...}}) are read with v2_error_message. */
#ifndef MB_KEYSTONE_JSON_H
#define MB_KEYSTONE_JSON_H

#include <stddef.h>

/* The body of POST /v3/auth/tokens, password method, project scope:
 * {"auth":{"identity":{"methods":["password"],"password":{"user":{"name":U,
 *  "domain":{"name":UD},"password":P}}},"scope":{"project":{"name":PN,
 *  "domain":{"name":PD}}}}}
 * Every value is escaped by yajl_gen. It holds the password: malloc'd, the
 * caller wipes (explicit_bzero) and frees it; every intermediate buffer is
 * wiped before it is freed. Returns NULL when out of memory or when a value
 * is not valid UTF-8 (JSON cannot carry it; svc_auth_new checks first). */
char *keystone_auth_body(const char *username, const char *user_domain_name,
                         const char *password, const char *project_name,
                         const char *project_domain_name, size_t *len);

/* The reply to a successful POST /v3/auth/tokens (201):
 * {"token": {"expires_at": "...", "issued_at": "...", ...}, ...}
 * *lifetime_s = expires_at - issued_at in seconds. Only those two keys
 * directly inside the top-level "token" object count (a repeated key: the
 * last wins); everything else (the catalog can be large) is skipped, with
 * nesting bounded to 64 levels. Returns 0, or -1 when the body is not such
 * a document, either time is missing, not a string or not readable by
 * keystone_parse_time, or the lifetime is not positive. */
int   keystone_parse_token(const char *buf, size_t len, double *lifetime_s);

/* A UTC time as Keystone writes it, "YYYY-MM-DDTHH:MM:SS[.fraction]Z"
 * (1 to 9 fraction digits), also with "+00:00" or nothing in place of the
 * 'Z' (both UTC). Every field is range checked (the day against its month,
 * February 29 only in leap years; years 1970..9999; seconds 0..59).
 * *out = seconds since the epoch, fraction included. Returns 0, or -1 for anything else. */
int   keystone_parse_time(const char *s, size_t len, double *out);

/* Where the token request goes, from [service_auth] auth_url
 * ("scheme://authority[/path]", as mb_conf accepts it): the base URL for
 * mb_upstream is auth_url without trailing '/'s, and the request path is
 * "/auth/tokens" when the base's path ends in "/v3" (auth_url names the v3
 * API: "https://ks:5000/v3", "https://ks/identity/v3/"), otherwise
 * "/v3/auth/tokens" (auth_url names the service root: "https://ks:5000",
 * "https://ks/identity"). Returns the malloc'd base and sets *path to a
 * static string, or NULL when out of memory or auth_url has no "://". */
char *keystone_tokens_url(const char *auth_url, const char **path);

/* 1 when the X-Subject-Token value s can go into a header line as it is:
 * 1 to 8192 bytes of visible ASCII (no space, control character or
 * non-ASCII byte; Fernet and JWS tokens are base64url). */
int   keystone_token_usable(const char *s);

#endif
