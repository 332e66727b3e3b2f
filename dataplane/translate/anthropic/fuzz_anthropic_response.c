/* Fuzz target: an upstream body through the Anthropic provider's response and error decoders, and the
 * decoded response back out through the Anthropic dialect, which must write valid JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "translate/tx.h"

extern const tx_dialect_ops_t tx_anthropic_dialect;
extern const tx_provider_ops_t tx_anthropic_provider;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r = {.op = data[0] & 1 ? TX_OP_COUNT_TOKENS : TX_OP_CHAT,
                      .format = data[0] & 2 ? TX_FORMAT_JSON_SCHEMA : TX_FORMAT_TEXT,
                      .model = "m",
                      .request_id = "req"};
    tx_response_t resp;
    tx_error_t err;
    if (tx_anthropic_provider.decode_response(&r, body, len, &a, &resp, &err) == 0) {
        tg_buf_t out = {0};
        if (tx_anthropic_dialect.encode_response(&r, &resp, &a, &out) != 0)
            abort();
        json_t *v = json_loadb(out.base, out.len, JSON_ALLOW_NUL, NULL);
        if (!json_is_object(v))
            abort();
        json_decref(v);
        tg_buf_free(&out);
    }
    tx_error_t e;
    tx_anthropic_provider.decode_error(400 + data[0] % 200, body, len, &e);
    tg_buf_t out = {0};
    int status = tx_anthropic_dialect.encode_error(&e, "req", &out);
    json_t *v = json_loadb(out.base, out.len, 0, NULL);
    if (status < 400 || status > 599 || !json_is_object(v))
        abort();
    json_decref(v);
    tg_buf_free(&out);
    tg_arena_free(&a);
    return 0;
}
