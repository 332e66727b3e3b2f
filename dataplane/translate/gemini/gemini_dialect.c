/*
 * Gemini's generateContent API as a client dialect: what @google/genai (and the older google SDKs)
 * speak at /genai/v1beta/models/{model}:generateContent, :streamGenerateContent?alt=sse, :embedContent,
 * :batchEmbedContents and :countTokens.
 *
 * The model and the operation come from the URL: decode_request reads only the body, and the pipeline
 * sets r->model and r->stream after it returns. Gemini's shapes map onto the neutral ones closely; the
 * differences handled here are that a user turn carries tool results (functionResponse parts, which
 * become TX_ROLE_TOOL messages), that call ids are optional (we invent deterministic ones and pair
 * results to calls by name and order), that schemas use Gemini's upper-case OpenAPI subset, and that a
 * streamed functionCall must reach the client whole: the stream encoder accumulates one call's argument
 * fragments (capped at TX_GEMINI_MAX_ARGS) and emits the call at its block end.
 *
 * Members of the body we do not model (safetySettings, cachedContent, thinkingConfig, built-in tools...)
 * are kept in r->extra so that a Gemini or Vertex upstream can forward them. A batchEmbedContents body
 * keeps its "requests" array there, which is how encode_response knows to answer in the batch shape.
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "translate/gemini/gemini_internal.h"

/* ---------------------------------------------------------------- request decoding */

/* A tool call seen in the history, for pairing id-less functionResponse parts with it. */
struct call {
    const char *name, *id;
    int answered;
};

struct dec {
    tg_arena_t *a;
    tx_error_t *err;
    struct call *calls;
    size_t n_calls, cap_calls;
};

static int
keep(tg_arena_t *a, json_t *v)
{
    return v != NULL && tx_arena_keep(a, v) == 0 ? 0 : -1;
}

/* The id of the earliest unanswered call named name, or NULL. */
static const char *
pair_call(struct dec *d, const char *name)
{
    for (size_t i = 0; i < d->n_calls; i++)
        if (!d->calls[i].answered && strcmp(d->calls[i].name, name) == 0) {
            d->calls[i].answered = 1;
            return d->calls[i].id;
        }
    return NULL;
}

static void
mark_answered(struct dec *d, const char *id)
{
    for (size_t i = 0; i < d->n_calls; i++)
        if (strcmp(d->calls[i].id, id) == 0)
            d->calls[i].answered = 1;
}

/* One part of contents[ci].parts[pi]; returns 0 with ret->kind set, 1 to skip the part, -1 on error. */
static int
decode_part(struct dec *d, const json_t *p, size_t ci, size_t pi, tx_part_t *ret)
{
    char param[64];
    snprintf(param, sizeof(param), "contents[%zu].parts[%zu]", ci, pi);
    if (!json_is_object(p))
        return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_part", param, "Each part must be an object.");
    const char *sig = tx_json_str(p, "thoughtSignature");
    json_t *v;
    memset(ret, 0, sizeof(*ret));
    ret->signature = sig;
    if ((v = json_object_get(p, "text")) != NULL) {
        if (!json_is_string(v))
            return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_part", param, "A part's text must be a string.");
        ret->kind = json_is_true(json_object_get(p, "thought")) ? TX_PART_THINKING : TX_PART_TEXT;
        ret->text = json_string_value(v);
        return 0;
    }
    if ((v = json_object_get(p, "inlineData")) != NULL) {
        /* any media type: a Gemini upstream takes PDFs and audio too; others refuse what they cannot read */
        ret->kind = TX_PART_IMAGE;
        ret->media_type = tx_json_str(v, "mimeType");
        ret->data = tx_json_str(v, "data");
        if (ret->media_type == NULL || ret->data == NULL)
            return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_part", param,
                           "inlineData needs a mimeType and base64 data.");
        return 0;
    }
    if ((v = json_object_get(p, "fileData")) != NULL) {
        ret->kind = TX_PART_IMAGE;
        ret->media_type = tx_json_str(v, "mimeType");
        ret->url = tx_json_str(v, "fileUri");
        if (ret->url == NULL)
            return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_part", param, "fileData needs a fileUri.");
        return 0;
    }
    if ((v = json_object_get(p, "functionCall")) != NULL) {
        ret->kind = TX_PART_TOOL_CALL;
        ret->name = tx_json_str(v, "name");
        if (ret->name == NULL)
            return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_function_call", param,
                           "functionCall needs a name.");
        json_t *args = json_object_get(v, "args");
        if (args != NULL && !json_is_object(args) && !json_is_null(args))
            return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_function_call", param,
                           "functionCall.args must be an object.");
        if (json_is_object(args)) {
            ret->args = args;
        } else {
            ret->args = json_object();
            if (keep(d->a, ret->args) != 0)
                return tx_oom(d->err);
        }
        ret->id = tx_json_str(v, "id");
        if (ret->id == NULL && (ret->id = tg_arena_sprintf(d->a, "call_%zu_%zu", ci, pi)) == NULL)
            return tx_oom(d->err);
        if (d->n_calls == d->cap_calls) {
            size_t cap = d->cap_calls ? 2 * d->cap_calls : 8;
            struct call *c = tg_arena_alloc(d->a, cap * sizeof(*c));
            if (c == NULL)
                return tx_oom(d->err);
            if (d->n_calls)
                memcpy(c, d->calls, d->n_calls * sizeof(*c));
            d->calls = c;
            d->cap_calls = cap;
        }
        d->calls[d->n_calls++] = (struct call){.name = ret->name, .id = ret->id};
        return 0;
    }
    if ((v = json_object_get(p, "functionResponse")) != NULL) {
        ret->kind = TX_PART_TOOL_RESULT;
        ret->name = tx_json_str(v, "name");
        if (ret->name == NULL)
            return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_function_response", param,
                           "functionResponse needs a name.");
        ret->id = tx_json_str(v, "id");
        if (ret->id != NULL)
            mark_answered(d, ret->id);
        else if ((ret->id = pair_call(d, ret->name)) == NULL &&
                 (ret->id = tg_arena_sprintf(d->a, "call_%zu_%zu", ci, pi)) == NULL)
            return tx_oom(d->err);
        json_t *resp = json_object_get(v, "response");
        if (resp == NULL) {
            ret->text = "{}";
        } else if ((ret->text = tx_dump_json(resp, d->a, NULL)) == NULL) {
            return tx_oom(d->err);
        }
        return 0;
    }
    return 1; /* executableCode, codeExecutionResult, a bare thoughtSignature, parts added later */
}

