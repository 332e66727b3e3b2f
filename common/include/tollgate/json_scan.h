/*
 * A validating, non-allocating JSON scanner for the request hot path.
 *
 * The gateway forwards bodies nearly untouched, so it never builds a DOM of a whole body: it walks the
 * members of an object, gets each value as a span of the original text, and rewrites a few spans. The
 * iterator validates every value it steps over (RFC 8259 grammar, nesting at most TG_JSON_MAX_DEPTH),
 * so walking an object to its end validates it. Strings are checked for grammar and control characters,
 * not for UTF-8 well-formedness (the upstream does that).
 *
 * Return contract of the *_next functions: 1 a member/element was produced, 0 the container ended,
 * -1 the text is invalid.
 */
#ifndef TOLLGATE_JSON_SCAN_H
#define TOLLGATE_JSON_SCAN_H

#include <stddef.h>
#include <stdint.h>

#define TG_JSON_MAX_DEPTH 128

typedef enum tg_json_type {
    TG_JSON_INVALID = 0,
    TG_JSON_OBJECT,
    TG_JSON_ARRAY,
    TG_JSON_STRING,
    TG_JSON_NUMBER,
    TG_JSON_TRUE,
    TG_JSON_FALSE,
    TG_JSON_NULL,
} tg_json_type_t;

/* A value in the original text. For strings the span includes the quotes. */
typedef struct tg_json_span {
    const char *p;
    size_t len;
    tg_json_type_t type;
} tg_json_span_t;

typedef struct tg_json_iter {
    const char *start; /* the container's opening bracket */
    const char *p, *end;
    int depth; /* of the container being iterated */
    int first;
} tg_json_iter_t;

/* Parses one complete JSON text (surrounding white space allowed). 0 and the top value, or -1. */
int tg_json_parse(const char *s, size_t len, tg_json_span_t *ret_value);

/* Starts iterating an object or array span produced by this module. -1 if the span is of another type. */
int tg_json_iter_init(tg_json_iter_t *it, tg_json_span_t container);
/*
 * Iterates the object or array that a whole JSON text consists of, validating as it goes: one pass
 * where tg_json_parse() followed by an iteration would make two. After a *_next call returned 0,
 * tg_json_iter_finish() checks that only white space follows and gives the container's span.
 */
int tg_json_iter_init_text(tg_json_iter_t *it, const char *s, size_t len, tg_json_type_t *ret_type);
int tg_json_iter_finish(tg_json_iter_t *it, tg_json_span_t *ret_container);

int tg_json_object_next(tg_json_iter_t *it, tg_json_span_t *ret_key, tg_json_span_t *ret_value);
int tg_json_array_next(tg_json_iter_t *it, tg_json_span_t *ret_value);

/* Finds a member by key (keys compared after unescaping). 1 found, 0 absent, -1 invalid. */
int tg_json_object_get(tg_json_span_t object, const char *key, tg_json_span_t *ret_value);

/* 1 when the string span equals `lit` (after unescaping), else 0. */
int tg_json_string_eq(tg_json_span_t s, const char *lit);

/* Unescapes a string span into out (UTF-8). 0 and the length, or -1 when it does not fit or is invalid. */
int tg_json_string_decode(tg_json_span_t s, char *out, size_t cap, size_t *ret_len);

/* An integer number span into int64 (no fraction or exponent). 0 or -1. */
int tg_json_to_int64(tg_json_span_t s, int64_t *ret);

/* 1 for an empty array or object span, 0 otherwise. */
int tg_json_is_empty(tg_json_span_t s);

/* A pre-check before a walk, on text not yet validated: 0 when no object member named `name` or `name2`
 * (NULL: none; plain letters, no quote or backslash) whose value is an object can exist in s[0..len)
 * at any depth; 1 when one may. It looks for `"name"`, whitespace, ':', whitespace, '{' and, since a key
 * can spell a letter only with a \u escape, for any "\u". One pass, 16 bytes at a time. */
int tg_json_may_have_object_member(const char *s, size_t len, const char *name, const char *name2);

/* Writes `s` as a quoted JSON string into out, which holds at least 6 * len + 2 bytes. Returns the length. */
size_t tg_json_quote(char *out, const char *s, size_t len);

#endif
