/*
 * Fuzz target: the Gemini dialect's request decoder. The first byte picks the operation, the rest is the
 * body. Whatever decodes must also encode for a Gemini and a Vertex upstream (or fail cleanly), and what
 * encodes must be JSON.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "translate/tx.h"

extern const tx_dialect_ops_t tx_gemini_dialect;
extern const tx_provider_ops_t tx_gemini_provider, tx_vertex_provider;

static void
encode_for(const tx_provider_ops_t *p, const tx_request_t *r, const tx_target_t *t, tg_arena_t *a)
{
    tx_http_request_t http;
    tx_error_t err;
    if (p->encode_request(r, t, a, &http, &err) == 0) {
        json_t *v = json_loadb(http.body, http.body_len, 0, NULL);
        if (!json_is_object(v))
            abort();
        json_decref(v);
    } else if (err.message[0] == '\0') {
        abort(); /* a failure always says why */
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const tx_op_t ops[] = {TX_OP_CHAT, TX_OP_EMBED, TX_OP_COUNT_TOKENS};
    tx_op_t op = ops[data[0] % 3];
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r;
    tx_error_t err;
    if (tx_gemini_dialect.decode_request(op, (const char *)data + 1, size - 1, &a, &r, &err) == 0) {
        r.model = "gemini-fuzz";
        r.stream = data[0] & 8;
        json_t *settings = json_pack("{ssss}", "project", "p", "location", "l");
        tx_target_t g = {.kind = "gemini", .base_url = "http://127.0.0.1:1", .upstream_model = "g"};
        tx_target_t v = {
            .kind = "vertex", .base_url = "http://127.0.0.1:1", .upstream_model = "v", .settings = settings};
        encode_for(&tx_gemini_provider, &r, &g, &a);
        encode_for(&tx_vertex_provider, &r, &v, &a);
        json_decref(settings);
    } else if (err.message[0] == '\0') {
        abort();
    }
    tg_arena_free(&a);
    return 0;
}
