/*
 * Fuzz target: the Gemini/Vertex provider decoders. The first byte picks one: a generateContent,
 * embedding or countTokens response, an error body, or a stream (the rest split into frames at '\n').
 * Decoded responses and stream events are then encoded by the Gemini dialect, and the output must be
 * JSON (responses) or well-formed "data: <JSON>\n\n" chunks (streams).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "translate/tx.h"

extern const tx_dialect_ops_t tx_gemini_dialect;
extern const tx_provider_ops_t tx_gemini_provider;

struct sink {
    tx_stream_state_t *st;
    tx_request_t *r;
    tg_buf_t out;
};

static int
on_event(void *ctx, const tx_event_t *ev)
{
    struct sink *s = ctx;
    if (ev->kind == TX_EV_ERROR && (ev->error == NULL || ev->error->message[0] == '\0'))
        abort();
    tx_gemini_dialect.stream_event(s->st, s->r, ev, &s->out);
    return 0;
}

static void
check_chunks(const tg_buf_t *b)
{
    size_t at = 0;
    while (at < b->len) {
        if (b->len - at < 8 || memcmp(b->base + at, "data: ", 6) != 0)
            abort();
        const char *end = memmem(b->base + at, b->len - at, "\n\n", 2);
        if (end == NULL)
            abort();
        json_t *v = json_loadb(b->base + at + 6, (size_t)(end - b->base - at - 6), 0, NULL);
        if (!json_is_object(v))
            abort();
        json_decref(v);
        at = (size_t)(end - b->base) + 2;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r = {.model = "m", .request_id = "req", .max_tokens = -1, .top_k = -1, .dimensions = -1};
    tx_error_t err;
    int mode = data[0] % 5;
    if (mode <= 2) {
        static const tx_op_t ops[] = {TX_OP_CHAT, TX_OP_EMBED, TX_OP_COUNT_TOKENS};
        r.op = ops[mode];
        tx_response_t resp;
        if (tx_gemini_provider.decode_response(&r, body, len, &a, &resp, &err) == 0) {
            tg_buf_t out = {0};
            if (tx_gemini_dialect.encode_response(&r, &resp, &a, &out) == 0) {
                json_t *v = json_loadb(out.base, out.len, 0, NULL);
                if (!json_is_object(v))
                    abort();
                json_decref(v);
            }
            tg_buf_free(&out);
        } else if (err.kind != TX_ERR_UPSTREAM && err.kind != TX_ERR_SERVER) {
            abort();
        }
    } else if (mode == 3) {
        tx_gemini_provider.decode_error(400 + data[0] % 200, body, len, &err);
        if (err.message[0] == '\0')
            abort();
        tg_buf_t out = {0};
        tx_gemini_dialect.encode_error(&err, "req", &out);
        json_t *v = json_loadb(out.base, out.len, 0, NULL);
        if (!json_is_object(v))
            abort();
        json_decref(v);
        tg_buf_free(&out);
    } else {
        r.stream = 1;
        tx_stream_state_t *pst = calloc(1, tx_gemini_provider.stream_state_size);
        struct sink s = {.st = calloc(1, tx_gemini_dialect.stream_state_size), .r = &r};
        const char *p = body, *end = body + len;
        int rc = 0;
        while (rc == 0 && p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
            tx_frame_t f = {.data = p, .data_len = n};
            rc = tx_gemini_provider.stream_frame(pst, &r, &f, &a, on_event, &s, &err);
            p += n + 1;
        }
        if (data[0] & 0x80) { /* the stream completes, or is abandoned */
            tx_event_t end_ev = {.kind = TX_EV_END};
            tx_gemini_dialect.stream_event(s.st, &r, &end_ev, &s.out);
        }
        tx_gemini_dialect.stream_dispose(s.st);
        check_chunks(&s.out);
        tg_buf_free(&s.out);
        free(s.st);
        free(pst);
    }
    tg_arena_free(&a);
    return 0;
}
