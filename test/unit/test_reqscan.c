/*
 * test_reqscan.c - unit tests for the request scanner (proxy/reqscan.c).
 *
 * Every input is scanned whole, byte by byte (with empty feeds in between),
 * split once at every position and, when short, split twice at every pair of
 * positions: all ways must report the same requests, so no test below can
 * pass by luck of where a read happened to end. The expected replies, quirks
 * and quoting results were checked against redis-server 7.0.15.
 */
#include "unit.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/reqscan.h"

#define MAX_RESULTS     512
#define PAIR_CUTS_MAX   64   /* inputs up to this long are also split twice */
#define SINGLE_CUTS_MAX 4096 /* longer inputs get a sample of single splits */

/* This binary is linked with --wrap=malloc: an allocation can be made to
 * fail on purpose. */
void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
static int malloc_fail_in = -1; /* fail the malloc this many calls from now; -1: never */

void *__wrap_malloc(size_t n)
{
    if (malloc_fail_in == 0) {
        malloc_fail_in = -1;
        return NULL;
    }
    if (malloc_fail_in > 0) {
        malloc_fail_in--;
    }
    return __real_malloc(n);
}

static const struct reqscan_limits limits_default = {.max_bulk_len = 512ull << 20,
                                                     .max_inline_len = 65536};

/* What the scanner reported at one DONE or ERROR. */
struct result {
    int status;
    size_t end; /* offset in the whole input just after the request */
    uint64_t bytes;
    int64_t argc;
    int kind;
    size_t eol; /* reqscan_inline_eol() for a finished inline request */
    bool name_trunc;
    bool arg1_trunc;
    size_t name_len;
    size_t arg1_len;
    char name[REQSCAN_NAME_MAX];
    char arg1[REQSCAN_ARG1_MAX];
    char err[REQSCAN_ERR_MAX];
};

/* Everything reported for one input, fed one way. */
struct run {
    int n;
    bool more;        /* the input ended inside a request */
    uint64_t pending; /* bytes of that request */
    struct result r[MAX_RESULTS];
};

static void record(struct run *run, const struct reqscan *s, enum reqscan_status st, size_t end)
{
    struct result *r = &run->r[run->n];
    size_t start = run->n > 0 ? run->r[run->n - 1].end : 0;

    assert_true(run->n < MAX_RESULTS);
    memset(r, 0, sizeof(*r));
    r->status = st;
    r->end = end;
    r->bytes = s->bytes;
    r->argc = s->argc;
    r->kind = s->kind;
    r->eol = st == REQSCAN_DONE && s->kind == REQSCAN_INLINE ? reqscan_inline_eol(s) : 0;
    r->name_trunc = s->name_trunc;
    r->arg1_trunc = s->arg1_trunc;
    r->name_len = s->name_len;
    r->arg1_len = s->arg1_len;
    assert_true(r->name_len <= REQSCAN_NAME_MAX && r->arg1_len <= REQSCAN_ARG1_MAX);
    memcpy(r->name, s->name, r->name_len);
    memcpy(r->arg1, s->arg1, r->arg1_len);
    assert_non_null(memchr(s->err, '\0', sizeof(s->err)));
    memcpy(r->err, s->err, strlen(s->err));
    /* bytes counts exactly the input used by this request. */
    assert_int_equal(r->bytes, end - start);
    run->n++;
}

/*
 * Feed buf[from, to) and resume after every DONE; false once an error was
 * reported. With zero set, an empty feed comes first (it must change
 * nothing visible).
 */
static bool feed_piece(struct reqscan *s, const char *buf, size_t from, size_t to, bool zero,
                       struct run *run)
{
    size_t pos = from;

    if (zero) {
        size_t used = 99;
        assert_int_equal(reqscan_feed(s, buf + from, 0, &used), REQSCAN_MORE);
        assert_int_equal(used, 0);
    }
    while (pos < to) {
        size_t used = SIZE_MAX;
        enum reqscan_status st = reqscan_feed(s, buf + pos, to - pos, &used);
        assert_true(used <= to - pos);
        pos += used;
        run->more = st == REQSCAN_MORE;
        run->pending = st == REQSCAN_MORE ? s->bytes : 0;
        if (st == REQSCAN_MORE) {
            assert_int_equal(pos, to);
            return true;
        }
        assert_true(used > 0);
        record(run, s, st, pos);
        if (st == REQSCAN_ERROR) {
            return false;
        }
    }
    return true;
}

static bool preauth_mode; /* scanners start with preauth set */

/* Scan buf cut at the given increasing positions (0 < cut < len). */
static void scan_cuts(const struct reqscan_limits *lim, const char *buf, size_t len,
                      const size_t *cuts, size_t ncuts, bool zero, struct run *run)
{
    struct reqscan s;
    size_t from = 0;

    memset(run, 0, sizeof(*run));
    reqscan_init(&s, lim);
    s.preauth = preauth_mode;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        if (!feed_piece(&s, buf, from, to, zero, run)) {
            return;
        }
        from = to;
    }
}

static void assert_same_runs(const struct run *a, const struct run *b)
{
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->more, b->more);
    assert_int_equal(a->pending, b->pending);
    for (int i = 0; i < a->n; i++) {
        const struct result *x = &a->r[i], *y = &b->r[i];
        assert_int_equal(x->status, y->status);
        assert_int_equal(x->end, y->end);
        assert_int_equal(x->bytes, y->bytes);
        assert_int_equal(x->argc, y->argc);
        assert_int_equal(x->kind, y->kind);
        assert_int_equal(x->eol, y->eol);
        assert_int_equal(x->name_trunc, y->name_trunc);
        assert_int_equal(x->arg1_trunc, y->arg1_trunc);
        assert_memory_equal(x, y, sizeof(*x));
    }
}

