/* tls_server: the listener's SSL_CTX (tls_server.h), and linger.c over TLS.
 *
 * Keys and certificates are made in C at test time (EC P-256, one RSA key)
 * into a mkdtemp directory that a checked fixture creates and removes for
 * every test. Handshakes run between a client SSL and a server SSL on the two
 * non-blocking ends of a socketpair, driven in turn by one loop. The linger
 * tests put a server OpenSSL bufferevent on one end of a TCP connection over
 * 127.0.0.1 (TCP, not a socketpair: closing a TCP socket with unread input
 * sends a reset, which is what a lingering close must avoid) and drive a
 * client SSL on the other end together with the event loop. */
#include <check.h>

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "linger.h"
#include "tls_server.h"

#define DAY (24L * 3600L)

/* ---- material: keys, certificates, files --------------------------------- */

static char dir[64];
static EVP_PKEY *key_a;       /* the good pair: key_a, cert_a (self-signed) */
static X509 *cert_a;
static char path_a_crt[128], path_a_key[128];

static void path_to(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

static EVP_PKEY *new_ec_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    ck_assert_ptr_nonnull(k);
    return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    ck_assert_ptr_nonnull(ext);
    ck_assert_int_eq(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* A certificate for key, valid from now+from to now+until (seconds), signed
 * by issuer/signer, or self-signed when issuer is NULL. */
static X509 *new_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *signer, long from,
                      long until, int is_ca)
{
    static long serial = 1;
    X509 *x = X509_new();
    ck_assert_ptr_nonnull(x);
    ck_assert_int_eq(X509_set_version(x, X509_VERSION_3), 1);
    ck_assert_int_eq(ASN1_INTEGER_set(X509_get_serialNumber(x), serial++), 1);
    ck_assert_ptr_nonnull(X509_gmtime_adj(X509_getm_notBefore(x), from));
    ck_assert_ptr_nonnull(X509_gmtime_adj(X509_getm_notAfter(x), until));
    ck_assert_int_eq(X509_set_pubkey(x, key), 1);
    X509_NAME *name = X509_get_subject_name(x);
    ck_assert_int_eq(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                (const unsigned char *)cn, -1, -1, 0), 1);
    ck_assert_int_eq(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name), 1);
    if (is_ca) {
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, issuer, NID_subject_alt_name, "DNS:localhost");
    }
    ck_assert_int_gt(X509_sign(x, signer ? signer : key, EVP_sha256()), 0);
    return x;
}

static FILE *create(const char *path)
{
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    return fp;
}

/* Writes the certificates, in order, then the key if not NULL. */
static void write_pem(const char *path, X509 *c1, X509 *c2, EVP_PKEY *key)
{
    FILE *fp = create(path);
    if (c1)
        ck_assert_int_eq(PEM_write_X509(fp, c1), 1);
    if (c2)
        ck_assert_int_eq(PEM_write_X509(fp, c2), 1);
    if (key)
        ck_assert_int_eq(PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL), 1);
    ck_assert_int_eq(fclose(fp), 0);
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = create(path);
    ck_assert_int_ge(fputs(text, fp), 0);
    ck_assert_int_eq(fclose(fp), 0);
}

static void setup(void)
{
    strcpy(dir, "/tmp/mb_test_tls_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    key_a = new_ec_key();
    cert_a = new_cert(key_a, "localhost", NULL, NULL, -DAY, 30 * DAY, 0);
    path_to(path_a_crt, sizeof(path_a_crt), "a.crt");
    path_to(path_a_key, sizeof(path_a_key), "a.key");
    write_pem(path_a_crt, cert_a, NULL, NULL);
    write_pem(path_a_key, NULL, NULL, key_a);
}

static void teardown(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];

    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (unlink(p) != 0)
            rmdir(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    X509_free(cert_a);
    EVP_PKEY_free(key_a);
}

/* ---- loading ----------------------------------------------------------------- */

static SSL_CTX *load_ok(const char *cert, const char *key)
{
    char err[512] = "untouched";
    SSL_CTX *ctx = tls_server_ctx_new(cert, key, err, sizeof(err));
    ck_assert_msg(ctx != NULL, "refused: %s", err);
    ck_assert_uint_eq(ERR_peek_error(), 0);
    return ctx;
}

/* Refused with exactly `want` (want_prefix: err starts with it). */
static void assert_refused(const char *cert, const char *key, const char *want, int want_prefix)
{
    char err[512] = "";
    SSL_CTX *ctx = tls_server_ctx_new(cert, key, err, sizeof(err));
    ck_assert_ptr_null(ctx);
    if (want_prefix)
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "'%s' does not start with '%s'", err, want);
    else
        ck_assert_str_eq(err, want);
    ck_assert_ptr_null(strchr(err, '\n'));
    ck_assert_uint_eq(ERR_peek_error(), 0);   /* the queue is left clean */
}

