/*
 * replyscan.c - the reply scanner (see replyscan.h for the contract).
 *
 * Counted aggregates need no stack: one counter holds the number of elements
 * still expected at every open level together (an aggregate header replaces
 * the one element it is with its children). Only streamed aggregates, which
 * end with a marker rather than a count, save that counter on a small stack.
 */
#include "proxy/replyscan.h"

#include <stdio.h>
#include <string.h>

enum {
    RS_TYPE = 0, /* next byte is a type byte */
    RS_LINE,     /* simple line content up to '\r' */
    RS_LINE_LF,  /* '\n' ending a simple line */
    RS_NUM,      /* length line content up to '\r' */
    RS_NUM_LF,   /* '\n' ending a length line */
    RS_BULK,     /* payload bytes */
    RS_BULK_CR,  /* '\r' after a payload */
    RS_BULK_LF,  /* '\n' after a payload */
};

#define RS_COUNT_MAX ((uint64_t)1 << 32) /* most elements one aggregate may announce */

void replyscan_init(struct replyscan *s, uint64_t max_bulk)
{
    memset(s, 0, sizeof(*s));
    s->max_bulk = max_bulk != 0 ? max_bulk : ((uint64_t)512 << 20);
    s->pending = 1;
    s->top_pending = true;
}

static enum replyscan_status rs_fail(struct replyscan *s, const char *why)
{
    snprintf(s->err, sizeof(s->err), "%s", why);
    return REPLYSCAN_ERROR;
}

static bool rs_complete(const struct replyscan *s)
{
    return s->pending == 0 && s->sdepth == 0 && !s->in_sstring;
}

/* One element (scalar, null, or an aggregate that just closed) finished. */
static void rs_element_done(struct replyscan *s)
{
    s->pending--;
    s->capture = false;
}

static void rs_head(struct replyscan *s, const char *p, size_t n)
{
    size_t room = REPLYSCAN_HEAD_MAX - s->head_len;

    if (s->capture && room > 0) {
        size_t take = n < room ? n : room;
        memcpy(s->head + s->head_len, p, take);
        s->head_len = (uint8_t)(s->head_len + take);
    }
}

static enum replyscan_status rs_type(struct replyscan *s, char c)
{
    if (s->in_sstring) {
        if (c != ';') {
            return rs_fail(s, "expected ';' in a streamed string");
        }
        s->cur = c;
        s->state = RS_NUM;
        goto number;
    }
    if (c == '.') {
        if (s->sdepth == 0 || s->pending != 0) {
            return rs_fail(s, "unexpected end marker");
        }
        s->cur = c;
        s->state = RS_LINE;
        s->line = 0;
        return REPLYSCAN_MORE;
    }
    if (s->pending == 0 && s->sdepth > 0) {
        s->pending = 1; /* a new child of the streamed aggregate */
    }
    if (s->top_pending && s->pending == 1 && s->sdepth == 0 && c != '|') {
        s->top_pending = false;
        s->capture = true;
        s->type = c;
        s->is_error = c == '-' || c == '!';
        s->is_push = c == '>';
        s->count = 0;
    }
    s->cur = c;
    switch (c) {
    case '+':
    case '-':
    case ':':
    case ',':
    case '#':
    case '(':
    case '_':
        s->state = RS_LINE;
        s->line = 0;
        return REPLYSCAN_MORE;
    case '$':
    case '!':
    case '=':
    case '*':
    case '%':
    case '~':
    case '>':
    case '|':
        s->state = RS_NUM;
        goto number;
    default:
        return rs_fail(s, "unknown reply type byte");
    }
number:
    s->num = 0;
    s->num_neg = s->num_bad = s->num_stream = false;
    s->num_digits = 0;
    s->line = 0;
    return REPLYSCAN_MORE;
}

static void rs_num_char(struct replyscan *s, char ch)
{
    uint8_t pos = s->num_digits;

    s->num_digits = pos < 255 ? (uint8_t)(pos + 1) : pos;
    if (pos == 0 && ch == '-') {
        s->num_neg = true;
    } else if (pos == 0 && ch == '?') {
        s->num_stream = true;
    } else if (ch < '0' || ch > '9' || s->num_stream || s->num > (UINT64_MAX - 9) / 10) {
        s->num_bad = true;
    } else {
        s->num = s->num * 10 + (uint64_t)(ch - '0');
    }
}

/* A length line ended: act on the element it announces. */
static enum replyscan_status rs_num_done(struct replyscan *s)
{
    char c = s->cur;
    bool nullable = c == '$' || c == '*';
    bool streamable = c == '$' || c == '*' || c == '%' || c == '~' || c == '>';

