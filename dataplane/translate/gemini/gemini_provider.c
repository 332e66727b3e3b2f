/*
 * Google Gemini and Vertex AI as upstream providers (to be written).
 */
#include "translate/tx.h"

const tx_provider_ops_t tx_gemini_provider = {.kind = "gemini"};
const tx_provider_ops_t tx_vertex_provider = {.kind = "vertex"};
