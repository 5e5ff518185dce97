/* upstream against real sockets on 127.0.0.1 (ports picked at run time),
 * with the servers on the same event loop: libevent's evhttp for normal
 * replies (plain and TLS), raw listeners for misbehaviour. The TLS material
 * is made at start-up with the openssl command line in a temporary dir. */
#include <check.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "log.h"   /* /usr/include/evhtp has a log.h too */
#include "upstream.h"

/* ---- TLS material (made once in main) ----------------------------------- */

static char tls_dir[64];
static char path_ca[128], path_ca2[128], path_srv_cert[128], path_srv_key[128],
            path_other_cert[128], path_other_key[128], path_cli_cert[128], path_cli_key[128];

static void make_tls_material(void)
{
    static const char cnf[] =
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = mb-test\n"
        "[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "[srv]\nbasicConstraints = critical,CA:FALSE\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n"
        "[other]\nbasicConstraints = critical,CA:FALSE\nsubjectAltName = DNS:otherhost\n"
        "[cli]\nbasicConstraints = critical,CA:FALSE\nextendedKeyUsage = clientAuth\n";
    char cmd[2048];
    FILE *f;

    strcpy(tls_dir, "/tmp/mb-test-upstream-XXXXXX");
    if (!mkdtemp(tls_dir)) {
        perror("mkdtemp");
        exit(99);
    }
    snprintf(cmd, sizeof(cmd), "%s/openssl.cnf", tls_dir);
    f = fopen(cmd, "w");
    if (!f || fputs(cnf, f) < 0 || fclose(f) != 0) {
        perror("openssl.cnf");
        exit(99);
    }
#define KEY "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
    snprintf(cmd, sizeof(cmd),
             "cd %s && ("
             "openssl req -x509 -config openssl.cnf -extensions ca " KEY
             " -subj /CN=mb-test-ca -keyout ca.key -out ca.pem && "
             "openssl req -x509 -config openssl.cnf -extensions ca " KEY
             " -subj /CN=mb-test-other-ca -keyout ca2.key -out ca2.pem && "
             "openssl req -x509 -config openssl.cnf -extensions srv " KEY
             " -subj /CN=127.0.0.1 -CA ca.pem -CAkey ca.key -keyout srv.key -out srv.pem && "
             "openssl req -x509 -config openssl.cnf -extensions other " KEY
             " -subj /CN=otherhost -CA ca.pem -CAkey ca.key -keyout other.key -out other.pem && "
             "openssl req -x509 -config openssl.cnf -extensions cli " KEY
             " -subj /CN=mb-test-client -CA ca.pem -CAkey ca.key -keyout cli.key -out cli.pem"
             ") >openssl.log 2>&1",
             tls_dir);
#undef KEY
    if (system(cmd) != 0) {
        fprintf(stderr, "making the test certificates failed (see %s/openssl.log): %s\n", tls_dir, cmd);
        exit(99);
    }
    snprintf(path_ca, sizeof(path_ca), "%s/ca.pem", tls_dir);
    snprintf(path_ca2, sizeof(path_ca2), "%s/ca2.pem", tls_dir);
    snprintf(path_srv_cert, sizeof(path_srv_cert), "%s/srv.pem", tls_dir);
    snprintf(path_srv_key, sizeof(path_srv_key), "%s/srv.key", tls_dir);
    snprintf(path_other_cert, sizeof(path_other_cert), "%s/other.pem", tls_dir);
    snprintf(path_other_key, sizeof(path_other_key), "%s/other.key", tls_dir);
    snprintf(path_cli_cert, sizeof(path_cli_cert), "%s/cli.pem", tls_dir);
    snprintf(path_cli_key, sizeof(path_cli_key), "%s/cli.key", tls_dir);
}

static void remove_tls_material(void)
{
    char cmd[128];
    if (!tls_dir[0])
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tls_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tls_dir);
}

/* ---- the loop and results ------------------------------------------------ */

static struct event_base *base;
static mb_upstream *up;
static int in_upstream_call;   /* callbacks must never run inside upstream_call */
static int n_done;
static int timed_out;

typedef struct {
    int     called;
    mb_xfer xfer;
    int     status;
    char   *body;
    size_t  body_len;
    char    error[512];
    int     attempts;
    int     maybe_done;
    double  seconds;
} result;

#define MAX_RESULTS 64
static result R[MAX_RESULTS];

static void on_done(const mb_response *resp, void *arg)
{
    result *r = arg;

    ck_assert_int_eq(in_upstream_call, 0);
    ck_assert_ptr_nonnull(resp->body);
    ck_assert_ptr_nonnull(resp->error);
    ck_assert_int_eq(resp->body[resp->body_len], '\0');
    r->called++;
    r->xfer = resp->xfer;
    r->status = resp->status;
    free(r->body);
    r->body = malloc(resp->body_len + 1);
    ck_assert_ptr_nonnull(r->body);
    memcpy(r->body, resp->body, resp->body_len + 1);
    r->body_len = resp->body_len;
    snprintf(r->error, sizeof(r->error), "%s", resp->error);
    r->attempts = resp->attempts;
    r->maybe_done = resp->maybe_done;
    r->seconds = resp->seconds;
    n_done++;
}

static mb_call *start_cb(const char *method, const char *path, const char *const *headers,
                         const char *body, size_t body_len, mb_call_cb cb, void *arg)
{
    mb_request req = { .method = method, .path = path, .headers = headers,
                       .body = body, .body_len = body_len };
    in_upstream_call = 1;
    mb_call *c = upstream_call(up, &req, cb, arg);
    in_upstream_call = 0;
    ck_assert_ptr_nonnull(c);
    return c;
}

static mb_call *start(const char *method, const char *path, result *r)
{
    return start_cb(method, path, NULL, NULL, 0, on_done, r);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    timed_out = 1;
    event_base_loopbreak(base);
}

/* Runs the loop until n_done reaches want (fails after max_ms). */
static void run_until_done(int want, long max_ms)
{
    struct event *dl = evtimer_new(base, on_deadline, NULL);
    struct timeval tv = { max_ms / 1000, (max_ms % 1000) * 1000 };
    timed_out = 0;
    evtimer_add(dl, &tv);
    while (n_done < want && !timed_out)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(dl);
    ck_assert_msg(!timed_out, "timed out: %d of %d calls done", n_done, want);
}

static void run_for(long ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static mb_upstream_opts default_opts(const char *base_url)
{
    mb_upstream_opts o = {
        .base_url = base_url,
        .connect_timeout_ms = 1000,
        .request_timeout_ms = 3000,
        .retries = 2,
        .max_connections = 8,
        .max_response_bytes = 65536,
    };
    return o;
}

static void new_upstream(const mb_upstream_opts *o)
{
    up = upstream_new(base, o);
    ck_assert_ptr_nonnull(up);
}

static int port_of(evutil_socket_t fd)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    return ntohs(sin.sin_port);
}

