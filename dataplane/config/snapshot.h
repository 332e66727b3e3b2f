/*
 * The dataplane's view of configuration: an immutable, indexed snapshot built from the control plane's
 * protobuf Snapshot, reference counted so that requests in flight keep the snapshot they started with
 * while a newer one is published.
 *
 * Ownership: the unpacked protobuf owns every string; the index arrays point into it. A snapshot is
 * freed when its last reference goes (dp_snapshot_unref).
 */
#ifndef DP_SNAPSHOT_H
#define DP_SNAPSHOT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "tollgate/arena.h"
#include "tollgate/crypto.h"
#include "tollgate/wire.h"

typedef struct dp_price {
    int64_t input; /* micro-USD per million tokens */
    int64_t output;
    int64_t cached_input; /* 0: billed as input */
} dp_price_t;

#include <curl/curl.h>
#include <jansson.h>
#include "routing/breaker.h"
#include "translate/tx.h"

/* A provider account's reliability settings (routing/routing.c reads them from `settings`). Timeouts
 * of 0 take the process defaults (TOLLGATE_UPSTREAM_*). */
typedef struct dp_policy {
    int max_retries;
    long connect_timeout_ms;
    long first_byte_timeout_ms; /* streams: response headers within this */
    long idle_timeout_ms;       /* streams: the longest gap between two body chunks */
    long total_timeout_ms;      /* the whole request: every attempt and backoff wait, first try to last byte */
    long attempt_timeout_ms;    /* one attempt, start to last byte; 0: only the request's remaining time */
    dp_breaker_config_t breaker;
} dp_policy_t;

/* The request headers for upstream calls with one provider key, built once per snapshot rather than per
 * request: [0] for JSON answers, [1] for streams. They carry the decrypted secret, wiped on free. */
enum { DP_HEADERS_JSON = 0, DP_HEADERS_STREAM = 1 };

typedef enum dp_auth {
    DP_AUTH_STATIC = 0, /* the key is in the prebuilt headers (or no key is needed) */
    DP_AUTH_SIGV4,      /* AWS SigV4 per request, from secret = {"access_key_id", "secret_access_key", ...} */
    DP_AUTH_GCP_TOKEN,  /* OAuth access token from a service account (secret), cached and refreshed */
} dp_auth_t;

typedef struct dp_provider_key {
    const char *id; /* "" for a provider without keys (Ollama, say) */
    dp_auth_t auth;
    struct curl_slist *headers[2];
    /* The decrypted secret, kept only where every request signs with it (Bedrock's SigV4 keys, Vertex's
     * service account); NULL otherwise. Wiped on free. */
    char *secret;
    uint32_t weight;
} dp_provider_key_t;

typedef struct dp_provider {
    const char *id;
    const char *name;
    const char *kind;
    const tx_provider_ops_t *ops; /* the adapter; never NULL (unknown kinds are refused at build) */
    int passthrough;              /* takes OpenAI chat bodies with only the model rewritten */
    char *base_url;               /* without a trailing slash */
    json_t *settings;             /* an object, never NULL */
    dp_provider_key_t *keys;      /* at least one */
    size_t n_keys;
    uint32_t total_weight;
    dp_policy_t policy;
} dp_provider_t;

typedef struct dp_target {
    const dp_provider_t *provider;
    tx_target_t tx; /* what the translators need to know of it */
    char *chat_url; /* passthrough chat completions URL */
    const char *upstream_model;
    char *upstream_model_json; /* quoted and escaped, ready to splice into a body */
    size_t upstream_model_json_len;
    const dp_price_t *price; /* NULL: no price configured, billed at 0 */
    uint32_t weight;         /* 0: only a fallback, never chosen first */
    dp_breaker_t **breakers; /* one per provider key (NULL entries: none); process-wide, never freed */
} dp_target_t;

typedef struct dp_route {
    const char *name;
    size_t name_len;
    dp_target_t *targets;
    size_t n_targets;
    uint32_t default_max_tokens; /* reservation cap when the client names none (0: the gateway's) */
    dp_price_t max_price;        /* the highest input and output price of any target: what W is priced at */
} dp_route_t;

struct dp_allowance;

/* A budget or one counter of a rate limit, as admission sees it (admission/admission.h). */
typedef struct dp_limit {
    const char *id;
    int kind;          /* dp_lease_kind_t */
    const char *model; /* budgets: only requests for this public model; NULL = every model */
    size_t model_len;
    int64_t hard;                   /* nano-USD, requests, tokens or slots */
    int64_t soft;                   /* budgets: the warning threshold, -1 none */
    uint32_t window_s;              /* rate limits */
    struct dp_allowance *allowance; /* process-wide state, survives snapshots */
} dp_limit_t;

typedef struct dp_vkey {
    uint8_t hash[TG_SHA256_LEN];
    const char *id;
    const char *tenant_id;
    int64_t expires_at_unix_ms; /* 0: never */
    const char *team_id;        /* "" when none */
    int log_content;            /* the tenant allows prompt and completion text in access logs */
    char **allowed_models;      /* exact names and globs ('*', '?') */
    size_t n_allowed_models;
    char **allowed_providers; /* provider account ids; none = all */
    size_t n_allowed_providers;
    uint32_t *limits; /* indexes into the snapshot's limits that apply to this key (key, team, tenant) */
    size_t n_limits;
    struct dp_key_batch *batch; /* the delta it arrived with; NULL when it came with a full snapshot */
} dp_vkey_t;

