/* members: the v1 membership operations on top of the upstream engine.
 *
 * One mb_exchange per v1 request owns every upstream call it makes. Each
 * member operation is a "job" with its own slot (call handle, stage); the
 * fanout runs at most [members] concurrency jobs at a time. When the last
 * job ends, finish() builds the v1 reply (aggregate.c, reply.c), hands it
 * to the caller and frees the exchange: that is the only place it is freed,
 * apart from members_cancel(), which cancels the calls first so no callback
 * can run afterwards.
 *
 * A member to add is one job with up to two outcomes: the add (POST with the
 * caller's headers) and, with [members] accept, the accept (PUT status
 * accepted with the gateway's own token from svc_auth; one new token and
 * one more try after a 401). With [members] share_private_images, the first
 * add refused 403 makes the exchange look at the image once: a private one
 * is made shared with the caller's token, and the adds that were refused
 * meanwhile are sent again (once each). */
#include "members.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/http.h>

#include "aggregate.h"
#include "fanout.h"
#include "fwd_headers.h"
#include "log.h"
#include "metrics.h"
#include "plan.h"
#include "reply.h"
#include "strset.h"
#include "v2_parse.h"

#define ERROR_MESSAGE_MAX   300
#define SHARED_PAGE_LIMIT   200     /* images asked for per page */
#define SHARED_MAX_PAGES    1000    /* bound on pagination */
#define NO_ACCEPT           UINT32_MAX
#define ACCEPT_BODY         "{\"status\": \"accepted\"}"
#define PATCH_TYPE          "application/openstack-images-v2.1-json-patch"
#define SHARE_PATCH_BODY    "[{\"op\": \"replace\", \"path\": \"/visibility\", \"value\": \"shared\"}]"

typedef enum {
    STAGE_IDLE = 0,
    STAGE_ADD,          /* POST .../members */
    STAGE_ADD_CHECK,    /* GET .../members/{m} after a 413, or (accept) after a 409 */
    STAGE_DELETE,       /* DELETE .../members/{m} */
    STAGE_SHARE_WAIT,   /* add refused 403: waiting for the image to be made shared */
    STAGE_TOKEN_WAIT,   /* waiting for the gateway's service token */
    STAGE_ACCEPT,       /* PUT .../members/{m} {"status": "accepted"} */
    STAGE_SHARED_CHECK  /* GET /v2/images/{i}/members/{member} */
} job_stage;

/* share_private_images: what the exchange knows about its image. */
typedef enum {
    SHARE_UNKNOWN = 0,  /* not looked at */
    SHARE_RUNNING,      /* GET image / PATCH visibility in flight */
    SHARE_SHARED,       /* shared now (made so here, or meanwhile): send refused adds again */
    SHARE_NOT_PRIVATE,  /* public, community, or not visible: the 403s stand */
    SHARE_FAILED        /* the look or the change failed: x->share_fail says how */
} share_state;

/* One per member operation (48 bytes: a 100,000-member request holds
 * 100,000; max_per_request keeps the indexes far below 2^32). */
typedef struct {
    struct mb_exchange *x;
    mb_call            *call;      /* in flight, or NULL */
    mb_svc_wait        *wait;      /* waiting for a service token, or NULL */
    char               *token;     /* the service token its accept call used */
    uint32_t            idx;       /* its (first) outcome */
    uint32_t            acc;       /* its accept outcome, or NO_ACCEPT */
    unsigned char       stage;     /* job_stage */
    unsigned            reposted : 1;     /* the add was sent again after sharing */
    unsigned            auth_retried : 1; /* the accept got a new token after a 401 */
} job;

struct mb_exchange {
    mb_members_env   env;
    mb_op_kind       op;
    char            *image_enc;    /* percent-encoded image id */
    char            *member_enc;   /* percent-encoded path member id */
    const char      *image_id;     /* route image id (copy below), for log lines */
    char             image_buf[MB_ID_MAX + 1];
    const char      *member_id;    /* route member id (copy below) */
    char             member_buf[MB_ID_MAX + 1];

    mb_strset       *members;      /* add: to add; replace: desired */
    mb_strset       *current;      /* replace: current members; shared: image ids */
    mb_strset       *to_add, *to_delete;
    mb_strset       *pending;      /* replace with accept: current members still pending */

    mb_outcome      *outcomes;     /* add/replace: one per member operation */
    size_t           noutcomes;
    unsigned char   *present;      /* shared images: member row exists */
    job             *jobs;
    size_t           njobs;
    mb_fanout        fan;

    mb_call         *single;       /* the one call of a single-step stage */
    mb_call         *share_call;   /* share_private_images: GET image / PATCH */
    share_state      share;
    mb_outcome       share_fail;   /* SHARE_FAILED: how */
    int              replace_waits_share; /* a replace's list waits for the share look */
    int              relisted;     /* a replace listed again after the image was shared */
    int              auth_failure_logged;
    size_t           pages;
    mb_outcome       fail;         /* shared images: first failed check */
    int              failed_any;

    int              can_share_warning;
    unsigned         calls, failed;

    members_done_fn  done;
    void            *arg;
};

/* ---- helpers ---------------------------------------------------------- */

/* Percent-encodes every byte but the unreserved ones (RFC 3986: letters,
 * digits, "-._~"), by libevent; an id made of those only (UUIDs, project
 * ids: nearly all) is copied as it is. */
static char *escape_id(const char *id)
{
    size_t n = strlen(id);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '~'))
            return evhttp_uriencode(id, (ev_ssize_t)n, 0);
    }
    return strdup(id);
}

