/* config.c - see config.h. */
#include "config.h"
#include "log.h"
#include "sb_ident.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

enum key_type { KEY_INT, KEY_STRING, KEY_PATH, KEY_LEVEL, KEY_TABLES };

/* The typed keys of [broker] and [database], PgBouncer-style. The other [database] keys are
 * the source's (its database_options), kept raw in cfg->database. */
typedef struct key_def {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset;
    const char *default_value; /* NULL: required */
    int64_t min, max;
} key_def;

static const key_def core_keys[] = {
    {"broker", "plugin_dir", KEY_PATH, offsetof(sb_config, plugin_dir), ".", 0, 0},
    {"broker", "debounce_ms", KEY_INT, offsetof(sb_config, debounce_ms), "200", 0, 3600000},
    {"broker", "heartbeat_ms", KEY_INT, offsetof(sb_config, heartbeat_ms), "1000", 10, 3600000},
    {"broker", "replay_buffer", KEY_INT, offsetof(sb_config, replay_buffer), "10000", 0, 100000000},
    {"broker", "log_level", KEY_LEVEL, offsetof(sb_config, log_level), "info", 0, 0},
    /* Presence comes from peers: bounded in all, per client id and per entity; the TTL's
     * floor is the clients' default ttl_ms (6000), which must stay accepted. */
    {"broker", "presence_max_entries", KEY_INT, offsetof(sb_config, presence_max_entries), "65536",
     1, 10000000},
    {"broker", "presence_max_per_client", KEY_INT, offsetof(sb_config, presence_max_per_client),
     "256", 1, 1000000},
    {"broker", "presence_max_per_entity", KEY_INT, offsetof(sb_config, presence_max_per_entity),
     "32", 1, 4096},
    {"broker", "presence_max_ttl_ms", KEY_INT, offsetof(sb_config, presence_max_ttl_ms), "60000",
     6000, 86400000},
    {"database", "tables", KEY_TABLES, offsetof(sb_config, tables), NULL, 0, 0},
};
#define NCORE_KEYS (sizeof core_keys / sizeof core_keys[0])
_Static_assert(NCORE_KEYS == SB_CONFIG_NCORE, "SB_CONFIG_NCORE is the size of core_keys");

#define TABLE_DEBOUNCE_PREFIX "debounce_ms."

/* Parser state shared by the line reader and the inih handler. */
typedef struct parse_state {
    sb_config *cfg;
    FILE *file;
    int line;          /* line the handler is looking at */
    bool continuation; /* that line started with white space (an inih continuation) */
    int errors;
    bool table_expected; /* `tables` so far is empty or ends with a comma */
    int tables_last_line;
    struct pending_debounce {
        char *key; /* "debounce_ms.schema.table" */
        int64_t ms;
        int line;
    } * debounces;
    size_t ndebounces;
    sb_config_section *current; /* plugin section (or cfg->database) being filled */
    char current_name[128];
} parse_state;

static void config_error(parse_state *ps, int line, const char *section, const char *key,
                         const char *fmt, ...) SB_PRINTF(5, 6);

static void config_error(parse_state *ps, int line, const char *section, const char *key,
                         const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (key)
        sb_log(SB_LOG_ERROR, "config", "%s:%d: [%s] %s: %s", ps->cfg->path, line, section, key,
               msg);
    else if (section)
        sb_log(SB_LOG_ERROR, "config", "%s:%d: [%s]: %s", ps->cfg->path, line, section, msg);
    else
        sb_log(SB_LOG_ERROR, "config", "%s:%d: %s", ps->cfg->path, line, msg);
    ps->errors++;
}

static int parse_int(const char *text, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return SB_ERR_INVAL;
    *out = v;
    return SB_OK;
}

static char *resolve_path(const char *config_path, const char *value)
{
    if (value[0] == '/')
        return strdup(value);
    const char *slash = strrchr(config_path, '/');
    size_t dirlen = slash ? (size_t)(slash - config_path) : 1;
    const char *dir = slash ? config_path : ".";
    size_t len = dirlen + 1 + strlen(value) + 1;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%.*s/%s", (int)dirlen, dir, value);
    return p;
}

/* Append the tables of one line of `tables` ("a.b, c.d") to cfg->tables. Continuation lines
 * carry on the same comma-separated list, so whether a table or a comma comes next is kept
 * across lines (ps->table_expected); an empty entry or a missing comma is an error, not
 * something to skip over. */
