/*
 * What the Anthropic dialect and the Anthropic provider adapter share (internal to this folder): the
 * stop-reason and error-type vocabularies of the Messages API, and the synthetic tool used for JSON output.
 */
#ifndef DP_TX_ANTHROPIC_H
#define DP_TX_ANTHROPIC_H

#include "translate/tx.h"

/* Anthropic has no JSON-output field: a request that asks for JSON (and declares no tools of its own) is
 * sent with this one tool forced, and the tool's input comes back to the client as the text. */
#define TX_ANTHROPIC_JSON_TOOL "json_response"

/* Whether r is sent with the forced JSON tool (the provider's encoder and decoders agree through this). */
int tx_anthropic_json_tool(const tx_request_t *r);

/* stop_reason names: Anthropic's value for a neutral stop (raw: the provider's own value, which wins
 * when it is an Anthropic name with the same meaning), and the neutral stop of an Anthropic value. */
const char *tx_anthropic_stop_name(tx_stop_t s, const char *raw);
tx_stop_t tx_anthropic_stop_parse(const char *s);

/* error.type names: Anthropic's type for a kind, and the kind of a type (status decides when the type is
 * unknown or generic). */
const char *tx_anthropic_error_type(tx_error_kind_t k);
tx_error_kind_t tx_anthropic_error_kind(const char *type, int status);

#endif
