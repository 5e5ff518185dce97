/* aggregate: the outcome of each member operation -> one v1 status and the
 * results body (SPEC section 2). Pure: no I/O. */
#ifndef MB_AGGREGATE_H
#define MB_AGGREGATE_H

#include <stddef.h>

/* ACT_ACCEPT: PUT .../members/{m} {"status": "accepted"} with the gateway's
 * own token ([members] accept), after an add or for a member a replace
 * keeps. */
typedef enum { ACT_ADD, ACT_DELETE, ACT_ACCEPT } mb_action;

/* How an upstream call ended, as far as aggregation cares. */
typedef enum {
    XFER_NONE = 0,       /* not attempted (yet) */
    XFER_HTTP,           /* an HTTP status was received: see http_status */
    XFER_UNREACHABLE,    /* connection refused/reset/closed, DNS: 502 */
    XFER_TLS,            /* certificate did not verify, handshake failed: 502 */
    XFER_BAD_RESPONSE,   /* garbage, truncated, oversized: 502 */
    XFER_TIMEOUT         /* no response within request_timeout: 504 */
} mb_xfer;

/* One per member operation, so kept small (24 bytes): a 100,000-member
 * request holds 100,000 of them. */
typedef struct {
    const char   *member_id;   /* borrowed */
    char         *message;     /* owned, may be NULL: why it failed */
    short         http_status; /* when xfer == XFER_HTTP, else 0 */
    unsigned char action;      /* mb_action */
    unsigned char xfer;        /* mb_xfer */
    unsigned char done;        /* the member is (add) / is not (delete) a member now */
    unsigned char skipped;     /* never attempted because an earlier step for the
                                  same member failed (an accept after a failed
                                  add): left out of the status and the results */
} mb_outcome;

/* Whether an upstream reply to this action counts as done by itself:
 * add: 200, 201, 409; delete (inside a replace): 204, 404; accept: 2xx. An
 * add answered 413 needs the follow-up GET (the caller handles it). */
int aggregate_http_done(mb_action action, int http_status);

/* Status of an outcome that is not done: 4xx as is; 5xx, unreachable, TLS,
 * bad response -> 502; timeout -> 504; anything else -> 502. */
int aggregate_failure_status(const mb_outcome *o);

/* 204 when all n are done or skipped (n may be 0), else the failure status
 * of the first outcome (in order) that is not done. */
int aggregate_status(const mb_outcome *o, size_t n);

/* The JSON error+results body for a non-204 aggregate (malloc'd, *len set):
 * {"error":{"code","title","message":"K of N member operations failed"},
 *  "results":[{"member_id","action":"add"|"delete"|"accept","status","done","message"?}]}
 * (skipped outcomes are left out, and not counted)
 * "status" is the HTTP status, or for transport failures the gateway's
 * status for it (502/504) with the message naming the failure.
 * Returns NULL when out of memory. */
char *aggregate_body(const mb_outcome *o, size_t n, size_t *len);

#endif
