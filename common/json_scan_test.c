/* Unit tests for the JSON span scanner: grammar acceptance, iteration, decoding, quoting. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

    /* regression (found by the fuzzer): a text cut right after a ',' was read one byte past its end */
    char *cut = malloc(7);
    memcpy(cut, "{\"a\":1,", 7);
    assert_int_equal(tg_json_iter_init_text(&it, cut, 7, &type), 0);
    assert_int_equal(tg_json_object_next(&it, &k, &v), 1);
    assert_int_equal(tg_json_object_next(&it, &k, &v), -1);
    free(cut);
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

/* The scanner's answer for the string starting at s[0] ('"'), byte by byte: its length with both quotes,
 * or 0 when it is not a valid string. The reference the word-at-a-time search must agree with. */
static size_t
ref_string_len(const unsigned char *s, size_t n)
{
    static const char hex[] = "0123456789abcdefABCDEF";
    for (size_t i = 1; i < n; i++) {
        if (s[i] == '"')
            return i + 1;
        if (s[i] < 0x20)
            return 0;
        if (s[i] != '\\')
            continue;
        if (i + 1 >= n)
            return 0;
        if (s[i + 1] == 'u') {
            if (n - i < 6)
                return 0;
            for (int k = 2; k < 6; k++)
                if (s[i + k] == 0 || strchr(hex, s[i + k]) == NULL)
                    return 0;
            i += 5;
        } else if (strchr("\"\\/bfnrt", s[i + 1]) != NULL && s[i + 1] != 0) {
            i++;
        } else {
            return 0;
        }
    }
    return 0;
}

/* One string in an array, "[" + string + "]", in a buffer of exactly its size (ASan sees any read past
 * it), at every alignment: the scanner's span must be the reference's. */
static void
check_string(const char *content, size_t clen, size_t pad)
{
    size_t n = pad + 1 + 1 + clen + 1 + 1;
    unsigned char *b = malloc(n);
    memset(b, ' ', pad);
    b[pad] = '[';
    b[pad + 1] = '"';
    memcpy(b + pad + 2, content, clen);
    b[n - 2] = '"';
    b[n - 1] = ']';
    size_t want = ref_string_len(b + pad + 1, n - pad - 1);
    tg_json_iter_t it;
    tg_json_type_t type;
    tg_json_span_t v;
    assert_int_equal(tg_json_iter_init_text(&it, (const char *)b, n, &type), 0);
    int rv = tg_json_array_next(&it, &v);
    if (want == 0) {
        assert_int_equal(rv, -1);
    } else {
        assert_int_equal(rv, 1);
        assert_int_equal(v.type, TG_JSON_STRING);
        assert_int_equal(v.len, want);
    }
    /* and the whole text parses exactly when the string closes at its last quote */
    tg_json_span_t top;
    assert_int_equal(tg_json_parse((const char *)b, n, &top) == 0, want == clen + 2);
    free(b);
}

static void
test_strings_at_every_offset(void **state)
{
    /* what is put at offset i of a run of plain bytes: escapes, a control byte, a bare quote, bytes the
     * search must pass over (DEL, UTF-8, 0xff, 0x20, and the byte just above each special) */
    static const struct {
        const char *s;
        size_t len;
    } specials[] = {
        {"\\n", 2},  {"\\\"", 2}, {"\\\\", 2}, {"\\u00e9", 6}, {"\\u12g4", 6}, {"\\x", 2},
        {"\x01", 1}, {"\x1f", 1}, {"\t", 1},   {"\"", 1},      {"\x7f", 1},    {"\xc3\xa9", 2},
        {"\xff", 1}, {" ", 1},    {"#", 1},    {"]", 1},       {"\\", 1},      {"\x00", 1},
    };
    static const char fillers[] = {'a', '\x80', '!'};
    char content[80];
    for (size_t f = 0; f < sizeof(fillers); f++)
        for (size_t len = 0; len <= 40; len++)
            for (size_t pad = 0; pad < 16; pad++) {
                memset(content, fillers[f], len);
                check_string(content, len, pad); /* no special at all */
                for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++)
                    for (size_t i = 0; i <= len; i++) {
                        /* the special at offset i, then a second one (a control byte) further on */
                        memset(content, fillers[f], sizeof(content));
                        memcpy(content + i, specials[k].s, specials[k].len);
                        size_t clen = len + specials[k].len;
                        check_string(content, clen, pad);
                        if (i + specials[k].len + 3 < clen) {
                            content[clen - 2] = '\x02';
                            check_string(content, clen, pad);
                        }
                    }
            }
}

