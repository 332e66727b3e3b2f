/*
 * AWS Bedrock as an upstream provider: the Converse and ConverseStream APIs for chat, CountTokens, and
 * Titan text embeddings through InvokeModel (shared/ref/providers.md §5). Pure translation; the pipeline
 * signs the request (sigv4.h) and cuts the stream into frames (eventstream.h).
 *
 * Design notes:
 * - Converse wants user and assistant turns to alternate, and tool results in a user turn: neutral
 *   messages are mapped (tool -> user) and consecutive turns of one role merged.
 * - A history holding toolUse/toolResult blocks needs a toolConfig, so tools named in the history but
 *   not declared get a minimal spec; tool_choice "none" (which Converse lacks) omits toolConfig unless
 *   the history needs it.
 * - JSON output has no Converse field: with no tools of its own, the request gets one tool whose input
 *   schema is the wanted schema and is forced to call it; the call's input comes back as the text of
 *   the answer, and the stop as a natural end. With tools of its own, the wish goes to the system prompt.
 * - Streams: each eventstream frame's JSON is parsed, emitted and released in the same call, so the
 *   arena does not grow with the stream; event pointers are valid only during emit. TX_EV_END follows
 *   the metadata event, which is the stream's last.
 */
#include <limits.h>
#include <string.h>
#include "translate/tx.h"

#define JSON_TOOL_DEFAULT "json_response"

/* ---------------------------------------------------------------- shared helpers */

