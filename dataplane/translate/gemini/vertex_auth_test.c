/* Unit tests for Vertex AI service-account tokens: a key made here, the JWT's signature and claims checked
 * with OpenSSL, and the token endpoint's answers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include "translate/gemini/vertex_auth.h"

static EVP_PKEY *key;
static char *key_pem;

static int
setup(void **state)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048), 1);
    assert_int_equal(EVP_PKEY_keygen(ctx, &key), 1);
    EVP_PKEY_CTX_free(ctx);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL), 1);
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    key_pem = strndup(p, (size_t)n);
    BIO_free(bio);
    return 0;
}

static int
teardown(void **state)
{
    EVP_PKEY_free(key);
    free(key_pem);
    return 0;
}

/* A service-account JSON key like Google's, around the test key. */
static char *
service_account(const char *token_uri)
{
    json_t *sa = json_pack("{ssssssssss}", "type", "service_account", "project_id", "my-proj", "private_key_id", "k1",
                           "private_key", key_pem, "client_email", "gw@my-proj.iam.gserviceaccount.com");
    if (token_uri != NULL)
        json_object_set_new(sa, "token_uri", json_string(token_uri));
    char *s = json_dumps(sa, 0);
    json_decref(sa);
    return s;
}

/* base64url without padding -> bytes (malloc'd, NUL-terminated). */
static unsigned char *
unb64url(const char *s, size_t len, size_t *ret_len)
{
    char *std = calloc(1, len + 4);
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        std[n++] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    while (n % 4)
        std[n++] = '=';
    unsigned char *out = malloc(n + 1);
    int m = EVP_DecodeBlock(out, (unsigned char *)std, (int)n);
    assert_true(m >= 0);
    size_t pad = 0;
    while (pad < 2 && n > pad && std[n - 1 - pad] == '=')
        pad++;
    free(std);
    *ret_len = (size_t)m - pad;
    out[*ret_len] = '\0';
    return out;
}

static void
test_token_request(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    char *sa = service_account("http://127.0.0.1:9/token");
    const char *url, *form;
    tx_error_t err;
    assert_int_equal(tx_vertex_token_request(sa, 1700000000, &a, &url, &form, &err), 0);
    free(sa);
    assert_string_equal(url, "http://127.0.0.1:9/token");
    const char *prefix = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=";
    assert_int_equal(strncmp(form, prefix, strlen(prefix)), 0);
    const char *jwt = form + strlen(prefix);
    const char *dot1 = strchr(jwt, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    assert_non_null(dot2);
    assert_null(strchr(dot2 + 1, '.'));
    assert_null(strpbrk(jwt, "+/= "));

    size_t hl, cl, sl;
    unsigned char *header = unb64url(jwt, (size_t)(dot1 - jwt), &hl);
    unsigned char *claims = unb64url(dot1 + 1, (size_t)(dot2 - dot1 - 1), &cl);
    unsigned char *sig = unb64url(dot2 + 1, strlen(dot2 + 1), &sl);
    assert_string_equal((char *)header, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
    json_t *c = json_loads((char *)claims, 0, NULL);
    assert_non_null(c);
    assert_string_equal(json_string_value(json_object_get(c, "iss")), "gw@my-proj.iam.gserviceaccount.com");
    assert_string_equal(json_string_value(json_object_get(c, "scope")), TX_VERTEX_SCOPE);
    assert_string_equal(json_string_value(json_object_get(c, "aud")), "http://127.0.0.1:9/token");
    assert_int_equal(json_integer_value(json_object_get(c, "iat")), 1700000000);
    assert_int_equal(json_integer_value(json_object_get(c, "exp")), 1700003600);
    json_decref(c);

    /* the signature verifies with the public half over "header.claims" */
    assert_int_equal(sl, 256);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestVerify(md, sig, sl, (const unsigned char *)jwt, (size_t)(dot2 - jwt)), 1);
    /* and not over anything else */
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_not_equal(EVP_DigestVerify(md, sig, sl, (const unsigned char *)jwt, (size_t)(dot2 - jwt) - 1), 1);
    EVP_MD_CTX_free(md);
    free(header);
    free(claims);
    free(sig);

    /* deterministic: same key, same time, same bytes; Google's token URI when the key names none */
    char *sa2 = service_account(NULL);
    const char *url2, *form2, *form3;
    assert_int_equal(tx_vertex_token_request(sa2, 1700000000, &a, &url2, &form2, &err), 0);
    assert_int_equal(tx_vertex_token_request(sa2, 1700000000, &a, &url2, &form3, &err), 0);
    free(sa2);
    assert_string_equal(url2, TX_VERTEX_DEFAULT_TOKEN_URI);
    assert_string_equal(form2, form3);
    tg_arena_free(&a);
}

static void
test_token_request_errors(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    const char *url = "unchanged", *form = "unchanged";
    tx_error_t err;
    static const char *const bad[] = {
        "not json",
        "{\"client_email\":\"x@y\"}",
        "{\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\\n\"}",
        "{\"client_email\":\"x@y\",\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE "
        "KEY-----\\n\"}",
        "{\"client_email\":\"x@y\",\"private_key\":\"garbage\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tx_vertex_token_request(bad[i], 1, &a, &url, &form, &err), -1);
        assert_int_equal(err.kind, TX_ERR_SERVER);
        assert_string_equal(err.code, "provider_misconfigured");
    }
    assert_int_equal(tx_vertex_token_request(NULL, 1, &a, &url, &form, &err), -1);
    assert_string_equal(url, "unchanged"); /* ret_ untouched on failure */
    assert_string_equal(form, "unchanged");

    /* an EC key is not RS256 material */
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    assert_non_null(ec);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, ec, NULL, NULL, 0, NULL, NULL);
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    json_t *sa = json_pack("{ssss%}", "client_email", "x@y", "private_key", p, (size_t)n);
    char *s = json_dumps(sa, 0);
    assert_int_equal(tx_vertex_token_request(s, 1, &a, &url, &form, &err), -1);
    free(s);
    json_decref(sa);
    BIO_free(bio);
    EVP_PKEY_free(ec);
    tg_arena_free(&a);
}

static void
test_token_parse(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    const char *token;
    int64_t exp;
    tx_error_t err;
    const char *ok = "{\"access_token\":\"ya29.mock-1\",\"expires_in\":3599,\"token_type\":\"Bearer\"}";
    assert_int_equal(tx_vertex_token_parse(ok, strlen(ok), &a, &token, &exp, &err), 0);
    assert_string_equal(token, "ya29.mock-1");
    assert_int_equal(exp, 3599);
    const char *noexp = "{\"access_token\":\"t\"}";
    assert_int_equal(tx_vertex_token_parse(noexp, strlen(noexp), &a, &token, &exp, &err), 0);
    assert_int_equal(exp, 3600);

    const char *refused = "{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT Signature.\"}";
    assert_int_equal(tx_vertex_token_parse(refused, strlen(refused), &a, &token, &exp, &err), -1);
    assert_int_equal(err.kind, TX_ERR_AUTHENTICATION);
    assert_non_null(strstr(err.message, "Invalid JWT Signature."));
    static const char *const bad[] = {"", "[1]", "{}", "{\"access_token\":\"\"}", "{\"access_token\":5}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tx_vertex_token_parse(bad[i], strlen(bad[i]), &a, &token, &exp, &err), -1);
        assert_int_equal(err.kind, TX_ERR_UPSTREAM);
    }
    tg_arena_free(&a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_request),
        cmocka_unit_test(test_token_request_errors),
        cmocka_unit_test(test_token_parse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
