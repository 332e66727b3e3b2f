/*
 * Usage batch ingestion (see usage_ingest.h).
 *
 * One transaction per batch: the usage_batches row first (ON CONFLICT DO NOTHING tells us whether the
 * batch is new), then every record through one COPY ... FROM STDIN in text format. COPY is the
 * cheapest way into PostgreSQL for the server as well as for us: no statement with 16 parameters per
 * row to parse, plan and cast (the multi-row INSERT this replaced cost PostgreSQL ~13-37 us of CPU per
 * usage record, on the same cores as the dataplanes in a small deployment; see docs/performance.md).
 * Ids that are not UUIDs are stored as NULL rather than failing the batch: a batch that can never be
 * stored would be resent forever. Text values are escaped for COPY's text format (backslash, tab,
 * newline, carriage return); protobuf-c strings cannot hold NUL bytes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "metrics.h"
#include "tollgate/env.h"
#include "tollgate/log.h"
#include "lease.h"
#include "usage_ingest.h"
#include "usage_rollup.h"
#include "util.h"

#define NUMLEN     24
#define COPY_CHUNK (256 * 1024)

static const char copy_sql[] =
    "COPY usage_events (ts, request_id, instance_id, tenant_id, key_id, model, provider_id, upstream_model,"
    " input_tokens, output_tokens, cached_input_tokens, cost_nanousd, status, stream, latency_ms, endpoint, team_id)"
    " FROM STDIN";

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

typedef struct copy_buf {
    char *p;
    size_t len, cap;
} copy_buf_t;

static int
cb_reserve(copy_buf_t *b, size_t need)
{
    if (b->len + need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64 * 1024;
    while (cap < b->len + need)
        cap *= 2;
    char *n = realloc(b->p, cap);
    if (n == NULL)
        return -1;
    b->p = n;
    b->cap = cap;
    return 0;
}

/* A text column (NULL -> \N), then the separator `sep`. */
static int
put_text(copy_buf_t *b, const char *s, char sep)
{
    if (s == NULL) {
        if (cb_reserve(b, 3) != 0)
            return -1;
        memcpy(b->p + b->len, "\\N", 2);
        b->len += 2;
        b->p[b->len++] = sep;
        return 0;
    }
    size_t n = strlen(s);
    if (cb_reserve(b, 2 * n + 1) != 0)
        return -1;
    char *o = b->p + b->len;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
        case '\\':
            *o++ = '\\', *o++ = '\\';
            break;
        case '\t':
            *o++ = '\\', *o++ = 't';
            break;
        case '\n':
            *o++ = '\\', *o++ = 'n';
            break;
        case '\r':
            *o++ = '\\', *o++ = 'r';
            break;
        default:
            *o++ = c;
        }
    }
    *o++ = sep;
    b->len = (size_t)(o - b->p);
    return 0;
}

static int
put_i64(copy_buf_t *b, int64_t v, char sep)
{
    if (cb_reserve(b, NUMLEN + 1) != 0)
        return -1;
    b->len += (size_t)snprintf(b->p + b->len, NUMLEN, "%" PRId64, v);
    b->p[b->len++] = sep;
    return 0;
}

/* A timestamptz in UTC from Unix milliseconds, as to_timestamp(ms / 1000.0) would give it. */
static int
put_ts(copy_buf_t *b, int64_t ms, char sep)
{
    if (cb_reserve(b, 48) != 0)
        return -1;
    int64_t sec = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    time_t t = (time_t)sec;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        return -1;
    b->len += (size_t)snprintf(b->p + b->len, 47, "%04d-%02d-%02d %02d:%02d:%02d.%03d+00", tm.tm_year + 1900,
                               tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms - sec * 1000));
    b->p[b->len++] = sep;
    return 0;
}

static int
put_record(copy_buf_t *b, const Tollgate__UsageBatch *batch, const Tollgate__UsageRecord *u, int64_t now_ms)
{
    int rv = 0;
    rv |= put_ts(b, u->started_unix_ms > 0 ? u->started_unix_ms : now_ms, '\t');
    rv |= put_text(b, u->request_id ? u->request_id : "", '\t');
    rv |= put_text(b, batch->instance_id, '\t');
    rv |= put_text(b, uuid_or_null(u->tenant_id), '\t');
    rv |= put_text(b, uuid_or_null(u->key_id), '\t');
    rv |= put_text(b, u->model ? u->model : "", '\t');
    rv |= put_text(b, uuid_or_null(u->provider_id), '\t');
    rv |= put_text(b, u->upstream_model ? u->upstream_model : "", '\t');
    rv |= put_i64(b, (int64_t)u->input_tokens, '\t');
    rv |= put_i64(b, (int64_t)u->output_tokens, '\t');
    rv |= put_i64(b, (int64_t)u->cached_input_tokens, '\t');
    rv |= put_i64(b, (int64_t)u->cost_nanousd, '\t');
    rv |= put_i64(b, clamp_i32((int64_t)u->status), '\t');
    rv |= put_text(b, u->stream ? "t" : "f", '\t');
    rv |= put_i64(b, clamp_i32((int64_t)u->latency_ms), '\t');
    rv |= put_text(b, u->endpoint ? u->endpoint : "", '\t');
    rv |= put_text(b, uuid_or_null(u->team_id), '\n');
    return rv;
}

