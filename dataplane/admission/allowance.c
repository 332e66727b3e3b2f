/*
 * Local allowances (see allowance.h).
 *
 * Locking: one mutex per allowance, held for a few arithmetic steps. Workers contend only when they
 * admit requests under the same limit at the same instant; the lease thread takes it once per ask.
 * The registry of allowances is a list that only grows (a mutex for the insert; readers walk it from
 * an atomic head), found at snapshot build, never on the request path.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "admission/allowance.h"
#include "tollgate/env.h"

#define EXHAUSTED_FOR_NS (200ull * 1000000) /* how long a "no more" answer is believed before asking again */
#define PREFETCH_FACTOR  8                  /* ask for at least this many requests' worth at a time */
#define RATE_SLICE_MS    100                /* the reservation rate is measured over slices this long */
#define ASK_AHEAD_DIV    4                  /* ask again when less than 1/4 s of traffic is left */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(dp_allowance_t *) registry;
static atomic_llong margin_ms = 1000;

void (*dp_allowance_on_want)(void); /* set by lease.c: wakes the lease thread */
atomic_llong dp_allowance_overshoots;

void
dp_allowance_set_margin_ms(int64_t ms)
{
    atomic_store(&margin_ms, ms);
}

dp_allowance_t *
dp_allowance_first(void)
{
    return atomic_load_explicit(&registry, memory_order_acquire);
}

dp_allowance_t *
dp_allowance_get(const char *id, dp_lease_kind_t kind)
{
    pthread_mutex_lock(&registry_lock);
    dp_allowance_t *a;
    for (a = atomic_load(&registry); a != NULL; a = a->next_all)
        if (a->kind == kind && strcmp(a->id, id) == 0)
            goto out;
    if (strlen(id) >= sizeof(a->id) || (a = calloc(1, sizeof(*a))) == NULL)
        goto out;
    strcpy(a->id, id);
    a->kind = kind;
    a->soft = -1;
    a->warned_period = -1;
    pthread_mutex_init(&a->mu, NULL);
    a->next_all = atomic_load(&registry);
    atomic_store_explicit(&registry, a, memory_order_release);
out:
    pthread_mutex_unlock(&registry_lock);
    return a;
}

void
dp_allowance_free_all(void)
{
    pthread_mutex_lock(&registry_lock);
    dp_allowance_t *a = atomic_exchange(&registry, NULL);
    pthread_mutex_unlock(&registry_lock);
    while (a != NULL) {
        dp_allowance_t *next = a->next_all;
        for (dp_lease_t *l = a->leases, *ln; l != NULL; l = ln) {
            ln = l->next;
            free(l);
        }
        pthread_mutex_destroy(&a->mu);
        free(a);
        a = next;
    }
}

/* The newest lease whose period contains now (a prefetched next window may be newer), or NULL. */
static dp_lease_t *
of_period(dp_allowance_t *a, int64_t now_ms)
{
    for (dp_lease_t *l = a->leases; l != NULL; l = l->next)
        if (now_ms >= l->period_start_ms && now_ms < l->period_end_ms)
            return l;
    return NULL;
}

/* The lease new reservations go to: the newest of the current period, before its expiry. */
static dp_lease_t *
current(dp_allowance_t *a, int64_t now_ms)
{
    dp_lease_t *l = of_period(a, now_ms);
    return l != NULL && now_ms < l->usable_until_ms ? l : NULL;
}

/* l is the newest lease of its period (older ones are other epochs, kept only for their requests). */
static int
newest_of_period(const dp_allowance_t *a, const dp_lease_t *l)
{
    for (const dp_lease_t *o = a->leases; o != l; o = o->next)
        if (o->period_start_ms == l->period_start_ms)
            return 0;
    return 1;
}

/* Gives the free part of l back (told to the control plane by the lease thread). */
static int
give_back(dp_lease_t *l)
{
    int64_t free_ = l->granted - l->used;
    if (free_ <= 0)
        return 0;
    l->granted -= free_;
    l->release_pending += free_;
    return 1;
}

/* Tracks how much is reserved per second. At high rates an ask of a few requests' worth would be
 * used up within a round trip: every request would cost the control plane and PostgreSQL a lease
 * transaction. Asking for a second's worth keeps leases to a few per second per limit; the control
 * plane still grants only a fair share of what remains, so the bound on overshoot is unchanged. */
static void
note_rate(dp_allowance_t *a, int64_t now_ms, int64_t amount)
{
    a->rate_sum += amount;
    int64_t elapsed = now_ms - a->rate_since_ms;
    if (elapsed < RATE_SLICE_MS)
        return;
    int64_t slice = elapsed < 60000 ? a->rate_sum * 1000 / elapsed : 0;
    a->rate_per_s = (a->rate_per_s + slice) / 2;
    a->rate_sum = 0;
    a->rate_since_ms = now_ms;
}

