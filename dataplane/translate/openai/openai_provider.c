/*
 * OpenAI and the OpenAI-compatible family as upstream providers (shared/ref/providers.md §1, §2, §7):
 * `openai` (also openai_compatible, vllm, openrouter and Ollama's /v1 surface), `azure`, `mistral` and
 * `groq`. They share one wire format; the differences are flavours of the same encoder:
 *
 *   - openai: max_completion_tokens (o-series models refuse max_tokens); the others get max_tokens.
 *     top_k only where the server is known to take it (vLLM, OpenRouter, Ollama).
 *   - azure: the deployment URL (tx_openai_url), prompt_filter_results and the empty first chunk ignored.
 *   - mistral: seed -> random_seed, tool_choice required -> "any", every tool-call id rewritten to the 9
 *     alphanumerics Mistral insists on (a hash of the original, so history replays stay consistent), no
 *     stream_options (Mistral reports usage anyway and answers unknown fields with 422), extras only from
 *     an allowlist.
 *   - groq: no logprobs, top_logprobs, logit_bias or n, no embeddings; usage falls back to x_groq.usage.
 *
 * Extras (r->extra: members of an OpenAI client's body the neutral request does not model) are forwarded
 * only when the client spoke OpenAI, and never override what the encoder wrote.
 *
 * The decoders accept what the family sends in practice (§7.5): content as a string or an array of
 * chunks, reasoning in reasoning_content or reasoning, tool-call arguments as a string or an object,
 * stream deltas without tool_calls[].index or with the id repeated on every fragment, in-stream errors
 * as a chunk with a top-level error (OpenRouter's finish_reason "error"), usage in any chunk.
 *
 * Stream state is fixed-size: the open block, the block of each of up to MAX_TOOLS calls, and flags.
 * Stream frames are parsed with jansson and freed before returning: event strings are valid only
 * during the emit callback.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "translate/tx.h"

#define MAX_TOOLS   128
#define URL_MAX     4096
#define MISTRAL_IDN 9

enum flavor { OPENAI, AZURE, MISTRAL, GROQ };

static int
kind_is(const tx_target_t *t, const char *kind)
{
    return t->kind != NULL && strcmp(t->kind, kind) == 0;
}

/* ---------------------------------------------------------------- tool-call ids */

/* Mistral wants exactly 9 characters of [a-zA-Z0-9]: an id that already is one stays, any other is
 * replaced by a base-62 rendering of its FNV-1a hash, so the call and its result get the same id. */
static const char *
mistral_id(const char *id, tg_arena_t *a)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    size_t n = strlen(id), ok = n == MISTRAL_IDN;
    for (size_t i = 0; ok && i < n; i++)
        ok = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z');
    if (ok)
        return id;
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)id[i]) * 1099511628211u;
    char *out = tg_arena_alloc(a, MISTRAL_IDN + 1);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < MISTRAL_IDN; i++, h /= 62)
        out[i] = digits[h % 62];
    return out;
}

/* The id of the tool call at messages[mi].parts[pi], made up when the client gave none. */
static const char *
call_id(const tx_request_t *r, size_t mi, size_t pi, enum flavor fl, tg_arena_t *a)
{
    const tx_part_t *p = &r->messages[mi].parts[pi];
    const char *id = p->id != NULL && p->id[0] != '\0' ? p->id : tg_arena_sprintf(a, "call_%zu_%zu", mi, pi);
    return id != NULL && fl == MISTRAL ? mistral_id(id, a) : id;
}

/* The id for a tool result: its own, or (when it has none) that of the latest earlier call of the same
 * function, which is how dialects without call ids pair them. */
static const char *
result_id(const tx_request_t *r, size_t mi, const tx_part_t *res, enum flavor fl, tg_arena_t *a)
{
    if (res->id != NULL && res->id[0] != '\0')
        return fl == MISTRAL ? mistral_id(res->id, a) : res->id;
    for (size_t i = mi; i-- > 0;)
        for (size_t j = r->messages[i].n_parts; j-- > 0;) {
            const tx_part_t *p = &r->messages[i].parts[j];
            if (p->kind == TX_PART_TOOL_CALL && p->name != NULL && res->name != NULL && strcmp(p->name, res->name) == 0)
                return call_id(r, i, j, fl, a);
        }
    return NULL;
}

/* ---------------------------------------------------------------- request encoding */

static json_t *
image_part(const tx_part_t *p, tg_arena_t *a)
{
    const char *url = p->url;
    if (url == NULL && p->data != NULL)
        url = tg_arena_sprintf(a, "data:%s;base64,%s", p->media_type != NULL ? p->media_type : "image/png", p->data);
    if (url == NULL)
        return NULL;
    return json_pack("{s:s,s:{s:s}}", "type", "image_url", "image_url", "url", url);
}

/* A user message from the text and image parts of m (NULL when it has none). */
static json_t *
user_message(const tx_message_t *m, tg_arena_t *a)
{
    size_t n_text = 0, n_image = 0;
    for (size_t i = 0; i < m->n_parts; i++) {
        n_text += m->parts[i].kind == TX_PART_TEXT && m->parts[i].text != NULL;
        n_image += m->parts[i].kind == TX_PART_IMAGE;
    }
    if (n_text + n_image == 0)
        return NULL;
    if (n_image == 0 && n_text == 1)
        return json_pack("{s:s,s:s}", "role", "user", "content", tx_message_text(m, a));
    json_t *content = json_array();
    for (size_t i = 0; i < m->n_parts; i++) {
        const tx_part_t *p = &m->parts[i];
        if (p->kind == TX_PART_TEXT && p->text != NULL)
            json_array_append_new(content, json_pack("{s:s,s:s}", "type", "text", "text", p->text));
        else if (p->kind == TX_PART_IMAGE)
            json_array_append_new(content, image_part(p, a));
    }
    return json_pack("{s:s,s:o}", "role", "user", "content", content);
}

