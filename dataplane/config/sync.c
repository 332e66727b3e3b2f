/*
 * Snapshot synchronisation thread (see sync.h).
 *
 * Key deltas are applied only on top of the version they were made from; while a fetch is pending they
 * are dropped (the fetched snapshot is newer than any of them, or the next heartbeat says otherwise).
 *
 * The loop waits on the SUB socket: until the next retry while a fetch is pending, otherwise for
 * IDLE_WAIT_MS (the control plane's heartbeats arrive sooner), so an idle dataplane does not wake ten
 * times a second for nothing. A stop closes the SUB socket, which ends a waiting receive at once.
 *
 * Several control-plane replicas: TOLLGATE_CP_PUB_URL / TOLLGATE_CP_REP_URL may list one address per
 * replica, comma-separated, and each socket gets one dialer per address. Only the leader listens, so at
 * any moment the sockets have at most one live pipe, and the dialers of the others keep retrying; when
 * the leader changes, the pipe to the old one breaks and the new one's dialer connects on its next try.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>
#include "config/snapshot.h"
#include "config/sync.h"
#include "server/worker.h"
#include "tollgate/env.h"
#include "tollgate/log.h"
#include "tollgate.pb-c.h"

static struct {
    pthread_t thread;
    atomic_int stop;
    nng_socket sub, req;
    atomic_uint_fast64_t full, deltas, stale; /* counters for the metrics (sync.h) */
} sync_state;

/* A published snapshot must be newer than ours (publications can be overtaken by a fetch); a fetched one
 * is the control plane's current state and wins whenever it differs, even when its version went back
 * (a database restored from a backup restarts the version sequence lower). */
static void
apply(const uint8_t *payload, size_t len, int fetched)
{
    const char *via = fetched ? "fetch" : "publish";
    char err[256];
    dp_snapshot_t *s;
    uint64_t t0 = tg_mono_ns();
    if (dp_snapshot_build(payload, len, &dp_config.wire_key, &s, err, sizeof(err)) != 0) {
        tg_error("dp.snapshot.rejected", "via=%s reason=%s", via, err);
        return;
    }
    if (fetched ? s->version == dp_snapshot_current_version() : s->version <= dp_snapshot_current_version()) {
        dp_snapshot_unref(s);
        return;
    }
    uint64_t version = s->version;
    size_t keys = s->n_keys, routes = s->n_routes;
    dp_snapshot_publish(s);
    atomic_fetch_add(&sync_state.full, 1);
    tg_info("dp.snapshot.applied", "version=%llu keys=%zu routes=%zu via=%s build_us=%llu", (unsigned long long)version,
            keys, routes, via, (unsigned long long)((tg_mono_ns() - t0) / 1000));
}

/* A key delta on top of the current snapshot. 0, or -1 when the full snapshot must be fetched (the delta
 * was made on another version than ours: we missed one, or have none yet). */
static int
apply_delta(const uint8_t *payload, size_t len)
{
    char err[256];
    dp_snapshot_t *s, *cur = dp_snapshot_acquire(); /* only this thread publishes: cur stays current */
    uint64_t t0 = tg_mono_ns();
    int rv = dp_snapshot_apply_delta(cur, payload, len, &s, err, sizeof(err));
    uint64_t have = cur != NULL ? cur->version : 0;
    dp_snapshot_unref(cur);
    if (rv == DP_DELTA_OLD)
        return 0;
    if (rv == DP_DELTA_STALE) {
        atomic_fetch_add(&sync_state.stale, 1);
        tg_info("dp.sync.delta_stale", "have=%llu: fetching the full snapshot", (unsigned long long)have);
        return -1;
    }
    if (rv != 0) {
        tg_error("dp.snapshot.rejected", "via=delta reason=%s", err);
        return -1;
    }
    uint64_t version = s->version;
    size_t keys = s->n_keys;
    dp_snapshot_publish(s);
    atomic_fetch_add(&sync_state.deltas, 1);
    tg_info("dp.snapshot.delta_applied", "base=%llu version=%llu keys=%zu build_us=%llu", (unsigned long long)have,
            (unsigned long long)version, keys, (unsigned long long)((tg_mono_ns() - t0) / 1000));
    return 0;
}

