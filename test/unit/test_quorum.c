/*
 * test_quorum.c - unit tests for the master decision rules and replica
 * health flags.
 */
#include "unit.h"

#include <string.h>

#include "sentinel/quorum.h"

static struct quorum_report rep(const char *host, int port, uint64_t epoch)
{
    struct quorum_report r;
    char err[64];

    memset(&r, 0, sizeof(r));
    r.ok = true;
    r.epoch = epoch;
    assert_true(addr_from_host_port(&r.master, host, port, err, sizeof(err)));
    return r;
}

static void test_agreement(void **state)
{
    struct quorum_report r[3] = {rep("10.0.0.1", 6379, 3), rep("10.0.0.1", 6379, 3),
                                 rep("10.0.0.1", 6379, 3)};
    struct quorum_decision d;

    (void)state;
    quorum_decide(r, 3, &d);
    assert_int_equal(d.status, QUORUM_AGREED);
    assert_int_equal(d.answers, 3);
    assert_int_equal(d.votes, 3);
    assert_int_equal(d.epoch, 3);
    assert_false(d.going_away);
}

static void test_no_answer_and_silent_sentinels(void **state)
{
    struct quorum_report r[3] = {rep("10.0.0.1", 6379, 1), rep("10.0.0.2", 6379, 9),
                                 rep("10.0.0.3", 6379, 9)};
    struct quorum_decision d;

    (void)state;
    r[0].ok = r[1].ok = r[2].ok = false;
    quorum_decide(r, 3, &d);
    assert_int_equal(d.status, QUORUM_NONE);
    /* Only the one that answered counts, even against the silent majority. */
    r[0].ok = true;
    quorum_decide(r, 3, &d);
    assert_int_equal(d.status, QUORUM_AGREED);
    assert_string_equal(d.master.host, "10.0.0.1");
    quorum_decide(r, 0, &d);
    assert_int_equal(d.status, QUORUM_NONE);
}

static void test_higher_epoch_wins(void **state)
{
    /* Two stale Sentinels still name the old master; the one that saw the
     * failover (higher epoch) wins. */
    struct quorum_report r[3] = {rep("10.0.0.1", 6379, 4), rep("10.0.0.1", 6379, 4),
                                 rep("10.0.0.2", 6379, 5)};
    struct quorum_decision d;

    (void)state;
    quorum_decide(r, 3, &d);
    assert_int_equal(d.status, QUORUM_EPOCH);
    assert_string_equal(d.master.host, "10.0.0.2");
    assert_int_equal(d.epoch, 5);
    assert_int_equal(d.votes, 1);
}

static void test_majority_within_epoch_and_split(void **state)
{
    struct quorum_report r[4] = {rep("a", 1, 7), rep("b", 1, 7), rep("b", 1, 7), rep("c", 1, 2)};
    struct quorum_decision d;

    (void)state;
    quorum_decide(r, 4, &d);
    assert_int_equal(d.status, QUORUM_EPOCH);
    assert_string_equal(d.master.host, "b");
    /* A tie at the top epoch decides nothing. */
    r[2] = rep("c", 1, 7);
    quorum_decide(r, 4, &d);
    assert_int_equal(d.status, QUORUM_SPLIT);
    /* Same host, other port: another address. */
    r[1] = rep("a", 2, 7);
    r[2] = rep("a", 2, 7);
    quorum_decide(r, 3, &d);
    assert_int_equal(d.master.port, 2);
}

static void test_going_away(void **state)
{
    struct quorum_report r[3] = {rep("m", 1, 1), rep("m", 1, 1), rep("old", 1, 0)};
    struct quorum_decision d;

    (void)state;
    r[2].odown = true; /* a stale view of another master: irrelevant */
    quorum_decide(r, 3, &d);
    assert_false(d.going_away);
    r[1].failover = true;
    quorum_decide(r, 3, &d);
    assert_true(d.going_away);
    r[1].failover = false;
    r[0].odown = true;
    quorum_decide(r, 3, &d);
    assert_true(d.going_away);
    r[0].odown = false;
    r[0].sdown = true; /* subjective only: not enough */
    quorum_decide(r, 3, &d);
    assert_false(d.going_away);
}

static void test_replica_flags(void **state)
{
    (void)state;
    assert_true(quorum_replica_ok("slave", "ok"));
    assert_true(quorum_replica_ok("slave", NULL));
    assert_false(quorum_replica_ok("slave,s_down", "ok"));
    assert_false(quorum_replica_ok("slave,o_down", "ok"));
    assert_false(quorum_replica_ok("slave,disconnected", "ok"));
    assert_false(quorum_replica_ok("slave", "err"));
    assert_false(quorum_replica_ok(NULL, "ok"));
    assert_true(quorum_has_flag("a,b,c", "b"));
    assert_false(quorum_has_flag("a,bb,c", "b"));
    assert_false(quorum_has_flag("", "b"));
    assert_true(quorum_has_flag("s_down", "s_down"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agreement),
        cmocka_unit_test(test_no_answer_and_silent_sentinels),
        cmocka_unit_test(test_higher_epoch_wins),
        cmocka_unit_test(test_majority_within_epoch_and_split),
        cmocka_unit_test(test_going_away),
        cmocka_unit_test(test_replica_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
