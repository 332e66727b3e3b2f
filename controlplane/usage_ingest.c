/*
 * Usage batch ingestion (see usage_ingest.h).
 *
 * One transaction per batch: the usage_batches row first (ON CONFLICT DO NOTHING tells us whether the
 * batch is new), then every record through one COPY ... FROM STDIN in binary format, then the batch's
 * rollups (usage_rollup.c) and budget settlement (lease.c), then COMMIT, with synchronous_commit as the
 * server has it (on by default): the usage rows and the ledger are the accounting, and an acknowledged
 * batch is one the dataplane forgets. COPY is the cheapest way into PostgreSQL for the server as well
 * as for us: no statement with 16 parameters per row to parse, plan and cast (the multi-row INSERT
 * this replaced cost PostgreSQL ~13-37 us of CPU per usage record); binary rather than text because
 * PostgreSQL then parses no numbers, timestamps or UUIDs (a fifth of its COPY time in text format; see
 * docs/performance.md). Binary COPY ties this file to the column types of usage_events: a migration
 * that changes one must change the matching put_* call here.
 *
 * Three round trips per batch, not one per statement (each is a wake-up of PostgreSQL and of this
 * loop, which also answers lease asks and snapshot requests; docs/performance.md):
 *   1. BEGIN; INSERT usage_batches; COPY ... FROM STDIN as one simple-query message (COPY cannot run
 *      in a pipeline, but it may end a multi-statement query: the server answers BEGIN, INSERT and
 *      then waits for the data). No parameters in that protocol: the instance id goes in as a literal
 *      escaped by libpq (PQescapeLiteral), the two numbers are formatted here.
 *   2. the COPY data and its end, answered by the COPY's result;
 *   3. rollup, settlement and COMMIT in one pipeline (cp_db_pipeline).
 * A duplicate batch (the INSERT added no row) sends an empty COPY and rolls back: nothing is stored.
 * Any error rolls back and is not acknowledged; only a COMMIT that PostgreSQL answers COMMIT is.
 *
 * Ids that are not UUIDs are stored as NULL rather than failing the batch: a batch that can never be
 * stored would be resent forever. For the same reason a start time outside years 1970..9999 is
 * replaced by the time of ingestion (usage_group.h), the same for the row, its rollup and its settlement.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "metrics.h"
#include "tollgate/env.h"
#include "tollgate/log.h"
#include "lease.h"
#include "usage_group.h"
#include "usage_ingest.h"
#include "usage_rollup.h"
#include "util.h"

#define NUMLEN     24
#define COPY_CHUNK (256 * 1024)
/* Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC), for binary timestamptz. */
#define PG_EPOCH_US 946684800000000LL

static const char copy_sql[] =
    "COPY usage_events (ts, request_id, instance_id, tenant_id, key_id, model, provider_id, upstream_model,"
    " input_tokens, output_tokens, cached_input_tokens, cost_nanousd, status, stream, latency_ms, endpoint, team_id)"
    " FROM STDIN (FORMAT binary)";
#define COPY_FIELDS 17
/* binary COPY framing: signature, flags, header extension length; then the tuples; then the -1 trailer */
static const unsigned char copy_header[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0};
static const unsigned char copy_trailer[2] = {0xff, 0xff};

static int64_t
clamp_i32(int64_t v)
{
    return v > INT32_MAX ? INT32_MAX : v;
}

typedef struct copy_buf {
    unsigned char *p;
    size_t len, cap;
    int oom;
} copy_buf_t;

/* Room for `need` more bytes; on failure sets oom and returns NULL (later writes are dropped). */
static unsigned char *
cb_room(copy_buf_t *b, size_t need)
{
    if (b->oom)
        return NULL;
    if (b->len + need > b->cap) {
        size_t cap = b->cap ? b->cap : 64 * 1024;
        while (cap < b->len + need)
            cap *= 2;
        unsigned char *n = realloc(b->p, cap);
        if (n == NULL) {
            b->oom = 1;
            return NULL;
        }
        b->p = n;
        b->cap = cap;
    }
    unsigned char *o = b->p + b->len;
    b->len += need;
    return o;
}

static void
be32(unsigned char *o, uint32_t v)
{
    o[0] = (unsigned char)(v >> 24), o[1] = (unsigned char)(v >> 16), o[2] = (unsigned char)(v >> 8);
    o[3] = (unsigned char)v;
}

