/* Unit tests for h1_response.c: status line, headers, framing (Content-Length,
 * chunked, close-delimited), interim responses, limits, keep-alive, eof, and
 * the same results however the input is split across feeds. */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h1_response.h"

#define REC_CAP 4096

/* What the callbacks saw, plus the parser's results. */
typedef struct {
    int         stop_at;        /* 0, or the callback that returns -1: 1 header, 2 headers_done, 3 body */
    const char *in_lo, *in_hi;  /* the input buffer: body pieces must point inside it */
    int         body_copied;    /* an on_body piece lay outside the input */
    int         n_headers_done;
    int         cb_status;      /* as on_headers_done got it */
    int         ka_at_done;     /* p->keep_alive as on_headers_done saw it */
    h1_resp    *p;
    char        headers[REC_CAP];   /* "name=value\n" per header, truncated at REC_CAP */
    size_t      hlen, htotal;
    char        body[REC_CAP];
    size_t      blen, btotal;
    size_t      n_body_calls;
    /* results */
    int         rc;             /* -1 when a feed failed */
    int         eof_rc;         /* h1_resp_eof's result, when it was called */
    const char *error;
    int         status, minor, keep_alive, done, chunked, close_delimited;
    long long   content_length;
    size_t      consumed;
    size_t      line_cap;       /* the split-line buffer's size at the end */
} rec;

static void keep(char *buf, size_t *len, size_t *total, const char *s, size_t n)
{
    size_t room = REC_CAP - *len;
    size_t k = n < room ? n : room;
    memcpy(buf + *len, s, k);
    *len += k;
    *total += n;
}

static int on_header(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
    rec *r = arg;
    keep(r->headers, &r->hlen, &r->htotal, name, nlen);
    keep(r->headers, &r->hlen, &r->htotal, "=", 1);
    keep(r->headers, &r->hlen, &r->htotal, value, vlen);
    keep(r->headers, &r->hlen, &r->htotal, "\n", 1);
    return r->stop_at == 1 ? -1 : 0;
}

static int on_headers_done(void *arg, int status)
{
    rec *r = arg;
    r->n_headers_done++;
    r->cb_status = status;
    r->ka_at_done = r->p->keep_alive;
    return r->stop_at == 2 ? -1 : 0;
}

static int on_body(void *arg, const char *data, size_t len)
{
    rec *r = arg;
    if (data < r->in_lo || data + len > r->in_hi)
        r->body_copied = 1;
    ck_assert_uint_gt(len, 0);
    r->n_body_calls++;
    keep(r->body, &r->blen, &r->btotal, data, len);
    return r->stop_at == 3 ? -1 : 0;
}

static const h1_resp_cbs cbs = { on_header, on_headers_done, on_body };

/* Feeds msg[0..len) cut at cuts[0..ncuts) (ascending) to a fresh parser,
 * then calls h1_resp_eof when eof is set and no feed failed. A feed that
 * neither fails nor ends the response must take all of its piece. */
static void run(rec *r, const char *msg, size_t len, int head, int eof,
                const size_t *cuts, size_t ncuts)
{
    h1_resp p;
    size_t start = 0;
    int stop_at = r->stop_at;

    memset(r, 0, sizeof(*r));
    r->stop_at = stop_at;
    r->in_lo = msg;
    r->in_hi = msg + len;
    r->p = &p;
    r->eof_rc = 1;
    h1_resp_init(&p, head);
    for (size_t i = 0; i <= ncuts && !p.done; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        ssize_t rc = h1_resp_feed(&p, msg + start, end - start, &cbs, r);
        if (rc < 0) {
            r->rc = -1;
            break;
        }
        ck_assert_msg(p.done || (size_t)rc == end - start,
                      "feed of %zu bytes at %zu took %zd without ending the response",
                      end - start, start, rc);
        r->consumed += (size_t)rc;
        start = end;
    }
    if (eof && r->rc == 0)
        r->eof_rc = h1_resp_eof(&p);
    r->error = p.error;
    r->status = p.status;
    r->minor = p.minor;
    r->keep_alive = p.keep_alive;
    r->done = p.done;
    r->chunked = p.chunked;
    r->close_delimited = p.close_delimited;
    r->content_length = p.content_length;
    r->line_cap = p.line_cap;
    r->p = NULL;
    h1_resp_free(&p);
}

/* The results of two runs must not differ. */
static void same(const rec *a, const rec *b, const char *how)
{
    ck_assert_msg(a->rc == b->rc, "%s: rc %d vs %d", how, a->rc, b->rc);
    ck_assert_msg(a->eof_rc == b->eof_rc, "%s: eof %d vs %d", how, a->eof_rc, b->eof_rc);
    ck_assert_msg((a->error == NULL) == (b->error == NULL)
                  && (a->error == NULL || strcmp(a->error, b->error) == 0),
                  "%s: error '%s' vs '%s'", how, a->error ? a->error : "(none)",
                  b->error ? b->error : "(none)");
    ck_assert_msg(a->status == b->status, "%s: status %d vs %d", how, a->status, b->status);
    ck_assert_int_eq(a->minor, b->minor);
    ck_assert_msg(a->done == b->done, "%s: done %d vs %d", how, a->done, b->done);
    ck_assert_int_eq(a->n_headers_done, b->n_headers_done);
    if (a->n_headers_done > 0) {
        ck_assert_int_eq(a->keep_alive, b->keep_alive);
        ck_assert_int_eq(a->ka_at_done, b->ka_at_done);
        ck_assert_int_eq(a->chunked, b->chunked);
        ck_assert_int_eq(a->close_delimited, b->close_delimited);
    }
    ck_assert_int_eq(a->content_length, b->content_length);
    ck_assert_msg(a->htotal == b->htotal && a->hlen == b->hlen
                  && memcmp(a->headers, b->headers, a->hlen) == 0,
                  "%s: headers differ:\n%.*s\nvs\n%.*s", how,
                  (int)a->hlen, a->headers, (int)b->hlen, b->headers);
    ck_assert_msg(a->btotal == b->btotal && a->blen == b->blen
                  && memcmp(a->body, b->body, a->blen) == 0, "%s: body differs", how);
    if (a->rc == 0)
        ck_assert_msg(a->consumed == b->consumed, "%s: consumed %zu vs %zu",
                      how, a->consumed, b->consumed);
    ck_assert_int_eq(b->body_copied, 0);
}

