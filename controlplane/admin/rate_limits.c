/*
 * Admin API: rate limits (one row per tenant / team / key scope): window_s, and per window at most
 * requests_per_window requests and tokens_per_window tokens, plus `concurrent` requests in flight.
 * A null limit is not enforced. Enforcement is the dataplane's (docs/admission.md).
 */
#include <stdio.h>
#include <string.h>
#include "../util.h"
#include "handlers.h"

#define MAX_WINDOW     86400
#define MAX_REQUESTS   1000000000000LL
#define MAX_TOKENS     1000000000000000LL
#define MAX_CONCURRENT 1000000

#define LIMIT_JSON                                                                                                     \
    "json_build_object('id', l.id, 'tenant_id', l.tenant_id, 'scope', l.scope, 'team_id', l.team_id, 'key_id',"        \
    " l.key_id, 'window_s', l.window_s, 'requests_per_window', l.requests_per_window, 'tokens_per_window',"            \
    " l.tokens_per_window, 'concurrent', l.concurrent, 'created_at', " CP_SQL_TS(                                      \
        "l.created_at") ", 'updated_at', " CP_SQL_TS("l.updated_at") ")"

/* A limit member as text in buf: "" absent, "null" null, else the integer. */
static int
limit_field(cp_admin_req_t *r, const char *field, long long min, long long max, char *buf, size_t bufsz)
{
    json_t *v = json_object_get(r->body, field);
    long long n;
    if (v == NULL || json_is_null(v)) {
        snprintf(buf, bufsz, "%s", v == NULL ? "" : "null");
        return 0;
    }
    if (cp_body_int(r, r->body, field, 0, min, max, &n) != 0)
        return -1;
    snprintf(buf, bufsz, "%lld", n);
    return 0;
}

static int
limits(cp_admin_req_t *r, char win[24], char req[24], char tok[24], char conc[24])
{
    if (limit_field(r, "window_s", 1, MAX_WINDOW, win, 24) != 0 ||
        limit_field(r, "requests_per_window", 0, MAX_REQUESTS, req, 24) != 0 ||
        limit_field(r, "tokens_per_window", 0, MAX_TOKENS, tok, 24) != 0 ||
        limit_field(r, "concurrent", 0, MAX_CONCURRENT, conc, 24) != 0)
        return -1;
    if (strcmp(win, "null") == 0) {
        cp_http_error(r, 400, "invalid_request_error", "'window_s' cannot be null");
        return -1;
    }
    return 0;
}

static const char *
nullable(const char *v)
{
    return v[0] == '\0' || strcmp(v, "null") == 0 ? NULL : v;
}

void
cp_limits_create(cp_admin_req_t *r)
{
    static const char *const allowed[] = {
        "tenant_id",         "scope",      "team_id", "key_id", "window_s", "requests_per_window",
        "tokens_per_window", "concurrent", NULL};
    const char *tenant, *scope;
    char win[24], req[24], tok[24], conc[24];
    if (cp_body_allow(r, r->body, "", allowed) != 0 || limits(r, win, req, tok, conc) != 0 ||
        cp_admin_tenant_for_create(r, &tenant) != 0 || cp_scope_fields(r, tenant, &scope) != 0)
        return;
    const char *params[] = {tenant,
                            scope,
                            json_string_value(json_object_get(r->body, "team_id")),
                            json_string_value(json_object_get(r->body, "key_id")),
                            win[0] != '\0' ? win : "60",
                            nullable(req),
                            nullable(tok),
                            nullable(conc)};
    cp_change_t c = {.what = "rate limit",
                     .action = "rate_limit.create",
                     .sql = "INSERT INTO rate_limits AS l (tenant_id, scope, team_id, key_id, window_s,"
                            " requests_per_window, tokens_per_window, concurrent) VALUES ($1::uuid, $2, $3::uuid,"
                            " $4::uuid, $5::int, $6::bigint, $7::bigint, $8::int) RETURNING " LIMIT_JSON "::text",
                     .nparams = 8,
                     .params = params,
                     .status = 201};
    cp_admin_change(r, &c);
}

