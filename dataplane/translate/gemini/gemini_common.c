/*
 * Shared pieces of the Gemini dialect and the Gemini/Vertex providers (see gemini_internal.h): status
 * names, finish reasons, usage, google.rpc errors, and the two schema conversions.
 *
 * The schema conversions are the delicate part. Gemini's `parameters` and `responseSchema` take an
 * OpenAPI-3 subset and answer 400 to keywords they do not know (additionalProperties, $schema, $ref,
 * most `format`s), so going to Gemini we keep a whitelist and rewrite the common JSON Schema idioms
 * (type arrays with "null", anyOf with a null branch, local $refs, single-element allOf, const) into
 * what Gemini understands. Coming from a Gemini client we only undo Gemini's own spellings.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include "translate/gemini/gemini_internal.h"

/* ---------------------------------------------------------------- statuses and stop reasons */

const char *
tx_gemini_status_name(int s)
{
    switch (s) {
    case 400:
        return "INVALID_ARGUMENT";
    case 401:
        return "UNAUTHENTICATED";
    case 402:
        return "FAILED_PRECONDITION";
    case 403:
        return "PERMISSION_DENIED";
    case 404:
        return "NOT_FOUND";
    case 409:
        return "ABORTED";
    case 429:
        return "RESOURCE_EXHAUSTED";
    case 499:
        return "CANCELLED";
    case 500:
        return "INTERNAL";
    case 501:
        return "UNIMPLEMENTED";
    case 502:
    case 503:
    case 529:
        return "UNAVAILABLE";
    case 504:
        return "DEADLINE_EXCEEDED";
    default:
        return s >= 500 ? "INTERNAL" : "INVALID_ARGUMENT";
    }
}

tx_stop_t
tx_gemini_stop_of(const char *r)
{
    static const char *const filters[] = {"SAFETY",
                                          "RECITATION",
                                          "BLOCKLIST",
                                          "PROHIBITED_CONTENT",
                                          "SPII",
                                          "IMAGE_SAFETY",
                                          "LANGUAGE",
                                          "IMAGE_PROHIBITED_CONTENT",
                                          "IMAGE_RECITATION"};
    if (r == NULL)
        return TX_STOP_UNSET;
    if (strcmp(r, "STOP") == 0)
        return TX_STOP_END;
    if (strcmp(r, "MAX_TOKENS") == 0)
        return TX_STOP_MAX_TOKENS;
    for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++)
        if (strcmp(r, filters[i]) == 0)
            return TX_STOP_CONTENT_FILTER;
    if (strcmp(r, "MALFORMED_FUNCTION_CALL") == 0 || strcmp(r, "UNEXPECTED_TOOL_CALL") == 0 ||
        strcmp(r, "TOO_MANY_TOOL_CALLS") == 0 || strcmp(r, "OTHER") == 0)
        return TX_STOP_ERROR;
    return TX_STOP_END; /* FINISH_REASON_UNSPECIFIED and values added later: the raw value is logged */
}

const char *
tx_gemini_finish_reason(tx_stop_t stop)
{
    switch (stop) {
    case TX_STOP_MAX_TOKENS:
        return "MAX_TOKENS";
    case TX_STOP_CONTENT_FILTER:
        return "SAFETY";
    case TX_STOP_ERROR:
        return "OTHER";
    default:
        return "STOP"; /* natural end, stop sequence, tool use (Gemini's own behaviour), pause */
    }
}

/* ---------------------------------------------------------------- usage and errors */

static int64_t
count(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
}

tx_usage_t
tx_gemini_usage(const json_t *um)
{
    tx_usage_t u = {0};
    /* Vertex streams send {"trafficType":...} alone before the counts: that is no usage yet */
    if (json_object_get(um, "promptTokenCount") == NULL && json_object_get(um, "totalTokenCount") == NULL)
        return u;
    int64_t thoughts = count(um, "thoughtsTokenCount");
    /* promptTokenCount already includes the cached tokens; tool-use prompt tokens (search results fed
     * back to the model) are billed as input but reported apart */
    u = tx_usage_make(count(um, "promptTokenCount") + count(um, "toolUsePromptTokenCount"),
                      count(um, "candidatesTokenCount") + thoughts, count(um, "cachedContentTokenCount"), 0);
    u.reasoning = thoughts;
    return u;
}

static void
lower_into(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src != NULL && src[i] != '\0' && i + 1 < cap; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[i] = '\0';
}

