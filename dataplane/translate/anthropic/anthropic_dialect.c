/*
 * Anthropic Messages as a client dialect: what @anthropic-ai/sdk speaks at /anthropic/v1/messages and
 * /anthropic/v1/messages/count_tokens (shared/ref/providers.md §3).
 *
 * decode_request turns a Messages body into the neutral request: a user turn's tool_result blocks become
 * one TX_ROLE_TOOL message placed before the rest of that turn, so that every encoder sees tool results
 * the same way whichever dialect they came from. Members the neutral request does not model (thinking,
 * service_tier, ...) are kept in r->extra for the Anthropic encoder. The encoders write Anthropic's exact
 * shapes: usage splits the neutral input (which includes cache) back into input_tokens + cache fields.
 *
 * The stream encoder keeps one open content block at a time, as Anthropic does: an event for another
 * neutral index closes the open block first. Stop reason and usage are held until TX_EV_END, because
 * some providers (OpenAI) report usage after the finish reason; they go out in one message_delta.
 */
#include <stdio.h>
#include <string.h>
#include "anthropic.h"

/* ---------------------------------------------------------------- request decoding */

static int
bad(tx_error_t *err, const char *param, const char *msg)
{
    return tx_fail(err, TX_ERR_INVALID_REQUEST, NULL, param, "%s: %s", param, msg);
}

/* Text of a tool_result's content: a string, or its text blocks joined (other blocks are dropped: the
 * neutral tool result carries text only). */
static const char *
result_text(json_t *content, tg_arena_t *a)
{
    if (content == NULL || json_is_null(content))
        return "";
    if (json_is_string(content))
        return json_string_value(content);
    if (!json_is_array(content))
        return NULL;
    size_t total = 0, i;
    json_t *b;
    json_array_foreach(content, i, b)
    {
        const char *t = tx_json_str(b, "type"), *text = tx_json_str(b, "text");
        if (t != NULL && strcmp(t, "text") == 0 && text != NULL)
            total += strlen(text) + 1;
    }
    char *out = tg_arena_alloc(a, total + 1);
    if (out == NULL)
        return NULL;
    size_t at = 0;
    json_array_foreach(content, i, b)
    {
        const char *t = tx_json_str(b, "type"), *text = tx_json_str(b, "text");
        if (t == NULL || strcmp(t, "text") != 0 || text == NULL)
            continue;
        if (at > 0)
            out[at++] = '\n';
        size_t l = strlen(text);
        memcpy(out + at, text, l);
        at += l;
    }
    out[at] = '\0';
    return out;
}

/* The name of the tool call `id` in the assistant message just before (Gemini needs names with results). */
static const char *
call_name(const tx_message_t *prev, const char *id)
{
    if (prev == NULL || prev->role != TX_ROLE_ASSISTANT)
        return NULL;
    for (size_t i = 0; i < prev->n_parts; i++)
        if (prev->parts[i].kind == TX_PART_TOOL_CALL && prev->parts[i].id != NULL && strcmp(prev->parts[i].id, id) == 0)
            return prev->parts[i].name;
    return NULL;
}

/* One content block into a part. *ret_is_result says it belongs to the tool message of the turn; blocks we
 * cannot represent and need not (server tool blocks, citations' search results) leave ret->kind = -1. */