/* Split once at each cut given by step (all of them when step is 1). */
static void scan_single_cuts(const struct reqscan_limits *lim, const char *buf, size_t len,
                             size_t step, const struct run *whole, struct run *other)
{
    for (size_t cut = 1; cut < len; cut += step) {
        scan_cuts(lim, buf, len, &cut, 1, false, other);
        assert_same_runs(whole, other);
    }
}

static void scan_pair_cuts(const struct reqscan_limits *lim, const char *buf, size_t len,
                           const struct run *whole, struct run *other)
{
    for (size_t a = 1; a < len; a++) {
        for (size_t b = a + 1; b < len; b++) {
            size_t cuts[2] = {a, b};
            scan_cuts(lim, buf, len, cuts, 2, true, other);
            assert_same_runs(whole, other);
        }
    }
}

/* Scan every way described at the top; returns the run (free it). */
static struct run *scan_lim(const struct reqscan_limits *lim, const char *buf, size_t len)
{
    struct run *whole = calloc(1, sizeof(*whole));
    struct run *other = calloc(1, sizeof(*other));
    size_t *cuts = calloc(len + 1, sizeof(*cuts));

    assert_non_null(whole);
    assert_non_null(other);
    assert_non_null(cuts);
    scan_cuts(lim, buf, len, NULL, 0, false, whole);
    for (size_t i = 1; i < len; i++) {
        cuts[i - 1] = i;
    }
    scan_cuts(lim, buf, len, cuts, len > 0 ? len - 1 : 0, true, other);
    assert_same_runs(whole, other);
    scan_single_cuts(lim, buf, len, len <= SINGLE_CUTS_MAX ? 1 : len / 97, whole, other);
    if (len <= PAIR_CUTS_MAX) {
        scan_pair_cuts(lim, buf, len, whole, other);
    }
    free(cuts);
    free(other);
    return whole;
}

static struct run *scan(const char *buf, size_t len)
{
    return scan_lim(&limits_default, buf, len);
}

#define S(lit) lit, sizeof(lit) - 1

static void check_done(const struct result *r, int kind, int64_t argc, uint64_t bytes,
                       const char *name)
{
    assert_int_equal(r->status, REQSCAN_DONE);
    assert_int_equal(r->kind, kind);
    assert_int_equal(r->argc, argc);
    assert_int_equal(r->bytes, bytes);
    assert_int_equal(r->name_len, strlen(name));
    assert_memory_equal(r->name, name, r->name_len);
    assert_string_equal(r->err, "");
}

static void check_arg1(const struct result *r, const char *arg1, bool trunc)
{
    assert_int_equal(r->arg1_len, strlen(arg1));
    assert_memory_equal(r->arg1, arg1, r->arg1_len);
    assert_int_equal(r->arg1_trunc, trunc);
}

/* The input gives exactly one result: an error after bytes bytes. */
static void check_error_lim(const struct reqscan_limits *lim, const char *buf, size_t len,
                            const char *msg, uint64_t bytes)
{
    struct run *run = scan_lim(lim, buf, len);

    assert_int_equal(run->n, 1);
    assert_int_equal(run->r[0].status, REQSCAN_ERROR);
    assert_string_equal(run->r[0].err, msg);
    assert_int_equal(run->r[0].bytes, bytes);
    free(run);
}

static void check_error(const char *buf, size_t len, const char *msg, uint64_t bytes)
{
    check_error_lim(&limits_default, buf, len, msg, bytes);
}

/* The input is one unfinished request of len bytes. */
static void check_more_lim(const struct reqscan_limits *lim, const char *buf, size_t len)
{
    struct run *run = scan_lim(lim, buf, len);

    assert_int_equal(run->n, 0);
    assert_true(run->more);
    assert_int_equal(run->pending, len);
    free(run);
}

static void check_more(const char *buf, size_t len)
{
    check_more_lim(&limits_default, buf, len);
}

/* A buffer of n copies of c between a prefix and a suffix (free it). */
static char *make_line(const char *prefix, char c, size_t n, const char *suffix, size_t *len)
{
    size_t lp = strlen(prefix), ls = strlen(suffix);
    char *buf = malloc(lp + n + ls + 1);

    assert_non_null(buf);
    memcpy(buf, prefix, lp);
    memset(buf + lp, c, n);
    memcpy(buf + lp + n, suffix, ls + 1);
    *len = lp + n + ls;
    return buf;
}

