/* Target and key choice, model resolution and provider reliability settings (see routing.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "routing/routing.h"

uint64_t
dp_session_hash(const char *id, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)id[i]) * 1099511628211ull;
    return h;
}

static uint64_t
mix(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    /* splitmix64's finaliser: FNV's low bits alone are too regular for a uniform draw */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

/* ---------------------------------------------------------------- settings */

/* A setting as an integer: the admin API stores strings, but a number is accepted too. */
static long
setting(json_t *settings, const char *name, long def, long min, long max)
{
    json_t *v = json_object_get(settings, name);
    long n = def;
    if (json_is_integer(v)) {
        n = (long)json_integer_value(v);
    } else if (json_is_string(v)) {
        char *end;
        const char *s = json_string_value(v);
        long parsed = strtol(s, &end, 10);
        if (end != s && *end == '\0')
            n = parsed;
    }
    return n < min ? min : n > max ? max : n;
}

int dp_breaker_defaults_off;

void
dp_policy_from_settings(json_t *settings, dp_policy_t *p)
{
    p->max_retries = (int)setting(settings, "max_retries", 2, 0, 10);
    p->connect_timeout_ms = setting(settings, "connect_timeout_ms", 0, 0, 600000);
    p->first_byte_timeout_ms = setting(settings, "first_byte_timeout_ms", 60000, 0, 3600000);
    p->idle_timeout_ms = setting(settings, "idle_timeout_ms", 60000, 0, 3600000);
    p->total_timeout_ms = setting(settings, "total_timeout_ms", 0, 0, 3600000);
    p->attempt_timeout_ms = setting(settings, "attempt_timeout_ms", 0, 0, 3600000);
    dp_breaker_config_t off = dp_breaker_defaults;
    off.consecutive_failures = off.error_rate_pct = 0;
    const dp_breaker_config_t *d = dp_breaker_defaults_off ? &off : &dp_breaker_defaults;
    dp_breaker_config_t *b = &p->breaker;
    b->consecutive_failures =
        (uint32_t)setting(settings, "breaker_consecutive_failures", d->consecutive_failures, 0, 1000);
    b->error_rate_pct = (uint32_t)setting(settings, "breaker_error_rate_pct", d->error_rate_pct, 0, 100);
    b->min_requests = (uint32_t)setting(settings, "breaker_min_requests", d->min_requests, 1, 100000);
    b->window_ms = (uint32_t)setting(settings, "breaker_window_ms", d->window_ms, 100, 3600000);
    b->cooldown_ms = (uint32_t)setting(settings, "breaker_cooldown_ms", d->cooldown_ms, 10, 3600000);
    b->probe_successes = (uint32_t)setting(settings, "breaker_probe_successes", d->probe_successes, 1, 100);
}

/* ---------------------------------------------------------------- models */

int
dp_resolve_model(const dp_snapshot_t *s, const char *name, size_t len, tg_arena_t *a, const dp_target_t **ret,
                 size_t *n)
{
    const dp_route_t *r = dp_snapshot_find_route(s, name, len);
    if (r != NULL) {
        *ret = r->targets;
        *n = r->n_targets;
        return 0;
    }
    const char *slash = memchr(name, '/', len);
    if (slash == NULL || slash == name || slash + 1 == name + len)
        return -1;
    const dp_provider_t *p = dp_snapshot_find_provider_by_name(s, name, (size_t)(slash - name));
    if (p == NULL)
        return -1;
    dp_target_t *t = tg_arena_alloc(a, sizeof(*t));
    const char *model = tg_arena_strndup(a, slash + 1, (size_t)(name + len - slash - 1));
    if (t == NULL || model == NULL || dp_target_init(s, t, p, model, 1, a) != 0)
        return -1;
    *ret = t;
    *n = 1;
    return 0;
}

/* ---------------------------------------------------------------- choices */

dp_breaker_t *
dp_target_breaker(const dp_target_t *t, const dp_provider_key_t *k)
{
    if (t->breakers == NULL || k == NULL)
        return NULL;
    return t->breakers[k - t->provider->keys];
}

/* A draw in [0, total) (random), or the winner of a weighted rendezvous (sticky): returns the index in
 * ok[] (candidates with weight w[i]) or -1. */