/* contents[] -> messages. A user turn's functionResponse parts become TX_ROLE_TOOL messages, in order. */
static int
decode_contents(struct dec *d, const json_t *contents, tx_request_t *ret)
{
    if (!json_is_array(contents) || json_array_size(contents) == 0)
        return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_contents", "contents",
                       "contents must be a non-empty array.");
    size_t total = 0, ci;
    json_t *c;
    json_array_foreach(contents, ci, c)
    {
        if (!json_is_object(c))
            return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_contents", "contents",
                           "Each content must be an object with a role and parts.");
        json_t *parts = json_object_get(c, "parts");
        if (parts != NULL && !json_is_array(parts))
            return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_contents", "contents",
                           "contents[%zu].parts must be an array.", ci);
        total += json_array_size(parts);
    }
    /* a content splits into at most one message per part */
    tx_message_t *msgs = tg_arena_alloc(d->a, (total + 1) * sizeof(*msgs));
    tx_part_t *parts = tg_arena_alloc(d->a, (total + 1) * sizeof(*parts));
    if (msgs == NULL || parts == NULL)
        return tx_oom(d->err);
    size_t n_msgs = 0, n_parts = 0;
    json_array_foreach(contents, ci, c)
    {
        const char *role = tx_json_str(c, "role");
        tx_role_t base;
        if (role == NULL || strcmp(role, "user") == 0 || strcmp(role, "function") == 0)
            base = TX_ROLE_USER;
        else if (strcmp(role, "model") == 0)
            base = TX_ROLE_ASSISTANT;
        else
            return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_role", "contents",
                           "contents[%zu].role must be \"user\" or \"model\", not \"%s\".", ci, role);
        size_t pi, first_msg = n_msgs;
        json_t *p;
        json_array_foreach(json_object_get(c, "parts"), pi, p)
        {
            tx_part_t *part = &parts[n_parts];
            int rc = decode_part(d, p, ci, pi, part);
            if (rc < 0)
                return -1;
            if (rc > 0)
                continue;
            tx_role_t role_of_part = base == TX_ROLE_USER && part->kind == TX_PART_TOOL_RESULT ? TX_ROLE_TOOL : base;
            /* a new message for a new content, or where the role changes within one */
            if (n_msgs == first_msg || msgs[n_msgs - 1].role != role_of_part)
                msgs[n_msgs++] = (tx_message_t){.role = role_of_part, .parts = part};
            msgs[n_msgs - 1].n_parts++;
            n_parts++;
        }
    }
    ret->messages = msgs;
    ret->n_messages = n_msgs;
    return 0;
}

