/*
 * Unit tests of admission and local allowances: reservations never exceed what is granted, even from
 * many threads at once; settling frees what was not used; all-or-nothing across limits; the worst case
 * from bodies of each dialect; glob patterns of allowed models.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>
#include "admission/admission.h"
#include "admission/allowance.h"
#include "tollgate/clock.h"
#include "tollgate/env.h"

#define FAR_FUTURE INT64_MAX / 2

static void
grant(dp_allowance_t *a, int64_t amount, int64_t remaining)
{
    dp_allowance_apply(a, 0, FAR_FUTURE, 1, amount, remaining, 1000000, FAR_FUTURE, 1);
}

static void
test_reserve_settle(void **state)
{
    (void)state;
    dp_allowance_t *a = dp_allowance_get("00000000-0000-0000-0000-000000000001", DP_LEASE_BUDGET);
    assert_non_null(a);
    dp_lease_t *l1, *l2, *l3;
    /* nothing leased yet: wait, and more is asked for */
    assert_int_equal(dp_allowance_reserve(a, 1000, 40, &l1), DP_RESERVE_WAIT);
    assert_true(a->want >= 40);
    assert_int_equal(a->need, 40);
    grant(a, 100, 1000);
    assert_int_equal(a->need, 0);
    assert_int_equal(dp_allowance_reserve(a, 1000, 40, &l1), DP_RESERVE_OK);
    assert_int_equal(dp_allowance_reserve(a, 1000, 40, &l2), DP_RESERVE_OK);
    assert_int_equal(dp_allowance_reserve(a, 1000, 40, &l3), DP_RESERVE_WAIT); /* 80 + 40 > 100 */
    dp_allowance_settle(l1, 40, 10);                                           /* 30 comes back */
    assert_int_equal(dp_allowance_reserve(a, 1000, 40, &l3), DP_RESERVE_OK);
    assert_int_equal(l3->used, 90);
    assert_true(l3->used <= l3->granted);
    dp_allowance_settle(l2, 40, 40);
    dp_allowance_settle(l3, 40, 0);
    assert_int_equal(l3->used, 50);
    assert_int_equal(l3->inflight, 0);
}

static void
test_exhausted_gives_back(void **state)
{
    (void)state;
    dp_allowance_t *a = dp_allowance_get("00000000-0000-0000-0000-000000000002", DP_LEASE_BUDGET);
    grant(a, 30, 0);
    dp_lease_t *l;
    assert_int_equal(dp_allowance_reserve(a, 5, 50, &l), DP_RESERVE_WAIT);
    /* the control plane could not cover the need: the 30 held here go back, and we say "exhausted" */
    dp_allowance_apply(a, 0, FAR_FUTURE, 1, 0, 0, 1000000, FAR_FUTURE, 0);
    assert_int_equal(a->leases->granted, 0);
    assert_int_equal(a->leases->release_pending, 30);
    assert_int_equal(dp_allowance_reserve(a, 5, 50, &l), DP_RESERVE_EXHAUSTED);
    dp_allowance_ask_t ask;
    assert_int_equal(dp_allowance_collect(a, 5, 0, &ask), 1);
    assert_int_equal(ask.release, 30);
    assert_int_equal(ask.epoch, 1);
    /* the ask could not be sent: the next one carries the release again, once */
    dp_allowance_ask_done(a);
    dp_allowance_unsend(a, &ask);
    assert_int_equal(dp_allowance_collect(a, 5, 0, &ask), 1);
    assert_int_equal(ask.release, 30);
    assert_int_equal(dp_allowance_collect(a, 5, 0, &ask), 0);
}

/* An idle dataplane holding free slots learns at a renewal that nothing is left elsewhere: it gives them
 * back at once rather than renewing them while another dataplane is refused. */
