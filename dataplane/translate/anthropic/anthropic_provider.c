/*
 * Anthropic Messages as an upstream provider: POST {base}/v1/messages and {base}/v1/messages/count_tokens
 * (shared/ref/providers.md §3, §8.1). Authentication headers (x-api-key, anthropic-version) come from the
 * snapshot, not from here.
 *
 * Encoding follows "When going to Anthropic": system text goes to the top-level `system`, max_tokens
 * defaults to 4096, temperature is clamped to 1, consecutive tool/user turns merge into one user message
 * with the tool_result blocks first, empty text is dropped (Anthropic rejects empty text blocks). Tool
 * calls without ids (Gemini) get made-up ids, and their results are matched by name and order.
 *
 * JSON output has no native field: when a request asks for JSON and declares no tools of its own, it is
 * sent with one tool (TX_ANTHROPIC_JSON_TOOL) whose input_schema is the requested schema, forced with
 * tool_choice; the decoders turn that tool's input back into the answer's text and its tool_use stop
 * into a natural end. With tools of its own, the request gets a system instruction instead.
 *
 * Usage: neutral input = input_tokens + cache_read_input_tokens + cache_creation_input_tokens. In a
 * stream, message_start carries input and cache counts, every message_delta the cumulative output (the
 * last wins, never summed; newer API versions repeat input there, which then wins too).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "anthropic.h"

/* ---------------------------------------------------------------- shared vocabularies */

int
tx_anthropic_json_tool(const tx_request_t *r)
{
    return r->op == TX_OP_CHAT && r->format != TX_FORMAT_TEXT && r->n_tools == 0;
}

const char *
tx_anthropic_stop_name(tx_stop_t s, const char *raw)
{
    switch (s) {
    case TX_STOP_SEQUENCE:
        return "stop_sequence";
    case TX_STOP_MAX_TOKENS:
        return raw != NULL && strcmp(raw, "model_context_window_exceeded") == 0 ? raw : "max_tokens";
    case TX_STOP_TOOL_USE:
        return "tool_use";
    case TX_STOP_CONTENT_FILTER:
        return "refusal";
    case TX_STOP_PAUSE:
        return "pause_turn";
    default:
        return "end_turn";
    }
}

tx_stop_t
tx_anthropic_stop_parse(const char *s)
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
        return TX_STOP_TOOL_USE;
    if (strcmp(s, "refusal") == 0)
        return TX_STOP_CONTENT_FILTER;
    if (strcmp(s, "pause_turn") == 0)
        return TX_STOP_PAUSE;
    return TX_STOP_END; /* a value added after this was written: the raw value is kept for logs */
}

static const struct {
    const char *type;
    tx_error_kind_t kind;
} ERROR_TYPES[] = {
    {"invalid_request_error", TX_ERR_INVALID_REQUEST},
    {"authentication_error", TX_ERR_AUTHENTICATION},
    {"billing_error", TX_ERR_BILLING},
    {"permission_error", TX_ERR_PERMISSION},
    {"not_found_error", TX_ERR_NOT_FOUND},
    {"request_too_large", TX_ERR_TOO_LARGE},
    {"rate_limit_error", TX_ERR_RATE_LIMIT},
    {"api_error", TX_ERR_SERVER},
    {"overloaded_error", TX_ERR_OVERLOADED},
    {"timeout_error", TX_ERR_TIMEOUT},
};

const char *
tx_anthropic_error_type(tx_error_kind_t k)
{
    switch (k) {
    case TX_ERR_UNPROCESSABLE:
        return "invalid_request_error";
    case TX_ERR_UPSTREAM:
    case TX_ERR_TIMEOUT:
        return "api_error";
    default:
        for (size_t i = 0; i < sizeof(ERROR_TYPES) / sizeof(ERROR_TYPES[0]); i++)
            if (ERROR_TYPES[i].kind == k)
                return ERROR_TYPES[i].type;
        return "api_error";
    }
}

