/*
 * The lean HTTP/1.1 upstream client (the contract is upstream.h's): one request per connection at a
 * time, on h2o sockets on the worker's own loop, with a keep-alive pool per (scheme, host, port).
 *
 * Design. A call borrows a connection: the most recently used idle one of its pool (LIFO keeps few
 * connections warm and lets the others reach their idle timeout), or a new one. The request goes out
 * as one write of two iovecs, the head built once per call (h1.c) and the caller's body. The response
 * is read from the socket's input buffer, which h2o takes from its per-thread recycled buffers and
 * gives back whenever it is drained, so a quiet stream holds no buffer at all. Body bytes are framed in
 * place at the front of that buffer and handed to on_body; DP_UPSTREAM_PAUSE leaves them there and stops
 * reading until resume. The connection goes back to the pool only after a complete response that
 * allows keep-alive; anything else (cancel, error, Connection: close, HTTP/1.0) closes it.
 *
 * https: one SSL_CTX per pool (peer verification, host name or IP checked by OpenSSL, ALPN http/1.1)
 * and h2o_socket_ssl_handshake on the connected socket; the handshake counts as part of connecting.
 *
 * Each connection owns one uv timer: while it serves a call it carries the call's connect, first-byte,
 * idle and total deadlines; while it is idle, the pool's idle timeout. Name resolution is uv_getaddrinfo,
 * cached per pool for DNS_TTL_MS; numeric hosts need no lookup.
 *
 * Lifetimes: a connection's memory is freed in its timer's close callback. The TCP handle, while
 * connecting, lives in a small holder freed by its own close callback; once connected, h2o owns it
 * (h2o_uv_socket_create) and frees it through the same callback. A pending lookup holds a pointer to
 * its connection that the connection clears when it closes first.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <h2o.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "upstream/internal.h"

#define IDLE_PER_POOL_MAX 128
#define IDLE_TIMEOUT_MS   30000
#define DNS_TTL_MS        60000
#define MAX_HEAD_BYTES    65536
#define MAX_ADDRS         4

enum { PHASE_CONNECT, PHASE_WAIT, PHASE_BODY };

typedef struct dp_lean_pool dp_lean_pool_t;
typedef struct dp_lean_conn dp_lean_conn_t;

struct dp_lean {
    dp_upstream_t *up;
    uv_loop_t *loop;
    dp_lean_pool_t *pools;
    dp_lean_conn_t *conns; /* every open connection, to close them all on free */
};

struct dp_lean_pool {
    dp_lean_pool_t *next;
    dp_lean_t *lean;
    char *host; /* NUL-terminated copy, brackets removed */
    uint16_t port;
    int tls;
    dp_lean_conn_t *idle; /* most recently used first */
    dp_lean_conn_t *idle_tail;
    size_t n_idle;
    struct sockaddr_storage addrs[MAX_ADDRS]; /* the one that last worked first */
    size_t n_addrs;
    SSL_CTX *ssl_ctx;         /* https: verification on, for this host */
    uint64_t addr_expires_ms; /* 0: no address yet; UINT64_MAX: a numeric host */
};

struct tcp_holder {
    uv_tcp_t tcp; /* first: the close callback frees the holder */
    uv_connect_t creq;
    dp_lean_conn_t *conn; /* NULL once the connection gave up on this attempt */
};

struct resolve {
    uv_getaddrinfo_t req;
    dp_lean_conn_t *conn; /* NULL once the connection closed first */
};

struct dp_lean_conn {
    uv_timer_t timer; /* first: its close callback frees the connection */
    dp_lean_pool_t *pool;
    dp_lean_conn_t *next, *prev;           /* the lean client's list of all connections */
    dp_lean_conn_t *idle_next, *idle_prev; /* the pool's idle list */
    struct tcp_holder *tcp;                /* while connecting */
    struct resolve *resolve;               /* while resolving */
    h2o_socket_t *sock;                    /* once connected */
    uv_stream_t *stream;                   /* its libuv handle, for uv_try_write */
    dp_upstream_call_t *call;
    unsigned addr : 2; /* which of the pool's addresses is being tried */
    unsigned idle : 1;
    unsigned reused : 1;   /* has served a response before: may be stale */
    unsigned writing : 1;  /* a write is in flight */
    unsigned no_reuse : 1; /* the response leaves the connection unusable */
};