/* ---- the evhttp server (plain or TLS) ------------------------------------------ */

typedef struct {
    struct evhttp *http;
    SSL_CTX       *ssl_ctx;
    int            port;
    int            connections;   /* TCP connections accepted */
    int            requests;
    int            resumed;       /* TLS sessions resumed */
    int            peer_cert;     /* a verified client certificate was seen */
    char           method[16];
    char          *body;
    size_t         body_len;
    char           auth[128];
    char           reqid[128];
    char           ctype[128];
    char           clen[32];
    int            had_expect;
} http_server;

static http_server S;

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_HEAD: return "HEAD";
    default: return "OTHER";
    }
}

static void copy_header(struct evkeyvalq *h, const char *name, char *out, size_t len)
{
    const char *v = evhttp_find_header(h, name);
    snprintf(out, len, "%s", v ? v : "");
}

static void send_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

static void on_http_request(struct evhttp_request *req, void *arg)
{
    http_server *s = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evbuffer *body = evhttp_request_get_input_buffer(req);

    s->requests++;
    snprintf(s->method, sizeof(s->method), "%s", method_name(evhttp_request_get_command(req)));
    copy_header(in, "X-Auth-Token", s->auth, sizeof(s->auth));
    copy_header(in, "X-Openstack-Request-Id", s->reqid, sizeof(s->reqid));
    copy_header(in, "Content-Type", s->ctype, sizeof(s->ctype));
    copy_header(in, "Content-Length", s->clen, sizeof(s->clen));
    s->had_expect = evhttp_find_header(in, "Expect") != NULL;
    free(s->body);
    s->body_len = evbuffer_get_length(body);
    s->body = malloc(s->body_len + 1);
    evbuffer_remove(body, s->body, s->body_len);

    if (s->ssl_ctx) {
        struct bufferevent *bev = evhttp_connection_get_bufferevent(evhttp_request_get_connection(req));
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        if (ssl && SSL_session_reused(ssl))
            s->resumed++;
        X509 *peer = ssl ? SSL_get1_peer_certificate(ssl) : NULL;
        if (peer && SSL_get_verify_result(ssl) == X509_V_OK)
            s->peer_cert = 1;
        X509_free(peer);
    }

    if (strcmp(uri, "/ok") == 0) {
        send_text(req, 200, "OK", "hello world");
    } else if (strcmp(uri, "/close") == 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        send_text(req, 200, "OK", "bye");
    } else if (strncmp(uri, "/v2/images/", 11) == 0 && strstr(uri, "?q=1")) {   /* echoes the path */
        send_text(req, 200, "OK", uri);
    } else if (strcmp(uri, "/missing") == 0) {
        send_text(req, 404, "Not Found", "{\"error\": \"no such image\"}");
    } else if (strcmp(uri, "/headers") == 0) {
        if (strcmp(s->auth, "tok-123") != 0)
            send_text(req, 400, "Bad Request", "no token");
        else
            send_text(req, 200, "OK", s->reqid);
    } else if (strcmp(uri, "/echo") == 0) {
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, s->body, s->body_len);
        evhttp_send_reply(req, 201, "Created", b);
        evbuffer_free(b);
    } else if (strcmp(uri, "/delete") == 0) {
        if (evhttp_request_get_command(req) == EVHTTP_REQ_DELETE)
            evhttp_send_reply(req, 204, "No Content", NULL);
        else
            send_text(req, 405, "Method Not Allowed", "{}");
    } else if (strcmp(uri, "/big") == 0) {
        struct evbuffer *b = evbuffer_new();
        static char chunk[1000];
        memset(chunk, 'x', sizeof(chunk));
        for (int i = 0; i < 100; i++)
            evbuffer_add(b, chunk, sizeof(chunk));
        evhttp_send_reply(req, 200, "OK", b);
        evbuffer_free(b);
    } else if (strcmp(uri, "/bigchunked") == 0) {
        static char chunk[1000];
        memset(chunk, 'y', sizeof(chunk));
        evhttp_send_reply_start(req, 200, "OK");
        struct evbuffer *b = evbuffer_new();
        for (int i = 0; i < 100; i++) {
            evbuffer_add(b, chunk, sizeof(chunk));
            evhttp_send_reply_chunk(req, b);
        }
        evbuffer_free(b);
        evhttp_send_reply_end(req);
    } else {
        send_text(req, 404, "Not Found", "{}");
    }
}

static struct bufferevent *on_new_conn(struct event_base *b, void *arg)
{
    http_server *s = arg;
    s->connections++;
    if (!s->ssl_ctx)
        return bufferevent_socket_new(b, -1, BEV_OPT_CLOSE_ON_FREE);
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        b, -1, SSL_new(s->ssl_ctx), BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* cert/key NULL: plain HTTP. client_ca: require a client certificate. */
static void http_server_start(const char *cert, const char *key, const char *client_ca)
{
    memset(&S, 0, sizeof(S));
    S.http = evhttp_new(base);
    ck_assert_ptr_nonnull(S.http);
    evhttp_set_allowed_methods(S.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                       EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(S.http, on_http_request, &S);
    evhttp_set_bevcb(S.http, on_new_conn, &S);
    if (cert) {
        S.ssl_ctx = SSL_CTX_new(TLS_server_method());
        ck_assert_ptr_nonnull(S.ssl_ctx);
        ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(S.ssl_ctx, cert), 1);
        ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(S.ssl_ctx, key, SSL_FILETYPE_PEM), 1);
        ck_assert_int_eq(SSL_CTX_check_private_key(S.ssl_ctx), 1);
        if (client_ca) {
            ck_assert_int_eq(SSL_CTX_load_verify_locations(S.ssl_ctx, client_ca, NULL), 1);
            SSL_CTX_set_verify(S.ssl_ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
    }
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(S.http, "127.0.0.1", 0);
    ck_assert_ptr_nonnull(bs);
    S.port = port_of(evhttp_bound_socket_get_fd(bs));
}

static void http_server_stop(void)
{
    if (S.http)
        evhttp_free(S.http);
    if (S.ssl_ctx)
        SSL_CTX_free(S.ssl_ctx);
    free(S.body);
    memset(&S, 0, sizeof(S));
}

/* ---- raw misbehaving servers -------------------------------------------------- */

typedef enum {
    RAW_CLOSE,        /* accept and close at once */
    RAW_RESET,        /* accept and reset (SO_LINGER 0) at once */
    RAW_SILENT,       /* accept and never answer */
    RAW_REPLY,        /* read the request head, write `reply`, close */
    RAW_DROP,         /* read the request head, close without a reply */
    RAW_KEEP_THEN_DROP /* answer a connection's first request with `reply` (kept
                          alive), then close it when the next one arrives */
} raw_mode;

#define MAX_HELD 16
typedef struct {
    struct evconnlistener *lev;
    SSL_CTX               *ssl_ctx;   /* set: TLS handshake first */
    raw_mode               mode;
    const char            *reply;
    int                    port;
    int                    accepts;
    evutil_socket_t        held[MAX_HELD];
    int                    n_held;
    struct bufferevent    *bevs[MAX_HELD];
    int                    answered[MAX_HELD];
    int                    n_bevs;
    int                    requests;
} raw_server;

static raw_server W;

static void raw_close_bev(struct bufferevent *bev)
{
    for (int i = 0; i < W.n_bevs; i++)
        if (W.bevs[i] == bev)
            W.bevs[i] = NULL;
    bufferevent_free(bev);
}

static void raw_on_written(struct bufferevent *bev, void *arg)
{
    (void)arg;
    raw_close_bev(bev);
}

static void raw_on_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    (void)arg;
    if (evbuffer_search(in, "\r\n\r\n", 4, NULL).pos < 0)
        return;
    evbuffer_drain(in, evbuffer_get_length(in));
    W.requests++;
    if (W.mode == RAW_KEEP_THEN_DROP) {
        for (int i = 0; i < W.n_bevs; i++)
            if (W.bevs[i] == bev) {
                if (W.answered[i]++ == 0)
                    bufferevent_write(bev, W.reply, strlen(W.reply));   /* stays open */
                else
                    raw_close_bev(bev);
                return;
            }
        return;
    }
    if (W.mode == RAW_DROP) {
        raw_close_bev(bev);
        return;
    }
    bufferevent_setcb(bev, NULL, raw_on_written, NULL, NULL);
    bufferevent_write(bev, W.reply, strlen(W.reply));
}

static void raw_on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)arg;
    if (what & BEV_EVENT_CONNECTED)
        return;                 /* the TLS handshake is done: wait for the request */
    raw_close_bev(bev);
}

