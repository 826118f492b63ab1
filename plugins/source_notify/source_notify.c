/*
 * source_notify - reads the change log with the gap-free cursor (docs/capture.md) when
 * PostgreSQL sends a NOTIFY on channel "syncbroker", with a slow poll as a safety net. The
 * engine is plugins/common/sb_source.c; this file only chooses how the cursor is woken.
 */
#include "sb_source.h"

static const sb_option_spec options[] = {
    SB_SOURCE_OPTIONS("1000", "safety-net read this often (ms), besides every NOTIFY"),
};

static int notify_create(const sb_host_api *api, sb_host *host, const sb_option_value *opts,
                         void **state)
{
    return sb_source_create(api, host, opts, SB_WAKE_NOTIFY, state);
}

static const sb_plugin descriptor = {
    .abi_major = 1,
    .abi_minor = 0,
    .size = sizeof(sb_plugin),
    .kind = SB_PLUGIN_SOURCE,
    .name = "source_notify",
    .version = "1.0.0",
    .description = "PostgreSQL change log, read on NOTIFY (with a safety-net poll)",
    .options = options,
    .create = notify_create,
    .start = sb_source_start,
    .stop = sb_source_stop,
    .destroy = sb_source_destroy,
    .fetch = sb_source_fetch,
    .snapshot = sb_source_snapshot,
    .cancel = sb_source_cancel,
};

SB_PLUGIN_DECLARE(descriptor)
