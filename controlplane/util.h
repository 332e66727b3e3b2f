/*
 * Small pure helpers of the control plane: UUIDs, virtual-key generation, secret masking, exact
 * decimal text from JSON numbers, RFC 3339 formatting. No I/O and no global state, so they are unit
 * tested in util_test.c.
 */
#ifndef CP_UTIL_H
#define CP_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "tollgate/crypto.h"

#define CP_UUID_LEN 36
/* "tg-" + 48 lower-case hex characters. */
#define CP_VKEY_RANDOM_BYTES 24
#define CP_VKEY_LEN          (3 + 2 * CP_VKEY_RANDOM_BYTES)
/* "tg-" + the first 8 hex characters. */
#define CP_VKEY_PREFIX_LEN 11

/* 1 when `s` is a canonical 8-4-4-4-12 hex UUID (either case), else 0. */
int cp_uuid_valid(const char *s);

/* A random version-4 UUID in lower case. 0 or -1 (no randomness). */
int cp_uuid_generate(char ret[CP_UUID_LEN + 1]);

/*
 * A new virtual key: the plaintext, its display prefix and the SHA-256 of the full plaintext (what the
 * database and snapshots keep). 0 or -1.
 */
int cp_vkey_generate(char ret_key[CP_VKEY_LEN + 1], char ret_prefix[CP_VKEY_PREFIX_LEN + 1],
                     uint8_t ret_hash[TG_SHA256_LEN]);

/* Tenant admin tokens: "tgt-" + 48 lower-case hex; the display prefix is the first 12 characters. */
#define CP_ADMIN_TOKEN_PREFIX     "tgt-"
#define CP_ADMIN_TOKEN_LEN        (4 + 2 * CP_VKEY_RANDOM_BYTES)
#define CP_ADMIN_TOKEN_PREFIX_LEN 12
int cp_admin_token_generate(char ret_token[CP_ADMIN_TOKEN_LEN + 1], char ret_prefix[CP_ADMIN_TOKEN_PREFIX_LEN + 1],
                            uint8_t ret_hash[TG_SHA256_LEN]);

/* The largest amount of money the API takes: one billion USD (fits nano-USD in a bigint with room). */
#define CP_USD_MAX_NANO 1000000000000000000LL

/*
 * Exact USD to integer nano-USD. `text` is plain decimal ("12", "0.15", "1.000000001"): digits, at most
 * one '.', at most 9 significant fractional digits (further digits must be zeros), no sign, no
 * exponent, at most CP_USD_MAX_NANO. 0 with *ret set, or -1 (ret untouched).
 */
int cp_usd_parse(const char *text, int64_t *ret_nano);
/* The same from a JSON number or string: integers exactly; reals through their shortest round-trip
 * decimal (so 0.1 is 100000000 nano-USD, not 99999999.99...); strings as cp_usd_parse. 0 or -1. */
int cp_usd_from_json(const json_t *v, int64_t *ret_nano);
/* "12.5", "0.000000001", "0": the shortest exact decimal of a non-negative nano-USD amount. */
void cp_usd_format(int64_t nano, char ret[32]);

/* "sk-…abcd": the first 3 and last 4 bytes of a secret; "…" alone for secrets shorter than 8 bytes. */
void cp_mask_secret(const char *secret, char *ret, size_t retsz);

/*
 * A non-negative decimal from a JSON number or a JSON string ("0.15"), as plain decimal text fit for a
 * numeric parameter. Reals are written with the fewest significant digits that read back to the same
 * double, so 0.15 gives "0.15" and not "0.14999999999999999". 0, or -1 when invalid or negative.
 */
int cp_decimal_from_json(const json_t *v, char *ret, size_t retsz);

/* "2026-11-21T20:30:00Z" for a Unix time in milliseconds. */
void cp_format_rfc3339(int64_t unix_ms, char ret[32]);

#endif
