/*
 * Hourly usage rollups maintained on ingest (table usage_rollups_hourly, migrations/0004).
 */
#ifndef CP_USAGE_ROLLUP_H
#define CP_USAGE_ROLLUP_H

#include <stddef.h>
#include <stdint.h>
#include "db.h"
#include "tollgate.pb-c.h"

/*
 * Builds the one statement (tollgate_rollup_add(), an INSERT ... ON CONFLICT DO UPDATE) that adds the
 * records of `batch` to the rollups; the caller runs it inside the transaction that COPYs the same
 * records into usage_events, so both commit or neither, and frees it with cp_db_stmt_free(). `now_ms` is
 * the time the caller stored for records without a start time. 0 (stmt->sql NULL for an empty batch:
 * nothing to run), or -1 with a short reason in ret_err.
 */
int cp_rollup_stmt(const Tollgate__UsageBatch *batch, int64_t now_ms, cp_db_stmt_t *stmt, char *ret_err, size_t errsz);

#endif
