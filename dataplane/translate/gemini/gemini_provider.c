/*
 * Google Gemini (generativelanguage, API key) and Vertex AI (OAuth) as upstream providers: the same
 * GenerateContentRequest/Response on two URL layouts.
 *
 *   gemini: {base}/{api_version=v1beta}/models/{model}:generateContent | :streamGenerateContent?alt=sse |
 *           :countTokens | :embedContent (one input) | :batchEmbedContents (several)
 *   vertex: {base}/{api_version=v1}/projects/{project}/locations/{location}/publishers/google/models/
 *           {model}:generateContent | ... | :predict (embeddings, §4.7)
 *
 * Going to Gemini (shared/ref/providers.md §8.1): consecutive same-role turns are merged, assistant
 * becomes "model", tool results become functionResponse parts of a user turn, named by the call they
 * answer (found by id among the earlier tool calls), with a response that is always an object. Tool and
 * response schemas are cut down to the subset Gemini accepts (gemini_common.c). Call ids are not sent:
 * Gemini pairs calls and responses by name and order, and an id it did not issue buys nothing.
 *
 * Coming back: usage is neutral already (promptTokenCount includes cached tokens); output adds the
 * thoughts; STOP with functionCall parts is tool use; a blocked prompt (no candidates, a blockReason) is
 * a content-filter stop with no content. Gemini gives calls no ids, so we make deterministic ones from the
 * responseId. Streams: each SSE data is a whole GenerateContentResponse with new parts; a functionCall
 * arrives whole and becomes TOOL_START + TOOL_ARGS + BLOCK_END; there is no end marker, so the chunk
 * carrying finishReason ends the stream; a chunk with an `error` member is an in-stream error.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include "translate/gemini/gemini_internal.h"

static int
is_vertex(const tx_target_t *t)
{
    return t->kind != NULL && strcmp(t->kind, "vertex") == 0;
}

/* ---------------------------------------------------------------- URLs */

/* A path segment from configuration must not be able to change the URL's shape. */
static int
segment_ok(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && strchr("-._@", *s) == NULL)
            return 0;
    return 1;
}

static const char *
method_of(const tx_request_t *r, int vertex)
{
    switch (r->op) {
    case TX_OP_COUNT_TOKENS:
        return "countTokens";
    case TX_OP_EMBED:
        return vertex ? "predict" : r->n_inputs == 1 ? "embedContent" : "batchEmbedContents";
    default:
        return r->stream ? "streamGenerateContent?alt=sse" : "generateContent";
    }
}

static const char *
build_url(const tx_request_t *r, const tx_target_t *t, const char *model, tg_arena_t *a, tx_error_t *err)
{
    const char *version = tx_json_str(t->settings, "api_version");
    const char *url;
    if (is_vertex(t)) {
        const char *project = tx_json_str(t->settings, "project");
        const char *location = tx_json_str(t->settings, "location");
        if (!segment_ok(project) || !segment_ok(location)) {
            tx_fail(err, TX_ERR_SERVER, "provider_misconfigured", NULL,
                    "The Vertex AI provider account needs the settings project and location.");
            return NULL;
        }
        url = tg_arena_sprintf(a, "%s/%s/projects/%s/locations/%s/publishers/google/models/%s:%s", t->base_url,
                               segment_ok(version) ? version : "v1", project, location, model, method_of(r, 1));
    } else {
        url = tg_arena_sprintf(a, "%s/%s/models/%s:%s", t->base_url, segment_ok(version) ? version : "v1beta", model,
                               method_of(r, 0));
    }
    if (url == NULL)
        tx_oom(err);
    return url;
}

/* ---------------------------------------------------------------- request bodies */

/* The name of the tool call that `id` answers, searching the messages before message m. */
static const char *
call_name(const tx_request_t *r, size_t m, const char *id)
{
    if (id == NULL)
        return NULL;
    for (size_t i = m; i-- > 0;)
        for (size_t j = 0; j < r->messages[i].n_parts; j++) {
            const tx_part_t *p = &r->messages[i].parts[j];
            if (p->kind == TX_PART_TOOL_CALL && p->id != NULL && p->name != NULL && strcmp(p->id, id) == 0)
                return p->name;
        }
    return NULL;
}

