/*
 * tollgate-mock-provider: a small, fast stand-in for an OpenAI-compatible provider, used by the
 * end-to-end tests, the benchmarks and the local `make up` demo.
 *
 * Design: h2o 2.2.5 on libuv. N worker threads, each with its own uv loop, h2o context and
 * SO_REUSEPORT listening socket (libuv 1.44 has no reuseport flag, so the sockets are made by hand
 * and handed over with uv_tcp_open). One catch-all handler dispatches on method and path. Replies
 * are deterministic: the prompt token count is a formula over the message text, the completion is
 * a fixed word list, and per-request behaviour (errors, delays, truncation) is chosen by
 * `[mock:name=value]` directives in the last user message or by `x-mock-<name>` headers.
 * README.md in this folder is the contract the tests rely on.
 *
 * Invariants: every reply goes through a generator allocated on req->pool; at most one h2o_send
 * is outstanding and the next one is issued only from `proceed` (or a timer armed there); the
 * bytes handed to h2o live in the generator's buffer, which is rewritten only after `proceed`.
 * The uv timer is malloc'd apart from the pool because its memory must outlive uv_close.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <h2o.h>
#include <jansson.h>
#include <uv.h>

#include "mock.h"
#include "tollgate/env.h"
#include "tollgate/http_status.h"

#define MAX_BODY_SIZE  (16u << 20)
#define MAX_THREADS    64
#define DEFAULT_TOKENS MOCK_DEFAULT_TOKENS
#define MAX_TOKENS     MOCK_MAX_TOKENS
#define MAX_DELAY_MS   MOCK_MAX_DELAY_MS
#define BATCH_BYTES    16384
#define EVENT_SLACK    768 /* upper bound of one SSE event, not counting the shared prefix */

/* The reply: token i is WORDS[i % 16]; each token is one SSE content chunk. */
static const char *const WORDS[16] = {
    "Hello", " from",          " the", " mock",    " provider", ".",    " This",       " reply",
    " is",   " deterministic", " for", " gateway", " tests",    " and", " benchmarks", ".",
};

/* ---------------------------------------------------------------- global state */

static struct {
    const char *api_key;
    h2o_globalconf_t h2o;
} conf;

static uint64_t next_request_id;      /* atomic */
static uint64_t accepted_connections; /* atomic: every TCP connection accepted, for pooling tests */

/* What GET /__mock/served reports: atomics, so every worker thread adds without a lock. */
static struct {
    uint64_t requests, input, output, cached;
} served;

/* What GET /__mock/last and /__mock/stats report. Mock-grade: one mutex for everything. */
static struct {
    pthread_mutex_t mu;
    uint64_t requests;
    uint64_t cancelled; /* chat replies whose client went away before the reply ended */
    /* POST /__mock/fail: the next fail_count chat requests for fail_model ("" any) get fail_status
     * (0: the connection is closed without an answer) */
    char fail_model[128];
    int fail_status;
    int64_t fail_count;
    json_t *last; /* {"method","path","headers"} */
    json_t *last_body;
} rec = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ---------------------------------------------------------------- small helpers */

struct sb {
    char *p;
    size_t len, cap;
};

static void
sb_add(struct sb *b, const char *s, size_t n)
{
    if (n > b->cap - b->len)
        abort(); /* capacities are computed up front; overflow is a bug */
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

#define sb_lit(b, s) sb_add((b), (s), sizeof(s) - 1)

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
sb_printf(struct sb *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len)
        abort();
    b->len += n;
}

/* JSON string body of s (no quotes); dst must hold 6 * n bytes. */
static size_t
json_escape(char *dst, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *d = dst;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            *d++ = '\\';
            *d++ = c;
        } else if (c < 0x20) {
            memcpy(d, "\\u00", 4);
            d[4] = hex[c >> 4];
            d[5] = hex[c & 15];
            d += 6;
        } else {
            *d++ = c;
        }
    }
    return d - dst;
}

static void
add_header(h2o_req_t *req, const char *name, size_t name_len, const char *value, size_t value_len)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, name_len, 1, NULL, value, value_len);
}

/* Sends a complete body with the given status; body must live in req->pool (or be static). */
static void
send_body(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = tg_http_reason(status);
    req->res.content_length = len;
    add_header(req, H2O_STRLIT("content-type"), content_type, strlen(content_type));
    h2o_send_inline(req, body, len);
}

/* An OpenAI error body: {"error":{"message","type","param","code"}}; param and code may be NULL. */
static void
send_error(h2o_req_t *req, int status, const char *type, const char *code, const char *param, const char *message)
{
    char tmp[1024];
    struct sb b = {tmp, 0, sizeof(tmp)};
    sb_printf(&b, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":", message, type);
    if (param != NULL)
        sb_printf(&b, "\"%s\"", param);
    else
        sb_lit(&b, "null");
    sb_lit(&b, ",\"code\":");
    if (code != NULL)
        sb_printf(&b, "\"%s\"", code);
    else
        sb_lit(&b, "null");
    sb_lit(&b, "}}");
    if (status == 429)
        add_header(req, H2O_STRLIT("retry-after"), H2O_STRLIT("1"));
    char *body = h2o_mem_alloc_pool(&req->pool, b.len);
    memcpy(body, b.p, b.len);
    send_body(req, status, "application/json", body, b.len);
}