static void
be64(unsigned char *o, uint64_t v)
{
    be32(o, (uint32_t)(v >> 32));
    be32(o + 4, (uint32_t)v);
}

static void
put_null(copy_buf_t *b)
{
    unsigned char *o = cb_room(b, 4);
    if (o != NULL)
        be32(o, 0xffffffffu);
}

static void
put_text(copy_buf_t *b, const char *s)
{
    size_t n = strlen(s);
    unsigned char *o = cb_room(b, 4 + n);
    if (o != NULL) {
        be32(o, (uint32_t)n);
        memcpy(o + 4, s, n);
    }
}

static void
put_i64(copy_buf_t *b, int64_t v)
{
    unsigned char *o = cb_room(b, 12);
    if (o != NULL) {
        be32(o, 8);
        be64(o + 4, (uint64_t)v);
    }
}

static void
put_i32(copy_buf_t *b, int32_t v)
{
    unsigned char *o = cb_room(b, 8);
    if (o != NULL) {
        be32(o, 4);
        be32(o + 4, (uint32_t)v);
    }
}

static void
put_bool(copy_buf_t *b, int v)
{
    unsigned char *o = cb_room(b, 5);
    if (o != NULL) {
        be32(o, 1);
        o[4] = v ? 1 : 0;
    }
}

static int
hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* A uuid column: the 16 bytes of a canonical UUID string, NULL for anything else (as before: ids that
 * are not UUIDs are stored as NULL rather than failing the batch). */
static void
put_uuid(copy_buf_t *b, const char *s)
{
    unsigned char u[16];
    if (s == NULL || !cp_uuid_valid(s)) {
        put_null(b);
        return;
    }
    for (int i = 0, j = 0; i < 16; i++, j += 2) {
        if (s[j] == '-')
            j++;
        u[i] = (unsigned char)(hexval(s[j]) << 4 | hexval(s[j + 1]));
    }
    unsigned char *o = cb_room(b, 20);
    if (o != NULL) {
        be32(o, 16);
        memcpy(o + 4, u, 16);
    }
}

static void
put_record(copy_buf_t *b, const Tollgate__UsageBatch *batch, const Tollgate__UsageRecord *u, int64_t now_ms)
{
    unsigned char *o = cb_room(b, 2);
    if (o != NULL)
        o[0] = 0, o[1] = COPY_FIELDS;
    put_i64(b, cp_usage_start_ms(u, now_ms) * 1000 - PG_EPOCH_US); /* timestamptz: µs since 2000 */
    put_text(b, u->request_id ? u->request_id : "");
    put_text(b, batch->instance_id);
    put_uuid(b, u->tenant_id);
    put_uuid(b, u->key_id);
    put_text(b, u->model ? u->model : "");
    put_uuid(b, u->provider_id);
    put_text(b, u->upstream_model ? u->upstream_model : "");
    put_i64(b, (int64_t)u->input_tokens);
    put_i64(b, (int64_t)u->output_tokens);
    put_i64(b, (int64_t)u->cached_input_tokens);
    put_i64(b, (int64_t)u->cost_nanousd);
    put_i32(b, (int32_t)clamp_i32((int64_t)u->status));
    put_bool(b, u->stream);
    put_i32(b, (int32_t)clamp_i32((int64_t)u->latency_ms));
    put_text(b, u->endpoint ? u->endpoint : "");
    put_uuid(b, u->team_id);
}

/* The binary COPY stream of the batch: header, one tuple per record, trailer. 0 or -1 (out of memory). */
static int
encode_records(copy_buf_t *b, const Tollgate__UsageBatch *batch, int64_t now_ms)
{
    unsigned char *o = cb_room(b, sizeof(copy_header));
    if (o != NULL)
        memcpy(o, copy_header, sizeof(copy_header));
    for (size_t i = 0; i < batch->n_records; i++)
        put_record(b, batch, batch->records[i], now_ms);
    if ((o = cb_room(b, sizeof(copy_trailer))) != NULL)
        memcpy(o, copy_trailer, sizeof(copy_trailer));
    return b->oom ? -1 : 0;
}

/* Reads results until libpq has none; -1 if one of them is not COMMAND_OK, with the first such one's
 * message in ret_err unless ret_err is NULL (a message was already written). */
