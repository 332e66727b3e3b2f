/*
 * AWS SigV4 request signing (see sigv4.h; the algorithm is in shared/ref/providers.md §5.6).
 *
 * The canonical request is built from explicit parts so that the same code signs (the dataplane) and
 * verifies (the mock provider, from the headers it received). Bedrock is a non-S3 service: the path is
 * URI-encoded a second time, segment by segment, which is the usual cause of signature mismatches for
 * model ids with ':' in them.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include "tollgate/crypto.h"
#include "translate/bedrock/sigv4.h"

static int
unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == '~';
}

/* URI-encodes s[0..n) (keeping '/' when keep_slash) onto b. */
static int
encode(tg_buf_t *b, const char *s, size_t n, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            if (tg_buf_append(b, &s[i], 1) != 0)
                return -1;
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            if (tg_buf_append(b, e, 3) != 0)
                return -1;
        }
    }
    return 0;
}

/* Percent-decodes s[0..n) into the arena ('+' stays '+', as AWS's canonical form wants). */
static char *
decode(const char *s, size_t n, tg_arena_t *a)
{
    char *out = tg_arena_alloc(a, n + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = tg_hex_value(s[i + 1])) >= 0 && (lo = tg_hex_value(s[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

typedef struct {
    const char *k, *v;
} kv_t;

static int
cmp_kv(const void *x, const void *y)
{
    const kv_t *a = x, *b = y;
    int c = strcmp(a->k, b->k);
    return c != 0 ? c : strcmp(a->v, b->v);
}

static int
cmp_header(const void *x, const void *y)
{
    return strcmp(((const tx_sigv4_header_t *)x)->name, ((const tx_sigv4_header_t *)y)->name);
}

/* A header value trimmed, with runs of spaces folded to one (the canonical form). */
static int
append_trimmed(tg_buf_t *b, const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    for (size_t i = 0; i < n; i++) {
        if ((v[i] == ' ' || v[i] == '\t') && i > 0 && (v[i - 1] == ' ' || v[i - 1] == '\t'))
            continue;
        if (tg_buf_append(b, v[i] == '\t' ? " " : &v[i], 1) != 0)
            return -1;
    }
    return 0;
}

static char *
buf_to_arena(tg_buf_t *b, tg_arena_t *a)
{
    char *s = b->base != NULL ? tg_arena_strndup(a, b->base, b->len) : tg_arena_strdup(a, "");
    tg_buf_free(b);
    return s;
}

char *
tx_sigv4_canonical_request(const char *method, const char *path, const char *query, const tx_sigv4_header_t *headers,
                           size_t n_headers, const char *payload_hash, tg_arena_t *a, const char **ret_signed_headers)
{
    tg_buf_t b = {0}, sh = {0};
    kv_t *kvs = NULL;
    tx_sigv4_header_t *hs = NULL;

    if (tg_buf_appendf(&b, "%s\n", method) != 0)
        goto fail;
    if (path == NULL || path[0] == '\0')
        path = "/";
    if (encode(&b, path, strlen(path), 1) != 0 || tg_buf_append(&b, "\n", 1) != 0)
        goto fail;

    /* query: decoded, re-encoded, sorted by name then value */
    size_t n_kv = 0;
    if (query != NULL && query[0] != '\0') {
        n_kv = 1;
        for (const char *q = query; *q; q++)
            n_kv += *q == '&';
        kvs = calloc(n_kv, sizeof(*kvs));
        if (kvs == NULL)
            goto fail;
        size_t i = 0;
        for (const char *q = query; i < n_kv; i++) {
            const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q);
            const char *eq = memchr(q, '=', (size_t)(end - q));
            kvs[i].k = decode(q, (size_t)((eq ? eq : end) - q), a);
            kvs[i].v = eq ? decode(eq + 1, (size_t)(end - eq - 1), a) : "";
            if (kvs[i].k == NULL || kvs[i].v == NULL)
                goto fail;
            q = amp ? amp + 1 : end;
        }
        qsort(kvs, n_kv, sizeof(*kvs), cmp_kv);
    }
    for (size_t i = 0; i < n_kv; i++) {
        if (kvs[i].k[0] == '\0' && kvs[i].v[0] == '\0')
            continue; /* "a=1&&b=2": an empty pair is no parameter */
        if ((b.len > 0 && b.base[b.len - 1] != '\n' && tg_buf_append(&b, "&", 1) != 0) ||
            encode(&b, kvs[i].k, strlen(kvs[i].k), 0) != 0 || tg_buf_append(&b, "=", 1) != 0 ||
            encode(&b, kvs[i].v, strlen(kvs[i].v), 0) != 0)
            goto fail;
    }
    if (tg_buf_append(&b, "\n", 1) != 0)
        goto fail;

    hs = calloc(n_headers ? n_headers : 1, sizeof(*hs));
    if (hs == NULL)
        goto fail;
    memcpy(hs, headers, n_headers * sizeof(*hs));
    qsort(hs, n_headers, sizeof(*hs), cmp_header);
    for (size_t i = 0; i < n_headers; i++) {
        if (tg_buf_appendf(&b, "%s:", hs[i].name) != 0 || append_trimmed(&b, hs[i].value) != 0 ||
            tg_buf_append(&b, "\n", 1) != 0 || (i > 0 && tg_buf_append(&sh, ";", 1) != 0) ||
            tg_buf_appends(&sh, hs[i].name) != 0)
            goto fail;
    }
    if (tg_buf_append(&b, "\n", 1) != 0 || tg_buf_append(&b, sh.base, sh.len) != 0 ||
        tg_buf_appendf(&b, "\n%s", payload_hash) != 0)
        goto fail;
    free(kvs);
    free(hs);
    *ret_signed_headers = buf_to_arena(&sh, a);
    return *ret_signed_headers != NULL ? buf_to_arena(&b, a) : NULL;
fail:
    free(kvs);
    free(hs);
    tg_buf_free(&b);
    tg_buf_free(&sh);
    return NULL;
}

void
tx_sigv4_signing_key(const char *secret, const char *date, const char *region, const char *service, uint8_t ret_key[32])
{
    uint8_t k[TG_SHA256_LEN];
    /* kSecret = "AWS4" + secret */
    size_t sl = strlen(secret);
    char *ksecret = malloc(sl + 5);
    if (ksecret == NULL) {
        memset(ret_key, 0, 32);
        return;
    }
    memcpy(ksecret, "AWS4", 4);
    memcpy(ksecret + 4, secret, sl + 1);
    tg_hmac_sha256(ksecret, sl + 4, date, strlen(date), k);
    explicit_bzero(ksecret, sl + 4);
    free(ksecret);
    tg_hmac_sha256(k, sizeof(k), region, strlen(region), k);
    tg_hmac_sha256(k, sizeof(k), service, strlen(service), k);
    tg_hmac_sha256(k, sizeof(k), "aws4_request", 12, ret_key);
    explicit_bzero(k, sizeof(k));
}

void
tx_sigv4_signature(const char *secret, const char *amz_date, const char *region, const char *service,
                   const char *canonical_request, char ret_hex[65])
{
    uint8_t digest[TG_SHA256_LEN], key[32], sig[TG_SHA256_LEN];
    char hash_hex[65], date[9], sts[256];
    tg_sha256(canonical_request, strlen(canonical_request), digest);
    tg_hex_encode(digest, sizeof(digest), hash_hex);
    snprintf(date, sizeof(date), "%.8s", amz_date);
    int n = snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", amz_date, date, region,
                     service, hash_hex);
    tx_sigv4_signing_key(secret, date, region, service, key);
    tg_hmac_sha256(key, sizeof(key), sts, n > 0 && (size_t)n < sizeof(sts) ? (size_t)n : strlen(sts), sig);
    explicit_bzero(key, sizeof(key));
    tg_hex_encode(sig, sizeof(sig), ret_hex);
}

int
tx_sigv4_sign(const tx_aws_credentials_t *c, const char *region, const char *service, const char *method,
              const char *url, const char *content_type, const char *body, size_t body_len, int64_t now_unix,
              tg_arena_t *a, const char **ret_headers, size_t max_headers)
{
    if (c == NULL || c->access_key_id == NULL || c->secret_access_key == NULL || region == NULL || url == NULL)
        return -1;
    size_t needed = c->session_token != NULL ? 4 : 3;
    if (max_headers < needed)
        return -1;

    /* split the URL: scheme://authority/path?query#fragment */
    const char *sep = strstr(url, "://");
    if (sep == NULL)
        return -1;
    int https = (size_t)(sep - url) == 5 && strncasecmp(url, "https", 5) == 0;
    const char *auth = sep + 3, *auth_end = auth + strcspn(auth, "/?#");
    const char *at = memchr(auth, '@', (size_t)(auth_end - auth));
    if (at != NULL)
        auth = at + 1;
    if (auth == auth_end)
        return -1;
    /* drop the scheme's default port, as HTTP clients do in the Host header they send */
    const char *host_end = auth_end, *colon = NULL;
    for (const char *p = auth; p < auth_end; p++)
        if (*p == ':')
            colon = p;
        else if (*p == ']')
            colon = NULL;
    if (colon != NULL) {
        size_t plen = (size_t)(auth_end - colon - 1);
        if ((plen == 3 && https && memcmp(colon + 1, "443", 3) == 0) ||
            (plen == 2 && !https && memcmp(colon + 1, "80", 2) == 0))
            host_end = colon;
    }
    char *host = tg_arena_strndup(a, auth, (size_t)(host_end - auth));
    const char *path_start = auth_end, *path_end = path_start + strcspn(path_start, "?#");
    char *path = *path_start == '/' ? tg_arena_strndup(a, path_start, (size_t)(path_end - path_start)) : "/";
    char *query = NULL;
    if (*path_end == '?')
        query = tg_arena_strndup(a, path_end + 1, strcspn(path_end + 1, "#"));
    if (host == NULL || path == NULL || (*path_end == '?' && query == NULL))
        return -1;

    char amz_date[17], date[9];
    time_t t = (time_t)now_unix;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm) != 16)
        return -1;
    memcpy(date, amz_date, 8);
    date[8] = '\0';

    uint8_t digest[TG_SHA256_LEN];
    char payload_hash[65];
    tg_sha256(body != NULL ? body : "", body != NULL ? body_len : 0, digest);
    tg_hex_encode(digest, sizeof(digest), payload_hash);

    tx_sigv4_header_t hs[5];
    size_t n = 0;
    if (content_type != NULL)
        hs[n++] = (tx_sigv4_header_t){"content-type", content_type};
    hs[n++] = (tx_sigv4_header_t){"host", host};
    hs[n++] = (tx_sigv4_header_t){"x-amz-content-sha256", payload_hash};
    hs[n++] = (tx_sigv4_header_t){"x-amz-date", amz_date};
    if (c->session_token != NULL)
        hs[n++] = (tx_sigv4_header_t){"x-amz-security-token", c->session_token};
    const char *signed_headers;
    char *creq = tx_sigv4_canonical_request(method, path, query, hs, n, payload_hash, a, &signed_headers);
    if (creq == NULL)
        return -1;
    char sig[65];
    tx_sigv4_signature(c->secret_access_key, amz_date, region, service, creq, sig);

    size_t out = 0;
    ret_headers[out++] = tg_arena_sprintf(a, "X-Amz-Date: %s", amz_date);
    ret_headers[out++] = tg_arena_sprintf(a, "X-Amz-Content-Sha256: %s", payload_hash);
    if (c->session_token != NULL)
        ret_headers[out++] = tg_arena_sprintf(a, "X-Amz-Security-Token: %s", c->session_token);
    ret_headers[out++] =
        tg_arena_sprintf(a,
                         "Authorization: AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, "
                         "Signature=%s",
                         c->access_key_id, date, region, service, signed_headers, sig);
    for (size_t i = 0; i < out; i++)
        if (ret_headers[i] == NULL)
            return -1;
    return (int)out;
}

