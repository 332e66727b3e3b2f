/*
 * Allowance leases (see lease.h).
 *
 * A lease request is one transaction: tollgate_lease() per ask, in the order asked. A failure rolls the
 * whole request back and answers MSG_ERROR: the dataplane keeps what it had and asks again, so no
 * partial grant is ever applied on one side only. Times come from the governance clock
 * (tollgate/clock.h), so tests move periods and expiries without sleeping.
 *
 * Settlement groups the batch in C by (key, model, start second) with summed costs (usage_group.c) and
 * hands the groups to tollgate_settle() as four parallel array literals: one statement per batch with
 * a few rows, whatever the batch's size. Exact: every record of a group falls in the same period of
 * every budget (usage_group.h says why), and the ledger only ever adds costs.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lease.h"
#include "usage_group.h"
#include "tollgate/clock.h"
#include "tollgate/env.h"
#include "tollgate/log.h"
#include "util.h"

#define MAX_ASKS 4096

static const char *const kind_names[] = {"budget", "requests", "tokens", "concurrent"};

static int64_t
setting(const char *name, int64_t def, int64_t min, int64_t max)
{
    int64_t v;
    return tg_env_int(name, def, min, max, &v) == 0 ? v : def;
}

/* What the period of a budget lease has settled so far, in the grant's transaction (the row
 * tollgate_lease() just locked): the dataplane compares it with the soft threshold. */
static int
lease_settled(cp_t *cp, const Tollgate__LeaseState *ls, int64_t *ret, char *err, size_t errsz)
{
    char ps[24];
    snprintf(ps, sizeof(ps), "%" PRId64, ls->period_start_ms);
    const char *params[] = {ls->limit_id, ps};
    PGresult *res;
    if (cp_db_query(&cp->db, &res,
                    "SELECT settled FROM allowance_periods WHERE limit_id = $1::uuid AND kind = 'budget'"
                    " AND period_start = to_timestamp($2::bigint / 1000.0)",
                    2, params, NULL, NULL) != 0) {
        snprintf(err, errsz, "lease settled: %s", cp_db_errmsg(&cp->db, res));
        PQclear(res);
        return -1;
    }
    *ret = PQntuples(res) == 1 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    PQclear(res);
    return 0;
}

int
cp_lease_grant(cp_t *cp, const Tollgate__LeaseRequest *rq, Tollgate__LeaseGrant *ret, char *err, size_t errsz)
{
    tollgate__lease_grant__init(ret);
    if (rq->instance_id == NULL || rq->instance_id[0] == '\0' || strlen(rq->instance_id) > 200 ||
        rq->n_asks > MAX_ASKS) {
        snprintf(err, errsz, "invalid LeaseRequest");
        return -1;
    }
    if (cp_db_conn(&cp->db) == NULL) {
        snprintf(err, errsz, "database unavailable");
        return -1;
    }
    int64_t ttl = setting("TOLLGATE_LEASE_TTL_MS", 10000, 1000, 3600000);
    int64_t maxreq = setting("TOLLGATE_MAX_REQUEST_MS", 600000, 1000, 86400000);
    int64_t now = tg_clock_now_ms();
    ret->instance_id = strdup(rq->instance_id);
    ret->now_ms = now;
    ret->leases = calloc(rq->n_asks + 1, sizeof(*ret->leases));
    if (ret->instance_id == NULL || ret->leases == NULL)
        goto oom;
    if (cp_db_exec(&cp->db, "BEGIN", 0, NULL) != 0) {
        snprintf(err, errsz, "database unavailable");
        goto fail;
    }
    for (size_t i = 0; i < rq->n_asks; i++) {
        const Tollgate__LeaseAsk *a = rq->asks[i];
        Tollgate__LeaseState *ls = calloc(1, sizeof(*ls));
        if (ls == NULL)
            goto oom_rollback;
        tollgate__lease_state__init(ls);
        ret->leases[ret->n_leases++] = ls;
        if ((ls->limit_id = strdup(a->limit_id)) == NULL)
            goto oom_rollback;
        ls->kind = a->kind;
        if (!cp_uuid_valid(a->limit_id) || (unsigned)a->kind > 3) {
            ls->unknown = 1;
            continue;
        }
        char nowb[24], period[24], want[24], need[24], release[24], epoch[24], ttlb[24], maxb[24];
        snprintf(nowb, sizeof(nowb), "%" PRId64, now);
        snprintf(period, sizeof(period), "%" PRId64, a->period_start_ms);
        snprintf(want, sizeof(want), "%" PRId64, a->want);
        /* need is folded into want by the dataplane when it has a waiting request: want >= need then */
        snprintf(need, sizeof(need), "%" PRId64, a->need);
        snprintf(release, sizeof(release), "%" PRId64, a->release);
        snprintf(epoch, sizeof(epoch), "%" PRIu64, a->epoch);
        snprintf(ttlb, sizeof(ttlb), "%" PRId64, ttl);
        snprintf(maxb, sizeof(maxb), "%" PRId64, maxreq);
        const char *params[] = {
            a->limit_id, kind_names[a->kind], rq->instance_id, nowb, period, want, need, release, epoch, ttlb, maxb};
        PGresult *res;
        if (cp_db_query(&cp->db, &res,
                        "SELECT o_known, o_period_start_ms, o_period_end_ms, o_epoch, o_granted, o_outstanding,"
                        " o_remaining, o_hard, o_expires_ms FROM tollgate_lease($1::uuid, $2, $3, $4::bigint,"
                        " $5::bigint, $6::bigint, $7::bigint, $8::bigint, $9::bigint, $10::bigint, $11::bigint)",
                        11, params, NULL, NULL) != 0) {
            snprintf(err, errsz, "lease: %s", cp_db_errmsg(&cp->db, res));
            PQclear(res);
            goto rollback;
        }
        if (PQgetvalue(res, 0, 0)[0] != 't') {
            ls->unknown = 1;
        } else {
            ls->period_start_ms = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
            ls->period_end_ms = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
            ls->epoch = strtoull(PQgetvalue(res, 0, 3), NULL, 10);
            ls->granted = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
            ls->outstanding = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
            ls->remaining = strtoll(PQgetvalue(res, 0, 6), NULL, 10);
            ls->limit = strtoll(PQgetvalue(res, 0, 7), NULL, 10);
            ls->expires_ms = strtoll(PQgetvalue(res, 0, 8), NULL, 10);
        }
        PQclear(res);
        if (!ls->unknown && a->kind == TOLLGATE__LEASE_KIND__LEASE_BUDGET &&
            lease_settled(cp, ls, &ls->settled, err, errsz) != 0)
            goto rollback;
        if (ls->granted > 0 || a->release > 0)
            tg_info("cp.lease.granted",
                    "instance=%s limit=%s kind=%s want=%lld need=%lld release=%lld granted=%lld remaining=%lld",
                    rq->instance_id, a->limit_id, kind_names[a->kind], (long long)a->want, (long long)a->need,
                    (long long)a->release, (long long)ls->granted, (long long)ls->remaining);
    }
    if (cp_db_exec(&cp->db, "COMMIT", 0, NULL) != 0) {
        snprintf(err, errsz, "commit failed");
        goto fail;
    }
    return 0;
oom_rollback:
    snprintf(err, errsz, "out of memory");
rollback:
    if (cp_db_conn(&cp->db) != NULL)
        cp_db_exec(&cp->db, "ROLLBACK", 0, NULL);
    goto fail;
oom:
    snprintf(err, errsz, "out of memory");
fail:
    cp_lease_grant_free(ret);
    return -1;
}

