/*
 * The mock provider's AWS Bedrock Runtime wire format: Converse, ConverseStream (binary event-stream
 * frames with both CRCs and the random "p" padding), CountTokens and Titan text embeddings through
 * InvokeModel. The scenario is the shared one (mock.h, README.md): prompt tokens by the formula, the
 * fixed words, the directives.
 *
 * Auth is checked the way Bedrock does: a SigV4 signature, recomputed with the secret given by
 * --aws-secret-access-key (so a gateway that signs the single-encoded path, the wrong service name or
 * other bytes than it sends gets the real 403), or a Bedrock API key as `Authorization: Bearer <--api-key>`.
 * With neither flag, any request is accepted.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "mock.h"
#include "tollgate/arena.h"
#include "tollgate/buf.h"
#include "tollgate/crypto.h"
#include "translate/bedrock/eventstream.h"
#include "translate/bedrock/sigv4.h"

#define MAX_SKEW_S 300 /* AWS refuses signatures more than 5 minutes off */
#define ERROR_NS   ":http://internal.amazon.com/coral/com.amazon.bedrock/"

static const char *aws_secret;

/* Set from main() (--aws-secret-access-key): SigV4 signatures are then verified with it. */
void
mock_bedrock_set_secret(const char *secret)
{
    aws_secret = secret;
}

/* ---------------------------------------------------------------- errors */

static const char *
exception_for(int status, const char **ret_message)
{
    switch (status) {
    case 400:
        *ret_message = "mock bad request";
        return "ValidationException";
    case 401:
    case 403:
        *ret_message = status == 401 ? "The security token included in the request is invalid."
                                     : "You don't have access to the model with the specified model ID.";
        return status == 401 ? "UnrecognizedClientException" : "AccessDeniedException";
    case 404:
        *ret_message = "The provided model identifier is invalid.";
        return "ResourceNotFoundException";
    case 408:
        *ret_message = "Model has timed out in processing the request.";
        return "ModelTimeoutException";
    case 424:
        *ret_message = "Received error from the model (mock).";
        return "ModelErrorException";
    case 429:
        *ret_message = "Too many requests, please wait before trying again.";
        return "ThrottlingException";
    case 500:
        *ret_message = "The server encountered an internal error while processing the request.";
        return "InternalServerException";
    case 503:
        *ret_message = "Bedrock is unable to process your request.";
        return "ServiceUnavailableException";
    default:
        *ret_message = "mock error";
        return status < 500 ? "ValidationException" : "InternalServerException";
    }
}

/* An error the way Bedrock sends one: the status, x-amzn-ErrorType and {"message"}. */
static void
send_error(h2o_req_t *req, int status, const char *type, const char *message, const struct mock_directives *d)
{
    char hv[256];
    snprintf(hv, sizeof(hv), "%s%s", type, ERROR_NS);
    mock_add_header(req, "x-amzn-ErrorType", hv);
    json_t *body = json_pack("{s:s}", "message", message);
    struct mock_reply *r = mock_reply_new(req, status, "application/json");
    mock_reply_event_json(r, NULL, body, NULL);
    json_decref(body);
    mock_reply_start(r, d);
}

/* ---------------------------------------------------------------- auth */

/* The value of key= in an Authorization header's comma-separated list (NUL-terminated copy in out). */
static int
auth_param(const char *auth, size_t len, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = auth, *end = auth + len; p + kl < end; p++) {
        if ((p == auth || p[-1] == ' ' || p[-1] == ',') && memcmp(p, key, kl) == 0 && p[kl] == '=') {
            const char *v = p + kl + 1, *e = v;
            while (e < end && *e != ',' && *e != ' ')
                e++;
            if ((size_t)(e - v) >= cap)
                return -1;
            memcpy(out, v, (size_t)(e - v));
            out[e - v] = '\0';
            return 0;
        }
    }
    return -1;
}

static int64_t
parse_amz_date(const char *s)
{
    struct tm tm = {0};
    if (strlen(s) != 16 || strptime(s, "%Y%m%dT%H%M%SZ", &tm) == NULL)
        return -1;
    return (int64_t)timegm(&tm);
}

