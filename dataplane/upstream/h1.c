/*
 * HTTP/1.1 wire pieces of the lean upstream client (see h1.h). No I/O, no state beyond the caller's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "tollgate/buf.h"
#include "upstream/h1.h"

#define MAX_RESPONSE_HEADERS 100

int
dp_h1_parse_url(const char *url, dp_h1_url_t *ret)
{
    dp_h1_url_t u = {0};
    const char *p;
    if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
        u.port = 80;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        p = url + 8;
        u.tls = 1;
        u.port = 443;
    } else {
        return -1;
    }
    const char *end = p + strcspn(p, "/?#");
    if (*end == '#' || memchr(p, '@', (size_t)(end - p)) != NULL || end == p)
        return -1;
    u.authority = p;
    u.authority_len = (size_t)(end - p);
    const char *port = NULL;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (close == NULL)
            return -1;
        u.host = p + 1;
        u.host_len = (size_t)(close - p - 1);
        if (close + 1 < end) {
            if (close[1] != ':')
                return -1;
            port = close + 2;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        u.host = p;
        u.host_len = (size_t)((colon != NULL ? colon : end) - p);
        if (colon != NULL)
            port = colon + 1;
    }
    if (u.host_len == 0)
        return -1;
    if (port != NULL) {
        unsigned long v = 0;
        if (port == end)
            return -1;
        for (const char *q = port; q < end; q++) {
            if (*q < '0' || *q > '9' || (v = v * 10 + (unsigned long)(*q - '0')) > 65535)
                return -1;
        }
        if (v == 0)
            return -1;
        if (v == (unsigned long)u.port)
            u.authority_len = (size_t)(port - 1 - p); /* the default port is left out of Host, as curl does */
        u.port = (uint16_t)v;
    }
    if (*end == '\0') {
        u.path = "/";
        u.path_len = 1;
    } else {
        if (*end != '/')
            return -1; /* "http://h?q" means "/?q": rare enough to leave to libcurl */
        u.path = end;
        u.path_len = strcspn(end, "#");
    }
    *ret = u;
    return 0;
}

static int
name_is(const char *line, size_t name_len, const char *name)
{
    return strlen(name) == name_len && strncasecmp(line, name, name_len) == 0;
}

/* Headers only we may set: the framing of the request is ours, never the caller's. */
static int
reserved(const char *line, size_t name_len)
{
    return name_is(line, name_len, "content-length") || name_is(line, name_len, "transfer-encoding") ||
           name_is(line, name_len, "expect") || name_is(line, name_len, "connection");
}

/* memcpy, not sprintf: the head is built once per request, and printf's format machinery was most of
 * its cost (callgrind: ~4,000 instructions of ~4,700 per call start). */
static char *
put(char *p, const char *s, size_t len)
{
    memcpy(p, s, len);
    return p + len;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

char *
dp_h1_build_head(const dp_h1_url_t *u, const struct curl_slist *headers, size_t body_len, size_t *ret_len)
{
    int own_host = 1, own_accept = 1;
    size_t cap = u->path_len + u->authority_len + 96;
    for (const struct curl_slist *l = headers; l != NULL; l = l->next) {
        size_t n = strcspn(l->data, ":;");
        if (name_is(l->data, n, "host"))
            own_host = 0;
        else if (name_is(l->data, n, "accept"))
            own_accept = 0;
        cap += strlen(l->data) + 2;
    }
    char *buf = malloc(cap), *p = buf;
    if (buf == NULL)
        return NULL;
    p = PUT_LIT(p, "POST ");
    p = put(p, u->path, u->path_len);
    p = PUT_LIT(p, " HTTP/1.1\r\n");
    if (own_host) {
        p = PUT_LIT(p, "Host: ");
        p = put(p, u->authority, u->authority_len);
        p = PUT_LIT(p, "\r\n");
    }
    p = PUT_LIT(p, "Content-Length: ");
    p += tg_fmt_u64(p, body_len);
    p = PUT_LIT(p, "\r\n");
    if (own_accept)
        p = PUT_LIT(p, "Accept: */*\r\n");
    for (const struct curl_slist *l = headers; l != NULL; l = l->next) {
        const char *line = l->data;
        size_t n = strcspn(line, ":;");
        if (line[n] == '\0' || n == 0 || reserved(line, n))
            continue;
        const char *v = line + n + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (line[n] == ':' && *v == '\0')
            continue; /* "Name:" suppresses the header */
        if (line[n] == ';' && *v != '\0')
            continue; /* not curl's "Name;" form: not a header line */
        memcpy(p, line, n);
        p += n;
        *p++ = ':';
        *p++ = ' ';
        size_t vl = strlen(v);
        memcpy(p, v, vl);
        p += vl;
        *p++ = '\r';
        *p++ = '\n';
    }
    *p++ = '\r';
    *p++ = '\n';
    *ret_len = (size_t)(p - buf);
    return buf;
}

static void
copy_value(char *dst, size_t cap, const char *v, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

/* Whether a comma-separated header value holds token (case-insensitive). */
static int
has_token(const char *v, size_t len, const char *token)
{
    size_t tl = strlen(token);
    const char *end = v + len;
    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
            v++;
        const char *s = v;
        while (v < end && *v != ',')
            v++;
        const char *e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == tl && strncasecmp(s, token, tl) == 0)
            return 1;
    }
    return 0;
}

