/*
 * The mock provider's Google wire formats: the Gemini API (generativelanguage, API key) and Vertex AI
 * (OAuth bearer tokens the mock issues itself at POST /token), with the shared scenario of mock.h:
 * the same prompt-token formula, completion words, tool calls and directives as every other format,
 * reported in Gemini's semantics (promptTokenCount INCLUDES cachedContentTokenCount).
 *
 * Paths (README.md, "Gemini and Vertex AI"):
 *   POST /v1beta/models/{m}:generateContent | :streamGenerateContent[?alt=sse] | :countTokens |
 *        :embedContent | :batchEmbedContents        (also under /v1/models/)
 *   GET  /v1beta/models
 *   POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent | ... | :predict
 *   POST /token   (JWT-bearer grant, RS256 checked against --gcp-public-key)
 *
 * Streams are SSE with CRLF line ends (as Google sends them): one chunk per completion word (or per
 * tool call), each with the cumulative usageMetadata, then a last chunk with an empty text part, the
 * finishReason and the final usage. Without alt=sse the same chunks go out as one JSON array.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include "mock.h"

#define SCOPE "https://www.googleapis.com/auth/cloud-platform"

static EVP_PKEY *gcp_public_key; /* set once before the workers start, read-only after */
static uint64_t tokens_issued;   /* atomic */

/* Loads the PEM public key (or certificate) the token endpoint verifies assertions with. 0 or -1. */
int
mock_gemini_load_public_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    EVP_PKEY *k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    if (k == NULL) {
        rewind(f);
        X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
        if (cert != NULL)
            k = X509_get_pubkey(cert);
        X509_free(cert);
    }
    fclose(f);
    ERR_clear_error();
    if (k == NULL)
        return -1;
    gcp_public_key = k;
    return 0;
}

/* ---------------------------------------------------------------- helpers */

static int
has_prefix(h2o_iovec_t s, const char *p)
{
    size_t n = strlen(p);
    return s.len >= n && memcmp(s.base, p, n) == 0;
}

static int
is_method(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

/* The value of a query parameter (pool copy, not decoded: the mock's values need no decoding), or NULL. */
static const char *
query_param(h2o_req_t *req, const char *name)
{
    if (req->query_at == SIZE_MAX)
        return NULL;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    size_t n = strlen(name);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - q) > n && memcmp(q, name, n) == 0 && q[n] == '=')
            return h2o_strdup(&req->pool, q + n + 1, (size_t)(stop - q - n - 1)).base;
        q = amp ? amp + 1 : end;
    }
    return NULL;
}

static const char *
status_name(int s)
{
    switch (s) {
    case 400:
        return "INVALID_ARGUMENT";
    case 401:
        return "UNAUTHENTICATED";
    case 403:
        return "PERMISSION_DENIED";
    case 404:
        return "NOT_FOUND";
    case 409:
        return "ABORTED";
    case 429:
        return "RESOURCE_EXHAUSTED";
    case 499:
        return "CANCELLED";
    case 500:
        return "INTERNAL";
    case 501:
        return "UNIMPLEMENTED";
    case 502:
    case 503:
        return "UNAVAILABLE";
    case 504:
        return "DEADLINE_EXCEEDED";
    default:
        return s >= 500 ? "INTERNAL" : "FAILED_PRECONDITION";
    }
}

static const char *
status_message(int s)
{
    switch (s) {
    case 400:
        return "Request contains an invalid argument.";
    case 401:
        return "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
               "other valid authentication credential.";
    case 403:
        return "The caller does not have permission";
    case 404:
        return "Requested entity was not found.";
    case 429:
        return "Resource has been exhausted (e.g. check quota).";
    case 500:
        return "An internal error has occurred. Please retry or report in "
               "https://developers.generativeai.google/guide/troubleshooting";
    case 503:
        return "The model is overloaded. Please try again later.";
    case 504:
        return "Deadline expired before operation could complete.";
    default:
        return "mock error";
    }
}

