/* Fuzz target: an Anthropic client body through the dialect's decoder and the Anthropic provider's encoder
 * (the first byte picks chat or count_tokens); whatever is accepted must encode to valid JSON. */
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
    tx_op_t op = data[0] & 1 ? TX_OP_COUNT_TOKENS : TX_OP_CHAT;
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r;
    tx_error_t err;
    if (tx_anthropic_dialect.decode_request(op, (const char *)data + 1, size - 1, &a, &r, &err) == 0) {
        /* as if it came from another dialect too, with JSON output asked for */
        if (data[0] & 2) {
            r.dialect = TX_DIALECT_OPENAI;
            r.format = TX_FORMAT_JSON_OBJECT;
        }
        tx_target_t t = {.kind = "anthropic", .base_url = "http://127.0.0.1:1", .upstream_model = "up"};
        tx_http_request_t h;
        if (tx_anthropic_provider.encode_request(&r, &t, &a, &h, &err) == 0) {
            json_t *v = json_loadb(h.body, h.body_len, JSON_ALLOW_NUL, NULL);
            if (!json_is_object(v))
                abort();
            json_decref(v);
        }
    } else if (err.message[0] == '\0') {
        abort(); /* a failure always says why */
    }
    tg_arena_free(&a);
    return 0;
}
