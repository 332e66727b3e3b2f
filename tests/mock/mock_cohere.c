/*
 * The mock provider's Cohere v2 wire format (shared/ref/providers.md §6): POST /v2/chat (JSON, or SSE
 * with named events: message-start, content-start/-delta/-end, tool-plan-delta, tool-call-start/-delta/
 * -end, message-end) and POST /v2/embed. Bearer auth against --api-key, errors as {"id","message"}. The
 * scenario (prompt tokens, words, directives) is the shared one of mock.h; README.md has the details.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mock.h"

#define COHERE_TEMPLATE_TOKENS 8 /* usage.tokens counts Cohere's chat template; billed_units do not */
#define MAX_DIMENSION          4096
#define DEFAULT_DIMENSION      8

static const char *const PLAN[] = {"I", " will", " look", " that", " up", "."};
#define PLAN_WORDS (sizeof(PLAN) / sizeof(PLAN[0]))

static int
path_is(h2o_req_t *req, const char *p)
{
    return h2o_memis(req->path_normalized.base, req->path_normalized.len, p, strlen(p));
}

static const char *
uuid(h2o_req_t *req, uint64_t seq)
{
    char *s = h2o_mem_alloc_pool(&req->pool, 40);
    snprintf(s, 40, "c0de0000-0000-4000-8000-%012" PRIx64, seq & (uint64_t)0xffffffffffff);
    return s;
}

/* Cohere's error body; d (may be NULL) for delay_ms. */
static void
send_error(h2o_req_t *req, int status, const char *message, const struct mock_directives *d)
{
    json_t *b = json_pack("{s:s, s:s}", "id", uuid(req, mock_next_seq()), "message", message);
    struct mock_reply *r = mock_reply_new(req, status, "application/json");
    mock_reply_event_json(r, NULL, b, NULL);
    json_decref(b);
    mock_reply_start(r, d);
}

static void
send_status_error(h2o_req_t *req, int status, const char *model, const struct mock_directives *d)
{
    char msg[400];
    switch (status) {
    case 400:
        snprintf(msg, sizeof(msg), "invalid request: mock error (status directive)");
        break;
    case 401:
        snprintf(msg, sizeof(msg), "invalid api token");
        break;
    case 402:
        snprintf(msg, sizeof(msg),
                 "Please add or update your payment method at "
                 "https://dashboard.cohere.com/billing?tab=payment to continue");
        break;
    case 404:
        snprintf(msg, sizeof(msg),
                 "model '%.200s' not found, make sure the correct model ID was used and that you have access to the "
                 "model.",
                 model);
        break;
    case 429:
        snprintf(msg, sizeof(msg),
                 "You are using a Trial key, which is limited to 10 API calls / minute. You can "
                 "continue to use the Trial key for free or upgrade to a Production key with "
                 "higher rate limits at https://dashboard.cohere.com/api-keys.");
        break;
    case 499:
        snprintf(msg, sizeof(msg), "request cancelled");
        break;
    case 500:
        snprintf(msg, sizeof(msg), "internal server error, this has been reported to our developers");
        break;
    case 503:
        snprintf(msg, sizeof(msg), "service unavailable");
        break;
    default:
        snprintf(msg, sizeof(msg), "mock error %d", status);
    }
    send_error(req, status, msg, d);
}

/* Bearer <--api-key>; Cohere answers a bad or missing key with 401 {"message":"invalid api token"}. */
static int
check_auth(h2o_req_t *req)
{
    const char *key = mock_api_key();
    if (key == NULL)
        return 0;
    h2o_iovec_t v = mock_header(req, "authorization");
    size_t klen = strlen(key);
    if (v.base != NULL && v.len == 7 + klen && memcmp(v.base, "Bearer ", 7) == 0 && memcmp(v.base + 7, key, klen) == 0)
        return 0;
    send_error(req, 401, "invalid api token", NULL);
    return -1;
}

