/* The circuit breaker's state machine, driven by a fake clock (no sleeps). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "routing/breaker.h"

static const dp_breaker_config_t CFG = {
    .consecutive_failures = 3,
    .error_rate_pct = 50,
    .min_requests = 10,
    .window_ms = 10000,
    .cooldown_ms = 5000,
    .probe_successes = 3,
};

static int
teardown(void **state)
{
    dp_breaker_reset_all();
    return 0;
}

static void
test_get_is_stable(void **state)
{
    dp_breaker_t *a = dp_breaker_get("p1", "acct", "k1", "m");
    dp_breaker_t *b = dp_breaker_get("p1", "acct", "k1", "m");
    dp_breaker_t *c = dp_breaker_get("p1", "acct", "k2", "m");
    dp_breaker_t *d = dp_breaker_get("p1", "acct", "k1", "m2");
    assert_non_null(a);
    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, c);
    assert_ptr_not_equal(a, d);
    assert_int_equal(dp_breaker_state(a, 0), DP_BREAKER_CLOSED);
    /* no breaker (table full, id too long) means: always allowed, outcomes ignored */
    assert_int_equal(dp_breaker_peek(NULL, &CFG, 0, 0), 1);
    assert_int_equal(dp_breaker_claim(NULL, &CFG, 0), 1);
    dp_breaker_record(NULL, &CFG, 0, 0);
}

static void
test_opens_on_consecutive_failures(void **state)
{
    dp_breaker_t *b = dp_breaker_get("p", "acct", "k", "consecutive");
    int64_t t = 1000000;
    dp_breaker_record(b, &CFG, 0, t);
    dp_breaker_record(b, &CFG, 0, t);
    dp_breaker_record(b, &CFG, 1, t); /* a success resets the run */
    dp_breaker_record(b, &CFG, 0, t);
    dp_breaker_record(b, &CFG, 0, t);
    assert_int_equal(dp_breaker_state(b, t), DP_BREAKER_CLOSED);
    assert_int_equal(b->consecutive, 2);
    dp_breaker_record(b, &CFG, 0, t);
    assert_int_equal(dp_breaker_state(b, t), DP_BREAKER_OPEN);
    assert_int_equal(dp_breaker_peek(b, &CFG, t, 0), 0);
    assert_int_equal(dp_breaker_claim(b, &CFG, t + 4999), 0);
    assert_int_equal(dp_breaker_state(b, t + 4999), DP_BREAKER_OPEN);
    assert_int_equal(dp_breaker_state(b, t + 5000), DP_BREAKER_HALF_OPEN);
}

static void
test_opens_on_error_rate(void **state)
{
    dp_breaker_config_t c = CFG;
    c.consecutive_failures = 0; /* only the rate */
    dp_breaker_t *b = dp_breaker_get("p", "acct", "k", "rate");
    int64_t t = 2000000;
    /* alternating: 50% errors, but below the minimum volume nothing happens */
    for (int i = 0; i < 8; i++)
        dp_breaker_record(b, &c, i % 2, t + i);
    assert_int_equal(dp_breaker_state(b, t + 8), DP_BREAKER_CLOSED);
    dp_breaker_record(b, &c, 1, t + 8);
    dp_breaker_record(b, &c, 0, t + 9); /* 10 requests, 5 failed: 50% */
    assert_int_equal(dp_breaker_state(b, t + 9), DP_BREAKER_OPEN);
}

static void
test_window_forgets_old_failures(void **state)
{
    dp_breaker_config_t c = CFG;
    c.consecutive_failures = 0;
    dp_breaker_t *b = dp_breaker_get("p", "acct", "k", "window");
    int64_t t = 3000000;
    for (int i = 0; i < 9; i++)
        dp_breaker_record(b, &c, 0, t);
    /* a whole window later the nine failures are gone: ten successes and one failure stay closed */
    t += 20000;
    for (int i = 0; i < 10; i++)
        dp_breaker_record(b, &c, 1, t);
    dp_breaker_record(b, &c, 0, t);
    assert_int_equal(dp_breaker_state(b, t), DP_BREAKER_CLOSED);
}

