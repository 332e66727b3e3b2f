/*
 * Ingress: the gateway's HTTP endpoints. One h2o handler receives every request and dispatches on the
 * path; each endpoint lives in its own file. Errors that reach a client are built in errors.c only, in
 * the client's dialect (OpenAI's error shape for the /v1 API).
 */
#ifndef DP_INGRESS_H
#define DP_INGRESS_H

#include <h2o.h>
#include "config/snapshot.h"
#include "server/worker.h"

#define DP_REQUEST_ID_MAX 64

/* The h2o on_req callback for every path. */
int dp_ingress_on_req(h2o_handler_t *self, h2o_req_t *req);

/* Endpoints. */
int dp_chat_handle(h2o_req_t *req, dp_worker_t *w, const char *request_id);
int dp_models_handle(h2o_req_t *req, dp_worker_t *w, const char *request_id);

/* The first step of every API endpoint: the worker's snapshot and the calling virtual key. NULL when an
 * error was sent (503 before the first snapshot, 401 for a missing or bad key). */
const dp_vkey_t *dp_admit(h2o_req_t *req, dp_worker_t *w, dp_snapshot_t **ret_snapshot);

/* OpenAI-style error: {"error":{"message","type","param","code"}}. param and code may be NULL. */
void dp_send_error(h2o_req_t *req, int status, const char *type, const char *code, const char *param, const char *fmt,
                   ...) __attribute__((format(printf, 6, 7)));
void dp_send_json(h2o_req_t *req, int status, const char *body, size_t len);
/* x-request-id, and Connection: close while draining. Added once per request, by the router. */
void dp_add_common_headers(h2o_req_t *req, const char *request_id);

#endif
