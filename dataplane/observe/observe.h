/*
 * Observability of the dataplane: one record per request (dp_obs_t) that the pipeline fills as it goes,
 * and, when the request ends, turns into metrics (/metrics, Prometheus text), one JSON access log line
 * and trace spans exported over OTLP/HTTP. docs/metrics.md lists every name and field.
 *
 * Lifetime: the router allocates the record first thing, in the request's pool, with a dispose callback
 * (dp_obs_begin). h2o disposes pool objects in the reverse order of their allocation, so the record's
 * dispose runs after every later object's (the exchange's included): it is the request's end, whatever
 * path the request took, and the one place that emits. The request id handed to endpoints is the
 * record's own `request_id` array, so an endpoint that has only the id finds the record with
 * dp_obs_of(); `x-request-id` in the response headers points at that array too (dp_obs_of_req).
 *
 * Hooks, all on the worker thread, all cheap and safe to skip:
 *   dp_obs_exchange()       the LLM call knows its endpoint, key, model and stream flag
 *   dp_obs_attempt_begin()  an upstream attempt starts: returns the header list with x-request-id and
 *                           traceparent (a child span per attempt) in front of the caller's
 *   dp_obs_first_byte()     the upstream's first response byte of this attempt
 *   dp_obs_attempt_end()    the attempt ended with an HTTP status (0 with a curl failure)
 *   dp_obs_usage()          the usage record (tokens, cost, final status) was written
 *   dp_obs_capture()        bytes sent to the client (kept, capped, only for a log_content tenant)
 *   dp_obs_note_error()     an error answer's code (errors.c)
 */
#ifndef DP_OBSERVE_H
#define DP_OBSERVE_H

#include <stdint.h>
#include <curl/curl.h>
#include <h2o.h>
#include "accounting/usage.h"
#include "config/snapshot.h"
#include "tollgate/buf.h"
#include "tollgate/metrics.h"

#define DP_OBS_REQUEST_ID_MAX 64
#define DP_OBS_TRIED_MAX      512
#define DP_OBS_CAPTURE_MAX    (16u << 10) /* request/response bytes kept for a log_content tenant */

typedef struct dp_obs {
    uint32_t magic;
    char request_id[DP_OBS_REQUEST_ID_MAX]; /* the id every module sees; see dp_obs_of() */
    h2o_req_t *req;
    unsigned skip : 1;     /* health, readiness and /metrics: no log line, no request metrics, no span */
    unsigned exchange : 1; /* an LLM call (dp_obs_exchange was called) */
    unsigned stream : 1;
    unsigned recorded : 1; /* dp_obs_usage was called */
    unsigned log_content : 1;
    unsigned attempt_open : 1;
    unsigned attempt_got_byte : 1;
    unsigned has_parent : 1;
    uint64_t start_ns;
    int64_t start_unix_ns;

    /* trace context: the client's (parent) and ours */
    uint8_t trace_id[16], parent_span[8], span_id[8], attempt_span[8];
    uint8_t trace_flags;
    h2o_iovec_t tracestate;

    /* what the pipeline reported; the strings live in `snapshot` or in the request's pool */
    dp_snapshot_t *snapshot;
    const char *endpoint;
    const char *tenant_id, *key_id;
    const char *model;
    size_t model_len;
    const dp_target_t *target;             /* the last attempt's */
    const char *provider, *upstream_model; /* its names (or the usage record's) */
    int status;
    char error_code[48];
    int attempts, retries, fallbacks;
    int64_t input_tokens, output_tokens, cached_tokens, cost_nanousd;
    uint64_t upstream_ns;      /* all attempts together */
    uint64_t attempt_start_ns; /* the current attempt */
    int64_t attempt_start_unix_ns;
    uint64_t first_byte_ns; /* since start, of the latest attempt that had one; 0: none */
    char *tried; /* DP_OBS_TRIED_MAX bytes in the pool from the first attempt on: out of line, the record fits
                  * in the pool's chunk instead of being an allocation of its own for the stream's life */
    size_t tried_len;
    tg_buf_t response;        /* captured for log_content tenants */
    h2o_iovec_t request_body; /* likewise, a copy in the pool */
    char client[64];          /* "address:port", taken at the start (the connection may be gone at the end) */

    /* the two header lines sent upstream, chained in front of the attempt's list */
    struct curl_slist hdr[3];
    char rid_line[DP_OBS_REQUEST_ID_MAX + 16];
    char tp_line[72];
    char *ts_line;
} dp_obs_t;

