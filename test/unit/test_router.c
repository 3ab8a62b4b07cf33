/*
 * test_router.c - the reply-side routing rules as tables: what becomes of a
 * reply (router_reply_verdict), of a request whose connection was lost
 * (router_lost_verdict), and how an error reply is classified
 * (router_refusal).
 */
#include "unit.h"

#include <string.h>

#include "proxy/replyscan.h"
#include "proxy/router.h"

/* Fields of struct router_fate, abbreviated so that a row fits a line. */
enum {
    IN = 1 << 0,  /* internal */
    OR = 1 << 1,  /* orphan */
    DE = 1 << 2,  /* dedicated */
    CR = 1 << 3,  /* can_resend */
    RE = 1 << 4,  /* from_replica */
    MO = 1 << 5,  /* master_only */
    WH = 1 << 6,  /* within_hold */
    ST = 1 << 7,  /* streamed */
    UN = 1 << 8,  /* unsent */
    RD = 1 << 9,  /* is_read */
    RT = 1 << 10, /* lost: sent ROUTER_READ_ATTEMPTS - 1 times already */
    RL = 1 << 11, /* released */
    BM = 1 << 12, /* blocked_may_move */
    RP = 1 << 13, /* repeatable */
    R1 = 1 << 14, /* lost: sent once already */
};

static struct router_fate fate(unsigned bits, enum router_refusal refusal)
{
    struct router_fate f = {
        .internal = bits & IN,
        .orphan = bits & OR,
        .dedicated = bits & DE,
        .can_resend = bits & CR,
        .from_replica = bits & RE,
        .master_only = bits & MO,
        .within_hold = bits & WH,
        .refusal = refusal,
        .streamed = bits & ST,
        .unsent = bits & UN,
        .is_read = bits & RD,
        .lost = (bits & RT)   ? ROUTER_READ_ATTEMPTS - 1
                : (bits & R1) ? 1
                              : 0,
        .released = bits & RL,
        .blocked_may_move = bits & BM,
        .repeatable = bits & RP,
    };
    return f;
}