/* Bedrock tool names: [a-zA-Z0-9_-]{1,64}. */
static int
valid_tool_name(const char *s)
{
    size_t n = 0;
    for (; s != NULL && s[n] != '\0'; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return n >= 1 && n <= 64;
}

/* JSON output through a forced tool: only when the client declared no tools (see the file comment). */
static int
json_via_tool(const tx_request_t *r)
{
    return r->format != TX_FORMAT_TEXT && r->n_tools == 0 && (r->op == TX_OP_CHAT || r->op == TX_OP_COMPLETION);
}

static const char *
json_tool_name(const tx_request_t *r)
{
    return valid_tool_name(r->format_name) ? r->format_name : JSON_TOOL_DEFAULT;
}

static int
is_json_tool(const tx_request_t *r, const char *name)
{
    return json_via_tool(r) && name != NULL && strcmp(name, json_tool_name(r)) == 0;
}

/* The model id percent-encoded for the path: everything but the unreserved characters (':' and '/' of
 * ARNs and profile ids included). */
static char *
encode_model(const char *model, tg_arena_t *a)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(model);
    char *out = tg_arena_alloc(a, 3 * n + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)model[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

static tx_stop_t
map_stop(const tx_request_t *r, const char *s)
{
    if (s == NULL)
        return TX_STOP_UNSET;
    if (strcmp(s, "end_turn") == 0)
        return TX_STOP_END;
    if (strcmp(s, "stop_sequence") == 0)
        return TX_STOP_SEQUENCE;
    if (strcmp(s, "max_tokens") == 0 || strcmp(s, "model_context_window_exceeded") == 0)
        return TX_STOP_MAX_TOKENS;
    if (strcmp(s, "tool_use") == 0)
        return json_via_tool(r) ? TX_STOP_END : TX_STOP_TOOL_USE;
    if (strcmp(s, "guardrail_intervened") == 0 || strcmp(s, "content_filtered") == 0)
        return TX_STOP_CONTENT_FILTER;
    return TX_STOP_END;
}

static int64_t
int_member(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (int64_t)json_integer_value(v) : 0;
}

/* Bedrock's inputTokens leaves cache reads and writes out: the neutral input adds them. */
static tx_usage_t
map_usage(const json_t *u)
{
    if (!json_is_object(u))
        return (tx_usage_t){0};
    int64_t cr = int_member(u, "cacheReadInputTokens"), cw = int_member(u, "cacheWriteInputTokens");
    return tx_usage_make(int_member(u, "inputTokens") + cr + cw, int_member(u, "outputTokens"), cr, cw);
}

/* ---------------------------------------------------------------- requests */

static const char *
image_format(const char *media_type)
{
    static const char *const map[][2] = {
        {"image/png", "png"}, {"image/jpeg", "jpeg"}, {"image/jpg", "jpeg"},
        {"image/gif", "gif"}, {"image/webp", "webp"},
    };
    for (size_t i = 0; media_type != NULL && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcasecmp(media_type, map[i][0]) == 0)
            return map[i][1];
    return NULL;
}

static const char *
format_from_ext(const char *url)
{
    const char *dot = strrchr(url, '.');
    if (dot == NULL)
        return NULL;
    if (strcasecmp(dot, ".png") == 0)
        return "png";
    if (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0)
        return "jpeg";
    if (strcasecmp(dot, ".gif") == 0)
        return "gif";
    if (strcasecmp(dot, ".webp") == 0)
        return "webp";
    return NULL;
}

static json_t *
image_block(const tx_part_t *p, tg_arena_t *a, tx_error_t *err)
{
    const char *media_type = p->media_type, *data = p->data;
    if (data == NULL && p->url != NULL && strncmp(p->url, "data:", 5) == 0 &&
        tx_split_data_url(p->url, a, &media_type, &data) != 0) {
        tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_image", "messages", "An image data URL is not base64 encoded.");
        return NULL;
    }
    json_t *source;
    const char *fmt = image_format(media_type);
    if (data != NULL) {
        source = json_pack("{s:s}", "bytes", data);
    } else if (p->url != NULL && strncmp(p->url, "s3://", 5) == 0) {
        if (fmt == NULL)
            fmt = format_from_ext(p->url);
        source = json_pack("{s:{s:s}}", "s3Location", "uri", p->url);
    } else {
        tx_fail(err, TX_ERR_INVALID_REQUEST, "unsupported_image_url", "messages",
                "Bedrock takes images as bytes: send the image as a base64 data URL (or an s3:// URI), not a web "
                "URL.");
        return NULL;
    }
    if (fmt == NULL) {
        json_decref(source);
        tx_fail(err, TX_ERR_INVALID_REQUEST, "unsupported_image_format", "messages",
                "Bedrock takes PNG, JPEG, GIF and WebP images; this image is %s.",
                media_type != NULL ? media_type : "of unknown type");
        return NULL;
    }
    json_t *b = json_pack("{s:{s:s,s:o}}", "image", "format", fmt, "source", source);
    if (b == NULL)
        tx_oom(err);
    return b;
}

/* One neutral part as a Converse content block; NULL with err->message[0] == 0 when it is skipped. */
static json_t *
content_block(const tx_part_t *p, tx_role_t role, size_t seq, tg_arena_t *a, tx_error_t *err)
{
    json_t *b = NULL;
    switch (p->kind) {
    case TX_PART_TEXT:
        if (p->text == NULL || p->text[0] == '\0')
            return NULL; /* Converse rejects blank text blocks */
        b = json_pack("{s:s}", "text", p->text);
        break;
    case TX_PART_IMAGE:
        return image_block(p, a, err);
    case TX_PART_TOOL_CALL: {
        if (p->name == NULL || p->name[0] == '\0') {
            tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_tool_call", "messages", "A tool call has no name.");
            return NULL;
        }
        const char *id = p->id != NULL && p->id[0] != '\0' ? p->id : tg_arena_sprintf(a, "tooluse_tg%zu", seq);
        json_t *input = json_is_object(p->args) ? json_incref(p->args) : json_object();
        b = json_pack("{s:{s:s,s:s,s:o}}", "toolUse", "toolUseId", id ? id : "", "name", p->name, "input", input);
        break;
    }
    case TX_PART_TOOL_RESULT: {
        if (p->id == NULL || p->id[0] == '\0') {
            tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_tool_result", "messages",
                    "A tool result does not say which tool call it answers.");
            return NULL;
        }
        json_t *content = json_array();
        if (p->text != NULL && p->text[0] != '\0')
            json_array_append_new(content, json_pack("{s:s}", "text", p->text));
        b = json_pack("{s:{s:s,s:o}}", "toolResult", "toolUseId", p->id, "content", content);
        if (b != NULL && p->is_error)
            json_object_set_new(json_object_get(b, "toolResult"), "status", json_string("error"));
        break;
    }
    case TX_PART_THINKING:
        if (role != TX_ROLE_ASSISTANT || p->text == NULL)
            return NULL;
        b = p->signature != NULL ? json_pack("{s:{s:{s:s,s:s}}}", "reasoningContent", "reasoningText", "text", p->text,
                                             "signature", p->signature)
                                 : json_pack("{s:{s:{s:s}}}", "reasoningContent", "reasoningText", "text", p->text);
        break;
    case TX_PART_REDACTED_THINKING:
        if (role != TX_ROLE_ASSISTANT || p->text == NULL)
            return NULL;
        b = json_pack("{s:{s:s}}", "reasoningContent", "redactedContent", p->text);
        break;
    }
    if (b == NULL)
        tx_oom(err);
    return b;
}

static int
has_tool_blocks(const tx_request_t *r)
{
    for (size_t i = 0; i < r->n_messages; i++)
        for (size_t j = 0; j < r->messages[i].n_parts; j++)
            if (r->messages[i].parts[j].kind == TX_PART_TOOL_CALL ||
                r->messages[i].parts[j].kind == TX_PART_TOOL_RESULT)
                return 1;
    return 0;
}

/* messages[] with alternating roles; tool turns become user turns. */
static json_t *
encode_messages(const tx_request_t *r, tg_arena_t *a, tx_error_t *err)
{
    json_t *msgs = json_array(), *content = NULL;
    const char *cur_role = NULL;
    size_t seq = 0;
    if (msgs == NULL) {
        tx_oom(err);
        return NULL;
    }
    for (size_t i = 0; i < r->n_messages; i++) {
        const tx_message_t *m = &r->messages[i];
        const char *role = m->role == TX_ROLE_ASSISTANT ? "assistant" : "user";
        if (cur_role == NULL || strcmp(cur_role, role) != 0) {
            content = json_array();
            if (content == NULL ||
                json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", role, "content", content)) != 0) {
                json_decref(msgs);
                tx_oom(err);
                return NULL;
            }
            cur_role = role;
        }
        for (size_t j = 0; j < m->n_parts; j++) {
            err->message[0] = '\0';
            json_t *b = content_block(&m->parts[j], m->role, seq++, a, err);
            if (b == NULL && err->message[0] != '\0') {
                json_decref(msgs);
                return NULL;
            }
            if (b != NULL)
                json_array_append_new(content, b);
        }
    }
    return msgs;
}

static json_t *
tool_spec(const char *name, const char *description, json_t *schema)
{
    json_t *spec = json_pack("{s:s}", "name", name);
    if (spec == NULL)
        return NULL;
    if (description != NULL && description[0] != '\0')
        json_object_set_new(spec, "description", json_string(description));
    json_object_set_new(spec, "inputSchema",
                        json_pack("{s:o}", "json",
                                  json_is_object(schema) ? json_incref(schema)
                                                         : json_pack("{s:s,s:{}}", "type", "object", "properties")));
    return json_pack("{s:o}", "toolSpec", spec);
}

static int
tools_have(json_t *tools, const char *name)
{
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        const char *n = tx_json_str(json_object_get(t, "toolSpec"), "name");
        if (n != NULL && strcmp(n, name) == 0)
            return 1;
    }
    return 0;
}