/* ---- process */

/* Reads the observability settings (TOLLGATE_ACCESS_LOG, TOLLGATE_OPS_TOKEN, TOLLGATE_OTLP_*,
 * TOLLGATE_METRICS_MAX_SERIES), creates the registry and starts the span exporter. 0, or -1 with a
 * message on stderr. */
int dp_obs_init(void);
/* Flushes spans (bounded by deadline_ms) and stops the exporter; frees the registry. At exit. */
void dp_obs_shutdown(int deadline_ms);

/* The registry, for modules that add their own families or collectors. */
tg_metrics_t *dp_obs_registry(void);

/*
 * Circuit breakers are owned by routing. Whoever owns dp_breaker_foreach() wires it here once at start
 * (server/main.c), and /metrics shows tollgate_circuit_breaker_state and
 * tollgate_circuit_breaker_consecutive_failures for every breaker at scrape time.
 */
typedef void (*dp_breaker_cb)(void *ctx, const char *provider_id, const char *provider_name, const char *key_id,
                              const char *model, int state, uint64_t consecutive_failures);
typedef void (*dp_breaker_foreach_fn)(dp_breaker_cb cb, void *ctx);
void dp_obs_set_breaker_source(dp_breaker_foreach_fn foreach);

/* ---- request */

/* Allocates the request's record in its pool and assigns the request id (the client's x-request-id when
 * sane, else a new one) and the trace context (the client's traceparent when valid). Never NULL. */
dp_obs_t *dp_obs_begin(h2o_req_t *req, uint64_t rand_a, uint64_t rand_b);
/* The record whose request_id this is (an id from dp_obs_begin). */
dp_obs_t *dp_obs_of(const char *request_id);
/* The record of a request, through its x-request-id response header; NULL when there is none. */
dp_obs_t *dp_obs_of_req(h2o_req_t *req);

/* The record keeps a reference to the snapshot until it is disposed: the names it reports (tenant, key,
 * provider, upstream model) live there, and the exchange lets go of its own reference first. */
void dp_obs_exchange(dp_obs_t *o, dp_snapshot_t *snapshot, const char *endpoint, const dp_vkey_t *key,
                     const char *model, size_t model_len, int stream);
const struct curl_slist *dp_obs_attempt_begin(dp_obs_t *o, const dp_target_t *target, const struct curl_slist *headers);
void dp_obs_first_byte(dp_obs_t *o);
void dp_obs_attempt_end(dp_obs_t *o, long status, CURLcode rc);
void dp_obs_usage(dp_obs_t *o, const dp_usage_fields_t *f, const char *provider_name);
void dp_obs_capture(dp_obs_t *o, const char *data, size_t len);
void dp_obs_note_error(h2o_req_t *req, int status, const char *code);

/* GET /metrics (the router sends it here). */
/* The ops endpoints' check (/metrics, /tollgate/v1/breakers): 1 when TOLLGATE_OPS_TOKEN is unset or
 * the request carries it as a Bearer token. */
int dp_obs_ops_authorized(h2o_req_t *req);
int dp_obs_metrics_handle(h2o_req_t *req);

/* How long access log lines may wait in a worker thread (TOLLGATE_ACCESS_LOG_FLUSH_MS). 0: lines are
 * written at once (or the log is off). */
int dp_access_log_flush_ms(void);
/* The calling worker thread's flush timer (initialised on its loop), started when a line is left
 * waiting; NULL before the worker closes it. */
void dp_access_log_set_timer(uv_timer_t *t);
/* Writes the calling worker thread's waiting access log lines; release: also frees its buffer (the
 * worker is stopping). */
void dp_access_log_flush(int release);

/* ---- pieces, exposed for their unit tests */

/* W3C traceparent "00-<32 hex>-<16 hex>-<2 hex>": 0 and the ids, or -1 when it is not valid. */
int dp_trace_parse(const char *s, size_t len, uint8_t trace_id[16], uint8_t span_id[8], uint8_t *flags);
/* Writes "00-<trace>-<span>-<flags>" (55 characters and a NUL) into out. */
void dp_trace_format(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags, char out[56]);
/* Appends the access log line of a finished record (JSON object and '\n'). */
int dp_access_log_format(const dp_obs_t *o, int64_t end_unix_ns, uint64_t total_ns, tg_buf_t *out);

#endif