/* Recomputes the request's SigV4 signature. 0 when it matches; else the message to send with a 403. */
static const char *
verify_sigv4(h2o_req_t *req, h2o_iovec_t auth)
{
    static const char *const mismatch =
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
        "Access Key and signing method. Consult the service documentation for details.";
    char credential[256], signed_headers[512], signature[80];
    if (auth_param(auth.base, auth.len, "Credential", credential, sizeof(credential)) != 0 ||
        auth_param(auth.base, auth.len, "SignedHeaders", signed_headers, sizeof(signed_headers)) != 0 ||
        auth_param(auth.base, auth.len, "Signature", signature, sizeof(signature)) != 0)
        return "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.";
    /* Credential = AKID/YYYYMMDD/region/service/aws4_request */
    char *parts[5] = {0}, *save = NULL;
    int n = 0;
    for (char *t = strtok_r(credential, "/", &save); t != NULL && n < 5; t = strtok_r(NULL, "/", &save))
        parts[n++] = t;
    if (n != 5 || strcmp(parts[4], "aws4_request") != 0)
        return "Credential should be scoped to a valid region.";
    if (strcmp(parts[3], "bedrock") != 0)
        return "Credential should be scoped to correct service: 'bedrock'.";

    h2o_iovec_t date = mock_header(req, "x-amz-date");
    char amz_date[32];
    if (date.base == NULL || date.len >= sizeof(amz_date))
        return "Missing X-Amz-Date header.";
    memcpy(amz_date, date.base, date.len);
    amz_date[date.len] = '\0';
    int64_t t = parse_amz_date(amz_date), now = (int64_t)time(NULL);
    if (t < 0 || strncmp(amz_date, parts[1], 8) != 0)
        return mismatch;
    if (t < now - MAX_SKEW_S || t > now + MAX_SKEW_S)
        return "Signature expired: the request time is too far from the server time.";

    tg_arena_t a = TG_ARENA_INIT;
    tx_sigv4_header_t hs[16];
    size_t nh = 0;
    const char *result = NULL;
    save = NULL;
    for (char *name = strtok_r(signed_headers, ";", &save); name != NULL; name = strtok_r(NULL, ";", &save)) {
        if (nh == sizeof(hs) / sizeof(hs[0])) {
            result = mismatch;
            goto done;
        }
        h2o_iovec_t v = strcmp(name, "host") == 0 ? req->authority : mock_header(req, name);
        if (v.base == NULL) {
            result = mismatch; /* a signed header that was not sent */
            goto done;
        }
        hs[nh].name = name;
        hs[nh].value = tg_arena_strndup(&a, v.base, v.len);
        nh++;
    }
    uint8_t digest[32];
    char payload_hash[65];
    tg_sha256(req->entity.base != NULL ? req->entity.base : "", req->entity.len, digest);
    tg_hex_encode(digest, sizeof(digest), payload_hash);
    const char *q = memchr(req->path.base, '?', req->path.len);
    size_t plen = q != NULL ? (size_t)(q - req->path.base) : req->path.len;
    char *path = tg_arena_strndup(&a, req->path.base, plen);
    char *query = q != NULL ? tg_arena_strndup(&a, q + 1, req->path.len - plen - 1) : NULL;
    char *method = tg_arena_strndup(&a, req->method.base, req->method.len);
    const char *sh;
    char *creq = tx_sigv4_canonical_request(method, path, query, hs, nh, payload_hash, &a, &sh);
    char want[65];
    if (creq == NULL) {
        result = mismatch;
        goto done;
    }
    tx_sigv4_signature(aws_secret, amz_date, parts[2], "bedrock", creq, want);
    if (!tg_ct_streq(want, signature))
        result = mismatch;
done:
    tg_arena_free(&a);
    return result;
}

