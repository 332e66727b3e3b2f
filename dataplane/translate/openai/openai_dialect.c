/*
 * OpenAI as a client dialect: Chat Completions, legacy Completions and Embeddings bodies in and out
 * (shared/ref/providers.md §1.2-§1.5). This path serves an OpenAI client whose route leads to a provider
 * that does not speak OpenAI's wire format (Anthropic, Gemini, Bedrock, Cohere, Ollama native, and the
 * Mistral/Groq encoders); OpenAI-compatible upstreams never come here (translate/openai_chat.c splices).
 *
 * Decoding keeps what the neutral request models and hands every other top-level member to r->extra,
 * so an encoder of the OpenAI family can forward it. Encoding writes what the official SDKs parse:
 * one choice, usage with prompt_tokens including cache reads, the chunk stream of §1.3. Reasoning text
 * from providers that expose it goes out as `reasoning_content` (the DeepSeek/vLLM convention that
 * OpenAI-compatible clients already read), on the message and on deltas.
 *
 * Stream state is a fixed-size struct: the chunk id, created and model, the tool-call numbering
 * (neutral block index -> tool_calls[].index) for up to MAX_TOOL_BLOCKS blocks, the stop and the usage.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "translate/tx.h"

#define MAX_TOOL_BLOCKS 128
#define MAX_STOP        4

/* ---------------------------------------------------------------- request decoding */

/* Members of a chat/completions body that the neutral request models; all others go to extra. */
static const char *const MODELLED[] = {
    "model",
    "messages",
    "prompt",
    "input",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_completion_tokens",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "user",
    "functions",
    "function_call",
    "encoding_format",
    "dimensions",
    NULL,
};

static int
modelled(const char *key)
{
    for (size_t i = 0; MODELLED[i] != NULL; i++)
        if (strcmp(MODELLED[i], key) == 0)
            return 1;
    return 0;
}

static int
bad(tx_error_t *err, const char *param, const char *msg)
{
    return tx_fail(err, TX_ERR_INVALID_REQUEST, NULL, param, "%s", msg);
}

/* Appends s to the system text with "\n\n" between pieces. */
static int
add_system(tx_request_t *r, tg_arena_t *a, const char *s)
{
    if (r->system == NULL) {
        r->system = s;
        return 0;
    }
    r->system = tg_arena_sprintf(a, "%s\n\n%s", r->system, s);
    return r->system != NULL ? 0 : -1;
}

/* The text of a content that may only hold text: a string, or an array of text parts (joined). */
static int
text_content(json_t *content, tg_arena_t *a, const char *param, const char **ret, tx_error_t *err)
{
    if (content == NULL || json_is_null(content)) {
        *ret = "";
        return 0;
    }
    if (json_is_string(content)) {
        *ret = json_string_value(content);
        return 0;
    }
    if (!json_is_array(content))
        return bad(err, param, "content must be a string or an array of content parts.");
    size_t total = 0, i;
    json_t *p;
    json_array_foreach(content, i, p)
    {
        const char *type = tx_json_str(p, "type");
        json_t *text = json_object_get(p, "text");
        if (type == NULL || strcmp(type, "text") != 0 || !json_is_string(text))
            return tx_fail(err, TX_ERR_INVALID_REQUEST, NULL, param,
                           "Only text content parts are allowed here (part %zu is not a text part).", i);
        total += strlen(json_string_value(text));
    }
    char *out = tg_arena_alloc(a, total + 1);
    if (out == NULL)
        return tx_fail(err, TX_ERR_SERVER, "out_of_memory", NULL, "The gateway ran out of memory.");
    size_t at = 0;
    json_array_foreach(content, i, p)
    {
        const char *t = tx_json_str(p, "text");
        size_t l = strlen(t);
        memcpy(out + at, t, l);
        at += l;
    }
    *ret = out;
    return 0;
}

/* Grows a part array by one (arena; the old array is abandoned to the arena). */
static tx_part_t *
push_part(tx_message_t *m, size_t *cap, tg_arena_t *a)
{
    if (m->n_parts == *cap) {
        size_t ncap = *cap ? 2 * *cap : 4;
        tx_part_t *np = tg_arena_alloc(a, ncap * sizeof(*np));
        if (np == NULL)
            return NULL;
        if (m->n_parts)
            memcpy(np, m->parts, m->n_parts * sizeof(*np));
        m->parts = np;
        *cap = ncap;
    }
    tx_part_t *p = &m->parts[m->n_parts++];
    memset(p, 0, sizeof(*p));
    return p;
}

static int
user_content(json_t *content, size_t mi, tx_message_t *m, tg_arena_t *a, tx_error_t *err)
{
    char param[160];
    size_t cap = 0;
    snprintf(param, sizeof(param), "messages[%zu].content", mi);
    if (json_is_string(content)) {
        tx_part_t *p = push_part(m, &cap, a);
        if (p == NULL)
            return tx_oom(err);
        p->kind = TX_PART_TEXT;
        p->text = json_string_value(content);
        return 0;
    }
    if (!json_is_array(content))
        return bad(err, param, "A user message's content must be a string or an array of content parts.");
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        snprintf(param, sizeof(param), "messages[%zu].content[%zu]", mi, i);
        const char *type = tx_json_str(part, "type");
        if (type == NULL)
            return bad(err, param, "Each content part needs a string `type`.");
        if (strcmp(type, "text") == 0) {
            const char *text = tx_json_str(part, "text");
            if (text == NULL)
                return bad(err, param, "A text content part needs a string `text`.");
            tx_part_t *p = push_part(m, &cap, a);
            if (p == NULL)
                return tx_oom(err);
            p->kind = TX_PART_TEXT;
            p->text = text;
        } else if (strcmp(type, "image_url") == 0) {
            json_t *iu = json_object_get(part, "image_url");
            const char *url = json_is_string(iu) ? json_string_value(iu) : tx_json_str(iu, "url");
            if (url == NULL || url[0] == '\0')
                return bad(err, param, "An image_url content part needs `image_url.url`.");
            tx_part_t *p = push_part(m, &cap, a);
            if (p == NULL)
                return tx_oom(err);
            p->kind = TX_PART_IMAGE;
            if (strncmp(url, "data:", 5) == 0) {
                if (tx_split_data_url(url, a, &p->media_type, &p->data) != 0 || p->data[0] == '\0')
                    return bad(err, param, "An image data URL must look like data:<media type>;base64,<data>.");
            } else if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) {
                p->url = url;
            } else {
                return bad(err, param, "An image URL must be an http(s) URL or a base64 data URL.");
            }
        } else if (strcmp(type, "input_audio") == 0 || strcmp(type, "file") == 0) {
            /* the neutral request has no audio or file part, so no provider behind this path can get one */
            return tx_fail(err, TX_ERR_INVALID_REQUEST, "unsupported_content", param,
                           "Content parts of type '%s' are not supported for this model's provider.", type);
        } else {
            return tx_fail(err, TX_ERR_INVALID_REQUEST, NULL, param, "Unknown content part type '%s'.", type);
        }
    }
    return 0;
}

