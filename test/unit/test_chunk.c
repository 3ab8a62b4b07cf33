/*
 * test_chunk.c - unit tests for the chunk pool and span lists.
 */
#include "unit.h"

#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_reuse),
        cmocka_unit_test(test_spans_merge_and_refs),
        cmocka_unit_test(test_spans_many_and_iov),
        cmocka_unit_test(test_iov_merges_adjacent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
