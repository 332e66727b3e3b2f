/*
 * Unit tests of the Cohere v2 provider adapter: request encoding (chat with system, images, tools, tool
 * results, sampling, JSON output; embed), response decoding, stream decoding of recorded streams (text,
 * tool plan and tool-call fragments, usage, an in-stream error), and error decoding per status class.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "translate/tx.h"
#include "tollgate/sse.h"

extern const tx_provider_ops_t tx_cohere_provider;
#define P (&tx_cohere_provider)

static const tx_target_t target = {
    .kind = "cohere", .base_url = "https://api.cohere.com", .upstream_model = "command-a-03-2025"};

/* ---------------------------------------------------------------- helpers */

static json_t *
encode(const tx_request_t *r, tg_arena_t *a, tx_http_request_t *h)
{
    tx_error_t err = {0};
    int rc = P->encode_request(r, &target, a, h, &err);
    if (rc != 0)
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

/* Events as text lines, for comparing whole streams. */
static int
record(void *ctx, const tx_event_t *ev)
{
    tg_buf_t *b = ctx;
    switch (ev->kind) {
    case TX_EV_START:
        return tg_buf_appendf(b, "START id=%s\n", ev->id ? ev->id : "-");
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

struct feed {
    tx_stream_state_t *st;
    tg_arena_t *a;
    tg_buf_t *out;
    int rc;
};

static int
on_sse(void *ctx, const tg_sse_event_t *ev)
{
    struct feed *f = ctx;
    tx_frame_t fr = {.event = ev->event_len ? ev->event : NULL,
                     .event_len = ev->event_len,
                     .data = ev->data,
                     .data_len = ev->data_len};
    tx_error_t err = {0};
    tx_request_t r = {.op = TX_OP_CHAT, .stream = 1};
    int rc = P->stream_frame(f->st, &r, &fr, f->a, record, f->out, &err);
    if (rc != 0) {
        tg_buf_appendf(f->out, "FAIL %d %s\n", err.kind, err.message);
        f->rc = rc;
    }
    return 0;
}

/* Runs SSE bytes through the adapter; returns the recorded events (malloc'd). */
static char *
run_stream(const char *sse, size_t len)
{
    tg_arena_t a = TG_ARENA_INIT;
    tg_buf_t out = {0};
    void *st = calloc(1, P->stream_state_size);
    struct feed f = {st, &a, &out, 0};
    tg_sse_parser_t p;
    tg_sse_init(&p, 1 << 20);
    /* odd-sized pieces: framing must not matter */
    for (size_t at = 0; at < len; at += 7)
        assert_int_equal(tg_sse_feed(&p, sse + at, len - at < 7 ? len - at : 7, on_sse, &f), 0);
    tg_sse_dispose(&p);
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
    json_t *fmt = json_loads("{\"type\":\"object\",\"properties\":{\"answer\":{\"type\":\"string\"}}}", 0, NULL);
    tx_part_t u1[] = {{.kind = TX_PART_TEXT, .text = "What is in this picture?"},
                      {.kind = TX_PART_IMAGE, .media_type = "image/png", .data = "iVBORw0KGgo="},
                      {.kind = TX_PART_IMAGE, .url = "https://example.com/cat.jpg"}};
    tx_part_t a1[] = {{.kind = TX_PART_THINKING, .text = "hidden"},
                      {.kind = TX_PART_TEXT, .text = "I will check the weather."},
                      {.kind = TX_PART_TOOL_CALL, .id = "call_1", .name = "get_weather", .args = args}};
    tx_part_t t1[] = {{.kind = TX_PART_TOOL_RESULT, .id = "call_1", .text = "{\"temp\":21}"}};
    tx_part_t a2[] = {{.kind = TX_PART_TEXT, .text = "It is 21 degrees."}};
    tx_part_t u2[] = {{.kind = TX_PART_TEXT, .text = "Thanks"}};
    tx_message_t msgs[] = {{TX_ROLE_USER, u1, 3},
                           {TX_ROLE_ASSISTANT, a1, 3},
                           {TX_ROLE_TOOL, t1, 1},
                           {TX_ROLE_ASSISTANT, a2, 1},
                           {TX_ROLE_USER, u2, 1}};
    tx_tool_t tools[] = {{.name = "get_weather", .description = "Weather for a place", .parameters = schema},
                         {.name = "get_time"}};
    const char *stop[] = {"\n\n", "END"};
    tx_request_t r = {.op = TX_OP_CHAT,
                      .model = "my-model",
                      .stream = 1,
                      .system = "Be brief.",
                      .messages = msgs,
                      .n_messages = 5,
                      .tools = tools,
                      .n_tools = 2,
                      .tool_choice = TX_TOOL_CHOICE_REQUIRED,
                      .max_tokens = 100,
                      .temperature = 0.5,
                      .has_temperature = 1,
                      .top_p = 1.0,
                      .has_top_p = 1,
                      .top_k = 40,
                      .stop = stop,
                      .n_stop = 2,
                      .seed = 7,
                      .has_seed = 1,
                      .presence_penalty = 0.25,
                      .has_presence_penalty = 1,
                      .frequency_penalty = 0.5,
                      .has_frequency_penalty = 1,
                      .format = TX_FORMAT_JSON_SCHEMA,
                      .format_schema = fmt};
    tx_http_request_t h;
    json_t *body = encode(&r, &a, &h);
    assert_string_equal(h.url, "https://api.cohere.com/v2/chat");
    assert_int_equal(h.n_headers, 0);
    assert_json(
        body,
        "{\"model\":\"command-a-03-2025\",\"stream\":true,\"messages\":["
        "{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is in this picture?\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0KGgo=\"}},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://example.com/cat.jpg\"}}]},"
        "{\"role\":\"assistant\",\"tool_plan\":\"I will check the weather.\",\"tool_calls\":[{\"id\":\"call_1\","
        "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"location\\\":\\\"Paris\\\"}"
        "\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"{\\\"temp\\\":21}\"},"
        "{\"role\":\"assistant\",\"content\":\"It is 21 degrees.\"},"
        "{\"role\":\"user\",\"content\":\"Thanks\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather for a "
        "place\",\"parameters\":{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\"}}}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"parameters\":{\"type\":\"object\","
        "\"properties\":{}}}}],"
        "\"tool_choice\":\"REQUIRED\","
        "\"response_format\":{\"type\":\"json_object\",\"json_schema\":{\"type\":\"object\",\"properties\":"
        "{\"answer\":{\"type\":\"string\"}}}},"
        "\"max_tokens\":100,\"stop_sequences\":[\"\\n\\n\",\"END\"],\"temperature\":0.5,\"p\":0.99,\"k\":40,"
        "\"seed\":7,\"frequency_penalty\":0.5,\"presence_penalty\":0.25}");
    json_decref(body);
    json_decref(schema);
    json_decref(args);
    json_decref(fmt);
    tg_arena_free(&a);
}

static void
test_encode_tool_choice(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_part_t u[] = {{.kind = TX_PART_TEXT, .text = "hi"}};
    tx_message_t msgs[] = {{TX_ROLE_USER, u, 1}};
    tx_tool_t tools[] = {{.name = "a"}, {.name = "b"}};
    tx_request_t r = {.op = TX_OP_CHAT,
                      .messages = msgs,
                      .n_messages = 1,
                      .tools = tools,
                      .n_tools = 2,
                      .max_tokens = -1,
                      .top_k = -1,
                      .tool_choice = TX_TOOL_CHOICE_NAMED,
                      .tool_choice_name = "b",
                      .format = TX_FORMAT_JSON_OBJECT};
    tx_http_request_t h;
    json_t *body = encode(&r, &a, &h);
    assert_int_equal(json_array_size(json_object_get(body, "tools")), 1);
    assert_string_equal(
        tx_json_str(json_object_get(json_array_get(json_object_get(body, "tools"), 0), "function"), "name"), "b");
    assert_string_equal(tx_json_str(body, "tool_choice"), "REQUIRED");
    assert_json(json_object_get(body, "response_format"), "{\"type\":\"json_object\"}");
    assert_true(json_is_false(json_object_get(body, "stream")));
    assert_null(json_object_get(body, "max_tokens"));
    assert_null(json_object_get(body, "k"));
    json_decref(body);

    r.tool_choice = TX_TOOL_CHOICE_NONE;
    body = encode(&r, &a, &h);
    assert_string_equal(tx_json_str(body, "tool_choice"), "NONE");
    assert_int_equal(json_array_size(json_object_get(body, "tools")), 2);
    json_decref(body);

    r.tool_choice = TX_TOOL_CHOICE_AUTO;
    body = encode(&r, &a, &h);
    assert_null(json_object_get(body, "tool_choice"));
    json_decref(body);

    tx_error_t err = {0};
    r.tool_choice = TX_TOOL_CHOICE_NAMED;
    r.tool_choice_name = "nope";
    assert_int_equal(P->encode_request(&r, &target, &a, &h, &err), -1);
    assert_int_equal(err.kind, TX_ERR_INVALID_REQUEST);
    assert_string_equal(err.param, "tool_choice");

    r.op = TX_OP_COUNT_TOKENS;
    assert_int_equal(P->encode_request(&r, &target, &a, &h, &err), -1);
    assert_string_equal(err.code, "unsupported_operation");

    r.op = TX_OP_CHAT;
    r.n_messages = 0;
    assert_int_equal(P->encode_request(&r, &target, &a, &h, &err), -1);
    assert_string_equal(err.param, "messages");
    tg_arena_free(&a);
}

/* Anthropic-style history: tool results arrive in a user turn, beside more text. */
static void
test_encode_results_in_user_turn(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_part_t u[] = {{.kind = TX_PART_TOOL_RESULT, .id = "toolu_1", .text = "sunny", .is_error = 0},
                     {.kind = TX_PART_TOOL_RESULT, .id = "toolu_2", .text = NULL},
                     {.kind = TX_PART_TEXT, .text = "and tomorrow?"}};
    tx_message_t msgs[] = {{TX_ROLE_USER, u, 3}};
    tx_request_t r = {.op = TX_OP_COMPLETION, .messages = msgs, .n_messages = 1, .max_tokens = -1, .top_k = -1};
    tx_http_request_t h;
    json_t *body = encode(&r, &a, &h);
    assert_json(json_object_get(body, "messages"),
                "[{\"role\":\"tool\",\"tool_call_id\":\"toolu_1\",\"content\":\"sunny\"},"
                "{\"role\":\"tool\",\"tool_call_id\":\"toolu_2\",\"content\":\"\"},"
                "{\"role\":\"user\",\"content\":\"and tomorrow?\"}]");
    json_decref(body);
    tg_arena_free(&a);
}

static void
test_encode_embed(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    const char *inputs[] = {"hello", "world"};
    tx_request_t r = {
        .op = TX_OP_EMBED, .inputs = inputs, .n_inputs = 2, .dimensions = 256, .task_type = "RETRIEVAL_QUERY"};
    tx_http_request_t h;
    json_t *body = encode(&r, &a, &h);
    assert_string_equal(h.url, "https://api.cohere.com/v2/embed");
    assert_json(body, "{\"model\":\"command-a-03-2025\",\"texts\":[\"hello\",\"world\"],\"input_type\":"
                      "\"search_query\",\"embedding_types\":[\"float\"],\"output_dimension\":256}");
    json_decref(body);

    r.task_type = NULL;
    r.dimensions = -1;
    body = encode(&r, &a, &h);
    assert_string_equal(tx_json_str(body, "input_type"), "search_document");
    assert_null(json_object_get(body, "output_dimension"));
    json_decref(body);

    const char *many[97];
    for (size_t i = 0; i < 97; i++)
        many[i] = "x";
    r.inputs = many;
    r.n_inputs = 97;
    tx_error_t err = {0};
    assert_int_equal(P->encode_request(&r, &target, &a, &h, &err), -1);
    assert_int_equal(err.kind, TX_ERR_INVALID_REQUEST);
    r.n_inputs = 0;
    assert_int_equal(P->encode_request(&r, &target, &a, &h, &err), -1);
    tg_arena_free(&a);
}

/* ---------------------------------------------------------------- responses */

static void
test_decode_golden_response(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    size_t len;
    char *body = read_file("tests/golden/cohere/response.json", &len);
    tx_request_t r = {.op = TX_OP_CHAT};
    tx_response_t resp;
    tx_error_t err = {0};
    assert_int_equal(P->decode_response(&r, body, len, &a, &resp, &err), 0);
    assert_string_equal(resp.id, "c14c80c3-18eb-4519-9460-6c92edd8cfb4");
    assert_int_equal(resp.n_parts, 2);
    assert_int_equal(resp.parts[0].kind, TX_PART_TEXT);
    assert_string_equal(resp.parts[0].text, "I will look up the weather in Paris.");
    assert_int_equal(resp.parts[1].kind, TX_PART_TOOL_CALL);
    assert_string_equal(resp.parts[1].id, "get_weather_1byjy32y4hvq");
    assert_string_equal(resp.parts[1].name, "get_weather");
    assert_json(resp.parts[1].args, "{\"location\":\"Paris\",\"unit\":\"celsius\"}");
    assert_int_equal(resp.stop, TX_STOP_TOOL_USE);
    assert_string_equal(resp.raw_stop, "TOOL_CALL");
    /* billed_units win over tokens */
    assert_true(resp.usage.known);
    assert_int_equal(resp.usage.input, 37);
    assert_int_equal(resp.usage.output, 21);
    assert_int_equal(resp.usage.cache_read, 0);
    free(body);
    tg_arena_free(&a);
}

static void
test_decode_response_text(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    static const char body[] =
        "{\"id\":\"x1\",\"finish_reason\":\"MAX_TOKENS\",\"message\":{\"role\":\"assistant\",\"content\":["
        "{\"type\":\"thinking\",\"thinking\":\"Let me think.\"},{\"type\":\"text\",\"text\":\"Hello\"},"
        "{\"type\":\"citation\"}]},\"usage\":{\"tokens\":{\"input_tokens\":12,\"output_tokens\":3},"
        "\"billed_units\":{\"output_tokens\":2}},\"unknown\":1}";
    tx_request_t r = {.op = TX_OP_CHAT};
    tx_response_t resp;
    tx_error_t err = {0};
    assert_int_equal(P->decode_response(&r, body, sizeof(body) - 1, &a, &resp, &err), 0);
    assert_int_equal(resp.n_parts, 2);
    assert_int_equal(resp.parts[0].kind, TX_PART_THINKING);
    assert_string_equal(resp.parts[0].text, "Let me think.");
    assert_string_equal(resp.parts[1].text, "Hello");
    assert_int_equal(resp.stop, TX_STOP_MAX_TOKENS);
    /* field by field: billed output, raw input */
    assert_int_equal(resp.usage.input, 12);
    assert_int_equal(resp.usage.output, 2);

    static const struct {
        const char *finish;
        tx_stop_t stop;
    } map[] = {{"COMPLETE", TX_STOP_END},          {"STOP_SEQUENCE", TX_STOP_SEQUENCE},
               {"MAX_TOKENS", TX_STOP_MAX_TOKENS}, {"TOOL_CALL", TX_STOP_TOOL_USE},
               {"ERROR", TX_STOP_ERROR},           {"TIMEOUT", TX_STOP_ERROR},
               {"SOMETHING_NEW", TX_STOP_END}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        char b[200];
        int n = snprintf(b, sizeof(b), "{\"finish_reason\":\"%s\",\"message\":{\"content\":[]}}", map[i].finish);
        assert_int_equal(P->decode_response(&r, b, (size_t)n, &a, &resp, &err), 0);
        assert_int_equal(resp.stop, map[i].stop);
        assert_false(resp.usage.known);
    }
    tg_arena_free(&a);
}

static void
test_decode_response_bad(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r = {.op = TX_OP_CHAT};
    tx_response_t resp;
    tx_error_t err = {0};
    static const char *bad[] = {
        "not json",
        "[1,2]",
        "{\"message\":{\"tool_calls\":[{\"id\":\"x\",\"function\":{\"name\":\"f\",\"arguments\":\"{nope\"}}]}}",
        "{\"message\":{\"tool_calls\":[{\"id\":\"x\",\"function\":{\"arguments\":\"{}\"}}]}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(P->decode_response(&r, bad[i], strlen(bad[i]), &a, &resp, &err), -1);
        assert_int_equal(err.kind, TX_ERR_UPSTREAM);
    }
    /* empty arguments are an empty object */
    static const char ok[] = "{\"finish_reason\":\"COMPLETE\",\"message\":{\"tool_calls\":[{\"id\":\"x\",\"function\":"
                             "{\"name\":\"f\",\"arguments\":\"\"}}]}}";
    assert_int_equal(P->decode_response(&r, ok, sizeof(ok) - 1, &a, &resp, &err), 0);
    assert_json(resp.parts[0].args, "{}");
    assert_int_equal(resp.stop, TX_STOP_TOOL_USE); /* calls present: tool use even with COMPLETE */
    tg_arena_free(&a);
}

static void
test_decode_embed(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    static const char body[] =
        "{\"id\":\"e1\",\"embeddings\":{\"float\":[[0.5,-1,2.25],[0,0,1]]},\"texts\":[\"a\",\"b\"],"
        "\"meta\":{\"api_version\":{\"version\":\"2\"},\"billed_units\":{\"input_tokens\":4}},"
        "\"response_type\":\"embeddings_by_type\"}";
    tx_request_t r = {.op = TX_OP_EMBED};
    tx_response_t resp;
    tx_error_t err = {0};
    assert_int_equal(P->decode_response(&r, body, sizeof(body) - 1, &a, &resp, &err), 0);
    assert_int_equal(resp.n_embeddings, 2);
    assert_int_equal(resp.embeddings[0].n, 3);
    assert_true(resp.embeddings[0].values[0] == 0.5f && resp.embeddings[0].values[1] == -1.0f &&
                resp.embeddings[0].values[2] == 2.25f);
    assert_true(resp.embeddings[1].values[2] == 1.0f);
    assert_int_equal(resp.usage.input, 4);
    assert_int_equal(resp.usage.output, 0);
    static const char bad[] = "{\"embeddings\":{\"int8\":[[1]]}}";
    assert_int_equal(P->decode_response(&r, bad, sizeof(bad) - 1, &a, &resp, &err), -1);
    assert_int_equal(err.kind, TX_ERR_UPSTREAM);
    tg_arena_free(&a);
}

/* ---------------------------------------------------------------- streams */

static void
test_stream_golden(void **state)
{
    size_t len;
    char *sse = read_file("tests/golden/cohere/stream.txt", &len);
    char *got = run_stream(sse, len);
    assert_string_equal(got, "START id=29f14a5a-11de-4cae-9800-25e4747408ea\n"
                             "TEXT 0 I\nTEXT 0  will\nTEXT 0  look\nTEXT 0  up\nTEXT 0  the\nTEXT 0  weather\n"
                             "TEXT 0  in\nTEXT 0  Paris\nTEXT 0 .\n"
                             "END_BLOCK 0\n"
                             "TOOL 1 get_weather_nsz5zm3w56q3 get_weather\n"
                             "ARGS 1 {\"location\nARGS 1 \":\"Paris\",\"\nARGS 1 unit\":\"celsius\"}\n"
                             "END_BLOCK 1\n"
                             "STOP 4\nUSAGE 37 21\nEND\n");
    free(got);
    free(sse);
}

/* A text reply as Cohere sends it, with a debug event, two tool calls and the trailing [DONE] some see. */
static void
test_stream_text_and_tools(void **state)
{
    static const char sse[] =
        "event: message-start\n"
        "data: {\"id\":\"m1\",\"type\":\"message-start\",\"delta\":{\"message\":{\"role\":\"assistant\","
        "\"content\":[],\"tool_plan\":\"\",\"tool_calls\":[],\"citations\":[]}}}\n\n"
        "event: content-start\n"
        "data: {\"type\":\"content-start\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"type\":\"text\","
        "\"text\":\"\"}}}}\n\n"
        "event: content-delta\r\n"
        "data: "
        "{\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"text\":\"Hello\"}}}}\r\n\r\n"
        "event: debug\n"
        "data: {\"type\":\"debug\",\"prompt\":\"...\"}\n\n"
        ": a comment\n\n"
        "event: content-delta\n"
        "data: {\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"text\":\" world\"}}},"
        "\"logprobs\":null}\n\n"
        "event: content-end\n"
        "data: {\"type\":\"content-end\",\"index\":0}\n\n"
        "event: tool-call-start\n"
        "data: {\"type\":\"tool-call-start\",\"index\":0,\"delta\":{\"message\":{\"tool_calls\":{\"id\":\"t1\","
        "\"type\":\"function\",\"function\":{\"name\":\"a\",\"arguments\":\"{\\\"x\\\"\"}}}}}\n\n"
        "event: tool-call-delta\n"
        "data: {\"type\":\"tool-call-delta\",\"index\":0,\"delta\":{\"message\":{\"tool_calls\":{\"function\":"
        "{\"arguments\":\":1}\"}}}}}\n\n"
        "event: tool-call-end\n"
        "data: {\"type\":\"tool-call-end\",\"index\":0}\n\n"
        "event: tool-call-start\n"
        "data: {\"type\":\"tool-call-start\",\"index\":1,\"delta\":{\"message\":{\"tool_calls\":{\"id\":\"t2\","
        "\"type\":\"function\",\"function\":{\"name\":\"b\",\"arguments\":\"\"}}}}}\n\n"
        "event: tool-call-end\n"
        "data: {\"type\":\"tool-call-end\",\"index\":1}\n\n"
        "event: message-end\n"
        "data: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"COMPLETE\",\"usage\":{\"tokens\":"
        "{\"input_tokens\":17,\"output_tokens\":6}}}}\n\n"
        "data: [DONE]\n\n"
        "event: content-delta\n"
        "data: {\"type\":\"content-delta\",\"delta\":{\"message\":{\"content\":{\"text\":\"late\"}}}}\n\n";
    char *got = run_stream(sse, sizeof(sse) - 1);
    assert_string_equal(got, "START id=m1\nTEXT 0 Hello\nTEXT 0  world\nEND_BLOCK 0\n"
                             "TOOL 1 t1 a\nARGS 1 {\"x\"\nARGS 1 :1}\nEND_BLOCK 1\n"
                             "TOOL 2 t2 b\nEND_BLOCK 2\n"
                             "STOP 4\nUSAGE 17 6\nEND\n");
    free(got);
}

static void
test_stream_thinking_and_errors(void **state)
{
    /* a thinking block, then a stream that fails: an error event (defensive) and a broken frame */
    static const char sse[] =
        "event: message-start\n"
        "data: {\"id\":\"m2\",\"type\":\"message-start\",\"delta\":{\"message\":{\"role\":\"assistant\"}}}\n\n"
        "event: content-start\n"
        "data: {\"type\":\"content-start\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"type\":\"thinking\","
        "\"thinking\":\"hmm\"}}}}\n\n"
        "event: content-delta\n"
        "data: "
        "{\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"thinking\":\"...\"}}}}\n\n"
        "event: content-end\n"
        "data: {\"type\":\"content-end\",\"index\":0}\n\n"
        "event: error\n"
        "data: {\"message\":\"internal server error\"}\n\n";
    char *got = run_stream(sse, sizeof(sse) - 1);
    char want[512];
    snprintf(want, sizeof(want),
             "START id=m2\nTHINK 0 hmm\nTHINK 0 ...\nEND_BLOCK 0\nERROR %d Cohere failed during the stream: internal "
             "server error\n",
             TX_ERR_SERVER);
    assert_string_equal(got, want);
    free(got);

    static const char broken[] = "event: content-delta\ndata: {\"type\":\"content-delta\",\n\n";
    got = run_stream(broken, sizeof(broken) - 1);
    assert_non_null(strstr(got, "FAIL"));
    free(got);

    static const char orphan[] =
        "event: tool-call-delta\ndata: {\"type\":\"tool-call-delta\",\"delta\":{\"message\":{\"tool_calls\":"
        "{\"function\":{\"arguments\":\"x\"}}}}}\n\n";
    got = run_stream(orphan, sizeof(orphan) - 1);
    assert_non_null(strstr(got, "FAIL"));
    free(got);

    /* finish ERROR is a stop reason, and the stream still ends normally */
    static const char finish_error[] =
        "event: message-end\ndata: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"ERROR\"}}\n\n";
    got = run_stream(finish_error, sizeof(finish_error) - 1);
    snprintf(want, sizeof(want), "STOP %d\nEND\n", TX_STOP_ERROR);
    assert_string_equal(got, want);
    free(got);
}

/* A non-zero emit return stops the adapter and comes back. */
static int
stop_at_text(void *ctx, const tx_event_t *ev)
{
    return ev->kind == TX_EV_TEXT ? 42 : 0;
}

static void
test_stream_emit_stop(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    void *st = calloc(1, P->stream_state_size);
    static const char data[] = "{\"type\":\"content-delta\",\"delta\":{\"message\":{\"content\":{\"text\":\"x\"}}}}";
    tx_frame_t f = {.event = "content-delta", .event_len = 13, .data = data, .data_len = sizeof(data) - 1};
    tx_error_t err = {0};
    tx_request_t r = {.op = TX_OP_CHAT};
    assert_int_equal(P->stream_frame(st, &r, &f, &a, stop_at_text, NULL, &err), 42);
    free(st);
    tg_arena_free(&a);
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
        const char *message_start;
    } cases[] = {
        {400, "tests/golden/cohere/error-400.json", TX_ERR_INVALID_REQUEST, "context_length_exceeded",
         "too many tokens"},
        {401, "tests/golden/cohere/error-401.json", TX_ERR_AUTHENTICATION, "invalid_api_key", "invalid api token"},
        {429, "tests/golden/cohere/error-429.json", TX_ERR_RATE_LIMIT, "rate_limit_exceeded", "You are using a Trial"},
        {500, "tests/golden/cohere/error-500.json", TX_ERR_SERVER, "", "internal server error"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        char *body = read_file(cases[i].file, &len);
        tx_error_t err = {0};
        P->decode_error(cases[i].status, body, len, &err);
        assert_int_equal(err.kind, cases[i].kind);
        assert_string_equal(err.code, cases[i].code);
        assert_int_equal(strncmp(err.message, cases[i].message_start, strlen(cases[i].message_start)), 0);
        assert_int_equal(tx_error_status(&err), cases[i].status);
        free(body);
    }
    static const struct {
        int status;
        const char *body;
        tx_error_kind_t kind;
        int client_status;
    } more[] = {
        {402, "{\"message\":\"Please add or update your payment method\"}", TX_ERR_BILLING, 402},
        {404, "{\"message\":\"model 'x' not found\"}", TX_ERR_NOT_FOUND, 404},
        {422, "{\"message\":\"invalid\"}", TX_ERR_UNPROCESSABLE, 422},
        {499, "{\"message\":\"request cancelled\"}", TX_ERR_UPSTREAM, 502},
        {503, "{\"message\":\"service unavailable\"}", TX_ERR_OVERLOADED, 503},
        {504, "<html>gateway timeout</html>", TX_ERR_TIMEOUT, 504},
        {500, "", TX_ERR_SERVER, 500},
    };
    for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
        tx_error_t err = {0};
        P->decode_error(more[i].status, more[i].body, strlen(more[i].body), &err);
        assert_int_equal(err.kind, more[i].kind);
        assert_int_equal(tx_error_status(&err), more[i].client_status);
        assert_true(err.message[0] != '\0');
    }
    tx_error_t err = {0};
    P->decode_error(504, "<html>gateway timeout</html>", 28, &err);
    assert_string_equal(err.message, "Cohere returned HTTP 504: <html>gateway timeout</html>");
    P->decode_error(500, NULL, 0, &err);
    assert_string_equal(err.message, "Cohere returned HTTP 500.");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_chat),
        cmocka_unit_test(test_encode_tool_choice),
        cmocka_unit_test(test_encode_results_in_user_turn),
        cmocka_unit_test(test_encode_embed),
        cmocka_unit_test(test_decode_golden_response),
        cmocka_unit_test(test_decode_response_text),
        cmocka_unit_test(test_decode_response_bad),
        cmocka_unit_test(test_decode_embed),
        cmocka_unit_test(test_stream_golden),
        cmocka_unit_test(test_stream_text_and_tools),
        cmocka_unit_test(test_stream_thinking_and_errors),
        cmocka_unit_test(test_stream_emit_stop),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
