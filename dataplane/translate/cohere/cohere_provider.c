/*
 * Cohere v2 as an upstream provider (shared/ref/providers.md §6): POST {base}/v2/chat (JSON or named-event
 * SSE) and POST {base}/v2/embed. Authentication (Bearer) is the snapshot's job.
 *
 * Mapping decisions:
 * - tool_plan (the model's words before it calls tools) is plain TEXT both ways: an assistant turn with
 *   tool calls sends its text as tool_plan, and a response's or stream's tool_plan becomes a text block
 *   placed before the calls. Nothing is lost in a round trip and every dialect can show it.
 * - Cohere cannot force one named tool: TX_TOOL_CHOICE_NAMED becomes "REQUIRED" with only that tool
 *   listed, which has the same effect.
 * - top_p is clamped into Cohere's p range [0.01, 0.99], so that clients sending top_p = 1 still work.
 * - Usage: billed_units (what Cohere charges) win over tokens (raw counts, which include the chat
 *   template); tokens is the fallback field by field. Cohere reports no cache tokens.
 * - Thinking parts in history are not sent back (Cohere does not take them as input).
 *
 * Streams: one SSE event per call. Text pointers in emitted events are valid during the emit only (the
 * frame's JSON tree is freed on return, so memory stays bounded); ids, names and models are arena copies.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "translate/tx.h"

#define COHERE_MAX_TEXTS 96 /* per /v2/embed request */

/* ---------------------------------------------------------------- small helpers */

static json_t *
jstr(const char *s)
{
    return json_string(s != NULL ? s : "");
}

/* A JSON number as a non-negative count, or -1 (absent, negative, not finite or absurd). */
static int64_t
count_of(const json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v) >= 0 ? (int64_t)json_integer_value(v) : -1;
    if (json_is_real(v)) {
        double d = json_real_value(v);
        return d >= 0 && d < 1e15 ? (int64_t)d : -1;
    }
    return -1;
}

/* ---------------------------------------------------------------- requests */

static json_t *
image_part(const tx_part_t *p, tg_arena_t *a)
{
    const char *url = p->url;
    if (url == NULL && p->data != NULL)
        url = tg_arena_sprintf(a, "data:%s;base64,%s", p->media_type ? p->media_type : "image/png", p->data);
    if (url == NULL)
        return NULL;
    return json_pack("{s:s, s:{s:s}}", "type", "image_url", "image_url", "url", url);
}

/* The tool messages for the TOOL_RESULT parts of m, appended to out. */
static int
add_tool_results(json_t *out, const tx_message_t *m)
{
    for (size_t i = 0; i < m->n_parts; i++) {
        const tx_part_t *p = &m->parts[i];
        if (p->kind != TX_PART_TOOL_RESULT)
            continue;
        json_t *msg = json_object();
        json_object_set_new(msg, "role", json_string("tool"));
        json_object_set_new(msg, "tool_call_id", jstr(p->id));
        json_object_set_new(msg, "content", jstr(p->text));
        if (json_array_append_new(out, msg) != 0)
            return -1;
    }
    return 0;
}

static int
add_user(json_t *out, const tx_message_t *m, tg_arena_t *a, tx_error_t *err)
{
    /* tool results first: a client that puts them in a user turn (Anthropic) answers the previous turn */
    if (add_tool_results(out, m) != 0)
        return tx_oom(err);
    size_t n_text = 0, n_image = 0;
    for (size_t i = 0; i < m->n_parts; i++) {
        n_text += m->parts[i].kind == TX_PART_TEXT;
        n_image += m->parts[i].kind == TX_PART_IMAGE;
    }
    if (n_text + n_image == 0)
        return 0;
    json_t *content;
    if (n_image == 0 && n_text == 1) {
        content = jstr(tx_message_text(m, a));
    } else {
        content = json_array();
        for (size_t i = 0; i < m->n_parts; i++) {
            const tx_part_t *p = &m->parts[i];
            json_t *part = NULL;
            if (p->kind == TX_PART_TEXT)
                part = json_pack("{s:s, s:o}", "type", "text", "text", jstr(p->text));
            else if (p->kind == TX_PART_IMAGE && (part = image_part(p, a)) == NULL)
                return tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_image", "messages",
                               "An image part has neither a URL nor base64 data.");
            if (part != NULL && json_array_append_new(content, part) != 0)
                return tx_oom(err);
        }
    }
    json_t *msg = json_pack("{s:s, s:o}", "role", "user", "content", content);
    return json_array_append_new(out, msg) != 0 ? tx_oom(err) : 0;
}