static int
decode_block(json_t *b, int assistant, const tx_message_t *prev, tg_arena_t *a, tx_part_t *ret, int *ret_is_result,
             char *param, tx_error_t *err)
{
    const char *type = tx_json_str(b, "type");
    *ret_is_result = 0;
    memset(ret, 0, sizeof(*ret));
    ret->kind = (tx_part_kind_t)-1;
    if (!json_is_object(b) || type == NULL)
        return bad(err, param, "each content block must be an object with a string `type`");
    if (strcmp(type, "text") == 0) {
        ret->kind = TX_PART_TEXT;
        if ((ret->text = tx_json_str(b, "text")) == NULL)
            return bad(err, param, "text blocks need a string `text`");
    } else if (strcmp(type, "image") == 0) {
        json_t *src = json_object_get(b, "source");
        const char *st = tx_json_str(src, "type");
        ret->kind = TX_PART_IMAGE;
        if (st != NULL && strcmp(st, "base64") == 0) {
            ret->media_type = tx_json_str(src, "media_type");
            ret->data = tx_json_str(src, "data");
            if (ret->media_type == NULL || ret->data == NULL)
                return bad(err, param, "base64 image sources need `media_type` and `data`");
        } else if (st != NULL && strcmp(st, "url") == 0) {
            if ((ret->url = tx_json_str(src, "url")) == NULL)
                return bad(err, param, "url image sources need a string `url`");
            if (strncmp(ret->url, "data:", 5) == 0 && tx_split_data_url(ret->url, a, &ret->media_type, &ret->data) == 0)
                ret->url = NULL;
        } else {
            return bad(err, param, "image `source.type` must be \"base64\" or \"url\"");
        }
    } else if (strcmp(type, "tool_use") == 0) {
        if (!assistant)
            return bad(err, param, "tool_use blocks may only appear in assistant messages");
        ret->kind = TX_PART_TOOL_CALL;
        ret->id = tx_json_str(b, "id");
        ret->name = tx_json_str(b, "name");
        ret->args = json_object_get(b, "input");
        if (ret->id == NULL || ret->name == NULL)
            return bad(err, param, "tool_use blocks need string `id` and `name`");
        if (ret->args != NULL && !json_is_object(ret->args))
            return bad(err, param, "tool_use `input` must be an object");
    } else if (strcmp(type, "tool_result") == 0) {
        if (assistant)
            return bad(err, param, "tool_result blocks may only appear in user messages");
        ret->kind = TX_PART_TOOL_RESULT;
        ret->id = tx_json_str(b, "tool_use_id");
        if (ret->id == NULL)
            return bad(err, param, "tool_result blocks need a string `tool_use_id`");
        if ((ret->text = result_text(json_object_get(b, "content"), a)) == NULL)
            return bad(err, param, "tool_result `content` must be a string or an array of blocks");
        ret->is_error = json_is_true(json_object_get(b, "is_error"));
        ret->name = call_name(prev, ret->id);
        *ret_is_result = 1;
    } else if (strcmp(type, "thinking") == 0) {
        ret->kind = TX_PART_THINKING;
        ret->text = tx_json_str(b, "thinking");
        ret->signature = tx_json_str(b, "signature");
        if (ret->text == NULL)
            return bad(err, param, "thinking blocks need a string `thinking`");
    } else if (strcmp(type, "redacted_thinking") == 0) {
        ret->kind = TX_PART_REDACTED_THINKING;
        if ((ret->text = tx_json_str(b, "data")) == NULL)
            return bad(err, param, "redacted_thinking blocks need a string `data`");
    } else if (strcmp(type, "document") == 0) {
        /* dropping a document would answer a different question than the one asked */
        return bad(err, param, "document blocks are not supported by this gateway");
    }
    return 0;
}

