/*
 * Admin API request routing and query-string parsing: pure functions of the method, path and query,
 * unit tested in router_test.c. The table in router.c is the admin API's list of endpoints
 * (docs/api.md).
 */
#ifndef CP_ADMIN_ROUTER_H
#define CP_ADMIN_ROUTER_H

#include <stddef.h>

enum cp_admin_op {
    CP_OP_HEALTHZ,
    CP_OP_READYZ,
    CP_OP_TENANT_CREATE,
    CP_OP_TENANT_LIST,
    CP_OP_TENANT_GET,
    CP_OP_KEY_CREATE,
    CP_OP_KEY_LIST,
    CP_OP_KEY_GET,
    CP_OP_KEY_REVOKE,
    CP_OP_KEY_DELETE,
    CP_OP_PROVIDER_CREATE,
    CP_OP_PROVIDER_LIST,
    CP_OP_PROVIDER_GET,
    CP_OP_ROUTE_CREATE,
    CP_OP_ROUTE_LIST,
    CP_OP_ROUTE_GET,
    CP_OP_ROUTE_DELETE,
    CP_OP_PRICE_PUT,
    CP_OP_PRICE_LIST,
    CP_OP_USAGE,
    CP_OP_SNAPSHOT,
    CP_OP_TENANT_UPDATE,
    CP_OP_TENANT_DELETE,
    CP_OP_TEAM_CREATE,
    CP_OP_TEAM_LIST,
    CP_OP_TEAM_GET,
    CP_OP_TEAM_UPDATE,
    CP_OP_TEAM_DELETE,
    CP_OP_KEY_UPDATE,
    CP_OP_KEY_ROTATE,
    CP_OP_BUDGET_CREATE,
    CP_OP_BUDGET_LIST,
    CP_OP_BUDGET_GET,
    CP_OP_BUDGET_UPDATE,
    CP_OP_BUDGET_DELETE,
    CP_OP_LIMIT_CREATE,
    CP_OP_LIMIT_LIST,
    CP_OP_LIMIT_GET,
    CP_OP_LIMIT_UPDATE,
    CP_OP_LIMIT_DELETE,
    CP_OP_TOKEN_CREATE,
    CP_OP_TOKEN_LIST,
    CP_OP_TOKEN_GET,
    CP_OP_TOKEN_REVOKE,
    CP_OP_AUDIT_LIST,
    CP_OP_USAGE_REPORT,
};

/* What an endpoint demands of its caller and its request (cp_route_match_t.flags). */
enum {
    CP_ROUTE_GLOBAL = 1 << 0,   /* only the global admin token (TOLLGATE_ADMIN_TOKEN) */
    CP_ROUTE_WRITE = 1 << 1,    /* a change: refused to viewer tokens, audited */
    CP_ROUTE_BODY = 1 << 2,     /* a JSON object body is required */
    CP_ROUTE_OPT_BODY = 1 << 3, /* a JSON object body is optional (empty = {}) */
};

#define CP_ROUTE_ID_MAX 64

typedef struct cp_route_match {
    enum cp_admin_op op;
    unsigned flags;               /* CP_ROUTE_* */
    char id[CP_ROUTE_ID_MAX + 1]; /* the {id} path segment, "" when the path has none */
    char allow[64];               /* for 405: the methods the path accepts, "GET, POST" */
} cp_route_match_t;

/*
 * Matches a request. 0 with ret->op set; 404 when no endpoint has this path; 405 when the path exists
 * for other methods (ret->allow lists them). One trailing slash is ignored.
 */
int cp_admin_route(const char *method, size_t mlen, const char *path, size_t plen, cp_route_match_t *ret);

/* 1 when `path` needs the admin token (everything under /admin/). */
int cp_admin_path_needs_auth(const char *path, size_t plen);

/*
 * Looks up `name` in a query string ("a=1&b=x%20y", no leading '?'), percent-decoding the value ('+' is
 * a space). 1 found (ret holds the value), 0 absent, -1 malformed escape, NUL byte or value too long.
 */
int cp_query_param(const char *q, size_t qlen, const char *name, char *ret, size_t retsz);

#endif
