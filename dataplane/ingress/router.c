/*
 * The single h2o handler: assigns the request id, then dispatches on method and path. Paths are also
 * accepted under an `/openai` prefix, for SDKs configured with a base URL that ends in /openai/v1.
 */
#include <string.h>
#include "ingress/ingress.h"

static int
path_is(h2o_iovec_t path, const char *lit)
{
    size_t n = strlen(lit);
    return path.len == n && memcmp(path.base, lit, n) == 0;
}

/* The client's x-request-id when it is short and printable, else a new one. */
static void
assign_request_id(h2o_req_t *req, dp_worker_t *w, char *out)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    if (i >= 0) {
        h2o_iovec_t v = req->headers.entries[i].value;
        int ok = v.len > 0 && v.len < DP_REQUEST_ID_MAX;
        for (size_t k = 0; ok && k < v.len; k++)
            ok = v.base[k] > 0x20 && v.base[k] < 0x7f && v.base[k] != '"' && v.base[k] != '\\';
        if (ok) {
            memcpy(out, v.base, v.len);
            out[v.len] = '\0';
            return;
        }
    }
    static const char hex[] = "0123456789abcdef";
    uint64_t a = dp_worker_rand(w), b = dp_worker_rand(w);
    memcpy(out, "req_", 4);
    for (int k = 0; k < 16; k++)
        out[4 + k] = hex[(a >> (4 * k)) & 15];
    for (int k = 0; k < 8; k++)
        out[20 + k] = hex[(b >> (4 * k)) & 15];
    out[28] = '\0';
}

int
dp_ingress_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    dp_worker_t *w = dp_worker_of(req);
    char *request_id = h2o_mem_alloc_pool(&req->pool, DP_REQUEST_ID_MAX);
    assign_request_id(req, w, request_id);
    dp_add_common_headers(req, request_id);

    h2o_iovec_t path = req->path_normalized;
    if (path.len > 7 && memcmp(path.base, "/openai/", 8) == 0)
        path = h2o_iovec_init(path.base + 7, path.len - 7);
    int is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));

    if (path_is(path, "/v1/chat/completions")) {
        if (is_post)
            return dp_chat_handle(req, w, request_id);
    } else if (path_is(path, "/v1/models")) {
        if (is_get)
            return dp_models_handle(req, w, request_id);
    } else if (path_is(path, "/healthz")) {
        dp_send_json(req, 200, H2O_STRLIT("{\"status\":\"ok\"}\n"));
        return 0;
    } else if (path_is(path, "/readyz")) {
        if (atomic_load(&dp_draining))
            dp_send_json(req, 503, H2O_STRLIT("{\"status\":\"draining\"}\n"));
        else if (dp_snapshot_current_version() == 0)
            dp_send_json(req, 503, H2O_STRLIT("{\"status\":\"waiting for the first config snapshot\"}\n"));
        else
            dp_send_json(req, 200, H2O_STRLIT("{\"status\":\"ready\"}\n"));
        return 0;
    } else {
        dp_send_error(req, 404, "invalid_request_error", "unknown_url", NULL, "Unknown request URL: %s %.*s",
                      is_get    ? "GET"
                      : is_post ? "POST"
                                : "?",
                      (int)(req->path.len > 200 ? 200 : req->path.len), req->path.base);
        return 0;
    }
    dp_send_error(req, 405, "invalid_request_error", "method_not_allowed", NULL, "Method %.*s is not allowed here.",
                  (int)(req->method.len > 16 ? 16 : req->method.len), req->method.base);
    return 0;
}
