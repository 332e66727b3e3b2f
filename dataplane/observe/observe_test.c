/* Unit tests of observe/: the W3C traceparent parser and formatter, the access log line (fields,
 * no query string, no content unless the tenant allows it, always valid JSON), the client address
 * and the per-attempt lines (headers, targets tried) that the request path formats by hand. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>
#include "observe/internal.h"
#include "server/worker.h"

dp_config_t dp_config; /* usage.c's, unused here */
atomic_int dp_draining;

static void
test_traceparent_valid(void **state)
{
    uint8_t trace[16], span[8], flags;
    const char *tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_int_equal(dp_trace_parse(tp, strlen(tp), trace, span, &flags), 0);
    assert_int_equal(trace[0], 0x4b);
    assert_int_equal(trace[15], 0x36);
    assert_int_equal(span[0], 0x00);
    assert_int_equal(span[7], 0xb7);
    assert_int_equal(flags, 1);
    char out[56];
    dp_trace_format(trace, span, flags, out);
    assert_string_equal(out, tp);
    /* a later version may carry more fields after a dash */
    const char *future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
    assert_int_equal(dp_trace_parse(future, strlen(future), trace, span, &flags), 0);
}

static void
test_traceparent_invalid(void **state)
{
    uint8_t trace[16], span[8], flags;
    const char *bad[] = {
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",        /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", /* 00 has exactly 4 fields */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",       /* upper case */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",       /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",       /* zero span id */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",       /* forbidden version */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",       /* separator */
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",       /* not hex */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(dp_trace_parse(bad[i], strlen(bad[i]), trace, span, &flags), -1);
}

static json_t *
format_line(dp_obs_t *o)
{
    tg_buf_t b = {0};
    assert_int_equal(dp_access_log_format(o, 1795000000123000000, 2500000, &b), 0);
    assert_true(b.len > 0 && b.base[b.len - 1] == '\n');
    assert_null(memchr(b.base, '\n', b.len - 1)); /* one line */
    json_error_t err;
    json_t *j = json_loadb(b.base, b.len, 0, &err);
    if (j == NULL)
        fail_msg("not JSON: %s: %.*s", err.text, (int)b.len, b.base);
    tg_buf_free(&b);
    return j;
}

static void
fake_request(h2o_req_t *req, dp_obs_t *o)
{
    static char path[] = "/genai/v1beta/models/m:generateContent?key=sk-secret-in-query";
    memset(req, 0, sizeof(*req));
    memset(o, 0, sizeof(*o));
    req->method = h2o_iovec_init(H2O_STRLIT("POST"));
    req->path = h2o_iovec_init(path, strlen(path));
    req->query_at = strchr(path, '?') - path;
    req->entity = h2o_iovec_init(H2O_STRLIT("{\"contents\":[{\"parts\":[{\"text\":\"secret prompt\"}]}]}"));
    o->req = req;
    snprintf(o->request_id, sizeof(o->request_id), "req-1");
    memset(o->trace_id, 0xab, 16);
    o->exchange = 1;
    o->endpoint = "generateContent";
    o->tenant_id = "tenant-1";
    o->key_id = "key-1";
    o->model = "m";
    o->model_len = 1;
    o->provider = "mock";
    o->upstream_model = "m-up";
    static char tried[DP_OBS_TRIED_MAX];
    o->tried = tried;
    snprintf(tried, sizeof(tried), "mock/m-up=503,mock/m-up=200");
    o->tried_len = strlen(o->tried);
    o->attempts = 2;
    o->retries = 1;
    o->status = 200;
    o->input_tokens = 12;
    o->output_tokens = 5;
    o->cost_nanousd = 987;
    o->upstream_ns = 2000000;
    o->first_byte_ns = 1500000;
    snprintf(o->client, sizeof(o->client), "127.0.0.1:5555");
}

static void
test_access_log_fields(void **state)
{
    h2o_req_t req;
    dp_obs_t o;
    fake_request(&req, &o);
    json_t *j = format_line(&o);
    assert_string_equal(json_string_value(json_object_get(j, "ts")), "2026-11-18T11:06:40.123Z");
    assert_string_equal(json_string_value(json_object_get(j, "request_id")), "req-1");
    assert_string_equal(json_string_value(json_object_get(j, "trace_id")), "abababababababababababababababab");
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/genai/v1beta/models/m:generateContent");
    assert_string_equal(json_string_value(json_object_get(j, "tenant")), "tenant-1");
    assert_string_equal(json_string_value(json_object_get(j, "key_id")), "key-1");
    assert_string_equal(json_string_value(json_object_get(j, "targets_tried")), "mock/m-up=503,mock/m-up=200");
    assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "retries")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "input_tokens")), 12);
    assert_int_equal(json_integer_value(json_object_get(j, "cost_nanousd")), 987);
    assert_true(json_is_null(json_object_get(j, "error_code")));
    json_t *lat = json_object_get(j, "latency_ms");
    assert_true(json_real_value(json_object_get(lat, "total")) == 2.5);
    assert_true(json_real_value(json_object_get(lat, "upstream")) == 2.0);
    assert_true(json_real_value(json_object_get(lat, "ttfb")) == 1.5);
    assert_true(json_real_value(json_object_get(lat, "overhead")) == 0.5);
    assert_string_equal(json_string_value(json_object_get(j, "client")), "127.0.0.1:5555");
    /* no content, no secrets */
    char *text = json_dumps(j, 0);
    assert_null(strstr(text, "secret"));
    assert_null(json_object_get(j, "request_body"));
    assert_null(json_object_get(j, "response_body"));
    free(text);
    json_decref(j);
}

