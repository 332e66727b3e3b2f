/*
 * Upstream HTTP calls on the worker's own libuv loop, by one of two implementations behind this one
 * contract: the lean HTTP/1.1 client (lean.c: h2o sockets, picohttpparser, a keep-alive pool per
 * scheme/host/port) for plain http(s) upstreams, and libcurl's multi-socket API (upstream_curl.c) for
 * the rest: proxies, HTTP/2, URLs the lean client does not parse, or TOLLGATE_UPSTREAM_CLIENT=curl.
 * Both pool keep-alive connections, verify TLS, and apply backpressure by pausing the transfer.
 *
 * Contract: callbacks run on the worker thread. After dp_upstream_call_cancel() returns, no callback of
 * that call runs again. on_body may return DP_UPSTREAM_PAUSE to leave the bytes unconsumed; they come
 * again after dp_upstream_call_resume().
 *
 * Timeouts per call (call->timeouts, set before start): connect, total, time to first byte (the
 * response's status line) and the idle gap between body chunks. Each ends the call with
 * CURLE_OPERATION_TIMEDOUT and says which in call->error. A paused transfer (backpressure from a slow
 * client) is not idle: the timer waits until it resumes. Both implementations report failures as
 * CURLcode values (the lean one maps its own onto them), so callers see one set of codes.
 */
#ifndef DP_UPSTREAM_H
#define DP_UPSTREAM_H

#include <stddef.h>
#include <curl/curl.h>
#include <uv.h>
#include "upstream/h1.h"

#define DP_UPSTREAM_PAUSE ((size_t)CURL_WRITEFUNC_PAUSE)

typedef struct dp_upstream dp_upstream_t;
typedef struct dp_upstream_call dp_upstream_call_t;

typedef struct dp_upstream_timeouts {
    long connect_ms;    /* 0: the process default */
    long total_ms;      /* 0: the process default */
    long first_byte_ms; /* 0: none */
    long idle_ms;       /* 0: none */
} dp_upstream_timeouts_t;

typedef struct dp_upstream_callbacks {
    /* The response body's next bytes. Return len (consumed), DP_UPSTREAM_PAUSE, or 0 to abort. */
    size_t (*on_body)(dp_upstream_call_t *call, const char *buf, size_t len);
    /* The transfer ended: rc is CURLE_OK or the failure. Called once, unless cancelled. */
    void (*on_done)(dp_upstream_call_t *call, CURLcode rc);
} dp_upstream_callbacks_t;

struct dp_upstream_call {
    dp_upstream_t *upstream;
    CURL *easy;
    const dp_upstream_callbacks_t *cb;
    void *data;
    long status; /* HTTP status of the final response, 0 until known */
    char content_type[96];
    char retry_after[32];
    char error[CURL_ERROR_SIZE];
    dp_upstream_timeouts_t timeouts;
    struct dp_call_timer *timer; /* libcurl: first-byte and idle timer; NULL when neither is set */
    struct dp_lean_call {        /* the lean client's state of the call */
        struct dp_lean_conn *conn;
        struct dp_lean_pool *pool;
        char *head; /* the request head, built once per call */
        size_t head_len;
        const char *body;
        size_t body_len;
        uint64_t start_ms, last_data_ms, connect_deadline_ms, total_deadline_ms; /* uv_now() ms; 0: none */
        CURLcode pending_rc; /* a failure found inside start, reported from the loop (never from start) */
        size_t ready;        /* body bytes at the front of the socket's input not yet taken by on_body */
        dp_h1_response_t resp;
        unsigned phase : 2;
        unsigned retried : 1;  /* sent once more after a reused connection died before answering */
        unsigned body_end : 1; /* the body's last byte is in */
        unsigned body_bad : 1; /* ... or its framing broke there: fail once the bytes before are out */
    } lean_call;
    unsigned lean : 1; /* which implementation runs the call */
    unsigned active : 1;
    unsigned paused : 1;
    unsigned first_byte : 1; /* the response has begun */
};

typedef struct dp_upstream_options {
    long connect_timeout_ms;
    long total_timeout_ms;
    const char *ca_bundle; /* NULL: the system's */
} dp_upstream_options_t;

int dp_upstream_new(uv_loop_t *loop, const dp_upstream_options_t *opts, dp_upstream_t **ret);
/* Cancels what is still running and closes the loop handles; the loop must run once more after this. */
void dp_upstream_free(dp_upstream_t *up);

/* Starts a POST. url, headers and body stay the caller's and must stay valid until on_done or cancel. */
int dp_upstream_call_start(dp_upstream_t *up, dp_upstream_call_t *call, const char *url,
                           const struct curl_slist *headers, const char *body, size_t len);
void dp_upstream_call_cancel(dp_upstream_call_t *call);
void dp_upstream_call_resume(dp_upstream_call_t *call);

#endif
