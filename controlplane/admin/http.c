/*
 * The admin HTTP server: h2o (HTTP/1.1) on the control plane's libuv loop, one catch-all handler that
 * authenticates, routes (router.c), parses the JSON body and dispatches to the resource handlers. Also
 * the response/error builders every handler uses, and the health and snapshot endpoints.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tollgate/http_status.h"
#include "../metrics.h"
#include "../snapshot.h"
#include "../util.h"
#include "handlers.h"
#include "router.h"
#include "test_hooks.h"
#include "tollgate/crypto.h"
#include "tollgate/env.h"
#include "tollgate/log.h"

struct cp_admin {
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    int listening;
};

typedef struct {
    h2o_handler_t super;
    cp_t *cp;
} admin_handler_t;

/* ---------------------------------------------------------------------------------------------------
 * Responses.
 */
void
cp_http_json_text(cp_admin_req_t *r, int status, const char *text)
{
    h2o_req_t *req = r->req;
    size_t len = strlen(text);
    req->res.status = status;
    req->res.reason = tg_http_reason(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_send_inline(req, text, len);
}

void
cp_http_json(cp_admin_req_t *r, int status, json_t *doc)
{
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL) {
        cp_http_json_text(r, 500, "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}");
        return;
    }
    cp_http_json_text(r, status, text);
    free(text);
}

void
cp_http_no_content(cp_admin_req_t *r)
{
    r->req->res.status = 204;
    r->req->res.reason = tg_http_reason(204);
    h2o_send_inline(r->req, "", 0);
}

void
cp_http_error(cp_admin_req_t *r, int status, const char *type, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cp_http_json(r, status, json_pack("{s:{s:s,s:s}}", "error", "message", msg, "type", type));
}

void
cp_http_db_error(cp_admin_req_t *r, const PGresult *res, const char *what)
{
    const char *state = cp_db_sqlstate(res);
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (primary == NULL)
        primary = "";
    if (res == NULL || cp_db_conn(&r->cp->db) == NULL) {
        cp_http_error(r, 503, "server_error", "database unavailable");
    } else if (strcmp(state, "23505") == 0) {
        cp_http_error(r, 409, "conflict_error", "%s already exists", what);
    } else if (strcmp(state, "23503") == 0) {
        /* The detail names the column: Key (tenant_id)=(…) is not present in table "tenants". */
        const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
        cp_http_error(r, 400, "invalid_request_error", "%s refers to something that does not exist%s%s", what,
                      detail != NULL ? ": " : "", detail != NULL ? detail : "");
    } else if (strncmp(state, "22", 2) == 0 || strcmp(state, "23514") == 0 || strcmp(state, "23502") == 0) {
        cp_http_error(r, 400, "invalid_request_error", "invalid %s: %s", what, primary);
    } else {
        tg_error("cp.admin.db_error", "what=%s sqlstate=%s error=\"%s\"", what, state, cp_db_errmsg(&r->cp->db, res));
        cp_http_error(r, 500, "server_error", "internal error");
    }
}

