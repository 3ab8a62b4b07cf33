/*
 * reqscan.c - resumable scanner for client requests (see reqscan.h).
 *
 * A multibulk request is walked as a small state machine: the count line
 * ("*N"), then for every argument its length line ("$L"), its payload and the
 * two bytes after the payload. Lines are searched with memchr and payloads are
 * skipped by arithmetic, so the work per request does not grow with the size
 * of its arguments; only the first bytes of arguments 0 and 1 are copied.
 *
 * Where redis-server waits for more data, so does the scanner, and it fails
 * at the byte where redis-server would have enough data to fail. The only
 * deliberate differences are about NUL bytes: redis-server searches lines with
 * strchr() and so never sees past a NUL (the connection hangs), while the
 * scanner searches with memchr() and reports the error the line deserves.
 */
#include "proxy/reqscan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum reqscan_state {
    REQSCAN_ST_START = 0,  /* before the first byte of a request */
    REQSCAN_ST_COUNT,      /* "*N" line, up to its '\r' */
    REQSCAN_ST_COUNT_SKIP, /* the byte after the count line's '\r' */
    REQSCAN_ST_HEAD,       /* "$L" line, up to its '\r' */
    REQSCAN_ST_HEAD_SKIP,  /* the byte after the length line's '\r' */
    REQSCAN_ST_PAYLOAD,    /* payload and the two bytes after it */
    REQSCAN_ST_INLINE,     /* inline line, up to its '\n' */
    REQSCAN_ST_DONE,       /* a request ended; the next call starts another */
    REQSCAN_ST_ERROR,      /* a protocol error was reported */
};

/* redis-server's string2ll() refuses strings of 21 characters or more. */
#define REQSCAN_NUM_CHARS 21

/* Largest count accepted in a "*N" line (redis-server compares with INT_MAX). */
#define REQSCAN_ARGC_MAX 2147483647

void reqscan_init(struct reqscan *s, const struct reqscan_limits *limits)
{
    memset(s, 0, sizeof(*s));
    s->limits = limits;
    s->state = REQSCAN_ST_START;
}

/* Forget the request that just ended. Field by field rather than memset:
 * this runs once per request and name/arg1/err need no clearing. */
static void reqscan_reset(struct reqscan *s)
{
    s->state = REQSCAN_ST_START;
    s->kind = 0;
    s->name_len = 0;
    s->arg1_len = 0;
    s->name_trunc = false;
    s->arg1_trunc = false;
    s->num_neg = false;
    s->num_digits = 0;
    s->num_bad = false;
    s->eol_cr = false;
    s->lead = 0;
    s->argc = 0;
    s->argi = 0;
    s->num = 0;
    s->left = 0;
    s->line = 0;
    s->bytes = 0;
    s->err[0] = '\0';
}

static enum reqscan_status reqscan_fail(struct reqscan *s, const char *msg)
{
    snprintf(s->err, sizeof(s->err), "%s", msg);
    s->state = REQSCAN_ST_ERROR;
    return REQSCAN_ERROR;
}

static enum reqscan_status reqscan_done(struct reqscan *s)
{
    s->state = REQSCAN_ST_DONE;
    return REQSCAN_DONE;
}

/* Start a count or length line; its first byte (the type byte) is next. */
static void reqscan_line_begin(struct reqscan *s, uint8_t state)
{
    s->state = state;
    s->line = 0;
    s->num = 0;
    s->num_neg = false;
    s->num_digits = 0;
    s->num_bad = false;
}

/*
 * Take more characters of a count or length line, checking them as
 * string2ll() does: an optional '-', a first digit 1-9 (or the whole string
 * "0"), digits only, no overflow, fewer than 21 characters. Lines are short,
 * so a plain loop is fine; once the line is known to be bad its characters
 * are no longer looked at.
 */
