/*
 * Unit tests of the Ollama native provider adapter: request encoding (system, images, tool calls and
 * results with tool_name, options, format; embed), response decoding (invented tool-call ids), NDJSON
 * stream decoding of recorded streams (text, thinking, whole tool calls, usage, an in-stream error), and
 * error decoding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "translate/tx.h"

extern const tx_provider_ops_t tx_ollama_native_provider;
#define P (&tx_ollama_native_provider)

static const tx_target_t target = {
    .kind = "ollama_native", .base_url = "http://127.0.0.1:11434", .upstream_model = "llama3.2"};

/* ---------------------------------------------------------------- helpers */

static json_t *
encode(const tx_request_t *r, tg_arena_t *a, tx_http_request_t *h)
{
    tx_error_t err = {0};
    if (P->encode_request(r, &target, a, h, &err) != 0)
        fail_msg("encode failed: %s", err.message);
    json_t *v = json_loadb(h->body, h->body_len, 0, NULL);
    assert_non_null(v);
    return v;
}

static void
assert_json(const json_t *got, const char *want_text)
{
    json_t *want = json_loads(want_text, 0, NULL);
    assert_non_null(want);
    if (!json_equal((json_t *)got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS), *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("JSON differs\n got: %s\nwant: %s", g, w);
    }
    json_decref(want);
}

static int
record(void *ctx, const tx_event_t *ev)
{
    tg_buf_t *b = ctx;
    switch (ev->kind) {
    case TX_EV_START:
        return tg_buf_appendf(b, "START model=%s\n", ev->model ? ev->model : "-");
    case TX_EV_TEXT:
        return tg_buf_appendf(b, "TEXT %d %.*s\n", ev->index, (int)ev->text_len, ev->text);
    case TX_EV_THINKING:
        return tg_buf_appendf(b, "THINK %d %.*s\n", ev->index, (int)ev->text_len, ev->text);
    case TX_EV_TOOL_START:
        return tg_buf_appendf(b, "TOOL %d %s %s\n", ev->index, ev->id ? ev->id : "-", ev->name);
    case TX_EV_TOOL_ARGS:
        return tg_buf_appendf(b, "ARGS %d %.*s\n", ev->index, (int)ev->text_len, ev->text);
    case TX_EV_BLOCK_END:
        return tg_buf_appendf(b, "END_BLOCK %d\n", ev->index);
    case TX_EV_USAGE:
        return tg_buf_appendf(b, "USAGE %lld %lld\n", (long long)ev->usage.input, (long long)ev->usage.output);
    case TX_EV_STOP:
        return tg_buf_appendf(b, "STOP %d\n", ev->stop);
    case TX_EV_ERROR:
        return tg_buf_appendf(b, "ERROR %d %s\n", ev->error->kind, ev->error->message);
    case TX_EV_END:
        return tg_buf_appends(b, "END\n");
    }
    return 0;
}

/* Runs NDJSON bytes through the adapter line by line; returns the recorded events (malloc'd). */
static char *
run_stream(const tx_request_t *r, const char *nd, size_t len)
{
    tg_arena_t a = TG_ARENA_INIT;
    tg_buf_t out = {0};
    void *st = calloc(1, P->stream_state_size);
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(nd + at, '\n', len - at);
        size_t n = nl != NULL ? (size_t)(nl - (nd + at)) : len - at;
        tx_frame_t f = {.data = nd + at, .data_len = n};
        tx_error_t err = {0};
        if (P->stream_frame(st, r, &f, &a, record, &out, &err) != 0)
            tg_buf_appendf(&out, "FAIL %d %s\n", err.kind, err.message);
        at += n + 1;
    }
    free(st);
    tg_arena_free(&a);
    tg_buf_append(&out, "", 1); /* NUL: the caller compares strings */
    return out.base;
}

static char *
read_file(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s (tests run from the project root)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    *ret_len = (size_t)n;
    return s;
}

/* ---------------------------------------------------------------- requests */

