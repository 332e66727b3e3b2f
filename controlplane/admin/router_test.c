/* Unit tests for admin/router.c: endpoint matching, 404/405, auth scope, query parameters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include "router.h"

static int
route(const char *method, const char *path, cp_route_match_t *m)
{
    return cp_admin_route(method, strlen(method), path, strlen(path), m);
}

static void
test_matches(void **state)
{
    cp_route_match_t m;
    assert_int_equal(route("GET", "/healthz", &m), 0);
    assert_int_equal(m.op, CP_OP_HEALTHZ);
    assert_int_equal(route("POST", "/admin/v1/tenants", &m), 0);
    assert_int_equal(m.op, CP_OP_TENANT_CREATE);
    assert_string_equal(m.id, "");
    assert_int_equal(route("GET", "/admin/v1/tenants/", &m), 0);
    assert_int_equal(m.op, CP_OP_TENANT_LIST);
    assert_int_equal(route("GET", "/admin/v1/tenants/abc-123", &m), 0);
    assert_int_equal(m.op, CP_OP_TENANT_GET);
    assert_string_equal(m.id, "abc-123");
    assert_int_equal(route("POST", "/admin/v1/keys/k1/revoke", &m), 0);
    assert_int_equal(m.op, CP_OP_KEY_REVOKE);
    assert_string_equal(m.id, "k1");
    assert_int_equal(route("DELETE", "/admin/v1/keys/k1", &m), 0);
    assert_int_equal(m.op, CP_OP_KEY_DELETE);
    assert_int_equal(route("DELETE", "/admin/v1/routes/r1", &m), 0);
    assert_int_equal(m.op, CP_OP_ROUTE_DELETE);
    assert_int_equal(route("PUT", "/admin/v1/prices", &m), 0);
    assert_int_equal(m.op, CP_OP_PRICE_PUT);
    assert_int_equal(route("GET", "/admin/v1/usage", &m), 0);
    assert_int_equal(m.op, CP_OP_USAGE);
    assert_int_equal(route("GET", "/admin/v1/snapshot", &m), 0);
    assert_int_equal(m.op, CP_OP_SNAPSHOT);
}

/* The governance endpoints and the policy flags http.c enforces from them. */
static void
test_governance_routes(void **state)
{
    cp_route_match_t m;
    assert_int_equal(route("PATCH", "/admin/v1/keys/k1", &m), 0);
    assert_int_equal(m.op, CP_OP_KEY_UPDATE);
    assert_true(m.flags & CP_ROUTE_WRITE);
    assert_true(m.flags & CP_ROUTE_BODY);
    assert_int_equal(route("POST", "/admin/v1/keys/k1/rotate", &m), 0);
    assert_int_equal(m.op, CP_OP_KEY_ROTATE);
    assert_true(m.flags & CP_ROUTE_OPT_BODY);
    assert_string_equal(m.id, "k1");
    assert_int_equal(route("GET", "/admin/v1/usage/report", &m), 0);
    assert_int_equal(m.op, CP_OP_USAGE_REPORT);
    assert_int_equal(m.flags, 0);
    assert_int_equal(route("DELETE", "/admin/v1/admin-tokens/t", &m), 0);
    assert_int_equal(m.op, CP_OP_TOKEN_REVOKE);
    assert_int_equal(route("GET", "/admin/v1/rate-limits/x", &m), 0);
    assert_int_equal(m.op, CP_OP_LIMIT_GET);
    assert_int_equal(route("GET", "/admin/v1/audit", &m), 0);
    assert_int_equal(m.op, CP_OP_AUDIT_LIST);
    /* Global-only: tenants create/delete, providers, routes, prices, snapshot; reads included. */
    assert_int_equal(route("POST", "/admin/v1/tenants", &m), 0);
    assert_true(m.flags & CP_ROUTE_GLOBAL);
    assert_int_equal(route("DELETE", "/admin/v1/tenants/t", &m), 0);
    assert_true(m.flags & CP_ROUTE_GLOBAL);
    assert_int_equal(route("PATCH", "/admin/v1/tenants/t", &m), 0);
    assert_false(m.flags & CP_ROUTE_GLOBAL);
    assert_int_equal(route("GET", "/admin/v1/providers", &m), 0);
    assert_true(m.flags & CP_ROUTE_GLOBAL);
    assert_int_equal(route("GET", "/admin/v1/prices", &m), 0);
    assert_true(m.flags & CP_ROUTE_GLOBAL);
    assert_int_equal(route("GET", "/admin/v1/snapshot", &m), 0);
    assert_true(m.flags & CP_ROUTE_GLOBAL);
    /* Every write is marked as one (viewers refused, audited); no read is. */
    assert_int_equal(route("GET", "/admin/v1/budgets", &m), 0);
    assert_false(m.flags & CP_ROUTE_WRITE);
    assert_int_equal(route("DELETE", "/admin/v1/budgets/b", &m), 0);
    assert_true(m.flags & CP_ROUTE_WRITE);
    assert_int_equal(route("PUT", "/admin/v1/teams/x", &m), 405);
    assert_string_equal(m.allow, "GET, PATCH, DELETE");
}

