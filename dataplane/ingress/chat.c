/*
 * POST /v1/chat/completions: authenticate, resolve the route, rewrite the few body fields that must
 * change, call the upstream, relay the answer, account for it.
 *
 * Hot path: the body is scanned once without building a DOM; only `model` (to the upstream name) and,
 * for streams, `stream_options.include_usage` (so the gateway can bill exactly) are rewritten, by
 * splicing spans. Streams are relayed event by event: upstream bytes go through the SSE parser into a
 * pending buffer; one h2o_send is in flight at a time; while the pending buffer is over a high-water
 * mark the upstream transfer is paused (backpressure all the way to the provider).
 *
 * Memory: the request state lives in the request's pool with a dispose callback, which cancels the
 * upstream call, records usage if nothing was recorded yet (client gone), and frees the buffers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "accounting/usage.h"
#include "ingress/ingress.h"
#include "tollgate/env.h"
#include "tollgate/http_status.h"
#include "tollgate/json_scan.h"
#include "tollgate/log.h"
#include "tollgate/sse.h"
#include "translate/openai_chat.h"

#define PENDING_HIGH_WATER (256 * 1024)
#define MAX_RESPONSE_BYTES (64u << 20)
#define MAX_SSE_EVENT      (8u << 20)

typedef struct out_buf {
    char *base;
    size_t len, cap;
} out_buf_t;

typedef struct chat {
    h2o_generator_t gen; /* first: h2o hands it back to us */
    h2o_req_t *req;
    dp_worker_t *w;
    dp_snapshot_t *snapshot; /* held until dispose: key, route and target point into it */
    const dp_vkey_t *key;
    const dp_target_t *target;
    const char *request_id;
    const char *model;
    size_t model_len;
    dp_upstream_call_t call;
    uint64_t started_ns;
    int64_t started_unix_ms;

    out_buf_t response; /* non-streaming: the whole upstream body */
    tg_sse_parser_t sse;
    out_buf_t pending, sending; /* streaming: what waits, what h2o holds */

    int64_t input_tokens, output_tokens, cached_tokens;
    unsigned stream : 1;
    unsigned client_wants_usage : 1;
    unsigned streaming : 1; /* response headers sent, relaying events */
    unsigned send_in_flight : 1;
    unsigned upstream_done : 1;
    unsigned stream_failed : 1;
    unsigned final_sent : 1;
    unsigned recorded : 1;
    unsigned sse_ready : 1;
} chat_t;

/* ---- accounting ---- */

static void
record_usage(chat_t *c, uint32_t status)
{
    if (c->recorded)
        return;
    c->recorded = 1;
    const dp_target_t *t = c->target;
    int billable = status == 200 || (c->streaming && (c->input_tokens > 0 || c->output_tokens > 0));
    int64_t in = billable ? c->input_tokens : 0, out = billable ? c->output_tokens : 0,
            cached = billable ? c->cached_tokens : 0;
    dp_usage_fields_t f = {
        .request_id = c->request_id,
        .tenant_id = c->key->tenant_id,
        .key_id = c->key->id,
        .model = c->model,
        .model_len = c->model_len,
        .provider_id = t->provider->id,
        .upstream_model = t->upstream_model,
        .endpoint = "chat.completions",
        .input_tokens = in,
        .output_tokens = out,
        .cached_input_tokens = cached,
        .cost_nanousd = dp_usage_cost(t->price, in, cached, out),
        .status = status,
        .stream = c->stream,
        .started_unix_ms = c->started_unix_ms,
        .latency_ms = (uint32_t)((tg_mono_ns() - c->started_ns) / 1000000),
    };
    if (dp_usage_append(&c->w->usage, &f) != 0)
        tg_error("dp.usage.append_failed", "request_id=%s", c->request_id);
}

/* Reads OpenAI's usage object: prompt_tokens (cached included), completion_tokens, cached_tokens. */
static void
read_usage(chat_t *c, tg_json_span_t usage)
{
    tg_json_iter_t it;
    tg_json_span_t k, v, cached;
    tg_json_iter_init(&it, usage);
    while (tg_json_object_next(&it, &k, &v) == 1) {
        if (tg_json_string_eq(k, "prompt_tokens"))
            tg_json_to_int64(v, &c->input_tokens);
        else if (tg_json_string_eq(k, "completion_tokens"))
            tg_json_to_int64(v, &c->output_tokens);
        else if (tg_json_string_eq(k, "prompt_tokens_details") && v.type == TG_JSON_OBJECT &&
                 tg_json_object_get(v, "cached_tokens", &cached) == 1)
            tg_json_to_int64(cached, &c->cached_tokens);
    }
}

