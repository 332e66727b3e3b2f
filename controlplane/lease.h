/*
 * Allowance leases, the control plane's side (docs/admission.md): grants budget and rate-limit allowance
 * to dataplanes from the ledger in PostgreSQL (migrations/0005), and settles usage against it on ingest.
 * The arithmetic lives in the SQL functions tollgate_lease() and tollgate_settle(), run inside one
 * transaction per lease request or usage batch.
 */
#ifndef CP_LEASE_H
#define CP_LEASE_H

#include "cp.h"
#include "tollgate.pb-c.h"

/* Answers one LeaseRequest. 0 with *ret (free with cp_lease_grant_free), or -1 with a reason. */
int cp_lease_grant(cp_t *cp, const Tollgate__LeaseRequest *rq, Tollgate__LeaseGrant *ret, char *err, size_t errsz);
void cp_lease_grant_free(Tollgate__LeaseGrant *g);

/* Builds the settlement of a usage batch, run by the caller inside the batch's open transaction
 * (tollgate_settle()): moves each record's cost from the sender's leases to the settled spend of every
 * budget it falls under, in the period of the start time usage_events stores (`now_ms` for a record
 * without one). 0 (stmt->sql NULL when there is nothing to settle) or -1 with a reason; the caller frees
 * the statement with cp_db_stmt_free() and must keep `batch` alive until then. */
int cp_lease_settle_stmt(const Tollgate__UsageBatch *batch, int64_t now_ms, cp_db_stmt_t *stmt, char *err,
                         size_t errsz);
/* Logs the soft-limit crossings that the settlement statement's result reports. */
void cp_lease_settle_report(const PGresult *res);

#endif
