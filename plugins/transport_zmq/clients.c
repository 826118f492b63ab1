/*
 * clients.c - who a connection is (see tz.h, tz_principal; docs/security.md).
 *
 * The ZAP handler (subs.c) answers every handshake with a User-Id of its own making, which
 * libzmq attaches to every message of that connection: "<connection id>" in plain mode. Only
 * this file reads it back.
 */
#include "tz.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int tz_user_id_parse(tz *t, const char *uid, uint64_t *conn, const tz_principal **who)
{
    (void)t;
    char *end;
    if (!uid || *uid < '0' || *uid > '9')
        return SB_ERR_INVAL;
    errno = 0;
    unsigned long long id = strtoull(uid, &end, 10);
    if (errno || *end)
        return SB_ERR_INVAL;
    *conn = id;
    *who = NULL;
    return SB_OK;
}

bool tz_principal_reads(const tz_principal *who, int table)
{
    return !who || who->all_tables || (table >= 0 && who->may_read[table]);
}

/* The index of the configured table that topic (an event's "<table>/<key>" or a presence
 * message's "@presence/<table>/<key>") belongs to, or -1. */
static int topic_table(tz *t, const char *topic, size_t len)
{
    static const char presence[] = "@presence/";
    const size_t pl = sizeof presence - 1;
    if (len >= pl && memcmp(topic, presence, pl) == 0)
        topic += pl, len -= pl;
    size_t n = 0;
    const char *const *tables = t->api->tables(t->host, &n);
    for (size_t i = 0; i < n; i++) {
        size_t tl = strlen(tables[i]);
        if (len > tl && topic[tl] == '/' && memcmp(topic, tables[i], tl) == 0)
            return (int)i;
    }
    return -1;
}

bool tz_topic_readable(tz *t, const tz_principal *who, const char *topic, size_t len)
{
    return !who || who->all_tables || tz_principal_reads(who, topic_table(t, topic, len));
}

int tz_table_allowed(tz *t, tz_frames *env, const char *table, size_t len)
{
    int k = tz_table_index(t, table, len);
    if (tz_principal_reads(t->req_who, k) && k >= 0)
        return k;
    /* The same answer for a table that does not exist and one it may not read; no name in
     * it, so that nothing a restricted client receives names another table. */
    if (t->req_who)
        tz_reply_error(t, env, "forbidden", "a table asked for is not one this client may read");
    else
        tz_reply_unknown_table(t, env, table, len);
    return -1;
}
