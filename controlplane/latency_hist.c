/*
 * Latency histogram buckets and quantiles (see latency_hist.h).
 */
#include <math.h>
#include "latency_hist.h"

const int32_t cp_lat_bounds[CP_LAT_BUCKETS - 1] = {5,     10,    20,    35,    50,    75,     100,   150,
                                                   250,   400,   600,   1000,  1500,  2500,   4000,  6000,
                                                   10000, 15000, 25000, 40000, 60000, 120000, 300000};

int
cp_lat_bucket(int64_t ms)
{
    int lo = 0, hi = CP_LAT_BUCKETS - 1; /* answer in [lo, hi]: the number of bounds <= ms */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cp_lat_bounds[mid] <= ms)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

double
cp_lat_quantile(const int64_t counts[CP_LAT_BUCKETS], double q)
{
    int64_t total = 0;
    for (int i = 0; i < CP_LAT_BUCKETS; i++)
        total += counts[i] > 0 ? counts[i] : 0;
    if (total == 0 || !(q > 0) || q > 1)
        return -1;
    int64_t rank = (int64_t)ceil(q * (double)total);
    if (rank < 1)
        rank = 1;
    int64_t seen = 0;
    for (int i = 0; i < CP_LAT_BUCKETS; i++) {
        int64_t c = counts[i] > 0 ? counts[i] : 0;
        if (c == 0 || seen + c < rank) {
            seen += c;
            continue;
        }
        double lo = i == 0 ? 0 : cp_lat_bounds[i - 1];
        if (i == CP_LAT_BUCKETS - 1)
            return lo;
        double hi = cp_lat_bounds[i];
        return lo + (hi - lo) * (double)(rank - seen) / (double)c;
    }
    return -1;
}
