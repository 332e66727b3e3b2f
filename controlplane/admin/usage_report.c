/*
 * Admin API: usage reports.
 *
 * GET /admin/v1/usage: one tenant over [from, to), grouped by any subset of key, model and day (UTC),
 * read from usage_events (exact to the millisecond; kept for existing callers).
 *
 * GET /admin/v1/usage/report: any range at hour/day/month granularity, grouped by any subset of
 * tenant, team, key, provider, model, read from the hourly rollups (so the range is widened to whole
 * hours), with latency percentiles from the rollups' histograms; JSON or CSV.
 *
 * Ranges are resolved once by PostgreSQL (defaults: the last 30 days), echoed back in RFC 3339, and
 * passed to the grouped query (usage_query.c) as exact timestamps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../latency_hist.h"
#include "../util.h"
#include "handlers.h"
#include "usage_query.h"

#define REPORT_MAX_ROWS 100000

void
cp_usage_report(cp_admin_req_t *r)
{
    char tenant[64], from[80], to[80], group_by[64];
    int has_tenant, has_from, has_to, has_group;
    if (cp_query_string(r, "tenant_id", tenant, sizeof(tenant), &has_tenant) != 0 ||
        cp_query_string(r, "from", from, sizeof(from), &has_from) != 0 ||
        cp_query_string(r, "to", to, sizeof(to), &has_to) != 0 ||
        cp_query_string(r, "group_by", group_by, sizeof(group_by), &has_group) != 0)
        return;
    if (!has_tenant || !cp_uuid_valid(tenant)) {
        cp_http_error(r, 400, "invalid_request_error", "'tenant_id' (a UUID) is required");
        return;
    }
    if (r->scope != NULL && strcasecmp(tenant, r->scope) != 0) {
        cp_http_error(r, 404, "not_found_error", "tenant not found");
        return;
    }
    unsigned mask = CP_USAGE_BY_KEY | CP_USAGE_BY_MODEL | CP_USAGE_BY_DAY;
    if (has_group && cp_usage_parse_group_by(group_by, &mask) != 0) {
        cp_http_error(r, 400, "invalid_request_error", "'group_by' must be a comma-separated subset of key,model,day");
        return;
    }

    /* Resolve the range: exact values for the query, RFC 3339 for the answer. */
    const char *rp[] = {has_from && from[0] ? from : NULL, has_to && to[0] ? to : NULL};
    PGresult *res;
    if (cp_admin_query(r, &res, "time range",
                       "SELECT f::text, t::text, " CP_SQL_TS("f") ", " CP_SQL_TS(
                           "t") " FROM (SELECT coalesce($1::timestamptz, now() - interval '30 days') AS f,"
                                " coalesce($2::timestamptz, now()) AS t) x",
                       2, rp) != 0)
        return;
    char f_exact[64], t_exact[64];
    snprintf(f_exact, sizeof(f_exact), "%s", PQgetvalue(res, 0, 0));
    snprintf(t_exact, sizeof(t_exact), "%s", PQgetvalue(res, 0, 1));
    json_t *doc = json_pack("{s:s,s:s,s:[]}", "from", PQgetvalue(res, 0, 2), "to", PQgetvalue(res, 0, 3), "group_by");
    PQclear(res);
    if (doc == NULL) {
        cp_http_error(r, 500, "server_error", "out of memory");
        return;
    }
    json_t *groups = json_object_get(doc, "group_by");
    if (mask & CP_USAGE_BY_KEY)
        json_array_append_new(groups, json_string("key"));
    if (mask & CP_USAGE_BY_MODEL)
        json_array_append_new(groups, json_string("model"));
    if (mask & CP_USAGE_BY_DAY)
        json_array_append_new(groups, json_string("day"));

    char sql[2048];
    cp_usage_build_sql(mask, sql, sizeof(sql));
    const char *qp[] = {tenant, f_exact, t_exact};
    if (cp_admin_query(r, &res, "usage report", sql, 3, qp) != 0) {
        json_decref(doc);
        return;
    }
    json_t *data = json_array();
    for (int i = 0; i < PQntuples(res); i++) {
        json_t *row = json_loads(PQgetvalue(res, i, 0), JSON_DECODE_ANY, NULL);
        if (row != NULL)
            json_array_append_new(data, row);
    }
    PQclear(res);
    json_object_set_new(doc, "data", data);
    cp_http_json(r, 200, doc);
}