static void test_empty_feeds(void **state)
{
    static const char req[] = "*1\r\n$4\r\nPING\r\n";
    struct reqscan s;
    size_t used = 99;

    (void)state;
    reqscan_init(&s, &limits_default);
    assert_int_equal(reqscan_feed(&s, req, 0, &used), REQSCAN_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(s.bytes, 0);
    assert_int_equal(reqscan_feed(&s, req, 5, &used), REQSCAN_MORE);
    assert_int_equal(reqscan_feed(&s, req + 5, 0, &used), REQSCAN_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(s.bytes, 5);
    assert_int_equal(reqscan_feed(&s, req + 5, sizeof(req) - 6, &used), REQSCAN_DONE);
    assert_int_equal(used, sizeof(req) - 6);
    assert_int_equal(s.bytes, sizeof(req) - 1);
    /* An empty feed after DONE starts the next request, which is empty. */
    assert_int_equal(reqscan_feed(&s, req, 0, &used), REQSCAN_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(s.bytes, 0);
    assert_int_equal(s.name_len, 0);
}

static void test_multibulk_forms(void **state)
{
    struct run *run;

    (void)state;
    run = scan(S("*1\r\n$4\r\nPING\r\n"));
    assert_int_equal(run->n, 1);
    assert_false(run->more);
    check_done(&run->r[0], REQSCAN_MULTIBULK, 1, 14, "PING");
    check_arg1(&run->r[0], "", false);
    free(run);

    run = scan(S("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"));
    assert_int_equal(run->n, 1);
    check_done(&run->r[0], REQSCAN_MULTIBULK, 3, 33, "SET");
    check_arg1(&run->r[0], "key", false);
    free(run);

    /* Empty arguments, and payloads holding protocol bytes. */
    run = scan(S("*3\r\n$0\r\n\r\n$6\r\n*1\r\n$4\r\n$2\r\n\n\r\r\n"));
    assert_int_equal(run->n, 1);
    check_done(&run->r[0], REQSCAN_MULTIBULK, 3, 30, "");
    check_arg1(&run->r[0], "*1\r\n$4", false);
    free(run);

    /* Raw bytes, case kept. */
    run = scan(S("*2\r\n$3\r\ngEt\r\n$3\r\n\x00\xff\x80\r\n"));
    check_done(&run->r[0], REQSCAN_MULTIBULK, 2, 22, "gEt");
    assert_int_equal(run->r[0].arg1_len, 3);
    assert_memory_equal(run->r[0].arg1, "\x00\xff\x80", 3);
    free(run);
}

static void test_multibulk_unfinished(void **state)
{
    (void)state;
    check_more(S("*"));
    check_more(S("*2"));
    check_more(S("*2\r"));
    check_more(S("*2\r\n$3\r\nGET\r\n"));
    check_more(S("*2\r\n$3\r\nGET\r\n$1\r\nk\r"));
    /* A huge but valid count or length just waits for the data. */
    check_more(S("*2147483647\r\n"));
    check_more(S("*1\r\n$536870912\r\nabc"));
}

static void test_inline_forms(void **state)
{
    struct run *run;

    (void)state;
    run = scan(S("PING\r\nPING\nGET k\r\n\n\r\n  \t\r\na\r\r\n\rx\n$4 x\n x\n"));
    assert_int_equal(run->n, 10);
    assert_false(run->more);
    check_done(&run->r[0], REQSCAN_INLINE, 0, 6, "");
    assert_int_equal(run->r[0].eol, 2);
    check_done(&run->r[1], REQSCAN_INLINE, 0, 5, "");
    assert_int_equal(run->r[1].eol, 1);
    check_done(&run->r[2], REQSCAN_INLINE, 0, 7, "");
    assert_int_equal(run->r[2].eol, 2);
    /* Blank lines: "\n" alone ends with one byte, "\r\n" with two. */
    check_done(&run->r[3], REQSCAN_INLINE, 0, 1, "");
    assert_int_equal(run->r[3].eol, 1);
    check_done(&run->r[4], REQSCAN_INLINE, 0, 2, "");
    assert_int_equal(run->r[4].eol, 2);
    check_done(&run->r[5], REQSCAN_INLINE, 0, 5, "");
    assert_int_equal(run->r[5].eol, 2);
    /* "a\r\r\n": the line is "a\r". "\rx\n": a '\r' not before '\n'. */
    check_done(&run->r[6], REQSCAN_INLINE, 0, 4, "");
    assert_int_equal(run->r[6].eol, 2);
    check_done(&run->r[7], REQSCAN_INLINE, 0, 3, "");
    assert_int_equal(run->r[7].eol, 1);
    /* Only '*' starts a multibulk request. */
    check_done(&run->r[8], REQSCAN_INLINE, 0, 5, "");
    check_done(&run->r[9], REQSCAN_INLINE, 0, 3, "");
    free(run);

    check_more(S("PING"));
    check_more(S("PING\r"));
}

static void test_empty_requests(void **state)
{
    struct run *run;

    (void)state;
    run = scan(S("*0\r\n*-1\r\n*-9223372036854775808\r\n\n\r\n   \r\n*1\r\n$4\r\nPING\r\n"));
    assert_int_equal(run->n, 7);
    check_done(&run->r[0], REQSCAN_MULTIBULK, 0, 4, "");
    check_done(&run->r[1], REQSCAN_MULTIBULK, 0, 5, "");
    check_done(&run->r[2], REQSCAN_MULTIBULK, 0, 23, "");
    check_done(&run->r[3], REQSCAN_INLINE, 0, 1, "");
    check_done(&run->r[4], REQSCAN_INLINE, 0, 2, "");
    check_done(&run->r[5], REQSCAN_INLINE, 0, 5, "");
    check_done(&run->r[6], REQSCAN_MULTIBULK, 1, 14, "PING");
    free(run);
}

static void test_pipeline(void **state)
{
    char *buf = malloc(16384);
    size_t len = 0;
    struct run *run;

    (void)state;
    assert_non_null(buf);
    for (int i = 0; i < 120; i++) {
        size_t room = 16384 - len;
        if (i % 4 == 3) {
            len += (size_t)snprintf(buf + len, room, "GET k%d\r\n", i);
        } else if (i % 10 == 9) {
            len += (size_t)snprintf(buf + len, room, "*0\r\n");
        } else {
            len += (size_t)snprintf(buf + len, room, "*2\r\n$3\r\nGET\r\n$%d\r\nk%d\r\n",
                                    i < 10 ? 2 : (i < 100 ? 3 : 4), i);
        }
    }
    run = scan(buf, len);
    assert_int_equal(run->n, 120);
    assert_false(run->more);
    assert_int_equal(run->r[119].end, len);
    for (int i = 0; i < 120; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        if (i % 4 == 3) {
            check_done(&run->r[i], REQSCAN_INLINE, 0, strlen(key) + 6, "");
        } else if (i % 10 == 9) {
            check_done(&run->r[i], REQSCAN_MULTIBULK, 0, 4, "");
        } else {
            check_done(&run->r[i], REQSCAN_MULTIBULK, 2, 19 + strlen(key), "GET");
            check_arg1(&run->r[i], key, false);
        }
    }
    free(run);
    free(buf);
}

/* After a request, the next one starts with fresh details. */
static void test_fresh_after_done(void **state)
{
    struct run *run;

    (void)state;
    run = scan(S("*3\r\n$27\r\nabcdefghijklmnopqrstuvwxyz0\r\n$25\r\nABCDEFGHIJKLMNOPQRSTUVWXY\r\n"
                 "$1\r\nz\r\nX\r\n*1\r\n$1\r\nq\r\n"));
    assert_int_equal(run->n, 3);
    check_done(&run->r[0], REQSCAN_MULTIBULK, 3, 77, "abcdefghijklmnopqrstuvwx");
    assert_true(run->r[0].name_trunc);
    check_arg1(&run->r[0], "ABCDEFGHIJKLMNOPQRSTUVWX", true);
    check_done(&run->r[1], REQSCAN_INLINE, 0, 3, "");
    assert_false(run->r[1].name_trunc);
    check_arg1(&run->r[1], "", false);
    check_done(&run->r[2], REQSCAN_MULTIBULK, 1, 11, "q");
    free(run);
}

/* Redis-server skips the byte after a line's '\r' and the two bytes after a
 * payload without looking at them. */
static void test_skipped_bytes(void **state)
{
    struct run *run;

    (void)state;
    run = scan(S("*1\rZ$4\rQPINGxyECHO hi\r\n"));
    assert_int_equal(run->n, 2);
    check_done(&run->r[0], REQSCAN_MULTIBULK, 1, 14, "PING");
    check_done(&run->r[1], REQSCAN_INLINE, 0, 9, "");
    free(run);

    /* The skipped byte may itself be '\r', '$' or '*'. */
    run = scan(S("*2\r\r$3\r$GET**$1\r*k***1\r\n$1\r\nx\r\n"));
    assert_int_equal(run->n, 2);
    check_done(&run->r[0], REQSCAN_MULTIBULK, 2, 20, "GET");
    check_arg1(&run->r[0], "k", false);
    check_done(&run->r[1], REQSCAN_MULTIBULK, 1, 11, "x");
    free(run);

    /* Empty payload: its two bytes are still skipped blindly. */
    run = scan(S("*1\r\n$0\r\n$$*1\r\n$0\r\n\n\n"));
    assert_int_equal(run->n, 2);
    check_done(&run->r[0], REQSCAN_MULTIBULK, 1, 10, "");
    check_done(&run->r[1], REQSCAN_MULTIBULK, 1, 10, "");
    free(run);

    /* The count line waits for its skipped byte before it is judged. */
    check_more(S("*1x\r"));
    check_more(S("*0\r"));
}

/* "*N" with string2ll's rules; each bad one is refused. */
static void test_count_values(void **state)
{
    static const char *const bad[] = {
        "-0",
        "01",
        "00",
        "-01",
        "+1",
        " 1",
        "1 ",
        "",
        "-",
        "--1",
        "1-",
        "1a",
        "0x10",
        "2147483648",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551616",
        "99999999999999999999",
        "-9223372036854775809",
        "123456789012345678901",
        "-1234567890123456789012",
    };
    char buf[64];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int n = snprintf(buf, sizeof(buf), "*%s\r\n", bad[i]);
        check_error(buf, (size_t)n, "Protocol error: invalid multibulk length", (uint64_t)n);
    }
    check_more(S("*1\r\n"));
    check_more(S("*2147483647\r\n"));
    check_more(S("*1000000\r\n$1\r\na\r\n"));
}

static void test_bulk_len_values(void **state)
{
    static const char *const bad[] = {
        "-1", "-0", "01", "+1", " 1", "", "-", "1a", "536870913", "9223372036854775808",
    };
    char buf[64];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int n = snprintf(buf, sizeof(buf), "*1\r\n$%s\r\n", bad[i]);
        check_error(buf, (size_t)n, "Protocol error: invalid bulk length", (uint64_t)n);
    }
    /* A bad length in the third argument. */
    check_error(S("*3\r\n$1\r\na\r\n$1\r\nb\r\n$x\r\n"), "Protocol error: invalid bulk length", 22);
    check_more(S("*1\r\n$536870912\r\n"));
}

/* Lengths at the edges of one, two and three digits (the fast path reads one
 * and two digits without its digit loop), each request alone and followed by
 * another, so that a length line also ends the input. */
static void test_bulk_len_digits(void **state)
{
    static const size_t lens[] = {0, 1, 2, 9, 10, 11, 42, 99, 100, 101, 999};
    char buf[1200];

    (void)state;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        int head = snprintf(buf, sizeof(buf), "*2\r\n$3\r\nGET\r\n$%zu\r\n", lens[i]);
        size_t one = (size_t)head + lens[i] + 2;
        struct run *run;

        memset(buf + head, 'k', lens[i]);
        memcpy(buf + head + lens[i], "\r\n", 2);
        run = scan(buf, one);
        assert_int_equal(run->n, 1);
        check_done(&run->r[0], REQSCAN_MULTIBULK, 2, one, "GET");
        free(run);
        memcpy(buf + one, "*1\r\n$1\r\nX\r\n", 11);
        run = scan(buf, one + 11);
        assert_int_equal(run->n, 2);
        check_done(&run->r[0], REQSCAN_MULTIBULK, 2, one, "GET");
        check_done(&run->r[1], REQSCAN_MULTIBULK, 1, 11, "X");
        free(run);
        /* The same request cut before its last byte waits for it. */
        check_more(buf, one - 1);
    }
    check_error(S("*1\r\n$9a\r\n"), "Protocol error: invalid bulk length", 9);
    check_error(S("*1\r\n$99a\r\n"), "Protocol error: invalid bulk length", 10);
}

