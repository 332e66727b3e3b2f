/*
 * The control plane's one PostgreSQL connection, driven from the libuv loop thread.
 *
 * Design: queries are synchronous (PQexecParams) on the loop thread; the control plane is not on the
 * request hot path and one connection keeps every write ordered. Where several statements go together
 * (a usage batch's), cp_db_pipeline() sends them in one round trip: each round trip is a wake-up of
 * PostgreSQL and of this loop, which also answers lease asks and snapshot requests. Between queries the
 * socket is watched with a uv_poll_t so that LISTEN/NOTIFY wakes the loop. When the connection breaks
 * (found by a failed query or by PQconsumeInput) it is dropped and re-established with exponential
 * backoff; after every (re)connection `on_connect` runs (migrations, LISTEN, a snapshot rebuild), since
 * notifications sent while we were away are lost.
 *
 * Invariants: all calls happen on the loop thread; cp_db_conn() is NULL while disconnected.
 */
#ifndef CP_DB_H
#define CP_DB_H

#include <libpq-fe.h>
#include <uv.h>

typedef struct cp_db cp_db_t;

/* Runs after each successful connect: 0 to keep the connection, -1 to drop it and retry later. */
typedef int (*cp_db_connect_cb)(cp_db_t *db);
typedef void (*cp_db_notify_cb)(cp_db_t *db);

struct cp_db {
    uv_loop_t *loop;
    const char *conninfo;
    PGconn *conn;
    uv_poll_t *poll; /* heap allocated, freed in its close callback */
    uv_timer_t retry;
    unsigned backoff_ms;
    int closing;
    cp_db_connect_cb on_connect;
    cp_db_notify_cb on_notify;
    unsigned notified; /* CP_DB_NOTIFY_* of the notifications since on_notify last cleared it */
    void *data;
};

/* What a tollgate_config notification announced (its payload). */
#define CP_DB_NOTIFY_CONFIG      1u /* '' : anything but keys */
#define CP_DB_NOTIFY_KEYS        2u /* 'keys': rows of virtual_keys changed (their change_seq moved) */
#define CP_DB_NOTIFY_KEYS_RELOAD 4u /* 'keys_reload': virtual_keys truncated, no tombstones left */

/* Opens a connection with the session settings the control plane relies on (UTC, quiet notices). */
PGconn *cp_db_connect_blocking(const char *conninfo, char *ret_err, size_t errsz);

int cp_db_init(cp_db_t *db, uv_loop_t *loop, const char *conninfo, cp_db_connect_cb on_connect,
               cp_db_notify_cb on_notify, void *data);
/* Connects now (blocking, with a short timeout); on failure a retry is scheduled. */
void cp_db_start(cp_db_t *db);
/* Closes the handles and the connection; the handles are released once the loop runs their callbacks. */
void cp_db_close(cp_db_t *db);

/* The live connection, or NULL while disconnected. */
PGconn *cp_db_conn(cp_db_t *db);

/*
 * Runs one statement. Returns 0 when it succeeded (COMMAND_OK or TUPLES_OK) with *ret_res set (caller
 * PQclear()s it); -1 otherwise, with *ret_res holding the failed result (for its SQLSTATE) or NULL when
 * there is no connection. A broken connection is noticed here and a reconnect scheduled.
 * `formats` may be NULL (all text); `lens` is only read for binary parameters.
 */
int cp_db_query(cp_db_t *db, PGresult **ret_res, const char *sql, int nparams, const char *const *values,
                const int *lens, const int *formats);
/* Same, for statements whose result is not needed. */
int cp_db_exec(cp_db_t *db, const char *sql, int nparams, const char *const *values);

/*
 * One statement for cp_db_pipeline(). `values` are text parameters owned by whoever built the statement
 * (cp_db_stmt_free() frees the ones marked owned); sql == NULL means nothing to send.
 */
#define CP_DB_STMT_MAXPARAMS 16
typedef struct cp_db_stmt {
    const char *sql;
    int nparams;
    const char *values[CP_DB_STMT_MAXPARAMS];
    char *owned[CP_DB_STMT_MAXPARAMS]; /* heap buffers behind values, freed by cp_db_stmt_free() */
} cp_db_stmt_t;

void cp_db_stmt_free(cp_db_stmt_t *stmt);

/*
 * Sends the n statements in one round trip (libpq pipeline mode: every statement, then one sync) and
 * reads their results into results[0..n-1] (the caller PQclear()s each; NULL where none came). Returns 0
 * when every statement succeeded (COMMAND_OK or TUPLES_OK); -1 otherwise: the failed statement's result
 * holds its error and the ones after it PGRES_PIPELINE_ABORTED, and a transaction opened before is then
 * in failed state (the caller sends ROLLBACK). A broken connection is noticed here, the connection
 * dropped and a reconnect scheduled, as in cp_db_query(). Statements with sql == NULL are skipped (their
 * result stays NULL). Without a BEGIN before them the statements of one call form one implicit
 * transaction, as PostgreSQL treats everything up to a sync.
 */
int cp_db_pipeline(cp_db_t *db, const cp_db_stmt_t *stmts, int n, PGresult **results);

/* The SQLSTATE of a failed result ("" when none), and a one-line message for logs. */
const char *cp_db_sqlstate(const PGresult *res);
const char *cp_db_errmsg(cp_db_t *db, const PGresult *res);

#endif