static int
decode_system(struct dec *d, const json_t *si, tx_request_t *ret)
{
    if (si == NULL || json_is_null(si))
        return 0;
    if (json_is_string(si)) {
        ret->system = json_string_value(si);
        return 0;
    }
    json_t *parts = json_object_get(si, "parts");
    if (!json_is_object(si) || !json_is_array(parts))
        return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_system_instruction", "systemInstruction",
                       "systemInstruction must be a content with text parts.");
    tg_buf_t b = {0};
    size_t i;
    json_t *p;
    int n = 0;
    json_array_foreach(parts, i, p)
    {
        const char *t = tx_json_str(p, "text");
        if (t == NULL)
            continue;
        if ((n++ > 0 && tg_buf_appends(&b, "\n\n") != 0) || tg_buf_appends(&b, t) != 0) {
            tg_buf_free(&b);
            return tx_oom(d->err);
        }
    }
    if (n > 0) {
        ret->system = tg_arena_strndup(d->a, b.base, b.len);
        tg_buf_free(&b);
        if (ret->system == NULL)
            return tx_oom(d->err);
    }
    return 0;
}

/* tools[].functionDeclarations -> tools; other tool kinds (googleSearch, codeExecution...) go to extra. */
static int
decode_tools(struct dec *d, const json_t *tools, tx_request_t *ret, json_t *extra)
{
    if (tools == NULL)
        return 0;
    if (!json_is_array(tools))
        return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_tools", "tools", "tools must be an array.");
    size_t n = 0, i, j;
    json_t *t, *fd;
    json_array_foreach(tools, i, t) n += json_array_size(json_object_get(t, "functionDeclarations"));
    ret->tools = tg_arena_alloc(d->a, (n + 1) * sizeof(*ret->tools));
    json_t *others = json_array();
    if (ret->tools == NULL || keep(d->a, others) != 0)
        return tx_oom(d->err);
    json_array_foreach(tools, i, t)
    {
        json_t *decls = json_object_get(t, "functionDeclarations");
        if (decls == NULL) {
            json_array_append(others, t);
            continue;
        }
        json_array_foreach(decls, j, fd)
        {
            tx_tool_t *tool = &ret->tools[ret->n_tools];
            tool->name = tx_json_str(fd, "name");
            if (tool->name == NULL)
                return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_tools", "tools",
                               "tools[%zu].functionDeclarations[%zu] needs a name.", i, j);
            tool->description = tx_json_str(fd, "description");
            json_t *js = json_object_get(fd, "parametersJsonSchema");
            json_t *gs = json_object_get(fd, "parameters");
            if (json_is_object(js)) {
                tool->parameters = js;
            } else if (json_is_object(gs)) {
                if ((tool->parameters = tx_gemini_schema_to_json(gs)) == NULL)
                    return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_schema", "tools",
                                   "The parameters of %s nest too deeply.", tool->name);
                if (keep(d->a, tool->parameters) != 0)
                    return tx_oom(d->err);
            }
            ret->n_tools++;
        }
    }
    if (json_array_size(others) > 0)
        json_object_set(extra, "tools", others);
    return 0;
}

static int
decode_tool_config(struct dec *d, const json_t *tc, tx_request_t *ret)
{
    json_t *fcc = json_object_get(tc, "functionCallingConfig");
    const char *mode = tx_json_str(fcc, "mode");
    if (mode == NULL)
        return 0;
    json_t *allowed = json_object_get(fcc, "allowedFunctionNames");
    if (strcmp(mode, "AUTO") == 0 || strcmp(mode, "VALIDATED") == 0 || strcmp(mode, "MODE_UNSPECIFIED") == 0) {
        ret->tool_choice = TX_TOOL_CHOICE_AUTO;
    } else if (strcmp(mode, "NONE") == 0) {
        ret->tool_choice = TX_TOOL_CHOICE_NONE;
    } else if (strcmp(mode, "ANY") == 0) {
        /* one allowed name is a named choice; several cannot be said neutrally: any tool */
        if (json_array_size(allowed) == 1 && json_is_string(json_array_get(allowed, 0))) {
            ret->tool_choice = TX_TOOL_CHOICE_NAMED;
            ret->tool_choice_name = json_string_value(json_array_get(allowed, 0));
        } else {
            ret->tool_choice = TX_TOOL_CHOICE_REQUIRED;
        }
    } else {
        return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_tool_config", "toolConfig",
                       "functionCallingConfig.mode must be AUTO, ANY, NONE or VALIDATED.");
    }
    return 0;
}

static int
get_number(struct dec *d, const json_t *gc, const char *key, double *ret, int *ret_has)
{
    json_t *v = json_object_get(gc, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_generation_config", key,
                       "generationConfig.%s must be a number.", key);
    *ret = json_number_value(v);
    *ret_has = 1;
    return 0;
}

