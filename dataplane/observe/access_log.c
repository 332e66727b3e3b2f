/*
 * The JSON access log: one line per request, written when the request ends (observe.c, on_dispose).
 *
 * Never prompt text or secrets: the line has ids, names, numbers and the path without its query string
 * (Gemini clients may put the key there). Only when the key's tenant has log_content on does the line
 * carry the request body and the response bytes sent, each capped at DP_OBS_CAPTURE_MAX.
 *
 * Writing: lines wait in a buffer per worker and go out with one write(2) per PIPE_BUF bytes at most
 * to a pipe or socket, per BATCH_FILE bytes to a regular file (O_APPEND for files we open; Linux
 * writes a regular file under its inode lock, so a write is never split by another one), so lines
 * from several workers never interleave and a busy worker makes one system call per several
 * requests (per ~100 to a file) instead of one per request. The buffer is written when full,
 * TOLLGATE_ACCESS_LOG_FLUSH_MS after a line starts waiting (the worker's timer, armed only then, so an
 * idle worker never wakes for the log) and when the worker stops (SIGTERM loses no line). A failed or
 * short write is counted (tollgate_access_log_write_failures_total), never retried.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "observe/internal.h"

static int log_fd = -1;
static int log_owned; /* a file we opened */
static int flush_ms = 100;
static size_t batch = PIPE_BUF; /* what one write(2) may carry: see the top of the file */

#define BATCH_FILE 65536

int
dp_access_log_open(const char *where, int flush)
{
    flush_ms = flush;
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
    struct stat st;
    batch = log_fd >= 0 && fstat(log_fd, &st) == 0 && S_ISREG(st.st_mode) ? BATCH_FILE : PIPE_BUF;
    return 0;
}

int
dp_access_log_flush_ms(void)
{
    return log_fd >= 0 ? flush_ms : 0;
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

/* ,"name": for a literal name, without printf (the line is built for every request) */
#define KEY(b, name) tg_buf_append((b), ",\"" name "\":", sizeof(",\"" name "\":") - 1)

static void
append_i64(tg_buf_t *b, int64_t v)
{
    if (v < 0) {
        tg_buf_append(b, "-", 1);
        tg_buf_append_u64(b, -(uint64_t)v);
    } else {
        tg_buf_append_u64(b, (uint64_t)v);
    }
}

/* nanoseconds as milliseconds with 3 decimals (what "%.3f" of ns / 1e6 prints, rounded to the µs) */
static void
append_ms(tg_buf_t *b, uint64_t ns)
{
    uint64_t us = (ns + 500) / 1000;
    char frac[4] = {'.', (char)('0' + us % 1000 / 100), (char)('0' + us % 100 / 10), (char)('0' + us % 10)};
    tg_buf_append_u64(b, us / 1000);
    tg_buf_append(b, frac, 4);
}

static void
str_value(tg_buf_t *b, const char *v, size_t len)
{
    if (v == NULL)
        tg_buf_append(b, "null", 4);
    else
        tg_buf_append_json_string(b, v, len);
}

/* Bytes as a JSON string: valid UTF-8 is kept, anything else becomes U+FFFD, so a binary or cut body
 * never breaks the line. */
static void
text_value(tg_buf_t *b, const char *p, size_t len)
{
    size_t i = 0;
    while (i < len && (unsigned char)p[i] < 0x80)
        i++;
    if (i == len) { /* ASCII, the usual path or model: no copy */
        tg_buf_append_json_string(b, p, len);
        return;
    }
    tg_buf_t clean = {0};
    tg_buf_append(&clean, p, i);
    while (i < len) {
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
    tg_buf_append_json_string(b, clean.base ? clean.base : "", clean.len);
    tg_buf_free(&clean);
}

static void
cstr_value(tg_buf_t *b, const char *v)
{
    str_value(b, v, v != NULL ? strlen(v) : 0);
}

/* "YYYY-MM-DDTHH:MM:SS" of a second, remembered per thread: most lines fall in the same second. */
static const char *
second_text(time_t sec)
{
    static __thread time_t last = -1;
    static __thread char text[40];
    if (sec != last) {
        struct tm tm;
        gmtime_r(&sec, &tm);
        strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
        last = sec;
    }
    return text;
}

int
dp_access_log_format(const dp_obs_t *o, int64_t end_unix_ns, uint64_t total_ns, tg_buf_t *b)
{
    h2o_req_t *req = o->req;
    int ms = (int)(end_unix_ns / 1000000 % 1000);
    char msz[6] = {'.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z', '"'};
    if (tg_buf_reserve(b, 1024) != 0)
        return -1;
    tg_buf_appends(b, "{\"ts\":\"");
    tg_buf_appends(b, second_text((time_t)(end_unix_ns / 1000000000)));
    tg_buf_append(b, msz, sizeof(msz));
    KEY(b, "request_id");
    cstr_value(b, o->request_id);
    char trace[32];
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        trace[2 * i] = digits[o->trace_id[i] >> 4];
        trace[2 * i + 1] = digits[o->trace_id[i] & 15];
    }
    KEY(b, "trace_id");
    str_value(b, trace, sizeof(trace));
    KEY(b, "method");
    str_value(b, req->method.base, req->method.len > 16 ? 16 : req->method.len);
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    KEY(b, "path");
    text_value(b, req->path.base, plen > 256 ? 256 : plen);
    KEY(b, "endpoint");
    cstr_value(b, o->endpoint);
    KEY(b, "tenant");
    cstr_value(b, o->tenant_id);
    KEY(b, "key_id");
    cstr_value(b, o->key_id);
    KEY(b, "model");
    if (o->model != NULL)
        text_value(b, o->model, o->model_len > 256 ? 256 : o->model_len);
    else
        str_value(b, NULL, 0);
    KEY(b, "provider");
    cstr_value(b, o->provider);
    KEY(b, "upstream_model");
    cstr_value(b, o->upstream_model);
    KEY(b, "targets_tried");
    str_value(b, o->tried != NULL ? o->tried : "", o->tried_len);
    KEY(b, "attempts");
    append_i64(b, o->attempts);
    KEY(b, "retries");
    append_i64(b, o->retries);
    KEY(b, "fallbacks");
    append_i64(b, o->fallbacks);
    KEY(b, "status");
    append_i64(b, o->status);
    KEY(b, "error_code");
    cstr_value(b, o->error_code[0] ? o->error_code : NULL);
    KEY(b, "stream");
    tg_buf_appends(b, o->stream ? "true" : "false");
    KEY(b, "input_tokens");
    append_i64(b, o->input_tokens);
    KEY(b, "output_tokens");
    append_i64(b, o->output_tokens);
    KEY(b, "cached_tokens");
    append_i64(b, o->cached_tokens);
    KEY(b, "cost_nanousd");
    append_i64(b, o->cost_nanousd);
    tg_buf_appends(b, ",\"latency_ms\":{\"total\":");
    append_ms(b, total_ns);
    tg_buf_appends(b, ",\"upstream\":");
    append_ms(b, o->upstream_ns);
    tg_buf_appends(b, ",\"ttfb\":");
    if (o->first_byte_ns > 0)
        append_ms(b, o->first_byte_ns);
    else
        tg_buf_append(b, "null", 4);
    tg_buf_appends(b, ",\"overhead\":");
    append_ms(b, total_ns > o->upstream_ns ? total_ns - o->upstream_ns : 0);
    tg_buf_append(b, "}", 1);

    KEY(b, "client");
    cstr_value(b, o->client[0] ? o->client : NULL);
    if (o->log_content) {
        KEY(b, "request_body");
        text_value(b, o->request_body.base ? o->request_body.base : "", o->request_body.len);
        KEY(b, "response_body");
        text_value(b, o->response.base ? o->response.base : "", o->response.len);
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
    if (sl == 0)
        return;
    /* by hand, not h2o_socket_getnumerichost + snprintf: this runs for every request, and those go
     * through sprintf (or getnameinfo for IPv6) each time */
    char *p = out;
    unsigned port;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)&ss;
        const uint8_t *b = (const uint8_t *)&a->sin_addr;
        for (int i = 0; i < 4; i++) {
            if (i > 0)
                *p++ = '.';
            p += tg_fmt_u64(p, b[i]);
        }
        port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)&ss;
        if (inet_ntop(AF_INET6, &a->sin6_addr, p, INET6_ADDRSTRLEN) == NULL) {
            out[0] = '\0';
            return;
        }
        p += strlen(p);
        port = ntohs(a->sin6_port);
    } else {
        return;
    }
    *p++ = ':';
    p[tg_fmt_u64(p, port)] = '\0'; /* at most 45 + 1 + 5 + 1 bytes: fits in 64 */
}