/* Real monotonic time, not the loop's cached uv_now(): deadlines must agree with the exchange's, which
 * reads the clock (a timer may fire a little early by the real clock; it is then re-armed). */
static uint64_t
now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void on_read(h2o_socket_t *sock, const char *err);
static void on_conn_timer(uv_timer_t *t);
static void process(dp_upstream_call_t *call);
static int attach_new_conn(dp_upstream_call_t *call);
static void connect_to(dp_lean_conn_t *c);

/* ---------------------------------------------------------------- connections */

static void
on_conn_timer_closed(uv_handle_t *h)
{
    free(h); /* the connection starts with its timer */
}

static void
on_holder_closed(uv_handle_t *h)
{
    free(h); /* struct tcp_holder starts with its handle */
}

static void
idle_unlink(dp_lean_conn_t *c)
{
    dp_lean_pool_t *p = c->pool;
    if (c->idle_prev != NULL)
        c->idle_prev->idle_next = c->idle_next;
    else
        p->idle = c->idle_next;
    if (c->idle_next != NULL)
        c->idle_next->idle_prev = c->idle_prev;
    else
        p->idle_tail = c->idle_prev;
    c->idle_next = c->idle_prev = NULL;
    c->idle = 0;
    p->n_idle--;
}

/* Closes the connection in whatever state it is; the memory goes in the timer's close callback. */
static void
conn_close(dp_lean_conn_t *c)
{
    dp_lean_t *l = c->pool->lean;
    if (c->idle)
        idle_unlink(c);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->resolve != NULL) {
        c->resolve->conn = NULL;
        uv_cancel((uv_req_t *)&c->resolve->req);
    }
    if (c->tcp != NULL) {
        c->tcp->conn = NULL;
        uv_close((uv_handle_t *)&c->tcp->tcp, on_holder_closed);
    }
    if (c->sock != NULL) {
        c->sock->data = NULL; /* a write callback from the close must not find us */
        h2o_socket_close(c->sock);
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_conn_timer_closed);
}

static dp_lean_conn_t *
conn_new(dp_lean_pool_t *p)
{
    dp_lean_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    dp_lean_t *l = p->lean;
    uv_timer_init(l->loop, &c->timer);
    c->timer.data = c;
    c->pool = p;
    c->next = l->conns;
    if (l->conns != NULL)
        l->conns->prev = c;
    l->conns = c;
    return c;
}

/* An idle connection saw bytes or the end of the stream: the server closed it (or broke HTTP). */
static void
on_idle_read(h2o_socket_t *sock, const char *err)
{
    dp_lean_conn_t *c = sock->data;
    /* a read of nothing (a TLS 1.3 session ticket, a spurious wakeup) is no reason to drop it */
    if (c != NULL && (err != NULL || sock->input->size > 0))
        conn_close(c);
}

static void
pool_put(dp_lean_conn_t *c)
{
    dp_lean_pool_t *p = c->pool;
    c->call = NULL;
    c->reused = 1;
    c->idle = 1;
    c->idle_prev = NULL;
    c->idle_next = p->idle;
    if (p->idle != NULL)
        p->idle->idle_prev = c;
    else
        p->idle_tail = c;
    p->idle = c;
    p->n_idle++;
    h2o_socket_read_start(c->sock, on_idle_read); /* notices the server closing it */
    uv_timer_start(&c->timer, on_conn_timer, IDLE_TIMEOUT_MS, 0);
    if (p->n_idle > IDLE_PER_POOL_MAX)
        conn_close(p->idle_tail);
}

static dp_lean_conn_t *
pool_get(dp_lean_pool_t *p)
{
    dp_lean_conn_t *c = p->idle;
    if (c == NULL)
        return NULL;
    idle_unlink(c);
    uv_timer_stop(&c->timer);
    return c;
}

/* ---------------------------------------------------------------- the call's end */

static void
detach(dp_upstream_call_t *call)
{
    struct dp_lean_call *lc = &call->lean_call;
    call->active = 0;
    call->paused = 0;
    free(lc->head);
    lc->head = NULL;
    lc->conn = NULL;
}

