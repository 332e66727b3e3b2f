/*
 * Upstream HTTP calls on the worker's own libuv loop, through libcurl's multi-socket API: pooled
 * keep-alive connections (the multi handle's connection cache), TLS verification on, HTTP/2 where the
 * provider offers it, and backpressure by pausing the transfer.
 *
 * Contract: callbacks run on the worker thread. After dp_upstream_call_cancel() returns, no callback of
 * that call runs again. on_body may return DP_UPSTREAM_PAUSE to leave the bytes unconsumed; they come
 * again after dp_upstream_call_resume().
 *
 * Timeouts per call (call->timeouts, set before start): connect and total are libcurl's; time to first
 * byte (the response's status line) and the idle gap between body chunks are a uv timer of the call.
 * Either ends the call with CURLE_OPERATION_TIMEDOUT and says which in call->error. A paused transfer
 * (backpressure from a slow client) is not idle: the timer waits until it resumes.
 */
#ifndef DP_UPSTREAM_H
#define DP_UPSTREAM_H

#include <stddef.h>
#include <curl/curl.h>
#include <uv.h>

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
    struct dp_call_timer *timer; /* first-byte and idle timer; NULL when neither is set */
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