static void exchange_free(mb_exchange *x)
{
    if (x == NULL)
        return;
    if (x->single)
        upstream_cancel(x->single);
    if (x->share_call)
        upstream_cancel(x->share_call);
    for (size_t i = 0; x->jobs != NULL && i < x->njobs; i++) {
        job *j = &x->jobs[i];
        if (j->call)
            upstream_cancel(j->call);
        if (j->wait)
            svc_auth_cancel(j->wait);
        if (j->token) {
            explicit_bzero(j->token, strlen(j->token));
            free(j->token);
        }
    }
    for (size_t i = 0; x->outcomes != NULL && i < x->noutcomes; i++)
        free(x->outcomes[i].message);
    free(x->fail.message);
    free(x->share_fail.message);
    free(x->outcomes);
    free(x->present);
    free(x->jobs);
    strset_free(x->members);
    strset_free(x->current);
    strset_free(x->to_add);
    strset_free(x->to_delete);
    strset_free(x->pending);
    free(x->image_enc);
    free(x->member_enc);
    free(x);
}

/* Hands the reply over and frees the exchange. body is malloc'd or NULL. */
static void finish(mb_exchange *x, int status, char *body, size_t len)
{
    mb_reply reply = {
        .status = status, .body = body, .body_len = len,
        .can_share_warning = x->can_share_warning,
        .calls = x->calls, .failed = x->failed,
    };
    members_done_fn done = x->done;
    void *arg = x->arg;
    exchange_free(x);
    done(&reply, arg);
}

static void finish_error(mb_exchange *x, int status, const char *message)
{
    size_t len = 0;
    char *body = reply_error_json(status, message, &len);
    finish(x, status, body, len);
}

/* Records how a call ended in o (xfer, status and, for failures, a message
 * from the upstream body or from the transport error). */
static void outcome_set_as(mb_outcome *o, const mb_response *r, int done)
{
    o->xfer = r->xfer;
    o->http_status = r->xfer == XFER_HTTP ? r->status : 0;
    free(o->message);
    o->message = NULL;
    if (done)
        return;              /* a message is shown for failures only (aggregate.c) */
    if (r->xfer == XFER_HTTP)
        o->message = v2_error_message(r->body, r->body_len, ERROR_MESSAGE_MAX);
    else if (r->error && *r->error)
        o->message = strdup(r->error);
}

static void outcome_set(mb_outcome *o, const mb_response *r)
{
    outcome_set_as(o, r, 0);
}

/* Logs a failed upstream call with what was being done. */
static void log_call_failure(const mb_exchange *x, const char *method,
                             const char *what, const mb_response *r)
{
    static const char *kinds[] = {
        [XFER_NONE] = "not attempted", [XFER_HTTP] = "answered",
        [XFER_UNREACHABLE] = "unreachable", [XFER_TLS] = "TLS failure",
        [XFER_BAD_RESPONSE] = "invalid response", [XFER_TIMEOUT] = "timed out",
    };
    if (r->xfer == XFER_HTTP) {
        log_warning("%s client=%s: upstream answered %d to %s %s", x->env.request_id,
                    x->env.client, r->status, method, what);
    } else {
        log_error("%s client=%s: upstream %s while calling %s %s (%d attempt%s): %s",
                  x->env.request_id, x->env.client, kinds[r->xfer], method, what,
                  r->attempts, r->attempts == 1 ? "" : "s", r->error ? r->error : "");
    }
}

static void count_call(mb_exchange *x, int ok)
{
    x->calls++;
    if (!ok)
        x->failed++;
}

static mb_call *call(mb_exchange *x, const char *method, const char *path,
                     const char *body, size_t body_len, mb_call_cb cb, void *arg)
{
    mb_request req = {
        .method = method, .path = path,
        .headers = (const char *const *)(body ? x->env.headers_json : x->env.headers),
        .body = body, .body_len = body_len,
    };
    return upstream_call(x->env.up, &req, cb, arg);
}

static char *member_path(const mb_exchange *x, const char *member_id)
{
    char *enc = escape_id(member_id);
    char *path = NULL;
    if (enc && asprintf(&path, "/v2/images/%s/members/%s", x->image_enc, enc) < 0)
        path = NULL;
    free(enc);
    return path;
}

/* ---- member jobs: add (413 check, sharing, accept), delete, accept ------- */

static void job_end(job *j)
{
    j->stage = STAGE_IDLE;
    if (j->token) {
        explicit_bzero(j->token, strlen(j->token));
        free(j->token);
        j->token = NULL;
    }
    fanout_job_done(&j->x->fan);   /* may free the exchange */
}

/* Fails outcome k of the job without an upstream call (and ends the job). */
static void job_fail_local(job *j, size_t k, const char *message)
{
    mb_outcome *o = &j->x->outcomes[k];
    o->xfer = XFER_BAD_RESPONSE;
    free(o->message);
    o->message = strdup(message);
    if (k == j->idx && j->acc != NO_ACCEPT && j->acc != k)
        j->x->outcomes[j->acc].skipped = 1;
    job_end(j);
}

static void on_member_call(const mb_response *r, void *arg);
static void job_accept(job *j);
static void share_look(job *j);

