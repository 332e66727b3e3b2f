/*
 * The mock provider's OpenAI family beyond the core's fast chat path (shared/ref/providers.md §1, §2, §7):
 *
 *   - Azure OpenAI: /openai/deployments/{d}/{chat/completions,completions,embeddings}?api-version=… (api-key
 *     header; api-version required) and the v1 surface /openai/v1/…; prompt_filter_results, per-choice
 *     content_filter_results, the empty first stream chunk, Azure's own error bodies.
 *   - Mistral under /mistral/v1/…: unknown body fields (seed, stream_options, user, …) and tool-call ids that
 *     are not 9 alphanumerics get 422, usage in the last chunk, tool calls whole, its error shapes.
 *   - Groq under /groq/openai/v1/…: logprobs, top_logprobs, logit_bias, messages[].name and n > 1 get 400,
 *     x_groq on replies, usage in x_groq.usage of the last chunk, no embeddings.
 *   - the plain OpenAI wire format for what the core does not do: legacy /v1/completions, /v1/embeddings,
 *     and chat replies with the tool_calls directive (mock_openai_tool_reply, called by the core).
 *
 * Every flavour works out the shared scenario (README.md): prompt tokens over the messages, N words, the
 * directives. Replies go through the event-list engine (mock_reply.c), so delays, cuts and in-stream
 * errors behave the same everywhere.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "mock.h"
#include "translate/tx.h"

enum flavor { F_OPENAI, F_AZURE, F_MISTRAL, F_GROQ };
enum op { OP_CHAT, OP_LEGACY, OP_EMBED };

struct scen {
    enum flavor fl;
    enum op op;
    h2o_req_t *req;
    struct mock_directives d;
    int stream, include_usage, length_cut;
    int64_t prompt, cached, n, ntools;
    uint64_t seq;
    int64_t created;
    char id[64];
    const char *model;
    const char *tool_names[8];
    size_t n_tool_names;
};

/* ---------------------------------------------------------------- helpers */

static int
has_prefix(h2o_iovec_t s, const char *p)
{
    size_t n = strlen(p);
    return s.len >= n && memcmp(s.base, p, n) == 0;
}

static int
has_suffix(h2o_iovec_t s, const char *p)
{
    size_t n = strlen(p);
    return s.len >= n && memcmp(s.base + s.len - n, p, n) == 0;
}

static const char *
pool_str(h2o_req_t *req, const char *s)
{
    return h2o_strdup(&req->pool, s != NULL ? s : "", SIZE_MAX).base;
}

static void
send_json(h2o_req_t *req, const struct mock_directives *d, int status, json_t *body)
{
    struct mock_reply *r = mock_reply_new(req, status, "application/json");
    mock_reply_event_json(r, NULL, body, NULL);
    json_decref(body);
    mock_reply_start(r, d);
}

/* OpenAI's error shape (param and code may be NULL). */
static json_t *
openai_error(const char *message, const char *type, const char *param, const char *code)
{
    return json_pack("{s:{s:s,s:s,s:s?,s:s?}}", "error", "message", message, "type", type, "param", param, "code",
                     code);
}

/* The body a `status=S` directive (or a check) answers with, in each flavour's shape. */
static void
send_status(h2o_req_t *req, const struct mock_directives *d, enum flavor fl, int status)
{
    if (status == 429)
        mock_add_header(req, "retry-after", "1");
    json_t *body;
    char code[8];
    snprintf(code, sizeof(code), "%d", status);
    if (fl == F_AZURE) {
        const char *msg = status == 401   ? "Access denied due to invalid subscription key or wrong API endpoint. "
                                            "Make sure to provide a valid key for an active subscription and use a "
                                            "correct regional API endpoint for your resource."
                          : status == 404 ? "The API deployment for this resource does not exist."
                          : status == 429 ? "Requests to the ChatCompletions_Create Operation under Azure OpenAI API "
                                            "version 2024-10-21 have exceeded call rate limit of your current OpenAI "
                                            "S0 pricing tier. Please retry after 1 second."
                                          : "mock error";
        body = json_pack("{s:{s:s,s:s}}", "error", "code", status == 404 ? "DeploymentNotFound" : code, "message", msg);
    } else if (fl == F_MISTRAL) {
        if (status == 401)
            body = json_pack("{s:s,s:s}", "message", "Unauthorized", "request_id", "mock");
        else if (status == 429)
            body = json_pack("{s:s,s:s,s:s,s:n,s:s}", "object", "error", "message", "Requests rate limit exceeded",
                             "type", "rate_limited", "param", "code", "1300");
        else
            body = json_pack("{s:s,s:s,s:s,s:n,s:s}", "object", "error", "message", "mock error", "type",
                             status >= 500 ? "internal_server_error" : "invalid_request_error", "param", "code", code);
    } else {
        switch (status) {
        case 401:
            body = openai_error(fl == F_GROQ ? "Invalid API Key" : "Incorrect API key provided",
                                "invalid_request_error", NULL, "invalid_api_key");
            break;
        case 404:
            body = openai_error("The model does not exist", "invalid_request_error", "model", "model_not_found");
            break;
        case 429:
            body = openai_error("Rate limit reached (mock)", fl == F_GROQ ? "tokens" : "requests", NULL,
                                "rate_limit_exceeded");
            break;
        default:
            body = openai_error("mock error", status >= 500 ? "server_error" : "invalid_request_error", NULL,
                                status >= 500 ? "server_error" : NULL);
        }
    }
    send_json(req, d, status, body);
}