static const char *
guess_media_type(const char *url)
{
    static const char *const types[][2] = {{".png", "image/png"},  {".gif", "image/gif"},   {".webp", "image/webp"},
                                           {".jpg", "image/jpeg"}, {".jpeg", "image/jpeg"}, {".pdf", "application/pdf"},
                                           {".heic", "image/heic"}};
    const char *end = url + strcspn(url, "?#");
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        size_t n = strlen(types[i][0]);
        if ((size_t)(end - url) >= n && strncasecmp(end - n, types[i][0], n) == 0)
            return types[i][1];
    }
    return "image/jpeg";
}

/* A functionResponse's response: an object as it is, anything else wrapped (Gemini insists on an object). */
static json_t *
tool_response(const tx_part_t *p)
{
    const char *text = p->text ? p->text : "";
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    if (json_is_object(v))
        return v;
    json_decref(v);
    return json_pack("{ss}", p->is_error ? "error" : "result", text);
}

/* One neutral part as a Gemini part; NULL (no error) for parts Gemini has no use for. */
static json_t *
part_json(const tx_request_t *r, size_t m, const tx_part_t *p, tg_arena_t *a, tx_error_t *err, int *fail)
{
    json_t *out = NULL;
    switch (p->kind) {
    case TX_PART_TEXT:
        out = json_pack("{ss}", "text", p->text ? p->text : "");
        break;
    case TX_PART_THINKING:
        /* only Gemini's own signed thoughts mean anything to Gemini */
        if (r->dialect != TX_DIALECT_GEMINI || p->signature == NULL)
            return NULL;
        out = json_pack("{sssb}", "text", p->text ? p->text : "", "thought", 1);
        break;
    case TX_PART_IMAGE: {
        const char *mt = p->media_type, *data = p->data;
        if (data == NULL && p->url != NULL && strncmp(p->url, "data:", 5) == 0 &&
            tx_split_data_url(p->url, a, &mt, &data) != 0) {
            *fail = 1;
            tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_image", "messages", "An image data URL is not base64.");
            return NULL;
        }
        if (data != NULL)
            out = json_pack("{s{ssss}}", "inlineData", "mimeType", mt ? mt : "image/png", "data", data);
        else if (p->url != NULL)
            out = json_pack("{s{ssss}}", "fileData", "mimeType", mt ? mt : guess_media_type(p->url), "fileUri", p->url);
        break;
    }
    case TX_PART_TOOL_CALL:
        out = json_pack("{s{ssso}}", "functionCall", "name", p->name ? p->name : "", "args",
                        json_is_object(p->args) ? json_incref(p->args) : json_object());
        break;
    case TX_PART_TOOL_RESULT: {
        const char *name = p->name ? p->name : call_name(r, m, p->id);
        if (name == NULL) {
            *fail = 1;
            tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_tool_result", "messages",
                    "The tool result for call %s does not answer any earlier tool call: Gemini needs the "
                    "function's name.",
                    p->id ? p->id : "(no id)");
            return NULL;
        }
        out = json_pack("{s{ssso}}", "functionResponse", "name", name, "response", tool_response(p));
        break;
    }
    default:
        return NULL;
    }
    if (out == NULL) { /* a string that is not UTF-8 */
        *fail = 1;
        tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_content", "messages", "A message part is not valid UTF-8.");
        return NULL;
    }
    if (p->signature != NULL && p->kind != TX_PART_IMAGE && p->kind != TX_PART_TOOL_RESULT)
        json_object_set_new(out, "thoughtSignature", json_string(p->signature));
    return out;
}

/* messages -> contents, merging consecutive turns of the same Gemini role. */
static json_t *
contents_json(const tx_request_t *r, tg_arena_t *a, tx_error_t *err)
{
    json_t *contents = json_array();
    json_t *parts = NULL;
    const char *role = NULL;
    for (size_t m = 0; m < r->n_messages; m++) {
        const tx_message_t *msg = &r->messages[m];
        const char *mrole = msg->role == TX_ROLE_ASSISTANT ? "model" : "user";
        for (size_t i = 0; i < msg->n_parts; i++) {
            int fail = 0;
            json_t *p = part_json(r, m, &msg->parts[i], a, err, &fail);
            if (fail) {
                json_decref(contents);
                return NULL;
            }
            if (p == NULL)
                continue;
            if (role == NULL || strcmp(role, mrole) != 0) {
                parts = json_array();
                json_array_append_new(contents, json_pack("{ssso}", "role", mrole, "parts", parts));
                role = mrole;
            }
            json_array_append_new(parts, p);
        }
    }
    if (json_array_size(contents) == 0) {
        json_decref(contents);
        tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_messages", "messages",
                "Gemini needs at least one message with content.");
        return NULL;
    }
    return contents;
}

