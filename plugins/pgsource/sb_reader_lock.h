/*
 * sb_reader_lock.h - one reader name, one active broker. A source holds this session-level
 * advisory lock, keyed by its reader name, on a connection of its own before it touches the
 * reader's position; a second broker with the same reader finds it held and refuses to start,
 * naming the holder from pg_stat_activity.application_name (which carries host and pid).
 * Two different names may hash alike: the cost is a false refusal, never a shared position.
 */
#ifndef SB_READER_LOCK_H
#define SB_READER_LOCK_H

/* First key of the two-int4 advisory lock: 'sbrd', so that other users of advisory locks
 * (which mostly take the one-int8 form) are unlikely to collide with us. */
#define SB_READER_LOCK_CLASS "1935831652"

/* $1 reader name: the sessions holding the lock in this database (pid, application_name);
 * no row when nobody does. Readable by any role. */
#define SB_READER_HOLDER_SQL                                                                       \
    "SELECT a.pid, a.application_name FROM pg_catalog.pg_locks l"                                  \
    " JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid"                                         \
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"                              \
    "   AND l.database = (SELECT oid FROM pg_catalog.pg_database"                                  \
    "                     WHERE datname = pg_catalog.current_database())"                          \
    "   AND l.classid = " SB_READER_LOCK_CLASS " AND l.objid = pg_catalog.hashtext($1)::oid"

/* $1 reader name: one row (taken, holder pid, holder application_name). taken is true when
 * this session now holds the lock (or already did); otherwise the holder columns name one
 * session that does (NULL when it let go in between: try again). */
#define SB_READER_LOCK_SQL                                                                         \
    "SELECT l.taken, h.pid, h.application_name FROM (SELECT "                                      \
    "pg_catalog.pg_try_advisory_lock(" SB_READER_LOCK_CLASS                                        \
    ", pg_catalog.hashtext($1)) AS taken) l"                                                       \
    " LEFT JOIN LATERAL (" SB_READER_HOLDER_SQL " LIMIT 1) h ON NOT l.taken"

#endif /* SB_READER_LOCK_H */
