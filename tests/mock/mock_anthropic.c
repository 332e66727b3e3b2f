/*
 * The mock provider's Anthropic Messages wire format (shared/ref/providers.md §3): POST …/v1/messages and
 * …/v1/messages/count_tokens, with Anthropic's checks (x-api-key, anthropic-version, max_tokens), its exact
 * message and SSE shapes (ping included, tool_use blocks streamed as input_json_delta fragments, cumulative
 * usage in message_delta), its error bodies and its in-stream `event: error`.
 *
 * The scenario is the shared one (README.md): the system prompt counts as one message, input_tokens
 * excludes the `cached` directive's tokens, which are reported as cache_read_input_tokens instead.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mock.h"

struct scenario {
    const char *rid;
    const char *model;
    json_t *tools; /* the request's tools array, or NULL */
    uint64_t seq;
    int64_t prompt, cached, ntokens, max_tokens;
    int length_cut;
    struct mock_directives d;
};

static int
ends_with(h2o_iovec_t s, const char *suffix)
{
    size_t n = strlen(suffix);
    return s.len >= n && memcmp(s.base + s.len - n, suffix, n) == 0;
}

/* Anthropic's error body, sent through the reply engine so that delay_ms applies to errors too. */
static void
send_error(h2o_req_t *req, const struct mock_directives *d, const char *rid, int status, const char *type,
           const char *message)
{
    json_t *body = json_pack("{s:s, s:{s:s, s:s}, s:s}", "type", "error", "error", "type", type, "message", message,
                             "request_id", rid);
    struct mock_reply *r = mock_reply_new(req, status, "application/json");
    mock_reply_event_json(r, NULL, body, NULL);
    json_decref(body);
    mock_reply_start(r, d);
}

static void
send_status_error(h2o_req_t *req, const struct scenario *s, int status)
{
    static const struct {
        int status;
        const char *type, *message;
    } ERRORS[] = {
        {400, "invalid_request_error", "mock invalid request"},
        {401, "authentication_error", "invalid x-api-key"},
        {402, "billing_error", "Your credit balance is too low to access the Anthropic API."},
        {403, "permission_error", "Your API key does not have permission to use the specified resource."},
        {404, "not_found_error", "The requested resource could not be found."},
        {413, "request_too_large", "Request exceeds the maximum allowed number of bytes."},
        {429, "rate_limit_error", "This request would exceed the rate limit for your organization (mock)."},
        {500, "api_error", "Internal server error"},
        {529, "overloaded_error", "Overloaded"},
    };
    const char *type = status >= 500 ? "api_error" : "invalid_request_error", *message = "mock error";
    for (size_t i = 0; i < sizeof(ERRORS) / sizeof(ERRORS[0]); i++)
        if (ERRORS[i].status == status) {
            type = ERRORS[i].type;
            message = ERRORS[i].message;
        }
    if (status == 429)
        mock_add_header(req, "retry-after", "1");
    send_error(req, &s->d, s->rid, status, type, message);
}

static const char *
tool_name(const struct scenario *s, size_t i)
{
    size_t n = json_array_size(s->tools);
    const char *name = n > 0 ? json_string_value(json_object_get(json_array_get(s->tools, i % n), "name")) : NULL;
    return name != NULL ? name : "get_weather";
}

static json_t *
usage(const struct scenario *s, int64_t output)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:s}", "input_tokens", (json_int_t)(s->prompt - s->cached),
                     "cache_creation_input_tokens", (json_int_t)0, "cache_read_input_tokens", (json_int_t)s->cached,
                     "output_tokens", (json_int_t)output, "service_tier", "standard");
}

static const char *
stop_reason(const struct scenario *s)
{
    return s->d.tool_calls > 0 ? "tool_use" : s->length_cut ? "max_tokens" : "end_turn";
}

