/*
 * Admin API: budgets, and the scope checks budgets and rate limits share.
 *
 * Amounts are USD in the API (a JSON number or a decimal string) and integer nano-USD in the database;
 * the conversion is exact (cp_usd_from_json: no float rounding) and refuses sub-nano fractions rather
 * than rounding them. Answers carry both forms: "hard_usd": "12.5" and "hard_nanousd": 12500000000.
 * GET adds the current period ([start, end) calendar-aligned in the tenant's time zone,
 * tollgate_period_bounds()) and the spend in it, from the hourly rollups.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../util.h"
#include "handlers.h"

#define MAX_MODEL_LEN 200

/* Exact: a multiplication by 10^-9 keeps every digit (a numeric division would round to ~16 digits). */
#define USD(col) "trim_scale(" col "::numeric * 0.000000001)::text"

#define BUDGET_JSON                                                                                                    \
    "json_build_object('id', g.id, 'tenant_id', g.tenant_id, 'scope', g.scope, 'team_id', g.team_id, 'key_id',"        \
    " g.key_id, 'model', g.model, 'period', g.period, 'hard_usd', " USD(                                               \
        "g.hard_nanousd") ", 'hard_nanousd',"                                                                          \
                          " g.hard_nanousd, 'soft_usd', " USD(                                                         \
                              "g.soft_nanousd") ", 'soft_nanousd', g.soft_nanousd,"                                    \
                                                " 'created_at', " CP_SQL_TS(                                           \
                                                    "g.created_at") ", 'updated_at', " CP_SQL_TS("g.updated_at") ")"

/* The budget with its current period and spend (rollup hours that start inside the period). */
#define BUDGET_FULL_JSON                                                                                                                                       \
    "(" BUDGET_JSON "::jsonb || jsonb_build_object('current_period', (SELECT jsonb_build_object('start', " CP_SQL_TS("pb.period_start") ", 'end', " CP_SQL_TS( \
        "pb.period_end") ", 'time_zone', t.time_zone, 'spend_usd', " USD("s.spend") ", 'spend_nanousd', s.spend) "                                             \
                                                                                    "FROM tenants t CROSS JOIN "                                               \
                                                                                    "LATERAL "                                                                 \
                                                                                    "tollgate_period_bounds(g.period,"                                         \
                                                                                    " t.time_zone, now()) pb CROSS "                                           \
                                                                                    "JOIN LATERAL (SELECT "                                                    \
                                                                                    "coalesce(sum(u.cost_nanousd), "                                           \
                                                                                    "0) AS spend"                                                              \
                                                                                    " FROM usage_rollups_hourly u "                                            \
                                                                                    "WHERE u.tenant_id = g.tenant_id"                                          \
                                                                                    " AND (g.team_id IS NULL OR "                                              \
                                                                                    "u.team_id = g.team_id) AND "                                              \
                                                                                    "(g.key_id IS NULL OR u.key_id = "                                         \
                                                                                    "g.key_id)"                                                                \
                                                                                    " AND (g.model IS NULL OR "                                                \
                                                                                    "u.model = g.model)"                                                       \
                                                                                    " AND (pb.period_start IS NULL "                                           \
                                                                                    "OR u.hour >= pb.period_start)"                                            \
                                                                                    " AND (pb.period_end IS NULL OR "                                          \
                                                                                    "u.hour < pb.period_end)) s "                                              \
                                                                                    "WHERE t.id = g.tenant_id)))"

int
cp_scope_fields(cp_admin_req_t *r, const char *tenant, const char **ret_scope)
{
    const char *scope, *team, *key;
    if (cp_body_string(r, "scope", 1, 16, &scope) != 0 || cp_body_uuid(r, "team_id", 0, &team) != 0 ||
        cp_body_uuid(r, "key_id", 0, &key) != 0)
        return -1;
    int is_tenant = strcmp(scope, "tenant") == 0, is_team = strcmp(scope, "team") == 0,
        is_key = strcmp(scope, "key") == 0;
    if (!is_tenant && !is_team && !is_key) {
        cp_http_error(r, 400, "invalid_request_error", "'scope' must be tenant, team or key");
        return -1;
    }
    if ((is_team) != (team != NULL) || (is_key) != (key != NULL)) {
        cp_http_error(r, 400, "invalid_request_error",
                      "scope 'team' needs 'team_id', scope 'key' needs 'key_id', and neither is allowed otherwise");
        return -1;
    }
    if (team != NULL || key != NULL) {
        /* The team or key must be of this tenant: another tenant's and a missing one answer the same. */
        const char *params[] = {tenant, team, key};
        PGresult *res;
        if (cp_admin_query(r, &res, "scope",
                           "SELECT ($2::uuid IS NULL OR EXISTS (SELECT 1 FROM teams WHERE id = $2::uuid AND tenant_id ="
                           " $1::uuid)) AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM virtual_keys WHERE id = $3::uuid"
                           " AND tenant_id = $1::uuid))",
                           3, params) != 0)
            return -1;
        int ok = PQgetvalue(res, 0, 0)[0] == 't';
        PQclear(res);
        if (!ok) {
            cp_http_error(r, 400, "invalid_request_error", "'%s' does not name a %s of this tenant",
                          team != NULL ? "team_id" : "key_id", team != NULL ? "team" : "key");
            return -1;
        }
    }
    *ret_scope = scope;
    return 0;
}

