/*
 * log.h - the broker's one logging call.
 *
 * Lines go to stderr as "2026-11-28T12:00:00.123Z LEVEL [scope] message". The scope is the
 * broker part or plugin section ("broker", "config", "source.main"); NULL omits it.
 */
#ifndef SB_LOG_H
#define SB_LOG_H

#include <stdarg.h>
#include <syncbroker/plugin.h>

void sb_log_set_level(sb_log_level level);
sb_log_level sb_log_get_level(void);

/* Parse "error|warn|info|debug"; returns 0 or SB_ERR_INVAL. */
int sb_log_parse_level(const char *text, sb_log_level *out);
const char *sb_log_level_name(sb_log_level level);

/* Where lines go instead of stderr: fn gets each line above the level, formatted but
 * without the time stamp. NULL restores stderr. One sink per process (the test host's). */
typedef void (*sb_log_sink)(void *ud, sb_log_level level, const char *scope, const char *msg);
void sb_log_set_sink(sb_log_sink fn, void *ud);
void sb_log_get_sink(sb_log_sink *fn, void **ud);

void sb_log(sb_log_level level, const char *scope, const char *fmt, ...) SB_PRINTF(3, 4);
void sb_logv(sb_log_level level, const char *scope, const char *fmt, va_list ap);

#endif