int
cp_admin_query(cp_admin_req_t *r, PGresult **ret_res, const char *what, const char *sql, int nparams,
               const char *const *values)
{
    PGresult *res;
    if (cp_db_query(&r->cp->db, &res, sql, nparams, values, NULL, NULL) != 0) {
        cp_http_db_error(r, res, what);
        PQclear(res);
        *ret_res = NULL;
        return -1;
    }
    *ret_res = res;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * Body and query accessors.
 */
int
cp_body_field(cp_admin_req_t *r, const char *field, int required, json_t **ret)
{
    json_t *v = json_object_get(r->body, field);
    *ret = NULL;
    if (v == NULL || json_is_null(v)) {
        if (!required)
            return 0;
        cp_http_error(r, 400, "invalid_request_error", "'%s' is required", field);
        return -1;
    }
    *ret = v;
    return 0;
}

int
cp_body_string(cp_admin_req_t *r, const char *field, int required, size_t maxlen, const char **ret)
{
    json_t *v;
    *ret = NULL;
    if (cp_body_field(r, field, required, &v) != 0)
        return -1;
    if (v == NULL)
        return 0;
    if (!json_is_string(v)) {
        cp_http_error(r, 400, "invalid_request_error", "'%s' must be a string", field);
        return -1;
    }
    size_t len = json_string_length(v);
    if (len > maxlen || (required && len == 0) || memchr(json_string_value(v), '\0', len) != NULL) {
        cp_http_error(r, 400, "invalid_request_error", "'%s' must be 1 to %zu characters", field, maxlen);
        return -1;
    }
    *ret = json_string_value(v);
    return 0;
}

int
cp_body_uuid(cp_admin_req_t *r, const char *field, int required, const char **ret)
{
    if (cp_body_string(r, field, required, CP_UUID_LEN, ret) != 0)
        return -1;
    if (*ret != NULL && !cp_uuid_valid(*ret)) {
        cp_http_error(r, 400, "invalid_request_error", "'%s' must be a UUID", field);
        return -1;
    }
    return 0;
}

int
cp_body_int(cp_admin_req_t *r, json_t *obj, const char *field, long long def, long long min, long long max,
            long long *ret)
{
    json_t *v = json_object_get(obj, field);
    if (v == NULL || json_is_null(v)) {
        *ret = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        cp_http_error(r, 400, "invalid_request_error", "'%s' must be an integer from %lld to %lld", field, min, max);
        return -1;
    }
    *ret = json_integer_value(v);
    return 0;
}

int
cp_body_allow(cp_admin_req_t *r, json_t *obj, const char *where, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        size_t i;
        for (i = 0; allowed[i] != NULL && strcmp(allowed[i], key) != 0; i++)
            ;
        if (allowed[i] == NULL) {
            cp_http_error(r, 400, "invalid_request_error", "unknown field '%s%.64s'", where, key);
            return -1;
        }
    }
    return 0;
}

int
cp_query_allow(cp_admin_req_t *r, const char *const *allowed)
{
    const char *q = r->query, *end = r->query + r->query_len;
    while (q != NULL && q < end) {
        const char *amp = memchr(q, '&', end - q);
        const char *pend = amp != NULL ? amp : end;
        const char *eq = memchr(q, '=', pend - q);
        size_t klen = (size_t)((eq != NULL ? eq : pend) - q);
        size_t i;
        for (i = 0; allowed[i] != NULL && (strlen(allowed[i]) != klen || memcmp(allowed[i], q, klen) != 0); i++)
            ;
        if (klen > 0 && allowed[i] == NULL) {
            cp_http_error(r, 400, "invalid_request_error", "unknown query parameter '%.*s'",
                          (int)(klen > 64 ? 64 : klen), q);
            return -1;
        }
        q = pend + (amp != NULL);
    }
    return 0;
}

int
cp_body_object(cp_admin_req_t *r, const char *field, size_t maxbytes, json_t **ret)
{
    json_t *v = json_object_get(r->body, field);
    *ret = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    char *text = json_is_object(v) ? json_dumps(v, JSON_COMPACT) : NULL;
    size_t len = text != NULL ? strlen(text) : 0;
    free(text);
    if (!json_is_object(v) || len > maxbytes) {
        cp_http_error(r, 400, "invalid_request_error", "'%s' must be a JSON object of at most %zu bytes", field,
                      maxbytes);
        return -1;
    }
    *ret = v;
    return 0;
}

int
cp_body_bool(cp_admin_req_t *r, const char *field, int *ret)
{
    json_t *v = json_object_get(r->body, field);
    *ret = -1;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_boolean(v)) {
        cp_http_error(r, 400, "invalid_request_error", "'%s' must be true or false", field);
        return -1;
    }
    *ret = json_is_true(v);
    return 0;
}

int
cp_admin_tenant_for_create(cp_admin_req_t *r, const char **ret)
{
    const char *t;
    *ret = NULL;
    if (cp_body_uuid(r, "tenant_id", r->scope == NULL, &t) != 0)
        return -1;
    if (r->scope != NULL) {
        if (t != NULL && strcasecmp(t, r->scope) != 0) {
            cp_http_error(r, 404, "not_found_error", "tenant not found");
            return -1;
        }
        t = r->scope;
    }
    *ret = t;
    return 0;
}