/* Parses msg whole, one byte at a time and in every two-piece split (the
 * splits only when the message is short); all must agree. *out gets the
 * whole-feed results. */
static void parse_all_ways(rec *out, const char *msg, size_t len, int head, int eof)
{
    static rec other;
    static size_t cuts[200000];
    char how[64];

    run(out, msg, len, head, eof, NULL, 0);
    ck_assert_int_eq(out->body_copied, 0);

    ck_assert_uint_lt(len, sizeof(cuts) / sizeof(cuts[0]));
    for (size_t i = 1; i < len; i++)
        cuts[i - 1] = i;
    run(&other, msg, len, head, eof, cuts, len > 0 ? len - 1 : 0);
    same(out, &other, "byte by byte");

    size_t step = len <= 600 ? 1 : len / 97;
    for (size_t k = 0; k <= len; k += step) {
        snprintf(how, sizeof(how), "split at %zu", k);
        run(&other, msg, len, head, eof, &k, 1);
        same(out, &other, how);
    }
}

#define S(lit) lit, sizeof(lit) - 1

static rec r;

/* Parses a message that must fail with this error, however it is fed. */
static void parse_bad(const char *msg, size_t len, const char *error)
{
    parse_all_ways(&r, msg, len, 0, 0);
    ck_assert_msg(r.rc == -1, "no error for: %.*s", (int)len, msg);
    ck_assert_ptr_nonnull(r.error);
    ck_assert_str_eq(r.error, error);
    ck_assert_int_eq(r.done, 0);
}

static void parse_bad_str(const char *msg, const char *error)
{
    parse_bad(msg, strlen(msg), error);
}

START_TEST(content_length_body)
{
    parse_all_ways(&r, S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b c \t\r\n"
                         "Empty:\r\nTight:v\r\n\r\nhello"), 0, 0);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_ptr_null(r.error);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.cb_status, 200);
    ck_assert_int_eq(r.minor, 1);
    ck_assert_int_eq(r.keep_alive, 1);
    ck_assert_int_eq(r.ka_at_done, 1);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.n_headers_done, 1);
    ck_assert_int_eq(r.content_length, 5);
    ck_assert_int_eq(r.chunked, 0);
    ck_assert_int_eq(r.close_delimited, 0);
    ck_assert_uint_eq(r.consumed, sizeof("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b c \t\r\n"
                                         "Empty:\r\nTight:v\r\n\r\nhello") - 1);
    ck_assert_uint_eq(r.hlen, strlen("Content-Length=5\nX-A=b c\nEmpty=\nTight=v\n"));
    ck_assert(memcmp(r.headers, "Content-Length=5\nX-A=b c\nEmpty=\nTight=v\n", r.hlen) == 0);
    ck_assert_uint_eq(r.blen, 5);
    ck_assert(memcmp(r.body, "hello", 5) == 0);
    /* lines wholly within one feed are never copied, the body comes in one piece */
    ck_assert_uint_eq(r.line_cap, 0);
    ck_assert_uint_eq(r.n_body_calls, 1);

    /* Content-Length: 0 ends the response with the header block */
    parse_all_ways(&r, S("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), 0, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_uint_eq(r.btotal, 0);
    ck_assert_uint_eq(r.n_body_calls, 0);
}
END_TEST

START_TEST(split_feeds_agree)
{
    /* interim response, chunked body, trailers: parse_all_ways compares the
     * whole feed with one byte at a time and with every two-piece split */
    static const char msg[] =
        "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
        "HTTP/1.1 201 Created\r\nLocation: /x\r\nTransfer-Encoding: chunked\r\n"
        "Connection: keep-alive\r\n\r\n"
        "4\r\nWiki\r\n5;a=b\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\n"
        "HTTP/1.1 200 OK\r\n";
    parse_all_ways(&r, S(msg), 0, 0);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.status, 201);
    ck_assert_int_eq(r.done, 1);
    ck_assert_uint_eq(r.consumed, sizeof(msg) - 1 - strlen("HTTP/1.1 200 OK\r\n"));
    ck_assert_uint_eq(r.blen, strlen("Wikipedia in\r\n\r\nchunks."));
    ck_assert(memcmp(r.body, "Wikipedia in\r\n\r\nchunks.", r.blen) == 0);
    ck_assert_uint_eq(r.hlen, strlen("Location=/x\nTransfer-Encoding=chunked\nConnection=keep-alive\n"));
}
END_TEST

