/* Unit tests for the OpenAI client dialect: request decoding, response, error and stream encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "translate/tx.h"

extern const tx_dialect_ops_t tx_openai_dialect;
static const tx_dialect_ops_t *D = &tx_openai_dialect;

static tg_arena_t arena;
static tx_error_t err;

static int
setup(void **state)
{
    memset(&arena, 0, sizeof(arena));
    memset(&err, 0, sizeof(err));
    return 0;
}

static int
teardown(void **state)
{
    tg_arena_free(&arena);
    return 0;
}

static int
decode(tx_op_t op, const char *body, tx_request_t *r)
{
    return D->decode_request(op, body, strlen(body), &arena, r, &err);
}

/* Parses the encoder's output (must be JSON); the tree is the arena's. */
static json_t *
parse(const tg_buf_t *b)
{
    json_t *v = json_loadb(b->base, b->len, 0, NULL);
    if (v == NULL)
        fail_msg("not JSON: %.*s", (int)b->len, b->base);
    tx_arena_keep(&arena, v);
    return v;
}

static void
test_decode_chat(void **state)
{
    const char *body =
        "{\"model\":\"gpt-x\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"no "
        "\"},{\"type\":\"text\",\"text\":\"jokes\"}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"look\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x.test/a.png\",\"detail\":\"low\"}},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/jpeg;base64,AAAA\"}}]},"
        "{\"role\":\"assistant\",\"content\":\"calling\",\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
        "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"location\\\":\\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":[{\"type\":\"text\",\"text\":\"18C\"}]},"
        "{\"role\":\"user\",\"content\":\"thanks\",\"name\":\"bob\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"weather\","
        "\"parameters\":{\"type\":\"object\"}}}],"
        "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}},\"parallel_tool_calls\":false,"
        "\"max_tokens\":10,\"max_completion_tokens\":20,\"temperature\":0.5,\"top_p\":0.9,\"stop\":\"END\",\"seed\":7,"
        "\"presence_penalty\":0.1,\"frequency_penalty\":-0.2,\"user\":\"u1\",\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},"
        "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"w\",\"schema\":{\"type\":\"object\"}"
        "}},"
        "\"logprobs\":true,\"top_logprobs\":2,\"metadata\":{\"a\":\"b\"},\"n\":1,\"reasoning_effort\":\"low\"}";
    tx_request_t r;
    assert_int_equal(decode(TX_OP_CHAT, body, &r), 0);
    assert_int_equal(r.op, TX_OP_CHAT);
    assert_int_equal(r.dialect, TX_DIALECT_OPENAI);
    assert_string_equal(r.model, "gpt-x");
    assert_string_equal(r.system, "be brief\n\nno jokes");
    assert_int_equal(r.n_messages, 4);

    const tx_message_t *u = &r.messages[0];
    assert_int_equal(u->role, TX_ROLE_USER);
    assert_int_equal(u->n_parts, 3);
    assert_string_equal(u->parts[0].text, "look");
    assert_int_equal(u->parts[1].kind, TX_PART_IMAGE);
    assert_string_equal(u->parts[1].url, "https://x.test/a.png");
    assert_int_equal(u->parts[2].kind, TX_PART_IMAGE);
    assert_string_equal(u->parts[2].media_type, "image/jpeg");
    assert_string_equal(u->parts[2].data, "AAAA");

    const tx_message_t *as = &r.messages[1];
    assert_int_equal(as->role, TX_ROLE_ASSISTANT);
    assert_int_equal(as->n_parts, 2);
    assert_string_equal(as->parts[0].text, "calling");
    assert_int_equal(as->parts[1].kind, TX_PART_TOOL_CALL);
    assert_string_equal(as->parts[1].id, "call_1");
    assert_string_equal(as->parts[1].name, "get_weather");
    assert_string_equal(json_string_value(json_object_get(as->parts[1].args, "location")), "Paris");

    const tx_message_t *tm = &r.messages[2];
    assert_int_equal(tm->role, TX_ROLE_TOOL);
    assert_int_equal(tm->parts[0].kind, TX_PART_TOOL_RESULT);
    assert_string_equal(tm->parts[0].id, "call_1");
    assert_string_equal(tm->parts[0].name, "get_weather"); /* found from the call */
    assert_string_equal(tm->parts[0].text, "18C");
    assert_string_equal(r.messages[3].parts[0].text, "thanks");

    assert_int_equal(r.n_tools, 1);
    assert_string_equal(r.tools[0].name, "get_weather");
    assert_string_equal(r.tools[0].description, "weather");
    assert_non_null(r.tools[0].parameters);
    assert_int_equal(r.tool_choice, TX_TOOL_CHOICE_NAMED);
    assert_string_equal(r.tool_choice_name, "get_weather");
    assert_int_equal(r.parallel_tool_calls, 0);
    assert_int_equal(r.max_tokens, 20); /* max_completion_tokens wins */
    assert_true(r.has_temperature && r.temperature == 0.5);
    assert_true(r.has_top_p && r.top_p == 0.9);
    assert_int_equal(r.n_stop, 1);
    assert_string_equal(r.stop[0], "END");
    assert_true(r.has_seed && r.seed == 7);
    assert_true(r.has_presence_penalty && r.has_frequency_penalty && r.frequency_penalty == -0.2);
    assert_string_equal(r.user, "u1");
    assert_true(r.stream && r.include_usage);
    assert_int_equal(r.format, TX_FORMAT_JSON_SCHEMA);
    assert_string_equal(r.format_name, "w");
    assert_non_null(r.format_schema);
    assert_int_equal(r.top_k, -1);

    /* extras: what the neutral request does not model, and nothing it does */
    assert_non_null(r.extra);
    assert_true(json_is_true(json_object_get(r.extra, "logprobs")));
    assert_int_equal(json_integer_value(json_object_get(r.extra, "top_logprobs")), 2);
    assert_non_null(json_object_get(r.extra, "metadata"));
    assert_non_null(json_object_get(r.extra, "n"));
    assert_non_null(json_object_get(r.extra, "reasoning_effort"));
    assert_null(json_object_get(r.extra, "messages"));
    assert_null(json_object_get(r.extra, "stream_options"));
    assert_null(json_object_get(r.extra, "seed"));
    assert_int_equal(json_object_size(r.extra), 5);
}

static void
test_decode_chat_minimal(void **state)
{
    tx_request_t r;
    assert_int_equal(decode(TX_OP_CHAT,
                            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                            "\"stop\":[\"a\",\"b\"],\"tool_choice\":\"required\","
                            "\"response_format\":{\"type\":\"json_object\"},\"stream\":false,"
                            "\"stream_options\":{\"include_usage\":true}}",
                            &r),
                     0);
    assert_null(r.system);
    assert_int_equal(r.n_messages, 1);
    assert_int_equal(r.max_tokens, -1);
    assert_int_equal(r.parallel_tool_calls, -1);
    assert_int_equal(r.tool_choice, TX_TOOL_CHOICE_REQUIRED);
    assert_int_equal(r.format, TX_FORMAT_JSON_OBJECT);
    assert_int_equal(r.n_stop, 2);
    assert_false(r.stream);
    assert_false(r.include_usage); /* only meaningful with stream */
    assert_null(r.extra);
    assert_false(r.has_temperature);
    assert_false(r.has_seed);
}

static void
test_decode_legacy_functions(void **state)
{
    tx_request_t r;
    assert_int_equal(
        decode(TX_OP_CHAT,
               "{\"model\":\"m\",\"functions\":[{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}],"
               "\"function_call\":{\"name\":\"f\"},\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
               "{\"role\":\"assistant\",\"content\":null,\"function_call\":{\"name\":\"f\",\"arguments\":\"{}\"}},"
               "{\"role\":\"function\",\"name\":\"f\",\"content\":\"ok\"}]}",
               &r),
        0);
    assert_int_equal(r.n_tools, 1);
    assert_int_equal(r.tool_choice, TX_TOOL_CHOICE_NAMED);
    assert_string_equal(r.messages[1].parts[0].id, "call_fn_1");
    assert_int_equal(r.messages[2].role, TX_ROLE_TOOL);
    assert_string_equal(r.messages[2].parts[0].id, "call_fn_1");
}

/* Each bad body is a 400 that names the offending field. */
static void
test_decode_chat_errors(void **state)
{
    static const struct {
        const char *body, *param, *msg_part;
    } cases[] = {
        {"{\"model\":", "", "parse the JSON"},
        {"[1,2]", "", "JSON object"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model", "model"},
        {"{\"model\":\"m\",\"messages\":[]}", "messages", "non-empty"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", "messages[0]", "wizard"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"function\":{\"name\":"
         "\"f\",\"arguments\":\"{not json\"}}]}]}",
         "messages[0].tool_calls[0].function.arguments", "JSON object"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{"
         "\"url\":\"ftp://x\"}}]}]}",
         "messages[0].content[0]", "http(s)"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{"
         "\"url\":\"data:image/png,abc\"}}]}]}",
         "messages[0].content[0]", "base64"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{"
         "\"data\":\"AA\",\"format\":\"wav\"}}]}]}",
         "messages[0].content[0]", "input_audio"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "messages[0]", "tool_call_id"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",\"b\",\"c\",\"d\","
         "\"e\"]}",
         "stop", "at most 4"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"web_search\"}]}",
         "tools[0]", "function"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", "n", "n > 1"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}",
         "temperature", "number"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":-1}", "max_tokens",
         "non-negative"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"sometimes\"}",
         "tool_choice", "tool_choice"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"yaml\"}"
         "}",
         "response_format.type", "yaml"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tx_request_t r;
        memset(&err, 0, sizeof(err));
        if (decode(TX_OP_CHAT, cases[i].body, &r) != -1)
            fail_msg("case %zu decoded", i);
        assert_int_equal(tx_error_status(&err), 400);
        assert_string_equal(err.param, cases[i].param);
        if (strstr(err.message, cases[i].msg_part) == NULL)
            fail_msg("case %zu: message '%s' lacks '%s'", i, err.message, cases[i].msg_part);
    }
}

static void
test_decode_completion(void **state)
{
    tx_request_t r;
    assert_int_equal(decode(TX_OP_COMPLETION,
                            "{\"model\":\"m\",\"prompt\":\"Say hi\",\"echo\":true,\"best_of\":2,\"logprobs\":3,"
                            "\"suffix\":\"!\",\"temperature\":0}",
                            &r),
                     0);
    assert_int_equal(r.op, TX_OP_COMPLETION);
    assert_int_equal(r.n_messages, 1);
    assert_int_equal(r.messages[0].role, TX_ROLE_USER);
    assert_string_equal(r.messages[0].parts[0].text, "Say hi");
    assert_int_equal(r.max_tokens, 16); /* OpenAI's default */
    assert_true(r.has_temperature);
    assert_true(json_is_true(json_object_get(r.extra, "echo")));
    assert_int_equal(json_integer_value(json_object_get(r.extra, "logprobs")), 3);
    assert_non_null(json_object_get(r.extra, "best_of"));
    assert_non_null(json_object_get(r.extra, "suffix"));

    assert_int_equal(decode(TX_OP_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"one\"],\"max_tokens\":5}", &r), 0);
    assert_string_equal(r.messages[0].parts[0].text, "one");
    assert_int_equal(r.max_tokens, 5);

    assert_int_equal(decode(TX_OP_COMPLETION, "{\"model\":\"m\",\"prompt\":[1,2,3]}", &r), -1);
    assert_string_equal(err.message, "token prompts are not supported for this provider");
    assert_int_equal(decode(TX_OP_COMPLETION, "{\"model\":\"m\",\"prompt\":[[1,2]]}", &r), -1);
    assert_string_equal(err.message, "token prompts are not supported for this provider");
    assert_int_equal(decode(TX_OP_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", &r), -1);
    assert_int_equal(decode(TX_OP_COMPLETION, "{\"model\":\"m\"}", &r), -1);
    assert_string_equal(err.param, "prompt");
}

static void
test_decode_embed(void **state)
{
    tx_request_t r;
    assert_int_equal(decode(TX_OP_EMBED, "{\"model\":\"e\",\"input\":\"hello\"}", &r), 0);
    assert_int_equal(r.n_inputs, 1);
    assert_string_equal(r.inputs[0], "hello");
    assert_false(r.base64_embedding);
    assert_int_equal(r.dimensions, -1);
    assert_int_equal(decode(TX_OP_EMBED,
                            "{\"model\":\"e\",\"input\":[\"a\",\"b\"],\"encoding_format\":\"base64\",\"dimensions\":"
                            "256,\"user\":\"u\"}",
                            &r),
                     0);
    assert_int_equal(r.n_inputs, 2);
    assert_string_equal(r.inputs[1], "b");
    assert_true(r.base64_embedding);
    assert_int_equal(r.dimensions, 256);
    assert_string_equal(r.user, "u");
    assert_int_equal(decode(TX_OP_EMBED, "{\"model\":\"e\",\"input\":[1,2]}", &r), -1);
    assert_string_equal(err.message, "token inputs are not supported for this provider");
    assert_int_equal(decode(TX_OP_EMBED, "{\"model\":\"e\",\"input\":[]}", &r), -1);
    assert_int_equal(decode(TX_OP_EMBED, "{\"model\":\"e\",\"input\":\"x\",\"encoding_format\":\"int8\"}", &r), -1);
    assert_string_equal(err.param, "encoding_format");
}

/* ---------------------------------------------------------------- responses */

static tx_request_t
chat_request(tx_op_t op)
{
    tx_request_t r = {.op = op, .model = "client-model", .request_id = "req_1", .now_unix = 1700000000};
    return r;
}

static void
test_encode_chat_response(void **state)
{
    tx_request_t r = chat_request(TX_OP_CHAT);
    tx_part_t parts[4] = {
        {.kind = TX_PART_THINKING, .text = "hmm", .signature = "sig"},
        {.kind = TX_PART_TEXT, .text = "Let me check. "},
        {.kind = TX_PART_TOOL_CALL,
         .id = "toolu_1",
         .name = "get_weather",
         .args = json_pack("{s:s}", "location", "Paris")},
        {.kind = TX_PART_TOOL_CALL, .name = "get_time", .args = NULL},
    };
    tx_arena_keep(&arena, parts[2].args);
    tx_response_t resp = {.id = "msg_01", .model = "claude-x", .parts = parts, .n_parts = 4, .stop = TX_STOP_TOOL_USE};
    resp.usage = tx_usage_make(1117, 46, 1024, 10);
    resp.usage.reasoning = 5;
    tg_buf_t out = {0};
    assert_int_equal(D->encode_response(&r, &resp, &arena, &out), 0);
    json_t *v = parse(&out);
    tg_buf_free(&out);
    assert_string_equal(tx_json_str(v, "id"), "chatcmpl-msg_01");
    assert_string_equal(tx_json_str(v, "object"), "chat.completion");
    assert_int_equal(json_integer_value(json_object_get(v, "created")), 1700000000);
    assert_string_equal(tx_json_str(v, "model"), "claude-x");
    json_t *c = json_array_get(json_object_get(v, "choices"), 0);
    assert_int_equal(json_integer_value(json_object_get(c, "index")), 0);
    assert_string_equal(tx_json_str(c, "finish_reason"), "tool_calls");
    json_t *m = json_object_get(c, "message");
    assert_string_equal(tx_json_str(m, "role"), "assistant");
    assert_string_equal(tx_json_str(m, "content"), "Let me check. ");
    assert_string_equal(tx_json_str(m, "reasoning_content"), "hmm");
    json_t *calls = json_object_get(m, "tool_calls");
    assert_int_equal(json_array_size(calls), 2);
    json_t *c0 = json_array_get(calls, 0), *c1 = json_array_get(calls, 1);
    assert_string_equal(tx_json_str(c0, "id"), "toolu_1");
    assert_string_equal(tx_json_str(c0, "type"), "function");
    assert_string_equal(tx_json_str(json_object_get(c0, "function"), "name"), "get_weather");
    assert_string_equal(tx_json_str(json_object_get(c0, "function"), "arguments"), "{\"location\":\"Paris\"}");
    assert_string_equal(tx_json_str(c1, "id"), "call_req_1_1"); /* made up */
    assert_string_equal(tx_json_str(json_object_get(c1, "function"), "arguments"), "{}");
    json_t *u = json_object_get(v, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 1117);
    assert_int_equal(json_integer_value(json_object_get(u, "completion_tokens")), 46);
    assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 1163);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens")),
                     1024);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(u, "completion_tokens_details"), "reasoning_tokens")), 5);

    /* no text, no id, no model: content null, ids from the request */
    tx_response_t bare = {.stop = TX_STOP_MAX_TOKENS};
    assert_int_equal(D->encode_response(&r, &bare, &arena, &out), 0);
    v = parse(&out);
    tg_buf_free(&out);
    assert_string_equal(tx_json_str(v, "id"), "chatcmpl-req_1");
    assert_string_equal(tx_json_str(v, "model"), "client-model");
    c = json_array_get(json_object_get(v, "choices"), 0);
    assert_true(json_is_null(json_object_get(json_object_get(c, "message"), "content")));
    assert_string_equal(tx_json_str(c, "finish_reason"), "length");
}

static void
test_encode_finish_reasons(void **state)
{
    static const struct {
        tx_stop_t stop;
        const char *want;
    } cases[] = {
        {TX_STOP_END, "stop"},
        {TX_STOP_SEQUENCE, "stop"},
        {TX_STOP_MAX_TOKENS, "length"},
        {TX_STOP_TOOL_USE, "tool_calls"},
        {TX_STOP_CONTENT_FILTER, "content_filter"},
        {TX_STOP_PAUSE, "stop"},
        {TX_STOP_ERROR, "stop"},
        {TX_STOP_UNSET, "stop"},
    };
    tx_request_t r = chat_request(TX_OP_CHAT);
    tx_part_t text = {.kind = TX_PART_TEXT, .text = "x"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tx_response_t resp = {.parts = &text, .n_parts = 1, .stop = cases[i].stop};
        tg_buf_t out = {0};
        assert_int_equal(D->encode_response(&r, &resp, &arena, &out), 0);
        json_t *v = parse(&out);
        tg_buf_free(&out);
        assert_string_equal(tx_json_str(json_array_get(json_object_get(v, "choices"), 0), "finish_reason"),
                            cases[i].want);
    }
}

static void
test_encode_completion_response(void **state)
{
    tx_request_t r = chat_request(TX_OP_COMPLETION);
    tx_part_t text = {.kind = TX_PART_TEXT, .text = "Hello there"};
    tx_response_t resp = {.parts = &text, .n_parts = 1, .stop = TX_STOP_MAX_TOKENS, .usage = tx_usage_make(5, 2, 0, 0)};
    tg_buf_t out = {0};
    assert_int_equal(D->encode_response(&r, &resp, &arena, &out), 0);
    json_t *v = parse(&out);
    tg_buf_free(&out);
    assert_string_equal(tx_json_str(v, "object"), "text_completion");
    assert_string_equal(tx_json_str(v, "id"), "cmpl-req_1");
    json_t *c = json_array_get(json_object_get(v, "choices"), 0);
    assert_string_equal(tx_json_str(c, "text"), "Hello there");
    assert_string_equal(tx_json_str(c, "finish_reason"), "length");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "usage"), "total_tokens")), 7);
}