static void
test_encode_chat(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    json_t *schema = json_loads("{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\"}}}", 0, NULL);
    json_t *args = json_loads("{\"location\":\"Paris\"}", 0, NULL);
    tx_part_t u1[] = {{.kind = TX_PART_TEXT, .text = "Weather where this photo was taken?"},
                      {.kind = TX_PART_IMAGE, .media_type = "image/jpeg", .data = "/9j/4AAQ"}};
    tx_part_t a1[] = {{.kind = TX_PART_THINKING, .text = "The photo shows Paris."},
                      {.kind = TX_PART_TOOL_CALL, .id = "toolu_01", .name = "get_weather", .args = args}};
    /* Anthropic-style: the result in a user turn, by id only */
    tx_part_t u2[] = {{.kind = TX_PART_TOOL_RESULT, .id = "toolu_01", .text = "21 C"},
                      {.kind = TX_PART_TEXT, .text = "In Fahrenheit?"}};
    tx_part_t t1[] = {{.kind = TX_PART_TOOL_RESULT, .id = "x", .name = "convert", .text = "70 F"}};
    tx_message_t msgs[] = {
        {TX_ROLE_USER, u1, 2}, {TX_ROLE_ASSISTANT, a1, 2}, {TX_ROLE_USER, u2, 2}, {TX_ROLE_TOOL, t1, 1}};
    tx_tool_t tools[] = {{.name = "get_weather", .description = "Weather for a place", .parameters = schema}};
    const char *stop[] = {"END"};
    tx_request_t r = {.op = TX_OP_CHAT,
                      .stream = 1,
                      .system = "Be brief.",
                      .messages = msgs,
                      .n_messages = 4,
                      .tools = tools,
                      .n_tools = 1,
                      .tool_choice = TX_TOOL_CHOICE_AUTO,
                      .max_tokens = 50,
                      .temperature = 0.25,
                      .has_temperature = 1,
                      .top_p = 0.5,
                      .has_top_p = 1,
                      .top_k = 20,
                      .stop = stop,
                      .n_stop = 1,
                      .seed = 3,
                      .has_seed = 1,
                      .format = TX_FORMAT_JSON_OBJECT};
    tx_http_request_t h;
    json_t *body = encode(&r, &a, &h);
    assert_string_equal(h.url, "http://127.0.0.1:11434/api/chat");
    assert_json(body,
                "{\"model\":\"llama3.2\",\"stream\":true,\"format\":\"json\",\"messages\":["
                "{\"role\":\"system\",\"content\":\"Be brief.\"},"
                "{\"role\":\"user\",\"content\":\"Weather where this photo was taken?\",\"images\":[\"/9j/4AAQ\"]},"
                "{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"The photo shows Paris.\",\"tool_calls\":["
                "{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"location\":\"Paris\"}}}]},"
                "{\"role\":\"tool\",\"content\":\"21 C\",\"tool_name\":\"get_weather\"},"
                "{\"role\":\"user\",\"content\":\"In Fahrenheit?\"},"
                "{\"role\":\"tool\",\"content\":\"70 F\",\"tool_name\":\"convert\"}],"
                "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather "
                "for a place\",\"parameters\":{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\""
                "}}}}}],"
                "\"options\":{\"temperature\":0.25,\"top_p\":0.5,\"top_k\":20,\"num_predict\":50,\"stop\":[\"END\"],"
                "\"seed\":3}}");
    json_decref(body);

    /* a schema, no options, not streaming (Ollama's default is to stream: false must be explicit) */
    tx_request_t r2 = {.op = TX_OP_CHAT,
                       .messages = msgs,
                       .n_messages = 1,
                       .max_tokens = -1,
                       .top_k = -1,
                       .format = TX_FORMAT_JSON_SCHEMA,
                       .format_schema = schema,
                       .tools = tools,
                       .n_tools = 1,
                       .tool_choice = TX_TOOL_CHOICE_NONE};
    body = encode(&r2, &a, &h);
    assert_json(json_object_get(body, "format"), "{\"type\":\"object\",\"properties\":{\"location\":{\"type\":"
                                                 "\"string\"}}}");
    assert_true(json_is_false(json_object_get(body, "stream")));
    assert_null(json_object_get(body, "options"));
    assert_null(json_object_get(body, "tools")); /* NONE: no tools offered */
    json_decref(body);
    json_decref(schema);
    json_decref(args);
    tg_arena_free(&a);
}

