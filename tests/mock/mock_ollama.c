/*
 * The mock provider's Ollama native wire format (shared/ref/providers.md §7.3): POST /api/chat (JSON, or
 * NDJSON with application/x-ndjson, streaming unless "stream":false), POST /api/embed and GET /api/tags.
 * No authentication, as Ollama; errors as {"error": str}. The scenario (prompt tokens, words,
 * directives) is the shared one of mock.h; README.md has the details. Ollama's OpenAI-compatible surface
 * (/v1/chat/completions) is the core's OpenAI path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "mock.h"

#define MAX_DIMENSION     4096
#define DEFAULT_DIMENSION 8

static int
path_is(h2o_req_t *req, const char *p)
{
    return h2o_memis(req->path_normalized.base, req->path_normalized.len, p, strlen(p));
}

/* Ollama's error body; d (may be NULL) for delay_ms. */
static void
send_error(h2o_req_t *req, int status, const char *message, const struct mock_directives *d)
{
    json_t *b = json_pack("{s:s}", "error", message);
    struct mock_reply *r = mock_reply_new(req, status, "application/json; charset=utf-8");
    mock_reply_event_json(r, NULL, b, NULL);
    json_decref(b);
    mock_reply_start(r, d);
}

static void
send_status_error(h2o_req_t *req, int status, const char *model, const struct mock_directives *d)
{
    char msg[300];
    if (status == 404)
        snprintf(msg, sizeof(msg), "model \"%.200s\" not found, try pulling it first", model);
    else if (status == 400)
        snprintf(msg, sizeof(msg), "mock error (status directive)");
    else if (status == 500)
        snprintf(msg, sizeof(msg), "llama runner process has terminated: mock failure");
    else if (status == 503)
        snprintf(msg, sizeof(msg), "server busy, please try again.  maximum pending requests exceeded");
    else
        snprintf(msg, sizeof(msg), "mock error %d", status);
    send_error(req, status, msg, d);
}

static size_t
text_bytes(json_t *content, struct mock_directives *scan_into)
{
    if (!json_is_string(content))
        return 0;
    if (scan_into != NULL)
        mock_directives_scan(scan_into, json_string_value(content), json_string_length(content));
    return json_string_length(content);
}

static const char *
tool_name(json_t *root, size_t i)
{
    json_t *tools = json_object_get(root, "tools");
    size_t n = json_array_size(tools);
    const char *name =
        n > 0 ? json_string_value(json_object_get(json_object_get(json_array_get(tools, i % n), "function"), "name"))
              : NULL;
    return name != NULL ? name : "get_weather";
}

/* Go's time.Time JSON form in UTC, as Ollama writes created_at. */
static void
now_rfc3339(char *out, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%09ldZ", ts.tv_nsec);
}

struct scenario {
    int64_t prompt, completion, n_calls;
    int length_cut;
    const char *model;
};

/* A line's common members: model, created_at, an assistant message with content. */
static json_t *
line(const struct scenario *s, const char *content)
{
    char t[64];
    now_rfc3339(t, sizeof(t));
    return json_pack("{s:s, s:s, s:{s:s, s:s}}", "model", s->model, "created_at", t, "message", "role", "assistant",
                     "content", content);
}

/* The done members: reason, durations in nanoseconds, counts. */
static void
add_done(json_t *o, const struct scenario *s)
{
    json_object_set_new(o, "done_reason", json_string(s->length_cut && s->n_calls == 0 ? "length" : "stop"));
    json_object_set_new(o, "done", json_true());
    json_object_set_new(o, "total_duration", json_integer(1000000 + 250000 * (s->prompt + s->completion)));
    json_object_set_new(o, "load_duration", json_integer(500000));
    json_object_set_new(o, "prompt_eval_count", json_integer(s->prompt));
    json_object_set_new(o, "prompt_eval_duration", json_integer(250000 * s->prompt));
    json_object_set_new(o, "eval_count", json_integer(s->completion));
    json_object_set_new(o, "eval_duration", json_integer(250000 * s->completion));
}

static json_t *
tool_call(json_t *root, size_t i)
{
    json_t *args = json_loads(mock_tool_args(i), 0, NULL);
    return json_pack("{s:{s:s, s:o}}", "function", "name", tool_name(root, i), "arguments", args);
}

