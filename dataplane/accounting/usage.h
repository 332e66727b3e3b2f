/*
 * Usage accounting: one record per request, packed as protobuf right away into the worker's buffer
 * (no locks, no per-record allocation), handed to the shipper once per flush interval. The shipper
 * numbers each batch (instance id, sequence), sends it to the control plane over NNG REQ/REP, and keeps
 * it until acknowledged; the control plane stores a batch at most once, so resending never
 * double-counts. Unsent batches survive a graceful exit in a spool file when a spool dir is configured.
 */
#ifndef DP_USAGE_H
#define DP_USAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "config/snapshot.h"

typedef struct dp_usage_buffer {
    uint8_t *buf;
    size_t len, cap;
    uint32_t count;
} dp_usage_buffer_t;

typedef struct dp_usage_fields {
    const char *request_id;
    const char *tenant_id;
    const char *team_id; /* NULL or "" when the key has no team */
    const char *key_id;
    const char *model;
    size_t model_len;
    const char *provider_id;
    const char *upstream_model;
    const char *endpoint;
    int64_t input_tokens; /* cached ones included */
    int64_t output_tokens;
    int64_t cached_input_tokens;
    int64_t cost_nanousd;
    uint32_t status;
    bool stream;
    int64_t started_unix_ms;
    uint32_t latency_ms;
} dp_usage_fields_t;

/* Cost in nano-USD: integer arithmetic, one truncation (docs/api.md). 0 without a price. */
int64_t dp_usage_cost(const dp_price_t *price, int64_t input, int64_t cached_input, int64_t output);

int dp_usage_append(dp_usage_buffer_t *b, const dp_usage_fields_t *f);
/* Hands the buffered records to the shipper (a no-op when empty). */
void dp_usage_flush(dp_usage_buffer_t *b);
void dp_usage_buffer_dispose(dp_usage_buffer_t *b);

/* The shipper thread. start() also loads spooled batches of earlier runs. */
int dp_usage_shipper_start(void);
/* Sends what is queued until done or the deadline, spools the rest, stops the thread. */
void dp_usage_shipper_stop(int deadline_ms);
/* Records and batches waiting for an acknowledgement (for logs and tests). */
size_t dp_usage_shipper_pending(void);

#endif