/* Parses a tool call's arguments string into an object ("" and null mean {}). */
static int
parse_args(json_t *arguments, const char *param, tg_arena_t *a, json_t **ret, tx_error_t *err)
{
    if (arguments == NULL || json_is_null(arguments) ||
        (json_is_string(arguments) && json_string_length(arguments) == 0)) {
        *ret = json_object();
        return *ret != NULL && tx_arena_keep(a, *ret) == 0 ? 0 : tx_oom(err);
    }
    if (json_is_object(arguments)) { /* lenient: some clients send an object */
        *ret = arguments;
        return 0;
    }
    if (!json_is_string(arguments))
        return bad(err, param, "Tool-call arguments must be a string holding a JSON object.");
    json_t *v = json_loadb(json_string_value(arguments), json_string_length(arguments), 0, NULL);
    if (!json_is_object(v)) {
        json_decref(v);
        return bad(err, param, "Tool-call arguments must be a JSON object serialised as a string; these are not.");
    }
    if (tx_arena_keep(a, v) != 0)
        return tx_oom(err);
    *ret = v;
    return 0;
}

/* The name of the assistant tool call with this id among the messages decoded so far, or NULL. */
static const char *
call_name(const tx_request_t *r, const char *id)
{
    for (size_t i = r->n_messages; i-- > 0;)
        for (size_t j = 0; j < r->messages[i].n_parts; j++) {
            const tx_part_t *p = &r->messages[i].parts[j];
            if (p->kind == TX_PART_TOOL_CALL && p->id != NULL && strcmp(p->id, id) == 0)
                return p->name;
        }
    return NULL;
}

static int
assistant_message(json_t *msg, size_t mi, tx_message_t *m, tg_arena_t *a, tx_error_t *err)
{
    char param[160];
    size_t cap = 0;
    json_t *content = json_object_get(msg, "content");
    snprintf(param, sizeof(param), "messages[%zu].content", mi);
    if (json_is_string(content)) {
        if (json_string_length(content) > 0) {
            tx_part_t *p = push_part(m, &cap, a);
            if (p == NULL)
                return tx_oom(err);
            p->kind = TX_PART_TEXT;
            p->text = json_string_value(content);
        }
    } else if (json_is_array(content)) {
        size_t i;
        json_t *part;
        json_array_foreach(content, i, part)
        {
            const char *type = tx_json_str(part, "type");
            const char *text = type == NULL                   ? NULL
                               : strcmp(type, "text") == 0    ? tx_json_str(part, "text")
                               : strcmp(type, "refusal") == 0 ? tx_json_str(part, "refusal")
                                                              : NULL;
            if (text == NULL)
                return bad(err, param, "An assistant message's content parts must be text or refusal parts.");
            tx_part_t *p = push_part(m, &cap, a);
            if (p == NULL)
                return tx_oom(err);
            p->kind = TX_PART_TEXT;
            p->text = text;
        }
    } else if (content != NULL && !json_is_null(content)) {
        return bad(err, param, "An assistant message's content must be a string, an array or null.");
    }
    const char *refusal = tx_json_str(msg, "refusal");
    if (refusal != NULL && refusal[0] != '\0') {
        tx_part_t *p = push_part(m, &cap, a);
        if (p == NULL)
            return tx_oom(err);
        p->kind = TX_PART_TEXT;
        p->text = refusal;
    }
    json_t *calls = json_object_get(msg, "tool_calls");
    if (calls != NULL && !json_is_null(calls)) {
        snprintf(param, sizeof(param), "messages[%zu].tool_calls", mi);
        if (!json_is_array(calls))
            return bad(err, param, "tool_calls must be an array.");
        size_t i;
        json_t *call;
        json_array_foreach(calls, i, call)
        {
            snprintf(param, sizeof(param), "messages[%zu].tool_calls[%zu]", mi, i);
            json_t *fn = json_object_get(call, "function");
            const char *id = tx_json_str(call, "id"), *name = tx_json_str(fn, "name");
            if (id == NULL || name == NULL)
                return bad(err, param, "Each tool call needs a string `id` and `function.name`.");
            tx_part_t *p = push_part(m, &cap, a);
            if (p == NULL)
                return tx_oom(err);
            p->kind = TX_PART_TOOL_CALL;
            p->id = id;
            p->name = name;
            snprintf(param, sizeof(param), "messages[%zu].tool_calls[%zu].function.arguments", mi, i);
            if (parse_args(json_object_get(fn, "arguments"), param, a, &p->args, err) != 0)
                return -1;
        }
    }
    /* legacy function calling: one call, whose id we make up so that the `function` reply can name it */
    json_t *fc = json_object_get(msg, "function_call");
    if (json_is_object(fc)) {
        snprintf(param, sizeof(param), "messages[%zu].function_call", mi);
        const char *name = tx_json_str(fc, "name");
        if (name == NULL)
            return bad(err, param, "function_call needs a string `name`.");
        tx_part_t *p = push_part(m, &cap, a);
        if (p == NULL)
            return tx_oom(err);
        p->kind = TX_PART_TOOL_CALL;
        p->id = tg_arena_sprintf(a, "call_fn_%zu", mi);
        p->name = name;
        if (p->id == NULL)
            return tx_oom(err);
        if (parse_args(json_object_get(fc, "arguments"), param, a, &p->args, err) != 0)
            return -1;
    }
    return 0;
}

