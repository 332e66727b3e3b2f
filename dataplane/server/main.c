/*
 * tollgate-dataplane: configuration from the environment, the worker threads, the control-plane link
 * (snapshot sync and usage shipper threads) and the graceful shutdown sequence:
 *
 *   SIGTERM -> not ready, stop accepting, close idle connections -> wait for requests in flight
 *   (bounded by TOLLGATE_DRAIN_TIMEOUT_MS) -> stop workers, flush their usage -> ship the remaining
 *   usage until acknowledged (bounded by TOLLGATE_USAGE_DRAIN_TIMEOUT_MS), spool what is left -> flush
 *   trace spans (bounded) -> exit 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <curl/curl.h>
#include <nng/nng.h>
#include "config/sync.h"
#include "ingress/ingress.h"
#include "routing/routing.h"
#include "admission/admission.h"
#include "admission/lease.h"
#include "observe/observe.h"
#include "server/worker.h"
#include "tollgate/crypto.h"
#include "tollgate/env.h"
#include "tollgate/log.h"

dp_config_t dp_config;
atomic_int dp_draining;

static int
load_config(void)
{
    int64_t v;
    snprintf(dp_config.listen, sizeof(dp_config.listen), "%s", tg_env_str("TOLLGATE_LISTEN", "127.0.0.1:8080"));
    if (tg_parse_hostport(dp_config.listen, &dp_config.listen_addr, &dp_config.listen_addr_len) != 0) {
        fprintf(stderr, "tollgate-dataplane: TOLLGATE_LISTEN=%s is not host:port\n", dp_config.listen);
        return -1;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (tg_env_int("TOLLGATE_WORKERS", ncpu > 0 ? ncpu : 2, 1, 256, &v) != 0)
        goto bad_int;
    dp_config.workers = (int)v;
    if (tg_env_int("TOLLGATE_MAX_BODY_BYTES", 4 << 20, 1024, 1 << 30, &v) != 0)
        goto bad_int;
    dp_config.max_body_bytes = (size_t)v;
    if (tg_env_int("TOLLGATE_CLIENT_TIMEOUT_MS", 10000, 1000, 3600000, &v) != 0)
        goto bad_int;
    dp_config.client_timeout_ms = (int)v;
    if (tg_env_int("TOLLGATE_DRAIN_TIMEOUT_MS", 30000, 0, 3600000, &v) != 0)
        goto bad_int;
    dp_config.drain_timeout_ms = (int)v;
    if (tg_env_int("TOLLGATE_USAGE_FLUSH_MS", 100, 5, 60000, &v) != 0)
        goto bad_int;
    dp_config.usage_flush_ms = (int)v;
    if (tg_env_int("TOLLGATE_USAGE_DRAIN_TIMEOUT_MS", 10000, 0, 3600000, &v) != 0)
        goto bad_int;
    dp_config.usage_drain_timeout_ms = (int)v;
    if (tg_env_int("TOLLGATE_UPSTREAM_CONNECT_TIMEOUT_MS", 10000, 100, 600000, &v) != 0)
        goto bad_int;
    dp_config.upstream.connect_timeout_ms = v;
    if (tg_env_int("TOLLGATE_UPSTREAM_TIMEOUT_MS", 600000, 1000, 3600000, &v) != 0)
        goto bad_int;
    dp_config.upstream.total_timeout_ms = v;
    const char *breakers = tg_env_str("TOLLGATE_BREAKER_DEFAULTS", "on");
    if (strcmp(breakers, "on") != 0 && strcmp(breakers, "off") != 0) {
        fprintf(stderr, "TOLLGATE_BREAKER_DEFAULTS must be on or off\n");
        return -1;
    }
    dp_breaker_defaults_off = strcmp(breakers, "off") == 0;
    dp_config.upstream.ca_bundle = tg_env_str("TOLLGATE_CA_BUNDLE", NULL);
    dp_config.usage_spool_dir = tg_env_str("TOLLGATE_USAGE_SPOOL_DIR", NULL);
    dp_config.cp_pub_url = tg_env_str("TOLLGATE_CP_PUB_URL", "tcp://127.0.0.1:7401");
    dp_config.cp_rep_url = tg_env_str("TOLLGATE_CP_REP_URL", "tcp://127.0.0.1:7402");
    int64_t max_tokens, wait_ms;
    if (tg_env_int("TOLLGATE_DEFAULT_MAX_TOKENS", 4096, 1, 10000000, &max_tokens) != 0 ||
        tg_env_int("TOLLGATE_ADMISSION_WAIT_MS", 3000, 10, 600000, &wait_ms) != 0)
        goto bad_int;
    dp_admission_configure(max_tokens, wait_ms);

    const char *secret = tg_env_str("TOLLGATE_CLUSTER_SECRET", NULL);
    if (secret == NULL || tg_wire_key_init(&dp_config.wire_key, secret) != 0) {
        fprintf(stderr, "tollgate-dataplane: TOLLGATE_CLUSTER_SECRET must be set (16 characters or more), the "
                        "same as the control plane's\n");
        return -1;
    }
    /* Usage batches are numbered per process from 1, and the control plane stores a (instance, sequence)
     * pair once: the id must never repeat across restarts, or a restarted process's batches would be
     * taken for resends and dropped. A configured id (a pod name, say) gets a random suffix for that. */
    char host[64] = "dataplane", rnd[9];
    uint8_t r[4];
    const char *id = tg_env_str("TOLLGATE_INSTANCE_ID", NULL);
    if (id == NULL) {
        gethostname(host, sizeof(host) - 1);
        id = host;
    }
    tg_random_bytes(r, sizeof(r));
    tg_hex_encode(r, sizeof(r), rnd);
    snprintf(dp_config.instance_id, sizeof(dp_config.instance_id), "%.100s-%d-%s", id, (int)getpid(), rnd);
    return 0;