START_TEST(test_good_pair_loads)
{
    ERR_put_error(ERR_LIB_SSL, 0, SSL_R_BAD_LENGTH, __FILE__, __LINE__);   /* stale error */
    SSL_CTX *ctx = load_ok(path_a_crt, path_a_key);
    uint64_t opts = SSL_CTX_get_options(ctx);

    ck_assert_int_eq(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    ck_assert(opts & SSL_OP_NO_COMPRESSION);
    ck_assert(opts & SSL_OP_NO_RENEGOTIATION);
    ck_assert(opts & SSL_OP_CIPHER_SERVER_PREFERENCE);
    ck_assert(SSL_CTX_get_mode(ctx) & SSL_MODE_RELEASE_BUFFERS);
    ck_assert_int_eq(SSL_CTX_get_session_cache_mode(ctx) & SSL_SESS_CACHE_SERVER, SSL_SESS_CACHE_SERVER);
    ck_assert_int_eq(X509_cmp(SSL_CTX_get0_certificate(ctx), cert_a), 0);
    ck_assert_int_eq(EVP_PKEY_eq(SSL_CTX_get0_privatekey(ctx), key_a), 1);
    SSL_CTX_free(ctx);
}
END_TEST

START_TEST(test_rsa_pair_and_combined_file_load)
{
    char crt[128], key[128], both[128];
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    ck_assert_ptr_nonnull(rsa);
    X509 *x = new_cert(rsa, "localhost", NULL, NULL, -60, DAY, 0);
    path_to(crt, sizeof(crt), "rsa.crt");
    path_to(key, sizeof(key), "rsa.key");
    path_to(both, sizeof(both), "both.pem");
    write_pem(crt, x, NULL, NULL);
    write_pem(key, NULL, NULL, rsa);
    write_pem(both, cert_a, NULL, key_a);   /* certificate and key in one file */

    SSL_CTX_free(load_ok(crt, key));
    SSL_CTX_free(load_ok(both, both));
    X509_free(x);
    EVP_PKEY_free(rsa);
}
END_TEST

START_TEST(test_key_of_another_pair_refused)
{
    char key_b[128], key_rsa[128], want[512];
    EVP_PKEY *b = new_ec_key();
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    ck_assert_ptr_nonnull(rsa);
    path_to(key_b, sizeof(key_b), "b.key");
    path_to(key_rsa, sizeof(key_rsa), "rsa.key");
    write_pem(key_b, NULL, NULL, b);
    write_pem(key_rsa, NULL, NULL, rsa);

    snprintf(want, sizeof(want), "tls_key_file %s: does not match the certificate in tls_cert_file %s",
             key_b, path_a_crt);
    assert_refused(path_a_crt, key_b, want, 0);
    /* a key of another type (RSA for an EC certificate) as well */
    snprintf(want, sizeof(want), "tls_key_file %s: does not match the certificate in tls_cert_file %s",
             key_rsa, path_a_crt);
    assert_refused(path_a_crt, key_rsa, want, 0);
    EVP_PKEY_free(b);
    EVP_PKEY_free(rsa);
}
END_TEST

START_TEST(test_missing_files_refused)
{
    char missing[128], want[512];
    path_to(missing, sizeof(missing), "no-such.pem");

    snprintf(want, sizeof(want), "tls_cert_file %s: cannot read: No such file or directory", missing);
    assert_refused(missing, path_a_key, want, 0);
    snprintf(want, sizeof(want), "tls_key_file %s: cannot read: No such file or directory", missing);
    assert_refused(path_a_crt, missing, want, 0);
    /* a directory opens, but does not read */
    snprintf(want, sizeof(want), "tls_cert_file %s: cannot read: Is a directory", dir);
    assert_refused(dir, path_a_key, want, 0);
    assert_refused("", path_a_key, "tls_cert_file: not set", 0);
    assert_refused(path_a_crt, NULL, "tls_key_file: not set", 0);
}
END_TEST

START_TEST(test_unreadable_file_refused)
{
    char want[512];
    if (geteuid() == 0)
        return;                       /* root reads mode 000 files */
    ck_assert_int_eq(chmod(path_a_key, 0), 0);
    snprintf(want, sizeof(want), "tls_key_file %s: cannot read: Permission denied", path_a_key);
    assert_refused(path_a_crt, path_a_key, want, 0);
}
END_TEST

START_TEST(test_garbage_refused)
{
    char junk[128], empty[128], want[512];
    path_to(junk, sizeof(junk), "junk.pem");
    path_to(empty, sizeof(empty), "empty.pem");
    write_text(junk, "this is not PEM at all\n\x01\x02\xff\n");
    write_text(empty, "");

    snprintf(want, sizeof(want), "tls_cert_file %s: not a PEM certificate", junk);
    assert_refused(junk, path_a_key, want, 0);
    snprintf(want, sizeof(want), "tls_key_file %s: not a PEM private key", junk);
    assert_refused(path_a_crt, junk, want, 0);
    snprintf(want, sizeof(want), "tls_cert_file %s: not a PEM certificate", empty);
    assert_refused(empty, path_a_key, want, 0);
    snprintf(want, sizeof(want), "tls_key_file %s: not a PEM private key", empty);
    assert_refused(path_a_crt, empty, want, 0);

    /* a PEM block whose base64 is damaged */
    write_text(junk, "-----BEGIN CERTIFICATE-----\nMIIB!!!!\n-----END CERTIFICATE-----\n");
    snprintf(want, sizeof(want), "tls_cert_file %s: not a PEM certificate (bad base64 decode)", junk);
    assert_refused(junk, path_a_key, want, 0);
}
END_TEST

START_TEST(test_swapped_files_refused)
{
    char want[512];
    snprintf(want, sizeof(want), "tls_cert_file %s: not a PEM certificate", path_a_key);
    assert_refused(path_a_key, path_a_crt, want, 0);
    snprintf(want, sizeof(want), "tls_key_file %s: not a PEM private key", path_a_crt);
    assert_refused(path_a_crt, path_a_crt, want, 0);
}
END_TEST

/* An encrypted key is refused, without asking for a passphrase. */
START_TEST(test_encrypted_key_refused)
{
    char key[128], want[512];
    path_to(key, sizeof(key), "enc.key");
    FILE *fp = create(key);
    ck_assert_int_eq(PEM_write_PrivateKey(fp, key_a, EVP_aes_128_cbc(),
                                          (const unsigned char *)"secret", 6, NULL, NULL), 1);
    ck_assert_int_eq(fclose(fp), 0);
    snprintf(want, sizeof(want), "tls_key_file %s: the private key is encrypted (not supported)", key);
    assert_refused(path_a_crt, key, want, 0);
}
END_TEST

START_TEST(test_expired_refused)
{
    char crt[128], want[512];
    X509 *x = new_cert(key_a, "localhost", NULL, NULL, -30 * DAY, -DAY, 0);
    path_to(crt, sizeof(crt), "expired.crt");
    write_pem(crt, x, NULL, NULL);
    snprintf(want, sizeof(want), "tls_cert_file %s: certificate has expired (notAfter 20", crt);
    assert_refused(crt, path_a_key, want, 1);
    X509_free(x);
}
END_TEST

START_TEST(test_not_yet_valid_refused)
{
    char crt[128], want[512];
    X509 *x = new_cert(key_a, "localhost", NULL, NULL, DAY, 30 * DAY, 0);
    path_to(crt, sizeof(crt), "future.crt");
    write_pem(crt, x, NULL, NULL);
    snprintf(want, sizeof(want), "tls_cert_file %s: certificate is not yet valid (notBefore 20", crt);
    assert_refused(crt, path_a_key, want, 1);
    X509_free(x);
}
END_TEST

/* ---- chain and handshakes ---------------------------------------------------- */

typedef struct chain {
    EVP_PKEY *ca_key, *leaf_key;
    X509 *ca, *leaf;
    char crt[128], key[128];
} chain;

/* leaf + CA in crt, the leaf's key in key */
static void make_chain(chain *c)
{
    c->ca_key = new_ec_key();
    c->leaf_key = new_ec_key();
    c->ca = new_cert(c->ca_key, "mb test CA", NULL, NULL, -DAY, 30 * DAY, 1);
    c->leaf = new_cert(c->leaf_key, "localhost", c->ca, c->ca_key, -DAY, 30 * DAY, 0);
    path_to(c->crt, sizeof(c->crt), "chain.crt");
    path_to(c->key, sizeof(c->key), "leaf.key");
    write_pem(c->crt, c->leaf, c->ca, NULL);
    write_pem(c->key, NULL, NULL, c->leaf_key);
}

static void chain_free(chain *c)
{
    X509_free(c->ca);
    X509_free(c->leaf);
    EVP_PKEY_free(c->ca_key);
    EVP_PKEY_free(c->leaf_key);
}

START_TEST(test_chain_loads)
{
    chain c;
    STACK_OF(X509) *extra = NULL;
    make_chain(&c);
    SSL_CTX *ctx = load_ok(c.crt, c.key);
    ck_assert_int_eq(X509_cmp(SSL_CTX_get0_certificate(ctx), c.leaf), 0);
    ck_assert_int_eq(SSL_CTX_get0_chain_certs(ctx, &extra), 1);
    ck_assert_int_eq(sk_X509_num(extra), 1);
    ck_assert_int_eq(X509_cmp(sk_X509_value(extra, 0), c.ca), 0);
    SSL_CTX_free(ctx);

    /* the CA's key does not go with the leaf */
    char ca_key[128], want[512];
    path_to(ca_key, sizeof(ca_key), "ca.key");
    write_pem(ca_key, NULL, NULL, c.ca_key);
    snprintf(want, sizeof(want), "tls_key_file %s: does not match the certificate in tls_cert_file %s",
             ca_key, c.crt);
    assert_refused(c.crt, ca_key, want, 0);
    chain_free(&c);
}
END_TEST

static void nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    ck_assert_int_ge(fl, 0);
    ck_assert_int_eq(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

enum { HS_RUNNING = 0, HS_DONE = 1, HS_FAILED = -1 };

/* One step of ssl's handshake; on failure *why (if not NULL) gets the
 * reason of OpenSSL's error (the next SSL call clears the queue). */
static int hs_step(SSL *ssl, int state, int *why)
{
    if (state != HS_RUNNING)
        return state;
    int r = SSL_do_handshake(ssl);
    if (r == 1)
        return HS_DONE;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return HS_RUNNING;
    if (why)
        *why = ERR_GET_REASON(ERR_peek_error());
    return HS_FAILED;
}

typedef struct conn {
    SSL *c, *s;
    int fd[2];                /* client's, server's */
    int c_state, s_state;
    int c_why, s_why;         /* the reason of a failure (hs_step) */
} conn;

/* Client SSL against server SSL over a socketpair until both are done or
 * one has failed and the other cannot go on. */
static void handshake(conn *k, SSL_CTX *sctx, SSL_CTX *cctx, const char *alpn, size_t alpn_len,
                      SSL_SESSION *resume)
{
    memset(k, 0, sizeof(*k));
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, k->fd), 0);
    nonblocking(k->fd[0]);
    nonblocking(k->fd[1]);
    k->c = SSL_new(cctx);
    k->s = SSL_new(sctx);
    ck_assert(k->c && k->s);
    ck_assert_int_eq(SSL_set_fd(k->c, k->fd[0]), 1);
    ck_assert_int_eq(SSL_set_fd(k->s, k->fd[1]), 1);
    SSL_set_connect_state(k->c);
    SSL_set_accept_state(k->s);
    if (alpn)
        ck_assert_int_eq(SSL_set_alpn_protos(k->c, (const unsigned char *)alpn, (unsigned)alpn_len), 0);
    if (resume)
        ck_assert_int_eq(SSL_set_session(k->c, resume), 1);
    for (int i = 0; i < 1000 && (k->c_state == HS_RUNNING || k->s_state == HS_RUNNING); i++) {
        k->c_state = hs_step(k->c, k->c_state, &k->c_why);
        k->s_state = hs_step(k->s, k->s_state, &k->s_why);
    }
}