/* 0 when the request carries the configured key the flavour's way. */
static int
authorized(h2o_req_t *req, enum flavor fl, int azure_classic)
{
    const char *key = mock_api_key();
    if (key == NULL)
        return 0;
    size_t klen = strlen(key);
    if (fl == F_AZURE) {
        h2o_iovec_t k = mock_header(req, "api-key");
        if (k.base != NULL && k.len == klen && memcmp(k.base, key, klen) == 0)
            return 0;
        if (azure_classic)
            return -1; /* the deployment form takes api-key (or an Entra token, which the mock has none of) */
    }
    h2o_iovec_t a = mock_header(req, "authorization");
    return a.base != NULL && a.len == 7 + klen && memcmp(a.base, "Bearer ", 7) == 0 &&
                   memcmp(a.base + 7, key, klen) == 0
               ? 0
               : -1;
}

/* ---------------------------------------------------------------- the scenario */

/* Text bytes of a message content (a string, or the text parts), scanning directives when asked. */
static size_t
content_bytes(json_t *content, struct mock_directives *scan)
{
    if (json_is_string(content)) {
        if (scan != NULL)
            mock_directives_scan(scan, json_string_value(content), json_string_length(content));
        return json_string_length(content);
    }
    size_t total = 0, i;
    json_t *p;
    json_array_foreach(content, i, p)
    {
        const char *type = json_string_value(json_object_get(p, "type"));
        json_t *text = json_object_get(p, "text");
        if (type == NULL || strcmp(type, "text") != 0 || !json_is_string(text))
            continue;
        if (scan != NULL)
            mock_directives_scan(scan, json_string_value(text), json_string_length(text));
        total += json_string_length(text);
    }
    return total;
}

static int64_t
nonneg(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? json_integer_value(v) : -1;
}

/* Fills s from a chat or legacy body: prompt tokens, directives (text, then headers), N and the cut. */
static void
scenario(struct scen *s, h2o_req_t *req, json_t *root, enum flavor fl, enum op op, const struct mock_directives *given,
         uint64_t seq)
{
    memset(s, 0, sizeof(*s));
    s->fl = fl;
    s->op = op;
    s->req = req;
    s->seq = seq;
    s->created = (int64_t)time(NULL);
    s->model = pool_str(req, json_string_value(json_object_get(root, "model")));
    if (given != NULL) {
        s->d = *given;
    } else {
        mock_directives_init(&s->d);
    }
    json_t *messages = json_object_get(root, "messages"), *m;
    size_t i, last_user = SIZE_MAX;
    if (op == OP_CHAT) {
        json_array_foreach(messages, i, m)
        {
            const char *role = json_string_value(json_object_get(m, "role"));
            if (role != NULL && strcmp(role, "user") == 0)
                last_user = i;
        }
        json_array_foreach(messages, i, m)
        {
            s->prompt += mock_message_tokens(
                content_bytes(json_object_get(m, "content"), given == NULL && i == last_user ? &s->d : NULL));
        }
    } else {
        json_t *prompt = json_object_get(root, "prompt");
        if (json_is_string(prompt)) {
            s->prompt = mock_message_tokens(content_bytes(prompt, given == NULL ? &s->d : NULL));
        } else {
            json_array_foreach(prompt, i, m)
            {
                s->prompt += mock_message_tokens(content_bytes(m, given == NULL ? &s->d : NULL));
            }
        }
    }
    if (given == NULL)
        mock_directives_from_headers(&s->d, req);
    s->n = s->d.tokens >= 0 ? s->d.tokens : MOCK_DEFAULT_TOKENS;
    int64_t max = fl == F_MISTRAL ? -1 : nonneg(root, "max_completion_tokens");
    if (max < 0)
        max = nonneg(root, "max_tokens");
    if (max < 0 && op == OP_LEGACY)
        max = 16; /* the legacy endpoint's default */
    if (max >= 0 && max < s->n) {
        s->n = max;
        s->length_cut = 1;
    }
    s->cached = s->d.cached < 0 ? 0 : s->d.cached < s->prompt ? s->d.cached : s->prompt;
    s->ntools = op == OP_CHAT && s->d.tool_calls > 0 ? s->d.tool_calls : 0;
    s->stream = json_is_true(json_object_get(root, "stream"));
    s->include_usage =
        s->stream && json_is_true(json_object_get(json_object_get(root, "stream_options"), "include_usage"));
    json_t *tools = json_object_get(root, "tools"), *t;
    json_array_foreach(tools, i, t)
    {
        const char *name = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
        if (name != NULL && s->n_tool_names < 8)
            s->tool_names[s->n_tool_names++] = pool_str(req, name);
    }
    if (fl == F_MISTRAL)
        snprintf(s->id, sizeof(s->id), "mock%016" PRIx64, s->seq);
    else
        snprintf(s->id, sizeof(s->id), "%s-mock-%" PRIu64, op == OP_LEGACY ? "cmpl" : "chatcmpl", s->seq);
}

