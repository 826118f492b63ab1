/* plugin_loader.c - see plugin_loader.h. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "plugin_loader.h"
#include "log.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct sb_plugin_lib {
    char *path;
    void *handle;
    const sb_plugin_header *desc;
};

/* What this broker implements: one version per major. */
static const sb_abi_version offered[] = {{SB_ABI_MAJOR, SB_ABI_MINOR}};
static const sb_abi_offer offer = {offered, sizeof offered / sizeof offered[0]};

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

static const char *kind_name(uint32_t kind)
{
    switch (kind) {
    case SB_PLUGIN_SOURCE:
        return "source";
    case SB_PLUGIN_TRANSPORT:
        return "transport";
    }
    return "unknown";
}

/* The first mandatory callback that is NULL, or NULL. h has passed the size check. */
static const char *missing_callback(const sb_plugin_header *h)
{
    if (h->kind == SB_PLUGIN_SOURCE) {
        const sb_source_plugin *d = (const sb_source_plugin *)h;
        return !d->create     ? "create"
               : !d->start    ? "start"
               : !d->stop     ? "stop"
               : !d->destroy  ? "destroy"
               : !d->snapshot ? "snapshot"
               : !d->cancel   ? "cancel"
                              : NULL;
    }
    const sb_transport_plugin *d = (const sb_transport_plugin *)h;
    return !d->create    ? "create"
           : !d->start   ? "start"
           : !d->stop    ? "stop"
           : !d->destroy ? "destroy"
           : !d->publish ? "publish"
                         : NULL;
}

static const char *bad_option_spec(const sb_option_spec *options, bool database)
{
    for (const sb_option_spec *o = options; o && o->name; o++) {
        if (!database && strcmp(o->name, "plugin") == 0)
            return "option 'plugin' is reserved";
        if (database && strcmp(o->name, "tables") == 0)
            return "[database] key 'tables' is the broker's";
        if (o->type < SB_OPT_STRING || o->type > SB_OPT_BOOL)
            return "an option has an unknown type";
        for (const sb_option_spec *p = options; p < o; p++)
            if (strcmp(p->name, o->name) == 0)
                return "an option is declared twice";
    }
    return NULL;
}

/* The version checks, in the order the design lists them. */
static int check_version(const sb_config *cfg, const sb_config_section *sec, const char *path,
                         const sb_plugin_header *h)
{
    if (h->abi_major == 1) {
        refuse(cfg, sec, path,
               "was built for plugin ABI 1 (Syncbroker 0.1); this broker has ABI %d.%d: rebuild "
               "it against include/syncbroker/plugin.h %d.%d (docs/plugins.md, Porting from ABI 1)",
               SB_ABI_MAJOR, SB_ABI_MINOR, SB_ABI_MAJOR, SB_ABI_MINOR);
        return SB_ERR_ABI;
    }
    if (h->abi_major != SB_ABI_MAJOR) {
        refuse(cfg, sec, path, "built for ABI %u.%u; this broker has %d.%d", h->abi_major,
               h->abi_minor, SB_ABI_MAJOR, SB_ABI_MINOR);
        return SB_ERR_ABI;
    }
    if (h->abi_minor > SB_ABI_MINOR) {
        refuse(cfg, sec, path,
               "built against ABI %u.%u, newer than this broker's %d.%d: upgrade the broker or "
               "build the plugin against the %d.%d header",
               h->abi_major, h->abi_minor, SB_ABI_MAJOR, SB_ABI_MINOR, SB_ABI_MAJOR, SB_ABI_MINOR);
        return SB_ERR_ABI;
    }
    return SB_OK;
}

int sb_plugin_check_descriptor(const sb_config *cfg, const sb_config_section *sec, const char *path,
                               const sb_plugin_header *h)
{
    int rc = check_version(cfg, sec, path, h);
    if (rc)
        return rc;
    if (h->kind != SB_PLUGIN_SOURCE && h->kind != SB_PLUGIN_TRANSPORT) {
        refuse(cfg, sec, path, "unknown plugin kind %u (plugin ABI %u.%u, broker ABI %d.%d)",
               h->kind, h->abi_major, h->abi_minor, SB_ABI_MAJOR, SB_ABI_MINOR);
        return SB_ERR_ABI;
    }
    size_t need =
        h->kind == SB_PLUGIN_SOURCE ? SB_SOURCE_PLUGIN_SIZE_2_0 : SB_TRANSPORT_PLUGIN_SIZE_2_0;
    if (h->size < need) {
        refuse(cfg, sec, path,
               "descriptor is %u bytes, a %s of ABI %d.0 is at least %zu (plugin ABI %u.%u, "
               "broker ABI %d.%d)",
               h->size, kind_name(h->kind), SB_ABI_MAJOR, need, h->abi_major, h->abi_minor,
               SB_ABI_MAJOR, SB_ABI_MINOR);
        return SB_ERR_ABI;
    }
    if (h->kind != (uint32_t)sec->kind) {
        refuse(cfg, sec, path, "is a %s plugin, but [%s] needs a %s plugin", kind_name(h->kind),
               sec->name, kind_name((uint32_t)sec->kind));
        return SB_ERR_CONFIG;
    }
    if (!h->name || strcmp(h->name, sec->plugin) != 0) {
        refuse(cfg, sec, path, "calls itself '%s', expected '%s'", h->name ? h->name : "(null)",
               sec->plugin);
        return SB_ERR_ABI;
    }
    const char *missing = missing_callback(h);
    if (missing) {
        refuse(cfg, sec, path, "mandatory callback '%s' is NULL", missing);
        return SB_ERR_ABI;
    }
    const char *bad = bad_option_spec(h->options, false);
    if (!bad && h->kind == SB_PLUGIN_SOURCE)
        bad = bad_option_spec(((const sb_source_plugin *)h)->database_options, true);
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
    /* A v1 plugin's entry takes no argument: called with one, it ignores it (every ABI we
     * build for passes the first argument in a register or on the caller's stack, which the
     * callee does not clean up), and its descriptor starts as sb_plugin_header does. */
    const sb_plugin_header *desc = entry(&offer);
    int rc = desc ? sb_plugin_check_descriptor(cfg, sec, path, desc) : SB_ERR_ABI;
    if (!desc)
        refuse(cfg, sec, path, "supports none of the ABI versions this broker has (%d.%d)",
               SB_ABI_MAJOR, SB_ABI_MINOR);
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

const sb_plugin_header *sb_plugin_lib_descriptor(const sb_plugin_lib *lib)
{
    return lib->desc;
}

const char *sb_plugin_lib_path(const sb_plugin_lib *lib)
{
    return lib->path;
}
