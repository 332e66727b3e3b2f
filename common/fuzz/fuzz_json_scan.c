/* Fuzz target: the JSON scanner must never read out of bounds, and whatever it accepts it must walk. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tollgate/json_scan.h"

static void
walk(tg_json_span_t v, int depth)
{
    tg_json_iter_t it;
    tg_json_span_t k, x;
    char buf[64];
    size_t len;
    int64_t n;
    if (depth > 8)
        return;
    switch (v.type) {
    case TG_JSON_OBJECT:
        tg_json_iter_init(&it, v);
        while (tg_json_object_next(&it, &k, &x) == 1) {
            tg_json_string_decode(k, buf, sizeof(buf), &len);
            walk(x, depth + 1);
        }
        break;
    case TG_JSON_ARRAY:
        tg_json_iter_init(&it, v);
        while (tg_json_array_next(&it, &x) == 1)
            walk(x, depth + 1);
        break;
    case TG_JSON_STRING:
        tg_json_string_decode(v, buf, sizeof(buf), &len);
        break;
    case TG_JSON_NUMBER:
        tg_json_to_int64(v, &n);
        break;
    default:
        break;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy, so that reads past the end are caught by the sanitizers */
    char *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    tg_json_span_t v;
    int parsed = tg_json_parse(copy, size, &v) == 0;

    /* the one-pass walk of a whole text must agree with tg_json_parse about containers */
    tg_json_iter_t it;
    tg_json_type_t type;
    if (tg_json_iter_init_text(&it, copy, size, &type) == 0) {
        tg_json_span_t k, x, top;
        int rv;
        if (type == TG_JSON_OBJECT)
            while ((rv = tg_json_object_next(&it, &k, &x)) == 1)
                ;
        else
            while ((rv = tg_json_array_next(&it, &x)) == 1)
                ;
        int walked = rv == 0 && tg_json_iter_finish(&it, &top) == 0;
        if (walked != parsed || (walked && (top.p != v.p || top.len != v.len)))
            abort();
    }

    if (parsed) {
        walk(v, 0);
        tg_json_span_t m;
        tg_json_object_get(v, "model", &m);
        /* the pre-check may say "maybe" too often, never "no" when the member is there */
        if (tg_json_object_get(v, "usage", &m) == 1 && m.type == TG_JSON_OBJECT &&
            (!tg_json_may_have_object_member(copy, size, "usage", NULL) ||
             !tg_json_may_have_object_member(copy, size, "error", "usage")))
            abort();
        char *q = malloc(6 * size + 2);
        tg_json_quote(q, copy, size);
        free(q);
    }
    free(copy);
    return 0;
}
