/* Unit tests for the OpenAI-family provider adapters: request encoding per flavour (OpenAI, Azure,
 * Mistral, Groq), response and error decoding, and stream decoding of recorded streams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "tollgate/sse.h"
#include "translate/tx.h"

extern const tx_provider_ops_t tx_openai_provider, tx_azure_provider, tx_mistral_provider, tx_groq_provider;
extern const tx_dialect_ops_t tx_openai_dialect;

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

static json_t *
keep(json_t *v)
{
    tx_arena_keep(&arena, v);
    return v;
}

/* Encodes r for a provider; returns the body as JSON (arena) and the URL. */
static json_t *
encode(const tx_provider_ops_t *p, const tx_request_t *r, const char *kind, const char *settings, const char **ret_url)
{
    json_t *s = settings != NULL ? keep(json_loads(settings, 0, NULL)) : NULL;
    tx_target_t t = {.kind = kind, .base_url = "http://127.0.0.1:9/v1", .upstream_model = "up-model", .settings = s};
    tx_http_request_t h;
    if (p->encode_request(r, &t, &arena, &h, &err) != 0)
        return NULL;
    if (ret_url != NULL)
        *ret_url = h.url;
    json_t *v = json_loadb(h.body, h.body_len, 0, NULL);
    assert_non_null(v);
    return keep(v);
}

/* An Anthropic-shaped neutral conversation: system, an image, thinking, a tool call, a user turn with a
 * tool result followed by text. */
static tx_request_t
anthropic_like(void)
{
    static tx_part_t u0[2], a0[3], u1[2];
    static tx_message_t msgs[3];
    static tx_tool_t tools[1];
    static const char *stop[] = {"END"};
    memset(u0, 0, sizeof(u0));
    memset(a0, 0, sizeof(a0));
    memset(u1, 0, sizeof(u1));
    u0[0] = (tx_part_t){.kind = TX_PART_TEXT, .text = "weather?"};
    u0[1] = (tx_part_t){.kind = TX_PART_IMAGE, .media_type = "image/png", .data = "iVBO"};
    a0[0] = (tx_part_t){.kind = TX_PART_THINKING, .text = "think", .signature = "sig"};
    a0[1] = (tx_part_t){.kind = TX_PART_TEXT, .text = "Checking."};
    a0[2] = (tx_part_t){.kind = TX_PART_TOOL_CALL,
                        .id = "toolu_01A09q90qw90lq917835lq9",
                        .name = "get_weather",
                        .args = keep(json_pack("{s:s}", "location", "Paris"))};
    u1[0] = (tx_part_t){.kind = TX_PART_TOOL_RESULT, .id = "toolu_01A09q90qw90lq917835lq9", .text = "18C"};
    u1[1] = (tx_part_t){.kind = TX_PART_TEXT, .text = "and Tokyo?"};
    msgs[0] = (tx_message_t){TX_ROLE_USER, u0, 2};
    msgs[1] = (tx_message_t){TX_ROLE_ASSISTANT, a0, 3};
    msgs[2] = (tx_message_t){TX_ROLE_USER, u1, 2};
    tools[0] = (tx_tool_t){.name = "get_weather", .description = "Weather", .parameters = NULL};
    tx_request_t r = {.op = TX_OP_CHAT,
                      .model = "client",
                      .system = "be brief",
                      .messages = msgs,
                      .n_messages = 3,
                      .tools = tools,
                      .n_tools = 1,
                      .tool_choice = TX_TOOL_CHOICE_REQUIRED,
                      .parallel_tool_calls = 0,
                      .max_tokens = 100,
                      .top_k = 40,
                      .stop = stop,
                      .n_stop = 1,
                      .seed = 7,
                      .has_seed = 1,
                      .temperature = 0.5,
                      .has_temperature = 1,
                      .dimensions = -1,
                      .dialect = TX_DIALECT_ANTHROPIC};
    return r;
}

