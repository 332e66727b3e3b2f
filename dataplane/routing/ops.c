/*
 * GET /tollgate/v1/breakers: the circuit breakers of this dataplane process as JSON, for operators.
 * When TOLLGATE_OPS_TOKEN is set the caller must send it as a Bearer token.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "ingress/ingress.h"
#include "observe/observe.h"
#include "routing/breaker.h"
#include "tollgate/buf.h"

static const char *const STATE_NAMES[] = {"closed", "open", "half_open"};

static void
add_one(void *ctx, const char *provider_id, const char *provider_name, const char *key_id, const char *model, int state,
        uint64_t consecutive_failures)
{
    tg_buf_t *b = ctx;
    tg_buf_appends(b, b->len > 1 ? ",{\"provider_id\":" : "{\"provider_id\":");
    tg_buf_append_json_string(b, provider_id, strlen(provider_id));
    tg_buf_appends(b, ",\"provider\":");
    tg_buf_append_json_string(b, provider_name, strlen(provider_name));
    tg_buf_appends(b, ",\"key_id\":");
    tg_buf_append_json_string(b, key_id, strlen(key_id));
    tg_buf_appends(b, ",\"model\":");
    tg_buf_append_json_string(b, model, strlen(model));
    tg_buf_appendf(b, ",\"state\":\"%s\",\"consecutive_failures\":%llu}", STATE_NAMES[state % 3],
                   (unsigned long long)consecutive_failures);
}

int
dp_ops_breakers_handle(h2o_req_t *req)
{
    if (!dp_obs_ops_authorized(req)) {
        dp_send_json(req, 401,
                     H2O_STRLIT("{\"error\":{\"message\":\"A valid ops token is required.\",\"type\":"
                                "\"authentication_error\",\"code\":\"invalid_ops_token\"}}\n"));
        return 0;
    }
    tg_buf_t b = {0};
    tg_buf_appends(&b, "[");
    dp_breaker_foreach(add_one, &b);
    tg_buf_appends(&b, "]");
    tg_buf_t out = {0};
    tg_buf_appends(&out, "{\"breakers\":");
    tg_buf_append(&out, b.base, b.len);
    tg_buf_appends(&out, "}\n");
    tg_buf_free(&b);
    if (out.base == NULL) {
        dp_send_json(req, 500, H2O_STRLIT("{\"error\":{\"message\":\"out of memory\"}}\n"));
        return 0;
    }
    char *body = h2o_mem_alloc_pool(&req->pool, out.len);
    memcpy(body, out.base, out.len);
    size_t len = out.len;
    tg_buf_free(&out);
    dp_send_json(req, 200, body, len);
    return 0;
}
