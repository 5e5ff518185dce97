/* aggregate: many member operations -> one v1 status and body (SPEC section 2). */
#include "aggregate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#include "reply.h"

/* Any yajl_gen call that fails sends aggregate_body to its cleanup path. */
#define GEN(call) do { if ((call) != yajl_gen_status_ok) goto out; } while (0)
#define GEN_TEXT(g, s) do { if (reply_gen_text((g), (s), strlen(s)) != 0) goto out; } while (0)

int aggregate_http_done(mb_action action, int http_status)
{
    if (action == ACT_ADD)
        return http_status == 200 || http_status == 201 || http_status == 409;
    if (action == ACT_ACCEPT)
        return http_status >= 200 && http_status <= 299;
    /* Glance answers 204; 200 is a success too, as for a single v1 DELETE */
    return http_status == 204 || http_status == 200 || http_status == 404;
}

int aggregate_failure_status(const mb_outcome *o)
{
    switch (o->xfer) {
    case XFER_HTTP:
        if (o->http_status >= 400 && o->http_status <= 499)
            return o->http_status;
        return 502;   /* 5xx, or a status that makes no sense here */
    case XFER_TIMEOUT:
        return 504;
    default:
        return 502;
    }
}

int aggregate_status(const mb_outcome *o, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!o[i].done && !o[i].skipped)
            return aggregate_failure_status(&o[i]);
    return 204;
}

/* The "status" of one result: what the upstream answered, or for a
 * transport failure the status the gateway gives it. */
static int result_status(const mb_outcome *o)
{
    return o->xfer == XFER_HTTP ? o->http_status : aggregate_failure_status(o);
}

/* Why a failed operation failed, or NULL when its status says it all. */
static const char *result_message(const mb_outcome *o)
{
    if (o->done)
        return NULL;
    if (o->message != NULL)
        return o->message;
    switch (o->xfer) {
    case XFER_HTTP:
        return NULL;
    case XFER_UNREACHABLE:
        return "upstream unreachable";
    case XFER_TLS:
        return "upstream TLS certificate did not verify";
    case XFER_BAD_RESPONSE:
        return "upstream response invalid";
    case XFER_TIMEOUT:
        return "upstream timed out";
    case XFER_NONE:
        break;
    }
    return "upstream call not made";
}

char *aggregate_body(const mb_outcome *o, size_t n, size_t *len)
{
    char *res = NULL;
    size_t failed = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        failed += !o[i].done && !o[i].skipped;
        total += !o[i].skipped;
    }
    int code = aggregate_status(o, n);
    char summary[96];
    snprintf(summary, sizeof(summary), "%zu of %zu member operations failed", failed, total);

    yajl_gen g = reply_gen_new();
    if (g == NULL)
        return NULL;
    GEN(yajl_gen_map_open(g));
    if (reply_gen_error(g, code, summary) != 0)
        goto out;
    GEN(reply_gen_key(g, "results"));
    GEN(yajl_gen_array_open(g));
    for (size_t i = 0; i < n; i++) {
        static const char *const actions[] = {
            [ACT_ADD] = "add", [ACT_DELETE] = "delete", [ACT_ACCEPT] = "accept",
        };
        const char *msg = result_message(&o[i]);
        if (o[i].skipped)
            continue;
        GEN(yajl_gen_map_open(g));
        GEN(reply_gen_key(g, "member_id"));
        GEN_TEXT(g, o[i].member_id != NULL ? o[i].member_id : "");
        GEN(reply_gen_key(g, "action"));
        GEN(reply_gen_key(g, actions[o[i].action]));
        GEN(reply_gen_key(g, "status"));
        GEN(yajl_gen_integer(g, result_status(&o[i])));
        GEN(reply_gen_key(g, "done"));
        GEN(yajl_gen_bool(g, o[i].done != 0));
        if (msg != NULL) {
            GEN(reply_gen_key(g, "message"));
            GEN_TEXT(g, msg);
        }
        GEN(yajl_gen_map_close(g));
    }
    GEN(yajl_gen_array_close(g));
    GEN(yajl_gen_map_close(g));
    res = reply_gen_take(g, len);
out:
    yajl_gen_free(g);
    return res;
}
