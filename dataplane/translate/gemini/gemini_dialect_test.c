/* Unit tests for the Gemini client dialect: request decoding, response/error encoding, stream encoding. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "translate/gemini/gemini_internal.h"

extern const tx_dialect_ops_t tx_gemini_dialect;
#define D (&tx_gemini_dialect)

static int
decode(tx_op_t op, const char *body, tg_arena_t *a, tx_request_t *r, tx_error_t *err)
{
    return D->decode_request(op, body, strlen(body), a, r, err);
}

/* Parses the buffer as JSON (the test owns the result). */
static json_t *
parse_buf(const tg_buf_t *b)
{
    json_t *v = json_loadb(b->base, b->len, 0, NULL);
    assert_non_null(v);
    return v;
}

static const char *
path_str(json_t *v, const char *path)
{
    /* "a.b.0.c": object keys and array indexes */
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *tok = strtok(buf, "."); tok != NULL && v != NULL; tok = strtok(NULL, "."))
        v = json_is_array(v) ? json_array_get(v, strtoul(tok, NULL, 10)) : json_object_get(v, tok);
    return json_string_value(v);
}

static json_t *
path_get(json_t *v, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *tok = strtok(buf, "."); tok != NULL && v != NULL; tok = strtok(NULL, "."))
        v = json_is_array(v) ? json_array_get(v, strtoul(tok, NULL, 10)) : json_object_get(v, tok);
    return v;
}

static const char CHAT[] =
    "{\"systemInstruction\":{\"parts\":[{\"text\":\"be brief\"},{\"text\":\"be kind\"}]},"
    "\"contents\":["
    "{\"role\":\"user\",\"parts\":[{\"text\":\"weather? [mock:tokens=3]\"},"
    "{\"inlineData\":{\"mimeType\":\"image/png\",\"data\":\"iVBORw0KGgo=\"}},"
    "{\"fileData\":{\"mimeType\":\"image/jpeg\",\"fileUri\":\"https://example.com/a.jpg\"}}]},"
    "{\"role\":\"model\",\"parts\":[{\"text\":\"thinking\",\"thought\":true,\"thoughtSignature\":\"c2ln\"},"
    "{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"location\":\"Paris\"}},\"thoughtSignature\":\"c2lnMg==\"},"
    "{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"location\":\"Tokyo\"}}}]},"
    "{\"role\":\"user\",\"parts\":[{\"functionResponse\":{\"name\":\"get_weather\",\"response\":{\"t\":21}}},"
    "{\"functionResponse\":{\"name\":\"get_weather\",\"response\":{\"t\":25}}},{\"text\":\"thanks\"}]}],"
    "\"tools\":[{\"functionDeclarations\":[{\"name\":\"get_weather\",\"description\":\"Weather\","
    "\"parameters\":{\"type\":\"OBJECT\",\"properties\":{\"location\":{\"type\":\"STRING\"},"
    "\"unit\":{\"type\":\"STRING\",\"nullable\":true,\"enum\":[\"c\",\"f\"]}},\"required\":[\"location\"],"
    "\"propertyOrdering\":[\"location\",\"unit\"]}},"
    "{\"name\":\"raw\",\"parametersJsonSchema\":{\"type\":\"object\",\"additionalProperties\":false}}]},"
    "{\"googleSearch\":{}}],"
    "\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"ANY\",\"allowedFunctionNames\":[\"get_weather\"]}},"
    "\"generationConfig\":{\"maxOutputTokens\":100,\"temperature\":0.5,\"topP\":0.9,\"topK\":40.0,"
    "\"stopSequences\":[\"END\",\"STOP\"],\"seed\":7,\"presencePenalty\":0.1,\"frequencyPenalty\":0.2,"
    "\"responseMimeType\":\"application/json\",\"responseSchema\":{\"type\":\"OBJECT\",\"properties\":"
    "{\"a\":{\"type\":\"INTEGER\"}}},\"thinkingConfig\":{\"thinkingBudget\":0}},"
    "\"safetySettings\":[{\"category\":\"HARM_CATEGORY_HARASSMENT\",\"threshold\":\"BLOCK_NONE\"}],"
    "\"unknownMember\":1}";

