/*
 * Validating JSON scanner over spans (see tollgate/json_scan.h).
 *
 * skip_value() is the whole grammar: it consumes one value starting at p and returns the first byte
 * after it, or NULL when the text is not JSON. Recursion depth is bounded by TG_JSON_MAX_DEPTH, so a
 * hostile body cannot exhaust the stack.
 *
 * Strings are most of the bytes of an LLM request or response, so the inside of a string is searched
 * 16 bytes at a time (SSE2, the x86-64 baseline) or 8 at a time (SWAR on a uint64_t, little-endian
 * elsewhere) for the only bytes that matter there: '"', '\\' and control bytes (< 0x20). The scanner
 * does not validate UTF-8 (bytes >= 0x80 are plain string content, as before): h2o and the clients'
 * own parsers judge encodings; this scanner judges structure.
 */
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__) && !defined(TG_JSON_SCAN_NO_SIMD)
#include <emmintrin.h>
#endif
#include "tollgate/crypto.h"
#include "tollgate/json_scan.h"

static const char *skip_value(const char *p, const char *end, int depth, tg_json_type_t *ret_type);

static const char *
skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* The first '"', '\\' or byte below 0x20 in [p, end), or end. Reads only inside [p, end). */
static inline const char *
find_special(const char *p, const char *end)
{
#if defined(__SSE2__) && !defined(TG_JSON_SCAN_NO_SIMD)
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), ctl = _mm_set1_epi8(0x1f);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* unsigned v <= 0x1f  <=>  max(v, 0x1f) == 0x1f (SSE2 has no unsigned compare) */
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                   _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (mask != 0)
            return p + __builtin_ctz(mask);
        p += 16;
    }
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && !defined(TG_JSON_SCAN_NO_SWAR)
    /* SWAR: a byte b of x is flagged in (x - 0x01..) & ~x & 0x80.. when b == 0; lower bytes' borrows only
     * reach bytes above a true hit, so the lowest flagged byte is exact (little-endian: lowest = first) */
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    /* (after SSE2: the last 8..15 bytes of the text) */
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        uint64_t xq = w ^ (ones * '"'), xb = w ^ (ones * '\\');
        uint64_t hit = ((xq - ones) & ~xq) | ((xb - ones) & ~xb) | ((w - ones * 0x20) & ~w);
        hit &= highs;
        if (hit != 0)
            return p + (__builtin_ctzll(hit) >> 3);
        p += 8;
    }
#endif
    while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
        p++;
    return p;
}

static int
is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static const char *
skip_string(const char *p, const char *end)
{
    /* p is at the opening quote */
    p++;
    while (p < end) {
        const char *q = find_special(p, end);
        if (q == end)
            return NULL;
        if (*q == '"')
            return q + 1;
        if ((unsigned char)*q < 0x20)
            return NULL;
        /* backslash */
        if (q + 1 >= end)
            return NULL;
        switch (q[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            p = q + 2;
            break;
        case 'u':
            if (end - q < 6 || !is_hex(q[2]) || !is_hex(q[3]) || !is_hex(q[4]) || !is_hex(q[5]))
                return NULL;
            p = q + 6;
            break;
        default:
            return NULL;
        }
    }
    return NULL;
}

static const char *
skip_digits(const char *p, const char *end)
{
    const char *start = p;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    return p == start ? NULL : p;
}

static const char *
skip_number(const char *p, const char *end)
{
    if (p < end && *p == '-')
        p++;
    if (p >= end)
        return NULL;
    if (*p == '0') {
        p++;
    } else if ((p = skip_digits(p, end)) == NULL) {
        return NULL;
    }
    if (p < end && *p == '.') {
        if ((p = skip_digits(p + 1, end)) == NULL)
            return NULL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if ((p = skip_digits(p, end)) == NULL)
            return NULL;
    }
    return p;
}

static const char *
skip_literal(const char *p, const char *end, const char *lit, size_t len)
{
    return (size_t)(end - p) >= len && memcmp(p, lit, len) == 0 ? p + len : NULL;
}

static const char *
skip_container(const char *p, const char *end, int depth, int is_object)
{
    char close = is_object ? '}' : ']';
    tg_json_type_t type;
    if (depth >= TG_JSON_MAX_DEPTH)
        return NULL;
    p = skip_ws(p + 1, end);
    if (p < end && *p == close)
        return p + 1;
    for (;;) {
        if (is_object) {
            if (p >= end || *p != '"' || (p = skip_string(p, end)) == NULL)
                return NULL;
            p = skip_ws(p, end);
            if (p >= end || *p != ':')
                return NULL;
            p = skip_ws(p + 1, end);
        }
        if ((p = skip_value(p, end, depth + 1, &type)) == NULL)
            return NULL;
        p = skip_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == close)
            return p + 1;
        if (*p != ',')
            return NULL;
        p = skip_ws(p + 1, end);
    }
}

