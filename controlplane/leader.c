/*
 * Leader election on a PostgreSQL session advisory lock (see leader.h).
 *
 * The lock session is a connection of its own, not the one queries run on: its only job is to stay
 * alive, and its liveness must be testable at any moment without waiting behind a long query. After the
 * (blocking, 2 s bounded) connect, its queries are asynchronous: PQsendQuery from the tick, results read
 * when the socket turns readable (or by cp_leader_check()), so a database that stops answering never
 * blocks the loop; it only lets the lease run out.
 *
 * One tick does one of: connect (with backoff after failures), `pg_try_advisory_lock` (standby), `SELECT 1`
 * (leader), or, when the previous query is still unanswered, check the lease.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "leader.h"
#include "tollgate/env.h"
#include "tollgate/log.h"

/* "tg-leadr" in ASCII; migrations use "tollgate" (migrate.c), so the two locks never collide. */
#define LEADER_LOCK_KEY "8387722774581437554"

#define CONNECT_BACKOFF_MIN_MS 500
#define CONNECT_BACKOFF_MAX_MS 5000
#define REFUSED_BACKOFF_MS     3000

static void drop(cp_leader_t *l);
static void pump(cp_leader_t *l);

static uint64_t
ms_to_ns(uint64_t ms)
{
    return ms * 1000000ull;
}

static const char *
oneline(const char *msg)
{
    static char buf[256];
    size_t o = 0;
    for (const char *p = msg; *p != '\0' && o + 1 < sizeof(buf); p++)
        buf[o++] = (*p == '\n' || *p == '\t' || *p == '"') ? ' ' : *p;
    while (o > 0 && buf[o - 1] == ' ')
        o--;
    buf[o] = '\0';
    return buf;
}

/* Leadership ends: the caller stops acting first, then the session goes. */
static void
lose(cp_leader_t *l, const char *why)
{
    if (l->leading) {
        l->leading = 0;
        tg_warn("cp.leader.lost", "reason=\"%s\" led_ms=%lld", why,
                (long long)(tg_now_unix_ms() - (int64_t)l->leading_since_ms));
        l->on_change(l, 0);
    } else {
        tg_warn("cp.leader.session_lost", "reason=\"%s\"", why);
    }
    drop(l);
    l->next_connect_ns = tg_mono_ns(); /* reconnect at the next tick, as a standby */
}

static void
on_poll_close(uv_handle_t *h)
{
    free(h);
}

static void
drop(cp_leader_t *l)
{
    if (l->poll != NULL) {
        uv_poll_stop(l->poll);
        uv_close((uv_handle_t *)l->poll, on_poll_close);
        l->poll = NULL;
    }
    if (l->conn != NULL) {
        /* PQfinish tells the server goodbye: the lock is released now, not when a timeout notices. */
        PQfinish(l->conn);
        l->conn = NULL;
    }
    l->pending = CP_LEADER_IDLE;
}

static void
on_readable(uv_poll_t *poll, int status, int events)
{
    cp_leader_t *l = poll->data;
    if (status < 0) {
        lose(l, uv_strerror(status));
        return;
    }
    pump(l);
}

/* Opens the lock session. Keepalives on both ends and tcp_user_timeout make the server end a session
 * whose client went silent within ~10 s; the leader's own lease (2 s) runs out long before that. The
 * connection string comes last so that whatever the operator put in DATABASE_URL wins. */
static int
connect_session(cp_leader_t *l)
{
    const char *keys[] = {"connect_timeout",
                          "application_name",
                          "keepalives",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "tcp_user_timeout",
                          "dbname",
                          NULL};
    const char *vals[] = {"2", "tollgate-controlplane-leader", "1", "5", "2", "3", "10000", l->conninfo, NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
        goto fail;
    /* Server side: these apply to TCP sessions and are ignored on a Unix socket. */
    PGresult *res = PQexec(conn, "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2;"
                                 " SET tcp_keepalives_count = 3; SET tcp_user_timeout = 10000;"
                                 " SET client_min_messages = warning");
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok)
        goto fail;
    l->poll = malloc(sizeof(*l->poll));
    if (l->poll == NULL || uv_poll_init(l->loop, l->poll, PQsocket(conn)) != 0) {
        free(l->poll);
        l->poll = NULL;
        goto fail;
    }
    l->poll->data = l;
    uv_poll_start(l->poll, UV_READABLE, on_readable);
    l->conn = conn;
    l->backoff_ms = 0;
    return 0;
fail:
    l->backoff_ms = l->backoff_ms == 0 ? CONNECT_BACKOFF_MIN_MS : l->backoff_ms * 2;
    if (l->backoff_ms > CONNECT_BACKOFF_MAX_MS)
        l->backoff_ms = CONNECT_BACKOFF_MAX_MS;
    l->next_connect_ns = tg_mono_ns() + ms_to_ns(l->backoff_ms);
    tg_warn("cp.leader.connect_failed", "error=\"%s\" retry_ms=%u",
            conn != NULL ? oneline(PQerrorMessage(conn)) : "out of memory", l->backoff_ms);
    PQfinish(conn);
    return -1;
}

