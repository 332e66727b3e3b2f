/* Fuzz target: the event-stream framing and the ConverseStream decoder behind it. The first byte picks a
 * split point (frames crossing feeds) and whether the request asked for JSON output (the forced-tool
 * path); every decoded frame goes to the provider's stream_frame. A second mode feeds "event\npayload"
 * straight to stream_frame, so the JSON handling is reached without valid CRCs. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "translate/bedrock/eventstream.h"

extern const tx_provider_ops_t tx_bedrock_provider;

typedef struct {
    tx_stream_state_t *st;
    const tx_request_t *r;
    tg_arena_t *a;
    tx_error_t err;
    size_t events;
} ctx_t;

static int
on_event(void *ctx, const tx_event_t *ev)
{
    ctx_t *c = ctx;
    c->events++;
    /* touch what the event points at, so that ASan sees any dangling pointer */
    volatile size_t sink = 0;
    for (size_t i = 0; ev->text != NULL && i < ev->text_len; i++)
        sink += (unsigned char)ev->text[i];
    if (ev->name != NULL)
        sink += strlen(ev->name);
    if (ev->id != NULL)
        sink += strlen(ev->id);
    if (ev->kind == TX_EV_ERROR && (ev->error == NULL || ev->error->message[0] == '\0'))
        abort(); /* an error event always explains itself */
    (void)sink;
    return 0;
}

static int
on_frame(void *ctx, const tx_frame_t *f)
{
    ctx_t *c = ctx;
    tx_bedrock_provider.stream_frame(c->st, c->r, f, c->a, on_event, c, &c->err); /* a bad frame: keep going */
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r = {.op = TX_OP_CHAT, .stream = 1, .format = (mode & 1) ? TX_FORMAT_JSON_OBJECT : TX_FORMAT_TEXT};
    tx_stream_state_t *st = tg_arena_alloc(&a, tx_bedrock_provider.stream_state_size);
    ctx_t c = {.st = st, .r = &r, .a = &a};
    if (mode & 2) {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t el = nl ? (size_t)(nl - data) : size;
        tx_frame_t f = {.event = (const char *)data, .event_len = el, .exception = (mode & 4) != 0};
        f.data = nl ? (const char *)nl + 1 : "";
        f.data_len = nl ? size - el - 1 : 0;
        on_frame(&c, &f);
    } else {
        tx_eventstream_t s = {0};
        size_t cut = size ? (size_t)(mode >> 2) * size / 64 : 0;
        if (tx_eventstream_feed(&s, (const char *)data, cut, on_frame, &c, &c.err) == 0)
            tx_eventstream_feed(&s, (const char *)data + cut, size - cut, on_frame, &c, &c.err);
        tx_eventstream_dispose(&s);
    }
    tg_arena_free(&a);
    return 0;
}
