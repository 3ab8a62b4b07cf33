/*
 * reqscan.c - the request scanner (see reqscan.h for the contract).
 *
 * States walk one request: a count line ("*N"), then per argument a length
 * line ("$L"), the payload and its two trailing bytes. Lines are found with
 * memchr and payloads are skipped by arithmetic, so the cost per request does
 * not depend on the size of its arguments.
 */
#include "proxy/reqscan.h"

#include <stdio.h>
#include <string.h>

enum reqscan_state {
    ST_START = 0,   /* first byte of a request */
    ST_COUNT,       /* "*" line: digits up to '\r' */
    ST_COUNT_LF,    /* the byte after the count line's '\r' (skipped) */
    ST_BULK_TYPE,   /* expecting '$' */
    ST_BULK_LEN,    /* "$" line: digits up to '\r' */
    ST_BULK_LEN_LF, /* the byte after the length line's '\r' (skipped) */
    ST_PAYLOAD,     /* payload bytes plus the two that follow (skipped) */
    ST_INLINE,      /* inline line up to '\n' */
};

#define REQSCAN_NUM_MAX 21 /* redis rejects count strings this long or longer */

void reqscan_init(struct reqscan *s, const struct reqscan_limits *limits)
{
    memset(s, 0, sizeof(*s));
    s->limits = limits;
    s->state = ST_START;
}

static void reqscan_new_request(struct reqscan *s)
{
    s->state = ST_START;
    s->kind = 0;
    s->name_len = s->arg1_len = 0;
    s->name_trunc = s->arg1_trunc = false;
    s->argc = s->argi = 0;
    s->bytes = 0;
    s->line = 0;
    s->eol_cr = false;
    s->err[0] = '\0';
}

static enum reqscan_status reqscan_fail(struct reqscan *s, const char *msg)
{
    snprintf(s->err, sizeof(s->err), "%s", msg);
    return REQSCAN_ERROR;
}

static void reqscan_num_reset(struct reqscan *s)
{
    s->num = 0;
    s->num_neg = false;
    s->num_digits = 0;
    s->num_bad = false;
    s->line = 1; /* the type byte */
}

/* Feed count-line characters with redis's string2ll rules: optional '-',
 * first digit 1-9 unless the whole number is "0", no overflow. */
static void reqscan_num_chars(struct reqscan *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n && !s->num_bad; i++) {
        char ch = p[i];
        uint8_t pos = s->num_digits;
        s->num_digits = pos < 255 ? (uint8_t)(pos + 1) : pos;
        if (pos == 0 && ch == '-') {
            s->num_neg = true;
            continue;
        }
        if (ch < '0' || ch > '9') {
            s->num_bad = true;
            break;
        }
        /* A leading zero is only valid as the whole string "0". */
        if (s->num == 0 && (pos > (s->num_neg ? 1 : 0))) {
            s->num_bad = true;
            break;
        }
        if (s->num > (UINT64_MAX - 9) / 10) {
            s->num_bad = true;
            break;
        }
        s->num = s->num * 10 + (uint64_t)(ch - '0');
    }
}

/* Validate a finished count line; false when redis would reject it. The
 * value (signed) is returned through v. */
static bool reqscan_num_value(struct reqscan *s, int64_t *v)
{
    uint8_t digits = s->num_digits - (s->num_neg ? 1 : 0);

    if (s->num_bad || s->num_digits == 0 || s->num_digits >= REQSCAN_NUM_MAX || digits == 0) {
        return false;
    }
    if (s->num == 0 && (s->num_neg || digits != 1)) {
        return false;
    }
    if (s->num > (uint64_t)INT64_MAX) {
        return false;
    }
    *v = s->num_neg ? -(int64_t)s->num : (int64_t)s->num;
    return true;
}

/* Scan a count or length line for its '\r'. Returns bytes used; sets *done
 * when the '\r' was found (and consumed). */
static size_t reqscan_line(struct reqscan *s, const char *p, size_t n, bool *done)
{
    const char *cr = memchr(p, '\r', n);
    size_t take = cr != NULL ? (size_t)(cr - p) : n;

    reqscan_num_chars(s, p, take);
    s->line += take;
    *done = cr != NULL;
    return cr != NULL ? take + 1 : take;
}

/* Lines are looked at up to one byte past the limit, so that an over-long
 * line fails at the same byte however the input is split. */
static size_t reqscan_room(const struct reqscan *s, size_t n)
{
    uint64_t room = s->limits->max_inline_len + 1 - s->line;

    return n < room ? n : (size_t)room;
}