static void raw_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    (void)arg;
    W.accepts++;
    switch (W.mode) {
    case RAW_CLOSE:
        close(fd);
        break;
    case RAW_RESET: {
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
        break;
    }
    case RAW_SILENT:
        ck_assert_int_lt(W.n_held, MAX_HELD);
        W.held[W.n_held++] = fd;
        break;
    case RAW_REPLY:
    case RAW_KEEP_THEN_DROP:
    case RAW_DROP: {
        ck_assert_int_lt(W.n_bevs, MAX_HELD);
        struct bufferevent *bev = W.ssl_ctx
            ? bufferevent_openssl_socket_new(base, fd, SSL_new(W.ssl_ctx), BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE)
            : bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
        W.bevs[W.n_bevs++] = bev;
        bufferevent_setcb(bev, raw_on_read, NULL, raw_on_event, NULL);
        bufferevent_enable(bev, EV_READ);
        break;
    }
    }
}

static void raw_server_start(raw_mode mode, const char *reply)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    SSL_CTX *ctx = W.ssl_ctx;
    memset(&W, 0, sizeof(W));
    W.ssl_ctx = ctx;
    W.mode = mode;
    W.reply = reply;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    W.lev = evconnlistener_new_bind(base, raw_on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                    16, (struct sockaddr *)&sin, sizeof(sin));
    ck_assert_ptr_nonnull(W.lev);
    W.port = port_of(evconnlistener_get_fd(W.lev));
}

static void raw_server_stop(void)
{
    if (W.lev)
        evconnlistener_free(W.lev);
    for (int i = 0; i < W.n_held; i++)
        close(W.held[i]);
    for (int i = 0; i < W.n_bevs; i++)
        if (W.bevs[i])
            bufferevent_free(W.bevs[i]);
    if (W.ssl_ctx)
        SSL_CTX_free(W.ssl_ctx);
    memset(&W, 0, sizeof(W));
}

/* Makes the next raw server speak TLS with this certificate. */
static void raw_server_tls(const char *cert, const char *key)
{
    memset(&W, 0, sizeof(W));
    W.ssl_ctx = SSL_CTX_new(TLS_server_method());
    ck_assert_ptr_nonnull(W.ssl_ctx);
    ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(W.ssl_ctx, cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(W.ssl_ctx, key, SSL_FILETYPE_PEM), 1);
}

/* A port nothing listens on: bind, read the port, close. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    int port = port_of(fd);
    close(fd);
    return port;
}

static char url[128];

static const char *http_url(int port)
{
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    return url;
}

static const char *https_url(int port)
{
    snprintf(url, sizeof(url), "https://127.0.0.1:%d", port);
    return url;
}

/* ---- fixture ---------------------------------------------------------------- */

static void setup(void)
{
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    up = NULL;
    n_done = 0;
    in_upstream_call = 0;
    memset(R, 0, sizeof(R));
    memset(&S, 0, sizeof(S));
    memset(&W, 0, sizeof(W));
}

static void teardown(void)
{
    if (up)
        upstream_free(up);
    up = NULL;
    http_server_stop();
    raw_server_stop();
    for (int i = 0; i < MAX_RESULTS; i++)
        free(R[i].body);
    event_base_free(base);
    base = NULL;
}

/* ---- plain HTTP ------------------------------------------------------------ */

START_TEST(test_get_200_with_body)
{
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    new_upstream(&o);
    start("GET", "/ok", &R[0]);
    ck_assert_uint_eq(upstream_in_flight(up), 1);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].called, 1);
    ck_assert_int_eq(R[0].xfer, XFER_HTTP);
    ck_assert_int_eq(R[0].status, 200);
    ck_assert_str_eq(R[0].body, "hello world");
    ck_assert_uint_eq(R[0].body_len, 11);
    ck_assert_str_eq(R[0].error, "");
    ck_assert_int_eq(R[0].attempts, 1);
    ck_assert(R[0].seconds > 0 && R[0].seconds < 3);
    ck_assert_str_eq(S.method, "GET");
    ck_assert_uint_eq(upstream_in_flight(up), 0);
}
END_TEST

START_TEST(test_404_with_body_and_query)
{
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    new_upstream(&o);
    start("GET", "/missing", &R[0]);
    start("GET", "/v2/images/a%2Fb/members?q=1", &R[1]);
    run_until_done(2, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_HTTP);
    ck_assert_int_eq(R[0].status, 404);
    ck_assert_str_eq(R[0].body, "{\"error\": \"no such image\"}");
    ck_assert_int_eq(R[0].attempts, 1);
    ck_assert_int_eq(R[1].status, 200);
    ck_assert_str_eq(R[1].body, "/v2/images/a%2Fb/members?q=1");
}
END_TEST

/* The path is sent as given: no "/../" squashing. */
START_TEST(test_path_sent_verbatim)
{
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    new_upstream(&o);
    start("GET", "/v2/images/../members?q=1", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].status, 200);
    ck_assert_str_eq(R[0].body, "/v2/images/../members?q=1");
}
END_TEST

