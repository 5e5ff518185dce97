/* log: levelled log lines to stderr and the access log. Each line is
 * formatted whole, then written with one write() so that lines from several
 * threads never interleave. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX   4096   /* one log line, longer messages are cut */
#define LOG_FIELD_MAX  2048   /* one escaped access log field */

/* Read by every thread; changed by the main thread (start-up, SIGHUP). */
static atomic_int min_level = LOG_INFO;
static atomic_int access_fd = STDERR_FILENO;   /* -1: off */
static int access_owned;                       /* access_fd was opened here (main thread only) */

static const char *const level_names[] = {
    [LOG_DEBUG] = "debug", [LOG_INFO] = "info",
    [LOG_WARNING] = "warning", [LOG_ERROR] = "error",
};

void log_set_level(mb_log_level level)
{
    atomic_store(&min_level, (int)level);
}

void log_close_access(void)
{
    int fd = atomic_exchange(&access_fd, -1);
    if (access_owned && fd >= 0)
        close(fd);
    access_owned = 0;
}

/* Points the access log at fd (-1: off), owned or not. Other threads may be
 * writing to the old descriptor this very moment: an owned one is never
 * closed under them. A new file takes the old descriptor's number (dup2
 * swaps the file behind it at once); otherwise the old one is pointed at
 * /dev/null and left open. */
static void access_switch(int fd, int owned)
{
    int old = atomic_load(&access_fd);

    if (access_owned && owned) {
        if (dup2(fd, old) >= 0) {
            close(fd);
            return;
        }
    }
    atomic_store_explicit(&access_fd, fd, memory_order_release);
    if (access_owned) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, old);
            close(null);
        }
    }
    access_owned = owned;
}

int log_open_access(const char *where)
{
    int fd;

    if (where == NULL || strcmp(where, "-") == 0) {
        access_switch(STDERR_FILENO, 0);
        return 0;
    }
    if (strcmp(where, "off") == 0) {
        access_switch(-1, 0);
        return 0;
    }
    fd = open(where, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    access_switch(fd, 1);
    return 0;
}

/* "2026-11-22T06:40:01.123Z" into buf (at least 25 bytes). */
static size_t timestamp(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(buf + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000L);
    return m > 0 ? n + (size_t)m : n;
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        buf += w;
        len -= (size_t)w;
    }
}

/* Appends s to out[*pos..cap) with control characters, space, '%', DEL and
 * non-ASCII bytes written as %XX; at most max bytes of output, "..." when
 * cut. out keeps room for the terminating newline. */
static void put_escaped(char *out, size_t *pos, size_t cap, const char *s, size_t max)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t start = *pos;

    if (s == NULL || *s == '\0')
        s = "-";
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        int esc = ch <= ' ' || ch == '%' || ch >= 0x7f;
        size_t need = esc ? 3 : 1;
        if (*pos + need + 4 > cap || *pos - start + need > max) {
            if (*pos + 3 < cap) {
                memcpy(out + *pos, "...", 3);
                *pos += 3;
            }
            return;
        }
        if (esc) {
            out[(*pos)++] = '%';
            out[(*pos)++] = hex[ch >> 4];
            out[(*pos)++] = hex[ch & 15];
        } else {
            out[(*pos)++] = (char)ch;
        }
    }
}

static void put_str(char *out, size_t *pos, size_t cap, const char *s)
{
    size_t len = strlen(s);
    if (*pos + len + 1 > cap)
        len = cap - *pos - 1;
    memcpy(out + *pos, s, len);
    *pos += len;
}

void mb_log(mb_log_level level, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    va_list ap;
    size_t n;
    int m;

    if ((int)level < atomic_load_explicit(&min_level, memory_order_relaxed) || level > LOG_ERROR)
        return;
    n = timestamp(line, sizeof(line));
    m = snprintf(line + n, sizeof(line) - n, " memberbridge[%ld] %s: ",
                 (long)getpid(), level_names[level]);
    if (m < 0)
        return;
    n += (size_t)m;

    size_t msg = n;
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);  /* room for '\n' */
    va_end(ap);
    if (m < 0)
        return;
    n += (size_t)m < sizeof(line) - n - 1 ? (size_t)m : sizeof(line) - n - 2;

    /* One entry is one line: control characters in a message become '?'. */
    for (size_t i = msg; i < n; i++)
        if ((unsigned char)line[i] < ' ' || line[i] == 0x7f)
            line[i] = '?';
    line[n++] = '\n';
    write_all(STDERR_FILENO, line, n);
}

void log_access(const char *request_id, const char *client, const char *method,
                const char *path, int status, double duration_ms,
                unsigned calls, unsigned failed)
{
    char line[LOG_LINE_MAX];   /* fields are capped well below this */
    size_t n;
    int m;

    int fd = atomic_load_explicit(&access_fd, memory_order_acquire);   /* after its open() */
    if (fd < 0)
        return;
    n = timestamp(line, sizeof(line));
    put_str(line, &n, sizeof(line), " access req=");
    put_escaped(line, &n, sizeof(line), request_id, 64);
    put_str(line, &n, sizeof(line), " client=");
    put_escaped(line, &n, sizeof(line), client, 256);
    put_str(line, &n, sizeof(line), " method=");
    put_escaped(line, &n, sizeof(line), method, 64);
    put_str(line, &n, sizeof(line), " path=");
    put_escaped(line, &n, sizeof(line), path, LOG_FIELD_MAX);
    m = snprintf(line + n, sizeof(line) - n,
                 " status=%d duration_ms=%.1f upstream_calls=%u upstream_failed=%u\n",
                 status, duration_ms, calls, failed);
    if (m < 0 || (size_t)m >= sizeof(line) - n)
        return;
    n += (size_t)m;
    write_all(fd, line, n);
}
