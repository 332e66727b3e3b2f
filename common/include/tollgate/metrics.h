/*
 * A small metrics registry for both processes, exposed in the Prometheus text format (0.0.4).
 *
 * Design. A family (counter, gauge or histogram) has fixed label names and a cap on how many label
 * sets (series) it may hold. A series is found or created once (tg_metrics_series) and then updated with
 * plain atomics: the hot path takes no lock. Creating a series takes the family's mutex, which happens
 * once per distinct label set. When a family is full, every new label set folds into one series whose
 * label values are all "other", so a client that invents model names or tenants cannot grow memory or
 * the scrape without bound. Label values are cut at TG_METRICS_LABEL_MAX bytes.
 *
 * Collectors are callbacks run at scrape time that emit gauges (or counters) for state another module
 * owns, e.g. circuit breakers or queue depths, with no bookkeeping on their hot path.
 *
 * Lifetimes: families and series live as long as the registry; a series pointer may be cached and
 * updated from any thread. tg_metrics_free() is for the end of the process (and tests).
 */
#ifndef TG_METRICS_H
#define TG_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "tollgate/buf.h"

#define TG_METRICS_MAX_LABELS  8
#define TG_METRICS_LABEL_MAX   128
#define TG_METRICS_MAX_BUCKETS 32

typedef enum { TG_METRIC_COUNTER = 0, TG_METRIC_GAUGE, TG_METRIC_HISTOGRAM } tg_metric_type_t;

typedef struct tg_metrics tg_metrics_t;
typedef struct tg_metric_family tg_metric_family_t;
typedef struct tg_metric_series tg_metric_series_t;
typedef struct tg_metrics_emitter tg_metrics_emitter_t;

/* Latency buckets in seconds, 50 us to 60 s (roughly x2.5 per step); for tg_metrics_histogram. */
extern const double tg_metrics_latency_buckets[];
extern const size_t tg_metrics_latency_buckets_n;

tg_metrics_t *tg_metrics_new(void);
void tg_metrics_free(tg_metrics_t *m);

/*
 * Registers a family. name: [a-zA-Z_:][a-zA-Z0-9_:]*; labels: n_labels names (copied); max_series: the
 * cap on label sets, the "other" one not counted (at least 1). Histograms take their upper bounds,
 * strictly increasing (+Inf is implicit). NULL on a bad argument or no memory.
 */
tg_metric_family_t *tg_metrics_counter(tg_metrics_t *m, const char *name, const char *help, size_t n_labels,
                                       const char *const *labels, size_t max_series);
tg_metric_family_t *tg_metrics_gauge(tg_metrics_t *m, const char *name, const char *help, size_t n_labels,
                                     const char *const *labels, size_t max_series);
tg_metric_family_t *tg_metrics_histogram(tg_metrics_t *m, const char *name, const char *help, size_t n_labels,
                                         const char *const *labels, size_t max_series, const double *bounds,
                                         size_t n_bounds);

/*
 * The series for these label values (n_labels of them, NULL counts as ""), created on first use. Never
 * NULL for a valid family: a full family (or no memory) gives the "other" series. Lock-free when the
 * series exists.
 */
tg_metric_series_t *tg_metrics_series(tg_metric_family_t *f, const char *const *values);
/* The same, for a family without labels. */
tg_metric_series_t *tg_metrics_series0(tg_metric_family_t *f);

void tg_metrics_inc(tg_metric_series_t *s, uint64_t n);   /* counters (and integer gauges) */
void tg_metrics_set(tg_metric_series_t *s, double v);     /* gauges */
void tg_metrics_add(tg_metric_series_t *s, double v);     /* gauges, may be negative */
void tg_metrics_observe(tg_metric_series_t *s, double v); /* histograms */

/* Reads back (for tests and collectors): a counter's or gauge's value, a histogram's count. */
double tg_metrics_value(const tg_metric_series_t *s);
/* How many label sets a family holds, "other" included once it was used. */
size_t tg_metrics_series_count(const tg_metric_family_t *f);

/*
 * A scrape-time collector: runs on the scraping thread each time the registry is rendered and emits
 * samples with tg_metrics_emit(). Samples of one name must be emitted together.
 */
typedef void (*tg_metrics_collector_fn)(tg_metrics_emitter_t *e, void *ctx);
int tg_metrics_add_collector(tg_metrics_t *m, tg_metrics_collector_fn fn, void *ctx);
void tg_metrics_emit(tg_metrics_emitter_t *e, tg_metric_type_t type, const char *name, const char *help,
                     size_t n_labels, const char *const *labels, const char *const *values, double value);

/* Appends the text exposition of every family, then of every collector. 0, or -1 out of memory. */
int tg_metrics_render(tg_metrics_t *m, tg_buf_t *out);

#define TG_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