static const char *
member(json_t *o, const char *a, const char *b, const char *c)
{
    const char *v = tx_json_str(o, a);
    if (v == NULL)
        v = tx_json_str(o, b);
    if (v == NULL)
        v = tx_json_str(o, c);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

int
tx_aws_credentials_parse(const char *secret_json, tg_arena_t *a, tx_aws_credentials_t *ret, tx_error_t *err)
{
    json_t *o = secret_json != NULL ? json_loads(secret_json, 0, NULL) : NULL;
    if (!json_is_object(o)) {
        json_decref(o);
        return tx_fail(err, TX_ERR_SERVER, "provider_misconfigured", NULL,
                       "The Bedrock account's key is not a JSON object of AWS credentials.");
    }
    const char *id = member(o, "access_key_id", "aws_access_key_id", "AccessKeyId");
    const char *secret = member(o, "secret_access_key", "aws_secret_access_key", "SecretAccessKey");
    const char *token = member(o, "session_token", "aws_session_token", "SessionToken");
    tx_aws_credentials_t c = {
        .access_key_id = id ? tg_arena_strdup(a, id) : NULL,
        .secret_access_key = secret ? tg_arena_strdup(a, secret) : NULL,
        .session_token = token ? tg_arena_strdup(a, token) : NULL,
    };
    json_decref(o);
    if (c.access_key_id == NULL || c.secret_access_key == NULL || (token != NULL && c.session_token == NULL))
        return tx_fail(err, TX_ERR_SERVER, "provider_misconfigured", NULL,
                       "The Bedrock account's key needs access_key_id and secret_access_key.");
    *ret = c;
    return 0;
}
