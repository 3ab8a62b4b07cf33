/*
 * test_nameset.c - unit tests for the subscription name set: membership
 * after random adds and removes checked against a plain model, binary names,
 * and a large set built and emptied.
 */
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/nameset.h"

static bool has(const struct nameset *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->lens[i] == len && memcmp(s->names[i], name, len) == 0) {
            return true;
        }
    }
    return false;
}

static void test_add_remove_model(void **state)
{
    enum { NAMES = 300, STEPS = 20000 };
    struct nameset s;
    bool model[NAMES] = {false};
    size_t count = 0;

    (void)state;
    memset(&s, 0, sizeof(s));
    srand(7);
    for (int step = 0; step < STEPS; step++) {
        char name[16];
        int k = rand() % NAMES;
        int len = snprintf(name, sizeof(name), "ch:%d", k);
        if (rand() % 3 != 0) {
            assert_true(nameset_add(&s, name, (size_t)len));
            count += !model[k];
            model[k] = true;
        } else {
            nameset_remove(&s, name, (size_t)len);
            count -= model[k];
            model[k] = false;
        }
        assert_int_equal(s.n, count);
    }
    for (int k = 0; k < NAMES; k++) {
        char name[16];
        int len = snprintf(name, sizeof(name), "ch:%d", k);
        assert_int_equal(has(&s, name, (size_t)len), model[k]);
        /* adding what is there changes nothing */
        if (model[k]) {
            assert_true(nameset_add(&s, name, (size_t)len));
            assert_int_equal(s.n, count);
        }
    }
    nameset_clear(&s);
    assert_int_equal(s.n, 0);
}

static void test_binary_names(void **state)
{
    struct nameset s;

    (void)state;
    memset(&s, 0, sizeof(s));
    assert_true(nameset_add(&s, "a\0b", 3));
    assert_true(nameset_add(&s, "a\0c", 3));
    assert_true(nameset_add(&s, "a", 1));
    assert_true(nameset_add(&s, "", 0));
    assert_int_equal(s.n, 4);
    nameset_remove(&s, "a\0b", 3);
    assert_false(has(&s, "a\0b", 3));
    assert_true(has(&s, "a\0c", 3));
    assert_true(has(&s, "", 0));
    nameset_remove(&s, "missing", 7);
    assert_int_equal(s.n, 3);
    nameset_clear(&s);
}

static void test_large_set(void **state)
{
    enum { N = 100000 };
    struct nameset s;
    char name[24];

    (void)state;
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < N; i++) {
        int len = snprintf(name, sizeof(name), "channel-%d", i);
        assert_true(nameset_add(&s, name, (size_t)len));
    }
    assert_int_equal(s.n, N);
    for (int i = 0; i < N; i += 2) {
        int len = snprintf(name, sizeof(name), "channel-%d", i);
        nameset_remove(&s, name, (size_t)len);
    }
    assert_int_equal(s.n, N / 2);
    for (int i = 0; i < N; i++) {
        int len = snprintf(name, sizeof(name), "channel-%d", i);
        assert_true(nameset_add(&s, name, (size_t)len));
    }
    assert_int_equal(s.n, N);
    nameset_clear(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_remove_model),
        cmocka_unit_test(test_binary_names),
        cmocka_unit_test(test_large_set),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