/* {"error":{"code","message","status"[,"details"]}} (new reference) */
static json_t *
rpc_error(int status, const char *message, const char *reason, const char *service)
{
    json_t *e = json_pack("{s{sissss}}", "error", "code", status, "message", message ? message : status_message(status),
                          "status", status_name(status));
    json_t *details = NULL;
    if (reason != NULL)
        details = json_pack("[{sssssss{ss}}]", "@type", "type.googleapis.com/google.rpc.ErrorInfo", "reason", reason,
                            "domain", "googleapis.com", "metadata", "service", service);
    else if (status == 429)
        details = json_pack("[{ssss}]", "@type", "type.googleapis.com/google.rpc.RetryInfo", "retryDelay", "1s");
    if (details != NULL)
        json_object_set_new(json_object_get(e, "error"), "details", details);
    return e;
}

static void
send_error_now(h2o_req_t *req, int status, const char *message, const char *reason, const char *service)
{
    json_t *e = rpc_error(status, message, reason, service);
    mock_send_json(req, status, e);
    json_decref(e);
}

/* An error after the directives' delay. */
static void
send_error_later(h2o_req_t *req, int status, const char *message, const struct mock_directives *d)
{
    json_t *e = rpc_error(status, message, NULL, NULL);
    struct mock_reply *r = mock_reply_new(req, status, "application/json; charset=UTF-8");
    mock_reply_event_json(r, NULL, e, NULL);
    json_decref(e);
    mock_reply_start(r, d);
}

/* ---------------------------------------------------------------- the scenario */

struct scenario {
    const char *model;
    int vertex, stream, sse;
    struct mock_directives d;
    int64_t prompt, cached, n, tool_calls;
    const char *finish;
    json_t *tool_names; /* borrowed from the body: declared function names, in order */
};

static size_t
text_bytes(const json_t *content)
{
    size_t b = 0, i;
    json_t *p;
    json_array_foreach(json_object_get(content, "parts"), i, p)
    {
        json_t *t = json_object_get(p, "text");
        if (json_is_string(t))
            b += json_string_length(t);
    }
    return b;
}

/* The prompt tokens of a GenerateContentRequest-shaped object (contents + systemInstruction). */
static int64_t
prompt_tokens(const json_t *g)
{
    int64_t n = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(g, "contents"), i, c) n += mock_message_tokens(text_bytes(c));
    json_t *si = json_object_get(g, "systemInstruction");
    if (json_is_object(si))
        n += mock_message_tokens(text_bytes(si));
    return n;
}

/* Directives from the last user content that has text (a functionResponse-only turn carries none). */
static void
scan_directives(struct scenario *s, h2o_req_t *req, const json_t *body)
{
    mock_directives_init(&s->d);
    json_t *contents = json_object_get(body, "contents");
    for (size_t i = json_array_size(contents); i-- > 0;) {
        json_t *c = json_array_get(contents, i);
        const char *role = json_string_value(json_object_get(c, "role"));
        if (role != NULL && strcmp(role, "user") != 0)
            continue;
        int found = 0;
        size_t j;
        json_t *p;
        json_array_foreach(json_object_get(c, "parts"), j, p)
        {
            json_t *t = json_object_get(p, "text");
            if (json_is_string(t)) {
                mock_directives_scan(&s->d, json_string_value(t), json_string_length(t));
                found = 1;
            }
        }
        if (found)
            break;
    }
    mock_directives_from_headers(&s->d, req);
}

static json_t *
usage_json(const struct scenario *s, int64_t completion)
{
    json_t *u = json_pack("{sIsIsIs[{sssI}]}", "promptTokenCount", (json_int_t)s->prompt, "candidatesTokenCount",
                          (json_int_t)completion, "totalTokenCount", (json_int_t)(s->prompt + completion),
                          "promptTokensDetails", "modality", "TEXT", "tokenCount", (json_int_t)s->prompt);
    if (s->cached > 0) {
        json_object_set_new(u, "cachedContentTokenCount", json_integer(s->cached));
        json_object_set_new(u, "cacheTokensDetails",
                            json_pack("[{sssI}]", "modality", "TEXT", "tokenCount", (json_int_t)s->cached));
    }
    if (s->vertex)
        json_object_set_new(u, "trafficType", json_string("ON_DEMAND"));
    return u;
}

