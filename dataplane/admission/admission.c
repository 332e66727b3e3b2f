/*
 * Admission (see admission.h): reservation against every applicable limit, parking, settlement.
 *
 * All or nothing: a request takes its reservations in the key's limit order; when one does not fit,
 * those taken are put back before it waits, so a waiting request never sits on allowance another one
 * could use. A parked request is retried on its worker's loop when the lease thread signals a grant
 * (uv_async) and on a 100 ms timer that also enforces the bounded wait.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "admission/admission.h"
#include "tollgate/clock.h"
#include "tollgate/env.h"
#include "tollgate/json_scan.h"
#include "tollgate/log.h"

#define RETRY_TICK_MS 100

struct dp_admission_worker {
    uv_async_t async; /* first: the close callbacks find the struct from it */
    uv_timer_t timer;
    dp_admission_t *parked;
    int closing;
};

static int64_t default_max_tokens = 4096;
static int64_t max_wait_ms = 3000;

static pthread_mutex_t workers_lock = PTHREAD_MUTEX_INITIALIZER;
static dp_admission_worker_t *workers[256];

void
dp_admission_configure(int64_t dmt, int64_t wait_ms)
{
    default_max_tokens = dmt;
    max_wait_ms = wait_ms;
}

/* ---------------------------------------------------------------- worst case */

int64_t
dp_admission_body_max_tokens(const char *body, size_t len)
{
    tg_json_iter_t it;
    tg_json_type_t type;
    tg_json_span_t k, v, g;
    int64_t best = 0, n;
    int rank = 9;
    if (tg_json_iter_init_text(&it, body, len, &type) != 0 || type != TG_JSON_OBJECT)
        return 0;
    while (tg_json_object_next(&it, &k, &v) == 1) {
        int r = tg_json_string_eq(k, "max_completion_tokens") ? 0
                : tg_json_string_eq(k, "max_tokens")          ? 1
                : tg_json_string_eq(k, "max_output_tokens")   ? 2
                                                              : 9;
        if (r == 9 && v.type == TG_JSON_OBJECT && tg_json_string_eq(k, "generationConfig") &&
            tg_json_object_get(v, "maxOutputTokens", &g) == 1) {
            v = g;
            r = 3;
        }
        if (r < rank && v.type == TG_JSON_NUMBER && tg_json_to_int64(v, &n) == 0 && n >= 0) {
            best = n;
            rank = r;
        }
    }
    return best;
}

void
dp_admission_worst_case(const dp_route_t *route, const char *body, size_t len, int embed, dp_worst_case_t *ret)
{
    /* Byte-level BPE tokenizers (every provider's chat models) never make more tokens than UTF-8 bytes
     * of text, and the text is no longer than the JSON body that carries it. */
    ret->prompt_tokens = (int64_t)len;
    int64_t out = embed ? 0 : dp_admission_body_max_tokens(body, len);
    if (!embed && out == 0)
        out = route->default_max_tokens > 0 ? route->default_max_tokens : default_max_tokens;
    ret->output_tokens = out;
    /* micro-USD per Mtok x tokens / 1000 = nano-USD, rounded up: W is never below the true cost */
    int64_t micro = ret->prompt_tokens * route->max_price.input + out * route->max_price.output;
    ret->cost_nanousd = (micro + 999) / 1000;
}

/* ---------------------------------------------------------------- reservation */

static int64_t
amount_for(const dp_admission_t *a, int kind)
{
    switch (kind) {
    case DP_LEASE_BUDGET:
        return a->w.cost_nanousd;
    case DP_LEASE_TOKENS:
        return a->w.prompt_tokens + a->w.output_tokens;
    default:
        return 1; /* a request, a slot */
    }
}

static void
put_back(dp_admission_t *a)
{
    for (int i = 0; i < a->n_holds; i++)
        dp_allowance_settle(a->holds[i].lease, a->holds[i].amount, 0);
    a->n_holds = 0;
}

