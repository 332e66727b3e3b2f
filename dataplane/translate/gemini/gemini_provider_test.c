/* Unit tests for the Gemini and Vertex provider adapters: request encoding (with schema sanitising),
 * response, error and stream decoding, and the Gemini-in/Gemini-out round trip. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "translate/gemini/gemini_internal.h"

extern const tx_provider_ops_t tx_gemini_provider, tx_vertex_provider;
extern const tx_dialect_ops_t tx_gemini_dialect;

static json_t *
path_get(json_t *v, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *tok = strtok(buf, "."); tok != NULL && v != NULL; tok = strtok(NULL, "."))
        v = json_is_array(v) ? json_array_get(v, strtoul(tok, NULL, 10)) : json_object_get(v, tok);
    return v;
}

static const char *
path_str(json_t *v, const char *path)
{
    return json_string_value(path_get(v, path));
}

static json_t *
kept(tg_arena_t *a, const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    tx_arena_keep(a, v);
    return v;
}

static void
init_request(tx_request_t *r)
{
    memset(r, 0, sizeof(*r));
    r->max_tokens = -1;
    r->top_k = -1;
    r->parallel_tool_calls = -1;
    r->dimensions = -1;
    r->dialect = TX_DIALECT_OPENAI;
}

/* Encodes and parses the body (kept by the arena). */
static json_t *
encode(const tx_provider_ops_t *p, const tx_request_t *r, const tx_target_t *t, tg_arena_t *a, tx_http_request_t *http)
{
    tx_error_t err;
    int rc = p->encode_request(r, t, a, http, &err);
    if (rc != 0)
        fail_msg("encode_request: %s", err.message);
    assert_int_equal(strlen(http->body), http->body_len);
    return kept(a, http->body);
}

/* ---------------------------------------------------------------- encoding */

