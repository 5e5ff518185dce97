/* members: the v1 membership operations on top of the upstream engine.
 *
 * One mb_exchange per v1 request owns every upstream call it makes. Each
 * member operation is a "job" with its own slot (call handle, stage); the
 * fanout runs at most [members] concurrency jobs at a time. When the last
 * job ends, finish() builds the v1 reply (aggregate.c, reply.c), hands it
 * to the caller and frees the exchange: that is the only place it is freed,
 * apart from members_cancel(), which cancels the calls first so no callback
 * can run afterwards. */
#include "members.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#include "aggregate.h"
#include "fanout.h"
#include "log.h"
#include "plan.h"
#include "reply.h"
#include "strset.h"
#include "v2_parse.h"

#define ERROR_MESSAGE_MAX   300
#define SHARED_PAGE_LIMIT   200     /* images asked for per page */
#define SHARED_MAX_PAGES    1000    /* bound on pagination */

typedef enum {
    STAGE_IDLE = 0,
    STAGE_ADD,          /* POST .../members */
    STAGE_ADD_CHECK,    /* GET .../members/{m} after a 413 */
    STAGE_DELETE,       /* DELETE .../members/{m} */
    STAGE_SHARED_CHECK  /* GET /v2/images/{i}/members/{member} */
} job_stage;

typedef struct {
    struct mb_exchange *x;
    size_t              idx;
    job_stage           stage;
    mb_call            *call;      /* in flight, or NULL */
} job;

struct mb_exchange {
    mb_members_env   env;
    mb_op_kind       op;
    char            *image_enc;    /* percent-encoded image id */
    char            *member_enc;   /* percent-encoded path member id */
    const char      *member_id;    /* route member id (copy below) */
    char             member_buf[MB_ID_MAX + 1];

    mb_strset       *members;      /* add: to add; replace: desired */
    mb_strset       *current;      /* replace: current members; shared: image ids */
    mb_strset       *to_add, *to_delete;

    mb_outcome      *outcomes;     /* one per job (add/replace) */
    unsigned char   *present;      /* shared images: member row exists */
    job             *jobs;
    size_t           njobs;
    mb_fanout        fan;

    mb_call         *single;       /* the one call of a single-step stage */
    size_t           pages;
    mb_outcome       fail;         /* shared images: first failed check */
    int              failed_any;

    int              can_share_warning;
    unsigned         calls, failed;

    members_done_fn  done;
    void            *arg;
};

/* ---- helpers ---------------------------------------------------------- */

static char *escape_id(const char *id)
{
    char *e = curl_easy_escape(NULL, id, (int)strlen(id));
    char *copy = e ? strdup(e) : NULL;
    curl_free(e);
    return copy;
}

static void exchange_free(mb_exchange *x)
{
    if (x == NULL)
        return;
    if (x->single)
        upstream_cancel(x->single);
    for (size_t i = 0; i < x->njobs; i++) {
        if (x->jobs[i].call)
            upstream_cancel(x->jobs[i].call);
    }
    if (x->outcomes) {
        for (size_t i = 0; i < x->njobs; i++)
            free(x->outcomes[i].message);
    }
    free(x->fail.message);
    free(x->outcomes);
    free(x->present);
    free(x->jobs);
    strset_free(x->members);
    strset_free(x->current);
    strset_free(x->to_add);
    strset_free(x->to_delete);
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
static void outcome_set(mb_outcome *o, const mb_response *r)
{
    o->xfer = r->xfer;
    o->http_status = r->xfer == XFER_HTTP ? r->status : 0;
    free(o->message);
    o->message = NULL;
    if (r->xfer == XFER_HTTP)
        o->message = v2_error_message(r->body, r->body_len, ERROR_MESSAGE_MAX);
    else if (r->error && *r->error)
        o->message = strdup(r->error);
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

/* ---- member jobs: add (with the 413 check), delete --------------------- */

static void job_end(job *j)
{
    j->stage = STAGE_IDLE;
    fanout_job_done(&j->x->fan);   /* may free the exchange */
}

static void job_fail_local(job *j, const char *message)
{
    mb_outcome *o = &j->x->outcomes[j->idx];
    o->xfer = XFER_BAD_RESPONSE;
    free(o->message);
    o->message = strdup(message);
    job_end(j);
}

static void on_member_call(const mb_response *r, void *arg);

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
            job_fail_local(j, "this member id cannot be put in an upstream path");
            return;
        }
        path = member_path(x, o->member_id);
    }
    if (path == NULL || (stage == STAGE_ADD && body == NULL)) {
        free(path);
        free(body);
        job_fail_local(j, "out of memory");
        return;
    }
    j->call = call(x, method, path, body, body_len, on_member_call, j);
    free(path);
    free(body);
    if (j->call == NULL)
        job_fail_local(j, "out of memory");
}

