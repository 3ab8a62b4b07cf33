/*
 * log.c - leveled logging to stderr.
 *
 * A line is formatted into a local buffer and written with one write(2), so
 * lines from different threads do not interleave.
 */
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int log_min_level = LOG_INFO;
static __thread char log_thread[16] = "main";

void log_set_level(int level)
{
    log_min_level = level;
}

int log_level_parse(const char *name)
{
    if (strcmp(name, "debug") == 0) {
        return LOG_DEBUG;
    }
    if (strcmp(name, "info") == 0) {
        return LOG_INFO;
    }
    if (strcmp(name, "warn") == 0 || strcmp(name, "warning") == 0) {
        return LOG_WARN;
    }
    if (strcmp(name, "error") == 0) {
        return LOG_ERROR;
    }
    return -1;
}

void log_set_thread_name(const char *name)
{
    snprintf(log_thread, sizeof(log_thread), "%s", name);
}

void log_write(int level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    char line[2048];
    struct timeval tv;
    struct tm tm;
    size_t len;
    va_list ap;
    int n;

    if (level < log_min_level) {
        return;
    }
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    len = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
    n = snprintf(line + len, sizeof(line) - len, ".%03d %s [%s] ", (int)(tv.tv_usec / 1000),
                 names[level < 0   ? 0
                       : level > 3 ? 3
                                   : level],
                 log_thread);
    len += (size_t)n;
    va_start(ap, fmt);
    n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        n = 0;
    }
    len += (size_t)n;
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2;
    }
    line[len++] = '\n';
    /* A failed log write has nowhere to be reported. */
    if (write(STDERR_FILENO, line, len) < 0) {
        return;
    }
}
