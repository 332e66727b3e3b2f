/*
 * Grouping a usage batch in C before it reaches PostgreSQL (pure functions, unit tested).
 *
 * Rollups: one group per (UTC hour, tenant, team, key, provider, model) with summed counts, tokens,
 * cost and latency histogram, so the upsert into usage_rollups_hourly touches each rollup row once
 * with a few rows per batch. Settlement: one group per (key, model, UTC second of the start time) with
 * the summed cost, so tollgate_settle() attributes a few rows instead of one per record. The second is
 * exact: a budget period starts at local midnight (or hour, week, month) of a time zone, and every
 * time zone offset is a whole number of seconds, so all records of one UTC second are in one period.
 *
 * Ids that are not UUIDs are the zero UUID in rollup groups (usage_events stores NULL for them); a
 * record without a valid key or with cost <= 0 settles nothing. Ids compare case-insensitively, as
 * PostgreSQL's uuid does. The groups point into the batch's strings: they live as long as the batch.
 */
#ifndef CP_USAGE_GROUP_H
#define CP_USAGE_GROUP_H

#include <stddef.h>
#include <stdint.h>
#include "latency_hist.h"
#include "tollgate.pb-c.h"

#define CP_ZERO_UUID "00000000-0000-0000-0000-000000000000"

typedef struct cp_rollup_group {
    int64_t hour_s; /* Unix seconds of the UTC hour */
    const char *tenant, *team, *key, *provider, *model;
    int64_t requests, errors, input, output, cached, cost, latency_sum;
    int64_t lat[CP_LAT_BUCKETS];
} cp_rollup_group_t;

typedef struct cp_settle_group {
    int64_t sec; /* Unix seconds of the start time */
    const char *key, *model;
    int64_t cost;
} cp_settle_group_t;

/* The last millisecond of year 9999 UTC: later start times are not stored as such (timestamptz and
 * the microsecond arithmetic of binary COPY stay far from their limits). */
#define CP_MAX_START_MS 253402300799999LL

/* The start time stored for a record: its own, or `now_ms` when it has none or one past
 * CP_MAX_START_MS (usage_events, the rollups and settlement all use this one). */
int64_t cp_usage_start_ms(const Tollgate__UsageRecord *u, int64_t now_ms);

/* floor(ms / 1000) for negative values too. */
int64_t cp_floor_sec(int64_t ms);

/*
 * Groups the batch's records into `out` (room for batch->n_records groups), sorted by their key
 * columns. Returns the number of groups, -1 when out of memory, -2 when a sum leaves int64 (the
 * batch cannot be stored: PostgreSQL's bigint columns could not hold it either).
 */
long cp_group_rollups(const Tollgate__UsageBatch *batch, int64_t now_ms, cp_rollup_group_t *out);
long cp_group_settlement(const Tollgate__UsageBatch *batch, int64_t now_ms, cp_settle_group_t *out);

#endif