void
cp_limits_list(cp_admin_req_t *r)
{
    static const char *const allowed[] = {"tenant_id", NULL};
    const char *tenant;
    int other;
    char tbuf[64];
    if (cp_query_allow(r, allowed) != 0 || cp_admin_tenant_filter(r, &tenant, &other, tbuf, sizeof(tbuf)) != 0)
        return;
    const char *params[] = {tenant, other ? "1" : "0"};
    cp_admin_list(r, "rate limit",
                  "SELECT json_build_object('data', coalesce(json_agg(" LIMIT_JSON
                  " ORDER BY l.created_at, l.id), '[]'::json))::text FROM rate_limits l"
                  " WHERE ($1::uuid IS NULL OR l.tenant_id = $1::uuid) AND $2 = '0'",
                  2, params);
}

void
cp_limits_get(cp_admin_req_t *r)
{
    cp_admin_get_one(r, "rate limit",
                     "SELECT " LIMIT_JSON "::text FROM rate_limits l WHERE l.id = $1::uuid"
                     " AND ($2::uuid IS NULL OR l.tenant_id = $2::uuid)");
}

void
cp_limits_update(cp_admin_req_t *r)
{
    static const char *const allowed[] = {"window_s", "requests_per_window", "tokens_per_window", "concurrent", NULL};
    char win[24], req[24], tok[24], conc[24];
    if (!cp_admin_path_id(r, "rate limit") || cp_body_allow(r, r->body, "", allowed) != 0 ||
        limits(r, win, req, tok, conc) != 0)
        return;
    /* Each of $3..$6: "" = unchanged, "null" = not enforced, else the value. */
    const char *params[] = {r->id, r->scope, win, req, tok, conc};
    cp_change_t c = {
        .what = "rate limit",
        .action = "rate_limit.update",
        .before_sql = "SELECT " LIMIT_JSON "::text FROM rate_limits l WHERE l.id = $1::uuid"
                      " AND ($2::uuid IS NULL OR l.tenant_id = $2::uuid) AND coalesce($3, $4, $5, $6, '') IS NOT NULL"
                      " FOR UPDATE",
        .sql =
            "UPDATE rate_limits AS l SET window_s = CASE WHEN $3 = '' THEN l.window_s ELSE $3::int END,"
            " requests_per_window = CASE $4 WHEN '' THEN l.requests_per_window WHEN 'null' THEN NULL"
            " ELSE $4::bigint END,"
            " tokens_per_window = CASE $5 WHEN '' THEN l.tokens_per_window WHEN 'null' THEN NULL ELSE $5::bigint END,"
            " concurrent = CASE $6 WHEN '' THEN l.concurrent WHEN 'null' THEN NULL ELSE $6::int END,"
            " updated_at = now()"
            " WHERE l.id = $1::uuid AND ($2::uuid IS NULL OR l.tenant_id = $2::uuid) RETURNING " LIMIT_JSON "::text",
        .nparams = 6,
        .params = params,
        .status = 200};
    cp_admin_change(r, &c);
}

void
cp_limits_delete(cp_admin_req_t *r)
{
    if (!cp_admin_path_id(r, "rate limit"))
        return;
    const char *params[] = {r->id, r->scope};
    cp_change_t c = {.what = "rate limit",
                     .action = "rate_limit.delete",
                     .before_sql = "SELECT " LIMIT_JSON "::text FROM rate_limits l WHERE l.id = $1::uuid"
                                   " AND ($2::uuid IS NULL OR l.tenant_id = $2::uuid) FOR UPDATE",
                     .sql = "DELETE FROM rate_limits l WHERE l.id = $1::uuid AND ($2::uuid IS NULL OR l.tenant_id ="
                            " $2::uuid) RETURNING l.id::text",
                     .nparams = 2,
                     .params = params,
                     .status = 204};
    cp_admin_change(r, &c);
}