tx_error_kind_t
tx_anthropic_error_kind(const char *type, int status)
{
    /* invalid_request_error is reused by other 4xx statuses; api_error by any 5xx */
    if (type != NULL && strcmp(type, "invalid_request_error") != 0 && strcmp(type, "api_error") != 0)
        for (size_t i = 0; i < sizeof(ERROR_TYPES) / sizeof(ERROR_TYPES[0]); i++)
            if (strcmp(ERROR_TYPES[i].type, type) == 0)
                return ERROR_TYPES[i].kind;
    if (status >= 400)
        return tx_error_kind_of_status(status);
    if (type != NULL && strcmp(type, "invalid_request_error") == 0)
        return TX_ERR_INVALID_REQUEST;
    return status == 0 ? TX_ERR_SERVER : tx_error_kind_of_status(status);
}

/* ---------------------------------------------------------------- request encoding */

/* Made-up ids for tool calls that came without one, and results matched to them by name and order. */
typedef struct idmap {
    const char **names, **ids;
    char *used;
    size_t n, cap;
} idmap_t;

static const char *
invent_id(idmap_t *m, const char *name, tg_arena_t *a)
{
    if (m->n == m->cap)
        return "toolu_tx_overflow";
    const char *id = tg_arena_sprintf(a, "toolu_tx_%zu", m->n);
    m->names[m->n] = name;
    m->ids[m->n++] = id;
    return id;
}

static const char *
match_id(idmap_t *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (!m->used[i] && (name == NULL || m->names[i] == NULL || strcmp(name, m->names[i]) == 0)) {
            m->used[i] = 1;
            return m->ids[i];
        }
    return "toolu_tx_unmatched";
}

static json_t *
image_block(const tx_part_t *p, tg_arena_t *a, tx_error_t *err)
{
    const char *media = p->media_type, *data = p->data;
    if (data == NULL && p->url != NULL && strncmp(p->url, "data:", 5) == 0 &&
        tx_split_data_url(p->url, a, &media, &data) != 0) {
        tx_fail(err, TX_ERR_INVALID_REQUEST, NULL, "messages", "Image data URLs must be data:<type>;base64,<data>.");
        return NULL;
    }
    if (data != NULL)
        return json_pack("{s:s, s:{s:s, s:s, s:s}}", "type", "image", "source", "type", "base64", "media_type",
                         media != NULL ? media : "image/png", "data", data);
    if (p->url != NULL)
        return json_pack("{s:s, s:{s:s, s:s}}", "type", "image", "source", "type", "url", "url", p->url);
    tx_fail(err, TX_ERR_INVALID_REQUEST, NULL, "messages", "An image part has neither data nor a URL.");
    return NULL;
}

/* One neutral part as an Anthropic block, or json_null() for a part Anthropic cannot take and that can be
 * dropped without changing the question (empty text, thinking without Anthropic's signature). */
static json_t *
block(const tx_part_t *p, idmap_t *ids, tg_arena_t *a, tx_error_t *err)
{
    json_t *b;
    switch (p->kind) {
    case TX_PART_TEXT:
        if (p->text == NULL || p->text[0] == '\0')
            return json_null();
        return json_pack("{s:s, s:s}", "type", "text", "text", p->text);
    case TX_PART_IMAGE:
        return image_block(p, a, err);
    case TX_PART_TOOL_CALL:
        b = json_pack("{s:s, s:s, s:s}", "type", "tool_use", "id", p->id != NULL ? p->id : invent_id(ids, p->name, a),
                      "name", p->name != NULL ? p->name : "");
        if (b != NULL)
            json_object_set_new(b, "input", json_is_object(p->args) ? json_incref(p->args) : json_object());
        return b;
    case TX_PART_TOOL_RESULT:
        b = json_pack("{s:s, s:s, s:s}", "type", "tool_result", "tool_use_id",
                      p->id != NULL ? p->id : match_id(ids, p->name), "content", p->text != NULL ? p->text : "");
        if (b != NULL && p->is_error)
            json_object_set_new(b, "is_error", json_true());
        return b;
    case TX_PART_THINKING:
        if (p->signature == NULL || p->text == NULL)
            return json_null();
        return json_pack("{s:s, s:s, s:s}", "type", "thinking", "thinking", p->text, "signature", p->signature);
    case TX_PART_REDACTED_THINKING:
        if (p->text == NULL)
            return json_null();
        return json_pack("{s:s, s:s}", "type", "redacted_thinking", "data", p->text);
    }
    return json_null();
}

