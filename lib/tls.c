/*
 * tls.c - OpenSSL contexts and the TLS transport (see tls.h for the model:
 * socket BIO with read-ahead for reads, an output buffer of the transport's
 * own for writes, the handshake driven on its own).
 */
#include "lib/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"

#define TLS_RECORD    16384       /* largest TLS record payload */
#define TLS_WRITE_MAX (64 * 1024) /* plaintext taken by one writev */
/* Encrypted bytes waiting in a transport: one writev's worth and what
 * reading made OpenSSL answer (alerts, key updates); a peer that makes it
 * answer more without reading fails its connection. */
#define TLS_OUT_MAX (256 * 1024)

struct tls_ctx {
    pthread_mutex_t lock; /* guards ctx and server_name against a reload */
    SSL_CTX *ctx;
    bool server;
    bool verify;
    char *server_name;
};

/* ---- errors -------------------------------------------------------------- */

/* OpenSSL's reason for the last failure (and an empty error queue after). */
static void tls_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    if (r != NULL) {
        snprintf(buf, len, "%s", r);
    } else if (e != 0) {
        ERR_error_string_n(e, buf, len);
    } else {
        snprintf(buf, len, "unknown error");
    }
    ERR_clear_error();
}

/* Messages quote paths and settings, which may hold anything: control
 * characters become '?' so that a message stays one harmless line. */
static void tls_mask(char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            *s = '?';
        }
    }
}

static bool __attribute__((format(printf, 3, 4)))
tls_fail(char *err, size_t errlen, const char *fmt, ...)
{
    char what[512], why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    tls_reason(why, sizeof(why));
    snprintf(err, errlen, "%s: %s", what, why);
    tls_mask(err);
    return false;
}

/* ---- contexts ------------------------------------------------------------ */

static int tls_version(const char *name, size_t n)
{
    if (n == 7 && strncmp(name, "TLSv1.2", n) == 0) {
        return TLS1_2_VERSION;
    }
    if (n == 7 && strncmp(name, "TLSv1.3", n) == 0) {
        return TLS1_3_VERSION;
    }
    return 0;
}

/* The lowest and highest version named in protocols. */
static bool tls_versions(const char *protocols, int *min, int *max, char *err, size_t errlen)
{
    const char *p = protocols != NULL ? protocols : "TLSv1.2 TLSv1.3";

    *min = *max = 0;
    while (*p != '\0') {
        size_t n = strcspn(p, " ,");
        if (n > 0) {
            int v = tls_version(p, n);
            if (v == 0) {
                snprintf(err, errlen, "unknown protocol '%.*s' (TLSv1.2 and TLSv1.3 are known)",
                         (int)(n > 32 ? 32 : n), p);
                tls_mask(err);
                return false;
            }
            *min = *min == 0 || v < *min ? v : *min;
            *max = v > *max ? v : *max;
        }
        p += n + (p[n] != '\0');
    }
    if (*min == 0) {
        snprintf(err, errlen, "no protocol named");
        return false;
    }
    return true;
}

bool tls_protocols_valid(const char *protocols, char *err, size_t errlen)
{
    int min, max;

    return tls_versions(protocols, &min, &max, err, errlen);
}

static bool tls_load_files(SSL_CTX *ctx, const struct tls_settings *s, bool server, char *err,
                           size_t errlen)
{
    if (server && (s->cert == NULL || s->key == NULL)) {
        snprintf(err, errlen, "accepting TLS needs a certificate and a key");
        return false;
    }
    if ((s->cert == NULL) != (s->key == NULL)) {
        snprintf(err, errlen, "a certificate needs a key and a key a certificate");
        return false;
    }
    if (s->cert != NULL) {
        if (SSL_CTX_use_certificate_chain_file(ctx, s->cert) != 1) {
            return tls_fail(err, errlen, "certificate %s", s->cert);
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, s->key, SSL_FILETYPE_PEM) != 1) {
            if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
                return tls_fail(err, errlen, "key %s does not match certificate %s", s->key,
                                s->cert);
            }
            return tls_fail(err, errlen, "key %s", s->key);
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            return tls_fail(err, errlen, "key %s does not match certificate %s", s->key, s->cert);
        }
    }
    if (s->ca != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, s->ca, NULL) != 1) {
            return tls_fail(err, errlen, "CA file %s", s->ca);
        }
    } else if (!server && SSL_CTX_set_default_verify_paths(ctx) != 1) {
        return tls_fail(err, errlen, "the system's CA certificates");
    }
    return true;
}