/* The name of tool call i: the request's declared tools in turn, "get_weather" when none. */
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

struct scenario {
    int64_t prompt, completion, n_calls;
    int length_cut, stream;
    const char *id;
};

static json_t *
usage(const struct scenario *s)
{
    return json_pack("{s:{s:I, s:I}, s:{s:I, s:I}}", "billed_units", "input_tokens", (json_int_t)s->prompt,
                     "output_tokens", (json_int_t)s->completion, "tokens", "input_tokens",
                     (json_int_t)(s->prompt + COHERE_TEMPLATE_TOKENS), "output_tokens", (json_int_t)s->completion);
}

static const char *
finish(const struct scenario *s)
{
    return s->n_calls > 0 ? "TOOL_CALL" : s->length_cut ? "MAX_TOKENS" : "COMPLETE";
}

static char *
call_id(h2o_req_t *req, const char *name, size_t i)
{
    size_t n = strlen(name) + 32;
    char *s = h2o_mem_alloc_pool(&req->pool, n);
    snprintf(s, n, "%s_mock%zu", name, i);
    return s;
}

static void
reply_json(h2o_req_t *req, json_t *root, const struct scenario *s, const struct mock_directives *d)
{
    json_t *msg = json_pack("{s:s}", "role", "assistant");
    if (s->n_calls > 0) {
        json_t *calls = json_array();
        for (int64_t i = 0; i < s->n_calls; i++) {
            const char *name = tool_name(root, (size_t)i);
            json_array_append_new(calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", call_id(req, name, (size_t)i),
                                                   "type", "function", "function", "name", name, "arguments",
                                                   mock_tool_args((size_t)i)));
        }
        char plan[64] = "";
        for (size_t i = 0; i < PLAN_WORDS; i++)
            strcat(plan, PLAN[i]);
        json_object_set_new(msg, "tool_plan", json_string(plan));
        json_object_set_new(msg, "tool_calls", calls);
    } else {
        size_t cap = (size_t)s->completion * 16 + 1, at = 0;
        char *text = h2o_mem_alloc_pool(&req->pool, cap);
        for (int64_t i = 0; i < s->completion; i++)
            at += (size_t)snprintf(text + at, cap - at, "%s", mock_word((size_t)i));
        text[at] = '\0';
        json_object_set_new(msg, "content", json_pack("[{s:s, s:s}]", "type", "text", "text", text));
    }
    json_t *body =
        json_pack("{s:s, s:o, s:s, s:o}", "id", s->id, "message", msg, "finish_reason", finish(s), "usage", usage(s));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    size_t len = strlen(text);
    struct mock_reply *r = mock_reply_new(req, 200, "application/json");
    if (d->reset_after >= 0) { /* half the body under the full content-length, then the connection drops */
        mock_reply_event(r, text, len / 2);
        mock_reply_cut(r);
        mock_reply_event(r, text + len / 2, len - len / 2);
    } else {
        mock_reply_event(r, text, len);
    }
    mock_reply_served(r, s->prompt, s->completion, 0); /* billed_units: what is paid for */
    free(text);
    mock_reply_start(r, d);
}

static void
event(struct mock_reply *r, const char *name, json_t *data)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "event: %s\ndata: ", name);
    mock_reply_event_json(r, prefix, data, "\n\n");
    json_decref(data);
}

/* After K content events: reset_after cuts the connection, error_after ends the response without
 * message-end (Cohere documents no in-stream error event). Returns 1 when the stream stops here. */
static int
maybe_stop(struct mock_reply *r, const struct mock_directives *d, int64_t sent)
{
    if (d->reset_after == sent) {
        mock_reply_cut(r);
        mock_reply_event(r, "\n", 1); /* the engine aborts only when something follows the cut */
        return 1;
    }
    return d->error_after == sent;
}

