/* settings: see settings.h. */
#include "settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <openssl/ssl.h>

#include "tls_server.h"

mb_settings *settings_load(const char *path, char *err, size_t errlen)
{
    mb_settings *s = calloc(1, sizeof(*s));
    char why[512];

    if (s == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    conf_defaults(&s->conf);
    atomic_init(&s->refs, 1);
    if (conf_load(&s->conf, path, err, errlen) != 0)
        goto fail;
    if (s->conf.server.tls_cert_file) {
        s->tls = tls_server_ctx_new(s->conf.server.tls_cert_file, s->conf.server.tls_key_file,
                                    why, sizeof(why));
        if (s->tls == NULL) {
            snprintf(err, errlen, "%s: [server] %s", path, why);
            goto fail;
        }
    }
    return s;
fail:
    conf_free(&s->conf);
    free(s);
    return NULL;
}

mb_settings *settings_ref(mb_settings *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void settings_unref(mb_settings *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (s->tls)
        SSL_CTX_free(s->tls);
    conf_free(&s->conf);
    free(s);
}

void settings_release(void *s)
{
    settings_unref(s);
}
