/*
 * Admin API: routes. A route maps a public model name to an ordered list of targets (provider account
 * + upstream model + weight); `ordinal` keeps the order given at creation, which is the order the
 * snapshot carries and the dataplane tries them in. The route and its targets are one transaction.
 */
#include <stdio.h>
#include <string.h>
#include "../util.h"
#include "handlers.h"

#define MAX_TARGETS 64
#define MAX_WEIGHT  1000000

#define ROUTE_JSON                                                                                                     \
    "json_build_object('id', r.id, 'name', r.name,"                                                                    \
    " 'targets', (SELECT coalesce(json_agg(json_build_object('provider_id', t.provider_id,"                            \
    " 'model', t.upstream_model, 'weight', t.weight) ORDER BY t.ordinal), '[]'::json)"                                 \
    " FROM route_targets t WHERE t.route_id = r.id), 'created_at', " CP_SQL_TS("r.created_at") ")"

static int
valid_target(json_t *t)
{
    json_t *p = json_object_get(t, "provider_id"), *m = json_object_get(t, "model");
    return json_is_object(t) && json_is_string(p) && cp_uuid_valid(json_string_value(p)) && json_is_string(m) &&
           json_string_length(m) > 0 && json_string_length(m) <= 200 &&
           strlen(json_string_value(m)) == json_string_length(m);
}

void
cp_routes_create(cp_admin_req_t *r)
{
    static const char *const allowed[] = {"name", "targets", NULL};
    static const char *const target_allowed[] = {"provider_id", "model", "weight", NULL};
    const char *name;
    if (cp_body_allow(r, r->body, "", allowed) != 0 || cp_body_string(r, "name", 1, 200, &name) != 0)
        return;
    json_t *targets = json_object_get(r->body, "targets");
    if (!json_is_array(targets) || json_array_size(targets) == 0 || json_array_size(targets) > MAX_TARGETS) {
        cp_http_error(r, 400, "invalid_request_error", "'targets' must be an array of 1 to %d targets", MAX_TARGETS);
        return;
    }
    size_t i;
    json_t *t;
    json_array_foreach(targets, i, t)
    {
        long long w;
        char where[32];
        snprintf(where, sizeof(where), "targets[%zu].", i);
        if (json_is_object(t) && cp_body_allow(r, t, where, target_allowed) != 0)
            return;
        if (!valid_target(t)) {
            cp_http_error(r, 400, "invalid_request_error",
                          "targets[%zu] must be {\"provider_id\": UUID, \"model\": string, \"weight\": int?}", i);
            return;
        }
        if (cp_body_int(r, t, "weight", 1, 0, MAX_WEIGHT, &w) != 0)
            return;
    }

    PGresult *res;
    if (cp_admin_query(r, &res, "route", "BEGIN", 0, NULL) != 0)
        return;
    PQclear(res);
    const char *params[] = {name};
    if (cp_admin_query(r, &res, "route", "INSERT INTO routes (name) VALUES ($1) RETURNING id::text", 1, params) != 0)
        goto rollback;
    char id[CP_UUID_LEN + 1];
    snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    json_array_foreach(targets, i, t)
    {
        long long w;
        cp_body_int(r, t, "weight", 1, 0, MAX_WEIGHT, &w); /* validated above */
        char ord[24], weight[24];
        snprintf(ord, sizeof(ord), "%zu", i);
        snprintf(weight, sizeof(weight), "%lld", w);
        const char *tp[] = {id, ord, json_string_value(json_object_get(t, "provider_id")),
                            json_string_value(json_object_get(t, "model")), weight};
        if (cp_admin_query(r, &res, "route target",
                           "INSERT INTO route_targets (route_id, ordinal, provider_id, upstream_model, weight)"
                           " VALUES ($1::uuid, $2::int, $3::uuid, $4, $5::int)",
                           5, tp) != 0)
            goto rollback;
        PQclear(res);
    }
    const char *idp[] = {id};
    if (cp_admin_query(r, &res, "route", "SELECT " ROUTE_JSON "::text FROM routes r WHERE r.id = $1::uuid", 1, idp) !=
        0)
        goto rollback;
    if (cp_audit(r, "route.create", "route", id, NULL, NULL, PQgetvalue(res, 0, 0)) != 0 || cp_admin_commit(r) != 0) {
        PQclear(res);
        return;
    }
    cp_http_json_text(r, 201, PQgetvalue(res, 0, 0));
    PQclear(res);
    return;
rollback:
    if (cp_db_conn(&r->cp->db) != NULL)
        cp_db_exec(&r->cp->db, "ROLLBACK", 0, NULL);
}

void
cp_routes_list(cp_admin_req_t *r)
{
    PGresult *res;
    if (cp_admin_query(r, &res, "route",
                       "SELECT json_build_object('data', coalesce(json_agg(" ROUTE_JSON
                       " ORDER BY r.name), '[]'::json))::text FROM routes r",
                       0, NULL) != 0)
        return;
    cp_http_json_text(r, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}

void
cp_routes_get(cp_admin_req_t *r)
{
    if (!cp_uuid_valid(r->id)) {
        cp_http_error(r, 404, "not_found_error", "route not found");
        return;
    }
    const char *params[] = {r->id};
    PGresult *res;
    if (cp_admin_query(r, &res, "route", "SELECT " ROUTE_JSON "::text FROM routes r WHERE r.id = $1::uuid", 1,
                       params) != 0)
        return;
    if (PQntuples(res) == 0)
        cp_http_error(r, 404, "not_found_error", "route not found");
    else
        cp_http_json_text(r, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}

void
cp_routes_delete(cp_admin_req_t *r)
{
    if (!cp_admin_path_id(r, "route"))
        return;
    const char *params[] = {r->id};
    cp_change_t c = {.what = "route",
                     .action = "route.delete",
                     .before_sql = "SELECT " ROUTE_JSON "::text FROM routes r WHERE r.id = $1::uuid FOR UPDATE",
                     .sql = "DELETE FROM routes WHERE id = $1::uuid RETURNING id::text",
                     .nparams = 1,
                     .params = params,
                     .status = 204};
    cp_admin_change(r, &c);
}
