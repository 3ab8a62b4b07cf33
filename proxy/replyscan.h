/*
 * replyscan.h - resumable scanner that finds reply boundaries in a RESP2/RESP3
 * byte stream from a backend, without building objects or copying payloads.
 *
 * Types understood: RESP2 + - : $ * and RESP3 _ , # ( ! = % ~ | > including
 * null bulk/array (-1), attributes (an attribute is part of the reply that
 * follows it) and streamed strings/aggregates ($? ;N ... ;0 and *? %? ~? ... .).
 * Fed one contiguous range at a time, it may be interrupted at any byte.
 *
 * For the caller it records the top-level type byte of each reply, whether
 * it is an error or a push message, and the first bytes of a top-level simple
 * line (so that "-READONLY ..." or "+OK" can be recognised without a copy of
 * the reply).
 */
#ifndef SP_REPLYSCAN_H
#define SP_REPLYSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REPLYSCAN_HEAD_MAX  32          /* bytes kept of a top-level simple line */
#define REPLYSCAN_DEPTH_MAX 32          /* deepest nesting of streamed aggregates */
#define REPLYSCAN_LINE_MAX  (16u << 20) /* longest simple line accepted */

enum replyscan_status {
    REPLYSCAN_MORE = 0,  /* all input used, reply not complete */
    REPLYSCAN_DONE = 1,  /* a top-level reply ends inside the input (*used) */
    REPLYSCAN_ERROR = 2, /* not valid RESP; the stream cannot be trusted */
};

/* Scanner state: treat as opaque except for the "result" fields, which are
 * valid after DONE until the next call. */
struct replyscan {
    /* result of the last DONE */
    char type;     /* top-level type byte ('+', '-', '$', '*', '>', ...) */
    bool is_error; /* '-' or '!' at top level */
    bool is_push;  /* '>' at top level (after any attribute) */
    uint8_t head_len;
    /* prefix of a top-level + - : , # ( line or '!' payload; not NUL-terminated */
    char head[REPLYSCAN_HEAD_MAX];
    uint64_t bytes; /* total bytes of the reply */
    /* top-level aggregate count or bulk length: -1 for null ($-1, *-1, _),
     * -2 for streamed ($?, *?, %?, ~?, >?), 0 for the other simple types */
    int64_t count;

    /* internal */
    uint8_t state;      /* what the next byte is expected to be */
    char cur;           /* type byte of the element being read */
    bool top_pending;   /* the top-level element has not started yet */
    bool capture;       /* the element being read is the top-level one */
    bool in_sstring;    /* between the chunks of a streamed string */
    bool num_neg;       /* the length line started with '-' */
    bool num_stream;    /* the length line is "?" (streamed) */
    uint8_t num_chars;  /* characters of the length line so far */
    uint8_t sdepth;     /* streamed aggregates open */
    uint32_t smap;      /* bit d set: the streamed aggregate at depth d is a map */
    uint64_t num;       /* length being parsed, then payload bytes left */
    uint64_t num_limit; /* largest length the current line may announce */
    uint64_t line;      /* content bytes of the current simple line */
    uint64_t sstring;   /* payload bytes of the current streamed string */
    uint64_t pending;   /* elements still expected since the innermost streamed level opened */
    uint64_t saved[REPLYSCAN_DEPTH_MAX]; /* pending outside each open streamed aggregate */
    uint64_t max_bulk;                   /* longest bulk accepted */
    char err[48];                        /* reason when ERROR */
};

/* Prepare a scanner; max_bulk bounds a single bulk payload (0 = 512 MB). */
void replyscan_init(struct replyscan *s, uint64_t max_bulk);

/*
 * Scan up to n bytes at p, continuing the current reply.
 * DONE: a top-level reply (attributes folded into the reply they precede)
 * ended after *used bytes; result fields describe it. MORE: *used == n.
 * ERROR: malformed input (s->err says why); the connection must be dropped.
 */
enum replyscan_status replyscan_feed(struct replyscan *s, const char *p, size_t n, size_t *used);

#endif