static json_t *
tools_json(const tx_request_t *r, tx_error_t *err)
{
    json_t *decls = json_array();
    for (size_t i = 0; i < r->n_tools; i++) {
        const tx_tool_t *t = &r->tools[i];
        json_t *d = json_pack("{ss}", "name", t->name ? t->name : "");
        if (d == NULL) {
            json_decref(decls);
            tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_tools", "tools", "A tool name is not valid UTF-8.");
            return NULL;
        }
        if (t->description != NULL)
            json_object_set_new(d, "description", json_string(t->description));
        if (t->parameters != NULL) {
            json_t *s = tx_gemini_schema_from_json(t->parameters);
            if (s == NULL) {
                json_decref(d);
                json_decref(decls);
                tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_schema", "tools",
                        "The parameters schema of tool %s nests too deeply for Gemini.", t->name);
                return NULL;
            }
            /* a function without arguments: Gemini rejects an OBJECT without properties */
            if (json_object_get(s, "properties") == NULL && json_object_get(s, "anyOf") == NULL)
                json_decref(s);
            else
                json_object_set_new(d, "parameters", s);
        }
        json_array_append_new(decls, d);
    }
    json_t *tools = json_array();
    if (json_array_size(decls) > 0)
        json_array_append_new(tools, json_pack("{so}", "functionDeclarations", decls));
    else
        json_decref(decls);
    /* built-in tools (googleSearch, codeExecution...) a Gemini client asked for */
    json_t *others = r->dialect == TX_DIALECT_GEMINI ? json_object_get(r->extra, "tools") : NULL, *o;
    size_t i;
    json_array_foreach(others, i, o) json_array_append(tools, o);
    return tools;
}

static json_t *
tool_config_json(const tx_request_t *r)
{
    json_t *fcc;
    switch (r->tool_choice) {
    case TX_TOOL_CHOICE_AUTO:
        fcc = json_pack("{ss}", "mode", "AUTO");
        break;
    case TX_TOOL_CHOICE_NONE:
        fcc = json_pack("{ss}", "mode", "NONE");
        break;
    case TX_TOOL_CHOICE_REQUIRED:
        fcc = json_pack("{ss}", "mode", "ANY");
        break;
    case TX_TOOL_CHOICE_NAMED:
        fcc = json_pack("{sss[s]}", "mode", "ANY", "allowedFunctionNames",
                        r->tool_choice_name ? r->tool_choice_name : "");
        break;
    default:
        return NULL;
    }
    return fcc != NULL ? json_pack("{so}", "functionCallingConfig", fcc) : NULL;
}

static int
generation_config(const tx_request_t *r, json_t *body, tx_error_t *err)
{
    json_t *gc = json_object();
    if (r->max_tokens >= 0)
        json_object_set_new(gc, "maxOutputTokens", json_integer(r->max_tokens));
    if (r->has_temperature)
        json_object_set_new(gc, "temperature", json_real(r->temperature));
    if (r->has_top_p)
        json_object_set_new(gc, "topP", json_real(r->top_p));
    if (r->top_k >= 0)
        json_object_set_new(gc, "topK", json_integer(r->top_k));
    if (r->has_seed)
        json_object_set_new(gc, "seed", json_integer(r->seed));
    if (r->has_presence_penalty)
        json_object_set_new(gc, "presencePenalty", json_real(r->presence_penalty));
    if (r->has_frequency_penalty)
        json_object_set_new(gc, "frequencyPenalty", json_real(r->frequency_penalty));
    if (r->n_stop > 0) {
        json_t *stop = json_array();
        for (size_t i = 0; i < r->n_stop; i++)
            json_array_append_new(stop, json_string(r->stop[i]));
        json_object_set_new(gc, "stopSequences", stop);
    }
    if (r->format != TX_FORMAT_TEXT)
        json_object_set_new(gc, "responseMimeType", json_string("application/json"));
    if (r->format == TX_FORMAT_JSON_SCHEMA && r->format_schema != NULL) {
        json_t *s = tx_gemini_schema_from_json(r->format_schema);
        if (s == NULL) {
            json_decref(gc);
            return tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_schema", "response_format",
                           "The response schema nests too deeply for Gemini.");
        }
        json_object_set_new(gc, "responseSchema", s);
    }
    /* a Gemini client's own settings we do not model (thinkingConfig, responseModalities...) */
    json_t *more = r->dialect == TX_DIALECT_GEMINI ? json_object_get(r->extra, "generationConfig") : NULL, *v;
    const char *key;
    json_object_foreach(more, key, v) if (json_object_get(gc, key) == NULL) json_object_set(gc, key, v);
    if (json_object_size(gc) > 0)
        json_object_set_new(body, "generationConfig", gc);
    else
        json_decref(gc);
    return 0;
}