int
cp_admin_tenant_filter(cp_admin_req_t *r, const char **ret, int *ret_other, char *buf, size_t bufsz)
{
    int present;
    *ret = r->scope;
    *ret_other = 0;
    if (cp_query_string(r, "tenant_id", buf, bufsz, &present) != 0)
        return -1;
    if (!present)
        return 0;
    if (!cp_uuid_valid(buf)) {
        cp_http_error(r, 400, "invalid_request_error", "'tenant_id' must be a UUID");
        return -1;
    }
    if (r->scope != NULL && strcasecmp(buf, r->scope) != 0)
        *ret_other = 1;
    else
        *ret = buf;
    return 0;
}

int
cp_admin_begin(cp_admin_req_t *r)
{
    PGresult *res;
    if (cp_admin_query(r, &res, "transaction", "BEGIN", 0, NULL) != 0)
        return -1;
    PQclear(res);
    return 0;
}

int
cp_admin_commit(cp_admin_req_t *r)
{
    PGresult *res;
    if (cp_admin_query(r, &res, "transaction", "COMMIT", 0, NULL) != 0) {
        cp_admin_rollback(r);
        return -1;
    }
    PQclear(res);
    return 0;
}

void
cp_admin_rollback(cp_admin_req_t *r)
{
    if (cp_db_conn(&r->cp->db) != NULL)
        cp_db_exec(&r->cp->db, "ROLLBACK", 0, NULL);
}

int
cp_audit(cp_admin_req_t *r, const char *action, const char *target_type, const char *target_id, const char *tenant_id,
         const char *before, const char *after)
{
    const char *params[] = {r->actor, tenant_id, action, target_type, target_id, before, after, r->request_id};
    PGresult *res;
    if (cp_admin_query(r, &res, "audit",
                       "INSERT INTO audit_log (actor, tenant_id, action, target_type, target_id, before, after,"
                       " request_id) VALUES ($1, coalesce($2::uuid, CASE WHEN $4 = 'tenant' THEN"
                       " coalesce($7::jsonb->>'id', $6::jsonb->>'id')::uuid END, ($7::jsonb->>'tenant_id')::uuid,"
                       " ($6::jsonb->>'tenant_id')::uuid), $3, $4, coalesce($5, $7::jsonb->>'id', $6::jsonb->>'id'),"
                       " tollgate_audit_mask($6::jsonb), tollgate_audit_mask($7::jsonb), $8)",
                       8, params) != 0) {
        cp_admin_rollback(r); /* no change without its audit row */
        return -1;
    }
    PQclear(res);
    return 0;
}

int
cp_admin_change(cp_admin_req_t *r, const cp_change_t *c)
{
    PGresult *before = NULL, *after = NULL;
    const char *dot = strchr(c->action, '.');
    char target_type[32];
    snprintf(target_type, sizeof(target_type), "%.*s", dot != NULL ? (int)(dot - c->action) : 31, c->action);
    if (cp_admin_begin(r) != 0)
        return -1;
    if (c->before_sql != NULL) {
        if (cp_admin_query(r, &before, c->what, c->before_sql, c->nparams, c->params) != 0)
            goto rollback;
        if (PQntuples(before) == 0) {
            cp_http_error(r, 404, "not_found_error", "%s not found", c->what);
            goto rollback;
        }
    }
    if (cp_admin_query(r, &after, c->what, c->sql, c->nparams, c->params) != 0)
        goto rollback;
    if (PQntuples(after) == 0) {
        cp_http_error(r, 404, "not_found_error", "%s not found", c->what);
        goto rollback;
    }
    int deleting = c->status == 204;
    const char *btext = before != NULL ? PQgetvalue(before, 0, 0) : NULL;
    const char *atext = deleting ? NULL : PQgetvalue(after, 0, 0);
    if (cp_audit(r, c->action, target_type, NULL, NULL, btext, atext) != 0 || cp_admin_commit(r) != 0) {
        PQclear(before);
        PQclear(after);
        return -1;
    }
    if (deleting)
        cp_http_no_content(r);
    else
        cp_http_json_text(r, c->status, atext);
    PQclear(before);
    PQclear(after);
    return 0;
rollback:
    PQclear(before);
    PQclear(after);
    cp_admin_rollback(r);
    return -1;
}

int
cp_admin_path_id(cp_admin_req_t *r, const char *what)
{
    if (cp_uuid_valid(r->id))
        return 1;
    cp_http_error(r, 404, "not_found_error", "%s not found", what);
    return 0;
}