static int
decode_messages(json_t *msgs, tg_arena_t *a, tx_request_t *r, tx_error_t *err)
{
    size_t n = json_array_size(msgs), i;
    char param[64];
    json_t *m;
    r->messages = tg_arena_alloc(a, (2 * n + 1) * sizeof(*r->messages));
    if (r->messages == NULL)
        return tx_fail(err, TX_ERR_SERVER, NULL, NULL, "The gateway ran out of memory.");
    json_array_foreach(msgs, i, m)
    {
        snprintf(param, sizeof(param), "messages.%zu", i);
        const char *role = tx_json_str(m, "role");
        json_t *content = json_object_get(m, "content");
        if (!json_is_object(m))
            return bad(err, param, "Input should be an object");
        if (role == NULL || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0))
            return bad(err, param, "`role` must be \"user\" or \"assistant\"");
        int assistant = strcmp(role, "assistant") == 0;
        const tx_message_t *prev = r->n_messages > 0 ? &r->messages[r->n_messages - 1] : NULL;
        tx_message_t main = {.role = assistant ? TX_ROLE_ASSISTANT : TX_ROLE_USER}, results = {.role = TX_ROLE_TOOL};
        if (json_is_string(content)) {
            main.parts = tg_arena_alloc(a, sizeof(tx_part_t));
            if (main.parts == NULL)
                return tx_fail(err, TX_ERR_SERVER, NULL, NULL, "The gateway ran out of memory.");
            main.parts[0] = (tx_part_t){.kind = TX_PART_TEXT, .text = json_string_value(content)};
            main.n_parts = 1;
        } else if (json_is_array(content)) {
            size_t nb = json_array_size(content), j;
            json_t *b;
            main.parts = tg_arena_alloc(a, (nb + 1) * sizeof(tx_part_t));
            results.parts = tg_arena_alloc(a, (nb + 1) * sizeof(tx_part_t));
            if (main.parts == NULL || results.parts == NULL)
                return tx_fail(err, TX_ERR_SERVER, NULL, NULL, "The gateway ran out of memory.");
            json_array_foreach(content, j, b)
            {
                tx_part_t p;
                int is_result;
                snprintf(param, sizeof(param), "messages.%zu.content.%zu", i, j);
                if (decode_block(b, assistant, prev, a, &p, &is_result, param, err) != 0)
                    return -1;
                if ((int)p.kind < 0)
                    continue;
                if (is_result)
                    results.parts[results.n_parts++] = p;
                else
                    main.parts[main.n_parts++] = p;
            }
        } else {
            snprintf(param, sizeof(param), "messages.%zu.content", i);
            return bad(err, param, "Input should be a string or an array of content blocks");
        }
        if (results.n_parts > 0)
            r->messages[r->n_messages++] = results;
        if (main.n_parts > 0 || results.n_parts == 0)
            r->messages[r->n_messages++] = main;
    }
    return 0;
}

static int
decode_system(json_t *sys, tg_arena_t *a, tx_request_t *r, tx_error_t *err)
{
    if (sys == NULL || json_is_null(sys))
        return 0;
    if (json_is_string(sys)) {
        r->system = json_string_length(sys) > 0 ? json_string_value(sys) : NULL;
        return 0;
    }
    if (!json_is_array(sys))
        return bad(err, "system", "Input should be a string or an array of text blocks");
    size_t total = 0, i;
    json_t *b;
    json_array_foreach(sys, i, b)
    {
        const char *t = tx_json_str(b, "type"), *text = tx_json_str(b, "text");
        if (t == NULL || strcmp(t, "text") != 0 || text == NULL)
            return bad(err, "system", "system blocks must be text blocks");
        total += strlen(text) + 2;
    }
    char *out = tg_arena_alloc(a, total + 1);
    if (out == NULL)
        return tx_fail(err, TX_ERR_SERVER, NULL, NULL, "The gateway ran out of memory.");
    size_t at = 0;
    json_array_foreach(sys, i, b)
    {
        const char *text = tx_json_str(b, "text");
        if (at > 0) {
            memcpy(out + at, "\n\n", 2);
            at += 2;
        }
        memcpy(out + at, text, strlen(text));
        at += strlen(text);
    }
    out[at] = '\0';
    r->system = at > 0 ? out : NULL;
    return 0;
}

static int
decode_tools(json_t *tools, json_t *choice, tg_arena_t *a, tx_request_t *r, tx_error_t *err)
{
    char param[64];
    if (tools != NULL && !json_is_null(tools)) {
        if (!json_is_array(tools))
            return bad(err, "tools", "Input should be an array");
        size_t i;
        json_t *t;
        r->tools = tg_arena_alloc(a, (json_array_size(tools) + 1) * sizeof(*r->tools));
        if (r->tools == NULL)
            return tx_fail(err, TX_ERR_SERVER, NULL, NULL, "The gateway ran out of memory.");
        json_array_foreach(tools, i, t)
        {
            snprintf(param, sizeof(param), "tools.%zu", i);
            const char *type = tx_json_str(t, "type"), *name = tx_json_str(t, "name");
            json_t *schema = json_object_get(t, "input_schema");
            if (!json_is_object(t) || name == NULL)
                return bad(err, param, "each tool must be an object with a string `name`");
            if (type != NULL && strcmp(type, "custom") != 0)
                return bad(err, param, "server tools are not supported by this gateway; declare client tools");
            if (schema != NULL && !json_is_object(schema))
                return bad(err, param, "`input_schema` must be an object");
            r->tools[r->n_tools++] =
                (tx_tool_t){.name = name, .description = tx_json_str(t, "description"), .parameters = schema};
        }
    }
    if (choice == NULL || json_is_null(choice))
        return 0;
    const char *ct = tx_json_str(choice, "type");
    if (!json_is_object(choice) || ct == NULL)
        return bad(err, "tool_choice", "Input should be an object with a string `type`");
    if (strcmp(ct, "auto") == 0) {
        r->tool_choice = TX_TOOL_CHOICE_AUTO;
    } else if (strcmp(ct, "any") == 0) {
        r->tool_choice = TX_TOOL_CHOICE_REQUIRED;
    } else if (strcmp(ct, "none") == 0) {
        r->tool_choice = TX_TOOL_CHOICE_NONE;
    } else if (strcmp(ct, "tool") == 0) {
        r->tool_choice = TX_TOOL_CHOICE_NAMED;
        if ((r->tool_choice_name = tx_json_str(choice, "name")) == NULL)
            return bad(err, "tool_choice.name", "Field required");
    } else {
        return bad(err, "tool_choice.type", "must be \"auto\", \"any\", \"none\" or \"tool\"");
    }
    json_t *dp = json_object_get(choice, "disable_parallel_tool_use");
    if (json_is_boolean(dp))
        r->parallel_tool_calls = json_is_true(dp) ? 0 : 1;
    return 0;
}

