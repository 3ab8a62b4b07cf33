/*
 * test_reqscan.c - unit tests for the request scanner: every form, every
 * split point, redis-server's quirks and error messages, and inline
 * splitting.
 */
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/reqscan.h"

static const struct reqscan_limits limits = {.max_bulk_len = 512u << 20, .max_inline_len = 65536};

/* What the scanner reported for one request, for comparisons. */
struct outcome {
    int status;
    size_t bytes;
    int64_t argc;
    int kind;
    char name[REQSCAN_NAME_MAX + 1];
    char arg1[REQSCAN_ARG1_MAX + 1];
    bool name_trunc, arg1_trunc;
    size_t eol;
    char err[REQSCAN_ERR_MAX];
};

#define MAX_OUT 64

/* Scan buf fed in pieces of at most step bytes (0 = whole); collect every
 * request's outcome up to the first error. */
static int scan_all(const char *buf, size_t len, size_t step, struct outcome *out)
{
    struct reqscan s;
    size_t pos = 0;
    int n = 0;

    reqscan_init(&s, &limits);
    while (pos < len && n < MAX_OUT) {
        size_t piece = step == 0 || len - pos < step ? len - pos : step;
        size_t used = 0;
        enum reqscan_status st = reqscan_feed(&s, buf + pos, piece, &used);
        assert_true(used <= piece);
        pos += used;
        if (st == REQSCAN_MORE) {
            assert_int_equal(used, piece);
            continue;
        }
        memset(&out[n], 0, sizeof(out[n]));
        out[n].status = st;
        out[n].bytes = s.bytes;
        out[n].argc = s.argc;
        out[n].kind = s.kind;
        memcpy(out[n].name, s.name, s.name_len);
        memcpy(out[n].arg1, s.arg1, s.arg1_len);
        out[n].name_trunc = s.name_trunc;
        out[n].arg1_trunc = s.arg1_trunc;
        out[n].eol = st == REQSCAN_DONE && s.kind == REQSCAN_INLINE ? reqscan_inline_eol(&s) : 0;
        snprintf(out[n].err, sizeof(out[n].err), "%s", s.err);
        n++;
        if (st == REQSCAN_ERROR) {
            break;
        }
    }
    return n;
}

/* Whole, byte by byte, and split once at every position: same outcomes. */
static int scan_every_way(const char *buf, size_t len, struct outcome *out)
{
    struct outcome other[MAX_OUT];
    int n = scan_all(buf, len, 0, out);

    assert_int_equal(scan_all(buf, len, 1, other), n);
    assert_memory_equal(other, out, sizeof(struct outcome) * (size_t)n);
    for (size_t cut = 1; cut < len; cut++) {
        struct reqscan s;
        size_t used, pos = 0;
        int k = 0;
        reqscan_init(&s, &limits);
        /* Two feeds: [0,cut) then the rest, resuming after each DONE. */
        while (pos < len && k < n) {
            size_t end = pos < cut ? cut : len;
            enum reqscan_status st = reqscan_feed(&s, buf + pos, end - pos, &used);
            pos += used;
            if (st != REQSCAN_MORE) {
                assert_int_equal(st, out[k].status);
                assert_int_equal(s.bytes, out[k].bytes);
                assert_int_equal(s.argc, out[k].argc);
                k++;
                if (st == REQSCAN_ERROR) {
                    break;
                }
            }
        }
        assert_int_equal(k, n);
    }
    return n;
}

#define S(lit) lit, sizeof(lit) - 1

static void test_multibulk(void **state)
{
    struct outcome o[MAX_OUT];
    int n;

    (void)state;
    n = scan_every_way(S("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"), o);
    assert_int_equal(n, 1);
    assert_int_equal(o[0].status, REQSCAN_DONE);
    assert_int_equal(o[0].kind, REQSCAN_MULTIBULK);
    assert_int_equal(o[0].argc, 3);
    assert_int_equal(o[0].bytes, 33);
    assert_string_equal(o[0].name, "SET");
    assert_string_equal(o[0].arg1, "key");
    assert_false(o[0].name_trunc);
}