static void
test_encode_embeddings(void **state)
{
    tx_request_t r = chat_request(TX_OP_EMBED);
    float v0[3] = {0.5f, -1.25f, 3.0e-5f}, v1[1] = {1.0f};
    tx_embedding_t embs[2] = {{v0, 3}, {v1, 1}};
    tx_response_t resp = {.embeddings = embs, .n_embeddings = 2, .usage = tx_usage_make(8, 0, 0, 0)};
    tg_buf_t out = {0};
    assert_int_equal(D->encode_response(&r, &resp, &arena, &out), 0);
    json_t *v = parse(&out);
    tg_buf_free(&out);
    assert_string_equal(tx_json_str(v, "object"), "list");
    assert_string_equal(tx_json_str(v, "model"), "client-model");
    json_t *d = json_object_get(v, "data");
    assert_int_equal(json_array_size(d), 2);
    json_t *e0 = json_array_get(d, 0);
    assert_string_equal(tx_json_str(e0, "object"), "embedding");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(d, 1), "index")), 1);
    json_t *vals = json_object_get(e0, "embedding");
    assert_int_equal(json_array_size(vals), 3);
    assert_true((float)json_number_value(json_array_get(vals, 1)) == -1.25f);
    assert_true((float)json_number_value(json_array_get(vals, 2)) == 3.0e-5f); /* round-trips exactly */
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "usage"), "prompt_tokens")), 8);

    r.base64_embedding = 1;
    assert_int_equal(D->encode_response(&r, &resp, &arena, &out), 0);
    v = parse(&out);
    tg_buf_free(&out);
    /* 1.0f little-endian is 00 00 80 3f */
    assert_string_equal(tx_json_str(json_array_get(json_object_get(v, "data"), 1), "embedding"), "AACAPw==");
}