static void reqscan_num_chars(struct reqscan *s, const char *p, size_t n)
{
    if (s->num_bad) {
        return;
    }
    if (n >= (size_t)(REQSCAN_NUM_CHARS - s->num_digits)) {
        s->num_bad = true;
        return;
    }
    for (size_t i = 0; i < n && !s->num_bad; i++) {
        unsigned d = (unsigned)(unsigned char)p[i] - '0';
        unsigned pos = s->num_digits++;
        bool first = pos == (s->num_neg ? 1u : 0u);
        if (pos == 0 && p[i] == '-') {
            s->num_neg = true;
        } else if (d > 9 || (first && d == 0 && s->num_neg)) {
            s->num_bad = true; /* "-0..." is refused like any sign without 1-9 */
        } else if (first) {
            s->num = d;
        } else if (s->num == 0 || s->num > (UINT64_MAX - d) / 10) {
            s->num_bad = true; /* a leading zero, or too many digits */
        } else {
            s->num = s->num * 10 + d;
        }
    }
}

/* Value of a finished count or length line; false where string2ll() fails. */
static bool reqscan_num_value(const struct reqscan *s, int64_t *v)
{
    if (s->num_bad || s->num_digits == (s->num_neg ? 1 : 0)) {
        return false; /* bad characters, empty, or a lone '-' */
    }
    if (!s->num_neg) {
        *v = (int64_t)s->num;
        return s->num <= (uint64_t)INT64_MAX;
    }
    if (s->num > (uint64_t)INT64_MAX + 1) {
        return false;
    }
    *v = s->num == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)s->num;
    return true;
}

/* How many of n bytes a line may look at: one byte past the limit at most, so
 * that an over-long line fails at the same byte however the input is split. */
static size_t reqscan_room(const struct reqscan *s, size_t n)
{
    uint64_t max = s->limits->max_inline_len;
    uint64_t room = s->line <= max ? max + 1 - s->line : 0;

    return n < room ? n : (size_t)room;
}

/*
 * A count or length line, up to its '\r' (used too; the state then moves to
 * skip). Its first byte is kept in lead: redis-server checks it only once the
 * whole line is there, so a wrong one may still be overtaken by "too big",
 * and it may be the '\r' itself. Redis-server gives up on a line that has
 * more than max_inline_len bytes (type byte included) and no '\r' yet.
 */
static size_t reqscan_num_line(struct reqscan *s, const char *p, size_t n, uint8_t skip,
                               const char *too_big, enum reqscan_status *st)
{
    size_t room = reqscan_room(s, n);
    const char *cr = memchr(p, '\r', room);
    size_t take = cr != NULL ? (size_t)(cr - p) : room;
    size_t type = 0;

    if (s->line == 0) {
        s->lead = (uint8_t)p[0]; /* room is at least 1 on a new line */
        type = take > 0 ? 1 : 0;
    }
    reqscan_num_chars(s, p + type, take - type);
    s->line += take;
    if (cr != NULL) {
        s->state = skip;
        return take + 1;
    }
    if (s->line > s->limits->max_inline_len) {
        *st = reqscan_fail(s, too_big);
    }
    return take;
}

static size_t reqscan_start(struct reqscan *s, const char *p)
{
    if (p[0] != '*') {
        s->kind = REQSCAN_INLINE;
        s->state = REQSCAN_ST_INLINE;
        s->line = 0;
        return 0; /* the byte belongs to the line */
    }
    s->kind = REQSCAN_MULTIBULK;
    reqscan_line_begin(s, REQSCAN_ST_COUNT);
    return 0; /* the '*' is the count line's type byte */
}

/* The byte after the count line's '\r' has arrived (redis-server skips it
 * without looking at it): the line can be judged. */
static enum reqscan_status reqscan_count_end(struct reqscan *s)
{
    int64_t v = 0;

    if (!reqscan_num_value(s, &v) || v > REQSCAN_ARGC_MAX) {
        return reqscan_fail(s, "Protocol error: invalid multibulk length");
    }
    if (s->preauth && v > REQSCAN_PREAUTH_ARGC) {
        return reqscan_fail(s, "Protocol error: unauthenticated multibulk length");
    }
    if (v <= 0) {
        return reqscan_done(s); /* ignored by redis-server: argc stays 0 */
    }
    s->argc = v;
    s->argi = 0;
    reqscan_line_begin(s, REQSCAN_ST_HEAD);
    return REQSCAN_MORE;
}

/* Error text for an argument line that does not start with '$'; a line
 * break (and NUL, which would end the C string) is shown as a space. */
static enum reqscan_status reqscan_fail_lead(struct reqscan *s)
{
    char msg[REQSCAN_ERR_MAX];
    char got = (char)s->lead;