/* A CSV field: quoted when it holds a comma, quote or line break; a leading =+-@ gets a quote mark
 * in front so that spreadsheets do not run it as a formula. */
static void
csv_field(h2o_mem_pool_t *pool, h2o_iovec_t *out, size_t *cap, const char *v)
{
    size_t len = strlen(v);
    size_t need = out->len + 2 * len + 4;
    if (need > *cap) {
        size_t ncap = *cap * 2 > need ? *cap * 2 : need;
        char *p = h2o_mem_alloc_pool(pool, ncap);
        memcpy(p, out->base, out->len);
        out->base = p;
        *cap = ncap;
    }
    int quote = strpbrk(v, ",\"\r\n") != NULL || (len > 0 && strchr("=+-@", v[0]) != NULL);
    char *o = out->base + out->len;
    if (quote)
        *o++ = '"';
    if (len > 0 && strchr("=+-@", v[0]) != NULL)
        *o++ = '\'';
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '"')
            *o++ = '"';
        *o++ = v[i];
    }
    if (quote)
        *o++ = '"';
    out->len = (size_t)(o - out->base);
}

static void
fmt_ms(double v, char *buf, size_t bufsz)
{
    if (v < 0)
        buf[0] = '\0';
    else
        snprintf(buf, bufsz, "%.1f", v);
}