void
dp_sync_counters(uint64_t *full, uint64_t *deltas, uint64_t *stale)
{
    *full = atomic_load(&sync_state.full);
    *deltas = atomic_load(&sync_state.deltas);
    *stale = atomic_load(&sync_state.stale);
}

/* One request/reply round trip for the current snapshot. 0 or -1. */
static int
fetch(void)
{
    Tollgate__SnapshotRequest rq = TOLLGATE__SNAPSHOT_REQUEST__INIT;
    rq.instance_id = dp_config.instance_id;
    rq.have_version = dp_snapshot_current_version();
    int rv = tg_wire_send(sync_state.req, &dp_config.wire_key, TOLLGATE__MSG_TYPE__MSG_SNAPSHOT_REQUEST, &rq.base, 0);
    if (rv != 0)
        return -1;
    tg_wire_msg_t reply;
    if ((rv = tg_wire_recv(sync_state.req, &dp_config.wire_key, &reply, 0)) != 0)
        return -1;
    int ok = -1;
    if (reply.type == TOLLGATE__MSG_TYPE__MSG_SNAPSHOT) {
        apply(reply.payload, reply.len, 1);
        ok = 0;
    }
    tg_wire_msg_dispose(&reply);
    return ok;
}

#define IDLE_WAIT_MS 2000

/* The receive timeout for this turn: what is left of a retry backoff, or idle. */
static void
set_wait(int need_fetch, uint64_t next_fetch_ns, int *current_ms)
{
    int ms = IDLE_WAIT_MS;
    if (need_fetch) {
        uint64_t now = tg_mono_ns();
        ms = next_fetch_ns > now ? (int)((next_fetch_ns - now) / 1000000) + 1 : 1;
        if (ms > IDLE_WAIT_MS)
            ms = IDLE_WAIT_MS;
    }
    if (ms != *current_ms && nng_socket_set_ms(sync_state.sub, NNG_OPT_RECVTIMEO, ms) == 0)
        *current_ms = ms;
}

static void *
sync_main(void *arg)
{
    int need_fetch = 1, failures = 0, wait_ms = -1;
    uint64_t next_fetch_ns = 0;
    while (!atomic_load(&sync_state.stop)) {
        uint64_t now = tg_mono_ns();
        if (need_fetch && now >= next_fetch_ns) {
            if (fetch() == 0) {
                need_fetch = 0;
                if (failures > 0)
                    tg_info("dp.sync.recovered", "after_failures=%d", failures);
                failures = 0;
            } else {
                if (failures++ == 0)
                    tg_warn("dp.sync.fetch_failed", "url=%s: serving on version %llu meanwhile", dp_config.cp_rep_url,
                            (unsigned long long)dp_snapshot_current_version());
                uint64_t backoff_ms = failures < 5 ? 100u << failures : 2000;
                next_fetch_ns = tg_mono_ns() + backoff_ms * 1000000ull;
            }
        }
        set_wait(need_fetch, next_fetch_ns, &wait_ms);
        tg_wire_msg_t m;
        int rv = tg_wire_recv(sync_state.sub, &dp_config.wire_key, &m, 0);
        if (rv == NNG_ETIMEDOUT)
            continue;
        if (rv == NNG_EINVAL) {
            tg_warn("dp.sync.bad_message", "a message failed verification (wrong cluster secret?)");
            continue;
        }
        if (rv != 0)
            break; /* socket closed */
        if (m.type == TOLLGATE__MSG_TYPE__MSG_SNAPSHOT) {
            apply(m.payload, m.len, 0);
        } else if (m.type == TOLLGATE__MSG_TYPE__MSG_KEY_DELTA) {
            if (!need_fetch && apply_delta(m.payload, m.len) != 0) {
                need_fetch = 1;
                next_fetch_ns = 0;
            }
        } else if (m.type == TOLLGATE__MSG_TYPE__MSG_HEARTBEAT) {
            Tollgate__Heartbeat *hb = tollgate__heartbeat__unpack(NULL, m.len, m.payload);
            if (hb != NULL && hb->version != dp_snapshot_current_version() && !need_fetch) {
                tg_info("dp.sync.version_gap", "have=%llu heartbeat=%llu",
                        (unsigned long long)dp_snapshot_current_version(), (unsigned long long)hb->version);
                need_fetch = 1;
                next_fetch_ns = 0;
            }
            if (hb != NULL)
                tollgate__heartbeat__free_unpacked(hb, NULL);
        }
        tg_wire_msg_dispose(&m);
    }
    return NULL;
}