/* Appends the merged user/assistant turn (results first) to msgs and starts two empty lists. */
static void
flush(json_t *msgs, const char *role, json_t **results, json_t **rest)
{
    if (json_array_size(*results) + json_array_size(*rest) == 0)
        return;
    json_array_extend(*results, *rest);
    json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", role, "content", *results));
    json_array_clear(*rest);
    *results = json_array();
}

static json_t *
encode_messages(const tx_request_t *r, tg_arena_t *a, tx_error_t *err)
{
    size_t n_calls = 0;
    for (size_t i = 0; i < r->n_messages; i++)
        for (size_t j = 0; j < r->messages[i].n_parts; j++)
            n_calls += r->messages[i].parts[j].kind == TX_PART_TOOL_CALL && r->messages[i].parts[j].id == NULL;
    idmap_t ids = {.cap = n_calls};
    ids.names = tg_arena_alloc(a, (n_calls + 1) * sizeof(char *));
    ids.ids = tg_arena_alloc(a, (n_calls + 1) * sizeof(char *));
    ids.used = tg_arena_alloc(a, n_calls + 1);
    json_t *msgs = json_array(), *results = json_array(), *rest = json_array();
    if (ids.names == NULL || ids.ids == NULL || ids.used == NULL || msgs == NULL || results == NULL || rest == NULL) {
        tx_oom(err);
        goto fail;
    }
    const char *role = NULL;
    for (size_t i = 0; i < r->n_messages; i++) {
        const tx_message_t *m = &r->messages[i];
        const char *mrole = m->role == TX_ROLE_ASSISTANT ? "assistant" : "user";
        if (role != NULL && strcmp(role, mrole) != 0)
            flush(msgs, role, &results, &rest);
        role = mrole;
        for (size_t j = 0; j < m->n_parts; j++) {
            json_t *b = block(&m->parts[j], &ids, a, err);
            if (b == NULL)
                goto fail;
            if (json_is_null(b))
                continue;
            if (results == NULL ||
                json_array_append_new(m->parts[j].kind == TX_PART_TOOL_RESULT ? results : rest, b) != 0) {
                tx_oom(err);
                goto fail;
            }
        }
    }
    if (role != NULL)
        flush(msgs, role, &results, &rest);
    json_decref(results);
    json_decref(rest);
    return msgs;
fail:
    json_decref(msgs);
    json_decref(results);
    json_decref(rest);
    return NULL;
}

static json_t *
tool_json(const char *name, const char *description, json_t *schema)
{
    json_t *t = json_pack("{s:s}", "name", name);
    if (t == NULL)
        return NULL;
    if (description != NULL)
        json_object_set_new(t, "description", json_string(description));
    json_object_set_new(t, "input_schema",
                        json_is_object(schema) ? json_incref(schema) : json_pack("{s:s}", "type", "object"));
    return t;
}