static void add_tables(parse_state *ps, const char *value)
{
    sb_config *cfg = ps->cfg;
    const char *p = value;
    ps->tables_last_line = ps->line;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            return;
        if (*p == ',') {
            if (ps->table_expected)
                config_error(ps, ps->line, "database", "tables",
                             "empty entry (a comma with no table before it)");
            ps->table_expected = true;
            p++;
            continue;
        }
        const char *start = p;
        while (*p && *p != ',' && !isspace((unsigned char)*p))
            p++;
        char *name = strndup(start, (size_t)(p - start));
        if (!name) {
            ps->errors++;
            return;
        }
        bool expected = ps->table_expected;
        ps->table_expected = false;
        bool dup = false;
        for (size_t i = 0; i < cfg->ntables; i++)
            dup |= strcmp(cfg->tables[i], name) == 0;
        bool valid = sb_table_name_valid(name);
        if (!expected)
            config_error(ps, ps->line, "database", "tables", "missing comma before '%s'", name);
        else if (!valid)
            config_error(ps, ps->line, "database", "tables",
                         "'%s' is not a table name of the form schema.table (unquoted lowercase "
                         "identifiers)",
                         name);
        else if (dup)
            config_error(ps, ps->line, "database", "tables", "'%s' is listed twice", name);
        if (!expected || !valid || dup) {
            free(name);
            continue;
        }
        char **grown = realloc(cfg->tables, (cfg->ntables + 1) * sizeof *grown);
        if (!grown) {
            free(name);
            ps->errors++;
            return;
        }
        cfg->tables = grown;
        cfg->tables[cfg->ntables++] = name;
    }
}

static int set_core_key(parse_state *ps, size_t k, const char *value)
{
    const key_def *d = &core_keys[k];
    char *field = (char *)ps->cfg + d->offset;
    switch (d->type) {
    case KEY_INT:
        if (parse_int(value, d->min, d->max, (int64_t *)(void *)field)) {
            config_error(ps, ps->line, d->section, d->name,
                         "'%s' is not an integer between %lld and %lld", value, (long long)d->min,
                         (long long)d->max);
            return SB_ERR_CONFIG;
        }
        return SB_OK;
    case KEY_LEVEL:
        if (sb_log_parse_level(value, (sb_log_level *)(void *)field)) {
            config_error(ps, ps->line, d->section, d->name,
                         "'%s' is not one of error, warn, info, debug", value);
            return SB_ERR_CONFIG;
        }
        return SB_OK;
    case KEY_STRING:
    case KEY_PATH: {
        char **slot = (char **)(void *)field;
        free(*slot);
        *slot = d->type == KEY_PATH ? resolve_path(ps->cfg->path, value) : strdup(value);
        return *slot ? SB_OK : SB_ERR_NOMEM;
    }
    case KEY_TABLES:
        add_tables(ps, value);
        return SB_OK;
    }
    return SB_ERR_INVAL;
}

static int handle_table_debounce(parse_state *ps, const char *name, const char *value)
{
    int64_t ms;
    if (parse_int(value, 0, 3600000, &ms)) {
        config_error(ps, ps->line, "broker", name, "'%s' is not an integer between 0 and 3600000",
                     value);
        return 1;
    }
    struct pending_debounce *grown = realloc(ps->debounces, (ps->ndebounces + 1) * sizeof *grown);
    char *copy = strdup(name);
    if (!grown || !copy) {
        free(copy);
        if (grown)
            ps->debounces = grown;
        ps->errors++;
        return 1;
    }
    ps->debounces = grown;
    ps->debounces[ps->ndebounces++] = (struct pending_debounce){copy, ms, ps->line};
    return 1;
}

static int handle_core(parse_state *ps, const char *section, const char *name, const char *value)
{
    if (strcmp(section, "broker") == 0 &&
        strncmp(name, TABLE_DEBOUNCE_PREFIX, strlen(TABLE_DEBOUNCE_PREFIX)) == 0)
        return handle_table_debounce(ps, name, value);
    for (size_t k = 0; k < NCORE_KEYS; k++) {
        if (strcmp(core_keys[k].section, section) || strcmp(core_keys[k].name, name))
            continue;
        bool tables_continued = core_keys[k].type == KEY_TABLES && ps->continuation;
        if (ps->cfg->core_lines[k] && !tables_continued) {
            config_error(ps, ps->line, section, name, "set twice (first on line %d)",
                         ps->cfg->core_lines[k]);
            return 1;
        }
        if (!ps->cfg->core_lines[k])
            ps->cfg->core_lines[k] = ps->line;
        if (set_core_key(ps, k, value) == SB_ERR_NOMEM)
            ps->errors++;
        return 1;
    }
    config_error(ps, ps->line, section, name, "unknown key");
    return 1;
}

