/*
 * log.h - leveled logging to stderr, safe to call from any thread.
 *
 * Each line carries a timestamp, the level, the thread's role ("main",
 * "w0", ...) and the message; in JSON lines also the event: the name of the
 * function that logged. Messages below the configured level cost one
 * comparison.
 */
#ifndef SP_LOG_H
#define SP_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO = 1,
    LOG_WARN = 2,
    LOG_ERROR = 3,
};

extern int log_min_level;

/* Set the lowest level that is printed. */
void log_set_level(int level);

/* Print JSON lines ({"time", "level", "thread", "event", "msg"}) instead of
 * text. */
void log_set_json(bool json);

/* Parse "debug", "info", "warn"/"warning", "error"; -1 if unknown. */
int log_level_parse(const char *name);

/* Name the calling thread in its log lines (at most 15 characters). */
void log_set_thread_name(const char *name);

/* Print one line at the given level (printf format); event names what
 * happened (the logging function). */
void log_write(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like log_write, with the figures of the line also as named fields: kv is
 * "key=value" pairs separated by spaces (values without spaces). Text lines
 * show only the message (which states the figures); JSON lines add each
 * pair as a member, numbers as numbers. */
void log_kv(int level, const char *event, const char *kv, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The level below which nothing is printed (changed by a reload). */
#define LOG_MIN() __atomic_load_n(&log_min_level, __ATOMIC_RELAXED)

#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (LOG_MIN() <= LOG_DEBUG)                                                                \
            log_write(LOG_DEBUG, __func__, __VA_ARGS__);                                           \
    } while (0)
#define log_info(...)                                                                              \
    do {                                                                                           \
        if (LOG_MIN() <= LOG_INFO)                                                                 \
            log_write(LOG_INFO, __func__, __VA_ARGS__);                                            \
    } while (0)
#define log_warn(...)  log_write(LOG_WARN, __func__, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __func__, __VA_ARGS__)

#endif