void
cp_admin_get_one(cp_admin_req_t *r, const char *what, const char *sql)
{
    if (!cp_admin_path_id(r, what))
        return;
    const char *params[] = {r->id, r->scope};
    PGresult *res;
    if (cp_admin_query(r, &res, what, sql, 2, params) != 0)
        return;
    if (PQntuples(res) == 0)
        cp_http_error(r, 404, "not_found_error", "%s not found", what);
    else
        cp_http_json_text(r, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}

void
cp_admin_list(cp_admin_req_t *r, const char *what, const char *sql, int nparams, const char *const *params)
{
    PGresult *res;
    if (cp_admin_query(r, &res, what, sql, nparams, params) != 0)
        return;
    cp_http_json_text(r, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}

char *
cp_body_text(cp_admin_req_t *r, int drop_nulls)
{
    if (drop_nulls) {
        const char *key;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(r->body, tmp, key, v)
        {
            if (json_is_null(v))
                json_object_del(r->body, key);
        }
    }
    return json_dumps(r->body, JSON_COMPACT);
}

int
cp_query_string(cp_admin_req_t *r, const char *name, char *ret, size_t retsz, int *ret_present)
{
    int rv = cp_query_param(r->query, r->query_len, name, ret, retsz);
    if (rv < 0) {
        cp_http_error(r, 400, "invalid_request_error", "query parameter '%s' is malformed or too long", name);
        return -1;
    }
    if (rv == 0)
        ret[0] = '\0';
    *ret_present = rv;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * Health and snapshot.
 */
static void
healthz(cp_admin_req_t *r)
{
    cp_http_json_text(r, 200, "{\"status\":\"ok\"}");
}

static void
readyz(cp_admin_req_t *r)
{
    cp_t *cp = r->cp;
    /* Ready means "the leader": a standby answers 503 so that a Service sends dataplanes (and admin
     * calls) to the leader only. */
    int leading = cp_leader_is_leading(&cp->leader);
    const char *role = leading ? "leader" : "standby";
    if (!leading || cp_db_conn(&cp->db) == NULL || cp->snap == NULL || cp->stopping) {
        cp_http_json(r, 503,
                     json_pack("{s:s,s:s,s:b,s:b}", "status", "not_ready", "role", role, "database",
                               cp_db_conn(&cp->db) != NULL, "snapshot", leading && cp->snap != NULL));
        return;
    }
    cp_http_json(
        r, 200,
        json_pack("{s:s,s:s,s:I}", "status", "ready", "role", role, "snapshot_version", (json_int_t)cp->snap->version));
}

static void
snapshot_info(cp_admin_req_t *r)
{
    const cp_snapshot_t *s = r->cp->snap;
    if (s == NULL) {
        cp_http_error(r, 503, "server_error", "no snapshot has been built yet");
        return;
    }
    char created[32];
    cp_format_rfc3339(s->created_unix_ms, created);
    cp_http_json(r, 200,
                 json_pack("{s:I,s:s,s:I,s:I,s:I,s:I,s:I}", "version", (json_int_t)s->version, "created_at", created,
                           "keys", (json_int_t)s->msg.n_keys, "routes", (json_int_t)s->msg.n_routes, "providers",
                           (json_int_t)s->msg.n_providers, "tenants", (json_int_t)s->msg.n_tenants, "prices",
                           (json_int_t)s->msg.n_prices));
}

/* ---------------------------------------------------------------------------------------------------
 * Dispatch.
 */
/* The bearer token of the request, NUL-terminated, or NULL when absent or malformed. */
static const char *
bearer(h2o_req_t *req, char *buf, size_t bufsz)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        return NULL;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len < 8 || v.len - 7 >= bufsz || strncasecmp(v.base, "Bearer ", 7) != 0)
        return NULL;
    memcpy(buf, v.base + 7, v.len - 7);
    buf[v.len - 7] = '\0';
    return strlen(buf) == v.len - 7 ? buf : NULL;
}

/*
 * Who is calling: the global token (constant-time compare), else a tenant token looked up by its
 * SHA-256 (one indexed query; the admin API is not a hot path, and a revoked token must stop working
 * at once, which a cache would delay). 0 authenticated, 401 not, 503 when the database is needed and
 * unavailable.
 */
static int
authenticate(cp_admin_req_t *r)
{
    char token[512];
    const char *t = bearer(r->req, token, sizeof(token));
    if (t == NULL)
        return 401;
    if (tg_ct_streq(t, r->cp->cfg.admin_token)) {
        r->role = CP_ROLE_GLOBAL;
        r->scope = NULL;
        snprintf(r->actor, sizeof(r->actor), "global");
        return 0;
    }
    if (strncmp(t, CP_ADMIN_TOKEN_PREFIX, strlen(CP_ADMIN_TOKEN_PREFIX)) != 0)
        return 401;
    uint8_t hash[TG_SHA256_LEN];
    char hex[2 * TG_SHA256_LEN + 1];
    tg_sha256(t, strlen(t), hash);
    explicit_bzero(token, sizeof(token));
    tg_hex_encode(hash, sizeof(hash), hex);
    const char *params[] = {hex};
    PGresult *res;
    if (cp_db_query(&r->cp->db, &res,
                    "SELECT id::text, tenant_id::text, role FROM admin_tokens"
                    " WHERE token_hash = decode($1, 'hex') AND status = 'active'",
                    1, params, NULL, NULL) != 0) {
        PQclear(res);
        return 503;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        return 401;
    }
    snprintf(r->actor, sizeof(r->actor), "token:%s", PQgetvalue(res, 0, 0));
    snprintf(r->scope_buf, sizeof(r->scope_buf), "%s", PQgetvalue(res, 0, 1));
    r->scope = r->scope_buf;
    r->role = strcmp(PQgetvalue(res, 0, 2), "admin") == 0 ? CP_ROLE_ADMIN : CP_ROLE_VIEWER;
    PQclear(res);
    return 0;
}

/* The client's x-request-id when it is 1..128 characters of [A-Za-z0-9._:-], else a new UUID. */
static void
request_id(cp_admin_req_t *r)
{
    ssize_t i = h2o_find_header_by_str(&r->req->headers, H2O_STRLIT("x-request-id"), -1);
    if (i >= 0) {
        h2o_iovec_t v = r->req->headers.entries[i].value;
        size_t k;
        for (k = 0; k < v.len && k < CP_REQUEST_ID_MAX; k++) {
            char c = v.base[k];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == ':' || c == '-'))
                break;
        }
        if (v.len > 0 && k == v.len) {
            memcpy(r->request_id, v.base, v.len);
            r->request_id[v.len] = '\0';
            goto echo;
        }
    }
    if (cp_uuid_generate(r->request_id) != 0)
        snprintf(r->request_id, sizeof(r->request_id), "admin-%llu", (unsigned long long)tg_mono_ns());
