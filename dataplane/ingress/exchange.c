/*
 * One LLM call, whatever the client's dialect and the provider's wire format: authenticate, resolve the
 * route, build the upstream request, call it, relay or translate the answer, account for it.
 *
 * Two modes:
 * - passthrough: an OpenAI client and an OpenAI-family provider. The body is scanned once without a DOM
 *   and only `model` (to the upstream name) and, for streams, `stream_options.include_usage` (so the
 *   gateway can bill exactly) are rewritten by splicing spans. Stream events are relayed as they came;
 *   the usage-only chunk the gateway asked for is hidden from clients that did not ask for it.
 * - translated: everything else. The client body is decoded by its dialect adapter into the neutral
 *   request, encoded by the provider adapter; the answer comes back through the provider adapter
 *   (decode_response, or stream frames to neutral events) and the dialect adapter (encode_response, or
 *   stream_event). See translate/README.md.
 *
 * Retries and fallbacks: until the first byte reaches the client, a failed attempt is tried again.
 * Connection errors, 408, 429, 5xx and 529 retry the same target with exponential backoff and jitter
 * (Retry-After honoured, capped), a 429 on another key when there is one; 401/403 mark the key bad and
 * rotate at once; 400, 404, 413 and 422 are the client's and are never retried. A target whose retries
 * are spent hands over to the plan's next target (routing/routing.h: the model's targets, then the
 * request's fallbacks), each with its own budget; targets whose breakers are all open are skipped. When
 * all fail the client gets the first target's error. Failed attempts bill nothing. `x-tollgate-attempts`
 * lists every try. Each attempt's outcome feeds its (account, key, model) circuit breaker.
 *
 * Deadline: the first attempt fixes the request's deadline (its target's total_timeout_ms from then).
 * Every attempt gets what is left of it (or attempt_timeout_ms when that is shorter) as its curl
 * timeout; no retry or fallback starts, and no backoff wait is begun, that would end past it.
 *
 * Streams: upstream bytes go through the framing (SSE, NDJSON or AWS event-stream) into a pending
 * buffer; one h2o_send is in flight at a time; while the pending buffer is over a high-water mark the
 * upstream transfer is paused (backpressure all the way to the provider). A stream that fails after it
 * started ends with an error event in the client's dialect, never as a short answer that looks complete.
 *
 * Memory: the state lives in the request's pool with a dispose callback, which cancels the upstream
 * call, records usage if nothing was recorded yet (client gone), and frees buffers and the arena that
 * holds the neutral request.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "accounting/usage.h"
#include "admission/admission.h"
#include "ingress/ingress.h"
#include "observe/observe.h"
#include "routing/routing.h"
#include "tollgate/arena.h"
#include "tollgate/buf.h"
#include "tollgate/clock.h"
#include "tollgate/env.h"
#include "tollgate/http_status.h"
#include "tollgate/json_scan.h"
#include "tollgate/log.h"
#include "tollgate/sse.h"
#include "translate/bedrock/eventstream.h"
#include "translate/bedrock/sigv4.h"
#include "translate/gemini/vertex_auth.h"
#include "translate/openai_chat.h"
#include "upstream/token_cache.h"

#define PENDING_HIGH_WATER (256 * 1024)
#define MAX_RESPONSE_BYTES (64u << 20)
#define MAX_SSE_EVENT      (8u << 20)
#define MAX_NDJSON_LINE    (8u << 20)
#define ARENA_MAX          (256u << 20)
#define TOKEN_MARGIN_S     300 /* refresh OAuth tokens this long before they expire */

#define MAX_ATTEMPTS       16 /* all targets together */
#define BACKOFF_BASE_MS    100
#define BACKOFF_MAX_MS     4000
#define RETRY_AFTER_MAX_MS 5000
#define CLIENT_CHECK_MS    100 /* how often a waiting request checks that its client is still there */

typedef enum { PHASE_CALL = 0, PHASE_TOKEN } phase_t;

typedef struct exchange exchange_t;

struct retry_timer {
    uv_timer_t handle; /* first: the close callback frees the whole struct */
    exchange_t *x;     /* NULL once the exchange is disposed */
};

/* The first target's final failure: what the client gets when every target failed. */
typedef struct failure {
    int set;
    const dp_target_t *target;
    int translated;
    long status;
    CURLcode rc;
    char error[CURL_ERROR_SIZE];
    char content_type[96];
    char retry_after[32];
    tg_buf_t body;
} failure_t;

struct exchange {
    h2o_generator_t gen; /* first: h2o hands it back to us */
    h2o_req_t *req;
    dp_worker_t *w;
    const dp_endpoint_t *ep;
    dp_snapshot_t *snapshot; /* held until dispose: key, route and target point into it */
    const dp_vkey_t *key;
    dp_plan_t plan; /* the targets this request may try, in order (routing/routing.h) */
    dp_chooser_t chooser;
    const dp_target_t *target;
    const dp_provider_key_t *pkey;
    dp_breaker_t *breaker; /* the current attempt's, until its outcome is recorded */
    size_t target_index;   /* into plan */
    int target_attempts;   /* attempts on the current target */
    /* counters for whoever reports on the request (metrics, access log) when it ends */
    int attempts;                /* upstream calls made */
    int retries;                 /* calls that repeated the same target (another key included) */
    int fallbacks;               /* switches to another target */
    int skipped;                 /* targets passed over because their breakers were open */
    int64_t deadline_ms;         /* monotonic ms: the whole request's end (total_timeout_ms); 0 until set */
    long total_ms;               /* the total timeout that set it, for the error message */
    int64_t attempt_deadline_ms; /* the current attempt's curl timeout, as a monotonic time */
    int attempt_to_deadline;     /* that timeout is the request's remaining time (not attempt_timeout_ms) */
    uint64_t bad_keys;           /* keys of the current target's provider that failed auth or rate limits (bit i) */
    struct retry_timer *timer;
    struct retry_timer *watch; /* looks for a client that left while the answer is awaited */
    failure_t *first_failure;  /* in the pool, once an attempt failed and was kept (keep_first_failure) */
    tg_buf_t attempt_log;      /* "provider/model=status" list for x-tollgate-attempts */
    h2o_iovec_t body;
    dp_openai_chat_t parsed;
    int decoded; /* treq holds the client's request (translated mode) */
    const char *request_id;
    dp_obs_t *obs; /* the request's observability record: hooks at each attempt and at the end */
    const char *model;
    size_t model_len;
    dp_upstream_call_t call;
    uint64_t started_ns;
    int64_t started_unix_ms;
    phase_t phase;

    /* translated mode */
    tg_arena_t arena;
    tx_request_t treq;
    tx_http_request_t hreq;
    const tx_dialect_ops_t *dialect;
    const tx_provider_ops_t *provider;
    tx_stream_state_t *up_state, *client_state;
    struct curl_slist *headers; /* per request: the key's lines, the adapter's, dynamic auth; wiped on free */
    tx_error_t *err;            /* in the pool, on first use (xerr): a passthrough request never needs one */

    tg_buf_t response; /* non-streaming (and token fetch): the whole upstream body */
    tg_sse_parser_t sse;
    tg_buf_t line;             /* NDJSON: the unfinished line */
    tx_eventstream_t evs;      /* AWS event-stream framing */
    tg_buf_t pending, sending; /* streaming: what waits, what h2o holds */

    tx_usage_t usage;
    dp_admission_t adm; /* reservations against budgets and rate limits, settled in record_usage */
    unsigned translated : 1;
    unsigned url_model : 1; /* the URL named the model (Gemini): treq.model is set before decoding */
    unsigned stream : 1;
    unsigned client_wants_usage : 1;
    unsigned streaming : 1; /* response headers sent, relaying events */
    unsigned send_in_flight : 1;
    unsigned upstream_done : 1;
    unsigned stream_failed : 1;
    unsigned stream_ended : 1; /* the provider's end marker was seen (translated) */
    unsigned final_sent : 1;
    unsigned recorded : 1;
    unsigned sse_ready : 1;
};

/* The exchange's translation error, in the request's pool on first use. The error and the kept first
 * failure (1.1 KB together) are out of line because the exchange lives as long as its stream: with
 * thousands of long streams every byte of it counts, and a passthrough request that succeeds needs
 * neither. */
static tx_error_t *
xerr(exchange_t *x)
{
    if (x->err == NULL) {
        x->err = h2o_mem_alloc_pool(&x->req->pool, sizeof(*x->err));
        memset(x->err, 0, sizeof(*x->err));
    }
    return x->err;
}