static void
test_encode_error(void **state)
{
    static const struct {
        tx_error_kind_t kind;
        int status;
        const char *code, *param;
        int want_status;
        const char *want_type, *want_code;
    } cases[] = {
        {TX_ERR_INVALID_REQUEST, 0, "context_length_exceeded", "messages", 400, "invalid_request_error",
         "context_length_exceeded"},
        {TX_ERR_AUTHENTICATION, 0, "", "", 401, "authentication_error", NULL},
        {TX_ERR_PERMISSION, 0, "", "", 403, "permission_error", NULL},
        {TX_ERR_NOT_FOUND, 0, "model_not_found", "model", 404, "invalid_request_error", "model_not_found"},
        {TX_ERR_RATE_LIMIT, 0, "", "", 429, "requests", "rate_limit_exceeded"},
        {TX_ERR_RATE_LIMIT, 0, "insufficient_quota", "", 429, "insufficient_quota", "insufficient_quota"},
        {TX_ERR_SERVER, 0, "", "", 500, "server_error", NULL},
        {TX_ERR_UPSTREAM, 0, "", "", 502, "upstream_error", NULL},
        {TX_ERR_OVERLOADED, 529, "", "", 503, "server_error", NULL},
        {TX_ERR_TIMEOUT, 0, "", "", 504, "server_error", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tx_error_t e;
        tx_fail(&e, cases[i].kind, cases[i].code, cases[i].param, "failure \"%zu\"", i);
        e.status = cases[i].status;
        tg_buf_t out = {0};
        assert_int_equal(D->encode_error(&e, "req_1", &out), cases[i].want_status);
        json_t *v = parse(&out);
        tg_buf_free(&out);
        json_t *eo = json_object_get(v, "error");
        char msg[32];
        snprintf(msg, sizeof(msg), "failure \"%zu\"", i);
        assert_string_equal(tx_json_str(eo, "message"), msg);
        assert_string_equal(tx_json_str(eo, "type"), cases[i].want_type);
        if (cases[i].want_code == NULL)
            assert_true(json_is_null(json_object_get(eo, "code")));
        else
            assert_string_equal(tx_json_str(eo, "code"), cases[i].want_code);
        if (cases[i].param[0] == '\0')
            assert_true(json_is_null(json_object_get(eo, "param")));
        else
            assert_string_equal(tx_json_str(eo, "param"), cases[i].param);
    }
}

/* ---------------------------------------------------------------- streams */

static tx_stream_state_t *
new_state(void)
{
    return tg_arena_alloc(&arena, D->stream_state_size);
}

static void
feed(tx_stream_state_t *st, const tx_request_t *r, const tx_event_t *evs, size_t n, tg_buf_t *out)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(D->stream_event(st, r, &evs[i], out), 0);
    tg_buf_append(out, "", 1);
}