static int
get_int(struct dec *d, const json_t *gc, const char *key, int64_t *ret)
{
    json_t *v = json_object_get(gc, key);
    if (v == NULL || json_is_null(v))
        return 0;
    double x = json_number_value(v);
    /* JavaScript clients may send 40.0: accept whole numbers written as reals */
    if (!json_is_number(v) || x != floor(x) || x < 0 || x > 9.0e15)
        return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_generation_config", key,
                       "generationConfig.%s must be a non-negative integer.", key);
    *ret = (int64_t)x;
    return 0;
}

/* Members of generationConfig the neutral request carries; the others stay in extra.generationConfig. */
static const char *const GC_MODELLED[] = {
    "maxOutputTokens", "temperature", "topP", "topK", "stopSequences", "seed", "presencePenalty", "frequencyPenalty",
};

static int
decode_generation_config(struct dec *d, const json_t *gc, tx_request_t *ret, json_t *extra)
{
    if (gc == NULL || json_is_null(gc))
        return 0;
    if (!json_is_object(gc))
        return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_generation_config", "generationConfig",
                       "generationConfig must be an object.");
    if (get_int(d, gc, "maxOutputTokens", &ret->max_tokens) != 0 ||
        get_number(d, gc, "temperature", &ret->temperature, &ret->has_temperature) != 0 ||
        get_number(d, gc, "topP", &ret->top_p, &ret->has_top_p) != 0 || get_int(d, gc, "topK", &ret->top_k) != 0 ||
        get_number(d, gc, "presencePenalty", &ret->presence_penalty, &ret->has_presence_penalty) != 0 ||
        get_number(d, gc, "frequencyPenalty", &ret->frequency_penalty, &ret->has_frequency_penalty) != 0)
        return -1;
    json_t *seed = json_object_get(gc, "seed");
    if (seed != NULL && !json_is_null(seed)) {
        if (!json_is_integer(seed))
            return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_generation_config", "seed",
                           "generationConfig.seed must be an integer.");
        ret->seed = json_integer_value(seed);
        ret->has_seed = 1;
    }
    json_t *stop = json_object_get(gc, "stopSequences");
    if (stop != NULL && !json_is_null(stop)) {
        if (!json_is_array(stop))
            return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_generation_config", "stopSequences",
                           "generationConfig.stopSequences must be an array of strings.");
        ret->stop = tg_arena_alloc(d->a, (json_array_size(stop) + 1) * sizeof(*ret->stop));
        if (ret->stop == NULL)
            return tx_oom(d->err);
        size_t i;
        json_t *s;
        json_array_foreach(stop, i, s)
        {
            if (!json_is_string(s))
                return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_generation_config", "stopSequences",
                               "generationConfig.stopSequences must be an array of strings.");
            ret->stop[ret->n_stop++] = json_string_value(s);
        }
    }
    json_t *cc = json_object_get(gc, "candidateCount");
    if (json_is_integer(cc) && json_integer_value(cc) > 1)
        return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "unsupported_parameter", "candidateCount",
                       "This gateway returns one candidate: candidateCount must be 1.");

    const char *mime = tx_json_str(gc, "responseMimeType");
    if (mime != NULL && strcmp(mime, "application/json") == 0) {
        json_t *js = json_object_get(gc, "responseJsonSchema");
        json_t *gs = json_object_get(gc, "responseSchema");
        ret->format = TX_FORMAT_JSON_OBJECT;
        if (json_is_object(js)) {
            ret->format = TX_FORMAT_JSON_SCHEMA;
            ret->format_schema = js;
        } else if (json_is_object(gs)) {
            ret->format = TX_FORMAT_JSON_SCHEMA;
            if ((ret->format_schema = tx_gemini_schema_to_json(gs)) == NULL)
                return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_schema", "responseSchema",
                               "responseSchema nests too deeply.");
            if (keep(d->a, ret->format_schema) != 0)
                return tx_oom(d->err);
        }
    }

    json_t *rest = json_deep_copy(gc);
    if (keep(d->a, rest) != 0)
        return tx_oom(d->err);
    for (size_t i = 0; i < sizeof(GC_MODELLED) / sizeof(GC_MODELLED[0]); i++)
        json_object_del(rest, GC_MODELLED[i]);
    if (ret->format != TX_FORMAT_TEXT) { /* modelled; text/x.enum and its schema stay Gemini's own */
        json_object_del(rest, "responseMimeType");
        json_object_del(rest, "responseSchema");
        json_object_del(rest, "responseJsonSchema");
    }
    if (json_object_size(rest) > 0)
        json_object_set(extra, "generationConfig", rest);
    return 0;
}

