/*
 * fuzz_replyscan.c - libFuzzer harness for the reply scanner.
 *
 * Each input is scanned whole, byte by byte, in pieces whose sizes come from
 * a hash of the input, and cut right before every CR and after every LF.
 * All must report the same sequence of replies (end offsets and results) and
 * the same error offset. The whole scan is also checked against a small
 * recursive parser written independently below, which reads the same
 * grammar from a complete buffer; inputs that nest deeper than it recurses
 * or announce counts it cannot follow are left to the split comparison.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/replyscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz_out {
    int status;
    size_t end;
    char type;
    bool is_error;
    bool is_push;
    uint8_t head_len;
    char head[REPLYSCAN_HEAD_MAX];
    int64_t count;
};

static void fz_check(bool ok)
{
    if (!ok) {
        abort();
    }
}

/* Where the next piece of a split scan ends (NULL: the input is one piece). */
typedef size_t (*fz_cutter)(const uint8_t *data, size_t size, size_t pos, uint64_t *rnd);

/* One scan in progress. */
struct fz_run {
    struct replyscan s;
    const uint8_t *data;
    size_t pos;   /* bytes fed so far */
    size_t start; /* where the current reply began */
    size_t nout;
    struct fz_out *out;
    bool failed;
};

static void fz_record(struct fz_run *r, int status)
{
    struct fz_out *o = &r->out[r->nout++];

    memset(o, 0, sizeof(*o));
    o->status = status;
    o->end = r->pos;
    if (status != REPLYSCAN_DONE) {
        return;
    }
    fz_check(r->pos > r->start && r->s.bytes == r->pos - r->start);
    fz_check(r->s.head_len <= REPLYSCAN_HEAD_MAX && r->s.count >= -2);
    o->type = r->s.type;
    o->is_error = r->s.is_error;
    o->is_push = r->s.is_push;
    o->head_len = r->s.head_len;
    memcpy(o->head, r->s.head, r->s.head_len);
    o->count = r->s.count;
    r->start = r->pos;
}

/* Feed data[pos, stop) in as many calls as the scanner needs. */
static void fz_feed_piece(struct fz_run *r, size_t stop)
{
    while (r->pos < stop && !r->failed) {
        size_t used = SIZE_MAX;
        enum replyscan_status st =
            replyscan_feed(&r->s, (const char *)r->data + r->pos, stop - r->pos, &used);
        fz_check(used <= stop - r->pos);
        fz_check(st != REPLYSCAN_MORE || used == stop - r->pos);
        r->pos += used;
        if (st != REPLYSCAN_MORE) {
            fz_record(r, st);
        }
        r->failed = st == REPLYSCAN_ERROR;
    }
}

static size_t fz_scan(const uint8_t *data, size_t size, uint64_t max_bulk, fz_cutter cut,
                      uint64_t seed, struct fz_out *out)
{
    struct fz_run r = {.data = data, .out = out};
    uint64_t rnd = seed;
    size_t used = SIZE_MAX;

    replyscan_init(&r.s, max_bulk);
    while (r.pos < size && !r.failed) {
        fz_feed_piece(&r, cut != NULL ? cut(data, size, r.pos, &rnd) : size);
    }
    if (r.failed) {
        /* the error sticks */
        fz_check(r.s.err[0] != '\0');
        fz_check(replyscan_feed(&r.s, "+OK\r\n", 5, &used) == REPLYSCAN_ERROR && used == 0);
    } else if (r.start < size) {
        fz_record(&r, REPLYSCAN_MORE);
    }
    return r.nout;
}

static size_t fz_cut_bytes(const uint8_t *data, size_t size, size_t pos, uint64_t *rnd)
{
    (void)data;
    (void)size;
    (void)rnd;
    return pos + 1;
}

static size_t fz_cut_random(const uint8_t *data, size_t size, size_t pos, uint64_t *rnd)
{
    size_t step;

    (void)data;
    *rnd ^= *rnd << 13;
    *rnd ^= *rnd >> 7;
    *rnd ^= *rnd << 17;
    step = 1 + (size_t)(*rnd % 17);
    return size - pos < step ? size : pos + step;
}

/* Cut before each CR and after each LF: where a line's pieces meet. */
static size_t fz_cut_lines(const uint8_t *data, size_t size, size_t pos, uint64_t *rnd)
{
    (void)rnd;
    for (size_t i = pos + 1; i < size; i++) {
        if (data[i] == '\r' || data[i - 1] == '\n') {
            return i;
        }
    }
    return size;
}

/* The independent reference: recursive descent over a complete buffer. */
enum { REF_OK, REF_MORE, REF_ERR, REF_SKIP };

#define REF_DEPTH_MAX 2000
#define REF_COUNT_MAX ((uint64_t)1 << 30)

struct fz_ref {
    const uint8_t *p;
    size_t n;
    size_t pos;
    size_t err_at; /* offset of the byte that made the input invalid */
    uint64_t max_bulk;
    int streamed;
    struct fz_out *top; /* results of the reply being read */
};

static int ref_err(struct fz_ref *r, size_t at)
{
    r->err_at = at;
    return REF_ERR;
}

