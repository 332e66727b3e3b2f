/*
 * Snapshot build, lookup and publication (see snapshot.h).
 *
 * Keys are found by their SHA-256 in an open-addressing table indexed by the hash's first 8 bytes
 * (already uniformly distributed); routes by an FNV-1a hash of the public model name. Tables are sized
 * to a power of two at least twice the entry count, so probes stay short.
 *
 * Publication: one mutex-protected pointer plus an atomic version that workers poll without locking.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "config/snapshot.h"
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

static void
snapshot_free(dp_snapshot_t *s)
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
        }
        free(s->routes[i].targets);
    }
    free(s->providers);
    free(s->routes);
    free(s->route_slots);
    free(s->keys);
    free(s->key_slots);
    free(s->prices);
    if (s->pb != NULL)
        tollgate__snapshot__free_unpacked(s->pb, NULL);
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
find_price(const dp_snapshot_t *s, const Tollgate__Snapshot *pb, const char *provider_id, const char *model)
{
    const dp_price_t *any = NULL;
    for (size_t i = 0; i < pb->n_prices; i++) {
        const Tollgate__Price *p = pb->prices[i];
        if (strcmp(p->model, model) != 0)
            continue;
        if (strcmp(p->provider_id, provider_id) == 0)
            return &s->prices[i];
        if (p->provider_id[0] == '\0')
            any = &s->prices[i];
    }
    return any;
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
        dk->weight = pk->weight ? pk->weight : 1;
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

int
dp_snapshot_build(const uint8_t *buf, size_t len, const tg_wire_key_t *wire_key, dp_snapshot_t **ret, char *err,
                  size_t errlen)
{
    snprintf(err, errlen, "out of memory");
    const char **lc = NULL; /* ids of the tenants that allow content logging */
    size_t n_lc = 0;
    dp_snapshot_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -1;
    Tollgate__Snapshot *pb = tollgate__snapshot__unpack(NULL, len, buf);
    if (pb == NULL) {
        snprintf(err, errlen, "snapshot does not decode");
        goto fail;
    }
    s->pb = pb;
    s->version = pb->version;
    s->created_unix_ms = pb->created_unix_ms;
    atomic_init(&s->refs, 1);

    /* prices, providers */
    s->prices = calloc(pb->n_prices + 1, sizeof(*s->prices));
    s->providers = calloc(pb->n_providers + 1, sizeof(*s->providers));
    if (s->prices == NULL || s->providers == NULL)
        goto fail;
    s->n_prices = pb->n_prices;
    for (size_t i = 0; i < pb->n_prices; i++) {
        s->prices[i].input = pb->prices[i]->input_micro_usd_per_mtok;
        s->prices[i].output = pb->prices[i]->output_micro_usd_per_mtok;
        s->prices[i].cached_input = pb->prices[i]->cached_input_micro_usd_per_mtok;
    }
    for (size_t i = 0; i < pb->n_providers; i++) {
        s->n_providers++;
        if (build_provider(&s->providers[i], pb->providers[i], wire_key, err, errlen) != 0)
            goto fail;
    }

    /* routes */
    s->routes = calloc(pb->n_routes + 1, sizeof(*s->routes));
    s->route_mask = table_size(pb->n_routes) - 1;
    s->route_slots = calloc(s->route_mask + 1, sizeof(uint32_t));
    if (s->routes == NULL || s->route_slots == NULL)
        goto fail;
    for (size_t i = 0; i < pb->n_routes; i++) {
        const Tollgate__Route *r = pb->routes[i];
        dp_route_t *dr = &s->routes[s->n_routes++];
        dr->name = r->name;
        dr->name_len = strlen(r->name);
        dr->targets = calloc(r->n_targets + 1, sizeof(*dr->targets));
        if (dr->targets == NULL)
            goto fail;
        for (size_t t = 0; t < r->n_targets; t++) {
            const Tollgate__RouteTarget *rt = r->targets[t];
            const dp_provider_t *prov = find_provider(s, rt->provider_id);
            if (prov == NULL)
                continue; /* a target whose provider is gone cannot be used */
            dp_target_t *dt = &dr->targets[dr->n_targets++];
            dt->provider = prov;
            dt->upstream_model = rt->upstream_model;
            dt->tx = (tx_target_t){.kind = prov->kind,
                                   .base_url = prov->base_url,
                                   .upstream_model = rt->upstream_model,
                                   .settings = prov->settings};
            char url[4096];
            if (tx_openai_url(&dt->tx, "chat/completions", url, sizeof(url)) < 0 ||
                (dt->chat_url = strdup(url)) == NULL)
                goto fail;
            size_t mlen = strlen(rt->upstream_model);
            if ((dt->upstream_model_json = malloc(6 * mlen + 2)) == NULL)
                goto fail;
            dt->upstream_model_json_len = tg_json_quote(dt->upstream_model_json, rt->upstream_model, mlen);
            dt->price = find_price(s, pb, rt->provider_id, rt->upstream_model);
            dt->weight = rt->weight ? rt->weight : 1;
        }
        for (size_t h = fnv1a(dr->name, dr->name_len) & s->route_mask;; h = (h + 1) & s->route_mask) {
            if (s->route_slots[h] == 0) {
                s->route_slots[h] = (uint32_t)s->n_routes;
                break;
            }
        }
    }

    /* keys; the tenants that allow content logging are few (usually none): a list beats a table */
    if ((lc = calloc(pb->n_tenants + 1, sizeof(*lc))) == NULL)
        goto fail;
    for (size_t i = 0; i < pb->n_tenants; i++)
        if (pb->tenants[i]->log_content)
            lc[n_lc++] = pb->tenants[i]->id;
    s->keys = calloc(pb->n_keys + 1, sizeof(*s->keys));
    s->key_mask = table_size(pb->n_keys) - 1;
    s->key_slots = calloc(s->key_mask + 1, sizeof(uint32_t));
    if (s->keys == NULL || s->key_slots == NULL)
        goto fail;
    for (size_t i = 0; i < pb->n_keys; i++) {
        const Tollgate__VirtualKey *k = pb->keys[i];
        if (k->key_hash.len != TG_SHA256_LEN)
            continue;
        dp_vkey_t *dk = &s->keys[s->n_keys++];
        memcpy(dk->hash, k->key_hash.data, TG_SHA256_LEN);
        dk->id = k->id;
        dk->tenant_id = k->tenant_id;
        dk->expires_at_unix_ms = k->expires_at_unix_ms;
        for (size_t t = 0; t < n_lc && !dk->log_content; t++)
            dk->log_content = strcmp(lc[t], k->tenant_id) == 0;
        dk->allowed_models = k->allowed_models;
        dk->n_allowed_models = k->n_allowed_models;
        for (size_t h = key_slot_hash(dk->hash) & s->key_mask;; h = (h + 1) & s->key_mask) {
            if (s->key_slots[h] == 0) {
                s->key_slots[h] = (uint32_t)s->n_keys;
                break;
            }
        }
    }
    free(lc);
    *ret = s;
    err[0] = '\0';
    return 0;
fail:
    free(lc);
    snapshot_free(s);
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
        if (memcmp(s->keys[slot - 1].hash, hash, TG_SHA256_LEN) == 0)
            return &s->keys[slot - 1];
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

int
dp_vkey_allows(const dp_vkey_t *k, const char *model, size_t len)
{
    if (k->n_allowed_models == 0)
        return 1;
    for (size_t i = 0; i < k->n_allowed_models; i++)
        if (strlen(k->allowed_models[i]) == len && memcmp(k->allowed_models[i], model, len) == 0)
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