static bool tls_server_auth(SSL_CTX *ctx, const struct tls_settings *s, char *err, size_t errlen)
{
    static const unsigned char sid[] = "sentinel-proxy";
    STACK_OF(X509_NAME) * names;

    /* Resumed sessions of clients with certificates need a context id. */
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    if (s->client_auth == TLS_AUTH_NONE) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return true;
    }
    if (s->ca == NULL) {
        snprintf(err, errlen, "client-auth needs a CA file to check client certificates with");
        return false;
    }
    names = SSL_load_client_CA_file(s->ca);
    if (names == NULL) {
        return tls_fail(err, errlen, "CA file %s", s->ca);
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(
        ctx,
        SSL_VERIFY_PEER |
            (s->client_auth == TLS_AUTH_REQUIRED ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
        NULL);
    return true;
}

static SSL_CTX *tls_build(const struct tls_settings *s, bool server, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    int min, max;

    if (ctx == NULL) {
        tls_fail(err, errlen, "TLS context");
        return NULL;
    }
    if (!tls_versions(s->protocols, &min, &max, err, errlen)) {
        goto failed;
    }
    SSL_CTX_set_min_proto_version(ctx, min);
    SSL_CTX_set_max_proto_version(ctx, max);
    /* No renegotiation; a peer that closes without close_notify has
     * closed (as most Redis clients do), not failed. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
    if (s->ciphers != NULL && SSL_CTX_set_cipher_list(ctx, s->ciphers) != 1) {
        tls_fail(err, errlen, "ciphers '%s'", s->ciphers);
        goto failed;
    }
    if (s->ciphersuites != NULL && SSL_CTX_set_ciphersuites(ctx, s->ciphersuites) != 1) {
        tls_fail(err, errlen, "ciphersuites '%s'", s->ciphersuites);
        goto failed;
    }
    if (!tls_load_files(ctx, s, server, err, errlen)) {
        goto failed;
    }
    if (server ? !tls_server_auth(ctx, s, err, errlen) : false) {
        goto failed;
    }
    if (!server) {
        SSL_CTX_set_verify(ctx, s->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    }
    return ctx;
failed:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

struct tls_ctx *tls_ctx_new(const struct tls_settings *s, bool server, char *err, size_t errlen)
{
    struct tls_ctx *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->server = server;
    if (!tls_ctx_reload(c, s, err, errlen)) {
        tls_ctx_free(c);
        return NULL;
    }
    return c;
}

bool tls_ctx_reload(struct tls_ctx *c, const struct tls_settings *s, char *err, size_t errlen)
{
    SSL_CTX *ctx = tls_build(s, c->server, err, errlen), *old;
    char *name = NULL;

    if (ctx == NULL) {
        return false;
    }
    if (s->server_name != NULL && (name = strdup(s->server_name)) == NULL) {
        SSL_CTX_free(ctx);
        snprintf(err, errlen, "out of memory");
        return false;
    }
    pthread_mutex_lock(&c->lock);
    old = c->ctx;
    c->ctx = ctx;
    free(c->server_name);
    c->server_name = name;
    c->verify = s->verify;
    pthread_mutex_unlock(&c->lock);
    SSL_CTX_free(old); /* connections made from it hold references */
    return true;
}

void tls_ctx_adopt(struct tls_ctx *dst, struct tls_ctx *src)
{
    SSL_CTX *ctx;
    char *name;
    bool verify;

    pthread_mutex_lock(&dst->lock);
    ctx = dst->ctx;
    name = dst->server_name;
    verify = dst->verify;
    dst->ctx = src->ctx;
    dst->server_name = src->server_name;
    dst->verify = src->verify;
    pthread_mutex_unlock(&dst->lock);
    src->ctx = ctx;
    src->server_name = name;
    src->verify = verify;
    tls_ctx_free(src);
}

void tls_ctx_free(struct tls_ctx *c)
{
    if (c == NULL) {
        return;
    }
    SSL_CTX_free(c->ctx);
    free(c->server_name);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---- the output buffer, as a BIO ------------------------------------------ */

static int tls_bio_write(BIO *b, const char *data, int len)
{
    struct transport *t = BIO_get_data(b);
    size_t need = t->out_len + (size_t)len;

    if (len <= 0) {
        return 0;
    }
    if (t->out_len - t->out_sent + (size_t)len > TLS_OUT_MAX) {
        return -1;
    }
    if (t->out_sent > 0) {
        /* What was written goes: only the unsent bytes stay buffered. */
        memmove(t->out, t->out + t->out_sent, t->out_len - t->out_sent);
        t->out_len -= t->out_sent;
        t->out_sent = 0;
        need = t->out_len + (size_t)len;
    }
    if (need > t->out_cap) {
        size_t cap = t->out_cap > 0 ? t->out_cap : TLS_RECORD + 256;
        char *n;
        while (cap < need) {
            cap *= 2;
        }
        n = realloc(t->out, cap);
        if (n == NULL) {
            return -1;
        }
        t->out = n;
        t->out_cap = cap;
    }
    memcpy(t->out + t->out_len, data, (size_t)len);
    t->out_len = need;
    return len;
}

static long tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct transport *t = BIO_get_data(b);

    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_WPENDING:
    case BIO_CTRL_PENDING:
        return t != NULL ? (long)(t->out_len - t->out_sent) : 0;
    default:
        return 0;
    }
}