static void
reply_stream(h2o_req_t *req, json_t *root, const struct scenario *s, const struct mock_directives *d)
{
    struct mock_reply *r = mock_reply_new(req, 200, "text/event-stream");
    event(r, "message-start",
          json_pack("{s:s, s:s, s:{s:{s:s, s:[], s:s, s:[], s:[]}}}", "id", s->id, "type", "message-start", "delta",
                    "message", "role", "assistant", "content", "tool_plan", "", "tool_calls", "citations"));
    int64_t sent = 0;
    if (maybe_stop(r, d, sent))
        goto start;
    if (s->n_calls > 0) {
        for (size_t i = 0; i < PLAN_WORDS; i++)
            event(r, "tool-plan-delta",
                  json_pack("{s:s, s:{s:{s:s}}}", "type", "tool-plan-delta", "delta", "message", "tool_plan", PLAN[i]));
        for (int64_t i = 0; i < s->n_calls; i++) {
            const char *name = tool_name(root, (size_t)i), *args = mock_tool_args((size_t)i);
            size_t half = strlen(args) / 2;
            event(r, "tool-call-start",
                  json_pack("{s:s, s:I, s:{s:{s:{s:s, s:s, s:{s:s, s:s}}}}}", "type", "tool-call-start", "index",
                            (json_int_t)i, "delta", "message", "tool_calls", "id", call_id(req, name, (size_t)i),
                            "type", "function", "function", "name", name, "arguments", ""));
            for (int k = 0; k < 2; k++) {
                json_t *frag = json_stringn(args + (k ? half : 0), k ? strlen(args) - half : half);
                event(r, "tool-call-delta",
                      json_pack("{s:s, s:I, s:{s:{s:{s:{s:o}}}}}", "type", "tool-call-delta", "index", (json_int_t)i,
                                "delta", "message", "tool_calls", "function", "arguments", frag));
                if (maybe_stop(r, d, ++sent))
                    goto start;
            }
            event(r, "tool-call-end", json_pack("{s:s, s:I}", "type", "tool-call-end", "index", (json_int_t)i));
        }
    } else {
        event(r, "content-start",
              json_pack("{s:s, s:i, s:{s:{s:{s:s, s:s}}}}", "type", "content-start", "index", 0, "delta", "message",
                        "content", "type", "text", "text", ""));
        for (int64_t i = 0; i < s->completion; i++) {
            event(r, "content-delta",
                  json_pack("{s:s, s:i, s:{s:{s:{s:s}}}}", "type", "content-delta", "index", 0, "delta", "message",
                            "content", "text", mock_word((size_t)i)));
            if (maybe_stop(r, d, ++sent))
                goto start;
        }
        event(r, "content-end", json_pack("{s:s, s:i}", "type", "content-end", "index", 0));
    }
    event(r, "message-end",
          json_pack("{s:s, s:{s:s, s:o}}", "type", "message-end", "delta", "finish_reason", finish(s), "usage",
                    usage(s)));
    mock_reply_served(r, s->prompt, s->completion, 0);
start:
    mock_reply_start(r, d);
}