START_TEST(test_headers_passed)
{
    static const char *const hdrs[] = {
        "X-Auth-Token: tok-123",
        "X-Openstack-Request-Id: req-0f8c3d6e-7b5a-4c1e-9d2f-1a2b3c4d5e6f",
        NULL
    };
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    new_upstream(&o);
    start_cb("GET", "/headers", hdrs, NULL, 0, on_done, &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].status, 200);
    ck_assert_str_eq(S.auth, "tok-123");
    ck_assert_str_eq(S.reqid, "req-0f8c3d6e-7b5a-4c1e-9d2f-1a2b3c4d5e6f");
    ck_assert_str_eq(R[0].body, "req-0f8c3d6e-7b5a-4c1e-9d2f-1a2b3c4d5e6f");
    ck_assert_str_eq(S.ctype, "");        /* none added */
    ck_assert_int_eq(S.had_expect, 0);
}
END_TEST

START_TEST(test_post_body_intact)
{
    static const char *const hdrs[] = { "Content-Type: application/octet-stream", NULL };
    char body[3000];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (char)(i * 7);          /* holds NUL bytes */
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    new_upstream(&o);
    mb_call *c = start_cb("POST", "/echo", hdrs, body, sizeof(body), on_done, &R[0]);
    memset(body, 0, sizeof(body));        /* upstream_call copied it */
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (char)(i * 7);
    (void)c;
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_HTTP);
    ck_assert_int_eq(R[0].status, 201);
    ck_assert_str_eq(S.method, "POST");
    ck_assert_str_eq(S.clen, "3000");
    ck_assert_str_eq(S.ctype, "application/octet-stream");
    ck_assert_int_eq(S.had_expect, 0);
    ck_assert_uint_eq(S.body_len, sizeof(body));
    ck_assert_mem_eq(S.body, body, sizeof(body));
    ck_assert_uint_eq(R[0].body_len, sizeof(body));
    ck_assert_mem_eq(R[0].body, body, sizeof(body));
}
END_TEST

START_TEST(test_put_without_body_sends_content_length_0)
{
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    new_upstream(&o);
    start("PUT", "/echo", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].status, 201);
    ck_assert_str_eq(S.method, "PUT");
    ck_assert_str_eq(S.clen, "0");
    ck_assert_uint_eq(S.body_len, 0);
    ck_assert_uint_eq(R[0].body_len, 0);
    ck_assert_str_eq(R[0].body, "");
}
END_TEST

START_TEST(test_patch_with_body)
{
    static const char *const hdrs[] = { "Content-Type: application/openstack-images-v2.1-json-patch", NULL };
    static const char patch[] = "[{\"op\": \"replace\", \"path\": \"/visibility\", \"value\": \"shared\"}]";
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    new_upstream(&o);
    start_cb("PATCH", "/echo", hdrs, patch, strlen(patch), on_done, &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].status, 201);
    ck_assert_str_eq(S.method, "PATCH");
    ck_assert_str_eq(S.ctype, "application/openstack-images-v2.1-json-patch");
    ck_assert_str_eq(R[0].body, patch);
}
END_TEST

START_TEST(test_delete_204)
{
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    new_upstream(&o);
    start("DELETE", "/delete", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_HTTP);
    ck_assert_int_eq(R[0].status, 204);
    ck_assert_str_eq(S.method, "DELETE");
    ck_assert_uint_eq(R[0].body_len, 0);
    ck_assert_str_eq(R[0].body, "");
}
END_TEST

START_TEST(test_50_concurrent)
{
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    o.max_connections = 8;
    new_upstream(&o);
    for (int i = 0; i < 50; i++)
        start("GET", "/ok", &R[i]);
    ck_assert_uint_eq(upstream_in_flight(up), 50);
    run_until_done(50, 5000);
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(R[i].called, 1);
        ck_assert_int_eq(R[i].xfer, XFER_HTTP);
        ck_assert_int_eq(R[i].status, 200);
        ck_assert_str_eq(R[i].body, "hello world");
    }
    ck_assert_int_eq(S.requests, 50);
    ck_assert_int_ge(S.connections, 1);
    ck_assert_int_le(S.connections, 8);   /* max_connections holds */
    ck_assert_uint_eq(upstream_in_flight(up), 0);
}
END_TEST

/* Calls beyond max_connections wait without an easy handle; cancelling
 * one that waits frees it, and the rest still run. */
START_TEST(test_queued_calls_cancelled)
{
    mb_call *calls[12];
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    o.max_connections = 2;
    new_upstream(&o);
    for (int i = 0; i < 12; i++)
        calls[i] = start("GET", "/ok", &R[i]);
    ck_assert_uint_eq(upstream_in_flight(up), 12);
    for (int i = 6; i < 12; i++)
        upstream_cancel(calls[i]);          /* all of these are still queued */
    ck_assert_uint_eq(upstream_in_flight(up), 6);
    run_until_done(6, 5000);
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(R[i].called, 1);
        ck_assert_int_eq(R[i].status, 200);
    }
    for (int i = 6; i < 12; i++)
        ck_assert_int_eq(R[i].called, 0);
    ck_assert_int_eq(S.requests, 6);
    ck_assert_int_le(S.connections, 2);
    ck_assert_uint_eq(upstream_in_flight(up), 0);
}
END_TEST

/* The next call is started from the previous call's callback. */
static int seq_left;
static void on_seq_done(const mb_response *resp, void *arg)
{
    on_done(resp, arg);
    if (--seq_left > 0)
        start_cb("GET", "/ok", NULL, NULL, 0, on_seq_done, &R[20 - seq_left]);
}

START_TEST(test_connection_reuse)
{
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    new_upstream(&o);
    seq_left = 20;
    start_cb("GET", "/ok", NULL, NULL, 0, on_seq_done, &R[0]);
    run_until_done(20, 5000);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(R[i].called, 1);
        ck_assert_int_eq(R[i].status, 200);
    }
    ck_assert_int_eq(S.requests, 20);
    ck_assert_int_eq(S.connections, 1);
}
END_TEST

/* The server closes a kept-alive connection just as the next request
 * arrives on it (the race every keep-alive client meets): the request goes
 * once more on a new connection, not counted as an attempt, even with
 * retries = 0. Plain (loop 0) and TLS (loop 1). */
