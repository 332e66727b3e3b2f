/*
 * The libcurl implementation of upstream.h: multi-socket glue for one worker loop. It serves what the
 * lean client (lean.c) does not: HTTP/2 providers, proxies, and everything when
 * TOLLGATE_UPSTREAM_CLIENT=curl.
 *
 * curl tells us which sockets to watch (on_socket) and when to wake it (on_timer); we watch them with
 * uv_poll_t / uv_timer_t and hand events back with curl_multi_socket_action(). Completed transfers are
 * collected by drain_done() after every action, outside curl's callbacks, because curl forbids
 * curl_multi_* calls from inside its own callbacks. Easy handles are kept in a small free list so that
 * their per-handle caches survive between requests.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "upstream/internal.h"

#define FREE_EASY_MAX 256

struct dp_curl {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    const dp_upstream_options_t *opts;
    CURL *free_easy[FREE_EASY_MAX];
    size_t n_free_easy;
};

/* Malloc'd apart from the call: a uv handle outlives the call's memory until its close callback. */
struct dp_call_timer {
    uv_timer_t handle;
    dp_upstream_call_t *call; /* NULL once the call is over */
};

typedef struct socket_watch {
    uv_poll_t poll;
    curl_socket_t fd;
    dp_curl_t *up;
} socket_watch_t;

static void
drain_done(dp_curl_t *up)
{
    CURLMsg *m;
    int pending;
    while ((m = curl_multi_info_read(up->multi, &pending)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        dp_upstream_call_t *call;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        CURLcode rc = m->data.result;
        if (call->status == 0)
            curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &call->status);
        dp_curl_call_cancel(call); /* detaches the easy handle; no callbacks after this */
        call->cb->on_done(call, rc);
    }
}

static void
on_call_timer_closed(uv_handle_t *h)
{
    free(h); /* struct dp_call_timer starts with its handle */
}

static void
stop_call_timer(dp_upstream_call_t *call)
{
    if (call->timer == NULL)
        return;
    call->timer->call = NULL;
    uv_timer_stop(&call->timer->handle);
    uv_close((uv_handle_t *)&call->timer->handle, on_call_timer_closed);
    call->timer = NULL;
}

static void
on_call_timeout(uv_timer_t *t)
{
    dp_upstream_call_t *call = ((struct dp_call_timer *)t)->call;
    if (call == NULL || !call->active)
        return;
    if (call->first_byte)
        snprintf(call->error, sizeof(call->error), "no data from the provider for %ld ms (idle timeout)",
                 call->timeouts.idle_ms);
    else
        snprintf(call->error, sizeof(call->error), "no response from the provider within %ld ms (first-byte timeout)",
                 call->timeouts.first_byte_ms);
    dp_curl_call_cancel(call); /* closes the timer too */
    call->cb->on_done(call, CURLE_OPERATION_TIMEDOUT);
}

/* (Re)arms the timer for what the call waits for now: its first byte, or its next chunk. */
static void
arm_call_timer(dp_upstream_call_t *call)
{
    long ms = call->first_byte ? call->timeouts.idle_ms : call->timeouts.first_byte_ms;
    if (call->timer == NULL)
        return;
    if (ms <= 0)
        uv_timer_stop(&call->timer->handle);
    else
        uv_timer_start(&call->timer->handle, on_call_timeout, (uint64_t)ms, 0);
}

static void
got_bytes(dp_upstream_call_t *call)
{
    call->first_byte = 1;
    arm_call_timer(call);
}

static void
on_poll(uv_poll_t *handle, int status, int events)
{
    socket_watch_t *w = handle->data;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    dp_curl_t *up = w->up;
    curl_multi_socket_action(up->multi, w->fd, flags, &running);
    drain_done(up);
}

static void
on_timer_fire(uv_timer_t *t)
{
    dp_curl_t *up = t->data;
    int running;
    curl_multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_done(up);
}

static int
on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    dp_curl_t *up = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&up->timer);
    else
        uv_timer_start(&up->timer, on_timer_fire, timeout_ms, 0);
    return 0;
}

static void
on_watch_closed(uv_handle_t *h)
{
    free(h->data);
}

static int
on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    dp_curl_t *up = userp;
    socket_watch_t *w = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (w != NULL) {
            uv_poll_stop(&w->poll);
            uv_close((uv_handle_t *)&w->poll, on_watch_closed);
            curl_multi_assign(up->multi, fd, NULL);
        }
        return 0;
    }
    if (w == NULL) {
        if ((w = calloc(1, sizeof(*w))) == NULL)
            return -1;
        w->fd = fd;
        w->up = up;
        if (uv_poll_init_socket(up->loop, &w->poll, fd) != 0) {
            free(w);
            return -1;
        }
        w->poll.data = w;
        curl_multi_assign(up->multi, fd, w);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&w->poll, events, on_poll);
    return 0;
}

