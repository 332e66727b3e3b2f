/*
 * Admin API: the audit log, newest first, filtered and paginated by id (`cursor` = the next_cursor
 * of the previous page: rows with a smaller id). A tenant token sees its tenant's rows only; rows of
 * global objects (providers, routes, prices) have no tenant and are seen by the global token only.
 */
#include <stdio.h>
#include <stdlib.h>
#include "../util.h"
#include "handlers.h"

#define MAX_LIMIT 1000

void
cp_audit_list(cp_admin_req_t *r)
{
    static const char *const allowed[] = {"tenant_id",   "from",  "to",     "action", "target_id",
                                          "target_type", "limit", "cursor", NULL};
    const char *tenant;
    int other, has_from, has_to, has_action, has_target, has_type, has_limit, has_cursor;
    char tbuf[64], from[80], to[80], action[64], target[80], type[32], limit[16], cursor[24];
    if (cp_query_allow(r, allowed) != 0 || cp_admin_tenant_filter(r, &tenant, &other, tbuf, sizeof(tbuf)) != 0 ||
        cp_query_string(r, "from", from, sizeof(from), &has_from) != 0 ||
        cp_query_string(r, "to", to, sizeof(to), &has_to) != 0 ||
        cp_query_string(r, "action", action, sizeof(action), &has_action) != 0 ||
        cp_query_string(r, "target_id", target, sizeof(target), &has_target) != 0 ||
        cp_query_string(r, "target_type", type, sizeof(type), &has_type) != 0 ||
        cp_query_string(r, "limit", limit, sizeof(limit), &has_limit) != 0 ||
        cp_query_string(r, "cursor", cursor, sizeof(cursor), &has_cursor) != 0)
        return;
    char *end;
    long lim = has_limit ? strtol(limit, &end, 10) : 100;
    if (has_limit && (*end != '\0' || limit[0] == '\0' || lim < 1 || lim > MAX_LIMIT)) {
        cp_http_error(r, 400, "invalid_request_error", "'limit' must be an integer from 1 to %d", MAX_LIMIT);
        return;
    }
    long long cur = has_cursor ? strtoll(cursor, &end, 10) : 0;
    if (has_cursor && (*end != '\0' || cursor[0] == '\0' || cur < 1)) {
        cp_http_error(r, 400, "invalid_request_error", "'cursor' must be a next_cursor from a previous page");
        return;
    }
    char lim_s[16];
    snprintf(lim_s, sizeof(lim_s), "%ld", lim);
    /* A tenant token asking for another tenant: the same empty page as for a tenant with no changes. */
    const char *params[] = {tenant,
                            other ? "1" : "0",
                            has_from ? from : NULL,
                            has_to ? to : NULL,
                            has_action ? action : NULL,
                            has_target ? target : NULL,
                            has_type ? type : NULL,
                            has_cursor ? cursor : NULL,
                            lim_s};
    cp_admin_list(
        r, "audit query",
        "SELECT json_build_object('data', coalesce(json_agg(j ORDER BY id DESC), '[]'::json),"
        " 'next_cursor', CASE WHEN count(*) = $9::int THEN min(id)::text END)::text"
        " FROM (SELECT a.id, json_build_object('id', a.id::text, 'at', " CP_SQL_TS(
            "a.at") ", 'actor', a.actor, 'tenant_id', a.tenant_id, 'action', a.action,"
                    " 'target_type', a.target_type, 'target_id', a.target_id, 'before', a.before,"
                    " 'after', a.after, 'request_id', a.request_id) AS j FROM audit_log a"
                    " WHERE ($1::uuid IS NULL OR a.tenant_id = $1::uuid) AND $2 = '0'"
                    " AND ($3::timestamptz IS NULL OR a.at >= $3::timestamptz)"
                    " AND ($4::timestamptz IS NULL OR a.at < $4::timestamptz)"
                    " AND ($5::text IS NULL OR a.action = $5) AND ($6::text IS NULL OR a.target_id = $6)"
                    " AND ($7::text IS NULL OR a.target_type = $7) AND ($8::bigint IS NULL OR a.id < $8::bigint)"
                    " ORDER BY a.id DESC LIMIT $9::int) x",
        9, params);
}