/* What to ask for: a second of traffic, at least PREFETCH_FACTOR requests' worth (slots: the latter). */
static int64_t
ask_size(const dp_allowance_t *a, int64_t amount)
{
    int64_t n = amount * PREFETCH_FACTOR;
    return a->kind != DP_LEASE_CONCURRENT && a->rate_per_s > n ? a->rate_per_s : n;
}

dp_reserve_result_t
dp_allowance_reserve(dp_allowance_t *a, int64_t now_ms, int64_t amount, dp_lease_t **ret_lease)
{
    dp_reserve_result_t rv;
    int wake = 0;
    pthread_mutex_lock(&a->mu);
    a->last_amount = amount;
    note_rate(a, now_ms, amount);
    dp_lease_t *l = current(a, now_ms);
    if (l != NULL && l->granted - l->used >= amount) {
        l->used += amount;
        l->inflight++;
        *ret_lease = l;
        /* low-water mark: ask before running out, so that a request that fits never waits */
        int64_t low = a->kind != DP_LEASE_CONCURRENT && a->rate_per_s / ASK_AHEAD_DIV > 2 * amount
                          ? a->rate_per_s / ASK_AHEAD_DIV
                          : 2 * amount;
        if (l->granted - l->used < low && !l->exhausted && l->remaining > 0 && a->want == 0 && a->asking == 0) {
            a->want = ask_size(a, amount);
            wake = 1;
        }
        rv = DP_RESERVE_OK;
    } else if (l != NULL && l->exhausted && tg_mono_ns() - l->exhausted_at_ns < EXHAUSTED_FOR_NS) {
        rv = DP_RESERVE_EXHAUSTED;
    } else if (a->asking > 0) {
        /* an ask is on its way: its answer wakes every parked request, which retries then. Asking again
         * now (the retry timer fires while a slow round trip is in flight) would be answered after the
         * first grant already served this request: the same prefetch granted twice, taken from the
         * other dataplanes' share. */
        rv = DP_RESERVE_WAIT;
    } else {
        int64_t have = l != NULL ? l->granted - l->used : 0;
        if (a->want < ask_size(a, amount))
            a->want = ask_size(a, amount);
        if (a->need < amount - have)
            a->need = amount - have;
        wake = 1;
        rv = DP_RESERVE_WAIT;
    }
    pthread_mutex_unlock(&a->mu);
    if (wake && dp_allowance_on_want != NULL)
        dp_allowance_on_want();
    return rv;
}

int
dp_allowance_settle(dp_lease_t *l, int64_t reserved, int64_t actual)
{
    dp_allowance_t *a = l->slot;
    int tell = 0;
    if (actual > reserved)
        atomic_fetch_add(&dp_allowance_overshoots, 1); /* billed as it is: never clamped */
    pthread_mutex_lock(&a->mu);
    l->used -= reserved - actual;
    l->inflight--;
    /* the last of a limit is shared out: what this request did not use goes back at once */
    if ((l->remaining <= 0 || l->exhausted) && newest_of_period(a, l))
        tell = give_back(l);
    pthread_mutex_unlock(&a->mu);
    if (tell && dp_allowance_on_want != NULL)
        dp_allowance_on_want();
    return tell;
}

int
dp_allowance_apply(dp_allowance_t *a, int64_t period_start_ms, int64_t period_end_ms, uint64_t epoch, int64_t granted,
                   int64_t remaining, int64_t limit, int64_t usable_until_ms, int need_met)
{
    int gave = 0;
    pthread_mutex_lock(&a->mu);
    /* the newest lease of that period (a prefetched next window may sit before the current one) */
    dp_lease_t *l = a->leases;
    while (l != NULL && l->period_start_ms != period_start_ms)
        l = l->next;
    /* a reclaimed lease (another epoch) starts again from nothing; its reservations in flight settle
     * against the old object, which is no longer current */
    if (l == NULL || l->epoch != epoch) {
        dp_lease_t *n = calloc(1, sizeof(*n));
        if (n == NULL)
            goto out;
        n->slot = a;
        n->period_start_ms = period_start_ms;
        n->period_end_ms = period_end_ms;
        n->epoch = epoch;
        n->settled = l != NULL ? l->settled : -1;
        n->next = a->leases;
        a->leases = n;
        l = n;
    }
    l->granted += granted;
    l->remaining = remaining;
    l->limit = limit;
    l->usable_until_ms = usable_until_ms - atomic_load(&margin_ms);
    if (need_met == 0) {
        l->exhausted = 1;
        l->exhausted_at_ns = tg_mono_ns();
        gave = give_back(l); /* too little to serve a request here: let another dataplane combine it */
    } else if (need_met > 0) {
        l->exhausted = 0;
    } else if (remaining <= 0 && a->kind != DP_LEASE_REQUESTS && a->kind != DP_LEASE_TOKENS && newest_of_period(a, l)) {
        /* nothing was waiting for this answer, and nothing is left elsewhere: what sits free here goes
         * back now. Settlement gives back too, but only when a request ends here, and an ask ahead of
         * need can land after the last one did: an idle dataplane would keep renewing slots or budget
         * that another dataplane is refused meanwhile. (A rate window's allowance lapses with its window
         * anyway, and giving back a prefetched next window would only undo the prefetch.) */
        gave = give_back(l);
    }
    a->need = 0;
    /* Leases nobody holds any more are done when they are superseded: another epoch of the same
     * period, or a period older than the newest one's predecessor (the current window stays while its
     * successor is prefetched). */
    int64_t newest = INT64_MIN, second = INT64_MIN;
    for (dp_lease_t *o = a->leases; o != NULL; o = o->next)
        if (o->period_start_ms > newest)
            newest = o->period_start_ms;
    for (dp_lease_t *o = a->leases; o != NULL; o = o->next)
        if (o->period_start_ms < newest && o->period_start_ms > second)
            second = o->period_start_ms;
    for (dp_lease_t **pp = &a->leases; *pp != NULL;) {
        dp_lease_t *o = *pp;
        int superseded = !newest_of_period(a, o) || o->period_start_ms < second;
        if (o->inflight == 0 && o != l && superseded) {
            *pp = o->next;
            free(o);
        } else {
            pp = &o->next;
        }
    }
out:
    pthread_mutex_unlock(&a->mu);
    return gave;
}