/* A generateContent body (or countTokens' generateContentRequest). */
static int
decode_generate(struct dec *d, const json_t *body, tx_request_t *ret)
{
    json_t *extra = json_object();
    if (keep(d->a, extra) != 0)
        return tx_oom(d->err);
    if (decode_contents(d, json_object_get(body, "contents"), ret) != 0 ||
        decode_system(d, json_object_get(body, "systemInstruction"), ret) != 0 ||
        decode_tools(d, json_object_get(body, "tools"), ret, extra) != 0 ||
        decode_tool_config(d, json_object_get(body, "toolConfig"), ret) != 0 ||
        decode_generation_config(d, json_object_get(body, "generationConfig"), ret, extra) != 0)
        return -1;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        if (strcmp(key, "contents") != 0 && strcmp(key, "systemInstruction") != 0 && strcmp(key, "tools") != 0 &&
            strcmp(key, "toolConfig") != 0 && strcmp(key, "generationConfig") != 0 && strcmp(key, "model") != 0)
            json_object_set(extra, key, v);
    }
    ret->extra = json_object_size(extra) > 0 ? extra : NULL;
    return 0;
}

/* The text of an embedContent content ({"parts":[{"text"}]}); parts are joined with "\n". */
static const char *
content_text(struct dec *d, const json_t *content, const char *param)
{
    json_t *parts = json_object_get(content, "parts");
    if (!json_is_array(parts)) {
        tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_content", param, "%s must be a content with text parts.",
                param);
        return NULL;
    }
    tg_buf_t b = {0};
    size_t i;
    json_t *p;
    json_array_foreach(parts, i, p)
    {
        const char *t = tx_json_str(p, "text");
        if (t != NULL && ((b.len > 0 && tg_buf_appends(&b, "\n") != 0) || tg_buf_appends(&b, t) != 0)) {
            tg_buf_free(&b);
            tx_oom(d->err);
            return NULL;
        }
    }
    char *s = tg_arena_strndup(d->a, b.base ? b.base : "", b.len);
    tg_buf_free(&b);
    if (s == NULL)
        tx_oom(d->err);
    return s;
}

static int
decode_embed(struct dec *d, const json_t *body, tx_request_t *ret)
{
    json_t *requests = json_object_get(body, "requests");
    const json_t *first = body;
    if (requests != NULL) {
        if (!json_is_array(requests) || json_array_size(requests) == 0)
            return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_requests", "requests",
                           "requests must be a non-empty array.");
        ret->inputs = tg_arena_alloc(d->a, json_array_size(requests) * sizeof(*ret->inputs));
        if (ret->inputs == NULL)
            return tx_oom(d->err);
        size_t i;
        json_t *q;
        json_array_foreach(requests, i, q)
        {
            char param[48];
            snprintf(param, sizeof(param), "requests[%zu].content", i);
            if ((ret->inputs[ret->n_inputs++] = content_text(d, json_object_get(q, "content"), param)) == NULL)
                return -1;
        }
        first = json_array_get(requests, 0);
        /* the batch shape is answered in kind: encode_response looks for this */
        json_t *extra = json_pack("{sO}", "requests", requests);
        if (keep(d->a, extra) != 0)
            return tx_oom(d->err);
        ret->extra = extra;
    } else {
        ret->inputs = tg_arena_alloc(d->a, sizeof(*ret->inputs));
        if (ret->inputs == NULL)
            return tx_oom(d->err);
        if ((ret->inputs[0] = content_text(d, json_object_get(body, "content"), "content")) == NULL)
            return -1;
        ret->n_inputs = 1;
    }
    ret->task_type = tx_json_str(first, "taskType");
    json_t *dims = json_object_get(first, "outputDimensionality");
    if (dims != NULL && !json_is_null(dims)) {
        if (!json_is_integer(dims) || json_integer_value(dims) <= 0)
            return tx_fail(d->err, TX_ERR_INVALID_REQUEST, "invalid_output_dimensionality", "outputDimensionality",
                           "outputDimensionality must be a positive integer.");
        ret->dimensions = json_integer_value(dims);
    }
    return 0;
}

static int
decode_request(tx_op_t op, const char *body, size_t len, tg_arena_t *a, tx_request_t *ret, tx_error_t *err)
{
    memset(ret, 0, sizeof(*ret));
    ret->op = op;
    ret->dialect = TX_DIALECT_GEMINI;
    ret->max_tokens = -1;
    ret->top_k = -1;
    ret->parallel_tool_calls = -1;
    ret->dimensions = -1;
    json_t *v = tx_parse_json(body, len, a, err);
    if (v == NULL)
        return -1;
    if (!json_is_object(v))
        return tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_request", NULL, "The request body must be a JSON object.");
    struct dec d = {.a = a, .err = err};
    switch (op) {
    case TX_OP_EMBED:
        return decode_embed(&d, v, ret);
    case TX_OP_COUNT_TOKENS: {
        json_t *inner = json_object_get(v, "generateContentRequest");
        return decode_generate(&d, json_is_object(inner) ? inner : v, ret);
    }
    default:
        return decode_generate(&d, v, ret);
    }
}

