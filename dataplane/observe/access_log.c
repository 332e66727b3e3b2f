/*
 * The JSON access log: one line per request, written when the request ends (observe.c, on_dispose).
 *
 * Never prompt text or secrets: the line has ids, names, numbers and the path without its query string
 * (Gemini clients may put the key there). Only when the key's tenant has log_content on does the line
 * carry the request body and the response bytes sent, each capped at DP_OBS_CAPTURE_MAX.
 *
 * Writing: the line is built in a buffer and goes out with one write(2) (O_APPEND for files), so lines
 * from several workers never interleave and the loop is held for one system call. A failed or short
 * write is counted (tollgate_access_log_write_failures_total), never retried on the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "observe/internal.h"

static int log_fd = -1;
static int log_owned; /* a file we opened */

int
dp_access_log_open(const char *where)
{
    if (where == NULL || strcmp(where, "stderr") == 0) {
        log_fd = STDERR_FILENO;
    } else if (strcmp(where, "stdout") == 0) {
        log_fd = STDOUT_FILENO;
    } else if (strcmp(where, "off") == 0) {
        log_fd = -1;
    } else {
        log_fd = open(where, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (log_fd < 0) {
            fprintf(stderr, "tollgate-dataplane: TOLLGATE_ACCESS_LOG=%s cannot be opened: %s\n", where,
                    strerror(errno));
            return -1;
        }
        log_owned = 1;
    }
    return 0;
}

int
dp_access_log_enabled(void)
{
    return log_fd >= 0;
}

void
dp_access_log_close(void)
{
    if (log_owned)
        close(log_fd);
    log_fd = -1;
    log_owned = 0;
}

static void
str_field(tg_buf_t *b, const char *name, const char *v, size_t len)
{
    tg_buf_appendf(b, ",\"%s\":", name);
    if (v == NULL)
        tg_buf_appends(b, "null");
    else
        tg_buf_append_json_string(b, v, len);
}

static void
cstr_field(tg_buf_t *b, const char *name, const char *v)
{
    str_field(b, name, v, v != NULL ? strlen(v) : 0);
}

/* Bytes as a JSON string: valid UTF-8 is kept, anything else becomes U+FFFD, so a binary or cut body
 * never breaks the line. */
static void
text_field(tg_buf_t *b, const char *name, const char *p, size_t len)
{
    tg_buf_t clean = {0};
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)p[i];
        size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        int ok = n > 0 && i + n <= len;
        for (size_t k = 1; ok && k < n; k++)
            ok = ((unsigned char)p[i + k] & 0xc0) == 0x80;
        if (ok) {
            tg_buf_append(&clean, p + i, n);
            i += n;
        } else {
            tg_buf_appends(&clean, "\xef\xbf\xbd");
            i++;
        }
    }
    str_field(b, name, clean.base ? clean.base : "", clean.len);
    tg_buf_free(&clean);
}

int
dp_access_log_format(const dp_obs_t *o, int64_t end_unix_ns, uint64_t total_ns, tg_buf_t *b)
{
    h2o_req_t *req = o->req;
    time_t sec = (time_t)(end_unix_ns / 1000000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char ts[40];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    tg_buf_appendf(b, "{\"ts\":\"%s.%03dZ\"", ts, (int)(end_unix_ns / 1000000 % 1000));
    cstr_field(b, "request_id", o->request_id);
    char trace[33];
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        trace[2 * i] = digits[o->trace_id[i] >> 4];
        trace[2 * i + 1] = digits[o->trace_id[i] & 15];
    }
    trace[32] = '\0';
    cstr_field(b, "trace_id", trace);
    str_field(b, "method", req->method.base, req->method.len > 16 ? 16 : req->method.len);
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    text_field(b, "path", req->path.base, plen > 256 ? 256 : plen);
    cstr_field(b, "endpoint", o->endpoint);
    cstr_field(b, "tenant", o->tenant_id);
    cstr_field(b, "key_id", o->key_id);
    if (o->model != NULL)
        text_field(b, "model", o->model, o->model_len > 256 ? 256 : o->model_len);
    else
        cstr_field(b, "model", NULL);
    cstr_field(b, "provider", o->provider);
    cstr_field(b, "upstream_model", o->upstream_model);
    str_field(b, "targets_tried", o->tried, o->tried_len);
    tg_buf_appendf(b, ",\"attempts\":%d,\"retries\":%d,\"fallbacks\":%d,\"status\":%d", o->attempts, o->retries,
                   o->fallbacks, o->status);
    cstr_field(b, "error_code", o->error_code[0] ? o->error_code : NULL);
    tg_buf_appendf(b, ",\"stream\":%s", o->stream ? "true" : "false");
    tg_buf_appendf(b, ",\"input_tokens\":%lld,\"output_tokens\":%lld,\"cached_tokens\":%lld,\"cost_nanousd\":%lld",
                   (long long)o->input_tokens, (long long)o->output_tokens, (long long)o->cached_tokens,
                   (long long)o->cost_nanousd);
    double total = total_ns / 1e6, up = o->upstream_ns / 1e6;
    tg_buf_appendf(b, ",\"latency_ms\":{\"total\":%.3f,\"upstream\":%.3f,\"ttfb\":", total, up);
    if (o->first_byte_ns > 0)
        tg_buf_appendf(b, "%.3f", o->first_byte_ns / 1e6);
    else
        tg_buf_appends(b, "null");
    tg_buf_appendf(b, ",\"overhead\":%.3f}", total > up ? total - up : 0);

    cstr_field(b, "client", o->client[0] ? o->client : NULL);
    if (o->log_content) {
        text_field(b, "request_body", o->request_body.base ? o->request_body.base : "", o->request_body.len);
        text_field(b, "response_body", o->response.base ? o->response.base : "", o->response.len);
    }
    return tg_buf_appends(b, "}\n");
}

void
dp_access_log_peer(h2o_req_t *req, char out[64])
{
    struct sockaddr_storage ss;
    out[0] = '\0';
    socklen_t sl =
        req->conn->callbacks->get_peername != NULL ? req->conn->callbacks->get_peername(req->conn, (void *)&ss) : 0;
    if (sl > 0) {
        char host[NI_MAXHOST]; /* what getnameinfo may write */
        int32_t port = h2o_socket_getport((void *)&ss);
        if (h2o_socket_getnumerichost((void *)&ss, sl, host) != SIZE_MAX)
            snprintf(out, 64, "%.46s:%d", host, (int)port); /* a numeric host fits */
    }
}

void
dp_access_log_write(const dp_obs_t *o, int64_t end_unix_ns, uint64_t total_ns)
{
    if (log_fd < 0)
        return;
    tg_buf_t b = {0};
    if (dp_access_log_format(o, end_unix_ns, total_ns, &b) != 0 ||
        write(log_fd, b.base, b.len) != (ssize_t)b.len) /* one write: lines never interleave */
        dp_obs_count_log_failure();
    tg_buf_free(&b);
}
