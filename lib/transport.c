/*
 * transport.c - the plain socket transport.
 */
#include "lib/transport.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static ssize_t plain_readv(struct transport *t, const struct iovec *iov, int cnt)
{
    ssize_t n;

    do {
        n = cnt == 1 ? read(t->fd, iov[0].iov_base, iov[0].iov_len) : readv(t->fd, iov, cnt);
    } while (n < 0 && errno == EINTR);
    return n;
}

static ssize_t plain_writev(struct transport *t, const struct iovec *iov, int cnt)
{
    ssize_t n;

    do {
        /* write(2) costs a little less than writev(2) for one buffer. */
        n = cnt == 1 ? write(t->fd, iov[0].iov_base, iov[0].iov_len) : writev(t->fd, iov, cnt);
    } while (n < 0 && errno == EINTR);
    return n;
}

static size_t plain_pending(struct transport *t)
{
    (void)t;
    return 0;
}

static void plain_close(struct transport *t)
{
    close(t->fd);
}

static const struct transport_ops plain_ops = {
    .name = "plain",
    .readv = plain_readv,
    .writev = plain_writev,
    .pending = plain_pending,
    .close = plain_close,
};

void transport_plain(struct transport *t, int fd)
{
    t->fd = fd;
    t->ops = &plain_ops;
    t->tls = NULL;
    t->out = NULL;
    t->out_len = t->out_sent = t->out_cap = 0;
    t->rwait = 0;
}

void transport_close(struct transport *t)
{
    if (t->fd >= 0) {
        t->ops->close(t);
        t->fd = -1;
        t->ops = &plain_ops; /* a closed TLS transport has nothing pending */
    }
}

void transport_abort(struct transport *t)
{
    struct linger lg = {1, 0};

    if (t->fd >= 0) {
        setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    transport_close(t);
}
