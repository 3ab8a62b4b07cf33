/*
 * test_chunk.c - unit tests for the chunk pool and span lists.
 */
#include "unit.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/transport.h"
#include "proxy/chunk.h"

static void test_pool_reuse(void **state)
{
    struct chunk_pool p;
    struct chunk *a, *b;

    (void)state;
    chunk_pool_init(&p, 1);
    a = chunk_get(&p);
    assert_non_null(a);
    assert_int_equal(a->refs, 1);
    assert_int_equal(p.live, 1);
    chunk_unref(a);
    assert_int_equal(p.live, 0);
    assert_int_equal(p.nfree, 1);
    b = chunk_get(&p);
    assert_ptr_equal(a, b); /* recycled, not reallocated */
    assert_int_equal(b->len, 0);
    a = chunk_get(&p);
    chunk_unref(a);
    chunk_unref(b); /* pool keeps one, frees the other */
    assert_int_equal(p.nfree, 1);
    chunk_pool_drain(&p);
    assert_int_equal(p.nfree, 0);
}

static void test_spans_merge_and_refs(void **state)
{
    struct chunk_pool p;
    struct chunk *a, *b;
    struct spans s;

    (void)state;
    chunk_pool_init(&p, 8);
    a = chunk_get(&p);
    b = chunk_get(&p);
    memcpy(a->data, "hello world", 11);
    a->len = 11;
    memcpy(b->data, "!!", 2);
    b->len = 2;
    spans_init(&s);
    assert_true(spans_add(&s, a, 0, 5));
    assert_true(spans_add(&s, a, 5, 6)); /* contiguous: merged */
    assert_int_equal(s.n, 1);
    assert_int_equal(a->refs, 2);
    assert_true(spans_add(&s, b, 0, 2));
    assert_int_equal(s.n, 2);
    assert_int_equal(s.bytes, 13);
    chunk_unref(a);
    chunk_unref(b);
    assert_int_equal(p.live, 2); /* the spans keep them alive */
    {
        char out[32];
        size_t n = spans_copy(&s, 3, out, sizeof(out));
        assert_int_equal(n, 10);
        assert_memory_equal(out, "lo world!!", 10);
    }
    spans_clear(&s);
    assert_int_equal(p.live, 0);
    chunk_pool_drain(&p);
}

static void test_spans_many_and_iov(void **state)
{
    struct chunk_pool p;
    struct chunk *c[40];
    struct spans s;
    struct iovec iov[8];
    int n;

    (void)state;
    chunk_pool_init(&p, 64);
    spans_init(&s);
    for (int i = 0; i < 40; i++) {
        c[i] = chunk_get(&p);
        c[i]->data[0] = (char)('a' + (i % 26));
        c[i]->len = 1;
        assert_true(spans_add(&s, c[i], 0, 1));
        chunk_unref(c[i]);
    }
    assert_int_equal(s.n, 40);
    n = spans_iov(&s, 0, iov, 0, 8);
    assert_int_equal(n, 8);
    n = spans_iov(&s, 38, iov, 0, 8);
    assert_int_equal(n, 2);
    assert_int_equal(((char *)iov[0].iov_base)[0], 'a' + 38 % 26);
    n = spans_iov(&s, 40, iov, 0, 8);
    assert_int_equal(n, 0);
    spans_clear(&s);
    assert_int_equal(p.live, 0);
    chunk_pool_drain(&p);
}

static void test_iov_merges_adjacent(void **state)
{
    struct chunk_pool p;
    struct chunk *c;
    struct spans a, b;
    struct iovec iov[4];
    int n;

    (void)state;
    chunk_pool_init(&p, 4);
    c = chunk_get(&p);
    memcpy(c->data, "+OK\r\n+OK\r\n", 10);
    c->len = 10;
    spans_init(&a);
    spans_init(&b);
    assert_true(spans_add(&a, c, 0, 5));
    assert_true(spans_add(&b, c, 5, 5));
    n = spans_iov(&a, 0, iov, 0, 4);
    n = spans_iov(&b, 0, iov, n, 4); /* the next reply, right after: same iovec */
    assert_int_equal(n, 1);
    assert_int_equal(iov[0].iov_len, 10);
    n = spans_iov(&b, 2, iov, 0, 4);
    n = spans_iov(&a, 0, iov, n, 4); /* not adjacent: a new iovec */
    assert_int_equal(n, 2);
    spans_clear(&a);
    spans_clear(&b);
    chunk_unref(c);
    chunk_pool_drain(&p);
}

