/*
 * Snapshot build, lookup and publication (see snapshot.h).
 *
 * Keys are found by their SHA-256 in an open-addressing table indexed by the hash's first 8 bytes
 * (already uniformly distributed); routes by an FNV-1a hash of the public model name. Tables are sized
 * to a power of two at least twice the entry count, so probes stay short.
 *
 * Publication: one mutex-protected pointer plus an atomic version that workers poll without locking.
 *
 * Deltas: a key delta never touches a published snapshot. It derives a new one that shares the base
 * (everything but the key set) and the key batches of the snapshot it applies to. Usually it copies the
 * key pointer array and the two key tables (by hash, by id: ~3 MB of memcpy at 100,000 keys) and then
 * removes and adds only the keys the delta names; removed slots are marked, not emptied, so probe
 * chains stay whole. When marked slots or referenced deltas pile up, it rebuilds array and tables from
 * scratch instead (O(keys)). The new snapshot is published like a full one, so a request sees either
 * the old key set or the new one, never a mix.
 */
#include <pthread.h>
#include <stdio.h>
#include <sys/types.h>
#include <stdlib.h>
#include <string.h>
#include "admission/allowance.h"
#include "config/snapshot.h"
#include "routing/routing.h"
#include "tollgate/json_scan.h"
#include "tollgate.pb-c.h"

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static dp_snapshot_t *current;
static atomic_uint_fast64_t current_version;

static uint64_t
fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t
key_slot_hash(const uint8_t *hash)
{
    uint64_t h;
    memcpy(&h, hash, sizeof(h));
    return h;
}

static size_t
table_size(size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    return cap;
}

static void
free_headers(struct curl_slist *list)
{
    /* secrets do not linger in freed memory */
    for (struct curl_slist *n = list; n != NULL; n = n->next)
        explicit_bzero(n->data, strlen(n->data));
    curl_slist_free_all(list);
}

/* Content-Type, an empty Expect (no 100-continue round trip), Accept (by stream framing), and the auth lines
 * of the provider's kind. */
static int
build_headers(dp_provider_key_t *k, const dp_provider_t *p, const char *auth1, const char *auth2)
{
    const char *stream_accept = p->ops->framing == TX_FRAMING_NDJSON ? "Accept: application/x-ndjson"
                                : p->ops->framing == TX_FRAMING_EVENTSTREAM
                                    ? "Accept: application/vnd.amazon.eventstream"
                                    : "Accept: text/event-stream";
    for (int h = 0; h < 2; h++) {
        struct curl_slist *list = NULL, *n;
        const char *lines[] = {"Content-Type: application/json",
                               "Expect:", h == DP_HEADERS_STREAM ? stream_accept : "Accept: application/json", auth1,
                               auth2};
        for (size_t i = 0; i < 5 && lines[i] != NULL; i++) {
            if ((n = curl_slist_append(list, lines[i])) == NULL) {
                free_headers(list);
                return -1;
            }
            list = n;
        }
        k->headers[h] = list;
    }
    return 0;
}

/* The static auth header lines of a key (malloc'd into ret1/ret2, either may stay NULL). */
static int
auth_lines(const dp_provider_t *p, dp_auth_t auth, const char *secret, char **ret1, char **ret2)
{
    *ret1 = *ret2 = NULL;
    if (secret == NULL || auth != DP_AUTH_STATIC)
        return 0;
    int n;
    if (strcmp(p->kind, "azure") == 0)
        n = asprintf(ret1, "api-key: %s", secret);
    else if (strcmp(p->kind, "anthropic") == 0) {
        n = asprintf(ret1, "x-api-key: %s", secret);
        if (n >= 0 && (*ret2 = strdup("anthropic-version: 2023-06-01")) == NULL)
            n = -1;
    } else if (strcmp(p->kind, "gemini") == 0)
        n = asprintf(ret1, "x-goog-api-key: %s", secret);
    else
        n = asprintf(ret1, "Authorization: Bearer %s", secret);
    return n < 0 ? -1 : 0;
}

static void
free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* Keys that arrived together, with the strings they point into: the full snapshot's keys (owned by the
 * base) or one delta's upserts (reference counted by the snapshots that still hold any of them). */
typedef struct dp_key_batch {
    atomic_long refs;
    Tollgate__KeyDelta *pb; /* NULL for the base's batch: base->pb owns those strings */
    dp_vkey_t *keys;
    size_t n_keys;
    uint32_t *limits; /* the keys' limit lists, one allocation */
    size_t live;      /* scratch of the deriving thread: how many of its keys the new snapshot keeps */
} dp_key_batch_t;

