/* Unit tests for the JSON span scanner: grammar acceptance, iteration, decoding, quoting. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "tollgate/json_scan.h"

static int
parses(const char *s)
{
    tg_json_span_t v;
    return tg_json_parse(s, strlen(s), &v) == 0;
}

static void
test_valid_and_invalid(void **state)
{
    const char *good[] = {
        "{}", "[]", " {\"a\":1} ", "[1,-2.5e+3,0.1,\"x\",true,false,null]", "\"\\u00e9\\n\"", "{\"a\":{\"b\":[{}]}}",
        "0",  "-0", "1E5"};
    const char *bad[] = {"",      "{",     "{\"a\"}", "{\"a\":}",    "[1,]",      "{\"a\":1,}", "01",
                         "1.",    "\"abc", "\"\\x\"", "tru",         "nul",       "{} x",       "[\"\x01\"]",
                         "{a:1}", "-",     "1e",      "\"\\u12g4\"", "{\"a\" 1}", "[1 2]"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(parses(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(parses(bad[i]));
}

static void
test_depth_limit(void **state)
{
    char deep[2 * TG_JSON_MAX_DEPTH + 10];
    size_t n = 0;
    for (int i = 0; i < TG_JSON_MAX_DEPTH + 2; i++)
        deep[n++] = '[';
    for (int i = 0; i < TG_JSON_MAX_DEPTH + 2; i++)
        deep[n++] = ']';
    tg_json_span_t v;
    assert_int_equal(tg_json_parse(deep, n, &v), -1);
}

static void
test_object_iteration(void **state)
{
    const char *s = "{\"model\":\"gpt\",\"stream\":true,\"n\":[1,2],\"o\":{\"x\":null}}";
    tg_json_span_t top, k, v;
    tg_json_iter_t it;
    assert_int_equal(tg_json_parse(s, strlen(s), &top), 0);
    assert_int_equal(top.type, TG_JSON_OBJECT);
    assert_int_equal(tg_json_iter_init(&it, top), 0);
    assert_int_equal(tg_json_object_next(&it, &k, &v), 1);
    assert_true(tg_json_string_eq(k, "model"));
    assert_true(tg_json_string_eq(v, "gpt"));
    assert_int_equal(tg_json_object_next(&it, &k, &v), 1);
    assert_int_equal(v.type, TG_JSON_TRUE);
    assert_int_equal(tg_json_object_next(&it, &k, &v), 1);
    assert_int_equal(v.type, TG_JSON_ARRAY);
    assert_int_equal(v.len, 5);
    assert_int_equal(tg_json_object_next(&it, &k, &v), 1);
    assert_int_equal(v.type, TG_JSON_OBJECT);
    assert_int_equal(tg_json_object_next(&it, &k, &v), 0);

    tg_json_span_t x;
    assert_int_equal(tg_json_object_get(v, "x", &x), 1);
    assert_int_equal(x.type, TG_JSON_NULL);
    assert_int_equal(tg_json_object_get(v, "y", &x), 0);
}

static void
test_array_and_numbers(void **state)
{
    const char *s = "[7, -42, 9223372036854775807, 1.5]";
    tg_json_span_t top, v;
    tg_json_iter_t it;
    int64_t n;
    assert_int_equal(tg_json_parse(s, strlen(s), &top), 0);
    tg_json_iter_init(&it, top);
    assert_int_equal(tg_json_array_next(&it, &v), 1);
    assert_int_equal(tg_json_to_int64(v, &n), 0);
    assert_int_equal(n, 7);
    assert_int_equal(tg_json_array_next(&it, &v), 1);
    assert_int_equal(tg_json_to_int64(v, &n), 0);
    assert_int_equal(n, -42);
    assert_int_equal(tg_json_array_next(&it, &v), 1);
    assert_int_equal(tg_json_to_int64(v, &n), 0);
    assert_true(n == INT64_MAX);
    assert_int_equal(tg_json_array_next(&it, &v), 1);
    assert_int_equal(tg_json_to_int64(v, &n), -1);
    assert_int_equal(tg_json_array_next(&it, &v), 0);
}

static void
test_decode_and_quote(void **state)
{
    const char *s = "\"a\\\"b\\\\c\\n\\u00e9\\ud83d\\ude00\"";
    tg_json_span_t v;
    char out[64];
    size_t len;
    assert_int_equal(tg_json_parse(s, strlen(s), &v), 0);
    assert_int_equal(tg_json_string_decode(v, out, sizeof(out), &len), 0);
    assert_int_equal(len, 12);
    assert_memory_equal(out, "a\"b\\c\n\xc3\xa9\xf0\x9f\x98\x80", 12);
    assert_true(tg_json_string_eq(v, "a\"b\\c\n\xc3\xa9\xf0\x9f\x98\x80"));

    char q[128];
    size_t qn = tg_json_quote(q, out, len);
    tg_json_span_t back;
    assert_int_equal(tg_json_parse(q, qn, &back), 0);
    assert_true(tg_json_string_eq(back, "a\"b\\c\n\xc3\xa9\xf0\x9f\x98\x80"));
    assert_int_equal(tg_json_quote(q, "\x01", 1), 8);
    assert_memory_equal(q, "\"\\u0001\"", 8);
}

static void
test_iterate_text(void **state)
{
    tg_json_iter_t it;
    tg_json_span_t k, v, top;
    tg_json_type_t type;
    const char *s = " {\"a\":[1,2],\"b\":{}} \n";
    assert_int_equal(tg_json_iter_init_text(&it, s, strlen(s), &type), 0);
    assert_int_equal(type, TG_JSON_OBJECT);
    assert_int_equal(tg_json_object_next(&it, &k, &v), 1);
    assert_true(tg_json_string_eq(k, "a"));
    assert_int_equal(tg_json_object_next(&it, &k, &v), 1);
    assert_int_equal(tg_json_object_next(&it, &k, &v), 0);
    assert_int_equal(tg_json_iter_finish(&it, &top), 0);
    assert_ptr_equal(top.p, s + 1);
    assert_int_equal(top.len, strlen(s) - 3);

    /* trailing garbage, a bad member, and not a container at all */
    const char *junk = "{\"a\":1} x";
    assert_int_equal(tg_json_iter_init_text(&it, junk, strlen(junk), &type), 0);
    assert_int_equal(tg_json_object_next(&it, &k, &v), 1);
    assert_int_equal(tg_json_object_next(&it, &k, &v), 0);
    assert_int_equal(tg_json_iter_finish(&it, &top), -1);
    const char *bad = "{\"a\":tru}";
    assert_int_equal(tg_json_iter_init_text(&it, bad, strlen(bad), &type), 0);
    assert_int_equal(tg_json_object_next(&it, &k, &v), -1);
    assert_int_equal(tg_json_iter_init_text(&it, "\"s\"", 3, &type), -1);
    assert_int_equal(tg_json_iter_init_text(&it, "", 0, &type), -1);
}

static void
test_empty(void **state)
{
    tg_json_span_t v;
    assert_int_equal(tg_json_parse("[ ]", 3, &v), 0);
    assert_true(tg_json_is_empty(v));
    assert_int_equal(tg_json_parse("[0]", 3, &v), 0);
    assert_false(tg_json_is_empty(v));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_and_invalid),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_object_iteration),
        cmocka_unit_test(test_array_and_numbers),
        cmocka_unit_test(test_decode_and_quote),
        cmocka_unit_test(test_iterate_text),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
