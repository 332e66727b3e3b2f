/* Unit tests for the SSE parser: line endings, split feeds, multi-line data, comments, limits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_callback_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
