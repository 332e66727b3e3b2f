/*
 * Line-oriented logger (see tollgate/log.h). Each line is formatted into a stack buffer and written
 * with one write(2), so lines from different threads never interleave.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include "tollgate/log.h"

static enum tg_log_level min_level = TG_LOG_INFO;
static const char *level_names[] = {"debug", "info ", "warn ", "error"};

void
tg_log_init(void)
{
    const char *v = getenv("TOLLGATE_LOG_LEVEL");
    if (v == NULL)
        return;
    for (int i = 0; i < 4; i++) {
        if (strncasecmp(v, level_names[i], strlen(v)) == 0) {
            min_level = i;
            return;
        }
    }
}

int
tg_log_enabled(enum tg_log_level level)
{
    return level >= min_level;
}

void
tg_log(enum tg_log_level level, const char *id, const char *fmt, ...)
{
    if (level < min_level)
        return;

    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n =
        snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], id);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if (n > (int)sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t unused = write(STDERR_FILENO, line, n);
    (void)unused;
}
