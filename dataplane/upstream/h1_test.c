/*
 * Unit tests of the lean client's wire pieces (h1.c): URL parts, the request head, and response framing
 * fed in every possible split of the bytes, the way reads from a socket arrive.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "upstream/h1.h"

static void
test_parse_url(void **state)
{
    dp_h1_url_t u;
    assert_int_equal(dp_h1_parse_url("http://127.0.0.1:8080/v1/chat/completions?x=1", &u), 0);
    assert_int_equal(u.tls, 0);
    assert_int_equal(u.port, 8080);
    assert_int_equal(u.host_len, 9);
    assert_memory_equal(u.host, "127.0.0.1", 9);
    assert_int_equal(u.authority_len, 14);
    assert_int_equal(u.path_len, strlen("/v1/chat/completions?x=1"));

    assert_int_equal(dp_h1_parse_url("https://api.example.com", &u), 0);
    assert_int_equal(u.tls, 1);
    assert_int_equal(u.port, 443);
    assert_int_equal(u.path_len, 1);
    assert_memory_equal(u.path, "/", 1);

    assert_int_equal(dp_h1_parse_url("http://[::1]:9/p#frag", &u), 0);
    assert_int_equal(u.host_len, 3);
    assert_memory_equal(u.host, "::1", 3);
    assert_int_equal(u.port, 9);
    assert_int_equal(u.path_len, 2);

    /* an explicit default port is not part of Host (SigV4 signs the Host without it) */
    assert_int_equal(dp_h1_parse_url("https://bedrock.example:443/model", &u), 0);
    assert_int_equal(u.port, 443);
    assert_int_equal(u.authority_len, strlen("bedrock.example"));
    assert_int_equal(dp_h1_parse_url("http://[::1]:80/", &u), 0);
    assert_int_equal(u.authority_len, strlen("[::1]"));

    assert_int_equal(dp_h1_parse_url("ftp://h/", &u), -1);
    assert_int_equal(dp_h1_parse_url("http://user:pw@h/", &u), -1);
    assert_int_equal(dp_h1_parse_url("http://h:0/", &u), -1);
    assert_int_equal(dp_h1_parse_url("http://h:65536/", &u), -1);
    assert_int_equal(dp_h1_parse_url("http://h:/", &u), -1);
    assert_int_equal(dp_h1_parse_url("http:///x", &u), -1);
    assert_int_equal(dp_h1_parse_url("http://h?q=1", &u), -1);
}

static void
test_build_head(void **state)
{
    dp_h1_url_t u;
    assert_int_equal(dp_h1_parse_url("http://up.example:81/v1/x?y=2", &u), 0);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    h = curl_slist_append(h, "X-Empty;");
    h = curl_slist_append(h, "Content-Length: 99");
    h = curl_slist_append(h, "Authorization:   Bearer k");
    h = curl_slist_append(h, "X-Gone:");
    size_t len;
    char *head = dp_h1_build_head(&u, h, 12, &len);
    const char *want = "POST /v1/x?y=2 HTTP/1.1\r\nHost: up.example:81\r\nContent-Length: 12\r\nAccept: */*\r\n"
                       "Content-Type: application/json\r\nX-Empty: \r\nAuthorization: Bearer k\r\n\r\n";
    assert_int_equal(len, strlen(want));
    assert_memory_equal(head, want, len);
    free(head);

    /* the caller's Host and Accept replace ours */
    struct curl_slist *h2 = curl_slist_append(NULL, "Host: other");
    h2 = curl_slist_append(h2, "Accept: text/event-stream");
    head = dp_h1_build_head(&u, h2, 0, &len);
    want = "POST /v1/x?y=2 HTTP/1.1\r\nContent-Length: 0\r\nHost: other\r\nAccept: text/event-stream\r\n\r\n";
    assert_int_equal(len, strlen(want));
    assert_memory_equal(head, want, len);
    free(head);
    curl_slist_free_all(h);
    curl_slist_free_all(h2);
}

/* Feeds raw in two pieces split at `split`, as the lean client does with its socket buffer: the head is
 * parsed from the front, body bytes are framed in place after the ones already taken. Returns the
 * framing result of the last step; the body goes to out. */
static int
feed_split(const char *raw, size_t raw_len, size_t split, dp_h1_response_t *r, char *out, size_t *out_len,
           size_t *extra_out)
{
    char *buf = malloc(raw_len + 1);
    size_t size = 0, fed = 0, o = 0;
    int have_head = 0, rc = DP_H1_MORE;
    size_t cuts[2] = {split, raw_len};
    for (int step = 0; step < 2; step++) {
        memcpy(buf + size, raw + fed, cuts[step] - fed);
        size += cuts[step] - fed;
        fed = cuts[step];
        if (!have_head) {
            int n = dp_h1_parse_head(r, buf, size);
            assert_true(n >= 0);
            if (n == 0)
                continue;
            memmove(buf, buf + n, size - (size_t)n);
            size -= (size_t)n;
            have_head = 1;
        }
        if (size == 0 || rc == DP_H1_END)
            continue;
        size_t len = size, extra;
        rc = dp_h1_body(r, buf, &len, &extra);
        assert_int_not_equal(rc, DP_H1_ERROR);
        memcpy(out + o, buf, len);
        o += len;
        size = 0; /* delivered */
        if (rc == DP_H1_END)
            *extra_out = extra;
    }
    assert_true(have_head);
    if (r->framing == DP_H1_NONE)
        rc = DP_H1_END;
    *out_len = o;
    free(buf);
    return rc;
}