/* 0 when the request may proceed; otherwise the 403 has been sent. */
static int
check_auth(h2o_req_t *req)
{
    const char *api_key = mock_api_key();
    if (api_key == NULL && aws_secret == NULL)
        return 0;
    h2o_iovec_t auth = mock_header(req, "authorization");
    const char *msg = "Missing Authentication Token";
    const char *type = "MissingAuthenticationTokenException";
    if (auth.base != NULL && auth.len > 7 && memcmp(auth.base, "Bearer ", 7) == 0) {
        if (api_key != NULL && auth.len - 7 == strlen(api_key) && memcmp(auth.base + 7, api_key, auth.len - 7) == 0)
            return 0;
        msg = "Invalid API Key format: Must start with pre-defined prefix";
        type = "UnrecognizedClientException";
    } else if (auth.base != NULL && auth.len > 17 && memcmp(auth.base, "AWS4-HMAC-SHA256 ", 17) == 0) {
        if (aws_secret == NULL) {
            msg = "The security token included in the request is invalid.";
            type = "UnrecognizedClientException";
        } else if ((msg = verify_sigv4(req, auth)) == NULL) {
            return 0;
        } else {
            type = "InvalidSignatureException";
        }
    }
    send_error(req, 403, type, msg, NULL);
    return -1;
}

/* ---------------------------------------------------------------- the scenario */

/* Bytes of a Converse content array's text blocks; scans them for directives when d is given. */
static size_t
blocks_text(json_t *content, struct mock_directives *d)
{
    size_t total = 0, i;
    json_t *b;
    json_array_foreach(content, i, b)
    {
        json_t *t = json_object_get(b, "text");
        if (!json_is_string(t))
            continue;
        if (d != NULL)
            mock_directives_scan(d, json_string_value(t), json_string_length(t));
        total += json_string_length(t);
    }
    return total;
}

/* Prompt tokens of a Converse body (messages, system); directives from the last user message. */
static int64_t
prompt_tokens(json_t *body, struct mock_directives *d)
{
    json_t *msgs = json_object_get(body, "messages"), *sys = json_object_get(body, "system"), *m;
    size_t last_user = SIZE_MAX, i;
    json_array_foreach(msgs, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role != NULL && strcmp(role, "user") == 0)
            last_user = i;
    }
    int64_t total = 0;
    if (json_is_array(sys) && json_array_size(sys) > 0)
        total += mock_message_tokens(blocks_text(sys, NULL));
    json_array_foreach(msgs, i, m) total +=
        mock_message_tokens(blocks_text(json_object_get(m, "content"), i == last_user ? d : NULL));
    return total;
}

struct scenario {
    uint64_t seq;
    int64_t prompt, cached, ntokens, ntools;
    int length_cut, stream;
    json_t *tools; /* toolConfig.tools, borrowed */
};

static const char *
tool_name(const struct scenario *s, size_t i)
{
    size_t n = json_array_size(s->tools);
    const char *name =
        n > 0 ? json_string_value(json_object_get(json_object_get(json_array_get(s->tools, i % n), "toolSpec"), "name"))
              : NULL;
    return name != NULL ? name : "get_weather";
}

static const char *
stop_reason(const struct scenario *s)
{
    return s->ntools > 0 ? "tool_use" : s->length_cut ? "max_tokens" : "end_turn";
}

static json_t *
usage(const struct scenario *s)
{
    int64_t completion = s->ntokens; /* tool calls count as the N tokens too (README) */
    json_t *u = json_pack("{s:I,s:I,s:I}", "inputTokens", (json_int_t)(s->prompt - s->cached), "outputTokens",
                          (json_int_t)completion, "totalTokens", (json_int_t)(s->prompt + completion));
    if (s->cached > 0) {
        json_object_set_new(u, "cacheReadInputTokens", json_integer(s->cached));
        json_object_set_new(u, "cacheWriteInputTokens", json_integer(0));
    }
    return u;
}

/* The random padding Bedrock adds to every stream event so that sizes leak nothing. */
static void
pad(json_t *o, uint32_t *rng)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0";
    *rng = *rng * 1103515245u + 12345u;
    size_t n = 1 + (*rng >> 16) % (sizeof(alphabet) - 1);
    json_object_set_new(o, "p", json_stringn(alphabet, n));
}