static void
refuse(dp_admission_t *a, const dp_limit_t *l, int64_t now_ms)
{
    a->refused_by = l;
    if (l->kind == DP_LEASE_BUDGET) {
        a->status = 402;
        a->retry_after_s = 0;
    } else {
        a->status = 429;
        int64_t w = (int64_t)(l->kind == DP_LEASE_CONCURRENT ? 1 : l->window_s) * 1000;
        a->reset_ms = (now_ms / w + 1) * w;
        a->retry_after_s = (a->reset_ms - now_ms + 999) / 1000;
    }
}

/* 0 admitted, 1 wait, -1 refused. */
static int
try_reserve(dp_admission_t *a)
{
    int64_t now = tg_clock_now_ms();
    const dp_vkey_t *k = a->key;
    a->n_warn = 0;
    for (size_t i = 0; i < k->n_limits; i++) {
        const dp_limit_t *l = &a->snapshot->limits[k->limits[i]];
        if (l->model != NULL && (l->model_len != a->model_len || memcmp(l->model, a->model, a->model_len) != 0))
            continue;
        int64_t amount = amount_for(a, l->kind);
        if (amount <= 0)
            continue;
        if (amount > l->hard) { /* can never fit, however long it waits */
            put_back(a);
            refuse(a, l, now);
            return -1;
        }
        if (a->n_holds == DP_ADMISSION_MAX_HOLDS) {
            put_back(a);
            refuse(a, l, now);
            return -1;
        }
        dp_lease_t *lease;
        dp_reserve_result_t rv = dp_allowance_reserve(l->allowance, now, amount, &lease);
        if (rv == DP_RESERVE_OK) {
            a->holds[a->n_holds].lease = lease;
            a->holds[a->n_holds].amount = amount;
            a->holds[a->n_holds].kind = l->kind;
            a->n_holds++;
            if (l->kind == DP_LEASE_BUDGET && l->soft >= 0 && a->n_warn < DP_ADMISSION_MAX_WARN) {
                int64_t settled = dp_lease_settled(lease);
                if (settled >= 0 && settled >= l->soft) {
                    a->warn[a->n_warn].limit = l;
                    a->warn[a->n_warn].settled = settled;
                    a->n_warn++;
                }
            }
            continue;
        }
        put_back(a);
        if (rv == DP_RESERVE_EXHAUSTED) {
            refuse(a, l, now);
            return -1;
        }
        return 1;
    }
    a->admitted_ms = now; /* inside every lease's period: the usage record settles in that period */
    return 0;
}

/* nano-USD as a decimal USD amount without trailing zeros: 1500000000 -> "1.5" */
static size_t
usd(char *buf, size_t size, int64_t nano)
{
    int n = snprintf(buf, size, "%s%lld.%09lld", nano < 0 ? "-" : "", (long long)(llabs(nano) / 1000000000),
                     (long long)(llabs(nano) % 1000000000));
    if (n < 0 || (size_t)n >= size)
        return 0;
    while (buf[n - 1] == '0')
        n--;
    if (buf[n - 1] == '.')
        n--;
    buf[n] = '\0';
    return (size_t)n;
}