/* Lines wait in a buffer per worker thread and go out together: when the next line would take the
 * buffer past the batch (PIPE_BUF, or BATCH_FILE for a regular file), on the worker's flush timer
 * (TOLLGATE_ACCESS_LOG_FLUSH_MS; 0: every line at once) and when the worker stops. PIPE_BUF bytes is what a write to a
 * pipe (stderr under a log collector) keeps whole, so lines of different workers never interleave; a longer line
 * (log_content) goes out alone, at once. */
static __thread tg_buf_t lines;
static __thread uv_timer_t *flush_timer; /* the calling worker's; NULL: flushed only by the worker itself */

static void
on_flush_timer(uv_timer_t *t)
{
    (void)t;
    dp_access_log_flush(0);
}

void
dp_access_log_set_timer(uv_timer_t *t)
{
    flush_timer = t;
}

static void
write_out(const char *p, size_t len)
{
    if (write(log_fd, p, len) != (ssize_t)len)
        dp_obs_count_log_failure();
}

void
dp_access_log_write(const dp_obs_t *o, int64_t end_unix_ns, uint64_t total_ns)
{
    if (log_fd < 0)
        return;
    size_t mark = lines.len;
    if (dp_access_log_format(o, end_unix_ns, total_ns, &lines) != 0) {
        lines.len = mark;
        dp_obs_count_log_failure();
        return;
    }
    if (lines.len <= batch && flush_ms > 0) {
        if (flush_timer != NULL && !uv_is_active((uv_handle_t *)flush_timer))
            uv_timer_start(flush_timer, on_flush_timer, (uint64_t)flush_ms, 0);
        return;
    }
    if (mark > 0) {
        /* the earlier lines first, then the new one moves to the front */
        write_out(lines.base, mark);
        memmove(lines.base, lines.base + mark, lines.len - mark);
        lines.len -= mark;
    }
    if (lines.len > batch || flush_ms == 0) {
        write_out(lines.base, lines.len);
        lines.len = 0;
    }
}

void
dp_access_log_flush(int release)
{
    if (lines.len > 0 && log_fd >= 0)
        write_out(lines.base, lines.len);
    lines.len = 0;
    if (release)
        tg_buf_free(&lines);
}