static void
reply_message(h2o_req_t *req, const struct scenario *s)
{
    json_t *content = json_array();
    if (s->d.tool_calls > 0) {
        for (int64_t i = 0; i < s->d.tool_calls; i++) {
            char id[64];
            snprintf(id, sizeof(id), "toolu_mock_%" PRIu64 "_%" PRId64, s->seq, i);
            json_array_append_new(content, json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", id, "name",
                                                     tool_name(s, (size_t)i), "input",
                                                     json_loads(mock_tool_args((size_t)i), 0, NULL)));
        }
    } else if (s->ntokens > 0) {
        size_t cap = (size_t)s->ntokens * 16 + 1, at = 0;
        char *text = malloc(cap);
        for (int64_t i = 0; i < s->ntokens; i++) {
            const char *w = mock_word((size_t)i);
            memcpy(text + at, w, strlen(w));
            at += strlen(w);
        }
        json_array_append_new(content, json_pack("{s:s, s:s%}", "type", "text", "text", text, at));
        free(text);
    }
    char id[48];
    snprintf(id, sizeof(id), "msg_mock_%" PRIu64, s->seq);
    json_t *msg = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:n, s:o}", "id", id, "type", "message", "role",
                            "assistant", "model", s->model, "content", content, "stop_reason", stop_reason(s),
                            "stop_sequence", "usage", usage(s, s->ntokens));
    char *body = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    size_t len = strlen(body);
    struct mock_reply *r = mock_reply_new(req, 200, "application/json");
    if (s->d.reset_after >= 0) { /* half the body under the full content-length, then the connection drops */
        mock_reply_event(r, body, len / 2);
        mock_reply_cut(r);
        mock_reply_event(r, body + len / 2, len - len / 2);
    } else {
        mock_reply_event(r, body, len);
    }
    mock_reply_served(r, s->prompt, s->ntokens, s->cached);
    free(body);
    mock_reply_start(r, &s->d);
}

static void
sse(struct mock_reply *r, const char *name, json_t *data)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "event: %s\ndata: ", name);
    mock_reply_event_json(r, prefix, data, "\n\n");
    json_decref(data);
}

/* Before each content event (and once after the last, before its block stops): reset_after cuts the
 * connection there (the events queued after the cut are never sent), error_after ends the stream with
 * Anthropic's in-stream error (1: queue nothing more). reset_after wins at the same K. */
static int
gate(struct mock_reply *r, const struct scenario *s, int64_t k)
{
    if (s->d.reset_after == k) {
        mock_reply_cut(r);
        return 0;
    }
    if (s->d.error_after == k && (s->d.reset_after < 0 || s->d.reset_after > k)) {
        sse(r, "error",
            json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", "overloaded_error", "message",
                      "Overloaded"));
        return 1;
    }
    return 0;
}

static void
reply_stream(h2o_req_t *req, const struct scenario *s)
{
    struct mock_reply *r = mock_reply_new(req, 200, "text/event-stream; charset=utf-8");
    char id[48];
    snprintf(id, sizeof(id), "msg_mock_%" PRIu64, s->seq);
    sse(r, "message_start",
        json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:[], s:n, s:n, s:o}}", "type", "message_start", "message", "id", id,
                  "type", "message", "role", "assistant", "model", s->model, "content", "stop_reason", "stop_sequence",
                  "usage", usage(s, s->ntokens > 0 ? 1 : 0)));
    int64_t k = 0, total = s->d.tool_calls > 0 ? 2 * s->d.tool_calls : s->ntokens;
    int stopped = 0;
    if (s->d.tool_calls > 0) {
        for (int64_t i = 0; i < s->d.tool_calls && !stopped; i++) {
            char tid[64];
            snprintf(tid, sizeof(tid), "toolu_mock_%" PRIu64 "_%" PRId64, s->seq, i);
            sse(r, "content_block_start",
                json_pack("{s:s, s:I, s:{s:s, s:s, s:s, s:{}}}", "type", "content_block_start", "index", (json_int_t)i,
                          "content_block", "type", "tool_use", "id", tid, "name", tool_name(s, (size_t)i), "input"));
            if (i == 0)
                sse(r, "ping", json_pack("{s:s}", "type", "ping"));
            const char *args = mock_tool_args((size_t)i);
            size_t len = strlen(args), half = len / 2;
            for (int f = 0; f < 2 && !stopped; f++, k++) {
                if ((stopped = gate(r, s, k)))
                    break;
                sse(r, "content_block_delta",
                    json_pack("{s:s, s:I, s:{s:s, s:s%}}", "type", "content_block_delta", "index", (json_int_t)i,
                              "delta", "type", "input_json_delta", "partial_json", f == 0 ? args : args + half,
                              f == 0 ? half : len - half));
            }
            if (!stopped && k == total)
                stopped = gate(r, s, k);
            if (!stopped)
                sse(r, "content_block_stop",
                    json_pack("{s:s, s:I}", "type", "content_block_stop", "index", (json_int_t)i));
        }
    } else {
        sse(r, "content_block_start",
            json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_start", "index", 0, "content_block", "type",
                      "text", "text", ""));
        sse(r, "ping", json_pack("{s:s}", "type", "ping"));
        for (; k <= total && !stopped; k++) {
            if ((stopped = gate(r, s, k)) || k == total)
                break;
            sse(r, "content_block_delta",
                json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_delta", "index", 0, "delta", "type",
                          "text_delta", "text", mock_word((size_t)k)));
        }
        if (!stopped)
            sse(r, "content_block_stop", json_pack("{s:s, s:i}", "type", "content_block_stop", "index", 0));
    }
    if (!stopped) {
        json_t *u = usage(s, s->ntokens);
        json_object_del(u, "service_tier");
        sse(r, "message_delta",
            json_pack("{s:s, s:{s:s, s:n}, s:o}", "type", "message_delta", "delta", "stop_reason", stop_reason(s),
                      "stop_sequence", "usage", u));
        mock_reply_served(r, s->prompt, s->ntokens, s->cached);
        sse(r, "message_stop", json_pack("{s:s}", "type", "message_stop"));
    }
    mock_reply_start(r, &s->d);
}