/* The id of the latest legacy function_call named name (see assistant_message), or NULL. */
static const char *
legacy_call_id(const tx_request_t *r, const char *name)
{
    for (size_t i = r->n_messages; i-- > 0;)
        for (size_t j = r->messages[i].n_parts; j-- > 0;) {
            const tx_part_t *p = &r->messages[i].parts[j];
            if (p->kind == TX_PART_TOOL_CALL && p->name != NULL && strcmp(p->name, name) == 0)
                return p->id;
        }
    return NULL;
}

static int
decode_messages(json_t *messages, tx_request_t *r, tg_arena_t *a, tx_error_t *err)
{
    if (!json_is_array(messages) || json_array_size(messages) == 0)
        return bad(err, "messages", "`messages` must be a non-empty array.");
    r->messages = tg_arena_alloc(a, json_array_size(messages) * sizeof(*r->messages));
    if (r->messages == NULL)
        return tx_oom(err);
    size_t mi;
    json_t *msg;
    char param[160];
    json_array_foreach(messages, mi, msg)
    {
        snprintf(param, sizeof(param), "messages[%zu]", mi);
        const char *role = tx_json_str(msg, "role");
        if (!json_is_object(msg) || role == NULL)
            return bad(err, param, "Each message must be an object with a string `role`.");
        json_t *content = json_object_get(msg, "content");
        tx_message_t *m = &r->messages[r->n_messages];
        memset(m, 0, sizeof(*m));
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            const char *text;
            snprintf(param, sizeof(param), "messages[%zu].content", mi);
            if (text_content(content, a, param, &text, err) != 0)
                return -1;
            if (add_system(r, a, text) != 0)
                return tx_oom(err);
            continue;
        }
        if (strcmp(role, "user") == 0) {
            m->role = TX_ROLE_USER;
            if (user_content(content, mi, m, a, err) != 0)
                return -1;
        } else if (strcmp(role, "assistant") == 0) {
            m->role = TX_ROLE_ASSISTANT;
            if (assistant_message(msg, mi, m, a, err) != 0)
                return -1;
        } else if (strcmp(role, "tool") == 0 || strcmp(role, "function") == 0) {
            int legacy = role[0] == 'f';
            const char *id = legacy ? NULL : tx_json_str(msg, "tool_call_id");
            const char *name = tx_json_str(msg, "name");
            if (legacy && (name == NULL || (id = legacy_call_id(r, name)) == NULL))
                return bad(err, param, "A function message must name a function called earlier in the conversation.");
            if (id == NULL)
                return bad(err, param, "A tool message needs a string `tool_call_id`.");
            tx_part_t *p = tg_arena_alloc(a, sizeof(*p));
            if (p == NULL)
                return tx_oom(err);
            snprintf(param, sizeof(param), "messages[%zu].content", mi);
            if (text_content(content, a, param, &p->text, err) != 0)
                return -1;
            m->role = TX_ROLE_TOOL;
            p->kind = TX_PART_TOOL_RESULT;
            p->id = id;
            p->name = name != NULL ? name : call_name(r, id);
            m->parts = p;
            m->n_parts = 1;
        } else {
            return tx_fail(err, TX_ERR_INVALID_REQUEST, NULL, param,
                           "Unknown message role '%s' (expected system, developer, user, assistant or tool).", role);
        }
        r->n_messages++;
    }
    return 0;
}

static int
decode_tool(json_t *fn, size_t i, tx_tool_t *t, tx_error_t *err)
{
    char param[160];
    snprintf(param, sizeof(param), "tools[%zu].function", i);
    t->name = tx_json_str(fn, "name");
    if (t->name == NULL || t->name[0] == '\0')
        return bad(err, param, "Each tool needs a non-empty string `function.name`.");
    t->description = tx_json_str(fn, "description");
    json_t *params = json_object_get(fn, "parameters");
    if (params != NULL && !json_is_null(params) && !json_is_object(params))
        return bad(err, param, "A tool's `parameters` must be a JSON Schema object.");
    t->parameters = json_is_object(params) ? params : NULL;
    return 0;
}

static int
decode_tools(json_t *root, tx_request_t *r, tg_arena_t *a, tx_error_t *err)
{
    json_t *tools = json_object_get(root, "tools"), *functions = json_object_get(root, "functions");
    int legacy = 0;
    if ((tools == NULL || json_is_null(tools)) && functions != NULL && !json_is_null(functions)) {
        tools = functions;
        legacy = 1;
    }
    if (tools != NULL && !json_is_null(tools)) {
        if (!json_is_array(tools))
            return bad(err, legacy ? "functions" : "tools", "`tools` must be an array.");
        r->tools = tg_arena_alloc(a, (json_array_size(tools) + 1) * sizeof(*r->tools));
        if (r->tools == NULL)
            return tx_oom(err);
        size_t i;
        json_t *t;
        json_array_foreach(tools, i, t)
        {
            char param[160];
            snprintf(param, sizeof(param), "tools[%zu]", i);
            const char *type = tx_json_str(t, "type");
            if (!legacy && (type == NULL || strcmp(type, "function") != 0))
                return bad(err, param, "Only tools of type 'function' are supported for this model's provider.");
            if (decode_tool(legacy ? t : json_object_get(t, "function"), i, &r->tools[i], err) != 0)
                return -1;
            r->n_tools++;
        }
    }

    json_t *tc = json_object_get(root, "tool_choice");
    const char *tc_param = "tool_choice";
    if (tc == NULL || json_is_null(tc)) {
        tc = json_object_get(root, "function_call");
        tc_param = "function_call";
    }
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (strcmp(s, "auto") == 0)
            r->tool_choice = TX_TOOL_CHOICE_AUTO;
        else if (strcmp(s, "none") == 0)
            r->tool_choice = TX_TOOL_CHOICE_NONE;
        else if (strcmp(s, "required") == 0)
            r->tool_choice = TX_TOOL_CHOICE_REQUIRED;
        else
            return bad(err, tc_param, "tool_choice must be 'none', 'auto', 'required' or a named function.");
    } else if (json_is_object(tc)) {
        const char *name = tx_json_str(json_object_get(tc, "function"), "name");
        if (name == NULL)
            name = tx_json_str(tc, "name"); /* legacy function_call: {"name": ...} */
        if (name == NULL)
            return bad(err, tc_param, "A named tool_choice needs `function.name`.");
        r->tool_choice = TX_TOOL_CHOICE_NAMED;
        r->tool_choice_name = name;
    } else if (tc != NULL && !json_is_null(tc)) {
        return bad(err, tc_param, "tool_choice must be a string or an object.");
    }

    json_t *ptc = json_object_get(root, "parallel_tool_calls");
    if (json_is_boolean(ptc))
        r->parallel_tool_calls = json_is_true(ptc);
    else if (ptc != NULL && !json_is_null(ptc))
        return bad(err, "parallel_tool_calls", "parallel_tool_calls must be a boolean.");
    return 0;
}

