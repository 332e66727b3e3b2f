/*
 * The translation core: one neutral representation of LLM requests, responses, stream events and
 * errors, and the two kinds of adapter that convert to and from it.
 *
 *   client body --dialect.decode_request--> tx_request_t --provider.encode_request--> upstream HTTP request
 *   upstream body --provider.decode_response--> tx_response_t --dialect.encode_response--> client body
 *   upstream stream --framing--> tx_frame_t --provider.stream_frame--> tx_event_t --dialect.stream_event--> bytes
 *   upstream error --provider.decode_error--> tx_error_t --dialect.encode_error--> client error body
 *
 * A dialect is what a client speaks (OpenAI, Anthropic, Gemini); a provider adapter is what an upstream
 * speaks (OpenAI and its compatible family, Azure, Anthropic, Gemini, Vertex, Bedrock, Cohere, Ollama).
 * Adding one costs one adapter, never N×M pairwise code. The OpenAI-in/OpenAI-compatible-out case does
 * not come through here at all: it stays on the splice passthrough (translate/openai_chat.c).
 *
 * Every function here is pure: no I/O, no clock, no globals. Memory: neutral objects live in a
 * tg_arena_t owned by the request; JSON trees (jansson) referenced from them are kept alive by the
 * arena (tx_arena_keep). Stream translation is event by event with state of bounded size: nothing
 * buffers a whole stream (tool-call arguments of one call may be accumulated, capped).
 *
 * Conventions: strings are NUL-terminated UTF-8; NULL means absent. Integers use -1 for "absent"
 * where a negative value makes no sense. Functions return 0 on success and -1 on failure, with the
 * failure described in the tx_error_t they were given (a client error, e.g. a 400, or an upstream
 * protocol error, a 502).
 */
#ifndef DP_TX_H
#define DP_TX_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "tollgate/arena.h"
#include "tollgate/buf.h"

/* ---------------------------------------------------------------- errors */

typedef enum tx_error_kind {
    TX_ERR_INVALID_REQUEST = 0, /* 400 */
    TX_ERR_AUTHENTICATION,      /* 401 */
    TX_ERR_BILLING,             /* 402 */
    TX_ERR_PERMISSION,          /* 403 */
    TX_ERR_NOT_FOUND,           /* 404 */
    TX_ERR_TOO_LARGE,           /* 413 */
    TX_ERR_UNPROCESSABLE,       /* 422 */
    TX_ERR_RATE_LIMIT,          /* 429 */
    TX_ERR_SERVER,              /* 500 */
    TX_ERR_UPSTREAM,            /* 502: the provider failed or answered something we cannot read */
    TX_ERR_OVERLOADED,          /* 503 (Anthropic's 529) */
    TX_ERR_TIMEOUT,             /* 504 */
} tx_error_kind_t;

typedef struct tx_error {
    int status; /* HTTP status to report (0: the kind's default) */
    tx_error_kind_t kind;
    char message[512];
    char code[64];  /* machine-readable code, e.g. "context_length_exceeded"; "" when none */
    char param[64]; /* the offending request field; "" when none */
} tx_error_t;

