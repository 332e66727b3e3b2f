/*
 * A growable byte buffer (malloc'd), for bodies and stream output that are built piece by piece.
 * Functions return 0, or -1 when memory or the buffer's cap runs out (the buffer is then unchanged).
 */
#ifndef TG_BUF_H
#define TG_BUF_H

#include <stddef.h>

typedef struct tg_buf {
    char *base;
    size_t len, cap;
    size_t max; /* 0: no limit */
} tg_buf_t;

int tg_buf_reserve(tg_buf_t *b, size_t more);
int tg_buf_append(tg_buf_t *b, const void *p, size_t len);
int tg_buf_appends(tg_buf_t *b, const char *s);
int tg_buf_appendf(tg_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes v in decimal to out (no terminator; 20 digits at most) and returns the digit count. printf is
 * ~10x slower for this, and the request path formats numbers on every request. */
#define TG_U64_DIGITS 20
size_t tg_fmt_u64(char *out, unsigned long long v);
int tg_buf_append_u64(tg_buf_t *b, unsigned long long v);
/* Appends s as a quoted, escaped JSON string. */
int tg_buf_append_json_string(tg_buf_t *b, const char *s, size_t len);
void tg_buf_free(tg_buf_t *b);

#endif
