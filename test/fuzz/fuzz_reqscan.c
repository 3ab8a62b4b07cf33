/*
 * fuzz_reqscan.c - libFuzzer harness for the request scanner (proxy/reqscan.c).
 *
 * The input is scanned three ways: whole, byte by byte (with empty feeds in
 * between) and cut at pseudo-random points derived from the input. All three
 * must report the same requests (where each ends, argc, kind, name, arg1,
 * error text), and so must a slow reference that reads the whole input at
 * once the way redis-server does. Each complete inline line, and the whole
 * input, is also split by reqscan_split_inline() and compared with a
 * reference splitter.
 *
 * Input layout: byte 0 picks the limits (high bit set: tiny limits, so that
 * the "too big" paths are reached with short inputs); the rest is the data.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/reqscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One DONE or ERROR, or the unfinished request at the end of the input. */
struct fz_event {
    int status; /* REQSCAN_DONE, REQSCAN_ERROR, or REQSCAN_MORE for the tail */
    size_t end; /* offset just after the request (or the bytes used) */
    uint64_t bytes;
    int64_t argc;
    int kind;
    size_t eol;
    bool name_trunc;
    bool arg1_trunc;
    size_t name_len;
    size_t arg1_len;
    char name[REQSCAN_NAME_MAX];
    char arg1[REQSCAN_ARG1_MAX];
    char err[REQSCAN_ERR_MAX];
};

struct fz_log {
    struct fz_event *ev;
    size_t n;
    size_t cap;
};

static void fz_fail(const char *what)
{
    fprintf(stderr, "fuzz_reqscan: %s\n", what);
    abort();
}

static struct fz_event *fz_push(struct fz_log *log)
{
    if (log->n == log->cap) {
        fz_fail("too many events");
    }
    memset(&log->ev[log->n], 0, sizeof(log->ev[0]));
    return &log->ev[log->n++];
}

static void fz_record(struct fz_log *log, const struct reqscan *s, enum reqscan_status st,
                      size_t end)
{
    struct fz_event *e = fz_push(log);

    e->status = st;
    e->end = end;
    e->bytes = s->bytes;
    e->argc = s->argc;
    e->kind = s->kind;
    e->eol = st == REQSCAN_DONE && s->kind == REQSCAN_INLINE ? reqscan_inline_eol(s) : 0;
    e->name_trunc = s->name_trunc;
    e->arg1_trunc = s->arg1_trunc;
    e->name_len = s->name_len;
    e->arg1_len = s->arg1_len;
    if (e->name_len > REQSCAN_NAME_MAX || e->arg1_len > REQSCAN_ARG1_MAX) {
        fz_fail("captured too much");
    }
    if (memchr(s->err, '\0', sizeof(s->err)) == NULL) {
        fz_fail("error text not terminated");
    }
    memcpy(e->name, s->name, e->name_len);
    memcpy(e->arg1, s->arg1, e->arg1_len);
    memcpy(e->err, s->err, strlen(s->err));
}

/* Pseudo-random numbers from the input, so that a crash reproduces. */
static uint64_t fz_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static uint64_t fz_seed(const uint8_t *data, size_t size)
{
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < size; i++) {
        h = (h ^ data[i]) * 1099511628211ull;
    }
    return h != 0 ? h : 1;
}

/* Next piece length: mostly short, sometimes everything left, sometimes 0. */
static size_t fz_piece(uint64_t *rng, size_t left, int mode)
{
    uint64_t r;

    if (mode == 0) {
        return left;
    }
    if (mode == 1) {
        return left > 0 ? 1 : 0;
    }
    r = fz_next(rng);
    if (r % 16 == 0) {
        return 0;
    }
    if (r % 16 == 1) {
        return left;
    }
    r = (r >> 8) % 24 + 1;
    return r < left ? (size_t)r : left;
}

/* Scan data in pieces (mode 0: whole, 1: bytes, 2: random cuts). Before a
 * piece, an empty feed is made when that is asked for. */
