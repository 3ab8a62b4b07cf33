/*
 * resp.h - a small pull parser for complete RESP2/RESP3 replies held in one
 * buffer, for the cold paths that need a reply's content (ROLE probes,
 * COMMAND tables, subscription confirmations). The hot path never builds
 * values: it only finds reply boundaries (replyscan.h).
 */
#ifndef SP_RESP_H
#define SP_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct resp_value {
    char type;     /* the type byte: '+', '-', ':', '$', '*', '%', '~', '>', '_', ... */
    int64_t n;     /* integer value (':'), element count (aggregates; maps count pairs
                    * as 2 elements), or -1 for a null */
    const char *s; /* payload of strings, errors, bulk strings and verbatim strings */
    size_t len;
};

/* A cursor over a buffer. */
struct resp_reader {
    const char *p;
    const char *end;
};

/* Start reading buf[0..len). */
void resp_reader_init(struct resp_reader *r, const char *buf, size_t len);

/* Read the next value's header: a scalar whole, or an aggregate's type and
 * count (its elements follow). False at the end or on malformed input. */
bool resp_next(struct resp_reader *r, struct resp_value *v);

/* Skip one whole value (with its elements). False on malformed input. */
bool resp_skip(struct resp_reader *r);

/* The value as an integer: ':' values, or strings holding a decimal number.
 * False otherwise. */
bool resp_int(const struct resp_value *v, int64_t *out);

/* True when the value is a string equal to word (ASCII case-insensitive). */
bool resp_is(const struct resp_value *v, const char *word);

#endif
