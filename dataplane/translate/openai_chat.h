/*
 * OpenAI chat-completions requests on the near-passthrough path: find the fields the gateway needs in
 * one scan, and plan the few splices that turn the client's body into the upstream's (model name, for
 * streams `stream_options.include_usage`, and the gateway's own `fallbacks` member cut out). Pure
 * functions: no I/O, no allocation. The scan runs on every dialect's body (it is the gateway's one pass
 * over the top level), so `fallbacks` is found for all of them.
 */
#ifndef DP_OPENAI_CHAT_H
#define DP_OPENAI_CHAT_H

#include <stddef.h>
#include "tollgate/json_scan.h"

typedef struct dp_openai_chat {
    tg_json_span_t top;
    tg_json_span_t model; /* type TG_JSON_INVALID when absent */
    tg_json_span_t messages;
    tg_json_span_t stream_options;
    tg_json_span_t fallbacks;  /* the gateway's per-request fallbacks (any type; routing reads arrays) */
    const char *fallbacks_cut; /* the bytes to remove with it: the member and one comma next to it */
    size_t fallbacks_cut_len;
    int stream;
} dp_openai_chat_t;

/* 0, or -1 when the body is not one valid JSON object. Absent fields keep type TG_JSON_INVALID. */
int dp_openai_chat_parse(const char *body, size_t len, dp_openai_chat_t *ret);

typedef struct dp_splice {
    const char *at; /* into the original body */
    size_t remove;
    const char *insert;
    size_t insert_len;
} dp_splice_t;

typedef struct dp_body_plan {
    dp_splice_t splices[4]; /* in body order */
    size_t n;
    long delta;             /* the upstream body is the client body's length + delta */
    int client_wants_usage; /* the client itself asked for the usage chunk */
} dp_body_plan_t;

/* Plans the upstream body: model -> upstream_model_json (already quoted), for streams forces
 * stream_options.include_usage to true, keeping any other stream options, and removes `fallbacks`. */
void dp_openai_chat_plan(const dp_openai_chat_t *r, const char *upstream_model_json, size_t upstream_model_json_len,
                         dp_body_plan_t *ret);

/* Writes the planned body (len + plan->delta bytes) into out. */
void dp_body_plan_apply(const dp_body_plan_t *plan, const char *body, size_t len, char *out);

#endif
