/*
 * test_replyscan.c - unit tests for the reply scanner: every RESP2/RESP3
 * type, attributes, streamed strings and aggregates, deep nesting,
 * pipelines, every error, head capture, max_bulk, and replies captured from
 * a real redis-server 7.0. Every input is also fed byte by byte and split at
 * every position, and all the ways of feeding must agree.
 */
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/replyscan.h"

/* What the scanner reported at one point of a stream. */
struct outcome {
    int status;
    size_t end; /* offset in the stream: end of the reply, or the offending byte */
    char type;
    bool is_error;
    bool is_push;
    uint8_t head_len;
    char head[REPLYSCAN_HEAD_MAX];
    uint64_t bytes;
    int64_t count;
    char err[48];
};

#define MAX_OUT   4096
#define SMALL_MAX 4096 /* longest input fed every way */

static void record(const struct replyscan *s, int status, size_t end, struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    o->status = status;
    o->end = end;
    if (status == REPLYSCAN_ERROR) {
        snprintf(o->err, sizeof(o->err), "%s", s->err);
        return;
    }
    if (status == REPLYSCAN_MORE) {
        return;
    }
    o->type = s->type;
    o->is_error = s->is_error;
    o->is_push = s->is_push;
    o->head_len = s->head_len;
    memcpy(o->head, s->head, s->head_len);
    o->bytes = s->bytes;
    o->count = s->count;
}

/* One scan of a buffer in progress. */
struct run {
    struct replyscan s;
    const char *buf;
    size_t pos;   /* bytes fed so far */
    size_t start; /* where the current reply began */
    size_t nout;
    struct outcome *out;
    bool failed;
};

/* Feed buf[pos, stop) in as many calls as the scanner needs, checking the
 * contract of each: used within bounds, MORE takes everything, bytes is the
 * span of the reply. */
static void feed_piece(struct run *r, size_t stop)
{
    while (r->pos < stop && !r->failed) {
        size_t used = 99;
        enum replyscan_status st = replyscan_feed(&r->s, r->buf + r->pos, stop - r->pos, &used);
        assert_true(used <= stop - r->pos);
        if (st == REPLYSCAN_MORE) {
            assert_int_equal(used, stop - r->pos);
            r->pos = stop;
            break;
        }
        r->pos += used;
        assert_true(r->nout < MAX_OUT);
        record(&r->s, st, r->pos, &r->out[r->nout++]);
        r->failed = st == REPLYSCAN_ERROR;
        if (!r->failed) {
            assert_true(used > 0);
            assert_int_equal(r->s.bytes, r->pos - r->start);
            r->start = r->pos;
        }
    }
}

/*
 * Scan buf cut at the given ascending offsets; collect one outcome per
 * reply, then an ERROR or a final MORE (when the input stops inside a
 * reply). Between pieces an empty call must change nothing, and after an
 * error every call must fail.
 */
static size_t scan_cuts(const char *buf, size_t len, const size_t *cuts, size_t ncuts,
                        uint64_t max_bulk, struct outcome *out)
{
    struct run r = {.buf = buf, .out = out};
    size_t used = 99;

    replyscan_init(&r.s, max_bulk);
    for (size_t c = 0; c <= ncuts && !r.failed; c++) {
        feed_piece(&r, c < ncuts ? cuts[c] : len);
        assert_int_equal(replyscan_feed(&r.s, buf, 0, &used),
                         r.failed ? REPLYSCAN_ERROR : REPLYSCAN_MORE);
        assert_int_equal(used, 0);
    }
    if (r.failed) {
        assert_int_equal(replyscan_feed(&r.s, "+OK\r\n", 5, &used), REPLYSCAN_ERROR);
        assert_int_equal(used, 0);
        return r.nout;
    }
    if (r.start < len) {
        assert_true(r.nout < MAX_OUT);
        record(&r.s, REPLYSCAN_MORE, len, &out[r.nout++]);
    }
    return r.nout;
}

static bool same(const struct outcome *a, size_t na, const struct outcome *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof(*a)) == 0);
}

static void assert_same(const struct outcome *a, size_t na, const struct outcome *b, size_t nb)
{
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_memory_equal(&a[i], &b[i], sizeof(a[i]));
    }
}

/* Printable copy of a test input for failure messages. */
static const char *show(const char *buf, size_t len)
{
    static char text[256];
    size_t o = 0;

    for (size_t i = 0; i < len && o + 8 < sizeof(text); i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\r' || c == '\n') {
            o += (size_t)snprintf(text + o, sizeof(text) - o, "%s", c == '\r' ? "\\r" : "\\n");
        } else if (c < 32 || c > 126) {
            o += (size_t)snprintf(text + o, sizeof(text) - o, "\\x%02x", c);
        } else {
            text[o++] = (char)c;
        }
    }
    text[o] = '\0';
    return text;
}

static void report(const char *what, const char *buf, size_t len, const struct outcome *o, size_t n)
{
    if (n == 0) {
        fail_msg("%s: input \"%s\": no outcome", what, show(buf, len));
    }
    o += n - 1;
    fail_msg("%s: input \"%s\": %zu outcomes, last: status %d end %zu type '%c' count %lld "
             "head \"%.*s\" err \"%s\"",
             what, show(buf, len), n, o->status, o->end, o->type ? o->type : '0',
             (long long)o->count, (int)o->head_len, o->head, o->err);
}

