/* log.c - see log.h. */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static sb_log_level current_level = SB_LOG_INFO;

static sb_log_sink sink;
static void *sink_ud;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void sb_log_set_sink(sb_log_sink fn, void *ud)
{
    sink = fn;
    sink_ud = ud;
}

void sb_log_get_sink(sb_log_sink *fn, void **ud)
{
    *fn = sink;
    *ud = sink_ud;
}

void sb_log_set_level(sb_log_level level)
{
    current_level = level;
}

sb_log_level sb_log_get_level(void)
{
    return current_level;
}

int sb_log_parse_level(const char *text, sb_log_level *out)
{
    for (int i = SB_LOG_ERROR; i <= SB_LOG_DEBUG; i++) {
        if (strcasecmp(text, level_names[i]) == 0) {
            *out = (sb_log_level)i;
            return SB_OK;
        }
    }
    return SB_ERR_INVAL;
}

const char *sb_log_level_name(sb_log_level level)
{
    return level <= SB_LOG_DEBUG ? level_names[level] : "?";
}

void sb_logv(sb_log_level level, const char *scope, const char *fmt, va_list ap)
{
    if (level > current_level)
        return;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (sink) {
        sink(sink_ud, level, scope, msg);
        return;
    }
    struct timespec ts;
    struct tm tm;
    char stamp[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);

    /* One fprintf per line keeps lines whole when several processes share stderr. */
    if (scope)
        fprintf(stderr, "%s.%03ldZ %-5s [%s] %s\n", stamp, ts.tv_nsec / 1000000L,
                level_names[level], scope, msg);
    else
        fprintf(stderr, "%s.%03ldZ %-5s %s\n", stamp, ts.tv_nsec / 1000000L, level_names[level],
                msg);
}

void sb_log(sb_log_level level, const char *scope, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_logv(level, scope, fmt, ap);
    va_end(ap);
}
