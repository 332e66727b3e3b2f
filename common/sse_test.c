/* Unit tests for the SSE parser: line endings, split feeds, multi-line data, comments, limits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "tollgate/sse.h"

typedef struct {
    int n;
    char data[8][128];
    char event[8][32];
    char raw[1024];
    size_t raw_len;
} collected_t;

static int
on_event(void *ctx, const tg_sse_event_t *ev)
{
    collected_t *c = ctx;
    if (c->n < 8) {
        memcpy(c->data[c->n], ev->data, ev->data_len);
        c->data[c->n][ev->data_len] = '\0';
        memcpy(c->event[c->n], ev->event, ev->event_len);
        c->event[c->n][ev->event_len] = '\0';
    }
    memcpy(c->raw + c->raw_len, ev->raw, ev->raw_len);
    c->raw_len += ev->raw_len;
    c->n++;
    return 0;
}

/* Feeds one byte at a time; returns the bytes still held back at the end. */
static size_t
feed_bytewise(const char *s, collected_t *c)
{
    tg_sse_parser_t p;
    tg_sse_init(&p, 4096);
    for (size_t i = 0; i < strlen(s); i++)
        assert_int_equal(tg_sse_feed(&p, s + i, 1, on_event, c), 0);
    size_t pending = tg_sse_pending(&p);
    tg_sse_dispose(&p);
    return pending;
}

static void
test_line_endings(void **state)
{
    const char *streams[] = {
        "data: a\n\ndata: b\n\n",
        "data: a\r\n\r\ndata: b\r\n\r\n",
        "data: a\r\rdata: b\r\r",
    };
    for (size_t i = 0; i < 3; i++) {
        collected_t c = {0};
        size_t pending = feed_bytewise(streams[i], &c);
        assert_int_equal(c.n, 2);
        assert_string_equal(c.data[0], "a");
        assert_string_equal(c.data[1], "b");
        /* raw bytes reproduce the stream exactly; a CRLF split after the last event's CR leaves its LF
         * to travel with the next event */
        assert_true(pending <= 1);
        assert_int_equal(c.raw_len + pending, strlen(streams[i]));
        assert_memory_equal(c.raw, streams[i], c.raw_len);
    }
}

static void
test_fields(void **state)
{
    const char *s = ": keep-alive\n\nevent: message_start\ndata: {\"x\":1}\ndata:second\nid: 7\n\n";
    collected_t c = {0};
    tg_sse_parser_t p;
    tg_sse_init(&p, 4096);
    assert_int_equal(tg_sse_feed(&p, s, strlen(s), on_event, &c), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.data[0], "");
    assert_string_equal(c.data[1], "{\"x\":1}\nsecond");
    assert_string_equal(c.event[1], "message_start");
    assert_int_equal(tg_sse_pending(&p), 0);
    assert_int_equal(tg_sse_feed(&p, "data: partial", 13, on_event, &c), 0);
    assert_int_equal(tg_sse_pending(&p), 13);
    tg_sse_dispose(&p);
}

static void
test_limit(void **state)
{
    char big[300];
    memset(big, 'x', sizeof(big));
    memcpy(big, "data: ", 6);
    collected_t c = {0};
    tg_sse_parser_t p;
    tg_sse_init(&p, 256);
    assert_int_equal(tg_sse_feed(&p, big, sizeof(big), on_event, &c), -1);
    tg_sse_dispose(&p);
}

static int
stop_at_first(void *ctx, const tg_sse_event_t *ev)
{
    (*(int *)ctx)++;
    return 5;
}

static void
test_callback_stops(void **state)
{
    int n = 0;
    tg_sse_parser_t p;
    tg_sse_init(&p, 4096);
    assert_int_equal(tg_sse_feed(&p, "data: 1\n\ndata: 2\n\n", 18, stop_at_first, &n), 5);
    assert_int_equal(n, 1);
    tg_sse_dispose(&p);
}

/* Feeds s in three pieces cut at a and b, each piece in an exact-size copy (so ASan sees a read of a
 * piece after it was handed back); returns the bytes held back at the end. */
static size_t
feed_in_three(const char *s, size_t a, size_t b, collected_t *c)
{
    tg_sse_parser_t p;
    size_t n = strlen(s), cuts[4] = {0, a, b, n};
    tg_sse_init(&p, 4096);
    for (int k = 0; k < 3; k++) {
        size_t len = cuts[k + 1] - cuts[k];
        char *piece = malloc(len ? len : 1);
        memcpy(piece, s + cuts[k], len);
        assert_int_equal(tg_sse_feed(&p, piece, len, on_event, c), 0);
        free(piece);
    }
    size_t pending = tg_sse_pending(&p);
    tg_sse_dispose(&p);
    return pending;
}

static void
test_every_split(void **state)
{
    /* single-line data (pointed at, not copied), multi-line data (joined), comments, event names, all
     * three line endings: the events must not depend on where the reads were cut */
    const char *s = "event: one\ndata: {\"a\":1}\n\n: comment\ndata: x\ndata: y\r\n\r\nevent: e\rdata: last\r\r"
                    "data:z\n\n";
    collected_t whole = {0};
    size_t n = strlen(s);
    assert_int_equal(feed_in_three(s, n, n, &whole), 0);
    assert_int_equal(whole.n, 4);
    assert_string_equal(whole.data[0], "{\"a\":1}");
    assert_string_equal(whole.event[0], "one");
    assert_string_equal(whole.data[1], "x\ny");
    assert_string_equal(whole.event[2], "e");
    assert_string_equal(whole.data[2], "last");
    assert_string_equal(whole.data[3], "z");
    for (size_t a = 0; a <= n; a++)
        for (size_t b = a; b <= n; b++) {
            collected_t c = {0};
            size_t pending = feed_in_three(s, a, b, &c);
            assert_int_equal(pending, 0);
            assert_int_equal(c.n, whole.n);
            for (int k = 0; k < whole.n; k++) {
                assert_string_equal(c.data[k], whole.data[k]);
                assert_string_equal(c.event[k], whole.event[k]);
            }
            assert_int_equal(c.raw_len, n);
            assert_memory_equal(c.raw, s, n);
        }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_endings), cmocka_unit_test(test_every_split),    cmocka_unit_test(test_fields),
        cmocka_unit_test(test_limit),        cmocka_unit_test(test_callback_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
