/* Unit tests for the Bedrock Converse adapter: request encoding (system, turns, tools, tool results,
 * images, stop sequences, sampling, JSON output, embeddings, token counts), response decoding, the
 * ConverseStream decoder on a recorded stream (tests/golden/bedrock/stream.hex) and on in-stream
 * exceptions, and error decoding for each status class. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "tollgate/crypto.h"
#include "translate/bedrock/eventstream.h"
#include "translate/tx.h"

extern const tx_provider_ops_t tx_bedrock_provider;
#define P (&tx_bedrock_provider)

static tx_request_t
new_request(void)
{
    tx_request_t r = {.op = TX_OP_CHAT,
                      .model = "claude",
                      .max_tokens = -1,
                      .top_k = -1,
                      .dimensions = -1,
                      .parallel_tool_calls = -1};
    return r;
}

static const tx_target_t target = {
    .kind = "bedrock",
    .base_url = "https://bedrock-runtime.us-east-1.amazonaws.com",
    .upstream_model = "us.anthropic.claude-3-5-haiku-20241022-v1:0",
};

/* Encodes r and returns the body as JSON (kept by the arena). */
static json_t *
encode(const tx_request_t *r, tg_arena_t *a, tx_http_request_t *h)
{
    tx_error_t err = {0};
    int rc = P->encode_request(r, &target, a, h, &err);
    if (rc != 0)
        fail_msg("encode_request: %s", err.message);
    json_t *v = json_loadb(h->body, h->body_len, 0, NULL);
    assert_non_null(v);
    tx_arena_keep(a, v);
    return v;
}

static void
assert_json(json_t *got, const char *want_text)
{
    json_t *want = json_loads(want_text, 0, NULL);
    assert_non_null(want);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS), *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
        print_error("got  %s\nwant %s\n", g, w);
        free(g);
        free(w);
        fail();
    }
    json_decref(want);
}

