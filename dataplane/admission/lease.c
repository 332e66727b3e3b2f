/*
 * The lease thread (see lease.h).
 *
 * One request carries every ask at once (all allowances that want more, need renewal or have something
 * to give back), so a burst of parked requests under many limits costs one round trip. Expiry: the
 * control plane says when a lease expires on its clock and what its clock reads; the lease is used on
 * this process's clock until (our now + (expires - cp now)) minus a margin, so a skew between the two
 * clocks cannot make us use a lease the control plane already considers expired.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include "admission/admission.h"
#include "admission/allowance.h"
#include "admission/lease.h"
#include "config/sync.h"
#include "server/worker.h"
#include "tollgate.pb-c.h"
#include "tollgate/clock.h"
#include "tollgate/log.h"

#define TICK_MS             250
#define IDLE_TICK_MS        10000 /* no limit known: nothing to renew; an ask kicks the thread anyway */
#define RENEW_BEFORE_MS     4000
#define NEXT_WINDOW_LEAD_MS 500 /* ask for a rate window's successor this long before it starts (at most half) */
#define MAX_ASKS            4096

extern void (*dp_allowance_on_want)(void);

static struct {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int kick, stop, started;
    nng_socket req;
} st = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void
kick(void)
{
    pthread_mutex_lock(&st.mu);
    if (!st.kick) {
        st.kick = 1;
        pthread_cond_signal(&st.cv);
    }
    pthread_mutex_unlock(&st.mu);
}

/* 1 when something was given back and should be sent at once. */
static int
apply_grant(const Tollgate__LeaseGrant *g, const int64_t *needs, dp_allowance_t **slots, size_t n)
{
    int again = 0;
    int64_t now = tg_clock_now_ms();
    for (size_t i = 0; i < g->n_leases && i < n; i++) {
        const Tollgate__LeaseState *ls = g->leases[i];
        dp_allowance_t *a = slots[i];
        if (ls->unknown) /* the limit is gone: nothing to apply; the next snapshot drops it */
            continue;
        int64_t usable_until = now + (ls->expires_ms - g->now_ms);
        again |= dp_allowance_apply(a, ls->period_start_ms, ls->period_end_ms, ls->epoch, ls->granted, ls->remaining,
                                    ls->limit, usable_until, needs[i] > 0 ? ls->granted >= needs[i] : -1);
        if (a->kind == DP_LEASE_BUDGET)
            dp_allowance_set_settled(a, ls->period_start_ms, ls->settled);
        if (ls->granted > 0 || needs[i] > 0)
            tg_debug("dp.lease.granted", "limit=%s kind=%d granted=%lld remaining=%lld", a->id, (int)a->kind,
                     (long long)ls->granted, (long long)ls->remaining);
    }
    return again;
}

static void
asks_done(dp_allowance_t **slots, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dp_allowance_ask_done(slots[i]);
}

/* One exchange: collect, send, apply. 0, 1 (go again now: allowance was given back), -1 (no answer), -2
 * (nothing to send). */
static int
exchange(int final)
{
    int64_t now = tg_clock_now_ms();
    static Tollgate__LeaseAsk asks[MAX_ASKS];
    static Tollgate__LeaseAsk *ptrs[MAX_ASKS];
    static dp_allowance_t *slots[MAX_ASKS];
    static int64_t needs[MAX_ASKS]; /* what parked requests need: the answer says whether the limit is exhausted */
    size_t n = 0;
    for (dp_allowance_t *a = dp_allowance_first(); a != NULL && n + 2 <= MAX_ASKS; a = a->next_all) {
        dp_allowance_ask_t ask[2];
        int k = 0;
        if (dp_allowance_collect(a, now, final ? INT64_MAX / 4 : RENEW_BEFORE_MS, &ask[0])) {
            if (final) /* shutting down: give back, ask for nothing */
                ask[0].want = ask[0].need = 0;
            k += !final || ask[0].release > 0;
        }
        /* a rate window about to end: its successor too, so its first request finds allowance here */
        if (!final && dp_allowance_collect_next(a, now, NEXT_WINDOW_LEAD_MS, &ask[k]))
            k++;
        for (int j = 0; j < k; j++, n++) {
            tollgate__lease_ask__init(&asks[n]);
            asks[n].limit_id = a->id;
            asks[n].kind = (Tollgate__LeaseKind)a->kind;
            asks[n].period_start_ms = ask[j].period_start_ms;
            asks[n].want = ask[j].want > ask[j].need ? ask[j].want : ask[j].need;
            asks[n].release = ask[j].release;
            asks[n].epoch = ask[j].epoch;
            asks[n].need = ask[j].need;
            ptrs[n] = &asks[n];
            slots[n] = a;
            needs[n] = ask[j].need;
        }
    }
    if (n == 0)
        return -2;
    Tollgate__LeaseRequest rq = TOLLGATE__LEASE_REQUEST__INIT;
    rq.instance_id = dp_config.instance_id;
    rq.now_ms = now;
    rq.n_asks = n;
    rq.asks = ptrs;
    uint32_t type = final ? TOLLGATE__MSG_TYPE__MSG_LEASE_RELEASE : TOLLGATE__MSG_TYPE__MSG_LEASE_REQUEST;
    int rv = tg_wire_send(st.req, &dp_config.wire_key, type, &rq.base, 0);
    if (rv != 0) /* never sent: what it gave back goes with the next exchange */
        for (size_t i = 0; i < n; i++)
            if (asks[i].release > 0)
                dp_allowance_unsend(slots[i], &(dp_allowance_ask_t){.period_start_ms = asks[i].period_start_ms,
                                                                    .epoch = asks[i].epoch,
                                                                    .release = asks[i].release});
    tg_wire_msg_t reply;
    if (rv == 0)
        rv = tg_wire_recv(st.req, &dp_config.wire_key, &reply, 0);
    if (rv != 0) {
        /* sent but unanswered: what we gave back may or may not have been applied, so it stays with the
         * control plane as outstanding: never an overspend, only an allowance stranded until the lease
         * expires */
        tg_warn("dp.lease.failed", "asks=%zu error=\"%s\"", n, nng_strerror(rv));
        asks_done(slots, n); /* parked requests ask again, their wait bounded by the timer */
        return -1;
    }
    int ok = -1;
    if (reply.type == TOLLGATE__MSG_TYPE__MSG_LEASE_GRANT) {
        Tollgate__LeaseGrant *g = tollgate__lease_grant__unpack(NULL, reply.len, reply.payload);
        if (g != NULL) {
            ok = apply_grant(g, needs, slots, n);
            tollgate__lease_grant__free_unpacked(g, NULL);
        }
    } else if (reply.type == TOLLGATE__MSG_TYPE__MSG_ERROR) {
        Tollgate__Error *e = tollgate__error__unpack(NULL, reply.len, reply.payload);
        tg_warn("dp.lease.refused", "error=\"%s\"", e != NULL ? e->message : "?");
        if (e != NULL)
            tollgate__error__free_unpacked(e, NULL);
    }
    tg_wire_msg_dispose(&reply);
    asks_done(slots, n); /* after the grant is applied: a request it did not serve asks again */
    return ok;
}

