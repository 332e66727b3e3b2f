/*
 * Ollama's native API as an upstream provider (shared/ref/providers.md §7.3): POST {base}/api/chat (JSON,
 * or NDJSON when streaming: one object per line, the last with "done":true) and POST {base}/api/embed.
 * No authentication. (Ollama's OpenAI-compatible surface is the "ollama" kind, on the passthrough.)
 *
 * Mapping decisions:
 * - Ollama's tool calls have no ids: they get "call_<request id>_<n>" (n counts the response's calls from
 *   0; the request id keeps only [A-Za-z0-9_-]), or "call_<n>" without a request id. Stream and
 *   non-stream responses name the same calls the same way. An id Ollama does send is kept.
 * - Tool results are role "tool" messages with tool_name: the result's own name, or the name of the
 *   earlier call with the same id (Anthropic and OpenAI results carry only the id).
 * - Ollama has no tool_choice: NONE sends no tools; NAMED sends only the named tool; REQUIRED and AUTO
 *   send them all (Ollama cannot force a call).
 * - Images are base64 only; an image URL is a client error.
 * - Thinking text goes both ways in message.thinking.
 *
 * Streams: one NDJSON line per call. Text pointers in emitted events are valid during the emit only (the
 * line's JSON tree is freed on return); ids, names and models are arena copies.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "translate/tx.h"

/* ---------------------------------------------------------------- small helpers */

static json_t *
jstr(const char *s)
{
    return json_string(s != NULL ? s : "");
}

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

/* The id of tool call n of this response. */
static const char *
call_id(const tx_request_t *r, int n, tg_arena_t *a)
{
    const char *rid = r != NULL ? r->request_id : NULL;
    if (rid == NULL || rid[0] == '\0')
        return tg_arena_sprintf(a, "call_%d", n);
    size_t len = strlen(rid);
    if (len > 64)
        len = 64;
    char clean[65];
    size_t k = 0;
    for (size_t i = 0; i < len; i++)
        if (isalnum((unsigned char)rid[i]) || rid[i] == '_' || rid[i] == '-')
            clean[k++] = rid[i];
    clean[k] = '\0';
    return tg_arena_sprintf(a, "call_%s_%d", clean, n);
}

/* Seconds since the epoch of an RFC 3339 time ("2024-05-01T12:00:00.123456789Z" or with "+02:00"), 0 when
 * it does not parse. Pure: no libc time zone state. */
static int64_t
parse_time(const char *s)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n == 0)
        return 0;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60 || y < 1970)
        return 0;
    const char *p = s + n;
    if (*p == '.')
        while (isdigit((unsigned char)*++p))
            ;
    int64_t off = 0;
    if ((*p == '+' || *p == '-') && isdigit((unsigned char)p[1]) && isdigit((unsigned char)p[2]) && p[3] == ':' &&
        isdigit((unsigned char)p[4]) && isdigit((unsigned char)p[5]))
        off = (*p == '-' ? -1 : 1) *
              (((p[1] - '0') * 10 + (p[2] - '0')) * 3600 + ((p[4] - '0') * 10 + (p[5] - '0')) * 60);
    /* days from civil (Howard Hinnant's algorithm) */
    int64_t yy = y - (mo <= 2);
    int64_t era = yy / 400, yoe = yy - era * 400;
    int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468;
    return days * 86400 + h * 3600 + mi * 60 + sec - off;
}

/* ---------------------------------------------------------------- requests */

/* The name of the earlier tool call with this id, or NULL. */
static const char *
call_name(const tx_request_t *r, size_t before, const char *id)
{
    for (size_t i = before; id != NULL && i-- > 0;) {
        const tx_message_t *m = &r->messages[i];
        for (size_t j = 0; j < m->n_parts; j++)
            if (m->parts[j].kind == TX_PART_TOOL_CALL && m->parts[j].id != NULL && strcmp(m->parts[j].id, id) == 0)
                return m->parts[j].name;
    }
    return NULL;
}

static int
add_tool_results(json_t *out, const tx_request_t *r, size_t at)
{
    const tx_message_t *m = &r->messages[at];
    for (size_t i = 0; i < m->n_parts; i++) {
        const tx_part_t *p = &m->parts[i];
        if (p->kind != TX_PART_TOOL_RESULT)
            continue;
        json_t *msg = json_pack("{s:s, s:o}", "role", "tool", "content", jstr(p->text));
        const char *name = p->name != NULL ? p->name : call_name(r, at, p->id);
        if (msg != NULL && name != NULL)
            json_object_set_new(msg, "tool_name", jstr(name));
        if (json_array_append_new(out, msg) != 0)
            return -1;
    }
    return 0;
}