    if (got == '\r' || got == '\n' || got == '\0') {
        got = ' ';
    }
    snprintf(msg, sizeof(msg), "Protocol error: expected '$', got '%c'", got);
    return reqscan_fail(s, msg);
}

/* The byte after the length line's '\r' has arrived: judge the line. */
static enum reqscan_status reqscan_head_end(struct reqscan *s)
{
    int64_t v = 0;

    if (s->lead != '$') {
        return reqscan_fail_lead(s);
    }
    if (!reqscan_num_value(s, &v) || v < 0 || (uint64_t)v > s->limits->max_bulk_len) {
        return reqscan_fail(s, "Protocol error: invalid bulk length");
    }
    if (s->preauth && v > REQSCAN_PREAUTH_BULK) {
        return reqscan_fail(s, "Protocol error: unauthenticated bulk length");
    }
    s->left = (uint64_t)v + 2;
    if (s->argi == 0 && (uint64_t)v > REQSCAN_NAME_MAX) {
        s->name_trunc = true;
    }
    if (s->argi == 1 && (uint64_t)v > REQSCAN_ARG1_MAX) {
        s->arg1_trunc = true;
    }
    s->state = REQSCAN_ST_PAYLOAD;
    return REQSCAN_MORE;
}

/*
 * Keep the first bytes of argument 0 or 1. Until the buffer is full, the
 * bytes kept are exactly the payload bytes seen so far, which is all that is
 * needed to know where the payload (and not its two trailing bytes) ends.
 */
static void reqscan_capture(struct reqscan *s, const char *p, size_t n)
{
    char *dst = s->argi == 0 ? s->name : s->arg1;
    uint8_t *len = s->argi == 0 ? &s->name_len : &s->arg1_len;
    size_t room = (s->argi == 0 ? REQSCAN_NAME_MAX : REQSCAN_ARG1_MAX) - *len;
    uint64_t payload = s->left > 2 ? s->left - 2 : 0;

    if (room > n) {
        room = n;
    }
    if (room > payload) {
        room = (size_t)payload;
    }
    memcpy(dst + *len, p, room);
    *len = (uint8_t)(*len + room);
}

/* Payload plus the two bytes after it, which redis-server skips unchecked. */
static size_t reqscan_payload(struct reqscan *s, const char *p, size_t n, enum reqscan_status *st)
{
    size_t take = n < s->left ? n : (size_t)s->left;

    if (s->argi < 2) {
        reqscan_capture(s, p, take);
    }
    s->left -= take;
    if (s->left > 0) {
        return take;
    }
    s->argi++;
    if (s->argi == s->argc) {
        *st = reqscan_done(s);
    } else {
        reqscan_line_begin(s, REQSCAN_ST_HEAD);
    }
    return take;
}

/*
 * Inline line, up to its '\n'. While scanning, eol_cr tells whether the last
 * byte seen was '\r', as that byte may have come in an earlier call.
 */
static size_t reqscan_inline(struct reqscan *s, const char *p, size_t n, enum reqscan_status *st)
{
    size_t room = reqscan_room(s, n);
    const char *lf = memchr(p, '\n', room);
    size_t take;

    if (lf == NULL) {
        s->line += room;
        if (room > 0) {
            s->eol_cr = p[room - 1] == '\r';
        }
        if (s->line > s->limits->max_inline_len) {
            *st = reqscan_fail(s, "Protocol error: too big inline request");
        }
        return room;
    }
    take = (size_t)(lf - p) + 1;
    if (lf > p) {
        s->eol_cr = lf[-1] == '\r';
    }
    s->line += take;
    *st = reqscan_done(s);
    return take;
}