static void
test_decode_chat(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r;
    tx_error_t err;
    assert_int_equal(decode(TX_OP_CHAT, CHAT, &a, &r, &err), 0);
    assert_int_equal(r.dialect, TX_DIALECT_GEMINI);
    assert_null(r.model); /* the pipeline sets it from the URL */
    assert_string_equal(r.system, "be brief\n\nbe kind");

    /* user(3) model(3) tool(2) user(1) */
    assert_int_equal(r.n_messages, 4);
    assert_int_equal(r.messages[0].role, TX_ROLE_USER);
    assert_int_equal(r.messages[0].n_parts, 3);
    assert_int_equal(r.messages[0].parts[1].kind, TX_PART_IMAGE);
    assert_string_equal(r.messages[0].parts[1].media_type, "image/png");
    assert_string_equal(r.messages[0].parts[1].data, "iVBORw0KGgo=");
    assert_int_equal(r.messages[0].parts[2].kind, TX_PART_IMAGE);
    assert_string_equal(r.messages[0].parts[2].url, "https://example.com/a.jpg");

    const tx_message_t *m = &r.messages[1];
    assert_int_equal(m->role, TX_ROLE_ASSISTANT);
    assert_int_equal(m->n_parts, 3);
    assert_int_equal(m->parts[0].kind, TX_PART_THINKING);
    assert_string_equal(m->parts[0].signature, "c2ln");
    assert_int_equal(m->parts[1].kind, TX_PART_TOOL_CALL);
    assert_string_equal(m->parts[1].id, "call_1_1"); /* invented from the position */
    assert_string_equal(m->parts[1].signature, "c2lnMg==");
    assert_string_equal(json_string_value(json_object_get(m->parts[1].args, "location")), "Paris");
    assert_string_equal(m->parts[2].id, "call_1_2");

    /* id-less responses pair with the calls by name, in order */
    m = &r.messages[2];
    assert_int_equal(m->role, TX_ROLE_TOOL);
    assert_int_equal(m->n_parts, 2);
    assert_int_equal(m->parts[0].kind, TX_PART_TOOL_RESULT);
    assert_string_equal(m->parts[0].id, "call_1_1");
    assert_string_equal(m->parts[0].name, "get_weather");
    assert_string_equal(m->parts[0].text, "{\"t\":21}");
    assert_string_equal(m->parts[1].id, "call_1_2");
    assert_int_equal(r.messages[3].role, TX_ROLE_USER);
    assert_string_equal(r.messages[3].parts[0].text, "thanks");

    assert_int_equal(r.n_tools, 2);
    assert_string_equal(r.tools[0].name, "get_weather");
    assert_string_equal(r.tools[0].description, "Weather");
    json_t *params = r.tools[0].parameters;
    assert_string_equal(path_str(params, "type"), "object");
    assert_string_equal(path_str(params, "properties.location.type"), "string");
    assert_string_equal(path_str(params, "properties.unit.type.0"), "string");
    assert_string_equal(path_str(params, "properties.unit.type.1"), "null");
    assert_null(json_object_get(params, "propertyOrdering"));
    assert_true(json_is_false(json_object_get(r.tools[1].parameters, "additionalProperties")));

    assert_int_equal(r.tool_choice, TX_TOOL_CHOICE_NAMED);
    assert_string_equal(r.tool_choice_name, "get_weather");
    assert_int_equal(r.max_tokens, 100);
    assert_true(r.has_temperature && r.temperature == 0.5);
    assert_true(r.has_top_p && r.top_p == 0.9);
    assert_int_equal(r.top_k, 40);
    assert_int_equal(r.n_stop, 2);
    assert_string_equal(r.stop[1], "STOP");
    assert_true(r.has_seed && r.seed == 7);
    assert_true(r.has_presence_penalty && r.has_frequency_penalty);
    assert_int_equal(r.format, TX_FORMAT_JSON_SCHEMA);
    assert_string_equal(path_str(r.format_schema, "properties.a.type"), "integer");

    /* what a Gemini upstream may forward */
    assert_non_null(json_object_get(r.extra, "safetySettings"));
    assert_non_null(json_object_get(r.extra, "unknownMember"));
    assert_non_null(path_get(r.extra, "generationConfig.thinkingConfig"));
    assert_null(path_get(r.extra, "generationConfig.temperature"));
    assert_null(path_get(r.extra, "generationConfig.responseSchema"));
    assert_null(path_get(r.extra, "generationConfig.responseMimeType"));
    assert_non_null(path_get(r.extra, "tools.0.googleSearch"));
    assert_null(json_object_get(r.extra, "contents"));
    tg_arena_free(&a);
}