void
tx_gemini_error_from_rpc(const json_t *error, int http_status, tx_error_t *e)
{
    json_t *code = json_object_get(error, "code");
    int status = http_status;
    if (status == 0 && json_is_integer(code) && json_integer_value(code) >= 400 && json_integer_value(code) <= 599)
        status = (int)json_integer_value(code);
    if (status == 0)
        status = 500;
    const char *message = tx_json_str(error, "message");
    const char *gstatus = tx_json_str(error, "status");
    const char *reason = NULL;
    json_t *details = json_object_get(error, "details"), *d;
    size_t i;
    json_array_foreach(details, i, d)
    {
        const char *type = tx_json_str(d, "@type");
        if (type != NULL && strstr(type, "google.rpc.ErrorInfo") != NULL && tx_json_str(d, "reason") != NULL) {
            reason = tx_json_str(d, "reason");
            break;
        }
    }

    tx_error_kind_t kind = tx_error_kind_of_status(status);
    if (reason != NULL && strcmp(reason, "API_KEY_INVALID") == 0)
        kind = TX_ERR_AUTHENTICATION; /* Google answers a bad key with 400 */
    else if (gstatus != NULL && strcmp(gstatus, "UNAUTHENTICATED") == 0)
        kind = TX_ERR_AUTHENTICATION;
    else if (gstatus != NULL && strcmp(gstatus, "PERMISSION_DENIED") == 0)
        kind = TX_ERR_PERMISSION;
    else if (gstatus != NULL && strcmp(gstatus, "RESOURCE_EXHAUSTED") == 0)
        kind = TX_ERR_RATE_LIMIT;
    else if (gstatus != NULL && strcmp(gstatus, "UNAVAILABLE") == 0)
        kind = TX_ERR_OVERLOADED;
    else if (gstatus != NULL && strcmp(gstatus, "DEADLINE_EXCEEDED") == 0)
        kind = TX_ERR_TIMEOUT;

    char ccode[64];
    if (message != NULL && strstr(message, "input token count") != NULL && strstr(message, "exceeds") != NULL)
        snprintf(ccode, sizeof(ccode), "context_length_exceeded");
    else
        lower_into(ccode, sizeof(ccode), reason != NULL ? reason : gstatus);
    if (message == NULL || message[0] == '\0')
        tx_fail(e, kind, ccode, NULL, "The provider answered %d%s%s.", status, gstatus ? " " : "",
                gstatus ? gstatus : "");
    else
        tx_fail(e, kind, ccode, NULL, "%s", message);
    e->status = tx_error_kind_of_status(status) == kind ? status : 0;
}

/* ---------------------------------------------------------------- Gemini Schema -> JSON Schema */

static json_t *
to_json(const json_t *s, int depth)
{
    if (depth > TX_GEMINI_SCHEMA_MAX_DEPTH)
        return NULL;
    if (!json_is_object(s))
        return json_deep_copy(s);
    json_t *out = json_object();
    const char *key;
    json_t *v;
    int nullable = json_is_true(json_object_get(s, "nullable"));
    json_object_foreach((json_t *)s, key, v)
    {
        json_t *c = NULL;
        if (strcmp(key, "nullable") == 0 || strcmp(key, "propertyOrdering") == 0)
            continue;
        if (strcmp(key, "type") == 0 && json_is_string(v)) {
            char t[32];
            lower_into(t, sizeof(t), json_string_value(v));
            c = nullable ? json_pack("[ss]", t, "null") : json_string(t);
        } else if (strcmp(key, "properties") == 0 && json_is_object(v)) {
            c = json_object();
            const char *pk;
            json_t *pv;
            json_object_foreach(v, pk, pv)
            {
                json_t *pc = to_json(pv, depth + 1);
                if (pc == NULL) {
                    json_decref(c);
                    json_decref(out);
                    return NULL;
                }
                json_object_set_new(c, pk, pc);
            }
        } else if (strcmp(key, "items") == 0) {
            c = to_json(v, depth + 1);
        } else if (strcmp(key, "anyOf") == 0 && json_is_array(v)) {
            c = json_array();
            size_t i;
            json_t *item;
            json_array_foreach(v, i, item)
            {
                json_t *ic = to_json(item, depth + 1);
                if (ic == NULL) {
                    json_decref(c);
                    c = NULL;
                    break;
                }
                json_array_append_new(c, ic);
            }
        } else {
            c = json_deep_copy(v);
        }
        if (c == NULL) {
            json_decref(out);
            return NULL;
        }
        json_object_set_new(out, key, c);
    }
    return out;
}