struct dp_snapshot_base {
    atomic_long refs;
    Tollgate__Snapshot *pb;
    dp_provider_t *providers;
    size_t n_providers;
    dp_route_t *routes;
    size_t n_routes;
    uint32_t *route_slots;
    size_t route_mask;
    dp_price_t *prices;
    size_t n_prices;
    dp_limit_t *limits;
    size_t n_limits;
    uint32_t *limit_owner;    /* per limit: its budget index, or n_budgets + its rate limit index */
    const char **log_tenants; /* ids of the tenants that allow content logging (few: a list) */
    size_t n_log_tenants;
    dp_key_batch_t keys; /* the full snapshot's keys */
};

static void
batch_free(dp_key_batch_t *b)
{
    free(b->keys);
    free(b->limits);
    if (b->pb != NULL)
        tollgate__key_delta__free_unpacked(b->pb, NULL);
}

static void
batch_unref(dp_key_batch_t *b)
{
    if (b != NULL && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
        batch_free(b);
        free(b);
    }
}

static void
base_free(struct dp_snapshot_base *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_providers; i++) {
        dp_provider_t *p = &s->providers[i];
        for (size_t k = 0; k < p->n_keys; k++) {
            for (int h = 0; h < 2; h++)
                free_headers(p->keys[k].headers[h]);
            free_secret(p->keys[k].secret);
        }
        free(p->keys);
        free(p->base_url);
        json_decref(p->settings);
    }
    for (size_t i = 0; i < s->n_routes; i++) {
        for (size_t t = 0; t < s->routes[i].n_targets; t++) {
            free(s->routes[i].targets[t].upstream_model_json);
            free(s->routes[i].targets[t].chat_url);
            free(s->routes[i].targets[t].breakers);
        }
        free(s->routes[i].targets);
    }
    free(s->providers);
    free(s->routes);
    free(s->route_slots);
    free(s->prices);
    free(s->limits);
    free(s->limit_owner);
    free(s->log_tenants);
    batch_free(&s->keys);
    if (s->pb != NULL)
        tollgate__snapshot__free_unpacked(s->pb, NULL);
    free(s);
}

static void
base_unref(struct dp_snapshot_base *b)
{
    if (b != NULL && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        base_free(b);
}

static void
snapshot_free(dp_snapshot_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_batches; i++)
        batch_unref(s->batches[i]);
    free(s->batches);
    free(s->keys);
    free(s->key_slots);
    free(s->id_slots);
    base_unref(s->base);
    free(s);
}

static const dp_provider_t *
find_provider(const dp_snapshot_t *s, const char *id)
{
    for (size_t i = 0; i < s->n_providers; i++)
        if (strcmp(s->providers[i].id, id) == 0)
            return &s->providers[i];
    return NULL;
}

static const dp_price_t *
find_price(const dp_price_t *prices, const Tollgate__Snapshot *pb, const char *provider_id, const char *model)
{
    const dp_price_t *any = NULL;
    for (size_t i = 0; i < pb->n_prices; i++) {
        const Tollgate__Price *p = pb->prices[i];
        if (strcmp(p->model, model) != 0)
            continue;
        if (strcmp(p->provider_id, provider_id) == 0)
            return &prices[i];
        if (p->provider_id[0] == '\0')
            any = &prices[i];
    }
    return any;
}

const dp_price_t *
dp_snapshot_find_price(const dp_snapshot_t *s, const char *provider_id, const char *model)
{
    return s->pb != NULL ? find_price(s->prices, s->pb, provider_id, model) : NULL;
}

const dp_provider_t *
dp_snapshot_find_provider_by_name(const dp_snapshot_t *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->n_providers; i++)
        if (strlen(s->providers[i].name) == len && memcmp(s->providers[i].name, name, len) == 0)
            return &s->providers[i];
    return NULL;
}

static void *
target_alloc(tg_arena_t *a, size_t size)
{
    return a != NULL ? tg_arena_alloc(a, size) : calloc(1, size);
}

int
dp_target_init(const dp_snapshot_t *s, dp_target_t *dt, const dp_provider_t *prov, const char *upstream_model,
               uint32_t weight, tg_arena_t *a)
{
    dt->provider = prov;
    dt->upstream_model = upstream_model;
    dt->tx = (tx_target_t){
        .kind = prov->kind, .base_url = prov->base_url, .upstream_model = upstream_model, .settings = prov->settings};
    char url[4096];
    int n = tx_openai_url(&dt->tx, "chat/completions", url, sizeof(url));
    if (n < 0 || (dt->chat_url = target_alloc(a, (size_t)n + 1)) == NULL)
        return -1;
    memcpy(dt->chat_url, url, (size_t)n + 1);
    size_t mlen = strlen(upstream_model);
    if ((dt->upstream_model_json = target_alloc(a, 6 * mlen + 3)) == NULL)
        return -1;
    dt->upstream_model_json_len = tg_json_quote(dt->upstream_model_json, upstream_model, mlen);
    dt->price = dp_snapshot_find_price(s, prov->id, upstream_model);
    dt->weight = weight;
    if ((dt->breakers = target_alloc(a, prov->n_keys * sizeof(*dt->breakers))) == NULL)
        return -1;
    for (size_t k = 0; k < prov->n_keys; k++)
        dt->breakers[k] = dp_breaker_get(prov->id, prov->name, prov->keys[k].id, upstream_model);
    return 0;
}

