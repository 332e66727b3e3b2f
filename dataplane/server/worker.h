/*
 * Process-wide configuration and the per-thread worker: one libuv loop, one h2o context, one
 * SO_REUSEPORT listening socket, one libcurl multi handle and one usage buffer per worker thread. Nothing
 * here is shared between workers except the published snapshot (config/snapshot.h) and the usage
 * shipper's queue, which a worker touches once per flush interval, not per request.
 */
#ifndef DP_WORKER_H
#define DP_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <h2o.h>
#include <uv.h>
#include "accounting/usage.h"
#include "config/snapshot.h"
#include "tollgate/wire.h"
#include "upstream/upstream.h"

typedef struct dp_config {
    char listen[128];
    struct sockaddr_storage listen_addr;
    socklen_t listen_addr_len;
    int workers;
    size_t max_body_bytes;
    int client_timeout_ms; /* idle keep-alive and request-read bound of client connections */
    int drain_timeout_ms;
    int usage_flush_ms;
    int usage_drain_timeout_ms; /* at exit: how long unacknowledged usage is resent before it is spooled */
    const char *cp_pub_url;
    const char *cp_rep_url;
    tg_wire_key_t wire_key;
    char instance_id[128];
    const char *usage_spool_dir; /* NULL: unsent usage is kept in memory only */
    dp_upstream_options_t upstream;
} dp_config_t;

extern dp_config_t dp_config;
/* Set once SIGTERM arrives: /readyz answers 503 and new connections are refused. */
extern atomic_int dp_draining;

typedef struct dp_worker {
    int id;
    pthread_t thread;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t wakeup;
    uv_timer_t usage_timer; /* one-shot: started by the first record of a batch */
    uv_timer_t log_timer;   /* one-shot: writes the access log lines waiting in this thread */
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    dp_upstream_t *upstream;
    dp_snapshot_t *snapshot; /* this worker's reference to the newest snapshot it has seen */
    dp_usage_buffer_t usage;
    struct dp_admission_worker *admission; /* parked requests waiting for allowance */
    uint64_t rng;
    atomic_int inflight; /* requests with an upstream call or response in progress */
    atomic_int command;  /* DP_WORKER_RUN, DP_WORKER_DRAIN or DP_WORKER_STOP */
    int listening;
} dp_worker_t;

enum { DP_WORKER_RUN = 0, DP_WORKER_DRAIN, DP_WORKER_STOP };

int dp_worker_start(dp_worker_t *w, int id, h2o_globalconf_t *conf);
/* Asks the worker to stop accepting (DRAIN) or to exit its loop (STOP), from any thread. */
void dp_worker_command(dp_worker_t *w, int command);
void dp_worker_join(dp_worker_t *w);
/* A usage record was appended to w->usage (worker thread): the batch goes out within the flush interval. */
void dp_worker_usage_added(dp_worker_t *w);

/* The newest snapshot, refreshed from the published one when it changed. NULL before the first. */
dp_snapshot_t *dp_worker_snapshot(dp_worker_t *w);

static inline dp_worker_t *
dp_worker_of(h2o_req_t *req)
{
    return H2O_STRUCT_FROM_MEMBER(dp_worker_t, ctx, req->conn->ctx);
}

/* xorshift64*: request ids and weighted picks; not for secrets. */
static inline uint64_t
dp_worker_rand(dp_worker_t *w)
{
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return w->rng * 2685821657736338717ull;
}

#endif
