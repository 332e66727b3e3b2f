/* Circuit breakers: the state machine and the process-wide table (see breaker.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "routing/breaker.h"
#include "tollgate/env.h"

const dp_breaker_config_t dp_breaker_defaults = {
    .consecutive_failures = 5,
    .error_rate_pct = 50,
    .min_requests = 20,
    .window_ms = 60000,
    .cooldown_ms = 30000,
    .probe_successes = 3,
};

static _Atomic(dp_breaker_t *) table[DP_BREAKER_MAX];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* inserts, failures and transitions */

int64_t
dp_breaker_now_ms(void)
{
    return (int64_t)(tg_mono_ns() / 1000000);
}

static uint64_t
hash_ids(const char *a, const char *b, const char *c)
{
    uint64_t h = 1469598103934665603ull;
    const char *parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        for (const char *p = parts[i]; *p; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull; /* a separator no id contains */
    }
    return h;
}

static int
same(const dp_breaker_t *b, uint64_t h, const char *pid, const char *kid, const char *model)
{
    return b->hash == h && strcmp(b->provider_id, pid) == 0 && strcmp(b->key_id, kid) == 0 &&
           strcmp(b->model, model) == 0;
}

dp_breaker_t *
dp_breaker_get(const char *provider_id, const char *provider_name, const char *key_id, const char *model)
{
    if (strlen(provider_id) >= sizeof(((dp_breaker_t *)0)->provider_id) ||
        strlen(key_id) >= sizeof(((dp_breaker_t *)0)->key_id) || strlen(model) >= sizeof(((dp_breaker_t *)0)->model))
        return NULL;
    uint64_t h = hash_ids(provider_id, key_id, model);
    size_t i = h & (DP_BREAKER_MAX - 1);
    /* lock-free lookup: slots are only ever filled, never emptied (until reset_all) */
    for (size_t n = 0; n < DP_BREAKER_MAX; n++, i = (i + 1) & (DP_BREAKER_MAX - 1)) {
        dp_breaker_t *b = atomic_load_explicit(&table[i], memory_order_acquire);
        if (b == NULL)
            break;
        if (same(b, h, provider_id, key_id, model))
            return b;
    }
    pthread_mutex_lock(&lock);
    dp_breaker_t *found = NULL;
    i = h & (DP_BREAKER_MAX - 1);
    for (size_t n = 0; n < DP_BREAKER_MAX; n++, i = (i + 1) & (DP_BREAKER_MAX - 1)) {
        dp_breaker_t *b = atomic_load_explicit(&table[i], memory_order_acquire);
        if (b != NULL) {
            if (same(b, h, provider_id, key_id, model)) {
                found = b;
                break;
            }
            continue;
        }
        if ((found = calloc(1, sizeof(*found))) == NULL)
            break;
        found->hash = h;
        strcpy(found->provider_id, provider_id);
        strncpy(found->provider_name, provider_name, sizeof(found->provider_name) - 1);
        strcpy(found->key_id, key_id);
        strcpy(found->model, model);
        atomic_store_explicit(&table[i], found, memory_order_release);
        break;
    }
    pthread_mutex_unlock(&lock);
    return found;
}

/* ---------------------------------------------------------------- the rolling window */