static int
add_message(json_t *out, const tx_request_t *r, size_t at, tg_arena_t *a, tx_error_t *err)
{
    const tx_message_t *m = &r->messages[at];
    if (add_tool_results(out, r, at) != 0)
        return tx_oom(err);
    if (m->role == TX_ROLE_TOOL)
        return 0;
    json_t *images = json_array(), *calls = json_array();
    json_t *msg = json_pack("{s:s, s:o, s:o, s:o}", "role", m->role == TX_ROLE_USER ? "user" : "assistant", "content",
                            jstr(tx_message_text(m, a)), "images", images, "tool_calls", calls);
    if (msg == NULL || tx_arena_keep(a, msg) != 0)
        return tx_oom(err);
    size_t n_other = 0;
    for (size_t i = 0; i < m->n_parts; i++) {
        const tx_part_t *p = &m->parts[i];
        if (p->kind == TX_PART_TEXT) {
            n_other++;
        } else if (p->kind == TX_PART_IMAGE) {
            if (p->data == NULL)
                return tx_fail(err, TX_ERR_INVALID_REQUEST, "unsupported_image_url", "messages",
                               "Ollama's native API takes only base64 images, not image URLs; send the image "
                               "inline as a data: URL.");
            json_array_append_new(images, jstr(p->data));
            n_other++;
        } else if (p->kind == TX_PART_TOOL_CALL && m->role == TX_ROLE_ASSISTANT) {
            json_t *args = p->args != NULL ? json_incref(p->args) : json_object();
            json_array_append_new(calls,
                                  json_pack("{s:{s:o, s:o}}", "function", "name", jstr(p->name), "arguments", args));
            n_other++;
        } else if (p->kind == TX_PART_THINKING && m->role == TX_ROLE_ASSISTANT && p->text != NULL) {
            const char *prev = tx_json_str(msg, "thinking");
            json_object_set_new(msg, "thinking", jstr(prev ? tg_arena_sprintf(a, "%s%s", prev, p->text) : p->text));
            n_other++;
        }
    }
    if (json_array_size(images) == 0)
        json_object_del(msg, "images");
    if (json_array_size(calls) == 0)
        json_object_del(msg, "tool_calls");
    if (n_other == 0) /* only tool results (already added), or nothing */
        return 0;
    return json_array_append(out, msg) != 0 ? tx_oom(err) : 0;
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
    if (r->n_tools == 0 || r->tool_choice == TX_TOOL_CHOICE_NONE)
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
    return 0;
}

static int
encode_chat(const tx_request_t *r, json_t *root, tg_arena_t *a, tx_error_t *err)
{
    json_t *msgs = json_array();
    json_object_set_new(root, "messages", msgs);
    if (r->system != NULL)
        json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", "system", "content", jstr(r->system)));
    for (size_t i = 0; i < r->n_messages; i++)
        if (add_message(msgs, r, i, a, err) != 0)
            return -1;
    if (json_array_size(msgs) == 0)
        return tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_request", "messages", "The request has no messages.");
    if (encode_tools(root, r, err) != 0)
        return -1;
    if (r->format == TX_FORMAT_JSON_SCHEMA && r->format_schema != NULL)
        json_object_set(root, "format", r->format_schema);
    else if (r->format == TX_FORMAT_JSON_OBJECT || r->format == TX_FORMAT_JSON_SCHEMA)
        json_object_set_new(root, "format", json_string("json"));
    json_t *opt = json_object();
    if (r->has_temperature)
        json_object_set_new(opt, "temperature", json_real(r->temperature));
    if (r->has_top_p)
        json_object_set_new(opt, "top_p", json_real(r->top_p));
    if (r->top_k >= 0)
        json_object_set_new(opt, "top_k", json_integer(r->top_k));
    if (r->max_tokens >= 0)
        json_object_set_new(opt, "num_predict", json_integer(r->max_tokens));
    if (r->n_stop > 0) {
        json_t *stop = json_array();
        for (size_t i = 0; i < r->n_stop; i++)
            json_array_append_new(stop, jstr(r->stop[i]));
        json_object_set_new(opt, "stop", stop);
    }
    if (r->has_seed)
        json_object_set_new(opt, "seed", json_integer(r->seed));
    if (r->has_presence_penalty)
        json_object_set_new(opt, "presence_penalty", json_real(r->presence_penalty));
    if (r->has_frequency_penalty)
        json_object_set_new(opt, "frequency_penalty", json_real(r->frequency_penalty));
    if (json_object_size(opt) > 0)
        json_object_set_new(root, "options", opt);
    else
        json_decref(opt);
    /* Ollama streams unless told not to */
    json_object_set_new(root, "stream", json_boolean(r->stream));
    return 0;
}