static void
test_decode_choices(void **state)
{
    static const struct {
        const char *mode, *names;
        tx_tool_choice_t want;
    } cases[] = {
        {"AUTO", "", TX_TOOL_CHOICE_AUTO},
        {"NONE", "", TX_TOOL_CHOICE_NONE},
        {"ANY", "", TX_TOOL_CHOICE_REQUIRED},
        {"ANY", ",\"allowedFunctionNames\":[\"a\",\"b\"]", TX_TOOL_CHOICE_REQUIRED},
        {"VALIDATED", "", TX_TOOL_CHOICE_AUTO},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],\"toolConfig\":{\"functionCallingConfig\":"
                 "{\"mode\":\"%s\"%s}}}",
                 cases[i].mode, cases[i].names);
        tg_arena_t a = TG_ARENA_INIT;
        tx_request_t r;
        tx_error_t err;
        assert_int_equal(decode(TX_OP_CHAT, body, &a, &r, &err), 0);
        assert_int_equal(r.tool_choice, cases[i].want);
        /* role is optional and means user; defaults are "unset" */
        assert_int_equal(r.messages[0].role, TX_ROLE_USER);
        assert_int_equal(r.max_tokens, -1);
        assert_int_equal(r.top_k, -1);
        assert_int_equal(r.format, TX_FORMAT_TEXT);
        assert_null(r.extra);
        tg_arena_free(&a);
    }
}

static void
test_decode_errors(void **state)
{
    static const struct {
        const char *body, *param;
    } cases[] = {
        {"{", ""},
        {"[]", ""},
        {"{}", "contents"},
        {"{\"contents\":[]}", "contents"},
        {"{\"contents\":[1]}", "contents"},
        {"{\"contents\":[{\"role\":\"system\",\"parts\":[{\"text\":\"x\"}]}]}", "contents"},
        {"{\"contents\":[{\"parts\":\"x\"}]}", "contents"},
        {"{\"contents\":[{\"parts\":[1]}]}", "contents[0].parts[0]"},
        {"{\"contents\":[{\"parts\":[{\"text\":1}]}]}", "contents[0].parts[0]"},
        {"{\"contents\":[{\"parts\":[{\"functionCall\":{\"args\":{}}}]}]}", "contents[0].parts[0]"},
        {"{\"contents\":[{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":[1]}}]}]}", "contents[0].parts[0]"},
        {"{\"contents\":[{\"parts\":[{\"functionResponse\":{\"response\":{}}}]}]}", "contents[0].parts[0]"},
        {"{\"contents\":[{\"parts\":[{\"inlineData\":{\"data\":\"x\"}}]}]}", "contents[0].parts[0]"},
        {"{\"contents\":[{\"parts\":[{\"fileData\":{}}]}]}", "contents[0].parts[0]"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],\"generationConfig\":{\"temperature\":\"hot\"}}",
         "temperature"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],\"generationConfig\":{\"maxOutputTokens\":1.5}}",
         "maxOutputTokens"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],\"generationConfig\":{\"maxOutputTokens\":-1}}",
         "maxOutputTokens"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],\"generationConfig\":{\"candidateCount\":2}}",
         "candidateCount"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],\"generationConfig\":{\"stopSequences\":[1]}}",
         "stopSequences"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],\"generationConfig\":{\"seed\":\"x\"}}", "seed"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],\"generationConfig\":[]}", "generationConfig"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],\"tools\":{}}", "tools"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],\"tools\":[{\"functionDeclarations\":[{}]}]}", "tools"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],\"toolConfig\":{\"functionCallingConfig\":"
         "{\"mode\":\"SOMETIMES\"}}}",
         "toolConfig"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],\"systemInstruction\":7}", "systemInstruction"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tg_arena_t a = TG_ARENA_INIT;
        tx_request_t r;
        tx_error_t err;
        assert_int_equal(decode(TX_OP_CHAT, cases[i].body, &a, &r, &err), -1);
        assert_int_equal(err.kind, TX_ERR_INVALID_REQUEST);
        assert_string_equal(err.param, cases[i].param);
        assert_true(err.message[0] != '\0');
        tg_arena_free(&a);
    }
}