static void test_pipeline(void **state)
{
    char buf[4096];
    size_t len = 0;
    struct outcome o[MAX_OUT];
    int n;

    (void)state;
    for (int i = 0; i < 20; i++) {
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "*2\r\n$3\r\nGET\r\n$%d\r\nk%d\r\n",
                                i < 10 ? 2 : 3, i);
    }
    len += (size_t)snprintf(buf + len, sizeof(buf) - len, "PING\r\n*1\r\n$4\r\nPING\r\n");
    n = scan_every_way(buf, len, o);
    assert_int_equal(n, 22);
    assert_string_equal(o[19].arg1, "k19");
    assert_int_equal(o[20].kind, REQSCAN_INLINE);
    assert_int_equal(o[20].bytes, 6);
    assert_int_equal(o[20].eol, 2);
    assert_string_equal(o[21].name, "PING");
}

static void test_empty_requests(void **state)
{
    struct outcome o[MAX_OUT];
    int n;

    (void)state;
    n = scan_every_way(S("*0\r\n*-1\r\n*-5\r\n\r\n\n  \r\n*1\r\n$0\r\n\r\n"), o);
    assert_int_equal(n, 7);
    assert_int_equal(o[0].argc, 0);
    assert_int_equal(o[1].argc, 0);
    assert_int_equal(o[2].argc, 0);
    assert_int_equal(o[3].kind, REQSCAN_INLINE);
    assert_int_equal(o[3].bytes, 2);
    assert_int_equal(o[4].bytes, 1);
    assert_int_equal(o[4].eol, 1);
    assert_int_equal(o[5].bytes, 4);
    assert_int_equal(o[6].argc, 1);
    assert_int_equal(o[6].bytes, 10);
}

static void test_redis_quirks(void **state)
{
    struct outcome o[MAX_OUT];
    int n;

    (void)state;
    /* The byte after '\r' and the two after a payload are not checked. */
    n = scan_every_way(S("*1\r\n$4\r\nPINGXX*1\rX$4\r\nPING\r\n"), o);
    assert_int_equal(n, 2);
    assert_string_equal(o[0].name, "PING");
    assert_int_equal(o[1].status, REQSCAN_DONE);
    assert_string_equal(o[1].name, "PING");
}

static void expect_error(const char *buf, size_t len, const char *msg)
{
    struct outcome o[MAX_OUT];
    int n = scan_every_way(buf, len, o);

    assert_true(n >= 1);
    assert_int_equal(o[n - 1].status, REQSCAN_ERROR);
    assert_string_equal(o[n - 1].err, msg);
}

static void test_errors(void **state)
{
    char *big;

    (void)state;
    expect_error(S("*3000000000\r\n"), "Protocol error: invalid multibulk length");
    expect_error(S("*2147483648\r\n"), "Protocol error: invalid multibulk length");
    expect_error(S("*01\r\n"), "Protocol error: invalid multibulk length");
    expect_error(S("*-0\r\n"), "Protocol error: invalid multibulk length");
    expect_error(S("*+1\r\n"), "Protocol error: invalid multibulk length");
    expect_error(S("*\r\n"), "Protocol error: invalid multibulk length");
    expect_error(S("*1x\r\n"), "Protocol error: invalid multibulk length");
    expect_error(S("*123456789012345678901\r\n"), "Protocol error: invalid multibulk length");
    expect_error(S("*1\r\n$600000000\r\n"), "Protocol error: invalid bulk length");
    expect_error(S("*1\r\n$-1\r\n"), "Protocol error: invalid bulk length");
    expect_error(S("*1\r\n$\r\n"), "Protocol error: invalid bulk length");
    expect_error(S("*1\r\n$+4\r\n"), "Protocol error: invalid bulk length");
    expect_error(S("*1\r\nx4\r\n"), "Protocol error: expected '$', got 'x'");
    expect_error(S("*1\r\n\rabc\r\n"), "Protocol error: expected '$', got ' '");
    expect_error(S("*1\r\n\0abc\r\n"), "Protocol error: expected '$', got ' '");
    expect_error(S("*2\r\n$4\r\nPING\r\n:5\r\n"), "Protocol error: expected '$', got ':'");
    big = malloc(70001);
    memset(big, '1', 70001);
    big[0] = '*';
    expect_error(big, 70001, "Protocol error: too big mbulk count string");
    memset(big, 'x', 70001);
    expect_error(big, 70001, "Protocol error: too big inline request");
    memcpy(big, "*1\r\n$", 5);
    memset(big + 5, '1', 70001 - 5);
    expect_error(big, 70001, "Protocol error: too big bulk count string");
    free(big);
    big = NULL;
}

