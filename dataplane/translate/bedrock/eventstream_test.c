/* Unit tests for the AWS event-stream framing: round trips, split feeds, every header type, CRC and size
 * checks, exception and error messages. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>
#include "translate/bedrock/eventstream.h"

typedef struct {
    int n;
    char events[8][64];
    char data[8][256];
    int exception[8];
    int stop_at; /* return 1 from this frame on (0: never) */
} seen_t;

static int
on_frame(void *ctx, const tx_frame_t *f)
{
    seen_t *s = ctx;
    if (s->n < 8) {
        snprintf(s->events[s->n], sizeof(s->events[0]), "%.*s", (int)f->event_len, f->event ? f->event : "");
        snprintf(s->data[s->n], sizeof(s->data[0]), "%.*s", (int)f->data_len, f->data);
        s->exception[s->n] = f->exception;
    }
    s->n++;
    return s->stop_at != 0 && s->n >= s->stop_at ? 1 : 0;
}

static void
build_stream(tg_buf_t *b)
{
    static const char *const frames[][3] = {
        {"event", "messageStart", "{\"role\":\"assistant\"}"},
        {"event", "contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"Hi\"},\"p\":\"abcd\"}"},
        {"exception", "throttlingException", "{\"message\":\"slow down\"}"},
    };
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(tx_eventstream_encode(b, frames[i][0], frames[i][1], frames[i][2], strlen(frames[i][2])), 0);
}

static void
test_roundtrip_one_feed(void **state)
{
    tg_buf_t b = {0};
    build_stream(&b);
    tx_eventstream_t s = {0};
    seen_t seen = {0};
    tx_error_t err = {0};
    assert_int_equal(tx_eventstream_feed(&s, b.base, b.len, on_frame, &seen, &err), 0);
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.events[0], "messageStart");
    assert_string_equal(seen.data[0], "{\"role\":\"assistant\"}");
    assert_string_equal(seen.events[1], "contentBlockDelta");
    assert_int_equal(seen.exception[1], 0);
    assert_string_equal(seen.events[2], "throttlingException");
    assert_int_equal(seen.exception[2], 1);
    assert_string_equal(seen.data[2], "{\"message\":\"slow down\"}");
    assert_int_equal(tx_eventstream_pending(&s), 0);
    tx_eventstream_dispose(&s);
    tg_buf_free(&b);
}

/* Every split point, and byte by byte: frames cross feeds in any way. */
static void
test_split_feeds(void **state)
{
    tg_buf_t b = {0};
    build_stream(&b);
    for (size_t cut = 0; cut <= b.len; cut++) {
        tx_eventstream_t s = {0};
        seen_t seen = {0};
        tx_error_t err = {0};
        assert_int_equal(tx_eventstream_feed(&s, b.base, cut, on_frame, &seen, &err), 0);
        assert_int_equal(tx_eventstream_feed(&s, b.base + cut, b.len - cut, on_frame, &seen, &err), 0);
        assert_int_equal(seen.n, 3);
        assert_string_equal(seen.data[1], "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"Hi\"},\"p\":\"abcd\"}");
        assert_int_equal(tx_eventstream_pending(&s), 0);
        tx_eventstream_dispose(&s);
    }
    tx_eventstream_t s = {0};
    seen_t seen = {0};
    tx_error_t err = {0};
    for (size_t i = 0; i < b.len; i++) {
        assert_int_equal(tx_eventstream_feed(&s, b.base + i, 1, on_frame, &seen, &err), 0);
        if (i + 1 < b.len)
            assert_true(seen.n < 3);
    }
    assert_int_equal(seen.n, 3);
    tx_eventstream_dispose(&s);
    tg_buf_free(&b);
}

static void
test_pending_when_cut(void **state)
{
    tg_buf_t b = {0};
    build_stream(&b);
    tx_eventstream_t s = {0};
    seen_t seen = {0};
    tx_error_t err = {0};
    assert_int_equal(tx_eventstream_feed(&s, b.base, b.len - 5, on_frame, &seen, &err), 0);
    assert_int_equal(seen.n, 2);
    assert_true(tx_eventstream_pending(&s) > 0);
    tx_eventstream_dispose(&s);
    assert_int_equal(tx_eventstream_pending(&s), 0);
    tg_buf_free(&b);
}

static void
test_callback_stops(void **state)
{
    tg_buf_t b = {0};
    build_stream(&b);
    tx_eventstream_t s = {0};
    seen_t seen = {.stop_at = 2};
    tx_error_t err = {0};
    assert_int_equal(tx_eventstream_feed(&s, b.base, b.len, on_frame, &seen, &err), 1);
    assert_int_equal(seen.n, 2);
    tx_eventstream_dispose(&s);
    tg_buf_free(&b);
}

static void
put32(unsigned char *p, uint32_t v)
{
    p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}

/* A frame by hand: headers of every value type, then an :event-type, then the payload. */
static size_t
hand_frame(unsigned char *f, const unsigned char *headers, size_t hlen, const char *payload)
{
    size_t plen = strlen(payload), total = 16 + hlen + plen;
    put32(f, total);
    put32(f + 4, hlen);
    put32(f + 8, crc32(0, f, 8));
    memcpy(f + 12, headers, hlen);
    memcpy(f + 12 + hlen, payload, plen);
    put32(f + total - 4, crc32(0, f, total - 4));
    return total;
}