/* toolConfig, or NULL when the request goes without one (err->message set on failure). */
static json_t *
encode_tool_config(const tx_request_t *r, tx_error_t *err)
{
    int history = has_tool_blocks(r), forced_json = json_via_tool(r);
    if (!forced_json && !history && (r->n_tools == 0 || r->tool_choice == TX_TOOL_CHOICE_NONE))
        return NULL;
    json_t *tools = json_array(), *cfg = NULL;
    for (size_t i = 0; i < r->n_tools; i++) {
        const tx_tool_t *t = &r->tools[i];
        if (!valid_tool_name(t->name)) {
            json_decref(tools);
            tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_tool_name", "tools",
                    "Bedrock tool names are 1 to 64 letters, digits, '_' or '-'; \"%s\" is not.",
                    t->name ? t->name : "");
            return NULL;
        }
        json_array_append_new(tools, tool_spec(t->name, t->description, t->parameters));
    }
    if (forced_json) {
        json_t *schema = r->format == TX_FORMAT_JSON_SCHEMA ? r->format_schema : NULL;
        json_array_append_new(tools,
                              tool_spec(json_tool_name(r), "Respond by calling this tool with the answer.", schema));
    }
    /* Converse refuses a history with tool blocks unless every tool it names has a spec */
    for (size_t i = 0; history && i < r->n_messages; i++)
        for (size_t j = 0; j < r->messages[i].n_parts; j++) {
            const tx_part_t *p = &r->messages[i].parts[j];
            if (p->kind == TX_PART_TOOL_CALL && valid_tool_name(p->name) && !tools_have(tools, p->name))
                json_array_append_new(tools, tool_spec(p->name, NULL, NULL));
        }
    if (json_array_size(tools) == 0) {
        json_decref(tools);
        return NULL;
    }
    cfg = json_pack("{s:o}", "tools", tools);
    if (cfg == NULL) {
        tx_oom(err);
        return NULL;
    }
    if (forced_json) {
        json_object_set_new(cfg, "toolChoice", json_pack("{s:{s:s}}", "tool", "name", json_tool_name(r)));
    } else if (r->n_tools > 0) {
        switch (r->tool_choice) {
        case TX_TOOL_CHOICE_AUTO:
            json_object_set_new(cfg, "toolChoice", json_pack("{s:{}}", "auto"));
            break;
        case TX_TOOL_CHOICE_REQUIRED:
            json_object_set_new(cfg, "toolChoice", json_pack("{s:{}}", "any"));
            break;
        case TX_TOOL_CHOICE_NAMED:
            if (r->tool_choice_name == NULL || !tools_have(tools, r->tool_choice_name)) {
                json_decref(cfg);
                tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_tool_choice", "tool_choice",
                        "tool_choice names a tool that is not among the request's tools.");
                return NULL;
            }
            json_object_set_new(cfg, "toolChoice", json_pack("{s:{s:s}}", "tool", "name", r->tool_choice_name));
            break;
        default: /* unset: the model's default (auto); none: cannot be said, tools kept for the history */
            break;
        }
    }
    return cfg;
}

