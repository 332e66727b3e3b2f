/*
 * AWS Bedrock Converse as an upstream provider (to be written).
 */
#include "translate/tx.h"

const tx_provider_ops_t tx_bedrock_provider = {.kind = "bedrock"};
