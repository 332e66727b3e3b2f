/* Admin endpoints that exist only under TOLLGATE_TEST_HOOKS=1 (see test_hooks.c). */
#ifndef CP_ADMIN_TEST_HOOKS_H
#define CP_ADMIN_TEST_HOOKS_H

#include "http.h"

/* 1 when the request was a test hook and was answered, 0 otherwise (hooks off, or another path). */
int cp_test_hooks_handle(cp_admin_req_t *r, const char *path, size_t plen);

#endif