/* ---------------------------------------------------------------- accounting */

static void
record_usage(exchange_t *x, uint32_t status)
{
    if (x->recorded || x->target == NULL)
        return;
    x->recorded = 1;
    const dp_target_t *t = x->target;
    int billable = status == 200 || (x->streaming && (x->usage.input > 0 || x->usage.output > 0));
    int64_t in = billable ? x->usage.input : 0, out = billable ? x->usage.output : 0,
            cached = billable ? x->usage.cache_read : 0;
    dp_usage_fields_t f = {
        .request_id = x->request_id,
        .tenant_id = x->key->tenant_id,
        .team_id = x->key->team_id,
        .key_id = x->key->id,
        .model = x->model,
        .model_len = x->model_len,
        .provider_id = t->provider->id,
        .upstream_model = t->upstream_model,
        .endpoint = x->ep->usage_name,
        .input_tokens = in,
        .output_tokens = out,
        .cached_input_tokens = cached,
        .cost_nanousd = dp_usage_cost(t->price, in, cached, out),
        .status = status,
        .stream = x->stream,
        .started_unix_ms = x->started_unix_ms,
        .latency_ms = (uint32_t)((tg_mono_ns() - x->started_ns) / 1000000),
    };
    dp_obs_usage(x->obs, &f, t->provider->name);
    if (dp_usage_append(&x->w->usage, &f) != 0)
        tg_error("dp.usage.append_failed", "request_id=%s", x->request_id);
    else
        dp_worker_usage_added(x->w);
    dp_admission_settle(&x->adm, f.cost_nanousd, in + out);
}

/* OpenAI's usage object: prompt_tokens (cached included), completion_tokens, cached_tokens. */
static void
read_usage(exchange_t *x, tg_json_span_t usage)
{
    tg_json_iter_t it;
    tg_json_span_t k, v, cached;
    tg_json_iter_init(&it, usage);
    x->usage.known = 1;
    while (tg_json_object_next(&it, &k, &v) == 1) {
        if (tg_json_string_eq(k, "prompt_tokens"))
            tg_json_to_int64(v, &x->usage.input);
        else if (tg_json_string_eq(k, "completion_tokens"))
            tg_json_to_int64(v, &x->usage.output);
        else if (tg_json_string_eq(k, "prompt_tokens_details") && v.type == TG_JSON_OBJECT &&
                 tg_json_object_get(v, "cached_tokens", &cached) == 1)
            tg_json_to_int64(cached, &x->usage.cache_read);
    }
}

enum { BODY_HAS_USAGE = 1, BODY_NO_CHOICES = 2, BODY_HAS_ERROR = 4 };

/* One pass over an OpenAI response body or stream chunk (passthrough): takes the usage, and says what it
 * saw. A body that is not a JSON object yields 0 (it is relayed as it is, not judged here), and so does
 * one that cannot hold a usage or error object: most stream chunks, which then skip the walk
 * (BODY_NO_CHOICES matters only next to BODY_HAS_USAGE). */
static int
read_openai_body(exchange_t *x, const char *data, size_t len)
{
    tg_json_iter_t it;
    tg_json_span_t k, v;
    tg_json_type_t type;
    int seen = 0, rv;
    if (!tg_json_may_have_object_member(data, len, "usage", "error"))
        return 0;
    if (tg_json_iter_init_text(&it, data, len, &type) != 0 || type != TG_JSON_OBJECT)
        return 0;
    while ((rv = tg_json_object_next(&it, &k, &v)) == 1) {
        if (v.type == TG_JSON_OBJECT && tg_json_string_eq(k, "usage")) {
            read_usage(x, v);
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

/* ---------------------------------------------------------------- health */

/* The current attempt's outcome, for its circuit breaker; once per attempt. */
static void
breaker_outcome(exchange_t *x, int ok)
{
    if (x->breaker == NULL)
        return;
    dp_breaker_record(x->breaker, &x->target->provider->policy.breaker, ok, dp_breaker_now_ms());
    x->breaker = NULL;
}

/* ---------------------------------------------------------------- streaming relay */

static void
flush_pending(exchange_t *x)
{
    if (x->send_in_flight || x->final_sent || !x->streaming)
        return;
    h2o_send_state_t state = H2O_SEND_STATE_IN_PROGRESS;
    if (x->upstream_done) {
        /* h2o 2.2 closes an HTTP/1.1 chunked response without its terminator only for an ERROR send that
         * carries no data, so a failed stream sends its last bytes first and the ERROR on its own */
        if (!x->stream_failed)
            state = H2O_SEND_STATE_FINAL;
        else if (x->pending.len == 0)
            state = H2O_SEND_STATE_ERROR;
    }
    if (x->pending.len == 0 && state == H2O_SEND_STATE_IN_PROGRESS)
        return; /* nothing to say yet; an empty in-progress send is not safe on every protocol */

    tg_buf_t t = x->sending;
    x->sending = x->pending;
    x->pending = t;
    x->pending.len = 0;
    h2o_iovec_t iov = h2o_iovec_init(x->sending.base, x->sending.len);
    dp_obs_capture(x->obs, iov.base, iov.len);
    x->send_in_flight = state == H2O_SEND_STATE_IN_PROGRESS;
    if (state != H2O_SEND_STATE_IN_PROGRESS)
        x->final_sent = 1;
    h2o_send(x->req, &iov, iov.len ? 1 : 0, state);
}

static void
on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    exchange_t *x = (exchange_t *)gen;
    x->send_in_flight = 0;
    /* h2o is done with it: a stream between events holds no buffer (memory per concurrent stream) */
    tg_buf_free(&x->sending);
    if (x->call.paused && x->pending.len < PENDING_HIGH_WATER)
        dp_upstream_call_resume(&x->call); /* may deliver bytes, or even finish, right here */
    flush_pending(x);
}

static void
on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    exchange_t *x = (exchange_t *)gen;
    /* the client went away: stop paying for tokens nobody reads */
    dp_upstream_call_cancel(&x->call);
    x->final_sent = 1;
    record_usage(x, 499);
}

/* x-tollgate-attempts: every try when there was more than one ("provider/model=status, ..."). */
/* x-tollgate-budget-warning, one per budget of the key whose soft threshold is crossed
 * (docs/admission.md): found at admission, so it costs nothing here when there is none. */
static void
add_budget_warnings(exchange_t *x)
{
    for (int i = 0; i < x->adm.n_warn; i++) {
        char *v = h2o_mem_alloc_pool(&x->req->pool, 160);
        size_t n = dp_admission_warning(&x->adm, i, v, 160);
        h2o_add_header_by_str(&x->req->pool, &x->req->res.headers, H2O_STRLIT("x-tollgate-budget-warning"), 0, NULL, v,
                              n);
    }
}

/* The gateway's own headers on an answer after admission (every such answer goes through here). */
static void
add_attempts_header(exchange_t *x)
{
    if ((x->attempts > 1 || x->skipped > 0) && x->attempt_log.len > 0)
        h2o_add_header_by_str(&x->req->pool, &x->req->res.headers, H2O_STRLIT("x-tollgate-attempts"), 0, NULL,
                              h2o_strdup(&x->req->pool, x->attempt_log.base, x->attempt_log.len).base,
                              x->attempt_log.len);
    add_budget_warnings(x);
}

static void
start_stream(exchange_t *x)
{
    h2o_req_t *req = x->req;
    x->streaming = 1;
    add_attempts_header(x);
    req->res.status = 200;
    req->res.reason = "OK";
    const char *ct = x->translated             ? x->dialect->stream_content_type
                     : x->call.content_type[0] ? x->call.content_type
                                               : "text/event-stream";
    if (ct == NULL)
        ct = "text/event-stream";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ct, strlen(ct));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    if (!x->translated || x->provider->framing == TX_FRAMING_SSE) {
        tg_sse_init(&x->sse, MAX_SSE_EVENT);
        x->sse_ready = 1;
    }
    h2o_start_response(req, &x->gen);
}

/* ---- passthrough stream events */

static int
on_passthrough_event(void *ctx, const tg_sse_event_t *ev)
{
    exchange_t *x = ctx;
    if (ev->has_data && !(ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)) {
        int seen = read_openai_body(x, ev->data, ev->data_len);
        if (seen & BODY_HAS_ERROR)
            x->stream_failed = 1;
        /* the usage-only chunk we asked for on the client's behalf is not theirs to see */
        if ((seen & (BODY_HAS_USAGE | BODY_NO_CHOICES)) == (BODY_HAS_USAGE | BODY_NO_CHOICES) && !x->client_wants_usage)
            return 0;
    }
    return tg_buf_append(&x->pending, ev->raw, ev->raw_len);
}

