/* Unit tests for the Anthropic dialect (client side) and provider adapter (upstream side). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "translate/tx.h"
#include "tollgate/sse.h"
#include "anthropic.h"

extern const tx_dialect_ops_t tx_anthropic_dialect;
extern const tx_provider_ops_t tx_anthropic_provider;

static const tx_dialect_ops_t *D = &tx_anthropic_dialect;
static const tx_provider_ops_t *P = &tx_anthropic_provider;

/* ---------------------------------------------------------------- helpers */

/* NUL-terminates a buffer without counting the NUL. */
static void
terminate(tg_buf_t *b)
{
    assert_int_equal(tg_buf_append(b, "", 1), 0);
    b->len--;
}

static char *
slurp(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *ret_len = (size_t)n;
    return buf;
}

static tx_request_t
decode_ok(tg_arena_t *a, tx_op_t op, const char *body)
{
    tx_request_t r;
    tx_error_t err = {0};
    int rc = D->decode_request(op, body, strlen(body), a, &r, &err);
    if (rc != 0)
        fail_msg("decode failed: %s", err.message);
    return r;
}

static tx_error_t
decode_bad(tx_op_t op, const char *body)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r;
    tx_error_t err = {0};
    assert_int_equal(D->decode_request(op, body, strlen(body), &a, &r, &err), -1);
    tg_arena_free(&a);
    return err;
}

/* Events as one line each, for exact comparisons. */
static int
log_event(void *ctx, const tx_event_t *ev)
{
    tg_buf_t *b = ctx;
    static const char *const names[] = {"START",     "TEXT",  "THINKING", "TOOL_START", "TOOL_ARGS",
                                        "BLOCK_END", "USAGE", "STOP",     "ERROR",      "END"};
    tg_buf_appendf(b, "%s", names[ev->kind]);
    switch (ev->kind) {
    case TX_EV_START:
        tg_buf_appendf(b, " %s %s in=%lld cr=%lld cw=%lld out=%lld", ev->id, ev->model, (long long)ev->usage.input,
                       (long long)ev->usage.cache_read, (long long)ev->usage.cache_write, (long long)ev->usage.output);
        break;
    case TX_EV_TEXT:
    case TX_EV_TOOL_ARGS:
        tg_buf_appendf(b, " %d %.*s", ev->index, (int)ev->text_len, ev->text);
        break;
    case TX_EV_THINKING:
        tg_buf_appendf(b, " %d %.*s sig=%s", ev->index, (int)ev->text_len, ev->text ? ev->text : "",
                       ev->signature ? ev->signature : "-");
        break;
    case TX_EV_TOOL_START:
        tg_buf_appendf(b, " %d %s %s", ev->index, ev->id, ev->name);
        break;
    case TX_EV_BLOCK_END:
        tg_buf_appendf(b, " %d", ev->index);
        break;
    case TX_EV_USAGE:
        tg_buf_appendf(b, " in=%lld cr=%lld cw=%lld out=%lld", (long long)ev->usage.input,
                       (long long)ev->usage.cache_read, (long long)ev->usage.cache_write, (long long)ev->usage.output);
        break;
    case TX_EV_STOP:
        tg_buf_appendf(b, " %d %s", ev->stop, ev->stop_sequence ? ev->stop_sequence : "-");
        break;
    case TX_EV_ERROR:
        tg_buf_appendf(b, " %d %s", ev->error->kind, ev->error->message);
        break;
    default:
        break;
    }
    tg_buf_appends(b, "\n");
    return 0;
}

struct sse_ctx {
    const tx_request_t *r;
    tg_arena_t *a;
    void *state;
    tg_buf_t *log;
    int rc;
};

static int
on_sse(void *p, const tg_sse_event_t *e)
{
    struct sse_ctx *c = p;
    tx_frame_t f = {.event = e->event_len ? e->event : NULL,
                    .event_len = e->event_len,
                    .data = e->has_data ? e->data : NULL,
                    .data_len = e->data_len};
    tx_error_t err = {0};
    c->rc = P->stream_frame(c->state, c->r, &f, c->a, log_event, c->log, &err);
    return c->rc;
}

/* Runs SSE bytes through the provider's stream decoder; returns the event log (caller frees). */
static char *
decode_stream(const tx_request_t *r, const char *bytes, size_t len, int *ret_rc)
{
    tg_arena_t a = TG_ARENA_INIT;
    tg_buf_t log = {0};
    tg_sse_parser_t sp;
    void *state = calloc(1, P->stream_state_size);
    struct sse_ctx c = {.r = r, .a = &a, .state = state, .log = &log};
    tg_sse_init(&sp, 1 << 20);
    tg_sse_feed(&sp, bytes, len, on_sse, &c);
    tg_sse_dispose(&sp);
    free(state);
    tg_arena_free(&a);
    terminate(&log);
    *ret_rc = c.rc;
    return log.base;
}

/* ---------------------------------------------------------------- dialect: requests */

static const char FULL_REQUEST[] =
    "{\"model\":\"claude-x\",\"max_tokens\":1024,\"stream\":true,"
    "\"system\":[{\"type\":\"text\",\"text\":\"You are terse.\",\"cache_control\":{\"type\":\"ephemeral\"}},"
    "{\"type\":\"text\",\"text\":\"Use tools.\"}],"
    "\"messages\":["
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is here?\"},"
    "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"iVBORw0=\"}},"
    "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://example.com/a.jpg\"}}]},"
    "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"hmm\",\"signature\":\"sig1\"},"
    "{\"type\":\"text\",\"text\":\"Checking.\"},"
    "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{\"location\":\"Paris\"}},"
    "{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"get_time\",\"input\":{}}]},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\",\"content\":\"sunny\"},"
    "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_2\",\"is_error\":true,"
    "\"content\":[{\"type\":\"text\",\"text\":\"clock\"},{\"type\":\"text\",\"text\":\"broken\"}]},"
    "{\"type\":\"text\",\"text\":\"And now?\"}]}],"
    "\"tools\":[{\"name\":\"get_weather\",\"description\":\"Weather\",\"input_schema\":{\"type\":\"object\"}},"
    "{\"name\":\"get_time\",\"input_schema\":{\"type\":\"object\",\"properties\":{}}}],"
    "\"tool_choice\":{\"type\":\"tool\",\"name\":\"get_weather\",\"disable_parallel_tool_use\":true},"
    "\"stop_sequences\":[\"END\",\"STOP\"],\"temperature\":0.5,\"top_p\":0.9,\"top_k\":40,"
    "\"metadata\":{\"user_id\":\"u-42\"},\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":2000},"
    "\"some_future_field\":1}";

