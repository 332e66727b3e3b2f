/*
 * The per-request observability record (observe.h) and the dataplane's metrics: the families, what a
 * finished request adds to them, the scrape-time collectors (snapshot, usage queue, circuit breakers)
 * and GET /metrics.
 *
 * Label sets are bounded twice: the values come from the snapshot (tenant ids, provider names, public
 * model names that exist) or from small fixed sets (endpoint, status code), and every family has a cap
 * (TOLLGATE_METRICS_MAX_SERIES, default 1000) beyond which label sets fold into "other".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "config/sync.h"
#include "observe/internal.h"
#include "routing/breaker.h"
#include "tollgate/buf.h"
#include "tollgate/crypto.h"
#include "tollgate/env.h"
#include "tollgate/http_status.h"
#include "tollgate/log.h"

#define OBS_MAGIC 0x6f627372u /* "obsr" */

static struct {
    tg_metrics_t *reg;
    const char *ops_token;
    dp_breaker_foreach_fn breakers;
    tg_metric_family_t *requests, *duration, *upstream, *ttft, *overhead, *tokens, *cost, *retries, *fallbacks,
        *upstream_responses, *in_flight, *spans_exported, *spans_dropped, *log_failures;
    tg_metric_series_t *in_flight_s, *log_failures_s, *spans_exported_s;
} g;

tg_metrics_t *
dp_obs_registry(void)
{
    return g.reg;
}

void
dp_obs_set_breaker_source(dp_breaker_foreach_fn foreach)
{
    g.breakers = foreach;
}

/* ---------------------------------------------------------------- small formatting */

/* The request path builds its header lines and labels with these rather than snprintf: the printf
 * machinery (format parsing, locale, stdio) costs more than the whole of what it writes here. */

/* Copies the NUL-terminated s to out[at..cap - 1], cut short if it does not fit; returns the new
 * length. out stays NUL-terminated while cap > 0. */
static size_t
put_str(char *out, size_t at, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (at >= cap)
        return at;
    if (n > cap - 1 - at)
        n = cap - 1 - at;
    memcpy(out + at, s, n);
    out[at + n] = '\0';
    return at + n;
}

/* A status or code in decimal, NUL-terminated in out (an int fits with room to spare). */
static const char *
small_uint(unsigned v, char out[TG_U64_DIGITS + 1])
{
    out[tg_fmt_u64(out, v)] = '\0';
    return out;
}

/* ---------------------------------------------------------------- collectors */

static void
collect_state(tg_metrics_emitter_t *e, void *ctx)
{
    uint64_t version = dp_snapshot_current_version();
    tg_metrics_emit(e, TG_METRIC_GAUGE, "tollgate_snapshot_version",
                    "Version of the config snapshot in use (0: none yet).", 0, NULL, NULL, (double)version);
    dp_snapshot_t *s = dp_snapshot_acquire();
    if (s != NULL) {
        tg_metrics_emit(e, TG_METRIC_GAUGE, "tollgate_snapshot_age_seconds",
                        "Seconds since the control plane built the snapshot in use.", 0, NULL, NULL,
                        (double)(tg_now_unix_ms() - s->created_unix_ms) / 1000.0);
        dp_snapshot_unref(s);
    }
    uint64_t applied[3];
    dp_sync_counters(&applied[0], &applied[1], &applied[2]);
    static const char *const how_label[] = {"how"};
    static const char *const how[] = {"full", "delta", "delta_stale"};
    for (int i = 0; i < 3; i++)
        tg_metrics_emit(e, TG_METRIC_COUNTER, "tollgate_snapshot_updates_total",
                        "Config updates received: full snapshots applied, key deltas applied, key deltas that did "
                        "not fit the version in use (each caused a fetch of the full snapshot).",
                        1, how_label, &how[i], (double)applied[i]);
    tg_metrics_emit(e, TG_METRIC_GAUGE, "tollgate_usage_queue_depth",
                    "Usage records and batches waiting for the control plane's acknowledgement.", 0, NULL, NULL,
                    (double)dp_usage_shipper_pending());
}

typedef struct breaker_ctx {
    tg_metrics_emitter_t *e;
    int pass; /* 0: state, 1: consecutive failures (samples of one name must be together) */
} breaker_ctx_t;