static void
encode_tools(const tx_request_t *r, json_t *body)
{
    if (tx_anthropic_json_tool(r)) {
        json_t *tools = json_array();
        json_array_append_new(tools, tool_json(TX_ANTHROPIC_JSON_TOOL,
                                               "Give your final answer by calling this tool: its input is the answer.",
                                               r->format == TX_FORMAT_JSON_SCHEMA ? r->format_schema : NULL));
        json_object_set_new(body, "tools", tools);
        json_object_set_new(body, "tool_choice",
                            json_pack("{s:s, s:s}", "type", "tool", "name", TX_ANTHROPIC_JSON_TOOL));
        return;
    }
    if (r->n_tools == 0)
        return; /* Anthropic rejects tool_choice without tools */
    json_t *tools = json_array();
    for (size_t i = 0; i < r->n_tools; i++)
        json_array_append_new(tools, tool_json(r->tools[i].name, r->tools[i].description, r->tools[i].parameters));
    json_object_set_new(body, "tools", tools);
    json_t *choice = NULL;
    switch (r->tool_choice) {
    case TX_TOOL_CHOICE_NONE:
        json_object_set_new(body, "tool_choice", json_pack("{s:s}", "type", "none"));
        return; /* none takes no disable_parallel_tool_use */
    case TX_TOOL_CHOICE_REQUIRED:
        choice = json_pack("{s:s}", "type", "any");
        break;
    case TX_TOOL_CHOICE_NAMED:
        choice = json_pack("{s:s, s:s}", "type", "tool", "name", r->tool_choice_name ? r->tool_choice_name : "");
        break;
    case TX_TOOL_CHOICE_AUTO:
        choice = json_pack("{s:s}", "type", "auto");
        break;
    default:
        if (r->parallel_tool_calls == 0)
            choice = json_pack("{s:s}", "type", "auto");
        break;
    }
    if (choice != NULL && r->parallel_tool_calls == 0)
        json_object_set_new(choice, "disable_parallel_tool_use", json_true());
    if (choice != NULL)
        json_object_set_new(body, "tool_choice", choice);
}

/* The system text, plus a JSON instruction when JSON output cannot use the forced tool. */
static const char *
system_text(const tx_request_t *r, tg_arena_t *a)
{
    if (r->op != TX_OP_CHAT || r->format == TX_FORMAT_TEXT || tx_anthropic_json_tool(r))
        return r->system;
    const char *schema =
        r->format == TX_FORMAT_JSON_SCHEMA && r->format_schema != NULL ? tx_dump_json(r->format_schema, a, NULL) : NULL;
    return tg_arena_sprintf(a, "%s%sRespond with a single JSON object and nothing else%s%s.",
                            r->system ? r->system : "", r->system ? "\n\n" : "",
                            schema ? ", matching this JSON Schema: " : "", schema ? schema : "");
}

static int
encode_request(const tx_request_t *r, const tx_target_t *t, tg_arena_t *a, tx_http_request_t *ret, tx_error_t *err)
{
    int count = r->op == TX_OP_COUNT_TOKENS;
    if (r->op == TX_OP_EMBED)
        return tx_fail(err, TX_ERR_INVALID_REQUEST, "unsupported_operation", NULL,
                       "Anthropic does not offer embeddings; route this model to an embeddings provider.");
    json_t *body = json_pack("{s:s}", "model", t->upstream_model != NULL ? t->upstream_model : r->model);
    if (body == NULL)
        return tx_oom(err);
    if (!count)
        json_object_set_new(body, "max_tokens", json_integer(r->max_tokens > 0 ? r->max_tokens : 4096));
    const char *sys = system_text(r, a);
    if (sys != NULL && sys[0] != '\0')
        json_object_set_new(body, "system", json_string(sys));
    json_t *msgs = encode_messages(r, a, err);
    if (msgs == NULL) {
        json_decref(body);
        return -1;
    }
    json_object_set_new(body, "messages", msgs);
    encode_tools(r, body);
    if (!count) {
        if (r->has_temperature)
            json_object_set_new(body, "temperature",
                                json_real(r->temperature > 1   ? 1
                                          : r->temperature < 0 ? 0
                                                               : r->temperature));
        if (r->has_top_p)
            json_object_set_new(body, "top_p", json_real(r->top_p));
        if (r->top_k >= 0)
            json_object_set_new(body, "top_k", json_integer(r->top_k));
        if (r->n_stop > 0) {
            json_t *stop = json_array();
            for (size_t i = 0; i < r->n_stop; i++)
                json_array_append_new(stop, json_string(r->stop[i]));
            json_object_set_new(body, "stop_sequences", stop);
        }
        if (r->user != NULL)
            json_object_set_new(body, "metadata", json_pack("{s:s}", "user_id", r->user));
        if (r->stream)
            json_object_set_new(body, "stream", json_true());
    }
    /* An Anthropic client's members we do not model (thinking, service_tier, ...) go through unchanged;
     * count_tokens takes only thinking among them. */
    if (r->dialect == TX_DIALECT_ANTHROPIC && json_is_object(r->extra)) {
        const char *key;
        json_t *v;
        json_object_foreach(r->extra, key, v)
        {
            if (json_object_get(body, key) == NULL && (!count || strcmp(key, "thinking") == 0))
                json_object_set(body, key, v);
        }
    }
    /* 15 significant digits: temperature 0.7 goes out as 0.7, not 0.69999999999999996 */
    size_t len = 0;
    char *text = tx_dump_json(body, a, &len);
    json_decref(body);
    const char *url = tg_arena_sprintf(a, "%s/v1/messages%s", t->base_url, count ? "/count_tokens" : "");
    if (text == NULL || url == NULL)
        return tx_oom(err);
    memset(ret, 0, sizeof(*ret));
    ret->url = url;
    ret->body = text;
    ret->body_len = len;
    return 0;
}

