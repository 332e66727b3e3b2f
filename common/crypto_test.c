/* Unit tests for the crypto helpers: known SHA-256/HMAC vectors, AEAD round trip and tamper detection. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "tollgate/crypto.h"

static void
test_sha256_vector(void **state)
{
    uint8_t d[32];
    char hex[65];
    tg_sha256("abc", 3, d);
    tg_hex_encode(d, 32, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void
test_hmac_vector(void **state)
{
    /* RFC 4231 test case 2 */
    uint8_t mac[32];
    char hex[65];
    tg_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
    tg_hex_encode(mac, 32, hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void
test_hex_and_ct(void **state)
{
    uint8_t b[3];
    assert_int_equal(tg_hex_decode("0aFf10", 6, b, 3), 0);
    assert_int_equal(b[1], 0xff);
    assert_int_equal(tg_hex_decode("0aFg10", 6, b, 3), -1);
    assert_int_equal(tg_hex_decode("0a", 2, b, 3), -1);
    assert_true(tg_ct_streq("secret", "secret"));
    assert_false(tg_ct_streq("secret", "secreT"));
    assert_false(tg_ct_streq("secret", "secret2"));
    assert_false(tg_ct_streq("", "x"));
}

static void
test_bearer(void **state)
{
    (void)state;
    const char *ok = "Bearer s3cret", *lower = "bearer s3cret";
    assert_int_equal(tg_bearer_matches(ok, strlen(ok), "s3cret"), 1);
    assert_int_equal(tg_bearer_matches(lower, strlen(lower), "s3cret"), 1);
    /* a prefix, a longer token, another scheme, a value cut before the token's end */
    assert_int_equal(tg_bearer_matches(ok, strlen(ok), "s3cre"), 0);
    assert_int_equal(tg_bearer_matches(ok, strlen(ok), "s3crets"), 0);
    assert_int_equal(tg_bearer_matches("Basic s3cret", 12, "s3cret"), 0);
    assert_int_equal(tg_bearer_matches(ok, strlen(ok) - 1, "s3cret"), 0);
    assert_int_equal(tg_bearer_matches("Bearer ", 7, ""), 1);
}

static void
test_aead(void **state)
{
    uint8_t key[32] = {1, 2, 3}, other[32] = {4};
    const char *pt = "sk-provider-secret";
    size_t n = strlen(pt);
    uint8_t sealed[64], out[64];
    assert_int_equal(tg_aead_seal(key, "id-1", 4, pt, n, sealed), 0);
    assert_int_equal(tg_aead_open(key, "id-1", 4, sealed, n + TG_AEAD_OVERHEAD, out), (int)n);
    assert_memory_equal(out, pt, n);
    assert_int_equal(tg_aead_open(other, "id-1", 4, sealed, n + TG_AEAD_OVERHEAD, out), -1);
    assert_int_equal(tg_aead_open(key, "id-2", 4, sealed, n + TG_AEAD_OVERHEAD, out), -1);
    sealed[TG_AEAD_NONCE_LEN] ^= 1;
    assert_int_equal(tg_aead_open(key, "id-1", 4, sealed, n + TG_AEAD_OVERHEAD, out), -1);
    assert_int_equal(tg_aead_open(key, NULL, 0, sealed, 10, out), -1);
}

static int
cmp16(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

static void
test_random_ids(void **state)
{
    /* ids of odd sizes across many refills of the per-thread block: never a repeat, never the zeroed
     * bytes of a block already handed out */
    enum { N = 3000 };
    static uint8_t ids[N][16];
    static const uint8_t zero[16];
    uint8_t odd[7], big[5000];
    for (int i = 0; i < N; i++) {
        assert_int_equal(tg_random_ids(ids[i], 16), 0);
        assert_int_equal(tg_random_ids(odd, 1 + i % 7), 0);
        assert_memory_not_equal(ids[i], zero, 16);
    }
    qsort(ids, N, 16, cmp16);
    for (int i = 1; i < N; i++)
        assert_memory_not_equal(ids[i - 1], ids[i], 16);
    assert_int_equal(tg_random_ids(big, sizeof(big)), 0); /* larger than the block: straight from the CSPRNG */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vector), cmocka_unit_test(test_hmac_vector), cmocka_unit_test(test_hex_and_ct),
        cmocka_unit_test(test_bearer),        cmocka_unit_test(test_aead),        cmocka_unit_test(test_random_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