void
cp_usage_report_v2(cp_admin_req_t *r)
{
    static const char *const allowed[] = {"from", "to", "granularity", "group_by", "tenant_id", "format", NULL};
    char from[80], to[80], gran[16], group_by[64], format[8], tbuf[64];
    int has_from, has_to, has_gran, has_group, has_format, other;
    const char *tenant;
    if (cp_query_allow(r, allowed) != 0 || cp_admin_tenant_filter(r, &tenant, &other, tbuf, sizeof(tbuf)) != 0 ||
        cp_query_string(r, "from", from, sizeof(from), &has_from) != 0 ||
        cp_query_string(r, "to", to, sizeof(to), &has_to) != 0 ||
        cp_query_string(r, "granularity", gran, sizeof(gran), &has_gran) != 0 ||
        cp_query_string(r, "group_by", group_by, sizeof(group_by), &has_group) != 0 ||
        cp_query_string(r, "format", format, sizeof(format), &has_format) != 0)
        return;
    if (other) {
        cp_http_error(r, 404, "not_found_error", "tenant not found");
        return;
    }
    if (!has_gran)
        snprintf(gran, sizeof(gran), "day");
    if (cp_report_parse_granularity(gran) != 0) {
        cp_http_error(r, 400, "invalid_request_error", "'granularity' must be hour, day or month");
        return;
    }
    unsigned mask = 0;
    if (has_group && cp_report_parse_group_by(group_by, &mask) != 0) {
        cp_http_error(r, 400, "invalid_request_error",
                      "'group_by' must be a comma-separated subset of tenant,team,key,provider,model");
        return;
    }
    int csv = has_format && strcmp(format, "csv") == 0;
    if (has_format && !csv && strcmp(format, "json") != 0) {
        cp_http_error(r, 400, "invalid_request_error", "'format' must be json or csv");
        return;
    }
    /* Whole hours: from rounded down, to rounded up (the rollups' resolution). */
    const char *rp[] = {has_from && from[0] ? from : NULL, has_to && to[0] ? to : NULL};
    PGresult *res;
    if (cp_admin_query(r, &res, "time range",
                       "SELECT f::text, t::text, " CP_SQL_TS("f") ", " CP_SQL_TS(
                           "t") ", f <= t FROM (SELECT date_trunc('hour', f0) AS f,"
                                " date_trunc('hour', t0) + CASE WHEN date_trunc('hour', t0) = t0 THEN interval '0'"
                                " ELSE interval '1 hour' END AS t FROM (SELECT coalesce($2::timestamptz, now()) AS t0,"
                                " coalesce($1::timestamptz, coalesce($2::timestamptz, now()) - interval '30 days')"
                                " AS f0) y) x",
                       2, rp) != 0)
        return;
    if (PQgetvalue(res, 0, 4)[0] != 't') {
        PQclear(res);
        cp_http_error(r, 400, "invalid_request_error", "'from' must not be after 'to'");
        return;
    }
    char f_exact[64], t_exact[64], f_out[32], t_out[32];
    snprintf(f_exact, sizeof(f_exact), "%s", PQgetvalue(res, 0, 0));
    snprintf(t_exact, sizeof(t_exact), "%s", PQgetvalue(res, 0, 1));
    snprintf(f_out, sizeof(f_out), "%s", PQgetvalue(res, 0, 2));
    snprintf(t_out, sizeof(t_out), "%s", PQgetvalue(res, 0, 3));
    PQclear(res);

    char sql[4096];
    if (cp_report_build_sql(gran, mask, REPORT_MAX_ROWS + 1, sql, sizeof(sql)) != 0) {
        cp_http_error(r, 500, "server_error", "internal error");
        return;
    }
    const char *qp[] = {tenant, f_exact, t_exact};
    if (cp_admin_query(r, &res, "usage report", sql, 3, qp) != 0)
        return;
    int rows = PQntuples(res);
    if (rows > REPORT_MAX_ROWS) {
        PQclear(res);
        cp_http_error(r, 400, "invalid_request_error",
                      "the report has more than %d rows; narrow the range, coarsen the granularity or group by less",
                      REPORT_MAX_ROWS);
        return;
    }
    int ngroups = 0;
    for (int i = 0; i < CP_REPORT_GROUPS; i++)
        ngroups += (mask >> i) & 1;
    int m0 = 1 + ngroups; /* first metric column */

    h2o_iovec_t out = {NULL, 0};
    size_t cap = 0;
    json_t *doc = NULL, *data = NULL;
    if (csv) {
        cap = 4096;
        out.base = h2o_mem_alloc_pool(&r->req->pool, cap);
        csv_field(&r->req->pool, &out, &cap, "period_start");
        for (int i = 0; i < CP_REPORT_GROUPS; i++) {
            if (mask & (1u << i)) {
                char name[24];
                snprintf(name, sizeof(name), i == CP_REPORT_GROUPS - 1 ? "%s" : "%s_id", cp_report_group_names[i]);
                out.base[out.len++] = ',';
                csv_field(&r->req->pool, &out, &cap, name);
            }
        }
        static const char tail[] = ",requests,errors,input_tokens,output_tokens,cached_input_tokens,cost_usd,"
                                   "latency_p50_ms,latency_p95_ms,latency_p99_ms\n";
        csv_field(&r->req->pool, &out, &cap, ""); /* grows the buffer if needed */
        if (out.len + sizeof(tail) > cap) {
            char *p = h2o_mem_alloc_pool(&r->req->pool, cap * 2 + sizeof(tail));
            memcpy(p, out.base, out.len);
            out.base = p;
            cap = cap * 2 + sizeof(tail);
        }
        memcpy(out.base + out.len, tail, sizeof(tail) - 1);
        out.len += sizeof(tail) - 1;
    } else {
        doc = json_pack("{s:s,s:s,s:s,s:[]}", "from", f_out, "to", t_out, "granularity", gran, "group_by");
        data = json_array();
        for (int i = 0; doc != NULL && i < CP_REPORT_GROUPS; i++)
            if (mask & (1u << i))
                json_array_append_new(json_object_get(doc, "group_by"), json_string(cp_report_group_names[i]));
    }
    int64_t tot[6] = {0}, tot_lat[CP_LAT_BUCKETS] = {0};
    for (int row = 0; row < rows; row++) {
        int64_t v[6], lat[CP_LAT_BUCKETS];
        for (int k = 0; k < 6; k++) {
            v[k] = strtoll(PQgetvalue(res, row, m0 + k), NULL, 10);
            tot[k] += v[k];
        }
        for (int b = 0; b < CP_LAT_BUCKETS; b++) {
            lat[b] = strtoll(PQgetvalue(res, row, m0 + 6 + b), NULL, 10);
            tot_lat[b] += lat[b];
        }
        char usd[32], p50[24], p95[24], p99[24];
        cp_usd_format(v[5], usd);
        double q50 = cp_lat_quantile(lat, 0.50), q95 = cp_lat_quantile(lat, 0.95), q99 = cp_lat_quantile(lat, 0.99);
        if (csv) {
            char num[24];
            csv_field(&r->req->pool, &out, &cap, PQgetvalue(res, row, 0));
            for (int g = 0; g < ngroups; g++) {
                out.base[out.len++] = ',';
                csv_field(&r->req->pool, &out, &cap, PQgetvalue(res, row, 1 + g));
            }
            for (int k = 0; k < 5; k++) {
                snprintf(num, sizeof(num), "%lld", (long long)v[k]);
                out.base[out.len++] = ',';
                csv_field(&r->req->pool, &out, &cap, num);
            }
            fmt_ms(q50, p50, sizeof(p50));
            fmt_ms(q95, p95, sizeof(p95));
            fmt_ms(q99, p99, sizeof(p99));
            const char *rest[] = {usd, p50, p95, p99};
            for (int k = 0; k < 4; k++) {
                out.base[out.len++] = ',';
                csv_field(&r->req->pool, &out, &cap, rest[k]);
            }
            csv_field(&r->req->pool, &out, &cap, ""); /* room for the newline */
            out.base[out.len++] = '\n';
        } else {
            json_t *o = json_pack("{s:s}", "period_start", PQgetvalue(res, row, 0));
            int g = 0;
            for (int i = 0; i < CP_REPORT_GROUPS; i++) {
                if (!(mask & (1u << i)))
                    continue;
                char name[24];
                snprintf(name, sizeof(name), i == CP_REPORT_GROUPS - 1 ? "%s" : "%s_id", cp_report_group_names[i]);
                json_object_set_new(
                    o, name, PQgetisnull(res, row, 1 + g) ? json_null() : json_string(PQgetvalue(res, row, 1 + g)));
                g++;
            }
            json_object_set_new(o, "requests", json_integer(v[0]));
            json_object_set_new(o, "errors", json_integer(v[1]));
            json_object_set_new(o, "input_tokens", json_integer(v[2]));
            json_object_set_new(o, "output_tokens", json_integer(v[3]));
            json_object_set_new(o, "cached_input_tokens", json_integer(v[4]));
            json_object_set_new(o, "cost_nanousd", json_integer(v[5]));
            json_object_set_new(o, "cost_usd", json_string(usd));
            json_object_set_new(o, "latency_ms",
                                json_pack("{s:o,s:o,s:o}", "p50", q50 < 0 ? json_null() : json_real(q50), "p95",
                                          q95 < 0 ? json_null() : json_real(q95), "p99",
                                          q99 < 0 ? json_null() : json_real(q99)));
            json_array_append_new(data, o);
        }
    }
    PQclear(res);
    if (csv) {
        r->req->res.status = 200;
        r->req->res.reason = "OK";
        r->req->res.content_length = out.len;
        h2o_add_header(&r->req->pool, &r->req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("text/csv; charset=utf-8"));
        h2o_add_header(&r->req->pool, &r->req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
        h2o_send_inline(r->req, out.base, out.len);
        return;
    }
    char usd[32];
    cp_usd_format(tot[5], usd);
    double q50 = cp_lat_quantile(tot_lat, 0.50), q95 = cp_lat_quantile(tot_lat, 0.95),
           q99 = cp_lat_quantile(tot_lat, 0.99);
    json_t *totals =
        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:{s:o,s:o,s:o}}", "requests", (json_int_t)tot[0], "errors",
                  (json_int_t)tot[1], "input_tokens", (json_int_t)tot[2], "output_tokens", (json_int_t)tot[3],
                  "cached_input_tokens", (json_int_t)tot[4], "cost_nanousd", (json_int_t)tot[5], "cost_usd", usd,
                  "latency_ms", "p50", q50 < 0 ? json_null() : json_real(q50), "p95",
                  q95 < 0 ? json_null() : json_real(q95), "p99", q99 < 0 ? json_null() : json_real(q99));
    if (doc == NULL || data == NULL || totals == NULL) {
        json_decref(doc);
        json_decref(data);
        json_decref(totals);
        cp_http_error(r, 500, "server_error", "out of memory");
        return;
    }
    json_object_set_new(doc, "data", data);
    json_object_set_new(doc, "totals", totals);
    cp_http_json(r, 200, doc);
}
