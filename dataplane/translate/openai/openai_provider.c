/*
 * OpenAI and the OpenAI-compatible family as upstream providers (to be written).
 */
#include "translate/tx.h"

const tx_provider_ops_t tx_openai_provider = {.kind = "openai"};
const tx_provider_ops_t tx_azure_provider = {.kind = "azure"};
const tx_provider_ops_t tx_mistral_provider = {.kind = "mistral"};
const tx_provider_ops_t tx_groq_provider = {.kind = "groq"};
