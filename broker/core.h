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

int sb_core_new(sb_loop *loop, const sb_config *cfg, sb_core **out);
void sb_core_free(sb_core *core);

/* Register the plugin instances (borrowed). One source, any number of transports. */
void sb_core_set_source(sb_core *core, sb_host *source);
int sb_core_add_transport(sb_core *core, sb_host *transport);

/* Start heartbeats; call once the plugins have started. */
int sb_core_start(sb_core *core);

/* Apply the reloadable keys (windows, heartbeat) of cfg, the running config into which main
 * moved the reloaded values; the rest is kept. */
void sb_core_reload(sb_core *core, const sb_config *cfg);

/* Shutdown: publish every pending entity now. Then run the loop until sb_core_drained. */
void sb_core_drain(sb_core *core);
bool sb_core_drained(const sb_core *core);

/* Cancel every snapshot still running (before the plugins stop). */
void sb_core_cancel_all(sb_core *core);

/* The host APIs' implementation, called by host.c only (see plugin.h for each call's
 * contract). */
const char *sb_core_epoch(const sb_core *core);
int sb_core_emit(sb_core *core, const sb_change *changes, size_t n);
void sb_core_rows(sb_core *core, uint64_t req, const sb_row *rows, size_t n);
void sb_core_done(sb_core *core, uint64_t req, int status);
void sb_core_resync(sb_core *core, const char *reason);
void sb_core_snapshot_cut(sb_core *core, uint64_t req);
void sb_core_lease(sb_core *core, bool active, const char *reason);
int sb_core_snapshot(sb_core *core, const uint32_t *tables, size_t n, sb_snapshot_fn fn, void *ud,
                     uint64_t *req);
void sb_core_snapshot_resume(sb_core *core, uint64_t req);
void sb_core_cancel(sb_core *core, uint64_t req);
int sb_core_since(sb_core *core, const char *epoch, uint64_t seq, sb_replay_fn fn, void *ud,
                  uint64_t *last);
int sb_core_presence(sb_core *core, const sb_presence *p);
void sb_core_stats(sb_core *core, sb_stats *out);

#endif