json_t *
tx_gemini_schema_to_json(const json_t *s)
{
    return json_is_object(s) ? to_json(s, 0) : NULL;
}

/* ---------------------------------------------------------------- JSON Schema -> Gemini Schema */

static const char *const KEEP[] = {
    "description", "title",     "required", "minItems",      "maxItems",      "minimum",          "maximum",
    "minLength",   "maxLength", "pattern",  "minProperties", "maxProperties", "propertyOrdering",
};

static const char *
gemini_type(const char *t)
{
    static const char *const names[][2] = {
        {"string", "STRING"}, {"number", "NUMBER"}, {"integer", "INTEGER"}, {"boolean", "BOOLEAN"},
        {"array", "ARRAY"},   {"object", "OBJECT"}, {"null", "NULL"},
    };
    for (size_t i = 0; t != NULL && i < sizeof(names) / sizeof(names[0]); i++)
        if (strcasecmp(t, names[i][0]) == 0)
            return names[i][1];
    return NULL;
}

/* "#/$defs/X" or "#/definitions/X" in root; NULL when not a local ref we can follow. */
static const json_t *
resolve_ref(const json_t *root, const char *ref)
{
    const char *name;
    const json_t *defs;
    if (strncmp(ref, "#/$defs/", 8) == 0) {
        name = ref + 8;
        defs = json_object_get(root, "$defs");
    } else if (strncmp(ref, "#/definitions/", 14) == 0) {
        name = ref + 14;
        defs = json_object_get(root, "definitions");
    } else {
        return NULL;
    }
    return json_object_get(defs, name);
}

static int
is_null_schema(const json_t *s)
{
    const char *t = tx_json_str(s, "type");
    return t != NULL && strcmp(t, "null") == 0 && json_object_size(s) == 1;
}

/* A conversion: refs make a schema a graph, so its size is bounded apart from its depth. */
struct conv {
    const json_t *root;
    size_t nodes;
    int fail;
};

#define MAX_NODES 20000

/* Converts s; c->fail set when it nests too deep or grows too large. Returns NULL (without c->fail) for a
 * schema to drop. */
