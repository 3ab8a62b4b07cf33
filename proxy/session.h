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

#include "proxy/txn.h"

struct client;
struct nameset;
struct req;
struct bconn;
struct spans;

/* Server-side state of the client's session, replayed on a new connection. */
struct session {
    int db;          /* SELECT */
    uint8_t resp;    /* HELLO protocol version: 2 or 3 */
    bool multi;      /* inside MULTI */
    bool watching;   /* WATCH active */
    bool streaming;  /* subscribed, MONITOR or CLIENT REPLY OFF/SKIP: replies stream */
    bool tracking;   /* CLIENT TRACKING/CACHING/NO-EVICT/NO-TOUCH... state */
    bool sticky;     /* state the proxy cannot undo (CLIENT NO-EVICT...): stay pinned */
    bool lost_multi; /* the connection was lost inside MULTI: EXEC must abort */
    bool lost_watch; /* the connection was lost with keys watched: EXEC returns nil */
    struct txn txn;  /* session commands queued inside MULTI */
    bool multi_sent; /* MULTI was sent and no EXEC/DISCARD yet (dispatch order) */
    bool authed;     /* authenticated (only tracked when backend-password is set) */
    char *auth;      /* the last successful AUTH request, as sent */
    size_t auth_len;
    char *hello; /* the last successful HELLO request, as sent */
    size_t hello_len;
    char *name; /* CLIENT SETNAME value ("" = none) */
    size_t name_len;
    struct nameset *subs; /* channels, patterns, shard channels subscribed (3 sets) */
    bool monitor;         /* MONITOR is on */
    bool resub;           /* subscriptions must be re-established on a new connection */
    bool reply_off;       /* CLIENT REPLY OFF is in effect (replayed on a new connection) */
};

/* What a session step did to the connection it runs on, as bits; the
 * connection's owner applies them (bconn_follow_session). */
enum session_effect {
    SESSION_CONN_DB = 1u << 0,         /* it is now in the session's database */
    SESSION_CONN_RESP = 1u << 1,       /* it now speaks the session's protocol */
    SESSION_CONN_TAINT = 1u << 2,      /* it carries state that makes it unfit to lend again */
    SESSION_SEND_AS_DISCARD = 1u << 3, /* send DISCARD in EXEC's place: watched keys were lost */
};

/* A fresh session: db 0, RESP2, no name, no credentials. */
void session_init(struct session *s);

/* Free what the session owns. */
void session_free(struct session *s);

/* Forget all state, as RESET does (the name is kept, as redis-server does). */
void session_reset(struct session *s);

/* True when nothing in the session needs a dedicated connection (every
 * request asks: inline). */
static inline bool session_is_clean(const struct session *s)
{
    return s->db == 0 && !s->multi && !s->watching && !s->streaming && !s->tracking && !s->sticky &&
           s->auth == NULL && s->hello == NULL;
}

/* Parse a decimal integer argument as redis-server would accept it; -1 when it
 * is not one or does not fit in 31 bits. */
int32_t session_parse_int(const char *p, size_t len);

/* Authenticated with the proxy's own credentials (answered by the proxy). */
void session_login(struct session *s);

/* r is about to be dispatched: QUIT and RESET end a transaction that was
 * lost with its connection (redis-server runs them at once inside MULTI). */
void session_before_dispatch(struct session *s, const struct req *r);

/* EXEC or DISCARD ended a transaction lost with its connection. */
void session_lost_multi_over(struct session *s);

/* Queue, on a new dedicated connection, the proxy's own requests that
 * recreate the session (credentials, protocol, name, database); *effects
 * says what they do to bc. False if out of memory. */
bool session_replay(struct client *c, struct bconn *bc, unsigned *effects)
    __attribute__((warn_unused_result));

/* r is about to be queued on bc: track subscriptions and transactions, mark
 * streaming requests. Returns enum session_effect bits. */
unsigned session_before_send(struct client *c, struct req *r, struct bconn *bc);

/* r's reply is complete: apply its effect on the session. Returns the
 * enum session_effect bits for the client's dedicated connection. */
unsigned session_after_reply(struct client *c, struct req *r);

/* The dedicated connection was lost: a transaction in progress must abort,
 * watched keys count as touched, streaming modes end. */
void session_lost_connection(struct client *c);

/* Re-establish subscriptions (and MONITOR) lost with a streaming connection
 * on bc, one command per kind: counts[i] is the number of replies that
 * confirm the i-th of the *n commands queued (SESSION_RESUB_CMDS at most),
 * which the client must not see. False if out of memory. */
#define SESSION_RESUB_CMDS 4
bool session_resubscribe(struct client *c, struct bconn *bc, uint32_t *counts, unsigned *n)
    __attribute__((warn_unused_result));

/* True when something in the session still streams replies: subscriptions,
 * MONITOR or CLIENT REPLY OFF. */
bool session_streams(const struct session *s);

/* The connection's stream ended: replies match requests again. */
void session_stream_over(struct session *s);

/* True when a request of c that was not executed, or a read whose reply was
 * lost, may be sent again on another connection: no transaction is open or
 * being opened, and replies are not streaming. */
bool session_can_resend(const struct client *c);

/* True when out confirms a SUBSCRIBE-family command or MONITOR (what a
 * resubscription's replies look like, as opposed to messages). */
bool session_is_confirmation(struct spans *out);

/* True when the session has subscriptions or MONITOR to re-establish. */
bool session_has_streams(const struct session *s);

/* Store the client name (validated by the caller); false if out of memory. */
bool session_set_name(struct session *s, const char *name, size_t len)
    __attribute__((warn_unused_result));

#endif