    if (s->num_bad || s->num_digits == 0 || (s->num_neg && (s->num_digits == 1)) ||
        (s->num_stream && (s->num_digits != 1 || !streamable || c == ';'))) {
        return rs_fail(s, "invalid length");
    }
    if (s->num_neg) {
        if (!nullable || s->num != 1) {
            return rs_fail(s, "invalid negative length");
        }
        if (s->capture) {
            s->count = -1;
        }
        rs_element_done(s);
        s->state = RS_TYPE;
        return REPLYSCAN_MORE;
    }
    if (s->capture) {
        s->count = s->num_stream ? -2 : (int64_t)s->num;
    }
    s->state = RS_TYPE;
    if (c == '$' || c == '!' || c == '=' || c == ';') {
        if (s->num_stream) {
            s->in_sstring = true;
            return REPLYSCAN_MORE;
        }
        if (s->num > s->max_bulk) {
            return rs_fail(s, "bulk longer than the limit");
        }
        if (c == ';' && s->num == 0) {
            s->in_sstring = false;
            rs_element_done(s);
            return REPLYSCAN_MORE;
        }
        s->left = s->num;
        s->state = s->num > 0 ? RS_BULK : RS_BULK_CR;
        return REPLYSCAN_MORE;
    }
    if (s->num_stream) {
        if (s->sdepth >= REPLYSCAN_DEPTH_MAX) {
            return rs_fail(s, "streamed aggregates nested too deep");
        }
        s->saved[s->sdepth++] = s->pending - 1;
        s->pending = 0;
        s->capture = false;
        return REPLYSCAN_MORE;
    }
    if (s->num > RS_COUNT_MAX) {
        return rs_fail(s, "aggregate too large");
    }
    if (c == '|') {
        s->pending += 2 * s->num; /* an attribute precedes the element it annotates */
    } else {
        s->pending = s->pending - 1 + (c == '%' ? 2 * s->num : s->num);
    }
    s->capture = false;
    return REPLYSCAN_MORE;
}

/* A simple line ended. */
static void rs_line_done(struct replyscan *s)
{
    s->state = RS_TYPE;
    if (s->cur == '.') {
        s->sdepth--;
        s->pending = s->saved[s->sdepth];
        return;
    }
    rs_element_done(s);
}

static void rs_reset(struct replyscan *s)
{
    s->type = 0;
    s->is_error = s->is_push = false;
    s->head_len = 0;
    s->bytes = 0;
    s->count = 0;
    s->state = RS_TYPE;
    s->pending = 1;
    s->top_pending = true;
    s->capture = false;
    s->sdepth = 0;
    s->in_sstring = false;
}

enum replyscan_status replyscan_feed(struct replyscan *s, const char *p, size_t n, size_t *used)
{
    size_t i = 0;
    enum replyscan_status st;

    if (s->state == RS_TYPE && s->pending == 0 && s->sdepth == 0) {
        rs_reset(s); /* the previous call returned DONE */
    }
    while (i < n) {
        size_t k = 1;
        const char *cr;
        st = REPLYSCAN_MORE;
        switch (s->state) {
        case RS_TYPE:
            st = rs_type(s, p[i]);
            break;
        case RS_LINE:
        case RS_NUM:
            cr = memchr(p + i, '\r', n - i);
            k = cr != NULL ? (size_t)(cr - (p + i)) : n - i;
            if (s->state == RS_LINE) {
                rs_head(s, p + i, k);
            } else {
                for (size_t j = 0; j < k && !s->num_bad; j++) {
                    rs_num_char(s, p[i + j]);
                }
            }
            s->line += k;
            if (s->line > REPLYSCAN_LINE_MAX) {
                st = rs_fail(s, "line too long");
            } else if (cr != NULL) {
                s->state = s->state == RS_LINE ? RS_LINE_LF : RS_NUM_LF;
                k++;
            }
            break;
        case RS_LINE_LF:
            if (p[i] != '\n') {
                st = rs_fail(s, "expected LF after CR");
            } else {
                rs_line_done(s);
            }
            break;
        case RS_NUM_LF:
            st = p[i] != '\n' ? rs_fail(s, "expected LF after CR") : rs_num_done(s);
            break;
        case RS_BULK:
            k = n - i < s->left ? n - i : (size_t)s->left;
            if (s->cur == '!') {
                rs_head(s, p + i, k);
            }
            s->left -= k;
            if (s->left == 0) {
                s->state = RS_BULK_CR;
            }
            break;
        case RS_BULK_CR:
            st = p[i] != '\r' ? rs_fail(s, "expected CR after bulk") : REPLYSCAN_MORE;
            s->state = RS_BULK_LF;
            break;
        case RS_BULK_LF:
            if (p[i] != '\n') {
                st = rs_fail(s, "expected LF after bulk");
                break;
            }
            s->state = RS_TYPE;
            if (s->cur != ';') {
                rs_element_done(s);
            }
            break;
        default:
            st = rs_fail(s, "scanner state");
            break;
        }
        i += k;
        s->bytes += k;
        if (st == REPLYSCAN_ERROR) {
            *used = i;
            return st;
        }
        if (s->state == RS_TYPE && rs_complete(s)) {
            *used = i;
            return REPLYSCAN_DONE;
        }
    }
    *used = i;
    return REPLYSCAN_MORE;
}
