/*
 * host.h - one plugin instance as the broker sees it, and the host API tables handed to it.
 *
 * host.c is the only file that calls a plugin's descriptor and the only one that implements
 * the host APIs (sb_source_api, sb_transport_api): the core calls the source and the
 * transports through the functions below and never sees a descriptor (it calls back only the
 * snapshot and replay functions a transport hands it). An sb_host owns its plugin
 * library, its resolved options (and a source's [database] values and setup) and, between
 * create and destroy, the plugin's state. Every watch and timer a plugin registers is tagged
 * with its sb_host, so stopping an instance also removes whatever it forgot.
 */
#ifndef SB_HOST_H
#define SB_HOST_H

#include "config.h"
#include "loop.h"

#include <stdbool.h>
#include <stdio.h>
#include <syncbroker/plugin.h>

/* What the host APIs' epoch, stats and data calls reach, with the ud given to sb_host_open:
 * the core in the broker (sb_core_peer), a recorder in libsyncbroker-testhost. host.c has
 * already checked the arguments against plugin.h (the instance started, a cut's flag, table
 * indices, a change's op and row, a presence's client and state), so the peer takes them as
 * they come. */
typedef struct sb_host_peer {
    const char *(*epoch)(void *ud);
    void (*stats)(void *ud, sb_stats *out);
    /* from a source */
    int (*emit)(void *ud, const sb_change *changes, size_t n);
    void (*rows)(void *ud, uint64_t req, const sb_row *rows, size_t n);
    void (*done)(void *ud, uint64_t req, int status);
    void (*resync)(void *ud, const char *reason);
    void (*snapshot_cut)(void *ud, uint64_t req);
    void (*lease)(void *ud, bool active, const char *reason);
    /* from a transport */
    int (*snapshot)(void *ud, const uint32_t *tables, size_t n, sb_snapshot_fn fn, void *fn_ud,
                    uint64_t *req);
    void (*snapshot_resume)(void *ud, uint64_t req);
    void (*cancel)(void *ud, uint64_t req);
    int (*since)(void *ud, const char *epoch, uint64_t seq, sb_replay_fn fn, void *fn_ud,
                 uint64_t *last);
    int (*presence)(void *ud, const sb_presence *p);
} sb_host_peer;

/* Open the plugin of section sec (plugin_loader.c) and resolve its options (and a source's
 * [database] keys) (config.c); its calls reach peer (borrowed, with peer_ud). *out owned by
 * the caller (sb_host_free). */
int sb_host_open(const sb_host_peer *peer, void *peer_ud, sb_loop *loop, void *zmq_ctx,
                 const sb_config *cfg, const sb_config_section *sec, sb_host **out);
/* The same for a descriptor already in memory (linked into a test): checked as a loaded
 * one is. */
int sb_host_open_descriptor(const sb_host_peer *peer, void *peer_ud, sb_loop *loop, void *zmq_ctx,
                            const sb_config *cfg, const sb_config_section *sec,
                            const sb_plugin_header *desc, sb_host **out);
/* The plugin's create(); nothing to do when it is created already. */
int sb_host_create(sb_host *h);
int sb_host_start(sb_host *h);
/* --check: the plugin's check() if it has one (SB_ERR_UNSUPPORTED if not). */
int sb_host_check(sb_host *h);
/* SIGHUP: the plugin's reload() if it is started and has one; a failure is logged here.
 * 0, SB_ERR_UNSUPPORTED (nothing to reload), or the plugin's error. */
int sb_host_reload(sb_host *h);
/* Stop the instance and drop the watches and timers it left registered (a plugin bug,
 * logged as a warning): how many. */
size_t sb_host_stop(sb_host *h);
/* Destroy the instance (if created) and close the library. NULL is ignored. */
void sb_host_free(sb_host *h);

sb_plugin_kind sb_host_kind(const sb_host *h);
bool sb_host_started(const sb_host *h);
/* The state the plugin's create() made (NULL before): for the test host only. */
void *sb_host_state(const sb_host *h);
/* What the last stop, or the clean-up after a failed start, found left registered. */
size_t sb_host_leftovers(const sb_host *h);
const char *sb_host_section(const sb_host *h); /* "source.main": the log scope */

/* Print the plugin's section with every option resolved, in INI form. */
void sb_host_print_section(const sb_host *h, FILE *out);
/* A source's [database] specs and values (NULL for a transport), for sb_config_print_core. */
const sb_option_spec *sb_host_database_specs(const sb_host *h);
const sb_option_value *sb_host_database_values(const sb_host *h);

/* --- calls into a source (see plugin.h for each callback's contract) --------------- */
bool sb_host_source_sets_cut(const sb_host *h); /* SB_SOURCE_SETS_SNAPSHOT_CUT */
bool sb_host_source_has_published(const sb_host *h);
/* SB_ERR_BUSY when not started, SB_ERR_UNSUPPORTED without fetch(), else the source's. */
int sb_host_source_fetch(sb_host *h, uint64_t req, uint32_t table, const sb_key *keys, size_t n);
int sb_host_source_snapshot(sb_host *h, uint64_t req, const uint32_t *tables, size_t n);
void sb_host_source_cancel(sb_host *h, uint64_t req);
/* False when the source has no snapshot_flow() (nothing was paused or resumed). */
bool sb_host_source_snapshot_flow(sb_host *h, uint64_t req, bool go);
void sb_host_source_published(sb_host *h, uint64_t position);

/* --- calls into a transport -------------------------------------------------------- */
/* What the transport's publish() returned (>= 0: sent or queued). */
int sb_host_publish(sb_host *h, const sb_message *m);

#endif