static void
test_encode_chat(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    json_t *args = json_loads("{\"location\":\"Paris\"}", 0, NULL),
           *schema = json_loads("{\"type\":\"object\",\"properties\":{"
                                "\"location\":{\"type\":\"string\"}}}",
                                0, NULL);
    tx_arena_keep(&a, args);
    tx_arena_keep(&a, schema);
    tx_part_t u1[] = {{.kind = TX_PART_TEXT, .text = "Weather in Paris? Here is a map."},
                      {.kind = TX_PART_IMAGE, .media_type = "image/png", .data = "iVBORw0KGgo="}};
    tx_part_t a1[] = {{.kind = TX_PART_TEXT, .text = ""},
                      {.kind = TX_PART_TOOL_CALL, .id = "call_1", .name = "get_weather", .args = args}};
    tx_part_t t1[] = {{.kind = TX_PART_TOOL_RESULT, .id = "call_1", .text = "{\"temperature\":18}"}};
    tx_part_t u2[] = {{.kind = TX_PART_TEXT, .text = "And in Tokyo?"}};
    tx_message_t msgs[] = {
        {TX_ROLE_USER, u1, 2}, {TX_ROLE_ASSISTANT, a1, 2}, {TX_ROLE_TOOL, t1, 1}, {TX_ROLE_USER, u2, 1}};
    tx_tool_t tools[] = {{.name = "get_weather", .description = "Current weather", .parameters = schema}};
    const char *stops[] = {"END"};
    tx_request_t r = new_request();
    r.system = "You are a weather assistant.";
    r.messages = msgs;
    r.n_messages = 4;
    r.tools = tools;
    r.n_tools = 1;
    r.tool_choice = TX_TOOL_CHOICE_AUTO;
    r.max_tokens = 256;
    r.temperature = 0.5, r.has_temperature = 1;
    r.top_p = 0.25, r.has_top_p = 1;
    r.top_k = 40;
    r.stop = stops;
    r.n_stop = 1;
    r.seed = 7, r.has_seed = 1; /* Converse has none: dropped */
    r.user = "user-42";
    tx_http_request_t h;
    json_t *body = encode(&r, &a, &h);
    assert_string_equal(h.url, "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
                               "us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse");
    assert_int_equal(h.n_headers, 0);
    /* the tool turn and the next user turn merge into one user message; the blank text is dropped */
    assert_json(
        body, "{\"system\":[{\"text\":\"You are a weather assistant.\"}],"
              "\"messages\":["
              "{\"role\":\"user\",\"content\":[{\"text\":\"Weather in Paris? Here is a map.\"},"
              "{\"image\":{\"format\":\"png\",\"source\":{\"bytes\":\"iVBORw0KGgo=\"}}}]},"
              "{\"role\":\"assistant\",\"content\":[{\"toolUse\":{\"toolUseId\":\"call_1\",\"name\":\"get_weather\","
              "\"input\":{\"location\":\"Paris\"}}}]},"
              "{\"role\":\"user\",\"content\":[{\"toolResult\":{\"toolUseId\":\"call_1\",\"content\":[{\"text\":"
              "\"{\\\"temperature\\\":18}\"}]}},{\"text\":\"And in Tokyo?\"}]}],"
              "\"toolConfig\":{\"tools\":[{\"toolSpec\":{\"name\":\"get_weather\",\"description\":\"Current weather\","
              "\"inputSchema\":{\"json\":{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\"}}}}}}],"
              "\"toolChoice\":{\"auto\":{}}},"
              "\"inferenceConfig\":{\"maxTokens\":256,\"temperature\":0.5,\"topP\":0.25,\"stopSequences\":[\"END\"]},"
              "\"additionalModelRequestFields\":{\"top_k\":40},"
              "\"requestMetadata\":{\"user\":\"user-42\"}}");

    /* streaming goes to converse-stream; a tool error carries status */
    r.stream = 1;
    t1[0].is_error = 1;
    r.tool_choice = TX_TOOL_CHOICE_REQUIRED;
    body = encode(&r, &a, &h);
    assert_non_null(strstr(h.url, "/converse-stream"));
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(
                json_array_get(json_object_get(json_array_get(json_object_get(body, "messages"), 2), "content"), 0),
                "toolResult"),
            "status")),
        "error");
    assert_json(json_object_get(json_object_get(body, "toolConfig"), "toolChoice"), "{\"any\":{}}");
    r.tool_choice = TX_TOOL_CHOICE_NAMED;
    r.tool_choice_name = "get_weather";
    body = encode(&r, &a, &h);
    assert_json(json_object_get(json_object_get(body, "toolConfig"), "toolChoice"),
                "{\"tool\":{\"name\":\"get_weather\"}}");
    r.tool_choice_name = "nope";
    tx_error_t err = {0};
    assert_int_equal(P->encode_request(&r, &target, &a, &h, &err), -1);
    assert_string_equal(err.param, "tool_choice");

    /* "none" cannot be said: with tool blocks in the history the tools stay (Converse needs them) */
    r.tool_choice = TX_TOOL_CHOICE_NONE;
    body = encode(&r, &a, &h);
    assert_non_null(json_object_get(body, "toolConfig"));
    assert_null(json_object_get(json_object_get(body, "toolConfig"), "toolChoice"));
    r.messages = &msgs[3];
    r.n_messages = 1;
    body = encode(&r, &a, &h);
    assert_null(json_object_get(body, "toolConfig"));

    /* a history naming a tool the request does not declare gets a minimal spec for it */
    r.messages = msgs;
    r.n_messages = 4;
    r.n_tools = 0;
    r.tool_choice = TX_TOOL_CHOICE_UNSET;
    body = encode(&r, &a, &h);
    assert_json(json_object_get(body, "toolConfig"),
                "{\"tools\":[{\"toolSpec\":{\"name\":\"get_weather\",\"inputSchema\":{\"json\":{\"type\":\"object\","
                "\"properties\":{}}}}}]}");
    tg_arena_free(&a);
}

