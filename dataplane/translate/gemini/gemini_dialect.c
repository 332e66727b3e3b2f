/*
 * Gemini generateContent as a client dialect (to be written).
 */
#include "translate/tx.h"

const tx_dialect_ops_t tx_gemini_dialect = {.name = "gemini"};