/* One read fills the room left in the current chunk, then fresh chunks in
 * order; spares that get nothing go back to the pool. */
static void test_fill_spans_chunks(void **state)
{
    struct chunk_pool p;
    struct chunk *cur;
    struct chunk_fill more;
    struct transport t;
    static char out[40000];
    size_t room;
    uint32_t cap;
    ssize_t n;
    int sv[2];

    (void)state;
    for (size_t i = 0; i < sizeof(out); i++) {
        out[i] = (char)('a' + i % 26);
    }
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    chunk_pool_init(&p, 8);
    transport_plain(&t, sv[0]);
    cur = chunk_get(&p);
    cap = cur->cap;
    cur->len = cap - 100; /* 100 bytes of room left */

    /* No extra chunks: the read stops at the current one. */
    assert_int_equal(write(sv[1], out, 300), 300);
    n = chunk_fill(&p, &t, cur, 0, &more, &room);
    assert_int_equal(n, 100);
    assert_int_equal(room, 100);
    assert_int_equal(more.n, 0);
    assert_int_equal(cur->len, cap);

    /* Two extra chunks offered, one used: 200 bytes left in the socket. */
    cur->len = cap - 100;
    n = chunk_fill(&p, &t, cur, 2, &more, &room);
    assert_int_equal(n, 200);
    assert_int_equal(room, 100 + 2 * (size_t)cap);
    assert_int_equal(more.n, 1);
    assert_int_equal(cur->len, cap);
    assert_int_equal(more.more[0]->len, 100);
    assert_memory_equal(more.more[0]->data, out + 200, 100);
    assert_int_equal(p.live, 2); /* the unused spare went back */
    chunk_unref(more.more[0]);

    /* More than fits: every chunk is filled in order. */
    assert_int_equal(write(sv[1], out, sizeof(out)), (ssize_t)sizeof(out));
    cur->len = cap - 100;
    n = chunk_fill(&p, &t, cur, 2, &more, &room);
    assert_int_equal(n, 100 + 2 * (ssize_t)cap);
    assert_int_equal(more.n, 2);
    assert_memory_equal(cur->data + cap - 100, out, 100);
    assert_memory_equal(more.more[0]->data, out + 100, cap);
    assert_memory_equal(more.more[1]->data, out + 100 + cap, cap);
    assert_int_equal(more.more[1]->len, cap);
    chunk_unref(more.more[0]);
    chunk_unref(more.more[1]);

    /* A full chunk and no extra allowed is an error, never end of stream. */
    cur->len = cap;
    n = chunk_fill(&p, &t, cur, 0, &more, &room);
    assert_int_equal(n, -1);

    /* End of stream reads 0 and hands back every spare. */
    cur->len = 0;
    close(sv[1]);
    while ((n = chunk_fill(&p, &t, cur, 1, &more, &room)) > 0) {
        for (int i = 0; i < more.n; i++) {
            chunk_unref(more.more[i]);
        }
        cur->len = 0;
    }
    assert_int_equal(n, 0);
    assert_int_equal(more.n, 0);
    assert_int_equal(p.live, 1);
    chunk_unref(cur);
    transport_close(&t);
    chunk_pool_drain(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_reuse),         cmocka_unit_test(test_spans_merge_and_refs),
        cmocka_unit_test(test_spans_many_and_iov), cmocka_unit_test(test_iov_merges_adjacent),
        cmocka_unit_test(test_fill_spans_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
