/*
 * The one place where responses that are not proxied bodies are built: errors in the client's dialect
 * (through the dialect adapter's encode_error) and small JSON answers, with the headers every gateway
 * response carries.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "ingress/ingress.h"
#include "observe/observe.h"
#include "tollgate/http_status.h"
#include "tollgate/json_scan.h"

void
dp_add_common_headers(h2o_req_t *req, const char *request_id)
{
    if (request_id != NULL)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, request_id,
                              strlen(request_id));
    if (atomic_load_explicit(&dp_draining, memory_order_relaxed))
        req->http1_is_persistent = 0;
}

void
dp_send_json(h2o_req_t *req, int status, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = tg_http_reason(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    req->res.content_length = len; /* a whole body: framed by its length, not chunked */
    h2o_send_inline(req, body, len);
}

/* OpenAI's shape, for a dialect whose adapter cannot encode errors. */
static int
fallback_error(const tx_error_t *e, tg_buf_t *out)
{
    int status = tx_error_status(e);
    tg_buf_appends(out, "{\"error\":{\"message\":");
    tg_buf_append_json_string(out, e->message, strlen(e->message));
    tg_buf_appends(out, ",\"type\":");
    tg_buf_appends(out, status >= 500 ? "\"server_error\"" : "\"invalid_request_error\"");
    tg_buf_appends(out, ",\"param\":");
    if (e->param[0] != '\0')
        tg_buf_append_json_string(out, e->param, strlen(e->param));
    else
        tg_buf_appends(out, "null");
    tg_buf_appends(out, ",\"code\":");
    if (e->code[0] != '\0')
        tg_buf_append_json_string(out, e->code, strlen(e->code));
    else
        tg_buf_appends(out, "null");
    tg_buf_appends(out, "}}\n");
    return status;
}

void
dp_send_tx_error(h2o_req_t *req, tx_dialect_t dialect, const tx_error_t *e, const char *request_id)
{
    const tx_dialect_ops_t *d = tx_dialect_get(dialect);
    tg_buf_t out = {0};
    int status = d != NULL && d->encode_error != NULL ? d->encode_error(e, request_id, &out) : fallback_error(e, &out);
    if (out.len == 0) {
        tg_buf_free(&out);
        status = fallback_error(e, &out);
    }
    char *body = h2o_mem_alloc_pool(&req->pool, out.len ? out.len : 1);
    memcpy(body, out.base, out.len);
    size_t len = out.len;
    tg_buf_free(&out);
    dp_obs_note_error(req, status, e->code[0] ? e->code : NULL);
    if (status == 429 && h2o_find_header(&req->res.headers, H2O_TOKEN_RETRY_AFTER, -1) < 0)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    dp_send_json(req, status, body, len);
}

void
dp_send_error(h2o_req_t *req, tx_dialect_t dialect, int status, const char *code, const char *param, const char *fmt,
              ...)
{
    tx_error_t e = {.status = status, .kind = tx_error_kind_of_status(status)};
    snprintf(e.code, sizeof(e.code), "%s", code ? code : "");
    snprintf(e.param, sizeof(e.param), "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    ssize_t i = h2o_find_header_by_str(&req->res.headers, H2O_STRLIT("x-request-id"), -1);
    const char *rid = NULL;
    char rid_buf[DP_REQUEST_ID_MAX];
    if (i >= 0 && req->res.headers.entries[i].value.len < sizeof(rid_buf)) {
        memcpy(rid_buf, req->res.headers.entries[i].value.base, req->res.headers.entries[i].value.len);
        rid_buf[req->res.headers.entries[i].value.len] = '\0';
        rid = rid_buf;
    }
    dp_send_tx_error(req, dialect, &e, rid);
}
