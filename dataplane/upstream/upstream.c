/*
 * Which upstream client runs a call (see upstream.h): the lean HTTP/1.1 client for http:// and https://
 * upstreams with no proxy configured, libcurl for everything else (and for URLs the lean client's
 * parser refuses). The lean client speaks HTTP/1.1 only: a provider that needs HTTP/2 needs curl.
 * TOLLGATE_UPSTREAM_CLIENT=curl|lean forces the choice for the process (lean still leaves proxies and unparsed URLs to
 * libcurl).
 *
 * The proxy rule is deliberately blunt: any of http_proxy, HTTPS_PROXY, ALL_PROXY (either case) set
 * sends every call through libcurl, which honours them together with NO_PROXY.
 */
#include <stdlib.h>
#include <string.h>
#include "upstream/internal.h"

static int
proxy_configured(void)
{
    static const char *const vars[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                       "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        const char *v = getenv(vars[i]);
        if (v != NULL && v[0] != '\0')
            return 1;
    }
    return 0;
}

int
dp_upstream_new(uv_loop_t *loop, const dp_upstream_options_t *opts, dp_upstream_t **ret)
{
    dp_upstream_t *up = calloc(1, sizeof(*up));
    if (up == NULL)
        return -1;
    up->loop = loop;
    up->opts = *opts;
    up->proxy_env = proxy_configured();
    const char *mode = getenv("TOLLGATE_UPSTREAM_CLIENT");
    int lean = mode == NULL || mode[0] == '\0' || strcmp(mode, "lean") == 0;
    if (dp_curl_new(up, &up->curl) != 0 || (lean && !up->proxy_env && dp_lean_new(up, &up->lean) != 0)) {
        dp_upstream_free(up);
        return -1;
    }
    *ret = up;
    return 0;
}

void
dp_upstream_free(dp_upstream_t *up)
{
    if (up == NULL)
        return;
    if (up->lean != NULL)
        dp_lean_free(up->lean);
    if (up->curl != NULL)
        dp_curl_free(up->curl);
    free(up);
}

int
dp_upstream_call_start(dp_upstream_t *up, dp_upstream_call_t *call, const char *url, const struct curl_slist *headers,
                       const char *body, size_t len)
{
    dp_h1_url_t u;
    if (up->lean != NULL && dp_h1_parse_url(url, &u) == 0)
        return dp_lean_call_start(up, call, &u, headers, body, len);
    return dp_curl_call_start(up, call, url, headers, body, len);
}

void
dp_upstream_call_cancel(dp_upstream_call_t *call)
{
    if (call->lean)
        dp_lean_call_cancel(call);
    else
        dp_curl_call_cancel(call);
}

void
dp_upstream_call_resume(dp_upstream_call_t *call)
{
    if (call->lean)
        dp_lean_call_resume(call);
    else
        dp_curl_call_resume(call);
}