START_TEST(test_reused_connection_closed_is_resent)
{
    if (_i)
        raw_server_tls(path_srv_cert, path_srv_key);
    raw_server_start(RAW_KEEP_THEN_DROP, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    mb_upstream_opts o = default_opts(_i ? https_url(W.port) : http_url(W.port));
    o.ca_file = path_ca;
    o.retries = 0;
    new_upstream(&o);
    for (int i = 0; i < 3; i++) {
        start("POST", "/x", &R[i]);
        run_until_done(i + 1, 3000);
        ck_assert_msg(R[i].xfer == XFER_HTTP, "call %d: %s", i, R[i].error);
        ck_assert_int_eq(R[i].status, 200);
        ck_assert_int_eq(R[i].attempts, 1);
        ck_assert_str_eq(R[i].body, "ok");
        /* the later calls went whole onto a connection that then died:
         * the server may have acted on them before it closed */
        ck_assert_int_eq(R[i].maybe_done, i > 0);
    }
    ck_assert_int_eq(W.accepts, 3);      /* each later call found its pooled connection dead */
    ck_assert_int_eq(W.requests, 5);     /* 3 answered + 2 dropped */
}
END_TEST

START_TEST(test_callback_starts_new_call)
{
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    new_upstream(&o);
    seq_left = 2;
    start_cb("GET", "/ok", NULL, NULL, 0, on_seq_done, &R[0]);
    run_until_done(2, 3000);
    ck_assert_int_eq(R[0].status, 200);
    ck_assert_int_eq(R[18].called, 0);
    ck_assert_int_eq(R[19].called, 1);    /* &R[20 - 1] */
    ck_assert_int_eq(R[19].status, 200);
    ck_assert_uint_eq(upstream_in_flight(up), 0);
}
END_TEST

/* ---- failures ------------------------------------------------------------------ */

START_TEST(test_refused_is_retried_then_unreachable)
{
    mb_upstream_opts o = default_opts(http_url(free_port()));
    o.retries = 2;
    new_upstream(&o);
    start("GET", "/ok", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_UNREACHABLE);
    ck_assert_int_eq(R[0].attempts, 3);
    ck_assert_int_eq(R[0].maybe_done, 0);   /* nothing was ever sent */
    ck_assert_msg(strstr(R[0].error, "Failed to connect to 127.0.0.1 port"), "error: %s", R[0].error);
    ck_assert_msg(strstr(R[0].error, "Connection refused"), "error: %s", R[0].error);
    ck_assert(R[0].seconds >= 0.14);      /* backoff 50 + 100 ms */
    ck_assert_uint_eq(upstream_in_flight(up), 0);
}
END_TEST

START_TEST(test_accept_and_close_is_retried)
{
    raw_server_start(RAW_CLOSE, NULL);
    mb_upstream_opts o = default_opts(http_url(W.port));
    o.retries = 2;
    new_upstream(&o);
    start("POST", "/x", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_UNREACHABLE);
    ck_assert_int_eq(R[0].attempts, 3);
    ck_assert_int_eq(W.accepts, 3);
    ck_assert_msg(R[0].error[0] != '\0', "no error text");
}
END_TEST

START_TEST(test_never_answers_times_out)
{
    raw_server_start(RAW_SILENT, NULL);
    mb_upstream_opts o = default_opts(http_url(W.port));
    o.request_timeout_ms = 300;
    new_upstream(&o);
    start("GET", "/x", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_TIMEOUT);
    ck_assert_int_eq(R[0].attempts, 1);
    ck_assert_int_eq(W.accepts, 1);
    ck_assert_msg(strstr(R[0].error, "timed out after"), "error: %s", R[0].error);
    ck_assert(R[0].seconds >= 0.29 && R[0].seconds < 1.5);
}
END_TEST

/* A listener whose accept queue is full drops SYNs: connect() hangs. */
START_TEST(test_connect_timeout_is_retried_then_unreachable)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0), filler = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_int_eq(listen(lfd, 0), 0);
    sin.sin_port = htons((uint16_t)port_of(lfd));
    ck_assert_int_eq(connect(filler, (struct sockaddr *)&sin, sizeof(sin)), 0);

    mb_upstream_opts o = default_opts(http_url(ntohs(sin.sin_port)));
    o.connect_timeout_ms = 150;
    o.request_timeout_ms = 2000;
    o.retries = 1;
    new_upstream(&o);
    start("GET", "/x", &R[0]);
    run_until_done(1, 3000);
    close(filler);
    close(lfd);
    ck_assert_int_eq(R[0].xfer, XFER_UNREACHABLE);
    ck_assert_int_eq(R[0].attempts, 2);
    /* a connect that timed out is worded either way, by where it was */
    ck_assert_msg(strstr(R[0].error, "Failed to connect") || strstr(R[0].error, "onnection timeout")
                  || strstr(R[0].error, "onnection timed out"), "error: %s", R[0].error);
    ck_assert(R[0].seconds >= 0.3 && R[0].seconds < 1.5);
}
END_TEST

START_TEST(test_oversized_response)
{
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    o.max_response_bytes = 1000;
    new_upstream(&o);
    start("GET", "/big", &R[0]);          /* Content-Length: 100000 */
    start("GET", "/bigchunked", &R[1]);   /* chunked, no length */
    start("GET", "/ok", &R[2]);
    run_until_done(3, 3000);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(R[i].xfer, XFER_BAD_RESPONSE);
        ck_assert_int_eq(R[i].attempts, 1);
        ck_assert_str_eq(R[i].error, "upstream response larger than 1000 bytes");
    }
    ck_assert_int_eq(R[2].xfer, XFER_HTTP);
    ck_assert_str_eq(R[2].body, "hello world");
}
END_TEST

START_TEST(test_garbage_response)
{
    raw_server_start(RAW_REPLY, "HELLO\r\n\r\n");
    mb_upstream_opts o = default_opts(http_url(W.port));
    new_upstream(&o);
    start("GET", "/x", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_BAD_RESPONSE);
    ck_assert_int_eq(R[0].attempts, 1);
    ck_assert_int_eq(W.accepts, 1);
    ck_assert_msg(R[0].error[0] != '\0', "no error text");
}
END_TEST