static int tls_bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *tls_bio_method;
static pthread_once_t tls_bio_once = PTHREAD_ONCE_INIT;

static void tls_bio_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sp-out");

    if (m != NULL) {
        BIO_meth_set_write(m, tls_bio_write);
        BIO_meth_set_ctrl(m, tls_bio_ctrl);
        BIO_meth_set_create(m, tls_bio_create);
    }
    tls_bio_method = m;
}

/* Write the output buffer to the socket; 0 when it is drained (and freed),
 * -1 with errno (EAGAIN: some is left). */
static int tls_drain(struct transport *t)
{
    while (t->out_sent < t->out_len) {
        ssize_t n = write(t->fd, t->out + t->out_sent, t->out_len - t->out_sent);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        t->out_sent += (size_t)n;
    }
    free(t->out);
    t->out = NULL;
    t->out_len = t->out_sent = t->out_cap = 0;
    return 0;
}

/* ---- the transport --------------------------------------------------------- */

/* errno for a failed SSL_read/SSL_write; 0 for an orderly end. */
static int tls_errno(SSL *ssl, int rc)
{
    int e = SSL_get_error(ssl, rc);

    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        return errno != 0 ? errno : ECONNRESET;
    default: {
        char why[256];
        /* The peer's alert or OpenSSL's reason: errno cannot carry it. */
        tls_reason(why, sizeof(why));
        log_info("TLS connection failed: %s", why);
        return EPROTO;
    }
    }
}

