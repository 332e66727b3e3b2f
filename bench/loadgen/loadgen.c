/*
 * tg-loadgen: the one load generator the benchmarks could not take from a package.
 *
 * wrk measures closed-loop throughput well, but its latencies suffer from coordinated omission when
 * a target stalls, it does not report time to first byte of a streamed answer, and it cannot hold
 * thousands of idle or slow connections open and say when they are all established. This tool does
 * exactly those three things over HTTP/1.1 keep-alive on loopback:
 *
 *   open loop (--rate R): request i is due at t0 + i/R whether or not the target kept up; a due
 *     request waits for an idle connection, and its latency is counted from when it was due, not from
 *     when it was sent (free of coordinated omission). Timing comes from a timerfd, not from sleeps.
 *   closed loop (--rate 0): each connection sends its next request as soon as the previous one ends.
 *   hold (--per-conn 1): each connection makes one request and then stays open until the run ends;
 *     "READY" goes to stderr once every connection has received response headers (idle keep-alive
 *     connections after a short request; slow streams while they stream), so a driver can sample the
 *     target's memory at that moment.
 *
 * Per request it records latency (due -> last byte), time to first byte of the response head and of
 * the body (for SSE, the first event). Results are one JSON object on stdout; percentiles are exact
 * (every sample is kept, bounded by --max-requests). Everything is bounded: --duration, a per-request
 * timeout, --max-requests. Only numeric IPv4/IPv6 addresses are accepted (the benchmarks target
 * loopback only).
 *
 * Single-threaded epoll. Build: meson (bench/meson.build) or `cc -O2 -o tg-loadgen loadgen.c -lm`.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADERS   32
#define RBUF_SIZE     65536
#define MAX_CONNS     60000
#define TIMER_TAG     ((uint64_t)-1)
#define MAX_HEAD_SIZE 16384

enum {
    ST_IDLE,
    ST_CONNECTING,
    ST_SENDING,
    ST_HEAD,
    ST_BODY_LEN,
    ST_CHUNK_SIZE,
    ST_CHUNK_DATA,
    ST_CHUNK_CRLF,
    ST_TRAILER
};

typedef struct conn {
    int fd;
    int state;
    int requests; /* completed on this connection */
    int got_head; /* at least one response head seen (for READY) */
    size_t sent;
    int64_t due_ns, head_ns, body_ns;
    uint64_t remaining; /* body bytes (content-length) or chunk bytes left */
    char head[MAX_HEAD_SIZE];
    size_t head_len;
    int status;
    int keepalive;
    size_t line_len; /* chunk-size / trailer line accumulator */
    char line[64];
} conn_t;

static struct {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char *request;
    size_t request_len;
    int conns, per_conn;
    double rate, duration_s, warmup_s, timeout_s, connect_rate;
    long max_requests;
    const char *label;
} opt = {.conns = 1, .duration_s = 10, .timeout_s = 30, .max_requests = 5000000};

static struct {
    int64_t *lat, *ttfb, *head;
    long n, cap;
    long sent, completed, errors, timeouts, non2xx, reconnects, late;
    long status_counts[6];
    int64_t bytes;
} st;

static conn_t *conns;
static int epfd, tfd;
static int64_t t0, t_measure, t_end;
static long next_index; /* open loop: the next request index to dispatch */
static int n_connected, n_opened, ready_said;
static volatile sig_atomic_t stop_flag;

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
die(const char *msg)
{
    fprintf(stderr, "tg-loadgen: %s\n", msg);
    exit(2);
}

/* ---- setup ---- */

static char *
read_file(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        die("cannot open the body file");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b == NULL || fread(b, 1, (size_t)n, f) != (size_t)n)
        die("cannot read the body file");
    fclose(f);
    *ret_len = (size_t)n;
    return b;
}