/* ---- translated stream events */

static int
on_tx_event(void *ctx, const tx_event_t *ev)
{
    exchange_t *x = ctx;
    if (x->stream_ended || x->stream_failed)
        return 0; /* nothing follows an end or an error */
    if (ev->kind == TX_EV_USAGE || (ev->kind == TX_EV_START && ev->usage.known)) {
        /* cumulative: the latest report wins, but a partial report never lowers what we know */
        if (ev->usage.input > x->usage.input)
            x->usage.input = ev->usage.input;
        if (ev->usage.output > x->usage.output)
            x->usage.output = ev->usage.output;
        if (ev->usage.cache_read > x->usage.cache_read)
            x->usage.cache_read = ev->usage.cache_read;
        if (ev->usage.cache_write > x->usage.cache_write)
            x->usage.cache_write = ev->usage.cache_write;
        if (ev->usage.reasoning > x->usage.reasoning)
            x->usage.reasoning = ev->usage.reasoning;
        x->usage.known = 1;
    }
    if (ev->kind == TX_EV_END)
        x->stream_ended = 1;
    if (ev->kind == TX_EV_ERROR) {
        x->stream_failed = 1;
        tg_warn("dp.upstream.stream_error", "request_id=%s provider=%s status=%d error=\"%s\"", x->request_id,
                x->target->provider->name, ev->error ? tx_error_status(ev->error) : 0,
                ev->error ? ev->error->message : "");
    }
    return x->dialect->stream_event(x->client_state, &x->treq, ev, &x->pending) != 0 ? -1 : 0;
}

static int
feed_frame(exchange_t *x, const tx_frame_t *f)
{
    int rv = x->provider->stream_frame(x->up_state, &x->treq, f, &x->arena, on_tx_event, x, xerr(x));
    if (rv == -1 && !x->stream_failed) {
        /* the provider's stream is unreadable: the client hears it as a stream error */
        tx_event_t ev = {.kind = TX_EV_ERROR, .error = xerr(x)};
        on_tx_event(x, &ev);
    }
    return 0;
}

static int
on_tx_sse(void *ctx, const tg_sse_event_t *ev)
{
    exchange_t *x = ctx;
    if (!ev->has_data)
        return 0;
    tx_frame_t f = {.event = ev->event_len ? ev->event : NULL,
                    .event_len = ev->event_len,
                    .data = ev->data,
                    .data_len = ev->data_len};
    return feed_frame(x, &f);
}

static int
on_tx_eventstream(void *ctx, const tx_frame_t *f)
{
    return feed_frame(ctx, f);
}

/* NDJSON: one JSON value a line; the unfinished line waits in x->line. */
static int
feed_ndjson(exchange_t *x, const char *buf, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(buf, '\n', len);
        size_t take = nl != NULL ? (size_t)(nl - buf) : len;
        if (x->line.len + take > MAX_NDJSON_LINE)
            return -1;
        if (tg_buf_append(&x->line, buf, take) != 0)
            return -1;
        if (nl == NULL)
            break;
        size_t l = x->line.len;
        while (l > 0 && (x->line.base[l - 1] == '\r' || x->line.base[l - 1] == ' '))
            l--;
        if (l > 0) {
            tx_frame_t f = {.data = x->line.base, .data_len = l};
            feed_frame(x, &f);
        }
        x->line.len = 0;
        buf += take + 1;
        len -= take + 1;
    }
    return 0;
}

static int
feed_translated(exchange_t *x, const char *buf, size_t len)
{
    switch (x->provider->framing) {
    case TX_FRAMING_SSE:
        return tg_sse_feed(&x->sse, buf, len, on_tx_sse, x) != 0 ? -1 : 0;
    case TX_FRAMING_NDJSON:
        return feed_ndjson(x, buf, len);
    case TX_FRAMING_EVENTSTREAM:
        if (tx_eventstream_feed(&x->evs, buf, len, on_tx_eventstream, x, xerr(x)) == -1) {
            tx_event_t ev = {.kind = TX_EV_ERROR, .error = xerr(x)};
            on_tx_event(x, &ev);
            return -1;
        }
        return 0;
    }
    return -1;
}

/* Does the upstream answer look like the stream we asked for? (An error comes as plain JSON.) */
static int
is_stream_response(const exchange_t *x)
{
    const char *ct = x->call.content_type;
    if (!x->translated)
        return strncmp(ct, "text/event-stream", 17) == 0;
    switch (x->provider->framing) {
    case TX_FRAMING_SSE:
        return strncmp(ct, "text/event-stream", 17) == 0;
    case TX_FRAMING_NDJSON:
        return strstr(ct, "ndjson") != NULL || strstr(ct, "json") != NULL; /* Ollama says application/x-ndjson */
    case TX_FRAMING_EVENTSTREAM:
        return strstr(ct, "eventstream") != NULL;
    }
    return 0;
}

/* ---------------------------------------------------------------- upstream callbacks */

static size_t
on_body(dp_upstream_call_t *call, const char *buf, size_t len)
{
    exchange_t *x = call->data;
    if (x->phase == PHASE_CALL)
        dp_obs_first_byte(x->obs);
    if (x->final_sent)
        return 0;
    if (x->phase == PHASE_CALL && !x->streaming && x->stream && call->status >= 200 && call->status < 300 &&
        is_stream_response(x))
        start_stream(x);
    if (!x->streaming)
        return x->response.len + len > MAX_RESPONSE_BYTES || tg_buf_append(&x->response, buf, len) != 0 ? 0 : len;

    if (x->pending.len >= PENDING_HIGH_WATER)
        return DP_UPSTREAM_PAUSE;
    int rv = x->translated ? feed_translated(x, buf, len) : tg_sse_feed(&x->sse, buf, len, on_passthrough_event, x);
    flush_pending(x);
    return rv != 0 ? 0 : len; /* 0: an oversized event, a bad frame or no memory: abort, on_done reports it */
}

static void
send_body(exchange_t *x, int status, const char *content_type, const char *body, size_t len)
{
    h2o_req_t *req = x->req;
    req->res.status = status;
    req->res.reason = tg_http_reason(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    if (x->call.retry_after[0])
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, x->call.retry_after,
                       strlen(x->call.retry_after));
    req->res.content_length = len;
    x->final_sent = 1;
    add_attempts_header(x);
    h2o_start_response(req, &x->gen);
    dp_obs_capture(x->obs, body, len);
    h2o_iovec_t iov = h2o_iovec_init(body, len);
    h2o_send(req, &iov, iov.len ? 1 : 0, H2O_SEND_STATE_FINAL);
}

static void
send_upstream_failure(exchange_t *x, int status, const char *code, const char *fmt, const char *detail)
{
    record_usage(x, (uint32_t)status);
    x->final_sent = 1;
    add_attempts_header(x);
    dp_send_error(x->req, x->ep->dialect, status, code, NULL, fmt, x->target->provider->name, detail);
}

static void
finish_passthrough(exchange_t *x)
{
    long status = x->call.status;
    if (status == 200)
        read_openai_body(x, x->response.base, x->response.len);
    record_usage(x, (uint32_t)status);
    send_body(x, (int)status, x->call.content_type[0] ? x->call.content_type : "application/json", x->response.base,
              x->response.len);
}

static void
finish_translated(exchange_t *x)
{
    long status = x->call.status;
    tg_buf_t out = {0};
    if (status >= 200 && status < 300) {
        tx_response_t resp = {0};
        if (x->provider->decode_response(&x->treq, x->response.base ? x->response.base : "", x->response.len, &x->arena,
                                         &resp, xerr(x)) != 0 ||
            x->dialect->encode_response(&x->treq, &resp, &x->arena, &out) != 0) {
            tg_warn("dp.upstream.bad_response", "request_id=%s provider=%s error=\"%s\"", x->request_id,
                    x->target->provider->name, xerr(x)->message);
            tg_buf_free(&out);
            record_usage(x, 502);
            x->final_sent = 1;
            tx_error_t e = *xerr(x);
            if (e.message[0] == '\0')
                tx_fail(&e, TX_ERR_UPSTREAM, "bad_upstream_response", NULL, "The provider's answer could not be read.");
            e.status = 502;
            add_attempts_header(x);
            dp_send_tx_error(x->req, x->ep->dialect, &e, x->request_id);
            return;
        }
        x->usage = resp.usage;
        record_usage(x, 200);
        char *body = h2o_mem_alloc_pool(&x->req->pool, out.len ? out.len : 1);
        memcpy(body, out.base, out.len);
        size_t len = out.len;
        tg_buf_free(&out);
        send_body(x, 200, "application/json", body, len);
        return;
    }
    /* a provider error, in the client's dialect */
    tx_error_t e = {0};
    if (x->provider->decode_error != NULL)
        x->provider->decode_error((int)status, x->response.base ? x->response.base : "", x->response.len, &e);
    else
        tx_fail(&e, tx_error_kind_of_status((int)status), NULL, NULL, "The provider answered with status %ld.", status);
    if (e.status == 0)
        e.status = (int)status;
    record_usage(x, (uint32_t)status);
    x->final_sent = 1;
    if (x->call.retry_after[0])
        h2o_add_header(&x->req->pool, &x->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, x->call.retry_after,
                       strlen(x->call.retry_after));
    add_attempts_header(x);
    dp_send_tx_error(x->req, x->ep->dialect, &e, x->request_id);
}

