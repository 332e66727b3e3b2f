/*
 * The controllable governance clock (see clock.h). The offset is one atomic: readers on every worker
 * thread pay a relaxed load; the hooks flag is read from the environment once.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "tollgate/clock.h"
#include "tollgate/env.h"

#define MAX_OFFSET_MS (10ll * 366 * 86400 * 1000)

static atomic_llong offset_ms;
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;
static int hooks;

static void
read_hooks(void)
{
    const char *v = getenv("TOLLGATE_TEST_HOOKS");
    hooks = v != NULL && strcmp(v, "1") == 0;
}

int
tg_clock_test_hooks(void)
{
    pthread_once(&hooks_once, read_hooks);
    return hooks;
}

int64_t
tg_clock_now_ms(void)
{
    return tg_now_unix_ms() + atomic_load_explicit(&offset_ms, memory_order_relaxed);
}

int
tg_clock_set_offset_ms(int64_t v)
{
    if (!tg_clock_test_hooks() || v > MAX_OFFSET_MS || v < -MAX_OFFSET_MS)
        return -1;
    atomic_store(&offset_ms, v);
    return 0;
}

int64_t
tg_clock_offset_ms(void)
{
    return atomic_load(&offset_ms);
}
