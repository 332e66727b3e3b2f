/*
 * The latency histogram of usage rollups: fixed bucket bounds shared by ingest (usage_rollup.c), the
 * reports (admin/usage_report.c) and SQL (tollgate_latency_bounds() in migrations/0004, which must list
 * the same bounds; latency_hist_test.c checks). Pure functions, unit tested.
 *
 * Bucket i counts latencies in [bound[i-1], bound[i]) milliseconds, with bound[-1] = 0 and the last
 * bucket open-ended; so bucket(x) = how many bounds are <= x (SQL's width_bucket).
 */
#ifndef CP_LATENCY_HIST_H
#define CP_LATENCY_HIST_H

#include <stdint.h>

#define CP_LAT_BUCKETS 24

extern const int32_t cp_lat_bounds[CP_LAT_BUCKETS - 1];

/* The bucket of a latency in milliseconds (negative counts as 0). */
int cp_lat_bucket(int64_t ms);

/*
 * The q-quantile (0 < q <= 1) of a histogram, in milliseconds, interpolated linearly inside the bucket
 * that holds the rank ceil(q * total); the open last bucket answers its lower bound. -1 when empty.
 * The error is at most the width of that bucket.
 */
double cp_lat_quantile(const int64_t counts[CP_LAT_BUCKETS], double q);

#endif
