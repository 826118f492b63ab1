/*
 * host.h - one plugin instance as the broker sees it, and the sb_host_api handed to it.
 *
 * An sb_host owns its plugin library, its resolved options and (between create and destroy)
 * the plugin's state. Every watch and timer a plugin registers is tagged with its sb_host,
 * so stopping an instance also removes whatever it forgot.
 */
#ifndef SB_HOST_H
#define SB_HOST_H

#include "config.h"
#include "loop.h"
#include "plugin_loader.h"

#include <stdbool.h>
#include <syncbroker/plugin.h>

typedef struct sb_core sb_core;

struct sb_host {
    sb_core *core;
    sb_loop *loop;
    void *zmq_ctx; /* the broker's one ZeroMQ context, borrowed */
    const sb_config *cfg;
    char *section; /* "source.main"; the log scope */
    sb_plugin_lib *lib;
    const sb_plugin *desc;
    sb_option_value *opts;
    void *state;
    bool created, started;
};

/* Open the plugin of section sec and resolve its options; *out owned by the caller. */
int sb_host_open(sb_core *core, sb_loop *loop, void *zmq_ctx, const sb_config *cfg,
                 const sb_config_section *sec, sb_host **out);
int sb_host_create(sb_host *h);
int sb_host_start(sb_host *h);
/* SIGHUP: the plugin's reload() (ABI 1.2) if it is started and has one; a failure is
 * logged here. 0, SB_ERR_UNSUPPORTED (nothing to reload), or the plugin's error. */
int sb_host_reload(sb_host *h);
/* Stop the instance and drop its leftover watches and timers. */
void sb_host_stop(sb_host *h);
/* Destroy the instance (if created) and close the library. NULL is ignored. */
void sb_host_free(sb_host *h);

#endif
