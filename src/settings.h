/* settings: one loaded configuration file and the HTTPS context made from
 * it, shared read-only by the worker threads. Reference-counted: a reload
 * makes a new one; the old one is freed when the last request that started
 * under it has finished, on whichever thread that is. */
#ifndef MB_SETTINGS_H
#define MB_SETTINGS_H

#include <stdatomic.h>
#include <stddef.h>
#include "mb_conf.h"

typedef struct ssl_ctx_st SSL_CTX;

typedef struct {
    mb_conf      conf;
    SSL_CTX     *tls;         /* the listener's context, NULL: plain HTTP */
    atomic_uint  refs;
} mb_settings;

/* Loads path (conf_load) and, when [server] tls_cert_file is set, makes the
 * TLS context (the certificate and key must load and match). Returns the
 * settings with one reference, or NULL with err holding "FILE[:LINE]: why". */
mb_settings *settings_load(const char *path, char *err, size_t errlen);
mb_settings *settings_ref(mb_settings *s);
void         settings_unref(mb_settings *s);
/* settings_unref for a void * callback. */
void         settings_release(void *s);

#endif
