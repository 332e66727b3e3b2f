/*
 * Fuzz target: the OpenAI dialect's request decoder (chat, legacy completions, embeddings; the first
 * byte picks the operation), then every OpenAI-family encoder on what decoded. Properties: no crash, no
 * leak, and every upstream body an encoder produces is a JSON object.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "translate/tx.h"

extern const tx_dialect_ops_t tx_openai_dialect;
extern const tx_provider_ops_t tx_openai_provider, tx_azure_provider, tx_mistral_provider, tx_groq_provider;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const tx_op_t ops[] = {TX_OP_CHAT, TX_OP_COMPLETION, TX_OP_EMBED};
    tx_op_t op = ops[data[0] % 3];
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r;
    tx_error_t err = {0};
    if (tx_openai_dialect.decode_request(op, (const char *)data + 1, size - 1, &a, &r, &err) == 0) {
        r.stream = data[0] & 4 ? 1 : r.stream;
        const tx_provider_ops_t *ps[] = {&tx_openai_provider, &tx_azure_provider, &tx_mistral_provider,
                                         &tx_groq_provider};
        const char *kinds[] = {"openai", "azure", "mistral", "groq"};
        for (size_t i = 0; i < 4; i++) {
            tx_target_t t = {.kind = kinds[i], .base_url = "http://127.0.0.1:1/v1", .upstream_model = "up"};
            tx_http_request_t h;
            if (ps[i]->encode_request(&r, &t, &a, &h, &err) != 0)
                continue;
            json_t *v = json_loadb(h.body, h.body_len, 0, NULL);
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