static void job_issue(job *j, job_stage stage)
{
    mb_exchange *x = j->x;
    mb_outcome *o = &x->outcomes[j->idx];
    char *path = NULL, *body = NULL;
    size_t body_len = 0;
    const char *method;

    j->stage = stage;
    if (stage == STAGE_ADD) {
        method = "POST";
        if (asprintf(&path, "/v2/images/%s/members", x->image_enc) < 0)
            path = NULL;
        body = reply_v2_add_json(o->member_id, &body_len);
    } else {
        method = stage == STAGE_DELETE ? "DELETE" : "GET";
        if (id_is_dot_segment(o->member_id, strlen(o->member_id))) {
            /* a proxy would turn .../members/.. into /v2/images/{i}/ */
            job_fail_local(j, j->idx, "this member id cannot be put in an upstream path");
            return;
        }
        path = member_path(x, o->member_id);
    }
    if (path == NULL || (stage == STAGE_ADD && body == NULL)) {
        free(path);
        free(body);
        job_fail_local(j, j->idx, "out of memory");
        return;
    }
    j->call = call(x, method, path, body, body_len, on_member_call, j);
    free(path);
    free(body);
    if (j->call == NULL)
        job_fail_local(j, j->idx, "out of memory");
}

/* The add (or delete) is settled: go on to the accept, or end. */
static void job_step_done(job *j)
{
    mb_outcome *o = &j->x->outcomes[j->idx];
    if (j->acc != NO_ACCEPT) {
        if (o->done) {
            job_accept(j);
            return;
        }
        j->x->outcomes[j->acc].skipped = 1;   /* nothing to accept */
    }
    job_end(j);
}

/* A member that existed already (409, or found after a 413): the GET of it
 * says its status. Pending: accept it. Accepted: nothing to do. Rejected:
 * the member said no; that is left as it is (the accept is not listed). An
 * unreadable answer: the PUT settles it. */
static void accept_by_status(job *j, const mb_response *r)
{
    mb_exchange *x = j->x;
    mb_outcome *a = &x->outcomes[j->acc];
    char status[16];

    if (r->xfer != XFER_HTTP || r->status != 200
        || v2_parse_top_string(r->body, r->body_len, "status", status, sizeof(status)) != 0) {
        job_accept(j);
        return;
    }
    if (strcmp(status, "accepted") == 0) {
        a->xfer = XFER_HTTP;
        a->http_status = 200;
        a->done = 1;
    } else if (strcmp(status, "rejected") == 0) {
        a->skipped = 1;
        log_info("%s client=%s: member %s rejected image %s; left rejected", x->env.request_id,
                 x->env.client, a->member_id, x->image_id);
    } else {
        job_accept(j);
        return;
    }
    job_end(j);
}

static void on_member_call(const mb_response *r, void *arg)
{
    job *j = arg;
    mb_exchange *x = j->x;
    mb_outcome *o = &x->outcomes[j->idx];
    job_stage stage = j->stage;

    j->call = NULL;
    if (stage == STAGE_ADD_CHECK && o->done) {
        /* a 409 with [members] accept: only the member's status was wanted */
        count_call(x, r->xfer == XFER_HTTP && r->status == 200);
        accept_by_status(j, r);
        return;
    }
    if (stage == STAGE_ADD_CHECK) {
        /* A 413 to the POST, then: is it a member anyway? */
        int ok = r->xfer == XFER_HTTP && r->status == 200;
        int absent = r->xfer == XFER_HTTP && r->status == 404;
        count_call(x, ok || absent);
        if (ok) {
            o->done = 1;
            if (j->acc != NO_ACCEPT) {
                accept_by_status(j, r);
                return;
            }
        } else if (!absent) {
            /* the check itself failed: report that (502/504), not the 413 */
            log_call_failure(x, "GET", o->member_id, r);
            outcome_set(o, r);
        }
        job_step_done(j);
        return;
    }

    o->done = r->xfer == XFER_HTTP && aggregate_http_done(o->action, r->status);
    outcome_set_as(o, r, o->done);
    count_call(x, o->done);
    if (stage == STAGE_ADD && r->xfer == XFER_HTTP && r->status == 403
        && x->env.conf->members.share_private_images && !j->reposted) {
        share_look(j);    /* maybe the image is private */
        return;
    }
    if (!o->done)
        log_call_failure(x, stage == STAGE_ADD ? "POST member" : "DELETE member", o->member_id, r);
    if (stage == STAGE_ADD && r->xfer == XFER_HTTP && r->status == 413) {
        /* Glance checks the quota before duplicates (SPEC section 2). */
        job_issue(j, STAGE_ADD_CHECK);
        return;
    }
    if (stage == STAGE_ADD && r->xfer == XFER_HTTP && r->status == 409 && j->acc != NO_ACCEPT) {
        /* a member already: accept it only if it is pending (a rejection stands) */
        job_issue(j, STAGE_ADD_CHECK);
        return;
    }
    job_step_done(j);
}

/* ---- accept: PUT status accepted with the gateway's own token ----------- */

static void on_accept(const mb_response *r, void *arg);

static void accept_fail_auth(job *j, const mb_svc_error *err)
{
    mb_exchange *x = j->x;
    mb_outcome *o = &x->outcomes[j->acc];
    char msg[512];
    snprintf(msg, sizeof(msg), "could not get the gateway's service token: %s", err->message);
    /* the gateway's own credentials failed, not the caller's: 502 (504 for
     * a timeout), whatever Keystone answered */
    o->xfer = err->xfer == XFER_TIMEOUT ? XFER_TIMEOUT : XFER_BAD_RESPONSE;
    o->http_status = 0;
    free(o->message);
    o->message = strdup(msg);
    if (!x->auth_failure_logged)   /* once per request: svc_auth logs each fetch */
        log_error("%s client=%s: members of image %s added but not accepted: %s",
                  x->env.request_id, x->env.client, x->image_id, msg);
    x->auth_failure_logged = 1;
    job_end(j);
}

