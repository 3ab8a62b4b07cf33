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
    __atomic_store_n(&log_min_level, level, __ATOMIC_RELAXED); /* a reload, with workers running */
}

void log_set_json(bool json)
{
    log_json = json;
}

/* Append s to line[*len..cap) as the inside of a JSON string, stopping
 * (between characters, never inside an escape) when it would not fit. */
static void log_json_escape(char *line, size_t *len, size_t cap, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            if (*len + 2 > cap) {
                return;
            }
            line[(*len)++] = '\\';
            line[(*len)++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            if (*len + 6 > cap) {
                return;
            }
            *len += (size_t)snprintf(line + *len, 7, "\\u%04x", ch);
        } else {
            if (*len + 1 > cap) {
                return;
            }
            line[(*len)++] = (char)ch;
        }
    }
}

/* True when s[0..n) is a number as JSON writes one: an optional minus,
 * digits without a leading zero, an optional fraction. */
static bool log_is_number(const char *s, size_t n)
{
    size_t i = s[0] == '-' ? 1 : 0, start = i;

    while (i < n && s[i] >= '0' && s[i] <= '9') {
        i++;
    }
    if (i == start || (s[start] == '0' && i > start + 1)) {
        return false;
    }
    if (i < n && s[i] == '.') {
        size_t frac = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        if (i == frac) {
            return false;
        }
    }
    return i == n;
}

/* Append the "key=value" pairs of kv (separated by spaces) as members,
 * each whole or not at all: a figure cut short would be a wrong figure. */
static void log_json_fields(char *line, size_t *len, size_t cap, const char *kv)
{
    char part[256], member[6 * 256 + 16]; /* a pair is shorter than part: it fits escaped */

    while (kv != NULL && *kv != '\0') {
        size_t n = strcspn(kv, " "), k, m = 0;
        const char *eq = memchr(kv, '=', n);
        if (eq != NULL && eq > kv && n < sizeof(part)) {
            k = (size_t)(eq - kv);
            memcpy(part, kv, k);
            part[k] = '\0';
            member[m++] = ',';
            member[m++] = '"';
            log_json_escape(member, &m, sizeof(member), part);
            memcpy(part, eq + 1, n - k - 1);
            part[n - k - 1] = '\0';
            member[m++] = '"';
            member[m++] = ':';
            if (n - k - 1 > 0 && log_is_number(part, n - k - 1)) {
                memcpy(member + m, part, n - k - 1);
                m += n - k - 1;
            } else {
                member[m++] = '"';
                log_json_escape(member, &m, sizeof(member), part);
                member[m++] = '"';
            }
            if (*len + m > cap) {
                return; /* this one and the rest do not fit */
            }
            memcpy(line + *len, member, m);
            *len += m;
        }
        kv += n;
        kv += *kv == ' ';
    }
}

/* The JSON line for one message. */
static size_t log_format_json(char *line, size_t cap, int level, const char *event,
                              const struct timeval *tv, const char *msg, const char *kv)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    struct tm tm;
    size_t len;

    /* Room is kept for what closes the line: '"', '}' and '\n'. */
    cap -= 3;
    gmtime_r(&tv->tv_sec, &tm);
    len = strftime(line, cap, "{\"time\":\"%Y-%m-%dT%H:%M:%S", &tm);
    len += (size_t)snprintf(line + len, cap - len, ".%03dZ\",\"level\":\"%s\",\"thread\":\"",
                            (int)(tv->tv_usec / 1000), names[level]);
    log_json_escape(line, &len, cap, log_thread);
    len += (size_t)snprintf(line + len, cap - len, "\",\"event\":\"");
    log_json_escape(line, &len, cap, event);
    len += (size_t)snprintf(line + len, cap - len, "\",\"msg\":\"");
    log_json_escape(line, &len, cap, msg);
    line[len++] = '"';
    log_json_fields(line, &len, cap + 1, kv);
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

static void log_vwrite(int level, const char *event, const char *kv, const char *fmt, va_list ap)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    char line[2048];
    struct timeval tv;
    struct tm tm;
    size_t len;
    int n;

    if (level < __atomic_load_n(&log_min_level, __ATOMIC_RELAXED)) {
        return;
    }
    level = level < 0 ? 0 : level > 3 ? 3 : level;
    gettimeofday(&tv, NULL);
    if (log_json) {
        char msg[1536], out[4096];
        n = vsnprintf(msg, sizeof(msg), fmt, ap);
        if (n < 0) {
            msg[0] = '\0';
        }
        len = log_format_json(out, sizeof(out), level, event, &tv, msg, kv);
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
    n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
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

void log_write(int level, const char *event, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(level, event, NULL, fmt, ap);
    va_end(ap);
}

void log_kv(int level, const char *event, const char *kv, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(level, event, kv, fmt, ap);
    va_end(ap);
}