static void conn_free(conn *k)
{
    if (k->c_state == HS_DONE)
        SSL_shutdown(k->c);   /* a session closed cleanly stays resumable */
    if (k->s_state == HS_DONE)
        SSL_shutdown(k->s);
    SSL_free(k->c);
    SSL_free(k->s);
    close(k->fd[0]);
    close(k->fd[1]);
    ERR_clear_error();
}

static SSL_CTX *client_ctx(int min_version, int max_version)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    ck_assert_ptr_nonnull(c);
    /* the system's openssl.cnf may raise the minimum: say it */
    ck_assert_int_eq(SSL_CTX_set_min_proto_version(c, min_version), 1);
    ck_assert_int_eq(SSL_CTX_set_max_proto_version(c, max_version), 1);
    return c;
}

START_TEST(test_tls11_client_refused)
{
    SSL_CTX *sctx = load_ok(path_a_crt, path_a_key);
    SSL_CTX *cctx = client_ctx(TLS1_VERSION, TLS1_1_VERSION);
    conn k;

    /* OpenSSL 3 would refuse TLS 1.1 in the client itself at level 1+ */
    SSL_CTX_set_security_level(cctx, 0);
    ck_assert_int_eq(SSL_CTX_set_cipher_list(cctx, "DEFAULT:@SECLEVEL=0"), 1);
    handshake(&k, sctx, cctx, NULL, 0, NULL);
    ck_assert_int_eq(k.s_state, HS_FAILED);      /* the server said no, to a ClientHello */
    ck_assert_int_eq(k.s_why, SSL_R_UNSUPPORTED_PROTOCOL);
    ck_assert_int_eq(k.c_state, HS_FAILED);      /* and told the client why */
    ck_assert_int_eq(k.c_why, SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);
    conn_free(&k);

    /* the same client may speak TLS 1.2: then it gets through */
    ck_assert_int_eq(SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION), 1);
    handshake(&k, sctx, cctx, NULL, 0, NULL);
    ck_assert_int_eq(k.c_state, HS_DONE);
    ck_assert_int_eq(k.s_state, HS_DONE);
    conn_free(&k);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
}
END_TEST