static void
test_half_open_single_probe_then_ramp(void **state)
{
    dp_breaker_t *b = dp_breaker_get("p", "acct", "k", "ramp");
    int64_t t = 4000000;
    for (int i = 0; i < 3; i++)
        dp_breaker_record(b, &CFG, 0, t);
    assert_int_equal(dp_breaker_state(b, t), DP_BREAKER_OPEN);
    t += 5000;
    /* one probe: the first claim wins, the next loses while it is in flight */
    assert_int_equal(dp_breaker_peek(b, &CFG, t, 0), 1);
    assert_int_equal(dp_breaker_claim(b, &CFG, t), 1);
    assert_int_equal(b->state, DP_BREAKER_HALF_OPEN);
    assert_int_equal(dp_breaker_peek(b, &CFG, t + 1, 0), 0);
    assert_int_equal(dp_breaker_claim(b, &CFG, t + 1), 0);
    /* the probe succeeds: a third of the traffic passes (rnd % 3 < 1) */
    dp_breaker_record(b, &CFG, 1, t + 2);
    assert_int_equal(dp_breaker_state(b, t + 2), DP_BREAKER_HALF_OPEN);
    assert_int_equal(dp_breaker_peek(b, &CFG, t + 2, 0), 1);
    assert_int_equal(dp_breaker_peek(b, &CFG, t + 2, 1), 0);
    assert_int_equal(dp_breaker_peek(b, &CFG, t + 2, 2), 0);
    assert_int_equal(dp_breaker_claim(b, &CFG, t + 2), 1);
    dp_breaker_record(b, &CFG, 1, t + 3); /* two thirds */
    assert_int_equal(dp_breaker_peek(b, &CFG, t + 3, 1), 1);
    assert_int_equal(dp_breaker_peek(b, &CFG, t + 3, 2), 0);
    dp_breaker_record(b, &CFG, 1, t + 4); /* three successes: closed */
    assert_int_equal(dp_breaker_state(b, t + 4), DP_BREAKER_CLOSED);
    assert_int_equal(dp_breaker_peek(b, &CFG, t + 4, 2), 1);
}

static void
test_failed_probe_reopens(void **state)
{
    dp_breaker_t *b = dp_breaker_get("p", "acct", "k", "reopen");
    int64_t t = 5000000;
    for (int i = 0; i < 3; i++)
        dp_breaker_record(b, &CFG, 0, t);
    t += 5000;
    assert_int_equal(dp_breaker_claim(b, &CFG, t), 1);
    dp_breaker_record(b, &CFG, 1, t); /* ramp 1 */
    dp_breaker_record(b, &CFG, 0, t + 10);
    assert_int_equal(dp_breaker_state(b, t + 10), DP_BREAKER_OPEN);
    assert_int_equal(dp_breaker_peek(b, &CFG, t + 10, 0), 0);
    /* a whole new cool-down, from the failed probe */
    assert_int_equal(dp_breaker_state(b, t + 5009), DP_BREAKER_OPEN);
    assert_int_equal(dp_breaker_state(b, t + 5010), DP_BREAKER_HALF_OPEN);
}

static void
test_lost_probe_is_forgotten(void **state)
{
    dp_breaker_t *b = dp_breaker_get("p", "acct", "k", "lost");
    int64_t t = 6000000;
    for (int i = 0; i < 3; i++)
        dp_breaker_record(b, &CFG, 0, t);
    t += 5000;
    assert_int_equal(dp_breaker_claim(b, &CFG, t), 1); /* its client goes away: no outcome ever */
    assert_int_equal(dp_breaker_claim(b, &CFG, t + 4999), 0);
    assert_int_equal(dp_breaker_claim(b, &CFG, t + 5000), 1);
}

struct seen {
    int n, open;
};

static void
visit(void *ctx, const char *pid, const char *pname, const char *kid, const char *model, int state, uint64_t cf)
{
    struct seen *s = ctx;
    s->n++;
    if (state == DP_BREAKER_OPEN)
        s->open++;
    assert_string_equal(pname, "acct");
}

static void
test_foreach(void **state)
{
    dp_breaker_t *a = dp_breaker_get("p", "acct", "k", "a");
    dp_breaker_get("p", "acct", "k", "b");
    int64_t now = dp_breaker_now_ms();
    for (int i = 0; i < 3; i++)
        dp_breaker_record(a, &CFG, 0, now);
    struct seen s = {0};
    dp_breaker_foreach(visit, &s);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.open, 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_get_is_stable, teardown),
        cmocka_unit_test_teardown(test_opens_on_consecutive_failures, teardown),
        cmocka_unit_test_teardown(test_opens_on_error_rate, teardown),
        cmocka_unit_test_teardown(test_window_forgets_old_failures, teardown),
        cmocka_unit_test_teardown(test_half_open_single_probe_then_ramp, teardown),
        cmocka_unit_test_teardown(test_failed_probe_reopens, teardown),
        cmocka_unit_test_teardown(test_lost_probe_is_forgotten, teardown),
        cmocka_unit_test_teardown(test_foreach, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
