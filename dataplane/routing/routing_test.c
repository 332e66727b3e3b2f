/* Plans and key choice on hand-built targets: weights, weight 0, open breakers, stickiness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "routing/routing.h"

static uint64_t rng = 88172645463325252ull;

static uint64_t
next_rand(void *ctx)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static dp_provider_key_t keys[2] = {{.id = "k1", .weight = 1}, {.id = "k2", .weight = 1}};
static dp_provider_t prov[2];
static dp_breaker_t *brk[3][2];
static dp_target_t targets[3];

static int
setup(void **state)
{
    for (int p = 0; p < 2; p++) {
        prov[p] = (dp_provider_t){.id = p ? "p2" : "p1", .name = p ? "b" : "a", .keys = keys, .n_keys = 2};
        dp_policy_from_settings(NULL, &prov[p].policy);
    }
    const char *models[3] = {"m1", "m2", "m3"};
    uint32_t weights[3] = {1, 1, 0};
    for (int t = 0; t < 3; t++) {
        for (int k = 0; k < 2; k++)
            brk[t][k] = dp_breaker_get(prov[t % 2].id, prov[t % 2].name, keys[k].id, models[t]);
        targets[t] = (dp_target_t){
            .provider = &prov[t % 2], .upstream_model = models[t], .weight = weights[t], .breakers = brk[t]};
    }
    return 0;
}

static int
teardown(void **state)
{
    dp_breaker_reset_all();
    return 0;
}

static void
open_breaker(dp_breaker_t *b, int64_t now)
{
    for (int i = 0; i < 5; i++)
        dp_breaker_record(b, &dp_breaker_defaults, 0, now);
}

static void
test_plan_weights(void **state)
{
    dp_chooser_t ch = {.rand = next_rand};
    int first[3] = {0};
    for (int i = 0; i < 200; i++) {
        dp_plan_t p = {0};
        dp_plan_add(&p, targets, 3, &ch, 1000);
        assert_int_equal(p.n, 3);
        for (int t = 0; t < 3; t++)
            if (p.targets[0] == &targets[t])
                first[t]++;
        /* whatever came first, the others follow in the route's order */
        assert_ptr_equal(p.targets[2], &targets[2]);
    }
    assert_true(first[0] > 0 && first[1] > 0);
    assert_int_equal(first[2], 0); /* weight 0: never first */
    /* adding the same targets again (a fallback naming the route) adds nothing */
    dp_plan_t p = {0};
    dp_plan_add(&p, targets, 3, &ch, 1000);
    dp_plan_add(&p, targets, 3, &ch, 1000);
    assert_int_equal(p.n, 3);
}

static void
test_open_targets_are_not_first(void **state)
{
    dp_chooser_t ch = {.rand = next_rand};
    int64_t now = 1000000;
    open_breaker(brk[0][0], now);
    open_breaker(brk[0][1], now);
    for (int i = 0; i < 50; i++) {
        dp_plan_t p = {0};
        dp_plan_add(&p, targets, 3, &ch, now);
        assert_ptr_equal(p.targets[0], &targets[1]);
    }
    int all_open;
    assert_null(dp_pick_key(&targets[0], 0, &ch, now, &all_open));
    assert_true(all_open);
    /* one key open: the other is always chosen */
    open_breaker(brk[1][0], now);
    for (int i = 0; i < 20; i++)
        assert_string_equal(dp_pick_key(&targets[1], 0, &ch, now, &all_open)->id, "k2");
    /* the other one marked bad in this request: none left, not because of breakers alone */
    assert_null(dp_pick_key(&targets[1], 2, &ch, now, &all_open));
}

static void
test_sticky(void **state)
{
    int seen[2] = {0};
    for (int s = 0; s < 64; s++) {
        char id[16];
        snprintf(id, sizeof(id), "session-%d", s);
        dp_chooser_t ch = {.rand = next_rand, .sticky = 1, .session = dp_session_hash(id, strlen(id))};
        dp_plan_t p0 = {0};
        dp_plan_add(&p0, targets, 3, &ch, 1000);
        int all_open;
        const dp_provider_key_t *k0 = dp_pick_key(p0.targets[0], 0, &ch, 1000, &all_open);
        for (int i = 0; i < 5; i++) {
            dp_plan_t p = {0};
            dp_plan_add(&p, targets, 3, &ch, 1000);
            assert_ptr_equal(p.targets[0], p0.targets[0]);
            assert_ptr_equal(dp_pick_key(p.targets[0], 0, &ch, 1000, &all_open), k0);
        }
        seen[p0.targets[0] == &targets[1]]++;
    }
    assert_true(seen[0] > 0 && seen[1] > 0);
}

/* Settings are strings or numbers; out-of-range values are clamped; absent ones take the defaults. */
static void
test_policy_settings(void **state)
{
    (void)state;
    dp_policy_t p;
    json_t *s = json_pack("{s:s, s:i, s:s, s:s}", "total_timeout_ms", "1500", "attempt_timeout_ms", 400, "max_retries",
                          "99", "idle_timeout_ms", "not a number");
    assert_non_null(s);
    dp_policy_from_settings(s, &p);
    assert_int_equal(p.total_timeout_ms, 1500);
    assert_int_equal(p.attempt_timeout_ms, 400);
    assert_int_equal(p.max_retries, 10);
    assert_int_equal(p.idle_timeout_ms, 60000);
    json_decref(s);
    dp_policy_from_settings(NULL, &p);
    assert_int_equal(p.total_timeout_ms, 0); /* the process default (TOLLGATE_UPSTREAM_TIMEOUT_MS) */
    assert_int_equal(p.attempt_timeout_ms, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plan_weights, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_targets_are_not_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sticky, setup, teardown),
        cmocka_unit_test(test_policy_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