static void on_member_call(const mb_response *r, void *arg)
{
    job *j = arg;
    mb_exchange *x = j->x;
    mb_outcome *o = &x->outcomes[j->idx];
    job_stage stage = j->stage;

    j->call = NULL;
    if (stage == STAGE_ADD_CHECK) {
        /* A 413 to the POST, then: is it a member anyway? */
        int ok = r->xfer == XFER_HTTP && r->status == 200;
        int absent = r->xfer == XFER_HTTP && r->status == 404;
        count_call(x, ok || absent);
        if (ok) {
            o->done = 1;
        } else if (!absent) {
            /* the check itself failed: report that (502/504), not the 413 */
            log_call_failure(x, "GET", o->member_id, r);
            outcome_set(o, r);
        }
        job_end(j);
        return;
    }

    outcome_set(o, r);
    o->done = r->xfer == XFER_HTTP && aggregate_http_done(o->action, r->status);
    count_call(x, o->done);
    if (!o->done)
        log_call_failure(x, stage == STAGE_ADD ? "POST member" : "DELETE member", o->member_id, r);
    if (stage == STAGE_ADD && r->xfer == XFER_HTTP && r->status == 413) {
        /* Glance checks the quota before duplicates (SPEC section 2). */
        job_issue(j, STAGE_ADD_CHECK);
        return;
    }
    job_end(j);
}

static void start_member_job(size_t idx, void *arg)
{
    mb_exchange *x = arg;
    job *j = &x->jobs[idx];
    job_issue(j, x->outcomes[idx].action == ACT_ADD ? STAGE_ADD : STAGE_DELETE);
}

static int start_single(mb_exchange *x, int on_member, const char *method, mb_call_cb cb);

static void members_finish(mb_exchange *x)
{
    int status = aggregate_status(x->outcomes, x->njobs);
    if (status == 204) {
        finish(x, 204, NULL, 0);
        return;
    }
    size_t len = 0;
    char *body = aggregate_body(x->outcomes, x->njobs, &len);
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
        for (size_t i = 0; i < x->njobs; i++) {
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
    for (size_t i = 0; x->op == OP_REPLACE && i < x->njobs; i++)
        any_404 |= x->outcomes[i].action == ACT_DELETE && x->outcomes[i].done
                   && x->outcomes[i].xfer == XFER_HTTP && x->outcomes[i].http_status == 404;
    if (any_404 && start_single(x, 0, "GET", on_verify_list) == 0)
        return;
    members_finish(x);
}

/* Allocates one job and one outcome per operation: adds from `add`, then
 * deletes from `del` (either may be NULL), and runs them. */
static int run_member_jobs(mb_exchange *x, const mb_strset *add, const mb_strset *del)
{
    size_t nadd = add ? strset_count(add) : 0;
    size_t ndel = del ? strset_count(del) : 0;
    size_t n = nadd + ndel;

    x->outcomes = calloc(n ? n : 1, sizeof(*x->outcomes));
    x->jobs = calloc(n ? n : 1, sizeof(*x->jobs));
    if (x->outcomes == NULL || x->jobs == NULL)
        return -1;
    x->njobs = n;
    for (size_t i = 0; i < n; i++) {
        mb_outcome *o = &x->outcomes[i];
        o->action = i < nadd ? ACT_ADD : ACT_DELETE;
        o->member_id = i < nadd ? strset_get(add, i) : strset_get(del, i - nadd);
        x->jobs[i].x = x;
        x->jobs[i].idx = i;
    }
    fanout_init(&x->fan, n, (size_t)x->env.conf->members.concurrency,
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
    x->current = strset_new();
    x->to_add = strset_new();
    x->to_delete = strset_new();
    if (x->current == NULL || x->to_add == NULL || x->to_delete == NULL) {
        finish_error(x, 500, "out of memory");
        return;
    }
    if (ok && v2_parse_member_list(r->body, r->body_len, x->current) != 0) {
        log_error("%s: upstream member list is not a v2 member list", x->env.request_id);
        finish_error(x, 502, "the upstream's member list could not be read");
        return;
    }
    if (plan_replace(x->members, x->current, x->to_add, x->to_delete) != 0
        || run_member_jobs(x, x->to_add, x->to_delete) != 0) {
        finish_error(x, 500, "out of memory");
        return;
    }
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