static json_t *
assistant_message(const tx_request_t *r, size_t mi, enum flavor fl, tg_arena_t *a)
{
    const tx_message_t *m = &r->messages[mi];
    json_t *calls = NULL;
    int has_text = 0;
    for (size_t i = 0; i < m->n_parts; i++) {
        const tx_part_t *p = &m->parts[i];
        if (p->kind == TX_PART_TEXT && p->text != NULL)
            has_text = 1;
        if (p->kind != TX_PART_TOOL_CALL)
            continue;
        if (calls == NULL)
            calls = json_array();
        const char *id = call_id(r, mi, i, fl, a);
        json_array_append_new(calls, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id != NULL ? id : "call", "type",
                                               "function", "function", "name", p->name != NULL ? p->name : "",
                                               "arguments", tx_args_text(p, a)));
    }
    json_t *msg = json_pack("{s:s}", "role", "assistant");
    /* reasoning parts are not sent back: the OpenAI family has no input form for them */
    if (has_text || calls == NULL)
        json_object_set_new(msg, "content", json_string(tx_message_text(m, a)));
    else
        json_object_set_new(msg, "content", json_null());
    if (calls != NULL)
        json_object_set_new(msg, "tool_calls", calls);
    return msg;
}

static int
encode_messages(const tx_request_t *r, enum flavor fl, json_t *out, tg_arena_t *a, tx_error_t *err)
{
    if (r->system != NULL)
        json_array_append_new(out, json_pack("{s:s,s:s}", "role", "system", "content", r->system));
    for (size_t mi = 0; mi < r->n_messages; mi++) {
        const tx_message_t *m = &r->messages[mi];
        if (m->role == TX_ROLE_ASSISTANT) {
            json_array_append_new(out, assistant_message(r, mi, fl, a));
            continue;
        }
        /* tool results first: OpenAI wants them right after the assistant turn that made the calls */
        for (size_t i = 0; i < m->n_parts; i++) {
            const tx_part_t *p = &m->parts[i];
            if (p->kind != TX_PART_TOOL_RESULT)
                continue;
            const char *id = result_id(r, mi, p, fl, a);
            if (id == NULL)
                return tx_fail(err, TX_ERR_INVALID_REQUEST, NULL, "messages",
                               "A tool result does not say which tool call it answers.");
            json_t *tm = json_pack("{s:s,s:s,s:s}", "role", "tool", "tool_call_id", id, "content",
                                   p->text != NULL ? p->text : "");
            if (fl == MISTRAL && p->name != NULL)
                json_object_set_new(tm, "name", json_string(p->name));
            json_array_append_new(out, tm);
        }
        json_t *um = user_message(m, a);
        if (um != NULL)
            json_array_append_new(out, um);
    }
    if (json_array_size(out) == 0)
        return tx_fail(err, TX_ERR_INVALID_REQUEST, NULL, "messages", "The request has no messages.");
    return 0;
}

static json_t *
encode_tools(const tx_request_t *r)
{
    json_t *tools = json_array();
    for (size_t i = 0; i < r->n_tools; i++) {
        const tx_tool_t *t = &r->tools[i];
        json_t *fn = json_pack("{s:s}", "name", t->name != NULL ? t->name : "");
        if (t->description != NULL)
            json_object_set_new(fn, "description", json_string(t->description));
        json_object_set_new(fn, "parameters",
                            t->parameters != NULL ? json_incref(t->parameters)
                                                  : json_pack("{s:s,s:{}}", "type", "object", "properties"));
        json_array_append_new(tools, json_pack("{s:s,s:o}", "type", "function", "function", fn));
    }
    return tools;
}

static json_t *
encode_tool_choice(const tx_request_t *r, enum flavor fl)
{
    switch (r->tool_choice) {
    case TX_TOOL_CHOICE_AUTO:
        return json_string("auto");
    case TX_TOOL_CHOICE_NONE:
        return json_string("none");
    case TX_TOOL_CHOICE_REQUIRED:
        return json_string(fl == MISTRAL ? "any" : "required");
    case TX_TOOL_CHOICE_NAMED:
        return json_pack("{s:s,s:{s:s}}", "type", "function", "function", "name",
                         r->tool_choice_name != NULL ? r->tool_choice_name : "");
    default:
        return NULL;
    }
}

static json_t *
encode_format(const tx_request_t *r)
{
    switch (r->format) {
    case TX_FORMAT_JSON_OBJECT:
        return json_pack("{s:s}", "type", "json_object");
    case TX_FORMAT_JSON_SCHEMA: {
        json_t *schema = r->format_schema != NULL ? json_incref(r->format_schema) : json_object();
        return json_pack("{s:s,s:{s:s,s:o}}", "type", "json_schema", "json_schema", "name",
                         r->format_name != NULL ? r->format_name : "response", "schema", schema);
    }
    default:
        return NULL;
    }
}