/* Scan with the given cuts and compare with the expected outcomes. */
static void scan_compare(const char *what, const char *buf, size_t len, const size_t *cuts,
                         size_t ncuts, uint64_t max_bulk, const struct outcome *want, size_t nwant)
{
    static struct outcome tmp[MAX_OUT];
    size_t m = scan_cuts(buf, len, cuts, ncuts, max_bulk, tmp);

    if (!same(want, nwant, tmp, m)) {
        report(what, buf, len, tmp, m);
    }
}

/* Scan whole, byte by byte, split once at every offset and (short inputs)
 * twice at every pair; all must match the whole scan, left in out. */
static size_t scan_every_way(const char *buf, size_t len, uint64_t max_bulk, struct outcome *out)
{
    static size_t cuts[SMALL_MAX];
    size_t n;

    assert_true(len <= SMALL_MAX);
    n = scan_cuts(buf, len, NULL, 0, max_bulk, out);
    for (size_t i = 1; i < len; i++) {
        cuts[i - 1] = i;
    }
    scan_compare("byte by byte", buf, len, cuts, len > 0 ? len - 1 : 0, max_bulk, out, n);
    for (size_t i = 1; i < len; i++) {
        cuts[0] = i;
        scan_compare("split once", buf, len, cuts, 1, max_bulk, out, n);
        for (size_t j = i + 1; len <= 64 && j < len; j++) {
            cuts[1] = j;
            scan_compare("split twice", buf, len, cuts, 2, max_bulk, out, n);
        }
    }
    return n;
}

/* buf (NUL-terminated) is exactly one complete reply. */
static void expect_reply_n(const char *buf, size_t len, char type, int64_t count, const char *head)
{
    static struct outcome out[MAX_OUT];
    size_t n = scan_every_way(buf, len, 0, out);

    if (n != 1 || out[0].status != REPLYSCAN_DONE || out[0].end != len || out[0].bytes != len ||
        out[0].type != type || out[0].is_error != (type == '-' || type == '!') ||
        out[0].is_push != (type == '>') || out[0].count != count ||
        out[0].head_len != strlen(head) || memcmp(out[0].head, head, out[0].head_len) != 0) {
        report("unexpected result", buf, len, out, n);
    }
}

static void expect_reply(const char *buf, char type, int64_t count, const char *head)
{
    expect_reply_n(buf, strlen(buf), type, count, head);
}

/* buf is malformed, and its last byte is the first one that shows it. */
static void expect_error_max(const char *buf, uint64_t max_bulk, const char *why)
{
    static struct outcome out[MAX_OUT];
    size_t len = strlen(buf);
    size_t n = scan_every_way(buf, len, max_bulk, out);

    if (n == 0 || out[n - 1].status != REPLYSCAN_ERROR || out[n - 1].end != len - 1 ||
        strstr(out[n - 1].err, why) == NULL) {
        report(why, buf, len, out, n);
    }
    /* and without its last byte it is still acceptable so far */
    n = scan_cuts(buf, len - 1, NULL, 0, max_bulk, out);
    assert_true(n == 0 || out[n - 1].status != REPLYSCAN_ERROR);
}

static void expect_error(const char *buf, const char *why)
{
    expect_error_max(buf, 0, why);
}

/* buf ends inside a valid reply. */
static void expect_more(const char *buf, uint64_t max_bulk)
{
    static struct outcome out[MAX_OUT];
    size_t len = strlen(buf);
    size_t n = scan_every_way(buf, len, max_bulk, out);

    if (n == 0 || out[n - 1].status != REPLYSCAN_MORE) {
        report("unfinished", buf, len, out, n);
    }
}

/* Feed a large buffer whole and then in pieces of step bytes. */
static void scan_large(const char *buf, size_t len, size_t step, struct outcome *out, size_t *n)
{
    struct outcome *tmp = calloc(MAX_OUT, sizeof(*tmp));
    size_t ncuts = len / step;
    size_t *cuts = calloc(ncuts + 1, sizeof(*cuts));
    size_t m, k = 0;

    assert_non_null(tmp);
    assert_non_null(cuts);
    *n = scan_cuts(buf, len, NULL, 0, 0, out);
    for (size_t at = step; at < len; at += step) {
        cuts[k++] = at;
    }
    m = scan_cuts(buf, len, cuts, k, 0, tmp);
    assert_same(out, *n, tmp, m);
    free(cuts);
    free(tmp);
}

static void test_simple_types(void **state)
{
    (void)state;
    expect_reply("+OK\r\n", '+', 0, "OK");
    expect_reply("+\r\n", '+', 0, "");
    expect_reply("-ERR unknown command\r\n", '-', 0, "ERR unknown command");
    expect_reply(":0\r\n", ':', 0, "0");
    expect_reply(":-12345\r\n", ':', 0, "-12345");
    expect_reply(",3.14\r\n", ',', 0, "3.14");
    expect_reply(",-inf\r\n", ',', 0, "-inf");
    expect_reply("#t\r\n", '#', 0, "t");
    expect_reply("#f\r\n", '#', 0, "f");
    expect_reply("(3492890328409238509324850943850943825024385\r\n", '(', 0,
                 "34928903284092385093248509438509");
    expect_reply("_\r\n", '_', -1, "");
    /* line content is not interpreted, only framed */
    expect_reply("+a\nb\r\n", '+', 0, "a\nb");
}