static int
build_provider(dp_provider_t *p, const Tollgate__ProviderAccount *pa, const tg_wire_key_t *wire_key, char *err,
               size_t errlen)
{
    p->id = pa->id;
    p->name = pa->name;
    p->kind = pa->kind;
    if ((p->ops = tx_provider_find(pa->kind)) == NULL) {
        snprintf(err, errlen, "provider %s: unknown kind '%s'", pa->name, pa->kind);
        return -1;
    }
    p->passthrough = tx_provider_is_openai_passthrough(pa->kind);
    size_t blen = strlen(pa->base_url);
    while (blen > 0 && pa->base_url[blen - 1] == '/')
        blen--;
    if ((p->base_url = strndup(pa->base_url, blen)) == NULL)
        return -1;
    p->settings = pa->settings_json != NULL && pa->settings_json[0] != '\0' ? json_loads(pa->settings_json, 0, NULL)
                                                                            : json_object();
    if (!json_is_object(p->settings)) {
        snprintf(err, errlen, "provider %s: settings are not a JSON object", pa->name);
        return -1;
    }
    dp_policy_from_settings(p->settings, &p->policy);
    p->keys = calloc(pa->n_keys ? pa->n_keys : 1, sizeof(*p->keys));
    if (p->keys == NULL)
        return -1;
    for (size_t k = 0; k < pa->n_keys; k++) {
        const Tollgate__ProviderKey *pk = pa->keys[k];
        size_t sealed_len = pk->sealed_secret.len;
        if (sealed_len < TG_AEAD_OVERHEAD) {
            snprintf(err, errlen, "provider %s key %s: sealed secret too short", pa->name, pk->id);
            return -1;
        }
        size_t plen = sealed_len - TG_AEAD_OVERHEAD;
        char *secret = malloc(plen + 1);
        if (secret == NULL)
            return -1;
        if (tg_aead_open(wire_key->seal_key, pk->id, strlen(pk->id), pk->sealed_secret.data, sealed_len,
                         (uint8_t *)secret) != (int)plen) {
            free(secret);
            snprintf(err, errlen, "provider %s key %s: secret does not open with this cluster secret", pa->name,
                     pk->id);
            return -1;
        }
        secret[plen] = '\0';
        dp_provider_key_t *dk = &p->keys[p->n_keys++];
        dk->id = pk->id;
        dk->weight = pk->weight; /* 0: used only when no weighted key is usable */
        p->total_weight += dk->weight;
        /* Bedrock takes either SigV4 credentials (a JSON object) or a Bedrock API key (Bearer) */
        if (strcmp(p->kind, "bedrock") == 0 && secret[0] == '{')
            dk->auth = DP_AUTH_SIGV4;
        else if (strcmp(p->kind, "vertex") == 0)
            dk->auth = DP_AUTH_GCP_TOKEN;
        char *a1, *a2;
        int rv = auth_lines(p, dk->auth, secret, &a1, &a2);
        if (rv == 0)
            rv = build_headers(dk, p, a1, a2);
        free_secret(a1);
        free_secret(a2);
        if (dk->auth != DP_AUTH_STATIC)
            dk->secret = secret;
        else
            free_secret(secret);
        if (rv != 0)
            return -1;
    }
    if (p->n_keys == 0) {
        /* a provider that takes no key still needs its headers */
        p->keys[0].id = "";
        p->keys[0].weight = p->total_weight = 1;
        p->n_keys = 1;
        if (build_headers(&p->keys[0], p, NULL, NULL) != 0)
            return -1;
    }
    return 0;
}

static int
add_limit(struct dp_snapshot_base *s, const char *id, int kind, const char *model, int64_t hard, int64_t soft,
          uint32_t window)
{
    dp_limit_t *l = &s->limits[s->n_limits];
    l->id = id;
    l->kind = kind;
    l->model = model != NULL && model[0] != '\0' ? model : NULL;
    l->model_len = l->model != NULL ? strlen(model) : 0;
    l->hard = hard;
    l->soft = soft;
    l->window_s = window;
    if ((l->allowance = dp_allowance_get(id, (dp_lease_kind_t)kind)) == NULL)
        return -1;
    if (kind == DP_LEASE_BUDGET)
        l->allowance->soft = soft;
    s->n_limits++;
    return 0;
}