static void
test_encode_openai(void **state)
{
    tx_request_t r = anthropic_like();
    r.stream = 1;
    const char *url;
    json_t *b = encode(&tx_openai_provider, &r, "openai", NULL, &url);
    assert_non_null(b);
    assert_string_equal(url, "http://127.0.0.1:9/v1/chat/completions");
    assert_string_equal(tx_json_str(b, "model"), "up-model");
    json_t *m = json_object_get(b, "messages");
    assert_int_equal(json_array_size(m), 5);
    json_t *sys = json_array_get(m, 0), *u0 = json_array_get(m, 1), *a0 = json_array_get(m, 2);
    json_t *tool = json_array_get(m, 3), *u1 = json_array_get(m, 4);
    assert_string_equal(tx_json_str(sys, "role"), "system");
    assert_string_equal(tx_json_str(sys, "content"), "be brief");
    json_t *img = json_array_get(json_object_get(u0, "content"), 1);
    assert_string_equal(tx_json_str(img, "type"), "image_url");
    assert_string_equal(tx_json_str(json_object_get(img, "image_url"), "url"), "data:image/png;base64,iVBO");
    assert_string_equal(tx_json_str(a0, "content"), "Checking."); /* thinking is not sent back */
    json_t *call = json_array_get(json_object_get(a0, "tool_calls"), 0);
    assert_string_equal(tx_json_str(call, "id"), "toolu_01A09q90qw90lq917835lq9");
    assert_string_equal(tx_json_str(json_object_get(call, "function"), "arguments"), "{\"location\":\"Paris\"}");
    /* the tool result comes before the user's text of the same turn */
    assert_string_equal(tx_json_str(tool, "role"), "tool");
    assert_string_equal(tx_json_str(tool, "tool_call_id"), "toolu_01A09q90qw90lq917835lq9");
    assert_string_equal(tx_json_str(tool, "content"), "18C");
    assert_string_equal(tx_json_str(u1, "content"), "and Tokyo?");
    json_t *fn = json_object_get(json_array_get(json_object_get(b, "tools"), 0), "function");
    assert_string_equal(tx_json_str(fn, "name"), "get_weather");
    assert_string_equal(tx_json_str(json_object_get(fn, "parameters"), "type"), "object");
    assert_string_equal(tx_json_str(b, "tool_choice"), "required");
    assert_true(json_is_false(json_object_get(b, "parallel_tool_calls")));
    assert_int_equal(json_integer_value(json_object_get(b, "max_completion_tokens")), 100);
    assert_null(json_object_get(b, "max_tokens"));
    assert_null(json_object_get(b, "top_k")); /* OpenAI rejects it */
    assert_int_equal(json_integer_value(json_object_get(b, "seed")), 7);
    assert_string_equal(json_string_value(json_array_get(json_object_get(b, "stop"), 0)), "END");
    assert_true(json_is_true(json_object_get(b, "stream")));
    assert_true(json_is_true(json_object_get(json_object_get(b, "stream_options"), "include_usage")));

    /* other kinds on the same adapter: max_tokens; top_k where it is understood */
    b = encode(&tx_openai_provider, &r, "vllm", NULL, NULL);
    assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 100);
    assert_int_equal(json_integer_value(json_object_get(b, "top_k")), 40);
}

static void
test_encode_extras(void **state)
{
    tx_request_t r;
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,"
                       "\"top_logprobs\":2,\"logit_bias\":{\"1\":2},\"n\":1,\"safe_prompt\":true,\"seed\":3,"
                       "\"metadata\":{\"k\":\"v\"},\"response_format\":{\"type\":\"json_object\"}}";
    assert_int_equal(tx_openai_dialect.decode_request(TX_OP_CHAT, body, strlen(body), &arena, &r, &err), 0);

    json_t *b = encode(&tx_openai_provider, &r, "openai", NULL, NULL);
    assert_true(json_is_true(json_object_get(b, "logprobs")));
    assert_non_null(json_object_get(b, "metadata"));
    assert_non_null(json_object_get(b, "logit_bias"));
    assert_string_equal(tx_json_str(json_object_get(b, "response_format"), "type"), "json_object");
    assert_null(json_object_get(b, "stream"));

    b = encode(&tx_groq_provider, &r, "groq", NULL, NULL);
    assert_null(json_object_get(b, "logprobs"));
    assert_null(json_object_get(b, "top_logprobs"));
    assert_null(json_object_get(b, "logit_bias"));
    assert_null(json_object_get(b, "n"));
    assert_non_null(json_object_get(b, "metadata"));
    assert_int_equal(json_integer_value(json_object_get(b, "seed")), 3);

    b = encode(&tx_mistral_provider, &r, "mistral", NULL, NULL);
    assert_null(json_object_get(b, "logprobs"));
    assert_null(json_object_get(b, "metadata"));
    assert_null(json_object_get(b, "seed"));
    assert_int_equal(json_integer_value(json_object_get(b, "random_seed")), 3);
    assert_true(json_is_true(json_object_get(b, "safe_prompt")));
    assert_int_equal(json_integer_value(json_object_get(b, "n")), 1);

    /* extras of another dialect are never forwarded */
    r.dialect = TX_DIALECT_ANTHROPIC;
    b = encode(&tx_openai_provider, &r, "openai", NULL, NULL);
    assert_null(json_object_get(b, "logprobs"));

    /* Groq refuses n > 1 outright */
    r.dialect = TX_DIALECT_OPENAI;
    json_object_set_new(r.extra, "n", json_integer(3));
    assert_null(encode(&tx_groq_provider, &r, "groq", NULL, NULL));
    assert_int_equal(tx_error_status(&err), 400);
    assert_string_equal(err.param, "n");
}

static int
is_mistral_id(const char *s)
{
    if (s == NULL || strlen(s) != 9)
        return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return 0;
    return 1;
}

