/* Unit tests of the growable buffer's number formatting (tg_fmt_u64, tg_buf_append_u64), against printf. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "tollgate/buf.h"

static void
check(unsigned long long v)
{
    char want[32], got[TG_U64_DIGITS + 1];
    int n = snprintf(want, sizeof(want), "%llu", v);
    size_t len = tg_fmt_u64(got, v);
    got[len] = '\0';
    assert_int_equal(len, (size_t)n);
    assert_string_equal(got, want);
}

static void
test_fmt_u64_matches_printf(void **state)
{
    (void)state;
    unsigned long long p = 1;
    check(0);
    for (int i = 0; i < 20; i++, p *= 10) { /* every length, and each power of ten's neighbours */
        check(p);
        check(p - 1);
        check(p + 1);
    }
    check(UINT64_MAX);
    check(UINT64_MAX - 1);
    check(4194304);
}

static void
test_append_u64_appends(void **state)
{
    (void)state;
    tg_buf_t b = {0};
    assert_int_equal(tg_buf_appends(&b, "n="), 0);
    assert_int_equal(tg_buf_append_u64(&b, 18446744073709551615ull), 0);
    assert_int_equal(tg_buf_append_u64(&b, 0), 0);
    assert_int_equal(b.len, strlen("n=184467440737095516150"));
    assert_memory_equal(b.base, "n=184467440737095516150", b.len);
    tg_buf_free(&b);

    tg_buf_t capped = {.max = 3}; /* over the cap: refused, buffer unchanged */
    assert_int_equal(tg_buf_append_u64(&capped, 123), 0);
    assert_int_equal(tg_buf_append_u64(&capped, 4), -1);
    assert_int_equal(capped.len, 3);
    tg_buf_free(&capped);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fmt_u64_matches_printf),
        cmocka_unit_test(test_append_u64_appends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
