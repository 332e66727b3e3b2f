/*
 * Fuzz target: the OpenAI-family provider decoders. The first byte picks the decoder: a 2xx body (then
 * encoded back out by the OpenAI dialect), an error body, or an SSE stream (framed, decoded event by
 * event and re-encoded by the OpenAI dialect). Properties: no crash, no leak; every decoded error has a
 * message; every client body and every `data:` payload the dialect writes is JSON.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tollgate/sse.h"
#include "translate/tx.h"

extern const tx_dialect_ops_t tx_openai_dialect;
extern const tx_provider_ops_t tx_openai_provider, tx_azure_provider, tx_mistral_provider, tx_groq_provider;

static void
must_be_json(const char *p, size_t n)
{
    json_t *v = json_loadb(p, n, 0, NULL);
    if (v == NULL)
        abort();
    json_decref(v);
}

/* Every event the dialect writes is `data: <json>\n\n` or `data: [DONE]\n\n`. */
static void
check_sse(const tg_buf_t *b)
{
    const char *p = b->base, *end = b->base + b->len;
    while (p < end) {
        const char *sep = memmem(p, (size_t)(end - p), "\n\n", 2);
        if (sep == NULL || (size_t)(sep - p) < 6 || memcmp(p, "data: ", 6) != 0)
            abort();
        if (!((size_t)(sep - p) == 12 && memcmp(p + 6, "[DONE]", 6) == 0))
            must_be_json(p + 6, (size_t)(sep - p - 6));
        p = sep + 2;
    }
}

typedef struct {
    const tx_provider_ops_t *p;
    tx_stream_state_t *up, *client;
    tx_request_t *r;
    tg_arena_t *a;
    tg_buf_t out;
    int over;
} ctx_t;

static int
on_event(void *vc, const tx_event_t *ev)
{
    ctx_t *c = vc;
    if (c->over)
        abort(); /* nothing follows END or ERROR */
    if (ev->kind == TX_EV_END || ev->kind == TX_EV_ERROR)
        c->over = 1;
    if (tx_openai_dialect.stream_event(c->client, c->r, ev, &c->out) != 0)
        abort();
    return 0;
}

static int
on_sse(void *vc, const tg_sse_event_t *ev)
{
    ctx_t *c = vc;
    if (!ev->has_data)
        return 0;
    tx_frame_t f = {.data = ev->data, .data_len = ev->data_len};
    tx_error_t err = {0};
    int rc = c->p->stream_frame(c->up, c->r, &f, c->a, on_event, c, &err);
    if (rc == -1 && err.message[0] == '\0')
        abort();
    return rc == -1 ? 1 : 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const tx_provider_ops_t *ps[] = {&tx_openai_provider, &tx_azure_provider, &tx_mistral_provider, &tx_groq_provider};
    const tx_provider_ops_t *p = ps[(data[0] >> 2) & 3];
    static const tx_op_t ops[] = {TX_OP_CHAT, TX_OP_COMPLETION, TX_OP_EMBED, TX_OP_CHAT};
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r = {.op = ops[(data[0] >> 4) & 3],
                      .model = "m",
                      .request_id = "req",
                      .include_usage = data[0] >> 6 & 1,
                      .base64_embedding = data[0] >> 7};
    tx_error_t err = {0};
    switch (data[0] & 3) {
    case 0: {
        tx_response_t resp;
        if (p->decode_response(&r, body, len, &a, &resp, &err) == 0) {
            tg_buf_t out = {0};
            if (tx_openai_dialect.encode_response(&r, &resp, &a, &out) != 0)
                abort();
            must_be_json(out.base, out.len);
            tg_buf_free(&out);
        } else if (err.message[0] == '\0') {
            abort();
        }
        break;
    }
    case 1: {
        p->decode_error(400 + (int)(len % 200), body, len, &err);
        if (err.message[0] == '\0')
            abort();
        tg_buf_t out = {0};
        int status = tx_openai_dialect.encode_error(&err, "req", &out);
        if (status < 400 || status > 599)
            abort();
        must_be_json(out.base, out.len);
        tg_buf_free(&out);
        break;
    }
    default: {
        if (r.op == TX_OP_EMBED)
            r.op = TX_OP_CHAT;
        r.stream = 1;
        ctx_t c = {.p = p, .r = &r, .a = &a};
        c.up = tg_arena_alloc(&a, p->stream_state_size);
        c.client = tg_arena_alloc(&a, tx_openai_dialect.stream_state_size);
        tg_sse_parser_t sse;
        tg_sse_init(&sse, 1 << 16);
        tg_sse_feed(&sse, body, len, on_sse, &c);
        tg_sse_dispose(&sse);
        check_sse(&c.out);
        tg_buf_free(&c.out);
        break;
    }
    }
    tg_arena_free(&a);
    return 0;
}
