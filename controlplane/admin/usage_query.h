/*
 * The usage report's SQL, built from the requested grouping only (never from user text), so it is a
 * pure function and unit tested in usage_query_test.c. Parameters: $1 tenant id, $2 from, $3 to.
 */
#ifndef CP_ADMIN_USAGE_QUERY_H
#define CP_ADMIN_USAGE_QUERY_H

#include <stddef.h>

enum {
    CP_USAGE_BY_KEY = 1 << 0,
    CP_USAGE_BY_MODEL = 1 << 1,
    CP_USAGE_BY_DAY = 1 << 2,
};

/* Parses "key,model,day" (any subset, any order, no repeats; "" = no grouping). 0 or -1. */
int cp_usage_parse_group_by(const char *s, unsigned *ret_mask);

/* Writes the SELECT for `mask`; one row per group, one JSON text column. 0, or -1 when buf is short. */
int cp_usage_build_sql(unsigned mask, char *buf, size_t bufsz);

/*
 * The rollup report (GET /admin/v1/usage/report): grouped by any subset of tenant, team, key,
 * provider, model and by a time bucket. Parameters: $1 tenant id or NULL (every tenant), $2 from, $3 to
 * (whole hours). Columns: period start (RFC 3339), then the chosen group columns in the order tenant,
 * team, key, provider, model (ids as text, null for none), then requests, errors, input_tokens,
 * output_tokens, cached_input_tokens, cost_nanousd and the CP_LAT_BUCKETS histogram sums.
 */
enum {
    CP_REPORT_BY_TENANT = 1 << 0,
    CP_REPORT_BY_TEAM = 1 << 1,
    CP_REPORT_BY_KEY = 1 << 2,
    CP_REPORT_BY_PROVIDER = 1 << 3,
    CP_REPORT_BY_MODEL = 1 << 4,
};
#define CP_REPORT_GROUPS 5
extern const char *const cp_report_group_names[CP_REPORT_GROUPS]; /* "tenant", ... in bit order */

/* "tenant,model" -> mask (any subset, no repeats, "" = none). 0 or -1. */
int cp_report_parse_group_by(const char *s, unsigned *ret_mask);
/* "hour", "day", "month" -> the date_trunc unit (the same word). 0 or -1. */
int cp_report_parse_granularity(const char *s);
/* The SELECT; `granularity` as accepted above; at most `max_rows` rows. 0, or -1 when buf is short. */
int cp_report_build_sql(const char *granularity, unsigned mask, long max_rows, char *buf, size_t bufsz);

#endif
