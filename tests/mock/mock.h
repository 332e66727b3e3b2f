/*
 * The mock provider's internal API: what the core (mock_provider.c: server, recording, directives, the
 * fast OpenAI path) shares with the wire-format modules (mock_<provider>.c), and the event-list reply
 * engine (mock_reply.c) those modules answer with.
 *
 * Every wire format works out the same scenario from a request: prompt tokens by the formula in
 * README.md, the same completion words, the same directives. So a test can predict exact token counts
 * whichever provider's format sits behind the gateway.
 */
#ifndef MOCK_H
#define MOCK_H

#include <stddef.h>
#include <stdint.h>
#include <h2o.h>
#include <jansson.h>

#define MOCK_DEFAULT_TOKENS 16
#define MOCK_MAX_TOKENS     100000
#define MOCK_MAX_DELAY_MS   600000

/* -1: unset. See README.md for each directive's meaning. */
struct mock_directives {
    int64_t tokens, cached, status, delay_ms, chunk_delay_ms, reset_after, error_after, tool_calls;
};

void mock_directives_init(struct mock_directives *d);
/* Finds every `[mock:a=1,b=2]` in text. */
void mock_directives_scan(struct mock_directives *d, const char *s, size_t n);
/* x-mock-<name> request headers; they win over text directives, so call this last. */
void mock_directives_from_headers(struct mock_directives *d, h2o_req_t *req);

/* Prompt tokens contributed by one message whose text is `bytes` long: 4 + ceil(bytes / 4). */
static inline int64_t
mock_message_tokens(size_t bytes)
{
    return 4 + (int64_t)((bytes + 3) / 4);
}
/* UTF-8 bytes of a message content's text: a string, or the "text" of each {"type":"text"} part (OpenAI,
 * Anthropic and Cohere shapes); scans them for directives when scan_into is not NULL. */
size_t mock_content_text(json_t *content, struct mock_directives *scan_into);
/* A non-negative integer member, or -1. */
int64_t mock_int_field(json_t *obj, const char *name);
/* Completion token i (0-based): the fixed word list, cycling. */
const char *mock_word(size_t i);
/* The mock's tool-call arguments for call i (JSON object text), the same in every format. */
const char *mock_tool_args(size_t i);

/* The mock's embedding of a text, the same in every wire format: h = FNV-1a 32 of the text's bytes, value
 * j = ((h + j * 40503) mod 2^32 mod 2049 - 1024) / 1024 (exact in binary, so printed short). */
uint32_t mock_embedding_hash(const char *text, size_t len);
double mock_embedding_value(uint32_t h, int64_t j);
json_t *mock_embedding_json(const char *text, size_t len, int64_t dims);

/*
 * Served totals (GET /__mock/served): replies whose final usage went out to the client, one request each,
 * with input (cached included), output and cached tokens. Lock-free, any worker thread. A stream counts
 * only when its usage-bearing event is handed to h2o, a cut (reset_after) or failed (error_after)
 * reply never; an error status never.
 */
void mock_served_add(int64_t input, int64_t output, int64_t cached);

/* A new process-wide request number (for ids: req_mock_<n>). */
uint64_t mock_next_seq(void);
/* Records the request for /__mock/last and counts it for /__mock/stats. body may be NULL. */
void mock_record(h2o_req_t *req, json_t *body);
/* The configured --api-key, or NULL when any key is accepted. */
const char *mock_api_key(void);
/* A request header's value (first occurrence), or a NULL base. */
h2o_iovec_t mock_header(h2o_req_t *req, const char *lc_name);

void mock_add_header(h2o_req_t *req, const char *name, const char *value);
/* Sends a complete body; body must live in req->pool (or be static). */
void mock_send_body(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len);
/* Sends a JSON value as the body (the value stays the caller's). */
void mock_send_json(h2o_req_t *req, int status, json_t *v);

/*
 * The event-list reply: the module queues the body (one event) or the stream's events up front, then
 * starts it. delay_ms waits before the headers; chunk_delay_ms waits before every event after the first.
 * mock_reply_cut marks a point where the connection is aborted (reset_after): events queued after it
 * are never sent. The reply lives in req->pool and frees itself.
 */
struct mock_reply;
struct mock_reply *mock_reply_new(h2o_req_t *req, int status, const char *content_type);
void mock_reply_event(struct mock_reply *r, const void *bytes, size_t len);
void mock_reply_eventf(struct mock_reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mock_reply_event_json(struct mock_reply *r, const char *prefix, json_t *v, const char *suffix);
void mock_reply_cut(struct mock_reply *r);
/* The event queued last carries the reply's final usage: when it goes out (it is before any cut), the
 * tokens are added to the served totals (mock_served_add). Input counts every prompt token, cached
 * ones included, whatever the wire format reports; one call per reply. */
void mock_reply_served(struct mock_reply *r, int64_t input, int64_t output, int64_t cached);
void mock_reply_start(struct mock_reply *r, const struct mock_directives *d);

/* Wire-format modules: each returns 1 when it handled the request (its paths), else 0. */
int mock_anthropic_route(h2o_req_t *req);
int mock_gemini_route(h2o_req_t *req);
int mock_bedrock_route(h2o_req_t *req);
int mock_cohere_route(h2o_req_t *req);
int mock_ollama_route(h2o_req_t *req);
int mock_openai_quirks_route(h2o_req_t *req); /* Azure deployment URLs, Mistral and Groq checks */

/* mock_openai_quirks.c: a chat reply with the tool_calls directive, in the OpenAI format. */
void mock_openai_tool_reply(h2o_req_t *req, json_t *root, const struct mock_directives *d, uint64_t seq);
/* Command-line settings of the wire-format modules. */
void mock_bedrock_set_secret(const char *secret);      /* verify SigV4 with it */
int mock_gemini_load_public_key(const char *pem_path); /* verify Vertex JWT assertions with it */

#endif