/* One step of the state machine on n > 0 bytes; returns the bytes used. */
static size_t reqscan_step(struct reqscan *s, const char *p, size_t n, enum reqscan_status *st)
{
    switch (s->state) {
    case REQSCAN_ST_START:
        return reqscan_start(s, p);
    case REQSCAN_ST_COUNT:
        return reqscan_num_line(s, p, n, REQSCAN_ST_COUNT_SKIP,
                                "Protocol error: too big mbulk count string", st);
    case REQSCAN_ST_COUNT_SKIP:
        *st = reqscan_count_end(s);
        return 1;
    case REQSCAN_ST_HEAD:
        return reqscan_num_line(s, p, n, REQSCAN_ST_HEAD_SKIP,
                                "Protocol error: too big bulk count string", st);
    case REQSCAN_ST_HEAD_SKIP:
        *st = reqscan_head_end(s);
        return 1;
    case REQSCAN_ST_PAYLOAD:
        return reqscan_payload(s, p, n, st);
    case REQSCAN_ST_INLINE:
        return reqscan_inline(s, p, n, st);
    default:
        *st = reqscan_fail(s, "Protocol error: scanner misuse");
        return 0;
    }
}

/* Keep the first bytes of argument i (0: the name, 1: the sub-command); p has
 * at least avail readable bytes. */
static void reqscan_fast_capture(struct reqscan *s, uint64_t i, const char *p, uint64_t len,
                                 size_t avail)
{
    size_t max = i == 0 ? REQSCAN_NAME_MAX : REQSCAN_ARG1_MAX;
    size_t take = len < max ? (size_t)len : max;
    char *dst = i == 0 ? s->name : s->arg1;

    /* A fixed-size copy is a few instructions; bytes past the argument are
     * ignored (the length says where it ends). */
    if (avail >= REQSCAN_NAME_MAX && max == REQSCAN_NAME_MAX) {
        memcpy(dst, p, REQSCAN_NAME_MAX);
    } else {
        memcpy(dst, p, take);
    }
    if (i == 0) {
        s->name_len = (uint8_t)take;
        s->name_trunc = len > max;
    } else {
        s->arg1_len = (uint8_t)take;
        s->arg1_trunc = len > max;
    }
}

/* A decimal at *q: the first digit 1-9 (or the whole number "0"), at most
 * maxdigits digits. -1 when it is anything else. */
static int64_t reqscan_fast_number(const char **q, const char *end, int maxdigits)
{
    const char *d = *q;
    int64_t v = 0;

    if (d < end && *d == '0') {
        *q = d + 1;
        return 0;
    }
    for (int k = 0; d < end && *d >= '0' && *d <= '9'; d++, k++) {
        if (k >= maxdigits) {
            return -1;
        }
        v = v * 10 + (*d - '0');
    }
    if (d == *q) {
        return -1;
    }
    *q = d;
    return v;
}

/* reqscan_fast_number() for a bulk length; lengths of one or two digits
 * followed by '\r', nearly all of them, are read without the digit loop. */
static inline int64_t reqscan_fast_len(const char **q, const char *end)
{
    const char *d = *q;

    if (end - d >= 3) {
        unsigned c0 = (unsigned)(unsigned char)d[0] - '1';
        unsigned c1 = (unsigned)(unsigned char)d[1] - '0';

        if (c0 < 9 && d[1] == '\r') {
            *q = d + 1;
            return c0 + 1;
        }
        if (c0 < 9 && c1 < 10 && d[2] == '\r') {
            *q = d + 2;
            return (c0 + 1) * 10 + c1;
        }
    }
    return reqscan_fast_number(q, end, 18);
}

/* The two bytes at p are CR LF (the caller knows both are readable). */
static inline bool reqscan_is_crlf(const char *p)
{
    return memcmp(p, "\r\n", 2) == 0;
}

/*
 * Nearly every request is a well-formed multibulk whose bytes are all here:
 * take it in one pass, with the same results as the byte-wise scanner. Only
 * requests in the plainest form qualify (exact CRLFs, ordinary numbers);
 * anything else returns 0 and goes the careful way, which also handles
 * redis-server's quirks and errors.
 */
