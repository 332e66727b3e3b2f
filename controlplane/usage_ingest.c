/*
 * Usage batch ingestion (see usage_ingest.h).
 *
 * One transaction per batch: the usage_batches row first (ON CONFLICT DO NOTHING tells us whether the
 * batch is new), then the records as multi-row INSERTs of at most ROWS_PER_INSERT rows, every value a
 * parameter. Ids that are not UUIDs are stored as NULL rather than failing the batch: a batch that can
 * never be stored would be resent forever.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tollgate/env.h"
#include "tollgate/log.h"
#include "usage_ingest.h"
#include "util.h"

#define COLS            16
#define ROWS_PER_INSERT 1000
#define NUMLEN          24

static const char *
uuid_or_null(const char *s)
{
    return (s != NULL && cp_uuid_valid(s)) ? s : NULL;
}

static int64_t
clamp_i32(int64_t v)
{
    return v > INT32_MAX ? INT32_MAX : v;
}

/* The INSERT for `rows` records: "($1,...,$16),($17,...)" with the casts each column needs. */
static char *
build_insert(size_t rows)
{
    static const char head[] =
        "INSERT INTO usage_events (ts, request_id, instance_id, tenant_id, key_id, model, provider_id,"
        " upstream_model, input_tokens, output_tokens, cached_input_tokens, cost_nanousd, status, stream,"
        " latency_ms, endpoint) VALUES ";
    size_t cap = sizeof(head) + rows * 320;
    char *sql = malloc(cap);
    if (sql == NULL)
        return NULL;
    size_t off = snprintf(sql, cap, "%s", head);
    for (size_t r = 0; r < rows; r++) {
        int b = (int)(r * COLS);
        off += snprintf(sql + off, cap - off,
                        "%s(to_timestamp($%d::bigint / 1000.0),$%d,$%d,$%d::uuid,$%d::uuid,$%d,$%d::uuid,$%d,"
                        "$%d::bigint,$%d::bigint,$%d::bigint,$%d::bigint,$%d::int,$%d::bool,$%d::int,$%d)",
                        r ? "," : "", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9, b + 10, b + 11,
                        b + 12, b + 13, b + 14, b + 15, b + 16);
    }
    return sql;
}

static int
insert_rows(cp_t *cp, const Tollgate__UsageBatch *batch, size_t first, size_t rows, int64_t now_ms, char *ret_err,
            size_t errsz)
{
    int rv = -1;
    char *sql = build_insert(rows);
    const char **vals = malloc(rows * COLS * sizeof(*vals));
    char(*nums)[8][NUMLEN] = malloc(rows * sizeof(*nums));
    if (sql == NULL || vals == NULL || nums == NULL) {
        snprintf(ret_err, errsz, "out of memory");
        goto out;
    }
    for (size_t r = 0; r < rows; r++) {
        const Tollgate__UsageRecord *u = batch->records[first + r];
        const char **v = vals + r * COLS;
        char(*n)[NUMLEN] = nums[r];
        snprintf(n[0], NUMLEN, "%" PRId64, u->started_unix_ms > 0 ? u->started_unix_ms : now_ms);
        snprintf(n[1], NUMLEN, "%" PRId64, u->input_tokens);
        snprintf(n[2], NUMLEN, "%" PRId64, u->output_tokens);
        snprintf(n[3], NUMLEN, "%" PRId64, u->cached_input_tokens);
        snprintf(n[4], NUMLEN, "%" PRId64, u->cost_nanousd);
        snprintf(n[5], NUMLEN, "%" PRId64, clamp_i32(u->status));
        snprintf(n[6], NUMLEN, "%s", u->stream ? "true" : "false");
        snprintf(n[7], NUMLEN, "%" PRId64, clamp_i32(u->latency_ms));
        v[0] = n[0];
        v[1] = u->request_id;
        v[2] = batch->instance_id;
        v[3] = uuid_or_null(u->tenant_id);
        v[4] = uuid_or_null(u->key_id);
        v[5] = u->model;
        v[6] = uuid_or_null(u->provider_id);
        v[7] = u->upstream_model;
        v[8] = n[1];
        v[9] = n[2];
        v[10] = n[3];
        v[11] = n[4];
        v[12] = n[5];
        v[13] = n[6];
        v[14] = n[7];
        v[15] = u->endpoint;
    }
    PGresult *res;
    if (cp_db_query(&cp->db, &res, sql, (int)(rows * COLS), vals, NULL, NULL) != 0)
        snprintf(ret_err, errsz, "insert usage_events: %s", cp_db_errmsg(&cp->db, res));
    else
        rv = 0;
    PQclear(res);
out:
    free(sql);
    free(vals);
    free(nums);
    return rv;
}

