/*
 * Admin API: virtual keys. The plaintext ("tg-" + 48 hex) is generated here, returned once in the
 * create (and rotate) answer and never stored: the database keeps its SHA-256 (what snapshots carry
 * and what dataplanes look keys up by) and an 11-character display prefix. Revoking is an UPDATE; the
 * config trigger makes every dataplane drop the key with the next snapshot. Rotating makes a new key
 * with the same settings (rotated_from = the old one) and moves the old key's expiry to now + grace.
 *
 * The validated body goes to PostgreSQL as one jsonb parameter; the statements pick its members, so
 * a PATCH changes exactly the members present.
 */
#include <stdlib.h>
#include <string.h>
#include "../util.h"
#include "handlers.h"

#define MAX_ALLOWED_MODELS    1000
#define MAX_MODEL_LEN         200
#define MAX_ALLOWED_PROVIDERS 100
#define MAX_TAGS              50
#define MAX_TAG_LEN           64
#define MAX_METADATA          16384
#define MAX_GRACE_SECONDS     (30 * 86400)

#define KEY_JSON                                                                                                       \
    "json_build_object('id', k.id, 'tenant_id', k.tenant_id, 'team_id', k.team_id, 'name', k.name, 'prefix',"          \
    " k.prefix, 'allowed_models', k.allowed_models, 'allowed_providers', k.allowed_providers, 'metadata',"             \
    " k.metadata, 'tags', k.tags, 'status', k.status, 'rotated_from', k.rotated_from, 'expires_at', " CP_SQL_TS(       \
        "k.expires_at") ", 'created_at', " CP_SQL_TS("k.created_at") ", 'revoked_at', " CP_SQL_TS("k.revoked_at") ")"

/* The members a create or PATCH may set, as jsonb of $B (b) into columns. */
#define SET_ARRAYS(b)                                                                                                  \
    "ARRAY(SELECT jsonb_array_elements_text(" b "->'allowed_models')),"                                                \
    " ARRAY(SELECT jsonb_array_elements_text(" b "->'allowed_providers')::uuid),"                                      \
    " ARRAY(SELECT jsonb_array_elements_text(" b "->'tags'))"

static const char *const CREATE_FIELDS[] = {
    "tenant_id", "team_id", "name", "allowed_models", "allowed_providers", "metadata", "tags", "expires_at", NULL};
static const char *const UPDATE_FIELDS[] = {"team_id",  "name", "allowed_models", "allowed_providers",
                                            "metadata", "tags", "expires_at",     NULL};

/* An array of at most `max` strings, each 1..maxlen bytes without NUL (and a UUID when `uuids`). */
static int
string_array(cp_admin_req_t *r, const char *field, size_t max, size_t maxlen, int uuids, int printable)
{
    json_t *v = json_object_get(r->body, field);
    if (v == NULL)
        return 0;
    if (!json_is_array(v) || json_array_size(v) > max)
        goto invalid;
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m)
    {
        if (!json_is_string(m) || json_string_length(m) == 0 || json_string_length(m) > maxlen ||
            strlen(json_string_value(m)) != json_string_length(m))
            goto invalid;
        if (uuids && !cp_uuid_valid(json_string_value(m)))
            goto invalid;
        for (const char *p = json_string_value(m); printable && *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                goto invalid;
    }
    return 0;
invalid:
    cp_http_error(r, 400, "invalid_request_error", "'%s' must be an array of at most %zu %s", field, max,
                  uuids ? "UUIDs" : "non-empty strings");
    return -1;
}

static int
key_fields(cp_admin_req_t *r, int creating)
{
    const char *name, *team, *expires;
    json_t *meta;
    if (cp_body_allow(r, r->body, "", creating ? CREATE_FIELDS : UPDATE_FIELDS) != 0 ||
        cp_body_string(r, "name", creating, 200, &name) != 0 || cp_body_uuid(r, "team_id", 0, &team) != 0 ||
        cp_body_string(r, "expires_at", 0, 64, &expires) != 0 || cp_body_object(r, "metadata", MAX_METADATA, &meta) ||
        string_array(r, "allowed_models", MAX_ALLOWED_MODELS, MAX_MODEL_LEN, 0, 1) != 0 ||
        string_array(r, "allowed_providers", MAX_ALLOWED_PROVIDERS, CP_UUID_LEN, 1, 1) != 0 ||
        string_array(r, "tags", MAX_TAGS, MAX_TAG_LEN, 0, 1) != 0)
        return -1;
    if (!creating && json_is_null(json_object_get(r->body, "name"))) {
        cp_http_error(r, 400, "invalid_request_error", "'name' cannot be null");
        return -1;
    }
    return 0;
}