/* The error a `status=CODE` directive produces, shaped like the real provider's. */
static void
send_status_error(h2o_req_t *req, int status)
{
    switch (status) {
    case 400:
        send_error(req, 400, "invalid_request_error", NULL, NULL, "mock bad request");
        break;
    case 401:
        send_error(req, 401, "invalid_request_error", "invalid_api_key", NULL, "Incorrect API key provided");
        break;
    case 403:
        send_error(req, 403, "invalid_request_error", "unsupported_country_region_territory", NULL, "mock forbidden");
        break;
    case 404:
        send_error(req, 404, "invalid_request_error", "model_not_found", "model", "The model does not exist");
        break;
    case 429:
        send_error(req, 429, "requests", "rate_limit_exceeded", NULL, "Rate limit reached (mock)");
        break;
    case 500:
        send_error(req, 500, "server_error", "server_error", NULL, "The server had an error (mock)");
        break;
    case 502:
        send_error(req, 502, "server_error", "bad_gateway", NULL, "Bad gateway (mock)");
        break;
    case 503:
        send_error(req, 503, "server_error", "overloaded", NULL, "The engine is currently overloaded (mock)");
        break;
    case 504:
        send_error(req, 504, "server_error", "timeout", NULL, "Gateway timeout (mock)");
        break;
    default:
        send_error(req, status, status < 500 ? "invalid_request_error" : "server_error", NULL, NULL, "mock error");
        break;
    }
}

/* ---------------------------------------------------------------- directives */

static const struct {
    const char *name;
    size_t off;
    int64_t max;
} DIRECTIVES[] = {
    {"tokens", offsetof(struct mock_directives, tokens), MAX_TOKENS},
    {"cached", offsetof(struct mock_directives, cached), INT64_C(1) << 40},
    {"status", offsetof(struct mock_directives, status), 599},
    {"delay_ms", offsetof(struct mock_directives, delay_ms), MAX_DELAY_MS},
    {"chunk_delay_ms", offsetof(struct mock_directives, chunk_delay_ms), MAX_DELAY_MS},
    {"reset_after", offsetof(struct mock_directives, reset_after), MAX_TOKENS},
    {"error_after", offsetof(struct mock_directives, error_after), MAX_TOKENS},
    {"tool_calls", offsetof(struct mock_directives, tool_calls), 8},
};

void
mock_directives_init(struct mock_directives *d)
{
    *d = (struct mock_directives){-1, -1, -1, -1, -1, -1, -1, -1};
}

/* name/value as found in text or a header; '-' in the name counts as '_'. Unknown names are ignored. */
static void
directive_set(struct mock_directives *d, const char *name, size_t name_len, const char *value, size_t value_len)
{
    int64_t v = 0;
    if (value_len == 0 || value_len > 12)
        return;
    for (size_t i = 0; i < value_len; i++) {
        if (value[i] < '0' || value[i] > '9')
            return;
        v = v * 10 + (value[i] - '0');
    }
    for (size_t i = 0; i < sizeof(DIRECTIVES) / sizeof(DIRECTIVES[0]); i++) {
        const char *n = DIRECTIVES[i].name;
        if (strlen(n) != name_len)
            continue;
        size_t j = 0;
        while (j < name_len && (name[j] == n[j] || (name[j] == '-' && n[j] == '_') || (name[j] | 0x20) == n[j]))
            j++;
        if (j != name_len)
            continue;
        *(int64_t *)((char *)d + DIRECTIVES[i].off) = v > DIRECTIVES[i].max ? DIRECTIVES[i].max : v;
        return;
    }
}

void
mock_directives_scan(struct mock_directives *d, const char *s, size_t n)
{
    const char *end = s + n, *p = s;
    while ((p = memmem(p, end - p, "[mock:", 6)) != NULL) {
        p += 6;
        const char *close = memchr(p, ']', end - p);
        if (close == NULL)
            return;
        while (p < close) {
            while (p < close && (*p == ',' || *p == ' '))
                p++;
            const char *name = p;
            while (p < close && *p != '=' && *p != ',' && *p != ' ')
                p++;
            if (p >= close || *p != '=')
                continue;
            size_t name_len = p - name;
            const char *value = ++p;
            while (p < close && *p != ',' && *p != ' ')
                p++;
            directive_set(d, name, name_len, value, p - value);
        }
        p = close + 1;
    }
}

/* ---------------------------------------------------------------- request recording */

void
mock_record(h2o_req_t *req, json_t *body)
{
    json_t *headers = json_object();
    if (req->authority.base != NULL) /* h2o moves Host out of the header list */
        json_object_set_new(headers, "host", json_stringn(req->authority.base, req->authority.len));
    for (size_t i = 0; i != req->headers.size; i++) {
        const h2o_header_t *h = req->headers.entries + i;
        char name[256];
        size_t nlen = h->name->len < sizeof(name) - 1 ? h->name->len : sizeof(name) - 1;
        for (size_t j = 0; j < nlen; j++)
            name[j] = h2o_tolower(h->name->base[j]);
        name[nlen] = '\0';
        json_t *prev = json_object_get(headers, name);
        if (prev != NULL && json_is_string(prev)) { /* repeated header: join like a proxy would */
            size_t plen = json_string_length(prev), vlen = h->value.len;
            char *joined = malloc(plen + 2 + vlen);
            memcpy(joined, json_string_value(prev), plen);
            memcpy(joined + plen, ", ", 2);
            memcpy(joined + plen + 2, h->value.base, vlen);
            json_object_set_new(headers, name, json_stringn(joined, plen + 2 + vlen));
            free(joined);
        } else {
            json_object_set_new(headers, name, json_stringn(h->value.base, h->value.len));
        }
    }
    json_t *meta = json_pack("{s:s%, s:s%, s:o}", "method", req->method.base, req->method.len, "path", req->path.base,
                             req->path.len, "headers", headers);
    if (body != NULL)
        json_incref(body);
    else if (req->entity.base != NULL)
        body = json_stringn(req->entity.base, req->entity.len); /* NULL if not UTF-8 */

    pthread_mutex_lock(&rec.mu);
    rec.requests++;
    json_t *old_meta = rec.last, *old_body = rec.last_body;
    rec.last = meta;
    rec.last_body = body;
    pthread_mutex_unlock(&rec.mu);
    json_decref(old_meta);
    json_decref(old_body);
}

