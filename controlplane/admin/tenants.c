/*
 * Admin API: tenants. The JSON of a tenant is built by PostgreSQL (json_build_object) so that the
 * column list, time formatting and the response shape live in one SQL fragment.
 */
#include "../util.h"
#include "handlers.h"

#define TENANT_JSON "json_build_object('id', t.id, 'name', t.name, 'created_at', " CP_SQL_TS("t.created_at") ")"

void
cp_tenants_create(cp_admin_req_t *r)
{
    const char *name;
    if (cp_body_string(r, "name", 1, 200, &name) != 0)
        return;
    const char *params[] = {name};
    PGresult *res;
    if (cp_admin_query(r, &res, "tenant", "INSERT INTO tenants AS t (name) VALUES ($1) RETURNING " TENANT_JSON "::text",
                       1, params) != 0)
        return;
    cp_http_json_text(r, 201, PQgetvalue(res, 0, 0));
    PQclear(res);
}

void
cp_tenants_list(cp_admin_req_t *r)
{
    PGresult *res;
    if (cp_admin_query(r, &res, "tenant",
                       "SELECT json_build_object('data', coalesce(json_agg(" TENANT_JSON
                       " ORDER BY t.created_at, t.id), '[]'::json))::text FROM tenants t",
                       0, NULL) != 0)
        return;
    cp_http_json_text(r, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}

void
cp_tenants_get(cp_admin_req_t *r)
{
    if (!cp_uuid_valid(r->id)) {
        cp_http_error(r, 404, "not_found_error", "tenant not found");
        return;
    }
    const char *params[] = {r->id};
    PGresult *res;
    if (cp_admin_query(r, &res, "tenant", "SELECT " TENANT_JSON "::text FROM tenants t WHERE t.id = $1", 1, params) !=
        0)
        return;
    if (PQntuples(res) == 0)
        cp_http_error(r, 404, "not_found_error", "tenant not found");
    else
        cp_http_json_text(r, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}