static void
test_stream_chat(void **state)
{
    tx_request_t r = chat_request(TX_OP_CHAT);
    r.stream = 1;
    r.include_usage = 1;
    tx_usage_t u = tx_usage_make(30, 12, 8, 0);
    const tx_event_t evs[] = {
        {.kind = TX_EV_START, .id = "msg_9", .model = "claude-x"},
        {.kind = TX_EV_THINKING, .index = 0, .text = "think", .text_len = 5},
        {.kind = TX_EV_THINKING, .index = 0, .signature = "sig"},
        {.kind = TX_EV_BLOCK_END, .index = 0},
        {.kind = TX_EV_TEXT, .index = 1, .text = "Hi \"there\"", .text_len = 10},
        {.kind = TX_EV_BLOCK_END, .index = 1},
        {.kind = TX_EV_TOOL_START, .index = 2, .id = "toolu_a", .name = "get_weather"},
        {.kind = TX_EV_TOOL_ARGS, .index = 2, .text = "{\"location\":", .text_len = 12},
        {.kind = TX_EV_TOOL_ARGS, .index = 2, .text = "\"Paris\"}", .text_len = 8},
        {.kind = TX_EV_BLOCK_END, .index = 2},
        {.kind = TX_EV_TOOL_START, .index = 3, .name = "get_time"},
        {.kind = TX_EV_TOOL_ARGS, .index = 3, .text = "{}", .text_len = 2},
        {.kind = TX_EV_BLOCK_END, .index = 3},
        {.kind = TX_EV_USAGE, .usage = u},
        {.kind = TX_EV_STOP, .stop = TX_STOP_TOOL_USE},
        {.kind = TX_EV_END},
    };
    tg_buf_t out = {0};
    feed(new_state(), &r, evs, sizeof(evs) / sizeof(evs[0]), &out);
    const char *want =
        "data: {\"id\":\"chatcmpl-msg_9\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"
        "\"claude-x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
        "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
        "data: {\"id\":\"chatcmpl-msg_9\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"
        "\"claude-x\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"think\"},\"logprobs\":null,"
        "\"finish_reason\":null}],\"usage\":null}\n\n"
        "data: {\"id\":\"chatcmpl-msg_9\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"
        "\"claude-x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi \\\"there\\\"\"},\"logprobs\":null,"
        "\"finish_reason\":null}],\"usage\":null}\n\n"
        "data: {\"id\":\"chatcmpl-msg_9\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"
        "\"claude-x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"toolu_a\",\"type\":"
        "\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"logprobs\":null,"
        "\"finish_reason\":null}],\"usage\":null}\n\n"
        "data: {\"id\":\"chatcmpl-msg_9\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"
        "\"claude-x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
        "\"{\\\"location\\\":\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
        "data: {\"id\":\"chatcmpl-msg_9\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"
        "\"claude-x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
        "\"\\\"Paris\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
        "data: {\"id\":\"chatcmpl-msg_9\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"
        "\"claude-x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_req_1_1\","
        "\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"\"}}]},\"logprobs\":null,"
        "\"finish_reason\":null}],\"usage\":null}\n\n"
        "data: {\"id\":\"chatcmpl-msg_9\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"
        "\"claude-x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":"
        "\"{}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
        "data: {\"id\":\"chatcmpl-msg_9\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"
        "\"claude-x\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],"
        "\"usage\":null}\n\n"
        "data: {\"id\":\"chatcmpl-msg_9\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"
        "\"claude-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":12,\"total_tokens\":42,"
        "\"prompt_tokens_details\":{\"cached_tokens\":8,\"audio_tokens\":0},\"completion_tokens_details\":{"
        "\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}"
        "\n\n"
        "data: [DONE]\n\n";
    assert_string_equal(out.base, want);
    tg_buf_free(&out);
}