/* The GenerateContentRequest members; for countTokens only what counts. */
static json_t *
generate_body(const tx_request_t *r, tg_arena_t *a, tx_error_t *err)
{
    json_t *contents = contents_json(r, a, err);
    if (contents == NULL)
        return NULL;
    json_t *body = json_pack("{so}", "contents", contents);
    if (r->system != NULL) {
        json_t *si = json_pack("{s[{ss}]}", "parts", "text", r->system);
        if (si == NULL) {
            json_decref(body);
            tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_system", "system", "The system prompt is not valid UTF-8.");
            return NULL;
        }
        json_object_set_new(body, "systemInstruction", si);
    }
    json_t *tools = tools_json(r, err);
    if (tools == NULL) {
        json_decref(body);
        return NULL;
    }
    if (json_array_size(tools) > 0)
        json_object_set_new(body, "tools", tools);
    else
        json_decref(tools);
    if (r->op == TX_OP_COUNT_TOKENS)
        return body;
    json_t *tc =
        json_object_get(body, "tools") != NULL || r->tool_choice == TX_TOOL_CHOICE_NONE ? tool_config_json(r) : NULL;
    if (tc != NULL)
        json_object_set_new(body, "toolConfig", tc);
    if (generation_config(r, body, err) != 0) {
        json_decref(body);
        return NULL;
    }
    /* same-dialect members (safetySettings, cachedContent, labels...) pass through */
    const char *key;
    json_t *v;
    if (r->dialect == TX_DIALECT_GEMINI)
        json_object_foreach(r->extra, key, v) if (json_object_get(body, key) == NULL && strcmp(key, "tools") != 0 &&
                                                  strcmp(key, "generationConfig") != 0) json_object_set(body, key, v);
    return body;
}

/* Cohere's input_type spellings, and Gemini's own, as a Gemini taskType; NULL for anything else. */
static const char *
task_type(const char *t)
{
    static const char *const map[][2] = {
        {"search_query", "RETRIEVAL_QUERY"},
        {"search_document", "RETRIEVAL_DOCUMENT"},
        {"classification", "CLASSIFICATION"},
        {"clustering", "CLUSTERING"},
        {"RETRIEVAL_QUERY", "RETRIEVAL_QUERY"},
        {"RETRIEVAL_DOCUMENT", "RETRIEVAL_DOCUMENT"},
        {"SEMANTIC_SIMILARITY", "SEMANTIC_SIMILARITY"},
        {"CLASSIFICATION", "CLASSIFICATION"},
        {"CLUSTERING", "CLUSTERING"},
        {"QUESTION_ANSWERING", "QUESTION_ANSWERING"},
        {"FACT_VERIFICATION", "FACT_VERIFICATION"},
        {"CODE_RETRIEVAL_QUERY", "CODE_RETRIEVAL_QUERY"},
    };
    for (size_t i = 0; t != NULL && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(t, map[i][0]) == 0)
            return map[i][1];
    return NULL;
}

static json_t *
embed_body(const tx_request_t *r, const char *model, int vertex, tx_error_t *err)
{
    if (r->n_inputs == 0) {
        tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_input", "input", "There is nothing to embed.");
        return NULL;
    }
    const char *tt = task_type(r->task_type);
    json_t *list = json_array(), *body;
    for (size_t i = 0; i < r->n_inputs; i++) {
        json_t *e;
        if (vertex) {
            e = json_pack("{ss}", "content", r->inputs[i]);
            if (e != NULL && tt != NULL)
                json_object_set_new(e, "task_type", json_string(tt));
        } else {
            e = json_pack("{s{s[{ss}]}}", "content", "parts", "text", r->inputs[i]);
            if (e != NULL && tt != NULL)
                json_object_set_new(e, "taskType", json_string(tt));
            if (e != NULL && r->dimensions > 0)
                json_object_set_new(e, "outputDimensionality", json_integer(r->dimensions));
            if (e != NULL && r->n_inputs > 1) /* batch entries repeat the model (§4.5) */
                json_object_set_new(e, "model", json_sprintf("models/%s", model));
        }
        if (e == NULL) {
            json_decref(list);
            tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_input", "input", "Input %zu is not valid UTF-8.", i);
            return NULL;
        }
        json_array_append_new(list, e);
    }
    if (vertex) {
        body = json_pack("{so}", "instances", list);
        if (r->dimensions > 0)
            json_object_set_new(body, "parameters",
                                json_pack("{sI}", "outputDimensionality", (json_int_t)r->dimensions));
    } else if (r->n_inputs == 1) {
        body = json_incref(json_array_get(list, 0));
        json_decref(list);
    } else {
        body = json_pack("{so}", "requests", list);
    }
    return body;
}