static void accept_issue(job *j, const char *token)
{
    mb_exchange *x = j->x;
    mb_outcome *o = &x->outcomes[j->acc];
    if (id_is_dot_segment(o->member_id, strlen(o->member_id))) {
        job_fail_local(j, j->acc, "this member id cannot be put in an upstream path");
        return;
    }
    char *path = member_path(x, o->member_id);
    char **hdrs = fwd_headers_service(token, x->env.request_id, "application/json");
    free(j->token);
    j->token = strdup(token);
    j->stage = STAGE_ACCEPT;
    if (path && hdrs && j->token) {
        mb_request req = {
            .method = "PUT", .path = path, .headers = (const char *const *)hdrs,
            .body = ACCEPT_BODY, .body_len = sizeof(ACCEPT_BODY) - 1,
        };
        j->call = upstream_call(x->env.up, &req, on_accept, j);
    }
    free(path);
    if (hdrs) {
        for (char **h = hdrs; *h; h++)
            explicit_bzero(*h, strlen(*h));   /* the token */
        free(hdrs);
    }
    if (j->call == NULL)
        job_fail_local(j, j->acc, "out of memory");
}

static void on_token(const char *token, const mb_svc_error *err, void *arg)
{
    job *j = arg;
    j->wait = NULL;
    if (token != NULL)
        accept_issue(j, token);
    else
        accept_fail_auth(j, err);
}

static void job_accept(job *j)
{
    mb_exchange *x = j->x;
    const char *token = NULL;
    const mb_svc_error *err = NULL;

    if (x->env.svc == NULL) {
        job_fail_local(j, j->acc, "[members] accept needs [service_auth]");
        return;
    }
    j->stage = STAGE_TOKEN_WAIT;
    switch (svc_auth_get(x->env.svc, &token, &err, on_token, j, &j->wait)) {
    case SVC_TOKEN_READY:
        accept_issue(j, token);
        return;
    case SVC_TOKEN_WAIT:
        return;
    case SVC_TOKEN_FAILED:
        accept_fail_auth(j, err);
        return;
    }
}

static void on_accept(const mb_response *r, void *arg)
{
    job *j = arg;
    mb_exchange *x = j->x;
    mb_outcome *o = &x->outcomes[j->acc];

    j->call = NULL;
    if (r->xfer == XFER_HTTP && r->status == 401 && !j->auth_retried) {
        /* revoked or expired early: one new token, one more try */
        count_call(x, 0);
        log_warning("%s client=%s: the upstream refused the gateway's service token (401); "
                    "getting a new one", x->env.request_id, x->env.client);
        svc_auth_rejected(x->env.svc, j->token);
        j->auth_retried = 1;
        job_accept(j);
        return;
    }
    o->done = r->xfer == XFER_HTTP && aggregate_http_done(ACT_ACCEPT, r->status);
    outcome_set_as(o, r, o->done);
    count_call(x, o->done);
    if (!o->done) {
        log_call_failure(x, "PUT member status accepted", o->member_id, r);
        if (r->xfer == XFER_HTTP && r->status == 401) {
            /* the gateway's credentials, not the caller's: not a 401 to the client */
            o->xfer = XFER_BAD_RESPONSE;
            o->http_status = 0;
            free(o->message);
            o->message = strdup("the upstream refused the gateway's service token twice (401)");
        }
    }
    job_end(j);
}

/* ---- share_private_images: a private image becomes shared --------------- */

static void replace_plan(mb_exchange *x, const mb_response *list);
static void on_replace_list(const mb_response *r, void *arg);
static int start_single(mb_exchange *x, int on_member, const char *method, mb_call_cb cb);

/* Adds refused 403 wait (STAGE_SHARE_WAIT) for the look at the image: now
 * they are sent again once, or keep their 403, or fail as the look did. */
static void share_resume(mb_exchange *x)
{
    size_t left = 0;
    for (size_t i = 0; i < x->njobs; i++)
        left += x->jobs[i].stage == STAGE_SHARE_WAIT;
    /* the last job resumed may end the exchange: stop touching x after it */
    for (size_t i = 0; left > 0; i++) {
        job *j = &x->jobs[i];
        if (j->stage != STAGE_SHARE_WAIT)
            continue;
        left--;
        mb_outcome *o = &x->outcomes[j->idx];
        if (x->share == SHARE_SHARED) {
            j->reposted = 1;
            job_issue(j, STAGE_ADD);
            continue;
        }
        if (x->share == SHARE_NOT_PRIVATE)
            log_warning("%s client=%s: upstream answered 403 to POST member %s (the image is "
                        "public or community, or not the caller's to see)", x->env.request_id,
                        x->env.client, o->member_id);
        if (x->share == SHARE_FAILED) {
            o->xfer = x->share_fail.xfer;
            o->http_status = x->share_fail.http_status;
            free(o->message);
            o->message = x->share_fail.message ? strdup(x->share_fail.message) : NULL;
        }
        job_step_done(j);
    }
}

/* The look at the image is over (x->share says how): go on with whatever
 * waited for it. */
static void share_settled(mb_exchange *x)
{
    if (!x->replace_waits_share) {
        share_resume(x);
        return;
    }
    /* a replace whose member list was refused (the image is not shared) */
    x->replace_waits_share = 0;
    switch (x->share) {
    case SHARE_SHARED:
        /* list again: a private image keeps its old member rows hidden, and
         * they are members again now; the replace must see (and remove) them */
        x->relisted = 1;
        if (start_single(x, 0, "GET", on_replace_list) != 0)
            finish_error(x, 500, "out of memory");
        return;
    case SHARE_FAILED:
        finish_error(x, aggregate_failure_status(&x->share_fail),
                     x->share_fail.message ? x->share_fail.message : "upstream failure");
        return;
    default:
        replace_plan(x, NULL);   /* not private: no members; its adds get the 403 */
        return;
    }
}