/* Members decoded into the neutral request; the rest go to r->extra. */
static const char *const MODELLED[] = {
    "model", "messages", "system", "max_tokens", "stop_sequences", "temperature",
    "top_p", "top_k",    "stream", "metadata",   "tools",          "tool_choice",
};

static int
modelled(const char *key)
{
    for (size_t i = 0; i < sizeof(MODELLED) / sizeof(MODELLED[0]); i++)
        if (strcmp(MODELLED[i], key) == 0)
            return 1;
    return 0;
}

static int
decode_request(tx_op_t op, const char *body, size_t len, tg_arena_t *a, tx_request_t *ret, tx_error_t *err)
{
    if (op != TX_OP_CHAT && op != TX_OP_COUNT_TOKENS)
        return tx_fail(err, TX_ERR_NOT_FOUND, NULL, NULL, "The Anthropic API has no such operation.");
    json_t *root = tx_parse_json(body, len, a, err), *v;
    if (root == NULL)
        return -1;
    if (!json_is_object(root))
        return tx_fail(err, TX_ERR_INVALID_REQUEST, NULL, NULL, "The request body must be a JSON object.");

    tx_request_t r;
    memset(&r, 0, sizeof(r));
    r.op = op;
    r.dialect = TX_DIALECT_ANTHROPIC;
    r.max_tokens = -1;
    r.top_k = -1;
    r.parallel_tool_calls = -1;
    r.dimensions = -1;
    if ((r.model = tx_json_str(root, "model")) == NULL)
        return bad(err, "model", "Field required");
    json_t *msgs = json_object_get(root, "messages");
    if (!json_is_array(msgs))
        return bad(err, "messages", "Field required (an array of messages)");
    if (json_array_size(msgs) == 0 && op == TX_OP_CHAT)
        return bad(err, "messages", "at least one message is required");
    if (decode_system(json_object_get(root, "system"), a, &r, err) != 0 || decode_messages(msgs, a, &r, err) != 0 ||
        decode_tools(json_object_get(root, "tools"), json_object_get(root, "tool_choice"), a, &r, err) != 0)
        return -1;

    if (op == TX_OP_CHAT) {
        v = json_object_get(root, "max_tokens");
        if (v == NULL)
            return bad(err, "max_tokens", "Field required");
        if (!json_is_integer(v) || json_integer_value(v) < 1)
            return bad(err, "max_tokens", "Input should be an integer greater than or equal to 1");
        r.max_tokens = json_integer_value(v);
        r.stream = json_is_true(json_object_get(root, "stream"));
        if ((v = json_object_get(root, "temperature")) != NULL && !json_is_null(v)) {
            if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1)
                return bad(err, "temperature", "Input should be a number between 0 and 1");
            r.temperature = json_number_value(v);
            r.has_temperature = 1;
        }
        if ((v = json_object_get(root, "top_p")) != NULL && !json_is_null(v)) {
            if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1)
                return bad(err, "top_p", "Input should be a number between 0 and 1");
            r.top_p = json_number_value(v);
            r.has_top_p = 1;
        }
        if ((v = json_object_get(root, "top_k")) != NULL && !json_is_null(v)) {
            if (!json_is_integer(v) || json_integer_value(v) < 0)
                return bad(err, "top_k", "Input should be a non-negative integer");
            r.top_k = json_integer_value(v);
        }
        if ((v = json_object_get(root, "stop_sequences")) != NULL && !json_is_null(v)) {
            if (!json_is_array(v))
                return bad(err, "stop_sequences", "Input should be an array of strings");
            r.stop = tg_arena_alloc(a, (json_array_size(v) + 1) * sizeof(*r.stop));
            if (r.stop == NULL)
                return tx_fail(err, TX_ERR_SERVER, NULL, NULL, "The gateway ran out of memory.");
            size_t i;
            json_t *s;
            json_array_foreach(v, i, s)
            {
                if (!json_is_string(s))
                    return bad(err, "stop_sequences", "Input should be an array of strings");
                r.stop[r.n_stop++] = json_string_value(s);
            }
        }
        r.user = tx_json_str(json_object_get(root, "metadata"), "user_id");
    }

    json_t *extra = json_object();
    const char *key;
    json_object_foreach(root, key, v)
    {
        if (!modelled(key))
            json_object_set(extra, key, v);
    }
    if (extra != NULL && json_object_size(extra) > 0 && tx_arena_keep(a, extra) == 0)
        r.extra = extra;
    else
        json_decref(extra);
    *ret = r;
    return 0;
}

