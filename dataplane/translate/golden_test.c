/*
 * Golden tests of the whole translation matrix: every client dialect against every provider adapter,
 * non-streaming and streaming, with tools, from fixtures in tests/golden/.
 *
 *   tests/golden/requests/<dialect>.json      a client request in that dialect (system, turns, tools,
 *                                             tool results, an image, stop sequences, sampling)
 *   tests/golden/<kind>/response.json         a provider's non-stream answer (text, a tool call, usage)
 *   tests/golden/<kind>/stream.txt | .hex     a provider's stream as raw wire bytes (.hex for binary)
 *   tests/golden/<kind>/error-<status>.json   a provider's error body
 *   tests/golden/<kind>/expected/...          what the adapters must produce (reviewed by a person)
 *
 * For each provider kind and dialect: the upstream request (URL, headers, body) for the dialect's
 * request, streaming and not; the dialect's body for the provider's response; the dialect's stream for
 * the provider's stream; the dialect's error for each provider error. A missing expected file fails.
 * TOLLGATE_GOLDEN_UPDATE=1 rewrites the expected files instead (then review the diff).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>
#include "tollgate/sse.h"
#include "translate/bedrock/eventstream.h"
#include "translate/tx.h"

static const char *GOLDEN = "tests/golden";
static int update_mode;
static int failures;

static const struct {
    const char *kind;
    const char *settings;
} KINDS[] = {
    {"openai", "{}"},
    {"azure", "{\"api_version\":\"2024-10-21\"}"},
    {"mistral", "{}"},
    {"groq", "{}"},
    {"anthropic", "{}"},
    {"gemini", "{}"},
    {"vertex", "{\"project\":\"golden-project\",\"location\":\"us-central1\"}"},
    {"bedrock", "{\"region\":\"us-east-1\"}"},
    {"cohere", "{}"},
    {"ollama_native", "{}"},
};

static const char *DIALECTS[] = {"openai", "anthropic", "gemini"};

/* ---------------------------------------------------------------- files */

static char *
read_file(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    tg_buf_t b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        tg_buf_append(&b, chunk, n);
    fclose(f);
    tg_buf_append(&b, "", 1);
    *ret_len = b.len - 1;
    return b.base;
}

static void
write_file(const char *path, const char *data, size_t len)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s", path);
    for (char *p = strchr(dir + 1, '/'); p != NULL; p = strchr(p + 1, '/')) {
        *p = '\0';
        mkdir(dir, 0755); /* mkdir -p: each level, existing ones are fine */
        *p = '/';
    }
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(data, 1, len, f);
    fclose(f);
}

/* Compares (or, in update mode, writes) an expected file. */
static void
check(const char *kind, const char *name, const char *got, size_t len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s/expected/%s", GOLDEN, kind, name);
    if (update_mode) {
        write_file(path, got, len);
        return;
    }
    size_t elen;
    char *want = read_file(path, &elen);
    if (want == NULL) {
        fprintf(stderr, "golden: missing %s (run with TOLLGATE_GOLDEN_UPDATE=1, then review)\n", path);
        failures++;
        return;
    }
    if (elen != len || memcmp(want, got, len) != 0) {
        fprintf(stderr, "golden: %s differs\n--- want\n%s\n--- got\n%.*s\n", path, want, (int)len, got);
        failures++;
    }
    free(want);
}

/* JSON re-printed with sorted keys and indentation, so diffs are readable; other text unchanged. */
static void
append_pretty(tg_buf_t *out, const char *text, size_t len)
{
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY, NULL);
    if (v != NULL) {
        char *s = json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
        tg_buf_appends(out, s);
        free(s);
        json_decref(v);
    } else {
        tg_buf_append(out, text, len);
    }
    tg_buf_appends(out, "\n");
}

/* ---------------------------------------------------------------- requests */