static int
drain(cp_t *cp, const char *what, char *ret_err, size_t errsz)
{
    PGconn *conn = cp_db_conn(&cp->db);
    PGresult *res;
    int rv = 0;
    while ((res = PQgetResult(conn)) != NULL) {
        /* not expected here, but libpq would return COPY IN forever: end that COPY as failed */
        if (PQresultStatus(res) == PGRES_COPY_IN && PQputCopyEnd(conn, "not expected") != 1) {
            PQclear(res);
            return -1;
        }
        if (PQresultStatus(res) != PGRES_COMMAND_OK && rv == 0) {
            if (ret_err != NULL)
                snprintf(ret_err, errsz, "%s: %s", what, cp_db_errmsg(&cp->db, res));
            rv = -1;
        }
        PQclear(res);
    }
    return rv;
}

/*
 * Round trip 1: BEGIN; INSERT usage_batches ...; COPY usage_events ... FROM STDIN. On 0 the connection
 * is in COPY IN state and *ret_fresh tells whether the batch is new; on -1 (message in ret_err) all
 * results were read and the caller rolls back.
 */
static int
begin_batch(cp_t *cp, const Tollgate__UsageBatch *batch, const char *seq, int *ret_fresh, char *ret_err, size_t errsz)
{
    PGconn *conn = cp_db_conn(&cp->db);
    char *inst = PQescapeLiteral(conn, batch->instance_id, strlen(batch->instance_id));
    if (inst == NULL) {
        snprintf(ret_err, errsz, "instance_id: %s", cp_db_errmsg(&cp->db, NULL));
        return -1;
    }
    size_t len = strlen(inst) + sizeof(copy_sql) + 256;
    char *sql = malloc(len);
    if (sql == NULL) {
        PQfreemem(inst);
        snprintf(ret_err, errsz, "out of memory");
        return -1;
    }
    snprintf(sql, len,
             "BEGIN; INSERT INTO usage_batches (instance_id, sequence, records) VALUES (%s, %s, %zu)"
             " ON CONFLICT DO NOTHING; %s",
             inst, seq, batch->n_records, copy_sql);
    PQfreemem(inst);
    int sent = PQsendQuery(conn, sql);
    free(sql);
    if (!sent) {
        snprintf(ret_err, errsz, "begin: %s", cp_db_errmsg(&cp->db, NULL));
        return -1;
    }
    /* BEGIN, the INSERT, then COPY IN; an error ends the list (the rest is not run) */
    static const char *const what[] = {"begin", "insert usage_batches", "copy usage_events"};
    static const ExecStatusType want[] = {PGRES_COMMAND_OK, PGRES_COMMAND_OK, PGRES_COPY_IN};
    for (int i = 0; i < 3; i++) {
        PGresult *res = PQgetResult(conn);
        if (PQresultStatus(res) != want[i]) {
            snprintf(ret_err, errsz, "%s: %s", what[i], cp_db_errmsg(&cp->db, res));
            PQclear(res);
            drain(cp, what[i], NULL, 0);
            return -1;
        }
        if (i == 1)
            *ret_fresh = strcmp(PQcmdTuples(res), "1") == 0;
        PQclear(res);
    }
    return 0;
}

/* Round trip 2: the COPY data (just header and trailer for a duplicate: no rows) and its end. */
static int
copy_records(cp_t *cp, const copy_buf_t *b, int fresh, char *ret_err, size_t errsz)
{
    PGconn *conn = cp_db_conn(&cp->db);
    int sent = 1;
    if (!fresh) { /* no rows: the header and the trailer */
        sent = PQputCopyData(conn, (const char *)copy_header, (int)sizeof(copy_header));
        if (sent == 1)
            sent = PQputCopyData(conn, (const char *)copy_trailer, (int)sizeof(copy_trailer));
    } else {
        for (size_t off = 0; off < b->len && sent == 1; off += COPY_CHUNK) {
            size_t n = b->len - off < COPY_CHUNK ? b->len - off : COPY_CHUNK;
            sent = PQputCopyData(conn, (const char *)b->p + off, (int)n);
        }
    }
    int rv = 0;
    if (sent != 1 || PQputCopyEnd(conn, NULL) != 1) {
        snprintf(ret_err, errsz, "copy usage_events: %s", PQerrorMessage(conn));
        rv = -1;
    }
    /* the COPY's own result, then nothing: anything but COMMAND_OK is the failure to report */
    if (drain(cp, "copy usage_events", rv == 0 ? ret_err : NULL, errsz) != 0)
        rv = -1;
    return rv;
}

/* Ends an open transaction that is not to be committed. Nothing to do when the connection was dropped
 * or the transaction already ended (a COMMIT that failed rolled back by itself). On a connection that
 * broke (status unknown) the ROLLBACK fails, and cp_db_exec drops it and schedules the reconnect. */
