/*
 * Vertex AI service-account tokens (see vertex_auth.h): a JWT signed RS256 through OpenSSL's EVP
 * interface, traded at the key's token_uri for an access token. RSA PKCS#1 v1.5 signing is
 * deterministic, so the same key, claims and time give the same bytes: the functions stay pure.
 */
#include <string.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include "translate/gemini/vertex_auth.h"

#define GRANT_TYPE "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"

/* base64url without padding (RFC 7515 §2), in a */
static char *
b64url(const void *data, size_t len, tg_arena_t *a)
{
    char *s = tx_base64_encode(data, len, a);
    if (s == NULL)
        return NULL;
    char *w = s;
    for (char *p = s; *p; p++) {
        if (*p == '=')
            break;
        *w++ = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    }
    *w = '\0';
    return s;
}

/* An encrypted key must fail, not prompt on a terminal the gateway does not have. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

/* RS256 over data with the PEM private key; the base64url signature in a, or NULL. */
static char *
sign_rs256(const char *pem, const char *data, size_t len, tg_arena_t *a)
{
    char *out = NULL;
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    EVP_MD_CTX *md = NULL;
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    if (key == NULL || EVP_PKEY_base_id(key) != EVP_PKEY_RSA)
        goto done;
    if ((md = EVP_MD_CTX_new()) == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, NULL, &sig_len, (const unsigned char *)data, len) != 1)
        goto done;
    if ((sig = OPENSSL_malloc(sig_len)) == NULL ||
        EVP_DigestSign(md, sig, &sig_len, (const unsigned char *)data, len) != 1)
        goto done;
    out = b64url(sig, sig_len, a);
done:
    OPENSSL_free(sig);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);
    BIO_free(bio);
    ERR_clear_error(); /* leave the thread's error queue as we found it */
    return out;
}

int
tx_vertex_token_request(const char *service_account_json, int64_t now_unix, tg_arena_t *a, const char **ret_url,
                        const char **ret_form_body, tx_error_t *err)
{
    if (service_account_json == NULL)
        return tx_fail(err, TX_ERR_SERVER, "provider_misconfigured", NULL,
                       "The Vertex AI provider account has no service-account key.");
    json_t *key = json_loads(service_account_json, 0, NULL);
    if (key == NULL || tx_arena_keep(a, key) != 0)
        return tx_fail(err, TX_ERR_SERVER, "provider_misconfigured", NULL,
                       "The Vertex AI service-account key is not JSON.");
    const char *email = tx_json_str(key, "client_email");
    const char *pem = tx_json_str(key, "private_key");
    const char *token_uri = tx_json_str(key, "token_uri");
    if (token_uri == NULL || token_uri[0] == '\0')
        token_uri = TX_VERTEX_DEFAULT_TOKEN_URI;
    if (email == NULL || pem == NULL)
        return tx_fail(err, TX_ERR_SERVER, "provider_misconfigured", NULL,
                       "The Vertex AI service-account key needs client_email and private_key.");

    static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    json_t *claims = json_pack("{sssssssIsI}", "iss", email, "scope", TX_VERTEX_SCOPE, "aud", token_uri, "iat",
                               (json_int_t)now_unix, "exp", (json_int_t)(now_unix + TX_VERTEX_TOKEN_LIFETIME));
    if (claims == NULL || tx_arena_keep(a, claims) != 0)
        return tx_fail(err, TX_ERR_SERVER, "provider_misconfigured", NULL,
                       "The Vertex AI service-account key's client_email is not valid.");
    size_t claims_len;
    const char *claims_text = tx_dump_json(claims, a, &claims_len);
    const char *h64 = b64url(header, sizeof(header) - 1, a);
    const char *c64 = claims_text ? b64url(claims_text, claims_len, a) : NULL;
    const char *input = h64 && c64 ? tg_arena_sprintf(a, "%s.%s", h64, c64) : NULL;
    if (input == NULL)
        return tx_fail(err, TX_ERR_SERVER, "out_of_memory", NULL, "The gateway ran out of memory.");
    const char *sig = sign_rs256(pem, input, strlen(input), a);
    if (sig == NULL)
        return tx_fail(err, TX_ERR_SERVER, "provider_misconfigured", NULL,
                       "The Vertex AI service-account private_key is not a usable unencrypted RSA key.");
    const char *form = tg_arena_sprintf(a, "grant_type=%s&assertion=%s.%s", GRANT_TYPE, input, sig);
    const char *url = tg_arena_strdup(a, token_uri);
    if (form == NULL || url == NULL)
        return tx_fail(err, TX_ERR_SERVER, "out_of_memory", NULL, "The gateway ran out of memory.");
    *ret_url = url;
    *ret_form_body = form;
    return 0;
}

int
tx_vertex_token_parse(const char *body, size_t len, tg_arena_t *a, const char **ret_token, int64_t *ret_expires_in,
                      tx_error_t *err)
{
    json_t *v = json_loadb(body, len, 0, NULL);
    if (v == NULL || tx_arena_keep(a, v) != 0)
        return tx_fail(err, TX_ERR_UPSTREAM, "invalid_token_response", NULL,
                       "Google's token endpoint answered something that is not JSON.");
    const char *error = tx_json_str(v, "error");
    if (error != NULL) {
        const char *desc = tx_json_str(v, "error_description");
        return tx_fail(err, TX_ERR_AUTHENTICATION, "vertex_token_refused", NULL,
                       "Google refused the Vertex AI service account's token request: %s%s%s.", error, desc ? ": " : "",
                       desc ? desc : "");
    }
    const char *token = tx_json_str(v, "access_token");
    if (token == NULL || token[0] == '\0')
        return tx_fail(err, TX_ERR_UPSTREAM, "invalid_token_response", NULL,
                       "Google's token endpoint answered without an access_token.");
    json_t *exp = json_object_get(v, "expires_in");
    int64_t expires_in = TX_VERTEX_TOKEN_LIFETIME;
    if (json_is_integer(exp) && json_integer_value(exp) > 0)
        expires_in = json_integer_value(exp);
    *ret_token = token;
    *ret_expires_in = expires_in;
    return 0;
}