static int start_call(exchange_t *x);

/* The token endpoint answered: cache the token and make the real call. */
static void arm_attempt_timeouts(exchange_t *x);

static void
finish_token_fetch(exchange_t *x, CURLcode rc)
{
    const char *token;
    int64_t expires_in;
    if (rc != CURLE_OK) {
        send_upstream_failure(x, 502, "upstream_auth_failed", "Could not get an access token for '%s': %s",
                              x->call.error[0] ? x->call.error : curl_easy_strerror(rc));
        return;
    }
    if (x->call.status != 200 || tx_vertex_token_parse(x->response.base ? x->response.base : "", x->response.len,
                                                       &x->arena, &token, &expires_in, xerr(x)) != 0) {
        tg_warn("dp.upstream.token_failed", "request_id=%s provider=%s status=%ld", x->request_id,
                x->target->provider->name, x->call.status);
        send_upstream_failure(x, 502, "upstream_auth_failed",
                              "The token endpoint of '%s' refused the service account%s", ".");
        return;
    }
    dp_token_cache_put(x->pkey->id, token, tg_now_unix_ms() / 1000 + expires_in);
    char *line = tg_arena_sprintf(&x->arena, "Authorization: Bearer %s", token);
    struct curl_slist *n = line != NULL ? curl_slist_append(x->headers, line) : NULL;
    if (n == NULL) {
        send_upstream_failure(x, 500, "out_of_memory", "Out of memory calling '%s'%s", ".");
        return;
    }
    x->headers = n;
    x->response.len = 0;
    x->phase = PHASE_CALL;
    arm_attempt_timeouts(x); /* what the token fetch left of the deadline */
    if (start_call(x) != 0)
        send_upstream_failure(x, 502, "upstream_unreachable", "The request to '%s' could not be started%s", ".");
}

/* ---------------------------------------------------------------- retries and fallbacks */

static void start_attempt(exchange_t *x);

/* The current attempt's timeouts, from now: its curl timeout is what is left of the request's
 * deadline, or the provider's attempt_timeout_ms when that is shorter. Called before each call starts
 * (a token fetch may have used some of the time). */
static void
arm_attempt_timeouts(exchange_t *x)
{
    const dp_policy_t *pol = &x->target->provider->policy;
    int64_t now = dp_breaker_now_ms();
    if (x->deadline_ms == 0) {
        x->total_ms = pol->total_timeout_ms > 0 ? pol->total_timeout_ms : dp_config.upstream.total_timeout_ms;
        x->deadline_ms = now + x->total_ms;
    }
    int64_t left = x->deadline_ms - now;
    if (left < 1)
        left = 1; /* never 0: that means "no timeout" to libcurl */
    x->attempt_to_deadline = !(pol->attempt_timeout_ms > 0 && pol->attempt_timeout_ms < left);
    long ms = x->attempt_to_deadline ? (long)left : pol->attempt_timeout_ms;
    x->attempt_deadline_ms = now + ms;
    x->call.timeouts = (dp_upstream_timeouts_t){
        .connect_ms = pol->connect_timeout_ms,
        .total_ms = ms,
        .first_byte_ms = x->stream ? pol->first_byte_timeout_ms : 0,
        .idle_ms = x->stream ? pol->idle_timeout_ms : 0,
    };
}

/* Whether the request's deadline is reached, or would be after waiting delay_ms. */
static int
out_of_time(const exchange_t *x, uint64_t delay_ms)
{
    return x->deadline_ms != 0 && dp_breaker_now_ms() + (int64_t)delay_ms >= x->deadline_ms;
}

/* libcurl's timeout fired for the attempt: say which of ours it was (curl's message names neither). A
 * connect timeout that ends later than the attempt's own is cut by it as well. */
static void
name_timeout(exchange_t *x, dp_upstream_call_t *call)
{
    if (dp_breaker_now_ms() < x->attempt_deadline_ms)
        return; /* an earlier one: connect (curl says so), first-byte or idle (upstream.c says so) */
    if (x->attempt_to_deadline)
        snprintf(call->error, sizeof(call->error), "the request's total timeout (%ld ms) ran out", x->total_ms);
    else
        snprintf(call->error, sizeof(call->error), "no complete answer within %ld ms (attempt timeout)",
                 x->target->provider->policy.attempt_timeout_ms);
}

static uint64_t
chooser_rand(void *ctx)
{
    return dp_worker_rand(ctx);
}

static void
log_attempt(exchange_t *x, const dp_target_t *t, const char *outcome)
{
    tg_buf_appendf(&x->attempt_log, "%s%s/%s=%s", x->attempt_log.len ? ", " : "", t->provider->name, t->upstream_model,
                   outcome);
}

/* From plan[from] on, the first target with a usable key: sets target, target_index and *key. Targets
 * passed over because every key's breaker is open are listed as "=open" in x-tollgate-attempts. 0, or
 * -1 when the plan is exhausted. */
static int
next_target(exchange_t *x, size_t from, const dp_provider_key_t **key)
{
    int64_t now = dp_breaker_now_ms();
    for (size_t i = from; i < x->plan.n; i++) {
        int all_open;
        const dp_target_t *t = x->plan.targets[i];
        if (!dp_vkey_allows_provider(x->key, t->provider->id))
            continue; /* the key is restricted to other provider accounts */
        const dp_provider_key_t *k = dp_pick_key(t, 0, &x->chooser, now, &all_open);
        if (k != NULL) {
            x->target = t;
            x->target_index = i;
            *key = k;
            return 0;
        }
        if (all_open) {
            x->skipped++;
            log_attempt(x, t, "open");
        }
    }
    return -1;
}

static void
on_timer_closed(uv_handle_t *h)
{
    free(h); /* struct retry_timer starts with its handle */
}

static void
on_retry_timer(uv_timer_t *t)
{
    exchange_t *x = ((struct retry_timer *)t)->x;
    if (x != NULL && !x->final_sent)
        start_attempt(x);
}

/* Whether the client closed its HTTP/1 connection. h2o 2.2 does not read from a connection while a
 * request is being handled, so it would only find out when it writes the answer; the upstream call
 * would run to its end for nobody. A peek says it at once: end of stream (FIN) or a reset. Data waiting
 * (a pipelined request; a TLS close_notify) hides a close behind it: such a client is found when the
 * answer is written, as before. HTTP/2 connections are read all the time: h2o sees a reset itself. */
