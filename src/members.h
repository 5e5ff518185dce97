/* members: the v1 membership operations. Takes a parsed route (and body),
 * plans the v2 calls, runs them on the upstream with at most
 * [members] concurrency in flight, and produces the one v1 reply.
 * Knows nothing of the inbound HTTP server. */
#ifndef MB_MEMBERS_H
#define MB_MEMBERS_H

#include <stddef.h>
#include "route.h"
#include "v1_body.h"
#include "upstream.h"
#include "mb_conf.h"
#include "svc_auth.h"

typedef struct mb_exchange mb_exchange;

/* The v1 reply. body is malloc'd JSON (or NULL for none); the callee owns
 * nothing of it after the callback: the receiver frees body. */
typedef struct {
    int       status;
    char     *body;
    size_t    body_len;
    int       can_share_warning;   /* add the Warning header about can_share */
    unsigned  calls;               /* upstream calls made (attempts not counted) */
    unsigned  failed;              /* upstream calls that failed */
} mb_reply;

typedef void (*members_done_fn)(mb_reply *reply, void *arg);

typedef struct {
    mb_upstream       *up;
    const mb_conf     *conf;
    const char        *request_id;   /* for log lines */
    const char        *client;       /* for log lines */
    /* header lines for upstream calls (see fwd_headers_build), NULL-terminated;
     * borrowed: they must live until done runs or members_cancel returns */
    char *const       *headers;       /* without a body */
    char *const       *headers_json;  /* with Content-Type: application/json */
    char *const       *headers_patch; /* with the JSON-patch Content-Type; may be NULL
                                         unless [members] share_private_images */
    mb_svc_auth       *svc;           /* the gateway's own token; may be NULL unless
                                         [members] accept */
} mb_members_env;

/* Starts the operation route->op (OP_ADD, OP_REMOVE, OP_REPLACE, OP_LIST,
 * OP_SHARED_IMAGES). body is the finished, valid v1 body for OP_ADD and
 * OP_REPLACE (NULL otherwise); its member set is copied.
 * *xp is set to the exchange before any upstream call starts; the receiver
 * must set its copy to NULL inside done (the exchange is freed right after
 * done returns). done runs exactly once unless members_cancel is called
 * first; normally later from the event loop, but it may run before
 * members_start returns when no upstream call could even be started.
 * Returns 0, or -1 when the operation could not be set up (out of memory):
 * done will not run and *xp is NULL. */
int  members_start(const mb_members_env *env, const mb_route *route,
                   const v1_body *body, members_done_fn done, void *arg,
                   mb_exchange **xp);

/* Cancels the upstream calls still in flight and frees; done never runs. */
void members_cancel(mb_exchange *x);

#endif