static void
rollback(cp_t *cp)
{
    PGconn *conn = cp_db_conn(&cp->db);
    if (conn != NULL && PQtransactionStatus(conn) != PQTRANS_IDLE)
        cp_db_exec(&cp->db, "ROLLBACK", 0, NULL);
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
    char seq[NUMLEN];
    snprintf(seq, sizeof(seq), "%" PRIu64, batch->sequence);
    int64_t now_ms = tg_now_unix_ms();
    copy_buf_t b = {0};
    cp_db_stmt_t stmts[3] = {{0}};
    PGresult *res[3] = {NULL, NULL, NULL};
    int fresh = 0;
    if (encode_records(&b, batch, now_ms) != 0) {
        free(b.p);
        snprintf(ret_err, errsz, "out of memory");
        return -1;
    }
    /* phase times for the log line: where a batch's time goes (bench/ingest.mjs reads them) */
    uint64_t t_encode = tg_mono_ns();
    if (begin_batch(cp, batch, seq, &fresh, ret_err, errsz) != 0)
        goto rollback;
    uint64_t t_begin = tg_mono_ns();
    if (copy_records(cp, &b, fresh, ret_err, errsz) != 0)
        goto rollback;
    uint64_t t_copy = tg_mono_ns();
    if (!fresh) {
        rollback(cp);
        free(b.p);
        *ret_duplicate = 1;
        cp_metrics_usage("duplicate", batch->n_records, (tg_mono_ns() - t0) / 1e9);
        tg_info("cp.usage.duplicate", "instance=%s sequence=%s", batch->instance_id, seq);
        return 0;
    }
    if (cp_rollup_stmt(batch, now_ms, &stmts[0], ret_err, errsz) != 0 ||
        cp_lease_settle_stmt(batch, now_ms, &stmts[1], ret_err, errsz) != 0) /* budgets' ledger, same transaction */
        goto rollback;
    stmts[2].sql = "COMMIT";
    uint64_t t_prep = tg_mono_ns();
    /* Acknowledge only what PostgreSQL says it committed: COMMIT of a transaction that failed along the way
     * (a statement added to it whose error went unnoticed, a deferred constraint) succeeds as a command
     * but answers ROLLBACK. A COMMIT whose answer is lost (the connection broke) is not acknowledged
     * either: the dataplane resends, and the usage_batches row tells a stored batch from a lost one. */
    if (cp_db_pipeline(&cp->db, stmts, 3, res) != 0 || strcmp(PQcmdStatus(res[2]), "COMMIT") != 0) {
        static const char *const what[] = {"usage rollup", "settle", "commit"};
        int i = 0;
        while (i < 2 && (stmts[i].sql == NULL || PQresultStatus(res[i]) == PGRES_COMMAND_OK ||
                         PQresultStatus(res[i]) == PGRES_TUPLES_OK))
            i++;
        snprintf(ret_err, errsz, "%s failed: %s", what[i],
                 i == 2 && PQresultStatus(res[2]) == PGRES_COMMAND_OK ? "the transaction was rolled back"
                                                                      : cp_db_errmsg(&cp->db, res[i]));
        goto rollback;
    }
    if (res[1] != NULL)
        cp_lease_settle_report(res[1]);
    for (int i = 0; i < 3; i++)
        PQclear(res[i]), cp_db_stmt_free(&stmts[i]);
    free(b.p);
    *ret_duplicate = 0;
    uint64_t t_end = tg_mono_ns();
    cp_metrics_usage("stored", batch->n_records, (t_end - t0) / 1e9);
    tg_info("cp.usage.stored",
            "instance=%s sequence=%s records=%zu ms=%.1f encode=%.2f begin=%.2f copy=%.2f prep=%.2f commit=%.2f",
            batch->instance_id, seq, batch->n_records, (t_end - t0) / 1e6, (t_encode - t0) / 1e6,
            (t_begin - t_encode) / 1e6, (t_copy - t_begin) / 1e6, (t_prep - t_copy) / 1e6, (t_end - t_prep) / 1e6);
    return 0;
rollback:
    rollback(cp);
    for (int i = 0; i < 3; i++)
        PQclear(res[i]), cp_db_stmt_free(&stmts[i]);
    free(b.p);
    cp_metrics_usage("failed", batch->n_records, (tg_mono_ns() - t0) / 1e9);
    return -1;
}