/* ---------------------------------------------------------------- response encoding */

static int
str(tg_buf_t *out, const char *s)
{
    return s != NULL ? tg_buf_append_json_string(out, s, strlen(s)) : tg_buf_appends(out, "null");
}

/* Anthropic usage from neutral usage: input_tokens excludes the cache. */
static int
usage(tg_buf_t *out, const tx_usage_t *u, int64_t output)
{
    int64_t in = u->input - u->cache_read - u->cache_write;
    return tg_buf_appendf(out,
                          "{\"input_tokens\":%lld,\"cache_creation_input_tokens\":%lld,\"cache_read_input_tokens\":"
                          "%lld,\"output_tokens\":%lld}",
                          (long long)(in > 0 ? in : 0), (long long)(u->cache_write > 0 ? u->cache_write : 0),
                          (long long)(u->cache_read > 0 ? u->cache_read : 0), (long long)(output > 0 ? output : 0));
}

/* "<prefix><s>[_<n>]" as a JSON string (n < 0: none), with s reduced to a plain token: ids are made up
 * from request ids. */
static int
token(tg_buf_t *out, const char *prefix, const char *s, long long n)
{
    int rc = tg_buf_appendf(out, "\"%s", prefix);
    for (; *s != '\0' && rc == 0; s++) {
        char c = *s;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        rc = tg_buf_append(out, ok ? s : "_", 1);
    }
    if (n >= 0)
        rc |= tg_buf_appendf(out, "_%lld", n);
    return rc | tg_buf_appends(out, "\"");
}

/* "msg_…": the provider's id when it is already one, else made up from it or from the request id. */
static int
message_id(tg_buf_t *out, const char *id, const tx_request_t *r)
{
    if (id != NULL && strncmp(id, "msg_", 4) == 0)
        return str(out, id);
    return token(out, "msg_", id != NULL ? id : r->request_id != NULL ? r->request_id : "tollgate", -1);
}

/* A tool call's id, or "toolu_<request id>_<n>" for providers that give none (Gemini, Ollama). */
static int
tool_id(tg_buf_t *out, const char *id, const tx_request_t *r, size_t n)
{
    if (id != NULL)
        return str(out, id);
    return token(out, "toolu_", r->request_id != NULL ? r->request_id : "tollgate", (long long)n);
}

