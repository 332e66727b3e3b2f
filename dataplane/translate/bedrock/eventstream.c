/*
 * AWS event-stream frame decoder and encoder (see eventstream.h).
 *
 * Design: complete frames in the caller's bytes are decoded in place; only the tail of a frame split
 * across feeds is copied into s->buf, and a buffered frame is completed with just the bytes it lacks,
 * so the buffer never holds more than one frame. The prelude (and its CRC) is checked as soon as its
 * 12 bytes are in hand, so a garbage or oversized length is refused before anything is buffered for it.
 */
#include <string.h>
#include <zlib.h>
#include "translate/bedrock/eventstream.h"

#define PRELUDE_LEN 12
#define MIN_FRAME   16 /* prelude + message CRC */

static uint32_t
be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t
crc(const unsigned char *p, size_t n)
{
    return (uint32_t)crc32(0L, p, (uInt)n);
}

/* Checks a 12-byte prelude; returns the frame's total length, or 0 with err filled. */
static uint32_t
check_prelude(const unsigned char *p, tx_error_t *err)
{
    uint32_t total = be32(p), hlen = be32(p + 4);
    if (crc(p, 8) != be32(p + 8)) {
        tx_fail(err, TX_ERR_UPSTREAM, "bad_eventstream", NULL, "The provider's event stream has a bad prelude CRC.");
        return 0;
    }
    if (total < MIN_FRAME || hlen > total - MIN_FRAME || hlen > TX_EVENTSTREAM_MAX_HEADERS ||
        total - MIN_FRAME - hlen > TX_EVENTSTREAM_MAX_PAYLOAD) {
        tx_fail(err, TX_ERR_UPSTREAM, "bad_eventstream", NULL,
                "The provider's event stream has a frame of invalid size (%u bytes, %u of headers).", total, hlen);
        return 0;
    }
    return total;
}

typedef struct {
    const char *p;
    size_t n;
} str_t;

/* Walks the headers block, keeping the string headers the frame needs. 0 or -1. */
static int
parse_headers(const unsigned char *h, size_t n, str_t *mtype, str_t *etype, str_t *xtype, str_t *ecode, str_t *emsg)
{
    size_t at = 0;
    while (at < n) {
        size_t name_len = h[at++];
        if (name_len == 0 || name_len > n - at)
            return -1;
        const char *name = (const char *)h + at;
        at += name_len;
        if (at >= n)
            return -1;
        unsigned type = h[at++];
        size_t vlen;
        switch (type) {
        case 0: /* true */
        case 1: /* false */
            vlen = 0;
            break;
        case 2: /* byte */
            vlen = 1;
            break;
        case 3: /* short */
            vlen = 2;
            break;
        case 4: /* int */
            vlen = 4;
            break;
        case 5: /* long */
        case 8: /* timestamp */
            vlen = 8;
            break;
        case 9: /* uuid */
            vlen = 16;
            break;
        case 6: /* byte array */
        case 7: /* string */
            if (n - at < 2)
                return -1;
            vlen = (size_t)h[at] << 8 | h[at + 1];
            at += 2;
            break;
        default:
            return -1;
        }
        if (vlen > n - at)
            return -1;
        if (type == 7) {
            str_t v = {(const char *)h + at, vlen};
#define IS(lit) (name_len == sizeof(lit) - 1 && memcmp(name, lit, name_len) == 0)
            if (IS(":message-type"))
                *mtype = v;
            else if (IS(":event-type"))
                *etype = v;
            else if (IS(":exception-type"))
                *xtype = v;
            else if (IS(":error-code"))
                *ecode = v;
            else if (IS(":error-message"))
                *emsg = v;
#undef IS
        }
        at += vlen;
    }
    return 0;
}

/* One complete frame of `total` bytes whose prelude was checked. */
static int
decode_frame(const unsigned char *p, uint32_t total, int (*on_frame)(void *, const tx_frame_t *), void *ctx,
             tx_error_t *err)
{
    if (crc(p, total - 4) != be32(p + total - 4))
        return tx_fail(err, TX_ERR_UPSTREAM, "bad_eventstream", NULL,
                       "The provider's event stream has a bad message CRC.");
    uint32_t hlen = be32(p + 4);
    str_t mtype = {0}, etype = {0}, xtype = {0}, ecode = {0}, emsg = {0};
    if (parse_headers(p + PRELUDE_LEN, hlen, &mtype, &etype, &xtype, &ecode, &emsg) != 0)
        return tx_fail(err, TX_ERR_UPSTREAM, "bad_eventstream", NULL,
                       "The provider's event stream has a frame with malformed headers.");
    tx_frame_t f = {
        .data = (const char *)p + PRELUDE_LEN + hlen,
        .data_len = total - MIN_FRAME - hlen,
    };
    if (mtype.p != NULL && mtype.n == 9 && memcmp(mtype.p, "exception", 9) == 0) {
        f.exception = 1;
        f.event = xtype.p;
        f.event_len = xtype.n;
    } else if (mtype.p != NULL && mtype.n == 5 && memcmp(mtype.p, "error", 5) == 0) {
        f.exception = 1;
        f.event = ecode.p;
        f.event_len = ecode.n;
        if (f.data_len == 0) {
            f.data = emsg.p;
            f.data_len = emsg.n;
        }
    } else {
        f.event = etype.p;
        f.event_len = etype.n;
    }
    if (f.data == NULL)
        f.data = "";
    return on_frame(ctx, &f);
}

