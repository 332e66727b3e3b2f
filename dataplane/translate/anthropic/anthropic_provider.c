/*
 * Anthropic Messages as an upstream provider (to be written).
 */
#include "translate/tx.h"

const tx_provider_ops_t tx_anthropic_provider = {.kind = "anthropic"};