/* The image could not be looked at or changed: the waiting adds fail so. */
static void share_failed(mb_exchange *x, const mb_response *r, const char *doing)
{
    char msg[512];
    mb_outcome *f = &x->share_fail;
    outcome_set(f, r);
    snprintf(msg, sizeof(msg), "the image is not shared and %s: %s", doing,
             f->message ? f->message : (r->xfer == XFER_HTTP ? "upstream error" : "upstream failure"));
    free(f->message);
    f->message = strdup(msg);
    x->share = SHARE_FAILED;
    share_settled(x);
}

static void on_share_patch(const mb_response *r, void *arg)
{
    mb_exchange *x = arg;
    x->share_call = NULL;
    int ok = r->xfer == XFER_HTTP && r->status == 200;
    count_call(x, ok);
    if (!ok) {
        log_call_failure(x, "PATCH image visibility", x->image_id, r);
        share_failed(x, r, "could not be made shared");
        return;
    }
    log_info("%s client=%s: image %s was private and is now shared ([members] share_private_images)",
             x->env.request_id, x->env.client, x->image_id);
    x->share = SHARE_SHARED;
    share_settled(x);
}

static void on_share_image(const mb_response *r, void *arg)
{
    mb_exchange *x = arg;
    char visibility[32];
    x->share_call = NULL;
    int ok = r->xfer == XFER_HTTP && r->status == 200;
    int hidden = r->xfer == XFER_HTTP && r->status >= 400 && r->status <= 499;
    count_call(x, ok || hidden);
    if (hidden) {                 /* not the caller's to see: the 403s stand */
        x->share = SHARE_NOT_PRIVATE;
        share_settled(x);
        return;
    }
    if (!ok) {
        log_call_failure(x, "GET image", x->image_id, r);
        share_failed(x, r, "could not be looked at");
        return;
    }
    if (v2_parse_top_string(r->body, r->body_len, "visibility", visibility, sizeof(visibility)) != 0) {
        mb_response bad = *r;
        bad.xfer = XFER_BAD_RESPONSE;
        bad.error = "the upstream's image could not be read";
        log_error("%s: upstream image is not a v2 image", x->env.request_id);
        share_failed(x, &bad, "could not be looked at");
        return;
    }
    if (strcmp(visibility, "shared") == 0) {
        /* shared meanwhile (another request did it): the refused adds go
         * again once; if the 403 had another reason, it comes back */
        x->share = SHARE_SHARED;
        share_settled(x);
        return;
    }
    if (strcmp(visibility, "private") != 0) {   /* public, community: never changed */
        x->share = SHARE_NOT_PRIVATE;
        share_settled(x);
        return;
    }
    char *path = NULL;
    if (asprintf(&path, "/v2/images/%s", x->image_enc) >= 0) {
        mb_request req = {
            .method = "PATCH", .path = path,
            .headers = (const char *const *)x->env.headers_patch,
            .body = SHARE_PATCH_BODY, .body_len = sizeof(SHARE_PATCH_BODY) - 1,
        };
        x->share_call = x->env.headers_patch ? upstream_call(x->env.up, &req, on_share_patch, x) : NULL;
        free(path);
    }
    if (x->share_call == NULL) {
        mb_response oom = { .xfer = XFER_BAD_RESPONSE, .error = "out of memory", .body = "" };
        share_failed(x, &oom, "could not be made shared");
    }
}

/* Looks at the image (GET with the caller's headers), once per exchange. */
static void share_start(mb_exchange *x)
{
    x->share = SHARE_RUNNING;
    char *path = NULL;
    if (asprintf(&path, "/v2/images/%s", x->image_enc) >= 0) {
        x->share_call = call(x, "GET", path, NULL, 0, on_share_image, x);
        free(path);
    }
    if (x->share_call == NULL) {
        mb_response oom = { .xfer = XFER_BAD_RESPONSE, .error = "out of memory", .body = "" };
        share_failed(x, &oom, "could not be looked at");
    }
}

/* An add was refused 403 with share_private_images on. */
static void share_look(job *j)
{
    mb_exchange *x = j->x;
    j->stage = STAGE_SHARE_WAIT;
    switch (x->share) {
    case SHARE_SHARED:            /* shared since this add was sent */
        j->reposted = 1;
        job_issue(j, STAGE_ADD);
        return;
    case SHARE_RUNNING:
        return;
    case SHARE_NOT_PRIVATE:
    case SHARE_FAILED:
        share_resume(x);
        return;
    case SHARE_UNKNOWN:
        share_start(x);
        return;
    }
}

static void start_member_job(size_t idx, void *arg)
{
    mb_exchange *x = arg;
    job *j = &x->jobs[idx];
    job_issue(j, x->outcomes[j->idx].action == ACT_ADD ? STAGE_ADD : STAGE_DELETE);
}

static void members_finish(mb_exchange *x)
{
    int status = aggregate_status(x->outcomes, x->noutcomes);
    if (status == 204) {
        finish(x, 204, NULL, 0);
        return;
    }
    size_t len = 0;
    char *body = aggregate_body(x->outcomes, x->noutcomes, &len);
    finish(x, status, body, len);
}