static int
client_left(h2o_req_t *req)
{
    if (req->version >= 0x200 || req->conn->callbacks->get_socket == NULL)
        return 0;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    int fd = sock != NULL ? h2o_socket_get_fd(sock) : -1;
    if (fd < 0)
        return 0;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* The client left before any answer: stop the upstream call (or the backoff wait) now. The 499 written
 * to the closed connection fails, h2o closes it and disposes of the request (usage: 499). */
static void
on_watch_timer(uv_timer_t *t)
{
    exchange_t *x = ((struct retry_timer *)t)->x;
    if (x == NULL)
        return;
    if (x->final_sent || x->streaming) {
        uv_timer_stop(t); /* from here on, writes find a client that left */
        return;
    }
    if (!client_left(x->req))
        return;
    uv_timer_stop(t);
    tg_info("dp.client.gone", "request_id=%s attempts=%d", x->request_id, x->attempts);
    dp_upstream_call_cancel(&x->call); /* the attempt stays open: the record counts it as cancelled */
    if (x->timer != NULL)
        uv_timer_stop(&x->timer->handle);
    x->final_sent = 1;
    x->req->res.status = 499;
    x->req->res.reason = "Client Closed Request";
    h2o_send_inline(x->req, "", 0);
}

static void
watch_client(exchange_t *x)
{
    if (x->watch != NULL || x->req->version >= 0x200)
        return;
    if ((x->watch = malloc(sizeof(*x->watch))) == NULL)
        return; /* no watch: the client is found when the answer is written */
    uv_timer_init(&x->w->loop, &x->watch->handle);
    x->watch->x = x;
    uv_timer_start(&x->watch->handle, on_watch_timer, CLIENT_CHECK_MS, CLIENT_CHECK_MS);
}

static void
close_timer(struct retry_timer *t)
{
    if (t == NULL)
        return;
    t->x = NULL;
    uv_timer_stop(&t->handle);
    uv_close((uv_handle_t *)&t->handle, on_timer_closed);
}

static void
schedule_attempt(exchange_t *x, uint64_t delay_ms)
{
    if (x->timer == NULL) {
        if ((x->timer = malloc(sizeof(*x->timer))) == NULL) {
            send_upstream_failure(x, 500, "out_of_memory", "Out of memory retrying '%s'%s", ".");
            return;
        }
        uv_timer_init(&x->w->loop, &x->timer->handle);
        x->timer->x = x;
    }
    /* always through the loop, never from inside the upstream's completion */
    uv_timer_start(&x->timer->handle, on_retry_timer, delay_ms, 0);
}

/* Exponential backoff with jitter, stretched to the provider's Retry-After (capped). */
static uint64_t
backoff_ms(exchange_t *x)
{
    uint64_t ms = BACKOFF_BASE_MS << (x->target_attempts > 6 ? 6 : x->target_attempts - 1);
    if (ms > BACKOFF_MAX_MS)
        ms = BACKOFF_MAX_MS;
    ms = ms / 2 + dp_worker_rand(x->w) % (ms / 2 + 1);
    char *end;
    long ra = strtol(x->call.retry_after, &end, 10);
    if (x->call.retry_after[0] != '\0' && *end == '\0' && ra > 0) {
        uint64_t want = (uint64_t)ra * 1000;
        if (want > RETRY_AFTER_MAX_MS)
            want = RETRY_AFTER_MAX_MS;
        if (want > ms)
            ms = want;
    }
    return ms;
}

static void
keep_first_failure(exchange_t *x, CURLcode rc)
{
    if (x->first_failure != NULL)
        return;
    failure_t *f = h2o_mem_alloc_pool(&x->req->pool, sizeof(*f));
    memset(f, 0, sizeof(*f));
    x->first_failure = f;
    f->set = 1;
    f->target = x->target;
    f->translated = x->translated;
    f->status = x->call.status;
    f->rc = rc;
    memcpy(f->error, x->call.error, sizeof(f->error));
    memcpy(f->content_type, x->call.content_type, sizeof(f->content_type));
    memcpy(f->retry_after, x->call.retry_after, sizeof(f->retry_after));
    f->body = x->response;
    x->response = (tg_buf_t){.max = MAX_RESPONSE_BYTES};
}

/* Every attempt failed: the client gets the first target's failure (or this one, if it is the first). */
static void
final_failure(exchange_t *x, CURLcode rc)
{
    failure_t *f = x->first_failure;
    if (f != NULL && f->set) { /* the first target's failure, or this one, kept when its target was spent */
        x->target = f->target;
        x->translated = f->translated;
        x->provider = f->target->provider->ops;
        x->call.status = f->status;
        rc = f->rc;
        memcpy(x->call.error, f->error, sizeof(f->error));
        memcpy(x->call.content_type, f->content_type, sizeof(f->content_type));
        memcpy(x->call.retry_after, f->retry_after, sizeof(f->retry_after));
        tg_buf_t t = x->response;
        x->response = f->body;
        f->body = t;
    }
    if (rc != CURLE_OK) {
        const char *why = x->call.error[0] ? x->call.error : curl_easy_strerror(rc);
        send_upstream_failure(x, 502, "upstream_unreachable",
                              "The upstream provider '%s' could not be reached or failed: %s", why);
    } else if (x->translated) {
        finish_translated(x);
    } else {
        finish_passthrough(x);
    }
}

/* The request's deadline leaves no time for another attempt: the client gets the first failure. */
static void
give_up_late(exchange_t *x, CURLcode rc)
{
    tg_info("dp.request.deadline", "request_id=%s total_timeout_ms=%ld attempts=%d", x->request_id, x->total_ms,
            x->attempts);
    keep_first_failure(x, rc);
    final_failure(x, rc);
}

/* An attempt failed before anything reached the client: retry, rotate the key, fall back, or give up. */
static void
after_failure(exchange_t *x, CURLcode rc)
{
    long status = rc == CURLE_OK ? x->call.status : 0;
    const dp_provider_t *p = x->target->provider;
    if (rc != CURLE_OK)
        tg_warn("dp.upstream.failed", "request_id=%s provider=%s attempt=%d error=\"%s\"", x->request_id, p->name,
                x->attempts, x->call.error[0] ? x->call.error : curl_easy_strerror(rc));
    char st[24];
    snprintf(st, sizeof(st), "%ld", status);
    log_attempt(x, x->target, st);

    int auth = status == 401 || status == 403;
    int rate = status == 429;
    int retryable = rc != CURLE_OK || status == 408 || rate || status >= 500;
    breaker_outcome(x, !auth && !retryable); /* the client's mistakes say nothing against the provider */
    if (!auth && !retryable) {
        final_failure(x, rc); /* the client's mistake (400, 404, 413, 422, ...): no retry can fix it */
        return;
    }
    if (out_of_time(x, 0)) {
        give_up_late(x, rc);
        return;
    }
    size_t ki = (size_t)(x->pkey - p->keys);
    if ((auth || rate) && ki < 64)
        x->bad_keys |= UINT64_C(1) << ki;

    int64_t delay = -1;
    const dp_provider_key_t *next_key = NULL;
    if (x->attempts < MAX_ATTEMPTS && !atomic_load_explicit(&dp_draining, memory_order_relaxed)) {
        int all_open;
        next_key = dp_pick_key(x->target, x->bad_keys, &x->chooser, dp_breaker_now_ms(), &all_open);
        if (auth && next_key != NULL)
            delay = 0; /* another key, at once */
        else if (!auth && x->target_attempts <= p->policy.max_retries) {
            if (next_key == NULL && !all_open) { /* a 429 on the only key: wait for it */
                x->bad_keys = 0;
                next_key = x->pkey;
            }
            if (next_key != NULL)
                delay = (int64_t)backoff_ms(x);
        }
    }
    if (delay > 0 && out_of_time(x, (uint64_t)delay)) {
        give_up_late(x, rc); /* the wait would end past the deadline: the retry could not even start */
        return;
    }
    if (delay < 0) {
        keep_first_failure(x, rc);
        if (x->attempts >= MAX_ATTEMPTS || next_target(x, x->target_index + 1, &next_key) != 0) {
            final_failure(x, rc);
            return;
        }
        x->target_attempts = 0;
        x->bad_keys = 0;
        x->fallbacks++;
        delay = 0;
        tg_info("dp.route.fallback", "request_id=%s to=%s/%s", x->request_id, x->target->provider->name,
                x->target->upstream_model);
    }
    x->pkey = next_key;
    x->response.len = 0;
    schedule_attempt(x, (uint64_t)delay);
}

static void
on_done(dp_upstream_call_t *call, CURLcode rc)
{
    exchange_t *x = call->data;
    x->upstream_done = 1;
    if (rc == CURLE_OPERATION_TIMEDOUT)
        name_timeout(x, call);
    if (x->phase == PHASE_CALL)
        dp_obs_attempt_end(x->obs, call->status, rc);
    if (x->final_sent)
        return;
    if (x->phase == PHASE_TOKEN) {
        x->upstream_done = 0;
        finish_token_fetch(x, rc);
        return;
    }
    if (x->streaming) {
        int cut =
            rc != CURLE_OK || (x->sse_ready && tg_sse_pending(&x->sse) > 0) ||
            (x->translated && x->provider->framing == TX_FRAMING_EVENTSTREAM && tx_eventstream_pending(&x->evs) > 0);
        if (x->translated && x->provider->framing == TX_FRAMING_NDJSON && x->line.len > 0 && rc == CURLE_OK) {
            feed_ndjson(x, "\n", 1); /* a last line without its newline */
        }
        if (x->translated && !x->stream_ended && !x->stream_failed)
            cut = 1; /* the provider never said it was done */
        if (cut && !x->stream_failed) {
            /* the client must see a failure, never a short answer that looks complete */
            char msg[512];
            snprintf(msg, sizeof(msg), "The upstream provider failed mid-stream: %s",
                     rc != CURLE_OK ? (call->error[0] ? call->error : curl_easy_strerror(rc))
                                    : "the stream ended before the provider finished it");
            if (x->translated) {
                tx_error_t e;
                tx_fail(&e, TX_ERR_UPSTREAM, "upstream_stream_failed", NULL, "%s", msg);
                e.status = 502;
                tx_event_t ev = {.kind = TX_EV_ERROR, .error = &e};
                on_tx_event(x, &ev);
            } else {
                tg_buf_appends(&x->pending, "data: {\"error\":{\"message\":");
                tg_buf_append_json_string(&x->pending, msg, strlen(msg));
                tg_buf_appends(&x->pending,
                               ",\"type\":\"upstream_error\",\"param\":null,\"code\":\"upstream_stream_failed\"}}\n\n");
                tg_warn("dp.upstream.stream_failed", "request_id=%s provider=%s error=\"%s\"", x->request_id,
                        x->target->provider->name, msg);
            }
            x->stream_failed = 1;
        }
        breaker_outcome(x, !x->stream_failed);
        record_usage(x, x->stream_failed ? 502 : 200);
        flush_pending(x);
        return;
    }
    if (rc != CURLE_OK || call->status < 200 || call->status >= 300) {
        after_failure(x, rc);
        return;
    }
    breaker_outcome(x, 1);
    if (x->translated)
        finish_translated(x);
    else
        finish_passthrough(x);
}

static const dp_upstream_callbacks_t upstream_callbacks = {.on_body = on_body, .on_done = on_done};

static void
free_headers(struct curl_slist *list)
{
    for (struct curl_slist *n = list; n != NULL; n = n->next)
        explicit_bzero(n->data, strlen(n->data));
    curl_slist_free_all(list);
}

static void
on_dispose(void *p)
{
    exchange_t *x = p;
    dp_upstream_call_cancel(&x->call);
    record_usage(x, 499);
    if (x->sse_ready)
        tg_sse_dispose(&x->sse);
    tx_eventstream_dispose(&x->evs);
    tg_buf_free(&x->line);
    tg_buf_free(&x->response);
    tg_buf_free(&x->pending);
    tg_buf_free(&x->sending);
    free_headers(x->headers);
    if (x->first_failure != NULL)
        tg_buf_free(&x->first_failure->body);
    tg_buf_free(&x->attempt_log);
    close_timer(x->timer);
    close_timer(x->watch);
    if (x->client_state != NULL && x->dialect != NULL && x->dialect->stream_dispose != NULL)
        x->dialect->stream_dispose(x->client_state); /* a client gone mid-stream: what the encoder holds */
    tg_arena_free(&x->arena);
    atomic_fetch_sub_explicit(&x->w->inflight, 1, memory_order_relaxed);
    dp_snapshot_unref(x->snapshot);
}

/* ---------------------------------------------------------------- request */

static int
start_call(exchange_t *x)
{
    const struct curl_slist *headers =
        x->headers != NULL ? x->headers : x->pkey->headers[x->stream ? DP_HEADERS_STREAM : DP_HEADERS_JSON];
    headers = dp_obs_attempt_begin(x->obs, x->target, headers); /* + x-request-id, traceparent */
    return dp_upstream_call_start(x->w->upstream, &x->call, x->hreq.url, headers, x->hreq.body, x->hreq.body_len);
}

/* The per-request header list of a translated call: the key's prebuilt lines, the adapter's, and the
 * dynamic auth (SigV4 signature; a cached OAuth token, or -1 with *need_token when one must be fetched). */
static int
build_headers(exchange_t *x, int *need_token)
{
    *need_token = 0;
    struct curl_slist *list = NULL, *n;
    for (const struct curl_slist *l = x->pkey->headers[x->stream ? DP_HEADERS_STREAM : DP_HEADERS_JSON]; l != NULL;
         l = l->next)
        if ((n = curl_slist_append(list, l->data)) == NULL)
            goto fail;
        else
            list = n;
    for (size_t i = 0; i < x->hreq.n_headers; i++)
        if ((n = curl_slist_append(list, x->hreq.headers[i])) == NULL)
            goto fail;
        else
            list = n;
    if (x->pkey->auth == DP_AUTH_SIGV4) {
        tx_aws_credentials_t creds;
        const char *lines[6];
        const char *region = tx_json_str(x->target->provider->settings, "region");
        if (tx_aws_credentials_parse(x->pkey->secret, &x->arena, &creds, xerr(x)) != 0)
            goto fail;
        int k = tx_sigv4_sign(&creds, region ? region : "us-east-1", "bedrock", "POST", x->hreq.url, "application/json",
                              x->hreq.body, x->hreq.body_len, tg_now_unix_ms() / 1000, &x->arena, lines, 6);
        if (k < 0) {
            tx_fail(xerr(x), TX_ERR_SERVER, "signing_failed", NULL, "The request could not be signed.");
            goto fail;
        }
        for (int i = 0; i < k; i++)
            if ((n = curl_slist_append(list, lines[i])) == NULL)
                goto fail;
            else
                list = n;
    } else if (x->pkey->auth == DP_AUTH_GCP_TOKEN) {
        char token[DP_TOKEN_MAX];
        if (dp_token_cache_get(x->pkey->id, tg_now_unix_ms() / 1000, TOKEN_MARGIN_S, token, sizeof(token)) == 0) {
            char *line = tg_arena_sprintf(&x->arena, "Authorization: Bearer %s", token);
            explicit_bzero(token, sizeof(token));
            if (line == NULL || (n = curl_slist_append(list, line)) == NULL)
                goto fail;
            list = n;
        } else {
            *need_token = 1;
        }
    }
    x->headers = list;
    return 0;
fail:
    free_headers(list);
    if (xerr(x)->message[0] == '\0')
        tx_fail(xerr(x), TX_ERR_SERVER, "out_of_memory", NULL, "The gateway ran out of memory.");
    return -1;
}

static struct curl_slist *form_headers; /* two constant lines, built once, freed at exit by the OS */
static pthread_once_t form_headers_once = PTHREAD_ONCE_INIT;

static void
build_form_headers(void)
{
    struct curl_slist *l = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
    form_headers = l != NULL ? curl_slist_append(l, "Expect:") : NULL;
}

/* The token request for a service account; the real call follows in finish_token_fetch. */
static int
start_token_fetch(exchange_t *x)
{
    const char *url, *body;
    if (tx_vertex_token_request(x->pkey->secret, tg_now_unix_ms() / 1000, &x->arena, &url, &body, xerr(x)) != 0)
        return -1;
    pthread_once(&form_headers_once, build_form_headers);
    if (form_headers == NULL)
        return -1;
    x->phase = PHASE_TOKEN;
    return dp_upstream_call_start(x->w->upstream, &x->call, url, form_headers, body, strlen(body));
}

static int
passthrough_url(exchange_t *x, const char **ret)
{
    if (x->ep->op == TX_OP_CHAT) {
        *ret = x->target->chat_url;
        return 0;
    }
    char *url = h2o_mem_alloc_pool(&x->req->pool, 4096);
    if (tx_openai_url(&x->target->tx, x->ep->openai_path, url, 4096) < 0)
        return -1;
    *ret = url;
    return 0;
}

/* Adds one model's targets to the plan when it exists and the key may use it: 0, or -1 when not. */
static int
plan_model(exchange_t *x, const char *name, size_t len)
{
    const dp_target_t *targets;
    size_t n;
    if (!dp_vkey_allows(x->key, name, len) || dp_resolve_model(x->snapshot, name, len, &x->arena, &targets, &n) != 0)
        return -1;
    dp_plan_add(&x->plan, targets, n, &x->chooser, dp_breaker_now_ms());
    return 0;
}

/* The per-request fallbacks: `fallbacks` (an array of model names) in the body, else the header
 * x-tollgate-fallbacks (comma-separated). Names that do not exist or the key may not use are skipped,
 * exactly as if they had not been listed (no error reveals which models exist). */
static void
plan_fallbacks(exchange_t *x)
{
    int n = 0;
    tg_json_span_t fb = x->parsed.fallbacks;
    if (fb.type == TG_JSON_ARRAY) {
        tg_json_iter_t it;
        tg_json_span_t v;
        tg_json_iter_init(&it, fb);
        while (n < DP_FALLBACKS_MAX && tg_json_array_next(&it, &v) == 1) {
            if (v.type != TG_JSON_STRING || v.len <= 2)
                continue;
            char *name = tg_arena_alloc(&x->arena, v.len);
            size_t len;
            if (name != NULL && tg_json_string_decode(v, name, v.len, &len) == 0) {
                plan_model(x, name, len);
                n++;
            }
        }
        return;
    }
    ssize_t i = h2o_find_header_by_str(&x->req->headers, H2O_STRLIT("x-tollgate-fallbacks"), -1);
    if (i < 0)
        return;
    h2o_iovec_t h = x->req->headers.entries[i].value;
    const char *p = h.base, *end = h.base + h.len;
    while (p < end && n < DP_FALLBACKS_MAX) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma != NULL ? comma : end;
        const char *a = p, *b = e;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b > a) {
            plan_model(x, a, (size_t)(b - a));
            n++;
        }
        p = e + 1;
    }
}

