/*
 * source_poll - reads the change log every poll_interval_ms with the gap-free cursor
 * (docs/capture.md). The engine is sb_source.c; this file only chooses
 * how the cursor is woken.
 */
#include "sb_source.h"

SB_SOURCE_PLUGIN("source_poll", SB_WAKE_POLL, "100", "read the change log this often (ms)",
                 "PostgreSQL change log, read every poll_interval_ms")