enum { BODY_HAS_USAGE = 1, BODY_NO_CHOICES = 2, BODY_HAS_ERROR = 4 };

/* One pass over an OpenAI response body or stream chunk: takes the usage, and says what it saw. A body
 * that is not a JSON object yields 0 (it is relayed as it is, not judged here). */
static int
read_openai_body(chat_t *c, const char *data, size_t len)
{
    tg_json_iter_t it;
    tg_json_span_t k, v;
    tg_json_type_t type;
    int seen = 0, rv;
    if (tg_json_iter_init_text(&it, data, len, &type) != 0 || type != TG_JSON_OBJECT)
        return 0;
    while ((rv = tg_json_object_next(&it, &k, &v)) == 1) {
        if (v.type == TG_JSON_OBJECT && tg_json_string_eq(k, "usage")) {
            read_usage(c, v);
            seen |= BODY_HAS_USAGE;
        } else if (v.type == TG_JSON_ARRAY && tg_json_string_eq(k, "choices")) {
            if (tg_json_is_empty(v))
                seen |= BODY_NO_CHOICES;
        } else if (v.type == TG_JSON_OBJECT && tg_json_string_eq(k, "error")) {
            seen |= BODY_HAS_ERROR;
        }
    }
    return rv == 0 ? seen : 0;
}

/* ---- buffers ---- */

static int
buf_append(out_buf_t *b, const char *p, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len)
            cap *= 2;
        char *n = realloc(b->base, cap);
        if (n == NULL)
            return -1;
        b->base = n;
        b->cap = cap;
    }
    memcpy(b->base + b->len, p, len);
    b->len += len;
    return 0;
}

/* ---- streaming relay ---- */

static void
flush_pending(chat_t *c)
{
    if (c->send_in_flight || c->final_sent || !c->streaming)
        return;
    h2o_send_state_t state = H2O_SEND_STATE_IN_PROGRESS;
    if (c->upstream_done) {
        /* h2o 2.2 closes an HTTP/1.1 chunked response without its terminator only for an ERROR send that
         * carries no data, so a failed stream sends its last bytes first and the ERROR on its own */
        if (!c->stream_failed)
            state = H2O_SEND_STATE_FINAL;
        else if (c->pending.len == 0)
            state = H2O_SEND_STATE_ERROR;
    }
    if (c->pending.len == 0 && state == H2O_SEND_STATE_IN_PROGRESS)
        return; /* nothing to say yet; an empty in-progress send is not safe on every protocol */

    out_buf_t t = c->sending;
    c->sending = c->pending;
    c->pending = t;
    c->pending.len = 0;
    h2o_iovec_t iov = h2o_iovec_init(c->sending.base, c->sending.len);
    c->send_in_flight = state == H2O_SEND_STATE_IN_PROGRESS;
    if (state != H2O_SEND_STATE_IN_PROGRESS)
        c->final_sent = 1;
    h2o_send(c->req, &iov, iov.len ? 1 : 0, state);
}

static int
on_sse_event(void *ctx, const tg_sse_event_t *ev)
{
    chat_t *c = ctx;
    if (ev->has_data && !(ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)) {
        int seen = read_openai_body(c, ev->data, ev->data_len);
        if (seen & BODY_HAS_ERROR)
            c->stream_failed = 1;
        /* the usage-only chunk we asked for on the client's behalf is not theirs to see */
        if ((seen & (BODY_HAS_USAGE | BODY_NO_CHOICES)) == (BODY_HAS_USAGE | BODY_NO_CHOICES) && !c->client_wants_usage)
            return 0;
    }
    return buf_append(&c->pending, ev->raw, ev->raw_len);
}

static void
on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    chat_t *c = (chat_t *)gen;
    c->send_in_flight = 0;
    c->sending.len = 0;
    if (c->call.paused && c->pending.len < PENDING_HIGH_WATER)
        dp_upstream_call_resume(&c->call); /* may deliver bytes, or even finish, right here */
    flush_pending(c);
}

static void
on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    chat_t *c = (chat_t *)gen;
    /* the client went away: stop paying for tokens nobody reads */
    dp_upstream_call_cancel(&c->call);
    c->final_sent = 1;
    record_usage(c, 499);
}

static void
start_stream(chat_t *c)
{
    h2o_req_t *req = c->req;
    c->streaming = 1;
    req->res.status = 200;
    req->res.reason = "OK";
    const char *ct = c->call.content_type[0] ? c->call.content_type : "text/event-stream";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ct, strlen(ct));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    tg_sse_init(&c->sse, MAX_SSE_EVENT);
    c->sse_ready = 1;
    h2o_start_response(req, &c->gen);
}