static size_t reqscan_fast(struct reqscan *s, const char *p, size_t n)
{
    const char *q = p + 1, *end = p + n;
    uint64_t max_len = s->limits->max_bulk_len;
    int64_t argc, len;

    /* Its lines ("*" and 9 digits, "$" and 18) stay within a line limit of
     * 19 bytes or more; a smaller limit is the careful path's to enforce. */
    if (p[0] != '*' || s->limits->max_inline_len < 19 ||
        (argc = reqscan_fast_number(&q, end, 9)) <= 0 || end - q < 2 || !reqscan_is_crlf(q) ||
        (s->preauth && argc > REQSCAN_PREAUTH_ARGC)) {
        return 0;
    }
    if (s->preauth && max_len > REQSCAN_PREAUTH_BULK) {
        max_len = REQSCAN_PREAUTH_BULK;
    }
    q += 2;
    for (int64_t i = 0; i < argc; i++) {
        if (q >= end || *q != '$') {
            return 0;
        }
        q++;
        /* len < 10^18, so len + 4 cannot overflow. */
        len = reqscan_fast_len(&q, end);
        if (len < 0 || (uint64_t)len > max_len || end - q < len + 4 || !reqscan_is_crlf(q) ||
            !reqscan_is_crlf(q + 2 + len)) {
            return 0;
        }
        q += 2;
        if (i < 2) {
            reqscan_fast_capture(s, (uint64_t)i, q, (uint64_t)len, (size_t)(end - q));
        }
        q += len + 2;
    }
    s->kind = REQSCAN_MULTIBULK;
    s->argc = argc;
    s->argi = argc;
    s->bytes = (uint64_t)(q - p);
    s->state = REQSCAN_ST_DONE;
    return (size_t)(q - p);
}

enum reqscan_status reqscan_feed(struct reqscan *s, const char *p, size_t n, size_t *used)
{
    enum reqscan_status st = REQSCAN_MORE;
    size_t i = 0;

    if (s->state == REQSCAN_ST_ERROR) {
        *used = 0;
        return REQSCAN_ERROR;
    }
    if (s->state == REQSCAN_ST_DONE) {
        reqscan_reset(s);
    }
    if (s->state == REQSCAN_ST_START && n > 0) {
        i = reqscan_fast(s, p, n);
        if (i > 0) {
            *used = i;
            return REQSCAN_DONE;
        }
        s->name_len = s->arg1_len = 0; /* what a fast attempt that gave up kept */
        s->name_trunc = s->arg1_trunc = false;
    }
    while (i < n && st == REQSCAN_MORE) {
        size_t k = reqscan_step(s, p + i, n - i, &st);
        i += k;
        s->bytes += k;
    }
    *used = i;
    return st;
}

size_t reqscan_inline_eol(const struct reqscan *s)
{
    return s->eol_cr ? 2 : 1;
}

/*
 * Inline splitting. The input is read as redis-server reads it, as a C
 * string: a NUL byte ends it. Output never outgrows the input consumed, so
 * out needs at most len bytes; smaller buffers are checked byte by byte.
 */
struct reqscan_split {
    const char *p;   /* next input byte */
    const char *end; /* end of the input */
    char *out;
    size_t o;   /* bytes written to out */
    size_t cap; /* capacity of out */
};

/* Blanks between arguments and after a closing quote: isspace() in the C
 * locale. */
static bool reqscan_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Bytes that end an unquoted argument: a narrower set than isspace(), so
 * "\v" and "\f" inside a word are kept, as redis-server does. */