static void
send_json_dump(h2o_req_t *req, json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT);
    size_t len = strlen(s);
    char *body = h2o_mem_alloc_pool(&req->pool, len);
    memcpy(body, s, len);
    free(s);
    send_body(req, 200, "application/json", body, len);
}

static void
on_mock_last(h2o_req_t *req)
{
    pthread_mutex_lock(&rec.mu);
    json_t *out;
    if (rec.last == NULL) {
        out = json_object();
    } else {
        out = json_deep_copy(rec.last);
        json_object_set(out, "body", rec.last_body != NULL ? rec.last_body : json_null());
    }
    pthread_mutex_unlock(&rec.mu);
    send_json_dump(req, out);
    json_decref(out);
}

static void
on_mock_stats(h2o_req_t *req)
{
    pthread_mutex_lock(&rec.mu);
    json_t *out =
        json_pack("{s:I,s:I,s:I}", "requests", (json_int_t)rec.requests, "cancelled", (json_int_t)rec.cancelled,
                  "connections", (json_int_t)__atomic_load_n(&accepted_connections, __ATOMIC_RELAXED));
    pthread_mutex_unlock(&rec.mu);
    send_json_dump(req, out);
    json_decref(out);
}

void
mock_served_add(int64_t input, int64_t output, int64_t cached)
{
    __atomic_add_fetch(&served.requests, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&served.input, (uint64_t)input, __ATOMIC_RELAXED);
    __atomic_add_fetch(&served.output, (uint64_t)output, __ATOMIC_RELAXED);
    __atomic_add_fetch(&served.cached, (uint64_t)cached, __ATOMIC_RELAXED);
}

static void
served_reset(void)
{
    __atomic_store_n(&served.requests, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&served.input, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&served.output, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&served.cached, 0, __ATOMIC_RELAXED);
}

static void
on_mock_served(h2o_req_t *req)
{
    /* four separate loads: a reply counted meanwhile may show in some totals only, so read them when the
     * traffic has stopped (the tests do) */
    json_t *out =
        json_pack("{s:I, s:I, s:I, s:I}", "requests", (json_int_t)__atomic_load_n(&served.requests, __ATOMIC_RELAXED),
                  "input_tokens", (json_int_t)__atomic_load_n(&served.input, __ATOMIC_RELAXED), "output_tokens",
                  (json_int_t)__atomic_load_n(&served.output, __ATOMIC_RELAXED), "cached_tokens",
                  (json_int_t)__atomic_load_n(&served.cached, __ATOMIC_RELAXED));
    send_json_dump(req, out);
    json_decref(out);
}

/* POST /__mock/fail {"status": S, "count": N, "model": M?}: a failure plan that tells targets apart
 * (directives in the prompt reach every target of a request alike). */
static void
on_mock_fail(h2o_req_t *req)
{
    json_t *root = req->entity.base != NULL ? json_loadb(req->entity.base, req->entity.len, 0, NULL) : NULL;
    int64_t status = mock_int_field(root, "status"), n = mock_int_field(root, "count");
    const char *model = json_string_value(json_object_get(root, "model"));
    if ((status != 0 && status < 100) || status > 599 || n < 0 ||
        (model != NULL && strlen(model) >= sizeof(rec.fail_model))) {
        json_decref(root);
        send_error(req, 400, "invalid_request_error", NULL, NULL, "want {\"status\",\"count\",\"model\"?} (mock)");
        return;
    }
    pthread_mutex_lock(&rec.mu);
    rec.fail_status = (int)status;
    rec.fail_count = n;
    snprintf(rec.fail_model, sizeof(rec.fail_model), "%s", model != NULL ? model : "");
    pthread_mutex_unlock(&rec.mu);
    json_decref(root);
    send_body(req, 200, "application/json", H2O_STRLIT("{}"));
}

/* The planned failure status for a request of this model (0: drop the connection), or -1. */
static int
take_planned_failure(const char *model)
{
    int status = -1;
    pthread_mutex_lock(&rec.mu);
    if (rec.fail_count > 0 && (rec.fail_model[0] == '\0' || strcmp(rec.fail_model, model) == 0)) {
        rec.fail_count--;
        status = rec.fail_status;
    }
    pthread_mutex_unlock(&rec.mu);
    return status;
}

static void
on_mock_reset(h2o_req_t *req)
{
    served_reset();
    pthread_mutex_lock(&rec.mu);
    json_t *old_meta = rec.last, *old_body = rec.last_body;
    rec.requests = 0;
    rec.cancelled = 0;
    rec.fail_count = 0;
    rec.last = rec.last_body = NULL;
    pthread_mutex_unlock(&rec.mu);
    json_decref(old_meta);
    json_decref(old_body);
    send_body(req, 200, "application/json", H2O_STRLIT("{}"));
}

/* ---------------------------------------------------------------- shared with the wire-format modules */

