/*
 * Hashing, MACs, authenticated encryption and randomness, on OpenSSL 3 (keeping to the calls BoringSSL
 * also has). Used for virtual-key hashes, the signed control-plane channel, provider secrets sealed at
 * rest (master key) and in snapshots (a key derived from the cluster secret).
 */
#ifndef TOLLGATE_CRYPTO_H
#define TOLLGATE_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define TG_SHA256_LEN     32
#define TG_AEAD_KEY_LEN   32
#define TG_AEAD_NONCE_LEN 12
#define TG_AEAD_TAG_LEN   16
/* A sealed blob is nonce || ciphertext || tag. */
#define TG_AEAD_OVERHEAD (TG_AEAD_NONCE_LEN + TG_AEAD_TAG_LEN)

void tg_sha256(const void *data, size_t len, uint8_t ret_digest[TG_SHA256_LEN]);
void tg_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, uint8_t ret_mac[TG_SHA256_LEN]);
/* HMAC over the concatenation of two buffers, without copying them together. */
void tg_hmac_sha256_2(const void *key, size_t keylen, const void *a, size_t alen, const void *b, size_t blen,
                      uint8_t ret_mac[TG_SHA256_LEN]);
/* Derives a 32-byte key for one purpose from a secret: HMAC-SHA256(secret, label). */
void tg_derive_key(const void *secret, size_t secretlen, const char *label, uint8_t ret_key[TG_AEAD_KEY_LEN]);

/* Constant-time comparison: 1 when equal, 0 otherwise. */
int tg_ct_equal(const void *a, const void *b, size_t len);
/* Constant-time comparison of two NUL-terminated strings (the length may leak, the content does not). */
int tg_ct_streq(const char *a, const char *b);
/* 1 when an Authorization header value (not NUL-terminated) is "Bearer <token>" (scheme in any case),
 * comparing the token in constant time; 0 otherwise. */
int tg_bearer_matches(const char *value, size_t len, const char *token);

/* Cryptographically strong random bytes. 0 or -1. */
int tg_random_bytes(void *buf, size_t len);
/* Random bytes for identifiers (request, trace and span ids), from a per-thread block of the CSPRNG's
 * output: unpredictable, each byte used once, much cheaper per call. Not for keys or nonces (a forked
 * child would repeat its parent's block). 0 or -1. */
int tg_random_ids(void *buf, size_t len);

/* Lower-case hex; `out` holds 2 * len + 1 bytes. */
void tg_hex_encode(const uint8_t *in, size_t len, char *out);
/* The value of one hex digit, or -1. */
int tg_hex_value(char c);
/* Decodes exactly `outlen` bytes from 2 * outlen hex characters. 0 or -1. */
int tg_hex_decode(const char *in, size_t inlen, uint8_t *out, size_t outlen);

/*
 * AES-256-GCM with a random nonce. `out` holds ptlen + TG_AEAD_OVERHEAD bytes.
 * tg_aead_open writes inlen - TG_AEAD_OVERHEAD bytes and returns that length, or -1 when the blob is
 * malformed or was not sealed with this key and aad.
 */
int tg_aead_seal(const uint8_t key[TG_AEAD_KEY_LEN], const void *aad, size_t aadlen, const void *pt, size_t ptlen,
                 uint8_t *out);
int tg_aead_open(const uint8_t key[TG_AEAD_KEY_LEN], const void *aad, size_t aadlen, const uint8_t *in, size_t inlen,
                 uint8_t *out);

#endif