/* One GenerateContentResponse around parts (stolen). */
static json_t *
response_json(const struct scenario *s, json_t *parts, const char *finish, int64_t completion, const char *rid)
{
    json_t *cand = json_pack("{s{sos s}si}", "content", "parts", parts, "role", "model", "index", 0);
    if (finish != NULL)
        json_object_set_new(cand, "finishReason", json_string(finish));
    json_t *v = json_pack("{s[o]sossss}", "candidates", cand, "usageMetadata", usage_json(s, completion),
                          "modelVersion", s->model, "responseId", rid);
    if (s->vertex) {
        char ts[32];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S.000000Z", &tm);
        json_object_set_new(v, "createTime", json_string(ts));
    }
    return v;
}

static json_t *
tool_call_part(const struct scenario *s, size_t i)
{
    size_t n_names = json_array_size(s->tool_names);
    const char *name = n_names ? json_string_value(json_array_get(s->tool_names, i % n_names)) : "get_weather";
    json_t *args = json_loads(mock_tool_args(i), 0, NULL);
    return json_pack("{s{ssso}}", "functionCall", "name", name, "args", args);
}

static void
reply_generate(h2o_req_t *req, struct scenario *s)
{
    char rid[48];
    snprintf(rid, sizeof(rid), "mock-%" PRIu64, mock_next_seq());
    int64_t events = s->tool_calls > 0 ? s->tool_calls : s->n;
    if (!s->stream) {
        json_t *parts = json_array();
        if (s->tool_calls > 0) {
            for (int64_t i = 0; i < s->tool_calls; i++)
                json_array_append_new(parts, tool_call_part(s, (size_t)i));
        } else {
            char *text = malloc((size_t)s->n * 16 + 1);
            size_t at = 0;
            for (int64_t i = 0; i < s->n; i++) {
                const char *w = mock_word((size_t)i);
                memcpy(text + at, w, strlen(w));
                at += strlen(w);
            }
            json_array_append_new(parts, json_pack("{ss%}", "text", text, at));
            free(text);
        }
        json_t *v = response_json(s, parts, s->finish, s->n, rid);
        char *body = json_dumps(v, JSON_COMPACT);
        json_decref(v);
        size_t len = strlen(body);
        struct mock_reply *r = mock_reply_new(req, 200, "application/json; charset=UTF-8");
        if (s->d.reset_after >= 0) { /* half the body, then the connection goes */
            mock_reply_event(r, body, len / 2);
            mock_reply_cut(r);
            mock_reply_event(r, body + len / 2, len - len / 2);
        } else {
            mock_reply_event(r, body, len);
        }
        mock_reply_served(r, s->prompt, s->n, s->cached);
        free(body);
        mock_reply_start(r, &s->d);
        return;
    }

    const char *pre = s->sse ? "data: " : NULL, *post = s->sse ? "\r\n\r\n" : NULL;
    struct mock_reply *r = mock_reply_new(req, 200, s->sse ? "text/event-stream" : "application/json; charset=UTF-8");
    if (!s->sse)
        mock_reply_event(r, "[", 1);
    int64_t reset = s->d.reset_after >= 0 && s->d.reset_after <= events ? s->d.reset_after : -1;
    int64_t error = s->d.error_after >= 0 && s->d.error_after <= events ? s->d.error_after : -1;
    for (int64_t i = 0;; i++) {
        if (i == reset)
            mock_reply_cut(r); /* the rest is queued but never sent: a cut needs events after it */
        if (i == error) {
            json_t *e = json_pack("{s{sissss}}", "error", "code", 500, "message", "mock mid-stream failure", "status",
                                  "INTERNAL");
            mock_reply_event_json(r, s->sse ? "data: " : (i == 0 ? NULL : ","), e, post);
            json_decref(e);
            if (!s->sse)
                mock_reply_event(r, "]", 1);
            break;
        }
        json_t *part;
        const char *finish = NULL;
        int64_t done;
        if (i < events) {
            part = s->tool_calls > 0 ? tool_call_part(s, (size_t)i) : json_pack("{ss}", "text", mock_word((size_t)i));
            done = s->tool_calls > 0 ? s->n : i + 1;
        } else {
            part = json_pack("{ss}", "text", "");
            finish = s->finish;
            done = s->n;
        }
        json_t *v = response_json(s, json_pack("[o]", part), finish, done, rid);
        mock_reply_event_json(r, s->sse ? pre : (i == 0 ? NULL : ","), v, post);
        json_decref(v);
        if (i >= events) {
            mock_reply_served(r, s->prompt, s->n, s->cached); /* the final chunk's usage */
            if (!s->sse)
                mock_reply_event(r, "]", 1);
            break;
        }
    }
    mock_reply_start(r, &s->d);
}