static const char *
tool_name(const struct scen *s, size_t i)
{
    return s->n_tool_names > 0 ? s->tool_names[i % s->n_tool_names] : "get_weather";
}

/* Deterministic call ids; Mistral's are exactly 9 alphanumerics. */
static void
tool_id(const struct scen *s, size_t i, char *out, size_t cap)
{
    if (s->fl == F_MISTRAL)
        snprintf(out, cap, "M%zu%07" PRIu64, i % 10, s->seq % 10000000);
    else
        snprintf(out, cap, "call_mock_%" PRIu64 "_%zu", s->seq, i);
}

static const char *
finish_reason(const struct scen *s)
{
    return s->ntools > 0 ? "tool_calls" : s->length_cut ? "length" : "stop";
}

static json_t *
filter_results(void)
{
    return json_pack("{s:{s:b,s:s},s:{s:b,s:s},s:{s:b,s:s},s:{s:b,s:s}}", "hate", "filtered", 0, "severity", "safe",
                     "self_harm", "filtered", 0, "severity", "safe", "sexual", "filtered", 0, "severity", "safe",
                     "violence", "filtered", 0, "severity", "safe");
}

/* The cached tokens the flavour's usage reports (the legacy, Mistral and Groq shapes have none). */
static int64_t
served_cached(const struct scen *s)
{
    return s->op == OP_LEGACY || s->fl == F_MISTRAL || s->fl == F_GROQ ? 0 : (int64_t)s->cached;
}

static json_t *
usage(const struct scen *s)
{
    json_int_t p = s->prompt, n = s->n;
    if (s->op == OP_LEGACY || s->fl == F_MISTRAL)
        return json_pack("{s:I,s:I,s:I}", "prompt_tokens", p, "completion_tokens", n, "total_tokens", p + n);
    if (s->fl == F_GROQ)
        return json_pack("{s:f,s:I,s:f,s:I,s:f,s:I,s:f}", "queue_time", 0.25, "prompt_tokens", p, "prompt_time", 0.5,
                         "completion_tokens", n, "completion_time", 0.75, "total_tokens", p + n, "total_time", 1.5);
    return json_pack("{s:I,s:I,s:I,s:{s:I,s:i},s:{s:i,s:i,s:i,s:i}}", "prompt_tokens", p, "completion_tokens", n,
                     "total_tokens", p + n, "prompt_tokens_details", "cached_tokens", (json_int_t)s->cached,
                     "audio_tokens", 0, "completion_tokens_details", "reasoning_tokens", 0, "audio_tokens", 0,
                     "accepted_prediction_tokens", 0, "rejected_prediction_tokens", 0);
}

static char *
words(const struct scen *s)
{
    size_t len = 0;
    for (int64_t i = 0; i < s->n; i++)
        len += strlen(mock_word((size_t)i));
    char *out = h2o_mem_alloc_pool(&s->req->pool, len + 1);
    size_t at = 0;
    for (int64_t i = 0; i < s->n; i++) {
        size_t l = strlen(mock_word((size_t)i));
        memcpy(out + at, mock_word((size_t)i), l);
        at += l;
    }
    out[at] = '\0';
    return out;
}

static json_t *
tool_calls_json(const struct scen *s)
{
    json_t *calls = json_array();
    for (int64_t i = 0; i < s->ntools; i++) {
        char id[48];
        tool_id(s, (size_t)i, id, sizeof(id));
        json_t *c = json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type", "function", "function", "name",
                              tool_name(s, (size_t)i), "arguments", mock_tool_args((size_t)i));
        if (s->fl == F_MISTRAL) { /* Mistral's calls carry an index and no type */
            json_object_del(c, "type");
            json_object_set_new(c, "index", json_integer(i));
        }
        json_array_append_new(calls, c);
    }
    return calls;
}

/* ---------------------------------------------------------------- replies */

