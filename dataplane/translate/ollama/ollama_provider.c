/*
 * Ollama's native API as an upstream provider (to be written).
 */
#include "translate/tx.h"

const tx_provider_ops_t tx_ollama_native_provider = {.kind = "ollama_native"};