static int
get_number(json_t *root, const char *key, double *ret, int *ret_has, tx_error_t *err)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return tx_fail(err, TX_ERR_INVALID_REQUEST, NULL, key, "`%s` must be a number.", key);
    *ret = json_number_value(v);
    *ret_has = 1;
    return 0;
}

/* A non-negative integer member into *ret (untouched when absent or null). */
static int
get_count(json_t *root, const char *key, int64_t *ret, tx_error_t *err)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return tx_fail(err, TX_ERR_INVALID_REQUEST, NULL, key, "`%s` must be a non-negative integer.", key);
    *ret = json_integer_value(v);
    return 0;
}

static int
decode_sampling(json_t *root, tx_request_t *r, tg_arena_t *a, tx_error_t *err)
{
    if (get_count(root, "max_tokens", &r->max_tokens, err) != 0 ||
        get_count(root, "max_completion_tokens", &r->max_tokens, err) != 0 ||
        get_count(root, "top_k", &r->top_k, err) != 0 ||
        get_number(root, "temperature", &r->temperature, &r->has_temperature, err) != 0 ||
        get_number(root, "top_p", &r->top_p, &r->has_top_p, err) != 0 ||
        get_number(root, "presence_penalty", &r->presence_penalty, &r->has_presence_penalty, err) != 0 ||
        get_number(root, "frequency_penalty", &r->frequency_penalty, &r->has_frequency_penalty, err) != 0)
        return -1;

    json_t *seed = json_object_get(root, "seed");
    if (json_is_integer(seed)) {
        r->seed = json_integer_value(seed);
        r->has_seed = 1;
    } else if (seed != NULL && !json_is_null(seed)) {
        return bad(err, "seed", "`seed` must be an integer.");
    }

    json_t *stop = json_object_get(root, "stop");
    if (json_is_string(stop)) {
        r->stop = tg_arena_alloc(a, sizeof(*r->stop));
        if (r->stop == NULL)
            return tx_oom(err);
        r->stop[0] = json_string_value(stop);
        r->n_stop = 1;
    } else if (json_is_array(stop)) {
        if (json_array_size(stop) > MAX_STOP)
            return bad(err, "stop", "`stop` may hold at most 4 sequences.");
        r->stop = tg_arena_alloc(a, (json_array_size(stop) + 1) * sizeof(*r->stop));
        if (r->stop == NULL)
            return tx_oom(err);
        size_t i;
        json_t *s;
        json_array_foreach(stop, i, s)
        {
            if (!json_is_string(s))
                return bad(err, "stop", "`stop` must be a string or an array of strings.");
            r->stop[r->n_stop++] = json_string_value(s);
        }
    } else if (stop != NULL && !json_is_null(stop)) {
        return bad(err, "stop", "`stop` must be a string or an array of strings.");
    }

    json_t *user = json_object_get(root, "user");
    if (json_is_string(user))
        r->user = json_string_value(user);

    json_t *n = json_object_get(root, "n");
    if (json_is_integer(n) && json_integer_value(n) > 1) /* the neutral response has one choice */
        return bad(err, "n", "n > 1 is not supported for this model's provider.");
    return 0;
}

static int
decode_format(json_t *root, tx_request_t *r, tx_error_t *err)
{
    json_t *rf = json_object_get(root, "response_format");
    if (rf == NULL || json_is_null(rf))
        return 0;
    const char *type = tx_json_str(rf, "type");
    if (type == NULL)
        return bad(err, "response_format", "response_format needs a string `type`.");
    if (strcmp(type, "text") == 0) {
        r->format = TX_FORMAT_TEXT;
    } else if (strcmp(type, "json_object") == 0) {
        r->format = TX_FORMAT_JSON_OBJECT;
    } else if (strcmp(type, "json_schema") == 0) {
        json_t *js = json_object_get(rf, "json_schema");
        if (!json_is_object(js))
            return bad(err, "response_format.json_schema", "A json_schema response_format needs `json_schema`.");
        json_t *schema = json_object_get(js, "schema");
        if (schema != NULL && !json_is_object(schema))
            return bad(err, "response_format.json_schema.schema", "`json_schema.schema` must be an object.");
        r->format = TX_FORMAT_JSON_SCHEMA;
        r->format_schema = schema;
        r->format_name = tx_json_str(js, "name");
    } else {
        return tx_fail(err, TX_ERR_INVALID_REQUEST, NULL, "response_format.type", "Unknown response_format type '%s'.",
                       type);
    }
    return 0;
}

/* Everything at the top level that the neutral request does not model. */
static int
collect_extra(json_t *root, tx_request_t *r, tg_arena_t *a, tx_error_t *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (modelled(key))
            continue;
        if (r->extra == NULL) {
            r->extra = json_object();
            if (r->extra == NULL || tx_arena_keep(a, r->extra) != 0)
                return tx_oom(err);
        }
        json_object_set(r->extra, key, v);
    }
    return 0;
}