static int
decode_client(const char *dialect_name, tx_dialect_t d, tg_arena_t *a, int stream, tx_request_t *r)
{
    char path[1024];
    size_t len;
    snprintf(path, sizeof(path), "%s/requests/%s.json", GOLDEN, dialect_name);
    char *body = read_file(path, &len);
    if (body == NULL)
        return -1;
    const tx_dialect_ops_t *ops = tx_dialect_get(d);
    tx_error_t err = {0};
    memset(r, 0, sizeof(*r));
    int rv = ops->decode_request == NULL ? -1 : ops->decode_request(TX_OP_CHAT, body, len, a, r, &err);
    if (rv == 0) {
        r->op = TX_OP_CHAT;
        r->dialect = d;
        if (d == TX_DIALECT_GEMINI)
            r->model = "golden-model"; /* the URL names it */
        r->stream = stream;
        r->request_id = "req_golden";
        r->now_unix = 1700000000;
    } else {
        fprintf(stderr, "golden: %s request does not decode: %s\n", dialect_name, err.message);
        failures++;
    }
    /* the body must outlive the request: the decoded strings may point into its tree */
    tg_arena_defer(a, free, body);
    return rv;
}

static void
test_requests(void **state)
{
    failures = 0;
    for (size_t k = 0; k < sizeof(KINDS) / sizeof(KINDS[0]); k++) {
        const tx_provider_ops_t *p = tx_provider_find(KINDS[k].kind);
        assert_non_null(p);
        if (p->encode_request == NULL)
            continue; /* an adapter not written yet has no expected files either */
        for (size_t d = 0; d < TX_DIALECT_COUNT; d++) {
            if (tx_dialect_get((tx_dialect_t)d)->decode_request == NULL)
                continue;
            for (int stream = 0; stream < 2; stream++) {
                tg_arena_t a = TG_ARENA_INIT;
                tx_request_t r;
                json_t *settings = json_loads(KINDS[k].settings, 0, NULL);
                tx_target_t t = {.kind = KINDS[k].kind,
                                 .base_url = "https://provider.example",
                                 .upstream_model = "upstream-model",
                                 .settings = settings};
                if (decode_client(DIALECTS[d], (tx_dialect_t)d, &a, stream, &r) == 0) {
                    tx_http_request_t h = {0};
                    tx_error_t err = {0};
                    tg_buf_t out = {0};
                    if (p->encode_request(&r, &t, &a, &h, &err) == 0) {
                        tg_buf_appendf(&out, "POST %s\n", h.url);
                        for (size_t i = 0; i < h.n_headers; i++)
                            tg_buf_appendf(&out, "%s\n", h.headers[i]);
                        tg_buf_appends(&out, "\n");
                        append_pretty(&out, h.body, h.body_len);
                    } else {
                        tg_buf_appendf(&out, "ERROR %d %s\n", tx_error_status(&err), err.message);
                    }
                    char name[128];
                    snprintf(name, sizeof(name), "request_from_%s%s.txt", DIALECTS[d], stream ? "_stream" : "");
                    check(KINDS[k].kind, name, out.base, out.len);
                    tg_buf_free(&out);
                }
                json_decref(settings);
                tg_arena_free(&a);
            }
        }
    }
    assert_int_equal(failures, 0);
}

/* ---------------------------------------------------------------- responses and errors */

static void
test_responses(void **state)
{
    failures = 0;
    for (size_t k = 0; k < sizeof(KINDS) / sizeof(KINDS[0]); k++) {
        const tx_provider_ops_t *p = tx_provider_find(KINDS[k].kind);
        char path[1024];
        size_t len;
        snprintf(path, sizeof(path), "%s/%s/response.json", GOLDEN, KINDS[k].kind);
        char *body = read_file(path, &len);
        if (body == NULL || p->decode_response == NULL) {
            free(body);
            continue;
        }
        for (size_t d = 0; d < TX_DIALECT_COUNT; d++) {
            const tx_dialect_ops_t *dl = tx_dialect_get((tx_dialect_t)d);
            if (dl->decode_request == NULL || dl->encode_response == NULL)
                continue;
            tg_arena_t a = TG_ARENA_INIT;
            tx_request_t r;
            tx_response_t resp = {0};
            tx_error_t err = {0};
            tg_buf_t out = {0}, enc = {0};
            if (decode_client(DIALECTS[d], (tx_dialect_t)d, &a, 0, &r) == 0) {
                if (p->decode_response(&r, body, len, &a, &resp, &err) == 0 &&
                    dl->encode_response(&r, &resp, &a, &enc) == 0)
                    append_pretty(&out, enc.base, enc.len);
                else
                    tg_buf_appendf(&out, "ERROR %d %s\n", tx_error_status(&err), err.message);
                char name[128];
                snprintf(name, sizeof(name), "response_to_%s.json", DIALECTS[d]);
                check(KINDS[k].kind, name, out.base, out.len);
            }
            tg_buf_free(&out);
            tg_buf_free(&enc);
            tg_arena_free(&a);
        }
        free(body);
    }
    assert_int_equal(failures, 0);
}