static void
on_chat(h2o_req_t *req)
{
    json_t *root = req->entity.base != NULL ? json_loadb(req->entity.base, req->entity.len, 0, NULL) : NULL;
    mock_record(req, root);
    if (check_auth(req) != 0)
        goto done;
    json_t *messages = json_object_get(root, "messages");
    const char *model = json_string_value(json_object_get(root, "model"));
    if (!json_is_object(root)) {
        send_error(req, 400, "invalid request: cannot parse the request body as JSON (mock)", NULL);
        goto done;
    }
    if (model == NULL) {
        send_error(req, 400, "invalid request: model must be a string", NULL);
        goto done;
    }
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        send_error(req, 400, "invalid request: messages must be a non-empty array", NULL);
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
    struct scenario s = {0};
    json_array_foreach(messages, i, m)
    {
        s.prompt += mock_message_tokens(mock_content_text(json_object_get(m, "content"), i == last_user ? &d : NULL));
    }
    mock_directives_from_headers(&d, req);
    if (d.status >= 100 && d.status != 200) {
        send_status_error(req, (int)d.status, model, &d);
        goto done;
    }
    s.completion = d.tokens >= 0 ? d.tokens : MOCK_DEFAULT_TOKENS;
    int64_t max = mock_int_field(root, "max_tokens");
    if (max >= 0 && max < s.completion) {
        s.completion = max;
        s.length_cut = 1;
    }
    s.n_calls = d.tool_calls > 0 ? d.tool_calls : 0;
    s.stream = json_is_true(json_object_get(root, "stream"));
    s.id = uuid(req, mock_next_seq());
    int64_t content_events = s.n_calls > 0 ? 2 * s.n_calls : s.completion;
    if (d.reset_after > content_events) /* K beyond the reply: ignored */
        d.reset_after = -1;
    if (d.error_after > content_events || d.error_after == d.reset_after)
        d.error_after = -1;
    if (s.stream)
        reply_stream(req, root, &s, &d);
    else
        reply_json(req, root, &s, &d);
done:
    json_decref(root);
}

static void
on_embed(h2o_req_t *req)
{
    json_t *root = req->entity.base != NULL ? json_loadb(req->entity.base, req->entity.len, 0, NULL) : NULL;
    mock_record(req, root);
    if (check_auth(req) != 0)
        goto done;
    struct mock_directives d;
    mock_directives_init(&d);
    mock_directives_from_headers(&d, req);
    json_t *texts = json_object_get(root, "texts");
    const char *model = json_string_value(json_object_get(root, "model"));
    if (!json_is_object(root) || model == NULL) {
        send_error(req, 400, "invalid request: model must be a string", NULL);
        goto done;
    }
    if (!json_is_array(texts) || json_array_size(texts) == 0 || json_array_size(texts) > 96) {
        send_error(req, 400, "invalid request: texts must be an array of 1 to 96 strings", NULL);
        goto done;
    }
    if (!json_is_string(json_object_get(root, "input_type"))) {
        send_error(req, 400, "invalid request: input_type is required for embed v3 and newer models", NULL);
        goto done;
    }
    if (d.status >= 100 && d.status != 200) {
        send_status_error(req, (int)d.status, model, &d);
        goto done;
    }
    int64_t dim = mock_int_field(root, "output_dimension");
    dim = dim <= 0 ? DEFAULT_DIMENSION : dim > MAX_DIMENSION ? MAX_DIMENSION : dim;
    json_t *vectors = json_array();
    int64_t tokens = 0;
    size_t i;
    json_t *t;
    json_array_foreach(texts, i, t)
    {
        json_array_append_new(
            vectors, mock_embedding_json(json_string_value(t) ? json_string_value(t) : "", json_string_length(t), dim));
        tokens += (int64_t)((json_string_length(t) + 3) / 4);
    }
    json_t *body = json_pack("{s:s, s:{s:o}, s:O, s:{s:{s:s}, s:{s:I}}, s:s}", "id", uuid(req, mock_next_seq()),
                             "embeddings", "float", vectors, "texts", texts, "meta", "api_version", "version", "2",
                             "billed_units", "input_tokens", (json_int_t)tokens, "response_type", "embeddings_by_type");
    struct mock_reply *r = mock_reply_new(req, 200, "application/json");
    mock_reply_event_json(r, NULL, body, NULL);
    mock_reply_served(r, tokens, 0, 0);
    json_decref(body);
    mock_reply_start(r, &d);
done:
    json_decref(root);
}

int
mock_cohere_route(h2o_req_t *req)
{
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    if (path_is(req, "/v2/chat")) {
        if (is_post)
            on_chat(req);
        else
            send_error(req, 405, "method not allowed (use POST)", NULL);
        return 1;
    }
    if (path_is(req, "/v2/embed")) {
        if (is_post)
            on_embed(req);
        else
            send_error(req, 405, "method not allowed (use POST)", NULL);
        return 1;
    }
    return 0;
}