/* Replace: a DELETE answered 404 counts as done ("already gone"), but Glance
 * also answers 404 for a member it lists and cannot address in a path (a
 * non-ASCII id: its WSGI server decodes the path as Latin-1). One more list
 * tells the two apart, so a member left in place is never reported done. */
static void on_verify_list(const mb_response *r, void *arg)
{
    mb_exchange *x = arg;
    x->single = NULL;
    int ok = r->xfer == XFER_HTTP && r->status == 200;
    count_call(x, ok);
    mb_strset *still = ok ? strset_new() : NULL;
    if (still != NULL && v2_parse_member_list(r->body, r->body_len, still) == 0) {
        for (size_t i = 0; i < x->noutcomes; i++) {
            mb_outcome *o = &x->outcomes[i];
            if (o->action == ACT_DELETE && o->done && o->xfer == XFER_HTTP && o->http_status == 404
                && strset_contains(still, o->member_id, strlen(o->member_id))) {
                o->done = 0;
                free(o->message);
                o->message = strdup("the upstream answered 404 but still lists this member");
            }
        }
    }
    strset_free(still);
    members_finish(x);
}

static void members_all_done(void *arg)
{
    mb_exchange *x = arg;
    int any_404 = 0;
    for (size_t i = 0; x->op == OP_REPLACE && i < x->noutcomes; i++)
        any_404 |= x->outcomes[i].action == ACT_DELETE && x->outcomes[i].done
                   && x->outcomes[i].xfer == XFER_HTTP && x->outcomes[i].http_status == 404;
    if (any_404 && start_single(x, 0, "GET", on_verify_list) == 0)
        return;
    members_finish(x);
}

/* Allocates the jobs and their outcomes and runs them: one job per member
 * of `add` (its add, then with [members] accept its accept), one per member
 * of `del` (its delete). Either set may be NULL. */
static int run_member_jobs(mb_exchange *x, const mb_strset *add, const mb_strset *del)
{
    int with_accept = x->env.conf->members.accept;
    size_t nadd = add ? strset_count(add) : 0;
    size_t ndel = del ? strset_count(del) : 0;
    size_t njobs = nadd + ndel;
    size_t nout = nadd * (with_accept ? 2 : 1) + ndel;

    x->outcomes = calloc(nout ? nout : 1, sizeof(*x->outcomes));
    x->jobs = calloc(njobs ? njobs : 1, sizeof(*x->jobs));
    if (x->outcomes == NULL || x->jobs == NULL)
        return -1;
    x->njobs = njobs;
    x->noutcomes = nout;
    size_t k = 0;
    for (size_t i = 0; i < njobs; i++) {
        job *j = &x->jobs[i];
        mb_action a = i < nadd ? ACT_ADD : ACT_DELETE;
        j->x = x;
        j->idx = k;
        j->acc = NO_ACCEPT;
        x->outcomes[k].action = a;
        x->outcomes[k++].member_id = a == ACT_ADD ? strset_get(add, i) : strset_get(del, i - nadd);
        if (a == ACT_ADD && with_accept) {
            j->acc = k;
            x->outcomes[k].action = ACT_ACCEPT;
            x->outcomes[k].member_id = x->outcomes[k - 1].member_id;
            k++;
        }
    }
    metrics_fanout(njobs);
    fanout_init(&x->fan, njobs, (size_t)x->env.conf->members.concurrency,
                start_member_job, members_all_done, x);
    fanout_run(&x->fan);
    return 0;
}

/* ---- single calls: delete one, list, replace's list -------------------- */

/* Replies to a failed single call: the upstream's 4xx as is, else 502/504,
 * with the upstream's message. */
static void finish_single_failure(mb_exchange *x, const mb_response *r, const char *doing)
{
    mb_outcome o = {0};
    char msg[512];
    outcome_set(&o, r);
    int status = aggregate_failure_status(&o);
    snprintf(msg, sizeof(msg), "%s: %s", doing,
             o.message ? o.message : (r->xfer == XFER_HTTP ? "upstream error" : "upstream failure"));
    free(o.message);
    finish_error(x, status, msg);
}

static void on_remove(const mb_response *r, void *arg)
{
    mb_exchange *x = arg;
    x->single = NULL;
    int ok = r->xfer == XFER_HTTP && (r->status == 204 || r->status == 200);
    count_call(x, ok || (r->xfer == XFER_HTTP && r->status == 404));
    if (ok) {
        finish(x, 204, NULL, 0);
        return;
    }
    if (r->xfer == XFER_HTTP && r->status == 404 && r->maybe_done) {
        /* The DELETE reached the upstream on a connection lost before its
         * answer and was sent again: the first one may have removed the
         * member, so "not a member" would be a guess. Either way it is not
         * a member now, which is what the client asked for. */
        log_info("DELETE member %s: sent again after the connection was lost, the upstream "
                 "now answers 404: counted as removed", x->member_id);
        finish(x, 204, NULL, 0);
        return;
    }
    if (r->xfer == XFER_HTTP && r->status == 404) {
        finish_error(x, 404, "not a member of this image (or no such image)");
        return;
    }
    log_call_failure(x, "DELETE", x->member_id, r);
    finish_single_failure(x, r, "could not remove the member");
}

