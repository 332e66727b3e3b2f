/*
 * Control-plane metrics (metrics.h): the families, the hooks the admin server, the snapshot builder and
 * the usage ingester call, the scrape-time collectors, and GET /metrics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "metrics.h"
#include "snapshot.h"
#include "tollgate/crypto.h"
#include "tollgate/env.h"
#include "tollgate/http_status.h"
#include "tollgate/metrics.h"

static struct {
    tg_metrics_t *reg;
    cp_t *cp;
    const char *ops_token;
    tg_metric_family_t *admin, *admin_seconds, *snap_builds, *snap_publishes, *snap_build_seconds, *snap_version,
        *snap_bytes, *key_deltas, *key_delta_seconds, *usage_batches, *usage_records, *usage_seconds;
} g;

static void
collect(tg_metrics_emitter_t *e, void *ctx)
{
    cp_t *cp = ctx;
    tg_metrics_emit(e, TG_METRIC_GAUGE, "tollgate_cp_leader", "1 while this replica is the leader, else 0.", 0, NULL,
                    NULL, cp_leader_is_leading(&cp->leader) ? 1 : 0);
    tg_metrics_emit(e, TG_METRIC_GAUGE, "tollgate_cp_database_up",
                    "1 while the admin/snapshot database connection is open, else 0.", 0, NULL, NULL,
                    cp_db_conn(&cp->db) != NULL ? 1 : 0);
    if (cp->snap != NULL)
        tg_metrics_emit(e, TG_METRIC_GAUGE, "tollgate_cp_snapshot_age_seconds",
                        "Seconds since the published snapshot was built.", 0, NULL, NULL,
                        (double)(tg_now_unix_ms() - cp->snap->created_unix_ms) / 1000.0);
}

int
cp_metrics_init(cp_t *cp)
{
    int64_t cap;
    if (tg_env_int("TOLLGATE_METRICS_MAX_SERIES", 1000, 1, 1000000, &cap) != 0)
        return -1;
    g.cp = cp;
    g.ops_token = tg_env_str("TOLLGATE_OPS_TOKEN", NULL);
    if ((g.reg = tg_metrics_new()) == NULL)
        return -1;
    size_t c = (size_t)cap;
    const double *lb = tg_metrics_latency_buckets;
    size_t nlb = tg_metrics_latency_buckets_n;
    g.admin = tg_metrics_counter(g.reg, "tollgate_cp_admin_requests_total", "Admin API requests by route and status.",
                                 2, (const char *[]){"route", "code"}, c);
    g.admin_seconds =
        tg_metrics_histogram(g.reg, "tollgate_cp_admin_request_duration_seconds", "Admin API request latency by route.",
                             1, (const char *[]){"route"}, c, lb, nlb);
    g.snap_version = tg_metrics_gauge(g.reg, "tollgate_cp_snapshot_version",
                                      "Version of the snapshot this replica last published (0: none).", 0, NULL, 1);
    g.snap_bytes =
        tg_metrics_gauge(g.reg, "tollgate_cp_snapshot_bytes", "Serialized size of the last snapshot.", 0, NULL, 1);
    g.snap_builds = tg_metrics_counter(g.reg, "tollgate_cp_snapshot_builds_total", "Snapshot builds by result.", 1,
                                       (const char *[]){"result"}, 4);
    g.snap_publishes = tg_metrics_counter(g.reg, "tollgate_cp_snapshot_publishes_total",
                                          "Snapshots published to the dataplanes.", 0, NULL, 1);
    g.key_deltas = tg_metrics_counter(g.reg, "tollgate_cp_key_deltas_total",
                                      "Key deltas published to the dataplanes (key changes carried without a full "
                                      "snapshot).",
                                      0, NULL, 1);
    g.key_delta_seconds =
        tg_metrics_histogram(g.reg, "tollgate_cp_key_delta_duration_seconds",
                             "Time to select a key delta from the database and publish it.", 0, NULL, 1, lb, nlb);
    g.snap_build_seconds = tg_metrics_histogram(g.reg, "tollgate_cp_snapshot_build_duration_seconds",
                                                "Time to build a snapshot from the database.", 0, NULL, 1, lb, nlb);
    g.usage_batches = tg_metrics_counter(g.reg, "tollgate_cp_usage_batches_total",
                                         "Usage batches from dataplanes by result (stored, duplicate, failed).", 1,
                                         (const char *[]){"result"}, 4);
    g.usage_records = tg_metrics_counter(g.reg, "tollgate_cp_usage_records_total",
                                         "Usage records stored (duplicates not counted).", 0, NULL, 1);
    g.usage_seconds = tg_metrics_histogram(g.reg, "tollgate_cp_usage_ingest_duration_seconds",
                                           "Time to store one usage batch.", 0, NULL, 1, lb, nlb);
    if (g.admin == NULL || g.admin_seconds == NULL || g.snap_version == NULL || g.snap_bytes == NULL ||
        g.snap_builds == NULL || g.snap_publishes == NULL || g.snap_build_seconds == NULL || g.usage_batches == NULL ||
        g.usage_records == NULL || g.usage_seconds == NULL || tg_metrics_add_collector(g.reg, collect, cp) != 0) {
        cp_metrics_free();
        return -1;
    }
    /* the usual results show as 0 before they happen, so rate() works from the first scrape */
    static const char *const results[] = {"stored", "duplicate", "failed"};
    for (int i = 0; i < 3; i++)
        tg_metrics_series(g.usage_batches, &results[i]);
    tg_metrics_series(g.snap_builds, (const char *[]){"ok"});
    tg_metrics_series(g.snap_builds, (const char *[]){"failed"});
    return 0;
}