echo:
    h2o_add_header_by_str(&r->req->pool, &r->req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                          h2o_strdup(&r->req->pool, r->request_id, SIZE_MAX).base, strlen(r->request_id));
}

static int
on_req(h2o_handler_t *self, h2o_req_t *req)
{
    cp_t *cp = ((admin_handler_t *)self)->cp;
    cp_admin_req_t r = {.cp = cp, .req = req, .id = ""};
    const char *path = req->path_normalized.base;
    size_t plen = req->path_normalized.len;
    uint64_t t0 = tg_mono_ns();

    if (req->query_at != SIZE_MAX) {
        r.query = req->path.base + req->query_at + 1;
        r.query_len = req->path.len - req->query_at - 1;
    }
    if (plen == 8 && memcmp(path, "/metrics", 8) == 0 &&
        h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
        cp_metrics_handle(req); /* the ops token, not the admin token; not counted as an admin request */
        return 0;
    }
    const char *matched_id = NULL; /* the route label of the request's metrics; NULL: no route */
    request_id(&r);
    cp_route_match_t m;
    int rv = cp_admin_route(req->method.base, req->method.len, path, plen, &m);
    if (cp_admin_path_needs_auth(path, plen)) {
        int auth = authenticate(&r);
        if (auth == 503) {
            cp_http_error(&r, 503, "server_error", "database unavailable");
            goto done;
        }
        if (auth != 0) {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
            cp_http_error(&r, 401, "authentication_error", "missing or invalid admin token");
            goto done;
        }
    }
    /* test hooks (TOLLGATE_TEST_HOOKS=1 only): the global token, like every other cluster-wide switch */
    if (r.role == CP_ROLE_GLOBAL && cp_test_hooks_handle(&r, path, plen))
        goto done;
    if (rv == 404) {
        cp_http_error(&r, 404, "not_found_error", "no such endpoint");
        goto done;
    }
    if (rv == 405) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, m.allow, strlen(m.allow));
        cp_http_error(&r, 405, "invalid_request_error", "method not allowed; allowed: %s", m.allow);
        goto done;
    }
    matched_id = m.id;
    if ((m.flags & CP_ROUTE_GLOBAL) && r.role != CP_ROLE_GLOBAL) {
        cp_http_error(&r, 403, "permission_error", "this endpoint needs the global admin token");
        goto done;
    }
    if ((m.flags & CP_ROUTE_WRITE) && r.role == CP_ROLE_VIEWER) {
        cp_http_error(&r, 403, "permission_error", "a viewer token can only read");
        goto done;
    }
    r.id = m.id;
    if (m.flags & (CP_ROUTE_BODY | CP_ROUTE_OPT_BODY)) {
        json_error_t jerr;
        int empty = req->entity.base == NULL || req->entity.len == 0;
        if (empty && (m.flags & CP_ROUTE_OPT_BODY))
            r.body = json_object();
        else
            r.body = !empty ? json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
        if (!json_is_object(r.body)) {
            cp_http_error(&r, 400, "invalid_request_error", "the body must be a JSON object%s%s",
                          r.body == NULL && !empty ? ": " : "", r.body == NULL && !empty ? jerr.text : "");
            goto done;
        }
    }
    switch (m.op) {
    case CP_OP_HEALTHZ:
        healthz(&r);
        break;
    case CP_OP_READYZ:
        readyz(&r);
        break;
    case CP_OP_TENANT_CREATE:
        cp_tenants_create(&r);
        break;
    case CP_OP_TENANT_LIST:
        cp_tenants_list(&r);
        break;
    case CP_OP_TENANT_GET:
        cp_tenants_get(&r);
        break;
    case CP_OP_KEY_CREATE:
        cp_keys_create(&r);
        break;
    case CP_OP_KEY_LIST:
        cp_keys_list(&r);
        break;
    case CP_OP_KEY_GET:
        cp_keys_get(&r);
        break;
    case CP_OP_KEY_REVOKE:
    case CP_OP_KEY_DELETE:
        cp_keys_revoke(&r);
        break;
    case CP_OP_PROVIDER_CREATE:
        cp_providers_create(&r);
        break;
    case CP_OP_PROVIDER_LIST:
        cp_providers_list(&r);
        break;
    case CP_OP_PROVIDER_GET:
        cp_providers_get(&r);
        break;
    case CP_OP_ROUTE_CREATE:
        cp_routes_create(&r);
        break;
    case CP_OP_ROUTE_LIST:
        cp_routes_list(&r);
        break;
    case CP_OP_ROUTE_GET:
        cp_routes_get(&r);
        break;
    case CP_OP_ROUTE_DELETE:
        cp_routes_delete(&r);
        break;
    case CP_OP_PRICE_PUT:
        cp_prices_put(&r);
        break;
    case CP_OP_PRICE_LIST:
        cp_prices_list(&r);
        break;
    case CP_OP_USAGE:
        cp_usage_report(&r);
        break;
    case CP_OP_SNAPSHOT:
        snapshot_info(&r);
        break;
    case CP_OP_TENANT_UPDATE:
        cp_tenants_update(&r);
        break;
    case CP_OP_TENANT_DELETE:
        cp_tenants_delete(&r);
        break;
    case CP_OP_TEAM_CREATE:
        cp_teams_create(&r);
        break;
    case CP_OP_TEAM_LIST:
        cp_teams_list(&r);
        break;
    case CP_OP_TEAM_GET:
        cp_teams_get(&r);
        break;
    case CP_OP_TEAM_UPDATE:
        cp_teams_update(&r);
        break;
    case CP_OP_TEAM_DELETE:
        cp_teams_delete(&r);
        break;
    case CP_OP_KEY_UPDATE:
        cp_keys_update(&r);
        break;
    case CP_OP_KEY_ROTATE:
        cp_keys_rotate(&r);
        break;
    case CP_OP_BUDGET_CREATE:
        cp_budgets_create(&r);
        break;
    case CP_OP_BUDGET_LIST:
        cp_budgets_list(&r);
        break;
    case CP_OP_BUDGET_GET:
        cp_budgets_get(&r);
        break;
    case CP_OP_BUDGET_UPDATE:
        cp_budgets_update(&r);
        break;
    case CP_OP_BUDGET_DELETE:
        cp_budgets_delete(&r);
        break;
    case CP_OP_LIMIT_CREATE:
        cp_limits_create(&r);
        break;
    case CP_OP_LIMIT_LIST:
        cp_limits_list(&r);
        break;
    case CP_OP_LIMIT_GET:
        cp_limits_get(&r);
        break;
    case CP_OP_LIMIT_UPDATE:
        cp_limits_update(&r);
        break;
    case CP_OP_LIMIT_DELETE:
        cp_limits_delete(&r);
        break;
    case CP_OP_TOKEN_CREATE:
        cp_tokens_create(&r);
        break;
    case CP_OP_TOKEN_LIST:
        cp_tokens_list(&r);
        break;
    case CP_OP_TOKEN_GET:
        cp_tokens_get(&r);
        break;
    case CP_OP_TOKEN_REVOKE:
        cp_tokens_revoke(&r);
        break;
    case CP_OP_AUDIT_LIST:
        cp_audit_list(&r);
        break;
    case CP_OP_USAGE_REPORT:
        cp_usage_report_v2(&r);
        break;
    }