static void
reply_whole(struct scen *s)
{
    json_t *body;
    if (s->op == OP_LEGACY) {
        body = json_pack("{s:s,s:s,s:I,s:s,s:[{s:s,s:i,s:n,s:s}],s:o}", "id", s->id, "object", "text_completion",
                         "created", (json_int_t)s->created, "model", s->model, "choices", "text", words(s), "index", 0,
                         "logprobs", "finish_reason", finish_reason(s), "usage", usage(s));
    } else if (s->fl == F_MISTRAL) {
        json_t *msg = json_pack("{s:s,s:o,s:s,s:b}", "role", "assistant", "tool_calls",
                                s->ntools > 0 ? tool_calls_json(s) : json_null(), "content",
                                s->ntools > 0 ? "" : words(s), "prefix", 0);
        body = json_pack("{s:s,s:s,s:s,s:o,s:I,s:[{s:i,s:o,s:s}]}", "id", s->id, "object", "chat.completion", "model",
                         s->model, "usage", usage(s), "created", (json_int_t)s->created, "choices", "index", 0,
                         "message", msg, "finish_reason", finish_reason(s));
    } else {
        json_t *msg = json_pack("{s:s,s:o,s:n}", "role", "assistant", "content",
                                s->ntools > 0 ? json_null() : json_string(words(s)), "refusal");
        if (s->ntools > 0)
            json_object_set_new(msg, "tool_calls", tool_calls_json(s));
        json_t *choice =
            json_pack("{s:i,s:o,s:n,s:s}", "index", 0, "message", msg, "logprobs", "finish_reason", finish_reason(s));
        body = json_pack("{s:s,s:s,s:I,s:s,s:[o],s:o,s:s}", "id", s->id, "object", "chat.completion", "created",
                         (json_int_t)s->created, "model", s->model, "choices", choice, "usage", usage(s),
                         "system_fingerprint", "fp_mock");
        if (s->fl == F_AZURE) {
            json_object_set_new(choice, "content_filter_results", filter_results());
            json_object_set_new(
                body, "prompt_filter_results",
                json_pack("[{s:i,s:o}]", "prompt_index", 0, "content_filter_results", filter_results()));
        } else if (s->fl == F_GROQ) {
            char xid[48];
            snprintf(xid, sizeof(xid), "req_mock_%" PRIu64, s->seq);
            json_object_set_new(body, "x_groq", json_pack("{s:s}", "id", xid));
        }
    }
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct mock_reply *r = mock_reply_new(s->req, 200, "application/json");
    size_t len = strlen(text);
    if (s->d.reset_after >= 0) { /* half the body under the full content-length, then the connection closes */
        mock_reply_event(r, text, len / 2);
        mock_reply_cut(r);
        mock_reply_event(r, text + len / 2, len - len / 2);
    } else {
        mock_reply_event(r, text, len);
    }
    mock_reply_served(r, (int64_t)s->prompt, (int64_t)s->n, served_cached(s));
    free(text);
    mock_reply_start(r, &s->d);
}

/* One chunk: the flavour's envelope around choices (NULL: "choices":[]) and an optional usage. */
static void
chunk(struct mock_reply *r, const struct scen *s, json_t *choice, json_t *usage_v, json_t *x_groq)
{
    json_t *c = json_pack("{s:s,s:s,s:I,s:s}", "id", s->id, "object",
                          s->op == OP_LEGACY ? "text_completion" : "chat.completion.chunk", "created",
                          (json_int_t)s->created, "model", s->model);
    if (s->fl != F_MISTRAL && s->op != OP_LEGACY)
        json_object_set_new(c, "system_fingerprint", json_string("fp_mock"));
    json_object_set_new(c, "choices", choice != NULL ? json_pack("[o]", choice) : json_array());
    if (usage_v != NULL)
        json_object_set_new(c, "usage", usage_v);
    else if (s->include_usage && s->fl != F_MISTRAL && s->fl != F_GROQ)
        json_object_set_new(c, "usage", json_null());
    if (x_groq != NULL)
        json_object_set_new(c, "x_groq", x_groq);
    mock_reply_event_json(r, "data: ", c, "\n\n");
    json_decref(c);
}

static json_t *
delta_choice(const struct scen *s, json_t *delta, const char *finish)
{
    if (s->op == OP_LEGACY) { /* delta is the text */
        json_t *c = json_pack("{s:o,s:i,s:n}", "text", delta, "index", 0, "logprobs");
        json_object_set_new(c, "finish_reason", finish != NULL ? json_string(finish) : json_null());
        return c;
    }
    json_t *c = json_pack("{s:i,s:o}", "index", 0, "delta", delta);
    if (s->fl != F_MISTRAL)
        json_object_set_new(c, "logprobs", json_null());
    json_object_set_new(c, "finish_reason", finish != NULL ? json_string(finish) : json_null());
    if (s->fl == F_AZURE && finish == NULL && json_object_get(delta, "content") != NULL &&
        json_string_length(json_object_get(delta, "content")) > 0)
        json_object_set_new(c, "content_filter_results", filter_results());
    return c;
}