static void
test_encode_mistral(void **state)
{
    tx_request_t r = anthropic_like();
    r.stream = 1;
    json_t *b = encode(&tx_mistral_provider, &r, "mistral", NULL, NULL);
    assert_non_null(b);
    json_t *m = json_object_get(b, "messages");
    const char *call_id = tx_json_str(json_array_get(json_object_get(json_array_get(m, 2), "tool_calls"), 0), "id");
    const char *result_id = tx_json_str(json_array_get(m, 3), "tool_call_id");
    assert_true(is_mistral_id(call_id));
    assert_string_equal(call_id, result_id);
    assert_string_equal(tx_json_str(b, "tool_choice"), "any");
    assert_int_equal(json_integer_value(json_object_get(b, "random_seed")), 7);
    assert_null(json_object_get(b, "seed"));
    assert_null(json_object_get(b, "stream_options"));
    assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 100);

    /* the same id always maps to the same 9 characters, and a valid id is kept */
    json_t *again = encode(&tx_mistral_provider, &r, "mistral", NULL, NULL);
    assert_string_equal(
        tx_json_str(
            json_array_get(json_object_get(json_array_get(json_object_get(again, "messages"), 2), "tool_calls"), 0),
            "id"),
        call_id);
    r.messages[1].parts[2].id = "D681PevKs";
    r.messages[2].parts[0].id = "D681PevKs";
    b = encode(&tx_mistral_provider, &r, "mistral", NULL, NULL);
    assert_string_equal(tx_json_str(json_array_get(json_object_get(b, "messages"), 3), "tool_call_id"), "D681PevKs");

    /* calls without ids (Gemini-style): made up, and results matched by name */
    r.messages[1].parts[2].id = NULL;
    r.messages[2].parts[0].id = NULL;
    r.messages[2].parts[0].name = "get_weather";
    b = encode(&tx_mistral_provider, &r, "mistral", NULL, NULL);
    m = json_object_get(b, "messages");
    call_id = tx_json_str(json_array_get(json_object_get(json_array_get(m, 2), "tool_calls"), 0), "id");
    assert_true(is_mistral_id(call_id));
    assert_string_equal(call_id, tx_json_str(json_array_get(m, 3), "tool_call_id"));
    assert_string_equal(tx_json_str(json_array_get(m, 3), "name"), "get_weather");
}

static void
test_encode_azure_and_ops(void **state)
{
    tx_request_t r = anthropic_like();
    const char *url;
    assert_non_null(encode(&tx_azure_provider, &r, "azure", "{\"api_version\":\"2024-10-21\"}", &url));
    assert_string_equal(url,
                        "http://127.0.0.1:9/v1/openai/deployments/up-model/chat/completions?api-version=2024-10-21");
    assert_non_null(encode(&tx_azure_provider, &r, "azure", NULL, &url));
    assert_string_equal(url, "http://127.0.0.1:9/v1/openai/v1/chat/completions");

    /* embeddings */
    const char *inputs[] = {"a", "b"};
    tx_request_t e = {.op = TX_OP_EMBED, .model = "e", .inputs = inputs, .n_inputs = 2, .dimensions = 64};
    json_t *b = encode(&tx_openai_provider, &e, "openai", NULL, &url);
    assert_string_equal(url, "http://127.0.0.1:9/v1/embeddings");
    assert_int_equal(json_array_size(json_object_get(b, "input")), 2);
    assert_string_equal(tx_json_str(b, "encoding_format"), "float");
    assert_int_equal(json_integer_value(json_object_get(b, "dimensions")), 64);
    b = encode(&tx_mistral_provider, &e, "mistral", NULL, NULL);
    assert_int_equal(json_integer_value(json_object_get(b, "output_dimension")), 64);
    assert_null(json_object_get(b, "encoding_format"));
    assert_null(encode(&tx_groq_provider, &e, "groq", NULL, NULL));
    assert_int_equal(tx_error_status(&err), 400);

    /* legacy completions: /completions where it exists, one chat turn on Mistral and Groq */
    tx_request_t c;
    const char *body = "{\"model\":\"m\",\"prompt\":\"Say hi\",\"echo\":true,\"stream\":true}";
    assert_int_equal(tx_openai_dialect.decode_request(TX_OP_COMPLETION, body, strlen(body), &arena, &c, &err), 0);
    b = encode(&tx_openai_provider, &c, "openai", NULL, &url);
    assert_string_equal(url, "http://127.0.0.1:9/v1/completions");
    assert_string_equal(tx_json_str(b, "prompt"), "Say hi");
    assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 16);
    assert_true(json_is_true(json_object_get(b, "echo")));
    assert_true(json_is_true(json_object_get(json_object_get(b, "stream_options"), "include_usage")));
    b = encode(&tx_groq_provider, &c, "groq", NULL, &url);
    assert_string_equal(url, "http://127.0.0.1:9/v1/chat/completions");
    assert_string_equal(tx_json_str(json_array_get(json_object_get(b, "messages"), 0), "content"), "Say hi");
    assert_null(json_object_get(b, "echo"));

    /* token counting has no OpenAI endpoint */
    tx_request_t ct = {.op = TX_OP_COUNT_TOKENS, .model = "m"};
    assert_null(encode(&tx_openai_provider, &ct, "openai", NULL, NULL));
    assert_int_equal(tx_error_status(&err), 400);
}