static void
on_messages(h2o_req_t *req, int count)
{
    struct scenario s = {.seq = mock_next_seq()};
    char rid[40];
    snprintf(rid, sizeof(rid), "req_mock_%" PRIu64, s.seq);
    s.rid = h2o_strdup(&req->pool, rid, SIZE_MAX).base;
    mock_add_header(req, "request-id", s.rid);
    mock_add_header(req, "x-request-id", s.rid);
    mock_directives_init(&s.d);
    struct mock_directives none = s.d;

    json_t *root = req->entity.base != NULL ? json_loadb(req->entity.base, req->entity.len, 0, NULL) : NULL;
    mock_record(req, root);
    const char *key = mock_api_key();
    h2o_iovec_t got = mock_header(req, "x-api-key");
    if (key != NULL && (got.base == NULL || got.len != strlen(key) || memcmp(got.base, key, got.len) != 0)) {
        send_error(req, &none, s.rid, 401, "authentication_error", "invalid x-api-key");
        goto done;
    }
    if (mock_header(req, "anthropic-version").base == NULL) {
        send_error(req, &none, s.rid, 400, "invalid_request_error", "anthropic-version: header is required");
        goto done;
    }
    if (!json_is_object(root)) {
        send_error(req, &none, s.rid, 400, "invalid_request_error",
                   "There was an issue with the JSON body of your request (mock).");
        goto done;
    }
    json_t *model = json_object_get(root, "model"), *messages = json_object_get(root, "messages");
    json_t *max = json_object_get(root, "max_tokens");
    if (!json_is_string(model)) {
        send_error(req, &none, s.rid, 400, "invalid_request_error", "model: Field required");
        goto done;
    }
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        send_error(req, &none, s.rid, 400, "invalid_request_error", "messages: Field required (a non-empty list)");
        goto done;
    }
    if (!count && (!json_is_integer(max) || json_integer_value(max) < 1)) {
        send_error(req, &none, s.rid, 400, "invalid_request_error", "max_tokens: Field required");
        goto done;
    }

    size_t last_user = SIZE_MAX, i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role != NULL && strcmp(role, "user") == 0)
            last_user = i;
    }
    json_t *system = json_object_get(root, "system");
    if (system != NULL && !json_is_null(system))
        s.prompt += mock_message_tokens(mock_content_text(system, NULL));
    json_array_foreach(messages, i, m)
    {
        s.prompt += mock_message_tokens(mock_content_text(json_object_get(m, "content"), i == last_user ? &s.d : NULL));
    }
    mock_directives_from_headers(&s.d, req);

    s.model = json_string_value(model);
    s.tools = json_is_array(json_object_get(root, "tools")) ? json_object_get(root, "tools") : NULL;
    s.cached = s.d.cached < 0 ? 0 : s.d.cached < s.prompt ? s.d.cached : s.prompt;
    s.ntokens = s.d.tokens >= 0 ? s.d.tokens : MOCK_DEFAULT_TOKENS;
    if (!count && json_integer_value(max) < s.ntokens) {
        s.ntokens = json_integer_value(max);
        s.length_cut = 1;
    }
    if (s.d.status >= 100 && s.d.status != 200) {
        send_status_error(req, &s, (int)s.d.status);
    } else if (count) {
        json_t *body = json_pack("{s:I}", "input_tokens", (json_int_t)s.prompt);
        struct mock_reply *r = mock_reply_new(req, 200, "application/json");
        mock_reply_event_json(r, NULL, body, NULL);
        json_decref(body);
        mock_reply_start(r, &s.d);
    } else if (json_is_true(json_object_get(root, "stream"))) {
        reply_stream(req, &s);
    } else {
        reply_message(req, &s);
    }
done:
    json_decref(root);
}

int
mock_anthropic_route(h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized;
    int count;
    if (ends_with(path, "/v1/messages"))
        count = 0;
    else if (ends_with(path, "/v1/messages/count_tokens"))
        count = 1;
    else
        return 0;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        struct mock_directives none;
        mock_directives_init(&none);
        send_error(req, &none, "req_mock_0", 405, "invalid_request_error", "Method not allowed (use POST)");
        return 1;
    }
    on_messages(req, count);
    return 1;
}