/* The error after K content events: OpenAI's data event with a top-level error; Mistral ends the choice
 * with finish_reason "error". */
static void
stream_error(struct mock_reply *r, const struct scen *s)
{
    if (s->fl == F_MISTRAL) {
        chunk(r, s, delta_choice(s, json_pack("{s:s}", "content", ""), "error"), NULL, NULL);
        return;
    }
    json_t *e = openai_error("mock mid-stream failure", "server_error", NULL, "server_error");
    mock_reply_event_json(r, "data: ", e, "\n\n");
    json_decref(e);
}

/* Called before each content event k (0-based): marks the cut (the engine drops what is queued after it,
 * so the rest is still queued), or writes the error and returns 1: nothing follows it. */
static int
interrupt(struct mock_reply *r, const struct scen *s, int64_t k, int64_t total)
{
    if (s->d.reset_after >= 0 && s->d.reset_after <= total && k == s->d.reset_after)
        mock_reply_cut(r);
    if (s->d.error_after >= 0 && s->d.error_after <= total && k == s->d.error_after) {
        stream_error(r, s);
        return 1;
    }
    return 0;
}

static void
reply_stream(struct scen *s)
{
    struct mock_reply *r = mock_reply_new(s->req, 200, "text/event-stream");
    mock_add_header(s->req, "cache-control", "no-cache");
    char xid[48];
    snprintf(xid, sizeof(xid), "req_mock_%" PRIu64, s->seq);
    int whole_calls = s->fl == F_MISTRAL || s->fl == F_GROQ; /* they send each call in one delta */
    int64_t total = s->ntools > 0 ? (whole_calls ? s->ntools : 2 * s->ntools) : s->n, k = 0;

    if (s->fl == F_AZURE && s->op == OP_CHAT) { /* the prompt-filter chunk, before anything else */
        json_t *pf =
            json_pack("{s:[],s:i,s:s,s:s,s:s,s:[{s:i,s:o}]}", "choices", "created", 0, "id", "", "model", "", "object",
                      "", "prompt_filter_results", "prompt_index", 0, "content_filter_results", filter_results());
        mock_reply_event_json(r, "data: ", pf, "\n\n");
        json_decref(pf);
    }
    if (s->op == OP_CHAT) {
        json_t *role = s->fl == F_OPENAI || s->fl == F_AZURE
                           ? json_pack("{s:s,s:s,s:n}", "role", "assistant", "content", "", "refusal")
                           : json_pack("{s:s,s:s}", "role", "assistant", "content", "");
        chunk(r, s, delta_choice(s, role, NULL), NULL, s->fl == F_GROQ ? json_pack("{s:s}", "id", xid) : NULL);
    }
    if (s->ntools > 0) {
        for (int64_t i = 0; i < s->ntools; i++) {
            char id[48];
            tool_id(s, (size_t)i, id, sizeof(id));
            const char *args = mock_tool_args((size_t)i);
            size_t half = strlen(args) / 2;
            if (whole_calls) {
                if (interrupt(r, s, k++, total))
                    goto out;
                json_t *call = json_pack("{s:s,s:{s:s,s:s},s:I}", "id", id, "function", "name", tool_name(s, (size_t)i),
                                         "arguments", args, "index", (json_int_t)i);
                if (s->fl == F_GROQ)
                    json_object_set_new(call, "type", json_string("function"));
                chunk(r, s, delta_choice(s, json_pack("{s:[o]}", "tool_calls", call), NULL), NULL, NULL);
                continue;
            }
            chunk(r, s,
                  delta_choice(s,
                               json_pack("{s:[{s:I,s:s,s:s,s:{s:s,s:s}}]}", "tool_calls", "index", (json_int_t)i, "id",
                                         id, "type", "function", "function", "name", tool_name(s, (size_t)i),
                                         "arguments", ""),
                               NULL),
                  NULL, NULL);
            for (int part = 0; part < 2; part++) {
                if (interrupt(r, s, k++, total))
                    goto out;
                json_t *frag = json_stringn(part == 0 ? args : args + half, part == 0 ? half : strlen(args) - half);
                chunk(r, s,
                      delta_choice(s,
                                   json_pack("{s:[{s:I,s:{s:o}}]}", "tool_calls", "index", (json_int_t)i, "function",
                                             "arguments", frag),
                                   NULL),
                      NULL, NULL);
            }
        }
    } else {
        for (int64_t i = 0; i < s->n; i++) {
            if (interrupt(r, s, k++, total))
                goto out;
            json_t *w = json_string(mock_word((size_t)i));
            chunk(r, s, delta_choice(s, s->op == OP_LEGACY ? w : json_pack("{s:o}", "content", w), NULL), NULL, NULL);
        }
    }
    if (interrupt(r, s, k, total))
        goto out;
    /* the closing chunk: Mistral puts the usage there, Groq x_groq.usage */
    json_t *closing = s->op == OP_LEGACY   ? json_string("")
                      : s->fl == F_MISTRAL ? json_pack("{s:s}", "content", "")
                                           : json_object();
    chunk(r, s, delta_choice(s, closing, finish_reason(s)), s->fl == F_MISTRAL ? usage(s) : NULL,
          s->fl == F_GROQ ? json_pack("{s:s,s:o}", "id", xid, "usage", usage(s)) : NULL);
    if (s->fl == F_MISTRAL || s->fl == F_GROQ)
        mock_reply_served(r, (int64_t)s->prompt, (int64_t)s->n, served_cached(s));
    if (s->include_usage && (s->fl == F_OPENAI || s->fl == F_AZURE)) {
        chunk(r, s, NULL, usage(s), NULL);
        mock_reply_served(r, (int64_t)s->prompt, (int64_t)s->n, served_cached(s));
    }
    mock_reply_event(r, "data: [DONE]\n\n", 14);
out:
    mock_reply_start(r, &s->d);
}

