/*
 * Admin API: provider accounts and their API keys. A secret is sealed with AES-256-GCM under
 * TOLLGATE_MASTER_KEY before it reaches the database, with the provider key's id (canonical lower-case
 * UUID text, generated here so it is known before the INSERT) as associated data; only a masked form
 * ("sk-…abcd") is ever returned. The account and its keys are written in one transaction.
 */
#include <stdlib.h>
#include <string.h>
#include "../util.h"
#include "handlers.h"
#include "tollgate/log.h"

#define MAX_API_KEYS   64
#define MAX_SECRET_LEN 8192
#define MAX_WEIGHT     1000000

#define PROVIDER_JSON                                                                                                  \
    "json_build_object('id', p.id, 'name', p.name, 'kind', p.kind, 'base_url', p.base_url,"                            \
    " 'api_keys', (SELECT coalesce(json_agg(json_build_object('id', k.id, 'masked', k.masked,"                         \
    " 'weight', k.weight) ORDER BY k.ordinal), '[]'::json) FROM provider_keys k WHERE k.provider_id = p.id),"          \
    " 'created_at', " CP_SQL_TS("p.created_at") ")"

static int
valid_kind(const char *kind)
{
    return strcmp(kind, "openai") == 0;
}

static int
valid_base_url(const char *url)
{
    return (strncmp(url, "http://", 7) == 0 && url[7] != '\0') || (strncmp(url, "https://", 8) == 0 && url[8] != '\0');
}

/* Seals and inserts one API key. 0, or -1 after answering. */
static int
insert_key(cp_admin_req_t *r, const char *provider_id, size_t ordinal, json_t *item)
{
    json_t *secret_v = json_object_get(item, "secret");
    if (!json_is_object(item) || !json_is_string(secret_v) || json_string_length(secret_v) == 0 ||
        json_string_length(secret_v) > MAX_SECRET_LEN ||
        strlen(json_string_value(secret_v)) != json_string_length(secret_v)) {
        cp_http_error(r, 400, "invalid_request_error",
                      "each of 'api_keys' must be {\"secret\": non-empty string, \"weight\": int?}");
        return -1;
    }
    long long weight;
    if (cp_body_int(r, item, "weight", 1, 0, MAX_WEIGHT, &weight) != 0)
        return -1;
    const char *secret = json_string_value(secret_v);
    size_t slen = strlen(secret);

    char id[CP_UUID_LEN + 1], masked[32], ord[24], w[24];
    if (cp_uuid_generate(id) != 0) {
        cp_http_error(r, 500, "server_error", "no randomness available");
        return -1;
    }
    uint8_t *sealed = malloc(slen + TG_AEAD_OVERHEAD);
    if (sealed == NULL || tg_aead_seal(r->cp->cfg.master_key, id, strlen(id), secret, slen, sealed) != 0) {
        free(sealed);
        cp_http_error(r, 500, "server_error", "cannot seal the secret");
        return -1;
    }
    cp_mask_secret(secret, masked, sizeof(masked));
    snprintf(ord, sizeof(ord), "%zu", ordinal);
    snprintf(w, sizeof(w), "%lld", weight);

    const char *values[] = {id, provider_id, ord, (const char *)sealed, masked, w};
    const int lens[] = {0, 0, 0, (int)(slen + TG_AEAD_OVERHEAD), 0, 0};
    const int formats[] = {0, 0, 0, 1, 0, 0};
    PGresult *res;
    int rv = cp_db_query(&r->cp->db, &res,
                         "INSERT INTO provider_keys (id, provider_id, ordinal, sealed_secret, masked, weight)"
                         " VALUES ($1::uuid, $2::uuid, $3::int, $4::bytea, $5, $6::int)",
                         6, values, lens, formats);
    free(sealed);
    if (rv != 0)
        cp_http_db_error(r, res, "provider key");
    PQclear(res);
    return rv;
}

void
cp_providers_create(cp_admin_req_t *r)
{
    const char *name, *kind, *base_url;
    if (cp_body_string(r, "name", 1, 200, &name) != 0 || cp_body_string(r, "kind", 1, 32, &kind) != 0 ||
        cp_body_string(r, "base_url", 1, 2048, &base_url) != 0)
        return;
    if (!valid_kind(kind)) {
        cp_http_error(r, 400, "invalid_request_error", "'kind' must be \"openai\"");
        return;
    }
    if (!valid_base_url(base_url)) {
        cp_http_error(r, 400, "invalid_request_error", "'base_url' must be an http:// or https:// URL");
        return;
    }
    json_t *keys = json_object_get(r->body, "api_keys");
    if (keys != NULL && !json_is_null(keys) && (!json_is_array(keys) || json_array_size(keys) > MAX_API_KEYS)) {
        cp_http_error(r, 400, "invalid_request_error", "'api_keys' must be an array of at most %d keys", MAX_API_KEYS);
        return;
    }

    PGresult *res;
    if (cp_admin_query(r, &res, "provider", "BEGIN", 0, NULL) != 0)
        return;
    PQclear(res);
    const char *params[] = {name, kind, base_url};
    if (cp_admin_query(r, &res, "provider",
                       "INSERT INTO providers (name, kind, base_url) VALUES ($1, $2, $3) RETURNING id::text", 3,
                       params) != 0)
        goto rollback;
    char id[CP_UUID_LEN + 1];
    snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    size_t i;
    json_t *item;
    json_array_foreach(keys, i, item)
    {
        if (insert_key(r, id, i, item) != 0)
            goto rollback;
    }
    const char *idp[] = {id};
    if (cp_admin_query(r, &res, "provider", "SELECT " PROVIDER_JSON "::text FROM providers p WHERE p.id = $1::uuid", 1,
                       idp) != 0)
        goto rollback;
    PGresult *commit;
    if (cp_admin_query(r, &commit, "provider", "COMMIT", 0, NULL) != 0) {
        PQclear(res);
        return;
    }
    PQclear(commit);
    cp_http_json_text(r, 201, PQgetvalue(res, 0, 0));
    PQclear(res);
    tg_info("cp.admin.provider_created", "id=%s keys=%zu", id, json_array_size(keys));
    return;
rollback:
    /* The response has been sent; only the transaction is left to undo. */
    if (cp_db_conn(&r->cp->db) != NULL)
        cp_db_exec(&r->cp->db, "ROLLBACK", 0, NULL);
}

void
cp_providers_list(cp_admin_req_t *r)
{
    PGresult *res;
    if (cp_admin_query(r, &res, "provider",
                       "SELECT json_build_object('data', coalesce(json_agg(" PROVIDER_JSON
                       " ORDER BY p.created_at, p.id), '[]'::json))::text FROM providers p",
                       0, NULL) != 0)
        return;
    cp_http_json_text(r, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}

void
cp_providers_get(cp_admin_req_t *r)
{
    if (!cp_uuid_valid(r->id)) {
        cp_http_error(r, 404, "not_found_error", "provider not found");
        return;
    }
    const char *params[] = {r->id};
    PGresult *res;
    if (cp_admin_query(r, &res, "provider", "SELECT " PROVIDER_JSON "::text FROM providers p WHERE p.id = $1::uuid", 1,
                       params) != 0)
        return;
    if (PQntuples(res) == 0)
        cp_http_error(r, 404, "not_found_error", "provider not found");
    else
        cp_http_json_text(r, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}
