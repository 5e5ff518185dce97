/* linger: answer a connection and close it without losing the answer.
 *
 * Used when the gateway replies before it has read the whole request (a
 * body over max_body_bytes, a request whose framing is ambiguous). Closing
 * a socket with unread input makes the kernel send a reset, which can
 * destroy the reply before the client reads it. So: write the reply, shut
 * down the write side once it is flushed, then read and discard whatever
 * the client still sends until it closes, for at most `seconds` and at most
 * `max_bytes`, then close. (nginx calls this a lingering close.) */
#ifndef MB_LINGER_H
#define MB_LINGER_H

#include <stddef.h>
#include <event2/bufferevent.h>

/* Takes ownership of bev (its callbacks are replaced) and of nothing else;
 * reply[0..len) is copied. */
void linger_close(struct bufferevent *bev, const char *reply, size_t len,
                  int seconds, size_t max_bytes);

/* Closes every lingering connection at once (shutdown). */
void linger_close_all(void);

#endif
