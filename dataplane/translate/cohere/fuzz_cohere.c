/*
 * Fuzz target for the Cohere provider's decoders. The first byte picks the decoder: chat response,
 * embed response, error body, or an SSE stream cut into frames by tg_sse. Properties checked besides
 * memory safety: events are well formed and nothing follows TX_EV_END or TX_EV_ERROR.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "translate/tx.h"
#include "tollgate/sse.h"

extern const tx_provider_ops_t tx_cohere_provider;

struct ctx {
    void *st;
    tg_arena_t *a;
    int finished;
};

static int
check(void *p, const tx_event_t *ev)
{
    struct ctx *c = p;
    if (c->finished)
        abort();
    if ((ev->kind == TX_EV_TEXT || ev->kind == TX_EV_TOOL_ARGS || ev->kind == TX_EV_THINKING) &&
        (ev->text == NULL || ev->index < 0 || strlen(ev->text) > ev->text_len))
        abort();
    if (ev->kind == TX_EV_TOOL_START && ev->name == NULL)
        abort();
    if (ev->kind == TX_EV_ERROR && (ev->error == NULL || ev->error->message[0] == '\0'))
        abort();
    if (ev->kind == TX_EV_END || ev->kind == TX_EV_ERROR)
        c->finished = 1;
    return 0;
}

static int
on_sse(void *p, const tg_sse_event_t *ev)
{
    struct ctx *c = p;
    tx_frame_t f = {.event = ev->event_len ? ev->event : NULL,
                    .event_len = ev->event_len,
                    .data = ev->data,
                    .data_len = ev->data_len};
    tx_request_t r = {.op = TX_OP_CHAT, .stream = 1};
    tx_error_t err;
    int rc = tx_cohere_provider.stream_frame(c->st, &r, &f, c->a, check, c, &err);
    return rc == -1 ? 0 : rc; /* an unreadable frame: go on, the adapter must stay consistent */
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
    switch (data[0] % 4) {
    case 0:
    case 1: {
        tx_request_t r = {.op = data[0] % 4 == 0 ? TX_OP_CHAT : TX_OP_EMBED};
        if (tx_cohere_provider.decode_response(&r, body, len, &a, &resp, &err) == 0)
            for (size_t i = 0; i < resp.n_parts; i++)
                if (resp.parts[i].kind == TX_PART_TOOL_CALL && !json_is_object(resp.parts[i].args))
                    abort();
        break;
    }
    case 2:
        tx_cohere_provider.decode_error(400 + (int)(len % 200), body, len, &err);
        if (err.message[0] == '\0')
            abort();
        break;
    case 3: {
        struct ctx c = {calloc(1, tx_cohere_provider.stream_state_size), &a, 0};
        tg_sse_parser_t p;
        tg_sse_init(&p, 1 << 16);
        tg_sse_feed(&p, body, len, on_sse, &c);
        tg_sse_dispose(&p);
        free(c.st);
        break;
    }
    }
    tg_arena_free(&a);
    return 0;
}
