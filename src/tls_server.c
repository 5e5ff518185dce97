/* tls_server: the HTTPS listener's SSL_CTX from PEM files (see tls_server.h).
 * Every check that can fail names the setting and the file, so that a bad
 * configuration is one clear line at start-up. */
#include "tls_server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define ALPN_HTTP11      "http/1.1"
#define SESSION_ID_CTX   "memberbridge"

/* ---- errors ---------------------------------------------------------------- */

/* OpenSSL's reason for the oldest error queued, or NULL. */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_error();
    return e ? ERR_reason_error_string(e) : NULL;
}

/* " (<OpenSSL's reason>)" when it says more than "no start line" (which
 * only repeats that no PEM block of the wanted kind was found), else "". */
static void reason_suffix(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;

    if (why == NULL || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
        buf[0] = '\0';
    else
        snprintf(buf, cap, " (%s)", why);
}

/* Why PEM_read_PrivateKey failed, in words (empties the error queue:
 * OpenSSL's decoders only say "unsupported" for anything not a key). */
static const char *key_failure(void)
{
    unsigned long e;
    int encrypted = 0;

    while ((e = ERR_get_error()) != 0)
        if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_BAD_PASSWORD_READ)
            encrypted = 1;
    return encrypted ? "the private key is encrypted (not supported)" : "not a PEM private key";
}

/* ---- files ----------------------------------------------------------------- */

/* Opens path for reading and makes sure a byte can be read from it (a
 * directory opens, but does not read). NULL with err set on failure. */
static FILE *open_readable(const char *setting, const char *path, char *err, size_t errlen)
{
    FILE *fp;

    if (path == NULL || path[0] == '\0') {
        snprintf(err, errlen, "%s: not set", setting);
        return NULL;
    }
    fp = fopen(path, "r");
    if (fp != NULL) {
        int c = getc(fp);
        if (c != EOF || !ferror(fp)) {
            rewind(fp);
            return fp;
        }
        int saved = errno;
        fclose(fp);
        errno = saved;
    }
    snprintf(err, errlen, "%s %s: cannot read: %s", setting, path, strerror(errno));
    return NULL;
}

/* Encrypted keys are not supported: say so instead of prompting on a tty. */
static int no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)arg;
    return -1;
}

/* ---- certificate ------------------------------------------------------------ */

static void format_asn1_time(const ASN1_TIME *t, char *buf, size_t cap)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1 || strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, cap, "?");
}

/* The leaf must be valid now. */
static int check_validity(const X509 *leaf, const char *cert_file, char *err, size_t errlen)
{
    char when[32];
    int after = X509_cmp_current_time(X509_get0_notAfter(leaf));
    int before = X509_cmp_current_time(X509_get0_notBefore(leaf));

    if (after == 0 || before == 0) {
        snprintf(err, errlen, "tls_cert_file %s: certificate validity dates cannot be read", cert_file);
        return -1;
    }
    if (after < 0) {
        format_asn1_time(X509_get0_notAfter(leaf), when, sizeof(when));
        snprintf(err, errlen, "tls_cert_file %s: certificate has expired (notAfter %s)", cert_file, when);
        return -1;
    }
    if (before > 0) {
        format_asn1_time(X509_get0_notBefore(leaf), when, sizeof(when));
        snprintf(err, errlen, "tls_cert_file %s: certificate is not yet valid (notBefore %s)",
                 cert_file, when);
        return -1;
    }
    return 0;
}

/* The chain, leaf first, then the leaf's validity. */
static int load_chain(SSL_CTX *ctx, const char *cert_file, char *err, size_t errlen)
{
    char why[160];
    FILE *fp = open_readable("tls_cert_file", cert_file, err, errlen);

    if (fp == NULL)
        return -1;
    fclose(fp);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        reason_suffix(why, sizeof(why));
        snprintf(err, errlen, "tls_cert_file %s: not a PEM certificate%s", cert_file, why);
        return -1;
    }
    return check_validity(SSL_CTX_get0_certificate(ctx), cert_file, err, errlen);
}

/* ---- private key ------------------------------------------------------------ */

static int load_key(SSL_CTX *ctx, const char *key_file, const char *cert_file, char *err,
                    size_t errlen)
{
    FILE *fp = open_readable("tls_key_file", key_file, err, errlen);
    EVP_PKEY *key;
    int ok;

    if (fp == NULL)
        return -1;
    key = PEM_read_PrivateKey(fp, NULL, no_passphrase, NULL);
    fclose(fp);
    if (key == NULL) {
        snprintf(err, errlen, "tls_key_file %s: %s", key_file, key_failure());
        return -1;
    }
    ok = X509_check_private_key(SSL_CTX_get0_certificate(ctx), key) == 1 &&
         SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(key);
    if (!ok) {
        snprintf(err, errlen, "tls_key_file %s: does not match the certificate in tls_cert_file %s",
                 key_file, cert_file);
        return -1;
    }
    return 0;
}

/* ---- protocol ---------------------------------------------------------------- */

/* ALPN: "http/1.1" if the client lists it, else no ALPN at all (the client
 * then speaks HTTP/1.1 or gives up: better than agreeing to h2). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    const size_t want = sizeof(ALPN_HTTP11) - 1;
    unsigned int i = 0;

    (void)ssl;
    (void)arg;
    while (i < inlen) {
        unsigned int n = in[i];
        if (n > inlen - i - 1)
            break;                       /* malformed list */
        if (n == want && memcmp(in + i + 1, ALPN_HTTP11, want) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += n + 1;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static int configure(SSL_CTX *ctx)
{
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
        return -1;
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SESSION_ID_CTX,
                                       sizeof(SESSION_ID_CTX) - 1) != 1)
        return -1;
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    return 0;
}

SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || configure(ctx) != 0) {
        const char *why = ssl_reason();
        snprintf(err, errlen, "cannot set up TLS: %s", why ? why : "out of memory");
        goto fail;
    }
    if (load_chain(ctx, cert_file, err, errlen) != 0 ||
        load_key(ctx, key_file, cert_file, err, errlen) != 0)
        goto fail;
    ERR_clear_error();
    return ctx;

fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}