static void test_max_bulk_len(void **state)
{
    static const struct reqscan_limits small = {.max_bulk_len = 10, .max_inline_len = 65536};
    struct run *run;

    (void)state;
    run = scan_lim(&small, S("*2\r\n$10\r\n0123456789\r\n$0\r\n\r\n"));
    assert_int_equal(run->n, 1);
    check_done(&run->r[0], REQSCAN_MULTIBULK, 2, 27, "0123456789");
    free(run);
    check_error_lim(&small, S("*2\r\n$10\r\n0123456789\r\n$11\r\n"),
                    "Protocol error: invalid bulk length", 26);
}

static void test_expected_dollar(void **state)
{
    (void)state;
    check_error(S("*1\r\nX\r\n"), "Protocol error: expected '$', got 'X'", 7);
    check_error(S("*1\r\n*1\r\n"), "Protocol error: expected '$', got '*'", 8);
    check_error(S("*1\r\n\xff\r\n"), "Protocol error: expected '$', got '\xff'", 7);
    /* Line breaks (and NUL, where redis-server hangs) are shown as spaces. */
    check_error(S("*1\r\n\r\n"), "Protocol error: expected '$', got ' '", 6);
    check_error(S("*1\r\n\n\r\n"), "Protocol error: expected '$', got ' '", 7);
    check_error(S("*1\r\n\0\r\n"), "Protocol error: expected '$', got ' '", 7);
    /* The first byte is judged only once the whole line is there. */
    check_error(S("*2\r\n$1\r\na\r\nGET k\r\n"), "Protocol error: expected '$', got 'G'", 18);
    check_more(S("*1\r\nX"));
    check_more(S("*1\r\nXabc\r"));
    check_more(S("*1\r\n\r"));
}