static int
applies(Tollgate__Scope scope, const char *tenant_id, const char *team_id, const char *key_id, const dp_vkey_t *k)
{
    if (strcmp(tenant_id, k->tenant_id) != 0)
        return 0;
    switch (scope) {
    case TOLLGATE__SCOPE__SCOPE_TEAM:
        return k->team_id != NULL && k->team_id[0] != '\0' && strcmp(team_id, k->team_id) == 0;
    case TOLLGATE__SCOPE__SCOPE_KEY:
        return strcmp(key_id, k->id) == 0;
    default:
        return 1;
    }
}

/* Budgets and rate-limit counters. Each rate limit gives up to three counters. */
static int
build_limits(struct dp_snapshot_base *s, const Tollgate__Snapshot *pb)
{
    size_t cap = pb->n_budgets + 3 * pb->n_rate_limits;
    s->limit_owner = calloc(cap + 1, sizeof(*s->limit_owner));
    s->limits = calloc(cap + 1, sizeof(*s->limits));
    if (s->limit_owner == NULL || s->limits == NULL)
        return -1;
    for (size_t i = 0; i < pb->n_budgets; i++) {
        const Tollgate__Budget *b = pb->budgets[i];
        s->limit_owner[s->n_limits] = (uint32_t)i;
        if (add_limit(s, b->id, DP_LEASE_BUDGET, b->model, b->hard_nanousd, b->soft_nanousd, 0) != 0)
            return -1;
    }
    for (size_t i = 0; i < pb->n_rate_limits; i++) {
        const Tollgate__RateLimit *r = pb->rate_limits[i];
        int64_t v[3] = {r->requests_per_window, r->tokens_per_window, r->concurrent};
        int kinds[3] = {DP_LEASE_REQUESTS, DP_LEASE_TOKENS, DP_LEASE_CONCURRENT};
        for (int j = 0; j < 3; j++) {
            if (v[j] < 0)
                continue;
            s->limit_owner[s->n_limits] = (uint32_t)(pb->n_budgets + i);
            if (add_limit(s, r->id, kinds[j], NULL, v[j], -1, r->window_s ? r->window_s : 60) != 0)
                return -1;
        }
    }
    return 0;
}

/* 1 when limit i of the base applies to the key. */
static int
limit_applies(const struct dp_snapshot_base *s, size_t i, const dp_vkey_t *key)
{
    const Tollgate__Snapshot *pb = s->pb;
    uint32_t o = s->limit_owner[i];
    if (o < pb->n_budgets)
        return applies(pb->budgets[o]->scope, pb->budgets[o]->tenant_id, pb->budgets[o]->team_id,
                       pb->budgets[o]->key_id, key);
    const Tollgate__RateLimit *r = pb->rate_limits[o - pb->n_budgets];
    return applies(r->scope, r->tenant_id, r->team_id, r->key_id, key);
}

/* For every key of a batch, the list of the base's limits that apply to it, so admission walks a short
 * array instead of searching. Two passes over keys x limits: count, then fill one shared array. */
static int
batch_limits(const struct dp_snapshot_base *s, dp_key_batch_t *b)
{
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && (b->limits = calloc(total + 1, sizeof(uint32_t))) == NULL)
            return -1;
        size_t at = 0;
        for (size_t k = 0; k < b->n_keys; k++) {
            dp_vkey_t *key = &b->keys[k];
            if (pass == 1) {
                key->limits = &b->limits[at];
                key->n_limits = 0;
            }
            for (size_t i = 0; i < s->n_limits; i++) {
                if (!limit_applies(s, i, key))
                    continue;
                if (pass == 0)
                    total++;
                else
                    key->limits[key->n_limits++] = (uint32_t)i;
                at += pass;
            }
        }
    }
    return 0;
}

/* Fills a batch's keys from protobuf keys (whose strings must outlive the batch). */
static int
batch_fill(const struct dp_snapshot_base *s, dp_key_batch_t *b, Tollgate__VirtualKey **keys, size_t n)
{
    if ((b->keys = calloc(n + 1, sizeof(*b->keys))) == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const Tollgate__VirtualKey *k = keys[i];
        if (k->key_hash.len != TG_SHA256_LEN)
            continue;
        dp_vkey_t *dk = &b->keys[b->n_keys++];
        memcpy(dk->hash, k->key_hash.data, TG_SHA256_LEN);
        dk->id = k->id;
        dk->tenant_id = k->tenant_id;
        dk->expires_at_unix_ms = k->expires_at_unix_ms;
        dk->team_id = k->team_id;
        for (size_t t = 0; t < s->n_log_tenants && !dk->log_content; t++)
            dk->log_content = strcmp(s->log_tenants[t], k->tenant_id) == 0;
        dk->allowed_models = k->allowed_models;
        dk->n_allowed_models = k->n_allowed_models;
        dk->allowed_providers = k->allowed_providers;
        dk->n_allowed_providers = k->n_allowed_providers;
        dk->batch = b->pb != NULL ? b : NULL;
    }
    return batch_limits(s, b);
}