static void test_bulk_types(void **state)
{
    (void)state;
    expect_reply("$5\r\nhello\r\n", '$', 5, "");
    expect_reply("$0\r\n\r\n", '$', 0, "");
    expect_reply("$-1\r\n", '$', -1, "");
    expect_reply("$4\r\n\r\n\r\n\r\n", '$', 4, ""); /* CRLF inside a payload */
    expect_reply("$3\r\n$3\r\r\n", '$', 3, "");
    expect_reply("!21\r\nSYNTAX invalid syntax\r\n", '!', 21, "SYNTAX invalid syntax");
    expect_reply("!0\r\n\r\n", '!', 0, "");
    expect_reply("=15\r\ntxt:Some string\r\n", '=', 15, "");
    expect_reply_n("$3\r\na\0b\r\n", 9, '$', 3, "");
}

static void test_aggregates(void **state)
{
    (void)state;
    expect_reply("*0\r\n", '*', 0, "");
    expect_reply("*-1\r\n", '*', -1, "");
    expect_reply("*2\r\n$3\r\nfoo\r\n:1\r\n", '*', 2, "");
    expect_reply("*3\r\n+a\r\n-b\r\n_\r\n", '*', 3, "");
    expect_reply("*2\r\n*-1\r\n$-1\r\n", '*', 2, "");
    expect_reply("%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n", '%', 2, "");
    expect_reply("%0\r\n", '%', 0, "");
    expect_reply("~3\r\n+a\r\n+b\r\n+c\r\n", '~', 3, "");
    expect_reply("~0\r\n", '~', 0, "");
    expect_reply(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", '>', 3, "");
    expect_reply("*1\r\n*1\r\n*0\r\n", '*', 1, "");
    expect_reply("%1\r\n*2\r\n:1\r\n:2\r\n~1\r\n%1\r\n+k\r\n+v\r\n", '%', 1, "");
    expect_reply("*3\r\n*0\r\n%0\r\n~1\r\n*0\r\n", '*', 3, "");
}

static void test_nested_mixed(void **state)
{
    (void)state;
    expect_reply("*4\r\n:1\r\n*2\r\n:2\r\n*2\r\n:3\r\n$1\r\nx\r\n-E boom\r\n%1\r\n#t\r\n=7\r\n"
                 "txt:abc\r\n",
                 '*', 4, "");
    expect_reply("~2\r\n!3\r\nerr\r\n(12\r\n", '~', 2, "");
    /* an element that looks like a top-level error is not one */
    expect_reply("*1\r\n-ERR inner\r\n", '*', 1, "");
}

static void test_deep_nesting(void **state)
{
    const size_t depth = 100000;
    size_t len = depth * 4 + 4, n;
    char *buf = malloc(len + 1);
    struct outcome *out = calloc(MAX_OUT, sizeof(*out));

    (void)state;
    assert_non_null(buf);
    assert_non_null(out);
    for (size_t i = 0; i < depth; i++) {
        memcpy(buf + i * 4, "*1\r\n", 4);
    }
    memcpy(buf + depth * 4, ":7\r\n", 5);
    scan_large(buf, len, 1, out, &n);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].status, REPLYSCAN_DONE);
    assert_int_equal(out[0].bytes, len);
    assert_int_equal(out[0].type, '*');
    assert_int_equal(out[0].count, 1);
    scan_large(buf, len, 4093, out, &n);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].bytes, len);
    /* without the innermost element it is unfinished, not an error */
    n = scan_cuts(buf, len - 4, NULL, 0, 0, out);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].status, REPLYSCAN_MORE);
    free(buf);

    /* maps nest just as deep: each value is an array holding the next map */
    len = depth * 12 + 4;
    buf = malloc(len + 1);
    assert_non_null(buf);
    for (size_t i = 0; i < depth; i++) {
        memcpy(buf + i * 12, "%1\r\n+k\r\n*1\r\n", 12);
    }
    memcpy(buf + depth * 12, ":7\r\n", 5);
    scan_large(buf, len, 1, out, &n);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].status, REPLYSCAN_DONE);
    assert_int_equal(out[0].type, '%');
    assert_int_equal(out[0].bytes, len);
    free(buf);
    free(out);
}

static void test_deep_attributes(void **state)
{
    const size_t depth = 100000;
    size_t len = depth * 16 + 4, n;
    char *buf = malloc(len + 1);
    struct outcome *out = calloc(MAX_OUT, sizeof(*out));

    (void)state;
    assert_non_null(buf);
    assert_non_null(out);
    /* each level: an attribute, then an array of one holding the next level */
    for (size_t i = 0; i < depth; i++) {
        memcpy(buf + i * 16, "|1\r\n+k\r\n+v\r\n*1\r\n", 16);
    }
    memcpy(buf + depth * 16, ":7\r\n", 5);
    scan_large(buf, len, 1, out, &n);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].status, REPLYSCAN_DONE);
    assert_int_equal(out[0].type, '*');
    assert_int_equal(out[0].count, 1);
    assert_int_equal(out[0].bytes, len);
    free(buf);
    free(out);
}