static void
test_renewal_gives_back_when_none_left(void **state)
{
    (void)state;
    dp_allowance_t *a = dp_allowance_get("00000000-0000-0000-0000-00000000000d", DP_LEASE_CONCURRENT);
    grant(a, 2, 1); /* one slot was still free elsewhere when these two were granted */
    dp_lease_t *l1, *l2;
    assert_int_equal(dp_allowance_reserve(a, 5, 1, &l1), DP_RESERVE_OK);
    assert_int_equal(dp_allowance_reserve(a, 5, 1, &l2), DP_RESERVE_OK);
    assert_int_equal(dp_allowance_settle(l1, 1, 0), 0); /* others may still have slots: kept */
    /* a renewal that finds some left elsewhere changes nothing */
    assert_int_equal(dp_allowance_apply(a, 0, FAR_FUTURE, 1, 0, 1, 3, FAR_FUTURE, -1), 0);
    assert_int_equal(a->leases->granted, 2);
    /* one that finds none left: the free slot goes back, the one in use stays */
    assert_int_equal(dp_allowance_apply(a, 0, FAR_FUTURE, 1, 0, 0, 3, FAR_FUTURE, -1), 1);
    assert_int_equal(a->leases->granted, 1);
    assert_int_equal(a->leases->release_pending, 1);
    dp_allowance_ask_t ask;
    assert_int_equal(dp_allowance_collect(a, 5, 0, &ask), 1);
    assert_int_equal(ask.release, 1);
    /* the request still running gives its slot back when it ends */
    assert_int_equal(dp_allowance_settle(l2, 1, 0), 1);
    assert_int_equal(a->leases->granted, 0);
    /* a grant that met a need keeps what it brought even when it was the last */
    assert_int_equal(dp_allowance_reserve(a, 5, 1, &l1), DP_RESERVE_WAIT);
    assert_int_equal(dp_allowance_apply(a, 0, FAR_FUTURE, 1, 1, 0, 3, FAR_FUTURE, 1), 0);
    assert_int_equal(dp_allowance_reserve(a, 5, 1, &l1), DP_RESERVE_OK);
}

static void
test_period_and_expiry(void **state)
{
    (void)state;
    dp_allowance_t *a = dp_allowance_get("00000000-0000-0000-0000-000000000003", DP_LEASE_BUDGET);
    dp_allowance_set_margin_ms(100);
    dp_allowance_apply(a, 1000, 2000, 7, 100, 500, 1000, 1500, 1);
    dp_lease_t *l;
    assert_int_equal(dp_allowance_reserve(a, 1100, 10, &l), DP_RESERVE_OK);
    /* usable until 1500 - margin: after that, the lease is not used even though it holds allowance */
    assert_int_equal(dp_allowance_reserve(a, 1450, 10, &l), DP_RESERVE_WAIT);
    /* a new period is a new lease; the old one keeps its reservation in flight */
    dp_allowance_apply(a, 2000, 3000, 8, 100, 500, 1000, 5000, 1);
    dp_lease_t *n;
    assert_int_equal(dp_allowance_reserve(a, 2100, 10, &n), DP_RESERVE_OK);
    assert_ptr_not_equal(n, l);
    assert_int_equal(n->period_start_ms, 2000);
    assert_int_equal(l->inflight, 1);
    dp_allowance_settle(l, 10, 10);
    dp_allowance_settle(n, 10, 10);
    dp_allowance_set_margin_ms(1000);
}

/* A request that retries while its ask is in flight (the 100 ms timer during a slow round trip) must not
 * ask a second time: the control plane would grant the prefetch twice, and the second grant would come
 * after the first had already served the request. */