static void
test_encode_chat(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r;
    init_request(&r);
    json_t *args = kept(&a, "{\"location\":\"Paris\"}");
    tx_part_t u1[] = {{.kind = TX_PART_TEXT, .text = "What is the weather?"},
                      {.kind = TX_PART_IMAGE, .media_type = "image/png", .data = "iVBORw0KGgo="},
                      {.kind = TX_PART_IMAGE, .url = "https://example.com/cat.webp?x=1"},
                      {.kind = TX_PART_IMAGE, .url = "data:image/gif;base64,R0lGOD"}};
    tx_part_t u2[] = {{.kind = TX_PART_TEXT, .text = "In Paris."}};
    tx_part_t as[] = {{.kind = TX_PART_THINKING, .text = "t", .signature = "anthropic-sig"},
                      {.kind = TX_PART_TEXT, .text = "Let me check."},
                      {.kind = TX_PART_TOOL_CALL, .id = "call_a", .name = "get_weather", .args = args},
                      {.kind = TX_PART_TOOL_CALL, .id = "call_b", .name = "get_time"}};
    tx_part_t t1[] = {{.kind = TX_PART_TOOL_RESULT, .id = "call_a", .text = "sunny"}};
    tx_part_t t2[] = {{.kind = TX_PART_TOOL_RESULT, .id = "call_b", .text = "{\"time\":\"noon\"}"},
                      {.kind = TX_PART_TOOL_RESULT, .id = "x", .name = "named", .text = "boom", .is_error = 1}};
    tx_part_t u3[] = {{.kind = TX_PART_TEXT, .text = "Thanks"}};
    tx_message_t msgs[] = {{TX_ROLE_USER, u1, 4}, {TX_ROLE_USER, u2, 1}, {TX_ROLE_ASSISTANT, as, 4},
                           {TX_ROLE_TOOL, t1, 1}, {TX_ROLE_TOOL, t2, 2}, {TX_ROLE_USER, u3, 1}};
    r.messages = msgs;
    r.n_messages = 6;
    r.system = "be brief";
    tx_tool_t tools[] = {
        {.name = "get_weather",
         .description = "Weather",
         .parameters =
             kept(&a, "{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"type\":\"object\","
                      "\"additionalProperties\":false,\"properties\":{\"location\":{\"type\":\"string\","
                      "\"format\":\"email\"},\"unit\":{\"type\":[\"string\",\"null\"],\"enum\":[\"c\",\"f\"]}},"
                      "\"required\":[\"location\",\"ghost\"]}")},
        {.name = "get_time", .parameters = kept(&a, "{\"type\":\"object\",\"properties\":{}}")},
    };
    r.tools = tools;
    r.n_tools = 2;
    r.tool_choice = TX_TOOL_CHOICE_NAMED;
    r.tool_choice_name = "get_weather";
    r.max_tokens = 256;
    r.has_temperature = 1;
    r.temperature = 0.25;
    r.has_top_p = 1;
    r.top_p = 0.5;
    r.top_k = 20;
    const char *stop[] = {"END"};
    r.stop = stop;
    r.n_stop = 1;
    r.has_seed = 1;
    r.seed = 42;
    r.format = TX_FORMAT_JSON_SCHEMA;
    r.format_schema = kept(&a, "{\"type\":\"object\",\"properties\":{\"answer\":{\"type\":\"string\"}}}");
    r.extra = kept(&a, "{\"safetySettings\":[]}"); /* an OpenAI client's extras are not Gemini's */

    tx_target_t t = {.kind = "gemini",
                     .base_url = "https://generativelanguage.googleapis.com",
                     .upstream_model = "gemini-2.5-flash"};
    tx_http_request_t http;
    json_t *b = encode(&tx_gemini_provider, &r, &t, &a, &http);
    assert_string_equal(http.url,
                        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent");
    assert_int_equal(http.n_headers, 0);

    assert_string_equal(path_str(b, "systemInstruction.parts.0.text"), "be brief");
    json_t *contents = json_object_get(b, "contents");
    /* user+user merged; model; tool+tool+user merged into one user turn */
    assert_int_equal(json_array_size(contents), 3);
    assert_string_equal(path_str(contents, "0.role"), "user");
    assert_int_equal(json_array_size(path_get(contents, "0.parts")), 5);
    assert_string_equal(path_str(contents, "0.parts.1.inlineData.mimeType"), "image/png");
    assert_string_equal(path_str(contents, "0.parts.2.fileData.fileUri"), "https://example.com/cat.webp?x=1");
    assert_string_equal(path_str(contents, "0.parts.2.fileData.mimeType"), "image/webp");
    assert_string_equal(path_str(contents, "0.parts.3.inlineData.mimeType"), "image/gif");
    assert_string_equal(path_str(contents, "0.parts.3.inlineData.data"), "R0lGOD");
    assert_string_equal(path_str(contents, "0.parts.4.text"), "In Paris.");

    assert_string_equal(path_str(contents, "1.role"), "model");
    assert_int_equal(json_array_size(path_get(contents, "1.parts")), 3); /* foreign thinking dropped */
    assert_string_equal(path_str(contents, "1.parts.0.text"), "Let me check.");
    assert_string_equal(path_str(contents, "1.parts.1.functionCall.name"), "get_weather");
    assert_string_equal(path_str(contents, "1.parts.1.functionCall.args.location"), "Paris");
    assert_null(path_get(contents, "1.parts.1.functionCall.id")); /* ids are not sent */
    assert_int_equal(json_object_size(path_get(contents, "1.parts.2.functionCall.args")), 0);

    assert_string_equal(path_str(contents, "2.role"), "user");
    assert_int_equal(json_array_size(path_get(contents, "2.parts")), 4);
    assert_string_equal(path_str(contents, "2.parts.0.functionResponse.name"), "get_weather"); /* found by id */
    assert_string_equal(path_str(contents, "2.parts.0.functionResponse.response.result"), "sunny");
    assert_string_equal(path_str(contents, "2.parts.1.functionResponse.name"), "get_time");
    assert_string_equal(path_str(contents, "2.parts.1.functionResponse.response.time"), "noon");
    assert_string_equal(path_str(contents, "2.parts.2.functionResponse.response.error"), "boom");
    assert_string_equal(path_str(contents, "2.parts.3.text"), "Thanks");

    json_t *fd = path_get(b, "tools.0.functionDeclarations");
    assert_int_equal(json_array_size(fd), 2);
    json_t *p = path_get(fd, "0.parameters");
    assert_string_equal(path_str(p, "type"), "OBJECT");
    assert_null(json_object_get(p, "$schema"));
    assert_null(json_object_get(p, "additionalProperties"));
    assert_string_equal(path_str(p, "properties.location.type"), "STRING");
    assert_null(path_get(p, "properties.location.format")); /* only enum/date-time formats pass */
    assert_string_equal(path_str(p, "properties.unit.type"), "STRING");
    assert_true(json_is_true(path_get(p, "properties.unit.nullable")));
    assert_string_equal(path_str(p, "properties.unit.enum.1"), "f");
    assert_int_equal(json_array_size(json_object_get(p, "required")), 1); /* "ghost" is not a property */
    assert_null(path_get(fd, "1.parameters"));                            /* no properties: no parameters */

    assert_string_equal(path_str(b, "toolConfig.functionCallingConfig.mode"), "ANY");
    assert_string_equal(path_str(b, "toolConfig.functionCallingConfig.allowedFunctionNames.0"), "get_weather");
    json_t *gc = json_object_get(b, "generationConfig");
    assert_int_equal(json_integer_value(json_object_get(gc, "maxOutputTokens")), 256);
    assert_true(json_real_value(json_object_get(gc, "temperature")) == 0.25);
    assert_true(json_real_value(json_object_get(gc, "topP")) == 0.5);
    assert_int_equal(json_integer_value(json_object_get(gc, "topK")), 20);
    assert_int_equal(json_integer_value(json_object_get(gc, "seed")), 42);
    assert_string_equal(path_str(gc, "stopSequences.0"), "END");
    assert_string_equal(path_str(gc, "responseMimeType"), "application/json");
    assert_string_equal(path_str(gc, "responseSchema.properties.answer.type"), "STRING");
    assert_null(json_object_get(b, "safetySettings"));

    /* streaming and Vertex */
    r.stream = 1;
    tx_target_t v = {.kind = "vertex",
                     .base_url = "https://us-central1-aiplatform.googleapis.com",
                     .upstream_model = "models/gemini-2.5-pro",
                     .settings = kept(&a, "{\"project\":\"my-proj\",\"location\":\"us-central1\"}")};
    encode(&tx_vertex_provider, &r, &v, &a, &http);
    assert_string_equal(http.url, "https://us-central1-aiplatform.googleapis.com/v1/projects/my-proj/locations/"
                                  "us-central1/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse");
    encode(&tx_gemini_provider, &r, &t, &a, &http);
    assert_string_equal(http.url, "https://generativelanguage.googleapis.com/v1beta/models/"
                                  "gemini-2.5-flash:streamGenerateContent?alt=sse");
    tg_arena_free(&a);
}

static void
test_encode_errors(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r;
    init_request(&r);
    tx_part_t tr[] = {{.kind = TX_PART_TOOL_RESULT, .id = "nowhere", .text = "x"}};
    tx_message_t m[] = {{TX_ROLE_TOOL, tr, 1}};
    r.messages = m;
    r.n_messages = 1;
    tx_target_t t = {.kind = "gemini", .base_url = "http://127.0.0.1:1", .upstream_model = "g"};
    tx_http_request_t http;
    tx_error_t err;
    /* a tool result whose call is unknown cannot be named */
    assert_int_equal(tx_gemini_provider.encode_request(&r, &t, &a, &http, &err), -1);
    assert_int_equal(err.kind, TX_ERR_INVALID_REQUEST);
    assert_string_equal(err.code, "invalid_tool_result");
    /* nothing to send */
    r.n_messages = 0;
    assert_int_equal(tx_gemini_provider.encode_request(&r, &t, &a, &http, &err), -1);
    assert_string_equal(err.param, "messages");
    /* a model name that would bend the URL */
    tx_part_t txt[] = {{.kind = TX_PART_TEXT, .text = "hi"}};
    tx_message_t mu[] = {{TX_ROLE_USER, txt, 1}};
    r.messages = mu;
    r.n_messages = 1;
    t.upstream_model = "../x?y";
    assert_int_equal(tx_gemini_provider.encode_request(&r, &t, &a, &http, &err), -1);
    assert_string_equal(err.param, "model");
    /* Vertex without its settings */
    tx_target_t v = {.kind = "vertex", .base_url = "http://127.0.0.1:1", .upstream_model = "g"};
    assert_int_equal(tx_vertex_provider.encode_request(&r, &v, &a, &http, &err), -1);
    assert_int_equal(err.kind, TX_ERR_SERVER);
    /* a schema bomb */
    tg_buf_t deep = {0};
    for (int i = 0; i < 200; i++)
        tg_buf_appends(&deep, "{\"type\":\"array\",\"items\":");
    tg_buf_appends(&deep, "{}");
    for (int i = 0; i < 200; i++)
        tg_buf_appends(&deep, "}");
    tg_buf_append(&deep, "", 1);
    tx_tool_t tool = {.name = "f", .parameters = kept(&a, deep.base)};
    tg_buf_free(&deep);
    r.tools = &tool;
    r.n_tools = 1;
    t.upstream_model = "g";
    assert_int_equal(tx_gemini_provider.encode_request(&r, &t, &a, &http, &err), -1);
    assert_string_equal(err.code, "invalid_schema");
    tg_arena_free(&a);
}

static void
test_schema_sanitise(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    /* pydantic-style: $defs + $ref, Optional via anyOf null, single allOf, const, numeric enum, oneOf */
    json_t *s = kept(&a, "{\"$defs\":{\"Unit\":{\"type\":\"string\",\"enum\":[\"c\",\"f\"]},"
                         "\"Pt\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\","
                         "\"exclusiveMinimum\":0}}}},"
                         "\"type\":\"object\",\"title\":\"Args\",\"properties\":{"
                         "\"unit\":{\"$ref\":\"#/$defs/Unit\",\"description\":\"u\"},"
                         "\"pt\":{\"allOf\":[{\"$ref\":\"#/$defs/Pt\"}],\"description\":\"p\"},"
                         "\"opt\":{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"null\"}],\"default\":null},"
                         "\"kind\":{\"const\":\"fixed\"},"
                         "\"level\":{\"type\":\"integer\",\"enum\":[1,2,3]},"
                         "\"either\":{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]},"
                         "\"when\":{\"type\":\"string\",\"format\":\"date-time\"},"
                         "\"remote\":{\"$ref\":\"https://example.com/s.json\"},"
                         "\"any\":true,"
                         "\"list\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":1}},"
                         "\"required\":[\"unit\"]}");
    json_t *g = tx_gemini_schema_from_json(s);
    assert_non_null(g);
    assert_null(json_object_get(g, "$defs"));
    assert_string_equal(path_str(g, "title"), "Args");
    assert_string_equal(path_str(g, "properties.unit.type"), "STRING");
    assert_string_equal(path_str(g, "properties.unit.enum.0"), "c");
    assert_string_equal(path_str(g, "properties.unit.description"), "u");
    assert_string_equal(path_str(g, "properties.pt.type"), "OBJECT");
    assert_string_equal(path_str(g, "properties.pt.description"), "p");
    assert_null(path_get(g, "properties.pt.properties.x.exclusiveMinimum"));
    assert_string_equal(path_str(g, "properties.opt.type"), "INTEGER");
    assert_true(json_is_true(path_get(g, "properties.opt.nullable")));
    assert_null(path_get(g, "properties.opt.default"));
    assert_string_equal(path_str(g, "properties.kind.enum.0"), "fixed");
    assert_string_equal(path_str(g, "properties.kind.type"), "STRING");
    assert_string_equal(path_str(g, "properties.level.type"), "INTEGER");
    assert_null(path_get(g, "properties.level.enum"));
    assert_string_equal(path_str(g, "properties.either.anyOf.1.type"), "INTEGER");
    assert_string_equal(path_str(g, "properties.when.format"), "date-time");
    assert_int_equal(json_object_size(path_get(g, "properties.remote")), 0);
    assert_int_equal(json_object_size(path_get(g, "properties.any")), 0);
    assert_string_equal(path_str(g, "properties.list.items.type"), "STRING");
    assert_int_equal(json_integer_value(path_get(g, "properties.list.minItems")), 1);
    json_decref(g);

    /* a self-referencing schema is cut off, not followed forever */
    json_t *cyc = kept(&a, "{\"$defs\":{\"N\":{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/N\"},"
                           "\"b\":{\"$ref\":\"#/$defs/N\"}}}},\"$ref\":\"#/$defs/N\"}");
    assert_null(tx_gemini_schema_from_json(cyc));
    assert_null(tx_gemini_schema_from_json(kept(&a, "\"x\"")));

    /* and back: Gemini's spelling to JSON Schema */
    json_t *gs = kept(&a, "{\"type\":\"OBJECT\",\"properties\":{\"a\":{\"type\":\"ARRAY\",\"items\":{\"type\":"
                          "\"STRING\",\"nullable\":true}},\"b\":{\"anyOf\":[{\"type\":\"NUMBER\"}]}},"
                          "\"propertyOrdering\":[\"a\",\"b\"]}");
    json_t *js = tx_gemini_schema_to_json(gs);
    assert_string_equal(path_str(js, "type"), "object");
    assert_string_equal(path_str(js, "properties.a.items.type.1"), "null");
    assert_string_equal(path_str(js, "properties.b.anyOf.0.type"), "number");
    assert_null(json_object_get(js, "propertyOrdering"));
    json_decref(js);
    tg_arena_free(&a);
}