static void test_attributes(void **state)
{
    (void)state;
    /* the reply is the element after the attribute */
    expect_reply("|1\r\n+k\r\n+v\r\n:5\r\n", ':', 0, "5");
    expect_reply("|0\r\n+OK\r\n", '+', 0, "OK");
    expect_reply("|1\r\n+key\r\n+val\r\n-ERR after attribute\r\n", '-', 0, "ERR after attribute");
    expect_reply("|1\r\n+k\r\n+v\r\n>2\r\n+a\r\n+b\r\n", '>', 2, "");
    expect_reply("|1\r\n+k\r\n+v\r\n!3\r\nERR\r\n", '!', 3, "ERR");
    expect_reply("|1\r\n+k\r\n+v\r\n$-1\r\n", '$', -1, "");
    expect_reply("|1\r\n+k\r\n+v\r\n*?\r\n:1\r\n.\r\n", '*', -2, "");
    /* aggregate values, attributes in attributes, several in a row */
    expect_reply("|2\r\n+a\r\n*2\r\n:1\r\n:2\r\n+b\r\n%1\r\n+x\r\n+y\r\n#f\r\n", '#', 0, "f");
    expect_reply("|1\r\n|1\r\n+m\r\n+n\r\n+k\r\n+v\r\n,1.5\r\n", ',', 0, "1.5");
    expect_reply("|1\r\n+k\r\n|1\r\n+m\r\n+n\r\n+v\r\n(7\r\n", '(', 0, "7");
    expect_reply("|1\r\n+a\r\n+b\r\n|1\r\n+c\r\n+d\r\n_\r\n", '_', -1, "");
    /* attributes inside aggregates annotate an element and are not one */
    expect_reply("*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n", '*', 2, "");
    expect_reply("*1\r\n:1\r\n", '*', 1, "");
    expect_reply("%1\r\n|1\r\n+a\r\n+b\r\n+k\r\n|1\r\n+c\r\n+d\r\n+v\r\n", '%', 1, "");
    expect_reply("~1\r\n*1\r\n|1\r\n+a\r\n*1\r\n+b\r\n+x\r\n", '~', 1, "");
    /* an attribute alone is not a reply */
    expect_more("|1\r\n+k\r\n+v\r\n", 0);
    expect_more("*1\r\n|1\r\n+k\r\n+v\r\n", 0);
}

static void test_streamed_strings(void **state)
{
    (void)state;
    expect_reply("$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n", '$', -2, "");
    expect_reply("$?\r\n;0\r\n", '$', -2, "");
    expect_reply("$?\r\n;2\r\n\r\n\r\n;0\r\n", '$', -2, "");
    expect_reply("*2\r\n$?\r\n;1\r\na\r\n;0\r\n$?\r\n;0\r\n", '*', 2, "");
    expect_more("$?\r\n;3\r\nabc\r\n", 0);
}

static void test_streamed_aggregates(void **state)
{
    char buf[512];
    size_t len = 0;

    (void)state;
    expect_reply("*?\r\n:1\r\n:2\r\n.\r\n", '*', -2, "");
    expect_reply("*?\r\n.\r\n", '*', -2, "");
    expect_reply("%?\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n.\r\n", '%', -2, "");
    expect_reply("%?\r\n.\r\n", '%', -2, "");
    expect_reply("~?\r\n+a\r\n+b\r\n.\r\n", '~', -2, "");
    expect_reply(">?\r\n+message\r\n+ch\r\n.\r\n", '>', -2, "");
    /* streamed in counted in streamed, with a streamed string */
    expect_reply("*?\r\n*2\r\n~?\r\n:1\r\n.\r\n$?\r\n;1\r\nx\r\n;0\r\n.\r\n", '*', -2, "");
    expect_reply("*2\r\n*?\r\n.\r\n*?\r\n*?\r\n.\r\n.\r\n", '*', 2, "");
    expect_reply("%?\r\n*?\r\n.\r\n%?\r\n.\r\n.\r\n", '%', -2, "");
    expect_reply("*?\r\n|1\r\n+a\r\n+b\r\n:1\r\n.\r\n", '*', -2, "");
    expect_reply("%?\r\n|1\r\n+a\r\n+b\r\n+k\r\n+v\r\n.\r\n", '%', -2, "");
    expect_more("*?\r\n:1\r\n", 0);
    expect_more("*1\r\n*?\r\n.\r\n*?\r\n", 0); /* MORE: the second is a new reply */

    /* REPLYSCAN_DEPTH_MAX levels are fine */
    for (int i = 0; i < REPLYSCAN_DEPTH_MAX; i++) {
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s", i % 2 ? "~?\r\n" : "*?\r\n");
    }
    len += (size_t)snprintf(buf + len, sizeof(buf) - len, ":1\r\n");
    for (int i = 0; i < REPLYSCAN_DEPTH_MAX; i++) {
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, ".\r\n");
    }
    expect_reply_n(buf, len, '*', -2, "");
}