static void
on_breaker(void *ctx, const char *provider_id, const char *provider_name, const char *key_id, const char *model,
           int state, uint64_t consecutive_failures)
{
    breaker_ctx_t *b = ctx;
    static const char *const labels[] = {"provider", "key_id", "model"};
    const char *values[] = {provider_name, key_id, model};
    /* the gauge orders the states by severity; routing's enum does not (open is 1 there) */
    int gauge = state == DP_BREAKER_OPEN ? 2 : state == DP_BREAKER_HALF_OPEN ? 1 : 0;
    if (b->pass == 0)
        tg_metrics_emit(b->e, TG_METRIC_GAUGE, "tollgate_circuit_breaker_state",
                        "Circuit breaker state per provider key and model: 0 closed, 1 half-open, 2 open.", 3, labels,
                        values, gauge);
    else
        tg_metrics_emit(b->e, TG_METRIC_GAUGE, "tollgate_circuit_breaker_consecutive_failures",
                        "Consecutive failures seen by the breaker.", 3, labels, values, (double)consecutive_failures);
}

static void
collect_breakers(tg_metrics_emitter_t *e, void *ctx)
{
    if (g.breakers == NULL)
        return;
    for (int pass = 0; pass < 2; pass++) {
        breaker_ctx_t b = {.e = e, .pass = pass};
        g.breakers(on_breaker, &b);
    }
}

/* ---------------------------------------------------------------- process */