static void on_list(const mb_response *r, void *arg)
{
    mb_exchange *x = arg;
    x->single = NULL;
    int ok = r->xfer == XFER_HTTP && r->status == 200;
    int not_shared = r->xfer == XFER_HTTP && r->status == 403;
    count_call(x, ok || not_shared);
    if (not_shared || ok) {
        mb_strset *list = strset_new();
        if (list == NULL || (ok && v2_parse_member_list(r->body, r->body_len, list) != 0)) {
            strset_free(list);
            log_error("%s: upstream member list is not a v2 member list", x->env.request_id);
            finish_error(x, 502, "the upstream's member list could not be read");
            return;
        }
        /* an image that is not shared has no members (v1 answered 200 []) */
        size_t len = 0;
        char *body = reply_members_json(list, &len);
        strset_free(list);
        finish(x, body ? 200 : 500, body, len);
        return;
    }
    log_call_failure(x, "GET", "members", r);
    finish_single_failure(x, r, "could not list the members");
}

static void on_replace_list(const mb_response *r, void *arg)
{
    mb_exchange *x = arg;
    x->single = NULL;
    int ok = r->xfer == XFER_HTTP && r->status == 200;
    /* an image that is not shared has no members (as for the v1 list) */
    int not_shared = r->xfer == XFER_HTTP && r->status == 403;
    count_call(x, ok || not_shared);
    if (!ok && !not_shared) {
        log_call_failure(x, "GET", "members (for replace)", r);
        finish_single_failure(x, r, "could not list the current members");
        return;
    }
    if (not_shared && x->env.conf->members.share_private_images && !x->relisted
        && strset_count(x->members) > 0) {
        /* maybe private: look first (and list again once it is shared) */
        x->replace_waits_share = 1;
        share_start(x);
        return;
    }
    replace_plan(x, ok ? r : NULL);
}

/* Plans and runs a replace from the current member list (NULL: none). */
static void replace_plan(mb_exchange *x, const mb_response *list)
{
    int accept = x->env.conf->members.accept;
    x->current = strset_new();
    x->to_add = strset_new();
    x->to_delete = strset_new();
    x->pending = strset_new();
    if (x->current == NULL || x->to_add == NULL || x->to_delete == NULL || x->pending == NULL) {
        finish_error(x, 500, "out of memory");
        return;
    }
    if (list != NULL && v2_parse_member_list_status(list->body, list->body_len, x->current,
                                                    "pending", x->pending) != 0) {
        log_error("%s: upstream member list is not a v2 member list", x->env.request_id);
        finish_error(x, 502, "the upstream's member list could not be read");
        return;
    }
    if (plan_replace(x->members, x->current, x->to_add, x->to_delete) != 0)
        goto oom;
    if (accept) {
        /* [members] accept: a kept member still pending is added again (the
         * caller's own POST, answered 409, shows it may) and then accepted;
         * in the order the members were listed */
        strset_free(x->to_add);
        if ((x->to_add = strset_new()) == NULL)
            goto oom;
        for (size_t i = 0; i < strset_count(x->members); i++) {
            const char *m = strset_get(x->members, i);
            size_t ml = strlen(m);
            if ((!strset_contains(x->current, m, ml) || strset_contains(x->pending, m, ml))
                && strset_add(x->to_add, m, ml) < 0)
                goto oom;
        }
    }
    if (run_member_jobs(x, x->to_add, x->to_delete) != 0)
        goto oom;
    return;
oom:
    finish_error(x, 500, "out of memory");
}

/* ---- shared images ----------------------------------------------------- */

static void shared_page(mb_exchange *x, const char *path);

static void on_shared_check(const mb_response *r, void *arg)
{
    job *j = arg;
    mb_exchange *x = j->x;
    j->call = NULL;
    int present = r->xfer == XFER_HTTP && r->status == 200;
    int absent = r->xfer == XFER_HTTP && (r->status == 404 || r->status == 403);
    count_call(x, present || absent);
    if (present) {
        x->present[j->idx] = 1;
    } else if (!absent && !x->failed_any) {
        x->failed_any = 1;
        outcome_set(&x->fail, r);
        log_call_failure(x, "GET member of image", strset_get(x->current, j->idx), r);
    }
    job_end(j);
}

static void start_shared_check(size_t idx, void *arg)
{
    mb_exchange *x = arg;
    job *j = &x->jobs[idx];
    char *enc_image = escape_id(strset_get(x->current, idx));
    char *path = NULL;
    j->stage = STAGE_SHARED_CHECK;
    if (enc_image == NULL
        || asprintf(&path, "/v2/images/%s/members/%s", enc_image, x->member_enc) < 0)
        path = NULL;
    free(enc_image);
    if (path)
        j->call = call(x, "GET", path, NULL, 0, on_shared_check, j);
    free(path);
    if (j->call == NULL) {
        if (!x->failed_any) {
            x->failed_any = 1;
            x->fail.xfer = XFER_BAD_RESPONSE;
            x->fail.message = strdup("out of memory");
        }
        job_end(j);
    }
}

static void shared_all_done(void *arg)
{
    mb_exchange *x = arg;
    if (x->failed_any) {
        char msg[512];
        snprintf(msg, sizeof(msg), "could not check the shared images: %s",
                 x->fail.message ? x->fail.message : "upstream failure");
        finish_error(x, aggregate_failure_status(&x->fail), msg);
        return;
    }
    mb_strset *shared = strset_new();
    if (shared == NULL) {
        finish_error(x, 500, "out of memory");
        return;
    }
    for (size_t i = 0; i < x->njobs; i++) {
        const char *id = strset_get(x->current, i);
        if (x->present[i] && strset_add(shared, id, strlen(id)) < 0)
            break;
    }
    size_t len = 0;
    char *body = reply_shared_images_json(shared, &len);
    strset_free(shared);
    finish(x, body ? 200 : 500, body, len);
}

