/*
 * Admin API: teams, the level between a tenant and its keys. A team belongs to one tenant; its keys
 * must be of the same tenant (a composite foreign key in migrations/0003). Deleting a team that still
 * has keys is refused (409); its budgets and rate limits go with it.
 */
#include <stdlib.h>
#include <string.h>
#include "../util.h"
#include "handlers.h"

#define TEAM_JSON                                                                                                      \
    "json_build_object('id', m.id, 'tenant_id', m.tenant_id, 'name', m.name, 'metadata', m.metadata,"                  \
    " 'created_at', " CP_SQL_TS("m.created_at") ")"

#define MAX_METADATA 16384

static const char *const CREATE_FIELDS[] = {"tenant_id", "name", "metadata", NULL};
static const char *const UPDATE_FIELDS[] = {"name", "metadata", NULL};

static int
team_fields(cp_admin_req_t *r, int creating)
{
    const char *name;
    json_t *meta;
    if (cp_body_allow(r, r->body, "", creating ? CREATE_FIELDS : UPDATE_FIELDS) != 0 ||
        cp_body_string(r, "name", creating, 200, &name) != 0 || cp_body_object(r, "metadata", MAX_METADATA, &meta) != 0)
        return -1;
    if (!creating && json_is_null(json_object_get(r->body, "name"))) {
        cp_http_error(r, 400, "invalid_request_error", "'name' cannot be null");
        return -1;
    }
    return 0;
}

void
cp_teams_create(cp_admin_req_t *r)
{
    const char *tenant;
    if (team_fields(r, 1) != 0 || cp_admin_tenant_for_create(r, &tenant) != 0)
        return;
    char *body = cp_body_text(r, 1);
    const char *params[] = {tenant, body};
    cp_change_t c = {.what = "team",
                     .action = "team.create",
                     .sql = "INSERT INTO teams AS m (tenant_id, name, metadata)"
                            " SELECT $1::uuid, b->>'name', coalesce(b->'metadata', '{}'::jsonb)"
                            " FROM (SELECT $2::jsonb AS b) x RETURNING " TEAM_JSON "::text",
                     .nparams = 2,
                     .params = params,
                     .status = 201};
    if (body == NULL)
        cp_http_error(r, 500, "server_error", "out of memory");
    else
        cp_admin_change(r, &c);
    free(body);
}

void
cp_teams_list(cp_admin_req_t *r)
{
    static const char *const allowed[] = {"tenant_id", NULL};
    const char *tenant;
    int other;
    char buf[64];
    if (cp_query_allow(r, allowed) != 0 || cp_admin_tenant_filter(r, &tenant, &other, buf, sizeof(buf)) != 0)
        return;
    const char *params[] = {tenant, other ? "1" : "0"};
    cp_admin_list(r, "team",
                  "SELECT json_build_object('data', coalesce(json_agg(" TEAM_JSON
                  " ORDER BY m.created_at, m.id), '[]'::json))::text FROM teams m"
                  " WHERE ($1::uuid IS NULL OR m.tenant_id = $1::uuid) AND $2 = '0'",
                  2, params);
}

void
cp_teams_get(cp_admin_req_t *r)
{
    cp_admin_get_one(r, "team",
                     "SELECT " TEAM_JSON "::text FROM teams m WHERE m.id = $1::uuid"
                     " AND ($2::uuid IS NULL OR m.tenant_id = $2::uuid)");
}

void
cp_teams_update(cp_admin_req_t *r)
{
    if (!cp_admin_path_id(r, "team") || team_fields(r, 0) != 0)
        return;
    char *body = cp_body_text(r, 0);
    const char *params[] = {r->id, r->scope, body};
    cp_change_t c = {.what = "team",
                     .action = "team.update",
                     .before_sql = "SELECT " TEAM_JSON "::text FROM teams m WHERE m.id = $1::uuid"
                                   " AND ($2::uuid IS NULL OR m.tenant_id = $2::uuid) AND $3::text IS NOT NULL"
                                   " FOR UPDATE",
                     .sql = "UPDATE teams AS m SET name = CASE WHEN b ? 'name' THEN b->>'name' ELSE m.name END,"
                            " metadata = CASE WHEN b ? 'metadata' THEN coalesce(nullif(b->'metadata', 'null'),"
                            " '{}'::jsonb) ELSE m.metadata END"
                            " FROM (SELECT $3::jsonb AS b) x WHERE m.id = $1::uuid"
                            " AND ($2::uuid IS NULL OR m.tenant_id = $2::uuid) RETURNING " TEAM_JSON "::text",
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
cp_teams_delete(cp_admin_req_t *r)
{
    if (!cp_admin_path_id(r, "team"))
        return;
    const char *params[] = {r->id, r->scope};
    PGresult *res;
    /* Keys still in the team would make the DELETE fail on the foreign key: say why, with 409. */
    if (cp_admin_query(r, &res, "team",
                       "SELECT EXISTS (SELECT 1 FROM virtual_keys k JOIN teams m ON m.id = k.team_id"
                       " WHERE m.id = $1::uuid AND ($2::uuid IS NULL OR m.tenant_id = $2::uuid))",
                       2, params) != 0)
        return;
    int busy = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (busy) {
        cp_http_error(r, 409, "conflict_error", "the team still has keys; move or delete them first");
        return;
    }
    cp_change_t c = {.what = "team",
                     .action = "team.delete",
                     .before_sql = "SELECT " TEAM_JSON "::text FROM teams m WHERE m.id = $1::uuid"
                                   " AND ($2::uuid IS NULL OR m.tenant_id = $2::uuid) FOR UPDATE",
                     .sql = "DELETE FROM teams m WHERE m.id = $1::uuid AND ($2::uuid IS NULL OR m.tenant_id = $2::uuid)"
                            " RETURNING m.id::text",
                     .nparams = 2,
                     .params = params,
                     .status = 204};
    cp_admin_change(r, &c);
}
