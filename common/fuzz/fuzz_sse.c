/* Fuzz target: the SSE parser, fed the input in pieces whose sizes come from the input itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tollgate/sse.h"

static int
on_event(void *ctx, const tg_sse_event_t *ev)
{
    size_t *total = ctx;
    *total += ev->raw_len;
    /* touch every byte handed out */
    volatile char sink = 0;
    for (size_t i = 0; i < ev->data_len; i++)
        sink ^= ev->data[i];
    (void)sink;
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_sse_parser_t p;
    size_t total = 0, off = 0;
    tg_sse_init(&p, 4096);
    while (off < size) {
        size_t piece = 1 + data[off] % 17;
        if (piece > size - off)
            piece = size - off;
        char *copy = malloc(piece);
        memcpy(copy, data + off, piece);
        int rv = tg_sse_feed(&p, copy, piece, on_event, &total);
        free(copy);
        if (rv != 0)
            break;
        off += piece;
    }
    /* every byte fed went out in exactly one event or is still held back */
    if (off == size && total + tg_sse_pending(&p) != size)
        abort();
    tg_sse_dispose(&p);
    return 0;
}