int
tx_eventstream_feed(tx_eventstream_t *s, const char *data, size_t len, int (*on_frame)(void *ctx, const tx_frame_t *f),
                    void *ctx, tx_error_t *err)
{
    const unsigned char *p = (const unsigned char *)data;
    int rc;

    /* first finish the frame carried over from the last feed, taking only the bytes it lacks */
    if (s->buf.len > 0) {
        if (s->buf.len < PRELUDE_LEN) {
            size_t take = PRELUDE_LEN - s->buf.len < len ? PRELUDE_LEN - s->buf.len : len;
            if (tg_buf_append(&s->buf, p, take) != 0)
                return tx_fail(err, TX_ERR_SERVER, "out_of_memory", NULL, "The gateway ran out of memory.");
            p += take;
            len -= take;
            if (s->buf.len < PRELUDE_LEN)
                return 0;
        }
        uint32_t total = check_prelude((const unsigned char *)s->buf.base, err);
        if (total == 0)
            return -1;
        size_t take = total - s->buf.len < len ? total - s->buf.len : len;
        if (tg_buf_append(&s->buf, p, take) != 0)
            return tx_fail(err, TX_ERR_SERVER, "out_of_memory", NULL, "The gateway ran out of memory.");
        p += take;
        len -= take;
        if (s->buf.len < total)
            return 0;
        s->buf.len = 0; /* the frame is consumed whatever the callback says */
        if ((rc = decode_frame((const unsigned char *)s->buf.base, total, on_frame, ctx, err)) != 0)
            return rc;
    }

    /* then every complete frame in place */
    while (len >= PRELUDE_LEN) {
        uint32_t total = check_prelude(p, err);
        if (total == 0)
            return -1;
        if (len < total)
            break;
        if ((rc = decode_frame(p, total, on_frame, ctx, err)) != 0)
            return rc;
        p += total;
        len -= total;
    }
    if (len > 0 && tg_buf_append(&s->buf, p, len) != 0)
        return tx_fail(err, TX_ERR_SERVER, "out_of_memory", NULL, "The gateway ran out of memory.");
    return 0;
}

size_t
tx_eventstream_pending(const tx_eventstream_t *s)
{
    return s->buf.len;
}

void
tx_eventstream_dispose(tx_eventstream_t *s)
{
    tg_buf_free(&s->buf);
    memset(s, 0, sizeof(*s));
}

static void
put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static int
put_string_header(tg_buf_t *out, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    if (nl > 255 || vl > 65535)
        return -1;
    unsigned char pre[1] = {(unsigned char)nl}, mid[3] = {7, (unsigned char)(vl >> 8), (unsigned char)vl};
    if (tg_buf_append(out, pre, 1) != 0 || tg_buf_append(out, name, nl) != 0 || tg_buf_append(out, mid, 3) != 0 ||
        tg_buf_append(out, value, vl) != 0)
        return -1;
    return 0;
}

int
tx_eventstream_encode(tg_buf_t *out, const char *message_type, const char *event_type, const char *payload, size_t len)
{
    if (len > TX_EVENTSTREAM_MAX_PAYLOAD)
        return -1;
    size_t start = out->len;
    unsigned char prelude[PRELUDE_LEN] = {0};
    int exception = strcmp(message_type, "event") != 0;
    if (tg_buf_append(out, prelude, PRELUDE_LEN) != 0 || put_string_header(out, ":message-type", message_type) != 0 ||
        put_string_header(out, exception ? ":exception-type" : ":event-type", event_type) != 0 ||
        put_string_header(out, ":content-type", "application/json") != 0 || tg_buf_append(out, payload, len) != 0 ||
        tg_buf_reserve(out, 4) != 0) {
        out->len = start;
        return -1;
    }
    uint32_t hlen = (uint32_t)(out->len - start - PRELUDE_LEN - len), total = (uint32_t)(out->len - start + 4);
    unsigned char *f = (unsigned char *)out->base + start;
    put32(f, total);
    put32(f + 4, hlen);
    put32(f + 8, crc(f, 8));
    put32(f + total - 4, crc(f, total - 4));
    out->len += 4;
    return 0;
}
