/*
 * hello.h - HELLO as the proxy answers it: what a server said about itself
 * in reply to the proxy's own HELLO 3 (whether it speaks RESP3, its version,
 * mode and modules), a client's HELLO checked as redis-server checks it, and
 * the reply redis-server would give that client, in RESP2 or RESP3.
 *
 * A client that shares connections has no connection of its own whose
 * HELLO could answer it, and sending one would switch the protocol of a
 * connection many clients share: the proxy answers from the facts of the
 * master, learnt once per connection pool, so that a RESP3 client's set-up
 * costs no round trip.
 */
#ifndef SP_HELLO_H
#define SP_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct req_args;
struct strbuf;

/* Whether a server speaks RESP3, as far as is known. */
enum hello_resp3 {
    HELLO_UNKNOWN = 0,  /* no RESP3 connection has been set up yet */
    HELLO_RESP3 = 1,    /* it answered the proxy's HELLO 3 */
    HELLO_NO_RESP3 = 2, /* it refused HELLO 3: RESP3 clients get dedicated connections */
};

#define HELLO_WORD 64 /* longest server, version or mode string kept */

/* A server's facts from its reply to HELLO 3. */
struct hello_facts {
    uint8_t resp3; /* enum hello_resp3 */
    char server[HELLO_WORD];
    char version[HELLO_WORD];
    char mode[HELLO_WORD];
    char *modules3; /* the "modules" value as the server sent it (RESP3) */
    size_t modules3_len;
    char *modules2; /* ... and as RESP2 shows it */
    size_t modules2_len;
};

/* A client's HELLO request, checked as redis-server checks it. */
struct hello_args {
    int proto;       /* 2 or 3; 0 when not given */
    int auth;        /* index of AUTH's user name (its password follows); 0: none */
    int name;        /* index of SETNAME's name; 0: none */
    char error[192]; /* the error redis-server gives it (no leading '-'); "" when valid */
};

/* Read the reply (buf, len) to the proxy's HELLO 3 into f; false (f
 * unchanged) when it is not a HELLO reply. */
bool hello_learn(struct hello_facts *f, const char *buf, size_t len);

/* Free what f holds and forget it (back to HELLO_UNKNOWN). */
void hello_forget(struct hello_facts *f);

/* Check a client's HELLO (every argument in a) as redis-server does, up to
 * the credentials, which the caller checks. */
void hello_parse(const struct req_args *a, struct hello_args *h);

/* Append to sb the reply redis-server gives a successful HELLO: f's facts,
 * with the given protocol and connection id, the role of a master. */
void hello_reply(const struct hello_facts *f, int proto, uint64_t id, struct strbuf *sb);

#endif