/* ---------------------------------------------------------------- responses */

static json_t *
usage_json(const tx_usage_t *u)
{
    int64_t candidates = u->output - u->reasoning;
    json_t *um =
        json_pack("{sIsIsI}", "promptTokenCount", (json_int_t)u->input, "candidatesTokenCount",
                  (json_int_t)(candidates > 0 ? candidates : 0), "totalTokenCount", (json_int_t)(u->input + u->output));
    if (u->cache_read > 0)
        json_object_set_new(um, "cachedContentTokenCount", json_integer(u->cache_read));
    if (u->reasoning > 0)
        json_object_set_new(um, "thoughtsTokenCount", json_integer(u->reasoning));
    return um;
}

/* One response part in Gemini's spelling, or NULL for a part a Gemini client has no use for. */
static json_t *
part_json(const tx_part_t *p)
{
    json_t *out;
    switch (p->kind) {
    case TX_PART_TEXT:
        out = json_pack("{ss}", "text", p->text ? p->text : "");
        break;
    case TX_PART_THINKING:
        out = json_pack("{sssb}", "text", p->text ? p->text : "", "thought", 1);
        break;
    case TX_PART_TOOL_CALL: {
        json_t *fc = json_pack("{ssso}", "name", p->name ? p->name : "", "args",
                               json_is_object(p->args) ? json_incref(p->args) : json_object());
        if (p->id != NULL)
            json_object_set_new(fc, "id", json_string(p->id));
        out = json_pack("{so}", "functionCall", fc);
        break;
    }
    default:
        return NULL;
    }
    if (out != NULL && p->signature != NULL)
        json_object_set_new(out, "thoughtSignature", json_string(p->signature));
    return out;
}

static json_t *
candidate(json_t *parts, const char *finish)
{
    json_t *c = json_pack("{s{sos s}si}", "content", "parts", parts, "role", "model", "index", 0);
    if (finish != NULL)
        json_object_set_new(c, "finishReason", json_string(finish));
    return c;
}

static int
append_json(tg_buf_t *out, json_t *v, const char *prefix, const char *suffix)
{
    if (v == NULL)
        return -1;
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (s == NULL)
        return -1;
    int rc = tg_buf_appends(out, prefix) != 0 || tg_buf_appends(out, s) != 0 || tg_buf_appends(out, suffix) != 0;
    free(s);
    return rc ? -1 : 0;
}

static json_t *
values_json(const tx_embedding_t *e)
{
    json_t *vals = json_array();
    for (size_t i = 0; i < e->n; i++)
        json_array_append_new(vals, json_real(isfinite(e->values[i]) ? e->values[i] : 0.0));
    return json_pack("{so}", "values", vals);
}

static int
encode_response(const tx_request_t *r, const tx_response_t *resp, tg_arena_t *a, tg_buf_t *out)
{
    if (r->op == TX_OP_COUNT_TOKENS)
        return append_json(out, json_pack("{sI}", "totalTokens", (json_int_t)resp->input_tokens), "", "");
    if (r->op == TX_OP_EMBED) {
        if (json_object_get(r->extra, "requests") != NULL) {
            json_t *list = json_array();
            for (size_t i = 0; i < resp->n_embeddings; i++)
                json_array_append_new(list, values_json(&resp->embeddings[i]));
            return append_json(out, json_pack("{so}", "embeddings", list), "", "");
        }
        if (resp->n_embeddings == 0)
            return append_json(out, json_pack("{s{s[]}}", "embedding", "values"), "", "");
        return append_json(out, json_pack("{so}", "embedding", values_json(&resp->embeddings[0])), "", "");
    }
    json_t *parts = json_array();
    for (size_t i = 0; i < resp->n_parts; i++) {
        json_t *p = part_json(&resp->parts[i]);
        if (p != NULL)
            json_array_append_new(parts, p);
    }
    json_t *body = json_pack("{s[o]}", "candidates", candidate(parts, tx_gemini_finish_reason(resp->stop)));
    if (body == NULL)
        return -1;
    if (resp->usage.known)
        json_object_set_new(body, "usageMetadata", usage_json(&resp->usage));
    const char *model = resp->model ? resp->model : r->model;
    const char *id = resp->id ? resp->id : r->request_id;
    if (model != NULL)
        json_object_set_new(body, "modelVersion", json_string(model));
    if (id != NULL)
        json_object_set_new(body, "responseId", json_string(id));
    return append_json(out, body, "", "");
}