static int
add_assistant(json_t *out, const tx_message_t *m, tg_arena_t *a, tx_error_t *err)
{
    const char *text = tx_message_text(m, a);
    json_t *calls = json_array();
    for (size_t i = 0; i < m->n_parts; i++) {
        const tx_part_t *p = &m->parts[i];
        if (p->kind != TX_PART_TOOL_CALL)
            continue;
        json_t *call = json_pack("{s:o, s:s, s:{s:o, s:o}}", "id", jstr(p->id), "type", "function", "function", "name",
                                 jstr(p->name), "arguments", jstr(tx_args_text(p, a)));
        if (json_array_append_new(calls, call) != 0) {
            json_decref(calls);
            return tx_oom(err);
        }
    }
    json_t *msg = json_object();
    json_object_set_new(msg, "role", json_string("assistant"));
    if (json_array_size(calls) > 0) {
        if (text[0] != '\0')
            json_object_set_new(msg, "tool_plan", jstr(text));
        json_object_set_new(msg, "tool_calls", calls);
    } else {
        json_decref(calls);
        if (text[0] == '\0') { /* nothing to say (e.g. thinking only): Cohere rejects empty turns */
            json_decref(msg);
            return 0;
        }
        json_object_set_new(msg, "content", jstr(text));
    }
    return json_array_append_new(out, msg) != 0 ? tx_oom(err) : 0;
}

static json_t *
tool_def(const tx_tool_t *t)
{
    json_t *params =
        t->parameters != NULL ? json_incref(t->parameters) : json_pack("{s:s, s:{}}", "type", "object", "properties");
    json_t *fn = json_pack("{s:o, s:o}", "name", jstr(t->name), "parameters", params);
    if (fn != NULL && t->description != NULL)
        json_object_set_new(fn, "description", jstr(t->description));
    return json_pack("{s:s, s:o}", "type", "function", "function", fn);
}

static int
encode_tools(json_t *root, const tx_request_t *r, tx_error_t *err)
{
    if (r->n_tools == 0)
        return 0;
    const char *only = NULL;
    if (r->tool_choice == TX_TOOL_CHOICE_NAMED) {
        only = r->tool_choice_name != NULL ? r->tool_choice_name : "";
        size_t i = 0;
        while (i < r->n_tools && (r->tools[i].name == NULL || strcmp(r->tools[i].name, only) != 0))
            i++;
        if (i == r->n_tools)
            return tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_tool_choice", "tool_choice",
                           "tool_choice names the tool '%s', which is not among the declared tools.", only);
    }
    json_t *tools = json_array();
    json_object_set_new(root, "tools", tools);
    for (size_t i = 0; i < r->n_tools; i++) {
        if (only != NULL && (r->tools[i].name == NULL || strcmp(r->tools[i].name, only) != 0))
            continue;
        if (json_array_append_new(tools, tool_def(&r->tools[i])) != 0)
            return tx_oom(err);
    }
    if (r->tool_choice == TX_TOOL_CHOICE_NONE)
        json_object_set_new(root, "tool_choice", json_string("NONE"));
    else if (r->tool_choice == TX_TOOL_CHOICE_REQUIRED || r->tool_choice == TX_TOOL_CHOICE_NAMED)
        json_object_set_new(root, "tool_choice", json_string("REQUIRED"));
    return 0;
}