/* ---- upstream callbacks ---- */

static size_t
on_body(dp_upstream_call_t *call, const char *buf, size_t len)
{
    chat_t *c = call->data;
    if (c->final_sent)
        return 0;
    if (!c->streaming && c->stream && call->status == 200 && strncmp(call->content_type, "text/event-stream", 17) == 0)
        start_stream(c);
    if (!c->streaming)
        return c->response.len + len > MAX_RESPONSE_BYTES || buf_append(&c->response, buf, len) != 0 ? 0 : len;

    if (c->pending.len >= PENDING_HIGH_WATER)
        return DP_UPSTREAM_PAUSE;
    if (tg_sse_feed(&c->sse, buf, len, on_sse_event, c) != 0)
        return 0; /* an oversized event or no memory: abort, on_done reports it */
    flush_pending(c);
    return len;
}

static void
send_buffered_response(chat_t *c)
{
    h2o_req_t *req = c->req;
    long status = c->call.status;
    if (status == 200)
        read_openai_body(c, c->response.base, c->response.len);
    req->res.status = (int)status;
    req->res.reason = tg_http_reason((int)status);
    const char *ct = c->call.content_type[0] ? c->call.content_type : "application/json";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ct, strlen(ct));
    if (c->call.retry_after[0])
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, c->call.retry_after,
                       strlen(c->call.retry_after));
    req->res.content_length = c->response.len;
    record_usage(c, (uint32_t)status);
    c->final_sent = 1;
    h2o_start_response(req, &c->gen);
    h2o_iovec_t iov = h2o_iovec_init(c->response.base, c->response.len);
    h2o_send(req, &iov, iov.len ? 1 : 0, H2O_SEND_STATE_FINAL);
}