/* Ends the call: the connection goes back to the pool when it can carry another request. */
static void
finish(dp_upstream_call_t *call, CURLcode rc)
{
    struct dp_lean_call *lc = &call->lean_call;
    dp_lean_conn_t *c = lc->conn;
    if (c != NULL) {
        if (rc == CURLE_OK && lc->resp.keep_alive && !c->no_reuse && !c->writing && c->sock != NULL &&
            c->sock->input->size == 0)
            pool_put(c);
        else
            conn_close(c);
    }
    detach(call);
    call->cb->on_done(call, rc); /* last: it may start the next call in the same memory */
}

static void fail(dp_upstream_call_t *call, CURLcode rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
fail(dp_upstream_call_t *call, CURLcode rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->error, sizeof(call->error), fmt, ap);
    va_end(ap);
    if (call->lean_call.conn != NULL)
        call->lean_call.conn->no_reuse = 1;
    finish(call, rc);
}

/* ---------------------------------------------------------------- timeouts */

static uint64_t
earliest(uint64_t a, uint64_t b)
{
    return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

/* The deadline the call waits for now: connecting, its first byte or its next one, and the total. A
 * paused call waits for its client, not for the provider: only the total counts. now: the clock as the
 * caller just read it, or 0 to read it here (one read per event is enough). */
static void
arm(dp_upstream_call_t *call, uint64_t now)
{
    struct dp_lean_call *lc = &call->lean_call;
    uint64_t d = lc->total_deadline_ms;
    if (lc->phase == PHASE_CONNECT)
        d = earliest(d, lc->connect_deadline_ms);
    if (!call->paused) {
        if (!call->first_byte && call->timeouts.first_byte_ms > 0)
            d = earliest(d, lc->start_ms + (uint64_t)call->timeouts.first_byte_ms);
        else if (call->first_byte && call->timeouts.idle_ms > 0)
            d = earliest(d, lc->last_data_ms + (uint64_t)call->timeouts.idle_ms);
    }
    uv_timer_t *t = &lc->conn->timer;
    if (d == 0) {
        uv_timer_stop(t);
        return;
    }
    if (now == 0)
        now = now_ms();
    uv_timer_start(t, on_conn_timer, d > now ? d - now : 0, 0);
}

static void
on_conn_timer(uv_timer_t *t)
{
    dp_lean_conn_t *c = t->data;
    dp_upstream_call_t *call = c->call;
    if (call == NULL) {
        conn_close(c); /* idle too long */
        return;
    }
    struct dp_lean_call *lc = &call->lean_call;
    uint64_t now = now_ms();
    if (lc->pending_rc != CURLE_OK) {
        finish(call, lc->pending_rc); /* call->error was written when it happened */
    } else if (lc->phase == PHASE_CONNECT && lc->connect_deadline_ms != 0 && now >= lc->connect_deadline_ms) {
        fail(call, CURLE_OPERATION_TIMEDOUT, "Connection timed out after %llu milliseconds",
             (unsigned long long)(now - lc->start_ms));
    } else if (!call->paused && !call->first_byte && call->timeouts.first_byte_ms > 0 &&
               now >= lc->start_ms + (uint64_t)call->timeouts.first_byte_ms) {
        fail(call, CURLE_OPERATION_TIMEDOUT, "no response from the provider within %ld ms (first-byte timeout)",
             call->timeouts.first_byte_ms);
    } else if (!call->paused && call->first_byte && call->timeouts.idle_ms > 0 &&
               now >= lc->last_data_ms + (uint64_t)call->timeouts.idle_ms) {
        fail(call, CURLE_OPERATION_TIMEDOUT, "no data from the provider for %ld ms (idle timeout)",
             call->timeouts.idle_ms);
    } else if (lc->total_deadline_ms != 0 && now >= lc->total_deadline_ms) {
        fail(call, CURLE_OPERATION_TIMEDOUT, "Operation timed out after %llu milliseconds",
             (unsigned long long)(now - lc->start_ms));
    } else {
        arm(call, now);
    }
}

/* Reports a failure found while starting, from the loop: a completion never comes from start itself. */
static void fail_soon(dp_upstream_call_t *call, CURLcode rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
fail_soon(dp_upstream_call_t *call, CURLcode rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->error, sizeof(call->error), fmt, ap);
    va_end(ap);
    call->lean_call.pending_rc = rc;
    uv_timer_start(&call->lean_call.conn->timer, on_conn_timer, 0, 0);
}

/* ---------------------------------------------------------------- request and response */

static void
on_write_done(h2o_socket_t *sock, const char *err)
{
    dp_lean_conn_t *c = sock->data;
    if (c == NULL)
        return;
    c->writing = 0;
    if (err != NULL && c->call != NULL)
        c->no_reuse = 1; /* the read side sees the end of the stream and reports it */
}

static void
send_request(dp_upstream_call_t *call, uint64_t now)
{
    struct dp_lean_call *lc = &call->lean_call;
    dp_lean_conn_t *c = lc->conn;
    h2o_iovec_t bufs[2] = {h2o_iovec_init(lc->head, lc->head_len), h2o_iovec_init(lc->body, lc->body_len)};
    size_t n = lc->body_len > 0 ? 2 : 1;
    lc->phase = PHASE_WAIT;
    /* Try the write right here: a request nearly always fits the socket buffer, and a write that
     * completes at once spares libuv's write request and the epoll_ctl it costs when it drains. */
    int done = c->sock->ssl == NULL ? uv_try_write(c->stream, (const uv_buf_t *)bufs, (unsigned)n) : 0;
    size_t skip = done > 0 ? (size_t)done : 0;
    h2o_iovec_t *b = bufs;
    while (n > 0 && skip >= b->len) {
        skip -= b->len;
        b++;
        n--;
    }
    if (n > 0) {
        b->base += skip;
        b->len -= skip;
        c->writing = 1;
        h2o_socket_write(c->sock, b, n, on_write_done);
    }
    h2o_socket_read_start(c->sock, on_read);
    arm(call, now);
}

/* Bytes came in: the first-byte and idle deadlines move. Returns the time it read. */
static uint64_t
got_bytes(dp_upstream_call_t *call, uint64_t now)
{
    if (now == 0)
        now = now_ms();
    call->first_byte = 1;
    call->lean_call.last_data_ms = now;
    return now;
}

/* Parses and delivers what the socket's input holds. Returns at once once the call has ended. */
static void
process(dp_upstream_call_t *call)
{
    struct dp_lean_call *lc = &call->lean_call;
    dp_lean_conn_t *c = lc->conn;
    h2o_buffer_t **in = &c->sock->input;
    uint64_t now = 0; /* read once, when bytes came */
    if (lc->phase == PHASE_WAIT) {
        if ((*in)->size == 0)
            return;
        if (!call->first_byte)
            now = got_bytes(call, now);
        int n = dp_h1_parse_head(&lc->resp, (*in)->bytes, (*in)->size);
        if (n < 0) {
            fail(call, CURLE_WEIRD_SERVER_REPLY, "the provider's response is not valid HTTP/1.x");
            return;
        }
        if (n == 0) {
            if ((*in)->size > MAX_HEAD_BYTES)
                fail(call, CURLE_WEIRD_SERVER_REPLY, "the provider's response head exceeds %d bytes", MAX_HEAD_BYTES);
            return;
        }
        h2o_buffer_consume(in, (size_t)n);
        call->status = lc->resp.status;
        memcpy(call->content_type, lc->resp.content_type, sizeof(call->content_type));
        memcpy(call->retry_after, lc->resp.retry_after, sizeof(call->retry_after));
        lc->phase = PHASE_BODY;
        lc->ready = 0;
        if (lc->resp.framing == DP_H1_NONE)
            lc->body_end = 1; /* 204, 304, Content-Length: 0: nothing more to read */
    }
    if (!lc->body_end && (*in)->size > lc->ready) {
        size_t len = (*in)->size - lc->ready, extra;
        int rc = dp_h1_body(&lc->resp, (*in)->bytes + lc->ready, &len, &extra);
        if (rc != DP_H1_MORE) {
            lc->body_end = 1;
            lc->body_bad = rc == DP_H1_ERROR; /* what was decoded before the error still goes out first */
            if (extra > 0 || lc->body_bad)
                c->no_reuse = 1; /* bytes after the response: not a connection to trust again */
        }
        (*in)->size = lc->ready + len;
        lc->ready += len;
        now = got_bytes(call, now);
    }
    if (lc->ready > 0) {
        size_t ready = lc->ready;
        size_t rv = call->cb->on_body(call, (*in)->bytes, ready);
        if (!call->active || lc->conn != c)
            return; /* cancelled from on_body */
        if (rv == DP_UPSTREAM_PAUSE) {
            call->paused = 1;
            h2o_socket_read_stop(c->sock);
            arm(call, now);
            return;
        }
        if (rv != ready) {
            fail(call, CURLE_WRITE_ERROR, "Failure writing output to destination");
            return;
        }
        h2o_buffer_consume(in, ready);
        lc->ready = 0;
    }
    if (lc->body_bad)
        fail(call, CURLE_RECV_ERROR, "invalid chunked encoding in the provider's response");
    else if (lc->body_end)
        finish(call, CURLE_OK);
    else
        arm(call, now);
}

static void
on_read(h2o_socket_t *sock, const char *err)
{
    dp_lean_conn_t *c = sock->data;
    dp_upstream_call_t *call = c != NULL ? c->call : NULL;
    if (call == NULL)
        return;
    struct dp_lean_call *lc = &call->lean_call;
    if (err == NULL) {
        process(call);
        return;
    }
    if (lc->phase == PHASE_WAIT && sock->input->size == 0) {
        /* The server closed a connection before answering. On a reused one this is the keep-alive
         * race (it timed the connection out as we sent): send once more on a fresh connection, as
         * libcurl does. The request never reached the application, so repeating it is safe. */
        if (c->reused && !lc->retried) {
            lc->retried = 1;
            conn_close(c);
            lc->conn = NULL;
            if (attach_new_conn(call) != 0)
                fail(call, CURLE_OUT_OF_MEMORY, "out of memory");
            return;
        }
        fail(call, CURLE_GOT_NOTHING, "Empty reply from server");
        return;
    }
    if (lc->phase == PHASE_BODY && lc->resp.framing == DP_H1_CLOSE) {
        lc->body_end = 1; /* read-until-close: the end of the stream is the end of the body */
        c->no_reuse = 1;
        h2o_socket_read_stop(sock);
        process(call);
        return;
    }
    if (lc->phase == PHASE_BODY)
        fail(call, CURLE_PARTIAL_FILE, "transfer closed with outstanding read data remaining");
    else
        fail(call, CURLE_RECV_ERROR, "Recv failure: the provider closed the connection mid-response");
}

/* ---------------------------------------------------------------- connecting */

/* The TLS handshake is part of connecting: the connect timeout covers it, as it does in libcurl. OpenSSL
 * verifies the chain and the host name or IP during the handshake (the context's parameters), so a
 * failed check arrives here as a handshake error, before any byte of the request is sent. */
static void
on_handshake(h2o_socket_t *sock, const char *err)
{
    dp_lean_conn_t *c = sock->data;
    if (c == NULL || c->call == NULL)
        return;
    if (err != NULL) {
        fail(c->call, CURLE_PEER_FAILED_VERIFICATION, "TLS handshake with %s port %u failed: %s", c->pool->host,
             c->pool->port, err);
        return;
    }
    send_request(c->call, 0);
}

static void
on_connected(uv_connect_t *req, int status)
{
    struct tcp_holder *h = req->data;
    dp_lean_conn_t *c = h->conn;
    if (c == NULL)
        return; /* given up: the handle is closing */
    c->tcp = NULL;
    dp_upstream_call_t *call = c->call;
    dp_lean_pool_t *p = c->pool;
    if (status != 0) {
        uv_close((uv_handle_t *)&h->tcp, on_holder_closed);
        if ((size_t)c->addr + 1 < p->n_addrs) { /* e.g. localhost is ::1 first, the server on 127.0.0.1 */
            c->addr++;
            connect_to(c);
            return;
        }
        fail(call, CURLE_COULDNT_CONNECT, "Failed to connect to %s port %u: %s", c->pool->host, c->pool->port,
             uv_strerror(status));
        return;
    }
    if (c->addr != 0 && c->addr < p->n_addrs) { /* the next connection starts with the one that works */
        struct sockaddr_storage ok = p->addrs[c->addr];
        p->addrs[c->addr] = p->addrs[0];
        p->addrs[0] = ok;
    }
    uv_tcp_nodelay(&h->tcp, 1);
    c->stream = (uv_stream_t *)&h->tcp;
    c->sock = h2o_uv_socket_create(c->stream, on_holder_closed);
    c->sock->data = c;
    if (p->ssl_ctx != NULL) {
        h2o_socket_ssl_handshake(c->sock, p->ssl_ctx, p->host, on_handshake);
        return;
    }
    send_request(call, 0);
}

static void
connect_to(dp_lean_conn_t *c)
{
    struct tcp_holder *h = malloc(sizeof(*h));
    if (h == NULL) {
        fail_soon(c->call, CURLE_OUT_OF_MEMORY, "out of memory");
        return;
    }
    uv_tcp_init(c->pool->lean->loop, &h->tcp);
    h->conn = c;
    h->creq.data = h;
    int rv = uv_tcp_connect(&h->creq, &h->tcp, (const struct sockaddr *)&c->pool->addrs[c->addr], on_connected);
    if (rv != 0) {
        uv_close((uv_handle_t *)&h->tcp, on_holder_closed);
        fail_soon(c->call, CURLE_COULDNT_CONNECT, "Failed to connect to %s port %u: %s", c->pool->host, c->pool->port,
                  uv_strerror(rv));
        return;
    }
    c->tcp = h;
}

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct resolve *r = (struct resolve *)req;
    dp_lean_conn_t *c = r->conn;
    free(r);
    if (c == NULL) {
        uv_freeaddrinfo(res);
        return;
    }
    c->resolve = NULL;
    dp_lean_pool_t *p = c->pool;
    if (status != 0 || res == NULL || res->ai_addr == NULL) {
        uv_freeaddrinfo(res);
        fail(c->call, CURLE_COULDNT_RESOLVE_HOST, "Could not resolve host: %s", p->host);
        return;
    }
    p->n_addrs = 0;
    for (struct addrinfo *ai = res; ai != NULL && p->n_addrs < MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(p->addrs[0]))
            continue;
        memset(&p->addrs[p->n_addrs], 0, sizeof(p->addrs[0]));
        memcpy(&p->addrs[p->n_addrs++], ai->ai_addr, ai->ai_addrlen);
    }
    p->addr_expires_ms = now_ms() + DNS_TTL_MS;
    uv_freeaddrinfo(res);
    connect_to(c);
}