static void
test_no_second_ask_in_flight(void **state)
{
    (void)state;
    dp_allowance_t *a = dp_allowance_get("00000000-0000-0000-0000-000000000008", DP_LEASE_BUDGET);
    dp_lease_t *l;
    dp_allowance_ask_t ask;
    assert_int_equal(dp_allowance_reserve(a, 1000, 40, &l), DP_RESERVE_WAIT);
    assert_int_equal(dp_allowance_collect(a, 1000, 0, &ask), 1); /* the lease thread sends it */
    assert_int_equal(ask.need, 40);
    int64_t asked = ask.want;
    assert_true(asked >= 40);
    /* the retry while the answer is on its way: still waiting, nothing more to ask */
    assert_int_equal(dp_allowance_reserve(a, 1000, 40, &l), DP_RESERVE_WAIT);
    assert_int_equal(dp_allowance_reserve(a, 1000, 40, &l), DP_RESERVE_WAIT);
    grant(a, asked, 1000000);
    dp_allowance_ask_done(a);
    assert_int_equal(dp_allowance_reserve(a, 1000, 40, &l), DP_RESERVE_OK);
    assert_int_equal(dp_allowance_collect(a, 1000, 0, &ask), 0); /* no stale second ask */
    assert_int_equal(ask.want, 0);
    assert_int_equal(ask.need, 0);
    dp_allowance_settle(l, 40, 40);
    /* a lost answer: the next request that does not fit asks again */
    dp_allowance_t *b = dp_allowance_get("00000000-0000-0000-0000-000000000009", DP_LEASE_BUDGET);
    assert_int_equal(dp_allowance_reserve(b, 1000, 40, &l), DP_RESERVE_WAIT);
    assert_int_equal(dp_allowance_collect(b, 1000, 0, &ask), 1);
    dp_allowance_ask_done(b);
    assert_int_equal(dp_allowance_reserve(b, 1000, 40, &l), DP_RESERVE_WAIT);
    assert_int_equal(dp_allowance_collect(b, 1000, 0, &ask), 1);
    assert_int_equal(ask.want, asked);
    assert_int_equal(ask.need, 40);
}

/* The next rate window is asked for shortly before it starts, once, and used only from its start: the
 * current window keeps its own lease meanwhile. */
static int
n_leases(const dp_allowance_t *a)
{
    int n = 0;
    for (const dp_lease_t *l = a->leases; l != NULL; l = l->next)
        n++;
    return n;
}

static void
test_next_window(void **state)
{
    (void)state;
    dp_allowance_t *a = dp_allowance_get("00000000-0000-0000-0000-00000000000b", DP_LEASE_REQUESTS);
    dp_lease_t *l, *l2;
    dp_allowance_ask_t ask;
    dp_allowance_apply(a, 1000, 2000, 1, 10, 100, 100, FAR_FUTURE, 1);
    /* an idle window predicts nothing */
    assert_int_equal(dp_allowance_collect_next(a, 1600, 500, &ask), 0);
    assert_int_equal(dp_allowance_reserve(a, 1100, 1, &l), DP_RESERVE_OK);
    assert_int_equal(dp_allowance_reserve(a, 1100, 1, &l), DP_RESERVE_OK);
    assert_int_equal(dp_allowance_collect_next(a, 1400, 500, &ask), 0); /* too early */
    assert_int_equal(dp_allowance_collect_next(a, 1400, 900, &ask), 0); /* never more than half a window */
    assert_int_equal(dp_allowance_collect_next(a, 1600, 500, &ask), 1);
    assert_int_equal(ask.period_start_ms, 2000);
    assert_int_equal(ask.want, 2); /* what this window used */
    assert_int_equal(ask.need, 0);
    assert_int_equal(ask.epoch, 0);
    assert_int_equal(dp_allowance_collect_next(a, 1700, 500, &ask), 0); /* once per window */
    dp_allowance_apply(a, 2000, 3000, 2, 2, 50, 100, FAR_FUTURE, 1);
    /* the current window still reserves from its own lease, and renews and releases it */
    assert_int_equal(dp_allowance_reserve(a, 1800, 1, &l2), DP_RESERVE_OK);
    assert_int_equal(l2->period_start_ms, 1000);
    assert_int_equal(dp_allowance_collect(a, 1800, INT64_MAX, &ask), 1);
    assert_int_equal(ask.period_start_ms, 1000);
    assert_int_equal(ask.epoch, 1);
    /* the first request of the next window finds its allowance already here */
    assert_int_equal(dp_allowance_reserve(a, 2000, 1, &l2), DP_RESERVE_OK);
    assert_int_equal(l2->period_start_ms, 2000);
    assert_int_equal(dp_allowance_reserve(a, 2001, 1, &l2), DP_RESERVE_OK);
    assert_int_equal(dp_allowance_reserve(a, 2002, 1, &l2), DP_RESERVE_WAIT); /* 2 granted: never more */
    dp_allowance_ask_done(a);
    assert_int_equal(n_leases(a), 2);
    /* two windows on, the oldest one is dropped once nothing is in flight on it; the one before the
     * newest stays */
    dp_allowance_apply(a, 3000, 4000, 3, 1, 50, 100, FAR_FUTURE, 1);
    assert_int_equal(n_leases(a), 3); /* the first window's 3 requests are still running */
    for (int i = 0; i < 3; i++)
        dp_allowance_settle(l, 1, 1);
    dp_allowance_apply(a, 3000, 4000, 3, 0, 50, 100, FAR_FUTURE, -1);
    assert_int_equal(n_leases(a), 2);
    assert_int_equal(a->leases->next->period_start_ms, 2000);
    /* budgets have no windows to prefetch */
    dp_allowance_t *b = dp_allowance_get("00000000-0000-0000-0000-00000000000c", DP_LEASE_BUDGET);
    dp_allowance_apply(b, 1000, 2000, 1, 10, 100, 100, FAR_FUTURE, 1);
    assert_int_equal(dp_allowance_reserve(b, 1100, 1, &l), DP_RESERVE_OK);
    assert_int_equal(dp_allowance_collect_next(b, 1900, 500, &ask), 0);
}

