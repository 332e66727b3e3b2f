/* Unit tests of the metrics registry: updates, label caps, histograms, collectors, concurrency, and the
 * text exposition parsed back line by line. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "tollgate/metrics.h"

/* ---- a small parser of the exposition format: every line is a comment or a valid sample */

typedef struct sample {
    char key[512]; /* name{labels} as written */
    double value;
} sample_t;

static size_t
parse(const char *text, sample_t *out, size_t max)
{
    size_t n = 0;
    const char *line = text;
    while (*line) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl); /* every line ends with \n */
        size_t len = (size_t)(nl - line);
        if (len > 0 && line[0] == '#') {
            assert_true(strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0);
        } else {
            /* name */
            const char *p = line;
            assert_true((*p >= 'a' && *p <= 'z') || *p == '_');
            while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == ':')
                p++;
            if (*p == '{') { /* labels: k="v" with \\ \" \n escapes */
                p++;
                while (*p != '}') {
                    while ((*p >= 'a' && *p <= 'z') || *p == '_')
                        p++;
                    assert_int_equal(*p++, '=');
                    assert_int_equal(*p++, '"');
                    while (*p != '"') {
                        assert_true(*p != '\n' && p < nl);
                        if (*p == '\\') {
                            p++;
                            assert_true(*p == '\\' || *p == '"' || *p == 'n');
                        }
                        p++;
                    }
                    p++;
                    if (*p == ',')
                        p++;
                }
                p++;
            }
            assert_int_equal(*p, ' ');
            assert_true(n < max);
            assert_true((size_t)(p - line) < sizeof(out[n].key));
            memcpy(out[n].key, line, (size_t)(p - line));
            out[n].key[p - line] = '\0';
            char *end;
            if (strncmp(p + 1, "+Inf", 4) == 0)
                out[n].value = 1.0 / 0.0, end = (char *)p + 5;
            else
                out[n].value = strtod(p + 1, &end);
            assert_ptr_equal(end, nl);
            n++;
        }
        line = nl + 1;
    }
    return n;
}

static double
find(const sample_t *s, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s[i].key, key) == 0)
            return s[i].value;
    fail_msg("no sample %s", key);
    return -1;
}

static int
has(const sample_t *s, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s[i].key, key) == 0)
            return 1;
    return 0;
}

static sample_t samples[512];

static size_t
render(tg_metrics_t *m, tg_buf_t *b)
{
    b->len = 0;
    assert_int_equal(tg_metrics_render(m, b), 0);
    assert_int_equal(tg_buf_append(b, "", 1), 0);
    return parse(b->base, samples, 512);
}

/* ---- tests */

static void
test_counter_and_gauge(void **state)
{
    tg_metrics_t *m = tg_metrics_new();
    const char *labels[] = {"tenant", "code"};
    tg_metric_family_t *req = tg_metrics_counter(m, "t_requests_total", "Requests.", 2, labels, 10);
    tg_metric_family_t *up = tg_metrics_gauge(m, "t_up", "Up or not.", 0, NULL, 1);
    assert_non_null(req);
    assert_non_null(up);
    tg_metrics_inc(tg_metrics_series(req, (const char *[]){"a", "200"}), 2);
    tg_metrics_inc(tg_metrics_series(req, (const char *[]){"a", "200"}), 3);
    tg_metrics_inc(tg_metrics_series(req, (const char *[]){"b", "500"}), 1);
    tg_metrics_set(tg_metrics_series0(up), 1.5);
    tg_metrics_add(tg_metrics_series0(up), -0.25);

    tg_buf_t b = {0};
    size_t n = render(m, &b);
    assert_int_equal(n, 3);
    assert_true(find(samples, n, "t_requests_total{tenant=\"a\",code=\"200\"}") == 5);
    assert_true(find(samples, n, "t_requests_total{tenant=\"b\",code=\"500\"}") == 1);
    assert_true(find(samples, n, "t_up") == 1.25);
    assert_non_null(strstr(b.base, "# TYPE t_requests_total counter\n"));
    assert_non_null(strstr(b.base, "# HELP t_up Up or not.\n# TYPE t_up gauge\n"));
    tg_buf_free(&b);
    tg_metrics_free(m);
}

static void
test_bad_registrations(void **state)
{
    tg_metrics_t *m = tg_metrics_new();
    assert_null(tg_metrics_counter(m, "1bad", "", 0, NULL, 1));
    assert_null(tg_metrics_counter(m, "bad-name", "", 0, NULL, 1));
    assert_null(tg_metrics_counter(m, "ok", "", 1, (const char *[]){"le"}, 1));
    assert_null(tg_metrics_counter(m, "ok", "", 1, (const char *[]){"a:b"}, 1));
    assert_null(tg_metrics_counter(m, "ok", "", 0, NULL, 0));
    assert_null(tg_metrics_histogram(m, "h", "", 0, NULL, 1, (const double[]){1, 1}, 2));
    tg_metrics_free(m);
}