static const char *
skip_value(const char *p, const char *end, int depth, tg_json_type_t *ret_type)
{
    if (p >= end)
        return NULL;
    switch (*p) {
    case '{':
        *ret_type = TG_JSON_OBJECT;
        return skip_container(p, end, depth, 1);
    case '[':
        *ret_type = TG_JSON_ARRAY;
        return skip_container(p, end, depth, 0);
    case '"':
        *ret_type = TG_JSON_STRING;
        return skip_string(p, end);
    case 't':
        *ret_type = TG_JSON_TRUE;
        return skip_literal(p, end, "true", 4);
    case 'f':
        *ret_type = TG_JSON_FALSE;
        return skip_literal(p, end, "false", 5);
    case 'n':
        *ret_type = TG_JSON_NULL;
        return skip_literal(p, end, "null", 4);
    default:
        *ret_type = TG_JSON_NUMBER;
        return skip_number(p, end);
    }
}

int
tg_json_parse(const char *s, size_t len, tg_json_span_t *ret_value)
{
    const char *end = s + len, *p = skip_ws(s, end), *q;
    tg_json_type_t type;
    if ((q = skip_value(p, end, 0, &type)) == NULL)
        return -1;
    if (skip_ws(q, end) != end)
        return -1;
    ret_value->p = p;
    ret_value->len = q - p;
    ret_value->type = type;
    return 0;
}

int
tg_json_iter_init(tg_json_iter_t *it, tg_json_span_t container)
{
    if (container.type != TG_JSON_OBJECT && container.type != TG_JSON_ARRAY)
        return -1;
    it->start = container.p;
    it->p = container.p + 1;
    it->end = container.p + container.len;
    it->depth = 1;
    it->first = 1;
    return 0;
}

int
tg_json_iter_init_text(tg_json_iter_t *it, const char *s, size_t len, tg_json_type_t *ret_type)
{
    const char *end = s + len, *p = skip_ws(s, end);
    if (p >= end || (*p != '{' && *p != '['))
        return -1;
    *ret_type = *p == '{' ? TG_JSON_OBJECT : TG_JSON_ARRAY;
    it->start = p;
    it->p = p + 1;
    it->end = end;
    it->depth = 1;
    it->first = 1;
    return 0;
}

int
tg_json_iter_finish(tg_json_iter_t *it, tg_json_span_t *ret_container)
{
    /* the last *_next stopped on the closing bracket */
    if (it->p >= it->end || skip_ws(it->p + 1, it->end) != it->end)
        return -1;
    ret_container->p = it->start;
    ret_container->len = it->p + 1 - it->start;
    ret_container->type = *it->start == '{' ? TG_JSON_OBJECT : TG_JSON_ARRAY;
    return 0;
}

/* Steps to the next element: handles the separator or the closing bracket. 1 more, 0 end, -1 invalid. */
static int
iter_advance(tg_json_iter_t *it, char close)
{
    it->p = skip_ws(it->p, it->end);
    if (it->p >= it->end)
        return -1;
    if (*it->p == close)
        return 0;
    if (!it->first) {
        if (*it->p != ',')
            return -1;
        it->p = skip_ws(it->p + 1, it->end);
        if (it->p >= it->end)
            return -1; /* text cut after a ',': the caller must not look at *it->p */
    }
    it->first = 0;
    return 1;
}

