/*
 * Anthropic Messages as a client dialect (to be written).
 */
#include "translate/tx.h"

const tx_dialect_ops_t tx_anthropic_dialect = {.name = "anthropic"};