/* Expect exactly the byte want. */
static int ref_expect(struct fz_ref *r, uint8_t want)
{
    if (r->pos >= r->n) {
        return REF_MORE;
    }
    if (r->p[r->pos] != want) {
        return ref_err(r, r->pos);
    }
    r->pos++;
    return REF_OK;
}

static int ref_crlf(struct fz_ref *r)
{
    int st = ref_expect(r, '\r');

    return st != REF_OK ? st : ref_expect(r, '\n');
}

/* The CR of a length line, valid when a number or '?' came before it. */
static int ref_number_cr(struct fz_ref *r, bool ok)
{
    if (!ok) {
        return ref_err(r, r->pos);
    }
    r->pos++;
    return ref_expect(r, '\n');
}

/* A length line after type byte t: *val, or *kind '-' (null) / '?' (streamed). */
static int ref_number(struct fz_ref *r, uint8_t t, uint64_t limit, uint64_t *val, char *kind)
{
    size_t first = r->pos;
    bool digits = false;

    *val = 0;
    *kind = 0;
    for (; r->pos < r->n; r->pos++) {
        uint8_t c = r->p[r->pos];
        bool at_first = r->pos == first;
        if (c == '\r') {
            return ref_number_cr(r, digits || *kind == '?');
        }
        if (at_first && c == '-' && strchr("$*", t) != NULL) {
            *kind = '-';
            continue;
        }
        if (at_first && c == '?' && strchr("$*%~>", t) != NULL) {
            *kind = '?';
            continue;
        }
        if (c < '0' || c > '9' || *kind == '?') {
            return ref_err(r, r->pos);
        }
        if (*kind == '-' && (digits || c != '1')) {
            return ref_err(r, r->pos);
        }
        if (digits && *val == 0) {
            return ref_err(r, r->pos); /* leading zero */
        }
        if (*val > limit / 10 || *val * 10 + (uint64_t)(c - '0') > limit) {
            return ref_err(r, r->pos);
        }
        *val = *val * 10 + (uint64_t)(c - '0');
        digits = true;
    }
    return REF_MORE;
}

static int ref_value(struct fz_ref *r, bool top, int depth);

/* Payload of n bytes then CRLF; the head of a top-level blob error. */
static int ref_payload(struct fz_ref *r, uint64_t n, bool head)
{
    if (head) {
        size_t k = n < REPLYSCAN_HEAD_MAX ? (size_t)n : REPLYSCAN_HEAD_MAX;
        k = k < r->n - r->pos ? k : r->n - r->pos;
        memcpy(r->top->head, r->p + r->pos, k);
        r->top->head_len = (uint8_t)k;
    }
    if (r->n - r->pos < n) {
        return REF_MORE;
    }
    r->pos += n;
    return ref_crlf(r);
}

static int ref_streamed_string(struct fz_ref *r)
{
    uint64_t total = 0;

    for (;;) {
        uint64_t len = 0;
        char kind;
        int st = ref_expect(r, ';');
        if (st == REF_OK) {
            st = ref_number(r, ';', r->max_bulk - total, &len, &kind);
        }
        if (st != REF_OK || len == 0) {
            return st;
        }
        total += len;
        st = ref_payload(r, len, false);
        if (st != REF_OK) {
            return st;
        }
    }
}

static int ref_streamed_aggregate(struct fz_ref *r, uint8_t t, int depth)
{
    int st = REF_OK;

    if (r->streamed == REPLYSCAN_DEPTH_MAX) {
        return ref_err(r, r->pos - 1); /* the LF of the header */
    }
    r->streamed++;
    for (;;) {
        if (r->pos >= r->n) {
            return REF_MORE;
        }
        if (r->p[r->pos] == '.') {
            r->pos++;
            st = ref_crlf(r);
            break;
        }
        st = ref_value(r, false, depth + 1);
        if (st == REF_OK && t == '%') {
            st = ref_value(r, false, depth + 1);
        }
        if (st != REF_OK) {
            return st;
        }
    }
    r->streamed--;
    return st;
}

static int ref_line(struct fz_ref *r, bool head)
{
    size_t start = r->pos;
    const uint8_t *cr = memchr(r->p + r->pos, '\r', r->n - r->pos);

    if (head) {
        size_t k = (cr != NULL ? (size_t)(cr - r->p) : r->n) - start;
        k = k < REPLYSCAN_HEAD_MAX ? k : REPLYSCAN_HEAD_MAX;
        memcpy(r->top->head, r->p + start, k);
        r->top->head_len = (uint8_t)k;
    }
    if (cr == NULL) {
        return REF_MORE;
    }
    r->pos = (size_t)(cr - r->p);
    return ref_crlf(r);
}

static int ref_aggregate(struct fz_ref *r, uint8_t t, bool top, int depth)
{
    uint64_t n;
    char kind;
    int st = ref_number(r, t, (uint64_t)INT64_MAX, &n, &kind);

    if (st != REF_OK) {
        return st;
    }
    if (top) {
        r->top->count = kind == '-' ? -1 : kind == '?' ? -2 : (int64_t)n;
    }
    if (kind == '-') {
        return REF_OK;
    }
    if (kind == '?') {
        return ref_streamed_aggregate(r, t, depth);
    }
    if (n > REF_COUNT_MAX) {
        return REF_SKIP;
    }
    n = t == '%' || t == '|' ? 2 * n : n;
    for (uint64_t i = 0; i < n; i++) {
        st = ref_value(r, false, depth + 1);
        if (st != REF_OK) {
            return st;
        }
    }
    return REF_OK;
}