/* Sampling and output members shared by chat and legacy completions. */
static void
encode_sampling(const tx_request_t *r, const tx_target_t *t, enum flavor fl, int chat, json_t *body)
{
    if (r->max_tokens >= 0)
        json_object_set_new(body, fl == OPENAI && chat && kind_is(t, "openai") ? "max_completion_tokens" : "max_tokens",
                            json_integer(r->max_tokens));
    if (r->has_temperature)
        json_object_set_new(body, "temperature", json_real(r->temperature));
    if (r->has_top_p)
        json_object_set_new(body, "top_p", json_real(r->top_p));
    if (r->top_k >= 0 && fl == OPENAI && (kind_is(t, "vllm") || kind_is(t, "openrouter") || kind_is(t, "ollama")))
        json_object_set_new(body, "top_k", json_integer(r->top_k));
    if (r->n_stop > 0) {
        json_t *stop = json_array();
        for (size_t i = 0; i < r->n_stop; i++)
            json_array_append_new(stop, json_string(r->stop[i]));
        json_object_set_new(body, "stop", stop);
    }
    if (r->has_seed)
        json_object_set_new(body, fl == MISTRAL ? "random_seed" : "seed", json_integer(r->seed));
    if (r->has_presence_penalty)
        json_object_set_new(body, "presence_penalty", json_real(r->presence_penalty));
    if (r->has_frequency_penalty)
        json_object_set_new(body, "frequency_penalty", json_real(r->frequency_penalty));
    if (r->user != NULL && fl != MISTRAL)
        json_object_set_new(body, "user", json_string(r->user));
}

/* What an OpenAI client's unmodelled members may reach this flavour. */
static int
extra_allowed(enum flavor fl, const char *key)
{
    static const char *const mistral_ok[] = {"safe_prompt", "random_seed", "prediction", "prompt_mode", "n", NULL};
    static const char *const groq_no[] = {"logprobs", "top_logprobs", "logit_bias", "n", NULL};
    if (fl == MISTRAL) {
        for (size_t i = 0; mistral_ok[i] != NULL; i++)
            if (strcmp(mistral_ok[i], key) == 0)
                return 1;
        return 0;
    }
    if (fl == GROQ)
        for (size_t i = 0; groq_no[i] != NULL; i++)
            if (strcmp(groq_no[i], key) == 0)
                return 0;
    return 1;
}

static int
forward_extra(const tx_request_t *r, enum flavor fl, json_t *body, tx_error_t *err)
{
    if (r->dialect != TX_DIALECT_OPENAI || !json_is_object(r->extra))
        return 0;
    if (fl == GROQ) {
        json_t *n = json_object_get(r->extra, "n");
        if (json_is_integer(n) && json_integer_value(n) != 1)
            return tx_fail(err, TX_ERR_INVALID_REQUEST, NULL, "n", "This provider only supports n = 1.");
    }
    const char *key;
    json_t *v;
    json_object_foreach(r->extra, key, v)
    {
        if (json_object_get(body, key) == NULL && extra_allowed(fl, key))
            json_object_set(body, key, v);
    }
    return 0;
}

static int
encode_chat(const tx_request_t *r, const tx_target_t *t, enum flavor fl, json_t *body, tg_arena_t *a, tx_error_t *err)
{
    json_t *messages = json_array();
    json_object_set_new(body, "messages", messages);
    if (r->op == TX_OP_COMPLETION) { /* Mistral and Groq have no legacy completions: one user turn */
        const char *prompt = r->n_messages > 0 ? tx_message_text(&r->messages[0], a) : "";
        json_array_append_new(messages, json_pack("{s:s,s:s}", "role", "user", "content", prompt));
    } else if (encode_messages(r, fl, messages, a, err) != 0) {
        return -1;
    }
    if (r->n_tools > 0) {
        json_object_set_new(body, "tools", encode_tools(r));
        if (r->parallel_tool_calls >= 0) /* OpenAI refuses parallel_tool_calls without tools */
            json_object_set_new(body, "parallel_tool_calls", json_boolean(r->parallel_tool_calls));
    }
    json_t *tc = r->n_tools > 0 ? encode_tool_choice(r, fl) : NULL; /* refused without tools */
    if (tc != NULL)
        json_object_set_new(body, "tool_choice", tc);
    json_t *rf = encode_format(r);
    if (rf != NULL)
        json_object_set_new(body, "response_format", rf);
    encode_sampling(r, t, fl, 1, body);
    return r->op == TX_OP_CHAT ? forward_extra(r, fl, body, err) : 0;
}

static int
encode_request(enum flavor fl, const tx_request_t *r, const tx_target_t *t, tg_arena_t *a, tx_http_request_t *ret,
               tx_error_t *err)
{
    const char *endpoint;
    int chat_body = 0;
    switch (r->op) {
    case TX_OP_CHAT:
        endpoint = "chat/completions";
        chat_body = 1;
        break;
    case TX_OP_COMPLETION:
        chat_body = fl == MISTRAL || fl == GROQ;
        endpoint = chat_body ? "chat/completions" : "completions";
        break;
    case TX_OP_EMBED:
        if (fl == GROQ)
            return tx_fail(err, TX_ERR_INVALID_REQUEST, "unsupported_operation", NULL,
                           "This provider does not offer embeddings.");
        endpoint = "embeddings";
        break;
    default:
        return tx_fail(err, TX_ERR_INVALID_REQUEST, "unsupported_operation", NULL,
                       "Token counting is not supported for this model's provider.");
    }
    char url[URL_MAX];
    if (t->base_url == NULL || tx_openai_url(t, endpoint, url, sizeof(url)) < 0)
        return tx_fail(err, TX_ERR_SERVER, "bad_provider_url", NULL, "The provider's base URL is too long or missing.");

    json_t *body = json_object();
    if (body == NULL || tx_arena_keep(a, body) != 0)
        return tx_oom(err);
    const char *model = t->upstream_model != NULL ? t->upstream_model : r->model;
    json_object_set_new(body, "model", json_string(model != NULL ? model : ""));

    if (r->op == TX_OP_EMBED) {
        json_t *input = json_array();
        for (size_t i = 0; i < r->n_inputs; i++)
            json_array_append_new(input, json_string(r->inputs[i] != NULL ? r->inputs[i] : ""));
        json_object_set_new(body, "input", input);
        if (fl == MISTRAL) {
            if (r->dimensions >= 0)
                json_object_set_new(body, "output_dimension", json_integer(r->dimensions));
        } else {
            json_object_set_new(body, "encoding_format", json_string("float"));
            if (r->dimensions >= 0)
                json_object_set_new(body, "dimensions", json_integer(r->dimensions));
            if (r->user != NULL)
                json_object_set_new(body, "user", json_string(r->user));
        }
    } else if (chat_body) {
        if (encode_chat(r, t, fl, body, a, err) != 0)
            return -1;
    } else {
        const char *prompt = r->n_messages > 0 ? tx_message_text(&r->messages[0], a) : "";
        json_object_set_new(body, "prompt", json_string(prompt));
        encode_sampling(r, t, fl, 0, body);
        if (forward_extra(r, fl, body, err) != 0)
            return -1;
    }
    if (r->op != TX_OP_EMBED && r->stream) {
        json_object_set_new(body, "stream", json_true());
        /* always ask for usage (the gateway bills on it); Mistral sends it unasked and rejects the field */
        if (fl != MISTRAL)
            json_object_set_new(body, "stream_options", json_pack("{s:b}", "include_usage", 1));
    }

    memset(ret, 0, sizeof(*ret));
    ret->url = tg_arena_strdup(a, url);
    /* 15 significant digits: a client's 0.7 goes out as 0.7, not as 0.69999999999999996 */
    size_t n;
    char *text = tx_dump_json(body, a, &n);
    if (ret->url == NULL || text == NULL)
        return tx_oom(err);
    ret->body = text;
    ret->body_len = n;
    return 0;
}