/* A raw key of a plugin section or of [database] (`plugin` is only a plugin section's). */
static int handle_raw_key(parse_state *ps, const char *name, const char *value)
{
    sb_config_section *sec = ps->current;
    if (!name[0]) {
        /* Printed back, " = value" would read as a continuation of the key before. */
        config_error(ps, ps->line, sec->name, "(no name)", "a line '= value' names no key");
        return 1;
    }
    if (sec->kind && strcmp(name, "plugin") == 0) {
        if (sec->plugin) {
            config_error(ps, ps->line, sec->name, name, "set twice (first on line %d)",
                         sec->plugin_line);
            return 1;
        }
        sec->plugin = strdup(value);
        sec->plugin_line = ps->line;
        if (!sec->plugin)
            ps->errors++;
        return 1;
    }
    for (size_t i = 0; i < sec->nkv; i++) {
        if (strcmp(sec->kv[i].key, name) == 0) {
            config_error(ps, ps->line, sec->name, name, "set twice (first on line %d)",
                         sec->kv[i].line);
            return 1;
        }
    }
    sb_config_kv *grown = realloc(sec->kv, (sec->nkv + 1) * sizeof *grown);
    if (!grown) {
        ps->errors++;
        return 1;
    }
    sec->kv = grown;
    sec->kv[sec->nkv] = (sb_config_kv){strdup(name), strdup(value), ps->line};
    if (!sec->kv[sec->nkv].key || !sec->kv[sec->nkv].value)
        ps->errors++;
    sec->nkv++;
    return 1;
}

static int on_ini_key(void *user, const char *section, const char *name, const char *value)
{
    parse_state *ps = user;
    if (strcmp(section, "broker") == 0 ||
        (strcmp(section, "database") == 0 && strcmp(name, "tables") == 0))
        return handle_core(ps, section, name, value);
    if (ps->current && strcmp(ps->current->name, section) == 0)
        return handle_raw_key(ps, name, value);
    return 1; /* unknown section: reported once by the line reader */
}

/* Called by the reader for every "[name]" line. */
static void open_section(parse_state *ps, const char *name)
{
    sb_config *cfg = ps->cfg;
    ps->current = NULL;
    if (strcmp(name, "broker") == 0)
        return;
    if (strcmp(name, "database") == 0) {
        /* Written twice, its keys still go together (a key set twice is refused). */
        if (!cfg->database.line)
            cfg->database.line = ps->line;
        ps->current = &cfg->database;
        return;
    }
    sb_plugin_kind kind;
    const char *instance;
    if (strncmp(name, "source.", 7) == 0) {
        kind = SB_PLUGIN_SOURCE;
        instance = name + 7;
    } else if (strncmp(name, "transport.", 10) == 0) {
        kind = SB_PLUGIN_TRANSPORT;
        instance = name + 10;
    } else {
        config_error(ps, ps->line, name, NULL,
                     "unknown section (expected broker, database, source.NAME or "
                     "transport.NAME)");
        return;
    }
    if (!sb_ident_valid(instance, strlen(instance))) {
        config_error(ps, ps->line, name, NULL, "instance name '%s' must be a lowercase identifier",
                     instance);
        return;
    }
    for (size_t i = 0; i < cfg->nsections; i++) {
        if (strcmp(cfg->sections[i].name, name) == 0) {
            config_error(ps, ps->line, name, NULL, "section appears twice (first on line %d)",
                         cfg->sections[i].line);
            return;
        }
    }
    sb_config_section *grown = realloc(cfg->sections, (cfg->nsections + 1) * sizeof *grown);
    if (!grown) {
        ps->errors++;
        return;
    }
    cfg->sections = grown;
    ps->current = &cfg->sections[cfg->nsections];
    *ps->current = (sb_config_section){.name = strdup(name), .kind = kind, .line = ps->line};
    if (!ps->current->name)
        ps->errors++;
    cfg->nsections++;
}

