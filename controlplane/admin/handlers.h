/*
 * The admin API handlers, one resource a file (tenants.c, teams.c, keys.c, budgets.c, rate_limits.c,
 * admin_tokens.c, audit.c, providers.c, routes.c, prices.c, usage_report.c, and health/snapshot in
 * http.c). Each answers the request before returning.
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
void cp_usage_report_v2(cp_admin_req_t *r);

void cp_tenants_update(cp_admin_req_t *r);
void cp_tenants_delete(cp_admin_req_t *r);

void cp_teams_create(cp_admin_req_t *r);
void cp_teams_list(cp_admin_req_t *r);
void cp_teams_get(cp_admin_req_t *r);
void cp_teams_update(cp_admin_req_t *r);
void cp_teams_delete(cp_admin_req_t *r);

void cp_keys_update(cp_admin_req_t *r);
void cp_keys_rotate(cp_admin_req_t *r);

void cp_budgets_create(cp_admin_req_t *r);
void cp_budgets_list(cp_admin_req_t *r);
void cp_budgets_get(cp_admin_req_t *r);
void cp_budgets_update(cp_admin_req_t *r);
void cp_budgets_delete(cp_admin_req_t *r);

/*
 * Budgets and rate limits: checks body "scope" with "team_id"/"key_id" (the team or key must be of
 * `tenant`). 0 with *ret_scope, or -1 after answering 400.
 */
int cp_scope_fields(cp_admin_req_t *r, const char *tenant, const char **ret_scope);

void cp_limits_create(cp_admin_req_t *r);
void cp_limits_list(cp_admin_req_t *r);
void cp_limits_get(cp_admin_req_t *r);
void cp_limits_update(cp_admin_req_t *r);
void cp_limits_delete(cp_admin_req_t *r);

void cp_tokens_create(cp_admin_req_t *r);
void cp_tokens_list(cp_admin_req_t *r);
void cp_tokens_get(cp_admin_req_t *r);
void cp_tokens_revoke(cp_admin_req_t *r);

void cp_audit_list(cp_admin_req_t *r);

#endif
