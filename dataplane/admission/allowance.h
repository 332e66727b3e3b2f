/*
 * Local allowances: what this dataplane may spend of each budget or rate limit, leased from the control
 * plane (lease.c) and spent by admission (admission.c). Pure bookkeeping, no I/O, thread-safe.
 *
 * One dp_allowance_t per (limit id, kind) lives for the whole process (snapshots point at it, so a new
 * snapshot keeps the state). It holds a list of leases, one per period it has seen, newest first. A
 * lease counts in the limit's unit (nano-USD, requests, tokens, slots):
 *     granted   what the control plane leased to us and we did not give back
 *     used      reserved by requests in flight + settled by finished ones
 *     free      granted - used; a reservation succeeds only when it fits in free
 * so `used <= granted` always holds, whatever the threads do: this is the local half of the invariant
 * (docs/admission.md). A lease is usable only inside its period and before its expiry, on this
 * process's clock with a margin.
 */
#ifndef DP_ALLOWANCE_H
#define DP_ALLOWANCE_H

#include <pthread.h>
#include <stdint.h>

typedef enum dp_lease_kind {
    DP_LEASE_BUDGET = 0, /* values of the proto's LeaseKind */
    DP_LEASE_REQUESTS = 1,
    DP_LEASE_TOKENS = 2,
    DP_LEASE_CONCURRENT = 3,
} dp_lease_kind_t;

typedef struct dp_allowance dp_allowance_t;

typedef struct dp_lease {
    struct dp_lease *next;
    dp_allowance_t *slot;
    int64_t period_start_ms, period_end_ms; /* control-plane clock; end INT64_MAX for 'total' */
    uint64_t epoch;
    int64_t granted, used;
    int64_t inflight;        /* reservations not yet settled */
    int64_t release_pending; /* given back locally, the control plane not told yet */
    int64_t usable_until_ms; /* this process's clock: expiry minus the margin */
    int64_t remaining;       /* the control plane's last word on what remains globally */
    int64_t limit;
    int64_t settled;          /* budgets: the period's settled spend at the last answer (-1: not told) */
    int exhausted;            /* the last ask could not be met */
    uint64_t exhausted_at_ns; /* when, monotonic */
} dp_lease_t;

struct dp_allowance {
    struct dp_allowance *next_all;
    char id[40];
    dp_lease_kind_t kind;
    pthread_mutex_t mu;
    dp_lease_t *leases;     /* newest first */
    int64_t want;           /* asked for by admission, taken by the lease thread */
    int64_t need;           /* the smallest amount that unblocks a waiting request (0: prefetch only) */
    int64_t asking;         /* want + need of the ask in flight (0: none); admission adds none meanwhile */
    int64_t prefetched_for; /* rate windows: the start of the next window already asked for */
    int64_t last_amount;    /* the latest reservation, sizes the low-water mark */
    int64_t rate_per_s;     /* reserved per second, smoothed: sizes asks to the traffic (not for slots) */
    int64_t rate_sum, rate_since_ms;
    int64_t soft; /* budgets: the soft threshold (-1: none), from the snapshot */
    int64_t warned_period;
};

typedef enum dp_reserve_result {
    DP_RESERVE_OK = 0,
    DP_RESERVE_WAIT = 1,      /* not enough here; more was asked for: retry when a grant arrives */
    DP_RESERVE_EXHAUSTED = 2, /* the control plane has no more for this period */
} dp_reserve_result_t;

/* The allowance of (id, kind), created on first use; never freed before exit. NULL on OOM. */
dp_allowance_t *dp_allowance_get(const char *id, dp_lease_kind_t kind);
/* Every allowance (for the lease thread); the list only grows, so walking it needs no lock. */
dp_allowance_t *dp_allowance_first(void);
/* Frees every allowance (at exit, after the workers and the lease thread stopped). */
void dp_allowance_free_all(void);

/* Reserves `amount` at time now_ms: OK with *ret_lease set, WAIT (more was asked for), EXHAUSTED. */
dp_reserve_result_t dp_allowance_reserve(dp_allowance_t *a, int64_t now_ms, int64_t amount, dp_lease_t **ret_lease);
/* Ends a reservation: `actual` (<= reserved, or more when the provider overshot) stays used, the rest
 * is free again. Near the end of a limit (the control plane has nothing left) the free part is given
 * back at once so another dataplane can use it. 1 when the lease thread has something to tell. */
int dp_allowance_settle(dp_lease_t *l, int64_t reserved, int64_t actual);

/* A grant from the control plane (lease.c): the period and epoch it is for, what it added, what remains
 * globally, when it expires (already converted to this process's clock, margin applied). need_met: 1 the
 * grant covered the amount that was needed, 0 it did not (exhausted), -1 no request was waiting for it
 * (a renewal, a release, an ask ahead of need; budgets and slots: when nothing remains globally, what
 * is free here is given back). 1 when it gave allowance back (to be sent at once). */
int dp_allowance_apply(dp_allowance_t *a, int64_t period_start_ms, int64_t period_end_ms, uint64_t epoch,
                       int64_t granted, int64_t remaining, int64_t limit, int64_t usable_until_ms, int need_met);

/* Budgets: what the control plane says the period starting at period_start_ms has settled so far (a
 * grant carries it); read back with dp_lease_settled() for the soft-threshold warning. */
void dp_allowance_set_settled(dp_allowance_t *a, int64_t period_start_ms, int64_t settled);
int64_t dp_lease_settled(dp_lease_t *l);

/* What the lease thread should send for `a` now: the lease it concerns (may be NULL: ask for the
 * current period), want, need and release. 1 when there is anything to send. Takes want/release. */
typedef struct dp_allowance_ask {
    int64_t period_start_ms;
    uint64_t epoch;
    int64_t want, need, release;
} dp_allowance_ask_t;
int dp_allowance_collect(dp_allowance_t *a, int64_t now_ms, int64_t renew_before_ms, dp_allowance_ask_t *ret);
/* Rate windows (requests, tokens): the ask for the *next* window, lead_ms (at most half a window) before
 * the current one ends, when the current window is in use; once per window. ret->period_start_ms is
 * the next window's start; the control plane (migration 0006) leases that window from its own ledger
 * row. The lease is used only once its window has begun, so the first request of a window finds
 * allowance already here instead of waiting a round trip. 1 when there is an ask. */
int dp_allowance_collect_next(dp_allowance_t *a, int64_t now_ms, int64_t lead_ms, dp_allowance_ask_t *ret);

/* The ask collected for `a` never left this process (the send failed): what it gave back is pending
 * again, for the next exchange. Only then: an ask that was sent may have been applied even when its
 * answer was lost, and a release applied twice would free allowance still in use. */
void dp_allowance_unsend(dp_allowance_t *a, const dp_allowance_ask_t *ask);

/* The ask collected for `a` was answered (after dp_allowance_apply) or lost: admission may ask again.
 * Until then a request that does not fit waits for the answer instead of asking a second time, which
 * would make the control plane grant the same prefetch twice. */
void dp_allowance_ask_done(dp_allowance_t *a);

/* Sets by how long before its expiry a lease stops being used (default 1000 ms). */
void dp_allowance_set_margin_ms(int64_t ms);

#endif
