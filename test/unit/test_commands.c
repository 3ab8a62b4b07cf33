/*
 * test_commands.c - unit tests for the command table: the built-in table, and
 * tables read from a server's COMMAND reply (module commands included).
 */
#include "unit.h"

#include <string.h>

#include "proxy/commands.h"

static void test_builtin_lookup(void **state)
{
    const struct cmdtable *t = cmdtable_builtin();
    const struct cmd_info *ci;

    (void)state;
    assert_true(cmdtable_size(t) > 200);
    assert_false(cmdtable_from_server(t));
    ci = cmdtable_lookup(t, "GeT", 3);
    assert_non_null(ci);
    assert_string_equal(ci->name, "get");
    assert_true(cmd_is_read(ci));
    ci = cmdtable_lookup(t, "set", 3);
    assert_false(cmd_is_read(ci));
    assert_true(ci->flags & CMDF_WRITE);
    assert_null(cmdtable_lookup(t, "nosuchcommand", 13));
    assert_null(cmdtable_lookup(t, "", 0));
    /* A name with a NUL inside matches nothing, and is compared within its
     * length and the table's names only (ASan catches a read past either). */
    for (size_t k = 1; k <= 8; k++) {
        static const char *const names[] = {"get", "set", "del", "ping", "client"};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            char key[32] = {0};
            size_t len = strlen(names[i]);
            memcpy(key, names[i], len);
            memset(key + len + 1, 0xAA, k - 1);
            assert_null(cmdtable_lookup(t, key, len + k));
        }
    }
    ci = cmdtable_find(t, "CLIENT", 6, "SetName", 7);
    assert_string_equal(ci->name, "client|setname");
    assert_int_equal(ci->proxy, CMDP_LOCAL);
    ci = cmdtable_find(t, "client", 6, "bogus", 5);
    assert_string_equal(ci->name, "client"); /* unknown sub-command: the container */
    assert_int_equal(cmdtable_lookup(t, "blpop", 5)->proxy, CMDP_BLOCKING);
    assert_int_equal(cmdtable_lookup(t, "subscribe", 9)->proxy, CMDP_STREAM);
    assert_int_equal(cmdtable_lookup(t, "multi", 5)->proxy, CMDP_SESSION);
    assert_int_equal(cmdtable_lookup(t, "sync", 4)->proxy, CMDP_REFUSE);
    assert_int_equal(cmdtable_lookup(t, "post", 4)->proxy, CMDP_CLOSE);
    assert_int_equal(cmdtable_lookup(t, "proxy", 5)->proxy, CMDP_LOCAL);
    assert_true(cmd_is_read(cmdtable_lookup(t, "zrange", 6)));
    assert_true(cmd_is_read(cmdtable_lookup(t, "eval_ro", 7)));
    assert_false(cmd_is_read(cmdtable_lookup(t, "eval", 4)));
}

/* A COMMAND reply as a Redis 7 server sends it, with a module's command. */
static const char reply[] =
    "*3\r\n"
    "*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n"
    "*2\r\n$5\r\n@read\r\n$7\r\n@string\r\n*0\r\n*1\r\n*4\r\n$5\r\nflags\r\n*1\r\n$2\r\nRO\r\n"
    "$12\r\nbegin_search\r\n*2\r\n$4\r\ntype\r\n$5\r\nindex\r\n*0\r\n"
    "*10\r\n$9\r\nMYMOD.GET\r\n:2\r\n*1\r\n+readonly\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n*0\r\n*0\r\n"
    "*10\r\n$6\r\nconfig\r\n:-2\r\n*0\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n"
    "*1\r\n*10\r\n$10\r\nconfig|get\r\n:-3\r\n*3\r\n+admin\r\n+noscript\r\n+loading\r\n"
    ":0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n*0\r\n";

static void test_from_reply(void **state)
{
    struct cmdtable *t = cmdtable_from_reply(reply, sizeof(reply) - 1);
    const struct cmd_info *ci;

    (void)state;
    assert_non_null(t);
    assert_true(cmdtable_from_server(t));
    ci = cmdtable_lookup(t, "mymod.get", 9);
    assert_non_null(ci);
    assert_true(cmd_is_read(ci)); /* a module read goes to replicas */
    assert_int_equal(ci->arity, 2);
    ci = cmdtable_find(t, "CONFIG", 6, "get", 3);
    assert_string_equal(ci->name, "config|get");
    assert_true(ci->flags & CMDF_ADMIN);
    /* The proxy's own commands are always there. */
    assert_int_equal(cmdtable_lookup(t, "proxy", 5)->proxy, CMDP_LOCAL);
    cmdtable_free(t);
}

static void test_from_bad_reply(void **state)
{
    (void)state;
    assert_null(cmdtable_from_reply("-ERR no\r\n", 9));
    assert_null(cmdtable_from_reply("*1\r\n*2\r\n$3\r\nget\r\n:2\r\n", 22));
    assert_null(cmdtable_from_reply(reply, 40)); /* cut short */
    assert_null(cmdtable_from_reply("", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_lookup),
        cmocka_unit_test(test_from_reply),
        cmocka_unit_test(test_from_bad_reply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