static int
choose(dp_chooser_t *ch, size_t n, const uint32_t *w, const char *const *names, const char *const *names2)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += w[i];
    if (total == 0)
        return -1;
    if (!ch->sticky) {
        uint64_t r = ch->rand(ch->ctx) % total;
        for (size_t i = 0; i < n; i++) {
            if (r < w[i])
                return (int)i;
            r -= w[i];
        }
        return -1;
    }
    /* weighted rendezvous hashing: score = w / -ln(u), u uniform from hash(session, candidate) */
    int best = -1;
    double best_score = 0;
    for (size_t i = 0; i < n; i++) {
        if (w[i] == 0)
            continue;
        uint64_t h = mix(mix(ch->session, names[i]), names2 != NULL ? names2[i] : "");
        double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* (0, 1) */
        double score = (double)w[i] / -log(u);
        if (best < 0 || score > best_score) {
            best = (int)i;
            best_score = score;
        }
    }
    return best;
}

static uint64_t
rnd(dp_chooser_t *ch)
{
    return ch->rand(ch->ctx);
}

static int
key_passes(const dp_target_t *t, size_t i, dp_chooser_t *ch, int64_t now_ms)
{
    dp_breaker_t *b = t->breakers != NULL ? t->breakers[i] : NULL;
    return dp_breaker_peek(b, &t->provider->policy.breaker, now_ms, rnd(ch));
}

int
dp_target_healthy(const dp_target_t *t, dp_chooser_t *ch, int64_t now_ms)
{
    for (size_t i = 0; i < t->provider->n_keys; i++)
        if (key_passes(t, i, ch, now_ms))
            return 1;
    return 0;
}

#define KEYS_MAX 64 /* keys beyond this are never chosen (the bad-key mask has 64 bits) */

const dp_provider_key_t *
dp_pick_key(const dp_target_t *t, uint64_t bad, dp_chooser_t *ch, int64_t now_ms, int *all_open)
{
    const dp_provider_t *p = t->provider;
    size_t n = p->n_keys < KEYS_MAX ? p->n_keys : KEYS_MAX;
    uint32_t w[KEYS_MAX];
    const char *names[KEYS_MAX];
    size_t idx[KEYS_MAX];
    *all_open = 0;
    uint64_t excluded = bad;
    for (int round = 0; round < (int)n + 1; round++) {
        size_t m = 0, zero = n;
        int open = 0;
        for (size_t i = 0; i < n; i++) {
            if (excluded >> i & 1)
                continue;
            if (!key_passes(t, i, ch, now_ms)) {
                open = 1;
                continue;
            }
            if (p->keys[i].weight == 0 && zero == n)
                zero = i; /* the first weight-0 key: the backup when no weighted key is left */
            idx[m] = i;
            w[m] = p->keys[i].weight;
            names[m] = p->keys[i].id;
            m++;
        }
        int c = choose(ch, m, w, names, NULL);
        size_t k = c >= 0 ? idx[c] : zero;
        if (k == n) {
            *all_open = open;
            return NULL;
        }
        dp_breaker_t *b = t->breakers != NULL ? t->breakers[k] : NULL;
        if (dp_breaker_claim(b, &p->policy.breaker, now_ms))
            return &p->keys[k];
        excluded |= UINT64_C(1) << k; /* another request holds its only probe slot */
    }
    *all_open = 1;
    return NULL;
}

static int
in_plan(const dp_plan_t *p, const dp_target_t *t)
{
    for (size_t i = 0; i < p->n; i++) {
        const dp_target_t *o = p->targets[i];
        if (o == t || (o->provider == t->provider && strcmp(o->upstream_model, t->upstream_model) == 0))
            return 1;
    }
    return 0;
}

void
dp_plan_add(dp_plan_t *p, const dp_target_t *targets, size_t n, dp_chooser_t *ch, int64_t now_ms)
{
    if (n > DP_PLAN_MAX)
        n = DP_PLAN_MAX;
    uint32_t w[DP_PLAN_MAX];
    const char *names[DP_PLAN_MAX], *names2[DP_PLAN_MAX];
    size_t idx[DP_PLAN_MAX], m = 0;
    for (size_t i = 0; i < n; i++) {
        const dp_target_t *t = &targets[i];
        if (t->weight == 0 || in_plan(p, t) || !dp_target_healthy(t, ch, now_ms))
            continue;
        idx[m] = i;
        w[m] = t->weight;
        names[m] = t->provider->id;
        names2[m] = t->upstream_model;
        m++;
    }
    int c = m > 1 ? choose(ch, m, w, names, names2) : m == 1 ? 0 : -1;
    if (c >= 0 && p->n < DP_PLAN_MAX)
        p->targets[p->n++] = &targets[idx[c]];
    for (size_t i = 0; i < n && p->n < DP_PLAN_MAX; i++)
        if (!in_plan(p, &targets[i]))
            p->targets[p->n++] = &targets[i];
}
