/*
 * Authentication: the virtual key comes as `Authorization: Bearer <key>` (OpenAI SDKs), as
 * `x-api-key: <key>` (Anthropic SDKs), or as `x-goog-api-key: <key>` or `?key=<key>` (Google SDKs). It is hashed with
 * SHA-256 and looked up in the snapshot, which never holds plaintext keys. Expired keys are refused here as well as
 * dropped by the control plane, so expiry takes effect on time even between snapshots.
 */
#include <string.h>
#include <strings.h>
#include "ingress/ingress.h"
#include "tollgate/clock.h"
#include "tollgate/crypto.h"
#include "tollgate/env.h"

static h2o_iovec_t
presented_key(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i >= 0) {
        h2o_iovec_t v = req->headers.entries[i].value;
        if (v.len > 7 && strncasecmp(v.base, "Bearer ", 7) == 0) {
            h2o_iovec_t k = h2o_iovec_init(v.base + 7, v.len - 7);
            while (k.len > 0 && k.base[0] == ' ') {
                k.base++;
                k.len--;
            }
            return k;
        }
    }
    if ((i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-api-key"), -1)) >= 0)
        return req->headers.entries[i].value;
    if ((i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-goog-api-key"), -1)) >= 0)
        return req->headers.entries[i].value;
    if (req->query_at != SIZE_MAX) {
        /* ?key=... (Gemini's other form); the key is URL-safe base64-ish, taken as it is */
        const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
        while (q < end) {
            const char *amp = memchr(q, '&', (size_t)(end - q));
            const char *stop = amp != NULL ? amp : end;
            if (stop - q > 4 && memcmp(q, "key=", 4) == 0)
                return h2o_iovec_init(q + 4, (size_t)(stop - q - 4));
            q = stop + 1;
        }
    }
    return h2o_iovec_init(NULL, 0);
}

static const dp_vkey_t *
authenticate(h2o_req_t *req, tx_dialect_t dialect, const dp_snapshot_t *s)
{
    h2o_iovec_t k = presented_key(req);
    if (k.len == 0) {
        dp_send_error(req, dialect, 401, "missing_api_key", NULL,
                      "You didn't provide an API key. Send it as 'Authorization: Bearer <key>', 'x-api-key: <key>' "
                      "or 'x-goog-api-key: <key>'.");
        return NULL;
    }
    uint8_t hash[TG_SHA256_LEN];
    tg_sha256(k.base, k.len, hash);
    const dp_vkey_t *key = dp_snapshot_find_key(s, hash);
    if (key == NULL || (key->expires_at_unix_ms != 0 && key->expires_at_unix_ms <= tg_clock_now_ms())) {
        dp_send_error(req, dialect, 401, "invalid_api_key", NULL,
                      "Incorrect API key provided, or the key was revoked or has expired.");
        return NULL;
    }
    return key;
}

const dp_vkey_t *
dp_admit(h2o_req_t *req, dp_worker_t *w, tx_dialect_t dialect, dp_snapshot_t **ret_snapshot)
{
    dp_snapshot_t *s = dp_worker_snapshot(w);
    if (s == NULL) {
        dp_send_error(req, dialect, 503, "not_ready", NULL, "The gateway has no configuration yet.");
        return NULL;
    }
    *ret_snapshot = s;
    return authenticate(req, dialect, s);
}