static int
encode_embed(const tx_request_t *r, json_t *root, tx_error_t *err)
{
    if (r->n_inputs == 0)
        return tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_request", "input", "The request has no input to embed.");
    json_t *input = json_array();
    json_object_set_new(root, "input", input);
    for (size_t i = 0; i < r->n_inputs; i++)
        if (json_array_append_new(input, jstr(r->inputs[i])) != 0)
            return tx_oom(err);
    if (r->dimensions >= 0)
        json_object_set_new(root, "dimensions", json_integer(r->dimensions));
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
                       "Token counting is not available for Ollama models.");
    json_t *root = json_object();
    if (tx_arena_keep(a, root) != 0)
        return tx_oom(err);
    json_object_set_new(root, "model", jstr(t->upstream_model != NULL ? t->upstream_model : r->model));
    int rc = r->op == TX_OP_EMBED ? encode_embed(r, root, err) : encode_chat(r, root, a, err);
    if (rc != 0)
        return rc;
    size_t len;
    const char *body = tx_dump_json(root, a, &len);
    const char *url = tg_arena_sprintf(a, "%s/api/%s", t->base_url, endpoint);
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
map_done(const char *reason, int has_calls)
{
    if (reason != NULL && strcmp(reason, "length") == 0)
        return TX_STOP_MAX_TOKENS;
    return has_calls ? TX_STOP_TOOL_USE : TX_STOP_END;
}

static tx_usage_t
usage_of(const json_t *root)
{
    int64_t in = count_of(json_object_get(root, "prompt_eval_count"));
    int64_t out = count_of(json_object_get(root, "eval_count"));
    if (in < 0 && out < 0)
        return (tx_usage_t){0};
    return tx_usage_make(in < 0 ? 0 : in, out < 0 ? 0 : out, 0, 0);
}

/* A tool call's arguments as an object the arena keeps: an object, a JSON string of one, or {}. */
static json_t *
args_of(const json_t *v, tg_arena_t *a)
{
    json_t *obj = NULL;
    if (json_is_object(v))
        obj = json_incref((json_t *)v);
    else if (json_is_string(v))
        obj = json_loads(json_string_value(v), JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(obj)) {
        json_decref(obj);
        obj = json_object();
    }
    return tx_arena_keep(a, obj) == 0 ? obj : NULL;
}

static int
decode_embed(const json_t *root, tg_arena_t *a, tx_response_t *ret, tx_error_t *err)
{
    if (tx_embeddings_from_json(json_object_get(root, "embeddings"), "Ollama", a, ret, err) != 0)
        return -1;
    int64_t in = count_of(json_object_get(root, "prompt_eval_count"));
    if (in >= 0)
        ret->usage = tx_usage_make(in, 0, 0, 0);
    return 0;
}

static int
decode_chat(const tx_request_t *r, const json_t *root, tg_arena_t *a, tx_response_t *ret, tx_error_t *err)
{
    const json_t *msg = json_object_get(root, "message");
    const json_t *calls = json_object_get(msg, "tool_calls");
    const char *thinking = tx_json_str(msg, "thinking"), *content = tx_json_str(msg, "content");
    ret->parts = tg_arena_alloc(a, (json_array_size(calls) + 2) * sizeof(*ret->parts));
    if (ret->parts == NULL)
        return tx_oom(err);
    size_t n = 0, i;
    if (thinking != NULL && thinking[0] != '\0')
        ret->parts[n++] = (tx_part_t){.kind = TX_PART_THINKING, .text = thinking};
    if (content != NULL && content[0] != '\0')
        ret->parts[n++] = (tx_part_t){.kind = TX_PART_TEXT, .text = content};
    const json_t *c;
    int n_calls = 0;
    json_array_foreach(calls, i, c)
    {
        const json_t *fn = json_object_get(c, "function");
        const char *name = tx_json_str(fn, "name"), *id = tx_json_str(c, "id");
        if (name == NULL)
            return tx_fail(err, TX_ERR_UPSTREAM, "bad_upstream_response", NULL,
                           "Ollama returned a tool call without a function name.");
        json_t *args = args_of(json_object_get(fn, "arguments"), a);
        if (args == NULL)
            return tx_oom(err);
        ret->parts[n++] = (tx_part_t){.kind = TX_PART_TOOL_CALL,
                                      .id = id != NULL && id[0] != '\0' ? id : call_id(r, n_calls, a),
                                      .name = name,
                                      .args = args};
        n_calls++;
    }
    ret->n_parts = n;
    ret->model = tx_json_str(root, "model");
    ret->raw_stop = tx_json_str(root, "done_reason");
    ret->stop = map_done(ret->raw_stop, n_calls > 0);
    ret->usage = usage_of(root);
    ret->created = parse_time(tx_json_str(root, "created_at"));
    return 0;
}