/* Converts a USD member of the body to nano-USD text in buf; "" when absent, "null" when null. */
static int
usd_field(cp_admin_req_t *r, const char *field, int required, char *buf, size_t bufsz)
{
    json_t *v = json_object_get(r->body, field);
    int64_t nano;
    if (v == NULL || json_is_null(v)) {
        if (required) {
            cp_http_error(r, 400, "invalid_request_error", "'%s' is required", field);
            return -1;
        }
        snprintf(buf, bufsz, "%s", v == NULL ? "" : "null");
        return 0;
    }
    if (cp_usd_from_json(v, &nano) != 0) {
        cp_http_error(r, 400, "invalid_request_error",
                      "'%s' must be a non-negative USD amount up to 1000000000 with at most 9 decimal places, as a"
                      " number or a decimal string such as \"12.50\"",
                      field);
        return -1;
    }
    snprintf(buf, bufsz, "%lld", (long long)nano);
    return 0;
}

static int
period_field(cp_admin_req_t *r, int required)
{
    const char *p;
    if (cp_body_string(r, "period", required, 16, &p) != 0)
        return -1;
    if (p != NULL && strcmp(p, "hourly") != 0 && strcmp(p, "daily") != 0 && strcmp(p, "weekly") != 0 &&
        strcmp(p, "monthly") != 0 && strcmp(p, "total") != 0) {
        cp_http_error(r, 400, "invalid_request_error", "'period' must be hourly, daily, weekly, monthly or total");
        return -1;
    }
    if (!required && json_is_null(json_object_get(r->body, "period"))) {
        cp_http_error(r, 400, "invalid_request_error", "'period' cannot be null");
        return -1;
    }
    return 0;
}

void
cp_budgets_create(cp_admin_req_t *r)
{
    static const char *const allowed[] = {"tenant_id", "scope",    "team_id",  "key_id", "model",
                                          "period",    "hard_usd", "soft_usd", NULL};
    const char *tenant, *scope, *model;
    char hard[32], soft[32];
    if (cp_body_allow(r, r->body, "", allowed) != 0 || cp_body_string(r, "model", 0, MAX_MODEL_LEN, &model) != 0 ||
        period_field(r, 1) != 0 || usd_field(r, "hard_usd", 1, hard, sizeof(hard)) != 0 ||
        usd_field(r, "soft_usd", 0, soft, sizeof(soft)) != 0 || cp_admin_tenant_for_create(r, &tenant) != 0 ||
        cp_scope_fields(r, tenant, &scope) != 0)
        return;
    if (soft[0] != '\0' && strcmp(soft, "null") != 0 && strtoll(soft, NULL, 10) > strtoll(hard, NULL, 10)) {
        cp_http_error(r, 400, "invalid_request_error", "'soft_usd' must not exceed 'hard_usd'");
        return;
    }
    const char *params[] = {tenant,
                            scope,
                            json_string_value(json_object_get(r->body, "team_id")),
                            json_string_value(json_object_get(r->body, "key_id")),
                            model,
                            json_string_value(json_object_get(r->body, "period")),
                            hard,
                            soft[0] != '\0' && strcmp(soft, "null") != 0 ? soft : NULL};
    cp_change_t c = {.what = "budget",
                     .action = "budget.create",
                     .sql = "INSERT INTO budgets AS g (tenant_id, scope, team_id, key_id, model, period, hard_nanousd,"
                            " soft_nanousd) VALUES ($1::uuid, $2, $3::uuid, $4::uuid, $5, $6, $7::bigint, $8::bigint)"
                            " RETURNING " BUDGET_JSON "::text",
                     .nparams = 8,
                     .params = params,
                     .status = 201};
    cp_admin_change(r, &c);
}

