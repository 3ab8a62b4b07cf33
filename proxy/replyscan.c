/*
 * replyscan.c - finds where each reply ends in a RESP2/RESP3 byte stream
 * from a backend (see replyscan.h for the contract).
 *
 * The scanner never looks inside a payload: bulk bodies are skipped by their
 * length and simple lines are searched for their CR with memchr, so a reply
 * costs time in proportion to its number of elements, not to its size.
 *
 * Counted aggregates need no stack. One counter, "pending", holds how many
 * elements all the open counted aggregates still expect together: an
 * aggregate header is one element that is replaced by its n children (2n for
 * a map), an attribute adds its 2n keys and values without being an element
 * itself, and each finished scalar takes one off. Depth is therefore free,
 * which matters because a Lua script may return arrays nested far deeper than
 * any fixed stack would allow. Streamed aggregates end with a marker instead
 * of a count, so each one saves the counter of its parent on a small bounded
 * stack and starts its own from zero.
 */
#include "proxy/replyscan.h"

#include <stdio.h>
#include <string.h>

enum replyscan_state {
    RS_NEW = 0, /* a reply ended (or none began yet): reset the results first */
    RS_TYPE,    /* type byte of the next element */
    RS_LINE,    /* content of a simple line, up to its CR */
    RS_BOOL,    /* the 't' or 'f' of a boolean */
    RS_LINE_CR, /* the CR of a line with fixed content ('_', '#', '.') */
    RS_LINE_LF, /* the LF ending a simple line */
    RS_NUM,     /* a length or a count, up to its CR */
    RS_NUM_LF,  /* the LF ending a length line */
    RS_BULK,    /* payload bytes */
    RS_BULK_CR, /* the CR after a payload */
    RS_BULK_LF, /* the LF after a payload */
    RS_ERROR,   /* malformed input was seen: every later call fails too */
};

#define RS_DEFAULT_MAX_BULK ((uint64_t)512 << 20)
/* Counts and lengths end up in the int64_t "count" result. */
#define RS_NUM_MAX ((uint64_t)INT64_MAX)

/* smap has one bit per level of streamed aggregate. */
_Static_assert(REPLYSCAN_DEPTH_MAX <= 32, "smap holds one bit per streamed level");

void replyscan_init(struct replyscan *s, uint64_t max_bulk)
{
    memset(s, 0, sizeof(*s));
    if (max_bulk == 0) {
        max_bulk = RS_DEFAULT_MAX_BULK;
    }
    s->max_bulk = max_bulk < RS_NUM_MAX ? max_bulk : RS_NUM_MAX;
    s->state = RS_NEW;
}

/* Returns 0, the number of bytes accepted, so that callers can return it. */
static size_t replyscan_fail(struct replyscan *s, const char *why)
{
    snprintf(s->err, sizeof(s->err), "%s", why);
    s->state = RS_ERROR;
    return 0;
}

static void replyscan_begin(struct replyscan *s)
{
    s->type = 0;
    s->is_error = false;
    s->is_push = false;
    s->head_len = 0;
    s->bytes = 0;
    s->count = 0;
    s->top_pending = true;
    s->capture = false;
    s->in_sstring = false;
    s->sdepth = 0;
    s->smap = 0;
    s->pending = 1;
    s->state = RS_TYPE;
}

/* Go on with the next element, unless nothing more is expected. */
static void replyscan_settle(struct replyscan *s)
{
    s->state = s->pending == 0 && s->sdepth == 0 ? RS_NEW : RS_TYPE;
}

/* A scalar, a null or a bulk ended. */
static void replyscan_element_done(struct replyscan *s)
{
    s->capture = false;
    s->pending--;
    replyscan_settle(s);
}

static void replyscan_head(struct replyscan *s, const char *p, size_t n)
{
    size_t room = REPLYSCAN_HEAD_MAX - s->head_len;
    size_t take = n < room ? n : room;

    memcpy(s->head + s->head_len, p, take);
    s->head_len = (uint8_t)(s->head_len + take);
}

/* The first element that is not an attribute at depth 0 is the one the
 * results describe. */