/* requestMetadata values are limited to [a-zA-Z0-9 :_@$#=/+,.-]{0,256}: an id outside that is dropped
 * rather than failing the request. */
static int
metadata_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 256)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              strchr(" :_@$#=/+,.-", s[i]) != NULL))
            return 0;
    return 1;
}

/* The system blocks: the client's system text, plus the JSON wish when it cannot be a forced tool. */
static json_t *
encode_system(const tx_request_t *r, tg_arena_t *a)
{
    json_t *sys = json_array();
    if (r->system != NULL && r->system[0] != '\0')
        json_array_append_new(sys, json_pack("{s:s}", "text", r->system));
    if (r->format != TX_FORMAT_TEXT && !json_via_tool(r)) {
        const char *schema = r->format == TX_FORMAT_JSON_SCHEMA && r->format_schema != NULL
                                 ? tx_dump_json(r->format_schema, a, NULL)
                                 : NULL;
        json_array_append_new(sys, json_pack("{s:s}", "text",
                                             schema != NULL ? tg_arena_sprintf(a,
                                                                               "Respond only with a JSON object that "
                                                                               "matches this JSON Schema: %s",
                                                                               schema)
                                                            : "Respond only with a JSON object."));
    }
    if (json_array_size(sys) == 0) {
        json_decref(sys);
        return NULL;
    }
    return sys;
}

static int
finish(json_t *body, const char *url, tg_arena_t *a, tx_http_request_t *ret, tx_error_t *err)
{
    size_t len;
    char *s = body != NULL ? tx_dump_json(body, a, &len) : NULL;
    json_decref(body);
    if (s == NULL || url == NULL)
        return tx_oom(err);
    memset(ret, 0, sizeof(*ret));
    ret->url = url;
    ret->body = s;
    ret->body_len = len;
    return 0;
}

static int
encode_embed(const tx_request_t *r, const char *base, tg_arena_t *a, tx_http_request_t *ret, tx_error_t *err)
{
    if (r->n_inputs != 1)
        return tx_fail(err, TX_ERR_INVALID_REQUEST, "unsupported_input", "input",
                       "Bedrock embeddings take one input per request; this request has %zu. Send one request per "
                       "input.",
                       r->n_inputs);
    json_t *body = json_pack("{s:s}", "inputText", r->inputs[0] != NULL ? r->inputs[0] : "");
    if (body != NULL && r->dimensions > 0)
        json_object_set_new(body, "dimensions", json_integer(r->dimensions));
    return finish(body, tg_arena_sprintf(a, "%s/invoke", base), a, ret, err);
}

