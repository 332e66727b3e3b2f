/*
 * The metrics registry (tollgate/metrics.h): families of series updated with atomics, rendered in the
 * Prometheus text format 0.0.4.
 *
 * Each family keeps its series in two fixed arrays sized at registration: an open-addressing table of
 * atomic pointers (for lookups, which take no lock) and an insertion-ordered list (for rendering). A new
 * series is built completely, then published with a release store; readers load with acquire, so they
 * never see a half-built series. Series are never removed. Doubles (gauges, histogram sums) are stored
 * as their bit patterns in 64-bit atomics and updated with a compare-and-swap loop.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tollgate/metrics.h"

const double tg_metrics_latency_buckets[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,     0.25,   0.5,     1,      2.5,   5,      10,    20,   30,    60};
const size_t tg_metrics_latency_buckets_n = sizeof(tg_metrics_latency_buckets) / sizeof(tg_metrics_latency_buckets[0]);

struct tg_metric_series {
    const tg_metric_family_t *family; /* NULL only for the out-of-memory sink */
    char *values[TG_METRICS_MAX_LABELS];
    uint64_t hash;
    _Atomic uint64_t value;     /* counter: the count; gauge: double bits */
    _Atomic uint64_t sum;       /* histogram: double bits */
    _Atomic uint64_t buckets[]; /* histogram: n_bounds + 1 (the last is +Inf), not cumulative */
};

struct tg_metric_family {
    tg_metric_family_t *next;
    tg_metric_type_t type;
    char *name, *help;
    size_t n_labels;
    char *labels[TG_METRICS_MAX_LABELS];
    double bounds[TG_METRICS_MAX_BUCKETS];
    size_t n_bounds;
    size_t max_series;
    size_t mask;                          /* table size - 1 */
    _Atomic(tg_metric_series_t *) *table; /* lookups */
    tg_metric_series_t **list;            /* insertion order, max_series + 1 entries ("other" last) */
    _Atomic size_t n_list;
    size_t n_named; /* series other than "other" */
    _Atomic(tg_metric_series_t *) other;
    pthread_mutex_t lock; /* creating series */
};

typedef struct collector {
    struct collector *next;
    tg_metrics_collector_fn fn;
    void *ctx;
} collector_t;

struct tg_metrics {
    pthread_mutex_t lock; /* registration */
    tg_metric_family_t *first, **tail;
    collector_t *collectors, **ctail;
};

struct tg_metrics_emitter {
    tg_buf_t *out;
    char last[128];
    int err;
};

static const char *const OTHER_VALUES[TG_METRICS_MAX_LABELS] = {"other", "other", "other", "other",
                                                                "other", "other", "other", "other"};

/* ---------------------------------------------------------------- registry */

tg_metrics_t *
tg_metrics_new(void)
{
    tg_metrics_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    m->tail = &m->first;
    m->ctail = &m->collectors;
    return m;
}

static void
series_free(tg_metric_series_t *s, size_t n_labels)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < n_labels; i++)
        free(s->values[i]);
    free(s);
}