/* A TLS 1.2 (_i == 0) or a TLS 1.3 client succeeds, without compression and
 * without ALPN when it offers none. */
START_TEST(test_tls12_tls13_clients_succeed)
{
    int version = _i == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
    SSL_CTX *sctx = load_ok(path_a_crt, path_a_key);
    SSL_CTX *cctx = client_ctx(version, version);
    const unsigned char *proto = NULL;
    unsigned proto_len = 1;
    conn k;

    handshake(&k, sctx, cctx, NULL, 0, NULL);
    ck_assert_int_eq(k.c_state, HS_DONE);
    ck_assert_int_eq(k.s_state, HS_DONE);
    ck_assert_int_eq(SSL_version(k.c), version);
    ck_assert_int_eq(SSL_version(k.s), version);
    ck_assert_ptr_null(SSL_get_current_compression(k.s));
    SSL_get0_alpn_selected(k.c, &proto, &proto_len);
    ck_assert_uint_eq(proto_len, 0);
    X509 *peer = SSL_get1_peer_certificate(k.c);
    ck_assert_int_eq(X509_cmp(peer, cert_a), 0);
    X509_free(peer);

    /* data goes through both ways */
    char buf[16];
    ck_assert_int_eq(SSL_write(k.c, "ping", 4), 4);
    ck_assert_int_eq(SSL_read(k.s, buf, sizeof(buf)), 4);
    ck_assert_int_eq(memcmp(buf, "ping", 4), 0);
    ck_assert_int_eq(SSL_write(k.s, "pong", 4), 4);
    ck_assert_int_eq(SSL_read(k.c, buf, sizeof(buf)), 4);
    ck_assert_int_eq(memcmp(buf, "pong", 4), 0);
    conn_free(&k);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
}
END_TEST

static void assert_alpn(SSL_CTX *sctx, SSL_CTX *cctx, const char *offer, size_t offer_len,
                        const char *want)
{
    const unsigned char *proto = NULL;
    unsigned proto_len = 0;
    conn k;

    handshake(&k, sctx, cctx, offer, offer_len, NULL);
    ck_assert_int_eq(k.c_state, HS_DONE);
    ck_assert_int_eq(k.s_state, HS_DONE);
    SSL_get0_alpn_selected(k.c, &proto, &proto_len);
    if (want == NULL) {
        ck_assert_uint_eq(proto_len, 0);
    } else {
        ck_assert_uint_eq(proto_len, strlen(want));
        ck_assert_int_eq(memcmp(proto, want, proto_len), 0);
    }
    SSL_get0_alpn_selected(k.s, &proto, &proto_len);
    ck_assert_uint_eq(proto_len, want ? strlen(want) : 0);
    conn_free(&k);
}