void
mock_directives_from_headers(struct mock_directives *d, h2o_req_t *req)
{
    for (size_t h = 0; h != req->headers.size; h++) {
        const h2o_header_t *hd = req->headers.entries + h;
        if (hd->name->len > 7 && h2o_lcstris(hd->name->base, 7, H2O_STRLIT("x-mock-")))
            directive_set(d, hd->name->base + 7, hd->name->len - 7, hd->value.base, hd->value.len);
    }
}

const char *
mock_word(size_t i)
{
    return WORDS[i % 16];
}

const char *
mock_tool_args(size_t i)
{
    static const char *const ARGS[] = {
        "{\"location\":\"Paris\",\"unit\":\"celsius\"}",
        "{\"location\":\"Tokyo\",\"unit\":\"celsius\"}",
    };
    return ARGS[i % 2];
}

uint32_t
mock_embedding_hash(const char *text, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)text[i]) * 16777619u;
    return h;
}

double
mock_embedding_value(uint32_t h, int64_t j)
{
    return (double)((int64_t)((uint32_t)(h + (uint32_t)j * 40503u) % 2049u) - 1024) / 1024.0;
}

json_t *
mock_embedding_json(const char *text, size_t len, int64_t dims)
{
    uint32_t h = mock_embedding_hash(text, len);
    json_t *v = json_array();
    for (int64_t j = 0; j < dims; j++)
        json_array_append_new(v, json_real(mock_embedding_value(h, j)));
    return v;
}

uint64_t
mock_next_seq(void)
{
    return __atomic_add_fetch(&next_request_id, 1, __ATOMIC_RELAXED);
}

const char *
mock_api_key(void)
{
    return conf.api_key;
}

h2o_iovec_t
mock_header(h2o_req_t *req, const char *lc_name)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, lc_name, strlen(lc_name), -1);
    return i >= 0 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
}

void
mock_add_header(h2o_req_t *req, const char *name, const char *value)
{
    add_header(req, name, strlen(name), value, strlen(value));
}

void
mock_send_body(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len)
{
    send_body(req, status, content_type, body, len);
}

void
mock_send_json(h2o_req_t *req, int status, json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT);
    size_t len = strlen(s);
    char *body = h2o_mem_alloc_pool(&req->pool, len);
    memcpy(body, s, len);
    free(s);
    send_body(req, status, "application/json", body, len);
}

/* ---------------------------------------------------------------- the reply generator */

enum { G_PENDING, G_STREAMING, G_ABORT, G_DONE };

struct mock_timer {
    uv_timer_t handle;    /* first: the close callback frees the whole struct */
    struct mock_gen *gen; /* NULL once the generator is disposed */
};

struct mock_gen {
    h2o_generator_t super;
    h2o_req_t *req;
    struct mock_timer *timer;
    int phase;
    int stream, include_usage, length_cut;
    int64_t status, chunk_delay_ms, reset_after, error_after; /* -1: unset */
    uint64_t respond_at;                                      /* delay_ms: loop time of the answer */
    uint32_t ntokens, next;                                   /* next: index of the next stream event, see send_next */
    uint64_t prompt_tokens, cached_tokens;
    char id[48];
    int64_t created;
    char *model; /* JSON-escaped */
    size_t model_len;
    struct sb prefix; /* `data: {"id":…,"choices":[`, shared by every chunk */
    struct sb buf;    /* what h2o is sending now; rewritten only after proceed */
};

static void on_timer(uv_timer_t *t);

static void
on_timer_closed(uv_handle_t *h)
{
    free(h); /* struct mock_timer starts with its handle */
}

static void
arm_timer(struct mock_gen *g, uint64_t ms)
{
    if (g->timer == NULL) {
        g->timer = malloc(sizeof(*g->timer));
        uv_timer_init(g->req->conn->ctx->loop, &g->timer->handle);
        g->timer->gen = g;
    }
    uv_timer_start(&g->timer->handle, on_timer, ms, 0);
}

/* The client (the gateway) went away while the reply was pending or streaming. */
static void
count_cancel(struct mock_gen *g)
{
    if (g->phase != G_PENDING && g->phase != G_STREAMING)
        return;
    g->phase = G_DONE;
    pthread_mutex_lock(&rec.mu);
    rec.cancelled++;
    pthread_mutex_unlock(&rec.mu);
}

static void
on_gen_dispose(void *p)
{
    struct mock_gen *g = p;
    count_cancel(g);
    if (g->timer != NULL) {
        g->timer->gen = NULL;
        uv_timer_stop(&g->timer->handle);
        uv_close((uv_handle_t *)&g->timer->handle, on_timer_closed);
    }
}

static void
on_gen_stop(h2o_generator_t *self, h2o_req_t *req)
{
    struct mock_gen *g = (struct mock_gen *)self;
    count_cancel(g);
    g->phase = G_DONE;
    if (g->timer != NULL)
        uv_timer_stop(&g->timer->handle);
}

static void
add_usage(struct sb *b, const struct mock_gen *g)
{
    sb_printf(b,
              "{\"prompt_tokens\":%" PRIu64 ",\"completion_tokens\":%" PRIu32 ",\"total_tokens\":%" PRIu64
              ",\"prompt_tokens_details\":{\"cached_tokens\":%" PRIu64 ",\"audio_tokens\":0},"
              "\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,"
              "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}",
              g->prompt_tokens, g->ntokens, g->prompt_tokens + g->ntokens, g->cached_tokens);
}

static const char *
finish_reason(const struct mock_gen *g)
{
    return g->length_cut ? "length" : "stop";
}