static void replyscan_top(struct replyscan *s, char c)
{
    s->top_pending = false;
    s->capture = true;
    s->type = c;
    s->is_error = c == '-' || c == '!';
    s->is_push = c == '>';
    s->count = c == '_' ? -1 : 0;
}

static void replyscan_num_start(struct replyscan *s, uint64_t limit)
{
    s->state = RS_NUM;
    s->num = 0;
    s->num_limit = limit;
    s->num_chars = 0;
    s->num_neg = false;
    s->num_stream = false;
}

static size_t replyscan_type(struct replyscan *s, char c)
{
    if (s->in_sstring) {
        if (c != ';') {
            return replyscan_fail(s, "expected ';' in a streamed string");
        }
        s->cur = c;
        /* the whole streamed string is held to max_bulk, not each chunk */
        replyscan_num_start(s, s->max_bulk - s->sstring);
        return 1;
    }
    if (s->pending == 0) {
        /* Only inside a streamed aggregate: either its end or one more
         * child, which in a map is a key and its value. */
        if (c == '.') {
            s->cur = c;
            s->state = RS_LINE_CR;
            return 1;
        }
        s->pending = (s->smap >> (s->sdepth - 1) & 1) != 0 ? 2 : 1;
    }
    if (c == '.') {
        return replyscan_fail(s, "unexpected end marker");
    }
    if (s->top_pending && s->pending == 1 && s->sdepth == 0 && c != '|') {
        replyscan_top(s, c);
    }
    s->cur = c;
    switch (c) {
    case '+':
    case '-':
    case ':':
    case ',':
    case '(':
        s->state = RS_LINE;
        s->line = 0;
        return 1;
    case '_':
        s->state = RS_LINE_CR;
        return 1;
    case '#':
        s->state = RS_BOOL;
        return 1;
    case '$':
    case '!':
    case '=':
        replyscan_num_start(s, s->max_bulk);
        return 1;
    case '*':
    case '%':
    case '~':
    case '>':
    case '|':
        replyscan_num_start(s, RS_NUM_MAX);
        return 1;
    default:
        return replyscan_fail(s, "unknown type byte");
    }
}

static void replyscan_line_done(struct replyscan *s)
{
    if (s->cur != '.') {
        replyscan_element_done(s);
        return;
    }
    s->sdepth--;
    s->pending = s->saved[s->sdepth];
    replyscan_settle(s);
}

static size_t replyscan_byte(struct replyscan *s, char ch);

/* The CR at p[0] ended a line and the state is the LF that must follow:
 * when that byte is already here, take it now rather than in another turn
 * of the main loop. */
static size_t replyscan_cr(struct replyscan *s, const char *p, size_t n)
{
    return n < 2 ? 1 : 1 + replyscan_byte(s, p[1]);
}

/* Content of a simple line: only the top-level one is looked at (head). */
static size_t replyscan_line(struct replyscan *s, const char *p, size_t n)
{
    uint64_t room = REPLYSCAN_LINE_MAX - s->line;
    /* look one byte past the limit: the CR may sit right after it */
    size_t look = n <= room ? n : (size_t)room + 1;
    const char *cr = memchr(p, '\r', look);
    size_t k = cr != NULL ? (size_t)(cr - p) : look;

    if (k > room) {
        replyscan_fail(s, "line too long");
        return (size_t)room;
    }
    if (s->capture) {
        replyscan_head(s, p, k);
    }
    s->line += k;
    if (cr == NULL) {
        return k;
    }
    s->state = RS_LINE_LF;
    if (n - k < 2 || cr[1] != '\n') {
        return k + replyscan_cr(s, cr, n - k);
    }
    replyscan_line_done(s); /* the common case, without another turn */
    return k + 2;
}

/* A digit broke the rules of a length line: say which rule. */
static size_t replyscan_num_fail(struct replyscan *s)
{
    char c = s->cur;

    if ((s->num == 0 && s->num_chars > s->num_neg) || s->num_neg || s->num_stream) {
        return replyscan_fail(s, "invalid length");
    }
    if (c == '$' || c == '!' || c == '=' || c == ';') {
        return replyscan_fail(s, "bulk longer than max_bulk");
    }
    return replyscan_fail(s, "count out of range");
}