#define WIRE(s) s, sizeof(s) - 1

START_TEST(test_alpn_http11_only)
{
    SSL_CTX *sctx = load_ok(path_a_crt, path_a_key);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);

    assert_alpn(sctx, cctx, WIRE("\x02h2\x08http/1.1"), "http/1.1");
    assert_alpn(sctx, cctx, WIRE("\x08http/1.1"), "http/1.1");
    assert_alpn(sctx, cctx, WIRE("\x08http/1.0\x08http/1.1\x02h2"), "http/1.1");
    assert_alpn(sctx, cctx, WIRE("\x02h2"), NULL);                  /* never h2 */
    assert_alpn(sctx, cctx, WIRE("\x08http/1.0"), NULL);
    assert_alpn(sctx, cctx, WIRE("\x06http/1\x09http/1.1x"), NULL); /* near misses */
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
}
END_TEST

/* The chain file's CA goes to the client, which can verify the leaf with
 * only the CA as trust anchor. */
START_TEST(test_chain_sent_and_verifies)
{
    chain c;
    make_chain(&c);
    SSL_CTX *sctx = load_ok(c.crt, c.key);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
    conn k;

    ck_assert_int_eq(X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), c.ca), 1);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
    handshake(&k, sctx, cctx, NULL, 0, NULL);
    ck_assert_int_eq(k.c_state, HS_DONE);
    ck_assert_int_eq(k.s_state, HS_DONE);
    ck_assert_int_eq(SSL_get_verify_result(k.c), X509_V_OK);
    STACK_OF(X509) *sent = SSL_get_peer_cert_chain(k.c);
    ck_assert_int_eq(sk_X509_num(sent), 2);
    ck_assert_int_eq(X509_cmp(sk_X509_value(sent, 0), c.leaf), 0);
    ck_assert_int_eq(X509_cmp(sk_X509_value(sent, 1), c.ca), 0);
    conn_free(&k);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    chain_free(&c);
}
END_TEST

/* TLS 1.2 without tickets: the server's session cache resumes a session. */
START_TEST(test_session_cache_resumes)
{
    SSL_CTX *sctx = load_ok(path_a_crt, path_a_key);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
    conn k;

    SSL_CTX_set_options(cctx, SSL_OP_NO_TICKET);
    handshake(&k, sctx, cctx, NULL, 0, NULL);
    ck_assert_int_eq(k.c_state, HS_DONE);
    ck_assert_int_eq(k.s_state, HS_DONE);
    ck_assert_int_eq(SSL_session_reused(k.c), 0);
    SSL_SESSION *sess = SSL_get1_session(k.c);
    ck_assert_ptr_nonnull(sess);
    conn_free(&k);

    handshake(&k, sctx, cctx, NULL, 0, sess);
    ck_assert_int_eq(k.c_state, HS_DONE);
    ck_assert_int_eq(k.s_state, HS_DONE);
    ck_assert_int_eq(SSL_session_reused(k.c), 1);
    ck_assert_int_eq(SSL_session_reused(k.s), 1);
    conn_free(&k);
    SSL_SESSION_free(sess);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
}
END_TEST

/* ---- linger over TLS ---------------------------------------------------------- */

#define REPLY_LEN    (1024 * 1024)   /* more than the socket buffers hold */
#define JUNK_CHUNK   16384
#define LINGER_SECS  30              /* longer than any test: no timeouts here */
#define LINGER_MAX   (8 * 1024 * 1024)
#define SPIN_SECONDS 20.0
#define EVHTP_BEV_FLAGS (BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)   /* evhtp_new's */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

/* A connected TCP pair over 127.0.0.1, both ends non-blocking:
 * sv[0] the server's, sv[1] the client's. */
static void tcp_pair(int sv[2])
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(l, 0);
    ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(l, 1), 0);
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    sv[1] = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(sv[1], 0);
    ck_assert_int_eq(connect(sv[1], (struct sockaddr *)&a, sizeof(a)), 0);
    sv[0] = accept(l, NULL, NULL);
    ck_assert_int_ge(sv[0], 0);
    close(l);
    nonblocking(sv[0]);
    nonblocking(sv[1]);
}

typedef struct tls_link {
    struct event_base  *base;
    SSL_CTX            *sctx, *cctx;
    struct bufferevent *bev;          /* the server's, until linger_close */
    SSL                *client;
    int                 sfd, cfd;
    int                 server_state;
} tls_link;

static void pump(tls_link *k)
{
    event_base_loop(k->base, EVLOOP_NONBLOCK);
}

static void on_server_event(struct bufferevent *bev, short what, void *arg)
{
    tls_link *k = arg;
    (void)bev;
    k->server_state = (what & BEV_EVENT_CONNECTED) ? HS_DONE : HS_FAILED;
}

/* The server end as libevhtp's HTTPS listener makes it, handshaken with a
 * client SSL speaking `version`. */
