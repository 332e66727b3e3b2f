/*
 * Inside dataplane/upstream/ only: the two implementations of upstream.h's contract and what the
 * dispatcher (upstream.c) holds of each. upstream_curl.c drives libcurl (HTTP/2, proxies, anything
 * unusual); lean.c is the HTTP/1.1 client for plain keep-alive upstreams.
 */
#ifndef DP_UPSTREAM_INTERNAL_H
#define DP_UPSTREAM_INTERNAL_H

#include "upstream/upstream.h"

typedef struct dp_curl dp_curl_t;
typedef struct dp_lean dp_lean_t;

struct dp_upstream {
    uv_loop_t *loop;
    dp_upstream_options_t opts;
    dp_curl_t *curl;
    dp_lean_t *lean; /* NULL when TOLLGATE_UPSTREAM_CLIENT=curl */
    int proxy_env;   /* a proxy variable is set: every call goes through libcurl, which honours it */
};

int dp_curl_new(dp_upstream_t *up, dp_curl_t **ret);
void dp_curl_free(dp_curl_t *c);
int dp_curl_call_start(dp_upstream_t *up, dp_upstream_call_t *call, const char *url, const struct curl_slist *headers,
                       const char *body, size_t len);
void dp_curl_call_cancel(dp_upstream_call_t *call);
void dp_curl_call_resume(dp_upstream_call_t *call);

int dp_lean_new(dp_upstream_t *up, dp_lean_t **ret);
void dp_lean_free(dp_lean_t *l);
/* -1 before anything started when the URL is not one the lean client takes (the caller uses libcurl). */
int dp_lean_call_start(dp_upstream_t *up, dp_upstream_call_t *call, const dp_h1_url_t *u,
                       const struct curl_slist *headers, const char *body, size_t len);
void dp_lean_call_cancel(dp_upstream_call_t *call);
void dp_lean_call_resume(dp_upstream_call_t *call);

#endif
