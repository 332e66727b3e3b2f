/*
 * Usage report SQL (see usage_query.h). Sums are exact: token and cost columns are bigint, summed as
 * numeric, and cost_usd is the nano-USD sum divided by 10^9 in numeric with 9 places.
 */
#include <stdio.h>
#include <string.h>
#include "usage_query.h"
#include "../latency_hist.h"

int
cp_usage_parse_group_by(const char *s, unsigned *ret_mask)
{
    unsigned mask = 0;
    while (*s != '\0') {
        size_t len = strcspn(s, ",");
        unsigned bit;
        if (len == 3 && memcmp(s, "key", 3) == 0)
            bit = CP_USAGE_BY_KEY;
        else if (len == 5 && memcmp(s, "model", 5) == 0)
            bit = CP_USAGE_BY_MODEL;
        else if (len == 3 && memcmp(s, "day", 3) == 0)
            bit = CP_USAGE_BY_DAY;
        else
            return -1;
        if (mask & bit)
            return -1;
        mask |= bit;
        s += len;
        if (*s == ',') {
            s++;
            if (*s == '\0')
                return -1;
        }
    }
    *ret_mask = mask;
    return 0;
}

int
cp_usage_build_sql(unsigned mask, char *buf, size_t bufsz)
{
    char cols[256] = "", groups[128] = "", order[128] = "", fields[256] = "";
    size_t nc = 0, ng = 0, no = 0, nf = 0;
    /* Output order of fields and sort order: day, key, model. */
    if (mask & CP_USAGE_BY_DAY) {
        nc += snprintf(cols + nc, sizeof(cols) - nc,
                       "to_char(date_trunc('day', ts AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS day, ");
        ng += snprintf(groups + ng, sizeof(groups) - ng, "%sday", ng ? ", " : "");
        no += snprintf(order + no, sizeof(order) - no, "%sday", no ? ", " : "");
        nf += snprintf(fields + nf, sizeof(fields) - nf, "'day', day, ");
    }
    if (mask & CP_USAGE_BY_KEY) {
        nc += snprintf(cols + nc, sizeof(cols) - nc, "key_id, ");
        ng += snprintf(groups + ng, sizeof(groups) - ng, "%skey_id", ng ? ", " : "");
        no += snprintf(order + no, sizeof(order) - no, "%skey_id", no ? ", " : "");
        nf += snprintf(fields + nf, sizeof(fields) - nf, "'key_id', key_id, ");
    }
    if (mask & CP_USAGE_BY_MODEL) {
        nc += snprintf(cols + nc, sizeof(cols) - nc, "model, ");
        ng += snprintf(groups + ng, sizeof(groups) - ng, "%smodel", ng ? ", " : "");
        no += snprintf(order + no, sizeof(order) - no, "%smodel", no ? ", " : "");
        nf += snprintf(fields + nf, sizeof(fields) - nf, "'model', model, ");
    }
    int n = snprintf(buf, bufsz,
                     "SELECT json_build_object(%s'requests', requests, 'input_tokens', input_tokens,"
                     " 'output_tokens', output_tokens, 'cached_input_tokens', cached_input_tokens,"
                     " 'cost_nanousd', cost_nanousd,"
                     " 'cost_usd', (cost_nanousd / 1000000000::numeric)::numeric(30, 9)::text)::text"
                     " FROM (SELECT %scount(*) AS requests,"
                     " coalesce(sum(input_tokens), 0) AS input_tokens,"
                     " coalesce(sum(output_tokens), 0) AS output_tokens,"
                     " coalesce(sum(cached_input_tokens), 0) AS cached_input_tokens,"
                     " coalesce(sum(cost_nanousd), 0) AS cost_nanousd"
                     " FROM usage_events"
                     " WHERE tenant_id = $1::uuid AND ts >= $2::timestamptz AND ts < $3::timestamptz"
                     "%s%s) g%s%s",
                     fields, cols, ng ? " GROUP BY " : "", groups, no ? " ORDER BY " : "", order);
    return (n < 0 || (size_t)n >= bufsz) ? -1 : 0;
}

const char *const cp_report_group_names[CP_REPORT_GROUPS] = {"tenant", "team", "key", "provider", "model"};
static const char *const group_cols[CP_REPORT_GROUPS] = {"tenant_id", "team_id", "key_id", "provider_id", "model"};

int
cp_report_parse_group_by(const char *s, unsigned *ret_mask)
{
    unsigned mask = 0;
    while (*s != '\0') {
        size_t len = strcspn(s, ",");
        int bit = -1;
        for (int i = 0; i < CP_REPORT_GROUPS; i++)
            if (strlen(cp_report_group_names[i]) == len && memcmp(s, cp_report_group_names[i], len) == 0)
                bit = i;
        if (bit < 0 || (mask & (1u << bit)))
            return -1;
        mask |= 1u << bit;
        s += len;
        if (*s == ',') {
            s++;
            if (*s == '\0')
                return -1;
        }
    }
    *ret_mask = mask;
    return 0;
}

int
cp_report_parse_granularity(const char *s)
{
    return (strcmp(s, "hour") == 0 || strcmp(s, "day") == 0 || strcmp(s, "month") == 0) ? 0 : -1;
}

int
cp_report_build_sql(const char *granularity, unsigned mask, long max_rows, char *buf, size_t bufsz)
{
    if (cp_report_parse_granularity(granularity) != 0)
        return -1;
    char cols[512] = "", groups[128];
    size_t nc = 0, ng;
    for (int i = 0; i < CP_REPORT_GROUPS; i++) {
        if (!(mask & (1u << i)))
            continue;
        if (i == CP_REPORT_GROUPS - 1)
            nc += (size_t)snprintf(cols + nc, sizeof(cols) - nc, ", model");
        else
            nc += (size_t)snprintf(cols + nc, sizeof(cols) - nc,
                                   ", nullif(%s, '00000000-0000-0000-0000-000000000000'::uuid)::text", group_cols[i]);
    }
    /* GROUP BY / ORDER BY by position: the period, then each group column. */
    int ngroups = 0;
    for (int i = 0; i < CP_REPORT_GROUPS; i++)
        ngroups += (mask >> i) & 1;
    ng = (size_t)snprintf(groups, sizeof(groups), "1");
    for (int i = 0; i < ngroups; i++)
        ng += (size_t)snprintf(groups + ng, sizeof(groups) - ng, ", %d", i + 2);
    char lat[1024];
    size_t nl = 0;
    for (int i = 0; i < CP_LAT_BUCKETS; i++)
        nl += (size_t)snprintf(lat + nl, sizeof(lat) - nl, ", sum(lat_%02d)", i);
    int n = snprintf(buf, bufsz,
                     "SELECT to_char(date_trunc('%s', hour AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')%s,"
                     " sum(requests), sum(errors), sum(input_tokens), sum(output_tokens), sum(cached_input_tokens),"
                     " sum(cost_nanousd)%s FROM usage_rollups_hourly"
                     " WHERE ($1::uuid IS NULL OR tenant_id = $1::uuid) AND hour >= $2::timestamptz"
                     " AND hour < $3::timestamptz GROUP BY %s ORDER BY %s LIMIT %ld",
                     granularity, cols, lat, groups, groups, max_rows);
    return (n < 0 || (size_t)n >= bufsz) ? -1 : 0;
}