START_TEST(chunked_extensions_trailers)
{
    static const char msg[] =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        "5;name=val;x=\"q;r\"\r\nhello\r\n"
        "6 ; ext\r\n world\r\n"
        "a\r\n0123456789\r\n"
        "00000000000000000000000B\r\n-abcdefghij\r\n"
        "0;last\r\nX-Trailer: 1\r\nY: 2\r\n\r\n";
    parse_all_ways(&r, S(msg), 0, 0);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.chunked, 1);
    ck_assert_int_eq(r.close_delimited, 0);
    ck_assert_int_eq(r.keep_alive, 1);
    ck_assert_uint_eq(r.consumed, sizeof(msg) - 1);
    ck_assert_uint_eq(r.blen, strlen("hello world0123456789-abcdefghij"));
    ck_assert(memcmp(r.body, "hello world0123456789-abcdefghij", r.blen) == 0);
    /* trailers are not passed as headers */
    ck_assert_uint_eq(r.hlen, strlen("Transfer-Encoding=gzip, chunked\n"));
    ck_assert_uint_eq(r.line_cap, 0);

    /* no trailers; several TE headers, the last coding decides, case-insensitively */
    parse_all_ways(&r, S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
                         "Transfer-Encoding: ,CHUNKED, \r\n\r\n3\r\nabc\r\n0\r\n\r\n"), 0, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.chunked, 1);
    ck_assert_uint_eq(r.blen, 3);

    /* chunked, then another coding: not chunked, the body runs to eof */
    parse_all_ways(&r, S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                         "Transfer-Encoding: gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), 0, 1);
    ck_assert_int_eq(r.eof_rc, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.chunked, 0);
    ck_assert_int_eq(r.close_delimited, 1);
    ck_assert_int_eq(r.keep_alive, 0);
    ck_assert_uint_eq(r.blen, strlen("3\r\nabc\r\n0\r\n\r\n"));
}
END_TEST

START_TEST(interim_responses)
{
    static const char m100[] =
        "HTTP/1.1 100 Continue\r\nContent-Length: 7\r\nConnection: close\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    parse_all_ways(&r, S(m100), 0, 0);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.n_headers_done, 1);
    ck_assert_int_eq(r.keep_alive, 1);   /* the interim Connection: close does not count */
    ck_assert_int_eq(r.content_length, 2);
    ck_assert_uint_eq(r.hlen, strlen("Content-Length=2\n"));
    ck_assert_uint_eq(r.blen, 2);
    ck_assert_uint_eq(r.consumed, sizeof(m100) - 1);

    static const char m103[] =
        "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        "HTTP/1.1 103 Early Hints\r\nLink: </app.js>\r\n\r\n"
        "HTTP/1.1 204 No Content\r\nX: y\r\n\r\n"
        "HTTP/1.1 200 OK\r\n";
    parse_all_ways(&r, S(m103), 0, 0);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.status, 204);
    ck_assert_int_eq(r.cb_status, 204);
    ck_assert_int_eq(r.n_headers_done, 1);
    ck_assert_int_eq(r.done, 1);
    ck_assert_uint_eq(r.hlen, 4);
    ck_assert(memcmp(r.headers, "X=y\n", 4) == 0);
    ck_assert_uint_eq(r.consumed, sizeof(m103) - 1 - strlen("HTTP/1.1 200 OK\r\n"));

    /* interim headers are still checked */
    parse_bad_str("HTTP/1.1 100 Continue\r\nBad Name: x\r\n\r\n", "upstream sent an invalid header name");
    /* 101: never asked for */
    parse_bad_str("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                  "upstream sent 101 Switching Protocols, but no upgrade was asked for");
}
END_TEST

START_TEST(head_and_no_body_statuses)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 404 Not Found\r\n";
    parse_all_ways(&r, S(head), 1, 0);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.content_length, 100);
    ck_assert_int_eq(r.keep_alive, 1);
    ck_assert_uint_eq(r.btotal, 0);
    ck_assert_uint_eq(r.consumed, strlen("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"));

    /* HEAD of a chunked resource: no body either */
    parse_all_ways(&r, S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 1, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.keep_alive, 1);

    static const char m204[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\nabc";
    parse_all_ways(&r, S(m204), 0, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.keep_alive, 1);
    ck_assert_uint_eq(r.consumed, sizeof(m204) - 1 - 3);

    static const char m304[] = "HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nETag: \"x\"\r\n\r\n";
    parse_all_ways(&r, S(m304), 0, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.status, 304);
    ck_assert_int_eq(r.keep_alive, 1);
    ck_assert_uint_eq(r.btotal, 0);
    ck_assert_uint_eq(r.consumed, sizeof(m304) - 1);

    /* without a Content-Length a 204 still has no body */
    parse_all_ways(&r, S("HTTP/1.0 204 No Content\r\n\r\n"), 0, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.keep_alive, 0);
}
END_TEST