static void
test_all_header_types(void **state)
{
    static const unsigned char h[] = {
        1,  'a', 0,                                                                                 /* true */
        1,  'b', 1,                                                                                 /* false */
        1,  'c', 2,   0x7f,                                                                         /* byte */
        1,  'd', 3,   0,    1,                                                                      /* short */
        1,  'e', 4,   0,    0,   0,   1,                                                            /* int */
        1,  'f', 5,   0,    0,   0,   0,    0,   0,   0,   1,                                       /* long */
        1,  'g', 6,   0,    3,   1,   2,    3,                                                      /* bytes */
        1,  'h', 7,   0,    2,   'h', 'i',                                                          /* string */
        1,  'i', 8,   0,    0,   1,   0x8f, 0,   0,   0,   0,                                       /* timestamp */
        1,  'j', 9,   1,    2,   3,   4,    5,   6,   7,   8,   9,   10, 11, 12, 13,  14,  15,  16, /* uuid */
        11, ':', 'e', 'v',  'e', 'n', 't',  '-', 't', 'y', 'p', 'e', 7,  0,  8,  'm', 'e', 't', 'a', 'd', 'a', 't', 'a',
    };
    unsigned char f[512];
    size_t n = hand_frame(f, h, sizeof(h), "{}");
    tx_eventstream_t s = {0};
    seen_t seen = {0};
    tx_error_t err = {0};
    assert_int_equal(tx_eventstream_feed(&s, (const char *)f, n, on_frame, &seen, &err), 0);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.events[0], "metadata");
    assert_string_equal(seen.data[0], "{}");
    tx_eventstream_dispose(&s);

    /* an unknown type (10) and a value running past the headers are malformed */
    static const unsigned char bad_type[] = {1, 'a', 10, 0};
    n = hand_frame(f, bad_type, sizeof(bad_type), "{}");
    assert_int_equal(tx_eventstream_feed(&s, (const char *)f, n, on_frame, &seen, &err), -1);
    assert_int_equal(err.kind, TX_ERR_UPSTREAM);
    tx_eventstream_dispose(&s);
    static const unsigned char overrun[] = {1, 'a', 7, 0, 9, 'x'};
    n = hand_frame(f, overrun, sizeof(overrun), "{}");
    assert_int_equal(tx_eventstream_feed(&s, (const char *)f, n, on_frame, &seen, &err), -1);
    tx_eventstream_dispose(&s);
}

static void
test_error_message_type(void **state)
{
    static const unsigned char h[] = {
        13,  ':', 'm', 'e', 's', 's', 'a', 'g', 'e', '-', 't', 'y', 'p', 'e', 7, 0, 5,   'e', 'r', 'r', 'o',
        'r', 11,  ':', 'e', 'r', 'r', 'o', 'r', '-', 'c', 'o', 'd', 'e', 7,   0, 4, 'B', 'o', 'o', 'm', 14,
        ':', 'e', 'r', 'r', 'o', 'r', '-', 'm', 'e', 's', 's', 'a', 'g', 'e', 7, 0, 3,   'b', 'a', 'd',
    };
    unsigned char f[256];
    size_t n = hand_frame(f, h, sizeof(h), "");
    tx_eventstream_t s = {0};
    seen_t seen = {0};
    tx_error_t err = {0};
    assert_int_equal(tx_eventstream_feed(&s, (const char *)f, n, on_frame, &seen, &err), 0);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.exception[0], 1);
    assert_string_equal(seen.events[0], "Boom");
    assert_string_equal(seen.data[0], "bad");
    tx_eventstream_dispose(&s);
}

static void
test_bad_crcs_and_sizes(void **state)
{
    tg_buf_t b = {0};
    assert_int_equal(tx_eventstream_encode(&b, "event", "messageStop", "{\"stopReason\":\"end_turn\"}", 25), 0);
    tx_error_t err = {0};
    seen_t seen = {0};
    for (int which = 0; which < 2; which++) {
        tg_buf_t c = {0};
        tg_buf_append(&c, b.base, b.len);
        c.base[which == 0 ? 9 : c.len - 10] ^= 1; /* prelude CRC / payload byte */
        tx_eventstream_t s = {0};
        assert_int_equal(tx_eventstream_feed(&s, c.base, c.len, on_frame, &seen, &err), -1);
        assert_int_equal(err.kind, TX_ERR_UPSTREAM);
        assert_non_null(strstr(err.message, "CRC"));
        tx_eventstream_dispose(&s);
        tg_buf_free(&c);
    }
    assert_int_equal(seen.n, 0);

    /* a frame claiming 64 MiB is refused from its prelude alone, before anything is buffered for it */
    unsigned char pre[12];
    put32(pre, 64u << 20);
    put32(pre + 4, 0);
    put32(pre + 8, crc32(0, pre, 8));
    tx_eventstream_t s = {0};
    assert_int_equal(tx_eventstream_feed(&s, (const char *)pre, 12, on_frame, &seen, &err), -1);
    assert_non_null(strstr(err.message, "size"));
    tx_eventstream_dispose(&s);
    /* headers over 128 KiB */
    put32(pre, 200u << 10);
    put32(pre + 4, 150u << 10);
    put32(pre + 8, crc32(0, pre, 8));
    assert_int_equal(tx_eventstream_feed(&s, (const char *)pre, 12, on_frame, &seen, &err), -1);
    tx_eventstream_dispose(&s);
    /* shorter than the minimum frame */
    put32(pre, 8);
    put32(pre + 4, 0);
    put32(pre + 8, crc32(0, pre, 8));
    assert_int_equal(tx_eventstream_feed(&s, (const char *)pre, 12, on_frame, &seen, &err), -1);
    tx_eventstream_dispose(&s);
    tg_buf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_one_feed), cmocka_unit_test(test_split_feeds),
        cmocka_unit_test(test_pending_when_cut),   cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_all_header_types),   cmocka_unit_test(test_error_message_type),
        cmocka_unit_test(test_bad_crcs_and_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