static void test_pipeline(void **state)
{
    static const char *const parts[] = {
        "+OK\r\n",
        "-ERR x\r\n",
        ":42\r\n",
        "$3\r\nbar\r\n",
        "$-1\r\n",
        "*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
        "%1\r\n+k\r\n+v\r\n",
        "|1\r\n+a\r\n+b\r\n#t\r\n",
        ">2\r\n+invalidate\r\n*1\r\n$3\r\nfoo\r\n",
        "$?\r\n;1\r\nx\r\n;0\r\n",
        "*?\r\n:1\r\n.\r\n",
        "_\r\n",
        "!3\r\nERR\r\n",
        "*0\r\n",
    };
    const size_t nparts = sizeof(parts) / sizeof(parts[0]);
    const size_t nreplies = 2000;
    size_t cap = nreplies * 40, len = 0, n;
    char *buf = malloc(cap);
    struct outcome *out = calloc(MAX_OUT, sizeof(*out));
    struct outcome *tmp = calloc(MAX_OUT, sizeof(*tmp));
    struct outcome one[2];
    size_t *cuts = calloc(nreplies * 40, sizeof(*cuts));
    size_t ncuts = 0;
    uint32_t rnd = 12345;

    (void)state;
    assert_non_null(buf);
    assert_non_null(out);
    assert_non_null(tmp);
    assert_non_null(cuts);
    for (size_t i = 0; i < nreplies; i++) {
        const char *part = parts[(i * 7) % nparts];
        size_t plen = strlen(part);
        assert_true(len + plen <= cap);
        memcpy(buf + len, part, plen);
        len += plen;
    }
    n = scan_cuts(buf, len, NULL, 0, 0, out);
    assert_int_equal(n, nreplies);
    for (size_t i = 0, at = 0; i < nreplies; i++) {
        const char *part = parts[(i * 7) % nparts];
        size_t plen = strlen(part);
        assert_int_equal(scan_cuts(part, plen, NULL, 0, 0, one), 1);
        at += plen;
        one[0].end = at;
        assert_memory_equal(&out[i], &one[0], sizeof(one[0]));
    }
    /* byte by byte, and at pseudo-random cuts */
    for (size_t i = 1; i < len; i++) {
        cuts[i - 1] = i;
    }
    assert_same(out, n, tmp, scan_cuts(buf, len, cuts, len - 1, 0, tmp));
    for (size_t at = 0;;) {
        rnd = rnd * 1103515245u + 12345u;
        at += 1 + (rnd >> 16) % 23;
        if (at >= len) {
            break;
        }
        cuts[ncuts++] = at;
    }
    assert_same(out, n, tmp, scan_cuts(buf, len, cuts, ncuts, 0, tmp));
    free(cuts);
    free(tmp);
    free(out);
    free(buf);
}

static void test_results_reset(void **state)
{
    static const char buf[] = "-ERR first\r\n:1\r\n$3\r\nabc\r\n|1\r\n+k\r\n+v\r\n+OK\r\n";
    struct outcome out[8];
    size_t n;

    (void)state;
    n = scan_every_way(buf, sizeof(buf) - 1, 0, out);
    assert_int_equal(n, 4);
    assert_true(out[0].is_error);
    assert_int_equal(out[0].head_len, 9);
    assert_false(out[1].is_error);
    assert_int_equal(out[1].type, ':');
    assert_int_equal(out[1].head_len, 1);
    assert_int_equal(out[1].bytes, 4);
    assert_int_equal(out[2].type, '$');
    assert_int_equal(out[2].head_len, 0);
    assert_int_equal(out[2].count, 3);
    assert_int_equal(out[3].type, '+');
    assert_int_equal(out[3].bytes, 17);
    assert_int_equal(out[3].count, 0);
    assert_memory_equal(out[3].head, "OK", 2);
}

static void test_head_capture(void **state)
{
    char line[128], want[REPLYSCAN_HEAD_MAX + 1];
    struct replyscan s;
    size_t used;

    (void)state;
    /* truncated to REPLYSCAN_HEAD_MAX bytes */
    memset(want, 'x', REPLYSCAN_HEAD_MAX);
    want[REPLYSCAN_HEAD_MAX] = '\0';
    snprintf(line, sizeof(line), "+%s%s\r\n", want, "yyyyyyyy");
    expect_reply(line, '+', 0, want);
    snprintf(line, sizeof(line), "-%s\r\n", want);
    expect_reply(line, '-', 0, want);
    snprintf(line, sizeof(line), "!%d\r\n%syyyy\r\n", REPLYSCAN_HEAD_MAX + 4, want);
    expect_reply(line, '!', REPLYSCAN_HEAD_MAX + 4, want);
    expect_reply("-READONLY You can't write against a read only replica.\r\n", '-', 0,
                 "READONLY You can't write against");
    /* only the top-level element, never an attribute or a child */
    expect_reply("|1\r\n+attrkey\r\n+attrval\r\n-MOVED 3999 127.0.0.1:6381\r\n", '-', 0,
                 "MOVED 3999 127.0.0.1:6381");
    expect_reply("*2\r\n+inner\r\n!3\r\nERR\r\n", '*', 2, "");
    expect_reply("$5\r\nhello\r\n", '$', 5, "");
    expect_reply("=7\r\ntxt:abc\r\n", '=', 7, "");
    /* a head split over several calls */
    replyscan_init(&s, 0);
    assert_int_equal(replyscan_feed(&s, "-LOA", 4, &used), REPLYSCAN_MORE);
    assert_int_equal(replyscan_feed(&s, "DING Redis is loading", 21, &used), REPLYSCAN_MORE);
    assert_int_equal(replyscan_feed(&s, "\r", 1, &used), REPLYSCAN_MORE);
    assert_int_equal(replyscan_feed(&s, "\n+OK\r\n", 6, &used), REPLYSCAN_DONE);
    assert_int_equal(used, 1);
    assert_int_equal(s.head_len, 24);
    assert_memory_equal(s.head, "LOADING Redis is loading", 24);
    assert_true(s.is_error);
}