static void fz_scan(const struct reqscan_limits *lim, const char *data, size_t size, int mode,
                    uint64_t seed, struct fz_log *log)
{
    struct reqscan s;
    uint64_t rng = seed;
    size_t pos = 0, start = 0;
    enum reqscan_status st = REQSCAN_MORE;

    reqscan_init(&s, lim);
    while (pos < size && st != REQSCAN_ERROR) {
        size_t n = fz_piece(&rng, size - pos, mode), used = SIZE_MAX;
        st = reqscan_feed(&s, data + pos, n, &used);
        if (used > n || (st == REQSCAN_MORE && used != n) || (st != REQSCAN_MORE && used == 0)) {
            fz_fail("bad used count");
        }
        pos += used;
        if (st == REQSCAN_MORE) {
            continue;
        }
        if (s.bytes != pos - start) {
            fz_fail("bytes does not match the input used");
        }
        fz_record(log, &s, st, pos);
        start = pos;
    }
    if (st == REQSCAN_MORE && pos > start) {
        if (s.bytes != pos - start) {
            fz_fail("bytes does not match the input used");
        }
        fz_record(log, &s, REQSCAN_MORE, pos);
    }
}

static void fz_same(const struct fz_log *a, const struct fz_log *b, const char *what)
{
    if (a->n != b->n) {
        fz_fail(what);
    }
    for (size_t i = 0; i < a->n; i++) {
        if (memcmp(&a->ev[i], &b->ev[i], sizeof(a->ev[i])) != 0) {
            fz_fail(what);
        }
    }
}

/* The reference: redis-server's rules applied to the whole input at once. */
struct fz_ref {
    const char *d;
    size_t size;
    const struct reqscan_limits *lim;
    struct fz_event *e; /* event being built */
    size_t start;       /* first byte of the request */
};

static bool fz_string2ll(const char *p, size_t n, int64_t *v)
{
    uint64_t u = 0;
    size_t i = 0;
    bool neg = n > 0 && p[0] == '-';

    if (n == 0 || n >= 21) {
        return false;
    }
    if (n == 1 && p[0] == '0') {
        *v = 0;
        return true;
    }
    i = neg ? 1 : 0;
    if (i == n || p[i] < '1' || p[i] > '9') {
        return false;
    }
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)p[i] - '0';
        if (d > 9 || u > (UINT64_MAX - d) / 10) {
            return false;
        }
        u = u * 10 + d;
    }
    if (neg && u > (uint64_t)INT64_MAX + 1) {
        return false;
    }
    if (!neg && u > (uint64_t)INT64_MAX) {
        return false;
    }
    *v = neg ? (u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u) : (int64_t)u;
    return true;
}

static int fz_ref_error(struct fz_ref *r, size_t end, const char *msg)
{
    r->e->status = REQSCAN_ERROR;
    r->e->end = end;
    snprintf(r->e->err, sizeof(r->e->err), "%s", msg);
    return -1;
}

/*
 * Find the line at pos ending with `stop`: 1 with *at on the stop byte, 0 if
 * more input is needed, -1 after a "too big" error (more than max_inline_len
 * bytes and no stop byte among them).
 */
static int fz_ref_line(struct fz_ref *r, size_t pos, char stop, const char *too_big, size_t *at)
{
    size_t max = r->lim->max_inline_len;
    size_t look = r->size - pos < max + 1 ? r->size - pos : max + 1;
    const char *hit = memchr(r->d + pos, stop, look);

    if (hit != NULL) {
        *at = (size_t)(hit - r->d);
        return 1;
    }
    if (r->size - pos > max) {
        return fz_ref_error(r, pos + max + 1, too_big);
    }
    return 0;
}

static void fz_ref_keep(char *dst, size_t *len, bool *trunc, size_t cap, const char *p, size_t n)
{
    *len = n < cap ? n : cap;
    *trunc = n > cap;
    memcpy(dst, p, *len);
}

/* One argument at *pos: 1 when complete (pos moves past it), 0 when more
 * input is needed, -1 after an error. */
