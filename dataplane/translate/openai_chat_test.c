/* Unit tests for OpenAI chat request scanning and the upstream body plan. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "translate/openai_chat.h"

/* Rewrites body for upstream model "up" and returns it (static buffer). */
static const char *
rewrite(const char *body, int *ret_wants_usage)
{
    static char out[1024];
    dp_openai_chat_t r;
    dp_body_plan_t plan;
    assert_int_equal(dp_openai_chat_parse(body, strlen(body), &r), 0);
    dp_openai_chat_plan(&r, "\"up\"", 4, &plan);
    dp_body_plan_apply(&plan, body, strlen(body), out);
    out[strlen(body) + plan.delta] = '\0';
    if (ret_wants_usage != NULL)
        *ret_wants_usage = plan.client_wants_usage;
    /* whatever the plan did, the result is JSON */
    tg_json_span_t v;
    assert_int_equal(tg_json_parse(out, strlen(out), &v), 0);
    return out;
}

static void
test_parse(void **state)
{
    dp_openai_chat_t r;
    const char *b = "{\"model\":\"m\",\"messages\":[],\"stream\":true}";
    assert_int_equal(dp_openai_chat_parse(b, strlen(b), &r), 0);
    assert_true(tg_json_string_eq(r.model, "m"));
    assert_int_equal(r.messages.type, TG_JSON_ARRAY);
    assert_int_equal(r.stream, 1);
    assert_int_equal(r.stream_options.type, TG_JSON_INVALID);
    assert_int_equal(dp_openai_chat_parse("[1]", 3, &r), -1);
    assert_int_equal(dp_openai_chat_parse("{\"model\":", 9, &r), -1);
    assert_int_equal(dp_openai_chat_parse(NULL, 0, &r), -1);
}

static void
test_model_only(void **state)
{
    assert_string_equal(rewrite("{\"model\":\"m\",\"messages\":[]}", NULL), "{\"model\":\"up\",\"messages\":[]}");
    /* already the upstream name: nothing to do */
    assert_string_equal(rewrite("{\"model\":\"up\",\"messages\":[]}", NULL), "{\"model\":\"up\",\"messages\":[]}");
}

static void
test_stream_usage(void **state)
{
    int wants;
    assert_string_equal(rewrite("{\"model\":\"m\",\"stream\":true}", &wants),
                        "{\"model\":\"up\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    assert_false(wants);
    assert_string_equal(rewrite("{\"stream_options\":{},\"model\":\"m\",\"stream\":true}", &wants),
                        "{\"stream_options\":{\"include_usage\":true},\"model\":\"up\",\"stream\":true}");
    assert_string_equal(
        rewrite("{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":false}}", &wants),
        "{\"model\":\"up\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    assert_false(wants);
    assert_string_equal(rewrite("{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"x\":1}}", &wants),
                        "{\"model\":\"up\",\"stream\":true,\"stream_options\":{\"include_usage\":true,\"x\":1}}");
    assert_string_equal(rewrite("{\"model\":\"m\",\"stream\":true,\"stream_options\":null}", &wants),
                        "{\"model\":\"up\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    assert_string_equal(
        rewrite("{\"model\":\"up\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}", &wants),
        "{\"model\":\"up\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    assert_true(wants);
    /* not a stream: stream_options untouched */
    assert_string_equal(rewrite("{\"model\":\"m\",\"stream\":false,\"stream_options\":{}}", &wants),
                        "{\"model\":\"up\",\"stream\":false,\"stream_options\":{}}");
}

/* The gateway's `fallbacks` member never reaches the provider, wherever it sits in the body. */
static void
test_fallbacks_cut(void **state)
{
    dp_openai_chat_t r;
    const char *b = "{\"model\":\"m\",\"fallbacks\":[\"a\",\"p/b\"]}";
    assert_int_equal(dp_openai_chat_parse(b, strlen(b), &r), 0);
    assert_int_equal(r.fallbacks.type, TG_JSON_ARRAY);
    assert_string_equal(rewrite(b, NULL), "{\"model\":\"up\"}");
    assert_string_equal(rewrite("{\"fallbacks\":[\"a\"],\"model\":\"m\",\"messages\":[]}", NULL),
                        "{\"model\":\"up\",\"messages\":[]}");
    assert_string_equal(rewrite("{\"model\":\"m\", \"fallbacks\" : [\"a\"] , \"messages\":[]}", NULL),
                        "{\"model\":\"up\" , \"messages\":[]}");
    assert_string_equal(rewrite("{ \"fallbacks\":[] }", NULL), "{  }");
    /* with a stream's usage request added at the end, and after the model */
    assert_string_equal(rewrite("{\"fallbacks\":[\"x\"],\"model\":\"m\",\"stream\":true}", NULL),
                        "{\"model\":\"up\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    assert_string_equal(rewrite("{\"model\":\"m\",\"stream\":true,\"fallbacks\":\"x\"}", NULL),
                        "{\"model\":\"up\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    assert_string_equal(rewrite("{\"model\":\"m\",\"stream_options\":{},\"fallbacks\":[],\"stream\":true}", NULL),
                        "{\"model\":\"up\",\"stream_options\":{\"include_usage\":true},\"stream\":true}");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_model_only),
        cmocka_unit_test(test_stream_usage),
        cmocka_unit_test(test_fallbacks_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
