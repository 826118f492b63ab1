/*
 * sb_source_state.h - one source instance, as the two halves of the engine share it.
 *
 *   sb_setup.c   brings an instance to where it may read: the reader lock (sb_reader_lock.h)
 *                and the set-up steps (resolve the tables, check the NOTIFY triggers, register
 *                the reader at its start position), blocking in start() or step by step in
 *                the background, again after the position was lost.
 *   sb_source.c  the plugin's callbacks, and what runs once set up: waking and reading the
 *                cursor, LISTEN, fetches, snapshots and pruning.
 *
 * Both run on the broker's loop only; neither frees what the other owns (sb_source.c
 * creates and frees the instance).
 */
#ifndef SB_SOURCE_STATE_H
#define SB_SOURCE_STATE_H

#include "sb_cursor.h"
#include "sb_pg.h"
#include "sb_snapshot.h"
#include "sb_source.h"
#include "sb_table.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* application_name of each session: role, pid and host, so that an operator (or a second
 * broker refused the reader lock) can tell which broker a backend belongs to. */
#define SB_APP_NAME_LEN 128 /* room for all; PostgreSQL keeps 63 bytes, cutting the host first */
enum { SB_APP_MAIN, SB_APP_SNAPSHOT, SB_APP_MAINT, SB_APP_LOCK, SB_APP_CHECK, SB_APP_N };

typedef struct sb_source {
    const sb_source_api *api;
    sb_host *host;
    sb_wake_mode mode;
    uint32_t poll_ms, prune_ms, reconnect_min_ms, reconnect_max_ms, connect_timeout_ms;
    size_t batch_rows;
    const char *reader;   /* the option's value: the broker's, valid until destroy() */
    char retention_s[24]; /* tombstone_retention_s as a query parameter */
    char reader_timeout_s[24];
    const char *conninfo;           /* [database] conninfo; the broker's */
    const char *const *table_names; /* setup->tables; the broker's */
    sb_table *tables; /* one per configured table, in setup order; owned (names the broker's) */
    size_t ntables;
    char *names;  /* text[] literal of the configured names; owned */
    sb_pg *main;  /* cursor, fetches, LISTEN */
    sb_pg *maint; /* pruning: a DELETE of a large backlog never holds up the cursor */
    sb_pg *lock;  /* holds the reader lock (sb_reader_lock.h) and nothing else */
    char app_names[SB_APP_N][SB_APP_NAME_LEN];
    sb_cursor *cursor;
    sb_snapshot *snap; /* its own connection */
    sb_timer *poll_timer, *prune_timer;
    bool started, stopped;
    /* Setup (table resolution, NOTIFY triggers, initial position) runs once: blocking in
     * start() when the database is up, else step by step on the first connection. */
    bool setup_done, setup_running;
    size_t setup_step;
    int setup_rc;
    uint64_t setup_retry_at;
    char setup_err[512], last_setup_err[512];
    bool resolved;
    /* Reading, pruning and registering need the reader lock: held while `locked` and the
     * lock session is up. */
    bool locked, locking;
    bool lock_lost; /* it was held and its session died: say so when it is back */
    char lock_err[256];
    bool resync_pending; /* the position was lost: a new epoch once re-registered */
    bool reading, dirty, pruning;
    unsigned prune_errors;
} sb_source;

/* ---- sb_setup.c ------------------------------------------------------------------------ */

/* The reader lock is held and its session is up: reading, pruning and registering may run. */
bool sb_setup_holding(const sb_source *s);
/* Take the lock in the background when it is not held (on the lock connection). */
void sb_setup_take_lock(sb_source *s);
/* The lock connection's on_ready and on_lost. */
void sb_setup_on_lock_ready(void *ud);
void sb_setup_on_lock_lost(void *ud);
/* The lock, blocking, before anything touches the reader's position (start()). SB_ERR_CONFIG
 * when another broker holds it (start-up refuses); SB_ERR_DB when the database cannot say
 * now (taken in the background). */
int sb_setup_lock_blocking(sb_source *s, const sb_pg_config *cfg);
/* Every step still needed, now, on conn (start() with the database up). SB_ERR_DB when the
 * connection was lost meanwhile (go on in the background); any other error is a
 * configuration error, described in s->setup_err. */
int sb_setup_blocking(sb_source *s, PGconn *conn);
/* Run the steps still needed on the main connection, in the background, when it and the
 * lock are up and set-up is neither done nor running; sb_source_after_connect() follows once
 * they are done, a retry after reconnect_max_ms when one fails. */
void sb_setup_start(sb_source *s);

/* ---- sb_source.c ----------------------------------------------------------------------- */

/* After set-up and every reconnection: LISTEN (notify mode), then read what committed
 * meanwhile. */
void sb_source_after_connect(sb_source *s);
/* Read now, or once more after the read running. */
void sb_source_wake(sb_source *s);

#endif /* SB_SOURCE_STATE_H */