/* Count and length lines, type byte included, may be 65536 bytes long with no
 * '\r'; one more byte is refused. */
static void test_too_big_lines(void **state)
{
    size_t len;
    char *buf;

    (void)state;
    buf = make_line("*", '1', 65535, "", &len);
    check_more(buf, len);
    free(buf);
    buf = make_line("*", '1', 65536, "", &len);
    check_error(buf, len, "Protocol error: too big mbulk count string", 65537);
    free(buf);
    /* Complete in time: judged as a number, and too long for one. */
    buf = make_line("*", '1', 65535, "\r\n", &len);
    check_error(buf, len, "Protocol error: invalid multibulk length", 65538);
    free(buf);

    buf = make_line("*1\r\n$", '1', 65535, "", &len);
    check_more(buf, len);
    free(buf);
    buf = make_line("*1\r\n$", '1', 65536, "\r\n", &len);
    check_error(buf, len, "Protocol error: too big bulk count string", 65541);
    free(buf);
    buf = make_line("*1\r\n$", '1', 65535, "\r\n", &len);
    check_error(buf, len, "Protocol error: invalid bulk length", len);
    free(buf);

    /* A line without '$' is measured the same way before it is judged. */
    buf = make_line("*1\r\nX", 'a', 65535, "\r\n", &len);
    check_error(buf, len, "Protocol error: expected '$', got 'X'", len);
    free(buf);
    buf = make_line("*1\r\nX", 'a', 65536, "\r\n", &len);
    check_error(buf, len, "Protocol error: too big bulk count string", 65541);
    free(buf);
}

/* An inline line may have 65536 bytes before its '\n'; a '\r' counts until
 * the '\n' is there. */
static void test_too_big_inline(void **state)
{
    struct run *run;
    size_t len;
    char *buf;

    (void)state;
    buf = make_line("", 'P', 65536, "\n", &len);
    run = scan(buf, len);
    assert_int_equal(run->n, 1);
    check_done(&run->r[0], REQSCAN_INLINE, 0, 65537, "");
    assert_int_equal(run->r[0].eol, 1);
    free(run);
    free(buf);

    buf = make_line("", 'P', 65535, "\r\n", &len);
    run = scan(buf, len);
    check_done(&run->r[0], REQSCAN_INLINE, 0, 65537, "");
    assert_int_equal(run->r[0].eol, 2);
    free(run);
    free(buf);

    buf = make_line("", 'P', 65536, "\r\n", &len);
    check_error(buf, len, "Protocol error: too big inline request", 65537);
    free(buf);
    buf = make_line("", 'P', 65537, "", &len);
    check_error(buf, len, "Protocol error: too big inline request", 65537);
    free(buf);
}

/* The same limits with a small max_inline_len, so that every split of the
 * boundary cases is tried. */
static void test_small_inline_limit(void **state)
{
    static const struct reqscan_limits lim = {.max_bulk_len = 100, .max_inline_len = 4};
    static const struct reqscan_limits one = {.max_bulk_len = 100, .max_inline_len = 1};
    static const struct reqscan_limits two = {.max_bulk_len = 100, .max_inline_len = 2};
    struct run *run;

    (void)state;
    check_more_lim(&lim, S("*123\r\n$1\r\na\r\n"));
    check_more_lim(&lim, S("*12"));
    check_error_lim(&lim, S("*1234\r\n"), "Protocol error: too big mbulk count string", 5);
    check_more_lim(&lim, S("*1\r\n$100\r\n"));
    check_error_lim(&lim, S("*1\r\n$1000\r\n"), "Protocol error: too big bulk count string", 9);
    check_error_lim(&lim, S("*1\r\nXYZW\r\n"), "Protocol error: expected '$', got 'X'", 10);
    check_error_lim(&lim, S("*1\r\nXYZWV\r\n"), "Protocol error: too big bulk count string", 9);
    /* Whole requests too: a limit under the fast path's longest lines. */
    check_error_lim(&one, S("*1\r\n$1\r\na\r\n"), "Protocol error: too big mbulk count string", 2);
    check_error_lim(&two, S("*1\r\n$10\r\n0123456789\r\n"),
                    "Protocol error: too big bulk count string", 7);

    run = scan_lim(&lim, S("ABCD\nABC\r\n\r\n"));
    assert_int_equal(run->n, 3);
    check_done(&run->r[0], REQSCAN_INLINE, 0, 5, "");
    check_done(&run->r[1], REQSCAN_INLINE, 0, 5, "");
    check_done(&run->r[2], REQSCAN_INLINE, 0, 2, "");
    free(run);
    check_error_lim(&lim, S("ABCD\r\n"), "Protocol error: too big inline request", 5);
    check_error_lim(&lim, S("ABCDE\n"), "Protocol error: too big inline request", 5);
}