/* Appends one chunk event: `prefix` + choice (or nothing) + `]` + usage tail. */
static void
add_chunk(struct mock_gen *g, const char *choice, size_t choice_len, const char *fmt_arg)
{
    sb_add(&g->buf, g->prefix.p, g->prefix.len);
    sb_add(&g->buf, choice, choice_len);
    if (fmt_arg != NULL)
        sb_printf(&g->buf, "%s\"}", fmt_arg);
    sb_lit(&g->buf, "]");
    if (g->include_usage)
        sb_lit(&g->buf, ",\"usage\":null");
    sb_lit(&g->buf, "}\n\n");
}

/*
 * Stream events by index i: 0 the role chunk; 1..N content token i-1; N+1 the closing chunk;
 * N+2 the usage chunk when include_usage; then `data: [DONE]`. Without chunk_delay_ms several
 * events share one h2o_send (SSE framing is unchanged).
 */
static void
send_next(struct mock_gen *g)
{
    h2o_send_state_t state = H2O_SEND_STATE_IN_PROGRESS;
    uint32_t n = g->ntokens;
    g->buf.len = 0;
    do {
        uint32_t i = g->next;
        if (i >= 1 && g->reset_after >= 0 && g->reset_after <= n && i == g->reset_after + 1) {
            g->phase = G_ABORT; /* flush what is buffered, then abort from proceed */
            if (g->buf.len == 0) {
                g->phase = G_DONE;
                h2o_send(g->req, NULL, 0, H2O_SEND_STATE_ERROR);
                return;
            }
            break;
        }
        if (i >= 1 && g->error_after >= 0 && g->error_after <= n && i == g->error_after + 1) {
            sb_lit(&g->buf, "data: {\"error\":{\"message\":\"mock mid-stream failure\",\"type\":\"server_error\","
                            "\"param\":null,\"code\":\"server_error\"}}\n\n");
            state = H2O_SEND_STATE_FINAL;
            break;
        }
        g->next++;
        if (i == 0) {
            add_chunk(g,
                      H2O_STRLIT("{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
                                 "\"logprobs\":null,\"finish_reason\":null}"),
                      NULL);
        } else if (i <= n) {
            sb_add(&g->buf, g->prefix.p, g->prefix.len);
            sb_printf(&g->buf, "{\"index\":0,\"delta\":{\"content\":\"%s\"},\"logprobs\":null,\"finish_reason\":null}]",
                      WORDS[(i - 1) % 16]);
            if (g->include_usage)
                sb_lit(&g->buf, ",\"usage\":null");
            sb_lit(&g->buf, "}\n\n");
        } else if (i == n + 1) {
            add_chunk(g, H2O_STRLIT("{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\""),
                      finish_reason(g));
        } else if (i == n + 2 && g->include_usage) {
            sb_add(&g->buf, g->prefix.p, g->prefix.len);
            sb_lit(&g->buf, "],\"usage\":");
            add_usage(&g->buf, g);
            sb_lit(&g->buf, "}\n\n");
            /* nothing can cut the stream after this event: it goes out with this h2o_send */
            mock_served_add((int64_t)g->prompt_tokens, g->ntokens, (int64_t)g->cached_tokens);
        } else {
            sb_lit(&g->buf, "data: [DONE]\n\n");
            state = H2O_SEND_STATE_FINAL;
        }
    } while (state == H2O_SEND_STATE_IN_PROGRESS && g->chunk_delay_ms <= 0 &&
             g->buf.cap - g->buf.len >= g->prefix.len + EVENT_SLACK);

    if (state == H2O_SEND_STATE_FINAL)
        g->phase = G_DONE;
    h2o_iovec_t vec = h2o_iovec_init(g->buf.p, g->buf.len);
    h2o_send(g->req, &vec, 1, state); /* g may be gone after this */
}

static void
on_gen_proceed(h2o_generator_t *self, h2o_req_t *req)
{
    struct mock_gen *g = (struct mock_gen *)self;
    if (g->phase == G_ABORT) {
        g->phase = G_DONE;
        h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
    } else if (g->phase == G_STREAMING) {
        if (g->chunk_delay_ms > 0)
            arm_timer(g, g->chunk_delay_ms);
        else
            send_next(g);
    }
}

static void
send_completion(struct mock_gen *g)
{
    h2o_req_t *req = g->req;
    size_t content_len = 0;
    for (uint32_t i = 0; i < g->ntokens; i++)
        content_len += strlen(WORDS[i % 16]);
    struct sb b = {.cap = g->model_len + content_len + 1024};
    b.p = h2o_mem_alloc_pool(&req->pool, b.cap);
    sb_printf(&b, "{\"id\":\"%s\",\"object\":\"chat.completion\",\"created\":%" PRId64 ",\"model\":\"", g->id,
              g->created);
    sb_add(&b, g->model, g->model_len);
    sb_lit(&b, "\",\"system_fingerprint\":\"fp_mock\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
               "\"content\":\"");
    for (uint32_t i = 0; i < g->ntokens; i++)
        sb_add(&b, WORDS[i % 16], strlen(WORDS[i % 16]));
    sb_printf(&b, "\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"%s\"}],\"usage\":", finish_reason(g));
    add_usage(&b, g);
    sb_lit(&b, "}");

    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = b.len;
    add_header(req, H2O_STRLIT("content-type"), H2O_STRLIT("application/json"));
    h2o_start_response(req, &g->super);
    h2o_iovec_t vec = h2o_iovec_init(b.p, b.len);
    if (g->reset_after >= 0) { /* half the body, then abort: the client sees a short transfer */
        vec.len /= 2;
        g->phase = G_ABORT;
        h2o_send(req, &vec, 1, H2O_SEND_STATE_IN_PROGRESS);
    } else {
        g->phase = G_DONE;
        mock_served_add((int64_t)g->prompt_tokens, g->ntokens, (int64_t)g->cached_tokens);
        h2o_send(req, &vec, 1, H2O_SEND_STATE_FINAL);
    }
}