static int
encode_chat(const tx_request_t *r, json_t *root, tg_arena_t *a, tx_error_t *err)
{
    json_t *msgs = json_array();
    json_object_set_new(root, "messages", msgs);
    if (r->system != NULL)
        json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", "system", "content", jstr(r->system)));
    for (size_t i = 0; i < r->n_messages; i++) {
        const tx_message_t *m = &r->messages[i];
        int rc = 0;
        if (m->role == TX_ROLE_USER)
            rc = add_user(msgs, m, a, err);
        else if (m->role == TX_ROLE_ASSISTANT)
            rc = add_assistant(msgs, m, a, err);
        else if (add_tool_results(msgs, m) != 0)
            rc = tx_oom(err);
        if (rc != 0)
            return rc;
    }
    if (json_array_size(msgs) == 0)
        return tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_request", "messages", "The request has no messages.");
    if (encode_tools(root, r, err) != 0)
        return -1;
    if (r->format == TX_FORMAT_JSON_OBJECT || r->format == TX_FORMAT_JSON_SCHEMA) {
        json_t *rf = json_pack("{s:s}", "type", "json_object");
        if (r->format == TX_FORMAT_JSON_SCHEMA && r->format_schema != NULL)
            json_object_set(rf, "json_schema", r->format_schema);
        json_object_set_new(root, "response_format", rf);
    }
    if (r->max_tokens >= 0)
        json_object_set_new(root, "max_tokens", json_integer(r->max_tokens));
    if (r->n_stop > 0) {
        json_t *stop = json_array();
        for (size_t i = 0; i < r->n_stop; i++)
            json_array_append_new(stop, jstr(r->stop[i]));
        json_object_set_new(root, "stop_sequences", stop);
    }
    if (r->has_temperature)
        json_object_set_new(root, "temperature", json_real(r->temperature));
    if (r->has_top_p) {
        double p = isnan(r->top_p) ? 0.75 : r->top_p < 0.01 ? 0.01 : r->top_p > 0.99 ? 0.99 : r->top_p;
        json_object_set_new(root, "p", json_real(p));
    }
    if (r->top_k >= 0)
        json_object_set_new(root, "k", json_integer(r->top_k));
    if (r->has_seed)
        json_object_set_new(root, "seed", json_integer(r->seed));
    if (r->has_frequency_penalty)
        json_object_set_new(root, "frequency_penalty", json_real(r->frequency_penalty));
    if (r->has_presence_penalty)
        json_object_set_new(root, "presence_penalty", json_real(r->presence_penalty));
    json_object_set_new(root, "stream", json_boolean(r->stream));
    return 0;
}

/* Cohere's input_type for a Gemini task type (or a Cohere value passed through). */
static const char *
input_type(const char *task)
{
    static const struct {
        const char *task, *type;
    } map[] = {
        {"RETRIEVAL_QUERY", "search_query"},       {"QUESTION_ANSWERING", "search_query"},
        {"FACT_VERIFICATION", "search_query"},     {"CODE_RETRIEVAL_QUERY", "search_query"},
        {"RETRIEVAL_DOCUMENT", "search_document"}, {"SEMANTIC_SIMILARITY", "search_document"},
        {"CLASSIFICATION", "classification"},      {"CLUSTERING", "clustering"},
        {"search_query", "search_query"},          {"search_document", "search_document"},
        {"classification", "classification"},      {"clustering", "clustering"},
    };
    for (size_t i = 0; task != NULL && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i].task, task) == 0)
            return map[i].type;
    return "search_document";
}

static int
encode_embed(const tx_request_t *r, json_t *root, tx_error_t *err)
{
    if (r->n_inputs == 0)
        return tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_request", "input", "The request has no input to embed.");
    if (r->n_inputs > COHERE_MAX_TEXTS)
        return tx_fail(err, TX_ERR_INVALID_REQUEST, "too_many_inputs", "input",
                       "Cohere embeds at most %d texts per request; this one has %zu.", COHERE_MAX_TEXTS, r->n_inputs);
    json_t *texts = json_array();
    json_object_set_new(root, "texts", texts);
    for (size_t i = 0; i < r->n_inputs; i++)
        if (json_array_append_new(texts, jstr(r->inputs[i])) != 0)
            return tx_oom(err);
    json_object_set_new(root, "input_type", json_string(input_type(r->task_type)));
    json_object_set_new(root, "embedding_types", json_pack("[s]", "float"));
    if (r->dimensions >= 0)
        json_object_set_new(root, "output_dimension", json_integer(r->dimensions));
    return 0;
}