static bool reqscan_is_word_end(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int reqscan_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static bool reqscan_put(struct reqscan_split *sp, char c)
{
    if (sp->o >= sp->cap) {
        return false;
    }
    sp->out[sp->o++] = c;
    return true;
}

/* Number of input bytes left from the cursor. */
static size_t reqscan_left(const struct reqscan_split *sp)
{
    return (size_t)(sp->end - sp->p);
}

/* The byte a double-quoted escape stands for; *skip is the input it uses
 * (backslash included). Only called with at least two bytes left. */
static char reqscan_escape(const char *p, size_t left, size_t *skip)
{
    *skip = 2;
    if (p[1] == 'x' && left >= 4 && reqscan_hex(p[2]) >= 0 && reqscan_hex(p[3]) >= 0) {
        *skip = 4;
        return (char)(reqscan_hex(p[2]) * 16 + reqscan_hex(p[3]));
    }
    switch (p[1]) {
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'b':
        return '\b';
    case 'a':
        return '\a';
    default:
        return p[1]; /* any other escaped byte stands for itself */
    }
}

/* The closing quote at sp->p: it must be followed by a blank or the end. */
static int reqscan_close_quote(struct reqscan_split *sp)
{
    sp->p++;
    if (sp->p < sp->end && !reqscan_is_space(*sp->p)) {
        return -1;
    }
    return 0;
}

/* A quoted section, cursor after its opening quote; 0, -1 (unbalanced) or
 * -2 (out is full). Single quotes know one escape only: \' . */
static int reqscan_quoted(struct reqscan_split *sp, char quote)
{
    while (sp->p < sp->end) {
        size_t skip = 1;
        char c = *sp->p;
        if (c == quote) {
            return reqscan_close_quote(sp);
        }
        if (c == '\\' && quote == '"' && reqscan_left(sp) >= 2) {
            c = reqscan_escape(sp->p, reqscan_left(sp), &skip);
        } else if (c == '\\' && reqscan_left(sp) >= 2 && sp->p[1] == '\'') {
            c = '\'';
            skip = 2;
        }
        if (!reqscan_put(sp, c)) {
            return -2;
        }
        sp->p += skip;
    }
    return -1; /* no closing quote */
}

/* One argument starting at a non-blank byte. A quote may open in the middle
 * of a word ("ab"cd" is not valid, but ab"cd" is "abcd"), and the argument
 * then ends with the quoted section. */
static int reqscan_word(struct reqscan_split *sp)
{
    while (sp->p < sp->end && !reqscan_is_word_end(*sp->p)) {
        char c = *sp->p++;
        if (c == '"' || c == '\'') {
            return reqscan_quoted(sp, c);
        }
        if (!reqscan_put(sp, c)) {
            return -2;
        }
    }
    return 0;
}

int reqscan_split_inline(const char *line, size_t len, char *out, size_t outcap, const char **argv,
                         size_t *argl, int maxargs)
{
    const char *nul = memchr(line, '\0', len);
    struct reqscan_split sp = {
        .p = line, .end = nul != NULL ? nul : line + len, .out = out, .o = 0, .cap = outcap};
    int argc = 0;

    for (;;) {
        size_t start = sp.o;
        int rc;
        while (sp.p < sp.end && reqscan_is_space(*sp.p)) {
            sp.p++;
        }
        if (sp.p == sp.end) {
            return argc;
        }
        if (argc >= maxargs) {
            return -2;
        }
        rc = reqscan_word(&sp);
        if (rc < 0) {
            return rc;
        }
        argv[argc] = out + start;
        argl[argc] = sp.o - start;
        argc++;
    }
}

enum reqscan_inline reqscan_inline_encode(const char *line, size_t len, char **out, size_t *outlen,
                                          int *nargs)
{
    int maxargs = (int)(len / 2 + 1); /* one byte and a separator each, at least */
    char *split = malloc(len + 1), *enc = NULL;
    const char **argv = malloc((size_t)maxargs * sizeof(*argv));
    size_t *argl = malloc((size_t)maxargs * sizeof(*argl));
    enum reqscan_inline st = REQSCAN_INLINE_NOMEM;
    int argc;

    *out = NULL;
    *outlen = 0;
    *nargs = 0;
    if (split == NULL || argv == NULL || argl == NULL) {
        goto done;
    }
    argc = reqscan_split_inline(line, len, split, len + 1, argv, argl, maxargs);
    if (argc < 0) {
        /* -2 cannot happen: out and argv are large enough for any line. */
        st = argc == -1 ? REQSCAN_INLINE_UNBALANCED : REQSCAN_INLINE_NOMEM;
        goto done;
    }
    if (argc == 0) {
        st = REQSCAN_INLINE_EMPTY;
        goto done;
    }
    {
        /* "$<len>\r\n<arg>\r\n" per argument: at most 24 bytes of framing. */
        size_t cap = 16 + len + (size_t)argc * 24, n;
        enc = malloc(cap);
        if (enc == NULL) {
            goto done;
        }
        n = (size_t)snprintf(enc, cap, "*%d\r\n", argc);
        for (int i = 0; i < argc; i++) {
            n += (size_t)snprintf(enc + n, cap - n, "$%zu\r\n", argl[i]);
            memcpy(enc + n, argv[i], argl[i]);
            n += argl[i];
            enc[n++] = '\r';
            enc[n++] = '\n';
        }
        *out = enc;
        *outlen = n;
        *nargs = argc;
        st = REQSCAN_INLINE_OK;
    }
done:
    free(split);
    free(argv);
    free(argl);
    return st;
}
