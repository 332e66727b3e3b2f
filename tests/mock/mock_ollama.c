/*
 * The mock provider's ollama wire format (to be written): see mock.h for the shared scenario.
 */
#include "mock.h"

int
mock_ollama_route(h2o_req_t *req)
{
    return 0;
}