/* inih's line reader: counts lines (the Debian build gives handlers no line numbers),
 * notices section headers, and refuses lines longer than inih's fixed buffer instead of
 * letting it split them. */
static char *read_line(char *str, int num, void *stream)
{
    parse_state *ps = stream;
    for (;;) {
        if (!fgets(str, num, ps->file))
            return NULL;
        ps->line++;
        size_t len = strlen(str);
        if (len == (size_t)num - 1 && str[len - 1] != '\n' && !feof(ps->file)) {
            int c;
            while ((c = fgetc(ps->file)) != EOF && c != '\n')
                ;
            config_error(ps, ps->line, NULL, NULL, "line longer than %d characters", num - 2);
            continue;
        }
        ps->continuation = len > 0 && (str[0] == ' ' || str[0] == '\t');
        const char *p = str;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '[') {
            const char *end = strchr(p, ']');
            size_t n = end ? (size_t)(end - p - 1) : 0;
            if (end && n < sizeof ps->current_name) {
                memcpy(ps->current_name, p + 1, n);
                ps->current_name[n] = '\0';
                open_section(ps, ps->current_name);
            }
        }
        return str;
    }
}

/* Checks that need the whole file. */
static void check_complete(parse_state *ps)
{
    sb_config *cfg = ps->cfg;
    for (size_t k = 0; k < NCORE_KEYS; k++) {
        const key_def *d = &core_keys[k];
        if (cfg->core_lines[k])
            continue;
        if (!d->default_value) {
            config_error(ps, ps->line, d->section, d->name, "required key is missing");
            continue;
        }
        int saved = ps->line;
        set_core_key(ps, k, d->default_value);
        ps->line = saved;
    }
    for (size_t k = 0; k < NCORE_KEYS; k++) {
        if (core_keys[k].type != KEY_TABLES)
            continue;
        cfg->tables_line = cfg->core_lines[k];
        if (cfg->core_lines[k] && cfg->ntables == 0)
            config_error(ps, cfg->core_lines[k], "database", "tables", "no table listed");
        else if (cfg->core_lines[k] && ps->table_expected)
            config_error(ps, ps->tables_last_line, "database", "tables",
                         "the list ends with a comma");
    }

    cfg->table_debounce_ms = malloc((cfg->ntables ? cfg->ntables : 1) * sizeof(int64_t));
    if (!cfg->table_debounce_ms) {
        ps->errors++;
        return;
    }
    for (size_t i = 0; i < cfg->ntables; i++)
        cfg->table_debounce_ms[i] = -1;
    for (size_t j = 0; j < ps->ndebounces; j++) {
        struct pending_debounce *pd = &ps->debounces[j];
        const char *table = pd->key + strlen(TABLE_DEBOUNCE_PREFIX);
        size_t i = 0;
        while (i < cfg->ntables && strcmp(cfg->tables[i], table))
            i++;
        if (i == cfg->ntables)
            config_error(ps, pd->line, "broker", pd->key, "'%s' is not in [database] tables",
                         table);
        else
            cfg->table_debounce_ms[i] = pd->ms;
    }

    size_t sources = 0, transports = 0;
    int first_source_line = 0;
    for (size_t i = 0; i < cfg->nsections; i++) {
        sb_config_section *s = &cfg->sections[i];
        if (s->kind == SB_PLUGIN_SOURCE && ++sources == 1)
            first_source_line = s->line;
        else if (s->kind == SB_PLUGIN_SOURCE)
            config_error(ps, s->line, s->name, NULL,
                         "only one source section is allowed (the first is on line %d)",
                         first_source_line);
        transports += s->kind == SB_PLUGIN_TRANSPORT;
        if (!s->plugin) {
            config_error(ps, s->line, s->name, "plugin", "required key is missing");
            continue;
        }
        if (!sb_ident_valid(s->plugin, strlen(s->plugin)))
            config_error(ps, s->plugin_line, s->name, "plugin",
                         "'%s' is not a plugin name (lowercase letters, digits, _)", s->plugin);
    }
    if (sources == 0)
        config_error(ps, ps->line, NULL, NULL, "no [source.NAME] section");
    if (transports == 0)
        config_error(ps, ps->line, NULL, NULL, "no [transport.NAME] section");
}