static void tls_link_open(tls_link *k, int version)
{
    int sv[2];
    int c_state = HS_RUNNING;

    memset(k, 0, sizeof(*k));
    k->base = event_base_new();
    ck_assert_ptr_nonnull(k->base);
    k->sctx = load_ok(path_a_crt, path_a_key);
    k->cctx = client_ctx(version, version);
    tcp_pair(sv);
    k->sfd = sv[0];
    k->cfd = sv[1];
    k->bev = bufferevent_openssl_socket_new(k->base, k->sfd, SSL_new(k->sctx),
                                            BUFFEREVENT_SSL_ACCEPTING, EVHTP_BEV_FLAGS);
    ck_assert_ptr_nonnull(k->bev);
    bufferevent_setcb(k->bev, NULL, NULL, on_server_event, k);
    bufferevent_enable(k->bev, EV_READ | EV_WRITE);
    k->client = SSL_new(k->cctx);
    ck_assert_ptr_nonnull(k->client);
    ck_assert_int_eq(SSL_set_fd(k->client, k->cfd), 1);
    SSL_set_connect_state(k->client);
    for (double end = now() + SPIN_SECONDS; now() < end;) {
        c_state = hs_step(k->client, c_state, NULL);
        pump(k);
        if (c_state != HS_RUNNING && k->server_state != HS_RUNNING)
            break;
    }
    ck_assert_int_eq(c_state, HS_DONE);
    ck_assert_int_eq(k->server_state, HS_DONE);
    ck_assert_int_eq(SSL_version(k->client), version);
}

static void tls_link_close(tls_link *k)
{
    linger_close_all();
    SSL_free(k->client);
    close(k->cfd);
    SSL_CTX_free(k->cctx);
    SSL_CTX_free(k->sctx);
    event_base_free(k->base);
    ERR_clear_error();
}

static char *make_reply(size_t len)
{
    char *r = malloc(len);
    ck_assert_ptr_nonnull(r);
    for (size_t i = 0; i < len; i++)
        r[i] = (char)('a' + i % 23);
    return r;
}

enum { END_NONE, END_NOTIFY, END_ERROR };

/* Sends up to junk_total bytes of junk (whole JUNK_CHUNKs) while reading:
 * what the client reads goes to got[0..*got_len). Until the server's
 * close_notify (END_NOTIFY), anything else (END_ERROR), or SPIN_SECONDS. */
static int client_exchange(tls_link *k, char *got, size_t cap, size_t *got_len, size_t junk_total,
                           size_t *junk_sent)
{
    static char junk[JUNK_CHUNK];
    char buf[16384];

    memset(junk, 'j', sizeof(junk));
    for (double end = now() + SPIN_SECONDS; now() < end;) {
        if (*junk_sent < junk_total) {
            int w = SSL_write(k->client, junk, JUNK_CHUNK);
            if (w > 0)
                *junk_sent += (size_t)w;
            else if (SSL_get_error(k->client, w) != SSL_ERROR_WANT_WRITE &&
                     SSL_get_error(k->client, w) != SSL_ERROR_WANT_READ)
                return END_ERROR;
        }
        if (got == NULL) {                      /* only sending */
            if (*junk_sent >= junk_total)
                return END_NONE;
            pump(k);
            continue;
        }
        int r = SSL_read(k->client, buf, sizeof(buf));
        if (r > 0) {
            if (*got_len + (size_t)r > cap)
                return END_ERROR;
            memcpy(got + *got_len, buf, (size_t)r);
            *got_len += (size_t)r;
            continue;
        }
        switch (SSL_get_error(k->client, r)) {
        case SSL_ERROR_ZERO_RETURN:
            return END_NOTIFY;
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
            pump(k);
            break;
        default:
            return END_ERROR;
        }
    }
    return END_NONE;
}

/* Runs the loop until the server's socket is closed; then the client must
 * see a clean end of stream, not a reset (the server read all it was sent). */
static void assert_server_closes_cleanly(tls_link *k)
{
    char c;
    ssize_t n = -1;

    for (double end = now() + SPIN_SECONDS; now() < end && fd_is_open(k->sfd);)
        pump(k);
    ck_assert_msg(!fd_is_open(k->sfd), "the server end is still open");
    for (double end = now() + SPIN_SECONDS; now() < end;) {
        n = recv(k->cfd, &c, 1, 0);
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            break;
    }
    ck_assert_msg(n == 0, "client read %zd (%s) instead of end of stream", n,
                  n < 0 ? strerror(errno) : "data");
}

/* The whole reply, then the server's close_notify; the TCP stream itself
 * stays open (no shutdown(2) under OpenSSL) until the client is done too. */
START_TEST(test_linger_tls_reply_then_close_notify)
{
    int version = _i == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
    char *reply = make_reply(REPLY_LEN), *got = malloc(REPLY_LEN);
    size_t got_len = 0, junk_sent = 0;
    tls_link k;
    char c;

    ck_assert_ptr_nonnull(got);
    tls_link_open(&k, version);
    linger_close(k.bev, reply, REPLY_LEN, LINGER_SECS, LINGER_MAX);
    memset(reply, 0, REPLY_LEN);          /* linger_close copied it */
    free(reply);
    reply = make_reply(REPLY_LEN);

    ck_assert_int_eq(client_exchange(&k, got, REPLY_LEN, &got_len, 0, &junk_sent), END_NOTIFY);
    ck_assert_uint_eq(got_len, REPLY_LEN);
    ck_assert_int_eq(memcmp(got, reply, REPLY_LEN), 0);
    ck_assert(SSL_get_shutdown(k.client) & SSL_RECEIVED_SHUTDOWN);

    /* the server lingers: its socket is open, not even half-closed */
    pump(&k);
    ck_assert(fd_is_open(k.sfd));
    ck_assert_int_eq((int)recv(k.cfd, &c, 1, MSG_PEEK), -1);
    ck_assert(errno == EAGAIN || errno == EWOULDBLOCK);

    /* the client's close_notify ends it */
    SSL_shutdown(k.client);
    assert_server_closes_cleanly(&k);
    free(reply);
    free(got);
    tls_link_close(&k);
}
END_TEST

