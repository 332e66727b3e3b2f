/*
 * Admin API: tenants. The JSON of a tenant is built by PostgreSQL (json_build_object) so that the
 * column list, time formatting and the response shape live in one SQL fragment. Creating and deleting
 * tenants needs the global token; a tenant token sees and updates its own tenant only.
 */
#include <stdlib.h>
#include "../util.h"
#include "handlers.h"

#define TENANT_JSON                                                                                                    \
    "json_build_object('id', t.id, 'name', t.name, 'time_zone', t.time_zone, 'log_content', t.log_content,"            \
    " 'created_at', " CP_SQL_TS("t.created_at") ")"

static const char *const CREATE_FIELDS[] = {"name", "time_zone", "log_content", NULL};
static const char *const UPDATE_FIELDS[] = {"name", "time_zone", "log_content", NULL};

/* Validates the body's fields (name required when creating); time_zone must be in pg_timezone_names. */
static int
tenant_fields(cp_admin_req_t *r, int creating)
{
    const char *name, *tz;
    int log_content;
    if (cp_body_allow(r, r->body, "", creating ? CREATE_FIELDS : UPDATE_FIELDS) != 0 ||
        cp_body_string(r, "name", creating, 200, &name) != 0 || cp_body_string(r, "time_zone", 0, 64, &tz) != 0 ||
        cp_body_bool(r, "log_content", &log_content) != 0)
        return -1;
    if (!creating && json_is_null(json_object_get(r->body, "name"))) {
        cp_http_error(r, 400, "invalid_request_error", "'name' cannot be null");
        return -1;
    }
    if (tz != NULL) {
        const char *params[] = {tz};
        PGresult *res;
        if (cp_admin_query(r, &res, "time zone", "SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)", 1,
                           params) != 0)
            return -1;
        int ok = PQgetvalue(res, 0, 0)[0] == 't';
        PQclear(res);
        if (!ok) {
            cp_http_error(r, 400, "invalid_request_error",
                          "'time_zone' must be an IANA time zone name such as 'Europe/Paris' or 'UTC'");
            return -1;
        }
    }
    return 0;
}

void
cp_tenants_create(cp_admin_req_t *r)
{
    if (tenant_fields(r, 1) != 0)
        return;
    char *body = cp_body_text(r, 1);
    const char *params[] = {body};
    cp_change_t c = {.what = "tenant",
                     .action = "tenant.create",
                     .sql =
                         "INSERT INTO tenants AS t (name, time_zone, log_content)"
                         " SELECT b->>'name', coalesce(b->>'time_zone', 'UTC'), coalesce((b->'log_content')::boolean,"
                         " false) FROM (SELECT $1::jsonb AS b) x RETURNING " TENANT_JSON "::text",
                     .nparams = 1,
                     .params = params,
                     .status = 201};
    if (body == NULL)
        cp_http_error(r, 500, "server_error", "out of memory");
    else
        cp_admin_change(r, &c);
    free(body);
}

void
cp_tenants_list(cp_admin_req_t *r)
{
    static const char *const allowed[] = {NULL};
    if (cp_query_allow(r, allowed) != 0)
        return;
    const char *params[] = {r->scope};
    cp_admin_list(r, "tenant",
                  "SELECT json_build_object('data', coalesce(json_agg(" TENANT_JSON
                  " ORDER BY t.created_at, t.id), '[]'::json))::text FROM tenants t"
                  " WHERE $1::uuid IS NULL OR t.id = $1::uuid",
                  1, params);
}

void
cp_tenants_get(cp_admin_req_t *r)
{
    cp_admin_get_one(r, "tenant",
                     "SELECT " TENANT_JSON "::text FROM tenants t WHERE t.id = $1::uuid"
                     " AND ($2::uuid IS NULL OR t.id = $2::uuid)");
}

void
cp_tenants_update(cp_admin_req_t *r)
{
    if (!cp_admin_path_id(r, "tenant") || tenant_fields(r, 0) != 0)
        return;
    char *body = cp_body_text(r, 0);
    const char *params[] = {r->id, r->scope, body};
    cp_change_t c = {
        .what = "tenant",
        .action = "tenant.update",
        .before_sql = "SELECT " TENANT_JSON "::text FROM tenants t WHERE t.id = $1::uuid"
                      " AND ($2::uuid IS NULL OR t.id = $2::uuid) AND $3::text IS NOT NULL FOR UPDATE",
        .sql = "UPDATE tenants AS t SET"
               " name = CASE WHEN b ? 'name' THEN b->>'name' ELSE t.name END,"
               " time_zone = CASE WHEN b ? 'time_zone' AND b->'time_zone' <> 'null' THEN b->>'time_zone'"
               " ELSE t.time_zone END,"
               " log_content = CASE WHEN b ? 'log_content' AND b->'log_content' <> 'null'"
               " THEN (b->'log_content')::boolean ELSE t.log_content END"
               " FROM (SELECT $3::jsonb AS b) x WHERE t.id = $1::uuid AND ($2::uuid IS NULL OR t.id = $2::uuid)"
               " RETURNING " TENANT_JSON "::text",
        .nparams = 3,
        .params = params,
        .status = 200};
    if (body == NULL)
        cp_http_error(r, 500, "server_error", "out of memory");
    else
        cp_admin_change(r, &c);
    free(body);
}

void
cp_tenants_delete(cp_admin_req_t *r)
{
    if (!cp_admin_path_id(r, "tenant"))
        return;
    const char *params[] = {r->id};
    cp_change_t c = {.what = "tenant",
                     .action = "tenant.delete",
                     .before_sql = "SELECT " TENANT_JSON "::text FROM tenants t WHERE t.id = $1::uuid FOR UPDATE",
                     .sql = "DELETE FROM tenants t WHERE t.id = $1::uuid RETURNING t.id::text",
                     .nparams = 1,
                     .params = params,
                     .status = 204};
    cp_admin_change(r, &c);
}
