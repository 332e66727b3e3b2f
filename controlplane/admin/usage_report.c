/*
 * Admin API: the usage report of one tenant over [from, to), grouped by any subset of key, model and
 * day (UTC). The range is resolved once by PostgreSQL (defaults: the last 30 days), echoed back in
 * RFC 3339, and passed to the grouped query (usage_query.c) as exact timestamps.
 */
#include <stdio.h>
#include <string.h>
#include "../util.h"
#include "handlers.h"
#include "usage_query.h"

void
cp_usage_report(cp_admin_req_t *r)
{
    char tenant[64], from[80], to[80], group_by[64];
    int has_tenant, has_from, has_to, has_group;
    if (cp_query_string(r, "tenant_id", tenant, sizeof(tenant), &has_tenant) != 0 ||
        cp_query_string(r, "from", from, sizeof(from), &has_from) != 0 ||
        cp_query_string(r, "to", to, sizeof(to), &has_to) != 0 ||
        cp_query_string(r, "group_by", group_by, sizeof(group_by), &has_group) != 0)
        return;
    if (!has_tenant || !cp_uuid_valid(tenant)) {
        cp_http_error(r, 400, "invalid_request_error", "'tenant_id' (a UUID) is required");
        return;
    }
    unsigned mask = CP_USAGE_BY_KEY | CP_USAGE_BY_MODEL | CP_USAGE_BY_DAY;
    if (has_group && cp_usage_parse_group_by(group_by, &mask) != 0) {
        cp_http_error(r, 400, "invalid_request_error", "'group_by' must be a comma-separated subset of key,model,day");
        return;
    }

    /* Resolve the range: exact values for the query, RFC 3339 for the answer. */
    const char *rp[] = {has_from && from[0] ? from : NULL, has_to && to[0] ? to : NULL};
    PGresult *res;
    if (cp_admin_query(r, &res, "time range",
                       "SELECT f::text, t::text, " CP_SQL_TS("f") ", " CP_SQL_TS(
                           "t") " FROM (SELECT coalesce($1::timestamptz, now() - interval '30 days') AS f,"
                                " coalesce($2::timestamptz, now()) AS t) x",
                       2, rp) != 0)
        return;
    char f_exact[64], t_exact[64];
    snprintf(f_exact, sizeof(f_exact), "%s", PQgetvalue(res, 0, 0));
    snprintf(t_exact, sizeof(t_exact), "%s", PQgetvalue(res, 0, 1));
    json_t *doc = json_pack("{s:s,s:s,s:[]}", "from", PQgetvalue(res, 0, 2), "to", PQgetvalue(res, 0, 3), "group_by");
    PQclear(res);
    if (doc == NULL) {
        cp_http_error(r, 500, "server_error", "out of memory");
        return;
    }
    json_t *groups = json_object_get(doc, "group_by");
    if (mask & CP_USAGE_BY_KEY)
        json_array_append_new(groups, json_string("key"));
    if (mask & CP_USAGE_BY_MODEL)
        json_array_append_new(groups, json_string("model"));
    if (mask & CP_USAGE_BY_DAY)
        json_array_append_new(groups, json_string("day"));

    char sql[2048];
    cp_usage_build_sql(mask, sql, sizeof(sql));
    const char *qp[] = {tenant, f_exact, t_exact};
    if (cp_admin_query(r, &res, "usage report", sql, 3, qp) != 0) {
        json_decref(doc);
        return;
    }
    json_t *data = json_array();
    for (int i = 0; i < PQntuples(res); i++) {
        json_t *row = json_loads(PQgetvalue(res, i, 0), JSON_DECODE_ANY, NULL);
        if (row != NULL)
            json_array_append_new(data, row);
    }
    PQclear(res);
    json_object_set_new(doc, "data", data);
    cp_http_json(r, 200, doc);
}
