/*
 * Admission: a request's worst case reserved against every budget and rate limit that applies to its
 * key, before routing; the true cost settled when it ends (docs/admission.md).
 *
 * Flow for the exchange: dp_admission_worst_case() sizes the request, dp_admission_begin() reserves
 * (admitted now, parked until the lease thread brings more allowance, or refused with a status and a
 * reason), dp_admission_settle() ends it with the real cost and tokens (idempotent; also the way out of a
 * parked state). A dp_admission_t lives in the request's memory (the exchange) and is owned by one
 * worker thread; only the allowances it points at are shared.
 */
#ifndef DP_ADMISSION_H
#define DP_ADMISSION_H

#include <stdint.h>
#include <uv.h>
#include "admission/allowance.h"
#include "config/snapshot.h"

#define DP_ADMISSION_MAX_HOLDS 24
#define DP_ADMISSION_MAX_WARN  4 /* budgets named in x-tollgate-budget-warning */

typedef struct dp_admission_worker dp_admission_worker_t;
typedef struct dp_admission dp_admission_t;

/* The worst case of one request: prompt tokens bounded by the body's bytes, output by max_tokens. */
typedef struct dp_worst_case {
    int64_t prompt_tokens; /* upper bound */
    int64_t output_tokens; /* upper bound (the request's cap, the route's, or the gateway's default) */
    int64_t cost_nanousd;  /* W, at the route's highest prices, rounded up */
} dp_worst_case_t;

/* The output cap a body names: max_completion_tokens, max_tokens, max_output_tokens or
 * generationConfig.maxOutputTokens (the first found, in that order of preference); 0 when none. */
int64_t dp_admission_body_max_tokens(const char *body, size_t len);
void dp_admission_worst_case(const dp_route_t *route, const char *body, size_t len, int embed, dp_worst_case_t *ret);

struct dp_admission {
    /* set by begin */
    const dp_snapshot_t *snapshot;
    const dp_vkey_t *key;
    const char *model;
    size_t model_len;
    dp_worst_case_t w;
    void (*on_ready)(dp_admission_t *a, int admitted); /* after a park: 1 admitted, 0 refused (see status) */
    void *data;
    /* state */
    struct {
        dp_lease_t *lease;
        int64_t amount;
        int kind;
    } holds[DP_ADMISSION_MAX_HOLDS];
    int n_holds;
    dp_admission_worker_t *worker;
    dp_admission_t *prev, *next; /* the worker's parked list */
    uint64_t deadline_ns;
    /* refusal */
    int status; /* 402, 429, 503 */
    const dp_limit_t *refused_by;
    int64_t retry_after_s;
    int64_t reset_ms;    /* rate limits: when the window ends (this process's clock) */
    int64_t admitted_ms; /* the governance clock when every reservation was taken (0: no limits) */
    /* admitted: the budgets whose soft threshold the period's settled spend has crossed, as of the
     * control plane's last answer, and that spend */
    struct {
        const dp_limit_t *limit;
        int64_t settled;
    } warn[DP_ADMISSION_MAX_WARN];
    int n_warn;
    unsigned parked : 1, done : 1;
};

/* 0 admitted (reserved everywhere), 1 parked (on_ready follows on this worker's loop, bounded by the
 * wait limit), -1 refused: a->status and a->refused_by say why. */
int dp_admission_begin(dp_admission_t *a, dp_admission_worker_t *w, const dp_snapshot_t *s, const dp_vkey_t *key,
                       const char *model, size_t model_len, const dp_worst_case_t *wc);
/* Ends the admission: cost and tokens actually used (0 for a failed call: failed attempts bill nothing).
 * Idempotent. A parked admission is unparked without its callback. */
void dp_admission_settle(dp_admission_t *a, int64_t cost_nanousd, int64_t tokens);

/* The value of the x-tollgate-budget-warning header for warning i (< a->n_warn), in buf:
 * `budget=<id>; spent_usd=<settled>; soft_usd=<soft>; hard_usd=<hard>`. Only the caller's own budgets
 * (the key's tenant, team and key) are ever named. Returns the length. */
size_t dp_admission_warning(const dp_admission_t *a, int i, char *buf, size_t size);

/* Per worker: the wakeup the lease thread sends when allowance arrives, and the timer that bounds waits.
 * new() and free() on the worker's loop thread. */
dp_admission_worker_t *dp_admission_worker_new(uv_loop_t *loop);
void dp_admission_worker_free(dp_admission_worker_t *w); /* closes the handles; memory freed in their callbacks */
/* From any thread: every worker retries its parked requests. */
void dp_admission_wake_all(void);

/* Process settings (main.c, from the environment): the default output cap, the longest a request
 * waits for allowance. */
void dp_admission_configure(int64_t default_max_tokens, int64_t max_wait_ms);

#endif