/* A non-digit in a length line: its CR, the '-' of "-1" (a null bulk or
 * array), or the '?' that announces a streamed string or aggregate. */
static size_t replyscan_num_other(struct replyscan *s, const char *p, size_t n)
{
    char c = s->cur, ch = p[0];

    if (ch == '\r') {
        if (s->num_chars == s->num_neg) {
            return replyscan_fail(s, "invalid length");
        }
        s->state = RS_NUM_LF;
        return replyscan_cr(s, p, n);
    }
    if (s->num_chars == 0 && ch == '-' && (c == '$' || c == '*')) {
        s->num_neg = true;
        s->num_limit = 1;
        s->num_chars = 1;
        return 1;
    }
    if (s->num_chars == 0 && ch == '?' &&
        (c == '$' || c == '*' || c == '%' || c == '~' || c == '>')) {
        s->num_stream = true;
        s->num_chars = 1;
        return 1;
    }
    return replyscan_fail(s, "invalid length");
}

/* Digits of a length line, in place: no leading zero, nothing after "?",
 * only "1" after '-', and never above num_limit (which also rules out
 * overflow). Each rule fails on the byte that breaks it. */
static size_t replyscan_num(struct replyscan *s, const char *p, size_t n)
{
    /* locals: stores through s could alias p and force reloads */
    uint64_t num = s->num, limit = s->num_limit;
    unsigned chars = s->num_chars, neg = s->num_neg;
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)p[i] - '0';
        if (d > 9) {
            break;
        }
        /* RS_NUM_MAX / 10 is a constant that keeps num * 10 from overflowing */
        if ((num == 0 && chars > neg) || (neg && d != 1) || num > RS_NUM_MAX / 10 ||
            num * 10 + d > limit) {
            break;
        }
        num = num * 10 + d;
        chars++;
    }
    s->num = num;
    s->num_chars = (uint8_t)chars;
    if (i == n) {
        return n;
    }
    if ((unsigned)(unsigned char)p[i] - '0' <= 9) {
        return i + replyscan_num_fail(s);
    }
    return i + replyscan_num_other(s, p + i, n - i);
}

static void replyscan_bulk_start(struct replyscan *s)
{
    if (s->num_stream) {
        s->in_sstring = true;
        s->sstring = 0;
        s->capture = false;
        s->state = RS_TYPE;
        return;
    }
    if (s->cur == ';' && s->num == 0) {
        s->in_sstring = false; /* ";0" ends the streamed string */
        replyscan_element_done(s);
        return;
    }
    if (s->cur == ';') {
        s->sstring += s->num;
    }
    s->capture = s->capture && s->cur == '!'; /* only a blob error's payload is kept */
    s->state = s->num > 0 ? RS_BULK : RS_BULK_CR;
}

static void replyscan_stream_open(struct replyscan *s)
{
    uint32_t bit;

    if (s->sdepth == REPLYSCAN_DEPTH_MAX) {
        replyscan_fail(s, "streamed aggregates nested too deep");
        return;
    }
    bit = (uint32_t)1 << s->sdepth;
    /* The parent counts this aggregate as done now; its '.' will give the
     * parent's counter back. */
    s->saved[s->sdepth] = s->pending - 1;
    s->smap = s->cur == '%' ? s->smap | bit : s->smap & ~bit;
    s->sdepth++;
    s->pending = 0;
    s->state = RS_TYPE;
}

static void replyscan_aggregate_start(struct replyscan *s)
{
    uint64_t add = s->cur == '%' || s->cur == '|' ? 2 * s->num : s->num;

    s->capture = false;
    if (s->num_stream) {
        replyscan_stream_open(s);
        return;
    }
    if (s->cur != '|') {
        s->pending--; /* the header was one element; its children replace it */
    }
    if (add > UINT64_MAX - s->pending) {
        replyscan_fail(s, "too many elements");
        return;
    }
    s->pending += add;
    replyscan_settle(s);
}