int
cp_usage_ingest(cp_t *cp, const Tollgate__UsageBatch *batch, int *ret_duplicate, char *ret_err, size_t errsz)
{
    if (batch->instance_id == NULL || batch->instance_id[0] == '\0' || strlen(batch->instance_id) > 200) {
        snprintf(ret_err, errsz, "invalid instance_id");
        return -1;
    }
    if (batch->sequence == 0 || batch->sequence > INT64_MAX) {
        snprintf(ret_err, errsz, "invalid sequence");
        return -1;
    }
    if (batch->n_records > CP_USAGE_MAX_RECORDS) {
        snprintf(ret_err, errsz, "too many records (%zu > %d)", batch->n_records, CP_USAGE_MAX_RECORDS);
        return -1;
    }
    if (cp_db_conn(&cp->db) == NULL) {
        snprintf(ret_err, errsz, "database unavailable");
        return -1;
    }
    uint64_t t0 = tg_mono_ns();
    char seq[NUMLEN], count[NUMLEN];
    snprintf(seq, sizeof(seq), "%" PRIu64, batch->sequence);
    snprintf(count, sizeof(count), "%zu", batch->n_records);
    if (cp_db_exec(&cp->db, "BEGIN", 0, NULL) != 0) {
        snprintf(ret_err, errsz, "database unavailable");
        return -1;
    }
    const char *params[] = {batch->instance_id, seq, count};
    PGresult *res;
    if (cp_db_query(&cp->db, &res,
                    "INSERT INTO usage_batches (instance_id, sequence, records) VALUES ($1, $2::bigint, $3::int)"
                    " ON CONFLICT DO NOTHING",
                    3, params, NULL, NULL) != 0) {
        snprintf(ret_err, errsz, "insert usage_batches: %s", cp_db_errmsg(&cp->db, res));
        PQclear(res);
        goto rollback;
    }
    int fresh = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (!fresh) {
        cp_db_exec(&cp->db, "ROLLBACK", 0, NULL);
        *ret_duplicate = 1;
        tg_info("cp.usage.duplicate", "instance=%s sequence=%s", batch->instance_id, seq);
        return 0;
    }
    int64_t now_ms = tg_now_unix_ms();
    for (size_t first = 0; first < batch->n_records; first += ROWS_PER_INSERT) {
        size_t rows = batch->n_records - first < ROWS_PER_INSERT ? batch->n_records - first : ROWS_PER_INSERT;
        if (insert_rows(cp, batch, first, rows, now_ms, ret_err, errsz) != 0)
            goto rollback;
    }
    if (cp_db_exec(&cp->db, "COMMIT", 0, NULL) != 0) {
        snprintf(ret_err, errsz, "commit failed");
        return -1;
    }
    *ret_duplicate = 0;
    tg_info("cp.usage.stored", "instance=%s sequence=%s records=%zu ms=%.1f", batch->instance_id, seq, batch->n_records,
            (tg_mono_ns() - t0) / 1e6);
    return 0;
rollback:
    if (cp_db_conn(&cp->db) != NULL)
        cp_db_exec(&cp->db, "ROLLBACK", 0, NULL);
    return -1;
}
