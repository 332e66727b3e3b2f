/* Unit tests for admin/usage_query.c: group_by parsing and the SQL built for each grouping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include "usage_query.h"

static void
test_parse(void **state)
{
    unsigned m;
    assert_int_equal(cp_usage_parse_group_by("key,model,day", &m), 0);
    assert_int_equal(m, CP_USAGE_BY_KEY | CP_USAGE_BY_MODEL | CP_USAGE_BY_DAY);
    assert_int_equal(cp_usage_parse_group_by("day", &m), 0);
    assert_int_equal(m, CP_USAGE_BY_DAY);
    assert_int_equal(cp_usage_parse_group_by("model,key", &m), 0);
    assert_int_equal(m, CP_USAGE_BY_KEY | CP_USAGE_BY_MODEL);
    assert_int_equal(cp_usage_parse_group_by("", &m), 0);
    assert_int_equal(m, 0);
    assert_int_equal(cp_usage_parse_group_by("key,key", &m), -1);
    assert_int_equal(cp_usage_parse_group_by("key,", &m), -1);
    assert_int_equal(cp_usage_parse_group_by(",key", &m), -1);
    assert_int_equal(cp_usage_parse_group_by("tenant", &m), -1);
    assert_int_equal(cp_usage_parse_group_by("keys", &m), -1);
}

static void
test_sql(void **state)
{
    char sql[2048];
    assert_int_equal(cp_usage_build_sql(CP_USAGE_BY_KEY | CP_USAGE_BY_MODEL | CP_USAGE_BY_DAY, sql, sizeof(sql)), 0);
    assert_non_null(strstr(sql, " GROUP BY day, key_id, model"));
    assert_non_null(strstr(sql, " ORDER BY day, key_id, model"));
    assert_non_null(strstr(sql, "'day', day, 'key_id', key_id, 'model', model, 'requests'"));
    assert_non_null(strstr(sql, "tenant_id = $1::uuid AND ts >= $2::timestamptz AND ts < $3::timestamptz"));
    assert_non_null(strstr(sql, "::numeric(30, 9)::text"));

    assert_int_equal(cp_usage_build_sql(CP_USAGE_BY_MODEL, sql, sizeof(sql)), 0);
    assert_non_null(strstr(sql, " GROUP BY model) g ORDER BY model"));
    assert_null(strstr(sql, "key_id"));
    assert_null(strstr(sql, "'day'"));

    assert_int_equal(cp_usage_build_sql(0, sql, sizeof(sql)), 0);
    assert_null(strstr(sql, "GROUP BY"));
    assert_null(strstr(sql, "ORDER BY"));

    assert_int_equal(cp_usage_build_sql(CP_USAGE_BY_KEY, sql, 100), -1);
}

static void
test_report(void **state)
{
    unsigned mask = 99;
    assert_int_equal(cp_report_parse_group_by("", &mask), 0);
    assert_int_equal(mask, 0);
    assert_int_equal(cp_report_parse_group_by("model,tenant", &mask), 0);
    assert_int_equal(mask, CP_REPORT_BY_MODEL | CP_REPORT_BY_TENANT);
    assert_int_equal(cp_report_parse_group_by("tenant,team,key,provider,model", &mask), 0);
    assert_int_equal(cp_report_parse_group_by("tenant,tenant", &mask), -1);
    assert_int_equal(cp_report_parse_group_by("day", &mask), -1);
    assert_int_equal(cp_report_parse_group_by("key,", &mask), -1);
    assert_int_equal(cp_report_parse_group_by("key;DROP", &mask), -1);
    assert_int_equal(cp_report_parse_granularity("hour"), 0);
    assert_int_equal(cp_report_parse_granularity("month"), 0);
    assert_int_equal(cp_report_parse_granularity("week"), -1);
    assert_int_equal(cp_report_parse_granularity("hour'"), -1);

    char sql[4096];
    assert_int_equal(cp_report_build_sql("day", CP_REPORT_BY_TEAM | CP_REPORT_BY_MODEL, 10, sql, sizeof(sql)), 0);
    assert_non_null(strstr(sql, "date_trunc('day', hour AT TIME ZONE 'UTC')"));
    assert_non_null(strstr(sql, "nullif(team_id, '00000000-0000-0000-0000-000000000000'::uuid)::text, model,"));
    assert_null(strstr(sql, "tenant_id, '0"));
    assert_non_null(strstr(sql, "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 LIMIT 10"));
    assert_non_null(strstr(sql, "sum(lat_23)"));
    assert_int_equal(cp_report_build_sql("week", 0, 10, sql, sizeof(sql)), -1);
    assert_int_equal(cp_report_build_sql("hour", 0, 10, sql, 64), -1);
    assert_int_equal(cp_report_build_sql("hour", 0, 10, sql, sizeof(sql)), 0);
    assert_non_null(strstr(sql, "GROUP BY 1 ORDER BY 1 LIMIT"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_sql),
        cmocka_unit_test(test_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