/* A length line ended: act on the element it announces. */
static void replyscan_num_done(struct replyscan *s)
{
    char c = s->cur;

    if (s->capture) {
        s->count = s->num_neg ? -1 : s->num_stream ? -2 : (int64_t)s->num;
    }
    if (s->num_neg) {
        replyscan_element_done(s);
    } else if (c == '$' || c == '!' || c == '=' || c == ';') {
        replyscan_bulk_start(s);
    } else {
        replyscan_aggregate_start(s);
    }
}

static size_t replyscan_bulk(struct replyscan *s, const char *p, size_t n)
{
    size_t k = n < s->num ? n : (size_t)s->num;

    if (s->capture) {
        replyscan_head(s, p, k);
    }
    s->num -= k;
    if (s->num > 0) {
        return k;
    }
    s->state = RS_BULK_CR;
    /* take the CRLF now when both bytes are here */
    if (n - k < 2 || replyscan_byte(s, p[k]) == 0) {
        return k;
    }
    return k + 1 + replyscan_byte(s, p[k + 1]);
}

/* States that take exactly one byte. */
static size_t replyscan_byte(struct replyscan *s, char ch)
{
    switch (s->state) {
    case RS_BOOL:
        if (ch != 't' && ch != 'f') {
            return replyscan_fail(s, "invalid boolean");
        }
        if (s->capture) {
            replyscan_head(s, &ch, 1);
        }
        s->state = RS_LINE_CR;
        return 1;
    case RS_LINE_CR:
        if (ch != '\r') {
            return replyscan_fail(s, "expected CR");
        }
        s->state = RS_LINE_LF;
        return 1;
    case RS_BULK_CR:
        if (ch != '\r') {
            return replyscan_fail(s, "expected CR after bulk");
        }
        s->state = RS_BULK_LF;
        return 1;
    case RS_LINE_LF:
    case RS_NUM_LF:
    case RS_BULK_LF:
        break;
    default:
        return replyscan_fail(s, "scanner state");
    }
    if (ch != '\n') {
        return replyscan_fail(s, "expected LF after CR");
    }
    if (s->state == RS_NUM_LF) {
        replyscan_num_done(s);
    } else if (s->state == RS_LINE_LF) {
        replyscan_line_done(s);
    } else if (s->cur == ';') {
        s->state = RS_TYPE; /* next chunk of a streamed string */
    } else {
        replyscan_element_done(s);
    }
    return s->state == RS_ERROR ? 0 : 1; /* an error points at the LF that found it */
}

/* A whole "+...", "-..." or ":..." line at p: its length with the CRLF, or 0
 * when it is not all here or does not end in CRLF. */
static size_t replyscan_fast_line(const char *p, size_t n)
{
    const char *cr = memchr(p + 1, '\r', n - 1);

    if (cr == NULL || (size_t)(cr - p) + 1 >= n || cr[1] != '\n' ||
        (size_t)(cr - p) - 1 > REPLYSCAN_LINE_MAX) {
        return 0;
    }
    return (size_t)(cr - p) + 2;
}

/* A whole "$<len>\r\n<payload>\r\n" at p (n >= 1) that the careful path
 * would accept: its length, with *len set; 0 for anything else, including
 * lengths of 19 digits or more, which are left to the careful path. */
static inline size_t replyscan_fast_bulk(uint64_t max_bulk, const char *p, size_t n, uint64_t *len)
{
    uint64_t v;
    size_t i = 2;
    unsigned d;

    if (n < 4 || (v = (uint64_t)(unsigned char)p[1] - '0') > 9) {
        return 0;
    }
    if (v != 0) { /* "$0" is an empty string; "$01" is refused below */
        while (i < n && i < 19 && (d = (unsigned)(unsigned char)p[i] - '0') <= 9) {
            v = v * 10 + d;
            i++;
        }
    }
    /* two-byte compares: the compiler makes each one load */
    if (v > max_bulk || n - i < v + 4 || memcmp(p + i, "\r\n", 2) != 0 ||
        memcmp(p + i + 2 + v, "\r\n", 2) != 0) {
        return 0;
    }
    *len = v;
    return i + 4 + (size_t)v;
}

/* "$-1\r\n" or "*-1\r\n" at p (n >= 1), RESP2's nulls (a cache miss): 5, or
 * 0 for anything else. */