size_t
dp_admission_warning(const dp_admission_t *a, int i, char *buf, size_t size)
{
    const dp_limit_t *l = a->warn[i].limit;
    char spent[32], soft[32], hard[32];
    usd(spent, sizeof(spent), a->warn[i].settled);
    usd(soft, sizeof(soft), l->soft);
    usd(hard, sizeof(hard), l->hard);
    int n = snprintf(buf, size, "budget=%s; spent_usd=%s; soft_usd=%s; hard_usd=%s", l->id, spent, soft, hard);
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

static void
unpark(dp_admission_t *a)
{
    dp_admission_worker_t *w = a->worker;
    if (!a->parked)
        return;
    if (a->prev != NULL)
        a->prev->next = a->next;
    else
        w->parked = a->next;
    if (a->next != NULL)
        a->next->prev = a->prev;
    a->prev = a->next = NULL;
    a->parked = 0;
    if (w->parked == NULL)
        uv_timer_stop(&w->timer);
}

static void
retry_parked(dp_admission_worker_t *w, int tick)
{
    uint64_t now = tg_mono_ns();
    dp_admission_t *a = w->parked, *next;
    for (; a != NULL; a = next) {
        next = a->next;
        int rv = try_reserve(a);
        if (rv == 1 && !(tick && now >= a->deadline_ns))
            continue;
        unpark(a);
        if (rv == 1) {
            a->status = 503; /* no answer from the control plane in time: fail closed, never overspend */
            a->refused_by = NULL;
            a->retry_after_s = 1;
        }
        a->on_ready(a, rv == 0); /* may free the exchange, and with it a: next was taken before */
    }
}

static void
on_async(uv_async_t *h)
{
    retry_parked((dp_admission_worker_t *)h, 0);
}

static void
on_tick(uv_timer_t *t)
{
    retry_parked(t->data, 1);
}

int
dp_admission_begin(dp_admission_t *a, dp_admission_worker_t *w, const dp_snapshot_t *s, const dp_vkey_t *key,
                   const char *model, size_t model_len, const dp_worst_case_t *wc)
{
    a->snapshot = s;
    a->key = key;
    a->model = model;
    a->model_len = model_len;
    a->w = *wc;
    a->worker = w;
    if (key->n_limits == 0)
        return 0;
    int rv = try_reserve(a);
    if (rv != 1)
        return rv;
    if (w == NULL || w->closing) {
        a->status = 503;
        a->retry_after_s = 1;
        return -1;
    }
    a->deadline_ns = tg_mono_ns() + (uint64_t)max_wait_ms * 1000000ull;
    a->parked = 1;
    a->prev = NULL;
    a->next = w->parked;
    if (w->parked != NULL)
        w->parked->prev = a;
    w->parked = a;
    if (!uv_is_active((uv_handle_t *)&w->timer))
        uv_timer_start(&w->timer, on_tick, RETRY_TICK_MS, RETRY_TICK_MS);
    return 1;
}

void
dp_admission_settle(dp_admission_t *a, int64_t cost_nanousd, int64_t tokens)
{
    if (a->done)
        return;
    a->done = 1;
    unpark(a);
    for (int i = 0; i < a->n_holds; i++) {
        int64_t actual;
        switch (a->holds[i].kind) {
        case DP_LEASE_BUDGET:
            actual = cost_nanousd;
            break;
        case DP_LEASE_TOKENS:
            actual = tokens;
            break;
        case DP_LEASE_REQUESTS:
            actual = 1; /* a request admitted is a request counted */
            break;
        default:
            actual = 0; /* a concurrency slot comes back */
        }
        dp_allowance_settle(a->holds[i].lease, a->holds[i].amount, actual);
    }
    a->n_holds = 0;
}

/* ---------------------------------------------------------------- workers */

dp_admission_worker_t *
dp_admission_worker_new(uv_loop_t *loop)
{
    dp_admission_worker_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    uv_async_init(loop, &w->async, on_async);
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    pthread_mutex_lock(&workers_lock);
    for (size_t i = 0; i < sizeof(workers) / sizeof(workers[0]); i++)
        if (workers[i] == NULL) {
            workers[i] = w;
            break;
        }
    pthread_mutex_unlock(&workers_lock);
    return w;
}

static void
on_timer_closed(uv_handle_t *h)
{
    free(((uv_timer_t *)h)->data);
}

static void
on_async_closed(uv_handle_t *h)
{
    dp_admission_worker_t *w = (dp_admission_worker_t *)h;
    uv_close((uv_handle_t *)&w->timer, on_timer_closed);
}

void
dp_admission_worker_free(dp_admission_worker_t *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&workers_lock);
    for (size_t i = 0; i < sizeof(workers) / sizeof(workers[0]); i++)
        if (workers[i] == w)
            workers[i] = NULL;
    pthread_mutex_unlock(&workers_lock);
    w->closing = 1;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->async, on_async_closed);
}

void
dp_admission_wake_all(void)
{
    pthread_mutex_lock(&workers_lock);
    for (size_t i = 0; i < sizeof(workers) / sizeof(workers[0]); i++)
        if (workers[i] != NULL)
            uv_async_send(&workers[i]->async);
    pthread_mutex_unlock(&workers_lock);
}
