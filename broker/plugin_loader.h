/*
 * plugin_loader.h - open a plugin file, check its descriptor, resolve its options.
 *
 * Refusals are logged with the config file, line and key that named the plugin, the plugin
 * file, and (for ABI problems) both versions, then the library is closed again.
 */
#ifndef SB_PLUGIN_LOADER_H
#define SB_PLUGIN_LOADER_H

#include "config.h"

#include <stdio.h>
#include <syncbroker/plugin.h>

typedef struct sb_plugin_lib sb_plugin_lib;

/* Open <cfg->plugin_dir>/<sec->plugin>.so for section sec and check it fits the section's
 * kind. *out is owned by the caller (sb_plugin_lib_close). */
int sb_plugin_lib_open(const sb_config *cfg, const sb_config_section *sec, sb_plugin_lib **out);
void sb_plugin_lib_close(sb_plugin_lib *lib);

const sb_plugin *sb_plugin_lib_descriptor(const sb_plugin_lib *lib);
const char *sb_plugin_lib_path(const sb_plugin_lib *lib);

/* Check sec's keys against the plugin's option spec and resolve defaults. *values gets one
 * entry per spec entry (its strings point into sec or the spec); free with free(). */
int sb_plugin_resolve_options(const sb_config *cfg, const sb_config_section *sec,
                              const sb_plugin *desc, sb_option_value **values);

/* Print a plugin section with every option resolved, in INI form. */
void sb_plugin_print_section(const sb_config_section *sec, const sb_plugin *desc,
                             const sb_option_value *values, FILE *out);

#endif