static void
family_free(tg_metric_family_t *f)
{
    size_t n = atomic_load(&f->n_list);
    for (size_t i = 0; i < n; i++)
        series_free(f->list[i], f->n_labels);
    for (size_t i = 0; i < f->n_labels; i++)
        free(f->labels[i]);
    free(f->name);
    free(f->help);
    free((void *)f->table);
    free(f->list);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

void
tg_metrics_free(tg_metrics_t *m)
{
    if (m == NULL)
        return;
    for (tg_metric_family_t *f = m->first, *next; f != NULL; f = next) {
        next = f->next;
        family_free(f);
    }
    for (collector_t *c = m->collectors, *next; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static int
valid_name(const char *s, int label)
{
    if (s == NULL || *s == '\0' || strlen(s) >= 128)
        return 0;
    for (const char *p = s; *p; p++) {
        int alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || (!label && *p == ':');
        if (!alpha && !(p > s && *p >= '0' && *p <= '9'))
            return 0;
    }
    return 1;
}

static tg_metric_family_t *
family_new(tg_metrics_t *m, tg_metric_type_t type, const char *name, const char *help, size_t n_labels,
           const char *const *labels, size_t max_series, const double *bounds, size_t n_bounds)
{
    if (m == NULL || !valid_name(name, 0) || n_labels > TG_METRICS_MAX_LABELS || max_series == 0 ||
        max_series > (1u << 20) || n_bounds > TG_METRICS_MAX_BUCKETS)
        return NULL;
    for (size_t i = 0; i < n_labels; i++)
        if (!valid_name(labels[i], 1) || strcmp(labels[i], "le") == 0)
            return NULL;
    for (size_t i = 1; i < n_bounds; i++)
        if (!(bounds[i] > bounds[i - 1]))
            return NULL;
    tg_metric_family_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    pthread_mutex_init(&f->lock, NULL);
    f->type = type;
    f->n_labels = n_labels;
    f->max_series = max_series;
    f->n_bounds = n_bounds;
    if (n_bounds > 0)
        memcpy(f->bounds, bounds, n_bounds * sizeof(double));
    size_t size = 8;
    while (size < 2 * (max_series + 1))
        size <<= 1;
    f->mask = size - 1;
    f->table = calloc(size, sizeof(*f->table));
    f->list = calloc(max_series + 1, sizeof(*f->list));
    f->name = strdup(name);
    f->help = strdup(help != NULL ? help : "");
    int ok = f->table != NULL && f->list != NULL && f->name != NULL && f->help != NULL;
    for (size_t i = 0; ok && i < n_labels; i++)
        ok = (f->labels[i] = strdup(labels[i])) != NULL;
    if (!ok) {
        family_free(f);
        return NULL;
    }
    pthread_mutex_lock(&m->lock);
    *m->tail = f;
    m->tail = &f->next;
    pthread_mutex_unlock(&m->lock);
    return f;
}

tg_metric_family_t *
tg_metrics_counter(tg_metrics_t *m, const char *name, const char *help, size_t n_labels, const char *const *labels,
                   size_t max_series)
{
    return family_new(m, TG_METRIC_COUNTER, name, help, n_labels, labels, max_series, NULL, 0);
}

tg_metric_family_t *
tg_metrics_gauge(tg_metrics_t *m, const char *name, const char *help, size_t n_labels, const char *const *labels,
                 size_t max_series)
{
    return family_new(m, TG_METRIC_GAUGE, name, help, n_labels, labels, max_series, NULL, 0);
}

tg_metric_family_t *
tg_metrics_histogram(tg_metrics_t *m, const char *name, const char *help, size_t n_labels, const char *const *labels,
                     size_t max_series, const double *bounds, size_t n_bounds)
{
    if (bounds == NULL || n_bounds == 0)
        return NULL;
    return family_new(m, TG_METRIC_HISTOGRAM, name, help, n_labels, labels, max_series, bounds, n_bounds);
}

int
tg_metrics_add_collector(tg_metrics_t *m, tg_metrics_collector_fn fn, void *ctx)
{
    collector_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->fn = fn;
    c->ctx = ctx;
    pthread_mutex_lock(&m->lock);
    *m->ctail = c;
    m->ctail = &c->next;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

/* ---------------------------------------------------------------- series */

static size_t
value_len(const char *v)
{
    size_t n = v != NULL ? strnlen(v, TG_METRICS_LABEL_MAX) : 0;
    /* never cut a UTF-8 sequence in half: the exposition must stay valid UTF-8 */
    if (n == TG_METRICS_LABEL_MAX)
        while (n > 0 && ((unsigned char)v[n] & 0xc0) == 0x80)
            n--;
    return n;
}

static uint64_t
values_hash(const tg_metric_family_t *f, const char *const *values)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < f->n_labels; i++) {
        const char *v = values[i];
        size_t n = value_len(v);
        for (size_t k = 0; k < n; k++)
            h = (h ^ (unsigned char)v[k]) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull; /* separator: ("ab","") differs from ("a","b") */
    }
    return h;
}

static int
values_equal(const tg_metric_family_t *f, const tg_metric_series_t *s, const char *const *values)
{
    for (size_t i = 0; i < f->n_labels; i++) {
        size_t n = value_len(values[i]);
        if (strlen(s->values[i]) != n || (n > 0 && memcmp(s->values[i], values[i], n) != 0))
            return 0;
    }
    return 1;
}

static tg_metric_series_t *
series_new(const tg_metric_family_t *f, const char *const *values, uint64_t hash)
{
    size_t nb = f->type == TG_METRIC_HISTOGRAM ? f->n_bounds + 1 : 0;
    tg_metric_series_t *s = calloc(1, sizeof(*s) + nb * sizeof(_Atomic uint64_t));
    if (s == NULL)
        return NULL;
    s->family = f;
    s->hash = hash;
    for (size_t i = 0; i < f->n_labels; i++) {
        size_t n = value_len(values[i]);
        if ((s->values[i] = malloc(n + 1)) == NULL) {
            series_free(s, f->n_labels);
            return NULL;
        }
        if (n > 0)
            memcpy(s->values[i], values[i], n);
        s->values[i][n] = '\0';
    }
    return s;
}

/* Called with the family's lock held. */
static tg_metric_series_t *
other_series(tg_metric_family_t *f)
{
    tg_metric_series_t *o = atomic_load_explicit(&f->other, memory_order_acquire);
    if (o != NULL)
        return o;
    if ((o = series_new(f, OTHER_VALUES, 0)) == NULL)
        return NULL;
    size_t n = atomic_load_explicit(&f->n_list, memory_order_relaxed);
    f->list[n] = o;
    atomic_store_explicit(&f->n_list, n + 1, memory_order_release);
    atomic_store_explicit(&f->other, o, memory_order_release);
    return o;
}

static tg_metric_series_t *
lookup(tg_metric_family_t *f, const char *const *values, uint64_t h, size_t *ret_slot)
{
    for (size_t i = h & f->mask;; i = (i + 1) & f->mask) {
        tg_metric_series_t *s = atomic_load_explicit(&f->table[i], memory_order_acquire);
        if (s == NULL) {
            *ret_slot = i;
            return NULL;
        }
        if (s->hash == h && values_equal(f, s, values))
            return s;
    }
}

tg_metric_series_t *
tg_metrics_series(tg_metric_family_t *f, const char *const *values)
{
    static const char *const none[TG_METRICS_MAX_LABELS] = {0};
    if (values == NULL)
        values = none;
    uint64_t h = values_hash(f, values);
    size_t slot;
    tg_metric_series_t *s = lookup(f, values, h, &slot); /* the hot path: no lock */
    if (s != NULL)
        return s;
    pthread_mutex_lock(&f->lock);
    if ((s = lookup(f, values, h, &slot)) == NULL) {
        if (f->n_named >= f->max_series || (s = series_new(f, values, h)) == NULL) {
            s = other_series(f);
        } else {
            size_t n = atomic_load_explicit(&f->n_list, memory_order_relaxed);
            f->list[n] = s;
            atomic_store_explicit(&f->n_list, n + 1, memory_order_release);
            atomic_store_explicit(&f->table[slot], s, memory_order_release);
            f->n_named++;
        }
    }
    pthread_mutex_unlock(&f->lock);
    /* no memory even for "other": a static sink keeps callers free of NULL checks */
    if (s == NULL) {
        /* raw storage rather than a struct around the series: a flexible array member may not be
         * followed by another member in ISO C (clang rejects it) */
        static _Alignas(tg_metric_series_t) unsigned char
            sink[sizeof(tg_metric_series_t) + (TG_METRICS_MAX_BUCKETS + 1) * sizeof(_Atomic uint64_t)];
        s = (tg_metric_series_t *)(void *)sink;
    }
    return s;
}

tg_metric_series_t *
tg_metrics_series0(tg_metric_family_t *f)
{
    return tg_metrics_series(f, NULL);
}

size_t
tg_metrics_series_count(const tg_metric_family_t *f)
{
    return atomic_load_explicit(&((tg_metric_family_t *)f)->n_list, memory_order_acquire);
}

/* ---------------------------------------------------------------- updates */

static uint64_t
d2u(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double
u2d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static void
atomic_add_double(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (
        !atomic_compare_exchange_weak_explicit(a, &old, d2u(u2d(old) + v), memory_order_relaxed, memory_order_relaxed))
        ;
}

void
tg_metrics_inc(tg_metric_series_t *s, uint64_t n)
{
    if (s->family != NULL && s->family->type == TG_METRIC_GAUGE)
        atomic_add_double(&s->value, (double)n);
    else
        atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
}

void
tg_metrics_set(tg_metric_series_t *s, double v)
{
    atomic_store_explicit(&s->value, d2u(v), memory_order_relaxed);
}

void
tg_metrics_add(tg_metric_series_t *s, double v)
{
    atomic_add_double(&s->value, v);
}

void
tg_metrics_observe(tg_metric_series_t *s, double v)
{
    const tg_metric_family_t *f = s->family;
    if (isnan(v) || f == NULL || f->type != TG_METRIC_HISTOGRAM)
        return;
    size_t i = 0;
    while (i < f->n_bounds && v > f->bounds[i])
        i++;
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    atomic_add_double(&s->sum, v);
}

double
tg_metrics_value(const tg_metric_series_t *s)
{
    const tg_metric_family_t *f = s->family;
    uint64_t v = atomic_load_explicit(&((tg_metric_series_t *)s)->value, memory_order_relaxed);
    if (f == NULL || f->type == TG_METRIC_COUNTER)
        return (double)v;
    if (f->type == TG_METRIC_GAUGE)
        return u2d(v);
    uint64_t n = 0;
    for (size_t i = 0; i <= f->n_bounds; i++)
        n += atomic_load_explicit(&((tg_metric_series_t *)s)->buckets[i], memory_order_relaxed);
    return (double)n;
}

/* ---------------------------------------------------------------- exposition */

static void
append_escaped(tg_buf_t *b, const char *s, int quote, int *err)
{
    const char *run = s;
    for (const char *p = s;; p++) {
        const char *esc = NULL;
        if (*p == '\\')
            esc = "\\\\";
        else if (*p == '\n')
            esc = "\\n";
        else if (*p == '"' && quote)
            esc = "\\\"";
        if (esc == NULL && *p != '\0')
            continue;
        if (p > run && tg_buf_append(b, run, (size_t)(p - run)) != 0)
            *err = 1;
        if (*p == '\0')
            break;
        if (tg_buf_appends(b, esc) != 0)
            *err = 1;
        run = p + 1;
    }
}

static void
append_number(tg_buf_t *b, double v, int *err)
{
    int rv;
    if (isnan(v))
        rv = tg_buf_appends(b, "NaN");
    else if (isinf(v))
        rv = tg_buf_appends(b, v > 0 ? "+Inf" : "-Inf");
    else if (v == (double)(int64_t)v && fabs(v) < 9e15)
        rv = tg_buf_appendf(b, "%lld", (long long)v);
    else
        rv = tg_buf_appendf(b, "%.15g", v);
    if (rv != 0)
        *err = 1;
}

/* name{l1="v1",...,extra="x"} value\n */
static void
append_sample(tg_buf_t *b, const char *name, const char *suffix, size_t n, const char *const *labels,
              const char *const *values, const char *extra_label, const char *extra_value, double v, int *err)
{
    if (tg_buf_appends(b, name) != 0 || tg_buf_appends(b, suffix) != 0)
        *err = 1;
    if (n > 0 || extra_label != NULL) {
        tg_buf_appends(b, "{");
        for (size_t i = 0; i < n; i++) {
            tg_buf_appendf(b, "%s%s=\"", i ? "," : "", labels[i]);
            append_escaped(b, values[i] != NULL ? values[i] : "", 1, err);
            tg_buf_appends(b, "\"");
        }
        if (extra_label != NULL)
            tg_buf_appendf(b, "%s%s=\"%s\"", n ? "," : "", extra_label, extra_value);
        tg_buf_appends(b, "}");
    }
    tg_buf_appends(b, " ");
    append_number(b, v, err);
    if (tg_buf_appends(b, "\n") != 0)
        *err = 1;
}

static const char *
type_name(tg_metric_type_t t)
{
    return t == TG_METRIC_COUNTER ? "counter" : t == TG_METRIC_GAUGE ? "gauge" : "histogram";
}

static void
append_header(tg_buf_t *b, const char *name, const char *help, tg_metric_type_t type, int *err)
{
    tg_buf_appendf(b, "# HELP %s ", name);
    append_escaped(b, help != NULL ? help : "", 0, err);
    if (tg_buf_appendf(b, "\n# TYPE %s %s\n", name, type_name(type)) != 0)
        *err = 1;
}

static void
render_family(tg_metric_family_t *f, tg_buf_t *b, int *err)
{
    size_t n = atomic_load_explicit(&f->n_list, memory_order_acquire);
    if (n == 0 && f->n_labels > 0)
        return; /* nothing observed yet: no samples to show */
    append_header(b, f->name, f->help, f->type, err);
    if (n == 0) { /* a family without labels shows 0 before its first update */
        tg_metrics_series0(f);
        n = atomic_load_explicit(&f->n_list, memory_order_acquire);
    }
    const char *const *labels = (const char *const *)f->labels;
    for (size_t i = 0; i < n; i++) {
        tg_metric_series_t *s = f->list[i];
        const char *const *values = (const char *const *)s->values;
        if (f->type != TG_METRIC_HISTOGRAM) {
            append_sample(b, f->name, "", f->n_labels, labels, values, NULL, NULL, tg_metrics_value(s), err);
            continue;
        }
        /* cumulative buckets; _count is the +Inf bucket, so the two always agree */
        uint64_t cum = 0;
        char le[40];
        for (size_t k = 0; k <= f->n_bounds; k++) {
            cum += atomic_load_explicit(&s->buckets[k], memory_order_relaxed);
            if (k < f->n_bounds)
                snprintf(le, sizeof(le), "%.15g", f->bounds[k]);
            else
                snprintf(le, sizeof(le), "+Inf");
            append_sample(b, f->name, "_bucket", f->n_labels, labels, values, "le", le, (double)cum, err);
        }
        append_sample(b, f->name, "_sum", f->n_labels, labels, values, NULL, NULL,
                      u2d(atomic_load_explicit(&s->sum, memory_order_relaxed)), err);
        append_sample(b, f->name, "_count", f->n_labels, labels, values, NULL, NULL, (double)cum, err);
    }
}

void
tg_metrics_emit(tg_metrics_emitter_t *e, tg_metric_type_t type, const char *name, const char *help, size_t n_labels,
                const char *const *labels, const char *const *values, double value)
{
    if (!valid_name(name, 0) || type == TG_METRIC_HISTOGRAM || n_labels > TG_METRICS_MAX_LABELS)
        return;
    if (strcmp(e->last, name) != 0) {
        append_header(e->out, name, help, type, &e->err);
        snprintf(e->last, sizeof(e->last), "%s", name);
    }
    append_sample(e->out, name, "", n_labels, labels, values, NULL, NULL, value, &e->err);
}

int
tg_metrics_render(tg_metrics_t *m, tg_buf_t *out)
{
    int err = 0;
    pthread_mutex_lock(&m->lock);
    tg_metric_family_t *first = m->first;
    collector_t *collectors = m->collectors;
    pthread_mutex_unlock(&m->lock);
    for (tg_metric_family_t *f = first; f != NULL; f = f->next)
        render_family(f, out, &err);
    for (collector_t *c = collectors; c != NULL; c = c->next) {
        tg_metrics_emitter_t e = {.out = out};
        c->fn(&e, c->ctx);
        err |= e.err;
    }
    return err ? -1 : 0;
}