static int
iter_value(tg_json_iter_t *it, tg_json_span_t *ret_value)
{
    const char *start = it->p, *q;
    tg_json_type_t type;
    if ((q = skip_value(start, it->end, it->depth, &type)) == NULL)
        return -1;
    ret_value->p = start;
    ret_value->len = q - start;
    ret_value->type = type;
    it->p = q;
    return 1;
}

int
tg_json_object_next(tg_json_iter_t *it, tg_json_span_t *ret_key, tg_json_span_t *ret_value)
{
    int rv = iter_advance(it, '}');
    if (rv <= 0)
        return rv;
    const char *k = it->p, *q;
    if (*k != '"' || (q = skip_string(k, it->end)) == NULL)
        return -1;
    ret_key->p = k;
    ret_key->len = q - k;
    ret_key->type = TG_JSON_STRING;
    it->p = skip_ws(q, it->end);
    if (it->p >= it->end || *it->p != ':')
        return -1;
    it->p = skip_ws(it->p + 1, it->end);
    return iter_value(it, ret_value);
}

int
tg_json_array_next(tg_json_iter_t *it, tg_json_span_t *ret_value)
{
    int rv = iter_advance(it, ']');
    if (rv <= 0)
        return rv;
    return iter_value(it, ret_value);
}

int
tg_json_string_eq(tg_json_span_t s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.type != TG_JSON_STRING || s.len < 2)
        return 0;
    /* common case: no escapes, compare in place */
    if (s.len == n + 2 && memcmp(s.p + 1, lit, n) == 0)
        return 1;
    if (memchr(s.p, '\\', s.len) == NULL)
        return 0;
    char buf[256];
    size_t len;
    if (n >= sizeof(buf) || tg_json_string_decode(s, buf, sizeof(buf), &len) != 0)
        return 0;
    return len == n && memcmp(buf, lit, n) == 0;
}

int
tg_json_object_get(tg_json_span_t object, const char *key, tg_json_span_t *ret_value)
{
    tg_json_iter_t it;
    tg_json_span_t k, v;
    int rv;
    if (object.type != TG_JSON_OBJECT || tg_json_iter_init(&it, object) != 0)
        return -1;
    while ((rv = tg_json_object_next(&it, &k, &v)) == 1) {
        if (tg_json_string_eq(k, key)) {
            *ret_value = v;
            return 1;
        }
    }
    return rv;
}

static size_t
put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

int
tg_json_string_decode(tg_json_span_t s, char *out, size_t cap, size_t *ret_len)
{
    if (s.type != TG_JSON_STRING || s.len < 2)
        return -1;
    const char *p = s.p + 1, *end = s.p + s.len - 1;
    size_t n = 0;
    while (p < end) {
        if (*p != '\\') {
            if (n >= cap)
                return -1;
            out[n++] = *p++;
            continue;
        }
        char c = p[1], ch;
        p += 2;
        switch (c) {
        case 'b':
            ch = '\b';
            break;
        case 'f':
            ch = '\f';
            break;
        case 'n':
            ch = '\n';
            break;
        case 'r':
            ch = '\r';
            break;
        case 't':
            ch = '\t';
            break;
        case 'u': {
            uint32_t cp =
                tg_hex_value(p[0]) << 12 | tg_hex_value(p[1]) << 8 | tg_hex_value(p[2]) << 4 | tg_hex_value(p[3]);
            p += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                uint32_t lo =
                    tg_hex_value(p[2]) << 12 | tg_hex_value(p[3]) << 8 | tg_hex_value(p[4]) << 4 | tg_hex_value(p[5]);
                if (lo >= 0xdc00 && lo < 0xe000) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    p += 6;
                }
            }
            if (n + 4 > cap)
                return -1;
            n += put_utf8(out + n, cp);
            continue;
        }
        default:
            ch = c; /* " \ / */
            break;
        }
        if (n >= cap)
            return -1;
        out[n++] = ch;
    }
    *ret_len = n;
    return 0;
}

int
tg_json_to_int64(tg_json_span_t s, int64_t *ret)
{
    if (s.type != TG_JSON_NUMBER || s.len == 0 || s.len > 19)
        return -1;
    const char *p = s.p, *end = s.p + s.len;
    int neg = *p == '-';
    if (neg)
        p++;
    if (p == end)
        return -1;
    int64_t v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    *ret = neg ? -v : v;
    return 0;
}

