/*
 * Test hooks of the admin API, present only when TOLLGATE_TEST_HOOKS=1 (otherwise their paths are
 * ordinary 404s): PUT /admin/v1/_test/clock {"offset_ms": N} moves the governance clock
 * (tollgate/clock.h) and rebuilds the snapshot, so that key expiry, budget periods and lease expiry
 * can be tested without sleeping. GET answers the current offset and clock.
 */
#include <string.h>
#include "http.h"
#include "../snapshot.h"
#include "test_hooks.h"
#include "tollgate/clock.h"

int
cp_test_hooks_handle(cp_admin_req_t *r, const char *path, size_t plen)
{
    static const char clock_path[] = "/admin/v1/_test/clock";
    if (!tg_clock_test_hooks() || plen != sizeof(clock_path) - 1 || memcmp(path, clock_path, plen) != 0)
        return 0;
    h2o_req_t *req = r->req;
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("PUT"))) {
        json_error_t jerr;
        json_t *body = json_loadb(req->entity.base != NULL ? req->entity.base : "", req->entity.len, 0, &jerr);
        json_t *v = json_object_get(body, "offset_ms");
        if (!json_is_integer(v) || tg_clock_set_offset_ms(json_integer_value(v)) != 0) {
            json_decref(body);
            cp_http_error(r, 400, "invalid_request_error", "offset_ms must be an integer within ten years");
            return 1;
        }
        json_decref(body);
        cp_snapshot_schedule_reload(r->cp); /* keys that expired on the moved clock leave the snapshot */
    } else if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
        cp_http_error(r, 405, "invalid_request_error", "method not allowed; allowed: GET, PUT");
        return 1;
    }
    cp_http_json(
        r, 200,
        json_pack("{s:I,s:I}", "offset_ms", (json_int_t)tg_clock_offset_ms(), "now_ms", (json_int_t)tg_clock_now_ms()));
    return 1;
}