/* The plan, the choice mode and the first target and key; -1 when an error was sent. */
static int
plan_targets(exchange_t *x, const char *name, size_t len)
{
    x->chooser = (dp_chooser_t){.rand = chooser_rand, .ctx = x->w};
    ssize_t i = h2o_find_header_by_str(&x->req->headers, H2O_STRLIT("x-tollgate-session-id"), -1);
    if (i >= 0 && x->req->headers.entries[i].value.len > 0) {
        x->chooser.sticky = 1;
        x->chooser.session =
            dp_session_hash(x->req->headers.entries[i].value.base, x->req->headers.entries[i].value.len);
    }
    tx_dialect_t d = x->ep->dialect;
    int shown = (int)(len > 200 ? 200 : len);
    const dp_target_t *targets;
    size_t n;
    if (dp_resolve_model(x->snapshot, name, len, &x->arena, &targets, &n) != 0) {
        x->final_sent = 1;
        dp_send_error(x->req, d, 404, "model_not_found", "model",
                      "The model '%.*s' does not exist or you do not have access to it.", shown, name);
        return -1;
    }
    if (!dp_vkey_allows(x->key, name, len)) {
        x->final_sent = 1;
        dp_send_error(x->req, d, 403, "model_not_allowed", "model",
                      "This API key is not allowed to use the model '%.*s'.", shown, name);
        return -1;
    }
    size_t allowed = 0;
    for (size_t i = 0; i < n; i++)
        allowed += dp_vkey_allows_provider(x->key, targets[i].provider->id);
    if (n > 0 && allowed == 0) {
        x->final_sent = 1;
        dp_send_error(x->req, d, 403, "provider_not_allowed", "model",
                      "This API key is not allowed to use the providers that serve '%.*s'.", shown, name);
        return -1;
    }
    dp_plan_add(&x->plan, targets, n, &x->chooser, dp_breaker_now_ms());
    plan_fallbacks(x);
    if (x->plan.n == 0) {
        x->final_sent = 1;
        dp_send_error(x->req, d, 503, "no_upstream", "model", "The model '%.*s' has no upstream configured.", shown,
                      name);
        return -1;
    }
    if (next_target(x, 0, &x->pkey) != 0) {
        /* fail fast: every target's breakers are open (or no key is usable); calling would only add load
         * to providers known to be failing */
        x->final_sent = 1;
        add_attempts_header(x);
        if (x->skipped > 0)
            h2o_add_header(&x->req->pool, &x->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
        dp_send_error(x->req, d, 503, x->skipped > 0 ? "upstream_unavailable" : "no_upstream_key", "model",
                      x->skipped > 0 ? "Every upstream of '%.*s' is failing right now (circuit breakers open); "
                                       "try again shortly."
                                     : "No upstream of '%.*s' has a usable key.",
                      shown, name);
        return -1;
    }
    return 0;
}

/* Admission refused the request (docs/admission.md): nothing was called, nothing is billed. */
static void
send_refusal(exchange_t *x)
{
    const dp_admission_t *a = &x->adm;
    tx_dialect_t d = x->ep->dialect;
    h2o_req_t *req = x->req;
    x->final_sent = 1;
    x->recorded = 1;
    dp_admission_settle(&x->adm, 0, 0);
    if (a->retry_after_s > 0) {
        char *v = h2o_mem_alloc_pool(&req->pool, 24);
        int n = snprintf(v, 24, "%lld", (long long)a->retry_after_s);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, v, (size_t)n);
    }
    const dp_limit_t *l = a->refused_by;
    if (a->status == 402) {
        dp_send_error(req, d, 402, "budget_exceeded", NULL,
                      "The budget for this request is spent (budget %s); it resets at the start of its next period.",
                      l != NULL ? l->id : "?");
    } else if (a->status == 429 && l != NULL) {
        const char *unit = l->kind == DP_LEASE_TOKENS ? "tokens" : "requests";
        char name[48], val[32];
        if (l->kind != DP_LEASE_CONCURRENT) {
            snprintf(name, sizeof(name), "x-ratelimit-limit-%s", unit);
            int n = snprintf(val, sizeof(val), "%lld", (long long)l->hard);
            h2o_add_header_by_str(&req->pool, &req->res.headers, h2o_strdup(&req->pool, name, SIZE_MAX).base,
                                  strlen(name), 0, NULL, h2o_strdup(&req->pool, val, n).base, (size_t)n);
            snprintf(name, sizeof(name), "x-ratelimit-remaining-%s", unit);
            h2o_add_header_by_str(&req->pool, &req->res.headers, h2o_strdup(&req->pool, name, SIZE_MAX).base,
                                  strlen(name), 0, NULL, H2O_STRLIT("0"));
            snprintf(name, sizeof(name), "x-ratelimit-reset-%s", unit);
            n = snprintf(val, sizeof(val), "%llds", (long long)a->retry_after_s);
            h2o_add_header_by_str(&req->pool, &req->res.headers, h2o_strdup(&req->pool, name, SIZE_MAX).base,
                                  strlen(name), 0, NULL, h2o_strdup(&req->pool, val, n).base, (size_t)n);
        }
        dp_send_error(req, d, 429, "rate_limit_exceeded", NULL, "Rate limit reached for %s (limit %s: %lld per %us).",
                      l->kind == DP_LEASE_CONCURRENT ? "concurrent requests" : unit, l->id, (long long)l->hard,
                      l->kind == DP_LEASE_CONCURRENT ? 0u : l->window_s);
    } else {
        dp_send_error(req, d, 503, "allowance_unavailable", NULL,
                      "The gateway could not obtain budget or rate-limit allowance in time; retry shortly.");
    }
}