static void
test_decode_embed_and_count(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r;
    tx_error_t err;
    assert_int_equal(decode(TX_OP_EMBED,
                            "{\"model\":\"models/e\",\"content\":{\"parts\":[{\"text\":\"a\"},{\"text\":\"b\"}]},"
                            "\"taskType\":\"RETRIEVAL_QUERY\",\"outputDimensionality\":8}",
                            &a, &r, &err),
                     0);
    assert_int_equal(r.op, TX_OP_EMBED);
    assert_int_equal(r.n_inputs, 1);
    assert_string_equal(r.inputs[0], "a\nb");
    assert_string_equal(r.task_type, "RETRIEVAL_QUERY");
    assert_int_equal(r.dimensions, 8);
    assert_null(r.extra);

    assert_int_equal(decode(TX_OP_EMBED,
                            "{\"requests\":[{\"model\":\"models/e\",\"content\":{\"parts\":[{\"text\":\"x\"}]}},"
                            "{\"model\":\"models/e\",\"content\":{\"parts\":[{\"text\":\"y\"}]}}]}",
                            &a, &r, &err),
                     0);
    assert_int_equal(r.n_inputs, 2);
    assert_string_equal(r.inputs[1], "y");
    assert_int_equal(r.dimensions, -1);
    assert_non_null(json_object_get(r.extra, "requests"));

    assert_int_equal(decode(TX_OP_EMBED, "{\"requests\":[]}", &a, &r, &err), -1);
    assert_string_equal(err.param, "requests");
    assert_int_equal(decode(TX_OP_EMBED, "{\"content\":\"x\"}", &a, &r, &err), -1);
    assert_string_equal(err.param, "content");
    assert_int_equal(decode(TX_OP_EMBED, "{\"content\":{\"parts\":[]},\"outputDimensionality\":0}", &a, &r, &err), -1);

    /* countTokens: either form */
    assert_int_equal(decode(TX_OP_COUNT_TOKENS, "{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}]}", &a, &r, &err), 0);
    assert_int_equal(r.op, TX_OP_COUNT_TOKENS);
    assert_int_equal(r.n_messages, 1);
    assert_int_equal(decode(TX_OP_COUNT_TOKENS,
                            "{\"generateContentRequest\":{\"model\":\"models/m\",\"systemInstruction\":"
                            "{\"parts\":[{\"text\":\"s\"}]},\"contents\":[{\"parts\":[{\"text\":\"x\"}]}]}}",
                            &a, &r, &err),
                     0);
    assert_string_equal(r.system, "s");
    assert_null(r.extra); /* model is the URL's business */

    /* an enum answer is Gemini's own: it stays in extra for a Gemini upstream */
    assert_int_equal(decode(TX_OP_CHAT,
                            "{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}],\"generationConfig\":{\"responseMimeType\":"
                            "\"text/x.enum\",\"responseSchema\":{\"type\":\"STRING\",\"enum\":[\"a\",\"b\"]}}}",
                            &a, &r, &err),
                     0);
    assert_int_equal(r.format, TX_FORMAT_TEXT);
    assert_string_equal(path_str(r.extra, "generationConfig.responseMimeType"), "text/x.enum");
    assert_string_equal(path_str(r.extra, "generationConfig.responseSchema.enum.1"), "b");
    tg_arena_free(&a);
}

/* ---------------------------------------------------------------- responses and errors */

