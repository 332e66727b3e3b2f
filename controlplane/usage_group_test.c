/* Unit tests for usage_group.c: the grouped rollups and settlement of a batch equal what a record-by-
 * record computation gives (every counter, token and nano-USD), across hour and second boundaries,
 * with ids in mixed case, invalid ids, records without a start time, and sums past int64 refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>
#include "usage_group.h"

#define N 5000

static const char *keys[] = {"0d9c1f0e-59a0-4c1e-9c55-1c3f5e3b8a01", "0D9C1F0E-59A0-4C1E-9C55-1C3F5E3B8A01",
                             "7b1d2e44-0c6f-4e0e-8d8e-3a3c7f1d2b02", "not-a-uuid", NULL};
static const char *models[] = {"gpt-a", "gpt-b", "GPT-A"};
static const char *team = "5a5e0b4c-3b7e-4b7e-9e2a-2f1c0d9e8b03";

static Tollgate__UsageRecord recs[N];
static Tollgate__UsageRecord *ptrs[N];

/* Records over [hour - 3 s, hour + 3 s) of 2026-11-21 23:00 UTC, some without a start time. */
static void
make_batch(Tollgate__UsageBatch *b, int64_t hour_ms)
{
    uint64_t r = 12345;
    for (int i = 0; i < N; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        Tollgate__UsageRecord *u = &recs[i];
        tollgate__usage_record__init(u);
        u->tenant_id = "1f3e5d7c-9b1a-4c3e-8d5f-7a9b1c3d5e04";
        u->key_id = (char *)keys[r % 5];
        u->team_id = (r >> 3) % 2 ? (char *)team : "";
        u->model = (char *)models[(r >> 5) % 3];
        u->provider_id = "";
        u->input_tokens = (int64_t)((r >> 8) % 5000);
        u->output_tokens = (int64_t)((r >> 20) % 900);
        u->cached_input_tokens = (int64_t)((r >> 30) % 64);
        u->cost_nanousd = (r >> 40) % 10 == 0 ? 0 : (int64_t)((r >> 12) % 9000000);
        u->status = (r >> 44) % 7 == 0 ? 429 : 200;
        u->latency_ms = (uint32_t)((r >> 48) % 70000);
        u->started_unix_ms = (r >> 52) % 50 == 0 ? 0 : hour_ms - 3000 + (int64_t)((r >> 24) % 6000);
        ptrs[i] = u;
    }
    tollgate__usage_batch__init(b);
    b->instance_id = "test";
    b->sequence = 1;
    b->n_records = N;
    b->records = ptrs;
}

