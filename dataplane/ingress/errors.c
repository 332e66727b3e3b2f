/*
 * The one place where responses that are not proxied bodies are built: OpenAI-style errors and small
 * JSON answers, with the headers every gateway response carries.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "ingress/ingress.h"
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
    h2o_send_inline(req, body, len);
}

static size_t
put_nullable(char *out, const char *s)
{
    if (s == NULL) {
        memcpy(out, "null", 4);
        return 4;
    }
    return tg_json_quote(out, s, strlen(s));
}

void
dp_send_error(h2o_req_t *req, int status, const char *type, const char *code, const char *param, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    int mlen = vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    if (mlen < 0)
        mlen = 0;
    if ((size_t)mlen >= sizeof(message))
        mlen = sizeof(message) - 1;

    size_t cap = 64 + 6 * (mlen + strlen(type) + (code ? strlen(code) : 4) + (param ? strlen(param) : 4)) + 16;
    char *body = h2o_mem_alloc_pool(&req->pool, cap);
    size_t n = 0;
    n += sprintf(body + n, "{\"error\":{\"message\":");
    n += tg_json_quote(body + n, message, mlen);
    n += sprintf(body + n, ",\"type\":");
    n += tg_json_quote(body + n, type, strlen(type));
    n += sprintf(body + n, ",\"param\":");
    n += put_nullable(body + n, param);
    n += sprintf(body + n, ",\"code\":");
    n += put_nullable(body + n, code);
    n += sprintf(body + n, "}}\n");
    dp_send_json(req, status, body, n);
}
