/*
 * Logging for both processes: one line per event on stderr, with a stable event id so that
 * operators can grep and alert on ids rather than on prose:
 *
 *   2026-11-21T20:30:00.123Z info  dp.snapshot.applied version=3 keys=2
 *
 * Library-style modules of common/ do not log; their callers do, once.
 */
#ifndef TOLLGATE_LOG_H
#define TOLLGATE_LOG_H

#include <stdarg.h>

enum tg_log_level { TG_LOG_DEBUG = 0, TG_LOG_INFO, TG_LOG_WARN, TG_LOG_ERROR };

/* Reads TOLLGATE_LOG_LEVEL (debug|info|warn|error, default info). */
void tg_log_init(void);
void tg_log(enum tg_log_level level, const char *id, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int tg_log_enabled(enum tg_log_level level);

#define tg_debug(id, ...) tg_log(TG_LOG_DEBUG, id, __VA_ARGS__)
#define tg_info(id, ...)  tg_log(TG_LOG_INFO, id, __VA_ARGS__)
#define tg_warn(id, ...)  tg_log(TG_LOG_WARN, id, __VA_ARGS__)
#define tg_error(id, ...) tg_log(TG_LOG_ERROR, id, __VA_ARGS__)

#endif