/* A snapshot around a base (one reference taken), its pointer fields copied. */
static dp_snapshot_t *
snapshot_new(struct dp_snapshot_base *b, uint64_t version, int64_t created_unix_ms)
{
    dp_snapshot_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    atomic_init(&s->refs, 1);
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    s->base = b;
    s->version = version;
    s->created_unix_ms = created_unix_ms;
    s->pb = b->pb;
    s->routes = b->routes;
    s->n_routes = b->n_routes;
    s->route_slots = b->route_slots;
    s->route_mask = b->route_mask;
    s->providers = b->providers;
    s->n_providers = b->n_providers;
    s->prices = b->prices;
    s->n_prices = b->n_prices;
    s->limits = b->limits;
    s->n_limits = b->n_limits;
    return s;
}

static uint64_t
id_hash(const char *id)
{
    return fnv1a(id, strlen(id));
}

/* Puts index i of s->keys into both tables (first empty slot of each probe). */
static void
slots_add(dp_snapshot_t *s, size_t i)
{
    size_t h;
    for (h = key_slot_hash(s->keys[i]->hash) & s->key_mask; s->key_slots[h] != 0; h = (h + 1) & s->key_mask)
        ;
    s->key_slots[h] = (uint32_t)(i + 1);
    for (h = id_hash(s->keys[i]->id) & s->key_mask; s->id_slots[h] != 0; h = (h + 1) & s->key_mask)
        ;
    s->id_slots[h] = (uint32_t)(i + 1);
}

/* Replaces the entry `from` (index + 1) of key k by `to` in both tables. */
static void
slots_set(dp_snapshot_t *s, const dp_vkey_t *k, uint32_t from, uint32_t to)
{
    size_t h;
    for (h = key_slot_hash(k->hash) & s->key_mask; s->key_slots[h] != from; h = (h + 1) & s->key_mask)
        ;
    s->key_slots[h] = to;
    for (h = id_hash(k->id) & s->key_mask; s->id_slots[h] != from; h = (h + 1) & s->key_mask)
        ;
    s->id_slots[h] = to;
}

/* The index of the key with this id, or -1. */
static ssize_t
find_id(const dp_snapshot_t *s, const char *id)
{
    for (size_t h = id_hash(id) & s->key_mask;; h = (h + 1) & s->key_mask) {
        uint32_t slot = s->id_slots[h];
        if (slot == 0)
            return -1;
        if (slot != DP_SLOT_GONE && strcmp(s->keys[slot - 1]->id, id) == 0)
            return (ssize_t)slot - 1;
    }
}

/* Removes key i: its slots become DP_SLOT_GONE (probe chains stay intact) and the last key moves into
 * its place, so the array stays dense. */
static void
remove_key(dp_snapshot_t *s, size_t i)
{
    size_t last = s->n_keys - 1;
    slots_set(s, s->keys[i], (uint32_t)(i + 1), DP_SLOT_GONE);
    s->key_gone++;
    if (i != last) {
        slots_set(s, s->keys[last], (uint32_t)(last + 1), (uint32_t)(i + 1));
        s->keys[i] = s->keys[last];
    }
    s->n_keys--;
}

/* Both key tables of s->keys, from scratch, for `room` keys at a load of at most 1/4, so that deltas
 * can remove and add a quarter of the slots' worth before the next rebuild (the fast path stops at 1/2). */
static int
index_keys(dp_snapshot_t *s, size_t room)
{
    s->key_mask = table_size(2 * (room > s->n_keys ? room : s->n_keys)) - 1;
    s->key_gone = 0;
    if ((s->key_slots = calloc(s->key_mask + 1, sizeof(uint32_t))) == NULL ||
        (s->id_slots = calloc(s->key_mask + 1, sizeof(uint32_t))) == NULL)
        return -1;
    for (size_t i = 0; i < s->n_keys; i++)
        slots_add(s, i);
    return 0;
}

