/*
 * plugin_loader.h - open a plugin file, negotiate its ABI version, check its descriptor.
 *
 * Refusals are logged with the config file and line of `plugin =`, the plugin file and (for
 * version problems) both versions, then the library is closed again. Option values are
 * config.c's (sb_config_resolve_options); the loader only checks the option specs.
 */
#ifndef SB_PLUGIN_LOADER_H
#define SB_PLUGIN_LOADER_H

#include "config.h"

#include <syncbroker/plugin.h>

typedef struct sb_plugin_lib sb_plugin_lib;

/* Open <cfg->plugin_dir>/<sec->plugin>.so for section sec and check it fits the section's
 * kind. *out is owned by the caller (sb_plugin_lib_close). */
int sb_plugin_lib_open(const sb_config *cfg, const sb_config_section *sec, sb_plugin_lib **out);
void sb_plugin_lib_close(sb_plugin_lib *lib);

/* The checked descriptor: an sb_source_plugin or sb_transport_plugin as header.kind says. */
const sb_plugin_header *sb_plugin_lib_descriptor(const sb_plugin_lib *lib);
const char *sb_plugin_lib_path(const sb_plugin_lib *lib);

/* The descriptor checks of sb_plugin_lib_open (everything after the entry point returned),
 * for a descriptor from anywhere (the unit tests link theirs); path names it in messages. */
int sb_plugin_check_descriptor(const sb_config *cfg, const sb_config_section *sec, const char *path,
                               const sb_plugin_header *h);

#endif