/* ---------------------------------------------------------------- embeddings */

/* The text of a content's parts, joined without separator (pool copy) */
static h2o_iovec_t
content_text(h2o_req_t *req, const json_t *content)
{
    size_t total = text_bytes(content), at = 0, i;
    char *buf = h2o_mem_alloc_pool(&req->pool, total + 1);
    json_t *p;
    json_array_foreach(json_object_get(content, "parts"), i, p)
    {
        json_t *t = json_object_get(p, "text");
        if (json_is_string(t)) {
            memcpy(buf + at, json_string_value(t), json_string_length(t));
            at += json_string_length(t);
        }
    }
    return h2o_iovec_init(buf, at);
}

static int64_t
dims_of(const json_t *v)
{
    json_t *d = json_object_get(v, "outputDimensionality");
    return json_is_integer(d) && json_integer_value(d) > 0 && json_integer_value(d) <= 3072 ? json_integer_value(d) : 8;
}

static void
send_json_later(h2o_req_t *req, json_t *v, const struct mock_directives *d)
{
    struct mock_reply *r = mock_reply_new(req, 200, "application/json; charset=UTF-8");
    mock_reply_event_json(r, NULL, v, NULL);
    mock_reply_start(r, d);
}

static void
on_embed(h2o_req_t *req, const char *model, const char *method, json_t *body, const struct mock_directives *d)
{
    json_t *out;
    if (strcmp(method, "embedContent") == 0) {
        if (!json_is_object(json_object_get(body, "content"))) {
            send_error_later(req, 400, "* EmbedContentRequest.content: content is not specified", d);
            return;
        }
        h2o_iovec_t t = content_text(req, json_object_get(body, "content"));
        out = json_pack("{s{so}}", "embedding", "values", mock_embedding_json(t.base, t.len, dims_of(body)));
    } else if (strcmp(method, "batchEmbedContents") == 0) {
        json_t *reqs = json_object_get(body, "requests"), *q;
        char want[256];
        snprintf(want, sizeof(want), "models/%s", model);
        if (!json_is_array(reqs) || json_array_size(reqs) == 0) {
            send_error_later(req, 400, "* BatchEmbedContentsRequest.requests: requests is not specified", d);
            return;
        }
        json_t *list = json_array();
        size_t i;
        json_array_foreach(reqs, i, q)
        {
            const char *m = json_string_value(json_object_get(q, "model"));
            if (m == NULL || strcmp(m, want) != 0) { /* Google insists each entry repeats the URL's model */
                json_decref(list);
                char msg[400];
                snprintf(msg, sizeof(msg), "* BatchEmbedContentsRequest.requests[%zu].model: model must be %s", i,
                         want);
                send_error_later(req, 400, msg, d);
                return;
            }
            h2o_iovec_t t = content_text(req, json_object_get(q, "content"));
            json_array_append_new(list, json_pack("{so}", "values", mock_embedding_json(t.base, t.len, dims_of(q))));
        }
        out = json_pack("{so}", "embeddings", list);
    } else { /* Vertex :predict */
        json_t *inst = json_object_get(body, "instances"), *x;
        if (!json_is_array(inst) || json_array_size(inst) == 0) {
            send_error_later(req, 400, "instances is not specified", d);
            return;
        }
        int64_t dims = dims_of(json_object_get(body, "parameters"));
        json_t *preds = json_array();
        size_t i, chars = 0;
        json_array_foreach(inst, i, x)
        {
            json_t *c = json_object_get(x, "content");
            const char *t = json_is_string(c) ? json_string_value(c) : "";
            size_t len = json_is_string(c) ? json_string_length(c) : 0;
            chars += len;
            json_array_append_new(preds,
                                  json_pack("{s{sos{sIsb}}}", "embeddings", "values", mock_embedding_json(t, len, dims),
                                            "statistics", "token_count", (json_int_t)((len + 3) / 4), "truncated", 0));
        }
        out = json_pack("{sos{sI}}", "predictions", preds, "metadata", "billableCharacterCount", (json_int_t)chars);
    }
    send_json_later(req, out, d);
    json_decref(out);
}