int
dp_allowance_collect(dp_allowance_t *a, int64_t now_ms, int64_t renew_before_ms, dp_allowance_ask_t *ret)
{
    memset(ret, 0, sizeof(*ret));
    pthread_mutex_lock(&a->mu);
    dp_lease_t *l = of_period(a, now_ms);
    int same_period = l != NULL;
    if (same_period) {
        ret->period_start_ms = l->period_start_ms;
        ret->epoch = l->epoch;
        ret->release = l->release_pending;
        l->release_pending = 0;
    }
    ret->want = a->want;
    ret->need = a->need;
    a->want = 0;
    if (ret->want > 0 || ret->need > 0)
        a->asking = ret->want > ret->need ? ret->want : ret->need;
    /* renew what we hold before it expires, so a live dataplane never loses its share */
    int renew = same_period && l->granted > 0 && l->usable_until_ms - now_ms < renew_before_ms;
    int any = ret->want > 0 || ret->need > 0 || ret->release > 0 || renew;
    pthread_mutex_unlock(&a->mu);
    return any;
}

void
dp_allowance_unsend(dp_allowance_t *a, const dp_allowance_ask_t *ask)
{
    pthread_mutex_lock(&a->mu);
    for (dp_lease_t *l = a->leases; l != NULL; l = l->next)
        if (l->period_start_ms == ask->period_start_ms && l->epoch == ask->epoch) {
            l->release_pending += ask->release;
            break;
        }
    pthread_mutex_unlock(&a->mu);
}

void
dp_allowance_ask_done(dp_allowance_t *a)
{
    pthread_mutex_lock(&a->mu);
    a->asking = 0;
    pthread_mutex_unlock(&a->mu);
}

void
dp_allowance_set_settled(dp_allowance_t *a, int64_t period_start_ms, int64_t settled)
{
    pthread_mutex_lock(&a->mu);
    for (dp_lease_t *l = a->leases; l != NULL; l = l->next)
        if (l->period_start_ms == period_start_ms && settled > l->settled)
            l->settled = settled; /* settlement only grows within a period */
    pthread_mutex_unlock(&a->mu);
}

int64_t
dp_lease_settled(dp_lease_t *l)
{
    pthread_mutex_lock(&l->slot->mu);
    int64_t v = l->settled;
    pthread_mutex_unlock(&l->slot->mu);
    return v;
}

int
dp_allowance_collect_next(dp_allowance_t *a, int64_t now_ms, int64_t lead_ms, dp_allowance_ask_t *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (a->kind != DP_LEASE_REQUESTS && a->kind != DP_LEASE_TOKENS)
        return 0;
    pthread_mutex_lock(&a->mu);
    dp_lease_t *l = of_period(a, now_ms);
    int64_t len = l != NULL ? l->period_end_ms - l->period_start_ms : 0;
    if (lead_ms > len / 2)
        lead_ms = len / 2; /* never more than half a window early */
    int any = 0;
    /* only a window in use (something reserved in it) predicts the next; asked once per window */
    if (l != NULL && l->used > 0 && now_ms >= l->period_end_ms - lead_ms && a->prefetched_for != l->period_end_ms) {
        dp_lease_t *n;
        for (n = a->leases; n != NULL && n->period_start_ms != l->period_end_ms; n = n->next)
            ;
        if (n == NULL) {
            a->prefetched_for = l->period_end_ms;
            ret->period_start_ms = l->period_end_ms;
            /* as much as this window used, which the control plane caps at a fair share */
            ret->want = l->used > a->last_amount ? l->used : a->last_amount;
            any = ret->want > 0;
        }
    }
    pthread_mutex_unlock(&a->mu);
    return any;
}
