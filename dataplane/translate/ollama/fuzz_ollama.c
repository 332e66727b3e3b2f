/*
 * Fuzz target for the Ollama native provider's decoders. The first byte picks the decoder: chat
 * response, embed response, error body, or an NDJSON stream cut into lines. Properties checked besides
 * memory safety: events are well formed and nothing follows TX_EV_END or TX_EV_ERROR.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "translate/tx.h"

extern const tx_provider_ops_t tx_ollama_native_provider;

static int
check(void *p, const tx_event_t *ev)
{
    int *finished = p;
    if (*finished)
        abort();
    if ((ev->kind == TX_EV_TEXT || ev->kind == TX_EV_TOOL_ARGS || ev->kind == TX_EV_THINKING) &&
        (ev->text == NULL || ev->index < 0 || strlen(ev->text) > ev->text_len))
        abort();
    if (ev->kind == TX_EV_TOOL_START && (ev->name == NULL || ev->id == NULL))
        abort();
    if (ev->kind == TX_EV_ERROR && (ev->error == NULL || ev->error->message[0] == '\0'))
        abort();
    if (ev->kind == TX_EV_END || ev->kind == TX_EV_ERROR)
        *finished = 1;
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    tg_arena_t a = TG_ARENA_INIT;
    tx_error_t err;
    tx_response_t resp;
    tx_request_t r = {.op = TX_OP_CHAT, .request_id = "req_fuzz"};
    switch (data[0] % 4) {
    case 0:
    case 1:
        r.op = data[0] % 4 == 0 ? TX_OP_CHAT : TX_OP_EMBED;
        if (tx_ollama_native_provider.decode_response(&r, body, len, &a, &resp, &err) == 0)
            for (size_t i = 0; i < resp.n_parts; i++)
                if (resp.parts[i].kind == TX_PART_TOOL_CALL &&
                    (!json_is_object(resp.parts[i].args) || !resp.parts[i].id))
                    abort();
        break;
    case 2:
        tx_ollama_native_provider.decode_error(400 + (int)(len % 200), body, len, &err);
        if (err.message[0] == '\0')
            abort();
        break;
    case 3: {
        void *st = calloc(1, tx_ollama_native_provider.stream_state_size);
        int finished = 0;
        r.stream = 1;
        for (size_t at = 0; at < len;) {
            const char *nl = memchr(body + at, '\n', len - at);
            size_t n = nl != NULL ? (size_t)(nl - (body + at)) : len - at;
            tx_frame_t f = {.data = body + at, .data_len = n};
            tx_ollama_native_provider.stream_frame(st, &r, &f, &a, check, &finished, &err);
            at += n + 1;
        }
        free(st);
        break;
    }
    }
    tg_arena_free(&a);
    return 0;
}
