/*
 * The event-list reply engine of the mock provider (see mock.h): a reply is queued whole, then sent
 * event by event with the directive's delays, one h2o_send outstanding at a time.
 *
 * Lifetimes: the reply lives in req->pool with a dispose callback that frees the event buffer and
 * detaches the timer; the uv timer is malloc'd apart because its memory must outlive uv_close.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mock.h"
#include "tollgate/buf.h"
#include "tollgate/http_status.h"

struct reply_timer {
    uv_timer_t handle; /* first: the close callback frees the whole struct */
    struct mock_reply *reply;
};

struct mock_reply {
    h2o_generator_t super;
    h2o_req_t *req;
    struct reply_timer *timer;
    int status;
    const char *content_type;
    tg_buf_t bytes;
    size_t *ends; /* ends[i]: end offset of event i in bytes */
    size_t n_events, cap_events;
    size_t cut; /* events before the cut are sent, then the connection is aborted; SIZE_MAX: none */
    size_t next;
    int64_t chunk_delay_ms;
    int started, done, aborting;
    size_t served_event; /* the event that carries the final usage (mock_reply_served); SIZE_MAX: none */
    int64_t served_in, served_out, served_cached;
};

static void
on_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void
on_dispose(void *p)
{
    struct mock_reply *r = p;
    if (r->timer != NULL) {
        r->timer->reply = NULL;
        uv_timer_stop(&r->timer->handle);
        uv_close((uv_handle_t *)&r->timer->handle, on_timer_closed);
    }
    tg_buf_free(&r->bytes);
    free(r->ends);
}

static void on_timer(uv_timer_t *t);

static void
arm_timer(struct mock_reply *r, int64_t ms)
{
    if (r->timer == NULL) {
        r->timer = malloc(sizeof(*r->timer));
        uv_timer_init(r->req->conn->ctx->loop, &r->timer->handle);
        r->timer->reply = r;
    }
    uv_timer_start(&r->timer->handle, on_timer, (uint64_t)ms, 0);
}

static size_t
event_start(const struct mock_reply *r, size_t i)
{
    return i == 0 ? 0 : r->ends[i - 1];
}

/* Sends the next event (or, without delays, every event up to the end or the cut). */
static void
send_next(struct mock_reply *r)
{
    size_t limit = r->cut < r->n_events ? r->cut : r->n_events;
    int cut = r->cut != SIZE_MAX; /* a cut aborts even when nothing was queued after it */
    if (r->next >= limit) {
        r->done = 1;
        h2o_send(r->req, NULL, 0, cut ? H2O_SEND_STATE_ERROR : H2O_SEND_STATE_FINAL);
        return;
    }
    size_t first = r->next, last = r->chunk_delay_ms > 0 ? first + 1 : limit;
    r->next = last;
    if (r->served_event >= first && r->served_event < last) { /* before the cut, since last <= limit */
        mock_served_add(r->served_in, r->served_out, r->served_cached);
        r->served_event = SIZE_MAX;
    }
    h2o_iovec_t v = h2o_iovec_init(r->bytes.base + event_start(r, first), r->ends[last - 1] - event_start(r, first));
    h2o_send_state_t state = H2O_SEND_STATE_IN_PROGRESS;
    if (last == limit && !cut) {
        state = H2O_SEND_STATE_FINAL;
        r->done = 1;
    } else if (last == limit) {
        r->aborting = 1; /* the cut: abort once these bytes are out */
    }
    h2o_send(r->req, &v, 1, state);
}

static void
on_proceed(h2o_generator_t *self, h2o_req_t *req)
{
    struct mock_reply *r = (struct mock_reply *)self;
    if (r->done)
        return;
    if (r->aborting) {
        r->done = 1;
        h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    if (r->chunk_delay_ms > 0)
        arm_timer(r, r->chunk_delay_ms);
    else
        send_next(r);
}

static void
on_stop(h2o_generator_t *self, h2o_req_t *req)
{
    struct mock_reply *r = (struct mock_reply *)self;
    r->done = 1;
    if (r->timer != NULL)
        uv_timer_stop(&r->timer->handle);
}

static void
start_response(struct mock_reply *r)
{
    h2o_req_t *req = r->req;
    r->started = 1;
    req->res.status = r->status;
    req->res.reason = tg_http_reason(r->status);
    mock_add_header(req, "content-type", r->content_type);
    int streaming = strstr(r->content_type, "stream") != NULL || strstr(r->content_type, "ndjson") != NULL;
    if (!streaming)
        req->res.content_length = r->bytes.len; /* a cut body then looks short to the client, as intended */
    h2o_start_response(req, &r->super);
    send_next(r);
}

static void
on_timer(uv_timer_t *t)
{
    struct mock_reply *r = ((struct reply_timer *)t)->reply;
    if (r == NULL || r->done)
        return;
    if (!r->started)
        start_response(r);
    else
        send_next(r);
}

struct mock_reply *
mock_reply_new(h2o_req_t *req, int status, const char *content_type)
{
    struct mock_reply *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), on_dispose);
    memset(r, 0, sizeof(*r));
    r->super.proceed = on_proceed;
    r->super.stop = on_stop;
    r->req = req;
    r->status = status;
    r->content_type = h2o_strdup(&req->pool, content_type, SIZE_MAX).base;
    r->cut = SIZE_MAX;
    r->served_event = SIZE_MAX;
    return r;
}

void
mock_reply_event(struct mock_reply *r, const void *bytes, size_t len)
{
    if (r->n_events == r->cap_events) {
        r->cap_events = r->cap_events ? 2 * r->cap_events : 32;
        r->ends = realloc(r->ends, r->cap_events * sizeof(*r->ends));
        if (r->ends == NULL)
            abort();
    }
    if (tg_buf_append(&r->bytes, bytes, len) != 0)
        abort();
    r->ends[r->n_events++] = r->bytes.len;
}

void
mock_reply_eventf(struct mock_reply *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    mock_reply_event(r, s, (size_t)n);
    free(s);
}

void
mock_reply_event_json(struct mock_reply *r, const char *prefix, json_t *v, const char *suffix)
{
    char *s = json_dumps(v, JSON_COMPACT);
    if (s == NULL)
        abort();
    mock_reply_eventf(r, "%s%s%s", prefix ? prefix : "", s, suffix ? suffix : "");
    free(s);
}

void
mock_reply_cut(struct mock_reply *r)
{
    if (r->cut == SIZE_MAX)
        r->cut = r->n_events;
}

void
mock_reply_served(struct mock_reply *r, int64_t input, int64_t output, int64_t cached)
{
    if (r->n_events == 0)
        return;
    r->served_event = r->n_events - 1;
    r->served_in = input;
    r->served_out = output;
    r->served_cached = cached;
}

void
mock_reply_start(struct mock_reply *r, const struct mock_directives *d)
{
    r->chunk_delay_ms = d != NULL && d->chunk_delay_ms > 0 ? d->chunk_delay_ms : 0;
    if (d != NULL && d->delay_ms > 0)
        arm_timer(r, d->delay_ms);
    else
        start_response(r);
}
