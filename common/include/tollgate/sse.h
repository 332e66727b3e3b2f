/*
 * Incremental Server-Sent Events parser with bounded memory.
 *
 * Bytes arrive in arbitrary pieces; each complete event (ended by a blank line) is handed to a callback
 * with both its raw bytes, so a proxy can forward it verbatim, and its decoded data (data lines joined
 * with "\n"). Accepts "\n", "\r\n" and "\r" line endings, ignores comment lines for data, and keeps at
 * most `max_event` bytes of one event.
 */
#ifndef TOLLGATE_SSE_H
#define TOLLGATE_SSE_H

#include <stddef.h>

typedef struct tg_sse_event {
    const char *raw; /* the event exactly as received, through its terminating blank line */
    size_t raw_len;
    const char *data; /* data lines joined by "\n"; valid only during the callback */
    size_t data_len;
    int has_data;
    const char *event; /* the `event:` field, or "" */
    size_t event_len;
} tg_sse_event_t;

/* Return 0 to go on, anything else to stop tg_sse_feed() with that value. */
typedef int (*tg_sse_cb)(void *ctx, const tg_sse_event_t *ev);

typedef struct tg_sse_parser {
    char *raw;
    size_t raw_len, raw_cap;
    size_t scan; /* bytes of raw already split into lines */
    size_t line_start, event_start;
    char *data; /* joined data lines, when there is more than one or the event spans feeds */
    size_t data_len, data_cap;
    const char *data_ref; /* the only data line so far, where it was read (data_owned == 0) */
    int has_data, data_owned;
    char event[64];
    size_t event_len;
    size_t max_event;
    int after_cr;
} tg_sse_parser_t;

void tg_sse_init(tg_sse_parser_t *p, size_t max_event);
void tg_sse_dispose(tg_sse_parser_t *p);

/* 0 when all bytes were consumed, -1 when an event exceeds max_event (or memory ran out), else the
 * callback's non-zero return. */
int tg_sse_feed(tg_sse_parser_t *p, const char *buf, size_t len, tg_sse_cb cb, void *ctx);

/* Bytes of an unfinished event held back (the stream ended mid-event when this is not 0 at the end). */
size_t tg_sse_pending(const tg_sse_parser_t *p);

#endif
