/*
 * Admin API: virtual keys. The plaintext ("tg-" + 48 hex) is generated here, returned once in the
 * create answer and never stored: the database keeps its SHA-256 (what snapshots carry and what
 * dataplanes look keys up by) and an 11-character display prefix. Revoking is an UPDATE; the config
 * trigger makes every dataplane drop the key with the next snapshot.
 */
#include <stdlib.h>
#include <string.h>
#include "../util.h"
#include "handlers.h"

#define MAX_ALLOWED_MODELS 1000
#define MAX_MODEL_LEN      200

#define KEY_JSON                                                                                                       \
    "json_build_object('id', k.id, 'tenant_id', k.tenant_id, 'name', k.name, 'prefix', k.prefix,"                      \
    " 'allowed_models', k.allowed_models, 'status', k.status, 'expires_at', " CP_SQL_TS(                               \
        "k.expires_at") ","                                                                                            \
                        " 'created_at', " CP_SQL_TS("k.created_at") ", 'revoked_at', " CP_SQL_TS("k.revoked_at") ")"

/* allowed_models as JSON text for the statement, "[]" when absent. 0, or -1 after answering 400. */
static int
allowed_models(cp_admin_req_t *r, char **ret)
{
    json_t *v = json_object_get(r->body, "allowed_models");
    *ret = NULL;
    if (v == NULL || json_is_null(v)) {
        *ret = strdup("[]");
        return *ret != NULL ? 0 : -1;
    }
    if (!json_is_array(v) || json_array_size(v) > MAX_ALLOWED_MODELS)
        goto invalid;
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m)
    {
        if (!json_is_string(m) || json_string_length(m) == 0 || json_string_length(m) > MAX_MODEL_LEN ||
            strlen(json_string_value(m)) != json_string_length(m))
            goto invalid;
    }
    *ret = json_dumps(v, JSON_COMPACT);
    return *ret != NULL ? 0 : -1;
invalid:
    cp_http_error(r, 400, "invalid_request_error", "'allowed_models' must be an array of up to %d model names",
                  MAX_ALLOWED_MODELS);
    return -1;
}

void
cp_keys_create(cp_admin_req_t *r)
{
    const char *tenant_id, *name, *expires_at;
    char *models = NULL;
    if (cp_body_uuid(r, "tenant_id", 1, &tenant_id) != 0 || cp_body_string(r, "name", 1, 200, &name) != 0 ||
        cp_body_string(r, "expires_at", 0, 64, &expires_at) != 0 || allowed_models(r, &models) != 0)
        goto out;

    char key[CP_VKEY_LEN + 1], prefix[CP_VKEY_PREFIX_LEN + 1], hash_hex[2 * TG_SHA256_LEN + 1];
    uint8_t hash[TG_SHA256_LEN];
    if (cp_vkey_generate(key, prefix, hash) != 0) {
        cp_http_error(r, 500, "server_error", "no randomness available");
        goto out;
    }
    tg_hex_encode(hash, sizeof(hash), hash_hex);
    const char *params[] = {tenant_id, name, hash_hex, prefix, models, expires_at};
    PGresult *res;
    if (cp_admin_query(r, &res, "key",
                       "INSERT INTO virtual_keys AS k (tenant_id, name, key_hash, prefix, allowed_models, expires_at)"
                       " VALUES ($1::uuid, $2, decode($3, 'hex'), $4,"
                       " ARRAY(SELECT json_array_elements_text($5::json)), $6::timestamptz)"
                       " RETURNING " KEY_JSON "::text",
                       6, params) != 0)
        goto out;
    json_t *doc = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    if (doc == NULL) {
        cp_http_error(r, 500, "server_error", "internal error");
        goto out;
    }
    json_object_set_new(doc, "key", json_string(key));
    explicit_bzero(key, sizeof(key));
    cp_http_json(r, 201, doc);
out:
    free(models);
}

void
cp_keys_list(cp_admin_req_t *r)
{
    char tenant[64];
    int present;
    if (cp_query_string(r, "tenant_id", tenant, sizeof(tenant), &present) != 0)
        return;
    if (present && !cp_uuid_valid(tenant)) {
        cp_http_error(r, 400, "invalid_request_error", "'tenant_id' must be a UUID");
        return;
    }
    const char *params[] = {present ? tenant : NULL};
    PGresult *res;
    if (cp_admin_query(r, &res, "key",
                       "SELECT json_build_object('data', coalesce(json_agg(" KEY_JSON
                       " ORDER BY k.created_at, k.id), '[]'::json))::text"
                       " FROM virtual_keys k WHERE $1::uuid IS NULL OR k.tenant_id = $1::uuid",
                       1, params) != 0)
        return;
    cp_http_json_text(r, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}

void
cp_keys_get(cp_admin_req_t *r)
{
    if (!cp_uuid_valid(r->id)) {
        cp_http_error(r, 404, "not_found_error", "key not found");
        return;
    }
    const char *params[] = {r->id};
    PGresult *res;
    if (cp_admin_query(r, &res, "key", "SELECT " KEY_JSON "::text FROM virtual_keys k WHERE k.id = $1::uuid", 1,
                       params) != 0)
        return;
    if (PQntuples(res) == 0)
        cp_http_error(r, 404, "not_found_error", "key not found");
    else
        cp_http_json_text(r, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}

void
cp_keys_revoke(cp_admin_req_t *r)
{
    if (!cp_uuid_valid(r->id)) {
        cp_http_error(r, 404, "not_found_error", "key not found");
        return;
    }
    const char *params[] = {r->id};
    PGresult *res;
    if (cp_admin_query(r, &res, "key",
                       "UPDATE virtual_keys AS k SET status = 'revoked', revoked_at = coalesce(k.revoked_at, now())"
                       " WHERE k.id = $1::uuid RETURNING " KEY_JSON "::text",
                       1, params) != 0)
        return;
    if (PQntuples(res) == 0)
        cp_http_error(r, 404, "not_found_error", "key not found");
    else
        cp_http_json_text(r, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}
