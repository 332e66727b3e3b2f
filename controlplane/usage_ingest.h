/*
 * Usage batches from dataplanes into usage_events, exactly once per (instance_id, sequence): the
 * batch row and its records are written in one transaction, and a batch seen before is acknowledged
 * as a duplicate without writing anything.
 */
#ifndef CP_USAGE_INGEST_H
#define CP_USAGE_INGEST_H

#include "cp.h"
#include "tollgate.pb-c.h"

/* The most records one batch may carry. */
#define CP_USAGE_MAX_RECORDS 100000

/*
 * Stores `batch`. 0 with *ret_duplicate set, or -1 with a short reason in `ret_err` (database down,
 * invalid batch); the caller then replies MSG_ERROR and the dataplane resends later.
 */
int cp_usage_ingest(cp_t *cp, const Tollgate__UsageBatch *batch, int *ret_duplicate, char *ret_err, size_t errsz);

#endif