int
dp_snapshot_build(const uint8_t *buf, size_t len, const tg_wire_key_t *wire_key, dp_snapshot_t **ret, char *err,
                  size_t errlen)
{
    snprintf(err, errlen, "out of memory");
    dp_snapshot_t *s = NULL;
    struct dp_snapshot_base *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -1;
    atomic_init(&b->refs, 1); /* the builder's, dropped at the end */
    Tollgate__Snapshot *pb = tollgate__snapshot__unpack(NULL, len, buf);
    if (pb == NULL) {
        snprintf(err, errlen, "snapshot does not decode");
        goto fail;
    }
    b->pb = pb;

    /* prices, providers */
    b->prices = calloc(pb->n_prices + 1, sizeof(*b->prices));
    b->providers = calloc(pb->n_providers + 1, sizeof(*b->providers));
    if (b->prices == NULL || b->providers == NULL)
        goto fail;
    b->n_prices = pb->n_prices;
    for (size_t i = 0; i < pb->n_prices; i++) {
        b->prices[i].input = pb->prices[i]->input_micro_usd_per_mtok;
        b->prices[i].output = pb->prices[i]->output_micro_usd_per_mtok;
        b->prices[i].cached_input = pb->prices[i]->cached_input_micro_usd_per_mtok;
    }
    for (size_t i = 0; i < pb->n_providers; i++) {
        b->n_providers++;
        if (build_provider(&b->providers[i], pb->providers[i], wire_key, err, errlen) != 0)
            goto fail;
    }

    /* routes (targets look prices and providers up through a snapshot) */
    if ((s = snapshot_new(b, pb->version, pb->created_unix_ms)) == NULL)
        goto fail;
    b->routes = calloc(pb->n_routes + 1, sizeof(*b->routes));
    b->route_mask = table_size(pb->n_routes) - 1;
    b->route_slots = calloc(b->route_mask + 1, sizeof(uint32_t));
    if (b->routes == NULL || b->route_slots == NULL)
        goto fail;
    for (size_t i = 0; i < pb->n_routes; i++) {
        const Tollgate__Route *r = pb->routes[i];
        dp_route_t *dr = &b->routes[b->n_routes++];
        dr->name = r->name;
        dr->name_len = strlen(r->name);
        dr->default_max_tokens = r->default_max_tokens;
        dr->targets = calloc(r->n_targets + 1, sizeof(*dr->targets));
        if (dr->targets == NULL)
            goto fail;
        for (size_t t = 0; t < r->n_targets; t++) {
            const Tollgate__RouteTarget *rt = r->targets[t];
            const dp_provider_t *prov = find_provider(s, rt->provider_id);
            if (prov == NULL)
                continue; /* a target whose provider is gone cannot be used */
            if (dp_target_init(s, &dr->targets[dr->n_targets++], prov, rt->upstream_model, rt->weight, NULL) != 0)
                goto fail;
            const dp_price_t *price = dr->targets[dr->n_targets - 1].price;
            if (price != NULL) { /* W is priced at the dearest target (docs/admission.md) */
                if (price->input > dr->max_price.input)
                    dr->max_price.input = price->input;
                if (price->output > dr->max_price.output)
                    dr->max_price.output = price->output;
            }
        }
        for (size_t h = fnv1a(dr->name, dr->name_len) & b->route_mask;; h = (h + 1) & b->route_mask) {
            if (b->route_slots[h] == 0) {
                b->route_slots[h] = (uint32_t)b->n_routes;
                break;
            }
        }
    }

    /* limits, then keys; the tenants that allow content logging are few (usually none) */
    if (build_limits(b, pb) != 0)
        goto fail;
    if ((b->log_tenants = calloc(pb->n_tenants + 1, sizeof(*b->log_tenants))) == NULL)
        goto fail;
    for (size_t i = 0; i < pb->n_tenants; i++)
        if (pb->tenants[i]->log_content)
            b->log_tenants[b->n_log_tenants++] = pb->tenants[i]->id;
    atomic_init(&b->keys.refs, 1);
    if (batch_fill(b, &b->keys, pb->keys, pb->n_keys) != 0)
        goto fail;

    /* the snapshot: pointers copied now that the base is complete */
    snapshot_free(s);
    if ((s = snapshot_new(b, pb->version, pb->created_unix_ms)) == NULL)
        goto fail;
    if ((s->keys = calloc(b->keys.n_keys + 1, sizeof(*s->keys))) == NULL)
        goto fail;
    for (size_t i = 0; i < b->keys.n_keys; i++)
        s->keys[s->n_keys++] = &b->keys.keys[i];
    if (index_keys(s, s->n_keys) != 0)
        goto fail;
    base_unref(b);
    *ret = s;
    err[0] = '\0';
    return 0;
fail:
    snapshot_free(s);
    base_unref(b);
    return -1;
}

/* Deltas a snapshot may reference before the O(keys) path drops those whose keys are all gone. */
#define MAX_DELTA_BATCHES 1024

/* A small set of key ids (a delta's), open addressing on FNV-1a. */
typedef struct id_set {
    const char **ids;
    size_t mask;
} id_set_t;

static int
id_set_add(id_set_t *set, const char *id)
{
    for (size_t h = fnv1a(id, strlen(id)) & set->mask;; h = (h + 1) & set->mask) {
        if (set->ids[h] == NULL) {
            set->ids[h] = id;
            return 0;
        }
        if (strcmp(set->ids[h], id) == 0)
            return 0;
    }
}