static void
test_decode_request_full(void **state)
{
    (void)state;
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r = decode_ok(&a, TX_OP_CHAT, FULL_REQUEST);
    assert_int_equal(r.dialect, TX_DIALECT_ANTHROPIC);
    assert_string_equal(r.model, "claude-x");
    assert_int_equal(r.stream, 1);
    assert_int_equal(r.max_tokens, 1024);
    assert_string_equal(r.system, "You are terse.\n\nUse tools.");
    /* user, assistant, tool (two results), user (text) */
    assert_int_equal(r.n_messages, 4);
    assert_int_equal(r.messages[0].role, TX_ROLE_USER);
    assert_int_equal(r.messages[0].n_parts, 3);
    assert_int_equal(r.messages[0].parts[1].kind, TX_PART_IMAGE);
    assert_string_equal(r.messages[0].parts[1].media_type, "image/png");
    assert_string_equal(r.messages[0].parts[1].data, "iVBORw0=");
    assert_string_equal(r.messages[0].parts[2].url, "https://example.com/a.jpg");
    assert_int_equal(r.messages[1].role, TX_ROLE_ASSISTANT);
    assert_int_equal(r.messages[1].n_parts, 4);
    assert_int_equal(r.messages[1].parts[0].kind, TX_PART_THINKING);
    assert_string_equal(r.messages[1].parts[0].signature, "sig1");
    assert_int_equal(r.messages[1].parts[2].kind, TX_PART_TOOL_CALL);
    assert_string_equal(r.messages[1].parts[2].id, "toolu_1");
    assert_string_equal(tx_args_text(&r.messages[1].parts[2], &a), "{\"location\":\"Paris\"}");
    assert_string_equal(tx_args_text(&r.messages[1].parts[3], &a), "{}");
    assert_int_equal(r.messages[2].role, TX_ROLE_TOOL);
    assert_int_equal(r.messages[2].n_parts, 2);
    assert_string_equal(r.messages[2].parts[0].text, "sunny");
    assert_string_equal(r.messages[2].parts[0].name, "get_weather"); /* found in the assistant turn */
    assert_string_equal(r.messages[2].parts[1].text, "clock\nbroken");
    assert_int_equal(r.messages[2].parts[1].is_error, 1);
    assert_string_equal(r.messages[2].parts[1].name, "get_time");
    assert_int_equal(r.messages[3].role, TX_ROLE_USER);
    assert_string_equal(r.messages[3].parts[0].text, "And now?");
    assert_int_equal(r.n_tools, 2);
    assert_string_equal(r.tools[0].description, "Weather");
    assert_null(r.tools[1].description);
    assert_int_equal(r.tool_choice, TX_TOOL_CHOICE_NAMED);
    assert_string_equal(r.tool_choice_name, "get_weather");
    assert_int_equal(r.parallel_tool_calls, 0);
    assert_int_equal(r.n_stop, 2);
    assert_string_equal(r.stop[1], "STOP");
    assert_true(r.has_temperature && r.temperature == 0.5);
    assert_true(r.has_top_p && r.top_p == 0.9);
    assert_int_equal(r.top_k, 40);
    assert_string_equal(r.user, "u-42");
    assert_non_null(json_object_get(r.extra, "thinking"));
    assert_non_null(json_object_get(r.extra, "some_future_field"));
    assert_null(json_object_get(r.extra, "model"));
    tg_arena_free(&a);
}