int
dp_obs_init(void)
{
    int64_t cap, qmax, flush;
    if (tg_env_int("TOLLGATE_METRICS_MAX_SERIES", 1000, 1, 1000000, &cap) != 0 ||
        tg_env_int("TOLLGATE_OTLP_QUEUE_MAX", 4096, 1, 1000000, &qmax) != 0 ||
        tg_env_int("TOLLGATE_OTLP_FLUSH_MS", 1000, 10, 60000, &flush) != 0) {
        fprintf(stderr, "tollgate-dataplane: an observability setting is out of range (see docs/configuration.md)\n");
        return -1;
    }
    g.ops_token = tg_env_str("TOLLGATE_OPS_TOKEN", NULL);
    if ((g.reg = tg_metrics_new()) == NULL)
        return -1;
    size_t c = (size_t)cap;
    const double *lb = tg_metrics_latency_buckets;
    size_t nlb = tg_metrics_latency_buckets_n;
    g.requests = tg_metrics_counter(g.reg, "tollgate_requests_total",
                                    "Requests by tenant, provider, public model, endpoint and HTTP status.", 5,
                                    (const char *[]){"tenant", "provider", "model", "endpoint", "code"}, c);
    g.duration = tg_metrics_histogram(g.reg, "tollgate_request_duration_seconds",
                                      "Whole request latency, first byte in to last byte out.", 2,
                                      (const char *[]){"provider", "model"}, c, lb, nlb);
    g.upstream = tg_metrics_histogram(g.reg, "tollgate_upstream_duration_seconds",
                                      "Time spent in upstream calls per request, all attempts together.", 2,
                                      (const char *[]){"provider", "model"}, c, lb, nlb);
    g.ttft = tg_metrics_histogram(g.reg, "tollgate_time_to_first_token_seconds",
                                  "From the request's start to the answering upstream's first response byte.", 2,
                                  (const char *[]){"provider", "model"}, c, lb, nlb);
    g.overhead = tg_metrics_histogram(g.reg, "tollgate_gateway_overhead_seconds",
                                      "Request latency minus upstream time: what the gateway itself added.", 2,
                                      (const char *[]){"provider", "model"}, c, lb, nlb);
    g.tokens = tg_metrics_counter(g.reg, "tollgate_tokens_total",
                                  "Billed tokens by type (input includes cached; cached is the cached part).", 4,
                                  (const char *[]){"tenant", "provider", "model", "type"}, c);
    g.cost = tg_metrics_counter(g.reg, "tollgate_cost_nanousd_total", "Billed cost in nano-USD.", 3,
                                (const char *[]){"tenant", "provider", "model"}, c);
    g.retries = tg_metrics_counter(g.reg, "tollgate_retries_total",
                                   "Upstream attempts repeated on the same target (same or another key).", 2,
                                   (const char *[]){"provider", "model"}, c);
    g.fallbacks = tg_metrics_counter(g.reg, "tollgate_fallbacks_total", "Hand-overs from one route target to the next.",
                                     3, (const char *[]){"model", "from", "to"}, c);
    g.upstream_responses =
        tg_metrics_counter(g.reg, "tollgate_upstream_responses_total",
                           "Upstream attempts by provider and outcome (HTTP status, or conn_error / timeout).", 2,
                           (const char *[]){"provider", "code"}, c);
    g.in_flight = tg_metrics_gauge(g.reg, "tollgate_requests_in_flight", "Requests being served.", 0, NULL, 1);
    g.spans_exported = tg_metrics_counter(g.reg, "tollgate_otlp_spans_exported_total",
                                          "Spans the OTLP collector accepted.", 0, NULL, 1);
    g.spans_dropped = tg_metrics_counter(g.reg, "tollgate_otlp_spans_dropped_total",
                                         "Spans dropped: queue_full (never blocks a request) or export_failed.", 1,
                                         (const char *[]){"reason"}, 4);
    g.log_failures = tg_metrics_counter(g.reg, "tollgate_access_log_write_failures_total",
                                        "Access log lines that could not be written.", 0, NULL, 1);
    if (g.requests == NULL || g.duration == NULL || g.upstream == NULL || g.ttft == NULL || g.overhead == NULL ||
        g.tokens == NULL || g.cost == NULL || g.retries == NULL || g.fallbacks == NULL ||
        g.upstream_responses == NULL || g.in_flight == NULL || g.spans_exported == NULL || g.spans_dropped == NULL ||
        g.log_failures == NULL)
        return -1;
    g.in_flight_s = tg_metrics_series0(g.in_flight);
    g.log_failures_s = tg_metrics_series0(g.log_failures);
    g.spans_exported_s = tg_metrics_series0(g.spans_exported);
    tg_metrics_series(g.spans_dropped, (const char *[]){"queue_full"});
    tg_metrics_series(g.spans_dropped, (const char *[]){"export_failed"});
    if (tg_metrics_add_collector(g.reg, collect_state, NULL) != 0 ||
        tg_metrics_add_collector(g.reg, collect_breakers, NULL) != 0)
        return -1;

    int64_t log_flush;
    if (tg_env_int("TOLLGATE_ACCESS_LOG_FLUSH_MS", 100, 0, 60000, &log_flush) != 0) {
        fprintf(stderr, "tollgate-dataplane: TOLLGATE_ACCESS_LOG_FLUSH_MS must be 0..60000\n");
        return -1;
    }
    if (dp_access_log_open(tg_env_str("TOLLGATE_ACCESS_LOG", "stderr"), (int)log_flush) != 0)
        return -1;
    const char *endpoint = tg_env_str("TOLLGATE_OTLP_ENDPOINT", NULL);
    if (endpoint != NULL && dp_tracer_start(endpoint, tg_env_str("TOLLGATE_OTLP_SERVICE_NAME", "tollgate-dataplane"),
                                            (size_t)qmax, (int)flush) != 0) {
        fprintf(stderr, "tollgate-dataplane: could not start the OTLP exporter for %s\n", endpoint);
        return -1;
    }
    return 0;
}

void
dp_obs_shutdown(int deadline_ms)
{
    dp_tracer_stop(deadline_ms);
    dp_access_log_close();
    tg_metrics_free(g.reg);
    g.reg = NULL;
}

void
dp_obs_count_span_export(size_t exported, size_t dropped, const char *reason)
{
    if (g.reg == NULL)
        return;
    if (exported > 0)
        tg_metrics_inc(g.spans_exported_s, exported);
    if (dropped > 0)
        tg_metrics_inc(tg_metrics_series(g.spans_dropped, (const char *[]){reason}), dropped);
}

void
dp_obs_count_log_failure(void)
{
    if (g.reg != NULL)
        tg_metrics_inc(g.log_failures_s, 1);
}

/* ---------------------------------------------------------------- request record */

static void
hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int
unhex(const char *s, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[2 * i + k];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0)
                return -1; /* upper case is invalid in a traceparent */
            v = v << 4 | d;
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}

static int
all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