static void
add_frame(struct mock_reply *r, const char *type, const char *event, json_t *payload, uint32_t *rng)
{
    if (strcmp(type, "event") == 0)
        pad(payload, rng);
    char *s = json_dumps(payload, JSON_COMPACT);
    tg_buf_t b = {0};
    if (s == NULL || tx_eventstream_encode(&b, type, event, s, strlen(s)) != 0)
        abort();
    mock_reply_event(r, b.base, b.len);
    tg_buf_free(&b);
    free(s);
    json_decref(payload);
}

static void
reply_converse(h2o_req_t *req, const struct scenario *s, const struct mock_directives *d)
{
    json_t *content = json_array();
    if (s->ntools > 0) {
        for (int64_t i = 0; i < s->ntools; i++) {
            char id[64];
            snprintf(id, sizeof(id), "tooluse_mock%" PRIu64 "x%" PRId64, s->seq, i);
            json_array_append_new(content, json_pack("{s:{s:s,s:s,s:o}}", "toolUse", "toolUseId", id, "name",
                                                     tool_name(s, i), "input", json_loads(mock_tool_args(i), 0, NULL)));
        }
    } else if (s->ntokens > 0) {
        tg_buf_t text = {0};
        for (int64_t i = 0; i < s->ntokens; i++)
            tg_buf_appends(&text, mock_word(i));
        json_array_append_new(content, json_pack("{s:s%}", "text", text.base, text.len));
        tg_buf_free(&text);
    }
    json_t *body = json_pack("{s:{s:{s:s,s:o}},s:s,s:o,s:{s:i}}", "output", "message", "role", "assistant", "content",
                             content, "stopReason", stop_reason(s), "usage", usage(s), "metrics", "latencyMs", 42);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    size_t len = strlen(text);
    struct mock_reply *r = mock_reply_new(req, 200, "application/json");
    if (d->reset_after >= 0) { /* half the body, then the connection drops */
        mock_reply_event(r, text, len / 2);
        mock_reply_cut(r);
        mock_reply_event(r, text + len / 2, len - len / 2);
    } else {
        mock_reply_event(r, text, len);
    }
    mock_reply_served(r, s->prompt, s->ntokens, s->cached);
    free(text);
    mock_reply_start(r, d);
}