static int
decode_prompt(json_t *root, tx_request_t *r, tg_arena_t *a, tx_error_t *err)
{
    json_t *prompt = json_object_get(root, "prompt");
    const char *text = NULL;
    if (json_is_string(prompt)) {
        text = json_string_value(prompt);
    } else if (json_is_array(prompt) && json_array_size(prompt) == 1 && json_is_string(json_array_get(prompt, 0))) {
        text = json_string_value(json_array_get(prompt, 0));
    } else if (json_is_array(prompt) && json_array_size(prompt) > 0 &&
               (json_is_integer(json_array_get(prompt, 0)) || json_is_array(json_array_get(prompt, 0)))) {
        return bad(err, "prompt", "token prompts are not supported for this provider");
    } else if (json_is_array(prompt) && json_array_size(prompt) > 1) {
        return bad(err, "prompt", "Only one prompt per request is supported for this provider.");
    } else {
        return bad(err, "prompt", "`prompt` must be a string.");
    }
    r->messages = tg_arena_alloc(a, sizeof(*r->messages));
    tx_part_t *p = tg_arena_alloc(a, sizeof(*p));
    if (r->messages == NULL || p == NULL)
        return tx_oom(err);
    p->kind = TX_PART_TEXT;
    p->text = text;
    r->messages[0].role = TX_ROLE_USER;
    r->messages[0].parts = p;
    r->messages[0].n_parts = 1;
    r->n_messages = 1;
    return 0;
}

static int
decode_embed(json_t *root, tx_request_t *r, tg_arena_t *a, tx_error_t *err)
{
    json_t *input = json_object_get(root, "input");
    if (json_is_string(input)) {
        r->inputs = tg_arena_alloc(a, sizeof(*r->inputs));
        if (r->inputs == NULL)
            return tx_oom(err);
        r->inputs[0] = json_string_value(input);
        r->n_inputs = 1;
    } else if (json_is_array(input) && json_array_size(input) > 0) {
        r->inputs = tg_arena_alloc(a, json_array_size(input) * sizeof(*r->inputs));
        if (r->inputs == NULL)
            return tx_oom(err);
        size_t i;
        json_t *s;
        json_array_foreach(input, i, s)
        {
            if (json_is_integer(s) || json_is_array(s))
                return bad(err, "input", "token inputs are not supported for this provider");
            if (!json_is_string(s))
                return bad(err, "input", "`input` must be a string or an array of strings.");
            r->inputs[r->n_inputs++] = json_string_value(s);
        }
    } else {
        return bad(err, "input", "`input` must be a non-empty string or array of strings.");
    }
    json_t *ef = json_object_get(root, "encoding_format");
    if (json_is_string(ef) && strcmp(json_string_value(ef), "base64") == 0)
        r->base64_embedding = 1;
    else if (ef != NULL && !json_is_null(ef) && !(json_is_string(ef) && strcmp(json_string_value(ef), "float") == 0))
        return bad(err, "encoding_format", "encoding_format must be 'float' or 'base64'.");
    if (get_count(root, "dimensions", &r->dimensions, err) != 0)
        return -1;
    json_t *user = json_object_get(root, "user");
    if (json_is_string(user))
        r->user = json_string_value(user);
    return 0;
}

static int
decode_request(tx_op_t op, const char *body, size_t len, tg_arena_t *a, tx_request_t *ret, tx_error_t *err)
{
    tx_request_t r;
    memset(&r, 0, sizeof(r));
    r.op = op;
    r.dialect = TX_DIALECT_OPENAI;
    r.max_tokens = -1;
    r.top_k = -1;
    r.parallel_tool_calls = -1;
    r.dimensions = -1;

    json_t *root = tx_parse_json(body, len, a, err);
    if (root == NULL)
        return -1;
    if (!json_is_object(root))
        return bad(err, NULL, "The request body must be a JSON object.");
    r.model = tx_json_str(root, "model");
    if (r.model == NULL || r.model[0] == '\0')
        return bad(err, "model", "You must provide a model parameter.");

    switch (op) {
    case TX_OP_CHAT:
    case TX_OP_COMPLETION: {
        json_t *stream = json_object_get(root, "stream");
        r.stream = json_is_true(stream);
        r.include_usage =
            r.stream && json_is_true(json_object_get(json_object_get(root, "stream_options"), "include_usage"));
        if (op == TX_OP_CHAT) {
            if (decode_messages(json_object_get(root, "messages"), &r, a, err) != 0 ||
                decode_tools(root, &r, a, err) != 0 || decode_format(root, &r, err) != 0)
                return -1;
        } else {
            if (decode_prompt(root, &r, a, err) != 0)
                return -1;
            r.max_tokens = 16; /* OpenAI's default for legacy completions */
        }
        if (decode_sampling(root, &r, a, err) != 0 || collect_extra(root, &r, a, err) != 0)
            return -1;
        break;
    }
    case TX_OP_EMBED:
        if (decode_embed(root, &r, a, err) != 0 || collect_extra(root, &r, a, err) != 0)
            return -1;
        break;
    default:
        return tx_fail(err, TX_ERR_NOT_FOUND, "unknown_url", NULL, "This operation does not exist in the OpenAI API.");
    }
    *ret = r;
    return 0;
}

/* ---------------------------------------------------------------- responses */

static const char *
finish_reason(tx_stop_t s, int chat)
{
    switch (s) {
    case TX_STOP_MAX_TOKENS:
        return "length";
    case TX_STOP_TOOL_USE:
        return chat ? "tool_calls" : "stop";
    case TX_STOP_CONTENT_FILTER:
        return "content_filter";
    default: /* natural end, stop sequence, pause, provider error: OpenAI has only "stop" for these */
        return "stop";
    }
}

/* "<prefix><id>" unless id already carries the prefix; id falls back to the request id. */
static const char *
make_id(const char *prefix, const char *id, const tx_request_t *r, tg_arena_t *a)
{
    if (id == NULL || id[0] == '\0')
        id = r->request_id != NULL ? r->request_id : "tollgate";
    if (strncmp(id, prefix, strlen(prefix)) == 0)
        return id;
    const char *s = tg_arena_sprintf(a, "%s%s", prefix, id);
    return s != NULL ? s : prefix;
}

static json_t *
usage_json(const tx_usage_t *u, int details)
{
    json_t *o = json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)u->input, "completion_tokens",
                          (json_int_t)u->output, "total_tokens", (json_int_t)(u->input + u->output));
    if (o != NULL && details) {
        json_object_set_new(o, "prompt_tokens_details",
                            json_pack("{s:I,s:i}", "cached_tokens", (json_int_t)u->cache_read, "audio_tokens", 0));
        json_object_set_new(o, "completion_tokens_details",
                            json_pack("{s:I,s:i,s:i,s:i}", "reasoning_tokens", (json_int_t)u->reasoning, "audio_tokens",
                                      0, "accepted_prediction_tokens", 0, "rejected_prediction_tokens", 0));
    }
    return o;
}

