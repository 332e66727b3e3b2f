/*
 * Trace spans over OTLP/HTTP with the JSON encoding (POST {endpoint}/v1/traces).
 *
 * A worker that finishes a request (or an upstream attempt) copies what the span needs into a small
 * malloc'd struct and pushes it onto a bounded queue under a mutex held for a pointer store; when the
 * queue is full the span is dropped and counted (tollgate_otlp_spans_dropped_total{reason="queue_full"}),
 * so a slow or dead collector never holds a request. One background thread takes batches off the queue
 * (every TOLLGATE_OTLP_FLUSH_MS, or sooner when a batch is full), encodes them and posts them with a
 * libcurl easy handle; a batch the collector does not accept is dropped and counted as export_failed.
 * At shutdown the thread sends what is queued until a deadline.
 *
 * Spans: the request (kind SERVER, a child of the client's traceparent when one came) and each upstream
 * attempt (kind CLIENT, a child of the request span; its id is the one sent upstream in traceparent).
 * Attributes follow the OpenTelemetry gen_ai.* semantic conventions where they fit.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "observe/internal.h"
#include "tollgate/env.h"
#include "tollgate/log.h"

#define BATCH_MAX         512
#define ATTRS_MAX         16
#define EXPORT_TIMEOUT_MS 5000

typedef struct attr {
    const char *key; /* a literal */
    int is_int;
    int64_t i;
    char s[128];
} attr_t;

typedef struct span {
    uint8_t trace_id[16], span_id[8], parent[8];
    int has_parent;
    int kind; /* 2 SERVER, 3 CLIENT */
    int error;
    char name[96];
    int64_t start, end;
    int n_attrs;
    attr_t attrs[ATTRS_MAX];
} span_t;

static struct {
    int enabled;
    char *url;
    char *service;
    int flush_ms;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    span_t **ring;
    size_t cap, head, count;
    int stopping;
    uint64_t deadline_ns; /* while stopping: give up sending after this */
} t = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

int
dp_tracer_enabled(void)
{
    return t.enabled;
}

/* ---------------------------------------------------------------- building spans (worker threads) */

static void
attr_str(span_t *s, const char *key, const char *v, size_t len)
{
    if (s->n_attrs >= ATTRS_MAX || v == NULL)
        return;
    attr_t *a = &s->attrs[s->n_attrs++];
    a->key = key;
    a->is_int = 0;
    if (len >= sizeof(a->s))
        len = sizeof(a->s) - 1;
    memcpy(a->s, v, len);
    a->s[len] = '\0';
}

static void
attr_cstr(span_t *s, const char *key, const char *v)
{
    if (v != NULL)
        attr_str(s, key, v, strlen(v));
}

static void
attr_int(span_t *s, const char *key, int64_t v)
{
    if (s->n_attrs >= ATTRS_MAX)
        return;
    attr_t *a = &s->attrs[s->n_attrs++];
    a->key = key;
    a->is_int = 1;
    a->i = v;
}

static void
submit(span_t *s)
{
    int dropped = 0;
    pthread_mutex_lock(&t.lock);
    if (t.count >= t.cap || t.stopping) {
        dropped = 1;
    } else {
        t.ring[(t.head + t.count) % t.cap] = s;
        if (++t.count >= BATCH_MAX)
            pthread_cond_signal(&t.cond);
    }
    pthread_mutex_unlock(&t.lock);
    if (dropped) {
        free(s);
        dp_obs_count_span_export(0, 1, "queue_full");
    }
}

static const char *
operation(const char *endpoint)
{
    if (endpoint == NULL)
        return NULL;
    if (strstr(endpoint, "mbed") != NULL)
        return "embeddings";
    if (strcmp(endpoint, "completions") == 0)
        return "text_completion";
    if (strstr(endpoint, "count") != NULL)
        return "count_tokens";
    return "chat";
}