/* The create answer: the key's JSON plus its plaintext, shown this once. */
static void
answer_with_plaintext(cp_admin_req_t *r, const char *json, char *key, const char *extra_name, const char *extra)
{
    json_t *doc = json_loads(json, 0, NULL);
    if (doc == NULL) {
        cp_http_error(r, 500, "server_error", "internal error");
        return;
    }
    json_object_set_new(doc, "key", json_string(key));
    if (extra_name != NULL)
        json_object_set_new(doc, extra_name, json_loads(extra, 0, NULL));
    cp_http_json(r, 201, doc);
}

void
cp_keys_create(cp_admin_req_t *r)
{
    const char *tenant;
    if (key_fields(r, 1) != 0 || cp_admin_tenant_for_create(r, &tenant) != 0)
        return;
    char *body = cp_body_text(r, 1);
    char key[CP_VKEY_LEN + 1], prefix[CP_VKEY_PREFIX_LEN + 1], hash_hex[2 * TG_SHA256_LEN + 1];
    uint8_t hash[TG_SHA256_LEN];
    if (body == NULL || cp_vkey_generate(key, prefix, hash) != 0) {
        cp_http_error(r, 500, "server_error", "no randomness or memory available");
        goto out;
    }
    tg_hex_encode(hash, sizeof(hash), hash_hex);
    const char *params[] = {tenant, hash_hex, prefix, body};
    PGresult *res;
    if (cp_admin_begin(r) != 0)
        goto out;
    if (cp_admin_query(r, &res, "key",
                       "INSERT INTO virtual_keys AS k (tenant_id, team_id, name, key_hash, prefix, allowed_models,"
                       " allowed_providers, tags, metadata, expires_at)"
                       " SELECT $1::uuid, (b->>'team_id')::uuid, b->>'name', decode($2, 'hex'), $3, " SET_ARRAYS(
                           "b") ", coalesce(b->'metadata', '{}'::jsonb), (b->>'expires_at')::timestamptz"
                                " FROM (SELECT $4::jsonb AS b) x RETURNING " KEY_JSON "::text",
                       4, params) != 0) {
        cp_admin_rollback(r);
        goto out;
    }
    if (cp_audit(r, "key.create", "key", NULL, NULL, NULL, PQgetvalue(res, 0, 0)) != 0 || cp_admin_commit(r) != 0) {
        PQclear(res);
        goto out;
    }
    answer_with_plaintext(r, PQgetvalue(res, 0, 0), key, NULL, NULL);
    PQclear(res);
out:
    explicit_bzero(key, sizeof(key));
    free(body);
}

void
cp_keys_list(cp_admin_req_t *r)
{
    static const char *const allowed[] = {"tenant_id", "team_id", "status", "tag", NULL};
    const char *tenant;
    int other, has_team, has_status, has_tag;
    char tbuf[64], team[64], status[16], tag[MAX_TAG_LEN + 1];
    if (cp_query_allow(r, allowed) != 0 || cp_admin_tenant_filter(r, &tenant, &other, tbuf, sizeof(tbuf)) != 0 ||
        cp_query_string(r, "team_id", team, sizeof(team), &has_team) != 0 ||
        cp_query_string(r, "status", status, sizeof(status), &has_status) != 0 ||
        cp_query_string(r, "tag", tag, sizeof(tag), &has_tag) != 0)
        return;
    if (has_team && !cp_uuid_valid(team)) {
        cp_http_error(r, 400, "invalid_request_error", "'team_id' must be a UUID");
        return;
    }
    if (has_status && strcmp(status, "active") != 0 && strcmp(status, "revoked") != 0 &&
        strcmp(status, "expired") != 0) {
        cp_http_error(r, 400, "invalid_request_error", "'status' must be active, revoked or expired");
        return;
    }
    const char *params[] = {tenant, other ? "1" : "0", has_team ? team : NULL, has_status ? status : NULL,
                            has_tag ? tag : NULL};
    cp_admin_list(r, "key",
                  "SELECT json_build_object('data', coalesce(json_agg(" KEY_JSON
                  " ORDER BY k.created_at, k.id), '[]'::json))::text FROM virtual_keys k"
                  " WHERE ($1::uuid IS NULL OR k.tenant_id = $1::uuid) AND $2 = '0'"
                  " AND ($3::uuid IS NULL OR k.team_id = $3::uuid)"
                  " AND ($4::text IS NULL OR CASE $4 WHEN 'expired' THEN k.status = 'active' AND k.expires_at <= now()"
                  " WHEN 'active' THEN k.status = 'active' AND (k.expires_at IS NULL OR k.expires_at > now())"
                  " ELSE k.status = $4 END)"
                  " AND ($5::text IS NULL OR $5 = ANY (k.tags))",
                  5, params);
}