/* http://HOST:PORT/PATH with a numeric host. Fills opt.addr; returns the path and the Host value. */
static void
parse_url(const char *url, const char **ret_path, char *host, size_t hostcap)
{
    if (strncmp(url, "http://", 7) != 0)
        die("--url must start with http://");
    const char *p = url + 7, *slash = strchr(p, '/');
    if (slash == NULL)
        slash = p + strlen(p);
    size_t hl = (size_t)(slash - p);
    if (hl == 0 || hl >= hostcap)
        die("bad host in --url");
    memcpy(host, p, hl);
    host[hl] = '\0';
    char h[128];
    int port;
    if (host[0] == '[') {
        const char *e = strchr(host, ']');
        if (e == NULL || e[1] != ':' || (size_t)(e - host - 1) >= sizeof(h))
            die("bad IPv6 host in --url");
        memcpy(h, host + 1, (size_t)(e - host - 1));
        h[e - host - 1] = '\0';
        port = atoi(e + 2);
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&opt.addr;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, h, &a->sin6_addr) != 1)
            die("--url needs a numeric address");
        opt.addr_len = sizeof(*a);
    } else {
        const char *c = strchr(host, ':');
        if (c == NULL || (size_t)(c - host) >= sizeof(h))
            die("--url needs host:port");
        memcpy(h, host, (size_t)(c - host));
        h[c - host] = '\0';
        port = atoi(c + 1);
        struct sockaddr_in *a = (struct sockaddr_in *)&opt.addr;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, h, &a->sin_addr) != 1)
            die("--url needs a numeric address");
        opt.addr_len = sizeof(*a);
    }
    if (port <= 0 || port > 65535)
        die("bad port in --url");
    *ret_path = *slash ? slash : "/";
}

static void
build_request(const char *method, const char *path, const char *host, const char **headers, int nh, const char *body,
              size_t body_len)
{
    size_t cap = 1024 + body_len + strlen(path);
    for (int i = 0; i < nh; i++)
        cap += strlen(headers[i]) + 2;
    char *r = malloc(cap);
    if (r == NULL)
        die("out of memory");
    size_t n = (size_t)snprintf(r, cap, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host);
    for (int i = 0; i < nh; i++)
        n += (size_t)snprintf(r + n, cap - n, "%s\r\n", headers[i]);
    if (body != NULL)
        n += (size_t)snprintf(r + n, cap - n, "Content-Length: %zu\r\n", body_len);
    n += (size_t)snprintf(r + n, cap - n, "\r\n");
    if (body != NULL) {
        memcpy(r + n, body, body_len);
        n += body_len;
    }
    opt.request = r;
    opt.request_len = n;
}

/* ---- connections ---- */

static void
ep_set(conn_t *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)(c - conns)};
    epoll_ctl(epfd, op, c->fd, &ev);
}

