/*
 * Hourly usage rollups on ingest (see usage_rollup.h).
 *
 * The batch is grouped in C by (hour, tenant, team, key, provider, model) (usage_group.c). The groups
 * (a handful for a typical batch) go to tollgate_rollup_add() (migrations/0007) as one array parameter
 * per column; it unnests them, groups once more (a record without a team takes its key's team from
 * virtual_keys, which can merge two groups) and upserts. So the cost on the ingest path is one small
 * statement per batch whatever its size, and COPY stays the only per-record work in PostgreSQL. The
 * statement is built here and sent by usage_ingest.c in the pipeline that ends with COMMIT.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "latency_hist.h"
#include "usage_group.h"
#include "usage_rollup.h"
#include "db.h"

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf_t;

static void
sb_put(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
sb_str(sbuf_t *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void
sb_i64(sbuf_t *b, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);
    sb_put(b, tmp, (size_t)n);
}

/* An element of a text[] literal: always quoted, with '"' and '\' escaped. */
static void
sb_quoted(sbuf_t *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\')
            sb_put(b, "\\", 1);
        sb_put(b, s, 1);
    }
    sb_put(b, "\"", 1);
}

/* The upsert is tollgate_rollup_add() (migrations/0007): planned once per session, not per batch. */
static const char upsert_sql[] =
    "SELECT tollgate_rollup_add($1::timestamptz[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[],"
    " $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[],"
    " $14::int[])";

int
cp_rollup_stmt(const Tollgate__UsageBatch *batch, int64_t now_ms, cp_db_stmt_t *stmt, char *ret_err, size_t errsz)
{
    memset(stmt, 0, sizeof(*stmt));
    size_t n = batch->n_records;
    if (n == 0)
        return 0;
    int rv = -1;
    cp_rollup_group_t *groups = malloc(n * sizeof(*groups));
    sbuf_t col[14] = {0};
    long ng = groups != NULL ? cp_group_rollups(batch, now_ms, groups) : -1;
    if (ng < 0) {
        snprintf(ret_err, errsz, ng == -2 ? "usage rollup: token or cost totals out of range" : "out of memory");
        goto out;
    }

    for (int c = 0; c < 14; c++)
        sb_str(&col[c], "{");
    for (long i = 0; i < ng; i++) {
        const cp_rollup_group_t *g = &groups[i];
        const char *sep = i ? "," : "";
        for (int c = 0; c < 14; c++)
            sb_str(&col[c], sep);
        time_t t = (time_t)g->hour_s;
        struct tm tm;
        char ts[40];
        gmtime_r(&t, &tm);
        strftime(ts, sizeof(ts), "\"%Y-%m-%d %H:%M:%S+00\"", &tm);
        sb_str(&col[0], ts);
        sb_str(&col[1], g->tenant);
        sb_str(&col[2], g->team);
        sb_str(&col[3], g->key);
        sb_str(&col[4], g->provider);
        sb_quoted(&col[5], g->model);
        const int64_t nums[] = {g->requests, g->errors, g->input, g->output, g->cached, g->cost, g->latency_sum};
        for (int c = 0; c < 7; c++)
            sb_i64(&col[6 + c], nums[c]);
        sb_str(&col[13], "{");
        for (int b = 0; b < CP_LAT_BUCKETS; b++) {
            if (b)
                sb_str(&col[13], ",");
            sb_i64(&col[13], g->lat[b]);
        }
        sb_str(&col[13], "}");
    }
    for (int c = 0; c < 14; c++) {
        sb_str(&col[c], "}");
        if (col[c].oom) {
            snprintf(ret_err, errsz, "out of memory");
            goto out;
        }
    }
    /* the buffers move into the statement */
    for (int c = 0; c < 14; c++) {
        stmt->values[c] = stmt->owned[c] = col[c].p;
        col[c].p = NULL;
    }
    stmt->sql = upsert_sql;
    stmt->nparams = 14;
    rv = 0;
out:
    for (int c = 0; c < 14; c++)
        free(col[c].p);
    free(groups);
    return rv;
}