static int fz_ref_arg(struct fz_ref *r, size_t *pos, int64_t argi)
{
    size_t cr = 0;
    int64_t v = 0;
    int rc = fz_ref_line(r, *pos, '\r', "Protocol error: too big bulk count string", &cr);
    char msg[REQSCAN_ERR_MAX];
    char lead;

    if (rc <= 0 || cr + 1 >= r->size) {
        return rc < 0 ? -1 : 0;
    }
    lead = r->d[*pos]; /* the line has at least its '\r' */
    if (lead != '$') {
        lead = lead == '\r' || lead == '\n' || lead == '\0' ? ' ' : lead;
        snprintf(msg, sizeof(msg), "Protocol error: expected '$', got '%c'", lead);
        return fz_ref_error(r, cr + 2, msg);
    }
    if (!fz_string2ll(r->d + *pos + 1, cr - *pos - 1, &v) || v < 0 ||
        (uint64_t)v > r->lim->max_bulk_len) {
        return fz_ref_error(r, cr + 2, "Protocol error: invalid bulk length");
    }
    if (r->size - (cr + 2) < (uint64_t)v + 2) {
        return 0;
    }
    if (argi == 0) {
        fz_ref_keep(r->e->name, &r->e->name_len, &r->e->name_trunc, REQSCAN_NAME_MAX, r->d + cr + 2,
                    (size_t)v);
    } else if (argi == 1) {
        fz_ref_keep(r->e->arg1, &r->e->arg1_len, &r->e->arg1_trunc, REQSCAN_ARG1_MAX, r->d + cr + 2,
                    (size_t)v);
    }
    *pos = cr + 2 + (size_t)v + 2;
    return 1;
}

/* A multibulk request at r->start: 1 done, 0 more input needed, -1 error. */
static int fz_ref_multibulk(struct fz_ref *r)
{
    size_t cr = 0, pos;
    int64_t v = 0;
    int rc = fz_ref_line(r, r->start, '\r', "Protocol error: too big mbulk count string", &cr);

    if (rc <= 0 || cr + 1 >= r->size) {
        return rc < 0 ? -1 : 0;
    }
    if (!fz_string2ll(r->d + r->start + 1, cr - r->start - 1, &v) || v > 2147483647) {
        return fz_ref_error(r, cr + 2, "Protocol error: invalid multibulk length");
    }
    pos = cr + 2;
    r->e->argc = v > 0 ? v : 0;
    for (int64_t i = 0; i < v && rc > 0; i++) {
        rc = fz_ref_arg(r, &pos, i);
    }
    if (rc > 0) {
        r->e->end = pos;
    }
    return rc;
}

static int fz_ref_inline(struct fz_ref *r)
{
    size_t lf = 0;
    int rc = fz_ref_line(r, r->start, '\n', "Protocol error: too big inline request", &lf);

    if (rc > 0) {
        r->e->end = lf + 1;
        r->e->eol = lf > r->start && r->d[lf - 1] == '\r' ? 2 : 1;
    }
    return rc;
}

/* Requests one after another; an unfinished one is logged as MORE with the
 * bytes left, as fz_scan() does. */
static void fz_reference(const struct reqscan_limits *lim, const char *data, size_t size,
                         struct fz_log *log)
{
    struct fz_ref r = {.d = data, .size = size, .lim = lim, .e = NULL, .start = 0};
    int rc = 1;

    while (r.start < size && rc > 0) {
        r.e = fz_push(log);
        r.e->kind = data[r.start] == '*' ? REQSCAN_MULTIBULK : REQSCAN_INLINE;
        rc = r.e->kind == REQSCAN_MULTIBULK ? fz_ref_multibulk(&r) : fz_ref_inline(&r);
        if (rc == 0) {
            /* More input needed: only how much the scanner used is
             * comparable. */
            memset(r.e, 0, sizeof(*r.e));
            r.e->status = REQSCAN_MORE;
            r.e->end = size;
        }
        if (rc > 0) {
            r.e->status = REQSCAN_DONE;
        }
        r.e->bytes = r.e->end - r.start;
        r.start = r.e->end;
    }
}