/* Joins the response's parts of one kind (arena); NULL when there are none. */
static const char *
join_parts(const tx_response_t *resp, tx_part_kind_t kind, tg_arena_t *a)
{
    tx_message_t m = {.role = TX_ROLE_ASSISTANT};
    size_t n = 0;
    for (size_t i = 0; i < resp->n_parts; i++)
        if (resp->parts[i].kind == kind && resp->parts[i].text != NULL)
            n++;
    if (n == 0)
        return NULL;
    tx_part_t *tp = tg_arena_alloc(a, n * sizeof(*tp));
    if (tp == NULL)
        return NULL;
    for (size_t i = 0; i < resp->n_parts; i++)
        if (resp->parts[i].kind == kind && resp->parts[i].text != NULL) {
            tp[m.n_parts].kind = TX_PART_TEXT;
            tp[m.n_parts++].text = resp->parts[i].text;
        }
    m.parts = tp;
    return tx_message_text(&m, a);
}

static int
dump_into(json_t *v, tg_buf_t *out)
{
    if (v == NULL)
        return -1;
    int rc = tx_dump_json_into(v, JSON_COMPACT, out);
    json_decref(v);
    return rc;
}

static int
encode_chat(const tx_request_t *r, const tx_response_t *resp, tg_arena_t *a, tg_buf_t *out)
{
    const char *text = join_parts(resp, TX_PART_TEXT, a), *reasoning = join_parts(resp, TX_PART_THINKING, a);
    json_t *msg = json_pack("{s:s,s:o,s:n}", "role", "assistant", "content",
                            text != NULL ? json_string(text) : json_null(), "refusal");
    if (msg == NULL)
        return -1;
    if (reasoning != NULL)
        json_object_set_new(msg, "reasoning_content", json_string(reasoning));
    json_t *calls = NULL;
    size_t k = 0;
    for (size_t i = 0; i < resp->n_parts; i++) {
        const tx_part_t *p = &resp->parts[i];
        if (p->kind != TX_PART_TOOL_CALL)
            continue;
        if (calls == NULL)
            calls = json_array();
        const char *id =
            p->id != NULL ? p->id : tg_arena_sprintf(a, "call_%s_%zu", r->request_id ? r->request_id : "tg", k);
        json_array_append_new(calls,
                              json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id ? id : "call", "type", "function", "function",
                                        "name", p->name ? p->name : "", "arguments", tx_args_text(p, a)));
        k++;
    }
    if (calls != NULL)
        json_object_set_new(msg, "tool_calls", calls);
    tx_stop_t stop = resp->stop == TX_STOP_UNSET && calls != NULL ? TX_STOP_TOOL_USE : resp->stop;
    json_t *v =
        json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:n,s:s}],s:o}", "id", make_id("chatcmpl-", resp->id, r, a), "object",
                  "chat.completion", "created", (json_int_t)(resp->created > 0 ? resp->created : r->now_unix), "model",
                  resp->model != NULL ? resp->model : (r->model ? r->model : ""), "choices", "index", 0, "message", msg,
                  "logprobs", "finish_reason", finish_reason(stop, 1), "usage", usage_json(&resp->usage, 1));
    return dump_into(v, out);
}

static int
encode_completion(const tx_request_t *r, const tx_response_t *resp, tg_arena_t *a, tg_buf_t *out)
{
    const char *text = join_parts(resp, TX_PART_TEXT, a);
    json_t *v = json_pack(
        "{s:s,s:s,s:I,s:s,s:[{s:s,s:i,s:n,s:s}],s:o}", "id", make_id("cmpl-", resp->id, r, a), "object",
        "text_completion", "created", (json_int_t)(resp->created > 0 ? resp->created : r->now_unix), "model",
        resp->model != NULL ? resp->model : (r->model ? r->model : ""), "choices", "text", text != NULL ? text : "",
        "index", 0, "logprobs", "finish_reason", finish_reason(resp->stop, 0), "usage", usage_json(&resp->usage, 0));
    return dump_into(v, out);
}

/* Embeddings are written by hand: jansson would print every float as a 17-digit double. */
static int
encode_embeddings(const tx_request_t *r, const tx_response_t *resp, tg_arena_t *a, tg_buf_t *out)
{
    if (tg_buf_appends(out, "{\"object\":\"list\",\"data\":[") != 0)
        return -1;
    for (size_t i = 0; i < resp->n_embeddings; i++) {
        const tx_embedding_t *e = &resp->embeddings[i];
        if (tg_buf_appendf(out, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i) != 0)
            return -1;
        if (r->base64_embedding) {
            const char *b64 = tx_embedding_base64(e, a);
            if (b64 == NULL || tg_buf_appendf(out, "\"%s\"}", b64) != 0)
                return -1;
            continue;
        }
        if (tg_buf_reserve(out, e->n * 18 + 4) != 0 || tg_buf_appends(out, "[") != 0)
            return -1;
        for (size_t j = 0; j < e->n; j++) {
            float f = e->values[j];
            if (tg_buf_appendf(out, "%s%.9g", j ? "," : "", isfinite(f) ? (double)f : 0.0) != 0)
                return -1;
        }
        if (tg_buf_appends(out, "]}") != 0)
            return -1;
    }
    if (tg_buf_appends(out, "],\"model\":") != 0)
        return -1;
    const char *model = resp->model != NULL ? resp->model : (r->model ? r->model : "");
    if (tg_buf_append_json_string(out, model, strlen(model)) != 0)
        return -1;
    return tg_buf_appendf(out, ",\"usage\":{\"prompt_tokens\":%" PRId64 ",\"total_tokens\":%" PRId64 "}}",
                          resp->usage.input, resp->usage.input + resp->usage.output);
}

static int
encode_response(const tx_request_t *r, const tx_response_t *resp, tg_arena_t *a, tg_buf_t *out)
{
    switch (r->op) {
    case TX_OP_CHAT:
        return encode_chat(r, resp, a, out);
    case TX_OP_COMPLETION:
        return encode_completion(r, resp, a, out);
    case TX_OP_EMBED:
        return encode_embeddings(r, resp, a, out);
    default:
        return -1;
    }
}

