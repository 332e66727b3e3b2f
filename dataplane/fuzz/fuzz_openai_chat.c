/* Fuzz target: scanning and rewriting a chat request; every rewritten body must still be valid JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "translate/openai_chat.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = malloc(size ? size : 1);
    memcpy(body, data, size);
    dp_openai_chat_t r;
    if (dp_openai_chat_parse(body, size, &r) == 0) {
        dp_body_plan_t plan;
        dp_openai_chat_plan(&r, "\"upstream-model\"", 16, &plan);
        size_t out_len = size + plan.delta;
        char *out = malloc(out_len + 1);
        dp_body_plan_apply(&plan, body, size, out);
        tg_json_span_t v;
        if (tg_json_parse(out, out_len, &v) != 0)
            abort();
        free(out);
    }
    free(body);
    return 0;
}