static void
test_errors(void **state)
{
    failures = 0;
    static const int statuses[] = {400, 401, 403, 404, 413, 422, 429, 500, 502, 503, 504, 529};
    for (size_t k = 0; k < sizeof(KINDS) / sizeof(KINDS[0]); k++) {
        const tx_provider_ops_t *p = tx_provider_find(KINDS[k].kind);
        if (p->decode_error == NULL)
            continue;
        for (size_t s = 0; s < sizeof(statuses) / sizeof(statuses[0]); s++) {
            char path[1024];
            size_t len;
            snprintf(path, sizeof(path), "%s/%s/error-%d.json", GOLDEN, KINDS[k].kind, statuses[s]);
            char *body = read_file(path, &len);
            if (body == NULL)
                continue;
            tx_error_t e = {0};
            p->decode_error(statuses[s], body, len, &e);
            for (size_t d = 0; d < TX_DIALECT_COUNT; d++) {
                const tx_dialect_ops_t *dl = tx_dialect_get((tx_dialect_t)d);
                if (dl->encode_error == NULL)
                    continue;
                tg_buf_t enc = {0}, out = {0};
                int status = dl->encode_error(&e, "req_golden", &enc);
                tg_buf_appendf(&out, "%d\n", status);
                append_pretty(&out, enc.base, enc.len);
                char name[128];
                snprintf(name, sizeof(name), "error-%d_to_%s.txt", statuses[s], DIALECTS[d]);
                check(KINDS[k].kind, name, out.base, out.len);
                tg_buf_free(&enc);
                tg_buf_free(&out);
            }
            free(body);
        }
    }
    assert_int_equal(failures, 0);
}

/* ---------------------------------------------------------------- streams */

typedef struct stream_ctx {
    const tx_provider_ops_t *p;
    const tx_dialect_ops_t *dl;
    tx_stream_state_t *up, *client;
    tx_request_t *r;
    tg_arena_t *a;
    tg_buf_t *out;
    int ended, failed;
} stream_ctx_t;

static int
on_event(void *ctx, const tx_event_t *ev)
{
    stream_ctx_t *c = ctx;
    if (ev->kind == TX_EV_END)
        c->ended = 1;
    if (ev->kind == TX_EV_ERROR)
        c->failed = 1;
    return c->dl->stream_event(c->client, c->r, ev, c->out);
}

static int
on_frame(void *ctx, const tx_frame_t *f)
{
    stream_ctx_t *c = ctx;
    tx_error_t err = {0};
    int rv = c->p->stream_frame(c->up, c->r, f, c->a, on_event, c, &err);
    if (rv == -1)
        tg_buf_appendf(c->out, "[adapter error %d: %s]\n", tx_error_status(&err), err.message);
    return 0;
}

static int
on_sse(void *ctx, const tg_sse_event_t *ev)
{
    if (!ev->has_data)
        return 0;
    tx_frame_t f = {.event = ev->event_len ? ev->event : NULL,
                    .event_len = ev->event_len,
                    .data = ev->data,
                    .data_len = ev->data_len};
    return on_frame(ctx, &f);
}

