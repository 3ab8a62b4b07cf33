/*
 * transport.h - how a connection moves bytes: a small table of functions
 * (read, writev, close) behind every client and backend connection, so that
 * plain TCP, unix sockets and TLS share the rest of the code.
 *
 * Conventions follow read(2)/writev(2): a positive count, 0 for end of stream
 * (read), or -1 with errno; EAGAIN means "try again when the event in
 * t->want fires". A TLS transport can need a write to complete a read and the
 * other way round, and can hold decrypted bytes the socket will not signal
 * again: callers must drain transport_pending() before sleeping.
 */
#ifndef SP_TRANSPORT_H
#define SP_TRANSPORT_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct transport;

struct transport_ops {
    const char *name;
    ssize_t (*readv)(struct transport *t, const struct iovec *iov, int n);
    ssize_t (*writev)(struct transport *t, const struct iovec *iov, int n);
    size_t (*pending)(struct transport *t);
    void (*close)(struct transport *t);
};

struct transport {
    int fd;
    const struct transport_ops *ops;
    void *tls; /* per-connection TLS state (an SSL), NULL for plain sockets */
    /* TLS: encrypted bytes not yet written to fd (lib/tls.h); NULL when drained */
    char *out;
    size_t out_len, out_sent, out_cap;
    /* TLS: the last read stopped for want of bytes, so what OpenSSL holds
     * is an unfinished record and the socket will say when more come */
    int rwait;
};

/* Attach a plain (TCP or unix) socket. */
void transport_plain(struct transport *t, int fd);

/* Read up to len bytes. */
static inline ssize_t transport_read(struct transport *t, void *buf, size_t len)
{
    struct iovec iov = {buf, len};
    return t->ops->readv(t, &iov, 1);
}

/* Read into a scatter list (a transport may fill only the first buffer). */
static inline ssize_t transport_readv(struct transport *t, const struct iovec *iov, int n)
{
    return t->ops->readv(t, iov, n);
}

/* Write a gather list. */
static inline ssize_t transport_writev(struct transport *t, const struct iovec *iov, int n)
{
    return t->ops->writev(t, iov, n);
}

/* Bytes already decrypted and waiting inside the transport. */
static inline size_t transport_pending(struct transport *t)
{
    return t->ops->pending(t);
}

/* Close the connection and forget the descriptor (safe to call twice). */
void transport_close(struct transport *t);

/* Close with a reset (RST) rather than an orderly shutdown: data the peer has
 * not read yet is discarded by its kernel. */
void transport_abort(struct transport *t);

#endif