/* One round: exchanges, then the workers retry their parked requests. 0, 1 (go again), -1 (no answer).
 * What a refusal made us give back goes to the control plane before the refused requests are answered:
 * a client that sees 402 knows this dataplane's leftovers are already pooled for the other dataplanes
 * (the bound in docs/admission.md counts on it). */
static int
round_trip(int final)
{
    int rv = exchange(final);
    for (int i = 0; rv == 1 && i < 4; i++)
        rv = exchange(final);
    if (rv == -2)
        return 0;
    dp_admission_wake_all();
    return rv;
}

static void *
lease_main(void *arg)
{
    (void)arg;
    int failures = 0;
    for (;;) {
        pthread_mutex_lock(&st.mu);
        if (!st.kick && !st.stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t wait_ms = failures > 0                   ? (failures < 4 ? 100 << failures : 1000)
                              : dp_allowance_first() != NULL ? TICK_MS
                                                             : IDLE_TICK_MS;
            ts.tv_nsec += (wait_ms % 1000) * 1000000;
            ts.tv_sec += wait_ms / 1000 + ts.tv_nsec / 1000000000;
            ts.tv_nsec %= 1000000000;
            pthread_cond_timedwait(&st.cv, &st.mu, &ts);
        }
        int stop = st.stop;
        st.kick = 0;
        pthread_mutex_unlock(&st.mu);
        if (stop)
            break;
        int rv = round_trip(0);
        failures = rv >= 0 ? 0 : failures + 1;
        if (rv == 1) { /* what a refusal made us give back goes to the other dataplanes now, not at the tick */
            pthread_mutex_lock(&st.mu);
            st.kick = 1;
            pthread_mutex_unlock(&st.mu);
        }
    }
    return NULL;
}

int
dp_lease_start(void)
{
    int rv;
    if ((rv = nng_req0_open(&st.req)) != 0) {
        tg_error("dp.lease.socket_failed", "error=%s", nng_strerror(rv));
        return -1;
    }
    nng_socket_set_size(st.req, NNG_OPT_RECVMAXSZ, TG_WIRE_MAX_MSG);
    nng_socket_set_ms(st.req, NNG_OPT_SENDTIMEO, 1000);
    nng_socket_set_ms(st.req, NNG_OPT_RECVTIMEO, 2000);
    /* no resend: a resent ask could be applied twice; a lost one only strands allowance until expiry */
    nng_socket_set_ms(st.req, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_ms(st.req, NNG_OPT_RECONNMINT, 50);
    nng_socket_set_ms(st.req, NNG_OPT_RECONNMAXT, 1000);
    if (dp_sync_dial(st.req, dp_config.cp_rep_url, "lease") != 0)
        return -1;
    dp_allowance_on_want = kick;
    if (pthread_create(&st.thread, NULL, lease_main, NULL) != 0)
        return -1;
    st.started = 1;
    return 0;
}

void
dp_lease_stop(void)
{
    if (!st.started)
        return;
    pthread_mutex_lock(&st.mu);
    st.stop = 1;
    pthread_cond_signal(&st.cv);
    pthread_mutex_unlock(&st.mu);
    pthread_join(st.thread, NULL);
    dp_allowance_on_want = NULL;
    round_trip(1); /* what is unused goes back now rather than at expiry */
    nng_close(st.req);
    dp_allowance_free_all();
}
