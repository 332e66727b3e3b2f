/* Fuzz target: an upstream HTTP/1.1 response (h1.c), head and body framing fed in two pieces split at a
 * point the input's first byte chooses, as socket reads arrive. Framing never reads or writes outside the
 * buffer and never returns more body than it was given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "upstream/h1.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t split = data[0] % size;
    data++;
    size--;
    char *buf = malloc(size ? size : 1);
    size_t have = 0, fed = 0;
    int head = 0;
    dp_h1_response_t r;
    size_t cuts[2] = {split < size ? split : size, size};
    for (int step = 0; step < 2; step++) {
        memcpy(buf + have, data + fed, cuts[step] - fed);
        have += cuts[step] - fed;
        fed = cuts[step];
        if (!head) {
            int n = dp_h1_parse_head(&r, buf, have);
            if (n < 0)
                break;
            if (n == 0)
                continue;
            memmove(buf, buf + n, have - (size_t)n);
            have -= (size_t)n;
            head = 1;
        }
        size_t len = have, extra;
        int rc = dp_h1_body(&r, buf, &len, &extra);
        if (len > have || extra > have || (rc == DP_H1_END && len + extra > have))
            abort();
        have = 0;
        if (rc != DP_H1_MORE)
            break;
    }
    free(buf);
    return 0;
}