/* A JSON string of s, whose end may have been cut inside a UTF-8 sequence by tx_fail's fixed buffer. */
static json_t *
utf8_string(const char *s, const char *fallback)
{
    size_t n = strlen(s);
    for (int cut = 0; cut < 4 && n > 0; cut++, n--) {
        json_t *v = json_stringn(s, n);
        if (v != NULL)
            return v;
    }
    return json_string(fallback);
}

static json_t *
rpc_error(const tx_error_t *e, int status)
{
    json_t *err = json_pack("{siso ss}", "code", status, "message", utf8_string(e->message, "Request failed."),
                            "status", tx_gemini_status_name(status));
    if (e->code[0] != '\0') {
        /* the machine-readable code travels the way Google's own do: as an UPPER_SNAKE ErrorInfo reason */
        char reason[sizeof(e->code)];
        size_t i = 0;
        for (; e->code[i] != '\0' && i + 1 < sizeof(reason); i++)
            reason[i] = (char)toupper((unsigned char)e->code[i]);
        reason[i] = '\0';
        json_t *info = json_pack("{sssssss{}}", "@type", "type.googleapis.com/google.rpc.ErrorInfo", "reason", reason,
                                 "domain", "tollgate", "metadata");
        if (info != NULL && e->param[0] != '\0')
            json_object_set_new(json_object_get(info, "metadata"), "param", json_string(e->param));
        if (info != NULL)
            json_object_set_new(err, "details", json_pack("[o]", info));
    }
    return json_pack("{so}", "error", err);
}

static int
encode_error(const tx_error_t *e, const char *request_id, tg_buf_t *out)
{
    int status = tx_error_status(e);
    if (status == 529)
        status = 503; /* Anthropic's overloaded has no Google spelling but UNAVAILABLE */
    json_t *body = rpc_error(e, status);
    if (request_id != NULL && body != NULL) {
        json_t *details = json_object_get(json_object_get(body, "error"), "details");
        json_t *info =
            json_pack("{ssss}", "@type", "type.googleapis.com/google.rpc.RequestInfo", "requestId", request_id);
        if (details == NULL)
            json_object_set_new(json_object_get(body, "error"), "details", json_pack("[o]", info));
        else
            json_array_append_new(details, info);
    }
    append_json(out, body, "", "");
    return status;
}

/* ---------------------------------------------------------------- streams */

/* The stream encoder's state: what the final chunk reports, and the one tool call being accumulated.
 * args and sig are malloc'd while a call is open and freed when it closes, the stream ends, or the caller
 * abandons the stream (stream_dispose). */
struct gstate {
    char id[128], model[128];
    tx_usage_t usage;
    tx_stop_t stop;
    int tool_open, tool_index, failed, done;
    char tool_id[256], tool_name[256];
    tg_buf_t args, sig;
};

static void
copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strnlen(src, cap - 1) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

static void
tool_reset(struct gstate *g)
{
    tg_buf_free(&g->args);
    tg_buf_free(&g->sig);
    memset(&g->args, 0, sizeof(g->args));
    memset(&g->sig, 0, sizeof(g->sig));
    g->tool_open = 0;
}

/* data: {"candidates":[...],"usageMetadata"?,"modelVersion","responseId"}\n\n */
static int
chunk(struct gstate *g, const tx_request_t *r, json_t *parts, const char *finish, tg_buf_t *out)
{
    json_t *body = json_pack("{s[o]}", "candidates", candidate(parts, finish));
    if (body == NULL)
        return -1;
    if (finish != NULL && g->usage.known)
        json_object_set_new(body, "usageMetadata", usage_json(&g->usage));
    const char *model = g->model[0] ? g->model : r->model;
    const char *id = g->id[0] ? g->id : r->request_id;
    if (model != NULL)
        json_object_set_new(body, "modelVersion", json_string(model));
    if (id != NULL)
        json_object_set_new(body, "responseId", json_string(id));
    return append_json(out, body, "data: ", "\n\n");
}

static int
stream_error(struct gstate *g, const tx_error_t *e, tg_buf_t *out)
{
    tool_reset(g);
    g->done = 1;
    int status = tx_error_status(e);
    return append_json(out, rpc_error(e, status == 529 ? 503 : status), "data: ", "\n\n");
}