static int
decode_response(const tx_request_t *r, const char *body, size_t len, tg_arena_t *a, tx_response_t *ret, tx_error_t *err)
{
    json_t *root = tx_parse_json(body, len, a, err);
    if (!json_is_object(root))
        return tx_fail(err, TX_ERR_UPSTREAM, "bad_upstream_response", NULL,
                       "Ollama answered with a body that is not a JSON object.");
    memset(ret, 0, sizeof(*ret));
    if (tx_json_str(root, "error") != NULL) /* a 200 that carries an error */
        return tx_fail(err, TX_ERR_SERVER, NULL, NULL, "Ollama failed: %s", tx_json_str(root, "error"));
    if (r != NULL && r->op == TX_OP_EMBED)
        return decode_embed(root, a, ret, err);
    return decode_chat(r, root, a, ret, err);
}

/* ---------------------------------------------------------------- errors */

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
    const char *msg = tx_json_str(root, "error");
    if (msg == NULL)
        msg = tx_json_str(json_object_get(root, "error"), "message"); /* a proxy in front, OpenAI-style */
    tx_error_kind_t kind = tx_error_kind_of_status(status);
    const char *code = NULL;
    if (status == 404 && msg != NULL && strstr(msg, "not found") != NULL)
        code = "model_not_found";
    if (msg != NULL && msg[0] != '\0')
        tx_fail(err, kind, code, NULL, "%s", msg);
    else if (body != NULL && len > 0 && len < 400 && printable(body, len))
        tx_fail(err, kind, code, NULL, "Ollama returned HTTP %d: %.*s", status, (int)len, body);
    else
        tx_fail(err, kind, code, NULL, "Ollama returned HTTP %d.", status);
    json_decref(root);
}

/* ---------------------------------------------------------------- streams */

enum { B_NONE = 0, B_TEXT, B_THINKING };