/* ---------------------------------------------------------------- errors */

/* The `type` of an error body: the gateway's documented ones (docs/api.md: authentication_error for 401,
 * upstream_error for 502), OpenAI's own for the rest: invalid_request_error for client errors (404
 * included), `requests` for rate limits (insufficient_quota for an exhausted quota), server_error. */
static const char *
error_type(int status, const char *code)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 402: /* a gateway budget is spent: what OpenAI says of an exhausted quota */
        return "insufficient_quota";
    case 403:
        return "permission_error";
    case 429:
        return strcmp(code, "insufficient_quota") == 0 ? "insufficient_quota" : "requests";
    case 502:
        return "upstream_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static int
append_error_object(const tx_error_t *e, int status, tg_buf_t *out)
{
    const char *code = e->code;
    if (code[0] == '\0' && status == 429)
        code = "rate_limit_exceeded";
    const char *msg = e->message[0] != '\0' ? e->message : "The request failed.";
    if (tg_buf_appends(out, "{\"error\":{\"message\":") != 0 || tg_buf_append_json_string(out, msg, strlen(msg)) != 0 ||
        tg_buf_appendf(out, ",\"type\":\"%s\",\"param\":", error_type(status, code)) != 0)
        return -1;
    if ((e->param[0] != '\0' ? tg_buf_append_json_string(out, e->param, strlen(e->param))
                             : tg_buf_appends(out, "null")) != 0 ||
        tg_buf_appends(out, ",\"code\":") != 0 ||
        (code[0] != '\0' ? tg_buf_append_json_string(out, code, strlen(code)) : tg_buf_appends(out, "null")) != 0)
        return -1;
    return tg_buf_appends(out, "}}");
}

static int
encode_error(const tx_error_t *e, const char *request_id, tg_buf_t *out)
{
    int status = tx_error_status(e);
    if (status == 529) /* Anthropic's overloaded: OpenAI clients know 503 */
        status = 503;
    append_error_object(e, status, out);
    return status;
}

/* ---------------------------------------------------------------- streams */

struct tx_stream_state {
    int started, stop_sent, ended;
    int n_tools;
    tx_stop_t stop;
    tx_usage_t usage;
    int64_t created;
    char id[128];
    char model[192];
    int16_t tool_of_block[MAX_TOOL_BLOCKS]; /* neutral block index -> tool_calls[].index + 1; 0: none */
};

static int
chunk_open(tx_stream_state_t *st, const tx_request_t *r, tg_buf_t *out)
{
    int chat = r->op != TX_OP_COMPLETION;
    if (tg_buf_appends(out, "data: {\"id\":") != 0 || tg_buf_append_json_string(out, st->id, strlen(st->id)) != 0 ||
        tg_buf_appendf(out, ",\"object\":\"%s\",\"created\":%" PRId64 ",\"model\":",
                       chat ? "chat.completion.chunk" : "text_completion", st->created) != 0 ||
        tg_buf_append_json_string(out, st->model, strlen(st->model)) != 0)
        return -1;
    return tg_buf_appends(out, ",\"choices\":[");
}

static int
chunk_close(tx_stream_state_t *st, const tx_request_t *r, tg_buf_t *out)
{
    return tg_buf_appends(out, r->include_usage ? "],\"usage\":null}\n\n" : "]}\n\n");
}

/* One chunk whose single choice is {"index":0,"delta":{<delta>},...} (chat) or {"text":...} (completion).
 * delta_json is the inside of the delta object, or for completions the JSON string of the text. */
static int
chunk_choice(tx_stream_state_t *st, const tx_request_t *r, tg_buf_t *out, const char *delta, const char *finish)
{
    if (chunk_open(st, r, out) != 0)
        return -1;
    int rc;
    if (r->op == TX_OP_COMPLETION)
        rc = tg_buf_appendf(out, "{\"text\":%s,\"index\":0,\"logprobs\":null,\"finish_reason\":", delta);
    else
        rc = tg_buf_appendf(out, "{\"index\":0,\"delta\":{%s},\"logprobs\":null,\"finish_reason\":", delta);
    if (rc != 0)
        return -1;
    rc = finish != NULL ? tg_buf_appendf(out, "\"%s\"}", finish) : tg_buf_appends(out, "null}");
    return rc != 0 ? -1 : chunk_close(st, r, out);
}