/* ---- concurrency: N threads reserve and settle; the sum held never exceeds what was granted */

struct race {
    dp_allowance_t *a;
    int64_t amount;
    int rounds;
    int64_t ok;
};

static void *
racer(void *p)
{
    struct race *r = p;
    for (int i = 0; i < r->rounds; i++) {
        dp_lease_t *l;
        if (dp_allowance_reserve(r->a, 10, r->amount, &l) == DP_RESERVE_OK) {
            r->ok++;
            if (l->used > l->granted) /* read without the lock: may be stale, never over */
                fail_msg("used %lld > granted %lld", (long long)l->used, (long long)l->granted);
            dp_allowance_settle(l, r->amount, r->amount); /* every admitted request spends it all */
        }
    }
    return NULL;
}

static void
test_concurrent_never_exceed(void **state)
{
    (void)state;
    dp_allowance_t *a = dp_allowance_get("00000000-0000-0000-0000-000000000004", DP_LEASE_BUDGET);
    grant(a, 1000, 5000);
    enum { T = 8 };
    pthread_t th[T];
    struct race r[T];
    for (int i = 0; i < T; i++) {
        r[i] = (struct race){.a = a, .amount = 7, .rounds = 2000};
        pthread_create(&th[i], NULL, racer, &r[i]);
    }
    int64_t ok = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        ok += r[i].ok;
    }
    /* 1000 / 7 = 142 requests fit, exactly, whatever the interleaving */
    assert_int_equal(ok, 1000 / 7);
    assert_int_equal(a->leases->used, ok * 7);
    assert_int_equal(a->leases->inflight, 0);
}

/* ---- worst case */

static void
test_worst_case(void **state)
{
    (void)state;
    dp_route_t route = {.max_price = {.input = 2500000, .output = 10000000}};
    const char *openai = "{\"model\":\"m\",\"max_tokens\":100,\"max_completion_tokens\":50,\"messages\":[]}";
    const char *anthropic = "{\"model\":\"m\",\"max_tokens\":300,\"messages\":[]}";
    const char *gemini = "{\"contents\":[],\"generationConfig\":{\"temperature\":1,\"maxOutputTokens\":77}}";
    const char *none = "{\"model\":\"m\",\"messages\":[]}";
    assert_int_equal(dp_admission_body_max_tokens(openai, strlen(openai)), 50);
    assert_int_equal(dp_admission_body_max_tokens(anthropic, strlen(anthropic)), 300);
    assert_int_equal(dp_admission_body_max_tokens(gemini, strlen(gemini)), 77);
    assert_int_equal(dp_admission_body_max_tokens(none, strlen(none)), 0);
    assert_int_equal(dp_admission_body_max_tokens("[1]", 3), 0);
    dp_worst_case_t w;
    dp_admission_worst_case(&route, openai, strlen(openai), 0, &w);
    assert_int_equal(w.prompt_tokens, (int64_t)strlen(openai));
    assert_int_equal(w.output_tokens, 50);
    /* rounded up to the nano-dollar: never below the true cost */
    assert_int_equal(w.cost_nanousd, ((int64_t)strlen(openai) * 2500000 + 50 * 10000000 + 999) / 1000);
    route.default_max_tokens = 123;
    dp_admission_worst_case(&route, none, strlen(none), 0, &w);
    assert_int_equal(w.output_tokens, 123);
    route.default_max_tokens = 0;
    dp_admission_configure(4096, 1000);
    dp_admission_worst_case(&route, none, strlen(none), 0, &w);
    assert_int_equal(w.output_tokens, 4096);
    dp_admission_worst_case(&route, none, strlen(none), 1, &w);
    assert_int_equal(w.output_tokens, 0);
}

