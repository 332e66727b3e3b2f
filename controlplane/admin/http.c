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
static int
authorized(cp_t *cp, h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    char token[512];
    if (v.len < 7 || v.len - 7 >= sizeof(token) || strncasecmp(v.base, "Bearer ", 7) != 0)
        return 0;
    memcpy(token, v.base + 7, v.len - 7);
    token[v.len - 7] = '\0';
    if (strlen(token) != v.len - 7)
        return 0;
    return tg_ct_streq(token, cp->cfg.admin_token);
}

static int
op_takes_body(enum cp_admin_op op)
{
    return op == CP_OP_TENANT_CREATE || op == CP_OP_KEY_CREATE || op == CP_OP_PROVIDER_CREATE ||
           op == CP_OP_ROUTE_CREATE || op == CP_OP_PRICE_PUT;
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
    if (cp_admin_path_needs_auth(path, plen) && !authorized(cp, req)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        cp_http_error(&r, 401, "authentication_error", "missing or invalid admin token");
        goto done;
    }
    cp_route_match_t m;
    int rv = cp_admin_route(req->method.base, req->method.len, path, plen, &m);
    if (rv == 404) {
        cp_http_error(&r, 404, "not_found_error", "no such endpoint");
        goto done;
    }
    if (rv == 405) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, m.allow, strlen(m.allow));
        cp_http_error(&r, 405, "invalid_request_error", "method not allowed; allowed: %s", m.allow);
        goto done;
    }
    r.id = m.id;
    matched_id = m.id;
    if (op_takes_body(m.op)) {
        json_error_t jerr;
        r.body = req->entity.base != NULL ? json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &jerr)
                                          : NULL;
        if (!json_is_object(r.body)) {
            cp_http_error(&r, 400, "invalid_request_error", "the body must be a JSON object%s%s",
                          r.body == NULL && req->entity.base != NULL ? ": " : "",
                          r.body == NULL && req->entity.base != NULL ? jerr.text : "");
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