static void reqscan_capture(struct reqscan *s, const char *p, size_t n)
{
    if (s->argi == 0) {
        size_t room = REQSCAN_NAME_MAX - s->name_len;
        size_t take = n < room ? n : room;
        memcpy(s->name + s->name_len, p, take);
        s->name_len = (uint8_t)(s->name_len + take);
        if (take < n) {
            s->name_trunc = true;
        }
    } else if (s->argi == 1) {
        size_t room = REQSCAN_ARG1_MAX - s->arg1_len;
        size_t take = n < room ? n : room;
        memcpy(s->arg1 + s->arg1_len, p, take);
        s->arg1_len = (uint8_t)(s->arg1_len + take);
        if (take < n) {
            s->arg1_trunc = true;
        }
    }
}

/* Payload of the current argument; s->left counts payload + 2 bytes, and
 * s->line the payload bytes still to capture. */
static size_t reqscan_payload(struct reqscan *s, const char *p, size_t n)
{
    size_t take = n < s->left ? n : (size_t)s->left;

    if (s->argi < 2 && s->line > 0) {
        size_t cap = take < s->line ? take : (size_t)s->line;
        reqscan_capture(s, p, cap);
        s->line -= cap;
    }
    s->left -= take;
    return take;
}

static enum reqscan_status reqscan_count_done(struct reqscan *s)
{
    int64_t v;

    if (!reqscan_num_value(s, &v) || v > INT32_MAX) {
        return reqscan_fail(s, "Protocol error: invalid multibulk length");
    }
    s->argc = v > 0 ? v : 0;
    return REQSCAN_MORE;
}

static enum reqscan_status reqscan_len_done(struct reqscan *s)
{
    int64_t v;

    if (!reqscan_num_value(s, &v) || v < 0 || (uint64_t)v > s->limits->max_bulk_len) {
        return reqscan_fail(s, "Protocol error: invalid bulk length");
    }
    s->left = (uint64_t)v + 2;
    s->line = (uint64_t)v; /* payload bytes that may still be captured */
    if (s->argi == 1 && (uint64_t)v > REQSCAN_ARG1_MAX) {
        s->arg1_trunc = true;
    }
    if (s->argi == 0 && (uint64_t)v > REQSCAN_NAME_MAX) {
        s->name_trunc = true;
    }
    return REQSCAN_MORE;
}

static size_t reqscan_inline(struct reqscan *s, const char *p, size_t n, bool *done)
{
    const char *lf = memchr(p, '\n', n);
    size_t take = lf != NULL ? (size_t)(lf - p) + 1 : n;

    if (lf != NULL) {
        /* "\r\n" only counts when the line has content before the '\r'. */
        bool cr_here = lf > p && lf[-1] == '\r';
        bool cr_before = lf == p && s->line > 0 && s->eol_cr;
        s->eol_cr = cr_here || cr_before;
    } else if (take > 0) {
        s->eol_cr = p[take - 1] == '\r';
    }
    s->line += take;
    *done = lf != NULL;
    return take;
}

enum reqscan_status reqscan_feed(struct reqscan *s, const char *p, size_t n, size_t *used)
{
    size_t i = 0;

    while (i < n) {
        size_t k = 0;
        bool done = false;
        enum reqscan_status st = REQSCAN_MORE;

        switch (s->state) {
        case ST_START:
            if (s->kind != 0) {
                reqscan_new_request(s);
            }
            if (p[i] == '*') {
                s->kind = REQSCAN_MULTIBULK;
                s->state = ST_COUNT;
                reqscan_num_reset(s);
                k = 1;
            } else {
                s->kind = REQSCAN_INLINE;
                s->state = ST_INLINE;
                s->line = 0;
            }
            break;
        case ST_COUNT:
            k = reqscan_line(s, p + i, reqscan_room(s, n - i), &done);
            if (!done && s->line > s->limits->max_inline_len) {
                s->bytes += k;
                *used = i + k;
                return reqscan_fail(s, "Protocol error: too big mbulk count string");
            }
            if (done) {
                s->state = ST_COUNT_LF;
            }
            break;
        case ST_COUNT_LF:
            k = 1;
            st = reqscan_count_done(s);
            s->state = ST_BULK_TYPE;
            break;
        case ST_BULK_TYPE:
            if (p[i] != '$') {
                char msg[REQSCAN_ERR_MAX];
                char got = p[i];
                if (got == '\r' || got == '\n' || got == '\0') {
                    got = ' ';
                }
                snprintf(msg, sizeof(msg), "Protocol error: expected '$', got '%c'", got);
                *used = i;
                return reqscan_fail(s, msg);
            }
            reqscan_num_reset(s);
            s->state = ST_BULK_LEN;
            k = 1;
            break;
        case ST_BULK_LEN:
            k = reqscan_line(s, p + i, reqscan_room(s, n - i), &done);
            if (!done && s->line > s->limits->max_inline_len) {
                s->bytes += k;
                *used = i + k;
                return reqscan_fail(s, "Protocol error: too big bulk count string");
            }
            if (done) {
                s->state = ST_BULK_LEN_LF;
            }
            break;
        case ST_BULK_LEN_LF:
            k = 1;
            st = reqscan_len_done(s);
            s->state = ST_PAYLOAD;
            break;
        case ST_PAYLOAD:
            k = reqscan_payload(s, p + i, n - i);
            if (s->left == 0) {
                s->argi++;
                s->state = ST_BULK_TYPE;
            }
            break;
        case ST_INLINE:
            k = reqscan_inline(s, p + i, reqscan_room(s, n - i), &done);
            if (!done && s->line > s->limits->max_inline_len) {
                s->bytes += k;
                *used = i + k;
                return reqscan_fail(s, "Protocol error: too big inline request");
            }
            break;
        default:
            *used = i;
            return reqscan_fail(s, "Protocol error: scanner state");
        }
        i += k;
        s->bytes += k;
        if (st == REQSCAN_ERROR) {
            *used = i;
            return st;
        }
        /* The request ends when the last argument is done (or right after
         * an empty count), or at an inline line's end. */
        if ((s->kind == REQSCAN_MULTIBULK && s->state == ST_BULK_TYPE && s->argi >= s->argc) ||
            (s->kind == REQSCAN_INLINE && done)) {
            s->state = ST_START;
            *used = i;
            return REQSCAN_DONE;
        }
    }
    *used = i;
    return REQSCAN_MORE;
}