static void
reply_stream(h2o_req_t *req, const struct scenario *s, const struct mock_directives *d)
{
    struct mock_reply *r = mock_reply_new(req, 200, "application/vnd.amazon.eventstream");
    uint32_t rng = (uint32_t)s->seq * 2654435761u;
    int64_t n_content = s->ntools > 0 ? 2 * s->ntools : s->ntokens, sent = 0;
    int64_t reset_at = d->reset_after >= 0 && d->reset_after <= n_content ? d->reset_after : -1;
    int64_t error_at = d->error_after >= 0 && d->error_after <= n_content && reset_at < 0 ? d->error_after : -1;

    add_frame(r, "event", "messageStart", json_pack("{s:s}", "role", "assistant"), &rng);
    /* one content event: a cut or an error may come before it */
#define CONTENT(event, payload)                                                                                        \
    do {                                                                                                               \
        if (sent == reset_at) {                                                                                        \
            mock_reply_cut(r);                                                                                         \
        } else if (sent == error_at) {                                                                                 \
            add_frame(r, "exception", "modelStreamErrorException",                                                     \
                      json_pack("{s:s,s:i}", "message", "mock mid-stream failure", "originalStatusCode", 500), &rng);  \
            goto start;                                                                                                \
        }                                                                                                              \
        add_frame(r, "event", event, payload, &rng);                                                                   \
        sent++;                                                                                                        \
    } while (0)

    if (s->ntools > 0) {
        for (int64_t i = 0; i < s->ntools; i++) {
            char id[64];
            snprintf(id, sizeof(id), "tooluse_mock%" PRIu64 "x%" PRId64, s->seq, i);
            add_frame(r, "event", "contentBlockStart",
                      json_pack("{s:I,s:{s:{s:s,s:s}}}", "contentBlockIndex", (json_int_t)i, "start", "toolUse",
                                "toolUseId", id, "name", tool_name(s, i)),
                      &rng);
            /* the arguments' JSON text in two fragments, as Bedrock streams them */
            const char *args = mock_tool_args(i);
            size_t half = strlen(args) / 2;
            CONTENT("contentBlockDelta", json_pack("{s:I,s:{s:{s:s%}}}", "contentBlockIndex", (json_int_t)i, "delta",
                                                   "toolUse", "input", args, half));
            CONTENT("contentBlockDelta", json_pack("{s:I,s:{s:{s:s}}}", "contentBlockIndex", (json_int_t)i, "delta",
                                                   "toolUse", "input", args + half));
            add_frame(r, "event", "contentBlockStop", json_pack("{s:I}", "contentBlockIndex", (json_int_t)i), &rng);
        }
    } else if (s->ntokens > 0) {
        /* text blocks get no contentBlockStart */
        for (int64_t i = 0; i < s->ntokens; i++)
            CONTENT("contentBlockDelta",
                    json_pack("{s:i,s:{s:s}}", "contentBlockIndex", 0, "delta", "text", mock_word(i)));
        add_frame(r, "event", "contentBlockStop", json_pack("{s:i}", "contentBlockIndex", 0), &rng);
    }
    if (sent == error_at) { /* K = N: the error comes after the last content event */
        add_frame(r, "exception", "modelStreamErrorException",
                  json_pack("{s:s,s:i}", "message", "mock mid-stream failure", "originalStatusCode", 500), &rng);
        goto start;
    }
    if (sent == reset_at)
        mock_reply_cut(r);
    add_frame(r, "event", "messageStop", json_pack("{s:s}", "stopReason", stop_reason(s)), &rng);
    add_frame(r, "event", "metadata", json_pack("{s:o,s:{s:i}}", "usage", usage(s), "metrics", "latencyMs", 42), &rng);
    mock_reply_served(r, s->prompt, s->ntokens, s->cached);
#undef CONTENT
start:
    mock_reply_start(r, d);
}

static void
reply_embedding(h2o_req_t *req, json_t *body, const struct mock_directives *d)
{
    json_t *text = json_object_get(body, "inputText");
    if (!json_is_string(text)) {
        send_error(req, 400, "ValidationException",
                   "Malformed input request: #: required key [inputText] not found, please reformat your input and "
                   "try again.",
                   d);
        return;
    }
    json_t *dims = json_object_get(body, "dimensions");
    int64_t n = json_is_integer(dims) ? json_integer_value(dims) : 1024;
    if (n != 256 && n != 512 && n != 1024) {
        send_error(req, 400, "ValidationException", "Malformed input request: dimensions must be 256, 512 or 1024.", d);
        return;
    }
    size_t bytes = json_string_length(text);
    json_t *emb = mock_embedding_json(json_string_value(text), bytes, n);
    json_t *out =
        json_pack("{s:o,s:I}", "embedding", emb, "inputTextTokenCount", (json_int_t)mock_message_tokens(bytes));
    struct mock_reply *r = mock_reply_new(req, 200, "application/json");
    mock_reply_event_json(r, NULL, out, NULL);
    mock_reply_served(r, mock_message_tokens(bytes), 0, 0);
    json_decref(out);
    mock_reply_start(r, d);
}

/* ---------------------------------------------------------------- routing */

enum { OP_CONVERSE, OP_STREAM, OP_INVOKE, OP_COUNT };

