/*
 * strbuf.c - growable text buffer.
 */
#include "lib/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void strbuf_init(struct strbuf *sb)
{
    memset(sb, 0, sizeof(*sb));
}

static bool strbuf_reserve(struct strbuf *sb, size_t more)
{
    size_t cap;
    char *nb;

    if (sb->oom) {
        return false;
    }
    if (sb->len + more + 1 <= sb->cap) {
        return true;
    }
    cap = sb->cap ? sb->cap : 256;
    while (cap < sb->len + more + 1) {
        cap *= 2;
    }
    nb = realloc(sb->buf, cap);
    if (nb == NULL) {
        sb->oom = true;
        return false;
    }
    sb->buf = nb;
    sb->cap = cap;
    return true;
}

void strbuf_append(struct strbuf *sb, const char *data, size_t len)
{
    if (!strbuf_reserve(sb, len)) {
        return;
    }
    memcpy(sb->buf + sb->len, data, len);
    sb->len += len;
    sb->buf[sb->len] = '\0';
}

void strbuf_printf(struct strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !strbuf_reserve(sb, (size_t)n)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

void strbuf_bulk(struct strbuf *sb, const char *data, size_t len)
{
    strbuf_printf(sb, "$%zu\r\n", len);
    strbuf_append(sb, data, len);
    strbuf_append(sb, "\r\n", 2);
}

void strbuf_free(struct strbuf *sb)
{
    free(sb->buf);
    strbuf_init(sb);
}