/* ---- all or nothing over several limits */

static void
test_all_or_nothing(void **state)
{
    (void)state;
    dp_allowance_t *big = dp_allowance_get("00000000-0000-0000-0000-000000000005", DP_LEASE_BUDGET);
    dp_allowance_t *small = dp_allowance_get("00000000-0000-0000-0000-000000000006", DP_LEASE_BUDGET);
    dp_allowance_t *reqs = dp_allowance_get("00000000-0000-0000-0000-000000000007", DP_LEASE_REQUESTS);
    int64_t now = tg_clock_now_ms();
    dp_allowance_apply(big, 0, FAR_FUTURE, 1, 1000, 1000, 10000, now + 60000, 1);
    dp_allowance_apply(small, 0, FAR_FUTURE, 1, 150, 1000, 10000, now + 60000, 1);
    dp_allowance_apply(reqs, 0, FAR_FUTURE, 1, 5, 100, 100, now + 60000, 1);
    dp_limit_t limits[3] = {
        {.id = big->id, .kind = DP_LEASE_BUDGET, .hard = 10000, .allowance = big},
        {.id = reqs->id, .kind = DP_LEASE_REQUESTS, .hard = 100, .window_s = 1, .allowance = reqs},
        {.id = small->id, .kind = DP_LEASE_BUDGET, .hard = 10000, .allowance = small},
    };
    uint32_t idx[3] = {0, 1, 2};
    dp_vkey_t key = {.id = "k", .tenant_id = "t", .limits = idx, .n_limits = 3};
    dp_snapshot_t snap = {.limits = limits, .n_limits = 3};
    dp_worst_case_t w = {.prompt_tokens = 10, .output_tokens = 10, .cost_nanousd = 100};
    dp_admission_t a1 = {0}, a2 = {0};
    assert_int_equal(dp_admission_begin(&a1, NULL, &snap, &key, "m", 1, &w), 0);
    assert_int_equal(a1.n_holds, 3);
    /* the second does not fit in `small` (100 + 100 > 150): nothing stays held anywhere */
    assert_int_equal(dp_admission_begin(&a2, NULL, &snap, &key, "m", 1, &w), -1);
    assert_int_equal(a2.status, 503); /* no worker to park on: refused rather than overspent */
    assert_int_equal(a2.n_holds, 0);
    assert_int_equal(big->leases->used, 100);
    assert_int_equal(reqs->leases->used, 1);
    dp_admission_settle(&a1, 60, 15);
    dp_admission_settle(&a1, 60, 15); /* idempotent */
    assert_int_equal(big->leases->used, 60);
    assert_int_equal(small->leases->used, 60);
    assert_int_equal(reqs->leases->used, 1); /* a request admitted stays counted */
    /* a request larger than the hard limit is refused at once, with the budget's status */
    limits[2].hard = 50;
    dp_admission_t a3 = {0};
    assert_int_equal(dp_admission_begin(&a3, NULL, &snap, &key, "m", 1, &w), -1);
    assert_int_equal(a3.status, 402);
    assert_ptr_equal(a3.refused_by, &limits[2]);
    assert_int_equal(big->leases->used, 60);
}

/* ---- the soft threshold: named once the settled spend the control plane reported reaches it */

