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
static bool log_json;
static __thread char log_thread[16] = "main";

void log_set_level(int level)
{
    log_min_level = level;
}

void log_set_json(bool json)
{
    log_json = json;
}

/* Append s to line[*len..cap) as the inside of a JSON string. */
static void log_json_escape(char *line, size_t *len, size_t cap, const char *s)
{
    for (; *s != '\0' && *len + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            line[(*len)++] = '\\';
            line[(*len)++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            *len += (size_t)snprintf(line + *len, cap - *len, "\\u%04x", ch);
        } else {
            line[(*len)++] = (char)ch;
        }
    }
}

/* The JSON line for one message. */
static size_t log_format_json(char *line, size_t cap, int level, const char *event,
                              const struct timeval *tv, const char *msg)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    struct tm tm;
    size_t len;

    gmtime_r(&tv->tv_sec, &tm);
    len = strftime(line, cap, "{\"time\":\"%Y-%m-%dT%H:%M:%S", &tm);
    len += (size_t)snprintf(line + len, cap - len, ".%03dZ\",\"level\":\"%s\",\"thread\":\"",
                            (int)(tv->tv_usec / 1000), names[level]);
    log_json_escape(line, &len, cap, log_thread);
    len += (size_t)snprintf(line + len, cap - len, "\",\"event\":\"");
    log_json_escape(line, &len, cap, event);
    len += (size_t)snprintf(line + len, cap - len, "\",\"msg\":\"");
    log_json_escape(line, &len, cap, msg);
    if (len + 3 > cap) {
        len = cap - 3;
    }
    line[len++] = '"';
    line[len++] = '}';
    line[len++] = '\n';
    return len;
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

void log_write(int level, const char *event, const char *fmt, ...)
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
    level = level < 0 ? 0 : level > 3 ? 3 : level;
    gettimeofday(&tv, NULL);
    if (log_json) {
        char msg[1536], out[4096];
        va_start(ap, fmt);
        n = vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (n < 0) {
            msg[0] = '\0';
        }
        len = log_format_json(out, sizeof(out), level, event, &tv, msg);
        if (write(STDERR_FILENO, out, len) < 0) {
            return;
        }
        return;
    }
    localtime_r(&tv.tv_sec, &tm);
    len = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
    n = snprintf(line + len, sizeof(line) - len, ".%03d %s [%s] ", (int)(tv.tv_usec / 1000),
                 names[level], log_thread);
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
