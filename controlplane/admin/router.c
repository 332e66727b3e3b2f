/*
 * Admin API routing (see router.h). Patterns are literal segments and '*' for one id segment.
 */
#include <stdio.h>
#include <string.h>
#include "tollgate/crypto.h"
#include "router.h"

static const struct {
    const char *method;
    const char *pattern;
    enum cp_admin_op op;
} routes[] = {
    {"GET", "/healthz", CP_OP_HEALTHZ},
    {"GET", "/readyz", CP_OP_READYZ},
    {"POST", "/admin/v1/tenants", CP_OP_TENANT_CREATE},
    {"GET", "/admin/v1/tenants", CP_OP_TENANT_LIST},
    {"GET", "/admin/v1/tenants/*", CP_OP_TENANT_GET},
    {"POST", "/admin/v1/keys", CP_OP_KEY_CREATE},
    {"GET", "/admin/v1/keys", CP_OP_KEY_LIST},
    {"GET", "/admin/v1/keys/*", CP_OP_KEY_GET},
    {"DELETE", "/admin/v1/keys/*", CP_OP_KEY_DELETE},
    {"POST", "/admin/v1/keys/*/revoke", CP_OP_KEY_REVOKE},
    {"POST", "/admin/v1/providers", CP_OP_PROVIDER_CREATE},
    {"GET", "/admin/v1/providers", CP_OP_PROVIDER_LIST},
    {"GET", "/admin/v1/providers/*", CP_OP_PROVIDER_GET},
    {"POST", "/admin/v1/routes", CP_OP_ROUTE_CREATE},
    {"GET", "/admin/v1/routes", CP_OP_ROUTE_LIST},
    {"GET", "/admin/v1/routes/*", CP_OP_ROUTE_GET},
    {"DELETE", "/admin/v1/routes/*", CP_OP_ROUTE_DELETE},
    {"PUT", "/admin/v1/prices", CP_OP_PRICE_PUT},
    {"GET", "/admin/v1/prices", CP_OP_PRICE_LIST},
    {"GET", "/admin/v1/usage", CP_OP_USAGE},
    {"GET", "/admin/v1/snapshot", CP_OP_SNAPSHOT},
};

/* Matches `path` against `pattern`; the '*' segment is copied to `id`. 1 or 0. */
static int
match(const char *pattern, const char *path, size_t plen, char *id)
{
    const char *p = pattern, *s = path, *end = path + plen;
    id[0] = '\0';
    while (*p != '\0') {
        if (*p == '*') {
            const char *seg = s;
            while (s < end && *s != '/')
                s++;
            size_t len = s - seg;
            if (len == 0 || len > CP_ROUTE_ID_MAX || memchr(seg, '\0', len) != NULL)
                return 0;
            memcpy(id, seg, len);
            id[len] = '\0';
            p++;
        } else {
            if (s == end || *s != *p)
                return 0;
            s++;
            p++;
        }
    }
    return s == end;
}

int
cp_admin_route(const char *method, size_t mlen, const char *path, size_t plen, cp_route_match_t *ret)
{
    char id[CP_ROUTE_ID_MAX + 1];
    size_t allow_len = 0;
    ret->allow[0] = '\0';
    ret->id[0] = '\0';
    if (plen > 1 && path[plen - 1] == '/')
        plen--;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (!match(routes[i].pattern, path, plen, id))
            continue;
        if (strlen(routes[i].method) == mlen && memcmp(routes[i].method, method, mlen) == 0) {
            ret->op = routes[i].op;
            memcpy(ret->id, id, sizeof(id));
            return 0;
        }
        allow_len += snprintf(ret->allow + allow_len, sizeof(ret->allow) - allow_len, "%s%s", allow_len ? ", " : "",
                              routes[i].method);
        if (allow_len >= sizeof(ret->allow))
            allow_len = sizeof(ret->allow) - 1;
    }
    return allow_len > 0 ? 405 : 404;
}

int
cp_admin_path_needs_auth(const char *path, size_t plen)
{
    return plen >= 7 && memcmp(path, "/admin/", 7) == 0;
}

int
cp_query_param(const char *q, size_t qlen, const char *name, char *ret, size_t retsz)
{
    size_t nlen = strlen(name);
    const char *end = q + qlen;
    while (q < end) {
        const char *amp = memchr(q, '&', end - q);
        const char *pend = amp != NULL ? amp : end;
        const char *eq = memchr(q, '=', pend - q);
        const char *kend = eq != NULL ? eq : pend;
        if ((size_t)(kend - q) == nlen && memcmp(q, name, nlen) == 0) {
            const char *v = eq != NULL ? eq + 1 : pend;
            size_t o = 0;
            while (v < pend) {
                int c = (unsigned char)*v;
                if (c == '%') {
                    int hi, lo;
                    if (pend - v < 3 || (hi = tg_hex_value(v[1])) < 0 || (lo = tg_hex_value(v[2])) < 0)
                        return -1;
                    c = hi << 4 | lo;
                    v += 3;
                } else {
                    if (c == '+')
                        c = ' ';
                    v++;
                }
                if (c == 0 || o + 1 >= retsz)
                    return -1;
                ret[o++] = (char)c;
            }
            ret[o] = '\0';
            return 1;
        }
        q = pend + (amp != NULL);
    }
    return 0;
}