/* Compare with the reference; for the unfinished tail only the byte counts
 * are comparable. */
static void fz_same_as_reference(const struct fz_log *got, const struct fz_log *ref)
{
    struct fz_event tail;

    if (got->n != ref->n) {
        fz_fail("scanner and reference disagree on the number of requests");
    }
    for (size_t i = 0; i < got->n; i++) {
        const struct fz_event *e = &got->ev[i];
        if (e->status == REQSCAN_MORE) {
            memset(&tail, 0, sizeof(tail));
            tail.status = REQSCAN_MORE;
            tail.end = e->end;
            tail.bytes = e->bytes;
            e = &tail;
        }
        if (memcmp(e, &ref->ev[i], sizeof(*e)) != 0) {
            fz_fail("scanner and reference disagree");
        }
    }
}

/* Reference splitter: reads a NUL-terminated copy byte by byte as a C
 * string. Offsets and lengths of at most cap arguments; -1 unbalanced. */
static bool fz_is_space(char c)
{
    return c != '\0' && isspace((unsigned char)c);
}

static int fz_hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : tolower((unsigned char)c) - 'a' + 10;
}

/* One byte of a quoted section at *p; false at an unbalanced end. */
static bool fz_ref_quoted_byte(const char **p, char q, char *out, size_t *o)
{
    const char *c = *p;

    if (*c == '\0') {
        return false;
    }
    if (q == '"' && c[0] == '\\' && c[1] == 'x' && isxdigit((unsigned char)c[2]) &&
        isxdigit((unsigned char)c[3])) {
        out[(*o)++] = (char)(fz_hex(c[2]) * 16 + fz_hex(c[3]));
        *p = c + 4;
    } else if (q == '"' && c[0] == '\\' && c[1] != '\0') {
        const char *from = "nrtba", *to = "\n\r\t\b\a";
        const char *m = strchr(from, c[1]);
        out[(*o)++] = m != NULL ? to[m - from] : c[1];
        *p = c + 2;
    } else if (q == '\'' && c[0] == '\\' && c[1] == '\'') {
        out[(*o)++] = '\'';
        *p = c + 2;
    } else {
        out[(*o)++] = c[0];
        *p = c + 1;
    }
    return true;
}

/* One argument at *p (not a blank); 0 or -1 when unbalanced. */
static int fz_ref_word(const char **p, char *out, size_t *o)
{
    char q = 0;

    while (q != 0 || (**p != '\0' && strchr(" \n\r\t", **p) == NULL)) {
        char c = **p;
        if (q == 0 && (c == '"' || c == '\'')) {
            q = c;
            (*p)++;
        } else if (q == 0) {
            out[(*o)++] = c;
            (*p)++;
        } else if (c == q) {
            (*p)++;
            return **p == '\0' || fz_is_space(**p) ? 0 : -1;
        } else if (!fz_ref_quoted_byte(p, q, out, o)) {
            return -1;
        }
    }
    return 0;
}

static int fz_ref_split(const char *z, char *out, size_t *off, size_t *len, int cap)
{
    const char *p = z;
    size_t o = 0;
    int argc = 0;

    for (;;) {
        size_t start = o;
        while (fz_is_space(*p)) {
            p++;
        }
        if (*p == '\0') {
            return argc;
        }
        if (argc == cap || fz_ref_word(&p, out, &o) < 0) {
            return argc == cap ? -2 : -1;
        }
        off[argc] = start;
        len[argc] = o - start;
        argc++;
    }
}

/* Split one line with reqscan_split_inline() (ample room, then tight room)
 * and compare with the reference. */
