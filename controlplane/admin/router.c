/*
 * Admin API routing (see router.h). Patterns are literal segments and '*' for one id segment.
 */
#include <stdio.h>
#include <string.h>
#include "tollgate/crypto.h"
#include "router.h"

#define G  CP_ROUTE_GLOBAL
#define W  CP_ROUTE_WRITE
#define B  CP_ROUTE_BODY
#define OB CP_ROUTE_OPT_BODY

static const struct {
    const char *method;
    const char *pattern;
    enum cp_admin_op op;
    unsigned flags;
} routes[] = {
    {"GET", "/healthz", CP_OP_HEALTHZ, 0},
    {"GET", "/readyz", CP_OP_READYZ, 0},
    {"POST", "/admin/v1/tenants", CP_OP_TENANT_CREATE, G | W | B},
    {"GET", "/admin/v1/tenants", CP_OP_TENANT_LIST, 0},
    {"GET", "/admin/v1/tenants/*", CP_OP_TENANT_GET, 0},
    {"PATCH", "/admin/v1/tenants/*", CP_OP_TENANT_UPDATE, W | B},
    {"DELETE", "/admin/v1/tenants/*", CP_OP_TENANT_DELETE, G | W},
    {"POST", "/admin/v1/teams", CP_OP_TEAM_CREATE, W | B},
    {"GET", "/admin/v1/teams", CP_OP_TEAM_LIST, 0},
    {"GET", "/admin/v1/teams/*", CP_OP_TEAM_GET, 0},
    {"PATCH", "/admin/v1/teams/*", CP_OP_TEAM_UPDATE, W | B},
    {"DELETE", "/admin/v1/teams/*", CP_OP_TEAM_DELETE, W},
    {"POST", "/admin/v1/keys", CP_OP_KEY_CREATE, W | B},
    {"GET", "/admin/v1/keys", CP_OP_KEY_LIST, 0},
    {"GET", "/admin/v1/keys/*", CP_OP_KEY_GET, 0},
    {"PATCH", "/admin/v1/keys/*", CP_OP_KEY_UPDATE, W | B},
    {"DELETE", "/admin/v1/keys/*", CP_OP_KEY_DELETE, W},
    {"POST", "/admin/v1/keys/*/revoke", CP_OP_KEY_REVOKE, W | OB},
    {"POST", "/admin/v1/keys/*/rotate", CP_OP_KEY_ROTATE, W | OB},
    {"POST", "/admin/v1/budgets", CP_OP_BUDGET_CREATE, W | B},
    {"GET", "/admin/v1/budgets", CP_OP_BUDGET_LIST, 0},
    {"GET", "/admin/v1/budgets/*", CP_OP_BUDGET_GET, 0},
    {"PATCH", "/admin/v1/budgets/*", CP_OP_BUDGET_UPDATE, W | B},
    {"DELETE", "/admin/v1/budgets/*", CP_OP_BUDGET_DELETE, W},
    {"POST", "/admin/v1/rate-limits", CP_OP_LIMIT_CREATE, W | B},
    {"GET", "/admin/v1/rate-limits", CP_OP_LIMIT_LIST, 0},
    {"GET", "/admin/v1/rate-limits/*", CP_OP_LIMIT_GET, 0},
    {"PATCH", "/admin/v1/rate-limits/*", CP_OP_LIMIT_UPDATE, W | B},
    {"DELETE", "/admin/v1/rate-limits/*", CP_OP_LIMIT_DELETE, W},
    {"POST", "/admin/v1/admin-tokens", CP_OP_TOKEN_CREATE, W | B},
    {"GET", "/admin/v1/admin-tokens", CP_OP_TOKEN_LIST, 0},
    {"GET", "/admin/v1/admin-tokens/*", CP_OP_TOKEN_GET, 0},
    {"DELETE", "/admin/v1/admin-tokens/*", CP_OP_TOKEN_REVOKE, W},
    {"POST", "/admin/v1/admin-tokens/*/revoke", CP_OP_TOKEN_REVOKE, W | OB},
    {"GET", "/admin/v1/audit", CP_OP_AUDIT_LIST, 0},
    {"POST", "/admin/v1/providers", CP_OP_PROVIDER_CREATE, G | W | B},
    {"GET", "/admin/v1/providers", CP_OP_PROVIDER_LIST, G},
    {"GET", "/admin/v1/providers/*", CP_OP_PROVIDER_GET, G},
    {"POST", "/admin/v1/routes", CP_OP_ROUTE_CREATE, G | W | B},
    {"GET", "/admin/v1/routes", CP_OP_ROUTE_LIST, G},
    {"GET", "/admin/v1/routes/*", CP_OP_ROUTE_GET, G},
    {"DELETE", "/admin/v1/routes/*", CP_OP_ROUTE_DELETE, G | W},
    {"PUT", "/admin/v1/prices", CP_OP_PRICE_PUT, G | W | B},
    {"GET", "/admin/v1/prices", CP_OP_PRICE_LIST, G},
    {"GET", "/admin/v1/usage", CP_OP_USAGE, 0},
    {"GET", "/admin/v1/usage/report", CP_OP_USAGE_REPORT, 0},
    {"GET", "/admin/v1/snapshot", CP_OP_SNAPSHOT, G},
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
            ret->flags = routes[i].flags;
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