static int
encode_openai(const tx_request_t *r, const tx_target_t *t, tg_arena_t *a, tx_http_request_t *ret, tx_error_t *err)
{
    return encode_request(OPENAI, r, t, a, ret, err);
}

static int
encode_azure(const tx_request_t *r, const tx_target_t *t, tg_arena_t *a, tx_http_request_t *ret, tx_error_t *err)
{
    return encode_request(AZURE, r, t, a, ret, err);
}

static int
encode_mistral(const tx_request_t *r, const tx_target_t *t, tg_arena_t *a, tx_http_request_t *ret, tx_error_t *err)
{
    return encode_request(MISTRAL, r, t, a, ret, err);
}

static int
encode_groq(const tx_request_t *r, const tx_target_t *t, tg_arena_t *a, tx_http_request_t *ret, tx_error_t *err)
{
    return encode_request(GROQ, r, t, a, ret, err);
}

/* ---------------------------------------------------------------- errors */

/* Overflow wordings of the family (§7.5): one code whatever the server. */
static int
context_overflow(const char *msg, const char *code)
{
    static const char *const patterns[] = {
        "maximum context length",   "context length",       "context_length_exceeded",
        "too large for model with", "maximum model length", "reduce the length of the",
        "prompt is too long",       "context window",       NULL,
    };
    if (code != NULL && strcmp(code, "context_length_exceeded") == 0)
        return 1;
    for (size_t i = 0; msg != NULL && patterns[i] != NULL; i++)
        if (strcasestr(msg, patterns[i]) != NULL)
            return 1;
    return 0;
}

/* An error object of any of the family's shapes: {"error":{...}}, {"error":"..."}, Mistral's
 * {"object":"error","message","type","code"}, {"message"}, {"detail"}. status 0: in a stream, where
 * the kind comes from the error's own code or type. */
static void
error_from_json(int status, json_t *root, tx_error_t *err)
{
    json_t *e = json_object_get(root, "error");
    json_t *obj = json_is_object(e) ? e : root;
    const char *msg = tx_json_str(obj, "message");
    if (msg == NULL)
        msg = json_is_string(e) ? json_string_value(e) : tx_json_str(root, "detail");
    const char *type = tx_json_str(obj, "type");
    json_t *jcode = json_object_get(obj, "code");
    const char *code = json_string_value(jcode);
    const char *param = tx_json_str(obj, "param");

    if (status == 0) {
        int c = json_is_integer(jcode) ? (int)json_integer_value(jcode) : 0;
        if (c >= 400 && c <= 599)
            status = c;
        else if (type != NULL && strstr(type, "rate_limit") != NULL)
            status = 429;
        else if (type != NULL && strcmp(type, "invalid_request_error") == 0)
            status = 400;
        else if (type != NULL && strcmp(type, "server_error") == 0)
            status = 500;
        else
            status = 502;
    }
    tx_error_kind_t kind = tx_error_kind_of_status(status);
    char *dumped = NULL; /* a structured message (Mistral's 422 validation detail): keep it as text */
    json_t *jmsg = json_object_get(obj, "message");
    if (msg == NULL && (json_is_object(jmsg) || json_is_array(jmsg)))
        msg = dumped = json_dumps(jmsg, JSON_COMPACT);
    if (context_overflow(msg, code)) {
        code = "context_length_exceeded";
        if (param == NULL)
            param = "messages";
    }
    if (msg == NULL || msg[0] == '\0')
        tx_fail(err, kind, code, param, "The provider returned HTTP %d.", status);
    else
        tx_fail(err, kind, code, param, "%s", msg);
    err->status = status;
    free(dumped);
}

static void
decode_error(int status, const char *body, size_t len, tx_error_t *err)
{
    json_t *root = body != NULL && len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
    if (json_is_object(root)) {
        error_from_json(status, root, err);
    } else {
        /* not JSON (an HTML page from a proxy, say): keep a readable prefix of the text */
        char text[200];
        size_t n = 0;
        for (size_t i = 0; body != NULL && i < len && n < sizeof(text) - 1; i++) {
            unsigned char c = (unsigned char)body[i];
            text[n++] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
        }
        text[n] = '\0';
        if (n > 0)
            tx_fail(err, tx_error_kind_of_status(status), NULL, NULL, "The provider returned HTTP %d: %s", status,
                    text);
        else
            tx_fail(err, tx_error_kind_of_status(status), NULL, NULL, "The provider returned HTTP %d.", status);
        err->status = status;
    }
    json_decref(root);
}