static void
test_encode_rejects(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_part_t u[] = {{.kind = TX_PART_TEXT, .text = "look"}, {.kind = TX_PART_IMAGE, .url = "https://x/cat.png"}};
    tx_message_t msgs[] = {{TX_ROLE_USER, u, 2}};
    tx_request_t r = {.op = TX_OP_CHAT, .messages = msgs, .n_messages = 1, .max_tokens = -1, .top_k = -1};
    tx_http_request_t h;
    tx_error_t err = {0};
    assert_int_equal(P->encode_request(&r, &target, &a, &h, &err), -1);
    assert_int_equal(err.kind, TX_ERR_INVALID_REQUEST);
    assert_string_equal(err.code, "unsupported_image_url");

    tx_tool_t tools[] = {{.name = "a"}, {.name = "b"}};
    r.n_messages = 1;
    msgs[0].n_parts = 1;
    r.tools = tools;
    r.n_tools = 2;
    r.tool_choice = TX_TOOL_CHOICE_NAMED;
    r.tool_choice_name = "b";
    json_t *body = encode(&r, &a, &h);
    assert_json(json_object_get(body, "tools"), "[{\"type\":\"function\",\"function\":{\"name\":\"b\",\"parameters\":"
                                                "{\"type\":\"object\",\"properties\":{}}}}]");
    json_decref(body);
    r.tool_choice_name = "c";
    assert_int_equal(P->encode_request(&r, &target, &a, &h, &err), -1);
    assert_string_equal(err.param, "tool_choice");

    r.op = TX_OP_COUNT_TOKENS;
    assert_int_equal(P->encode_request(&r, &target, &a, &h, &err), -1);
    assert_string_equal(err.code, "unsupported_operation");
    tg_arena_free(&a);
}

static void
test_encode_embed(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    const char *inputs[] = {"hello", "world"};
    tx_request_t r = {.op = TX_OP_EMBED, .inputs = inputs, .n_inputs = 2, .dimensions = -1};
    tx_http_request_t h;
    json_t *body = encode(&r, &a, &h);
    assert_string_equal(h.url, "http://127.0.0.1:11434/api/embed");
    assert_json(body, "{\"model\":\"llama3.2\",\"input\":[\"hello\",\"world\"]}");
    json_decref(body);
    r.dimensions = 64;
    body = encode(&r, &a, &h);
    assert_int_equal(json_integer_value(json_object_get(body, "dimensions")), 64);
    json_decref(body);
    tg_arena_free(&a);
}

/* ---------------------------------------------------------------- responses */

static void
test_decode_golden_response(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    size_t len;
    char *body = read_file("tests/golden/ollama_native/response.json", &len);
    tx_request_t r = {.op = TX_OP_CHAT, .request_id = "req_01J:x/y"};
    tx_response_t resp;
    tx_error_t err = {0};
    assert_int_equal(P->decode_response(&r, body, len, &a, &resp, &err), 0);
    assert_null(resp.id);
    assert_string_equal(resp.model, "llama3.2");
    assert_int_equal(resp.n_parts, 2);
    assert_string_equal(resp.parts[0].text, "Let me check the weather in Paris.");
    assert_int_equal(resp.parts[1].kind, TX_PART_TOOL_CALL);
    assert_string_equal(resp.parts[1].id, "call_req_01Jxy_0");
    assert_string_equal(resp.parts[1].name, "get_weather");
    assert_json(resp.parts[1].args, "{\"location\":\"Paris\",\"unit\":\"celsius\"}");
    assert_int_equal(resp.stop, TX_STOP_TOOL_USE);
    assert_string_equal(resp.raw_stop, "stop");
    assert_true(resp.usage.known);
    assert_int_equal(resp.usage.input, 74);
    assert_int_equal(resp.usage.output, 28);
    assert_int_equal(resp.created, 1736850151); /* 2025-01-14T10:22:31Z */
    free(body);
    tg_arena_free(&a);
}

