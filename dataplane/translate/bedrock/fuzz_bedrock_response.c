/* Fuzz target: Bedrock's non-stream answers: a Converse response (plain and with JSON output through a
 * forced tool), a Titan embedding, a token count, and an error body for a status the first byte picks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "translate/tx.h"

extern const tx_provider_ops_t tx_bedrock_provider;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int statuses[] = {400, 401, 403, 404, 408, 413, 424, 429, 500, 502, 503, 504, 529, 418};
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    const char *body = (const char *)data + 1;
    size--;

    tx_error_t err = {0};
    tx_bedrock_provider.decode_error(statuses[mode % (sizeof(statuses) / sizeof(statuses[0]))], body, size, &err);
    if (err.message[0] == '\0')
        abort(); /* decode_error always fills err */

    static const tx_op_t ops[] = {TX_OP_CHAT, TX_OP_CHAT, TX_OP_EMBED, TX_OP_COUNT_TOKENS};
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r = {.op = ops[mode & 3], .format = (mode & 4) ? TX_FORMAT_JSON_SCHEMA : TX_FORMAT_TEXT};
    tx_response_t resp;
    if (tx_bedrock_provider.decode_response(&r, body, size, &a, &resp, &err) == 0) {
        for (size_t i = 0; i < resp.n_parts; i++) {
            const tx_part_t *p = &resp.parts[i];
            if (p->text != NULL && strlen(p->text) > size * 8 + 16)
                abort();
            if (p->kind == TX_PART_TOOL_CALL)
                (void)tx_args_text(p, &a);
        }
        for (size_t i = 0; i < resp.n_embeddings; i++)
            for (size_t j = 0; j < resp.embeddings[i].n; j++)
                (void)resp.embeddings[i].values[j];
    }
    tg_arena_free(&a);
    return 0;
}
