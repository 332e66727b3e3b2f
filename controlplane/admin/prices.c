/*
 * Admin API: prices, in USD per million tokens, stored exactly as numeric(20,9). Numbers are taken as
 * the shortest decimal that reads back as the JSON double (or verbatim from a JSON string such as
 * "0.075"), so what the operator typed is what is stored. Responses drop trailing zeros (trim_scale).
 */
#include "../util.h"
#include "handlers.h"

#define PRICE_JSON                                                                                                     \
    "json_build_object('id', p.id, 'provider_id', p.provider_id, 'model', p.model,"                                    \
    " 'input_per_mtok', trim_scale(p.input_usd_per_mtok), 'output_per_mtok', trim_scale(p.output_usd_per_mtok),"       \
    " 'cached_input_per_mtok', trim_scale(p.cached_input_usd_per_mtok),"                                               \
    " 'created_at', " CP_SQL_TS("p.created_at") ", 'updated_at', " CP_SQL_TS("p.updated_at") ")"

/* A price field as decimal text; *ret NULL when optional and absent. 0, or -1 after answering 400. */
static int
price_field(cp_admin_req_t *r, const char *field, int required, char *buf, size_t bufsz, const char **ret)
{
    json_t *v;
    *ret = NULL;
    if (cp_body_field(r, field, required, &v) != 0)
        return -1;
    if (v == NULL)
        return 0;
    if (cp_decimal_from_json(v, buf, bufsz) != 0) {
        cp_http_error(r, 400, "invalid_request_error", "'%s' must be a non-negative number (USD per million tokens)",
                      field);
        return -1;
    }
    *ret = buf;
    return 0;
}

void
cp_prices_put(cp_admin_req_t *r)
{
    static const char *const allowed[] = {"model",           "provider_id",           "input_per_mtok",
                                          "output_per_mtok", "cached_input_per_mtok", NULL};
    const char *model, *provider_id, *in, *out, *cached;
    char inb[64], outb[64], cachedb[64];
    if (cp_body_allow(r, r->body, "", allowed) != 0 || cp_body_string(r, "model", 1, 200, &model) != 0 ||
        cp_body_uuid(r, "provider_id", 0, &provider_id) != 0 ||
        price_field(r, "input_per_mtok", 1, inb, sizeof(inb), &in) != 0 ||
        price_field(r, "output_per_mtok", 1, outb, sizeof(outb), &out) != 0 ||
        price_field(r, "cached_input_per_mtok", 0, cachedb, sizeof(cachedb), &cached) != 0)
        return;
    const char *params[] = {provider_id, model, in, out, cached};
    cp_change_t c = {.what = "price",
                     .action = "price.put",
                     .sql =
                         "INSERT INTO prices AS p (provider_id, model, input_usd_per_mtok, output_usd_per_mtok,"
                         " cached_input_usd_per_mtok) VALUES ($1::uuid, $2, $3::numeric, $4::numeric, $5::numeric)"
                         " ON CONFLICT ((coalesce(provider_id, '00000000-0000-0000-0000-000000000000'::uuid)), model)"
                         " DO UPDATE SET input_usd_per_mtok = EXCLUDED.input_usd_per_mtok,"
                         " output_usd_per_mtok = EXCLUDED.output_usd_per_mtok,"
                         " cached_input_usd_per_mtok = EXCLUDED.cached_input_usd_per_mtok, updated_at = now()"
                         " RETURNING " PRICE_JSON "::text",
                     .nparams = 5,
                     .params = params,
                     .status = 200};
    cp_admin_change(r, &c);
}

void
cp_prices_list(cp_admin_req_t *r)
{
    PGresult *res;
    if (cp_admin_query(r, &res, "price",
                       "SELECT json_build_object('data', coalesce(json_agg(" PRICE_JSON
                       " ORDER BY p.model, p.provider_id NULLS FIRST), '[]'::json))::text FROM prices p",
                       0, NULL) != 0)
        return;
    cp_http_json_text(r, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}