START_TEST(te_and_cl)
{
    parse_all_ways(&r, S("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "4\r\nabcd\r\n0\r\n\r\n"), 0, 0);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.chunked, 1);
    ck_assert_int_eq(r.keep_alive, 0);
    ck_assert_int_eq(r.ka_at_done, 0);
    ck_assert_uint_eq(r.blen, 4);
    ck_assert(memcmp(r.body, "abcd", 4) == 0);

    /* the other order, and TE that is not chunked: close-delimited */
    parse_all_ways(&r, S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n"
                         "abcdef"), 0, 1);
    ck_assert_int_eq(r.eof_rc, 0);
    ck_assert_int_eq(r.close_delimited, 1);
    ck_assert_int_eq(r.keep_alive, 0);
    ck_assert_uint_eq(r.blen, 6);

    /* Transfer-Encoding in HTTP/1.0: framing is honoured, the connection is not reused */
    parse_all_ways(&r, S("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "1\r\na\r\n0\r\n\r\n"), 0, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.keep_alive, 0);
}
END_TEST

START_TEST(content_length_duplicates)
{
    static const char *const ok[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabcX",
        "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabcX",
        "HTTP/1.1 200 OK\r\nContent-Length:3 ,\t3\r\nContent-Length: 003\r\n\r\nabcX",
        "HTTP/1.1 200 OK\r\nContent-Length: \t 3 \t\r\n\r\nabcX",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        parse_all_ways(&r, ok[i], strlen(ok[i]), 0, 0);
        ck_assert_msg(r.rc == 0, "%s: %s", ok[i], r.error);
        ck_assert_int_eq(r.done, 1);
        ck_assert_int_eq(r.content_length, 3);
        ck_assert_uint_eq(r.blen, 3);
        ck_assert_uint_eq(r.consumed, strlen(ok[i]) - 1);
    }

    parse_bad_str("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
                  "upstream sent several Content-Length values that differ");
    parse_bad_str("HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd",
                  "upstream sent several Content-Length values that differ");
    parse_bad_str("HTTP/1.1 200 OK\r\nContent-Length: 3, 3, 30\r\n\r\nabcd",
                  "upstream sent several Content-Length values that differ");
}
END_TEST

START_TEST(content_length_bad)
{
    static const char *const bad[] = {
        "abc", "", " ", "-1", "+3", "3 3", "0x10", "3,", ",3", "3,,3", "1.5", "3;", "\"3\"",
    };
    char msg[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(msg, sizeof(msg), "HTTP/1.1 200 OK\r\nContent-Length: %s\r\n\r\nabc", bad[i]);
        parse_bad_str(msg, "upstream sent an invalid Content-Length");
    }

    /* overflow */
    parse_bad_str("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n",
                  "upstream sent a Content-Length that is too large");
    parse_bad_str("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
                  "upstream sent a Content-Length that is too large");
    /* the largest that fits */
    parse_all_ways(&r, S("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\nab"), 0, 0);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.done, 0);
    ck_assert_int_eq(r.content_length, LLONG_MAX);
    ck_assert_uint_eq(r.blen, 2);
}
END_TEST

START_TEST(chunk_size_errors)
{
    static const char *const bad[] = {
        "", ";ext", "x", "-1", " 5", "+5", "5x", "5 x", "0x5", "5,", "\t5",
    };
    char msg[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(msg, sizeof(msg), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%s\r\nhello\r\n0\r\n\r\n", bad[i]);
        parse_bad_str(msg, "upstream sent an invalid chunk size");
    }

    parse_bad_str("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
                  "upstream sent a chunk size that is too large");
    parse_bad_str("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n123456789abcdef01\r\n",
                  "upstream sent a chunk size that is too large");
    /* the largest that fits */
    parse_all_ways(&r, S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\nab"), 0, 0);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.done, 0);
    ck_assert_uint_eq(r.blen, 2);

    /* NUL and bare CR in chunk framing */
    parse_bad(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\0b\r\nhello\r\n"),
              "upstream sent a NUL byte in the chunked body framing");
    parse_bad_str("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\r\nhello\r\n",
                  "upstream sent a bare CR in the chunked body framing");
    parse_bad_str("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: a\rb\r\n\r\n",
                  "upstream sent a bare CR in the chunked body framing");
}
END_TEST

START_TEST(chunk_data_must_end_with_crlf)
{
    parse_bad_str("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
                  "upstream sent chunk data not followed by CRLF");
    ck_assert_uint_eq(r.blen, 3);   /* the data itself was passed on */
    parse_bad_str("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\rX\n0\r\n\r\n",
                  "upstream sent chunk data not followed by CRLF");
    parse_bad_str("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\r\n0\r\n\r\n",
                  "upstream sent chunk data not followed by CRLF");
    parse_bad_str("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc0\r\n\r\n",
                  "upstream sent chunk data not followed by CRLF");
}
END_TEST

START_TEST(invalid_status_lines)
{
    static const char *const bad[] = {
        "HTTP/2 200 OK", "HTTP/2.0 200 OK", "HTTP/1.1 20 OK", "HTTP/1.1 099 Nope",
        "HTTP/1.1 000 Zero", "HTTP/1.1 2000 OK", "HTTP/1.1 200OK", "http/1.1 200 OK",
        "HTTP/1.1  200 OK", "HTTP/1.10 200 OK", "HTTP/1.x 200 OK", "HTTP/1 200 OK",
        "HTTP/1.1 -20 OK", "HTTP/1.1 2a0 OK", "HTTP/1.1\t200 OK", "HTTP/1.1", "HTTP/1.1 ",
        "HTTP/1.1 20", " HTTP/1.1 200 OK", "garbage", "", "SSH-2.0-OpenSSH_9.2",
    };
    char msg[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(msg, sizeof(msg), "%s\r\nContent-Length: 0\r\n\r\n", bad[i]);
        parse_bad_str(msg, "upstream sent an invalid status line");
    }

    /* a peer that speaks something else fails before any line end */
    parse_bad_str("\x16\x03\x01\x02\x00\x01\x00\x01", "upstream sent an invalid status line");
    parse_bad_str("HTTP/2", "upstream sent an invalid status line");

    static const struct { const char *line; int status, minor; } ok[] = {
        { "HTTP/1.1 200", 200, 1 }, { "HTTP/1.1 200 ", 200, 1 },
        { "HTTP/1.0 999 Whatever\tyou say", 999, 0 }, { "HTTP/1.9 404 Not  Found ", 404, 9 },
        { "HTTP/1.1 100", 100, 1 },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(msg, sizeof(msg), "%s\r\nContent-Length: 0\r\n\r\n", ok[i].line);
        parse_all_ways(&r, msg, strlen(msg), 0, 0);
        ck_assert_msg(r.rc == 0, "%s: %s", ok[i].line, r.error);
        ck_assert_int_eq(r.status, ok[i].status);
        ck_assert_int_eq(r.minor, ok[i].minor);
        /* a 100 is interim: still waiting for the final response */
        ck_assert_int_eq(r.done, ok[i].status != 100);
    }
}
END_TEST

START_TEST(header_line_errors)
{
    parse_bad_str("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", "upstream sent a folded header line (obs-fold)");
    parse_bad_str("HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\n\r\n", "upstream sent a folded header line (obs-fold)");
    parse_bad_str("HTTP/1.1 200 OK\r\n X: a\r\n\r\n", "upstream sent a folded header line (obs-fold)");
    parse_bad_str("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "upstream sent a header line without a colon");
    parse_bad_str("HTTP/1.1 200 OK\r\nX: a\r\nNo colon here\n\n", "upstream sent a header line without a colon");
    parse_bad_str("HTTP/1.1 200 OK\r\nX : a\r\n\r\n", "upstream sent an invalid header name");
    parse_bad_str("HTTP/1.1 200 OK\r\nX\t: a\r\n\r\n", "upstream sent an invalid header name");
    parse_bad_str("HTTP/1.1 200 OK\r\n: a\r\n\r\n", "upstream sent an invalid header name");
    parse_bad_str("HTTP/1.1 200 OK\r\nX(y): a\r\n\r\n", "upstream sent an invalid header name");
    parse_bad_str("HTTP/1.1 200 OK\r\nX\x80: a\r\n\r\n", "upstream sent an invalid header name");
    parse_bad(S("HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n"), "upstream sent a NUL byte in the response headers");
    parse_bad(S("HTTP/1.1 200 OK\r\nX\0: ab\r\n\r\n"), "upstream sent a NUL byte in the response headers");
    parse_bad(S("HTTP/1.1 200 OK\0\r\n\r\n"), "upstream sent a NUL byte in the response headers");
    parse_bad_str("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "upstream sent a bare CR in the response headers");
    parse_bad_str("HTTP/1.1 200 OK\r\nX: ab\r\r\n\r\n", "upstream sent a bare CR in the response headers");
    parse_bad_str("HTTP/1.1 200 OK\r\nX: ab\r\n\r\r\n", "upstream sent a bare CR in the response headers");

    /* all the tchars are fine in a name; obs-text is fine in a value */
    parse_all_ways(&r, S("HTTP/1.1 200 OK\r\n!#$%&'*+-.^_`|~09azAZ: \x80\xff v\r\nContent-Length: 0\r\n\r\n"), 0, 0);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert(memcmp(r.headers, "!#$%&'*+-.^_`|~09azAZ=\x80\xff v\n", 27) == 0);
}
END_TEST

/* A header block of `total` bytes: status line, filler headers of about
 * `each` bytes, the empty line. */
static char *header_block(size_t total, size_t each, size_t *len)
{
    static const char status[] = "HTTP/1.1 200 OK\r\n";
    char *m = malloc(total + 64);
    size_t at = strlen(status);

    ck_assert_ptr_nonnull(m);
    memcpy(m, status, at);
    while (at < total - 2) {
        size_t room = total - 2 - at;       /* bytes left for header lines */
        size_t line = room < each + 7 || room - each < 7 ? room : each;
        ck_assert_uint_ge(line, 5);
        memcpy(m + at, "X: ", 3);
        memset(m + at + 3, 'a', line - 5);
        memcpy(m + at + line - 2, "\r\n", 2);
        at += line;
    }
    memcpy(m + at, "\r\n", 2);
    at += 2;
    ck_assert_uint_eq(at, total);
    memcpy(m + at, "body", 4);
    *len = at + 4;
    return m;
}

START_TEST(header_block_limit)
{
    const char *err = "upstream response headers larger than 65536 bytes";
    size_t len;
    char *m;

    /* one huge header: exactly the limit is fine, one byte more is not */
    m = header_block(H1_MAX_HEADER_BYTES, 100000, &len);
    parse_all_ways(&r, m, len, 0, 1);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.eof_rc, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_uint_eq(r.blen, 4);
    free(m);

    m = header_block(H1_MAX_HEADER_BYTES + 1, 100000, &len);
    parse_bad(m, len, err);
    free(m);

    /* many small ones */
    m = header_block(H1_MAX_HEADER_BYTES, 20, &len);
    parse_all_ways(&r, m, len, 0, 1);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.done, 1);
    free(m);

    m = header_block(H1_MAX_HEADER_BYTES + 1, 20, &len);
    parse_bad(m, len, err);
    free(m);

    m = header_block(3 * H1_MAX_HEADER_BYTES, 30, &len);
    parse_bad(m, len, err);
    free(m);

    /* the error comes as soon as the limit is reached without a line end
     * (here one feed), and the split-line buffer stays within the limit */
    m = header_block(2 * H1_MAX_HEADER_BYTES, 100000, &len);
    h1_resp p;
    h1_resp_init(&p, 0);
    ck_assert_int_eq(h1_resp_feed(&p, m, H1_MAX_HEADER_BYTES - 1, NULL, NULL), H1_MAX_HEADER_BYTES - 1);
    ck_assert_int_eq(h1_resp_feed(&p, m + H1_MAX_HEADER_BYTES - 1, 1, NULL, NULL), -1);
    ck_assert_str_eq(p.error, err);
    h1_resp_free(&p);
    h1_resp_init(&p, 0);
    ck_assert_int_eq(h1_resp_feed(&p, m, H1_MAX_HEADER_BYTES, NULL, NULL), -1);
    ck_assert_str_eq(p.error, err);
    h1_resp_free(&p);
    free(m);

    m = malloc(2 * H1_MAX_HEADER_BYTES);
    ck_assert_ptr_nonnull(m);
    memcpy(m, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(m + 20, 'a', 2 * H1_MAX_HEADER_BYTES - 20);
    h1_resp_init(&p, 0);
    ssize_t rc = 0;
    size_t at = 0;
    while (rc >= 0 && at < 2 * H1_MAX_HEADER_BYTES) {
        rc = h1_resp_feed(&p, m + at, 1000, NULL, NULL);
        at += 1000;
        ck_assert_uint_le(p.line_cap, H1_MAX_HEADER_BYTES);
    }
    ck_assert_int_eq(rc, -1);
    ck_assert_uint_le(at, H1_MAX_HEADER_BYTES + 1000);
    ck_assert_str_eq(p.error, err);
    h1_resp_free(&p);
    free(m);

    /* the limit is per response: interim blocks do not add up */
    h1_resp_init(&p, 0);
    for (int i = 0; i < 3; i++) {
        m = header_block(H1_MAX_HEADER_BYTES, 1000, &len);
        memcpy(m + 9, "103", 3);
        ck_assert_int_eq(h1_resp_feed(&p, m, len - 4, NULL, NULL), (ssize_t)(len - 4));
        free(m);
    }
    ck_assert_int_eq(h1_resp_feed(&p, S("HTTP/1.1 204 No Content\r\n\r\n"), NULL, NULL), 27);
    ck_assert_int_eq(p.done, 1);
    h1_resp_free(&p);
}
END_TEST

START_TEST(chunked_line_limits)
{
    size_t len = 200 + 2 * H1_MAX_HEADER_BYTES;
    char *m = malloc(len);
    ck_assert_ptr_nonnull(m);

    /* a chunk-size line with endless extensions */
    int at = snprintf(m, len, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;");
    memset(m + at, 'e', len - (size_t)at);
    parse_bad(m, len, "upstream sent a chunk-size line longer than 65536 bytes");

    /* trailers: up to the limit is fine, beyond is not */
    for (int over = 0; over <= 1; over++) {
        at = snprintf(m, len, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: ");
        size_t start = (size_t)at - 3;      /* where the trailer section starts */
        size_t fill = H1_MAX_HEADER_BYTES - 3 - 2 - 2 + (size_t)over;
        memset(m + at, 'v', fill);
        memcpy(m + at + fill, "\r\n\r\n", 4);
        size_t mlen = (size_t)at + fill + 4;
        ck_assert_uint_eq(mlen - start, H1_MAX_HEADER_BYTES + (size_t)over);
        parse_all_ways(&r, m, mlen, 0, 0);
        if (over) {
            ck_assert_int_eq(r.rc, -1);
            ck_assert_str_eq(r.error, "upstream response trailers larger than 65536 bytes");
        } else {
            ck_assert_int_eq(r.rc, 0);
            ck_assert_int_eq(r.done, 1);
            ck_assert_uint_eq(r.consumed, mlen);
        }
    }
    free(m);
}
END_TEST

START_TEST(keep_alive_rules)
{
    static const struct { const char *headers; int ka; } cases[] = {
        { "HTTP/1.1 200 OK\r\n", 1 },
        { "HTTP/1.1 200 OK\r\nConnection: close\r\n", 0 },
        { "HTTP/1.1 200 OK\r\nConnection: CLOSE\r\n", 0 },
        { "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\n", 0 },
        { "HTTP/1.1 200 OK\r\nConnection: foo,  close ,bar\r\n", 0 },
        { "HTTP/1.1 200 OK\r\nConnection: foo\r\nConnection: close\r\n", 0 },
        { "HTTP/1.1 200 OK\r\nConnection: closed\r\n", 1 },
        { "HTTP/1.1 200 OK\r\nConnection: upgrade, keep-alive\r\n", 1 },
        { "HTTP/1.1 200 OK\r\nX-Connection: close\r\n", 1 },
        { "HTTP/1.9 200 OK\r\n", 1 },
        { "HTTP/1.0 200 OK\r\n", 0 },
        { "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n", 1 },
        { "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n", 1 },
        { "HTTP/1.0 200 OK\r\nConnection: foo, keep-alive\r\n", 1 },
        { "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\n", 0 },
        { "HTTP/1.0 200 OK\r\nConnection: keep-alive-ish\r\n", 0 },
        { "HTTP/1.0 200 OK\r\nConnection: close\r\n", 0 },
    };
    char msg[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(msg, sizeof(msg), "%sContent-Length: 2\r\n\r\nok", cases[i].headers);
        parse_all_ways(&r, msg, strlen(msg), 0, 0);
        ck_assert_int_eq(r.rc, 0);
        ck_assert_int_eq(r.done, 1);
        ck_assert_msg(r.keep_alive == cases[i].ka, "%s: keep_alive %d", cases[i].headers, r.keep_alive);
        ck_assert_int_eq(r.ka_at_done, cases[i].ka);

        /* without framing the body runs to eof: never kept alive */
        snprintf(msg, sizeof(msg), "%s\r\nok", cases[i].headers);
        parse_all_ways(&r, msg, strlen(msg), 0, 1);
        ck_assert_int_eq(r.eof_rc, 0);
        ck_assert_int_eq(r.close_delimited, 1);
        ck_assert_int_eq(r.keep_alive, 0);
        ck_assert_int_eq(r.ka_at_done, 0);
    }
}
END_TEST

START_TEST(close_delimited_body)
{
    static const char msg[] = "HTTP/1.1 200 OK\r\nX: y\r\n\r\nsome body, more";
    const size_t cut = sizeof(msg) - 1 - strlen(", more");
    h1_resp p;
    r.stop_at = 0;
    r.blen = r.btotal = 0;
    r.in_lo = msg;
    r.in_hi = msg + sizeof(msg);
    r.p = &p;

    h1_resp_init(&p, 0);
    ck_assert_int_eq(h1_resp_feed(&p, msg, cut, &cbs, &r), (ssize_t)cut);
    ck_assert_int_eq(p.close_delimited, 1);
    ck_assert_int_eq(p.keep_alive, 0);
    ck_assert_int_eq(p.done, 0);
    ck_assert_int_eq(h1_resp_feed(&p, msg + cut, sizeof(msg) - 1 - cut, &cbs, &r),
                     (ssize_t)(sizeof(msg) - 1 - cut));
    ck_assert_int_eq(h1_resp_feed(&p, msg, 0, &cbs, &r), 0);
    ck_assert_int_eq(h1_resp_eof(&p), 0);
    ck_assert_int_eq(p.done, 1);
    ck_assert_ptr_null(p.error);
    ck_assert_uint_eq(r.blen, strlen("some body, more"));
    ck_assert(memcmp(r.body, "some body, more", r.blen) == 0);
    /* done: nothing more is taken, eof is still fine */
    ck_assert_int_eq(h1_resp_feed(&p, S("more"), &cbs, &r), 0);
    ck_assert_int_eq(h1_resp_eof(&p), 0);
    h1_resp_free(&p);

    /* an empty close-delimited body (HTTP/1.0) */
    parse_all_ways(&r, S("HTTP/1.0 200 OK\r\n\r\n"), 0, 1);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.eof_rc, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_uint_eq(r.btotal, 0);
}
END_TEST

START_TEST(eof_errors)
{
    static const struct { const char *msg; const char *error; } cases[] = {
        { "", "upstream closed the connection before responding" },
        { "H", "upstream closed the connection inside the response headers" },
        { "HTTP/1.1 20", "upstream closed the connection inside the response headers" },
        { "HTTP/1.1 200 OK\r\n", "upstream closed the connection inside the response headers" },
        { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", "upstream closed the connection inside the response headers" },
        { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r", "upstream closed the connection inside the response headers" },
        { "HTTP/1.1 100 Continue\r\n\r\n", "upstream closed the connection inside the response headers" },
        { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "upstream response body cut short" },
        { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhell", "upstream response body cut short" },
        { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "upstream response body cut short" },
        { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5", "upstream response body cut short" },
        { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "upstream response body cut short" },
        { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello", "upstream response body cut short" },
        { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r", "upstream response body cut short" },
        { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n", "upstream response body cut short" },
        { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: v\r\n", "upstream response body cut short" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parse_all_ways(&r, cases[i].msg, strlen(cases[i].msg), 0, 1);
        ck_assert_int_eq(r.rc, 0);
        ck_assert_msg(r.eof_rc == -1, "%s: eof %d", cases[i].msg, r.eof_rc);
        ck_assert_str_eq(r.error, cases[i].error);
        ck_assert_int_eq(r.done, 0);
    }

    /* after an eof error, feeds fail */
    static const char cut[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab";
    h1_resp p;
    h1_resp_init(&p, 0);
    ck_assert_int_eq(h1_resp_feed(&p, S(cut), NULL, NULL), (ssize_t)(sizeof(cut) - 1));
    ck_assert_int_eq(h1_resp_eof(&p), -1);
    ck_assert_int_eq(h1_resp_feed(&p, S("cde"), NULL, NULL), -1);
    ck_assert_int_eq(h1_resp_eof(&p), -1);
    ck_assert_str_eq(p.error, "upstream response body cut short");
    h1_resp_free(&p);

    /* a zero-length feed is not a byte of response */
    h1_resp_init(&p, 0);
    ck_assert_int_eq(h1_resp_feed(&p, "", 0, NULL, NULL), 0);
    ck_assert_int_eq(p.got_any, 0);
    ck_assert_int_eq(h1_resp_eof(&p), -1);
    ck_assert_str_eq(p.error, "upstream closed the connection before responding");
    h1_resp_free(&p);
}
END_TEST

START_TEST(callback_stops)
{
    static const char msg[] = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nContent-Length: 4\r\n\r\nbody";
    for (int stop = 1; stop <= 3; stop++) {
        r.stop_at = stop;
        run(&r, S(msg), 0, 0, NULL, 0);
        ck_assert_int_eq(r.rc, -1);
        ck_assert_str_eq(r.error, "stopped");
        ck_assert_int_eq(r.done, 0);
        ck_assert_int_eq(r.n_headers_done, stop >= 2);
        ck_assert_uint_eq(r.hlen, stop == 1 ? 4 : strlen("A=1\nB=2\nContent-Length=4\n"));
        ck_assert_uint_eq(r.blen, stop == 3 ? 4 : 0);
    }
    r.stop_at = 0;

    /* stopping in on_headers_done of a response without body */
    r.stop_at = 2;
    run(&r, S("HTTP/1.1 204 No Content\r\n\r\n"), 0, 0, NULL, 0);
    ck_assert_int_eq(r.rc, -1);
    ck_assert_int_eq(r.done, 0);
    ck_assert_str_eq(r.error, "stopped");
    r.stop_at = 0;

    /* a stopped parser stays stopped */
    h1_resp p;
    h1_resp_cbs stop_body = { NULL, NULL, on_body };
    r.stop_at = 3;
    r.in_lo = msg;
    r.in_hi = msg + sizeof(msg);
    h1_resp_init(&p, 0);
    ck_assert_int_eq(h1_resp_feed(&p, S(msg), &stop_body, &r), -1);
    ck_assert_int_eq(h1_resp_feed(&p, S(msg), &stop_body, &r), -1);
    ck_assert_int_eq(h1_resp_eof(&p), -1);
    ck_assert_str_eq(p.error, "stopped");
    h1_resp_free(&p);
    r.stop_at = 0;

    /* no callbacks at all */
    h1_resp_cbs none = { NULL, NULL, NULL };
    h1_resp_init(&p, 0);
    ck_assert_int_eq(h1_resp_feed(&p, S(msg), &none, NULL), (ssize_t)(sizeof(msg) - 1));
    ck_assert_int_eq(p.done, 1);
    h1_resp_free(&p);
    h1_resp_init(&p, 0);
    ck_assert_int_eq(h1_resp_feed(&p, S(msg), NULL, NULL), (ssize_t)(sizeof(msg) - 1));
    ck_assert_int_eq(p.done, 1);
    ck_assert_int_eq(p.status, 200);
    h1_resp_free(&p);
}
END_TEST

START_TEST(pipelined_responses)
{
    static const char msg[] =
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n"
        "HTTP/1.1 204 No Content\r\n\r\n";
    const size_t first = strlen("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
    const size_t second = strlen("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n");

    parse_all_ways(&r, S(msg), 0, 0);
    ck_assert_uint_eq(r.consumed, first);
    ck_assert_uint_eq(r.blen, 3);
    parse_all_ways(&r, msg + first, sizeof(msg) - 1 - first, 0, 0);
    ck_assert_uint_eq(r.consumed, second);
    ck_assert_uint_eq(r.blen, 2);
    parse_all_ways(&r, msg + first + second, sizeof(msg) - 1 - first - second, 0, 0);
    ck_assert_uint_eq(r.consumed, sizeof(msg) - 1 - first - second);
    ck_assert_int_eq(r.status, 204);

    /* one parser reused: free, init, feed the rest */
    h1_resp p;
    size_t at = 0;
    int n = 0;
    h1_resp_init(&p, 0);
    while (at < sizeof(msg) - 1) {
        ssize_t rc = h1_resp_feed(&p, msg + at, sizeof(msg) - 1 - at, NULL, NULL);
        ck_assert_int_gt(rc, 0);
        ck_assert_int_eq(p.done, 1);
        ck_assert_int_eq(h1_resp_feed(&p, msg + at + rc, 1, NULL, NULL), 0);   /* done: takes nothing */
        at += (size_t)rc;
        n++;
        h1_resp_free(&p);
        h1_resp_init(&p, 0);
    }
    ck_assert_int_eq(n, 3);
    h1_resp_free(&p);
}
END_TEST

START_TEST(bare_lf_line_ends)
{
    parse_all_ways(&r, S("HTTP/1.1 200 OK\nContent-Length: 2\nX: y \n\nok"), 0, 0);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_uint_eq(r.hlen, strlen("Content-Length=2\nX=y\n"));
    ck_assert(memcmp(r.body, "ok", 2) == 0);

    parse_all_ways(&r, S("HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\n\r\n"
                         "3;x\nabc\n2\r\nde\r\n0\nT: 1\n\nNEXT"), 0, 0);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_uint_eq(r.blen, 5);
    ck_assert(memcmp(r.body, "abcde", 5) == 0);
    ck_assert_uint_eq(r.consumed, strlen("HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\n\r\n"
                                         "3;x\nabc\n2\r\nde\r\n0\nT: 1\n\n"));
}
END_TEST

START_TEST(split_lines_and_reinit)
{
    h1_resp p;
    h1_resp_init(&p, 0);
    ck_assert_int_eq(h1_resp_feed(&p, S("HTTP/1.1 200 OK\r\nX-Long: abc"), NULL, NULL), 28);
    ck_assert_ptr_nonnull(p.line);      /* the split line is kept */
    ck_assert_int_eq(p.got_any, 1);
    h1_resp_free(&p);
    ck_assert_ptr_null(p.line);
    h1_resp_init(&p, 1);
    ck_assert_ptr_null(p.line);
    ck_assert_int_eq(p.got_any, 0);
    ck_assert_int_eq(h1_resp_feed(&p, S("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"), NULL, NULL), 38);
    ck_assert_int_eq(p.done, 1);
    ck_assert_ptr_null(p.line);
    h1_resp_free(&p);
    h1_resp_free(&p);                   /* twice is harmless */
}
END_TEST

static Suite *h1_response_suite(void)
{
    Suite *s = suite_create("h1_response");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, content_length_body);
    tcase_add_test(tc, split_feeds_agree);
    tcase_add_test(tc, chunked_extensions_trailers);
    tcase_add_test(tc, interim_responses);
    tcase_add_test(tc, head_and_no_body_statuses);
    tcase_add_test(tc, te_and_cl);
    tcase_add_test(tc, content_length_duplicates);
    tcase_add_test(tc, content_length_bad);
    tcase_add_test(tc, chunk_size_errors);
    tcase_add_test(tc, chunk_data_must_end_with_crlf);
    tcase_add_test(tc, invalid_status_lines);
    tcase_add_test(tc, header_line_errors);
    tcase_add_test(tc, header_block_limit);
    tcase_add_test(tc, chunked_line_limits);
    tcase_add_test(tc, keep_alive_rules);
    tcase_add_test(tc, close_delimited_body);
    tcase_add_test(tc, eof_errors);
    tcase_add_test(tc, callback_stops);
    tcase_add_test(tc, pipelined_responses);
    tcase_add_test(tc, bare_lf_line_ends);
    tcase_add_test(tc, split_lines_and_reinit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(h1_response_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
