/*
 * Ingress: the gateway's HTTP endpoints. One h2o handler receives every request and dispatches on the
 * path to an endpoint: the LLM endpoints of the three client dialects (OpenAI, Anthropic, Gemini) all go
 * through one exchange (exchange.c); the small ones (models, health) have their own file. Errors that
 * reach a client are built in errors.c only, always in the dialect the client spoke.
 */
#ifndef DP_INGRESS_H
#define DP_INGRESS_H

#include <h2o.h>
#include "config/snapshot.h"
#include "server/worker.h"
#include "translate/tx.h"

#define DP_REQUEST_ID_MAX 64

/* An LLM endpoint: the dialect and operation it serves. */
typedef struct dp_endpoint {
    tx_dialect_t dialect;
    tx_op_t op;
    const char *openai_path; /* OpenAI-family upstream endpoint for the passthrough ("chat/completions"); NULL: none */
    const char *usage_name;  /* the usage record's endpoint */
} dp_endpoint_t;

/* The h2o on_req callback for every path. */
int dp_ingress_on_req(h2o_handler_t *self, h2o_req_t *req);
/* Moves an HTTP/2 request's body into the request's pool and frees h2o's per-stream body buffer
 * (body.c); req->entity points at the copy afterwards. A no-op for HTTP/1.1. */
void dp_ingress_own_body(h2o_req_t *req);

/* An LLM call. url_model: the model named by the URL (Gemini), else a NULL base (the body names it). */
int dp_exchange_handle(h2o_req_t *req, dp_worker_t *w, const char *request_id, const dp_endpoint_t *ep,
                       h2o_iovec_t url_model, int url_stream);
int dp_models_handle(h2o_req_t *req, dp_worker_t *w, const char *request_id);
/* GET /tollgate/v1/breakers (routing/ops.c). */
int dp_ops_breakers_handle(h2o_req_t *req);

/* The first step of every API endpoint: the worker's snapshot and the calling virtual key. NULL when an
 * error was sent (503 before the first snapshot, 401 for a missing or bad key). */
const dp_vkey_t *dp_admit(h2o_req_t *req, dp_worker_t *w, tx_dialect_t dialect, dp_snapshot_t **ret_snapshot);

/* An error in the client's dialect. code and param may be NULL. */
void dp_send_error(h2o_req_t *req, tx_dialect_t dialect, int status, const char *code, const char *param,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* A neutral error in the client's dialect (the dialect may choose the status, e.g. Anthropic's 529). */
void dp_send_tx_error(h2o_req_t *req, tx_dialect_t dialect, const tx_error_t *e, const char *request_id);
void dp_send_json(h2o_req_t *req, int status, const char *body, size_t len);
/* x-request-id, and Connection: close while draining. Added once per request, by the router. */
void dp_add_common_headers(h2o_req_t *req, const char *request_id);

#endif