static int
encode_request(const tx_request_t *r, const tx_target_t *t, tg_arena_t *a, tx_http_request_t *ret, tx_error_t *err)
{
    const char *endpoint;
    if (r->op == TX_OP_CHAT || r->op == TX_OP_COMPLETION)
        endpoint = "chat";
    else if (r->op == TX_OP_EMBED)
        endpoint = "embed";
    else
        return tx_fail(err, TX_ERR_INVALID_REQUEST, "unsupported_operation", NULL,
                       "Token counting is not available for Cohere models.");
    json_t *root = json_object();
    if (tx_arena_keep(a, root) != 0)
        return tx_oom(err);
    const char *model = t->upstream_model != NULL ? t->upstream_model : r->model;
    json_object_set_new(root, "model", jstr(model));
    int rc = r->op == TX_OP_EMBED ? encode_embed(r, root, err) : encode_chat(r, root, a, err);
    if (rc != 0)
        return rc;
    size_t len;
    const char *body = tx_dump_json(root, a, &len);
    const char *url = tg_arena_sprintf(a, "%s/v2/%s", t->base_url, endpoint);
    if (body == NULL || url == NULL)
        return tx_oom(err);
    memset(ret, 0, sizeof(*ret));
    ret->url = url;
    ret->body = body;
    ret->body_len = len;
    return 0;
}

/* ---------------------------------------------------------------- responses */

static tx_stop_t
map_finish(const char *f)
{
    if (f == NULL)
        return TX_STOP_UNSET;
    if (strcmp(f, "COMPLETE") == 0)
        return TX_STOP_END;
    if (strcmp(f, "STOP_SEQUENCE") == 0)
        return TX_STOP_SEQUENCE;
    if (strcmp(f, "MAX_TOKENS") == 0)
        return TX_STOP_MAX_TOKENS;
    if (strcmp(f, "TOOL_CALL") == 0)
        return TX_STOP_TOOL_USE;
    if (strcmp(f, "ERROR") == 0 || strcmp(f, "TIMEOUT") == 0)
        return TX_STOP_ERROR;
    return TX_STOP_END;
}

/* billed_units first (what is charged), tokens as the fallback field by field. */
static tx_usage_t
usage_of(const json_t *u)
{
    tx_usage_t ret = {0};
    const json_t *billed = json_object_get(u, "billed_units"), *tokens = json_object_get(u, "tokens");
    int64_t in = count_of(json_object_get(billed, "input_tokens"));
    int64_t out = count_of(json_object_get(billed, "output_tokens"));
    if (in < 0)
        in = count_of(json_object_get(tokens, "input_tokens"));
    if (out < 0)
        out = count_of(json_object_get(tokens, "output_tokens"));
    if (in < 0 && out < 0)
        return ret;
    return tx_usage_make(in < 0 ? 0 : in, out < 0 ? 0 : out, 0, 0);
}

static int
decode_embed(const json_t *root, tg_arena_t *a, tx_response_t *ret, tx_error_t *err)
{
    const json_t *emb = json_object_get(root, "embeddings");
    const json_t *list = json_is_array(emb) ? emb : json_object_get(emb, "float"); /* embeddings_floats too */
    if (tx_embeddings_from_json(list, "Cohere", a, ret, err) != 0)
        return -1;
    int64_t in =
        count_of(json_object_get(json_object_get(json_object_get(root, "meta"), "billed_units"), "input_tokens"));
    if (in >= 0)
        ret->usage = tx_usage_make(in, 0, 0, 0);
    return 0;
}