int
dp_curl_new(dp_upstream_t *owner, dp_curl_t **ret)
{
    dp_curl_t *up = calloc(1, sizeof(*up));
    uv_loop_t *loop = owner->loop;
    if (up == NULL)
        return -1;
    up->loop = loop;
    up->opts = &owner->opts;
    if ((up->multi = curl_multi_init()) == NULL) {
        free(up);
        return -1;
    }
    uv_timer_init(loop, &up->timer);
    up->timer.data = up;
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
    /* many concurrent streams to one provider share HTTP/2 connections where possible */
    curl_multi_setopt(up->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, 1024L);
    *ret = up;
    return 0;
}

static void
on_timer_closed(uv_handle_t *h)
{
    dp_curl_t *up = h->data;
    curl_multi_cleanup(up->multi);
    free(up);
}

void
dp_curl_free(dp_curl_t *up)
{
    if (up == NULL)
        return;
    for (size_t i = 0; i < up->n_free_easy; i++)
        curl_easy_cleanup(up->free_easy[i]);
    up->n_free_easy = 0;
    uv_timer_stop(&up->timer);
    uv_close((uv_handle_t *)&up->timer, on_timer_closed);
}

static size_t
on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    dp_upstream_call_t *call = userdata;
    size_t len = size * nmemb;
    if (call->status == 0)
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &call->status);
    size_t rv = call->cb->on_body(call, ptr, len);
    if (rv == DP_UPSTREAM_PAUSE) {
        call->paused = 1;
        if (call->timer != NULL)
            uv_timer_stop(&call->timer->handle); /* the client is slow, not the provider */
    } else if (call->active) {
        got_bytes(call);
    }
    return rv;
}

static void
copy_header_value(char *dst, size_t cap, const char *v, size_t len)
{
    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
        len--;
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

static size_t
on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    dp_upstream_call_t *call = userdata;
    size_t len = size * nitems;
    if (!call->first_byte)
        got_bytes(call);
    if (len > 13 && strncasecmp(buf, "content-type:", 13) == 0)
        copy_header_value(call->content_type, sizeof(call->content_type), buf + 13, len - 13);
    else if (len > 12 && strncasecmp(buf, "retry-after:", 12) == 0)
        copy_header_value(call->retry_after, sizeof(call->retry_after), buf + 12, len - 12);
    return len;
}

int
dp_curl_call_start(dp_upstream_t *owner, dp_upstream_call_t *call, const char *url, const struct curl_slist *headers,
                   const char *body, size_t len)
{
    dp_curl_t *up = owner->curl;
    CURL *easy = up->n_free_easy > 0 ? up->free_easy[--up->n_free_easy] : curl_easy_init();
    if (easy == NULL)
        return -1;
    call->upstream = owner;
    call->lean = 0;
    call->easy = easy;
    call->status = 0;
    call->content_type[0] = call->retry_after[0] = call->error[0] = '\0';
    call->paused = 0;
    call->first_byte = 0;
    call->timer = NULL;

    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, (struct curl_slist *)headers);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, call);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, call);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, call->error);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     call->timeouts.connect_ms > 0 ? call->timeouts.connect_ms : up->opts->connect_timeout_ms);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS,
                     call->timeouts.total_ms > 0 ? call->timeouts.total_ms : up->opts->total_timeout_ms);
    if (up->opts->ca_bundle != NULL)
        curl_easy_setopt(easy, CURLOPT_CAINFO, up->opts->ca_bundle);

    if (curl_multi_add_handle(up->multi, easy) != CURLM_OK) {
        curl_easy_reset(easy);
        if (up->n_free_easy < FREE_EASY_MAX)
            up->free_easy[up->n_free_easy++] = easy;
        else
            curl_easy_cleanup(easy);
        call->easy = NULL;
        return -1;
    }
    call->active = 1;
    if (call->timeouts.first_byte_ms > 0 || call->timeouts.idle_ms > 0) {
        if ((call->timer = malloc(sizeof(*call->timer))) != NULL) {
            uv_timer_init(up->loop, &call->timer->handle);
            call->timer->call = call;
            arm_call_timer(call);
        }
    }
    return 0;
}

void
dp_curl_call_cancel(dp_upstream_call_t *call)
{
    if (!call->active)
        return;
    dp_curl_t *up = call->upstream->curl;
    call->active = 0;
    stop_call_timer(call);
    curl_multi_remove_handle(up->multi, call->easy);
    curl_easy_reset(call->easy);
    if (up->n_free_easy < FREE_EASY_MAX)
        up->free_easy[up->n_free_easy++] = call->easy;
    else
        curl_easy_cleanup(call->easy);
    call->easy = NULL;
}

void
dp_curl_call_resume(dp_upstream_call_t *call)
{
    if (!call->active || !call->paused)
        return;
    call->paused = 0;
    arm_call_timer(call);
    /* may call on_write synchronously, which may pause again */
    curl_easy_pause(call->easy, CURLPAUSE_CONT);
    drain_done(call->upstream->curl);
}