static int
encode_request(const tx_request_t *r, const tx_target_t *t, tg_arena_t *a, tx_http_request_t *ret, tx_error_t *err)
{
    const char *model = t->upstream_model != NULL && t->upstream_model[0] != '\0' ? t->upstream_model : r->model;
    if (model == NULL || t->base_url == NULL)
        return tx_fail(err, TX_ERR_INVALID_REQUEST, "model_not_found", "model", "No Bedrock model id to call.");
    char *enc = encode_model(model, a);
    const char *base = enc != NULL ? tg_arena_sprintf(a, "%s/model/%s", t->base_url, enc) : NULL;
    if (base == NULL)
        return tx_oom(err);
    if (r->op == TX_OP_EMBED)
        return encode_embed(r, base, a, ret, err);

    err->message[0] = '\0';
    json_t *msgs = encode_messages(r, a, err);
    if (msgs == NULL)
        return -1;
    json_t *body = json_object(), *sys = encode_system(r, a);
    if (sys != NULL)
        json_object_set_new(body, "system", sys);
    json_object_set_new(body, "messages", msgs);

    if (r->op == TX_OP_COUNT_TOKENS) {
        /* CountTokens wraps a Converse body (messages and system only) */
        json_t *conv = body;
        body = json_pack("{s:{s:o}}", "input", "converse", conv);
        return finish(body, tg_arena_sprintf(a, "%s/count-tokens", base), a, ret, err);
    }

    json_t *tc = encode_tool_config(r, err);
    if (tc == NULL && err->message[0] != '\0') {
        json_decref(body);
        return -1;
    }
    if (tc != NULL)
        json_object_set_new(body, "toolConfig", tc);

    json_t *ic = json_object();
    if (r->max_tokens >= 0)
        json_object_set_new(ic, "maxTokens", json_integer(r->max_tokens));
    if (r->has_temperature)
        json_object_set_new(ic, "temperature", json_real(r->temperature));
    if (r->has_top_p)
        json_object_set_new(ic, "topP", json_real(r->top_p));
    if (r->n_stop > 0) {
        json_t *stops = json_array();
        for (size_t i = 0; i < r->n_stop; i++)
            if (r->stop[i] != NULL)
                json_array_append_new(stops, json_string(r->stop[i]));
        json_object_set_new(ic, "stopSequences", stops);
    }
    if (json_object_size(ic) > 0)
        json_object_set_new(body, "inferenceConfig", ic);
    else
        json_decref(ic);
    /* Converse has no top_k or seed; top_k goes to the model as a native field (Anthropic's and
     * Mistral's name), seed and penalties are dropped */
    if (r->top_k >= 0)
        json_object_set_new(body, "additionalModelRequestFields", json_pack("{s:I}", "top_k", (json_int_t)r->top_k));
    if (r->user != NULL && metadata_ok(r->user))
        json_object_set_new(body, "requestMetadata", json_pack("{s:s}", "user", r->user));

    return finish(body, tg_arena_sprintf(a, "%s/%s", base, r->stream ? "converse-stream" : "converse"), a, ret, err);
}

/* ---------------------------------------------------------------- responses */

static int
decode_embed(json_t *root, tg_arena_t *a, tx_response_t *ret, tx_error_t *err)
{
    json_t *emb = json_object_get(root, "embedding");
    if (!json_is_array(emb))
        return tx_fail(err, TX_ERR_UPSTREAM, "bad_response", NULL, "Bedrock's embedding response has no embedding.");
    size_t n = json_array_size(emb);
    tx_embedding_t *e = tg_arena_alloc(a, sizeof(*e));
    float *v = tg_arena_alloc(a, (n ? n : 1) * sizeof(float));
    if (e == NULL || v == NULL)
        return tx_oom(err);
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(emb, i);
        if (!json_is_number(x))
            return tx_fail(err, TX_ERR_UPSTREAM, "bad_response", NULL, "Bedrock's embedding has a non-number.");
        v[i] = (float)json_number_value(x);
    }
    e->values = v;
    e->n = n;
    ret->embeddings = e;
    ret->n_embeddings = 1;
    ret->usage = tx_usage_make(int_member(root, "inputTextTokenCount"), 0, 0, 0);
    return 0;
}