/* A new connection for the call, connecting (or resolving first) from now on. */
static int
attach_new_conn(dp_upstream_call_t *call)
{
    struct dp_lean_call *lc = &call->lean_call;
    dp_lean_pool_t *p = lc->pool;
    dp_lean_conn_t *c = conn_new(p);
    if (c == NULL)
        return -1;
    c->call = call;
    lc->conn = c;
    lc->phase = PHASE_CONNECT;
    uint64_t now = now_ms();
    long connect_ms = call->timeouts.connect_ms > 0 ? call->timeouts.connect_ms : p->lean->up->opts.connect_timeout_ms;
    lc->connect_deadline_ms = connect_ms > 0 ? now + (uint64_t)connect_ms : 0;
    arm(call, now);
    if (p->addr_expires_ms > now) {
        connect_to(c);
        return 0;
    }
    struct resolve *r = malloc(sizeof(*r));
    if (r == NULL) {
        fail_soon(call, CURLE_OUT_OF_MEMORY, "out of memory");
        return 0;
    }
    r->conn = c;
    char port[8];
    snprintf(port, sizeof(port), "%u", p->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    int rv = uv_getaddrinfo(p->lean->loop, &r->req, on_resolved, p->host, port, &hints);
    if (rv != 0) {
        free(r);
        fail_soon(call, CURLE_COULDNT_RESOLVE_HOST, "Could not resolve host: %s (%s)", p->host, uv_strerror(rv));
        return 0;
    }
    c->resolve = r;
    return 0;
}

/* ---------------------------------------------------------------- pools */

/* One client context per upstream host: peer verification against the system store (or the configured
 * bundle), the host name (or IP address) checked by OpenSSL itself, TLS 1.2 at least, ALPN http/1.1. */
static SSL_CTX *
new_ssl_ctx(const char *ca_bundle, const char *host)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok =
        ca_bundle != NULL ? SSL_CTX_load_verify_locations(ctx, ca_bundle, NULL) : SSL_CTX_set_default_verify_paths(ctx);
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
    if (ok == 1 && X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1)
        ok = X509_VERIFY_PARAM_set1_host(param, host, 0);
    static const unsigned char alpn[] = "\x08http/1.1";
    if (ok != 1 || SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static dp_lean_pool_t *
pool_find(dp_lean_t *l, const dp_h1_url_t *u)
{
    for (dp_lean_pool_t *p = l->pools; p != NULL; p = p->next) {
        if (p->port == u->port && p->tls == u->tls && strlen(p->host) == u->host_len &&
            memcmp(p->host, u->host, u->host_len) == 0)
            return p;
    }
    dp_lean_pool_t *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->host = strndup(u->host, u->host_len)) == NULL) {
        free(p);
        return NULL;
    }
    p->lean = l;
    p->port = u->port;
    p->tls = u->tls;
    /* numeric hosts need no lookup, and never expire */
    struct sockaddr_in *a4 = (struct sockaddr_in *)&p->addrs[0];
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&p->addrs[0];
    if (uv_ip4_addr(p->host, p->port, a4) == 0 || uv_ip6_addr(p->host, p->port, a6) == 0) {
        p->addr_expires_ms = UINT64_MAX;
        p->n_addrs = 1;
    }
    if (p->tls && (p->ssl_ctx = new_ssl_ctx(l->up->opts.ca_bundle, p->host)) == NULL) {
        free(p->host);
        free(p);
        return NULL;
    }
    p->next = l->pools;
    l->pools = p;
    return p;
}