static void
test_encode_response(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r = {.op = TX_OP_CHAT, .model = "gemini-x", .request_id = "req-1"};
    json_t *args = json_pack("{ss}", "location", "Paris");
    tx_part_t parts[] = {
        {.kind = TX_PART_THINKING, .text = "hmm", .signature = "sig"},
        {.kind = TX_PART_TEXT, .text = "Hello"},
        {.kind = TX_PART_TOOL_CALL, .id = "call_1", .name = "get_weather", .args = args},
        {.kind = TX_PART_REDACTED_THINKING, .text = "opaque"},
    };
    tx_response_t resp = {.parts = parts, .n_parts = 4, .stop = TX_STOP_TOOL_USE};
    resp.usage = tx_usage_make(100, 30, 40, 0);
    resp.usage.reasoning = 10;
    tg_buf_t out = {0};
    assert_int_equal(D->encode_response(&r, &resp, &a, &out), 0);
    json_t *v = parse_buf(&out);
    assert_string_equal(path_str(v, "candidates.0.finishReason"), "STOP"); /* Gemini's spelling of tool use */
    assert_string_equal(path_str(v, "candidates.0.content.role"), "model");
    assert_int_equal(json_array_size(path_get(v, "candidates.0.content.parts")), 3);
    assert_true(json_is_true(path_get(v, "candidates.0.content.parts.0.thought")));
    assert_string_equal(path_str(v, "candidates.0.content.parts.0.thoughtSignature"), "sig");
    assert_string_equal(path_str(v, "candidates.0.content.parts.1.text"), "Hello");
    assert_string_equal(path_str(v, "candidates.0.content.parts.2.functionCall.name"), "get_weather");
    assert_string_equal(path_str(v, "candidates.0.content.parts.2.functionCall.id"), "call_1");
    assert_string_equal(path_str(v, "candidates.0.content.parts.2.functionCall.args.location"), "Paris");
    assert_int_equal(json_integer_value(path_get(v, "usageMetadata.promptTokenCount")), 100);
    assert_int_equal(json_integer_value(path_get(v, "usageMetadata.candidatesTokenCount")), 20);
    assert_int_equal(json_integer_value(path_get(v, "usageMetadata.thoughtsTokenCount")), 10);
    assert_int_equal(json_integer_value(path_get(v, "usageMetadata.cachedContentTokenCount")), 40);
    assert_int_equal(json_integer_value(path_get(v, "usageMetadata.totalTokenCount")), 130);
    assert_string_equal(path_str(v, "modelVersion"), "gemini-x");
    assert_string_equal(path_str(v, "responseId"), "req-1");
    json_decref(v);
    tg_buf_free(&out);

    /* stop reasons; no usage known: no usageMetadata */
    static const struct {
        tx_stop_t stop;
        const char *want;
    } stops[] = {{TX_STOP_END, "STOP"},
                 {TX_STOP_SEQUENCE, "STOP"},
                 {TX_STOP_MAX_TOKENS, "MAX_TOKENS"},
                 {TX_STOP_CONTENT_FILTER, "SAFETY"},
                 {TX_STOP_ERROR, "OTHER"}};
    for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++) {
        tx_response_t rr = {.stop = stops[i].stop, .id = "x", .model = "m"};
        tg_buf_t o = {0};
        assert_int_equal(D->encode_response(&r, &rr, &a, &o), 0);
        json_t *w = parse_buf(&o);
        assert_string_equal(path_str(w, "candidates.0.finishReason"), stops[i].want);
        assert_null(json_object_get(w, "usageMetadata"));
        assert_string_equal(path_str(w, "responseId"), "x");
        json_decref(w);
        tg_buf_free(&o);
    }
    json_decref(args);
    tg_arena_free(&a);
}

static void
test_encode_embed_count(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    float v1[] = {0.5f, -1.0f}, v2[] = {0.25f};
    tx_embedding_t embs[] = {{v1, 2}, {v2, 1}};
    tx_response_t resp = {.embeddings = embs, .n_embeddings = 2};
    tx_request_t r = {.op = TX_OP_EMBED};
    tg_buf_t out = {0};
    assert_int_equal(D->encode_response(&r, &resp, &a, &out), 0);
    json_t *v = parse_buf(&out);
    assert_true(json_real_value(path_get(v, "embedding.values.1")) == -1.0);
    assert_int_equal(json_array_size(path_get(v, "embedding.values")), 2);
    json_decref(v);
    tg_buf_free(&out);

    r.extra = json_pack("{s[]}", "requests");
    assert_int_equal(D->encode_response(&r, &resp, &a, &out), 0);
    v = parse_buf(&out);
    assert_int_equal(json_array_size(json_object_get(v, "embeddings")), 2);
    assert_true(json_real_value(path_get(v, "embeddings.1.values.0")) == 0.25);
    json_decref(v);
    json_decref(r.extra);
    tg_buf_free(&out);

    tx_request_t c = {.op = TX_OP_COUNT_TOKENS};
    tx_response_t cr = {.input_tokens = 42};
    assert_int_equal(D->encode_response(&c, &cr, &a, &out), 0);
    assert_int_equal(out.len, strlen("{\"totalTokens\":42}"));
    assert_memory_equal(out.base, "{\"totalTokens\":42}", out.len);
    tg_buf_free(&out);
    tg_arena_free(&a);
}

