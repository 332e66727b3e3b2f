/*
 * The admin API handlers, one resource a file (tenants.c, keys.c, providers.c, routes.c, prices.c,
 * usage_report.c, and health/snapshot in http.c). Each answers the request before returning.
 */
#ifndef CP_ADMIN_HANDLERS_H
#define CP_ADMIN_HANDLERS_H

#include "http.h"

void cp_tenants_create(cp_admin_req_t *r);
void cp_tenants_list(cp_admin_req_t *r);
void cp_tenants_get(cp_admin_req_t *r);

void cp_keys_create(cp_admin_req_t *r);
void cp_keys_list(cp_admin_req_t *r);
void cp_keys_get(cp_admin_req_t *r);
void cp_keys_revoke(cp_admin_req_t *r);

void cp_providers_create(cp_admin_req_t *r);
void cp_providers_list(cp_admin_req_t *r);
void cp_providers_get(cp_admin_req_t *r);

void cp_routes_create(cp_admin_req_t *r);
void cp_routes_list(cp_admin_req_t *r);
void cp_routes_get(cp_admin_req_t *r);
void cp_routes_delete(cp_admin_req_t *r);

void cp_prices_put(cp_admin_req_t *r);
void cp_prices_list(cp_admin_req_t *r);

void cp_usage_report(cp_admin_req_t *r);

#endif