static int
encode_request(const tx_request_t *r, const tx_target_t *t, tg_arena_t *a, tx_http_request_t *ret, tx_error_t *err)
{
    memset(ret, 0, sizeof(*ret));
    const char *model = t->upstream_model ? t->upstream_model : r->model;
    if (model != NULL && strncmp(model, "models/", 7) == 0)
        model += 7;
    if (!segment_ok(model))
        return tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_model", "model",
                       "The model name \"%s\" cannot be used in a Gemini URL.", model ? model : "");
    int vertex = is_vertex(t);
    if ((ret->url = build_url(r, t, model, a, err)) == NULL)
        return -1;
    json_t *body;
    if (r->op == TX_OP_EMBED) {
        body = embed_body(r, model, vertex, err);
    } else {
        body = generate_body(r, a, err);
        /* the Gemini API counts a system prompt or tools only inside a full request */
        if (body != NULL && r->op == TX_OP_COUNT_TOKENS && !vertex && json_object_size(body) > 1) {
            json_object_set_new(body, "model", json_sprintf("models/%s", model));
            body = json_pack("{so}", "generateContentRequest", body);
        }
    }
    if (body == NULL)
        return -1;
    if (tx_arena_keep(a, body) != 0)
        return tx_oom(err);
    if ((ret->body = tx_dump_json(body, a, &ret->body_len)) == NULL)
        return tx_oom(err);
    return 0;
}

/* ---------------------------------------------------------------- responses */

static json_t *
parse_upstream(const char *body, size_t len, tg_arena_t *a, tx_error_t *err)
{
    json_t *v = json_loadb(body, len, 0, NULL);
    if (v == NULL || tx_arena_keep(a, v) != 0) {
        tx_fail(err, TX_ERR_UPSTREAM, "invalid_upstream_response", NULL, "The provider's response is not JSON.");
        return NULL;
    }
    return v;
}

static int
embedding_of(const json_t *values, tg_arena_t *a, tx_embedding_t *ret)
{
    if (!json_is_array(values))
        return -1;
    ret->n = json_array_size(values);
    ret->values = tg_arena_alloc(a, (ret->n + 1) * sizeof(float));
    if (ret->values == NULL)
        return -1;
    size_t i;
    json_t *x;
    json_array_foreach(values, i, x)
    {
        if (!json_is_number(x))
            return -1;
        ret->values[i] = (float)json_number_value(x);
    }
    return 0;
}

static int
decode_embeddings(const json_t *v, tg_arena_t *a, tx_response_t *ret, tx_error_t *err)
{
    json_t *one = json_object_get(v, "embedding");
    json_t *list = json_object_get(v, "embeddings");
    json_t *preds = json_object_get(v, "predictions");
    size_t n = one != NULL ? 1 : json_array_size(list) + json_array_size(preds);
    ret->embeddings = tg_arena_alloc(a, (n + 1) * sizeof(*ret->embeddings));
    if (ret->embeddings == NULL)
        return tx_oom(err);
    int bad = 0;
    if (one != NULL) {
        bad |= embedding_of(json_object_get(one, "values"), a, &ret->embeddings[ret->n_embeddings++]);
    } else if (list != NULL) {
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) bad |=
            embedding_of(json_object_get(e, "values"), a, &ret->embeddings[ret->n_embeddings++]);
    } else if (preds != NULL) {
        int64_t tokens = 0;
        int counted = 0;
        size_t i;
        json_t *e;
        json_array_foreach(preds, i, e)
        {
            json_t *emb = json_object_get(e, "embeddings");
            json_t *tc = json_object_get(json_object_get(emb, "statistics"), "token_count");
            if (json_is_number(tc)) {
                tokens += (int64_t)json_number_value(tc);
                counted = 1;
            }
            bad |= embedding_of(json_object_get(emb, "values"), a, &ret->embeddings[ret->n_embeddings++]);
        }
        if (counted)
            ret->usage = tx_usage_make(tokens, 0, 0, 0);
    }
    if (bad || n == 0)
        return tx_fail(err, TX_ERR_UPSTREAM, "invalid_upstream_response", NULL,
                       "The provider's embedding response has no readable values.");
    return 0;
}

