/*
 * Hourly usage rollups maintained on ingest (table usage_rollups_hourly, migrations/0004).
 */
#ifndef CP_USAGE_ROLLUP_H
#define CP_USAGE_ROLLUP_H

#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>
#include "tollgate.pb-c.h"

/*
 * Adds the records of `batch` to the rollups with one INSERT ... ON CONFLICT DO UPDATE, inside the
 * caller's open transaction (the one that COPYs the same records into usage_events, so both commit or
 * neither). `now_ms` is the time the caller stored for records without a start time. 0, or -1 with a
 * short reason in ret_err (the caller rolls back).
 */
int cp_rollup_batch(PGconn *conn, const Tollgate__UsageBatch *batch, int64_t now_ms, char *ret_err, size_t errsz);

#endif