static void
on_admitted(dp_admission_t *a, int admitted)
{
    exchange_t *x = a->data;
    if (admitted && a->admitted_ms != 0)
        x->started_unix_ms = a->admitted_ms;
    if (admitted)
        start_attempt(x);
    else
        send_refusal(x);
}

int
dp_exchange_handle(h2o_req_t *req, dp_worker_t *w, const char *request_id, const dp_endpoint_t *ep,
                   h2o_iovec_t url_model, int url_stream)
{
    tx_dialect_t d = ep->dialect;
    dp_snapshot_t *s;
    const dp_vkey_t *key = dp_admit(req, w, d, &s);
    if (key == NULL)
        return 0;

    /* one pass over the top level validates the whole body and finds the fields routing needs */
    h2o_iovec_t body = req->entity;
    if (body.len > dp_config.max_body_bytes) {
        dp_send_error(req, d, 413, "request_too_large", NULL,
                      "The request body is %zu bytes; this gateway accepts at most %zu.", body.len,
                      dp_config.max_body_bytes);
        return 0;
    }
    dp_openai_chat_t parsed;
    if (dp_openai_chat_parse(body.base, body.len, &parsed) != 0) {
        dp_send_error(req, d, 400, "invalid_json", NULL,
                      "We could not parse the JSON body of your request: it must be a JSON object.");
        return 0;
    }
    const char *name;
    size_t name_len;
    int stream;
    if (url_model.base != NULL) {
        name = url_model.base;
        name_len = url_model.len;
        stream = url_stream;
    } else {
        tg_json_span_t model = parsed.model;
        if (model.type != TG_JSON_STRING || model.len <= 2) {
            dp_send_error(req, d, 400, "missing_required_parameter", "model", "You must provide a model parameter.");
            return 0;
        }
        name = model.p + 1;
        name_len = model.len - 2;
        if (memchr(name, '\\', name_len) != NULL) {
            char *decoded = h2o_mem_alloc_pool(&req->pool, model.len);
            if (tg_json_string_decode(model, decoded, model.len, &name_len) != 0) {
                dp_send_error(req, d, 400, "invalid_value", "model", "The model name is invalid.");
                return 0;
            }
            name = decoded;
        }
        stream = ep->op == TX_OP_CHAT || ep->op == TX_OP_COMPLETION ? parsed.stream : 0;
    }

    exchange_t *x = h2o_mem_alloc_shared(&req->pool, sizeof(*x), on_dispose);
    memset(x, 0, sizeof(*x));
    x->gen.proceed = on_proceed;
    x->gen.stop = on_stop;
    x->req = req;
    x->w = w;
    x->ep = ep;
    x->snapshot = s;
    dp_snapshot_ref(s);
    x->key = key;
    x->request_id = request_id;
    x->obs = dp_obs_of(request_id);
    dp_obs_exchange(x->obs, s, ep->usage_name, key, name, name_len, stream);
    x->model = name;
    x->model_len = name_len;
    x->stream = stream;
    x->body = body;
    x->parsed = parsed;
    x->dialect = tx_dialect_get(d);
    x->started_ns = tg_mono_ns();
    x->started_unix_ms = tg_clock_now_ms(); /* the governance clock: usage settles in the period it started in */
    x->call.cb = &upstream_callbacks;
    x->call.data = x;
    x->arena.max = ARENA_MAX;
    x->response.max = MAX_RESPONSE_BYTES;
    atomic_fetch_add_explicit(&w->inflight, 1, memory_order_relaxed);
    if (plan_targets(x, name, name_len) != 0)
        return 0;
    if (url_model.base != NULL) {
        x->treq.model = tg_arena_strndup(&x->arena, name, name_len);
        x->url_model = 1;
    }
    /* admission: the worst case reserved against every budget and rate limit before any call. A key
     * under no limit reserves nothing, and sizing W costs a second scan of the body: skip it. */
    dp_worst_case_t wc = {0};
    if (key->n_limits > 0) {
        dp_route_t priced = {0}; /* W at the dearest target the plan may reach, fallbacks included */
        const dp_route_t *route = dp_snapshot_find_route(s, name, name_len);
        priced.default_max_tokens = route != NULL ? route->default_max_tokens : 0;
        for (size_t i = 0; i < x->plan.n; i++) {
            const dp_price_t *p = x->plan.targets[i]->price;
            if (p != NULL && p->input > priced.max_price.input)
                priced.max_price.input = p->input;
            if (p != NULL && p->output > priced.max_price.output)
                priced.max_price.output = p->output;
        }
        dp_admission_worst_case(&priced, body.base, body.len, ep->op == TX_OP_EMBED || ep->op == TX_OP_COUNT_TOKENS,
                                &wc);
    }
    x->adm.on_ready = on_admitted;
    x->adm.data = x;
    int adm = dp_admission_begin(&x->adm, w->admission, s, key, name, name_len, &wc);
    if (adm < 0)
        send_refusal(x);
    else if (adm == 0)
        on_admitted(&x->adm, 1);
    return 0;
}