static void
test_decode_response_variants(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r = {.op = TX_OP_CHAT};
    tx_response_t resp;
    tx_error_t err = {0};
    static const char len_body[] =
        "{\"model\":\"qwen3\",\"created_at\":\"2025-01-14T12:22:31.5+02:00\",\"message\":{\"role\":\"assistant\","
        "\"content\":\"Hi\",\"thinking\":\"greet\",\"tool_calls\":[{\"id\":\"c9\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{\\\"a\\\":1}\"}},{\"function\":{\"name\":\"g\",\"arguments\":null}}]},\"done\":true,"
        "\"done_reason\":\"length\",\"eval_count\":5}";
    assert_int_equal(P->decode_response(&r, len_body, sizeof(len_body) - 1, &a, &resp, &err), 0);
    assert_int_equal(resp.n_parts, 4);
    assert_int_equal(resp.parts[0].kind, TX_PART_THINKING);
    assert_string_equal(resp.parts[0].text, "greet");
    assert_string_equal(resp.parts[1].text, "Hi");
    assert_string_equal(resp.parts[2].id, "c9"); /* an id Ollama sends is kept */
    assert_json(resp.parts[2].args, "{\"a\":1}");
    assert_string_equal(resp.parts[3].id, "call_1");
    assert_json(resp.parts[3].args, "{}");
    assert_int_equal(resp.stop, TX_STOP_MAX_TOKENS);
    assert_int_equal(resp.usage.input, 0);
    assert_int_equal(resp.usage.output, 5);
    assert_int_equal(resp.created, 1736850151);

    static const char *bad[] = {"", "nope", "[]", "{\"error\":\"model crashed\"}",
                                "{\"message\":{\"tool_calls\":[{\"function\":{}}]}}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(P->decode_response(&r, bad[i], strlen(bad[i]), &a, &resp, &err), -1);

    static const char embed[] = "{\"model\":\"all-minilm\",\"embeddings\":[[0.25,-0.5],[1,2]],\"total_duration\":1,"
                                "\"prompt_eval_count\":6}";
    tx_request_t re = {.op = TX_OP_EMBED};
    assert_int_equal(P->decode_response(&re, embed, sizeof(embed) - 1, &a, &resp, &err), 0);
    assert_int_equal(resp.n_embeddings, 2);
    assert_true(resp.embeddings[0].n == 2 && resp.embeddings[0].values[1] == -0.5f &&
                resp.embeddings[1].values[1] == 2.0f);
    assert_int_equal(resp.usage.input, 6);
    static const char bad_embed[] = "{\"embeddings\":[[\"x\"]]}";
    assert_int_equal(P->decode_response(&re, bad_embed, sizeof(bad_embed) - 1, &a, &resp, &err), -1);
    assert_int_equal(err.kind, TX_ERR_UPSTREAM);
    tg_arena_free(&a);
}

/* ---------------------------------------------------------------- streams */

static void
test_stream_golden(void **state)
{
    size_t len;
    char *nd = read_file("tests/golden/ollama_native/stream.txt", &len);
    tx_request_t r = {.op = TX_OP_CHAT, .stream = 1, .request_id = "r1"};
    char *got = run_stream(&r, nd, len);
    assert_string_equal(got, "START model=llama3.2\n"
                             "TEXT 0 Let\nTEXT 0  me\nTEXT 0  check\nTEXT 0  the\nTEXT 0  weather\nTEXT 0  in\n"
                             "TEXT 0  Paris\nTEXT 0 .\nEND_BLOCK 0\n"
                             "TOOL 1 call_r1_0 get_weather\n"
                             "ARGS 1 {\"location\":\"Paris\",\"unit\":\"celsius\"}\nEND_BLOCK 1\n"
                             "STOP 4\nUSAGE 74 28\nEND\n");
    free(got);
    free(nd);
}

static void
test_stream_thinking_and_error(void **state)
{
    static const char nd[] =
        "{\"model\":\"qwen3\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"Hmm\"},\"done\":"
        "false}\n"
        "\r\n"
        "{\"model\":\"qwen3\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\".\"},\"done\":false}"
        "\n"
        "{\"model\":\"qwen3\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n"
        "{\"error\":\"an error was encountered while running the model: unexpected EOF\"}\n"
        "{\"model\":\"qwen3\",\"message\":{\"role\":\"assistant\",\"content\":\"late\"},\"done\":false}\n";
    tx_request_t r = {.op = TX_OP_CHAT, .stream = 1};
    char *got = run_stream(&r, nd, sizeof(nd) - 1);
    char want[512];
    snprintf(want, sizeof(want),
             "START model=qwen3\nTHINK 0 Hmm\nTHINK 0 .\nEND_BLOCK 0\nTEXT 1 Hi\n"
             "ERROR %d Ollama failed during the stream: an error was encountered while running the model: "
             "unexpected EOF\n",
             TX_ERR_SERVER);
    assert_string_equal(got, want);
    free(got);

    /* length, two tool calls in one line, usage without prompt_eval_count */
    static const char nd2[] =
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":["
        "{\"function\":{\"name\":\"a\",\"arguments\":{}}},{\"function\":{\"name\":\"b\",\"arguments\":{\"x\":[1]}}}]},"
        "\"done\":false}\n"
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":"
        "\"length\","
        "\"eval_count\":9}\n";
    got = run_stream(&r, nd2, sizeof(nd2) - 1);
    snprintf(want, sizeof(want),
             "START model=m\nTOOL 0 call_0 a\nARGS 0 {}\nEND_BLOCK 0\nTOOL 1 call_1 b\nARGS 1 {\"x\":[1]}\n"
             "END_BLOCK 1\nSTOP %d\nUSAGE 0 9\nEND\n",
             TX_STOP_MAX_TOKENS);
    assert_string_equal(got, want);
    free(got);

    static const char broken[] = "{\"model\":\"m\",\"message\":\n";
    got = run_stream(&r, broken, sizeof(broken) - 1);
    assert_non_null(strstr(got, "FAIL"));
    free(got);
}

/* ---------------------------------------------------------------- errors */

static void
test_errors(void **state)
{
    static const struct {
        int status;
        const char *file;
        tx_error_kind_t kind;
        const char *code;
        const char *message;
    } cases[] = {
        {400, "tests/golden/ollama_native/error-400.json", TX_ERR_INVALID_REQUEST, "",
         "invalid character '}' looking for beginning of object key string"},
        {404, "tests/golden/ollama_native/error-404.json", TX_ERR_NOT_FOUND, "model_not_found",
         "model \"llama9\" not found, try pulling it first"},
        {500, "tests/golden/ollama_native/error-500.json", TX_ERR_SERVER, "",
         "llama runner process has terminated: signal: killed"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        char *body = read_file(cases[i].file, &len);
        tx_error_t err = {0};
        P->decode_error(cases[i].status, body, len, &err);
        assert_int_equal(err.kind, cases[i].kind);
        assert_string_equal(err.code, cases[i].code);
        assert_string_equal(err.message, cases[i].message);
        assert_int_equal(tx_error_status(&err), cases[i].status);
        free(body);
    }
    tx_error_t err = {0};
    P->decode_error(502, "Bad Gateway", 11, &err);
    assert_int_equal(err.kind, TX_ERR_UPSTREAM);
    assert_string_equal(err.message, "Ollama returned HTTP 502: Bad Gateway");
    P->decode_error(503, NULL, 0, &err);
    assert_int_equal(err.kind, TX_ERR_OVERLOADED);
    assert_string_equal(err.message, "Ollama returned HTTP 503.");
    P->decode_error(401, "{\"error\":{\"message\":\"bad key\"}}", 31, &err);
    assert_int_equal(err.kind, TX_ERR_AUTHENTICATION);
    assert_string_equal(err.message, "bad key");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_chat),
        cmocka_unit_test(test_encode_rejects),
        cmocka_unit_test(test_encode_embed),
        cmocka_unit_test(test_decode_golden_response),
        cmocka_unit_test(test_decode_response_variants),
        cmocka_unit_test(test_stream_golden),
        cmocka_unit_test(test_stream_thinking_and_error),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