static ssize_t tls_readv(struct transport *t, const struct iovec *iov, int cnt)
{
    SSL *ssl = t->tls;
    size_t got = 0;

    for (int i = 0; i < cnt; i++) {
        size_t off = 0;
        while (off < iov[i].iov_len) {
            size_t n = 0;
            int e;
            errno = 0;
            if (SSL_read_ex(ssl, (char *)iov[i].iov_base + off, iov[i].iov_len - off, &n) == 1) {
                t->rwait = 0;
                off += n;
                got += n;
                /* Past what OpenSSL holds, the next read would be the
                 * socket's: let the caller's loop decide. */
                if (!SSL_has_pending(ssl)) {
                    goto out;
                }
                continue;
            }
            e = tls_errno(ssl, 0);
            t->rwait = e == EAGAIN;
            if (got > 0) {
                goto out;
            }
            /* Reading can make OpenSSL answer (an alert, a key update). */
            if (t->out_len > t->out_sent && tls_drain(t) < 0 && errno != EAGAIN) {
                return -1;
            }
            if (e == 0) {
                return 0;
            }
            errno = e;
            return -1;
        }
    }
out:
    if (t->out_len > t->out_sent && tls_drain(t) < 0 && errno != EAGAIN) {
        return -1;
    }
    return (ssize_t)got;
}

static bool tls_put(SSL *ssl, const void *data, size_t len)
{
    size_t n;

    return SSL_write_ex(ssl, data, len, &n) == 1 && n == len;
}

static ssize_t tls_writev(struct transport *t, const struct iovec *iov, int cnt)
{
    SSL *ssl = t->tls;
    char rec[TLS_RECORD];
    size_t total = 0, fill = 0;

    /* What OpenSSL wrote before goes first; new data waits behind it. */
    if (tls_drain(t) < 0) {
        return -1;
    }
    for (int i = 0; i < cnt && total + fill < TLS_WRITE_MAX; i++) {
        const char *p = iov[i].iov_base;
        size_t len = iov[i].iov_len;
        while (len > 0 && total + fill < TLS_WRITE_MAX) {
            size_t room = TLS_WRITE_MAX - total - fill, take;
            if (fill == 0 && len >= TLS_RECORD) {
                /* Large: straight from the caller's buffer, no copy. */
                take = len < room ? len : room;
                if (!tls_put(ssl, p, take)) {
                    goto failed;
                }
                total += take;
            } else {
                /* Small pieces share a record. */
                take = sizeof(rec) - fill;
                take = take < len ? take : len;
                take = take < room ? take : room;
                memcpy(rec + fill, p, take);
                fill += take;
                if (fill == sizeof(rec)) {
                    if (!tls_put(ssl, rec, fill)) {
                        goto failed;
                    }
                    total += fill;
                    fill = 0;
                }
            }
            p += take;
            len -= take;
        }
    }
    if (fill > 0) {
        if (!tls_put(ssl, rec, fill)) {
            goto failed;
        }
        total += fill;
    }
    /* Taken: what the socket does not take now waits in the buffer. */
    if (tls_drain(t) < 0 && errno != EAGAIN) {
        return -1;
    }
    return (ssize_t)total;
failed:
    ERR_clear_error();
    errno = ENOMEM;
    return -1;
}

/* Decrypted bytes, or whole records read ahead from the socket (which will
 * not signal them again); not the start of a record still arriving. */
static size_t tls_pending(struct transport *t)
{
    size_t n;

    if (!SSL_is_init_finished(t->tls)) {
        return 0; /* the handshake reads what it needs when the socket says so */
    }
    n = (size_t)SSL_pending(t->tls);
    return n > 0 ? n : !t->rwait && SSL_has_pending(t->tls) ? 1 : 0;
}

static void tls_close(struct transport *t)
{
    SSL *ssl = t->tls;

    if (ssl != NULL) {
        /* close_notify, if the handshake got that far; best effort. */
        if (SSL_is_init_finished(ssl)) {
            SSL_shutdown(ssl);
            tls_drain(t);
        }
        SSL_free(ssl);
        ERR_clear_error();
        t->tls = NULL;
    }
    free(t->out);
    t->out = NULL;
    t->out_len = t->out_sent = t->out_cap = 0;
    close(t->fd);
}

static const struct transport_ops tls_ops = {
    .name = "tls",
    .readv = tls_readv,
    .writev = tls_writev,
    .pending = tls_pending,
    .close = tls_close,
};