/* ---------------------------------------------------------------- auth */

/* Gemini API: x-goog-api-key or ?key=. No key: 403, a wrong key: 400 API_KEY_INVALID (as Google does). */
static int
gemini_auth_ok(h2o_req_t *req)
{
    const char *want = mock_api_key();
    if (want == NULL)
        return 1;
    h2o_iovec_t h = mock_header(req, "x-goog-api-key");
    const char *q = query_param(req, "key");
    if (h.base == NULL && q == NULL) {
        send_error_now(req, 403,
                       "Method doesn't allow unregistered callers (callers without established identity). Please use "
                       "API Key or other form of API consumer identity to call this API.",
                       NULL, NULL);
        return 0;
    }
    if ((h.base != NULL && h2o_memis(h.base, h.len, want, strlen(want))) || (q != NULL && strcmp(q, want) == 0))
        return 1;
    send_error_now(req, 400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID",
                   "generativelanguage.googleapis.com");
    return 0;
}

/* Vertex: a bearer token this mock issued; or the --api-key as a static token; or anything when the mock
 * has neither a key nor a public key to issue tokens with. */
static int
vertex_auth_ok(h2o_req_t *req)
{
    const char *key = mock_api_key();
    if (key == NULL && gcp_public_key == NULL)
        return 1;
    h2o_iovec_t h = mock_header(req, "authorization");
    if (h.base != NULL && h.len > 7 && strncasecmp(h.base, "Bearer ", 7) == 0) {
        const char *t = h.base + 7;
        size_t n = h.len - 7;
        if (key != NULL && h2o_memis(t, n, key, strlen(key)))
            return 1;
        if (n > 10 && memcmp(t, "ya29.mock-", 10) == 0) {
            uint64_t k = 0;
            size_t i = 10;
            for (; i < n && i < 30 && t[i] >= '0' && t[i] <= '9'; i++)
                k = k * 10 + (uint64_t)(t[i] - '0');
            if (i == n && k >= 1 && k <= __atomic_load_n(&tokens_issued, __ATOMIC_RELAXED))
                return 1;
        }
    }
    send_error_now(req, 401, NULL, h.base == NULL ? "CREDENTIALS_MISSING" : "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                   "aiplatform.googleapis.com");
    return 0;
}

/* ---------------------------------------------------------------- the token endpoint */

static void
token_error(h2o_req_t *req, int status, const char *error, const char *description)
{
    json_t *e = json_pack("{ssss}", "error", error, "error_description", description);
    mock_send_json(req, status, e);
    json_decref(e);
}

/* A form field's value, percent-decoded (pool), or NULL. */
static char *
form_field(h2o_req_t *req, const char *name)
{
    const char *s = req->entity.base, *end = s + req->entity.len;
    size_t n = strlen(name);
    while (s != NULL && s < end) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - s) > n && memcmp(s, name, n) == 0 && s[n] == '=') {
            char *out = h2o_mem_alloc_pool(&req->pool, (size_t)(stop - s));
            size_t o = 0;
            for (const char *p = s + n + 1; p < stop; p++) {
                unsigned char byte;
                if (*p == '%' && stop - p >= 3 && h2o_hex_decode(&byte, p + 1, 2) == 0) {
                    out[o++] = (char)byte;
                    p += 2;
                } else {
                    out[o++] = *p == '+' ? ' ' : *p;
                }
            }
            out[o] = '\0';
            return out;
        }
        s = amp ? amp + 1 : end;
    }
    return NULL;
}

