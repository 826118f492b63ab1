/* plugin_loader.c - see plugin_loader.h. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "plugin_loader.h"
#include "log.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

struct sb_plugin_lib {
    char *path;
    void *handle;
    const sb_plugin *desc;
};

/* Log "FILE:LINE: [section] plugin: PATH: message". */
static void refuse(const sb_config *cfg, const sb_config_section *sec, const char *path,
                   const char *fmt, ...) SB_PRINTF(4, 5);

static void refuse(const sb_config *cfg, const sb_config_section *sec, const char *path,
                   const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sb_log(SB_LOG_ERROR, "config", "%s:%d: [%s] plugin: %s: %s", cfg->path, sec->plugin_line,
           sec->name, path, msg);
}

static const char *kind_name(sb_plugin_kind kind)
{
    switch (kind) {
    case SB_PLUGIN_SOURCE:
        return "source";
    case SB_PLUGIN_TRANSPORT:
        return "transport";
    }
    return "unknown";
}

/* Mandatory callbacks by kind; returns the name of the first NULL one. */
static const char *missing_callback(const sb_plugin *d)
{
    if (!d->create)
        return "create";
    if (!d->start)
        return "start";
    if (!d->stop)
        return "stop";
    if (!d->destroy)
        return "destroy";
    if (d->kind == SB_PLUGIN_SOURCE) {
        if (!d->fetch)
            return "fetch";
        if (!d->snapshot)
            return "snapshot";
        if (!d->cancel)
            return "cancel";
    } else if (!d->publish) {
        return "publish";
    }
    return NULL;
}

static const char *bad_option_spec(const sb_plugin *d)
{
    for (const sb_option_spec *o = d->options; o && o->name; o++) {
        if (strcmp(o->name, "plugin") == 0)
            return "option 'plugin' is reserved";
        if (o->type < SB_OPT_STRING || o->type > SB_OPT_BOOL)
            return "an option has an unknown type";
        for (const sb_option_spec *p = d->options; p < o; p++)
            if (strcmp(p->name, o->name) == 0)
                return "an option is declared twice";
    }
    return NULL;
}

static int check_descriptor(const sb_config *cfg, const sb_config_section *sec, const char *path,
                            const sb_plugin *d)
{
    if (d->abi_major != SB_PLUGIN_ABI_MAJOR) {
        refuse(cfg, sec, path, "built for plugin ABI %u.%u, this broker speaks ABI %u.%u",
               d->abi_major, d->abi_minor, SB_PLUGIN_ABI_MAJOR, SB_PLUGIN_ABI_MINOR);
        return SB_ERR_ABI;
    }
    if (d->size < SB_PLUGIN_V1_SIZE) {
        refuse(cfg, sec, path,
               "descriptor is %u bytes, ABI %u.%u needs at least %zu (plugin ABI %u.%u, "
               "broker ABI %u.%u)",
               d->size, SB_PLUGIN_ABI_MAJOR, 0u, (size_t)SB_PLUGIN_V1_SIZE, d->abi_major,
               d->abi_minor, SB_PLUGIN_ABI_MAJOR, SB_PLUGIN_ABI_MINOR);
        return SB_ERR_ABI;
    }
    if (d->kind != SB_PLUGIN_SOURCE && d->kind != SB_PLUGIN_TRANSPORT) {
        refuse(cfg, sec, path, "unknown plugin kind %d", (int)d->kind);
        return SB_ERR_ABI;
    }
    if (d->kind != sec->kind) {
        refuse(cfg, sec, path, "is a %s plugin, but [%s] needs a %s plugin", kind_name(d->kind),
               sec->name, kind_name(sec->kind));
        return SB_ERR_CONFIG;
    }
    if (!d->name || strcmp(d->name, sec->plugin) != 0) {
        refuse(cfg, sec, path, "calls itself '%s', expected '%s'", d->name ? d->name : "(null)",
               sec->plugin);
        return SB_ERR_ABI;
    }
    const char *missing = missing_callback(d);
    if (missing) {
        refuse(cfg, sec, path, "mandatory callback '%s' is NULL", missing);
        return SB_ERR_ABI;
    }
    const char *bad = bad_option_spec(d);
    if (bad) {
        refuse(cfg, sec, path, "%s", bad);
        return SB_ERR_ABI;
    }
    return SB_OK;
}

