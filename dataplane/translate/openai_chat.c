/* Scan and splice planning for OpenAI chat requests (see openai_chat.h). */
#include <string.h>
#include "translate/openai_chat.h"

int
dp_openai_chat_parse(const char *body, size_t len, dp_openai_chat_t *ret)
{
    tg_json_span_t k, v;
    tg_json_iter_t it;
    tg_json_type_t type;
    int rv, cut_next = 0;
    const char *prev_end = NULL; /* the end of the previous member's value */
    memset(ret, 0, sizeof(*ret));
    if (body == NULL || tg_json_iter_init_text(&it, body, len, &type) != 0 || type != TG_JSON_OBJECT)
        return -1;
    while ((rv = tg_json_object_next(&it, &k, &v)) == 1) {
        if (cut_next) { /* `fallbacks` came first: cut up to this member's key, its comma included */
            ret->fallbacks_cut_len = (size_t)(k.p - ret->fallbacks_cut);
            cut_next = 0;
        }
        if (tg_json_string_eq(k, "fallbacks")) {
            ret->fallbacks = v;
            if (prev_end != NULL) { /* from the end of the member before: ", "fallbacks": [...] */
                ret->fallbacks_cut = prev_end;
                ret->fallbacks_cut_len = (size_t)(v.p + v.len - prev_end);
            } else { /* the first member: up to the next one, or alone */
                ret->fallbacks_cut = k.p;
                ret->fallbacks_cut_len = (size_t)(v.p + v.len - k.p);
                cut_next = 1;
            }
        } else if (tg_json_string_eq(k, "model"))
            ret->model = v;
        else if (tg_json_string_eq(k, "stream"))
            ret->stream = v.type == TG_JSON_TRUE;
        else if (tg_json_string_eq(k, "stream_options"))
            ret->stream_options = v;
        else if (tg_json_string_eq(k, "messages"))
            ret->messages = v;
        prev_end = v.p + v.len;
    }
    return rv == 0 && tg_json_iter_finish(&it, &ret->top) == 0 ? 0 : -1;
}

static void
add(dp_body_plan_t *p, const char *at, size_t remove, const char *insert, size_t insert_len)
{
    size_t i = p->n++;
    while (i > 0 && p->splices[i - 1].at > at) {
        p->splices[i] = p->splices[i - 1];
        i--;
    }
    p->splices[i] = (dp_splice_t){at, remove, insert, insert_len};
    p->delta += (long)insert_len - (long)remove;
}

#define LIT(s) s, sizeof(s) - 1

void
dp_openai_chat_plan(const dp_openai_chat_t *r, const char *upstream_model_json, size_t upstream_model_json_len,
                    dp_body_plan_t *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (r->model.type == TG_JSON_STRING &&
        (r->model.len != upstream_model_json_len || memcmp(r->model.p, upstream_model_json, r->model.len) != 0))
        add(ret, r->model.p, r->model.len, upstream_model_json, upstream_model_json_len);
    if (r->fallbacks_cut != NULL)
        add(ret, r->fallbacks_cut, r->fallbacks_cut_len, "", 0);
    if (!r->stream)
        return;
    const tg_json_span_t so = r->stream_options;
    tg_json_span_t inc;
    if (so.type == TG_JSON_OBJECT) {
        if (tg_json_object_get(so, "include_usage", &inc) == 1) {
            ret->client_wants_usage = inc.type == TG_JSON_TRUE;
            if (!ret->client_wants_usage)
                add(ret, inc.p, inc.len, LIT("true"));
        } else if (tg_json_is_empty(so)) {
            add(ret, so.p, so.len, LIT("{\"include_usage\":true}"));
        } else {
            add(ret, so.p + 1, 0, LIT("\"include_usage\":true,"));
        }
    } else if (so.type != TG_JSON_INVALID) {
        add(ret, so.p, so.len, LIT("{\"include_usage\":true}"));
    } else {
        if (tg_json_is_empty(r->top))
            add(ret, r->top.p + r->top.len - 1, 0, LIT("\"stream_options\":{\"include_usage\":true}"));
        else
            add(ret, r->top.p + r->top.len - 1, 0, LIT(",\"stream_options\":{\"include_usage\":true}"));
    }
}

void
dp_body_plan_apply(const dp_body_plan_t *plan, const char *body, size_t len, char *out)
{
    const char *r = body;
    for (size_t i = 0; i < plan->n; i++) {
        const dp_splice_t *s = &plan->splices[i];
        memcpy(out, r, s->at - r);
        out += s->at - r;
        memcpy(out, s->insert, s->insert_len);
        out += s->insert_len;
        r = s->at + s->remove;
    }
    memcpy(out, r, body + len - r);
}