static void
test_encode_rejects(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_part_t img[] = {{.kind = TX_PART_IMAGE, .url = "https://example.com/cat.png"}};
    tx_message_t m[] = {{TX_ROLE_USER, img, 1}};
    tx_request_t r = new_request();
    r.messages = m;
    r.n_messages = 1;
    tx_http_request_t h;
    tx_error_t err = {0};
    assert_int_equal(P->encode_request(&r, &target, &a, &h, &err), -1);
    assert_int_equal(err.kind, TX_ERR_INVALID_REQUEST);
    assert_string_equal(err.code, "unsupported_image_url");

    img[0] = (tx_part_t){.kind = TX_PART_IMAGE, .media_type = "image/tiff", .data = "AAAA"};
    assert_int_equal(P->encode_request(&r, &target, &a, &h, &err), -1);
    assert_string_equal(err.code, "unsupported_image_format");

    /* a data URL is split here too; an s3:// URI is passed by reference */
    img[0] = (tx_part_t){.kind = TX_PART_IMAGE, .url = "data:image/jpeg;base64,/9j/4AAQ"};
    json_t *body = encode(&r, &a, &h);
    assert_json(json_array_get(json_object_get(json_array_get(json_object_get(body, "messages"), 0), "content"), 0),
                "{\"image\":{\"format\":\"jpeg\",\"source\":{\"bytes\":\"/9j/4AAQ\"}}}");
    img[0] = (tx_part_t){.kind = TX_PART_IMAGE, .url = "s3://bucket/cat.webp"};
    body = encode(&r, &a, &h);
    assert_json(json_array_get(json_object_get(json_array_get(json_object_get(body, "messages"), 0), "content"), 0),
                "{\"image\":{\"format\":\"webp\",\"source\":{\"s3Location\":{\"uri\":\"s3://bucket/cat.webp\"}}}}");

    tx_tool_t bad[] = {{.name = "has space"}};
    img[0] = (tx_part_t){.kind = TX_PART_TEXT, .text = "hi"};
    r.tools = bad;
    r.n_tools = 1;
    assert_int_equal(P->encode_request(&r, &target, &a, &h, &err), -1);
    assert_string_equal(err.param, "tools");
    tg_arena_free(&a);
}

static void
test_json_output(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    json_t *schema = json_loads("{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}", 0, NULL);
    tx_arena_keep(&a, schema);
    tx_part_t u[] = {{.kind = TX_PART_TEXT, .text = "Name a city."}};
    tx_message_t m[] = {{TX_ROLE_USER, u, 1}};
    tx_request_t r = new_request();
    r.messages = m;
    r.n_messages = 1;
    r.format = TX_FORMAT_JSON_SCHEMA;
    r.format_schema = schema;
    r.format_name = "city_answer";
    tx_http_request_t h;
    json_t *body = encode(&r, &a, &h);
    assert_json(json_object_get(body, "toolConfig"),
                "{\"tools\":[{\"toolSpec\":{\"name\":\"city_answer\",\"description\":\"Respond by calling this tool "
                "with the answer.\",\"inputSchema\":{\"json\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
                "\"string\"}}}}}}],\"toolChoice\":{\"tool\":{\"name\":\"city_answer\"}}}");

    /* the forced call comes back as the answer's text, and the stop as a natural end */
    const char *resp = "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"toolUse\":{\"toolUseId\":"
                       "\"t1\",\"name\":\"city_answer\",\"input\":{\"city\":\"Lyon\"}}}]}},\"stopReason\":\"tool_use\","
                       "\"usage\":{\"inputTokens\":10,\"outputTokens\":5,\"totalTokens\":15}}";
    tx_response_t out;
    tx_error_t err = {0};
    assert_int_equal(P->decode_response(&r, resp, strlen(resp), &a, &out, &err), 0);
    assert_int_equal(out.n_parts, 1);
    assert_int_equal(out.parts[0].kind, TX_PART_TEXT);
    assert_string_equal(out.parts[0].text, "{\"city\":\"Lyon\"}");
    assert_int_equal(out.stop, TX_STOP_END);

    /* with tools of its own, the wish goes to the system prompt */
    tx_tool_t tools[] = {{.name = "lookup"}};
    r.tools = tools;
    r.n_tools = 1;
    r.format = TX_FORMAT_JSON_OBJECT;
    body = encode(&r, &a, &h);
    assert_json(json_object_get(body, "system"), "[{\"text\":\"Respond only with a JSON object.\"}]");
    assert_null(json_object_get(json_object_get(body, "toolConfig"), "toolChoice"));
    tg_arena_free(&a);
}