/* ---------------------------------------------------------------- the contract */

int
dp_lean_new(dp_upstream_t *up, dp_lean_t **ret)
{
    dp_lean_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -1;
    l->up = up;
    l->loop = up->loop;
    *ret = l;
    return 0;
}

void
dp_lean_free(dp_lean_t *l)
{
    if (l == NULL)
        return;
    while (l->conns != NULL) {
        dp_lean_conn_t *c = l->conns;
        if (c->call != NULL)
            detach(c->call); /* its owner is going away with the loop; no callback */
        conn_close(c);
    }
    while (l->pools != NULL) {
        dp_lean_pool_t *p = l->pools;
        l->pools = p->next;
        SSL_CTX_free(p->ssl_ctx);
        free(p->host);
        free(p);
    }
    free(l);
}

int
dp_lean_call_start(dp_upstream_t *up, dp_upstream_call_t *call, const dp_h1_url_t *u, const struct curl_slist *headers,
                   const char *body, size_t len)
{
    dp_lean_t *l = up->lean;
    struct dp_lean_call *lc = &call->lean_call;
    dp_lean_pool_t *p = pool_find(l, u);
    if (p == NULL)
        return -1;
    memset(lc, 0, sizeof(*lc));
    if ((lc->head = dp_h1_build_head(u, headers, len, &lc->head_len)) == NULL)
        return -1;
    call->upstream = up;
    call->easy = NULL;
    call->timer = NULL;
    call->lean = 1;
    call->status = 0;
    call->content_type[0] = call->retry_after[0] = call->error[0] = '\0';
    call->paused = 0;
    call->first_byte = 0;
    lc->pool = p;
    lc->body = body;
    lc->body_len = len;
    lc->start_ms = now_ms();
    long total_ms = call->timeouts.total_ms > 0 ? call->timeouts.total_ms : up->opts.total_timeout_ms;
    lc->total_deadline_ms = total_ms > 0 ? lc->start_ms + (uint64_t)total_ms : 0;
    call->active = 1;
    dp_lean_conn_t *c = pool_get(p);
    if (c == NULL) {
        if (attach_new_conn(call) != 0) {
            detach(call);
            return -1;
        }
        return 0;
    }
    c->call = call;
    lc->conn = c;
    send_request(call, lc->start_ms);
    return 0;
}

void
dp_lean_call_cancel(dp_upstream_call_t *call)
{
    if (!call->active)
        return;
    dp_lean_conn_t *c = call->lean_call.conn;
    if (c != NULL)
        conn_close(c); /* the response was not read to its end: never pooled */
    detach(call);
}

void
dp_lean_call_resume(dp_upstream_call_t *call)
{
    if (!call->active || !call->paused)
        return;
    struct dp_lean_call *lc = &call->lean_call;
    dp_lean_conn_t *c = lc->conn;
    call->paused = 0;
    lc->last_data_ms = now_ms();
    process(call); /* may deliver, pause again or finish right here */
    if (call->active && lc->conn == c && !call->paused && !lc->body_end)
        h2o_socket_read_start(c->sock, on_read);
}