/* ---------------------------------------------------------------- responses */

static int
upstream(tx_error_t *err, const char *what)
{
    return tx_fail(err, TX_ERR_UPSTREAM, "bad_upstream_response", NULL, "Anthropic answered something unreadable: %s.",
                   what);
}

static int64_t
count(const json_t *u, const char *key)
{
    json_t *v = json_object_get(u, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? json_integer_value(v) : 0;
}

static tx_usage_t
usage_of(const json_t *u)
{
    tx_usage_t out = {0};
    if (!json_is_object(u))
        return out;
    int64_t cr = count(u, "cache_read_input_tokens"), cw = count(u, "cache_creation_input_tokens");
    return tx_usage_make(count(u, "input_tokens") + cr + cw, count(u, "output_tokens"), cr, cw);
}

static int
decode_response(const tx_request_t *r, const char *body, size_t len, tg_arena_t *a, tx_response_t *ret, tx_error_t *err)
{
    json_t *root = tx_parse_json(body, len, a, err);
    if (root == NULL)
        return upstream(err, "invalid JSON");
    if (!json_is_object(root))
        return upstream(err, "not an object");
    tx_response_t resp;
    memset(&resp, 0, sizeof(resp));
    if (r->op == TX_OP_COUNT_TOKENS) {
        json_t *n = json_object_get(root, "input_tokens");
        if (!json_is_integer(n))
            return upstream(err, "no input_tokens");
        resp.input_tokens = json_integer_value(n);
        *ret = resp;
        return 0;
    }
    json_t *content = json_object_get(root, "content"), *b;
    if (!json_is_array(content))
        return upstream(err, "no content array");
    resp.parts = tg_arena_alloc(a, (json_array_size(content) + 1) * sizeof(tx_part_t));
    if (resp.parts == NULL)
        return tx_oom(err);
    int json_tool = tx_anthropic_json_tool(r), json_answered = 0;
    size_t i;
    json_array_foreach(content, i, b)
    {
        const char *type = tx_json_str(b, "type");
        tx_part_t *p = &resp.parts[resp.n_parts];
        if (type == NULL)
            continue;
        if (strcmp(type, "text") == 0) {
            *p = (tx_part_t){.kind = TX_PART_TEXT, .text = tx_json_str(b, "text")};
            if (p->text == NULL)
                return upstream(err, "a text block without text");
        } else if (strcmp(type, "tool_use") == 0) {
            *p = (tx_part_t){.kind = TX_PART_TOOL_CALL,
                             .id = tx_json_str(b, "id"),
                             .name = tx_json_str(b, "name"),
                             .args = json_object_get(b, "input")};
            if (p->name == NULL)
                return upstream(err, "a tool_use block without a name");
            if (!json_is_object(p->args))
                p->args = NULL;
            if (json_tool && strcmp(p->name, TX_ANTHROPIC_JSON_TOOL) == 0) {
                *p = (tx_part_t){.kind = TX_PART_TEXT, .text = tx_args_text(p, a)};
                json_answered = 1;
            }
        } else if (strcmp(type, "thinking") == 0) {
            *p = (tx_part_t){
                .kind = TX_PART_THINKING, .text = tx_json_str(b, "thinking"), .signature = tx_json_str(b, "signature")};
            if (p->text == NULL)
                p->text = "";
        } else if (strcmp(type, "redacted_thinking") == 0) {
            *p = (tx_part_t){.kind = TX_PART_REDACTED_THINKING, .text = tx_json_str(b, "data")};
            if (p->text == NULL)
                continue;
        } else {
            continue; /* server tool blocks and whatever comes later */
        }
        resp.n_parts++;
    }
    resp.id = tx_json_str(root, "id");
    resp.model = tx_json_str(root, "model");
    resp.raw_stop = tx_json_str(root, "stop_reason");
    resp.stop = tx_anthropic_stop_parse(resp.raw_stop);
    if (json_answered && resp.stop == TX_STOP_TOOL_USE)
        resp.stop = TX_STOP_END;
    resp.stop_sequence = tx_json_str(root, "stop_sequence");
    resp.usage = usage_of(json_object_get(root, "usage"));
    *ret = resp;
    return 0;
}

static void
decode_error(int status, const char *body, size_t len, tx_error_t *err)
{
    json_t *root = body != NULL ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *e = json_object_get(root, "error");
    const char *type = tx_json_str(e, "type"), *message = tx_json_str(e, "message");
    tx_error_kind_t kind = tx_anthropic_error_kind(type, status);
    if (message != NULL) {
        tx_fail(err, kind, NULL, NULL, "%s", message);
    } else {
        /* raw bytes from a proxy or an edge: keep printable ASCII only, the message goes into JSON */
        char raw[301];
        size_t n = body != NULL ? (len < sizeof(raw) - 1 ? len : sizeof(raw) - 1) : 0;
        for (size_t i = 0; i < n; i++)
            raw[i] = body[i] >= 0x20 && body[i] < 0x7f ? body[i] : ' ';
        raw[n] = '\0';
        tx_fail(err, kind, NULL, NULL, "Anthropic answered HTTP %d: %s", status, raw);
    }
    if (kind == TX_ERR_INVALID_REQUEST && message != NULL && strstr(message, "prompt is too long") != NULL)
        snprintf(err->code, sizeof(err->code), "context_length_exceeded");
    /* 529 is Anthropic's own: let each dialect say overloaded its way */
    err->status = status == 529 || status < 400 || status > 599 ? 0 : status;
    json_decref(root);
}

/* ---------------------------------------------------------------- streams */

enum { K_SKIP = 0, K_TEXT, K_TOOL, K_THINKING, K_JSON };

typedef struct pstate {
    int started, ended;
    int has_block, block_kind;
    int64_t block_upstream; /* Anthropic's index of the current block */
    int block_index;        /* its neutral index */
    int next_index;
    int json_answered;
    tx_usage_t usage;
} pstate_t;

static int
emit_text(tx_emit_fn emit, void *ctx, tx_event_kind_t kind, int index, const char *text, size_t len)
{
    tx_event_t ev = {.kind = kind, .index = index, .text = text, .text_len = len};
    return emit(ctx, &ev);
}

static int
on_block_start(pstate_t *s, const tx_request_t *r, json_t *d, tx_emit_fn emit, void *ctx)
{
    json_t *cb = json_object_get(d, "content_block");
    const char *type = tx_json_str(cb, "type");
    s->has_block = 1;
    s->block_upstream = json_integer_value(json_object_get(d, "index"));
    s->block_kind = K_SKIP;
    if (type == NULL)
        return 0;
    tx_event_t ev = {.index = s->next_index};
    if (strcmp(type, "text") == 0) {
        s->block_kind = K_TEXT;
        ev.kind = TX_EV_TEXT;
        ev.text = tx_json_str(cb, "text");
        ev.text_len = ev.text != NULL ? strlen(ev.text) : 0;
        if (ev.text == NULL)
            ev.text = "";
    } else if (strcmp(type, "tool_use") == 0) {
        ev.name = tx_json_str(cb, "name");
        if (tx_anthropic_json_tool(r) && ev.name != NULL && strcmp(ev.name, TX_ANTHROPIC_JSON_TOOL) == 0) {
            s->block_kind = K_JSON;
            s->json_answered = 1;
            ev.kind = TX_EV_TEXT;
            ev.text = "";
        } else {
            s->block_kind = K_TOOL;
            ev.kind = TX_EV_TOOL_START;
            ev.id = tx_json_str(cb, "id");
            if (ev.name == NULL)
                ev.name = "";
        }
    } else if (strcmp(type, "thinking") == 0) {
        s->block_kind = K_THINKING;
        ev.kind = TX_EV_THINKING;
        ev.text = tx_json_str(cb, "thinking");
        ev.text_len = ev.text != NULL ? strlen(ev.text) : 0;
        ev.signature = tx_json_str(cb, "signature");
        if (ev.signature != NULL && ev.signature[0] == '\0')
            ev.signature = NULL;
    } else {
        return 0; /* redacted thinking and server tool blocks have no neutral stream form */
    }
    s->block_index = s->next_index++;
    int rc = emit(ctx, &ev);
    /* a start that already carries arguments (not seen from Anthropic, but the shape allows it) */
    json_t *input = json_object_get(cb, "input");
    if (rc == 0 && s->block_kind == K_TOOL && json_object_size(input) > 0) {
        char *text = json_dumps(input, JSON_COMPACT);
        if (text != NULL)
            rc = emit_text(emit, ctx, TX_EV_TOOL_ARGS, s->block_index, text, strlen(text));
        free(text);
    }
    return rc;
}

static int
on_block_delta(pstate_t *s, json_t *d, tx_emit_fn emit, void *ctx)
{
    if (!s->has_block || s->block_kind == K_SKIP)
        return 0;
    json_t *delta = json_object_get(d, "delta");
    const char *type = tx_json_str(delta, "type");
    if (type == NULL)
        return 0;
    json_t *v;
    if (strcmp(type, "text_delta") == 0 && s->block_kind == K_TEXT &&
        json_is_string(v = json_object_get(delta, "text")))
        return emit_text(emit, ctx, TX_EV_TEXT, s->block_index, json_string_value(v), json_string_length(v));
    if (strcmp(type, "input_json_delta") == 0 && json_is_string(v = json_object_get(delta, "partial_json")) &&
        json_string_length(v) > 0 && (s->block_kind == K_TOOL || s->block_kind == K_JSON))
        return emit_text(emit, ctx, s->block_kind == K_TOOL ? TX_EV_TOOL_ARGS : TX_EV_TEXT, s->block_index,
                         json_string_value(v), json_string_length(v));
    if (strcmp(type, "thinking_delta") == 0 && s->block_kind == K_THINKING &&
        json_is_string(v = json_object_get(delta, "thinking")))
        return emit_text(emit, ctx, TX_EV_THINKING, s->block_index, json_string_value(v), json_string_length(v));
    if (strcmp(type, "signature_delta") == 0 && s->block_kind == K_THINKING &&
        json_is_string(v = json_object_get(delta, "signature"))) {
        tx_event_t ev = {.kind = TX_EV_THINKING, .index = s->block_index, .signature = json_string_value(v)};
        return emit(ctx, &ev);
    }
    return 0; /* citations_delta and later additions */
}

/* Cumulative usage: every count present replaces the one held (message_delta repeats, never adds). */
static void
merge_usage(pstate_t *s, const json_t *u)
{
    if (!json_is_object(u))
        return;
    int64_t in = s->usage.input - s->usage.cache_read - s->usage.cache_write;
    if (json_is_integer(json_object_get(u, "input_tokens")))
        in = count(u, "input_tokens");
    if (json_is_integer(json_object_get(u, "cache_read_input_tokens")))
        s->usage.cache_read = count(u, "cache_read_input_tokens");
    if (json_is_integer(json_object_get(u, "cache_creation_input_tokens")))
        s->usage.cache_write = count(u, "cache_creation_input_tokens");
    if (json_is_integer(json_object_get(u, "output_tokens")))
        s->usage.output = count(u, "output_tokens");
    s->usage.input = in + s->usage.cache_read + s->usage.cache_write;
    s->usage.known = 1;
}

static int
frame(pstate_t *s, const tx_request_t *r, const char *type, json_t *d, tx_emit_fn emit, void *ctx, tx_error_t *err)
{
    if (strcmp(type, "message_start") == 0) {
        json_t *m = json_object_get(d, "message");
        merge_usage(s, json_object_get(m, "usage"));
        s->started = 1;
        tx_event_t ev = {
            .kind = TX_EV_START, .id = tx_json_str(m, "id"), .model = tx_json_str(m, "model"), .usage = s->usage};
        return emit(ctx, &ev);
    }
    if (strcmp(type, "content_block_start") == 0)
        return on_block_start(s, r, d, emit, ctx);
    if (strcmp(type, "content_block_delta") == 0)
        return on_block_delta(s, d, emit, ctx);
    if (strcmp(type, "content_block_stop") == 0) {
        int skip = !s->has_block || s->block_kind == K_SKIP;
        s->has_block = 0;
        if (skip)
            return 0;
        tx_event_t ev = {.kind = TX_EV_BLOCK_END, .index = s->block_index};
        return emit(ctx, &ev);
    }
    if (strcmp(type, "message_delta") == 0) {
        json_t *delta = json_object_get(d, "delta");
        const char *stop = tx_json_str(delta, "stop_reason");
        int rc = 0;
        if (stop != NULL) {
            tx_event_t ev = {.kind = TX_EV_STOP,
                             .stop = tx_anthropic_stop_parse(stop),
                             .stop_sequence = tx_json_str(delta, "stop_sequence")};
            if (s->json_answered && ev.stop == TX_STOP_TOOL_USE)
                ev.stop = TX_STOP_END;
            rc = emit(ctx, &ev);
        }
        if (rc == 0 && json_is_object(json_object_get(d, "usage"))) {
            merge_usage(s, json_object_get(d, "usage"));
            tx_event_t ev = {.kind = TX_EV_USAGE, .usage = s->usage};
            rc = emit(ctx, &ev);
        }
        return rc;
    }
    if (strcmp(type, "message_stop") == 0) {
        s->ended = 1;
        tx_event_t ev = {.kind = TX_EV_END};
        return emit(ctx, &ev);
    }
    if (strcmp(type, "error") == 0) {
        json_t *e = json_object_get(d, "error");
        const char *message = tx_json_str(e, "message");
        tx_fail(err, tx_anthropic_error_kind(tx_json_str(e, "type"), 0), NULL, NULL, "%s",
                message != NULL ? message : "Anthropic reported an error in the stream.");
        s->ended = 1;
        tx_event_t ev = {.kind = TX_EV_ERROR, .error = err};
        return emit(ctx, &ev);
    }
    return 0; /* ping, and event types added later */
}

static int
stream_frame(tx_stream_state_t *st, const tx_request_t *r, const tx_frame_t *f, tg_arena_t *a, tx_emit_fn emit,
             void *ctx, tx_error_t *err)
{
    (void)a; /* frames are parsed and released one by one: a long stream must not grow the arena */
    pstate_t *s = (pstate_t *)st;
    if (s->ended || f->data == NULL || f->data_len == 0)
        return 0;
    if (f->event != NULL && f->event_len == 4 && memcmp(f->event, "ping", 4) == 0)
        return 0;
    json_t *d = json_loadb(f->data, f->data_len, JSON_ALLOW_NUL, NULL);
    const char *type = tx_json_str(d, "type");
    int rc;
    if (type == NULL) {
        rc = json_is_object(d) ? 0 : upstream(err, "a stream event that is not JSON");
    } else {
        rc = frame(s, r, type, d, emit, ctx, err);
    }
    json_decref(d);
    return rc;
}

const tx_provider_ops_t tx_anthropic_provider = {
    .kind = "anthropic",
    .framing = TX_FRAMING_SSE,
    .stream_state_size = sizeof(pstate_t),
    .encode_request = encode_request,
    .decode_response = decode_response,
    .decode_error = decode_error,
    .stream_frame = stream_frame,
};