static void
test_encode_embed_and_count(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    const char *inputs[] = {"hello world", "second"};
    tx_request_t r = new_request();
    r.op = TX_OP_EMBED;
    r.inputs = inputs;
    r.n_inputs = 1;
    r.dimensions = 256;
    tx_http_request_t h;
    json_t *body = encode(&r, &a, &h);
    assert_non_null(strstr(h.url, "/invoke"));
    assert_json(body, "{\"inputText\":\"hello world\",\"dimensions\":256}");
    r.n_inputs = 2;
    tx_error_t err = {0};
    assert_int_equal(P->encode_request(&r, &target, &a, &h, &err), -1);
    assert_int_equal(err.kind, TX_ERR_INVALID_REQUEST);
    assert_non_null(strstr(err.message, "one input per request"));

    const char *resp = "{\"embedding\":[0.5,-0.25,1],\"inputTextTokenCount\":3}";
    tx_response_t out;
    r.n_inputs = 1;
    assert_int_equal(P->decode_response(&r, resp, strlen(resp), &a, &out, &err), 0);
    assert_int_equal(out.n_embeddings, 1);
    assert_int_equal(out.embeddings[0].n, 3);
    assert_true(out.embeddings[0].values[1] == -0.25f);
    assert_int_equal(out.usage.input, 3);

    tx_part_t u[] = {{.kind = TX_PART_TEXT, .text = "count me"}};
    tx_message_t m[] = {{TX_ROLE_USER, u, 1}};
    r = new_request();
    r.op = TX_OP_COUNT_TOKENS;
    r.system = "sys";
    r.messages = m;
    r.n_messages = 1;
    body = encode(&r, &a, &h);
    assert_non_null(strstr(h.url, "/count-tokens"));
    assert_json(body, "{\"input\":{\"converse\":{\"system\":[{\"text\":\"sys\"}],\"messages\":[{\"role\":\"user\","
                      "\"content\":[{\"text\":\"count me\"}]}]}}}");
    assert_int_equal(P->decode_response(&r, "{\"inputTokens\":12}", 18, &a, &out, &err), 0);
    assert_int_equal(out.input_tokens, 12);
    tg_arena_free(&a);
}

