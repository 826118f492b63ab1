/*
 * core.h - the broker's core: sequencing, debounce, fan-out, snapshot routing, replay
 * buffer, presence and heartbeats.
 *
 * Changes flow source -> core (debounce; the change's own row, or a row fetch through the
 * source; seq/tseq/epoch; encode once) -> every transport. Plugins are reached through
 * host.h only. The core owns the debounce engine, the replay ring and
 * the presence set; it borrows the config, the loop and the plugin hosts, which outlive it.
 */
#ifndef SB_CORE_H
#define SB_CORE_H

#include "config.h"
#include "host.h"
#include "loop.h"

#include <stdbool.h>
#include <syncbroker/plugin.h>

typedef struct sb_core sb_core;

int sb_core_new(sb_loop *loop, const sb_config *cfg, sb_core **out);
void sb_core_free(sb_core *core);

/* Register the plugin instances (borrowed). One source, any number of transports. */
void sb_core_set_source(sb_core *core, sb_host *source);
int sb_core_add_transport(sb_core *core, sb_host *transport);

/* Start heartbeats; call once the plugins have started. */
int sb_core_start(sb_core *core);

/* Apply the reloadable keys (windows, heartbeat) of the running config (borrowed at
 * sb_core_new), into which main moved the reloaded values; the rest is kept. */
void sb_core_reload(sb_core *core);

/* Shutdown: publish every pending entity now. Then run the loop until sb_core_drained. */
void sb_core_drain(sb_core *core);
bool sb_core_drained(const sb_core *core);

/* Cancel every snapshot still running (before the plugins stop). */
void sb_core_cancel_all(sb_core *core);

/* What the plugins' host API calls reach (host.c), with the core as ud. */
extern const sb_host_peer sb_core_peer;

#endif