/* A zero limit: every line byte is one too many, '\n' alone still passes. */
static void test_zero_inline_limit(void **state)
{
    static const struct reqscan_limits lim = {.max_bulk_len = 10, .max_inline_len = 0};
    struct run *run;

    (void)state;
    check_error_lim(&lim, S("*"), "Protocol error: too big mbulk count string", 1);
    check_error_lim(&lim, S("*1\r\n"), "Protocol error: too big mbulk count string", 1);
    check_error_lim(&lim, S("x\n"), "Protocol error: too big inline request", 1);
    check_error_lim(&lim, S("\r\n"), "Protocol error: too big inline request", 1);
    run = scan_lim(&lim, S("\n\n"));
    assert_int_equal(run->n, 2);
    check_done(&run->r[0], REQSCAN_INLINE, 0, 1, "");
    check_done(&run->r[1], REQSCAN_INLINE, 0, 1, "");
    free(run);
}

static void test_name_capture(void **state)
{
    struct run *run;

    (void)state;
    /* Exactly REQSCAN_NAME_MAX / REQSCAN_ARG1_MAX bytes: kept whole. */
    run = scan(S("*3\r\n$24\r\nabcdefghijklmnopqrstuvwx\r\n$24\r\nABCDEFGHIJKLMNOPQRSTUVWX\r\n"
                 "$30\r\n012345678901234567890123456789\r\n"));
    check_done(&run->r[0], REQSCAN_MULTIBULK, 3, 103, "abcdefghijklmnopqrstuvwx");
    assert_false(run->r[0].name_trunc);
    check_arg1(&run->r[0], "ABCDEFGHIJKLMNOPQRSTUVWX", false);
    free(run);

    /* One more byte: truncated. */
    run = scan(S("*2\r\n$25\r\nabcdefghijklmnopqrstuvwxy\r\n$25\r\nABCDEFGHIJKLMNOPQRSTUVWXY\r\n"));
    check_done(&run->r[0], REQSCAN_MULTIBULK, 2, 68, "abcdefghijklmnopqrstuvwx");
    assert_true(run->r[0].name_trunc);
    check_arg1(&run->r[0], "ABCDEFGHIJKLMNOPQRSTUVWX", true);
    free(run);
}

/* A large payload: skipped whole, only its start kept. */
static void test_large_payload(void **state)
{
    size_t plen = 3u << 20, len;
    char *buf = malloc(plen + 64);
    struct reqscan s;
    size_t used, pos = 0;

    (void)state;
    assert_non_null(buf);
    len = (size_t)snprintf(buf, 64, "*2\r\n$3\r\nSET\r\n$%zu\r\n", plen);
    for (size_t i = 0; i < plen; i++) {
        buf[len + i] = (char)('a' + i % 26);
    }
    len += plen;
    memcpy(buf + len, "\r\nPING\n", 7);
    len += 7;
    reqscan_init(&s, &limits_default);
    /* Pieces of odd sizes, then the rest. */
    for (size_t piece = 1; pos < len - 8; piece = piece * 3 + 1) {
        size_t n = piece < len - 8 - pos ? piece : len - 8 - pos;
        assert_int_equal(reqscan_feed(&s, buf + pos, n, &used), REQSCAN_MORE);
        assert_int_equal(used, n);
        pos += n;
    }
    assert_int_equal(reqscan_feed(&s, buf + pos, len - pos, &used), REQSCAN_DONE);
    assert_int_equal(pos + used, len - 5);
    assert_int_equal(s.bytes, len - 5);
    assert_true(s.arg1_trunc);
    assert_int_equal(s.arg1_len, REQSCAN_ARG1_MAX);
    assert_memory_equal(s.arg1, "abcdefghijklmnopqrstuvwx", REQSCAN_ARG1_MAX);
    pos += used;
    assert_int_equal(reqscan_feed(&s, buf + pos, len - pos, &used), REQSCAN_DONE);
    assert_int_equal(s.kind, REQSCAN_INLINE);
    assert_int_equal(s.bytes, 5);
    free(buf);
}

/* After an error the scanner refuses further input. */
/* Before authentication redis-server takes at most 10 arguments and bulks of
 * 16 KB, with their own error texts; the fast path must agree. */