static inline size_t replyscan_fast_null(const char *p, size_t n)
{
    return n >= 5 && (p[0] == '$' || p[0] == '*') && memcmp(p + 1, "-1\r\n", 4) == 0 ? 5 : 0;
}

/*
 * Most replies are one simple line, one bulk string or one null, whole in
 * the buffer: take those in one step, with the same results as the
 * byte-wise scanner. Anything else, or anything unusual, returns 0 and goes
 * the long way.
 */
static size_t replyscan_fast(struct replyscan *s, const char *p, size_t n)
{
    uint64_t len = 0;
    size_t k;

    if (p[0] == '+' || p[0] == '-' || p[0] == ':') {
        k = replyscan_fast_line(p, n);
        if (k == 0) {
            return 0;
        }
        replyscan_begin(s);
        replyscan_top(s, p[0]);
        replyscan_head(s, p + 1, k - 3);
    } else if (p[0] == '$' && (k = replyscan_fast_bulk(s->max_bulk, p, n, &len)) > 0) {
        replyscan_begin(s);
        replyscan_top(s, '$');
        s->count = (int64_t)len;
    } else if ((k = replyscan_fast_null(p, n)) > 0) {
        replyscan_begin(s);
        replyscan_top(s, p[0]);
        s->count = -1;
    } else {
        return 0;
    }
    s->capture = false;
    s->pending = 0;
    s->state = RS_NEW;
    s->bytes = k;
    return k;
}

/*
 * The elements of an aggregate (the rows of LRANGE, HGETALL, MGET...) are
 * mostly bulk strings and simple lines, whole in the buffer: take as many as
 * are there in one pass. Only below the top level, where nothing is captured,
 * and only where the next element is counted (not a streamed string's chunk
 * or a streamed aggregate's end marker). Returns the bytes taken, maybe 0.
 */
static size_t replyscan_fast_elements(struct replyscan *s, const char *p, size_t n)
{
    uint64_t pending = s->pending, len;
    size_t i = 0, k;

    if (s->top_pending || s->in_sstring) {
        return 0;
    }
    while (pending > 0 && i < n) {
        char c = p[i];
        if (c == '$') {
            k = replyscan_fast_bulk(s->max_bulk, p + i, n - i, &len);
            k = k > 0 ? k : replyscan_fast_null(p + i, n - i);
        } else if (c == '+' || c == '-' || c == ':') {
            k = replyscan_fast_line(p + i, n - i);
        } else {
            break;
        }
        if (k == 0) {
            break;
        }
        i += k;
        pending--;
    }
    if (i > 0) {
        s->pending = pending;
        replyscan_settle(s);
    }
    return i;
}

enum replyscan_status replyscan_feed(struct replyscan *s, const char *p, size_t n, size_t *used)
{
    size_t i = 0;

    *used = 0;
    if (s->state == RS_ERROR) {
        return REPLYSCAN_ERROR;
    }
    if (n == 0) {
        return REPLYSCAN_MORE;
    }
    if (s->state == RS_NEW) {
        size_t fast = replyscan_fast(s, p, n);
        if (fast > 0) {
            *used = fast;
            return REPLYSCAN_DONE;
        }
        replyscan_begin(s);
    }
    while (i < n && s->state != RS_NEW && s->state != RS_ERROR) {
        switch (s->state) {
        case RS_TYPE: {
            size_t k = replyscan_fast_elements(s, p + i, n - i);
            i += k > 0 ? k : replyscan_type(s, p[i]);
            break;
        }
        case RS_LINE:
            i += replyscan_line(s, p + i, n - i);
            break;
        case RS_NUM:
            i += replyscan_num(s, p + i, n - i);
            break;
        case RS_BULK:
            i += replyscan_bulk(s, p + i, n - i);
            break;
        default:
            i += replyscan_byte(s, p[i]);
            break;
        }
    }
    s->bytes += i;
    *used = i;
    if (s->state == RS_ERROR) {
        return REPLYSCAN_ERROR;
    }
    return s->state == RS_NEW ? REPLYSCAN_DONE : REPLYSCAN_MORE;
}
