/*
 * strbuf.h - a growable text buffer for cold paths (status replies, logs).
 */
#ifndef SP_STRBUF_H
#define SP_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
    char *buf;
    size_t len;
    size_t cap;
    bool oom; /* an append failed; the content is truncated */
};

/* An empty buffer (no allocation until the first append). */
void strbuf_init(struct strbuf *sb);

/* Append printf-formatted text. */
void strbuf_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append raw bytes. */
void strbuf_append(struct strbuf *sb, const char *data, size_t len);

/* Append a RESP bulk string holding data. */
void strbuf_bulk(struct strbuf *sb, const char *data, size_t len);

/* Free the buffer and reset it to empty. */
void strbuf_free(struct strbuf *sb);

#endif