int sb_config_load(const char *path, sb_config **out)
{
    FILE *f = fopen(path, "r");
    const char *why = f ? NULL : strerror(errno);
    struct stat st;
    /* fopen() opens a directory too, and reading it then looks like an empty file. */
    if (f && fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode))
        why = "is a directory, not a configuration file";
    if (why) {
        sb_log(SB_LOG_ERROR, "config", "%s: cannot open: %s", path, why);
        if (f)
            fclose(f);
        return SB_ERR_CONFIG;
    }
    int rc = sb_config_read(f, path, out);
    fclose(f);
    return rc;
}

int sb_config_read(FILE *f, const char *path, sb_config **out)
{
    sb_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg || !(cfg->path = strdup(path)) || !(cfg->database.name = strdup("database"))) {
        if (cfg)
            free(cfg->path);
        free(cfg);
        return SB_ERR_NOMEM;
    }
    parse_state ps = {.cfg = cfg, .table_expected = true, .file = f};
    int rc = ini_parse_stream(read_line, &ps, on_ini_key, &ps);
    if (ferror(f)) {
        sb_log(SB_LOG_ERROR, "config", "%s: cannot read: %s", path, strerror(errno));
        ps.errors++;
    }
    if (rc > 0)
        config_error(&ps, rc, NULL, NULL, "syntax error (expected [section] or key = value)");
    else if (rc < 0)
        ps.errors++;
    check_complete(&ps);
    for (size_t j = 0; j < ps.ndebounces; j++)
        free(ps.debounces[j].key);
    free(ps.debounces);
    if (ps.errors) {
        sb_config_free(cfg);
        return SB_ERR_CONFIG;
    }
    *out = cfg;
    return SB_OK;
}

static void free_section(sb_config_section *s)
{
    for (size_t j = 0; j < s->nkv; j++) {
        free(s->kv[j].key);
        free(s->kv[j].value);
    }
    free(s->kv);
    free(s->name);
    free(s->plugin);
}

void sb_config_free(sb_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nsections; i++)
        free_section(&cfg->sections[i]);
    free_section(&cfg->database);
    for (size_t i = 0; i < cfg->ntables; i++)
        free(cfg->tables[i]);
    free(cfg->tables);
    free(cfg->table_debounce_ms);
    free(cfg->sections);
    free(cfg->plugin_dir);
    free(cfg->path);
    free(cfg);
}

static int section_key_line(const sb_config_section *s, const char *key)
{
    if (s->kind && strcmp(key, "plugin") == 0)
        return s->plugin_line;
    for (size_t j = 0; j < s->nkv; j++)
        if (strcmp(s->kv[j].key, key) == 0)
            return s->kv[j].line;
    return s->line;
}

int sb_config_key_line(const sb_config *cfg, const char *section, const char *key)
{
    for (size_t k = 0; k < NCORE_KEYS; k++)
        if (strcmp(core_keys[k].section, section) == 0 && strcmp(core_keys[k].name, key) == 0)
            return cfg->core_lines[k];
    if (strcmp(section, "database") == 0)
        return section_key_line(&cfg->database, key);
    for (size_t i = 0; i < cfg->nsections; i++)
        if (strcmp(cfg->sections[i].name, section) == 0)
            return section_key_line(&cfg->sections[i], key);
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return SB_OK;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return SB_OK;
        }
    }
    return SB_ERR_INVAL;
}

/* Convert one value per its spec; logs and returns SB_ERR_CONFIG on a bad value. */
static int convert_value(const sb_config *cfg, const sb_config_section *sec, int line,
                         const sb_option_spec *o, sb_option_value *v)
{
    if (o->type == SB_OPT_INT) {
        int64_t n;
        if (parse_int(v->str, o->min, o->max, &n)) {
            sb_log(SB_LOG_ERROR, "config",
                   "%s:%d: [%s] %s: '%s' is not an integer between %lld and %lld", cfg->path, line,
                   sec->name, o->name, v->str, (long long)o->min, (long long)o->max);
            return SB_ERR_CONFIG;
        }
        v->num = n;
    } else if (o->type == SB_OPT_BOOL && parse_bool(v->str, &v->flag)) {
        sb_log(SB_LOG_ERROR, "config", "%s:%d: [%s] %s: '%s' is not true or false", cfg->path, line,
               sec->name, o->name, v->str);
        return SB_ERR_CONFIG;
    }
    return SB_OK;
}

