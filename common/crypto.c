/*
 * OpenSSL-backed primitives (see tollgate/crypto.h). Everything here is stateless and thread safe;
 * EVP contexts are created per call, which costs well under a microsecond next to what they protect.
 */
#include <pthread.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/sha.h>
#include "tollgate/crypto.h"

/* OpenSSL 3 looks an algorithm up by name on every one-shot call (SHA256(), HMAC()); the lookup costs more
 * than hashing a key. Fetch once per process; the objects are immutable and shared by every thread. */
static EVP_MD *sha256_md;
static EVP_MAC *hmac_mac;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void
fetch_algorithms(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    hmac_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

void
tg_sha256(const void *data, size_t len, uint8_t ret_digest[TG_SHA256_LEN])
{
    pthread_once(&fetch_once, fetch_algorithms);
    if (sha256_md == NULL || EVP_Digest(data, len, ret_digest, NULL, sha256_md, NULL) != 1)
        SHA256(data, len, ret_digest);
}

void
tg_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, uint8_t ret_mac[TG_SHA256_LEN])
{
    unsigned int maclen = TG_SHA256_LEN;
    HMAC(EVP_sha256(), key, (int)keylen, data, len, ret_mac, &maclen);
}

void
tg_hmac_sha256_2(const void *key, size_t keylen, const void *a, size_t alen, const void *b, size_t blen,
                 uint8_t ret_mac[TG_SHA256_LEN])
{
    pthread_once(&fetch_once, fetch_algorithms);
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac_mac);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0), OSSL_PARAM_construct_end()};
    size_t outlen = 0;
    EVP_MAC_init(ctx, key, keylen, params);
    EVP_MAC_update(ctx, a, alen);
    if (blen > 0)
        EVP_MAC_update(ctx, b, blen);
    EVP_MAC_final(ctx, ret_mac, &outlen, TG_SHA256_LEN);
    EVP_MAC_CTX_free(ctx);
}

void
tg_derive_key(const void *secret, size_t secretlen, const char *label, uint8_t ret_key[TG_AEAD_KEY_LEN])
{
    tg_hmac_sha256(secret, secretlen, label, strlen(label), ret_key);
}

int
tg_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

int
tg_ct_streq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    /* Compare over the longer length so that a prefix match does not end early. */
    size_t n = la > lb ? la : lb;
    unsigned char diff = la != lb;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(i < la ? a[i] : 0) ^ (unsigned char)(i < lb ? b[i] : 0);
    return diff == 0;
}

int
tg_bearer_matches(const char *value, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    if (len != 7 + tlen || strncasecmp(value, "Bearer ", 7) != 0)
        return 0;
    return CRYPTO_memcmp(value + 7, token, tlen) == 0;
}

int
tg_random_bytes(void *buf, size_t len)
{
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

int
tg_random_ids(void *buf, size_t len)
{
    /* RAND_bytes costs ~4,500 instructions a call whatever the size (OpenSSL 3's DRBG locking and
     * reseed checks); ids take their bytes from a per-thread block of its output instead */
    static __thread uint8_t pool[4096]; /* ~100 requests of trace and span ids a refill */
    static __thread size_t left;
    uint8_t *out = buf;
    if (len > sizeof(pool))
        return tg_random_bytes(buf, len);
    while (len > 0) {
        if (left == 0) {
            if (RAND_bytes(pool, (int)sizeof(pool)) != 1)
                return -1;
            left = sizeof(pool);
        }
        size_t n = len < left ? len : left;
        memcpy(out, pool + sizeof(pool) - left, n);
        /* bytes handed out are not kept */
        memset(pool + sizeof(pool) - left, 0, n);
        left -= n;
        out += n;
        len -= n;
    }
    return 0;
}

void
tg_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

int
tg_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
tg_hex_decode(const char *in, size_t inlen, uint8_t *out, size_t outlen)
{
    if (inlen != 2 * outlen)
        return -1;
    for (size_t i = 0; i < outlen; i++) {
        int hi = tg_hex_value(in[2 * i]), lo = tg_hex_value(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int
tg_aead_seal(const uint8_t key[TG_AEAD_KEY_LEN], const void *aad, size_t aadlen, const void *pt, size_t ptlen,
             uint8_t *out)
{
    int ret = -1, len;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        return -1;
    uint8_t *nonce = out, *ct = out + TG_AEAD_NONCE_LEN, *tag = out + TG_AEAD_NONCE_LEN + ptlen;
    if (tg_random_bytes(nonce, TG_AEAD_NONCE_LEN) != 0)
        goto free_ctx;
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1)
        goto free_ctx;
    if (aadlen > 0 && EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)aadlen) != 1)
        goto free_ctx;
    if (EVP_EncryptUpdate(ctx, ct, &len, pt, (int)ptlen) != 1)
        goto free_ctx;
    if (EVP_EncryptFinal_ex(ctx, ct + len, &len) != 1)
        goto free_ctx;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TG_AEAD_TAG_LEN, tag) != 1)
        goto free_ctx;
    ret = 0;
free_ctx:
    EVP_CIPHER_CTX_free(ctx);
    return ret;
}

int
tg_aead_open(const uint8_t key[TG_AEAD_KEY_LEN], const void *aad, size_t aadlen, const uint8_t *in, size_t inlen,
             uint8_t *out)
{
    if (inlen < TG_AEAD_OVERHEAD)
        return -1;
    size_t ctlen = inlen - TG_AEAD_OVERHEAD;
    const uint8_t *nonce = in, *ct = in + TG_AEAD_NONCE_LEN, *tag = in + TG_AEAD_NONCE_LEN + ctlen;
    int ret = -1, len;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        return -1;
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1)
        goto free_ctx;
    if (aadlen > 0 && EVP_DecryptUpdate(ctx, NULL, &len, aad, (int)aadlen) != 1)
        goto free_ctx;
    if (EVP_DecryptUpdate(ctx, out, &len, ct, (int)ctlen) != 1)
        goto free_ctx;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TG_AEAD_TAG_LEN, (void *)tag) != 1)
        goto free_ctx;
    if (EVP_DecryptFinal_ex(ctx, out + len, &len) != 1)
        goto free_ctx;
    ret = (int)ctlen;
free_ctx:
    EVP_CIPHER_CTX_free(ctx);
    return ret;
}
