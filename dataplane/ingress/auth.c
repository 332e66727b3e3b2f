/*
 * Authentication: the virtual key comes as `Authorization: Bearer <key>` (OpenAI SDKs) or as
 * `x-api-key: <key>` (Anthropic SDKs). It is hashed with SHA-256 and looked up in the snapshot, which
 * never holds plaintext keys. Expired keys are refused here as well as dropped by the control plane,
 * so expiry takes effect on time even between snapshots.
 */
#include <string.h>
#include <strings.h>
#include "ingress/ingress.h"
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
    return h2o_iovec_init(NULL, 0);
}

static const dp_vkey_t *
authenticate(h2o_req_t *req, const dp_snapshot_t *s)
{
    h2o_iovec_t k = presented_key(req);
    if (k.len == 0) {
        dp_send_error(req, 401, "authentication_error", "missing_api_key", NULL,
                      "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.");
        return NULL;
    }
    uint8_t hash[TG_SHA256_LEN];
    tg_sha256(k.base, k.len, hash);
    const dp_vkey_t *key = dp_snapshot_find_key(s, hash);
    if (key == NULL || (key->expires_at_unix_ms != 0 && key->expires_at_unix_ms <= tg_now_unix_ms())) {
        dp_send_error(req, 401, "authentication_error", "invalid_api_key", NULL,
                      "Incorrect API key provided, or the key was revoked or has expired.");
        return NULL;
    }
    return key;
}

const dp_vkey_t *
dp_admit(h2o_req_t *req, dp_worker_t *w, dp_snapshot_t **ret_snapshot)
{
    dp_snapshot_t *s = dp_worker_snapshot(w);
    if (s == NULL) {
        dp_send_error(req, 503, "server_error", "not_ready", NULL, "The gateway has no configuration yet.");
        return NULL;
    }
    *ret_snapshot = s;
    return authenticate(req, s);
}