static void
conn_open(conn_t *c)
{
    c->fd = socket(opt.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        st.errors++;
        c->state = ST_IDLE;
        c->fd = -1;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->state = ST_CONNECTING;
    c->head_len = 0;
    if (connect(c->fd, (struct sockaddr *)&opt.addr, opt.addr_len) != 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        c->state = ST_IDLE;
        st.errors++;
        return;
    }
    ep_set(c, EPOLLOUT, EPOLL_CTL_ADD);
}

static void
conn_close(conn_t *c)
{
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = ST_IDLE;
}

static int
want_more(conn_t *c)
{
    return opt.per_conn == 0 || c->requests < opt.per_conn;
}

/* Starts request `due` on an idle, connected connection. */
static void
start_request(conn_t *c, int64_t due)
{
    c->due_ns = due;
    c->head_ns = c->body_ns = 0;
    c->sent = 0;
    c->head_len = 0;
    c->state = ST_SENDING;
    st.sent++;
    ssize_t w = send(c->fd, opt.request, opt.request_len, MSG_NOSIGNAL);
    if (w > 0)
        c->sent = (size_t)w;
    if (c->sent == opt.request_len) {
        c->state = ST_HEAD;
        ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
    } else {
        ep_set(c, EPOLLOUT, EPOLL_CTL_MOD);
    }
}

static void
record(conn_t *c, int64_t end)
{
    int64_t lat = end - c->due_ns;
    if (c->due_ns >= t_measure && st.n < st.cap) {
        st.lat[st.n] = lat;
        st.head[st.n] = c->head_ns - c->due_ns;
        st.ttfb[st.n] = (c->body_ns ? c->body_ns : end) - c->due_ns;
        st.n++;
    }
    if (c->due_ns >= t_measure) {
        st.completed++;
        int k = c->status / 100;
        st.status_counts[k >= 1 && k <= 5 ? k : 0]++;
        if (k != 2)
            st.non2xx++;
    }
}

static int64_t
due_of(long i)
{
    return t0 + (int64_t)((double)i * 1e9 / opt.rate);
}

/* Gives idle connections their next request: closed loop at once, open loop when one is due. */
static void
dispatch(conn_t *c, int64_t now)
{
    if (stop_flag || now >= t_end || !want_more(c))
        return;
    if (opt.rate <= 0) {
        start_request(c, now);
        return;
    }
    if (next_index < opt.max_requests && due_of(next_index) <= now) {
        if (now - due_of(next_index) > 1000000)
            st.late++; /* waited more than 1 ms for a free connection */
        start_request(c, due_of(next_index++));
    }
}

static void
request_done(conn_t *c, int64_t now)
{
    record(c, now);
    c->requests++;
    if (!c->keepalive) {
        conn_close(c);
        if (!stop_flag && now < t_end && want_more(c)) {
            st.reconnects++;
            conn_open(c);
        }
        return;
    }
    c->state = ST_IDLE;
    ep_set(c, EPOLLIN, EPOLL_CTL_MOD); /* to notice a close while idle */
    dispatch(c, now);
}

static void
fail(conn_t *c, int64_t now)
{
    if (c->state != ST_IDLE && c->state != ST_CONNECTING && c->due_ns >= t_measure)
        st.errors++;
    conn_close(c);
    if (n_connected > 0)
        n_connected--;
    if (!stop_flag && now < t_end && want_more(c)) {
        st.reconnects++;
        conn_open(c);
    }
}

/* Parses the response head in c->head; 0 ok, -1 bad. Sets status, keepalive and the body state. */
static int
parse_head(conn_t *c)
{
    c->head[c->head_len] = '\0';
    if (strncmp(c->head, "HTTP/1.", 7) != 0)
        return -1;
    c->status = atoi(c->head + 9);
    c->keepalive = c->head[7] == '1';
    int chunked = 0;
    long long clen = -1;
    for (char *line = strstr(c->head, "\r\n"); line != NULL && line[2] != '\r';) {
        line += 2;
        char *end = strstr(line, "\r\n");
        if (end == NULL)
            break;
        if (strncasecmp(line, "content-length:", 15) == 0)
            clen = atoll(line + 15);
        else if (strncasecmp(line, "transfer-encoding:", 18) == 0 && strstr(line, "chunked") < end &&
                 strstr(line, "chunked") != NULL)
            chunked = 1;
        else if (strncasecmp(line, "connection:", 11) == 0) {
            char *v = line + 11;
            while (*v == ' ')
                v++;
            if (strncasecmp(v, "close", 5) == 0)
                c->keepalive = 0;
        }
        line = end;
    }
    if (chunked) {
        c->state = ST_CHUNK_SIZE;
        c->line_len = 0;
    } else if (clen >= 0) {
        c->state = ST_BODY_LEN;
        c->remaining = (uint64_t)clen;
    } else {
        return -1; /* read-until-close bodies are not used by anything we measure */
    }
    return 0;
}

/* Consumes body bytes; returns 1 when the response is complete, 0 for more, -1 on a framing error. */
static int
consume_body(conn_t *c, const char *p, size_t n, int64_t now)
{
    while (n > 0 || c->state == ST_BODY_LEN) {
        switch (c->state) {
        case ST_BODY_LEN: {
            if (c->remaining == 0)
                return 1;
            if (n == 0)
                return 0;
            size_t k = n < c->remaining ? n : (size_t)c->remaining;
            if (!c->body_ns)
                c->body_ns = now;
            c->remaining -= k;
            p += k;
            n -= k;
            break;
        }
        case ST_CHUNK_SIZE:
        case ST_TRAILER: {
            char ch = *p++;
            n--;
            if (ch == '\n') {
                c->line[c->line_len] = '\0';
                if (c->state == ST_TRAILER) {
                    if (c->line_len == 0 || (c->line_len == 1 && c->line[0] == '\r'))
                        return 1;
                    c->line_len = 0;
                    break;
                }
                unsigned long long sz = strtoull(c->line, NULL, 16);
                c->line_len = 0;
                if (sz == 0) {
                    c->state = ST_TRAILER;
                } else {
                    c->remaining = sz;
                    c->state = ST_CHUNK_DATA;
                }
            } else if (c->line_len < sizeof(c->line) - 1) {
                c->line[c->line_len++] = ch;
            }
            break;
        }
        case ST_CHUNK_DATA: {
            size_t k = n < c->remaining ? n : (size_t)c->remaining;
            if (!c->body_ns)
                c->body_ns = now;
            c->remaining -= k;
            p += k;
            n -= k;
            if (c->remaining == 0) {
                c->state = ST_CHUNK_CRLF;
                c->line_len = 0;
            }
            break;
        }
        case ST_CHUNK_CRLF:
            if (*p++ == '\n')
                c->state = ST_CHUNK_SIZE;
            n--;
            break;
        default:
            return -1;
        }
    }
    return 0;
}

static void
say_ready_if_all(void)
{
    if (ready_said || n_opened < opt.conns)
        return;
    for (int i = 0; i < opt.conns; i++)
        if (!conns[i].got_head)
            return;
    ready_said = 1;
    fprintf(stderr, "READY %.3f\n", (now_ns() - t0) / 1e9);
}

static void
on_readable(conn_t *c, int64_t now)
{
    static char buf[RBUF_SIZE];
    for (;;) {
        ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            fail(c, now);
            return;
        }
        if (r < 0)
            return;
        st.bytes += r;
        const char *p = buf;
        size_t n = (size_t)r;
        while (n > 0) {
            if (c->state == ST_IDLE) {
                fail(c, now); /* bytes nobody asked for */
                return;
            }
            if (c->state == ST_HEAD) {
                size_t take = n;
                if (c->head_len + take >= MAX_HEAD_SIZE - 1)
                    take = MAX_HEAD_SIZE - 1 - c->head_len;
                memcpy(c->head + c->head_len, p, take);
                size_t old = c->head_len;
                c->head_len += take;
                c->head[c->head_len] = '\0';
                char *end = strstr(c->head + (old >= 3 ? old - 3 : 0), "\r\n\r\n");
                if (end == NULL) {
                    if (c->head_len >= MAX_HEAD_SIZE - 1) {
                        fail(c, now);
                        return;
                    }
                    p += take;
                    n -= take;
                    continue;
                }
                size_t used = (size_t)(end + 4 - c->head) - old;
                c->head_len = (size_t)(end + 4 - c->head);
                c->head_ns = now;
                if (!c->got_head) {
                    c->got_head = 1;
                    say_ready_if_all();
                }
                if (parse_head(c) != 0) {
                    fail(c, now);
                    return;
                }
                p += used;
                n -= used;
            }
            int rv = consume_body(c, p, n, now);
            if (rv < 0) {
                fail(c, now);
                return;
            }
            if (rv == 1) {
                /* pipelining is not used, so nothing may follow the body */
                request_done(c, now);
                if (c->fd < 0)
                    return;
                n = 0;
            } else {
                n = 0;
            }
        }
    }
}