static int
encode_response(const tx_request_t *r, const tx_response_t *resp, tg_arena_t *a, tg_buf_t *out)
{
    if (r->op == TX_OP_COUNT_TOKENS)
        return tg_buf_appendf(out, "{\"input_tokens\":%lld}", (long long)resp->input_tokens);
    int rc = tg_buf_appends(out, "{\"id\":");
    rc |= message_id(out, resp->id, r);
    rc |= tg_buf_appends(out, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    rc |= str(out, r->model != NULL ? r->model : resp->model);
    rc |= tg_buf_appends(out, ",\"content\":[");
    int has_tool = 0;
    for (size_t i = 0, n = 0; i < resp->n_parts; i++) {
        const tx_part_t *p = &resp->parts[i];
        const char *sep = n > 0 ? "," : "";
        switch (p->kind) {
        case TX_PART_TEXT:
            rc |= tg_buf_appendf(out, "%s{\"type\":\"text\",\"text\":", sep);
            rc |= str(out, p->text != NULL ? p->text : "");
            break;
        case TX_PART_THINKING:
            rc |= tg_buf_appendf(out, "%s{\"type\":\"thinking\",\"thinking\":", sep);
            rc |= str(out, p->text != NULL ? p->text : "");
            rc |= tg_buf_appends(out, ",\"signature\":");
            rc |= str(out, p->signature != NULL ? p->signature : "");
            break;
        case TX_PART_REDACTED_THINKING:
            rc |= tg_buf_appendf(out, "%s{\"type\":\"redacted_thinking\",\"data\":", sep);
            rc |= str(out, p->text != NULL ? p->text : "");
            break;
        case TX_PART_TOOL_CALL:
            rc |= tg_buf_appendf(out, "%s{\"type\":\"tool_use\",\"id\":", sep);
            rc |= tool_id(out, p->id, r, i);
            rc |= tg_buf_appends(out, ",\"name\":");
            rc |= str(out, p->name != NULL ? p->name : "");
            rc |= tg_buf_appendf(out, ",\"input\":%s", tx_args_text(p, a));
            has_tool = 1;
            break;
        default:
            continue;
        }
        rc |= tg_buf_appends(out, "}");
        n++;
    }
    tx_stop_t stop = resp->stop != TX_STOP_UNSET ? resp->stop : has_tool ? TX_STOP_TOOL_USE : TX_STOP_END;
    rc |= tg_buf_appends(out, "],\"stop_reason\":");
    rc |= str(out, tx_anthropic_stop_name(stop, resp->raw_stop));
    rc |= tg_buf_appends(out, ",\"stop_sequence\":");
    rc |= str(out, stop == TX_STOP_SEQUENCE ? resp->stop_sequence : NULL);
    rc |= tg_buf_appends(out, ",\"usage\":");
    rc |= usage(out, &resp->usage, resp->usage.output);
    rc |= tg_buf_appends(out, "}");
    return rc ? -1 : 0;
}

/* ---------------------------------------------------------------- errors */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when invalid. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80                    ? 1
                 : s[0] >= 0xc2 && s[0] <= 0xdf ? 2
                 : s[0] >= 0xe0 && s[0] <= 0xef ? 3
                 : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
                                                : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) || (s[0] == 0xf0 && s[1] < 0x90) ||
        (s[0] == 0xf4 && s[1] > 0x8f))
        return 0; /* overlong forms, surrogates, beyond U+10FFFF */
    return len;
}

/* A JSON string of text that may not be valid UTF-8 (error messages quote upstream bytes and are cut at a
 * fixed size): invalid bytes become U+FFFD. */
static int
str_utf8(tg_buf_t *out, const char *text)
{
    enum { CAP = sizeof(((tx_error_t *)0)->message) };
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strnlen(text, CAP), at = 0, o = 0;
    char clean[3 * CAP];
    while (at < n) {
        size_t l = utf8_len(s + at, n - at);
        if (l == 0) {
            memcpy(clean + o, "\xef\xbf\xbd", 3);
            o += 3;
            at++;
        } else {
            memcpy(clean + o, s + at, l);
            o += l;
            at += l;
        }
    }
    return tg_buf_append_json_string(out, clean, o);
}

static int
error_object(tg_buf_t *out, const tx_error_t *e)
{
    int rc = tg_buf_appends(out, "{\"type\":");
    rc |= str(out, tx_anthropic_error_type(e->kind));
    rc |= tg_buf_appends(out, ",\"message\":");
    rc |= str_utf8(out, e->message[0] != '\0' ? e->message : "The request failed.");
    return rc | tg_buf_appends(out, "}");
}

