/* log: levelled log lines to stderr and the access log. Tokens, passwords
 * and bodies are never passed here. */
#ifndef MB_LOG_H
#define MB_LOG_H

#include "mb_conf.h"

void log_set_level(mb_log_level level);
/* "-" = stderr, "off" = none, else a path opened for append. Returns 0 or -1. */
int  log_open_access(const char *where);
void log_close_access(void);

/* Level is checked before formatting. Lines look like:
 * 2026-11-22T06:40:01.123Z memberbridge[pid] warning: message */
void mb_log(mb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...)   mb_log(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)    mb_log(LOG_INFO, __VA_ARGS__)
#define log_warning(...) mb_log(LOG_WARNING, __VA_ARGS__)
#define log_error(...)   mb_log(LOG_ERROR, __VA_ARGS__)

/* One access log line per request:
 * <time> access req=<id> client=<addr> method=<m> path=<p> status=<s>
 *   duration_ms=<d> upstream_calls=<n> upstream_failed=<f>
 * The path is written with control characters and spaces escaped (%XX). */
void log_access(const char *request_id, const char *client, const char *method,
                const char *path, int status, double duration_ms,
                unsigned calls, unsigned failed);

#endif
