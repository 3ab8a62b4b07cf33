/*
 * log.h - leveled logging to stderr, safe to call from any thread.
 *
 * Each line carries a timestamp, the level, and the thread's role ("main",
 * "w0", ...). Messages below the configured level cost one comparison.
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

/* Parse "debug", "info", "warn"/"warning", "error"; -1 if unknown. */
int log_level_parse(const char *name);

/* Name the calling thread in its log lines (at most 15 characters). */
void log_set_thread_name(const char *name);

/* Print one line at the given level (printf format). */
void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_min_level <= LOG_DEBUG)                                                            \
            log_write(LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)
#define log_info(...)                                                                              \
    do {                                                                                           \
        if (log_min_level <= LOG_INFO)                                                             \
            log_write(LOG_INFO, __VA_ARGS__);                                                      \
    } while (0)
#define log_warn(...)  log_write(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

#endif