static int
id_set_has(const id_set_t *set, const char *id)
{
    for (size_t h = fnv1a(id, strlen(id)) & set->mask;; h = (h + 1) & set->mask) {
        if (set->ids[h] == NULL)
            return 0;
        if (strcmp(set->ids[h], id) == 0)
            return 1;
    }
}

int
dp_snapshot_apply_delta(const dp_snapshot_t *cur, const uint8_t *buf, size_t len, dp_snapshot_t **ret, char *err,
                        size_t errlen)
{
    snprintf(err, errlen, "out of memory");
    Tollgate__KeyDelta *d = tollgate__key_delta__unpack(NULL, len, buf);
    if (d == NULL) {
        snprintf(err, errlen, "key delta does not decode");
        return -1;
    }
    if (cur != NULL && d->version <= cur->version) { /* overtaken by a fetch */
        tollgate__key_delta__free_unpacked(d, NULL);
        return DP_DELTA_OLD;
    }
    if (cur == NULL || cur->base == NULL || d->base_version != cur->version) {
        tollgate__key_delta__free_unpacked(d, NULL);
        return DP_DELTA_STALE;
    }
    dp_snapshot_t *s = NULL;
    id_set_t set = {0};
    dp_key_batch_t *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        tollgate__key_delta__free_unpacked(d, NULL);
        return -1;
    }
    atomic_init(&b->refs, 1);
    b->pb = d; /* freed with the batch from here on */
    if (batch_fill(cur->base, b, d->upserts, d->n_upserts) != 0)
        goto fail;

    if ((s = snapshot_new(cur->base, d->version, d->created_unix_ms)) == NULL)
        goto fail;
    size_t changes = d->n_upserts + d->n_deleted_ids, room = cur->n_keys + b->n_keys;
    if (cur->id_slots != NULL && cur->n_batches < MAX_DELTA_BATCHES &&
        2 * (room + cur->key_gone + changes) <= cur->key_mask + 1) {
        /* O(changes): copy the key array and both tables, then remove and add only what the delta names */
        if ((s->keys = malloc((room + 1) * sizeof(*s->keys))) == NULL ||
            (s->key_slots = malloc((cur->key_mask + 1) * sizeof(uint32_t))) == NULL ||
            (s->id_slots = malloc((cur->key_mask + 1) * sizeof(uint32_t))) == NULL ||
            (s->batches = malloc((cur->n_batches + 1) * sizeof(*s->batches))) == NULL)
            goto fail;
        memcpy(s->keys, cur->keys, cur->n_keys * sizeof(*s->keys));
        memcpy(s->key_slots, cur->key_slots, (cur->key_mask + 1) * sizeof(uint32_t));
        memcpy(s->id_slots, cur->id_slots, (cur->key_mask + 1) * sizeof(uint32_t));
        s->n_keys = cur->n_keys;
        s->key_mask = cur->key_mask;
        s->key_gone = cur->key_gone;
        /* every earlier delta stays referenced until the next rebuild below drops those with no key left */
        for (size_t i = 0; i < cur->n_batches; i++) {
            atomic_fetch_add_explicit(&cur->batches[i]->refs, 1, memory_order_relaxed);
            s->batches[s->n_batches++] = cur->batches[i];
        }
        for (size_t i = 0; i < changes; i++) {
            ssize_t at = find_id(s, i < d->n_deleted_ids ? d->deleted_ids[i] : d->upserts[i - d->n_deleted_ids]->id);
            if (at >= 0)
                remove_key(s, (size_t)at);
        }
        for (size_t i = 0; i < b->n_keys; i++) {
            s->keys[s->n_keys] = &b->keys[i];
            slots_add(s, s->n_keys++);
        }
    } else {
        /* O(keys), when the tables are getting full of removed slots or deltas pile up: a fresh array
         * without the ids the delta names (upserts come back from the batch), fresh tables, and only
         * the earlier deltas that still have keys here */
        set.mask = table_size(d->n_upserts + d->n_deleted_ids) - 1;
        if ((set.ids = calloc(set.mask + 1, sizeof(*set.ids))) == NULL)
            goto fail;
        for (size_t i = 0; i < d->n_upserts; i++)
            id_set_add(&set, d->upserts[i]->id);
        for (size_t i = 0; i < d->n_deleted_ids; i++)
            id_set_add(&set, d->deleted_ids[i]);

        if ((s->keys = calloc(cur->n_keys + b->n_keys + 1, sizeof(*s->keys))) == NULL ||
            (s->batches = calloc(cur->n_batches + 1, sizeof(*s->batches))) == NULL)
            goto fail;
        for (size_t i = 0; i < cur->n_keys; i++) {
            dp_vkey_t *k = cur->keys[i];
            if (id_set_has(&set, k->id))
                continue;
            s->keys[s->n_keys++] = k;
            if (k->batch != NULL)
                k->batch->live++;
        }
        for (size_t i = 0; i < b->n_keys; i++)
            s->keys[s->n_keys++] = &b->keys[i];
        /* keep (one reference each) the earlier deltas that still have keys here */
        for (size_t i = 0; i < cur->n_batches; i++) {
            dp_key_batch_t *o = cur->batches[i];
            if (o->live > 0) {
                atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
                s->batches[s->n_batches++] = o;
            }
            o->live = 0;
        }
        if (index_keys(s, room) != 0)
            goto fail;
    }
    if (b->n_keys > 0) {
        s->batches[s->n_batches++] = b;
        b = NULL;
    }
    batch_unref(b);
    free(set.ids);
    *ret = s;
    err[0] = '\0';
    return 0;