START_TEST(test_truncated_response_not_retried)
{
    raw_server_start(RAW_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
    mb_upstream_opts o = default_opts(http_url(W.port));
    new_upstream(&o);
    start("GET", "/x", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_BAD_RESPONSE);
    ck_assert_int_eq(R[0].attempts, 1);
    ck_assert_int_eq(W.accepts, 1);
}
END_TEST

START_TEST(test_status_below_100)
{
    raw_server_start(RAW_REPLY, "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n");
    mb_upstream_opts o = default_opts(http_url(W.port));
    new_upstream(&o);
    start("GET", "/x", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_BAD_RESPONSE);
    ck_assert_int_eq(R[0].attempts, 1);
}
END_TEST

/* ---- cancel ------------------------------------------------------------------ */

START_TEST(test_cancel_before_completion)
{
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    new_upstream(&o);
    mb_call *c = start("POST", "/echo", &R[0]);
    start("GET", "/ok", &R[1]);
    upstream_cancel(c);
    ck_assert_uint_eq(upstream_in_flight(up), 1);
    run_until_done(1, 3000);
    run_for(100);
    ck_assert_int_eq(R[0].called, 0);
    ck_assert_int_eq(R[1].called, 1);
    ck_assert_uint_eq(upstream_in_flight(up), 0);
}
END_TEST

START_TEST(test_cancel_while_waiting_for_answer)
{
    raw_server_start(RAW_SILENT, NULL);
    mb_upstream_opts o = default_opts(http_url(W.port));
    new_upstream(&o);
    mb_call *c = start("GET", "/x", &R[0]);
    run_for(100);                         /* connected, request sent */
    ck_assert_int_eq(W.accepts, 1);
    upstream_cancel(c);
    ck_assert_uint_eq(upstream_in_flight(up), 0);
    run_for(100);
    ck_assert_int_eq(R[0].called, 0);
}
END_TEST

START_TEST(test_cancel_during_retry_backoff)
{
    mb_upstream_opts o = default_opts(http_url(free_port()));
    o.retries = 3;
    new_upstream(&o);
    mb_call *c = start("GET", "/ok", &R[0]);
    run_for(25);                          /* refused at once, now in the 50 ms backoff */
    ck_assert_int_eq(R[0].called, 0);
    ck_assert_uint_eq(upstream_in_flight(up), 1);
    upstream_cancel(c);
    ck_assert_uint_eq(upstream_in_flight(up), 0);
    run_for(300);
    ck_assert_int_eq(R[0].called, 0);
}
END_TEST

/* Whichever call completes first cancels the other one; that one may have
 * completed in the same round of curl messages. */
static mb_call *pair[2];
static void on_pair_done(const mb_response *resp, void *arg)
{
    result *r = arg;
    on_done(resp, arg);
    mb_call *other = pair[r == &R[0] ? 1 : 0];
    pair[0] = pair[1] = NULL;
    if (other)
        upstream_cancel(other);
}

START_TEST(test_cancel_other_from_callback)
{
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    new_upstream(&o);
    pair[0] = start_cb("GET", "/ok", NULL, NULL, 0, on_pair_done, &R[0]);
    pair[1] = start_cb("GET", "/ok", NULL, NULL, 0, on_pair_done, &R[1]);
    run_until_done(1, 3000);
    run_for(100);
    ck_assert_int_eq(R[0].called + R[1].called, 1);
    ck_assert_uint_eq(upstream_in_flight(up), 0);
}
END_TEST

static mb_call *self_call;
static void on_cancel_self(const mb_response *resp, void *arg)
{
    on_done(resp, arg);
    upstream_cancel(self_call);           /* a no-op: it is being completed */
}

START_TEST(test_cancel_self_from_callback_is_harmless)
{
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    new_upstream(&o);
    self_call = start_cb("GET", "/ok", NULL, NULL, 0, on_cancel_self, &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].called, 1);
    ck_assert_int_eq(R[0].status, 200);
    ck_assert_uint_eq(upstream_in_flight(up), 0);
}
END_TEST

START_TEST(test_free_with_calls_in_flight)
{
    raw_server_start(RAW_SILENT, NULL);
    mb_upstream_opts o = default_opts(http_url(W.port));
    new_upstream(&o);
    for (int i = 0; i < 5; i++)
        start("GET", "/x", &R[i]);
    run_for(50);
    ck_assert_uint_eq(upstream_in_flight(up), 5);
    upstream_free(up);
    up = NULL;
    run_for(50);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(R[i].called, 0);
}
END_TEST

/* ---- TLS ------------------------------------------------------------------ */

START_TEST(test_tls_verified_and_session_resumed)
{
    http_server_start(path_srv_cert, path_srv_key, NULL);
    mb_upstream_opts o = default_opts(https_url(S.port));
    o.ca_file = path_ca;
    new_upstream(&o);
    /* /close: the server closes after each reply, so each call makes a new
     * TLS connection, which resumes the session of the previous one. */
    start("GET", "/close", &R[0]);
    run_until_done(1, 3000);
    start("GET", "/close", &R[1]);
    run_until_done(2, 3000);
    start("GET", "/ok", &R[2]);
    run_until_done(3, 3000);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(R[i].xfer, XFER_HTTP);
        ck_assert_int_eq(R[i].status, 200);
        ck_assert_int_eq(R[i].attempts, 1);
    }
    ck_assert_str_eq(R[2].body, "hello world");
    ck_assert_int_eq(S.connections, 3);
    ck_assert_int_eq(S.resumed, 2);
}
END_TEST

START_TEST(test_tls_unknown_ca)
{
    http_server_start(path_srv_cert, path_srv_key, NULL);
    mb_upstream_opts o = default_opts(https_url(S.port));
    o.ca_file = NULL;                    /* the system store does not know it */
    new_upstream(&o);
    start("GET", "/ok", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_TLS);
    ck_assert_int_eq(R[0].attempts, 1);
    ck_assert_msg(strstr(R[0].error, "certificate"), "error: %s", R[0].error);
    ck_assert_int_eq(S.requests, 0);
}
END_TEST

START_TEST(test_tls_other_ca)
{
    http_server_start(path_srv_cert, path_srv_key, NULL);
    mb_upstream_opts o = default_opts(https_url(S.port));
    o.ca_file = path_ca2;
    new_upstream(&o);
    start("GET", "/ok", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_TLS);
    ck_assert_int_eq(R[0].attempts, 1);
    ck_assert_msg(strstr(R[0].error, "SSL certificate problem"), "error: %s", R[0].error);
    ck_assert_int_eq(S.connections, 1);
    ck_assert_int_eq(S.requests, 0);
}
END_TEST

START_TEST(test_tls_wrong_hostname)
{
    http_server_start(path_other_cert, path_other_key, NULL);
    mb_upstream_opts o = default_opts(https_url(S.port));
    o.ca_file = path_ca;
    new_upstream(&o);
    start("GET", "/ok", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_TLS);
    ck_assert_int_eq(R[0].attempts, 1);
    ck_assert_msg(strstr(R[0].error, "127.0.0.1"), "error: %s", R[0].error);
    ck_assert_int_eq(S.requests, 0);
}
END_TEST

/* A host name, resolved without blocking the loop (evdns reads
 * /etc/hosts), verified against the certificate's DNS name and sent as
 * SNI; the Host header names it. */
START_TEST(test_host_name_resolved_and_verified)
{
    http_server_start(path_srv_cert, path_srv_key, NULL);
    snprintf(url, sizeof(url), "https://localhost:%d", S.port);
    mb_upstream_opts o = default_opts(url);
    o.ca_file = path_ca;
    new_upstream(&o);
    start("GET", "/ok", &R[0]);
    run_until_done(1, 3000);
    ck_assert_msg(R[0].xfer == XFER_HTTP, "%s", R[0].error);
    ck_assert_int_eq(R[0].status, 200);
    ck_assert_str_eq(R[0].body, "hello world");
}
END_TEST