/* Starts the response, after delay_ms if any. */
static void
respond(struct mock_gen *g)
{
    h2o_req_t *req = g->req;
    if (g->status >= 100 && g->status != 200) {
        g->phase = G_DONE;
        send_status_error(req, (int)g->status);
        return;
    }
    if (!g->stream) {
        send_completion(g);
        return;
    }
    g->prefix.cap = g->model_len + 256;
    g->prefix.p = h2o_mem_alloc_pool(&req->pool, g->prefix.cap);
    sb_printf(&g->prefix,
              "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%" PRId64 ",\"model\":\"", g->id,
              g->created);
    sb_add(&g->prefix, g->model, g->model_len);
    sb_lit(&g->prefix, "\",\"system_fingerprint\":\"fp_mock\",\"choices\":[");
    g->buf.cap = BATCH_BYTES + 2 * (g->prefix.len + EVENT_SLACK);
    g->buf.p = h2o_mem_alloc_pool(&req->pool, g->buf.cap);

    req->res.status = 200;
    req->res.reason = "OK";
    add_header(req, H2O_STRLIT("content-type"), H2O_STRLIT("text/event-stream"));
    add_header(req, H2O_STRLIT("cache-control"), H2O_STRLIT("no-cache"));
    g->phase = G_STREAMING;
    h2o_start_response(req, &g->super);
    send_next(g);
}

/* Whether the gateway closed the connection. h2o does not read from an HTTP/1 connection while a
 * request is being handled, so a close during delay_ms would only show when the answer is written: a
 * peek finds the end of stream (or a reset) at once. */
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

/* Closes the connection under the request before any byte of an answer: the peer sees the end of the
 * stream (a keep-alive connection the server dropped as the request went out). The answer sent after it
 * goes nowhere, and h2o closes its side. */
static void
drop_connection(h2o_req_t *req)
{
    if (req->version < 0x200 && req->conn->callbacks->get_socket != NULL) {
        h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
        int fd = sock != NULL ? h2o_socket_get_fd(sock) : -1;
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
    }
    send_body(req, 503, "text/plain", H2O_STRLIT("dropped\n"));
}

/* delay_ms is waited out in slices, looking for a gateway that cancelled the call in between. */
#define DELAY_SLICE_MS 50

static void
wait_delay(struct mock_gen *g)
{
    uint64_t now = uv_now(g->req->conn->ctx->loop);
    if (now >= g->respond_at) {
        respond(g);
        return;
    }
    uint64_t left = g->respond_at - now;
    arm_timer(g, left < DELAY_SLICE_MS ? left : DELAY_SLICE_MS);
}

static void
on_timer(uv_timer_t *t)
{
    struct mock_gen *g = ((struct mock_timer *)t)->gen;
    if (g == NULL)
        return;
    if (g->phase == G_PENDING) {
        if (client_left(g->req)) {
            count_cancel(g); /* G_DONE: the answer below goes nowhere, h2o closes the connection */
            g->req->res.status = 499;
            g->req->res.reason = "Client Closed Request";
            h2o_send_inline(g->req, "", 0);
            return;
        }
        wait_delay(g);
    } else if (g->phase == G_STREAMING) {
        send_next(g);
    }
}

/* ---------------------------------------------------------------- request handlers */

/* Bytes of a message content's text: a string, or the "text" of each {"type":"text"} part. */
size_t
mock_content_text(json_t *content, struct mock_directives *scan_into)
{
    if (json_is_string(content)) {
        if (scan_into != NULL)
            mock_directives_scan(scan_into, json_string_value(content), json_string_length(content));
        return json_string_length(content);
    }
    size_t total = 0, i;
    json_t *part;
    if (!json_is_array(content))
        return 0;
    json_array_foreach(content, i, part)
    {
        const char *type = json_string_value(json_object_get(part, "type"));
        json_t *text = json_object_get(part, "text");
        if (type == NULL || strcmp(type, "text") != 0 || !json_is_string(text))
            continue;
        if (scan_into != NULL)
            mock_directives_scan(scan_into, json_string_value(text), json_string_length(text));
        total += json_string_length(text);
    }
    return total;
}

static int
check_auth(h2o_req_t *req)
{
    if (conf.api_key == NULL)
        return 0;
    ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    size_t klen = strlen(conf.api_key);
    if (at >= 0) {
        h2o_iovec_t v = req->headers.entries[at].value;
        if (v.len == 7 + klen && memcmp(v.base, "Bearer ", 7) == 0 && memcmp(v.base + 7, conf.api_key, klen) == 0)
            return 0;
    }
    send_error(req, 401, "invalid_request_error", "invalid_api_key", NULL, "Incorrect API key provided");
    return -1;
}

int64_t
mock_int_field(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? json_integer_value(v) : -1;
}

