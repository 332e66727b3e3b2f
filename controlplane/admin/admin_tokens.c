/*
 * Admin API: tenant-scoped admin tokens. The plaintext ("tgt-" + 48 hex) is returned once at creation;
 * the database keeps its SHA-256 and a 12-character display prefix. http.c looks tokens up by hash on
 * every request, so a revoked token stops working at once.
 *
 * Who may mint what: the global token, any token of any tenant; a tenant's admin token, viewer tokens
 * of its own tenant only (and revoke them), so a tenant can hand out read access without the operator
 * and can never raise its own privileges; a viewer, nothing.
 */
#include <string.h>
#include "../util.h"
#include "handlers.h"

#define TOKEN_JSON                                                                                                     \
    "json_build_object('id', a.id, 'tenant_id', a.tenant_id, 'name', a.name, 'role', a.role, 'prefix', a.prefix,"      \
    " 'status', a.status, 'created_at', " CP_SQL_TS("a.created_at") ", 'revoked_at', " CP_SQL_TS("a.revoked_at") ")"

void
cp_tokens_create(cp_admin_req_t *r)
{
    static const char *const allowed[] = {"tenant_id", "name", "role", NULL};
    const char *tenant, *name, *role;
    if (cp_body_allow(r, r->body, "", allowed) != 0 || cp_body_string(r, "name", 1, 200, &name) != 0 ||
        cp_body_string(r, "role", 1, 16, &role) != 0 || cp_admin_tenant_for_create(r, &tenant) != 0)
        return;
    if (strcmp(role, "admin") != 0 && strcmp(role, "viewer") != 0) {
        cp_http_error(r, 400, "invalid_request_error", "'role' must be admin or viewer");
        return;
    }
    if (r->role != CP_ROLE_GLOBAL && strcmp(role, "viewer") != 0) {
        cp_http_error(r, 403, "permission_error", "a tenant admin token can only create viewer tokens");
        return;
    }
    char token[CP_ADMIN_TOKEN_LEN + 1], prefix[CP_ADMIN_TOKEN_PREFIX_LEN + 1], hex[2 * TG_SHA256_LEN + 1];
    uint8_t hash[TG_SHA256_LEN];
    if (cp_admin_token_generate(token, prefix, hash) != 0) {
        cp_http_error(r, 500, "server_error", "no randomness available");
        return;
    }
    tg_hex_encode(hash, sizeof(hash), hex);
    const char *params[] = {tenant, name, role, hex, prefix};
    PGresult *res;
    if (cp_admin_begin(r) != 0)
        goto out;
    if (cp_admin_query(r, &res, "admin token",
                       "INSERT INTO admin_tokens AS a (tenant_id, name, role, token_hash, prefix)"
                       " VALUES ($1::uuid, $2, $3, decode($4, 'hex'), $5) RETURNING " TOKEN_JSON "::text",
                       5, params) != 0) {
        cp_admin_rollback(r);
        goto out;
    }
    if (cp_audit(r, "admin_token.create", "admin_token", NULL, NULL, NULL, PQgetvalue(res, 0, 0)) != 0 ||
        cp_admin_commit(r) != 0) {
        PQclear(res);
        goto out;
    }
    json_t *doc = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    if (doc == NULL) {
        cp_http_error(r, 500, "server_error", "internal error");
        goto out;
    }
    json_object_set_new(doc, "token", json_string(token));
    cp_http_json(r, 201, doc);
out:
    explicit_bzero(token, sizeof(token));
}

void
cp_tokens_list(cp_admin_req_t *r)
{
    static const char *const allowed[] = {"tenant_id", NULL};
    const char *tenant;
    int other;
    char tbuf[64];
    if (cp_query_allow(r, allowed) != 0 || cp_admin_tenant_filter(r, &tenant, &other, tbuf, sizeof(tbuf)) != 0)
        return;
    const char *params[] = {tenant, other ? "1" : "0"};
    cp_admin_list(r, "admin token",
                  "SELECT json_build_object('data', coalesce(json_agg(" TOKEN_JSON
                  " ORDER BY a.created_at, a.id), '[]'::json))::text FROM admin_tokens a"
                  " WHERE ($1::uuid IS NULL OR a.tenant_id = $1::uuid) AND $2 = '0'",
                  2, params);
}

void
cp_tokens_get(cp_admin_req_t *r)
{
    cp_admin_get_one(r, "admin token",
                     "SELECT " TOKEN_JSON "::text FROM admin_tokens a WHERE a.id = $1::uuid"
                     " AND ($2::uuid IS NULL OR a.tenant_id = $2::uuid)");
}

void
cp_tokens_revoke(cp_admin_req_t *r)
{
    static const char *const allowed[] = {NULL};
    if (!cp_admin_path_id(r, "admin token") || (r->body != NULL && cp_body_allow(r, r->body, "", allowed) != 0))
        return;
    /* $3: the role this caller may revoke (NULL = any). */
    const char *params[] = {r->id, r->scope, r->role == CP_ROLE_GLOBAL ? NULL : "viewer"};
    PGresult *res;
    const char *p2[] = {r->id, r->scope};
    if (cp_admin_query(r, &res, "admin token",
                       "SELECT a.role FROM admin_tokens a WHERE a.id = $1::uuid"
                       " AND ($2::uuid IS NULL OR a.tenant_id = $2::uuid)",
                       2, p2) != 0)
        return;
    int found = PQntuples(res) == 1, is_admin = found && strcmp(PQgetvalue(res, 0, 0), "admin") == 0;
    PQclear(res);
    if (found && is_admin && r->role != CP_ROLE_GLOBAL) {
        cp_http_error(r, 403, "permission_error", "a tenant admin token can only revoke viewer tokens");
        return;
    }
    cp_change_t c = {.what = "admin token",
                     .action = "admin_token.revoke",
                     .before_sql = "SELECT " TOKEN_JSON "::text FROM admin_tokens a WHERE a.id = $1::uuid"
                                   " AND ($2::uuid IS NULL OR a.tenant_id = $2::uuid)"
                                   " AND ($3::text IS NULL OR a.role = $3) FOR UPDATE",
                     .sql =
                         "UPDATE admin_tokens AS a SET status = 'revoked', revoked_at = coalesce(a.revoked_at, now())"
                         " WHERE a.id = $1::uuid AND ($2::uuid IS NULL OR a.tenant_id = $2::uuid)"
                         " AND ($3::text IS NULL OR a.role = $3) RETURNING " TOKEN_JSON "::text",
                     .nparams = 3,
                     .params = params,
                     .status = 200};
    cp_admin_change(r, &c);
}
