/*
 * HTTP/1.1 wire pieces of the lean upstream client (lean.c), kept free of I/O so that a unit test can
 * feed them any split of the bytes: the request URL's parts, the request head built once per call, and
 * the response head and body framing (Content-Length, chunked, read-until-close) on top of
 * picohttpparser, which libh2o exports but whose header Debian's libh2o-dev does not ship.
 */
#ifndef DP_UPSTREAM_H1_H
#define DP_UPSTREAM_H1_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <curl/curl.h>

/* picohttpparser as built into libh2o 2.2.5 (deps/picohttpparser). */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
struct phr_chunked_decoder {
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char _hex_count;
    char _state;
};
int phr_parse_response(const char *buf, size_t len, int *minor_version, int *status, const char **msg, size_t *msg_len,
                       struct phr_header *headers, size_t *num_headers, size_t last_len);
ssize_t phr_decode_chunked(struct phr_chunked_decoder *decoder, char *buf, size_t *bufsz);

typedef struct dp_h1_url {
    int tls;
    const char *host; /* without the brackets of an IPv6 literal */
    size_t host_len;
    uint16_t port;
    const char *authority; /* host[:port] as written, for the Host header */
    size_t authority_len;
    const char *path; /* path and query, "/" when the URL has none */
    size_t path_len;
} dp_h1_url_t;

/* 0, or -1 for a URL that is not http(s)://authority[/path] (userinfo, or a query without a path, is
 * refused: the caller leaves such URLs to libcurl). */
int dp_h1_parse_url(const char *url, dp_h1_url_t *ret);

/* The request head of a POST: request line, Host, Content-Length, Accept (unless given), the caller's
 * lines, a blank line. The caller's lines follow libcurl's rules, which the callers were written for:
 * "Name:" with nothing after it suppresses that header, "Name;" sends it empty. Their Host replaces
 * ours; Content-Length, Transfer-Encoding, Expect and Connection are ours alone. Returns a malloc'd
 * buffer (the caller frees it) or NULL. */
char *dp_h1_build_head(const dp_h1_url_t *u, const struct curl_slist *headers, size_t body_len, size_t *ret_len);

enum { DP_H1_NONE, DP_H1_LENGTH, DP_H1_CHUNKED, DP_H1_CLOSE };
enum { DP_H1_MORE = 0, DP_H1_END = 1, DP_H1_ERROR = -1 };

typedef struct dp_h1_response {
    int status;
    int minor_version;
    int framing;        /* DP_H1_* */
    int keep_alive;     /* the connection may carry another request after this response */
    uint64_t remaining; /* DP_H1_LENGTH: body bytes still to come */
    union {
        struct phr_chunked_decoder d;
        char pad[64]; /* room for later layouts of the decoder, which only ever grew */
    } chunked;
    char content_type[96];
    char retry_after[32];
} dp_h1_response_t;

/* Parses the response head at buf, skipping interim 1xx heads. Returns the bytes consumed (>0), 0 when
 * the head is not complete yet, -1 when it is not HTTP/1.x. Fills r on success. */
int dp_h1_parse_head(dp_h1_response_t *r, const char *buf, size_t len);

/* Frames the next body bytes, buf[0..*len), in place: on return buf[0..*len) is body data (chunked
 * encoding removed) and the result is DP_H1_MORE, DP_H1_END (the body ended; *ret_extra bytes that
 * follow it were not part of it) or DP_H1_ERROR (buf[0..*len) is what was decoded before the error). */
int dp_h1_body(dp_h1_response_t *r, char *buf, size_t *len, size_t *ret_extra);

#endif