/* ---------------------------------------------------------------- responses */

static tx_stop_t
stop_of(const char *finish)
{
    if (finish == NULL)
        return TX_STOP_UNSET;
    if (strcmp(finish, "stop") == 0 || strcmp(finish, "end_turn") == 0)
        return TX_STOP_END;
    if (strcmp(finish, "length") == 0 || strcmp(finish, "model_length") == 0)
        return TX_STOP_MAX_TOKENS;
    if (strcmp(finish, "tool_calls") == 0 || strcmp(finish, "function_call") == 0)
        return TX_STOP_TOOL_USE;
    if (strcmp(finish, "content_filter") == 0)
        return TX_STOP_CONTENT_FILTER;
    if (strcmp(finish, "error") == 0)
        return TX_STOP_ERROR;
    return TX_STOP_END;
}

static int64_t
count(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
}

/* usage, or Groq's x_groq.usage; known == 0 when neither is there. */
static tx_usage_t
usage_of(json_t *root)
{
    json_t *u = json_object_get(root, "usage");
    if (!json_is_object(u))
        u = json_object_get(json_object_get(root, "x_groq"), "usage");
    tx_usage_t out = {0};
    if (!json_is_object(u))
        return out;
    int64_t cached = count(json_object_get(u, "prompt_tokens_details"), "cached_tokens");
    if (cached == 0)
        cached = count(u, "prompt_cache_hit_tokens"); /* DeepSeek */
    out = tx_usage_make(count(u, "prompt_tokens"), count(u, "completion_tokens"), cached, 0);
    out.reasoning = count(json_object_get(u, "completion_tokens_details"), "reasoning_tokens");
    return out;
}

/* Appends the text (or, with thinking, the thinking) of a content that may be a string or an array of
 * chunks (Mistral: {"type":"text","text"} and {"type":"thinking","thinking":[{"type":"text","text"}]}). */
static void
content_texts(json_t *content, int thinking, tg_buf_t *out)
{
    if (json_is_string(content)) {
        if (!thinking)
            tg_buf_append(out, json_string_value(content), json_string_length(content));
        return;
    }
    size_t i;
    json_t *c;
    json_array_foreach(content, i, c)
    {
        const char *type = tx_json_str(c, "type");
        if (type == NULL)
            continue;
        if (!thinking && strcmp(type, "text") == 0 && json_is_string(json_object_get(c, "text")))
            tg_buf_append(out, tx_json_str(c, "text"), json_string_length(json_object_get(c, "text")));
        else if (thinking && strcmp(type, "thinking") == 0)
            content_texts(json_object_get(c, "thinking"), 0, out);
    }
}

static const char *
reasoning_of(json_t *msg)
{
    const char *s = tx_json_str(msg, "reasoning_content");
    if (s == NULL || s[0] == '\0')
        s = tx_json_str(msg, "reasoning");
    return s != NULL && s[0] != '\0' ? s : NULL;
}

static int
upstream(tx_error_t *err, const char *what)
{
    return tx_fail(err, TX_ERR_UPSTREAM, "bad_upstream_response", NULL, "The provider's response %s.", what);
}

static int
decode_embeddings(json_t *root, tg_arena_t *a, tx_response_t *ret, tx_error_t *err)
{
    json_t *data = json_object_get(root, "data");
    if (!json_is_array(data))
        return upstream(err, "has no data array");
    size_t n = json_array_size(data), i;
    ret->embeddings = tg_arena_alloc(a, (n ? n : 1) * sizeof(*ret->embeddings));
    if (ret->embeddings == NULL)
        return tx_oom(err);
    ret->n_embeddings = n;
    json_t *d;
    json_array_foreach(data, i, d)
    {
        json_t *jidx = json_object_get(d, "index"), *emb = json_object_get(d, "embedding");
        size_t idx = json_is_integer(jidx) ? (size_t)json_integer_value(jidx) : i;
        if (idx >= n || ret->embeddings[idx].values != NULL)
            return upstream(err, "has embedding indexes out of order");
        tx_embedding_t *e = &ret->embeddings[idx];
        if (!json_is_array(emb))
            return upstream(err, "has an embedding that is not an array of numbers");
        e->n = json_array_size(emb);
        e->values = tg_arena_alloc(a, (e->n ? e->n : 1) * sizeof(float));
        if (e->values == NULL)
            return tx_oom(err);
        size_t j;
        json_t *x;
        json_array_foreach(emb, j, x)
        {
            if (!json_is_number(x))
                return upstream(err, "has an embedding that is not an array of numbers");
            e->values[j] = (float)json_number_value(x);
        }
    }
    for (i = 0; i < n; i++)
        if (ret->embeddings[i].values == NULL)
            return upstream(err, "is missing an embedding");
    ret->usage = tx_usage_make(count(json_object_get(root, "usage"), "prompt_tokens"), 0, 0, 0);
    ret->usage.known = json_is_object(json_object_get(root, "usage"));
    return 0;
}

/* A tool call's arguments: a JSON string holding an object, or (Mistral, Ollama) the object itself. */
static json_t *
args_of(json_t *arguments, tg_arena_t *a)
{
    if (json_is_object(arguments))
        return arguments;
    json_t *v = NULL;
    if (arguments == NULL || json_is_null(arguments) ||
        (json_is_string(arguments) && json_string_length(arguments) == 0))
        v = json_object();
    else if (json_is_string(arguments))
        v = json_loadb(json_string_value(arguments), json_string_length(arguments), 0, NULL);
    if (!json_is_object(v)) {
        json_decref(v);
        return NULL;
    }
    return tx_arena_keep(a, v) == 0 ? v : NULL;
}