static void on_shared_page(const mb_response *r, void *arg)
{
    mb_exchange *x = arg;
    char *next = NULL;
    x->single = NULL;
    int ok = r->xfer == XFER_HTTP && r->status == 200;
    count_call(x, ok);
    if (!ok) {
        log_call_failure(x, "GET", "images (shared)", r);
        finish_single_failure(x, r, "could not list the shared images");
        return;
    }
    if (v2_parse_image_list(r->body, r->body_len, x->current, &next) != 0) {
        log_error("%s: upstream image list is not a v2 image list", x->env.request_id);
        finish_error(x, 502, "the upstream's image list could not be read");
        return;
    }
    /* Follow "next" only to the image list on the configured upstream, and
     * only so far: a partial list must not pass for the whole one. */
    if (next && strncmp(next, "/v2/images?", 11) == 0) {
        if (x->pages >= SHARED_MAX_PAGES
            || strset_count(x->current) >= (size_t)x->env.conf->members.max_per_request) {
            char msg[200];
            free(next);
            snprintf(msg, sizeof(msg), "more than %zu shared images to check "
                     "(the limit is [members] max_per_request)", strset_count(x->current));
            log_warning("%s client=%s: shared-images stopped: %s", x->env.request_id, x->env.client, msg);
            finish_error(x, 413, msg);
            return;
        }
        shared_page(x, next);
        free(next);
        return;
    }
    if (next) {
        log_error("%s client=%s: upstream image list has an unexpected next link", x->env.request_id,
                  x->env.client);
        free(next);
        finish_error(x, 502, "the upstream's image list has a next link the gateway does not follow");
        return;
    }
    size_t n = strset_count(x->current);
    x->present = calloc(n ? n : 1, 1);
    x->jobs = calloc(n ? n : 1, sizeof(*x->jobs));
    if (x->present == NULL || x->jobs == NULL) {
        finish_error(x, 500, "out of memory");
        return;
    }
    x->njobs = n;
    for (size_t i = 0; i < n; i++) {
        x->jobs[i].x = x;
        x->jobs[i].idx = i;
    }
    fanout_init(&x->fan, n, (size_t)x->env.conf->members.concurrency,
                start_shared_check, shared_all_done, x);
    fanout_run(&x->fan);
}

static void shared_page(mb_exchange *x, const char *path)
{
    x->pages++;
    x->single = call(x, "GET", path, NULL, 0, on_shared_page, x);
    if (x->single == NULL)
        finish_error(x, 500, "out of memory");
}

/* ---- entry points ------------------------------------------------------ */

/* One call on /v2/images/{image}/members, or on .../members/{member}. */
static int start_single(mb_exchange *x, int on_member, const char *method, mb_call_cb cb)
{
    char *path = NULL;
    int n = on_member
        ? asprintf(&path, "/v2/images/%s/members/%s", x->image_enc, x->member_enc)
        : asprintf(&path, "/v2/images/%s/members", x->image_enc);
    if (n < 0)
        return -1;
    x->single = call(x, method, path, NULL, 0, cb, x);
    free(path);
    return x->single ? 0 : -1;
}

int members_start(const mb_members_env *env, const mb_route *route,
                  const v1_body *body, members_done_fn done, void *arg,
                  mb_exchange **xp)
{
    char path[128];
    mb_exchange *x = calloc(1, sizeof(*x));
    *xp = NULL;
    if (x == NULL)
        return -1;
    x->env = *env;
    x->op = route->op;
    x->done = done;
    x->arg = arg;
    snprintf(x->member_buf, sizeof(x->member_buf), "%s", route->member_id);
    snprintf(x->image_buf, sizeof(x->image_buf), "%s", route->image_id);
    x->image_id = x->image_buf;
    x->member_id = x->member_buf;
    if (route->kind != ROUTE_SHARED_IMAGES && (x->image_enc = escape_id(route->image_id)) == NULL)
        goto fail;
    if (route->member_id[0] && (x->member_enc = escape_id(route->member_id)) == NULL)
        goto fail;
    if (body != NULL) {
        const mb_strset *src = v1_body_members(body);
        if ((x->members = strset_new()) == NULL)
            goto fail;
        for (size_t i = 0; i < strset_count(src); i++) {
            const char *m = strset_get(src, i);
            if (strset_add(x->members, m, strlen(m)) < 0)
                goto fail;
        }
        x->can_share_warning = v1_body_can_share_true(body)
                               && env->conf->members.can_share == CAN_SHARE_IGNORE;
    }

    *xp = x;
    switch (route->op) {
    case OP_ADD:
        if (x->members == NULL)
            goto fail;
        if (run_member_jobs(x, x->members, NULL) != 0)
            goto fail;
        return 0;
    case OP_REPLACE:
        if (x->members == NULL || start_single(x, 0, "GET", on_replace_list) != 0)
            goto fail;
        return 0;
    case OP_LIST:
        if (start_single(x, 0, "GET", on_list) != 0)
            goto fail;
        return 0;
    case OP_REMOVE:
        if (start_single(x, 1, "DELETE", on_remove) != 0)
            goto fail;
        return 0;
    case OP_SHARED_IMAGES:
        if ((x->current = strset_new()) == NULL)
            goto fail;
        snprintf(path, sizeof(path), "/v2/images?visibility=shared&member_status=all&limit=%d",
                 SHARED_PAGE_LIMIT);
        x->pages++;
        x->single = call(x, "GET", path, NULL, 0, on_shared_page, x);
        if (x->single == NULL)
            goto fail;
        return 0;
    default:
        goto fail;
    }

fail:
    *xp = NULL;
    exchange_free(x);
    return -1;
}

void members_cancel(mb_exchange *x)
{
    exchange_free(x);
}