struct ollama_stream {
    int next_index; /* neutral index of the next block */
    int open;       /* B_* of the open text or thinking block */
    int index;      /* its neutral index */
    int n_calls;
    int started, done;
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
close_block(struct ollama_stream *s, const struct emitter *e)
{
    if (s->open == B_NONE)
        return 0;
    s->open = B_NONE;
    return put(e, &(tx_event_t){.kind = TX_EV_BLOCK_END, .index = s->index});
}

static int
text_event(struct ollama_stream *s, const struct emitter *e, int kind, const json_t *text)
{
    if (!json_is_string(text) || json_string_length(text) == 0)
        return 0;
    int rc;
    if (s->open != kind) {
        if ((rc = close_block(s, e)) != 0)
            return rc;
        s->open = kind;
        s->index = s->next_index++;
    }
    return put(e, &(tx_event_t){.kind = kind == B_THINKING ? TX_EV_THINKING : TX_EV_TEXT,
                                .index = s->index,
                                .text = json_string_value(text),
                                .text_len = json_string_length(text)});
}

static int
tool_calls(struct ollama_stream *s, const tx_request_t *r, const json_t *calls, tg_arena_t *a, const struct emitter *e,
           tx_error_t *err)
{
    size_t i;
    const json_t *c;
    int rc;
    json_array_foreach(calls, i, c)
    {
        const json_t *fn = json_object_get(c, "function");
        const char *name = tx_json_str(fn, "name"), *id = tx_json_str(c, "id");
        if (name == NULL)
            return tx_fail(err, TX_ERR_UPSTREAM, "bad_upstream_stream", NULL,
                           "Ollama sent a tool call without a function name.");
        if ((rc = close_block(s, e)) != 0)
            return rc;
        int index = s->next_index++;
        id = id != NULL && id[0] != '\0' ? tg_arena_strdup(a, id) : call_id(r, s->n_calls, a);
        s->n_calls++;
        rc =
            put(e, &(tx_event_t){.kind = TX_EV_TOOL_START, .index = index, .id = id, .name = tg_arena_strdup(a, name)});
        if (rc != 0)
            return rc;
        const json_t *args = json_object_get(fn, "arguments");
        char *text = json_is_object(args) ? json_dumps(args, JSON_COMPACT) : NULL;
        const char *t = text != NULL ? text : json_is_string(args) ? json_string_value(args) : "{}";
        rc = put(e, &(tx_event_t){.kind = TX_EV_TOOL_ARGS, .index = index, .text = t, .text_len = strlen(t)});
        free(text);
        if (rc != 0)
            return rc;
        if ((rc = put(e, &(tx_event_t){.kind = TX_EV_BLOCK_END, .index = index})) != 0)
            return rc;
    }
    return 0;
}

static int
line(struct ollama_stream *s, const tx_request_t *r, const json_t *o, tg_arena_t *a, const struct emitter *e,
     tx_error_t *err)
{
    int rc;
    const char *error = tx_json_str(o, "error");
    if (error != NULL || json_is_object(json_object_get(o, "error"))) {
        if (error == NULL)
            error = tx_json_str(json_object_get(o, "error"), "message");
        tx_fail(err, TX_ERR_SERVER, NULL, NULL, "Ollama failed during the stream: %s",
                error != NULL ? error : "unknown error");
        s->done = 1;
        return put(e, &(tx_event_t){.kind = TX_EV_ERROR, .error = err});
    }
    if (!s->started) {
        s->started = 1;
        const char *model = tx_json_str(o, "model");
        if ((rc = put(e, &(tx_event_t){.kind = TX_EV_START, .model = model ? tg_arena_strdup(a, model) : NULL})) != 0)
            return rc;
    }
    const json_t *msg = json_object_get(o, "message");
    if ((rc = text_event(s, e, B_THINKING, json_object_get(msg, "thinking"))) != 0 ||
        (rc = text_event(s, e, B_TEXT, json_object_get(msg, "content"))) != 0 ||
        (rc = tool_calls(s, r, json_object_get(msg, "tool_calls"), a, e, err)) != 0)
        return rc;
    if (!json_is_true(json_object_get(o, "done")))
        return 0;
    s->done = 1;
    if ((rc = close_block(s, e)) != 0)
        return rc;
    tx_stop_t stop = map_done(tx_json_str(o, "done_reason"), s->n_calls > 0);
    if ((rc = put(e, &(tx_event_t){.kind = TX_EV_STOP, .stop = stop})) != 0)
        return rc;
    tx_usage_t u = usage_of(o);
    if (u.known && (rc = put(e, &(tx_event_t){.kind = TX_EV_USAGE, .usage = u})) != 0)
        return rc;
    return put(e, &(tx_event_t){.kind = TX_EV_END});
}

static int
stream_frame(tx_stream_state_t *st, const tx_request_t *r, const tx_frame_t *f, tg_arena_t *a, tx_emit_fn emit,
             void *ctx, tx_error_t *err)
{
    struct ollama_stream *s = (struct ollama_stream *)st;
    if (s->done || f->data == NULL)
        return 0;
    size_t k = 0;
    while (k < f->data_len && isspace((unsigned char)f->data[k]))
        k++;
    if (k == f->data_len) /* a blank line */
        return 0;
    json_t *o = json_loadb(f->data, f->data_len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return tx_fail(err, TX_ERR_UPSTREAM, "bad_upstream_stream", NULL,
                       "Ollama sent a stream line that is not a JSON object.");
    }
    struct emitter e = {emit, ctx};
    int rc = line(s, r, o, a, &e, err);
    json_decref(o);
    return rc;
}

const tx_provider_ops_t tx_ollama_native_provider = {
    .kind = "ollama_native",
    .framing = TX_FRAMING_NDJSON,
    .stream_state_size = sizeof(struct ollama_stream),
    .encode_request = encode_request,
    .decode_response = decode_response,
    .decode_error = decode_error,
    .stream_frame = stream_frame,
};