static int
decode_response(const tx_request_t *r, const char *body, size_t len, tg_arena_t *a, tx_response_t *ret, tx_error_t *err)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    if (root == NULL || tx_arena_keep(a, root) != 0)
        return upstream(err, "is not valid JSON");
    if (!json_is_object(root))
        return upstream(err, "is not a JSON object");
    if (json_is_object(json_object_get(root, "error"))) { /* OpenRouter and some proxies: an error with 200 */
        error_from_json(0, root, err);
        return -1;
    }
    tx_response_t resp;
    memset(&resp, 0, sizeof(resp));
    const char *id = tx_json_str(root, "id"), *model = tx_json_str(root, "model");
    resp.id = id != NULL && id[0] != '\0' ? id : NULL;
    resp.model = model != NULL && model[0] != '\0' ? model : NULL;
    resp.created = count(root, "created");
    if (r->op == TX_OP_EMBED) {
        if (decode_embeddings(root, a, &resp, err) != 0)
            return -1;
        *ret = resp;
        return 0;
    }

    json_t *choices = json_object_get(root, "choices"), *choice = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(choices, i, c)
    {
        json_t *idx = json_object_get(c, "index");
        if (choice == NULL || (json_is_integer(idx) && json_integer_value(idx) == 0))
            choice = c;
    }
    if (!json_is_object(choice))
        return upstream(err, "has no choices");
    json_t *msg = json_object_get(choice, "message");
    json_t *calls = json_object_get(msg, "tool_calls");
    size_t n_calls = json_is_array(calls) ? json_array_size(calls) : 0;
    resp.parts = tg_arena_alloc(a, (n_calls + 2) * sizeof(*resp.parts));
    if (resp.parts == NULL)
        return tx_oom(err);

    tg_buf_t text = {0}, thinking = {0};
    const char *reasoning = reasoning_of(msg);
    if (reasoning != NULL)
        tg_buf_appends(&thinking, reasoning);
    if (msg != NULL) {
        content_texts(json_object_get(msg, "content"), 0, &text);
        content_texts(json_object_get(msg, "content"), 1, &thinking);
        const char *refusal = tx_json_str(msg, "refusal");
        if (refusal != NULL)
            tg_buf_appends(&text, refusal);
    } else if (json_is_string(json_object_get(choice, "text"))) { /* legacy completion */
        content_texts(json_object_get(choice, "text"), 0, &text);
    }
    if (thinking.len > 0) {
        resp.parts[resp.n_parts].kind = TX_PART_THINKING;
        resp.parts[resp.n_parts++].text = tg_arena_strndup(a, thinking.base, thinking.len);
    }
    if (text.len > 0 || (n_calls == 0 && thinking.len == 0)) {
        resp.parts[resp.n_parts].kind = TX_PART_TEXT;
        resp.parts[resp.n_parts++].text = text.len > 0 ? tg_arena_strndup(a, text.base, text.len) : "";
    }
    tg_buf_free(&text);
    tg_buf_free(&thinking);
    for (size_t k = 0; k < resp.n_parts; k++)
        if (resp.parts[k].text == NULL)
            return tx_oom(err);

    json_array_foreach(calls, i, c)
    {
        json_t *fn = json_object_get(c, "function");
        tx_part_t *p = &resp.parts[resp.n_parts++];
        p->kind = TX_PART_TOOL_CALL;
        p->id = tx_json_str(c, "id");
        p->name = tx_json_str(fn, "name");
        if (p->name == NULL)
            return upstream(err, "has a tool call without a function name");
        p->args = args_of(json_object_get(fn, "arguments"), a);
        if (p->args == NULL)
            return upstream(err, "has tool-call arguments that are not a JSON object");
    }

    resp.raw_stop = tx_json_str(choice, "finish_reason");
    resp.stop = stop_of(resp.raw_stop);
    const char *matched = tx_json_str(choice, "stop_reason"); /* vLLM: the stop string that matched */
    if (resp.stop == TX_STOP_END && matched != NULL) {
        resp.stop = TX_STOP_SEQUENCE;
        resp.stop_sequence = matched;
    }
    if (n_calls > 0 && (resp.stop == TX_STOP_END || resp.stop == TX_STOP_UNSET))
        resp.stop = TX_STOP_TOOL_USE; /* some compatible servers say "stop" after tool calls */
    if (resp.stop == TX_STOP_UNSET)
        resp.stop = TX_STOP_END;
    resp.usage = usage_of(root);
    *ret = resp;
    return 0;
}

/* ---------------------------------------------------------------- streams */

enum { OPEN_NONE = 0, OPEN_TEXT, OPEN_THINKING, OPEN_TOOL };

struct tx_stream_state {
    int started, stopped, done;
    int open_kind, open_block; /* the content block being written */
    int next_block;
    int n_tools;               /* tool calls seen, by their OpenAI index */
    int cur_tool;              /* OpenAI index of the call fragments continue when they have no index */
    uint64_t cur_tool_id;      /* hash of its id, to tell a new call from the same one repeating its id */
    int tool_block[MAX_TOOLS]; /* OpenAI tool index -> neutral block index + 1; 0: not started */
};

typedef struct {
    tx_stream_state_t *st;
    tx_emit_fn emit;
    void *ctx;
} sink_t;

static int
put(sink_t *s, tx_event_t *ev)
{
    return s->emit(s->ctx, ev);
}

