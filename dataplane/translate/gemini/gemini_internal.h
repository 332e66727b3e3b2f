/*
 * What the Gemini dialect and the Gemini/Vertex provider adapters share: the google.rpc status names,
 * finish-reason mapping, Gemini Schema <-> JSON Schema conversion, and the parts codec. Internal to
 * translate/gemini/; everything is pure.
 */
#ifndef DP_TX_GEMINI_INTERNAL_H
#define DP_TX_GEMINI_INTERNAL_H

#include "translate/tx.h"

/* How deep a schema may nest before we give up converting it (a client-controlled recursion). */
#define TX_GEMINI_SCHEMA_MAX_DEPTH 48
/* The arguments of one streamed tool call accumulated for a dialect that needs them whole. */
#define TX_GEMINI_MAX_ARGS (1u << 20)

/* google.rpc status name for an HTTP status ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", ...). */
const char *tx_gemini_status_name(int http_status);

/* Gemini finishReason -> neutral stop (STOP stays TX_STOP_END: callers check for functionCall parts). */
tx_stop_t tx_gemini_stop_of(const char *finish_reason);
/* Neutral stop -> finishReason, as a Gemini client expects it (tool use is "STOP"). */
const char *tx_gemini_finish_reason(tx_stop_t stop);

/*
 * Gemini's OpenAPI-subset Schema (upper-case types, `nullable`) -> JSON Schema (lower-case types, null
 * in a type array). A new tree; NULL when s is not an object or nests too deep.
 */
json_t *tx_gemini_schema_to_json(const json_t *s);
/*
 * JSON Schema -> the subset Gemini's `parameters`/`responseSchema` accept: unknown keywords dropped,
 * local $refs inlined, type arrays with null folded into `nullable`, enums kept only when all strings,
 * empty `properties` dropped. A new tree; NULL when s is not an object or nests (or refs) too deep.
 */
json_t *tx_gemini_schema_from_json(const json_t *s);

/* The usage a GenerateContentResponse reports (usageMetadata), neutral. known = 0 when absent. */
tx_usage_t tx_gemini_usage(const json_t *usage_metadata);

/* Fills e from a google.rpc error object ({"code","message","status","details"}) and an HTTP status
 * (0: take it from "code"). */
void tx_gemini_error_from_rpc(const json_t *error, int http_status, tx_error_t *e);

#endif