void
dp_tracer_request(const dp_obs_t *o, int64_t end_unix_ns)
{
    if (!t.enabled)
        return;
    span_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        dp_obs_count_span_export(0, 1, "queue_full");
        return;
    }
    memcpy(s->trace_id, o->trace_id, 16);
    memcpy(s->span_id, o->span_id, 8);
    if (o->has_parent) {
        memcpy(s->parent, o->parent_span, 8);
        s->has_parent = 1;
    }
    s->kind = 2;
    s->start = o->start_unix_ns;
    s->end = end_unix_ns;
    s->error = o->status >= 500 || o->status == 499;
    snprintf(s->name, sizeof(s->name), "%s %.*s", o->endpoint ? o->endpoint : "request",
             (int)(o->model_len > 64 ? 64 : o->model_len), o->model ? o->model : "");
    attr_cstr(s, "gen_ai.operation.name", operation(o->endpoint));
    if (o->target != NULL)
        attr_cstr(s, "gen_ai.system", o->target->provider->kind);
    if (o->model != NULL)
        attr_str(s, "gen_ai.request.model", o->model, o->model_len);
    attr_cstr(s, "gen_ai.response.model", o->upstream_model);
    if (o->recorded) {
        attr_int(s, "gen_ai.usage.input_tokens", o->input_tokens);
        attr_int(s, "gen_ai.usage.output_tokens", o->output_tokens);
    }
    attr_int(s, "http.response.status_code", o->status);
    attr_cstr(s, "tollgate.request_id", o->request_id);
    attr_cstr(s, "tollgate.tenant_id", o->tenant_id);
    attr_cstr(s, "tollgate.key_id", o->key_id);
    attr_cstr(s, "tollgate.provider", o->provider);
    attr_int(s, "tollgate.attempts", o->attempts);
    attr_int(s, "tollgate.cost_nanousd", o->cost_nanousd);
    attr_int(s, "tollgate.stream", o->stream);
    if (o->error_code[0])
        attr_cstr(s, "error.type", o->error_code);
    submit(s);
}

void
dp_tracer_attempt(const dp_obs_t *o, long status, CURLcode rc, int64_t end_unix_ns)
{
    if (!t.enabled)
        return;
    span_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        dp_obs_count_span_export(0, 1, "queue_full");
        return;
    }
    memcpy(s->trace_id, o->trace_id, 16);
    memcpy(s->span_id, o->attempt_span, 8);
    memcpy(s->parent, o->span_id, 8);
    s->has_parent = 1;
    s->kind = 3;
    s->start = o->attempt_start_unix_ns;
    s->end = end_unix_ns;
    s->error = rc != CURLE_OK || status >= 400;
    snprintf(s->name, sizeof(s->name), "upstream %s", o->provider ? o->provider : "");
    if (o->target != NULL)
        attr_cstr(s, "gen_ai.system", o->target->provider->kind);
    attr_cstr(s, "gen_ai.request.model", o->upstream_model);
    attr_cstr(s, "tollgate.provider", o->provider);
    attr_int(s, "tollgate.attempt", o->attempts);
    if (rc == CURLE_OK)
        attr_int(s, "http.response.status_code", status);
    else
        attr_cstr(s, "error.type", rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : curl_easy_strerror(rc));
    submit(s);
}

/* ---------------------------------------------------------------- exporting (the tracer's thread) */

static void
append_hex(tg_buf_t *b, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char out[33];
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    tg_buf_append(b, out, 2 * n);
}

static int
encode(span_t **spans, size_t n, tg_buf_t *b)
{
    tg_buf_appends(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{"
                      "\"stringValue\":");
    tg_buf_append_json_string(b, t.service, strlen(t.service));
    tg_buf_appends(b, "}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"tollgate\"},\"spans\":[");
    for (size_t i = 0; i < n; i++) {
        const span_t *s = spans[i];
        tg_buf_appends(b, i ? ",{\"traceId\":\"" : "{\"traceId\":\"");
        append_hex(b, s->trace_id, 16);
        tg_buf_appends(b, "\",\"spanId\":\"");
        append_hex(b, s->span_id, 8);
        if (s->has_parent) {
            tg_buf_appends(b, "\",\"parentSpanId\":\"");
            append_hex(b, s->parent, 8);
        }
        tg_buf_appends(b, "\",\"name\":");
        tg_buf_append_json_string(b, s->name, strlen(s->name));
        tg_buf_appendf(b, ",\"kind\":%d,\"startTimeUnixNano\":\"%lld\",\"endTimeUnixNano\":\"%lld\",\"attributes\":[",
                       s->kind, (long long)s->start, (long long)s->end);
        for (int k = 0; k < s->n_attrs; k++) {
            const attr_t *a = &s->attrs[k];
            tg_buf_appendf(b, "%s{\"key\":\"%s\",\"value\":{", k ? "," : "", a->key);
            if (a->is_int) {
                tg_buf_appendf(b, "\"intValue\":\"%lld\"}}", (long long)a->i);
            } else {
                tg_buf_appends(b, "\"stringValue\":");
                tg_buf_append_json_string(b, a->s, strlen(a->s));
                tg_buf_appends(b, "}}");
            }
        }
        tg_buf_appendf(b, "],\"status\":{\"code\":%d}}", s->error ? 2 : 1);
    }
    return tg_buf_appends(b, "]}]}]}");
}

static size_t
discard(char *p, size_t size, size_t n, void *ctx)
{
    return size * n;
}

/* 0 when the collector accepted the batch. */
static int
post(CURL *easy, struct curl_slist *headers, const tg_buf_t *body, long timeout_ms)
{
    curl_easy_setopt(easy, CURLOPT_URL, t.url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body->base);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 2000 ? timeout_ms : 2000L);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = curl_easy_perform(easy);
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status < 200 || status >= 300) {
        tg_warn("dp.otlp.export_failed", "url=%s status=%ld error=\"%s\"", t.url, status,
                rc != CURLE_OK ? curl_easy_strerror(rc) : "");
        return -1;
    }
    return 0;
}