static void
test_encode_format(void **state)
{
    tx_request_t r = anthropic_like();
    r.format = TX_FORMAT_JSON_SCHEMA;
    r.format_name = "weather";
    r.format_schema = keep(json_pack("{s:s}", "type", "object"));
    r.n_tools = 0;
    json_t *b = encode(&tx_openai_provider, &r, "openai", NULL, NULL);
    json_t *rf = json_object_get(b, "response_format");
    assert_string_equal(tx_json_str(rf, "type"), "json_schema");
    assert_string_equal(tx_json_str(json_object_get(rf, "json_schema"), "name"), "weather");
    assert_string_equal(tx_json_str(json_object_get(json_object_get(rf, "json_schema"), "schema"), "type"), "object");
    assert_null(json_object_get(b, "tools"));
    assert_null(json_object_get(b, "tool_choice")); /* refused without tools */
    assert_null(json_object_get(b, "parallel_tool_calls"));
}

/* ---------------------------------------------------------------- responses */

static char *
slurp(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s (tests run from the source root)", path);
    tg_buf_t b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        tg_buf_append(&b, chunk, n);
    fclose(f);
    tg_buf_append(&b, "", 1);
    *ret_len = b.len - 1;
    tg_arena_defer(&arena, free, b.base);
    return b.base;
}

static int
decode_resp(const tx_provider_ops_t *p, tx_op_t op, const char *body, tx_response_t *resp)
{
    tx_request_t r = {.op = op, .model = "client"};
    return p->decode_response(&r, body, strlen(body), &arena, resp, &err);
}

static void
test_decode_golden_responses(void **state)
{
    static const char *kinds[] = {"openai", "azure", "mistral", "groq"};
    const tx_provider_ops_t *ops[] = {&tx_openai_provider, &tx_azure_provider, &tx_mistral_provider, &tx_groq_provider};
    for (size_t k = 0; k < 4; k++) {
        char path[256];
        size_t len;
        snprintf(path, sizeof(path), "tests/golden/%s/response.json", kinds[k]);
        const char *body = slurp(path, &len);
        tx_response_t resp;
        assert_int_equal(decode_resp(ops[k], TX_OP_CHAT, body, &resp), 0);
        assert_int_equal(resp.n_parts, 2);
        assert_int_equal(resp.parts[0].kind, TX_PART_TEXT);
        assert_string_equal(resp.parts[0].text, "Let me check the weather in Paris for you.");
        assert_int_equal(resp.parts[1].kind, TX_PART_TOOL_CALL);
        assert_string_equal(resp.parts[1].name, "get_weather");
        assert_string_equal(json_string_value(json_object_get(resp.parts[1].args, "location")), "Paris");
        assert_int_equal(resp.stop, TX_STOP_TOOL_USE);
        assert_string_equal(resp.raw_stop, "tool_calls");
        assert_true(resp.usage.known);
        assert_int_equal(resp.usage.input, 1117);
        assert_int_equal(resp.usage.output, 46);
        assert_int_equal(resp.usage.cache_read, k < 2 ? 1024 : 0);
        assert_non_null(resp.id);
        assert_non_null(resp.model);
        assert_int_equal(resp.created, 1741570283);
    }
}