static void
on_chat(h2o_req_t *req)
{
    uint64_t seq = mock_next_seq();
    char rid[40];
    int rid_len = snprintf(rid, sizeof(rid), "req_mock_%" PRIu64, seq);
    add_header(req, H2O_STRLIT("x-request-id"), h2o_strdup(&req->pool, rid, rid_len).base, rid_len);

    json_t *root = req->entity.base != NULL ? json_loadb(req->entity.base, req->entity.len, 0, NULL) : NULL;
    mock_record(req, root);
    if (check_auth(req) != 0)
        goto done;
    if (!json_is_object(root)) {
        send_error(req, 400, "invalid_request_error", NULL, NULL,
                   "We could not parse the JSON body of your request. (mock)");
        goto done;
    }
    json_t *model = json_object_get(root, "model"), *messages = json_object_get(root, "messages");
    if (!json_is_string(model)) {
        send_error(req, 400, "invalid_request_error", NULL, "model", "you must provide a model parameter");
        goto done;
    }
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        send_error(req, 400, "invalid_request_error", NULL, "messages", "messages must be a non-empty array");
        goto done;
    }

    struct mock_directives d;
    mock_directives_init(&d);
    size_t last_user = SIZE_MAX, i;
    json_t *msg;
    json_array_foreach(messages, i, msg)
    {
        const char *role = json_string_value(json_object_get(msg, "role"));
        if (role != NULL && strcmp(role, "user") == 0)
            last_user = i;
    }
    uint64_t prompt_tokens = 0;
    json_array_foreach(messages, i, msg)
    {
        size_t bytes = mock_content_text(json_object_get(msg, "content"), i == last_user ? &d : NULL);
        prompt_tokens += 4 + (bytes + 3) / 4;
    }
    mock_directives_from_headers(&d, req);
    int planned = take_planned_failure(json_string_value(model));
    if (planned == 0) {
        drop_connection(req);
        goto done;
    }
    if (planned > 0)
        d.status = planned;
    if (d.tool_calls > 0 && (d.status < 100 || d.status == 200)) {
        /* tool calls are rare in tests: the event-list engine writes them, this fast generator only text */
        mock_openai_tool_reply(req, root, &d, seq);
        goto done;
    }

    struct mock_gen *g = h2o_mem_alloc_shared(&req->pool, sizeof(*g), on_gen_dispose);
    memset(g, 0, sizeof(*g));
    g->super.proceed = on_gen_proceed;
    g->super.stop = on_gen_stop;
    g->req = req;
    g->phase = G_PENDING;
    g->stream = json_is_true(json_object_get(root, "stream"));
    g->include_usage =
        g->stream && json_is_true(json_object_get(json_object_get(root, "stream_options"), "include_usage"));
    g->status = d.status;
    g->chunk_delay_ms = d.chunk_delay_ms;
    g->reset_after = d.reset_after;
    g->error_after = d.error_after;
    g->ntokens = d.tokens >= 0 ? (uint32_t)d.tokens : DEFAULT_TOKENS;
    int64_t max = mock_int_field(root, "max_completion_tokens");
    if (max < 0)
        max = mock_int_field(root, "max_tokens");
    if (max >= 0 && max < g->ntokens) {
        g->ntokens = (uint32_t)max;
        g->length_cut = 1;
    }
    g->prompt_tokens = prompt_tokens;
    g->cached_tokens = d.cached < 0 ? 0 : (uint64_t)d.cached < prompt_tokens ? (uint64_t)d.cached : prompt_tokens;
    snprintf(g->id, sizeof(g->id), "chatcmpl-mock-%" PRIu64, seq);
    g->created = (int64_t)time(NULL);
    g->model = h2o_mem_alloc_pool(&req->pool, 6 * json_string_length(model) + 1);
    g->model_len = json_escape(g->model, json_string_value(model), json_string_length(model));

    if (d.delay_ms > 0) {
        g->respond_at = uv_now(req->conn->ctx->loop) + (uint64_t)d.delay_ms;
        wait_delay(g);
    } else {
        respond(g);
    }
done:
    json_decref(root);
}

static void
on_models(h2o_req_t *req)
{
    static const char body[] =
        "{\"object\":\"list\",\"data\":["
        "{\"id\":\"mock-gpt\",\"object\":\"model\",\"created\":1700000000,\"owned_by\":\"tollgate-mock\"},"
        "{\"id\":\"mock-gpt-mini\",\"object\":\"model\",\"created\":1700000000,\"owned_by\":\"tollgate-mock\"}]}";
    if (check_auth(req) == 0)
        send_body(req, 200, "application/json", body, sizeof(body) - 1);
}

static int
ends_with(h2o_iovec_t s, const char *suffix, size_t n)
{
    return s.len >= n && memcmp(s.base + s.len - n, suffix, n) == 0;
}

static int
on_req(h2o_handler_t *self, h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized;
    int is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));

    /* the other providers' wire formats first: their paths never end in /chat/completions, except
     * Azure's and the quirky OpenAI-compatible ones, which that module tells apart by path or header */
    if (mock_openai_quirks_route(req) || mock_anthropic_route(req) || mock_gemini_route(req) ||
        mock_bedrock_route(req) || mock_cohere_route(req) || mock_ollama_route(req))
        return 0;
    if (ends_with(path, H2O_STRLIT("/chat/completions"))) {
        if (is_post)
            on_chat(req);
        else
            send_error(req, 405, "invalid_request_error", NULL, NULL, "method not allowed (use POST)");
    } else if (is_get && ends_with(path, H2O_STRLIT("/models"))) {
        on_models(req);
    } else if (is_get && h2o_memis(path.base, path.len, H2O_STRLIT("/__mock/last"))) {
        on_mock_last(req);
    } else if (is_get && h2o_memis(path.base, path.len, H2O_STRLIT("/__mock/stats"))) {
        on_mock_stats(req);
    } else if (is_post && h2o_memis(path.base, path.len, H2O_STRLIT("/__mock/reset"))) {
        on_mock_reset(req);
    } else if (is_get && h2o_memis(path.base, path.len, H2O_STRLIT("/__mock/served"))) {
        on_mock_served(req);
    } else if (is_post && h2o_memis(path.base, path.len, H2O_STRLIT("/__mock/served/reset"))) {
        served_reset();
        send_body(req, 200, "application/json", H2O_STRLIT("{}"));
    } else if (is_post && h2o_memis(path.base, path.len, H2O_STRLIT("/__mock/fail"))) {
        on_mock_fail(req);
    } else {
        send_error(req, 404, "invalid_request_error", "unknown_url", NULL, "Unknown request URL (mock)");
    }
    return 0;
}