static void
reply(struct scen *s)
{
    if (s->d.status >= 100 && s->d.status != 200) {
        send_status(s->req, &s->d, s->fl, (int)s->d.status);
        return;
    }
    if (s->stream)
        reply_stream(s);
    else
        reply_whole(s);
}

/* The core's chat path hands over replies with the tool_calls directive (its fast generator only
 * writes text); the request is already recorded, authorised and checked, d holds its directives. */
void
mock_openai_tool_reply(h2o_req_t *req, json_t *root, const struct mock_directives *d, uint64_t seq)
{
    struct scen s;
    scenario(&s, req, root, F_OPENAI, OP_CHAT, d, seq);
    reply(&s);
}

/* ---------------------------------------------------------------- embeddings */

static void
embeddings(h2o_req_t *req, json_t *root, enum flavor fl)
{
    struct mock_directives d;
    mock_directives_init(&d);
    mock_directives_from_headers(&d, req);
    if (d.status >= 100 && d.status != 200) {
        send_status(req, &d, fl, (int)d.status);
        return;
    }
    json_t *input = json_object_get(root, "input"),
           *texts = json_is_string(input) ? json_pack("[O]", input) : json_incref(input);
    size_t i;
    json_t *t;
    int ok = json_is_array(texts) && json_array_size(texts) > 0;
    json_array_foreach(texts, i, t) ok = ok && json_is_string(t);
    if (!ok) {
        json_decref(texts);
        send_json(req, &d, 400,
                  fl == F_MISTRAL ? json_pack("{s:s,s:s,s:s,s:n,s:n}", "object", "error", "message",
                                              "input must be strings", "type", "invalid_request_error", "param", "code")
                                  : openai_error("'input' must be a string or an array of strings (mock)",
                                                 "invalid_request_error", "input", NULL));
        return;
    }
    int64_t dims = nonneg(root, fl == F_MISTRAL ? "output_dimension" : "dimensions");
    if (dims <= 0)
        dims = 8;
    if (dims > 4096)
        dims = 4096;
    const char *ef = json_string_value(json_object_get(root, "encoding_format"));
    int b64 = fl != F_MISTRAL && ef != NULL && strcmp(ef, "base64") == 0;
    json_t *data = json_array();
    int64_t tokens = 0;
    json_array_foreach(texts, i, t)
    {
        const char *s = json_string_value(t);
        size_t n = json_string_length(t);
        tokens += (int64_t)((n + 3) / 4);
        json_t *vec;
        if (b64) {
            /* little-endian float32, base64: what the official SDKs ask for by default */
            uint32_t h = mock_embedding_hash(s, n);
            tg_arena_t a = TG_ARENA_INIT;
            tx_embedding_t e = {.values = tg_arena_alloc(&a, (size_t)(dims ? dims : 1) * sizeof(float)),
                                .n = (size_t)dims};
            for (int64_t j = 0; e.values != NULL && j < dims; j++)
                e.values[j] = (float)mock_embedding_value(h, j);
            const char *b64s = e.values != NULL ? tx_embedding_base64(&e, &a) : NULL;
            vec = json_string(b64s != NULL ? b64s : "");
            tg_arena_free(&a);
        } else {
            vec = mock_embedding_json(s, n, dims);
        }
        json_array_append_new(
            data, json_pack("{s:s,s:I,s:o}", "object", "embedding", "index", (json_int_t)i, "embedding", vec));
    }
    json_decref(texts);
    json_t *body = json_pack(
        "{s:s,s:o,s:s,s:{s:I,s:I}}", "object", "list", "data", data, "model",
        json_string_value(json_object_get(root, "model")) ? json_string_value(json_object_get(root, "model")) : "",
        "usage", "prompt_tokens", (json_int_t)tokens, "total_tokens", (json_int_t)tokens);
    if (fl == F_MISTRAL) {
        char id[48];
        snprintf(id, sizeof(id), "embd-mock-%" PRIu64, mock_next_seq());
        json_object_set_new(body, "id", json_string(id));
        json_object_set_new(json_object_get(body, "usage"), "completion_tokens", json_integer(0));
    }
    struct mock_reply *r = mock_reply_new(req, 200, "application/json");
    mock_reply_event_json(r, NULL, body, NULL);
    mock_reply_served(r, tokens, 0, 0);
    json_decref(body);
    mock_reply_start(r, &d);
}

