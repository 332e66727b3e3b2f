/* Unit tests for SigV4: AWS's published test-suite vectors (get-vanilla, post-vanilla), the IAM guide's
 * signing-key example, Bedrock's double-encoded path, the header set of tx_sigv4_sign and credentials. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "tollgate/crypto.h"
#include "translate/bedrock/sigv4.h"

#define SECRET     "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define EMPTY_HASH "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void
test_signing_key(void **state)
{
    uint8_t k[32];
    char hex[65];
    tx_sigv4_signing_key(SECRET, "20150830", "us-east-1", "iam", k);
    tg_hex_encode(k, 32, hex);
    assert_string_equal(hex, "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
}

static void
vanilla(const char *method, const char *expected)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_sigv4_header_t hs[] = {{"x-amz-date", "20150830T123600Z"}, {"host", "example.amazonaws.com"}};
    const char *signed_headers;
    char *creq = tx_sigv4_canonical_request(method, "/", NULL, hs, 2, EMPTY_HASH, &a, &signed_headers);
    assert_non_null(creq);
    assert_string_equal(signed_headers, "host;x-amz-date");
    char want[512];
    snprintf(want, sizeof(want),
             "%s\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n%s", method,
             EMPTY_HASH);
    assert_string_equal(creq, want);
    char sig[65];
    tx_sigv4_signature(SECRET, "20150830T123600Z", "us-east-1", "service", creq, sig);
    assert_string_equal(sig, expected);
    tg_arena_free(&a);
}

static void
test_get_vanilla(void **state)
{
    vanilla("GET", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

static void
test_post_vanilla(void **state)
{
    vanilla("POST", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

static void
test_canonical_path_and_query(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_sigv4_header_t hs[] = {{"host", "  h   a  "}};
    const char *sh;
    char *creq = tx_sigv4_canonical_request("POST", "/model/anthropic.claude-x-v1%3A0/converse", "b=2&a=%7e x&a=1&&",
                                            hs, 1, EMPTY_HASH, &a, &sh);
    assert_non_null(creq);
    /* the wire path's %3A is encoded again; the query is decoded, re-encoded and sorted; header values
     * are trimmed with inner runs of spaces folded */
    assert_string_equal(
        creq, "POST\n/model/anthropic.claude-x-v1%253A0/converse\na=1&a=~%20x&b=2\nhost:h a\n\nhost\n" EMPTY_HASH);
    tg_arena_free(&a);
}

/* tx_sigv4_sign: the header lines, and a signature that the step functions reproduce from them (which is
 * what the mock provider does to verify). */
static void
test_sign_headers(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_aws_credentials_t c = {"AKIDEXAMPLE", SECRET, NULL};
    const char *h[6];
    const char *body = "{\"messages\":[]}";
    int n = tx_sigv4_sign(&c, "us-west-2", "bedrock", "POST",
                          "http://127.0.0.1:8123/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
                          "application/json", body, strlen(body), 1440938160 /* 2015-08-30T12:36:00Z */, &a, h, 6);
    assert_int_equal(n, 3);
    assert_string_equal(h[0], "X-Amz-Date: 20150830T123600Z");
    uint8_t d[32];
    char hash[65];
    tg_sha256(body, strlen(body), d);
    tg_hex_encode(d, 32, hash);
    char want[128];
    snprintf(want, sizeof(want), "X-Amz-Content-Sha256: %s", hash);
    assert_string_equal(h[1], want);
    assert_non_null(strstr(h[2], "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-west-2/bedrock/"
                                 "aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, "
                                 "Signature="));

    tx_sigv4_header_t hs[] = {{"content-type", "application/json"},
                              {"host", "127.0.0.1:8123"},
                              {"x-amz-content-sha256", hash},
                              {"x-amz-date", "20150830T123600Z"}};
    const char *sh;
    char *creq = tx_sigv4_canonical_request("POST", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", NULL,
                                            hs, 4, hash, &a, &sh);
    char sig[65];
    tx_sigv4_signature(SECRET, "20150830T123600Z", "us-west-2", "bedrock", creq, sig);
    assert_string_equal(strstr(h[2], "Signature=") + 10, sig);

    /* a session token is sent and signed; the default port is left out of host */
    c.session_token = "TOKEN";
    n = tx_sigv4_sign(&c, "us-east-1", "bedrock", "POST",
                      "https://bedrock-runtime.us-east-1.amazonaws.com:443/model/m/converse", NULL, "", 0, 1440938160,
                      &a, h, 6);
    assert_int_equal(n, 4);
    assert_string_equal(h[2], "X-Amz-Security-Token: TOKEN");
    assert_non_null(strstr(h[3], "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"));
    tx_sigv4_header_t hs2[] = {{"host", "bedrock-runtime.us-east-1.amazonaws.com"},
                               {"x-amz-content-sha256", EMPTY_HASH},
                               {"x-amz-date", "20150830T123600Z"},
                               {"x-amz-security-token", "TOKEN"}};
    creq = tx_sigv4_canonical_request("POST", "/model/m/converse", NULL, hs2, 4, EMPTY_HASH, &a, &sh);
    tx_sigv4_signature(SECRET, "20150830T123600Z", "us-east-1", "bedrock", creq, sig);
    assert_string_equal(strstr(h[3], "Signature=") + 10, sig);

    /* too few slots, a bad URL */
    assert_int_equal(tx_sigv4_sign(&c, "us-east-1", "bedrock", "POST", "https://x/", NULL, "", 0, 0, &a, h, 3), -1);
    assert_int_equal(tx_sigv4_sign(&c, "us-east-1", "bedrock", "POST", "no-scheme", NULL, "", 0, 0, &a, h, 6), -1);
    tg_arena_free(&a);
}

static void
test_credentials(void **state)
{
    tg_arena_t a = TG_ARENA_INIT;
    tx_aws_credentials_t c;
    tx_error_t err = {0};
    assert_int_equal(tx_aws_credentials_parse("{\"access_key_id\":\"AK\",\"secret_access_key\":\"S\"}", &a, &c, &err),
                     0);
    assert_string_equal(c.access_key_id, "AK");
    assert_string_equal(c.secret_access_key, "S");
    assert_null(c.session_token);
    assert_int_equal(tx_aws_credentials_parse("{\"aws_access_key_id\":\"AK\",\"aws_secret_access_key\":\"S\","
                                              "\"aws_session_token\":\"T\"}",
                                              &a, &c, &err),
                     0);
    assert_string_equal(c.session_token, "T");
    assert_int_equal(tx_aws_credentials_parse("{\"access_key_id\":\"AK\"}", &a, &c, &err), -1);
    assert_int_equal(err.kind, TX_ERR_SERVER);
    assert_int_equal(tx_aws_credentials_parse("bedrock-api-key-abc", &a, &c, &err), -1);
    assert_int_equal(tx_aws_credentials_parse(NULL, &a, &c, &err), -1);
    tg_arena_free(&a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signing_key),  cmocka_unit_test(test_get_vanilla),
        cmocka_unit_test(test_post_vanilla), cmocka_unit_test(test_canonical_path_and_query),
        cmocka_unit_test(test_sign_headers), cmocka_unit_test(test_credentials),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