START_TEST(test_tls_insecure_skips_checks)
{
    http_server_start(path_other_cert, path_other_key, NULL);
    mb_upstream_opts o = default_opts(https_url(S.port));
    o.insecure = 1;
    new_upstream(&o);
    start("GET", "/ok", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_HTTP);
    ck_assert_int_eq(R[0].status, 200);
}
END_TEST

START_TEST(test_tls_client_certificate)
{
    http_server_start(path_srv_cert, path_srv_key, path_ca);
    mb_upstream_opts o = default_opts(https_url(S.port));
    o.ca_file = path_ca;
    o.client_cert_file = path_cli_cert;
    o.client_key_file = path_cli_key;
    new_upstream(&o);
    start("GET", "/ok", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_HTTP);
    ck_assert_int_eq(R[0].status, 200);
    ck_assert_int_eq(S.peer_cert, 1);
}
END_TEST

START_TEST(test_tls_to_plain_http_server)
{
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(https_url(S.port));
    o.ca_file = path_ca;
    new_upstream(&o);
    start("GET", "/ok", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_TLS);
    ck_assert_int_eq(R[0].attempts, 1);
    ck_assert_int_eq(S.requests, 0);
}
END_TEST

/* A TLS upstream that closes (loop 0) or resets (loop 1) the connection
 * before the handshake is done: a connection closed before any response
 * byte, so retried; not a certificate problem. */
START_TEST(test_tls_accept_and_close_is_retried)
{
    raw_server_start(_i ? RAW_RESET : RAW_CLOSE, NULL);
    mb_upstream_opts o = default_opts(https_url(W.port));
    o.ca_file = path_ca;
    o.retries = 2;
    new_upstream(&o);
    start("GET", "/x", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_UNREACHABLE);
    ck_assert_int_eq(R[0].attempts, 3);
    ck_assert_int_eq(W.accepts, 3);
    ck_assert_msg(R[0].error[0] != '\0', "no error text");
}
END_TEST

START_TEST(test_tls_client_certificate_missing)
{
    http_server_start(path_srv_cert, path_srv_key, path_ca);
    mb_upstream_opts o = default_opts(https_url(S.port));
    o.ca_file = path_ca;
    new_upstream(&o);
    start("GET", "/ok", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_TLS);
    ck_assert_int_eq(R[0].attempts, 1);
    ck_assert_msg(strstr(R[0].error, "alert certificate required"), "error: %s", R[0].error);
    ck_assert_int_eq(S.connections, 1);
    ck_assert_int_eq(S.requests, 0);
}
END_TEST

/* A TLS upstream that accepts and never answers the handshake: a connect
 * timeout (retried, then unreachable), not a request timeout. */
START_TEST(test_tls_handshake_timeout_is_connect_timeout)
{
    raw_server_start(RAW_SILENT, NULL);
    mb_upstream_opts o = default_opts(https_url(W.port));
    o.ca_file = path_ca;
    o.connect_timeout_ms = 150;
    o.retries = 1;
    new_upstream(&o);
    start("GET", "/x", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_UNREACHABLE);
    ck_assert_int_eq(R[0].attempts, 2);
    ck_assert_int_eq(W.accepts, 2);
    ck_assert_msg(strstr(R[0].error, "SSL connection timeout"), "error: %s", R[0].error);
}
END_TEST

/* The request was sent, the connection closed with no response byte:
 * retried (plain loop 0, TLS loop 1). */
START_TEST(test_drop_after_request_is_retried)
{
    if (_i)
        raw_server_tls(path_srv_cert, path_srv_key);
    raw_server_start(RAW_DROP, NULL);
    mb_upstream_opts o = default_opts(_i ? https_url(W.port) : http_url(W.port));
    o.ca_file = path_ca;
    o.retries = 1;
    new_upstream(&o);
    start("POST", "/x", &R[0]);
    run_until_done(1, 3000);
    ck_assert_int_eq(R[0].xfer, XFER_UNREACHABLE);
    ck_assert_int_eq(R[0].attempts, 2);
    ck_assert_int_eq(R[0].maybe_done, 1);   /* the server read it, then dropped it */
    ck_assert_int_eq(W.accepts, 2);
}
END_TEST


/* ---- streaming calls (the proxy's) ---------------------------------------- */

typedef struct {
    mb_call       *call;
    int            status;
    size_t         nlines;
    int            pauses_left;      /* on_data says PAUSE this many times */
    int            download_resumes;
    char          *got;              /* response bytes taken */
    size_t         got_len;
    const char    *src;              /* request body */
    size_t         src_len, src_off;
    size_t         pause_at;         /* on_upload pauses once at this offset */
    int            upload_paused;
    result         r;
} stream_state;

static void resume_download_cb(evutil_socket_t fd, short what, void *arg)
{
    stream_state *st = arg;
    (void)fd;
    (void)what;
    st->download_resumes++;
    upstream_stream_resume_download(st->call);
}

static void resume_upload_cb(evutil_socket_t fd, short what, void *arg)
{
    stream_state *st = arg;
    (void)fd;
    (void)what;
    upstream_stream_resume_upload(st->call);
}

static int st_response(void *arg, int status, const char *const *lines, size_t n)
{
    stream_state *st = arg;
    st->status = status;
    st->nlines = n;
    for (size_t i = 0; i < n; i++)
        ck_assert_ptr_nonnull(strchr(lines[i], ':'));
    return 0;
}

static size_t st_data(void *arg, const char *data, size_t len)
{
    stream_state *st = arg;
    if (st->pauses_left > 0) {
        st->pauses_left--;
        struct timeval tv = { 0, 30000 };
        event_base_once(base, -1, EV_TIMEOUT, resume_download_cb, st, &tv);
        return MB_STREAM_PAUSE;
    }
    st->got = realloc(st->got, st->got_len + len + 1);
    ck_assert_ptr_nonnull(st->got);
    memcpy(st->got + st->got_len, data, len);
    st->got_len += len;
    st->got[st->got_len] = '\0';
    return len;
}

static size_t st_upload(void *arg, char *buf, size_t max)
{
    stream_state *st = arg;
    if (st->src_off == st->pause_at && !st->upload_paused) {
        st->upload_paused = 1;
        struct timeval tv = { 0, 30000 };
        event_base_once(base, -1, EV_TIMEOUT, resume_upload_cb, st, &tv);
        return MB_STREAM_PAUSE;
    }
    size_t n = st->src_len - st->src_off;
    if (n > max)
        n = max;
    if (n > 7000)
        n = 7000;
    if (st->src_off < st->pause_at && st->src_off + n > st->pause_at)
        n = st->pause_at - st->src_off;
    memcpy(buf, st->src + st->src_off, n);
    st->src_off += n;
    return n;
}