static void test_preauth_limits(void **state)
{
    size_t len;
    char *big;
    struct run *run;

    (void)state;
    preauth_mode = true;
    check_error(S("*11\r\n"), "Protocol error: unauthenticated multibulk length", 5);
    check_error(S("*2\r\n$4\r\nAUTH\r\n$16385\r\n"), "Protocol error: unauthenticated bulk length",
                22);
    /* Ten arguments, and a bulk of exactly 16384 bytes, are fine. */
    run = scan(S("*10\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"
                 "$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"));
    assert_int_equal(run->n, 1);
    assert_int_equal(run->r[0].status, REQSCAN_DONE);
    assert_int_equal(run->r[0].argc, 10);
    free(run);
    big = make_line("*2\r\n$3\r\nGET\r\n$16384\r\n", 'x', 16384, "\r\n", &len);
    run = scan(big, len);
    assert_int_equal(run->n, 1);
    assert_int_equal(run->r[0].status, REQSCAN_DONE);
    free(run);
    free(big);
    /* An eleven-argument request that the fast path would take whole. */
    run = scan(S("*11\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"
                 "$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"));
    assert_int_equal(run->n, 1);
    assert_int_equal(run->r[0].status, REQSCAN_ERROR);
    free(run);
    preauth_mode = false;
}

static void test_error_is_final(void **state)
{
    struct reqscan s;
    size_t used = 99;

    (void)state;
    reqscan_init(&s, &limits_default);
    assert_int_equal(reqscan_feed(&s, S("*x\r\n*1\r\n$1\r\na\r\n"), &used), REQSCAN_ERROR);
    assert_int_equal(used, 4);
    assert_int_equal(s.bytes, 4);
    assert_string_equal(s.err, "Protocol error: invalid multibulk length");
    assert_int_equal(reqscan_feed(&s, S("*1\r\n$1\r\na\r\n"), &used), REQSCAN_ERROR);
    assert_int_equal(used, 0);
    assert_string_equal(s.err, "Protocol error: invalid multibulk length");
}

/* Split an inline line; returns argc and joins the arguments as
 * "[a][b]" into joined for easy checks. */
static int split(const char *line, size_t len, int maxargs, size_t outcap, char *joined,
                 size_t jcap)
{
    char out[256];
    const char *argv[16];
    size_t argl[16];
    size_t j = 0;
    int argc;

    assert_true(outcap <= sizeof(out) && maxargs <= 16);
    argc = reqscan_split_inline(line, len, out, outcap, argv, argl, maxargs);
    joined[0] = '\0';
    for (int i = 0; i < argc; i++) {
        assert_true(argv[i] >= out && argv[i] + argl[i] <= out + outcap);
        assert_true(j + argl[i] + 3 <= jcap);
        joined[j++] = '[';
        memcpy(joined + j, argv[i], argl[i]);
        j += argl[i];
        joined[j++] = ']';
        joined[j] = '\0';
    }
    return argc;
}

/* argc and arguments of line with ample room. */
static void check_split(const char *line, int argc, const char *joined)
{
    char got[512];
    size_t len = strlen(line);

    assert_int_equal(split(line, len, 16, len, got, sizeof(got)), argc);
    if (argc >= 0) {
        assert_string_equal(got, joined);
    }
}

static void test_split_plain(void **state)
{
    (void)state;
    check_split("", 0, "");
    check_split("   \t ", 0, "");
    check_split("\v\f\r\n", 0, "");
    check_split("PING", 1, "[PING]");
    check_split("  GET\t key  ", 2, "[GET][key]");
    check_split("SET k v\r", 3, "[SET][k][v]");
    /* \v and \f separate only before an argument, not inside one. */
    check_split("\vECHO a\vb", 2, "[ECHO][a\vb]");
    check_split("ECHO a\fb", 2, "[ECHO][a\fb]");
    /* Backslashes and lone quotes inside a word's tail are plain bytes. */
    check_split("a\\x41 b\\n", 2, "[a\\x41][b\\n]");
}

static void test_split_quotes(void **state)
{
    (void)state;
    check_split("ECHO \"a b\"", 2, "[ECHO][a b]");
    check_split("ECHO 'a b'", 2, "[ECHO][a b]");
    check_split("ECHO \"\" ''", 3, "[ECHO][][]");
    /* A quote may open in the middle of a word. */
    check_split("ECHO a\"b c\"", 2, "[ECHO][ab c]");
    check_split("ECHO a'b c' d", 3, "[ECHO][ab c][d]");
    /* After the closing quote: any isspace() byte, \v included. */
    check_split("ECHO \"a\"\vb", 3, "[ECHO][a][b]");
    check_split("ECHO \"a\"\tb", 3, "[ECHO][a][b]");
    check_split("\"a\"\"", -1, "");
}

static void test_split_escapes(void **state)
{
    (void)state;
    check_split("ECHO \"a\\x41\\n\"", 2, "[ECHO][aA\n]");
    check_split("\"\\x4a\\x4A\\xff\"", 1, "[JJ\xff]");
    check_split("\"\\n\\r\\t\\b\\a\\\\\\\"\"", 1, "[\n\r\t\b\a\\\"]");
    /* Not two hex digits: the backslash is dropped, 'x' kept. */
    check_split("\"\\x4g\"", 1, "[x4g]");
    check_split("\"\\xZZ\\x4\"", 1, "[xZZx4]");
    /* Other escaped bytes stand for themselves, quotes included. */
    check_split("\"\\q\\'\\ \"", 1, "[q' ]");
    /* Single quotes know only \' . */
    check_split("ECHO 'it\\'s'", 2, "[ECHO][it's]");
    check_split("'a\\nb\\x41\\\"'", 1, "[a\\nb\\x41\\\"]");
}

static void test_split_escape_nul(void **state)
{
    char got[64];

    (void)state;
    /* "\x00" makes a NUL byte, which is then an ordinary byte. */
    assert_int_equal(split(S("\"a\\x00b\""), 16, 16, got, sizeof(got)), 1);
    assert_memory_equal(got, "[a\0b]", 5);
    /* A raw NUL ends the line, as redis-server reads it as a C string. */
    assert_int_equal(split(S("GET a\0b c"), 16, 16, got, sizeof(got)), 2);
    assert_string_equal(got, "[GET][a]");
    assert_int_equal(split(S("GET \"a\0\" c"), 16, 16, got, sizeof(got)), -1);
}