static void
on_event(conn_t *c, uint32_t events, int64_t now)
{
    if (c->fd < 0)
        return;
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
            st.errors++;
            conn_close(c);
            return;
        }
        n_connected++;
        c->state = ST_IDLE;
        ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
        dispatch(c, now);
        return;
    }
    if (c->state == ST_SENDING && (events & EPOLLOUT)) {
        ssize_t w = send(c->fd, opt.request + c->sent, opt.request_len - c->sent, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN) {
            fail(c, now);
            return;
        }
        if (w > 0)
            c->sent += (size_t)w;
        if (c->sent == opt.request_len) {
            c->state = ST_HEAD;
            ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
        }
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(c, now);
}

/* ---- results ---- */

static int
cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double
pct(int64_t *v, long n, double p)
{
    if (n == 0)
        return 0;
    long i = (long)ceil(p / 100.0 * (double)n) - 1;
    if (i < 0)
        i = 0;
    if (i >= n)
        i = n - 1;
    return v[i] / 1000.0;
}

static void
print_dist(const char *name, int64_t *v, long n, int last)
{
    qsort(v, (size_t)n, sizeof(*v), cmp64);
    double sum = 0;
    for (long i = 0; i < n; i++)
        sum += (double)v[i];
    printf("  \"%s\": {\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f, \"mean\": %.1f}%s\n",
           name, pct(v, n, 50), pct(v, n, 90), pct(v, n, 99), pct(v, n, 99.9), n ? v[n - 1] / 1000.0 : 0,
           n ? sum / (double)n / 1000.0 : 0, last ? "" : ",");
}