static void
test_decode_response_variants(void **state)
{
    tx_response_t resp;
    /* reasoning, refusal-free text, "stop" with tool calls, arguments as an object, vLLM stop_reason */
    assert_int_equal(
        decode_resp(&tx_openai_provider, TX_OP_CHAT,
                    "{\"choices\":[{\"index\":0,\"message\":{\"content\":\"ok\",\"reasoning_content\":\"why\","
                    "\"tool_calls\":[{\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]},"
                    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,"
                    "\"completion_tokens_details\":{\"reasoning_tokens\":2}}}",
                    &resp),
        0);
    assert_int_equal(resp.n_parts, 3);
    assert_int_equal(resp.parts[0].kind, TX_PART_THINKING);
    assert_string_equal(resp.parts[0].text, "why");
    assert_int_equal(resp.parts[2].kind, TX_PART_TOOL_CALL);
    assert_int_equal(json_integer_value(json_object_get(resp.parts[2].args, "a")), 1);
    assert_int_equal(resp.stop, TX_STOP_TOOL_USE);
    assert_int_equal(resp.usage.reasoning, 2);
    assert_null(resp.id);

    assert_int_equal(decode_resp(&tx_openai_provider, TX_OP_CHAT,
                                 "{\"choices\":[{\"message\":{\"content\":\"a\"},\"finish_reason\":\"stop\","
                                 "\"stop_reason\":\"END\"}]}",
                                 &resp),
                     0);
    assert_int_equal(resp.stop, TX_STOP_SEQUENCE);
    assert_string_equal(resp.stop_sequence, "END");
    assert_false(resp.usage.known);

    /* Mistral content chunks with thinking; model_length */
    assert_int_equal(
        decode_resp(&tx_mistral_provider, TX_OP_CHAT,
                    "{\"choices\":[{\"message\":{\"content\":[{\"type\":\"thinking\",\"thinking\":[{\"type\":\"text\","
                    "\"text\":\"hm\"}]},{\"type\":\"text\",\"text\":\"A\"},{\"type\":\"text\",\"text\":\"B\"}]},"
                    "\"finish_reason\":\"model_length\"}]}",
                    &resp),
        0);
    assert_string_equal(resp.parts[0].text, "hm");
    assert_string_equal(resp.parts[1].text, "AB");
    assert_int_equal(resp.stop, TX_STOP_MAX_TOKENS);

    /* Groq usage only in x_groq; content filter */
    assert_int_equal(decode_resp(&tx_groq_provider, TX_OP_CHAT,
                                 "{\"choices\":[{\"message\":{\"content\":null},\"finish_reason\":\"content_filter\"}],"
                                 "\"x_groq\":{\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":0}}}",
                                 &resp),
                     0);
    assert_int_equal(resp.n_parts, 1);
    assert_string_equal(resp.parts[0].text, "");
    assert_int_equal(resp.stop, TX_STOP_CONTENT_FILTER);
    assert_int_equal(resp.usage.input, 4);

    /* legacy completion */
    assert_int_equal(decode_resp(&tx_openai_provider, TX_OP_COMPLETION,
                                 "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{\"text\":\"hi\","
                                 "\"index\":0,\"finish_reason\":\"length\"}]}",
                                 &resp),
                     0);
    assert_string_equal(resp.parts[0].text, "hi");
    assert_int_equal(resp.stop, TX_STOP_MAX_TOKENS);

    /* embeddings, out of order */
    assert_int_equal(decode_resp(&tx_openai_provider, TX_OP_EMBED,
                                 "{\"object\":\"list\",\"data\":[{\"index\":1,\"embedding\":[3]},{\"index\":0,"
                                 "\"embedding\":[1,0.5]}],\"usage\":{\"prompt_tokens\":6,\"total_tokens\":6}}",
                                 &resp),
                     0);
    assert_int_equal(resp.n_embeddings, 2);
    assert_int_equal(resp.embeddings[0].n, 2);
    assert_true(resp.embeddings[0].values[1] == 0.5f);
    assert_true(resp.embeddings[1].values[0] == 3.0f);
    assert_int_equal(resp.usage.input, 6);

    /* what cannot be read is the provider's failure: 502 */
    static const char *bad[] = {
        "not json",
        "[]",
        "{\"choices\":[]}",
        "{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"{x\"}}]"
        "}}]}",
        "{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"c\",\"function\":{\"arguments\":\"{}\"}}]}}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(decode_resp(&tx_openai_provider, TX_OP_CHAT, bad[i], &resp), -1);
        assert_int_equal(tx_error_status(&err), 502);
    }
    assert_int_equal(
        decode_resp(&tx_openai_provider, TX_OP_EMBED, "{\"data\":[{\"index\":5,\"embedding\":[1]}]}", &resp), -1);
    assert_int_equal(tx_error_status(&err), 502);

    /* an error object with 200 (OpenRouter) */
    assert_int_equal(
        decode_resp(&tx_openai_provider, TX_OP_CHAT, "{\"error\":{\"code\":429,\"message\":\"slow down\"}}", &resp),
        -1);
    assert_int_equal(tx_error_status(&err), 429);
    assert_string_equal(err.message, "slow down");
}

/* ---------------------------------------------------------------- errors */

