/*
 * tg-admission-bench: what admission adds to a request, on this machine, as a ratio to a baseline
 * measured in the same run (bench/README.md). Admission = sizing the worst case from the body, reserving
 * against the key's limits (here 3 budgets: key, team, tenant, and a requests-per-window limit) and
 * settling at the end. The baseline is authentication as every request already pays it: SHA-256 of the
 * presented key and the snapshot lookup. Allowances are pre-granted, as on a dataplane whose lease
 * thread keeps ahead of its traffic (the path of a request that fits, the only one on the hot path).
 *
 * Usage: tg-admission-bench [iterations] [threads]. Prints ns per request for each, and the ratio.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "admission/admission.h"
#include "admission/allowance.h"
#include "tollgate/clock.h"
#include "tollgate/crypto.h"
#include "tollgate/env.h"

static const char body[] = "{\"model\":\"gpt-4o-mini\",\"max_tokens\":256,\"temperature\":0.2,\"messages\":[{\"role\":"
                           "\"system\",\"content\":\"You are a helpful assistant.\"},{\"role\":\"user\",\"content\":"
                           "\"Summarise the causes of the French revolution in three sentences.\"}]}";

static dp_limit_t limits[4];
static uint32_t idx[4] = {0, 1, 2, 3};
static dp_vkey_t key = {.id = "k", .tenant_id = "t", .limits = idx, .n_limits = 4};
static dp_snapshot_t snap = {.limits = limits, .n_limits = 4};
static dp_route_t route = {.max_price = {.input = 150000, .output = 600000}};
static long iterations = 2000000;
static volatile uint64_t sink;

static void *
run_admission(void *arg)
{
    (void)arg;
    for (long i = 0; i < iterations; i++) {
        dp_worst_case_t w;
        dp_admission_t a = {0};
        dp_admission_worst_case(&route, body, sizeof(body) - 1, 0, &w);
        if (dp_admission_begin(&a, NULL, &snap, &key, "gpt-4o-mini", 11, &w) != 0) {
            fprintf(stderr, "admission refused: the pre-granted allowance ran out\n");
            exit(1);
        }
        dp_admission_settle(&a, w.cost_nanousd / 2, w.prompt_tokens);
        sink += (uint64_t)a.n_holds;
    }
    return NULL;
}

static void *
run_baseline(void *arg)
{
    (void)arg;
    uint8_t h[TG_SHA256_LEN];
    const char *k = "tg-0123456789abcdef0123456789abcdef0123456789abcdef";
    for (long i = 0; i < iterations; i++) {
        tg_sha256(k, strlen(k), h);
        sink += h[0];
    }
    return NULL;
}

static double
timed(void *(*fn)(void *), int threads)
{
    pthread_t th[64];
    uint64_t t0 = tg_mono_ns();
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, fn, NULL);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    return (double)(tg_mono_ns() - t0) / (double)iterations; /* per request per thread (wall) */
}

int
main(int argc, char **argv)
{
    int threads = 1;
    if (argc > 1)
        iterations = atol(argv[1]);
    if (argc > 2)
        threads = atoi(argv[2]);
    if (iterations <= 0 || threads < 1 || threads > 64) {
        fprintf(stderr, "usage: tg-admission-bench [iterations] [threads 1..64]\n");
        return 2;
    }
    const char *ids[4] = {"00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b",
                          "00000000-0000-0000-0000-00000000000c", "00000000-0000-0000-0000-00000000000d"};
    int kinds[4] = {DP_LEASE_BUDGET, DP_LEASE_BUDGET, DP_LEASE_BUDGET, DP_LEASE_REQUESTS};
    int64_t now = tg_clock_now_ms();
    for (int i = 0; i < 4; i++) {
        dp_allowance_t *a = dp_allowance_get(ids[i], (dp_lease_kind_t)kinds[i]);
        dp_allowance_apply(a, 0, INT64_MAX / 2, 1, INT64_MAX / 4, INT64_MAX / 4, INT64_MAX / 4, now + 3600000, 1);
        limits[i] = (dp_limit_t){.id = a->id, .kind = kinds[i], .hard = INT64_MAX / 4, .window_s = 60, .allowance = a};
    }
    double base = 0, adm = 0;
    for (int round = 0; round < 3; round++) { /* alternate, as the end-to-end benchmarks do */
        base += timed(run_baseline, threads);
        adm += timed(run_admission, threads);
    }
    base /= 3, adm /= 3;
    printf("threads=%d iterations=%ld\n", threads, iterations);
    printf("baseline (SHA-256 of the key)     %8.1f ns/request\n", base);
    printf("admission (size, reserve, settle) %8.1f ns/request  (4 limits)\n", adm);
    printf("ratio admission/baseline          %8.2f\n", adm / base);
    dp_allowance_free_all();
    return 0;
}