static void
reply_json(h2o_req_t *req, json_t *root, const struct scenario *s, const struct mock_directives *d)
{
    json_t *o;
    if (s->n_calls > 0) {
        o = line(s, "");
        json_t *calls = json_array();
        for (int64_t i = 0; i < s->n_calls; i++)
            json_array_append_new(calls, tool_call(root, (size_t)i));
        json_object_set_new(json_object_get(o, "message"), "tool_calls", calls);
    } else {
        size_t cap = (size_t)s->completion * 16 + 1, at = 0;
        char *text = h2o_mem_alloc_pool(&req->pool, cap);
        text[0] = '\0';
        for (int64_t i = 0; i < s->completion; i++)
            at += (size_t)snprintf(text + at, cap - at, "%s", mock_word((size_t)i));
        o = line(s, text);
    }
    add_done(o, s);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    size_t len = strlen(text);
    struct mock_reply *r = mock_reply_new(req, 200, "application/json; charset=utf-8");
    if (d->reset_after >= 0) { /* half the body under the full content-length, then the connection drops */
        mock_reply_event(r, text, len / 2);
        mock_reply_cut(r);
        mock_reply_event(r, text + len / 2, len - len / 2);
    } else {
        mock_reply_event(r, text, len);
    }
    mock_reply_served(r, s->prompt, s->completion, 0);
    free(text);
    mock_reply_start(r, d);
}

static void
ndjson(struct mock_reply *r, json_t *o)
{
    mock_reply_event_json(r, NULL, o, "\n");
    json_decref(o);
}

/* After K content lines: reset_after cuts the connection, error_after sends Ollama's error line and ends
 * the response. Returns 1 when the stream stops here. */
static int
maybe_stop(struct mock_reply *r, const struct mock_directives *d, int64_t sent)
{
    if (d->reset_after == sent) {
        mock_reply_cut(r);
        mock_reply_event(r, "\n", 1); /* the engine aborts only when something follows the cut */
        return 1;
    }
    if (d->error_after == sent) {
        ndjson(r, json_pack("{s:s}", "error",
                            "an error was encountered while running the model: mock mid-stream "
                            "failure"));
        return 1;
    }
    return 0;
}

static void
reply_stream(h2o_req_t *req, json_t *root, const struct scenario *s, const struct mock_directives *d)
{
    struct mock_reply *r = mock_reply_new(req, 200, "application/x-ndjson");
    int64_t sent = 0;
    if (maybe_stop(r, d, sent))
        goto start;
    if (s->n_calls > 0) {
        for (int64_t i = 0; i < s->n_calls; i++) { /* each call whole, in a line of its own */
            json_t *o = line(s, "");
            json_object_set_new(json_object_get(o, "message"), "tool_calls",
                                json_pack("[o]", tool_call(root, (size_t)i)));
            json_object_set_new(o, "done", json_false());
            ndjson(r, o);
            if (maybe_stop(r, d, ++sent))
                goto start;
        }
    } else {
        for (int64_t i = 0; i < s->completion; i++) {
            json_t *o = line(s, mock_word((size_t)i));
            json_object_set_new(o, "done", json_false());
            ndjson(r, o);
            if (maybe_stop(r, d, ++sent))
                goto start;
        }
    }
    json_t *o = line(s, "");
    add_done(o, s);
    ndjson(r, o);
    mock_reply_served(r, s->prompt, s->completion, 0);
start:
    mock_reply_start(r, d);
}

static void
on_chat(h2o_req_t *req)
{
    json_t *root = req->entity.base != NULL ? json_loadb(req->entity.base, req->entity.len, 0, NULL) : NULL;
    mock_record(req, root);
    json_t *messages = json_object_get(root, "messages");
    const char *model = json_string_value(json_object_get(root, "model"));
    if (!json_is_object(root)) {
        send_error(req, 400, "invalid character looking for beginning of value (mock)", NULL);
        goto done;
    }
    if (model == NULL || model[0] == '\0') {
        send_error(req, 400, "model is required", NULL);
        goto done;
    }
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        send_error(req, 400, "messages are required (mock)", NULL);
        goto done;
    }
    struct mock_directives d;
    mock_directives_init(&d);
    size_t last_user = SIZE_MAX, i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role != NULL && strcmp(role, "user") == 0)
            last_user = i;
    }
    struct scenario s = {.model = model};
    json_array_foreach(messages, i, m)
    {
        s.prompt += mock_message_tokens(text_bytes(json_object_get(m, "content"), i == last_user ? &d : NULL));
    }
    mock_directives_from_headers(&d, req);
    if (d.status >= 100 && d.status != 200) {
        send_status_error(req, (int)d.status, model, &d);
        goto done;
    }
    s.completion = d.tokens >= 0 ? d.tokens : MOCK_DEFAULT_TOKENS;
    json_t *np = json_object_get(json_object_get(root, "options"), "num_predict");
    if (json_is_integer(np) && json_integer_value(np) >= 0 && json_integer_value(np) < s.completion) {
        s.completion = json_integer_value(np);
        s.length_cut = 1;
    }
    s.n_calls = d.tool_calls > 0 ? d.tool_calls : 0;
    int64_t content_events = s.n_calls > 0 ? s.n_calls : s.completion;
    if (d.reset_after > content_events)
        d.reset_after = -1;
    if (d.error_after > content_events || d.error_after == d.reset_after)
        d.error_after = -1;
    if (json_is_false(json_object_get(root, "stream"))) /* Ollama streams by default */
        reply_json(req, root, &s, &d);
    else
        reply_stream(req, root, &s, &d);