static void
on_signal(int sig)
{
    stop_flag = 1;
}

static void
usage(void)
{
    fprintf(stderr, "usage: tg-loadgen --url http://IP:PORT/PATH [--method M] [--body FILE] [-H 'Name: value']...\n"
                    "                  [--conns N] [--rate R (0 = closed loop)] [--duration S] [--warmup S]\n"
                    "                  [--per-conn K (0 = unlimited)] [--connect-rate N/s] [--timeout S]\n"
                    "                  [--max-requests N] [--label TEXT]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    const char *url = NULL, *method = NULL, *body_file = NULL, *headers[MAX_HEADERS];
    int nh = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--url") == 0)
            url = v;
        else if (strcmp(a, "--method") == 0)
            method = v;
        else if (strcmp(a, "--body") == 0)
            body_file = v;
        else if (strcmp(a, "-H") == 0 && nh < MAX_HEADERS)
            headers[nh++] = v;
        else if (strcmp(a, "--conns") == 0)
            opt.conns = atoi(v);
        else if (strcmp(a, "--rate") == 0)
            opt.rate = atof(v);
        else if (strcmp(a, "--duration") == 0)
            opt.duration_s = atof(v);
        else if (strcmp(a, "--warmup") == 0)
            opt.warmup_s = atof(v);
        else if (strcmp(a, "--per-conn") == 0)
            opt.per_conn = atoi(v);
        else if (strcmp(a, "--connect-rate") == 0)
            opt.connect_rate = atof(v);
        else if (strcmp(a, "--timeout") == 0)
            opt.timeout_s = atof(v);
        else if (strcmp(a, "--max-requests") == 0)
            opt.max_requests = atol(v);
        else if (strcmp(a, "--label") == 0)
            opt.label = v;
        else
            usage();
    }
    if (url == NULL || opt.conns < 1 || opt.conns > MAX_CONNS || opt.duration_s <= 0 || opt.duration_s > 7200 ||
        opt.max_requests < 1 || opt.rate < 0)
        usage();
    const char *path;
    char host[256];
    parse_url(url, &path, host, sizeof(host));
    size_t body_len = 0;
    char *body = body_file ? read_file(body_file, &body_len) : NULL;
    build_request(method ? method : (body ? "POST" : "GET"), path, host, headers, nh, body, body_len);
    free(body);

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    st.cap = opt.max_requests < 20000000 ? opt.max_requests : 20000000;
    st.lat = malloc(sizeof(int64_t) * (size_t)st.cap);
    st.ttfb = malloc(sizeof(int64_t) * (size_t)st.cap);
    st.head = malloc(sizeof(int64_t) * (size_t)st.cap);
    conns = calloc((size_t)opt.conns, sizeof(*conns));
    if (st.lat == NULL || st.ttfb == NULL || st.head == NULL || conns == NULL)
        die("out of memory");
    epfd = epoll_create1(EPOLL_CLOEXEC);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event tev = {.events = EPOLLIN, .data.u64 = TIMER_TAG};
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &tev);

    t0 = now_ns();
    t_measure = t0 + (int64_t)(opt.warmup_s * 1e9);
    t_end = t0 + (int64_t)(opt.duration_s * 1e9);
    int64_t t_hard = t_end + (int64_t)(opt.timeout_s * 1e9); /* in-flight requests may finish until then */
    for (int i = 0; i < opt.conns; i++)
        conns[i].fd = -1;

    struct epoll_event evs[512];
    int64_t last_timeout_check = t0;
    while (!stop_flag) {
        int64_t now = now_ns();
        if (now >= t_hard)
            break;
        /* open connections, all at once or at --connect-rate */
        long allowed = opt.connect_rate > 0 ? (long)((now - t0) / 1e9 * opt.connect_rate) + 1 : opt.conns;
        while (n_opened < opt.conns && n_opened < allowed && now < t_end) {
            conn_open(&conns[n_opened]);
            n_opened++;
        }
        /* open loop: hand due requests to idle connections */
        if (opt.rate > 0 && now < t_end)
            for (int i = 0; i < opt.conns && next_index < opt.max_requests && due_of(next_index) <= now; i++)
                if (conns[i].fd >= 0 && conns[i].state == ST_IDLE)
                    dispatch(&conns[i], now);
        if (now >= t_end) {
            int busy = 0;
            for (int i = 0; i < opt.conns && !busy; i++)
                busy = conns[i].fd >= 0 && conns[i].state != ST_IDLE && conns[i].state != ST_CONNECTING;
            if (!busy)
                break;
        }
        /* per-request timeout, checked every 100 ms */
        if (now - last_timeout_check > 100000000) {
            last_timeout_check = now;
            for (int i = 0; i < opt.conns; i++) {
                conn_t *c = &conns[i];
                if (c->fd >= 0 && c->state >= ST_SENDING && now - c->due_ns > (int64_t)(opt.timeout_s * 1e9)) {
                    st.timeouts++;
                    fail(c, now);
                }
            }
        }
        /* sleep until the next due request, the next connect slot, or 10 ms */
        int64_t wake = now + 10000000;
        if (opt.rate > 0 && next_index < opt.max_requests && due_of(next_index) < wake)
            wake = due_of(next_index);
        if (opt.connect_rate > 0 && n_opened < opt.conns) {
            int64_t slot = now + (int64_t)(1e9 / opt.connect_rate);
            if (slot < wake)
                wake = slot;
        }
        if (wake <= now)
            wake = now + 1000;
        struct itimerspec its = {.it_value = {.tv_sec = wake / 1000000000, .tv_nsec = wake % 1000000000}};
        timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        int n = epoll_wait(epfd, evs, 512, 20);
        now = now_ns();
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == TIMER_TAG) {
                uint64_t x;
                ssize_t r = read(tfd, &x, sizeof(x));
                (void)r;
                continue;
            }
            on_event(&conns[evs[i].data.u64], evs[i].events, now);
        }
    }
    int64_t t_stop = now_ns();
    long open_at_end = 0;
    for (int i = 0; i < opt.conns; i++)
        if (conns[i].fd >= 0)
            open_at_end++;

    double measured_s = (double)(t_end - t_measure) / 1e9;
    printf("{\n  \"label\": \"%s\",\n  \"mode\": \"%s\",\n  \"conns\": %d,\n  \"target_rate\": %.1f,\n",
           opt.label ? opt.label : "", opt.rate > 0 ? "open" : "closed", opt.conns, opt.rate);
    printf("  \"duration_s\": %.3f,\n  \"measured_s\": %.3f,\n  \"elapsed_s\": %.3f,\n", opt.duration_s, measured_s,
           (t_stop - t0) / 1e9);
    printf("  \"sent\": %ld,\n  \"completed\": %ld,\n  \"rps\": %.1f,\n  \"errors\": %ld,\n  \"timeouts\": %ld,\n",
           st.sent, st.completed, measured_s > 0 ? st.completed / measured_s : 0, st.errors, st.timeouts);
    printf("  \"non2xx\": %ld,\n  \"status\": {\"2xx\": %ld, \"3xx\": %ld, \"4xx\": %ld, \"5xx\": %ld},\n", st.non2xx,
           st.status_counts[2], st.status_counts[3], st.status_counts[4], st.status_counts[5]);
    printf("  \"reconnects\": %ld,\n  \"late\": %ld,\n  \"connected_at_end\": %ld,\n  \"ready\": %s,\n", st.reconnects,
           st.late, open_at_end, ready_said ? "true" : "false");
    printf("  \"bytes\": %lld,\n  \"samples\": %ld,\n", (long long)st.bytes, st.n);
    print_dist("latency_us", st.lat, st.n, 0);
    print_dist("ttfb_us", st.ttfb, st.n, 0);
    print_dist("head_us", st.head, st.n, 1);
    printf("}\n");
    return 0;
}