static int
encode_error(const tx_error_t *e, const char *request_id, tg_buf_t *out)
{
    tg_buf_appends(out, "{\"type\":\"error\",\"error\":");
    error_object(out, e);
    if (request_id != NULL) {
        tg_buf_appends(out, ",\"request_id\":");
        str(out, request_id);
    }
    tg_buf_appends(out, "}");
    /* Anthropic's clients know overload as 529, whatever status the upstream used */
    return e->kind == TX_ERR_OVERLOADED ? 529 : tx_error_status(e);
}

/* ---------------------------------------------------------------- streams */

enum { B_NONE = 0, B_TEXT, B_TOOL, B_THINKING };

typedef struct dstate {
    int started, done;
    int open;       /* B_*: the kind of the open block, B_NONE when none */
    int open_index; /* neutral index of the open block */
    int next_block; /* Anthropic index of the next block */
    int saw_tool;
    tx_stop_t stop;
    tx_usage_t usage;
    int has_stop_sequence;
    char stop_sequence[256];
} dstate_t;

static int
ev_begin(tg_buf_t *out, const char *name)
{
    return tg_buf_appendf(out, "event: %s\ndata: {\"type\":\"%s\"", name, name);
}

static int
message_start(dstate_t *s, const tx_request_t *r, const tx_event_t *ev, tg_buf_t *out)
{
    static const tx_usage_t none;
    const tx_usage_t *u = ev != NULL && ev->usage.known ? &ev->usage : &none;
    s->started = 1;
    int rc = ev_begin(out, "message_start");
    rc |= tg_buf_appends(out, ",\"message\":{\"id\":");
    rc |= message_id(out, ev != NULL ? ev->id : NULL, r);
    rc |= tg_buf_appends(out, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    rc |= str(out, r->model != NULL ? r->model : ev != NULL ? ev->model : NULL);
    rc |= tg_buf_appends(out, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":");
    rc |= usage(out, u, u->output);
    return rc | tg_buf_appends(out, "}}\n\n");
}

static int
close_block(dstate_t *s, tg_buf_t *out)
{
    if (s->open == B_NONE)
        return 0;
    s->open = B_NONE;
    int rc = ev_begin(out, "content_block_stop");
    return rc | tg_buf_appendf(out, ",\"index\":%d}\n\n", s->next_block - 1);
}

/* Makes the block for neutral index `index` of kind `kind` the open one (closing another first). */
static int
open_block(dstate_t *s, const tx_request_t *r, int index, int kind, const tx_event_t *ev, tg_buf_t *out)
{
    if (s->open == kind && s->open_index == index)
        return 0;
    int rc = close_block(s, out);
    rc |= ev_begin(out, "content_block_start");
    rc |= tg_buf_appendf(out, ",\"index\":%d,\"content_block\":", s->next_block);
    if (kind == B_TEXT) {
        rc |= tg_buf_appends(out, "{\"type\":\"text\",\"text\":\"\"}");
    } else if (kind == B_THINKING) {
        rc |= tg_buf_appends(out, "{\"type\":\"thinking\",\"thinking\":\"\"}");
    } else {
        rc |= tg_buf_appends(out, "{\"type\":\"tool_use\",\"id\":");
        rc |= tool_id(out, ev->id, r, (size_t)index);
        rc |= tg_buf_appends(out, ",\"name\":");
        rc |= str(out, ev->name != NULL ? ev->name : "");
        rc |= tg_buf_appends(out, ",\"input\":{}}");
        s->saw_tool = 1;
    }
    rc |= tg_buf_appends(out, "}\n\n");
    s->open = kind;
    s->open_index = index;
    s->next_block++;
    return rc;
}

static int
delta(dstate_t *s, tg_buf_t *out, const char *type, const char *field, const char *text, size_t len)
{
    int rc = ev_begin(out, "content_block_delta");
    rc |= tg_buf_appendf(out, ",\"index\":%d,\"delta\":{\"type\":\"%s\",\"%s\":", s->next_block - 1, type, field);
    rc |= tg_buf_append_json_string(out, text, len);
    return rc | tg_buf_appends(out, "}}\n\n");
}

static int
message_end(dstate_t *s, tg_buf_t *out)
{
    tx_stop_t stop = s->stop != TX_STOP_UNSET ? s->stop : s->saw_tool ? TX_STOP_TOOL_USE : TX_STOP_END;
    int rc = close_block(s, out);
    rc |= ev_begin(out, "message_delta");
    rc |= tg_buf_appends(out, ",\"delta\":{\"stop_reason\":");
    rc |= str(out, tx_anthropic_stop_name(stop, NULL));
    rc |= tg_buf_appends(out, ",\"stop_sequence\":");
    if (stop == TX_STOP_SEQUENCE && s->has_stop_sequence)
        rc |= str_utf8(out, s->stop_sequence);
    else
        rc |= tg_buf_appends(out, "null");
    rc |= tg_buf_appends(out, "},\"usage\":");
    rc |= usage(out, &s->usage, s->usage.output);
    rc |= tg_buf_appends(out, "}\n\n");
    rc |= ev_begin(out, "message_stop");
    return rc | tg_buf_appends(out, "}\n\n");
}

static int
stream_event(tx_stream_state_t *st, const tx_request_t *r, const tx_event_t *ev, tg_buf_t *out)
{
    dstate_t *s = (dstate_t *)st;
    int rc = 0;
    if (s->done)
        return 0;
    if (ev->kind == TX_EV_ERROR) {
        static const tx_error_t unknown = {.kind = TX_ERR_UPSTREAM, .message = "The upstream stream failed."};
        s->done = 1;
        rc = ev_begin(out, "error");
        rc |= tg_buf_appends(out, ",\"error\":");
        rc |= error_object(out, ev->error != NULL ? ev->error : &unknown);
        return rc | tg_buf_appends(out, "}\n\n") ? -1 : 0;
    }
    if (!s->started)
        rc |= message_start(s, r, ev->kind == TX_EV_START ? ev : NULL, out);
    switch (ev->kind) {
    case TX_EV_START:
        if (ev->usage.known)
            s->usage = ev->usage; /* providers that report input only at the start (Anthropic itself) */
        break;
    case TX_EV_TEXT:
        if (ev->text_len > 0 || s->open != B_TEXT || s->open_index != ev->index) {
            rc |= open_block(s, r, ev->index, B_TEXT, ev, out);
            if (ev->text_len > 0)
                rc |= delta(s, out, "text_delta", "text", ev->text, ev->text_len);
        }
        break;
    case TX_EV_THINKING:
        rc |= open_block(s, r, ev->index, B_THINKING, ev, out);
        if (ev->text != NULL && ev->text_len > 0)
            rc |= delta(s, out, "thinking_delta", "thinking", ev->text, ev->text_len);
        if (ev->signature != NULL)
            rc |= delta(s, out, "signature_delta", "signature", ev->signature, strlen(ev->signature));
        break;
    case TX_EV_TOOL_START:
        if (s->open == B_TOOL && s->open_index == ev->index)
            break;
        rc |= open_block(s, r, ev->index, B_TOOL, ev, out);
        break;
    case TX_EV_TOOL_ARGS:
        /* fragments of a call whose start we never saw have no block to go to */
        if (s->open == B_TOOL && s->open_index == ev->index && ev->text_len > 0)
            rc |= delta(s, out, "input_json_delta", "partial_json", ev->text, ev->text_len);
        break;
    case TX_EV_BLOCK_END:
        if (s->open != B_NONE && s->open_index == ev->index)
            rc |= close_block(s, out);
        break;
    case TX_EV_USAGE:
        s->usage = ev->usage;
        break;
    case TX_EV_STOP:
        s->stop = ev->stop;
        s->has_stop_sequence = ev->stop_sequence != NULL;
        if (ev->stop_sequence != NULL)
            snprintf(s->stop_sequence, sizeof(s->stop_sequence), "%s", ev->stop_sequence);
        break;
    case TX_EV_END:
        rc |= message_end(s, out);
        s->done = 1;
        break;
    default:
        break;
    }
    return rc ? -1 : 0;
}

const tx_dialect_ops_t tx_anthropic_dialect = {
    .name = "anthropic",
    .stream_state_size = sizeof(dstate_t),
    .decode_request = decode_request,
    .encode_response = encode_response,
    .encode_error = encode_error,
    .stream_content_type = "text/event-stream; charset=utf-8",
    .stream_event = stream_event,
};