/* ---------------------------------------------------------------- flavour checks */

static int
mistral_id_ok(const char *id)
{
    if (id == NULL || strlen(id) != 9)
        return 0;
    for (; *id; id++)
        if (!((*id >= '0' && *id <= '9') || (*id >= 'a' && *id <= 'z') || (*id >= 'A' && *id <= 'Z')))
            return 0;
    return 1;
}

/* Mistral validates strictly: unknown top-level fields and malformed tool-call ids get 422. */
static int
mistral_check(h2o_req_t *req, json_t *root, enum op op)
{
    static const char *const chat_ok[] = {"model",
                                          "messages",
                                          "temperature",
                                          "top_p",
                                          "max_tokens",
                                          "stream",
                                          "stop",
                                          "random_seed",
                                          "response_format",
                                          "tools",
                                          "tool_choice",
                                          "presence_penalty",
                                          "frequency_penalty",
                                          "n",
                                          "prediction",
                                          "parallel_tool_calls",
                                          "safe_prompt",
                                          "prompt_mode",
                                          NULL};
    static const char *const embed_ok[] = {"model",        "input",           "output_dimension",
                                           "output_dtype", "encoding_format", NULL};
    const char *const *ok = op == OP_EMBED ? embed_ok : chat_ok;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        size_t i = 0;
        while (ok[i] != NULL && strcmp(ok[i], key) != 0)
            i++;
        if (ok[i] == NULL) {
            json_t *detail = json_pack("{s:[{s:s,s:[s,s],s:s,s:O}]}", "detail", "type", "extra_forbidden", "loc",
                                       "body", key, "msg", "Extra inputs are not permitted", "input", v);
            send_json(req, NULL, 422,
                      json_pack("{s:s,s:o,s:s,s:n,s:n}", "object", "error", "message", detail, "type",
                                "invalid_request_error", "param", "code"));
            return -1;
        }
    }
    size_t i, j;
    json_t *m, *c;
    json_array_foreach(json_object_get(root, "messages"), i, m)
    {
        const char *bad = NULL;
        json_array_foreach(json_object_get(m, "tool_calls"), j, c)
        {
            if (!mistral_id_ok(json_string_value(json_object_get(c, "id"))))
                bad = json_string_value(json_object_get(c, "id"));
        }
        json_t *tcid = json_object_get(m, "tool_call_id");
        if (tcid != NULL && !mistral_id_ok(json_string_value(tcid)))
            bad = json_string_value(tcid);
        if (bad != NULL || (tcid != NULL && !json_is_string(tcid))) {
            char msg[256];
            snprintf(msg, sizeof(msg), "Tool call id was %.64s but must be a-z, A-Z, 0-9, with a length of 9.",
                     bad != NULL ? bad : "null");
            send_json(req, NULL, 422,
                      json_pack("{s:s,s:s,s:s,s:n,s:s}", "object", "error", "message", msg, "type",
                                "invalid_request_message_error", "param", "code", "3280"));
            return -1;
        }
    }
    return 0;
}

