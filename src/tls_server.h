/* tls_server: the HTTPS listener's OpenSSL context.
 *
 * One SSL_CTX, built at start-up from the PEM files named by tls_cert_file
 * and tls_key_file, shared by every connection of every event-loop thread
 * (OpenSSL locks what it shares: the session cache). */
#ifndef MB_TLS_SERVER_H
#define MB_TLS_SERVER_H

#include <stddef.h>
#include <openssl/ssl.h>

/* Builds the listener's SSL_CTX from PEM files:
 *  - TLS 1.2 at least (1.3 when the client can), server cipher preference,
 *    no compression, no TLS 1.2 renegotiation, SSL_MODE_RELEASE_BUFFERS;
 *  - the certificate chain from cert_file, leaf first, then the
 *    intermediates; the leaf must be valid now (an expired or not yet valid
 *    certificate is refused here, at start-up, not by every client);
 *  - the private key from key_file (unencrypted), which must match the leaf;
 *  - a server session cache and a session id context;
 *  - ALPN: "http/1.1" when the client offers it, no ALPN otherwise (never
 *    h2: the listener speaks HTTP/1.1 only).
 * Returns the context (SSL_CTX_free it), or NULL with err holding one line
 * that names the setting, the file and the reason, e.g.
 *   "tls_cert_file /x/y.pem: cannot read: No such file or directory"
 *   "tls_key_file /k.pem: not a PEM private key"
 *   "tls_key_file /k.pem: does not match the certificate in tls_cert_file /c.pem"
 *   "tls_cert_file /c.pem: certificate has expired (notAfter 2024-01-31T12:00:00Z)"
 * OpenSSL's (thread-local) error queue is cleared on entry and before
 * returning, whatever happened. */
SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen);

#endif
