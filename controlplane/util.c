/*
 * Pure helpers of the control plane (see util.h).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "util.h"

int
cp_uuid_valid(const char *s)
{
    if (s == NULL || strlen(s) != CP_UUID_LEN)
        return 0;
    for (int i = 0; i < CP_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!((s[i] >= '0' && s[i] <= '9') || ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'f'))) {
            /* not isxdigit(): no locale lookup, on the ingest path this runs several times per record */
            return 0;
        }
    }
    return 1;
}

int
cp_uuid_generate(char ret[CP_UUID_LEN + 1])
{
    uint8_t b[16];
    char hex[33];
    if (tg_random_bytes(b, sizeof(b)) != 0)
        return -1;
    b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
    b[8] = (b[8] & 0x3f) | 0x80; /* RFC 4122 variant */
    tg_hex_encode(b, sizeof(b), hex);
    snprintf(ret, CP_UUID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
    return 0;
}

int
cp_vkey_generate(char ret_key[CP_VKEY_LEN + 1], char ret_prefix[CP_VKEY_PREFIX_LEN + 1],
                 uint8_t ret_hash[TG_SHA256_LEN])
{
    uint8_t b[CP_VKEY_RANDOM_BYTES];
    if (tg_random_bytes(b, sizeof(b)) != 0)
        return -1;
    memcpy(ret_key, "tg-", 3);
    tg_hex_encode(b, sizeof(b), ret_key + 3);
    memcpy(ret_prefix, ret_key, CP_VKEY_PREFIX_LEN);
    ret_prefix[CP_VKEY_PREFIX_LEN] = '\0';
    tg_sha256(ret_key, CP_VKEY_LEN, ret_hash);
    return 0;
}

int
cp_admin_token_generate(char ret_token[CP_ADMIN_TOKEN_LEN + 1], char ret_prefix[CP_ADMIN_TOKEN_PREFIX_LEN + 1],
                        uint8_t ret_hash[TG_SHA256_LEN])
{
    uint8_t b[CP_VKEY_RANDOM_BYTES];
    if (tg_random_bytes(b, sizeof(b)) != 0)
        return -1;
    memcpy(ret_token, CP_ADMIN_TOKEN_PREFIX, 4);
    tg_hex_encode(b, sizeof(b), ret_token + 4);
    memcpy(ret_prefix, ret_token, CP_ADMIN_TOKEN_PREFIX_LEN);
    ret_prefix[CP_ADMIN_TOKEN_PREFIX_LEN] = '\0';
    tg_sha256(ret_token, CP_ADMIN_TOKEN_LEN, ret_hash);
    explicit_bzero(b, sizeof(b));
    return 0;
}

int
cp_usd_parse(const char *text, int64_t *ret_nano)
{
    const char *p = text;
    int64_t whole = 0, frac = 0;
    int wdigits = 0, fdigits = 0;
    while (*p >= '0' && *p <= '9') {
        if (whole > CP_USD_MAX_NANO / 1000000000LL)
            return -1;
        whole = whole * 10 + (*p++ - '0');
        wdigits++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (fdigits < 9)
                frac = frac * 10 + (*p - '0');
            else if (*p != '0')
                return -1; /* below one nano-USD: refuse rather than round */
            fdigits++;
            p++;
        }
        if (fdigits == 0)
            return -1;
    }
    if (*p != '\0' || wdigits == 0)
        return -1;
    for (int i = fdigits; i < 9; i++)
        frac *= 10;
    if (whole > CP_USD_MAX_NANO / 1000000000LL)
        return -1;
    int64_t nano = whole * 1000000000LL + frac;
    if (nano > CP_USD_MAX_NANO)
        return -1;
    *ret_nano = nano;
    return 0;
}

int
cp_usd_from_json(const json_t *v, int64_t *ret_nano)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || i > CP_USD_MAX_NANO / 1000000000LL)
            return -1;
        *ret_nano = (int64_t)i * 1000000000LL;
        return 0;
    }
    if (!json_is_real(v) && !json_is_string(v))
        return -1;
    if (json_is_string(v) && strlen(json_string_value(v)) != json_string_length(v))
        return -1;
    char text[64];
    if (cp_decimal_from_json(v, text, sizeof(text)) != 0)
        return -1;
    return cp_usd_parse(text, ret_nano);
}

void
cp_usd_format(int64_t nano, char ret[32])
{
    if (nano < 0)
        nano = 0;
    int n = snprintf(ret, 32, "%lld.%09lld", (long long)(nano / 1000000000LL), (long long)(nano % 1000000000LL));
    while (n > 0 && ret[n - 1] == '0')
        ret[--n] = '\0';
    if (n > 0 && ret[n - 1] == '.')
        ret[--n] = '\0';
}

void
cp_mask_secret(const char *secret, char *ret, size_t retsz)
{
    size_t len = strlen(secret);
    if (len < 8)
        snprintf(ret, retsz, "\xe2\x80\xa6");
    else
        snprintf(ret, retsz, "%.3s\xe2\x80\xa6%s", secret, secret + len - 4);
}

static int
valid_decimal_text(const char *s)
{
    /* digits [ "." digits ], no sign, no exponent: what a numeric column takes verbatim */
    size_t i = 0, int_digits = 0, frac_digits = 0;
    while (isdigit((unsigned char)s[i])) {
        i++;
        int_digits++;
    }
    if (s[i] == '.') {
        i++;
        while (isdigit((unsigned char)s[i])) {
            i++;
            frac_digits++;
        }
        if (frac_digits == 0)
            return 0;
    }
    return s[i] == '\0' && int_digits > 0 && int_digits <= 30 && frac_digits <= 30;
}

int
cp_decimal_from_json(const json_t *v, char *ret, size_t retsz)
{
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0)
            return -1;
        snprintf(ret, retsz, "%lld", (long long)json_integer_value(v));
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d < 0)
            return -1;
        /* Shortest %g that round-trips, then expanded to plain notation if it used an exponent. */
        char tmp[64];
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
            if (strtod(tmp, NULL) == d)
                break;
        }
        if (strchr(tmp, 'e') != NULL) {
            /* Rare (very small or large); 12 places is below the column's 9-place scale anyway. */
            snprintf(tmp, sizeof(tmp), "%.12f", d);
        }
        if (strlen(tmp) + 1 > retsz || !valid_decimal_text(tmp))
            return -1;
        strcpy(ret, tmp);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strlen(s) + 1 > retsz || !valid_decimal_text(s))
            return -1;
        strcpy(ret, s);
        return 0;
    }
    return -1;
}

void
cp_format_rfc3339(int64_t unix_ms, char ret[32])
{
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ret, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
