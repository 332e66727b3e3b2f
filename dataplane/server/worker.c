/*
 * Worker threads (see worker.h). Each one owns a listening socket bound with SO_REUSEPORT, so the kernel
 * spreads new connections across workers without a shared accept lock; libuv 1.44 has no flag for that,
 * hence the socket is made here and handed to the loop with uv_tcp_open().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ingress/ingress.h"
#include "admission/admission.h"
#include "observe/observe.h"
#include "server/worker.h"
#include "tollgate/crypto.h"
#include "tollgate/log.h"

dp_snapshot_t *
dp_worker_snapshot(dp_worker_t *w)
{
    uint64_t v = dp_snapshot_current_version();
    if (w->snapshot == NULL || w->snapshot->version != v) {
        dp_snapshot_t *s = dp_snapshot_acquire();
        if (s != NULL) {
            dp_snapshot_unref(w->snapshot);
            w->snapshot = s;
        }
    }
    return w->snapshot;
}

static void
on_conn_closed(uv_handle_t *h)
{
    free(h);
}

static void
on_accept(uv_stream_t *listener, int status)
{
    dp_worker_t *w = listener->data;
    if (status != 0)
        return;
    uv_tcp_t *conn = malloc(sizeof(*conn));
    if (conn == NULL)
        return;
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, on_conn_closed);
        return;
    }
    uv_tcp_nodelay(conn, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)conn, on_conn_closed);
    h2o_accept(&w->accept_ctx, sock);
}

static int
open_listener(dp_worker_t *w)
{
    int fd = socket(dp_config.listen_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1;
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        bind(fd, (struct sockaddr *)&dp_config.listen_addr, dp_config.listen_addr_len) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    uv_tcp_init(&w->loop, &w->listener);
    w->listener.data = w;
    int rv;
    if ((rv = uv_tcp_open(&w->listener, fd)) != 0 ||
        (rv = uv_listen((uv_stream_t *)&w->listener, 1024, on_accept)) != 0)
        return rv;
    w->listening = 1;
    return 0;
}

static void
on_usage_timer(uv_timer_t *t)
{
    dp_worker_t *w = t->data;
    dp_usage_flush(&w->usage);
    if (w->usage.count > 0) /* could not be handed over (out of memory): try again later */
        dp_worker_usage_added(w);
}

void
dp_worker_usage_added(dp_worker_t *w)
{
    if (!uv_is_active((uv_handle_t *)&w->usage_timer))
        uv_timer_start(&w->usage_timer, on_usage_timer, dp_config.usage_flush_ms, 0);
}

static void
on_wakeup(uv_async_t *a)
{
    dp_worker_t *w = a->data;
    int cmd = atomic_load(&w->command);
    if (cmd >= DP_WORKER_DRAIN && w->listening) {
        w->listening = 0;
        uv_close((uv_handle_t *)&w->listener, NULL);
        /* closes idle keep-alive connections and sends GOAWAY on HTTP/2 */
        h2o_context_request_shutdown(&w->ctx);
    }
    if (cmd == DP_WORKER_STOP) {
        dp_usage_flush(&w->usage);
        uv_stop(&w->loop);
    }
}

/* Releases what the worker owns once its loop has stopped. The h2o context stays: connections may
 * still be closing after the drain, and h2o 2.2 asserts when a context is disposed under them; its
 * memory stays reachable from the worker until the process exits. */
static void
teardown(dp_worker_t *w)
{
    dp_usage_flush(&w->usage);
    dp_usage_buffer_dispose(&w->usage);
    uv_close((uv_handle_t *)&w->wakeup, NULL);
    dp_admission_worker_free(w->admission);
    w->admission = NULL;
    uv_timer_stop(&w->usage_timer);
    uv_close((uv_handle_t *)&w->usage_timer, NULL);
    dp_access_log_set_timer(NULL);
    uv_timer_stop(&w->log_timer);
    uv_close((uv_handle_t *)&w->log_timer, NULL);
    dp_upstream_free(w->upstream);
    w->upstream = NULL;
    for (int i = 0; i < 16 && uv_run(&w->loop, UV_RUN_NOWAIT) != 0; i++)
        ;
    dp_snapshot_unref(w->snapshot);
    w->snapshot = NULL;
    dp_access_log_flush(1); /* last: requests that ended during the teardown above have their lines */
}

/* Socket input buffers (client connections, upstream connections) and HTTP/2 request bodies start at
 * h2o_socket_buffer_prototype's capacity, 8 KB in libh2o 2.2.5. A socket read asks for 4 KB, so 4 KB is
 * the smallest prototype that keeps reads on h2o's per-thread recycled buffers; half the default halves
 * what a streaming request holds for its whole life (an HTTP/2 stream's 8 KB body buffer, an HTTP/1.1
 * client's input buffer) and costs only larger bodies an extra grow. The prototype is thread-local and
 * must be set before the thread allocates its first buffer: recycled buffers are all of one size. */
static void
shrink_socket_buffers(void)
{
    h2o_socket_buffer_prototype._initial_buf.capacity = H2O_SOCKET_INITIAL_INPUT_BUFFER_SIZE;
}

static void *
worker_main(void *arg)
{
    dp_worker_t *w = arg;
    shrink_socket_buffers();
    dp_access_log_set_timer(&w->log_timer); /* per thread: set here, on the worker's own thread */
    uv_run(&w->loop, UV_RUN_DEFAULT);
    teardown(w);
    return NULL;
}

int
dp_worker_start(dp_worker_t *w, int id, h2o_globalconf_t *conf)
{
    int rv;
    w->id = id;
    if (tg_random_bytes(&w->rng, sizeof(w->rng)) != 0 || w->rng == 0)
        w->rng = 0x9e3779b97f4a7c15ull + (uint64_t)id;
    uv_loop_init(&w->loop);
    h2o_context_init(&w->ctx, &w->loop, conf);
    w->accept_ctx.ctx = &w->ctx;
    w->accept_ctx.hosts = conf->hosts;
    if (dp_upstream_new(&w->loop, &dp_config.upstream, &w->upstream) != 0)
        return -1;
    uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    if ((w->admission = dp_admission_worker_new(&w->loop)) == NULL)
        return -1;
    w->wakeup.data = w;
    /* both timers run only while something waits: an idle worker sleeps (dp_worker_usage_added, the
     * access log) */
    uv_timer_init(&w->loop, &w->usage_timer);
    w->usage_timer.data = w;
    uv_timer_init(&w->loop, &w->log_timer);
    if ((rv = open_listener(w)) != 0) {
        tg_error("dp.listen_failed", "address=%s error=%s", dp_config.listen, uv_strerror(rv));
        return -1;
    }
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return -1;
    return 0;
}

void
dp_worker_command(dp_worker_t *w, int command)
{
    atomic_store(&w->command, command);
    uv_async_send(&w->wakeup);
}

void
dp_worker_join(dp_worker_t *w)
{
    pthread_join(w->thread, NULL);
}