static char *
unhex(const char *hex, size_t len, size_t *ret_len)
{
    char *out = malloc(len / 2 + 1);
    size_t n = 0;
    int hi = -1;
    for (size_t i = 0; i < len; i++) {
        int v = hex[i] >= '0' && hex[i] <= '9'   ? hex[i] - '0'
                : hex[i] >= 'a' && hex[i] <= 'f' ? hex[i] - 'a' + 10
                : hex[i] >= 'A' && hex[i] <= 'F' ? hex[i] - 'A' + 10
                                                 : -1;
        if (v < 0)
            continue;
        if (hi < 0)
            hi = v;
        else {
            out[n++] = (char)(hi << 4 | v);
            hi = -1;
        }
    }
    *ret_len = n;
    return out;
}

static void
test_streams(void **state)
{
    failures = 0;
    for (size_t k = 0; k < sizeof(KINDS) / sizeof(KINDS[0]); k++) {
        const tx_provider_ops_t *p = tx_provider_find(KINDS[k].kind);
        char path[1024];
        size_t len;
        int binary = p->framing == TX_FRAMING_EVENTSTREAM;
        snprintf(path, sizeof(path), "%s/%s/stream.%s", GOLDEN, KINDS[k].kind, binary ? "hex" : "txt");
        char *raw = read_file(path, &len);
        if (raw == NULL || p->stream_frame == NULL) {
            free(raw);
            continue;
        }
        if (binary) {
            size_t blen;
            char *bytes = unhex(raw, len, &blen);
            free(raw);
            raw = bytes;
            len = blen;
        }
        for (size_t d = 0; d < TX_DIALECT_COUNT; d++) {
            const tx_dialect_ops_t *dl = tx_dialect_get((tx_dialect_t)d);
            if (dl->decode_request == NULL || dl->stream_event == NULL)
                continue;
            tg_arena_t a = TG_ARENA_INIT;
            tx_request_t r;
            tg_buf_t out = {0};
            if (decode_client(DIALECTS[d], (tx_dialect_t)d, &a, 1, &r) == 0) {
                stream_ctx_t c = {.p = p, .dl = dl, .r = &r, .a = &a, .out = &out};
                c.up = tg_arena_alloc(&a, p->stream_state_size + 1);
                c.client = tg_arena_alloc(&a, dl->stream_state_size + 1);
                /* feed in small pieces: framing must not depend on where reads split */
                if (p->framing == TX_FRAMING_SSE) {
                    tg_sse_parser_t sse;
                    tg_sse_init(&sse, 1 << 20);
                    for (size_t i = 0; i < len; i += 7)
                        tg_sse_feed(&sse, raw + i, len - i < 7 ? len - i : 7, on_sse, &c);
                    tg_sse_dispose(&sse);
                } else if (p->framing == TX_FRAMING_NDJSON) {
                    const char *s = raw, *end = raw + len;
                    while (s < end) {
                        const char *nl = memchr(s, '\n', (size_t)(end - s));
                        size_t l = nl ? (size_t)(nl - s) : (size_t)(end - s);
                        if (l > 0) {
                            tx_frame_t f = {.data = s, .data_len = l};
                            on_frame(&c, &f);
                        }
                        s += l + 1;
                    }
                } else {
                    tx_eventstream_t es = {0};
                    tx_error_t err = {0};
                    for (size_t i = 0; i < len; i += 13)
                        if (tx_eventstream_feed(&es, raw + i, len - i < 13 ? len - i : 13, on_frame, &c, &err) == -1)
                            tg_buf_appendf(&out, "[framing error: %s]\n", err.message);
                    tx_eventstream_dispose(&es);
                }
                if (!c.ended && !c.failed)
                    tg_buf_appends(&out, "[stream did not end]\n");
                char name[128];
                snprintf(name, sizeof(name), "stream_to_%s.txt", DIALECTS[d]);
                check(KINDS[k].kind, name, out.base, out.len);
            }
            tg_buf_free(&out);
            tg_arena_free(&a);
        }
        free(raw);
    }
    assert_int_equal(failures, 0);
}

int
main(void)
{
    const char *u = getenv("TOLLGATE_GOLDEN_UPDATE");
    update_mode = u != NULL && u[0] == '1';
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