/* Fills e (truncating safely). Returns -1 so that decoders can `return tx_fail(...)`. */
int tx_fail(tx_error_t *e, tx_error_kind_t kind, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The gateway ran out of memory (500, out_of_memory). Returns -1. */
int tx_oom(tx_error_t *e);
/* The default status of a kind, and the kind of a status. */
int tx_error_status(const tx_error_t *e);
tx_error_kind_t tx_error_kind_of_status(int status);

/* ---------------------------------------------------------------- requests */

/* The client-facing APIs. */
typedef enum tx_dialect {
    TX_DIALECT_OPENAI = 0,
    TX_DIALECT_ANTHROPIC,
    TX_DIALECT_GEMINI,
    TX_DIALECT_COUNT
} tx_dialect_t;

typedef enum tx_op {
    TX_OP_CHAT = 0,     /* chat completions / messages / generateContent */
    TX_OP_COMPLETION,   /* legacy text completion: one user message, text out */
    TX_OP_EMBED,        /* embeddings */
    TX_OP_COUNT_TOKENS, /* input token count only */
} tx_op_t;

typedef enum tx_role {
    TX_ROLE_USER = 0,
    TX_ROLE_ASSISTANT,
    TX_ROLE_TOOL, /* tool results; dialects without a tool role put them in a user turn */
} tx_role_t;

typedef enum tx_part_kind {
    TX_PART_TEXT = 0,
    TX_PART_IMAGE,
    TX_PART_TOOL_CALL,   /* assistant: the model calls a tool */
    TX_PART_TOOL_RESULT, /* tool/user: the result of a call */
    TX_PART_THINKING,    /* assistant reasoning; text + signature, sent back unchanged */
    TX_PART_REDACTED_THINKING,
} tx_part_kind_t;

typedef struct tx_part {
    tx_part_kind_t kind;
    const char *text;       /* TEXT; THINKING; REDACTED_THINKING (opaque data); TOOL_RESULT (content as text) */
    const char *signature;  /* THINKING */
    const char *media_type; /* IMAGE: e.g. "image/png" (with data), may be NULL with url */
    const char *data;       /* IMAGE: base64 bytes */
    const char *url;        /* IMAGE: http(s) URL (data: URIs are split into media_type + data) */
    const char *id;         /* TOOL_CALL: call id; TOOL_RESULT: the id of the call it answers */
    const char *name;       /* TOOL_CALL: function name; TOOL_RESULT: function name when known */
    json_t *args;           /* TOOL_CALL: arguments, always a JSON object ({} when empty) */
    int is_error;           /* TOOL_RESULT */
} tx_part_t;

typedef struct tx_message {
    tx_role_t role;
    tx_part_t *parts;
    size_t n_parts;
} tx_message_t;

typedef struct tx_tool {
    const char *name;
    const char *description; /* may be NULL */
    json_t *parameters;      /* JSON Schema of the arguments (an object); NULL: none */
} tx_tool_t;

typedef enum tx_tool_choice {
    TX_TOOL_CHOICE_UNSET = 0,
    TX_TOOL_CHOICE_AUTO,
    TX_TOOL_CHOICE_NONE,
    TX_TOOL_CHOICE_REQUIRED, /* must call some tool */
    TX_TOOL_CHOICE_NAMED,    /* must call tool_choice_name */
} tx_tool_choice_t;

typedef enum tx_format {
    TX_FORMAT_TEXT = 0,
    TX_FORMAT_JSON_OBJECT,
    TX_FORMAT_JSON_SCHEMA,
} tx_format_t;

typedef struct tx_request {
    tx_op_t op;
    const char *model; /* as the client named it */
    int stream;

    /* chat */
    const char *system; /* all system/developer text, joined with "\n\n"; NULL when none */
    tx_message_t *messages;
    size_t n_messages;
    tx_tool_t *tools;
    size_t n_tools;
    tx_tool_choice_t tool_choice;
    const char *tool_choice_name;
    int parallel_tool_calls; /* -1 unset, 0, 1 */
    int64_t max_tokens;      /* -1 unset */
    double temperature, top_p;
    int has_temperature, has_top_p;
    int64_t top_k; /* -1 unset */
    const char **stop;
    size_t n_stop;
    int64_t seed;
    int has_seed;
    double presence_penalty, frequency_penalty;
    int has_presence_penalty, has_frequency_penalty;
    tx_format_t format;
    json_t *format_schema;   /* TX_FORMAT_JSON_SCHEMA */
    const char *format_name; /* schema name, may be NULL */
    const char *user;        /* end-user id, may be NULL */
    int include_usage;       /* the client asked for usage in the stream (OpenAI stream_options) */
    /* The dialect the request came in, and the members of its body not modelled above (an object, or
     * NULL): an encoder of the same family may forward them (OpenAI client -> Mistral keeps logprobs,
     * say), minus what its provider rejects. Other encoders ignore them. */
    tx_dialect_t dialect;
    json_t *extra;

    /* embeddings */
    const char **inputs;
    size_t n_inputs;
    int64_t dimensions;    /* -1 unset */
    int base64_embedding;  /* the client wants OpenAI's base64 float32 encoding */
    const char *task_type; /* Gemini taskType / Cohere input_type hint, may be NULL */

    /* set by the pipeline, for what a dialect must invent (ids, timestamps): translators stay pure */
    const char *request_id;
    int64_t now_unix;
} tx_request_t;

/* ---------------------------------------------------------------- responses */

typedef enum tx_stop {
    TX_STOP_UNSET = 0,
    TX_STOP_END,            /* natural end */
    TX_STOP_SEQUENCE,       /* a stop sequence matched (stop_sequence says which, when known) */
    TX_STOP_MAX_TOKENS,     /* output limit or context window */
    TX_STOP_TOOL_USE,       /* the model called tools */
    TX_STOP_CONTENT_FILTER, /* safety, refusal, guardrail */
    TX_STOP_PAUSE,          /* Anthropic pause_turn */
    TX_STOP_ERROR,          /* the provider reported an error as the finish reason */
} tx_stop_t;

typedef struct tx_usage {
    int64_t input;       /* every prompt token, cache reads and writes included */
    int64_t output;      /* every output token, reasoning included */
    int64_t cache_read;  /* part of input */
    int64_t cache_write; /* part of input */
    int64_t reasoning;   /* part of output; 0 when not broken out */
    int known;           /* the provider reported usage */
} tx_usage_t;

typedef struct tx_embedding {
    float *values;
    size_t n;
} tx_embedding_t;

typedef struct tx_response {
    const char *id;    /* provider's id, may be NULL (the dialect makes one up) */
    const char *model; /* model the provider reports, may be NULL */
    tx_part_t *parts;  /* TEXT, THINKING, REDACTED_THINKING, TOOL_CALL, in order */
    size_t n_parts;
    tx_stop_t stop;
    const char *stop_sequence;
    const char *raw_stop; /* the provider's own value, for logs */
    tx_usage_t usage;
    tx_embedding_t *embeddings; /* TX_OP_EMBED, in input order */
    size_t n_embeddings;
    int64_t input_tokens; /* TX_OP_COUNT_TOKENS */
    int64_t created;      /* unix seconds, 0: unknown */
} tx_response_t;

/* ---------------------------------------------------------------- streams */

typedef enum tx_event_kind {
    TX_EV_START = 0,  /* the message begins: id, model (either may be NULL); usage may hold input */
    TX_EV_TEXT,       /* index, text fragment */
    TX_EV_THINKING,   /* index, text fragment and/or signature */
    TX_EV_TOOL_START, /* index, id (NULL: the dialect makes one up), name */
    TX_EV_TOOL_ARGS,  /* index, text = fragment of the arguments' JSON text */
    TX_EV_BLOCK_END,  /* index: the content block (text, thinking or tool call) is complete */
    TX_EV_USAGE,      /* usage: cumulative, the latest event wins */
    TX_EV_STOP,       /* stop, stop_sequence */
    TX_EV_ERROR,      /* error: the stream failed after it started; nothing follows */
    TX_EV_END,        /* the stream completed normally; nothing follows */
} tx_event_kind_t;

typedef struct tx_event {
    tx_event_kind_t kind;
    int index; /* content block index, 0-based, in order of first appearance */
    const char *text;
    size_t text_len;
    const char *signature;
    const char *id;
    const char *model;
    const char *name;
    tx_stop_t stop;
    const char *stop_sequence;
    tx_usage_t usage;
    const tx_error_t *error;
} tx_event_t;

/* Receives events; a non-zero return stops the decoder, which returns it. An event's text, signature,
 * id, name and model may point into the frame being decoded: they are valid only during the call, and a
 * dialect that keeps any of them (a tool call's name, say) copies it. */
typedef int (*tx_emit_fn)(void *ctx, const tx_event_t *ev);

/* How an upstream stream is cut into messages before its adapter sees them. */
typedef enum tx_framing {
    TX_FRAMING_SSE = 0,     /* text/event-stream */
    TX_FRAMING_NDJSON,      /* one JSON value per line (Ollama native) */
    TX_FRAMING_EVENTSTREAM, /* application/vnd.amazon.eventstream (Bedrock) */
} tx_framing_t;

typedef struct tx_frame {
    const char *event; /* SSE event name / eventstream :event-type or :exception-type; NULL when none */
    size_t event_len;
    const char *data; /* SSE data / NDJSON line / eventstream payload */
    size_t data_len;
    int exception; /* eventstream :message-type is "exception" or "error" */
} tx_frame_t;

/* ---------------------------------------------------------------- upstream requests */

typedef struct tx_target {
    const char *kind;           /* provider kind, e.g. "anthropic" */
    const char *base_url;       /* no trailing slash */
    const char *upstream_model; /* the provider's model (Azure: the deployment) */
    json_t *settings;           /* provider settings object (api_version, region, project, ...), or NULL */
} tx_target_t;

#define TX_MAX_HEADERS 8

typedef struct tx_http_request {
    const char *url;                     /* arena */
    const char *headers[TX_MAX_HEADERS]; /* "Name: value" lines besides content-type, accept and auth */
    size_t n_headers;
    const char *body; /* arena */
    size_t body_len;
} tx_http_request_t;

/* ---------------------------------------------------------------- adapters */

typedef struct tx_stream_state tx_stream_state_t; /* adapter-private, stream_state_size bytes, zeroed */

/* An upstream provider's wire format. NULL members mean "not supported" (e.g. no embeddings). */
typedef struct tx_provider_ops {
    const char *kind;
    tx_framing_t framing;
    size_t stream_state_size;
    /* The upstream request for r (r->op decides the endpoint). Fails with a client error for a request
     * this provider cannot serve (e.g. images where none are taken). */
    int (*encode_request)(const tx_request_t *r, const tx_target_t *t, tg_arena_t *a, tx_http_request_t *ret,
                          tx_error_t *err);
    /* A successful (2xx) body. */
    int (*decode_response)(const tx_request_t *r, const char *body, size_t len, tg_arena_t *a, tx_response_t *ret,
                           tx_error_t *err);
    /* A failed (non-2xx) response: always fills err (falls back to the status and raw text). */
    void (*decode_error)(int status, const char *body, size_t len, tx_error_t *err);
    /* One framed stream message: emit zero or more events. Returns 0, the emit return value, or -1 with
     * err filled when the stream is unreadable. The adapter emits TX_EV_END when the provider signals
     * completion; a stream that ends without that is a failure (the pipeline reports it). */
    int (*stream_frame)(tx_stream_state_t *st, const tx_request_t *r, const tx_frame_t *f, tg_arena_t *a,
                        tx_emit_fn emit, void *ctx, tx_error_t *err);
} tx_provider_ops_t;

/* A client-facing API. */
typedef struct tx_dialect_ops {
    const char *name;
    size_t stream_state_size;
    /* The client's body for op. For Gemini the model comes from the URL: the caller sets r->model and
     * r->stream before or after, as the dialect documents. */
    int (*decode_request)(tx_op_t op, const char *body, size_t len, tg_arena_t *a, tx_request_t *ret, tx_error_t *err);
    /* The client's body for a complete response. */
    int (*encode_response)(const tx_request_t *r, const tx_response_t *resp, tg_arena_t *a, tg_buf_t *out);
    /* An error body; returns the HTTP status to send (e.g. 529 for Anthropic's overloaded). */
    int (*encode_error)(const tx_error_t *e, const char *request_id, tg_buf_t *out);
    /* Stream output: the content type of the client stream, and the bytes for one event (possibly
     * none). TX_EV_ERROR must produce the dialect's in-stream error; TX_EV_END its normal ending. */
    const char *stream_content_type;
    int (*stream_event)(tx_stream_state_t *st, const tx_request_t *r, const tx_event_t *ev, tg_buf_t *out);
    /* Releases what stream_event holds in st (Gemini: the arguments of an open tool call) when a stream is
     * abandoned before TX_EV_END or TX_EV_ERROR, e.g. the client went away. NULL: nothing to release.
     * Callers may call it after any stream, ended or not, and more than once. */
    void (*stream_dispose)(tx_stream_state_t *st);
} tx_dialect_ops_t;

/* ---------------------------------------------------------------- registry and shared helpers */

/* The adapter for a provider kind, or NULL for an unknown kind. */
const tx_provider_ops_t *tx_provider_find(const char *kind);
const tx_dialect_ops_t *tx_dialect_get(tx_dialect_t d);
/* Provider kinds that take an OpenAI chat body unchanged but for the model (splice passthrough). */
int tx_provider_is_openai_passthrough(const char *kind);
/* The URL of an OpenAI-family endpoint ("chat/completions", "embeddings", "completions", "models") for
 * a target: base_url + "/" + endpoint, or for Azure the deployment URL with api-version when the
 * account's settings name one (else Azure's v1 surface). Writes at most cap bytes (NUL included);
 * returns the length, or -1 when it does not fit. */
int tx_openai_url(const tx_target_t *t, const char *endpoint, char *out, size_t cap);

/* Keeps a JSON tree alive until the arena is freed (takes over the caller's reference). 0 or -1. */
int tx_arena_keep(tg_arena_t *a, json_t *v);
/* Parses a JSON body into a tree kept by the arena; NULL on invalid JSON (err: 400 invalid_json). */
json_t *tx_parse_json(const char *body, size_t len, tg_arena_t *a, tx_error_t *err);
/* Serialises v compactly, reals with 15 significant digits (a client's 0.7 goes out as 0.7), into the
 * arena (NUL-terminated). NULL when out of memory. */
char *tx_dump_json(const json_t *v, tg_arena_t *a, size_t *ret_len);
/* Appends v serialised with jansson's flags to out, in one pass. 0, or -1 (out is then unchanged). */
int tx_dump_json_into(const json_t *v, size_t flags, tg_buf_t *out);
/* A string member of an object (NULL when absent or not a string). */
const char *tx_json_str(const json_t *obj, const char *key);
/* Splits "data:<media>;base64,<data>" into its parts (pointers into the arena). 0 or -1. */
int tx_split_data_url(const char *url, tg_arena_t *a, const char **ret_media_type, const char **ret_data);
/* Neutral usage from its parts, for adapters whose provider counts cache outside input. */
tx_usage_t tx_usage_make(int64_t input_incl_cache, int64_t output, int64_t cache_read, int64_t cache_write);
/* The tool-call arguments of a part as JSON text (arena); "{}" when none. */
const char *tx_args_text(const tx_part_t *p, tg_arena_t *a);
/* Joins the text parts of a message (arena). "" when none. */
const char *tx_message_text(const tx_message_t *m, tg_arena_t *a);

/* A JSON array of numbers into e (arena). 0, or -1 when it is not such an array or memory runs out. */
int tx_embedding_from_json(const json_t *values, tg_arena_t *a, tx_embedding_t *e);
/* A JSON array of number arrays into ret->embeddings, in order; -1 with an upstream error naming who. */
int tx_embeddings_from_json(const json_t *list, const char *who, tg_arena_t *a, tx_response_t *ret, tx_error_t *err);

/* Base64 (standard alphabet, padded) and OpenAI's base64 float32 little-endian embeddings. */
char *tx_base64_encode(const void *data, size_t len, tg_arena_t *a);
char *tx_embedding_base64(const tx_embedding_t *e, tg_arena_t *a);

#endif