int
dp_h1_parse_head(dp_h1_response_t *r, const char *buf, size_t len)
{
    size_t off = 0;
    for (;;) {
        struct phr_header h[MAX_RESPONSE_HEADERS];
        size_t nh = MAX_RESPONSE_HEADERS, msg_len;
        const char *msg;
        int minor, status;
        int n = phr_parse_response(buf + off, len - off, &minor, &status, &msg, &msg_len, h, &nh, 0);
        if (n == -2)
            return 0;
        if (n < 0)
            return -1;
        off += (size_t)n;
        if (status >= 100 && status < 200 && status != 101)
            continue; /* interim (100 Continue, 103 Early Hints): the final head follows */
        if (status < 200 || status > 999)
            return -1;
        memset(r, 0, sizeof(*r));
        r->status = status;
        r->minor_version = minor;
        r->keep_alive = minor >= 1;
        int chunked = 0, have_length = 0;
        uint64_t length = 0;
        for (size_t i = 0; i < nh; i++) {
            const char *name = h[i].name;
            size_t nl = h[i].name_len;
            if (name == NULL)
                continue; /* a continuation line */
            if (name_is(name, nl, "content-type")) {
                copy_value(r->content_type, sizeof(r->content_type), h[i].value, h[i].value_len);
            } else if (name_is(name, nl, "retry-after")) {
                copy_value(r->retry_after, sizeof(r->retry_after), h[i].value, h[i].value_len);
            } else if (name_is(name, nl, "transfer-encoding")) {
                if (has_token(h[i].value, h[i].value_len, "chunked"))
                    chunked = 1;
            } else if (name_is(name, nl, "content-length")) {
                uint64_t v = 0;
                if (h[i].value_len == 0 || h[i].value_len > 18)
                    return -1;
                for (size_t k = 0; k < h[i].value_len; k++) {
                    char c = h[i].value[k];
                    if (c < '0' || c > '9')
                        return -1;
                    v = v * 10 + (uint64_t)(c - '0');
                }
                if (have_length && v != length)
                    return -1; /* two lengths that disagree: a smuggling attempt or a broken server */
                have_length = 1;
                length = v;
            } else if (name_is(name, nl, "connection")) {
                if (has_token(h[i].value, h[i].value_len, "close"))
                    r->keep_alive = 0;
                else if (minor == 0 && has_token(h[i].value, h[i].value_len, "keep-alive"))
                    r->keep_alive = 0; /* HTTP/1.0 keep-alive is not worth the odd cases: close */
            }
        }
        if (status == 204 || status == 304) {
            r->framing = DP_H1_NONE;
        } else if (chunked) {
            r->framing = DP_H1_CHUNKED; /* chunked wins over a length (RFC 9112 6.3) */
            r->chunked.d.consume_trailer = 1;
        } else if (have_length) {
            r->framing = length > 0 ? DP_H1_LENGTH : DP_H1_NONE;
            r->remaining = length;
        } else {
            r->framing = DP_H1_CLOSE;
            r->keep_alive = 0;
        }
        return (int)off;
    }
}

int
dp_h1_body(dp_h1_response_t *r, char *buf, size_t *len, size_t *ret_extra)
{
    *ret_extra = 0;
    switch (r->framing) {
    case DP_H1_NONE:
        *ret_extra = *len;
        *len = 0;
        return DP_H1_END;
    case DP_H1_LENGTH:
        if (*len >= r->remaining) {
            *ret_extra = *len - (size_t)r->remaining;
            *len = (size_t)r->remaining;
            r->remaining = 0;
            return DP_H1_END;
        }
        r->remaining -= *len;
        return DP_H1_MORE;
    case DP_H1_CHUNKED: {
        ssize_t rv = phr_decode_chunked(&r->chunked.d, buf, len);
        if (rv == -2)
            return DP_H1_MORE;
        if (rv < 0)
            return DP_H1_ERROR;
        *ret_extra = (size_t)rv;
        return DP_H1_END;
    }
    default:
        return DP_H1_MORE;
    }
}