static void
test_encode_embed_count(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r;
    init_request(&r);
    r.op = TX_OP_EMBED;
    const char *in1[] = {"hello"};
    r.inputs = in1;
    r.n_inputs = 1;
    r.task_type = "search_query";
    r.dimensions = 8;
    tx_target_t t = {.kind = "gemini", .base_url = "http://127.0.0.1:9", .upstream_model = "text-embedding-004"};
    tx_http_request_t http;
    json_t *b = encode(&tx_gemini_provider, &r, &t, &a, &http);
    assert_string_equal(http.url, "http://127.0.0.1:9/v1beta/models/text-embedding-004:embedContent");
    assert_string_equal(path_str(b, "content.parts.0.text"), "hello");
    assert_string_equal(path_str(b, "taskType"), "RETRIEVAL_QUERY");
    assert_int_equal(json_integer_value(path_get(b, "outputDimensionality")), 8);

    const char *in2[] = {"a", "b"};
    r.inputs = in2;
    r.n_inputs = 2;
    r.task_type = "not-a-task";
    b = encode(&tx_gemini_provider, &r, &t, &a, &http);
    assert_string_equal(http.url, "http://127.0.0.1:9/v1beta/models/text-embedding-004:batchEmbedContents");
    assert_string_equal(path_str(b, "requests.1.model"), "models/text-embedding-004");
    assert_string_equal(path_str(b, "requests.1.content.parts.0.text"), "b");
    assert_null(path_get(b, "requests.0.taskType"));

    tx_target_t v = {.kind = "vertex",
                     .base_url = "http://127.0.0.1:9",
                     .upstream_model = "text-embedding-005",
                     .settings = kept(&a, "{\"project\":\"p\",\"location\":\"europe-west4\"}")};
    b = encode(&tx_vertex_provider, &r, &v, &a, &http);
    assert_string_equal(http.url, "http://127.0.0.1:9/v1/projects/p/locations/europe-west4/publishers/google/models/"
                                  "text-embedding-005:predict");
    assert_string_equal(path_str(b, "instances.1.content"), "b");
    assert_int_equal(json_integer_value(path_get(b, "parameters.outputDimensionality")), 8);

    /* countTokens: plain contents, or a full request when a system prompt must count */
    tx_part_t txt[] = {{.kind = TX_PART_TEXT, .text = "hi"}};
    tx_message_t m[] = {{TX_ROLE_USER, txt, 1}};
    tx_request_t c;
    init_request(&c);
    c.op = TX_OP_COUNT_TOKENS;
    c.messages = m;
    c.n_messages = 1;
    c.max_tokens = 5;
    t.upstream_model = "gemini-2.5-flash";
    b = encode(&tx_gemini_provider, &c, &t, &a, &http);
    assert_string_equal(http.url, "http://127.0.0.1:9/v1beta/models/gemini-2.5-flash:countTokens");
    assert_string_equal(path_str(b, "contents.0.parts.0.text"), "hi");
    assert_null(json_object_get(b, "generationConfig"));
    c.system = "sys";
    b = encode(&tx_gemini_provider, &c, &t, &a, &http);
    assert_string_equal(path_str(b, "generateContentRequest.model"), "models/gemini-2.5-flash");
    assert_string_equal(path_str(b, "generateContentRequest.systemInstruction.parts.0.text"), "sys");
    b = encode(&tx_vertex_provider, &c, &v, &a, &http);
    assert_string_equal(path_str(b, "systemInstruction.parts.0.text"), "sys");
    tg_arena_free(&a);
}

