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
    "json_build_object('id', p.id, 'name', p.name, 'kind', p.kind, 'base_url', p.base_url, 'settings', p.settings,"    \
    " 'api_keys', (SELECT coalesce(json_agg(json_build_object('id', k.id, 'masked', k.masked,"                         \
    " 'weight', k.weight) ORDER BY k.ordinal), '[]'::json) FROM provider_keys k WHERE k.provider_id = p.id),"          \
    " 'created_at', " CP_SQL_TS("p.created_at") ")"

/* The adapters the dataplane has (dataplane/translate/tx.c), each with its default base URL ("": the
 * account must give one; a {setting} is filled from the account's settings). */
static const struct {
    const char *kind;
    const char *default_base_url;
    const char *required_settings[3];
} KINDS[] = {
    {"openai", "https://api.openai.com/v1", {NULL}},
    {"azure", "", {NULL}},
    {"openai_compatible", "", {NULL}},
    {"vllm", "", {NULL}},
    {"openrouter", "https://openrouter.ai/api/v1", {NULL}},
    {"mistral", "https://api.mistral.ai/v1", {NULL}},
    {"groq", "https://api.groq.com/openai/v1", {NULL}},
    {"ollama", "http://127.0.0.1:11434/v1", {NULL}},
    {"ollama_native", "http://127.0.0.1:11434", {NULL}},
    {"anthropic", "https://api.anthropic.com", {NULL}},
    {"gemini", "https://generativelanguage.googleapis.com", {NULL}},
    {"vertex", "https://{location}-aiplatform.googleapis.com", {"project", "location", NULL}},
    {"bedrock", "https://bedrock-runtime.{region}.amazonaws.com", {"region", NULL}},
    {"cohere", "https://api.cohere.com", {NULL}},
};

static int
find_kind(const char *kind)
{
    for (size_t i = 0; i < sizeof(KINDS) / sizeof(KINDS[0]); i++)
        if (strcmp(KINDS[i].kind, kind) == 0)
            return (int)i;
    return -1;
}

/* The default base URL of a kind with its {setting} placeholders filled in (malloc'd), or NULL. */
static char *
default_base_url(int k, json_t *settings)
{
    const char *t = KINDS[k].default_base_url;
    if (t[0] == '\0')
        return NULL;
    char *out = malloc(2048);
    size_t n = 0;
    while (out != NULL && *t != '\0' && n < 2000) {
        const char *close;
        if (*t == '{' && (close = strchr(t, '}')) != NULL) {
            char name[64];
            snprintf(name, sizeof(name), "%.*s", (int)(close - t - 1), t + 1);
            const char *v = json_string_value(json_object_get(settings, name));
            if (v != NULL && strcmp(name, "location") == 0 && strcmp(v, "global") == 0) {
                /* Vertex's global endpoint has no location prefix */
                n = (size_t)snprintf(out, 2048, "https://aiplatform.googleapis.com");
                return out;
            }
            n += (size_t)snprintf(out + n, 2048 - n, "%s", v ? v : "");
            t = close + 1;
        } else {
            out[n++] = *t++;
        }
    }
    if (out != NULL)
        out[n < 2047 ? n : 2047] = '\0';
    return out;
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
    static const char *const allowed[] = {"secret", "weight", NULL};
    char where[32];
    snprintf(where, sizeof(where), "api_keys[%zu].", ordinal);
    long long weight;
    if (cp_body_allow(r, item, where, allowed) != 0 || cp_body_int(r, item, "weight", 1, 0, MAX_WEIGHT, &weight) != 0)
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
    static const char *const allowed[] = {"name", "kind", "base_url", "settings", "api_keys", NULL};
    const char *name, *kind, *base_url;
    json_t *settings;
    if (cp_body_allow(r, r->body, "", allowed) != 0 || cp_body_string(r, "name", 1, 200, &name) != 0 ||
        cp_body_string(r, "kind", 1, 32, &kind) != 0 || cp_body_string(r, "base_url", 0, 2048, &base_url) != 0 ||
        cp_body_field(r, "settings", 0, &settings) != 0)
        return;
    int k = find_kind(kind);
    if (k < 0) {
        cp_http_error(r, 400, "invalid_request_error",
                      "'kind' must be one of openai, azure, openai_compatible, vllm, openrouter, mistral, groq, "
                      "ollama, ollama_native, anthropic, gemini, vertex, bedrock, cohere");
        return;
    }
    if (settings != NULL && !json_is_null(settings)) {
        const char *key;
        json_t *v;
        if (!json_is_object(settings) || json_object_size(settings) > 32) {
            cp_http_error(r, 400, "invalid_request_error", "'settings' must be an object of at most 32 strings");
            return;
        }
        json_object_foreach(settings, key, v)
        {
            if (!json_is_string(v) || json_string_length(v) > 256 || strlen(key) > 64) {
                cp_http_error(r, 400, "invalid_request_error", "'settings.%.64s' must be a string of at most 256 bytes",
                              key);
                return;
            }
        }
    } else {
        settings = NULL;
    }
    for (size_t i = 0; KINDS[k].required_settings[i] != NULL; i++) {
        const char *v = json_string_value(json_object_get(settings, KINDS[k].required_settings[i]));
        if (v == NULL || v[0] == '\0') {
            cp_http_error(r, 400, "invalid_request_error", "a provider of kind '%s' needs 'settings.%s'", kind,
                          KINDS[k].required_settings[i]);
            return;
        }
    }
    char *default_url = NULL;
    if (base_url == NULL && (base_url = default_url = default_base_url(k, settings)) == NULL) {
        cp_http_error(r, 400, "invalid_request_error", "a provider of kind '%s' needs 'base_url'", kind);
        return;
    }
    char base_url_copy[2049];
    snprintf(base_url_copy, sizeof(base_url_copy), "%s", base_url);
    free(default_url);
    base_url = base_url_copy;
    if (!valid_base_url(base_url)) {
        cp_http_error(r, 400, "invalid_request_error", "'base_url' must be an http:// or https:// URL");
        return;
    }
    json_t *keys = json_object_get(r->body, "api_keys");
    if (keys != NULL && !json_is_null(keys) && (!json_is_array(keys) || json_array_size(keys) > MAX_API_KEYS)) {
        cp_http_error(r, 400, "invalid_request_error", "'api_keys' must be an array of at most %d keys", MAX_API_KEYS);
        return;
    }
    char *settings_text = settings != NULL ? json_dumps(settings, JSON_COMPACT) : strdup("{}");
    if (settings_text == NULL) {
        cp_http_error(r, 500, "server_error", "out of memory");
        return;
    }

    PGresult *res;
    if (cp_admin_query(r, &res, "provider", "BEGIN", 0, NULL) != 0) {
        free(settings_text);
        return;
    }
    PQclear(res);
    const char *params[] = {name, kind, base_url, settings_text};
    int failed = cp_admin_query(r, &res, "provider",
                                "INSERT INTO providers (name, kind, base_url, settings) VALUES ($1, $2, $3, $4::jsonb)"
                                " RETURNING id::text",
                                4, params);
    free(settings_text);
    settings_text = NULL;
    if (failed)
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
    if (cp_audit(r, "provider.create", "provider", id, NULL, NULL, PQgetvalue(res, 0, 0)) != 0 ||
        cp_admin_commit(r) != 0) {
        PQclear(res);
        return;
    }
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