static void
count(dp_breaker_t *b, const dp_breaker_config_t *c, int ok, int64_t now_ms)
{
    if (b->bucket_ms == 0) /* a benign race: every thread writes the same value */
        b->bucket_ms = c->window_ms / DP_BREAKER_BUCKETS > 0 ? c->window_ms / DP_BREAKER_BUCKETS : 1;
    int64_t epoch = now_ms / b->bucket_ms;
    dp_breaker_bucket_t *k = &b->buckets[epoch % DP_BREAKER_BUCKETS];
    int64_t seen = atomic_load_explicit(&k->epoch, memory_order_acquire);
    if (seen != epoch && atomic_compare_exchange_strong(&k->epoch, &seen, epoch)) {
        /* this thread moved the bucket on: it starts empty (a count racing with this may be lost: the
         * window is a health estimate, not an account) */
        atomic_store_explicit(&k->ok, 0, memory_order_relaxed);
        atomic_store_explicit(&k->fail, 0, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(ok ? &k->ok : &k->fail, 1, memory_order_relaxed);
}

static void
window(dp_breaker_t *b, int64_t now_ms, uint64_t *ok, uint64_t *fail)
{
    *ok = *fail = 0;
    if (b->bucket_ms == 0)
        return;
    int64_t epoch = now_ms / b->bucket_ms;
    for (int i = 0; i < DP_BREAKER_BUCKETS; i++) {
        int64_t e = atomic_load_explicit(&b->buckets[i].epoch, memory_order_acquire);
        if (e > epoch - DP_BREAKER_BUCKETS && e <= epoch) {
            *ok += atomic_load_explicit(&b->buckets[i].ok, memory_order_relaxed);
            *fail += atomic_load_explicit(&b->buckets[i].fail, memory_order_relaxed);
        }
    }
}

static void
clear_window(dp_breaker_t *b)
{
    for (int i = 0; i < DP_BREAKER_BUCKETS; i++) {
        atomic_store_explicit(&b->buckets[i].epoch, -1, memory_order_relaxed);
        atomic_store_explicit(&b->buckets[i].ok, 0, memory_order_relaxed);
        atomic_store_explicit(&b->buckets[i].fail, 0, memory_order_relaxed);
    }
}

/* ---------------------------------------------------------------- the state machine */

int
dp_breaker_state(dp_breaker_t *b, int64_t now_ms)
{
    int s = atomic_load_explicit(&b->state, memory_order_acquire);
    if (s == DP_BREAKER_OPEN && now_ms >= atomic_load_explicit(&b->open_until_ms, memory_order_relaxed))
        return DP_BREAKER_HALF_OPEN;
    return s;
}

int
dp_breaker_peek(dp_breaker_t *b, const dp_breaker_config_t *c, int64_t now_ms, uint64_t rnd)
{
    if (b == NULL)
        return 1;
    int s = atomic_load_explicit(&b->state, memory_order_acquire);
    if (s == DP_BREAKER_CLOSED)
        return 1;
    if (s == DP_BREAKER_OPEN)
        return now_ms >= atomic_load_explicit(&b->open_until_ms, memory_order_relaxed); /* time for a probe */
    unsigned ramp = atomic_load_explicit(&b->ramp, memory_order_relaxed);
    if (ramp == 0) {
        /* one probe at a time; a probe that never reported (its client left) is forgotten after a cool-down */
        int64_t since = atomic_load_explicit(&b->probe_since_ms, memory_order_relaxed);
        return since == 0 || now_ms - since >= (int64_t)c->cooldown_ms;
    }
    uint32_t steps = c->probe_successes ? c->probe_successes : 1;
    return rnd % steps < ramp; /* ramp/steps of the traffic */
}

int
dp_breaker_claim(dp_breaker_t *b, const dp_breaker_config_t *c, int64_t now_ms)
{
    if (b == NULL)
        return 1;
    int s = atomic_load_explicit(&b->state, memory_order_acquire);
    if (s == DP_BREAKER_CLOSED)
        return 1;
    pthread_mutex_lock(&lock);
    int rv = 1;
    s = atomic_load_explicit(&b->state, memory_order_relaxed);
    if (s == DP_BREAKER_OPEN) {
        if (now_ms < atomic_load_explicit(&b->open_until_ms, memory_order_relaxed)) {
            rv = 0;
        } else { /* the cool-down is over: this request is the first probe */
            atomic_store_explicit(&b->ramp, 0, memory_order_relaxed);
            atomic_store_explicit(&b->probe_since_ms, now_ms ? now_ms : 1, memory_order_relaxed);
            atomic_store_explicit(&b->state, DP_BREAKER_HALF_OPEN, memory_order_release);
        }
    } else if (s == DP_BREAKER_HALF_OPEN && atomic_load_explicit(&b->ramp, memory_order_relaxed) == 0) {
        int64_t since = atomic_load_explicit(&b->probe_since_ms, memory_order_relaxed);
        if (since != 0 && now_ms - since < (int64_t)c->cooldown_ms)
            rv = 0; /* another request is the probe */
        else
            atomic_store_explicit(&b->probe_since_ms, now_ms ? now_ms : 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&lock);
    return rv;
}

static void
open_locked(dp_breaker_t *b, const dp_breaker_config_t *c, int64_t now_ms)
{
    atomic_store_explicit(&b->open_until_ms, now_ms + c->cooldown_ms, memory_order_relaxed);
    atomic_store_explicit(&b->ramp, 0, memory_order_relaxed);
    atomic_store_explicit(&b->probe_since_ms, 0, memory_order_relaxed);
    atomic_store_explicit(&b->state, DP_BREAKER_OPEN, memory_order_release);
}

void
dp_breaker_record(dp_breaker_t *b, const dp_breaker_config_t *c, int ok, int64_t now_ms)
{
    if (b == NULL)
        return;
    count(b, c, ok, now_ms);
    int s = atomic_load_explicit(&b->state, memory_order_acquire);
    if (ok) {
        if (atomic_load_explicit(&b->consecutive, memory_order_relaxed) != 0)
            atomic_store_explicit(&b->consecutive, 0, memory_order_relaxed);
        if (s != DP_BREAKER_HALF_OPEN)
            return; /* closed stays closed; a late success while open does not shorten the cool-down */
        pthread_mutex_lock(&lock);
        if (atomic_load_explicit(&b->state, memory_order_relaxed) == DP_BREAKER_HALF_OPEN) {
            unsigned ramp = atomic_fetch_add_explicit(&b->ramp, 1, memory_order_relaxed) + 1;
            atomic_store_explicit(&b->probe_since_ms, 0, memory_order_relaxed);
            if (ramp >= (c->probe_successes ? c->probe_successes : 1)) {
                clear_window(b); /* a fresh start: the failures that opened it are history */
                atomic_store_explicit(&b->ramp, 0, memory_order_relaxed);
                atomic_store_explicit(&b->state, DP_BREAKER_CLOSED, memory_order_release);
            }
        }
        pthread_mutex_unlock(&lock);
        return;
    }
    uint64_t n = atomic_fetch_add_explicit(&b->consecutive, 1, memory_order_relaxed) + 1;
    pthread_mutex_lock(&lock);
    s = atomic_load_explicit(&b->state, memory_order_relaxed);
    if (s == DP_BREAKER_HALF_OPEN) {
        open_locked(b, c, now_ms); /* the probe failed: another cool-down */
    } else if (s == DP_BREAKER_CLOSED) {
        int trip = c->consecutive_failures > 0 && n >= c->consecutive_failures;
        if (!trip && c->error_rate_pct > 0) {
            uint64_t okn, failn;
            window(b, now_ms, &okn, &failn);
            trip = okn + failn >= c->min_requests && okn + failn > 0 &&
                   failn * 100 >= (uint64_t)c->error_rate_pct * (okn + failn);
        }
        if (trip)
            open_locked(b, c, now_ms);
    }
    pthread_mutex_unlock(&lock);
}

void
dp_breaker_foreach(void (*cb)(void *ctx, const char *provider_id, const char *provider_name, const char *key_id,
                              const char *model, int state, uint64_t consecutive_failures),
                   void *ctx)
{
    int64_t now = dp_breaker_now_ms();
    for (size_t i = 0; i < DP_BREAKER_MAX; i++) {
        dp_breaker_t *b = atomic_load_explicit(&table[i], memory_order_acquire);
        if (b != NULL)
            cb(ctx, b->provider_id, b->provider_name, b->key_id, b->model, dp_breaker_state(b, now),
               atomic_load_explicit(&b->consecutive, memory_order_relaxed));
    }
}

void
dp_breaker_reset_all(void)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < DP_BREAKER_MAX; i++)
        free(atomic_exchange_explicit(&table[i], NULL, memory_order_acq_rel));
    pthread_mutex_unlock(&lock);
}