static void test_length_limits(void **state)
{
    struct reqscan s;
    struct reqscan_limits small = {.max_bulk_len = 10, .max_inline_len = 16};
    size_t used;
    char line[20];

    (void)state;
    reqscan_init(&s, &small);
    assert_int_equal(reqscan_feed(&s, S("*1\r\n$10\r\n0123456789\r\n"), &used), REQSCAN_DONE);
    reqscan_init(&s, &small);
    assert_int_equal(reqscan_feed(&s, S("*1\r\n$11\r\n"), &used), REQSCAN_ERROR);
    /* A line of exactly the limit is fine; one byte more is not. */
    memset(line, 'a', sizeof(line));
    reqscan_init(&s, &small);
    assert_int_equal(reqscan_feed(&s, line, 16, &used), REQSCAN_MORE);
    reqscan_init(&s, &small);
    assert_int_equal(reqscan_feed(&s, line, 17, &used), REQSCAN_ERROR);
    /* n == 0 */
    reqscan_init(&s, &small);
    assert_int_equal(reqscan_feed(&s, line, 0, &used), REQSCAN_MORE);
    assert_int_equal(used, 0);
}

static void test_capture(void **state)
{
    struct outcome o[MAX_OUT];
    char buf[256];
    int len;

    (void)state;
    len = snprintf(buf, sizeof(buf), "*2\r\n$30\r\n%s\r\n$25\r\n%s\r\n",
                   "abcdefghijklmnopqrstuvwxyz0123", "ABCDEFGHIJKLMNOPQRSTUVWXY");
    scan_every_way(buf, (size_t)len, o);
    assert_true(o[0].name_trunc);
    assert_true(o[0].arg1_trunc);
    assert_memory_equal(o[0].name, "abcdefghijklmnopqrstuvwx", REQSCAN_NAME_MAX);
    assert_memory_equal(o[0].arg1, "ABCDEFGHIJKLMNOPQRSTUVWX", REQSCAN_ARG1_MAX);
    len = snprintf(buf, sizeof(buf), "*1\r\n$24\r\n%s\r\n", "abcdefghijklmnopqrstuvwx");
    scan_every_way(buf, (size_t)len, o);
    assert_false(o[0].name_trunc);
}

static int split(const char *line, const char **argv, size_t *argl, char *out)
{
    return reqscan_split_inline(line, strlen(line), out, 256, argv, argl, 8);
}

static void test_split_inline(void **state)
{
    const char *argv[8];
    size_t argl[8];
    char out[256];

    (void)state;
    assert_int_equal(split("  set   a  b ", argv, argl, out), 3);
    assert_memory_equal(argv[2], "b", 1);
    assert_int_equal(split("", argv, argl, out), 0);
    assert_int_equal(split(" \t ", argv, argl, out), 0);
    assert_int_equal(split("echo \"a\\x41\\n\" 'it\\'s'", argv, argl, out), 3);
    assert_int_equal(argl[1], 3);
    assert_memory_equal(argv[1], "aA\n", 3);
    assert_int_equal(argl[2], 4);
    assert_memory_equal(argv[2], "it's", 4);
    assert_int_equal(split("set \"\" x", argv, argl, out), 3);
    assert_int_equal(argl[1], 0);
    assert_int_equal(split("foo\"bar baz\" q", argv, argl, out), 2);
    assert_memory_equal(argv[0], "foobar baz", 10);
    assert_int_equal(split("set \"a", argv, argl, out), -1);
    assert_int_equal(split("set \"a\"b", argv, argl, out), -1);
    assert_int_equal(split("set 'a", argv, argl, out), -1);
    assert_int_equal(split("set 'a'b", argv, argl, out), -1);
    assert_int_equal(split("set \"a\\\"", argv, argl, out), -1);
    assert_int_equal(split("a b c d e f g h i", argv, argl, out), -2);
    assert_int_equal(reqscan_split_inline("abc", 3, out, 2, argv, argl, 8), -2);
    /* A NUL byte ends the line, as in redis-server. */
    assert_int_equal(reqscan_split_inline("a b\0c d", 7, out, 256, argv, argl, 8), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multibulk),      cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_empty_requests), cmocka_unit_test(test_redis_quirks),
        cmocka_unit_test(test_errors),         cmocka_unit_test(test_length_limits),
        cmocka_unit_test(test_capture),        cmocka_unit_test(test_split_inline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
