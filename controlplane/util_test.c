/* Unit tests for util.c: UUIDs, virtual keys and admin tokens, masking, exact decimals and USD from JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include "util.h"

static void
test_uuid(void **state)
{
    char u[CP_UUID_LEN + 1];
    assert_int_equal(cp_uuid_generate(u), 0);
    assert_true(cp_uuid_valid(u));
    assert_int_equal(u[14], '4');
    assert_true(cp_uuid_valid("123e4567-E89B-12d3-a456-426614174000"));
    assert_false(cp_uuid_valid("123e4567e89b12d3a456426614174000"));
    assert_false(cp_uuid_valid("123e4567-e89b-12d3-a456-42661417400g"));
    assert_false(cp_uuid_valid("123e4567-e89b-12d3-a456-4266141740001"));
    assert_false(cp_uuid_valid(""));
    assert_false(cp_uuid_valid(NULL));
}

static void
test_vkey(void **state)
{
    char key[CP_VKEY_LEN + 1], prefix[CP_VKEY_PREFIX_LEN + 1];
    uint8_t hash[TG_SHA256_LEN], expect[TG_SHA256_LEN];
    assert_int_equal(cp_vkey_generate(key, prefix, hash), 0);
    assert_int_equal(strlen(key), 51);
    assert_memory_equal(key, "tg-", 3);
    for (int i = 3; i < 51; i++)
        assert_true((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f'));
    assert_int_equal(strlen(prefix), 11);
    assert_memory_equal(prefix, key, 11);
    tg_sha256(key, strlen(key), expect);
    assert_memory_equal(hash, expect, sizeof(hash));
}

static void
test_mask(void **state)
{
    char m[32];
    cp_mask_secret("sk-abcdefghijklmnop1234", m, sizeof(m));
    assert_string_equal(m, "sk-\xe2\x80\xa6"
                           "1234");
    cp_mask_secret("short", m, sizeof(m));
    assert_string_equal(m, "\xe2\x80\xa6");
}

static void
check_decimal(const char *json, const char *expect)
{
    char buf[64];
    json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    if (expect == NULL) {
        assert_int_equal(cp_decimal_from_json(v, buf, sizeof(buf)), -1);
    } else {
        assert_int_equal(cp_decimal_from_json(v, buf, sizeof(buf)), 0);
        assert_string_equal(buf, expect);
    }
    json_decref(v);
}

static void
test_decimal(void **state)
{
    check_decimal("0.15", "0.15");
    check_decimal("0.075", "0.075");
    check_decimal("2.5", "2.5");
    check_decimal("10", "10");
    check_decimal("0", "0");
    check_decimal("1e-7", "0.000000100000");
    check_decimal("\"0.000000001\"", "0.000000001");
    check_decimal("\"12.50\"", "12.50");
    check_decimal("-1", NULL);
    check_decimal("-0.5", NULL);
    check_decimal("\"1e3\"", NULL);
    check_decimal("\"-1\"", NULL);
    check_decimal("\"1.\"", NULL);
    check_decimal("\"\"", NULL);
    check_decimal("true", NULL);
}

static void
test_rfc3339(void **state)
{
    char buf[32];
    cp_format_rfc3339(1795293000123, buf);
    assert_string_equal(buf, "2026-11-21T20:30:00Z");
}

static void
test_admin_token(void **state)
{
    char tok[CP_ADMIN_TOKEN_LEN + 1], prefix[CP_ADMIN_TOKEN_PREFIX_LEN + 1];
    uint8_t hash[TG_SHA256_LEN], expect[TG_SHA256_LEN];
    assert_int_equal(cp_admin_token_generate(tok, prefix, hash), 0);
    assert_int_equal(strlen(tok), 52);
    assert_memory_equal(tok, "tgt-", 4);
    assert_memory_equal(prefix, tok, CP_ADMIN_TOKEN_PREFIX_LEN);
    tg_sha256(tok, strlen(tok), expect);
    assert_memory_equal(hash, expect, TG_SHA256_LEN);
}

static int64_t
usd(const char *text)
{
    int64_t v = -42;
    return cp_usd_parse(text, &v) == 0 ? v : -1;
}

static int64_t
usd_json(json_t *j)
{
    int64_t v = -42;
    int rv = cp_usd_from_json(j, &v);
    json_decref(j);
    return rv == 0 ? v : -1;
}

static void
test_usd(void **state)
{
    assert_int_equal(usd("0"), 0);
    assert_int_equal(usd("12"), 12000000000LL);
    assert_int_equal(usd("0.15"), 150000000LL);
    assert_int_equal(usd("1.000000001"), 1000000001LL);
    assert_int_equal(usd("1.0000000010000"), 1000000001LL); /* trailing zeros past nano are fine */
    assert_int_equal(usd("1000000000"), CP_USD_MAX_NANO);
    assert_int_equal(usd("1000000000.000000001"), -1); /* above the maximum */
    assert_int_equal(usd("99999999999999999999"), -1); /* overflow */
    assert_int_equal(usd("0.0000000001"), -1);         /* below one nano-USD: refused, not rounded */
    assert_int_equal(usd("-1"), -1);
    assert_int_equal(usd("1e3"), -1);
    assert_int_equal(usd("1."), -1);
    assert_int_equal(usd(".5"), -1);
    assert_int_equal(usd(""), -1);
    assert_int_equal(usd("1,5"), -1);
    assert_int_equal(usd("1 "), -1);
    assert_int_equal(usd("0x10"), -1);
    assert_int_equal(usd_json(json_integer(3)), 3000000000LL);
    assert_int_equal(usd_json(json_integer(-3)), -1);
    assert_int_equal(usd_json(json_integer(2000000000)), -1);
    assert_int_equal(usd_json(json_real(0.1)), 100000000LL); /* the shortest decimal, not 0.1000000000000000055 */
    assert_int_equal(usd_json(json_real(19.99)), 19990000000LL);
    assert_int_equal(usd_json(json_real(1e-10)), -1);
    assert_int_equal(usd_json(json_real(1e300)), -1);
    assert_int_equal(usd_json(json_string("123456789.123456789")), 123456789123456789LL);
    assert_int_equal(usd_json(json_true()), -1);
    assert_int_equal(usd_json(json_null()), -1);
    int64_t untouched = 7;
    assert_int_equal(cp_usd_parse("bad", &untouched), -1);
    assert_int_equal(untouched, 7);
}

static void
test_usd_format(void **state)
{
    char b[32];
    cp_usd_format(0, b);
    assert_string_equal(b, "0");
    cp_usd_format(1, b);
    assert_string_equal(b, "0.000000001");
    cp_usd_format(12500000000LL, b);
    assert_string_equal(b, "12.5");
    cp_usd_format(CP_USD_MAX_NANO, b);
    assert_string_equal(b, "1000000000");
    cp_usd_format(123456789123456789LL, b);
    assert_string_equal(b, "123456789.123456789");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid),    cmocka_unit_test(test_vkey),       cmocka_unit_test(test_mask),
        cmocka_unit_test(test_decimal), cmocka_unit_test(test_rfc3339),    cmocka_unit_test(test_admin_token),
        cmocka_unit_test(test_usd),     cmocka_unit_test(test_usd_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
