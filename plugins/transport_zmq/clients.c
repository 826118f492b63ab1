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
