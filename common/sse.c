/*
 * SSE parser (see tollgate/sse.h). Events are split where the caller's bytes are: a read that holds
 * whole events costs no copy and the parser holds no buffer between events. Only an unfinished event
 * is copied (to `raw`, which later reads are appended to), and only data that must be joined (several
 * data lines, or an event spanning reads) goes to `data`. Memory per idle stream: the struct itself.
 */
#include <stdlib.h>
#include <string.h>
#include "tollgate/sse.h"

void
tg_sse_init(tg_sse_parser_t *p, size_t max_event)
{
    memset(p, 0, sizeof(*p));
    p->max_event = max_event;
}

void
tg_sse_dispose(tg_sse_parser_t *p)
{
    free(p->raw);
    free(p->data);
    p->raw = p->data = NULL;
}

size_t
tg_sse_pending(const tg_sse_parser_t *p)
{
    return p->raw_len;
}

static int
reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 1024;
    while (ncap < need)
        ncap *= 2;
    char *n = realloc(*buf, ncap);
    if (n == NULL)
        return -1;
    *buf = n;
    *cap = ncap;
    return 0;
}

/* A data line: the first one of an event is only pointed at (it stays where it was read); a second one
 * joins both in p->data. */
static int
add_data(tg_sse_parser_t *p, const char *value, size_t vlen)
{
    if (!p->has_data) {
        p->has_data = 1;
        p->data_owned = 0;
        p->data_ref = value;
        p->data_len = vlen;
        return 0;
    }
    if (!p->data_owned) {
        if (reserve(&p->data, &p->data_cap, p->data_len + 1) != 0)
            return -1;
        memmove(p->data, p->data_ref, p->data_len);
        p->data_owned = 1;
    }
    if (reserve(&p->data, &p->data_cap, p->data_len + 1 + vlen) != 0)
        return -1;
    p->data[p->data_len++] = '\n';
    memcpy(p->data + p->data_len, value, vlen);
    p->data_len += vlen;
    return 0;
}

static int
process_line(tg_sse_parser_t *p, const char *line, size_t len)
{
    if (len == 0 || line[0] == ':')
        return 0;
    const char *colon = memchr(line, ':', len);
    size_t flen = colon ? (size_t)(colon - line) : len;
    const char *value = colon ? colon + 1 : line + len;
    size_t vlen = line + len - value;
    if (vlen > 0 && *value == ' ') {
        value++;
        vlen--;
    }
    if (flen == 4 && memcmp(line, "data", 4) == 0) {
        if (add_data(p, value, vlen) != 0)
            return -1;
    } else if (flen == 5 && memcmp(line, "event", 5) == 0) {
        p->event_len = vlen < sizeof(p->event) - 1 ? vlen : sizeof(p->event) - 1;
        memcpy(p->event, value, p->event_len);
        p->event[p->event_len] = '\0';
    }
    return 0;
}

int
tg_sse_feed(tg_sse_parser_t *p, const char *buf, size_t len, tg_sse_cb cb, void *ctx)
{
    int rv = 0;
    if (len == 0)
        return 0; /* nothing to scan; and memcpy from or to NULL is undefined even for 0 bytes */
    /* Nothing held back: events are parsed where the caller's bytes are, and only an unfinished tail is
     * copied. Otherwise the new bytes join the held-back ones in p->raw. */
    const char *b;
    size_t n;
    if (p->raw_len == 0) {
        b = buf;
        n = len;
    } else {
        if (reserve(&p->raw, &p->raw_cap, p->raw_len + len) != 0)
            return -1;
        memcpy(p->raw + p->raw_len, buf, len);
        p->raw_len += len;
        b = p->raw;
        n = p->raw_len;
    }

    size_t i = p->scan;
    while (i < n) {
        char c = b[i];
        if (p->after_cr) {
            p->after_cr = 0;
            if (c == '\n') {
                /* second half of a CRLF whose CR already ended the line */
                i++;
                p->line_start = i;
                continue;
            }
        }
        const char *nl = memchr(b + i, '\n', n - i);
        const char *cr = memchr(b + i, '\r', (nl ? (size_t)(nl - b) : n) - i);
        const char *term = cr ? cr : nl;
        if (term == NULL) {
            i = n;
            break;
        }
        size_t line_end = term - b;
        i = line_end + 1;
        if (*term == '\r') {
            if (i < n) {
                if (b[i] == '\n')
                    i++;
            } else {
                p->after_cr = 1;
            }
        }
        size_t line_len = line_end - p->line_start;
        if (line_len == 0) {
            /* blank line: the event ends here */
            tg_sse_event_t ev = {
                .raw = b + p->event_start,
                .raw_len = i - p->event_start,
                .data = !p->has_data    ? ""
                        : p->data_owned ? p->data
                                        : p->data_ref,
                .data_len = p->has_data ? p->data_len : 0,
                .has_data = p->has_data,
                .event = p->event,
                .event_len = p->event_len,
            };
            rv = cb(ctx, &ev);
            p->event[0] = '\0';
            p->has_data = 0;
            p->data_len = 0;
            p->event_len = 0;
            p->event_start = i;
            p->line_start = i;
            if (rv != 0)
                break;
            continue;
        }
        if (process_line(p, b + p->line_start, line_len) != 0)
            return -1;
        p->line_start = i;
    }

    /* keep only the unfinished event; its first data line, if only pointed at, is copied before the
     * bytes it points into move or go back to the caller */
    size_t keep = n - p->event_start;
    if (p->has_data && !p->data_owned) {
        if (reserve(&p->data, &p->data_cap, p->data_len + 1) != 0)
            return -1;
        memcpy(p->data, p->data_ref, p->data_len);
        p->data_owned = 1;
    }
    if (b == buf) {
        if (keep > 0) {
            if (reserve(&p->raw, &p->raw_cap, keep) != 0)
                return -1;
            memcpy(p->raw, b + p->event_start, keep);
        }
    } else if (p->event_start > 0) {
        memmove(p->raw, p->raw + p->event_start, keep);
    }
    p->line_start -= p->event_start;
    i -= p->event_start;
    p->event_start = 0;
    p->raw_len = keep;
    p->scan = i;
    if (keep == 0 && p->raw != NULL) {
        /* between events a stream holds no buffer: most reads end on an event boundary */
        free(p->raw);
        p->raw = NULL;
        p->raw_cap = 0;
    }
    if (rv == 0 && keep > p->max_event)
        return -1;
    return rv;
}