/* base64url -> bytes (malloc'd; caller frees), or NULL */
static unsigned char *
unb64url(const char *s, size_t len, size_t *ret_len)
{
    char *std = malloc(len + 4);
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        std[n++] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    size_t pad = 0;
    while (n % 4) {
        std[n++] = '=';
        pad++;
    }
    unsigned char *out = malloc(n + 1);
    int m = EVP_DecodeBlock(out, (unsigned char *)std, (int)n);
    free(std);
    if (m < 0 || (size_t)m < pad) {
        free(out);
        return NULL;
    }
    *ret_len = (size_t)m - pad;
    out[*ret_len] = '\0';
    return out;
}

static const char *
check_assertion(const char *jwt)
{
    if (gcp_public_key == NULL)
        return "The mock has no --gcp-public-key to verify assertions with.";
    const char *d1 = strchr(jwt, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (d2 == NULL || strchr(d2 + 1, '.') != NULL)
        return "Invalid JWT: not three parts.";
    size_t hl, cl, sl;
    unsigned char *h = unb64url(jwt, (size_t)(d1 - jwt), &hl);
    unsigned char *c = unb64url(d1 + 1, (size_t)(d2 - d1 - 1), &cl);
    unsigned char *sig = unb64url(d2 + 1, strlen(d2 + 1), &sl);
    json_t *hj = h ? json_loadb((char *)h, hl, 0, NULL) : NULL;
    json_t *cj = c ? json_loadb((char *)c, cl, 0, NULL) : NULL;
    const char *problem = NULL;
    const char *alg = json_string_value(json_object_get(hj, "alg"));
    if (hj == NULL || cj == NULL || sig == NULL) {
        problem = "Invalid JWT: cannot decode.";
    } else if (alg == NULL || strcmp(alg, "RS256") != 0) {
        problem = "Invalid JWT: alg must be RS256.";
    } else {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        int ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, gcp_public_key) == 1 &&
                 EVP_DigestVerify(md, sig, sl, (const unsigned char *)jwt, (size_t)(d2 - jwt)) == 1;
        EVP_MD_CTX_free(md);
        ERR_clear_error();
        json_t *iat = json_object_get(cj, "iat"), *exp = json_object_get(cj, "exp");
        const char *scope = json_string_value(json_object_get(cj, "scope"));
        const char *aud = json_string_value(json_object_get(cj, "aud"));
        const char *iss = json_string_value(json_object_get(cj, "iss"));
        int64_t now = (int64_t)time(NULL);
        if (!ok)
            problem = "Invalid JWT Signature.";
        else if (iss == NULL || iss[0] == '\0')
            problem = "Invalid JWT: no iss.";
        else if (scope == NULL || strstr(scope, SCOPE) == NULL)
            problem = "Invalid JWT: scope must include " SCOPE ".";
        else if (aud == NULL || strlen(aud) < 6 || strcmp(aud + strlen(aud) - 6, "/token") != 0)
            problem = "Invalid JWT: aud must be the token URI.";
        else if (!json_is_integer(iat) || !json_is_integer(exp) ||
                 json_integer_value(exp) - json_integer_value(iat) > 3600 ||
                 json_integer_value(exp) <= json_integer_value(iat) || json_integer_value(exp) < now ||
                 json_integer_value(iat) > now + 300)
            problem = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                      "Check your iat and exp values in the JWT claim.";
    }
    json_decref(hj);
    json_decref(cj);
    free(h);
    free(c);
    free(sig);
    return problem;
}

