/*
 * The mock provider's cohere wire format (to be written): see mock.h for the shared scenario.
 */
#include "mock.h"

int
mock_cohere_route(h2o_req_t *req)
{
    return 0;
}