static void
test_may_have_object_member(void **state)
{
    struct {
        const char *text;
        int usage;
    } cases[] = {
        {"{\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}", 0},
        {"{\"choices\":[],\"usage\":{\"prompt_tokens\":1}}", 1},
        {"{\"usage\" :\n\t{}}", 1},
        {"{\"usage\":null}", 0},            /* only object values count */
        {"{\"usage\":\"{\"}", 0},           /* a string is not an object */
        {"{\"x\":\"usage\"}", 0},           /* a value, not followed by ':' */
        {"{\"a\":\"\\\"usage\\\":{\"}", 0}, /* escaped quotes inside a string are not a key */
        {"{\"us\\u0061ge\":{}}", 1},        /* a key spelled with an escape: any \u says maybe */
        {"{\"c\":\"\\u00e9\"}", 1},
        {"{\"usage\"", 0},
        {"{\"usage\":", 0},
        {"\"usage\":{", 1}, /* not validated: a pre-check only */
        {"", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* an exact-size copy, so ASan sees any read past the end */
        size_t n = strlen(cases[i].text);
        char *b = malloc(n ? n : 1);
        memcpy(b, cases[i].text, n);
        assert_int_equal(tg_json_may_have_object_member(b, n, "usage", NULL), cases[i].usage);
        free(b);
    }
    /* the member at every offset of a longer text (the 16-byte loop, its tail, the boundary between) */
    char text[128];
    for (size_t pad = 0; pad < 48; pad++) {
        for (int obj = 0; obj < 2; obj++) {
            size_t n = 0;
            text[n++] = '{';
            text[n++] = '"';
            memset(text + n, 'e', pad); /* 'e' after a quote is a candidate for "error", not for "usage" */
            n += pad;
            n += (size_t)sprintf(text + n, "\":1,\"usage\":%s}", obj ? "{}" : "[]");
            char *b = malloc(n);
            memcpy(b, text, n);
            assert_int_equal(tg_json_may_have_object_member(b, n, "usage", NULL), obj);
            assert_int_equal(tg_json_may_have_object_member(b, n, "error", NULL), 0);
            free(b);
        }
    }
    const char *err = "{\"error\":{\"message\":\"x\"}}";
    assert_int_equal(tg_json_may_have_object_member(err, strlen(err), "error", NULL), 1);
    assert_int_equal(tg_json_may_have_object_member(err, strlen(err), "usage", NULL), 0);
    assert_int_equal(tg_json_may_have_object_member(err, strlen(err), "usage", "error"), 1);
    assert_int_equal(tg_json_may_have_object_member(err, strlen(err), "error", "usage"), 1);
    const char *chunk = "{\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":null,\"error\":\"e\"}";
    assert_int_equal(tg_json_may_have_object_member(chunk, strlen(chunk), "usage", "error"), 0);
}

static void
test_quote_round_trip(void **state)
{
    /* bytes that need an escape at every offset of runs that do not (the run copy, 16 bytes at a time) */
    static const char specials[] = {'"', '\\', '\n', '\r', '\t', '\x01', '\x1f', '\x7f', '\xc3', 'x'};
    char in[48], q[6 * sizeof(in) + 2], out[sizeof(in) + 8]; /* decode wants room for 4 bytes per \u */
    for (size_t len = 1; len <= sizeof(in); len++)
        for (size_t i = 0; i < len; i++)
            for (size_t k = 0; k < sizeof(specials); k++) {
                memset(in, 'a', len);
                in[i] = specials[k];
                in[len - 1] = specials[(k + 3) % sizeof(specials)];
                size_t qn = tg_json_quote(q, in, len), n;
                tg_json_span_t v;
                assert_int_equal(tg_json_parse(q, qn, &v), 0);
                assert_int_equal(tg_json_string_decode(v, out, sizeof(out), &n), 0);
                assert_int_equal(n, len);
                assert_memory_equal(out, in, len);
            }
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
        cmocka_unit_test(test_strings_at_every_offset),
        cmocka_unit_test(test_may_have_object_member),
        cmocka_unit_test(test_quote_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