void
cp_lease_grant_free(Tollgate__LeaseGrant *g)
{
    for (size_t i = 0; i < g->n_leases; i++) {
        free(g->leases[i]->limit_id);
        free(g->leases[i]);
    }
    free(g->leases);
    free(g->instance_id);
    tollgate__lease_grant__init(g);
}

/* ---------------------------------------------------------------- settlement */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    int failed;
} strbuf_t;

static void
sb_put(strbuf_t *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* One element of an array literal: quoted, with " and \ escaped. */
static void
sb_elem(strbuf_t *b, const char *s)
{
    sb_put(b, b->len > 1 ? ",\"" : "\"", b->len > 1 ? 2 : 1);
    for (const char *c = s; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\')
            sb_put(b, "\\", 1);
        sb_put(b, c, 1);
    }
    sb_put(b, "\"", 1);
}

static const char settle_sql[] = "SELECT o_limit::text, o_settled, o_soft, o_hard FROM tollgate_settle($1, $2::uuid[],"
                                 " $3::text[], $4::bigint[], $5::bigint[])";

int
cp_lease_settle_stmt(const Tollgate__UsageBatch *batch, int64_t now_ms, cp_db_stmt_t *stmt, char *err, size_t errsz)
{
    memset(stmt, 0, sizeof(*stmt));
    if (batch->n_records == 0)
        return 0;
    strbuf_t keys = {0}, models = {0}, ts = {0}, costs = {0};
    int rv = -1;
    cp_settle_group_t *groups = malloc(batch->n_records * sizeof(*groups));
    long n = groups != NULL ? cp_group_settlement(batch, now_ms, groups) : -1;
    if (n < 0) {
        snprintf(err, errsz, n == -2 ? "settle: cost totals out of range" : "out of memory");
        goto out;
    }
    if (n == 0) {
        rv = 0;
        goto out;
    }
    sb_put(&keys, "{", 1), sb_put(&models, "{", 1), sb_put(&ts, "{", 1), sb_put(&costs, "{", 1);
    for (long i = 0; i < n; i++) {
        const cp_settle_group_t *g = &groups[i];
        char num[24];
        sb_elem(&keys, g->key);
        sb_elem(&models, g->model);
        snprintf(num, sizeof(num), "%" PRId64, g->sec * 1000);
        sb_elem(&ts, num);
        snprintf(num, sizeof(num), "%" PRId64, g->cost);
        sb_elem(&costs, num);
    }
    sb_put(&keys, "}", 1), sb_put(&models, "}", 1), sb_put(&ts, "}", 1), sb_put(&costs, "}", 1);
    if (keys.failed || models.failed || ts.failed || costs.failed) {
        snprintf(err, errsz, "out of memory");
        goto out;
    }
    /* the buffers move into the statement; the instance id is the batch's, which outlives it */
    stmt->sql = settle_sql;
    stmt->nparams = 5;
    stmt->values[0] = batch->instance_id;
    stmt->values[1] = stmt->owned[1] = keys.p;
    stmt->values[2] = stmt->owned[2] = models.p;
    stmt->values[3] = stmt->owned[3] = ts.p;
    stmt->values[4] = stmt->owned[4] = costs.p;
    keys.p = models.p = ts.p = costs.p = NULL;
    rv = 0;
out:
    free(keys.p), free(models.p), free(ts.p), free(costs.p);
    free(groups);
    return rv;
}

void
cp_lease_settle_report(const PGresult *res)
{
    /* once per period: the batch that crosses the threshold is the only one that sees the crossing */
    for (int r = 0; r < PQntuples(res); r++)
        tg_warn("cp.budget.soft_limit_crossed", "budget=%s settled_nanousd=%s soft_nanousd=%s hard_nanousd=%s",
                PQgetvalue(res, r, 0), PQgetvalue(res, r, 1), PQgetvalue(res, r, 2), PQgetvalue(res, r, 3));
}