static void
on_done(dp_upstream_call_t *call, CURLcode rc)
{
    chat_t *c = call->data;
    c->upstream_done = 1;
    if (c->final_sent)
        return;
    if (c->streaming) {
        if (rc != CURLE_OK || tg_sse_pending(&c->sse) > 0)
            c->stream_failed = 1;
        if (rc != CURLE_OK) {
            /* the client must see a failure, never a short answer that looks complete */
            char msg[512], event[1400];
            int n = snprintf(msg, sizeof(msg), "The upstream provider failed mid-stream: %s",
                             call->error[0] ? call->error : curl_easy_strerror(rc));
            size_t len = (size_t)sprintf(event, "data: {\"error\":{\"message\":");
            len += tg_json_quote(event + len, msg, n < (int)sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
            len += (size_t)sprintf(
                event + len, ",\"type\":\"upstream_error\",\"param\":null,\"code\":\"upstream_stream_failed\"}}\n\n");
            buf_append(&c->pending, event, len);
            tg_warn("dp.upstream.stream_failed", "request_id=%s provider=%s error=%s", c->request_id,
                    c->target->provider->name, msg);
        }
        record_usage(c, c->stream_failed ? 502 : 200);
        flush_pending(c);
        return;
    }
    if (rc != CURLE_OK) {
        const char *why = call->error[0] ? call->error : curl_easy_strerror(rc);
        tg_warn("dp.upstream.failed", "request_id=%s provider=%s error=%s", c->request_id, c->target->provider->name,
                why);
        record_usage(c, 502);
        c->final_sent = 1;
        dp_send_error(c->req, 502, "upstream_error", "upstream_unreachable", NULL,
                      "The upstream provider '%s' could not be reached or failed: %s", c->target->provider->name, why);
        return;
    }
    send_buffered_response(c);
}

static const dp_upstream_callbacks_t upstream_callbacks = {.on_body = on_body, .on_done = on_done};

static void
on_dispose(void *p)
{
    chat_t *c = p;
    dp_upstream_call_cancel(&c->call);
    record_usage(c, 499);
    if (c->sse_ready)
        tg_sse_dispose(&c->sse);
    free(c->response.base);
    free(c->pending.base);
    free(c->sending.base);
    atomic_fetch_sub_explicit(&c->w->inflight, 1, memory_order_relaxed);
    dp_snapshot_unref(c->snapshot);
}

/* ---- request ---- */

static const dp_provider_key_t *
pick_key(dp_worker_t *w, const dp_provider_t *p)
{
    if (p->n_keys == 1)
        return &p->keys[0];
    uint32_t x = (uint32_t)(dp_worker_rand(w) % p->total_weight);
    for (size_t i = 0; i < p->n_keys; i++) {
        if (x < p->keys[i].weight)
            return &p->keys[i];
        x -= p->keys[i].weight;
    }
    return &p->keys[p->n_keys - 1];
}

int
dp_chat_handle(h2o_req_t *req, dp_worker_t *w, const char *request_id)
{
    dp_snapshot_t *s;
    const dp_vkey_t *key = dp_admit(req, w, &s);
    if (key == NULL)
        return 0;

    /* one pass over the top level validates the whole body and finds the fields we need */
    h2o_iovec_t body = req->entity;
    if (body.len > dp_config.max_body_bytes) {
        dp_send_error(req, 413, "invalid_request_error", "request_too_large", NULL,
                      "The request body is %zu bytes; this gateway accepts at most %zu.", body.len,
                      dp_config.max_body_bytes);
        return 0;
    }
    dp_openai_chat_t parsed;
    if (dp_openai_chat_parse(body.base, body.len, &parsed) != 0) {
        dp_send_error(req, 400, "invalid_request_error", "invalid_json", NULL,
                      "We could not parse the JSON body of your request: it must be a JSON object.");
        return 0;
    }
    tg_json_span_t model = parsed.model, messages = parsed.messages;
    int stream = parsed.stream;
    if (model.type != TG_JSON_STRING || model.len <= 2) {
        dp_send_error(req, 400, "invalid_request_error", "missing_required_parameter", "model",
                      "You must provide a model parameter.");
        return 0;
    }
    if (messages.type != TG_JSON_ARRAY) {
        dp_send_error(req, 400, "invalid_request_error", "missing_required_parameter", "messages",
                      "Missing required parameter: 'messages' (an array).");
        return 0;
    }

    const char *name = model.p + 1;
    size_t name_len = model.len - 2;
    if (memchr(name, '\\', name_len) != NULL) {
        char *decoded = h2o_mem_alloc_pool(&req->pool, model.len);
        if (tg_json_string_decode(model, decoded, model.len, &name_len) != 0) {
            dp_send_error(req, 400, "invalid_request_error", "invalid_value", "model", "The model name is invalid.");
            return 0;
        }
        name = decoded;
    }
    const dp_route_t *route = dp_snapshot_find_route(s, name, name_len);
    if (route == NULL || !dp_vkey_allows(key, name, name_len)) {
        dp_send_error(req, 404, "invalid_request_error", "model_not_found", "model",
                      "The model '%.*s' does not exist or you do not have access to it.",
                      (int)(name_len > 200 ? 200 : name_len), name);
        return 0;
    }
    if (route->n_targets == 0) {
        dp_send_error(req, 503, "server_error", "no_upstream", "model", "The model '%.*s' has no upstream configured.",
                      (int)(name_len > 200 ? 200 : name_len), name);
        return 0;
    }
    const dp_target_t *target = &route->targets[0];
    const dp_provider_key_t *pkey = pick_key(w, target->provider);

    /* rewrite: model to the upstream name; for streams, ask for the usage chunk */
    dp_body_plan_t plan;
    dp_openai_chat_plan(&parsed, target->upstream_model_json, target->upstream_model_json_len, &plan);
    h2o_iovec_t upstream_body = body;
    if (plan.n > 0) {
        upstream_body.len = body.len + plan.delta;
        upstream_body.base = h2o_mem_alloc_pool(&req->pool, upstream_body.len + 1);
        dp_body_plan_apply(&plan, body.base, body.len, upstream_body.base);
    }

    chat_t *c = h2o_mem_alloc_shared(&req->pool, sizeof(*c), on_dispose);
    memset(c, 0, sizeof(*c));
    c->gen.proceed = on_proceed;
    c->gen.stop = on_stop;
    c->req = req;
    c->w = w;
    c->snapshot = s;
    dp_snapshot_ref(s);
    c->key = key;
    c->target = target;
    c->request_id = request_id;
    c->model = name;
    c->model_len = name_len;
    c->stream = stream;
    c->client_wants_usage = plan.client_wants_usage;
    c->started_ns = tg_mono_ns();
    c->started_unix_ms = tg_now_unix_ms();
    c->call.cb = &upstream_callbacks;
    c->call.data = c;
    atomic_fetch_add_explicit(&w->inflight, 1, memory_order_relaxed);

    if (dp_upstream_call_start(w->upstream, &c->call, target->chat_url,
                               pkey->headers[stream ? DP_HEADERS_STREAM : DP_HEADERS_JSON], upstream_body.base,
                               upstream_body.len) != 0) {
        c->final_sent = 1;
        record_usage(c, 502);
        dp_send_error(req, 502, "upstream_error", "upstream_unreachable", NULL,
                      "The request to the upstream provider could not be started.");
    }
    return 0;
}
