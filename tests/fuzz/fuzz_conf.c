/* Fuzz target: the configuration loader (src/mb_conf.c, inih underneath).
 *
 * conf_load reads a path, so the input goes into a memory file (memfd) and
 * is loaded as /proc/self/fd/N: no disk, nothing left behind.
 * Input: [mode byte] [file text...]. Mode byte bit 0: the file is 0644
 * (every user may read it: a password in it is refused) instead of 0600;
 * bits 1-2 pick the error buffer size (512, 64, 8 or 1 bytes).
 * Invariants: conf_load returns 0 or -1; on -1 the message is
 * NUL-terminated within the buffer and starts with the path; on 0 it is
 * empty and every value is in its documented range (ports 1..65535, a
 * listen host, an http(s) upstream URL without a trailing '/', numbers
 * within their bounds). conf_free after either releases everything.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_split.h"
#include "mb_conf.h"

static int memfd = -1;
static char memfd_path[64];

static void write_file(const uint8_t *d, size_t len, mode_t mode)
{
    if (memfd < 0) {
        memfd = memfd_create("fuzz_conf", 0);
        FUZZ_CHECK(memfd >= 0);
        snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
    }
    FUZZ_CHECK(ftruncate(memfd, 0) == 0);
    size_t off = 0;
    while (off < len) {
        ssize_t n = pwrite(memfd, d + off, len - off, (off_t)off);
        FUZZ_CHECK(n > 0);
        off += (size_t)n;
    }
    FUZZ_CHECK(fchmod(memfd, mode) == 0);
}

static void check_listen(const char *listen, const char *host, int port)
{
    FUZZ_CHECK(listen != NULL && host != NULL);
    FUZZ_CHECK(port >= 1 && port <= 65535);
    FUZZ_CHECK(strstr(listen, host) != NULL);
}

static void check_loaded(const mb_conf *c)
{
    check_listen(c->server.listen, c->server.listen_host, c->server.listen_port);
    if (c->admin.listen != NULL)
        check_listen(c->admin.listen, c->admin.listen_host, c->admin.listen_port);
    else
        FUZZ_CHECK(c->admin.listen_host == NULL);
    FUZZ_CHECK(c->server.max_body_bytes >= 1 && c->server.max_body_bytes <= 1073741824L);
    FUZZ_CHECK(c->server.client_timeout >= 1 && c->server.client_timeout <= 3600);
    FUZZ_CHECK(c->server.workers >= 0 && c->server.workers <= 256);
    FUZZ_CHECK((c->server.tls_cert_file == NULL) == (c->server.tls_key_file == NULL));

    const char *url = c->upstream.url;
    FUZZ_CHECK(url != NULL);
    FUZZ_CHECK(strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0);
    FUZZ_CHECK(url[strlen(url) - 1] != '/');
    FUZZ_CHECK(c->upstream.insecure == 0 || c->upstream.insecure == 1);
    FUZZ_CHECK(c->upstream.connect_timeout >= 1 && c->upstream.connect_timeout <= 300);
    FUZZ_CHECK(c->upstream.request_timeout >= 1 && c->upstream.request_timeout <= 3600);
    FUZZ_CHECK(c->upstream.retries >= 0 && c->upstream.retries <= 10);
    FUZZ_CHECK(c->upstream.max_connections >= 1 && c->upstream.max_connections <= 10000);

    FUZZ_CHECK(c->members.concurrency >= 1 && c->members.concurrency <= 1000);
    FUZZ_CHECK(c->members.max_per_request >= 1 && c->members.max_per_request <= 1000000);
    FUZZ_CHECK(c->members.can_share == CAN_SHARE_IGNORE || c->members.can_share == CAN_SHARE_REJECT);
    FUZZ_CHECK(c->log.level >= LOG_DEBUG && c->log.level <= LOG_ERROR);
    FUZZ_CHECK(c->log.access_log != NULL && c->log.access_log[0] != '\0');
    if (c->members.accept)
        FUZZ_CHECK(c->service_auth.auth_url != NULL && c->service_auth.password != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t err_sizes[4] = { 512, 64, 8, 1 };
    if (size < 1)
        return 0;
    mode_t mode = (data[0] & 1) ? 0644 : 0600;
    size_t errlen = err_sizes[(data[0] >> 1) & 3];
    write_file(data + 1, size - 1, mode);

    char err[512 + 1];
    memset(err, 0x5a, sizeof(err));
    mb_conf c;
    conf_defaults(&c);
    int rc = conf_load(&c, memfd_path, err, errlen);
    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK(err[errlen] == 0x5a);              /* nothing past the buffer */
    FUZZ_CHECK(memchr(err, '\0', errlen) != NULL);
    if (rc == 0) {
        FUZZ_CHECK(err[0] == '\0');
        check_loaded(&c);
    } else if (errlen > strlen(memfd_path) + 1) {
        FUZZ_CHECK(strncmp(err, memfd_path, strlen(memfd_path)) == 0);
        FUZZ_CHECK(err[strlen(memfd_path)] == ':');
    }
    conf_free(&c);
    return 0;
}
