/* GET /v1/models: the public model names (routes) the calling key may use, in OpenAI's list shape. */
#include <string.h>
#include "ingress/ingress.h"
#include "tollgate/json_scan.h"

int
dp_models_handle(h2o_req_t *req, dp_worker_t *w, const char *request_id)
{
    dp_snapshot_t *s;
    const dp_vkey_t *key = dp_admit(req, w, TX_DIALECT_OPENAI, &s);
    if (key == NULL)
        return 0;

    size_t cap = 64;
    for (size_t i = 0; i < s->n_routes; i++)
        cap += 6 * s->routes[i].name_len + 96;
    char *body = h2o_mem_alloc_pool(&req->pool, cap);
    long long created = s->created_unix_ms / 1000;
    size_t n = (size_t)sprintf(body, "{\"object\":\"list\",\"data\":[");
    int first = 1;
    for (size_t i = 0; i < s->n_routes; i++) {
        const dp_route_t *r = &s->routes[i];
        if (!dp_vkey_allows(key, r->name, r->name_len))
            continue;
        if (!first)
            body[n++] = ',';
        first = 0;
        n += (size_t)sprintf(body + n, "{\"id\":");
        n += tg_json_quote(body + n, r->name, r->name_len);
        n += (size_t)sprintf(body + n, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"tollgate\"}", created);
    }
    n += (size_t)sprintf(body + n, "]}\n");
    dp_send_json(req, 200, body, n);
    return 0;
}
