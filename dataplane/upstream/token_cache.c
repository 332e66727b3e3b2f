/* OAuth access token cache (see token_cache.h). Tokens are wiped from memory when replaced or cleared. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "upstream/token_cache.h"

typedef struct entry {
    char key_id[64];
    char token[DP_TOKEN_MAX];
    int64_t expires_unix;
} entry_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static entry_t *entries;
static size_t n_entries;

int
dp_token_cache_get(const char *key_id, int64_t now_unix, int64_t margin_s, char *out, size_t cap)
{
    int rv = -1;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < n_entries; i++) {
        entry_t *e = &entries[i];
        if (strcmp(e->key_id, key_id) == 0) {
            if (e->expires_unix - margin_s > now_unix && strlen(e->token) < cap) {
                strcpy(out, e->token);
                rv = 0;
            }
            break;
        }
    }
    pthread_mutex_unlock(&mu);
    return rv;
}

void
dp_token_cache_put(const char *key_id, const char *token, int64_t expires_unix)
{
    if (strlen(token) >= DP_TOKEN_MAX || strlen(key_id) >= sizeof(entries[0].key_id))
        return;
    pthread_mutex_lock(&mu);
    entry_t *e = NULL;
    for (size_t i = 0; i < n_entries && e == NULL; i++)
        if (strcmp(entries[i].key_id, key_id) == 0)
            e = &entries[i];
    if (e == NULL) {
        if (entries == NULL)
            entries = calloc(DP_TOKEN_CACHE_MAX, sizeof(*entries));
        if (entries != NULL)
            e = &entries[n_entries < DP_TOKEN_CACHE_MAX ? n_entries++ : (size_t)(expires_unix % DP_TOKEN_CACHE_MAX)];
    }
    if (e != NULL) {
        explicit_bzero(e->token, sizeof(e->token));
        snprintf(e->key_id, sizeof(e->key_id), "%s", key_id);
        snprintf(e->token, sizeof(e->token), "%s", token);
        e->expires_unix = expires_unix;
    }
    pthread_mutex_unlock(&mu);
}

void
dp_token_cache_clear(void)
{
    pthread_mutex_lock(&mu);
    if (entries != NULL)
        explicit_bzero(entries, DP_TOKEN_CACHE_MAX * sizeof(*entries));
    free(entries);
    entries = NULL;
    n_entries = 0;
    pthread_mutex_unlock(&mu);
}