done:
    json_decref(r.body);
    cp_metrics_admin(req->method.base, req->method.len, path, plen, matched_id, req->res.status,
                     (tg_mono_ns() - t0) / 1e9);
    if (tg_log_enabled(TG_LOG_DEBUG) || req->res.status >= 500)
        tg_log(req->res.status >= 500 ? TG_LOG_WARN : TG_LOG_DEBUG, "cp.admin.request",
               "method=%.*s path=%.*s status=%d ms=%.1f", (int)req->method.len, req->method.base, (int)plen, path,
               req->res.status, (tg_mono_ns() - t0) / 1e6);
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * Server lifecycle.
 */
static void
on_accept(uv_stream_t *listener, int status)
{
    cp_t *cp = listener->data;
    if (status != 0)
        return;
    uv_tcp_t *conn = malloc(sizeof(*conn));
    if (conn == NULL)
        return;
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)conn, (uv_close_cb)free);
    h2o_accept(&cp->admin->accept_ctx, sock);
}

int
cp_admin_start(cp_t *cp)
{
    struct sockaddr_storage addr;
    socklen_t addrlen;
    if (tg_parse_hostport(cp->cfg.admin_listen, &addr, &addrlen) != 0) {
        tg_error("cp.admin.bad_listen", "TOLLGATE_ADMIN_LISTEN=%s", cp->cfg.admin_listen);
        return -1;
    }
    cp_admin_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -1;
    cp->admin = a;

    h2o_config_init(&a->config);
    a->config.max_request_entity_size = CP_ADMIN_MAX_BODY;
    a->config.server_name = h2o_iovec_init(H2O_STRLIT("tollgate-controlplane"));
    h2o_hostconf_t *host = h2o_config_register_host(&a->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
    admin_handler_t *h = (admin_handler_t *)h2o_create_handler(pathconf, sizeof(*h));
    h->super.on_req = on_req;
    h->cp = cp;
    h2o_context_init(&a->ctx, cp->loop, &a->config);
    a->accept_ctx.ctx = &a->ctx;
    a->accept_ctx.hosts = a->config.hosts;

    int rv;
    uv_tcp_init(cp->loop, &a->listener);
    a->listener.data = cp;
    if ((rv = uv_tcp_bind(&a->listener, (struct sockaddr *)&addr, 0)) != 0 ||
        (rv = uv_listen((uv_stream_t *)&a->listener, 128, on_accept)) != 0) {
        tg_error("cp.admin.listen_failed", "addr=%s error=\"%s\"", cp->cfg.admin_listen, uv_strerror(rv));
        uv_close((uv_handle_t *)&a->listener, NULL);
        return -1;
    }
    a->listening = 1;
    tg_info("cp.admin.listening", "addr=%s", cp->cfg.admin_listen);
    return 0;
}

void
cp_admin_stop(cp_t *cp)
{
    if (cp->admin == NULL || !cp->admin->listening)
        return;
    cp->admin->listening = 0;
    uv_close((uv_handle_t *)&cp->admin->listener, NULL);
}