static void test_split_unbalanced(void **state)
{
    static const char *const bad[] = {
        "\"abc",   "'abc",   "ECHO \"a\"b", "ECHO 'a'b",    "\"abc\\\"",
        "\"abc\\", "'\\'",   "'\\\\'",      "ECHO a\"b\"c", "\"\\x4",
        "ECHO \"", "ECHO '", "a\"",         "\"\"\"\"",     "''x",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        check_split(bad[i], -1, "");
    }
}

static void test_split_limits(void **state)
{
    char got[64];

    (void)state;
    /* maxargs: exactly enough, one short, and none with an empty line. */
    assert_int_equal(split(S("a b c"), 3, 16, got, sizeof(got)), 3);
    assert_int_equal(split(S("a b c"), 2, 16, got, sizeof(got)), -2);
    assert_int_equal(split(S("a b c  "), 3, 16, got, sizeof(got)), 3);
    assert_int_equal(split(S("  "), 0, 16, got, sizeof(got)), 0);
    assert_int_equal(split(S("a"), 0, 16, got, sizeof(got)), -2);
    /* outcap: the output needs "abc" + "de" = 5 bytes here. */
    assert_int_equal(split(S("abc de"), 16, 5, got, sizeof(got)), 2);
    assert_string_equal(got, "[abc][de]");
    assert_int_equal(split(S("abc de"), 16, 4, got, sizeof(got)), -2);
    assert_int_equal(split(S("\"\\x41\\x42\""), 16, 2, got, sizeof(got)), 1);
    assert_string_equal(got, "[AB]");
    assert_int_equal(split(S("\"\\x41\\x42\""), 16, 1, got, sizeof(got)), -2);
    assert_int_equal(split(S(" \t "), 16, 0, got, sizeof(got)), 0);
}

/* Inline requests become multibulk for the backends. */
static void test_inline_encode(void **state)
{
    static const struct {
        const char *line;
        enum reqscan_inline st;
        const char *enc;
        int argc;
    } cases[] = {
        {"SET a b", REQSCAN_INLINE_OK, "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n", 3},
        {"  PING  ", REQSCAN_INLINE_OK, "*1\r\n$4\r\nPING\r\n", 1},
        {"ECHO \"x y\"", REQSCAN_INLINE_OK, "*2\r\n$4\r\nECHO\r\n$3\r\nx y\r\n", 2},
        {"ECHO ''", REQSCAN_INLINE_OK, "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", 2},
        {"   ", REQSCAN_INLINE_EMPTY, NULL, 0},
        {"", REQSCAN_INLINE_EMPTY, NULL, 0},
        {"ECHO \"x", REQSCAN_INLINE_UNBALANCED, NULL, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL;
        size_t len = 0;
        int argc = -1;
        enum reqscan_inline st =
            reqscan_inline_encode(cases[i].line, strlen(cases[i].line), &out, &len, &argc);
        assert_int_equal(st, cases[i].st);
        if (cases[i].enc != NULL) {
            assert_int_equal(len, strlen(cases[i].enc));
            assert_memory_equal(out, cases[i].enc, len);
            assert_int_equal(argc, cases[i].argc);
        } else {
            assert_null(out);
        }
        free(out);
    }
}

/* Running out of memory is its own outcome: the client is closed, not told
 * its request is too big or malformed. */
static void test_inline_encode_out_of_memory(void **state)
{
    char *out = NULL;
    size_t len = 0;
    int argc = 0, k;

    (void)state;
    for (k = 0;; k++) {
        enum reqscan_inline st;
        malloc_fail_in = k;
        st = reqscan_inline_encode("SET a b", 7, &out, &len, &argc);
        if (malloc_fail_in == -1 && st != REQSCAN_INLINE_OK) {
            assert_int_equal(st, REQSCAN_INLINE_NOMEM); /* the k-th allocation failed */
            assert_null(out);
            continue;
        }
        malloc_fail_in = -1;
        assert_int_equal(st, REQSCAN_INLINE_OK); /* past its last allocation */
        free(out);
        break;
    }
    assert_true(k >= 2);
}

int main(void)
{
    /* One test per line: easier to read than packed columns. */
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_feeds),
        cmocka_unit_test(test_multibulk_forms),
        cmocka_unit_test(test_multibulk_unfinished),
        cmocka_unit_test(test_inline_forms),
        cmocka_unit_test(test_empty_requests),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_fresh_after_done),
        cmocka_unit_test(test_skipped_bytes),
        cmocka_unit_test(test_count_values),
        cmocka_unit_test(test_bulk_len_values),
        cmocka_unit_test(test_bulk_len_digits),
        cmocka_unit_test(test_max_bulk_len),
        cmocka_unit_test(test_expected_dollar),
        cmocka_unit_test(test_too_big_lines),
        cmocka_unit_test(test_too_big_inline),
        cmocka_unit_test(test_small_inline_limit),
        cmocka_unit_test(test_zero_inline_limit),
        cmocka_unit_test(test_name_capture),
        cmocka_unit_test(test_preauth_limits),
        cmocka_unit_test(test_large_payload),
        cmocka_unit_test(test_error_is_final),
        cmocka_unit_test(test_split_plain),
        cmocka_unit_test(test_split_quotes),
        cmocka_unit_test(test_split_escapes),
        cmocka_unit_test(test_split_escape_nul),
        cmocka_unit_test(test_split_unbalanced),
        cmocka_unit_test(test_split_limits),
        cmocka_unit_test(test_inline_encode),
        cmocka_unit_test(test_inline_encode_out_of_memory),
    };
    /* clang-format on */

    return cmocka_run_group_tests(tests, NULL, NULL);
}