int
dp_trace_parse(const char *s, size_t len, uint8_t trace_id[16], uint8_t span_id[8], uint8_t *flags)
{
    /* version 00 is exactly 55 characters; a later version may append fields after a '-' */
    if (len < 55 || (len > 55 && s[55] != '-') || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return -1;
    uint8_t version;
    if (unhex(s, 1, &version) != 0 || version == 0xff || (version == 0 && len != 55))
        return -1;
    if (unhex(s + 3, 16, trace_id) != 0 || unhex(s + 36, 8, span_id) != 0 || unhex(s + 53, 1, flags) != 0)
        return -1;
    if (all_zero(trace_id, 16) || all_zero(span_id, 8))
        return -1;
    return 0;
}

void
dp_trace_format(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags, char out[56])
{
    memcpy(out, "00-", 3);
    hex(trace_id, 16, out + 3);
    out[35] = '-';
    hex(span_id, 8, out + 36);
    out[52] = '-';
    hex(&flags, 1, out + 53);
}

static int
sane_request_id(h2o_iovec_t v)
{
    if (v.len == 0 || v.len >= DP_OBS_REQUEST_ID_MAX)
        return 0;
    for (size_t k = 0; k < v.len; k++)
        if (v.base[k] <= 0x20 || v.base[k] >= 0x7f || v.base[k] == '"' || v.base[k] == '\\')
            return 0;
    return 1;
}

static void on_dispose(void *p);

dp_obs_t *
dp_obs_begin(h2o_req_t *req, uint64_t rand_a, uint64_t rand_b)
{
    dp_obs_t *o = h2o_mem_alloc_shared(&req->pool, sizeof(*o), on_dispose);
    memset(o, 0, sizeof(*o));
    o->magic = OBS_MAGIC;
    o->req = req;
    o->start_ns = tg_mono_ns();
    struct timespec ts; /* spans want better than milliseconds */
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0)
        o->start_unix_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    else
        o->start_unix_ns = tg_now_unix_ms() * 1000000;

    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    if (i >= 0 && sane_request_id(req->headers.entries[i].value)) {
        memcpy(o->request_id, req->headers.entries[i].value.base, req->headers.entries[i].value.len);
    } else {
        static const char digits[] = "0123456789abcdef";
        memcpy(o->request_id, "req_", 4);
        for (int k = 0; k < 16; k++)
            o->request_id[4 + k] = digits[(rand_a >> (4 * k)) & 15];
        for (int k = 0; k < 8; k++)
            o->request_id[20 + k] = digits[(rand_b >> (4 * k)) & 15];
    }

    /* trace context: W3C asks for random trace ids; the fallback only if the generator fails */
    uint8_t rnd[32];
    if (tg_random_ids(rnd, sizeof(rnd)) != 0) {
        memcpy(rnd, &rand_a, 8);
        memcpy(rnd + 8, &rand_b, 8);
        memcpy(rnd + 16, &o->start_ns, 8);
        memcpy(rnd + 24, &o->start_unix_ns, 8);
    }
    i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("traceparent"), -1);
    if (i >= 0 && dp_trace_parse(req->headers.entries[i].value.base, req->headers.entries[i].value.len, o->trace_id,
                                 o->parent_span, &o->trace_flags) == 0) {
        o->has_parent = 1;
        ssize_t j = h2o_find_header_by_str(&req->headers, H2O_STRLIT("tracestate"), -1);
        if (j >= 0 && req->headers.entries[j].value.len <= 512)
            o->tracestate = req->headers.entries[j].value;
    } else {
        memcpy(o->trace_id, rnd, 16);
        o->trace_flags = dp_tracer_enabled() ? 1 : 0; /* sampled when we export */
    }
    memcpy(o->span_id, rnd + 16, 8);
    if (all_zero(o->span_id, 8))
        o->span_id[0] = 1;
    if (all_zero(o->trace_id, 16))
        o->trace_id[0] = 1;
    if (dp_access_log_enabled())
        dp_access_log_peer(req, o->client);
    if (g.reg != NULL)
        tg_metrics_add(g.in_flight_s, 1);
    return o;
}

dp_obs_t *
dp_obs_of(const char *request_id)
{
    dp_obs_t *o = H2O_STRUCT_FROM_MEMBER(dp_obs_t, request_id, request_id);
    return o->magic == OBS_MAGIC ? o : NULL;
}

