/*
 * The single h2o handler: opens the request's observability record (which assigns the request id: the
 * client's x-request-id when sane, else a new one; and the trace context), then dispatches on method and
 * path to an endpoint of one of the three client dialects:
 *   OpenAI     /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models (also under /openai)
 *   Anthropic  /anthropic/v1/messages, /anthropic/v1/messages/count_tokens
 *   Gemini     /genai/v1beta/models/{model}:generateContent | :streamGenerateContent | :embedContent |
 *              :batchEmbedContents | :countTokens (also /genai/v1/...)
 * and the operational ones: /healthz, /readyz, /metrics, /tollgate/v1/breakers.
 */
#include <stdio.h>
#include <string.h>
#include "ingress/ingress.h"
#include "tollgate/clock.h"
#include "tollgate/json_scan.h"
#include "observe/observe.h"

static int
path_is(h2o_iovec_t path, const char *lit)
{
    size_t n = strlen(lit);
    return path.len == n && memcmp(path.base, lit, n) == 0;
}

static const dp_endpoint_t OPENAI_CHAT = {TX_DIALECT_OPENAI, TX_OP_CHAT, "chat/completions", "chat.completions"};
static const dp_endpoint_t OPENAI_COMPLETIONS = {TX_DIALECT_OPENAI, TX_OP_COMPLETION, "completions", "completions"};
static const dp_endpoint_t OPENAI_EMBEDDINGS = {TX_DIALECT_OPENAI, TX_OP_EMBED, "embeddings", "embeddings"};
static const dp_endpoint_t ANTHROPIC_MESSAGES = {TX_DIALECT_ANTHROPIC, TX_OP_CHAT, NULL, "messages"};
static const dp_endpoint_t ANTHROPIC_COUNT = {TX_DIALECT_ANTHROPIC, TX_OP_COUNT_TOKENS, NULL, "messages.count_tokens"};
static const dp_endpoint_t GEMINI_GENERATE = {TX_DIALECT_GEMINI, TX_OP_CHAT, NULL, "generateContent"};
static const dp_endpoint_t GEMINI_STREAM = {TX_DIALECT_GEMINI, TX_OP_CHAT, NULL, "streamGenerateContent"};
static const dp_endpoint_t GEMINI_EMBED = {TX_DIALECT_GEMINI, TX_OP_EMBED, NULL, "embedContent"};
static const dp_endpoint_t GEMINI_COUNT = {TX_DIALECT_GEMINI, TX_OP_COUNT_TOKENS, NULL, "countTokens"};

static int
has_prefix(h2o_iovec_t path, const char *lit)
{
    size_t n = strlen(lit);
    return path.len >= n && memcmp(path.base, lit, n) == 0;
}

/* /genai/v1beta/models/{model}:{method}: the model is everything up to the last ':'. */
static int
on_gemini(h2o_req_t *req, dp_worker_t *w, const char *request_id, h2o_iovec_t rest, int is_post)
{
    const char *colon = NULL;
    for (size_t i = rest.len; i > 0; i--)
        if (rest.base[i - 1] == ':') {
            colon = rest.base + i - 1;
            break;
        }
    if (colon == NULL || colon == rest.base) {
        dp_send_error(req, TX_DIALECT_GEMINI, 404, "unknown_url", NULL,
                      "Unknown request URL: expected /genai/v1beta/models/{model}:{method}.");
        return 0;
    }
    h2o_iovec_t model = h2o_iovec_init(rest.base, (size_t)(colon - rest.base));
    h2o_iovec_t method = h2o_iovec_init(colon + 1, rest.len - model.len - 1);
    const dp_endpoint_t *ep = NULL;
    int stream = 0;
    if (h2o_memis(method.base, method.len, H2O_STRLIT("generateContent")))
        ep = &GEMINI_GENERATE;
    else if (h2o_memis(method.base, method.len, H2O_STRLIT("streamGenerateContent")))
        ep = &GEMINI_STREAM, stream = 1;
    else if (h2o_memis(method.base, method.len, H2O_STRLIT("embedContent")) ||
             h2o_memis(method.base, method.len, H2O_STRLIT("batchEmbedContents")))
        ep = &GEMINI_EMBED; /* the dialect tells the two bodies apart and answers in the same shape */
    else if (h2o_memis(method.base, method.len, H2O_STRLIT("countTokens")))
        ep = &GEMINI_COUNT;
    if (ep == NULL) {
        dp_send_error(req, TX_DIALECT_GEMINI, 404, "unknown_method", NULL, "Method '%.*s' is not supported.",
                      (int)(method.len > 64 ? 64 : method.len), method.base);
        return 0;
    }
    if (!is_post) {
        dp_send_error(req, TX_DIALECT_GEMINI, 405, "method_not_allowed", NULL, "Use POST.");
        return 0;
    }
    /* the path is already percent-decoded by h2o's normalisation */
    return dp_exchange_handle(req, w, request_id, ep, model, stream);
}

