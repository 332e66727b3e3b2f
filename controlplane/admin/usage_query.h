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

#endif