static int
decode_response(const tx_request_t *r, const char *body, size_t len, tg_arena_t *a, tx_response_t *ret, tx_error_t *err)
{
    json_t *root = tx_parse_json(body, len, a, err);
    if (root == NULL || !json_is_object(root))
        return tx_fail(err, TX_ERR_UPSTREAM, "bad_response", NULL, "Bedrock answered with a body that is not JSON.");
    memset(ret, 0, sizeof(*ret));
    if (r->op == TX_OP_EMBED)
        return decode_embed(root, a, ret, err);
    if (r->op == TX_OP_COUNT_TOKENS) {
        json_t *n = json_object_get(root, "inputTokens");
        if (!json_is_integer(n))
            return tx_fail(err, TX_ERR_UPSTREAM, "bad_response", NULL, "Bedrock's token count has no inputTokens.");
        ret->input_tokens = (int64_t)json_integer_value(n);
        return 0;
    }

    json_t *content = json_object_get(json_object_get(json_object_get(root, "output"), "message"), "content");
    if (!json_is_array(content))
        return tx_fail(err, TX_ERR_UPSTREAM, "bad_response", NULL, "Bedrock's response has no output message.");
    size_t n = json_array_size(content), i;
    ret->parts = tg_arena_alloc(a, (n ? n : 1) * sizeof(tx_part_t));
    if (ret->parts == NULL)
        return tx_oom(err);
    json_t *b;
    json_array_foreach(content, i, b)
    {
        tx_part_t *p = &ret->parts[ret->n_parts];
        json_t *v;
        if ((v = json_object_get(b, "text")) != NULL && json_is_string(v)) {
            p->kind = TX_PART_TEXT;
            p->text = json_string_value(v);
        } else if ((v = json_object_get(b, "toolUse")) != NULL && json_is_object(v)) {
            json_t *input = json_object_get(v, "input");
            const char *name = tx_json_str(v, "name");
            if (is_json_tool(r, name)) {
                p->kind = TX_PART_TEXT;
                p->text = input != NULL ? tx_dump_json(input, a, NULL) : "{}";
                if (p->text == NULL)
                    return tx_oom(err);
            } else {
                p->kind = TX_PART_TOOL_CALL;
                p->id = tx_json_str(v, "toolUseId");
                p->name = name != NULL ? name : "";
                p->args = json_is_object(input) ? input : NULL;
            }
        } else if ((v = json_object_get(b, "reasoningContent")) != NULL && json_is_object(v)) {
            json_t *rt = json_object_get(v, "reasoningText");
            if (json_is_object(rt)) {
                p->kind = TX_PART_THINKING;
                p->text = tx_json_str(rt, "text");
                p->signature = tx_json_str(rt, "signature");
                if (p->text == NULL)
                    p->text = "";
            } else if (tx_json_str(v, "redactedContent") != NULL) {
                p->kind = TX_PART_REDACTED_THINKING;
                p->text = tx_json_str(v, "redactedContent");
            } else {
                continue;
            }
        } else {
            continue; /* citations, guard content, ...: nothing neutral to say */
        }
        ret->n_parts++;
    }
    ret->raw_stop = tx_json_str(root, "stopReason");
    ret->stop = map_stop(r, ret->raw_stop);
    ret->stop_sequence = tx_json_str(json_object_get(root, "additionalModelResponseFields"), "stop_sequence");
    ret->usage = map_usage(json_object_get(root, "usage"));
    return 0;
}

/* ---------------------------------------------------------------- errors */

static int
contains(const char *hay, const char *needle)
{
    return hay != NULL && strcasestr(hay, needle) != NULL;
}

/* Whether raw (non-JSON) error text can be quoted to a client as is: printable ASCII only, so that no
 * dialect has to carry control bytes or broken UTF-8 into its JSON. */
static int
quotable(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            if (s[i] != '\n' && s[i] != '\t' && s[i] != '\r')
                return 0;
    return 1;
}

/* {"message"} or {"Message"}; NULL when absent or empty (the caller then says something itself). */
static const char *
error_message(const json_t *root)
{
    const char *msg = tx_json_str(root, "message");
    if (msg == NULL || msg[0] == '\0')
        msg = tx_json_str(root, "Message");
    return msg != NULL && msg[0] != '\0' ? msg : NULL;
}

/* The error kind of an exception name (HTTP or in-stream), or -1 when unknown. */
static int
exception_kind(const char *name, size_t n)
{
    static const struct {
        const char *name;
        tx_error_kind_t kind;
    } map[] = {
        {"validationException", TX_ERR_INVALID_REQUEST},      {"throttlingException", TX_ERR_RATE_LIMIT},
        {"serviceUnavailableException", TX_ERR_OVERLOADED},   {"modelNotReadyException", TX_ERR_OVERLOADED},
        {"modelStreamErrorException", TX_ERR_UPSTREAM},       {"modelErrorException", TX_ERR_UPSTREAM},
        {"internalServerException", TX_ERR_UPSTREAM},         {"modelTimeoutException", TX_ERR_TIMEOUT},
        {"accessDeniedException", TX_ERR_PERMISSION},         {"resourceNotFoundException", TX_ERR_NOT_FOUND},
        {"serviceQuotaExceededException", TX_ERR_RATE_LIMIT},
    };
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strlen(map[i].name) == n && strncasecmp(map[i].name, name, n) == 0)
            return (int)map[i].kind;
    return -1;
}