static void
every_split(const char *raw, const char *body, int framing, int keep_alive, size_t want_extra)
{
    size_t raw_len = strlen(raw);
    for (size_t split = 0; split <= raw_len; split++) {
        dp_h1_response_t r;
        char out[512];
        size_t out_len = 0, extra = 0;
        int rc = feed_split(raw, raw_len, split, &r, out, &out_len, &extra);
        assert_int_equal(rc, DP_H1_END);
        assert_int_equal(r.framing, framing);
        assert_int_equal(r.keep_alive, keep_alive);
        assert_int_equal(out_len, strlen(body));
        assert_memory_equal(out, body, out_len);
        assert_int_equal(extra, want_extra);
    }
}

static void
test_content_length_every_split(void **state)
{
    every_split("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"ok\":\"yes\"}\n",
                "{\"ok\":\"yes\"}\n", DP_H1_LENGTH, 1, 0);
}

static void
test_chunked_every_split(void **state)
{
    every_split("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
                "7\r\ndata: a\r\nA\r\n\n\ndata: bc\r\n0\r\nX-Trailer: t\r\n\r\n",
                "data: a\n\ndata: bc", DP_H1_CHUNKED, 1, 0);
}

static void
test_head_fields(void **state)
{
    dp_h1_response_t r;
    const char *s = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nretry-after: 7\r\n"
                    "content-type: application/json; charset=utf-8\r\nConnection: close\r\ncontent-length: 2\r\n\r\n{}";
    int n = dp_h1_parse_head(&r, s, strlen(s));
    assert_int_equal(n, (int)strlen(s) - 2);
    assert_int_equal(r.status, 429);
    assert_string_equal(r.retry_after, "7");
    assert_string_equal(r.content_type, "application/json; charset=utf-8");
    assert_int_equal(r.keep_alive, 0);
    assert_int_equal(r.framing, DP_H1_LENGTH);

    s = "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n";
    assert_true(dp_h1_parse_head(&r, s, strlen(s)) > 0);
    assert_int_equal(r.keep_alive, 0); /* HTTP/1.0 is never pooled */

    s = "HTTP/1.1 200 OK\r\n\r\n"; /* no length: the body runs to the close */
    assert_true(dp_h1_parse_head(&r, s, strlen(s)) > 0);
    assert_int_equal(r.framing, DP_H1_CLOSE);
    assert_int_equal(r.keep_alive, 0);

    s = "HTTP/1.1 204 No Content\r\n\r\n";
    assert_true(dp_h1_parse_head(&r, s, strlen(s)) > 0);
    assert_int_equal(r.framing, DP_H1_NONE);

    s = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n";
    assert_int_equal(dp_h1_parse_head(&r, s, strlen(s)), -1);
    s = "HTTP/1.1 200 OK\r\ncontent-length: -2\r\n\r\n";
    assert_int_equal(dp_h1_parse_head(&r, s, strlen(s)), -1);
    s = "SSH-2.0-OpenSSH\r\n\r\n";
    assert_int_equal(dp_h1_parse_head(&r, s, strlen(s)), -1);
    s = "HTTP/1.1 200 OK\r\ncontent-le";
    assert_int_equal(dp_h1_parse_head(&r, s, strlen(s)), 0);
}

static void
test_body_edges(void **state)
{
    dp_h1_response_t r;
    const char *s = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n";
    assert_true(dp_h1_parse_head(&r, s, strlen(s)) > 0);
    char b[] = "abcHTTP";
    size_t len = 7, extra;
    assert_int_equal(dp_h1_body(&r, b, &len, &extra), DP_H1_END);
    assert_int_equal(len, 3);
    assert_int_equal(extra, 4); /* bytes after the response: the connection is not reused */

    s = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
    assert_true(dp_h1_parse_head(&r, s, strlen(s)) > 0);
    char bad[] = "zz\r\nabc";
    len = strlen(bad);
    assert_int_equal(dp_h1_body(&r, bad, &len, &extra), DP_H1_ERROR);
    assert_int_equal(len, 0);

    /* h2o ends an aborted chunked response with a broken chunk: what came before is still body */
    assert_true(dp_h1_parse_head(&r, s, strlen(s)) > 0);
    char cut[] = "3\r\nabc\r\n\r\n1\r\n";
    len = strlen(cut);
    assert_int_equal(dp_h1_body(&r, cut, &len, &extra), DP_H1_ERROR);
    assert_int_equal(len, 3);
    assert_memory_equal(cut, "abc", 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_build_head),
        cmocka_unit_test(test_content_length_every_split),
        cmocka_unit_test(test_chunked_every_split),
        cmocka_unit_test(test_head_fields),
        cmocka_unit_test(test_body_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