int
mock_bedrock_route(h2o_req_t *req)
{
    h2o_iovec_t path = req->path; /* raw: the model id is percent-encoded in it */
    size_t plen = path.len;
    const char *q = memchr(path.base, '?', path.len);
    if (q != NULL)
        plen = (size_t)(q - path.base);
    if (plen < 8 || memcmp(path.base, "/model/", 7) != 0)
        return 0;
    const char *slash = NULL;
    for (size_t i = plen; i > 7; i--)
        if (path.base[i - 1] == '/') {
            slash = path.base + i - 1;
            break;
        }
    if (slash == NULL || slash == path.base + 7)
        return 0;
    h2o_iovec_t action = h2o_iovec_init(slash + 1, path.base + plen - slash - 1);
    int op;
    if (h2o_memis(action.base, action.len, H2O_STRLIT("converse")))
        op = OP_CONVERSE;
    else if (h2o_memis(action.base, action.len, H2O_STRLIT("converse-stream")))
        op = OP_STREAM;
    else if (h2o_memis(action.base, action.len, H2O_STRLIT("invoke")))
        op = OP_INVOKE;
    else if (h2o_memis(action.base, action.len, H2O_STRLIT("count-tokens")))
        op = OP_COUNT;
    else
        return 0;

    uint64_t seq = mock_next_seq();
    char rid[64];
    snprintf(rid, sizeof(rid), "00000000-0000-4000-8000-%012" PRIx64, seq);
    mock_add_header(req, "x-amzn-RequestId", h2o_strdup(&req->pool, rid, SIZE_MAX).base);

    json_t *body = req->entity.base != NULL ? json_loadb(req->entity.base, req->entity.len, 0, NULL) : NULL;
    mock_record(req, body);
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        send_error(req, 405, "ValidationException", "Method not allowed (mock)", NULL);
        goto done;
    }
    if (check_auth(req) != 0)
        goto done;
    struct mock_directives d;
    mock_directives_init(&d);
    if (!json_is_object(body)) {
        send_error(req, 400, "ValidationException",
                   "Malformed input request, please reformat your input and try again.", &d);
        goto done;
    }
    json_t *source = op == OP_COUNT ? json_object_get(json_object_get(body, "input"), "converse") : body;
    int64_t prompt = op != OP_INVOKE ? prompt_tokens(source, &d) : 0;
    if (op == OP_INVOKE) {
        json_t *t = json_object_get(body, "inputText");
        if (json_is_string(t))
            mock_directives_scan(&d, json_string_value(t), json_string_length(t));
    }
    mock_directives_from_headers(&d, req);
    if (d.status >= 100 && d.status != 200) {
        const char *msg, *type = exception_for((int)d.status, &msg);
        send_error(req, (int)d.status, type, msg, &d);
        goto done;
    }
    if (op == OP_INVOKE) {
        reply_embedding(req, body, &d);
        goto done;
    }
    json_t *msgs = json_object_get(source, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        send_error(req, 400, "ValidationException",
                   "Malformed input request: #: required key [messages] not found, please reformat your input and try "
                   "again.",
                   &d);
        goto done;
    }
    if (op == OP_COUNT) {
        json_t *out = json_pack("{s:I}", "inputTokens", (json_int_t)prompt);
        struct mock_reply *r = mock_reply_new(req, 200, "application/json");
        mock_reply_event_json(r, NULL, out, NULL);
        json_decref(out);
        mock_reply_start(r, &d);
        goto done;
    }

    struct scenario s = {.seq = seq, .prompt = prompt, .stream = op == OP_STREAM};
    s.tools = json_object_get(json_object_get(body, "toolConfig"), "tools");
    s.ntokens = d.tokens >= 0 ? d.tokens : MOCK_DEFAULT_TOKENS;
    s.ntools = d.tool_calls > 0 ? d.tool_calls : 0;
    json_t *max = json_object_get(json_object_get(body, "inferenceConfig"), "maxTokens");
    if (json_is_integer(max) && json_integer_value(max) >= 0 && json_integer_value(max) < s.ntokens && s.ntools == 0) {
        s.ntokens = json_integer_value(max);
        s.length_cut = 1;
    }
    s.cached = d.cached < 0 ? 0 : d.cached < prompt ? d.cached : prompt;
    if (s.stream)
        reply_stream(req, &s, &d);
    else
        reply_converse(req, &s, &d);
done:
    json_decref(body);
    return 1;
}