static void
decode_error(int status, const char *body, size_t len, tx_error_t *err)
{
    json_t *root = body != NULL && len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
    const char *msg = error_message(root);
    /* the exception's name is in x-amzn-ErrorType, which we do not see; some bodies carry it too */
    const char *type = tx_json_str(root, "__type");
    if (type != NULL && strchr(type, '#') != NULL)
        type = strchr(type, '#') + 1;

    tx_error_kind_t kind = tx_error_kind_of_status(status);
    const char *code = "";
    switch (status) {
    case 400:
        code = "ValidationException";
        break;
    case 403:
        kind = TX_ERR_PERMISSION;
        code = "AccessDeniedException";
        break;
    case 404:
        code = "ResourceNotFoundException";
        break;
    case 408:
        kind = TX_ERR_TIMEOUT;
        code = "ModelTimeoutException";
        break;
    case 424:
        kind = TX_ERR_UPSTREAM;
        code = "ModelErrorException";
        break;
    case 429:
        code = "ThrottlingException";
        if (contains(msg, "not ready"))
            kind = TX_ERR_OVERLOADED, code = "ModelNotReadyException";
        break;
    case 500:
        code = "InternalServerException";
        break;
    case 503:
        code = "ServiceUnavailableException";
        break;
    }
    if (type != NULL) {
        int k = exception_kind(type, strcspn(type, ":"));
        if (k >= 0 && status >= 400 && status < 500)
            kind = (tx_error_kind_t)k;
        code = type;
    }
    if (contains(msg, "signature") || contains(msg, "security token") || contains(msg, "api key") ||
        contains(msg, "bearer token") || contains(msg, "UnrecognizedClient"))
        kind = TX_ERR_AUTHENTICATION;
    if (contains(msg, "Input is too long") || contains(msg, "too many input tokens") || contains(msg, "context window"))
        code = "context_length_exceeded";
    if (msg != NULL)
        tx_fail(err, kind, code, NULL, "%s", msg);
    else if (body != NULL && root == NULL && quotable(body, len > 300 ? 300 : len))
        tx_fail(err, kind, code, NULL, "Bedrock returned HTTP %d: %.*s", status, (int)(len > 300 ? 300 : len), body);
    else
        tx_fail(err, kind, code, NULL, "Bedrock returned HTTP %d.", status);
    json_decref(root);
}

/* ---------------------------------------------------------------- streams */

struct tx_stream_state {
    int json_index; /* the forced JSON tool's block, whose input is the answer's text; -1 none */
    int json_index_set;
    int ended;
};

static int
block_index(json_t *o, int *ret, tx_error_t *err)
{
    json_t *v = json_object_get(o, "contentBlockIndex");
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT_MAX / 2)
        return tx_fail(err, TX_ERR_UPSTREAM, "bad_stream", NULL,
                       "A Bedrock stream event has no valid contentBlockIndex.");
    *ret = (int)json_integer_value(v);
    return 0;
}

static int
stream_exception(const tx_frame_t *f, tx_emit_fn emit, void *ctx)
{
    json_t *root = json_loadb(f->data, f->data_len, 0, NULL);
    const char *msg = error_message(root);
    int k = exception_kind(f->event, f->event_len);
    tx_error_t e = {0};
    int ok = f->event != NULL && quotable(f->event, f->event_len > 60 ? 60 : f->event_len);
    const char *name = ok ? f->event : "unknownException";
    int name_len = ok ? (int)(f->event_len > 60 ? 60 : f->event_len) : 16;
    char code[64];
    snprintf(code, sizeof(code), "%.*s", name_len, name);
    if (msg != NULL)
        tx_fail(&e, k >= 0 ? (tx_error_kind_t)k : TX_ERR_UPSTREAM, code, NULL, "%s", msg);
    else if (root == NULL && quotable(f->data, f->data_len > 400 ? 400 : f->data_len))
        tx_fail(&e, k >= 0 ? (tx_error_kind_t)k : TX_ERR_UPSTREAM, code, NULL, "%.*s",
                (int)(f->data_len > 400 ? 400 : f->data_len), f->data);
    else
        tx_fail(&e, k >= 0 ? (tx_error_kind_t)k : TX_ERR_UPSTREAM, code, NULL, "Bedrock's stream failed (%.*s).",
                name_len, name);
    tx_event_t ev = {.kind = TX_EV_ERROR, .error = &e};
    int rc = emit(ctx, &ev);
    json_decref(root);
    return rc;
}

static int
event_is(const tx_frame_t *f, const char *name)
{
    size_t n = strlen(name);
    return f->event != NULL && f->event_len == n && memcmp(f->event, name, n) == 0;
}