/* The client goes on sending (the rest of a body the server did not want)
 * while it reads the reply and after the close_notify: the reply arrives
 * whole, the extra bytes are read and dropped, nothing is reset. */
START_TEST(test_linger_tls_client_keeps_sending)
{
    int version = _i == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
    char *reply = make_reply(REPLY_LEN), *got = malloc(REPLY_LEN);
    size_t got_len = 0, junk_sent = 0;
    tls_link k;

    ck_assert_ptr_nonnull(got);
    tls_link_open(&k, version);
    /* bytes already on their way when the server gives up on the request */
    ck_assert_int_eq(client_exchange(&k, NULL, 0, NULL, 4 * JUNK_CHUNK, &junk_sent), END_NONE);
    linger_close(k.bev, reply, REPLY_LEN, LINGER_SECS, LINGER_MAX);

    ck_assert_int_eq(client_exchange(&k, got, REPLY_LEN, &got_len, 40 * JUNK_CHUNK, &junk_sent),
                     END_NOTIFY);
    ck_assert_uint_eq(got_len, REPLY_LEN);
    ck_assert_int_eq(memcmp(got, reply, REPLY_LEN), 0);

    /* more after the close_notify: still read (and dropped) by the server */
    size_t more = junk_sent + 8 * JUNK_CHUNK;
    ck_assert_int_eq(client_exchange(&k, NULL, 0, NULL, more, &junk_sent), END_NONE);
    ck_assert_uint_ge(junk_sent, more);
    for (double end = now() + 0.2; now() < end;)
        pump(&k);
    ck_assert(fd_is_open(k.sfd));

    /* the client just closes its write side, without a close_notify */
    ck_assert_int_eq(shutdown(k.cfd, SHUT_WR), 0);
    assert_server_closes_cleanly(&k);
    free(reply);
    free(got);
    tls_link_close(&k);
}
END_TEST

/* Nothing to send: the close_notify goes at once. */
START_TEST(test_linger_tls_empty_reply)
{
    size_t got_len = 0, junk_sent = 0;
    char got[16];
    tls_link k;

    tls_link_open(&k, TLS1_3_VERSION);
    linger_close(k.bev, "", 0, LINGER_SECS, LINGER_MAX);
    ck_assert_int_eq(client_exchange(&k, got, sizeof(got), &got_len, 0, &junk_sent), END_NOTIFY);
    ck_assert_uint_eq(got_len, 0);
    SSL_shutdown(k.client);
    assert_server_closes_cleanly(&k);
    tls_link_close(&k);
}
END_TEST

/* Past max_bytes of input the server stops lingering and closes. */
START_TEST(test_linger_tls_byte_limit)
{
    size_t got_len = 0, junk_sent = 0;
    char got[64];
    tls_link k;

    tls_link_open(&k, TLS1_3_VERSION);
    linger_close(k.bev, "HTTP/1.1 413 x\r\n\r\n", 18, LINGER_SECS, 4 * JUNK_CHUNK);
    ck_assert_int_eq(client_exchange(&k, got, sizeof(got), &got_len, 0, &junk_sent), END_NOTIFY);
    ck_assert_uint_eq(got_len, 18);
    client_exchange(&k, NULL, 0, NULL, 64 * JUNK_CHUNK, &junk_sent);   /* may end in a reset */
    for (double end = now() + SPIN_SECONDS; now() < end && fd_is_open(k.sfd);)
        pump(&k);
    ck_assert(!fd_is_open(k.sfd));
    tls_link_close(&k);
}
END_TEST

/* A filter BIO in front of the server's socket BIO that, once armed, says
 * "retry" to the first small write (a close_notify record: 23 to 31 bytes;
 * the records of the 18-byte reply are longer), as a full socket would. */
static int stall_armed, stalled;

static int stall_write(BIO *b, const char *data, int len)
{
    BIO_clear_retry_flags(b);
    if (stall_armed && len < 32) {
        stall_armed = 0;
        stalled++;
        BIO_set_retry_write(b);
        return -1;
    }
    int n = BIO_write(BIO_next(b), data, len);
    BIO_copy_next_retry(b);
    return n;
}

static long stall_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return BIO_ctrl(BIO_next(b), cmd, num, ptr);
}

static int stall_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *stall_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_FILTER, "mb test stall");
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(BIO_meth_set_write(m, stall_write), 1);
    ck_assert_int_eq(BIO_meth_set_ctrl(m, stall_ctrl), 1);
    ck_assert_int_eq(BIO_meth_set_create(m, stall_create), 1);
    return m;
}

/* The socket has no room for the close_notify (SSL_shutdown: WANT_WRITE):
 * it goes once the socket is writable again. */
START_TEST(test_linger_tls_close_notify_retried)
{
    int version = _i == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
    size_t got_len = 0, junk_sent = 0;
    char got[64];
    tls_link k;
    BIO_METHOD *m = stall_method();

    tls_link_open(&k, version);
    SSL *ssl = bufferevent_openssl_get_ssl(k.bev);
    BIO *sock = SSL_get_wbio(ssl), *stall = BIO_new(m);
    ck_assert_ptr_nonnull(stall);
    ck_assert_int_eq(BIO_up_ref(sock), 1);      /* the filter's next; SSL still has it as rbio */
    SSL_set0_wbio(ssl, BIO_push(stall, sock));
    stall_armed = 1;
    stalled = 0;

    linger_close(k.bev, "HTTP/1.1 413 x\r\n\r\n", 18, LINGER_SECS, LINGER_MAX);
    ck_assert_int_eq(client_exchange(&k, got, sizeof(got), &got_len, 0, &junk_sent), END_NOTIFY);
    ck_assert_uint_eq(got_len, 18);
    ck_assert_int_eq(memcmp(got, "HTTP/1.1 413 x\r\n\r\n", 18), 0);
    ck_assert_int_eq(stalled, 1);
    SSL_shutdown(k.client);
    assert_server_closes_cleanly(&k);
    tls_link_close(&k);
    BIO_meth_free(m);
}
END_TEST

