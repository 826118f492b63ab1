/*
 * source_notify - reads the change log with the gap-free cursor (docs/capture.md) when
 * PostgreSQL sends a NOTIFY on channel "syncbroker", with a slow poll as a safety net. The
 * engine is sb_source.c; this file only chooses how the cursor is woken.
 */
#include "sb_source.h"

SB_SOURCE_PLUGIN("source_notify", SB_WAKE_NOTIFY, "1000",
                 "safety-net read this often (ms), besides every NOTIFY",
                 "PostgreSQL change log, read on NOTIFY (with a safety-net poll)")