/* Why a file or folder with stat st could be changed or replaced by someone other than root
 * and the broker's own user, or NULL: another owner, or a group or other write bit (any
 * group: its members are not looked at), written into why. */
static const char *unsafe_owner_or_mode(const struct stat *st, char *why, size_t len)
{
    uid_t me = geteuid();
    if (st->st_uid != 0 && st->st_uid != me)
        snprintf(why, len, "is owned by uid %lu, not root or the broker's uid %lu",
                 (unsigned long)st->st_uid, (unsigned long)me);
    else if (st->st_mode & (S_IWGRP | S_IWOTH))
        snprintf(why, len, "is writable by others (mode %04o)", (unsigned)(st->st_mode & 07777));
    else
        return NULL;
    return why;
}

/* Refuse (logged, SB_ERR_CONFIG) a folder that would let someone else swap a plugin file. */
static int check_folder(const sb_config *cfg, const sb_config_section *sec, const char *path,
                        const char *what, const char *folder)
{
    struct stat st;
    char why[96];
    if (stat(folder, &st) != 0) {
        refuse(cfg, sec, path, "%s %s: %s", what, folder, strerror(errno));
        return SB_ERR_CONFIG;
    }
    if (unsafe_owner_or_mode(&st, why, sizeof why)) {
        refuse(cfg, sec, path, "%s %s %s: refusing to load plugins from it", what, folder, why);
        return SB_ERR_CONFIG;
    }
    return SB_OK;
}

/* The file (st, symlinks followed), plugin_dir and, for a symlink, the folder holding its
 * target: whoever may write any of them may run code as the broker. The folders above are
 * the operator's (docs/plugins.md). */
static int check_file_modes(const sb_config *cfg, const sb_config_section *sec, const char *path,
                            const struct stat *st)
{
    char why[96];
    if (unsafe_owner_or_mode(st, why, sizeof why)) {
        refuse(cfg, sec, path, "%s: refusing to load it", why);
        return SB_ERR_CONFIG;
    }
    if (check_folder(cfg, sec, path, "plugin_dir", cfg->plugin_dir))
        return SB_ERR_CONFIG;
    char *target = realpath(path, NULL);
    if (!target) {
        refuse(cfg, sec, path, "%s", strerror(errno));
        return SB_ERR_CONFIG;
    }
    char *slash = strrchr(target, '/');
    slash[slash == target ? 1 : 0] = '\0';
    int rc = check_folder(cfg, sec, path, "links into", target);
    free(target);
    return rc;
}

