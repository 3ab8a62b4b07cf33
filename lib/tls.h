/*
 * tls.h - TLS with OpenSSL: contexts built from settings (one per leg:
 * clients, servers, Sentinels), replaceable at run time, and the TLS
 * transport behind struct transport.
 *
 * A TLS transport reads through a socket BIO with read-ahead (one read(2)
 * brings several records) and writes through a buffer of its own: OpenSSL
 * encrypts into it and the transport writes it out. A write is therefore
 * never half taken by OpenSSL: what writev() reports written is committed,
 * and may still sit in that buffer, which the caller drains by watching for
 * writability while transport_out_pending() says so. The buffer is freed as
 * soon as it is drained, and OpenSSL's own buffers are released when idle
 * (SSL_MODE_RELEASE_BUFFERS), so an idle TLS connection holds no I/O buffer.
 *
 * The handshake runs on its own (transport_handshake) before the first
 * request; renegotiation is refused; session tickets are on.
 */
#ifndef SP_TLS_H
#define SP_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/transport.h"

enum tls_client_auth {
    TLS_AUTH_NONE = 0,     /* no client certificate is asked for */
    TLS_AUTH_OPTIONAL = 1, /* asked for, checked when sent */
    TLS_AUTH_REQUIRED = 2, /* a client without a valid one never gets past the handshake */
};

/* One leg's settings (strings owned by the configuration). */
struct tls_settings {
    bool enabled;       /* servers and Sentinels: connect with TLS */
    char *cert;         /* PEM certificate (chain) file */
    char *key;          /* PEM private key file */
    char *ca;           /* PEM CA file to verify peers with (NULL: the system's, client side) */
    char *protocols;    /* e.g. "TLSv1.2 TLSv1.3" */
    char *ciphers;      /* TLS 1.2 cipher list (NULL: OpenSSL's default) */
    char *ciphersuites; /* TLS 1.3 cipher suites (NULL: OpenSSL's default) */
    int client_auth;    /* enum tls_client_auth (accepting side) */
    bool verify;        /* connecting side: verify the server's certificate and name */
    char *server_name;  /* connecting side: name to verify and send (NULL: the address) */
};

struct tls_ctx;

/* Build a context for accepting (server) or connecting (!server) from s,
 * loading and checking its files. NULL with err naming the file and
 * OpenSSL's reason. */
struct tls_ctx *tls_ctx_new(const struct tls_settings *s, bool server, char *err, size_t errlen);

/* Re-read s into ctx (any thread): new connections use the new files,
 * established ones keep theirs. False with err set, ctx unchanged. */
bool tls_ctx_reload(struct tls_ctx *ctx, const struct tls_settings *s, char *err, size_t errlen);

/* Give dst what src was built with (any thread), as tls_ctx_reload would,
 * and free src: new connections from dst use it, established ones keep
 * theirs. Both must be of the same side (server or not). */
void tls_ctx_adopt(struct tls_ctx *dst, struct tls_ctx *src);

/* Free a context (connections made from it keep what they use). */
void tls_ctx_free(struct tls_ctx *ctx);

/* Check that protocols names TLS versions ("TLSv1.2 TLSv1.3"); false with
 * err set. */
bool tls_protocols_valid(const char *protocols, char *err, size_t errlen);

/* Make t a TLS transport over the connected (or connecting) socket fd;
 * peer is the address text or name to verify on the connecting side (NULL
 * when accepting). False with err set (t untouched; fd still the
 * caller's). */
bool transport_tls(struct transport *t, int fd, struct tls_ctx *ctx, const char *peer, char *err,
                   size_t errlen);

enum tls_step {
    TLS_STEP_DONE = 0,   /* handshake complete */
    TLS_STEP_AGAIN = 1,  /* wait for *want (EV_READ or EV_WRITE) and call again */
    TLS_STEP_FAILED = 2, /* err says why */
};

/* Advance t's handshake. */
enum tls_step transport_handshake(struct transport *t, unsigned *want, char *err, size_t errlen);

/* Encrypted bytes written by OpenSSL and not yet sent: the caller keeps
 * watching for writability and calls transport_writev (with n = 0 if it has
 * nothing new) until this is false. */
static inline bool transport_out_pending(const struct transport *t)
{
    return t->out_len > t->out_sent;
}

/* The subject of the peer's verified certificate, or "" (for logs). */
void transport_tls_peer(struct transport *t, char *buf, size_t len);

#endif