static void
test_decode_errors(void **state)
{
    static const struct {
        const char *kind;
        int status;
        const char *file, *body;
        tx_error_kind_t want_kind;
        const char *want_code, *want_msg_part;
    } cases[] = {
        {"openai", 400, "tests/golden/openai/error-400.json", NULL, TX_ERR_INVALID_REQUEST, "context_length_exceeded",
         "maximum context length"},
        {"openai", 401, "tests/golden/openai/error-401.json", NULL, TX_ERR_AUTHENTICATION, "invalid_api_key",
         "Incorrect API key"},
        {"openai", 429, "tests/golden/openai/error-429.json", NULL, TX_ERR_RATE_LIMIT, "rate_limit_exceeded",
         "Rate limit"},
        {"azure", 400, "tests/golden/azure/error-400.json", NULL, TX_ERR_INVALID_REQUEST, "content_filter", "filtered"},
        {"azure", 404, "tests/golden/azure/error-404.json", NULL, TX_ERR_NOT_FOUND, "DeploymentNotFound", "deployment"},
        {"azure", 429, "tests/golden/azure/error-429.json", NULL, TX_ERR_RATE_LIMIT, "429", "retry after"},
        {"mistral", 400, "tests/golden/mistral/error-400.json", NULL, TX_ERR_INVALID_REQUEST, "context_length_exceeded",
         "too large for model"},
        {"mistral", 429, "tests/golden/mistral/error-429.json", NULL, TX_ERR_RATE_LIMIT, "",
         "Requests rate limit exceeded"},
        {"mistral", 422, "tests/golden/mistral/error-422.json", NULL, TX_ERR_UNPROCESSABLE, "",
         "Extra inputs are not permitted"},
        {"groq", 400, "tests/golden/groq/error-400.json", NULL, TX_ERR_INVALID_REQUEST, "", "logprobs"},
        {"openrouter", 402, NULL, "{\"error\":{\"code\":402,\"message\":\"Insufficient credits\",\"metadata\":{}}}",
         TX_ERR_BILLING, "", "Insufficient credits"},
        {"openai", 500, NULL,
         "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"param\":null,\"code\":null}}", TX_ERR_SERVER, "",
         "boom"},
        {"openai", 503, NULL, "<html><body>503 Service Unavailable</body></html>", TX_ERR_OVERLOADED, "",
         "503 Service Unavailable"},
        {"openai", 504, NULL, "", TX_ERR_TIMEOUT, "", "HTTP 504"},
        {"ollama", 404, NULL, "{\"error\":\"model 'x' not found\"}", TX_ERR_NOT_FOUND, "", "not found"},
        {"vllm", 400, NULL,
         "{\"object\":\"error\",\"message\":\"This model's maximum context length is 4096 tokens.\",\"type\":"
         "\"BadRequestError\",\"param\":null,\"code\":400}",
         TX_ERR_INVALID_REQUEST, "context_length_exceeded", "4096"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        const char *body = cases[i].file != NULL ? slurp(cases[i].file, &len) : cases[i].body;
        len = strlen(body);
        tx_error_t e;
        memset(&e, 0x55, sizeof(e)); /* decode_error must fill everything */
        tx_provider_find(cases[i].kind)->decode_error(cases[i].status, body, len, &e);
        if (e.kind != cases[i].want_kind || strcmp(e.code, cases[i].want_code) != 0 ||
            strstr(e.message, cases[i].want_msg_part) == NULL)
            fail_msg("case %zu: kind %d code '%s' message '%s'", i, e.kind, e.code, e.message);
        assert_int_equal(tx_error_status(&e), cases[i].status);
    }
}

/* ---------------------------------------------------------------- streams */

typedef struct {
    const tx_provider_ops_t *p;
    tx_stream_state_t *st;
    tx_request_t *r;
    tg_buf_t log;           /* one line per event */
    tx_stream_state_t *dst; /* when set, events also go through the OpenAI dialect into out */
    tg_buf_t out;
    int rc;
} feed_t;

static int
on_event(void *ctx, const tx_event_t *ev)
{
    feed_t *f = ctx;
    static const char *names[] = {"START",     "TEXT",  "THINKING", "TOOL_START", "TOOL_ARGS",
                                  "BLOCK_END", "USAGE", "STOP",     "ERROR",      "END"};
    tg_buf_appendf(&f->log, "%s", names[ev->kind]);
    switch (ev->kind) {
    case TX_EV_START:
        tg_buf_appendf(&f->log, " %s %s", ev->id ? ev->id : "-", ev->model ? ev->model : "-");
        break;
    case TX_EV_TEXT:
    case TX_EV_THINKING:
    case TX_EV_TOOL_ARGS:
        tg_buf_appendf(&f->log, " %d %.*s", ev->index, (int)ev->text_len, ev->text);
        break;
    case TX_EV_TOOL_START:
        tg_buf_appendf(&f->log, " %d %s %s", ev->index, ev->id ? ev->id : "-", ev->name);
        break;
    case TX_EV_BLOCK_END:
        tg_buf_appendf(&f->log, " %d", ev->index);
        break;
    case TX_EV_USAGE:
        tg_buf_appendf(&f->log, " %lld/%lld/%lld", (long long)ev->usage.input, (long long)ev->usage.output,
                       (long long)ev->usage.cache_read);
        break;
    case TX_EV_STOP:
        tg_buf_appendf(&f->log, " %d", ev->stop);
        break;
    case TX_EV_ERROR:
        tg_buf_appendf(&f->log, " %d %s", tx_error_status(ev->error), ev->error->message);
        break;
    default:
        break;
    }
    tg_buf_appends(&f->log, "\n");
    if (f->dst != NULL)
        assert_int_equal(tx_openai_dialect.stream_event(f->dst, f->r, ev, &f->out), 0);
    return 0;
}

static int
on_sse(void *ctx, const tg_sse_event_t *ev)
{
    feed_t *f = ctx;
    if (!ev->has_data)
        return 0;
    tx_frame_t fr = {.data = ev->data, .data_len = ev->data_len};
    tx_error_t e = {0};
    int rc = f->p->stream_frame(f->st, f->r, &fr, &arena, on_event, f, &e);
    if (rc != 0) {
        f->rc = rc;
        tg_buf_appendf(&f->log, "FAIL %d %s\n", tx_error_status(&e), e.message);
    }
    return 0;
}

/* Runs SSE bytes through the provider's stream decoder in 5-byte pieces; returns the event log. */
static const char *
run_stream(const tx_provider_ops_t *p, tx_request_t *r, const char *sse_bytes, size_t len, int through_dialect,
           const char **ret_out)
{
    static feed_t f;
    memset(&f, 0, sizeof(f));
    f.p = p;
    f.r = r;
    f.st = tg_arena_alloc(&arena, p->stream_state_size);
    if (through_dialect)
        f.dst = tg_arena_alloc(&arena, tx_openai_dialect.stream_state_size);
    tg_sse_parser_t sse;
    tg_sse_init(&sse, 1 << 20);
    for (size_t i = 0; i < len; i += 5)
        tg_sse_feed(&sse, sse_bytes + i, len - i < 5 ? len - i : 5, on_sse, &f);
    tg_sse_dispose(&sse);
    tg_buf_append(&f.log, "", 1);
    tg_buf_append(&f.out, "", 1);
    tg_arena_defer(&arena, free, f.log.base);
    tg_arena_defer(&arena, free, f.out.base);
    if (ret_out != NULL)
        *ret_out = f.out.base;
    return f.log.base;
}

static void
test_stream_golden_openai(void **state)
{
    size_t len;
    const char *raw = slurp("tests/golden/openai/stream.txt", &len);
    tx_request_t r = {.op = TX_OP_CHAT, .model = "client", .stream = 1, .include_usage = 1, .now_unix = 1700000000};
    const char *out;
    const char *log = run_stream(&tx_openai_provider, &r, raw, len, 1, &out);
    assert_string_equal(log, "START chatcmpl-B9MHFOhTH0PjQc6DPoHlzw4YCuQz4 gpt-4o-2024-08-06\n"
                             "TEXT 0 Let\nTEXT 0  me\nTEXT 0  check\nTEXT 0  the\nTEXT 0  weather\nTEXT 0  in\n"
                             "TEXT 0  Paris\nTEXT 0 .\n"
                             "BLOCK_END 0\n"
                             "TOOL_START 1 call_Jx3kXh2sBu8QfLq0VbDn6Tw1 get_weather\n"
                             "TOOL_ARGS 1 {\"lo\nTOOL_ARGS 1 cation\":\"Pa\nTOOL_ARGS 1 ris\",\"unit\"\n"
                             "TOOL_ARGS 1 :\"celsius\"}\n"
                             "BLOCK_END 1\n"
                             "STOP 4\n"
                             "USAGE 1117/46/1024\n"
                             "END\n");
    /* and back out through the OpenAI dialect: the same shape of stream */
    assert_non_null(strstr(out, "\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}"));
    assert_non_null(strstr(out, "\"tool_calls\":[{\"index\":0,\"id\":\"call_Jx3kXh2sBu8QfLq0VbDn6Tw1\",\"type\":"
                                "\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]"));
    assert_non_null(strstr(out, "\"finish_reason\":\"tool_calls\""));
    assert_non_null(strstr(out, "\"choices\":[],\"usage\":{\"prompt_tokens\":1117,\"completion_tokens\":46"));
    assert_non_null(strstr(out, "\"cached_tokens\":1024"));
    const char *done = "data: [DONE]\n\n";
    assert_string_equal(out + strlen(out) - strlen(done), done);
}

static void
test_stream_golden_family(void **state)
{
    tx_request_t r = {.op = TX_OP_CHAT, .model = "client", .stream = 1};
    size_t len;
    /* Azure: the empty first chunk with prompt_filter_results makes no event */
    const char *raw = slurp("tests/golden/azure/stream.txt", &len);
    const char *log = run_stream(&tx_azure_provider, &r, raw, len, 0, NULL);
    assert_true(strncmp(log, "START chatcmpl-B9MHFOhTH0PjQc6DPoHlzw4YCuQz4 gpt-4o-2024-08-06\nTEXT 0 Let\n", 70) == 0);
    assert_non_null(strstr(log, "STOP 4\nUSAGE 1117/46/1024\nEND\n"));

    /* Mistral: a whole tool call in one delta, usage with the finish chunk */
    raw = slurp("tests/golden/mistral/stream.txt", &len);
    log = run_stream(&tx_mistral_provider, &r, raw, len, 0, NULL);
    assert_non_null(strstr(log, "TOOL_START 1 D681PevKs get_weather\n"
                                "TOOL_ARGS 1 {\"location\": \"Paris\", \"unit\": \"celsius\"}\n"
                                "USAGE 1117/46/0\nBLOCK_END 1\nSTOP 4\nEND\n"));

    /* Groq: usage only in x_groq */
    raw = slurp("tests/golden/groq/stream.txt", &len);
    log = run_stream(&tx_groq_provider, &r, raw, len, 0, NULL);
    assert_non_null(strstr(log, "USAGE 1117/46/0\nBLOCK_END 1\nSTOP 4\nEND\n"));
}

static void
test_stream_quirks(void **state)
{
    tx_request_t r = {.op = TX_OP_CHAT, .model = "client", .stream = 1};
    /* no tool_calls[].index, id repeated on every fragment, then a second call with a new id; reasoning */
    const char *s = "data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"reasoning_content\":\"hm\"}}]}\n\n"
                    "data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"reasoning\":\" ok\"}}]}\n\n"
                    "data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"a\",\"function\":{\"name\":"
                    "\"f\",\"arguments\":\"{\\\"x\\\"\"}}]}}]}\n\n"
                    "data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"a\",\"function\":{"
                    "\"arguments\":\":1}\"}}]}}]}\n\n"
                    "data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"b\",\"function\":{\"name\":"
                    "\"g\",\"arguments\":\"{}\"}}]}}]}\n\n"
                    ": keep-alive comment\n\n"
                    "data: {\"id\":\"x\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
                    "data: [DONE]\n\n";
    const char *log = run_stream(&tx_openai_provider, &r, s, strlen(s), 0, NULL);
    assert_string_equal(log, "START x -\n"
                             "THINKING 0 hm\nTHINKING 0  ok\nBLOCK_END 0\n"
                             "TOOL_START 1 a f\nTOOL_ARGS 1 {\"x\"\nTOOL_ARGS 1 :1}\nBLOCK_END 1\n"
                             "TOOL_START 2 b g\nTOOL_ARGS 2 {}\nBLOCK_END 2\n"
                             "STOP 4\nEND\n");

    /* OpenRouter: an error chunk after 200, with finish_reason "error"; nothing after it */
    s = "data: {\"id\":\"gen-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"
        "data: {\"id\":\"gen-1\",\"error\":{\"code\":502,\"message\":\"Provider returned error\"},"
        "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}]}\n\n"
        "data: [DONE]\n\n";
    log = run_stream(&tx_openai_provider, &r, s, strlen(s), 0, NULL);
    assert_string_equal(log, "START gen-1 -\nTEXT 0 Hel\nERROR 502 Provider returned error\n");

    /* the mock's (and OpenAI's) mid-stream error, through the dialect: data: {"error":...}, no [DONE] */
    s = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n"
        "data: {\"error\":{\"message\":\"mock mid-stream failure\",\"type\":\"server_error\",\"param\":null,"
        "\"code\":\"server_error\"}}\n\n";
    const char *out;
    log = run_stream(&tx_openai_provider, &r, s, strlen(s), 1, &out);
    assert_string_equal(log, "START c -\nTEXT 0 Hello\nERROR 500 mock mid-stream failure\n");
    assert_non_null(strstr(out, "data: {\"error\":{\"message\":\"mock mid-stream failure\",\"type\":\"server_error\","
                                "\"param\":null,\"code\":\"server_error\"}}\n\n"));
    assert_null(strstr(out, "[DONE]"));

    /* a finish_reason "error" without an error object (Mistral) */
    s = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":\"error\"}]}\n\n";
    log = run_stream(&tx_mistral_provider, &r, s, strlen(s), 0, NULL);
    assert_non_null(strstr(log, "ERROR 502 The provider ended the generation with an error.\n"));

    /* a cut stream never says END; garbage is a 502 */
    s = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {not json}\n\n";
    log = run_stream(&tx_openai_provider, &r, s, strlen(s), 0, NULL);
    assert_string_equal(log, "START - -\nTEXT 0 a\nFAIL 502 The provider's stream holds an event that is not a JSON "
                             "object.\n");

    /* tool index out of range */
    s = "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":100000,\"id\":\"a\"}]}}]}\n\n";
    log = run_stream(&tx_openai_provider, &r, s, strlen(s), 0, NULL);
    assert_non_null(strstr(log, "FAIL 502"));

    /* legacy completion chunks */
    tx_request_t c = {.op = TX_OP_COMPLETION, .model = "client", .stream = 1};
    s = "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{\"text\":\"Hi\",\"index\":0,"
        "\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{\"text\":\"\",\"index\":0,"
        "\"finish_reason\":\"length\"}]}\n\n"
        "data: {\"id\":\"cmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}\n\n"
        "data: [DONE]\n\n";
    log = run_stream(&tx_openai_provider, &c, s, strlen(s), 0, NULL);
    assert_string_equal(log, "START cmpl-1 -\nTEXT 0 Hi\nBLOCK_END 0\nSTOP 3\nUSAGE 2/1/0\nEND\n");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_encode_openai, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_extras, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_mistral, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_azure_and_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_golden_responses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_response_variants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_golden_openai, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_golden_family, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_quirks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
