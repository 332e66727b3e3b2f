/*
 * The PostgreSQL connection of the control plane: connect, reconnect with backoff, LISTEN/NOTIFY
 * integration with libuv, and the one query helper everything else uses (see db.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "db.h"
#include "tollgate/log.h"

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 10000

static void drop(cp_db_t *db);

/* libpq messages end in newlines and may span lines; log lines may not. */
static const char *
oneline(const char *msg)
{
    static char buf[512];
    size_t o = 0;
    for (const char *p = msg; *p != '\0' && o + 1 < sizeof(buf); p++) {
        if (*p == '\n' || *p == '\t') {
            if (o > 0 && buf[o - 1] != ' ' && p[1] != '\0')
                buf[o++] = ' ';
        } else {
            buf[o++] = *p;
        }
    }
    buf[o] = '\0';
    return buf;
}

static void
on_notice(void *arg, const char *message)
{
    tg_warn("cp.db.notice", "message=\"%s\"", oneline(message));
}
static void schedule_retry(cp_db_t *db);

PGconn *
cp_db_connect_blocking(const char *conninfo, char *ret_err, size_t errsz)
{
    /* expand_dbname lets DATABASE_URL be a URI or a keyword string; connect_timeout bounds the stall. */
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {conninfo, "3", "tollgate-controlplane", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL) {
        snprintf(ret_err, errsz, "out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK)
        goto fail;
    PQsetNoticeProcessor(conn, on_notice, NULL);
    PGresult *res = PQexec(conn, "SET TIME ZONE 'UTC'; SET client_min_messages = warning");
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok)
        goto fail;
    return conn;
fail:
    snprintf(ret_err, errsz, "%s", oneline(PQerrorMessage(conn)));
    PQfinish(conn);
    return NULL;
}

static void
drain_notifies(cp_db_t *db)
{
    PGnotify *n;
    int any = 0;
    while (db->conn != NULL && (n = PQnotifies(db->conn)) != NULL) {
        any = 1;
        /* the payload says what changed (migrations/0008): key deltas need not rebuild the rest */
        db->notified |= strcmp(n->extra, "keys") == 0          ? CP_DB_NOTIFY_KEYS
                        : strcmp(n->extra, "keys_reload") == 0 ? CP_DB_NOTIFY_KEYS_RELOAD
                                                               : CP_DB_NOTIFY_CONFIG;
        PQfreemem(n);
    }
    if (any && db->on_notify != NULL)
        db->on_notify(db);
}

static void
on_poll_close(uv_handle_t *h)
{
    free(h);
}

static void
on_readable(uv_poll_t *poll, int status, int events)
{
    cp_db_t *db = poll->data;
    if (db->conn == NULL)
        return;
    if (status < 0 || !PQconsumeInput(db->conn)) {
        tg_warn("cp.db.lost", "error=\"%s\"", status < 0 ? uv_strerror(status) : oneline(PQerrorMessage(db->conn)));
        drop(db);
        schedule_retry(db);
        return;
    }
    drain_notifies(db);
}

static void
drop(cp_db_t *db)
{
    if (db->poll != NULL) {
        uv_poll_stop(db->poll);
        uv_close((uv_handle_t *)db->poll, on_poll_close);
        db->poll = NULL;
    }
    if (db->conn != NULL) {
        PQfinish(db->conn);
        db->conn = NULL;
    }
}

static void
on_retry(uv_timer_t *t)
{
    cp_db_start(t->data);
}

static void
schedule_retry(cp_db_t *db)
{
    if (db->closing)
        return;
    db->backoff_ms = db->backoff_ms == 0 ? BACKOFF_MIN_MS : db->backoff_ms * 2;
    if (db->backoff_ms > BACKOFF_MAX_MS)
        db->backoff_ms = BACKOFF_MAX_MS;
    uv_timer_start(&db->retry, on_retry, db->backoff_ms, 0);
}

int
cp_db_init(cp_db_t *db, uv_loop_t *loop, const char *conninfo, cp_db_connect_cb on_connect, cp_db_notify_cb on_notify,
           void *data)
{
    memset(db, 0, sizeof(*db));
    db->loop = loop;
    db->conninfo = conninfo;
    db->on_connect = on_connect;
    db->on_notify = on_notify;
    db->data = data;
    db->retry.data = db;
    return uv_timer_init(loop, &db->retry);
}

void
cp_db_start(cp_db_t *db)
{
    char err[512];
    if (db->closing || db->conn != NULL)
        return;
    PGconn *conn = cp_db_connect_blocking(db->conninfo, err, sizeof(err));
    if (conn == NULL) {
        tg_warn("cp.db.connect_failed", "error=\"%s\" retry_ms=%u", err,
                db->backoff_ms == 0                   ? BACKOFF_MIN_MS
                : db->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                      : db->backoff_ms * 2);
        schedule_retry(db);
        return;
    }
    db->conn = conn;
    db->poll = malloc(sizeof(*db->poll));
    if (db->poll == NULL || uv_poll_init(db->loop, db->poll, PQsocket(conn)) != 0) {
        free(db->poll);
        db->poll = NULL;
        tg_error("cp.db.poll_failed", "cannot watch the database socket");
        drop(db);
        schedule_retry(db);
        return;
    }
    db->poll->data = db;
    uv_poll_start(db->poll, UV_READABLE, on_readable);
    if (db->on_connect != NULL && db->on_connect(db) != 0) {
        drop(db);
        schedule_retry(db);
        return;
    }
    db->backoff_ms = 0;
    tg_info("cp.db.connected", "server_version=%d", PQserverVersion(conn));
}

void
cp_db_close(cp_db_t *db)
{
    db->closing = 1;
    drop(db);
    uv_timer_stop(&db->retry);
    uv_close((uv_handle_t *)&db->retry, NULL);
}

PGconn *
cp_db_conn(cp_db_t *db)
{
    return db->conn;
}

int
cp_db_query(cp_db_t *db, PGresult **ret_res, const char *sql, int nparams, const char *const *values, const int *lens,
            const int *formats)
{
    *ret_res = NULL;
    if (db->conn == NULL)
        return -1;
    PGresult *res = PQexecParams(db->conn, sql, nparams, NULL, values, lens, formats, 0);
    ExecStatusType st = PQresultStatus(res);
    if (PQstatus(db->conn) == CONNECTION_BAD) {
        tg_warn("cp.db.lost", "error=\"%s\"", oneline(PQerrorMessage(db->conn)));
        PQclear(res);
        drop(db);
        schedule_retry(db);
        return -1;
    }
    /* A query may have read notifications off the socket that the poll will not report again. */
    drain_notifies(db);
    *ret_res = res;
    return (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? 0 : -1;
}

int
cp_db_exec(cp_db_t *db, const char *sql, int nparams, const char *const *values)
{
    PGresult *res;
    int rv = cp_db_query(db, &res, sql, nparams, values, NULL, NULL);
    if (rv != 0)
        tg_warn("cp.db.query_failed", "error=\"%s\"", cp_db_errmsg(db, res));
    PQclear(res);
    return rv;
}

void
cp_db_stmt_free(cp_db_stmt_t *stmt)
{
    for (int i = 0; i < CP_DB_STMT_MAXPARAMS; i++) {
        free(stmt->owned[i]);
        stmt->owned[i] = NULL;
    }
}

/*
 * Blocking mode is safe here although the libpq docs advise non-blocking for pipelines: the deadlock
 * they warn of needs the server to fill its send buffer with results we have not read while we are
 * still writing, and our pipelines return a few small results.
 */
int
cp_db_pipeline(cp_db_t *db, const cp_db_stmt_t *stmts, int n, PGresult **results)
{
    for (int i = 0; i < n; i++)
        results[i] = NULL;
    if (db->conn == NULL)
        return -1;
    PGconn *conn = db->conn;
    int rv = 0, sent = 0;
    /* fails only if the connection is not idle: a state no caller leaves it in, so reset it */
    if (!PQenterPipelineMode(conn))
        goto broken;
    for (int i = 0; i < n; i++) {
        if (stmts[i].sql == NULL)
            continue;
        if (!PQsendQueryParams(conn, stmts[i].sql, stmts[i].nparams, NULL, stmts[i].values, NULL, NULL, 0)) {
            rv = -1;
            break;
        }
        sent = i + 1;
    }
    /* sync even after a failed send, so what was sent is answered and the connection left usable */
    if (!PQpipelineSync(conn))
        goto broken;
    /* each statement's results end with a NULL; the last thing is the sync's PGRES_PIPELINE_SYNC */
    for (int i = 0; i < sent; i++) {
        if (stmts[i].sql == NULL)
            continue;
        PGresult *r;
        while ((r = PQgetResult(conn)) != NULL) {
            if (results[i] == NULL)
                results[i] = r;
            else
                PQclear(r); /* a second result (an error after rows): the first tells what happened */
        }
        ExecStatusType st = PQresultStatus(results[i]);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
            rv = -1;
        if (PQstatus(conn) == CONNECTION_BAD)
            goto broken;
    }
    for (;;) {
        PGresult *r = PQgetResult(conn);
        if (r == NULL)
            goto broken; /* no sync answer: only a broken connection ends the stream without one */
        int is_sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
        if (is_sync)
            break;
    }
    if (!PQexitPipelineMode(conn))
        goto broken;
    drain_notifies(db);
    return rv;
broken:
    tg_warn("cp.db.lost", "error=\"%s\"", oneline(PQerrorMessage(conn)));
    drop(db);
    schedule_retry(db);
    return -1;
}

const char *
cp_db_sqlstate(const PGresult *res)
{
    const char *s = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s != NULL ? s : "";
}

const char *
cp_db_errmsg(cp_db_t *db, const PGresult *res)
{
    const char *m = res != NULL ? PQresultErrorMessage(res) : "";
    if (*m == '\0')
        m = db->conn != NULL ? PQerrorMessage(db->conn) : "no database connection";
    return oneline(m);
}