static void
on_token(h2o_req_t *req)
{
    mock_record(req, NULL);
    const char *grant = form_field(req, "grant_type");
    const char *assertion = form_field(req, "assertion");
    if (grant == NULL || strcmp(grant, "urn:ietf:params:oauth:grant-type:jwt-bearer") != 0) {
        token_error(req, 400, "unsupported_grant_type", "Invalid grant_type.");
        return;
    }
    const char *problem = assertion ? check_assertion(assertion) : "Missing assertion.";
    if (problem != NULL) {
        token_error(req, 400, "invalid_grant", problem);
        return;
    }
    char token[48];
    snprintf(token, sizeof(token), "ya29.mock-%" PRIu64, __atomic_add_fetch(&tokens_issued, 1, __ATOMIC_RELAXED));
    json_t *v = json_pack("{sssiss}", "access_token", token, "expires_in", 3600, "token_type", "Bearer");
    mock_send_json(req, 200, v);
    json_decref(v);
}

/* ---------------------------------------------------------------- generateContent and friends */

static void
on_models(h2o_req_t *req)
{
    mock_record(req, NULL);
    if (!gemini_auth_ok(req))
        return;
    json_t *v = json_pack("{s[{sssssss[ss]}{sssssss[s]}]}", "models", "name", "models/mock-gemini", "displayName",
                          "Mock Gemini", "version", "001", "supportedGenerationMethods", "generateContent",
                          "countTokens", "name", "models/mock-embedding", "displayName", "Mock Embedding", "version",
                          "001", "supportedGenerationMethods", "embedContent");
    mock_send_json(req, 200, v);
    json_decref(v);
}