static void
test_access_log_content_when_allowed(void **state)
{
    h2o_req_t req;
    dp_obs_t o;
    fake_request(&req, &o);
    o.log_content = 1;
    o.request_body = req.entity;
    tg_buf_append(&o.response, "{\"text\":\"hi\xff\"}", 14); /* a broken byte stays out of the JSON */
    json_t *j = format_line(&o);
    assert_non_null(strstr(json_string_value(json_object_get(j, "request_body")), "secret prompt"));
    assert_string_equal(json_string_value(json_object_get(j, "response_body")), "{\"text\":\"hi\xef\xbf\xbd\"}");
    json_decref(j);
    tg_buf_free(&o.response);
}

/* ---------------------------------------------------------------- the client's address */

static struct sockaddr_storage fake_peer;
static socklen_t fake_peer_len;

static socklen_t
get_fake_peer(h2o_conn_t *conn, struct sockaddr *sa)
{
    memcpy(sa, &fake_peer, fake_peer_len);
    return fake_peer_len;
}

static void
peer_of(const char *ip, uint16_t port, char out[64])
{
    static const h2o_conn_callbacks_t callbacks = {.get_peername = get_fake_peer};
    h2o_conn_t conn = {.callbacks = &callbacks};
    h2o_req_t req = {.conn = &conn};
    memset(&fake_peer, 0, sizeof(fake_peer));
    struct sockaddr_in *a4 = (void *)&fake_peer;
    struct sockaddr_in6 *a6 = (void *)&fake_peer;
    if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        fake_peer_len = sizeof(*a4);
    } else if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        fake_peer_len = sizeof(*a6);
    } else {
        fake_peer_len = 0; /* a connection without an address (e.g. a unix socket) */
    }
    memset(out, 'x', 64);
    dp_access_log_peer(&req, out);
}

static void
test_access_log_peer(void **state)
{
    char out[64];
    peer_of("127.0.0.1", 5555, out);
    assert_string_equal(out, "127.0.0.1:5555");
    peer_of("0.0.0.0", 0, out);
    assert_string_equal(out, "0.0.0.0:0");
    peer_of("255.255.255.255", 65535, out);
    assert_string_equal(out, "255.255.255.255:65535");
    peer_of("10.20.0.9", 80, out);
    assert_string_equal(out, "10.20.0.9:80");
    peer_of("::1", 443, out);
    assert_string_equal(out, "::1:443");
    peer_of("::ffff:203.0.113.7", 8080, out); /* a v4 client on a dual-stack listener */
    assert_string_equal(out, "::ffff:203.0.113.7:8080");
    peer_of("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, out);
    assert_string_equal(out, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:65535");
    peer_of("none", 1, out);
    assert_string_equal(out, "");
}

/* ---------------------------------------------------------------- attempts */

static void
test_attempt_lines(void **state)
{
    h2o_req_t req;
    dp_obs_t o;
    fake_request(&req, &o);
    h2o_mem_init_pool(&req.pool);
    o.tried = NULL; /* allocated from the request's pool at the first attempt */
    o.tried_len = 0;
    o.attempts = 0;
    memset(o.trace_id, 0, 16);
    o.trace_id[15] = 1;
    snprintf(o.request_id, sizeof(o.request_id), "req_abc");
    dp_provider_t prov = {.name = "acme"};
    dp_target_t target = {.provider = &prov, .upstream_model = "m-1"};

    const struct curl_slist *h = dp_obs_attempt_begin(&o, &target, NULL);
    assert_string_equal(h->data, "x-request-id: req_abc");
    assert_memory_equal(h->next->data, "traceparent: 00-00000000000000000000000000000001-", 48);
    assert_int_equal(strlen(h->next->data), strlen("traceparent: ") + 55);
    assert_null(h->next->next);
    dp_obs_attempt_end(&o, 503, CURLE_OK);
    dp_obs_attempt_begin(&o, &target, NULL);
    dp_obs_attempt_end(&o, 0, CURLE_OPERATION_TIMEDOUT);
    dp_obs_attempt_begin(&o, &target, NULL);
    dp_obs_attempt_end(&o, 200, CURLE_OK);
    assert_string_equal(o.tried, "acme/m-1=503,acme/m-1=timeout,acme/m-1=200");
    assert_int_equal(o.tried_len, strlen(o.tried));
    assert_int_equal(o.attempts, 3);

    /* a list that outgrows its room is cut and marked full, never overrun */
    char longname[200];
    memset(longname, 'p', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    prov.name = longname;
    for (int i = 0; i < 5; i++) {
        dp_obs_attempt_begin(&o, &target, NULL);
        dp_obs_attempt_end(&o, 429, CURLE_OK);
    }
    assert_int_equal(o.tried_len, DP_OBS_TRIED_MAX);
    assert_int_equal(strlen(o.tried), DP_OBS_TRIED_MAX - 1);
    h2o_mem_clear_pool(&req.pool);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent_valid), cmocka_unit_test(test_traceparent_invalid),
        cmocka_unit_test(test_access_log_fields), cmocka_unit_test(test_access_log_content_when_allowed),
        cmocka_unit_test(test_access_log_peer),   cmocka_unit_test(test_attempt_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
