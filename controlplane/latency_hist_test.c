/* Unit tests for latency_hist.c: buckets agree with SQL's width_bucket over the bounds in
 * migrations/0004 (read from the file), and quantiles interpolate inside the right bucket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "latency_hist.h"

static void
test_buckets(void **state)
{
    (void)state;
    assert_int_equal(cp_lat_bucket(-3), 0);
    assert_int_equal(cp_lat_bucket(0), 0);
    assert_int_equal(cp_lat_bucket(4), 0);
    assert_int_equal(cp_lat_bucket(5), 1); /* bounds are exclusive upper ends */
    assert_int_equal(cp_lat_bucket(9), 1);
    assert_int_equal(cp_lat_bucket(1000), 12);
    assert_int_equal(cp_lat_bucket(299999), CP_LAT_BUCKETS - 2);
    assert_int_equal(cp_lat_bucket(300000), CP_LAT_BUCKETS - 1);
    assert_int_equal(cp_lat_bucket(INT64_MAX), CP_LAT_BUCKETS - 1);
    for (int i = 1; i < CP_LAT_BUCKETS - 1; i++)
        assert_true(cp_lat_bounds[i] > cp_lat_bounds[i - 1]);
}

static void
test_sql_bounds_match(void **state)
{
    (void)state;
    FILE *f = fopen(MIGRATION_0004, "r");
    assert_non_null(f);
    static char text[65536];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *p = strstr(text, "SELECT '{");
    assert_non_null(p);
    p += strlen("SELECT '{");
    for (int i = 0; i < CP_LAT_BUCKETS - 1; i++) {
        char *end;
        long v = strtol(p, &end, 10);
        assert_int_equal(v, cp_lat_bounds[i]);
        assert_true(*end == (i == CP_LAT_BUCKETS - 2 ? '}' : ','));
        p = end + 1;
    }
}

static void
test_quantiles(void **state)
{
    (void)state;
    int64_t c[CP_LAT_BUCKETS] = {0};
    assert_true(cp_lat_quantile(c, 0.5) < 0);
    /* 100 requests in [100, 150) ms: the median interpolates to the middle of the bucket. */
    c[cp_lat_bucket(120)] = 100;
    assert_float_equal(cp_lat_quantile(c, 0.5), 125.0, 1e-9);
    assert_float_equal(cp_lat_quantile(c, 1.0), 150.0, 1e-9);
    /* 90 fast, 10 slow: p50 among the fast, p95 and p99 among the slow. */
    memset(c, 0, sizeof(c));
    c[cp_lat_bucket(7)] = 90;
    c[cp_lat_bucket(2000)] = 10;
    assert_true(cp_lat_quantile(c, 0.5) >= 5 && cp_lat_quantile(c, 0.5) < 10);
    assert_true(cp_lat_quantile(c, 0.95) >= 1500 && cp_lat_quantile(c, 0.95) <= 2500);
    /* The open last bucket answers its lower bound. */
    memset(c, 0, sizeof(c));
    c[CP_LAT_BUCKETS - 1] = 3;
    assert_float_equal(cp_lat_quantile(c, 0.99), 300000.0, 1e-9);
    assert_true(cp_lat_quantile(c, 0) < 0);
    assert_true(cp_lat_quantile(c, 1.5) < 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_sql_bounds_match),
        cmocka_unit_test(test_quantiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