/* ---------------------------------------------------------------- workers and main */

struct worker {
    pthread_t tid;
    int fd;
    uv_loop_t loop;
    uv_tcp_t listener;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
};

static void
on_conn_closed(uv_handle_t *h)
{
    free(h);
}

static void
on_accept(uv_stream_t *listener, int status)
{
    struct worker *w = listener->data;
    if (status != 0)
        return;
    uv_tcp_t *conn = malloc(sizeof(*conn));
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, on_conn_closed);
        return;
    }
    uv_tcp_nodelay(conn, 1);
    __atomic_add_fetch(&accepted_connections, 1, __ATOMIC_RELAXED);
    h2o_accept(&w->accept_ctx, h2o_uv_socket_create((uv_stream_t *)conn, on_conn_closed));
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    uv_loop_init(&w->loop);
    h2o_context_init(&w->ctx, &w->loop, &conf.h2o);
    w->accept_ctx.ctx = &w->ctx;
    w->accept_ctx.hosts = conf.h2o.hosts;
    uv_tcp_init(&w->loop, &w->listener);
    w->listener.data = w;
    int r;
    if ((r = uv_tcp_open(&w->listener, w->fd)) != 0 ||
        (r = uv_listen((uv_stream_t *)&w->listener, 1024, on_accept)) != 0) {
        fprintf(stderr, "mock-provider: listen: %s\n", uv_strerror(r));
        _exit(1);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int
open_listener(const struct sockaddr_storage *addr, socklen_t len)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1;
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        bind(fd, (const struct sockaddr *)addr, len) != 0 || listen(fd, 1024) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void
usage(void)
{
    fprintf(stderr, "usage: tollgate-mock-provider --listen HOST:PORT [--api-key KEY] [--threads N] "
                    "[--aws-secret-access-key SECRET] [--gcp-public-key PEM_FILE]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    const char *listen_at = NULL;
    int nthreads = 1;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--listen") == 0)
            listen_at = argv[++i];
        else if (strcmp(argv[i], "--api-key") == 0)
            conf.api_key = argv[++i];
        else if (strcmp(argv[i], "--aws-secret-access-key") == 0) /* Bedrock: verify SigV4 with it */
            mock_bedrock_set_secret(argv[++i]);
        else if (strcmp(argv[i], "--gcp-public-key") == 0) { /* Vertex: verify JWT assertions at /token */
            if (mock_gemini_load_public_key(argv[++i]) != 0) {
                fprintf(stderr, "mock-provider: cannot read a public key from %s\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--threads") == 0)
            nthreads = atoi(argv[++i]);
        else
            usage();
    }
    if (listen_at == NULL || nthreads < 1 || nthreads > MAX_THREADS)
        usage();

    struct sockaddr_storage addr;
    socklen_t addr_len;
    if (tg_parse_hostport(listen_at, &addr, &addr_len) != 0) {
        fprintf(stderr, "mock-provider: cannot parse --listen %s\n", listen_at);
        return 2;
    }

    /* Signals go to the main thread only, which waits for them; workers inherit the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    h2o_config_init(&conf.h2o);
    conf.h2o.max_request_entity_size = MAX_BODY_SIZE;
    h2o_hostconf_t *host = h2o_config_register_host(&conf.h2o, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
    h2o_create_handler(pathconf, sizeof(h2o_handler_t))->on_req = on_req;

    static struct worker workers[MAX_THREADS];
    for (int i = 0; i < nthreads; i++) {
        if ((workers[i].fd = open_listener(&addr, addr_len)) < 0) {
            fprintf(stderr, "mock-provider: cannot listen on %s: %s\n", listen_at, strerror(errno));
            return 1;
        }
        if (i == 0) /* port 0: the rest share the port the kernel picked */
            getsockname(workers[0].fd, (struct sockaddr *)&addr, &addr_len);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]);

    char host_str[INET6_ADDRSTRLEN];
    int port;
    if (addr.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&addr;
        inet_ntop(AF_INET6, &a->sin6_addr, host_str, sizeof(host_str));
        port = ntohs(a->sin6_port);
        fprintf(stderr, "listening on [%s]:%d\n", host_str, port);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&addr;
        inet_ntop(AF_INET, &a->sin_addr, host_str, sizeof(host_str));
        port = ntohs(a->sin_port);
        fprintf(stderr, "listening on %s:%d\n", host_str, port);
    }

    int sig;
    sigwait(&sigs, &sig);
    fprintf(stderr, "mock-provider: signal %d, exiting\n", sig);
    _exit(0); /* no graceful drain: a mock needs none, and the workers own their loops */
}