int
dp_sync_dial(nng_socket s, const char *urls, const char *what)
{
    int n = 0;
    const char *p = urls;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *q = p;
        p = end != NULL ? end + 1 : p + len;
        while (len > 0 && (*q == ' ' || *q == '\t'))
            q++, len--;
        while (len > 0 && (q[len - 1] == ' ' || q[len - 1] == '\t'))
            len--;
        if (len == 0)
            continue;
        char url[512];
        if (len >= sizeof(url) || n >= DP_SYNC_MAX_URLS) {
            tg_error("dp.sync.dial_failed", "socket=%s urls=\"%s\" error=\"too many or too long addresses\"", what,
                     urls);
            return -1;
        }
        memcpy(url, q, len);
        url[len] = '\0';
        /* Non-blocking: a replica that does not listen (a standby, one not started yet) is retried by NNG. */
        int rv = nng_dial(s, url, NULL, NNG_FLAG_NONBLOCK);
        if (rv != 0) {
            tg_error("dp.sync.dial_failed", "socket=%s url=%s error=\"%s\"", what, url, nng_strerror(rv));
            return -1;
        }
        n++;
    }
    if (n == 0) {
        tg_error("dp.sync.dial_failed", "socket=%s error=\"no address\"", what);
        return -1;
    }
    return 0;
}

int
dp_sync_start(void)
{
    int rv;
    if ((rv = nng_sub0_open(&sync_state.sub)) != 0 || (rv = nng_req0_open(&sync_state.req)) != 0) {
        tg_error("dp.sync.socket_failed", "error=%s", nng_strerror(rv));
        return -1;
    }
    nng_socket_set(sync_state.sub, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    nng_socket_set_size(sync_state.sub, NNG_OPT_RECVMAXSZ, TG_WIRE_MAX_MSG);
    nng_socket_set_size(sync_state.req, NNG_OPT_RECVMAXSZ, TG_WIRE_MAX_MSG);
    nng_socket_set_ms(sync_state.req, NNG_OPT_SENDTIMEO, 1000);
    nng_socket_set_ms(sync_state.req, NNG_OPT_RECVTIMEO, 3000);
    nng_socket_set_ms(sync_state.req, NNG_OPT_REQ_RESENDTIME, 3000);
    nng_socket_set_ms(sync_state.sub, NNG_OPT_RECONNMINT, 50);
    nng_socket_set_ms(sync_state.sub, NNG_OPT_RECONNMAXT, 1000);
    nng_socket_set_ms(sync_state.req, NNG_OPT_RECONNMINT, 50);
    nng_socket_set_ms(sync_state.req, NNG_OPT_RECONNMAXT, 1000);
    if (dp_sync_dial(sync_state.sub, dp_config.cp_pub_url, "sub") != 0 ||
        dp_sync_dial(sync_state.req, dp_config.cp_rep_url, "req") != 0)
        return -1;
    if (pthread_create(&sync_state.thread, NULL, sync_main, NULL) != 0)
        return -1;
    return 0;
}

void
dp_sync_stop(void)
{
    atomic_store(&sync_state.stop, 1);
    nng_close(sync_state.sub); /* ends the thread's receive (NNG_ECLOSED) */
    pthread_join(sync_state.thread, NULL);
    nng_close(sync_state.req);
}