/* Streams every record of the batch into usage_events with one COPY. 0 or -1 (message in ret_err). */
static int
copy_records(cp_t *cp, const Tollgate__UsageBatch *batch, int64_t now_ms, char *ret_err, size_t errsz)
{
    PGconn *conn = cp_db_conn(&cp->db);
    copy_buf_t b = {0};
    int rv = -1;
    for (size_t i = 0; i < batch->n_records; i++) {
        if (put_record(&b, batch, batch->records[i], now_ms) != 0) {
            snprintf(ret_err, errsz, "out of memory");
            goto out;
        }
    }
    PGresult *res = PQexec(conn, copy_sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        snprintf(ret_err, errsz, "copy usage_events: %s", cp_db_errmsg(&cp->db, res));
        PQclear(res);
        goto out;
    }
    PQclear(res);
    int sent = 1;
    for (size_t off = 0; off < b.len && sent == 1; off += COPY_CHUNK) {
        size_t n = b.len - off < COPY_CHUNK ? b.len - off : COPY_CHUNK;
        sent = PQputCopyData(conn, b.p + off, (int)n);
    }
    if (sent != 1 || PQputCopyEnd(conn, NULL) != 1) {
        snprintf(ret_err, errsz, "copy usage_events: %s", PQerrorMessage(conn));
        goto drain;
    }
    rv = 0;
drain:
    /* the COPY's own result, then nothing: anything but COMMAND_OK is the failure to report */
    while ((res = PQgetResult(conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && rv == 0) {
            snprintf(ret_err, errsz, "copy usage_events: %s", cp_db_errmsg(&cp->db, res));
            rv = -1;
        }
        PQclear(res);
    }
out:
    free(b.p);
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
        cp_metrics_usage("duplicate", batch->n_records, (tg_mono_ns() - t0) / 1e9);
        tg_info("cp.usage.duplicate", "instance=%s sequence=%s", batch->instance_id, seq);
        return 0;
    }
    int64_t now_ms = tg_now_unix_ms();
    /* phase times for the log line: where a batch's time goes (bench/ingest.mjs reads them) */
    uint64_t t_begin = tg_mono_ns();
    if (batch->n_records > 0 && copy_records(cp, batch, now_ms, ret_err, errsz) != 0)
        goto rollback;
    uint64_t t_copy = tg_mono_ns();
    if (cp_rollup_batch(cp_db_conn(&cp->db), batch, now_ms, ret_err, errsz) != 0)
        goto rollback;
    uint64_t t_rollup = tg_mono_ns();
    if (cp_lease_settle_batch(cp, batch, now_ms, ret_err, errsz) != 0) /* budgets' ledger, same transaction */
        goto rollback;
    uint64_t t_settle = tg_mono_ns();
    /* Acknowledge only what PostgreSQL says it committed: COMMIT of a transaction that failed along the way
     * (a statement added to it whose error went unnoticed, a deferred constraint) succeeds as a command
     * but answers ROLLBACK. A COMMIT whose answer is lost (the connection broke) is not acknowledged
     * either: the dataplane resends, and the usage_batches row tells a stored batch from a lost one. */
    if (cp_db_query(&cp->db, &res, "COMMIT", 0, NULL, NULL, NULL) != 0 || strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        snprintf(ret_err, errsz, "commit failed: %s",
                 res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK ? "the transaction was rolled back"
                                                                        : cp_db_errmsg(&cp->db, res));
        PQclear(res);
        return -1;
    }
    PQclear(res);
    *ret_duplicate = 0;
    uint64_t t_end = tg_mono_ns();
    cp_metrics_usage("stored", batch->n_records, (t_end - t0) / 1e9);
    tg_info("cp.usage.stored",
            "instance=%s sequence=%s records=%zu ms=%.1f begin=%.2f copy=%.2f rollup=%.2f settle=%.2f"
            " commit=%.2f",
            batch->instance_id, seq, batch->n_records, (t_end - t0) / 1e6, (t_begin - t0) / 1e6,
            (t_copy - t_begin) / 1e6, (t_rollup - t_copy) / 1e6, (t_settle - t_rollup) / 1e6, (t_end - t_settle) / 1e6);
    return 0;
rollback:
    if (cp_db_conn(&cp->db) != NULL)
        cp_db_exec(&cp->db, "ROLLBACK", 0, NULL);
    cp_metrics_usage("failed", batch->n_records, (tg_mono_ns() - t0) / 1e9);
    return -1;
}