void
cp_metrics_free(void)
{
    tg_metrics_free(g.reg);
    g.reg = NULL;
}

void
cp_metrics_admin(const char *method, size_t mlen, const char *path, size_t plen, const char *id, int status,
                 double seconds)
{
    if (g.reg == NULL)
        return;
    char route[160], code[8];
    if (id == NULL) {
        snprintf(route, sizeof(route), "unmatched");
    } else {
        /* "GET /admin/v1/keys/<id>/revoke" becomes the route "GET /admin/v1/keys/{*}/revoke" (without braces) */
        size_t idlen = strlen(id);
        int n = snprintf(route, sizeof(route), "%.*s ", (int)(mlen > 10 ? 10 : mlen), method);
        for (size_t i = 0; i < plen && (size_t)n < sizeof(route) - 2;) {
            if (idlen > 0 && i > 0 && path[i - 1] == '/' && plen - i >= idlen && memcmp(path + i, id, idlen) == 0 &&
                (i + idlen == plen || path[i + idlen] == '/')) {
                route[n++] = '*';
                i += idlen;
            } else {
                route[n++] = path[i++];
            }
        }
        if (n > 1 && route[n - 1] == '/')
            n--; /* one trailing slash is ignored by the router */
        route[n] = '\0';
    }
    snprintf(code, sizeof(code), "%d", status);
    tg_metrics_inc(tg_metrics_series(g.admin, (const char *[]){route, code}), 1);
    tg_metrics_observe(tg_metrics_series(g.admin_seconds, (const char *[]){route}), seconds);
}

void
cp_metrics_key_delta(uint64_t version, double seconds)
{
    if (g.reg == NULL)
        return;
    tg_metrics_inc(tg_metrics_series0(g.key_deltas), 1);
    tg_metrics_observe(tg_metrics_series0(g.key_delta_seconds), seconds);
    tg_metrics_set(tg_metrics_series0(g.snap_version), (double)version);
}

void
cp_metrics_snapshot(int ok, int published, uint64_t version, size_t bytes, double build_seconds)
{
    if (g.reg == NULL)
        return;
    tg_metrics_inc(tg_metrics_series(g.snap_builds, (const char *[]){ok ? "ok" : "failed"}), 1);
    if (!ok)
        return;
    tg_metrics_observe(tg_metrics_series0(g.snap_build_seconds), build_seconds);
    tg_metrics_set(tg_metrics_series0(g.snap_bytes), (double)bytes);
    if (published) {
        tg_metrics_inc(tg_metrics_series0(g.snap_publishes), 1);
        tg_metrics_set(tg_metrics_series0(g.snap_version), (double)version);
    }
}

void
cp_metrics_usage(const char *result, size_t records, double seconds)
{
    if (g.reg == NULL)
        return;
    tg_metrics_inc(tg_metrics_series(g.usage_batches, &result), 1);
    if (strcmp(result, "stored") == 0) {
        tg_metrics_inc(tg_metrics_series0(g.usage_records), records);
        tg_metrics_observe(tg_metrics_series0(g.usage_seconds), seconds);
    }
}

static int
authorized(h2o_req_t *req)
{
    if (g.ops_token == NULL)
        return 1;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    return tg_bearer_matches(v.base, v.len, g.ops_token);
}

void
cp_metrics_handle(h2o_req_t *req)
{
    if (!authorized(req)) {
        req->res.status = 401;
        req->res.reason = tg_http_reason(401);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        h2o_send_inline(req, H2O_STRLIT("a valid ops token is required (TOLLGATE_OPS_TOKEN)\n"));
        return;
    }
    tg_buf_t b = {0};
    if (g.reg == NULL || tg_metrics_render(g.reg, &b) != 0) {
        tg_buf_free(&b);
        req->res.status = 500;
        req->res.reason = tg_http_reason(500);
        h2o_send_inline(req, H2O_STRLIT("metrics unavailable\n"));
        return;
    }
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT(TG_METRICS_CONTENT_TYPE));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_send_inline(req, b.base, b.len); /* copies into the request's pool */
    tg_buf_free(&b);
}