void
cp_budgets_list(cp_admin_req_t *r)
{
    static const char *const allowed[] = {"tenant_id", "team_id", "key_id", NULL};
    const char *tenant;
    int other, has_team, has_key;
    char tbuf[64], team[64], key[64];
    if (cp_query_allow(r, allowed) != 0 || cp_admin_tenant_filter(r, &tenant, &other, tbuf, sizeof(tbuf)) != 0 ||
        cp_query_string(r, "team_id", team, sizeof(team), &has_team) != 0 ||
        cp_query_string(r, "key_id", key, sizeof(key), &has_key) != 0)
        return;
    if ((has_team && !cp_uuid_valid(team)) || (has_key && !cp_uuid_valid(key))) {
        cp_http_error(r, 400, "invalid_request_error", "'team_id' and 'key_id' must be UUIDs");
        return;
    }
    const char *params[] = {tenant, other ? "1" : "0", has_team ? team : NULL, has_key ? key : NULL};
    cp_admin_list(r, "budget",
                  "SELECT json_build_object('data', coalesce(json_agg(" BUDGET_FULL_JSON
                  " ORDER BY g.created_at, g.id), '[]'::json))::text FROM budgets g"
                  " WHERE ($1::uuid IS NULL OR g.tenant_id = $1::uuid) AND $2 = '0'"
                  " AND ($3::uuid IS NULL OR g.team_id = $3::uuid) AND ($4::uuid IS NULL OR g.key_id = $4::uuid)",
                  4, params);
}

void
cp_budgets_get(cp_admin_req_t *r)
{
    cp_admin_get_one(r, "budget",
                     "SELECT " BUDGET_FULL_JSON "::text FROM budgets g WHERE g.id = $1::uuid"
                     " AND ($2::uuid IS NULL OR g.tenant_id = $2::uuid)");
}

void
cp_budgets_update(cp_admin_req_t *r)
{
    static const char *const allowed[] = {"model", "period", "hard_usd", "soft_usd", NULL};
    const char *model;
    char hard[32], soft[32];
    if (!cp_admin_path_id(r, "budget") || cp_body_allow(r, r->body, "", allowed) != 0 ||
        cp_body_string(r, "model", 0, MAX_MODEL_LEN, &model) != 0 || period_field(r, 0) != 0 ||
        usd_field(r, "hard_usd", 0, hard, sizeof(hard)) != 0 || usd_field(r, "soft_usd", 0, soft, sizeof(soft)) != 0)
        return;
    if (strcmp(hard, "null") == 0) {
        cp_http_error(r, 400, "invalid_request_error", "'hard_usd' cannot be null");
        return;
    }
    /* $4 hard: "" = unchanged; $5 soft: "" = unchanged, "null" = none; $6 model member present. */
    int has_model = json_object_get(r->body, "model") != NULL;
    const char *params[] = {r->id, r->scope, json_string_value(json_object_get(r->body, "period")),
                            hard,  soft,     has_model ? "1" : "0",
                            model};
    cp_change_t c = {
        .what = "budget",
        .action = "budget.update",
        .before_sql =
            "SELECT " BUDGET_JSON "::text FROM budgets g WHERE g.id = $1::uuid"
            " AND ($2::uuid IS NULL OR g.tenant_id = $2::uuid) AND coalesce($3, $4, $5, $6, $7, '') IS NOT NULL"
            " FOR UPDATE",
        .sql =
            "UPDATE budgets AS g SET period = coalesce($3, g.period),"
            " hard_nanousd = CASE WHEN $4 = '' THEN g.hard_nanousd ELSE $4::bigint END,"
            " soft_nanousd = CASE $5 WHEN '' THEN g.soft_nanousd WHEN 'null' THEN NULL ELSE $5::bigint END,"
            " model = CASE WHEN $6 = '1' THEN $7 ELSE g.model END, updated_at = now()"
            " WHERE g.id = $1::uuid AND ($2::uuid IS NULL OR g.tenant_id = $2::uuid) RETURNING " BUDGET_JSON "::text",
        .nparams = 7,
        .params = params,
        .status = 200};
    cp_admin_change(r, &c);
}

void
cp_budgets_delete(cp_admin_req_t *r)
{
    if (!cp_admin_path_id(r, "budget"))
        return;
    const char *params[] = {r->id, r->scope};
    cp_change_t c = {.what = "budget",
                     .action = "budget.delete",
                     .before_sql = "SELECT " BUDGET_JSON "::text FROM budgets g WHERE g.id = $1::uuid"
                                   " AND ($2::uuid IS NULL OR g.tenant_id = $2::uuid) FOR UPDATE",
                     .sql = "DELETE FROM budgets g WHERE g.id = $1::uuid AND ($2::uuid IS NULL OR g.tenant_id ="
                            " $2::uuid) RETURNING g.id::text",
                     .nparams = 2,
                     .params = params,
                     .status = 204};
    cp_admin_change(r, &c);
}
