/*
 * A region allocator: many small allocations, one release. The translation layer builds a request's
 * neutral representation in one arena, which the request frees when it ends. Cleanups registered with
 * tg_arena_defer run at free, in reverse order (for objects owned elsewhere, such as a JSON tree).
 */
#ifndef TG_ARENA_H
#define TG_ARENA_H

#include <stddef.h>

typedef struct tg_arena_chunk tg_arena_chunk_t;
typedef struct tg_arena_cleanup tg_arena_cleanup_t;

typedef struct tg_arena {
    tg_arena_chunk_t *chunk;
    tg_arena_cleanup_t *cleanups;
    size_t total; /* bytes handed out, for limits */
    size_t max;   /* 0: no limit */
} tg_arena_t;

#define TG_ARENA_INIT                                                                                                  \
    {                                                                                                                  \
        0                                                                                                              \
    }

/* Zeroed memory aligned for any type, or NULL when out of memory or over the arena's max. */
void *tg_arena_alloc(tg_arena_t *a, size_t size);
char *tg_arena_strndup(tg_arena_t *a, const char *s, size_t len);
char *tg_arena_strdup(tg_arena_t *a, const char *s);
char *tg_arena_sprintf(tg_arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Runs fn(p) when the arena is freed. -1 when out of memory (fn(p) is then run at once). */
int tg_arena_defer(tg_arena_t *a, void (*fn)(void *), void *p);
void tg_arena_free(tg_arena_t *a);

#endif
