/*
 * session.h - the server-side state of a client's session and what it means
 * for routing: which requests can share a connection, which need the
 * client's dedicated one, how the state is replayed on a new connection, and
 * how each reply changes it.
 *
 * State tracked: database (SELECT), credentials (AUTH), protocol and options
 * (HELLO), name (CLIENT SETNAME, kept by the proxy while the client shares
 * connections), transactions (MULTI/WATCH), streaming modes (SUBSCRIBE,
 * MONITOR, CLIENT REPLY) and client-side caching (CLIENT TRACKING).
 */
#ifndef SP_SESSION_H
#define SP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client;
struct session;
struct req;
struct bconn;
struct spans;

enum session_need {
    SESSION_SHARED = 0,    /* any shared connection */
    SESSION_DEDICATED = 1, /* the client's dedicated connection */
    SESSION_LOCAL = 2,     /* answered by the proxy (local.c) */
    SESSION_WAIT = 3,      /* wait for in-flight replies first */
};

/* A fresh session: db 0, RESP2, no name, no credentials. */
void session_init(struct session *s);

/* Free what the session owns. */
void session_free(struct session *s);

/* Forget all state, as RESET does (the name is kept, as redis-server does). */
void session_reset(struct session *s);

/* True when nothing in the session needs a dedicated connection. */
bool session_is_clean(const struct session *s);

/* Parse a decimal integer argument as redis-server would accept it; -1 when it
 * is not one or does not fit in 31 bits. */
int32_t session_parse_int(const char *p, size_t len);

/* Where request r of client c must go (enum session_need). */
int session_route(struct client *c, struct req *r);

/* Queue, on a new dedicated connection, the proxy's own requests that
 * recreate the session (credentials, protocol, name, database). False if
 * out of memory. */
bool session_replay(struct client *c, struct bconn *bc) __attribute__((warn_unused_result));

/* r is about to be queued on bc: mark streaming requests. */
void session_before_send(struct client *c, struct req *r, struct bconn *bc);

/* r's reply is complete: apply its effect on the session. */
void session_after_reply(struct client *c, struct req *r);

/* The dedicated connection was lost: a transaction in progress must abort,
 * watched keys count as touched, streaming modes end. */
void session_lost_connection(struct client *c);

/* Re-establish subscriptions (and MONITOR) lost with a streaming connection
 * on bc, hiding their confirmations from the client. False if out of memory. */
bool session_resubscribe(struct client *c, struct bconn *bc) __attribute__((warn_unused_result));

enum session_stream {
    SESSION_STREAM_PASS = 0,  /* give it to the client */
    SESSION_STREAM_DROP = 1,  /* the proxy's own: the client never sees it */
    SESSION_STREAM_ENDED = 2, /* the proxy's own, and the stream is over */
};

/* A streamed reply (out) arrived on c's connection bc. It follows the
 * session: a confirmation that the last subscription is gone, or +RESET.
 * Once the server is out of subscribed mode, the proxy queues an ECHO marker;
 * when the marker comes back with nothing queued after it, every reply has
 * been seen and the connection leaves streaming mode (ENDED: the session may
 * return to shared connections). Returns enum session_stream. */
int session_stream_reply(struct client *c, struct bconn *bc, struct spans *out);

/* True when a request of c that was not executed, or a read whose reply was
 * lost, may be sent again on another connection: no transaction is open or
 * being opened, and replies are not streaming. */
bool session_can_resend(const struct client *c);

/* True when out confirms a SUBSCRIBE-family command or MONITOR (what a
 * resubscription's replies look like, as opposed to messages). */
bool session_is_confirmation(struct spans *out);

/* True when the session has subscriptions or MONITOR to re-establish. */
bool session_has_streams(const struct session *s);

/* True when an AUTH request carries the proxy's own backend credentials. */
bool session_auth_matches(struct client *c, struct req *r);

/* Store the client name (validated by the caller); false if out of memory. */
bool session_set_name(struct session *s, const char *name, size_t len)
    __attribute__((warn_unused_result));

#endif