/* "call_<responseId>_<n>": deterministic, and distinct across the turns of a conversation. */
static const char *
invent_id(const char *response_id, size_t n, char *buf, size_t cap)
{
    snprintf(buf, cap, "call_%s_%zu", response_id ? response_id : "0", n);
    return buf;
}

static int
decode_response(const tx_request_t *r, const char *body, size_t len, tg_arena_t *a, tx_response_t *ret, tx_error_t *err)
{
    memset(ret, 0, sizeof(*ret));
    json_t *v = parse_upstream(body, len, a, err);
    if (v == NULL)
        return -1;
    if (!json_is_object(v))
        return tx_fail(err, TX_ERR_UPSTREAM, "invalid_upstream_response", NULL,
                       "The provider's response is not a JSON object.");
    if (r->op == TX_OP_EMBED)
        return decode_embeddings(v, a, ret, err);
    if (r->op == TX_OP_COUNT_TOKENS) {
        json_t *tt = json_object_get(v, "totalTokens");
        if (!json_is_integer(tt))
            return tx_fail(err, TX_ERR_UPSTREAM, "invalid_upstream_response", NULL,
                           "The provider's countTokens response has no totalTokens.");
        ret->input_tokens = json_integer_value(tt);
        return 0;
    }

    ret->id = tx_json_str(v, "responseId");
    ret->model = tx_json_str(v, "modelVersion");
    ret->usage = tx_gemini_usage(json_object_get(v, "usageMetadata"));
    json_t *cand = json_array_get(json_object_get(v, "candidates"), 0);
    if (cand == NULL) {
        const char *block = tx_json_str(json_object_get(v, "promptFeedback"), "blockReason");
        if (block == NULL)
            return tx_fail(err, TX_ERR_UPSTREAM, "invalid_upstream_response", NULL,
                           "The provider's response has no candidates.");
        ret->stop = TX_STOP_CONTENT_FILTER; /* a blocked prompt: 200, no candidates */
        ret->raw_stop = block;
        return 0;
    }
    json_t *parts = json_object_get(json_object_get(cand, "content"), "parts");
    ret->parts = tg_arena_alloc(a, (json_array_size(parts) + 1) * sizeof(*ret->parts));
    if (ret->parts == NULL)
        return tx_oom(err);
    size_t i, n_calls = 0;
    json_t *p;
    json_array_foreach(parts, i, p)
    {
        tx_part_t *out = &ret->parts[ret->n_parts];
        json_t *fc = json_object_get(p, "functionCall");
        const char *text = tx_json_str(p, "text");
        out->signature = tx_json_str(p, "thoughtSignature");
        if (text != NULL) {
            out->kind = json_is_true(json_object_get(p, "thought")) ? TX_PART_THINKING : TX_PART_TEXT;
            out->text = text;
        } else if (json_is_object(fc)) {
            out->kind = TX_PART_TOOL_CALL;
            out->name = tx_json_str(fc, "name");
            out->id = tx_json_str(fc, "id");
            out->args = json_object_get(fc, "args");
            if (out->name == NULL)
                return tx_fail(err, TX_ERR_UPSTREAM, "invalid_upstream_response", NULL,
                               "The provider returned a functionCall without a name.");
            if (!json_is_object(out->args)) {
                out->args = json_object();
                if (tx_arena_keep(a, out->args) != 0)
                    return tx_oom(err);
            }
            char buf[160];
            if (out->id == NULL &&
                (out->id = tg_arena_strdup(a, invent_id(ret->id, n_calls, buf, sizeof(buf)))) == NULL)
                return tx_oom(err);
            n_calls++;
        } else {
            continue; /* executableCode, codeExecutionResult, inline images: nothing neutral to say */
        }
        ret->n_parts++;
    }
    ret->raw_stop = tx_json_str(cand, "finishReason");
    ret->stop = tx_gemini_stop_of(ret->raw_stop);
    if (ret->stop == TX_STOP_UNSET)
        ret->stop = TX_STOP_END;
    if (n_calls > 0 && ret->stop == TX_STOP_END)
        ret->stop = TX_STOP_TOOL_USE; /* Gemini says STOP even when it calls tools */
    return 0;
}