/* Emits the accumulated tool call as one functionCall part. */
static int
tool_flush(struct gstate *g, const tx_request_t *r, tg_buf_t *out)
{
    json_t *args;
    if (g->args.len == 0) {
        args = json_object();
    } else {
        args = json_loadb(g->args.base, g->args.len, 0, NULL);
        if (!json_is_object(args)) {
            json_decref(args);
            tx_error_t e;
            tx_fail(&e, TX_ERR_UPSTREAM, "invalid_tool_arguments", NULL,
                    "The provider streamed tool call arguments for %s that are not a JSON object.", g->tool_name);
            return stream_error(g, &e, out);
        }
    }
    json_t *fc = json_pack("{ssso}", "name", g->tool_name, "args", args);
    if (g->tool_id[0] != '\0')
        json_object_set_new(fc, "id", json_string(g->tool_id));
    json_t *part = json_pack("{so}", "functionCall", fc);
    if (part != NULL && g->sig.len > 0)
        json_object_set_new(part, "thoughtSignature", json_stringn(g->sig.base, g->sig.len));
    tool_reset(g);
    return chunk(g, r, json_pack("[o]", part), NULL, out);
}

static int
stream_event(tx_stream_state_t *st, const tx_request_t *r, const tx_event_t *ev, tg_buf_t *out)
{
    struct gstate *g = (struct gstate *)st;
    if (g->done)
        return 0;
    switch (ev->kind) {
    case TX_EV_START:
        copy_str(g->id, sizeof(g->id), ev->id);
        copy_str(g->model, sizeof(g->model), ev->model);
        if (ev->usage.known)
            g->usage = ev->usage;
        return 0;
    case TX_EV_TEXT:
    case TX_EV_THINKING: {
        if (ev->text_len == 0 && ev->signature == NULL)
            return 0;
        json_t *p = json_pack("{ss%}", "text", ev->text ? ev->text : "", ev->text ? ev->text_len : 0);
        if (p == NULL) /* not UTF-8: the provider adapter should have caught it */
            return 0;
        if (ev->kind == TX_EV_THINKING)
            json_object_set_new(p, "thought", json_true());
        if (ev->signature != NULL)
            json_object_set_new(p, "thoughtSignature", json_string(ev->signature));
        return chunk(g, r, json_pack("[o]", p), NULL, out);
    }
    case TX_EV_TOOL_START:
        if (g->tool_open && tool_flush(g, r, out) != 0)
            return -1;
        if (g->done)
            return 0;
        tool_reset(g);
        g->tool_open = 1;
        g->tool_index = ev->index;
        copy_str(g->tool_id, sizeof(g->tool_id), ev->id);
        copy_str(g->tool_name, sizeof(g->tool_name), ev->name);
        g->args.max = TX_GEMINI_MAX_ARGS;
        if (ev->signature != NULL && tg_buf_appends(&g->sig, ev->signature) != 0)
            return -1;
        return 0;
    case TX_EV_TOOL_ARGS:
        if (!g->tool_open || ev->index != g->tool_index || ev->text_len == 0)
            return 0;
        if (tg_buf_append(&g->args, ev->text, ev->text_len) != 0) {
            tx_error_t e;
            tx_fail(&e, TX_ERR_UPSTREAM, "tool_arguments_too_large", NULL,
                    "The arguments of tool call %s exceed %u bytes.", g->tool_name, TX_GEMINI_MAX_ARGS);
            return stream_error(g, &e, out);
        }
        return 0;
    case TX_EV_BLOCK_END:
        if (g->tool_open && ev->index == g->tool_index)
            return tool_flush(g, r, out);
        return 0;
    case TX_EV_USAGE:
        g->usage = ev->usage;
        return 0;
    case TX_EV_STOP:
        g->stop = ev->stop;
        return 0;
    case TX_EV_ERROR: {
        tx_error_t e;
        if (ev->error == NULL)
            tx_fail(&e, TX_ERR_UPSTREAM, NULL, NULL, "The provider's stream failed.");
        return stream_error(g, ev->error ? ev->error : &e, out);
    }
    case TX_EV_END: {
        if (g->tool_open && tool_flush(g, r, out) != 0)
            return -1;
        if (g->done)
            return 0;
        g->done = 1;
        /* Google's own last chunk: an empty text part carrying finishReason and the final usage */
        return chunk(g, r, json_pack("[{ss}]", "text", ""), tx_gemini_finish_reason(g->stop), out);
    }
    }
    return 0;
}

static void
stream_dispose(tx_stream_state_t *st)
{
    tool_reset((struct gstate *)st);
}

const tx_dialect_ops_t tx_gemini_dialect = {
    .name = "gemini",
    .stream_state_size = sizeof(struct gstate),
    .decode_request = decode_request,
    .encode_response = encode_response,
    .encode_error = encode_error,
    .stream_content_type = "text/event-stream",
    .stream_event = stream_event,
    .stream_dispose = stream_dispose,
};