/* A Gemini client through a Gemini upstream keeps what the neutral form does not model. */
static void
test_gemini_round_trip(void **state)
{
    static const char body[] =
        "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hi\"}]},"
        "{\"role\":\"model\",\"parts\":[{\"text\":\"t\",\"thought\":true,\"thoughtSignature\":\"gs\"},"
        "{\"functionCall\":{\"name\":\"f\",\"args\":{}},\"thoughtSignature\":\"fs\"}]},"
        "{\"role\":\"user\",\"parts\":[{\"functionResponse\":{\"name\":\"f\",\"response\":{\"ok\":true}}}]}],"
        "\"tools\":[{\"functionDeclarations\":[{\"name\":\"f\"}]},{\"googleSearch\":{}}],"
        "\"generationConfig\":{\"temperature\":1,\"thinkingConfig\":{\"includeThoughts\":true}},"
        "\"safetySettings\":[{\"category\":\"HARM_CATEGORY_HARASSMENT\",\"threshold\":\"OFF\"}],"
        "\"cachedContent\":\"cachedContents/abc\"}";
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r;
    tx_error_t err;
    assert_int_equal(tx_gemini_dialect.decode_request(TX_OP_CHAT, body, strlen(body), &a, &r, &err), 0);
    r.model = "gemini-2.5-flash";
    tx_target_t t = {.kind = "gemini", .base_url = "http://127.0.0.1:9", .upstream_model = "gemini-2.5-pro"};
    tx_http_request_t http;
    json_t *b = encode(&tx_gemini_provider, &r, &t, &a, &http);
    assert_string_equal(path_str(b, "contents.1.parts.0.thoughtSignature"), "gs");
    assert_true(json_is_true(path_get(b, "contents.1.parts.0.thought")));
    assert_string_equal(path_str(b, "contents.1.parts.1.thoughtSignature"), "fs");
    assert_true(json_is_true(path_get(b, "contents.2.parts.0.functionResponse.response.ok")));
    assert_non_null(path_get(b, "tools.1.googleSearch"));
    assert_true(json_is_true(path_get(b, "generationConfig.thinkingConfig.includeThoughts")));
    assert_string_equal(path_str(b, "safetySettings.0.threshold"), "OFF");
    assert_string_equal(path_str(b, "cachedContent"), "cachedContents/abc");
    assert_null(json_object_get(b, "model"));
    tg_arena_free(&a);
}