static void
test_stream_no_usage_no_stop(void **state)
{
    /* without include_usage: no usage member, no usage chunk; END without STOP still closes with "stop" */
    tx_request_t r = chat_request(TX_OP_CHAT);
    r.stream = 1;
    const tx_event_t evs[] = {
        {.kind = TX_EV_TEXT, .index = 0, .text = "x", .text_len = 1}, /* no START: the role chunk comes anyway */
        {.kind = TX_EV_USAGE, .usage = tx_usage_make(1, 1, 0, 0)},
        {.kind = TX_EV_END},
    };
    tg_buf_t out = {0};
    feed(new_state(), &r, evs, 3, &out);
    assert_null(strstr(out.base, "usage"));
    assert_non_null(strstr(out.base, "\"role\":\"assistant\""));
    assert_non_null(strstr(out.base, "\"id\":\"chatcmpl-req_1\""));
    assert_non_null(strstr(out.base, "\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"));
    tg_buf_free(&out);
}

static void
test_stream_error(void **state)
{
    tx_request_t r = chat_request(TX_OP_CHAT);
    r.stream = 1;
    tx_error_t e;
    tx_fail(&e, TX_ERR_OVERLOADED, "", "", "Overloaded");
    e.status = 529;
    const tx_event_t evs[] = {
        {.kind = TX_EV_START},
        {.kind = TX_EV_TEXT, .index = 0, .text = "par", .text_len = 3},
        {.kind = TX_EV_ERROR, .error = &e},
        {.kind = TX_EV_END}, /* nothing follows an error */
    };
    tg_buf_t out = {0};
    feed(new_state(), &r, evs, 4, &out);
    const char *tail = "data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"server_error\",\"param\":null,"
                       "\"code\":null}}\n\n";
    assert_true(strlen(out.base) > strlen(tail));
    assert_string_equal(out.base + strlen(out.base) - strlen(tail), tail);
    assert_null(strstr(out.base, "[DONE]"));
    assert_null(strstr(out.base, "finish_reason\":\""));
    tg_buf_free(&out);
}

