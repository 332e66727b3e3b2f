/* Unit tests for usage_rollup.c: the statement built for a batch (it is sent in the ingest pipeline,
 * usage_ingest.c): one array element per group in every column, models quoted and escaped as array
 * elements, nothing to send for an empty batch, and a batch whose sums leave int64 refused with no
 * statement (ASan: nothing leaked on either path). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "usage_rollup.h"

static const char *key = "0d9c1f0e-59a0-4c1e-9c55-1c3f5e3b8a01";
static const char *tenant = "1f3e5d7c-9b1a-4c3e-8d5f-7a9b1c3d5e04";

static void
make_record(Tollgate__UsageRecord *u, const char *model, int64_t start_ms, int64_t cost)
{
    tollgate__usage_record__init(u);
    u->tenant_id = (char *)tenant;
    u->key_id = (char *)key;
    u->team_id = "";
    u->provider_id = "";
    u->model = (char *)model;
    u->input_tokens = 10;
    u->output_tokens = 5;
    u->cost_nanousd = cost;
    u->status = 200;
    u->latency_ms = 12;
    u->started_unix_ms = start_ms;
}

static void
free_stmt(cp_db_stmt_t *s)
{
    for (int i = 0; i < CP_DB_STMT_MAXPARAMS; i++)
        free(s->owned[i]);
}

static void
test_groups_and_quoting(void **state)
{
    (void)state;
    const int64_t hour_ms = 1795302000000; /* 2026-11-21 23:00:00 UTC */
    Tollgate__UsageRecord recs[3];
    Tollgate__UsageRecord *ptrs[3] = {&recs[0], &recs[1], &recs[2]};
    make_record(&recs[0], "a\"b\\c", hour_ms + 5, 100);
    make_record(&recs[1], "a\"b\\c", hour_ms + 7, 200); /* same group as the first */
    make_record(&recs[2], "plain", hour_ms - 1, 300);   /* the hour before */
    Tollgate__UsageBatch b = TOLLGATE__USAGE_BATCH__INIT;
    b.instance_id = "test";
    b.sequence = 1;
    b.n_records = 3;
    b.records = ptrs;
    cp_db_stmt_t s;
    char err[128] = "";
    assert_int_equal(cp_rollup_stmt(&b, hour_ms, &s, err, sizeof(err)), 0);
    assert_non_null(s.sql);
    assert_non_null(strstr(s.sql, "tollgate_rollup_add("));
    assert_int_equal(s.nparams, 14);
    for (int c = 0; c < 14; c++) {
        assert_non_null(s.values[c]);
        assert_ptr_equal(s.values[c], s.owned[c]); /* the statement owns its parameters */
        assert_true(s.values[c][0] == '{');
    }
    /* two groups: the model column holds both, escaped as array elements */
    assert_non_null(strstr(s.values[5], "\"a\\\"b\\\\c\""));
    assert_non_null(strstr(s.values[5], "\"plain\""));
    assert_non_null(strstr(s.values[0], "2026-11-21 23:00:00+00"));
    assert_non_null(strstr(s.values[0], "2026-11-21 22:00:00+00"));
    /* requests per group: 2 and 1, in either order */
    assert_true(strcmp(s.values[6], "{2,1}") == 0 || strcmp(s.values[6], "{1,2}") == 0);
    assert_true(strcmp(s.values[11], "{300,300}") == 0); /* cost: 100 + 200, and 300 */
    free_stmt(&s);
}

static void
test_empty_and_overflow(void **state)
{
    (void)state;
    cp_db_stmt_t s;
    char err[128] = "";
    Tollgate__UsageBatch empty = TOLLGATE__USAGE_BATCH__INIT;
    assert_int_equal(cp_rollup_stmt(&empty, 0, &s, err, sizeof(err)), 0);
    assert_null(s.sql); /* nothing to send */

    Tollgate__UsageRecord recs[3];
    Tollgate__UsageRecord *ptrs[3] = {&recs[0], &recs[1], &recs[2]};
    for (int i = 0; i < 3; i++)
        make_record(&recs[i], "m", 1795302000000, INT64_MAX / 2);
    Tollgate__UsageBatch b = TOLLGATE__USAGE_BATCH__INIT;
    b.instance_id = "test";
    b.sequence = 1;
    b.n_records = 3;
    b.records = ptrs;
    assert_int_equal(cp_rollup_stmt(&b, 0, &s, err, sizeof(err)), -1);
    assert_null(s.sql);
    assert_non_null(strstr(err, "out of range"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_groups_and_quoting),
        cmocka_unit_test(test_empty_and_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