static void fz_split(const char *line, size_t n, unsigned salt)
{
    size_t cap = n + 1;
    char *z = malloc(cap), *out = malloc(cap), *rout = malloc(cap);
    const char **argv = malloc(cap * sizeof(*argv));
    size_t *argl = malloc(cap * sizeof(*argl));
    size_t *roff = malloc(cap * sizeof(*roff)), *rlen = malloc(cap * sizeof(*rlen));
    int want, got, maxargs = (int)(salt % 5);
    bool fits;

    if (z == NULL || out == NULL || rout == NULL || argv == NULL || argl == NULL || roff == NULL ||
        rlen == NULL) {
        fz_fail("out of memory");
    }
    memcpy(z, line, n);
    z[n] = '\0';
    want = fz_ref_split(z, rout, roff, rlen, (int)cap);
    got = reqscan_split_inline(line, n, out, n, argv, argl, (int)cap);
    if (got != want) {
        fz_fail("split_inline: argc differs from the reference");
    }
    for (int i = 0; i < got; i++) {
        if (argv[i] != out + roff[i] || argl[i] != rlen[i] ||
            memcmp(argv[i], rout + roff[i], argl[i]) != 0) {
            fz_fail("split_inline: arguments differ from the reference");
        }
    }
    /* Tight room: the same answer where it fits, else -2 (or -1 when the
     * quotes break before the room runs out). */
    got = reqscan_split_inline(line, n, out, n / 2, argv, argl, maxargs);
    fits = want >= 0 && want <= maxargs && (want == 0 || roff[want - 1] + rlen[want - 1] <= n / 2);
    if (fits ? got != want : (got != -2 && (want != -1 || got != -1))) {
        fz_fail("split_inline: wrong answer with little room");
    }
    for (int i = 0; i < got; i++) {
        if (argv[i] != out + roff[i] || memcmp(argv[i], rout + roff[i], rlen[i]) != 0) {
            fz_fail("split_inline: arguments differ with little room");
        }
    }
    free(z);
    free(out);
    free(rout);
    free(argv);
    free(argl);
    free(roff);
    free(rlen);
}

static void fz_split_lines(const char *data, const struct fz_log *log)
{
    size_t start = 0;

    for (size_t i = 0; i < log->n; i++) {
        const struct fz_event *e = &log->ev[i];
        if (e->status == REQSCAN_DONE && e->kind == REQSCAN_INLINE) {
            fz_split(data + start, e->end - start - e->eol, (unsigned)i);
        }
        start = e->end;
    }
}

/* Byte 0: high bit set picks tiny limits (inline 0-31, bulk 0-30). */
static void fz_limits(uint8_t c, struct reqscan_limits *lim)
{
    lim->max_bulk_len = 512ull << 20;
    lim->max_inline_len = 65536;
    if (c & 0x80) {
        lim->max_inline_len = c & 0x1f;
        lim->max_bulk_len = ((c >> 5) & 3) * 10u;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reqscan_limits lim;
    struct fz_log logs[4];
    const char *d = (const char *)data + 1;
    uint64_t seed = fz_seed(data, size);
    size_t n;

    if (size < 1) {
        return 0;
    }
    n = size - 1;
    fz_limits(data[0], &lim);
    for (int i = 0; i < 4; i++) {
        logs[i].n = 0;
        logs[i].cap = n + 1;
        logs[i].ev = malloc(logs[i].cap * sizeof(struct fz_event));
        if (logs[i].ev == NULL) {
            fz_fail("out of memory");
        }
    }
    fz_scan(&lim, d, n, 0, seed, &logs[0]);
    fz_scan(&lim, d, n, 1, seed, &logs[1]);
    fz_scan(&lim, d, n, 2, seed, &logs[2]);
    fz_reference(&lim, d, n, &logs[3]);
    fz_same(&logs[0], &logs[1], "whole and byte-by-byte scans differ");
    fz_same(&logs[0], &logs[2], "whole and randomly split scans differ");
    fz_same_as_reference(&logs[0], &logs[3]);
    fz_split_lines(d, &logs[0]);
    fz_split(d, n, (unsigned)seed);
    for (int i = 0; i < 4; i++) {
        free(logs[i].ev);
    }
    return 0;
}