static bool tls_is_ip(const char *name)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* The connecting side: the name to check and to send (SNI). */
static bool tls_set_peer(SSL *ssl, const char *name, bool verify)
{
    if (name == NULL || name[0] == '\0') {
        return !verify;
    }
    if (tls_is_ip(name)) {
        return !verify || X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1;
    }
    if (SSL_set_tlsext_host_name(ssl, name) != 1) {
        return false;
    }
    return !verify || SSL_set1_host(ssl, name) == 1;
}

bool transport_tls(struct transport *t, int fd, struct tls_ctx *ctx, const char *peer, char *err,
                   size_t errlen)
{
    SSL *ssl;
    BIO *rb, *wb;
    bool ok;

    pthread_once(&tls_bio_once, tls_bio_init);
    if (tls_bio_method == NULL) {
        snprintf(err, errlen, "TLS: out of memory");
        return false;
    }
    pthread_mutex_lock(&ctx->lock);
    ssl = SSL_new(ctx->ctx);
    ok =
        ssl != NULL &&
        (ctx->server || tls_set_peer(ssl, ctx->server_name ? ctx->server_name : peer, ctx->verify));
    pthread_mutex_unlock(&ctx->lock);
    rb = ok ? BIO_new_socket(fd, BIO_NOCLOSE) : NULL;
    wb = rb != NULL ? BIO_new(tls_bio_method) : NULL;
    if (wb == NULL) {
        tls_fail(err, errlen, "TLS connection setup");
        BIO_free(rb);
        SSL_free(ssl);
        return false;
    }
    transport_plain(t, fd);
    BIO_set_data(wb, t);
    SSL_set_bio(ssl, rb, wb);
    if (ctx->server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
    }
    t->tls = ssl;
    t->ops = &tls_ops;
    return true;
}

static void tls_handshake_error(SSL *ssl, int e, char *err, size_t errlen)
{
    long v = SSL_get_verify_result(ssl);
    char why[256];

    if (v != X509_V_OK) {
        snprintf(err, errlen, "certificate verify failed: %s", X509_verify_cert_error_string(v));
        ERR_clear_error();
        return;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(err, errlen, "connection closed");
        ERR_clear_error();
        return;
    }
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        snprintf(err, errlen, "%s", errno != 0 ? strerror(errno) : "connection closed");
        return;
    }
    tls_reason(why, sizeof(why));
    snprintf(err, errlen, "%s", why);
}

enum tls_step transport_handshake(struct transport *t, unsigned *want, char *err, size_t errlen)
{
    SSL *ssl = t->tls;
    int rc, e;

    errno = 0;
    rc = SSL_do_handshake(ssl);
    e = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, rc);
    /* What the handshake wrote (its messages, or an alert) goes out first. */
    if (t->out_len > t->out_sent && tls_drain(t) < 0 && errno != EAGAIN) {
        snprintf(err, errlen, "%s", strerror(errno));
        ERR_clear_error();
        return TLS_STEP_FAILED;
    }
    t->rwait = e == SSL_ERROR_WANT_READ;
    switch (e) {
    case SSL_ERROR_NONE:
        return TLS_STEP_DONE;
    case SSL_ERROR_WANT_READ:
        *want = EV_READ | (t->out_len > t->out_sent ? (unsigned)EV_WRITE : 0u);
        return TLS_STEP_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want = EV_WRITE;
        return TLS_STEP_AGAIN;
    default:
        tls_handshake_error(ssl, e, err, errlen);
        return TLS_STEP_FAILED;
    }
}

void transport_tls_peer(struct transport *t, char *buf, size_t len)
{
    X509 *cert = t->tls != NULL ? SSL_get1_peer_certificate(t->tls) : NULL;

    buf[0] = '\0';
    if (cert != NULL) {
        X509_NAME_oneline(X509_get_subject_name(cert), buf, (int)len);
        X509_free(cert);
    }
}