static int
decode_chat(const json_t *root, tg_arena_t *a, tx_response_t *ret, tx_error_t *err)
{
    const json_t *msg = json_object_get(root, "message");
    const json_t *content = json_object_get(msg, "content"), *calls = json_object_get(msg, "tool_calls");
    const char *plan = tx_json_str(msg, "tool_plan");
    size_t cap = json_array_size(content) + json_array_size(calls) + 2;
    ret->parts = tg_arena_alloc(a, cap * sizeof(*ret->parts));
    if (ret->parts == NULL)
        return tx_oom(err);
    size_t n = 0, i;
    const json_t *c;
    if (json_is_string(content) && json_string_length(content) > 0)
        ret->parts[n++] = (tx_part_t){.kind = TX_PART_TEXT, .text = json_string_value(content)};
    json_array_foreach(content, i, c)
    {
        const char *type = tx_json_str(c, "type");
        if (type != NULL && strcmp(type, "text") == 0 && tx_json_str(c, "text") != NULL)
            ret->parts[n++] = (tx_part_t){.kind = TX_PART_TEXT, .text = tx_json_str(c, "text")};
        else if (type != NULL && strcmp(type, "thinking") == 0 && tx_json_str(c, "thinking") != NULL)
            ret->parts[n++] = (tx_part_t){.kind = TX_PART_THINKING, .text = tx_json_str(c, "thinking")};
    }
    if (plan != NULL && plan[0] != '\0' && json_array_size(calls) > 0)
        ret->parts[n++] = (tx_part_t){.kind = TX_PART_TEXT, .text = plan};
    size_t n_calls = 0;
    json_array_foreach(calls, i, c)
    {
        const json_t *fn = json_object_get(c, "function");
        const char *name = tx_json_str(fn, "name"), *args = tx_json_str(fn, "arguments");
        if (name == NULL)
            return tx_fail(err, TX_ERR_UPSTREAM, "bad_upstream_response", NULL,
                           "Cohere returned a tool call without a function name.");
        json_t *obj;
        if (args == NULL || args[0] == '\0') {
            obj = json_object();
        } else {
            obj = json_loads(args, JSON_REJECT_DUPLICATES, NULL);
            if (!json_is_object(obj)) {
                json_decref(obj);
                return tx_fail(err, TX_ERR_UPSTREAM, "bad_tool_arguments", NULL,
                               "Cohere returned arguments for tool '%.100s' that are not a JSON object.", name);
            }
        }
        if (tx_arena_keep(a, obj) != 0)
            return tx_oom(err);
        ret->parts[n++] = (tx_part_t){.kind = TX_PART_TOOL_CALL, .id = tx_json_str(c, "id"), .name = name, .args = obj};
        n_calls++;
    }
    ret->n_parts = n;
    ret->raw_stop = tx_json_str(root, "finish_reason");
    ret->stop = map_finish(ret->raw_stop);
    if (n_calls > 0 && (ret->stop == TX_STOP_END || ret->stop == TX_STOP_UNSET))
        ret->stop = TX_STOP_TOOL_USE;
    if (ret->stop == TX_STOP_UNSET)
        ret->stop = TX_STOP_END;
    ret->usage = usage_of(json_object_get(root, "usage"));
    return 0;
}

static int
decode_response(const tx_request_t *r, const char *body, size_t len, tg_arena_t *a, tx_response_t *ret, tx_error_t *err)
{
    json_t *root = tx_parse_json(body, len, a, err);
    if (!json_is_object(root))
        return tx_fail(err, TX_ERR_UPSTREAM, "bad_upstream_response", NULL,
                       "Cohere answered with a body that is not a JSON object.");
    memset(ret, 0, sizeof(*ret));
    ret->id = tx_json_str(root, "id");
    if (r != NULL && r->op == TX_OP_EMBED)
        return decode_embed(root, a, ret, err);
    return decode_chat(root, a, ret, err);
}

/* ---------------------------------------------------------------- errors */

