/*
 * AWS event-stream framing (application/vnd.amazon.eventstream), as Bedrock's ConverseStream sends it:
 * binary frames [total u32][headers_len u32][prelude_crc u32][headers][payload][message_crc u32], big
 * endian, both CRCs CRC-32 (IEEE). See shared/ref/providers.md §5.5.
 *
 * The decoder is incremental: feed it the bytes as they arrive; it buffers at most one partial frame
 * (bounded by the limits below) and hands every complete, verified frame to a callback as a tx_frame_t
 * whose pointers stay valid only during the call. Pure: no I/O, no clock.
 */
#ifndef DP_TX_EVENTSTREAM_H
#define DP_TX_EVENTSTREAM_H

#include <stddef.h>
#include "translate/tx.h"

#define TX_EVENTSTREAM_MAX_PAYLOAD (24u << 20)  /* 24 MiB */
#define TX_EVENTSTREAM_MAX_HEADERS (128u << 10) /* 128 KiB */

/* Zero-initialise; dispose when done. */
typedef struct tx_eventstream {
    tg_buf_t buf; /* the partial frame carried over between feeds */
} tx_eventstream_t;

/*
 * Decodes every complete frame in what was buffered plus data[0..len). For each: on_frame(ctx, f) with
 * f->event = :event-type (events), or :exception-type / :error-code with f->exception = 1; f->data =
 * the payload (for an "error" message without payload, the :error-message header's text).
 * Returns 0, the callback's non-zero return (decoding stops there), or -1 with err (TX_ERR_UPSTREAM) on
 * a malformed frame, a CRC mismatch or a frame over the limits; after -1 the stream is unusable.
 */
int tx_eventstream_feed(tx_eventstream_t *s, const char *data, size_t len,
                        int (*on_frame)(void *ctx, const tx_frame_t *f), void *ctx, tx_error_t *err);
/* Bytes of an incomplete frame held back (non-zero at the end of a stream: it was cut mid-frame). */
size_t tx_eventstream_pending(const tx_eventstream_t *s);
void tx_eventstream_dispose(tx_eventstream_t *s);

/*
 * Appends one frame to out: headers :message-type = message_type ("event" or "exception"), then
 * :event-type = event_type for events or :exception-type = event_type otherwise, and :content-type
 * application/json; the payload as given. For the mock provider and tests. 0 or -1.
 */
int tx_eventstream_encode(tg_buf_t *out, const char *message_type, const char *event_type, const char *payload,
                          size_t len);

#endif