/* Groq refuses what it does not implement with a 400. */
static int
groq_check(h2o_req_t *req, json_t *root)
{
    static const char *const refused[] = {"logprobs", "top_logprobs", "logit_bias", NULL};
    char msg[256];
    for (size_t i = 0; refused[i] != NULL; i++) {
        json_t *v = json_object_get(root, refused[i]);
        if (v != NULL && !json_is_null(v) && !json_is_false(v)) {
            snprintf(msg, sizeof(msg), "'%s' : not supported with this model", refused[i]);
            send_json(req, NULL, 400, openai_error(msg, "invalid_request_error", refused[i], NULL));
            return -1;
        }
    }
    json_t *n = json_object_get(root, "n");
    if (json_is_integer(n) && json_integer_value(n) != 1) {
        send_json(req, NULL, 400, openai_error("'n' : number must be at most 1", "invalid_request_error", "n", NULL));
        return -1;
    }
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(root, "messages"), i, m)
    {
        if (json_object_get(m, "name") != NULL) {
            snprintf(msg, sizeof(msg), "'messages.%zu' : property 'name' is unsupported", i);
            send_json(req, NULL, 400, openai_error(msg, "invalid_request_error", "messages", NULL));
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- routing */

static void
handle(h2o_req_t *req, enum flavor fl, enum op op, int azure_classic)
{
    json_t *root = req->entity.base != NULL ? json_loadb(req->entity.base, req->entity.len, 0, NULL) : NULL;
    mock_record(req, root);
    uint64_t seq = mock_next_seq();
    char rid[40];
    snprintf(rid, sizeof(rid), "req_mock_%" PRIu64, seq);
    mock_add_header(req, "x-request-id", rid);
    if (fl == F_AZURE)
        mock_add_header(req, "apim-request-id", rid);

    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        send_json(req, NULL, 405, openai_error("method not allowed (use POST)", "invalid_request_error", NULL, NULL));
        goto done;
    }
    if (authorized(req, fl, azure_classic) != 0) {
        send_status(req, NULL, fl, 401);
        goto done;
    }
    if (azure_classic) { /* the deployment form needs api-version */
        const char *q = req->query_at != SIZE_MAX ? req->path.base + req->query_at : NULL;
        if (q == NULL || memmem(q, req->path.len - req->query_at, "api-version=", 12) == NULL) {
            send_json(req, NULL, 404,
                      json_pack("{s:{s:s,s:s}}", "error", "code", "404", "message", "Resource not found"));
            goto done;
        }
    }
    const char *what = NULL, *param = NULL;
    if (!json_is_object(root))
        what = "We could not parse the JSON body of your request. (mock)";
    else if (!azure_classic && !json_is_string(json_object_get(root, "model")))
        what = "you must provide a model parameter", param = "model";
    else if (op == OP_CHAT && (!json_is_array(json_object_get(root, "messages")) ||
                               json_array_size(json_object_get(root, "messages")) == 0))
        what = "messages must be a non-empty array", param = "messages";
    else if (op == OP_LEGACY && !json_is_string(json_object_get(root, "prompt")) &&
             !json_is_array(json_object_get(root, "prompt")))
        what = "prompt must be a string or an array of strings", param = "prompt";
    if (what != NULL) {
        send_json(req, NULL, 400, openai_error(what, "invalid_request_error", param, NULL));
        goto done;
    }
    if ((fl == F_MISTRAL && mistral_check(req, root, op) != 0) || (fl == F_GROQ && groq_check(req, root) != 0))
        goto done;
    if (op == OP_EMBED) {
        embeddings(req, root, fl);
    } else {
        struct scen s;
        scenario(&s, req, root, fl, op, NULL, seq);
        if (azure_classic && s.model[0] == '\0') { /* the deployment names the model */
            h2o_iovec_t p = req->path_normalized;
            const char *d = p.base + strlen("/openai/deployments/"), *slash = memchr(d, '/', p.base + p.len - d);
            s.model = h2o_strdup(&req->pool, d, slash != NULL ? (size_t)(slash - d) : 0).base;
        }
        reply(&s);
    }
done:
    json_decref(root);
}

int
mock_openai_quirks_route(h2o_req_t *req)
{
    h2o_iovec_t p = req->path_normalized;
    enum op op = has_suffix(p, "/chat/completions") ? OP_CHAT
                 : has_suffix(p, "/completions")    ? OP_LEGACY
                 : has_suffix(p, "/embeddings")     ? OP_EMBED
                                                    : (enum op) - 1;
    if (has_prefix(p, "/openai/deployments/") || has_prefix(p, "/openai/v1/")) {
        if ((int)op < 0)
            return 0;
        handle(req, F_AZURE, op, has_prefix(p, "/openai/deployments/"));
        return 1;
    }
    if (has_prefix(p, "/mistral/v1/")) {
        if (op != OP_CHAT && op != OP_EMBED)
            return 0;
        handle(req, F_MISTRAL, op, 0);
        return 1;
    }
    if (has_prefix(p, "/groq/openai/v1/")) {
        if (op == OP_EMBED || op == OP_LEGACY) {
            mock_record(req, NULL);
            send_json(req, NULL, 404,
                      openai_error("Unknown request URL. Please check the URL for typos, or see the docs at "
                                   "https://console.groq.com/docs/",
                                   "invalid_request_error", NULL, "unknown_url"));
            return 1;
        }
        if (op != OP_CHAT)
            return 0;
        handle(req, F_GROQ, op, 0);
        return 1;
    }
    /* the plain OpenAI surface: the core serves chat, this file the rest */
    if (op == OP_LEGACY || op == OP_EMBED) {
        handle(req, F_OPENAI, op, 0);
        return 1;
    }
    return 0;
}