static void
on_model_call(h2o_req_t *req, int vertex, h2o_iovec_t model_method)
{
    json_t *body = req->entity.base != NULL ? json_loadb(req->entity.base, req->entity.len, 0, NULL) : NULL;
    mock_record(req, body);
    if (!(vertex ? vertex_auth_ok(req) : gemini_auth_ok(req)))
        goto done;
    const char *colon = memchr(model_method.base, ':', model_method.len);
    if (colon == NULL || !is_method(req, "POST")) {
        send_error_now(req, 404, "Requested entity was not found.", NULL, NULL);
        goto done;
    }
    struct scenario s = {.vertex = vertex};
    s.model = h2o_strdup(&req->pool, model_method.base, (size_t)(colon - model_method.base)).base;
    const char *method =
        h2o_strdup(&req->pool, colon + 1, model_method.len - (size_t)(colon - model_method.base) - 1).base;
    if (!json_is_object(body)) {
        send_error_now(req, 400, "Invalid JSON payload received.", NULL, NULL);
        goto done;
    }
    scan_directives(&s, req, body);
    if (s.d.status >= 100 && s.d.status != 200) {
        send_error_later(req, (int)s.d.status, NULL, &s.d);
        goto done;
    }

    if (strcmp(method, "embedContent") == 0 || strcmp(method, "batchEmbedContents") == 0 ||
        (vertex && strcmp(method, "predict") == 0)) {
        on_embed(req, s.model, method, body, &s.d);
        goto done;
    }
    if (strcmp(method, "countTokens") == 0) {
        json_t *g = json_object_get(body, "generateContentRequest");
        int64_t p = prompt_tokens(json_is_object(g) ? g : body);
        json_t *v = json_pack("{sIs[{sssI}]}", "totalTokens", (json_int_t)p, "promptTokensDetails", "modality", "TEXT",
                              "tokenCount", (json_int_t)p);
        send_json_later(req, v, &s.d);
        json_decref(v);
        goto done;
    }
    int stream = strcmp(method, "streamGenerateContent") == 0;
    if (!stream && strcmp(method, "generateContent") != 0) {
        send_error_later(req, 404, "The method is not supported by the mock.", &s.d);
        goto done;
    }

    json_t *contents = json_object_get(body, "contents"), *c;
    if (!json_is_array(contents) || json_array_size(contents) == 0) {
        send_error_later(req, 400, "* GenerateContentRequest.contents: contents is not specified", &s.d);
        goto done;
    }
    size_t i;
    json_array_foreach(contents, i, c)
    {
        const char *role = json_string_value(json_object_get(c, "role"));
        if (vertex && (role == NULL || (strcmp(role, "user") != 0 && strcmp(role, "model") != 0))) {
            send_error_later(req, 400, "Please use a valid role: user, model.", &s.d);
            goto done;
        }
    }
    s.stream = stream;
    const char *alt = query_param(req, "alt");
    s.sse = alt != NULL && strcmp(alt, "sse") == 0;
    s.prompt = prompt_tokens(body);
    s.cached = s.d.cached < 0 ? 0 : s.d.cached < s.prompt ? s.d.cached : s.prompt;
    s.n = s.d.tokens >= 0 ? s.d.tokens : MOCK_DEFAULT_TOKENS;
    s.finish = "STOP";
    json_t *max = json_object_get(json_object_get(body, "generationConfig"), "maxOutputTokens");
    if (json_is_integer(max) && json_integer_value(max) >= 0 && json_integer_value(max) < s.n) {
        s.n = json_integer_value(max);
        s.finish = "MAX_TOKENS";
    }
    s.tool_calls = s.d.tool_calls > 0 ? s.d.tool_calls : 0;
    if (s.tool_calls > 0)
        s.finish = "STOP"; /* Gemini's own: tool calls end with STOP */
    s.tool_names = json_array();
    json_t *t;
    json_array_foreach(json_object_get(body, "tools"), i, t)
    {
        size_t j;
        json_t *fd;
        json_array_foreach(json_object_get(t, "functionDeclarations"), j, fd)
        {
            json_t *name = json_object_get(fd, "name");
            if (json_is_string(name))
                json_array_append(s.tool_names, name);
        }
    }
    reply_generate(req, &s);
    json_decref(s.tool_names);
done:
    json_decref(body);
}

int
mock_gemini_route(h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized;
    if (is_method(req, "POST") && h2o_memis(path.base, path.len, H2O_STRLIT("/token"))) {
        on_token(req);
        return 1;
    }
    if (is_method(req, "GET") && (h2o_memis(path.base, path.len, H2O_STRLIT("/v1beta/models")))) {
        on_models(req);
        return 1;
    }
    static const char *const gemini_prefixes[] = {"/v1beta/models/", "/v1/models/"};
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(gemini_prefixes[i]);
        /* only model calls: OpenAI's GET /v1/models/{id} has no ':' */
        if (has_prefix(path, gemini_prefixes[i]) && memchr(path.base + n, ':', path.len - n) != NULL &&
            memchr(path.base + n, '/', path.len - n) == NULL) {
            on_model_call(req, 0, h2o_iovec_init(path.base + n, path.len - n));
            return 1;
        }
    }
    if (has_prefix(path, "/v1/projects/") || has_prefix(path, "/v1beta1/projects/")) {
        static const char marker[] = "/publishers/google/models/";
        const char *m = memmem(path.base, path.len, marker, sizeof(marker) - 1);
        if (m != NULL) {
            const char *start = m + sizeof(marker) - 1;
            on_model_call(req, 1, h2o_iovec_init(start, path.len - (size_t)(start - path.base)));
            return 1;
        }
    }
    return 0;
}