static void *
exporter_main(void *arg)
{
    CURL *easy = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = headers != NULL ? curl_slist_append(headers, "Expect:") : NULL;
    span_t *batch[BATCH_MAX];
    for (;;) {
        pthread_mutex_lock(&t.lock);
        if (!t.stopping && t.count < BATCH_MAX) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += (long)(t.flush_ms % 1000) * 1000000;
            until.tv_sec += t.flush_ms / 1000 + until.tv_nsec / 1000000000;
            until.tv_nsec %= 1000000000;
            pthread_cond_timedwait(&t.cond, &t.lock, &until);
        }
        size_t n = 0;
        while (n < BATCH_MAX && t.count > 0) {
            batch[n++] = t.ring[t.head];
            t.head = (t.head + 1) % t.cap;
            t.count--;
        }
        int stopping = t.stopping;
        uint64_t deadline = t.deadline_ns;
        pthread_mutex_unlock(&t.lock);
        if (n == 0) {
            if (stopping)
                break;
            continue;
        }
        long timeout = EXPORT_TIMEOUT_MS;
        uint64_t now = tg_mono_ns();
        if (stopping)
            timeout = deadline > now ? (long)((deadline - now) / 1000000) : 0;
        tg_buf_t body = {0};
        int ok = timeout > 0 && easy != NULL && headers != NULL && encode(batch, n, &body) == 0 &&
                 post(easy, headers, &body, timeout) == 0;
        tg_buf_free(&body);
        dp_obs_count_span_export(ok ? n : 0, ok ? 0 : n, "export_failed");
        for (size_t i = 0; i < n; i++)
            free(batch[i]);
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(easy);
    return NULL;
}

int
dp_tracer_start(const char *endpoint, const char *service_name, size_t queue_max, int flush_ms)
{
    size_t len = strlen(endpoint);
    while (len > 0 && endpoint[len - 1] == '/')
        len--;
    const char *suffix = len >= 10 && memcmp(endpoint + len - 10, "/v1/traces", 10) == 0 ? "" : "/v1/traces";
    if ((t.url = malloc(len + strlen(suffix) + 1)) == NULL || (t.service = strdup(service_name)) == NULL ||
        (t.ring = calloc(queue_max, sizeof(*t.ring))) == NULL)
        return -1;
    memcpy(t.url, endpoint, len);
    strcpy(t.url + len, suffix);
    t.cap = queue_max;
    t.flush_ms = flush_ms;
    if (pthread_create(&t.thread, NULL, exporter_main, NULL) != 0)
        return -1;
    t.enabled = 1;
    tg_info("dp.otlp.started", "url=%s service=%s queue_max=%zu flush_ms=%d", t.url, t.service, queue_max, flush_ms);
    return 0;
}

void
dp_tracer_stop(int deadline_ms)
{
    if (t.enabled) {
        pthread_mutex_lock(&t.lock);
        t.stopping = 1;
        t.deadline_ns = tg_mono_ns() + (uint64_t)deadline_ms * 1000000;
        pthread_cond_signal(&t.cond);
        pthread_mutex_unlock(&t.lock);
        pthread_join(t.thread, NULL);
        t.enabled = 0;
    }
    while (t.count > 0) { /* only when nothing could be sent: the thread left them */
        free(t.ring[t.head]);
        t.head = (t.head + 1) % t.cap;
        t.count--;
    }
    free(t.ring);
    free(t.url);
    free(t.service);
    t.ring = NULL;
    t.url = t.service = NULL;
}