static void
test_stream_completion(void **state)
{
    tx_request_t r = chat_request(TX_OP_COMPLETION);
    r.stream = 1;
    r.include_usage = 1;
    const tx_event_t evs[] = {
        {.kind = TX_EV_START, .id = "x1"},
        {.kind = TX_EV_TEXT, .index = 0, .text = "Hello", .text_len = 5},
        {.kind = TX_EV_USAGE, .usage = tx_usage_make(3, 1, 0, 0)},
        {.kind = TX_EV_STOP, .stop = TX_STOP_MAX_TOKENS},
        {.kind = TX_EV_END},
    };
    tg_buf_t out = {0};
    feed(new_state(), &r, evs, 5, &out);
    const char *want =
        "data: {\"id\":\"cmpl-x1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"client-model\","
        "\"choices\":[{\"text\":\"Hello\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
        "data: {\"id\":\"cmpl-x1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"client-model\","
        "\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"length\"}],\"usage\":null}\n\n"
        "data: {\"id\":\"cmpl-x1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"client-model\","
        "\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n"
        "data: [DONE]\n\n";
    assert_string_equal(out.base, want);
    tg_buf_free(&out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_decode_chat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_chat_minimal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_legacy_functions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_chat_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_completion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_embed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_chat_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_finish_reasons, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_completion_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_embeddings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_chat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_no_usage_no_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_completion, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