done:
    json_decref(root);
}

static void
on_embed(h2o_req_t *req)
{
    json_t *root = req->entity.base != NULL ? json_loadb(req->entity.base, req->entity.len, 0, NULL) : NULL;
    mock_record(req, root);
    struct mock_directives d;
    mock_directives_init(&d);
    mock_directives_from_headers(&d, req);
    const char *model = json_string_value(json_object_get(root, "model"));
    json_t *input = json_object_get(root, "input");
    if (model == NULL || model[0] == '\0') {
        send_error(req, 400, "model is required", NULL);
        goto done;
    }
    if (!json_is_string(input) && (!json_is_array(input) || json_array_size(input) == 0)) {
        send_error(req, 400, "invalid input type", NULL);
        goto done;
    }
    if (d.status >= 100 && d.status != 200) {
        send_status_error(req, (int)d.status, model, &d);
        goto done;
    }
    json_t *dims = json_object_get(root, "dimensions");
    int64_t dim = json_is_integer(dims) ? json_integer_value(dims) : 0;
    dim = dim <= 0 ? DEFAULT_DIMENSION : dim > MAX_DIMENSION ? MAX_DIMENSION : dim;
    json_t *vectors = json_array();
    int64_t tokens = 0;
    size_t n = json_is_string(input) ? 1 : json_array_size(input);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_is_string(input) ? input : json_array_get(input, i);
        json_array_append_new(
            vectors, mock_embedding_json(json_string_value(t) ? json_string_value(t) : "", json_string_length(t), dim));
        tokens += (int64_t)((json_string_length(t) + 3) / 4);
    }
    json_t *body = json_pack("{s:s, s:o, s:I, s:I, s:I}", "model", model, "embeddings", vectors, "total_duration",
                             (json_int_t)(1000000 + 250000 * tokens), "load_duration", (json_int_t)500000,
                             "prompt_eval_count", (json_int_t)tokens);
    struct mock_reply *r = mock_reply_new(req, 200, "application/json; charset=utf-8");
    mock_reply_event_json(r, NULL, body, NULL);
    mock_reply_served(r, tokens, 0, 0);
    json_decref(body);
    mock_reply_start(r, &d);
done:
    json_decref(root);
}

static void
on_tags(h2o_req_t *req)
{
    static const char body[] =
        "{\"models\":[{\"name\":\"mock-llama:latest\",\"model\":\"mock-llama:latest\",\"modified_at\":"
        "\"2025-01-01T00:00:00.000000000Z\",\"size\":2019393189,\"digest\":"
        "\"a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72\",\"details\":{\"parent_model\":\"\","
        "\"format\":\"gguf\",\"family\":\"llama\",\"families\":[\"llama\"],\"parameter_size\":\"3.2B\","
        "\"quantization_level\":\"Q4_K_M\"}}]}";
    mock_send_body(req, 200, "application/json; charset=utf-8", body, sizeof(body) - 1);
}

int
mock_ollama_route(h2o_req_t *req)
{
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    int is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
    if (path_is(req, "/api/chat") || path_is(req, "/api/embed")) {
        if (!is_post)
            send_error(req, 405, "method not allowed", NULL);
        else if (path_is(req, "/api/chat"))
            on_chat(req);
        else
            on_embed(req);
        return 1;
    }
    if (path_is(req, "/api/tags")) {
        if (is_get)
            on_tags(req);
        else
            send_error(req, 405, "method not allowed", NULL);
        return 1;
    }
    return 0;
}