fail:
    for (size_t i = 0; i < cur->n_batches; i++)
        cur->batches[i]->live = 0;
    snapshot_free(s);
    batch_unref(b);
    free(set.ids);
    return -1;
}

void
dp_snapshot_ref(dp_snapshot_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void
dp_snapshot_unref(dp_snapshot_t *s)
{
    if (s != NULL && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        snapshot_free(s);
}

const dp_vkey_t *
dp_snapshot_find_key(const dp_snapshot_t *s, const uint8_t hash[TG_SHA256_LEN])
{
    for (size_t h = key_slot_hash(hash) & s->key_mask;; h = (h + 1) & s->key_mask) {
        uint32_t slot = s->key_slots[h];
        if (slot == 0)
            return NULL;
        if (slot != DP_SLOT_GONE && memcmp(s->keys[slot - 1]->hash, hash, TG_SHA256_LEN) == 0)
            return s->keys[slot - 1];
    }
}

const dp_route_t *
dp_snapshot_find_route(const dp_snapshot_t *s, const char *name, size_t len)
{
    for (size_t h = fnv1a(name, len) & s->route_mask;; h = (h + 1) & s->route_mask) {
        uint32_t slot = s->route_slots[h];
        if (slot == 0)
            return NULL;
        const dp_route_t *r = &s->routes[slot - 1];
        if (r->name_len == len && memcmp(r->name, name, len) == 0)
            return r;
    }
}

/* Iterative glob with one backtrack point: linear in practice, never exponential. */
int
dp_glob_match(const char *p, const char *name, size_t len)
{
    size_t n = 0;
    const char *star = NULL;
    size_t star_n = 0;
    while (n < len) {
        if (*p == '*') {
            star = p++;
            star_n = n;
        } else if (*p != '\0' && (*p == '?' || *p == name[n])) {
            p++;
            n++;
        } else if (star != NULL) {
            p = star + 1;
            n = ++star_n;
        } else {
            return 0;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

int
dp_vkey_allows(const dp_vkey_t *k, const char *model, size_t len)
{
    if (k->n_allowed_models == 0)
        return 1;
    for (size_t i = 0; i < k->n_allowed_models; i++) {
        const char *m = k->allowed_models[i];
        if (strpbrk(m, "*?") != NULL ? dp_glob_match(m, model, len) : strlen(m) == len && memcmp(m, model, len) == 0)
            return 1;
    }
    return 0;
}

int
dp_vkey_allows_provider(const dp_vkey_t *k, const char *provider_id)
{
    if (k->n_allowed_providers == 0)
        return 1;
    for (size_t i = 0; i < k->n_allowed_providers; i++)
        if (strcmp(k->allowed_providers[i], provider_id) == 0)
            return 1;
    return 0;
}

void
dp_snapshot_publish(dp_snapshot_t *s)
{
    pthread_mutex_lock(&current_lock);
    dp_snapshot_t *old = current;
    current = s;
    atomic_store_explicit(&current_version, s->version, memory_order_release);
    pthread_mutex_unlock(&current_lock);
    dp_snapshot_unref(old);
}

void
dp_snapshot_unpublish(void)
{
    pthread_mutex_lock(&current_lock);
    dp_snapshot_t *old = current;
    current = NULL;
    pthread_mutex_unlock(&current_lock);
    dp_snapshot_unref(old);
}

dp_snapshot_t *
dp_snapshot_acquire(void)
{
    pthread_mutex_lock(&current_lock);
    dp_snapshot_t *s = current;
    if (s != NULL)
        dp_snapshot_ref(s);
    pthread_mutex_unlock(&current_lock);
    return s;
}

uint64_t
dp_snapshot_current_version(void)
{
    return atomic_load_explicit(&current_version, memory_order_acquire);
}
