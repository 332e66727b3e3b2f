/*
 * Vertex AI service-account authentication, as pure functions the request pipeline drives: build the
 * OAuth 2.0 JWT-bearer token request (RFC 7523) from Google's service-account JSON key, and read the
 * token endpoint's answer. The pipeline does the HTTP exchange and caches the token until shortly
 * before it expires; nothing here does I/O or reads a clock (the caller passes now).
 */
#ifndef DP_TX_VERTEX_AUTH_H
#define DP_TX_VERTEX_AUTH_H

#include <stdint.h>
#include "translate/tx.h"

#define TX_VERTEX_SCOPE             "https://www.googleapis.com/auth/cloud-platform"
#define TX_VERTEX_DEFAULT_TOKEN_URI "https://oauth2.googleapis.com/token"
#define TX_VERTEX_TOKEN_LIFETIME    3600

/*
 * The token request for a service account: *ret_url is the key's token_uri (Google's default when the key
 * has none) and *ret_form_body the application/x-www-form-urlencoded body
 * grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=<JWT>, the JWT signed RS256
 * with the key's private_key and claiming iss=client_email, scope=cloud-platform, aud=token_uri,
 * iat=now_unix, exp=now_unix+3600. Both strings live in a. 0, or -1 with err filled (a bad key is
 * TX_ERR_SERVER "provider_misconfigured": the gateway's configuration, not the client, is at fault).
 */
int tx_vertex_token_request(const char *service_account_json, int64_t now_unix, tg_arena_t *a, const char **ret_url,
                            const char **ret_form_body, tx_error_t *err);

/*
 * The token endpoint's 200 body ({"access_token","expires_in","token_type"}): the token (in a) and its
 * lifetime in seconds. An error body ({"error","error_description"}) or anything unreadable gives -1 with
 * err filled (TX_ERR_AUTHENTICATION for a refused grant, TX_ERR_UPSTREAM otherwise).
 */
int tx_vertex_token_parse(const char *body, size_t len, tg_arena_t *a, const char **ret_token, int64_t *ret_expires_in,
                          tx_error_t *err);

#endif