/* ---- linger over plain TCP (unchanged) ------------------------------------ */

START_TEST(test_linger_tcp_reply_then_half_close)
{
    char *reply = make_reply(REPLY_LEN), *got = malloc(REPLY_LEN + 1);
    size_t got_len = 0;
    ssize_t n = -1;
    int sv[2];
    struct event_base *base = event_base_new();
    static char junk[JUNK_CHUNK];

    ck_assert_ptr_nonnull(base);
    ck_assert_ptr_nonnull(got);
    tcp_pair(sv);
    struct bufferevent *bev = bufferevent_socket_new(base, sv[0], EVHTP_BEV_FLAGS);
    ck_assert_ptr_nonnull(bev);
    linger_close(bev, reply, REPLY_LEN, LINGER_SECS, LINGER_MAX);
    for (double end = now() + SPIN_SECONDS; now() < end;) {
        (void)send(sv[1], junk, sizeof(junk), MSG_NOSIGNAL);   /* keeps sending */
        n = recv(sv[1], got + got_len, REPLY_LEN + 1 - got_len, 0);
        if (n > 0)
            got_len += (size_t)n;
        else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            break;
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    ck_assert_int_eq((int)n, 0);                 /* the server's FIN, not a reset */
    ck_assert_uint_eq(got_len, REPLY_LEN);
    ck_assert_int_eq(memcmp(got, reply, REPLY_LEN), 0);
    event_base_loop(base, EVLOOP_NONBLOCK);
    ck_assert(fd_is_open(sv[0]));                /* half-closed, still reading */

    ck_assert_int_eq(shutdown(sv[1], SHUT_WR), 0);
    for (double end = now() + SPIN_SECONDS; now() < end && fd_is_open(sv[0]);)
        event_base_loop(base, EVLOOP_NONBLOCK);
    ck_assert(!fd_is_open(sv[0]));
    close(sv[1]);
    event_base_free(base);
    free(reply);
    free(got);
}
END_TEST

static void *close_all_thread(void *arg)
{
    (void)arg;
    linger_close_all();
    return NULL;
}

/* linger_close_all closes the calling thread's lingering connections only. */
START_TEST(test_linger_close_all_is_per_thread)
{
    int sv[2];
    pthread_t t;
    struct event_base *base = event_base_new();

    ck_assert_ptr_nonnull(base);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    nonblocking(sv[0]);
    struct bufferevent *bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    ck_assert_ptr_nonnull(bev);
    linger_close(bev, "", 0, LINGER_SECS, LINGER_MAX);

    ck_assert_int_eq(pthread_create(&t, NULL, close_all_thread, NULL), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    event_base_loop(base, EVLOOP_NONBLOCK);     /* libevent closes a freed bev's fd here */
    ck_assert(fd_is_open(sv[0]));
    linger_close_all();
    event_base_loop(base, EVLOOP_NONBLOCK);
    ck_assert(!fd_is_open(sv[0]));
    close(sv[1]);
    event_base_free(base);
}
END_TEST

static Suite *tls_server_suite(void)
{
    Suite *s = suite_create("tls_server");
    TCase *tc = tcase_create("load");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_good_pair_loads);
    tcase_add_test(tc, test_rsa_pair_and_combined_file_load);
    tcase_add_test(tc, test_key_of_another_pair_refused);
    tcase_add_test(tc, test_missing_files_refused);
    tcase_add_test(tc, test_unreadable_file_refused);
    tcase_add_test(tc, test_garbage_refused);
    tcase_add_test(tc, test_swapped_files_refused);
    tcase_add_test(tc, test_encrypted_key_refused);
    tcase_add_test(tc, test_expired_refused);
    tcase_add_test(tc, test_not_yet_valid_refused);
    tcase_add_test(tc, test_chain_loads);
    suite_add_tcase(s, tc);

    tc = tcase_create("handshake");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_tls11_client_refused);
    tcase_add_loop_test(tc, test_tls12_tls13_clients_succeed, 0, 2);
    tcase_add_test(tc, test_alpn_http11_only);
    tcase_add_test(tc, test_chain_sent_and_verifies);
    tcase_add_test(tc, test_session_cache_resumes);
    suite_add_tcase(s, tc);

    tc = tcase_create("linger");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_linger_tls_reply_then_close_notify, 0, 2);
    tcase_add_loop_test(tc, test_linger_tls_client_keeps_sending, 0, 2);
    tcase_add_test(tc, test_linger_tls_empty_reply);
    tcase_add_test(tc, test_linger_tls_byte_limit);
    tcase_add_loop_test(tc, test_linger_tls_close_notify_retried, 0, 2);
    tcase_add_test(tc, test_linger_tcp_reply_then_half_close);
    tcase_add_test(tc, test_linger_close_all_is_per_thread);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    SRunner *sr = srunner_create(tls_server_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