bad_int:
    fprintf(stderr, "tollgate-dataplane: an integer setting is out of range (see docs/configuration.md)\n");
    return -1;
}

static int
total_inflight(dp_worker_t *workers, int n)
{
    int sum = 0;
    for (int i = 0; i < n; i++)
        sum += atomic_load(&workers[i].inflight);
    return sum;
}

int
main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: tollgate-dataplane\nConfigured by environment variables; see docs/configuration.md.\n");
        return 0;
    }
    tg_log_init();
    if (load_config() != 0)
        return 2;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (dp_obs_init() != 0)
        return 2;
    dp_obs_set_breaker_source(dp_breaker_foreach); /* breaker state in /metrics */

    /* signals are taken synchronously by the main thread; every other thread blocks them */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    static h2o_globalconf_t conf;
    h2o_config_init(&conf);
    /* h2o answers bodies over its own cap with a plain-text 413 before a handler runs; up to 4x our cap the
     * handler itself refuses them, with an error in the client's dialect */
    conf.max_request_entity_size = dp_config.max_body_bytes * 4;
    conf.server_name = h2o_iovec_init(H2O_STRLIT("tollgate"));
    /* One bound for an idle keep-alive connection and for a request head that is slow to arrive (h2o's
     * HTTP/1 timer covers both). Behind a load balancer it must exceed the balancer's own idle timeout,
     * or the balancer reuses a connection just as we close it and answers its client 502. */
    conf.http1.req_timeout = (uint64_t)dp_config.client_timeout_ms;
    conf.http2.idle_timeout = (uint64_t)dp_config.client_timeout_ms;
    h2o_hostconf_t *host = h2o_config_register_host(&conf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(path, sizeof(*handler));
    handler->on_req = dp_ingress_on_req;

    if (dp_usage_shipper_start() != 0 || dp_sync_start() != 0 || dp_lease_start() != 0)
        return 1;
    /* static: the workers' h2o contexts outlive their threads (see worker.c, teardown) */
    static dp_worker_t *workers;
    workers = calloc(dp_config.workers, sizeof(*workers));
    for (int i = 0; i < dp_config.workers; i++)
        if (dp_worker_start(&workers[i], i, &conf) != 0)
            return 1;
    tg_info("dp.started", "listen=%s workers=%d instance=%s control_plane=%s", dp_config.listen, dp_config.workers,
            dp_config.instance_id, dp_config.cp_rep_url);
    fprintf(stderr, "tollgate-dataplane listening on %s\n", dp_config.listen);

    int sig;
    sigwait(&sigs, &sig);
    tg_info("dp.draining", "signal=%d inflight=%d timeout_ms=%d", sig, total_inflight(workers, dp_config.workers),
            dp_config.drain_timeout_ms);
    atomic_store(&dp_draining, 1);
    for (int i = 0; i < dp_config.workers; i++)
        dp_worker_command(&workers[i], DP_WORKER_DRAIN);
    uint64_t deadline = tg_mono_ns() + (uint64_t)dp_config.drain_timeout_ms * 1000000ull;
    while (total_inflight(workers, dp_config.workers) > 0 && tg_mono_ns() < deadline)
        usleep(20000);
    int left = total_inflight(workers, dp_config.workers);
    if (left > 0)
        tg_warn("dp.drain_timeout", "requests_cut=%d", left);
    for (int i = 0; i < dp_config.workers; i++)
        dp_worker_command(&workers[i], DP_WORKER_STOP);
    for (int i = 0; i < dp_config.workers; i++)
        dp_worker_join(&workers[i]);
    dp_sync_stop();
    dp_usage_shipper_stop(
        dp_config.usage_drain_timeout_ms); /* settled usage first, so the ledger sees it before the give-back */
    dp_lease_stop();
    tg_info("dp.stopped", "usage_unsent=%zu", dp_usage_shipper_pending());
    dp_obs_shutdown(5000); /* the last spans, bounded */
    dp_snapshot_unpublish();
    curl_global_cleanup();
    /* nng_close hands a socket's pipes to NNG's reaper thread, which may still hold the last request
     * sent (a reference kept until its write completes); nng_fini waits for it, so nothing is left
     * behind at exit (LeakSanitizer saw one such usage batch once) */
    nng_fini();
    return 0;
}