int
tg_json_is_empty(tg_json_span_t s)
{
    if (s.type != TG_JSON_OBJECT && s.type != TG_JSON_ARRAY)
        return 0;
    const char *p = skip_ws(s.p + 1, s.p + s.len);
    return p == s.p + s.len - 1;
}

/* The first p in [p, end - 1) where p[0] p[1] is '"' and one of c0, c1, or "\\u"; NULL when none. */
static const char *
next_candidate(const char *p, const char *end, char c0, char c1)
{
#if defined(__SSE2__) && !defined(TG_JSON_SCAN_NO_SIMD)
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), f0 = _mm_set1_epi8(c0),
                  f1 = _mm_set1_epi8(c1), u = _mm_set1_epi8('u');
    while (end - p >= 17) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + 1));
        __m128i first = _mm_or_si128(_mm_cmpeq_epi8(b, f0), _mm_cmpeq_epi8(b, f1));
        __m128i hit = _mm_or_si128(_mm_and_si128(_mm_cmpeq_epi8(a, quote), first),
                                   _mm_and_si128(_mm_cmpeq_epi8(a, bslash), _mm_cmpeq_epi8(b, u)));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (mask != 0)
            return p + __builtin_ctz(mask);
        p += 16;
    }
#endif
    for (; end - p >= 2; p++)
        if ((p[0] == '"' && (p[1] == c0 || p[1] == c1)) || (p[0] == '\\' && p[1] == 'u'))
            return p;
    return NULL;
}

/* Whether `"name"`, whitespace, ':', whitespace, '{' starts at p. */
static int
member_with_object_at(const char *p, const char *end, const char *name)
{
    size_t n = strlen(name);
    if ((size_t)(end - p) < n + 2 || memcmp(p + 1, name, n) != 0 || p[n + 1] != '"')
        return 0;
    const char *q = skip_ws(p + n + 2, end);
    if (q >= end || *q != ':')
        return 0;
    q = skip_ws(q + 1, end);
    return q < end && *q == '{';
}

int
tg_json_may_have_object_member(const char *s, size_t len, const char *name, const char *name2)
{
    const char *p = s, *end = s + len;
    if (name[0] == '\0' || (name2 != NULL && name2[0] == '\0'))
        return 1;
    /* one pass for '"' + a first letter and for "\\u" (a key can spell a letter only with \u); glibc's
     * memmem costs more per call than this does for a whole stream chunk */
    while ((p = next_candidate(p, end, name[0], name2 != NULL ? name2[0] : name[0])) != NULL) {
        if (*p == '\\')
            return 1;
        /* a raw `"name"` is always a whole string token: no raw quote lives inside a string */
        if (member_with_object_at(p, end, name) || (name2 != NULL && member_with_object_at(p, end, name2)))
            return 1;
        p++;
    }
    return 0;
}

size_t
tg_json_quote(char *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    out[n++] = '"';
    for (size_t i = 0; i < len; i++) {
        /* runs of bytes that need no escape are copied whole */
        const char *run = s + i, *stop = find_special(run, s + len);
        if (stop > run) {
            memcpy(out + n, run, stop - run);
            n += stop - run;
            i += stop - run;
            if (i == len)
                break;
        }
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            out[n++] = '\\';
            out[n++] = '"';
            break;
        case '\\':
            out[n++] = '\\';
            out[n++] = '\\';
            break;
        case '\n':
            out[n++] = '\\';
            out[n++] = 'n';
            break;
        case '\r':
            out[n++] = '\\';
            out[n++] = 'r';
            break;
        case '\t':
            out[n++] = '\\';
            out[n++] = 't';
            break;
        default:
            if (c < 0x20) {
                memcpy(out + n, "\\u00", 4);
                out[n + 4] = hex[c >> 4];
                out[n + 5] = hex[c & 15];
                n += 6;
            } else {
                out[n++] = (char)c;
            }
        }
    }
    out[n++] = '"';
    return n;
}
