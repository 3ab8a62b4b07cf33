/*
 * reqscan.h - resumable scanner for client requests (RESP multibulk and inline).
 *
 * The scanner finds where each request ends without copying its payload: it
 * is fed contiguous byte ranges (one chunk at a time) and keeps its state
 * between calls, so a request may be split at any byte. It copies only a short
 * prefix of the first two arguments (the command name and, for commands such
 * as CLIENT or SELECT, the sub-command), which the router needs.
 *
 * Errors reproduce redis-server's replies byte for byte ("Protocol error: ..."),
 * including its quirks: the byte after a count line's '\r' and the two bytes
 * after a bulk payload are skipped unchecked, exactly as redis-server does.
 *
 * Inline requests are only delimited here; reqscan_split_inline() splits a
 * complete line into arguments with redis-server's quoting rules.
 */
#ifndef SP_REQSCAN_H
#define SP_REQSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REQSCAN_NAME_MAX     24 /* bytes kept of argument 0 (command name) */
#define REQSCAN_ARG1_MAX     24 /* bytes kept of argument 1 (sub-command) */
#define REQSCAN_ERR_MAX      64
#define REQSCAN_PREAUTH_ARGC 10    /* arguments allowed before authentication, as redis-server */
#define REQSCAN_PREAUTH_BULK 16384 /* bulk bytes allowed before authentication */

enum reqscan_kind {
    REQSCAN_MULTIBULK = 1,
    REQSCAN_INLINE = 2,
};

enum reqscan_status {
    REQSCAN_MORE = 0,  /* all input used, request not complete yet */
    REQSCAN_DONE = 1,  /* a request ends inside the input (see *used) */
    REQSCAN_ERROR = 2, /* protocol error; message in scanner->err */
};

struct reqscan_limits {
    uint64_t max_bulk_len;   /* longest bulk argument (proto-max-bulk-len) */
    uint32_t max_inline_len; /* longest inline line / count line */
};

/* Scanner state. Zero-initialise with reqscan_init(); all fields are read-only
 * for callers except through the functions below. */
struct reqscan {
    const struct reqscan_limits *limits;
    uint8_t state;
    enum reqscan_kind kind : 8; /* of the request being scanned */
    uint8_t name_len;           /* bytes stored in name[] */
    uint8_t arg1_len;           /* bytes stored in arg1[] */
    bool name_trunc;            /* argument 0 was longer than REQSCAN_NAME_MAX */
    bool arg1_trunc;            /* argument 1 was longer than REQSCAN_ARG1_MAX */
    bool num_neg;               /* count line: leading '-' seen */
    uint8_t num_digits;         /* count line: characters seen after the type byte */
    bool num_bad;               /* count line: not a valid number */
    bool eol_cr;                /* inline: line ended with "\r\n" */
    bool preauth;               /* set by the caller: redis-server's limits for clients that must
                                 * still authenticate apply */
    uint8_t lead;               /* argument line: its first byte ('$' expected) */
    int64_t argc;               /* arguments announced (multibulk) */
    int64_t argi;               /* index of the argument being read */
    uint64_t num;               /* count line value being parsed */
    uint64_t left;              /* bytes left of the current bulk payload + CRLF */
    uint64_t line;              /* bytes of the current line so far */
    uint64_t bytes;             /* bytes of the current request so far */
    char name[REQSCAN_NAME_MAX];
    char arg1[REQSCAN_ARG1_MAX];
    char err[REQSCAN_ERR_MAX]; /* NUL-terminated error text when ERROR */
};

/* Prepare a scanner for the first request; limits must outlive the scanner. */
void reqscan_init(struct reqscan *s, const struct reqscan_limits *limits);

/*
 * Scan up to n bytes at p, continuing the current request.
 * DONE: the request ended after *used bytes of this input (*used <= n); the
 *       request's details (kind, argc, name, arg1, bytes) stay readable until
 *       the next call, which starts a new request. A multibulk request with a
 *       count <= 0, or an inline line with no arguments, is DONE with argc 0:
 *       redis-server ignores such requests silently and so must the caller.
 *       For INLINE requests argc is not known: the caller splits the line.
 * MORE: all n bytes were used (*used == n).
 * ERROR: the input is malformed; err holds redis-server's message without the
 *        "-ERR " prefix; *used and bytes include the byte where the error was
 *        found. The scanner must not be fed again.
 */
enum reqscan_status reqscan_feed(struct reqscan *s, const char *p, size_t n, size_t *used);

/* Number of bytes of the line terminator of a complete INLINE request
 * ("\n" = 1, "\r\n" = 2); the line content is bytes - that number. */
size_t reqscan_inline_eol(const struct reqscan *s);

/*
 * Split one inline line (without its line terminator) into arguments, with the
 * semantics of redis-server: whitespace separates, "double quotes" take
 * \n \r \t \b \a \\ \" and \xHH escapes, 'single quotes' take \'; a closing
 * quote must be followed by whitespace or the end. Arguments are written to
 * out (capacity outcap bytes) one after another; argv[i]/argl[i] point into
 * out. Returns the argument count, -1 for unbalanced quotes, -2 if more than
 * maxargs arguments or out is too small (out needs at most len bytes).
 */
int reqscan_split_inline(const char *line, size_t len, char *out, size_t outcap, const char **argv,
                         size_t *argl, int maxargs);

enum reqscan_inline {
    REQSCAN_INLINE_OK = 0,         /* *out holds the request as multibulk */
    REQSCAN_INLINE_EMPTY = 1,      /* no arguments: the line is ignored, as by redis-server */
    REQSCAN_INLINE_UNBALANCED = 2, /* unbalanced quotes */
    REQSCAN_INLINE_NOMEM = 3,      /* out of memory */
};

/* Split an inline request line (len bytes, without its line end) as
 * reqscan_split_inline does and encode its *argc arguments as a multibulk
 * request in a new malloc'd buffer *out of *outlen bytes (the caller frees
 * it). */
enum reqscan_inline reqscan_inline_encode(const char *line, size_t len, char **out, size_t *outlen,
                                          int *argc);

#endif