static json_t *
from_json(const json_t *s, struct conv *cv, int depth)
{
    if (depth > TX_GEMINI_SCHEMA_MAX_DEPTH || ++cv->nodes > MAX_NODES) {
        cv->fail = 1;
        return NULL;
    }
    if (!json_is_object(s))
        return NULL; /* `true`/`false` schemas have no Gemini spelling */

    const char *ref = tx_json_str(s, "$ref");
    json_t *all_of = json_object_get(s, "allOf");
    json_t *any_of = json_object_get(s, "anyOf");
    if (any_of == NULL)
        any_of = json_object_get(s, "oneOf");
    const json_t *inner = NULL;
    int nullable = 0;
    if (ref != NULL) {
        inner = resolve_ref(cv->root, ref);
        if (inner == NULL)
            return json_object(); /* a remote ref: an unconstrained value is the honest rendering */
    } else if (json_is_array(all_of) && json_array_size(all_of) == 1) {
        inner = json_array_get(all_of, 0); /* pydantic wraps a described $ref this way */
    } else if (json_is_array(any_of)) {
        /* Optional[X] is anyOf [X, {"type":"null"}]: Gemini says nullable */
        size_t n = 0, i;
        json_t *alt, *only = NULL;
        json_array_foreach(any_of, i, alt)
        {
            if (is_null_schema(alt))
                nullable = 1;
            else {
                n++;
                only = alt;
            }
        }
        if (n == 1)
            inner = only;
    }
    if (inner != NULL) {
        json_t *out = from_json(inner, cv, depth + 1);
        if (out == NULL)
            return NULL;
        const char *desc = tx_json_str(s, "description");
        if (desc != NULL)
            json_object_set_new(out, "description", json_string(desc));
        if (nullable)
            json_object_set_new(out, "nullable", json_true());
        return out;
    }

    json_t *out = json_object();
    const char *type = NULL;
    json_t *t = json_object_get(s, "type");
    if (json_is_string(t)) {
        type = gemini_type(json_string_value(t));
    } else if (json_is_array(t)) { /* ["string","null"]: the first non-null type, nullable */
        size_t i;
        json_t *x;
        json_array_foreach(t, i, x)
        {
            const char *g = gemini_type(json_string_value(x));
            if (g != NULL && strcmp(g, "NULL") == 0)
                nullable = 1;
            else if (g != NULL && type == NULL)
                type = g;
        }
    }
    if (json_is_true(json_object_get(s, "nullable")))
        nullable = 1;

    json_t *en = json_object_get(s, "enum");
    json_t *cn = json_object_get(s, "const");
    if (json_is_string(cn) && en == NULL) {
        json_object_set_new(out, "enum", json_pack("[O]", cn));
        if (type == NULL)
            type = "STRING";
    } else if (json_is_array(en) && json_array_size(en) > 0) {
        int all_strings = 1;
        size_t i;
        json_t *x;
        json_array_foreach(en, i, x) all_strings &= json_is_string(x);
        /* Gemini enums are string-only; a numeric enum stays a plain number */
        if (all_strings && (type == NULL || strcmp(type, "STRING") == 0)) {
            json_object_set(out, "enum", en);
            type = "STRING";
        }
    }
    if (type != NULL && strcmp(type, "NULL") == 0) {
        type = "STRING"; /* a lone null: the nearest thing Gemini accepts everywhere */
        nullable = 1;
    }
    if (type != NULL)
        json_object_set_new(out, "type", json_string(type));
    if (nullable)
        json_object_set_new(out, "nullable", json_true());

    const char *fmt = tx_json_str(s, "format");
    if (fmt != NULL && type != NULL &&
        ((strcmp(type, "STRING") == 0 && (strcmp(fmt, "enum") == 0 || strcmp(fmt, "date-time") == 0)) ||
         (strcmp(type, "NUMBER") == 0 && (strcmp(fmt, "float") == 0 || strcmp(fmt, "double") == 0)) ||
         (strcmp(type, "INTEGER") == 0 && (strcmp(fmt, "int32") == 0 || strcmp(fmt, "int64") == 0))))
        json_object_set_new(out, "format", json_string(fmt));

    for (size_t i = 0; i < sizeof(KEEP) / sizeof(KEEP[0]); i++) {
        json_t *v = json_object_get(s, KEEP[i]);
        if (v != NULL && strcmp(KEEP[i], "required") != 0)
            json_object_set(out, KEEP[i], v);
    }

    json_t *props = json_object_get(s, "properties");
    if (json_is_object(props)) {
        json_t *p = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(props, k, v)
        {
            json_t *c = from_json(v, cv, depth + 1);
            if (cv->fail) {
                json_decref(p);
                json_decref(out);
                return NULL;
            }
            json_object_set_new(p, k, c != NULL ? c : json_object());
        }
        if (json_object_size(p) > 0) /* Gemini rejects an empty properties object */
            json_object_set_new(out, "properties", p);
        else
            json_decref(p);
        /* `required` may only name properties that exist */
        json_t *req = json_object_get(s, "required"), *r = json_array(), *x;
        size_t i;
        json_array_foreach(req, i, x) if (json_is_string(x) && json_object_get(p, json_string_value(x)) != NULL)
            json_array_append(r, x);
        if (json_array_size(r) > 0 && json_object_get(out, "properties") != NULL)
            json_object_set_new(out, "required", r);
        else
            json_decref(r);
    }

    json_t *items = json_object_get(s, "items");
    if (items != NULL) {
        json_t *c = from_json(items, cv, depth + 1);
        if (cv->fail) {
            json_decref(out);
            return NULL;
        }
        if (c != NULL)
            json_object_set_new(out, "items", c);
    }

    if (json_is_array(any_of) && json_array_size(any_of) > 0) {
        json_t *alts = json_array(), *alt;
        size_t i;
        json_array_foreach(any_of, i, alt)
        {
            if (is_null_schema(alt))
                continue;
            json_t *c = from_json(alt, cv, depth + 1);
            if (cv->fail) {
                json_decref(alts);
                json_decref(out);
                return NULL;
            }
            if (c != NULL)
                json_array_append_new(alts, c);
        }
        if (json_array_size(alts) > 0)
            json_object_set_new(out, "anyOf", alts);
        else
            json_decref(alts);
        if (nullable)
            json_object_set_new(out, "nullable", json_true());
    }
    return out;
}

json_t *
tx_gemini_schema_from_json(const json_t *s)
{
    struct conv cv = {.root = s};
    json_t *out = from_json(s, &cv, 0);
    if (cv.fail) {
        json_decref(out);
        return NULL;
    }
    return out;
}