int sb_plugin_lib_open(const sb_config *cfg, const sb_config_section *sec, sb_plugin_lib **out)
{
    size_t len = strlen(cfg->plugin_dir) + strlen(sec->plugin) + 5;
    char *path = malloc(len);
    if (!path)
        return SB_ERR_NOMEM;
    snprintf(path, len, "%s/%s.so", cfg->plugin_dir, sec->plugin);

    struct stat st;
    if (stat(path, &st) != 0) {
        refuse(cfg, sec, path, "%s (plugin_dir = %s)", strerror(errno), cfg->plugin_dir);
        free(path);
        return SB_ERR_CONFIG;
    }
    if (!S_ISREG(st.st_mode)) {
        refuse(cfg, sec, path, "not a regular file");
        free(path);
        return SB_ERR_CONFIG;
    }
    if (check_file_modes(cfg, sec, path, &st)) {
        free(path);
        return SB_ERR_CONFIG;
    }

    dlerror();
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        refuse(cfg, sec, path,
               "cannot load: %s (not a shared object, or missing dependencies? "
               "check ldd)",
               dlerror());
        free(path);
        return SB_ERR_CONFIG; /* not an ABI question: the loader never saw a descriptor */
    }
    dlerror();
    sb_plugin_entry_fn entry;
    /* POSIX guarantees the object/function pointer conversion dlsym relies on. */
    *(void **)(&entry) = dlsym(handle, SB_PLUGIN_ENTRY_SYMBOL);
    const char *err = dlerror();
    if (err || !entry) {
        refuse(cfg, sec, path, "no entry symbol %s() (use SB_PLUGIN_DECLARE)",
               SB_PLUGIN_ENTRY_SYMBOL);
        dlclose(handle);
        free(path);
        return SB_ERR_ABI;
    }
    const sb_plugin *desc = entry();
    int rc = desc ? check_descriptor(cfg, sec, path, desc) : SB_ERR_ABI;
    if (!desc)
        refuse(cfg, sec, path, "%s() returned NULL", SB_PLUGIN_ENTRY_SYMBOL);
    if (rc) {
        dlclose(handle);
        free(path);
        return rc;
    }
    sb_plugin_lib *lib = malloc(sizeof *lib);
    if (!lib) {
        dlclose(handle);
        free(path);
        return SB_ERR_NOMEM;
    }
    *lib = (sb_plugin_lib){.path = path, .handle = handle, .desc = desc};
    *out = lib;
    return SB_OK;
}

void sb_plugin_lib_close(sb_plugin_lib *lib)
{
    if (!lib)
        return;
    dlclose(lib->handle);
    free(lib->path);
    free(lib);
}

const sb_plugin *sb_plugin_lib_descriptor(const sb_plugin_lib *lib)
{
    return lib->desc;
}

const char *sb_plugin_lib_path(const sb_plugin_lib *lib)
{
    return lib->path;
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
        char *end;
        errno = 0;
        long long n = strtoll(v->str, &end, 10);
        if (errno || end == v->str || *end || n < o->min || n > o->max) {
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

int sb_plugin_resolve_options(const sb_config *cfg, const sb_config_section *sec,
                              const sb_plugin *desc, sb_option_value **values)
{
    size_t n = 0;
    while (desc->options && desc->options[n].name)
        n++;
    sb_option_value *v = calloc(n ? n : 1, sizeof *v);
    if (!v)
        return SB_ERR_NOMEM;
    int rc = SB_OK;
    for (size_t j = 0; j < sec->nkv; j++) {
        size_t i = 0;
        while (i < n && strcmp(desc->options[i].name, sec->kv[j].key))
            i++;
        if (i == n) {
            sb_log(SB_LOG_ERROR, "config", "%s:%d: [%s] %s: unknown key for plugin %s", cfg->path,
                   sec->kv[j].line, sec->name, sec->kv[j].key, desc->name);
            rc = SB_ERR_CONFIG;
            continue;
        }
        v[i].str = sec->kv[j].value;
        v[i].given = true;
        if (convert_value(cfg, sec, sec->kv[j].line, &desc->options[i], &v[i]))
            rc = SB_ERR_CONFIG;
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i].given)
            continue;
        const sb_option_spec *o = &desc->options[i];
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

void sb_plugin_print_section(const sb_config_section *sec, const sb_plugin *desc,
                             const sb_option_value *values, FILE *out)
{
    fprintf(out, "\n[%s]\nplugin = %s  ; %s %s\n", sec->name, sec->plugin, desc->name,
            desc->version ? desc->version : "");
    for (size_t i = 0; desc->options && desc->options[i].name; i++) {
        sb_config_print_kv(out, desc->options[i].name, values[i].str);
        fputs(values[i].given ? "\n" : "  ; default\n", out);
    }
}