static char *
read_golden(const char *name, size_t *ret_len)
{
    char path[256];
    snprintf(path, sizeof(path), "tests/golden/bedrock/%s", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    *ret_len = n;
    return buf;
}

static void
test_decode_response(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    size_t len;
    const char *body = read_golden("response.json", &len);
    tx_request_t r = new_request();
    tx_response_t out;
    tx_error_t err = {0};
    assert_int_equal(P->decode_response(&r, body, len, &a, &out, &err), 0);
    assert_int_equal(out.n_parts, 2);
    assert_int_equal(out.parts[0].kind, TX_PART_TEXT);
    assert_string_equal(out.parts[0].text, "I'll check the current weather in Paris for you.");
    assert_int_equal(out.parts[1].kind, TX_PART_TOOL_CALL);
    assert_string_equal(out.parts[1].id, "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
    assert_string_equal(out.parts[1].name, "get_weather");
    assert_string_equal(tx_args_text(&out.parts[1], &a), "{\"location\":\"Paris\",\"unit\":\"celsius\"}");
    assert_int_equal(out.stop, TX_STOP_TOOL_USE);
    assert_string_equal(out.raw_stop, "tool_use");
    /* inputTokens leaves the cache out; neutral input has it in */
    assert_int_equal(out.usage.input, 472 + 2048 + 120);
    assert_int_equal(out.usage.cache_read, 2048);
    assert_int_equal(out.usage.cache_write, 120);
    assert_int_equal(out.usage.output, 89);
    assert_true(out.usage.known);

    static const struct {
        const char *raw;
        tx_stop_t stop;
    } stops[] = {{"end_turn", TX_STOP_END},
                 {"stop_sequence", TX_STOP_SEQUENCE},
                 {"max_tokens", TX_STOP_MAX_TOKENS},
                 {"model_context_window_exceeded", TX_STOP_MAX_TOKENS},
                 {"guardrail_intervened", TX_STOP_CONTENT_FILTER},
                 {"content_filtered", TX_STOP_CONTENT_FILTER},
                 {"something_new", TX_STOP_END}};
    for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++) {
        char b[512];
        snprintf(b, sizeof(b),
                 "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"reasoningContent\":{"
                 "\"reasoningText\":{\"text\":\"hmm\",\"signature\":\"sig\"}}},{\"text\":\"x\"}]}},\"stopReason\":"
                 "\"%s\",\"additionalModelResponseFields\":{\"stop_sequence\":\"END\"},\"usage\":{\"inputTokens\":1,"
                 "\"outputTokens\":2}}",
                 stops[i].raw);
        assert_int_equal(P->decode_response(&r, b, strlen(b), &a, &out, &err), 0);
        assert_int_equal(out.stop, stops[i].stop);
        assert_int_equal(out.n_parts, 2);
        assert_int_equal(out.parts[0].kind, TX_PART_THINKING);
        assert_string_equal(out.parts[0].signature, "sig");
        assert_string_equal(out.stop_sequence, "END");
        assert_int_equal(out.usage.input, 1);
    }
    assert_int_equal(P->decode_response(&r, "{\"x\":1}", 7, &a, &out, &err), -1);
    assert_int_equal(err.kind, TX_ERR_UPSTREAM);
    assert_int_equal(P->decode_response(&r, "not json", 8, &a, &out, &err), -1);
    assert_int_equal(err.kind, TX_ERR_UPSTREAM);
    tg_arena_free(&a);
}

/* ---------------------------------------------------------------- streams */

typedef struct {
    tg_buf_t log;
    tx_stream_state_t *st;
    const tx_request_t *r;
    tg_arena_t *a;
    tx_error_t err;
    int rc;
} sctx_t;

static int
on_event(void *ctx, const tx_event_t *ev)
{
    sctx_t *c = ctx;
    static const char *const names[] = {"START",     "TEXT",  "THINKING", "TOOL_START", "TOOL_ARGS",
                                        "BLOCK_END", "USAGE", "STOP",     "ERROR",      "END"};
    tg_buf_appendf(&c->log, "%s", names[ev->kind]);
    switch (ev->kind) {
    case TX_EV_TEXT:
    case TX_EV_TOOL_ARGS:
    case TX_EV_THINKING:
        tg_buf_appendf(&c->log, " %d [%.*s]", ev->index, (int)ev->text_len, ev->text ? ev->text : "");
        break;
    case TX_EV_TOOL_START:
        tg_buf_appendf(&c->log, " %d %s %s", ev->index, ev->id, ev->name);
        break;
    case TX_EV_BLOCK_END:
        tg_buf_appendf(&c->log, " %d", ev->index);
        break;
    case TX_EV_USAGE:
        tg_buf_appendf(&c->log, " in=%lld out=%lld cr=%lld cw=%lld", (long long)ev->usage.input,
                       (long long)ev->usage.output, (long long)ev->usage.cache_read, (long long)ev->usage.cache_write);
        break;
    case TX_EV_STOP:
        tg_buf_appendf(&c->log, " %d", ev->stop);
        break;
    case TX_EV_ERROR:
        tg_buf_appendf(&c->log, " kind=%d code=%s msg=%s", ev->error->kind, ev->error->code, ev->error->message);
        break;
    default:
        break;
    }
    tg_buf_appends(&c->log, "\n");
    return 0;
}

static int
on_frame(void *ctx, const tx_frame_t *f)
{
    sctx_t *c = ctx;
    int rc = P->stream_frame(c->st, c->r, f, c->a, on_event, c, &c->err);
    if (rc != 0)
        c->rc = rc;
    return rc;
}

/* Runs a stream of wire bytes through the framing and the adapter, 11 bytes a read; returns the log. */
static char *
run_stream(const tx_request_t *r, const char *bytes, size_t len)
{
    tg_arena_t a = TG_ARENA_INIT;
    sctx_t c = {.r = r, .a = &a};
    c.st = tg_arena_alloc(&a, P->stream_state_size);
    tx_eventstream_t es = {0};
    tx_error_t err = {0};
    for (size_t i = 0; i < len; i += 11)
        assert_int_equal(tx_eventstream_feed(&es, bytes + i, len - i < 11 ? len - i : 11, on_frame, &c, &err), 0);
    assert_int_equal(tx_eventstream_pending(&es), 0);
    tx_eventstream_dispose(&es);
    tg_arena_free(&a);
    tg_buf_append(&c.log, "", 1);
    return c.log.base;
}

static char *
unhex(const char *s, size_t len, size_t *ret_len)
{
    char *out = malloc(len / 2 + 1);
    size_t n = 0;
    int hi = -1;
    for (size_t i = 0; i < len; i++) {
        int v = tg_hex_value(s[i]);
        if (v < 0)
            continue;
        if (hi < 0) {
            hi = v;
        } else {
            out[n++] = (char)(hi << 4 | v);
            hi = -1;
        }
    }
    *ret_len = n;
    return out;
}

static void
test_stream_recorded(void **state)
{
    size_t len, blen;
    const char *hex = read_golden("stream.hex", &len);
    char *bytes = unhex(hex, len, &blen);
    tx_request_t r = new_request();
    r.stream = 1;
    char *log = run_stream(&r, bytes, blen);
    assert_string_equal(log, "START\n"
                             "TEXT 0 [I'll check the current]\n"
                             "TEXT 0 [ weather in Paris for you.]\n"
                             "BLOCK_END 0\n"
                             "TOOL_START 1 tooluse_kZJMlvQmRJ6eAyJE5GIl7Q get_weather\n"
                             "TOOL_ARGS 1 [{\"location\": \"Par]\n"
                             "TOOL_ARGS 1 [is\", \"unit\": \"celsius\"}]\n"
                             "BLOCK_END 1\n"
                             "STOP 4\n"
                             "USAGE in=2640 out=89 cr=2048 cw=120\n"
                             "END\n");
    free(log);
    free(bytes);
}

static void
frame(tg_buf_t *b, const char *type, const char *event, const char *json)
{
    assert_int_equal(tx_eventstream_encode(b, type, event, json, strlen(json)), 0);
}

static void
test_stream_exceptions(void **state)
{
    static const struct {
        const char *exception;
        tx_error_kind_t kind;
    } cases[] = {
        {"modelStreamErrorException", TX_ERR_UPSTREAM},     {"throttlingException", TX_ERR_RATE_LIMIT},
        {"serviceUnavailableException", TX_ERR_OVERLOADED}, {"validationException", TX_ERR_INVALID_REQUEST},
        {"internalServerException", TX_ERR_UPSTREAM},       {"somethingNewException", TX_ERR_UPSTREAM},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tg_buf_t b = {0};
        frame(&b, "event", "messageStart", "{\"p\":\"abc\",\"role\":\"assistant\"}");
        frame(&b, "event", "contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"Hel\"},\"p\":\"x\"}");
        frame(&b, "exception", cases[i].exception, "{\"message\":\"it broke\"}");
        tx_request_t r = new_request();
        char *log = run_stream(&r, b.base, b.len);
        char want[256];
        snprintf(want, sizeof(want), "START\nTEXT 0 [Hel]\nERROR kind=%d code=%s msg=it broke\n", cases[i].kind,
                 cases[i].exception);
        assert_string_equal(log, want);
        free(log);
        tg_buf_free(&b);
    }
}

static void
test_stream_reasoning_and_json(void **state)
{
    tg_buf_t b = {0};
    frame(&b, "event", "messageStart", "{\"role\":\"assistant\"}");
    frame(&b, "event", "contentBlockDelta",
          "{\"contentBlockIndex\":0,\"delta\":{\"reasoningContent\":{\"text\":\"Let me\"}}}");
    frame(&b, "event", "contentBlockDelta",
          "{\"contentBlockIndex\":0,\"delta\":{\"reasoningContent\":{\"signature\":\"c2ln\"}}}");
    frame(&b, "event", "contentBlockStop", "{\"contentBlockIndex\":0}");
    frame(&b, "event", "contentBlockStart",
          "{\"contentBlockIndex\":1,\"start\":{\"toolUse\":{\"toolUseId\":\"t9\",\"name\":\"json_response\"}}}");
    frame(&b, "event", "contentBlockDelta",
          "{\"contentBlockIndex\":1,\"delta\":{\"toolUse\":{\"input\":\"{\\\"a\\\":\"}}}");
    frame(&b, "event", "contentBlockDelta", "{\"contentBlockIndex\":1,\"delta\":{\"toolUse\":{\"input\":\"1}\"}}}");
    frame(&b, "event", "contentBlockStop", "{\"contentBlockIndex\":1}");
    frame(&b, "event", "messageStop", "{\"stopReason\":\"tool_use\"}");
    frame(&b, "event", "someFutureEvent", "{}");
    frame(&b, "event", "metadata", "{\"usage\":{\"inputTokens\":5,\"outputTokens\":7,\"totalTokens\":12}}");
    tx_request_t r = new_request();
    r.format = TX_FORMAT_JSON_OBJECT; /* the forced tool's input streams as text, the stop is a natural end */
    char *log = run_stream(&r, b.base, b.len);
    assert_string_equal(log, "START\nTHINKING 0 [Let me]\nTHINKING 0 []\nBLOCK_END 0\nTEXT 1 [{\"a\":]\nTEXT 1 [1}]\n"
                             "BLOCK_END 1\nSTOP 1\nUSAGE in=5 out=7 cr=0 cw=0\nEND\n");
    free(log);

    /* a payload that is not JSON is a protocol error */
    tg_arena_t a = TG_ARENA_INIT;
    sctx_t c = {.r = &r, .a = &a};
    c.st = tg_arena_alloc(&a, P->stream_state_size);
    tx_frame_t f = {.event = "contentBlockDelta", .event_len = 17, .data = "{nope", .data_len = 5};
    assert_int_equal(P->stream_frame(c.st, &r, &f, &a, on_event, &c, &c.err), -1);
    assert_int_equal(c.err.kind, TX_ERR_UPSTREAM);
    tx_frame_t g = {
        .event = "contentBlockDelta", .event_len = 17, .data = "{\"delta\":{\"text\":\"x\"}}", .data_len = 22};
    assert_int_equal(P->stream_frame(c.st, &r, &g, &a, on_event, &c, &c.err), -1);
    tg_buf_free(&c.log);
    tg_arena_free(&a);
    tg_buf_free(&b);
}

/* ---------------------------------------------------------------- errors */

static void
test_errors(void **state)
{
    static const struct {
        int status;
        const char *body;
        tx_error_kind_t kind;
        const char *code;
        const char *message;
    } cases[] = {
        {400, "{\"message\":\"Malformed input request: bad\"}", TX_ERR_INVALID_REQUEST, "ValidationException",
         "Malformed input request: bad"},
        {400, "{\"message\":\"Input is too long for requested model.\"}", TX_ERR_INVALID_REQUEST,
         "context_length_exceeded", "Input is too long for requested model."},
        {403, "{\"message\":\"The request signature we calculated does not match the signature you provided.\"}",
         TX_ERR_AUTHENTICATION, "AccessDeniedException", NULL},
        {403, "{\"Message\":\"You don't have access to the model with the specified model ID.\"}", TX_ERR_PERMISSION,
         "AccessDeniedException", "You don't have access to the model with the specified model ID."},
        {404, "{\"message\":\"The provided model identifier is invalid.\"}", TX_ERR_NOT_FOUND,
         "ResourceNotFoundException", NULL},
        {408, "{\"message\":\"Model has timed out in processing the request.\"}", TX_ERR_TIMEOUT,
         "ModelTimeoutException", NULL},
        {424, "{\"message\":\"Model error\"}", TX_ERR_UPSTREAM, "ModelErrorException", NULL},
        {429, "{\"message\":\"Too many requests, please wait before trying again.\"}", TX_ERR_RATE_LIMIT,
         "ThrottlingException", NULL},
        {429, "{\"message\":\"Model is not ready for inference.\"}", TX_ERR_OVERLOADED, "ModelNotReadyException", NULL},
        {500, "{\"message\":\"Internal server error\"}", TX_ERR_SERVER, "InternalServerException", NULL},
        {503, "{\"message\":\"Bedrock is unable to process your request.\"}", TX_ERR_OVERLOADED,
         "ServiceUnavailableException", NULL},
        {400, "{\"__type\":\"com.amazon.coral#ServiceQuotaExceededException\",\"message\":\"quota\"}",
         TX_ERR_RATE_LIMIT, "ServiceQuotaExceededException", "quota"},
        {502, "<html>Bad Gateway</html>", TX_ERR_UPSTREAM, "", "Bedrock returned HTTP 502: <html>Bad Gateway</html>"},
        {500, "", TX_ERR_SERVER, "InternalServerException", "Bedrock returned HTTP 500."},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tx_error_t err = {0};
        P->decode_error(cases[i].status, cases[i].body, strlen(cases[i].body), &err);
        assert_int_equal(err.kind, cases[i].kind);
        assert_string_equal(err.code, cases[i].code);
        if (cases[i].message != NULL)
            assert_string_equal(err.message, cases[i].message);
        assert_true(err.message[0] != '\0');
    }
    /* the golden error bodies */
    static const char *const files[] = {"error-400.json", "error-403.json", "error-429.json", "error-503.json"};
    static const tx_error_kind_t kinds[] = {TX_ERR_INVALID_REQUEST, TX_ERR_AUTHENTICATION, TX_ERR_RATE_LIMIT,
                                            TX_ERR_OVERLOADED};
    for (size_t i = 0; i < 4; i++) {
        size_t len;
        const char *body = read_golden(files[i], &len);
        tx_error_t err = {0};
        P->decode_error(atoi(files[i] + 6), body, len, &err);
        assert_int_equal(err.kind, kinds[i]);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_chat),
        cmocka_unit_test(test_encode_rejects),
        cmocka_unit_test(test_json_output),
        cmocka_unit_test(test_encode_embed_and_count),
        cmocka_unit_test(test_decode_response),
        cmocka_unit_test(test_stream_recorded),
        cmocka_unit_test(test_stream_exceptions),
        cmocka_unit_test(test_stream_reasoning_and_json),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