/* PUT /__test/clock {"offset_ms": N}: moves the governance clock (TOLLGATE_TEST_HOOKS=1 only). */
static int
dp_test_clock(h2o_req_t *req, int is_get)
{
    if (!is_get) {
        tg_json_span_t top, v;
        int64_t off;
        if (tg_json_parse(req->entity.base, req->entity.len, &top) != 0 || top.type != TG_JSON_OBJECT ||
            tg_json_object_get(top, "offset_ms", &v) != 1 || tg_json_to_int64(v, &off) != 0 ||
            tg_clock_set_offset_ms(off) != 0) {
            dp_send_error(req, TX_DIALECT_OPENAI, 400, "invalid_value", "offset_ms", "offset_ms must be an integer.");
            return 0;
        }
    }
    char *body = h2o_mem_alloc_pool(&req->pool, 96);
    int n = snprintf(body, 96, "{\"offset_ms\":%lld,\"now_ms\":%lld}\n", (long long)tg_clock_offset_ms(),
                     (long long)tg_clock_now_ms());
    dp_send_json(req, 200, body, (size_t)n);
    return 0;
}

int
dp_ingress_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    dp_worker_t *w = dp_worker_of(req);
    dp_ingress_own_body(req); /* before anything points into the body */
    dp_obs_t *obs = dp_obs_begin(req, dp_worker_rand(w), dp_worker_rand(w));
    const char *request_id = obs->request_id;
    dp_add_common_headers(req, request_id);

    h2o_iovec_t path = req->path_normalized;
    if (path.len > 7 && memcmp(path.base, "/openai/", 8) == 0)
        path = h2o_iovec_init(path.base + 7, path.len - 7);
    int is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    const dp_endpoint_t *ep = NULL;
    tx_dialect_t dialect = TX_DIALECT_OPENAI;

    if (path_is(path, "/v1/chat/completions")) {
        ep = &OPENAI_CHAT;
    } else if (path_is(path, "/v1/completions")) {
        ep = &OPENAI_COMPLETIONS;
    } else if (path_is(path, "/v1/embeddings")) {
        ep = &OPENAI_EMBEDDINGS;
    } else if (path_is(path, "/anthropic/v1/messages")) {
        ep = &ANTHROPIC_MESSAGES;
    } else if (path_is(path, "/anthropic/v1/messages/count_tokens")) {
        ep = &ANTHROPIC_COUNT;
    } else if (has_prefix(path, "/genai/v1beta/models/") || has_prefix(path, "/genai/v1/models/")) {
        size_t skip = has_prefix(path, "/genai/v1beta/models/") ? 21 : 17;
        return on_gemini(req, w, request_id, h2o_iovec_init(path.base + skip, path.len - skip), is_post);
    } else if (path_is(path, "/v1/models")) {
        obs->endpoint = "models";
        if (is_get)
            return dp_models_handle(req, w, request_id);
    } else if (path_is(path, "/tollgate/v1/breakers")) {
        if (is_get)
            return dp_ops_breakers_handle(req);
        dp_send_json(req, 405, H2O_STRLIT("{\"error\":{\"message\":\"Use GET.\"}}\n"));
        return 0;
    } else if (path_is(path, "/__test/clock") && tg_clock_test_hooks()) {
        return dp_test_clock(req, is_get);
    } else if (path_is(req->path_normalized, "/metrics") && is_get) {
        return dp_obs_metrics_handle(req);
    } else if (path_is(path, "/healthz")) {
        obs->skip = 1;
        dp_send_json(req, 200, H2O_STRLIT("{\"status\":\"ok\"}\n"));
        return 0;
    } else if (path_is(path, "/readyz")) {
        obs->skip = 1;
        if (atomic_load(&dp_draining))
            dp_send_json(req, 503, H2O_STRLIT("{\"status\":\"draining\"}\n"));
        else if (dp_snapshot_current_version() == 0)
            dp_send_json(req, 503, H2O_STRLIT("{\"status\":\"waiting for the first config snapshot\"}\n"));
        else
            dp_send_json(req, 200, H2O_STRLIT("{\"status\":\"ready\"}\n"));
        return 0;
    } else {
        if (has_prefix(path, "/anthropic/"))
            dialect = TX_DIALECT_ANTHROPIC;
        else if (has_prefix(path, "/genai/"))
            dialect = TX_DIALECT_GEMINI;
        dp_send_error(req, dialect, 404, "unknown_url", NULL, "Unknown request URL: %s %.*s",
                      is_get    ? "GET"
                      : is_post ? "POST"
                                : "?",
                      (int)(req->path.len > 200 ? 200 : req->path.len), req->path.base);
        return 0;
    }
    if (ep != NULL && is_post)
        return dp_exchange_handle(req, w, request_id, ep, h2o_iovec_init(NULL, 0), 0);
    if (ep != NULL)
        dialect = ep->dialect;
    dp_send_error(req, dialect, 405, "method_not_allowed", NULL, "Method %.*s is not allowed here.",
                  (int)(req->method.len > 16 ? 16 : req->method.len), req->method.base);
    return 0;
}
