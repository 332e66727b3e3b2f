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
#include "tollgate/crypto.h"
#include "tollgate/wire.h"

typedef struct dp_price {
    int64_t input; /* micro-USD per million tokens */
    int64_t output;
    int64_t cached_input; /* 0: billed as input */
} dp_price_t;

#include <curl/curl.h>
#include <jansson.h>
#include "translate/tx.h"

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
} dp_provider_t;

typedef struct dp_target {
    const dp_provider_t *provider;
    tx_target_t tx; /* what the translators need to know of it */
    char *chat_url; /* passthrough chat completions URL */
    const char *upstream_model;
    char *upstream_model_json; /* quoted and escaped, ready to splice into a body */
    size_t upstream_model_json_len;
    const dp_price_t *price; /* NULL: no price configured, billed at 0 */
    uint32_t weight;
} dp_target_t;

typedef struct dp_route {
    const char *name;
    size_t name_len;
    dp_target_t *targets;
    size_t n_targets;
} dp_route_t;

typedef struct dp_vkey {
    uint8_t hash[TG_SHA256_LEN];
    const char *id;
    const char *tenant_id;
    int64_t expires_at_unix_ms; /* 0: never */
    int log_content;            /* the tenant allows prompt and completion text in access logs */
    char **allowed_models;
    size_t n_allowed_models;
} dp_vkey_t;

typedef struct dp_snapshot {
    atomic_long refs;
    uint64_t version;
    int64_t created_unix_ms;
    void *pb; /* Tollgate__Snapshot, owner of the strings */
    dp_vkey_t *keys;
    size_t n_keys;
    uint32_t *key_slots; /* open addressing: index + 1, 0 = empty */
    size_t key_mask;
    dp_route_t *routes;
    size_t n_routes;
    uint32_t *route_slots;
    size_t route_mask;
    dp_provider_t *providers;
    size_t n_providers;
    dp_price_t *prices;
    size_t n_prices;
} dp_snapshot_t;

/* Builds a snapshot from a serialized protobuf Snapshot. 0 and a snapshot with one reference, or -1
 * with a reason in err. */
int dp_snapshot_build(const uint8_t *buf, size_t len, const tg_wire_key_t *wire_key, dp_snapshot_t **ret, char *err,
                      size_t errlen);
void dp_snapshot_ref(dp_snapshot_t *s);
void dp_snapshot_unref(dp_snapshot_t *s);

const dp_vkey_t *dp_snapshot_find_key(const dp_snapshot_t *s, const uint8_t hash[TG_SHA256_LEN]);
const dp_route_t *dp_snapshot_find_route(const dp_snapshot_t *s, const char *name, size_t len);
int dp_vkey_allows(const dp_vkey_t *k, const char *model, size_t len);

/* The process-wide current snapshot. publish() takes over the caller's reference. */
void dp_snapshot_publish(dp_snapshot_t *s);
/* Drops the process-wide reference (at exit). */
void dp_snapshot_unpublish(void);
/* A new reference to the current snapshot, or NULL before the first one. */
dp_snapshot_t *dp_snapshot_acquire(void);
/* Cheap check for workers: changes whenever a new snapshot is published (0 = none yet). */
uint64_t dp_snapshot_current_version(void);

#endif
