/*
 * The translation core's shared pieces: errors, the adapter registry, and the small JSON, base64 and
 * usage helpers every adapter needs (see tx.h). Pure functions.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "translate/tx.h"

/* ---------------------------------------------------------------- errors */

int
tx_fail(tx_error_t *e, tx_error_kind_t kind, const char *code, const char *param, const char *fmt, ...)
{
    if (e == NULL)
        return -1;
    e->kind = kind;
    e->status = 0;
    snprintf(e->code, sizeof(e->code), "%s", code ? code : "");
    snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(e->message)) {
        /* truncated: never leave half a UTF-8 character, the message goes into JSON */
        size_t len = sizeof(e->message) - 1, lead = len;
        while (lead > 0 && ((unsigned char)e->message[lead - 1] & 0xC0) == 0x80)
            lead--;
        if (lead > 0) {
            unsigned char c = (unsigned char)e->message[lead - 1];
            size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
            if (lead - 1 + need > len)
                e->message[lead - 1] = '\0';
        }
    }
    return -1;
}

int
tx_oom(tx_error_t *e)
{
    return tx_fail(e, TX_ERR_SERVER, "out_of_memory", NULL, "The gateway ran out of memory.");
}

static const int kind_status[] = {
    [TX_ERR_INVALID_REQUEST] = 400, [TX_ERR_AUTHENTICATION] = 401, [TX_ERR_BILLING] = 402,
    [TX_ERR_PERMISSION] = 403,      [TX_ERR_NOT_FOUND] = 404,      [TX_ERR_TOO_LARGE] = 413,
    [TX_ERR_UNPROCESSABLE] = 422,   [TX_ERR_RATE_LIMIT] = 429,     [TX_ERR_SERVER] = 500,
    [TX_ERR_UPSTREAM] = 502,        [TX_ERR_OVERLOADED] = 503,     [TX_ERR_TIMEOUT] = 504,
};

int
tx_error_status(const tx_error_t *e)
{
    if (e->status >= 400 && e->status <= 599)
        return e->status;
    if ((unsigned)e->kind < sizeof(kind_status) / sizeof(kind_status[0]))
        return kind_status[e->kind];
    return 500;
}

tx_error_kind_t
tx_error_kind_of_status(int status)
{
    switch (status) {
    case 400:
        return TX_ERR_INVALID_REQUEST;
    case 401:
        return TX_ERR_AUTHENTICATION;
    case 402:
        return TX_ERR_BILLING;
    case 403:
        return TX_ERR_PERMISSION;
    case 404:
        return TX_ERR_NOT_FOUND;
    case 413:
        return TX_ERR_TOO_LARGE;
    case 422:
        return TX_ERR_UNPROCESSABLE;
    case 429:
        return TX_ERR_RATE_LIMIT;
    case 502:
        return TX_ERR_UPSTREAM;
    case 503:
    case 529:
        return TX_ERR_OVERLOADED;
    case 504:
    case 408:
        return TX_ERR_TIMEOUT;
    default:
        return status >= 500 ? TX_ERR_SERVER : TX_ERR_INVALID_REQUEST;
    }
}

/* ---------------------------------------------------------------- registry */

extern const tx_provider_ops_t tx_openai_provider, tx_azure_provider, tx_mistral_provider, tx_groq_provider;
extern const tx_provider_ops_t tx_anthropic_provider, tx_gemini_provider, tx_vertex_provider, tx_bedrock_provider;
extern const tx_provider_ops_t tx_cohere_provider, tx_ollama_native_provider;
extern const tx_dialect_ops_t tx_openai_dialect, tx_anthropic_dialect, tx_gemini_dialect;

static const struct {
    const char *kind;
    const tx_provider_ops_t *ops;
    int passthrough;
} providers[] = {
    {"openai", &tx_openai_provider, 1},
    {"openai_compatible", &tx_openai_provider, 1},
    {"vllm", &tx_openai_provider, 1},
    {"openrouter", &tx_openai_provider, 1},
    {"ollama", &tx_openai_provider, 1}, /* Ollama's OpenAI-compatible surface (/v1) */
    {"azure", &tx_azure_provider, 1},
    {"mistral", &tx_mistral_provider, 0}, /* needs rewrites: random_seed, 9-character tool-call ids */
    {"groq", &tx_groq_provider, 0},       /* rejects logprobs, logit_bias, n > 1, messages[].name */
    {"anthropic", &tx_anthropic_provider, 0},
    {"gemini", &tx_gemini_provider, 0},
    {"vertex", &tx_vertex_provider, 0},
    {"bedrock", &tx_bedrock_provider, 0},
    {"cohere", &tx_cohere_provider, 0},
    {"ollama_native", &tx_ollama_native_provider, 0},
};