static void st_done(void *arg, const mb_response *resp)
{
    stream_state *st = arg;
    ck_assert_int_eq(in_upstream_call, 0);
    st->r.called++;
    st->r.xfer = resp->xfer;
    st->r.status = resp->status;
    snprintf(st->r.error, sizeof(st->r.error), "%s", resp->error);
    st->r.attempts = resp->attempts;
    n_done++;
}

static const mb_stream_cbs st_cbs = { st_response, st_data, st_upload, st_done };

static void stream_start(stream_state *st, const char *method, const char *path,
                         int with_body, long long size)
{
    mb_request req = { .method = method, .path = path };
    in_upstream_call = 1;
    st->call = upstream_stream(up, &req, with_body, size, &st_cbs, st);
    in_upstream_call = 0;
    ck_assert_ptr_nonnull(st->call);
}

/* The consumer pauses the download three times: every byte arrives once,
 * in order (Content-Length body, loop 0; chunked, loop 1). */
START_TEST(test_stream_download_paused_and_resumed)
{
    http_server_start(NULL, NULL, NULL);
    mb_upstream_opts o = default_opts(http_url(S.port));
    new_upstream(&o);
    stream_state st = { .pauses_left = 3 };
    stream_start(&st, "GET", _i ? "/bigchunked" : "/big", 0, 0);
    run_until_done(1, 5000);
    ck_assert_msg(st.r.xfer == XFER_HTTP, "%s", st.r.error);
    ck_assert_int_eq(st.status, 200);
    ck_assert_int_eq(st.download_resumes, 3);
    ck_assert_uint_eq(st.got_len, 100000);
    for (size_t i = 0; i < st.got_len; i++)
        ck_assert_int_eq(st.got[i], _i ? 'y' : 'x');
    free(st.got);
}
END_TEST

/* A body pulled piece by piece with one pause, sent chunked (loop 0) or
 * with its Content-Length (loop 1), over TLS: the server gets it whole. */
START_TEST(test_stream_upload_with_pause)
{
    static char src[50000];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (char)('a' + i % 26);
    http_server_start(path_srv_cert, path_srv_key, NULL);
    mb_upstream_opts o = default_opts(https_url(S.port));
    o.ca_file = path_ca;
    new_upstream(&o);
    stream_state st = { .src = src, .src_len = sizeof(src), .pause_at = 21000 };
    stream_start(&st, "POST", "/echo", 1, _i ? (long long)sizeof(src) : -1);
    run_until_done(1, 5000);
    ck_assert_msg(st.r.xfer == XFER_HTTP, "%s", st.r.error);
    ck_assert_int_eq(st.status, 201);
    ck_assert_int_eq(st.upload_paused, 1);
    ck_assert_uint_eq(st.got_len, sizeof(src));
    ck_assert_int_eq(memcmp(st.got, src, sizeof(src)), 0);
    free(st.got);
}
END_TEST

/* Nothing moves for request_timeout: a timeout, not retried. */
START_TEST(test_stream_silent_upstream_times_out)
{
    raw_server_start(RAW_SILENT, NULL);
    mb_upstream_opts o = default_opts(http_url(W.port));
    o.request_timeout_ms = 300;
    new_upstream(&o);
    stream_state st = { 0 };
    stream_start(&st, "GET", "/x", 0, 0);
    run_until_done(1, 3000);
    ck_assert_int_eq(st.r.xfer, XFER_TIMEOUT);
    ck_assert_int_eq(st.r.attempts, 1);
    ck_assert_msg(strstr(st.r.error, "no data moved"), "%s", st.r.error);
}
END_TEST

static Suite *upstream_suite(void)
{
    Suite *s = suite_create("upstream");
    TCase *tc = tcase_create("http");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_get_200_with_body);
    tcase_add_test(tc, test_404_with_body_and_query);
    tcase_add_test(tc, test_path_sent_verbatim);
    tcase_add_test(tc, test_headers_passed);
    tcase_add_test(tc, test_post_body_intact);
    tcase_add_test(tc, test_put_without_body_sends_content_length_0);
    tcase_add_test(tc, test_patch_with_body);
    tcase_add_test(tc, test_delete_204);
    tcase_add_test(tc, test_50_concurrent);
    tcase_add_test(tc, test_queued_calls_cancelled);
    tcase_add_test(tc, test_connection_reuse);
    tcase_add_test(tc, test_callback_starts_new_call);
    tcase_add_loop_test(tc, test_reused_connection_closed_is_resent, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("failures");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_refused_is_retried_then_unreachable);
    tcase_add_test(tc, test_accept_and_close_is_retried);
    tcase_add_test(tc, test_never_answers_times_out);
    tcase_add_test(tc, test_connect_timeout_is_retried_then_unreachable);
    tcase_add_test(tc, test_oversized_response);
    tcase_add_test(tc, test_garbage_response);
    tcase_add_test(tc, test_truncated_response_not_retried);
    tcase_add_test(tc, test_status_below_100);
    suite_add_tcase(s, tc);

    tc = tcase_create("cancel");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_cancel_before_completion);
    tcase_add_test(tc, test_cancel_while_waiting_for_answer);
    tcase_add_test(tc, test_cancel_during_retry_backoff);
    tcase_add_test(tc, test_cancel_other_from_callback);
    tcase_add_test(tc, test_cancel_self_from_callback_is_harmless);
    tcase_add_test(tc, test_free_with_calls_in_flight);
    suite_add_tcase(s, tc);

    tc = tcase_create("tls");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_tls_verified_and_session_resumed);
    tcase_add_test(tc, test_tls_unknown_ca);
    tcase_add_test(tc, test_tls_other_ca);
    tcase_add_test(tc, test_tls_wrong_hostname);
    tcase_add_test(tc, test_tls_insecure_skips_checks);
    tcase_add_test(tc, test_host_name_resolved_and_verified);
    tcase_add_test(tc, test_tls_client_certificate);
    tcase_add_test(tc, test_tls_client_certificate_missing);
    tcase_add_loop_test(tc, test_drop_after_request_is_retried, 0, 2);
    tcase_add_test(tc, test_tls_handshake_timeout_is_connect_timeout);
    tcase_add_test(tc, test_tls_to_plain_http_server);
    tcase_add_loop_test(tc, test_tls_accept_and_close_is_retried, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("stream");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_loop_test(tc, test_stream_download_paused_and_resumed, 0, 2);
    tcase_add_loop_test(tc, test_stream_upload_with_pause, 0, 2);
    tcase_add_test(tc, test_stream_silent_upstream_times_out);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_set_level(getenv("MB_TEST_DEBUG") ? LOG_DEBUG : LOG_ERROR);
    make_tls_material();

    SRunner *sr = srunner_create(upstream_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);

    remove_tls_material();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