static void test_reply_verdict(void **state)
{
    static const struct {
        unsigned bits;
        enum router_refusal refusal;
        enum router_reply want;
    } rows[] = {
        /* Ordinary replies go to their client; the proxy's own to its handler. */
        {0, REFUSAL_NONE, REPLY_DELIVER},
        {WH | CR, REFUSAL_NONE, REPLY_DELIVER},
        {DE, REFUSAL_NONE, REPLY_DELIVER},
        {RE, REFUSAL_NONE, REPLY_DELIVER},
        {IN, REFUSAL_NONE, REPLY_INTERNAL},
        {IN | RE | WH, REFUSAL_NOT_EXECUTED, REPLY_INTERNAL},
        {OR, REFUSAL_NONE, REPLY_DISCARD},
        {OR | RE | WH, REFUSAL_NOSCRIPT, REPLY_DISCARD},
        /* A replica's refusal of a read on a shared connection: the master
         * answers it, once. */
        {RE, REFUSAL_NOSCRIPT, REPLY_TO_MASTER},
        {RE | WH, REFUSAL_NOT_EXECUTED, REPLY_TO_MASTER},
        {RE | MO, REFUSAL_NOSCRIPT, REPLY_DELIVER},
        {RE | MO | WH, REFUSAL_NOT_EXECUTED, REPLY_RETRY},
        {RE | DE, REFUSAL_NOSCRIPT, REPLY_DELIVER},
        /* Not executed by the master: sent again until hold-timeout. */
        {WH, REFUSAL_NOT_EXECUTED, REPLY_RETRY},
        {0, REFUSAL_NOT_EXECUTED, REPLY_DELIVER},
        {WH, REFUSAL_NOSCRIPT, REPLY_DELIVER},
        /* On a dedicated connection only when the session allows it (no
         * transaction, nothing streaming). */
        {DE | WH, REFUSAL_NOT_EXECUTED, REPLY_DELIVER},
        {DE | WH | CR, REFUSAL_NOT_EXECUTED, REPLY_RETRY},
        {DE | CR, REFUSAL_NOT_EXECUTED, REPLY_DELIVER},
        /* A blocked command its master released as it became a replica
         * waits again on the new master, however long it had waited. */
        {DE | CR | BM, REFUSAL_UNBLOCKED, REPLY_RETRY},
        {DE | CR | BM | WH, REFUSAL_UNBLOCKED, REPLY_RETRY},
        {DE | BM, REFUSAL_UNBLOCKED, REPLY_DELIVER},
        {DE | CR, REFUSAL_UNBLOCKED, REPLY_DELIVER},
        {IN | BM, REFUSAL_UNBLOCKED, REPLY_INTERNAL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct router_fate f = fate(rows[i].bits, rows[i].refusal);
        if (router_reply_verdict(&f) != rows[i].want) {
            fail_msg("row %zu: got %d, want %d", i, router_reply_verdict(&f), rows[i].want);
        }
    }
}

static void test_lost_verdict(void **state)
{
    static const struct {
        unsigned bits;
        enum router_lost want;
    } rows[] = {
        /* The proxy's own requests and those of gone clients are dropped. */
        {IN, LOST_DROP},
        {IN | UN | RD, LOST_DROP},
        {OR | UN, LOST_DROP},
        {OR | ST, LOST_DROP},
        /* Streamed requests were answered already. */
        {ST, LOST_KEEP},
        {ST | UN | RD, LOST_KEEP},
        /* Never written: sent again, whatever it is. */
        {UN, LOST_RESEND},
        {UN | DE, LOST_RESEND},
        {UN | RT, LOST_RESEND},
        /* A read whose reply was lost: again, within hold-timeout and a few
         * times at most, unless a transaction or a stream on its dedicated
         * connection forbids it. */
        {RD | RP | WH, LOST_RETRY_READ},
        {RD | RP | WH | DE | CR, LOST_RETRY_READ},
        {RD | RP | WH | DE, LOST_FAIL_READ},
        {RD | RP | WH | R1, LOST_RETRY_READ},
        {RD | RP | WH | RT, LOST_FAIL_READ},
        {RD | RP, LOST_FAIL_READ},
        /* A blocked XREAD from $ would mean something else later. */
        {RD, LOST_FAIL_READ},
        {RD | DE | CR, LOST_FAIL_READ},
        /* A write whose outcome is unknown is never sent again... */
        {0, LOST_FAIL_WRITE},
        {DE | CR, LOST_FAIL_WRITE},
        {RT, LOST_FAIL_WRITE},
        /* ...except a blocked command a former master dropped unexecuted. */
        {RL | DE | CR, LOST_RESEND},
        {RL, LOST_RESEND},
        {RL | DE, LOST_FAIL_WRITE},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct router_fate f = fate(rows[i].bits, REFUSAL_NONE);
        if (router_lost_verdict(&f) != rows[i].want) {
            fail_msg("row %zu: got %d, want %d", i, router_lost_verdict(&f), rows[i].want);
        }
    }
}

static void test_refusal(void **state)
{
    static const struct {
        const char *head;
        bool sentinel;
        enum router_refusal want;
    } rows[] = {
        {"LOADING Redis is loading the dataset in memory", false, REFUSAL_NOT_EXECUTED},
        {"LOADING Redis is loading the dataset in memory", true, REFUSAL_NOT_EXECUTED},
        {"READONLY You can't write against a read only replica.", true, REFUSAL_NOT_EXECUTED},
        {"READONLY You can't write against a read only replica.", false, REFUSAL_NONE},
        {"MASTERDOWN Link with MASTER is down", true, REFUSAL_NOT_EXECUTED},
        {"MASTERDOWN Link with MASTER is down", false, REFUSAL_NONE},
        {"UNBLOCKED force unblock from blocking operation, instance state changed (master -> "
         "replica?)",
         true, REFUSAL_UNBLOCKED},
        {"UNBLOCKED force unblock from blocking operation, instance state changed (master -> "
         "replica?)",
         false, REFUSAL_NONE},
        {"UNBLOCKED client unblocked via CLIENT UNBLOCK", true, REFUSAL_NONE},
        {"NOSCRIPT No matching script.", false, REFUSAL_NOSCRIPT},
        {"NOSCRIPT No matching script.", true, REFUSAL_NOSCRIPT},
        {"ERR unknown command", true, REFUSAL_NONE},
        {"LOADING", true, REFUSAL_NONE}, /* a code must be followed by its message */
        {"READONLYX y", true, REFUSAL_NONE},
        {"", true, REFUSAL_NONE},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        /* The reply scanner keeps only the first REPLYSCAN_HEAD_MAX bytes. */
        size_t len = strlen(rows[i].head);
        enum router_refusal got = router_refusal(
            rows[i].head, len < REPLYSCAN_HEAD_MAX ? len : REPLYSCAN_HEAD_MAX, rows[i].sentinel);
        if (got != rows[i].want) {
            fail_msg("row %zu (%s): got %d, want %d", i, rows[i].head, got, rows[i].want);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_verdict),
        cmocka_unit_test(test_lost_verdict),
        cmocka_unit_test(test_refusal),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
