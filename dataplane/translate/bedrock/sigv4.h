/*
 * AWS Signature Version 4 for Bedrock requests (shared/ref/providers.md §5.6), and the credentials a
 * Bedrock provider key holds. Pure: the caller passes the time; memory comes from its arena.
 */
#ifndef DP_TX_SIGV4_H
#define DP_TX_SIGV4_H

#include <stddef.h>
#include <stdint.h>
#include "translate/tx.h"

typedef struct tx_aws_credentials {
    const char *access_key_id, *secret_access_key, *session_token; /* session_token: NULL when none */
} tx_aws_credentials_t;

/*
 * Reads a provider secret {"access_key_id","secret_access_key","session_token"?} (the AWS spellings
 * "aws_access_key_id" etc. and "AccessKeyId"/"SecretAccessKey"/"SessionToken" are accepted too).
 * Returns 0, or -1 with err (a 500: the account is misconfigured) when it is not such an object.
 */
int tx_aws_credentials_parse(const char *secret_json, tg_arena_t *a, tx_aws_credentials_t *ret, tx_error_t *err);

/*
 * Signs one request. url is the exact URL sent (path already percent-encoded once, as on the wire);
 * content_type is the Content-Type sent (signed), or NULL when none is sent. Writes header lines
 * ("Name: value", arena strings) to ret_headers: X-Amz-Date, X-Amz-Content-Sha256, X-Amz-Security-Token
 * (with a session token) and Authorization. Signed headers: content-type, host (from the URL, with the
 * port when it is not the scheme's default), x-amz-content-sha256, x-amz-date, x-amz-security-token.
 * Returns how many lines were written, or -1 (bad URL, max_headers too small, out of memory).
 */
int tx_sigv4_sign(const tx_aws_credentials_t *c, const char *region, const char *service, const char *method,
                  const char *url, const char *content_type, const char *body, size_t body_len, int64_t now_unix,
                  tg_arena_t *a, const char **ret_headers, size_t max_headers);

/* ---- the steps, exposed for the test vectors and for the mock provider, which verifies signatures */

typedef struct tx_sigv4_header {
    const char *name; /* lower case */
    const char *value;
} tx_sigv4_header_t;

/* The canonical request: headers (any order; names lower case) are the signed ones; path is the wire
 * path (encoded once; it is encoded a second time here), query the raw query string without '?' (or
 * NULL); payload_hash the hex SHA-256 of the body. Also returns the signed-headers list. NULL when out
 * of memory. */
char *tx_sigv4_canonical_request(const char *method, const char *path, const char *query,
                                 const tx_sigv4_header_t *headers, size_t n_headers, const char *payload_hash,
                                 tg_arena_t *a, const char **ret_signed_headers);
/* kSigning for a date (YYYYMMDD), region and service. */
void tx_sigv4_signing_key(const char *secret, const char *date, const char *region, const char *service,
                          uint8_t ret_key[32]);
/* The hex signature (65 bytes with NUL) of a canonical request at amz_date (YYYYMMDDTHHMMSSZ). */
void tx_sigv4_signature(const char *secret, const char *amz_date, const char *region, const char *service,
                        const char *canonical_request, char ret_hex[65]);

#endif