const tx_provider_ops_t *
tx_provider_find(const char *kind)
{
    for (size_t i = 0; kind != NULL && i < sizeof(providers) / sizeof(providers[0]); i++)
        if (strcmp(providers[i].kind, kind) == 0)
            return providers[i].ops;
    return NULL;
}

int
tx_provider_is_openai_passthrough(const char *kind)
{
    for (size_t i = 0; kind != NULL && i < sizeof(providers) / sizeof(providers[0]); i++)
        if (strcmp(providers[i].kind, kind) == 0)
            return providers[i].passthrough;
    return 0;
}

int
tx_openai_url(const tx_target_t *t, const char *endpoint, char *out, size_t cap)
{
    int n;
    const char *api_version = tx_json_str(t->settings, "api_version");
    if (t->kind != NULL && strcmp(t->kind, "azure") == 0 && api_version != NULL && api_version[0] != '\0') {
        if (strcmp(endpoint, "models") == 0)
            n = snprintf(out, cap, "%s/openai/models?api-version=%s", t->base_url, api_version);
        else
            n = snprintf(out, cap, "%s/openai/deployments/%s/%s?api-version=%s", t->base_url, t->upstream_model,
                         endpoint, api_version);
    } else if (t->kind != NULL && strcmp(t->kind, "azure") == 0) {
        n = snprintf(out, cap, "%s/openai/v1/%s", t->base_url, endpoint);
    } else {
        n = snprintf(out, cap, "%s/%s", t->base_url, endpoint);
    }
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

const tx_dialect_ops_t *
tx_dialect_get(tx_dialect_t d)
{
    switch (d) {
    case TX_DIALECT_OPENAI:
        return &tx_openai_dialect;
    case TX_DIALECT_ANTHROPIC:
        return &tx_anthropic_dialect;
    case TX_DIALECT_GEMINI:
        return &tx_gemini_dialect;
    default:
        return NULL;
    }
}

/* ---------------------------------------------------------------- JSON helpers */

static void
decref(void *p)
{
    json_decref(p);
}

int
tx_arena_keep(tg_arena_t *a, json_t *v)
{
    if (v == NULL)
        return -1;
    return tg_arena_defer(a, decref, v);
}

json_t *
tx_parse_json(const char *body, size_t len, tg_arena_t *a, tx_error_t *err)
{
    json_error_t jerr;
    json_t *v = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (v == NULL) {
        tx_fail(err, TX_ERR_INVALID_REQUEST, "invalid_json", NULL,
                "We could not parse the JSON body of your request: %s (at byte %d).", jerr.text, jerr.position);
        return NULL;
    }
    if (tx_arena_keep(a, v) != 0) {
        tx_fail(err, TX_ERR_SERVER, "out_of_memory", NULL, "The gateway ran out of memory.");
        return NULL;
    }
    return v;
}

static int
on_dump(const char *buffer, size_t size, void *data)
{
    return tg_buf_append(data, buffer, size) == 0 ? 0 : -1;
}

int
tx_dump_json_into(const json_t *v, size_t flags, tg_buf_t *out)
{
    /* one pass into a growable buffer: json_dumpb would need a first pass only to learn the size */
    size_t mark = out->len;
    if (v == NULL || json_dump_callback(v, on_dump, out, flags) != 0 || out->len == mark) {
        out->len = mark;
        return -1;
    }
    return 0;
}

char *
tx_dump_json(const json_t *v, tg_arena_t *a, size_t *ret_len)
{
    tg_buf_t b = {0};
    /* most bodies fit the first buffer; the arena takes the buffer over instead of a copy */
    if (tg_buf_reserve(&b, 2048) != 0 || tx_dump_json_into(v, JSON_COMPACT | JSON_REAL_PRECISION(15), &b) != 0 ||
        tg_buf_append(&b, "", 1) != 0) {
        tg_buf_free(&b);
        return NULL;
    }
    if (tg_arena_defer(a, free, b.base) != 0)
        return NULL; /* already freed by tg_arena_defer */
    if (ret_len != NULL)
        *ret_len = b.len - 1;
    return b.base;
}

const char *
tx_json_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

int
tx_split_data_url(const char *url, tg_arena_t *a, const char **ret_media_type, const char **ret_data)
{
    if (strncmp(url, "data:", 5) != 0)
        return -1;
    const char *semi = strstr(url + 5, ";base64,");
    if (semi == NULL)
        return -1;
    char *mt = tg_arena_strndup(a, url + 5, (size_t)(semi - (url + 5)));
    if (mt == NULL)
        return -1;
    *ret_media_type = mt;
    *ret_data = semi + 8;
    return 0;
}

tx_usage_t
tx_usage_make(int64_t input_incl_cache, int64_t output, int64_t cache_read, int64_t cache_write)
{
    tx_usage_t u = {
        .input = input_incl_cache, .output = output, .cache_read = cache_read, .cache_write = cache_write, .known = 1};
    return u;
}

const char *
tx_args_text(const tx_part_t *p, tg_arena_t *a)
{
    if (p->args == NULL)
        return "{}";
    const char *s = tx_dump_json(p->args, a, NULL);
    return s != NULL ? s : "{}";
}

const char *
tx_message_text(const tx_message_t *m, tg_arena_t *a)
{
    size_t total = 0, n_text = 0;
    for (size_t i = 0; i < m->n_parts; i++)
        if (m->parts[i].kind == TX_PART_TEXT && m->parts[i].text != NULL) {
            total += strlen(m->parts[i].text);
            n_text++;
        }
    if (n_text == 1)
        for (size_t i = 0; i < m->n_parts; i++)
            if (m->parts[i].kind == TX_PART_TEXT && m->parts[i].text != NULL)
                return m->parts[i].text;
    char *out = tg_arena_alloc(a, total + 1);
    if (out == NULL)
        return "";
    size_t at = 0;
    for (size_t i = 0; i < m->n_parts; i++)
        if (m->parts[i].kind == TX_PART_TEXT && m->parts[i].text != NULL) {
            size_t l = strlen(m->parts[i].text);
            memcpy(out + at, m->parts[i].text, l);
            at += l;
        }
    out[at] = '\0';
    return out;
}

int
tx_embedding_from_json(const json_t *values, tg_arena_t *a, tx_embedding_t *e)
{
    if (!json_is_array(values))
        return -1;
    size_t dim = json_array_size(values);
    float *v = tg_arena_alloc(a, (dim ? dim : 1) * sizeof(float));
    if (v == NULL)
        return -1;
    for (size_t j = 0; j < dim; j++) {
        const json_t *x = json_array_get(values, j);
        if (!json_is_number(x))
            return -1;
        v[j] = (float)json_number_value(x);
    }
    *e = (tx_embedding_t){.values = v, .n = dim};
    return 0;
}

int
tx_embeddings_from_json(const json_t *list, const char *who, tg_arena_t *a, tx_response_t *ret, tx_error_t *err)
{
    if (!json_is_array(list))
        return tx_fail(err, TX_ERR_UPSTREAM, "bad_upstream_response", NULL, "%s's embed response has no embeddings.",
                       who);
    size_t n = json_array_size(list);
    if ((ret->embeddings = tg_arena_alloc(a, (n ? n : 1) * sizeof(*ret->embeddings))) == NULL)
        return tx_oom(err);
    for (size_t i = 0; i < n; i++)
        if (tx_embedding_from_json(json_array_get(list, i), a, &ret->embeddings[i]) != 0)
            return tx_fail(err, TX_ERR_UPSTREAM, "bad_upstream_response", NULL,
                           "%s's embed response has an embedding that is not an array of numbers.", who);
    ret->n_embeddings = n;
    return 0;
}

/* ---------------------------------------------------------------- base64 */

char *
tx_base64_encode(const void *data, size_t len, tg_arena_t *a)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    char *out = tg_arena_alloc(a, (len + 2) / 3 * 4 + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

char *
tx_embedding_base64(const tx_embedding_t *e, tg_arena_t *a)
{
    unsigned char *bytes = tg_arena_alloc(a, e->n * 4 + 1);
    if (bytes == NULL)
        return NULL;
    for (size_t i = 0; i < e->n; i++) {
        uint32_t v;
        memcpy(&v, &e->values[i], 4);
        bytes[4 * i] = (unsigned char)v;
        bytes[4 * i + 1] = (unsigned char)(v >> 8);
        bytes[4 * i + 2] = (unsigned char)(v >> 16);
        bytes[4 * i + 3] = (unsigned char)(v >> 24);
    }
    return tx_base64_encode(bytes, e->n * 4, a);
}