static void
test_encode_error(void **state)
{
    static const struct {
        tx_error_kind_t kind;
        int status, want_status;
        const char *want;
    } cases[] = {
        {TX_ERR_INVALID_REQUEST, 0, 400, "INVALID_ARGUMENT"},
        {TX_ERR_AUTHENTICATION, 0, 401, "UNAUTHENTICATED"},
        {TX_ERR_PERMISSION, 0, 403, "PERMISSION_DENIED"},
        {TX_ERR_NOT_FOUND, 0, 404, "NOT_FOUND"},
        {TX_ERR_RATE_LIMIT, 0, 429, "RESOURCE_EXHAUSTED"},
        {TX_ERR_SERVER, 0, 500, "INTERNAL"},
        {TX_ERR_UPSTREAM, 0, 502, "UNAVAILABLE"},
        {TX_ERR_OVERLOADED, 0, 503, "UNAVAILABLE"},
        {TX_ERR_OVERLOADED, 529, 503, "UNAVAILABLE"},
        {TX_ERR_TIMEOUT, 0, 504, "DEADLINE_EXCEEDED"},
        {TX_ERR_BILLING, 0, 402, "FAILED_PRECONDITION"},
        {TX_ERR_TOO_LARGE, 0, 413, "INVALID_ARGUMENT"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tx_error_t e;
        tx_fail(&e, cases[i].kind, "some_code", "messages", "went wrong %zu", i);
        e.status = cases[i].status;
        tg_buf_t out = {0};
        assert_int_equal(D->encode_error(&e, "req-9", &out), cases[i].want_status);
        json_t *v = parse_buf(&out);
        assert_int_equal(json_integer_value(path_get(v, "error.code")), cases[i].want_status);
        assert_string_equal(path_str(v, "error.status"), cases[i].want);
        assert_non_null(strstr(path_str(v, "error.message"), "went wrong"));
        assert_string_equal(path_str(v, "error.details.0.reason"), "SOME_CODE");
        assert_string_equal(path_str(v, "error.details.0.metadata.param"), "messages");
        assert_string_equal(path_str(v, "error.details.1.requestId"), "req-9");
        json_decref(v);
        tg_buf_free(&out);
    }
    /* a message cut inside a UTF-8 sequence still makes valid JSON */
    tx_error_t e;
    char msg[600];
    memset(msg, 'x', sizeof(msg));
    memcpy(msg + 509, "\xc3\xa9\xc3\xa9", 4);
    msg[599] = '\0';
    tx_fail(&e, TX_ERR_INVALID_REQUEST, NULL, NULL, "%s", msg);
    tg_buf_t out = {0};
    assert_int_equal(D->encode_error(&e, NULL, &out), 400);
    json_t *v = parse_buf(&out);
    assert_null(path_get(v, "error.details"));
    json_decref(v);
    tg_buf_free(&out);
}

/* ---------------------------------------------------------------- streams */

/* Splits "data: X\n\n" chunks; returns how many, storing parsed JSON in ret (caller decrefs). */
static size_t
chunks(const tg_buf_t *b, json_t **ret, size_t cap)
{
    size_t n = 0, at = 0;
    while (at < b->len) {
        assert_true(b->len - at > 6 && memcmp(b->base + at, "data: ", 6) == 0);
        const char *end = memmem(b->base + at, b->len - at, "\n\n", 2);
        assert_non_null(end);
        assert_true(n < cap);
        ret[n] = json_loadb(b->base + at + 6, (size_t)(end - (b->base + at + 6)), 0, NULL);
        assert_non_null(ret[n]);
        n++;
        at = (size_t)(end - b->base) + 2;
    }
    return n;
}

struct stream_test {
    tx_stream_state_t *st;
    tx_request_t r;
    tg_buf_t out;
};

static void
send_ev(struct stream_test *t, tx_event_t ev)
{
    assert_int_equal(D->stream_event(t->st, &t->r, &ev, &t->out), 0);
}

static void
stream_init(struct stream_test *t)
{
    memset(t, 0, sizeof(*t));
    t->st = calloc(1, D->stream_state_size);
    t->r.model = "gemini-x";
    t->r.request_id = "req-1";
    t->r.stream = 1;
    assert_string_equal(D->stream_content_type, "text/event-stream");
}

static void
stream_free(struct stream_test *t)
{
    free(t->st);
    tg_buf_free(&t->out);
}

#define TXT(i, s)  ((tx_event_t){.kind = TX_EV_TEXT, .index = (i), .text = (s), .text_len = strlen(s)})
#define ARGS(i, s) ((tx_event_t){.kind = TX_EV_TOOL_ARGS, .index = (i), .text = (s), .text_len = strlen(s)})

static void
test_stream(void **state)
{
    struct stream_test t;
    stream_init(&t);
    send_ev(&t, (tx_event_t){.kind = TX_EV_START, .id = "resp-7", .model = "gemini-2.5-flash"});
    send_ev(&t, TXT(0, "Hel"));
    send_ev(&t, TXT(0, "lo"));
    send_ev(&t, (tx_event_t){.kind = TX_EV_BLOCK_END, .index = 0});
    send_ev(&t, (tx_event_t){.kind = TX_EV_TOOL_START, .index = 1, .id = "call_a", .name = "get_weather"});
    size_t before = t.out.len;
    send_ev(&t, ARGS(1, "{\"location\":"));
    send_ev(&t, ARGS(1, "\"Paris\"}"));
    assert_int_equal(t.out.len, before); /* held until the call is whole */
    send_ev(&t, (tx_event_t){.kind = TX_EV_USAGE, .usage = tx_usage_make(10, 5, 2, 0)});
    send_ev(&t, (tx_event_t){.kind = TX_EV_BLOCK_END, .index = 1});
    send_ev(&t, (tx_event_t){.kind = TX_EV_STOP, .stop = TX_STOP_TOOL_USE});
    send_ev(&t, (tx_event_t){.kind = TX_EV_END});
    send_ev(&t, TXT(0, "after the end: nothing"));

    json_t *c[8];
    size_t n = chunks(&t.out, c, 8);
    assert_int_equal(n, 4);
    assert_string_equal(path_str(c[0], "candidates.0.content.parts.0.text"), "Hel");
    assert_string_equal(path_str(c[0], "modelVersion"), "gemini-2.5-flash");
    assert_string_equal(path_str(c[0], "responseId"), "resp-7");
    assert_null(path_get(c[0], "candidates.0.finishReason"));
    assert_string_equal(path_str(c[1], "candidates.0.content.parts.0.text"), "lo");
    assert_string_equal(path_str(c[2], "candidates.0.content.parts.0.functionCall.name"), "get_weather");
    assert_string_equal(path_str(c[2], "candidates.0.content.parts.0.functionCall.id"), "call_a");
    assert_string_equal(path_str(c[2], "candidates.0.content.parts.0.functionCall.args.location"), "Paris");
    assert_string_equal(path_str(c[3], "candidates.0.finishReason"), "STOP");
    assert_int_equal(json_integer_value(path_get(c[3], "usageMetadata.promptTokenCount")), 10);
    assert_int_equal(json_integer_value(path_get(c[3], "usageMetadata.cachedContentTokenCount")), 2);
    assert_int_equal(json_integer_value(path_get(c[3], "usageMetadata.totalTokenCount")), 15);
    for (size_t i = 0; i < n; i++)
        json_decref(c[i]);
    assert_null(memmem(t.out.base, t.out.len, "[DONE]", 6));
    stream_free(&t);
}

static void
test_stream_error(void **state)
{
    struct stream_test t;
    stream_init(&t);
    send_ev(&t, (tx_event_t){.kind = TX_EV_START});
    send_ev(&t, TXT(0, "Hel"));
    send_ev(&t, (tx_event_t){.kind = TX_EV_TOOL_START, .index = 1, .name = "f"});
    send_ev(&t, ARGS(1, "{\"a\":"));
    tx_error_t e;
    tx_fail(&e, TX_ERR_OVERLOADED, "overloaded_error", NULL, "Overloaded");
    send_ev(&t, (tx_event_t){.kind = TX_EV_ERROR, .error = &e});
    send_ev(&t, (tx_event_t){.kind = TX_EV_END});
    json_t *c[4];
    size_t n = chunks(&t.out, c, 4);
    assert_int_equal(n, 2);
    assert_string_equal(path_str(c[0], "responseId"), "req-1"); /* START without an id: ours */
    assert_string_equal(path_str(c[0], "modelVersion"), "gemini-x");
    assert_int_equal(json_integer_value(path_get(c[1], "error.code")), 503);
    assert_string_equal(path_str(c[1], "error.status"), "UNAVAILABLE");
    assert_string_equal(path_str(c[1], "error.message"), "Overloaded");
    for (size_t i = 0; i < n; i++)
        json_decref(c[i]);
    stream_free(&t);
}

static void
test_stream_tool_edge_cases(void **state)
{
    /* arguments that are not an object: an in-stream error instead of a call the client cannot read */
    struct stream_test t;
    stream_init(&t);
    send_ev(&t, (tx_event_t){.kind = TX_EV_TOOL_START, .index = 0, .name = "f"});
    send_ev(&t, ARGS(0, "[1,2"));
    send_ev(&t, (tx_event_t){.kind = TX_EV_BLOCK_END, .index = 0});
    json_t *c[4];
    assert_int_equal(chunks(&t.out, c, 4), 1);
    assert_string_equal(path_str(c[0], "error.status"), "UNAVAILABLE");
    json_decref(c[0]);
    stream_free(&t);

    /* no arguments at all, and a call never closed before END: both still go out whole */
    stream_init(&t);
    send_ev(&t, (tx_event_t){.kind = TX_EV_TOOL_START, .index = 0, .name = "f", .signature = "s1"});
    send_ev(&t, (tx_event_t){.kind = TX_EV_TOOL_START, .index = 1, .name = "g"});
    send_ev(&t, ARGS(1, "{}"));
    send_ev(&t, (tx_event_t){.kind = TX_EV_END});
    assert_int_equal(chunks(&t.out, c, 4), 3);
    assert_string_equal(path_str(c[0], "candidates.0.content.parts.0.functionCall.name"), "f");
    assert_int_equal(json_object_size(path_get(c[0], "candidates.0.content.parts.0.functionCall.args")), 0);
    assert_string_equal(path_str(c[0], "candidates.0.content.parts.0.thoughtSignature"), "s1");
    assert_string_equal(path_str(c[1], "candidates.0.content.parts.0.functionCall.name"), "g");
    assert_null(path_get(c[1], "candidates.0.content.parts.0.functionCall.id"));
    assert_string_equal(path_str(c[2], "candidates.0.finishReason"), "STOP");
    for (int i = 0; i < 3; i++)
        json_decref(c[i]);
    stream_free(&t);

    /* over the cap */
    stream_init(&t);
    send_ev(&t, (tx_event_t){.kind = TX_EV_TOOL_START, .index = 0, .name = "f"});
    size_t big = 64 * 1024;
    char *frag = malloc(big + 1);
    memset(frag, ' ', big);
    frag[big] = '\0';
    for (size_t i = 0; i <= TX_GEMINI_MAX_ARGS / big; i++)
        send_ev(&t, ARGS(0, frag));
    free(frag);
    send_ev(&t, (tx_event_t){.kind = TX_EV_BLOCK_END, .index = 0});
    assert_int_equal(chunks(&t.out, c, 4), 1);
    assert_string_equal(path_str(c[0], "error.details.0.reason"), "TOOL_ARGUMENTS_TOO_LARGE");
    json_decref(c[0]);
    stream_free(&t);

    /* abandoned in the middle of a call: stream_dispose releases the arguments held so far */
    stream_init(&t);
    send_ev(&t, (tx_event_t){.kind = TX_EV_TOOL_START, .index = 0, .name = "f", .signature = "s"});
    send_ev(&t, ARGS(0, "{\"a\":"));
    D->stream_dispose(t.st);
    D->stream_dispose(t.st);
    assert_int_equal(t.out.len, 0);
    stream_free(&t);

    /* thinking text and a max-tokens end */
    stream_init(&t);
    send_ev(&t, (tx_event_t){.kind = TX_EV_THINKING, .index = 0, .text = "hm", .text_len = 2});
    send_ev(&t, (tx_event_t){.kind = TX_EV_STOP, .stop = TX_STOP_MAX_TOKENS});
    send_ev(&t, (tx_event_t){.kind = TX_EV_END});
    assert_int_equal(chunks(&t.out, c, 4), 2);
    assert_true(json_is_true(path_get(c[0], "candidates.0.content.parts.0.thought")));
    assert_string_equal(path_str(c[1], "candidates.0.finishReason"), "MAX_TOKENS");
    assert_null(path_get(c[1], "usageMetadata"));
    json_decref(c[0]);
    json_decref(c[1]);
    stream_free(&t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_chat),     cmocka_unit_test(test_decode_choices),
        cmocka_unit_test(test_decode_errors),   cmocka_unit_test(test_decode_embed_and_count),
        cmocka_unit_test(test_encode_response), cmocka_unit_test(test_encode_embed_count),
        cmocka_unit_test(test_encode_error),    cmocka_unit_test(test_stream),
        cmocka_unit_test(test_stream_error),    cmocka_unit_test(test_stream_tool_edge_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
