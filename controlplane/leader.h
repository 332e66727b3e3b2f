/*
 * Leader election between control-plane replicas: the leader is the process whose dedicated PostgreSQL
 * session holds a session-level advisory lock.
 *
 * Only the leader binds the NNG sockets, builds and publishes snapshots and ingests usage; a standby
 * serves the admin API (every write goes to PostgreSQL, which tells the leader by NOTIFY) and tries to
 * take the lock every CP_LEADER_TICK_MS. The lock lives and dies with its session, so a leader that
 * crashes, is killed or loses its connection releases it without anyone's help.
 *
 * Fencing: a leader stops acting as one the moment it cannot prove its session is alive, which is before
 * PostgreSQL can give the lock to someone else. The session is pinged every tick; an unanswered ping for
 * CP_LEADER_LEASE_MS, a closed socket or a failed read demotes at once. cp_leader_check() runs that test
 * (reading whatever the socket holds) and is called before every publication and every usage batch. The
 * server side is told to drop a silent peer within ~10 s (TCP keepalives and tcp_user_timeout on the
 * session), far longer than the lease, so two leaders never act at the same time.
 *
 * Invariants: everything runs on the loop thread; on_change(0) is called before the session is closed,
 * so the caller has stopped acting as leader when the lock goes; on_change is never called from
 * cp_leader_close().
 */
#ifndef CP_LEADER_H
#define CP_LEADER_H

#include <stdint.h>
#include <libpq-fe.h>
#include <uv.h>

#define CP_LEADER_TICK_MS  500  /* lock attempts of a standby, pings of the leader */
#define CP_LEADER_LEASE_MS 2000 /* an unanswered ping older than this demotes the leader */

typedef struct cp_leader cp_leader_t;

/* Leadership changed. For leading = 1, return 0 to take it or -1 to refuse (the lock is released and
 * taken again no sooner than a few seconds later); the value is ignored for leading = 0. */
typedef int (*cp_leader_change_cb)(cp_leader_t *l, int leading);

enum cp_leader_query { CP_LEADER_IDLE = 0, CP_LEADER_TRY, CP_LEADER_PING };

struct cp_leader {
    uv_loop_t *loop;
    const char *conninfo;
    PGconn *conn;    /* the lock session; NULL while disconnected */
    uv_poll_t *poll; /* heap allocated, freed in its close callback */
    uv_timer_t tick;
    enum cp_leader_query pending;
    uint64_t sent_ns;         /* when the pending query went out */
    uint64_t next_connect_ns; /* connect again no sooner than this */
    unsigned backoff_ms;
    int leading;
    int said_standby; /* "standby" is logged once per episode */
    int closing;
    uint64_t leading_since_ms;
    cp_leader_change_cb on_change;
    void *data;
};

int cp_leader_init(cp_leader_t *l, uv_loop_t *loop, const char *conninfo, cp_leader_change_cb on_change, void *data);
/* Tries at once, then every CP_LEADER_TICK_MS. */
void cp_leader_start(cp_leader_t *l);
/* Closes the lock session (releasing the lock) and the handles; the handles are freed once the loop
 * runs their close callbacks. Does not call on_change. */
void cp_leader_close(cp_leader_t *l);

/* Fencing test before acting as leader: 1 when this process leads and its lock session is alive as far
 * as can be told now; otherwise 0, after demoting (on_change(0)) if it was leading. */
int cp_leader_check(cp_leader_t *l);
/* Whether this process leads, without testing the session (for status reports). */
static inline int
cp_leader_is_leading(const cp_leader_t *l)
{
    return l->leading;
}

#endif