struct dp_snapshot_base;

#define DP_SLOT_GONE UINT32_MAX

typedef struct dp_snapshot {
    atomic_long refs;
    uint64_t version;
    int64_t created_unix_ms;
    void *pb; /* Tollgate__Snapshot of the last full snapshot, owner of its strings (kept by `base`) */
    /* What deltas leave alone (providers, routes, prices, limits, the full snapshot's keys): built from a
     * full snapshot and shared, reference counted, by every snapshot derived from it by key deltas. The
     * fields below from `routes` on are copies of the base's pointers. */
    struct dp_snapshot_base *base;
    dp_vkey_t **keys; /* this snapshot's keys: the base's, minus those deltas replaced, plus the deltas' */
    size_t n_keys;
    uint32_t *key_slots;           /* by key hash, open addressing: index + 1, 0 = empty, DP_SLOT_GONE = removed */
    uint32_t *id_slots;            /* by key id (FNV-1a), the same encoding: how a delta finds the keys it names */
    size_t key_mask;               /* both tables have key_mask + 1 slots */
    size_t key_gone;               /* DP_SLOT_GONE slots in each table (a rebuild clears them) */
    struct dp_key_batch **batches; /* the deltas whose keys are in `keys`, one reference each */
    size_t n_batches;
    dp_route_t *routes;
    size_t n_routes;
    uint32_t *route_slots;
    size_t route_mask;
    dp_provider_t *providers;
    size_t n_providers;
    dp_price_t *prices;
    size_t n_prices;
    dp_limit_t *limits;
    size_t n_limits;
} dp_snapshot_t;

/* Builds a snapshot from a serialized protobuf Snapshot. 0 and a snapshot with one reference, or -1
 * with a reason in err. */
int dp_snapshot_build(const uint8_t *buf, size_t len, const tg_wire_key_t *wire_key, dp_snapshot_t **ret, char *err,
                      size_t errlen);
/* Derives a new snapshot from `cur` and a serialized KeyDelta: the keys the delta names are replaced or
 * removed, everything else is shared with `cur`. `cur` is not changed (readers keep using it until the
 * new one is published). 0 and a snapshot with one reference; DP_DELTA_STALE when the delta was not
 * made on top of cur's version (the caller fetches the full snapshot); DP_DELTA_OLD when cur is already
 * as new; -1 with a reason in err. */
#define DP_DELTA_STALE 1
#define DP_DELTA_OLD   2 /* not newer than cur: nothing to do */
int dp_snapshot_apply_delta(const dp_snapshot_t *cur, const uint8_t *buf, size_t len, dp_snapshot_t **ret, char *err,
                            size_t errlen);
void dp_snapshot_ref(dp_snapshot_t *s);
void dp_snapshot_unref(dp_snapshot_t *s);

const dp_vkey_t *dp_snapshot_find_key(const dp_snapshot_t *s, const uint8_t hash[TG_SHA256_LEN]);
const dp_route_t *dp_snapshot_find_route(const dp_snapshot_t *s, const char *name, size_t len);
/* 1 when the key may call the public model name (exact or glob match), else 0. */
int dp_vkey_allows(const dp_vkey_t *k, const char *model, size_t len);
/* A provider account by its name (the `account/model` form of model names). */
const dp_provider_t *dp_snapshot_find_provider_by_name(const dp_snapshot_t *s, const char *name, size_t len);
/* The price of (provider, upstream model): the provider's own, else the any-provider one, else NULL. */
const dp_price_t *dp_snapshot_find_price(const dp_snapshot_t *s, const char *provider_id, const char *model);
/* Fills a target of provider p for upstream_model: URL, quoted model, price, breakers. Strings and
 * arrays are malloc'd (the snapshot frees them) or, with an arena, taken from it. 0 or -1. */
int dp_target_init(const dp_snapshot_t *s, dp_target_t *t, const dp_provider_t *p, const char *upstream_model,
                   uint32_t weight, tg_arena_t *a);
/* 1 when the key may use the provider account (no restriction, or listed). */
int dp_vkey_allows_provider(const dp_vkey_t *k, const char *provider_id);
/* Glob match of a name (not NUL-terminated) against a pattern: '*' any run, '?' one byte. */
int dp_glob_match(const char *pattern, const char *name, size_t len);

/* The process-wide current snapshot. publish() takes over the caller's reference. */
void dp_snapshot_publish(dp_snapshot_t *s);
/* Drops the process-wide reference (at exit). */
void dp_snapshot_unpublish(void);
/* A new reference to the current snapshot, or NULL before the first one. */
dp_snapshot_t *dp_snapshot_acquire(void);
/* Cheap check for workers: changes whenever a new snapshot is published (0 = none yet). */
uint64_t dp_snapshot_current_version(void);

#endif
