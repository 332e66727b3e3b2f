/* Region allocator (see tollgate/arena.h): chunks of at least 8 KiB, bump allocation, one release. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tollgate/arena.h"

#define CHUNK_MIN 8192
#define ALIGN     16

struct tg_arena_chunk {
    tg_arena_chunk_t *next;
    size_t used, size;
    _Alignas(ALIGN) unsigned char data[];
};

struct tg_arena_cleanup {
    tg_arena_cleanup_t *next;
    void (*fn)(void *);
    void *p;
};

void *
tg_arena_alloc(tg_arena_t *a, size_t size)
{
    size = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (size == 0)
        size = ALIGN;
    if (a->max != 0 && (size > a->max || a->total > a->max - size))
        return NULL;
    tg_arena_chunk_t *c = a->chunk;
    if (c == NULL || c->size - c->used < size) {
        size_t csize = size > CHUNK_MIN ? size : CHUNK_MIN;
        if (csize > SIZE_MAX - sizeof(*c))
            return NULL;
        c = malloc(sizeof(*c) + csize);
        if (c == NULL)
            return NULL;
        c->used = 0;
        c->size = csize;
        c->next = a->chunk;
        a->chunk = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    a->total += size;
    memset(p, 0, size);
    return p;
}

char *
tg_arena_strndup(tg_arena_t *a, const char *s, size_t len)
{
    char *p = tg_arena_alloc(a, len + 1);
    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

char *
tg_arena_strdup(tg_arena_t *a, const char *s)
{
    return tg_arena_strndup(a, s, strlen(s));
}

char *
tg_arena_sprintf(tg_arena_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = tg_arena_alloc(a, (size_t)n + 1);
    if (p == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int
tg_arena_defer(tg_arena_t *a, void (*fn)(void *), void *p)
{
    tg_arena_cleanup_t *c = malloc(sizeof(*c));
    if (c == NULL) {
        fn(p);
        return -1;
    }
    c->fn = fn;
    c->p = p;
    c->next = a->cleanups;
    a->cleanups = c;
    return 0;
}

void
tg_arena_free(tg_arena_t *a)
{
    while (a->cleanups != NULL) {
        tg_arena_cleanup_t *c = a->cleanups;
        a->cleanups = c->next;
        c->fn(c->p);
        free(c);
    }
    while (a->chunk != NULL) {
        tg_arena_chunk_t *c = a->chunk;
        a->chunk = c->next;
        free(c);
    }
    a->total = 0;
}
