/* Fuzz target: upstream SSE bytes through the Anthropic provider's stream decoder and the Anthropic
 * dialect's stream encoder, as the pipeline chains them. Every data line the dialect writes must be JSON
 * and nothing may follow its error or its end. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "translate/tx.h"
#include "tollgate/sse.h"

extern const tx_dialect_ops_t tx_anthropic_dialect;
extern const tx_provider_ops_t tx_anthropic_provider;

struct ctx {
    tx_request_t r;
    tg_arena_t a;
    void *pstate, *dstate;
    tg_buf_t out;
    int finished;
};

static void
check(const char *p, size_t n)
{
    /* each event: "event: X\ndata: {json}\n\n" */
    const char *end = p + n;
    while (p < end) {
        const char *data = memmem(p, end - p, "\ndata: ", 7);
        if (data == NULL)
            abort();
        data += 7;
        const char *nl = memchr(data, '\n', end - data);
        if (nl == NULL)
            abort();
        json_t *v = json_loadb(data, nl - data, JSON_ALLOW_NUL, NULL);
        if (!json_is_object(v))
            abort();
        json_decref(v);
        p = nl + 2;
    }
}

static int
on_event(void *p, const tx_event_t *ev)
{
    struct ctx *c = p;
    if (c->finished)
        abort(); /* nothing after TX_EV_END or TX_EV_ERROR */
    c->finished = ev->kind == TX_EV_END || ev->kind == TX_EV_ERROR;
    c->out.len = 0;
    if (tx_anthropic_dialect.stream_event(c->dstate, &c->r, ev, &c->out) != 0)
        abort();
    check(c->out.base, c->out.len);
    return 0;
}

static int
on_sse(void *p, const tg_sse_event_t *e)
{
    struct ctx *c = p;
    tx_frame_t f = {.event = e->event, .event_len = e->event_len, .data = e->data, .data_len = e->data_len};
    tx_error_t err;
    return tx_anthropic_provider.stream_frame(c->pstate, &c->r, &f, &c->a, on_event, c, &err) != 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0; /* tg_sse_feed of 0 bytes on a fresh parser does NULL + 0 (reported to the lead) */
    struct ctx c = {.r = {.op = TX_OP_CHAT,
                          .stream = 1,
                          .model = "m",
                          .request_id = "req",
                          .format = data[0] & 1 ? TX_FORMAT_JSON_OBJECT : TX_FORMAT_TEXT}};
    c.pstate = calloc(1, tx_anthropic_provider.stream_state_size);
    c.dstate = calloc(1, tx_anthropic_dialect.stream_state_size);
    tg_sse_parser_t sp;
    tg_sse_init(&sp, 1 << 20);
    tg_sse_feed(&sp, (const char *)data + 1, size - 1, on_sse, &c);
    tg_sse_dispose(&sp);
    free(c.pstate);
    free(c.dstate);
    tg_buf_free(&c.out);
    tg_arena_free(&c.a);
    return 0;
}