static void
test_soft_warning(void **state)
{
    (void)state;
    dp_allowance_t *b = dp_allowance_get("00000000-0000-0000-0000-00000000000a", DP_LEASE_BUDGET);
    int64_t now = tg_clock_now_ms();
    dp_allowance_apply(b, 0, FAR_FUTURE, 1, 1000, 5000, 10000, now + 60000, 1);
    dp_limit_t limits[1] = {
        {.id = b->id, .kind = DP_LEASE_BUDGET, .hard = 2500000000, .soft = 2000000000, .allowance = b}};
    uint32_t idx[1] = {0};
    dp_vkey_t key = {.id = "k", .tenant_id = "t", .limits = idx, .n_limits = 1};
    dp_snapshot_t snap = {.limits = limits, .n_limits = 1};
    dp_worst_case_t w = {.prompt_tokens = 10, .output_tokens = 10, .cost_nanousd = 100};
    dp_admission_t a1 = {0}, a2 = {0}, a3 = {0};
    /* not told yet, then told less than the threshold: no warning */
    assert_int_equal(dp_admission_begin(&a1, NULL, &snap, &key, "m", 1, &w), 0);
    assert_int_equal(a1.n_warn, 0);
    dp_admission_settle(&a1, 50, 20);
    dp_allowance_set_settled(b, 0, 1999999999);
    assert_int_equal(dp_admission_begin(&a2, NULL, &snap, &key, "m", 1, &w), 0);
    assert_int_equal(a2.n_warn, 0);
    dp_admission_settle(&a2, 50, 20);
    /* crossed: named with the spend; another period's figure does not count */
    dp_allowance_set_settled(b, 0, 2000000123);
    dp_allowance_set_settled(b, 777, 1);
    assert_int_equal(dp_admission_begin(&a3, NULL, &snap, &key, "m", 1, &w), 0);
    assert_int_equal(a3.n_warn, 1);
    char buf[160];
    dp_admission_warning(&a3, 0, buf, sizeof(buf));
    assert_string_equal(buf,
                        "budget=00000000-0000-0000-0000-00000000000a; spent_usd=2.000000123; soft_usd=2; hard_usd=2.5");
    dp_admission_settle(&a3, 50, 20);
    /* a limit without a soft threshold never warns */
    limits[0].soft = -1;
    dp_admission_t a4 = {0};
    assert_int_equal(dp_admission_begin(&a4, NULL, &snap, &key, "m", 1, &w), 0);
    assert_int_equal(a4.n_warn, 0);
    dp_admission_settle(&a4, 50, 20);
}

static void
test_glob(void **state)
{
    (void)state;
    assert_true(dp_glob_match("gpt-4*", "gpt-4o-mini", 11));
    assert_false(dp_glob_match("gpt-4*", "gpt-3.5", 7));
    assert_true(dp_glob_match("*mini", "gpt-4o-mini", 11));
    assert_true(dp_glob_match("claude-?-haiku", "claude-3-haiku", 14));
    assert_false(dp_glob_match("claude-?-haiku", "claude-35-haiku", 15));
    assert_true(dp_glob_match("*", "", 0));
    assert_false(dp_glob_match("a*b*c", "aXbY", 4));
    assert_true(dp_glob_match("a*b*c", "aXbYc", 5));
    /* the name is a length, not a C string: bytes past it do not count */
    assert_false(dp_glob_match("abc", "abcd", 2));
    char *models[] = {"exact-one", "fam-*"};
    dp_vkey_t k = {.allowed_models = models, .n_allowed_models = 2};
    assert_true(dp_vkey_allows(&k, "exact-one", 9));
    assert_false(dp_vkey_allows(&k, "exact-on", 8));
    assert_true(dp_vkey_allows(&k, "fam-x", 5));
    assert_false(dp_vkey_allows(&k, "fa", 2));
    char *provs[] = {"p1"};
    dp_vkey_t kp = {.allowed_providers = provs, .n_allowed_providers = 1};
    assert_true(dp_vkey_allows_provider(&kp, "p1"));
    assert_false(dp_vkey_allows_provider(&kp, "p2"));
    assert_true(dp_vkey_allows_provider(&k, "anything"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reserve_settle),
        cmocka_unit_test(test_exhausted_gives_back),
        cmocka_unit_test(test_renewal_gives_back_when_none_left),
        cmocka_unit_test(test_period_and_expiry),
        cmocka_unit_test(test_no_second_ask_in_flight),
        cmocka_unit_test(test_concurrent_never_exceed),
        cmocka_unit_test(test_worst_case),
        cmocka_unit_test(test_all_or_nothing),
        cmocka_unit_test(test_soft_warning),
        cmocka_unit_test(test_next_window),
        cmocka_unit_test(test_glob),
    };
    int rv = cmocka_run_group_tests(tests, NULL, NULL);
    dp_allowance_free_all();
    return rv;
}