size_t reqscan_inline_eol(const struct reqscan *s)
{
    return s->eol_cr ? 2 : 1;
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

/* Blanks skipped between arguments (isspace). */
static bool reqscan_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Characters that end an unquoted argument (a narrower set than the above,
 * as in redis-server). */
static bool reqscan_token_end(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* One double-quoted argument starting after the quote; returns the index
 * after the closing quote, or 0 when unbalanced. */
static size_t reqscan_dquoted(const char *line, size_t len, size_t i, char *out, size_t *o)
{
    while (i < len) {
        char c = line[i];
        if (c == '\\' && i + 3 < len && line[i + 1] == 'x' && reqscan_hex(line[i + 2]) >= 0 &&
            reqscan_hex(line[i + 3]) >= 0) {
            out[(*o)++] = (char)(reqscan_hex(line[i + 2]) * 16 + reqscan_hex(line[i + 3]));
            i += 4;
        } else if (c == '\\' && i + 1 < len) {
            char e = line[i + 1];
            out[(*o)++] = e == 'n'   ? '\n'
                          : e == 'r' ? '\r'
                          : e == 't' ? '\t'
                          : e == 'b' ? '\b'
                          : e == 'a' ? '\a'
                                     : e;
            i += 2;
        } else if (c == '"') {
            /* The closing quote must be followed by a space or the end. */
            if (i + 1 < len && !reqscan_space(line[i + 1])) {
                return 0;
            }
            return i + 1;
        } else {
            out[(*o)++] = c;
            i++;
        }
    }
    return 0;
}

static size_t reqscan_squoted(const char *line, size_t len, size_t i, char *out, size_t *o)
{
    while (i < len) {
        char c = line[i];
        if (c == '\\' && i + 1 < len && line[i + 1] == '\'') {
            out[(*o)++] = '\'';
            i += 2;
        } else if (c == '\'') {
            if (i + 1 < len && !reqscan_space(line[i + 1])) {
                return 0;
            }
            return i + 1;
        } else {
            out[(*o)++] = c;
            i++;
        }
    }
    return 0;
}

int reqscan_split_inline(const char *line, size_t len, char *out, size_t outcap, const char **argv,
                         size_t *argl, int maxargs)
{
    size_t i = 0, o = 0;
    int argc = 0;

    const char *nul = memchr(line, '\0', len);

    /* redis-server parses the line as a C string: a NUL byte ends it. */
    if (nul != NULL) {
        len = (size_t)(nul - line);
    }
    if (outcap < len) {
        return -2;
    }
    for (;;) {
        size_t start;
        while (i < len && reqscan_space(line[i])) {
            i++;
        }
        if (i >= len) {
            return argc;
        }
        if (argc >= maxargs) {
            return -2;
        }
        start = o;
        while (i < len && !reqscan_token_end(line[i])) {
            if (line[i] == '"') {
                i = reqscan_dquoted(line, len, i + 1, out, &o);
            } else if (line[i] == '\'') {
                i = reqscan_squoted(line, len, i + 1, out, &o);
            } else {
                out[o++] = line[i++];
                continue;
            }
            if (i == 0) {
                return -1;
            }
            break; /* a closing quote ends the argument */
        }
        argv[argc] = out + start;
        argl[argc] = o - start;
        argc++;
    }
}