static int
starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Short ASCII text is worth quoting in a message (an HTML error page from a proxy, say); bytes are not. */
static int
printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 ? s[i] != '\n' && s[i] != '\r' && s[i] != '\t' : (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

static void
decode_error(int status, const char *body, size_t len, tx_error_t *err)
{
    json_t *root = body != NULL ? json_loadb(body, len, 0, NULL) : NULL;
    const char *msg = tx_json_str(root, "message");
    tx_error_kind_t kind = status == 499 ? TX_ERR_UPSTREAM : tx_error_kind_of_status(status);
    const char *code = NULL;
    if (status == 401)
        code = "invalid_api_key";
    else if (status == 429)
        code = "rate_limit_exceeded";
    else if (status == 402)
        code = "insufficient_quota";
    else if (status == 404)
        code = "not_found";
    if (msg != NULL && status == 400 && (starts_with(msg, "too many tokens") || strstr(msg, "too long") != NULL))
        code = "context_length_exceeded";
    if (msg != NULL && msg[0] != '\0')
        tx_fail(err, kind, code, NULL, "%s", msg);
    else if (body != NULL && len > 0 && len < 400 && printable(body, len))
        tx_fail(err, kind, code, NULL, "Cohere returned HTTP %d: %.*s", status, (int)len, body);
    else
        tx_fail(err, kind, code, NULL, "Cohere returned HTTP %d.", status);
    json_decref(root);
}

/* ---------------------------------------------------------------- streams */

enum { B_NONE = 0, B_TEXT, B_THINKING, B_PLAN, B_TOOL };

struct cohere_stream {
    int next_index; /* neutral index of the next block */
    int open;       /* B_* of the open block */
    int index;      /* its neutral index */
    int n_calls;
    int done; /* message-end seen: ignore what follows ([DONE]) */
};

struct emitter {
    tx_emit_fn emit;
    void *ctx;
};

static int
put(const struct emitter *e, const tx_event_t *ev)
{
    return e->emit(e->ctx, ev);
}

static int
close_block(struct cohere_stream *s, const struct emitter *e)
{
    if (s->open == B_NONE)
        return 0;
    s->open = B_NONE;
    return put(e, &(tx_event_t){.kind = TX_EV_BLOCK_END, .index = s->index});
}

static int
open_block(struct cohere_stream *s, const struct emitter *e, int kind)
{
    if (s->open == kind)
        return 0;
    int rc = close_block(s, e);
    if (rc != 0)
        return rc;
    s->open = kind;
    s->index = s->next_index++;
    return 0;
}

static int
text_event(struct cohere_stream *s, const struct emitter *e, int kind, const json_t *text)
{
    if (!json_is_string(text) || json_string_length(text) == 0)
        return 0;
    int rc = open_block(s, e, kind);
    if (rc != 0)
        return rc;
    return put(e, &(tx_event_t){.kind = kind == B_THINKING ? TX_EV_THINKING : TX_EV_TEXT,
                                .index = s->index,
                                .text = json_string_value(text),
                                .text_len = json_string_length(text)});
}

static int
is(const char *type, const char *name)
{
    return type != NULL && strcmp(type, name) == 0;
}

static int
frame(struct cohere_stream *s, const char *type, const json_t *data, tg_arena_t *a, const struct emitter *e,
      tx_error_t *err)
{
    const json_t *delta = json_object_get(data, "delta");
    const json_t *dmsg = json_object_get(delta, "message");
    int rc;
    if (is(type, "message-start")) {
        const char *id = tx_json_str(data, "id");
        return put(e, &(tx_event_t){.kind = TX_EV_START, .id = id ? tg_arena_strdup(a, id) : NULL});
    }
    if (is(type, "content-start") || is(type, "content-delta")) {
        const json_t *c = json_object_get(dmsg, "content");
        const json_t *thinking = json_object_get(c, "thinking");
        int kind = is(tx_json_str(c, "type"), "thinking") || json_is_string(thinking) ? B_THINKING : B_TEXT;
        if (is(type, "content-start") && (rc = open_block(s, e, kind)) != 0)
            return rc;
        return text_event(s, e, kind, kind == B_THINKING ? thinking : json_object_get(c, "text"));
    }
    if (is(type, "content-end") || is(type, "tool-call-end"))
        return close_block(s, e);
    if (is(type, "tool-plan-delta"))
        return text_event(s, e, B_PLAN, json_object_get(dmsg, "tool_plan"));
    if (is(type, "tool-call-start") || is(type, "tool-call-delta")) {
        const json_t *call = json_object_get(dmsg, "tool_calls");
        if (json_is_array(call)) /* tolerate the array form of full messages */
            call = json_array_get(call, 0);
        const json_t *fn = json_object_get(call, "function");
        if (is(type, "tool-call-start")) {
            if ((rc = close_block(s, e)) != 0 || (rc = open_block(s, e, B_TOOL)) != 0)
                return rc;
            const char *id = tx_json_str(call, "id"), *name = tx_json_str(fn, "name");
            s->n_calls++;
            rc = put(e, &(tx_event_t){.kind = TX_EV_TOOL_START,
                                      .index = s->index,
                                      .id = id ? tg_arena_strdup(a, id) : NULL,
                                      .name = tg_arena_strdup(a, name ? name : "")});
            if (rc != 0)
                return rc;
        } else if (s->open != B_TOOL) {
            return tx_fail(err, TX_ERR_UPSTREAM, "bad_upstream_stream", NULL,
                           "Cohere sent tool-call arguments outside a tool call.");
        }
        const json_t *args = json_object_get(fn, "arguments");
        if (!json_is_string(args) || json_string_length(args) == 0)
            return 0;
        return put(e, &(tx_event_t){.kind = TX_EV_TOOL_ARGS,
                                    .index = s->index,
                                    .text = json_string_value(args),
                                    .text_len = json_string_length(args)});
    }
    if (is(type, "message-end")) {
        if ((rc = close_block(s, e)) != 0)
            return rc;
        s->done = 1;
        const char *raw = tx_json_str(delta, "finish_reason");
        tx_stop_t stop = map_finish(raw);
        if (s->n_calls > 0 && (stop == TX_STOP_END || stop == TX_STOP_UNSET))
            stop = TX_STOP_TOOL_USE;
        if ((rc = put(e, &(tx_event_t){.kind = TX_EV_STOP, .stop = stop ? stop : TX_STOP_END})) != 0)
            return rc;
        tx_usage_t u = usage_of(json_object_get(delta, "usage"));
        if (u.known && (rc = put(e, &(tx_event_t){.kind = TX_EV_USAGE, .usage = u})) != 0)
            return rc;
        return put(e, &(tx_event_t){.kind = TX_EV_END});
    }
    if (is(type, "error") || (type == NULL && tx_json_str(data, "message") != NULL)) {
        /* not documented by Cohere; an error event or a bare {"message"} is surfaced rather than dropped */
        const char *msg = tx_json_str(data, "message");
        tx_fail(err, TX_ERR_SERVER, NULL, NULL, "Cohere failed during the stream: %s",
                msg != NULL ? msg : "unknown error");
        s->done = 1;
        return put(e, &(tx_event_t){.kind = TX_EV_ERROR, .error = err});
    }
    return 0; /* citation-start/-end, debug, and whatever comes next */
}

static int
stream_frame(tx_stream_state_t *st, const tx_request_t *r, const tx_frame_t *f, tg_arena_t *a, tx_emit_fn emit,
             void *ctx, tx_error_t *err)
{
    struct cohere_stream *s = (struct cohere_stream *)st;
    if (s->done || f->data == NULL || f->data_len == 0 || (f->data_len == 6 && memcmp(f->data, "[DONE]", 6) == 0))
        return 0;
    json_t *data = json_loadb(f->data, f->data_len, 0, NULL);
    if (!json_is_object(data)) {
        json_decref(data);
        return tx_fail(err, TX_ERR_UPSTREAM, "bad_upstream_stream", NULL,
                       "Cohere sent a stream event that is not a JSON object.");
    }
    char name[64];
    const char *type = tx_json_str(data, "type");
    if (f->event != NULL && f->event_len > 0 && f->event_len < sizeof(name)) {
        memcpy(name, f->event, f->event_len);
        name[f->event_len] = '\0';
        type = name;
    }
    struct emitter e = {emit, ctx};
    int rc = frame(s, type, data, a, &e, err);
    json_decref(data);
    return rc;
}

const tx_provider_ops_t tx_cohere_provider = {
    .kind = "cohere",
    .framing = TX_FRAMING_SSE,
    .stream_state_size = sizeof(struct cohere_stream),
    .encode_request = encode_request,
    .decode_response = decode_response,
    .decode_error = decode_error,
    .stream_frame = stream_frame,
};