static int
stream_event(tx_stream_state_t *st, const tx_request_t *r, const tx_frame_t *f, json_t *o, tx_emit_fn emit, void *ctx,
             tx_error_t *err)
{
    tx_event_t ev = {0};
    if (event_is(f, "messageStart")) {
        ev.kind = TX_EV_START;
        return emit(ctx, &ev);
    }
    if (event_is(f, "contentBlockStart")) {
        json_t *tu = json_object_get(json_object_get(o, "start"), "toolUse");
        if (!json_is_object(tu))
            return 0; /* only tool-use blocks are announced; others start with their first delta */
        if (block_index(o, &ev.index, err) != 0)
            return -1;
        ev.name = tx_json_str(tu, "name");
        if (is_json_tool(r, ev.name)) {
            st->json_index = ev.index;
            st->json_index_set = 1;
            return 0;
        }
        ev.kind = TX_EV_TOOL_START;
        ev.id = tx_json_str(tu, "toolUseId");
        if (ev.name == NULL)
            ev.name = "";
        return emit(ctx, &ev);
    }
    if (event_is(f, "contentBlockDelta")) {
        json_t *d = json_object_get(o, "delta"), *v;
        if (block_index(o, &ev.index, err) != 0)
            return -1;
        if ((v = json_object_get(d, "text")) != NULL && json_is_string(v)) {
            ev.kind = TX_EV_TEXT;
            ev.text = json_string_value(v);
            ev.text_len = json_string_length(v);
        } else if ((v = json_object_get(json_object_get(d, "toolUse"), "input")) != NULL && json_is_string(v)) {
            ev.kind = st->json_index_set && st->json_index == ev.index ? TX_EV_TEXT : TX_EV_TOOL_ARGS;
            ev.text = json_string_value(v);
            ev.text_len = json_string_length(v);
        } else if ((v = json_object_get(d, "reasoningContent")) != NULL && json_is_object(v)) {
            json_t *t = json_object_get(v, "text");
            ev.kind = TX_EV_THINKING;
            if (json_is_string(t)) {
                ev.text = json_string_value(t);
                ev.text_len = json_string_length(t);
            }
            ev.signature = tx_json_str(v, "signature");
            if (ev.text == NULL && ev.signature == NULL)
                return 0; /* redacted reasoning has no neutral stream form */
        } else {
            return 0; /* citations and other deltas */
        }
        return emit(ctx, &ev);
    }
    if (event_is(f, "contentBlockStop")) {
        if (block_index(o, &ev.index, err) != 0)
            return -1;
        ev.kind = TX_EV_BLOCK_END;
        return emit(ctx, &ev);
    }
    if (event_is(f, "messageStop")) {
        ev.kind = TX_EV_STOP;
        ev.stop = map_stop(r, tx_json_str(o, "stopReason"));
        if (ev.stop == TX_STOP_UNSET)
            ev.stop = TX_STOP_END;
        ev.stop_sequence = tx_json_str(json_object_get(o, "additionalModelResponseFields"), "stop_sequence");
        return emit(ctx, &ev);
    }
    if (event_is(f, "metadata")) {
        int rc;
        json_t *u = json_object_get(o, "usage");
        if (json_is_object(u)) {
            ev.kind = TX_EV_USAGE;
            ev.usage = map_usage(u);
            if ((rc = emit(ctx, &ev)) != 0)
                return rc;
        }
        st->ended = 1;
        tx_event_t end = {.kind = TX_EV_END};
        return emit(ctx, &end);
    }
    return 0; /* unknown events are ignored */
}

static int
stream_frame(tx_stream_state_t *st, const tx_request_t *r, const tx_frame_t *f, tg_arena_t *a, tx_emit_fn emit,
             void *ctx, tx_error_t *err)
{
    if (st->ended)
        return 0;
    if (f->exception)
        return stream_exception(f, emit, ctx);
    json_t *o = json_loadb(f->data, f->data_len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return tx_fail(err, TX_ERR_UPSTREAM, "bad_stream", NULL, "A Bedrock stream event is not a JSON object.");
    }
    int rc = stream_event(st, r, f, o, emit, ctx, err);
    json_decref(o);
    return rc;
}

const tx_provider_ops_t tx_bedrock_provider = {
    .kind = "bedrock",
    .framing = TX_FRAMING_EVENTSTREAM,
    .stream_state_size = sizeof(struct tx_stream_state),
    .encode_request = encode_request,
    .decode_response = decode_response,
    .decode_error = decode_error,
    .stream_frame = stream_frame,
};