static void
send_query(cp_leader_t *l, enum cp_leader_query q)
{
    const char *sql = q == CP_LEADER_TRY ? "SELECT pg_try_advisory_lock(" LEADER_LOCK_KEY ")" : "SELECT 1";
    if (!PQsendQuery(l->conn, sql)) {
        lose(l, oneline(PQerrorMessage(l->conn)));
        return;
    }
    l->pending = q;
    l->sent_ns = tg_mono_ns();
}

/* The answer to pg_try_advisory_lock. */
static void
on_try_result(cp_leader_t *l, int got)
{
    if (!got) {
        if (!l->said_standby) {
            l->said_standby = 1;
            tg_info("cp.leader.standby", "another control plane holds the lock; retrying every %d ms",
                    CP_LEADER_TICK_MS);
        }
        return;
    }
    l->leading = 1;
    l->said_standby = 0;
    l->leading_since_ms = (uint64_t)tg_now_unix_ms();
    tg_info("cp.leader.elected", "backend_pid=%d", PQbackendPID(l->conn));
    if (l->on_change(l, 1) != 0) {
        /* The caller cannot lead (its sockets did not bind, say): give the lock to someone who can. */
        l->leading = 0;
        tg_warn("cp.leader.resigned", "retry_ms=%d", REFUSED_BACKOFF_MS);
        drop(l);
        l->next_connect_ns = tg_mono_ns() + ms_to_ns(REFUSED_BACKOFF_MS);
    }
}

/* Reads what the socket holds and handles complete results. May demote (and drop the session). */
static void
pump(cp_leader_t *l)
{
    if (l->conn == NULL)
        return;
    if (!PQconsumeInput(l->conn) || PQstatus(l->conn) != CONNECTION_OK) {
        lose(l, oneline(PQerrorMessage(l->conn)));
        return;
    }
    while (l->conn != NULL && l->pending != CP_LEADER_IDLE && !PQisBusy(l->conn)) {
        PGresult *res = PQgetResult(l->conn);
        if (res == NULL) {
            l->pending = CP_LEADER_IDLE; /* the query is complete */
            break;
        }
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            char why[256];
            snprintf(why, sizeof(why), "%s", oneline(PQresultErrorMessage(res)));
            PQclear(res);
            lose(l, why);
            return;
        }
        if (l->pending == CP_LEADER_TRY)
            on_try_result(l, PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0);
        PQclear(res);
    }
    /* Anything unsolicited (a NOTICE, a notification) is simply consumed. */
    PGnotify *n;
    while (l->conn != NULL && (n = PQnotifies(l->conn)) != NULL)
        PQfreemem(n);
}

static void
on_tick(uv_timer_t *t)
{
    cp_leader_t *l = t->data;
    if (l->closing)
        return;
    if (l->conn == NULL) {
        if (tg_mono_ns() < l->next_connect_ns || connect_session(l) != 0)
            return;
    }
    pump(l);
    if (l->conn == NULL)
        return;
    if (l->pending != CP_LEADER_IDLE) {
        if (tg_mono_ns() - l->sent_ns > ms_to_ns(CP_LEADER_LEASE_MS))
            lose(l, "the lock session did not answer within the lease");
        return;
    }
    send_query(l, l->leading ? CP_LEADER_PING : CP_LEADER_TRY);
}

int
cp_leader_init(cp_leader_t *l, uv_loop_t *loop, const char *conninfo, cp_leader_change_cb on_change, void *data)
{
    memset(l, 0, sizeof(*l));
    l->loop = loop;
    l->conninfo = conninfo;
    l->on_change = on_change;
    l->data = data;
    l->tick.data = l;
    return uv_timer_init(loop, &l->tick);
}

void
cp_leader_start(cp_leader_t *l)
{
    /* A lone control plane should not wait a tick to lead. */
    uv_timer_start(&l->tick, on_tick, 0, CP_LEADER_TICK_MS);
}

void
cp_leader_close(cp_leader_t *l)
{
    if (l->closing)
        return;
    l->closing = 1;
    if (l->leading)
        tg_info("cp.leader.released", "led_ms=%lld", (long long)(tg_now_unix_ms() - (int64_t)l->leading_since_ms));
    l->leading = 0;
    drop(l);
    uv_timer_stop(&l->tick);
    uv_close((uv_handle_t *)&l->tick, NULL);
}

int
cp_leader_check(cp_leader_t *l)
{
    if (!l->leading)
        return 0;
    pump(l);
    if (!l->leading)
        return 0;
    if (l->pending != CP_LEADER_IDLE && tg_mono_ns() - l->sent_ns > ms_to_ns(CP_LEADER_LEASE_MS)) {
        lose(l, "the lock session did not answer within the lease");
        return 0;
    }
    return 1;
}
