/*
 * Process-wide cache of OAuth access tokens (Vertex AI service accounts), keyed by provider key id.
 * Workers read it on every Vertex request and write it after a token fetch; both are rare next to the
 * request rate, so one mutex is enough. Bounded: at most DP_TOKEN_CACHE_MAX keys.
 */
#ifndef DP_TOKEN_CACHE_H
#define DP_TOKEN_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define DP_TOKEN_CACHE_MAX 1024
#define DP_TOKEN_MAX       4096

/* Copies a token that stays valid for at least margin_s more seconds into out. 0 found, -1 not. */
int dp_token_cache_get(const char *key_id, int64_t now_unix, int64_t margin_s, char *out, size_t cap);
void dp_token_cache_put(const char *key_id, const char *token, int64_t expires_unix);
/* Forgets every token (at exit, so no secret outlives the process's use of it). */
void dp_token_cache_clear(void);

#endif
