/* linger: answer a connection and close it without losing the answer.
 *
 * Used when the gateway replies before it has read the whole request (a
 * body over max_body_bytes, a request whose framing is ambiguous). Closing
 * a socket with unread input makes the kernel send a reset, which can
 * destroy the reply before the client reads it. So: write the reply, shut
 * down the write side once it is flushed, then read and discard whatever
 * the client still sends until it closes, for at most `seconds` and at most
 * `max_bytes`, then close. (nginx calls this a lingering close.)
 *
 * Over TLS (an OpenSSL bufferevent, from the HTTPS listener) "shut down the
 * write side" is a TLS close_notify alert, not shutdown(2): the socket stays
 * open both ways for OpenSSL, and what is discarded is decrypted input.
 *
 * Each event-loop thread has its own set of lingering connections: call
 * both functions from the thread that runs the bufferevent's event_base. */
#ifndef MB_LINGER_H
#define MB_LINGER_H

#include <stddef.h>
#include <event2/bufferevent.h>

/* Takes ownership of bev (its callbacks are replaced) and of nothing else;
 * reply[0..len) is copied. bev may be a socket or an OpenSSL socket
 * bufferevent, opened with BEV_OPT_CLOSE_ON_FREE. */
void linger_close(struct bufferevent *bev, const char *reply, size_t len,
                  int seconds, size_t max_bytes);

/* Closes every connection the calling thread has lingering, at once (that
 * thread's shutdown); those of other threads are left alone. */
void linger_close_all(void);

/* 1 while the calling thread has a connection lingering (its reply may not
 * be out yet). */
int  linger_pending(void);

#endif