int sb_config_resolve_options(const sb_config *cfg, const sb_config_section *sec,
                              const sb_option_spec *specs, const char *owner,
                              sb_option_value **values)
{
    size_t n = 0;
    while (specs && specs[n].name)
        n++;
    sb_option_value *v = calloc(n ? n : 1, sizeof *v);
    if (!v)
        return SB_ERR_NOMEM;
    int rc = SB_OK;
    for (size_t j = 0; j < sec->nkv; j++) {
        size_t i = 0;
        while (i < n && strcmp(specs[i].name, sec->kv[j].key))
            i++;
        if (i == n) {
            sb_log(SB_LOG_ERROR, "config", "%s:%d: [%s] %s: unknown key for plugin %s", cfg->path,
                   sec->kv[j].line, sec->name, sec->kv[j].key, owner);
            rc = SB_ERR_CONFIG;
            continue;
        }
        v[i].str = sec->kv[j].value;
        v[i].given = true;
        if (convert_value(cfg, sec, sec->kv[j].line, &specs[i], &v[i]))
            rc = SB_ERR_CONFIG;
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i].given)
            continue;
        const sb_option_spec *o = &specs[i];
        if (!o->default_value) {
            sb_log(SB_LOG_ERROR, "config", "%s:%d: [%s] %s: required key is missing", cfg->path,
                   sec->line, sec->name, o->name);
            rc = SB_ERR_CONFIG;
            continue;
        }
        v[i].str = o->default_value;
        if (convert_value(cfg, sec, sec->line, o, &v[i]))
            rc = SB_ERR_CONFIG;
    }
    if (rc) {
        free(v);
        return rc;
    }
    *values = v;
    return SB_OK;
}

void sb_config_print_options(FILE *out, const sb_option_spec *specs, const sb_option_value *values)
{
    for (size_t i = 0; specs && specs[i].name; i++) {
        sb_config_print_kv(out, specs[i].name, values[i].str);
        fputs(values[i].given ? "\n" : "  ; default\n", out);
    }
}

int64_t sb_config_table_debounce(const sb_config *cfg, size_t i)
{
    return cfg->table_debounce_ms[i] >= 0 ? cfg->table_debounce_ms[i] : cfg->debounce_ms;
}

void sb_config_print_kv(FILE *out, const char *key, const char *value)
{
    fprintf(out, "%s =%s%s", key, value[0] == ';' ? "" : " ", value);
}

void sb_config_print_core(const sb_config *cfg, const sb_option_spec *db_specs,
                          const sb_option_value *db_values, FILE *out)
{
    fputs("[broker]\n", out);
    sb_config_print_kv(out, "plugin_dir", cfg->plugin_dir);
    fprintf(out,
            "\ndebounce_ms = %lld\nheartbeat_ms = %lld\nreplay_buffer = %lld\nlog_level = %s\n"
            "presence_max_entries = %lld\npresence_max_per_client = %lld\n"
            "presence_max_per_entity = %lld\npresence_max_ttl_ms = %lld\n",
            (long long)cfg->debounce_ms, (long long)cfg->heartbeat_ms,
            (long long)cfg->replay_buffer, sb_log_level_name(cfg->log_level),
            (long long)cfg->presence_max_entries, (long long)cfg->presence_max_per_client,
            (long long)cfg->presence_max_per_entity, (long long)cfg->presence_max_ttl_ms);
    for (size_t i = 0; i < cfg->ntables; i++)
        if (cfg->table_debounce_ms[i] >= 0)
            fprintf(out, "%s%s = %lld\n", TABLE_DEBOUNCE_PREFIX, cfg->tables[i],
                    (long long)cfg->table_debounce_ms[i]);
    fputs("\n[database]\n", out);
    if (db_specs) {
        sb_config_print_options(out, db_specs, db_values);
    } else {
        for (size_t i = 0; i < cfg->database.nkv; i++) {
            sb_config_print_kv(out, cfg->database.kv[i].key, cfg->database.kv[i].value);
            fputc('\n', out);
        }
    }
    fputs("tables =", out);
    for (size_t i = 0; i < cfg->ntables; i++)
        fprintf(out, "%s %s", i ? "," : "", cfg->tables[i]);
    fprintf(out, "\n");
}