static void
decode_error(int status, const char *body, size_t len, tx_error_t *err)
{
    json_t *v = json_loadb(body, len, 0, NULL);
    if (json_is_array(v)) { /* a streamGenerateContent without alt=sse answers in an array */
        json_t *first = json_incref(json_array_get(v, 0));
        json_decref(v);
        v = first;
    }
    json_t *e = json_object_get(v, "error");
    if (json_is_object(e)) {
        tx_gemini_error_from_rpc(e, status, err);
    } else {
        size_t n = len < 300 ? len : 300;
        size_t k = 0;
        char text[301];
        for (size_t i = 0; i < n; i++) /* printable ASCII only: the body may be HTML or binary */
            text[k++] = body[i] >= 0x20 && body[i] < 0x7f ? body[i] : ' ';
        text[k] = '\0';
        tx_fail(err, tx_error_kind_of_status(status), NULL, NULL, "The provider answered %d%s%s", status,
                k ? ": " : ".", text);
        err->status = status >= 400 && status <= 599 ? status : 0;
    }
    json_decref(v);
}

/* ---------------------------------------------------------------- streams */

enum { OPEN_NONE = 0, OPEN_TEXT, OPEN_THINKING };

struct pstate {
    int started, ended, has_tool;
    int open, open_index, next_index;
    size_t n_calls;
    char response_id[96];
};

static int
emit_ev(tx_emit_fn emit, void *ctx, tx_event_t ev)
{
    return emit(ctx, &ev);
}

static int
close_open(struct pstate *s, tx_emit_fn emit, void *ctx)
{
    if (s->open == OPEN_NONE)
        return 0;
    s->open = OPEN_NONE;
    return emit_ev(emit, ctx, (tx_event_t){.kind = TX_EV_BLOCK_END, .index = s->open_index});
}

static int
stream_parts(struct pstate *s, const json_t *parts, tx_emit_fn emit, void *ctx, tg_arena_t *a, tx_error_t *err)
{
    size_t i;
    json_t *p;
    int rc;
    json_array_foreach(parts, i, p)
    {
        const char *text = tx_json_str(p, "text");
        json_t *fc = json_object_get(p, "functionCall");
        const char *sig = tx_json_str(p, "thoughtSignature");
        if (text != NULL) {
            int kind = json_is_true(json_object_get(p, "thought")) ? OPEN_THINKING : OPEN_TEXT;
            size_t tlen = json_string_length(json_object_get(p, "text"));
            if (tlen == 0 && sig == NULL)
                continue; /* Gemini's empty closing text part */
            if (s->open != kind) {
                if ((rc = close_open(s, emit, ctx)) != 0)
                    return rc;
                s->open = kind;
                s->open_index = s->next_index++;
            }
            tx_event_t ev = {.kind = kind == OPEN_THINKING ? TX_EV_THINKING : TX_EV_TEXT,
                             .index = s->open_index,
                             .text = text,
                             .text_len = tlen,
                             .signature = sig};
            if ((rc = emit(ctx, &ev)) != 0)
                return rc;
        } else if (json_is_object(fc)) {
            const char *name = tx_json_str(fc, "name");
            if (name == NULL)
                return tx_fail(err, TX_ERR_UPSTREAM, "invalid_upstream_response", NULL,
                               "The provider streamed a functionCall without a name.");
            if ((rc = close_open(s, emit, ctx)) != 0)
                return rc;
            char buf[160];
            const char *id = tx_json_str(fc, "id");
            if (id == NULL)
                id = invent_id(s->response_id[0] ? s->response_id : NULL, s->n_calls, buf, sizeof(buf));
            s->n_calls++;
            s->has_tool = 1;
            int index = s->next_index++;
            json_t *args = json_object_get(fc, "args");
            char *args_text = json_is_object(args) ? json_dumps(args, JSON_COMPACT) : NULL;
            tx_event_t start = {.kind = TX_EV_TOOL_START, .index = index, .id = id, .name = name, .signature = sig};
            tx_event_t frag = {.kind = TX_EV_TOOL_ARGS,
                               .index = index,
                               .text = args_text ? args_text : "{}",
                               .text_len = args_text ? strlen(args_text) : 2};
            rc = emit(ctx, &start);
            if (rc == 0)
                rc = emit(ctx, &frag);
            free(args_text);
            if (rc == 0)
                rc = emit_ev(emit, ctx, (tx_event_t){.kind = TX_EV_BLOCK_END, .index = index});
            if (rc != 0)
                return rc;
        }
    }
    (void)a;
    return 0;
}