void
cp_keys_get(cp_admin_req_t *r)
{
    cp_admin_get_one(r, "key",
                     "SELECT " KEY_JSON "::text FROM virtual_keys k WHERE k.id = $1::uuid"
                     " AND ($2::uuid IS NULL OR k.tenant_id = $2::uuid)");
}

void
cp_keys_update(cp_admin_req_t *r)
{
    if (!cp_admin_path_id(r, "key") || key_fields(r, 0) != 0)
        return;
    char *body = cp_body_text(r, 0);
    const char *params[] = {r->id, r->scope, body};
    cp_change_t c = {
        .what = "key",
        .action = "key.update",
        .before_sql = "SELECT " KEY_JSON "::text FROM virtual_keys k WHERE k.id = $1::uuid"
                      " AND ($2::uuid IS NULL OR k.tenant_id = $2::uuid) AND $3::text IS NOT NULL FOR UPDATE",
        .sql = "UPDATE virtual_keys AS k SET"
               " name = CASE WHEN b ? 'name' THEN b->>'name' ELSE k.name END,"
               " team_id = CASE WHEN b ? 'team_id' THEN (b->>'team_id')::uuid ELSE k.team_id END,"
               " allowed_models = CASE WHEN b ? 'allowed_models' THEN ARRAY(SELECT jsonb_array_elements_text("
               "  CASE jsonb_typeof(b->'allowed_models') WHEN 'array' THEN b->'allowed_models' ELSE '[]' END))"
               "  ELSE k.allowed_models END,"
               " allowed_providers = CASE WHEN b ? 'allowed_providers' THEN ARRAY(SELECT jsonb_array_elements_text("
               "  CASE jsonb_typeof(b->'allowed_providers') WHEN 'array' THEN b->'allowed_providers' ELSE '[]' END)"
               "  ::uuid) ELSE k.allowed_providers END,"
               " tags = CASE WHEN b ? 'tags' THEN ARRAY(SELECT jsonb_array_elements_text("
               "  CASE jsonb_typeof(b->'tags') WHEN 'array' THEN b->'tags' ELSE '[]' END)) ELSE k.tags END,"
               " metadata = CASE WHEN b ? 'metadata' THEN coalesce(nullif(b->'metadata', 'null'), '{}'::jsonb)"
               "  ELSE k.metadata END,"
               " expires_at = CASE WHEN b ? 'expires_at' THEN (b->>'expires_at')::timestamptz ELSE k.expires_at END"
               " FROM (SELECT $3::jsonb AS b) x WHERE k.id = $1::uuid AND ($2::uuid IS NULL OR k.tenant_id = $2::uuid)"
               " RETURNING " KEY_JSON "::text",
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
cp_keys_revoke(cp_admin_req_t *r)
{
    static const char *const allowed[] = {NULL};
    if (!cp_admin_path_id(r, "key") || (r->body != NULL && cp_body_allow(r, r->body, "", allowed) != 0))
        return;
    const char *params[] = {r->id, r->scope};
    cp_change_t c = {.what = "key",
                     .action = "key.revoke",
                     .before_sql = "SELECT " KEY_JSON "::text FROM virtual_keys k WHERE k.id = $1::uuid"
                                   " AND ($2::uuid IS NULL OR k.tenant_id = $2::uuid) FOR UPDATE",
                     .sql =
                         "UPDATE virtual_keys AS k SET status = 'revoked', revoked_at = coalesce(k.revoked_at, now())"
                         " WHERE k.id = $1::uuid AND ($2::uuid IS NULL OR k.tenant_id = $2::uuid)"
                         " RETURNING " KEY_JSON "::text",
                     .nparams = 2,
                     .params = params,
                     .status = 200};
    cp_admin_change(r, &c);
}

void
cp_keys_rotate(cp_admin_req_t *r)
{
    static const char *const allowed[] = {"grace_seconds", NULL};
    long long grace;
    if (!cp_admin_path_id(r, "key") || cp_body_allow(r, r->body, "", allowed) != 0 ||
        cp_body_int(r, r->body, "grace_seconds", 0, 0, MAX_GRACE_SECONDS, &grace) != 0)
        return;
    char key[CP_VKEY_LEN + 1], prefix[CP_VKEY_PREFIX_LEN + 1], hash_hex[2 * TG_SHA256_LEN + 1], grace_s[24];
    uint8_t hash[TG_SHA256_LEN];
    if (cp_vkey_generate(key, prefix, hash) != 0) {
        cp_http_error(r, 500, "server_error", "no randomness available");
        return;
    }
    tg_hex_encode(hash, sizeof(hash), hash_hex);
    snprintf(grace_s, sizeof(grace_s), "%lld", grace);
    PGresult *before = NULL, *fresh = NULL, *old = NULL;
    if (cp_admin_begin(r) != 0)
        goto out;
    const char *p1[] = {r->id, r->scope};
    if (cp_admin_query(r, &before, "key",
                       "SELECT " KEY_JSON "::text, k.status FROM virtual_keys k WHERE k.id = $1::uuid"
                       " AND ($2::uuid IS NULL OR k.tenant_id = $2::uuid) FOR UPDATE",
                       2, p1) != 0)
        goto rollback;
    if (PQntuples(before) == 0) {
        cp_http_error(r, 404, "not_found_error", "key not found");
        goto rollback;
    }
    if (strcmp(PQgetvalue(before, 0, 1), "active") != 0) {
        cp_http_error(r, 409, "conflict_error", "a revoked key cannot be rotated");
        goto rollback;
    }
    const char *p2[] = {r->id, hash_hex, prefix};
    if (cp_admin_query(r, &fresh, "key",
                       "INSERT INTO virtual_keys AS k (tenant_id, team_id, name, key_hash, prefix, allowed_models,"
                       " allowed_providers, metadata, tags, expires_at, rotated_from)"
                       " SELECT o.tenant_id, o.team_id, o.name, decode($2, 'hex'), $3, o.allowed_models,"
                       " o.allowed_providers, o.metadata, o.tags, o.expires_at, o.id FROM virtual_keys o"
                       " WHERE o.id = $1::uuid RETURNING " KEY_JSON "::text",
                       3, p2) != 0)
        goto rollback;
    const char *p3[] = {r->id, grace_s};
    if (cp_admin_query(r, &old, "key",
                       "UPDATE virtual_keys AS k SET expires_at = least(coalesce(k.expires_at, 'infinity'),"
                       " now() + make_interval(secs => $2::int)) WHERE k.id = $1::uuid RETURNING " KEY_JSON "::text",
                       2, p3) != 0)
        goto rollback;
    /* One audit row: target = the old key, after = both keys as they are now. */
    json_t *after = json_pack("{s:o?,s:o?}", "old", json_loads(PQgetvalue(old, 0, 0), 0, NULL), "new",
                              json_loads(PQgetvalue(fresh, 0, 0), 0, NULL));
    char *after_text = after != NULL ? json_dumps(after, JSON_COMPACT) : NULL;
    json_decref(after);
    if (after_text == NULL) {
        cp_http_error(r, 500, "server_error", "out of memory");
        goto rollback;
    }
    int failed = cp_audit(r, "key.rotate", "key", r->id, NULL, PQgetvalue(before, 0, 0), after_text) != 0;
    free(after_text);
    if (failed)
        goto rollback;
    if (cp_admin_commit(r) != 0)
        goto out;
    answer_with_plaintext(r, PQgetvalue(fresh, 0, 0), key, "old_key", PQgetvalue(old, 0, 0));
    goto out;
rollback:
    cp_admin_rollback(r);
out:
    explicit_bzero(key, sizeof(key));
    PQclear(before);
    PQclear(fresh);
    PQclear(old);
}