static void
test_label_cap_folds_into_other(void **state)
{
    tg_metrics_t *m = tg_metrics_new();
    tg_metric_family_t *f = tg_metrics_counter(m, "t_models_total", "", 2, (const char *[]){"model", "tenant"}, 3);
    char name[32];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "model-%d", i);
        tg_metrics_inc(tg_metrics_series(f, (const char *[]){name, "t"}), 1);
    }
    /* an existing label set still finds its own series after the cap was hit */
    tg_metrics_inc(tg_metrics_series(f, (const char *[]){"model-0", "t"}), 1);
    assert_int_equal(tg_metrics_series_count(f), 4); /* 3 + "other" */

    tg_buf_t b = {0};
    size_t n = render(m, &b);
    assert_int_equal(n, 4);
    assert_true(find(samples, n, "t_models_total{model=\"model-0\",tenant=\"t\"}") == 2);
    assert_true(find(samples, n, "t_models_total{model=\"model-2\",tenant=\"t\"}") == 1);
    assert_false(has(samples, n, "t_models_total{model=\"model-3\",tenant=\"t\"}"));
    assert_true(find(samples, n, "t_models_total{model=\"other\",tenant=\"other\"}") == 7);
    tg_buf_free(&b);
    tg_metrics_free(m);
}

static void
test_label_values_escaped_and_cut(void **state)
{
    tg_metrics_t *m = tg_metrics_new();
    tg_metric_family_t *f =
        tg_metrics_counter(m, "t_esc_total", "A \"help\" \\ with\nnewline", 1, (const char *[]){"v"}, 10);
    tg_metrics_inc(tg_metrics_series(f, (const char *[]){"a\"b\\c\nd"}), 1);
    char longv[400];
    memset(longv, 'x', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    tg_metrics_inc(tg_metrics_series(f, (const char *[]){longv}), 1);
    tg_metrics_inc(tg_metrics_series(f, (const char *[]){NULL}), 1);

    tg_buf_t b = {0};
    size_t n = render(m, &b);
    assert_int_equal(n, 3);
    assert_true(find(samples, n, "t_esc_total{v=\"a\\\"b\\\\c\\nd\"}") == 1);
    assert_true(find(samples, n, "t_esc_total{v=\"\"}") == 1);
    assert_non_null(strstr(b.base, "# HELP t_esc_total A \"help\" \\\\ with\\nnewline\n"));
    char want[TG_METRICS_LABEL_MAX + 32];
    snprintf(want, sizeof(want), "t_esc_total{v=\"%.*s\"}", TG_METRICS_LABEL_MAX, longv);
    assert_true(find(samples, n, want) == 1);
    tg_buf_free(&b);
    tg_metrics_free(m);
}

static void
test_histogram(void **state)
{
    tg_metrics_t *m = tg_metrics_new();
    tg_metric_family_t *f = tg_metrics_histogram(m, "t_latency_seconds", "Latency.", 1, (const char *[]){"op"}, 4,
                                                 tg_metrics_latency_buckets, tg_metrics_latency_buckets_n);
    assert_non_null(f);
    tg_metric_series_t *s = tg_metrics_series(f, (const char *[]){"x"});
    const double obs[] = {0.00001, 0.00005, 0.0003, 0.02, 1.0, 7.5, 120};
    for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
        tg_metrics_observe(s, obs[i]);
    assert_true(tg_metrics_value(s) == 7);

    tg_buf_t b = {0};
    size_t n = render(m, &b);
    assert_int_equal(n, tg_metrics_latency_buckets_n + 1 + 2);
    assert_true(find(samples, n, "t_latency_seconds_bucket{op=\"x\",le=\"5e-05\"}") == 2); /* le is inclusive */
    assert_true(find(samples, n, "t_latency_seconds_bucket{op=\"x\",le=\"0.0005\"}") == 3);
    assert_true(find(samples, n, "t_latency_seconds_bucket{op=\"x\",le=\"1\"}") == 5);
    assert_true(find(samples, n, "t_latency_seconds_bucket{op=\"x\",le=\"60\"}") == 6);
    assert_true(find(samples, n, "t_latency_seconds_bucket{op=\"x\",le=\"+Inf\"}") == 7);
    assert_true(find(samples, n, "t_latency_seconds_count{op=\"x\"}") == 7);
    double sum = find(samples, n, "t_latency_seconds_sum{op=\"x\"}");
    assert_true(sum > 128.52 && sum < 128.53);
    /* buckets are cumulative: never decreasing */
    double prev = 0;
    for (size_t i = 0; i < n; i++)
        if (strstr(samples[i].key, "_bucket") != NULL) {
            assert_true(samples[i].value >= prev);
            prev = samples[i].value;
        }
    assert_non_null(strstr(b.base, "# TYPE t_latency_seconds histogram\n"));
    tg_buf_free(&b);
    tg_metrics_free(m);
}

static void
collect(tg_metrics_emitter_t *e, void *ctx)
{
    int *calls = ctx;
    (*calls)++;
    const char *labels[] = {"provider", "key"};
    tg_metrics_emit(e, TG_METRIC_GAUGE, "t_breaker_state", "Breaker state.", 2, labels, (const char *[]){"p1", "k1"},
                    0);
    tg_metrics_emit(e, TG_METRIC_GAUGE, "t_breaker_state", "Breaker state.", 2, labels, (const char *[]){"p1", "k2"},
                    2);
    tg_metrics_emit(e, TG_METRIC_GAUGE, "t_queue_depth", "Depth.", 0, NULL, NULL, 42);
}

static void
test_collector(void **state)
{
    tg_metrics_t *m = tg_metrics_new();
    int calls = 0;
    assert_int_equal(tg_metrics_add_collector(m, collect, &calls), 0);
    tg_buf_t b = {0};
    size_t n = render(m, &b);
    assert_int_equal(calls, 1);
    assert_int_equal(n, 3);
    assert_true(find(samples, n, "t_breaker_state{provider=\"p1\",key=\"k2\"}") == 2);
    assert_true(find(samples, n, "t_queue_depth") == 42);
    /* one HELP/TYPE per name */
    const char *first = strstr(b.base, "# TYPE t_breaker_state gauge");
    assert_non_null(first);
    assert_null(strstr(first + 1, "# TYPE t_breaker_state gauge"));
    render(m, &b);
    assert_int_equal(calls, 2);
    tg_buf_free(&b);
    tg_metrics_free(m);
}

#define THREADS 4
#define ITERS   50000

static tg_metric_family_t *shared_c, *shared_h;

static void *
hammer(void *arg)
{
    long id = (long)arg;
    char tenant[16];
    for (int i = 0; i < ITERS; i++) {
        snprintf(tenant, sizeof(tenant), "t%d", i % 8); /* 8 label sets created concurrently */
        tg_metrics_inc(tg_metrics_series(shared_c, (const char *[]){tenant}), 1);
        tg_metrics_observe(tg_metrics_series0(shared_h), (double)(id + 1) * 0.001);
    }
    return NULL;
}

static void
test_concurrent_updates(void **state)
{
    tg_metrics_t *m = tg_metrics_new();
    shared_c = tg_metrics_counter(m, "t_conc_total", "", 1, (const char *[]){"tenant"}, 100);
    shared_h = tg_metrics_histogram(m, "t_conc_seconds", "", 0, NULL, 1, tg_metrics_latency_buckets,
                                    tg_metrics_latency_buckets_n);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, (void *)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    tg_buf_t b = {0};
    size_t n = render(m, &b);
    double total = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(samples[i].key, "t_conc_total{", 13) == 0)
            total += samples[i].value;
    assert_true(total == (double)THREADS * ITERS);
    assert_int_equal(tg_metrics_series_count(shared_c), 8);
    assert_true(find(samples, n, "t_conc_seconds_count") == (double)THREADS * ITERS);
    double sum = find(samples, n, "t_conc_seconds_sum");
    double want = ITERS * 0.001 * (1 + 2 + 3 + 4);
    assert_true(sum > want * 0.999999 && sum < want * 1.000001);
    tg_buf_free(&b);
    tg_metrics_free(m);
}

static void
test_unlabelled_family_shows_zero(void **state)
{
    tg_metrics_t *m = tg_metrics_new();
    tg_metrics_counter(m, "t_zero_total", "", 0, NULL, 1);
    tg_metrics_counter(m, "t_labelled_total", "", 1, (const char *[]){"x"}, 1);
    tg_buf_t b = {0};
    size_t n = render(m, &b);
    assert_int_equal(n, 1);
    assert_true(find(samples, n, "t_zero_total") == 0);
    assert_null(strstr(b.base, "t_labelled_total")); /* no samples, no header */
    tg_buf_free(&b);
    tg_metrics_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge),
        cmocka_unit_test(test_bad_registrations),
        cmocka_unit_test(test_label_cap_folds_into_other),
        cmocka_unit_test(test_label_values_escaped_and_cut),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_collector),
        cmocka_unit_test(test_concurrent_updates),
        cmocka_unit_test(test_unlabelled_family_shows_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