static int ref_bulk(struct fz_ref *r, uint8_t t, bool top)
{
    uint64_t n;
    char kind;
    int st = ref_number(r, t, r->max_bulk, &n, &kind);

    if (st != REF_OK) {
        return st;
    }
    if (top) {
        r->top->count = kind == '-' ? -1 : kind == '?' ? -2 : (int64_t)n;
    }
    if (kind == '-') {
        return REF_OK;
    }
    if (kind == '?') {
        return ref_streamed_string(r);
    }
    return ref_payload(r, n, top && t == '!');
}

/* One element, with any attributes before it. */
static int ref_value(struct fz_ref *r, bool top, int depth)
{
    uint8_t t;
    int st;

    if (depth > REF_DEPTH_MAX) {
        return REF_SKIP;
    }
    if (r->pos >= r->n) {
        return REF_MORE;
    }
    t = r->p[r->pos++];
    if (t == '|') {
        st = ref_aggregate(r, t, false, depth);
        return st != REF_OK ? st : ref_value(r, top, depth + 1);
    }
    if (top) {
        r->top->type = (char)t;
        r->top->is_error = t == '-' || t == '!';
        r->top->is_push = t == '>';
        r->top->count = t == '_' ? -1 : 0;
    }
    switch (t) {
    case '+':
    case '-':
    case ':':
    case ',':
    case '(':
        return ref_line(r, top);
    case '_':
        return ref_crlf(r);
    case '#':
        if (r->pos < r->n && r->p[r->pos] != 't' && r->p[r->pos] != 'f') {
            return ref_err(r, r->pos);
        }
        if (top && r->pos < r->n) {
            r->top->head[0] = (char)r->p[r->pos];
            r->top->head_len = 1;
        }
        r->pos++;
        return r->pos > r->n ? REF_MORE : ref_crlf(r);
    case '$':
    case '!':
    case '=':
        return ref_bulk(r, t, top);
    case '*':
    case '%':
    case '~':
    case '>':
        return ref_aggregate(r, t, top, depth);
    default:
        return ref_err(r, r->pos - 1);
    }
}

/* The reference's sequence of outcomes, or 0 when it cannot judge. */
static size_t fz_reference(const uint8_t *data, size_t size, uint64_t max_bulk, struct fz_out *out)
{
    struct fz_ref r = {.p = data, .n = size, .max_bulk = max_bulk};
    size_t nout = 0;

    while (r.pos < size) {
        size_t start = r.pos;
        int st;
        memset(&out[nout], 0, sizeof(out[nout]));
        r.top = &out[nout];
        r.streamed = 0;
        st = ref_value(&r, true, 0);
        if (st == REF_SKIP) {
            return 0;
        }
        if (st == REF_ERR) {
            memset(&out[nout], 0, sizeof(out[nout]));
            out[nout].status = REPLYSCAN_ERROR;
            out[nout].end = r.err_at;
            return nout + 1;
        }
        if (st == REF_MORE) {
            memset(&out[nout], 0, sizeof(out[nout]));
            out[nout].status = REPLYSCAN_MORE;
            out[nout].end = size;
            return nout + 1;
        }
        fz_check(r.pos > start);
        out[nout].status = REPLYSCAN_DONE;
        out[nout].end = r.pos;
        nout++;
    }
    return nout;
}

static void fz_same(const struct fz_out *a, size_t na, const struct fz_out *b, size_t nb)
{
    fz_check(na == nb);
    fz_check(na == 0 || memcmp(a, b, na * sizeof(*a)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t limits[] = {0, 5, 64, 1000};
    struct fz_out *whole, *other;
    uint64_t hash = 1469598103934665603ull, max_bulk;
    size_t n, m;

    for (size_t i = 0; i < size; i++) {
        hash = (hash ^ data[i]) * 1099511628211ull;
    }
    max_bulk = limits[hash % 4];
    whole = calloc(size + 1, sizeof(*whole));
    other = calloc(size + 1, sizeof(*other));
    fz_check(whole != NULL && other != NULL);

    n = fz_scan(data, size, max_bulk, NULL, 0, whole);
    m = fz_scan(data, size, max_bulk, fz_cut_bytes, 0, other);
    fz_same(whole, n, other, m);
    m = fz_scan(data, size, max_bulk, fz_cut_random, hash | 1, other);
    fz_same(whole, n, other, m);
    m = fz_scan(data, size, max_bulk, fz_cut_lines, 0, other);
    fz_same(whole, n, other, m);
    m = fz_reference(data, size, max_bulk == 0 ? (uint64_t)512 << 20 : max_bulk, other);
    if (m > 0) {
        fz_same(whole, n, other, m);
    }
    free(other);
    free(whole);
    return 0;
}