static int
stream_object(struct pstate *s, const json_t *v, tg_arena_t *a, tx_emit_fn emit, void *ctx, tx_error_t *err)
{
    int rc;
    if (!json_is_object(v))
        return tx_fail(err, TX_ERR_UPSTREAM, "invalid_upstream_stream", NULL,
                       "The provider streamed something other than a JSON object.");
    json_t *error = json_object_get(v, "error");
    if (json_is_object(error)) {
        tx_error_t e;
        tx_gemini_error_from_rpc(error, 0, &e);
        s->ended = 1;
        return emit_ev(emit, ctx, (tx_event_t){.kind = TX_EV_ERROR, .error = &e});
    }
    if (!s->started) {
        s->started = 1;
        const char *rid = tx_json_str(v, "responseId");
        if (rid != NULL)
            snprintf(s->response_id, sizeof(s->response_id), "%s", rid);
        if ((rc = emit_ev(emit, ctx,
                          (tx_event_t){.kind = TX_EV_START, .id = rid, .model = tx_json_str(v, "modelVersion")})) != 0)
            return rc;
    }
    json_t *cand = json_array_get(json_object_get(v, "candidates"), 0);
    if ((rc = stream_parts(s, json_object_get(json_object_get(cand, "content"), "parts"), emit, ctx, a, err)) != 0)
        return rc;
    tx_usage_t usage = tx_gemini_usage(json_object_get(v, "usageMetadata"));
    if (usage.known && (rc = emit_ev(emit, ctx, (tx_event_t){.kind = TX_EV_USAGE, .usage = usage})) != 0)
        return rc;
    const char *finish = tx_json_str(cand, "finishReason");
    const char *block = cand == NULL ? tx_json_str(json_object_get(v, "promptFeedback"), "blockReason") : NULL;
    if (finish == NULL && block == NULL)
        return 0;
    tx_stop_t stop = block != NULL ? TX_STOP_CONTENT_FILTER : tx_gemini_stop_of(finish);
    if (stop == TX_STOP_END && s->has_tool)
        stop = TX_STOP_TOOL_USE;
    s->ended = 1;
    if ((rc = close_open(s, emit, ctx)) != 0 ||
        (rc = emit_ev(emit, ctx, (tx_event_t){.kind = TX_EV_STOP, .stop = stop})) != 0)
        return rc;
    /* Gemini has no end marker: the chunk with the finishReason is the last one */
    return emit_ev(emit, ctx, (tx_event_t){.kind = TX_EV_END});
}

static int
stream_frame(tx_stream_state_t *st, const tx_request_t *r, const tx_frame_t *f, tg_arena_t *a, tx_emit_fn emit,
             void *ctx, tx_error_t *err)
{
    struct pstate *s = (struct pstate *)st;
    if (s->ended || f->data == NULL || f->data_len == 0)
        return 0;
    /* parsed and released frame by frame: a long stream must not grow the request's arena */
    json_error_t jerr;
    json_t *v = json_loadb(f->data, f->data_len, 0, &jerr);
    if (v == NULL)
        return tx_fail(err, TX_ERR_UPSTREAM, "invalid_upstream_stream", NULL, "The provider streamed invalid JSON: %s.",
                       jerr.text);
    int rc = 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) if (rc == 0 && !s->ended) rc = stream_object(s, x, a, emit, ctx, err);
    } else {
        rc = stream_object(s, v, a, emit, ctx, err);
    }
    json_decref(v);
    return rc;
}

const tx_provider_ops_t tx_gemini_provider = {
    .kind = "gemini",
    .framing = TX_FRAMING_SSE,
    .stream_state_size = sizeof(struct pstate),
    .encode_request = encode_request,
    .decode_response = decode_response,
    .decode_error = decode_error,
    .stream_frame = stream_frame,
};

const tx_provider_ops_t tx_vertex_provider = {
    .kind = "vertex",
    .framing = TX_FRAMING_SSE,
    .stream_state_size = sizeof(struct pstate),
    .encode_request = encode_request,
    .decode_response = decode_response,
    .decode_error = decode_error,
    .stream_frame = stream_frame,
};