dp_obs_t *
dp_obs_of_req(h2o_req_t *req)
{
    ssize_t i = h2o_find_header_by_str(&req->res.headers, H2O_STRLIT("x-request-id"), -1);
    if (i < 0)
        return NULL;
    /* the router adds this header with the record's own array as its value (no copy) */
    return dp_obs_of(req->res.headers.entries[i].value.base);
}

void
dp_obs_exchange(dp_obs_t *o, dp_snapshot_t *snapshot, const char *endpoint, const dp_vkey_t *key, const char *model,
                size_t model_len, int stream)
{
    if (o == NULL || o->exchange)
        return;
    dp_snapshot_ref(snapshot);
    o->snapshot = snapshot;
    o->exchange = 1;
    o->endpoint = endpoint;
    o->tenant_id = key->tenant_id;
    o->key_id = key->id;
    o->log_content = key->log_content;
    if (o->log_content && o->req->entity.base != NULL) {
        size_t n = o->req->entity.len > DP_OBS_CAPTURE_MAX ? DP_OBS_CAPTURE_MAX : o->req->entity.len;
        o->request_body = h2o_strdup(&o->req->pool, o->req->entity.base, n);
    }
    o->model = model;
    o->model_len = model_len;
    o->stream = stream != 0;
}

/* The public model name as a NUL-terminated label value (the record holds a span of the body). */
static void
model_label(const dp_obs_t *o, char out[TG_METRICS_LABEL_MAX + 1])
{
    size_t n = o->model_len > TG_METRICS_LABEL_MAX ? TG_METRICS_LABEL_MAX : o->model_len;
    if (o->model != NULL && n > 0)
        memcpy(out, o->model, n);
    out[o->model != NULL ? n : 0] = '\0';
}

static void
random_span(dp_obs_t *o, uint8_t out[8])
{
    if (tg_random_ids(out, 8) != 0 || all_zero(out, 8)) {
        uint64_t v = tg_mono_ns() ^ ((uint64_t)o->attempts << 56) ^ 0x9e3779b97f4a7c15ull;
        memcpy(out, &v, 8);
    }
}

const struct curl_slist *
dp_obs_attempt_begin(dp_obs_t *o, const dp_target_t *target, const struct curl_slist *headers)
{
    if (o == NULL)
        return headers;
    const char *provider = target->provider->name;
    if (o->attempt_open) /* the last one never reached on_done: it could not be started */
        dp_obs_attempt_end(o, 0, CURLE_FAILED_INIT);
    if (o->attempts > 0 && g.reg != NULL) {
        char model[TG_METRICS_LABEL_MAX + 1];
        model_label(o, model);
        if (o->target == target) {
            o->retries++;
            tg_metrics_inc(tg_metrics_series(g.retries, (const char *[]){provider, model}), 1);
        } else {
            o->fallbacks++;
            tg_metrics_inc(tg_metrics_series(g.fallbacks, (const char *[]){model, o->provider, provider}), 1);
        }
    }
    o->attempts++;
    o->attempt_open = 1;
    o->attempt_got_byte = 0;
    o->target = target;
    o->provider = provider;
    /* a copy: a direct `account/model` target lives in the exchange's arena, which is gone before this
     * record's end (the record is disposed last) */
    o->upstream_model = h2o_strdup(&o->req->pool, target->upstream_model, SIZE_MAX).base;
    o->attempt_start_ns = tg_mono_ns();
    o->attempt_start_unix_ns = o->start_unix_ns + (int64_t)(o->attempt_start_ns - o->start_ns);
    random_span(o, o->attempt_span);

    /* x-request-id and a traceparent naming this attempt's span, in front of the caller's list */
    char tp[56];
    dp_trace_format(o->trace_id, o->attempt_span, o->trace_flags, tp);
    put_str(o->rid_line, put_str(o->rid_line, 0, sizeof(o->rid_line), "x-request-id: "), sizeof(o->rid_line),
            o->request_id);
    put_str(o->tp_line, put_str(o->tp_line, 0, sizeof(o->tp_line), "traceparent: "), sizeof(o->tp_line), tp);
    size_t n = 0;
    o->hdr[n++].data = o->rid_line;
    o->hdr[n++].data = o->tp_line;
    if (o->tracestate.len > 0) {
        if (o->ts_line == NULL) {
            o->ts_line = h2o_mem_alloc_pool(&o->req->pool, o->tracestate.len + 16);
            sprintf(o->ts_line, "tracestate: %.*s", (int)o->tracestate.len, o->tracestate.base);
        }
        o->hdr[n++].data = o->ts_line;
    }
    for (size_t i = 0; i + 1 < n; i++)
        o->hdr[i].next = &o->hdr[i + 1];
    o->hdr[n - 1].next = (struct curl_slist *)headers;
    return &o->hdr[0];
}