/* ---------------------------------------------------------------- attempts */

/* A client error that ends the exchange before any call. */
static void
send_client_error(exchange_t *x, const tx_error_t *e)
{
    x->final_sent = 1;
    record_usage(x, (uint32_t)tx_error_status(e));
    add_attempts_header(x);
    dp_send_tx_error(x->req, x->ep->dialect, e, x->request_id);
}

/* The upstream request for the current target and key: 0 ready, 1 ready once an OAuth token is fetched,
 * -1 when an answer was already sent. */
static int
prepare_attempt(exchange_t *x)
{
    const dp_target_t *t = x->target;
    h2o_req_t *req = x->req;
    tx_dialect_t d = x->ep->dialect;
    free_headers(x->headers);
    x->headers = NULL;
    x->response.len = 0;

    if (d == TX_DIALECT_OPENAI && t->provider->passthrough && x->ep->openai_path != NULL) {
        x->translated = 0;
        if (x->ep->op == TX_OP_CHAT && x->parsed.messages.type != TG_JSON_ARRAY) {
            tx_error_t e;
            tx_fail(&e, TX_ERR_INVALID_REQUEST, "missing_required_parameter", "messages",
                    "Missing required parameter: 'messages' (an array).");
            send_client_error(x, &e);
            return -1;
        }
        /* rewrite: model to the upstream name; for streams, ask for the usage chunk */
        dp_body_plan_t plan;
        dp_openai_chat_plan(&x->parsed, t->upstream_model_json, t->upstream_model_json_len, &plan);
        x->hreq.body = x->body.base;
        x->hreq.body_len = x->body.len;
        if (plan.n > 0) {
            char *b = h2o_mem_alloc_pool(&req->pool, x->body.len + plan.delta + 1);
            dp_body_plan_apply(&plan, x->body.base, x->body.len, b);
            x->hreq.body = b;
            x->hreq.body_len = x->body.len + plan.delta;
        }
        x->client_wants_usage = plan.client_wants_usage;
        if (passthrough_url(x, &x->hreq.url) != 0) {
            send_upstream_failure(x, 500, "bad_upstream_url", "The URL of '%s' is too long%s", ".");
            return -1;
        }
        return 0;
    }

    /* translated: client dialect -> neutral (once) -> this provider */
    x->translated = 1;
    x->provider = t->provider->ops;
    if (x->dialect == NULL || x->dialect->decode_request == NULL || x->provider->encode_request == NULL ||
        (x->stream && (x->provider->stream_frame == NULL || x->dialect->stream_event == NULL))) {
        tx_error_t e;
        tx_fail(&e, TX_ERR_SERVER, "not_supported", NULL,
                "This gateway cannot translate this API to the provider kind '%s' of '%.*s'.", t->provider->kind,
                (int)(x->model_len > 200 ? 200 : x->model_len), x->model);
        e.status = 501;
        send_client_error(x, &e);
        return -1;
    }
    if (!x->decoded) {
        const char *url_model = x->treq.model;
        if (x->dialect->decode_request(x->ep->op, x->body.base, x->body.len, &x->arena, &x->treq, xerr(x)) != 0) {
            send_client_error(x, xerr(x));
            return -1;
        }
        x->decoded = 1;
        if (json_is_object(x->treq.extra))
            json_object_del(x->treq.extra, "fallbacks"); /* the gateway's, never the provider's */
        x->treq.op = x->ep->op;
        x->treq.dialect = d;
        if (x->url_model) {
            x->treq.model = url_model;
            x->treq.stream = x->stream;
        }
        x->treq.request_id = x->request_id;
        x->treq.now_unix = x->started_unix_ms / 1000;
        x->stream = x->treq.stream != 0;
        x->client_wants_usage = x->treq.include_usage;
    }
    memset(&x->hreq, 0, sizeof(x->hreq));
    if (x->provider->encode_request(&x->treq, &t->tx, &x->arena, &x->hreq, xerr(x)) != 0) {
        send_client_error(x, xerr(x));
        return -1;
    }
    if (x->stream) {
        /* fresh, zeroed state for this attempt's stream */
        x->up_state = tg_arena_alloc(&x->arena, x->provider->stream_state_size ? x->provider->stream_state_size : 1);
        x->client_state = tg_arena_alloc(&x->arena, x->dialect->stream_state_size ? x->dialect->stream_state_size : 1);
        if (x->up_state == NULL || x->client_state == NULL) {
            send_upstream_failure(x, 500, "out_of_memory", "Out of memory calling '%s'%s", ".");
            return -1;
        }
    }
    int need_token;
    if (build_headers(x, &need_token) != 0) {
        send_client_error(x, xerr(x));
        return -1;
    }
    return need_token;
}

static void
start_attempt(exchange_t *x)
{
    x->attempts++;
    x->target_attempts++;
    if (x->target_attempts > 1)
        x->retries++;
    x->phase = PHASE_CALL;
    x->upstream_done = 0;
    x->breaker = dp_target_breaker(x->target, x->pkey);
    watch_client(x);
    int rv = prepare_attempt(x);
    if (rv < 0)
        return;
    arm_attempt_timeouts(x); /* x->stream is known once the request was decoded (prepare_attempt) */
    if ((rv == 1 ? start_token_fetch(x) : start_call(x)) != 0) {
        /* nothing went out: count it as a connection failure of this target */
        snprintf(x->call.error, sizeof(x->call.error), "the request could not be started");
        after_failure(x, CURLE_FAILED_INIT);
    }
}