static void
test_not_found_and_method(void **state)
{
    cp_route_match_t m;
    assert_int_equal(route("GET", "/", &m), 404);
    assert_int_equal(route("GET", "/admin/v1/nope", &m), 404);
    assert_int_equal(route("GET", "/admin/v1/tenants/a/b", &m), 404);
    assert_int_equal(route("GET", "/admin/v1/tenants//", &m), 404);
    assert_int_equal(route("GET", "/admin/v1/tenantsx", &m), 404);
    assert_int_equal(route("DELETE", "/admin/v1/tenants", &m), 405);
    assert_string_equal(m.allow, "POST, GET");
    assert_int_equal(route("GET", "/admin/v1/keys/k1/revoke", &m), 405);
    assert_string_equal(m.allow, "POST");
    assert_int_equal(route("POST", "/admin/v1/prices", &m), 405);
    assert_string_equal(m.allow, "PUT, GET");
    char longid[200];
    memset(longid, 'a', sizeof(longid));
    memcpy(longid, "/admin/v1/keys/", 15);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(route("GET", longid, &m), 404);
}

static void
test_auth_scope(void **state)
{
    assert_true(cp_admin_path_needs_auth("/admin/v1/keys", 14));
    assert_true(cp_admin_path_needs_auth("/admin/", 7));
    assert_false(cp_admin_path_needs_auth("/healthz", 8));
    assert_false(cp_admin_path_needs_auth("/admin", 6));
}

static int
qp(const char *q, const char *name, char *buf, size_t sz)
{
    return cp_query_param(q, strlen(q), name, buf, sz);
}

static void
test_query(void **state)
{
    char buf[32];
    assert_int_equal(qp("tenant_id=abc&from=2026-01-01", "tenant_id", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "abc");
    assert_int_equal(qp("tenant_id=abc&from=2026-01-01", "from", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "2026-01-01");
    assert_int_equal(qp("tenant_id=abc", "to", buf, sizeof(buf)), 0);
    assert_int_equal(qp("group_by=key%2Cmodel", "group_by", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "key,model");
    assert_int_equal(qp("from=2026-11-21T20:30:00%2B01:00", "from", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "2026-11-21T20:30:00+01:00");
    assert_int_equal(qp("a=x+y", "a", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "x y");
    assert_int_equal(qp("flag&a=1", "flag", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "");
    assert_int_equal(qp("ab=1&a=2", "a", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "2");
    assert_int_equal(qp("a=%zz", "a", buf, sizeof(buf)), -1);
    assert_int_equal(qp("a=%00", "a", buf, sizeof(buf)), -1);
    assert_int_equal(qp("a=%4", "a", buf, sizeof(buf)), -1);
    assert_int_equal(qp("a=0123456789", "a", buf, 5), -1);
    assert_int_equal(qp("", "a", buf, sizeof(buf)), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches),
        cmocka_unit_test(test_governance_routes),
        cmocka_unit_test(test_not_found_and_method),
        cmocka_unit_test(test_auth_scope),
        cmocka_unit_test(test_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
