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
/* Appends s as a quoted, escaped JSON string. */
int tg_buf_append_json_string(tg_buf_t *b, const char *s, size_t len);
void tg_buf_free(tg_buf_t *b);

#endif