static void
test_decode_request_simple_and_count(void **state)
{
    (void)state;
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r = decode_ok(&a, TX_OP_CHAT,
                               "{\"model\":\"m\",\"max_tokens\":5,\"system\":\"sys\","
                               "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                               "\"tool_choice\":{\"type\":\"any\"}}");
    assert_int_equal(r.n_messages, 1);
    assert_string_equal(r.messages[0].parts[0].text, "hi");
    assert_string_equal(r.system, "sys");
    assert_int_equal(r.stream, 0);
    assert_int_equal(r.top_k, -1);
    assert_int_equal(r.parallel_tool_calls, -1);
    assert_int_equal(r.tool_choice, TX_TOOL_CHOICE_REQUIRED);
    assert_null(r.extra);
    /* count_tokens takes no max_tokens */
    r = decode_ok(&a, TX_OP_COUNT_TOKENS, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    assert_int_equal(r.op, TX_OP_COUNT_TOKENS);
    assert_int_equal(r.max_tokens, -1);
    tg_arena_free(&a);
}

static void
test_decode_request_errors(void **state)
{
    (void)state;
    tx_error_t e = decode_bad(TX_OP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    assert_int_equal(e.kind, TX_ERR_INVALID_REQUEST);
    assert_string_equal(e.param, "max_tokens");
    assert_string_equal(e.message, "max_tokens: Field required");
    e = decode_bad(TX_OP_CHAT, "{\"model\":\"m\",\"max_tokens\":1,");
    assert_string_equal(e.code, "invalid_json");
    e = decode_bad(TX_OP_CHAT, "[]");
    assert_int_equal(e.kind, TX_ERR_INVALID_REQUEST);
    e = decode_bad(TX_OP_CHAT, "{\"max_tokens\":1,\"messages\":[]}");
    assert_string_equal(e.param, "model");
    e = decode_bad(TX_OP_CHAT,
                   "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}");
    assert_string_equal(e.param, "messages.0");
    e = decode_bad(TX_OP_CHAT, "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":"
                               "[{\"type\":\"tool_use\",\"id\":\"a\",\"name\":\"b\",\"input\":{}}]}]}");
    assert_string_equal(e.param, "messages.0.content.0");
    e = decode_bad(TX_OP_CHAT, "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":"
                               "[{\"type\":\"image\",\"source\":{\"type\":\"file\"}}]}]}");
    assert_string_equal(e.param, "messages.0.content.0");
    e = decode_bad(TX_OP_CHAT, "{\"model\":\"m\",\"max_tokens\":1,\"temperature\":3,"
                               "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    assert_string_equal(e.param, "temperature");
    e = decode_bad(TX_OP_CHAT, "{\"model\":\"m\",\"max_tokens\":1,\"tool_choice\":{\"type\":\"tool\"},"
                               "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    assert_string_equal(e.param, "tool_choice.name");
    e = decode_bad(TX_OP_EMBED, "{}");
    assert_int_equal(e.kind, TX_ERR_NOT_FOUND);
}

/* ---------------------------------------------------------------- dialect: responses and errors */

static void
test_encode_response(void **state)
{
    (void)state;
    tg_arena_t a = TG_ARENA_INIT;
    tg_buf_t out = {0};
    json_t *args = json_pack("{s:s}", "location", "Paris");
    tx_part_t parts[] = {
        {.kind = TX_PART_TEXT, .text = "Let me \"check\"."},
        {.kind = TX_PART_TOOL_CALL, .id = "call_1", .name = "get_weather", .args = args},
        {.kind = TX_PART_TOOL_CALL, .name = "get_time"},
    };
    tx_request_t r = {.model = "public-model", .request_id = "req-7"};
    tx_response_t resp = {.id = "chatcmpl-9",
                          .parts = parts,
                          .n_parts = 3,
                          .stop = TX_STOP_TOOL_USE,
                          .usage = tx_usage_make(100, 20, 30, 10)};
    assert_int_equal(D->encode_response(&r, &resp, &a, &out), 0);
    terminate(&out);
    assert_string_equal(
        out.base, "{\"id\":\"msg_chatcmpl-9\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"public-model\","
                  "\"content\":[{\"type\":\"text\",\"text\":\"Let me \\\"check\\\".\"},"
                  "{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":\"get_weather\",\"input\":{\"location\":"
                  "\"Paris\"}},{\"type\":\"tool_use\",\"id\":\"toolu_req-7_2\",\"name\":\"get_time\","
                  "\"input\":{}}],\"stop_reason\":\"tool_use\",\"stop_sequence\":null,"
                  "\"usage\":{\"input_tokens\":60,\"cache_creation_input_tokens\":10,"
                  "\"cache_read_input_tokens\":30,\"output_tokens\":20}}");
    out.len = 0;
    tx_response_t stop = {.stop = TX_STOP_SEQUENCE, .stop_sequence = "END", .id = "msg_abc"};
    assert_int_equal(D->encode_response(&r, &stop, &a, &out), 0);
    terminate(&out);
    assert_non_null(strstr(out.base, "\"id\":\"msg_abc\""));
    assert_non_null(strstr(out.base, "\"content\":[],\"stop_reason\":\"stop_sequence\",\"stop_sequence\":\"END\""));
    out.len = 0;
    tx_request_t count = {.op = TX_OP_COUNT_TOKENS};
    tx_response_t n = {.input_tokens = 42};
    assert_int_equal(D->encode_response(&count, &n, &a, &out), 0);
    terminate(&out);
    assert_string_equal(out.base, "{\"input_tokens\":42}");
    json_decref(args);
    tg_buf_free(&out);
    tg_arena_free(&a);
}

static void
test_encode_error(void **state)
{
    (void)state;
    tg_buf_t out = {0};
    tx_error_t e;
    tx_fail(&e, TX_ERR_OVERLOADED, NULL, NULL, "Overloaded");
    assert_int_equal(D->encode_error(&e, "req_1", &out), 529);
    terminate(&out);
    assert_string_equal(out.base, "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
                                  "\"Overloaded\"},\"request_id\":\"req_1\"}");
    static const struct {
        tx_error_kind_t kind;
        int status;
        const char *type;
    } cases[] = {
        {TX_ERR_INVALID_REQUEST, 400, "invalid_request_error"},
        {TX_ERR_AUTHENTICATION, 401, "authentication_error"},
        {TX_ERR_BILLING, 402, "billing_error"},
        {TX_ERR_PERMISSION, 403, "permission_error"},
        {TX_ERR_NOT_FOUND, 404, "not_found_error"},
        {TX_ERR_TOO_LARGE, 413, "request_too_large"},
        {TX_ERR_RATE_LIMIT, 429, "rate_limit_error"},
        {TX_ERR_SERVER, 500, "api_error"},
        {TX_ERR_UPSTREAM, 502, "api_error"},
        {TX_ERR_TIMEOUT, 504, "api_error"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        out.len = 0;
        tx_fail(&e, cases[i].kind, NULL, NULL, "m");
        assert_int_equal(D->encode_error(&e, NULL, &out), cases[i].status);
        terminate(&out);
        char want[128];
        snprintf(want, sizeof(want), "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"m\"}}",
                 cases[i].type);
        assert_string_equal(out.base, want);
    }
    tg_buf_free(&out);
}

static void
test_encode_error_utf8(void **state)
{
    (void)state;
    /* messages quote upstream bytes and are cut at a fixed size: what goes out is still valid JSON */
    tg_buf_t out = {0};
    tx_error_t e = {.kind = TX_ERR_UPSTREAM};
    memset(e.message, 'a', sizeof(e.message) - 1);
    memcpy(e.message + sizeof(e.message) - 2, "\xc3", 1); /* the first half of "é", cut */
    memcpy(e.message, "bad \xff\xfe \xe2\x82\xac ok", 13);
    assert_int_equal(D->encode_error(&e, NULL, &out), 502);
    json_t *v = json_loadb(out.base, out.len, 0, NULL);
    assert_non_null(v);
    const char *m = json_string_value(json_object_get(json_object_get(v, "error"), "message"));
    assert_memory_equal(m, "bad \xef\xbf\xbd\xef\xbf\xbd \xe2\x82\xac ok", 17);
    assert_memory_equal(m + strlen(m) - 3, "\xef\xbf\xbd", 3);
    json_decref(v);
    tg_buf_free(&out);
}

/* ---------------------------------------------------------------- dialect: streams */

static void
run_events(const tx_request_t *r, const tx_event_t *evs, size_t n, tg_buf_t *out)
{
    void *st = calloc(1, D->stream_state_size);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(D->stream_event(st, r, &evs[i], out), 0);
    free(st);
    terminate(out);
}

static void
test_stream_event_from_openai_like(void **state)
{
    (void)state;
    /* what an OpenAI upstream gives: text without a block start, usage only at the end */
    tx_request_t r = {.model = "pub", .request_id = "r1"};
    tx_event_t evs[] = {
        {.kind = TX_EV_START, .id = "chatcmpl-1"},
        {.kind = TX_EV_TEXT, .index = 0, .text = "Hi", .text_len = 2},
        {.kind = TX_EV_TEXT, .index = 0, .text = " \"you\"", .text_len = 6},
        {.kind = TX_EV_TOOL_START, .index = 1, .id = "call_9", .name = "get_weather"},
        {.kind = TX_EV_TOOL_ARGS, .index = 1, .text = "{\"loc", .text_len = 5},
        {.kind = TX_EV_TOOL_ARGS, .index = 1, .text = "\":1}", .text_len = 4},
        {.kind = TX_EV_STOP, .stop = TX_STOP_TOOL_USE},
        {.kind = TX_EV_USAGE, .usage = tx_usage_make(50, 7, 20, 0)},
        {.kind = TX_EV_END},
        {.kind = TX_EV_TEXT, .index = 0, .text = "ignored", .text_len = 7},
    };
    tg_buf_t out = {0};
    run_events(&r, evs, sizeof(evs) / sizeof(evs[0]), &out);
    assert_string_equal(
        out.base,
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_chatcmpl-1\",\"type\":"
        "\"message\",\"role\":\"assistant\",\"model\":\"pub\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":"
        "null,\"usage\":{\"input_tokens\":0,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,"
        "\"output_tokens\":0}}}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
        "{\"type\":\"text\",\"text\":\"\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
        "\"text_delta\",\"text\":\"Hi\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
        "\"text_delta\",\"text\":\" \\\"you\\\"\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":"
        "{\"type\":\"tool_use\",\"id\":\"call_9\",\"name\":\"get_weather\",\"input\":{}}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
        "\"input_json_delta\",\"partial_json\":\"{\\\"loc\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
        "\"input_json_delta\",\"partial_json\":\"\\\":1}\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\","
        "\"stop_sequence\":null},\"usage\":{\"input_tokens\":30,\"cache_creation_input_tokens\":0,"
        "\"cache_read_input_tokens\":20,\"output_tokens\":7}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    tg_buf_free(&out);
}

static void
test_stream_event_thinking_and_error(void **state)
{
    (void)state;
    tx_request_t r = {.model = "pub", .request_id = "r2"};
    tx_error_t err;
    tx_fail(&err, TX_ERR_OVERLOADED, NULL, NULL, "Overloaded");
    tx_event_t evs[] = {
        {.kind = TX_EV_THINKING, .index = 0, .text = "hmm", .text_len = 3},
        {.kind = TX_EV_THINKING, .index = 0, .signature = "SIG"},
        {.kind = TX_EV_BLOCK_END, .index = 0},
        {.kind = TX_EV_TEXT, .index = 1, .text = "A", .text_len = 1},
        {.kind = TX_EV_ERROR, .error = &err},
        {.kind = TX_EV_END},
    };
    tx_event_t seq[] = {
        {.kind = TX_EV_TEXT, .index = 0, .text = "x", .text_len = 1},
        {.kind = TX_EV_STOP, .stop = TX_STOP_SEQUENCE, .stop_sequence = "\xc3\xa9ND"},
        {.kind = TX_EV_END},
    };
    tg_buf_t so = {0};
    run_events(&r, seq, 3, &so);
    assert_non_null(strstr(so.base, "\"delta\":{\"stop_reason\":\"stop_sequence\",\"stop_sequence\":\"\xc3\xa9ND\"}"));
    assert_non_null(strstr(so.base, "\"id\":\"msg_r2\""));
    tg_buf_free(&so);
    tg_buf_t out = {0};
    run_events(&r, evs, sizeof(evs) / sizeof(evs[0]), &out);
    assert_non_null(strstr(out.base, "\"id\":\"msg_r2\""));
    assert_non_null(strstr(out.base, "\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}"));
    assert_non_null(strstr(out.base, "{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}"));
    assert_non_null(strstr(out.base, "{\"type\":\"signature_delta\",\"signature\":\"SIG\"}"));
    assert_non_null(strstr(out.base, "\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"A\"}"));
    const char *tail = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
                       "\"Overloaded\"}}\n\n";
    assert_true(out.len >= strlen(tail));
    assert_string_equal(out.base + out.len - strlen(tail), tail); /* nothing after the error */
    assert_null(strstr(out.base, "message_stop"));
    tg_buf_free(&out);
}

/* ---------------------------------------------------------------- provider: requests */

static json_t *
encode_ok(const tx_request_t *r, const char *want_url)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_target_t t = {.kind = "anthropic", .base_url = "http://127.0.0.1:9", .upstream_model = "claude-up"};
    tx_http_request_t h;
    tx_error_t err = {0};
    if (P->encode_request(r, &t, &a, &h, &err) != 0)
        fail_msg("encode failed: %s", err.message);
    assert_string_equal(h.url, want_url);
    json_t *body = json_loadb(h.body, h.body_len, 0, NULL);
    assert_non_null(body);
    tg_arena_free(&a);
    return body;
}

static void
assert_json(json_t *v, const char *want)
{
    json_t *w = json_loads(want, JSON_DECODE_ANY, NULL);
    assert_non_null(w);
    if (!json_equal(v, w)) {
        char *got = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("got %s\nwant %s", got, want);
    }
    json_decref(w);
}

static void
test_encode_request_openai_shaped(void **state)
{
    (void)state;
    /* as an OpenAI client would have it: tool calls, two tool messages, a data-URL image, no max_tokens */
    json_t *args = json_pack("{s:s}", "location", "Paris"), *schema = json_pack("{s:s}", "type", "object");
    tx_part_t u1[] = {{.kind = TX_PART_TEXT, .text = "Weather?"},
                      {.kind = TX_PART_IMAGE, .url = "data:image/jpeg;base64,/9j/4AAQ"},
                      {.kind = TX_PART_IMAGE, .url = "https://example.com/x.png"}};
    tx_part_t a1[] = {{.kind = TX_PART_TEXT, .text = ""},
                      {.kind = TX_PART_TOOL_CALL, .id = "call_1", .name = "get_weather", .args = args},
                      {.kind = TX_PART_TOOL_CALL, .id = "call_2", .name = "get_weather"}};
    tx_part_t t1[] = {{.kind = TX_PART_TOOL_RESULT, .id = "call_1", .text = "sunny"}};
    tx_part_t t2[] = {{.kind = TX_PART_TOOL_RESULT, .id = "call_2", .text = "rain", .is_error = 1}};
    tx_part_t u2[] = {{.kind = TX_PART_TEXT, .text = "Thanks"}};
    tx_message_t msgs[] = {{TX_ROLE_USER, u1, 3},
                           {TX_ROLE_ASSISTANT, a1, 3},
                           {TX_ROLE_TOOL, t1, 1},
                           {TX_ROLE_TOOL, t2, 1},
                           {TX_ROLE_USER, u2, 1}};
    tx_tool_t tools[] = {{.name = "get_weather", .description = "W", .parameters = schema}};
    const char *stop[] = {"END"};
    tx_request_t r = {.op = TX_OP_CHAT,
                      .dialect = TX_DIALECT_OPENAI,
                      .model = "pub",
                      .stream = 1,
                      .system = "Be brief.",
                      .messages = msgs,
                      .n_messages = 5,
                      .tools = tools,
                      .n_tools = 1,
                      .tool_choice = TX_TOOL_CHOICE_REQUIRED,
                      .parallel_tool_calls = 0,
                      .max_tokens = -1,
                      .temperature = 1.7,
                      .has_temperature = 1,
                      .top_k = -1,
                      .stop = stop,
                      .n_stop = 1,
                      .seed = 7,
                      .has_seed = 1,
                      .user = "u1",
                      .extra = json_pack("{s:b}", "logprobs", 1)};
    json_t *body = encode_ok(&r, "http://127.0.0.1:9/v1/messages");
    assert_json(
        body,
        "{\"model\":\"claude-up\",\"max_tokens\":4096,\"system\":\"Be brief.\",\"stream\":true,"
        "\"temperature\":1.0,\"stop_sequences\":[\"END\"],\"metadata\":{\"user_id\":\"u1\"},"
        "\"tools\":[{\"name\":\"get_weather\",\"description\":\"W\",\"input_schema\":{\"type\":\"object\"}}],"
        "\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true},"
        "\"messages\":["
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Weather?\"},"
        "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/jpeg\",\"data\":\"/9j/4AAQ\"}},"
        "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://example.com/x.png\"}}]},"
        "{\"role\":\"assistant\",\"content\":["
        "{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":\"get_weather\",\"input\":{\"location\":\"Paris\"}},"
        "{\"type\":\"tool_use\",\"id\":\"call_2\",\"name\":\"get_weather\",\"input\":{}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"call_1\",\"content\":\"sunny\"},"
        "{\"type\":\"tool_result\",\"tool_use_id\":\"call_2\",\"content\":\"rain\",\"is_error\":true},"
        "{\"type\":\"text\",\"text\":\"Thanks\"}]}]}");
    json_decref(body);
    json_decref(r.extra);

    /* count_tokens: no max_tokens, sampling or stream */
    r.op = TX_OP_COUNT_TOKENS;
    r.extra = NULL;
    body = encode_ok(&r, "http://127.0.0.1:9/v1/messages/count_tokens");
    assert_null(json_object_get(body, "max_tokens"));
    assert_null(json_object_get(body, "temperature"));
    assert_null(json_object_get(body, "stream"));
    assert_non_null(json_object_get(body, "tools"));
    json_decref(body);
    json_decref(args);
    json_decref(schema);
}

static void
test_encode_request_ids_json_and_extra(void **state)
{
    (void)state;
    /* Gemini-shaped history: calls without ids, results matched by name */
    tx_part_t u1[] = {{.kind = TX_PART_TEXT, .text = "Go"}};
    tx_part_t a1[] = {{.kind = TX_PART_TOOL_CALL, .name = "a"}, {.kind = TX_PART_TOOL_CALL, .name = "b"}};
    tx_part_t t1[] = {{.kind = TX_PART_TOOL_RESULT, .name = "b", .text = "B"},
                      {.kind = TX_PART_TOOL_RESULT, .name = "a", .text = "A"}};
    tx_message_t msgs[] = {{TX_ROLE_USER, u1, 1}, {TX_ROLE_ASSISTANT, a1, 2}, {TX_ROLE_USER, t1, 2}};
    json_t *schema = json_pack("{s:s, s:{s:{s:s}}}", "type", "object", "properties", "x", "type", "string");
    tx_request_t r = {.op = TX_OP_CHAT,
                      .dialect = TX_DIALECT_ANTHROPIC,
                      .messages = msgs,
                      .n_messages = 3,
                      .max_tokens = 10,
                      .top_k = 5,
                      .parallel_tool_calls = -1,
                      .format = TX_FORMAT_JSON_SCHEMA,
                      .format_schema = schema,
                      .extra = json_pack("{s:{s:s}, s:s}", "thinking", "type", "disabled", "service_tier", "auto")};
    json_t *body = encode_ok(&r, "http://127.0.0.1:9/v1/messages");
    json_t *m = json_object_get(body, "messages");
    assert_json(json_array_get(m, 1),
                "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_tx_0\",\"name\":\"a\","
                "\"input\":{}},{\"type\":\"tool_use\",\"id\":\"toolu_tx_1\",\"name\":\"b\",\"input\":{}}]}");
    assert_json(json_array_get(m, 2),
                "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_tx_1\","
                "\"content\":\"B\"},{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_tx_0\",\"content\":\"A\"}]}");
    assert_json(json_object_get(body, "tools"),
                "[{\"name\":\"json_response\",\"description\":\"Give your final answer by calling this tool: its "
                "input is the answer.\",\"input_schema\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":"
                "\"string\"}}}}]");
    assert_json(json_object_get(body, "tool_choice"), "{\"type\":\"tool\",\"name\":\"json_response\"}");
    assert_json(json_object_get(body, "thinking"), "{\"type\":\"disabled\"}");
    assert_json(json_object_get(body, "service_tier"), "\"auto\"");
    assert_json(json_object_get(body, "top_k"), "5");
    json_decref(body);

    /* JSON with tools of its own: a system instruction instead of the forced tool */
    tx_tool_t tools[] = {{.name = "a"}};
    r.tools = tools;
    r.n_tools = 1;
    r.system = "S";
    body = encode_ok(&r, "http://127.0.0.1:9/v1/messages");
    assert_string_equal(json_string_value(json_object_get(body, "system")),
                        "S\n\nRespond with a single JSON object and nothing else, matching this JSON Schema: "
                        "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"string\"}}}.");
    assert_json(json_object_get(body, "tools"), "[{\"name\":\"a\",\"input_schema\":{\"type\":\"object\"}}]");
    assert_null(json_object_get(body, "tool_choice"));
    json_decref(body);
    json_decref(r.extra);
    json_decref(schema);

    /* embeddings: not offered */
    tg_arena_t a = TG_ARENA_INIT;
    tx_target_t t = {.base_url = "http://x"};
    tx_http_request_t h;
    tx_error_t err;
    tx_request_t e = {.op = TX_OP_EMBED};
    assert_int_equal(P->encode_request(&e, &t, &a, &h, &err), -1);
    assert_int_equal(err.kind, TX_ERR_INVALID_REQUEST);
    tg_arena_free(&a);
}

/* ---------------------------------------------------------------- provider: responses */

static void
test_decode_response_golden(void **state)
{
    (void)state;
    size_t len;
    char *body = slurp("tests/golden/anthropic/response.json", &len);
    tg_arena_t a = TG_ARENA_INIT;
    tx_request_t r = {.op = TX_OP_CHAT};
    tx_response_t resp;
    tx_error_t err;
    assert_int_equal(P->decode_response(&r, body, len, &a, &resp, &err), 0);
    assert_string_equal(resp.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_string_equal(resp.model, "claude-sonnet-4-20250514");
    assert_int_equal(resp.n_parts, 2);
    assert_int_equal(resp.parts[0].kind, TX_PART_TEXT);
    assert_string_equal(resp.parts[0].text, "I'll check the current weather in Paris for you.");
    assert_int_equal(resp.parts[1].kind, TX_PART_TOOL_CALL);
    assert_string_equal(resp.parts[1].id, "toolu_01A09q90qw90lq917835lq9");
    assert_string_equal(tx_args_text(&resp.parts[1], &a), "{\"location\":\"Paris\",\"unit\":\"celsius\"}");
    assert_int_equal(resp.stop, TX_STOP_TOOL_USE);
    assert_string_equal(resp.raw_stop, "tool_use");
    assert_null(resp.stop_sequence);
    assert_true(resp.usage.known);
    assert_int_equal(resp.usage.input, 472 + 120 + 2048);
    assert_int_equal(resp.usage.cache_read, 2048);
    assert_int_equal(resp.usage.cache_write, 120);
    assert_int_equal(resp.usage.output, 89);

    /* and back out through the dialect: the same usage split */
    tg_buf_t out = {0};
    tx_request_t cr = {.model = "claude-sonnet-4-20250514"};
    assert_int_equal(D->encode_response(&cr, &resp, &a, &out), 0);
    json_t *got = json_loadb(out.base, out.len, 0, NULL), *want = json_loadb(body, len, 0, NULL);
    json_t *wu = json_object_get(want, "usage");
    json_object_del(wu, "cache_creation");
    json_object_del(wu, "service_tier");
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    tg_buf_free(&out);
    free(body);
    tg_arena_free(&a);
}

static void
test_decode_response_variants(void **state)
{
    (void)state;
    tg_arena_t a = TG_ARENA_INIT;
    tx_response_t resp;
    tx_error_t err;
    const char *b = "{\"id\":\"msg_1\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"t\",\"signature\":\"s\"},"
                    "{\"type\":\"redacted_thinking\",\"data\":\"xyz\"},{\"type\":\"server_tool_use\",\"id\":\"x\"},"
                    "{\"type\":\"text\",\"text\":\"Hello\"}],\"stop_reason\":\"stop_sequence\","
                    "\"stop_sequence\":\"END\",\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}";
    tx_request_t r = {.op = TX_OP_CHAT};
    assert_int_equal(P->decode_response(&r, b, strlen(b), &a, &resp, &err), 0);
    assert_int_equal(resp.n_parts, 3);
    assert_int_equal(resp.parts[0].kind, TX_PART_THINKING);
    assert_string_equal(resp.parts[0].signature, "s");
    assert_int_equal(resp.parts[1].kind, TX_PART_REDACTED_THINKING);
    assert_string_equal(resp.parts[1].text, "xyz");
    assert_int_equal(resp.stop, TX_STOP_SEQUENCE);
    assert_string_equal(resp.stop_sequence, "END");
    assert_int_equal(resp.usage.input, 3);

    /* the forced JSON tool comes back as text with a natural end */
    b = "{\"id\":\"msg_2\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"json_response\","
        "\"input\":{\"x\":\"y\"}}],\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}";
    r.format = TX_FORMAT_JSON_OBJECT;
    assert_int_equal(P->decode_response(&r, b, strlen(b), &a, &resp, &err), 0);
    assert_int_equal(resp.n_parts, 1);
    assert_int_equal(resp.parts[0].kind, TX_PART_TEXT);
    assert_string_equal(resp.parts[0].text, "{\"x\":\"y\"}");
    assert_int_equal(resp.stop, TX_STOP_END);

    /* stop reasons */
    assert_int_equal(tx_anthropic_stop_parse("model_context_window_exceeded"), TX_STOP_MAX_TOKENS);
    assert_int_equal(tx_anthropic_stop_parse("refusal"), TX_STOP_CONTENT_FILTER);
    assert_int_equal(tx_anthropic_stop_parse("pause_turn"), TX_STOP_PAUSE);
    assert_int_equal(tx_anthropic_stop_parse("brand_new"), TX_STOP_END);
    assert_string_equal(tx_anthropic_stop_name(TX_STOP_MAX_TOKENS, "model_context_window_exceeded"),
                        "model_context_window_exceeded");
    assert_string_equal(tx_anthropic_stop_name(TX_STOP_MAX_TOKENS, "length"), "max_tokens");

    /* count_tokens */
    r = (tx_request_t){.op = TX_OP_COUNT_TOKENS};
    assert_int_equal(P->decode_response(&r, "{\"input_tokens\":14}", 19, &a, &resp, &err), 0);
    assert_int_equal(resp.input_tokens, 14);

    /* unreadable bodies are the upstream's fault */
    r.op = TX_OP_CHAT;
    assert_int_equal(P->decode_response(&r, "{\"content\":5}", 13, &a, &resp, &err), -1);
    assert_int_equal(err.kind, TX_ERR_UPSTREAM);
    assert_int_equal(P->decode_response(&r, "<html>", 6, &a, &resp, &err), -1);
    assert_int_equal(err.kind, TX_ERR_UPSTREAM);
    tg_arena_free(&a);
}

static void
test_decode_error(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *type;
        tx_error_kind_t kind;
        int want_status;
    } cases[] = {
        {400, "invalid_request_error", TX_ERR_INVALID_REQUEST, 400},
        {401, "authentication_error", TX_ERR_AUTHENTICATION, 401},
        {402, "billing_error", TX_ERR_BILLING, 402},
        {403, "permission_error", TX_ERR_PERMISSION, 403},
        {404, "not_found_error", TX_ERR_NOT_FOUND, 404},
        {413, "request_too_large", TX_ERR_TOO_LARGE, 413},
        {429, "rate_limit_error", TX_ERR_RATE_LIMIT, 429},
        {500, "api_error", TX_ERR_SERVER, 500},
        {529, "overloaded_error", TX_ERR_OVERLOADED, 0},
        {422, "invalid_request_error", TX_ERR_UNPROCESSABLE, 422},
        {503, "api_error", TX_ERR_OVERLOADED, 503},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"msg %d\"},\"request_id\":\"req_x\"}",
                 cases[i].type, cases[i].status);
        tx_error_t e;
        P->decode_error(cases[i].status, body, strlen(body), &e);
        assert_int_equal(e.kind, cases[i].kind);
        assert_int_equal(e.status, cases[i].want_status);
        char want[32];
        snprintf(want, sizeof(want), "msg %d", cases[i].status);
        assert_string_equal(e.message, want);
    }
    size_t len;
    char *b = slurp("tests/golden/anthropic/error-400.json", &len);
    tx_error_t e;
    P->decode_error(400, b, len, &e);
    assert_string_equal(e.code, "context_length_exceeded");
    free(b);
    b = slurp("tests/golden/anthropic/error-529.json", &len);
    P->decode_error(529, b, len, &e);
    assert_int_equal(e.kind, TX_ERR_OVERLOADED);
    assert_string_equal(e.message, "Overloaded");
    free(b);
    /* not Anthropic's shape: the status decides, the raw text is kept */
    P->decode_error(502, "<html>bad gateway</html>", 24, &e);
    assert_int_equal(e.kind, TX_ERR_UPSTREAM);
    assert_string_equal(e.message, "Anthropic answered HTTP 502: <html>bad gateway</html>");
    P->decode_error(504, NULL, 0, &e);
    assert_int_equal(e.kind, TX_ERR_TIMEOUT);
}

/* ---------------------------------------------------------------- provider: streams */

static void
test_stream_golden(void **state)
{
    (void)state;
    size_t len;
    char *bytes = slurp("tests/golden/anthropic/stream.txt", &len);
    tx_request_t r = {.op = TX_OP_CHAT, .stream = 1};
    int rc;
    /* fed whole, and byte by byte: the same events */
    char *log = decode_stream(&r, bytes, len, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(log,
                        "START msg_014p7gG3wDgGV9EUtLvnow3U claude-sonnet-4-20250514 in=2640 cr=2048 cw=120 out=2\n"
                        "TEXT 0 \n"
                        "TEXT 0 I'll check the current\n"
                        "TEXT 0  weather in Paris for you.\n"
                        "BLOCK_END 0\n"
                        "TOOL_START 1 toolu_01T1x1fJ34qAmk2tNTrN7Up6 get_weather\n"
                        "TOOL_ARGS 1 {\"location\": \"Par\n"
                        "TOOL_ARGS 1 is\", \"unit\": \"celsius\"}\n"
                        "BLOCK_END 1\n"
                        "STOP 4 -\n"
                        "USAGE in=2640 cr=2048 cw=120 out=89\n"
                        "END\n");
    free(log);
    free(bytes);
}

static void
test_stream_error_and_json_mode(void **state)
{
    (void)state;
    tx_request_t r = {.op = TX_OP_CHAT, .stream = 1};
    int rc;
    const char *s =
        "event: message_start\r\n"
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_e\",\"model\":\"c\",\"usage\":"
        "{\"input_tokens\":10,\"output_tokens\":1}}}\r\n\r\n"
        "event: content_block_start\r\n"
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":"
        "\"\"}}\r\n\r\n"
        "event: content_block_delta\r\n"
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"
        "\"Hel\"}}\r\n\r\n"
        "event: brand_new_event\r\ndata: {\"type\":\"brand_new_event\"}\r\n\r\n"
        "event: error\r\n"
        "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\r\n\r\n"
        "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";
    char *log = decode_stream(&r, s, strlen(s), &rc);
    char want[256];
    snprintf(want, sizeof(want), "START msg_e c in=10 cr=0 cw=0 out=1\nTEXT 0 \nTEXT 0 Hel\nERROR %d Overloaded\n",
             TX_ERR_OVERLOADED);
    assert_string_equal(log, want); /* nothing after the error, not even the stray message_stop */
    free(log);

    /* the forced JSON tool streams as text */
    r.format = TX_FORMAT_JSON_SCHEMA;
    s = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
        "{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"json_response\",\"input\":{}}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
        "\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
        "\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},"
        "\"usage\":{\"output_tokens\":5}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    log = decode_stream(&r, s, strlen(s), &rc);
    assert_string_equal(log, "TEXT 0 \nTEXT 0 {\"a\":\nTEXT 0 1}\nBLOCK_END 0\nSTOP 1 -\n"
                             "USAGE in=0 cr=0 cw=0 out=5\nEND\n");
    free(log);

    /* garbage in a data line is an unreadable stream */
    r.format = TX_FORMAT_TEXT;
    log = decode_stream(&r, "event: message_start\ndata: {nope\n\n", 34, &rc);
    assert_int_equal(rc, -1);
    free(log);
}

/* Anthropic in, Anthropic out: the golden stream through provider and dialect keeps its content. */
struct relay {
    const tx_request_t *r;
    void *dstate;
    tg_buf_t *out;
};

static int
relay_event(void *ctx, const tx_event_t *ev)
{
    struct relay *rl = ctx;
    return D->stream_event(rl->dstate, rl->r, ev, rl->out);
}

static int
relay_sse(void *p, const tg_sse_event_t *e)
{
    void **c = p;
    tx_frame_t f = {.event = e->event, .event_len = e->event_len, .data = e->data, .data_len = e->data_len};
    tx_error_t err;
    return P->stream_frame(c[0], ((struct relay *)c[1])->r, &f, c[2], relay_event, c[1], &err);
}

static void
test_stream_relay(void **state)
{
    (void)state;
    size_t len;
    char *bytes = slurp("tests/golden/anthropic/stream.txt", &len);
    tx_request_t r = {.op = TX_OP_CHAT, .model = "claude-sonnet-4-20250514", .stream = 1};
    tg_arena_t a = TG_ARENA_INIT;
    tg_buf_t out = {0};
    struct relay rl = {.r = &r, .dstate = calloc(1, D->stream_state_size), .out = &out};
    void *c[3] = {calloc(1, P->stream_state_size), &rl, &a};
    tg_sse_parser_t sp;
    tg_sse_init(&sp, 1 << 20);
    assert_int_equal(tg_sse_feed(&sp, bytes, len, relay_sse, c), 0);
    tg_sse_dispose(&sp);
    terminate(&out);
    assert_non_null(strstr(out.base, "\"id\":\"msg_014p7gG3wDgGV9EUtLvnow3U\""));
    assert_non_null(strstr(out.base, "\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":120,"
                                     "\"cache_read_input_tokens\":2048,\"output_tokens\":2}"));
    assert_non_null(strstr(out.base, "\"partial_json\":\"{\\\"location\\\": \\\"Par\"}"));
    assert_non_null(strstr(out.base, "\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":"
                                     "{\"input_tokens\":472,\"cache_creation_input_tokens\":120,"
                                     "\"cache_read_input_tokens\":2048,\"output_tokens\":89}}"));
    assert_non_null(strstr(out.base, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    free(rl.dstate);
    free(c[0]);
    free(bytes);
    tg_buf_free(&out);
    tg_arena_free(&a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_request_full),
        cmocka_unit_test(test_decode_request_simple_and_count),
        cmocka_unit_test(test_decode_request_errors),
        cmocka_unit_test(test_encode_response),
        cmocka_unit_test(test_encode_error),
        cmocka_unit_test(test_encode_error_utf8),
        cmocka_unit_test(test_stream_event_from_openai_like),
        cmocka_unit_test(test_stream_event_thinking_and_error),
        cmocka_unit_test(test_encode_request_openai_shaped),
        cmocka_unit_test(test_encode_request_ids_json_and_extra),
        cmocka_unit_test(test_decode_response_golden),
        cmocka_unit_test(test_decode_response_variants),
        cmocka_unit_test(test_decode_error),
        cmocka_unit_test(test_stream_golden),
        cmocka_unit_test(test_stream_error_and_json_mode),
        cmocka_unit_test(test_stream_relay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