static int
id_eq(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

static const char *
norm(const char *id)
{
    return id != NULL && strlen(id) == 36 && id[8] == '-' ? id : CP_ZERO_UUID;
}

static void
test_rollups_equal_per_record(void **state)
{
    (void)state;
    const int64_t hour_ms = 1795302000000; /* 2026-11-21 23:00:00 UTC */
    const int64_t now_ms = hour_ms + 1234;
    Tollgate__UsageBatch b;
    make_batch(&b, hour_ms);
    static cp_rollup_group_t g[N];
    long ng = cp_group_rollups(&b, now_ms, g);
    /* 2 hours x 3 key ids (two spellings of one) x 2 teams x 3 models, at most */
    assert_true(ng > 2 && ng <= 36);
    int64_t total_req = 0, total_cost = 0;
    for (long i = 0; i < ng; i++) {
        if (i > 0) /* sorted, no two groups alike */
            assert_true(g[i - 1].hour_s < g[i].hour_s || strcasecmp(g[i - 1].key, g[i].key) != 0 ||
                        strcasecmp(g[i - 1].team, g[i].team) != 0 || strcmp(g[i - 1].model, g[i].model) != 0);
        assert_int_equal(g[i].hour_s % 3600, 0);
        /* the same group recomputed record by record */
        int64_t req = 0, err = 0, in = 0, out = 0, cached = 0, cost = 0, latsum = 0, lat[CP_LAT_BUCKETS] = {0};
        for (int k = 0; k < N; k++) {
            const Tollgate__UsageRecord *u = &recs[k];
            int64_t ms = u->started_unix_ms > 0 ? u->started_unix_ms : now_ms;
            int64_t hour_s = (ms / 1000) / 3600 * 3600;
            if (hour_s != g[i].hour_s || !id_eq(norm(u->key_id), g[i].key) ||
                !id_eq(norm(u->team_id[0] ? u->team_id : NULL), g[i].team) || strcmp(u->model, g[i].model) != 0)
                continue;
            req++, err += u->status >= 400, in += u->input_tokens, out += u->output_tokens;
            cached += u->cached_input_tokens, cost += u->cost_nanousd, latsum += u->latency_ms;
            lat[cp_lat_bucket(u->latency_ms)]++;
        }
        assert_int_equal(g[i].requests, req);
        assert_int_equal(g[i].errors, err);
        assert_int_equal(g[i].input, in);
        assert_int_equal(g[i].output, out);
        assert_int_equal(g[i].cached, cached);
        assert_int_equal(g[i].cost, cost);
        assert_int_equal(g[i].latency_sum, latsum);
        assert_memory_equal(g[i].lat, lat, sizeof(lat));
        assert_string_equal(g[i].provider, CP_ZERO_UUID);
        total_req += req, total_cost += g[i].cost;
    }
    int64_t want_cost = 0;
    for (int k = 0; k < N; k++)
        want_cost += recs[k].cost_nanousd;
    assert_int_equal(total_req, N); /* every record in exactly one group */
    assert_int_equal(total_cost, want_cost);
}

static void
test_settlement_equal_per_record(void **state)
{
    (void)state;
    const int64_t hour_ms = 1795302000000;
    const int64_t now_ms = hour_ms + 1234;
    Tollgate__UsageBatch b;
    make_batch(&b, hour_ms);
    static cp_settle_group_t g[N];
    long ng = cp_group_settlement(&b, now_ms, g);
    /* 6 or 7 seconds x 2 valid key ids x 3 models, at most */
    assert_true(ng > 2 && ng <= 42);
    int64_t total = 0;
    for (long i = 0; i < ng; i++) {
        int64_t cost = 0;
        for (int k = 0; k < N; k++) {
            const Tollgate__UsageRecord *u = &recs[k];
            int64_t ms = u->started_unix_ms > 0 ? u->started_unix_ms : now_ms;
            if (u->key_id == NULL || strcmp(norm(u->key_id), CP_ZERO_UUID) == 0 || u->cost_nanousd <= 0 ||
                ms / 1000 != g[i].sec || !id_eq(u->key_id, g[i].key) || strcmp(u->model, g[i].model) != 0)
                continue;
            cost += u->cost_nanousd;
        }
        assert_true(g[i].cost > 0);
        assert_int_equal(g[i].cost, cost);
        total += cost;
    }
    int64_t want = 0;
    for (int k = 0; k < N; k++)
        if (recs[k].key_id != NULL && strcmp(norm(recs[k].key_id), CP_ZERO_UUID) != 0 && recs[k].cost_nanousd > 0)
            want += recs[k].cost_nanousd;
    assert_int_equal(total, want);
}

static void
test_floor_and_overflow(void **state)
{
    (void)state;
    assert_int_equal(cp_floor_sec(1999), 1);
    assert_int_equal(cp_floor_sec(0), 0);
    assert_int_equal(cp_floor_sec(-1), -1);
    assert_int_equal(cp_floor_sec(-1000), -1);
    assert_int_equal(cp_floor_sec(-1001), -2);
    Tollgate__UsageBatch b;
    make_batch(&b, 1795302000000);
    for (int i = 0; i < 3; i++) {
        recs[i].key_id = (char *)keys[2], recs[i].model = "gpt-a", recs[i].started_unix_ms = 1795302000000;
        recs[i].cost_nanousd = INT64_MAX / 2;
    }
    static cp_rollup_group_t rg[N];
    static cp_settle_group_t sg[N];
    assert_int_equal(cp_group_rollups(&b, 0, rg), -2);
    assert_int_equal(cp_group_settlement(&b, 0, sg), -2);
    Tollgate__UsageBatch empty = TOLLGATE__USAGE_BATCH__INIT;
    assert_int_equal(cp_group_rollups(&empty, 0, rg), 0);
    assert_int_equal(cp_group_settlement(&empty, 0, sg), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rollups_equal_per_record),
        cmocka_unit_test(test_settlement_equal_per_record),
        cmocka_unit_test(test_floor_and_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
