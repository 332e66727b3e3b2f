/*
 * Circuit breakers per (provider account, provider key, upstream model), shared by every worker thread
 * of the process and kept across config snapshots (they are found by the ids, not by snapshot pointers).
 *
 * States: closed (everything passes), open (nothing passes until open_until), half-open (one probe,
 * then a growing share of requests: 1/n, 2/n, ... after each successful probe, closed after n successes;
 * any failure opens it again). It opens on `consecutive_failures` failures in a row, or when the error
 * rate over a rolling window reaches `error_rate_pct` with at least `min_requests` requests in it.
 *
 * Concurrency: the hot path (find, peek, claim, a success while closed) takes no lock: atomics only.
 * Failures and state transitions take one process-wide mutex. Entries are never freed while the process
 * runs (their number is bounded by the configuration: DP_BREAKER_MAX); when the table is full, new
 * combinations get no breaker (NULL, always allowed).
 *
 * Time is passed in (monotonic milliseconds) so that the state machine can be tested with a fake clock.
 */
#ifndef DP_BREAKER_H
#define DP_BREAKER_H

#include <stdatomic.h>
#include <stdint.h>

#define DP_BREAKER_MAX     4096 /* distinct (account, key, model) combinations per process */
#define DP_BREAKER_BUCKETS 10   /* the rolling window, in slices */

enum { DP_BREAKER_CLOSED = 0, DP_BREAKER_OPEN = 1, DP_BREAKER_HALF_OPEN = 2 };

typedef struct dp_breaker_config {
    uint32_t consecutive_failures; /* 0: rule off */
    uint32_t error_rate_pct;       /* 1..100; 0: rule off */
    uint32_t min_requests;         /* in the window, before the error rate counts */
    uint32_t window_ms;
    uint32_t cooldown_ms;     /* open this long before the first probe */
    uint32_t probe_successes; /* half-open successes before closing (the ramp's steps) */
} dp_breaker_config_t;

/* The defaults (docs/reliability.md). */
extern const dp_breaker_config_t dp_breaker_defaults;

typedef struct dp_breaker_bucket {
    _Atomic int64_t epoch; /* window slice number this bucket counts for */
    atomic_uint ok, fail;
} dp_breaker_bucket_t;

typedef struct dp_breaker {
    uint64_t hash;
    char provider_id[64];
    char provider_name[64];
    char key_id[64];
    char model[128];
    atomic_int state;
    _Atomic uint64_t consecutive;   /* failures in a row */
    _Atomic int64_t open_until_ms;  /* open: the first probe may go at this time */
    _Atomic int64_t probe_since_ms; /* half-open, ramp 0: the probe in flight since then; 0 none */
    atomic_uint ramp;               /* half-open: successful probes so far */
    uint32_t bucket_ms;             /* slice length of the window, set on first use */
    dp_breaker_bucket_t buckets[DP_BREAKER_BUCKETS];
} dp_breaker_t;

/* The breaker of a combination, created on first use; NULL when the table is full or an id is too long. */
dp_breaker_t *dp_breaker_get(const char *provider_id, const char *provider_name, const char *key_id, const char *model);

/* Would a request pass now? No side effect. rnd: a random number (the ramp's share in half-open). */
int dp_breaker_peek(dp_breaker_t *b, const dp_breaker_config_t *c, int64_t now_ms, uint64_t rnd);
/* Takes the slot a request needs: the single half-open probe. 1 taken (or none needed), 0 lost. */
int dp_breaker_claim(dp_breaker_t *b, const dp_breaker_config_t *c, int64_t now_ms);
/* The outcome of a request that went through this breaker. */
void dp_breaker_record(dp_breaker_t *b, const dp_breaker_config_t *c, int ok, int64_t now_ms);
/* The state as a reader sees it now: an open breaker whose cool-down has passed reads as half-open. */
int dp_breaker_state(dp_breaker_t *b, int64_t now_ms);

/* Every breaker (for metrics); state as in dp_breaker_state. */
void dp_breaker_foreach(void (*cb)(void *ctx, const char *provider_id, const char *provider_name, const char *key_id,
                                   const char *model, int state /*0 closed,1 open,2 half*/,
                                   uint64_t consecutive_failures),
                        void *ctx);

/* Drops every breaker (unit tests; the dataplane keeps them, reachable, until it exits). Not thread-safe
 * against users: call only when no request runs. */
void dp_breaker_reset_all(void);

/* Monotonic milliseconds, the clock the dataplane passes in. */
int64_t dp_breaker_now_ms(void);

#endif