static void
copy_str(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static int
ensure_started(tx_stream_state_t *st, const tx_request_t *r, const tx_event_t *ev, tg_buf_t *out)
{
    if (st->started)
        return 0;
    st->started = 1;
    int chat = r->op != TX_OP_COMPLETION;
    const char *base = ev != NULL && ev->id != NULL && ev->id[0] != '\0' ? ev->id
                       : r->request_id != NULL                           ? r->request_id
                                                                         : "tollgate";
    const char *prefix = chat ? "chatcmpl-" : "cmpl-";
    if (strncmp(base, prefix, strlen(prefix)) == 0)
        copy_str(st->id, sizeof(st->id), base);
    else
        snprintf(st->id, sizeof(st->id), "%s%s", prefix, base);
    const char *model = ev != NULL && ev->model != NULL && ev->model[0] != '\0' && strlen(ev->model) < sizeof(st->model)
                            ? ev->model
                            : (r->model != NULL ? r->model : "");
    copy_str(st->model, sizeof(st->model), model);
    st->created = r->now_unix;
    if (!chat)
        return 0; /* text completions have no role chunk */
    return chunk_choice(st, r, out, "\"role\":\"assistant\",\"content\":\"\",\"refusal\":null", NULL);
}

/* A delta holding one string member, e.g. "content":"..." (chat) or the text (completion). */
static int
text_delta(tx_stream_state_t *st, const tx_request_t *r, tg_buf_t *out, const char *member, const char *s, size_t n)
{
    tg_buf_t tmp = {0};
    int rc = -1;
    if (r->op == TX_OP_COMPLETION) {
        if (tg_buf_append_json_string(&tmp, s, n) != 0 || tg_buf_append(&tmp, "", 1) != 0)
            goto out;
    } else if (tg_buf_appendf(&tmp, "\"%s\":", member) != 0 || tg_buf_append_json_string(&tmp, s, n) != 0 ||
               tg_buf_append(&tmp, "", 1) != 0) {
        goto out;
    }
    rc = chunk_choice(st, r, out, tmp.base, NULL);
out:
    tg_buf_free(&tmp);
    return rc;
}

static int
tool_index(tx_stream_state_t *st, int block)
{
    if (block >= 0 && block < MAX_TOOL_BLOCKS && st->tool_of_block[block] > 0)
        return st->tool_of_block[block] - 1;
    return st->n_tools > 0 ? st->n_tools - 1 : 0; /* beyond the table: the latest call */
}

static int
tool_start(tx_stream_state_t *st, const tx_request_t *r, const tx_event_t *ev, tg_buf_t *out)
{
    int k = st->n_tools++;
    if (ev->index >= 0 && ev->index < MAX_TOOL_BLOCKS)
        st->tool_of_block[ev->index] = (int16_t)(k + 1 > INT16_MAX ? INT16_MAX : k + 1);
    char made[160];
    const char *id = ev->id;
    if (id == NULL || id[0] == '\0') {
        snprintf(made, sizeof(made), "call_%s_%d", r->request_id != NULL ? r->request_id : "tg", k);
        id = made;
    }
    const char *name = ev->name != NULL ? ev->name : "";
    tg_buf_t tmp = {0};
    int rc = -1;
    if (tg_buf_appendf(&tmp, "\"tool_calls\":[{\"index\":%d,\"id\":", k) == 0 &&
        tg_buf_append_json_string(&tmp, id, strlen(id)) == 0 &&
        tg_buf_appends(&tmp, ",\"type\":\"function\",\"function\":{\"name\":") == 0 &&
        tg_buf_append_json_string(&tmp, name, strlen(name)) == 0 &&
        tg_buf_append(&tmp, ",\"arguments\":\"\"}}]", 19) == 0)
        rc = chunk_choice(st, r, out, tmp.base, NULL);
    tg_buf_free(&tmp);
    return rc;
}

static int
tool_args(tx_stream_state_t *st, const tx_request_t *r, const tx_event_t *ev, tg_buf_t *out)
{
    if (ev->text == NULL || ev->text_len == 0)
        return 0;
    tg_buf_t tmp = {0};
    int rc = -1;
    if (tg_buf_appendf(&tmp, "\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":", tool_index(st, ev->index)) ==
            0 &&
        tg_buf_append_json_string(&tmp, ev->text, ev->text_len) == 0 && tg_buf_append(&tmp, "}}]", 4) == 0)
        rc = chunk_choice(st, r, out, tmp.base, NULL);
    tg_buf_free(&tmp);
    return rc;
}

static int
send_stop(tx_stream_state_t *st, const tx_request_t *r, tg_buf_t *out)
{
    if (st->stop_sent)
        return 0;
    st->stop_sent = 1;
    tx_stop_t s = st->stop == TX_STOP_UNSET && st->n_tools > 0 ? TX_STOP_TOOL_USE : st->stop;
    return chunk_choice(st, r, out, r->op == TX_OP_COMPLETION ? "\"\"" : "",
                        finish_reason(s, r->op != TX_OP_COMPLETION));
}

static int
stream_event(tx_stream_state_t *st, const tx_request_t *r, const tx_event_t *ev, tg_buf_t *out)
{
    if (st->ended)
        return 0;
    if (ev->kind == TX_EV_ERROR) {
        /* OpenAI's in-stream error: a data event with a top-level error object, and no [DONE] */
        st->ended = 1;
        tx_error_t fallback;
        const tx_error_t *e = ev->error;
        if (e == NULL) {
            tx_fail(&fallback, TX_ERR_UPSTREAM, "upstream_error", NULL, "The provider's stream failed.");
            e = &fallback;
        }
        int status = tx_error_status(e);
        if (tg_buf_appends(out, "data: ") != 0 || append_error_object(e, status == 529 ? 503 : status, out) != 0)
            return -1;
        return tg_buf_appends(out, "\n\n");
    }
    if (ensure_started(st, r, ev->kind == TX_EV_START ? ev : NULL, out) != 0)
        return -1;
    switch (ev->kind) {
    case TX_EV_TEXT:
        if (ev->text == NULL || ev->text_len == 0)
            return 0;
        return text_delta(st, r, out, "content", ev->text, ev->text_len);
    case TX_EV_THINKING:
        if (ev->text == NULL || ev->text_len == 0 || r->op == TX_OP_COMPLETION)
            return 0;
        return text_delta(st, r, out, "reasoning_content", ev->text, ev->text_len);
    case TX_EV_TOOL_START:
        return r->op == TX_OP_COMPLETION ? 0 : tool_start(st, r, ev, out);
    case TX_EV_TOOL_ARGS:
        return r->op == TX_OP_COMPLETION ? 0 : tool_args(st, r, ev, out);
    case TX_EV_USAGE:
        st->usage = ev->usage;
        return 0;
    case TX_EV_STOP:
        st->stop = ev->stop;
        return send_stop(st, r, out);
    case TX_EV_END: {
        st->ended = 1;
        if (send_stop(st, r, out) != 0)
            return -1;
        if (r->include_usage) {
            json_t *u = usage_json(&st->usage, r->op != TX_OP_COMPLETION);
            tg_buf_t tmp = {0};
            int rc = dump_into(u, &tmp) == 0 && tg_buf_append(&tmp, "", 1) == 0 ? 0 : -1;
            if (rc == 0)
                rc = chunk_open(st, r, out) == 0 && tg_buf_appendf(out, "],\"usage\":%s}\n\n", tmp.base) == 0 ? 0 : -1;
            tg_buf_free(&tmp);
            if (rc != 0)
                return -1;
        }
        return tg_buf_appends(out, "data: [DONE]\n\n");
    }
    default: /* START (handled above), BLOCK_END */
        return 0;
    }
}

const tx_dialect_ops_t tx_openai_dialect = {
    .name = "openai",
    .stream_state_size = sizeof(tx_stream_state_t),
    .decode_request = decode_request,
    .encode_response = encode_response,
    .encode_error = encode_error,
    .stream_content_type = "text/event-stream",
    .stream_event = stream_event,
};