static uint64_t
hash_str(const char *s)
{
    uint64_t h = 1469598103934665603u;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static int
close_block(sink_t *s)
{
    if (s->st->open_kind == OPEN_NONE)
        return 0;
    tx_event_t ev = {.kind = TX_EV_BLOCK_END, .index = s->st->open_block};
    s->st->open_kind = OPEN_NONE;
    return put(s, &ev);
}

/* Text or thinking: continues the open block of that kind, or closes the open one and starts another. */
static int
text_event(sink_t *s, int kind, const char *text, size_t len)
{
    if (len == 0)
        return 0;
    int rc;
    if (s->st->open_kind != kind) {
        if ((rc = close_block(s)) != 0)
            return rc;
        s->st->open_kind = kind;
        s->st->open_block = s->st->next_block++;
    }
    tx_event_t ev = {.kind = kind == OPEN_TEXT ? TX_EV_TEXT : TX_EV_THINKING,
                     .index = s->st->open_block,
                     .text = text,
                     .text_len = len};
    return put(s, &ev);
}

/* The text of a string, or of the {"type":"text"} chunks of an array, as events of one kind. */
static int
emit_texts(sink_t *s, json_t *content, int kind)
{
    if (json_is_string(content))
        return text_event(s, kind, json_string_value(content), json_string_length(content));
    size_t i;
    json_t *c;
    int rc;
    json_array_foreach(content, i, c)
    {
        const char *type = tx_json_str(c, "type");
        json_t *text = json_object_get(c, "text");
        if (type != NULL && strcmp(type, "text") == 0 && json_is_string(text) &&
            (rc = text_event(s, kind, json_string_value(text), json_string_length(text))) != 0)
            return rc;
    }
    return 0;
}

/* A delta's content: a string, or Mistral's chunks, whose thinking chunks hold text chunks of their own. */
static int
content_events(sink_t *s, json_t *content, int kind)
{
    if (kind == OPEN_TEXT)
        return emit_texts(s, content, OPEN_TEXT);
    size_t i;
    json_t *c;
    int rc;
    json_array_foreach(content, i, c)
    {
        const char *type = tx_json_str(c, "type");
        if (type != NULL && strcmp(type, "thinking") == 0 &&
            (rc = emit_texts(s, json_object_get(c, "thinking"), OPEN_THINKING)) != 0)
            return rc;
    }
    return 0;
}

static int
tool_fragment(sink_t *s, json_t *tc, tx_error_t *err)
{
    tx_stream_state_t *st = s->st;
    json_t *jidx = json_object_get(tc, "index"), *fn = json_object_get(tc, "function");
    const char *id = tx_json_str(tc, "id");
    int k, rc;
    if (json_is_integer(jidx)) {
        if (json_integer_value(jidx) < 0 || json_integer_value(jidx) >= MAX_TOOLS)
            return tx_fail(err, TX_ERR_UPSTREAM, "bad_upstream_response", NULL,
                           "The provider's stream has more tool calls than the gateway accepts (%d).", MAX_TOOLS);
        k = (int)json_integer_value(jidx);
    } else if (id != NULL && id[0] != '\0' && (st->n_tools == 0 || hash_str(id) != st->cur_tool_id)) {
        k = st->n_tools; /* no index, a new id: the next call */
        if (k >= MAX_TOOLS)
            return tx_fail(err, TX_ERR_UPSTREAM, "bad_upstream_response", NULL,
                           "The provider's stream has more tool calls than the gateway accepts (%d).", MAX_TOOLS);
    } else {
        k = st->cur_tool; /* no index: continues the open call (0 at first) */
    }
    if (st->tool_block[k] == 0) {
        if ((rc = close_block(s)) != 0)
            return rc;
        int block = st->next_block++;
        st->tool_block[k] = block + 1;
        st->open_kind = OPEN_TOOL;
        st->open_block = block;
        st->cur_tool = k;
        st->cur_tool_id = id != NULL ? hash_str(id) : 0;
        if (k + 1 > st->n_tools)
            st->n_tools = k + 1;
        tx_event_t ev = {.kind = TX_EV_TOOL_START,
                         .index = block,
                         .id = id != NULL && id[0] != '\0' ? id : NULL,
                         .name = tx_json_str(fn, "name") != NULL ? tx_json_str(fn, "name") : ""};
        if ((rc = put(s, &ev)) != 0)
            return rc;
    }
    json_t *args = json_object_get(fn, "arguments");
    tx_event_t ev = {.kind = TX_EV_TOOL_ARGS, .index = st->tool_block[k] - 1};
    char *dumped = NULL;
    if (json_is_string(args)) {
        ev.text = json_string_value(args);
        ev.text_len = json_string_length(args);
    } else if (json_is_object(args)) { /* a whole object at once (some compatible servers) */
        dumped = json_dumps(args, JSON_COMPACT);
        ev.text = dumped;
        ev.text_len = dumped != NULL ? strlen(dumped) : 0;
    }
    rc = ev.text_len > 0 ? put(s, &ev) : 0;
    free(dumped);
    return rc;
}

static int
stream_error(sink_t *s, json_t *root, const char *fallback)
{
    tx_error_t e;
    memset(&e, 0, sizeof(e));
    if (root != NULL)
        error_from_json(0, root, &e);
    else
        tx_fail(&e, TX_ERR_UPSTREAM, "upstream_error", NULL, "%s", fallback);
    s->st->done = 1;
    tx_event_t ev = {.kind = TX_EV_ERROR, .error = &e};
    return put(s, &ev);
}

static int
finish(sink_t *s, tx_stop_t stop, const char *sequence)
{
    int rc;
    if ((rc = close_block(s)) != 0)
        return rc;
    if (s->st->stopped)
        return 0;
    s->st->stopped = 1;
    if ((stop == TX_STOP_END || stop == TX_STOP_UNSET) && s->st->n_tools > 0)
        stop = TX_STOP_TOOL_USE;
    tx_event_t ev = {.kind = TX_EV_STOP, .stop = stop == TX_STOP_UNSET ? TX_STOP_END : stop, .stop_sequence = sequence};
    return put(s, &ev);
}

static int
chunk(sink_t *s, json_t *root, tx_error_t *err)
{
    tx_stream_state_t *st = s->st;
    int rc;
    json_t *e = json_object_get(root, "error");
    if (e != NULL && !json_is_null(e))
        return stream_error(s, root, NULL);

    json_t *choices = json_object_get(root, "choices"), *choice = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(choices, i, c)
    {
        json_t *idx = json_object_get(c, "index");
        if (!json_is_integer(idx) || json_integer_value(idx) == 0) { /* n > 1 is refused: choice 0 only */
            choice = c;
            break;
        }
    }
    tx_usage_t usage = usage_of(root);
    if (choice == NULL && !usage.known)
        return 0; /* Azure's prompt_filter_results chunk, keep-alives, other choices */

    if (!st->started) {
        st->started = 1;
        const char *id = tx_json_str(root, "id"), *model = tx_json_str(root, "model");
        tx_event_t ev = {.kind = TX_EV_START,
                         .id = id != NULL && id[0] != '\0' ? id : NULL,
                         .model = model != NULL && model[0] != '\0' ? model : NULL};
        if ((rc = put(s, &ev)) != 0)
            return rc;
    }
    if (choice != NULL) {
        json_t *delta = json_object_get(choice, "delta");
        const char *reasoning = reasoning_of(delta);
        if (reasoning != NULL && (rc = text_event(s, OPEN_THINKING, reasoning, strlen(reasoning))) != 0)
            return rc;
        if ((rc = content_events(s, json_object_get(delta, "content"), OPEN_THINKING)) != 0 ||
            (rc = content_events(s, json_object_get(delta, "content"), OPEN_TEXT)) != 0 ||
            (rc = content_events(s, json_object_get(choice, "text"), OPEN_TEXT)) != 0 || /* legacy completions */
            (rc = content_events(s, json_object_get(delta, "refusal"), OPEN_TEXT)) != 0)
            return rc;
        json_t *calls = json_object_get(delta, "tool_calls");
        json_array_foreach(calls, i, c)
        {
            if ((rc = tool_fragment(s, c, err)) != 0)
                return rc;
        }
    }
    if (usage.known) {
        tx_event_t ev = {.kind = TX_EV_USAGE, .usage = usage};
        if ((rc = put(s, &ev)) != 0)
            return rc;
    }
    const char *fr = tx_json_str(choice, "finish_reason");
    if (fr != NULL) {
        tx_stop_t stop = stop_of(fr);
        if (stop == TX_STOP_ERROR) /* Mistral/OpenRouter: the generation failed after 200 */
            return stream_error(s, NULL, "The provider ended the generation with an error.");
        const char *matched = tx_json_str(choice, "stop_reason");
        if (stop == TX_STOP_END && matched != NULL)
            stop = TX_STOP_SEQUENCE;
        return finish(s, stop, stop == TX_STOP_SEQUENCE ? matched : NULL);
    }
    return 0;
}

static int
stream_frame(tx_stream_state_t *st, const tx_request_t *r, const tx_frame_t *f, tg_arena_t *a, tx_emit_fn emit,
             void *ctx, tx_error_t *err)
{
    sink_t s = {st, emit, ctx};
    if (st->done || f->data == NULL || f->data_len == 0)
        return 0;
    const char *d = f->data;
    size_t n = f->data_len;
    while (n > 0 && (d[0] == ' ' || d[0] == '\t' || d[0] == '\n' || d[0] == '\r')) {
        d++;
        n--;
    }
    while (n > 0 && (d[n - 1] == ' ' || d[n - 1] == '\t' || d[n - 1] == '\n' || d[n - 1] == '\r'))
        n--;
    if (n == 6 && memcmp(d, "[DONE]", 6) == 0) {
        int rc;
        if (!st->started) { /* an empty but complete stream */
            st->started = 1;
            tx_event_t ev = {.kind = TX_EV_START};
            if ((rc = put(&s, &ev)) != 0)
                return rc;
        }
        if ((rc = finish(&s, TX_STOP_END, NULL)) != 0)
            return rc;
        st->done = 1;
        tx_event_t ev = {.kind = TX_EV_END};
        return put(&s, &ev);
    }
    json_t *root = json_loadb(d, n, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return tx_fail(err, TX_ERR_UPSTREAM, "bad_upstream_response", NULL,
                       "The provider's stream holds an event that is not a JSON object.");
    }
    int rc = chunk(&s, root, err);
    json_decref(root);
    return rc;
}

const tx_provider_ops_t tx_openai_provider = {
    .kind = "openai",
    .framing = TX_FRAMING_SSE,
    .stream_state_size = sizeof(tx_stream_state_t),
    .encode_request = encode_openai,
    .decode_response = decode_response,
    .decode_error = decode_error,
    .stream_frame = stream_frame,
};

const tx_provider_ops_t tx_azure_provider = {
    .kind = "azure",
    .framing = TX_FRAMING_SSE,
    .stream_state_size = sizeof(tx_stream_state_t),
    .encode_request = encode_azure,
    .decode_response = decode_response,
    .decode_error = decode_error,
    .stream_frame = stream_frame,
};

const tx_provider_ops_t tx_mistral_provider = {
    .kind = "mistral",
    .framing = TX_FRAMING_SSE,
    .stream_state_size = sizeof(tx_stream_state_t),
    .encode_request = encode_mistral,
    .decode_response = decode_response,
    .decode_error = decode_error,
    .stream_frame = stream_frame,
};

const tx_provider_ops_t tx_groq_provider = {
    .kind = "groq",
    .framing = TX_FRAMING_SSE,
    .stream_state_size = sizeof(tx_stream_state_t),
    .encode_request = encode_groq,
    .decode_response = decode_response,
    .decode_error = decode_error,
    .stream_frame = stream_frame,
};