static void test_max_bulk(void **state)
{
    static const char ok[] = "$10\r\n0123456789\r\n!10\r\n0123456789\r\n=10\r\ntxt:456789\r\n";
    struct outcome out[4];

    (void)state;
    assert_int_equal(scan_every_way(ok, sizeof(ok) - 1, 10, out), 3);
    assert_int_equal(out[2].status, REPLYSCAN_DONE);
    expect_error_max("$11", 10, "max_bulk");
    expect_error_max("!11", 10, "max_bulk");
    expect_error_max("=100", 10, "max_bulk");
    expect_error_max("*1\r\n$11", 10, "max_bulk");
    /* a streamed string is held to max_bulk as a whole */
    assert_int_equal(scan_every_way("$?\r\n;5\r\naaaaa\r\n;5\r\nbbbbb\r\n;0\r\n", 30, 10, out), 1);
    assert_int_equal(out[0].status, REPLYSCAN_DONE);
    expect_error_max("$?\r\n;5\r\naaaaa\r\n;6", 10, "max_bulk");
    expect_error_max("$?\r\n;5\r\naaaaa\r\n;5\r\nbbbbb\r\n;1", 10, "max_bulk");
    /* 0 means 512 MB */
    expect_more("$536870912\r\n", 0);
    expect_error("$536870913", "max_bulk");
    /* counts are not bulks */
    expect_more("*536870913\r\n", 10);
    expect_more("*9223372036854775807\r\n", 0);
    /* huge limits stop at the largest count the result can carry */
    expect_more("$9223372036854775807\r\n", UINT64_MAX);
    expect_error_max("$9223372036854775808", UINT64_MAX, "max_bulk");
}

static void test_long_lines(void **state)
{
    size_t len = REPLYSCAN_LINE_MAX + 4, n;
    char *buf = malloc(len);
    struct outcome *out = calloc(MAX_OUT, sizeof(*out));

    (void)state;
    assert_non_null(buf);
    assert_non_null(out);
    /* exactly REPLYSCAN_LINE_MAX bytes of content is fine */
    buf[0] = '+';
    memset(buf + 1, 'a', REPLYSCAN_LINE_MAX);
    memcpy(buf + 1 + REPLYSCAN_LINE_MAX, "\r\n", 2);
    scan_large(buf, REPLYSCAN_LINE_MAX + 3, 65536, out, &n);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].status, REPLYSCAN_DONE);
    assert_int_equal(out[0].head_len, REPLYSCAN_HEAD_MAX);
    /* one more byte without a CR is not */
    buf[0] = '-';
    buf[1 + REPLYSCAN_LINE_MAX] = 'a';
    scan_large(buf, REPLYSCAN_LINE_MAX + 2, 65521, out, &n);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].status, REPLYSCAN_ERROR);
    assert_int_equal(out[0].end, REPLYSCAN_LINE_MAX + 1);
    assert_non_null(strstr(out[0].err, "too long"));
    /* but one byte short of that is only unfinished */
    n = scan_cuts(buf, REPLYSCAN_LINE_MAX + 1, NULL, 0, 0, out);
    assert_int_equal(out[0].status, REPLYSCAN_MORE);
    free(out);
    free(buf);
}

static void test_errors_framing(void **state)
{
    (void)state;
    expect_error("@", "unknown type");
    expect_error("\r", "unknown type");
    expect_error("\n", "unknown type");
    expect_error(" ", "unknown type");
    expect_error(";", "unknown type");
    expect_error("+OK\r\n\r", "unknown type");
    expect_error("*2\r\n:1\r\nx", "unknown type");
    expect_error("+OK\rx", "LF");
    expect_error("+OK\r\r", "LF");
    expect_error(":1\r:", "LF");
    expect_error("$3\r\nabcX", "CR after bulk");
    expect_error("$3\r\nabc\n", "CR after bulk");
    expect_error("$3\r\nabc\rX", "LF");
    expect_error("$0\r\n\n", "CR after bulk");
    expect_error("$3\rX", "LF");
    expect_error("*1\r+", "LF");
    expect_error("_x", "CR");
    expect_error("_\rx", "LF");
    expect_error("#x", "boolean");
    expect_error("#T", "boolean");
    expect_error("#\r", "boolean");
    expect_error("#tt", "CR");
    expect_error("#t\r\r", "LF");
    expect_error("$?\r\n+", "';'");
    expect_error("$?\r\n;3\r\nabc\r\n$", "';'");
    expect_error("$?\r\n;3\r\nabcd", "CR after bulk");
}

