/*
 * config.h - the broker's INI configuration (one file, see README "Configuration").
 *
 * [broker] keys and [database] tables are checked against a typed table. [source.NAME] and
 * [transport.NAME] sections name a plugin and keep their other keys as raw text, and so does
 * [database] for its other keys (conninfo...): sb_config_resolve_options checks them later
 * against the plugin's option spec (a source's database_options for [database]). Every error
 * is logged as "FILE:LINE: [section] key: message", all errors of a file are reported, not
 * just the first.
 */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stdint.h>
#include <stdio.h>
#include <syncbroker/plugin.h>

/* A raw "key = value" of a plugin section or of [database]. */
typedef struct sb_config_kv {
    char *key;
    char *value;
    int line;
} sb_config_kv;

typedef struct sb_config_section {
    char *name;          /* "source.main", "transport.zmq"; "database" for cfg->database */
    sb_plugin_kind kind; /* 0 for cfg->database */
    char *plugin;        /* value of `plugin`, NULL if missing */
    int line;            /* line of the [section] header; 0 if the file has none */
    int plugin_line;
    sb_config_kv *kv; /* every key but `plugin` ([database]: but `tables`) */
    size_t nkv;
} sb_config_section;

/* The number of typed [broker] and [database] keys (config.c's table). */
#define SB_CONFIG_NCORE 10

typedef struct sb_config {
    char *path;       /* the file as given */
    char *plugin_dir; /* resolved against the file's folder */
    int64_t debounce_ms;
    int64_t heartbeat_ms;
    int64_t replay_buffer;
    sb_log_level log_level;
    int64_t presence_max_entries, presence_max_per_client, presence_max_per_entity;
    int64_t presence_max_ttl_ms;
    sb_config_section database; /* [database] keys the source reads (raw, like a plugin's) */
    char **tables;              /* "schema.name", config order */
    size_t ntables;
    int tables_line; /* where `tables` is set, for errors found later (unknown table) */
    int core_lines[SB_CONFIG_NCORE]; /* where each typed key is set; 0 = defaulted */
    int64_t *table_debounce_ms;      /* per table; -1 = use debounce_ms */
    sb_config_section *sections;
    size_t nsections;
} sb_config;

/* Parse and check a file. On success *out is owned by the caller (sb_config_free). */
int sb_config_load(const char *path, sb_config **out);
/* The same for a stream open for reading (left open); `path` names it in messages and is
 * where a relative plugin_dir is resolved from. */
int sb_config_read(FILE *f, const char *path, sb_config **out);
void sb_config_free(sb_config *cfg);

/* The line where `key` of [section] is set, for errors found after parsing (a plugin's
 * create() or check()): a plugin section's key, else its header; a [broker]/[database] key,
 * else 0 (defaulted, or no such key). */
int sb_config_key_line(const sb_config *cfg, const char *section, const char *key);

/* The window that applies to table i. */
int64_t sb_config_table_debounce(const sb_config *cfg, size_t i);

/* Print `key = value` (no newline) so that it reads back as value: one starting with ';'
 * follows the '=' directly, since after white space inih takes it for a comment. */
void sb_config_print_kv(FILE *out, const char *key, const char *value);

/* Check sec's keys (a plugin section, or &cfg->database) against specs (NULL-name-terminated;
 * NULL = none) and resolve defaults, logging every refusal with file and line; `owner` names
 * the plugin in "unknown key for plugin X". *values gets one entry per spec entry (its strings
 * point into sec or the specs); free with free(). */
int sb_config_resolve_options(const sb_config *cfg, const sb_config_section *sec,
                              const sb_option_spec *specs, const char *owner,
                              sb_option_value **values);

/* Print `key = value` lines of resolved options ("  ; default" after a defaulted one). */
void sb_config_print_options(FILE *out, const sb_option_spec *specs, const sb_option_value *values);

/* Print [broker] and [database] with every default resolved, in INI form. The [database]
 * keys other than tables are printed resolved against db_specs/db_values (the source's),
 * or as written when db_specs is NULL. */
void sb_config_print_core(const sb_config *cfg, const sb_option_spec *db_specs,
                          const sb_option_value *db_values, FILE *out);

#endif