/* ---------------------------------------------------------------- responses */

static const char RESPONSE[] =
    "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"plan\",\"thought\":true},"
    "{\"text\":\"It is sunny.\",\"thoughtSignature\":\"c2ln\"},"
    "{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"location\":\"Paris\"}}},"
    "{\"functionCall\":{\"id\":\"given\",\"name\":\"get_time\"}},"
    "{\"executableCode\":{\"code\":\"1\"}}],\"role\":\"model\"},"
    "\"finishReason\":\"STOP\",\"index\":0,\"safetyRatings\":[]}],"
    "\"usageMetadata\":{\"promptTokenCount\":120,\"candidatesTokenCount\":30,\"totalTokenCount\":170,"
    "\"cachedContentTokenCount\":100,\"thoughtsTokenCount\":20,\"promptTokensDetails\":[{\"modality\":\"TEXT\","
    "\"tokenCount\":120}]},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abcXYZ\"}";

static void
test_decode_response(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r;
    init_request(&r);
    tx_response_t resp;
    tx_error_t err;
    assert_int_equal(tx_gemini_provider.decode_response(&r, RESPONSE, strlen(RESPONSE), &a, &resp, &err), 0);
    assert_string_equal(resp.id, "abcXYZ");
    assert_string_equal(resp.model, "gemini-2.5-flash");
    assert_int_equal(resp.n_parts, 4);
    assert_int_equal(resp.parts[0].kind, TX_PART_THINKING);
    assert_int_equal(resp.parts[1].kind, TX_PART_TEXT);
    assert_string_equal(resp.parts[1].signature, "c2ln");
    assert_int_equal(resp.parts[2].kind, TX_PART_TOOL_CALL);
    assert_string_equal(resp.parts[2].id, "call_abcXYZ_0");
    assert_string_equal(json_string_value(json_object_get(resp.parts[2].args, "location")), "Paris");
    assert_string_equal(resp.parts[3].id, "given");
    assert_true(json_is_object(resp.parts[3].args));
    assert_int_equal(resp.stop, TX_STOP_TOOL_USE); /* STOP + functionCall parts */
    assert_string_equal(resp.raw_stop, "STOP");
    assert_true(resp.usage.known);
    assert_int_equal(resp.usage.input, 120); /* includes the 100 cached */
    assert_int_equal(resp.usage.cache_read, 100);
    assert_int_equal(resp.usage.cache_write, 0);
    assert_int_equal(resp.usage.output, 50);
    assert_int_equal(resp.usage.reasoning, 20);

    static const struct {
        const char *body;
        tx_stop_t stop;
        size_t parts;
    } cases[] = {
        {"{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]},\"finishReason\":\"MAX_TOKENS\"}]}",
         TX_STOP_MAX_TOKENS, 1},
        {"{\"candidates\":[{\"finishReason\":\"SAFETY\"}]}", TX_STOP_CONTENT_FILTER, 0},
        {"{\"candidates\":[{\"finishReason\":\"RECITATION\"}]}", TX_STOP_CONTENT_FILTER, 0},
        {"{\"candidates\":[{\"finishReason\":\"MALFORMED_FUNCTION_CALL\"}]}", TX_STOP_ERROR, 0},
        {"{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}", TX_STOP_END, 1},
        {"{\"promptFeedback\":{\"blockReason\":\"SAFETY\"},\"usageMetadata\":{\"promptTokenCount\":9}}",
         TX_STOP_CONTENT_FILTER, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(tx_gemini_provider.decode_response(&r, cases[i].body, strlen(cases[i].body), &a, &resp, &err),
                         0);
        assert_int_equal(resp.stop, cases[i].stop);
        assert_int_equal(resp.n_parts, cases[i].parts);
    }
    assert_int_equal(resp.usage.input, 9);

    static const char *const bad[] = {"", "nope", "[]", "{}",
                                      "{\"candidates\":[{\"content\":{\"parts\":"
                                      "[{\"functionCall\":{\"args\":{}}}]}}]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tx_gemini_provider.decode_response(&r, bad[i], strlen(bad[i]), &a, &resp, &err), -1);
        assert_int_equal(err.kind, TX_ERR_UPSTREAM);
    }
    tg_arena_free(&a);
}

static void
test_decode_embed_count(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r;
    init_request(&r);
    r.op = TX_OP_EMBED;
    tx_response_t resp;
    tx_error_t err;
    const char *one = "{\"embedding\":{\"values\":[0.5,-0.25,1]}}";
    assert_int_equal(tx_gemini_provider.decode_response(&r, one, strlen(one), &a, &resp, &err), 0);
    assert_int_equal(resp.n_embeddings, 1);
    assert_int_equal(resp.embeddings[0].n, 3);
    assert_true(resp.embeddings[0].values[1] == -0.25f);
    assert_false(resp.usage.known);
    const char *batch = "{\"embeddings\":[{\"values\":[1]},{\"values\":[2,3]}]}";
    assert_int_equal(tx_gemini_provider.decode_response(&r, batch, strlen(batch), &a, &resp, &err), 0);
    assert_int_equal(resp.n_embeddings, 2);
    assert_int_equal(resp.embeddings[1].n, 2);
    const char *pred =
        "{\"predictions\":[{\"embeddings\":{\"values\":[1,2],\"statistics\":{\"token_count\":4,"
        "\"truncated\":false}}},{\"embeddings\":{\"values\":[3,4],\"statistics\":{\"token_count\":6}}}]}";
    assert_int_equal(tx_vertex_provider.decode_response(&r, pred, strlen(pred), &a, &resp, &err), 0);
    assert_int_equal(resp.n_embeddings, 2);
    assert_true(resp.embeddings[1].values[0] == 3.0f);
    assert_true(resp.usage.known);
    assert_int_equal(resp.usage.input, 10);
    const char *bad = "{\"embedding\":{\"values\":[\"x\"]}}";
    assert_int_equal(tx_gemini_provider.decode_response(&r, bad, strlen(bad), &a, &resp, &err), -1);
    assert_int_equal(tx_gemini_provider.decode_response(&r, "{}", 2, &a, &resp, &err), -1);

    r.op = TX_OP_COUNT_TOKENS;
    const char *ct = "{\"totalTokens\":31,\"promptTokensDetails\":[]}";
    assert_int_equal(tx_gemini_provider.decode_response(&r, ct, strlen(ct), &a, &resp, &err), 0);
    assert_int_equal(resp.input_tokens, 31);
    assert_int_equal(tx_gemini_provider.decode_response(&r, "{}", 2, &a, &resp, &err), -1);
    tg_arena_free(&a);
}

static void
test_decode_error(void **state)
{
    static const struct {
        int status;
        const char *body;
        tx_error_kind_t kind;
        int want_status;
        const char *code, *message_part;
    } cases[] = {
        {400,
         "{\"error\":{\"code\":400,\"message\":\"API key not valid. Please pass a valid API key.\",\"status\":"
         "\"INVALID_ARGUMENT\",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":"
         "\"API_KEY_INVALID\",\"domain\":\"googleapis.com\"}]}}",
         TX_ERR_AUTHENTICATION, 401, "api_key_invalid", "API key not valid"},
        {400,
         "{\"error\":{\"code\":400,\"message\":\"The input token count (1200000) exceeds the maximum number of "
         "tokens allowed (1048576).\",\"status\":\"INVALID_ARGUMENT\"}}",
         TX_ERR_INVALID_REQUEST, 400, "context_length_exceeded", "exceeds"},
        {400,
         "{\"error\":{\"code\":400,\"message\":\"User location is not supported.\",\"status\":"
         "\"FAILED_PRECONDITION\"}}",
         TX_ERR_INVALID_REQUEST, 400, "failed_precondition", "location"},
        {401,
         "{\"error\":{\"code\":401,\"message\":\"Request had invalid authentication credentials.\",\"status\":"
         "\"UNAUTHENTICATED\"}}",
         TX_ERR_AUTHENTICATION, 401, "unauthenticated", "credentials"},
        {403, "{\"error\":{\"code\":403,\"message\":\"Permission denied\",\"status\":\"PERMISSION_DENIED\"}}",
         TX_ERR_PERMISSION, 403, "permission_denied", "Permission"},
        {404, "{\"error\":{\"code\":404,\"message\":\"models/x is not found\",\"status\":\"NOT_FOUND\"}}",
         TX_ERR_NOT_FOUND, 404, "not_found", "not found"},
        {429,
         "{\"error\":{\"code\":429,\"message\":\"Resource has been exhausted\",\"status\":\"RESOURCE_EXHAUSTED\","
         "\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"37s\"}]}}",
         TX_ERR_RATE_LIMIT, 429, "resource_exhausted", "exhausted"},
        {500, "{\"error\":{\"code\":500,\"message\":\"An internal error has occurred.\",\"status\":\"INTERNAL\"}}",
         TX_ERR_SERVER, 500, "internal", "internal"},
        {503, "{\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}",
         TX_ERR_OVERLOADED, 503, "unavailable", "overloaded"},
        {504, "{\"error\":{\"code\":504,\"message\":\"Deadline\",\"status\":\"DEADLINE_EXCEEDED\"}}", TX_ERR_TIMEOUT,
         504, "deadline_exceeded", "Deadline"},
        {502, "<html><body>Bad Gateway</body></html>", TX_ERR_UPSTREAM, 502, "", "Bad Gateway"},
        {500, "[{\"error\":{\"code\":500,\"message\":\"in an array\",\"status\":\"INTERNAL\"}}]", TX_ERR_SERVER, 500,
         "internal", "in an array"},
        {429, "", TX_ERR_RATE_LIMIT, 429, "", "429"},
        {503, "{\"error\":{}}", TX_ERR_OVERLOADED, 503, "", "503"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tx_error_t e;
        tx_vertex_provider.decode_error(cases[i].status, cases[i].body, strlen(cases[i].body), &e);
        assert_int_equal(e.kind, cases[i].kind);
        assert_int_equal(tx_error_status(&e), cases[i].want_status);
        assert_string_equal(e.code, cases[i].code);
        if (strstr(e.message, cases[i].message_part) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, e.message, cases[i].message_part);
    }
}

/* ---------------------------------------------------------------- streams */

struct rec {
    tx_event_t ev[64];
    char text[64][256];
    char id[64][160];
    char err_msg[512];
    tx_error_kind_t err_kind;
    size_t n;
};

static int
on_event(void *ctx, const tx_event_t *ev)
{
    struct rec *r = ctx;
    assert_true(r->n < 64);
    r->ev[r->n] = *ev;
    snprintf(r->text[r->n], sizeof(r->text[0]), "%.*s", (int)ev->text_len, ev->text ? ev->text : "");
    snprintf(r->id[r->n], sizeof(r->id[0]), "%s", ev->id ? ev->id : "");
    if (ev->kind == TX_EV_ERROR) {
        snprintf(r->err_msg, sizeof(r->err_msg), "%s", ev->error->message);
        r->err_kind = ev->error->kind;
    }
    r->n++;
    return 0;
}

/* Feeds each "data: ..." line of a recorded SSE stream as a frame. */
static int
feed(const tx_provider_ops_t *p, const char *stream, struct rec *rec, tx_error_t *err)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r;
    init_request(&r);
    r.stream = 1;
    tx_stream_state_t *st = calloc(1, p->stream_state_size);
    int rc = 0;
    for (const char *line = stream; rc == 0 && *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        if (n > 6 && memcmp(line, "data: ", 6) == 0) {
            tx_frame_t f = {.data = line + 6, .data_len = n - 6 - (line[n - 1] == '\r')};
            rc = p->stream_frame(st, &r, &f, &a, on_event, rec, err);
        }
        line += n + (end != NULL);
    }
    free(st);
    tg_arena_free(&a);
    return rc;
}

static void
test_stream(void **state)
{
    /* as recorded from streamGenerateContent?alt=sse, CRLF and all */
    static const char stream[] =
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Let me\"}],\"role\":\"model\"},\"index\":0}],"
        "\"usageMetadata\":{\"promptTokenCount\":50,\"candidatesTokenCount\":2,\"totalTokenCount\":52},"
        "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"rid1\"}\r\n\r\n"
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\" check.\"}],\"role\":\"model\"},\"index\":0}],"
        "\"usageMetadata\":{\"promptTokenCount\":50,\"candidatesTokenCount\":4,\"totalTokenCount\":54},"
        "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"rid1\"}\r\n\r\n"
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"get_weather\",\"args\":"
        "{\"location\":\"Paris\"}},\"thoughtSignature\":\"c2ln\"},{\"functionCall\":{\"name\":\"get_time\","
        "\"args\":{}}}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],"
        "\"usageMetadata\":{\"promptTokenCount\":50,\"candidatesTokenCount\":20,\"totalTokenCount\":78,"
        "\"cachedContentTokenCount\":32,\"thoughtsTokenCount\":8},\"modelVersion\":\"gemini-2.5-flash\","
        "\"responseId\":\"rid1\"}\r\n\r\n"
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"ignored after the end\"}]}}]}\r\n\r\n";
    struct rec rec = {0};
    tx_error_t err;
    assert_int_equal(feed(&tx_gemini_provider, stream, &rec, &err), 0);
    static const tx_event_kind_t want[] = {
        TX_EV_START,     TX_EV_TEXT,       TX_EV_USAGE,     TX_EV_TEXT,      TX_EV_USAGE,
        TX_EV_BLOCK_END, TX_EV_TOOL_START, TX_EV_TOOL_ARGS, TX_EV_BLOCK_END, TX_EV_TOOL_START,
        TX_EV_TOOL_ARGS, TX_EV_BLOCK_END,  TX_EV_USAGE,     TX_EV_STOP,      TX_EV_END,
    };
    assert_int_equal(rec.n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < rec.n; i++)
        if (rec.ev[i].kind != want[i])
            fail_msg("event %zu is %d, want %d", i, rec.ev[i].kind, want[i]);
    assert_string_equal(rec.id[0], "rid1");
    assert_string_equal(rec.text[1], "Let me");
    assert_int_equal(rec.ev[1].index, 0);
    assert_string_equal(rec.text[3], " check.");
    assert_int_equal(rec.ev[5].index, 0);
    assert_int_equal(rec.ev[6].index, 1);
    assert_string_equal(rec.id[6], "call_rid1_0");
    assert_string_equal(rec.text[7], "{\"location\":\"Paris\"}");
    assert_int_equal(rec.ev[9].index, 2);
    assert_string_equal(rec.id[9], "call_rid1_1");
    assert_string_equal(rec.text[10], "{}");
    assert_int_equal(rec.ev[12].usage.input, 50);
    assert_int_equal(rec.ev[12].usage.output, 28);
    assert_int_equal(rec.ev[12].usage.cache_read, 32);
    assert_int_equal(rec.ev[13].stop, TX_STOP_TOOL_USE);
}

static void
test_stream_error_and_block(void **state)
{
    static const char stream[] =
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"}}],"
        "\"responseId\":\"r\"}\n\n"
        "data: {\"error\":{\"code\":500,\"message\":\"mock mid-stream failure\",\"status\":\"INTERNAL\"}}\n\n";
    struct rec rec = {0};
    tx_error_t err;
    assert_int_equal(feed(&tx_gemini_provider, stream, &rec, &err), 0);
    assert_int_equal(rec.n, 3);
    assert_int_equal(rec.ev[2].kind, TX_EV_ERROR);
    assert_int_equal(rec.err_kind, TX_ERR_SERVER);
    assert_string_equal(rec.err_msg, "mock mid-stream failure");

    static const char blocked[] =
        "data: {\"promptFeedback\":{\"blockReason\":\"PROHIBITED_CONTENT\"},\"usageMetadata\":"
        "{\"promptTokenCount\":7,\"totalTokenCount\":7}}\n\n";
    memset(&rec, 0, sizeof(rec));
    assert_int_equal(feed(&tx_vertex_provider, blocked, &rec, &err), 0);
    assert_int_equal(rec.n, 4);
    assert_int_equal(rec.ev[1].kind, TX_EV_USAGE);
    assert_int_equal(rec.ev[2].kind, TX_EV_STOP);
    assert_int_equal(rec.ev[2].stop, TX_STOP_CONTENT_FILTER);
    assert_int_equal(rec.ev[3].kind, TX_EV_END);

    static const char max_tokens[] =
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"think\",\"thought\":true}]}}]}\n\n"
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"},{\"text\":\"\"}]},"
        "\"finishReason\":\"MAX_TOKENS\"}]}\n\n";
    memset(&rec, 0, sizeof(rec));
    assert_int_equal(feed(&tx_gemini_provider, max_tokens, &rec, &err), 0);
    static const tx_event_kind_t want[] = {TX_EV_START,     TX_EV_THINKING, TX_EV_BLOCK_END, TX_EV_TEXT,
                                           TX_EV_BLOCK_END, TX_EV_STOP,     TX_EV_END};
    assert_int_equal(rec.n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < rec.n; i++)
        assert_int_equal(rec.ev[i].kind, want[i]);
    assert_int_equal(rec.ev[3].index, 1);
    assert_int_equal(rec.ev[5].stop, TX_STOP_MAX_TOKENS);

    /* unreadable frames are the stream's failure */
    memset(&rec, 0, sizeof(rec));
    assert_int_equal(feed(&tx_gemini_provider, "data: {nope\n\n", &rec, &err), -1);
    assert_int_equal(err.kind, TX_ERR_UPSTREAM);
    assert_int_equal(feed(&tx_gemini_provider, "data: 7\n\n", &rec, &err), -1);
    assert_int_equal(feed(&tx_gemini_provider,
                          "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{}}]}}]}\n\n", &rec, &err),
                     -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_chat),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_schema_sanitise),
        cmocka_unit_test(test_encode_embed_count),
        cmocka_unit_test(test_gemini_round_trip),
        cmocka_unit_test(test_decode_response),
        cmocka_unit_test(test_decode_embed_count),
        cmocka_unit_test(test_decode_error),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_stream_error_and_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
