/*
 * test_log.c - JSON log lines stay one valid JSON object whatever the
 * message and the key=value figures hold, also when cut at the line limit;
 * figures are written whole or not at all.
 */
#include "unit.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"

/* ---- a strict checker for the flat objects log lines are ---------------- */

static bool json_string(const char **p)
{
    const char *s = *p;

    if (*s++ != '"') {
        return false;
    }
    while (*s != '"') {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20) {
            return false; /* raw control characters (a newline) are not allowed */
        }
        if (ch == '\\') {
            s++;
            if (*s == 'u') {
                for (int i = 1; i <= 4; i++) {
                    if (strchr("0123456789abcdefABCDEF", s[i]) == NULL || s[i] == '\0') {
                        return false;
                    }
                }
                s += 5;
                continue;
            }
            if (*s == '\0' || strchr("\"\\/bfnrt", *s) == NULL) {
                return false;
            }
        }
        s++;
    }
    *p = s + 1;
    return true;
}

static bool json_number(const char **p)
{
    const char *s = *p;

    s += *s == '-';
    if (*s == '0') {
        s++;
    } else if (*s >= '1' && *s <= '9') {
        while (*s >= '0' && *s <= '9') {
            s++;
        }
    } else {
        return false;
    }
    if (*s == '.') {
        const char *f = ++s;
        while (*s >= '0' && *s <= '9') {
            s++;
        }
        if (s == f) {
            return false;
        }
    }
    *p = s;
    return true;
}

/* line is {"k":"v"|n,...} followed by a newline, nothing else. */
static bool json_line(const char *line)
{
    const char *p = line;

    if (*p++ != '{') {
        return false;
    }
    for (;;) {
        if (!json_string(&p) || *p++ != ':') {
            return false;
        }
        if (!(*p == '"' ? json_string(&p) : json_number(&p))) {
            return false;
        }
        if (*p == '}') {
            return strcmp(p, "}\n") == 0;
        }
        if (*p++ != ',') {
            return false;
        }
    }
}

/* ---- capturing what the logger writes -------------------------------------- */

static char *captured;

/* Run fn with stderr going to a file; captured gets what was written. */
static void capture(void (*fn)(void))
{
    char path[] = "/tmp/sp-test-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    FILE *f;
    long n;

    assert_true(fd >= 0 && saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    fn();
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    close(fd);
    f = fopen(path, "r");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    free(captured);
    captured = calloc(1, (size_t)n + 1);
    assert_non_null(captured);
    assert_int_equal(fread(captured, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    unlink(path);
}

/* Every captured line is valid; returns how many there were. */
static size_t check_lines(void)
{
    size_t n = 0;

    for (char *line = captured, *end; *line != '\0'; line = end + 1, n++) {
        char saved;
        end = strchr(line, '\n');
        assert_non_null(end);
        saved = end[1];
        end[1] = '\0';
        if (!json_line(line)) {
            fail_msg("not a JSON line: %s", line);
        }
        end[1] = saved;
    }
    return n;
}

/* ---- the lines -------------------------------------------------------------- */

static const char *const kvs[] = {
    "version=12 old_master=127.0.0.1:6379 master=127.0.0.1:6380 epoch=42 switch_ms=-1",
    "refused=3 max_clients=10000",
    "a=\"q\\b x=\x01\x1f y=-01 z=1. w=.5 v=- u== n=007 m=0.25 o=-0",
    "  spaced=1   twice=2  ",
    "",
};

static void log_sweep(void)
{
    char msg[1600];

    log_set_json(true);
    for (size_t k = 0; k < sizeof(kvs) / sizeof(kvs[0]); k++) {
        /* Control characters take six bytes escaped: these lengths put the
         * end of the message, and the figures, at every place around the
         * 4 KB limit. */
        for (int ctl = 560; ctl <= 700; ctl += 3) {
            for (int plain = 0; plain < 7; plain++) {
                int n = 0;
                for (int i = 0; i < ctl; i++) {
                    msg[n++] = (char)(1 + i % 31);
                }
                for (int i = 0; i < plain; i++) {
                    msg[n++] = i % 2 ? '"' : 'x';
                }
                msg[n] = '\0';
                log_kv(LOG_WARN, "sweep", kvs[k], "%s", msg);
            }
        }
        log_kv(LOG_WARN, "short", kvs[k], "short message with \"quotes\" and \\");
    }
    log_set_json(false);
}

static void test_json_lines_stay_valid(void **state)
{
    (void)state;
    capture(log_sweep);
    assert_true(check_lines() > 1000);
}

static void log_figures(void)
{
    log_set_json(true);
    log_kv(LOG_WARN, "figures", "hold_timeouts=7 hold_timeout_ms=60000 master=127.0.0.1:6380", "%s",
           "fits");
    log_set_json(false);
}

static void test_figures_are_typed_and_whole(void **state)
{
    (void)state;
    capture(log_figures);
    assert_int_equal(check_lines(), 1);
    assert_non_null(strstr(captured, "\"hold_timeouts\":7,\"hold_timeout_ms\":60000,"
                                     "\"master\":\"127.0.0.1:6380\"}"));
    /* Near the limit a figure is left out, never cut: every number that
     * appears is one of the numbers given. */
    capture(log_sweep);
    for (const char *p = captured; (p = strstr(p, "\"max_clients\":")) != NULL; p++) {
        assert_int_equal(strncmp(p, "\"max_clients\":10000}", 20), 0);
    }
    for (const char *p = captured; (p = strstr(p, "\"version\":")) != NULL; p++) {
        assert_int_equal(strncmp(p, "\"version\":12", 12), 0);
        assert_true(p[12] == ',' || p[12] == '}');
    }
    /* What is not a JSON number is a string. */
    assert_non_null(strstr(captured, "\"y\":\"-01\""));
    assert_non_null(strstr(captured, "\"n\":\"007\""));
    assert_non_null(strstr(captured, "\"m\":0.25"));
    assert_non_null(strstr(captured, "\"z\":\"1.\""));
}

static void log_text(void)
{
    log_kv(LOG_WARN, "text", "refused=3", "refused %d client(s)", 3);
}

static void test_text_lines_show_the_message_only(void **state)
{
    (void)state;
    capture(log_text);
    assert_non_null(strstr(captured, " warn [main] refused 3 client(s)\n"));
    assert_null(strstr(captured, "refused=3"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_lines_stay_valid),
        cmocka_unit_test(test_figures_are_typed_and_whole),
        cmocka_unit_test(test_text_lines_show_the_message_only),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);

    free(captured);
    return rc;
}
