/*
 * The control plane's metrics (docs/metrics.md): admin requests, snapshot builds and publications, usage
 * ingestion, leadership and the database connection, served as Prometheus text on GET /metrics of the
 * admin listener. Everything runs on the loop thread; the hooks are no-ops before cp_metrics_init().
 */
#ifndef CP_METRICS_H
#define CP_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <h2o.h>
#include "cp.h"

/* Creates the registry and its collectors (leader state, database connection). 0 or -1. */
int cp_metrics_init(cp_t *cp);
void cp_metrics_free(void);

/* An admin request ended. `id` is the {id} path segment the router matched ("" when none, NULL when
 * no route matched): the route label is the path with that segment as '*', so it stays bounded. */
void cp_metrics_admin(const char *method, size_t mlen, const char *path, size_t plen, const char *id, int status,
                      double seconds);
/* A snapshot was built (ok) or not, and published (published) or not. */
void cp_metrics_snapshot(int ok, int published, uint64_t version, size_t bytes, double build_seconds);
/* A key delta was published as `version`. */
void cp_metrics_key_delta(uint64_t version, double seconds);
/* A usage batch: "stored", "duplicate" or "failed". */
void cp_metrics_usage(const char *result, size_t records, double seconds);

/* GET /metrics; needs `Authorization: Bearer <TOLLGATE_OPS_TOKEN>` when that is set. */
void cp_metrics_handle(h2o_req_t *req);

#endif