static void test_errors_numbers(void **state)
{
    (void)state;
    expect_error("$\r", "invalid length");
    expect_error("*\r", "invalid length");
    expect_error("$+", "invalid length");
    expect_error("*+", "invalid length");
    expect_error("$ ", "invalid length");
    expect_error("$1 ", "invalid length");
    expect_error("$1a", "invalid length");
    expect_error("$01", "invalid length");
    expect_error("*00", "invalid length");
    expect_error("%00", "invalid length");
    expect_error("$-\r", "invalid length");
    expect_error("$-0", "invalid length");
    expect_error("*-2", "invalid length");
    expect_error("*-10", "invalid length");
    expect_error("$-11", "invalid length");
    expect_error("$-1x", "invalid length");
    expect_error("$--", "invalid length");
    expect_error("*1-", "invalid length");
    /* -1 only where RESP has a null */
    expect_error("%-", "invalid length");
    expect_error("~-", "invalid length");
    expect_error(">-", "invalid length");
    expect_error("!-", "invalid length");
    expect_error("=-", "invalid length");
    expect_error("|-", "invalid length");
    expect_error("$?\r\n;-", "invalid length");
    /* ? only where RESP streams */
    expect_error("!?", "invalid length");
    expect_error("=?", "invalid length");
    expect_error("|?", "invalid length");
    expect_error("$?\r\n;?", "invalid length");
    expect_error("$??", "invalid length");
    expect_error("$?1", "invalid length");
    expect_error("*1?", "invalid length");
    expect_error("*-?", "invalid length");
    expect_error("*?-", "invalid length");
    /* overflow */
    expect_error("*9223372036854775808", "out of range");
    expect_error("*9999999999999999999", "out of range");
    expect_error("%92233720368547758070", "out of range");
    expect_error("$5368709120", "max_bulk");
    expect_error("*9223372036854775807\r\n*9223372036854775807\r\n*9223372036854775807\r\n",
                 "too many");
}

static void test_errors_structure(void **state)
{
    char buf[512];
    size_t len = 0;

    (void)state;
    expect_error(".", "end marker");
    expect_error("*1\r\n.", "end marker");
    expect_error("*?\r\n*1\r\n.", "end marker");
    expect_error("%?\r\n+a\r\n.", "end marker");
    expect_error("*?\r\n|1\r\n+a\r\n+b\r\n.", "end marker");
    expect_error("|1\r\n.", "end marker");
    expect_error("*?\r\n.x", "CR");
    expect_error("*?\r\n.\r\r", "LF");
    expect_error("*?\r\n:1\r\n.\r\n.", "end marker");
    /* streamed aggregates nest at most REPLYSCAN_DEPTH_MAX deep */
    for (int i = 0; i <= REPLYSCAN_DEPTH_MAX; i++) {
        len +=
            (size_t)snprintf(buf + len, sizeof(buf) - len, "%s", i % 3 ? "%?\r\n+k\r\n" : "*?\r\n");
    }
    buf[len - 4] = '\0'; /* end at the LF of the last header */
    expect_error(buf, "too deep");
}

/* buf is malformed at offset at, with the bytes after it all there. */
static void expect_error_at(const char *buf, size_t at, uint64_t max_bulk, const char *why)
{
    static struct outcome out[MAX_OUT];
    size_t len = strlen(buf);
    size_t n = scan_every_way(buf, len, max_bulk, out);

    if (n == 0 || out[n - 1].status != REPLYSCAN_ERROR || out[n - 1].end != at ||
        strstr(out[n - 1].err, why) == NULL) {
        report(why, buf, len, out, n);
    }
}

/* The rows of an aggregate that are whole in the buffer are taken in one
 * pass: the results, the end of each reply and every error must be the same
 * as when they arrive a byte at a time. */
static void test_aggregate_rows(void **state)
{
    static const char two[] = "*2\r\n$1\r\na\r\n+b\r\n*1\r\n:7\r\n";
    static struct outcome out[4];
    char buf[2048];
    size_t len;

    (void)state;
    len = (size_t)snprintf(buf, sizeof(buf), "*100\r\n");
    for (int i = 0; i < 100; i++) {
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "$%d\r\n%.*s\r\n", i % 12, i % 12,
                                "0123456789ab");
    }
    expect_reply_n(buf, len, '*', 100, "");
    expect_reply("*5\r\n$0\r\n\r\n$-1\r\n:12\r\n-ERR x\r\n+\r\n", '*', 5, "");
    expect_reply("%2\r\n$1\r\nk\r\n$1\r\nv\r\n+k2\r\n*2\r\n:1\r\n$2\r\nab\r\n", '%', 2, "");
    expect_reply("*?\r\n$1\r\na\r\n%?\r\n$1\r\nk\r\n$1\r\nv\r\n.\r\n.\r\n", '*', -2, "");
    expect_reply(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$10\r\n0123456789\r\n", '>', 3, "");
    /* rows stop where their reply ends */
    assert_int_equal(scan_every_way(two, sizeof(two) - 1, 0, out), 2);
    assert_int_equal(out[0].end, 15);
    assert_int_equal(out[1].end, sizeof(two) - 1);
    assert_int_equal(out[1].count, 1);
    /* malformed rows fail where the byte-wise scan fails */
    expect_error_at("*3\r\n$3\r\nabc\r\n$01\r\nx\r\n:1\r\n", 15, 0, "invalid length");
    expect_error_at("*2\r\n$3\r\nabcX\r\n:1\r\n", 11, 0, "CR after bulk");
    expect_error_at("*2\r\n$3\r\nabc\rX:1\r\n", 12, 0, "LF");
    expect_error_at("*2\r\n$11\r\n0123456789a\r\n:1\r\n", 6, 10, "max_bulk");
    expect_error_at("*2\r\n+ok\rX\r\n:1\r\n", 8, 0, "LF");
    expect_error_at("*2\r\n:1\r\n$1x\r\n", 10, 0, "invalid length");
    /* lengths of 19 digits are left to the careful path, which takes them */
    expect_more("*1\r\n$1000000000000000000\r\n", UINT64_MAX);
}

