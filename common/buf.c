/* Growable byte buffers (see tollgate/buf.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tollgate/buf.h"
#include "tollgate/json_scan.h"

int
tg_buf_reserve(tg_buf_t *b, size_t more)
{
    if (more <= b->cap - b->len)
        return 0;
    if (b->max != 0 && b->len + more > b->max)
        return -1;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more)
        cap *= 2;
    if (b->max != 0 && cap > b->max)
        cap = b->max;
    char *n = realloc(b->base, cap);
    if (n == NULL)
        return -1;
    b->base = n;
    b->cap = cap;
    return 0;
}

int
tg_buf_append(tg_buf_t *b, const void *p, size_t len)
{
    if (len == 0)
        return 0;
    if (tg_buf_reserve(b, len) != 0)
        return -1;
    memcpy(b->base + b->len, p, len);
    b->len += len;
    return 0;
}

int
tg_buf_appends(tg_buf_t *b, const char *s)
{
    return tg_buf_append(b, s, strlen(s));
}

size_t
tg_fmt_u64(char *out, unsigned long long v)
{
    char tmp[TG_U64_DIGITS];
    size_t n = sizeof(tmp);
    do {
        tmp[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    memcpy(out, tmp + n, sizeof(tmp) - n);
    return sizeof(tmp) - n;
}

int
tg_buf_append_u64(tg_buf_t *b, unsigned long long v)
{
    char d[TG_U64_DIGITS];
    return tg_buf_append(b, d, tg_fmt_u64(d, v));
}

int
tg_buf_appendf(tg_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    /* one formatting pass when the text fits the room already there (the usual case), two otherwise */
    size_t room = b->cap - b->len;
    va_start(ap, fmt);
    int n = vsnprintf(room > 0 ? b->base + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < room) {
        b->len += (size_t)n;
        return 0;
    }
    if (n < 0 || tg_buf_reserve(b, (size_t)n + 1) != 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->base + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int
tg_buf_append_json_string(tg_buf_t *b, const char *s, size_t len)
{
    if (tg_buf_reserve(b, 6 * len + 2) != 0)
        return -1;
    b->len += tg_json_quote(b->base + b->len, s, len);
    return 0;
}

void
tg_buf_free(tg_buf_t *b)
{
    free(b->base);
    b->base = NULL;
    b->len = b->cap = 0;
}
