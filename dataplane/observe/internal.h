/* What the files of observe/ share and nothing else includes. */
#ifndef DP_OBSERVE_INTERNAL_H
#define DP_OBSERVE_INTERNAL_H

#include "observe/observe.h"

/* access_log.c: TOLLGATE_ACCESS_LOG = stderr (default) | stdout | off | a file path */
int dp_access_log_open(const char *where, int flush_ms);
int dp_access_log_enabled(void);
void dp_access_log_write(const dp_obs_t *o, int64_t end_unix_ns, uint64_t total_ns);
void dp_access_log_close(void);
/* The client's "address:port" (out is "" when unknown). */
void dp_access_log_peer(h2o_req_t *req, char out[64]);

/* trace.c: the OTLP/HTTP exporter (a thread with a bounded queue) */
int dp_tracer_start(const char *endpoint, const char *service_name, size_t queue_max, int flush_ms);
int dp_tracer_enabled(void);
/* Queues the request's span and, when there were attempts, the last attempt's span is already queued
 * by dp_tracer_attempt(). Never blocks: a full queue drops the span and counts it. */
void dp_tracer_request(const dp_obs_t *o, int64_t end_unix_ns);
void dp_tracer_attempt(const dp_obs_t *o, long status, CURLcode rc, int64_t end_unix_ns);
void dp_tracer_stop(int deadline_ms);

/* observe.c: counters the exporter and the log update */
void dp_obs_count_span_export(size_t exported, size_t dropped, const char *reason);
void dp_obs_count_log_failure(void);

#endif