static void test_empty_and_sticky(void **state)
{
    struct replyscan s;
    size_t used = 7;

    (void)state;
    replyscan_init(&s, 0);
    assert_int_equal(replyscan_feed(&s, NULL, 0, &used), REPLYSCAN_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(replyscan_feed(&s, "+OK\r\n+X", 7, &used), REPLYSCAN_DONE);
    assert_int_equal(used, 5);
    /* an empty call keeps the results of the last reply */
    assert_int_equal(replyscan_feed(&s, "", 0, &used), REPLYSCAN_MORE);
    assert_int_equal(s.type, '+');
    assert_int_equal(s.head_len, 2);
    assert_int_equal(s.bytes, 5);
    assert_int_equal(replyscan_feed(&s, "?", 1, &used), REPLYSCAN_ERROR);
    assert_int_equal(used, 0);
    assert_true(s.err[0] != '\0');
    assert_int_equal(replyscan_feed(&s, "+OK\r\n", 5, &used), REPLYSCAN_ERROR);
    assert_int_equal(replyscan_feed(&s, "", 0, &used), REPLYSCAN_ERROR);
    /* init starts over */
    replyscan_init(&s, 0);
    assert_int_equal(replyscan_feed(&s, "+OK\r\n", 5, &used), REPLYSCAN_DONE);
}

/* Raw replies captured from redis-server 7.0.15 (RESP3 after HELLO 3). */
static void test_real_redis(void **state)
{
    (void)state;
    expect_reply(
        "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\n"
        "proto\r\n:3\r\n$2\r\nid\r\n:3\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n"
        "$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n",
        '%', 7, "");
    expect_reply(
        "*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\n"
        "proto\r\n:2\r\n$2\r\nid\r\n:4\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n"
        "$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n",
        '*', 14, "");
    /* DEBUG PROTOCOL attrib|bignum|verbatim|double|true|false|map|set|null */
    expect_reply("|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n$39\r\nSome real "
                 "reply following the attribute\r\n",
                 '$', 39, "");
    expect_reply("(1234567999999999999999999999999999999\r\n", '(', 0,
                 "12345679999999999999999999999999");
    expect_reply("=29\r\ntxt:This is a verbatim\nstring\r\n", '=', 29, "");
    expect_reply(",3.141\r\n", ',', 0, "3.141");
    expect_reply("#t\r\n", '#', 0, "t");
    expect_reply("#f\r\n", '#', 0, "f");
    expect_reply("%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n", '%', 3, "");
    expect_reply("~3\r\n:0\r\n:1\r\n:2\r\n", '~', 3, "");
    expect_reply("_\r\n", '_', -1, "");
    expect_reply("~0\r\n", '~', 0, "");
    /* CLIENT TRACKING on, then a write from another client */
    expect_reply(">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nfoo\r\n", '>', 2, "");
    expect_reply(">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n", '>', 3, "");
    expect_reply("%2\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n", '%', 2, "");
    expect_reply("-ERR value is not an integer or out of range\r\n", '-', 0,
                 "ERR value is not an integer or o");
    /* RESP2: nulls, EXEC with an error inside, EVAL with nested tables */
    expect_reply("$-1\r\n", '$', -1, "");
    expect_reply("*-1\r\n", '*', -1, "");
    expect_reply("*2\r\n+OK\r\n-ERR value is not an integer or out of range\r\n", '*', 2, "");
    expect_reply("*3\r\n:1\r\n*2\r\n:2\r\n*2\r\n:3\r\n$1\r\nx\r\n-E boom\r\n", '*', 3, "");
}

static void test_real_redis_pipeline(void **state)
{
    static const char buf[] =
        "+PONG\r\n$2\r\nhi\r\n_\r\n:1\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\n"
        "foo\r\n+OK\r\n";
    struct outcome out[8];

    (void)state;
    assert_int_equal(scan_every_way(buf, sizeof(buf) - 1, 0, out), 6);
    assert_int_equal(out[0].type, '+');
    assert_int_equal(out[1].type, '$');
    assert_int_equal(out[2].type, '_');
    assert_int_equal(out[3].type, ':');
    assert_true(out[4].is_push);
    assert_int_equal(out[4].bytes, 34);
    assert_int_equal(out[5].end, sizeof(buf) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_types),
        cmocka_unit_test(test_bulk_types),
        cmocka_unit_test(test_aggregates),
        cmocka_unit_test(test_nested_mixed),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_deep_attributes),
        cmocka_unit_test(test_attributes),
        cmocka_unit_test(test_streamed_strings),
        cmocka_unit_test(test_streamed_aggregates),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_results_reset),
        cmocka_unit_test(test_head_capture),
        cmocka_unit_test(test_max_bulk),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_errors_framing),
        cmocka_unit_test(test_errors_numbers),
        cmocka_unit_test(test_errors_structure),
        cmocka_unit_test(test_aggregate_rows),
        cmocka_unit_test(test_empty_and_sticky),
        cmocka_unit_test(test_real_redis),
        cmocka_unit_test(test_real_redis_pipeline),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