void
dp_obs_first_byte(dp_obs_t *o)
{
    if (o != NULL && o->attempt_open && !o->attempt_got_byte) {
        o->attempt_got_byte = 1;
        o->first_byte_ns = tg_mono_ns() - o->start_ns;
    }
}

static const char *
outcome_code(long status, CURLcode rc, char buf[TG_U64_DIGITS + 1])
{
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return "timeout";
    if (rc == CURLE_ABORTED_BY_CALLBACK)
        return "cancelled";
    if (rc != CURLE_OK || status <= 0 || status > 999)
        return "conn_error";
    return small_uint((unsigned)status, buf);
}

void
dp_obs_attempt_end(dp_obs_t *o, long status, CURLcode rc)
{
    if (o == NULL || !o->attempt_open)
        return;
    o->attempt_open = 0;
    uint64_t now = tg_mono_ns();
    o->upstream_ns += now - o->attempt_start_ns;
    char buf[TG_U64_DIGITS + 1];
    const char *code = outcome_code(status, rc, buf);
    if (g.reg != NULL)
        tg_metrics_inc(tg_metrics_series(g.upstream_responses, (const char *[]){o->provider, code}), 1);
    if (o->tried == NULL)
        o->tried = h2o_mem_alloc_pool(&o->req->pool, DP_OBS_TRIED_MAX);
    if (o->tried_len < DP_OBS_TRIED_MAX) {
        /* "provider/model=code", comma-separated; a list that no longer fits is marked full */
        size_t cap = DP_OBS_TRIED_MAX, n = o->tried_len;
        if (n > 0)
            n = put_str(o->tried, n, cap, ",");
        n = put_str(o->tried, n, cap, o->provider ? o->provider : "");
        n = put_str(o->tried, n, cap, "/");
        n = put_str(o->tried, n, cap, o->upstream_model ? o->upstream_model : "");
        n = put_str(o->tried, n, cap, "=");
        n = put_str(o->tried, n, cap, code);
        o->tried_len = n + 1 < cap ? n : cap;
    }
    dp_tracer_attempt(o, status, rc, o->start_unix_ns + (int64_t)(now - o->start_ns));
}

void
dp_obs_usage(dp_obs_t *o, const dp_usage_fields_t *f, const char *provider_name)
{
    if (o == NULL)
        return;
    o->recorded = 1;
    o->stream = f->stream;
    o->status = (int)f->status;
    o->input_tokens = f->input_tokens;
    o->output_tokens = f->output_tokens;
    o->cached_tokens = f->cached_input_tokens;
    o->cost_nanousd = f->cost_nanousd;
    if (o->provider == NULL)
        o->provider = provider_name;
    if (o->upstream_model == NULL)
        o->upstream_model = f->upstream_model;
}

void
dp_obs_capture(dp_obs_t *o, const char *data, size_t len)
{
    if (o == NULL || !o->log_content || len == 0 || o->response.len >= DP_OBS_CAPTURE_MAX)
        return;
    if (len > DP_OBS_CAPTURE_MAX - o->response.len)
        len = DP_OBS_CAPTURE_MAX - o->response.len;
    tg_buf_append(&o->response, data, len);
}

void
dp_obs_note_error(h2o_req_t *req, int status, const char *code)
{
    dp_obs_t *o = dp_obs_of_req(req);
    if (o != NULL && code != NULL)
        snprintf(o->error_code, sizeof(o->error_code), "%s", code);
}

/* ---------------------------------------------------------------- the request's end */

