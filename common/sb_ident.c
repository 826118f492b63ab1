/* sb_ident.c - see sb_ident.h. */
#include "sb_ident.h"

#include <string.h>

bool sb_ident_valid(const char *s, size_t len)
{
    /* Spelled out rather than islower(): the rule must not depend on the locale. */
    if (len == 0 || len > SB_IDENT_MAX || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (size_t i = 1; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '$'))
            return false;
    }
    return true;
}

bool sb_table_name_valid(const char *name)
{
    const char *dot = name ? strchr(name, '.') : NULL;
    return dot && sb_ident_valid(name, (size_t)(dot - name)) &&
           sb_ident_valid(dot + 1, strlen(dot + 1));
}