/* The histograms, tokens and cost of a request that went through the exchange. */
static void
record_exchange_metrics(const dp_obs_t *o, uint64_t total_ns, const char *tenant, const char *provider,
                        const char *model)
{
    const char *pm[] = {provider, model};
    double total = total_ns / 1e9, up = o->upstream_ns / 1e9;
    tg_metrics_observe(tg_metrics_series(g.duration, pm), total);
    if (o->attempts > 0) {
        tg_metrics_observe(tg_metrics_series(g.upstream, pm), up);
        tg_metrics_observe(tg_metrics_series(g.overhead, pm), total > up ? total - up : 0);
    }
    if (o->first_byte_ns > 0)
        tg_metrics_observe(tg_metrics_series(g.ttft, pm), o->first_byte_ns / 1e9);
    if (o->recorded) {
        const char *types[] = {"input", "output", "cached"};
        int64_t counts[] = {o->input_tokens, o->output_tokens, o->cached_tokens};
        for (int i = 0; i < 3; i++)
            if (counts[i] > 0)
                tg_metrics_inc(tg_metrics_series(g.tokens, (const char *[]){tenant, provider, model, types[i]}),
                               (uint64_t)counts[i]);
        if (o->cost_nanousd > 0)
            tg_metrics_inc(tg_metrics_series(g.cost, (const char *[]){tenant, provider, model}),
                           (uint64_t)o->cost_nanousd);
    }
}

static void
record_metrics(dp_obs_t *o, uint64_t total_ns)
{
    char model[TG_METRICS_LABEL_MAX + 1], digits[TG_U64_DIGITS + 1];
    model_label(o, model);
    const char *code = o->status >= 0 ? small_uint((unsigned)o->status, digits) : "0";
    const char *tenant = o->tenant_id ? o->tenant_id : "";
    const char *provider = o->provider ? o->provider : "";
    if (o->exchange)
        record_exchange_metrics(o, total_ns, tenant, provider, model);
    /* last, so that a scraper (a test) that waits for the request to be counted finds its other samples */
    tg_metrics_inc(tg_metrics_series(g.requests, (const char *[]){tenant, provider, model,
                                                                  o->endpoint ? o->endpoint : "other", code}),
                   1);
}

static void
on_dispose(void *p)
{
    dp_obs_t *o = p;
    if (g.reg != NULL)
        tg_metrics_add(g.in_flight_s, -1);
    if (!o->skip) {
        uint64_t now = tg_mono_ns();
        if (o->attempt_open)
            dp_obs_attempt_end(o, 0, CURLE_ABORTED_BY_CALLBACK); /* the client left mid-call */
        if (!o->recorded)
            o->status = o->req->res.status != 0 ? o->req->res.status : 499;
        uint64_t total_ns = now - o->start_ns;
        int64_t end_unix_ns = o->start_unix_ns + (int64_t)total_ns;
        if (g.reg != NULL)
            record_metrics(o, total_ns);
        dp_access_log_write(o, end_unix_ns, total_ns);
        dp_tracer_request(o, end_unix_ns);
    }
    tg_buf_free(&o->response);
    dp_snapshot_unref(o->snapshot);
    o->magic = 0;
}

/* ---------------------------------------------------------------- GET /metrics */

int
dp_obs_ops_authorized(h2o_req_t *req)
{
    if (g.ops_token == NULL)
        return 1;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    return tg_bearer_matches(v.base, v.len, g.ops_token);
}

int
dp_obs_metrics_handle(h2o_req_t *req)
{
    dp_obs_t *o = dp_obs_of_req(req);
    if (o != NULL)
        o->skip = 1;
    if (!dp_obs_ops_authorized(req)) {
        req->res.status = 401;
        req->res.reason = tg_http_reason(401);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/plain"));
        h2o_send_inline(req, H2O_STRLIT("a valid ops token is required (TOLLGATE_OPS_TOKEN)\n"));
        return 0;
    }
    tg_buf_t b = {0};
    if (g.reg == NULL || tg_metrics_render(g.reg, &b) != 0) {
        tg_buf_free(&b);
        req->res.status = 500;
        req->res.reason = tg_http_reason(500);
        h2o_send_inline(req, H2O_STRLIT("metrics unavailable\n"));
        return 0;
    }
    char *body = h2o_mem_alloc_pool(&req->pool, b.len ? b.len : 1);
    memcpy(body, b.base, b.len);
    size_t len = b.len;
    tg_buf_free(&b);
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT(TG_METRICS_CONTENT_TYPE));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
    return 0;
}
